// WebSocket framing (RFC 6455 section 5), pure: the parser of what a client sends and the
// encoder of what the server sends. No I/O, no allocation per frame beyond the message being
// reassembled; the worker's WsSession drives it (server/worker/ws_session.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ws/utf8.hpp"

namespace herd::ws {

enum class Opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

// Close codes (RFC 6455 7.4.1). 1005 and 1006 are never sent: they say "no code" and "no
// close frame" to the plugin.
namespace close_code {
inline constexpr int normal = 1000;
inline constexpr int going_away = 1001;
inline constexpr int protocol_error = 1002;
inline constexpr int unsupported_data = 1003;
inline constexpr int no_status = 1005;
inline constexpr int abnormal = 1006;
inline constexpr int invalid_data = 1007;
inline constexpr int policy = 1008;
inline constexpr int too_big = 1009;
inline constexpr int internal_error = 1011;
inline constexpr int try_again = 1013;
}  // namespace close_code

// Whether a peer may send `code` in a close frame (RFC 6455 7.4: 1000-1003, 1007-1011, the
// registered 1012-1014, and 3000-4999 for libraries and applications).
bool valid_close_code(int code) noexcept;

// The incremental parser of a client's frames. Rules it enforces (each breach is an error
// event carrying the close code herd answers with and a reason naming the rule):
//   - every client frame is masked (1002);
//   - RSV1-3 are zero: herd negotiates no extension (1002);
//   - the opcode is one of the six above (1002);
//   - a control frame (close, ping, pong) has FIN set and at most 125 bytes of payload (1002);
//   - a continuation frame only inside a fragmented message, a text or binary frame only
//     outside one (1002); control frames may come between fragments;
//   - a 64-bit length has its top bit clear (1002); a length in a longer form than needed
//     is accepted, as most servers do;
//   - a message (all its fragments) of at most max_message_bytes (1009), refused as soon as
//     a frame header announces more, before its payload is read;
//   - a text message is UTF-8, checked as its fragments arrive: the first invalid byte ends
//     it (1007);
//   - a close frame's payload is empty, or a valid code (valid_close_code) then a UTF-8
//     reason; one byte alone is an error (1002); a bad reason is 1007.
class FrameParser {
  public:
    struct Event {
        enum class Kind : std::uint8_t {
            none,     // all the input was used and no event is complete
            message,  // a whole text or binary message: data, binary
            ping,     // data: its payload
            pong,     // data: its payload
            close,    // code (1005 when the frame had none), data: the reason (UTF-8)
            error,    // code: the close code to send (1002, 1007, 1009); reason: which rule
        };
        Kind kind = Kind::none;
        bool binary = false;
        int code = 0;
        std::string_view data;  // valid until the next call to next()
        const char* reason = "";
    };

    explicit FrameParser(std::size_t max_message_bytes) noexcept
        : max_message_(max_message_bytes) {}

    // Parses data[0..size) up to the end of the next complete event (or all of it); `used`
    // says how many bytes were consumed. Call again with the rest until it returns `none`
    // with nothing left. The payload is unmasked in place in `data` (hence not const): an
    // unfragmented frame wholly inside `data` is returned as a view of it, without a copy;
    // anything else is gathered in the parser's own buffer. After an error every call
    // returns the same error and uses nothing.
    Event next(char* data, std::size_t size, std::size_t& used);

    // Bytes held for a message or frame still incomplete (memory figures, tests).
    std::size_t buffered() const noexcept { return message_.size() + control_.size(); }
    // Inside a fragmented message (its first frame arrived, not its last).
    bool in_message() const noexcept { return in_message_; }
    // Frees the buffer's capacity if it grew past a few KiB and holds nothing: an idle
    // socket keeps no large allocation after a large message.
    void trim() noexcept;

  private:
    // The implementation's state: see ws_frame.cpp.
    std::size_t max_message_;
    std::string message_;  // a fragmented message's data so far, or a frame split across reads
    std::string control_;  // a control frame's payload split across reads
    Utf8Validator utf8_;
    // The frame being read.
    std::uint64_t payload_left_ = 0;
    std::uint8_t header_[14] = {};
    std::uint8_t header_size_ = 0;
    std::uint8_t mask_[4] = {};
    std::uint8_t mask_pos_ = 0;
    Opcode opcode_ = Opcode::continuation;
    Opcode message_opcode_ = Opcode::continuation;  // text or binary, for a fragmented message
    bool fin_ = false;
    bool in_frame_ = false;    // past the header, reading the payload
    bool in_message_ = false;  // a fragmented message is open
    Event error_;              // kind error once failed
};

// Server frames: FIN set, never masked (RFC 6455 5.1). The header of a frame with `size`
// bytes of payload (2, 4 or 10 bytes), appended to out.
void append_frame_header(std::string& out, Opcode opcode, std::size_t size);
// Header and payload.
void append_frame(std::string& out, Opcode opcode, std::string_view payload);
// A close frame: the code, then the reason cut to fit the 125-byte limit at a UTF-8
// character boundary. Code 1005 (none) gives an empty payload.
void append_close(std::string& out, int code, std::string_view reason);
// The largest frame header append_frame_header writes.
inline constexpr std::size_t max_frame_header = 10;

}  // namespace herd::ws
