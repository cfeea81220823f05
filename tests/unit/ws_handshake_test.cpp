// ws/handshake: the checks of RFC 6455 4.2.1 in their order, the accept key, the protocols.
#include <gtest/gtest.h>

#include <herd/testing/request.hpp>

#include "ws/handshake.hpp"

namespace {

using herd::testing::RequestBuilder;
using herd::ws::accept_key;
using herd::ws::check_handshake;
using herd::ws::offers_protocol;

constexpr const char* sample_key = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455 1.3

// A valid opening handshake but for the fields a test leaves out (by name).
RequestBuilder handshake(std::string_view without = "") {
    RequestBuilder b("GET", "/chat");
    b.header("Host", "server.example.com");
    if (without != "Upgrade") b.header("Upgrade", "websocket");
    if (without != "Connection") b.header("Connection", "Upgrade");
    if (without != "Sec-WebSocket-Key") b.header("Sec-WebSocket-Key", sample_key);
    if (without != "Sec-WebSocket-Version") b.header("Sec-WebSocket-Version", "13");
    return b;
}

TEST(WsHandshake, AcceptKeyOfTheRfcExample) {
    EXPECT_EQ(accept_key(sample_key), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WsHandshake, ValidRequest) {
    RequestBuilder b = handshake();
    auto c = check_handshake(b.request());
    EXPECT_EQ(c.status, 0) << c.reason;
    EXPECT_EQ(c.reason, "");
    EXPECT_EQ(c.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WsHandshake, TokenListsAcrossFieldsAnyCaseWithWhitespace) {
    RequestBuilder b("GET", "/");
    b.header("upgrade", "h2c")
        .header("UPGRADE", " foo/2 ,\tWebSocket ")
        .header("connection", "keep-alive")
        .header("Connection", "close ,UPGRADE")
        .header("sec-websocket-version", " 13 ")
        .header("sec-websocket-key", sample_key);
    auto c = check_handshake(b.request());
    EXPECT_EQ(c.status, 0) << c.reason;
    EXPECT_EQ(c.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

struct Refusal {
    int status;
    std::string reason;
};

Refusal refusal(RequestBuilder& b) {
    auto c = check_handshake(b.request());
    EXPECT_EQ(c.accept, "");
    return {c.status, c.reason};
}

TEST(WsHandshake, MethodFirst) {
    RequestBuilder b = handshake("Upgrade");  // also broken, checked later
    b.method("POST");
    Refusal r = refusal(b);
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.reason, "method POST: a WebSocket handshake is a GET");
}

TEST(WsHandshake, HttpVersion) {
    RequestBuilder b = handshake("Upgrade");
    b.version(1, 0);
    Refusal r = refusal(b);
    EXPECT_EQ(r.status, 505);
    EXPECT_EQ(r.reason, "HTTP/1.0: a WebSocket handshake needs HTTP/1.1");
}

TEST(WsHandshake, Upgrade) {
    RequestBuilder missing = handshake("Upgrade");
    Refusal r = refusal(missing);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.reason, "Upgrade: missing");

    RequestBuilder wrong = handshake("Upgrade");
    wrong.header("Upgrade", "websockets, h2c");
    r = refusal(wrong);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.reason, "Upgrade: no \"websocket\" token");
}

TEST(WsHandshake, Connection) {
    RequestBuilder missing = handshake("Connection");
    Refusal r = refusal(missing);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.reason, "Connection: missing");

    RequestBuilder wrong = handshake("Connection");
    wrong.header("Connection", "keep-alive, upgraded");
    r = refusal(wrong);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.reason, "Connection: no \"upgrade\" token");
}

TEST(WsHandshake, Version) {
    RequestBuilder missing = handshake("Sec-WebSocket-Version");
    Refusal r = refusal(missing);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.reason, "Sec-WebSocket-Version: missing");

    RequestBuilder old = handshake("Sec-WebSocket-Version");
    old.header("Sec-WebSocket-Version", "8");
    r = refusal(old);
    EXPECT_EQ(r.status, 426);
    EXPECT_EQ(r.reason, "Sec-WebSocket-Version: 8 is not 13");

    RequestBuilder long_value = handshake("Sec-WebSocket-Version");
    long_value.header("Sec-WebSocket-Version", std::string(1000, '9'));
    r = refusal(long_value);
    EXPECT_EQ(r.status, 426);
    EXPECT_EQ(r.reason, "Sec-WebSocket-Version: " + std::string(16, '9') + "... is not 13");
}

TEST(WsHandshake, Key) {
    RequestBuilder missing = handshake("Sec-WebSocket-Key");
    Refusal r = refusal(missing);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.reason, "Sec-WebSocket-Key: missing");

    RequestBuilder twice = handshake();
    twice.header("Sec-WebSocket-Key", sample_key);
    r = refusal(twice);
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(r.reason, "Sec-WebSocket-Key: more than one field");

    for (std::string_view key : {
             std::string_view(""),
             std::string_view("dGhlIHNhbXBsZSBub25jZQ"),     // no padding
             std::string_view("dGhlIHNhbXBsZSBub25jZQ="),    // 23 characters
             std::string_view("dGhlIHNhbXBsZSBub25jZQ==="),  // 25
             std::string_view("dGhlIHNhbXBsZSBub25jZ!=="),   // not base64
             std::string_view("dGhlIHNhbXBs ZSBub25jZQ="),   // a space inside
             std::string_view("dGhlIHNhbXBsZSBub25jZXh4"),   // 18 bytes
             std::string_view("dGhlIHNhbXBsZSBub25j===="),   // padding too long
         }) {
        RequestBuilder b = handshake("Sec-WebSocket-Key");
        b.header("Sec-WebSocket-Key", key);
        r = refusal(b);
        EXPECT_EQ(r.status, 400) << key;
        EXPECT_EQ(r.reason, "Sec-WebSocket-Key: not the base64 of 16 bytes") << key;
    }
}

TEST(WsHandshake, OffersProtocol) {
    RequestBuilder b = handshake();
    b.header("Sec-WebSocket-Protocol", "chat, superchat").header("sec-websocket-protocol", " v2 ");
    const herd::Request& req = b.request();
    EXPECT_TRUE(offers_protocol(req, "chat"));
    EXPECT_TRUE(offers_protocol(req, "superchat"));
    EXPECT_TRUE(offers_protocol(req, "v2"));
    EXPECT_FALSE(offers_protocol(req, "Chat"));  // case-sensitive
    EXPECT_FALSE(offers_protocol(req, "super"));
    EXPECT_FALSE(offers_protocol(req, ""));

    RequestBuilder none = handshake();
    EXPECT_FALSE(offers_protocol(none.request(), "chat"));
}

}  // namespace
