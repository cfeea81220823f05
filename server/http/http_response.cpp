// Encoding response heads; see http_response.hpp.
#include "http/http_response.hpp"

#include <time.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>

namespace herd::http {

std::string_view reason_phrase(int status) {
    switch (status) {
        case 100:
            return "Continue";
        case 101:
            return "Switching Protocols";
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 202:
            return "Accepted";
        case 204:
            return "No Content";
        case 205:
            return "Reset Content";
        case 206:
            return "Partial Content";
        case 301:
            return "Moved Permanently";
        case 302:
            return "Found";
        case 303:
            return "See Other";
        case 304:
            return "Not Modified";
        case 307:
            return "Temporary Redirect";
        case 308:
            return "Permanent Redirect";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 410:
            return "Gone";
        case 411:
            return "Length Required";
        case 412:
            return "Precondition Failed";
        case 413:
            return "Content Too Large";
        case 414:
            return "URI Too Long";
        case 415:
            return "Unsupported Media Type";
        case 416:
            return "Range Not Satisfiable";
        case 417:
            return "Expectation Failed";
        case 421:
            return "Misdirected Request";
        case 422:
            return "Unprocessable Content";
        case 426:
            return "Upgrade Required";
        case 428:
            return "Precondition Required";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 502:
            return "Bad Gateway";
        case 503:
            return "Service Unavailable";
        case 504:
            return "Gateway Timeout";
        case 505:
            return "HTTP Version Not Supported";
        default:
            return "Unknown";
    }
}

namespace {

// The status line of a 200, Server and Date, formatted once per second:
// "HTTP/1.1 200 OK\r\nServer: herd\r\nDate: Tue, 25 Nov 2026 10:00:00 GMT\r\n". The Server and
// Date lines of any other response are read from it too.
constexpr std::string_view ok_line = "HTTP/1.1 200 OK\r\n";
constexpr std::string_view server_line = "Server: herd\r\n";
constexpr std::string_view date_name = "Date: ";
struct CommonLines {
    char text[160];
    std::size_t size = 0;
    std::size_t date_size = 0;
    // Until then (monotonic), the wall clock is still in the second formatted. A stale `now`
    // (the loop's time) makes it end early, never late; a step of the wall clock shows within
    // a second.
    SteadyTime valid_until = SteadyTime::min();
};
CommonLines common_lines;

[[gnu::noinline]] void format_common_lines(SteadyTime now) {
    CommonLines& c = common_lines;
    timespec wall{};
    clock_gettime(CLOCK_REALTIME, &wall);
    tm utc{};
    gmtime_r(&wall.tv_sec, &utc);
    char* p = c.text;
    for (std::string_view s : {ok_line, server_line, date_name}) {
        std::memcpy(p, s.data(), s.size());
        p += s.size();
    }
    c.date_size = strftime(p, 64, "%a, %d %b %Y %H:%M:%S GMT", &utc);
    p += c.date_size;
    *p++ = '\r';
    *p++ = '\n';
    c.size = static_cast<std::size_t>(p - c.text);
    c.valid_until = now + std::chrono::nanoseconds(1000000000 - wall.tv_nsec);
}

const CommonLines& lines_for(SteadyTime now) {
    if (now >= common_lines.valid_until) [[unlikely]]
        format_common_lines(now);
    return common_lines;
}

// Bytes a plugin's header may not hold: control characters but tab in a value (RFC 9110 5.5:
// CR, LF and NUL would split or corrupt the head); in a name also tab, space and ':'.
constexpr std::uint8_t bad_in_value = 1;
constexpr std::uint8_t bad_in_name = 2;
constexpr std::array<std::uint8_t, 256> field_bytes = [] {
    std::array<std::uint8_t, 256> t{};
    for (int c = 0; c < 0x20; ++c) t[c] = bad_in_value | bad_in_name;
    t[0x7f] = bad_in_value | bad_in_name;
    t['\t'] = bad_in_name;
    t[' '] = bad_in_name;
    t[':'] = bad_in_name;
    return t;
}();

[[gnu::always_inline]] inline std::uint8_t field_flags(std::string_view s) {
    std::uint8_t flags = 0;
    for (char c : s) flags |= field_bytes[static_cast<unsigned char>(c)];
    return flags;
}

// Eight bytes at a time (this runs for every header of every response). below(w, n): some byte
// of w is less than n (n <= 128); equal(w, v): some byte is v. Both exact.
constexpr std::uint64_t ones = 0x0101010101010101ull;
constexpr std::uint64_t highs = 0x8080808080808080ull;
constexpr std::uint64_t below(std::uint64_t w, std::uint8_t n) {
    return (w - ones * n) & ~w & highs;
}
constexpr std::uint64_t equal(std::uint64_t w, std::uint8_t v) {
    return below(w ^ (ones * v), 1);
}
// True if test(word) is non-zero for some word of s; the last word overlaps the one before.
template <class Test>
[[gnu::always_inline]] inline bool any_word(std::string_view s, Test test) {
    std::size_t n = s.size();
    std::uint64_t w;
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
        std::memcpy(&w, s.data() + i, 8);
        if (test(w)) return true;
    }
    if (n % 8 == 0) return false;
    std::memcpy(&w, s.data() + n - 8, 8);
    return test(w) != 0;
}

[[gnu::always_inline]] inline bool valid_name(std::string_view s) {
    if (s.size() < 8) return !s.empty() && (field_flags(s) & bad_in_name) == 0;
    return !any_word(
        s, [](std::uint64_t w) { return below(w, 0x21) | equal(w, ':') | equal(w, 0x7f); });
}

[[gnu::always_inline]] inline bool valid_value(std::string_view s) {
    // Tab (allowed) is below 0x20 too: a word that may hold a bad byte is looked at bytewise.
    if (s.size() >= 8 &&
        !any_word(s, [](std::uint64_t w) { return below(w, 0x20) | equal(w, 0x7f); }))
        return true;
    return (field_flags(s) & bad_in_value) == 0;
}

char* put(char* p, std::string_view s) {
    std::memcpy(p, s.data(), s.size());
    return p + s.size();
}

// Room for what put_common writes: status line (reason phrases are at most 31 bytes), Server,
// Date, Content-Length and Connection.
constexpr std::size_t common_bound = 256;

// Writes the status line and herd's own headers at p; status has three digits.
char* put_common(char* p, int status, std::size_t body_size, bool close, bool http10_keep_alive,
                 bool add_server, SteadyTime now, bool has_body = true) {
    const CommonLines& c = lines_for(now);
    std::string_view lines(c.text, c.size);
    if (status == 200 && add_server) {
        p = put(p, lines);  // the usual case: one copy
    } else if (status == 200) {
        p = put(p, ok_line);
        lines.remove_prefix(ok_line.size() + server_line.size());
        p = put(p, lines);
    } else {
        p = put(p, "HTTP/1.1 ");
        p[0] = static_cast<char>('0' + status / 100);
        p[1] = static_cast<char>('0' + status / 10 % 10);
        p[2] = static_cast<char>('0' + status % 10);
        p[3] = ' ';
        p = put(p + 4, reason_phrase(status));
        p = put(p, "\r\n");
        lines.remove_prefix(ok_line.size() + (add_server ? 0 : server_line.size()));
        p = put(p, lines);
    }
    if (has_body) {
        p = put(p, "Content-Length: ");
        p = std::to_chars(p, p + 20, body_size).ptr;
        p = put(p, "\r\n");
    }
    if (close)
        p = put(p, "Connection: close\r\n");
    else if (http10_keep_alive)
        p = put(p, "Connection: keep-alive\r\n");
    return p;
}

}  // namespace

