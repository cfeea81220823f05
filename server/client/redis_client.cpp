// herd's Redis client: hiredis's asynchronous context on the core loop; see redis_client.hpp.
//
// Rules hiredis 0.14 imposes (async.c): redisAsyncFree inside a reply callback is deferred
// until the callback returns, but inside the connect callback it frees at once under
// hiredis's feet, so herd frees only from its own timers and from reply callbacks. A free
// runs every outstanding callback with a NULL reply, then the adapter's cleanup, then the
// disconnect callback (only for a connection that was up; a failed connect reports through
// the connect callback first). The Conn (ac->data) stays alive until the loop's next turn.
#include "client/redis_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <hiredis/async.h>

#include <algorithm>
#include <cstring>

#include "client/redis_adapter.hpp"

namespace herd::client {

using Clock = core::EventLoop::Clock;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

struct RedisClient::Op {
    Id id = 0;
    Done done;
    bool finished = false;  // done called, or cancelled: a late reply is dropped
    int callbacks = 0;      // hiredis callbacks still to come: the record lives until then
    core::EventLoop::TimerId timer = 0;
    Clock::time_point started;
    std::vector<std::vector<std::string>> commands;  // until sent
    bool transaction = false;
    std::string name;  // "GET", for messages
};

struct RedisClient::Conn {
    RedisClient* self = nullptr;
    redisAsyncContext* ac = nullptr;  // null once hiredis has freed it (or is freeing it)
    bool connected = false;
    bool gone = false;  // lost() ran
    // Why herd closed it (set before redisAsyncFree), for the commands that fail with it.
    std::string why;
    ErrorKind kind = ErrorKind::closed;
};

namespace {

RedisReply convert(const redisReply* r) {
    RedisReply out;
    switch (r->type) {
        case REDIS_REPLY_STRING:
            out.type = RedisReply::Type::string;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_STATUS:
            out.type = RedisReply::Type::status;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_ERROR:
            out.type = RedisReply::Type::error;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_INTEGER:
            out.type = RedisReply::Type::integer;
            out.integer = r->integer;
            break;
        case REDIS_REPLY_ARRAY:
            out.type = RedisReply::Type::array;
            out.elements.reserve(r->elements);
            for (std::size_t i = 0; i < r->elements; ++i)
                out.elements.push_back(convert(r->element[i]));
            break;
        default:
            out.type = RedisReply::Type::nil;
    }
    return out;
}

RedisUrl checked(std::string_view url) {
    try {
        return parse_redis_url(url);
    } catch (const core::Error& e) {
        throw ClientError(ErrorKind::invalid, e.what());
    }
}

std::string first_word(const std::string& s) {
    return s.substr(0, std::min<std::size_t>(s.find(' '), 32));
}

}  // namespace

RedisClient::RedisClient(core::EventLoop& loop, std::string_view url, Options options)
    : loop_(loop),
      options_(std::move(options)),
      url_(checked(url)),
      describe_(url_.redacted()),
      resolver_(loop, options_.resolver) {}

RedisClient::~RedisClient() {
    destroying_ = true;
    *alive_ = false;
    for (auto t : {retry_timer_, connect_timer_, watchdog_})
        if (t != 0) loop_.cancel_timer(t);
    if (lookup_ != 0) resolver_.cancel(lookup_);
    for (auto& [id, op] : ops_)
        if (op->timer != 0) loop_.cancel_timer(op->timer);
    // Every outstanding callback runs now with NULL and finds destroying_ set.
    if (conn_ && conn_->ac != nullptr) redisAsyncFree(conn_->ac);
}

RedisClient::Id RedisClient::command(std::vector<std::string> args, Done done,
                                     Clock::time_point deadline, milliseconds timeout) {
    std::vector<std::vector<std::string>> one;
    one.push_back(std::move(args));
    return submit(std::move(one), false, std::move(done), deadline, timeout);
}

RedisClient::Id RedisClient::transaction(std::vector<std::vector<std::string>> commands, Done done,
                                         Clock::time_point deadline, milliseconds timeout) {
    return submit(std::move(commands), true, std::move(done), deadline, timeout);
}

RedisClient::Id RedisClient::submit(std::vector<std::vector<std::string>> commands,
                                    bool transaction, Done done, Clock::time_point deadline,
                                    milliseconds timeout) {
    Id id = next_id_++;
    auto owned = std::make_unique<Op>();
    Op& op = *owned;
    op.id = id;
    op.done = std::move(done);
    op.started = loop_.cached_now();
    op.transaction = transaction;
    op.name = transaction                               ? "MULTI ... EXEC"
              : commands.empty() || commands[0].empty() ? "(empty)"
                                                        : commands[0][0].substr(0, 32);
    ops_[id] = std::move(owned);
    ++requests_;

    std::optional<std::string> refused;
    if (commands.empty()) refused = "an empty transaction";
    for (const auto& c : commands)
        if (!refused) refused = refuse_redis_command(c);
    if (refused) {
        fail_now(op, ErrorKind::invalid, "Redis command refused: " + *refused);
        return id;
    }
    if (ops_.size() > options_.max_pending) {
        fail_now(op, ErrorKind::overloaded,
                 "Redis at " + describe_ + ": " + std::to_string(ops_.size() - 1) +
                     " commands wait for replies already (the limit)");
        return id;
    }
    milliseconds limit = timeout.count() > 0 ? timeout : options_.command_timeout;
    auto now = Clock::now();
    if (deadline <= now) {
        fail_now(op, ErrorKind::timeout,
                 "Redis " + op.name + ": its request's deadline has passed already");
        return id;
    }
    if (deadline - now < limit) limit = duration_cast<milliseconds>(deadline - now);
    if (limit.count() <= 0) limit = milliseconds(1);
    op.timer = loop_.add_timer(limit, [this, id, limit] {
        auto it = ops_.find(id);
        if (it == ops_.end()) return;
        it->second->timer = 0;
        ClientError e(ErrorKind::timeout, "Redis " + it->second->name + " at " + describe_ +
                                              " timed out after " + std::to_string(limit.count()) +
                                              " ms");
        finish(*it->second, {}, &e);
    });
    if (state_ == State::down) {
        auto wait = duration_cast<milliseconds>(std::max(retry_at_ - now, Clock::duration(0)));
        fail_now(op, ErrorKind::connect,
                 "Redis at " + describe_ + " is down (" + down_why_ + "); next attempt in " +
                     std::to_string(wait.count()) + " ms");
        return id;
    }
    op.commands = std::move(commands);
    if (state_ == State::idle) connect();
    if (state_ == State::connecting || state_ == State::up) send(op);
    // resolving: sent when the address is known (or failed then).
    return id;
}

void RedisClient::fail_now(Op& op, ErrorKind kind, const std::string& why) {
    // Never inside command(): the failure reaches done from the loop.
    loop_.post([this, alive = alive_, id = op.id, kind, why] {
        if (!*alive) return;
        auto it = ops_.find(id);
        if (it == ops_.end()) return;
        ClientError e(kind, why);
        finish(*it->second, {}, &e);
    });
}

void RedisClient::send(Op& op) {
    if (op.commands.empty()) return;  // sent already (open() sends what waited)
    redisAsyncContext* ac = conn_ ? conn_->ac : nullptr;
    auto put = [&](const std::vector<std::string>& args) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const auto& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        if (ac == nullptr ||
            redisAsyncCommandArgv(ac, &RedisClient::reply_cb, &op, static_cast<int>(argv.size()),
                                  argv.data(), lens.data()) != REDIS_OK)
            return false;
        ++op.callbacks;
        if (awaiting_++ == 0) last_progress_ = Clock::now();
        return true;
    };
    bool ok = true;
    if (op.transaction) ok = put({"MULTI"});
    for (const auto& c : op.commands)
        if (ok) ok = put(c);
    if (op.transaction && ok) ok = put({"EXEC"});
    op.commands.clear();
    if (!ok) {
        // Only a connection hiredis is already closing refuses a command; what was queued
        // fails with it, the rest now.
        fail_now(op, ErrorKind::closed, "Redis at " + describe_ + ": the connection is closing");
    }
    arm_watchdog();
}

