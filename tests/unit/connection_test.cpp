// Tests server/worker/connection: one Connection on a real socketpair, with a fake worker
// (tests/support/connection_harness.hpp) and a plugin built into the test; no worker process.
// The loop runs until a fact holds (a response read, a state reached), each wait bounded and
// scaled by HERD_TIMEOUT_SCALE; nothing waits on a sleep.
#include "worker/connection.hpp"

#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "../support/connection_harness.hpp"

namespace herd::worker {
namespace {

using namespace std::chrono_literals;
using conn_test::Client;
using conn_test::FakeHost;
using conn_test::PluginSlot;
using conn_test::ResponseStream;
using conn_test::run_until;
using conn_test::scaled;
using State = Connection::State;

std::string get(std::string_view path) {
    return "GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n\r\n";
}

// What the plugin's handlers saw.
struct Record {
    int cancelled = 0;  // coroutines that ended with herd::Cancelled
    int on_cancel = 0;  // on_cancel callbacks run
    int finished = 0;   // coroutines that returned
    int late = 0;       // callbacks that must never run
};

// ---- Coroutine handlers (free functions: GCC 12 wants nothing captured, awaitables named)

herd::Task<> sleep_then_answer(herd::Responder& r, herd::Loop& loop, std::chrono::milliseconds d,
                               Record* rec) {
    try {
        auto nap = loop.sleep_for(d);
        co_await nap;
    } catch (const herd::Cancelled&) {
        ++rec->cancelled;
        throw;
    }
    r.response().set_body("slept " + std::string(r.request().path()));
    ++rec->finished;
}

herd::Task<> answer_at_once(herd::Responder& r, Record* rec) {
    r.response().set_body("at once");
    ++rec->finished;
    co_return;
}

herd::Task<> sleep_then_throw(herd::Responder& r, herd::Loop& loop, std::chrono::milliseconds d) {
    auto nap = loop.sleep_for(d);
    co_await nap;
    r.response().set_body("never sent");
    throw std::runtime_error("thrown after a resume");
}

// Sends at once, then goes on working and fails: the answer is out, the failure is reported.
herd::Task<> send_then_throw(herd::Responder& r, herd::Loop& loop, std::chrono::milliseconds d) {
    r.response().set_body("sent");
    r.send();
    auto nap = loop.sleep_for(d);
    co_await nap;
    throw std::runtime_error("thrown after answering");
}

// n pieces `gap` apart, waiting for the client whenever write() says full; throws before
// piece `throw_at` (never when -1).
herd::Task<> stream_pieces(herd::Responder& r, herd::Loop& loop, int n,
                           std::chrono::milliseconds gap, Record* rec, int throw_at) {
    try {
        for (int i = 0; i < n; ++i) {
            if (i > 0) {
                auto nap = loop.sleep_for(gap);
                co_await nap;
            }
            if (i == throw_at) throw std::runtime_error("thrown in the middle of a stream");
            std::string piece = "piece " + std::to_string(i) + "\n";
            if (!r.write(piece)) {
                auto room = r.drained();
                co_await room;
            }
        }
    } catch (const herd::Cancelled&) {
        ++rec->cancelled;
        throw;
    }
    r.end();
    ++rec->finished;
}

class ConnectionTest : public ::testing::Test {
  protected:
    ConnectionTest() {
        host.mount(slot.mounted);
        auto [server, client_end] = conn_test::make_socketpair();
        client = Client(std::move(client_end));
        conn = &host.open(std::move(server));
    }
    ~ConnectionTest() override {
        // The plugin may hold what refers to the connection: it lets go first.
        held.reset();
        second.reset();
    }

    conn_test::TestPlugin& plugin() { return *slot.plugin; }
    herd::Loop& plugin_loop() { return slot.loop(); }

