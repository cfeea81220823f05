// The supervisor's commands: a reload (canaries, commit, the roll slot by slot, roll back,
// abort), scaling, removing an app, and stopping; see supervisor.hpp.
#include <algorithm>

#include <fmt/format.h>

#include "master/supervisor.hpp"

namespace herd::master {

Actions Supervisor::begin_reload(const ReloadStart& r, TimePoint now) {
    Actions out;
    reload_ = Reload{};
    reload_->removed = r.removed;
    for (const ReloadStart::Canary& c : r.canaries) {
        SupervisedApp* app = find_app(c.app);
        if (app == nullptr) continue;
        act::Spawn s = act::spawn(c.app, 0, act::Spawn::Why::canary);
        if (!c.added) {
            app->next = SupervisedApp::Next{c.settings, app->generation + 1};
            s.next = true;
        }
        request(out, std::move(s));
    }
    // A canary that hangs in its start-up does not hold the reload: its start_timeout_ms
    // kills it (tick()), and its exit fails the reload.
    if (r.canaries.empty()) commit_reload(out, now);
    return out;
}

void Supervisor::check_canaries(Actions& out, TimePoint now) {
    if (!reload_ || reload_->committed) return;
    bool any = false;
    for (const auto& [pid, w] : workers_) {
        if (!w.canary) continue;
        if (w.state != WorkerState::ready || w.reaped) return;
        any = true;
    }
    if (any) commit_reload(out, now);
}

Actions Supervisor::abort_reload(const std::string& why, TimePoint now) {
    Actions out;
    abort(out, why, now);
    return out;
}

void Supervisor::abort(Actions& out, const std::string& why, TimePoint now) {
    if (!reload_ || reload_->committed) return;
    for (auto& [pid, w] : workers_) {
        if (!w.canary || w.reaped) continue;
        w.canary = false;
        drain(out, w, Leave::reload_aborted, "the reload failed", now);
    }
    std::vector<AppId> provisional;
    for (auto& [id, app] : apps_) {
        if (app.next) {
            app.next.reset();
            out.push_back(act::DropNext{id});
        }
        if (app.provisional) provisional.push_back(id);
    }
    for (AppId id : provisional)
        if (SupervisedApp* app = find_app(id)) {
            app->provisional = false;
            remove_app(out, *app, now);
        }
    end_reload(out, false, "reload failed, nothing changed: " + why);
}

void Supervisor::commit_reload(Actions& out, TimePoint now) {
    reload_->committed = true;
    out.push_back(act::Committed{});
    for (auto& [pid, w] : workers_) w.canary = false;
    for (AppId id : reload_->removed)
        if (SupervisedApp* app = find_app(id)) remove_app(out, *app, now);
    for (auto& [id, app] : apps_) {
        if (app.removed) continue;
        if (app.provisional) {
            app.provisional = false;
            app.rolling = true;
            out.push_back(act::Serve{id});
            continue;
        }
        if (!app.next) continue;
        out.push_back(act::Adopt{id});
        SupervisedApp::Next n = std::move(*app.next);
        app.next.reset();
        int before = app.settings.workers;
        app.previous = SupervisedApp::Previous{app.settings, app.generation};
        app.settings = n.settings;
        app.generation = n.generation;
        app.failed = false;
        app.start_failures = StartFailures(app.settings.restart);
        app.announced_ready = false;
        app.rolling = true;
        if (app.settings.workers < before)
            log(out, core::LogLevel::info,
                fmt::format("app \"{}\": {} to {} worker(s)", app.settings.name, before,
                            app.settings.workers));
    }
    for (auto& [id, app] : apps_)
        if (app.rolling) advance_roll(out, app, now);
    finish_reload(out);
}

Actions Supervisor::roll_due(AppId id, TimePoint now) {
    Actions out;
    if (SupervisedApp* app = find_app(id)) advance_roll(out, *app, now);
    return out;
}

void Supervisor::advance_roll(Actions& out, SupervisedApp& app, TimePoint now) {
    if (!app.rolling || stopping_ || app.removed) return;
    int g = app.generation;
    for (int slot = 0; slot < app.settings.workers; ++slot) {
        const SupervisedWorker* fresh = nullptr;
        for (const auto& [pid, w] : workers_)
            if (w.app == app.id && w.slot == slot && w.generation == g && !w.reaped &&
                w.leave == Leave::no &&
                (w.state == WorkerState::starting || w.state == WorkerState::ready))
                fresh = &w;
        if (fresh == nullptr) {
            if (app.failed || spawning(app.id, slot)) return;
            request(out, act::spawn(app.id, slot, act::Spawn::Why::roll));
            return;  // one slot at a time
        }
        if (fresh->state != WorkerState::ready) return;
        // The new generation serves this slot: the other workers of the slot leave (older
        // ones, or newer ones when rolling back).
        for (auto& [pid, w] : workers_)
            if (w.app == app.id && w.slot == slot && w.generation != g && !w.reaped &&
                w.leave == Leave::no && w.state != WorkerState::draining)
                drain(out, w, Leave::rolled, "", now);
    }
    for (auto& [pid, w] : workers_)
        if (w.app == app.id && w.slot >= app.settings.workers && !w.reaped &&
            w.leave == Leave::no && w.state != WorkerState::draining) {
            drain(out, w, Leave::slot_removed, "slot removed", now);
            out.push_back(act::RetireSlot{pid});
        }
    // Done once no older worker accepts any more: from then on every new connection meets
    // the new generation (what `herd reload` promises when it returns).
    for (const auto& [pid, w] : workers_)
        if (w.app == app.id && w.generation != g && !w.reaped && !w.stopped_accepting) return;
    app.rolling = false;
    app.previous.reset();
    out.push_back(act::Rolled{app.id});
    log(out, core::LogLevel::info,
        fmt::format("app \"{}\": generation {} serves on all {} slot(s)", app.settings.name, g,
                    app.settings.workers));
    emit(out, "app.rolled", {{"app", app.settings.name}, {"generation", g}});
    check_all_ready(out);
    finish_reload(out);
}

void Supervisor::roll_back(Actions& out, SupervisedApp& app, const std::string& why,
                           TimePoint now) {
    SupervisedApp::Previous prev = std::move(*app.previous);
    app.previous.reset();
    std::string error = "app \"" + app.settings.name + "\": " + why +
                        "; rolled back to generation " + std::to_string(prev.generation);
    log(out, core::LogLevel::error, "reload: " + error);
    emit(out, "app.rolled_back",
         {{"app", app.settings.name}, {"generation", prev.generation}, {"reason", why}});
    if (reload_) reload_->errors.push_back(error);
    out.push_back(act::RollBack{app.id});
    app.settings = std::move(prev.settings);
    app.generation = prev.generation;
    app.start_failures = StartFailures(app.settings.restart);
    app.failed = false;
    app.rolling = true;
    advance_roll(out, app, now);
}

void Supervisor::finish_reload(Actions& out) {
    if (!reload_ || !reload_->committed) return;
    for (const auto& [id, app] : apps_)
        if (app.rolling) return;
    std::string all;
    for (const auto& e : reload_->errors) all += (all.empty() ? "" : "; ") + e;
    end_reload(out, reload_->errors.empty(), all);
}

void Supervisor::end_reload(Actions& out, bool ok, const std::string& message) {
    bool committed = reload_->committed;
    reload_.reset();
    out.push_back(act::FinishReload{ok, committed, message});
}

void Supervisor::remove_app(Actions& out, SupervisedApp& app, TimePoint now) {
    if (app.removed) return;
    app.removed = true;
    app.rolling = false;
    out.push_back(act::CloseApp{app.id});
    int draining = 0;
    for (auto& [pid, w] : workers_) {
        if (w.app != app.id || w.reaped) continue;
        ++draining;
        drain(out, w, Leave::app_removed, "app removed", now);
    }
    log(out, core::LogLevel::info,
        fmt::format("app \"{}\" removed: {} worker(s) draining", app.settings.name, draining));
    forget_app_if_empty(out, app);
}

void Supervisor::forget_app_if_empty(Actions& out, SupervisedApp& app) {
    if (!app.removed) return;
    for (const auto& [pid, w] : workers_)
        if (w.app == app.id) return;
    log(out, core::LogLevel::info, fmt::format("app \"{}\" stopped", app.settings.name));
    emit(out, "app.removed", {{"app", app.settings.name}});
    out.push_back(act::ForgetApp{app.id});
    apps_.erase(app.id);
}

Actions Supervisor::scale(AppId id, int workers, TimePoint now) {
    Actions out;
    SupervisedApp* app = find_app(id);
    if (app == nullptr || stopping_) return out;
    int old = app->settings.workers;
    if (workers == old || workers < 1) return out;
    log(out, core::LogLevel::info,
        fmt::format("app \"{}\": {} to {} worker(s)", app->settings.name, old, workers));
    emit(out, "app.scaled", {{"app", app->settings.name}, {"from", old}, {"to", workers}});
    app->settings.workers = workers;
    if (workers > old) {
        for (int slot = old; slot < workers; ++slot)
            request(out, act::spawn(id, slot, act::Spawn::Why::scale));
        return out;
    }
    for (auto& [pid, w] : workers_)
        if (w.app == id && w.slot >= workers && !w.reaped && w.state != WorkerState::draining) {
            drain(out, w, Leave::slot_removed, "slot removed", now);
            out.push_back(act::RetireSlot{pid});
        }
    return out;
}

Actions Supervisor::stop(const std::string& why, int exit_code, TimePoint now, bool close_idle) {
    Actions out;
    if (stopping_) return out;
    stopping_ = true;
    emit(out, "herd.stopping", {{"reason", why}, {"exit_code", exit_code}});
    if (reload_) end_reload(out, false, "herd is stopping (" + why + ")");
    for (auto& [pid, w] : workers_) {
        if (w.reaped) continue;
        w.leave = Leave::stopping;
        enter(w, WorkerState::draining, now);
        const SupervisedApp* app = find_app(w.app);
        auto deadline = app != nullptr ? app->settings.limits.drain : w.limits.drain;
        out.push_back(act::Drain{pid, close_idle, deadline});
    }
    return out;
}

}  // namespace herd::master
