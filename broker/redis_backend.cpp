// The Redis backend; see redis_backend.hpp.
#include "broker/redis_backend.hpp"

#include <time.h>

#include <algorithm>

#include <fmt/format.h>

#include "broker/redis_reply.hpp"
#include "client/redis_adapter.hpp"
#include "core/log.hpp"
#include "state/codec.hpp"

namespace herd::broker {
namespace {

using Clock = core::EventLoop::Clock;
using std::chrono::milliseconds;

constexpr std::string_view write_script =
    R"lua(-- herd state write, version 1. KEYS[1]: <prefix>data (hash), KEYS[2]: <prefix>version
-- (counter). ARGV[1]: <prefix>changes (channel), ARGV[2]: "set" or "del", ARGV[3]: the key,
-- ARGV[4]: the value as JSON text (set only). Returns the version that includes the write.
local op, key, value = ARGV[2], ARGV[3], ARGV[4]
if type(key) ~= 'string' or #key == 0 or #key > 1024 or string.find(key, '%c') then
  return redis.error_reply('herd: the key must be 1 to 1024 bytes without control characters')
end
if op == 'set' then
  if type(value) ~= 'string' or #value > 1048576 or not pcall(cjson.decode, value) then
    return redis.error_reply('herd: the value must be JSON text of at most 1048576 bytes')
  end
  local v = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], key, value)
  redis.call('PUBLISH', ARGV[1], string.format('{"version":%d,"key":%s,"value":%s}', v,
    cjson.encode(key), value))
  return v
elseif op == 'del' then
  if redis.call('HEXISTS', KEYS[1], key) == 0 then
    return tonumber(redis.call('GET', KEYS[2]) or '0')
  end
  local v = redis.call('INCR', KEYS[2])
  redis.call('HDEL', KEYS[1], key)
  redis.call('PUBLISH', ARGV[1], string.format('{"version":%d,"key":%s,"erased":true}', v,
    cjson.encode(key)))
  return v
end
return redis.error_reply('herd: the operation must be "set" or "del"')
)lua";

std::string clock_text(std::chrono::system_clock::time_point t) {
    time_t secs = std::chrono::system_clock::to_time_t(t);
    tm local{};
    localtime_r(&secs, &local);
    char buf[32];
    size_t n = strftime(buf, sizeof buf, "%H:%M:%S", &local);
    return std::string(buf, n);
}

}  // namespace

std::string_view redis_write_script() {
    return write_script;
}

struct RedisBackend::Call {
    RedisBackend* self;
    std::uint64_t session;
    ReplyFn fn;
};

RedisBackend::RedisBackend(core::EventLoop& loop, RedisStateConfig config, Events events)
    : Backend(loop, std::move(events)),
      config_(std::move(config)),
      target_(config_.parsed),
      data_key_(config_.prefix + "data"),
      version_key_(config_.prefix + "version"),
      channel_(config_.prefix + "changes"),
      reconnect_delay_(config_.reconnect_min_ms),
      sentinels_(config_.sentinels) {
    last_error_ = "not connected yet";
}

RedisBackend::~RedisBackend() {
    closing_ = true;
    cancel_timers();
    if (reconnect_timer_ != 0) loop_.cancel_timer(reconnect_timer_);
    // Pending callbacks run now with no reply; closing_ makes them only free their Call.
    if (auto* c = std::exchange(cmd_, nullptr)) redisAsyncFree(c);
    if (auto* s = std::exchange(sub_, nullptr)) redisAsyncFree(s);
    if (probe_timer_ != 0) loop_.cancel_timer(probe_timer_);
    if (auto* p = std::exchange(probe_, nullptr)) redisAsyncFree(p);
    drop_watchers();
}

void RedisBackend::start() {
    core::log_info("state: Redis backend at {}, keys {}data and {}version, channel {}",
                   target_text(), config_.prefix, config_.prefix, channel_);
    connect();
}

