// A plugin's view of the worker's HTTP client (Context::http()): every exchange is tied to a
// scope (the plugin's, or the one it passes: a request's) and bounded by its deadline; what
// the client reports reaches the plugin through its PluginLoop, so a throwing handler is a
// plugin failure like any other, and nothing of the plugin runs once it stops.
#pragma once

#include <functional>
#include <map>
#include <memory>

#include <herd/client.hpp>

#include "client/http_client.hpp"
#include "worker/plugin_loop.hpp"

namespace herd::worker {

class PluginHttp final : public herd::HttpClient {
  public:
    // shared(): the worker's one client, made at the first use.
    PluginHttp(std::function<client::HttpClient&()> shared, PluginLoop& loop);
    ~PluginHttp();
    PluginHttp(const PluginHttp&) = delete;
    PluginHttp& operator=(const PluginHttp&) = delete;

    Id fetch(herd::HttpRequest request, herd::HttpHandlers handlers,
             herd::Scope* scope = nullptr) override;
    bool cancel(Id id) noexcept override;
    // The plugin stops: every exchange it still has is cancelled.
    void shutdown() noexcept;
    std::size_t in_flight() const { return entries_.size(); }

  private:
    struct Entry;
    std::function<client::HttpClient&()> shared_;
    PluginLoop& loop_;
    std::map<Id, std::unique_ptr<Entry>> entries_;
    Id next_id_ = 1;
};

}  // namespace herd::worker
