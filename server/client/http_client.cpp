// The HTTP client's exchanges, connections and pools; see http_client.hpp.
#include "client/http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

namespace herd::client {

using Clock = core::EventLoop::Clock;
using std::chrono::milliseconds;

struct HttpClient::Origin {
    std::string key;  // "host:port"
    std::map<Conn*, std::unique_ptr<Conn>> conns;
    std::vector<Conn*> idle;  // most recently used last
    std::deque<Id> waiting;
};

struct HttpClient::Conn {
    Origin* origin = nullptr;
    int fd = -1;
    enum class State { resolving, connecting, busy, idle } state = State::resolving;
    std::vector<sockaddr_storage> addresses;
    std::size_t next_address = 0;
    std::string last_error;  // of the previous address tried
    Exchange* x = nullptr;   // the exchange it serves (resolving, connecting, busy)
    core::EventLoop::TimerId idle_timer = 0;
    std::uint64_t resolve_id = 0;
    std::uint32_t watched = 0;  // the events the loop watches for
};

struct HttpClient::Exchange final : ResponseParser::Sink {
    Id id = 0;
    HttpRequest request;
    Url url;
    HttpHandlers handlers;
    Origin* origin = nullptr;
    Conn* conn = nullptr;
    std::string out;  // the request's bytes
    std::size_t written = 0;
    std::unique_ptr<ResponseParser> parser;
    HttpResponse response;
    std::size_t body_bytes = 0;
    std::size_t max_body = 0;
    Clock::time_point started, deadline;
    core::EventLoop::TimerId phase_timer = 0, total_timer = 0;
    bool waiting = false;  // in its origin's queue
    bool reused = false;   // sent on a pooled connection
    bool retried = false;  // already sent again after a pooled connection failed
    bool sent = false;     // every byte of the request written
    bool ended = false;    // finished or cancelled: nothing more happens to it
    bool complete_seen = false;
    bool too_large = false;

    explicit Exchange(Id i) : id(i) {}
    std::string what() const { return request.method + " " + request.url; }

    void on_head(ResponseHead&& head) override {
        if (ended) return;
        response.status = head.status;
        response.reason = std::move(head.reason);
        response.headers = std::move(head.headers);
        if (handlers.head) handlers.head(response);
    }
    void on_body(std::string_view piece) override {
        if (ended || too_large) return;
        body_bytes += piece.size();
        if (body_bytes > max_body) {
            too_large = true;
            return;
        }
        if (handlers.head) {
            if (handlers.body) handlers.body(piece);
        } else {
            response.body.append(piece);
        }
    }
    void on_complete() override { complete_seen = true; }
};

namespace {

bool token(std::string_view s) {
    static constexpr std::string_view extra = "!#$%&'*+-.^_`|~";
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) ||
               extra.find(c) != std::string_view::npos;
    });
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