std::string RedisBackend::target_text() const {
    if (!config_.uses_sentinels()) return config_.parsed.redacted();
    std::string list;
    for (const auto& a : config_.sentinels) list += (list.empty() ? "" : ",") + a.text();
    // The primary's URL first: `herd status` shows the target, and so where the primary is.
    std::string via = "primary \"" + config_.master_name + "\" from sentinels " + list;
    if (target_.host.empty()) return via + " (asking them)";
    return target_.redacted() + " (" + via + ")";
}

std::string RedisBackend::endpoint() const {
    if (config_.uses_sentinels() && target_.host.empty())
        return "(the primary \"" + config_.master_name + "\", asking the sentinels)";
    return target_.endpoint();
}

// ---- connections ----

void RedisBackend::connect() {
    reconnect_timer_ = 0;
    ++session_;
    cmd_ready_ = subscribed_ = synced_ = false;
    resync_inflight_ = resync_again_ = false;
    teardown_scheduled_ = false;
    inflight_.clear();
    sha_.clear();
    if (config_.uses_sentinels()) {
        drop_probe();
        drop_watchers();
        probe_errors_.clear();
        target_.host.clear();  // never the last address: the sentinels say it again
        ask_sentinel(0);
    } else {
        connect_data();
    }
}

void RedisBackend::connect_data() {
    const RedisUrl& url = target_;
    for (redisAsyncContext** slot : {&cmd_, &sub_}) {
        redisAsyncContext* c = url.unix_socket ? redisAsyncConnectUnix(url.path.c_str())
                                               : redisAsyncConnect(url.host.c_str(), url.port);
        if (c == nullptr) {
            lose_session("cannot connect to Redis at " + url.endpoint() + ": out of memory");
            return;
        }
        if (c->err != 0) {
            std::string why = c->errstr != nullptr ? c->errstr : "unknown error";
            redisAsyncFree(c);
            lose_session("cannot connect to Redis at " + url.endpoint() + ": " + why);
            return;
        }
        client::attach_to_loop(c, loop_);
        c->data = this;
        redisAsyncSetConnectCallback(c, &RedisBackend::on_connect);
        redisAsyncSetDisconnectCallback(c, &RedisBackend::on_disconnect);
        // TCP only (it sets an error on a unix socket): a vanished peer is noticed without
        // traffic. A frozen one is caught by the command timeout.
        if (!url.unix_socket) (void)redisEnableKeepAlive(&c->c);
        *slot = c;
    }
    std::uint64_t s = session_;
    auto auth_args = [&] {
        std::vector<std::string> a{"AUTH"};
        if (!url.user.empty()) a.push_back(url.user);
        a.push_back(url.password);
        return a;
    };
    bool ok = true;
    if (!url.password.empty())
        ok = ok && send(cmd_, auth_args(), [this, s](redisReply* r) {
                 if (s == session_) on_hello_reply(r, "AUTH");
             });
    if (url.db != 0)
        ok = ok && send(cmd_, {"SELECT", std::to_string(url.db)}, [this, s](redisReply* r) {
                 if (s == session_) on_hello_reply(r, "SELECT");
             });
    // Before the script and the full read: the sentinels' answer may be stale.
    if (config_.uses_sentinels())
        ok = ok && send(cmd_, {"ROLE"}, [this, s](redisReply* r) {
                 if (s == session_) on_role_reply(r);
             });
    ok = ok && send(cmd_, {"SCRIPT", "LOAD", std::string(write_script)}, [this, s](redisReply* r) {
             if (s != session_ || r == nullptr || teardown_scheduled_) return;
             if (r->type == REDIS_REPLY_STRING)
                 sha_ = reply_text(r);
             else
                 core::log_warn("Redis SCRIPT LOAD failed ({}); writes use EVAL",
                                scrub(r->type == REDIS_REPLY_ERROR ? reply_text(r)
                                                                   : reply_type_name(r->type)));
             cmd_ready_ = true;
             maybe_sync();
         });
    if (!url.password.empty())
        ok = ok && send(sub_, auth_args(), [this, s](redisReply* r) {
                 if (s != session_ || r == nullptr) return;
                 on_hello_reply(r, "AUTH");
                 if (!teardown_scheduled_) subscribe();
             });
    else
        subscribe();
    if (!ok) {
        lose_session("cannot send commands to Redis at " + url.endpoint());
        return;
    }
    connect_timer_ = loop_.add_timer(milliseconds(config_.connect_timeout_ms), [this, s] {
        connect_timer_ = 0;
        if (s == session_ && !synced_)
            lose_session(fmt::format("Redis at {} did not answer within {} ms", endpoint(),
                                     config_.connect_timeout_ms));
    });
}

