// libFuzzer target: the WebSocket frame parser (ws::FrameParser) on what a client sends, and
// the UTF-8 validator it uses.
//
// Input: byte 0 picks the message size limit, byte 1 the form of the rest (raw client bytes,
// or a little program of frames built by tests/support/ws_client_frames.hpp, masked unless
// asked, so that the parser gets past its first checks), bytes 2-5 seed the cuts of the
// stream into reads. The stream is parsed cut that way and whole in one buffer: both must give
// the same events, and every event must keep the parser's promises (sizes, UTF-8, codes,
// a sticky error). The same bytes go through Utf8Validator in the same pieces and one byte at
// a time, against a reference written the plain way from RFC 3629.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "../support/ws_client_frames.hpp"
#include "ws/utf8.hpp"
#include "ws/ws_frame.hpp"

namespace {

using herd::ws::FrameParser;
using herd::ws::Utf8Validator;
using Kind = FrameParser::Event::Kind;

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "fuzz_ws_frame: invariant violated: %s\n", what);
    std::abort();
}

#define CHECK(cond)                   \
    do {                              \
        if (!(cond)) violated(#cond); \
    } while (0)

constexpr std::size_t npos = std::string_view::npos;

struct Reader {
    const std::uint8_t* p;
    std::size_t left;
    std::uint8_t byte() {
        if (left == 0) return 0;
        --left;
        return *p++;
    }
    std::string_view bytes(std::size_t n) {
        n = std::min(n, left);
        std::string_view s(reinterpret_cast<const char*>(p), n);
        p += n;
        left -= n;
        return s;
    }
};

// Frames from a program: per frame a first header byte (FIN, RSV, opcode) as is, a flags
// byte (bit 0: unmasked; bits 1-2: the length's form; bit 3: a length byte more), the
// payload's length, then the payload.
std::string build_frames(Reader& in) {
    std::string out;
    while (in.left > 0) {
        std::uint8_t first = in.byte();
        std::uint8_t flags = in.byte();
        herd::ws::test::ClientFrame f;
        f.fin = (first & 0x80) != 0;
        f.rsv = (first >> 4) & 7;
        f.opcode = first & 0x0F;
        f.masked = (flags & 1) == 0;
        static constexpr int forms[4] = {0, 7, 16, 64};
        f.length_form = forms[(flags >> 1) & 3];
        f.mask = 0x01020304u * (flags | 1);
        std::size_t length = in.byte();
        if (flags & 8) length = length << 8 | in.byte();
        std::string_view payload = in.bytes(length);
        if (f.length_form == 7 && payload.size() > 125) f.length_form = 0;
        if (f.length_form == 16 && payload.size() > 0xFFFF) f.length_form = 0;
        out += herd::ws::test::client_frame(f, payload);
    }
    return out;
}

struct Ev {
    Kind kind;
    bool binary;
    int code;
    std::string data;
    std::string reason;
    bool operator==(const Ev&) const = default;
};

// Feeds `stream` cut at `cuts`, checking every event; returns the events up to the first
// error.
std::vector<Ev> parse(const std::string& stream, const std::vector<std::size_t>& cuts,
                      std::size_t max) {
    FrameParser parser(max);
    std::vector<Ev> events;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= cuts.size(); ++i) {
        std::size_t end = i < cuts.size() ? cuts[i] : stream.size();
        std::string piece = stream.substr(start, end - start);  // mutable: unmasked in place
        start = end;
        char* data = piece.data();
        std::size_t left = piece.size();
        for (;;) {
            std::size_t used = 0;
            FrameParser::Event e = parser.next(data, left, used);
            CHECK(used <= left);
            CHECK(parser.buffered() <= max + 125);
            data += used;
            left -= used;
            if (e.kind == Kind::none) {
                CHECK(left == 0);
                break;
            }
            switch (e.kind) {
                case Kind::message:
                    CHECK(e.data.size() <= max);
                    if (!e.binary) CHECK(herd::ws::valid_utf8(e.data));
                    CHECK(!parser.in_message());
                    break;
                case Kind::ping:
                case Kind::pong:
                    CHECK(e.data.size() <= 125);
                    break;
                case Kind::close:
                    CHECK(e.data.size() <= 123);
                    CHECK(e.code == 1005 ? e.data.empty() : herd::ws::valid_close_code(e.code));
                    CHECK(herd::ws::valid_utf8(e.data));
                    break;
                case Kind::error:
                    CHECK(e.code == 1002 || e.code == 1007 || e.code == 1009);
                    CHECK(e.reason != nullptr && *e.reason != '\0');
                    break;
                case Kind::none:
                    break;
            }
            events.push_back(Ev{e.kind, e.binary, e.code, std::string(e.data), e.reason});
            if (e.kind == Kind::error) {
                // Sticky, whatever comes next, and nothing used.
                for (int again = 0; again < 2; ++again) {
                    std::size_t used_after = 1;
                    FrameParser::Event a = parser.next(data, left, used_after);
                    CHECK(used_after == 0);
                    CHECK(a.kind == Kind::error && a.code == e.code && a.reason == e.reason);
                }
                return events;
            }
        }
    }
    parser.trim();
    return events;
}