// Safe to send again when a pooled connection turned out to be closed (RFC 9110 9.2.2).
bool idempotent(std::string_view method) {
    for (std::string_view m : {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
        if (method == m) return true;
    return false;
}

std::string encode(const HttpRequest& r, const Url& u) {
    if (!token(r.method))
        throw ClientError(ErrorKind::invalid, "invalid method \"" + r.method.substr(0, 40) + "\"");
    std::string out = r.method + " " + u.target + " HTTP/1.1\r\nHost: " + u.host_header + "\r\n";
    for (const auto& [name, value] : r.headers) {
        if (!token(name))
            throw ClientError(ErrorKind::invalid,
                              "invalid header name \"" + name.substr(0, 60) + "\"");
        for (std::string_view ours : {"host", "content-length", "transfer-encoding", "connection"})
            if (iequals(name, ours))
                throw ClientError(
                    ErrorKind::invalid,
                    "header \"" + name + "\" is set by herd's client, not the caller");
        if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
            throw ClientError(ErrorKind::invalid,
                              "header \"" + name + "\" has a line break or NUL in its value");
        out += name + ": " + value + "\r\n";
    }
    if (!r.body.empty() || r.method == "POST" || r.method == "PUT" || r.method == "PATCH")
        out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    out += "\r\n";
    out += r.body;
    return out;
}

std::string errno_name(int e) {
    const char* name = strerrordesc_np(e);
    return name != nullptr ? name : "error " + std::to_string(e);
}

}  // namespace

std::string_view HttpResponse::header(std::string_view name) const {
    for (const auto& [n, v] : headers)
        if (iequals(n, name)) return v;
    return {};
}

HttpClient::HttpClient(core::EventLoop& loop, Options options)
    : loop_(loop), options_(options), resolver_(loop, options.resolver) {}

HttpClient::~HttpClient() {
    destroying_ = true;
    for (auto& [id, x] : exchanges_) {
        if (x->phase_timer != 0) loop_.cancel_timer(x->phase_timer);
        if (x->total_timer != 0) loop_.cancel_timer(x->total_timer);
    }
    for (auto& [key, o] : origins_)
        for (auto& [raw, c] : o->conns) {
            if (c->idle_timer != 0) loop_.cancel_timer(c->idle_timer);
            if (c->fd >= 0) {
                loop_.remove(c->fd);
                ::close(c->fd);
            }
        }
    *alive_ = false;
}

core::ClientStats HttpClient::stats() const {
    core::ClientStats s;
    s.requests = counts_.requests;
    s.responses = responses_;
    for (const auto& [kind, n] : counts_.errors) s.errors[error_kind_name(kind)] = n;
    Pool p = pool();
    s.open = p.open;
    s.idle = p.idle;
    s.waiting = p.waiting;
    return s;
}

HttpClient::Pool HttpClient::pool() const {
    Pool p;
    for (const auto& [key, o] : origins_) {
        p.open += o->conns.size();
        p.idle += o->idle.size();
        p.waiting += o->waiting.size();
    }
    return p;
}

HttpClient::Id HttpClient::fetch(HttpRequest request, HttpHandlers handlers) {
    auto owned = std::make_unique<Exchange>(next_id_++);
    Exchange& x = *owned;
    exchanges_[x.id] = std::move(owned);
    ++counts_.requests;
    x.request = std::move(request);
    x.handlers = std::move(handlers);
    x.started = loop_.cached_now();
    x.max_body = x.request.max_response_bytes != 0 ? x.request.max_response_bytes
                                                   : options_.max_response_bytes;
    Id id = x.id;
    try {
        x.url = parse_url(x.request.url);
        x.out = encode(x.request, x.url);
    } catch (const ClientError& e) {
        fail(x, e.kind(), e.what());
        return id;
    }
    x.parser = std::make_unique<ResponseParser>(x);
    if (x.request.method == "HEAD") x.parser->no_body();
    start(x);
    return id;
}

milliseconds HttpClient::left(const Exchange& x, milliseconds limit) const {
    auto now = loop_.cached_now();
    if (x.deadline <= now) return milliseconds(0);
    return std::min(limit, std::chrono::duration_cast<milliseconds>(x.deadline - now));
}

void HttpClient::start(Exchange& x) {
    milliseconds total =
        x.request.total_timeout.count() > 0 ? x.request.total_timeout : options_.total_timeout;
    x.deadline = std::min(x.started + total, x.request.deadline);
    bool callers = x.request.deadline < x.started + total;
    if (x.deadline <= loop_.cached_now()) {
        fail(x, ErrorKind::timeout, "its request's deadline has passed already");
        return;
    }
    std::string why = callers ? "no complete response before its request's deadline"
                              : "no complete response within " + std::to_string(total.count()) +
                                    " ms (total timeout)";
    x.total_timer = loop_.add_timer_at(x.deadline, [this, id = x.id, why] {
        auto it = exchanges_.find(id);
        if (it == exchanges_.end()) return;
        it->second->total_timer = 0;
        fail(*it->second, ErrorKind::timeout, why);
    });
    acquire(x);
}

void HttpClient::arm(Exchange& x, milliseconds limit, const std::string& what) {
    if (x.phase_timer != 0) loop_.cancel_timer(x.phase_timer);
    x.phase_timer = 0;
    // Cut by the total timeout or the caller's deadline: that timer fires first, and says so.
    if (left(x, limit) < limit) return;
    std::string why = what + " within " + std::to_string(limit.count()) + " ms";
    x.phase_timer = loop_.add_timer(limit, [this, id = x.id, why] {
        auto it = exchanges_.find(id);
        if (it == exchanges_.end()) return;
        it->second->phase_timer = 0;
        fail(*it->second, ErrorKind::timeout, why);
    });
}

void HttpClient::acquire(Exchange& x) {
    std::string key = x.url.origin();
    auto& slot = origins_[key];
    if (!slot) {
        slot = std::make_unique<Origin>();
        slot->key = key;
    }
    Origin& o = *slot;
    x.origin = &o;
    if (!o.idle.empty()) {
        Conn* c = o.idle.back();
        o.idle.pop_back();
        ++counts_.reused;
        x.reused = true;
        attach(x, *c);
        return;
    }
    if (o.conns.size() < options_.max_connections) {
        open_conn(x);
        return;
    }
    if (o.waiting.size() >= options_.max_waiting) {
        fail(
            x, ErrorKind::overloaded,
            std::to_string(o.waiting.size()) + " requests already wait for a connection to " + key);
        return;
    }
    x.waiting = true;
    o.waiting.push_back(x.id);
}

void HttpClient::open_conn(Exchange& x) {
    Origin& o = *x.origin;
    auto owned = std::make_unique<Conn>();
    Conn& c = *owned;
    o.conns[&c] = std::move(owned);
    c.origin = &o;
    c.x = &x;
    x.conn = &c;
    x.reused = false;
    milliseconds limit = x.request.connect_timeout.count() > 0 ? x.request.connect_timeout
                                                               : options_.connect_timeout;
    arm(x, limit, "not connected to " + o.key);
    if (x.url.ip_literal) {
        sockaddr_storage s{};
        if (x.url.host.find(':') != std::string::npos) {
            auto* a = reinterpret_cast<sockaddr_in6*>(&s);
            a->sin6_family = AF_INET6;
            a->sin6_port = htons(x.url.port);
            inet_pton(AF_INET6, x.url.host.c_str(), &a->sin6_addr);
        } else {
            auto* a = reinterpret_cast<sockaddr_in*>(&s);
            a->sin_family = AF_INET;
            a->sin_port = htons(x.url.port);
            inet_pton(AF_INET, x.url.host.c_str(), &a->sin_addr);
        }
        c.addresses.push_back(s);
        connect_next(c);
        return;
    }
    c.state = Conn::State::resolving;
    c.resolve_id =
        resolver_.resolve(x.url.host, x.url.port,
                          [this, &c](std::vector<sockaddr_storage> addresses, std::string error) {
                              c.resolve_id = 0;
                              if (c.x == nullptr) return;
                              if (addresses.empty()) {
                                  fail(*c.x, ErrorKind::resolve, error);
                                  return;
                              }
                              c.addresses = std::move(addresses);
                              connect_next(c);
                          });
}

void HttpClient::connect_next(Conn& c) {
    while (c.next_address < c.addresses.size()) {
        const sockaddr_storage& s = c.addresses[c.next_address++];
        socklen_t len = s.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
        int fd = ::socket(s.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            c.last_error = "socket(): " + errno_name(errno);
            continue;
        }
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&s), len) < 0 && errno != EINPROGRESS) {
            c.last_error = errno_name(errno);
            ::close(fd);
            continue;
        }
        c.fd = fd;
        c.state = Conn::State::connecting;
        c.watched = EPOLLOUT;
        ++counts_.connections_opened;
        loop_.add(fd, EPOLLOUT, [this, &c](std::uint32_t events) { on_conn_event(c, events); });
        return;
    }
    if (c.x != nullptr)
        fail(*c.x, ErrorKind::connect,
             "cannot connect to " + c.origin->key +
                 (c.last_error.empty() ? "" : ": " + c.last_error));
}

