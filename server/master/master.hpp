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
#include "core/client_stats.hpp"
#include "core/config.hpp"
#include "core/event_loop.hpp"
#include "master/control.hpp"
#include "master/cpu.hpp"
#include "master/history.hpp"
#include "master/inherit.hpp"
#include "master/lifecycle.hpp"
#include "master/metrics.hpp"
#include "master/notify.hpp"
#include "master/output.hpp"
#include "master/restart_policy.hpp"
#include "master/spawn.hpp"
#include "master/supervisor.hpp"

namespace herd::master {

// A generation's plugin files, opened when it begins (config order; an invalid descriptor
// where the file could not be opened: the worker then fails on the path, saying why). Its
// workers load these very files, so a roll back starts the previous build even after a new
// one was renamed over the path.
struct PluginFiles {
    std::vector<core::UniqueFd> fds;
    static std::shared_ptr<const PluginFiles> open(const core::AppConfig& app);
};

// The old master's side of an upgrade (upgrade.cpp): the new binary it started. At namespace
// scope: clang 14 cannot default-construct a nested struct with member initializers inside its
// still incomplete enclosing class (std::optional::emplace).
struct UpgradeInProgress {
    pid_t pid = -1;
    std::string binary, source, version;
    core::EventLoop::Clock::time_point started;
    std::unique_ptr<core::Channel> channel;
    std::vector<ControlServer::Reply> replies;
    std::string failure;  // why it failed, once known (answered when it is reaped)
    bool committed = false;
    bool answered = false;  // failed and answered (herd stops: not waiting for the reap)
    core::EventLoop::TimerId deadline = 0;
};

class Master {
  public:
    // `inherited`: listen sockets from the master this one upgrades from, or from systemd.
    Master(core::Config config, broker::StateConfig state,
           std::optional<Inherited> inherited = std::nullopt);
    ~Master();
    Master(const Master&) = delete;
    Master& operator=(const Master&) = delete;

    // Runs until stopped; returns the process exit code (0 after a graceful stop).
    int run();

  private:
    using Clock = core::EventLoop::Clock;
    struct App;
    // A worker's process, channel and figures: what the master holds for it. Its place in
    // the lifecycle is the supervisor's (sup_.worker(pid)).
    struct WorkerProc {
        App* app = nullptr;
        // The strategy whose sockets it was given (an app's changes when its listen address
        // does): kept alive while it runs.
        std::shared_ptr<balance::Strategy> strategy;
        int slot = 0;
        int generation = 0;
        pid_t pid = -1;
        std::unique_ptr<core::Channel> channel;
        // round-robin, least-conn: the worker's own end of the channel, kept open so that the
        // connections passed to it and never read survive its death (recover_unread()).
        core::UniqueFd unread;
        std::string name;            // "worker web/0 (pid 4711)"
        std::uint64_t requests = 0;  // figures from its last heartbeat
        std::uint64_t open = 0;
        std::uint64_t rss_kb = 0;
        CpuMeter cpu;  // sampled from /proc at each heartbeat
        // Deferred requests, streams, plugin registrations, descriptors, heap (worker.cpp).
        nlohmann::json async = nlohmann::json::object();
        core::RequestStats stats;         // from its last heartbeat
        core::ClientStatsMap clients;     // its clients', from its last heartbeat
        std::uint64_t state_version = 0;  // of its copy of the shared state
        // Connections passed by the master (round-robin, least-conn) and those the worker
        // reported closed: their difference is its open count, exact without a round trip.
        std::uint64_t passed = 0;
        std::uint64_t closed = 0;
        // Connections it may hold at once (from its "ready": its descriptor limit less a
        // reserve); the master passes no more, so the kernel never has to drop one.
        std::uint64_t capacity = 1024;
    };
    // An app's config, sockets and plugin files; its generation, roll and restarts are the
    // supervisor's (sup_.app(id)).
    struct App {
        AppId id = 0;                 // the supervisor's and the timers' key
        core::AppConfig config;       // what runs (scaling changes `workers`)
        core::AppConfig file_config;  // as last read from the file, for the next reload
        std::string plugin_stamp;     // its plugin files when this generation began
        std::shared_ptr<const PluginFiles> plugin_files;  // and those files, open
        std::shared_ptr<balance::Strategy> strategy;
        std::string bound;  // the address actually bound ("127.0.0.1:39117")
        // During a reload, before its canary is ready: the next generation's config. `strategy`
        // is set when the listen address changes.
        struct Next {
            core::AppConfig config;
            std::string plugin_stamp;
            std::shared_ptr<const PluginFiles> plugin_files;
            std::shared_ptr<balance::Strategy> strategy;
        };
        std::optional<Next> next;
        // While it rolls to a new generation: the one before, to roll back to.
        struct Previous {
            core::AppConfig config, file_config;
            std::string plugin_stamp;
            std::shared_ptr<const PluginFiles> plugin_files;
        };
        std::optional<Previous> previous;
        // The strategy before a listen change: it closes once the new generation serves.
        std::shared_ptr<balance::Strategy> old_strategy;
        // Connections the master accepted while no worker could take one (start-up, every
        // worker replaced at once); handed out as soon as a worker is ready.
        std::deque<core::UniqueFd> pending;
        // Sockets of removed reuseport slots, by slot: the master accepts on them and passes
        // the connections on until the slot's worker has left, then closes them.
        std::map<int, core::UniqueFd> retiring;
        core::RequestStats retired_stats;      // of its workers that are gone
        core::ClientStatsMap retired_clients;  // their clients' counters
        // By socket: the master accepts on these (round-robin, least-conn, retiring slots).
        // Last, so destroyed first: each stops watching before its socket can close.
        std::map<int, std::unique_ptr<core::Acceptor>> acceptors;
    };

