// Master: binding, spawning, supervision and signals; see master.hpp.
#include "master/master.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/socket.hpp"
#include "master/describe.hpp"
#include "master/exit_policy.hpp"
#include "master/reload_plan.hpp"
#include "master/spawn.hpp"
#include "worker/worker.hpp"

namespace herd::master {

Master::Master(core::Config config, broker::StateConfig state)
    : config_(std::move(config)), state_config_(std::move(state)) {
    register_handlers();
    register_broker_handlers();
}

Master::~Master() = default;

std::shared_ptr<const PluginFiles> PluginFiles::open(const core::AppConfig& app) {
    auto files = std::make_shared<PluginFiles>();
    for (const core::PluginConfig& p : app.plugins)
        files->fds.emplace_back(::open(p.path.c_str(), O_RDONLY | O_CLOEXEC));
    return files;
}

std::unique_ptr<Master::App> Master::make_app(const core::AppConfig& a) {
    auto app = std::make_unique<App>();
    app->id = next_app_id_++;
    app->config = a;
    app->file_config = a;
    app->plugin_stamp = plugin_stamp(a);
    app->plugin_files = PluginFiles::open(a);
    auto mode = balance::parse_mode(a.balance);
    if (!mode) throw core::Error("app \"" + a.name + "\": unknown balance \"" + a.balance + "\"");
    app->strategy = balance::make_strategy(*mode);
    try {
        app->strategy->bind(a.listen, a.backlog, a.workers);
    } catch (const core::Error& e) {
        throw core::Error("app \"" + a.name + "\": " + e.what());
    }
    app->bound = app->strategy->bound_address();
    return app;
}

Master::App* Master::find_app(std::uint64_t id) {
    for (auto& app : apps_)
        if (app->id == id) return app.get();
    return nullptr;
}

Master::App* Master::find_app(const std::string& name) {
    for (auto& app : apps_)
        if (app->config.name == name && !app->removed && !app->provisional) return app.get();
    return nullptr;
}

void Master::bind_all() {
    for (const core::AppConfig& a : config_.apps) {
        std::unique_ptr<App> app = make_app(a);
        watch_master_socket(*app, *app->strategy);
        core::log_info("app \"{}\" listening on {} ({} worker(s), balance {})", a.name, app->bound,
                       a.workers, a.balance);
        apps_.push_back(std::move(app));
    }
}

int Master::run() {
    core::set_log_identity("master");
    sigset_t mask;
    sigemptyset(&mask);
    for (int sig : {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD, SIGTTIN, SIGTTOU})
        sigaddset(&mask, sig);
    if (sigprocmask(SIG_BLOCK, &mask, nullptr) < 0) core::throw_errno("sigprocmask()");
    signal(SIGPIPE, SIG_IGN);
    signal_fd_.reset(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signal_fd_) core::throw_errno("signalfd()");
    loop_.add(signal_fd_.get(), EPOLLIN, [this](std::uint32_t) { on_signal(); });

    // The log file before anything worth logging; a path that cannot be opened stops herd
    // here, with the reason on standard error.
    if (!config_.log_file.empty()) core::open_log_file(config_.log_file);
    credentials_ = resolve_credentials(config_.user, config_.group, config_.allow_root);
    if (credentials_.change)
        core::log_info("workers and the broker run as user {} (uid {}, gid {})", credentials_.user,
                       credentials_.uid, credentials_.gid);
    else if (geteuid() == 0)
        core::log_warn("workers run as root (\"allow_root\": true)");
    // The control socket first: a second master is refused before it touches any port.
    if (!config_.control_path.empty()) {
        control_ = std::make_unique<ControlServer>(
            loop_, [this](const nlohmann::json& r, ControlServer::Reply reply) {
                on_control(r, std::move(reply));
            });
        control_->listen(config_.control_path);
        core::log_info("control socket {}", config_.control_path);
    }
    bind_all();
    if (!config_.metrics.text.empty()) {
        metrics_ = std::make_unique<MetricsServer>(loop_, [this] { return metrics(); });
        metrics_->listen(config_.metrics);
        core::log_info("metrics on http://{}/metrics", metrics_->bound_address());
    }
    watchdog();
    // The broker first: each worker then gets its channel to it at fork, and the state
    // before it reports ready.
    start_broker();
    for (auto& app : apps_)
        for (int slot = 0; slot < app->config.workers; ++slot) start_worker(*app, slot);

    loop_.run();
    return exit_code_;
}

Master::WorkerProc* Master::spawn_worker(App& app, int slot, bool next) {
    const core::AppConfig& config = next ? app.next->config : app.config;
    std::shared_ptr<const PluginFiles> files = next ? app.next->plugin_files : app.plugin_files;
    std::vector<int> plugin_fds;
    if (files)
        for (const core::UniqueFd& fd : files->fds) plugin_fds.push_back(fd ? fd.get() : -1);
    std::shared_ptr<balance::Strategy> strategy =
        next && app.next->strategy ? app.next->strategy : app.strategy;
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0)
        core::throw_errno("socketpair() for app \"" + config.name + "\" slot " +
                          std::to_string(slot));
    core::UniqueFd ours(pair[0]), theirs(pair[1]);
    int generation = next ? app.next->generation : app.generation;
    int child_end = theirs.get(), listen_fd = strategy->worker_socket(slot);
    balance::LoadBoard* board = strategy->load_board();
    if (board != nullptr && slot < balance::LoadBoard::max_slots) {
        board->slot(slot).open.store(0);
        board->slot(slot).state.store(static_cast<std::uint32_t>(balance::SlotState::absent));
    } else {
        board = nullptr;
    }
    ChildPipes pipes = make_child_pipes();
    // Its channel to the state broker, when one runs (else it is attached when one starts).
    core::UniqueFd broker_end, worker_end;
    if (broker_ && broker_->channel && !broker_->channel->closed()) {
        int bp[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, bp) < 0)
            core::throw_errno("socketpair() to the broker for app \"" + config.name + "\"");
        broker_end.reset(bp[0]);
        worker_end.reset(bp[1]);
    }
    std::vector<int> keep{child_end};
    for (auto& fd : pipes.write_ends) keep.push_back(fd.get());
    if (listen_fd >= 0) keep.push_back(listen_fd);
    if (worker_end) keep.push_back(worker_end.get());
    for (int fd : plugin_fds)
        if (fd >= 0) keep.push_back(fd);
    pid_t pid = -1;
    try {
        pid = spawn_process(keep, [&] {
            pipes.in_child();
            become(credentials_);  // after binding, before any plugin is loaded
            worker::WorkerSpec spec;
            spec.app = config;
            spec.slot = slot;
            spec.generation = generation;
            spec.channel = core::UniqueFd(child_end);
            if (listen_fd >= 0) spec.listen = core::UniqueFd(listen_fd);
            spec.board = board;
            spec.plugin_files = plugin_fds;
            spec.broker = std::move(worker_end);
            spec.await_state = true;  // the broker always runs (restarted when it dies)
            for (const auto& [k, v] : config.env) setenv(k.c_str(), v.c_str(), 1);
            worker::worker_main(std::move(spec));
        });
    } catch (const core::Error& e) {
        throw core::Error("spawning a worker for app \"" + config.name + "\" slot " +
                          std::to_string(slot) + ": " + e.what());
    }
    // A worker the master passes connections to: keep its end (see WorkerProc::unread).
    core::UniqueFd unread = listen_fd < 0 ? std::move(theirs) : core::UniqueFd();
    theirs.reset();
    worker_end.reset();
    watch_child_output(pipes, "worker " + config.name + "/" + std::to_string(slot), pid);

    auto w = std::make_unique<WorkerProc>();
    w->app = &app;
    w->strategy = strategy;
    w->canary = next;
    w->slot = slot;
    w->generation = generation;
    w->pid = pid;
    w->started = w->since = w->last_heartbeat = Clock::now();
    w->limits = LifecycleLimits::of(config);
    w->name = "worker " + app.config.name + "/" + std::to_string(slot) + " (pid " +
              std::to_string(pid) + ")";
    w->channel = std::make_unique<core::Channel>(loop_, std::move(ours), w->name);
    w->unread = std::move(unread);
    WorkerProc* raw = w.get();
    workers_[pid] = std::move(w);
    raw->channel->start([this, raw](core::Message&& m) { on_worker_message(*raw, m); },
                        [raw](const std::string& reason) {
                            // A worker that exits closes its end first: that is routine. A
                            // live worker cut off by an error is not, and it will leave (its
                            // side sees EOF) and be replaced.
                            if (reason == "peer closed the channel")
                                core::log_info("{} disconnected", raw->name);
                            else
                                core::log_error("{} disconnected: {}", raw->name, reason);
                        });
    core::log_info("spawned {} generation {}", raw->name, generation);
    emit("worker.spawned", about(*raw));
    if (broker_end) send_broker_end(*raw, std::move(broker_end));
    return raw;
}