void RedisClient::reply_cb(redisAsyncContext* ac, void* reply, void* privdata) {
    auto* c = static_cast<Conn*>(ac->data);
    RedisClient& self = *c->self;
    const char* hiredis_error = ac->err != 0 ? ac->errstr : nullptr;
    if (privdata == nullptr) {
        // AUTH or SELECT, sent first on a new connection.
        if (self.awaiting_ > 0) --self.awaiting_;
        if (reply == nullptr || self.destroying_) return;
        self.last_progress_ = Clock::now();
        auto* r = static_cast<redisReply*>(reply);
        if (r->type == REDIS_REPLY_ERROR && c->why.empty()) {
            // The error's text, never the password.
            c->why = self.url_.scrub(
                "Redis at " + self.describe_ +
                " refused the connection's set-up: " + std::string(r->str, r->len).substr(0, 200));
            c->kind = ErrorKind::connect;
            redisAsyncFree(ac);  // deferred by hiredis until this callback returns
        }
        return;
    }
    self.on_reply(*c, *static_cast<Op*>(privdata), reply, hiredis_error);
}

void RedisClient::on_reply(Conn& c, Op& op, void* raw, const char* hiredis_error) {
    --op.callbacks;
    if (awaiting_ > 0) --awaiting_;
    if (destroying_) {
        if (op.callbacks == 0) ops_.erase(op.id);
        return;
    }
    auto* r = static_cast<redisReply*>(raw);
    if (r != nullptr) {
        last_progress_ = Clock::now();
        backoff_ = milliseconds(0);  // it answers: the next outage starts from the bottom
    }
    if (op.finished) {
        // Timed out or cancelled before: the late reply is dropped, and the record with it
        // once hiredis owes it nothing more.
        if (op.callbacks == 0) ops_.erase(op.id);
        return;
    }
    // finish() drops the record when no callback is owed any more: op is not used after it.
    if (r == nullptr) {
        // The connection went: herd's reason, or hiredis's.
        std::string cause = hiredis_error != nullptr ? hiredis_error : "closed";
        std::string why =
            !c.why.empty() ? c.why
            : c.connected
                ? url_.scrub("the connection to Redis at " + describe_ + " broke: " + cause)
                : url_.scrub("cannot connect to Redis at " + describe_ + ": " + cause);
        ErrorKind kind = !c.why.empty() ? c.kind
                         : c.connected  ? ErrorKind::closed
                                        : ErrorKind::connect;
        ClientError e(kind, op.name + " failed: " + why);
        finish(op, {}, &e);
    } else if (op.callbacks == 0) {
        // The reply (a transaction's: EXEC's, the last).
        RedisReply reply = convert(r);
        if (reply.type == RedisReply::Type::error) {
            ClientError e(ErrorKind::server, "Redis: " + reply.str.substr(0, 500),
                          first_word(reply.str));
            finish(op, {}, &e);
        } else {
            finish(op, std::move(reply), nullptr);
        }
    }
}

