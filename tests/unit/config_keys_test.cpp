// Tests server/core/config's key tables (config_keys(), app_keys()): each holds exactly the
// keys the parser accepts, each key is read, and the README's defaults are the parser's.
#include "core/config.hpp"

#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "config_test_helpers.hpp"

namespace herd::core {
namespace {

using namespace config_test;

// The keys whose table (config_keys(), app_keys()) the parser reads, and a valid value of each
// that differs from its default: a key added to a table needs a value here, and a key the parser
// accepts must be in its table.
std::map<std::string, json> top_level_samples() {
    return {
        {"user", "www-data"},
        {"group", "www-data"},
        {"allow_root", true},
        {"log_level", "debug"},
        {"control", "run/herd.sock"},
        {"state", {{"backend", "file"}}},
        {"log_file", "herd.log"},
        {"metrics", "127.0.0.1:9100"},
        {"metrics_auth", {{"token", "t0ken"}}},
        {"apps", base_config()["apps"]},
        {"health", "127.0.0.1:9101"},
        {"health_max_state_age_ms", 5000},
    };
}

std::map<std::string, json> app_samples() {
    return {
        {"name", "api"},
        {"listen", "127.0.0.1:9090"},
        {"workers", 3},
        {"balance", "round-robin"},
        {"plugins", {{{"path", "/opt/plugins/libecho.so"}}}},
        {"env", {{"A", "1"}}},
        {"access_log", "access.log"},
        {"max_body_bytes", 2048},
        {"max_ws_message_bytes", 4096},
        {"ws_send_queue_bytes", 8192},
        {"ws_ping_interval_ms", 500},
        {"max_header_bytes", 2048},
        {"header_timeout_ms", 1000},
        {"keepalive_timeout_ms", 1000},
        {"request_timeout_ms", 1000},
        {"blocking_threads", 2},
        {"backlog", 64},
        {"drain_timeout_ms", 1000},
        {"watchdog_ms", 1000},
        {"start_timeout_ms", 1000},
        {"restart_backoff_ms", 1000},
        {"restart_backoff_max_ms", 1000},
        {"healthy_after_ms", 1000},
        {"max_requests", 1000},
        {"max_rss_mb", 1000},
    };
}

// The list of known keys in an unknown-key error, as the parser gives it.
std::string known_keys_in(const std::string& error) {
    std::size_t at = error.find("(known keys: ");
    if (at == std::string::npos) return "";
    at += 13;
    return error.substr(at, error.find(')', at) - at);
}

TEST(ConfigKeysTest, TheTopLevelTableHasEachKeyTheParserAccepts) {
    std::set<std::string> table;
    for (const ConfigKey& k : config_keys()) {
        EXPECT_TRUE(table.insert(k.name).second) << k.name << " is declared twice";
        EXPECT_NE(k.read, nullptr) << k.name;
        EXPECT_STRNE(k.readme_default, "") << k.name;
        EXPECT_STRNE(k.type, "") << k.name;
    }
    auto samples = top_level_samples();
    std::set<std::string> sampled;
    for (const auto& [name, value] : samples) sampled.insert(name);
    EXPECT_EQ(table, sampled);
    // The unknown-key check refuses everything else and names exactly the table's keys.
    json j = base_config();
    j["not_a_key"] = 1;
    std::string list;
    for (const std::string& name : table) list += (list.empty() ? "" : ", ") + name;
    EXPECT_EQ(known_keys_in(error_of(j)), list);
    // Each key is accepted, and read: its value is not the default's.
    Config plain = parse(base_config());
    for (const auto& [name, value] : samples) {
        json with = base_config();
        with[name] = value;
        if (name == "group") with["user"] = "www-data";
        EXPECT_NO_THROW(parse(with)) << name;
    }
    json all = base_config();
    for (const auto& [name, value] : samples) all[name] = value;
    all["apps"][0]["name"] = "other";
    Config c = parse(all);
    EXPECT_NE(c.user, plain.user);
    EXPECT_NE(c.group, plain.group);
    EXPECT_NE(c.allow_root, plain.allow_root);
    EXPECT_NE(c.log_level, plain.log_level);
    EXPECT_NE(c.control_path, plain.control_path);
    EXPECT_NE(c.state, plain.state);
    EXPECT_NE(c.log_file, plain.log_file);
    EXPECT_NE(c.metrics.text, plain.metrics.text);
    EXPECT_NE(c.metrics_auth, plain.metrics_auth);
    EXPECT_NE(c.health.text, plain.health.text);
    EXPECT_NE(c.health_max_state_age_ms, plain.health_max_state_age_ms);
    EXPECT_NE(c.apps[0].name, plain.apps[0].name);
}

TEST(ConfigKeysTest, TheAppTableHasEachKeyTheParserAccepts) {
    std::set<std::string> table;
    for (const AppKey& k : app_keys()) {
        EXPECT_TRUE(table.insert(k.name).second) << k.name << " is declared twice";
        EXPECT_STRNE(k.readme_default, "") << k.name;
    }
    auto samples = app_samples();
    std::set<std::string> sampled;
    for (const auto& [name, value] : samples) sampled.insert(name);
    EXPECT_EQ(table, sampled);
    json j = base_config();
    j["apps"][0]["not_a_key"] = 1;
    std::string list;
    for (const std::string& name : table) list += (list.empty() ? "" : ", ") + name;
    EXPECT_EQ(known_keys_in(error_of(j)), list);
    // Each key is accepted, and read: the app differs from the plain one in that key alone
    // (as a reload sees it), which also checks the table's `differs`.
    AppConfig plain = parse(base_config()).apps[0];
    for (const AppKey& k : app_keys()) {
        json with = base_config();
        with["apps"][0][k.name] = samples[k.name];
        AppConfig a = parse(with).apps[0];
        EXPECT_TRUE(app_key_differs(k, plain, a)) << k.name;
    }
}

TEST(ConfigKeysTest, TheReadmeDefaultsAreTheParsersDefaults) {
    // A number in the README's Default column is what an app that leaves the key out gets.
    AppConfig plain = parse(base_config()).apps[0];
    int numbers = 0;
    for (const AppKey& k : app_keys()) {
        std::string d = k.readme_default;
        if (d.empty() || d.find_first_not_of("0123456789") != std::string::npos) continue;
        ++numbers;
        json with = base_config();
        with["apps"][0][k.name] = std::stoull(d);
        EXPECT_FALSE(app_key_differs(k, plain, parse(with).apps[0]))
            << "apps[]." << k.name << ": the README says " << d;
    }
    EXPECT_GE(numbers, 15);
    // Likewise at the top level, for the defaults that are values.
    Config c = parse(base_config());
    std::map<std::string, std::string> defaults;
    for (const ConfigKey& k : config_keys()) defaults[k.name] = k.readme_default;
    EXPECT_EQ(defaults["log_level"], "`" + c.log_level + "`");
    EXPECT_EQ(defaults["allow_root"], c.allow_root ? "`true`" : "`false`");
    EXPECT_EQ(defaults["apps"], "required");
    EXPECT_NE(error_of(json::object()).find("apps: missing (a list of apps)"), std::string::npos);
}

}  // namespace
}  // namespace herd::core
