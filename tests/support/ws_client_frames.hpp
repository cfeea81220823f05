// What a WebSocket client sends, built byte by byte from RFC 6455 5.2 for the frame parser's
// tests (tests/unit/ws_frame_test.cpp) and its fuzz target (tests/fuzz/fuzz_ws_frame.cpp):
// masked frames, and on request the malformed ones the parser must refuse. It builds; it
// never parses.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace herd::ws::test {

struct ClientFrame {
    std::uint8_t opcode = 0x1;  // any 4-bit value, the six valid ones or not
    bool fin = true;
    std::uint8_t rsv = 0;  // RSV1-3 as bits 2..0
    bool masked = true;
    std::uint32_t mask = 0x37FA213D;  // the key of RFC 6455 5.7's examples
    // The length's form: 0 for the shortest, else 7, 16 or 64 (a longer form than needed
    // is legal).
    int length_form = 0;
    // The length the header announces, when not the payload's (a header for a payload that
    // is never sent, or a 64-bit length with its top bit set).
    std::optional<std::uint64_t> announced;
};

inline std::string client_frame(const ClientFrame& f, std::string_view payload) {
    std::string out;
    out.push_back(static_cast<char>((f.fin ? 0x80 : 0) | ((f.rsv & 7) << 4) | (f.opcode & 0x0F)));
    std::uint64_t length = f.announced.value_or(payload.size());
    int form = f.length_form;
    if (form == 0) form = length < 126 ? 7 : length <= 0xFFFF ? 16 : 64;
    char mask_bit = f.masked ? static_cast<char>(0x80) : 0;
    if (form == 7) {
        out.push_back(static_cast<char>(mask_bit | static_cast<char>(length & 0x7F)));
    } else if (form == 16) {
        out.push_back(static_cast<char>(mask_bit | 126));
        out.push_back(static_cast<char>((length >> 8) & 0xFF));
        out.push_back(static_cast<char>(length & 0xFF));
    } else {
        out.push_back(static_cast<char>(mask_bit | 127));
        for (int shift = 56; shift >= 0; shift -= 8)
            out.push_back(static_cast<char>((length >> shift) & 0xFF));
    }
    if (!f.masked) return out.append(payload);
    char key[4];
    for (int i = 0; i < 4; ++i) key[i] = static_cast<char>((f.mask >> (24 - 8 * i)) & 0xFF);
    out.append(key, 4);
    for (std::size_t i = 0; i < payload.size(); ++i)
        out.push_back(static_cast<char>(payload[i] ^ key[i % 4]));
    return out;
}

// A masked frame with the defaults above.
inline std::string client_frame(std::uint8_t opcode, std::string_view payload, bool fin = true) {
    ClientFrame f;
    f.opcode = opcode;
    f.fin = fin;
    return client_frame(f, payload);
}

// A close frame's payload: the code, big-endian, then the reason.
inline std::string close_payload(int code, std::string_view reason = {}) {
    std::string p;
    p.push_back(static_cast<char>((code >> 8) & 0xFF));
    p.push_back(static_cast<char>(code & 0xFF));
    return p.append(reason);
}

}  // namespace herd::ws::test
