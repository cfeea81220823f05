// The "state" section of the herd config: which backend holds the shared state.
//
//   "state": {"backend": "file", "path": "app.state.json"}
//   "state": {"backend": "redis", "url": "redis://:secret@127.0.0.1:6379/0", "prefix": "herd:",
//             "poll_ms": 1000, "resync_ms": 60000}
//   "state": {"backend": "redis", "sentinels": ["10.0.0.1:26379", "10.0.0.2:26379"],
//             "master_name": "herd", "password": "secret", "db": 0}
//
// With "sentinels" (instead of "url") the broker asks Redis Sentinel where the primary
// named master_name is, at every (re)connection; the data connections' credentials and
// database are then the "user", "password" and "db" keys (with "url" they are part of the
// URL, and those keys are refused). Sentinels that require a password of their own (Sentinel's
// "requirepass") get "sentinel_password" (and "sentinel_user" for an ACL user).
//
// "min_replicas_ack": N (default 0) makes the broker acknowledge a write only once N replicas
// have it (Redis WAIT after the write, on the same connection, waiting at most
// "replica_ack_timeout_ms"); a write they do not confirm in time fails with an error saying
// it was applied on the primary but may be lost if the primary fails. See broker/README.md.
//
// Without a "state" section herd uses the file backend with the default path (beside the
// config file), so it runs with nothing else installed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "client/redis_url.hpp"

namespace herd::broker {

// The URL forms and the hiredis adapter are shared with the plugins' Redis client (server/client).
using client::parse_redis_url;
using client::RedisUrl;

struct FileStateConfig {
    std::string path;  // absolute
};

// One Redis Sentinel, "host:port" in the config.
struct SentinelAddress {
    std::string host;  // a name or an address (an IPv6 one without brackets)
    int port = 26379;
    std::string text() const;  // "host:port", "[::1]:26379"
    bool operator==(const SentinelAddress&) const = default;
};

struct RedisStateConfig {
    std::string url = "redis://127.0.0.1:6379/0";
    // With sentinels: host and port are those of the primary the sentinels name, filled in by
    // the backend at each connection; user, password and db come from the config's keys.
    RedisUrl parsed = parse_redis_url("redis://127.0.0.1:6379/0");
    // Non-empty: find the primary named master_name through these (in this order, the one
    // that answered last moved to the front), never through url.
    std::vector<SentinelAddress> sentinels;
    std::string master_name;
    int sentinel_timeout_ms = 1000;                // each sentinel may take this long to answer
    std::string sentinel_user, sentinel_password;  // AUTH on the sentinels ("": none)
    bool uses_sentinels() const { return !sentinels.empty(); }
    // Keys: <prefix>data (the hash), <prefix>version (the counter); channel <prefix>changes.
    std::string prefix = "herd:";
    int poll_ms = 1000;             // read the version counter this often (safety net)
    int resync_ms = 60000;          // read everything this often (writers bypassing herd)
    int connect_timeout_ms = 5000;  // a connection attempt, and any command, may take this long
    int reconnect_min_ms = 100;     // back-off after a failure: from this ...
    int reconnect_max_ms = 5000;    // ... doubling up to this
    // Writes acknowledged only once this many replicas confirm them (WAIT); 0: at once.
    int min_replicas_ack = 0;
    int replica_ack_timeout_ms = 1000;  // how long WAIT waits; below connect_timeout_ms
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
// "host:port" or "[v6]:port" (the port is required). Throws core::Error saying what is wrong.
SentinelAddress parse_sentinel_address(std::string_view text);

StateConfig default_state_config(const std::string& default_path);

// Parses the "state" value found at json_path ("state"). Relative paths resolve against
// base_dir; "path" defaults to default_path. Throws core::ConfigError with the JSON path:
// "state.poll_ms: expected an integer from 10 to 3600000, got 0".
StateConfig parse_state_config(const nlohmann::json& j, const std::string& base_dir,
                               const std::string& json_path, const std::string& default_path);

}  // namespace herd::broker
