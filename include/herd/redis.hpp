// herd's Redis client, as a plugin sees it (Context::redis()): the plugin's own data connection
// to the Redis at its config's "redis" URL, on the worker's event loop.
//
//   herd::Task<> show(herd::Context& ctx, herd::Responder r) {
//       std::optional<std::string> v = co_await ctx.redis().get("greeting");  // may throw
//       r.send(200, v.value_or("(none)"));
//   }
//
// - One connection per worker and URL, shared by the worker's plugins: commands are pipelined
//   on it (sent as they come, answered in order). It opens at the first command; when it
//   breaks, herd reconnects with a back-off (100 ms doubling to 2 s) and, while Redis is down,
//   commands fail at once with a ClientError of kind `connect` saying so.
// - Every command is timed by herd (5 s by default, `?timeout_ms=` in the URL), and cut to
//   the scope's deadline (a request's scope has the request's deadline). A command that timed
//   out or was cancelled has its reply dropped when it comes; a connection that answers
//   nothing for 10 s while commands wait is closed and opened again.
// - An error reply (`-ERR ...`) is a ClientError of kind `server` whose code() is the error's
//   first word ("WRONGTYPE", "ERR"). Commands that would change the shared connection (AUTH,
//   SELECT, SUBSCRIBE, MONITOR, MULTI/EXEC, blocking pops, ...) are refused with kind
//   `invalid`; transaction() sends MULTI ... EXEC as one piece instead.
// - The URL's password is sent with AUTH and never appears in a message or a log line.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "herd/client.hpp"
#include "herd/function.hpp"
#include "herd/scope.hpp"

namespace herd {

// A reply as Redis sends it (RESP2).
struct RedisReply {
    enum class Type { nil, string, integer, array, status, error };
    Type type = Type::nil;
    std::string str;  // string, status and error
    long long integer = 0;
    std::vector<RedisReply> elements;  // array
    bool is_nil() const noexcept { return type == Type::nil; }
};

using RedisArgs = std::vector<std::string>;

class RedisClient {
  public:
    using Id = std::uint64_t;
    // done runs once, in the worker's loop (never inside command()), unless the command is
    // cancelled; error is null when Redis answered with anything but an error.
    using Done = Function<void(RedisReply&& reply, const ClientError* error)>;

    // Sends one command ({"SET", "k", "v"}) tied to `scope` (by default the plugin's): when
    // the scope is cancelled so is the command, and its reply is dropped.
    virtual Id command(RedisArgs args, Done done, Scope* scope = nullptr) = 0;
    // MULTI, the commands, EXEC, sent together: done gets EXEC's reply (an array with one
    // reply per command, errors among them as replies of type error).
    virtual Id transaction(std::vector<RedisArgs> commands, Done done, Scope* scope = nullptr) = 0;
    // done is not called after this; an unknown or finished id does nothing.
    virtual bool cancel(Id id) noexcept = 0;

    // For coroutines; each throws ClientError, or Cancelled when the task's scope is.
    auto call(RedisArgs args);                     // the reply
    auto exec(std::vector<RedisArgs> commands);    // transaction(): EXEC's reply
    auto get(std::string key);                     // std::optional<std::string>
    auto set(std::string key, std::string value);  // SET: true
    auto set(std::string key, std::string value, std::chrono::milliseconds ttl);  // SET PX
    auto del(std::string key);   // DEL: how many were removed
    auto incr(std::string key);  // INCR: the new value

  protected:
    ~RedisClient() = default;
};

namespace detail {

// An unexpected reply's error (a GET answered with an array).
inline ClientError redis_unexpected(const RedisReply& r, const char* wanted) {
    static const char* const names[] = {"nil", "string", "integer", "array", "status", "error"};
    return ClientError(ClientError::Kind::protocol,
                       std::string("Redis answered with a reply of type ") +
                           names[static_cast<int>(r.type)] + " where " + wanted + " was expected");
}

template <class T>
using RedisConvert = T (*)(RedisReply&&);

template <class T>
class RedisAwait final : public ClientAwait<RedisAwait<T>, RedisClient, RedisReply> {
    using Base = ClientAwait<RedisAwait<T>, RedisClient, RedisReply>;

  public:
    RedisAwait(RedisClient& client, std::vector<RedisArgs> commands, bool transaction,
               RedisConvert<T> convert)
        : Base(client),
          commands_(std::move(commands)),
          transaction_(transaction),
          convert_(convert) {}
    RedisClient::Id start(typename Base::Done done) {
        return transaction_
                   ? this->client_.transaction(std::move(commands_), std::move(done), this->scope_)
                   : this->client_.command(std::move(commands_.front()), std::move(done),
                                           this->scope_);
    }
    T await_resume() { return convert_(this->take()); }

  private:
    std::vector<RedisArgs> commands_;
    bool transaction_;
    RedisConvert<T> convert_;
};

inline RedisReply redis_as_reply(RedisReply&& r) {
    return std::move(r);
}
inline std::optional<std::string> redis_as_string(RedisReply&& r) {
    if (r.type == RedisReply::Type::nil) return std::nullopt;
    if (r.type != RedisReply::Type::string && r.type != RedisReply::Type::status)
        throw redis_unexpected(r, "a string");
    return std::move(r.str);
}
inline bool redis_as_ok(RedisReply&& r) {
    if (r.type != RedisReply::Type::status) throw redis_unexpected(r, "+OK");
    return true;
}
inline long long redis_as_integer(RedisReply&& r) {
    if (r.type != RedisReply::Type::integer) throw redis_unexpected(r, "an integer");
    return r.integer;
}

template <class T>
RedisAwait<T> redis_await(RedisClient& c, RedisArgs args, RedisConvert<T> convert) {
    std::vector<RedisArgs> one;
    one.push_back(std::move(args));
    return RedisAwait<T>(c, std::move(one), false, convert);
}

}  // namespace detail

inline auto RedisClient::call(RedisArgs args) {
    return detail::redis_await<RedisReply>(*this, std::move(args), detail::redis_as_reply);
}
inline auto RedisClient::exec(std::vector<RedisArgs> commands) {
    return detail::RedisAwait<RedisReply>(*this, std::move(commands), true, detail::redis_as_reply);
}
inline auto RedisClient::get(std::string key) {
    return detail::redis_await<std::optional<std::string>>(*this, {"GET", std::move(key)},
                                                           detail::redis_as_string);
}
inline auto RedisClient::set(std::string key, std::string value) {
    return detail::redis_await<bool>(*this, {"SET", std::move(key), std::move(value)},
                                     detail::redis_as_ok);
}
inline auto RedisClient::set(std::string key, std::string value, std::chrono::milliseconds ttl) {
    return detail::redis_await<bool>(
        *this, {"SET", std::move(key), std::move(value), "PX", std::to_string(ttl.count())},
        detail::redis_as_ok);
}
inline auto RedisClient::del(std::string key) {
    return detail::redis_await<long long>(*this, {"DEL", std::move(key)}, detail::redis_as_integer);
}
inline auto RedisClient::incr(std::string key) {
    return detail::redis_await<long long>(*this, {"INCR", std::move(key)},
                                          detail::redis_as_integer);
}

}  // namespace herd
