// The PostgreSQL client's connections: looking the host up, connecting (PQconnectPoll on the
// loop), sending a query and reading its results, draining a cancelled one, noticing a
// connection the server closed, going back to the pool or closing; see pg_client.hpp.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>

#include <algorithm>

#include "client/pg_client_impl.hpp"

namespace herd::client {

using detail::first_line;
using detail::libpq_reason;

namespace {

void no_notices(void*, const char*) {}

}  // namespace

// Reads that do not block: a connection the server closed meanwhile (a restart) is dropped here
// rather than failing the query sent on it. Twice: the first read may take the server's last
// words (FATAL 57P01), the second its close.
bool PgClient::still_open(Conn& c) {
    for (int i = 0; i < 2; ++i)
        if (PQconsumeInput(c.pg) == 0 || PQstatus(c.pg) != CONNECTION_OK) return false;
    return true;
}

void PgClient::attach(Query& q, Conn& c) {
    if (c.idle_timer != 0) {
        loop_.cancel_timer(c.idle_timer);
        c.idle_timer = 0;
    }
    c.q = &q;
    q.conn = &c;
    c.state = Conn::State::busy;
    std::vector<const char*> values;
    values.reserve(q.query.params.size());
    for (const auto& p : q.query.params) values.push_back(p ? p->c_str() : nullptr);
    if (PQsendQueryParams(c.pg, q.query.sql.c_str(), static_cast<int>(values.size()), nullptr,
                          values.data(), nullptr, nullptr, 0) == 0) {
        broken(c, PQerrorMessage(c.pg));
        return;
    }
    c.flushing = true;
    flush(c);
}

void PgClient::open_conn() {
    auto owned = std::make_unique<Conn>();
    Conn& c = *owned;
    conns_[&c] = std::move(owned);
    c.connect_timer = loop_.add_timer(options_.connect_timeout, [this, &c] {
        c.connect_timer = 0;
        connect_failed(
            c, ErrorKind::timeout,
            "not connected within " + std::to_string(options_.connect_timeout.count()) + " ms", "");
    });
    if (!needs_lookup_) {
        start_connect(c, {});
        return;
    }
    c.state = Conn::State::resolving;
    std::uint16_t port = static_cast<std::uint16_t>(std::stoi(port_));
    c.resolve_id = resolver_.resolve(
        host_, port, [this, &c](std::vector<sockaddr_storage> addresses, std::string error) {
            c.resolve_id = 0;
            if (addresses.empty()) {
                connect_failed(c, ErrorKind::resolve, error, "");
                return;
            }
            // Every address, in c-ares' order: libpq tries each (a host list as long as the
            // hostaddr list, the same name each time, so that messages name the host).
            std::vector<std::string> texts;
            for (const sockaddr_storage& s : addresses) {
                char text[INET6_ADDRSTRLEN] = {};
                const void* a = s.ss_family == AF_INET6
                                    ? static_cast<const void*>(
                                          &reinterpret_cast<const sockaddr_in6*>(&s)->sin6_addr)
                                    : static_cast<const void*>(
                                          &reinterpret_cast<const sockaddr_in*>(&s)->sin_addr);
                if (inet_ntop(s.ss_family, a, text, sizeof text) != nullptr &&
                    std::find(texts.begin(), texts.end(), text) == texts.end())
                    texts.emplace_back(text);
                if (texts.size() == 8) break;
            }
            start_connect(c, texts);
        });
}

void PgClient::start_connect(Conn& c, const std::vector<std::string>& hostaddrs) {
    std::vector<const char*> keys, values;
    for (const auto& [key, value] : params_) {
        if (!hostaddrs.empty() && key == "host") continue;
        keys.push_back(key.c_str());
        values.push_back(value.c_str());
    }
    std::string hosts, addrs;
    for (const auto& a : hostaddrs) {
        hosts += (hosts.empty() ? "" : ",") + host_;
        addrs += (addrs.empty() ? "" : ",") + a;
    }
    if (!hostaddrs.empty()) {
        keys.insert(keys.end(), {"host", "hostaddr"});
        values.insert(values.end(), {hosts.c_str(), addrs.c_str()});
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    c.state = Conn::State::connecting;
    ++counts_.connections_opened;
    c.pg = PQconnectStartParams(keys.data(), values.data(), 0);
    if (c.pg == nullptr) {
        connect_failed(c, ErrorKind::connect, "out of memory", "");
        return;
    }
    (void)PQsetNoticeProcessor(c.pg, no_notices, nullptr);  // not to stderr
    // The SQLSTATE of a refusal (3D000, 28P01) is only in the message, and only when verbose.
    (void)PQsetErrorVerbosity(c.pg, PQERRORS_VERBOSE);
    if (PQstatus(c.pg) == CONNECTION_BAD) {
        std::string sqlstate;
        std::string why = libpq_reason(PQerrorMessage(c.pg), sqlstate);
        connect_failed(c, ErrorKind::connect, why, sqlstate);
        return;
    }
    // As libpq's documentation says: first wait until the socket is writable.
    watch(c, EPOLLOUT);
}

// While connecting, libpq may close its socket and open another (the next address, a retry
// without SSL), maybe with the same number: the loop is told afresh after every step.
void PgClient::watch(Conn& c, std::uint32_t events) {
    if (c.state == Conn::State::connecting || c.fd < 0) {
        if (c.fd >= 0) loop_.remove(c.fd);
        c.fd = PQsocket(c.pg);
        if (c.fd < 0) {
            connect_failed(c, ErrorKind::connect, "libpq has no socket", "");
            return;
        }
        c.watched = events;
        loop_.add(c.fd, events, [this, &c](std::uint32_t ev) { on_conn_event(c, ev); });
        return;
    }
    if (c.watched != events) {
        c.watched = events;
        loop_.modify(c.fd, events);
    }
}

void PgClient::connect_step(Conn& c) {
    switch (PQconnectPoll(c.pg)) {
        case PGRES_POLLING_READING:
            watch(c, EPOLLIN);
            return;
        case PGRES_POLLING_WRITING:
            watch(c, EPOLLOUT);
            return;
        case PGRES_POLLING_FAILED: {
            std::string sqlstate;
            std::string why = libpq_reason(PQerrorMessage(c.pg), sqlstate);
            connect_failed(c, ErrorKind::connect, why, sqlstate);
            return;
        }
        case PGRES_POLLING_OK:
            break;
        default:  // PGRES_POLLING_ACTIVE: unused since libpq 8
            watch(c, EPOLLIN | EPOLLOUT);
            return;
    }
    loop_.cancel_timer(c.connect_timer);
    c.connect_timer = 0;
    (void)PQsetErrorVerbosity(c.pg, PQERRORS_DEFAULT);
    if (PQsetnonblocking(c.pg, 1) != 0) {
        connect_failed(c, ErrorKind::connect,
                       "PQsetnonblocking: " + first_line(PQerrorMessage(c.pg)), "");
        return;
    }
    backoff_ = detail::min_backoff;
    down_until_ = {};
    c.state = Conn::State::idle;  // watched as idle by release()
    release(c);
}

void PgClient::connect_failed(Conn& c, ErrorKind kind, const std::string& why,
                              const std::string& sqlstate) {
    close_conn(c, false);
    std::string message;
    if (!sqlstate.empty()) {
        // The server is there and said no (an unknown database, a bad password): no back-off.
        kind = ErrorKind::server;
        message =
            "PostgreSQL: " + why + " (SQLSTATE " + sqlstate + ", connecting to " + describe() + ")";
    } else {
        auto now = Clock::now();
        if (now >= down_until_) {
            down_until_ = now + backoff_;
            message = peer() + ": cannot connect (" + why + "); next attempt in " +
                      std::to_string(backoff_.count()) + " ms";
            backoff_ = std::min(backoff_ * 2, detail::max_backoff);
        } else {
            message = peer() + ": cannot connect (" + why + ")";
        }
        down_reason_ = why;
        down_kind_ = kind;
    }
    // The queries waiting have no connection to hope for unless one is open already.
    if (established() == 0) {
        std::vector<Id> waiting(waiting_.begin(), waiting_.end());
        for (Id id : waiting) {
            auto it = queries_.find(id);
            if (it != queries_.end()) fail(*it->second, kind, message, sqlstate);
        }
    }
    pump();
}

void PgClient::on_conn_event(Conn& c, std::uint32_t events) {
    switch (c.state) {
        case Conn::State::resolving:
            return;
        case Conn::State::connecting:
            connect_step(c);
            return;
        case Conn::State::idle:
            // A pooled connection has nothing to say, except when the server ends it (FATAL
            // 57P01 on a restart, then the close): the next query must not land on it.
            if (PQconsumeInput(c.pg) == 0 || PQstatus(c.pg) != CONNECTION_OK ||
                (events & (EPOLLHUP | EPOLLERR)) != 0) {
                close_conn(c);
                return;
            }
            while (PGnotify* n = PQnotifies(c.pg)) PQfreemem(n);  // LISTEN is not supported
            return;
        case Conn::State::busy:
        case Conn::State::draining:
            if ((events & EPOLLOUT) != 0 && c.flushing) {
                flush(c);
                if (c.fd < 0) return;
            }
            if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) read_results(c);
            return;
    }
}

void PgClient::flush(Conn& c) {
    int r = PQflush(c.pg);
    if (r < 0) {
        broken(c, PQerrorMessage(c.pg));
        return;
    }
    c.flushing = r == 1;
    watch(c, c.flushing ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

void PgClient::read_results(Conn& c) {
    if (PQconsumeInput(c.pg) == 0) {
        broken(c, PQerrorMessage(c.pg));
        return;
    }
    if (c.flushing) {
        flush(c);
        if (c.fd < 0) return;
    }
    while (PQisBusy(c.pg) == 0) {
        PGresult* r = PQgetResult(c.pg);
        if (r == nullptr) {
            query_done(c);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            // libpq would hand out this result forever: the connection cannot be reused.
            PQclear(r);
            if (Query* q = c.q) {
                q->conn = nullptr;
                c.q = nullptr;
                fail(*q, ErrorKind::unsupported, peer() + ": COPY is not supported");
            }
            close_conn(c);
            return;
        }
        if (c.result != nullptr) PQclear(c.result);
        c.result = r;
    }
}

// PQgetResult said NULL: the query is over and the connection free again.
void PgClient::query_done(Conn& c) {
    PGresult* r = std::exchange(c.result, nullptr);
    bool bad = PQstatus(c.pg) != CONNECTION_OK;
    if (Query* q = std::exchange(c.q, nullptr)) {
        q->conn = nullptr;
        ExecStatusType st = r != nullptr ? PQresultStatus(r) : PGRES_FATAL_ERROR;
        const char* sqlstate = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
        switch (st) {
            case PGRES_TUPLES_OK:
            case PGRES_COMMAND_OK:
            case PGRES_EMPTY_QUERY:
            case PGRES_SINGLE_TUPLE:
                ++counts_.results;
                responses_.record(200,
                                  std::chrono::duration<double>(Clock::now() - q->started).count());
                finish(*q, detail::convert(r), nullptr);
                break;
            case PGRES_FATAL_ERROR:
            case PGRES_NONFATAL_ERROR: {
                const char* primary =
                    r != nullptr ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
                const char* detail =
                    r != nullptr ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : nullptr;
                std::string unused;
                std::string message = primary != nullptr ? primary
                                      : r != nullptr ? libpq_reason(PQresultErrorMessage(r), unused)
                                                     : libpq_reason(PQerrorMessage(c.pg), unused);
                if (detail != nullptr) message += ": " + std::string(detail);
                std::string_view code = sqlstate != nullptr ? sqlstate : "";
                if (bad || code.empty() || code.starts_with("57P0") || code.starts_with("08")) {
                    // libpq's own word for a lost connection, or the server's last (57P01).
                    fail(*q, ErrorKind::closed,
                         peer() + " closed the connection: " + message +
                             (sqlstate != nullptr ? " (SQLSTATE " + std::string(sqlstate) + ")"
                                                  : ""),
                         sqlstate != nullptr ? sqlstate : "");
                } else {
                    responses_.record(
                        500, std::chrono::duration<double>(Clock::now() - q->started).count());
                    fail(*q, ErrorKind::server,
                         "PostgreSQL: " + message + " (SQLSTATE " + sqlstate + ")", sqlstate);
                }
                break;
            }
            default:
                fail(*q, ErrorKind::protocol,
                     peer() + ": unexpected result (" + PQresStatus(st) + ")");
                bad = true;
                break;
        }
    }
    if (r != nullptr) PQclear(r);
    if (bad)
        close_conn(c);
    else
        release(c);
}

void PgClient::broken(Conn& c, const std::string& libpq_error) {
    if (Query* q = std::exchange(c.q, nullptr)) {
        q->conn = nullptr;
        std::string unused;
        fail(*q, ErrorKind::closed,
             peer() + " closed the connection: " + libpq_reason(libpq_error.c_str(), unused));
    }
    close_conn(c);
}

void PgClient::release(Conn& c) {
    if (c.drain_timer != 0) {
        loop_.cancel_timer(c.drain_timer);
        c.drain_timer = 0;
    }
    c.state = Conn::State::idle;
    c.flushing = false;
    watch(c, EPOLLIN);
    c.idle_timer = loop_.add_timer(options_.idle_timeout, [this, &c] {
        c.idle_timer = 0;
        close_conn(c);
    });
    idle_.push_back(&c);
    pump();
}

void PgClient::close_conn(Conn& c, bool then_pump) {
    if (Query* q = std::exchange(c.q, nullptr)) q->conn = nullptr;
    if (c.resolve_id != 0) {
        resolver_.cancel(c.resolve_id);
        c.resolve_id = 0;
    }
    for (auto* timer : {&c.connect_timer, &c.idle_timer, &c.drain_timer})
        if (*timer != 0) {
            loop_.cancel_timer(*timer);
            *timer = 0;
        }
    if (c.fd >= 0) {
        loop_.remove(c.fd);
        c.fd = -1;
    }
    if (c.result != nullptr) {
        PQclear(c.result);
        c.result = nullptr;
    }
    if (c.pg != nullptr) {
        PQfinish(c.pg);  // closes the socket; nonblocking, so its goodbye never waits
        c.pg = nullptr;
    }
    idle_.erase(std::remove(idle_.begin(), idle_.end(), &c), idle_.end());
    auto it = conns_.find(&c);
    if (it != conns_.end()) {
        // After this iteration: its own event handler may be what called us.
        loop_.defer([gone = std::shared_ptr<Conn>(std::move(it->second))] {});
        conns_.erase(it);
    }
    if (then_pump) pump();
}

}  // namespace herd::client
