// The test side of one Connection, shared by tests/unit/connection_fixture.hpp (for
// connection_test.cpp and connection_failure_test.cpp) and tests/fuzz/fuzz_connection.cpp: a
// fake worker (ConnectionHost) that keeps and frees connections as Worker does, plugins built
// in-process (MountedPlugin without a library), a client on the other end of a socketpair, and
// a reader of the HTTP/1.1 responses it gets.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <herd/plugin.hpp>

#include "core/config.hpp"
#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"
#include "worker/connection.hpp"
#include "worker/graveyard.hpp"
#include "worker/plugin_host.hpp"
#include "worker/plugin_loop.hpp"
#include "worker/ws_session.hpp"

namespace herd::conn_test {

using Clock = core::EventLoop::Clock;

// HERD_TIMEOUT_SCALE (default 1) stretches every wait and timeout, for slow or instrumented
// builds.
inline double timeout_scale() {
    const char* text = std::getenv("HERD_TIMEOUT_SCALE");
    double scale = text != nullptr ? std::atof(text) : 1.0;
    return scale > 0 ? scale : 1.0;
}
inline std::chrono::milliseconds scaled(int ms) {
    return std::chrono::milliseconds(static_cast<long>(ms * timeout_scale()));
}

// Runs the loop until pred() holds or `limit` has passed; each wait is short and bounded.
template <class Pred>
bool run_until(core::EventLoop& loop, Pred pred, std::chrono::milliseconds limit) {
    auto end = Clock::now() + limit;
    while (!pred()) {
        if (Clock::now() >= end) return false;
        loop.run_once(2);
    }
    return true;
}

// ---- Plugins built into the test

// A plugin whose respond() is whatever the test sets.
class TestPlugin final : public herd::Plugin {
  public:
    std::function<void(herd::Responder)> handler;
    void respond(herd::Responder r) override {
        if (!handler) throw std::logic_error("TestPlugin: no handler set");
        handler(std::move(r));
    }
};

// A MountedPlugin as PluginHost would make it, without a library: the object, its PluginLoop
// over the test's core loop, and a FailureHandler that records.
struct PluginSlot {
    std::vector<std::string> failures;
    core::FailureHandler failed;
    worker::MountedPlugin mounted;
    TestPlugin* plugin = nullptr;

    PluginSlot(core::EventLoop& loop, std::string mount) {
        failed = [this](const std::string& description) { failures.push_back(description); };
        mounted.mount = std::move(mount);
        mounted.path = "(built into the test)";
        mounted.who = "plugin \"" + mounted.mount + "\" (test)";
        mounted.failed = &failed;
        mounted.loop = std::make_unique<worker::PluginLoop>(loop, nullptr, mounted.who, &failed);
        auto object = std::make_unique<TestPlugin>();
        plugin = object.get();
        mounted.plugin = std::move(object);
        mounted.started = true;
    }
    PluginSlot(const PluginSlot&) = delete;
    PluginSlot& operator=(const PluginSlot&) = delete;

    worker::PluginLoop& loop() { return *mounted.loop; }
    bool loop_empty() const {
        auto c = mounted.loop->counts();
        return c.timers == 0 && c.watches == 0 && c.posts == 0 && c.jobs == 0 && c.tasks == 0;
    }
};

// ---- The fake worker

class FakeHost final : public worker::ConnectionHost, public worker::WsHost {
  public:
    struct Done {
        std::string method;
        std::string target;
        int status = 0;
        std::size_t bytes = 0;
    };

    explicit FakeHost(core::EventLoop& loop) : loop_(loop), buffer_(16 << 10) {
        busy_word_ = &busy_word;
        // As in a worker (spawn.cpp): a write to a client that has gone fails with EPIPE.
        signal(SIGPIPE, SIG_IGN);
        config.request_timeout_ms = 0;  // tests that want a deadline set one
    }
    FakeHost(const FakeHost&) = delete;
    FakeHost& operator=(const FakeHost&) = delete;
    ~FakeHost() {
        open_.clear();
        orphans_.clear();
        released_.clear();
        websockets_.clear();
        dead_websockets_.clear();
    }

    core::AppConfig config;
    http::HttpLimits http_limits;
    // What the worker sets when it retires or drains (ConnectionHost's fields).
    void set_close_responses(bool on) { responses_close_ = on; }
    void set_close_idle(bool on) { closing_idle_ = on; }
    std::size_t started = 0;
    std::vector<Done> done;
    std::size_t lingering = 0;
    std::size_t closed = 0;
    std::size_t closed_held = 0;
    std::size_t unheld = 0;
    std::size_t freed = 0;
    // The load board's word as the worker shares it: 1 idle, 2 busy (inside a plugin call).
    std::atomic<std::uint32_t> busy_word{1};