void RedisBackend::on_hello_reply(redisReply* r, const char* what) {
    if (r == nullptr || teardown_scheduled_) return;
    if (r->type == REDIS_REPLY_ERROR)
        lose_session(fmt::format("Redis at {} refused {}: {}", endpoint(), what, reply_text(r)));
}

void RedisBackend::subscribe() {
    if (sub_ == nullptr) return;
    const char* argv[] = {"SUBSCRIBE", channel_.c_str()};
    const size_t lens[] = {9, channel_.size()};
    if (redisAsyncCommandArgv(sub_, &RedisBackend::on_sub_message, this, 2, argv, lens) !=
        REDIS_OK) {
        lose_session("cannot subscribe to " + channel_);
        return;
    }
    ++commands_;
}

void RedisBackend::on_connect(const redisAsyncContext* c, int status) {
    auto* self = static_cast<RedisBackend*>(c->data);
    if (self == nullptr || self->closing_ || status == REDIS_OK) return;
    if (c == self->probe_)
        return self->context_gone(
            c, std::string("cannot connect: ") + (c->errstr != nullptr ? c->errstr : "error"));
    self->context_gone(c, "cannot connect to Redis at " + self->endpoint() + ": " +
                              (c->errstr != nullptr ? c->errstr : "unknown error"));
}

void RedisBackend::on_disconnect(const redisAsyncContext* c, int status) {
    auto* self = static_cast<RedisBackend*>(c->data);
    if (self == nullptr || self->closing_) return;
    if (c == self->probe_)
        return self->context_gone(c, status == REDIS_OK
                                         ? std::string("closed the connection")
                                         : std::string("connection lost: ") +
                                               (c->errstr != nullptr ? c->errstr : "error"));
    self->context_gone(c, status == REDIS_OK
                              ? "Redis at " + self->endpoint() + " closed the connection"
                              : "connection to Redis at " + self->endpoint() +
                                    " lost: " + (c->errstr != nullptr ? c->errstr : "error"));
}

void RedisBackend::context_gone(const redisAsyncContext* c, const std::string& why) {
    // hiredis frees this context itself once the callback returns: forget it first.
    if (c == cmd_) {
        cmd_ = nullptr;
        inflight_.clear();
    } else if (c == sub_) {
        sub_ = nullptr;
    } else if (c == probe_) {
        // A sentinel: while being asked, the next one is; afterwards only the +switch-master
        // hint is gone, the session stays.
        probe_ = nullptr;
        if (probe_answered_) {
            core::log_debug("sentinel {}: {}; no +switch-master hints until the next resolution",
                            sentinels_[probe_index_].text(), why);
            probe_answered_ = false;
        } else {
            sentinel_failed(why);
        }
        return;
    } else {
        // A sentinel watched during the back-off: only its hints are gone.
        std::erase_if(watchers_, [c](const Watcher& w) { return w.context == c; });
        return;  // or one we freed ourselves
    }
    lose_session(why);
}

void RedisBackend::lose_session(const std::string& raw_why) {
    if (teardown_scheduled_) return;
    teardown_scheduled_ = true;
    std::string why = scrub(raw_why);
    if (synced_) {
        core::log_error(
            "state backend down: {}; workers keep the last state (version {}); "
            "writes fail until Redis is back; reconnecting",
            why, store_.version());
    } else if (!logged_down_ || last_error_ != why) {
        core::log_warn("{}; retrying with back-off up to {} ms", why, config_.reconnect_max_ms);
    } else {
        core::log_debug("{}", why);
    }
    logged_down_ = true;
    synced_ = false;
    mark_down(why);
    // Never free a context from inside hiredis: after the current batch.
    std::uint64_t s = session_;
    defer([this, s] {
        if (s == session_ && teardown_scheduled_) teardown();
    });
}

