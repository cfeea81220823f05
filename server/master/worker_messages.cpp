// What the master does with each message a worker sends (ARCHITECTURE.md has the table); see
// master.hpp.
#include "master/master.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "core/log.hpp"
#include "master/describe.hpp"

namespace herd::master {

void Master::on_worker_message(WorkerProc& w, core::Message& m) {
    dispatch_.dispatch(m, w.name, w);
}

void Master::register_handlers() {
    dispatch_.on("ready", [this](core::Message& m, WorkerProc& w) { on_ready(w, m); });
    dispatch_.on("conn.refused",
                 [this](core::Message& m, WorkerProc& w) { on_conn_refused(w, m); });
    dispatch_.on("heartbeat", [this](core::Message& m, WorkerProc& w) { on_heartbeat(w, m); });
    dispatch_.on("retire", [this](core::Message& m, WorkerProc& w) { on_retire(w, m); });
    dispatch_.on("user", [this](core::Message& m, WorkerProc& w) { on_user(w, m); });
    dispatch_.on("ws.publish", [this](core::Message& m, WorkerProc& w) { on_ws_publish(w, m); });
    dispatch_.on("load", [this](core::Message& m, WorkerProc& w) { on_load(w, m); });
    dispatch_.on("fatal", [this](core::Message& m, WorkerProc& w) { on_fatal(w, m); });
    dispatch_.on("draining", [this](core::Message& m, WorkerProc& w) { on_draining(w, m); });
}

void Master::on_ready(WorkerProc& w, core::Message& m) {
    w.capacity = m.body.value("capacity", w.capacity);
    apply(sup_.ready(w.pid, Clock::now()));
}

void Master::on_conn_refused(WorkerProc& w, core::Message& m) {
    // The worker is draining and sent the connection back: someone else takes it.
    apply(sup_.refused(w.pid, Clock::now()));
    if (w.closed < w.passed) ++w.closed;
    for (auto& fd : m.fds) place_connection(*w.app, std::move(fd), &w);
}

void Master::on_heartbeat(WorkerProc& w, core::Message& m) {
    w.requests = m.body.value("requests", std::uint64_t{0});
    w.open = m.body.value("open", std::uint64_t{0});
    w.rss_kb = m.body.value("rss_kb", std::uint64_t{0});
    w.state_version = m.body.value("state_version", std::uint64_t{0});
    if (auto ticks = read_cpu_ticks(w.pid))
        w.cpu.sample(*ticks, Clock::now(), clock_ticks_per_second());
    // Requests in the plugins' hands and what they registered: shown as sent (a few numbers).
    if (m.body.contains("async") && m.body["async"].is_object() && m.body["async"].size() <= 16)
        w.async = m.body["async"];
    if (m.body.contains("stats") && !core::RequestStats::from_json(m.body["stats"], w.stats))
        core::log_warn("{} sent request figures of the wrong shape; ignoring them", w.name);
    if (m.body.contains("clients") && !core::from_json(m.body["clients"], w.clients))
        core::log_warn("{} sent client figures of the wrong shape; ignoring them", w.name);
    apply(sup_.heartbeat(w.pid, w.rss_kb, Clock::now()));
}

void Master::on_retire(WorkerProc& w, core::Message& m) {
    std::string reason = m.body.value("reason", std::string("(no reason given)"));
    apply(sup_.retire(w.pid, reason, Clock::now()));
}

void Master::on_user(WorkerProc& w, core::Message& m) {
    // A plugin's message: "app" goes to the same plugin in every worker of the app, the
    // sender included; "master" is logged (no plugin code runs in the master).
    std::string to = m.body.value("to", std::string());
    std::string mount = m.body.value("mount", std::string());
    if (to == "app") {
        nlohmann::json out = {{"type", "user"}, {"mount", mount}, {"from", w.slot}};
        out["data"] = m.body.contains("data") ? m.body["data"] : nlohmann::json();
        for (auto& [pid, other] : workers_)
            if (other->app == w.app) other->channel->send(out);
    } else if (to == "master") {
        core::log_info("message from {} plugin \"{}\": {}", w.name, mount,
                       m.body.contains("data") ? m.body["data"].dump().substr(0, 1000) : "null");
    } else {
        core::log_warn("ignoring plugin message with \"to\": \"{}\" from {}", to, w.name);
    }
}

void Master::on_ws_publish(WorkerProc& w, core::Message& m) {
    // A plugin's Context::publish: its worker wrote to its own subscribers; the app's other
    // workers (of every generation: a draining one still has sockets) get the message. The
    // workers check what they are given.
    for (auto& [pid, other] : workers_)
        if (other->app == w.app && other.get() != &w) other->channel->send(m.body);
}

void Master::on_load(WorkerProc& w, core::Message& m) {
    auto closed = m.body.value("closed", std::uint64_t{0});
    if (closed > w.passed)
        core::log_error("{} reported {} connections closed but was passed {}; ignoring", w.name,
                        closed, w.passed);
    else
        w.closed = std::max(w.closed, closed);
    if (!w.app->pending.empty()) flush_pending(*w.app);

    core::log_debug("{} has {} connection(s) open ({} passed, {} closed)", w.name,
                    w.passed - w.closed, w.passed, w.closed);
}

void Master::on_draining(WorkerProc& w, core::Message&) {
    apply(sup_.stopped_accepting(w.pid, Clock::now()));
}

void Master::on_fatal(WorkerProc& w, core::Message& m) {
    std::string reason = m.body.value("reason", std::string("(no reason given)"));
    std::string phase = m.body.value("phase", std::string());
    if (phase == "start" && taking_over() && start_failure_.empty())
        start_failure_ = w.name + " cannot start: " + reason;
    apply(sup_.fatal(w.pid, phase, reason, Clock::now()));
}

}  // namespace herd::master
