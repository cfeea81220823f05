// herd/testing.hpp, the plugin author's test kit, with a plugin that streams: backpressure,
// a client gone or cut off, server-sent events, a stream that fails or is stopped, as the
// worker's Connection streams.
#include <herd/testing.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
using herd::testing::Harness;
using herd::testing::RequestBuilder;
using herd::testing::Result;

// /stream?n: n pieces of 10 bytes, waiting for the client whenever write() says full.
// /flood: writes without heeding backpressure. /sse: three events 1 s apart (a keep-alive
// comment every 1.2 s), then ends.
// /begin-send: begins, then send() (which ends the stream). /stream-throw: throws mid-stream.
class Streams final : public herd::CoroutinePlugin {
  public:
    void on_start(herd::Context& ctx) override { loop_ = &ctx.loop(); }
    herd::Task<> serve(herd::Responder& r) override {
        std::string path(r.request().subpath());
        if (path == "/stream") {
            int n = std::stoi(std::string(r.request().query()));
            for (int i = 0; i < n; ++i) {
                ++written;
                if (!r.write(std::string(9, static_cast<char>('a' + i)) + "\n")) {
                    ++waits;
                    auto room = r.drained();
                    co_await room;
                }
            }
            r.end();
        } else if (path == "/flood") {
            for (int i = 0; i < 100; ++i) {
                (void)r.write(std::string(100, 'x'));  // whatever it says
                auto turn = loop_->yield();
                co_await turn;
            }
        } else if (path == "/sse") {
            herd::EventStream events(r, 1200ms);
            for (int i = 0; i < 3; ++i) {
                auto nap = loop_->sleep_for(1s);
                co_await nap;
                events.send("line one\nline two", "tick", std::to_string(i));
            }
            r.end();
        } else if (path == "/begin-send") {
            r.response().set_header("Content-Type", "text/plain");
            r.response().set_body("head ");
            r.begin();
            r.write("and more");
            r.send();
        } else if (path == "/stream-throw") {
            r.write("part");
            auto nap = loop_->sleep_for(1ms);
            co_await nap;
            throw std::runtime_error("mid-stream");
        }
    }
    int written = 0;
    int waits = 0;

  private:
    herd::Loop* loop_ = nullptr;
};

TEST(Streams, BackpressureWaitsForTheClient) {
    Harness h({.high_water = 25, .low_water = 10, .client_reads = false});
    auto& plugin = h.load<Streams>();
    auto& call = h.start(RequestBuilder("GET", "/stream?5"));
    h.loop().run_until_idle();
    // 30 bytes written, above the mark: the coroutine waits for the client.
    EXPECT_EQ(plugin.written, 3);
    EXPECT_EQ(plugin.waits, 1);
    EXPECT_EQ(call.result().unsent, 30u);
    EXPECT_TRUE(call.result().streamed);
    call.client_read(15);  // 15 unsent: still above the low-water mark
    h.loop().run_until_idle();
    EXPECT_EQ(plugin.written, 3);
    call.client_read(5);  // 10: resumes
    h.loop().run_until_idle();
    EXPECT_EQ(plugin.written, 5);
    call.client_read();
    h.loop().run_until_idle();
    Result r = call.result();
    EXPECT_TRUE(r.ended);
    EXPECT_TRUE(r.done);
    EXPECT_EQ(r.body, "aaaaaaaaa\nbbbbbbbbb\nccccccccc\nddddddddd\neeeeeeeee\n");
    EXPECT_EQ(r.unsent, 0u);
}

TEST(Streams, ClientGoneWhileWaitingForRoom) {
    Harness h({.high_water = 15, .low_water = 5, .client_reads = false});
    auto& plugin = h.load<Streams>();
    auto& call = h.start(RequestBuilder("GET", "/stream?5"));
    h.loop().run_until_idle();
    EXPECT_EQ(plugin.waits, 1);
    call.client_gone();
    Result r = call.result();
    EXPECT_TRUE(r.cancelled);
    EXPECT_FALSE(r.ended);
    EXPECT_TRUE(r.done);
    EXPECT_EQ(plugin.written, 2);
}

TEST(Streams, AFastClientReadsAsItGoes) {
    Harness h;
    auto& plugin = h.load<Streams>();
    Result r = h.run(RequestBuilder("GET", "/stream?5"));
    EXPECT_TRUE(r.ended);
    EXPECT_EQ(plugin.written, 5);
    EXPECT_EQ(plugin.waits, 0);
}

TEST(Streams, WritingOnRegardlessIsCutOff) {
    Harness h({.high_water = 100, .low_water = 10, .client_reads = false});
    h.load<Streams>();
    auto& call = h.start(RequestBuilder("GET", "/flood"));
    h.loop().run_until_idle();
    Result r = call.result();
    EXPECT_TRUE(r.cancelled);
    EXPECT_EQ(r.cancel_reason, "the client read the stream too slowly");
    EXPECT_FALSE(r.ended);
    EXPECT_TRUE(r.done);
}

TEST(Streams, EventStreamFramesEventsAndKeepsAlive) {
    Harness h;
    h.load<Streams>();
    auto& call = h.start(RequestBuilder("GET", "/sse"));
    EXPECT_EQ(call.result().header("Content-Type"), "text/event-stream; charset=utf-8");
    EXPECT_EQ(call.result().header("Cache-Control"), "no-cache");
    h.loop().advance(1s);
    EXPECT_EQ(call.result().body, "event: tick\nid: 0\ndata: line one\ndata: line two\n\n");
    h.loop().advance(200ms);  // 1.2 s: the keep-alive comment
    EXPECT_EQ(call.result().body.substr(call.result().body.size() - 3), ":\n\n");
    h.loop().advance(2s);
    Result r = call.result();
    EXPECT_TRUE(r.ended);
    EXPECT_TRUE(r.done);
    EXPECT_EQ(r.body,
              "event: tick\nid: 0\ndata: line one\ndata: line two\n\n"
              ":\n\n"
              "event: tick\nid: 1\ndata: line one\ndata: line two\n\n"
              ":\n\n"
              "event: tick\nid: 2\ndata: line one\ndata: line two\n\n");
    EXPECT_EQ(h.loop().pending(), 0u);
}

TEST(Streams, SendAfterBeginEndsTheStream) {
    Harness h;
    h.load<Streams>();
    Result r = h.run(RequestBuilder("GET", "/begin-send"));
    EXPECT_TRUE(r.streamed);
    EXPECT_TRUE(r.ended);
    EXPECT_EQ(r.body, "head and more");
}

TEST(Streams, AnExceptionMidStreamCutsTheStream) {
    Harness h;
    h.load<Streams>();
    auto& call = h.start(RequestBuilder("GET", "/stream-throw"));
    h.loop().advance(1ms);
    Result r = call.result();
    EXPECT_EQ(r.status, 200);  // the head was out
    EXPECT_EQ(r.body, "part");
    EXPECT_FALSE(r.ended);
    EXPECT_TRUE(r.cancelled);
    EXPECT_NE(r.failure.find("mid-stream"), std::string::npos);
}

TEST(Streams, StoppingEndsAStreamCleanly) {
    Harness h;
    h.load<Streams>();
    auto& call = h.start(RequestBuilder("GET", "/sse"));
    h.stop();
    EXPECT_TRUE(call.result().ended);
    EXPECT_TRUE(call.result().cancelled);
}

}  // namespace