void RedisBackend::teardown() {
    cancel_timers();
    ++session_;  // replies still due belong to the old session
    cmd_ready_ = subscribed_ = synced_ = false;
    resync_inflight_ = resync_again_ = false;
    inflight_.clear();
    // Pending writes get their "connection lost" callbacks inside these frees.
    if (auto* c = std::exchange(cmd_, nullptr)) redisAsyncFree(c);
    if (auto* s = std::exchange(sub_, nullptr)) redisAsyncFree(s);
    drop_probe();
    if (config_.uses_sentinels()) watch_sentinels();
    // Writes Redis confirmed but whose notice has not come: they are applied, so they are
    // answered as done now rather than held for an outage of unknown length (the writer's
    // copy gets them once the broker reads Redis again).
    auto waiting = std::move(awaiting_);
    awaiting_.clear();
    for (auto& [v, done] : waiting) done("", v);
    // Writes held for the next WAIT were never sent.
    auto held = std::move(held_);
    held_.clear();
    wait_out_ = false;
    for (auto& [change, done] : held) done(down_text(), 0);
    schedule_reconnect();
}

void RedisBackend::schedule_reconnect() {
    if (closing_ || reconnect_timer_ != 0) return;
    auto delay = reconnect_delay_;
    reconnect_delay_ = std::min(reconnect_delay_ * 2, milliseconds(config_.reconnect_max_ms));
    ++reconnects_;
    reconnect_timer_ = loop_.add_timer(delay, [this] { connect(); });
}

bool RedisBackend::send(redisAsyncContext* context, const std::vector<std::string>& args,
                        ReplyFn fn) {
    if (context == nullptr) return false;
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    auto* call = new Call{this, session_, std::move(fn)};
    if (redisAsyncCommandArgv(context, &RedisBackend::on_reply, call, static_cast<int>(argv.size()),
                              argv.data(), lens.data()) != REDIS_OK) {
        delete call;
        return false;
    }
    ++commands_;
    if (context == cmd_) inflight_.push_back(Clock::now());
    return true;
}

void RedisBackend::on_reply(redisAsyncContext* c, void* reply, void* privdata) {
    std::unique_ptr<Call> call(static_cast<Call*>(privdata));
    RedisBackend* self = call->self;
    if (self->closing_) return;
    if (c == self->cmd_ && call->session == self->session_ && !self->inflight_.empty())
        self->inflight_.pop_front();
    if (!call->fn) return;
    try {
        call->fn(static_cast<redisReply*>(reply));
    } catch (const std::exception& e) {
        // Never let an exception unwind through hiredis's C frames.
        core::log_error("handling a Redis reply: {}", self->scrub(e.what()));
    }
}

void RedisBackend::on_sub_message(redisAsyncContext* c, void* reply, void* privdata) {
    auto* self = static_cast<RedisBackend*>(privdata);
    auto* r = static_cast<redisReply*>(reply);
    if (self->closing_ || c != self->sub_ || r == nullptr) return;
    try {
        if (r->type == REDIS_REPLY_ERROR) {
            self->lose_session("Redis refused SUBSCRIBE " + self->channel_ + ": " + reply_text(r));
            return;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
            r->element[0]->type != REDIS_REPLY_STRING)
            return;
        std::string kind = reply_text(r->element[0]);
        if (kind == "subscribe") {
            self->subscribed_ = true;
            self->maybe_sync();
        } else if (kind == "message" && r->element[2]->type == REDIS_REPLY_STRING) {
            self->on_notice(std::string_view(r->element[2]->str, r->element[2]->len));
        }
    } catch (const std::exception& e) {
        core::log_error("handling a Redis change notice: {}", self->scrub(e.what()));
    }
}

