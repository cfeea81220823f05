// The character classes and small scanners that HttpParser's files share (http_parser.cpp,
// http_parser_chunked.cpp, http_parser_callbacks.cpp): tchar, host characters, whitespace,
// digits, hex, case-insensitive field names, comma-separated lists. Internal to them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace herd::http::chars {

inline constexpr std::size_t npos = std::string::npos;

// Character classes of RFC 9110 5.6.2 (tchar) and RFC 3986 (host), one table.
inline constexpr std::uint8_t tchar = 1;
inline constexpr std::uint8_t reg_name = 2;    // unreserved / sub-delims
inline constexpr std::uint8_t ip_literal = 4;  // unreserved / sub-delims / ":"
inline constexpr std::array<std::uint8_t, 256> classes = [] {
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
inline bool is(unsigned char c, std::uint8_t cls) {
    return (classes[c] & cls) != 0;
}
inline bool is_ws(unsigned char c) {
    return c == ' ' || c == '\t';
}
inline bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
inline int hex_value(unsigned char c) {
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

}  // namespace herd::http::chars
