// Helpers of the config tests (config_test, config_errors_test, config_keys_test): a minimal
// valid config to change one field at a time, parsing it, and the ConfigError it must raise.
#pragma once

#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/config.hpp"

namespace herd::core::config_test {

using nlohmann::json;

// A minimal valid config; tests change one field at a time.
inline json base_config() {
    return json::parse(R"({
        "apps": [{
            "name": "web",
            "listen": "127.0.0.1:8080",
            "plugins": [{"path": "/opt/plugins/libhello.so"}]
        }]
    })");
}

inline Config parse(const json& j, const std::string& base_dir = "/etc/herd") {
    return parse_config_text(j.dump(), "test.json", base_dir);
}

// The ConfigError message for j, or a test failure if it parses.
inline std::string error_of(const json& j) {
    try {
        parse(j);
    } catch (const ConfigError& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected a ConfigError for " << j.dump();
    return {};
}

inline std::string error_of_text(const std::string& text) {
    try {
        parse_config_text(text, "test.json", "/etc/herd");
    } catch (const ConfigError& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected a ConfigError for " << text;
    return {};
}

}  // namespace herd::core::config_test
