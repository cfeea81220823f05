// The shared state's data model, pure (no I/O): a map of string keys to JSON values with one
// global version, the changes between two versions (deltas), snapshots, and the replica a
// worker keeps. The broker's store and every worker's replica are the same StateStore; the
// broker commits changes, the replicas apply what the broker sends.
//
// Versions: every committed batch of changes gets a version at least as high as the one before
// (one more for herd's own writes; the Redis counter's value for Redis). A delta carries the
// version it applies to (base) and the one it produces (version, >= base): a replica applies a
// delta only on top of exactly its base, so a missed delta is detected as a gap, never applied
// out of order. A snapshot replaces everything, whatever its version.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace herd::state {

using json = nlohmann::json;

// Keys: 1 to max_key_bytes bytes of UTF-8 without control characters. Values: any JSON up to
// max_value_bytes serialized and max_value_depth levels of nesting. The same limits are
// enforced by the Redis write script, so outside writers cannot store what herd rejects.
inline constexpr std::size_t max_key_bytes = 1024;
inline constexpr std::size_t max_value_bytes = 1u << 20;
inline constexpr int max_value_depth = 128;

// Ordered, with lookups by string_view: list(prefix) is a range scan.
using Entries = std::map<std::string, json, std::less<>>;

// One key's new value, or its removal.
struct Change {
    std::string key;
    std::optional<json> value;  // nullopt: erased

    bool erased() const { return !value.has_value(); }
    bool operator==(const Change&) const = default;
};

struct Delta {
    std::uint64_t base = 0;     // the version this delta applies to
    std::uint64_t version = 0;  // the version it produces (>= base)
    std::vector<Change> changes;

    bool operator==(const Delta&) const = default;
};

struct Snapshot {
    std::uint64_t version = 0;
    Entries entries;

    bool operator==(const Snapshot&) const = default;
};

// "" when the key is acceptable, else why not ("key is empty", "key contains a control
// character (byte 0x0a at offset 3)", ...).
std::string key_error(std::string_view key);
// "" when the value is acceptable, else why not (too deep, too large, a string that is not
// UTF-8). Serializes the value once; serialized_size gets its size when not null.
std::string value_error(const json& value, std::size_t* serialized_size = nullptr);
// Nesting depth of a JSON value (a scalar is 0, [] is 1), computed without recursion so a
// hostile value cannot exhaust the stack; stops counting at limit + 1.
int json_depth(const json& value, int limit = max_value_depth);

// The changes that turn `from` into `to`: one per key that differs, in key order.
std::vector<Change> diff(const Entries& from, const Entries& to);

class StateStore {
  public:
    enum class ApplyResult {
        applied,  // delta.base was our version: applied
        stale,    // we already have delta.version (or newer): ignored
        gap,      // delta.base is not our version and it is newer: something was missed
    };

    std::uint64_t version() const { return version_; }
    const Entries& entries() const { return entries_; }
    std::size_t size() const { return entries_.size(); }
    const json* find(std::string_view key) const;
    // Entries whose key starts with prefix ("" for all).
    Entries list(std::string_view prefix) const;
    Snapshot snapshot() const { return Snapshot{version_, entries_}; }

    // Producer side (the broker). Applies the changes in order and moves to new_version,
    // which must be >= version() (throws std::invalid_argument otherwise). Returns the delta.
    Delta commit(std::vector<Change> changes, std::uint64_t new_version);
    // commit() of one change at version() + 1.
    Delta set(std::string key, json value);
    Delta erase(std::string key);

    // Consumer side (a replica).
    ApplyResult apply(const Delta& delta);
    // Replaces everything with the snapshot; returns what changed (for watchers).
    std::vector<Change> reset(Snapshot snapshot);

  private:
    void apply_changes(const std::vector<Change>& changes);

    std::uint64_t version_ = 0;
    Entries entries_;
};

// A worker's copy: a StateStore that knows whether it has received its first snapshot.
// Deltas before the first snapshot are ignored (the snapshot will include them).
class Replica {
  public:
    enum class Result { applied, stale, gap, unsynced };

    bool synced() const { return synced_; }
    const StateStore& store() const { return store_; }
    std::uint64_t version() const { return store_.version(); }
    const json* find(std::string_view key) const { return store_.find(key); }

    // Returns the changes it made (against the previous content, or against nothing when
    // this is the first snapshot).
    std::vector<Change> apply(Snapshot snapshot);
    Result apply(const Delta& delta);

  private:
    StateStore store_;
    bool synced_ = false;
};

}  // namespace herd::state
