// The broker's messages; see codec.hpp.
#include "state/codec.hpp"

#include <fmt/format.h>

#include "core/json_text.hpp"

namespace herd::state {
namespace {

// A JSON value shortened for an error message; never throws (invalid UTF-8 is replaced).
std::string describe(const json& j) {
    std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() > 60) text = text.substr(0, 57) + "...";
    return text;
}

[[noreturn]] void fail(const std::string& where, const std::string& what) {
    throw CodecError(where + ": " + what);
}

const json& require_object(const json& body, const std::string& what) {
    if (!body.is_object()) fail(what, "expected a JSON object, got " + describe(body));
    return body;
}

const json& field(const json& body, const char* name, const std::string& what) {
    auto it = body.find(name);
    if (it == body.end()) fail(what, std::string("\"") + name + "\" is missing");
    return *it;
}

std::uint64_t get_id(const json& body, const std::string& what) {
    return decode_version(field(body, "id", what), what + ": \"id\"");
}

std::string get_key(const json& j, const std::string& where) {
    if (!j.is_string()) fail(where, "expected a string, got " + describe(j));
    const auto& key = j.get_ref<const std::string&>();
    if (std::string e = key_error(key); !e.empty()) fail(where, e + " (" + quote_key(key) + ")");
    return key;
}

json checked_value(const json& j, const std::string& where) {
    if (std::string e = value_error(j); !e.empty()) fail(where, e);
    return j;
}

std::string get_text(const json& body, const char* name, const std::string& what) {
    auto it = body.find(name);
    if (it == body.end()) return {};
    if (!it->is_string())
        fail(what, std::string("\"") + name + "\": expected a string, got " + describe(*it));
    return it->get<std::string>();
}

bool get_bool(const json& body, const char* name, const std::string& what) {
    const json& j = field(body, name, what);
    if (!j.is_boolean())
        fail(what, std::string("\"") + name + "\": expected true or false, got " + describe(j));
    return j.get<bool>();
}

}  // namespace

std::string quote_key(std::string_view key) {
    constexpr std::size_t shown = 60;
    std::string head(key.substr(0, shown));
    std::string text = json(head).dump(-1, ' ', false, json::error_handler_t::replace);
    if (key.size() > shown)
        text = text.substr(0, text.size() - 1) + "...\" (" + std::to_string(key.size()) + " bytes)";
    return text;
}

std::uint64_t decode_version(const json& j, const std::string& what) {
    if (j.is_number_unsigned()) return j.get<std::uint64_t>();
    if (j.is_number_integer() && j.get<std::int64_t>() >= 0)
        return static_cast<std::uint64_t>(j.get<std::int64_t>());
    fail(what, "expected a non-negative integer, got " + describe(j));
}

Entries decode_entries(const json& j, const std::string& what) {
    if (!j.is_object()) fail(what, "expected an object of key: value, got " + describe(j));
    Entries entries;
    for (auto it = j.begin(); it != j.end(); ++it) {
        if (std::string e = key_error(it.key()); !e.empty())
            fail(what + "[" + quote_key(it.key()) + "]", e);
        if (std::string e = value_error(it.value()); !e.empty())
            fail(what + "[" + quote_key(it.key()) + "]", e);
        entries.emplace_hint(entries.end(), it.key(), it.value());
    }
    return entries;
}

namespace {

// Where the nesting of arrays and objects in `text` first goes past `limit` (npos if never),
// found in one linear pass that skips strings. Text that is not valid JSON is left to the parser.
// (nlohmann's parse callback could count this too, but with a callback 3.11 rescans a
// container's members at each close: quadratic in 200k empty objects.)
std::size_t nesting_past(std::string_view text, int limit) {
    int depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return i;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return std::string_view::npos;
}

}  // namespace

