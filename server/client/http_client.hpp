// herd's HTTP/1.1 client, on the worker's own loop (core::EventLoop): requests with method,
// headers and body; responses read with llhttp (Content-Length, chunked, or until the close),
// whole or streamed; a keep-alive pool per origin (a connection goes back only after a complete
// response; at most `max_connections` per origin, the rest wait in order); connect, first-byte
// and total timeouts, never past the caller's deadline; cancelling an exchange closes its
// connection. Names are looked up with c-ares (resolver.hpp). http:// only: https:// is
// refused with a clear error (no TLS yet).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "client/client_error.hpp"
#include "client/resolver.hpp"
#include "client/response_parser.hpp"
#include "client/url.hpp"
#include "core/client_stats.hpp"
#include "core/event_loop.hpp"

namespace herd::client {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
    std::string method = "GET";
    std::string url;
    Headers headers;  // Host, Content-Length, Transfer-Encoding and Connection are herd's
    std::string body;
    // Zero: the client's default. Each is also cut to what is left until `deadline`.
    std::chrono::milliseconds connect_timeout{0};
    std::chrono::milliseconds first_byte_timeout{0};  // from the request sent to a first byte
    std::chrono::milliseconds total_timeout{0};
    std::size_t max_response_bytes = 0;  // the body's limit; zero: the default
    // The caller's own deadline (its request's): no timeout runs past it.
    core::EventLoop::Clock::time_point deadline = core::EventLoop::Clock::time_point::max();
};

struct HttpResponse {
    int status = 0;
    std::string reason;
    Headers headers;
    std::string body;  // empty when streamed
    // The first header of that name (case-insensitive), or "".
    std::string_view header(std::string_view name) const;
};

// What an exchange reports. done() comes last and exactly once (unless cancelled, then never);
// head and body only for a streamed exchange, body after head.
struct HttpHandlers {
    std::function<void(const HttpResponse& head)> head;  // set: the body is streamed
    std::function<void(std::string_view piece)> body;
    std::function<void(HttpResponse response, const ClientError* error)> done;
};

class HttpClient {
  public:
    struct Options {
        std::size_t max_connections = 16;  // per origin
        std::size_t max_waiting = 1024;    // per origin, beyond which requests fail at once
        std::chrono::milliseconds idle_timeout{15000};  // a pooled connection unused this long
        std::chrono::milliseconds connect_timeout{5000};
        std::chrono::milliseconds first_byte_timeout{30000};
        std::chrono::milliseconds total_timeout{60000};
        std::size_t max_response_bytes = 16 * 1024 * 1024;
        Resolver::Options resolver;  // /etc/resolv.conf's servers by default
    };
    // Counters, for /metrics.
    struct Counts {
        std::uint64_t requests = 0;   // started
        std::uint64_t responses = 0;  // completed with a response
        std::map<ErrorKind, std::uint64_t> errors;
        std::uint64_t connections_opened = 0;
        std::uint64_t reused = 0;  // requests sent on a pooled connection
    };
    struct Pool {
        std::size_t open = 0, idle = 0, waiting = 0;
    };
    using Id = std::uint64_t;

    HttpClient(core::EventLoop& loop, Options options);
    explicit HttpClient(core::EventLoop& loop) : HttpClient(loop, Options()) {}
    ~HttpClient();  // cancels everything (no handler is called) and closes every connection
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    // Starts an exchange; the handlers run in the loop, never inside this call. An invalid
    // request (URL, header) fails through done() as well.
    Id fetch(HttpRequest request, HttpHandlers handlers);
    // Stops an exchange: its connection (if it had one) is closed, never pooled; no handler
    // is called after this. An unknown or finished id does nothing; true when one stopped.
    bool cancel(Id id);

    const Counts& counts() const { return counts_; }
    Pool pool() const;  // over every origin
    // For the heartbeat and /metrics: the counters, responses by status class and latency,
    // and the pool now.
    core::ClientStats stats() const;

  private:
    struct Origin;
    struct Conn;
    struct Exchange;
    friend struct Exchange;

    void start(Exchange& x);
    void acquire(Exchange& x);
    void open_conn(Exchange& x);
    void connect_next(Conn& c);
    void attach(Exchange& x, Conn& c);
    void on_conn_event(Conn& c, std::uint32_t events);
    void send_some(Conn& c);
    void read_some(Conn& c);
    void on_connected(Conn& c);
    void complete(Exchange& x);
    void fail(Exchange& x, ErrorKind kind, const std::string& why);
    void finish(Exchange& x, const ClientError* error);
    void release(Conn& c, bool reusable);
    void close_conn(Conn& c);
    void pump(Origin& o);
    void arm(Exchange& x, std::chrono::milliseconds limit, const std::string& what);
    std::chrono::milliseconds left(const Exchange& x, std::chrono::milliseconds limit) const;

    core::EventLoop& loop_;
    Options options_;
    Resolver resolver_;
    std::map<std::string, std::unique_ptr<Origin>> origins_;
    std::map<Id, std::unique_ptr<Exchange>> exchanges_;
    std::set<Id> finishing_;  // done() deferred to the loop, not cancelled since
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for deferred calls
    Id next_id_ = 1;
    Counts counts_;
    core::RequestStats responses_;  // status classes and latency of completed exchanges
    bool destroying_ = false;
};

}  // namespace herd::client
