// The WebSocket opening handshake; see handshake.hpp. SHA-1 is nettle's (base64 too, in
// base64.cpp).
#include "ws/handshake.hpp"

#include "ws/base64.hpp"

#include <nettle/sha1.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace herd::ws {
namespace {

std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Whether any field named `name` lists `token` among its comma-separated elements (RFC 9110
// 5.6.1: the list may be split across several fields, with optional whitespace around each).
bool has_token(const herd::Request& request, std::string_view name, std::string_view token,
               bool case_sensitive) {
    for (const herd::Header& h : request.headers()) {
        if (!herd::iequals(h.name, name)) continue;
        std::string_view rest = h.value;
        for (;;) {
            std::size_t comma = rest.find(',');
            std::string_view element = trim_ows(rest.substr(0, comma));
            if (case_sensitive ? element == token : herd::iequals(element, token)) return true;
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
        }
    }
    return false;
}

std::size_t count_fields(const herd::Request& request, std::string_view name) {
    std::size_t n = 0;
    for (const herd::Header& h : request.headers()) n += herd::iequals(h.name, name) ? 1 : 0;
    return n;
}

// The key is the base64 of 16 bytes: 22 characters and "==" (RFC 6455 4.1).
bool valid_key(std::string_view key) {
    constexpr std::size_t key_chars = 24;
    constexpr std::size_t key_bytes = 16;
    if (key.size() != key_chars) return false;
    std::optional<std::string> bytes = base64_decode(key);
    return bytes && bytes->size() == key_bytes;
}

HandshakeCheck refuse(int status, std::string reason) {
    HandshakeCheck c;
    c.status = status;
    c.reason = std::move(reason);
    return c;
}

}  // namespace

HandshakeCheck check_handshake(const herd::Request& request) {
    if (request.method() != "GET")
        return refuse(
            405, "method " + std::string(request.method()) + ": a WebSocket handshake is a GET");
    if (request.http_major() != 1 || request.http_minor() != 1)
        return refuse(505, "HTTP/" + std::to_string(request.http_major()) + "." +
                               std::to_string(request.http_minor()) +
                               ": a WebSocket handshake needs HTTP/1.1");
    if (count_fields(request, "Upgrade") == 0) return refuse(400, "Upgrade: missing");
    if (!has_token(request, "Upgrade", "websocket", false))
        return refuse(400, "Upgrade: no \"websocket\" token");
    if (count_fields(request, "Connection") == 0) return refuse(400, "Connection: missing");
    if (!has_token(request, "Connection", "upgrade", false))
        return refuse(400, "Connection: no \"upgrade\" token");

    std::optional<std::string_view> version = request.header("Sec-WebSocket-Version");
    if (!version) return refuse(400, "Sec-WebSocket-Version: missing");
    std::string_view v = trim_ows(*version);
    if (v != "13") {
        // The client's value goes into a reason that may be logged or sent back: a short cut.
        constexpr std::size_t shown = 16;
        std::string quoted =
            v.size() > shown ? std::string(v.substr(0, shown)) + "..." : std::string(v);
        return refuse(426, "Sec-WebSocket-Version: " + quoted + " is not 13");
    }

    std::size_t keys = count_fields(request, "Sec-WebSocket-Key");
    if (keys == 0) return refuse(400, "Sec-WebSocket-Key: missing");
    if (keys > 1) return refuse(400, "Sec-WebSocket-Key: more than one field");
    std::string_view key = trim_ows(*request.header("Sec-WebSocket-Key"));
    if (!valid_key(key)) return refuse(400, "Sec-WebSocket-Key: not the base64 of 16 bytes");

    HandshakeCheck ok;
    ok.accept = accept_key(key);
    return ok;
}

std::string accept_key(std::string_view key) {
    static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    sha1_ctx ctx;
    sha1_init(&ctx);
    sha1_update(&ctx, key.size(), reinterpret_cast<const std::uint8_t*>(key.data()));
    sha1_update(&ctx, guid.size(), reinterpret_cast<const std::uint8_t*>(guid.data()));
    std::uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_digest(&ctx, sizeof digest, digest);
    return base64_encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

bool offers_protocol(const herd::Request& request, std::string_view protocol) {
    // An empty name would match the empty elements a list may hold ("a,,b").
    return !protocol.empty() && has_token(request, "Sec-WebSocket-Protocol", protocol, true);
}

}  // namespace herd::ws
