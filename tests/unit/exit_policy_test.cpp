// Tests what a worker's exit leads to, case by case, with an injected clock: crashes and
// their back-off, start failures up to the app's failed state, a start timeout, the watchdog,
// canaries, rolls and roll backs, expected exits, removed slots, and herd stopping.
#include "master/exit_policy.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using herd::master::decide_exit;
using herd::master::ExitAction;
using herd::master::ExitDecision;
using herd::master::Overdue;
using herd::master::SlotBackoff;
using herd::master::StartFailures;
using herd::master::WorkerExit;
using herd::master::WorkerState;
using Clock = SlotBackoff::Clock;

namespace {

struct Slot {
    SlotBackoff backoff;
    StartFailures failures;
    Clock::time_point now{};

    // A worker that ran `ran` and exited with `e`.
    ExitDecision exit(const WorkerExit& e, Clock::duration ran = 1s) {
        Clock::time_point started = now;
        now += ran;
        return decide_exit(e, backoff, failures, started, now);
    }
};

WorkerExit crash(WorkerState state = WorkerState::ready) {
    WorkerExit e;
    e.state = state;
    e.signaled = true;
    return e;
}

}  // namespace

TEST(ExitPolicyTest, ACrashRestartsAtOnceThenBacksOff) {
    Slot s;
    auto d = s.exit(crash());
    EXPECT_EQ(d.action, ExitAction::restart);
    EXPECT_TRUE(d.unexpected);
    EXPECT_FALSE(d.start_failure);
    EXPECT_STREQ(d.reason, "signal");
    EXPECT_EQ(d.delay, 0ms);
    EXPECT_EQ(s.exit(crash()).delay, 100ms);
    EXPECT_EQ(s.exit(crash()).delay, 200ms);
    // A run longer than healthy_after: at once again.
    EXPECT_EQ(s.exit(crash(), 11s).delay, 0ms);
}

TEST(ExitPolicyTest, AnExitOfItsOwnIsAnExitNotASignal) {
    Slot s;
    WorkerExit e;
    EXPECT_STREQ(s.exit(e).reason, "exit");
}

TEST(ExitPolicyTest, StartFailuresInARowFailTheAppOnce) {
    Slot s;
    WorkerExit e;
    e.state = WorkerState::starting;
    e.start_failed = true;
    for (int i = 0; i < 4; ++i) {
        auto d = s.exit(e, 10ms);
        EXPECT_EQ(d.action, ExitAction::restart) << i;
        EXPECT_TRUE(d.start_failure);
        EXPECT_STREQ(d.reason, "start_failure");
    }
    EXPECT_EQ(s.exit(e, 10ms).action, ExitAction::app_failed);
    // A worker already under way when the app failed: nothing more.
    e.app_failed = true;
    auto d = s.exit(e, 10ms);
    EXPECT_EQ(d.action, ExitAction::none);
    EXPECT_TRUE(d.unexpected);
}

TEST(ExitPolicyTest, AReadyWorkerBetweenStartFailuresResetsTheCount) {
    Slot s;
    WorkerExit e = crash(WorkerState::starting);
    for (int i = 0; i < 4; ++i) s.exit(e, 10ms);
    s.failures.record_ready();
    for (int i = 0; i < 4; ++i) EXPECT_EQ(s.exit(e, 10ms).action, ExitAction::restart);
}

TEST(ExitPolicyTest, AStartTimeoutIsAStartFailure) {
    Slot s;
    WorkerExit e = crash(WorkerState::starting);
    e.killed = Overdue::start_timeout;
    auto d = s.exit(e, 30s);
    EXPECT_TRUE(d.start_failure);
    EXPECT_STREQ(d.reason, "start_failure");
    EXPECT_EQ(s.failures.count(), 1);
}

TEST(ExitPolicyTest, AWatchdogKillIsLabelledSo) {
    Slot s;
    WorkerExit e = crash();
    e.killed = Overdue::watchdog;
    auto d = s.exit(e);
    EXPECT_EQ(d.action, ExitAction::restart);
    EXPECT_STREQ(d.reason, "watchdog");
    EXPECT_FALSE(d.start_failure);
}

TEST(ExitPolicyTest, ACanaryThatDiesFailsTheReload) {
    Slot s;
    WorkerExit e = crash(WorkerState::starting);
    e.canary_pending = true;
    auto d = s.exit(e);
    EXPECT_EQ(d.action, ExitAction::abort_reload);
    EXPECT_FALSE(d.unexpected);
    EXPECT_EQ(s.failures.count(), 0);  // no start failure of the running app
}

TEST(ExitPolicyTest, ARollingSlotThatCannotStartRollsBack) {
    Slot s;
    WorkerExit e = crash(WorkerState::starting);
    e.rolling_its_generation = true;
    auto d = s.exit(e);
    EXPECT_EQ(d.action, ExitAction::roll_back);
    EXPECT_TRUE(d.start_failure);
    EXPECT_EQ(s.failures.count(), 0);
    // The same crash once it was ready is an ordinary restart, roll or not.
    e.state = WorkerState::ready;
    EXPECT_EQ(s.exit(e).action, ExitAction::restart);
}

TEST(ExitPolicyTest, AskedToLeaveIsExpected) {
    for (int which = 0; which < 3; ++which) {
        Slot s;
        WorkerExit e = crash(WorkerState::draining);
        (which == 0 ? e.leaving : which == 1 ? e.replaced : e.app_removed) = true;
        auto d = s.exit(e);
        EXPECT_EQ(d.action, ExitAction::expected) << which;
        EXPECT_FALSE(d.unexpected);
    }
}

TEST(ExitPolicyTest, ARemovedSlotIsNotReplaced) {
    Slot s;
    WorkerExit e = crash();
    e.slot_removed = true;
    EXPECT_EQ(s.exit(e).action, ExitAction::slot_removed);
}

TEST(ExitPolicyTest, NothingRestartsWhileStopping) {
    Slot s;
    WorkerExit e = crash(WorkerState::starting);
    e.stopping = true;
    e.canary_pending = true;
    auto d = s.exit(e);
    EXPECT_EQ(d.action, ExitAction::none);
    EXPECT_FALSE(d.unexpected);
    EXPECT_EQ(s.failures.count(), 0);
}
