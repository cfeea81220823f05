// ws/ws_frame: the client frame parser (every rule, every split of the input) and the server
// frame encoder.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "../support/ws_client_frames.hpp"
#include "ws/ws_frame.hpp"

namespace {

using herd::ws::append_close;
using herd::ws::append_frame;
using herd::ws::append_frame_header;
using herd::ws::FrameParser;
using herd::ws::Opcode;
using herd::ws::test::client_frame;
using herd::ws::test::ClientFrame;
using herd::ws::test::close_payload;
using Kind = FrameParser::Event::Kind;

constexpr std::uint8_t text = 0x1, binary = 0x2, cont = 0x0, close = 0x8, ping = 0x9, pong = 0xA;

// An event with its views copied, comparable.
struct Ev {
    Kind kind = Kind::none;
    bool binary = false;
    int code = 0;
    std::string data;
    std::string reason;
    bool operator==(const Ev&) const = default;
};

void PrintTo(const Ev& e, std::ostream* os) {
    *os << "{kind " << static_cast<int>(e.kind) << ", binary " << e.binary << ", code " << e.code
        << ", " << e.data.size() << " bytes " << testing::PrintToString(e.data.substr(0, 40))
        << ", \"" << e.reason << "\"}";
}

Ev copy(const FrameParser::Event& e) {
    return {e.kind, e.binary, e.code, std::string(e.data), e.reason};
}

// Feeds `bytes` to `p` in pieces cut at `cuts` (increasing offsets), each piece copied into a
// buffer of its own as a socket read would give it; returns every event up to the first error.
std::vector<Ev> feed(FrameParser& p, const std::string& bytes,
                     const std::vector<std::size_t>& cuts) {
    std::vector<Ev> events;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= cuts.size(); ++i) {
        std::size_t end = i < cuts.size() ? cuts[i] : bytes.size();
        std::string piece = bytes.substr(start, end - start);
        start = end;
        char* data = piece.data();
        std::size_t left = piece.size();
        for (;;) {
            std::size_t used = 0;
            FrameParser::Event e = p.next(data, left, used);
            EXPECT_LE(used, left);
            data += used;
            left -= used;
            if (e.kind == Kind::none) {
                EXPECT_EQ(left, 0u);
                break;
            }
            events.push_back(copy(e));
            if (e.kind == Kind::error) return events;
        }
    }
    return events;
}

std::vector<Ev> feed_whole(const std::string& bytes, std::size_t max = 1 << 20) {
    FrameParser p(max);
    return feed(p, bytes, {});
}

std::vector<Ev> feed_bytewise(const std::string& bytes, std::size_t max = 1 << 20) {
    FrameParser p(max);
    std::vector<std::size_t> cuts;
    for (std::size_t i = 1; i < bytes.size(); ++i) cuts.push_back(i);
    return feed(p, bytes, cuts);
}

Ev message(std::string data, bool is_binary = false) {
    return {Kind::message, is_binary, 0, std::move(data), ""};
}
Ev error(int code, std::string reason) {
    return {Kind::error, false, code, "", std::move(reason)};
}

// The parser's verdict on a stream: the events up to the first error, whole and one byte at a
// time (which must agree).
std::vector<Ev> parse(const std::string& bytes, std::size_t max = 1 << 20) {
    std::vector<Ev> whole = feed_whole(bytes, max);
    EXPECT_EQ(feed_bytewise(bytes, max), whole);
    return whole;
}

std::string pattern(std::size_t n) {
    std::string s(n, '\0');
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
    return s;
}

TEST(WsFrameParser, LengthsInEachForm) {
    for (std::size_t n : {0u, 1u, 125u, 126u, 65535u, 65536u, 70000u}) {
        std::string payload = pattern(n);
        EXPECT_EQ(parse(client_frame(text, payload)), std::vector<Ev>{message(payload)}) << n;
        EXPECT_EQ(parse(client_frame(binary, payload)), std::vector<Ev>{message(payload, true)})
            << n;
    }
}