    void mount(worker::MountedPlugin& m) { plugins_.push_back(&m); }

    // A connection on fd (non-blocking), started as Worker::adopt does.
    worker::Connection& open(core::UniqueFd fd) {
        auto c = std::make_unique<worker::Connection>(*this, std::move(fd));
        worker::Connection* raw = c.get();
        open_.push_back(std::move(c));
        raw->start();
        raw->read_now();
        return *raw;
    }
    // Whether the object at c has not been freed (compares addresses only).
    bool alive(const worker::Connection* c) const {
        auto has = [c](const auto& list) {
            return std::any_of(list.begin(), list.end(),
                               [c](const auto& p) { return p.get() == c; });
        };
        return has(open_) || has(released_) || orphans_.contains(c);
    }
    bool is_orphan(const worker::Connection* c) const { return orphans_.contains(c); }
    std::size_t live_count() const { return open_.size() + orphans_.size() + released_.size(); }
    // What the worker does as it leaves (close_connections): abort each open connection.
    void abort_all(const std::string& why) {
        std::vector<worker::Connection*> list;
        for (const auto& c : open_) list.push_back(c.get());
        for (worker::Connection* c : list) c->abort(why);
    }

    // Then what Worker::close_connections does next: every connection object is freed, those
    // a plugin still holds included.
    void free_all() {
        freed += live_count();
        open_.clear();
        orphans_.clear();
        released_.clear();
    }

    // WebSockets, as the worker keeps them (open_websocket); off unless the test turns them on.
    bool serve_websockets = false;
    std::size_t ws_open() const {
        std::size_t n = 0;
        for (const auto& [raw, s] : websockets_)
            n += s->state() != worker::WsSession::State::closed;
        return n;
    }
    std::size_t ws_alive() const { return websockets_.size(); }

    // ConnectionHost
    core::EventLoop& loop() override { return loop_; }
    const core::AppConfig& app() const override { return config; }
    const http::HttpLimits& limits() const override { return http_limits; }
    worker::MountedPlugin* route(std::string_view path) override {
        worker::MountedPlugin* best = nullptr;
        for (worker::MountedPlugin* m : plugins_)
            if (worker::mount_matches(m->mount, path) &&
                (best == nullptr || m->mount.size() > best->mount.size()))
                best = m;
        return best;
    }
    char* read_buffer() override { return buffer_.data(); }
    std::size_t read_buffer_size() const override { return buffer_.size(); }
    void request_started() override { ++started; }
    void request_done(const Request& request, int status, std::size_t bytes, Clock::time_point,
                      worker::Connection&) override {
        done.push_back(
            Done{std::string(request.method()), std::string(request.target()), status, bytes});
    }
    std::chrono::milliseconds drain_idle_grace() const override { return scaled(10); }
    void connection_lingering() override { ++lingering; }
    void connection_closed(worker::Connection& c, int, bool, bool held) override {
        ++closed;
        auto it =
            std::find_if(open_.begin(), open_.end(), [&](const auto& p) { return p.get() == &c; });
        if (it == open_.end()) throw std::logic_error("connection_closed: not an open connection");
        std::unique_ptr<worker::Connection> object = std::move(*it);
        open_.erase(it);
        if (held) {
            ++closed_held;
            orphans_.emplace(&c, std::move(object));
        } else {
            release(std::move(object));
        }
    }
    void connection_unheld(worker::Connection& c) override {
        ++unheld;
        auto it = orphans_.find(&c);
        if (it == orphans_.end()) throw std::logic_error("connection_unheld: not an orphan");
        std::unique_ptr<worker::Connection> object = std::move(it->second);
        orphans_.erase(it);
        release(std::move(object));
    }

