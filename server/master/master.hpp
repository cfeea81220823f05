// Master: binds the listen sockets, forks and supervises the workers, handles signals. One
// epoll loop; never loads a plugin.
#pragma once

#include <sys/types.h>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "balance/strategy.hpp"
#include "broker/state_config.hpp"
#include "core/acceptor.hpp"
#include "core/channel.hpp"
#include "core/config.hpp"
#include "core/event_loop.hpp"
#include "master/control.hpp"
#include "master/lifecycle.hpp"
#include "master/metrics.hpp"
#include "master/notify.hpp"
#include "master/output.hpp"
#include "master/restart_policy.hpp"
#include "master/spawn.hpp"

namespace herd::master {

// The shortest wait before another try after fork, pipe or socketpair failed: a first
// failure would otherwise be retried at once, in the same breath.
inline constexpr std::chrono::milliseconds min_spawn_retry{100};

// A generation's plugin files, opened when it begins (config order; an invalid descriptor
// where the file could not be opened: the worker then fails on the path, saying why). Its
// workers load these very files, so a roll back starts the previous build even after a new
// one was renamed over the path.
struct PluginFiles {
    std::vector<core::UniqueFd> fds;
    static std::shared_ptr<const PluginFiles> open(const core::AppConfig& app);
};

class Master {
  public:
    Master(core::Config config, broker::StateConfig state);
    ~Master();
    Master(const Master&) = delete;
    Master& operator=(const Master&) = delete;

    // Runs until stopped; returns the process exit code (0 after a graceful stop).
    int run();

  private:
    using Clock = core::EventLoop::Clock;
    struct App;
    struct WorkerProc {
        App* app = nullptr;
        // The strategy whose sockets it was given (an app's changes when its listen address
        // does): kept alive while it runs.
        std::shared_ptr<balance::Strategy> strategy;
        int slot = 0;
        int generation = 0;
        pid_t pid = -1;
        WorkerState state = WorkerState::starting;  // see lifecycle.hpp
        Clock::time_point since;                    // entered `state`
        LifecycleLimits limits;                     // of the config it was started with
        Overdue killed = Overdue::none;             // the deadline it was killed for
        std::string kill_reason;                    // describe() of that deadline
        std::unique_ptr<core::Channel> channel;
        // round-robin, least-conn: the worker's own end of the channel, kept open so that the
        // connections passed to it and never read survive its death (recover_unread()).
        core::UniqueFd unread;
        Clock::time_point started;
        std::string name;           // "worker web/0 (pid 4711)"
        std::string start_failure;  // reason from its "fatal" report during start-up
        // Connections passed by the master (round-robin, least-conn) and those the worker
        // reported closed: their difference is its open count, exact without a round trip.
        bool exited = false;  // reaped: being cleaned up
        Clock::time_point last_heartbeat;
        std::uint64_t requests = 0;  // figures from its last heartbeat
        std::uint64_t open = 0;
        std::uint64_t rss_kb = 0;
        // Deferred requests, streams, plugin registrations, descriptors, heap (worker.cpp).
        nlohmann::json async = nlohmann::json::object();
        pid_t replaces = 0;     // the failed worker this one replaces (drained once we are ready)
        pid_t replaced_by = 0;  // our replacement: our exit is expected, no respawn
        bool leaving = false;   // drained on purpose (reload, abort): its exit is expected
        std::string leave_reason;  // why, when it is not a reload's roll
        bool canary = false;       // first worker of a reload's new generation, not yet committed
        bool stopped_accepting = false;   // acknowledged "drain": accepts no new connections
        core::RequestStats stats;         // from its last heartbeat
        std::uint64_t state_version = 0;  // of its copy of the shared state
        std::uint64_t passed = 0;
        std::uint64_t closed = 0;
        // Connections it may hold at once (from its "ready": its descriptor limit less a
        // reserve); the master passes no more, so the kernel never has to drop one.
        std::uint64_t capacity = 1024;
    };
    struct App {
        std::uint64_t id = 0;         // timers look an app up by id: a removed one is gone
        core::AppConfig config;       // what runs (scaling changes `workers`)
        core::AppConfig file_config;  // as last read from the file, for the next reload
        std::string plugin_stamp;     // its plugin files when this generation began
        std::shared_ptr<const PluginFiles> plugin_files;  // and those files, open
        std::shared_ptr<balance::Strategy> strategy;
        std::string bound;  // the address actually bound ("127.0.0.1:39117")
        int generation = 1;
        // During a reload, before its canary is ready: the next generation. `strategy` is set
        // when the listen address changes.
        struct Next {
            core::AppConfig config;
            std::string plugin_stamp;
            std::shared_ptr<const PluginFiles> plugin_files;
            std::shared_ptr<balance::Strategy> strategy;
            int generation = 0;
        };
        std::optional<Next> next;
        // While it rolls to a new generation: the one before, to roll back to when a worker
        // of the new one cannot start in any slot.
        struct Previous {
            core::AppConfig config, file_config;
            std::string plugin_stamp;
            std::shared_ptr<const PluginFiles> plugin_files;
            int generation = 0;
        };
        std::optional<Previous> previous;
        bool provisional = false;  // added by a reload that is not committed yet
        bool rolling = false;      // its slots are being moved to `generation`, one by one
        bool removed = false;      // gone from the config: draining, deleted with its last worker
        // The strategy before a listen change: it closes once the new generation serves.
        std::shared_ptr<balance::Strategy> old_strategy;
        bool announced_ready = false;
        // Connections the master accepted while no worker could take one (start-up, every
        // worker replaced at once); handed out as soon as a worker is ready.
        std::deque<core::UniqueFd> pending;
        // Sockets of removed reuseport slots, by slot: the master accepts on them and passes
        // the connections on until the slot's worker has left, then closes them.
        std::map<int, core::UniqueFd> retiring;
        std::map<int, SlotBackoff> backoff;     // by slot
        std::map<int, std::uint64_t> restarts;  // by slot: unexpected exits, for status
        std::map<std::string, std::uint64_t> restarts_by_reason;  // for metrics
        // By slot: how its last worker left ("killed by signal 9 (Killed): not ready within
        // 1000 ms (start_timeout_ms)") and when, for status.
        struct LastExit {
            std::string reason;
            Clock::time_point at;
        };
        std::map<int, LastExit> last_exit;
        core::RequestStats retired_stats;  // of its workers that are gone
        StartFailures start_failures;
        bool failed = false;  // gave up after start failures: no worker is started for it
        // By socket: the master accepts on these (round-robin, least-conn, retiring slots).
        // Last, so destroyed first: each stops watching before its socket can close.
        std::map<int, std::unique_ptr<core::Acceptor>> acceptors;
    };

