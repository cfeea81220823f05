// herd/testing.hpp, the plugin author's test kit, driving small plugins of each style: the
// kit must answer, cancel, stream and fail as the worker's Connection and PluginLoop do.
// Here the request builder, each handler style and the fakes on their own; the streams are in
// testing_kit_stream_test.
#include <herd/testing.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

// The bundled hello plugin, at source level (its class is local to that file).
#include "../../plugins/hello/hello.cpp"

namespace {

using namespace std::chrono_literals;
using herd::testing::Harness;
using herd::testing::RequestBuilder;
using herd::testing::Result;

// ---- The request builder

TEST(RequestBuilder, FillsTheRequestAsTheParserDoes) {
    RequestBuilder b("POST", "/api/users/7?x=1&y=2");
    b.header("Content-Type", "application/json").header("X-Two", "a").body("{}");
    const herd::Request& r = b.request("/api");
    EXPECT_EQ(r.method(), "POST");
    EXPECT_EQ(r.target(), "/api/users/7?x=1&y=2");
    EXPECT_EQ(r.path(), "/api/users/7");
    EXPECT_EQ(r.query(), "x=1&y=2");
    EXPECT_EQ(r.subpath(), "/users/7");
    EXPECT_EQ(r.headers().size(), 2u);
    EXPECT_EQ(r.header("content-type"), "application/json");
    EXPECT_EQ(r.body(), "{}");
    EXPECT_TRUE(r.keep_alive());
    EXPECT_EQ(b.request("/api/users/7").subpath(), "/");
}

TEST(RequestBuilder, AbsoluteFormVersionsAndRouting) {
    RequestBuilder b("GET", "http://example.com/a/b?q");
    EXPECT_EQ(b.request().path(), "/a/b");
    EXPECT_EQ(b.request().query(), "q");
    b.version(1, 0);
    EXPECT_FALSE(b.request().keep_alive());
    b.header("Connection", "keep-alive");
    EXPECT_TRUE(b.request().keep_alive());
    EXPECT_EQ(b.request().http_minor(), 0);
    EXPECT_FALSE(RequestBuilder("GET", "/").header("Connection", "close").request().keep_alive());
    // herd would not route /apix to a plugin at /api.
    EXPECT_THROW(RequestBuilder("GET", "/apix").request("/api"), std::invalid_argument);
}

// ---- Synchronous handlers

class Echo final : public herd::Plugin {
  public:
    void handle(const herd::Request& request, herd::Response& response) override {
        if (request.subpath() == "/throw") throw std::runtime_error("echo: asked to throw");
        if (request.subpath() == "/bad") response.set_header("Content-Length", "3");
        response.set_header("Content-Type", "text/plain");
        response.set_body(std::string(request.method()) + " " + std::string(request.subpath()) +
                          " " + std::string(request.body()));
    }
};

TEST(Sync, AnswersAtOnce) {
    Harness h({.mount = "/echo"});
    h.load<Echo>();
    Result r = h.run(RequestBuilder("PUT", "/echo/x").body("data"));
    EXPECT_TRUE(r.answered);
    EXPECT_TRUE(r.ended);
    EXPECT_TRUE(r.done);
    EXPECT_FALSE(r.streamed);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("content-type"), "text/plain");
    EXPECT_EQ(r.body, "PUT /x data");
    EXPECT_TRUE(r.failure.empty());
    // HEAD: the same head, no body.
    Result head = h.run(RequestBuilder("HEAD", "/echo"));
    EXPECT_EQ(head.status, 200);
    EXPECT_EQ(head.body, "");
}

TEST(Sync, AnExceptionIsAPluginFailureAnd500) {
    Harness h;
    h.load<Echo>();
    Result r = h.run(RequestBuilder("GET", "/throw"));
    EXPECT_EQ(r.status, 500);
    EXPECT_EQ(r.body, "Internal Server Error\n");
    EXPECT_NE(r.failure.find("std::runtime_error: echo: asked to throw"), std::string::npos)
        << r.failure;
    EXPECT_EQ(h.loop().failures().size(), 1u);
    EXPECT_FALSE(r.dropped);
}

TEST(Sync, AnInvalidResponseIs500) {
    Harness h;
    h.load<Echo>();
    Result r = h.run(RequestBuilder("GET", "/bad"));
    EXPECT_EQ(r.status, 500);
    EXPECT_NE(r.herd_error.find("Content-Length"), std::string::npos) << r.herd_error;
    EXPECT_TRUE(r.failure.empty());  // logged by herd, not a plugin failure
}

