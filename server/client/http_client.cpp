// The HTTP client's exchanges: starting one, its timers, waiting for a connection, and how
// it ends (complete, failed, cancelled); see http_client.hpp. Connections are in
// http_connection.cpp.
#include "client/http_client.hpp"

#include <arpa/inet.h>

#include <optional>

#include "client/http_client_impl.hpp"

namespace herd::client {

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

}  // namespace

namespace detail {

bool idempotent(std::string_view method) {
    for (std::string_view m : {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
        if (method == m) return true;
    return false;
}

std::string errno_name(int e) {
    const char* name = strerrordesc_np(e);
    return name != nullptr ? name : "error " + std::to_string(e);
}

}  // namespace detail

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