    // A reload in progress: the CLI clients waiting for its answer.
    struct Reload {
        std::string source;  // "SIGHUP", "herd reload"
        Clock::time_point started;
        std::vector<ControlServer::Reply> replies;
        core::Config config;
        bool committed = false;  // every canary was ready: the apps are rolling
        std::vector<std::string> errors;
        std::uint64_t id = 0;
    };

    // A child's herd log, stdout and stderr: pipes the master reads (output.hpp).
    struct ChildPipes {
        core::UniqueFd read_ends[3], write_ends[3];
        void in_child();  // in the forked child: log to [0], stdout to [1], stderr to [2]
    };
    static ChildPipes make_child_pipes();
    void watch_child_output(ChildPipes& pipes, const std::string& identity, pid_t pid);

    // The state broker (broker_link.cpp): forked and supervised like a worker, with one
    // channel to each worker that the master sets up.
    struct BrokerProc {
        pid_t pid = -1;
        std::unique_ptr<core::Channel> channel;
        bool ready = false;
        Clock::time_point started, last_heartbeat;
        nlohmann::json status;  // its last heartbeat
    };
    void spawn_broker();
    // spawn_broker(), and on failure (fork, pipe, socketpair) a log line and another try
    // after the broker's back-off.
    void start_broker();
    void on_broker_message(core::Message& m);
    void on_broker_exit(int status);
    // Gives the broker its end of a worker's channel.
    void send_broker_end(WorkerProc& w, core::UniqueFd broker_end);
    // A new broker: every live worker gets a new channel to it.
    void attach_all_to_broker();
    void state_request(const nlohmann::json& request, ControlServer::Reply reply);
    nlohmann::json state_status() const;
    void stop_broker();
    void register_broker_handlers();
    void check_broker();  // the broker's watchdog

