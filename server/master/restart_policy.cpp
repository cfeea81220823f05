// Restart policy; see restart_policy.hpp.
#include "master/restart_policy.hpp"

#include <algorithm>

namespace herd::master {

std::chrono::milliseconds SlotBackoff::next_delay(Clock::time_point started,
                                                  Clock::time_point now) {
    if (now - started >= options_.healthy_after) {
        streak_ = 0;
        return std::chrono::milliseconds(0);
    }
    ++streak_;
    // The first failure restarts at once; repeated ones wait initial, 2 x initial, 4 x
    // initial, ... up to the cap (the shift is bounded so it cannot overflow).
    if (streak_ == 1 || options_.initial_delay.count() == 0) return std::chrono::milliseconds(0);
    auto delay = options_.initial_delay * (std::int64_t{1} << std::min(streak_ - 2, 30));
    return std::min(delay, options_.max_delay);
}

bool StartFailures::record_failure() {
    ++count_;
    if (failed_ || count_ < options_.max_start_failures) return false;
    failed_ = true;
    return true;
}

}  // namespace herd::master
