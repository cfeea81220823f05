// Part of herd/testing.hpp, the plugin author's test kit (include that): FakeLoop, herd::Loop
// on a manual clock, recording plugin failures.
#pragma once

#include <chrono>
#include <coroutine>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include <boost/core/demangle.hpp>

#include "herd/loop.hpp"
#include "herd/scope.hpp"
#include "herd/task.hpp"

namespace herd::testing {

// "std::runtime_error: boom" for an exception.
inline std::string describe(std::exception_ptr error) {
    try {
        std::rethrow_exception(std::move(error));
    } catch (const std::exception& e) {
        return boost::core::demangle(typeid(e).name()) + ": " + e.what();
    } catch (...) {
        return "an exception that is not a std::exception";
    }
}

// herd::Loop on a manual clock. Nothing runs until the test says: run_until_idle() runs what
// is ready now (posted callbacks, blocking work, due timers, and whatever those make ready),
// advance(d) moves the clock, firing each timer at its own time, in order. Callbacks run
// as the worker runs plugin code: an exception escaping one (but Cancelled) is a plugin
// failure, recorded in failures().
class FakeLoop final : public Loop, private detail::TaskOwner {
  public:
    explicit FakeLoop(TimePoint start = TimePoint(std::chrono::hours(24))) : now_(start) {}
    FakeLoop(const FakeLoop&) = delete;
    FakeLoop& operator=(const FakeLoop&) = delete;
    ~FakeLoop() { stop(); }

    TimePoint now() const noexcept override { return now_; }
    Id at(TimePoint when, Callback fn, Scope* scope = nullptr) override {
        Id id;
        Reg* r = make(Kind::timer, scope, false, id);
        if (r == nullptr) return id;
        r->fn = std::move(fn);
        arm(*r, when);
        return id;
    }
    Id watch(int fd, unsigned, Function<void(unsigned)>, Scope* = nullptr) override {
        throw std::logic_error("herd::testing::FakeLoop cannot watch descriptors (fd " +
                               std::to_string(fd) +
                               "): test the code behind the descriptor without the loop");
    }
    void rewatch(Id id, unsigned) override {
        throw std::logic_error("herd::testing::FakeLoop::rewatch(" + std::to_string(id) +
                               "): the fake loop has no watches");
    }
    Id post(Callback fn, Scope* scope = nullptr) override {
        Id id;
        Reg* r = make(Kind::post, scope, false, id);
        if (r == nullptr) return id;
        r->fn = std::move(fn);
        ready_.push_back(id);
        return id;
    }
    // The work runs inline (in the test's thread) in the next iteration, then done.
    Id run_blocking(Function<void()> work, Function<void(std::exception_ptr)> done,
                    Scope* scope = nullptr) override {
        Id id;
        Reg* r = make(Kind::job, scope, false, id);
        if (r == nullptr) return id;
        r->work = std::move(work);
        r->done = std::move(done);
        ready_.push_back(id);
        return id;
    }
    bool cancel(Id id) noexcept override {
        auto it = regs_.find(id);
        if (it == regs_.end()) return false;
        std::unique_ptr<Reg> r = std::move(it->second);
        regs_.erase(it);
        r->unlink();
        if (r->kind == Kind::timer) timers_.erase({r->when, id});
        r.reset();  // its callback's destructor may call back into the loop
        return true;
    }
    void spawn(Task<> task, Scope* scope = nullptr) override {
        auto h = task.release();
        if (!h) return;
        if (stopped_) {
            h.destroy();
            return;
        }
        h.promise().scope = scope != nullptr ? scope : &scope_;
        h.promise().owner = this;
        tasks_.insert(h.address());
        // It starts in the next iteration, never inside the call that spawned it.
        host_post([this, frame = h.address()] {
            if (tasks_.contains(frame)) std::coroutine_handle<>::from_address(frame).resume();
        });
    }
    Scope& scope() noexcept override { return scope_; }

    // ---- For the test

    // Runs iterations until nothing is ready at the current time. std::runtime_error after a
    // million iterations (work that posts itself again and again never idles).
    void run_until_idle() {
        for (int rounds = 0; step(); ++rounds)
            if (rounds == 1000000)
                throw std::runtime_error(
                    "herd::testing::FakeLoop: still busy after a million iterations (work that "
                    "posts itself, or a timer that re-arms at now()?)");
    }
    // Moves the clock by d: each timer due on the way fires at its time (now() tells it), in
    // the order of their times (of registration, for equal times), with what they make ready
    // run in between; then whatever is ready at the end.
    void advance(Duration d) {
        TimePoint end = now_ + d;
        run_until_idle();
        while (!timers_.empty() && timers_.begin()->first <= end) {
            now_ = std::max(now_, timers_.begin()->first);
            run_until_idle();
        }
        now_ = std::max(now_, end);
        run_until_idle();
    }
    // When the next timer is due (the plugin's or the harness's), if any.
    std::optional<TimePoint> next_timer() const {
        if (timers_.empty()) return std::nullopt;
        return timers_.begin()->first;
    }
    // What the plugin has registered and not yet run or cancelled (timers, posts, blocking
    // work), and background coroutines still alive: 0 once everything was cleaned up.
    std::size_t pending() const {
        std::size_t n = tasks_.size();
        for (const auto& [id, r] : regs_) n += r->host ? 0 : 1;
        return n;
    }
    // Every plugin failure so far: "std::runtime_error: boom (in a loop callback)".
    const std::vector<std::string>& failures() const noexcept { return failures_; }

