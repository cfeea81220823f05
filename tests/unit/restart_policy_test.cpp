// Tests the restart policy with injected times: back-off doubling to its cap, reset after a
// healthy run, and an app failed after N start failures in a row.
#include "master/restart_policy.hpp"

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using herd::master::RestartOptions;
using herd::master::SlotBackoff;
using herd::master::StartFailures;
using Clock = SlotBackoff::Clock;

TEST(SlotBackoffTest, FirstFailureRestartsAtOnceThenDoublesToTheCap) {
    SlotBackoff b;
    Clock::time_point t{};
    std::vector<long> delays;
    for (int i = 0; i < 10; ++i) {
        auto d = b.next_delay(t, t + 1s);  // each worker lived one second: not healthy
        delays.push_back(static_cast<long>(d.count()));
        t += 2s;
    }
    EXPECT_EQ(delays, (std::vector<long>{0, 100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000}));
}

TEST(SlotBackoffTest, AHealthyRunResetsTheStreak) {
    SlotBackoff b;
    Clock::time_point t{};
    EXPECT_EQ(b.next_delay(t, t + 1s), 0ms);  // a first failure restarts at once
    EXPECT_EQ(b.next_delay(t, t + 1s), 100ms);
    EXPECT_EQ(b.next_delay(t, t + 1s), 200ms);
    EXPECT_EQ(b.next_delay(t, t + 10s), 0ms);  // ran 10 s: healthy, restart at once
    EXPECT_EQ(b.streak(), 0);
    EXPECT_EQ(b.next_delay(t, t + 1s), 0ms);
    EXPECT_EQ(b.next_delay(t, t + 1s), 100ms);
}

TEST(SlotBackoffTest, OptionsAreHonoured) {
    RestartOptions o;
    o.initial_delay = 10ms;
    o.max_delay = 35ms;
    o.healthy_after = 500ms;
    SlotBackoff b(o);
    Clock::time_point t{};
    EXPECT_EQ(b.next_delay(t, t + 100ms), 0ms);
    EXPECT_EQ(b.next_delay(t, t + 100ms), 10ms);
    EXPECT_EQ(b.next_delay(t, t + 100ms), 20ms);
    EXPECT_EQ(b.next_delay(t, t + 100ms), 35ms);
    EXPECT_EQ(b.next_delay(t, t + 600ms), 0ms);
}

TEST(SlotBackoffTest, ZeroInitialDelayMeansNoBackoff) {
    RestartOptions o;
    o.initial_delay = 0ms;
    SlotBackoff b(o);
    Clock::time_point t{};
    for (int i = 0; i < 5; ++i) EXPECT_EQ(b.next_delay(t, t + 1ms), 0ms);
}

TEST(SlotBackoffTest, NoOverflowAfterManyFailures) {
    SlotBackoff b;
    Clock::time_point t{};
    for (int i = 0; i < 200; ++i) EXPECT_LE(b.next_delay(t, t + 1ms), 15000ms);
}

TEST(StartFailuresTest, FailsOnceAfterNInARow) {
    StartFailures f;
    for (int i = 0; i < 4; ++i) EXPECT_FALSE(f.record_failure());
    EXPECT_FALSE(f.failed());
    EXPECT_TRUE(f.record_failure());  // the fifth
    EXPECT_TRUE(f.failed());
    EXPECT_FALSE(f.record_failure());  // reported once only
}

TEST(StartFailuresTest, AReadyWorkerResetsTheCount) {
    StartFailures f;
    for (int i = 0; i < 4; ++i) f.record_failure();
    f.record_ready();
    EXPECT_EQ(f.count(), 0);
    for (int i = 0; i < 4; ++i) EXPECT_FALSE(f.record_failure());
    EXPECT_TRUE(f.record_failure());
}
