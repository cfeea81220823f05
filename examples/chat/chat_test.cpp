// Unit tests of the chat plugin with herd's test kit: the sockets are FakeWebSockets (the
// test plays the client) and what the plugin publishes is read from FakeContext::published.
#include <herd/testing.hpp>

#include <gtest/gtest.h>

#include "chat.hpp"

namespace {

using herd::testing::FakeWebSocket;
using herd::testing::Harness;
using herd::testing::RequestBuilder;

RequestBuilder handshake(const std::string& target) {
    return RequestBuilder("GET", target)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==");
}

nlohmann::json json_of(std::string_view text) {
    return nlohmann::json::parse(text);
}

// The plugin in worker 3, and the events it published.
struct Room {
    Room() : h(herd::testing::Options{.worker_id = 3}) { h.load<chat::Chat>(); }

    // A socket that joined (the test fails if the handshake was refused).
    FakeWebSocket& join(const std::string& query) {
        herd::testing::Call& call = h.start(handshake("/ws?" + query));
        h.loop().run_until_idle();
        EXPECT_EQ(call.result().status, 101) << call.result().body;
        if (call.websocket() == nullptr) throw std::runtime_error("not accepted: " + query);
        return *call.websocket();
    }
    std::vector<nlohmann::json> events() const {
        std::vector<nlohmann::json> out;
        for (const auto& p : h.context().published()) {
            EXPECT_FALSE(p.binary);
            out.push_back(json_of(p.data));
        }
        return out;
    }
    std::vector<std::string> topics() const {
        std::vector<std::string> out;
        for (const auto& p : h.context().published()) out.push_back(p.topic);
        return out;
    }
    mutable Harness h;
};

TEST(Names, OneTo32OfTheSafeCharacters) {
    EXPECT_TRUE(chat::valid_name("a"));
    EXPECT_TRUE(chat::valid_name("Room_1-b"));
    EXPECT_TRUE(chat::valid_name(std::string(32, 'x')));
    EXPECT_FALSE(chat::valid_name(""));
    EXPECT_FALSE(chat::valid_name(std::string(33, 'x')));
    for (std::string bad :
         std::vector<std::string>{"a b", "a<b", "a.b", "é", "a\"b", "a/b", std::string("a\0b", 3)})
        EXPECT_FALSE(chat::valid_name(bad)) << bad;
}

TEST(Query, ValuesArePercentDecoded) {
    EXPECT_EQ(chat::query_value("room=a%2Db&name=x", "room"), "a-b");
    EXPECT_EQ(chat::query_value("room=a+b", "room"), "a b");
    EXPECT_EQ(chat::query_value("roomy=1&room=2&room=3", "room"), "2");  // the first one
    EXPECT_EQ(chat::query_value("room", "room"), "");
    EXPECT_EQ(chat::query_value("name=x", "room"), std::nullopt);
    EXPECT_EQ(chat::query_value("room=%4", "room"), std::nullopt);
    EXPECT_EQ(chat::query_value("room=%zz", "room"), std::nullopt);
}

TEST(Page, IsServedAtTheRoot) {
    Room r;
    auto res = r.h.run(RequestBuilder("GET", "/?room=r&name=alice"));
    EXPECT_EQ(res.status, 200);
    EXPECT_EQ(res.header("Content-Type"), "text/html; charset=utf-8");
    EXPECT_NE(res.body.find("<title>herd chat</title>"), std::string::npos);
    EXPECT_NE(res.body.find("textContent"), std::string::npos);
    EXPECT_EQ(res.body.find("innerHTML"), std::string::npos);
    EXPECT_EQ(r.h.run(RequestBuilder("GET", "/other")).status, 404);
    auto post = r.h.run(RequestBuilder("POST", "/").body("x"));
    EXPECT_EQ(post.status, 405);
    EXPECT_EQ(post.header("Allow"), "GET, HEAD");
}

TEST(Join, BadRoomsAndNicksAre400BeforeTheHandshake) {
    Room r;
    for (const std::string& query : std::vector<std::string>{
             "name=alice", "room=r", "room=&name=alice", "room=r&name=", "room=a+b&name=alice",
             "room=r&name=%3Cscript%3E", "room=r&name=" + std::string(33, 'n'),
             "room=" + std::string(33, 'r') + "&name=alice", "room=r%zz&name=alice"}) {
        herd::testing::Call& call = r.h.start(handshake("/ws?" + query));
        r.h.loop().run_until_idle();
        EXPECT_EQ(call.result().status, 400) << query;
        EXPECT_NE(call.result().body.find("1 to 32 characters"), std::string::npos) << query;
        EXPECT_EQ(call.websocket(), nullptr) << query;
    }
    EXPECT_TRUE(r.h.context().published().empty());
}

TEST(Join, APlainRequestIs426) {
    Room r;
    auto res = r.h.run(RequestBuilder("GET", "/ws?room=r&name=alice"));
    EXPECT_EQ(res.status, 426);
    EXPECT_EQ(res.header("Upgrade"), "websocket");
    EXPECT_TRUE(r.h.context().published().empty());
}

TEST(Join, SubscribesWelcomesAndTellsTheRoom) {
    Room r;
    FakeWebSocket& ws = r.join("room=r-1&name=alice");
    EXPECT_EQ(ws.topics(), std::vector<std::string>{"room:r-1"});
    ASSERT_EQ(ws.sent().size(), 1u);
    EXPECT_EQ(
        json_of(ws.sent()[0].data),
        (nlohmann::json{{"type", "welcome"}, {"room", "r-1"}, {"name", "alice"}, {"worker", 3}}));
    EXPECT_EQ(r.topics(), std::vector<std::string>{"room:r-1"});
    nlohmann::json join = {{"type", "join"}, {"room", "r-1"}, {"from", "alice"}, {"worker", 3}};
    EXPECT_EQ(r.events(), std::vector<nlohmann::json>{join});
}

TEST(Messages, ArePublishedToTheRoomAsTheyWereWritten) {
    Room r;
    FakeWebSocket& ws = r.join("room=r&name=alice");
    std::string text = "<b>hi</b> & \"quotes\" \xC3\xA9\n";
    ws.client_sends(text);
    ws.client_sends("");  // nothing to tell
    ASSERT_EQ(r.events().size(), 2u);
    EXPECT_EQ(
        r.events()[1],
        (nlohmann::json{
            {"type", "message"}, {"room", "r"}, {"from", "alice"}, {"text", text}, {"worker", 3}}));
    EXPECT_EQ(r.topics()[1], "room:r");
    EXPECT_EQ(ws.sent().size(), 1u);  // the plugin sends nothing itself: herd delivers the topic
    EXPECT_TRUE(ws.open());
}

TEST(Messages, TheLongestIs2000Bytes) {
    Room r;
    FakeWebSocket& ws = r.join("room=r&name=alice");
    ws.client_sends(std::string(chat::max_text_bytes, 'x'));
    EXPECT_TRUE(ws.open());
    EXPECT_EQ(r.events().back()["text"].get<std::string>().size(), 2000u);

    ws.client_sends(std::string(chat::max_text_bytes + 1, 'x'));
    EXPECT_FALSE(ws.open());
    r.h.loop().run_until_idle();  // the client answers the plugin's close; on_close runs
    EXPECT_TRUE(ws.closed());
    EXPECT_EQ(ws.close_code(), 4000);
    EXPECT_EQ(ws.close_reason(), "a message is at most 2000 bytes");
    EXPECT_FALSE(ws.held());
    ASSERT_EQ(r.events().size(), 3u);  // join, the 2000 bytes, leave
    EXPECT_EQ(r.events()[2],
              (nlohmann::json{{"type", "leave"}, {"room", "r"}, {"from", "alice"}, {"worker", 3}}));
}

TEST(Messages, ABinaryOneCloses4001) {
    Room r;
    FakeWebSocket& ws = r.join("room=r&name=alice");
    ws.client_sends("\x01\x02", true);
    r.h.loop().run_until_idle();
    EXPECT_EQ(ws.close_code(), 4001);
    EXPECT_EQ(r.events().back()["type"], "leave");
}

TEST(Leave, TheRoomIsToldWhenASocketCloses) {
    Room r;
    FakeWebSocket& alice = r.join("room=r&name=alice");
    FakeWebSocket& bob = r.join("room=r&name=bob");
    alice.client_closes(1001, "going away");
    EXPECT_FALSE(alice.held());
    bob.client_gone();
    EXPECT_FALSE(bob.held());
    auto events = r.events();
    ASSERT_EQ(events.size(), 4u);
    EXPECT_EQ(events[2]["type"], "leave");
    EXPECT_EQ(events[2]["from"], "alice");
    EXPECT_EQ(events[3]["type"], "leave");
    EXPECT_EQ(events[3]["from"], "bob");
}

TEST(Leave, StoppingClosesTheSockets) {
    Room r;
    FakeWebSocket& ws = r.join("room=r&name=alice");
    r.h.stop();
    EXPECT_TRUE(ws.closed());
    EXPECT_EQ(ws.close_code(), 1000);
    EXPECT_FALSE(ws.held());
}

}  // namespace
