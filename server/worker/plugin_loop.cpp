// PluginLoop; see plugin_loop.hpp.
#include "worker/plugin_loop.hpp"

#include <fcntl.h>

#include "core/error.hpp"
#include "core/log.hpp"

namespace herd::worker {
namespace {

std::uint32_t epoll_events(unsigned events) {
    return ((events & herd::Loop::readable) ? EPOLLIN | EPOLLRDHUP : 0u) |
           ((events & herd::Loop::writable) ? EPOLLOUT : 0u);
}

unsigned loop_events(std::uint32_t ev) {
    unsigned seen = 0;
    if (ev & (EPOLLIN | EPOLLRDHUP)) seen |= herd::Loop::readable;
    if (ev & EPOLLOUT) seen |= herd::Loop::writable;
    if (ev & (EPOLLERR | EPOLLHUP)) seen |= herd::Loop::readable | herd::Loop::writable;
    return seen;
}

}  // namespace

PluginLoop::PluginLoop(core::EventLoop& loop, BlockingPool* pool, std::string who,
                       const core::FailureHandler* failed)
    : loop_(loop), pool_(pool), who_(std::move(who)), failed_(failed) {}

PluginLoop::~PluginLoop() {
    shutdown();
}

PluginLoop::Registration* PluginLoop::make(Kind kind, herd::Scope* scope, Id& id,
                                           const char* what) {
    id = next_id_++;
    if (stopped_) {
        core::log_warn("{} registered {} after it stopped; dropped", who_, what);
        return nullptr;
    }
    auto r = std::make_unique<Registration>();
    r->owner = this;
    r->id = id;
    r->kind = kind;
    // Registered with a cancelled scope: dropped at once, as if cancelled right after.
    if (!(scope != nullptr ? *scope : scope_).add_hook(*r)) return nullptr;
    Registration* raw = r.get();
    regs_.emplace(id, std::move(r));
    return raw;
}

herd::Loop::Id PluginLoop::at(TimePoint when, herd::Callback fn, herd::Scope* scope) {
    Id id;
    Registration* r = make(Kind::timer, scope, id, "a timer");
    if (r == nullptr) return id;
    r->fn = std::move(fn);
    r->timer = loop_.add_timer_at(when, [this, id] { fire_once(id); });
    return id;
}

herd::Loop::Id PluginLoop::post(herd::Callback fn, herd::Scope* scope) {
    Id id;
    Registration* r = make(Kind::post, scope, id, "a posted callback");
    if (r == nullptr) return id;
    r->fn = std::move(fn);
    loop_.post([this, id] { fire_once(id); });
    return id;
}

herd::Loop::Id PluginLoop::watch(int fd, unsigned events, herd::Function<void(unsigned)> fn,
                                 herd::Scope* scope) {
    // Our own duplicate: the plugin closing its descriptor first cannot leave a registration
    // on a number the next accept() reuses.
    core::UniqueFd copy(fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!copy)
        core::throw_errno(who_ + ": Loop::watch(fd " + std::to_string(fd) +
                          "): fcntl(F_DUPFD_CLOEXEC)");
    Id id;
    Registration* r = make(Kind::watch, scope, id, "a watch");
    if (r == nullptr) return id;
    r->io = std::move(fn);
    try {
        loop_.add(copy.get(), epoll_events(events),
                  [this, id](std::uint32_t ev) { fire_watch(id, ev); });
    } catch (const core::Error& e) {
        regs_.erase(id);
        throw core::Error(who_ + ": Loop::watch(fd " + std::to_string(fd) + "): " + e.what());
    }
    r->fd = std::move(copy);
    return id;
}

void PluginLoop::rewatch(Id id, unsigned events) {
    auto it = regs_.find(id);
    if (it == regs_.end() || it->second->kind != Kind::watch || it->second->removed)
        throw core::Error(who_ + ": Loop::rewatch(" + std::to_string(id) +
                          "): no such watch (cancelled, or never a watch)");
    loop_.modify(it->second->fd.get(), epoll_events(events));
}

herd::Loop::Id PluginLoop::run_blocking(herd::Function<void()> work,
                                        herd::Function<void(std::exception_ptr)> done,
                                        herd::Scope* scope) {
    Id id;
    Registration* r = make(Kind::job, scope, id, "blocking work");
    if (r == nullptr) return id;
    r->done = std::move(done);
    if (pool_ == nullptr) {
        // herd check runs on_start without a pool: the work fails, in the loop, saying why.
        r->kind = Kind::post;
        r->fn = [d = std::move(r->done), who = who_]() mutable {
            d(std::make_exception_ptr(core::Error(who + ": no blocking pool here (herd check)")));
        };
        loop_.post([this, id] { fire_once(id); });
        return id;
    }
    pool_->submit(this, id, std::move(work));
    return id;
}

bool PluginLoop::cancel(Id id) noexcept {
    auto it = regs_.find(id);
    if (it == regs_.end() || it->second->removed) return false;
    Registration& r = *it->second;
    if (r.timer != 0) loop_.cancel_timer(r.timer);
    if (r.fd) {
        loop_.remove(r.fd.get());
        r.fd.reset();
    }
    if (r.running) {
        r.removed = true;  // its callback is running: destroyed when it returns
        r.unlink();
        return true;
    }
    regs_.erase(it);  // a job's work runs on: its completion finds nothing
    return true;
}

void PluginLoop::fire_once(Id id) {
    auto it = regs_.find(id);
    if (it == regs_.end()) return;  // cancelled
    herd::Callback fn = std::move(it->second->fn);
    regs_.erase(it);
    core::guarded(*failed_, who_, "in a loop callback", fn);
    loop_.refresh_now();
}

void PluginLoop::fire_watch(Id id, std::uint32_t events) {
    auto it = regs_.find(id);
    if (it == regs_.end() || it->second->removed) return;
    Registration& r = *it->second;
    r.running = true;
    core::guarded(*failed_, who_, "in a watch callback", [&] { r.io(loop_events(events)); });
    loop_.refresh_now();
    r.running = false;
    if (r.removed) regs_.erase(id);
}

void PluginLoop::job_done(Id id, std::exception_ptr error) {
    auto it = regs_.find(id);
    if (it == regs_.end()) return;  // cancelled: the result goes nowhere
    auto done = std::move(it->second->done);
    regs_.erase(it);
    core::guarded(*failed_, who_, "in a blocking work's completion",
                  [&] { done(std::move(error)); });
    loop_.refresh_now();
}

void PluginLoop::spawn(herd::Task<> task, herd::Scope* scope) {
    auto h = task.release();
    if (!h) return;
    if (stopped_) {
        core::log_warn("{} spawned a coroutine after it stopped; dropped", who_);
        h.destroy();
        return;
    }
    auto own = std::make_unique<herd::BasicScope>(scope != nullptr ? *scope : scope_);
    h.promise().scope = own.get();
    h.promise().owner = this;
    tasks_.emplace(h.address(), std::move(own));
    // It starts in the next iteration, never inside the call that spawned it.
    loop_.post([this, frame = h.address()] {
        if (!tasks_.contains(frame)) return;  // destroyed by shutdown meanwhile
        std::coroutine_handle<>::from_address(frame).resume();
        loop_.refresh_now();
    });
}

void PluginLoop::task_finished(std::coroutine_handle<> frame, std::exception_ptr error) noexcept {
    auto task = tasks_.extract(frame.address());
    frame.destroy();
    // Its scope goes in the next iteration: the task may have ended inside that scope's
    // cancel(), which is still going through its hooks.
    if (!task.empty()) {
        if (spent_scopes_.empty()) loop_.post([this] { spent_scopes_.clear(); });
        spent_scopes_.push_back(std::move(task.mapped()));
    }
    core::report_plugin_error(*failed_, who_, "in a background coroutine (Loop::spawn)",
                              std::move(error));
}

void PluginLoop::shutdown() {
    if (stopped_) return;
    stopped_ = true;
    // Coroutines of the plugin resume with Cancelled; its registrations go.
    scope_.cancel("the plugin is stopping");
    // What is left was tied to other scopes (requests: the worker cancels those first).
    while (!regs_.empty()) {
        Registration& r = *regs_.begin()->second;
        r.running = false;
        cancel(r.id);
    }
    if (pool_ != nullptr) pool_->forget(this);
    // Frames still suspended on something that does not know herd's cancellation.
    auto frames = std::move(tasks_);
    tasks_.clear();
    for (auto& [frame, scope] : frames) std::coroutine_handle<>::from_address(frame).destroy();
}

PluginLoop::Counts PluginLoop::counts() const {
    Counts c;
    for (const auto& [id, r] : regs_) {
        if (r->removed) continue;
        switch (r->kind) {
            case Kind::timer:
                ++c.timers;
                break;
            case Kind::watch:
                ++c.watches;
                break;
            case Kind::post:
                ++c.posts;
                break;
            case Kind::job:
                ++c.jobs;
                break;
        }
    }
    c.tasks = tasks_.size();
    return c;
}

}  // namespace herd::worker
