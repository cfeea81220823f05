// Taking an http:// URL apart; see url.hpp.
#include "client/url.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "client/client_error.hpp"

namespace herd::client {
namespace {

[[noreturn]] void invalid(std::string_view url, const std::string& why) {
    throw ClientError(ErrorKind::invalid,
                      "invalid URL \"" + std::string(url.substr(0, 200)) + "\": " + why);
}

bool host_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

// Bytes a request target may carry as they are (RFC 3986 pchar, '/', '?', and '%').
bool target_char(char c) {
    static constexpr std::string_view other = "-._~!$&'()*+,;=:@/?%";
    return std::isalnum(static_cast<unsigned char>(c)) || other.find(c) != std::string_view::npos;
}

}  // namespace

const char* error_kind_name(ErrorKind k) {
    switch (k) {
        case ErrorKind::invalid:
            return "invalid";
        case ErrorKind::unsupported:
            return "unsupported";
        case ErrorKind::resolve:
            return "resolve";
        case ErrorKind::connect:
            return "connect";
        case ErrorKind::timeout:
            return "timeout";
        case ErrorKind::protocol:
            return "protocol";
        case ErrorKind::too_large:
            return "too_large";
        case ErrorKind::closed:
            return "closed";
        case ErrorKind::cancelled:
            return "cancelled";
        case ErrorKind::overloaded:
            return "overloaded";
        case ErrorKind::server:
            return "server";
    }
    return "?";
}

std::string Url::origin() const {
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
           std::to_string(port);
}

Url parse_url(std::string_view text) {
    auto colon = text.find("://");
    if (colon == std::string_view::npos) invalid(text, "no scheme (expected http://host/...)");
    std::string scheme(text.substr(0, colon));
    std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (scheme == "https")
        throw ClientError(ErrorKind::unsupported,
                          "cannot fetch \"" + std::string(text.substr(0, 200)) +
                              "\": herd's HTTP client has no TLS (https://); put a TLS proxy "
                              "on the loopback in front of the service");
    if (scheme != "http")
        throw ClientError(
            ErrorKind::unsupported,
            "cannot fetch \"" + std::string(text.substr(0, 200)) + "\": only http:// is supported");
    std::string_view rest = text.substr(colon + 3);
    std::size_t end = rest.find_first_of("/?#");
    std::string_view authority = rest.substr(0, end);
    std::string_view tail = end == std::string_view::npos ? "" : rest.substr(end);
    if (auto hash = tail.find('#'); hash != std::string_view::npos) tail = tail.substr(0, hash);
    if (authority.find('@') != std::string_view::npos)
        invalid(text, "credentials in the URL are not supported (send an Authorization header)");
    Url u;
    std::string_view port_text;
    if (authority.starts_with("[")) {
        auto close = authority.find(']');
        if (close == std::string_view::npos) invalid(text, "unclosed [ in the host");
        u.host = std::string(authority.substr(1, close - 1));
        in6_addr a6{};
        if (inet_pton(AF_INET6, u.host.c_str(), &a6) != 1)
            invalid(text, "\"" + u.host + "\" is not an IPv6 address");
        u.ip_literal = true;
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') invalid(text, "unexpected text after ]");
            port_text = after.substr(1);
        }
    } else {
        auto c = authority.rfind(':');
        u.host = std::string(authority.substr(0, c));
        if (c != std::string_view::npos) port_text = authority.substr(c + 1);
        if (u.host.empty()) invalid(text, "no host");
        if (!std::all_of(u.host.begin(), u.host.end(), host_char))
            invalid(text, "the host has characters a host name cannot have");
        std::transform(u.host.begin(), u.host.end(), u.host.begin(),
                       [](unsigned char ch) { return std::tolower(ch); });
        in_addr a4{};
        u.ip_literal = inet_pton(AF_INET, u.host.c_str(), &a4) == 1;
    }
    if (!port_text.empty() || authority.ends_with(":")) {
        unsigned port = 0;
        auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
        if (ec != std::errc() || p != port_text.data() + port_text.size() || port == 0 ||
            port > 65535)
            invalid(text, "the port must be a number from 1 to 65535");
        u.port = static_cast<std::uint16_t>(port);
    }
    if (!std::all_of(tail.begin(), tail.end(), target_char))
        invalid(text, "the path or query has bytes that must be percent-encoded");
    u.target = tail.empty()            ? "/"
               : tail.starts_with("?") ? "/" + std::string(tail)
                                       : std::string(tail);
    std::string shown = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
    u.host_header = u.port == 80 ? shown : shown + ":" + std::to_string(u.port);
    return u;
}

}  // namespace herd::client
