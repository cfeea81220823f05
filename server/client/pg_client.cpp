// herd's PostgreSQL client: the URL, queries (timeouts, waiting for a connection, how each
// ends), the pool's bookkeeping and cancels; see pg_client.hpp. Connections are in
// pg_connection.cpp, results in pg_result.cpp.
#include "client/pg_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <memory>
#include <thread>

#include "client/pg_client_impl.hpp"

namespace herd::client {

using detail::first_line;

namespace {

struct PgUrl {
    std::vector<std::pair<std::string, std::string>> params;  // every keyword libpq got a value for
    std::string host, port, user, dbname;
    bool needs_lookup = false;
};

[[noreturn]] void invalid(const std::string& shown, const std::string& why) {
    throw ClientError(ErrorKind::invalid,
                      "invalid PostgreSQL URL \"" + shown.substr(0, 200) + "\": " + why);
}

bool ip_literal(const std::string& host) {
    in6_addr a6{};
    in_addr a4{};
    return inet_pton(AF_INET, host.c_str(), &a4) == 1 ||
           inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// libpq's conninfo parse of `url`, as keyword/value pairs; false and `error` when it fails.
bool conninfo(const std::string& url, std::vector<std::pair<std::string, std::string>>& out,
              std::string& error) {
    char* err = nullptr;
    PQconninfoOption* options = PQconninfoParse(url.c_str(), &err);
    if (options == nullptr) {
        error = err != nullptr ? first_line(err) : "out of memory";
        PQfreemem(err);
        return false;
    }
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o)
        if (o->val != nullptr && o->val[0] != '\0') out.emplace_back(o->keyword, o->val);
    PQconninfoFree(options);
    return true;
}

// The password is never shown: every message quotes the URL with "***" in its place, and the
// URL libpq parses first is that one, so that what libpq says cannot quote it either.
PgUrl parse_pg_url(std::string_view url) {
    std::string lower(url.substr(0, 16));
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::size_t scheme = lower.starts_with("postgresql://") ? 13
                         : lower.starts_with("postgres://") ? 11
                                                            : 0;
    std::string shown(url);
    bool has_password = false;
    if (scheme != 0) {
        // libpq's own rule: the user info ends at the first '@' before any '/'.
        std::size_t end = url.find_first_of("@/", scheme);
        if (end != std::string_view::npos && url[end] == '@') {
            std::size_t colon = url.find(':', scheme);
            if (colon < end) {
                has_password = true;
                shown =
                    std::string(url.substr(0, colon + 1)) + "***" + std::string(url.substr(end));
            }
        }
    }
    if (scheme == 0) {
        // Nothing after the first ':' is shown: it may be a password.
        std::string_view head = url.substr(0, std::min<std::size_t>(url.find(':'), 20));
        throw ClientError(ErrorKind::invalid,
                          "invalid PostgreSQL URL starting \"" + std::string(head) +
                              "\": expected postgresql://user[:password]@host[:port]/database");
    }
    if (url.find('\0') != std::string_view::npos) invalid(shown, "it has a NUL byte");
    PgUrl u;
    std::string error;
    if (!conninfo(shown, u.params, error)) invalid(shown, error);
    if (has_password) {
        u.params.clear();
        if (!conninfo(std::string(url), u.params, error))
            invalid(shown, "its password is not valid percent-encoding");
    }
    std::string hostaddr;
    for (const auto& [key, value] : u.params) {
        if (key == "host") u.host = value;
        if (key == "hostaddr") hostaddr = value;
        if (key == "port") u.port = value;
        if (key == "user") u.user = value;
        if (key == "dbname") u.dbname = value;
    }
    if (u.host.empty() && hostaddr.empty()) invalid(shown, "no host");
    if (u.host.find(',') != std::string::npos || u.port.find(',') != std::string::npos ||
        hostaddr.find(',') != std::string::npos)
        invalid(shown, "several hosts are not supported (one client per server)");
    if (u.host.empty()) u.host = hostaddr;
    if (u.port.empty()) u.port = "5432";
    unsigned port = 0;
    auto [end, ec] = std::from_chars(u.port.data(), u.port.data() + u.port.size(), port);
    if (ec != std::errc() || end != u.port.data() + u.port.size() || port == 0 || port > 65535)
        invalid(shown, "port \"" + u.port + "\" is not a number from 1 to 65535");
    if (u.dbname.empty()) u.dbname = u.user;
    u.needs_lookup =
        hostaddr.empty() && u.host[0] != '/' && u.host[0] != '@' && !ip_literal(u.host);
    // UTF-8 so that text is valid JSON; no GSSAPI encryption attempt (it may block in Kerberos
    // lookups), unless the URL asks otherwise.
    for (auto [key, value] : {std::pair{"client_encoding", "UTF8"}, {"gssencmode", "disable"}})
        if (std::none_of(u.params.begin(), u.params.end(),
                         [key = key](const auto& p) { return p.first == key; }))
            u.params.emplace_back(key, value);
    return u;
}

}  // namespace

namespace detail {

std::string first_line(std::string_view s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
    auto nl = s.find('\n');
    return std::string(s.substr(0, nl));
}

std::string libpq_reason(const char* message, std::string& sqlstate) {
    std::string line = first_line(message != nullptr ? message : "");
    if (auto at = line.find(" failed: "); at != std::string::npos) line.erase(0, at + 9);
    for (std::string_view severity : {"FATAL:  ", "ERROR:  "}) {
        if (!line.starts_with(severity)) continue;
        line.erase(0, severity.size());
        if (line.size() > 7 && line[5] == ':' && line[6] == ' ' &&
            std::all_of(line.begin(), line.begin() + 5,
                        [](char c) { return std::isdigit(c) || std::isupper(c); })) {
            sqlstate = line.substr(0, 5);
            line.erase(0, 7);
        }
    }
    // "Connection refused" -> "connection refused", to read well inside a sentence.
    if (line.size() > 1 && std::isupper(static_cast<unsigned char>(line[0])) &&
        std::islower(static_cast<unsigned char>(line[1])))
        line[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(line[0])));
    return line.empty() ? "unknown error" : line;
}

}  // namespace detail

