// Upgrading herd itself (`herd upgrade`, SIGUSR2): the old master starts the new binary with
// every listen socket, waits until all of its apps are ready (its workers hold: they accept
// nothing yet), then hands over and stops like a graceful stop; the new master then serves.
// Anything that fails before the hand-over changes nothing for clients: the old master has
// served throughout. See master.hpp and README "Upgrading herd".
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "build_info.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "master/describe.hpp"
#include "master/master.hpp"

namespace herd::master {
namespace {

// How long a new master may take from its start to "upgrade.ready": its slowest app's
// start_timeout_ms, and 10 s for the rest (reading the config, the broker's first snapshot).
std::chrono::milliseconds upgrade_deadline(const core::Config& config) {
    int longest = 0;
    for (const core::AppConfig& app : config.apps)
        longest = std::max(longest, app.start_timeout_ms);
    return std::chrono::milliseconds(longest) + std::chrono::seconds(10);
}

double ms_since(core::EventLoop::Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(core::EventLoop::Clock::now() - t).count();
}

}  // namespace

// ---- the old master ----

std::string Master::upgrade_refusal() const {
    if (upgrade_)
        return fmt::format(
            "an upgrade is already in progress: the new master (pid {}, {}) started {:.1f} s ago",
            upgrade_->pid, upgrade_->binary, ms_since(upgrade_->started) / 1000);
    if (taking_over())
        return fmt::format("this master is still taking over from pid {}; upgrade once it has",
                           predecessor_pid_);
    if (stopping()) return "herd is stopping";
    if (reload_) return "a reload is in progress; upgrade once it has finished";
    for (const auto& app : apps_)
        if (!app->retiring.empty())
            return "app \"" + app->config.name +
                   "\" is scaling down (a removed slot's socket is still drained); upgrade once "
                   "it has";
    return {};
}

void Master::begin_upgrade(const std::string& source, std::string binary,
                           ControlServer::Reply reply) {
    auto refuse = [&](const std::string& why) {
        core::log_error("upgrade ({}) refused: {}", source, why);
        if (reply) reply({{"ok", false}, {"error", why}});
    };
    if (std::string why = upgrade_refusal(); !why.empty()) return refuse(why);
    if (binary.empty()) binary = binary_;
    if (binary.empty() || binary.front() != '/')
        return refuse("the new binary must be given as an absolute path (got \"" + binary + "\")");
    if (::access(binary.c_str(), X_OK) != 0)
        return refuse(core::errno_text("the new binary " + binary + " cannot be executed"));
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0)
        return refuse(core::errno_text("socketpair() for the new master"));
    core::UniqueFd ours(pair[0]), theirs(pair[1]);
    pid_t pid = -1;
    try {
        pid = start_new_master(binary, std::move(theirs));
    } catch (const core::Error& e) {
        return refuse(std::string("starting the new binary: ") + e.what());
    }
    UpgradeInProgress& u = upgrade_.emplace();
    u.pid = pid;
    u.binary = binary;
    u.source = source;
    u.started = Clock::now();
    if (reply) u.replies.push_back(std::move(reply));
    u.channel = std::make_unique<core::Channel>(loop_, std::move(ours),
                                                "the new master (pid " + std::to_string(pid) + ")");
    u.channel->start([this](core::Message&& m) { on_upgrade_message(m); },
                     [](const std::string&) {});  // its exit is what counts (reaped)
    auto deadline = upgrade_deadline(config_);
    u.deadline = loop_.add_timer(deadline, [this, pid, deadline] {
        if (!upgrade_ || upgrade_->pid != pid || upgrade_->committed) return;
        upgrade_->deadline = 0;
        (void)kill(pid, SIGKILL);  // its workers, held, die with it (parent-death signal)
        upgrade_->failure = fmt::format(
            "the new master (pid {}) was not ready within {} ms; killed", pid, deadline.count());
    });
    core::log_info("upgrade ({}): started {} as pid {}; serving on until it is ready", source,
                   binary, pid);
    emit("upgrade.started", {{"source", source}, {"binary", binary}, {"pid", pid}});
}

