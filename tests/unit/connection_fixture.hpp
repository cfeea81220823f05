// The ConnectionTest fixture of connection_test and connection_failure_test: one Connection on
// a real socketpair with a fake worker (tests/support/connection_harness.hpp) and a plugin
// built into the test, waits that run the loop until a fact holds (bounded, scaled by
// HERD_TIMEOUT_SCALE), and the coroutine handlers both files use.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include <gtest/gtest.h>

#include "../support/connection_harness.hpp"
#include "worker/connection.hpp"

namespace herd::worker::conn_fixture {

using namespace std::chrono_literals;
using conn_test::Client;
using conn_test::FakeHost;
using conn_test::PluginSlot;
using conn_test::ResponseStream;
using conn_test::run_until;
using conn_test::scaled;
using State = Connection::State;

inline std::string get(std::string_view path) {
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

inline herd::Task<> sleep_then_answer(herd::Responder& r, herd::Loop& loop,
                                      std::chrono::milliseconds d, Record* rec) {
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

// n pieces `gap` apart, waiting for the client whenever write() says full; throws before
// piece `throw_at` (never when -1).
inline herd::Task<> stream_pieces(herd::Responder& r, herd::Loop& loop, int n,
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

}  // namespace herd::worker::conn_fixture