void Master::replace_worker(WorkerProc& w, const std::string& kind, const std::string& why) {
    if (w.canary && reload_ && !reload_->committed) {
        // The new build fails on its first requests: it does not roll out.
        abort_reload(w.name + " (the canary) " + why);
        return;
    }
    if (w.replaced_by != 0 || w.leaving || stopping_ || w.slot >= w.app->config.workers ||
        w.app->removed)
        return;
    ++w.app->restarts_by_reason[kind];
    enter(w, WorkerState::replacing);  // no more connections passed to it
    try {
        WorkerProc* next = spawn_worker(*w.app, w.slot);
        next->replaces = w.pid;
        w.replaced_by = next->pid;
        core::log_info("replacing {} ({}) by pid {}", w.name, why, next->pid);
        auto fields = about(w);
        fields.update({{"kind", kind}, {"reason", why}, {"replacement", next->pid}});
        emit("worker.replacing", fields);
    } catch (const core::Error& e) {
        core::log_error("cannot replace {}: {}; draining it anyway", w.name, e.what());
        drain_worker(w, false);
    }
}

void Master::drain_worker(WorkerProc& w, bool close_idle) {
    enter(w, WorkerState::draining);
    // The worker keeps its own deadline; watchdog() is the backstop for one that is stuck.
    if (!w.channel->send({{"type", "drain"},
                          {"close_idle", close_idle},
                          {"deadline_ms", w.limits.drain.count()}}))
        (void)kill(w.pid, SIGTERM);  // no channel: the worker drains on TERM as well
    emit("worker.draining", about(w));
}

