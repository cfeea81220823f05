// The herd config file; see config.hpp and the README's config reference.
#include "core/config.hpp"

#include <sched.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/json_text.hpp"

namespace herd::core {
namespace {

using json = nlohmann::json;

std::string describe(const json& j) {
    std::string text = j.dump();
    if (text.size() > 60) text = text.substr(0, 57) + "...";
    return text;
}

// Control characters as \xNN: an error message is one log line, and a NUL (from a key or a
// value quoted in the message) would end its C string early.
std::string printable(const std::string& text) {
    std::string out;
    for (unsigned char c : text) {
        if (c < 0x20 || c == 0x7f) {
            static const char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += static_cast<char>(c);
        }
    }
    return out;
}

[[noreturn]] void fail(const std::string& where, const std::string& what) {
    throw ConfigError(printable(where + ": " + what));
}

void reject_unknown_keys(const json& object, const std::string& where,
                         std::set<std::string> known) {
    for (auto it = object.begin(); it != object.end(); ++it) {
        if (known.contains(it.key())) continue;
        std::string list;
        for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
        fail(where.empty() ? it.key() : where + "." + it.key(),
             "unknown key (known keys: " + list + ")");
    }
}

const json& require_object(const json& j, const std::string& where) {
    if (!j.is_object())
        fail(where.empty() ? "config" : where, "expected an object, got " + describe(j));
    return j;
}

std::string get_string(const json& j, const std::string& where) {
    if (!j.is_string()) fail(where, "expected a string, got " + describe(j));
    return j.get<std::string>();
}

// An address ("127.0.0.1:9100"): parse_address's complaint, as a ConfigError naming `where`.
SocketAddress get_address(const json& j, const std::string& where) {
    std::string text = get_string(j, where);
    try {
        return parse_address(text);
    } catch (const Error& e) {
        fail(where, e.what());
    }
}

long long get_int(const json& j, const std::string& where, long long min, long long max) {
    if (!j.is_number_integer())
        fail(where, "expected an integer from " + std::to_string(min) + " to " +
                        std::to_string(max) + ", got " + describe(j));
    long long v =
        j.is_number_unsigned() && j.get<unsigned long long>() > static_cast<unsigned long long>(max)
            ? max + 1
            : j.get<long long>();
    if (v < min || v > max)
        fail(where, "expected an integer from " + std::to_string(min) + " to " +
                        std::to_string(max) + ", got " + describe(j));
    return v;
}

bool valid_name(const std::string& s) {
    if (s.empty() || s.size() > 64) return false;
    for (char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.'))
            return false;
    return true;
}

// A string that reaches the C library (a path, an environment variable) must not hold NUL:
// dlopen, bind and setenv would silently use only what comes before it.
const std::string& no_nul(const std::string& s, const std::string& where) {
    if (s.find('\0') != std::string::npos) fail(where, "must not contain a NUL character");
    return s;
}

std::string resolve(const std::string& path, const std::string& base_dir) {
    std::filesystem::path p(path);
    if (p.is_relative() && !base_dir.empty()) p = std::filesystem::path(base_dir) / p;
    return p.lexically_normal().string();
}

PluginConfig parse_plugin(const json& j, const std::string& where, const std::string& base_dir) {
    require_object(j, where);
    reject_unknown_keys(j, where, {"mount", "path", "config"});
    PluginConfig p;
    if (!j.contains("path")) fail(where + ".path", "missing (the plugin's .so file)");
    p.path = no_nul(get_string(j["path"], where + ".path"), where + ".path");
    if (p.path.empty()) fail(where + ".path", "must not be empty");
    p.path = resolve(p.path, base_dir);
    p.mount = j.contains("mount") ? get_string(j["mount"], where + ".mount") : "/";
    if (!p.mount.starts_with('/'))
        fail(where + ".mount", "must start with \"/\", got " + describe(j["mount"]));
    while (p.mount.size() > 1 && p.mount.ends_with('/')) p.mount.pop_back();
    if (p.mount.find_first_of(std::string_view("?# \t\r\n\0", 7)) != std::string::npos)
        fail(where + ".mount", "must be a plain path, got " + describe(j["mount"]));
    if (j.contains("config")) {
        if (!j["config"].is_object())
            fail(where + ".config", "expected an object, got " + describe(j["config"]));
        p.config = j["config"];
    }
    return p;
}

AppConfig parse_app(const json& j, const std::string& where, const std::string& base_dir) {
    require_object(j, where);
    std::set<std::string> known;
    for (const AppKey& k : app_keys()) known.insert(k.name);
    reject_unknown_keys(j, where, known);
    AppConfig a;
    if (!j.contains("name")) fail(where + ".name", "missing");
    a.name = get_string(j["name"], where + ".name");
    if (!valid_name(a.name))
        fail(where + ".name",
             "expected 1 to 64 letters, digits, '-', '_' or '.', got " + describe(j["name"]));
    if (!j.contains("listen")) fail(where + ".listen", "missing (e.g. \"127.0.0.1:8080\")");
    try {
        a.listen = parse_address(get_string(j["listen"], where + ".listen"));
    } catch (const ConfigError&) {
        throw;
    } catch (const Error& e) {
        fail(where + ".listen", e.what());
    }
    if (j.contains("workers")) {
        const json& w = j["workers"];
        if (w.is_string() && w.get<std::string>() == "auto")
            a.workers = cpu_count();
        else if (w.is_number_integer() && w.get<long long>() >= 1 && w.get<long long>() <= 1024)
            a.workers = static_cast<int>(w.get<long long>());
        else
            fail(where + ".workers",
                 "expected a positive integer or \"auto\" (at most 1024), got " + describe(w));
    }
    if (j.contains("balance")) {
        a.balance = get_string(j["balance"], where + ".balance");
        if (a.balance != "shared" && a.balance != "reuseport" && a.balance != "round-robin" &&
            a.balance != "least-conn")
            fail(where + ".balance",
                 "expected \"shared\", \"reuseport\", \"round-robin\" or \"least-conn\", got " +
                     describe(j["balance"]));
    }
    if (!j.contains("plugins"))
        fail(where + ".plugins", "missing (a list of {\"mount\", \"path\", \"config\"})");
    const json& plugins = j["plugins"];
    if (!plugins.is_array() || plugins.empty())
        fail(where + ".plugins", "expected a non-empty array, got " + describe(plugins));
    std::set<std::string> mounts;
    for (std::size_t i = 0; i < plugins.size(); ++i) {
        std::string pw = where + ".plugins[" + std::to_string(i) + "]";
        PluginConfig p = parse_plugin(plugins[i], pw, base_dir);
        if (!mounts.insert(p.mount).second)
            fail(pw + ".mount", "\"" + p.mount + "\" is mounted twice");
        a.plugins.push_back(std::move(p));
    }
    if (j.contains("env")) {
        const json& env = j["env"];
        if (!env.is_object())
            fail(where + ".env", "expected an object of strings, got " + describe(env));
        for (auto it = env.begin(); it != env.end(); ++it) {
            std::string ew = where + ".env." + it.key();
            if (it.key().empty() ||
                it.key().find_first_of(std::string_view("=\0", 2)) != std::string::npos)
                fail(ew, "not a valid environment variable name");
            a.env[it.key()] = no_nul(get_string(it.value(), ew), ew);
        }
    }
    for (const AppKey& k : app_keys()) {
        if (!j.contains(k.name) || (!k.int_member && !k.size_member && !k.u64_member)) continue;
        long long v = get_int(j[k.name], where + "." + k.name, k.min, k.max);
        if (k.int_member) a.*k.int_member = static_cast<int>(v);
        if (k.size_member) a.*k.size_member = static_cast<std::size_t>(v);
        if (k.u64_member) a.*k.u64_member = static_cast<std::uint64_t>(v);
    }
    // Not given: as long as the watchdog's limit, the other "stuck" limit.
    if (!j.contains("start_timeout_ms")) a.start_timeout_ms = a.watchdog_ms;
    if (j.contains("access_log")) {
        a.access_log =
            no_nul(get_string(j["access_log"], where + ".access_log"), where + ".access_log");
        if (a.access_log.empty()) fail(where + ".access_log", "must not be empty");
        a.access_log = resolve(a.access_log, base_dir);
    }
    return a;
}

std::string canonical_address(const SocketAddress& a) {
    return std::string(reinterpret_cast<const char*>(&a.storage), a.length);
}

void parse_apps(const json& apps, Config& c, const std::string& base_dir) {
    if (!apps.is_array() || apps.empty())
        fail("apps", "expected a non-empty array, got " + describe(apps));
    std::set<std::string> names, listens;
    for (std::size_t i = 0; i < apps.size(); ++i) {
        std::string where = "apps[" + std::to_string(i) + "]";
        AppConfig a = parse_app(apps[i], where, base_dir);
        if (!names.insert(a.name).second)
            fail(where + ".name", "\"" + a.name + "\" is used by another app");
        // Compared as bound addresses, so \"*:80\" and \"0.0.0.0:80\" are the same.
        if (a.listen.port() != 0 && !listens.insert(canonical_address(a.listen)).second)
            fail(where + ".listen", "\"" + a.listen.text + "\" is used by another app");
        c.apps.push_back(std::move(a));
    }
}

}  // namespace

std::span<const AppKey> app_keys() {
    using A = AppConfig;
    // Integer keys: name, the README's default, bounds and member (read by the loop in
    // parse_app). The others: name, the README's default and how two configs differ in it (read
    // one by one in parse_app).
    static const AppKey keys[] = {
        {.name = "name",
         .readme_default = "required",
         .differs = [](const A& a, const A& b) { return a.name != b.name; }},
        {.name = "listen",
         .readme_default = "required",
         .differs = [](const A& a, const A& b) { return !(a.listen == b.listen); }},
        {.name = "workers",
         .readme_default = "1",
         .differs = [](const A& a, const A& b) { return a.workers != b.workers; }},
        {.name = "balance",
         .readme_default = "`shared`",
         .differs = [](const A& a, const A& b) { return a.balance != b.balance; }},
        {.name = "plugins",
         .readme_default = "required",
         .differs = [](const A& a, const A& b) { return !(a.plugins == b.plugins); }},
        {.name = "env",
         .readme_default = "none",
         .differs = [](const A& a, const A& b) { return a.env != b.env; }},
        {.name = "access_log",
         .readme_default = "none",
         .differs = [](const A& a, const A& b) { return a.access_log != b.access_log; }},
        {.name = "max_body_bytes",
         .readme_default = "1048576",
         .min = 0,
         .max = 1LL << 32,
         .size_member = &A::max_body_bytes},
        {.name = "max_header_bytes",
         .readme_default = "16384",
         .min = 1024,
         .max = 1 << 20,
         .size_member = &A::max_header_bytes},
        {.name = "header_timeout_ms",
         .readme_default = "10000",
         .min = 1,
         .max = 3600000,
         .int_member = &A::header_timeout_ms},
        {.name = "keepalive_timeout_ms",
         .readme_default = "75000",
         .min = 1,
         .max = 3600000,
         .int_member = &A::keepalive_timeout_ms},
        {.name = "request_timeout_ms",
         .readme_default = "30000",
         .min = 0,
         .max = 86400000,
         .int_member = &A::request_timeout_ms},
        {.name = "max_ws_message_bytes",
         .readme_default = "1048576",
         .min = 125,
         .max = 1LL << 30,
         .size_member = &A::max_ws_message_bytes},
        {.name = "ws_send_queue_bytes",
         .readme_default = "1048576",
         .min = 4096,
         .max = 1LL << 30,
         .size_member = &A::ws_send_queue_bytes},
        {.name = "ws_ping_interval_ms",
         .readme_default = "30000",
         .min = 0,
         .max = 3600000,
         .int_member = &A::ws_ping_interval_ms},
        {.name = "blocking_threads",
         .readme_default = "4",
         .min = 1,
         .max = 256,
         .int_member = &A::blocking_threads},
        {.name = "backlog",
         .readme_default = "511",
         .min = 1,
         .max = 65535,
         .int_member = &A::backlog},
        {.name = "drain_timeout_ms",
         .readme_default = "5000",
         .min = 0,
         .max = 3600000,
         .int_member = &A::drain_timeout_ms},
        {.name = "watchdog_ms",
         .readme_default = "30000",
         .min = 200,
         .max = 3600000,
         .int_member = &A::watchdog_ms},
        {.name = "start_timeout_ms",
         .readme_default = "`watchdog_ms`",
         .min = 200,
         .max = 3600000,
         .int_member = &A::start_timeout_ms},
        {.name = "restart_backoff_ms",
         .readme_default = "100",
         .min = 0,
         .max = 3600000,
         .int_member = &A::restart_backoff_ms},
        {.name = "restart_backoff_max_ms",
         .readme_default = "15000",
         .min = 0,
         .max = 3600000,
         .int_member = &A::restart_backoff_max_ms},
        {.name = "healthy_after_ms",
         .readme_default = "10000",
         .min = 0,
         .max = 86400000,
         .int_member = &A::healthy_after_ms},
        {.name = "max_requests",
         .readme_default = "0",
         .min = 0,
         .max = 1LL << 40,
         .u64_member = &A::max_requests},
        {.name = "max_rss_mb",
         .readme_default = "0",
         .min = 0,
         .max = 1 << 24,
         .u64_member = &A::max_rss_mb},
    };
    return keys;
}

bool app_key_differs(const AppKey& k, const AppConfig& a, const AppConfig& b) {
    if (k.int_member) return a.*k.int_member != b.*k.int_member;
    if (k.size_member) return a.*k.size_member != b.*k.size_member;
    if (k.u64_member) return a.*k.u64_member != b.*k.u64_member;
    return k.differs != nullptr && k.differs(a, b);
}

int cpu_count() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? static_cast<int>(n) : 1;
}

std::span<const ConfigKey> config_keys() {
    // In the order parse_config reads them: "group" needs "user" first; "apps" last.
    static const ConfigKey keys[] = {
        {.name = "user",
         .readme_default = "none",
         .type = "string",
         .read =
             [](const json& v, Config& c, const std::string&) {
                 c.user = no_nul(get_string(v, "user"), "user");
                 if (c.user.empty()) fail("user", "must not be empty");
             }},
        {.name = "group",
         .readme_default = "none",
         .type = "string",
         .read =
             [](const json& v, Config& c, const std::string&) {
                 c.group = no_nul(get_string(v, "group"), "group");
                 if (c.group.empty()) fail("group", "must not be empty");
                 if (c.user.empty()) fail("group", "needs \"user\" as well");
             }},
        {.name = "allow_root",
         .readme_default = "`false`",
         .type = "boolean",
         .read =
             [](const json& v, Config& c, const std::string&) {
                 if (!v.is_boolean())
                     fail("allow_root", "expected true or false, got " + describe(v));
                 c.allow_root = v.get<bool>();
             }},
        {.name = "log_level",
         .readme_default = "`info`",
         .type = "\"debug\", \"info\", \"warn\" or \"error\"",
         .read =
             [](const json& v, Config& c, const std::string&) {
                 c.log_level = get_string(v, "log_level");
                 if (c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" &&
                     c.log_level != "error")
                     fail("log_level", "expected \"debug\", \"info\", \"warn\" or \"error\", got " +
                                           describe(v));
             }},
        {.name = "control",
         .readme_default = "the config file's name with `.sock`",
         .type = "path",
         .read =
             [](const json& v, Config& c, const std::string& base_dir) {
                 c.control_path = no_nul(get_string(v, "control"), "control");
                 if (c.control_path.empty()) fail("control", "must not be empty");
                 c.control_path = resolve(c.control_path, base_dir);
             }},
        {.name = "state",
         .readme_default = "file `CONFIG.state.json`",
         .type = "object",
         .read =
             [](const json& v, Config& c, const std::string&) {
                 // Validated by the broker's parser (broker/state_config.hpp), which the server
                 // runs right after this one: the core does not depend on the broker.
                 if (!v.is_object())
                     fail("state",
                          "expected an object ({\"backend\": \"file\" or \"redis\", ...}), got " +
                              describe(v));
                 c.state = v;
             }},
        {.name = "log_file",
         .readme_default = "standard error",
         .type = "path",
         .read =
             [](const json& v, Config& c, const std::string& base_dir) {
                 c.log_file = no_nul(get_string(v, "log_file"), "log_file");
                 if (c.log_file.empty()) fail("log_file", "must not be empty");
                 c.log_file = resolve(c.log_file, base_dir);
             }},
        {.name = "metrics",
         .readme_default = "none",
         .type = "address",
         .read = [](const json& v, Config& c,
                    const std::string&) { c.metrics = get_address(v, "metrics"); }},
        {.name = "metrics_auth",
         .readme_default = "none",
         .type = "object",
         .read =
             [](const json& v, Config& c, const std::string&) {
                 if (!v.is_object())  // never quoted: it may be the secret itself
                     fail("metrics_auth", std::string("expected an object ({\"token\": ...} or "
                                                      "{\"user\": ..., \"password\": ...}), got ") +
                                              v.type_name());
                 reject_unknown_keys(v, "metrics_auth", {"token", "user", "password"});
                 auto secret = [&](const char* key) {
                     std::string where = std::string("metrics_auth.") + key;
                     std::string text = get_string(v[key], where);
                     if (text.empty()) fail(where, "must not be empty");
                     // Never quoted: it is a secret.
                     for (char ch : text)
                         if (static_cast<unsigned char>(ch) < 0x21 || ch == 0x7f)
                             fail(where, "must not contain spaces or control characters");
                     return text;
                 };
                 auto& a = c.metrics_auth;
                 if (v.contains("token")) {
                     if (v.contains("user") || v.contains("password"))
                         fail("metrics_auth",
                              "give either \"token\" (a bearer token) or "
                              "\"user\" and \"password\" (basic), not both");
                     a.token = secret("token");
                 } else if (v.contains("user") || v.contains("password")) {
                     if (!v.contains("user") || !v.contains("password"))
                         fail("metrics_auth",
                              "basic authentication needs both \"user\" and "
                              "\"password\"");
                     a.user = secret("user");
                     if (a.user.find(':') != std::string::npos)
                         fail("metrics_auth.user", "must not contain ':'");
                     a.password = secret("password");
                 } else {
                     fail("metrics_auth",
                          "expected {\"token\": ...} or {\"user\": ..., "
                          "\"password\": ...}");
                 }
             }},
        {.name = "health",
         .readme_default = "none",
         .type = "address",
         .read = [](const json& v, Config& c,
                    const std::string&) { c.health = get_address(v, "health"); }},
        {.name = "health_max_state_age_ms",
         .readme_default = "30000",
         .type = "integer",
         .read =
             [](const json& v, Config& c, const std::string&) {
                 c.health_max_state_age_ms =
                     static_cast<int>(get_int(v, "health_max_state_age_ms", 0, 86400000));
             }},
        {.name = "apps",
         .readme_default = "required",
         .type = "array",
         .required = "a list of apps",
         .read = parse_apps},
    };
    return keys;
}

Config parse_config(const json& j, const std::string& base_dir) {
    require_object(j, "");
    std::set<std::string> known;
    for (const ConfigKey& k : config_keys()) known.insert(k.name);
    reject_unknown_keys(j, "", known);
    Config c;
    c.dir = base_dir;
    for (const ConfigKey& k : config_keys()) {
        if (j.contains(k.name))
            k.read(j[k.name], c, base_dir);
        else if (k.required != nullptr)
            fail(k.name, std::string("missing (") + k.required + ")");
    }
    return c;
}

Config parse_config_text(const std::string& text, const std::string& origin,
                         const std::string& base_dir) {
    json j;
    try {
        std::string duplicate;
        if (!parse_json_text(text, j, duplicate)) throw ConfigError(origin + ": " + duplicate);
    } catch (const json::exception& e) {
        // A syntax error (parse_error), or a number too large for a double (out_of_range 406,
        // "1e400"): both are the file's fault, never a crash. nlohmann's message carries "at
        // line L, column C" for the first; drop its "[json.exception...]" tag.
        std::string what = e.what();
        auto tag_end = what.find("] ");
        if (what.starts_with("[json.exception") && tag_end != std::string::npos)
            what = what.substr(tag_end + 2);
        throw ConfigError(origin + ": invalid JSON: " + what);
    }
    try {
        return parse_config(j, base_dir);
    } catch (const ConfigError& e) {
        throw ConfigError(origin + ": " + e.what());
    }
}

Config load_config(const std::string& file) {
    std::filesystem::path path = std::filesystem::absolute(file).lexically_normal();
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw ConfigError("cannot read config file " + path.string() + ": " + std::strerror(errno));
    std::stringstream ss;
    ss << in.rdbuf();
    Config c = parse_config_text(ss.str(), path.string(), path.parent_path().string());
    c.file = path.string();
    if (c.control_path.empty()) c.control_path = default_control_path(c.file);
    c.state_default_path = (path.parent_path() / path.stem()).string() + ".state.json";
    return c;
}

std::string default_control_path(const std::string& file) {
    std::filesystem::path path = std::filesystem::absolute(file).lexically_normal();
    return (path.parent_path() / path.stem()).string() + ".sock";
}

std::string control_path_of(const std::string& file, std::string* problem) {
    try {
        return load_config(file).control_path;
    } catch (const Error& e) {
        if (problem != nullptr) *problem = e.what();
    }
    std::filesystem::path path = std::filesystem::absolute(file).lexically_normal();
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_object() && j.contains("control") && j["control"].is_string() &&
        !j["control"].get<std::string>().empty())
        return resolve(j["control"].get<std::string>(), path.parent_path().string());
    return default_control_path(file);
}

}  // namespace herd::core