    ResponseStream got() {
        client.pump();
        return client.responses();
    }
    // Until n complete responses (or an unreadable one) have arrived.
    bool wait_responses(std::size_t n, int ms = 3000) {
        return run_until(
                   loop,
                   [&] {
                       ResponseStream r = got();
                       return r.responses.size() >= n || !r.error.empty();
                   },
                   scaled(ms)) &&
               got().responses.size() >= n;
    }
    bool wait_state(State s, int ms = 3000) {
        return run_until(
            loop, [&] { return host.alive(conn) && conn->state() == s; }, scaled(ms));
    }
    bool wait_freed(int ms = 3000) {
        return run_until(
            loop, [&] { return !host.alive(conn); }, scaled(ms));
    }
    bool wait_eof(int ms = 3000) {
        return run_until(
            loop,
            [&] {
                client.pump();
                return client.eof();
            },
            scaled(ms));
    }
    // Runs the loop for a while (to see that something does not happen).
    void settle(int ms = 20) {
        run_until(
            loop, [] { return false; }, scaled(ms));
    }
    // A plugin that keeps the responder (in `held`) and counts on_cancel.
    void hold_requests() {
        plugin().handler = [this](herd::Responder r) {
            r.on_cancel([this] { ++rec.on_cancel; });
            held.emplace(std::move(r));
        };
    }
    // Small socket buffers, so that output backs up after a few KiB.
    void shrink_buffers() {
        int bytes = 4096;
        ASSERT_EQ(setsockopt(conn->fd(), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes), 0);
        client.set_receive_buffer(4096);
    }

    core::EventLoop loop;
    PluginSlot slot{loop, "/"};
    FakeHost host{loop};
    Client client;
    Connection* conn = nullptr;
    Record rec;
    std::optional<herd::Responder> held;
    std::optional<herd::Responder> second;
};

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

// ---- The client goes, the deadline passes, the worker leaves

TEST_F(ConnectionTest, ClientGoneWhileCoroutineWaits) {
    plugin().handler = [this](herd::Responder r) {
        r.on_cancel([this] { ++rec.on_cancel; });
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return sleep_then_answer(h, plugin_loop(), 1h, &rec);
        });
    };
    client.request(get("/forever"));
    ASSERT_TRUE(wait_state(State::waiting));
    client.close();
    ASSERT_TRUE(run_until(
        loop, [&] { return rec.cancelled == 1; }, scaled(3000)));
    EXPECT_EQ(rec.on_cancel, 1);
    EXPECT_EQ(rec.finished, 0);
    EXPECT_TRUE(wait_freed());
    EXPECT_TRUE(slot.loop_empty());
    ASSERT_EQ(host.done.size(), 1u);
    EXPECT_EQ(host.done[0].status, 499);
    EXPECT_TRUE(slot.failures.empty());
}

TEST_F(ConnectionTest, ClientResetWhileCoroutineStreams) {
    plugin().handler = [this](herd::Responder r) {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return stream_pieces(h, plugin_loop(), 1000, 1h, &rec, -1);
        });
    };
    client.request(get("/s"));
    ASSERT_TRUE(wait_state(State::streaming));
    client.reset();
    ASSERT_TRUE(run_until(
        loop, [&] { return rec.cancelled == 1; }, scaled(3000)));
    EXPECT_TRUE(wait_freed());
    EXPECT_TRUE(slot.loop_empty());
    ASSERT_EQ(host.done.size(), 1u);
    EXPECT_EQ(host.done[0].status, 499);
}

// A callback handler: the timer tied to the request goes without running, on_cancel runs, and
// the connection object lives on until the plugin lets go of the responder.
TEST_F(ConnectionTest, ClientGoneWhileCallbackWaits) {
    plugin().handler = [this](herd::Responder r) {
        r.on_cancel([this] { ++rec.on_cancel; });
        plugin_loop().after(
            1h, [this] { ++rec.late; }, &r.scope());
        held.emplace(std::move(r));
    };
    client.request(get("/held"));
    ASSERT_TRUE(wait_state(State::waiting));
    EXPECT_EQ(slot.loop().counts().timers, 1u);
    client.close();
    ASSERT_TRUE(wait_state(State::closed));
    EXPECT_EQ(rec.on_cancel, 1);
    EXPECT_TRUE(held->cancelled());
    EXPECT_TRUE(slot.loop_empty());
    settle();
    EXPECT_TRUE(host.alive(conn));
    EXPECT_TRUE(host.is_orphan(conn));
    // A late answer does nothing, and lets the object go.
    held->response().set_body("late");
    held->send();
    EXPECT_TRUE(wait_freed());
    EXPECT_EQ(rec.late, 0);
    EXPECT_EQ(host.done.size(), 1u);
}

