// The "state" section of the herd config: which backend holds the shared state.
//
//   "state": {"backend": "file", "path": "app.state.json"}
//   "state": {"backend": "redis", "url": "redis://:secret@127.0.0.1:6379/0", "prefix": "herd:",
//             "poll_ms": 1000, "resync_ms": 60000}
//
// Without a "state" section herd uses the file backend with the default path (beside the
// config file), so it runs with nothing else installed.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "client/redis_url.hpp"

namespace herd::broker {

// The URL forms and the hiredis adapter are shared with the plugins' Redis client (server/client).
using client::parse_redis_url;
using client::RedisUrl;

struct FileStateConfig {
    std::string path;  // absolute
};

struct RedisStateConfig {
    std::string url = "redis://127.0.0.1:6379/0";
    RedisUrl parsed = parse_redis_url("redis://127.0.0.1:6379/0");
    // Keys: <prefix>data (the hash), <prefix>version (the counter); channel <prefix>changes.
    std::string prefix = "herd:";
    int poll_ms = 1000;             // read the version counter this often (safety net)
    int resync_ms = 60000;          // read everything this often (writers bypassing herd)
    int connect_timeout_ms = 5000;  // a connection attempt, and any command, may take this long
    int reconnect_min_ms = 100;     // back-off after a failure: from this ...
    int reconnect_max_ms = 5000;    // ... doubling up to this
};

struct StateConfig {
    enum class Backend { file, redis };
    Backend backend = Backend::file;
    FileStateConfig file;
    RedisStateConfig redis;

    const char* backend_name() const { return backend == Backend::file ? "file" : "redis"; }
};

// The configuration used when the config file has no "state": the file backend at
// default_path (e.g. "/etc/herd/app.state.json" for "/etc/herd/app.json").
StateConfig default_state_config(const std::string& default_path);

// Parses the "state" value found at json_path ("state"). Relative paths resolve against
// base_dir; "path" defaults to default_path. Throws core::ConfigError with the JSON path:
// "state.poll_ms: expected an integer from 10 to 3600000, got 0".
StateConfig parse_state_config(const nlohmann::json& j, const std::string& base_dir,
                               const std::string& json_path, const std::string& default_path);

}  // namespace herd::broker
