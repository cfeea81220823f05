// The supervisor's worker events: spawned, ready, heartbeat, fatal, recycled, exited, and the
// deadlines; see supervisor.hpp. Reload, scale and stop are in supervisor_reload.cpp.
#include "master/supervisor.hpp"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>

#include <fmt/format.h>

#include "core/config.hpp"
#include "core/exit_codes.hpp"
#include "master/describe.hpp"

namespace herd::master {
namespace {
double seconds(TimePoint from, TimePoint to) {
    return std::chrono::duration<double>(to - from).count();
}
}  // namespace

AppSettings AppSettings::of(const core::AppConfig& c) {
    AppSettings s;
    s.name = c.name;
    s.workers = c.workers;
    s.limits = LifecycleLimits::of(c);
    s.restart.initial_delay = std::chrono::milliseconds(c.restart_backoff_ms);
    s.restart.max_delay = std::chrono::milliseconds(c.restart_backoff_max_ms);
    s.restart.healthy_after = std::chrono::milliseconds(c.healthy_after_ms);
    s.max_rss_mb = c.max_rss_mb;
    return s;
}

void Supervisor::add_app(AppId id, const AppSettings& settings, bool provisional) {
    SupervisedApp app;
    app.id = id;
    app.settings = settings;
    app.provisional = provisional;
    app.start_failures = StartFailures(settings.restart);
    apps_[id] = std::move(app);
}

Actions Supervisor::start(TimePoint) {
    Actions out;
    for (auto& [id, app] : apps_)
        for (int slot = 0; slot < app.settings.workers; ++slot)
            request(out, act::spawn(id, slot, act::Spawn::Why::start));
    return out;
}

SupervisedWorker* Supervisor::find(pid_t pid) {
    auto it = workers_.find(pid);
    return it == workers_.end() ? nullptr : &it->second;
}

SupervisedApp* Supervisor::find_app(AppId id) {
    auto it = apps_.find(id);
    return it == apps_.end() ? nullptr : &it->second;
}

const SupervisedWorker* Supervisor::worker(pid_t pid) const {
    auto it = workers_.find(pid);
    return it == workers_.end() ? nullptr : &it->second;
}

const SupervisedApp* Supervisor::app(AppId id) const {
    auto it = apps_.find(id);
    return it == apps_.end() ? nullptr : &it->second;
}

bool Supervisor::takes_connections(pid_t pid) const {
    const SupervisedWorker* w = worker(pid);
    return w != nullptr && !w->reaped && master::takes_connections(w->state);
}

bool Supervisor::slot_taken(AppId app, int slot, pid_t except) const {
    return std::any_of(workers_.begin(), workers_.end(), [&](const auto& entry) {
        const SupervisedWorker& w = entry.second;
        return w.pid != except && w.app == app && w.slot == slot && !w.reaped;
    });
}

int Supervisor::ready_count(AppId app) const {
    return static_cast<int>(std::count_if(workers_.begin(), workers_.end(), [&](const auto& e) {
        return e.second.app == app && e.second.state == WorkerState::ready && !e.second.reaped;
    }));
}

std::string Supervisor::app_state(AppId id) const {
    const SupervisedApp* a = app(id);
    if (a == nullptr) return "gone";
    // What serves, said plainly: "running" only when every slot has a ready worker.
    return a->failed                                ? "failed"
           : a->provisional                         ? "starting"
           : a->removed                             ? "removing"
           : a->rolling                             ? "reloading"
           : ready_count(id) >= a->settings.workers ? "running"
           : !a->announced_ready                    ? "starting"
                                                    : "degraded";
}

std::chrono::milliseconds Supervisor::check_period() const {
    auto period = std::chrono::milliseconds(1000);
    for (const auto& [pid, w] : workers_) period = std::min(period, master::check_period(w.limits));
    for (const auto& [id, a] : apps_)
        period = std::min(period, master::check_period(a.settings.limits));
    return period;
}

void Supervisor::enter(SupervisedWorker& w, WorkerState s, TimePoint now) {
    if (w.state == s) return;
    w.state = s;
    w.since = now;
}

nlohmann::json Supervisor::about(const SupervisedWorker& w) const {
    const SupervisedApp* a = app(w.app);
    return {{"app", a != nullptr ? a->settings.name : std::string("?")},
            {"slot", w.slot},
            {"pid", w.pid},
            {"generation", w.generation}};
}

void Supervisor::log(Actions& out, core::LogLevel level, std::string text) {
    out.push_back(act::Log{level, std::move(text)});
}

void Supervisor::request(Actions& out, act::Spawn s) {
    ++spawning_[{s.app, s.slot}];
    out.push_back(std::move(s));
}

void Supervisor::answered(const act::Spawn& s) {
    auto it = spawning_.find({s.app, s.slot});
    if (it != spawning_.end() && --it->second <= 0) spawning_.erase(it);
}

bool Supervisor::spawning(AppId app, int slot) const {
    return spawning_.contains({app, slot});
}

void Supervisor::emit(Actions& out, std::string event, nlohmann::json fields) {
    out.push_back(act::Emit{std::move(event), std::move(fields)});
}

void Supervisor::drain(Actions& out, SupervisedWorker& w, Leave why, std::string reason,
                       TimePoint now, bool close_idle) {
    if (why != Leave::no && w.leave == Leave::no) {
        w.leave = why;
        w.leave_reason = std::move(reason);
    }
    if (w.state == WorkerState::draining) return;
    enter(w, WorkerState::draining, now);
    // The worker keeps its own deadline; tick() is the backstop for one that is stuck.
    out.push_back(act::Drain{w.pid, close_idle, w.limits.drain});
    emit(out, "worker.draining", about(w));
}

Actions Supervisor::spawned(const act::Spawn& s, pid_t pid, TimePoint now) {
    Actions out;
    answered(s);
    SupervisedApp* app = find_app(s.app);
    if (app == nullptr) return out;
    SupervisedWorker w;
    w.pid = pid;
    w.app = s.app;
    w.slot = s.slot;
    const AppSettings& settings = s.next && app->next ? app->next->settings : app->settings;
    w.generation = s.next && app->next ? app->next->generation : app->generation;
    w.name = "worker " + app->settings.name + "/" + std::to_string(s.slot) + " (pid " +
             std::to_string(pid) + ")";
    w.started = w.since = w.last_heartbeat = now;
    w.limits = settings.limits;
    w.canary = s.why == act::Spawn::Why::canary;
    auto& inserted = workers_[pid] = std::move(w);
    log(out, core::LogLevel::info,
        fmt::format("spawned {} generation {}", inserted.name, inserted.generation));
    emit(out, "worker.spawned", about(inserted));
    if (s.why == act::Spawn::Why::replacement) {
        if (SupervisedWorker* old = find(s.replaces)) {
            inserted.replaces = old->pid;
            old->replaced_by = pid;
            log(out, core::LogLevel::info,
                fmt::format("replacing {} ({}) by pid {}", old->name, s.reason, pid));
            auto fields = about(*old);
            fields.update({{"kind", s.kind}, {"reason", s.reason}, {"replacement", pid}});
            emit(out, "worker.replacing", fields);
        }
    }
    return out;
}

Actions Supervisor::spawn_failed(const act::Spawn& s, const std::string& error, TimePoint now) {
    Actions out;
    answered(s);
    SupervisedApp* app = find_app(s.app);
    if (app == nullptr) return out;
    switch (s.why) {
        case act::Spawn::Why::canary:
            abort(out, error, now);
            return out;
        case act::Spawn::Why::replacement:
            if (SupervisedWorker* old = find(s.replaces)) {
                log(out, core::LogLevel::error,
                    fmt::format("cannot replace {}: {}; draining it anyway", old->name, error));
                // Not told to leave: its exit restarts the slot, with the slot's back-off.
                drain(out, *old, Leave::no, "", now);
            }
            return out;
        case act::Spawn::Why::roll:
            log(out, core::LogLevel::error,
                fmt::format("reload: app \"{}\" slot {}: {}; trying again in 1 s",
                            app->settings.name, s.slot, error));
            out.push_back(act::RollLater{s.app, std::chrono::seconds(1)});
            return out;
        case act::Spawn::Why::start:
        case act::Spawn::Why::restart:
        case act::Spawn::Why::scale:
            break;
    }
    // Like a worker that failed to start, for its slot's back-off; not for the app's count of
    // failed starts: this says nothing about its plugins, and the app must not be given up
    // while the machine is short of descriptors for a moment.
    SlotBackoff& backoff = app->backoff.try_emplace(s.slot, app->settings.restart).first->second;
    auto delay = std::max(backoff.next_delay(now, now), min_spawn_retry);
    // Say which slot, unless the message does (fork's does; pipe2's does not).
    std::string what = error;
    if (what.find("app \"" + app->settings.name + "\"") == std::string::npos)
        what = "app \"" + app->settings.name + "\" slot " + std::to_string(s.slot) + ": " + what;
    log(out, core::LogLevel::error, "cannot start a worker: " + what);
    restart_slot(out, *app, s.slot, delay);
    return out;
}

Actions Supervisor::ready(pid_t pid, TimePoint now) {
    Actions out;
    SupervisedWorker* w = find(pid);
    if (w == nullptr) return out;
    SupervisedApp* app = find_app(w->app);
    if (w->state == WorkerState::starting) enter(*w, WorkerState::ready, now);
    if (app != nullptr) app->start_failures.record_ready();
    w->last_heartbeat = now;
    double ms = seconds(w->started, now) * 1000;
    log(out, core::LogLevel::info,
        fmt::format("{} ready in {:.1f} ms, generation {}", w->name, ms, w->generation));
    auto fields = about(*w);
    fields["ms"] = ms;
    emit(out, "worker.ready", fields);
    check_all_ready(out);
    out.push_back(act::FlushPending{w->app});
    if (w->canary) check_canaries(out, now);
    if (app != nullptr && app->rolling) advance_roll(out, *app, now);
    if (w->replaces != 0) {
        // Replacement first, then the old one leaves: no moment without a worker.
        if (SupervisedWorker* old = find(w->replaces); old != nullptr && !old->reaped) {
            log(out, core::LogLevel::info,
                fmt::format("{} replaced by {}; draining it", old->name, w->name));
            drain(out, *old, Leave::replaced, "replaced by pid " + std::to_string(pid), now);
        }
        w->replaces = 0;
    }
    return out;
}

Actions Supervisor::heartbeat(pid_t pid, std::uint64_t rss_kb, TimePoint now) {
    Actions out;
    SupervisedWorker* w = find(pid);
    if (w == nullptr) return out;
    w->last_heartbeat = now;
    const SupervisedApp* app = find_app(w->app);
    std::uint64_t limit_kb = app != nullptr ? app->settings.max_rss_mb * 1024 : 0;
    if (limit_kb != 0 && rss_kb > limit_kb && w->state == WorkerState::ready)
        replace(out, *w, "max_rss",
                "max_rss_mb: resident " + std::to_string(rss_kb / 1024) + " MiB", now);
    return out;
}

Actions Supervisor::fatal(pid_t pid, const std::string& phase, const std::string& reason,
                          TimePoint now) {
    Actions out;
    SupervisedWorker* w = find(pid);
    if (w == nullptr) return out;
    if (phase == "start") {
        w->start_failure = reason;
        log(out, core::LogLevel::error, fmt::format("{} failed to start: {}", w->name, reason));
        return out;
    }
    log(out, core::LogLevel::error,
        fmt::format("{} generation {} reported a fatal error: {}", w->name, w->generation, reason));
    // A fatal signal kills the worker at once: its exit brings the replacement.
    if (phase != "signal") replace(out, *w, "exception", "fatal error", now);
    return out;
}

Actions Supervisor::retire(pid_t pid, const std::string& reason, TimePoint now) {
    Actions out;
    SupervisedWorker* w = find(pid);
    if (w == nullptr) return out;
    log(out, core::LogLevel::info,
        fmt::format("{} generation {} asks to be recycled: {}", w->name, w->generation, reason));
    replace(out, *w, reason.starts_with("max_requests") ? "max_requests" : "retire", reason, now);
    return out;
}

void Supervisor::replace(Actions& out, SupervisedWorker& w, const std::string& kind,
                         const std::string& why, TimePoint now) {
    if (w.canary && reload_ && !reload_->committed) {
        // The new build fails on its first requests: it does not roll out.
        abort(out, w.name + " (the canary) " + why, now);
        return;
    }
    SupervisedApp* app = find_app(w.app);
    if (app == nullptr || w.replaced_by != 0 || w.leave != Leave::no || w.reaped || stopping_ ||
        w.slot >= app->settings.workers || app->removed)
        return;
    ++app->restarts_by_reason[kind];
    enter(w, WorkerState::replacing, now);  // no more connections passed to it
    act::Spawn s = act::spawn(w.app, w.slot, act::Spawn::Why::replacement);
    s.replaces = w.pid;
    s.kind = kind;
    s.reason = why;
    request(out, std::move(s));
}

Actions Supervisor::refused(pid_t pid, TimePoint now) {
    SupervisedWorker* w = find(pid);
    // The worker is draining and sent the connection back.
    if (w != nullptr && w->state == WorkerState::ready) enter(*w, WorkerState::draining, now);
    return {};
}

Actions Supervisor::stopped_accepting(pid_t pid, TimePoint now) {
    Actions out;
    SupervisedWorker* w = find(pid);
    if (w == nullptr) return out;
    w->stopped_accepting = true;
    if (SupervisedApp* app = find_app(w->app); app != nullptr && app->rolling)
        advance_roll(out, *app, now);
    return out;
}

void Supervisor::reaped(pid_t pid) {
    if (SupervisedWorker* w = find(pid)) w->reaped = true;
}

void Supervisor::check_all_ready(Actions& out) {
    bool all = true;
    for (auto& [id, app] : apps_) {
        int ready = 0;
        for (const auto& [pid, w] : workers_)
            if (w.app == id && w.state == WorkerState::ready && !w.reaped &&
                w.generation == app.generation)
                ++ready;
        if (ready >= app.settings.workers && !app.announced_ready) {
            app.announced_ready = true;
            log(out, core::LogLevel::info,
                fmt::format("app \"{}\" ready with {} worker(s)", app.settings.name, ready));
            emit(out, "app.ready",
                 {{"app", app.settings.name}, {"generation", app.generation}, {"workers", ready}});
        }
        all = all && app.announced_ready;
    }
    if (all && !all_ready_) {
        all_ready_ = true;
        out.push_back(act::AllReady{});
    }
}

Actions Supervisor::tick(TimePoint now) {
    Actions out;
    std::vector<std::pair<pid_t, Verdict>> overdue;  // acting may change the table
    for (auto& [pid, w] : workers_) {
        if (w.reaped || w.killed != Overdue::none) continue;
        WorkerTimes times{w.since, w.last_heartbeat};
        if (Verdict v = check(w.state, times, w.limits, now)) overdue.emplace_back(pid, v);
    }
    for (auto& [pid, v] : overdue)
        if (SupervisedWorker* w = find(pid)) on_overdue(out, *w, v, now);
    if (broker_ && broker_->ready && !stopping_ &&
        now - broker_->last_heartbeat > broker_watchdog) {
        log(out, core::LogLevel::error,
            fmt::format("broker (pid {}) sent no heartbeat for {} s: SIGKILL", broker_->pid,
                        broker_watchdog.count()));
        broker_->ready = false;  // once
        out.push_back(act::KillBroker{broker_->pid});
    }
    return out;
}

void Supervisor::on_overdue(Actions& out, SupervisedWorker& w, const Verdict& v, TimePoint now) {
    std::string why = describe(v);
    if (v.what == Overdue::replacement) {
        // Its replacement is still not ready: stop waiting, it drains now (the replacement
        // meets its own start timeout).
        log(out, core::LogLevel::error, fmt::format("{}: {}; draining it", w.name, why));
        w.replaced_by = 0;
        drain(out, w, Leave::replacement_overdue, why, now);
        return;
    }
    const char* hint = v.what == Overdue::start_timeout ? "stuck in a plugin's on_start?"
                       : v.what == Overdue::watchdog    ? "stuck in a plugin?"
                                                        : "stuck in its drain";
    log(out, core::LogLevel::error, fmt::format("{}: {}: {} SIGKILL", w.name, why, hint));
    auto fields = about(w);
    fields.update({{"deadline", v.what == Overdue::start_timeout ? "start_timeout"
                                : v.what == Overdue::watchdog    ? "watchdog"
                                                                 : "drain"},
                   {"reason", why}});
    emit(out, "worker.killed", fields);
    w.killed = v.what;
    w.kill_reason = why;
    if (v.what == Overdue::start_timeout) w.start_failure = why;
    out.push_back(act::Kill{w.pid, SIGKILL});
}

void Supervisor::restart_slot(Actions& out, SupervisedApp& app, int slot,
                              std::chrono::milliseconds delay) {
    if (delay.count() > 0)
        log(out, core::LogLevel::info,
            fmt::format("restarting app \"{}\" slot {} in {} ms (failure {} in a row)",
                        app.settings.name, slot, delay.count(), app.backoff.at(slot).streak()));
    out.push_back(act::RestartLater{app.id, slot, delay});
}

Actions Supervisor::restart_due(AppId id, int slot, TimePoint) {
    Actions out;
    SupervisedApp* app = find_app(id);
    if (app == nullptr) return out;  // removed by a reload meanwhile
    bool occupied = std::any_of(workers_.begin(), workers_.end(), [&](const auto& e) {
        const SupervisedWorker& w = e.second;
        return w.app == id && w.slot == slot && !w.reaped && w.leave == Leave::no;
    });
    if (stopping_ || app->failed || app->removed || slot >= app->settings.workers || occupied ||
        spawning(id, slot))
        return out;
    request(out, act::spawn(id, slot, act::Spawn::Why::restart));
    return out;
}

Actions Supervisor::exited(pid_t pid, int status, TimePoint now) {
    Actions out;
    auto it = workers_.find(pid);
    if (it == workers_.end()) return out;
    SupervisedWorker w = std::move(it->second);
    workers_.erase(it);
    SupervisedApp* found = find_app(w.app);
    if (found == nullptr) return out;
    SupervisedApp& app = *found;
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::string how = describe_status(status);
    auto record_exit = [&](const std::string& why) {
        app.last_exit[w.slot] = {why.empty() ? how : how + ": " + why, now};
    };
    std::string cause = !w.kill_reason.empty() ? w.kill_reason : w.start_failure;
    WorkerExit facts;
    facts.state = w.state;
    facts.killed = w.killed;
    facts.signaled = WIFSIGNALED(status);
    facts.start_failed = !w.start_failure.empty() ||
                         (WIFEXITED(status) && WEXITSTATUS(status) == core::exit_start_failure);
    facts.stopping = stopping_;
    facts.canary_pending = w.canary && reload_ && !reload_->committed;
    facts.leaving = w.leave != Leave::no && w.leave != Leave::slot_removed;
    facts.replaced = w.replaced_by != 0 || w.leave == Leave::replaced;
    facts.app_removed = app.removed;
    facts.slot_removed = w.slot >= app.settings.workers;
    facts.app_failed = app.failed;
    facts.rolling_its_generation = app.rolling && app.previous && w.generation == app.generation;
    SlotBackoff& backoff = app.backoff.try_emplace(w.slot, app.settings.restart).first->second;
    ExitDecision d = decide_exit(facts, backoff, app.start_failures, w.started, now);
    {
        auto fields = about(w);
        fields.update({{"status", how}, {"state", state_name(w.state)}, {"reason", cause}});
        if (WIFEXITED(status)) fields["code"] = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) fields["signal"] = WTERMSIG(status);
        fields["expected"] = !d.unexpected;  // as decide_exit judged it
        emit(out, "worker.exited", fields);
    }
    std::string after =
        fmt::format("after {:.1f} s, generation {}", seconds(w.started, now), w.generation);
    std::string reason = !w.start_failure.empty() ? w.start_failure
                         : d.start_failure        ? "worker " + how + " before it was ready"
                                                  : "";
    core::LogLevel level = clean ? core::LogLevel::info : core::LogLevel::warn;
    switch (d.action) {
        case ExitAction::none:
            if (stopping_) log(out, level, fmt::format("{} {} {}", w.name, how, after));
            break;
        case ExitAction::abort_reload:
            // The reload's canary never got going: the reload fails, the old generation
            // serves on.
            log(out, core::LogLevel::error,
                fmt::format("{} (canary of generation {}) {}", w.name, w.generation, how));
            abort(out,
                  w.name + " (the canary) " +
                      (w.start_failure.empty() ? how + " before it was ready"
                                               : "failed to start: " + w.start_failure),
                  now);
            // The abort may have removed (and forgotten) a new app with its canary.
            if (SupervisedApp* still = find_app(w.app)) forget_app_if_empty(out, *still);
            return out;
        case ExitAction::expected: {
            // It was replaced, a reload moved its slot to a new generation, or its app left
            // the config.
            std::string why = w.replaced_by != 0
                                  ? "replaced by pid " + std::to_string(w.replaced_by)
                              : app.removed             ? "app removed"
                              : !w.leave_reason.empty() ? w.leave_reason
                                                        : "slot rolled over";
            record_exit(cause.empty() ? why : cause);
            log(out, level, fmt::format("{} {} {} ({})", w.name, how, after, why));
            if (w.slot >= app.settings.workers)
                out.push_back(act::CloseRetiredSlot{app.id, w.slot});
            if (app.rolling) advance_roll(out, app, now);
            forget_app_if_empty(out, app);
            return out;
        }
        case ExitAction::slot_removed:
            record_exit("slot removed");
            log(out, core::LogLevel::info,
                fmt::format("{} {} {}; slot {} removed", w.name, how, after, w.slot));
            out.push_back(act::CloseRetiredSlot{app.id, w.slot});
            if (app.rolling) advance_roll(out, app, now);
            return out;
        case ExitAction::roll_back:
        case ExitAction::app_failed:
        case ExitAction::restart:
            break;
    }
    if (!d.unexpected) return out;
    log(out, core::LogLevel::error, fmt::format("{} {} unexpectedly {}", w.name, how, after));
    ++app.restarts[w.slot];
    ++app.restarts_by_reason[d.reason];
    record_exit(cause);
    if (d.action == ExitAction::roll_back) {
        // A slot of the new generation cannot start: like a failed canary, the reload fails
        // and the previous generation comes back.
        roll_back(out, app,
                  w.name + " of generation " + std::to_string(w.generation) +
                      " could not start: " + reason,
                  now);
        return out;
    }
    if (d.start_failure)
        // It was the replacement of a worker that reported a fatal error: that one drains
        // now, and the slot restarts with its back-off.
        for (auto& [opid, old] : workers_)
            if (old.replaced_by == w.pid && !old.reaped) {
                log(out, core::LogLevel::error,
                    fmt::format("{}: its replacement could not start; draining it", old.name));
                old.replaced_by = 0;
                drain(out, old, Leave::replacement_failed, "its replacement could not start", now);
            }
    if (d.action == ExitAction::app_failed) {
        app.failed = true;
        log(out, core::LogLevel::error,
            fmt::format("app \"{}\" failed: {} workers in a row could not start; the last: {}. "
                        "No more workers are started for it",
                        app.settings.name, app.start_failures.count(), reason));
        emit(out, "app.failed", {{"app", app.settings.name}, {"reason", reason}});
        if (app.rolling) {
            // The roll stops where it is.
            app.rolling = false;
            if (reload_)
                reload_->errors.push_back("app \"" + app.settings.name +
                                          "\" failed during the rollout of generation " +
                                          std::to_string(app.generation) + ": " + reason);
            finish_reload(out);
        }
        return out;
    }
    if (d.action == ExitAction::restart) restart_slot(out, app, w.slot, d.delay);
    return out;
}

}  // namespace herd::master
