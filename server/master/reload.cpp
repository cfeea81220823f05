// Reload: the config read again, a canary per changed app, then a rolling replacement slot by
// slot. Master member functions; see master.hpp and ARCHITECTURE.md ("Reload").
#include <algorithm>

#include "core/error.hpp"
#include "core/log.hpp"
#include "master/master.hpp"
#include "master/reload_plan.hpp"

namespace herd::master {
void Master::reload(const std::string& source, ControlServer::Reply reply) {
    auto refuse = [&](const std::string& why) {
        core::log_error("reload ({}) refused: {}", source, why);
        emit("reload.refused", {{"source", source}, {"error", why}});
        if (reply) reply({{"ok", false}, {"error", why}});
    };
    if (stopping_) return refuse("herd is stopping");
    if (reload_) {
        if (!reply) {
            // A signal cannot wait for an answer: run once more when this one ends, so that
            // the newest file is what runs.
            reload_again_ = true;
            core::log_warn("reload ({}) requested during a reload; it runs when this one ends",
                           source);
            return;
        }
        return refuse(
            "a reload is already in progress (" + reload_->source + ", " +
            fmt::format("{:.1f}",
                        std::chrono::duration<double>(Clock::now() - reload_->started).count()) +
            " s)");
    }
    notify_.reloading("reloading (" + source + ")");
    auto refuse_after = [&](const std::string& why) {
        ++reloads_failed_;
        refuse(why);
        notify_.ready("reload refused: " + why);
    };
    core::log_info("reload ({}): reading {}", source, config_.file);
    core::Config next;
    try {
        next = core::load_config(config_.file);
    } catch (const core::Error& e) {
        return refuse_after(std::string("the config is invalid, nothing changed: ") + e.what());
    }

    std::vector<RunningApp> running;
    for (const auto& app : apps_)
        if (!app->removed) running.push_back({app->file_config, app->plugin_stamp, app->failed});
    ReloadPlan plan = plan_reload(std::span<const RunningApp>(running), next,
                                  [](const core::AppConfig& a) { return plugin_stamp(a); });
    if (!plan.errors.empty()) {
        std::string all;
        for (const auto& e : plan.errors) all += (all.empty() ? "" : "; ") + e;
        return refuse_after("nothing changed: " + all);
    }
    for (const auto& note : plan.notes) core::log_warn("reload: {}", note);
    if (next.control_path != config_.control_path)
        core::log_warn(
            "reload: the control socket stays {} until herd restarts (the config now "
            "says {})",
            config_.control_path, next.control_path);
    if (next.log_file != config_.log_file || !(next.metrics == config_.metrics) ||
        next.state != config_.state)
        core::log_warn("reload: log_file, metrics and state stay as they are until herd restarts");
    core::set_log_level(core::parse_log_level(next.log_level));
    config_.log_level = next.log_level;

    if (!plan.any_change()) {
        core::log_info("reload ({}): no app changed", source);
        notify_.ready("reloaded: no app changed");
        ++reloads_done_;
        if (reply) reply({{"ok", true}, {"changed", nlohmann::json::array()}});
        return;
    }

    reload_ = Reload{};  // not emplace(): clang 14 finds Reload not default-constructible there
    reload_->source = source;
    reload_->started = Clock::now();
    reload_->id = ++reload_ids_;
    emit("reload.started", {{"source", source}, {"id", reload_->id}});
    if (reply) reload_->replies.push_back(std::move(reply));

    // Bind every new address first: a busy port fails the reload before any worker starts.
    std::vector<App*> canaries;
    try {
        for (const AppChange& change : plan.apps) {
            const core::AppConfig* cfg = nullptr;
            for (const auto& a : next.apps)
                if (a.name == change.name) cfg = &a;
            switch (change.kind) {
                case AppChange::Kind::unchanged:
                case AppChange::Kind::removed:
                    break;
                case AppChange::Kind::added: {
                    std::unique_ptr<App> app = make_app(*cfg);
                    app->provisional = true;
                    core::log_info("reload: app \"{}\" added, listening on {}", cfg->name,
                                   app->bound);
                    canaries.push_back(app.get());
                    apps_.push_back(std::move(app));
                    break;
                }
                case AppChange::Kind::changed: {
                    App& app = *find_app(change.name);
                    App::Next n;
                    n.config = *cfg;
                    n.plugin_stamp = plugin_stamp(*cfg);
                    n.plugin_files = PluginFiles::open(*cfg);
                    n.generation = app.generation + 1;
                    if (change.new_listen) {
                        n.strategy = balance::make_strategy(*balance::parse_mode(cfg->balance));
                        try {
                            n.strategy->bind(cfg->listen, cfg->backlog, cfg->workers);
                        } catch (const core::Error& e) {
                            throw core::Error("app \"" + cfg->name + "\": " + e.what());
                        }
                    } else if (cfg->workers > app.config.workers) {
                        app.strategy->bind(cfg->listen, cfg->backlog, cfg->workers);
                    }
                    core::log_info("reload: app \"{}\": {}; generation {}{}", cfg->name, change.why,
                                   n.generation,
                                   n.strategy ? " on " + n.strategy->bound_address() : "");
                    app.next = std::move(n);
                    canaries.push_back(&app);
                    break;
                }
            }
        }
        reload_->config = std::move(next);
        for (App* app : canaries) {
            WorkerProc* w = spawn_worker(*app, 0, /*next=*/!app->provisional);
            w->canary = true;
        }
    } catch (const core::Error& e) {
        abort_reload(e.what());
        return;
    }
    for (const AppChange& change : plan.apps)
        if (change.kind == AppChange::Kind::removed)
            core::log_info(
                "reload: app \"{}\" is no longer in the config; it stops once the "
                "canaries are ready",
                change.name);

    // A canary that hangs in its start-up does not hold the reload: its start_timeout_ms
    // kills it (watchdog()), and its exit fails the reload.
    check_canaries();
}

void Master::check_canaries() {
    if (!reload_ || reload_->committed) return;
    for (auto& [pid, w] : workers_)
        if (w->canary && w->state != WorkerState::ready) return;
    bool any = std::any_of(workers_.begin(), workers_.end(),
                           [](const auto& entry) { return entry.second->canary; });
    if (any) commit_reload();
}

void Master::abort_reload(const std::string& why) {
    if (!reload_ || reload_->committed) return;
    core::log_error("reload ({}) failed: {}; the running generation keeps serving", reload_->source,
                    why);
    for (auto& [pid, w] : workers_) {
        if (!w->canary || w->exited) continue;
        w->canary = false;
        w->leaving = true;
        if (w->state != WorkerState::draining) drain_worker(*w, false);
    }
    for (auto& app : apps_) {
        if (app->next) {
            if (app->next->strategy) close_strategy(*app, *app->next->strategy);
            app->next.reset();
        }
        if (app->provisional) {
            app->provisional = false;
            remove_app(*app);
        }
    }
    end_reload(false, "reload failed, nothing changed: " + why);
}

void Master::commit_reload() {
    Reload& r = *reload_;
    r.committed = true;
    core::log_info("reload ({}): every canary is ready after {:.1f} ms; rolling out", r.source,
                   std::chrono::duration<double, std::milli>(Clock::now() - r.started).count());
    emit("reload.rolling", {{"source", r.source}, {"id", r.id}});
    for (auto& [pid, w] : workers_) w->canary = false;
    std::vector<App*> gone;
    for (auto& app : apps_) {
        if (app->removed) continue;
        bool kept =
            std::any_of(r.config.apps.begin(), r.config.apps.end(),
                        [&](const core::AppConfig& a) { return a.name == app->config.name; });
        if (!kept) {
            gone.push_back(app.get());
            continue;
        }
        if (app->provisional) {
            app->provisional = false;
            app->rolling = true;
            watch_master_socket(*app, *app->strategy);
            continue;
        }
        if (!app->next) continue;
        App::Next n = std::move(*app->next);
        app->next.reset();
        if (n.strategy) {
            app->old_strategy = std::move(app->strategy);
            app->strategy = std::move(n.strategy);
            app->bound = app->strategy->bound_address();
            watch_master_socket(*app, *app->strategy);
        }
        int before = app->config.workers;
        app->previous = App::Previous{app->config, app->file_config, app->plugin_stamp,
                                      app->plugin_files, app->generation};
        app->config = n.config;
        app->file_config = n.config;
        app->plugin_stamp = n.plugin_stamp;
        app->plugin_files = std::move(n.plugin_files);
        app->generation = n.generation;
        app->failed = false;
        app->start_failures = StartFailures();
        app->announced_ready = false;
        app->rolling = true;
        if (app->config.workers < before)
            core::log_info("app \"{}\": {} to {} worker(s)", app->config.name, before,
                           app->config.workers);
    }
    for (App* app : gone) remove_app(*app);
    for (auto& app : apps_)
        if (app->rolling) advance_roll(*app);
    finish_reload();
}

void Master::advance_roll(App& app) {
    if (!app.rolling || stopping_ || app.removed) return;
    int g = app.generation;
    for (int slot = 0; slot < app.config.workers; ++slot) {
        WorkerProc* fresh = nullptr;
        for (auto& [pid, w] : workers_)
            if (w->app == &app && w->slot == slot && w->generation == g && !w->exited &&
                !w->leaving &&
                (w->state == WorkerState::starting || w->state == WorkerState::ready))
                fresh = w.get();
        if (fresh == nullptr) {
            if (app.failed) return;
            try {
                spawn_worker(app, slot);
            } catch (const core::Error& e) {
                core::log_error("reload: app \"{}\" slot {}: {}; trying again in 1 s",
                                app.config.name, slot, e.what());
                loop_.add_timer(std::chrono::seconds(1), [this, id = app.id] {
                    if (App* again = find_app(id)) advance_roll(*again);
                });
            }
            return;  // one slot at a time
        }
        if (fresh->state != WorkerState::ready) return;
        // The new generation serves this slot: the other workers of the slot leave (older
        // ones, or newer ones when rolling back).
        for (auto& [pid, w] : workers_)
            if (w->app == &app && w->slot == slot && w->generation != g && !w->exited &&
                !w->leaving && w->state != WorkerState::draining) {
                w->leaving = true;
                drain_worker(*w, false);
            }
    }
    for (auto& [pid, w] : workers_)
        if (w->app == &app && w->slot >= app.config.workers && !w->exited && !w->leaving &&
            w->state != WorkerState::draining) {
            w->leaving = true;
            retire_slot_worker(app, *w);
        }
    // Done once no older worker accepts any more: from then on every new connection meets
    // the new generation (what `herd reload` promises when it returns).
    for (auto& [pid, w] : workers_)
        if (w->app == &app && w->generation != g && !w->exited && !w->stopped_accepting) return;
    app.rolling = false;
    app.previous.reset();
    if (app.old_strategy) {
        // The old address closes only now that the new one is served on every slot.
        core::log_info("app \"{}\": closing its previous listen address", app.config.name);
        close_strategy(app, *app.old_strategy);
        app.old_strategy.reset();
    }
    core::log_info("app \"{}\": generation {} serves on all {} slot(s)", app.config.name, g,
                   app.config.workers);
    emit("app.rolled", {{"app", app.config.name}, {"generation", g}});
    check_all_ready();
    finish_reload();
}

void Master::roll_back(App& app, const std::string& why) {
    App::Previous prev = std::move(*app.previous);
    app.previous.reset();
    std::string error = "app \"" + app.config.name + "\": " + why + "; rolled back to generation " +
                        std::to_string(prev.generation);
    core::log_error("reload: {}", error);
    emit("app.rolled_back",
         {{"app", app.config.name}, {"generation", prev.generation}, {"reason", why}});
    if (reload_) reload_->errors.push_back(error);
    if (plugin_stamp(prev.config) != prev.plugin_stamp)
        core::log_info(
            "app \"{}\": the plugin files of generation {} were replaced on disk since; its "
            "workers load the files it began with (kept open)",
            app.config.name, prev.generation);
    if (app.old_strategy) {
        // It had moved to a new address: back to the old one, which closes the new one once
        // the roll back is done.
        std::swap(app.strategy, app.old_strategy);
        app.bound = app.strategy->bound_address();
        watch_master_socket(app, *app.strategy);
    }
    int workers = app.config.workers;
    app.config = std::move(prev.config);
    app.file_config = std::move(prev.file_config);
    app.plugin_stamp = std::move(prev.plugin_stamp);
    app.plugin_files = std::move(prev.plugin_files);
    app.generation = prev.generation;
    app.start_failures = StartFailures();
    app.failed = false;
    if (app.config.workers > workers) {
        try {
            app.strategy->bind(app.config.listen, app.config.backlog, app.config.workers);
        } catch (const core::Error& e) {
            core::log_error("app \"{}\": rolling back: {}", app.config.name, e.what());
        }
    }
    app.rolling = true;
    advance_roll(app);
}

void Master::finish_reload() {
    if (!reload_ || !reload_->committed) return;
    for (auto& app : apps_)
        if (app->rolling) return;
    if (reload_->errors.empty()) {
        end_reload(true, "");
        return;
    }
    std::string all;
    for (const auto& e : reload_->errors) all += (all.empty() ? "" : "; ") + e;
    end_reload(false, all);
}

void Master::end_reload(bool ok, const std::string& message) {
    Reload r = std::move(*reload_);
    reload_.reset();
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - r.started).count();
    nlohmann::json answer;
    if (ok) {
        ++reloads_done_;
        core::log_info("reload ({}) complete in {:.1f} ms", r.source, ms);
        nlohmann::json apps = nlohmann::json::array();
        for (const auto& app : apps_)
            if (!app->removed)
                apps.push_back({{"name", app->config.name},
                                {"generation", app->generation},
                                {"listen", app->bound}});
        answer = {{"ok", true}, {"ms", ms}, {"apps", apps}};
    } else {
        ++reloads_failed_;
        if (r.committed) core::log_error("reload ({}) ended with errors: {}", r.source, message);
        answer = {{"ok", false}, {"error", message}};
    }
    emit(
        "reload.finished",
        {{"source", r.source}, {"id", r.id}, {"ok", ok}, {"ms", ms}, {"error", ok ? "" : message}});
    for (auto& reply : r.replies) reply(answer);
    if (!stopping_) notify_.ready(ok ? "reloaded" : "reload failed: " + message);
    if (reload_again_ && !stopping_) {
        reload_again_ = false;
        loop_.defer([this] { reload("SIGHUP (queued)", {}); });
    }
}