TEST_F(ConnectionTest, RequestTimeoutAnswers504AndCancels) {
    host.config.request_timeout_ms = static_cast<int>(scaled(30).count());
    hold_requests();
    client.request(get("/slow"));
    ASSERT_TRUE(wait_state(State::waiting));
    ASSERT_TRUE(wait_responses(1));
    ResponseStream r = got();
    EXPECT_EQ(r.responses[0].status, 504);
    EXPECT_EQ(r.responses[0].header("Connection"), "close");
    EXPECT_EQ(rec.on_cancel, 1);
    EXPECT_TRUE(held->cancelled());
    EXPECT_NE(held->scope().why().find("request_timeout_ms"), std::string_view::npos);
    ASSERT_TRUE(wait_eof());
    EXPECT_EQ(conn->state(), State::lingering);
    std::size_t bytes = client.received().size();
    held->response().set_body("too late");
    held->send();  // does nothing
    settle();
    EXPECT_EQ(client.received().size(), bytes);
    ASSERT_EQ(host.done.size(), 1u);
    EXPECT_EQ(host.done[0].status, 504);
    client.close();
    EXPECT_TRUE(wait_freed());
}

TEST_F(ConnectionTest, RequestTimeoutCancelsTheCoroutine) {
    host.config.request_timeout_ms = static_cast<int>(scaled(30).count());
    plugin().handler = [this](herd::Responder r) {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return sleep_then_answer(h, plugin_loop(), 1h, &rec);
        });
    };
    client.request(get("/slow"));
    ASSERT_TRUE(wait_responses(1));
    EXPECT_EQ(got().responses[0].status, 504);
    EXPECT_EQ(rec.cancelled, 1);
    EXPECT_TRUE(slot.loop_empty());
    ASSERT_TRUE(wait_eof());
    client.close();
    EXPECT_TRUE(wait_freed());
    EXPECT_TRUE(slot.failures.empty());
}

TEST_F(ConnectionTest, DroppedResponderIs500) {
    plugin().handler = [this](herd::Responder r) {
        if (r.request().path() == "/drop-now") return;  // dropped inside respond()
        herd::Scope& scope = r.scope();
        plugin_loop().after(
            scaled(5), [r = std::move(r)] {}, &scope);  // dropped later
    };
    client.request(get("/drop-now"));
    ASSERT_TRUE(wait_responses(1));
    EXPECT_EQ(got().responses[0].status, 500);
    client.request(get("/drop-later"));
    ASSERT_TRUE(wait_responses(2));
    EXPECT_EQ(got().responses[1].status, 500);
    EXPECT_EQ(conn->state(), State::reading);  // the connection goes on
    EXPECT_TRUE(slot.failures.empty());        // a bug in the plugin, but not an exception
    ASSERT_EQ(host.done.size(), 2u);
    EXPECT_EQ(host.done[1].status, 500);
}

// ---- Exceptions: reported once, the request answered 500 (or its stream cut)

TEST_F(ConnectionTest, ExceptionInRespond) {
    plugin().handler = [](herd::Responder) { throw std::runtime_error("boom"); };
    client.request(get("/throw"));
    ASSERT_TRUE(wait_responses(1));
    EXPECT_EQ(got().responses[0].status, 500);
    ASSERT_EQ(slot.failures.size(), 1u);
    EXPECT_NE(slot.failures[0].find("boom"), std::string::npos) << slot.failures[0];
    EXPECT_NE(slot.failures[0].find("GET /throw"), std::string::npos) << slot.failures[0];
    ASSERT_EQ(host.done.size(), 1u);
    EXPECT_EQ(host.done[0].status, 500);
}

// The handler answered, then threw: the answer stands, alone; the failure is reported.
TEST_F(ConnectionTest, ExceptionAfterAnsweringInRespond) {
    plugin().handler = [](herd::Responder r) {
        r.response().set_body(std::string(r.request().path()));
        r.send();
        if (r.request().path() == "/throw") throw std::runtime_error("after send");
    };
    client.request(get("/throw"));
    ASSERT_TRUE(wait_responses(1));
    settle();
    ResponseStream r = got();
    ASSERT_EQ(r.responses.size(), 1u) << client.received();
    EXPECT_EQ(r.responses[0].status, 200);
    EXPECT_EQ(slot.failures.size(), 1u);
    // The next request has its own answer.
    client.request(get("/next"));
    ASSERT_TRUE(wait_responses(2)) << client.received();
    r = got();
    ASSERT_EQ(r.responses.size(), 2u) << client.received();
    EXPECT_EQ(r.responses[1].body, "/next");
    EXPECT_EQ(host.done.size(), 2u);
}