TEST(Hello, GreetsAndRefusesOtherMethods) {
    Harness h;
    h.load<Hello>();
    Result r = h.run(RequestBuilder("GET", "/"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "Hello, World!");
    Result post = h.run(RequestBuilder("POST", "/"));
    EXPECT_EQ(post.status, 405);
    EXPECT_EQ(post.header("Allow"), "GET, HEAD");

    Harness configured({.config = {{"greeting", "Hi"}}});
    configured.load<Hello>();
    EXPECT_EQ(configured.run(RequestBuilder()).body, "Hi");

    Harness bad({.config = {{"greeting", 3}}});
    EXPECT_THROW(bad.load<Hello>(), std::invalid_argument);
}

// ---- Callbacks

// /later?ms: answers after a timer tied to the request. /drop: returns without answering.
// /keep: keeps the responder until the test has it answered (answer()).
class Callbacks final : public herd::Plugin {
  public:
    void on_start(herd::Context& ctx) override { loop_ = &ctx.loop(); }
    void respond(herd::Responder r) override {
        std::string_view path = r.request().subpath();
        if (path == "/drop") return;
        if (path == "/keep") {
            kept_ = std::move(r);
            return;
        }
        r.on_cancel([this] { ++cancelled; });
        herd::Scope& scope = r.scope();
        loop_->after(
            100ms,
            [this, r = std::move(r)]() mutable {
                if (r.request().query() == "throw") throw std::runtime_error("timer threw");
                r.response().set_body("late at " + std::to_string(loop_->now().time_since_epoch() /
                                                                  std::chrono::milliseconds(1)));
                r.send();
            },
            &scope);
    }
    void answer() {
        kept_.response().set_body("kept");
        kept_.send();
    }
    int cancelled = 0;

  private:
    herd::Loop* loop_ = nullptr;
    herd::Responder kept_;
};

TEST(Callbacks, AnswerWhenTheTimerFires) {
    Harness h;
    h.load<Callbacks>();
    auto start = h.loop().now();
    auto& call = h.start(RequestBuilder("GET", "/later"));
    EXPECT_FALSE(call.result().answered);
    h.loop().advance(99ms);
    EXPECT_FALSE(call.result().answered);
    EXPECT_EQ(h.loop().pending(), 1u);
    h.loop().advance(1ms);
    Result r = call.result();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "late at " + std::to_string((start + 100ms).time_since_epoch() /
                                                  std::chrono::milliseconds(1)));
    EXPECT_TRUE(r.done);
    EXPECT_EQ(h.loop().pending(), 0u);
}

TEST(Callbacks, ClientGoneRemovesTheTimerAndRunsOnCancel) {
    Harness h;
    auto& plugin = h.load<Callbacks>();
    auto& call = h.start(RequestBuilder("GET", "/later"));
    call.client_gone();
    EXPECT_EQ(plugin.cancelled, 1);
    EXPECT_EQ(h.loop().pending(), 0u);  // the timer was tied to the request's scope
    h.loop().advance(1s);
    Result r = call.result();
    EXPECT_FALSE(r.answered);
    EXPECT_TRUE(r.cancelled);
    EXPECT_EQ(r.cancel_reason, "the client closed the connection");
    EXPECT_TRUE(r.done);
}

TEST(Callbacks, DroppingTheResponderIs500) {
    Harness h;
    h.load<Callbacks>();
    Result r = h.run(RequestBuilder("GET", "/drop"));
    EXPECT_EQ(r.status, 500);
    EXPECT_TRUE(r.dropped);
    EXPECT_TRUE(r.failure.empty());
}

TEST(Callbacks, AThrowingTimerIsAFailureAndItsResponderIsDropped) {
    Harness h;
    h.load<Callbacks>();
    auto& call = h.start(RequestBuilder("GET", "/later?throw"));
    h.loop().advance(100ms);
    Result r = call.result();
    EXPECT_EQ(r.status, 500);
    EXPECT_TRUE(r.dropped);
    ASSERT_EQ(h.loop().failures().size(), 1u);
    EXPECT_EQ(h.loop().failures()[0], "std::runtime_error: timer threw (in a loop callback)");
}

TEST(Callbacks, AnsweringAfterCancelDoesNothing) {
    Harness h;
    auto& plugin = h.load<Callbacks>();
    auto& call = h.start(RequestBuilder("GET", "/keep"));
    EXPECT_FALSE(call.result().done);
    call.client_gone("gone");
    plugin.answer();  // a late answer: safe, and nothing is sent
    Result r = call.result();
    EXPECT_FALSE(r.answered);
    EXPECT_TRUE(r.done);
    EXPECT_TRUE(h.loop().failures().empty());
}

