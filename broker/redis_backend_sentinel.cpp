// RedisBackend, continued: finding the primary through Redis Sentinel (the client rules of
// https://redis.io/docs/latest/develop/reference/sentinel-clients/): the sentinels asked in
// turn, the one that answers moved to the front, ROLE checked on the primary, +switch-master
// as a hint to resolve again. See redis_backend.hpp.
#include <algorithm>
#include <charconv>
#include <sstream>

#include <fmt/format.h>

#include "broker/redis_backend.hpp"
#include "broker/redis_reply.hpp"
#include "client/redis_adapter.hpp"
#include "core/log.hpp"

namespace herd::broker {

using std::chrono::milliseconds;

void RedisBackend::ask_sentinel(std::size_t index) {
    if (index >= sentinels_.size()) {
        lose_session(fmt::format("no sentinel named the primary \"{}\" ({})", config_.master_name,
                                 probe_errors_));
        return;
    }
    probe_index_ = index;
    probe_answered_ = false;
    const SentinelAddress& a = sentinels_[index];
    redisAsyncContext* c = redisAsyncConnect(a.host.c_str(), a.port);
    if (c == nullptr) return sentinel_failed("out of memory");
    if (c->err != 0) {
        std::string why = c->errstr != nullptr ? c->errstr : "unknown error";
        redisAsyncFree(c);
        return sentinel_failed("cannot connect: " + why);
    }
    client::attach_to_loop(c, loop_);
    c->data = this;
    redisAsyncSetConnectCallback(c, &RedisBackend::on_connect);
    redisAsyncSetDisconnectCallback(c, &RedisBackend::on_disconnect);
    (void)redisEnableKeepAlive(&c->c);
    probe_ = c;
    // Its reply comes first; a refusal drops this sentinel (the question after it, then
    // answered NOAUTH, finds probe_ gone).
    if (!send_sentinel_auth(c, &RedisBackend::on_sentinel_auth))
        return sentinel_failed("cannot send AUTH");
    const char* argv[] = {"SENTINEL", "get-master-addr-by-name", config_.master_name.c_str()};
    const size_t lens[] = {8, 23, config_.master_name.size()};
    if (redisAsyncCommandArgv(c, &RedisBackend::on_probe_reply, this, 3, argv, lens) != REDIS_OK)
        return sentinel_failed("cannot send SENTINEL get-master-addr-by-name");
    ++commands_;
    std::uint64_t s = session_;
    probe_timer_ = loop_.add_timer(milliseconds(config_.sentinel_timeout_ms), [this, s, index] {
        probe_timer_ = 0;
        if (s != session_ || probe_index_ != index || probe_answered_) return;
        sentinel_failed(fmt::format("no answer within {} ms", config_.sentinel_timeout_ms));
    });
}

void RedisBackend::sentinel_failed(const std::string& why) {
    std::string line = sentinels_[probe_index_].text() + ": " + why;
    core::log_debug("sentinel {}", line);
    probe_errors_ += (probe_errors_.empty() ? "" : "; ") + line;
    drop_probe();
    ask_sentinel(probe_index_ + 1);
}

void RedisBackend::drop_probe() {
    if (probe_timer_ != 0) loop_.cancel_timer(probe_timer_);
    probe_timer_ = 0;
    probe_answered_ = false;
    // Safe inside the probe's own reply callback: hiredis then frees it once that returns.
    // Its pending callbacks see probe_ != c and do nothing.
    if (auto* p = std::exchange(probe_, nullptr)) redisAsyncFree(p);
}

bool RedisBackend::send_sentinel_auth(redisAsyncContext* c, redisCallbackFn* fn) {
    if (config_.sentinel_password.empty()) return true;
    std::vector<const char*> argv = {"AUTH"};
    std::vector<size_t> lens = {4};
    for (const std::string* part : {&config_.sentinel_user, &config_.sentinel_password}) {
        if (part->empty()) continue;
        argv.push_back(part->c_str());
        lens.push_back(part->size());
    }
    if (redisAsyncCommandArgv(c, fn, this, static_cast<int>(argv.size()), argv.data(),
                              lens.data()) != REDIS_OK)
        return false;
    ++commands_;
    return true;
}

void RedisBackend::watch_sentinels() {
    drop_watchers();
    for (const SentinelAddress& a : sentinels_) {
        redisAsyncContext* c = redisAsyncConnect(a.host.c_str(), a.port);
        if (c == nullptr) continue;
        if (c->err != 0) {
            redisAsyncFree(c);
            continue;  // only a hint is missed: the back-off's attempt asks them anyway
        }
        client::attach_to_loop(c, loop_);
        c->data = this;
        redisAsyncSetConnectCallback(c, &RedisBackend::on_connect);
        redisAsyncSetDisconnectCallback(c, &RedisBackend::on_disconnect);
        (void)redisEnableKeepAlive(&c->c);
        const char* argv[] = {"SUBSCRIBE", "+switch-master"};
        const size_t lens[] = {9, 14};
        // A refused AUTH leaves SUBSCRIBE refused too: this sentinel sends no hint.
        if (!send_sentinel_auth(c, &RedisBackend::on_watch_reply) ||
            redisAsyncCommandArgv(c, &RedisBackend::on_watch_reply, this, 2, argv, lens) !=
                REDIS_OK) {
            redisAsyncFree(c);
            continue;
        }
        ++commands_;
        watchers_.push_back({c, a});
    }
}

void RedisBackend::drop_watchers() {
    // Forgotten first: the callbacks the frees run find nothing to act on.
    auto gone = std::move(watchers_);
    watchers_.clear();
    for (auto& w : gone) redisAsyncFree(w.context);
}

void RedisBackend::on_watch_reply(redisAsyncContext* c, void* reply, void* privdata) {
    auto* self = static_cast<RedisBackend*>(privdata);
    auto* r = static_cast<redisReply*>(reply);
    if (self->closing_ || r == nullptr) return;
    auto it = std::find_if(self->watchers_.begin(), self->watchers_.end(),
                           [c](const Watcher& w) { return w.context == c; });
    if (it == self->watchers_.end() || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[2]->type != REDIS_REPLY_STRING ||
        reply_text(r->element[0]) != "message")
        return;
    try {
        std::string text = reply_text(r->element[2]);
        if (!text.starts_with(self->config_.master_name + " ") || self->reconnect_timer_ == 0)
            return;
        SentinelAddress announcer = it->sentinel;
        ++self->switch_hints_;
        core::log_info("state: sentinel {} announced +switch-master {}; asking it now",
                       announcer.text(), text);
        // It has the new configuration; the others may not have it yet.
        auto at = std::find(self->sentinels_.begin(), self->sentinels_.end(), announcer);
        if (at != self->sentinels_.end()) std::rotate(self->sentinels_.begin(), at, at + 1);
        self->loop_.cancel_timer(self->reconnect_timer_);
        self->reconnect_timer_ = 0;
        self->reconnect_delay_ = milliseconds(self->config_.reconnect_min_ms);
        self->connect();  // drops the watchers, this one included (hiredis frees it after)
    } catch (const std::exception& e) {
        core::log_error("handling a sentinel's +switch-master: {}", self->scrub(e.what()));
    }
}

void RedisBackend::on_sentinel_auth(redisAsyncContext* c, void* reply, void* privdata) {
    auto* self = static_cast<RedisBackend*>(privdata);
    auto* r = static_cast<redisReply*>(reply);
    if (self->closing_ || c != self->probe_ || r == nullptr) return;
    if (r->type == REDIS_REPLY_ERROR)
        self->sentinel_failed("refused AUTH (sentinel_password): " + self->scrub(reply_text(r)));
}

void RedisBackend::on_probe_reply(redisAsyncContext* c, void* reply, void* privdata) {
    auto* self = static_cast<RedisBackend*>(privdata);
    if (self->closing_ || c != self->probe_ || reply == nullptr) return;
    auto* r = static_cast<redisReply*>(reply);
    try {
        if (self->probe_answered_) {
            // The +switch-master subscription: "<name> <old ip> <old port> <new ip> <new port>".
            if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
                r->element[0]->type != REDIS_REPLY_STRING ||
                r->element[2]->type != REDIS_REPLY_STRING || reply_text(r->element[0]) != "message")
                return;
            std::string text = reply_text(r->element[2]);
            if (!text.starts_with(self->config_.master_name + " ")) return;
            // A switch to the primary this session already checked changes nothing (a
            // sentinel that learned of it late).
            std::istringstream fields(text);
            std::string name, old_ip, old_port, new_ip, new_port;
            fields >> name >> old_ip >> old_port >> new_ip >> new_port;
            if (self->synced_ && self->role_ == "master" &&
                new_ip + ":" + new_port ==
                    self->target_.host + ":" + std::to_string(self->target_.port))
                return;
            ++self->switch_hints_;
            self->lose_session(
                fmt::format("sentinel {} announced +switch-master {}; asking the sentinels again",
                            self->sentinels_[self->probe_index_].text(), text));
            return;
        }
        self->on_sentinel_answer(r);
    } catch (const std::exception& e) {
        // Never let an exception unwind through hiredis's C frames.
        core::log_error("handling a sentinel's reply: {}", self->scrub(e.what()));
    }
}

