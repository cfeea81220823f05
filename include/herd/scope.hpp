// Cancellation. A Scope is something work can be cancelled with: a request in flight (the
// client went away, its deadline passed, the worker stopped) or a plugin's whole life. Work
// tied to a scope (a timer, a watched descriptor, a coroutine's await) is removed when the
// scope is cancelled; an awaiting coroutine resumes with herd::Cancelled.
#pragma once

#include <chrono>
#include <stdexcept>
#include <string>
#include <string_view>

namespace herd {

// Thrown out of a co_await whose scope was cancelled, with the reason as what(). Let it
// escape the coroutine (or catch it to clean up): a Cancelled that ends a request's coroutine
// is the normal end of cancelled work, not a plugin failure.
class Cancelled : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// A link in a scope's list of things to do when it is cancelled. For awaitables and other
// SDK code: intrusive, so that waiting allocates nothing.
class CancelHooks;
class CancelHook {
  public:
    CancelHook() = default;
    CancelHook(const CancelHook&) = delete;
    CancelHook& operator=(const CancelHook&) = delete;

    // Runs once, in the event loop, when the scope is cancelled. The hook is unlinked first,
    // so it may destroy itself.
    virtual void on_cancel() noexcept = 0;
    bool linked() const noexcept { return list_ != nullptr; }
    // Takes the hook out of the list it is in, if any. Needs no scope: a hook may outlive
    // the scope it was linked to (the scope's end unlinks it).
    inline void unlink() noexcept;

  protected:
    ~CancelHook() { unlink(); }

  private:
    friend class CancelHooks;
    CancelHook* prev_ = nullptr;
    CancelHook* next_ = nullptr;
    CancelHooks* list_ = nullptr;
};

// An intrusive list of hooks, fired in the order they were added.
class CancelHooks {
  public:
    CancelHooks() = default;
    CancelHooks(const CancelHooks&) = delete;
    CancelHooks& operator=(const CancelHooks&) = delete;
    ~CancelHooks() { clear(); }

    void add(CancelHook& h) noexcept {
        h.unlink();
        h.list_ = this;
        h.prev_ = tail_;
        h.next_ = nullptr;
        (tail_ != nullptr ? tail_->next_ : head_) = &h;
        tail_ = &h;
    }
    // Removing a hook that is not in this list does nothing.
    void remove(CancelHook& h) noexcept {
        if (h.list_ != this) return;
        (h.prev_ != nullptr ? h.prev_->next_ : head_) = h.next_;
        (h.next_ != nullptr ? h.next_->prev_ : tail_) = h.prev_;
        h.prev_ = h.next_ = nullptr;
        h.list_ = nullptr;
    }
    // Unlinks and runs every hook, those added meanwhile by the hooks themselves included.
    void fire() noexcept {
        while (head_ != nullptr) {
            CancelHook* h = head_;
            remove(*h);
            h->on_cancel();
        }
    }
    // Unlinks every hook without running it.
    void clear() noexcept {
        while (head_ != nullptr) remove(*head_);
    }
    bool empty() const noexcept { return head_ == nullptr; }

  private:
    CancelHook* head_ = nullptr;
    CancelHook* tail_ = nullptr;
};

inline void CancelHook::unlink() noexcept {
    if (list_ != nullptr) list_->remove(*this);
}

class Scope {
  public:
    using Clock = std::chrono::steady_clock;
    using TimePoint = Clock::time_point;

    virtual bool cancelled() const noexcept = 0;
    // Why it was cancelled ("the client closed the connection", ...); empty until then.
    virtual std::string_view why() const noexcept = 0;
    // When the work must be done (a request's request_timeout_ms), or TimePoint::max().
    // Clients use it to bound their own timeouts.
    virtual TimePoint deadline() const noexcept = 0;
    // Links h, to run on cancellation. False, linking nothing, when already cancelled.
    // (h.unlink() takes it out again.)
    virtual bool add_hook(CancelHook& h) noexcept = 0;

  protected:
    ~Scope() = default;
};

// A scope that whoever holds it cancels: what the worker uses for requests and plugins, and
// what a plugin can use for work of its own. A child follows its parent: cancelling the
// parent cancels the child (with the parent's reason), and the child's deadline is never
// later than the parent's.
class BasicScope final : public Scope, private CancelHook {
  public:
    explicit BasicScope(TimePoint deadline = TimePoint::max()) : deadline_(deadline) {}
    explicit BasicScope(Scope& parent, TimePoint deadline = TimePoint::max())
        : deadline_(deadline < parent.deadline() ? deadline : parent.deadline()), parent_(&parent) {
        if (!parent.add_hook(*this)) cancel(std::string(parent.why()));
    }
    // (Without it, a BasicScope parent would pick the deleted copy constructor.)
    explicit BasicScope(BasicScope& parent, TimePoint deadline = TimePoint::max())
        : BasicScope(static_cast<Scope&>(parent), deadline) {}
    BasicScope(const BasicScope&) = delete;
    BasicScope& operator=(const BasicScope&) = delete;
    ~BasicScope() = default;  // unlinks from the parent, and unlinks our hooks

    bool cancelled() const noexcept override { return cancelled_; }
    std::string_view why() const noexcept override { return why_; }
    TimePoint deadline() const noexcept override { return deadline_; }
    void set_deadline(TimePoint t) noexcept { deadline_ = t; }
    bool add_hook(CancelHook& h) noexcept override {
        if (cancelled_) return false;
        hooks_.add(h);
        return true;
    }

    // Runs every hook once, in the order they were added; a second call does nothing. The
    // hooks may resume coroutines: call it from the event loop, not from inside code that a
    // resumed coroutine could re-enter.
    void cancel(std::string why) noexcept {
        if (cancelled_) return;
        cancelled_ = true;
        why_ = why.empty() ? std::string("cancelled") : std::move(why);
        unlink();
        parent_ = nullptr;
        hooks_.fire();
    }
    // Ends the scope without cancelling: whatever is linked to it is unlinked, and goes on
    // untied. Then the scope is new again (the next request on a connection).
    void reset(TimePoint deadline = TimePoint::max()) noexcept {
        hooks_.clear();
        cancelled_ = false;
        why_.clear();
        deadline_ = deadline;
    }
    bool idle() const noexcept { return hooks_.empty(); }

  private:
    void on_cancel() noexcept override {
        Scope* parent = parent_;  // it unlinked us already
        parent_ = nullptr;
        cancel(std::string(parent->why()));
    }

    CancelHooks hooks_;
    std::string why_;
    TimePoint deadline_;
    Scope* parent_ = nullptr;
    bool cancelled_ = false;
};

}  // namespace herd
