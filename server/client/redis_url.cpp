// Redis connection URLs; see redis_url.hpp.
#include "client/redis_url.hpp"

#include <charconv>

#include <fmt/format.h>

namespace herd::client {
namespace {

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Percent-decoding; `what` names the part in the error (never its content: it may be the
// password).
std::string percent_decode(std::string_view s, const char* what) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out.push_back(s[i]);
            continue;
        }
        if (i + 2 >= s.size())
            throw core::Error(fmt::format("redis url: the {} has a truncated %-escape", what));
        int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
        if (hi < 0 || lo < 0)
            throw core::Error(fmt::format("redis url: the {} has an invalid %-escape", what));
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return out;
}

int parse_number(std::string_view s, int min, int max, const std::string& what) {
    int v = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < min || v > max)
        throw core::Error(fmt::format("redis url: {} must be a number from {} to {}, got \"{}\"",
                                      what, min, max, s));
    return v;
}

// Splits "USER:PASSWORD@" off the authority; `rest` keeps what follows the '@'.
void parse_userinfo(std::string_view& rest, RedisUrl& url) {
    // The last '@' before the path: a password may contain '@' only percent-encoded, but be
    // lenient with the host part never containing one.
    auto at = rest.rfind('@');
    if (at == std::string_view::npos) return;
    std::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    auto colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
        // "redis://secret@host": Redis's own convention is a password without a user.
        url.raw_password_text = std::string(userinfo);
        url.password = percent_decode(userinfo, "password");
        return;
    }
    url.user = percent_decode(userinfo.substr(0, colon), "user name");
    url.raw_password_text = std::string(userinfo.substr(colon + 1));
    url.password = percent_decode(userinfo.substr(colon + 1), "password");
}

std::string_view take_query(std::string_view& rest) {
    auto q = rest.find('?');
    if (q == std::string_view::npos) return {};
    std::string_view query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    return query;
}

void parse_query(std::string_view query, RedisUrl& url) {
    while (!query.empty()) {
        auto amp = query.find('&');
        std::string_view item = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (item.empty()) continue;
        auto eq = item.find('=');
        std::string_view name = item.substr(0, eq);
        std::string_view value = eq == std::string_view::npos ? "" : item.substr(eq + 1);
        if (name == "db")
            url.db = parse_number(value, 0, 65535, "db");
        else
            throw core::Error(fmt::format(
                "redis url: unknown query parameter \"{}\" (only \"db\" is known)", name));
    }
}

}  // namespace

RedisUrl parse_redis_url(std::string_view text) {
    RedisUrl url;
    std::string_view rest;
    if (text.starts_with("redis://")) {
        rest = text.substr(8);
    } else if (text.starts_with("unix://")) {
        rest = text.substr(7);
        url.unix_socket = true;
    } else if (text.starts_with("rediss://")) {
        throw core::Error("redis url: rediss:// (TLS) is not supported; use redis:// or unix://");
    } else {
        throw core::Error(
            "redis url: expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or "
            "unix://[[USER]:PASSWORD@]/PATH[?db=N]");
    }
    std::string_view query = take_query(rest);
    if (url.unix_socket) {
        // unix:///path or unix://:password@/path
        if (!rest.starts_with('/')) {
            auto slash = rest.find('/');
            if (slash == std::string_view::npos ||
                rest.substr(0, slash).find('@') == std::string_view::npos)
                throw core::Error(
                    "redis url: unix:// needs an absolute socket path "
                    "(unix:///run/redis/redis.sock)");
            std::string_view authority = rest.substr(0, slash);
            parse_userinfo(authority, url);
            if (!authority.empty())
                throw core::Error(
                    "redis url: unix:// takes no host (unix://:PASSWORD@/path/to/socket)");
            rest = rest.substr(slash);
        }
        url.path = percent_decode(rest, "socket path");
        if (url.path.size() < 2) throw core::Error("redis url: the unix socket path is empty");
        parse_query(query, url);
        return url;
    }
    auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view db = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
    parse_userinfo(authority, url);
    if (authority.starts_with('[')) {
        auto close = authority.find(']');
        if (close == std::string_view::npos)
            throw core::Error("redis url: an IPv6 address must end with ']'");
        url.host = std::string(authority.substr(1, close - 1));
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (!after.starts_with(':'))
                throw core::Error("redis url: expected ':PORT' after the IPv6 address");
            url.port = parse_number(after.substr(1), 1, 65535, "the port");
        }
    } else {
        auto colon = authority.find(':');
        url.host = std::string(authority.substr(0, colon));
        if (colon != std::string_view::npos)
            url.port = parse_number(authority.substr(colon + 1), 1, 65535, "the port");
    }
    if (url.host.empty()) throw core::Error("redis url: the host is missing");
    for (char c : url.host)
        if (static_cast<unsigned char>(c) <= 0x20 || c == '/' || c == '@')
            throw core::Error("redis url: the host contains an invalid character");
    if (!db.empty()) url.db = parse_number(db, 0, 65535, "the database number");
    parse_query(query, url);
    return url;
}

std::string RedisUrl::redacted() const {
    std::string auth;
    if (!user.empty() || !password.empty()) auth = user + (password.empty() ? "" : ":***") + "@";
    if (unix_socket) return "unix://" + auth + path + (db != 0 ? "?db=" + std::to_string(db) : "");
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return "redis://" + auth + h + ":" + std::to_string(port) + "/" + std::to_string(db);
}

std::string RedisUrl::endpoint() const {
    if (unix_socket) return path;
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return h + ":" + std::to_string(port);
}

std::string RedisUrl::scrub(std::string text) const {
    for (const std::string* secret : {&password, &raw_password_text}) {
        if (secret->empty()) continue;
        std::size_t at = 0;
        while ((at = text.find(*secret, at)) != std::string::npos) {
            text.replace(at, secret->size(), "***");
            at += 3;
        }
    }
    return text;
}

}  // namespace herd::client
