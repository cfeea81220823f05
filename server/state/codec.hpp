// The broker's messages as JSON bodies for core::Channel: encoders, and decoders that
// validate hostile input (they are fuzzed). Every decoder either returns a well-formed value
// (keys and values within the limits of state_store.hpp, versions consistent) or throws
// CodecError naming the message type and the field: `state.delta: changes[2].key: key is
// empty`. They read only the fields they need; other fields are ignored (newer senders).
// The protocol itself (who sends what, in which order) is described in broker/broker.hpp.
// Part of herd_state (server/state/), not of the broker: the worker's replica speaks it too,
// and the broker depends on herd_state, never the other way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "state/state_store.hpp"

namespace herd::state {

class CodecError : public core::Error {
  public:
    using Error::Error;
};

// Message types.
namespace msg {
inline constexpr const char* attach = "attach";            // master -> broker, 1 fd
inline constexpr const char* snapshot = "state.snapshot";  // broker -> worker
inline constexpr const char* delta = "state.delta";        // broker -> worker
inline constexpr const char* set = "state.set";            // worker/master -> broker
inline constexpr const char* erase = "state.erase";        // worker/master -> broker
inline constexpr const char* ack = "state.ack";            // broker -> worker/master
inline constexpr const char* resync = "state.resync";      // worker -> broker
inline constexpr const char* get = "state.get";            // master -> broker
inline constexpr const char* list = "state.list";          // master -> broker
inline constexpr const char* reply = "state.reply";        // broker -> master
inline constexpr const char* status = "status";            // master -> broker, and back
inline constexpr const char* heartbeat = "heartbeat";      // broker -> master
inline constexpr const char* ready = "ready";              // broker -> master
}  // namespace msg

// A key, quoted and shortened for messages: "\"user:42\"", "\"aaaa...\" (2000 bytes)".
std::string quote_key(std::string_view key);

// ---- snapshot, delta ----
json encode_snapshot(const Snapshot& snapshot);
Snapshot decode_snapshot(const json& body);
json encode_delta(const Delta& delta);
Delta decode_delta(const json& body);

// ---- writes: state.set / state.erase, answered by state.ack ----
struct WriteRequest {
    std::uint64_t id = 0;
    std::string key;
    std::optional<json> value;  // nullopt: erase
    bool operator==(const WriteRequest&) const = default;
};
json encode_write(const WriteRequest& request);
// body's "type" decides: state.set needs "value", state.erase must not have one.
WriteRequest decode_write(const json& body);

struct Ack {
    std::uint64_t id = 0;
    bool ok = false;
    std::string error;          // when !ok
    std::uint64_t version = 0;  // when ok: the version that includes the write
    bool operator==(const Ack&) const = default;
};
json encode_ack(const Ack& ack);
Ack decode_ack(const json& body);

// ---- reads for the CLI: state.get / state.list, answered by state.reply ----
struct ReadRequest {
    enum class Kind { get, list };
    Kind kind = Kind::get;
    std::uint64_t id = 0;
    std::string key;  // get: the key; list: the prefix ("" for everything)
    bool operator==(const ReadRequest&) const = default;
};
json encode_read(const ReadRequest& request);
ReadRequest decode_read(const json& body);

struct ReadReply {
    std::uint64_t id = 0;
    bool ok = false;
    std::string error;
    std::uint64_t version = 0;
    std::optional<json> value;  // get: the value, nullopt when absent
    Entries entries;            // list: what matched
    bool operator==(const ReadReply&) const = default;
};
// kind decides which of value/entries is encoded.
json encode_read_reply(const ReadReply& reply, ReadRequest::Kind kind);
ReadReply decode_read_reply(const json& body);

// ---- attach ----
// {"type": "attach", "worker": "web/0/4711"}: who the descriptor that comes with it is for.
json encode_attach(std::string_view worker);
std::string decode_attach(const json& body);

// ---- the id of a request (status, state.*), for error replies to malformed requests ----
std::optional<std::uint64_t> request_id(const json& body);

// ---- helpers shared with the backends (the state file, Redis replies) ----
// A non-negative integer field; `what` names it in the error.
std::uint64_t decode_version(const json& j, const std::string& what);
// A JSON object of key -> value, every key and value checked; `what` prefixes the errors.
Entries decode_entries(const json& j, const std::string& what);
// Parses JSON text with a nesting limit (max_value_depth + 2, for the envelope), so that
// hostile text cannot make anything recurse deeply, and refusing an object that repeats a key
// (core::parse_json_text). Throws CodecError("<what>: invalid JSON: ... at line L, column C",
// or "<what>: key \"k\" appears twice in entries"; without the "<what>: " when what is empty).
json parse_json(std::string_view text, const std::string& what);

}  // namespace herd::state
