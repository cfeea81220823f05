// An http:// URL taken apart for the HTTP client: where to connect and what to ask for. Pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace herd::client {

struct Url {
    std::string host;  // "127.0.0.1", "::1" (no brackets), "api.internal"
    std::uint16_t port = 80;
    std::string target;       // "/v1/items?id=3": path and query, never empty
    bool ip_literal = false;  // host is an address: no name lookup
    std::string host_header;  // "api.internal:8080" (the port only when not 80)
    // The pool's key: "host:port".
    std::string origin() const;
};

// Parses an absolute http:// URL. Throws ClientError (client_error.hpp) of kind `invalid`
// naming what is wrong, or `unsupported` for https:// and other schemes (herd's client has
// no TLS yet).
Url parse_url(std::string_view text);

}  // namespace herd::client
