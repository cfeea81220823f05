// Tests the supervisor's transitions with a fake clock and fake pids: start, ready, crash,
// fatal report, watchdog, start timeout, drain deadline, recycle, scale up and down, reload
// (canary, roll, roll back, added and removed apps), the broker's death, and stop. The
// "master" here carries out spawns by handing out pids, as the real one does after fork().
#include "master/supervisor.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

using namespace std::chrono_literals;
using namespace herd::master;

namespace {

int exited_with(int code) {
    return code << 8;  // what waitpid() reports for exit(code)
}
int killed_by(int sig) {
    return sig;
}

AppSettings settings(const std::string& name, int workers) {
    AppSettings s;
    s.name = name;
    s.workers = workers;
    s.limits.start_timeout = 1000ms;
    s.limits.watchdog = 2000ms;
    s.limits.drain = 3000ms;
    s.restart.initial_delay = 100ms;
    s.restart.max_delay = 1000ms;
    s.restart.healthy_after = 10s;
    s.restart.max_start_failures = 3;
    return s;
}

template <class T>
std::vector<T> all(const Actions& actions) {
    std::vector<T> out;
    for (const Action& a : actions)
        if (const T* t = std::get_if<T>(&a)) out.push_back(*t);
    return out;
}

bool emitted(const Actions& actions, const std::string& event) {
    for (const act::Emit& e : all<act::Emit>(actions))
        if (e.event == event) return true;
    return false;
}

const act::Emit* find_event(const Actions& actions, const std::string& event) {
    for (const Action& a : actions)
        if (const auto* e = std::get_if<act::Emit>(&a); e != nullptr && e->event == event) return e;
    return nullptr;
}

struct Fixture : ::testing::Test {
    Supervisor sup;
    TimePoint now{};
    pid_t next_pid = 100;
    std::vector<act::Spawn> spawns;  // every spawn carried out, in order

    // Carries out the spawns among `actions` (giving each a pid) and returns everything that
    // happened, the spawns' own outcomes included.
    Actions run(Actions actions) {
        Actions out;
        for (std::size_t i = 0; i < actions.size(); ++i) {
            Action a = actions[i];
            out.push_back(a);
            if (const auto* s = std::get_if<act::Spawn>(&a)) {
                spawns.push_back(*s);
                for (Action& more : sup.spawned(*s, next_pid++, now)) actions.push_back(more);
            }
        }
        return out;
    }
    pid_t last_pid() const { return next_pid - 1; }

    // Pids of the app's live workers in `slot`, oldest first.
    std::vector<pid_t> in_slot(AppId app, int slot) const {
        std::vector<pid_t> out;
        for (const auto& [pid, w] : sup.workers())
            if (w.app == app && w.slot == slot && !w.reaped) out.push_back(pid);
        return out;
    }
    WorkerState state(pid_t pid) const { return sup.worker(pid)->state; }
    Actions exit(pid_t pid, int status) {
        sup.reaped(pid);
        return run(sup.exited(pid, status, now));
    }
    // One app with `workers` workers, all ready.
    void serving(int workers = 2, AppId id = 1, const std::string& name = "web") {
        sup.add_app(id, settings(name, workers));
        run(sup.start(now));
        now += 10ms;
        for (int slot = 0; slot < workers; ++slot) run(sup.ready(in_slot(id, slot).at(0), now));
    }
};

TEST_F(Fixture, StartSpawnsEverySlotAndReadyAnnouncesTheApp) {
    sup.add_app(1, settings("web", 2));
    Actions a = run(sup.start(now));
    ASSERT_EQ(spawns.size(), 2u);
    EXPECT_EQ(spawns[0].slot, 0);
    EXPECT_EQ(spawns[1].slot, 1);
    EXPECT_EQ(all<act::Emit>(a).size(), 2u);  // worker.spawned twice
    EXPECT_EQ(sup.app_state(1), "starting");
    EXPECT_FALSE(sup.takes_connections(100));

    Actions r = run(sup.ready(100, now + 5ms));
    EXPECT_TRUE(sup.takes_connections(100));
    EXPECT_EQ(all<act::FlushPending>(r).size(), 1u);
    EXPECT_FALSE(emitted(r, "app.ready"));
    EXPECT_EQ(sup.app_state(1), "starting");  // 1 of 2

    r = run(sup.ready(101, now + 6ms));
    EXPECT_TRUE(emitted(r, "app.ready"));
    EXPECT_EQ(all<act::AllReady>(r).size(), 1u);
    EXPECT_EQ(sup.app_state(1), "running");
    EXPECT_EQ(sup.ready_count(1), 2);
}

TEST_F(Fixture, CrashRestartsTheSlotWithBackOffAndStatusSaysDegraded) {
    serving();
    now += 1s;
    Actions a = exit(100, killed_by(SIGSEGV));
    EXPECT_EQ(sup.app(1)->restarts.at(0), 1u);
    EXPECT_EQ(sup.app(1)->restarts_by_reason.at("signal"), 1u);
    EXPECT_NE(sup.app(1)->last_exit.at(0).reason.find("killed by signal 11"), std::string::npos);
    const act::Emit* e = find_event(a, "worker.exited");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->fields["expected"], false);
    auto later = all<act::RestartLater>(a);
    ASSERT_EQ(later.size(), 1u);
    EXPECT_EQ(later[0].delay, 0ms);  // the first failure restarts at once
    EXPECT_EQ(sup.app_state(1), "degraded");

