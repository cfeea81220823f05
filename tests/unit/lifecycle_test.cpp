// Tests each worker state's deadline with an injected clock: start timeout, watchdog,
// replacement wait and drain, and the check period.
#include "master/lifecycle.hpp"

#include <gtest/gtest.h>

#include "core/config.hpp"

using namespace std::chrono_literals;
using herd::master::check;
using herd::master::check_period;
using herd::master::describe;
using herd::master::LifecycleLimits;
using herd::master::Overdue;
using herd::master::WorkerState;
using herd::master::WorkerTimes;

namespace {

LifecycleLimits limits() {
    LifecycleLimits l;
    l.start_timeout = 1000ms;
    l.watchdog = 500ms;
    l.drain = 2000ms;
    return l;
}

const WorkerTimes::TimePoint t0{};

}  // namespace

TEST(LifecycleTest, StartingPastStartTimeoutIsKilledAsAStartFailure) {
    WorkerTimes t{t0, t0};
    EXPECT_FALSE(check(WorkerState::starting, t, limits(), t0 + 1000ms));
    auto v = check(WorkerState::starting, t, limits(), t0 + 1001ms);
    EXPECT_EQ(v.what, Overdue::start_timeout);
    EXPECT_EQ(describe(v), "not ready within 1000 ms (start_timeout_ms)");
}

TEST(LifecycleTest, AStartingWorkerHasNoWatchdogYet) {
    // Its plugins load and on_start runs before its loop heartbeats: only the start timeout.
    WorkerTimes t{t0, t0};
    EXPECT_FALSE(check(WorkerState::starting, t, limits(), t0 + 900ms));
}

TEST(LifecycleTest, ReadyAndSilentPastWatchdogIsKilled) {
    WorkerTimes t{t0, t0 + 10s};  // ready for long, heartbeat recent
    EXPECT_FALSE(check(WorkerState::ready, t, limits(), t0 + 10s + 500ms));
    auto v = check(WorkerState::ready, t, limits(), t0 + 10s + 750ms);
    EXPECT_EQ(v.what, Overdue::watchdog);
    EXPECT_EQ(describe(v), "no heartbeat for 750 ms (watchdog_ms 500)");
}

TEST(LifecycleTest, AReplacingWorkerIsWatchedAndWaitsForItsReplacementAtMostStartTimeout) {
    WorkerTimes t{t0, t0};
    // Heartbeating, its replacement late: drained after start_timeout_ms.
    t.last_heartbeat = t0 + 900ms;
    EXPECT_FALSE(check(WorkerState::replacing, t, limits(), t0 + 1000ms));
    EXPECT_EQ(check(WorkerState::replacing, t, limits(), t0 + 1100ms).what, Overdue::replacement);
    // Silent: the watchdog first.
    t.last_heartbeat = t0;
    EXPECT_EQ(check(WorkerState::replacing, t, limits(), t0 + 600ms).what, Overdue::watchdog);
}

TEST(LifecycleTest, DrainingPastItsDeadlineAndTheGraceIsKilled) {
    WorkerTimes t{t0 + 5s, t0};  // draining since 5 s; heartbeats do not matter any more
    auto limit = 2000ms + LifecycleLimits::drain_grace;
    EXPECT_FALSE(check(WorkerState::draining, t, limits(), t0 + 5s + limit));
    auto v = check(WorkerState::draining, t, limits(), t0 + 5s + limit + 1ms);
    EXPECT_EQ(v.what, Overdue::drain);
    EXPECT_NE(describe(v).find("drain_timeout_ms"), std::string::npos);
}

TEST(LifecycleTest, LimitsComeFromTheAppConfig) {
    herd::core::AppConfig app;
    app.start_timeout_ms = 1234;
    app.watchdog_ms = 567;
    app.drain_timeout_ms = 89;
    auto l = LifecycleLimits::of(app);
    EXPECT_EQ(l.start_timeout, 1234ms);
    EXPECT_EQ(l.watchdog, 567ms);
    EXPECT_EQ(l.drain, 89ms);
}

TEST(LifecycleTest, CheckPeriodIsAQuarterOfTheShortestLimitWithinBounds) {
    EXPECT_EQ(check_period(limits()), 125ms);
    LifecycleLimits slow;
    slow.start_timeout = slow.watchdog = slow.drain = 60s;
    EXPECT_EQ(check_period(slow), 1000ms);
    LifecycleLimits fast;
    fast.start_timeout = fast.watchdog = fast.drain = 100ms;
    EXPECT_EQ(check_period(fast), 50ms);
}