void Master::enter(WorkerProc& w, WorkerState s) {
    if (w.state == s) return;
    w.state = s;
    w.since = Clock::now();
}

void Master::watchdog() {
    auto now = Clock::now();
    auto period = std::chrono::milliseconds(1000);
    std::vector<std::pair<WorkerProc*, Verdict>> overdue;  // acting may change workers_
    for (auto& [pid, w] : workers_) {
        period = std::min(period, check_period(w->limits));
        if (w->exited || w->killed != Overdue::none) continue;
        WorkerTimes times{w->since, w->last_heartbeat};
        if (Verdict v = check(w->state, times, w->limits, now)) overdue.emplace_back(w.get(), v);
    }
    for (auto& [w, v] : overdue) on_overdue(*w, v);
    for (auto& app : apps_)
        period = std::min(period, check_period(LifecycleLimits::of(app->config)));
    check_broker();
    loop_.add_timer(period, [this] { watchdog(); });
}

void Master::on_overdue(WorkerProc& w, const Verdict& v) {
    std::string why = describe(v);
    if (v.what == Overdue::replacement) {
        // Its replacement is still not ready: stop waiting, it drains now (the replacement
        // meets its own start timeout).
        core::log_error("{}: {}; draining it", w.name, why);
        w.replaced_by = 0;
        w.leaving = true;
        w.leave_reason = why;
        drain_worker(w, false);
        return;
    }
    const char* hint = v.what == Overdue::start_timeout ? "stuck in a plugin's on_start?"
                       : v.what == Overdue::watchdog    ? "stuck in a plugin?"
                                                        : "stuck in its drain";
    core::log_error("{}: {}: {} SIGKILL", w.name, why, hint);
    auto fields = about(w);
    fields.update({{"deadline", v.what == Overdue::start_timeout ? "start_timeout"
                                : v.what == Overdue::watchdog    ? "watchdog"
                                                                 : "drain"},
                   {"reason", why}});
    emit("worker.killed", fields);
    w.killed = v.what;
    w.kill_reason = why;
    if (v.what == Overdue::start_timeout) w.start_failure = why;
    (void)kill(w.pid, SIGKILL);
}