    Actions r = run(sup.restart_due(1, 0, now));
    ASSERT_EQ(all<act::Spawn>(r).size(), 1u);
    pid_t second = last_pid();
    // It crashes again soon: now with a back-off.
    now += 200ms;
    run(sup.ready(second, now));
    now += 200ms;
    a = exit(second, killed_by(SIGSEGV));
    later = all<act::RestartLater>(a);
    ASSERT_EQ(later.size(), 1u);
    EXPECT_GT(later[0].delay, 0ms);
    // The restart is not started twice when the slot was filled meanwhile.
    r = run(sup.restart_due(1, 0, now + later[0].delay));
    EXPECT_EQ(all<act::Spawn>(r).size(), 1u);
    EXPECT_TRUE(run(sup.restart_due(1, 0, now + later[0].delay)).empty());
}

TEST_F(Fixture, FatalReportStartsTheReplacementFirstThenDrainsTheOldWorker) {
    serving();
    Actions a = run(sup.fatal(100, "request", "std::runtime_error: boom", now));
    EXPECT_EQ(state(100), WorkerState::replacing);
    EXPECT_FALSE(sup.takes_connections(100));
    ASSERT_EQ(all<act::Spawn>(a).size(), 1u);
    EXPECT_EQ(all<act::Spawn>(a)[0].why, act::Spawn::Why::replacement);
    pid_t replacement = last_pid();
    ASSERT_NE(find_event(a, "worker.replacing"), nullptr);
    EXPECT_EQ(find_event(a, "worker.replacing")->fields["replacement"], replacement);
    EXPECT_TRUE(all<act::Drain>(a).empty());  // not before its replacement is ready

    a = run(sup.ready(replacement, now + 50ms));
    auto drains = all<act::Drain>(a);
    ASSERT_EQ(drains.size(), 1u);
    EXPECT_EQ(drains[0].pid, 100);
    EXPECT_EQ(drains[0].deadline, 3000ms);

    a = exit(100, exited_with(0));
    EXPECT_TRUE(all<act::RestartLater>(a).empty());
    EXPECT_EQ(find_event(a, "worker.exited")->fields["expected"], true);
    EXPECT_EQ(sup.app(1)->restarts_by_reason.at("exception"), 1u);
    EXPECT_EQ(sup.app_state(1), "running");
}

TEST_F(Fixture, ReplacementThatCannotStartLetsTheOldWorkerGoAndTheSlotRestarts) {
    serving();
    run(sup.fatal(100, "request", "boom", now));
    pid_t replacement = last_pid();
    Actions a = exit(replacement, exited_with(3));  // exit_start_failure
    EXPECT_EQ(sup.app(1)->restarts_by_reason.at("start_failure"), 1u);
    auto drains = all<act::Drain>(a);
    ASSERT_EQ(drains.size(), 1u);
    EXPECT_EQ(drains[0].pid, 100);
    EXPECT_EQ(all<act::RestartLater>(a).size(), 1u);
}

