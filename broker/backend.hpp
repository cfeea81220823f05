// What the broker needs from a state backend (file, Redis): it keeps the broker's StateStore
// in step with the backend, reports each change as a delta, and performs writes.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/event_loop.hpp"
#include "state/state_store.hpp"

namespace herd::broker {

using json = nlohmann::json;

struct BackendStatus {
    std::string kind;    // "file" or "redis"
    std::string target;  // the file's path, or the Redis URL without its password
    bool up = false;     // writes can succeed now
    // The store holds the backend's content (read at least once). Until then nothing is sent
    // to workers: a broker restarted during an outage must not wipe their copies.
    bool loaded = false;
    std::optional<std::chrono::system_clock::time_point> down_since;  // when !up
    std::string last_error;  // the latest problem, "" once it is solved
    std::uint64_t version = 0;
    std::size_t keys = 0;
    nlohmann::json details = nlohmann::json::object();  // backend-specific figures
    // Redis through sentinels: the primary the sentinels named last ("" before any), what
    // ROLE said there last ("master", "slave", ...; "" before any check), and how many times
    // the primary's address changed after the first (failovers).
    struct Primary {
        std::string address;
        std::string role;
        std::uint64_t failovers = 0;
    };
    std::optional<Primary> primary;

    // {"backend", "target", "up", "loaded", "down_since_ms" (Unix ms, or null), "down_for_ms",
    //  "last_error", "version", "keys", "details"}, and "primary": {"address", "role",
    //  "failovers"} with sentinels
    nlohmann::json to_json() const;
};

class Backend {
  public:
    struct Events {
        // The store moved forward by this delta (already applied to store()).
        std::function<void(const state::Delta&)> on_delta;
        // The store was replaced wholesale (first load, or the backend's version went back:
        // Redis flushed or restarted empty): every worker needs a fresh snapshot.
        std::function<void()> on_reset;
        // up/down or last_error changed.
        std::function<void()> on_status;
    };
    // error is "" on success; version is the store version that includes the write. Called
    // only after store() includes the write (and on_delta announced it), so a writer that
    // reads after its acknowledgement sees its own write. Never called from inside write().
    using WriteDone = std::function<void(const std::string& error, std::uint64_t version)>;

    Backend(core::EventLoop& loop, Events events) : loop_(loop), events_(std::move(events)) {}
    virtual ~Backend() = default;
    Backend(const Backend&) = delete;
    Backend& operator=(const Backend&) = delete;

    // Begins: loads what it can now and watches for changes.
    virtual void start() = 0;
    // change.key and change.value are already valid (key_error/value_error).
    virtual void write(state::Change change, WriteDone done) = 0;
    virtual BackendStatus status() const = 0;

    const state::StateStore& store() const { return store_; }

  protected:
    // Helpers for implementations: keep status and notify.
    void mark_up();
    void mark_down(const std::string& error);
    void set_error(const std::string& error);
    // Applies changes at new_version (>= store version) and announces the delta.
    void publish(std::vector<state::Change> changes, std::uint64_t new_version);
    // Replaces the store and announces a reset.
    void replace(state::Snapshot snapshot);
    void fill_common(BackendStatus& s) const;
    // loop_.defer() that does nothing once this backend is destroyed.
    void defer(std::function<void()> fn);

    core::EventLoop& loop_;
    Events events_;
    state::StateStore store_;
    bool up_ = false;
    bool loaded_ = false;
    std::optional<std::chrono::system_clock::time_point> down_since_ =
        std::chrono::system_clock::now();
    std::string last_error_;

  private:
    std::shared_ptr<char> alive_ = std::make_shared<char>(0);
};

}  // namespace herd::broker
