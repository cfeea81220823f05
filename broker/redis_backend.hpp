// The Redis backend: the state lives in Redis, under a configurable prefix (default "herd:"):
//
//   <prefix>data     a hash: field = the key, value = the value as JSON text
//   <prefix>version  an integer counter: the state's version
//   <prefix>changes  a pub/sub channel: one message per write
//
// Every herd write goes through one Lua script (redis_write_script(), also in the README for
// outside writers) that checks the key and value, INCRs the version, updates the hash and
// PUBLISHes {"version": V, "key": K, "value": V} or {"version": V, "key": K, "erased": true},
// atomically. The broker keeps two connections (hiredis async API on the broker's own epoll
// loop, see redis_adapter.hpp): one SUBSCRIBEd to the channel, for instant delivery; one for
// commands, which
//  - after each (re)connection and subscription reads everything (MULTI, GET version,
//    HGETALL data, EXEC: one consistent view) and publishes the differences;
//  - polls the version every poll_ms: a version the broker has not seen (a lost message, a
//    writer that bumped the version without publishing) triggers that full read, after a
//    short grace for a message still on its way;
//  - reads everything every resync_ms anyway, for writers that bypass the script entirely
//    (their changes reach workers even without a version bump).
// A change notice whose version is not the next one is a gap: full read. A full read whose
// version is lower than what the broker had seen before sending it means Redis lost data
// (flushed, restarted empty): every worker gets a fresh snapshot.
//
// Faults: a failed connection, a command unanswered after connect_timeout_ms, or an AUTH or
// SELECT refused drops both connections; the broker reconnects after reconnect_min_ms,
// doubling up to reconnect_max_ms. Meanwhile the backend is down (status says since when and
// why), workers keep the last state, and writes FAIL at once with an error saying Redis is
// down: nothing is queued. A write in flight when the connection drops fails with "may or may
// not have been applied". A write is acknowledged once the broker's state includes it
// (normally at its change notice), so the writer reads its own write; if the connection
// drops between Redis's confirmation and the notice, it is acknowledged at once (it is
// applied) and reaches the writer's copy when the broker reads Redis again.
//
// Passwords never appear in a message: the URL is shown redacted and every error text from
// Redis or hiredis is scrubbed of the password.
#pragma once

#include <hiredis/async.h>

#include <chrono>
#include <deque>
#include <map>
#include <string>
#include <string_view>

#include "broker/backend.hpp"
#include "broker/state_config.hpp"

namespace herd::broker {

// The write script. Call it as
//   EVAL <script> 2 <prefix>data <prefix>version <prefix>changes set KEY JSON
//   EVAL <script> 2 <prefix>data <prefix>version <prefix>changes del KEY
// It returns the version that includes the write (a del of an absent key changes nothing and
// returns the current version).
std::string_view redis_write_script();

class RedisBackend final : public Backend {
  public:
    RedisBackend(core::EventLoop& loop, RedisStateConfig config, Events events);
    ~RedisBackend() override;

    void start() override;
    void write(state::Change change, WriteDone done) override;
    BackendStatus status() const override;

    // Reads everything now (tests, and what the timers do).
    void resync();

  private:
    struct Call;
    using ReplyFn = std::function<void(redisReply*)>;

    void connect();
    void schedule_reconnect();
    // Drops both connections (never synchronously inside hiredis: deferred) and reconnects.
    void lose_session(const std::string& why);
    void teardown();
    bool send(redisAsyncContext* context, const std::vector<std::string>& args, ReplyFn fn);
    void on_hello_reply(redisReply* reply, const char* what);
    void subscribe();
    void maybe_sync();
    void on_resync_reply(redisReply* reply, std::uint64_t version_at_send);
    void on_notice(std::string_view payload);
    void poll();
    void on_poll_reply(redisReply* reply, std::uint64_t version_at_send);
    void release_awaiting();
    void send_write(const state::Change& change, WriteDone done, bool use_sha);
    std::string down_text() const;
    std::string scrub(std::string text) const { return config_.parsed.scrub(std::move(text)); }
    void arm_timers();
    void arm_resync_timer();
    void cancel_timers();

    static void on_reply(redisAsyncContext* c, void* reply, void* privdata);
    static void on_sub_message(redisAsyncContext* c, void* reply, void* privdata);
    static void on_connect(const redisAsyncContext* c, int status);
    static void on_disconnect(const redisAsyncContext* c, int status);
    void context_gone(const redisAsyncContext* c, const std::string& why);

    RedisStateConfig config_;
    std::string data_key_, version_key_, channel_;
    redisAsyncContext* cmd_ = nullptr;
    redisAsyncContext* sub_ = nullptr;
    std::uint64_t session_ = 0;  // bumped per connection attempt; stale replies are ignored
    bool cmd_ready_ = false;     // AUTH and SELECT answered OK
    bool subscribed_ = false;
    bool synced_ = false;  // the session's first full read is done: up
    bool teardown_scheduled_ = false;
    bool closing_ = false;  // in the destructor: callbacks do nothing
    std::string sha_;       // of the write script, once SCRIPT LOAD answered
    bool resync_inflight_ = false;
    bool resync_again_ = false;
    std::deque<core::EventLoop::Clock::time_point> inflight_;  // command conn, FIFO
    std::chrono::milliseconds reconnect_delay_;
    core::EventLoop::TimerId reconnect_timer_ = 0, connect_timer_ = 0, poll_timer_ = 0,
                             resync_timer_ = 0, behind_timer_ = 0;
    std::uint64_t behind_target_ = 0;  // a version the poll saw that the store has not reached
    std::multimap<std::uint64_t, WriteDone> awaiting_;  // confirmed writes, by version
    std::map<std::string, std::string> bad_fields_;     // hash fields skipped, and why
    bool logged_down_ = false;
    std::chrono::steady_clock::time_point last_notice_error_{};
    // Figures for status and the benchmark.
    std::uint64_t commands_ = 0, notices_ = 0, gaps_ = 0, resyncs_ = 0, polls_ = 0, reconnects_ = 0;
};

}  // namespace herd::broker