TEST_F(Fixture, StartFailuresInARowFailTheApp) {
    sup.add_app(1, settings("web", 1));
    run(sup.start(now));
    for (int i = 0; i < 3; ++i) {
        pid_t pid = last_pid();
        run(sup.fatal(pid, "start", "on_start threw: no database", now));
        now += 10ms;
        Actions a = exit(pid, exited_with(3));
        if (i < 2) {
            auto later = all<act::RestartLater>(a);
            ASSERT_EQ(later.size(), 1u);
            run(sup.restart_due(1, 0, now + later[0].delay));
        } else {
            ASSERT_NE(find_event(a, "app.failed"), nullptr);
            EXPECT_EQ(find_event(a, "app.failed")->fields["reason"], "on_start threw: no database");
            EXPECT_TRUE(all<act::RestartLater>(a).empty());
        }
    }
    EXPECT_EQ(sup.app_state(1), "failed");
    EXPECT_TRUE(run(sup.restart_due(1, 0, now + 1h)).empty());
}

TEST_F(Fixture, StartTimeoutKillsAndCountsAStartFailure) {
    sup.add_app(1, settings("web", 1));
    run(sup.start(now));
    EXPECT_TRUE(run(sup.tick(now + 1000ms)).empty());  // exactly at the limit: not yet
    Actions a = run(sup.tick(now + 1001ms));
    auto kills = all<act::Kill>(a);
    ASSERT_EQ(kills.size(), 1u);
    EXPECT_EQ(kills[0].pid, 100);
    EXPECT_EQ(kills[0].signal, SIGKILL);
    EXPECT_EQ(find_event(a, "worker.killed")->fields["deadline"], "start_timeout");
    EXPECT_TRUE(run(sup.tick(now + 2000ms)).empty());  // killed once
    now += 1001ms;
    a = exit(100, killed_by(SIGKILL));
    EXPECT_EQ(sup.app(1)->restarts_by_reason.at("start_failure"), 1u);
    EXPECT_NE(sup.app(1)->last_exit.at(0).reason.find("not ready within 1000 ms"),
              std::string::npos);
}

TEST_F(Fixture, WatchdogKillsASilentWorkerAndTheSlotRestarts) {
    serving(1);
    run(sup.heartbeat(100, 1000, now + 1500ms));
    EXPECT_TRUE(run(sup.tick(now + 3000ms)).empty());  // heard of 1.5 s ago
    Actions a = run(sup.tick(now + 3600ms));
    ASSERT_EQ(all<act::Kill>(a).size(), 1u);
    EXPECT_EQ(find_event(a, "worker.killed")->fields["deadline"], "watchdog");
    now += 3600ms;
    a = exit(100, killed_by(SIGKILL));
    EXPECT_EQ(sup.app(1)->restarts_by_reason.at("watchdog"), 1u);
    EXPECT_EQ(all<act::RestartLater>(a).size(), 1u);
}

TEST_F(Fixture, DrainingWorkerPastItsDeadlineIsKilled) {
    serving(2);
    run(sup.scale(1, 1, now));
    EXPECT_EQ(state(101), WorkerState::draining);
    auto deadline = now + 3000ms + LifecycleLimits::drain_grace;
    run(sup.heartbeat(100, 1000, deadline));  // the other worker is alive
    EXPECT_TRUE(run(sup.tick(deadline)).empty());
    Actions a = run(sup.tick(deadline + 1ms));
    ASSERT_EQ(all<act::Kill>(a).size(), 1u);
    EXPECT_EQ(all<act::Kill>(a)[0].pid, 101);
    EXPECT_EQ(find_event(a, "worker.killed")->fields["deadline"], "drain");
}

