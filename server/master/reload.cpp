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
    if (stopping()) return refuse("herd is stopping");
    if (taking_over())
        return refuse("this master is still taking over from pid " +
                      std::to_string(predecessor_pid_));
    if (upgrade_)
        return refuse("an upgrade is in progress (new master pid " + std::to_string(upgrade_->pid) +
                      "); reload once it has ended");
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
        if (const SupervisedApp* a = sup_.app(app->id); a != nullptr && !a->removed)
            running.push_back({app->file_config, app->plugin_stamp, a->failed});
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
        !(next.health == config_.health) || next.state != config_.state)
        core::log_warn(
            "reload: log_file, metrics, health and state stay as they are until herd restarts "
            "(or upgrades)");
    config_.health_max_state_age_ms = next.health_max_state_age_ms;
    config_.metrics_auth = next.metrics_auth;  // credentials rotate on reload
    if (metrics_) metrics_->set_auth(config_.metrics_auth);
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

    // Bind every new address first: a busy port fails the reload before any worker starts,
    // and before the supervisor hears of it.
    ReloadStart start;
    std::vector<std::unique_ptr<App>> added;
    std::vector<std::pair<App*, App::Next>> changed;
    try {
        for (const AppChange& change : plan.apps) {
            const core::AppConfig* cfg = nullptr;
            for (const auto& a : next.apps)
                if (a.name == change.name) cfg = &a;
            switch (change.kind) {
                case AppChange::Kind::unchanged:
                    break;
                case AppChange::Kind::removed:
                    start.removed.push_back(find_app(change.name)->id);
                    core::log_info(
                        "reload: app \"{}\" is no longer in the config; it stops once the "
                        "canaries are ready",
                        change.name);
                    break;
                case AppChange::Kind::added: {
                    std::unique_ptr<App> app = make_app(*cfg);
                    core::log_info("reload: app \"{}\" added, listening on {}", cfg->name,
                                   app->bound);
                    start.canaries.push_back({app->id, AppSettings::of(*cfg), true});
                    added.push_back(std::move(app));
                    break;
                }
                case AppChange::Kind::changed: {
                    App& app = *find_app(change.name);
                    App::Next n;
                    n.config = *cfg;
                    n.plugin_stamp = plugin_stamp(*cfg);
                    n.plugin_files = PluginFiles::open(*cfg);
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
                                   sup_.app(app.id)->generation + 1,
                                   n.strategy ? " on " + n.strategy->bound_address() : "");
                    start.canaries.push_back({app.id, AppSettings::of(*cfg), false});
                    changed.emplace_back(&app, std::move(n));
                    break;
                }
            }
        }
    } catch (const core::Error& e) {
        // Nothing started: what was bound for the reload closes with `added` and `changed`.
        end_reload(false, false, std::string("reload failed, nothing changed: ") + e.what());
        return;
    }
    for (auto& app : added) {
        sup_.add_app(app->id, AppSettings::of(app->config), /*provisional=*/true);
        apps_.push_back(std::move(app));
    }
    for (auto& [app, n] : changed) app->next = std::move(n);
    apply(sup_.begin_reload(start, Clock::now()));
}

void Master::adopt_next(App& app) {
    App::Next n = std::move(*app.next);
    app.next.reset();
    if (n.strategy) {
        app.old_strategy = std::move(app.strategy);
        app.strategy = std::move(n.strategy);
        app.bound = app.strategy->bound_address();
        watch_master_socket(app, *app.strategy);
    }
    app.previous = App::Previous{app.config, app.file_config, app.plugin_stamp, app.plugin_files};
    app.config = n.config;
    app.file_config = n.config;
    app.plugin_stamp = n.plugin_stamp;
    app.plugin_files = std::move(n.plugin_files);
}

void Master::restore_previous(App& app) {
    if (!app.previous) return;
    App::Previous prev = std::move(*app.previous);
    app.previous.reset();
    if (plugin_stamp(prev.config) != prev.plugin_stamp)
        core::log_info(
            "app \"{}\": the plugin files of generation {} were replaced on disk since; its "
            "workers load the files it began with (kept open)",
            app.config.name, sup_.app(app.id)->generation);
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
    if (app.config.workers > workers) {
        try {
            app.strategy->bind(app.config.listen, app.config.backlog, app.config.workers);
        } catch (const core::Error& e) {
            core::log_error("app \"{}\": rolling back: {}", app.config.name, e.what());
        }
    }
}

void Master::rolled(App& app) {
    app.previous.reset();
    if (app.old_strategy) {
        // The old address closes only now that the new one is served on every slot.
        core::log_info("app \"{}\": closing its previous listen address", app.config.name);
        close_strategy(app, *app.old_strategy);
        app.old_strategy.reset();
    }
}

void Master::end_reload(bool ok, bool committed, const std::string& message) {
    if (!reload_) return;
    Reload r = std::move(*reload_);
    reload_.reset();
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - r.started).count();
    nlohmann::json answer;
    if (ok) {
        ++reloads_done_;
        core::log_info("reload ({}) complete in {:.1f} ms", r.source, ms);
        nlohmann::json apps = nlohmann::json::array();
        for (const auto& app : apps_)
            if (const SupervisedApp* a = sup_.app(app->id); a != nullptr && !a->removed)
                apps.push_back({{"name", app->config.name},
                                {"generation", a->generation},
                                {"listen", app->bound}});
        answer = {{"ok", true}, {"ms", ms}, {"apps", apps}};
    } else {
        ++reloads_failed_;
        if (committed)
            core::log_error("reload ({}) ended with errors: {}", r.source, message);
        else
            core::log_error("reload ({}): {}; the running generation keeps serving", r.source,
                            message);
        answer = {{"ok", false}, {"error", message}};
    }
    emit(
        "reload.finished",
        {{"source", r.source}, {"id", r.id}, {"ok", ok}, {"ms", ms}, {"error", ok ? "" : message}});
    for (auto& reply : r.replies) reply(answer);
    if (!stopping()) notify_.ready(ok ? "reloaded" : "reload failed: " + message);
    if (reload_again_ && !stopping()) {
        reload_again_ = false;
        loop_.defer([this] { reload("SIGHUP (queued)", {}); });
    }
}

void Master::close_app(App& app) {
    close_strategy(app, *app.strategy);
    if (app.old_strategy) close_strategy(app, *app.old_strategy);
    for (auto& [slot, socket] : app.retiring) app.acceptors.erase(socket.get());
    app.retiring.clear();
    app.pending.clear();
}

void Master::forget_app(App& app) {
    auto it =
        std::find_if(apps_.begin(), apps_.end(), [&](const auto& a) { return a.get() == &app; });
    if (it == apps_.end()) return;
    // After this iteration: the caller may still hold the reference.
    std::shared_ptr<App> keep(std::move(*it));
    apps_.erase(it);
    loop_.defer([keep] {});
}

}  // namespace herd::master