TEST(WsFrameParser, LongerLengthFormsThanNeededAreAccepted) {
    for (int form : {16, 64}) {
        ClientFrame f;
        f.length_form = form;
        EXPECT_EQ(parse(client_frame(f, "hi")), std::vector<Ev>{message("hi")}) << form;
    }
}

TEST(WsFrameParser, WholeFrameIsAViewOfTheInputUnmaskedInPlace) {
    std::string bytes = client_frame(text, "Hello");
    FrameParser p(1000);
    std::size_t used = 0;
    auto e = p.next(bytes.data(), bytes.size(), used);
    ASSERT_EQ(e.kind, Kind::message);
    EXPECT_EQ(used, bytes.size());
    EXPECT_EQ(e.data, "Hello");
    EXPECT_EQ(e.data.data(), bytes.data() + 6);
    EXPECT_EQ(p.buffered(), 0u);
}

TEST(WsFrameParser, OneEventPerCall) {
    std::string bytes =
        client_frame(text, "one") + client_frame(ping, "p") + client_frame(text, "two");
    FrameParser p(1000);
    std::size_t used = 0, at = 0;
    auto e = p.next(bytes.data(), bytes.size(), used);
    EXPECT_EQ(e.data, "one");
    EXPECT_EQ(used, 9u);
    at += used;
    e = p.next(bytes.data() + at, bytes.size() - at, used);
    EXPECT_EQ(e.kind, Kind::ping);
    EXPECT_EQ(e.data, "p");
    at += used;
    e = p.next(bytes.data() + at, bytes.size() - at, used);
    EXPECT_EQ(e.data, "two");
    at += used;
    EXPECT_EQ(at, bytes.size());
    e = p.next(bytes.data() + at, 0, used);
    EXPECT_EQ(e.kind, Kind::none);
    EXPECT_EQ(used, 0u);
}

TEST(WsFrameParser, FragmentedWithInterleavedControlFrames) {
    std::string bytes = client_frame(text, "Hel", false) + client_frame(ping, "are you there") +
                        client_frame(cont, "", false) + client_frame(pong, "") +
                        client_frame(cont, "lo", true);
    std::vector<Ev> want{{Kind::ping, false, 0, "are you there", ""},
                         {Kind::pong, false, 0, "", ""},
                         message("Hello")};
    EXPECT_EQ(parse(bytes), want);

    FrameParser p(1000);
    std::string first = client_frame(binary, "ab", false);
    std::size_t used = 0;
    EXPECT_EQ(p.next(first.data(), first.size(), used).kind, Kind::none);
    EXPECT_TRUE(p.in_message());
    EXPECT_EQ(p.buffered(), 2u);
    std::string last = client_frame(cont, "cd");
    auto e = p.next(last.data(), last.size(), used);
    EXPECT_EQ(e.kind, Kind::message);
    EXPECT_TRUE(e.binary);
    EXPECT_EQ(e.data, "abcd");
    EXPECT_FALSE(p.in_message());
    EXPECT_EQ(p.next(last.data(), 0, used).kind, Kind::none);
    EXPECT_EQ(p.buffered(), 0u);
}

// A stream with a bit of everything, for the splitting tests.
std::string mixed_stream() {
    std::string s;
    s += client_frame(text, "");
    s += client_frame(text, "caf\xC3\xA9");
    s += client_frame(binary, pattern(126));
    s += client_frame(text, "frag\xF0\x9F", false);
    s += client_frame(ping, "x");
    s += client_frame(cont, "\x98\x80", false);
    s += client_frame(pong, pattern(125));
    s += client_frame(cont, pattern(300), true);
    s += client_frame(binary, pattern(70000));
    s += client_frame(close, close_payload(1000, "bye"));
    return s;
}