    // The plugin stops, as in the worker: its scope is cancelled (its coroutines resume with
    // Cancelled), every registration left is removed without running, the coroutines still
    // suspended are destroyed, and later registrations are dropped.
    void stop() {
        if (stopped_) return;
        stopped_ = true;
        scope_.cancel("the plugin is stopping");
        while (!regs_.empty()) cancel(regs_.begin()->first);
        ready_.clear();
        auto frames = std::move(tasks_);
        tasks_.clear();
        for (void* frame : frames) std::coroutine_handle<>::from_address(frame).destroy();
    }

    // ---- For the kit (the Harness, the State): herd's own work, not the plugin's. It is not
    // counted in pending() and is not plugin code (it guards the plugin code it runs itself).
    Id host_post(Callback fn) {
        Id id;
        Reg* r = make(Kind::post, nullptr, true, id);
        if (r == nullptr) return id;
        r->fn = std::move(fn);
        ready_.push_back(id);
        return id;
    }
    Id host_at(TimePoint when, Callback fn) {
        Id id;
        Reg* r = make(Kind::timer, nullptr, true, id);
        if (r == nullptr) return id;
        r->fn = std::move(fn);
        arm(*r, when);
        return id;
    }
    // Runs plugin code under the worker's policy; false when it failed (recorded).
    template <class F>
    bool guarded(std::string_view entry, F&& fn) {
        try {
            std::forward<F>(fn)();
            return true;
        } catch (...) {
            return !record_failure(std::current_exception(), entry);
        }
    }
    // Records error as a plugin failure in `entry`; false for a null one or a Cancelled.
    bool record_failure(std::exception_ptr error, std::string_view entry) {
        if (!error) return false;
        try {
            std::rethrow_exception(error);
        } catch (const Cancelled&) {
            return false;
        } catch (...) {
        }
        failures_.push_back(describe(error) + " (" + std::string(entry) + ")");
        return true;
    }

  private:
    enum class Kind { timer, post, job };
    struct Reg final : CancelHook {
        FakeLoop* owner = nullptr;
        Id id = 0;
        Kind kind = Kind::timer;
        bool host = false;
        TimePoint when{};
        Callback fn;
        Function<void()> work;
        Function<void(std::exception_ptr)> done;
        void on_cancel() noexcept override { owner->cancel(id); }
    };

    // Null when the scope is cancelled already or the plugin stopped: the callback is dropped
    // (as if cancelled at once; id is still a fresh one).
    Reg* make(Kind kind, Scope* scope, bool host, Id& id) {
        id = next_id_++;
        if (stopped_) return nullptr;
        auto r = std::make_unique<Reg>();
        r->owner = this;
        r->id = id;
        r->kind = kind;
        r->host = host;
        if (!host && !(scope != nullptr ? *scope : scope_).add_hook(*r)) return nullptr;
        Reg* raw = r.get();
        regs_.emplace(raw->id, std::move(r));
        return raw;
    }
    void arm(Reg& r, TimePoint when) {
        r.when = when;
        timers_.insert({when, r.id});
    }

    // One iteration: the timers due now, then the posts and blocking work queued before it.
    bool step() {
        std::vector<Id> due;
        for (const auto& [when, id] : timers_) {
            if (when > now_) break;
            due.push_back(id);
        }
        std::deque<Id> posted = std::exchange(ready_, {});
        bool ran = false;
        for (Id id : due) ran = fire(id) || ran;
        for (Id id : posted) ran = fire(id) || ran;
        return ran;
    }
    bool fire(Id id) {
        auto it = regs_.find(id);
        if (it == regs_.end()) return false;  // cancelled meanwhile
        std::unique_ptr<Reg> r = std::move(it->second);
        regs_.erase(it);
        r->unlink();
        if (r->kind == Kind::timer) timers_.erase({r->when, id});
        if (r->host) {
            r->fn();
        } else if (r->kind == Kind::job) {
            std::exception_ptr error;
            try {
                r->work();
            } catch (...) {
                error = std::current_exception();
            }
            guarded("in a blocking work's completion", [&] { r->done(std::move(error)); });
        } else {
            guarded("in a loop callback", r->fn);
        }
        return true;
    }

    void task_finished(std::coroutine_handle<> frame, std::exception_ptr error) noexcept override {
        tasks_.erase(frame.address());
        frame.destroy();
        record_failure(std::move(error), "in a background coroutine (Loop::spawn)");
    }

    TimePoint now_;
    BasicScope scope_;
    std::map<Id, std::unique_ptr<Reg>> regs_;
    std::set<std::pair<TimePoint, Id>> timers_;
    std::deque<Id> ready_;  // posts and blocking work, in order
    std::set<void*> tasks_;
    std::vector<std::string> failures_;
    Id next_id_ = 1;
    bool stopped_ = false;
};

// The answers a fake client (FakeHttp, FakeRedis, FakePostgres) has posted to the loop and
// not yet delivered, by the client's own id: cancel() takes one back before it runs.
class PostedAnswers {
  public:
    explicit PostedAnswers(FakeLoop& loop) : loop_(loop) {}
    PostedAnswers(const PostedAnswers&) = delete;
    PostedAnswers& operator=(const PostedAnswers&) = delete;

    // Posts the answer tied to scope; returns the id the client hands out.
    std::uint64_t post(Callback answer, Scope* scope) {
        std::uint64_t id = next_id_++;
        posted_[id] = loop_.post(
            [this, id, answer = std::move(answer)]() mutable {
                posted_.erase(id);
                answer();
            },
            scope);
        return id;
    }
    bool cancel(std::uint64_t id) noexcept {
        auto it = posted_.find(id);
        if (it == posted_.end()) return false;
        loop_.cancel(it->second);
        posted_.erase(it);
        return true;
    }

  private:
    FakeLoop& loop_;
    std::map<std::uint64_t, Loop::Id> posted_;
    std::uint64_t next_id_ = 1;
};

}  // namespace herd::testing
