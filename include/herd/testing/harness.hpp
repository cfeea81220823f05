// Part of herd/testing.hpp, the plugin author's test kit (include that): Harness, one plugin
// in a fake worker.
#pragma once

#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "herd/plugin.hpp"
#include "herd/testing/call.hpp"
#include "herd/testing/context.hpp"
#include "herd/testing/request.hpp"

namespace herd::testing {

// One plugin in a fake worker: load() constructs it and runs on_start with context(); start()
// hands it a request as the worker does (respond(), whatever the plugin's style); stop() (or
// the destructor) stops it as the worker does.
class Harness {
  public:
    explicit Harness(Options options = {}) : options_(std::move(options)) {
        ctx_.set_config(options_.config);
        ctx_.set_mount(options_.mount);
        ctx_.set_app(options_.app);
        ctx_.set_worker_id(options_.worker_id);
    }
    Harness(const Harness&) = delete;
    Harness& operator=(const Harness&) = delete;
    ~Harness() { stop(); }

    FakeContext& context() noexcept { return ctx_; }
    FakeLoop& loop() noexcept { return ctx_.loop(); }
    FakeState& state() noexcept { return ctx_.state(); }
    FakeHttp& http() noexcept { return ctx_.http(); }     // answers for the plugin's fetches
    FakeRedis& redis() noexcept { return ctx_.redis(); }  // the plugin's Redis, in memory
    FakePostgres& postgres() noexcept { return ctx_.postgres(); }  // answers for its queries

    // Constructs the plugin and runs its on_start; what on_start throws comes out of here
    // (the worker's start-up failure), after the plugin's loop was stopped.
    template <class P, class... Args>
    P& load(Args&&... args) {
        if (plugin_) throw std::logic_error("herd::testing::Harness: a plugin is loaded already");
        auto plugin = std::make_unique<P>(std::forward<Args>(args)...);
        P& ref = *plugin;
        plugin_ = std::move(plugin);
        try {
            plugin_->on_start(ctx_);
        } catch (...) {
            loop().stop();
            plugin_.reset();
            throw;
        }
        return ref;
    }
    Plugin& plugin() {
        if (!plugin_) throw std::logic_error("herd::testing::Harness: no plugin loaded");
        return *plugin_;
    }

    // Calls the plugin's respond() with the request, as the worker does, and returns the
    // request in flight (valid as long as the harness). Each request comes as on a connection
    // of its own, so several may be in flight. Nothing else runs: see loop().
    Call& start(RequestBuilder request) {
        Plugin& p = plugin();
        calls_.push_back(std::make_unique<Call>(loop(), options_, std::move(request)));
        Call& call = *calls_.back();
        call.dispatch(p, ctx_.mount());
        return call;
    }
    // start(), then loop().run_until_idle(): the result of a handler that needs no time.
    Result run(RequestBuilder request) {
        Call& call = start(std::move(request));
        loop().run_until_idle();
        return call.result();
    }

    // The worker stops: requests in flight are cancelled (a waiting one gets 503), their
    // coroutines destroyed, the plugin's loop stopped, on_stop called, the plugin destroyed.
    void stop() {
        if (stopped_) return;
        stopped_ = true;
        for (auto& call : calls_) call->abort("the worker is stopping");
        for (auto& call : calls_) call->destroy_task();
        loop().stop();
        if (plugin_) loop().guarded("in on_stop", [&] { plugin_->on_stop(); });
        plugin_.reset();  // may still drop Responders: into calls that are alive
    }

  private:
    Options options_;
    FakeContext ctx_;
    std::vector<std::unique_ptr<Call>> calls_;
    std::unique_ptr<Plugin> plugin_;
    bool stopped_ = false;
};

}  // namespace herd::testing