void Master::check_all_ready() {
    bool all = true;
    for (auto& app : apps_) {
        int ready = 0;
        for (auto& [pid, w] : workers_)
            if (w->app == app.get() && w->state == WorkerState::ready &&
                w->generation == app->generation)
                ++ready;
        if (ready >= app->config.workers && !app->announced_ready) {
            app->announced_ready = true;
            core::log_info("app \"{}\" ready on {} with {} worker(s)", app->config.name, app->bound,
                           ready);
            emit("app.ready",
                 {{"app", app->config.name}, {"generation", app->generation}, {"workers", ready}});
        }
        all = all && app->announced_ready;
    }
    if (all && !all_ready_logged_) {
        all_ready_logged_ = true;
        core::log_info("all apps ready");
        notify_.ready(std::to_string(apps_.size()) + " app(s) ready");
    }
}

void Master::on_signal() {
    signalfd_siginfo info{};
    while (::read(signal_fd_.get(), &info, sizeof info) == sizeof info) {
        int sig = static_cast<int>(info.ssi_signo);
        switch (sig) {
            case SIGCHLD:
                reap();
                break;
            case SIGHUP:
                reload("SIGHUP", {});
                break;
            case SIGUSR1:
                reopen_logs();
                break;
            case SIGTTIN:
            case SIGTTOU:
                if (stopping_) break;
                for (auto& app : apps_)
                    if (!app->removed && !app->provisional)
                        scale(*app, app->config.workers + (sig == SIGTTIN ? 1 : -1));
                break;
            case SIGTERM:
            case SIGINT:
            case SIGQUIT:
                if (stopping_ && sig != SIGQUIT) {
                    core::log_warn("second {}: stopping at once", strsignal(sig));
                    stop_now();
                } else {
                    begin_stop(0, std::string("signal ") + strsignal(sig));
                }
                break;
            default:
                core::log_warn("signal {} ({}) is not handled yet; ignoring", sig, strsignal(sig));
                break;
        }
    }
}

void Master::reap() {
    for (;;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) {
            if (pid < 0 && errno != ECHILD) core::log_error("{}", core::errno_text("waitpid()"));
            break;
        }
        if (broker_ && pid == broker_->pid)
            on_broker_exit(status);
        else
            on_worker_exit(pid, status);
    }
    finish_stop_if_done();
}

void Master::finish_stop_if_done() {
    if (!stopping_ || !workers_.empty()) return;
    // The broker leaves last: a draining worker may still write state.
    if (broker_) {
        stop_broker();
        return;
    }
    drain_outputs();
    loop_.stop();
}