TEST(WsFrameParser, EverySplitGivesTheSameEvents) {
    std::string bytes = mixed_stream();
    std::vector<Ev> whole = feed_whole(bytes);
    ASSERT_EQ(whole.size(), 8u);
    EXPECT_EQ(whole[3], (Ev{Kind::ping, false, 0, "x", ""}));
    EXPECT_EQ(whole[5], message("frag\xF0\x9F\x98\x80" + pattern(300)));
    EXPECT_EQ(whole[7], (Ev{Kind::close, false, 1000, "bye", ""}));
    EXPECT_EQ(feed_bytewise(bytes), whole);
    // Two pieces, cut at every offset of the frames before the large one.
    for (std::size_t cut = 1; cut < 1000; ++cut) {
        FrameParser p(1 << 20);
        ASSERT_EQ(feed(p, bytes, {cut}), whole) << cut;
    }
    std::mt19937 rng(6455);
    for (int round = 0; round < 200; ++round) {
        std::vector<std::size_t> cuts;
        std::size_t at = 0;
        for (;;) {
            at += 1 + rng() % (round % 2 ? 40 : 3000);
            if (at >= bytes.size()) break;
            cuts.push_back(at);
        }
        FrameParser p(1 << 20);
        ASSERT_EQ(feed(p, bytes, cuts), whole) << round;
    }
}

struct Breach {
    std::string bytes;
    int code;
    std::string reason;
};

TEST(WsFrameParser, EveryRuleWithItsCode) {
    auto frame = [](auto&& set, std::string_view payload = "x") {
        ClientFrame f;
        set(f);
        return client_frame(f, payload);
    };
    std::string open = client_frame(text, "a", false);
    std::vector<Breach> breaches{
        {frame([](ClientFrame& f) { f.masked = false; }), 1002, "a client frame is not masked"},
        {frame([](ClientFrame& f) { f.rsv = 4; }), 1002,
         "reserved bits set (no extension was negotiated)"},
        {frame([](ClientFrame& f) { f.rsv = 1; }), 1002,
         "reserved bits set (no extension was negotiated)"},
        {frame([](ClientFrame& f) { f.opcode = 0x3; }), 1002, "unknown opcode 0x3"},
        {frame([](ClientFrame& f) { f.opcode = 0xB; }), 1002, "unknown opcode 0xB"},
        {client_frame(ping, pattern(126)), 1002, "a control frame of more than 125 bytes"},
        {client_frame(ping, "p", false), 1002, "a fragmented control frame"},
        {client_frame(close, "", false), 1002, "a fragmented control frame"},
        {client_frame(cont, "x"), 1002, "a continuation frame outside a fragmented message"},
        {open + client_frame(text, "b"), 1002, "a new message inside a fragmented message"},
        {open + client_frame(binary, "b", false), 1002,
         "a new message inside a fragmented message"},
        {frame([](ClientFrame& f) { f.announced = std::uint64_t(1) << 63; }), 1002,
         "a 64-bit length with its top bit set"},
        {client_frame(text, pattern(101)), 1009, "a message larger than max_ws_message_bytes"},
        {client_frame(text, "ok\xC0\xAF"), 1007, "a text message that is not UTF-8"},
        {client_frame(text, "cut \xE2\x82"), 1007, "a text message that is not UTF-8"},
        {client_frame(close, "\x03"), 1002, "a close frame with a 1-byte payload"},
        {client_frame(close, close_payload(1005)), 1002, "a close frame with an invalid code"},
        {client_frame(close, close_payload(1000, "\xFF")), 1007,
         "a close frame whose reason is not UTF-8"},
    };
    for (const Breach& b : breaches) {
        std::vector<Ev> events = parse(b.bytes, 100);
        ASSERT_FALSE(events.empty()) << b.reason;
        EXPECT_EQ(events.back(), error(b.code, b.reason));

        // Then the same error every time, using nothing.
        FrameParser p(100);
        std::string bytes = b.bytes;
        char* data = bytes.data();
        std::size_t left = bytes.size(), used = 0;
        FrameParser::Event e;
        do {
            e = p.next(data, left, used);
            data += used;
            left -= used;
        } while (e.kind != Kind::error);
        std::string more = client_frame(text, "fine");
        for (int i = 0; i < 2; ++i) {
            e = p.next(more.data(), more.size(), used);
            EXPECT_EQ(copy(e), error(b.code, b.reason));
            EXPECT_EQ(used, 0u);
        }
    }
}

