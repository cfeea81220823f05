// The plugin author's test kit: run a plugin's handlers without a server. A RequestBuilder
// makes a Request; a Harness loads the plugin into a fake Context (FakeContext: config, a
// recording logger, an in-memory State, and FakeLoop, a Loop on a manual clock), calls its
// respond() as the worker does, and shows what the client would get (Result). Header-only,
// single-threaded and deterministic: time moves only when the test says so.
//
//     herd::testing::Harness h({.config = {{"delay_ms", 50}}});
//     h.load<MyPlugin>();                                      // constructs it, runs on_start
//     auto& call = h.start(herd::testing::RequestBuilder("GET", "/slow?key=a"));
//     EXPECT_FALSE(call.result().answered);
//     h.loop().advance(std::chrono::milliseconds(50));         // timers fire, coroutines resume
//     EXPECT_EQ(call.result().status, 200);
//     EXPECT_EQ(h.run(herd::testing::RequestBuilder("GET", "/")).body, "hello");
//
// Where the fake differs from the worker: Loop::watch (and wait_readable, wait_writable)
// throws std::logic_error (no descriptors here: test the code behind the descriptor apart);
// run_blocking runs its work inline, in the loop's next iteration, then its done; the State
// applies writes at once (the broker always accepts) and runs watchers and done callbacks in
// the next iteration. The worker's answers of its own (500, 503, 504) keep its status and
// body; herd's headers (Date, Server, Content-Length, Connection) are not in the Result.
#pragma once

// The kit's parts, under herd/testing/: request.hpp (RequestBuilder), loop.hpp (FakeLoop),
// context.hpp (FakeState, FakeHttp, FakeContext), call.hpp (Call, Result, Options),
// harness.hpp (Harness), redis.hpp, postgres.hpp, websocket.hpp (FakeWebSocket).
#include "herd/testing/call.hpp"
#include "herd/testing/context.hpp"
#include "herd/testing/harness.hpp"
#include "herd/testing/loop.hpp"
#include "herd/testing/request.hpp"
#include "herd/testing/websocket.hpp"
