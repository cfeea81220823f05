// Tests server/worker/connection when a request does not end well: the client goes, the
// deadline passes, the responder is dropped, the plugin throws (reported once, the request
// answered 500 or its stream cut), the worker leaves. The fixture (connection_fixture.hpp) is
// connection_test's: a real socketpair, a fake worker, every wait bounded and scaled by
// HERD_TIMEOUT_SCALE.
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