void RedisBackend::on_sentinel_answer(redisReply* r) {
    if (r->type == REDIS_REPLY_ERROR) return sentinel_failed(scrub(reply_text(r)));
    if (r->type == REDIS_REPLY_NIL)
        return sentinel_failed("does not know a primary named \"" + config_.master_name + "\"");
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
        return sentinel_failed(
            fmt::format("unexpected reply to SENTINEL get-master-addr-by-name "
                        "({} with {} elements)",
                        reply_type_name(r->type), r->elements));
    std::string host = reply_text(r->element[0]);
    std::string port_text = reply_text(r->element[1]);
    int port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (host.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
        port < 1 || port > 65535)
        return sentinel_failed("named an invalid address \"" + host + "\" \"" + port_text + "\"");
    if (probe_timer_ != 0) loop_.cancel_timer(probe_timer_);
    probe_timer_ = 0;
    probe_answered_ = true;
    // The client rules: the sentinel that answered goes first next time.
    if (probe_index_ != 0) {
        std::rotate(sentinels_.begin(), sentinels_.begin() + static_cast<long>(probe_index_),
                    sentinels_.begin() + static_cast<long>(probe_index_) + 1);
        probe_index_ = 0;
    }
    if (!probe_errors_.empty())
        core::log_info("state: sentinel {} named the primary \"{}\" after: {}",
                       sentinels_[0].text(), config_.master_name, probe_errors_);
    target_.host = host;
    target_.port = port;
    role_.clear();
    if (primary_ != target_.endpoint())
        core::log_info("state: the sentinels name {} as the primary \"{}\"", target_.endpoint(),
                       config_.master_name);
    primary_ = target_.endpoint();
    // Stay connected to it for +switch-master, a hint to resolve again sooner. Not fatal if
    // it cannot be sent: reconnections resolve again anyway.
    const char* argv[] = {"SUBSCRIBE", "+switch-master"};
    const size_t lens[] = {9, 14};
    if (redisAsyncCommandArgv(probe_, &RedisBackend::on_probe_reply, this, 2, argv, lens) ==
        REDIS_OK)
        ++commands_;
    connect_data();
}

void RedisBackend::on_role_reply(redisReply* r) {
    if (r == nullptr || teardown_scheduled_) return;
    if (r->type == REDIS_REPLY_ERROR)
        return lose_session(fmt::format("Redis at {} refused ROLE: {}", endpoint(), reply_text(r)));
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return lose_session(fmt::format("unexpected reply to ROLE from Redis at {} ({})",
                                        endpoint(), reply_type_name(r->type)));
    role_ = reply_text(r->element[0]);
    if (role_ != "master")
        return lose_session(fmt::format(
            "Redis at {}, named by the sentinels as the primary \"{}\", says its role is \"{}\" "
            "(a failover under way?); asking the sentinels again",
            endpoint(), config_.master_name, role_));
    std::string address = target_.endpoint();
    if (!last_master_.empty() && last_master_ != address) {
        ++failovers_;
        core::log_warn(
            "state: the primary \"{}\" moved from {} to {} (failover {}): reading everything "
            "again; writes the old primary had not replicated are lost",
            config_.master_name, last_master_, address, failovers_);
    }
    last_master_ = address;
}

}  // namespace herd::broker