TEST(Callbacks, TheDeadlineAnswers504) {
    Harness h({.request_timeout = 50ms});
    auto& plugin = h.load<Callbacks>();
    auto& call = h.start(RequestBuilder("GET", "/later"));
    EXPECT_EQ(call.scope().deadline(), h.loop().now() + 50ms);
    h.loop().advance(50ms);
    Result r = call.result();
    EXPECT_EQ(r.status, 504);
    EXPECT_TRUE(r.cancelled);
    EXPECT_EQ(plugin.cancelled, 1);
    EXPECT_EQ(h.loop().pending(), 0u);
}

TEST(Callbacks, StoppingAnswers503) {
    Harness h;
    h.load<Callbacks>();
    auto& call = h.start(RequestBuilder("GET", "/later"));
    h.stop();
    EXPECT_EQ(call.result().status, 503);
    EXPECT_EQ(call.result().cancel_reason, "the worker is stopping");
}

// ---- Coroutines

class Coroutines final : public herd::CoroutinePlugin {
  public:
    void on_start(herd::Context& ctx) override { loop_ = &ctx.loop(); }
    herd::Task<> serve(herd::Responder& r) override {
        std::string path(r.request().subpath());
        try {
            if (path == "/sleep") {
                auto nap = loop_->sleep_for(50ms);
                co_await nap;
                r.response().set_body("rested");
            } else if (path == "/throw") {
                auto nap = loop_->sleep_for(10ms);
                co_await nap;
                throw std::runtime_error("after the nap");
            } else if (path == "/blocking") {
                auto job = loop_->blocking([] { return 6 * 7; });
                int value = co_await job;
                r.response().set_body(std::to_string(value));
            } else if (path == "/sent-early") {
                r.response().set_body("early");
                r.send();
                auto nap = loop_->sleep_for(10ms);
                co_await nap;
                ++after_send;
            }
        } catch (const herd::Cancelled& e) {
            cancelled.push_back(e.what());
            throw;
        }
    }
    std::vector<std::string> cancelled;
    int after_send = 0;

  private:
    herd::Loop* loop_ = nullptr;
};