TEST(WsFrameParser, RulesOfTheFirstTwoBytesNeedNoMore) {
    std::string bytes = client_frame(0x7, "payload").substr(0, 2);
    EXPECT_EQ(feed_whole(bytes), std::vector<Ev>{error(1002, "unknown opcode 0x7")});
}

TEST(WsFrameParser, SizeLimitCheckedOnTheHeaderAlone) {
    ClientFrame f;
    f.announced = 1 << 20;
    std::string header = client_frame(f, "");  // no payload follows
    ASSERT_EQ(header.size(), 2u + 8u + 4u);
    EXPECT_EQ(feed_bytewise(header, 100),
              std::vector<Ev>{error(1009, "a message larger than max_ws_message_bytes")});

    // Fragments count together: 60 + 40 fits 100, 60 + 41 does not.
    std::string first = client_frame(binary, pattern(60), false);
    EXPECT_EQ(parse(first + client_frame(cont, pattern(40)), 100),
              std::vector<Ev>{message(pattern(60) + pattern(40), true)});
    ClientFrame next;
    next.opcode = cont;
    next.announced = 41;
    EXPECT_EQ(parse(first + client_frame(next, ""), 100),
              std::vector<Ev>{error(1009, "a message larger than max_ws_message_bytes")});
    EXPECT_EQ(parse(client_frame(text, pattern(100)), 100), std::vector<Ev>{message(pattern(100))});
}

TEST(WsFrameParser, Utf8AcrossFragments) {
    // U+1F600 cut inside, at every byte.
    const std::string smile = "\xF0\x9F\x98\x80";
    for (std::size_t cut = 0; cut <= smile.size(); ++cut) {
        std::string bytes = client_frame(text, "<" + smile.substr(0, cut), false) +
                            client_frame(ping, "") + client_frame(cont, smile.substr(cut) + ">");
        std::vector<Ev> events = parse(bytes);
        ASSERT_EQ(events.size(), 2u);
        EXPECT_EQ(events[1], message("<" + smile + ">")) << cut;
    }
    // The first bad byte ends it, before the final fragment arrives.
    std::string bad = client_frame(text, "ok", false) + client_frame(cont, "\xED\xA0\x80", false);
    EXPECT_EQ(parse(bad), std::vector<Ev>{error(1007, "a text message that is not UTF-8")});
    // A sequence left open by the final fragment.
    std::string open = client_frame(text, "ok\xF0\x9F", false) + client_frame(cont, "\x98");
    EXPECT_EQ(parse(open), std::vector<Ev>{error(1007, "a text message that is not UTF-8")});
    // Binary messages are not UTF-8's business.
    EXPECT_EQ(parse(client_frame(binary, "\xFF\xC0")), std::vector<Ev>{message("\xFF\xC0", true)});
}

TEST(WsFrameParser, ClosePayloads) {
    EXPECT_EQ(parse(client_frame(close, "")),
              (std::vector<Ev>{{Kind::close, false, 1005, "", ""}}));
    for (int code :
         {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999}) {
        EXPECT_EQ(parse(client_frame(close, close_payload(code, "r\xC3\xA9"))),
                  (std::vector<Ev>{{Kind::close, false, code, "r\xC3\xA9", ""}}))
            << code;
    }
    for (int code : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535}) {
        EXPECT_EQ(parse(client_frame(close, close_payload(code))),
                  std::vector<Ev>{error(1002, "a close frame with an invalid code")})
            << code;
    }
}

TEST(WsFrameParser, ControlFrameSplitBetweenFragmentsKeepsTheMessage) {
    std::string bytes = client_frame(text, "abc", false) + client_frame(ping, pattern(100)) +
                        client_frame(cont, "def");
    std::size_t ping_mid = client_frame(text, "abc", false).size() + 50;
    FrameParser p(1000);
    std::vector<Ev> events = feed(p, bytes, {ping_mid});
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0], (Ev{Kind::ping, false, 0, pattern(100), ""}));
    EXPECT_EQ(events[1], message("abcdef"));
}

