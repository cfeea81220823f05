// HttpParser, continued: chunked request bodies (RFC 9112 7.1), decoded by herd rather than
// llhttp, chunk sizes, extensions and trailers checked byte by byte. See http_parser.hpp.
#include "http/http_parser.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "http/http_chars.hpp"

namespace herd::http {
using namespace chars;

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

}  // namespace herd::http