pid_t Master::start_new_master(const std::string& binary, core::UniqueFd channel_end) {
    std::vector<UpgradeSocket> sockets;
    std::vector<int> keep{channel_end.get()};
    for (const auto& app : apps_) {
        const SupervisedApp* a = sup_.app(app->id);
        if (a == nullptr || a->removed || a->provisional) continue;
        std::vector<int> fds = app->strategy->sockets();
        for (std::size_t slot = 0; slot < fds.size(); ++slot) {
            if (fds[slot] < 0) continue;
            sockets.push_back({fds[slot], app->config.name, app->config.listen.text,
                               app->strategy->mode() == balance::Mode::reuseport,
                               static_cast<int>(slot)});
            keep.push_back(fds[slot]);
        }
    }
    int control = control_ ? control_->socket() : -1;
    UpgradeEndpoint metrics{metrics_ ? metrics_->socket() : -1, config_.metrics.text};
    UpgradeEndpoint health{health_ ? health_->socket() : -1, config_.health.text};
    for (int fd : {control, metrics.fd, health.fd})
        if (fd >= 0) keep.push_back(fd);
    int channel = channel_end.get();
    std::string env =
        encode_upgrade_env(getpid(), build::version(), channel, control, metrics, health, sockets);
    std::string notify = notify_.path();
    std::string config = config_.file;
    // Not tied to this process: the new master outlives it.
    return spawn_process(
        keep,
        [&] {
            for (int fd : keep)
                if (int flags = fcntl(fd, F_GETFD); flags >= 0)
                    (void)fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
            setenv(upgrade_env, env.c_str(), 1);
            if (!notify.empty()) setenv("NOTIFY_SOCKET", notify.c_str(), 1);
            execl(binary.c_str(), binary.c_str(), "run", config.c_str(), nullptr);
            std::string why = core::errno_text("execl(" + binary + ")");
            report_upgrade_failure(channel, why);
            _exit(127);
        },
        false);
}

void Master::on_upgrade_message(core::Message& m) {
    if (!upgrade_) return;
    if (m.type() == "upgrade.ready") {
        upgrade_->version = m.body.value("version", std::string("?"));
        if (!upgrade_->committed && upgrade_->failure.empty()) hand_over();
    } else if (m.type() == "upgrade.failed") {
        // It exits by itself; the answer comes when it has (on_new_master_exit), so that the
        // next upgrade finds none in progress.
        upgrade_->failure =
            fmt::format("the new master (pid {}) refused to start: {}", upgrade_->pid,
                        m.body.value("reason", std::string("(no reason given)")));
    } else {
        core::log_warn("the new master (pid {}) sent an unexpected message \"{}\"; ignored",
                       upgrade_->pid, m.type());
    }
}

void Master::upgrade_failed(const std::string& why) {
    if (!upgrade_ || upgrade_->committed || upgrade_->answered) return;
    if (upgrade_->deadline != 0) loop_.cancel_timer(upgrade_->deadline);
    upgrade_->deadline = 0;
    upgrade_->answered = true;
    core::log_error("upgrade ({}) failed: {}; this master serves on, nothing changed",
                    upgrade_->source, why);
    emit("upgrade.failed", {{"pid", upgrade_->pid}, {"error", why}});
    for (auto& reply : upgrade_->replies)
        reply({{"ok", false}, {"error", "upgrade failed, nothing changed: " + why}});
    upgrade_->replies.clear();
}

void Master::on_new_master_exit(int status) {
    if (!upgrade_) return;
    pid_t pid = upgrade_->pid;
    if (upgrade_->committed) {
        core::log_error("the new master (pid {}) {} after it took over", pid,
                        describe_status(status));
        upgrade_.reset();
        return;
    }
    std::string what = fmt::format("the new master (pid {}, {}) {} before it was ready", pid,
                                   upgrade_->binary, describe_status(status));
    upgrade_failed(upgrade_->failure.empty() ? what : upgrade_->failure);
    upgrade_.reset();
}

void Master::hand_over() {
    UpgradeInProgress& u = *upgrade_;
    u.committed = true;
    if (u.deadline != 0) loop_.cancel_timer(u.deadline);
    u.deadline = 0;
    handed_over_ = true;
    handed_to_ = u.pid;
    std::string status = fmt::format("upgraded to herd {} (pid {})", u.version, u.pid);
    // systemd follows the new main process before this one stops (NotifyAccess=main: from
    // now on its notifications count, and this one's exit is not the service's).
    notify_.main_pid(u.pid, status);
    notify_.mute(true);
    if (control_) control_->hand_over();
    if (metrics_) metrics_->stop_accepting();
    if (health_) health_->stop_accepting();
    for (auto& app : apps_)
        if (int fd = app->strategy->master_socket(); fd >= 0) app->acceptors.erase(fd);
    u.channel->send({{"type", "upgrade.commit"}});
    double ms = ms_since(u.started);
    core::log_info(
        "upgrade ({}): herd {} (pid {}) ready after {:.0f} ms; handing over and stopping", u.source,
        u.version, u.pid, ms);
    emit("upgrade.committed", {{"pid", u.pid}, {"version", u.version}, {"ms", ms}});
    begin_stop(0, status, false);
    answer_upgrade_if_done();
}

