// WebSocket frames: the client frame parser and the server frame encoder; see ws_frame.hpp.
//
// The parser's state between calls: header_ holds the bytes of a frame header that arrived
// split (at most 14: 2, an extended length of 8, a mask of 4); in_frame_ says the header is
// done and payload_left_ bytes of payload are still to come. A data frame is gathered in
// message_ unless it is a whole unfragmented frame inside one call's input, which is returned
// as a view of that input; a control frame split across calls is gathered in control_, apart,
// since it may arrive between the fragments of a message. What an event showed from message_
// or control_ is dropped at the start of the next call.
#include "ws/ws_frame.hpp"

#include <algorithm>
#include <cstring>

namespace herd::ws {
namespace {

bool is_control(Opcode op) noexcept {
    return (static_cast<unsigned>(op) & 0x8) != 0;
}

// Bytes of extended length after the first two header bytes.
std::size_t extended_length_size(std::uint8_t second) noexcept {
    std::uint8_t len7 = second & 0x7F;
    return len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
}

// XORs the frame's mask into p[0..n), starting at mask position `pos` (returned advanced).
std::uint8_t unmask(char* p, std::size_t n, const std::uint8_t mask[4], std::uint8_t pos) noexcept {
    std::size_t i = 0;
    // Byte by byte up to a mask boundary, then eight bytes at a time with the mask doubled.
    for (; i < n && pos != 0; ++i, pos = (pos + 1) & 3) p[i] ^= static_cast<char>(mask[pos]);
    if (n - i >= 8) {
        std::uint8_t doubled[8];
        for (int k = 0; k < 8; ++k) doubled[k] = mask[k & 3];
        std::uint64_t m;
        std::memcpy(&m, doubled, 8);
        for (; n - i >= 8; i += 8) {
            std::uint64_t w;
            std::memcpy(&w, p + i, 8);
            w ^= m;
            std::memcpy(p + i, &w, 8);
        }
    }
    for (; i < n; ++i, pos = (pos + 1) & 3) p[i] ^= static_cast<char>(mask[pos]);
    return pos;
}

// The rule that a frame's first two header bytes break, if any (all are 1002's).
const char* header_rule_broken(std::uint8_t b0, std::uint8_t b1, bool in_message) noexcept {
    // The reasons for the opcodes RFC 6455 leaves reserved: 0x3-0x7 (data), 0xB-0xF (control).
    static const char* const reserved_data[] = {"unknown opcode 0x3", "unknown opcode 0x4",
                                                "unknown opcode 0x5", "unknown opcode 0x6",
                                                "unknown opcode 0x7"};
    static const char* const reserved_control[] = {"unknown opcode 0xB", "unknown opcode 0xC",
                                                   "unknown opcode 0xD", "unknown opcode 0xE",
                                                   "unknown opcode 0xF"};
    auto op = static_cast<Opcode>(b0 & 0x0F);
    if (b0 & 0x70) return "reserved bits set (no extension was negotiated)";
    if (!(b1 & 0x80)) return "a client frame is not masked";
    unsigned code = b0 & 0x0F;
    if (code >= 0x3 && code <= 0x7) return reserved_data[code - 0x3];
    if (code >= 0xB) return reserved_control[code - 0xB];
    if (is_control(op)) {
        if (!(b0 & 0x80)) return "a fragmented control frame";
        if ((b1 & 0x7F) > 125) return "a control frame of more than 125 bytes";
    } else if (op == Opcode::continuation) {
        if (!in_message) return "a continuation frame outside a fragmented message";
    } else if (in_message) {
        return "a new message inside a fragmented message";
    }
    return nullptr;
}

}  // namespace

bool valid_close_code(int code) noexcept {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

FrameParser::Event FrameParser::next(char* data, std::size_t size, std::size_t& used) {
    used = 0;
    if (error_.kind == Event::Kind::error) return error_;
    // What the previous event showed from our buffers is no longer needed.
    bool reading_control = in_frame_ && is_control(opcode_);
    bool reading_data = in_frame_ && !is_control(opcode_);
    if (!reading_control) control_.clear();
    if (!reading_data && !in_message_) message_.clear();

    std::size_t pos = 0;
    auto fail = [&](int code, const char* reason) {
        used = pos;
        error_.kind = Event::Kind::error;
        error_.code = code;
        error_.reason = reason;
        std::string().swap(message_);
        std::string().swap(control_);
        return error_;
    };

    for (;;) {
        if (!in_frame_) {
            // The header, possibly split: its first two bytes say how long the rest is.
            std::size_t need = header_size_ < 2 ? 2 : 2 + extended_length_size(header_[1]) + 4;
            std::size_t n = std::min(need - header_size_, size - pos);
            std::memcpy(header_ + header_size_, data + pos, n);
            header_size_ = static_cast<std::uint8_t>(header_size_ + n);
            pos += n;
            if (header_size_ < need) {
                used = pos;
                return {};
            }
            if (need == 2) {
                // Every rule that the first two bytes decide is checked before the rest arrives.
                fin_ = (header_[0] & 0x80) != 0;
                opcode_ = static_cast<Opcode>(header_[0] & 0x0F);
                if (const char* broken = header_rule_broken(header_[0], header_[1], in_message_))
                    return fail(close_code::protocol_error, broken);
                continue;
            }
            // The whole header: the length, then the limit on the message before its payload.
            std::size_t ext = need - 6;
            std::uint64_t length = header_[1] & 0x7F;
            if (ext > 0) {
                length = 0;
                for (std::size_t i = 0; i < ext; ++i) length = (length << 8) | header_[2 + i];
            }
            std::memcpy(mask_, header_ + 2 + ext, 4);
            header_size_ = 0;
            if (ext == 8 && (length >> 63) != 0)
                return fail(close_code::protocol_error, "a 64-bit length with its top bit set");
            if (!is_control(opcode_)) {
                if (opcode_ != Opcode::continuation) {
                    message_opcode_ = opcode_;
                    message_.clear();
                    utf8_.reset();
                }
                // message_ is at most max_message_ (checked here for each frame), so no overflow.
                if (length > max_message_ - message_.size())
                    return fail(close_code::too_big, "a message larger than max_ws_message_bytes");
                if (opcode_ != Opcode::continuation) in_message_ = !fin_;
            }
            payload_left_ = length;
            mask_pos_ = 0;
            in_frame_ = true;
        }

        // The payload, or what of it this input holds.
        std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(payload_left_, size - pos));
        char* chunk = data + pos;
        mask_pos_ = unmask(chunk, n, mask_, mask_pos_);
        pos += n;
        payload_left_ -= n;
        bool control = is_control(opcode_);
        // A frame whose payload is all here and none of it gathered before: a view, no copy.
        bool whole = payload_left_ == 0 && (control ? control_.empty() : message_.empty());
        if (!control) {
            if (message_opcode_ == Opcode::text && !utf8_.feed(std::string_view(chunk, n)))
                return fail(close_code::invalid_data, "a text message that is not UTF-8");
            if (!(whole && fin_)) message_.append(chunk, n);
        } else if (!whole) {
            control_.append(chunk, n);
        }
        if (payload_left_ > 0) {
            used = pos;
            return {};
        }
        in_frame_ = false;

        Event ev;
        if (!control) {
            if (!fin_) continue;  // a fragment: on to the next frame
            if (message_opcode_ == Opcode::text && !utf8_.complete())
                return fail(close_code::invalid_data, "a text message that is not UTF-8");
            in_message_ = false;
            ev.kind = Event::Kind::message;
            ev.binary = message_opcode_ == Opcode::binary;
            ev.data = whole ? std::string_view(chunk, n) : std::string_view(message_);
            used = pos;
            return ev;
        }
        std::string_view payload = whole ? std::string_view(chunk, n) : std::string_view(control_);
        if (opcode_ == Opcode::ping) {
            ev.kind = Event::Kind::ping;
            ev.data = payload;
        } else if (opcode_ == Opcode::pong) {
            ev.kind = Event::Kind::pong;
            ev.data = payload;
        } else {
            ev.kind = Event::Kind::close;
            if (payload.empty()) {
                ev.code = close_code::no_status;
            } else if (payload.size() == 1) {
                return fail(close_code::protocol_error, "a close frame with a 1-byte payload");
            } else {
                ev.code = (static_cast<unsigned char>(payload[0]) << 8) |
                          static_cast<unsigned char>(payload[1]);
                if (!valid_close_code(ev.code))
                    return fail(close_code::protocol_error, "a close frame with an invalid code");
                ev.data = payload.substr(2);
                if (!valid_utf8(ev.data))
                    return fail(close_code::invalid_data,
                                "a close frame whose reason is not UTF-8");
            }
        }
        used = pos;
        return ev;
    }
}

void FrameParser::trim() noexcept {
    constexpr std::size_t keep = 4096;
    if (message_.empty() && message_.capacity() > keep) std::string().swap(message_);
    if (control_.empty() && control_.capacity() > keep) std::string().swap(control_);
}

void append_frame_header(std::string& out, Opcode opcode, std::size_t size) {
    char h[max_frame_header];
    h[0] = static_cast<char>(0x80 | static_cast<unsigned>(opcode));
    std::size_t n;
    if (size < 126) {
        h[1] = static_cast<char>(size);
        n = 2;
    } else if (size <= 0xFFFF) {
        h[1] = 126;
        h[2] = static_cast<char>(size >> 8);
        h[3] = static_cast<char>(size);
        n = 4;
    } else {
        h[1] = 127;
        auto s = static_cast<std::uint64_t>(size);
        for (int i = 0; i < 8; ++i) h[2 + i] = static_cast<char>(s >> (56 - 8 * i));
        n = 10;
    }
    out.append(h, n);
}

void append_frame(std::string& out, Opcode opcode, std::string_view payload) {
    append_frame_header(out, opcode, payload.size());
    out.append(payload);
}

void append_close(std::string& out, int code, std::string_view reason) {
    if (code == close_code::no_status) {
        append_frame_header(out, Opcode::close, 0);
        return;
    }
    // 125 bytes of control payload, 2 of them the code. The cut goes back to the first byte of
    // a character, so that the reason stays UTF-8.
    constexpr std::size_t max_reason = 123;
    if (reason.size() > max_reason) {
        std::size_t n = max_reason;
        while (n > 0 && (static_cast<unsigned char>(reason[n]) & 0xC0) == 0x80) --n;
        reason = reason.substr(0, n);
    }
    append_frame_header(out, Opcode::close, 2 + reason.size());
    out.push_back(static_cast<char>((code >> 8) & 0xFF));
    out.push_back(static_cast<char>(code & 0xFF));
    out.append(reason);
}

}  // namespace herd::ws