    void bind_all();
    std::unique_ptr<App> make_app(const core::AppConfig& config);
    App* find_app(std::uint64_t id);
    App* find_app(const std::string& name);
    // Starts the app's worker for `slot`, of the next generation when `next` (a canary).
    WorkerProc* spawn_worker(App& app, int slot, bool next = false);
    // spawn_worker() for a slot that must be filled (start-up, restart, scale-up). A worker
    // that cannot be spawned (fork, pipe or socketpair failed: out of processes, descriptors
    // or memory) counts as a failed start of its slot: logged, and tried again after the
    // slot's back-off (spawn_retry.cpp). Returns null then.
    WorkerProc* start_worker(App& app, int slot);
    // After a fatal report: start the slot's replacement now; the old worker drains once the
    // replacement is ready.
    void replace_worker(WorkerProc& w, const std::string& kind, const std::string& why);
    // Sends "drain"; the lifecycle check kills it if it is still there after its deadline.
    void drain_worker(WorkerProc& w, bool close_idle);
    void enter(WorkerProc& w, WorkerState s);
    // Starts a worker for the slot after `delay` (back-off), unless the app failed, the slot
    // was removed or filled meanwhile, or herd is stopping.
    void restart_slot(App& app, int slot, std::chrono::milliseconds delay);
    void on_signal();
    void on_worker_message(WorkerProc& w, core::Message& m);
    void register_handlers();
    // One per message type a worker sends (see ARCHITECTURE.md's table).
    void on_ready(WorkerProc& w, core::Message& m);
    void on_conn_refused(WorkerProc& w, core::Message& m);
    void on_heartbeat(WorkerProc& w, core::Message& m);
    void on_retire(WorkerProc& w, core::Message& m);
    void on_user(WorkerProc& w, core::Message& m);
    void on_load(WorkerProc& w, core::Message& m);
    void on_fatal(WorkerProc& w, core::Message& m);
    void on_draining(WorkerProc& w, core::Message& m);
    void reap();
    void on_worker_exit(pid_t pid, int status);
    void check_all_ready();
    // Every worker's deadline (lifecycle.hpp): one that missed it is killed or drained.
    void watchdog();
    void on_overdue(WorkerProc& w, const Verdict& v);
    // Reads a worker's pipe (log, stdout, stderr) into the master's log until end of file.
    void watch_output(core::UniqueFd fd, OutputReader::Sink sink);
    // SIGUSR1: the master's log file and the workers' access logs are opened again.
    void reopen_logs();
    void drain_outputs();
    void on_control(const nlohmann::json& request, ControlServer::Reply reply);
    // Reload (reload.cpp): read the config again, start a canary per changed app, and once
    // every canary is ready roll each app slot by slot. `reply` gets the outcome.
    void reload(const std::string& source, ControlServer::Reply reply);
    void check_canaries();
    void abort_reload(const std::string& why);
    void commit_reload();
    void advance_roll(App& app);
    // A worker of the generation being rolled out could not start: back to the previous one,
    // slot by slot, and the reload fails.
    void roll_back(App& app, const std::string& why);
    void finish_reload();
    void end_reload(bool ok, const std::string& message);
    // Removes an app from service: stops accepting, drains its workers; deleted with the last.
    void remove_app(App& app);
    void forget_app_if_empty(App& app);
    void close_strategy(App& app, balance::Strategy& strategy);
    void watch_master_socket(App& app, balance::Strategy& strategy);
    // Drains a worker whose slot is gone (scale-down, smaller reload), keeping its queue.
    void retire_slot_worker(App& app, WorkerProc& w);
    nlohmann::json status() const;
    // The event stream (events.cpp): `event` ("worker.ready", ...) with `fields`, to every
    // `herd events` client. about(w): the fields that name a worker.
    void emit(std::string_view event, nlohmann::json fields = nlohmann::json::object());
    nlohmann::json about(const WorkerProc& w) const;
    MasterMetrics metrics() const;
    // Places what is accepted on `fd` (the app's placement socket or a retiring slot's).
    void accept_on(App& app, int fd, const std::string& name);
    // TTIN / TTOU: one worker more or fewer; a removed slot's worker drains first.
    void scale(App& app, int workers);
    void close_retired_slot(App& app, int slot);
    // Gives a connection the master accepted to a worker of the app, or queues it.
    void place_connection(App& app, core::UniqueFd fd, const WorkerProc* refused_by = nullptr);
    void flush_pending(App& app);
    // A dead worker's unread "conn" messages, still queued in its end of the channel, go to
    // the other workers instead of being closed with the socket.
    void recover_unread(WorkerProc& w);
    void begin_stop(int exit_code, const std::string& why);
    // Once every worker is gone: the broker is stopped, then the loop.
    void finish_stop_if_done();
    void stop_now();

    core::Config config_;
    Notifier notify_;  // first: workers must not inherit NOTIFY_SOCKET
    core::EventLoop loop_;
    core::UniqueFd signal_fd_;
    std::unique_ptr<ControlServer> control_;
    core::BasicDispatcher<WorkerProc&> dispatch_;
    std::vector<std::unique_ptr<App>> apps_;
    std::map<pid_t, std::unique_ptr<WorkerProc>> workers_;
    std::map<int, std::unique_ptr<OutputReader>> outputs_;  // by descriptor
    std::uint64_t next_app_id_ = 1;
    std::optional<Reload> reload_;
    std::uint64_t reload_ids_ = 0;
    bool reload_again_ = false;  // a SIGHUP arrived during a reload: run another after it
    std::uint64_t reloads_done_ = 0;
    std::uint64_t reloads_failed_ = 0;
    std::unique_ptr<MetricsServer> metrics_;
    broker::StateConfig state_config_;
    Credentials credentials_;  // who workers and the broker run as
    std::unique_ptr<BrokerProc> broker_;
    SlotBackoff broker_backoff_;
    std::uint64_t broker_restarts_ = 0;
    core::Dispatcher broker_dispatch_;
    std::map<std::uint64_t, ControlServer::Reply> state_requests_;  // CLI requests by id
    std::uint64_t next_state_request_ = 1;
    bool stopping_ = false;
    bool all_ready_logged_ = false;
    int exit_code_ = 0;
};

}  // namespace herd::master
