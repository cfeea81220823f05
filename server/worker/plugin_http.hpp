// A plugin's view of the worker's HTTP client (Context::http()): every exchange is tied to a
// scope (the plugin's, or the one it passes: a request's) and bounded by its deadline; what
// the client reports reaches the plugin through its PluginLoop, so a throwing handler is a
// plugin failure like any other, and nothing of the plugin runs once it stops.
#pragma once

#include <functional>

#include <herd/client.hpp>

#include "client/http_client.hpp"
#include "worker/plugin_calls.hpp"
#include "worker/plugin_loop.hpp"

namespace herd::worker {

class PluginHttp final : public herd::HttpClient {
  public:
    // shared(): the worker's one client, made at the first use.
    PluginHttp(std::function<client::HttpClient&()> shared, PluginLoop& loop);
    PluginHttp(const PluginHttp&) = delete;
    PluginHttp& operator=(const PluginHttp&) = delete;

    Id fetch(herd::HttpRequest request, herd::HttpHandlers handlers,
             herd::Scope* scope = nullptr) override;
    bool cancel(Id id) noexcept override { return calls_.cancel(id); }
    // The plugin stops: every exchange it still has is cancelled.
    void shutdown() noexcept { calls_.shutdown(); }

  private:
    struct Call {
        client::HttpClient::Id inner = 0;
        herd::HttpHandlers handlers;
    };
    std::function<client::HttpClient&()> shared_;
    PluginLoop& loop_;
    PluginCalls<Call> calls_;
};

}  // namespace herd::worker