void Master::remove_app(App& app) {
    if (app.removed) return;
    app.removed = true;
    app.rolling = false;
    close_strategy(app, *app.strategy);
    if (app.old_strategy) close_strategy(app, *app.old_strategy);
    for (auto& [slot, socket] : app.retiring) app.acceptors.erase(socket.get());
    app.retiring.clear();
    app.pending.clear();
    int draining = 0;
    for (auto& [pid, w] : workers_) {
        if (w->app != &app || w->exited) continue;
        w->leaving = true;
        ++draining;
        if (w->state != WorkerState::draining) drain_worker(*w, false);
    }
    core::log_info("app \"{}\" removed: {} worker(s) draining", app.config.name, draining);
    forget_app_if_empty(app);
}

void Master::forget_app_if_empty(App& app) {
    if (!app.removed) return;
    for (auto& [pid, w] : workers_)
        if (w->app == &app) return;
    auto it =
        std::find_if(apps_.begin(), apps_.end(), [&](const auto& a) { return a.get() == &app; });
    if (it == apps_.end()) return;
    core::log_info("app \"{}\" stopped", app.config.name);
    // After this iteration: the caller may still hold the reference.
    std::shared_ptr<App> keep(std::move(*it));
    apps_.erase(it);
    loop_.defer([keep] {});
}

}  // namespace herd::master