TEST_F(Fixture, WorkerWhoseReplacementIsLateDrainsWithoutWaiting) {
    serving(1);
    run(sup.retire(100, "max_requests 1000 reached", now));
    EXPECT_EQ(state(100), WorkerState::replacing);
    run(sup.heartbeat(100, 1000, now + 900ms));
    Actions a = run(sup.tick(now + 1001ms));
    auto drains = all<act::Drain>(a);
    ASSERT_EQ(drains.size(), 1u);
    EXPECT_EQ(drains[0].pid, 100);
    // Its exit is expected: the replacement holds the slot.
    a = exit(100, exited_with(0));
    EXPECT_TRUE(all<act::RestartLater>(a).empty());
    EXPECT_EQ(sup.app(1)->restarts_by_reason.at("max_requests"), 1u);
}

TEST_F(Fixture, ResidentMemoryOverTheLimitRecyclesTheWorker) {
    AppSettings s = settings("web", 1);
    s.max_rss_mb = 64;
    sup.add_app(1, s);
    run(sup.start(now));
    run(sup.ready(100, now));
    EXPECT_TRUE(run(sup.heartbeat(100, 60 * 1024, now)).empty());
    Actions a = run(sup.heartbeat(100, 70 * 1024, now));
    ASSERT_EQ(all<act::Spawn>(a).size(), 1u);
    EXPECT_EQ(find_event(a, "worker.replacing")->fields["kind"], "max_rss");
    // Heartbeats while it is being replaced ask for nothing more.
    EXPECT_TRUE(run(sup.heartbeat(100, 80 * 1024, now)).empty());
}

TEST_F(Fixture, ScaleUpSpawnsAndScaleDownRetiresTheHighestSlots) {
    serving(2);
    Actions a = run(sup.scale(1, 3, now));
    ASSERT_EQ(all<act::Spawn>(a).size(), 1u);
    EXPECT_EQ(all<act::Spawn>(a)[0].slot, 2);
    ASSERT_NE(find_event(a, "app.scaled"), nullptr);
    run(sup.ready(last_pid(), now));
    pid_t third = last_pid();

    a = run(sup.scale(1, 1, now));
    auto retired = all<act::RetireSlot>(a);
    ASSERT_EQ(retired.size(), 2u);
    EXPECT_EQ(all<act::Drain>(a).size(), 2u);
    a = exit(third, exited_with(0));
    ASSERT_EQ(all<act::CloseRetiredSlot>(a).size(), 1u);
    EXPECT_EQ(all<act::CloseRetiredSlot>(a)[0].slot, 2);
    EXPECT_TRUE(all<act::RestartLater>(a).empty());
    EXPECT_EQ(sup.app(1)->settings.workers, 1);
    EXPECT_TRUE(run(sup.scale(1, 1, now)).empty());
}

struct Reload : Fixture {
    // A reload of app 1 to `next`: its canary is spawned; returns the canary's pid.
    pid_t begin(AppSettings next) {
        ReloadStart r;
        r.canaries.push_back({1, std::move(next), false});
        Actions a = run(sup.begin_reload(r, now));
        EXPECT_EQ(all<act::Spawn>(a).size(), 1u);
        EXPECT_TRUE(all<act::Spawn>(a).at(0).next);
        EXPECT_TRUE(sup.reloading());
        return last_pid();
    }
};

TEST_F(Reload, CanaryReadyCommitsAndTheRollReplacesSlotBySlot) {
    serving(2);
    pid_t canary = begin(settings("web", 2));
    EXPECT_EQ(sup.worker(canary)->generation, 2);
    EXPECT_EQ(sup.app(1)->generation, 1);
    EXPECT_FALSE(sup.reload_committed());

    Actions a = run(sup.ready(canary, now));
    EXPECT_EQ(all<act::Adopt>(a).size(), 1u);
    EXPECT_TRUE(sup.reload_committed());
    EXPECT_EQ(sup.app(1)->generation, 2);
    EXPECT_EQ(sup.app_state(1), "reloading");
    // Slot 0 is served by the canary: its old worker drains; slot 1 gets a new one.
    ASSERT_EQ(all<act::Drain>(a).size(), 1u);
    EXPECT_EQ(all<act::Drain>(a)[0].pid, 100);
    ASSERT_EQ(all<act::Spawn>(a).size(), 1u);
    EXPECT_EQ(all<act::Spawn>(a)[0].slot, 1);
    pid_t second = last_pid();

    a = run(sup.ready(second, now));
    ASSERT_EQ(all<act::Drain>(a).size(), 1u);
    EXPECT_EQ(all<act::Drain>(a)[0].pid, 101);
    EXPECT_TRUE(all<act::FinishReload>(a).empty());  // old workers still accept

    run(sup.stopped_accepting(100, now));
    a = run(sup.stopped_accepting(101, now));
    EXPECT_EQ(all<act::Rolled>(a).size(), 1u);
    ASSERT_EQ(all<act::FinishReload>(a).size(), 1u);
    EXPECT_TRUE(all<act::FinishReload>(a)[0].ok);
    EXPECT_FALSE(sup.reloading());
    a = exit(100, exited_with(0));
    a = exit(101, exited_with(0));
    EXPECT_TRUE(all<act::RestartLater>(a).empty());
    EXPECT_EQ(sup.app_state(1), "running");
}

