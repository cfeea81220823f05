// Socket helpers; see socket.hpp.
#include "core/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <charconv>
#include <cstring>

#include "core/error.hpp"
#include "core/log.hpp"

namespace herd::core {

int SocketAddress::port() const {
    if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
    if (family() == AF_INET6)
        return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
    return 0;
}

bool SocketAddress::is_loopback() const {
    if (family() == AF_INET)
        return (ntohl(reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr) >> 24) ==
               127;
    if (family() == AF_INET6) {
        const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
        return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
    }
    return false;
}

void SocketAddress::set_port(int port) {
    if (family() == AF_INET)
        reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(static_cast<uint16_t>(port));
    else if (family() == AF_INET6)
        reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(static_cast<uint16_t>(port));
}

SocketAddress parse_address(std::string_view text) {
    SocketAddress a;
    a.text = std::string(text);
    std::string_view host, port;
    if (text.starts_with('[')) {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            throw Error("expected \"[IPv6]:port\", got \"" + a.text + "\"");
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos)
            throw Error("expected \"host:port\", got \"" + a.text + "\"");
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    int p = -1;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p < 0 || p > 65535)
        throw Error("port must be a number from 0 to 65535, got \"" + std::string(port) +
                    "\" in \"" + a.text + "\"");
    std::string h(host);
    if (h.empty() || h == "*") h = "0.0.0.0";
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a.storage);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.storage);
    if (inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        a.length = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        a.length = sizeof(sockaddr_in6);
    } else {
        throw Error("\"" + h +
                    "\" is not an IPv4 or IPv6 address (host names are not resolved) in \"" +
                    a.text + "\"");
    }
    a.set_port(p);
    return a;
}

UniqueFd listen_tcp(const SocketAddress& address, bool reuseport, int backlog) {
    UniqueFd fd(socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) throw_errno("socket() for " + address.text);
    int one = 1;
    if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        throw_errno("setsockopt(SO_REUSEADDR) for " + address.text);
    if (reuseport && setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        throw_errno("setsockopt(SO_REUSEPORT) for " + address.text);
    if (address.family() == AF_INET6 &&
        setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
        throw_errno("setsockopt(IPV6_V6ONLY) for " + address.text);
    // Accepted sockets inherit it (Linux copies the listener's TCP options), so no worker
    // makes a setsockopt per connection. Responses leave in one writev; Nagle would only delay
    // pipelined ones.
    if (setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0)
        throw_errno("setsockopt(TCP_NODELAY) for " + address.text);
    int defer_seconds = 1;
    if (setsockopt(fd.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_seconds, sizeof defer_seconds) <
        0)
        throw_errno("setsockopt(TCP_DEFER_ACCEPT) for " + address.text);
    if (bind(fd.get(), address.get(), address.length) < 0)
        throw_errno("bind(" + address.text + ")");
    if (listen(fd.get(), backlog) < 0) throw_errno("listen(" + address.text + ")");
    return fd;
}

std::string local_address(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return "?";
    char buf[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET) {
        auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
        inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
        return std::string(buf) + ":" + std::to_string(ntohs(v4->sin_port));
    }
    if (ss.ss_family == AF_INET6) {
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
        inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
        // Appended piece by piece: `"[" + std::string(buf)` draws a false -Werror=restrict
        // from GCC 12 at -O3.
        std::string text;
        text.reserve(sizeof buf + 8);
        text += '[';
        text += buf;
        text += "]:";
        text += std::to_string(ntohs(v6->sin6_port));
        return text;
    }
    return "?";
}

void set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        throw_errno("fcntl(O_NONBLOCK) on fd " + std::to_string(fd));
}

}  // namespace herd::core
