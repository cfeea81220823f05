// The supervisor: every decision the master makes about its workers, as a pure function of
// its table, the time and an event. Each event (a worker spawned, ready, reported a fatal
// error, exited; a timer; a scale, reload or stop command) updates the table and returns the
// actions the master must carry out (spawn, drain, kill, log, emit an event, ...). It does no
// I/O: the master (master.hpp) is the shell that owns the processes, sockets and channels,
// turns what happens into events and actions into system calls. Unit tests drive it with a
// fake clock (tests/unit/supervisor_test.cpp); ARCHITECTURE.md has its table of transitions.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/log.hpp"
#include "master/exit_policy.hpp"
#include "master/lifecycle.hpp"
#include "master/restart_policy.hpp"

namespace herd::core {
struct AppConfig;
}

namespace herd::master {

using AppId = std::uint64_t;
using TimePoint = std::chrono::steady_clock::time_point;

// What the supervisor needs of an app's config.
struct AppSettings {
    std::string name;
    int workers = 1;
    LifecycleLimits limits;
    RestartOptions restart;
    std::uint64_t max_rss_mb = 0;
    static AppSettings of(const core::AppConfig& config);
};

// Why a worker was told to leave; `no` while it may stay. A worker that was told to leave
// exits as expected: its slot is not restarted for it.
enum class Leave {
    no,
    replaced,             // its replacement (after a fatal report or a recycle) is ready
    rolled,               // a reload moved its slot to another generation
    slot_removed,         // its slot is gone (scale down, a smaller reload)
    reload_aborted,       // it was a canary of a reload that failed
    app_removed,          // its app left the config
    replacement_overdue,  // its replacement was not ready in time: it goes without waiting
    replacement_failed,   // its replacement could not start
    stopping,             // herd is stopping
};

// One worker as the supervisor sees it.
struct SupervisedWorker {
    pid_t pid = 0;
    AppId app = 0;
    int slot = 0;
    int generation = 0;
    std::string name;  // "worker web/0 (pid 4711)"
    WorkerState state = WorkerState::starting;
    TimePoint started, since, last_heartbeat;  // `since`: entered `state`
    LifecycleLimits limits;                    // of the config it was started with
    bool canary = false;    // first of a reload's new generation, the reload not committed
    pid_t replaces = 0;     // the worker it replaces: drained once this one is ready
    pid_t replaced_by = 0;  // its replacement, starting
    Leave leave = Leave::no;
    std::string leave_reason;        // said when it exits
    bool stopped_accepting = false;  // acknowledged its drain: accepts nothing new
    bool reaped = false;             // the master reaped it: being cleaned up
    Overdue killed = Overdue::none;  // the deadline it was killed for
    std::string kill_reason;         // describe() of that deadline
    std::string start_failure;       // its "fatal" report during start-up
};

// One app as the supervisor sees it.
struct SupervisedApp {
    AppId id = 0;
    AppSettings settings;
    int generation = 1;
    // A reload's next generation, from its canary's spawn until the reload commits or fails.
    struct Next {
        AppSettings settings;
        int generation = 0;
    };
    std::optional<Next> next;
    // While it rolls to a new generation: the one before, to roll back to.
    struct Previous {
        AppSettings settings;
        int generation = 0;
    };
    std::optional<Previous> previous;
    bool provisional = false;  // added by a reload that is not committed yet
    bool rolling = false;      // its slots are being moved to `generation`, one by one
    bool removed = false;      // gone from the config: draining, forgotten with its last worker
    bool failed = false;       // gave up after start failures: no worker is started for it
    bool announced_ready = false;
    std::map<int, SlotBackoff> backoff;  // by slot
    StartFailures start_failures;
    std::map<int, std::uint64_t> restarts;  // by slot: unexpected exits, for status
    std::map<std::string, std::uint64_t> restarts_by_reason;  // for metrics
    struct LastExit {
        std::string reason;  // "killed by signal 9 (Killed): not ready within 1000 ms ..."
        TimePoint at;
    };
    std::map<int, LastExit> last_exit;  // by slot
};

// What the master carries out.
namespace act {
// Fork a worker for the app's slot: of its next generation when `next` (a reload's canary of
// a changed app). The master answers with spawned() or spawn_failed().
struct Spawn {
    AppId app = 0;
    int slot = 0;
    enum class Why { start, restart, scale, canary, replacement, roll } why = Why::start;
    bool next = false;
    pid_t replaces = 0;        // Why::replacement: the worker it replaces
    std::string kind, reason;  // Why::replacement: the metrics label and what happened
};
inline Spawn spawn(AppId app, int slot, Spawn::Why why) {
    Spawn s;
    s.app = app;
    s.slot = slot;
    s.why = why;
    return s;
}
struct Drain {  // send "drain" (or SIGTERM when its channel is gone)
    pid_t pid = 0;
    bool close_idle = false;
    std::chrono::milliseconds deadline{0};
};
struct Kill {
    pid_t pid = 0;
    int signal = 0;
};
struct Log {
    core::LogLevel level = core::LogLevel::info;
    std::string text;
};
struct Emit {  // an event for `herd events`
    std::string event;
    nlohmann::json fields;
};
// After `delay`, call restart_due(app, slot).
struct RestartLater {
    AppId app = 0;
    int slot = 0;
    std::chrono::milliseconds delay{0};
};
// After `delay`, call roll_due(app).
struct RollLater {
    AppId app = 0;
    std::chrono::milliseconds delay{0};
};
struct RetireSlot {  // the worker's slot is removed: its socket's queue goes to the others
    pid_t pid = 0;
};
struct CloseRetiredSlot {  // the removed slot's worker is gone: its socket closes
    AppId app = 0;
    int slot = 0;
};
struct FlushPending {  // a worker is ready: hand it the connections the master holds
    AppId app = 0;
};
struct AllReady {};  // every app is ready for the first time (systemd's READY=1)
// Every canary is ready: the master makes each changed app's next config its own (Adopt) and
// the roll begins. Emitted between the supervisor's own updates, in order.
struct Adopt {
    AppId app = 0;
};
struct Committed {};  // every canary is ready: the roll begins (said and emitted by the master)
struct Serve {        // a reload's new app is committed: the master accepts on its sockets
    AppId app = 0;
};
struct DropNext {  // a reload failed: the app's next config (and its new sockets) go
    AppId app = 0;
};
struct RollBack {  // the master restores the app's previous config, sockets and plugin files
    AppId app = 0;
};
struct Rolled {  // the app's new generation serves every slot: its old address closes
    AppId app = 0;
};
struct CloseApp {  // a removed app: stop accepting, drop what was queued
    AppId app = 0;
};
struct ForgetApp {  // a removed app's last worker is gone
    AppId app = 0;
};
struct StartBroker {  // after `delay`, start the state broker unless one runs or herd stops
    std::chrono::milliseconds delay{0};
};
struct KillBroker {  // it is stuck: SIGKILL (its exit brings the restart)
    pid_t pid = 0;
};
struct FinishReload {  // answer the reload's clients
    bool ok = true;
    bool committed = false;
    std::string message;
};
}  // namespace act

using Action = std::variant<act::Spawn, act::Drain, act::Kill, act::Log, act::Emit,
                            act::RestartLater, act::RollLater, act::Committed, act::RetireSlot,
                            act::CloseRetiredSlot, act::FlushPending, act::AllReady, act::Adopt,
                            act::Serve, act::DropNext, act::RollBack, act::Rolled, act::CloseApp,
                            act::ForgetApp, act::StartBroker, act::KillBroker, act::FinishReload>;
using Actions = std::vector<Action>;

// A reload the master has prepared (config read, new addresses bound): its canaries.
struct ReloadStart {
    struct Canary {
        AppId app = 0;
        AppSettings settings;  // of the next generation (a new app's own)
        bool added = false;    // a new app, added with add_app(.., provisional)
    };
    std::vector<Canary> canaries;
    std::vector<AppId> removed;  // apps no longer in the config: removed at commit
};

// The shortest wait before another try after fork, pipe or socketpair failed: a first failure
// would otherwise be retried at once, in the same breath.
inline constexpr std::chrono::milliseconds min_spawn_retry{100};

class Supervisor {
  public:
    // Apps and their workers.
    void add_app(AppId id, const AppSettings& settings, bool provisional = false);
    Actions start(TimePoint now);  // the first worker of every slot of every app