void HttpClient::on_conn_event(Conn& c, std::uint32_t events) {
    switch (c.state) {
        case Conn::State::resolving:
            return;
        case Conn::State::connecting: {
            int error = 0;
            socklen_t len = sizeof error;
            if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0) error = errno;
            if (error != 0) {
                c.last_error = errno_name(error);
                loop_.remove(c.fd);
                ::close(c.fd);
                c.fd = -1;
                connect_next(c);
                return;
            }
            on_connected(c);
            return;
        }
        case Conn::State::idle:
            // The server closed a pooled connection (or sent something unasked): it goes.
            close_conn(c);
            return;
        case Conn::State::busy:
            if ((events & EPOLLOUT) != 0 && c.x != nullptr && !c.x->sent) send_some(c);
            if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0 && c.state == Conn::State::busy)
                read_some(c);
            return;
    }
}

void HttpClient::on_connected(Conn& c) {
    c.state = Conn::State::busy;
    if (c.x != nullptr && c.x->phase_timer != 0) {
        loop_.cancel_timer(c.x->phase_timer);
        c.x->phase_timer = 0;
    }
    send_some(c);
}

void HttpClient::attach(Exchange& x, Conn& c) {
    if (c.idle_timer != 0) {
        loop_.cancel_timer(c.idle_timer);
        c.idle_timer = 0;
    }
    c.x = &x;
    x.conn = &c;
    c.state = Conn::State::busy;
    send_some(c);
}