std::string_view http_date(SteadyTime now) {
    const CommonLines& c = lines_for(now);
    return {c.text + ok_line.size() + server_line.size() + date_name.size(), c.date_size};
}

namespace {

enum class Framing { length, chunked, none };

// A template on the framing: the usual response (Content-Length) pays for no other.
template <Framing framing>
bool encode_head_as(std::string& out, const Response& response, std::size_t body_size, bool close,
                    bool http10_keep_alive, std::string& error, SteadyTime now) {
    int status = response.status();
    // RFC 9110 15: a status outside 100-599 is invalid; herd sends no 1xx of a plugin's (the
    // 100 Continue is its own, 101 would need a protocol switch).
    if (status < 200 || status > 599) {
        error = "status " + std::to_string(status) + " is not a final HTTP status (200-599)";
        return false;
    }
    // 204 and 304 carry no body and no Content-Length (RFC 9110 8.6, 15.4.5); 205 no content
    // either (15.3.6), and says so with "Content-Length: 0".
    bool has_body = status != 204 && status != 304;
    if ((!has_body || status == 205) && body_size > 0) {
        error = "status " + std::to_string(status) + " must not have a body (" +
                std::to_string(body_size) + " bytes given)";
        return false;
    }
    bool add_server = true;
    std::size_t bound = common_bound + 2 + 32;
    for (const ResponseHeader& h : response.headers()) {
        if (!valid_name(h.name) || !valid_value(h.value)) {
            error =
                "invalid header name or value (empty, a control character, or ':' or space in the "
                "name): \"" +
                h.name.substr(0, 64) + "\"";
            return false;
        }
        if (iequals(h.name, "content-length") || iequals(h.name, "transfer-encoding") ||
            iequals(h.name, "connection") || iequals(h.name, "date")) {
            error = "header \"" + h.name + "\" is set by herd, not by plugins";
            return false;
        }
        if (iequals(h.name, "server")) add_server = false;
        bound += h.name.size() + h.value.size() + 4;
    }
    // Written in place: room for all of it, then cut to what was written.
    std::size_t start = out.size();
    out.resize(start + bound);
    char* p = put_common(out.data() + start, status, body_size, close, http10_keep_alive,
                         add_server, now, has_body && framing == Framing::length);
    if constexpr (framing == Framing::chunked)
        if (has_body) p = put(p, "Transfer-Encoding: chunked\r\n");
    for (const ResponseHeader& h : response.headers()) {
        p = put(p, h.name);
        p = put(p, ": ");
        p = put(p, h.value);
        p = put(p, "\r\n");
    }
    p = put(p, "\r\n");
    out.resize(static_cast<std::size_t>(p - out.data()));
    return true;
}

}  // namespace