TEST_F(Reload, CanaryThatDiesBeforeReadyFailsTheReloadAndNothingChanges) {
    serving(2);
    pid_t canary = begin(settings("web", 2));
    Actions a = exit(canary, exited_with(3));
    EXPECT_EQ(all<act::DropNext>(a).size(), 1u);
    auto finish = all<act::FinishReload>(a);
    ASSERT_EQ(finish.size(), 1u);
    EXPECT_FALSE(finish[0].ok);
    EXPECT_FALSE(finish[0].committed);
    EXPECT_NE(finish[0].message.find("the canary"), std::string::npos);
    EXPECT_EQ(sup.app(1)->generation, 1);
    EXPECT_TRUE(all<act::RestartLater>(a).empty());
    EXPECT_EQ(sup.app_state(1), "running");
}

TEST_F(Reload, CanaryThatHangsIsKilledAtItsStartTimeoutAndFailsTheReload) {
    serving(1);
    AppSettings next = settings("web", 1);
    next.limits.start_timeout = 500ms;
    pid_t canary = begin(next);
    Actions a = run(sup.tick(now + 501ms));
    ASSERT_EQ(all<act::Kill>(a).size(), 1u);
    EXPECT_EQ(all<act::Kill>(a)[0].pid, canary);
    a = exit(canary, killed_by(SIGKILL));
    ASSERT_EQ(all<act::FinishReload>(a).size(), 1u);
    EXPECT_FALSE(all<act::FinishReload>(a)[0].ok);
}

TEST_F(Reload, CanaryFatalBeforeCommitAborts) {
    serving(2);
    pid_t canary = begin(settings("web", 2));
    // Not ready yet, so not committed: a fatal report is the new build failing.
    Actions a = run(sup.fatal(canary, "request", "boom", now));
    ASSERT_EQ(all<act::FinishReload>(a).size(), 1u);
    EXPECT_FALSE(all<act::FinishReload>(a)[0].ok);
    EXPECT_EQ(all<act::Drain>(a).size(), 1u);
    EXPECT_TRUE(all<act::Spawn>(a).empty());
}

TEST_F(Reload, NewWorkerOfALaterSlotThatCannotStartRollsBack) {
    serving(2);
    pid_t canary = begin(settings("web", 2));
    run(sup.ready(canary, now));
    pid_t second = last_pid();  // generation 2, slot 1
    Actions a = exit(second, exited_with(3));
    EXPECT_EQ(all<act::RollBack>(a).size(), 1u);
    ASSERT_NE(find_event(a, "app.rolled_back"), nullptr);
    EXPECT_EQ(sup.app(1)->generation, 1);
    // Slot 0's canary (generation 2) is replaced by generation 1 again.
    ASSERT_EQ(all<act::Spawn>(a).size(), 1u);
    EXPECT_EQ(all<act::Spawn>(a)[0].slot, 0);
    pid_t back = last_pid();
    EXPECT_EQ(sup.worker(back)->generation, 1);
    a = run(sup.ready(back, now));
    ASSERT_EQ(all<act::Drain>(a).size(), 1u);
    EXPECT_EQ(all<act::Drain>(a)[0].pid, canary);
    a = run(sup.stopped_accepting(canary, now));
    ASSERT_EQ(all<act::FinishReload>(a).size(), 1u);
    EXPECT_FALSE(all<act::FinishReload>(a)[0].ok);
    EXPECT_NE(all<act::FinishReload>(a)[0].message.find("rolled back to generation 1"),
              std::string::npos);
}