    // What the master saw happen.
    Actions spawned(const act::Spawn& s, pid_t pid, TimePoint now);
    Actions spawn_failed(const act::Spawn& s, const std::string& error, TimePoint now);
    Actions ready(pid_t pid, TimePoint now);
    Actions heartbeat(pid_t pid, std::uint64_t rss_kb, TimePoint now);
    // A "fatal" report; `phase` "start" (its start-up failed), "signal" (it is dying of a
    // signal: its exit brings the replacement) or anything else (a plugin threw).
    Actions fatal(pid_t pid, const std::string& phase, const std::string& reason, TimePoint now);
    Actions retire(pid_t pid, const std::string& reason, TimePoint now);  // asks to be recycled
    Actions refused(pid_t pid, TimePoint now);            // sent a connection back: draining
    Actions stopped_accepting(pid_t pid, TimePoint now);  // acknowledged its drain
    void reaped(pid_t pid);  // first, before its last messages are read
    Actions exited(pid_t pid, int status, TimePoint now);

    // The state broker: supervised like a worker, with its own back-off and watchdog.
    void broker_spawned(pid_t pid, TimePoint now);
    Actions broker_spawn_failed(const std::string& error, TimePoint now);
    void broker_ready(TimePoint now);
    void broker_heartbeat(TimePoint now);
    Actions broker_exited(int status, TimePoint now);
    // A broker silent this long is stuck: killed and restarted. Its heartbeat is 1 s.
    static constexpr std::chrono::seconds broker_watchdog{10};

