// The calls a plugin has open on one of the worker's clients (HTTP, Redis, PostgreSQL): each
// tied to a scope (the plugin's, or a request's) and cancelled with it, found by id when its
// answer comes, all cancelled when the plugin stops. Payload holds what the client needs to
// stop the call and what the plugin is to be handed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include <herd/client.hpp>
#include <herd/scope.hpp>

#include "worker/plugin_loop.hpp"

namespace herd::worker {

template <class Payload>
class PluginCalls {
  public:
    using Id = std::uint64_t;
    struct Entry final : herd::CancelHook {
        PluginCalls* self = nullptr;
        Id id = 0;
        herd::Scope* scope = nullptr;
        Payload data;
        void on_cancel() noexcept override { self->cancel(id); }
    };
    // stop(entry): tells the client to stop a call cancelled before its answer.
    explicit PluginCalls(std::function<void(Entry&)> stop) : stop_(std::move(stop)) {}
    ~PluginCalls() { shutdown(); }
    PluginCalls(const PluginCalls&) = delete;
    PluginCalls& operator=(const PluginCalls&) = delete;

    // A new call tied to scope: its id, and its entry, or null when the scope is cancelled
    // already (then nothing starts and nothing will be called).
    std::pair<Id, Entry*> open(herd::Scope& scope, Payload data) {
        Id id = next_id_++;
        auto owned = std::make_unique<Entry>();
        owned->self = this;
        owned->id = id;
        owned->scope = &scope;
        owned->data = std::move(data);
        if (!scope.add_hook(*owned)) return {id, nullptr};
        Entry* e = owned.get();
        entries_[id] = std::move(owned);
        return {id, e};
    }
    Entry* find(Id id) {
        auto it = entries_.find(id);
        return it == entries_.end() ? nullptr : it->second.get();
    }
    // The call's entry, out of the table and its scope, when its answer comes (null when it
    // was cancelled meanwhile).
    std::unique_ptr<Entry> take(Id id) {
        auto it = entries_.find(id);
        if (it == entries_.end()) return nullptr;
        std::unique_ptr<Entry> e = std::move(it->second);
        entries_.erase(it);
        e->unlink();
        return e;
    }
    // No answer reaches the plugin after this; true when the call was open.
    bool cancel(Id id) noexcept {
        std::unique_ptr<Entry> e = take(id);
        if (!e) return false;
        try {
            stop_(*e);
        } catch (...) {
            // The client could not even note it (out of memory): the call ends on its own
            // timeout and its answer finds no entry.
        }
        return true;
    }
    // The plugin stops: every call still open is cancelled.
    void shutdown() noexcept {
        while (!entries_.empty()) cancel(entries_.begin()->first);
    }
    std::size_t size() const { return entries_.size(); }

    // Hands a call's answer to Payload::done, through the plugin's loop and tied to the call's
    // scope (dropped if the scope goes first). Nothing when the call was cancelled.
    template <class Result>
    void answer(PluginLoop& loop, Id id, Result result, const herd::ClientError* error) {
        std::unique_ptr<Entry> entry = take(id);
        if (!entry) return;
        std::optional<herd::ClientError> copy;
        if (error != nullptr) copy.emplace(*error);
        loop.post(
            [done = std::move(entry->data.done), result = std::move(result),
             copy = std::move(copy)]() mutable {
                if (done) done(std::move(result), copy ? &*copy : nullptr);
            },
            entry->scope);
    }
    // The worker's client for a call (shared() makes it at the first use), or null when the
    // plugin has none: then the call's answer is shared()'s error, from the loop.
    template <class Result, class Client>
    Client* client_for(PluginLoop& loop, Id id, const std::function<Client&()>& shared) {
        try {
            return &shared();
        } catch (const herd::ClientError& error) {
            loop.post([this, &loop, id, error] { answer(loop, id, Result(), &error); });
            return nullptr;
        }
    }

  private:
    std::function<void(Entry&)> stop_;
    std::map<Id, std::unique_ptr<Entry>> entries_;
    Id next_id_ = 1;
};

}  // namespace herd::worker
