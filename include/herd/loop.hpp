// The worker's event loop as a plugin sees it (Context::loop()): timers, watched descriptors,
// work posted for later, blocking work on a small thread pool, background coroutines, and
// the awaitables that coroutines use for the same things.
//
// Everything a plugin registers here belongs to that plugin: when it stops, the worker
// cancels and removes all of it before calling on_stop, and no callback of the plugin runs
// after that. Work may also be tied to a narrower Scope (a request's: Responder::scope()):
// when that scope is cancelled, the registration is removed and its callback destroyed
// without being called.
//
// All callbacks run in the worker's thread, in its event loop, never inside the call that
// registered them. An exception escaping one is a plugin failure (see Plugin).
#pragma once

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "herd/function.hpp"
#include "herd/scope.hpp"
#include "herd/task.hpp"

namespace herd {

class Loop {
  public:
    using Clock = std::chrono::steady_clock;
    using TimePoint = Clock::time_point;
    using Duration = Clock::duration;
    // A registration: a timer, a watch, a posted callback or blocking work. Never 0.
    using Id = std::uint64_t;
    // Events of a watched descriptor. An error or a hang-up is reported as both (the next
    // read or write tells which).
    static constexpr unsigned readable = 1;
    static constexpr unsigned writable = 2;

    // The loop's time: read once per loop iteration (and after each plugin callback), so
    // cheap to call. The test kit's loop runs on a manual clock.
    virtual TimePoint now() const noexcept = 0;

    // Runs fn once at `when` (at once, in the next iteration, if it has passed).
    virtual Id at(TimePoint when, Callback fn, Scope* scope = nullptr) = 0;
    Id after(Duration delay, Callback fn, Scope* scope = nullptr) {
        return at(now() + delay, std::move(fn), scope);
    }
    // Calls fn(events) whenever fd is ready for `events` (readable, writable or both), until
    // cancelled. herd watches its own duplicate of fd, so a descriptor the plugin closes
    // before cancelling never confuses the loop; cancel before closing all the same, or the
    // peer sees the socket open until then.
    virtual Id watch(int fd, unsigned events, Function<void(unsigned)> fn,
                     Scope* scope = nullptr) = 0;
    // Changes what a watch waits for.
    virtual void rewatch(Id watch, unsigned events) = 0;
    // Runs fn in the next loop iteration.
    virtual Id post(Callback fn, Scope* scope = nullptr) = 0;
    // Runs work on the worker's blocking pool (a few threads, started at first use), then
    // done(error) in the loop, error being what work threw (or null). For libraries without
    // an asynchronous API. Cancelling drops done, but work that has started runs to its end:
    // the plugin stops only once its work has returned. work must not touch the loop or
    // anything of herd's.
    virtual Id run_blocking(Function<void()> work, Function<void(std::exception_ptr)> done,
                            Scope* scope = nullptr) = 0;
    // Removes a registration: its callback is destroyed without being called (a callback may
    // cancel itself). An unknown or finished id does nothing. True when something was removed.
    virtual bool cancel(Id id) noexcept = 0;

    // Runs task as a background coroutine of the plugin (a periodic job, a subscription):
    // owned by the worker until it ends, cancelled when `scope` is (by default the plugin's
    // own scope, cancelled when the plugin stops). An exception other than Cancelled escaping
    // it is a plugin failure.
    virtual void spawn(Task<> task, Scope* scope = nullptr) = 0;

    // The plugin's scope: cancelled when the plugin stops.
    virtual Scope& scope() noexcept = 0;

    // ---- Awaitables, for coroutines. Each resumes with herd::Cancelled if the awaiting
    // task's scope is cancelled first (or was already).

    // co_await loop.sleep_for(10ms);
    auto sleep_for(Duration d);
    auto sleep_until(TimePoint t);
    // co_await loop.wait_readable(fd) -> the events seen (readable, writable, or both on error).
    auto wait_readable(int fd);
    auto wait_writable(int fd);
    // co_await loop.yield(): lets the rest of the loop run; resumes in the next iteration.
    auto yield();
    // auto value = co_await loop.blocking([] { return expensive(); }): runs on the blocking
    // pool; the value or the exception comes back to the coroutine. Cancellation takes effect
    // when the work returns (it cannot be interrupted), so what the work refers to stays alive.
    template <class F>
    auto blocking(F work);

