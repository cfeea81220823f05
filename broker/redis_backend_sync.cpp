// RedisBackend, continued: reading the state from Redis. The full read (MULTI, GET version,
// HGETALL data, EXEC) and what it publishes, change notices from the subscription, the poll
// of the version, their timers, and the writes acknowledged once the state includes them.
// See redis_backend.hpp.
#include "broker/redis_backend.hpp"

#include <fmt/format.h>

#include "broker/redis_reply.hpp"
#include "core/log.hpp"
#include "state/codec.hpp"

namespace herd::broker {

using Clock = core::EventLoop::Clock;
using std::chrono::milliseconds;

void RedisBackend::maybe_sync() {
    if (cmd_ready_ && subscribed_ && !synced_ && !teardown_scheduled_) resync();
}

void RedisBackend::resync() {
    if (cmd_ == nullptr || !cmd_ready_ || teardown_scheduled_) return;
    if (resync_inflight_) {
        resync_again_ = true;
        return;
    }
    resync_inflight_ = true;
    ++resyncs_;
    std::uint64_t at_send = store_.version();
    std::uint64_t s = session_;
    bool ok = send(cmd_, {"MULTI"}, {}) && send(cmd_, {"GET", version_key_}, {}) &&
              send(cmd_, {"HGETALL", data_key_}, {}) &&
              send(cmd_, {"EXEC"}, [this, s, at_send](redisReply* r) {
                  if (s == session_) on_resync_reply(r, at_send);
              });
    if (!ok) {
        resync_inflight_ = false;
        lose_session("cannot send commands to Redis at " + endpoint());
    }
}

void RedisBackend::on_resync_reply(redisReply* r, std::uint64_t at_send) {
    resync_inflight_ = false;
    if (r == nullptr) return;  // the connection is gone; lose_session runs
    auto failed = [&](const std::string& what) {
        std::string e = scrub("reading the state from Redis failed: " + what);
        if (!synced_) {
            lose_session(e);
        } else {
            core::log_error("{}", e);
            set_error(e);
        }
    };
    if (r->type == REDIS_REPLY_ERROR) return failed(reply_text(r));
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return failed(fmt::format("unexpected reply to EXEC ({} with {} elements)",
                                  reply_type_name(r->type), r->elements));
    std::uint64_t version = 0;
    std::string error;
    if (!parse_version_reply(r->element[0], version, error))
        return failed(version_key_ + " " + error);
    const redisReply* h = r->element[1];
    if (h->type == REDIS_REPLY_ERROR) return failed("HGETALL " + data_key_ + ": " + reply_text(h));
    if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 != 0)
        return failed(fmt::format("HGETALL {} gave a {} with {} elements", data_key_,
                                  reply_type_name(h->type), h->elements));
    state::Entries entries;
    std::map<std::string, std::string> bad;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply* k = h->element[i];
        const redisReply* v = h->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        std::string key = reply_text(k);
        std::string e = state::key_error(key);
        if (e.empty()) {
            try {
                json value = state::parse_json(std::string_view(v->str, v->len), "value");
                e = state::value_error(value);
                if (e.empty()) entries.emplace(std::move(key), std::move(value));
            } catch (const state::CodecError& ce) {
                e = ce.what();
            }
        }
        if (!e.empty()) bad.emplace(reply_text(k), e);
    }
    for (const auto& [key, why] : bad) {
        auto it = bad_fields_.find(key);
        if (it == bad_fields_.end() || it->second != why)
            core::log_error("Redis hash {} field {} skipped: {} (fix it with the write script)",
                            data_key_, state::quote_key(key), why);
    }
    bad_fields_ = std::move(bad);

    if (!loaded_) {
        core::log_info("state: {} keys at version {} from Redis at {}", entries.size(), version,
                       endpoint());
        replace(state::Snapshot{version, std::move(entries)});
    } else if (version < store_.version()) {
        if (version < at_send) {
            core::log_warn(
                "Redis's state version went back from {} to {} (flushed, restarted "
                "without its data, or a failover to a replica that lacked the last "
                "writes?): every worker gets the state as Redis has it now",
                store_.version(), version);
            ++rollbacks_;
            replace(state::Snapshot{version, std::move(entries)});
            // Confirmed writes are no longer in Redis's history: they are answered as done.
            auto waiting = std::move(awaiting_);
            awaiting_.clear();
            for (auto& [v, done] : waiting) done("", v);
        }
        // else: change notices that arrived meanwhile are newer than this read; keep them.
    } else {
        std::vector<state::Change> changes = state::diff(store_.entries(), entries);
        if (!changes.empty() && version == store_.version())
            core::log_info(
                "{} key(s) changed in Redis without a version bump (a writer "
                "bypassed herd's script); publishing them",
                changes.size());
        if (!changes.empty() || version > store_.version()) publish(std::move(changes), version);
    }
    release_awaiting();
    if (!synced_) {
        synced_ = true;
        if (connect_timer_ != 0) loop_.cancel_timer(connect_timer_);
        connect_timer_ = 0;
        reconnect_delay_ = milliseconds(config_.reconnect_min_ms);
        if (logged_down_)
            core::log_info("Redis at {} is back: {} keys at version {}", endpoint(), store_.size(),
                           store_.version());
        logged_down_ = false;
        mark_up();
        arm_timers();
    }
    if (resync_again_) {
        resync_again_ = false;
        resync();
    }
}

