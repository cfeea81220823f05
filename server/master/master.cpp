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

#include "build_info.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/socket.hpp"
#include "master/describe.hpp"
#include "master/reload_plan.hpp"
#include "master/spawn.hpp"
#include "worker/worker.hpp"

namespace herd::master {

Master::Master(core::Config config, broker::StateConfig state, std::optional<Inherited> inherited)
    : config_(std::move(config)),
      state_config_(std::move(state)),
      inherited_(std::move(inherited)) {
    register_handlers();
    register_broker_handlers();
    // This executable, for `herd upgrade` without --binary: the path it was started from, so
    // that a package that replaced the file there is what the upgrade starts.
    char path[4096];
    if (ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1); n > 0) {
        binary_.assign(path, static_cast<std::size_t>(n));
        if (binary_.ends_with(" (deleted)")) binary_.resize(binary_.size() - 10);
    }
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
        if (inherited_) app->strategy->adopt(claim_sockets(*inherited_, a));
        app->strategy->bind(a.listen, a.backlog, a.workers);
        // An old master's reuseport slots beyond this config's workers: their queues are
        // passed on by this master (from the take-over) until the old master has gone.
        if (app->strategy->mode() == balance::Mode::reuseport)
            for (int slot = a.workers; slot < static_cast<int>(app->strategy->sockets().size());
                 ++slot)
                if (core::UniqueFd extra = app->strategy->remove_slot(slot)) {
                    app->retiring[slot] = std::move(extra);
                    inherited_extras_.emplace_back(app->id, slot);
                }
    } catch (const core::Error& e) {
        throw core::Error("app \"" + a.name + "\": " + e.what());
    }
    app->bound = app->strategy->bound_address();
    return app;
}

Master::App* Master::find_app(AppId id) {
    for (auto& app : apps_)
        if (app->id == id) return app.get();
    return nullptr;
}

Master::App* Master::find_app(const std::string& name) {
    for (auto& app : apps_)
        if (const SupervisedApp* a = sup_.app(app->id);
            a != nullptr && app->config.name == name && !a->removed && !a->provisional)
            return app.get();
    return nullptr;
}

void Master::bind_all() {
    for (const core::AppConfig& a : config_.apps) {
        std::unique_ptr<App> app = make_app(a);
        if (!taking_over()) watch_master_socket(*app, *app->strategy);
        core::log_info("app \"{}\" listening on {} ({} worker(s), balance {})", a.name, app->bound,
                       a.workers, a.balance);
        sup_.add_app(app->id, AppSettings::of(a));
        apps_.push_back(std::move(app));
    }
    if (inherited_) {
        check_unclaimed(*inherited_);
        inherited_.reset();
    }
}

int Master::run() {
    core::set_log_identity("master");
    if (inherited_ && inherited_->upgrade()) {
        // A new master: the old one serves until this one is ready and it hands over.
        predecessor_pid_ = inherited_->from_pid;
        predecessor_version_ = inherited_->from_version;
        notify_.mute(true);
        predecessor_ = std::make_unique<core::Channel>(
            loop_, std::move(inherited_->channel),
            "the old master (pid " + std::to_string(predecessor_pid_) + ")");
        core::log_info("taking over from herd {} (pid {})", predecessor_version_, predecessor_pid_);
    }
    try {
        start();
    } catch (const std::exception& e) {
        if (predecessor_) {
            predecessor_->send({{"type", "upgrade.failed"}, {"reason", e.what()}});
            predecessor_->flush();
        }
        throw;
    }
    loop_.run();
    return exit_code_;
}

void Master::start() {
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
    core::UniqueFd old_control, old_metrics, old_health;
    if (inherited_) {
        old_control = std::move(inherited_->control);
        if (inherited_->metrics_listen == config_.metrics.text)
            old_metrics = std::move(inherited_->metrics);
        if (inherited_->health_listen == config_.health.text)
            old_health = std::move(inherited_->health);
    }
    // The control socket first: a second master is refused before it touches any port.
    if (!config_.control_path.empty()) {
        control_ = std::make_unique<ControlServer>(
            loop_, [this](const nlohmann::json& r, ControlServer::Reply reply) {
                on_control(r, std::move(reply));
            });
        if (old_control && unix_socket_path(old_control.get()) == config_.control_path)
            control_->adopt(std::move(old_control), config_.control_path, !taking_over());
        else
            control_->listen(config_.control_path);
        core::log_info("control socket {}", config_.control_path);
    }
    bind_all();
    if (predecessor_) {
        predecessor_->start([this](core::Message&& m) { on_predecessor_message(m); },
                            [this](const std::string& reason) {
                                // Gone after the hand-over, as expected: nothing more can be
                                // queued on its extra sockets but what is there now.
                                if (took_over_) close_inherited_extras();
                                if (took_over_ || stopping()) return;
                                core::log_warn(
                                    "the old master (pid {}) went away before handing over "
                                    "({}); taking over once every app is ready",
                                    predecessor_pid_, reason);
                                if (all_ready_) take_over("the old master went away");
                            });
        build::fault_point("inherited");
    }
    if (!config_.metrics.text.empty()) {
        metrics_ = std::make_unique<MetricsServer>(
            loop_, [this] { return metrics(); }, [this] { return health(); },
            [this] { return status_document(); });
        metrics_->set_auth(config_.metrics_auth);
        if (old_metrics)
            metrics_->adopt(std::move(old_metrics), !taking_over());
        else
            metrics_->listen(config_.metrics);
        core::log_info("metrics on http://{}/metrics, status page on http://{}/",
                       metrics_->bound_address(), metrics_->bound_address());
        if (!config_.metrics.is_loopback() && !config_.metrics_auth.required())
            core::log_warn(
                "metrics: {} is not a loopback address and \"metrics_auth\" is not set: anyone "
                "who reaches it sees the status page and the figures",
                config_.metrics.text);
        sample_history();
    }
    if (!config_.health.text.empty()) {
        health_ = std::make_unique<MetricsServer>(loop_, nullptr, [this] { return health(); });
        if (old_health)
            health_->adopt(std::move(old_health), !taking_over());
        else
            health_->listen(config_.health);
        core::log_info("health check on http://{}/healthz", health_->bound_address());
    }
    watchdog();
    // The broker first: each worker then gets its channel to it at fork, and the state
    // before it reports ready.
    start_broker();
    apply(sup_.start(Clock::now()));
}

