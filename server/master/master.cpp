// Master: binding, spawning, supervision and signals; see master.hpp.
#include "master/master.hpp"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/socket.hpp"
#include "master/spawn.hpp"
#include "worker/worker.hpp"

namespace herd::master {
namespace {

using Clock = core::EventLoop::Clock;

std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        std::string s = "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
                        strsignal(WTERMSIG(status)) + ")";
        if (WCOREDUMP(status)) s += ", core dumped";
        return s;
    }
    return "changed state " + std::to_string(status);
}

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

Master::Master(core::Config config) : config_(std::move(config)) {}

Master::~Master() = default;

void Master::bind_all() {
    for (const core::AppConfig& a : config_.apps) {
        auto app = std::make_unique<App>();
        app->config = a;
        try {
            app->listen = core::listen_tcp(a.listen, false, a.backlog);
        } catch (const core::Error& e) {
            throw core::Error("app \"" + a.name + "\": " + e.what());
        }
        app->bound = core::local_address(app->listen.get());
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

    bind_all();
    for (auto& app : apps_)
        for (int slot = 0; slot < app->config.workers; ++slot) spawn_worker(*app, slot);

    loop_.run();
    return exit_code_;
}

void Master::spawn_worker(App& app, int slot) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0)
        core::throw_errno("socketpair() for app \"" + app.config.name + "\" slot " +
                          std::to_string(slot));
    core::UniqueFd ours(pair[0]), theirs(pair[1]);
    int generation = app.generation;
    int child_end = theirs.get(), listen_fd = app.listen.get();
    pid_t pid = spawn_process({child_end, listen_fd}, [&] {
        worker::WorkerSpec spec;
        spec.app = app.config;
        spec.slot = slot;
        spec.generation = generation;
        spec.channel = core::UniqueFd(child_end);
        spec.listen = core::UniqueFd(listen_fd);
        for (const auto& [k, v] : app.config.env) setenv(k.c_str(), v.c_str(), 1);
        worker::worker_main(std::move(spec));
    });
    theirs.reset();

    auto w = std::make_unique<WorkerProc>();
    w->app = &app;
    w->slot = slot;
    w->generation = generation;
    w->pid = pid;
    w->started = Clock::now();
    w->name = "worker " + app.config.name + "/" + std::to_string(slot) + " (pid " +
              std::to_string(pid) + ")";
    w->channel = std::make_unique<core::Channel>(loop_, std::move(ours), w->name);
    WorkerProc* raw = w.get();
    workers_[pid] = std::move(w);
    raw->channel->start([this, raw](core::Message&& m) { on_worker_message(*raw, m); },
                        [raw](const std::string& reason) {
                            core::log_info("{} disconnected: {}", raw->name, reason);
                        });
    core::log_info("spawned {} generation {}", raw->name, generation);
}

void Master::on_worker_message(WorkerProc& w, core::Message& m) {
    std::string type = m.type();
    if (type == "ready") {
        if (w.state == WorkerState::starting) w.state = WorkerState::ready;
        core::log_info("{} ready in {:.1f} ms", w.name, seconds_since(w.started) * 1000);
        check_all_ready();
    } else if (type == "fatal") {
        std::string reason = m.body.value("reason", std::string("(no reason given)"));
        if (m.body.value("phase", std::string()) == "start") {
            w.start_failure = reason;
            core::log_error("{} failed to start: {}", w.name, reason);
        } else {
            core::log_error("{} reported a fatal error: {}", w.name, reason);
        }
    } else if (type.empty()) {
        core::log_error("ignoring message without a \"type\" from {}", w.name);
    } else {
        core::log_warn("ignoring message of unknown type \"{}\" from {}", type, w.name);
    }
}

void Master::check_all_ready() {
    bool all = true;
    for (auto& app : apps_) {
        int ready = 0;
        for (auto& [pid, w] : workers_)
            if (w->app == app.get() && w->state == WorkerState::ready) ++ready;
        if (ready >= app->config.workers && !app->announced_ready) {
            app->announced_ready = true;
            core::log_info("app \"{}\" ready on {} with {} worker(s)", app->config.name, app->bound,
                           ready);
        }
        all = all && app->announced_ready;
    }
    if (all && !all_ready_logged_) {
        all_ready_logged_ = true;
        core::log_info("all apps ready");
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
        on_worker_exit(pid, status);
    }
    if (stopping_ && workers_.empty()) loop_.stop();
}

void Master::on_worker_exit(pid_t pid, int status) {
    auto it = workers_.find(pid);
    if (it == workers_.end()) {
        core::log_warn("reaped unknown child pid {}: {}", pid, describe_status(status));
        return;
    }
    std::unique_ptr<WorkerProc> w = std::move(it->second);
    workers_.erase(it);
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::string how = describe_status(status);
    if (stopping_) {
        core::log_line(
            clean ? core::LogLevel::info : core::LogLevel::warn,
            fmt::format("{} {} after {:.1f} s", w->name, how, seconds_since(w->started)));
        return;
    }
    core::log_error("{} {} unexpectedly after {:.1f} s", w->name, how, seconds_since(w->started));
    bool never_ready = w->state == WorkerState::starting;
    bool start_failed = !w->start_failure.empty() ||
                        (WIFEXITED(status) && WEXITSTATUS(status) == worker::exit_start_failure);
    if (start_failed || never_ready) {
        // A worker that cannot start will not start on the next fork either: no fork storm.
        std::string reason =
            w->start_failure.empty() ? "worker " + how + " before it was ready" : w->start_failure;
        begin_stop(1, "app \"" + w->app->config.name + "\" cannot start: " + reason);
        return;
    }
    try {
        spawn_worker(*w->app, w->slot);
        core::log_info("replacing {} in slot {}", w->name, w->slot);
    } catch (const core::Error& e) {
        core::log_error("cannot replace {}: {}", w->name, e.what());
    }
}

void Master::begin_stop(int exit_code, const std::string& why) {
    if (stopping_) return;
    stopping_ = true;
    exit_code_ = exit_code;
    int deadline = 0;
    for (auto& app : apps_) deadline = std::max(deadline, app->config.drain_timeout_ms);
    core::log_line(exit_code == 0 ? core::LogLevel::info : core::LogLevel::error,
                   fmt::format("stopping ({}): draining {} worker(s), deadline {} ms", why,
                               workers_.size(), deadline));
    for (auto& app : apps_) app->listen.reset();
    for (auto& [pid, w] : workers_) {
        w->state = WorkerState::draining;
        if (!w->channel->send({{"type", "drain"},
                               {"close_idle", true},
                               {"deadline_ms", w->app->config.drain_timeout_ms}}))
            (void)kill(pid, SIGTERM);  // no channel: the worker drains on TERM as well
    }
    // The workers keep their own deadline; ours is the backstop for one that is stuck.
    loop_.add_timer(std::chrono::milliseconds(deadline + 1000), [this] {
        if (workers_.empty()) return;
        core::log_error("drain deadline passed: killing {} worker(s)", workers_.size());
        for (auto& [pid, w] : workers_) (void)kill(pid, SIGKILL);
    });
    if (workers_.empty()) loop_.stop();
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
    loop_.stop();
}

}  // namespace herd::master
