// PluginLoop: the worker's event loop as one plugin sees it (herd::Loop, Context::loop()).
// It keeps every registration of its plugin (timers, watches, posted and blocking work,
// background coroutines), ties each to a scope (the plugin's own unless the plugin names a
// request's), runs the callbacks through the plugin guard, and takes everything away when
// the plugin stops: shutdown() leaves no callback of the plugin anywhere in the worker.
//
// It must outlive every later iteration of the core loop (its callbacks there hold `this`):
// the worker destroys its plugins only once its loop has stopped for good.
#pragma once

#include <coroutine>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <herd/loop.hpp>

#include "core/event_loop.hpp"
#include "core/plugin_guard.hpp"
#include "core/unique_fd.hpp"
#include "worker/blocking_pool.hpp"

namespace herd::worker {

class PluginLoop final : public herd::Loop, private herd::detail::TaskOwner {
  public:
    // who: the plugin, as messages name it ("plugin \"/api\" (/srv/libapi.so)"). pool may be
    // null (herd check): blocking work then fails at once with an error saying so.
    PluginLoop(core::EventLoop& loop, BlockingPool* pool, std::string who,
               const core::FailureHandler* failed);
    PluginLoop(const PluginLoop&) = delete;
    PluginLoop& operator=(const PluginLoop&) = delete;
    ~PluginLoop();

    TimePoint now() const noexcept override { return loop_.cached_now(); }
    Id at(TimePoint when, herd::Callback fn, herd::Scope* scope = nullptr) override;
    Id watch(int fd, unsigned events, herd::Function<void(unsigned)> fn,
             herd::Scope* scope = nullptr) override;
    void rewatch(Id watch, unsigned events) override;
    Id post(herd::Callback fn, herd::Scope* scope = nullptr) override;
    Id run_blocking(herd::Function<void()> work, herd::Function<void(std::exception_ptr)> done,
                    herd::Scope* scope = nullptr) override;
    bool cancel(Id id) noexcept override;
    void spawn(herd::Task<> task, herd::Scope* scope = nullptr) override;
    herd::Scope& scope() noexcept override { return scope_; }

    // The plugin stops: cancels its scope (its coroutines resume with Cancelled), removes
    // every registration left, waits for its blocking work to return, and destroys the
    // coroutine frames still suspended. Later registrations are refused (logged).
    void shutdown();
    // A blocking job ended (from the pool's completion, in the loop).
    void job_done(Id id, std::exception_ptr error);

    struct Counts {
        std::size_t timers = 0;
        std::size_t watches = 0;
        std::size_t posts = 0;
        std::size_t jobs = 0;
        std::size_t tasks = 0;
    };
    Counts counts() const;
    const std::string& who() const { return who_; }

  private:
    enum class Kind { timer, watch, post, job };
    struct Registration final : herd::CancelHook {
        PluginLoop* owner = nullptr;
        Id id = 0;
        Kind kind = Kind::timer;
        herd::Callback fn;                              // timer, post
        herd::Function<void(unsigned)> io;              // watch
        herd::Function<void(std::exception_ptr)> done;  // job
        core::EventLoop::TimerId timer = 0;
        core::UniqueFd fd;  // the watch's own duplicate of the plugin's descriptor
        bool running = false;
        bool removed = false;
        void on_cancel() noexcept override { owner->cancel(id); }
    };

    // A new registration tied to scope (the plugin's when null); null when that scope is
    // cancelled already or the plugin has stopped (the caller drops the callback).
    Registration* make(Kind kind, herd::Scope* scope, Id& id, const char* what);
    void fire_once(Id id);
    void fire_watch(Id id, std::uint32_t events);
    void task_finished(std::coroutine_handle<> frame, std::exception_ptr error) noexcept override;

    core::EventLoop& loop_;
    BlockingPool* pool_;
    std::string who_;
    const core::FailureHandler* failed_;
    herd::BasicScope scope_;
    std::unordered_map<Id, std::unique_ptr<Registration>> regs_;
    // Frames of spawned coroutines, by address, each with the scope it runs in: a child of
    // the one it was given, so that the end of a request's scope (reset, not cancelled: the
    // work goes on untied) leaves it a scope of its own, never a pointer into a connection.
    std::unordered_map<void*, std::unique_ptr<herd::BasicScope>> tasks_;
    std::vector<std::unique_ptr<herd::BasicScope>> spent_scopes_;  // of ended tasks: freed later
    Id next_id_ = 1;
    bool stopped_ = false;
};

}  // namespace herd::worker
