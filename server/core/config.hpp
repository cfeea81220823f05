// The herd config file: JSON, validated strictly, every error naming its JSON path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/socket.hpp"

namespace herd::core {

// "apps[0].workers: expected a positive integer or \"auto\", got -2"
class ConfigError : public Error {
  public:
    using Error::Error;
};

struct PluginConfig {
    std::string mount;  // "/", "/api": matches the path itself and everything below it
    std::string path;   // absolute, resolved against the config file's folder
    nlohmann::json config = nlohmann::json::object();

    bool operator==(const PluginConfig&) const = default;
};

struct AppConfig {
    std::string name;
    SocketAddress listen;
    int workers = 1;
    std::string balance = "shared";
    std::vector<PluginConfig> plugins;
    std::map<std::string, std::string> env;
    int drain_timeout_ms = 5000;
    std::size_t max_body_bytes = 1 << 20;
    std::size_t max_header_bytes = 16 << 10;
    int header_timeout_ms = 10000;
    int keepalive_timeout_ms = 75000;
    // A handler that has not answered this long after the request arrived: 504, and its work
    // is cancelled. 0: no limit.
    int request_timeout_ms = 30000;
    // WebSockets (worker/ws_session.cpp): the largest message a client may send (1009 above
    // it), the unsent bytes a socket may have before herd closes it (1008), and how often a
    // silent client is pinged (one silent for two intervals is cut off; 0: never).
    std::size_t max_ws_message_bytes = 1 << 20;
    std::size_t ws_send_queue_bytes = 1 << 20;
    int ws_ping_interval_ms = 30000;
    int blocking_threads = 4;  // the worker's pool for Loop::run_blocking (started at first use)
    int backlog = 511;
    int watchdog_ms = 30000;  // a ready worker silent this long (stuck in a plugin) is killed
    // A worker not ready this long after its fork (a plugin's on_start stuck) is killed and
    // counted as a start failure. Default: watchdog_ms.
    int start_timeout_ms = 30000;
    int restart_backoff_ms = 100;        // delay before the 2nd restart in a row; doubles; 0: none
    int restart_backoff_max_ms = 15000;  // cap of that delay
    int healthy_after_ms = 10000;        // a worker that ran this long resets the back-off
    std::uint64_t max_requests = 0;      // recycle a worker after this many requests (0: never)
    std::uint64_t max_rss_mb = 0;  // recycle a worker whose resident memory exceeds this (0: never)
    std::string access_log;        // file for one line per request (combined format); "" none

    // Reload compares an app's new config with the running one.
    bool operator==(const AppConfig&) const = default;
};

struct Config {
    std::string file;  // absolute path of the config file ("" when parsed from a string)
    std::string dir;   // its folder: relative paths resolve here
    std::vector<AppConfig> apps;
    std::string log_level = "info";
    // The master's control socket (herd status/stop): "control" in the file, by default the
    // config file's name with ".sock" ("/etc/herd/herd.json" -> "/etc/herd/herd.sock").
    std::string control_path;
    // The master's log (every worker's lines go through it): "" for standard error. Reopened
    // on SIGUSR1.
    std::string log_file;
    // Prometheus endpoint ("127.0.0.1:9100"); text empty when there is none. It also serves the
    // status page (/) and /status.json.
    SocketAddress metrics;
    // Credentials the metrics address asks for (/, /status.json, /metrics; not /healthz):
    // a bearer token, or a user and password (basic); none when both are empty.
    struct MetricsAuth {
        std::string token;
        std::string user, password;
        bool required() const { return !token.empty() || !user.empty(); }
        bool operator==(const MetricsAuth&) const = default;
    };
    MetricsAuth metrics_auth;
    // Health endpoint for load balancers (GET /healthz, master/health.hpp); text empty when
    // there is none. It answers 503 once the shared state's backend has been down longer than
    // health_max_state_age_ms (0: never for that reason).
    SocketAddress health;
    int health_max_state_age_ms = 30000;
    // The "state" section as written (null when absent), for broker::parse_state_config, and
    // the file backend's default path beside the config ("herd.json" -> "herd.state.json").
    nlohmann::json state;
    std::string state_default_path;
    // Least privilege: a master started as root runs workers and the broker as `user` (and
    // `group`, else the user's own), after binding and before any plugin is loaded. As root
    // without a user, herd refuses to start unless allow_root is true.
    std::string user;
    std::string group;
    bool allow_root = false;
};

// Every key of an app entry, declared once: its name, its default as the README states it, how
// it is read, and whether it differs between two configs. Parsing, the unknown-key check, a
// reload's "what changed" and the README check (test_docs: a row per key, with this default)
// all go through this list.
struct AppKey {
    const char* name;
    // The README's Default column for apps[].NAME, verbatim ("30000", "`shared`", "required").
    const char* readme_default = "";
    // Integer keys: their bounds, and the member they fill (one of the three is set).
    long long min = 0, max = 0;
    int AppConfig::*int_member = nullptr;
    std::size_t AppConfig::*size_member = nullptr;
    std::uint64_t AppConfig::*u64_member = nullptr;
    // Whether a and b differ in this key.
    bool (*differs)(const AppConfig& a, const AppConfig& b) = nullptr;
};
std::span<const AppKey> app_keys();
bool app_key_differs(const AppKey& k, const AppConfig& a, const AppConfig& b);

// Every top-level key of the config file, declared once: its name, its default as the README
// states it, what its value must be, and how it is read and checked. parse_config reads them
// in this order and refuses any other key; test_docs checks that the README's config table has
// a row for each, with this default. (The keys of an app entry are app_keys().)
struct ConfigKey {
    const char* name;
    // The README's Default column for NAME, verbatim ("none", "`info`", "required").
    const char* readme_default = "";
    // What the value must be, in words: "string", "path" (resolved against the config file's
    // folder), "address", "boolean", "object", "array", or the values it may take.
    const char* type = "";
    // Set for a key that must be present: the error says "NAME: missing (<required>)".
    const char* required = nullptr;
    // Checks the value (throws ConfigError naming the key) and stores it in c; base_dir resolves
    // relative paths.
    void (*read)(const nlohmann::json& value, Config& c, const std::string& base_dir) = nullptr;
};
std::span<const ConfigKey> config_keys();

// Parses and validates; throws ConfigError. base_dir resolves relative plugin paths.
Config parse_config(const nlohmann::json& json, const std::string& base_dir);
// Reads the file and parses it; syntax errors carry line and column.
Config load_config(const std::string& file);
// Same from text (tests, fuzzing); `origin` names the source in messages.
Config parse_config_text(const std::string& text, const std::string& origin,
                         const std::string& base_dir);

// The control socket beside a config file: "/etc/herd/herd.json" -> "/etc/herd/herd.sock".
std::string default_control_path(const std::string& file);
// The control socket a config file names, even when the file does not pass validation (being
// edited): its "control" key if the JSON is readable, else the default. `problem` receives
// why the file did not load.
std::string control_path_of(const std::string& file, std::string* problem);

// Number of CPUs this process may run on ("workers": "auto").
int cpu_count();

}  // namespace herd::core
