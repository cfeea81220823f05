// A worker's life as the master sees it: its states, the deadline of each, and what happens
// when one passes. Pure decisions: time is passed in, so tests inject it.
//
//   spawned ─► starting ──"ready"──► ready ──"fatal"/"retire"/max_rss──► replacing
//                 │                    │                                    │
//                 │ start_timeout_ms   │ watchdog_ms without heartbeat      │ its replacement
//                 ▼                    ▼                                    ▼ ready (or failed)
//            SIGKILL, a start      SIGKILL, restarted              draining ──► exited
//            failure (back-off)    with back-off                       │ drain_timeout_ms
//                                                                      ▼ (+ grace): SIGKILL
//
// Any state ends in "exited" when the child is reaped; the master then decides, from the
// state it was in and why it left, whether the slot restarts (restart_policy.hpp).
#pragma once

#include <chrono>
#include <string>

namespace herd::core {
struct AppConfig;
}

namespace herd::master {

enum class WorkerState {
    starting,   // forked: loading its plugins, waiting for the shared state; passed nothing
    ready,      // serving
    replacing,  // it reported a fatal error or asked to be recycled: serves what it has while
                // its replacement starts, then drains
    draining,   // told to stop: finishes what it has, accepts nothing new, then exits
};
const char* state_name(WorkerState s);
// Whether new connections may go to a worker in this state.
inline bool takes_connections(WorkerState s) {
    return s == WorkerState::ready;
}

// The limits that apply to one worker: those of the config it was started with.
struct LifecycleLimits {
    std::chrono::milliseconds start_timeout{30000};
    std::chrono::milliseconds watchdog{30000};
    std::chrono::milliseconds drain{5000};
    // After its own drain deadline a worker closes what is left and exits; the master waits
    // this much longer before it kills one that did not.
    static constexpr std::chrono::milliseconds drain_grace{1000};

    static LifecycleLimits of(const core::AppConfig& app);
};

// What the master knows of a worker's times.
struct WorkerTimes {
    using TimePoint = std::chrono::steady_clock::time_point;
    TimePoint since;           // entered its current state
    TimePoint last_heartbeat;  // its last heartbeat (or "ready")
};

// The deadline that a worker in state `s` missed, if any.
enum class Overdue {
    none,
    start_timeout,  // starting longer than start_timeout_ms: killed, a start failure
    watchdog,       // ready or replacing, silent longer than watchdog_ms: killed
    replacement,    // replacing longer than start_timeout_ms: drained without waiting more
    drain,          // draining past drain_timeout_ms and the grace: killed
};
struct Verdict {
    Overdue what = Overdue::none;
    std::chrono::milliseconds limit{0};    // the limit it passed
    std::chrono::milliseconds elapsed{0};  // how long it has been
    explicit operator bool() const { return what != Overdue::none; }
};
Verdict check(WorkerState s, const WorkerTimes& t, const LifecycleLimits& limits,
              WorkerTimes::TimePoint now);

// "not ready within 1000 ms (start_timeout_ms)": the reason logged and shown in status.
std::string describe(const Verdict& v);

// How often the master must look at a worker under these limits to notice a missed deadline
// within a quarter of the shortest one (50 ms to 1 s).
std::chrono::milliseconds check_period(const LifecycleLimits& limits);

}  // namespace herd::master
