// Restart policy: when a worker slot may start again after a failure, and when an app gives
// up. Pure decisions: time is passed in, so tests inject it.
#pragma once

#include <chrono>

namespace herd::master {

struct RestartOptions {
    std::chrono::milliseconds initial_delay{100};  // 0: no back-off at all
    std::chrono::milliseconds max_delay{15000};
    // A worker that ran at least this long before failing was healthy: restart at once and
    // forget earlier failures.
    std::chrono::milliseconds healthy_after{10000};
    int max_start_failures = 5;  // in a row, per app: then the app is failed
};

// One per worker slot: exponential back-off for repeated crashes.
class SlotBackoff {
  public:
    using Clock = std::chrono::steady_clock;
    explicit SlotBackoff(RestartOptions options = {}) : options_(options) {}

    // A worker of this slot that started at `started` has failed at `now`: how long to wait
    // before starting the next one (zero for a first failure, or after a healthy run).
    std::chrono::milliseconds next_delay(Clock::time_point started, Clock::time_point now);
    int streak() const { return streak_; }

  private:
    RestartOptions options_;
    int streak_ = 0;  // failures in a row, each after a short run
};

// One per app: consecutive workers that never became ready.
class StartFailures {
  public:
    explicit StartFailures(RestartOptions options = {}) : options_(options) {}
    // Returns true when this failure makes the app failed (exactly once).
    bool record_failure();
    void record_ready() { count_ = 0; }
    bool failed() const { return failed_; }
    int count() const { return count_; }

  private:
    RestartOptions options_;
    int count_ = 0;
    bool failed_ = false;
};

}  // namespace herd::master
