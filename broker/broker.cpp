// The shared-state broker process; see broker.hpp for the protocol.
#include "broker/broker.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstdio>

#include "broker/file_backend.hpp"
#include "broker/redis_backend.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "state/codec.hpp"

namespace herd::broker {

std::unique_ptr<Backend> make_backend(core::EventLoop& loop, const StateConfig& config,
                                      Backend::Events events) {
    if (config.backend == StateConfig::Backend::redis)
        return std::make_unique<RedisBackend>(loop, config.redis, std::move(events));
    return std::make_unique<FileBackend>(loop, config.file, std::move(events));
}

Broker::Broker(core::EventLoop& loop, BrokerSpec spec) : loop_(loop), spec_(std::move(spec)) {
    Backend::Events events;
    events.on_delta = [this](const state::Delta& d) { on_delta(d); };
    events.on_reset = [this] { on_reset(); };
    events.on_status = [this] {
        // Coalesced: one heartbeat per loop iteration however many changes.
        if (heartbeat_due_) return;
        heartbeat_due_ = true;
        loop_.defer([this, alive = std::weak_ptr<char>(alive_)] {
            if (!alive.lock()) return;
            heartbeat_due_ = false;
            send_heartbeat();
        });
    };
    backend_ = make_backend(loop_, spec_.config, std::move(events));

    master_dispatch_.on(state::msg::attach, [this](core::Message& m) { on_attach(m); });
    for (const char* type : {state::msg::set, state::msg::erase})
        master_dispatch_.on(type, [this](core::Message& m) { handle_write(m.body, 0); });
    for (const char* type : {state::msg::get, state::msg::list})
        master_dispatch_.on(type, [this](core::Message& m) { handle_read(m.body); });
    master_dispatch_.on(state::msg::status, [this](core::Message& m) {
        nlohmann::json s = status();
        s["type"] = state::msg::status;
        if (auto id = state::request_id(m.body)) s["id"] = *id;
        master_->send(s);
    });

    for (const char* type : {state::msg::set, state::msg::erase})
        worker_dispatch_.on(
            type, [this](core::Message& m, WorkerLink& link) { handle_write(m.body, link.id); });
    worker_dispatch_.on(state::msg::resync, [this](core::Message&, WorkerLink& link) {
        core::log_info("{} asked for a fresh snapshot (it saw a gap)", link.name);
        if (backend_->status().loaded) send_snapshot(link);
    });
}

Broker::~Broker() {
    if (heartbeat_timer_ != 0) loop_.cancel_timer(heartbeat_timer_);
    workers_.clear();
    master_.reset();
    backend_.reset();
}

void Broker::start() {
    master_ = std::make_unique<core::Channel>(loop_, std::move(spec_.channel), "master");
    master_->start([this](core::Message&& m) { on_master_message(m); },
                   [this](const std::string& reason) {
                       // Orphan rule: nobody supervises us any more.
                       core::log_error("channel to master closed ({}); exiting", reason);
                       exit_code_ = exit_master_gone;
                       loop_.stop();
                   });
    backend_->start();
    master_->send(
        {{"type", state::msg::ready}, {"pid", getpid()}, {"backend", spec_.config.backend_name()}});
    heartbeat();
}

nlohmann::json Broker::status() const {
    nlohmann::json s = backend_->status().to_json();
    s["workers"] = workers_.size();
    return s;
}

void Broker::heartbeat() {
    send_heartbeat();
    heartbeat_timer_ = loop_.add_timer(spec_.heartbeat, [this] {
        heartbeat_timer_ = 0;
        heartbeat();
    });
}

void Broker::send_heartbeat() {
    if (!master_) return;
    nlohmann::json s = status();
    s["type"] = state::msg::heartbeat;
    master_->send(s);
}

void Broker::on_master_message(core::Message& m) {
    master_dispatch_.dispatch(m, "master");
}

void Broker::on_attach(core::Message& m) {
    std::string name;
    try {
        name = state::decode_attach(m.body);
    } catch (const state::CodecError& e) {
        core::log_error("ignoring an attach from the master: {}", e.what());
        return;  // the fds close with the message
    }
    if (m.fds.size() != 1) {
        core::log_error(
            "attach for worker {} came with {} descriptor(s){}; expected 1", name, m.fds.size(),
            m.fds_lost > 0
                ? " (the kernel dropped " + std::to_string(m.fds_lost) + ": out of descriptors?)"
                : std::string());
        return;
    }
    auto link = std::make_unique<WorkerLink>();
    link->id = next_link_++;
    link->name = "worker " + name;
    link->channel = std::make_unique<core::Channel>(loop_, std::move(m.fds.front()), link->name);
    WorkerLink* raw = link.get();
    std::uint64_t id = link->id;
    workers_.emplace(id, std::move(link));
    raw->channel->start(
        [this, id](core::Message&& wm) {
            auto it = workers_.find(id);
            if (it != workers_.end()) on_worker_message(*it->second, wm);
        },
        [this, id](const std::string& reason) { drop_worker(id, reason); });
    core::log_debug("{} attached", raw->name);
    if (backend_->status().loaded) send_snapshot(*raw);
}

void Broker::drop_worker(std::uint64_t id, const std::string& reason) {
    auto it = workers_.find(id);
    if (it == workers_.end()) return;
    core::log_debug("{} detached ({})", it->second->name, reason);
    // Called from inside that channel's handler: free it after this batch.
    loop_.defer([this, id, alive = std::weak_ptr<char>(alive_)] {
        if (alive.lock()) workers_.erase(id);
    });
}

void Broker::on_worker_message(WorkerLink& link, core::Message& m) {
    worker_dispatch_.dispatch(m, link.name, link);
}

bool Broker::send_to(std::uint64_t link_id, const nlohmann::json& body) {
    if (link_id == 0) return master_ && master_->send(body);
    auto it = workers_.find(link_id);
    if (it == workers_.end() || !it->second->channel) return false;
    return it->second->channel->send(body);
}

void Broker::handle_write(const nlohmann::json& body, std::uint64_t link_id) {
    std::string sender = link_id == 0 ? "master" : "a worker";
    if (link_id != 0)
        if (auto it = workers_.find(link_id); it != workers_.end()) sender = it->second->name;
    state::WriteRequest request;
    try {
        request = state::decode_write(body);
    } catch (const state::CodecError& e) {
        core::log_error("malformed write from {}: {}", sender, e.what());
        if (auto id = state::request_id(body))
            send_to(link_id, state::encode_ack(state::Ack{*id, false, e.what(), 0}));
        return;
    }
    std::uint64_t id = request.id;
    backend_->write(
        state::Change{std::move(request.key), std::move(request.value)},
        [this, link_id, id, alive = std::weak_ptr<char>(alive_)](const std::string& error,
                                                                 std::uint64_t version) {
            if (!alive.lock()) return;
            // The writer may have gone meanwhile; then nobody is waiting.
            send_to(link_id, state::encode_ack(state::Ack{id, error.empty(), error, version}));
        });
}

void Broker::handle_read(const nlohmann::json& body) {
    state::ReadRequest request;
    try {
        request = state::decode_read(body);
    } catch (const state::CodecError& e) {
        core::log_error("malformed read request from master: {}", e.what());
        if (auto id = state::request_id(body)) {
            state::ReadReply r;
            r.id = *id;
            r.error = e.what();
            master_->send(state::encode_read_reply(r, state::ReadRequest::Kind::get));
        }
        return;
    }
    BackendStatus st = backend_->status();
    state::ReadReply r;
    r.id = request.id;
    if (!st.loaded) {
        r.error = "the state has not been read from the " + st.kind + " backend yet (" +
                  (st.last_error.empty() ? std::string("starting") : st.last_error) + ")";
    } else {
        r.ok = true;
        r.version = backend_->store().version();
        if (request.kind == state::ReadRequest::Kind::get) {
            if (const json* v = backend_->store().find(request.key)) r.value = *v;
        } else {
            r.entries = backend_->store().list(request.key);
        }
    }
    master_->send(state::encode_read_reply(r, request.kind));
}

void Broker::send_snapshot(WorkerLink& link) {
    if (!link.channel || link.channel->closed()) return;
    if (!link.channel->send(state::encode_snapshot(backend_->store().snapshot()))) {
        core::log_error("cannot send the state snapshot ({} keys) to {}", backend_->store().size(),
                        link.name);
        return;
    }
    link.snapshot_sent = true;
}

void Broker::on_delta(const state::Delta& delta) {
    if (workers_.empty()) return;
    nlohmann::json body = state::encode_delta(delta);
    for (auto& [id, link] : workers_) {
        if (!link->snapshot_sent || !link->channel || link->channel->closed()) continue;
        if (!link->channel->send(body)) {
            // A delta that could not be queued would leave a gap: the worker would notice
            // and ask again; make sure it gets a whole snapshot instead.
            link->snapshot_sent = false;
            send_snapshot(*link);
        }
    }
}

void Broker::on_reset() {
    for (auto& [id, link] : workers_) send_snapshot(*link);
}

void broker_main(BrokerSpec spec) {
    core::set_log_identity("broker");
    int code = exit_failure;
    try {
        core::EventLoop loop;
        // SIGTERM / SIGQUIT: leave at once (writes are atomic; nothing is half done).
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGQUIT);
        if (sigprocmask(SIG_BLOCK, &mask, nullptr) < 0) core::throw_errno("sigprocmask()");
        core::UniqueFd sigfd(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
        if (!sigfd) core::throw_errno("signalfd()");
        Broker broker(loop, std::move(spec));
        bool signalled = false;
        loop.add(sigfd.get(), EPOLLIN, [&, fd = sigfd.get()](std::uint32_t) {
            signalfd_siginfo info{};
            while (::read(fd, &info, sizeof info) == sizeof info) {
                core::log_info("signal {}: exiting", strsignal(static_cast<int>(info.ssi_signo)));
                signalled = true;
                loop.stop();
            }
        });
        try {
            broker.start();
        } catch (const std::exception& e) {
            core::log_error("cannot start: {}", e.what());
            std::fflush(nullptr);
            _exit(exit_start_failure);
        }
        // The master may already be gone (start() sends and can see EPIPE): run() would
        // clear that stop.
        if (!loop.stopped()) loop.run();
        code = signalled ? exit_ok : broker.exit_code();
    } catch (const std::exception& e) {
        core::log_error("broker failed: {}", e.what());
        code = exit_failure;
    }
    std::fflush(nullptr);
    _exit(code);
}

}  // namespace herd::broker