    worker::WsSession* open_websocket(worker::MountedPlugin& plugin) override {
        if (!serve_websockets) return nullptr;
        auto s = std::make_unique<worker::WsSession>(*this, plugin, topics_, ++ws_ids_);
        worker::WsSession* raw = s.get();
        websockets_.emplace(raw, std::move(s));
        return raw;
    }
    void connection_upgraded(worker::Connection& c, int, bool held) override {
        auto it =
            std::find_if(open_.begin(), open_.end(), [&](const auto& p) { return p.get() == &c; });
        if (it == open_.end())
            throw std::logic_error("connection_upgraded: not an open connection");
        std::unique_ptr<worker::Connection> object = std::move(*it);
        open_.erase(it);
        if (held)
            orphans_.emplace(&c, std::move(object));
        else
            release(std::move(object));
    }
    // WsHost
    void ws_closed(worker::WsSession& s, bool held) override {
        if (!held) free_websocket(s);
    }
    void ws_unheld(worker::WsSession& s) override {
        if (s.state() == worker::WsSession::State::closed) free_websocket(s);
    }

  private:
    void free_websocket(worker::WsSession& s) {
        auto it = websockets_.find(&s);
        if (it == websockets_.end()) throw std::logic_error("free_websocket: not a session");
        dead_websockets_.bury(std::move(it->second));  // freed in the next iteration
        websockets_.erase(it);
    }

    // Freed in the next iteration, as Worker does: the connection may be on the stack below.
    void release(std::unique_ptr<worker::Connection> c) {
        if (released_.empty())
            loop_.post([this] {
                freed += released_.size();
                released_.clear();
            });
        released_.push_back(std::move(c));
    }

    core::EventLoop& loop_;
    std::vector<char> buffer_;
    std::vector<worker::MountedPlugin*> plugins_;
    std::vector<std::unique_ptr<worker::Connection>> open_;
    std::map<const worker::Connection*, std::unique_ptr<worker::Connection>> orphans_;
    std::vector<std::unique_ptr<worker::Connection>> released_;
    worker::WsTopics topics_;
    std::map<worker::WsSession*, std::unique_ptr<worker::WsSession>> websockets_;
    worker::Graveyard<worker::WsSession> dead_websockets_{loop_};
    std::uint64_t ws_ids_ = 0;
};

// ---- The client and what it reads

struct ParsedResponse {
    std::string status_line;
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    bool chunked = false;
    bool close_delimited = false;

    std::optional<std::string> header(std::string_view name) const {
        for (const auto& [n, v] : headers)
            if (herd::iequals(n, name)) return v;
        return std::nullopt;
    }
};

struct ResponseStream {
    std::vector<ParsedResponse> responses;  // complete ones, in order (1xx not included)
    std::size_t interim = 0;                // 1xx responses
    bool partial = false;                   // the bytes end inside a response
    std::string error;                      // not HTTP/1.1 responses: what is wrong
};

// Reads the responses in data. head_requests[i]: the i-th request was HEAD (its response has
// no body). eof: the connection ended after data (a body without length ends there).
inline ResponseStream parse_responses(std::string_view data, bool eof,
                                      const std::vector<bool>& head_requests) {
    ResponseStream out;
    std::size_t pos = 0;
    auto fail = [&](std::string what) {
        out.error = std::move(what) + " at byte " + std::to_string(pos);
        return out;
    };
    while (pos < data.size()) {
        std::size_t head_end = data.find("\r\n\r\n", pos);
        if (head_end == std::string_view::npos) {
            if (data.substr(pos).size() >= 9 && !data.substr(pos).starts_with("HTTP/1.1 "))
                return fail("a response that does not start with \"HTTP/1.1 \"");
            out.partial = true;
            return out;
        }
        std::string_view head = data.substr(pos, head_end - pos);
        if (!head.starts_with("HTTP/1.1 ") || head.size() < 12)
            return fail("a response that does not start with \"HTTP/1.1 NNN\"");
        ParsedResponse r;
        std::size_t line_end = head.find("\r\n");
        r.status_line = std::string(head.substr(0, line_end));
        r.status = std::atoi(std::string(head.substr(9, 3)).c_str());
        if (r.status < 100 || r.status > 599) return fail("a bad status code");
        while (line_end != std::string_view::npos) {
            std::size_t start = line_end + 2;
            line_end = head.find("\r\n", start);
            std::string_view line =
                head.substr(start, line_end == std::string_view::npos ? std::string_view::npos
                                                                      : line_end - start);
            std::size_t colon = line.find(':');
            if (colon == std::string_view::npos || colon == 0) return fail("a bad header line");
            std::string_view value = line.substr(colon + 1);
            while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
            r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
        }
        std::size_t body = head_end + 4;
        if (r.status < 200) {
            ++out.interim;
            pos = body;
            continue;
        }
        std::size_t index = out.responses.size();
        bool head_only = index < head_requests.size() && head_requests[index];
        auto te = r.header("Transfer-Encoding");
        auto cl = r.header("Content-Length");
        if (head_only || r.status == 204 || r.status == 304) {
            pos = body;
        } else if (te) {
            if (*te != "chunked") return fail("Transfer-Encoding " + *te);
            r.chunked = true;
            std::size_t p = body;
            for (;;) {
                std::size_t eol = data.find("\r\n", p);
                if (eol == std::string_view::npos) {
                    out.partial = true;
                    return out;
                }
                std::string size_text(data.substr(p, eol - p));
                char* end = nullptr;
                unsigned long size = std::strtoul(size_text.c_str(), &end, 16);
                if (size_text.empty() || end != size_text.c_str() + size_text.size())
                    return fail("a bad chunk size \"" + size_text + "\"");
                p = eol + 2;
                if (size == 0) {
                    if (data.size() < p + 2) {
                        out.partial = true;
                        return out;
                    }
                    if (data.substr(p, 2) != "\r\n") return fail("trailers after the last chunk");
                    p += 2;
                    break;
                }
                if (data.size() < p + size + 2) {
                    out.partial = true;
                    return out;
                }
                r.body.append(data.substr(p, size));
                if (data.substr(p + size, 2) != "\r\n") return fail("a chunk without its CRLF");
                p += size + 2;
            }
            pos = p;
        } else if (cl) {
            std::size_t length = std::strtoul(cl->c_str(), nullptr, 10);
            if (data.size() < body + length) {
                out.partial = true;
                return out;
            }
            r.body = std::string(data.substr(body, length));
            pos = body + length;
        } else {
            r.close_delimited = true;
            r.body = std::string(data.substr(body));
            pos = data.size();
            if (!eof) {
                out.partial = true;
                return out;
            }
        }
        out.responses.push_back(std::move(r));
    }
    return out;
}

// Both ends non-blocking: first the server's (for the Connection), then the client's.
inline std::pair<core::UniqueFd, core::UniqueFd> make_socketpair() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        throw std::runtime_error("socketpair() failed");
    return {core::UniqueFd(sv[0]), core::UniqueFd(sv[1])};
}

