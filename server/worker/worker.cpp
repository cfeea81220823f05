// Worker: plugins, ready report, HTTP serving, drain; see worker.hpp.
#include "worker/worker.hpp"

#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <dirent.h>
#include <malloc.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <optional>

#include "core/acceptor.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/socket.hpp"
#include "worker/connection.hpp"
#include "worker/crash_report.hpp"
#include "worker/throw_trace.hpp"
#include "ws/base64.hpp"

namespace herd::worker {
namespace {
constexpr auto accept_pause = std::chrono::milliseconds(100);
}

Worker::Worker(WorkerSpec spec)
    : spec_(std::move(spec)),
      state_(loop_, [this](const std::string& what) { on_plugin_failure(what); }),
      read_buffer_(64 << 10) {
    if (spec_.app.max_requests > 0) {
        // Jitter of up to 10%, so that workers started together do not all retire together.
        std::uint64_t spread = spec_.app.max_requests / 10;
        std::uint64_t seed = static_cast<std::uint64_t>(getpid()) * 2654435761u;
        request_limit_ = spec_.app.max_requests + (spread > 0 ? seed % (spread + 1) : 0);
    }
    limits_.max_body_bytes = spec_.app.max_body_bytes;
    limits_.max_header_bytes = spec_.app.max_header_bytes;
    identity_ = "worker " + spec_.app.name + "/" + std::to_string(spec_.slot);
}

Worker::~Worker() {
    connections_.clear();
    orphans_.clear();
    released_.clear();
    // What plugins hold (WebSockets) is let go before the sessions go.
    plugins_.unload();
    websockets_.clear();
    released_websockets_.clear();
}

int Worker::run() {
    core::set_log_identity(identity_);
    install_crash_handlers(spec_.channel.get(), identity_);
    master_ = std::make_unique<core::Channel>(loop_, std::move(spec_.channel), "master");
    master_->start([this](core::Message&& m) { on_master_message(std::move(m)); },
                   [this](const std::string& reason) {
                       // Orphan rule: without a master nobody supervises us; leave at once.
                       core::log_error("channel to master closed ({}); exiting", reason);
                       finish(exit_master_gone);
                   });
    dispatch_.on("conn", [this](core::Message& m) {
        if (m.fds.size() != 1) {
            core::log_error("\"conn\" message from master with {} descriptors; expected 1",
                            m.fds.size());
            if (m.fds_lost > 0) {
                ++closed_;  // the kernel closed that client: the master must not count it open
                report_load();
            }
            return;
        }
        if (responses_close()) {
            // Too late for us: hand it back so another worker serves it.
            master_->send({{"type", "conn.refused"}}, std::move(m.fds));
            return;
        }
        adopt(std::move(m.fds.front()));
    });
    dispatch_.on("user", [this](core::Message& m) {
        std::string mount = m.body.value("mount", std::string());
        if (!plugins_.deliver(mount, m.body.contains("data") ? m.body["data"] : nlohmann::json(),
                              m.body.value("from", -1)))
            core::log_warn("message for plugin \"{}\", which is not mounted here; ignored", mount);
    });
    dispatch_.on("ws.publish", [this](core::Message& m) {
        // Another worker's Context::publish, relayed by the master.
        const nlohmann::json& b = m.body;
        auto field = [&](const char* name) -> const std::string* {
            auto it = b.find(name);
            return it != b.end() && it->is_string() ? it->get_ptr<const std::string*>() : nullptr;
        };
        const std::string *mount = field("mount"), *topic = field("topic"), *data = field("data");
        auto flag = b.find("binary");
        bool binary = flag != b.end() && flag->is_boolean() && flag->get<bool>();
        if (mount == nullptr || topic == nullptr || data == nullptr) {
            core::log_error("\"ws.publish\" from master without mount, topic or data; ignored");
            return;
        }
        if (!binary) {
            deliver_published(*mount, *topic, *data, false);
            return;
        }
        std::optional<std::string> bytes = ws::base64_decode(*data);
        if (!bytes) {
            core::log_error("\"ws.publish\" from master for \"{}\": data is not base64; ignored",
                            *mount);
            return;
        }
        deliver_published(*mount, *topic, *bytes, true);
    });
    // The new master of an upgrade has taken over: accept from now on (once started).
    dispatch_.on("serve", [this](core::Message&) {
        spec_.hold = false;
        if (started_) start_accepting();
    });
    dispatch_.on("reopen", [this](core::Message&) { access_log_.reopen(); });
    dispatch_.on("state.attach", [this](core::Message& m) {
        // The broker was (re)started: a new channel to it. The snapshot follows on it.
        if (m.fds.size() != 1) {
            core::log_error("\"state.attach\" from master with {} descriptors; expected 1",
                            m.fds.size());
            return;
        }
        state_.attach(std::move(m.fds.front()));
    });
    dispatch_.on("drain", [this](core::Message& m) {
        start_drain(m.body.value("close_idle", false),
                    m.body.value("deadline_ms", spec_.app.drain_timeout_ms));
    });

    // TERM/QUIT sent to a worker directly drain it like the master's "drain" would.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGQUIT);
    if (sigprocmask(SIG_BLOCK, &mask, nullptr) < 0) core::throw_errno("sigprocmask()");
    core::UniqueFd sigfd(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!sigfd) core::throw_errno("signalfd()");
    loop_.add(sigfd.get(), EPOLLIN, [this, fd = sigfd.get()](std::uint32_t) {
        signalfd_siginfo info{};
        while (::read(fd, &info, sizeof info) == sizeof info) {
            core::log_info("signal {}: draining", strsignal(static_cast<int>(info.ssi_signo)));
            start_drain(true, spec_.app.drain_timeout_ms);
        }
    });

    try {
        if (!spec_.app.access_log.empty()) access_log_.open(spec_.app.access_log);
        if (spec_.await_state) {
            // The state before the plugins start: on_start and the first request see it. With
            // the broker down (restarting) the master attaches its successor's channel. The
            // wait is bounded: within half of start_timeout_ms (the master kills a worker not
            // ready by then), and to 1 s when no broker runs now (it may be backing off
            // after crashes, and a retiring worker's slot accepts nothing until we are ready).
            int cap = spec_.broker ? 5000 : 1000;
            if (spec_.broker) state_.attach(std::move(spec_.broker));
            auto limit = std::chrono::milliseconds(std::min(spec_.app.start_timeout_ms / 2, cap));
            auto began = core::EventLoop::now();
            if (!state_.wait_for_snapshot(limit))
                core::log_warn(
                    "no state from the broker after {} ms (limit {} ms, broker {}); starting "
                    "without it (it arrives when the broker can send it)",
                    std::chrono::duration_cast<std::chrono::milliseconds>(core::EventLoop::now() -
                                                                          began)
                        .count(),
                    limit.count(), state_.connected() ? "connected" : "not connected");
            // The master went away (or told us to go) meanwhile: nothing more to start.
            if (loop_.stopped()) return exit_code_;
        }
        pool_ = std::make_unique<BlockingPool>(
            loop_, static_cast<std::size_t>(spec_.app.blocking_threads),
            [](const void* owner, std::uint64_t id, std::exception_ptr error) {
                static_cast<PluginLoop*>(const_cast<void*>(owner))->job_done(id, std::move(error));
            });
        PluginServices services;
        services.loop = &loop_;
        services.pool = pool_.get();
        services.sink = this;
        services.state = &state_;
        services.failed = [this](const std::string& what) { on_plugin_failure(what); };
        services.files = spec_.plugin_files;
        plugins_.load(spec_.app, spec_.slot, std::move(services));
        for (int fd : spec_.plugin_files) (void)::close(fd);  // loaded: mapped, not needed
        spec_.plugin_files.clear();
        plugins_.start();
    } catch (const std::exception& e) {
        core::log_error("cannot start: {}", e.what());
        master_->send({{"type", "fatal"}, {"phase", "start"}, {"reason", e.what()}});
        master_->flush();
        return exit_start_failure;
    }

    master_accepts_ = !spec_.listen;
    rlimit nofile{};
    fd_limit_ = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                    ? static_cast<std::size_t>(nofile.rlim_cur)
                    : 1u << 20;
    started_ = true;
    if (!spec_.hold) start_accepting();
    if (spec_.board != nullptr) busy_word_ = &spec_.board->slot(spec_.slot).state;
    set_busy(false);  // present and idle on the load board
    sweep();
    heartbeat();
    // capacity: how many connections the master may pass us at once. Beyond it the kernel
    // would drop them on the way (MSG_CTRUNC); a reserve stays for what plugins open.
    std::size_t capacity = fd_limit_ > 64 ? fd_limit_ - 32 : fd_limit_ / 2;
    master_->send({{"type", "ready"},
                   {"pid", getpid()},
                   {"slot", spec_.slot},
                   {"generation", spec_.generation},
                   {"capacity", capacity}});
    core::log_debug("ready, {} plugin(s) loaded", plugins_.size());

    // run() clears a stop requested while starting (the master gone during the snapshot
    // wait): honour it instead.
    if (!loop_.stopped()) loop_.run();

    // Every request and coroutine of the plugins ends before any plugin stops; a connection
    // a plugin still holds (a Responder kept somewhere) outlives the plugins, so that what they
    // release on their way out finds it.
    close_connections("the worker is stopping");
    plugins_.stop();
    plugins_.unload();
    orphans_.clear();
    released_.clear();
    websockets_.clear();
    released_websockets_.clear();
    access_log_.flush();
    send_heartbeat();  // the last figures, so that metrics count every request
    core::log_info("stopped after serving {} requests", requests_);
    master_->flush();
    return exit_code_;
}

void Worker::on_master_message(core::Message&& m) {
    dispatch_.dispatch(m, "master");
}

bool Worker::plugin_message(std::string_view mount, const nlohmann::json& message, bool broadcast) {
    return master_ && master_->send({{"type", "user"},
                                     {"to", broadcast ? "app" : "master"},
                                     {"mount", mount},
                                     {"from", spec_.slot},
                                     {"data", message}});
}

bool Worker::ws_publish(std::string_view mount, std::string_view topic, std::string_view data,
                        bool binary) {
    std::string m(mount), t(topic);
    // To the other workers first (send writes at once): they write to their sockets while
    // this one writes to its own.
    bool relayed =
        master_ && master_->send({{"type", "ws.publish"},
                                  {"mount", m},
                                  {"topic", t},
                                  {"binary", binary},
                                  {"data", binary ? ws::base64_encode(data) : std::string(data)}});
    deliver_published(m, t, data, binary);
    return relayed;
}

void Worker::deliver_published(const std::string& mount, const std::string& topic,
                               std::string_view data, bool binary) {
    auto it = ws_topics_.find(mount);
    if (it != ws_topics_.end()) it->second.publish(topic, data, binary);
}

WsSession* Worker::open_websocket(MountedPlugin& plugin) {
    auto topics = ws_topics_.try_emplace(plugin.mount).first;
    auto s = std::make_unique<WsSession>(*this, plugin, topics->second, ++websocket_ids_);
    WsSession* raw = s.get();
    websockets_.emplace(raw, std::move(s));
    return raw;
}

void Worker::connection_upgraded(Connection& c, int fd, bool held) {
    // Still an open connection (open_connections_), now as a WebSocket session.
    auto& slot = connections_.at(static_cast<std::size_t>(fd));
    if (held) {
        orphans_.emplace(&c, std::move(slot));
    } else {
        released_.bury(std::move(slot));
    }
}

void Worker::ws_closed(WsSession& s, bool held) {
    --open_connections_;
    publish_open();
    ++closed_;
    report_load();
    if (!held) release_websocket(s);
    maybe_finish();
}

void Worker::ws_unheld(WsSession& s) {
    if (s.state() == WsSession::State::closed) release_websocket(s);
}

void Worker::release_websocket(WsSession& s) {
    auto it = websockets_.find(&s);
    if (it == websockets_.end()) return;
    released_websockets_.bury(std::move(it->second));
    websockets_.erase(it);
}

bool Worker::accept_gate() {
    if (spec_.board != nullptr && !stepped_back_ &&
        spec_.board->should_yield(spec_.slot, spec_.app.workers)) {
        // Step back for a millisecond so an idle, less loaded sibling takes the next one; at
        // most once in a row, never a stall.
        stepped_back_ = true;
        acceptor_->pause_for(std::chrono::milliseconds(1));
        return false;
    }
    stepped_back_ = false;
    return true;
}

void Worker::adopt(core::UniqueFd fd) {
    // TCP_NODELAY comes from the listening socket (core::listen_tcp).
    auto index = static_cast<std::size_t>(fd.get());
    if (index >= connections_.size()) connections_.resize(index + 256);
    auto c = std::make_unique<Connection>(*this, std::move(fd));
    Connection* raw = c.get();
    connections_[index] = std::move(c);
    ++open_connections_;
    publish_open();
    raw->start();

    // The request has usually arrived with the connection: read it now, not after another
    // epoll_wait.
    raw->read_now();
}

void Worker::report_load() {
    // Only the master that places our connections needs the count; one report per loop
    // iteration however many connections closed in it.
    if (!master_accepts_ || load_report_due_ || !master_) return;
    load_report_due_ = true;
    loop_.defer([this] {
        load_report_due_ = false;
        master_->send({{"type", "load"}, {"closed", closed_}});
    });
}

void Worker::on_plugin_failure(const std::string& description) {
    core::log_error("{}; thrown at:\n{}", description, last_throw_trace());
    retire({{"type", "fatal"}, {"phase", "run"}, {"reason", description}});
}

void Worker::request_done(const Request& request, int status, std::size_t bytes,
                          core::EventLoop::Clock::time_point started, Connection& connection) {
    stats_.record(status, std::chrono::duration<double>(loop_.cached_now() - started).count());
    if (access_log_.enabled()) access_log_.record(connection.peer(), request, status, bytes);
}

void Worker::request_started() {
    ++requests_;
    if (request_limit_ != 0 && requests_ == request_limit_)
        retire({{"type", "retire"},
                {"reason", "max_requests: served " + std::to_string(requests_) + " requests"}});
}

void Worker::retire(const nlohmann::json& report) {
    if (retiring_ || draining_) return;
    retiring_ = true;
    responses_close_ = true;
    busy_word_ = nullptr;  // absent on the board from now on
    if (acceptor_) acceptor_->stop();
    if (spec_.board != nullptr)
        spec_.board->slot(spec_.slot)
            .state.store(static_cast<std::uint32_t>(balance::SlotState::absent),
                         std::memory_order_relaxed);
    master_->send(report);
    core::log_info("retiring ({}): accepting no more connections; {} open",
                   report.value("reason", std::string()), open_connections_);
}

void Worker::publish_open() {
    // Connections closing (answered, waiting for the client's FIN) are no load: counting them
    // made many short connections look like a skew, and skews cost pauses.
    if (spec_.board != nullptr)
        spec_.board->slot(spec_.slot)
            .open.store(static_cast<std::uint32_t>(open_connections_ - closing_connections_),
                        std::memory_order_relaxed);
}

void Worker::connection_lingering() {
    ++closing_connections_;
    publish_open();
}

void Worker::connection_closed(Connection& c, int fd, bool was_lingering, bool held) {
    if (was_lingering) --closing_connections_;
    auto& slot = connections_.at(static_cast<std::size_t>(fd));
    if (held) {
        orphans_.emplace(&c, std::move(slot));
    } else {
        // Freed in the next iteration: the connection may be on the stack below us.
        released_.bury(std::move(slot));
    }
    --open_connections_;
    publish_open();
    ++closed_;
    report_load();
    maybe_finish();
}

void Worker::connection_unheld(Connection& c) {
    auto it = orphans_.find(&c);
    if (it == orphans_.end()) return;
    released_.bury(std::move(it->second));
    orphans_.erase(it);
}

void Worker::close_connections(const std::string& why) {
    for (auto& c : connections_)
        if (c) c->abort(why);
    // Orphans may leave the map as they are let go: walk a copy of the pointers.
    std::vector<Connection*> orphans;
    for (auto& [raw, c] : orphans_) orphans.push_back(raw);
    for (Connection* c : orphans)
        if (orphans_.contains(c)) c->abort(why);
    connections_.clear();
    released_.clear();
    // Sessions may leave the map as they close: walk a copy of the pointers.
    std::vector<WsSession*> sockets;
    for (auto& [raw, s] : websockets_) sockets.push_back(raw);
    for (WsSession* s : sockets)
        if (websockets_.contains(s)) s->abort();
}

void Worker::start_accepting() {
    if (!spec_.listen || acceptor_ || draining_ || retiring_) return;
    // One connection per wake-up, served at once: a worker about to block in a slow
    // handler never sits on other fresh connections, which EPOLLEXCLUSIVE then hands to
    // idle workers. On EMFILE it pauses; in shared mode another worker may take the
    // connection meanwhile.
    core::Acceptor::Options options;
    options.batch = 1;
    options.events = EPOLLIN | EPOLLEXCLUSIVE;
    options.pause = accept_pause;
    options.gate = [this] { return accept_gate(); };
    options.context = [this] { return fmt::format("{} connections open", open_connections_); };
    acceptor_ = std::make_unique<core::Acceptor>(
        loop_, spec_.listen.get(),
        "app \"" + spec_.app.name + "\" on " + core::local_address(spec_.listen.get()),
        [this](core::UniqueFd fd) { adopt(std::move(fd)); }, std::move(options));
    acceptor_->start();
}

void Worker::start_drain(bool close_idle, int deadline_ms) {
    if (draining_) return;
    draining_ = true;
    responses_close_ = closing_idle_ = true;
    busy_word_ = nullptr;
    drain_idle_grace_ = std::chrono::milliseconds(std::clamp(deadline_ms / 4, 10, 1000));
    if (spec_.board != nullptr)
        spec_.board->slot(spec_.slot)
            .state.store(static_cast<std::uint32_t>(balance::SlotState::absent),
                         std::memory_order_relaxed);
    acceptor_.reset();  // before its socket closes
    // Our copy only: the master keeps the socket (and, in reuseport mode, its queue) for the
    // next worker; other workers keep accepting on theirs.
    spec_.listen.reset();
    // The master's reload waits for this: from now on new connections reach other workers.
    master_->send({{"type", "draining"}});
    core::log_info("draining: {} connection(s) open, deadline {} ms", open_connections_,
                   deadline_ms);
    loop_.add_timer(std::chrono::milliseconds(deadline_ms), [this] {
        core::log_warn("drain deadline passed with {} connection(s) open; exiting",
                       open_connections_);
        // Requests still waiting for their plugin get 503 (close_connections, after the loop).
        finish(exit_ok);
    });
    for (std::size_t i = 0; i < connections_.size(); ++i)
        if (connections_[i]) connections_[i]->drain(close_idle);
    // WebSockets get 1001 ("going away") now: the master drains a worker only once its
    // replacement is ready, so the clients reconnect to a worker that serves.
    std::vector<WsSession*> sockets;
    for (auto& [raw, s] : websockets_) sockets.push_back(raw);
    for (WsSession* s : sockets)
        if (websockets_.contains(s)) s->drain();
    maybe_finish();
}

void Worker::heartbeat() {
    // From the event loop itself: a plugin stuck in a handler stops the heartbeats, and the
    // master's watchdog notices. The figures feed status, metrics and least-loaded decisions.
    send_heartbeat();
    int period = std::clamp(spec_.app.watchdog_ms / 4, 50, 1000);
    loop_.add_timer(std::chrono::milliseconds(period), [this] { heartbeat(); });
}

namespace {

// Open descriptors of this process (the test for leaks reads it through the heartbeat).
std::size_t open_descriptors() {
    std::size_t n = 0;
    if (DIR* d = opendir("/proc/self/fd")) {
        while (const dirent* e = readdir(d))
            if (e->d_name[0] != '.') ++n;
        closedir(d);
        if (n > 0) --n;  // the one opendir holds
    }
    return n;
}

}  // namespace

nlohmann::json Worker::async_figures() const {
    std::size_t waiting = 0, streaming = 0;
    auto count = [&](const Connection& c) {
        if (c.state() == Connection::State::waiting) ++waiting;
        if (c.state() == Connection::State::streaming) ++streaming;
    };
    for (const auto& c : connections_)
        if (c) count(*c);
    PluginLoop::Counts loop = plugins_.loop_counts();
    struct mallinfo2 heap = mallinfo2();
    return {{"waiting", waiting},         {"streaming", streaming},
            {"orphans", orphans_.size()}, {"timers", loop.timers},
            {"watches", loop.watches},    {"posts", loop.posts},
            {"jobs", loop.jobs},          {"tasks", loop.tasks},
            {"fds", open_descriptors()},  {"websockets", websockets_.size()},
            {"heap_bytes", heap.uordblks}};
}

void Worker::send_heartbeat() {
    long rss_pages = 0;
    if (FILE* f = std::fopen("/proc/self/statm", "r")) {
        long size = 0;
        if (std::fscanf(f, "%ld %ld", &size, &rss_pages) != 2) rss_pages = 0;
        std::fclose(f);
    }
    nlohmann::json beat = {
        {"type", "heartbeat"},       {"requests", requests_},
        {"open", open_connections_}, {"rss_kb", rss_pages * (sysconf(_SC_PAGESIZE) / 1024)},
        {"stats", stats_.to_json()}, {"state_version", state_.version()},
        {"async", async_figures()}};
    // Its clients' figures, once a plugin has used them.
    if (core::ClientStatsMap clients = plugins_.client_stats(); !clients.empty())
        beat["clients"] = core::to_json(clients);
    master_->send(beat);
}

void Worker::maybe_finish() {
    if (draining_ && open_connections_ == 0) finish(exit_ok);
}

void Worker::finish(int code) {
    exit_code_ = code;
    loop_.stop();
}

void Worker::sweep() {
    auto now = Connection::Clock::now();
    for (auto& c : connections_)
        if (c) c->check_timeouts(now);
    if (!websockets_.empty()) {
        std::vector<WsSession*> sockets;
        sockets.reserve(websockets_.size());
        for (auto& [raw, s] : websockets_) sockets.push_back(raw);
        for (WsSession* s : sockets)
            if (websockets_.contains(s)) s->check_timeouts(now);
    }
    // Timeouts are checked at a quarter of the shortest one: enough resolution, no timer per
    // connection.
    int shortest = std::min(spec_.app.header_timeout_ms, spec_.app.keepalive_timeout_ms);
    int period = std::clamp(shortest / 4, 10, draining_ ? 50 : 1000);
    loop_.add_timer(std::chrono::milliseconds(period), [this] { sweep(); });
}

void worker_main(WorkerSpec spec) {
    int code = 1;
    try {
        Worker worker(std::move(spec));
        code = worker.run();
    } catch (const std::exception& e) {
        core::log_error("worker failed: {}", e.what());
        code = 1;
    }
    // Plugin output written with stdio must not be lost.
    std::fflush(nullptr);
    _exit(code);
}

}  // namespace herd::worker
