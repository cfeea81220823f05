// The worker's copy of the shared state: applies the snapshot and deltas the broker sends
// on the worker's broker channel (see broker/broker.hpp for the protocol), runs the plugins'
// watch callbacks, and sends their writes with ids, routing each acknowledgement back to its
// callback. Plugins see it through herd::State views (include/herd/state.hpp), one per
// plugin, so a plugin's watches and callbacks go away with the plugin.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <herd/state.hpp>

#include "core/channel.hpp"
#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"
#include "state/state_store.hpp"

namespace herd::state {

class StateReplica {
  public:
    // on_callback_error: a plugin's watch or write callback threw; the text names the plugin,
    // the callback and the exception. The worker treats it like any plugin failure.
    explicit StateReplica(core::EventLoop& loop,
                          std::function<void(const std::string&)> on_callback_error = {});
    ~StateReplica();
    StateReplica(const StateReplica&) = delete;
    StateReplica& operator=(const StateReplica&) = delete;

    // Takes the worker's end of its socketpair with the broker: at start, and again when the
    // master passes a new one after the broker was restarted. A previous channel is closed
    // first and its unanswered writes fail. The broker then sends a full snapshot.
    void attach(core::UniqueFd fd);
    bool connected() const { return channel_ && !channel_->closed(); }
    bool synced() const { return replica_.synced(); }
    std::uint64_t version() const { return replica_.version(); }
    const Replica& replica() const { return replica_; }

    // Runs the loop until the first snapshot has arrived, the loop stopped, or timeout passed
    // (the worker calls it before it reports ready). A channel that closes meanwhile (the
    // broker died) does not end the wait: the master attaches the restarted broker's. True
    // when synced.
    bool wait_for_snapshot(std::chrono::milliseconds timeout);

    // A plugin's view (for Context::state()); owner names it in messages ("plugin /api").
    // Destroying the view removes its watches and drops its pending write callbacks.
    std::unique_ptr<herd::State> make_view(std::string owner);

    // Figures for the heartbeat: writes awaiting an ack, gaps seen, snapshots received.
    std::size_t pending_writes() const { return pending_.size(); }
    std::uint64_t gaps() const { return gaps_; }
    std::uint64_t snapshots() const { return snapshots_; }

  private:
    class View;
    friend class View;
    struct Watch {
        std::uint64_t owner;
        std::string prefix;
        herd::State::WatchCallback callback;
    };
    struct PendingWrite {
        std::uint64_t owner;
        std::string key;
        herd::State::DoneCallback done;
    };

    void on_message(core::Message& m);
    void on_closed(const std::string& reason);
    void notify(const std::vector<Change>& changes);
    void request_resync(const std::string& why);
    void fail_pending(const std::string& error);
    // Runs done(ok, error) in the next loop iteration, guarded against our destruction.
    void complete_later(herd::State::DoneCallback done, bool ok, std::string error,
                        std::uint64_t owner);
    void run_done(std::uint64_t owner, const std::string& what,
                  const herd::State::DoneCallback& done, bool ok, const std::string& error);

    // For views.
    herd::State::WatchId add_watch(std::uint64_t owner, std::string_view prefix,
                                   herd::State::WatchCallback callback);
    void remove_watch(herd::State::WatchId id);
    void write(std::uint64_t owner, std::string_view key, std::optional<nlohmann::json> value,
               herd::State::DoneCallback done);
    void forget_owner(std::uint64_t owner);

    core::EventLoop& loop_;
    std::function<void(const std::string&)> on_callback_error_;
    std::unique_ptr<core::Channel> channel_;
    std::vector<std::unique_ptr<core::Channel>> closed_channels_;  // freed after the batch
    Replica replica_;
    std::map<herd::State::WatchId, Watch> watches_;
    herd::State::WatchId next_watch_ = 1;
    std::map<std::uint64_t, PendingWrite> pending_;  // by request id
    std::uint64_t next_request_ = 1;
    std::map<std::uint64_t, std::string> owners_;  // live views: id -> name
    std::uint64_t next_owner_ = 1;
    bool resync_requested_ = false;
    std::uint64_t gaps_ = 0;
    std::uint64_t snapshots_ = 0;
    std::shared_ptr<char> alive_ = std::make_shared<char>(0);
};

}  // namespace herd::state
