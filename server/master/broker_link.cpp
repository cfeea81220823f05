// The master's side of the state broker: spawning and supervising it, giving it one channel
// per worker, and relaying the CLI's `herd state` requests. Master member functions; see
// master.hpp and broker/broker.hpp (the protocol).
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "broker/broker.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "master/master.hpp"
#include "master/spawn.hpp"

namespace herd::master {
namespace {
// A CLI request the broker does not answer in this time gets an error.
constexpr auto state_request_timeout = std::chrono::seconds(10);
}  // namespace

void Master::spawn_broker() {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0)
        core::throw_errno("socketpair() for the broker's channel");
    core::UniqueFd ours(pair[0]), theirs(pair[1]);
    ChildPipes pipes = make_child_pipes();
    std::vector<int> keep{theirs.get()};
    for (auto& fd : pipes.write_ends) keep.push_back(fd.get());
    int child_end = theirs.get();
    pid_t pid = spawn_process(keep, [&] {
        // Tells it from the workers in ps/top (comm) and in the tests' process lists.
        (void)prctl(PR_SET_NAME, "herd-broker");
        pipes.in_child();
        become(credentials_);
        broker::BrokerSpec spec;
        spec.config = state_config_;
        spec.channel = core::UniqueFd(child_end);
        broker::broker_main(std::move(spec));
    });
    theirs.reset();
    watch_child_output(pipes, "broker", pid);
    broker_ = std::make_unique<BrokerProc>();
    broker_->pid = pid;
    broker_->started = Clock::now();
    sup_.broker_spawned(pid, broker_->started);
    std::string name = "broker (pid " + std::to_string(pid) + ")";
    broker_->channel = std::make_unique<core::Channel>(loop_, std::move(ours), name);
    broker_->channel->start([this](core::Message&& m) { on_broker_message(m); },
                            [name](const std::string& reason) {
                                if (reason == "peer closed the channel")
                                    core::log_info("{} disconnected", name);
                                else
                                    core::log_error("{} disconnected: {}", name, reason);
                            });
    core::log_info("spawned broker (pid {}), state backend {}", pid, state_config_.backend_name());
    emit("broker.spawned", {{"pid", pid}, {"backend", state_config_.backend_name()}});
    attach_all_to_broker();
}

void Master::send_broker_end(WorkerProc& w, core::UniqueFd broker_end) {
    std::vector<core::UniqueFd> fds;
    fds.push_back(std::move(broker_end));
    std::string id =
        w.app->config.name + "/" + std::to_string(w.slot) + "/" + std::to_string(w.pid);
    if (!broker_ || !broker_->channel->send({{"type", "attach"}, {"worker", id}}, std::move(fds)))
        core::log_warn("{}: the broker is gone; it gets a channel when the next one starts",
                       w.name);
}

void Master::attach_all_to_broker() {
    for (auto& [pid, w] : workers_) {
        if (w->channel->closed()) continue;
        int bp[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, bp) < 0) {
            core::log_error("{}", core::errno_text("socketpair() to the broker for " + w->name));
            continue;
        }
        core::UniqueFd broker_end(bp[0]);
        std::vector<core::UniqueFd> fds;
        fds.emplace_back(bp[1]);
        if (w->channel->send({{"type", "state.attach"}}, std::move(fds)))
            send_broker_end(*w, std::move(broker_end));
    }
}

void Master::on_broker_message(core::Message& m) {
    broker_dispatch_.dispatch(m, "broker");
}

