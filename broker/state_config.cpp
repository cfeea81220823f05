// The "state" section of the herd config; see state_config.hpp.
#include "broker/state_config.hpp"

#include <charconv>
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

std::string SentinelAddress::text() const {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
           std::to_string(port);
}

SentinelAddress parse_sentinel_address(std::string_view text) {
    SentinelAddress a;
    std::string_view port;
    if (text.starts_with('[')) {
        auto close = text.find(']');
        if (close == std::string_view::npos)
            throw core::Error("an IPv6 address must end with ']' (\"[::1]:26379\")");
        a.host = std::string(text.substr(1, close - 1));
        std::string_view after = text.substr(close + 1);
        if (!after.starts_with(':'))
            throw core::Error("expected \"HOST:PORT\" (\"[::1]:26379\"): the port is missing");
        port = after.substr(1);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos)
            throw core::Error("expected \"HOST:PORT\" (\"10.0.0.1:26379\"): the port is missing");
        a.host = std::string(text.substr(0, colon));
        if (a.host.find(':') != std::string::npos)
            throw core::Error("an IPv6 address needs brackets (\"[::1]:26379\")");
        port = text.substr(colon + 1);
    }
    if (a.host.empty()) throw core::Error("the host is missing");
    for (char ch : a.host)
        if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f || ch == '/' || ch == '@')
            throw core::Error("the host contains an invalid character");
    int v = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || v < 1 || v > 65535)
        throw core::Error("the port must be a number from 1 to 65535");
    a.port = v;
    return a;
}

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
    const std::set<std::string> redis_keys = {"backend",
                                              "url",
                                              "prefix",
                                              "poll_ms",
                                              "resync_ms",
                                              "connect_timeout_ms",
                                              "reconnect_max_ms",
                                              "sentinels",
                                              "master_name",
                                              "user",
                                              "password",
                                              "db",
                                              "sentinel_timeout_ms",
                                              "sentinel_user",
                                              "sentinel_password",
                                              "min_replicas_ack",
                                              "replica_ack_timeout_ms"};
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
    if (j.contains("sentinels")) {
        if (j.contains("url"))
            fail(where + ".sentinels",
                 "give either \"url\" (one Redis) or \"sentinels\" (find the primary through "
                 "Redis Sentinel), not both");
        const json& list = j["sentinels"];
        if (!list.is_array() || list.empty())
            fail(where + ".sentinels",
                 "expected a non-empty array of \"HOST:PORT\" strings, got " + describe(list));
        for (std::size_t i = 0; i < list.size(); ++i) {
            std::string at = where + ".sentinels[" + std::to_string(i) + "]";
            std::string text = get_string(list[i], at);
            try {
                r.sentinels.push_back(parse_sentinel_address(text));
            } catch (const core::Error& e) {
                fail(at, std::string(e.what()) + ", got " + describe(list[i]));
            }
            for (std::size_t k = 0; k + 1 < r.sentinels.size(); ++k)
                if (r.sentinels[k] == r.sentinels.back())
                    fail(at, "repeats sentinels[" + std::to_string(k) + "] " + describe(list[i]));
        }
        if (!j.contains("master_name"))
            fail(where + ".master_name",
                 "required with \"sentinels\": the name the sentinels monitor the primary under "
                 "(\"sentinel monitor NAME ...\")");
        r.master_name = get_string(j["master_name"], where + ".master_name");
        if (r.master_name.empty()) fail(where + ".master_name", "must not be empty");
        for (char ch : r.master_name)
            if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f)
                fail(where + ".master_name", "must not contain spaces or control characters, got " +
                                                 describe(j["master_name"]));
        // The data connections' credentials and database: what the URL would have said.
        RedisUrl& u = r.parsed;
        u = RedisUrl{};
        u.host.clear();
        u.port = 0;
        if (j.contains("user")) u.user = get_string(j["user"], where + ".user");
        if (j.contains("password")) {
            u.password = get_string(j["password"], where + ".password");
            u.raw_password_text = u.password;
            if (u.password.empty()) fail(where + ".password", "must not be empty (leave it out)");
        }
        if (!u.user.empty() && u.password.empty())
            fail(where + ".user", "needs \"password\" (AUTH USER PASSWORD)");
        if (j.contains("db")) u.db = get_int(j["db"], where + ".db", 0, 65535);
        if (j.contains("sentinel_timeout_ms"))
            r.sentinel_timeout_ms =
                get_int(j["sentinel_timeout_ms"], where + ".sentinel_timeout_ms", 10, 600000);
        if (j.contains("sentinel_user"))
            r.sentinel_user = get_string(j["sentinel_user"], where + ".sentinel_user");
        if (j.contains("sentinel_password")) {
            r.sentinel_password = get_string(j["sentinel_password"], where + ".sentinel_password");
            if (r.sentinel_password.empty())
                fail(where + ".sentinel_password", "must not be empty (leave it out)");
        }
        if (!r.sentinel_user.empty() && r.sentinel_password.empty())
            fail(where + ".sentinel_user", "needs \"sentinel_password\" (AUTH USER PASSWORD)");
        r.url.clear();
    } else {
        for (const char* key :
             {"master_name", "sentinel_timeout_ms", "sentinel_user", "sentinel_password"})
            if (j.contains(key)) fail(where + "." + key, "only with \"sentinels\"");
        for (const char* key : {"user", "password", "db"})
            if (j.contains(key))
                fail(where + "." + key,
                     "only with \"sentinels\"; with \"url\", put it in the URL "
                     "(redis://USER:PASSWORD@HOST:PORT/DB)");
    }
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
    if (j.contains("min_replicas_ack"))
        r.min_replicas_ack = get_int(j["min_replicas_ack"], where + ".min_replicas_ack", 0, 100);
    if (j.contains("replica_ack_timeout_ms")) {
        if (r.min_replicas_ack == 0)
            fail(where + ".replica_ack_timeout_ms", "only with \"min_replicas_ack\" above 0");
        r.replica_ack_timeout_ms =
            get_int(j["replica_ack_timeout_ms"], where + ".replica_ack_timeout_ms", 1, 600000);
    }
    // Commands queued behind a WAIT wait with it: it must leave them time to be answered.
    if (r.min_replicas_ack > 0 && r.replica_ack_timeout_ms * 2 > r.connect_timeout_ms)
        fail(where + ".replica_ack_timeout_ms",
             "must be at most half of connect_timeout_ms (" + std::to_string(r.connect_timeout_ms) +
                 "), got " + std::to_string(r.replica_ack_timeout_ms) +
                 ": commands sent behind a WAIT count as unanswered after connect_timeout_ms");
    return c;
}

}  // namespace herd::broker
