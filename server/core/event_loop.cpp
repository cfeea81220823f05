// The epoll loop every herd process runs; see event_loop.hpp.
#include "core/event_loop.hpp"

#include <sys/timerfd.h>

#include <cerrno>

#include "core/error.hpp"
#include "core/log.hpp"

namespace herd::core {

void throw_errno(const std::string& what) {
    throw Error(errno_text(what));
}

namespace {
// data.u64 carries the fd and the entry's generation, so an event queued for an fd that was
// removed (and maybe reused) in the same batch is recognised as stale and dropped.
std::uint64_t pack(int fd, std::uint32_t generation) {
    return (static_cast<std::uint64_t>(generation) << 32) | static_cast<std::uint32_t>(fd);
}
}  // namespace

EventLoop::EventLoop() {
    epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) throw_errno("epoll_create1()");
    timerfd_.reset(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    if (!timerfd_) throw_errno("timerfd_create()");
    add(timerfd_.get(), EPOLLIN, [this](std::uint32_t) {
        std::uint64_t expirations = 0;
        // EAGAIN is possible when the timer was re-armed after it fired; nothing to read then.
        (void)::read(timerfd_.get(), &expirations, sizeof expirations);
        armed_for_ = Clock::time_point::max();
        fire_timers();
    });
}

void EventLoop::add(int fd, std::uint32_t events, IoHandler handler) {
    if (fd < 0) throw Error("EventLoop::add(): negative fd");
    if (static_cast<size_t>(fd) >= entries_.size()) entries_.resize(static_cast<size_t>(fd) + 64);
    auto& slot = entries_[static_cast<size_t>(fd)];
    if (!slot) slot = std::make_unique<Entry>();
    Entry& e = *slot;
    if (e.active) throw Error("EventLoop::add(): fd " + std::to_string(fd) + " already registered");
    ++e.generation;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = pack(fd, e.generation);
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
        throw_errno("epoll_ctl(ADD, fd " + std::to_string(fd) + ")");
    e.handler = std::move(handler);
    e.active = true;
}

void EventLoop::modify(int fd, std::uint32_t events) {
    if (!watching(fd))
        throw Error("EventLoop::modify(): fd " + std::to_string(fd) + " not registered");
    Entry& e = *entries_[static_cast<size_t>(fd)];
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = pack(fd, e.generation);
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) < 0)
        throw_errno("epoll_ctl(MOD, fd " + std::to_string(fd) + ")");
}

void EventLoop::remove(int fd) {
    if (!watching(fd)) return;
    // ENOENT/EBADF: the fd was already closed, which removed it from the epoll set.
    (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    remove_before_close(fd);
}

void EventLoop::remove_before_close(int fd) {
    if (!watching(fd)) return;
    auto& slot = entries_[static_cast<size_t>(fd)];
    // The handler may be the one running now. Moving a std::function would leave a small
    // closure's captures in place, where a re-add of this fd would overwrite them: bury the
    // whole entry until the batch is done, and give the fd a fresh one.
    std::unique_ptr<Entry> fresh;
    if (spare_entries_.empty()) {
        fresh = std::make_unique<Entry>();
    } else {
        fresh = std::move(spare_entries_.back());
        spare_entries_.pop_back();
    }
    fresh->generation = slot->generation + 1;
    slot->active = false;
    graveyard_.push_back(std::move(slot));
    slot = std::move(fresh);
}

bool EventLoop::watching(int fd) const {
    return fd >= 0 && static_cast<size_t>(fd) < entries_.size() &&
           entries_[static_cast<size_t>(fd)] && entries_[static_cast<size_t>(fd)]->active;
}

EventLoop::TimerId EventLoop::add_timer(std::chrono::milliseconds delay, TimerHandler handler) {
    return add_timer_at(now() + delay, std::move(handler));
}

EventLoop::TimerId EventLoop::add_timer_at(Clock::time_point deadline, TimerHandler handler) {
    TimerId id = next_timer_++;
    timers_.push(Timer{deadline, id});
    timer_handlers_.emplace(id, std::move(handler));
    if (deadline < armed_for_) arm_timerfd();
    return id;
}

void EventLoop::cancel_timer(TimerId id) {
    timer_handlers_.erase(id);
}

void EventLoop::arm_timerfd() {
    // Drop cancelled timers from the top so we never wake for nothing.
    while (!timers_.empty() && !timer_handlers_.contains(timers_.top().id)) timers_.pop();
    itimerspec spec{};
    if (!timers_.empty()) {
        auto deadline = timers_.top().deadline;
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch())
                      .count();
        if (ns <= 0) ns = 1;
        spec.it_value.tv_sec = ns / 1000000000;
        spec.it_value.tv_nsec = ns % 1000000000;
        armed_for_ = deadline;
    } else {
        armed_for_ = Clock::time_point::max();
    }
    // steady_clock is CLOCK_MONOTONIC on Linux, so the deadline is an absolute timerfd time.
    if (timerfd_settime(timerfd_.get(), TFD_TIMER_ABSTIME, &spec, nullptr) < 0)
        throw_errno("timerfd_settime()");
}

void EventLoop::fire_timers() {
    auto t = now();
    while (!timers_.empty() && timers_.top().deadline <= t) {
        TimerId id = timers_.top().id;
        timers_.pop();
        auto it = timer_handlers_.find(id);
        if (it == timer_handlers_.end()) continue;  // cancelled
        TimerHandler h = std::move(it->second);
        timer_handlers_.erase(it);
        h();
    }
    arm_timerfd();
}

void EventLoop::run() {
    stopped_ = false;
    while (!stopped_) run_once(-1);
}

void EventLoop::run_once(int timeout_ms) {
    epoll_event events[128];
    // What was posted before this iteration runs in it (after its events); what those post
    // runs in the next one.
    posted_batch_.swap(posted_);
    if (!posted_batch_.empty()) timeout_ms = 0;
    int n = epoll_wait(epoll_.get(), events, 128, timeout_ms);
    time_ = Clock::now();
    if (n < 0) {
        if (errno != EINTR) throw_errno("epoll_wait()");
        n = 0;  // a signal: nothing to dispatch, but what was posted runs
    }
    for (int i = 0; i < n && !stopped_; ++i) {
        int fd = static_cast<int>(events[i].data.u64 & 0xffffffffu);
        auto generation = static_cast<std::uint32_t>(events[i].data.u64 >> 32);
        if (!watching(fd)) continue;
        Entry& e = *entries_[static_cast<size_t>(fd)];
        if (!e.active || e.generation != generation) continue;  // removed in this batch
        e.handler(events[i].events);
    }
    for (std::size_t i = 0; i < posted_batch_.size(); ++i) posted_batch_[i]();
    posted_batch_.clear();
    while (!deferred_.empty()) {
        std::vector<std::function<void()>> batch;
        batch.swap(deferred_);
        for (auto& fn : batch) fn();
        batch.clear();
        if (deferred_.empty()) deferred_.swap(batch);  // keeps the capacity for the next batch
    }
    // Entries removed in this batch: their handlers go now; the boxes serve the next removals
    // (a connection's close would otherwise allocate one and free one).
    for (auto& e : graveyard_) {
        if (spare_entries_.size() >= 64) break;
        e->handler = nullptr;
        spare_entries_.push_back(std::move(e));
    }
    graveyard_.clear();
}

}  // namespace herd::core