void Master::register_broker_handlers() {
    broker_dispatch_.on("ready", [this](core::Message& m) {
        if (!broker_) return;
        sup_.broker_ready(Clock::now());
        core::log_info(
            "broker (pid {}) ready in {:.1f} ms, backend {}", broker_->pid,
            std::chrono::duration<double, std::milli>(Clock::now() - broker_->started).count(),
            m.body.value("backend", std::string("?")));
        emit("broker.ready", {{"pid", broker_->pid}});
    });
    broker_dispatch_.on("heartbeat", [this](core::Message& m) {
        if (!broker_) return;
        bool was_up = !broker_->status.is_object() || broker_->status.value("up", true);
        sup_.broker_heartbeat(Clock::now());
        broker_->status = m.body;
        broker_->status.erase("type");
        bool up = m.body.value("up", false);
        if (was_up != up) {
            core::log_line(up ? core::LogLevel::info : core::LogLevel::warn,
                           fmt::format("state backend {}", up ? "is up" : "is down"));
            emit(up ? "state.up" : "state.down",
                 {{"backend", state_config_.backend_name()},
                  {"error", m.body.value("last_error", std::string())}});
        }
    });
    // Answers to the CLI: matched by id, passed on as they are.
    auto answer = [this](core::Message& m) {
        auto id = m.body.value("id", std::uint64_t{0});
        auto it = state_requests_.find(id);
        if (it == state_requests_.end()) return;  // timed out meanwhile
        ControlServer::Reply reply = std::move(it->second);
        state_requests_.erase(it);
        nlohmann::json out = m.body;
        out.erase("type");
        out.erase("id");
        if (!out.contains("ok")) out["ok"] = true;
        reply(out);
    };
    broker_dispatch_.on("state.ack", answer);
    broker_dispatch_.on("state.reply", answer);
    broker_dispatch_.on("status", answer);
}

void Master::on_broker_exit(int status) {
    BrokerProc b = std::move(*broker_);
    broker_.reset();
    if (b.channel && !b.channel->closed()) b.channel->drain_input();
    for (auto& [id, reply] : state_requests_)
        reply({{"ok", false}, {"error", "the broker exited before it answered"}});
    state_requests_.clear();
    apply(sup_.broker_exited(status, Clock::now()));
}

void Master::start_broker() {
    try {
        spawn_broker();
    } catch (const std::exception& e) {
        std::string what = e.what();
        apply(sup_.broker_spawn_failed(what, Clock::now()));
    }
}

void Master::stop_broker() {
    if (!broker_ || broker_->pid <= 0) return;
    // The broker leaves when its channel to the master closes (or on TERM).
    (void)kill(broker_->pid, SIGTERM);
}

void Master::state_request(const nlohmann::json& request, ControlServer::Reply reply) {
    std::string op = request.value("op", std::string());
    nlohmann::json out;
    if (op == "get" || op == "del" || op == "set") {
        if (!request.contains("key") || !request["key"].is_string())
            return reply({{"ok", false}, {"error", "a key (string) is required"}});
        out = {{"type", op == "get"   ? "state.get"
                        : op == "set" ? "state.set"
                                      : "state.erase"},
               {"key", request["key"]}};
        if (op == "set") {
            if (!request.contains("value"))
                return reply({{"ok", false}, {"error", "a value (JSON) is required"}});
            out["value"] = request["value"];
        }
    } else if (op == "list") {
        out = {{"type", "state.list"}, {"prefix", request.value("prefix", std::string())}};
    } else {
        return reply({{"ok", false},
                      {"error", "unknown state operation \"" + op + "\" (get, set, del, list)"}});
    }
    if (!broker_ || !sup_.broker_ready() || broker_->channel->closed())
        return reply({{"ok", false}, {"error", "the broker is not running (it is restarting)"}});
    std::uint64_t id = next_state_request_++;
    out["id"] = id;
    if (!broker_->channel->send(out))
        return reply({{"ok", false}, {"error", "cannot reach the broker"}});
    state_requests_[id] = std::move(reply);
    loop_.add_timer(state_request_timeout, [this, id] {
        auto it = state_requests_.find(id);
        if (it == state_requests_.end()) return;
        ControlServer::Reply r = std::move(it->second);
        state_requests_.erase(it);
        r({{"ok", false}, {"error", "the broker did not answer within 10 s"}});
    });
}

nlohmann::json Master::state_status() const {
    nlohmann::json s = {{"backend", state_config_.backend_name()},
                        {"broker_pid", broker_ ? broker_->pid : 0},
                        {"broker_restarts", sup_.broker_restarts()}};
    if (broker_ && !broker_->status.is_null())
        for (auto it = broker_->status.begin(); it != broker_->status.end(); ++it)
            s[it.key()] = it.value();  // details: the backend's own figures
    if (!broker_) s["up"] = false;
    return s;
}

}  // namespace herd::master
