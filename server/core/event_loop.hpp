// The epoll loop every herd process runs: fd handlers, monotonic one-shot timers on a
// timerfd, and removal that is safe from inside any callback.
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <unordered_map>
#include <vector>

#include "core/unique_fd.hpp"

namespace herd::core {

class EventLoop {
  public:
    using Clock = std::chrono::steady_clock;
    using IoHandler = std::function<void(std::uint32_t events)>;
    using TimerHandler = std::function<void()>;
    using TimerId = std::uint64_t;

    EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Registers fd for events (EPOLLIN, EPOLLOUT, EPOLLEXCLUSIVE, ...). Throws SystemError.
    void add(int fd, std::uint32_t events, IoHandler handler);
    void modify(int fd, std::uint32_t events);
    // Safe for the fd whose handler is running; pending events for it are dropped.
    void remove(int fd);
    // remove() for an fd the caller closes next and whose open file nobody else holds: no
    // EPOLL_CTL_DEL, as close() takes it out of the epoll set (one syscall less per
    // connection). A stale event, should another copy exist, is dropped by generation.
    void remove_before_close(int fd);
    bool watching(int fd) const;

    TimerId add_timer(std::chrono::milliseconds delay, TimerHandler handler);
    // At a monotonic time (at once, in the next iteration, if it has passed).
    TimerId add_timer_at(Clock::time_point deadline, TimerHandler handler);
    // Cancelling an unknown or already fired timer does nothing.
    void cancel_timer(TimerId id);

    // Runs until stop(). Handlers may throw; the exception leaves run().
    void run();
    // One epoll_wait of at most timeout_ms (-1: until something happens), then dispatch.
    void run_once(int timeout_ms);
    void stop() { stopped_ = true; }
    bool stopped() const { return stopped_; }

    // Runs fn after the current batch of events and timers (deferred deletion, flushes).
    // Functions deferred by deferred functions run in the same iteration.
    void defer(std::function<void()> fn) { deferred_.push_back(std::move(fn)); }
    // Runs fn in the next iteration, after polling (without waiting) for events: work that
    // posts itself again never starves the descriptors and timers.
    void post(std::function<void()> fn) { posted_.push_back(std::move(fn)); }

    static Clock::time_point now() { return Clock::now(); }
    // The time read once after each epoll_wait (or by refresh_now()): cheap, and recent
    // enough for timeouts of the handlers run in this iteration. Whoever runs code that may
    // take long (a plugin handler) refreshes it after.
    Clock::time_point cached_now() const { return time_; }
    Clock::time_point refresh_now() { return time_ = Clock::now(); }

  private:
    struct Entry {
        IoHandler handler;
        std::uint32_t generation = 0;
        bool active = false;
    };
    struct Timer {
        Clock::time_point deadline;
        TimerId id;
        bool operator>(const Timer& o) const { return deadline > o.deadline; }
    };

    void fire_timers();
    void arm_timerfd();

    UniqueFd epoll_;
    UniqueFd timerfd_;
    // Indexed by fd. Entries are boxed so that growing the table inside a handler never
    // moves the std::function that is running.
    std::vector<std::unique_ptr<Entry>> entries_;
    std::vector<std::unique_ptr<Entry>> graveyard_;      // removed while dispatching, freed after
    std::vector<std::unique_ptr<Entry>> spare_entries_;  // freed ones, reused by remove()
    std::vector<std::function<void()>> deferred_;        // run after the current batch
    std::vector<std::function<void()>> posted_;          // run in the next iteration
    std::vector<std::function<void()>> posted_batch_;    // what runs now (its capacity kept)
    std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
    std::unordered_map<TimerId, TimerHandler> timer_handlers_;
    TimerId next_timer_ = 1;
    Clock::time_point armed_for_ = Clock::time_point::max();
    Clock::time_point time_ = Clock::now();
    bool stopped_ = false;
};

}  // namespace herd::core