void check_pg_url(std::string_view url) {
    (void)parse_pg_url(url);
}

PgClient::PgClient(core::EventLoop& loop, Options options)
    : loop_(loop), options_(std::move(options)), resolver_(loop, options_.resolver) {
    PgUrl u = parse_pg_url(options_.url);
    params_ = std::move(u.params);
    host_ = std::move(u.host);
    port_ = std::move(u.port);
    user_ = std::move(u.user);
    dbname_ = std::move(u.dbname);
    needs_lookup_ = u.needs_lookup;
    if (options_.max_connections == 0)
        throw ClientError(ErrorKind::invalid, describe() + ": max_connections must be positive");
}

PgClient::~PgClient() {
    destroying_ = true;
    for (auto& [id, q] : queries_)
        if (q->timer != 0) loop_.cancel_timer(q->timer);
    std::vector<Conn*> all;
    for (auto& [raw, c] : conns_) all.push_back(raw);
    for (Conn* c : all) {
        // The server should not keep running a query nobody waits for.
        if (c->state == Conn::State::busy && c->q != nullptr) detach_and_cancel(*c->q);
        close_conn(*c, false);
    }
    *alive_ = false;
}

std::string PgClient::describe() const {
    std::string host = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
    return "postgresql://" + (user_.empty() ? "" : user_ + "@") + host + ":" + port_ + "/" +
           dbname_;
}

std::string PgClient::peer() const {
    return "PostgreSQL at " + (host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_) +
           ":" + port_;
}

core::ClientStats PgClient::stats() const {
    core::ClientStats s;
    s.requests = counts_.queries;
    s.responses = responses_;
    for (const auto& [kind, n] : counts_.errors) s.errors[error_kind_name(kind)] = n;
    Pool p = pool();
    s.open = p.open;
    s.idle = p.idle;
    s.waiting = p.waiting;
    return s;
}

PgClient::Pool PgClient::pool() const {
    return Pool{conns_.size(), idle_.size(), waiting_.size()};
}

std::size_t PgClient::established() const {
    return static_cast<std::size_t>(std::count_if(conns_.begin(), conns_.end(), [](const auto& e) {
        return e.second->state != Conn::State::resolving &&
               e.second->state != Conn::State::connecting;
    }));
}

// ---- queries ----------------------------------------------------------------------------

PgClient::Id PgClient::query(PgQuery pq, Done done) {
    auto owned = std::make_unique<Query>(next_id_++);
    Query& q = *owned;
    queries_[q.id] = std::move(owned);
    ++counts_.queries;
    q.query = std::move(pq);
    q.done = std::move(done);
    q.started = loop_.refresh_now();
    Id id = q.id;
    // libpq takes C strings: a NUL would cut the text short without a word.
    if (q.query.sql.find('\0') != std::string::npos) {
        fail(q, ErrorKind::invalid, peer() + ": the SQL has a NUL byte");
        return id;
    }
    if (q.query.params.size() > 65535) {
        fail(q, ErrorKind::invalid, peer() + ": more than 65535 parameters");
        return id;
    }
    for (std::size_t i = 0; i < q.query.params.size(); ++i)
        if (q.query.params[i] && q.query.params[i]->find('\0') != std::string::npos) {
            fail(q, ErrorKind::invalid,
                 peer() + ": parameter $" + std::to_string(i + 1) + " has a NUL byte");
            return id;
        }
    milliseconds limit = q.query.timeout.count() > 0 ? q.query.timeout : options_.query_timeout;
    auto deadline = std::min(q.started + limit, q.query.deadline);
    if (deadline <= q.started) {
        fail(q, ErrorKind::timeout, peer() + ": its request's deadline has passed already");
        return id;
    }
    std::string why =
        q.query.deadline < q.started + limit
            ? "no result before its request's deadline"
            : "no result within " + std::to_string(limit.count()) + " ms (query timeout)";
    q.timer = loop_.add_timer_at(deadline, [this, id, why] {
        auto it = queries_.find(id);
        if (it == queries_.end()) return;
        it->second->timer = 0;
        fail(*it->second, ErrorKind::timeout, peer() + ": " + why);
    });
    acquire(q);
    return id;
}

