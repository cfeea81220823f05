// The shared state a plugin sees: one map of string keys to JSON values, the same in every
// worker of every app, kept by herd's broker process in a file or in Redis.
//
// Reads come from the worker's own copy: no message, no system call. The copy is updated in
// the worker's event loop, between requests, in version order: within one worker versions
// only grow (except when the backend itself lost data, e.g. a flushed Redis), and every
// worker converges to the same state (eventual consistency; there is no cross-worker
// "read your write" guarantee before the change has propagated).
//
// Writes go to the broker, which applies them to the backend; the optional callback says
// whether the backend accepted the write. It runs in the worker's loop, after this worker's
// copy includes the write, so a reader after a successful callback sees it. Writes are never
// queued while the backend is down: they fail with an error saying so.
//
// Keys: 1 to 1024 bytes of UTF-8 without control characters. Values: any JSON up to 1 MiB
// serialized and 128 levels deep (finite numbers only). Anything else fails the write's
// callback with the reason, without being sent.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace herd {

class State {
  public:
    // value is the key's new value, or nullptr when it was erased.
    using WatchCallback = std::function<void(std::string_view key, const nlohmann::json* value)>;
    // ok, and when !ok, why (the backend is down, the key is invalid, ...).
    using DoneCallback = std::function<void(bool ok, const std::string& error)>;
    using WatchId = std::uint64_t;

    virtual ~State() = default;

    // The value of key in this worker's copy, or nullopt.
    virtual std::optional<nlohmann::json> get(std::string_view key) const = 0;
    // The same without a copy; the pointer is valid until the worker's loop applies the next
    // change (so not across requests or callbacks).
    virtual const nlohmann::json* find(std::string_view key) const = 0;
    // The version of this worker's copy; 0 before the first snapshot from the broker.
    virtual std::uint64_t version() const = 0;
    // Whether this worker has received the state at least once.
    virtual bool synced() const = 0;

    // Calls callback for every change of a key that starts with prefix ("" for all), in the
    // worker's loop, once the whole change (one delta, or a fresh snapshot) is applied, so
    // get() inside the callback sees the new state. Keys that exist when watch() is called
    // are not reported: read them with get(). The callback may call watch and unwatch.
    virtual WatchId watch(std::string_view prefix, WatchCallback callback) = 0;
    virtual void unwatch(WatchId id) = 0;

    // Sets or erases a key through the broker. done (optional) runs later in the worker's
    // loop, never inside set() or erase().
    virtual void set(std::string_view key, nlohmann::json value, DoneCallback done) = 0;
    virtual void erase(std::string_view key, DoneCallback done) = 0;
    void set(std::string_view key, nlohmann::json value) {
        set(key, std::move(value), DoneCallback{});
    }
    void erase(std::string_view key) { erase(key, DoneCallback{}); }
};

}  // namespace herd
