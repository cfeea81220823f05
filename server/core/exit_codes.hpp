// Exit codes a worker (or the broker) leaves with, which the master understands (nginx's idea:
// a start-up failure is not respawned like a crash).
#pragma once

namespace herd::core {

inline constexpr int exit_ok = 0;
inline constexpr int exit_start_failure = 3;  // could not start: counted as a start failure
inline constexpr int exit_master_gone = 4;    // its master died: nothing left to serve for

}  // namespace herd::core
