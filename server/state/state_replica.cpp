// The worker's copy of the shared state; see state_replica.hpp.
#include "state/state_replica.hpp"

#include <algorithm>

#include "core/log.hpp"
#include "core/plugin_guard.hpp"
#include "state/codec.hpp"

namespace herd::state {

// What a plugin holds: forwards to the replica, tagged with the plugin as owner.
class StateReplica::View final : public herd::State {
  public:
    View(StateReplica& replica, std::uint64_t owner) : replica_(replica), owner_(owner) {}
    ~View() override { replica_.forget_owner(owner_); }

    std::optional<json> get(std::string_view key) const override {
        const json* v = replica_.replica_.find(key);
        if (v == nullptr) return std::nullopt;
        return *v;
    }
    const json* find(std::string_view key) const override { return replica_.replica_.find(key); }
    std::uint64_t version() const override { return replica_.replica_.version(); }
    bool synced() const override { return replica_.replica_.synced(); }
    WatchId watch(std::string_view prefix, WatchCallback callback) override {
        return replica_.add_watch(owner_, prefix, std::move(callback));
    }
    void unwatch(WatchId id) override { replica_.remove_watch(id); }
    using herd::State::erase;
    using herd::State::set;
    void set(std::string_view key, json value, DoneCallback done) override {
        replica_.write(owner_, key, std::move(value), std::move(done));
    }
    void erase(std::string_view key, DoneCallback done) override {
        replica_.write(owner_, key, std::nullopt, std::move(done));
    }

  private:
    StateReplica& replica_;
    std::uint64_t owner_;
};

StateReplica::StateReplica(core::EventLoop& loop,
                           std::function<void(const std::string&)> on_callback_error)
    : loop_(loop), on_callback_error_(std::move(on_callback_error)) {}

StateReplica::~StateReplica() {
    channel_.reset();
    closed_channels_.clear();
}

void StateReplica::attach(core::UniqueFd fd) {
    if (channel_) {
        channel_->close();
        fail_pending(
            "the connection to the state broker was replaced before the write was "
            "confirmed; it may or may not have been applied");
        closed_channels_.push_back(std::move(channel_));
        loop_.defer([this, alive = std::weak_ptr<char>(alive_)] {
            if (alive.lock()) closed_channels_.clear();
        });
    }
    resync_requested_ = false;
    channel_ = std::make_unique<core::Channel>(loop_, std::move(fd), "state broker");
    channel_->start([this](core::Message&& m) { on_message(m); },
                    [this](const std::string& reason) { on_closed(reason); });
}

bool StateReplica::wait_for_snapshot(std::chrono::milliseconds timeout) {
    auto deadline = core::EventLoop::now() + timeout;
    while (!replica_.synced() && !loop_.stopped()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                          core::EventLoop::now());
        if (left.count() <= 0) break;
        loop_.run_once(static_cast<int>(std::min<long long>(left.count() + 1, 1000)));
    }
    return replica_.synced();
}

std::unique_ptr<herd::State> StateReplica::make_view(std::string owner) {
    std::uint64_t id = next_owner_++;
    owners_.emplace(id, std::move(owner));
    return std::make_unique<View>(*this, id);
}

void StateReplica::forget_owner(std::uint64_t owner) {
    owners_.erase(owner);
    std::erase_if(watches_, [owner](const auto& w) { return w.second.owner == owner; });
    // Their acks still arrive; nobody is called for them.
    for (auto& [id, p] : pending_)
        if (p.owner == owner) p.done = nullptr;
}

herd::State::WatchId StateReplica::add_watch(std::uint64_t owner, std::string_view prefix,
                                             herd::State::WatchCallback callback) {
    herd::State::WatchId id = next_watch_++;
    if (callback) watches_.emplace(id, Watch{owner, std::string(prefix), std::move(callback)});
    return id;
}

void StateReplica::remove_watch(herd::State::WatchId id) {
    watches_.erase(id);
}

void StateReplica::run_done(std::uint64_t owner, const std::string& what,
                            const herd::State::DoneCallback& done, bool ok,
                            const std::string& error) {
    if (!done || !owners_.contains(owner)) return;
    core::guarded(on_callback_error_, owners_[owner], "in its state " + what + " callback",
                  [&] { done(ok, error); });
}

void StateReplica::complete_later(herd::State::DoneCallback done, bool ok, std::string error,
                                  std::uint64_t owner) {
    if (!done) return;
    loop_.defer([this, alive = std::weak_ptr<char>(alive_), done = std::move(done), ok,
                 error = std::move(error), owner] {
        if (alive.lock()) run_done(owner, "write", done, ok, error);
    });
}

