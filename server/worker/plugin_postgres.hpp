// A plugin's view of the worker's PostgreSQL client (Context::postgres()): the pool for the
// plugin's config.postgres URL (one per URL in the worker, shared by its plugins); every query
// tied to a scope (the plugin's, or the one it passes) and bounded by its deadline; results
// reach the plugin through its PluginLoop, so a throwing handler is a plugin failure like any
// other and nothing of the plugin runs once it stops.
#pragma once

#include <functional>

#include <herd/postgres.hpp>

#include "client/pg_client.hpp"
#include "worker/plugin_calls.hpp"
#include "worker/plugin_loop.hpp"

namespace herd::worker {

class PluginPostgres final : public herd::PostgresClient {
  public:
    // shared(): the worker's client for this plugin's URL, made at the first use; throws
    // ClientError when the plugin has none (no config.postgres), which its queries report.
    PluginPostgres(std::function<client::PgClient&()> shared, PluginLoop& loop);
    PluginPostgres(const PluginPostgres&) = delete;
    PluginPostgres& operator=(const PluginPostgres&) = delete;

    Id run(std::string sql, herd::PgParams params, Done done,
           herd::Scope* scope = nullptr) override;
    bool cancel(Id id) noexcept override { return calls_.cancel(id); }
    // The plugin stops: every query it still waits for is cancelled (on the server too).
    void shutdown() noexcept { calls_.shutdown(); }

  private:
    struct Call {
        client::PgClient* client = nullptr;
        client::PgClient::Id inner = 0;
        Done done;
    };
    std::function<client::PgClient&()> shared_;
    PluginLoop& loop_;
    PluginCalls<Call> calls_;
};

}  // namespace herd::worker
