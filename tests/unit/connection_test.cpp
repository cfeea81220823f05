// Tests server/worker/connection: one Connection on a real socketpair, with a fake worker
// (tests/support/connection_harness.hpp) and a plugin built into the test; no worker process.
// The loop runs until a fact holds (a response read, a state reached), each wait bounded and
// scaled by HERD_TIMEOUT_SCALE; nothing waits on a sleep. Here requests answered (at once,
// later, from a coroutine) and streamed; the requests that end otherwise are in
// connection_failure_test, the fixture in connection_fixture.hpp.
#include "worker/connection.hpp"

#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "connection_fixture.hpp"

namespace herd::worker {
namespace {

using namespace conn_fixture;

herd::Task<> answer_at_once(herd::Responder& r, Record* rec) {
    r.response().set_body("at once");
    ++rec->finished;
    co_return;
}

// ---- Answers at once, later, from a coroutine

TEST_F(ConnectionTest, SyncAnswer) {
    plugin().handler = [](herd::Responder r) {
        r.response().set_body("hello " + std::string(r.request().path()));
        r.send();
    };
    EXPECT_EQ(conn->state(), State::reading);
    client.request(get("/a"));
    ASSERT_TRUE(wait_responses(1));
    ResponseStream r = got();
    EXPECT_EQ(r.responses[0].status, 200);
    EXPECT_EQ(r.responses[0].body, "hello /a");
    EXPECT_EQ(r.responses[0].header("Content-Length"), "8");
    EXPECT_EQ(conn->state(), State::reading);
    EXPECT_TRUE(conn->idle());
    EXPECT_FALSE(conn->held());
    ASSERT_EQ(host.done.size(), 1u);
    EXPECT_EQ(host.done[0].status, 200);
    EXPECT_EQ(host.started, 1u);
    EXPECT_EQ(host.busy_word.load(), 1u);  // idle again after the plugin call
    EXPECT_TRUE(slot.failures.empty());
}

TEST_F(ConnectionTest, UnroutedPathIs404AndNoPluginIsCalled) {
    FakeHost other(loop);  // no plugin mounted
    auto [server, client_end] = conn_test::make_socketpair();
    Client c(std::move(client_end));
    Connection& x = other.open(std::move(server));
    c.request(get("/nowhere"));
    ASSERT_TRUE(run_until(
        loop,
        [&] {
            c.pump();
            return c.responses().responses.size() == 1;
        },
        scaled(3000)));
    EXPECT_EQ(c.responses().responses[0].status, 404);
    EXPECT_EQ(x.state(), State::reading);
}

TEST_F(ConnectionTest, KeepAliveServesRequestsInTurn) {
    plugin().handler = [](herd::Responder r) {
        r.response().set_body(std::string(r.request().path()));
        r.send();
    };
    client.request(get("/1"));
    ASSERT_TRUE(wait_responses(1));
    client.request(get("/2"));
    ASSERT_TRUE(wait_responses(2));
    ResponseStream r = got();
    EXPECT_EQ(r.responses[0].body, "/1");
    EXPECT_EQ(r.responses[1].body, "/2");
    EXPECT_EQ(r.responses[1].header("Connection"), std::nullopt);
    EXPECT_TRUE(host.alive(conn));
    EXPECT_EQ(conn->state(), State::reading);
    EXPECT_EQ(host.closed, 0u);
}

TEST_F(ConnectionTest, PipelinedSyncAnswersInOrder) {
    plugin().handler = [](herd::Responder r) {
        r.response().set_body(std::string(r.request().path()));
        r.send();
    };
    client.request(get("/1") + get("/2") + get("/3"));
    ASSERT_TRUE(wait_responses(3));
    ResponseStream r = got();
    EXPECT_EQ(r.responses[0].body, "/1");
    EXPECT_EQ(r.responses[1].body, "/2");
    EXPECT_EQ(r.responses[2].body, "/3");
    EXPECT_EQ(host.done.size(), 3u);
}

// The first request is answered later: the ones behind it wait, and every response leaves in
// request order, those answered at once included.
TEST_F(ConnectionTest, PipelinedBehindDeferredAnswerLeaveInOrder) {
    plugin().handler = [this](herd::Responder r) {
        if (r.request().path() == "/slow") {
            herd::Scope& scope = r.scope();
            plugin_loop().after(
                scaled(20),
                [r = std::move(r)]() mutable {
                    r.response().set_body("slow");
                    r.send();
                },
                &scope);
            return;
        }
        r.response().set_body(std::string(r.request().path()));
        r.send();
    };
    client.request(get("/slow") + get("/fast") + get("/last"));
    ASSERT_TRUE(wait_state(State::waiting));
    EXPECT_TRUE(got().responses.empty());
    EXPECT_EQ(host.started, 1u);  // the others are held, not parsed
    ASSERT_TRUE(wait_responses(3));
    ResponseStream r = got();
    EXPECT_EQ(r.responses[0].body, "slow");
    EXPECT_EQ(r.responses[1].body, "/fast");
    EXPECT_EQ(r.responses[2].body, "/last");
    EXPECT_EQ(conn->state(), State::reading);
}

TEST_F(ConnectionTest, DeferredAnswerFromTimer) {
    plugin().handler = [this](herd::Responder r) {
        herd::Scope& scope = r.scope();
        plugin_loop().after(
            scaled(10),
            [r = std::move(r)]() mutable {
                r.response().set_body("later");
                r.send();
            },
            &scope);
    };
    client.request(get("/t"));
    ASSERT_TRUE(wait_state(State::waiting));
    EXPECT_TRUE(conn->held());
    EXPECT_EQ(slot.loop().counts().timers, 1u);
    EXPECT_TRUE(got().responses.empty());
    ASSERT_TRUE(wait_responses(1));
    ResponseStream r = got();
    EXPECT_EQ(r.responses[0].status, 200);
    EXPECT_EQ(r.responses[0].body, "later");
    EXPECT_TRUE(wait_state(State::reading));
    EXPECT_FALSE(conn->held());
    EXPECT_TRUE(slot.loop_empty());
    ASSERT_EQ(host.done.size(), 1u);
    EXPECT_EQ(host.done[0].status, 200);
}

TEST_F(ConnectionTest, CoroutineHandler) {
    plugin().handler = [this](herd::Responder r) {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return sleep_then_answer(h, plugin_loop(), scaled(10), &rec);
        });
    };
    client.request(get("/co"));
    ASSERT_TRUE(wait_state(State::waiting));
    EXPECT_TRUE(conn->held());
    ASSERT_TRUE(wait_responses(1));
    EXPECT_EQ(got().responses[0].body, "slept /co");
    EXPECT_EQ(rec.finished, 1);
    EXPECT_TRUE(wait_state(State::reading));
    EXPECT_FALSE(conn->held());
    EXPECT_TRUE(slot.loop_empty());
    // And the next one on the same connection.
    client.request(get("/again"));
    ASSERT_TRUE(wait_responses(2));
    EXPECT_EQ(got().responses[1].body, "slept /again");
}