// Whether a sequence of `len` bytes whose first `have` give the bits `cp` can still end as a
// valid code point of that length (RFC 3629: shortest form, no surrogates, up to U+10FFFF).
bool completable(std::uint32_t cp, int have, int len) {
    int rest = 6 * (len - have);
    std::uint32_t lo = cp << rest;
    std::uint32_t hi = lo | ((1u << rest) - 1);
    auto meets = [lo, hi](std::uint32_t a, std::uint32_t b) { return lo <= b && hi >= a; };
    if (len == 2) return meets(0x80, 0x7FF);
    if (len == 3) return meets(0x800, 0xD7FF) || meets(0xE000, 0xFFFF);
    return meets(0x10000, 0x10FFFF);
}

// The reference: the index of the first byte after which s cannot be the start of valid
// UTF-8 (npos if none); `open` when it ends inside a sequence.
std::size_t first_invalid(std::string_view s, bool& open) {
    open = false;
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        int len = c >= 0xC0 && c < 0xE0   ? 2
                  : c >= 0xE0 && c < 0xF0 ? 3
                  : c >= 0xF0 && c < 0xF8 ? 4
                                          : 0;
        if (len == 0) return i;
        std::uint32_t cp = c & (0x7Fu >> len);
        for (int k = 1; k < len; ++k) {
            if (!completable(cp, k, len)) return i + k - 1;
            if (i + k == s.size()) {
                open = true;
                return npos;
            }
            auto b = static_cast<unsigned char>(s[i + k]);
            if ((b & 0xC0) != 0x80) return i + k;
            cp = cp << 6 | (b & 0x3F);
        }
        if (!completable(cp, len, len)) return i + len - 1;
        i += len;
    }
    return npos;
}

void check_utf8(std::string_view s, const std::vector<std::size_t>& cuts) {
    bool open = false;
    std::size_t bad = first_invalid(s, open);
    CHECK(herd::ws::valid_utf8(s) == (bad == npos && !open));

    Utf8Validator bytewise;
    std::size_t failed_at = npos;
    for (std::size_t i = 0; i < s.size() && failed_at == npos; ++i)
        if (!bytewise.feed(s.substr(i, 1))) failed_at = i;
    CHECK(failed_at == bad);
    if (bad == npos) CHECK(bytewise.complete() == !open);

    Utf8Validator pieces;
    std::size_t start = 0;
    bool ok = true;
    for (std::size_t i = 0; i <= cuts.size() && ok; ++i) {
        std::size_t end = i < cuts.size() ? cuts[i] : s.size();
        ok = pieces.feed(s.substr(start, end - start));
        if (!ok) CHECK(bad != npos && bad >= start && bad < end);
        start = end;
    }
    if (ok) CHECK(bad == npos && pieces.complete() == !open);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Reader in{data, size};
    static constexpr std::size_t limits[8] = {0, 1, 16, 125, 126, 1000, 65536, 1 << 20};
    std::size_t max = limits[in.byte() & 7];
    bool built = (in.byte() & 1) != 0;
    std::uint32_t seed = 0;
    for (int i = 0; i < 4; ++i) seed = seed << 8 | in.byte();
    std::string stream = built ? build_frames(in) : std::string(in.bytes(in.left));

    // Reads of 1 to `scale` bytes, from a xorshift on the seed.
    static constexpr std::size_t scales[4] = {1, 7, 64, 4096};
    std::size_t scale = scales[seed & 3];
    std::uint32_t x = seed | 1;
    std::vector<std::size_t> cuts;
    for (std::size_t at = 0;;) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        at += 1 + x % scale;
        if (at >= stream.size()) break;
        cuts.push_back(at);
    }

    std::vector<Ev> split = parse(stream, cuts, max);
    std::vector<Ev> whole = parse(stream, {}, max);
    CHECK(split == whole);
    check_utf8(stream, cuts);
    return 0;
}