void PgClient::acquire(Query& q) {
    if (idle_.empty() && waiting_.size() >= options_.max_waiting) {
        fail(q, ErrorKind::overloaded,
             peer() + ": " + std::to_string(waiting_.size()) +
                 " queries already wait for a connection");
        return;
    }
    q.waiting = true;
    waiting_.push_back(q.id);
    pump();
    // No connection, none coming (the server is down and the back-off runs): fail at once
    // rather than wait for the timeout.
    auto now = Clock::now();
    if (q.waiting && conns_.empty() && now < down_until_) {
        auto ms = std::chrono::ceil<milliseconds>(down_until_ - now).count();
        fail(q, down_kind_,
             peer() + " is down (" + down_reason_ + "); next attempt in " + std::to_string(ms) +
                 " ms");
    }
}

void PgClient::pump() {
    if (destroying_) return;
    while (!waiting_.empty() && !idle_.empty()) {
        Conn& c = *idle_.back();
        idle_.pop_back();
        if (!still_open(c)) {
            close_conn(c, false);
            continue;
        }
        Id id = waiting_.front();
        waiting_.pop_front();
        auto it = queries_.find(id);
        if (it == queries_.end() || it->second->ended) {
            idle_.push_back(&c);
            continue;
        }
        it->second->waiting = false;
        if (c.used) ++counts_.reused;
        c.used = true;
        attach(*it->second, c);
    }
    if (waiting_.empty() || Clock::now() < down_until_) return;
    std::size_t opening = conns_.size() - established();
    while (waiting_.size() > opening && conns_.size() < options_.max_connections) {
        open_conn();
        ++opening;
    }
}

void PgClient::fail(Query& q, ErrorKind kind, const std::string& why, const std::string& code) {
    if (q.ended) return;
    ++counts_.errors[kind];
    if (q.conn != nullptr) detach_and_cancel(q);
    ClientError error(kind, why, code);
    finish(q, PgResult(), &error);
}

void PgClient::finish(Query& q, PgResult result, const ClientError* error) {
    q.ended = true;
    if (q.timer != 0) loop_.cancel_timer(q.timer);
    q.timer = 0;
    if (q.waiting)
        waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), q.id), waiting_.end());
    q.waiting = false;
    Id id = q.id;
    auto done = std::move(q.done);
    std::optional<ClientError> copy;
    if (error != nullptr) copy.emplace(*error);
    auto it = queries_.find(id);
    if (it != queries_.end()) {
        // After this iteration: a caller up the stack may still hold it.
        loop_.defer([gone = std::shared_ptr<Query>(std::move(it->second))] {});
        queries_.erase(it);
    }
    if (!done) return;
    // Never inside query() or a handler: in the loop, unless cancelled first.
    finishing_.insert(id);
    loop_.defer([this, alive = std::weak_ptr<bool>(alive_), id, done = std::move(done),
                 result = std::move(result), copy = std::move(copy)]() mutable {
        auto still = alive.lock();
        if (!still || !*still || finishing_.erase(id) == 0) return;
        done(std::move(result), copy ? &*copy : nullptr);
    });
}

bool PgClient::cancel(Id id) {
    if (finishing_.erase(id) != 0) return true;
    auto it = queries_.find(id);
    if (it == queries_.end() || it->second->ended) return false;
    Query& q = *it->second;
    q.done = nullptr;  // nothing more is called
    if (q.conn != nullptr) detach_and_cancel(q);
    finish(q, PgResult(), nullptr);
    return true;
}

// The query leaves its connection at once; the server is asked to stop it (PQcancel, off the
// loop), and the connection is pooled again only after its results (57014 query_canceled, or
// the result if the cancel came too late) are read, or closed if they do not come in time.
void PgClient::detach_and_cancel(Query& q) {
    Conn& c = *q.conn;
    q.conn = nullptr;
    c.q = nullptr;
    if (c.state != Conn::State::busy) return;
    c.state = Conn::State::draining;
    if (c.result != nullptr) {
        PQclear(c.result);
        c.result = nullptr;
    }
    if (PGcancel* raw = PQgetCancel(c.pg)) {
        ++counts_.server_cancels;
        // PQcancel connects to the server's address (not its name) and waits for the answer:
        // the work owns everything it touches, so it may outlive the client.
        std::shared_ptr<PGcancel> handle(raw, PQfreeCancel);
        auto work = [handle] {
            char error[256];
            // Nothing to do if it fails: the drain timeout closes the connection.
            (void)PQcancel(handle.get(), error, sizeof error);
        };
        try {
            if (options_.run_blocking)
                options_.run_blocking(work);
            else
                std::thread(work).detach();
        } catch (const std::exception&) {
            // No thread for it: the connection goes, the server notices when it next writes.
            if (!destroying_) close_conn(c);
            return;
        }
    }
    if (destroying_) return;
    c.drain_timer = loop_.add_timer(options_.drain_timeout, [this, &c] {
        c.drain_timer = 0;
        close_conn(c);
    });
}

}  // namespace herd::client