void RedisClient::finish(Op& op, RedisReply reply, const ClientError* error) {
    if (op.finished) return;
    op.finished = true;
    if (op.timer != 0) loop_.cancel_timer(std::exchange(op.timer, 0));
    if (error != nullptr)
        ++errors_[error_kind_name(error->kind())];
    else
        replies_.record(200, std::chrono::duration<double>(Clock::now() - op.started).count());
    Done done = std::move(op.done);
    if (op.callbacks == 0) ops_.erase(op.id);  // op is gone from here on
    if (done) done(std::move(reply), error);
}

bool RedisClient::cancel(Id id) {
    auto it = ops_.find(id);
    if (it == ops_.end() || it->second->finished) return false;
    Op& op = *it->second;
    op.finished = true;
    op.done = nullptr;
    if (op.timer != 0) loop_.cancel_timer(std::exchange(op.timer, 0));
    ++errors_[error_kind_name(ErrorKind::cancelled)];
    if (op.callbacks == 0) ops_.erase(it);  // else its reply finds it finished and drops it
    return true;
}

void RedisClient::connect() {
    in6_addr a6;
    in_addr a4;
    if (url_.unix_socket || inet_pton(AF_INET, url_.host.c_str(), &a4) == 1 ||
        inet_pton(AF_INET6, url_.host.c_str(), &a6) == 1) {
        open(url_.unix_socket ? url_.path : url_.host);
        return;
    }
    // A name: c-ares first, as redisAsyncConnect would block in getaddrinfo.
    state_ = State::resolving;
    lookup_ = resolver_.resolve(
        url_.host, static_cast<std::uint16_t>(url_.port),
        [this](std::vector<sockaddr_storage> addresses, std::string error) {
            lookup_ = 0;
            if (addresses.empty()) {
                went_down(error);
                for (auto& [id, op] : ops_)
                    if (!op->finished && !op->commands.empty())
                        fail_now(*op, ErrorKind::resolve, "Redis at " + describe_ + ": " + error);
                return;
            }
            char text[INET6_ADDRSTRLEN] = {};
            const auto& a = addresses.front();
            const void* raw =
                a.ss_family == AF_INET6
                    ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr)
                    : &reinterpret_cast<const sockaddr_in&>(a).sin_addr;
            inet_ntop(a.ss_family, raw, text, sizeof text);
            open(text);
        });
}

