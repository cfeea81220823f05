// What a worker's exit leads to; see exit_policy.hpp.
#include "master/exit_policy.hpp"

namespace herd::master {

ExitDecision decide_exit(const WorkerExit& e, SlotBackoff& backoff, StartFailures& failures,
                         SlotBackoff::Clock::time_point started,
                         SlotBackoff::Clock::time_point now) {
    ExitDecision d;
    if (e.stopping) return d;
    if (e.canary_pending) {
        d.action = ExitAction::abort_reload;
        return d;
    }
    if (e.replaced || e.leaving || e.app_removed) {
        d.action = ExitAction::expected;
        return d;
    }
    if (e.slot_removed) {
        d.action = ExitAction::slot_removed;
        return d;
    }
    d.unexpected = true;
    d.start_failure = e.start_failed || e.state == WorkerState::starting;
    d.reason = d.start_failure                 ? "start_failure"
               : e.killed == Overdue::watchdog ? "watchdog"
               : e.signaled                    ? "signal"
                                               : "exit";
    if (d.start_failure) {
        if (e.rolling_its_generation) {
            d.action = ExitAction::roll_back;
            return d;
        }
        // A worker that cannot start will not start on the next fork either: after a few in
        // a row the app gives up (no fork storm; other apps keep running).
        if (failures.record_failure()) {
            d.action = ExitAction::app_failed;
            return d;
        }
    }
    if (e.app_failed) return d;  // a worker already under way when the app failed
    d.action = ExitAction::restart;
    d.delay = backoff.next_delay(started, now);
    return d;
}

}  // namespace herd::master