TEST_F(Reload, RollHangingInALaterSlotRollsBackAfterItsStartTimeout) {
    serving(2);
    pid_t canary = begin(settings("web", 2));
    run(sup.ready(canary, now));
    pid_t second = last_pid();
    Actions a = run(sup.tick(now + 1001ms));
    ASSERT_EQ(all<act::Kill>(a).size(), 1u);
    EXPECT_EQ(all<act::Kill>(a)[0].pid, second);
    now += 1001ms;
    a = exit(second, killed_by(SIGKILL));
    EXPECT_EQ(all<act::RollBack>(a).size(), 1u);
}

TEST_F(Reload, AddedAppServesOnceItsCanaryIsReadyAndRemovedAppIsForgottenAfterItsWorkers) {
    serving(1, 1, "web");
    sup.add_app(2, settings("api", 2), /*provisional=*/true);
    EXPECT_EQ(sup.app_state(2), "starting");
    ReloadStart r;
    r.canaries.push_back({2, settings("api", 2), true});
    r.removed.push_back(1);
    Actions a = run(sup.begin_reload(r, now));
    ASSERT_EQ(all<act::Spawn>(a).size(), 1u);
    EXPECT_FALSE(all<act::Spawn>(a)[0].next);
    pid_t canary = last_pid();

    a = run(sup.ready(canary, now));
    EXPECT_EQ(all<act::Serve>(a).size(), 1u);
    EXPECT_EQ(all<act::CloseApp>(a).size(), 1u);  // app 1 leaves
    EXPECT_EQ(all<act::Drain>(a).size(), 1u);
    EXPECT_EQ(all<act::Drain>(a)[0].pid, 100);
    ASSERT_EQ(all<act::Spawn>(a).size(), 1u);  // api's slot 1
    a = run(sup.ready(last_pid(), now));
    ASSERT_EQ(all<act::FinishReload>(a).size(), 1u);
    EXPECT_TRUE(all<act::FinishReload>(a)[0].ok);

    a = exit(100, exited_with(0));
    EXPECT_EQ(all<act::ForgetApp>(a).size(), 1u);
    ASSERT_NE(find_event(a, "app.removed"), nullptr);
    EXPECT_EQ(find_event(a, "app.removed")->fields["app"], "web");
    EXPECT_EQ(sup.app(1), nullptr);
    EXPECT_EQ(sup.app_state(2), "running");
}

TEST_F(Reload, AbortedReloadRemovesTheAppItWouldHaveAdded) {
    serving(1, 1, "web");
    sup.add_app(2, settings("api", 1), /*provisional=*/true);
    ReloadStart r;
    r.canaries.push_back({2, settings("api", 1), true});
    run(sup.begin_reload(r, now));
    Actions a = exit(last_pid(), exited_with(3));
    EXPECT_EQ(all<act::CloseApp>(a).size(), 1u);
    EXPECT_EQ(all<act::ForgetApp>(a).size(), 1u);
    EXPECT_EQ(sup.app(2), nullptr);
    ASSERT_EQ(all<act::FinishReload>(a).size(), 1u);
    EXPECT_FALSE(all<act::FinishReload>(a)[0].ok);
}

TEST_F(Fixture, StopDrainsEveryWorkerAndNothingRestarts) {
    serving(2);
    ReloadStart r;
    r.canaries.push_back({1, settings("web", 2), false});
    run(sup.begin_reload(r, now));
    Actions a = run(sup.stop("signal Terminated", 0, now));
    EXPECT_TRUE(sup.stopping());
    EXPECT_NE(find_event(a, "herd.stopping"), nullptr);
    ASSERT_EQ(all<act::FinishReload>(a).size(), 1u);  // the reload's clients are answered
    EXPECT_FALSE(all<act::FinishReload>(a)[0].ok);
    auto drains = all<act::Drain>(a);
    EXPECT_EQ(drains.size(), 3u);
    for (const act::Drain& d : drains) EXPECT_TRUE(d.close_idle);
    for (pid_t pid : {100, 101, 102}) {
        a = exit(pid, killed_by(SIGSEGV));
        EXPECT_TRUE(all<act::RestartLater>(a).empty());
        EXPECT_TRUE(all<act::Spawn>(a).empty());
    }
    EXPECT_TRUE(sup.workers().empty());
    EXPECT_TRUE(run(sup.stop("again", 0, now)).empty());
}

