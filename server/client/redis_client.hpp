// herd's Redis client on the worker's own loop (core::EventLoop): hiredis's asynchronous API
// (Debian's 0.14) driven by redis_adapter.hpp, one pipelined connection per client, URLs as
// redis_url.hpp reads them (redis://, unix://; the broker's too).
//
// hiredis 0.14 has no timeouts, so herd times everything itself: the connect, every command
// (cut to the caller's deadline), and the connection as a whole (no reply for stall_timeout
// while commands wait: it is closed and opened again). A command that timed out or was
// cancelled keeps its callback data until hiredis answers it (or frees the connection), so
// a late reply lands on a record that says "drop me". While Redis is down commands fail at
// once; the client reconnects by itself, with a back-off. Names are looked up with c-ares
// first (redisAsyncConnect would block in getaddrinfo). The password goes out in AUTH and
// nowhere else: describe() and every message leave it out.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <herd/redis.hpp>

#include "client/client_error.hpp"
#include "client/redis_url.hpp"
#include "client/resolver.hpp"
#include "core/client_stats.hpp"
#include "core/event_loop.hpp"

struct redisAsyncContext;

namespace herd::client {

using RedisReply = herd::RedisReply;

// Why a command may not go on a shared connection (AUTH, SELECT, SUBSCRIBE, MULTI, BLPOP...),
// or nullopt when it may.
std::optional<std::string> refuse_redis_command(const std::vector<std::string>& args);

class RedisClient {
  public:
    struct Options {
        std::chrono::milliseconds command_timeout{5000};
        std::chrono::milliseconds connect_timeout{5000};
        std::chrono::milliseconds stall_timeout{10000};  // no reply while commands wait
        std::chrono::milliseconds backoff_min{100}, backoff_max{2000};
        std::size_t max_pending = 100000;  // commands waiting for replies: beyond, overloaded
        Resolver::Options resolver;
    };
    using Id = std::uint64_t;
    using Done = std::function<void(RedisReply reply, const ClientError* error)>;
    enum class State { idle, resolving, connecting, up, down };

    // Throws ClientError(invalid) for a bad URL (the message never quotes the password).
    // Connects at the first command.
    RedisClient(core::EventLoop& loop, std::string_view url, Options options);
    RedisClient(core::EventLoop& loop, std::string_view url) : RedisClient(loop, url, Options()) {}
    ~RedisClient();  // no handler is called; the connection is closed
    RedisClient(const RedisClient&) = delete;
    RedisClient& operator=(const RedisClient&) = delete;

    // done runs in the loop, never inside these calls, exactly once unless cancelled. timeout
    // zero: the client's; deadline: the caller's own, which no timeout passes.
    Id command(
        std::vector<std::string> args, Done done,
        core::EventLoop::Clock::time_point deadline = core::EventLoop::Clock::time_point::max(),
        std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
    // MULTI, each command, EXEC in one write; done gets EXEC's reply.
    Id transaction(
        std::vector<std::vector<std::string>> commands, Done done,
        core::EventLoop::Clock::time_point deadline = core::EventLoop::Clock::time_point::max(),
        std::chrono::milliseconds timeout = std::chrono::milliseconds(0));
    bool cancel(Id id);

    State state() const { return state_; }
    const std::string& describe() const { return describe_; }
    core::ClientStats stats() const;

  private:
    struct Op;
    struct Conn;
    friend struct Conn;

    Id submit(std::vector<std::vector<std::string>> commands, bool transaction, Done done,
              core::EventLoop::Clock::time_point deadline, std::chrono::milliseconds timeout);
    void connect();
    void open(const std::string& address);
    void send(Op& op);
    void fail_now(Op& op, ErrorKind kind, const std::string& why);
    void finish(Op& op, RedisReply reply, const ClientError* error);
    void on_reply(Conn& c, Op& op, void* reply, const char* hiredis_error);
    void on_connected(Conn& c, bool ok);
    void lost(Conn& c);
    void drop(const std::string& why);
    void arm_watchdog();
    void went_down(const std::string& why);
    static void reply_cb(redisAsyncContext* ac, void* reply, void* privdata);
    static void connect_cb(const redisAsyncContext* ac, int status);
    static void disconnect_cb(const redisAsyncContext* ac, int status);

    core::EventLoop& loop_;
    Options options_;
    RedisUrl url_;
    std::string describe_;
    Resolver resolver_;
    std::uint64_t lookup_ = 0;
    State state_ = State::idle;
    std::unique_ptr<Conn> conn_;
    std::vector<std::unique_ptr<Conn>> dead_;  // freed by hiredis, destroyed from the loop
    std::map<Id, std::unique_ptr<Op>> ops_;    // every op hiredis or the caller still holds
    std::string down_why_;                     // while down: what happened, for fail-fast
    core::EventLoop::Clock::time_point retry_at_{};
    std::chrono::milliseconds backoff_{0};
    core::EventLoop::TimerId retry_timer_ = 0, connect_timer_ = 0, watchdog_ = 0;
    core::EventLoop::Clock::time_point last_progress_{};  // a reply, or commands started waiting
    std::size_t awaiting_ = 0;  // hiredis callbacks outstanding on the live connection
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    Id next_id_ = 1;
    std::uint64_t requests_ = 0;
    std::map<std::string, std::uint64_t> errors_;
    core::RequestStats replies_;
    bool destroying_ = false;
};

}  // namespace herd::client
