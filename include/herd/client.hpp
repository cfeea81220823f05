// herd's HTTP/1.1 client, as a plugin sees it (Context::http()): requests to other services
// made on the worker's own event loop, so that waiting for them blocks nothing.
//
//   herd::Task<> fetch_user(herd::Context& ctx, herd::Responder r) {
//       herd::HttpRequest q;
//       q.url = "http://127.0.0.1:9000/users/7";
//       herd::HttpReply user = co_await ctx.http().request(std::move(q));  // may throw
//       r.send(user.status, user.body);
//   }
//
// - Connections are kept alive and pooled per origin (host:port) in each worker; a connection
//   goes back to the pool only after a complete response, and a cancelled exchange closes its
//   own. At most 16 connections per origin; more requests wait for one, in order.
// - Timeouts: connecting, the first byte of the response, and the whole exchange (defaults
//   5 s, 30 s, 60 s), each cut to what is left of the scope's deadline (a request's scope has
//   the request's deadline).
// - Bodies: Content-Length, chunked or until the close; at most max_response_bytes (16 MiB by
//   default) unless streamed (HttpHandlers::head/body).
// - Names are looked up without blocking (c-ares, /etc/hosts and /etc/resolv.conf); an IP
//   address needs no lookup. http:// only: there is no TLS yet, and https:// fails with a
//   ClientError of kind `unsupported`.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herd/function.hpp"
#include "herd/scope.hpp"
#include "herd/task.hpp"

namespace herd {

// Why a client's exchange failed. The message names the request and the peer.
class ClientError : public std::runtime_error {
  public:
    enum class Kind {
        invalid,      // a bad URL, header or option: the caller's mistake
        unsupported,  // something herd's client does not do (https://)
        resolve,      // the host name has no address
        connect,      // refused, unreachable, reset before the request was sent
        timeout,      // connect, first byte or total (or the scope's deadline)
        protocol,     // the peer broke the protocol (a malformed response)
        too_large,    // the response passed its size limit
        closed,       // the connection closed before the response was complete
        cancelled,    // cancelled by the caller
        overloaded,   // too many requests wait for a connection to this origin
        server,       // the server answered with an error (Redis, PostgreSQL): see code()
    };
    ClientError(Kind kind, const std::string& what, std::string code = {})
        : std::runtime_error(what), kind_(kind), code_(std::move(code)) {}
    Kind kind() const noexcept { return kind_; }
    // The server's own code for a `server` error: PostgreSQL's SQLSTATE ("23505"), the first
    // word of a Redis error ("WRONGTYPE"); "" otherwise. (ABI 5.2)
    const std::string& code() const noexcept { return code_; }

  private:
    Kind kind_;
    std::string code_;  // appended in 5.2: a 5.1 plugin sees the 5.1 prefix unchanged
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
    std::string method = "GET";
    std::string url;  // http://host[:port]/path?query
    // Host, Content-Length, Transfer-Encoding and Connection are herd's to set.
    HttpHeaders headers;
    std::string body;
    // Zero: the client's default. Each is also cut to the scope's deadline.
    std::chrono::milliseconds connect_timeout{0};
    std::chrono::milliseconds first_byte_timeout{0};
    std::chrono::milliseconds total_timeout{0};
    std::size_t max_response_bytes = 0;
};

struct HttpReply {
    int status = 0;
    std::string reason;
    HttpHeaders headers;
    std::string body;  // empty when streamed
    // The first header of that name (any case), or "".
    std::string_view header(std::string_view name) const {
        for (const auto& [n, v] : headers) {
            if (n.size() != name.size()) continue;
            bool same = true;
            for (std::size_t i = 0; i < n.size() && same; ++i)
                same = (n[i] | 0x20) == (name[i] | 0x20);
            if (same) return v;
        }
        return {};
    }
};

// What an exchange reports; all in the worker's loop, never inside fetch(). done comes last,
// exactly once, unless the exchange is cancelled (then nothing more is called). With head set
// the body is streamed: head, then body pieces, then done with an empty body.
struct HttpHandlers {
    Function<void(HttpReply&& reply, const ClientError* error)> done;
    Function<void(const HttpReply& head)> head;
    Function<void(std::string_view piece)> body;
};

class HttpClient {
  public:
    using Id = std::uint64_t;
    // Starts an exchange tied to `scope` (by default the plugin's): when the scope is
    // cancelled the exchange is, its connection closed, and no handler runs. The scope's
    // deadline bounds every timeout.
    virtual Id fetch(HttpRequest request, HttpHandlers handlers, Scope* scope = nullptr) = 0;
    // Cancels an exchange: its connection closes; no handler runs after this. An unknown or
    // finished id does nothing; true when one was cancelled.
    virtual bool cancel(Id id) noexcept = 0;

