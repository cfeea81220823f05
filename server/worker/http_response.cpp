// Encoding response heads; see http_response.hpp.
#include "worker/http_response.hpp"

#include <time.h>

#include <charconv>

namespace herd::worker {

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
        case 413:
            return "Content Too Large";
        case 414:
            return "URI Too Long";
        case 415:
            return "Unsupported Media Type";
        case 422:
            return "Unprocessable Content";
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

std::string_view http_date(SteadyTime now) {
    static char buffer[64];
    static std::size_t length = 0;
    // Until then (monotonic), the wall clock is still in the second formatted. A stale `now`
    // (the loop's time) makes it end early, never late; a step of the wall clock shows within
    // a second.
    static SteadyTime valid_until = SteadyTime::min();
    if (now >= valid_until) {
        timespec wall{};
        clock_gettime(CLOCK_REALTIME, &wall);
        tm utc{};
        gmtime_r(&wall.tv_sec, &utc);
        length = strftime(buffer, sizeof buffer, "%a, %d %b %Y %H:%M:%S GMT", &utc);
        valid_until = now + std::chrono::nanoseconds(1000000000 - wall.tv_nsec);
    }
    return {buffer, length};
}

namespace {

void append_number(std::string& out, std::size_t value) {
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
    out.append(digits, end);
}

// CR, LF, NUL and the other control characters (but tab) are never sent in a field
// (RFC 9110 5.5); they would split or corrupt the response head.
bool has_control_char(std::string_view s) {
    for (char c : s)
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) return true;
    return false;
}
void append_status_line(std::string& out, int status) {
    out.append("HTTP/1.1 ");
    append_number(out, static_cast<std::size_t>(status));
    out.push_back(' ');
    out.append(reason_phrase(status));
    out.append("\r\n");
}

void append_common(std::string& out, std::size_t body_size, bool close, bool http10_keep_alive,
                   bool add_server, SteadyTime now, bool has_body = true) {
    if (add_server) out.append("Server: herd\r\n");
    out.append("Date: ");
    out.append(http_date(now));
    out.append("\r\n");
    if (has_body) {
        out.append("Content-Length: ");
        append_number(out, body_size);
        out.append("\r\n");
    }
    if (close)
        out.append("Connection: close\r\n");
    else if (http10_keep_alive)
        out.append("Connection: keep-alive\r\n");
}

}  // namespace

bool encode_head(std::string& out, const Response& response, std::size_t body_size, bool close,
                 bool http10_keep_alive, std::string& error, SteadyTime now) {
    int status = response.status();
    if (status < 200 || status > 999) {
        error = "status " + std::to_string(status) + " is not a final HTTP status (200-999)";
        return false;
    }
    // 204 and 304 carry no body and no Content-Length (RFC 9110, 8.6).
    bool has_body = status != 204 && status != 304;
    if (!has_body && body_size > 0) {
        error = "status " + std::to_string(status) + " must not have a body (" +
                std::to_string(body_size) + " bytes given)";
        return false;
    }
    bool add_server = true;
    for (const Header& h : response.headers()) {
        if (h.name.empty() || has_control_char(h.name) || has_control_char(h.value) ||
            h.name.find_first_of(" :\t") != std::string::npos) {
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
    }
    append_status_line(out, status);
    append_common(out, body_size, close, http10_keep_alive, add_server, now, has_body);
    for (const Header& h : response.headers()) {
        out.append(h.name);
        out.append(": ");
        out.append(h.value);
        out.append("\r\n");
    }
    out.append("\r\n");
    return true;
}

void encode_error(std::string& out, int status, bool close, bool head_only, bool http10_keep_alive,
                  SteadyTime now) {
    std::string_view reason = reason_phrase(status);
    append_status_line(out, status);
    append_common(out, reason.size() + 1, close, http10_keep_alive, true, now);
    out.append("Content-Type: text/plain; charset=utf-8\r\n\r\n");
    if (!head_only) {
        out.append(reason);
        out.push_back('\n');
    }
}

}  // namespace herd::worker