void HttpClient::send_some(Conn& c) {
    Exchange& x = *c.x;
    while (x.written < x.out.size()) {
        ssize_t n = ::send(c.fd, x.out.data() + x.written, x.out.size() - x.written, MSG_NOSIGNAL);
        if (n > 0) {
            x.written += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c.watched != (EPOLLIN | EPOLLOUT)) {
                c.watched = EPOLLIN | EPOLLOUT;
                loop_.modify(c.fd, c.watched);
            }
            return;
        }
        int e = errno;
        if (x.reused && !x.retried && idempotent(x.request.method)) {
            // The pooled connection was closed by the server meanwhile: once more, fresh.
            x.retried = true;
            x.conn = nullptr;
            c.x = nullptr;
            close_conn(c);
            x.written = 0;
            open_conn(x);
            return;
        }
        fail(x, ErrorKind::connect, "sending to " + c.origin->key + ": " + errno_name(e));
        return;
    }
    x.sent = true;
    if (c.watched != EPOLLIN) {
        c.watched = EPOLLIN;
        loop_.modify(c.fd, c.watched);
    }
    milliseconds limit = x.request.first_byte_timeout.count() > 0 ? x.request.first_byte_timeout
                                                                  : options_.first_byte_timeout;
    arm(x, limit, "no response from " + c.origin->key);
}

void HttpClient::read_some(Conn& c) {
    char buffer[64 * 1024];
    for (int round = 0; round < 8 && c.x != nullptr; ++round) {
        Exchange& x = *c.x;
        ssize_t n = ::recv(c.fd, buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n > 0) {
            bool first = !x.parser->started();
            bool ok = x.parser->feed(std::string_view(buffer, static_cast<std::size_t>(n)));
            if (x.ended) return;  // a handler cancelled it
            if (first && x.phase_timer != 0) {
                loop_.cancel_timer(x.phase_timer);
                x.phase_timer = 0;
            }
            if (x.too_large) {
                fail(x, ErrorKind::too_large,
                     "the response's body is larger than " + std::to_string(x.max_body) + " bytes");
                return;
            }
            if (!ok) {
                fail(x, ErrorKind::protocol, c.origin->key + " answered: " + x.parser->error());
                return;
            }
            if (x.complete_seen) {
                complete(x);
                return;
            }
            continue;
        }
        // End of stream (or reset): the response ends here, complete or not.
        int e = n < 0 ? errno : 0;
        if (!x.parser->started() && x.reused && !x.retried && idempotent(x.request.method)) {
            x.retried = true;
            x.conn = nullptr;
            c.x = nullptr;
            close_conn(c);
            x.written = 0;
            x.sent = false;
            open_conn(x);
            return;
        }
        bool ok = e == 0 && x.parser->finish();
        if (x.ended) return;
        if (ok && x.complete_seen) {
            complete(x);
            return;
        }
        fail(x, ErrorKind::closed,
             c.origin->key + " closed the connection" + (e != 0 ? " (" + errno_name(e) + ")" : "") +
                 ": " +
                 (x.parser->error().empty() ? "the response was not complete" : x.parser->error()));
        return;
    }
}

void HttpClient::complete(Exchange& x) {
    Conn* c = x.conn;
    bool reusable = x.parser->keep_alive() && x.sent;
    x.conn = nullptr;
    ++counts_.responses;
    responses_.record(x.response.status,
                      std::chrono::duration<double>(loop_.cached_now() - x.started).count());
    finish(x, nullptr);
    if (c != nullptr) {
        c->x = nullptr;
        release(*c, reusable);
    }
}

