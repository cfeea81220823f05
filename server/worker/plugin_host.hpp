// PluginHost: loads an app's plugins with Boost.DLL after the fork, checks their ABI before
// running any of their code, and routes a path to the plugin with the longest mount.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/dll/shared_library.hpp>

#include "client/http_client.hpp"
#include "client/pg_client.hpp"
#include "client/redis_client.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/event_loop.hpp"
#include "core/plugin_guard.hpp"
#include "herd/plugin.hpp"
#include "worker/plugin_http.hpp"
#include "worker/plugin_loop.hpp"
#include "worker/plugin_postgres.hpp"
#include "worker/plugin_redis.hpp"

namespace herd::state {
class StateReplica;
}

namespace herd::worker {

// Says which plugin (mount and file) failed and why.
class PluginError : public core::Error {
  public:
    using core::Error::Error;
};

class PluginContext;

// Where plugins' messages go: the worker's channel to the master.
class MessageSink {
  public:
    virtual ~MessageSink() = default;
    // broadcast: to the plugin at `mount` in every worker of the app; else to the master.
    virtual bool plugin_message(std::string_view mount, const nlohmann::json& message,
                                bool broadcast) = 0;
    // Context::publish (WebSockets): false when it reached no other worker.
    virtual bool ws_publish(std::string_view mount, std::string_view topic, std::string_view data,
                            bool binary) {
        (void)mount;
        (void)topic;
        (void)data;
        (void)binary;
        return false;
    }
};

struct MountedPlugin {
    MountedPlugin();
    // Out of line: PluginContext is complete only in plugin_host.cpp. Stops the loop first
    // (nothing of the plugin may run on a destroyed plugin object), then the plugin object
    // dies, then its loop and context, and only then is the library that holds its code
    // unloaded.
    ~MountedPlugin();
    boost::dll::shared_library library;
    std::unique_ptr<PluginContext> context;
    std::unique_ptr<PluginLoop> loop;
    std::unique_ptr<PluginHttp> http;          // its exchanges on the worker's HTTP client
    std::unique_ptr<PluginRedis> redis;        // its commands on the worker's client for its URL
    std::unique_ptr<PluginPostgres> postgres;  // its queries on the worker's pool for its URL
    std::unique_ptr<Plugin> plugin;
    std::string mount;
    std::string path;
    std::string who;  // "plugin "/api" (/srv/libapi.so)", as messages name it
    // Whom the guard tells of an exception (the host's handler).
    const core::FailureHandler* failed = nullptr;
    bool started = false;
};

// What a host gives its plugins. Null members are fine where noted.
struct PluginServices {
    core::EventLoop* loop = nullptr;       // null: the host runs its own (herd check, tests)
    BlockingPool* pool = nullptr;          // null: blocking work fails, saying so
    MessageSink* sink = nullptr;           // null: messages go nowhere and send() returns false
    state::StateReplica* state = nullptr;  // null: the state is empty and writes fail
    // One descriptor per plugin of the app, in config order, or empty: the file each plugin
    // is loaded from (the master opened it when the generation began, so a build renamed over
    // the path since is not what this worker loads). -1: load by path.
    std::vector<int> files;
    core::FailureHandler failed;  // null: plugin failures are only logged
};

class PluginHost {
  public:
    PluginHost() = default;
    PluginHost(const PluginHost&) = delete;
    PluginHost& operator=(const PluginHost&) = delete;
    ~PluginHost();

    // Loads every plugin of the app and constructs it. Throws PluginError.
    void load(const core::AppConfig& app, int worker_id, PluginServices services = {});
    // on_start for each, in config order. Throws PluginError naming the plugin.
    void start();
    // For each plugin in reverse order: its loop stops (everything it registered goes, its
    // coroutines end), then on_stop if it started; exceptions are logged, not thrown.
    void stop();

    // Destroys every plugin object, then its loop, context and library (stop() first). What a
    // plugin object still holds (a Responder) is released here, while the worker lives.
    void unload();

    // Hands a broadcast to the plugin mounted at `mount` (through the guard); false when
    // there is none.
    bool deliver(std::string_view mount, const nlohmann::json& message, int from_worker);
    // Every plugin's registrations, added up (for the heartbeat).
    PluginLoop::Counts loop_counts() const;
    // The clients' figures ("http", "redis", ...: those a plugin has used), for the heartbeat.
    core::ClientStatsMap client_stats() const;

    // The plugin with the longest mount that is a path-segment prefix of `path`, or null.
    MountedPlugin* route(std::string_view path);
    std::size_t size() const { return plugins_.size(); }

  private:
    std::vector<std::unique_ptr<MountedPlugin>> plugins_;  // sorted by mount length, longest first
    std::vector<MountedPlugin*> config_order_;
    std::unique_ptr<core::EventLoop> own_loop_;  // when the services brought none
    core::EventLoop* loop_ = nullptr;            // the services' or our own
    // The worker's one HTTP client, shared by its plugins (after own_loop_: destroyed first).
    std::unique_ptr<client::HttpClient> http_;
    client::HttpClient& shared_http();
    // The worker's Redis clients, one per URL (config.redis), made at the first command.
    std::map<std::string, std::unique_ptr<client::RedisClient>> redis_;
    client::RedisClient& shared_redis(const std::string& url);
    // The worker's PostgreSQL pools, one per URL (config.postgres), made at the first query.
    std::map<std::string, std::unique_ptr<client::PgClient>> postgres_;
    client::PgClient& shared_postgres(const std::string& url);
    core::FailureHandler failed_;
};

// Whether mount ("/api") covers path ("/api", "/api/x", but not "/apix").
bool mount_matches(std::string_view mount, std::string_view path);

// Why a plugin that exports `plugin_abi` (herd_plugin_abi) cannot load here, or "" when it
// can: the same major, and a minor not above ours (herd/abi.hpp has the rules).
std::string abi_refusal(std::uint32_t plugin_abi);

// Loads a plugin file, checks it and constructs its object; used by load() and `herd check`.
// With `fd` (an open descriptor of the file), that file is loaded whatever `path` now names;
// `path` still names it in errors and is checked for unsafe folders.
void open_plugin(MountedPlugin& m, const std::string& path, int fd = -1);

}  // namespace herd::worker
