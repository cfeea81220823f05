// Per-worker CPU use, read by the master from /proc/PID/stat at each heartbeat (a worker
// reports nothing about it: a worker stuck in a loop still shows 100 %). parse_stat_cpu and
// CpuMeter are pure and unit-tested; read_cpu_ticks does the reading.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

namespace herd::master {

// utime + stime (fields 14 and 15, in clock ticks) of one /proc/PID/stat line; nullopt when it
// is not one. The command name (field 2) is in parentheses and may hold spaces and ')'.
std::optional<std::uint64_t> parse_stat_cpu(std::string_view stat);

// The same for a running process; nullopt once it is gone.
std::optional<std::uint64_t> read_cpu_ticks(pid_t pid);

// sysconf(_SC_CLK_TCK), read once.
long clock_ticks_per_second();

// CPU time and the share of one CPU used between the last two samples (100 = one CPU busy).
class CpuMeter {
  public:
    using Clock = std::chrono::steady_clock;
    void sample(std::uint64_t ticks, Clock::time_point now, long ticks_per_second);
    double percent() const { return percent_; }  // 0 until two samples
    double seconds() const { return seconds_; }  // in all

  private:
    bool primed_ = false;
    std::uint64_t ticks_ = 0;
    Clock::time_point at_{};
    double percent_ = 0, seconds_ = 0;
};

}  // namespace herd::master
