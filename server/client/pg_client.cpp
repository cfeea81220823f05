// herd's PostgreSQL client: the URL, the pool, connecting and running queries through libpq's
// asynchronous API on the loop, timeouts and cancels; see pg_client.hpp.
#include "client/pg_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>

namespace herd::client {

using Clock = core::EventLoop::Clock;
using std::chrono::milliseconds;

namespace {

constexpr milliseconds min_backoff{100}, max_backoff{5000};

// PostgreSQL type OIDs (pg_type.dat): the ones to_json() types.
enum : unsigned {
    oid_bool = 16,
    oid_int8 = 20,
    oid_int2 = 21,
    oid_int4 = 23,
    oid_oid = 26,
    oid_json = 114,
    oid_float4 = 700,
    oid_float8 = 701,
    oid_numeric = 1700,
    oid_jsonb = 3802,
};

struct PgUrl {
    std::vector<std::pair<std::string, std::string>> params;  // every keyword libpq got a value for
    std::string host, port, user, dbname;
    bool needs_lookup = false;
};

[[noreturn]] void invalid(const std::string& shown, const std::string& why) {
    throw ClientError(ErrorKind::invalid,
                      "invalid PostgreSQL URL \"" + shown.substr(0, 200) + "\": " + why);
}

std::string first_line(std::string_view s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
    auto nl = s.find('\n');
    return std::string(s.substr(0, nl));
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

// A libpq error message, such as a connection failure ("connection to server at \"127.0.0.1\",
// port 5432 failed: FATAL:  3D000: database \"nope\" does not exist\nLOCATION: ..."): the
// reason alone, and the SQLSTATE when the server said no (a connecting connection's verbosity
// is VERBOSE for that).
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

PgResult convert(const PGresult* r) {
    PgResult out;
    int fields = PQnfields(r), tuples = PQntuples(r);
    for (int i = 0; i < fields; ++i) {
        const char* name = PQfname(r, i);
        out.columns.emplace_back(name != nullptr ? name : "");
        out.types.push_back(PQftype(r, i));
    }
    out.rows.reserve(static_cast<std::size_t>(tuples));
    for (int t = 0; t < tuples; ++t) {
        auto& row = out.rows.emplace_back();
        row.reserve(static_cast<std::size_t>(fields));
        for (int i = 0; i < fields; ++i) {
            if (PQgetisnull(r, t, i))
                row.emplace_back(std::nullopt);
            else
                row.emplace_back(std::string(PQgetvalue(r, t, i),
                                             static_cast<std::size_t>(PQgetlength(r, t, i))));
        }
    }
    const char* affected = PQcmdTuples(const_cast<PGresult*>(r));
    if (affected != nullptr)
        (void)std::from_chars(affected, affected + std::strlen(affected), out.affected);
    const char* status = PQcmdStatus(const_cast<PGresult*>(r));
    out.command = status != nullptr ? status : "";
    return out;
}

nlohmann::json typed(unsigned type, const std::string& v) {
    switch (type) {
        case oid_bool:
            if (v == "t") return true;
            if (v == "f") return false;
            break;
        case oid_int2:
        case oid_int4:
        case oid_int8: {
            std::int64_t n = 0;
            auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec == std::errc() && end == v.data() + v.size()) return n;
            break;
        }
        case oid_oid: {
            std::uint64_t n = 0;
            auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec == std::errc() && end == v.data() + v.size()) return n;
            break;
        }
        case oid_float4:
        case oid_float8: {
            double d = 0;
            auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
            if (ec == std::errc() && end == v.data() + v.size() && std::isfinite(d)) return d;
            break;
        }
        case oid_json:
        case oid_jsonb: {
            auto j = nlohmann::json::parse(v, nullptr, false);
            if (!j.is_discarded()) return j;
            break;
        }
        default:
            break;
    }
    return v;
}

void no_notices(void*, const char*) {}

}  // namespace

nlohmann::json PgResult::to_json() const {
    auto out = nlohmann::json::array();
    for (const auto& row : rows) {
        auto object = nlohmann::json::object();
        for (std::size_t i = 0; i < row.size() && i < columns.size(); ++i) {
            const auto& v = row[i];
            object[columns[i]] = v ? typed(i < types.size() ? types[i] : 0, *v) : nullptr;
        }
        out.push_back(std::move(object));
    }
    return out;
}

void check_pg_url(std::string_view url) {
    (void)parse_pg_url(url);
}

struct PgClient::Conn {
    PGconn* pg = nullptr;
    int fd = -1;  // the socket the loop watches (libpq may change it while connecting)
    // resolving, connecting: not yet usable; idle: pooled; busy: running q's query; draining:
    // its query was cancelled, its results are read and dropped before it is pooled again.
    enum class State { resolving, connecting, idle, busy, draining } state = State::resolving;
    Query* q = nullptr;
    PGresult* result = nullptr;  // the last one of the running query
    bool flushing = false;       // PQflush has more to send
    bool used = false;           // has run a query before
    std::uint32_t watched = 0;
    std::uint64_t resolve_id = 0;
    core::EventLoop::TimerId connect_timer = 0, idle_timer = 0, drain_timer = 0;
};

struct PgClient::Query {
    Id id = 0;
    PgQuery query;
    Done done;
    Conn* conn = nullptr;
    Clock::time_point started;
    core::EventLoop::TimerId timer = 0;
    bool waiting = false;  // in waiting_
    bool ended = false;    // finished or cancelled: nothing more happens to it
    explicit Query(Id i) : id(i) {}
};

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

// ---- connections ------------------------------------------------------------------------

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
    backoff_ = min_backoff;
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
            backoff_ = std::min(backoff_ * 2, max_backoff);
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
                finish(*q, convert(r), nullptr);
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