// The handler kept its responder and threw: the 500 is the answer, and the connection object
// must outlive the responder the plugin still holds (no use after free when it lets go), and
// that stale responder must never answer a later request.
TEST_F(ConnectionTest, ExceptionAfterKeepingTheResponder) {
    plugin().handler = [this](herd::Responder r) {
        if (r.request().path() == "/keep-and-throw") {
            held.emplace(std::move(r));
            throw std::runtime_error("kept and threw");
        }
        second.emplace(std::move(r));
    };
    client.request(get("/keep-and-throw") + get("/second"));
    ASSERT_TRUE(wait_responses(1));
    EXPECT_EQ(got().responses[0].status, 500);
    EXPECT_EQ(slot.failures.size(), 1u);
    settle();
    EXPECT_TRUE(held->cancelled());  // a late answer does nothing
    if (*held) {
        held->response().set_body("stale");
        held->send();  // must not answer /second
    }
    settle();
    for (const auto& response : got().responses) EXPECT_NE(response.body, "stale");
    held.reset();
    second.reset();
    client.close();
    EXPECT_TRUE(wait_freed());
}

// Same, the client gone before the plugin lets go: the object must wait for it.
TEST_F(ConnectionTest, ExceptionAfterKeepingTheResponderThenClientGone) {
    plugin().handler = [this](herd::Responder r) {
        held.emplace(std::move(r));
        throw std::runtime_error("kept and threw");
    };
    client.request(get("/keep-and-throw"));
    ASSERT_TRUE(wait_responses(1));
    EXPECT_EQ(got().responses[0].status, 500);
    client.close();
    settle();
    bool alive = host.alive(conn);
    EXPECT_TRUE(alive) << "freed while the plugin holds a Responder to it";
    if (!alive) {
        // Leak the responder rather than let it touch freed memory: the test has failed.
        new herd::Responder(std::move(*held));
        held.reset();
        return;
    }
    held.reset();
    EXPECT_TRUE(wait_freed());
}

// The handler started a coroutine, then threw: the 500 is the answer, and the coroutine
// (whose responder is gone) ends with Cancelled instead of failing a second time.
TEST_F(ConnectionTest, ExceptionAfterStartingACoroutine) {
    plugin().handler = [this](herd::Responder r) {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return sleep_then_answer(h, plugin_loop(), scaled(5), &rec);
        });
        throw std::runtime_error("thrown after starting a coroutine");
    };
    client.request(get("/start-then-throw"));
    ASSERT_TRUE(wait_responses(1));
    EXPECT_EQ(got().responses[0].status, 500);
    ASSERT_TRUE(wait_state(State::reading));
    settle();
    EXPECT_EQ(rec.cancelled, 1);
    EXPECT_EQ(rec.finished, 0);
    EXPECT_EQ(slot.failures.size(), 1u) << slot.failures.back();
    EXPECT_TRUE(slot.loop_empty());
    client.request(get("/start-then-throw"));  // the connection goes on
    ASSERT_TRUE(wait_responses(2));
    EXPECT_EQ(got().responses[1].status, 500);
}

TEST_F(ConnectionTest, ExceptionAfterResume) {
    plugin().handler = [this](herd::Responder r) {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return sleep_then_throw(h, plugin_loop(), scaled(5));
        });
    };
    client.request(get("/later-throw"));
    ASSERT_TRUE(wait_state(State::waiting));
    ASSERT_TRUE(wait_responses(1));
    EXPECT_EQ(got().responses[0].status, 500);
    ASSERT_EQ(slot.failures.size(), 1u);
    EXPECT_NE(slot.failures[0].find("thrown after a resume"), std::string::npos);
    EXPECT_NE(slot.failures[0].find("GET /later-throw"), std::string::npos) << slot.failures[0];
    EXPECT_TRUE(wait_state(State::reading));
    EXPECT_TRUE(slot.loop_empty());
    ASSERT_EQ(host.done.size(), 1u);
    EXPECT_EQ(host.done[0].status, 500);
}

// A pipelined request (parsed from the input held during the first one) answered inside
// respond() by a coroutine that goes on and fails later: its request is still readable then.
TEST_F(ConnectionTest, ExceptionAfterAnsweringPipelinedCoroutine) {
    plugin().handler = [this](herd::Responder r) {
        if (r.request().path() == "/first") {
            herd::Scope& scope = r.scope();
            plugin_loop().after(
                scaled(5), [r = std::move(r)]() mutable { r.send(); }, &scope);
            return;
        }
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return send_then_throw(h, plugin_loop(), scaled(5));
        });
    };
    client.request(get("/first") + get("/second-request-target"));
    ASSERT_TRUE(wait_responses(2));
    ASSERT_TRUE(run_until(
        loop, [&] { return !slot.failures.empty(); }, scaled(3000)));
    EXPECT_NE(slot.failures[0].find("GET /second-request-target"), std::string::npos)
        << slot.failures[0];
    EXPECT_TRUE(wait_state(State::reading));
    EXPECT_EQ(got().responses[1].body, "sent");
}

