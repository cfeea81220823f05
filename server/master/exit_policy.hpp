// What a worker's exit leads to: the supervisor's decision when the master reaps a worker,
// from what it knew of the worker and its app. Pure: times are passed in, the back-off and the
// app's start failures are plain objects, so tests drive every case with a fake clock.
#pragma once

#include <chrono>

#include "master/lifecycle.hpp"
#include "master/restart_policy.hpp"

namespace herd::master {

// What the master knew when the worker exited.
struct WorkerExit {
    WorkerState state = WorkerState::ready;  // the state it left from
    Overdue killed = Overdue::none;          // the deadline the master killed it for, if any
    bool signaled = false;                   // killed by a signal (else it exited)
    bool start_failed = false;    // it reported a start failure, or exited with the start code
    bool stopping = false;        // herd is stopping
    bool canary_pending = false;  // a reload's canary, the reload not committed yet
    bool leaving = false;         // told to leave: a roll, a scale-down, a reload's abort
    bool replaced = false;        // its replacement took the slot after its fatal report
    bool app_removed = false;     // its app left the config
    bool slot_removed = false;    // its slot is beyond the app's worker count (scale-down)
    bool app_failed = false;      // its app had already given up
    // Its app is rolling out its generation and can roll back to the one before.
    bool rolling_its_generation = false;
};

enum class ExitAction {
    none,          // nothing more: herd is stopping, or its app had failed already
    abort_reload,  // a canary never got going: the reload fails, the old generation serves on
    expected,      // it was asked to leave: the roll or the removal goes on
    slot_removed,  // its slot was removed: not replaced
    roll_back,     // a rolling slot of the new generation cannot start: back to the previous
    app_failed,    // the app's start failures in a row reached the limit: nothing more starts
    restart,       // the slot starts again after `delay`
};

struct ExitDecision {
    ExitAction action = ExitAction::none;
    bool unexpected = false;     // it left on its own: counted as a restart of its slot
    bool start_failure = false;  // it never became ready: a start failure
    // For unexpected exits, the metrics label: start_failure, watchdog, signal or exit.
    const char* reason = "";
    std::chrono::milliseconds delay{0};  // for `restart`
};

ExitDecision decide_exit(const WorkerExit& e, SlotBackoff& backoff, StartFailures& failures,
                         SlotBackoff::Clock::time_point started,
                         SlotBackoff::Clock::time_point now);

}  // namespace herd::master
