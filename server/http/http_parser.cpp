// HttpParser: llhttp driven one request at a time; see http_parser.hpp.
#include "http/http_parser.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>

namespace herd::http {
namespace {
constexpr std::size_t npos = std::string::npos;

HttpParser* self(llhttp_t* p) {
    return static_cast<HttpParser*>(p->data);
}

// Character classes of RFC 9110 5.6.2 (tchar) and RFC 3986 (host), one table.
constexpr std::uint8_t tchar = 1;
constexpr std::uint8_t reg_name = 2;    // unreserved / sub-delims
constexpr std::uint8_t ip_literal = 4;  // unreserved / sub-delims / ":"
constexpr std::array<std::uint8_t, 256> classes = [] {
    std::array<std::uint8_t, 256> t{};
    auto set = [&](std::string_view chars, std::uint8_t c) {
        for (char ch : chars) t[static_cast<unsigned char>(ch)] |= c;
    };
    for (int c = '0'; c <= '9'; ++c) t[c] = tchar | reg_name | ip_literal;
    for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 32] = tchar | reg_name | ip_literal;
    set("!#$%&'*+-.^_`|~", tchar);
    set("-._~!$&'()*+,;=", reg_name | ip_literal);
    set(":", ip_literal);
    return t;
}();
bool is(unsigned char c, std::uint8_t cls) {
    return (classes[c] & cls) != 0;
}
bool is_ws(unsigned char c) {
    return c == ' ' || c == '\t';
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
int hex_value(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// name equals `lower` (lower-case letters) in any case. A field name is a token, and for a
// token c | 0x20 is a lower-case letter only if c is that letter in either case.
template <std::size_t N>
bool name_is(std::string_view name, const char (&lower)[N]) {
    if (name.size() != N - 1) return false;
    for (std::size_t i = 0; i + 1 < N; ++i)
        if ((name[i] | 0x20) != lower[i]) return false;
    return true;
}

// Calls f(element) for each non-empty element of a comma-separated list, OWS trimmed
// (RFC 9110 5.6.1: empty elements are ignored); stops when f returns false.
template <class F>
void for_each_element(std::string_view list, F f) {
    while (!list.empty()) {
        std::size_t comma = list.find(',');
        std::string_view e = list.substr(0, comma);
        list = comma == npos ? std::string_view() : list.substr(comma + 1);
        while (!e.empty() && is_ws(e.front())) e.remove_prefix(1);
        while (!e.empty() && is_ws(e.back())) e.remove_suffix(1);
        if (!e.empty() && !f(e)) return;
    }
}
}  // namespace

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

namespace {
const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
        llhttp_settings_t t;
        llhttp_settings_init(&t);
        return t;
    }();
    return s;
}
}  // namespace

