// The HTTP client's insides, shared by http_client.cpp (exchanges, timers, the pool's
// bookkeeping) and http_connection.cpp (connecting, writing, reading, pooling a connection).
// Not for anyone else: see http_client.hpp.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "client/http_client.hpp"

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

namespace detail {
// Safe to send again when a pooled connection turned out to be closed (RFC 9110 9.2.2).
bool idempotent(std::string_view method);
std::string errno_name(int e);
}  // namespace detail

}  // namespace herd::client