// ---- writing ----

std::string RedisBackend::down_text() const {
    std::string since;
    if (down_since_) {
        auto secs = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now() - *down_since_)
                        .count();
        since = fmt::format(" since {} ({} s)", clock_text(*down_since_), secs);
    }
    return fmt::format("the Redis state backend at {} is down{}: {}; the write was not applied",
                       endpoint(), since, last_error_.empty() ? "not connected" : last_error_);
}

void RedisBackend::write(state::Change change, WriteDone done) {
    if (!synced_ || cmd_ == nullptr || teardown_scheduled_) {
        defer([done = std::move(done), text = down_text()] { done(text, 0); });
        return;
    }
    if (config_.min_replicas_ack == 0)
        return send_write(change, std::move(done), !sha_.empty(), {});
    held_.emplace_back(std::move(change), std::move(done));
    if (!wait_out_) send_held();
}

void RedisBackend::send_held() {
    auto batch = std::make_shared<AckBatch>();
    auto writes = std::move(held_);
    held_.clear();
    for (auto& [change, done] : writes) {
        if (teardown_scheduled_)
            held_.emplace_back(std::move(change), std::move(done));  // teardown fails them
        else
            send_write(change, std::move(done), !sha_.empty(), batch);
    }
    if (teardown_scheduled_) return;
    std::uint64_t s = session_;
    ++waits_;
    wait_out_ = true;
    // Every reply of the session comes, or the callback runs with none when the connection
    // goes: the batch is always answered.
    bool sent = send(cmd_,
                     {"WAIT", std::to_string(config_.min_replicas_ack),
                      std::to_string(config_.replica_ack_timeout_ms)},
                     [this, s, batch](redisReply* r) {
                         on_wait_reply(r, *batch);
                         if (s != session_) return;
                         wait_out_ = false;
                         if (!held_.empty() && synced_ && cmd_ != nullptr && !teardown_scheduled_)
                             send_held();
                     });
    if (!sent) {
        wait_out_ = false;
        lose_session("cannot send commands to Redis at " + endpoint());
    }
}

void RedisBackend::on_wait_reply(redisReply* r, AckBatch& batch) {
    if (batch.confirmed.empty()) return;
    const int wanted = config_.min_replicas_ack;
    std::string why;
    if (r == nullptr)
        why = "the connection was lost before the replicas confirmed it";
    else if (r->type == REDIS_REPLY_ERROR)
        why = "Redis refused WAIT: " + scrub(reply_text(r));
    else if (r->type != REDIS_REPLY_INTEGER)
        why = fmt::format("Redis answered WAIT with {}", reply_type_name(r->type));
    else if (r->integer >= wanted) {
        if (replicas_behind_) core::log_info("state: the replicas confirm writes again");
        replicas_behind_ = false;
        for (auto& u : batch.confirmed) applied(u.version, std::move(u.done));
        return;
    } else
        why = fmt::format(
            "only {} of the {} replica(s) required (min_replicas_ack) confirmed "
            "it within {} ms",
            r->integer, wanted, config_.replica_ack_timeout_ms);
    if (!replicas_behind_)
        core::log_warn("state: writes not confirmed by replicas fail from now on: {}", why);
    replicas_behind_ = true;
    for (auto& u : batch.confirmed) {
        ++unconfirmed_writes_;
        u.done(fmt::format("the write of {} was applied on the Redis primary at {} (version {}), "
                           "but {}; it may be lost if the primary fails",
                           state::quote_key(u.key), endpoint(), u.version, why),
               0);
    }
}

void RedisBackend::applied(std::uint64_t version, WriteDone done) {
    if (store_.version() >= version)
        done("", version);
    else
        awaiting_.emplace(version, std::move(done));
}