TEST_F(ConnectionTest, ExceptionInAStreamCutsIt) {
    plugin().handler = [this](herd::Responder r) {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return stream_pieces(h, plugin_loop(), 5, scaled(5), &rec, 2);
        });
    };
    client.request(get("/s"));
    ASSERT_TRUE(wait_eof());
    ResponseStream r = got();
    EXPECT_TRUE(r.responses.empty());
    EXPECT_TRUE(r.partial);  // the head and two pieces, no end: the client sees it cut
    EXPECT_NE(client.received().find("piece 1\n"), std::string::npos);
    EXPECT_EQ(slot.failures.size(), 1u);
    ASSERT_EQ(host.done.size(), 1u) << "request_done once per request";
    EXPECT_EQ(host.done[0].status, 500);
    EXPECT_TRUE(wait_freed());
    EXPECT_TRUE(slot.loop_empty());
}

// ---- The worker leaves (abort)

TEST_F(ConnectionTest, AbortWhileWaitingAnswers503) {
    hold_requests();
    client.request(get("/held"));
    ASSERT_TRUE(wait_state(State::waiting));
    host.abort_all("the worker is stopping");
    EXPECT_EQ(conn->state(), State::closed);
    EXPECT_EQ(rec.on_cancel, 1);
    EXPECT_TRUE(held->cancelled());
    ASSERT_TRUE(wait_eof());
    ResponseStream r = got();
    ASSERT_EQ(r.responses.size(), 1u);
    EXPECT_EQ(r.responses[0].status, 503);
    EXPECT_EQ(r.responses[0].header("Connection"), "close");
    ASSERT_EQ(host.done.size(), 1u);
    EXPECT_EQ(host.done[0].status, 503);
    EXPECT_TRUE(host.is_orphan(conn));
    held.reset();
    EXPECT_TRUE(wait_freed());
}

TEST_F(ConnectionTest, AbortWhileStreamingEndsTheStreamCleanly) {
    plugin().handler = [this](herd::Responder r) {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& h) {
            return stream_pieces(h, plugin_loop(), 1000, 1h, &rec, -1);
        });
    };
    client.request(get("/s"));
    ASSERT_TRUE(wait_state(State::streaming));
    ASSERT_TRUE(run_until(
        loop,
        [&] {
            client.pump();
            return client.received().find("piece 0") != std::string::npos;
        },
        scaled(3000)));
    host.abort_all("the worker is stopping");
    EXPECT_EQ(rec.cancelled, 1);
    ASSERT_TRUE(wait_eof());
    ResponseStream r = got();
    ASSERT_EQ(r.responses.size(), 1u) << client.received();
    EXPECT_EQ(r.responses[0].body, "piece 0\n");
    EXPECT_TRUE(wait_freed());
    EXPECT_TRUE(slot.loop_empty());
}

// The worker's exit (Worker::run): close_connections() aborts every connection but keeps the
// ones a plugin still holds; the plugins stop and are destroyed, releasing what they hold
// (here, a Responder kept past its on_cancel, tied to nothing); only then are the orphans
// freed. The release must find its connection alive (ASan watches).
TEST_F(ConnectionTest, AResponderReleasedAtWorkerExitFindsItsConnection) {
    hold_requests();
    client.request(get("/held"));
    ASSERT_TRUE(wait_state(State::waiting));
    host.abort_all("the worker is stopping");
    EXPECT_TRUE(host.is_orphan(conn));
    ASSERT_TRUE(wait_eof());
    EXPECT_EQ(got().responses.at(0).status, 503);
    held.reset();  // as the plugin's shutdown or destructor does
    host.free_all();
}

TEST_F(ConnectionTest, AbortIdleClosesWithoutAResponse) {
    host.abort_all("the worker is stopping");
    ASSERT_TRUE(wait_eof());
    EXPECT_TRUE(client.received().empty());
    EXPECT_TRUE(wait_freed());
}

}  // namespace
}  // namespace herd::worker
