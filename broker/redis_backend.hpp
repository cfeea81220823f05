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
// With sentinels (config "sentinels" instead of "url"), each connection attempt first finds
// the primary, following the Redis Sentinel client rules: the sentinels are asked in turn
// (each within sentinel_timeout_ms) SENTINEL get-master-addr-by-name; the first that names an
// address moves to the front of the list; the data connections go to that address and ROLE
// must say "master" before anything else is sent (else: resolve again after the back-off).
// Every reconnection resolves again: an address is never reused. The sentinel that answered
// stays connected, SUBSCRIBEd to +switch-master: a switch of our primary is a hint to drop the
// session and resolve again at once (only a hint: the new address is still asked for and
// checked with ROLE). Between attempts, after a lost session, the broker listens for
// +switch-master on every sentinel (the one leading a failover announces it first, the others
// up to seconds later): an announcement ends the back-off at once, and the sentinel that made
// it is asked first. A primary at a new address is a failover (counted in the status); its
// first full read goes through the "version went back" path when the new primary lacks the
// last writes (Redis replication is asynchronous), and every worker gets a fresh snapshot.
//
// With min_replicas_ack N > 0, writes are acknowledged only once N replicas confirm them:
// the write's script, then WAIT N replica_ack_timeout_ms on the same connection (WAIT covers
// every earlier write of that connection). One WAIT at a time: writes that come while one is
// out are held in the broker and sent together, followed by one WAIT for them all (group
// commit), so a replica that does not answer costs every write at most two timeouts, and the
// commands behind a WAIT are not mistaken for a frozen Redis. A write the replicas do not
// confirm fails with an error saying it is applied on the primary (workers see it) and may be
// lost if the primary fails; held writes fail as not applied if the connection drops.
//
// Passwords never appear in a message: the URL is shown redacted and every error text from
// Redis or hiredis is scrubbed of the password.
#pragma once

#include <hiredis/async.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

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
    // The data connections to target_ (the URL's address, or the primary the sentinels named).
    void connect_data();
    // Sentinel discovery: asks sentinels_[index], then the next ones, then gives up (back-off).
    void ask_sentinel(std::size_t index);
    void on_sentinel_answer(redisReply* reply);
    void sentinel_failed(const std::string& why);
    void drop_probe();
    void on_role_reply(redisReply* reply);
    // "127.0.0.1:6379", or which primary the sentinels have not named yet.
    std::string endpoint() const;
    // The URL without its password, or the master name and the sentinels.
    std::string target_text() const;
    // probe_'s replies: the sentinel's answer, then the +switch-master messages.
    static void on_probe_reply(redisAsyncContext* c, void* reply, void* privdata);
    static void on_sentinel_auth(redisAsyncContext* c, void* reply, void* privdata);
    // During the back-off: every sentinel SUBSCRIBEd to +switch-master, and their messages.
    void watch_sentinels();
    void drop_watchers();
    static void on_watch_reply(redisAsyncContext* c, void* reply, void* privdata);
    // Sends AUTH if the config has sentinel_password; false when it cannot be sent.
    bool send_sentinel_auth(redisAsyncContext* c, redisCallbackFn* fn);
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
    // A write confirmed by Redis, waiting for its WAIT's answer (min_replicas_ack).
    struct Unconfirmed {
        std::uint64_t version;
        std::string key;
        WriteDone done;
    };
    struct AckBatch {
        std::vector<Unconfirmed> confirmed;  // in the order Redis confirmed them
        std::size_t retries = 0;             // of its writes put back at the front of held_
    };
    // batch: null without min_replicas_ack, else where the write waits for its WAIT.
    void send_write(const state::Change& change, WriteDone done, bool use_sha,
                    std::shared_ptr<AckBatch> batch);
    // A confirmed write: answered once the broker's state includes it.
    void applied(std::uint64_t version, WriteDone done);
    // Sends the held writes, then one WAIT for them.
    void send_held();
    void on_wait_reply(redisReply* r, AckBatch& batch);
    std::string down_text() const;
    // Every password of the config (the data connections', the sentinels') replaced by ***.
    std::string scrub(std::string text) const;
    void arm_timers();
    void arm_resync_timer();
    void cancel_timers();

    static void on_reply(redisAsyncContext* c, void* reply, void* privdata);
    static void on_sub_message(redisAsyncContext* c, void* reply, void* privdata);
    static void on_connect(const redisAsyncContext* c, int status);
    static void on_disconnect(const redisAsyncContext* c, int status);
    void context_gone(const redisAsyncContext* c, const std::string& why);

    RedisStateConfig config_;
    client::RedisUrl target_;  // where the data connections go
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
    // min_replicas_ack: writes not sent yet (a WAIT is out), and whether one is.
    std::deque<std::pair<state::Change, WriteDone>> held_;
    bool wait_out_ = false;
    bool replicas_behind_ = false;  // the last WAIT fell short (logged once)
    std::uint64_t waits_ = 0, unconfirmed_writes_ = 0;
    std::map<std::string, std::string> bad_fields_;  // hash fields skipped, and why
    bool logged_down_ = false;
    std::chrono::steady_clock::time_point last_notice_error_{};
    // Figures for status and the benchmark.
    // Sentinel discovery.
    std::vector<SentinelAddress> sentinels_;  // the one that answered last first
    redisAsyncContext* probe_ = nullptr;      // the sentinel being asked, then subscribed
    std::size_t probe_index_ = 0;
    bool probe_answered_ = false;  // probe_ named the primary; now only the +switch-master hint
    core::EventLoop::TimerId probe_timer_ = 0;
    std::string probe_errors_;  // why each sentinel asked this round did not answer
    std::string primary_;       // the address the sentinels named last ("" before)
    std::string role_;          // what ROLE said there last
    std::string last_master_;   // the last address ROLE confirmed as master
    std::uint64_t failovers_ = 0, switch_hints_ = 0;
    struct Watcher {
        redisAsyncContext* context;
        SentinelAddress sentinel;
    };
    std::vector<Watcher> watchers_;  // between attempts only
    std::uint64_t rollbacks_ = 0;    // full reads that found an older version: fresh snapshots
    std::uint64_t commands_ = 0, notices_ = 0, gaps_ = 0, resyncs_ = 0, polls_ = 0, reconnects_ = 0;
};

}  // namespace herd::broker