void Master::on_worker_exit(pid_t pid, int status) {
    auto it = workers_.find(pid);
    if (it == workers_.end()) {
        core::log_warn("reaped unknown child pid {}: {}", pid, describe_status(status));
        return;
    }
    // Read what the dead worker sent before deciding anything: its "ready" or "fatal" may be
    // unread when several children are reaped at once. It is gone, so take it out of the
    // candidates first, or its "ready" would have connections passed to it.
    it->second->exited = true;
    if (!it->second->channel->closed()) it->second->channel->drain_input();
    std::unique_ptr<WorkerProc> w = std::move(it->second);
    workers_.erase(it);
    if (!stopping_) recover_unread(*w);
    w->unread.reset();
    w->app->retired_stats += w->stats;
    bool slot_taken = std::any_of(workers_.begin(), workers_.end(), [&](const auto& other) {
        return other.second->app == w->app && other.second->slot == w->slot;
    });
    if (balance::LoadBoard* board = w->strategy->load_board();
        board != nullptr && w->slot < balance::LoadBoard::max_slots && !slot_taken)
        board->slot(w->slot).state.store(static_cast<std::uint32_t>(balance::SlotState::absent));
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::string how = describe_status(status);
    auto record_exit = [&](const std::string& why) {
        w->app->last_exit[w->slot] = {why.empty() ? how : how + ": " + why, Clock::now()};
    };
    std::string cause = !w->kill_reason.empty() ? w->kill_reason : w->start_failure;
    App& app = *w->app;
    WorkerExit facts;
    facts.state = w->state;
    facts.killed = w->killed;
    facts.signaled = WIFSIGNALED(status);
    facts.start_failed = !w->start_failure.empty() ||
                         (WIFEXITED(status) && WEXITSTATUS(status) == worker::exit_start_failure);
    facts.stopping = stopping_;
    facts.canary_pending = w->canary && reload_ && !reload_->committed;
    facts.leaving = w->leaving;
    facts.replaced = w->replaced_by != 0;
    facts.app_removed = app.removed;
    facts.slot_removed = w->slot >= app.config.workers;
    facts.app_failed = app.failed;
    facts.rolling_its_generation = app.rolling && app.previous && w->generation == app.generation;
    RestartOptions options;
    options.initial_delay = std::chrono::milliseconds(app.config.restart_backoff_ms);
    options.max_delay = std::chrono::milliseconds(app.config.restart_backoff_max_ms);
    options.healthy_after = std::chrono::milliseconds(app.config.healthy_after_ms);
    SlotBackoff& backoff = app.backoff.try_emplace(w->slot, options).first->second;
    ExitDecision d = decide_exit(facts, backoff, app.start_failures, w->started, Clock::now());
    {
        auto fields = about(*w);
        fields.update({{"status", how}, {"state", state_name(w->state)}, {"reason", cause}});
        if (WIFEXITED(status)) fields["code"] = WEXITSTATUS(status);
        if (WIFSIGNALED(status)) fields["signal"] = WTERMSIG(status);
        fields["expected"] = !d.unexpected;  // as decide_exit judged it
        emit("worker.exited", fields);
    }

    std::string after =
        fmt::format("after {:.1f} s, generation {}", seconds_since(w->started), w->generation);
    std::string reason = !w->start_failure.empty() ? w->start_failure
                         : d.start_failure         ? "worker " + how + " before it was ready"
                                                   : "";
    switch (d.action) {
        case ExitAction::none:
            if (stopping_)
                core::log_line(clean ? core::LogLevel::info : core::LogLevel::warn,
                               fmt::format("{} {} {}", w->name, how, after));
            break;
        case ExitAction::abort_reload:
            // The reload's canary never got going: the reload fails, the old generation
            // serves on.
            core::log_error("{} (canary of generation {}) {}", w->name, w->generation, how);
            abort_reload(w->name + " (the canary) " +
                         (w->start_failure.empty() ? how + " before it was ready"
                                                   : "failed to start: " + w->start_failure));
            forget_app_if_empty(app);
            return;
        case ExitAction::expected: {
            // It reported a fatal error and its replacement took the slot, or a reload moved
            // its slot to a new generation, or its app left the config.
            std::string why = w->replaced_by != 0
                                  ? "replaced by pid " + std::to_string(w->replaced_by)
                              : app.removed              ? "app removed"
                              : !w->leave_reason.empty() ? w->leave_reason
                                                         : "slot rolled over";
            record_exit(cause.empty() ? why : cause);
            core::log_line(clean ? core::LogLevel::info : core::LogLevel::warn,
                           fmt::format("{} {} {} ({})", w->name, how, after, why));
            if (w->slot >= app.config.workers) close_retired_slot(app, w->slot);
            if (app.rolling) advance_roll(app);
            forget_app_if_empty(app);
            return;
        }
        case ExitAction::slot_removed:
            record_exit("slot removed");
            core::log_info("{} {} {}; slot {} removed", w->name, how, after, w->slot);
            close_retired_slot(app, w->slot);
            return;
        case ExitAction::roll_back:
        case ExitAction::app_failed:
        case ExitAction::restart:
            break;
    }
    if (!d.unexpected) return;
    core::log_error("{} {} unexpectedly {}", w->name, how, after);
    ++app.restarts[w->slot];
    ++app.restarts_by_reason[d.reason];
    record_exit(cause);
    if (d.action == ExitAction::roll_back) {
        // A slot of the new generation cannot start: like a failed canary, the reload fails
        // and the previous generation comes back.
        roll_back(app, w->name + " of generation " + std::to_string(w->generation) +
                           " could not start: " + reason);
        return;
    }
    if (d.start_failure)
        // It was the replacement of a worker that reported a fatal error: that one drains
        // now, and the slot restarts with its back-off.
        for (auto& [pid, old] : workers_)
            if (old->replaced_by == w->pid && !old->exited) {
                core::log_error("{}: its replacement could not start; draining it", old->name);
                old->replaced_by = 0;
                old->leaving = true;
                old->leave_reason = "its replacement could not start";
                drain_worker(*old, false);
            }
    if (d.action == ExitAction::app_failed) {
        app.failed = true;
        core::log_error(
            "app \"{}\" failed: {} workers in a row could not start; the last: {}. "
            "No more workers are started for it",
            app.config.name, app.start_failures.count(), reason);
        emit("app.failed", {{"app", app.config.name}, {"reason", reason}});
        if (app.rolling) {
            // The roll stops where it is.
            app.rolling = false;
            if (reload_)
                reload_->errors.push_back("app \"" + app.config.name +
                                          "\" failed during the rollout of generation " +
                                          std::to_string(app.generation) + ": " + reason);
            finish_reload();
        }
        return;
    }
    if (d.action == ExitAction::restart) restart_slot(app, w->slot, d.delay);
}