TEST_F(ConnectionTest, CoroutineThatNeverSuspends) {
    plugin().handler = [this](herd::Responder r) {
        herd::serve_coroutine(std::move(r),
                              [this](herd::Responder& h) { return answer_at_once(h, &rec); });
    };
    client.request(get("/now") + get("/now"));
    ASSERT_TRUE(wait_responses(2));
    EXPECT_EQ(got().responses[0].body, "at once");
    EXPECT_EQ(got().responses[1].body, "at once");
    EXPECT_EQ(conn->state(), State::reading);
    EXPECT_FALSE(conn->held());
}

// ---- Streaming

TEST_F(ConnectionTest, StreamChunked) {
    plugin().handler = [this](herd::Responder r) {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return stream_pieces(h, plugin_loop(), 3, scaled(5), &rec, -1);
        });
    };
    client.request(get("/s"));
    ASSERT_TRUE(wait_state(State::streaming));
    ASSERT_TRUE(wait_responses(1));
    ResponseStream r = got();
    EXPECT_TRUE(r.responses[0].chunked);
    EXPECT_EQ(r.responses[0].body, "piece 0\npiece 1\npiece 2\n");
    EXPECT_TRUE(wait_state(State::reading));
    EXPECT_EQ(rec.finished, 1);
    ASSERT_EQ(host.done.size(), 1u);
    EXPECT_EQ(host.done[0].status, 200);
    EXPECT_EQ(host.done[0].bytes, 24u);
    // Keep-alive after a chunked stream.
    client.request(get("/s"));
    ASSERT_TRUE(wait_responses(2));
    EXPECT_EQ(got().responses[1].body, "piece 0\npiece 1\npiece 2\n");
}