json parse_json(std::string_view text, const std::string& what) {
    // The envelope ({"entries": {key: value}}) adds two levels to a value's own limit.
    constexpr int limit = max_value_depth + 2;
    if (std::size_t at = nesting_past(text, limit); at != std::string_view::npos) {
        std::string message =
            fmt::format("nested more than {} levels deep (at byte {})", limit, at);
        if (what.empty()) throw CodecError(message);
        fail(what, message);
    }
    try {
        json j;
        std::string duplicate;
        if (!core::parse_json_text(text, j, duplicate)) {
            if (what.empty()) throw CodecError(duplicate);
            fail(what, duplicate);
        }
        return j;
    } catch (const json::exception& e) {
        // parse_error, and out_of_range for a number too large for a double ("1e999").
        // nlohmann's message says "at line L, column C"; drop its "[json.exception...]" tag.
        std::string message = e.what();
        auto tag_end = message.find("] ");
        if (message.starts_with("[json.exception") && tag_end != std::string::npos)
            message = message.substr(tag_end + 2);
        if (what.empty()) throw CodecError("invalid JSON: " + message);
        fail(what, "invalid JSON: " + message);
    }
}

// ---- snapshot, delta ----

json encode_snapshot(const Snapshot& snapshot) {
    json entries = json::object();
    for (const auto& [k, v] : snapshot.entries) entries[k] = v;
    return {
        {"type", msg::snapshot}, {"version", snapshot.version}, {"entries", std::move(entries)}};
}

Snapshot decode_snapshot(const json& body) {
    const std::string what = msg::snapshot;
    require_object(body, what);
    Snapshot s;
    s.version = decode_version(field(body, "version", what), what + ": \"version\"");
    s.entries = decode_entries(field(body, "entries", what), what + ": entries");
    return s;
}

json encode_delta(const Delta& delta) {
    json changes = json::array();
    for (const Change& c : delta.changes) {
        if (c.value)
            changes.push_back({{"key", c.key}, {"value", *c.value}});
        else
            changes.push_back({{"key", c.key}, {"erased", true}});
    }
    return {{"type", msg::delta},
            {"base", delta.base},
            {"version", delta.version},
            {"changes", std::move(changes)}};
}

Delta decode_delta(const json& body) {
    const std::string what = msg::delta;
    require_object(body, what);
    Delta d;
    d.base = decode_version(field(body, "base", what), what + ": \"base\"");
    d.version = decode_version(field(body, "version", what), what + ": \"version\"");
    if (d.version < d.base)
        fail(what, fmt::format("\"version\" {} is older than \"base\" {}", d.version, d.base));
    const json& changes = field(body, "changes", what);
    if (!changes.is_array())
        fail(what + ": changes", "expected an array, got " + describe(changes));
    d.changes.reserve(changes.size());
    for (std::size_t i = 0; i < changes.size(); ++i) {
        std::string where = fmt::format("{}: changes[{}]", what, i);
        const json& c = changes[i];
        if (!c.is_object()) fail(where, "expected an object, got " + describe(c));
        Change change;
        change.key = get_key(field(c, "key", where), where + ".key");
        auto value = c.find("value");
        auto erased = c.find("erased");
        if (value != c.end() && erased != c.end()) fail(where, "has both \"value\" and \"erased\"");
        if (value != c.end()) {
            change.value = checked_value(*value, where + ".value");
        } else if (erased == c.end() || !erased->is_boolean() || !erased->get<bool>()) {
            fail(where, "expected \"value\" or \"erased\": true");
        }
        d.changes.push_back(std::move(change));
    }
    return d;
}

// ---- writes ----

json encode_write(const WriteRequest& request) {
    if (request.value)
        return {{"type", msg::set},
                {"id", request.id},
                {"key", request.key},
                {"value", *request.value}};
    return {{"type", msg::erase}, {"id", request.id}, {"key", request.key}};
}

WriteRequest decode_write(const json& body) {
    require_object(body, "write request");
    std::string type = body.contains("type") && body["type"].is_string()
                           ? body["type"].get<std::string>()
                           : std::string();
    if (type != msg::set && type != msg::erase)
        fail("write request", "\"type\" must be \"state.set\" or \"state.erase\", got " +
                                  describe(body.value("type", json())));
    WriteRequest r;
    r.id = get_id(body, type);
    r.key = get_key(field(body, "key", type), type + ": key");
    if (type == msg::set) {
        r.value = checked_value(field(body, "value", type), type + ": value");
    } else if (body.contains("value")) {
        fail(type, "has a \"value\" (state.erase takes only \"id\" and \"key\")");
    }
    return r;
}

