// What the master tells: control commands, `herd status` and the metrics figures; see master.hpp.
#include "master/master.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "build_info.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "master/describe.hpp"

namespace herd::master {

void Master::on_control(const nlohmann::json& request, ControlServer::Reply reply) {
    std::string cmd = request.value("cmd", std::string());
    if (taking_over() && cmd != "status") {
        reply({{"ok", false},
               {"error", "this master (pid " + std::to_string(getpid()) +
                             ") is still taking over from pid " + std::to_string(predecessor_pid_) +
                             "; ask again once it has"}});
        return;
    }
    if (cmd == "status") {
        reply(status());
    } else if (cmd == "stop") {
        bool now = request.value("now", false);
        reply({{"ok", true}});
        // After the answer has left: stopping may end the loop.
        loop_.defer([this, now] {
            if (now)
                stop_now();
            else
                begin_stop(0, "herd stop");
        });
    } else if (cmd == "state") {
        state_request(request, std::move(reply));
    } else if (cmd == "reload") {
        reload("herd reload", std::move(reply));
    } else if (cmd == "upgrade") {
        const nlohmann::json& binary = request.contains("binary") ? request["binary"] : nullptr;
        if (!binary.is_null() && !binary.is_string())
            reply({{"ok", false}, {"error", "\"binary\" must be a path"}});
        else
            begin_upgrade("herd upgrade", binary.is_string() ? binary.get<std::string>() : "",
                          std::move(reply));
    } else if (cmd == "scale") {
        std::string name = request.value("app", std::string());
        const nlohmann::json& n = request.contains("workers") ? request["workers"] : nullptr;
        App* app = find_app(name);
        if (app == nullptr)
            reply({{"ok", false}, {"error", "no app named \"" + name + "\""}});
        else if (!n.is_number_integer() || n.get<std::int64_t>() < 1 ||
                 n.get<std::int64_t>() > balance::LoadBoard::max_slots)
            reply({{"ok", false},
                   {"error", "workers must be an integer from 1 to " +
                                 std::to_string(balance::LoadBoard::max_slots)}});
        else if (stopping())
            reply({{"ok", false}, {"error", "herd is stopping"}});
        else {
            int before = app->config.workers;
            scale(*app, n.get<int>());
            reply(
                {{"ok", true}, {"app", name}, {"from", before}, {"workers", app->config.workers}});
        }
    } else {
        reply({{"ok", false},
               {"error", "unknown command \"" + cmd +
                             "\" (known: status, reload, upgrade, scale, state, stop, events)"}});
    }
}

nlohmann::json Master::status() const {
    auto now = Clock::now();
    nlohmann::json apps = nlohmann::json::array();
    for (const auto& app : apps_) {
        const SupervisedApp* a = sup_.app(app->id);
        if (a == nullptr) continue;
        nlohmann::json workers = nlohmann::json::array();
        for (const auto& [pid, w] : workers_) {
            const SupervisedWorker* s = sup_.worker(pid);
            if (w->app != app.get() || s == nullptr) continue;
            auto restarts = a->restarts.find(w->slot);
            workers.push_back(
                {{"slot", w->slot},
                 {"pid", pid},
                 {"state", state_name(s->state)},
                 {"generation", w->generation},
                 {"uptime_s", std::chrono::duration<double>(now - s->started).count()},
                 {"restarts", restarts == a->restarts.end() ? 0 : restarts->second},
                 {"requests", w->requests},
                 {"open", w->open},
                 {"rss_kb", w->rss_kb},
                 {"cpu_percent", std::round(w->cpu.percent() * 10) / 10},
                 {"cpu_s", std::round(w->cpu.seconds() * 100) / 100},
                 {"state_version", w->state_version},
                 {"async", w->async}});
        }
        nlohmann::json slots = nlohmann::json::array();
        for (const auto& [slot, exit] : a->last_exit)
            slots.push_back(
                {{"slot", slot},
                 {"last_exit", exit.reason},
                 {"last_exit_s_ago", std::chrono::duration<double>(now - exit.at).count()}});
        apps.push_back({{"name", app->config.name},
                        {"listen", app->bound},
                        {"balance", app->config.balance},
                        {"state", sup_.app_state(app->id)},
                        {"ready", sup_.ready_count(app->id)},
                        {"workers_wanted", a->settings.workers},
                        {"generation", a->generation},
                        {"workers", workers},
                        {"slots", slots}});
    }
    nlohmann::json out = {{"ok", true},   {"pid", getpid()},         {"stopping", stopping()},
                          {"apps", apps}, {"state", state_status()}, {"reloads", reloads_done_}};
    // How far the furthest-behind worker's copy of the shared state trails the broker's (as
    // in /metrics).
    out["state"]["lag"] = metrics().state_lag;
    out["version"] = build::version();
    out["binary"] = binary_;
    out["started"] = format_utc(started_at_);
    out["uptime_s"] =
        std::chrono::duration<double>(std::chrono::system_clock::now() - started_at_).count();
    if (upgrade_)
        out["upgrade"] = {{"pid", upgrade_->pid},
                          {"binary", upgrade_->binary},
                          {"phase", upgrade_->committed ? "handed over" : "starting"},
                          {"running_s", seconds_since(upgrade_->started)}};
    if (taking_over()) out["taking_over_from"] = predecessor_pid_;
    if (handed_over_) out["handed_over_to"] = handed_to_;
    if (reload_)
        out["reload"] = {{"source", reload_->source},
                         {"phase", sup_.reload_committed() ? "rolling" : "canary"},
                         {"running_s", seconds_since(reload_->started)}};
    return out;
}

HealthVerdict Master::health() const {
    HealthInput in;
    in.stopping = stopping() || handed_over_;
    in.taking_over = taking_over();
    in.started = all_ready_;
    for (const auto& app : apps_) {
        const SupervisedApp* a = sup_.app(app->id);
        if (a == nullptr || a->removed || a->provisional) continue;
        in.apps.push_back({app->config.name, sup_.ready_count(app->id)});
    }
    if (broker_ && broker_->status.is_object()) {
        in.state_up = broker_->status.value("up", false);
        if (auto d = broker_->status.find("down_for_ms");
            d != broker_->status.end() && d->is_number())
            in.state_down_ms = d->get<std::int64_t>();
        in.state_error = broker_->status.value("last_error", std::string());
    }
    in.max_state_age_ms = config_.health_max_state_age_ms;
    return judge_health(in);
}

nlohmann::json Master::status_document() const {
    nlohmann::json doc = status();
    doc["history"] = history_.to_json();
    nlohmann::json events = nlohmann::json::array();
    for (const auto& e : recent_events_) events.push_back(e);
    doc["events"] = std::move(events);
    doc["now"] = format_utc(std::chrono::system_clock::now());
    return doc;
}

void Master::sample_history() {
    std::map<std::string, History::Totals> totals;
    for (const AppMetrics& a : metrics().apps) {
        History::Totals& t = totals[a.name];
        t.requests = a.requests;
        for (const auto& [reason, n] : a.restarts) t.restarts += n;
    }
    history_.sample(Clock::now(),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count(),
                    totals);
    history_timer_ = loop_.add_timer(std::chrono::seconds(1), [this] {
        history_timer_ = 0;
        sample_history();
    });
}

MasterMetrics Master::metrics() const {
    MasterMetrics m;
    m.reloads = reloads_done_;
    m.reload_failures = reloads_failed_;
    m.broker_restarts = sup_.broker_restarts();
    if (broker_ && broker_->status.is_object()) {
        m.state_known = true;
        m.state_version = broker_->status.value("version", std::uint64_t{0});
        m.state_up = broker_->status.value("up", false);
        if (auto p = broker_->status.find("primary"); p != broker_->status.end() && p->is_object())
            m.state_primary = MasterMetrics::Primary{p->value("address", std::string()),
                                                     p->value("role", std::string()),
                                                     p->value("failovers", std::uint64_t{0})};
        if (auto d = broker_->status.find("details");
            d != broker_->status.end() && d->is_object() && d->contains("unconfirmed_writes"))
            m.state_unconfirmed_writes = d->value("unconfirmed_writes", std::uint64_t{0});
        for (const auto& [pid, w] : workers_)
            if (sup_.takes_connections(pid) && w->state_version < m.state_version)
                m.state_lag = std::max(m.state_lag, m.state_version - w->state_version);
    }
    for (const auto& app : apps_) {
        const SupervisedApp* s = sup_.app(app->id);
        if (s == nullptr || s->provisional) continue;
        AppMetrics a;
        a.name = app->config.name;
        a.generation = s->generation;
        a.requests = app->retired_stats;
        a.clients = app->retired_clients;
        a.restarts = s->restarts_by_reason;
        for (const auto& [pid, w] : workers_) {
            if (w->app != app.get()) continue;
            a.requests += w->stats;
            a.clients += w->clients;
            a.open_connections += w->open;
            if (const SupervisedWorker* sw = sup_.worker(pid)) ++a.workers[state_name(sw->state)];
            a.worker_rss.push_back(
                {w->slot, pid, w->rss_kb * 1024, w->cpu.seconds(), w->cpu.percent()});
        }
        m.apps.push_back(std::move(a));
    }
    return m;
}

}  // namespace herd::master
