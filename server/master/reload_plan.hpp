// What a reload changes: the running apps against the config read again. Pure (the plugin
// files' identities are passed in), so every case is unit-tested without processes.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace herd::master {

// A running app as the reload sees it.
struct RunningApp {
    core::AppConfig config;    // as last read from the file (not changed by scaling)
    std::string plugin_stamp;  // identities of its plugin files when its generation started
    bool failed = false;       // gave up after start failures: a reload tries again
};

struct AppChange {
    enum class Kind { unchanged, changed, added, removed };
    std::string name;
    Kind kind = Kind::unchanged;
    bool new_listen = false;  // changed listen address: a new socket is bound first
    std::string why;          // "workers, plugins changed", "plugin file changed on disk", ...
};

struct ReloadPlan {
    std::vector<AppChange> apps;      // the new config's apps in order, then the removed ones
    std::vector<std::string> errors;  // what cannot change without a restart
    std::vector<std::string> notes;   // what changes only later (logged as warnings)

    bool any_change() const;
};

// `stamp` gives the identity of an app's plugin files as they are on disk now.
template <class Stamp>
ReloadPlan plan_reload(std::span<const RunningApp> running, const core::Config& next,
                       Stamp&& stamp);

// The plugin files of `app` as they are on disk: path, device, inode, size and modification
// time of each, or that it is missing. Renaming a new build over the old path changes it.
std::string plugin_stamp(const core::AppConfig& app);

// The settings of `b` that differ from `a`, by config key ("workers, plugins").
std::string changed_keys(const core::AppConfig& a, const core::AppConfig& b);

template <class Stamp>
ReloadPlan plan_reload(std::span<const RunningApp> running, const core::Config& next,
                       Stamp&& stamp) {
    ReloadPlan plan;
    for (const core::AppConfig& app : next.apps) {
        AppChange change;
        change.name = app.name;
        const RunningApp* current = nullptr;
        for (const RunningApp& r : running)
            if (r.config.name == app.name) current = &r;
        if (current == nullptr) {
            change.kind = AppChange::Kind::added;
            change.new_listen = true;
            change.why = "new app";
            plan.apps.push_back(std::move(change));
            continue;
        }
        change.new_listen = !(current->config.listen == app.listen);
        if (!change.new_listen && current->config.balance != app.balance)
            plan.errors.push_back("app \"" + app.name + "\": balance cannot change from \"" +
                                  current->config.balance + "\" to \"" + app.balance +
                                  "\" on the same listen address " + app.listen.text +
                                  "; give it a new address, or restart herd");
        if (!change.new_listen && current->config.backlog != app.backlog)
            plan.notes.push_back("app \"" + app.name +
                                 "\": the new backlog applies once the listen address changes or "
                                 "herd restarts (the socket stays open through a reload)");
        if (!(current->config == app)) {
            change.kind = AppChange::Kind::changed;
            change.why = changed_keys(current->config, app) + " changed";
        } else if (stamp(app) != current->plugin_stamp) {
            change.kind = AppChange::Kind::changed;
            change.why = "plugin file changed on disk";
        } else if (current->failed) {
            change.kind = AppChange::Kind::changed;
            change.why = "app had failed: trying again";
        }
        plan.apps.push_back(std::move(change));
    }
    for (const RunningApp& r : running) {
        bool kept = false;
        for (const core::AppConfig& app : next.apps) kept = kept || app.name == r.config.name;
        if (!kept)
            plan.apps.push_back(
                {r.config.name, AppChange::Kind::removed, false, "no longer in the config"});
    }
    return plan;
}

}  // namespace herd::master