void HttpClient::release(Conn& c, bool reusable) {
    if (!reusable || destroying_) {
        close_conn(c);
        return;
    }
    c.state = Conn::State::idle;
    if (c.watched != EPOLLIN) {
        c.watched = EPOLLIN;
        loop_.modify(c.fd, c.watched);
    }
    c.idle_timer = loop_.add_timer(options_.idle_timeout, [this, &c] {
        c.idle_timer = 0;
        close_conn(c);
    });
    c.origin->idle.push_back(&c);
    pump(*c.origin);
}

void HttpClient::close_conn(Conn& c) {
    Origin& o = *c.origin;
    if (c.resolve_id != 0) {
        resolver_.cancel(c.resolve_id);
        c.resolve_id = 0;
    }
    if (c.idle_timer != 0) {
        loop_.cancel_timer(c.idle_timer);
        c.idle_timer = 0;
    }
    if (c.fd >= 0) {
        loop_.remove(c.fd);
        ::close(c.fd);
        c.fd = -1;
    }
    o.idle.erase(std::remove(o.idle.begin(), o.idle.end(), &c), o.idle.end());
    auto it = o.conns.find(&c);
    if (it != o.conns.end()) {
        // After this iteration: its own event handler may be what called us.
        loop_.defer([gone = std::shared_ptr<Conn>(std::move(it->second))] {});
        o.conns.erase(it);
    }
    if (!destroying_) pump(o);
}

void HttpClient::pump(Origin& o) {
    while (!o.waiting.empty()) {
        if (o.idle.empty() && o.conns.size() >= options_.max_connections) return;
        Id id = o.waiting.front();
        o.waiting.pop_front();
        auto it = exchanges_.find(id);
        if (it == exchanges_.end()) continue;
        Exchange& x = *it->second;
        x.waiting = false;
        if (!o.idle.empty()) {
            Conn* c = o.idle.back();
            o.idle.pop_back();
            ++counts_.reused;
            x.reused = true;
            attach(x, *c);
        } else {
            open_conn(x);
        }
    }
}

void HttpClient::fail(Exchange& x, ErrorKind kind, const std::string& why) {
    if (x.ended) return;
    ++counts_.errors[kind];
    if (Conn* c = x.conn) {
        // A connection whose exchange failed is never pooled: its state is unknown.
        x.conn = nullptr;
        c->x = nullptr;
        close_conn(*c);
    }
    ClientError error(kind, x.what() + ": " + why);
    finish(x, &error);
}

void HttpClient::finish(Exchange& x, const ClientError* error) {
    x.ended = true;
    if (x.phase_timer != 0) loop_.cancel_timer(x.phase_timer);
    if (x.total_timer != 0) loop_.cancel_timer(x.total_timer);
    x.phase_timer = x.total_timer = 0;
    if (x.waiting && x.origin != nullptr) {
        auto& q = x.origin->waiting;
        q.erase(std::remove(q.begin(), q.end(), x.id), q.end());
    }
    Id id = x.id;
    auto done = std::move(x.handlers.done);
    HttpResponse response = std::move(x.response);
    std::optional<ClientError> copy;
    if (error != nullptr) copy.emplace(*error);
    auto it = exchanges_.find(id);
    if (it != exchanges_.end()) {
        loop_.defer([gone = std::shared_ptr<Exchange>(std::move(it->second))] {});
        exchanges_.erase(it);
    }
    if (!done) return;
    // Never inside fetch() or a handler: in the loop, unless cancelled first.
    finishing_.insert(id);
    loop_.defer([this, alive = std::weak_ptr<bool>(alive_), id, done = std::move(done),
                 response = std::move(response), copy = std::move(copy)]() mutable {
        auto still = alive.lock();
        if (!still || !*still || finishing_.erase(id) == 0) return;
        done(std::move(response), copy ? &*copy : nullptr);
    });
}

bool HttpClient::cancel(Id id) {
    if (finishing_.erase(id) != 0) return true;
    auto it = exchanges_.find(id);
    if (it == exchanges_.end()) return false;
    Exchange& x = *it->second;
    x.handlers = HttpHandlers();  // nothing more is called
    if (Conn* c = x.conn) {
        x.conn = nullptr;
        c->x = nullptr;
        close_conn(*c);
    }
    finish(x, nullptr);
    return true;
}

}  // namespace herd::client