    // A reload in progress: the CLI clients waiting for its answer (its progress is the
    // supervisor's).
    struct Reload {
        std::string source;  // "SIGHUP", "herd reload"
        Clock::time_point started;
        std::vector<ControlServer::Reply> replies;
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
        Clock::time_point started;
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

    // run()'s set-up: signals, log, control socket, listen sockets, metrics, broker, workers.
    void start();
    void bind_all();
    std::unique_ptr<App> make_app(const core::AppConfig& config);
    App* find_app(AppId id);
    App* find_app(const std::string& name);  // a committed app, not being removed
    // Carries out the supervisor's actions, in order; what they lead to (a spawn's outcome,
    // a timer) goes back to the supervisor and its actions follow.
    void apply(Actions actions);
    void carry_out(Action& a);
    void carry_out_spawn(const act::Spawn& s);
    // Forks the app's worker for `slot`, of the next generation when `next` (a canary). Throws
    // core::Error when fork, pipe or socketpair fail.
    WorkerProc* spawn_worker(App& app, int slot, bool next);
    void send_drain(pid_t pid, bool close_idle, std::chrono::milliseconds deadline);
    void on_signal();
    void on_worker_message(WorkerProc& w, core::Message& m);
    void register_handlers();
    // One per message type a worker sends (see ARCHITECTURE.md's table).
    void on_ready(WorkerProc& w, core::Message& m);
    void on_conn_refused(WorkerProc& w, core::Message& m);
    void on_heartbeat(WorkerProc& w, core::Message& m);
    void on_retire(WorkerProc& w, core::Message& m);
    void on_user(WorkerProc& w, core::Message& m);
    void on_ws_publish(WorkerProc& w, core::Message& m);
    void on_load(WorkerProc& w, core::Message& m);
    void on_fatal(WorkerProc& w, core::Message& m);
    void on_draining(WorkerProc& w, core::Message& m);
    void reap();
    void on_worker_exit(pid_t pid, int status);
    // Every worker's deadline (the supervisor's tick) and the broker's, on a timer.
    void watchdog();
    // Reads a worker's pipe (log, stdout, stderr) into the master's log until end of file.
    void watch_output(core::UniqueFd fd, OutputReader::Sink sink);
    // SIGUSR1: the master's log file and the workers' access logs are opened again.
    void reopen_logs();
    void drain_outputs();
    void on_control(const nlohmann::json& request, ControlServer::Reply reply);
    // Reload (reload.cpp): read the config again, bind what is new, and hand the supervisor
    // its canaries; the actions below carry out its decisions about the app's config.
    void reload(const std::string& source, ControlServer::Reply reply);
    void adopt_next(App& app);
    void restore_previous(App& app);
    void rolled(App& app);
    void end_reload(bool ok, bool committed, const std::string& message);
    // Stops accepting for an app that left the config; it is forgotten with its last worker.
    void close_app(App& app);
    void forget_app(App& app);
    void close_strategy(App& app, balance::Strategy& strategy);
    void watch_master_socket(App& app, balance::Strategy& strategy);
    // The worker's slot is removed: the master accepts on its socket until the worker left.
    void retire_slot(WorkerProc& w);
    nlohmann::json status() const;
    // The status page's and /status.json's document: status() with the charts' history, the
    // recent events and the time (status.cpp).
    nlohmann::json status_document() const;
    // Every second while there is a metrics address: the apps' figures into history_.
    void sample_history();