void RedisBackend::send_write(const state::Change& change, WriteDone done, bool use_sha,
                              std::shared_ptr<AckBatch> batch) {
    std::vector<std::string> args;
    if (use_sha)
        args = {"EVALSHA", sha_};
    else
        args = {"EVAL", std::string(write_script)};
    args.insert(args.end(),
                {"2", data_key_, version_key_, channel_, change.value ? "set" : "del", change.key});
    if (change.value) args.push_back(change.value->dump());
    auto shared_done = std::make_shared<WriteDone>(std::move(done));
    bool sent = send(cmd_, args, [this, change, shared_done, use_sha, batch](redisReply* r) {
        WriteDone& done = *shared_done;
        if (r == nullptr) {
            done(fmt::format("the connection to Redis at {} was lost before the write of {} "
                             "was confirmed; it may or may not have been applied",
                             endpoint(), state::quote_key(change.key)),
                 0);
            return;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            std::string e = reply_text(r);
            if (use_sha && e.starts_with("NOSCRIPT")) {
                // Redis lost its script cache (restart, SCRIPT FLUSH): nothing ran. Again with
                // the script itself, which caches it again; in a batch, after its WAIT (which
                // must follow the write), in its place among the held writes.
                sha_.clear();
                if (!synced_ || cmd_ == nullptr || teardown_scheduled_)
                    done(down_text(), 0);
                else if (batch)
                    held_.emplace(held_.begin() + static_cast<long>(batch->retries++), change,
                                  std::move(done));
                else
                    send_write(change, std::move(done), false, {});
                return;
            }
            done("Redis refused the write of " + state::quote_key(change.key) + ": " + scrub(e), 0);
            // A primary demoted to replica (failover): find the new one.
            if (config_.uses_sentinels() && e.starts_with("READONLY"))
                lose_session(fmt::format(
                    "Redis at {} refused a write as a replica; asking the sentinels again",
                    endpoint()));
            return;
        }
        if (r->type != REDIS_REPLY_INTEGER || r->integer < 0) {
            done(fmt::format("unexpected reply to the write script ({})", reply_type_name(r->type)),
                 0);
            return;
        }
        auto version = static_cast<std::uint64_t>(r->integer);
        if (batch)
            batch->confirmed.push_back({version, change.key, std::move(done)});
        else
            applied(version, std::move(done));
    });
    if (!sent) {
        defer([shared_done, text = "cannot send the write to Redis at " + endpoint()] {
            (*shared_done)(text, 0);
        });
        lose_session("cannot send commands to Redis at " + endpoint());
    }
}

std::string RedisBackend::scrub(std::string text) const {
    text = config_.parsed.scrub(std::move(text));
    const std::string& secret = config_.sentinel_password;
    if (secret.empty()) return text;
    for (std::size_t at = 0; (at = text.find(secret, at)) != std::string::npos; at += 3)
        text.replace(at, secret.size(), "***");
    return text;
}

BackendStatus RedisBackend::status() const {
    BackendStatus s;
    s.kind = "redis";
    s.target = target_text();
    fill_common(s);
    s.last_error = scrub(s.last_error);
    s.details = {{"prefix", config_.prefix},
                 {"subscribed", subscribed_},
                 {"commands", commands_},
                 {"notices", notices_},
                 {"gaps", gaps_},
                 {"resyncs", resyncs_},
                 {"polls", polls_},
                 {"reconnects", reconnects_},
                 {"bad_fields", bad_fields_.size()},
                 {"awaiting_acks", awaiting_.size()},
                 {"rollbacks", rollbacks_}};
    if (config_.min_replicas_ack > 0) {
        s.details["min_replicas_ack"] = config_.min_replicas_ack;
        s.details["waits"] = waits_;
        s.details["unconfirmed_writes"] = unconfirmed_writes_;
        s.details["held_writes"] = held_.size();
    }
    if (config_.uses_sentinels()) {
        s.primary = BackendStatus::Primary{primary_, role_, failovers_};
        json list = json::array();
        for (const auto& a : sentinels_) list.push_back(a.text());
        s.details["sentinels"] = list;
        s.details["switch_hints"] = switch_hints_;
    }
    return s;
}

}  // namespace herd::broker
