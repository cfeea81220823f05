// The "state" section of the herd config; see state_config.hpp.
#include "broker/state_config.hpp"

#include <filesystem>
#include <set>

#include "core/config.hpp"

namespace herd::broker {
namespace {

using json = nlohmann::json;

std::string describe(const json& j) {
    std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > 60) text = text.substr(0, 57) + "...";
    return text;
}

[[noreturn]] void fail(const std::string& where, const std::string& what) {
    throw core::ConfigError(where + ": " + what);
}

std::string get_string(const json& j, const std::string& where) {
    if (!j.is_string()) fail(where, "expected a string, got " + describe(j));
    return j.get<std::string>();
}

int get_int(const json& j, const std::string& where, int min, int max) {
    if (j.is_number_unsigned()) {
        auto v = j.get<unsigned long long>();
        if (v >= static_cast<unsigned long long>(min) && v <= static_cast<unsigned long long>(max))
            return static_cast<int>(v);
    } else if (j.is_number_integer()) {
        auto v = j.get<long long>();
        if (v >= min && v <= max) return static_cast<int>(v);
    }
    fail(where, "expected an integer from " + std::to_string(min) + " to " + std::to_string(max) +
                    ", got " + describe(j));
}

std::string resolve(const std::string& path, const std::string& base_dir) {
    std::filesystem::path p(path);
    if (p.is_relative() && !base_dir.empty()) p = std::filesystem::path(base_dir) / p;
    return p.lexically_normal().string();
}

}  // namespace

StateConfig default_state_config(const std::string& default_path) {
    StateConfig c;
    c.backend = StateConfig::Backend::file;
    c.file.path = default_path;
    return c;
}

StateConfig parse_state_config(const json& j, const std::string& base_dir,
                               const std::string& json_path, const std::string& default_path) {
    const std::string& where = json_path;
    if (!j.is_object()) fail(where, "expected an object, got " + describe(j));
    StateConfig c = default_state_config(default_path);
    std::string backend = "file";
    if (j.contains("backend")) {
        backend = get_string(j["backend"], where + ".backend");
        if (backend != "file" && backend != "redis")
            fail(where + ".backend",
                 "expected \"file\" or \"redis\", got " + describe(j["backend"]));
    }
    const std::set<std::string> file_keys = {"backend", "path"};
    const std::set<std::string> redis_keys = {"backend",         "url",       "prefix",
                                              "poll_ms",         "resync_ms", "connect_timeout_ms",
                                              "reconnect_max_ms"};
    const auto& known = backend == "file" ? file_keys : redis_keys;
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (known.contains(it.key())) continue;
        const auto& other = backend == "file" ? redis_keys : file_keys;
        if (other.contains(it.key()))
            fail(where + "." + it.key(), "only for backend \"" +
                                             std::string(backend == "file" ? "redis" : "file") +
                                             "\" (this one is \"" + backend + "\")");
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        fail(where + "." + it.key(), "unknown key (known keys: " + list + ")");
    }

    if (backend == "file") {
        c.backend = StateConfig::Backend::file;
        if (j.contains("path")) {
            std::string path = get_string(j["path"], where + ".path");
            if (path.empty()) fail(where + ".path", "must not be empty");
            if (path.ends_with('/'))
                fail(where + ".path", "must name a file, not a folder, got " + describe(j["path"]));
            c.file.path = resolve(path, base_dir);
        }
        return c;
    }

    c.backend = StateConfig::Backend::redis;
    RedisStateConfig& r = c.redis;
    if (j.contains("url")) {
        r.url = get_string(j["url"], where + ".url");
        try {
            r.parsed = parse_redis_url(r.url);
        } catch (const core::Error& e) {
            // The message never quotes the URL: it may hold the password.
            fail(where + ".url", e.what());
        }
    }
    if (j.contains("prefix")) {
        r.prefix = get_string(j["prefix"], where + ".prefix");
        if (r.prefix.size() > 200) fail(where + ".prefix", "longer than 200 bytes");
        for (char ch : r.prefix)
            if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f)
                fail(where + ".prefix",
                     "must not contain spaces or control characters, got " + describe(j["prefix"]));
    }
    if (j.contains("poll_ms")) r.poll_ms = get_int(j["poll_ms"], where + ".poll_ms", 10, 3600000);
    if (j.contains("resync_ms"))
        r.resync_ms = get_int(j["resync_ms"], where + ".resync_ms", 100, 86400000);
    if (j.contains("connect_timeout_ms"))
        r.connect_timeout_ms =
            get_int(j["connect_timeout_ms"], where + ".connect_timeout_ms", 100, 600000);
    if (j.contains("reconnect_max_ms"))
        r.reconnect_max_ms =
            get_int(j["reconnect_max_ms"], where + ".reconnect_max_ms", 10, 600000);
    r.reconnect_min_ms = std::min(r.reconnect_min_ms, r.reconnect_max_ms);
    return c;
}

}  // namespace herd::broker