void Master::answer_upgrade_if_done() {
    // Once every worker here has gone, every request is served by the new master's.
    if (!upgrade_ || !upgrade_->committed || upgrade_->replies.empty() || !workers_.empty()) return;
    nlohmann::json answer = {{"ok", true},
                             {"pid", upgrade_->pid},
                             {"version", upgrade_->version},
                             {"from_pid", getpid()},
                             {"from_version", build::version()},
                             {"ms", ms_since(upgrade_->started)}};
    for (auto& reply : upgrade_->replies) reply(answer);
    upgrade_->replies.clear();
}

void Master::pass_to_new_master(App& app, core::UniqueFd fd) {
    std::vector<core::UniqueFd> fds;
    fds.push_back(std::move(fd));
    if (!upgrade_ || !upgrade_->channel ||
        !upgrade_->channel->send({{"type", "upgrade.conn"}, {"app", app.config.name}},
                                 std::move(fds)))
        core::log_error(
            "app \"{}\": a connection this master still held could not be passed to "
            "the new master (gone); closed",
            app.config.name);
}

// ---- the new master ----

void Master::on_predecessor_message(core::Message& m) {
    if (m.type() == "upgrade.commit") {
        take_over("the old master handed over");
    } else if (m.type() == "upgrade.conn") {
        std::string name = m.body.value("app", std::string());
        App* app = find_app(name);
        for (core::UniqueFd& fd : m.fds) {
            if (app != nullptr)
                place_connection(*app, std::move(fd));
            else
                core::log_error(
                    "the old master passed a connection for app \"{}\", which this "
                    "config does not have; closed",
                    name);
        }
    } else {
        core::log_warn("the old master (pid {}) sent an unexpected message \"{}\"; ignored",
                       predecessor_pid_, m.type());
    }
}

void Master::take_over(const std::string& why) {
    if (took_over_ || stopping()) return;
    took_over_ = true;
    notify_.mute(false);
    notify_.ready(fmt::format("{} app(s) ready; took over from herd {} (pid {})", apps_.size(),
                              predecessor_version_, predecessor_pid_));
    if (control_) control_->start_accepting();
    if (metrics_) metrics_->start_accepting();
    if (health_) health_->start_accepting();
    for (auto& [pid, w] : workers_) w->channel->send({{"type", "serve"}});
    for (auto& app : apps_) {
        watch_master_socket(*app, *app->strategy);
        for (auto& [slot, socket] : app->retiring)
            accept_on(*app, socket.get(),
                      "app \"" + app->config.name + "\" slot " + std::to_string(slot) +
                          " (the old master's, not in this config)");
        flush_pending(*app);
    }
    if (!predecessor_ || predecessor_->closed()) close_inherited_extras();
    core::log_info("took over from herd {} (pid {}): {}; serving", predecessor_version_,
                   predecessor_pid_, why);
}

void Master::close_inherited_extras() {
    if (inherited_extras_.empty()) return;
    for (const auto& [id, slot] : inherited_extras_)
        if (App* app = find_app(id)) close_retired_slot(*app, slot);
    core::log_info(
        "the old master has gone: closed its {} reuseport socket(s) beyond this config's workers",
        inherited_extras_.size());
    inherited_extras_.clear();
}

void Master::upgrade_start_failed(const std::string& why) {
    if (!taking_over() || stopping()) return;
    core::log_error("cannot take over from pid {}: {}; stopping (the old master serves on)",
                    predecessor_pid_, why);
    if (predecessor_ && !predecessor_->closed()) {
        predecessor_->send({{"type", "upgrade.failed"}, {"reason", why}});
        predecessor_->flush();
    }
    begin_stop(1, "the upgrade failed: " + why);
}

}  // namespace herd::master