Master::WorkerProc* Master::spawn_worker(App& app, int slot, bool next) {
    const SupervisedApp* supervised = sup_.app(app.id);
    if (supervised == nullptr || (next && (!app.next || !supervised->next)))
        throw core::Error("app \"" + app.config.name + "\" has no config to start slot " +
                          std::to_string(slot) + " with");
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
    int generation = next ? supervised->next->generation : supervised->generation;
    int child_end = theirs.get(), listen_fd = strategy->worker_socket(slot);
    bool hold = taking_over();
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
            spec.hold = hold;
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
    w->slot = slot;
    w->generation = generation;
    w->pid = pid;
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
    if (broker_end) send_broker_end(*raw, std::move(broker_end));
    return raw;
}

void Master::send_drain(pid_t pid, bool close_idle, std::chrono::milliseconds deadline) {
    auto it = workers_.find(pid);
    if (it == workers_.end()) return;
    if (!it->second->channel->send(
            {{"type", "drain"}, {"close_idle", close_idle}, {"deadline_ms", deadline.count()}}))
        (void)kill(pid, SIGTERM);  // no channel: the worker drains on TERM as well
}

void Master::watchdog() {
    apply(sup_.tick(Clock::now()));
    loop_.add_timer(sup_.check_period(), [this] { watchdog(); });
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
            case SIGUSR2:
                begin_upgrade("SIGUSR2", {}, {});
                break;
            case SIGTTIN:
            case SIGTTOU: {
                if (stopping()) break;
                std::vector<App*> apps;
                for (auto& app : apps_)
                    if (find_app(app->config.name) == app.get()) apps.push_back(app.get());
                for (App* app : apps) scale(*app, app->config.workers + (sig == SIGTTIN ? 1 : -1));
                break;
            }
            case SIGTERM:
            case SIGINT:
            case SIGQUIT:
                if (stopping() && sig != SIGQUIT) {
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
        else if (upgrade_ && pid == upgrade_->pid)
            on_new_master_exit(status);
        else
            on_worker_exit(pid, status);
    }
    finish_stop_if_done();
}

void Master::finish_stop_if_done() {
    if (!stopping() || !workers_.empty()) return;
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
    // unread when several children are reaped at once. It is gone, so it is no candidate for
    // connections any more, or its "ready" would have some passed to it.
    const SupervisedWorker* was = sup_.worker(pid);
    bool never_ready = was != nullptr && was->state == WorkerState::starting;
    sup_.reaped(pid);
    if (!it->second->channel->closed()) it->second->channel->drain_input();
    it = workers_.find(pid);
    std::unique_ptr<WorkerProc> w = std::move(it->second);
    workers_.erase(it);
    if (!stopping() || handed_over_) recover_unread(*w);
    w->unread.reset();
    w->app->retired_stats += w->stats;
    w->app->retired_clients += core::counters(w->clients);
    if (balance::LoadBoard* board = w->strategy->load_board();
        board != nullptr && w->slot < balance::LoadBoard::max_slots &&
        !sup_.slot_taken(w->app->id, w->slot, pid))
        board->slot(w->slot).state.store(static_cast<std::uint32_t>(balance::SlotState::absent));
    if (never_ready && taking_over())
        upgrade_start_failed(start_failure_.empty()
                                 ? w->name + " " + describe_status(status) + " before it was ready"
                                 : start_failure_);
    apply(sup_.exited(pid, status, Clock::now()));
    answer_upgrade_if_done();
}

void Master::begin_stop(int exit_code, const std::string& why, bool close_idle) {
    if (stopping()) return;
    exit_code_ = exit_code;
    notify_.stopping("stopping (" + why + ")");
    if (upgrade_ && !upgrade_->committed) {
        // A new master still starting: it stops too (its workers accept nothing yet).
        (void)kill(upgrade_->pid, SIGTERM);
        upgrade_failed("herd is stopping (" + why + ")");
    }
    int deadline = 0;
    for (auto& app : apps_) deadline = std::max(deadline, app->config.drain_timeout_ms);
    core::log_line(exit_code == 0 ? core::LogLevel::info : core::LogLevel::error,
                   fmt::format("stopping ({}): draining {} worker(s), deadline {} ms", why,
                               workers_.size(), deadline));
    Actions actions = sup_.stop(why, exit_code, Clock::now(), close_idle);
    for (auto& app : apps_) {
        close_strategy(*app, *app->strategy);
        if (app->old_strategy) close_strategy(*app, *app->old_strategy);
        if (app->next && app->next->strategy) close_strategy(*app, *app->next->strategy);
        for (auto& [slot, socket] : app->retiring) app->acceptors.erase(socket.get());
        app->retiring.clear();
        if (handed_over_)
            while (!app->pending.empty()) {
                pass_to_new_master(*app, std::move(app->pending.front()));
                app->pending.pop_front();
            }
        app->pending.clear();  // never placed: these clients see the connection close
    }
    apply(std::move(actions));
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