TEST_F(ConnectionTest, StreamToHttp10ClientEndsWithTheClose) {
    plugin().handler = [this](herd::Responder r) {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return stream_pieces(h, plugin_loop(), 3, scaled(5), &rec, -1);
        });
    };
    client.request("GET /s HTTP/1.0\r\n\r\n");
    ASSERT_TRUE(wait_state(State::streaming));
    ASSERT_TRUE(wait_eof());
    ResponseStream r = got();
    ASSERT_EQ(r.responses.size(), 1u) << client.received();
    EXPECT_TRUE(r.responses[0].close_delimited);
    EXPECT_EQ(r.responses[0].body, "piece 0\npiece 1\npiece 2\n");
    EXPECT_EQ(r.responses[0].header("Connection"), "close");
    EXPECT_TRUE(wait_state(State::lingering));  // our FIN is out; waiting for the client's
    EXPECT_EQ(host.lingering, 1u);
    client.close();
    EXPECT_TRUE(wait_freed());
    EXPECT_TRUE(slot.loop_empty());
}

TEST_F(ConnectionTest, StreamToHeadRequestSendsNoBody) {
    plugin().handler = [this](herd::Responder r) {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return stream_pieces(h, plugin_loop(), 2, scaled(5), &rec, -1);
        });
    };
    client.request("HEAD /s HTTP/1.1\r\nHost: t\r\n\r\n");
    ASSERT_TRUE(wait_responses(1));
    ASSERT_TRUE(wait_state(State::reading));
    std::string after_head = client.received();
    EXPECT_TRUE(after_head.ends_with("\r\n\r\n")) << after_head;
    EXPECT_EQ(got().responses[0].header("Transfer-Encoding"), std::nullopt);
    // The connection goes on: nothing of the HEAD's stream leaks into the next response.
    client.request(get("/s"));
    ASSERT_TRUE(wait_responses(2));
    ResponseStream r = got();
    EXPECT_TRUE(r.error.empty()) << r.error;
    EXPECT_EQ(r.responses[1].body, "piece 0\npiece 1\n");
}

// The client reads nothing: write() says full, when_writable waits; once the client reads,
// it fires and the stream finishes.
TEST_F(ConnectionTest, BackpressureWaitsForTheClient) {
    shrink_buffers();
    constexpr int total = 16;
    constexpr std::size_t piece = 16 << 10;
    struct Pusher {
        herd::Responder r;
        int written = 0, wakeups = 0;
        bool saw_full = false;
        void push() {
            while (written < total) {
                ++written;
                if (!r.write(std::string(piece, static_cast<char>('a' + written)))) {
                    saw_full = true;
                    r.when_writable([this] {
                        ++wakeups;
                        push();
                    });
                    return;
                }
            }
            r.end();
        }
    };
    auto pusher = std::make_shared<Pusher>();
    plugin().handler = [pusher](herd::Responder r) {
        pusher->r = std::move(r);
        pusher->push();
    };
    client.request(get("/big"));
    ASSERT_TRUE(run_until(
        loop, [&] { return pusher->saw_full; }, scaled(3000)));
    settle();
    EXPECT_EQ(pusher->wakeups, 0);  // the client has read nothing
    EXPECT_EQ(conn->state(), State::streaming);
    ASSERT_TRUE(wait_responses(1, 10000));  // reading now
    EXPECT_GE(pusher->wakeups, 1);
    EXPECT_EQ(pusher->written, total);
    EXPECT_EQ(got().responses[0].body.size(), total * piece);
    EXPECT_TRUE(wait_state(State::reading));
}

herd::Task<> wait_for_room_then_answer(herd::Responder& r, Record* rec) {
    auto room = r.drained();
    co_await room;
    r.response().set_body("after room");
    ++rec->finished;
}