void RedisBackend::on_notice(std::string_view payload) {
    ++notices_;
    if (!loaded_) return;  // the first full read includes it
    state::Change change;
    std::uint64_t version = 0;
    std::string change_error;
    try {
        json j = state::parse_json(payload, "change notice");
        if (!j.is_object()) throw state::CodecError("change notice: not a JSON object");
        if (!j.contains("version"))
            throw state::CodecError("change notice: \"version\" is missing");
        version = state::decode_version(j["version"], "change notice: \"version\"");
        if (!j.contains("key") || !j["key"].is_string())
            throw state::CodecError("change notice: \"key\" is missing or not a string");
        change.key = j["key"].get<std::string>();
        if (j.contains("value")) {
            change.value = std::move(j["value"]);
            change_error = state::value_error(*change.value);
        } else if (!(j.contains("erased") && j["erased"] == true)) {
            throw state::CodecError("change notice: neither \"value\" nor \"erased\": true");
        }
        if (change_error.empty()) change_error = state::key_error(change.key);
    } catch (const state::CodecError& e) {
        // Someone published something else on our channel, or a change was mangled: say so
        // (at most once a second) and read everything, so nothing is missed.
        auto now = std::chrono::steady_clock::now();
        if (now - last_notice_error_ > std::chrono::seconds(1))
            core::log_error("ignoring a message on {}: {}; reading the whole state", channel_,
                            scrub(e.what()));
        last_notice_error_ = now;
        resync();
        return;
    }
    if (version <= store_.version()) return;  // a full read got there first
    if (version != store_.version() + 1) {
        ++gaps_;
        core::log_debug("change notice for version {} while at {}: reading the whole state",
                        version, store_.version());
        resync();
        return;
    }
    std::vector<state::Change> changes;
    if (!change_error.empty()) {
        core::log_error("Redis change {} at version {} skipped: {}", state::quote_key(change.key),
                        version, change_error);
    } else {
        changes.push_back(std::move(change));
    }
    publish(std::move(changes), version);
    release_awaiting();
}

void RedisBackend::arm_timers() {
    cancel_timers();
    std::uint64_t s = session_;
    poll_timer_ = loop_.add_timer(milliseconds(config_.poll_ms), [this, s] {
        poll_timer_ = 0;
        if (s == session_) poll();
    });
    arm_resync_timer();
}

void RedisBackend::arm_resync_timer() {
    std::uint64_t s = session_;
    resync_timer_ = loop_.add_timer(milliseconds(config_.resync_ms), [this, s] {
        resync_timer_ = 0;
        if (s != session_) return;
        resync();
        arm_resync_timer();
    });
}

void RedisBackend::cancel_timers() {
    for (core::EventLoop::TimerId* t :
         {&poll_timer_, &resync_timer_, &connect_timer_, &behind_timer_}) {
        if (*t != 0) loop_.cancel_timer(*t);
        *t = 0;
    }
}

void RedisBackend::poll() {
    std::uint64_t s = session_;
    poll_timer_ = loop_.add_timer(milliseconds(config_.poll_ms), [this, s] {
        poll_timer_ = 0;
        if (s == session_) poll();
    });
    if (!synced_ || cmd_ == nullptr || teardown_scheduled_) return;
    if (!inflight_.empty() &&
        Clock::now() - inflight_.front() > milliseconds(config_.connect_timeout_ms)) {
        lose_session(fmt::format("Redis at {} did not answer a command within {} ms", endpoint(),
                                 config_.connect_timeout_ms));
        return;
    }
    ++polls_;
    std::uint64_t at_send = store_.version();
    if (!send(cmd_, {"GET", version_key_}, [this, s, at_send](redisReply* r) {
            if (s == session_) on_poll_reply(r, at_send);
        }))
        lose_session("cannot send commands to Redis at " + endpoint());
}

void RedisBackend::on_poll_reply(redisReply* r, std::uint64_t at_send) {
    if (r == nullptr) return;
    std::uint64_t version = 0;
    std::string error;
    if (!parse_version_reply(r, version, error)) {
        std::string e = scrub("polling Redis failed: " + version_key_ + " " + error);
        core::log_error("{}", e);
        set_error(e);
        return;
    }
    if (version < at_send) {
        resync();  // Redis went back: the full read replaces everything
        return;
    }
    if (version <= store_.version()) return;
    // Behind. A change notice may still be on its way on the other connection: give it a
    // moment, then read everything if it has not come.
    if (!subscribed_) {
        resync();
        return;
    }
    behind_target_ = version;
    if (behind_timer_ != 0) return;
    auto grace = milliseconds(std::clamp(config_.poll_ms / 4, 5, 100));
    std::uint64_t s = session_;
    behind_timer_ = loop_.add_timer(grace, [this, s] {
        behind_timer_ = 0;
        if (s != session_ || store_.version() >= behind_target_) return;
        ++gaps_;
        core::log_debug(
            "Redis is at version {}, we are at {} and no change notice came: "
            "reading the whole state",
            behind_target_, store_.version());
        resync();
    });
}

void RedisBackend::release_awaiting() {
    while (!awaiting_.empty() && awaiting_.begin()->first <= store_.version()) {
        auto node = awaiting_.extract(awaiting_.begin());
        node.mapped()("", node.key());
    }
}

}  // namespace herd::broker
