// herd's PostgreSQL client, on the worker's own loop (core::EventLoop) through libpq's
// asynchronous API: queries with text parameters (always bound, never pasted into the SQL) and
// text results; a pool per client (at most `max_connections`, idle ones reused most recently
// used first, the rest wait in order, idle ones closed after `idle_timeout` or as soon as the
// server closes them); connect and query timeouts, never past the caller's deadline; a timed
// out or cancelled query is cancelled on the server too. Host names are looked up with c-ares
// (resolver.hpp) and given to libpq as `hostaddr`, because libpq's own lookup blocks.
//
// Where blocking happens: nowhere on the loop, except that PQcancel() opens a connection of its
// own and waits for it, so it runs through Options::run_blocking (the worker's blocking pool).
//
// Pipeline mode is not used: each connection runs one query at a time and concurrency comes
// from the pool, so a slow query never holds up others queued behind it on the same connection,
// a failed one never aborts the ones after it, and a cancel (which acts on a whole connection)
// hits only the query it was meant for.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <herd/postgres.hpp>

#include "client/client_error.hpp"
#include "client/resolver.hpp"
#include "core/client_stats.hpp"
#include "core/event_loop.hpp"

namespace herd::client {

struct PgQuery {
    std::string sql;  // $1, $2 ... placeholders
    // Text format, nullopt for NULL; always bound with PQsendQueryParams, never pasted.
    std::vector<std::optional<std::string>> params;
    // From query() to the result, waiting for a connection included. Zero: the client's default.
    std::chrono::milliseconds timeout{0};
    // The caller's own deadline (its request's): no timeout runs past it.
    core::EventLoop::Clock::time_point deadline = core::EventLoop::Clock::time_point::max();
};

// The SDK's (herd/postgres.hpp): the client fills what the plugin receives, no copy between.
using PgResult = herd::PgResult;

class PgClient {
  public:
    struct Options {
        // postgresql://user[:password]@host[:port]/db[?param=value...] (or postgres://). The
        // host is a name, an IP address or a Unix socket directory (percent-encoded "/...").
        std::string url;
        std::size_t max_connections = 4;  // per client (one client per URL per worker)
        std::size_t max_waiting = 1024;   // waiting for a connection beyond which queries fail
        std::chrono::milliseconds connect_timeout{5000};
        std::chrono::milliseconds query_timeout{30000};
        std::chrono::milliseconds idle_timeout{60000};
        // A connection whose query was cancelled is pooled again only once the server has
        // answered the cancel; not within this, it is closed.
        std::chrono::milliseconds drain_timeout{3000};
        // Runs blocking work off the loop (PQcancel opens its own connection and waits for it).
        // The worker passes its blocking pool; empty: a detached std::thread per cancel. What
        // it runs touches nothing of the client's, so it may finish after the client is gone.
        std::function<void(std::function<void()>)> run_blocking;
        Resolver::Options resolver;
    };
    // Counters, for /metrics.
    struct Counts {
        std::uint64_t queries = 0;  // started
        std::uint64_t results = 0;  // completed with a result
        std::map<ErrorKind, std::uint64_t> errors;
        std::uint64_t connections_opened = 0;
        std::uint64_t reused = 0;          // queries sent on a pooled connection
        std::uint64_t server_cancels = 0;  // PQcancel sent for a timed out or cancelled query
    };
    struct Pool {
        std::size_t open = 0, idle = 0, waiting = 0;
    };
    using Id = std::uint64_t;
    using Done = std::function<void(PgResult result, const ClientError* error)>;

    // Throws ClientError(invalid) on a bad URL, naming what is wrong, never quoting the password.
    PgClient(core::EventLoop& loop, Options options);
    ~PgClient();  // cancels everything (no handler is called) and closes every connection
    PgClient(const PgClient&) = delete;
    PgClient& operator=(const PgClient&) = delete;

    // Starts a query; done runs in the loop, never inside this call, exactly once unless the
    // query is cancelled. A PostgreSQL error is a ClientError of kind `server` whose code() is
    // the SQLSTATE.
    Id query(PgQuery q, Done done);
    // Stops a query: no handler is called after this, and a query the server is running is
    // cancelled there too. An unknown or finished id does nothing; true when one stopped.
    bool cancel(Id id);

    const Counts& counts() const { return counts_; }
    Pool pool() const;
    // For the heartbeat and /metrics: queries started; responses with their latency, recorded
    // as status 200 for a result and 500 for an error the server answered (kind `server`, also
    // counted in errors); errors by kind; the pool now.
    core::ClientStats stats() const;
    // "postgresql://app@127.0.0.1:5432/app": the URL without its password, for logs and errors.
    std::string describe() const;

  private:
    struct Conn;
    struct Query;

    void acquire(Query& q);
    void open_conn();
    void start_connect(Conn& c, const std::vector<std::string>& hostaddrs);
    void connect_step(Conn& c);
    void watch(Conn& c, std::uint32_t events);
    void on_conn_event(Conn& c, std::uint32_t events);
    void connect_failed(Conn& c, ErrorKind kind, const std::string& why,
                        const std::string& sqlstate);
    void attach(Query& q, Conn& c);
    void flush(Conn& c);
    void read_results(Conn& c);
    void query_done(Conn& c);
    void broken(Conn& c, const std::string& why);
    void detach_and_cancel(Query& q);
    void fail(Query& q, ErrorKind kind, const std::string& why, const std::string& code = {});
    void finish(Query& q, PgResult result, const ClientError* error);
    void release(Conn& c);
    void close_conn(Conn& c, bool then_pump = true);
    bool still_open(Conn& c);
    void pump();
    std::size_t established() const;
    std::string peer() const;  // "PostgreSQL at 127.0.0.1:5432"

    core::EventLoop& loop_;
    Options options_;
    std::vector<std::pair<std::string, std::string>> params_;  // for PQconnectStartParams
    std::string host_, port_, user_, dbname_;
    bool needs_lookup_ = false;  // a host name, not an address or a socket directory
    Resolver resolver_;
    std::map<Conn*, std::unique_ptr<Conn>> conns_;
    std::vector<Conn*> idle_;  // most recently used last
    std::deque<Id> waiting_;
    std::map<Id, std::unique_ptr<Query>> queries_;
    std::set<Id> finishing_;  // done() deferred to the loop, not cancelled since
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for deferred calls
    Id next_id_ = 1;
    Counts counts_;
    core::RequestStats responses_;
    // Back-off while the server refuses connections: from 100 ms, doubling to 5 s; reset by a
    // connection that succeeds.
    std::chrono::milliseconds backoff_{100};
    core::EventLoop::Clock::time_point down_until_{};
    std::string down_reason_;
    ErrorKind down_kind_ = ErrorKind::connect;
    bool destroying_ = false;
};

// Validates a URL without connecting (for configuration checks at start): throws
// ClientError(invalid) naming the problem, never echoing a password.
void check_pg_url(std::string_view url);

}  // namespace herd::client
