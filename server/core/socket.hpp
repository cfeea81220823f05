// Socket helpers: addresses, listen sockets, flags. Errors name the call and the address.
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>

#include "core/unique_fd.hpp"

namespace herd::core {

struct SocketAddress {
    sockaddr_storage storage{};
    socklen_t length = 0;
    std::string text;  // as written in the config, for messages

    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
    int family() const { return storage.ss_family; }
    int port() const;
    void set_port(int port);
    // 127.0.0.0/8 or ::1 (and ::ffff:127.x.y.z).
    bool is_loopback() const;

    // As written in the config: "127.0.0.1:0" twice is the same setting, whatever was bound.
    bool operator==(const SocketAddress& other) const { return text == other.text; }
};

// "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:80". Throws Error saying what is wrong.
SocketAddress parse_address(std::string_view text);

// A non-blocking, close-on-exec TCP listen socket. SO_REUSEADDR always (a restarted master
// binds at once); SO_REUSEPORT when asked. TCP_DEFER_ACCEPT (nginx's "deferred"): a
// connection becomes acceptable once its first bytes have arrived, so the worker that
// accepts it can serve it at once, and a worker about to block in a slow handler is never
// holding fresh connections whose requests have not come yet. A client that connects and
// sends nothing is still accepted, a second or three later, and then meets the header timeout.
// Throws Error naming the address, e.g. "bind(127.0.0.1:8080): EADDRINUSE (Address already in
// use)".
UniqueFd listen_tcp(const SocketAddress& address, bool reuseport, int backlog);

// The address a socket is bound to ("127.0.0.1:39117").
std::string local_address(int fd);

void set_nonblocking(int fd);

}  // namespace herd::core
