// Reading the master's status document (`herd status --json`, /status.json) for what shows
// it to people: the status page and `herd top`. Any field may be missing or of another type:
// it then reads as empty or 0, never as an exception.
#pragma once

#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace herd::master {

// A field as text: a string as it is, anything else as JSON, "" when missing or null.
inline std::string field_text(const nlohmann::json& j, const char* key) {
    if (!j.is_object()) return "";
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return "";
    return it->is_string() ? it->get<std::string>() : it->dump();
}

// A numeric field, or 0.
inline double field_number(const nlohmann::json& j, const char* key) {
    if (!j.is_object()) return 0;
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<double>() : 0;
}

// "42s", "3m 05s", "2h 07m", "4d 01h".
inline std::string short_duration(double seconds) {
    if (!(seconds >= 0)) return "?";
    auto s = static_cast<long long>(seconds);
    if (s < 60) return fmt::format("{}s", s);
    if (s < 3600) return fmt::format("{}m {:02}s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{}h {:02}m", s / 3600, s % 3600 / 60);
    return fmt::format("{}d {:02}h", s / 86400, s % 86400 / 3600);
}

}  // namespace herd::master