    // For coroutines: HttpReply reply = co_await http.request(q); throws ClientError, or
    // Cancelled when the awaiting task's scope is cancelled first.
    auto request(HttpRequest request);
    auto get(std::string url);

  protected:
    ~HttpClient() = default;
};

namespace detail {

// What every client's awaitable shares: it ties itself to the awaiting task's scope, starts
// the call through Derived::start(done) (which returns the client's id), and resumes the task
// with the answer, the client's error, or Cancelled. Reply is what done delivers.
template <class Derived, class Client, class Reply>
class ClientAwait : public CancelHook {
  public:
    using Done = Function<void(Reply&& reply, const ClientError* error)>;
    explicit ClientAwait(Client& client) : client_(client) {}
    ClientAwait(const ClientAwait&) = delete;
    ClientAwait& operator=(const ClientAwait&) = delete;
    ~ClientAwait() {
        if (id_ != 0) client_.cancel(id_);
    }
    bool await_ready() const noexcept { return false; }
    template <class P>
    bool await_suspend(std::coroutine_handle<P> h) {
        scope_ = scope_of(h);
        handle_ = h;
        if (scope_ != nullptr && !scope_->add_hook(*this)) {
            cancelled_ = true;
            return false;
        }
        Done done = [this](Reply&& reply, const ClientError* error) {
            id_ = 0;
            if (error != nullptr)
                error_.emplace(*error);
            else
                reply_ = std::move(reply);
            unlink();
            handle_.resume();
        };
        id_ = static_cast<Derived*>(this)->start(std::move(done));
        return true;
    }

  protected:
    // The answer, for Derived::await_resume().
    Reply take() {
        if (cancelled_) throw Cancelled(std::string(scope_->why()));
        if (error_) throw ClientError(*error_);
        return std::move(reply_);
    }
    Client& client_;
    Scope* scope_ = nullptr;

  private:
    void on_cancel() noexcept override {
        cancelled_ = true;
        if (id_ != 0) client_.cancel(std::exchange(id_, 0));
        handle_.resume();
    }
    std::coroutine_handle<> handle_;
    typename Client::Id id_ = 0;
    bool cancelled_ = false;
    Reply reply_;
    std::optional<ClientError> error_;
};

class FetchAwait final : public ClientAwait<FetchAwait, HttpClient, HttpReply> {
  public:
    FetchAwait(HttpClient& client, HttpRequest request)
        : ClientAwait(client), request_(std::move(request)) {}
    HttpClient::Id start(Done done) {
        HttpHandlers handlers;
        handlers.done = std::move(done);
        return client_.fetch(std::move(request_), std::move(handlers), scope_);
    }
    HttpReply await_resume() { return take(); }

  private:
    HttpRequest request_;
};

}  // namespace detail

inline auto HttpClient::request(HttpRequest request) {
    return detail::FetchAwait(*this, std::move(request));
}
inline auto HttpClient::get(std::string url) {
    HttpRequest q;
    q.url = std::move(url);
    return detail::FetchAwait(*this, std::move(q));
}

}  // namespace herd