void Master::begin_stop(int exit_code, const std::string& why) {
    if (stopping_) return;
    stopping_ = true;
    exit_code_ = exit_code;
    notify_.stopping("stopping (" + why + ")");
    emit("herd.stopping", {{"reason", why}, {"exit_code", exit_code}});
    if (reload_) end_reload(false, "herd is stopping (" + why + ")");
    int deadline = 0;
    for (auto& app : apps_) deadline = std::max(deadline, app->config.drain_timeout_ms);
    core::log_line(exit_code == 0 ? core::LogLevel::info : core::LogLevel::error,
                   fmt::format("stopping ({}): draining {} worker(s), deadline {} ms", why,
                               workers_.size(), deadline));
    for (auto& app : apps_) {
        close_strategy(*app, *app->strategy);
        if (app->old_strategy) close_strategy(*app, *app->old_strategy);
        if (app->next && app->next->strategy) close_strategy(*app, *app->next->strategy);
        for (auto& [slot, socket] : app->retiring) app->acceptors.erase(socket.get());
        app->retiring.clear();
        app->pending.clear();  // never placed: these clients see the connection close
    }
    for (auto& [pid, w] : workers_) {
        enter(*w, WorkerState::draining);
        if (!w->channel->send({{"type", "drain"},
                               {"close_idle", true},
                               {"deadline_ms", w->app->config.drain_timeout_ms}}))
            (void)kill(pid, SIGTERM);  // no channel: the worker drains on TERM as well
    }
    // The workers keep their own deadline; ours is the backstop for one that is stuck.
    loop_.add_timer(std::chrono::milliseconds(deadline + 1000), [this] {
        if (broker_) (void)kill(broker_->pid, SIGKILL);
        if (workers_.empty()) return;
        core::log_error("drain deadline passed: killing {} worker(s)", workers_.size());
        for (auto& [pid, w] : workers_) (void)kill(pid, SIGKILL);
    });
    finish_stop_if_done();
}

void Master::stop_now() {
    exit_code_ = 1;
    for (auto& [pid, w] : workers_) (void)kill(pid, SIGKILL);
    for (auto& [pid, w] : workers_) {
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        core::log_warn("{} {}", w->name, describe_status(status));
    }
    workers_.clear();
    if (broker_) {
        (void)kill(broker_->pid, SIGKILL);
        int status = 0;
        while (waitpid(broker_->pid, &status, 0) < 0 && errno == EINTR) {
        }
        broker_.reset();
    }
    drain_outputs();
    loop_.stop();
}

}  // namespace herd::master
