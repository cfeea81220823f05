// herd::Task<T>: the coroutine type of herd's asynchronous API. A Task is lazy: it starts
// when it is co_awaited (or handed to the worker: a request's handler, Loop::spawn), runs in
// the worker's event loop, and gives its awaiter its value or rethrows its exception.
//
// A task awaited by another runs in the same cancellation scope (herd::Scope): when the
// request it serves is cancelled, whatever it awaits resumes with herd::Cancelled.
//
// GCC 12 has known bugs with coroutines: bind a task (or any awaitable, or a lambda that is
// a coroutine) to a named local before co_awaiting it when the expression is more than a
// plain call (`auto t = fetch(a, b); co_await t;`), and capture nothing in coroutine lambdas
// (pass what they need as parameters: a lambda's captures die with the lambda object).
#pragma once

#include <coroutine>
#include <exception>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "herd/scope.hpp"

namespace herd {

template <class T = void>
class Task;

namespace detail {

// Whoever started a root task (the worker, the test kit) hears of its end here.
class TaskOwner {
  public:
    // The task finished: `error` is what escaped it, or null. Called from inside the task's
    // final suspension; the owner may destroy the frame now.
    virtual void task_finished(std::coroutine_handle<> frame,
                               std::exception_ptr error) noexcept = 0;

  protected:
    ~TaskOwner() = default;
};

struct PromiseBase {
    Scope* scope = nullptr;
    std::coroutine_handle<> continuation;
    TaskOwner* owner = nullptr;
    std::exception_ptr error;

    struct FinalAwaiter {
        bool await_ready() const noexcept { return false; }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
            PromiseBase& p = h.promise();
            if (p.continuation) return p.continuation;  // back to the awaiting task
            // A root: the owner may destroy the frame (and this awaiter with it) right now.
            if (TaskOwner* owner = p.owner) owner->task_finished(h, p.error);
            return std::noop_coroutine();
        }
        void await_resume() const noexcept {}
    };

    std::suspend_always initial_suspend() const noexcept { return {}; }
    FinalAwaiter final_suspend() const noexcept { return {}; }
    void unhandled_exception() noexcept { error = std::current_exception(); }
};

template <class T>
struct ResultSlot {
    std::optional<T> value;
    template <class U = T>
    void return_value(U&& v) {
        value.emplace(std::forward<U>(v));
    }
    T take() { return std::move(*value); }
};
template <>
struct ResultSlot<void> {
    void return_void() const noexcept {}
    void take() const noexcept {}
};

// The scope of the coroutine behind h, for awaitables: null for a coroutine that is not a
// herd::Task.
template <class P>
Scope* scope_of(std::coroutine_handle<P> h) noexcept {
    if constexpr (std::is_base_of_v<PromiseBase, P>)
        return h.promise().scope;
    else
        return nullptr;
}

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
  public:
    struct promise_type : detail::PromiseBase, detail::ResultSlot<T> {
        Task get_return_object() noexcept {
            return Task(std::coroutine_handle<promise_type>::from_promise(*this));
        }
    };
    using Handle = std::coroutine_handle<promise_type>;

    Task() noexcept = default;
    explicit Task(Handle h) noexcept : h_(h) {}
    Task(Task&& o) noexcept : h_(std::exchange(o.h_, {})) {}
    Task& operator=(Task&& o) noexcept {
        if (this != &o) {
            if (h_) h_.destroy();
            h_ = std::exchange(o.h_, {});
        }
        return *this;
    }
    Task(const Task&) = delete;
    Task& operator=(const Task&) = delete;
    ~Task() {
        if (h_) h_.destroy();
    }

    bool valid() const noexcept { return static_cast<bool>(h_); }
    // For whoever runs a root task (the worker, the test kit): takes the frame.
    Handle release() noexcept { return std::exchange(h_, {}); }

    struct Awaiter {
        Handle child;
        bool await_ready() const noexcept { return !child || child.done(); }
        template <class P>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<P> parent) noexcept {
            child.promise().continuation = parent;
            child.promise().scope = detail::scope_of(parent);
            return child;  // start it now, in this thread of execution
        }
        T await_resume() {
            if (!child) {
                if constexpr (std::is_void_v<T>)
                    return;
                else
                    throw std::logic_error("co_await on an empty herd::Task");
            }
            if (child.promise().error) std::rethrow_exception(child.promise().error);
            return child.promise().take();
        }
    };
    Awaiter operator co_await() & noexcept { return Awaiter{h_}; }
    Awaiter operator co_await() && noexcept { return Awaiter{h_}; }

  private:
    Handle h_;
};

// `Scope* s = co_await herd::this_scope();`: the scope the current task runs in (a request's,
// or the plugin's for a spawned task), to check or to pass on.
struct ThisScope {
    Scope* scope = nullptr;
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) noexcept {
        scope = detail::scope_of(h);
        return false;  // never suspends
    }
    Scope* await_resume() const noexcept { return scope; }
};
inline ThisScope this_scope() noexcept {
    return {};
}

}  // namespace herd
