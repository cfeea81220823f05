// Redis connection URLs, and keeping their passwords out of every message.
//
//   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]     HOST: a name, an IPv4 address or [IPv6]
//   unix://[[USER]:PASSWORD@]/PATH/TO/SOCKET[?db=DB]
//
// PORT defaults to 6379 and DB to 0; USER and PASSWORD may be percent-encoded ("%40" for
// "@"). With a password the broker sends AUTH [USER] PASSWORD on each connection. A host name
// is resolved (blocking) at each connection attempt: prefer an address. rediss:// (TLS) is
// refused: hiredis 0.14 has no TLS.
#pragma once

#include <string>
#include <string_view>

#include "core/error.hpp"

namespace herd::client {

struct RedisUrl {
    bool unix_socket = false;
    std::string host;  // TCP: name or address (without brackets)
    int port = 6379;
    std::string path;  // unix socket
    int db = 0;
    std::string user;               // "" : AUTH PASSWORD only
    std::string password;           // "" : no AUTH
    std::string raw_password_text;  // the password as written in the URL (maybe encoded)

    // The URL with the password replaced by "***", for logs and status.
    std::string redacted() const;
    // Replaces every occurrence of the password (and of its percent-encoded form) in text by
    // "***": applied to every message that may echo what Redis or hiredis said.
    std::string scrub(std::string text) const;
    // "127.0.0.1:6379" or "/run/redis.sock" (no credentials), for short messages.
    std::string endpoint() const;
};

// Throws core::Error saying what is wrong, never quoting the password.
RedisUrl parse_redis_url(std::string_view url);

}  // namespace herd::client
