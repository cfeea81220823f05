// Worker lifecycle decisions; see lifecycle.hpp.
#include "master/lifecycle.hpp"

#include <algorithm>

#include "core/config.hpp"

namespace herd::master {

const char* state_name(WorkerState s) {
    switch (s) {
        case WorkerState::starting:
            return "starting";
        case WorkerState::ready:
            return "ready";
        case WorkerState::replacing:
            return "replacing";
        case WorkerState::draining:
            return "draining";
    }
    return "?";
}

LifecycleLimits LifecycleLimits::of(const core::AppConfig& app) {
    LifecycleLimits l;
    l.start_timeout = std::chrono::milliseconds(app.start_timeout_ms);
    l.watchdog = std::chrono::milliseconds(app.watchdog_ms);
    l.drain = std::chrono::milliseconds(app.drain_timeout_ms);
    return l;
}

Verdict check(WorkerState s, const WorkerTimes& t, const LifecycleLimits& limits,
              WorkerTimes::TimePoint now) {
    using std::chrono::duration_cast;
    using std::chrono::milliseconds;
    auto past = [&](WorkerTimes::TimePoint from, milliseconds limit, Overdue what) {
        auto elapsed = duration_cast<milliseconds>(now - from);
        return elapsed > limit ? Verdict{what, limit, elapsed} : Verdict{};
    };
    switch (s) {
        case WorkerState::starting:
            return past(t.since, limits.start_timeout, Overdue::start_timeout);
        case WorkerState::ready:
            return past(t.last_heartbeat, limits.watchdog, Overdue::watchdog);
        case WorkerState::replacing:
            // Still running its loop: a stuck one is killed like any other.
            if (Verdict v = past(t.last_heartbeat, limits.watchdog, Overdue::watchdog)) return v;
            return past(t.since, limits.start_timeout, Overdue::replacement);
        case WorkerState::draining:
            return past(t.since, limits.drain + LifecycleLimits::drain_grace, Overdue::drain);
    }
    return {};
}

std::string describe(const Verdict& v) {
    std::string limit = std::to_string(v.limit.count()) + " ms";
    switch (v.what) {
        case Overdue::none:
            return "";
        case Overdue::start_timeout:
            return "not ready within " + limit + " (start_timeout_ms)";
        case Overdue::watchdog:
            return "no heartbeat for " + std::to_string(v.elapsed.count()) + " ms (watchdog_ms " +
                   std::to_string(v.limit.count()) + ")";
        case Overdue::replacement:
            return "its replacement was not ready within " + limit + " (start_timeout_ms)";
        case Overdue::drain:
            return "still draining after " + limit + " (drain_timeout_ms and a grace of " +
                   std::to_string(LifecycleLimits::drain_grace.count()) + " ms)";
    }
    return "";
}

std::chrono::milliseconds check_period(const LifecycleLimits& limits) {
    auto shortest = std::min({limits.start_timeout, limits.watchdog, limits.drain});
    return std::clamp(shortest / 4, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
}

}  // namespace herd::master