TEST(Coroutines, ReturningSendsTheResponse) {
    Harness h;
    h.load<Coroutines>();
    auto& call = h.start(RequestBuilder("GET", "/sleep"));
    h.loop().advance(49ms);
    EXPECT_FALSE(call.result().answered);
    h.loop().advance(1ms);
    EXPECT_EQ(call.result().body, "rested");
    EXPECT_TRUE(call.result().done);
    // A coroutine that does not suspend answers within respond().
    Result r = h.run(RequestBuilder("GET", "/nothing"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "");
}

TEST(Coroutines, ClientGoneMidSleepResumesWithCancelled) {
    Harness h;
    auto& plugin = h.load<Coroutines>();
    auto& call = h.start(RequestBuilder("GET", "/sleep"));
    h.loop().advance(20ms);
    call.client_gone();
    ASSERT_EQ(plugin.cancelled.size(), 1u);
    EXPECT_EQ(plugin.cancelled[0], "the client closed the connection");
    Result r = call.result();
    EXPECT_FALSE(r.answered);
    EXPECT_TRUE(r.done);
    EXPECT_TRUE(r.failure.empty());  // Cancelled is the normal end of cancelled work
    EXPECT_EQ(h.loop().pending(), 0u);
}

TEST(Coroutines, TheDeadlineCancelsTheSleep) {
    Harness h({.request_timeout = 30ms});
    auto& plugin = h.load<Coroutines>();
    auto& call = h.start(RequestBuilder("GET", "/sleep"));
    h.loop().advance(1s);
    EXPECT_EQ(call.result().status, 504);
    EXPECT_EQ(plugin.cancelled.size(), 1u);
}

TEST(Coroutines, AnExceptionAfterAResumeIs500) {
    Harness h;
    h.load<Coroutines>();
    auto& call = h.start(RequestBuilder("GET", "/throw"));
    h.loop().advance(10ms);
    Result r = call.result();
    EXPECT_EQ(r.status, 500);
    EXPECT_NE(r.failure.find("std::runtime_error: after the nap"), std::string::npos) << r.failure;
    EXPECT_FALSE(r.dropped);
    EXPECT_TRUE(r.done);
}

TEST(Coroutines, BlockingWorkRunsInTheNextIteration) {
    Harness h;
    h.load<Coroutines>();
    EXPECT_EQ(h.run(RequestBuilder("GET", "/blocking")).body, "42");
}

TEST(Coroutines, SendingEarlyLetsTheCoroutineRunOn) {
    Harness h;
    auto& plugin = h.load<Coroutines>();
    auto& call = h.start(RequestBuilder("GET", "/sent-early"));
    EXPECT_EQ(call.result().body, "early");
    EXPECT_FALSE(call.result().done);
    h.loop().advance(10ms);
    EXPECT_TRUE(call.result().done);
    EXPECT_EQ(plugin.after_send, 1);
}

// ---- The loop, the state and the context on their own

herd::Task<> ticker(herd::Loop& loop, std::vector<int>& ticks) {
    for (int i = 0;; ++i) {
        auto nap = loop.sleep_for(10ms);
        co_await nap;
        ticks.push_back(i);
    }
}

TEST(FakeLoop, TimersFireInOrderOnTheManualClock) {
    herd::testing::FakeLoop loop;
    auto t0 = loop.now();
    std::vector<std::string> seen;
    loop.after(20ms, [&] { seen.push_back("20 at " + std::to_string((loop.now() - t0) / 1ms)); });
    loop.after(10ms, [&] { seen.push_back("10 at " + std::to_string((loop.now() - t0) / 1ms)); });
    auto gone = loop.after(15ms, [&] { seen.push_back("cancelled"); });
    loop.post([&] { seen.push_back("posted"); });
    EXPECT_TRUE(loop.cancel(gone));
    EXPECT_FALSE(loop.cancel(gone));
    EXPECT_TRUE(seen.empty());  // never inside the call that registered
    loop.advance(30ms);
    EXPECT_EQ(seen, (std::vector<std::string>{"posted", "10 at 10", "20 at 20"}));
    EXPECT_EQ(loop.now(), t0 + 30ms);
    EXPECT_EQ(loop.pending(), 0u);
}

TEST(FakeLoop, SpawnedTasksRunUntilTheLoopStops) {
    herd::testing::FakeLoop loop;
    std::vector<int> ticks;
    loop.spawn(ticker(loop, ticks));
    EXPECT_EQ(loop.pending(), 1u);
    loop.advance(35ms);
    EXPECT_EQ(ticks, (std::vector<int>{0, 1, 2}));
    loop.stop();  // the plugin's scope is cancelled: the ticker ends with Cancelled
    EXPECT_EQ(loop.pending(), 0u);
    EXPECT_TRUE(loop.failures().empty());
    loop.post([&] { ticks.push_back(-1); });  // dropped after the stop
    loop.run_until_idle();
    EXPECT_EQ(ticks.size(), 3u);
}

TEST(FakeLoop, ScopesAndFailures) {
    herd::testing::FakeLoop loop;
    herd::BasicScope scope(loop.scope());
    int fired = 0;
    loop.after(
        5ms, [&] { ++fired; }, &scope);
    scope.cancel("done with it");
    loop.after(
        5ms, [&] { ++fired; }, &scope);  // a cancelled scope: dropped at once
    loop.post([] { throw std::logic_error("oops"); });
    loop.post([] { throw herd::Cancelled("not a failure"); });
    loop.advance(10ms);
    EXPECT_EQ(fired, 0);
    EXPECT_EQ(loop.failures(),
              std::vector<std::string>{"std::logic_error: oops (in a loop callback)"});
    EXPECT_THROW(loop.watch(0, herd::Loop::readable, [](unsigned) {}), std::logic_error);
}

TEST(FakeContext, RecordsAndKeepsState) {
    herd::testing::FakeContext ctx(nlohmann::json{{"name", "x"}});
    ctx.set_mount("/api");
    ctx.log().info("hello there");
    EXPECT_TRUE(ctx.logged("hello"));
    EXPECT_EQ(ctx.log_lines()[0].level, herd::Logger::Level::info);
    EXPECT_TRUE(ctx.broadcast({{"a", 1}}));
    ctx.set_reachable(false);
    EXPECT_FALSE(ctx.send("to master"));
    EXPECT_EQ(ctx.broadcasts().size(), 1u);
    EXPECT_EQ(ctx.sent()[0], "to master");
    EXPECT_EQ(ctx.config()["name"], "x");

    herd::State& state = ctx.state();
    std::vector<std::string> events;
    state.watch("k", [&](std::string_view key, const nlohmann::json* v) {
        events.push_back(std::string(key) + "=" + (v != nullptr ? v->dump() : "erased"));
    });
    state.set("k1", 5, [&](bool ok, const std::string&) { events.push_back(ok ? "ok" : "no"); });
    state.set("", 1, [&](bool ok, const std::string& e) { events.push_back(ok ? "ok" : e); });
    EXPECT_EQ(state.get("k1").value_or(nullptr), 5);  // applied at once
    EXPECT_TRUE(events.empty());                      // callbacks wait for the loop
    ctx.state().remove("k1");                         // a change made elsewhere
    ctx.loop().run_until_idle();
    ASSERT_EQ(events.size(), 4u);
    EXPECT_EQ(events[0], "k1=5");
    EXPECT_EQ(events[1], "ok");
    EXPECT_NE(events[2].find("invalid key"), std::string::npos);
    EXPECT_EQ(events[3], "k1=erased");
}

}  // namespace