// A handler that waits for room before it begins (earlier responses still unsent): drained()
// resumes once they have left, not only in the middle of a stream.
TEST_F(ConnectionTest, DrainedBeforeTheStreamBegins) {
    shrink_buffers();
    plugin().handler = [this](herd::Responder r) {
        if (r.request().path() == "/big") {
            r.response().set_body(std::string(200 << 10, 'b'));
            r.send();
            return;
        }
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return wait_for_room_then_answer(h, &rec);
        });
    };
    client.request(get("/big") + get("/room"));
    ASSERT_TRUE(wait_state(State::waiting));
    ASSERT_TRUE(wait_responses(2, 5000)) << got().responses.size();
    EXPECT_EQ(got().responses[1].body, "after room");
    EXPECT_EQ(rec.finished, 1);
}

// A plugin that writes on regardless of write() is cut off: the request is cancelled and the
// connection closed.
TEST_F(ConnectionTest, PluginIgnoringBackpressureIsCutOff) {
    shrink_buffers();
    plugin().handler = [this](herd::Responder r) {
        r.on_cancel([this] { ++rec.on_cancel; });
        held.emplace(std::move(r));
        plugin_loop().post(
            [this] {
                for (int i = 0; i < 24 && *held; ++i) (void)held->write(std::string(64 << 10, 'x'));
            },
            &held->scope());
    };
    client.request(get("/flood"));
    ASSERT_TRUE(wait_state(State::closed));
    EXPECT_EQ(rec.on_cancel, 1);
    EXPECT_TRUE(held->cancelled());
    EXPECT_FALSE(held->write("more"));
    ASSERT_EQ(host.done.size(), 1u);
    EXPECT_EQ(host.done[0].status, 499);
    EXPECT_TRUE(host.alive(conn));  // the plugin still holds the request
    held.reset();
    EXPECT_TRUE(wait_freed());
    EXPECT_TRUE(slot.loop_empty());
}

// The same inside respond() itself: the cut-off holds wherever the plugin writes from.
TEST_F(ConnectionTest, PluginIgnoringBackpressureInsideRespondIsCutOff) {
    shrink_buffers();
    plugin().handler = [this](herd::Responder r) {
        r.on_cancel([this] { ++rec.on_cancel; });
        for (int i = 0; i < 24; ++i) (void)r.write(std::string(64 << 10, 'x'));
        held.emplace(std::move(r));
    };
    client.request(get("/flood"));
    ASSERT_TRUE(wait_state(State::closed)) << "state " << static_cast<int>(conn->state());
    EXPECT_EQ(rec.on_cancel, 1);
    EXPECT_TRUE(held->cancelled());
    held.reset();
    EXPECT_TRUE(wait_freed());
}

herd::Task<> background_naps(herd::Loop& loop, int naps, std::chrono::milliseconds d, Record* rec) {
    for (int i = 0; i < naps; ++i) {
        auto nap = loop.sleep_for(d);
        co_await nap;
    }
    ++rec->finished;
}

// Background work spawned in a request's scope, going on after the request (and its
// connection) ended: it goes on untied, never touching the connection that is gone.
TEST_F(ConnectionTest, SpawnedInTheRequestScopeOutlivesTheConnection) {
    plugin().handler = [this](herd::Responder r) {
        plugin_loop().spawn(background_naps(plugin_loop(), 3, scaled(10), &rec), &r.scope());
        r.send();
    };
    client.request(get("/spawn"));
    ASSERT_TRUE(wait_responses(1));
    client.close();
    ASSERT_TRUE(wait_freed());
    ASSERT_TRUE(run_until(
        loop, [&] { return rec.finished == 1; }, scaled(3000)));
    EXPECT_TRUE(slot.loop_empty());
}

// The same work cancelled with its request (the client goes while it naps): it ends with
// Cancelled, and the scope it ran in goes without being used after.
TEST_F(ConnectionTest, SpawnedInTheRequestScopeIsCancelledWithIt) {
    plugin().handler = [this](herd::Responder r) {
        plugin_loop().spawn(background_naps(plugin_loop(), 1, 1h, &rec), &r.scope());
        held.emplace(std::move(r));
    };
    client.request(get("/spawn"));
    ASSERT_TRUE(wait_state(State::waiting));
    ASSERT_TRUE(run_until(
        loop, [&] { return slot.loop().counts().timers == 1; }, scaled(3000)));
    client.close();
    ASSERT_TRUE(wait_state(State::closed));
    held.reset();
    ASSERT_TRUE(wait_freed());
    EXPECT_EQ(rec.finished, 0);
    EXPECT_TRUE(slot.loop_empty());
}

}  // namespace
}  // namespace herd::worker
