// HttpParser: llhttp driven one request at a time; see http_parser.hpp. Here: the field-value
// checks (Host, Expect, Transfer-Encoding), feeding bytes to llhttp with herd's own scan of the
// head, and the kept buffer for views that outlive the caller's. Its llhttp callbacks are in
// http_parser_callbacks.cpp, chunked bodies in http_parser_chunked.cpp.
#include "http/http_parser.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "http/http_chars.hpp"

namespace herd::http {
using namespace chars;

bool valid_host(std::string_view s) {
    if (s.empty()) return true;  // what a client sends for a target without authority
    std::size_t i = 0;
    std::size_t n = s.size();
    if (s[0] == '[') {
        // IP-literal: IPv6address or IPvFuture, checked for their alphabet only.
        std::size_t close = s.find(']');
        if (close == npos || close == 1) return false;
        for (i = 1; i < close; ++i)
            if (!is(static_cast<unsigned char>(s[i]), ip_literal)) return false;
        i = close + 1;
    } else {
        // reg-name (IPv4address is one too): unreserved, sub-delims, pct-encoded.
        for (;;) {
            // Four at a time first: this runs for every request.
            auto at = [&](std::size_t k) { return classes[static_cast<unsigned char>(s[k])]; };
            while (i + 4 <= n && (at(i) & at(i + 1) & at(i + 2) & at(i + 3) & reg_name)) i += 4;
            while (i < n && (at(i) & reg_name)) ++i;
            if (i == n || s[i] != '%') break;
            if (i + 2 >= n || hex_value(static_cast<unsigned char>(s[i + 1])) < 0 ||
                hex_value(static_cast<unsigned char>(s[i + 2])) < 0)
                return false;
            i += 3;
        }
        if (i == 0) return false;  // ":80": a port without a host
    }
    if (i == n) return true;
    if (s[i] != ':') return false;
    for (++i; i < n; ++i)  // port = *DIGIT
        if (!is_digit(s[i])) return false;
    return true;
}

Expectation classify_expectation(std::string_view value) {
    Expectation e = Expectation::none;
    for_each_element(value, [&](std::string_view x) {
        e = iequals(x, "100-continue") ? Expectation::continue_100 : Expectation::other;
        return e != Expectation::other;
    });
    return e;
}

bool only_chunked(std::string_view value) {
    bool only = true;
    for_each_element(value, [&](std::string_view x) { return only = iequals(x, "chunked"); });
    return only;
}

HttpParser::Status HttpParser::refuse(int status, std::string reason) {
    fail(status, std::move(reason));
    return Status::error;
}

HttpParser::Status HttpParser::feed(const char* data, std::size_t size, std::size_t& consumed) {
    consumed = 0;
    if (error_status_ != 0) return Status::error;
    if (chunked_.active) return feed_chunked(data, size, consumed);
    if (method_scan_.active) return scan_method(data, size, consumed);
    // A request begun in an earlier read had a method character accepted there (see below).
    bool begun = phase_ != Phase::idle;
    // What scan_head refuses ends the input llhttp sees, so that whatever llhttp would say about
    // the bytes before it comes first, as it would if the client had sent them alone.
    std::size_t stop = scan_head(data, size);
    std::size_t run = stop == npos ? size : stop;
    llhttp_errno_t err = llhttp_execute(&parser_, data, run);
    if (err == HPE_OK) {
        consumed = run;
        if (stop == npos) {
            // The caller's buffer is about to be reused: what the request has of it is kept.
            if (phase_ != Phase::idle) keep_views();
            return Status::need_more;
        }
        switch (refusal_) {
            case Refusal::bare_lf:
                return refuse(400, "bare LF in the request head (lines must end in CRLF)");
            case Refusal::whitespace:
                return refuse(400,
                              "a header line starts with whitespace (obsolete line folding, or "
                              "whitespace before the first field): refused (RFC 9112 5.2)");
            case Refusal::version:
                return refuse(400, "the request line does not end in HTTP/x.y");
        }
    }
    const char* pos = llhttp_get_error_pos(&parser_);
    consumed = pos ? static_cast<std::size_t>(pos - data) : run;
    if (err == HPE_PAUSED) {
        if (!chunked_.active) return complete();
        // The head is parsed, and llhttp took the message as one without a body: the chunked
        // body that follows is decoded here.
        std::size_t more = 0;
        Status s = feed_chunked(data + consumed, size - consumed, more);
        consumed += more;
        return s;
    }
    if (error_status_ != 0) return Status::error;  // a callback's refusal
    switch (err) {
        case HPE_PAUSED_UPGRADE:
            // Only reached if input follows an upgrade request (next() refuses it first).
            return refuse(400, "data after an upgrade request");
        case HPE_PAUSED_H2_UPGRADE:
            return refuse(505, "HTTP/2 connection preface: this port speaks HTTP/1.1");
        case HPE_INVALID_METHOD:
            if (pos != nullptr) {
                // llhttp knows a fixed list of methods and refuses others at their first
                // character off the list. Before it, this request has method characters (those
                // llhttp matched) if the request began in an earlier read or the byte before
                // is one: within a read the bytes before a request are CR and LF only.
                method_scan_ = {true, begun || (pos > data && is(pos[-1], tchar)), 0,
                                MethodScan::Part::method};
                std::size_t more = 0;
                Status s = scan_method(pos, static_cast<std::size_t>(data + size - pos), more);
                consumed += more;
                return s;
            }
            break;
        case HPE_INVALID_CONSTANT:
            // An RTSP method (llhttp parses RTSP too) with HTTP/x.y: not an HTTP method.
            if (parser_.method >= HTTP_DESCRIBE && parser_.method <= HTTP_FLUSH)
                return refuse(501,
                              std::string("method ") +
                                  llhttp_method_name(static_cast<llhttp_method_t>(parser_.method)) +
                                  " is not implemented");
            break;
        default:
            break;
    }
    return refuse(400,
                  std::string(llhttp_errno_name(err)) + ": " + llhttp_get_error_reason(&parser_));
}

HttpParser::Status HttpParser::scan_method(const char* data, std::size_t size,
                                           std::size_t& consumed) {
    // The rest of a request line whose method llhttp does not know: a token, SP, a target,
    // SP, HTTP/d.d, CRLF is a method herd does not implement (RFC 9110 9.1: 501); anything
    // else is no request line (400, with llhttp's error name: it refused the method). A method
    // longer than any llhttp knows (13 characters) is not implemented either, whatever follows
    // (RFC 9112 3: 501).
    constexpr std::size_t longest = 32;
    constexpr std::string_view version = "HTTP/#.#\r\n";
    MethodScan& m = method_scan_;
    for (std::size_t i = 0; i < size; ++i) {
        auto c = static_cast<unsigned char>(data[i]);
        consumed = i;
        switch (m.part) {
            case MethodScan::Part::method:
                if (is(c, tchar)) {
                    m.token = true;
                    if (++m.length > longest)
                        return refuse(501, "a method longer than any herd implements");
                } else if (c == ' ' && m.token) {
                    m.part = MethodScan::Part::target;
                    m.length = 0;
                } else {
                    return refuse(400, "HPE_INVALID_METHOD: invalid method in the request line");
                }
                break;
            case MethodScan::Part::target:
                if (c > ' ' && c != 0x7f) {
                    if (++m.length > limits_.max_url_bytes) {
                        fail_target_too_long();
                        return Status::error;
                    }
                } else if (c == ' ' && m.length > 0) {
                    m.part = MethodScan::Part::version;
                    m.length = 0;
                } else {
                    return refuse(400,
                                  "HPE_INVALID_METHOD: unknown method, then an invalid target");
                }
                break;
            case MethodScan::Part::version: {
                char want = version[m.length];
                if (want == '#' ? !is_digit(static_cast<char>(c))
                                : c != static_cast<unsigned char>(want))
                    return refuse(400, "HPE_INVALID_METHOD: unknown method, then no HTTP/x.y");
                if (++m.length == version.size())
                    return refuse(501, "the method is not one herd implements (RFC 9110 9.1)");
                break;
            }
        }
    }
    consumed = size;
    return Status::need_more;
}

std::size_t HttpParser::scan_head(const char* data, std::size_t size) {
    // Line by line with memchr (this runs on every request), the head only: it ends at its
    // first empty line after the request line. Refused here, before llhttp sees them:
    // - a bare LF: llhttp 8.1 takes one after the request line and as the empty line that ends
    //   the head (only header lines must end in CRLF); a front end that frames strictly would
    //   read what follows as more header lines, not as a body or the next request;
    // - a line after the request line that starts with SP or HTAB: obsolete line folding, or
    //   whitespace before the first field (RFC 9112 5.2, 2.2: refuse or replace; llhttp
    //   joins a fold to the value before, which another parser may read as a field);
    // - a request line that ends in a version other than HTTP/x.y (llhttp takes RTSP/1.0 and
    //   ICE/1.0 as HTTP/1.0; RFC 9112 2.3: HTTP-name is "HTTP", case-sensitive).
    if (!scan_.active) return npos;
    // The state in locals: data is char, which may alias any member, so that each access to
    // scan_ would otherwise be a load or a store.
    bool active = true;
    bool cr_before = scan_.cr;
    bool seen_line = scan_.seen_line;
    bool line_start = scan_.line_start;
    std::size_t line_bytes = scan_.line_bytes;
    std::size_t stop = npos;
    std::size_t i = 0;
    if (line_start && size > 0 && is_ws(static_cast<unsigned char>(data[0]))) {
        // The line that started at the end of the last read.
        refusal_ = Refusal::whitespace;
        return 0;
    }
    line_start = false;
    while (i < size) {
        const void* found = std::memchr(data + i, '\n', size - i);
        if (found == nullptr) {  // the line goes on in the next read
            if (!seen_line) keep_line_tail(data + i, size - i);
            line_bytes += size - i;
            cr_before = data[size - 1] == '\r';
            break;
        }
        std::size_t lf = static_cast<std::size_t>(static_cast<const char*>(found) - data);
        if (!(lf > i ? data[lf - 1] == '\r' : cr_before)) {
            refusal_ = Refusal::bare_lf;
            stop = lf;
            break;
        }
        std::size_t line = line_bytes + (lf - i);  // with its CR
        if (line > 1) {
            if (!seen_line) {
                // The usual request line ends in " HTTP/1.1\r", in this read.
                if (!(lf - i >= 10 && std::memcmp(data + lf - 10, " HTTP/1.1\r", 10) == 0) &&
                    !version_at_end(data + i, lf - i)) {
                    refusal_ = Refusal::version;
                    stop = lf;
                    break;
                }
                seen_line = true;
                scan_.tail_size = 0;
            }
            // A line after the request line must not start with whitespace.
            if (lf + 1 == size) {
                line_start = true;  // its first byte comes with the next read
            } else if (is_ws(static_cast<unsigned char>(data[lf + 1]))) {
                refusal_ = Refusal::whitespace;
                stop = lf + 1;
                break;
            }
        } else if (line == 1 && seen_line) {
            active = false;  // the empty line: the body (if any) follows
            break;
        }
        line_bytes = 0;
        cr_before = false;
        i = lf + 1;
    }
    scan_.active = active;
    scan_.cr = cr_before;
    scan_.seen_line = seen_line;
    scan_.line_start = line_start;
    scan_.line_bytes = line_bytes;
    return stop;
}

bool HttpParser::version_at_end(const char* line, std::size_t n) const {
    // line[0, n) is the end of the request line, its CR last; earlier bytes are in scan_.tail.
    // A line ending in "/d.d" must end in " HTTP/d.d". One without (HTTP/0.9's "GET /", or
    // garbage) is left to llhttp.
    constexpr std::size_t want = 10;  // " HTTP/1.1\r"
    char joined[want];
    const char* last = line + n - want;  // the usual case: the whole line in this read
    std::size_t have = want;
    if (n < want) {
        std::size_t from_tail = std::min<std::size_t>(want - n, scan_.tail_size);
        have = n + from_tail;
        std::memcpy(joined + want - n, line, n);
        std::memcpy(joined + want - have, scan_.tail + scan_.tail_size - from_tail, from_tail);
        last = joined;
    }
    const char* e = last + want;  // e[-1] is the CR
    if (have < 5 || e[-5] != '/' || !is_digit(e[-4]) || e[-3] != '.' || !is_digit(e[-2]))
        return true;
    return have == want && std::memcmp(last, " HTTP", 5) == 0;
}

void HttpParser::keep_line_tail(const char* p, std::size_t n) {
    constexpr std::size_t room = sizeof scan_.tail;
    if (n >= room) {
        std::memcpy(scan_.tail, p + n - room, room);
        scan_.tail_size = room;
        return;
    }
    std::size_t keep = std::min<std::size_t>(scan_.tail_size, room - n);
    std::memmove(scan_.tail, scan_.tail + scan_.tail_size - keep, keep);
    std::memcpy(scan_.tail + keep, p, n);
    scan_.tail_size = static_cast<std::uint8_t>(keep + n);
}

template <class F>
void HttpParser::for_each_view(F f) {
    Request& r = request_;
    f(r.target_);
    for (std::size_t i = 0; i < r.header_count_; ++i) {
        f(r.headers_[i].name);
        f(r.headers_[i].value);
    }
}

bool HttpParser::in_kept(std::string_view v, std::size_t kept_size) const {
    auto at = reinterpret_cast<std::uintptr_t>(v.data());
    auto begin = reinterpret_cast<std::uintptr_t>(kept_.data());
    return !v.empty() && at >= begin && at < begin + kept_size;
}

char* HttpParser::grow_kept(std::size_t n) {
    std::size_t size = kept_.size();
    if (size + n > kept_.capacity()) {
        auto old = reinterpret_cast<std::uintptr_t>(kept_.data());
        kept_.reserve(std::max(size + n, 2 * kept_.capacity()));
        const char* now = kept_.data();
        for_each_view([&](std::string_view& v) {
            auto at = reinterpret_cast<std::uintptr_t>(v.data());
            if (!v.empty() && at >= old && at < old + size) v = {now + (at - old), v.size()};
        });
    }
    kept_.resize(size + n);  // within the capacity: nothing moves
    return kept_.data() + size;
}

void HttpParser::keep_views() {
    std::size_t kept_size = kept_.size();
    std::size_t outside = 0;
    for_each_view([&](std::string_view& v) {
        if (!v.empty() && !in_kept(v, kept_size)) outside += v.size();
    });
    if (outside == 0) return;
    char* p = grow_kept(outside);
    for_each_view([&](std::string_view& v) {
        if (v.empty() || in_kept(v, kept_size)) return;
        std::memcpy(p, v.data(), v.size());
        v = {p, v.size()};
        p += v.size();
    });
}

void HttpParser::extend_more(std::string_view& view, const char* at, std::size_t n) {
    bool kept = in_kept(view, kept_.size());
    if (!kept && view.data() + view.size() == at) {  // the same buffer: one longer view
        view = {view.data(), view.size() + n};
        return;
    }
    // The view began in an earlier feed, so it is kept; as the field still open it is the last
    // of the kept bytes, and grows there. (Otherwise, not expected, it is copied to the end.)
    std::size_t length = view.size();
    bool last = kept && view.data() + length == kept_.data() + kept_.size();
    char* p = grow_kept(last ? n : length + n);  // moves kept views, this one included
    if (!last) {
        std::memcpy(p, view.data(), length);
        view = {p, length};
    }
    std::memcpy(const_cast<char*>(view.data()) + length, at, n);
    view = {view.data(), length + n};
}

void HttpParser::next() {
    phase_ = Phase::idle;
    head_ = false;
    // The request's views may point into a buffer that the caller reuses now.
    request_.method_ = {};
    request_.target_ = {};
    request_.header_count_ = 0;
    if (upgraded_) {
        // herd performs no protocol switch: the connection closes after the answer, and llhttp
        // would only report the upgrade again, so whatever follows is refused.
        error_status_ = 400;
        error_reason_ = "data after an upgrade request";
        return;
    }
    llhttp_resume(&parser_);
}

}  // namespace herd::http