void StateReplica::write(std::uint64_t owner, std::string_view key, std::optional<json> value,
                         herd::State::DoneCallback done) {
    std::string what = value ? "set" : "erase";
    if (std::string e = key_error(key); !e.empty()) {
        complete_later(std::move(done), false, "state " + what + " of " + quote_key(key) + ": " + e,
                       owner);
        return;
    }
    if (value) {
        if (std::string e = value_error(*value); !e.empty()) {
            complete_later(std::move(done), false, "state set of " + quote_key(key) + ": " + e,
                           owner);
            return;
        }
    }
    if (!connected()) {
        complete_later(std::move(done), false,
                       "state " + what + " of " + quote_key(key) +
                           ": not connected to the state broker (restarting?); the write was "
                           "not applied",
                       owner);
        return;
    }
    std::uint64_t id = next_request_++;
    if (!channel_->send(encode_write(WriteRequest{id, std::string(key), std::move(value)}))) {
        complete_later(std::move(done), false,
                       "state " + what + " of " + quote_key(key) +
                           ": could not be sent to the state broker; the write was not applied",
                       owner);
        return;
    }
    pending_.emplace(id, PendingWrite{owner, std::string(key), std::move(done)});
}

void StateReplica::on_message(core::Message& m) {
    std::string type = m.type();
    try {
        if (type == msg::snapshot) {
            Snapshot s = decode_snapshot(m.body);
            std::uint64_t before = replica_.version();
            bool first = !replica_.synced();
            if (!first && s.version < before)
                core::log_warn(
                    "state snapshot at version {} is older than ours ({}): the "
                    "backend lost data; taking it",
                    s.version, before);
            std::vector<Change> changes = replica_.apply(std::move(s));
            ++snapshots_;
            resync_requested_ = false;
            core::log_debug("state snapshot: {} keys at version {} ({} changed)",
                            replica_.store().size(), replica_.version(), changes.size());
            notify(changes);
        } else if (type == msg::delta) {
            Delta d = decode_delta(m.body);
            switch (replica_.apply(d)) {
                case Replica::Result::applied:
                    notify(d.changes);
                    break;
                case Replica::Result::stale:
                case Replica::Result::unsynced:
                    break;
                case Replica::Result::gap:
                    ++gaps_;
                    request_resync("state delta " + std::to_string(d.base) + " -> " +
                                   std::to_string(d.version) + " does not follow our version " +
                                   std::to_string(replica_.version()));
                    break;
            }
        } else if (type == msg::ack) {
            Ack a = decode_ack(m.body);
            auto it = pending_.find(a.id);
            if (it == pending_.end()) {
                core::log_warn("state ack for unknown write id {} from the state broker", a.id);
                return;
            }
            PendingWrite p = std::move(it->second);
            pending_.erase(it);
            run_done(p.owner, "write", p.done, a.ok, a.ok ? std::string() : a.error);
        } else if (type.empty()) {
            core::log_untyped_message(m, "state broker");
        } else {
            core::log_unknown_message(type, "state broker");
        }
    } catch (const CodecError& e) {
        core::log_error("malformed message from the state broker: {}", e.what());
        // A delta we could not read leaves a hole: start again from a snapshot.
        if (type == msg::delta || type == msg::snapshot) request_resync("a malformed " + type);
    }
}

void StateReplica::request_resync(const std::string& why) {
    if (resync_requested_ || !connected()) return;
    core::log_warn("{}: asking the state broker for a fresh snapshot", why);
    resync_requested_ = true;
    channel_->send({{"type", msg::resync}});
}

void StateReplica::notify(const std::vector<Change>& changes) {
    if (changes.empty() || watches_.empty()) return;
    for (const Change& c : changes) {
        // Callbacks may add or remove watches: walk ids, look each one up again.
        std::vector<herd::State::WatchId> ids;
        for (const auto& [id, w] : watches_)
            if (std::string_view(c.key).starts_with(w.prefix)) ids.push_back(id);
        for (herd::State::WatchId id : ids) {
            auto it = watches_.find(id);
            if (it == watches_.end()) continue;
            herd::State::WatchCallback callback = it->second.callback;  // may unwatch itself
            std::uint64_t owner = it->second.owner;
            std::string name = owners_.contains(owner) ? owners_[owner] : "a plugin";
            core::guarded(
                on_callback_error_, name,
                [&] { return "in its state watch callback for key " + quote_key(c.key); },
                [&] { callback(c.key, replica_.find(c.key)); });
        }
    }
}

void StateReplica::fail_pending(const std::string& error) {
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : pending)
        complete_later(std::move(p.done), false,
                       "state write of " + quote_key(p.key) + ": " + error, p.owner);
}

void StateReplica::on_closed(const std::string& reason) {
    core::log_warn(
        "channel to the state broker closed ({}); serving the last state (version "
        "{}) until the master connects us to a new broker",
        reason, replica_.version());
    fail_pending(
        "the connection to the state broker was lost before the write was confirmed; "
        "it may or may not have been applied");
}

}  // namespace herd::state