    // Timers.
    Actions tick(TimePoint now);  // every worker's deadline (lifecycle.hpp) and the broker's
    Actions restart_due(AppId app, int slot, TimePoint now);
    Actions roll_due(AppId app, TimePoint now);

    // Commands.
    Actions scale(AppId app, int workers, TimePoint now);
    Actions begin_reload(const ReloadStart& r, TimePoint now);
    Actions abort_reload(const std::string& why, TimePoint now);
    // close_idle false (an upgrade's hand-over): keep-alive connections are closed after
    // their next response, as in a reload's roll, not at once.
    Actions stop(const std::string& why, int exit_code, TimePoint now, bool close_idle = true);

    // What the master reads.
    const SupervisedWorker* worker(pid_t pid) const;
    const SupervisedApp* app(AppId id) const;
    const std::map<pid_t, SupervisedWorker>& workers() const { return workers_; }
    bool takes_connections(pid_t pid) const;
    // A live worker of the app holds the slot (not counting `except`).
    bool slot_taken(AppId app, int slot, pid_t except = 0) const;
    int ready_count(AppId app) const;
    // "running", "starting", "degraded", "reloading", "removing", "failed".
    std::string app_state(AppId app) const;
    bool stopping() const { return stopping_; }
    bool broker_ready() const { return broker_ && broker_->ready; }
    std::uint64_t broker_restarts() const { return broker_restarts_; }
    bool reloading() const { return reload_.has_value(); }
    bool reload_committed() const { return reload_ && reload_->committed; }
    std::chrono::milliseconds check_period() const;  // how often tick() is due

  private:
    struct Reload {
        bool committed = false;
        std::vector<std::string> errors;
        std::vector<AppId> removed;
    };
    SupervisedWorker* find(pid_t pid);
    SupervisedApp* find_app(AppId id);
    void enter(SupervisedWorker& w, WorkerState s, TimePoint now);
    nlohmann::json about(const SupervisedWorker& w) const;
    void log(Actions& out, core::LogLevel level, std::string text);
    // Every Spawn goes out through here: until the master answers (spawned, spawn_failed)
    // the slot counts as being filled, so that no second worker is asked for it.
    void request(Actions& out, act::Spawn s);
    void answered(const act::Spawn& s);
    bool spawning(AppId app, int slot) const;
    void emit(Actions& out, std::string event, nlohmann::json fields);
    void drain(Actions& out, SupervisedWorker& w, Leave why, std::string reason, TimePoint now,
               bool close_idle = false);
    void replace(Actions& out, SupervisedWorker& w, const std::string& kind, const std::string& why,
                 TimePoint now);
    void restart_slot(Actions& out, SupervisedApp& app, int slot, std::chrono::milliseconds delay);
    void check_all_ready(Actions& out);
    void check_canaries(Actions& out, TimePoint now);
    void commit_reload(Actions& out, TimePoint now);
    void advance_roll(Actions& out, SupervisedApp& app, TimePoint now);
    void roll_back(Actions& out, SupervisedApp& app, const std::string& why, TimePoint now);
    void finish_reload(Actions& out);
    void end_reload(Actions& out, bool ok, const std::string& message);
    void remove_app(Actions& out, SupervisedApp& app, TimePoint now);
    void forget_app_if_empty(Actions& out, SupervisedApp& app);
    void on_overdue(Actions& out, SupervisedWorker& w, const Verdict& v, TimePoint now);
    void abort(Actions& out, const std::string& why, TimePoint now);

    std::map<AppId, SupervisedApp> apps_;
    std::map<pid_t, SupervisedWorker> workers_;
    struct Broker {
        pid_t pid = 0;
        bool ready = false;
        TimePoint started, last_heartbeat;
    };
    std::optional<Broker> broker_;
    SlotBackoff broker_backoff_;
    std::uint64_t broker_restarts_ = 0;
    std::map<std::pair<AppId, int>, int> spawning_;  // Spawns not answered yet, by slot
    std::optional<Reload> reload_;
    bool stopping_ = false;
    bool all_ready_ = false;
};

}  // namespace herd::master
