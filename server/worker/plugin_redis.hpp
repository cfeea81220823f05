// A plugin's view of the worker's Redis client (Context::redis()): the client for the plugin's
// config.redis URL (one per URL in the worker, shared by its plugins); every command tied to a
// scope (the plugin's, or the one it passes) and bounded by its deadline; replies reach the
// plugin through its PluginLoop, so a throwing handler is a plugin failure like any other and
// nothing of the plugin runs once it stops.
#pragma once

#include <functional>

#include <herd/redis.hpp>

#include "client/redis_client.hpp"
#include "worker/plugin_calls.hpp"
#include "worker/plugin_loop.hpp"

namespace herd::worker {

class PluginRedis final : public herd::RedisClient {
  public:
    // shared(): the worker's client for this plugin's URL, made at the first use; throws
    // ClientError when the plugin has none (no config.redis), which its commands then report.
    PluginRedis(std::function<client::RedisClient&()> shared, PluginLoop& loop);
    PluginRedis(const PluginRedis&) = delete;
    PluginRedis& operator=(const PluginRedis&) = delete;

    Id command(herd::RedisArgs args, Done done, herd::Scope* scope = nullptr) override;
    Id transaction(std::vector<herd::RedisArgs> commands, Done done,
                   herd::Scope* scope = nullptr) override;
    bool cancel(Id id) noexcept override { return calls_.cancel(id); }
    // The plugin stops: every command it still waits for is cancelled.
    void shutdown() noexcept { calls_.shutdown(); }

  private:
    struct Call {
        client::RedisClient* client = nullptr;
        client::RedisClient::Id inner = 0;
        Done done;
    };
    Id start(std::vector<herd::RedisArgs> commands, bool transaction, Done done,
             herd::Scope* scope);
    std::function<client::RedisClient&()> shared_;
    PluginLoop& loop_;
    PluginCalls<Call> calls_;
};

}  // namespace herd::worker
