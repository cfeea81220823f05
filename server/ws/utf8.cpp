// The incremental UTF-8 validator; see utf8.hpp.
#include "ws/utf8.hpp"

#include <cstring>

namespace herd::ws {
namespace {

// The state between calls: 0 on a character boundary, else the continuation bytes still
// expected (bits 0-1) and the range the next one must fall in (bits 8-15 and 16-23). The
// range is narrower than 80..BF only right after E0, ED, F0 and F4: that is where overlong
// forms, surrogates and code points above U+10FFFF would begin (RFC 3629 section 4).
constexpr std::uint32_t failed = 0xFFFFFFFF;

constexpr std::uint32_t pack(unsigned need, unsigned lo, unsigned hi) {
    return need | (lo << 8) | (hi << 16);
}

}  // namespace

bool Utf8Validator::feed(std::string_view bytes) noexcept {
    if (state_ == failed) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const unsigned char* end = p + bytes.size();
    unsigned need = state_ & 3;
    unsigned lo = (state_ >> 8) & 0xFF;
    unsigned hi = (state_ >> 16) & 0xFF;
    while (p < end) {
        if (need > 0) {
            unsigned c = *p++;
            if (c < lo || c > hi) {
                state_ = failed;
                return false;
            }
            --need;
            lo = 0x80;
            hi = 0xBF;
            continue;
        }
        // Text is mostly ASCII: eight bytes at a time while no byte has its top bit set.
        while (end - p >= 8) {
            std::uint64_t word;
            std::memcpy(&word, p, 8);
            if (word & 0x8080808080808080ull) break;
            p += 8;
        }
        if (p == end) break;
        unsigned c = *p++;
        if (c < 0x80) continue;
        lo = 0x80;
        hi = 0xBF;
        if (c < 0xC2) {  // a continuation byte, or C0 and C1 (always overlong)
            state_ = failed;
            return false;
        } else if (c < 0xE0) {
            need = 1;
        } else if (c < 0xF0) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;  // below U+0800: overlong
            if (c == 0xED) hi = 0x9F;  // U+D800..DFFF: surrogates
        } else if (c < 0xF5) {
            need = 3;
            if (c == 0xF0) lo = 0x90;  // below U+10000: overlong
            if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
        } else {
            state_ = failed;
            return false;
        }
    }
    state_ = need == 0 ? 0 : pack(need, lo, hi);
    return true;
}

bool valid_utf8(std::string_view s) noexcept {
    Utf8Validator v;
    return v.feed(s) && v.complete();
}

}  // namespace herd::ws