bool encode_head(std::string& out, const Response& response, std::size_t body_size, bool close,
                 bool http10_keep_alive, std::string& error, SteadyTime now) {
    return encode_head_as<Framing::length>(out, response, body_size, close, http10_keep_alive,
                                           error, now);
}

bool encode_stream_head(std::string& out, const Response& response, bool chunked, bool close,
                        bool http10_keep_alive, std::string& error, SteadyTime now) {
    return chunked ? encode_head_as<Framing::chunked>(out, response, 0, close, http10_keep_alive,
                                                      error, now)
                   : encode_head_as<Framing::none>(out, response, 0, close, http10_keep_alive,
                                                   error, now);
}

bool encode_switch(std::string& out, const std::vector<ResponseHeader>& extra,
                   std::string_view accept, std::string_view protocol, std::string& error,
                   SteadyTime now) {
    bool add_server = true;
    for (const ResponseHeader& h : extra) {
        if (!valid_name(h.name) || !valid_value(h.value)) {
            error = "invalid header name or value in the WebSocket answer: \"" +
                    h.name.substr(0, 64) + "\"";
            return false;
        }
        std::string_view n = h.name;
        if (iequals(n, "content-length") || iequals(n, "transfer-encoding") ||
            iequals(n, "connection") || iequals(n, "date") || iequals(n, "upgrade") ||
            (n.size() >= 14 && iequals(n.substr(0, 14), "sec-websocket-"))) {
            error = "header \"" + h.name + "\" of a WebSocket answer is set by herd";
            return false;
        }
        if (iequals(n, "server")) add_server = false;
    }
    out.append(
           "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Accept: ")
        .append(accept)
        .append("\r\n");
    if (!protocol.empty()) out.append("Sec-WebSocket-Protocol: ").append(protocol).append("\r\n");
    out.append("Date: ").append(http_date(now)).append("\r\n");
    if (add_server) out.append(server_line);
    for (const ResponseHeader& h : extra)
        out.append(h.name).append(": ").append(h.value).append("\r\n");
    out.append("\r\n");
    return true;
}

void encode_error(std::string& out, int status, bool close, bool head_only, bool http10_keep_alive,
                  SteadyTime now) {
    constexpr std::string_view content_type = "Content-Type: text/plain; charset=utf-8\r\n\r\n";
    std::string_view reason = reason_phrase(status);
    std::size_t start = out.size();
    out.resize(start + common_bound + content_type.size() + reason.size() + 1);
    char* p = put_common(out.data() + start, status, reason.size() + 1, close, http10_keep_alive,
                         true, now);
    p = put(p, content_type);
    if (!head_only) {
        p = put(p, reason);
        *p++ = '\n';
    }
    out.resize(static_cast<std::size_t>(p - out.data()));
}

}  // namespace herd::http
