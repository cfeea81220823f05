// herd/testing.hpp's WebSockets: a plugin accepts a handshake (Call::websocket() is the
// FakeWebSocket it got), the test plays the client, and what the plugin sent and published is
// there to check.
#include <herd/testing.hpp>

#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <string>

namespace {

using herd::testing::Harness;
using herd::testing::RequestBuilder;

RequestBuilder handshake(std::string target) {
    RequestBuilder b("GET", target);
    b.header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("Sec-WebSocket-Version", "13");
    return b;
}

// Echoes in upper case, publishes "!"-prefixed messages to "news", closes on "bye".
class Shout final : public herd::Plugin {
  public:
    void on_start(herd::Context& ctx) override { ctx_ = &ctx; }
    void respond(herd::Responder r) override {
        if (!herd::is_websocket_request(r.request())) {
            r.response().set_status(426);
            r.send();
            return;
        }
        herd::WebSocket ws = r.accept_websocket();
        if (!ws) return;
        std::uint64_t id = ws.id();
        ws.subscribe("news");
        ws.on_message([this, id](const herd::WsMessage& m) {
            herd::WebSocket& self = sockets_.at(id);
            if (m.data == "bye") return self.close(4000, "asked to");
            if (!m.data.empty() && m.data[0] == '!') {
                ctx_->publish("news", m.data.substr(1), false);
                return;
            }
            std::string up(m.data);
            for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            self.send(up, m.binary);
        });
        ws.on_close([this, id](const herd::WsClose& c) {
            closes.push_back(c.code);
            sockets_.erase(id);
        });
        sockets_.emplace(id, std::move(ws));
    }

    std::vector<int> closes;

  private:
    herd::Context* ctx_ = nullptr;
    std::map<std::uint64_t, herd::WebSocket> sockets_;
};

TEST(TestingKitWebSocketTest, AcceptedSocketEchoesPublishesAndCloses) {
    Harness h;
    Shout& plugin = h.load<Shout>();
    auto& call = h.start(handshake("/chat"));
    EXPECT_EQ(call.result().status, 101);
    herd::testing::FakeWebSocket* ws = call.websocket();
    ASSERT_NE(ws, nullptr);
    EXPECT_TRUE(ws->subscribed("news"));

    ws->client_sends("hello");
    ws->client_sends(std::string("\x01\x02", 2), true);
    ASSERT_EQ(ws->sent().size(), 2u);
    EXPECT_EQ(ws->sent()[0].data, "HELLO");
    EXPECT_TRUE(ws->sent()[1].binary);

    ws->client_sends("!breaking");
    ASSERT_EQ(h.context().published().size(), 1u);
    EXPECT_EQ(h.context().published()[0].topic, "news");
    EXPECT_EQ(h.context().published()[0].data, "breaking");

    ws->client_sends("bye");
    EXPECT_FALSE(ws->open());
    EXPECT_TRUE(plugin.closes.empty());  // on_close waits for the client's answer
    h.loop().run_until_idle();
    EXPECT_TRUE(ws->closed());
    EXPECT_EQ(ws->close_code(), 4000);
    EXPECT_EQ(ws->close_reason(), "asked to");
    EXPECT_EQ(plugin.closes, std::vector<int>{4000});
    EXPECT_FALSE(ws->held());  // the plugin let go in on_close
}

TEST(TestingKitWebSocketTest, TheClientClosingRunsOnClose) {
    Harness h;
    Shout& plugin = h.load<Shout>();
    auto& call = h.start(handshake("/chat"));
    call.websocket()->client_closes(1001);
    EXPECT_EQ(plugin.closes, std::vector<int>{1001});
    EXPECT_FALSE(call.websocket()->held());
}

TEST(TestingKitWebSocketTest, NotAHandshakeIsTheHandlersToAnswer) {
    Harness h;
    h.load<Shout>();
    auto r = h.run(RequestBuilder("GET", "/chat"));
    EXPECT_EQ(r.status, 426);
    // An Upgrade without the rest of the handshake: herd (the kit) answers 400.
    RequestBuilder half("GET", "/chat");
    half.header("Upgrade", "websocket");
    auto& call = h.start(std::move(half));
    EXPECT_EQ(call.result().status, 400);
    EXPECT_EQ(call.websocket(), nullptr);
}

TEST(TestingKitWebSocketTest, TextMustBeUtf8) {
    herd::testing::FakeLoop loop;
    herd::testing::FakeWebSocket ws(loop, 1);
    EXPECT_THROW(ws.send("\xff", false), std::invalid_argument);
    EXPECT_TRUE(ws.send("\xff", true));
    EXPECT_THROW(ws.close(1006, ""), std::invalid_argument);
    EXPECT_TRUE(herd::testing::is_utf8("\xe2\x82\xac"));
    EXPECT_FALSE(herd::testing::is_utf8("\xed\xa0\x80"));  // a surrogate
    EXPECT_FALSE(herd::testing::is_utf8("\xc0\xaf"));      // overlong
    EXPECT_FALSE(herd::testing::is_utf8("\xe2\x82"));      // cut short
}

}  // namespace
