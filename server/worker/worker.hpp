// Worker: a forked process that loads the app's plugins, reports ready to the master, and
// serves HTTP on its own epoll loop until it is told to drain or the master goes away.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "balance/load_board.hpp"
#include "core/acceptor.hpp"
#include "core/channel.hpp"
#include "core/config.hpp"
#include "core/event_loop.hpp"
#include "core/exit_codes.hpp"
#include "core/request_stats.hpp"
#include "http/http_parser.hpp"
#include "state/state_replica.hpp"
#include "worker/access_log.hpp"
#include "worker/blocking_pool.hpp"
#include "worker/connection.hpp"
#include "worker/graveyard.hpp"
#include "worker/plugin_host.hpp"
#include "worker/ws_session.hpp"

namespace herd::worker {

// Exit codes the master understands (core/exit_codes.hpp).
using core::exit_master_gone;
using core::exit_ok;
using core::exit_start_failure;

struct WorkerSpec {
    core::AppConfig app;
    int slot = 0;
    int generation = 1;
    core::UniqueFd channel;    // to the master
    core::UniqueFd listen;     // the socket this worker accepts on; empty when the master accepts
    core::UniqueFd broker;     // our end of the channel to the state broker; empty while it is down
    bool await_state = false;  // a broker is supervised: wait for its snapshot before on_start
    // A new master taking over in an upgrade: accept nothing on `listen` until the master says
    // "serve" (the old master's workers serve until then).
    bool hold = false;
    balance::LoadBoard* board = nullptr;  // shared mode: the app's load board (shared memory)
    // The generation's plugin files, opened by the master (PluginServices::files); closed
    // once loaded.
    std::vector<int> plugin_files;
};

class Worker final : public MessageSink, public ConnectionHost, public WsHost {
  public:
    explicit Worker(WorkerSpec spec);
    ~Worker() override;
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Loads plugins, reports ready, serves until done; returns the process exit code.
    int run();

    // ConnectionHost: for connections.
    core::EventLoop& loop() override { return loop_; }
    const core::AppConfig& app() const override { return spec_.app; }
    const http::HttpLimits& limits() const override { return limits_; }
    MountedPlugin* route(std::string_view path) override { return plugins_.route(path); }
    char* read_buffer() override { return read_buffer_.data(); }
    std::size_t read_buffer_size() const override { return read_buffer_.size(); }
    // Counts a request; at max_requests (with jitter) the worker retires, like after a fatal
    // error but reported as "retire".
    void request_started() override;
    // A response was queued: counts it for metrics and writes the access log line. Its
    // duration ends at the loop's time, which Connection refreshes after each handler.
    void request_done(const Request& request, int status, std::size_t bytes,
                      core::EventLoop::Clock::time_point started, Connection& connection) override;
    // While draining, a connection idle this long closes: long enough for a busy client's
    // next request to arrive and be answered with "Connection: close".
    std::chrono::milliseconds drain_idle_grace() const override { return drain_idle_grace_; }
    void connection_lingering() override;
    void connection_closed(Connection& c, int fd, bool was_lingering, bool held) override;
    void connection_unheld(Connection& c) override;
    WsSession* open_websocket(MountedPlugin& plugin) override;
    void connection_upgraded(Connection& c, int fd, bool held) override;

    // WsHost: for WebSockets (counted as open connections until their descriptor closes).
    void ws_closed(WsSession& s, bool held) override;
    void ws_unheld(WsSession& s) override;

    // An exception escaped plugin code (the guard says where): log it with where it was
    // thrown, report "fatal" to the master, stop accepting, and keep serving what is open
    // until the master, once the replacement is ready, says "drain".
    void on_plugin_failure(const std::string& description);
    // Stops accepting and asks the master for a replacement (report: "fatal" or "retire"); the
    // master says "drain" once the replacement is ready.
    void retire(const nlohmann::json& report);

  private:
    void on_master_message(core::Message&& m);
    bool plugin_message(std::string_view mount, const nlohmann::json& message,
                        bool broadcast) override;
    // Context::publish: this worker's subscribers at once, the app's other workers through
    // the master ("ws.publish").
    bool ws_publish(std::string_view mount, std::string_view topic, std::string_view data,
                    bool binary) override;
    void deliver_published(const std::string& mount, const std::string& topic,
                           std::string_view data, bool binary);
    void release_websocket(WsSession& s);
    // Asked before each accept (shared mode): false when this worker steps back.
    bool accept_gate();
    // Watches `listen` (at start, or on "serve" when held).
    void start_accepting();
    // Serves a connection accepted here or passed by the master.
    void adopt(core::UniqueFd fd);
    void report_load();
    void publish_open();
    void start_drain(bool close_idle, int deadline_ms);
    // The worker leaves: what is still in flight is answered 503 (or its stream ended) and
    // cancelled, then every connection is destroyed, before any plugin stops.
    void close_connections(const std::string& why);
    void sweep();
    void heartbeat();
    void send_heartbeat();
    // Requests in plugins' hands and what the plugins have registered, descriptors, heap:
    // figures for the heartbeat (and the tests that look for leaks).
    nlohmann::json async_figures() const;
    void maybe_finish();
    void finish(int code);

    WorkerSpec spec_;
    core::EventLoop loop_;
    std::unique_ptr<core::Channel> master_;
    core::Dispatcher dispatch_;
    state::StateReplica state_;  // before plugins_: the plugins' state views refer to it
    // Before plugins_: the plugins' loops refer to it, and it outlives their blocking work.
    std::unique_ptr<BlockingPool> pool_;
    PluginHost plugins_;
    std::unique_ptr<core::Acceptor> acceptor_;  // on spec_.listen, when the worker accepts
    http::HttpLimits limits_;
    std::vector<std::unique_ptr<Connection>> connections_;  // indexed by fd
    std::size_t open_connections_ = 0;
    std::size_t closing_connections_ = 0;    // of the open ones, lingering after our FIN
    Graveyard<Connection> released_{loop_};  // closed: freed in the next iteration
    // Closed while a plugin still holds their request: freed once it lets go.
    std::unordered_map<Connection*, std::unique_ptr<Connection>> orphans_;
    // WebSockets: each plugin's topics (by mount; before the sessions, which unsubscribe as
    // they go), the sessions, and those closed and let go, freed in the next iteration.
    std::map<std::string, WsTopics, std::less<>> ws_topics_;
    std::unordered_map<WsSession*, std::unique_ptr<WsSession>> websockets_;
    Graveyard<WsSession> released_websockets_{loop_};
    std::uint64_t websocket_ids_ = 0;
    std::vector<char> read_buffer_;
    AccessLog access_log_{loop_};
    core::RequestStats stats_;
    std::uint64_t requests_ = 0;
    std::uint64_t request_limit_ = 0;  // max_requests plus jitter; 0: no limit
    std::uint64_t closed_ = 0;  // connections closed, reported to the master when it accepts for us
    bool load_report_due_ = false;
    bool master_accepts_ = false;
    bool stepped_back_ = false;  // at most one step back in a row: never a stall

    std::size_t fd_limit_ = 1024;  // round-robin, least-conn: connections arrive as "conn"
    bool draining_ = false;
    std::chrono::milliseconds drain_idle_grace_{1000};
    bool retiring_ = false;
    bool started_ = false;  // plugins started, "ready" about to be sent
    int exit_code_ = exit_ok;
    std::string identity_;
};

// The body of a forked worker process: never returns.
[[noreturn]] void worker_main(WorkerSpec spec);

}  // namespace herd::worker
