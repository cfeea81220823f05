// Tests server/master/cpu: reading utime + stime from /proc/PID/stat lines (command names with
// spaces and parentheses, malformed lines), the meter's share of a CPU with injected times,
// and this process's own ticks growing while it burns CPU.
#include "master/cpu.hpp"

#include <unistd.h>

#include <ctime>
#include <string>

#include <gtest/gtest.h>

namespace herd::master {
namespace {

using namespace std::chrono_literals;

// Fields 3 .. 15 after the command: state, ppid, pgrp, session, tty, tpgid, flags, minflt,
// cminflt, majflt, cmajflt, utime, stime; then more.
std::string stat_line(const std::string& comm, const std::string& utime, const std::string& stime) {
    return "4711 (" + comm + ") S 1 4711 4711 0 -1 4194560 1200 0 3 0 " + utime + " " + stime +
           " 0 0 20 0 1 0 12345 10000000 500 18446744073709551615\n";
}

TEST(CpuTest, ParsesUtimePlusStime) {
    EXPECT_EQ(parse_stat_cpu(stat_line("herd: worker", "150", "25")), 175u);
    // A command name with ") (" and digits in it: the fields count from the last ')'.
    EXPECT_EQ(parse_stat_cpu(stat_line("a) S 1 2 (b", "7", "3")), 10u);
    // The line may end right after stime.
    EXPECT_EQ(parse_stat_cpu("1 (x) R 0 0 0 0 0 0 0 0 0 0 4 5"), 9u);
}

TEST(CpuTest, RefusesWhatIsNotAStatLine) {
    EXPECT_EQ(parse_stat_cpu(""), std::nullopt);
    EXPECT_EQ(parse_stat_cpu("4711 no parentheses 1 2 3"), std::nullopt);
    EXPECT_EQ(parse_stat_cpu("1 (x) R 0 0 0"), std::nullopt);  // too short
    EXPECT_EQ(parse_stat_cpu(stat_line("x", "12a", "3")), std::nullopt);
    EXPECT_EQ(parse_stat_cpu(stat_line("x", "-1", "3")), std::nullopt);
}

TEST(CpuTest, MeterGivesTheShareOfOneCpuBetweenSamples) {
    CpuMeter m;
    CpuMeter::Clock::time_point t0{};
    m.sample(1000, t0, 100);
    EXPECT_EQ(m.percent(), 0);  // one sample: no interval yet
    EXPECT_DOUBLE_EQ(m.seconds(), 10.0);
    m.sample(1050, t0 + 1s, 100);  // 0.5 s of CPU in 1 s
    EXPECT_DOUBLE_EQ(m.percent(), 50.0);
    m.sample(1250, t0 + 2s, 100);  // 2 s in 1 s: two CPUs (threads)
    EXPECT_DOUBLE_EQ(m.percent(), 200.0);
    EXPECT_DOUBLE_EQ(m.seconds(), 12.5);
    m.sample(1250, t0 + 2s, 100);  // no time passed: the last share stays
    EXPECT_DOUBLE_EQ(m.percent(), 200.0);
    m.sample(10, t0 + 3s, 100);  // a smaller count (a pid reused): no share from it
    EXPECT_DOUBLE_EQ(m.percent(), 200.0);
    m.sample(20, t0 + 4s, 100);
    EXPECT_DOUBLE_EQ(m.percent(), 10.0);
}

TEST(CpuTest, ReadsThisProcessTicksAsItBurnsCpu) {
    auto before = read_cpu_ticks(getpid());
    ASSERT_TRUE(before.has_value());
    // 100 ms of this process's CPU time (not wall time): at least a few ticks.
    timespec start{}, now{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &start);
    volatile unsigned long spins = 0;
    do {
        for (int i = 0; i < 100000; ++i) spins = spins + 1;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    } while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) <
             100000000L);
    auto after = read_cpu_ticks(getpid());
    ASSERT_TRUE(after.has_value());
    EXPECT_GE(*after - *before, static_cast<std::uint64_t>(clock_ticks_per_second() / 20));
    EXPECT_EQ(read_cpu_ticks(-1), std::nullopt);
}

}  // namespace
}  // namespace herd::master
