// Unit tests of the inventory plugin with herd's test kit: no server, no sockets, no sleeps.
// The kit's loop runs on a manual clock: advance() moves it and fires what falls due.
#include <herd/testing.hpp>

#include <gtest/gtest.h>

#include "inventory.hpp"

namespace {

using namespace std::chrono_literals;
using herd::testing::Harness;
using herd::testing::RequestBuilder;

herd::testing::Options options() {
    return {.config = {{"lookup_ms", 50},
                       {"wait_ms", 1000},
                       {"tick_ms", 100},
                       {"stock", {{"apple", 3}, {"pear", 0}}}}};
}

nlohmann::json json_body(const herd::testing::Result& r) {
    return nlohmann::json::parse(r.body);
}

TEST(Lookup, AnswersOnceTheBackendHas) {
    Harness h(options());
    h.load<inventory::Inventory>();
    auto& call = h.start(RequestBuilder("GET", "/items/apple"));
    h.loop().advance(49ms);
    EXPECT_FALSE(call.result().answered);
    h.loop().advance(1ms);
    auto r = call.result();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("Content-Type"), "application/json");
    EXPECT_EQ(json_body(r), (nlohmann::json{{"item", "apple"}, {"count", 3}}));
}

TEST(Lookup, AnUnknownItemIs404) {
    Harness h(options());
    h.load<inventory::Inventory>();
    auto& call = h.start(RequestBuilder("GET", "/items/plum"));
    h.loop().advance(50ms);
    EXPECT_EQ(call.result().status, 404);
}

TEST(Lookup, TheClientGoingAwayCancelsIt) {
    Harness h(options());
    h.load<inventory::Inventory>();
    auto& call = h.start(RequestBuilder("GET", "/items/apple"));
    h.loop().advance(10ms);
    call.client_gone();
    EXPECT_FALSE(call.result().answered);
    EXPECT_TRUE(call.result().done);  // the coroutine ended with herd::Cancelled
    EXPECT_TRUE(h.context().logged("lookup of apple cancelled"));
    EXPECT_EQ(h.loop().pending(), 0u);  // its timer is gone
}

TEST(Wait, ARestockAnswersTheWaiters) {
    Harness h(options());
    h.load<inventory::Inventory>();
    auto& first = h.start(RequestBuilder("GET", "/items/pear/wait"));
    auto& second = h.start(RequestBuilder("GET", "/items/pear/wait"));
    h.loop().advance(500ms);
    EXPECT_FALSE(first.result().answered);

    auto posted = h.run(RequestBuilder("POST", "/items/pear").body("2"));
    EXPECT_EQ(json_body(posted)["count"], 2);
    for (auto* call : {&first, &second}) {
        EXPECT_EQ(call->result().status, 200);
        EXPECT_EQ(json_body(call->result())["count"], 2);
    }
    EXPECT_EQ(h.loop().pending(), 0u);  // their timers were cancelled
}

TEST(Wait, NoRestockIs204AfterWaitMs) {
    Harness h(options());
    h.load<inventory::Inventory>();
    auto& call = h.start(RequestBuilder("GET", "/items/pear/wait"));
    h.loop().advance(1s);
    EXPECT_EQ(call.result().status, 204);
    EXPECT_EQ(h.run(RequestBuilder("GET", "/items/apple/wait")).status, 200);  // in stock
}

TEST(Wait, AWaiterThatLeftIsForgotten) {
    Harness h(options());
    h.load<inventory::Inventory>();
    auto& call = h.start(RequestBuilder("GET", "/items/pear/wait"));
    call.client_gone();
    EXPECT_TRUE(call.result().done);
    EXPECT_EQ(h.loop().pending(), 0u);
    EXPECT_EQ(h.run(RequestBuilder("POST", "/items/pear").body("1")).status, 200);
    EXPECT_FALSE(call.result().answered);
}

TEST(Restock, RefusesWhatIsNotANumber) {
    Harness h(options());
    h.load<inventory::Inventory>();
    EXPECT_EQ(h.run(RequestBuilder("POST", "/items/pear").body("many")).status, 400);
    EXPECT_EQ(h.run(RequestBuilder("DELETE", "/items/pear")).status, 405);
    EXPECT_EQ(h.run(RequestBuilder("GET", "/nothing")).status, 404);
}

TEST(Events, TheStockNowAndEveryTick) {
    Harness h(options());
    h.load<inventory::Inventory>();
    auto& call = h.start(RequestBuilder("GET", "/events?count=3"));
    const std::string first = "event: stock\nid: 0\ndata: {\"apple\":3,\"pear\":0}\n\n";
    EXPECT_EQ(call.result().header("Content-Type"), "text/event-stream; charset=utf-8");
    EXPECT_EQ(call.result().body, first);
    h.run(RequestBuilder("POST", "/items/pear").body("5"));
    h.loop().advance(200ms);
    auto r = call.result();
    EXPECT_TRUE(r.ended);
    EXPECT_EQ(r.body, first +
                          "event: stock\nid: 1\ndata: {\"apple\":3,\"pear\":5}\n\n"
                          "event: stock\nid: 2\ndata: {\"apple\":3,\"pear\":5}\n\n");
}

TEST(Events, ASlowClientIsWaitedFor) {
    auto slow = options();
    slow.high_water = 40;  // one event fills it
    slow.low_water = 0;
    slow.client_reads = false;
    Harness h(slow);
    h.load<inventory::Inventory>();
    auto& call = h.start(RequestBuilder("GET", "/events"));
    h.loop().advance(1s);  // no tick while the first event is unread
    EXPECT_EQ(call.result().body.find("id: 1"), std::string::npos);
    call.client_read();
    h.loop().advance(100ms);
    EXPECT_NE(call.result().body.find("id: 1"), std::string::npos);
    call.client_gone();  // an endless stream ends when the client goes
    EXPECT_TRUE(call.result().done);
}

}  // namespace