TEST(WsFrameParser, BufferEmptiesAfterALargeMessage) {
    std::string payload = pattern(50000);
    std::string bytes = client_frame(binary, payload);
    FrameParser p(1 << 20);
    EXPECT_EQ(feed(p, bytes, {100, 30000}), std::vector<Ev>{message(payload, true)});
    std::size_t used = 0;
    EXPECT_EQ(p.next(bytes.data(), 0, used).kind, Kind::none);
    EXPECT_EQ(p.buffered(), 0u);
    p.trim();
    EXPECT_EQ(p.buffered(), 0u);
    std::string again = client_frame(text, "after");
    EXPECT_EQ(feed(p, again, {3}), std::vector<Ev>{message("after")});
}

// A server frame as a client would send it: the mask bit set, a key after the header, the
// payload masked. The header's size is what append_frame wrote before the payload.
std::string as_client(const std::string& server_frame, std::size_t payload_size) {
    std::size_t header = server_frame.size() - payload_size;
    std::string out = server_frame.substr(0, header);
    out[1] = static_cast<char>(out[1] | 0x80);
    const char key[4] = {'\x12', '\x34', '\x56', '\x78'};
    out.append(key, 4);
    for (std::size_t i = 0; i < payload_size; ++i)
        out.push_back(static_cast<char>(server_frame[header + i] ^ key[i % 4]));
    return out;
}

TEST(WsFrameEncoder, HeaderFormsRoundTrip) {
    struct Form {
        std::size_t size;
        std::string header;
    };
    std::vector<Form> forms{
        {0, std::string("\x82\x00", 2)},
        {125, "\x82\x7D"},
        {126, std::string("\x82\x7E\x00\x7E", 4)},
        {65535, "\x82\x7E\xFF\xFF"},
        {65536, std::string("\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10)},
    };
    for (const Form& f : forms) {
        std::string header;
        append_frame_header(header, Opcode::binary, f.size);
        EXPECT_EQ(header, f.header) << f.size;
        std::string payload = pattern(f.size);
        std::string frame;
        append_frame(frame, Opcode::binary, payload);
        EXPECT_EQ(frame, f.header + payload);
        EXPECT_EQ(parse(as_client(frame, payload.size())), std::vector<Ev>{message(payload, true)});
    }
    std::string pong_frame;
    append_frame(pong_frame, Opcode::pong, "p");
    EXPECT_EQ(pong_frame, "\x8A\x01p");
}

TEST(WsFrameEncoder, Close) {
    std::string out;
    append_close(out, 1005, "ignored");
    EXPECT_EQ(out, std::string("\x88\x00", 2));

    out.clear();
    append_close(out, 1000, "bye");
    EXPECT_EQ(out, std::string("\x88\x05\x03\xE8"
                               "bye",
                               7));
    EXPECT_EQ(parse(as_client(out, 5)), (std::vector<Ev>{{Kind::close, false, 1000, "bye", ""}}));

    // 62 two-byte characters (124 bytes): the 62nd would end past 123, so 61 are kept.
    std::string e_acute;
    for (int i = 0; i < 62; ++i) e_acute += "\xC3\xA9";
    out.clear();
    append_close(out, 1001, e_acute);
    ASSERT_EQ(out.size(), 2u + 2u + 122u);
    EXPECT_EQ(out.substr(4), e_acute.substr(0, 122));
    EXPECT_EQ(parse(as_client(out, 124)),
              (std::vector<Ev>{{Kind::close, false, 1001, e_acute.substr(0, 122), ""}}));

    // 123 bytes exactly fit; 200 ASCII bytes are cut to 123.
    std::string euro;
    for (int i = 0; i < 41; ++i) euro += "\xE2\x82\xAC";
    out.clear();
    append_close(out, 1011, euro);
    EXPECT_EQ(out.size(), 2u + 125u);
    out.clear();
    append_close(out, 1011, pattern(200));
    EXPECT_EQ(out.size(), 2u + 125u);
    EXPECT_EQ(out.substr(4), pattern(123));
}

}  // namespace
