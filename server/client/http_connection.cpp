// The HTTP client's connections: connecting (each address in turn), writing a request,
// reading its response, going back to the pool or closing, and handing pooled connections to
// waiting exchanges; see http_client.hpp.
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

#include "client/http_client_impl.hpp"

namespace herd::client {

using detail::errno_name;
using detail::idempotent;

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

}  // namespace herd::client