    // Upgrade (upgrade.cpp). The old master's side: starts the new binary with every listen
    // socket, waits for its "upgrade.ready", then hands over (systemd's MAINPID, the control
    // and metrics sockets, the connections it still holds) and stops; a new master that fails
    // or dies before it is ready changes nothing here.
    void begin_upgrade(const std::string& source, std::string binary, ControlServer::Reply reply);
    // Why an upgrade cannot begin now, or "".
    std::string upgrade_refusal() const;
    pid_t start_new_master(const std::string& binary, core::UniqueFd channel_end);
    void on_upgrade_message(core::Message& m);
    void upgrade_failed(const std::string& why);
    void hand_over();
    void on_new_master_exit(int status);
    // After the hand-over: answers `herd upgrade` once every worker here has exited.
    void answer_upgrade_if_done();
    // A connection this master still holds after the hand-over goes to the new master.
    void pass_to_new_master(App& app, core::UniqueFd fd);
    // The new master's side: until "upgrade.commit" its workers accept nothing (held), the
    // master accepts nothing, answers no control request and tells systemd nothing.
    void on_predecessor_message(core::Message& m);
    void take_over(const std::string& why);
    void upgrade_start_failed(const std::string& why);
    bool taking_over() const { return predecessor_pid_ != 0 && !took_over_; }
    // The event stream (events.cpp): `event` ("worker.ready", ...) with `fields`, to every
    // `herd events` client.
    void emit(std::string_view event, nlohmann::json fields = nlohmann::json::object());
    MasterMetrics metrics() const;
    // Places what is accepted on `fd` (the app's placement socket or a retiring slot's).
    void accept_on(App& app, int fd, const std::string& name);
    // TTIN / TTOU, `herd scale`: binds what a larger app needs, then the supervisor decides.
    void scale(App& app, int workers);
    void close_retired_slot(App& app, int slot);
    // Gives a connection the master accepted to a worker of the app, or queues it.
    void place_connection(App& app, core::UniqueFd fd, const WorkerProc* refused_by = nullptr);
    void flush_pending(App& app);
    // A dead worker's unread "conn" messages, still queued in its end of the channel, go to
    // the other workers instead of being closed with the socket.
    void recover_unread(WorkerProc& w);
    // close_idle: see Supervisor::stop.
    void begin_stop(int exit_code, const std::string& why, bool close_idle = true);
    bool stopping() const { return sup_.stopping(); }
    // Once every worker is gone: the broker is stopped, then the loop.
    void finish_stop_if_done();
    void stop_now();

    core::Config config_;
    Notifier notify_;  // first: workers must not inherit NOTIFY_SOCKET
    core::EventLoop loop_;
    core::UniqueFd signal_fd_;
    std::unique_ptr<ControlServer> control_;
    core::BasicDispatcher<WorkerProc&> dispatch_;
    Supervisor sup_;
    std::deque<Action> actions_;  // apply()'s queue
    bool applying_ = false;
    std::vector<std::unique_ptr<App>> apps_;
    std::map<pid_t, std::unique_ptr<WorkerProc>> workers_;
    std::map<int, std::unique_ptr<OutputReader>> outputs_;  // by descriptor
    AppId next_app_id_ = 1;
    std::optional<Reload> reload_;
    std::uint64_t reload_ids_ = 0;
    bool reload_again_ = false;  // a SIGHUP arrived during a reload: run another after it
    std::uint64_t reloads_done_ = 0;
    std::uint64_t reloads_failed_ = 0;
    std::unique_ptr<MetricsServer> metrics_;
    std::unique_ptr<MetricsServer> health_;  // the "health" address: /healthz only
    History history_;                        // the status page's charts (bounded)
    core::EventLoop::TimerId history_timer_ = 0;
    std::deque<nlohmann::json> recent_events_;  // the last max_recent_events emitted
    bool migrate_req_warned_ = false;           // closing a reuseport slot without tcp_migrate_req
    static constexpr std::size_t max_recent_events = 50;
    HealthVerdict health() const;
    broker::StateConfig state_config_;
    Credentials credentials_;  // who workers and the broker run as
    std::unique_ptr<BrokerProc> broker_;
    core::Dispatcher broker_dispatch_;
    std::map<std::uint64_t, ControlServer::Reply> state_requests_;  // CLI requests by id
    std::uint64_t next_state_request_ = 1;
    int exit_code_ = 0;

    // Upgrades (upgrade.cpp).
    std::optional<Inherited> inherited_;  // until every app has claimed its sockets
    std::string binary_;                  // this executable, resolved at start
    std::chrono::system_clock::time_point started_at_ = std::chrono::system_clock::now();
    std::optional<UpgradeInProgress> upgrade_;  // the old master's side
    bool handed_over_ = false;
    pid_t handed_to_ = 0;
    std::unique_ptr<core::Channel> predecessor_;  // the new master's side
    pid_t predecessor_pid_ = 0;
    std::string predecessor_version_;
    bool took_over_ = false;
    bool all_ready_ = false;
    std::string start_failure_;  // the first worker's start failure while taking over
    // The old master's reuseport slots beyond this config's workers (in App::retiring): this
    // master passes on what queues there until the old master has gone, then closes them.
    std::vector<std::pair<AppId, int>> inherited_extras_;
    void close_inherited_extras();
};

}  // namespace herd::master
