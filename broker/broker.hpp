// The shared-state broker: one process per master, forked like a worker, that owns the only
// connection to the state backend (file or Redis) and pushes the state to every worker.
//
// Channels (core::Channel: framed JSON objects with a "type", fds by SCM_RIGHTS):
//
//  master <-> broker: the channel the master created when it forked the broker.
//  worker <-> broker: one socketpair per worker, made by the master: one end goes to the
//    worker (inherited at fork, or passed later), the other to the broker with "attach".
//    Changes go broker -> worker directly, never through the master's loop.
//
// master -> broker
//   {"type":"attach","worker":"web/0/4711"} + 1 fd   the broker's end of a worker's pair;
//       the broker sends that worker a full snapshot at once (as soon as the backend has been
//       read once), then every delta in version order.
//   {"type":"state.set","id":N,"key":K,"value":V}    a write for `herd state set`; answered
//   {"type":"state.erase","id":N,"key":K}            by state.ack with the same id
//   {"type":"state.get","id":N,"key":K}              answered by state.reply:
//       {"type":"state.reply","id":N,"ok":true,"version":V,"found":bool,"value":V}
//   {"type":"state.list","id":N,"prefix":P}          answered by state.reply:
//       {"type":"state.reply","id":N,"ok":true,"version":V,"entries":{K:V,...}}
//       (a state.reply with "ok":false has "error"; so has an ack for a malformed request)
//   {"type":"status","id":N}                         answered by {"type":"status","id":N,...}
//       with the fields of a heartbeat
// broker -> master
//   {"type":"ready","pid":P,"backend":"file"|"redis"}   once, when the broker runs
//   {"type":"heartbeat","backend","target","up","loaded","down_since_ms","down_for_ms",
//    "last_error","version","keys","workers","details":{...}}
//       every BrokerSpec::heartbeat and at once when the backend goes up or down, or its
//       last_error changes. Silence means a stuck broker (watchdog).
//   {"type":"state.ack",...}, {"type":"state.reply",...}, {"type":"status","id":N,...}
//
// broker -> worker
//   {"type":"state.snapshot","version":V,"entries":{K:V,...}}   replaces the worker's copy
//   {"type":"state.delta","base":B,"version":V,"changes":[{"key":K,"value":V} |
//                                                         {"key":K,"erased":true},...]}
//       applies on top of exactly version B; anything else is a gap (see state.resync)
//   {"type":"state.ack","id":N,"ok":true,"version":V} | {"type":"state.ack","id":N,
//       "ok":false,"error":"..."}   after the backend confirmed (or refused) the write. The
//       deltas that include a successful write are sent before its ack.
// worker -> broker
//   {"type":"state.set","id":N,"key":K,"value":V}, {"type":"state.erase","id":N,"key":K}
//   {"type":"state.resync"}   the worker saw a gap: the broker sends a fresh snapshot
//
// A malformed or unknown message is logged with its sender and ignored; a malformed request
// that has an id is answered with ok:false and the reason. When the master's channel closes
// the broker exits (orphan rule); a worker's channel closing just forgets that worker.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "broker/backend.hpp"
#include "broker/state_config.hpp"
#include "core/channel.hpp"
#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"

namespace herd::broker {

// Exit codes, as for workers.
inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_start_failure = 3;
inline constexpr int exit_master_gone = 4;

struct BrokerSpec {
    StateConfig config;
    core::UniqueFd channel;  // to the master
    std::chrono::milliseconds heartbeat{1000};
};

class Broker {
  public:
    Broker(core::EventLoop& loop, BrokerSpec spec);
    ~Broker();
    Broker(const Broker&) = delete;
    Broker& operator=(const Broker&) = delete;

    // Starts the backend, the master channel and the heartbeat, and sends "ready". Throws
    // core::Error when the backend cannot start at all.
    void start();
    // The loop was stopped by the broker (master gone): the process exit code.
    int exit_code() const { return exit_code_; }
    const Backend& backend() const { return *backend_; }
    std::size_t workers() const { return workers_.size(); }
    // The heartbeat body (also the answer to "status").
    nlohmann::json status() const;

  private:
    struct WorkerLink {
        std::uint64_t id = 0;
        std::string name;
        std::unique_ptr<core::Channel> channel;
        bool snapshot_sent = false;
    };

    void on_master_message(core::Message& m);
    void on_attach(core::Message& m);
    void on_worker_message(WorkerLink& link, core::Message& m);
    void drop_worker(std::uint64_t id, const std::string& reason);
    // A write from a worker (link_id != 0) or from the master (link_id == 0).
    void handle_write(const nlohmann::json& body, std::uint64_t link_id);
    void handle_read(const nlohmann::json& body);
    void send_snapshot(WorkerLink& link);
    void on_delta(const state::Delta& delta);
    void on_reset();
    void heartbeat();
    void send_heartbeat();
    bool send_to(std::uint64_t link_id, const nlohmann::json& body);

    core::EventLoop& loop_;
    BrokerSpec spec_;
    std::unique_ptr<Backend> backend_;
    std::unique_ptr<core::Channel> master_;
    core::Dispatcher master_dispatch_;
    core::BasicDispatcher<WorkerLink&> worker_dispatch_;
    std::map<std::uint64_t, std::unique_ptr<WorkerLink>> workers_;
    std::uint64_t next_link_ = 1;
    core::EventLoop::TimerId heartbeat_timer_ = 0;
    bool heartbeat_due_ = false;
    int exit_code_ = exit_ok;
    std::shared_ptr<char> alive_ = std::make_shared<char>(0);
};

// The body of the forked broker process: logs as "broker", runs until the master's channel
// closes (or SIGTERM), and exits. Never returns.
[[noreturn]] void broker_main(BrokerSpec spec);

// The backend the config asks for (not started).
std::unique_ptr<Backend> make_backend(core::EventLoop& loop, const StateConfig& config,
                                      Backend::Events events);

}  // namespace herd::broker