class Client {
  public:
    Client() = default;
    explicit Client(core::UniqueFd fd) : fd_(std::move(fd)) {}

    // Writes what fits now; returns how much.
    std::size_t send_some(std::string_view bytes) {
        if (!fd_) return 0;
        ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
        return n > 0 ? static_cast<std::size_t>(n) : 0;
    }
    // Writes all of bytes (a request: small enough for the socket buffer).
    void send(std::string_view bytes) {
        if (send_some(bytes) != bytes.size())
            throw std::runtime_error("Client::send: the socket took less than the request");
    }
    // A request; records whether it is HEAD, for reading its response.
    void request(std::string_view text) {
        heads_.push_back(text.starts_with("HEAD "));
        send(text);
    }
    void expect_request(bool head) { heads_.push_back(head); }
    // Reads what has arrived (up to max bytes); returns how much.
    std::size_t pump(std::size_t max = std::size_t(-1)) {
        std::size_t total = 0;
        char buffer[16 << 10];
        while (fd_ && !eof_ && total < max) {
            ssize_t n =
                ::recv(fd_.get(), buffer, std::min(sizeof buffer, max - total), MSG_DONTWAIT);
            if (n > 0) {
                in_.append(buffer, static_cast<std::size_t>(n));
                total += static_cast<std::size_t>(n);
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                if (n < 0) reset_seen_ = true;
                eof_ = true;
            }
            break;
        }
        return total;
    }
    void shutdown_write() {
        if (fd_) (void)::shutdown(fd_.get(), SHUT_WR);  // an already closed peer: nothing to do
    }
    void close() { fd_.reset(); }
    // Closes with SO_LINGER 0; with unread input the peer sees a reset.
    void reset() {
        if (!fd_) return;
        linger l{1, 0};
        (void)setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);  // best effort
        fd_.reset();
    }
    void set_receive_buffer(int bytes) {
        (void)setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
    }

    int fd() const { return fd_.get(); }
    bool open() const { return static_cast<bool>(fd_); }
    bool eof() const { return eof_; }
    bool reset_seen() const { return reset_seen_; }
    const std::string& received() const { return in_; }
    std::size_t requests() const { return heads_.size(); }
    ResponseStream responses() const { return parse_responses(in_, eof_, heads_); }

  private:
    core::UniqueFd fd_;
    std::string in_;
    std::vector<bool> heads_;
    bool eof_ = false;
    bool reset_seen_ = false;
};

}  // namespace herd::conn_test
