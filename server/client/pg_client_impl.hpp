// The PostgreSQL client's insides, shared by pg_client.cpp (the URL, queries, the pool's
// bookkeeping, cancels), pg_connection.cpp (connecting, sending, reading results, pooling a
// connection) and pg_result.cpp (results and their JSON). Not for anyone else: see
// pg_client.hpp.
#pragma once

#include <libpq-fe.h>

#include <string>
#include <string_view>

#include "client/pg_client.hpp"

namespace herd::client {

using Clock = core::EventLoop::Clock;
using std::chrono::milliseconds;

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

namespace detail {

// Back-off while the server refuses connections.
inline constexpr milliseconds min_backoff{100}, max_backoff{5000};

// The first line of libpq's text, without the trailing newline.
std::string first_line(std::string_view s);
// A libpq error message, such as a connection failure ("connection to server at \"127.0.0.1\",
// port 5432 failed: FATAL:  3D000: database \"nope\" does not exist\nLOCATION: ..."): the
// reason alone, and the SQLSTATE when the server said no (a connecting connection's verbosity
// is VERBOSE for that).
std::string libpq_reason(const char* message, std::string& sqlstate);
// A result's columns, rows, command and count; any shape, never a crash.
PgResult convert(const PGresult* r);

}  // namespace detail

}  // namespace herd::client