TEST_F(Fixture, SpawnFailureRetriesAfterTheSlotsBackOff) {
    sup.add_app(1, settings("web", 1));
    Actions a = sup.start(now);
    ASSERT_EQ(a.size(), 1u);
    Actions r = run(sup.spawn_failed(std::get<act::Spawn>(a[0]), "fork(): EAGAIN", now));
    auto later = all<act::RestartLater>(r);
    ASSERT_EQ(later.size(), 1u);
    EXPECT_GE(later[0].delay, min_spawn_retry);
    EXPECT_FALSE(sup.app(1)->start_failures.failed());
    EXPECT_EQ(all<act::Spawn>(run(sup.restart_due(1, 0, now + later[0].delay))).size(), 1u);
}

}  // namespace

namespace {

TEST(Broker, DeathRestartsItWithBackOffUnlessHerdIsStopping) {
    Supervisor sup;
    TimePoint now{};
    sup.broker_spawned(500, now);
    EXPECT_FALSE(sup.broker_ready());
    sup.broker_ready(now + 10ms);
    EXPECT_TRUE(sup.broker_ready());
    now += 1s;
    Actions a = sup.broker_exited(killed_by(SIGKILL), now);
    EXPECT_EQ(sup.broker_restarts(), 1u);
    EXPECT_FALSE(sup.broker_ready());
    const act::Emit* e = find_event(a, "broker.exited");
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->fields["expected"], false);
    auto start = all<act::StartBroker>(a);
    ASSERT_EQ(start.size(), 1u);
    EXPECT_EQ(start[0].delay, 0ms);  // the first death: at once
    // It dies again right away: now with a back-off.
    sup.broker_spawned(501, now);
    now += 10ms;
    a = sup.broker_exited(exited_with(1), now);
    ASSERT_EQ(all<act::StartBroker>(a).size(), 1u);
    EXPECT_GT(all<act::StartBroker>(a)[0].delay, 0ms);
    // While stopping, its exit is expected and it stays down.
    sup.broker_spawned(502, now);
    sup.stop("signal Terminated", 0, now);
    a = sup.broker_exited(exited_with(0), now);
    EXPECT_TRUE(all<act::StartBroker>(a).empty());
    EXPECT_EQ(find_event(a, "broker.exited")->fields["expected"], true);
    EXPECT_EQ(sup.broker_restarts(), 2u);
}

TEST(Broker, SilentBrokerIsKilledOnceAfterItsWatchdog) {
    Supervisor sup;
    TimePoint now{};
    sup.broker_spawned(500, now);
    // Not ready yet: it is still connecting to its backend; no watchdog.
    EXPECT_TRUE(all<act::KillBroker>(sup.tick(now + 1h)).empty());
    sup.broker_ready(now);
    sup.broker_heartbeat(now + 5s);
    EXPECT_TRUE(all<act::KillBroker>(sup.tick(now + 15s)).empty());
    Actions a = sup.tick(now + 15s + 1ms);
    ASSERT_EQ(all<act::KillBroker>(a).size(), 1u);
    EXPECT_EQ(all<act::KillBroker>(a)[0].pid, 500);
    EXPECT_TRUE(all<act::KillBroker>(sup.tick(now + 20s)).empty());
}

TEST(Broker, SpawnFailureTriesAgainAfterABackOff) {
    Supervisor sup;
    Actions a = sup.broker_spawn_failed("fork(): EAGAIN", TimePoint{});
    ASSERT_EQ(all<act::StartBroker>(a).size(), 1u);
    EXPECT_GE(all<act::StartBroker>(a)[0].delay, min_spawn_retry);
}

}  // namespace