  protected:
    ~Loop() = default;
};

namespace detail {

// What the awaitables share: the awaiting coroutine, its scope, and the hook that resumes it
// when the scope is cancelled.
class LoopAwait : public CancelHook {
  public:
    LoopAwait(const LoopAwait&) = delete;
    LoopAwait& operator=(const LoopAwait&) = delete;
    bool await_ready() const noexcept { return false; }

  protected:
    explicit LoopAwait(Loop& loop) noexcept : loop_(loop) {}
    ~LoopAwait() {
        if (id_ != 0) loop_.cancel(id_);
    }
    // Before registering: false when the scope is cancelled already (then do not suspend).
    template <class P>
    bool enter(std::coroutine_handle<P> h) noexcept {
        scope_ = scope_of(h);
        handle_ = h;
        if (scope_ != nullptr && !scope_->add_hook(*this)) {
            cancelled_ = true;
            return false;
        }
        return true;
    }
    // The awaited thing happened: resume.
    void wake() noexcept {
        id_ = 0;
        unlink();
        handle_.resume();
    }
    void on_cancel() noexcept override {
        cancelled_ = true;
        if (id_ != 0) loop_.cancel(std::exchange(id_, 0));
        handle_.resume();
    }
    void check() const {
        if (cancelled_) throw Cancelled(std::string(scope_->why()));
    }

    Loop& loop_;
    Scope* scope_ = nullptr;
    std::coroutine_handle<> handle_;
    Loop::Id id_ = 0;
    bool cancelled_ = false;
};

class SleepAwait final : public LoopAwait {
  public:
    SleepAwait(Loop& loop, Loop::TimePoint when) noexcept : LoopAwait(loop), when_(when) {}
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (!enter(h)) return false;
        id_ = loop_.at(when_, [this] { wake(); });
        return true;
    }
    void await_resume() const { check(); }

  private:
    Loop::TimePoint when_;
};

class IoAwait final : public LoopAwait {
  public:
    IoAwait(Loop& loop, int fd, unsigned events) noexcept
        : LoopAwait(loop), fd_(fd), events_(events) {}
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (!enter(h)) return false;
        id_ = loop_.watch(fd_, events_, [this](unsigned seen) {
            seen_ = seen;
            loop_.cancel(id_);  // one event is all we wait for
            wake();
        });
        return true;
    }
    unsigned await_resume() const {
        check();
        return seen_;
    }

  private:
    int fd_;
    unsigned events_;
    unsigned seen_ = 0;
};

class YieldAwait final : public LoopAwait {
  public:
    explicit YieldAwait(Loop& loop) noexcept : LoopAwait(loop) {}
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (!enter(h)) return false;
        id_ = loop_.post([this] { wake(); });
        return true;
    }
    void await_resume() const { check(); }
};

template <class F>
class BlockingAwait final : public LoopAwait {
  public:
    using Result = std::invoke_result_t<F&>;
    BlockingAwait(Loop& loop, F work) : LoopAwait(loop), work_(std::move(work)) {}
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        if (!enter(h)) return false;
        // The work writes into this awaiter from the pool's thread: the coroutine is not
        // resumed (so this awaiter not destroyed) before the work has returned, cancelled or
        // not; on_cancel below only marks it.
        id_ = loop_.run_blocking(
            [this] {
                if constexpr (std::is_void_v<Result>)
                    work_();
                else
                    value_.emplace(work_());
            },
            [this](std::exception_ptr error) {
                error_ = std::move(error);
                wake();
            });
        return true;
    }
    Result await_resume() {
        check();
        if (error_) std::rethrow_exception(error_);
        if constexpr (!std::is_void_v<Result>) return std::move(*value_);
    }
    void on_cancel() noexcept override { cancelled_ = true; }

  private:
    F work_;
    std::conditional_t<std::is_void_v<Result>, bool, std::optional<Result>> value_{};
    std::exception_ptr error_;
};

}  // namespace detail

inline auto Loop::sleep_for(Duration d) {
    return detail::SleepAwait(*this, now() + d);
}
inline auto Loop::sleep_until(TimePoint t) {
    return detail::SleepAwait(*this, t);
}
inline auto Loop::wait_readable(int fd) {
    return detail::IoAwait(*this, fd, readable);
}
inline auto Loop::wait_writable(int fd) {
    return detail::IoAwait(*this, fd, writable);
}
inline auto Loop::yield() {
    return detail::YieldAwait(*this);
}
template <class F>
auto Loop::blocking(F work) {
    return detail::BlockingAwait<F>(*this, std::move(work));
}

}  // namespace herd