void RedisClient::open(const std::string& address) {
    redisAsyncContext* ac = url_.unix_socket ? redisAsyncConnectUnix(address.c_str())
                                             : redisAsyncConnect(address.c_str(), url_.port);
    if (ac == nullptr || ac->err != 0 || !attach_to_loop(ac, loop_)) {
        std::string why = ac != nullptr && ac->err != 0 ? ac->errstr : "cannot watch its socket";
        if (ac != nullptr) redisAsyncFree(ac);
        went_down("cannot connect: " + why);
        for (auto& [id, op] : ops_)
            if (!op->finished && !op->commands.empty())
                fail_now(*op, ErrorKind::connect,
                         "cannot connect to Redis at " + describe_ + ": " + why);
        return;
    }
    conn_ = std::make_unique<Conn>();
    Conn& c = *conn_;
    c.self = this;
    c.ac = ac;
    ac->data = &c;
    redisAsyncSetConnectCallback(ac, &RedisClient::connect_cb);
    redisAsyncSetDisconnectCallback(ac, &RedisClient::disconnect_cb);
    state_ = State::connecting;
    // The connect completes on writability, whether or not a command is queued yet.
    ac->ev.addWrite(ac->ev.data);
    connect_timer_ = loop_.add_timer(options_.connect_timeout, [this] {
        connect_timer_ = 0;
        if (!conn_ || conn_->ac == nullptr || conn_->connected) return;
        drop("connecting to Redis at " + describe_ + " timed out after " +
             std::to_string(options_.connect_timeout.count()) + " ms");
    });
    // The URL's credentials and database go first, before any command of a plugin.
    auto setup = [&](std::vector<std::string> args) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const auto& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        if (redisAsyncCommandArgv(ac, &RedisClient::reply_cb, nullptr,
                                  static_cast<int>(argv.size()), argv.data(),
                                  lens.data()) == REDIS_OK)
            ++awaiting_;
    };
    if (!url_.password.empty()) {
        if (url_.user.empty())
            setup({"AUTH", url_.password});
        else
            setup({"AUTH", url_.user, url_.password});
    }
    if (url_.db != 0) setup({"SELECT", std::to_string(url_.db)});
    if (awaiting_ > 0) last_progress_ = Clock::now();
    // Commands that waited for the address.
    for (auto& [id, op] : ops_)
        if (!op->finished && !op->commands.empty()) send(*op);
}

