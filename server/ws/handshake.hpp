// The WebSocket opening handshake (RFC 6455 4.2), pure: whether a request is one, and the
// answer's Sec-WebSocket-Accept.
#pragma once

#include <string>
#include <string_view>

#include <herd/http.hpp>

namespace herd::ws {

struct HandshakeCheck {
    // 0: a valid opening handshake. Else the status to answer: 400 (a field missing or
    // malformed), 405 (not GET), 426 (a Sec-WebSocket-Version other than 13: the answer
    // carries "Sec-WebSocket-Version: 13"), 505 (not HTTP/1.1).
    int status = 0;
    std::string reason;  // what is wrong, naming the field: "Sec-WebSocket-Key: ..."
    std::string accept;  // when valid: the Sec-WebSocket-Accept value
};

// Checks every rule of RFC 6455 4.2.1 for `request`: method GET, HTTP/1.1, an Upgrade field
// whose tokens include "websocket" and a Connection field whose tokens include "upgrade"
// (both case-insensitive, comma-separated lists), Sec-WebSocket-Version 13, and a
// Sec-WebSocket-Key that is the base64 of exactly 16 bytes. (Host is the HTTP parser's.)
HandshakeCheck check_handshake(const herd::Request& request);

// base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")): RFC 6455 4.2.2 (nettle).
std::string accept_key(std::string_view key);

// Whether `protocol` is one of the comma-separated tokens of the request's
// Sec-WebSocket-Protocol fields (all of them), exactly (the RFC makes them case-sensitive).
bool offers_protocol(const herd::Request& request, std::string_view protocol);

}  // namespace herd::ws