json encode_ack(const Ack& ack) {
    json j = {{"type", msg::ack}, {"id", ack.id}, {"ok", ack.ok}};
    if (ack.ok)
        j["version"] = ack.version;
    else
        j["error"] = ack.error;
    return j;
}

Ack decode_ack(const json& body) {
    const std::string what = msg::ack;
    require_object(body, what);
    Ack a;
    a.id = get_id(body, what);
    a.ok = get_bool(body, "ok", what);
    if (a.ok) {
        if (body.contains("version"))
            a.version = decode_version(body["version"], what + ": \"version\"");
    } else {
        a.error = get_text(body, "error", what);
        if (a.error.empty()) a.error = "the broker refused the write without saying why";
    }
    return a;
}

// ---- reads ----

json encode_read(const ReadRequest& request) {
    if (request.kind == ReadRequest::Kind::get)
        return {{"type", msg::get}, {"id", request.id}, {"key", request.key}};
    return {{"type", msg::list}, {"id", request.id}, {"prefix", request.key}};
}

ReadRequest decode_read(const json& body) {
    require_object(body, "read request");
    std::string type = body.contains("type") && body["type"].is_string()
                           ? body["type"].get<std::string>()
                           : std::string();
    ReadRequest r;
    if (type == msg::get) {
        r.kind = ReadRequest::Kind::get;
        r.id = get_id(body, type);
        r.key = get_key(field(body, "key", type), type + ": key");
    } else if (type == msg::list) {
        r.kind = ReadRequest::Kind::list;
        r.id = get_id(body, type);
        r.key = get_text(body, "prefix", type);
        if (r.key.size() > max_key_bytes)
            fail(type + ": prefix", fmt::format("longer than {} bytes", max_key_bytes));
    } else {
        fail("read request", "\"type\" must be \"state.get\" or \"state.list\", got " +
                                 describe(body.value("type", json())));
    }
    return r;
}

json encode_read_reply(const ReadReply& reply, ReadRequest::Kind kind) {
    json j = {{"type", msg::reply}, {"id", reply.id}, {"ok", reply.ok}};
    if (!reply.ok) {
        j["error"] = reply.error;
        return j;
    }
    j["version"] = reply.version;
    if (kind == ReadRequest::Kind::get) {
        j["found"] = reply.value.has_value();
        if (reply.value) j["value"] = *reply.value;
    } else {
        json entries = json::object();
        for (const auto& [k, v] : reply.entries) entries[k] = v;
        j["entries"] = std::move(entries);
    }
    return j;
}

ReadReply decode_read_reply(const json& body) {
    const std::string what = msg::reply;
    require_object(body, what);
    ReadReply r;
    r.id = get_id(body, what);
    r.ok = get_bool(body, "ok", what);
    if (!r.ok) {
        r.error = get_text(body, "error", what);
        return r;
    }
    r.version = decode_version(field(body, "version", what), what + ": \"version\"");
    if (body.contains("entries")) r.entries = decode_entries(body["entries"], what + ": entries");
    if (body.contains("found") && get_bool(body, "found", what))
        r.value = checked_value(field(body, "value", what), what + ": value");
    return r;
}

// ---- attach ----

json encode_attach(std::string_view worker) {
    return {{"type", msg::attach}, {"worker", worker}};
}

std::string decode_attach(const json& body) {
    const std::string what = msg::attach;
    require_object(body, what);
    const json& w = field(body, "worker", what);
    if (!w.is_string() || w.get_ref<const std::string&>().empty() ||
        w.get_ref<const std::string&>().size() > 200)
        fail(what + ": \"worker\"",
             "expected a name of 1 to 200 characters (\"app/slot/pid\"), got " + describe(w));
    const auto& name = w.get_ref<const std::string&>();
    for (char c : name)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            fail(what + ": \"worker\"", "contains a control character");
    return name;
}

std::optional<std::uint64_t> request_id(const json& body) {
    if (!body.is_object()) return std::nullopt;
    auto it = body.find("id");
    if (it == body.end()) return std::nullopt;
    if (it->is_number_unsigned()) return it->get<std::uint64_t>();
    if (it->is_number_integer() && it->get<std::int64_t>() >= 0)
        return static_cast<std::uint64_t>(it->get<std::int64_t>());
    return std::nullopt;
}

}  // namespace herd::state