HttpParser::HttpParser(const HttpLimits& limits) : limits_(limits) {
    // One settings table for every connection; llhttp keeps a pointer to it.
    static llhttp_settings_t shared = [] {
        llhttp_settings_t t = settings();
        t.on_message_begin = &HttpParser::on_message_begin;
        t.on_url = &HttpParser::on_url;
        t.on_url_complete = &HttpParser::on_url_complete;
        t.on_header_field = &HttpParser::on_header_field;
        t.on_header_value = &HttpParser::on_header_value;
        t.on_header_value_complete = &HttpParser::on_header_value_complete;
        t.on_headers_complete = &HttpParser::on_headers_complete;
        t.on_body = &HttpParser::on_body;
        t.on_message_complete = &HttpParser::on_message_complete;
        return t;
    }();
    // Strict parsing (LLHTTP_STRICT_MODE in meson.build, no lenient flags): conflicting
    // Content-Length / Transfer-Encoding, bare LF and bad chunk sizes are errors, which is what
    // closes smuggling holes.
    llhttp_init(&parser_, HTTP_REQUEST, &shared);
    // Any HTTP/d.d gets to on_headers_complete, which serves 1.x as 1.1 and answers 505 to the
    // other majors (RFC 9110 6.2); without this llhttp refuses all but 0.9, 1.0, 1.1 and 2.0
    // with a 400. (llhttp 8.1 has no setter for this flag.)
    parser_.lenient_flags |= LENIENT_VERSION;
    parser_.data = this;
    request_.headers_.reserve(16);  // grown once in a while, not for every connection
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

HttpParser::Status HttpParser::feed_chunked(const char* data, std::size_t size,
                                            std::size_t& consumed) {
    Decode d = decode_chunks(data, size, consumed);
    if (d == Decode::error) return Status::error;
    if (d == Decode::more) {
        keep_views();
        return Status::need_more;
    }
    chunked_.active = false;
    expect_continue_ = false;
    return complete();
}

HttpParser::Decode HttpParser::decode_chunks(const char* data, std::size_t size,
                                             std::size_t& used) {
    // RFC 9112 7.1, byte by byte but for chunk data:
    //   chunk      = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
    //   last-chunk = 1*("0") [ chunk-ext ] CRLF, then trailer fields, then CRLF
    //   chunk-ext  = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
    // Extensions are ignored (7.1.1), trailer fields are checked and discarded (RFC 9110
    // 6.5.1: not merged into the header section). Every line ends in CRLF; both together are
    // bounded by max_header_bytes.
    using S = Chunked::State;
    Chunked& c = chunked_;
    std::string& body = request_.body_;
    auto bad = [&](const char* what) {
        fail(400, std::string("malformed chunked body: ") + what);
        return Decode::error;
    };
    std::size_t i = 0;
    used = 0;
    while (i < size) {
        if (c.state == S::data) {
            auto take = static_cast<std::size_t>(std::min<std::uint64_t>(c.size, size - i));
            body.append(data + i, take);
            c.size -= take;
            i += take;
            if (c.size == 0) c.state = S::data_cr;
            continue;
        }
        auto ch = static_cast<unsigned char>(data[i++]);
        used = i;
        if (c.state >= S::ws_then_semicolon && c.state != S::line_lf && c.state != S::data_cr &&
            c.state != S::data_lf && ++c.extra > limits_.max_header_bytes) {
            fail(431, "chunk extensions and trailer fields larger than " +
                          std::to_string(limits_.max_header_bytes) + " bytes");
            return Decode::error;
        }
        switch (c.state) {
            case S::size:
                if (int v = hex_value(ch); v >= 0) {
                    if (c.size > (std::numeric_limits<std::uint64_t>::max() >> 4))
                        return bad("chunk size overflows 64 bits");
                    if (++c.digits > 64) return bad("chunk size longer than 64 digits");
                    c.size = c.size * 16 + static_cast<unsigned>(v);
                    break;
                }
                if (c.digits == 0) return bad("chunk size expected");
                if (c.size > limits_.max_body_bytes - body.size()) {
                    fail(413, "request body exceeds the limit of " +
                                  std::to_string(limits_.max_body_bytes) + " bytes");
                    return Decode::error;
                }
                if (ch == '\r')
                    c.state = S::line_lf;
                else if (ch == ';')
                    c.state = S::ext_name_start;
                else if (is_ws(ch))
                    c.state = S::ws_then_semicolon;
                else
                    return bad("invalid character after the chunk size");
                break;
            case S::ws_then_semicolon:
                if (ch == ';')
                    c.state = S::ext_name_start;
                else if (!is_ws(ch))
                    return bad("whitespace in a chunk line not followed by ';'");
                break;
            case S::ext_name_start:
                if (is(ch, tchar))
                    c.state = S::ext_name;
                else if (!is_ws(ch))
                    return bad("chunk extension without a name");
                break;
            case S::ext_name:
                if (is(ch, tchar)) break;
                if (ch == '=')
                    c.state = S::ext_value_start;
                else if (ch == ';')
                    c.state = S::ext_name_start;
                else if (ch == '\r')
                    c.state = S::line_lf;
                else if (is_ws(ch))
                    c.state = S::ws_after_name;
                else
                    return bad("invalid character in a chunk extension name");
                break;
            case S::ws_after_name:
                if (ch == '=')
                    c.state = S::ext_value_start;
                else if (ch == ';')
                    c.state = S::ext_name_start;
                else if (!is_ws(ch))
                    return bad("invalid character after a chunk extension name");
                break;
            case S::ext_value_start:
                if (ch == '"')
                    c.state = S::ext_quoted;
                else if (is(ch, tchar))
                    c.state = S::ext_token;
                else if (!is_ws(ch))
                    return bad("chunk extension without a value after '='");
                break;
            case S::ext_token:
            case S::ext_after_quoted:
                if (c.state == S::ext_token && is(ch, tchar)) break;
                if (ch == ';')
                    c.state = S::ext_name_start;
                else if (ch == '\r')
                    c.state = S::line_lf;
                else if (is_ws(ch))
                    c.state = S::ws_then_semicolon;
                else
                    return bad("invalid character after a chunk extension value");
                break;
            case S::ext_quoted:
                // qdtext: HTAB, SP, VCHAR but '"' and '\\', obs-text
                if (ch == '"')
                    c.state = S::ext_after_quoted;
                else if (ch == '\\')
                    c.state = S::ext_quoted_pair;
                else if (!(ch == '\t' || (ch >= 0x20 && ch != 0x7f)))
                    return bad("invalid character in a quoted chunk extension value");
                break;
            case S::ext_quoted_pair:
                if (!(ch == '\t' || (ch >= 0x20 && ch != 0x7f)))
                    return bad("invalid character in a quoted chunk extension value");
                c.state = S::ext_quoted;
                break;
            case S::line_lf:
                if (ch != '\n') return bad("chunk line not ended by CRLF");
                c.state = c.size == 0 ? S::trailer_start : S::data;
                break;
            case S::data:  // handled above
                break;
            case S::data_cr:
            case S::data_lf:
                if (ch != (c.state == S::data_cr ? '\r' : '\n'))
                    return bad("chunk data not followed by CRLF");
                if (c.state == S::data_lf) {
                    c.state = S::size;
                    c.digits = 0;
                } else {
                    c.state = S::data_lf;
                }
                break;
            case S::trailer_start:
                if (ch == '\r')
                    c.state = S::end_lf;
                else if (is(ch, tchar))
                    c.state = S::trailer_name;
                else
                    return bad("invalid trailer field line (a name must start it)");
                break;
            case S::trailer_name:
                if (ch == ':')
                    c.state = S::trailer_value;
                else if (!is(ch, tchar))
                    return bad("invalid character in a trailer field name");
                break;
            case S::trailer_value:
                if (ch == '\r')
                    c.state = S::trailer_lf;
                else if (!(ch == '\t' || (ch >= 0x20 && ch != 0x7f)))
                    return bad("invalid character in a trailer field value");
                break;
            case S::trailer_lf:
                if (ch != '\n') return bad("trailer field line not ended by CRLF");
                c.state = S::trailer_start;
                break;
            case S::end_lf:
                if (ch != '\n') return bad("trailer section not ended by CRLF");
                return Decode::done;
        }
    }
    used = size;
    return Decode::more;
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

int HttpParser::fail(int status, std::string reason) {
    error_status_ = status;
    error_reason_ = std::move(reason);
    return HPE_USER;
}

int HttpParser::fail_head_too_large() {
    return fail(431,
                "request head larger than " + std::to_string(limits_.max_header_bytes) + " bytes");
}

int HttpParser::fail_target_too_long() {
    return fail(414,
                "request target longer than " + std::to_string(limits_.max_url_bytes) + " bytes");
}

int HttpParser::fail_too_many_headers() {
    return fail(431, "more than " + std::to_string(limits_.max_headers) + " header fields");
}

int HttpParser::fail_empty_name() {
    return fail(400, "header field with an empty name");
}

void HttpParser::add_header_slot() {
    request_.headers_.emplace_back();
}

int HttpParser::on_message_begin(llhttp_t* p) {
    HttpParser* s = self(p);
    Request& r = s->request_;
    r.method_ = {};
    r.target_ = {};
    // The previous request's kept bytes are no longer seen; a large head's memory goes.
    s->kept_.clear();
    if (s->kept_.capacity() > (16u << 10)) s->kept_.shrink_to_fit();
    r.path_start_ = 0;
    r.path_len_ = 0;
    r.mount_len_ = 0;
    r.header_count_ = 0;
    r.body_.clear();
    // A kept-alive connection does not keep a past large body's memory.
    if (r.body_.capacity() > (256u << 10)) r.body_.shrink_to_fit();
    r.keep_alive_ = true;
    s->phase_ = Phase::headers;
    s->header_bytes_ = 0;
    s->in_value_ = false;
    s->expect_continue_ = false;
    s->expect_other_ = false;
    s->head_ = false;
    s->absolute_form_ = false;
    s->host_count_ = 0;
    return HPE_OK;
}

int HttpParser::on_url(llhttp_t* p, const char* at, std::size_t n) {
    HttpParser* s = self(p);
    s->head_ = p->method == HTTP_HEAD;  // the method is known once the target starts
    bool over_url = s->request_.target_.size() + n > s->limits_.max_url_bytes;
    bool over_head = !s->count_header_bytes(n);
    // The target is the first thing counted in the head, so both limits apply to the same
    // bytes. Over both, the answer is the smaller limit's: a client that sends the target in
    // pieces meets that one first, and the status must not depend on how TCP cut the stream.
    if (over_url && over_head && s->limits_.max_header_bytes < s->limits_.max_url_bytes)
        over_url = false;
    if (over_url) return s->fail_target_too_long();
    if (over_head) return s->fail_head_too_large();
    s->extend(s->request_.target_, at, n);
    return HPE_OK;
}

int HttpParser::on_url_complete(llhttp_t* p) {
    HttpParser* s = self(p);
    Request& r = s->request_;
    // RFC 9110 9.3.6: any 2xx to CONNECT would open a tunnel; herd opens none.
    if (p->method == HTTP_CONNECT) return s->fail(501, "CONNECT is not implemented");
    std::string_view t = r.target_;
    auto q = t.find('?');
    r.path_len_ = q == std::string::npos ? t.size() : q;
    r.path_start_ = 0;
    // RFC 9112 3.2: a request target has no fragment.
    if (std::memchr(t.data(), '#', t.size()) != nullptr)
        return s->fail(400, "request target with a fragment ('#')");
    if (t.starts_with('/')) return HPE_OK;  // origin-form: the usual case
    return s->check_other_target(p->method);
}

int HttpParser::check_other_target(std::uint8_t method) {
    Request& r = request_;
    std::string_view t = r.target_;
    if (t == "*") {
        // RFC 9112 3.2.4: the asterisk-form is for a server-wide OPTIONS only (and "PRI *" starts
        // the HTTP/2 preface, which llhttp reports: 505).
        if (method != HTTP_OPTIONS && method != HTTP_PRI)
            return fail(400, "target \"*\" with a method other than OPTIONS");
        return HPE_OK;
    }
    // Absolute-form ("http://host:80/path?q", RFC 9112 3.2.2): the path starts after the
    // authority, which must name a host (RFC 9110 4.2.1) and carry no userinfo (4.2.4).
    auto scheme_end = t.find("://");
    if (scheme_end == std::string::npos || scheme_end > r.path_len_)
        return fail(400, "request target is neither a path, \"*\" nor an absolute URI");
    std::string_view scheme = t.substr(0, scheme_end);
    if (!iequals(scheme, "http") && !iequals(scheme, "https"))
        return fail(400, "absolute request target with a scheme other than http and https");
    std::size_t start = scheme_end + 3;
    std::size_t end = std::min(t.find('/', start), r.path_len_);
    std::string_view authority = t.substr(start, end - start);
    if (authority.find('@') != std::string::npos)
        return fail(400, "absolute request target with userinfo");
    if (authority.empty() || !valid_host(authority))
        return fail(400, "absolute request target without a valid host");
    r.path_start_ = end;
    absolute_form_ = true;
    authority_start_ = start;
    authority_size_ = authority.size();
    return HPE_OK;
}

int HttpParser::on_header_field(llhttp_t* p, const char* at, std::size_t n) {
    HttpParser* s = self(p);
    Request& r = s->request_;
    if (!s->count_header_bytes(n)) return s->fail_head_too_large();
    if (s->in_value_ || r.header_count_ == 0) {
        // A new field starts: reuse the storage of an earlier request's header if there is one.
        if (r.header_count_ == s->limits_.max_headers) return s->fail_too_many_headers();
        if (r.header_count_ == r.headers_.size()) s->add_header_slot();
        Header& h = r.headers_[r.header_count_++];
        h.name = {};
        h.value = {};
        s->in_value_ = false;
    }
    s->extend(r.headers_[r.header_count_ - 1].name, at, n);
    return HPE_OK;
}

int HttpParser::on_header_value(llhttp_t* p, const char* at, std::size_t n) {
    HttpParser* s = self(p);
    if (!s->count_header_bytes(n)) return s->fail_head_too_large();
    s->in_value_ = true;
    s->extend(s->request_.headers_[s->request_.header_count_ - 1].value, at, n);
    return HPE_OK;
}

int HttpParser::on_header_value_complete(llhttp_t* p) {
    HttpParser* s = self(p);
    s->in_value_ = true;  // also for an empty value, where on_header_value never ran
    Header& h = s->request_.headers_[s->request_.header_count_ - 1];
    // RFC 9112 5.1: a field name is a token, one character at least. llhttp takes a line
    // starting with ':' as a field with an empty name; a front end may not, so it is refused.
    if (h.name.empty()) return s->fail_empty_name();
    // llhttp strips leading whitespace only; trailing OWS is not part of the value either.
    while (!h.value.empty() && (h.value.back() == ' ' || h.value.back() == '\t'))
        h.value.remove_suffix(1);
    // The fields herd itself reads (this runs for every field).
    if (name_is(h.name, "host")) return s->on_host(h.value);
    if (name_is(h.name, "expect")) return s->on_expect(h.value);
    return HPE_OK;
}

int HttpParser::on_host(std::string_view value) {
    // RFC 9112 3.2: 400 for more than one Host field line, or an invalid value.
    if (++host_count_ > 1) return fail(400, "more than one Host header field");
    host_index_ = request_.header_count_ - 1;
    if (value.size() == valid_host_size_ &&
        std::memcmp(value.data(), valid_host_, value.size()) == 0)
        return HPE_OK;  // this connection's last Host, valid already
    if (!valid_host(value))
        return fail(400, "invalid Host header field \"" + std::string(value.substr(0, 100)) + "\"");
    if (value.size() <= sizeof valid_host_) {
        std::memcpy(valid_host_, value.data(), value.size());
        valid_host_size_ = static_cast<std::uint8_t>(value.size());
    }
    return HPE_OK;
}

int HttpParser::on_expect(std::string_view value) {
    switch (classify_expectation(value)) {
        case Expectation::none:
            break;
        case Expectation::continue_100:
            expect_continue_ = true;
            break;
        case Expectation::other:
            expect_other_ = true;
            break;
    }
    return HPE_OK;
}

int HttpParser::on_headers_complete(llhttp_t* p) {
    HttpParser* s = self(p);
    Request& r = s->request_;
    r.method_ = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    r.major_ = p->http_major;
    r.minor_ = p->http_minor;
    if (r.major_ != 1)  // HTTP/0.9 ("GET /" with no version), 2.0 and others: RFC 9110 6.2
        return s->fail(505, "HTTP/" + std::to_string(r.major_) + "." + std::to_string(r.minor_) +
                                " is not supported");
    if (r.minor_ > 1) r.minor_ = 1;  // RFC 9110 6.2: a later HTTP/1.x is served as HTTP/1.1
    if (s->host_count_ == 0 && r.minor_ == 1)  // RFC 9112 3.2
        return s->fail(400, "HTTP/1.1 request without a Host header field");
    if (r.minor_ == 0) {
        // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        if (p->flags & F_TRANSFER_ENCODING)
            return s->fail(400, "Transfer-Encoding in an HTTP/1.0 request");
        s->expect_continue_ = false;  // RFC 9110 10.1.1: ignored in HTTP/1.0
        p->upgrade = 0;               // RFC 9110 7.8: Upgrade is ignored in HTTP/1.0
    }
    if (s->expect_other_)  // RFC 9110 10.1.1: MAY answer 417
        return s->fail(417, "an expectation other than 100-continue");
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s->limits_.max_body_bytes)
        return s->fail(413, "Content-Length " + std::to_string(p->content_length) +
                                " exceeds the limit of " +
                                std::to_string(s->limits_.max_body_bytes) + " bytes");
    if ((p->flags & F_TRANSFER_ENCODING) && (p->flags & F_CHUNKED)) {
        // llhttp frames by a final "chunked" (and refuses, with 400, a coding list not ending
        // in it: RFC 9112 6.3); a coding before it ("gzip, chunked") would reach the plugin
        // still encoded. RFC 9112 6.1: 501.
        for (const Header& h : r.headers())
            if (iequals(h.name, "transfer-encoding") && !only_chunked(h.value))
                return s->fail(501, "Transfer-Encoding \"" + std::string(h.value.substr(0, 100)) +
                                        "\" is not implemented (only chunked)");
    }
    if (s->absolute_form_) s->use_target_authority();
    s->phase_ = Phase::body;
    if (p->flags & F_CHUNKED) {
        // llhttp 8.1 refuses valid chunk extensions ("5;a=b;c=d", BWS, quoted pairs): the body
        // is decoded by feed(). llhttp takes the message as one without a body (1), completes
        // it, and pauses in on_message_complete.
        s->chunked_ = Chunked{};
        s->chunked_.active = true;
        return 1;
    }
    // Reserve the announced body once, instead of growing it chunk by chunk.
    // (at most 64 KiB up front: a client announcing a large body must send it to use memory)
    if (p->flags & F_CONTENT_LENGTH)
        r.body_.reserve(
            std::min<std::size_t>(static_cast<std::size_t>(p->content_length), 64 << 10));
    return HPE_OK;
}

void HttpParser::use_target_authority() {
    // RFC 9112 3.2.2: the origin server ignores the Host field and uses the target's authority.
    Request& r = request_;
    std::string_view authority = r.target_.substr(authority_start_, authority_size_);
    if (host_count_ > 0) {
        r.headers_[host_index_].value = authority;
        return;
    }
    if (r.header_count_ == r.headers_.size()) add_header_slot();
    r.headers_[r.header_count_++] = Header{"Host", authority};
}

int HttpParser::on_body(llhttp_t* p, const char* at, std::size_t n) {
    HttpParser* s = self(p);
    if (s->request_.body_.size() + n > s->limits_.max_body_bytes)
        return s->fail(413, "request body exceeds the limit of " +
                                std::to_string(s->limits_.max_body_bytes) + " bytes");
    s->request_.body_.append(at, n);
    return HPE_OK;
}

int HttpParser::on_message_complete(llhttp_t* p) {
    HttpParser* s = self(p);
    // An upgrade (WebSocket, CONNECT) is answered as a plain request and the connection
    // closed: herd performs no protocol switch.
    s->request_.keep_alive_ = llhttp_should_keep_alive(p) != 0 && p->upgrade == 0;
    s->upgraded_ = p->upgrade != 0;
    if (!s->chunked_.active) s->expect_continue_ = false;  // else once the body is read
    // Pause so the caller answers this request before the parser looks at the next one.
    return HPE_PAUSED;
}

}  // namespace herd::http