void RedisClient::connect_cb(const redisAsyncContext* ac, int status) {
    auto* c = static_cast<Conn*>(ac->data);
    if (status != REDIS_OK && c->why.empty()) {
        c->why = c->self->url_.scrub("cannot connect to Redis at " + c->self->describe_ + ": " +
                                     ac->c.errstr);
        c->kind = ErrorKind::connect;
    }
    c->self->on_connected(*c, status == REDIS_OK);
}

void RedisClient::disconnect_cb(const redisAsyncContext* ac, int) {
    auto* c = static_cast<Conn*>(ac->data);
    if (c->why.empty())
        c->why = c->self->url_.scrub("the connection to Redis at " + c->self->describe_ +
                                     " broke: " + (ac->err != 0 ? ac->errstr : "closed"));
    c->self->lost(*c);
}

void RedisClient::on_connected(Conn& c, bool ok) {
    if (connect_timer_ != 0) loop_.cancel_timer(std::exchange(connect_timer_, 0));
    if (!ok) {
        lost(c);  // hiredis frees it when this returns; its commands fail with c.why
        return;
    }
    c.connected = true;
    state_ = State::up;
}

void RedisClient::drop(const std::string& why) {
    if (!conn_ || conn_->ac == nullptr) return;
    Conn& c = *conn_;
    c.why = why;
    c.kind = c.connected ? ErrorKind::closed : ErrorKind::timeout;
    redisAsyncFree(c.ac);  // a connection that was up reports through disconnect_cb
    lost(c);
}

void RedisClient::lost(Conn& c) {
    // Inside hiredis's free, or just before it: only bookkeeping; the Conn dies on the loop's
    // next turn.
    if (c.gone) return;
    c.gone = true;
    c.ac = nullptr;
    awaiting_ = 0;
    if (watchdog_ != 0) loop_.cancel_timer(std::exchange(watchdog_, 0));
    if (connect_timer_ != 0) loop_.cancel_timer(std::exchange(connect_timer_, 0));
    if (destroying_) return;
    std::string why = !c.why.empty() ? c.why : "the connection closed";
    if (conn_.get() == &c) {
        dead_.push_back(std::move(conn_));
        loop_.post([this, alive = alive_] {
            if (*alive) dead_.clear();
        });
    }
    went_down(why);
}

void RedisClient::went_down(const std::string& why) {
    if (destroying_) return;
    state_ = State::down;
    down_why_ = why.substr(0, 300);
    backoff_ =
        backoff_.count() == 0 ? options_.backoff_min : std::min(backoff_ * 2, options_.backoff_max);
    retry_at_ = Clock::now() + backoff_;
    if (retry_timer_ != 0) loop_.cancel_timer(retry_timer_);
    retry_timer_ = loop_.add_timer(backoff_, [this] {
        retry_timer_ = 0;
        if (state_ == State::down) connect();
    });
}

void RedisClient::arm_watchdog() {
    if (watchdog_ != 0 || awaiting_ == 0 || !conn_) return;
    watchdog_ = loop_.add_timer_at(last_progress_ + options_.stall_timeout, [this] {
        watchdog_ = 0;
        if (awaiting_ == 0) return;
        if (Clock::now() - last_progress_ >= options_.stall_timeout) {
            drop("Redis at " + describe_ + " answered nothing for " +
                 std::to_string(options_.stall_timeout.count()) + " ms while " +
                 std::to_string(awaiting_) + " commands waited; reconnecting");
            return;
        }
        arm_watchdog();
    });
}

core::ClientStats RedisClient::stats() const {
    core::ClientStats s;
    s.requests = requests_;
    s.responses = replies_;
    s.errors = errors_;
    s.open = state_ == State::up ? 1 : 0;
    s.idle = state_ == State::up && awaiting_ == 0 ? 1 : 0;
    for (const auto& [id, op] : ops_)
        if (!op->finished) ++s.waiting;
    return s;
}

}  // namespace herd::client
