// libFuzzer target: one worker Connection (server/worker/connection.cpp) on a socketpair, with
// the fake worker of tests/support/connection_harness.hpp and a plugin whose behaviour the
// input chooses for each request. The input is a script: client writes (canned requests, or
// raw bytes, valid HTTP or not), loop iterations, time passing (the request deadline, the
// sweep's timeouts), the client shutting down, closing or resetting, reading or not, the
// plugin letting go of or answering what it holds, the worker draining or leaving.
//
// Invariants (abort on violation; ASan and UBSan watch the rest):
//   - what the client receives parses as HTTP/1.1 responses, in request order (each status
//     is the one the worker recorded for that request), never more than the requests;
//   - each throwing request is reported as a plugin failure at most once, and nothing else is;
//   - once the client has closed and the plugin has let go, the connection object is freed
//     and its plugin's loop holds no registration (timers, watches, posts, jobs, tasks).
#include <fcntl.h>
#include <unistd.h>

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../support/connection_harness.hpp"
#include "core/log.hpp"

namespace {

using namespace std::chrono_literals;
using herd::conn_test::Client;
using herd::conn_test::FakeHost;
using herd::conn_test::PluginSlot;
using herd::worker::Connection;

[[noreturn]] void violated(const char* what, const std::string& detail = {}) {
    std::fprintf(stderr, "fuzz_connection: invariant violated: %s\n%s\n", what, detail.c_str());
    std::abort();
}

// HERD_FUZZ_TRACE=1: each operation and behaviour on stderr, to read a crashing input.
bool tracing = false;
template <class... Args>
void trace(const char* format, Args... args) {
    if (tracing) std::fprintf(stderr, format, args...);
}

#define CHECK(cond, ...)                             \
    do {                                             \
        if (!(cond)) violated(#cond, ##__VA_ARGS__); \
    } while (0)

// What the plugin did, for the invariants.
struct Stats {
    std::vector<bool> heads;  // per request dispatched, in order: was it HEAD
    int throws = 0;           // throwing requests (each with its own marker)
};

// ---- Coroutine handlers (free functions: nothing captured, awaitables named)

herd::Task<> co_answer(herd::Responder& r, herd::Loop& loop, int sleep_ms) {
    auto nap = loop.sleep_for(std::chrono::milliseconds(sleep_ms));
    co_await nap;
    r.response().set_body("co");
}

herd::Task<> co_stream(herd::Responder& r, herd::Loop& loop, int pieces, std::size_t size,
                       int gap_ms, int throw_at, std::string marker, bool room_first) {
    if (room_first) {  // waits for earlier responses to leave before it begins
        auto room = r.drained();
        co_await room;
    }
    for (int i = 0; i < pieces; ++i) {
        if (i > 0 && gap_ms >= 0) {
            auto nap = loop.sleep_for(std::chrono::milliseconds(gap_ms));
            co_await nap;
        }
        if (i == throw_at) throw std::runtime_error(marker);
        if (!r.write(std::string(size, static_cast<char>('a' + i % 26)))) {
            auto room = r.drained();
            co_await room;
        }
    }
    r.end();
}

// Background work: two naps.
herd::Task<> co_naps(herd::Loop& loop, int ms) {
    for (int i = 0; i < 2; ++i) {
        auto nap = loop.sleep_for(std::chrono::milliseconds(ms));
        co_await nap;
    }
}

herd::Task<> co_throw(herd::Responder& r, herd::Loop& loop, int sleep_ms, bool send_first,
                      std::string marker) {
    if (send_first) r.send();
    auto nap = loop.sleep_for(std::chrono::milliseconds(sleep_ms));
    co_await nap;
    throw std::runtime_error(marker);
}

// A callback streamer: writes until full, then waits for when_writable.
struct Pusher {
    herd::Responder r;
    int left = 0;
    std::size_t size = 0;
    void push() {
        while (left > 0) {
            --left;
            if (!r.write(std::string(size, 'p'))) {
                r.when_writable([this] { push(); });
                return;
            }
        }
        r.end();
    }
};

// The plugin: each request's behaviour comes from the script.
class Script {
  public:
    Script(const std::uint8_t* data, std::size_t size) : in_(data, size) {}

    void run() {
        loop_ = std::make_unique<herd::core::EventLoop>();
        slot_ = std::make_unique<PluginSlot>(*loop_, "/");
        host_ = std::make_unique<FakeHost>(*loop_);
        host_->mount(slot_->mounted);
        host_->config.request_timeout_ms = in_.ConsumeIntegralInRange<int>(0, 3);
        slot_->plugin->handler = [this](herd::Responder r) { respond(std::move(r)); };
        auto [server, client_end] = herd::conn_test::make_socketpair();
        if (in_.ConsumeBool()) {
            int bytes = 4096;  // output backs up after a few KiB
            (void)setsockopt(server.get(), SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
        }
        client_ = Client(std::move(client_end));
        conn_ = &host_->open(std::move(server));

        for (int ops = 0; ops < 64 && in_.remaining_bytes() > 0; ++ops) step();
        finish();

        host_.reset();  // frees nothing: finish() checked that all is gone
        slot_.reset();
        loop_.reset();
    }

  private:
    void step() {
        int op = in_.ConsumeIntegralInRange<int>(0, 15);
        trace("op %d (%s)\n", op,
              host_->alive(conn_) ? std::to_string(static_cast<int>(conn_->state())).c_str()
                                  : "freed");
        switch (op) {
            case 0:
            case 1:
                client_.send_some(canned());
                break;
            case 2: {
                std::string bytes = in_.ConsumeRandomLengthString(512);
                client_.send_some(bytes);
                break;
            }
            case 3:
            case 4:
                loop_->run_once(0);
                break;
            case 5: {
                // Time passes (a request's deadline, plugin timers).
                auto until =
                    Clock::now() + std::chrono::milliseconds(in_.ConsumeIntegralInRange(1, 4));
                while (Clock::now() < until) loop_->run_once(1);
                break;
            }
            case 6:
                // The sweep, as if much time had passed (header, keep-alive, send, linger).
                in_loop([this] {
                    if (host_->alive(conn_) && conn_->fd() >= 0) {
                        static constexpr int seconds[] = {1, 3, 11, 61, 76};
                        conn_->check_timeouts(Clock::now() +
                                              std::chrono::seconds(in_.PickValueInArray(seconds)));
                    }
                });
                break;
            case 7:
                client_.pump(in_.ConsumeBool() ? std::size_t(-1)
                                               : in_.ConsumeIntegralInRange<std::size_t>(1, 8192));
                check_responses();
                break;
            case 8:
                client_.shutdown_write();
                break;
            case 9:
                if (in_.ConsumeBool()) {
                    client_.pump();
                    check_responses();
                }
                client_.close();
                break;
            case 10:
                client_.reset();
                break;
            case 11:
                in_loop([this] { let_go(in_.ConsumeBool()); });
                break;
            case 12:
                in_loop([this] { answer_held(); });
                break;
            case 13:
                in_loop([this] {
                    if (host_->alive(conn_) && conn_->fd() >= 0 &&
                        in_.ConsumeIntegralInRange(0, 3) == 0)
                        host_->abort_all("the worker is stopping");
                });
                break;
            case 14:
                in_loop([this] {
                    bool close_idle = in_.ConsumeBool();
                    host_->set_close_idle(close_idle);
                    if (host_->alive(conn_) && conn_->fd() >= 0) conn_->drain(close_idle);
                });
                break;
            case 15:
                host_->set_close_responses(!host_->responses_close());
                break;
        }
    }

    // Runs fn inside a loop iteration, as everything of the worker and its plugins runs (what
    // a connection defers runs before the end of the iteration, what it posts in the next).
    template <class F>
    void in_loop(F fn) {
        loop_->post(std::move(fn));
        loop_->run_once(0);
    }

    std::string canned() {
        static const char* const requests[] = {
            "GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
            "HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /old HTTP/1.0\r\n\r\n",
            "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            ("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5\r\nhello\r\n0\r\n\r\n"),
            "GET /close HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            "GET /partial HTTP/1.1\r\nHo",
            "HEAD /old HTTP/1.0\r\n\r\n",
        };
        return in_.PickValueInArray(requests);
    }

    std::string next_marker() { return "fuzz-throw-" + std::to_string(stats_.throws++); }

    void respond(herd::Responder r) {
        stats_.heads.push_back(r.request().method() == "HEAD");
        herd::Loop& loop = slot_->loop();
        herd::Scope& scope = r.scope();
        int behaviour = in_.ConsumeIntegralInRange<int>(0, 15);
        trace("  request %zu: %.*s %.*s, behaviour %d\n", stats_.heads.size(),
              static_cast<int>(r.request().method().size()), r.request().method().data(),
              static_cast<int>(r.request().target().size()), r.request().target().data(),
              behaviour);
        switch (behaviour) {
            case 0:  // at once (and maybe background work spawned in the request's scope)
                r.response().set_body(
                    std::string(in_.ConsumeIntegralInRange<std::size_t>(0, 40000), 'b'));
                if (in_.ConsumeBool())
                    loop.spawn(co_naps(loop, in_.ConsumeIntegralInRange(0, 2)), &scope);
                r.send();
                return;
            case 1: {  // later, from a timer tied to the request or not
                auto delay = std::chrono::milliseconds(in_.ConsumeIntegralInRange(0, 2));
                herd::Scope* tie = in_.ConsumeBool() ? &scope : nullptr;
                loop.after(
                    delay,
                    [r = std::move(r)]() mutable {
                        r.response().set_body("later");
                        r.send();
                    },
                    tie);
                return;
            }
            case 2: {  // later, dropped
                auto delay = std::chrono::milliseconds(in_.ConsumeIntegralInRange(0, 2));
                herd::Scope* tie = in_.ConsumeBool() ? &scope : nullptr;
                loop.after(
                    delay, [r = std::move(r)] {}, tie);
                return;
            }
            case 3: {  // a coroutine that sleeps
                int ms = in_.ConsumeIntegralInRange(0, 2);
                herd::serve_coroutine(std::move(r), [&loop, ms](herd::Responder& h) {
                    return co_answer(h, loop, ms);
                });
                return;
            }
            case 4:
            case 5: {  // a stream of pieces
                int pieces = in_.ConsumeIntegralInRange(0, 8);
                static constexpr std::size_t sizes[] = {1, 100, 5000, 70000};
                std::size_t size = in_.PickValueInArray(sizes);
                int gap = in_.ConsumeIntegralInRange(-1, 1);
                bool room_first = in_.ConsumeBool();
                herd::serve_coroutine(
                    std::move(r), [&loop, pieces, size, gap, room_first](herd::Responder& h) {
                        return co_stream(h, loop, pieces, size, gap, -1, "", room_first);
                    });
                return;
            }
            case 6: {  // a callback stream with when_writable
                auto p = std::make_unique<Pusher>();
                p->r = std::move(r);
                p->left = in_.ConsumeIntegralInRange(0, 12);
                p->size = in_.ConsumeBool() ? 20000 : 10;
                Pusher* raw = p.get();
                pushers_.push_back(std::move(p));
                raw->push();
                return;
            }
            case 7:
            case 8:  // never answers (until the script lets go); on_cancel may throw
                if (in_.ConsumeBool()) {
                    r.on_cancel([marker = next_marker()] { throw std::runtime_error(marker); });
                } else {
                    r.on_cancel([this] { ++cancels_; });
                }
                held_.push_back(std::move(r));
                return;
            case 9:  // throws at once
                throw std::runtime_error(next_marker());
            case 10:  // keeps the responder, throws
                held_.push_back(std::move(r));
                throw std::runtime_error(next_marker());
            case 11:  // answers, then throws
                r.send();
                throw std::runtime_error(next_marker());
            case 12: {  // a coroutine that throws after a resume (or after answering)
                int ms = in_.ConsumeIntegralInRange(0, 2);
                bool send_first = in_.ConsumeBool();
                std::string marker = next_marker();
                herd::serve_coroutine(std::move(r),
                                      [&loop, ms, send_first, marker](herd::Responder& h) {
                                          return co_throw(h, loop, ms, send_first, marker);
                                      });
                return;
            }
            case 13: {  // a stream that throws in the middle
                int at = in_.ConsumeIntegralInRange(0, 3);
                std::string marker = next_marker();
                herd::serve_coroutine(std::move(r), [&loop, at, marker](herd::Responder& h) {
                    return co_stream(h, loop, 4, 100, 0, at, marker, false);
                });
                return;
            }
            case 14: {  // starts a coroutine, then throws itself
                int ms = in_.ConsumeIntegralInRange(0, 2);
                std::string marker = next_marker();
                herd::serve_coroutine(std::move(r), [&loop, ms](herd::Responder& h) {
                    return co_answer(h, loop, ms);
                });
                throw std::runtime_error(marker);
            }
            case 15:  // writes past the cut-off, regardless of backpressure (rarely)
                if (in_.ConsumeIntegralInRange(0, 3) == 0) {
                    for (int i = 0; i < 20; ++i) (void)r.write(std::string(64 << 10, 'f'));
                    if (in_.ConsumeBool())
                        r.end();
                    else
                        held_.push_back(std::move(r));
                } else {
                    r.send();
                }
                return;
        }
    }

    void let_go(bool all) {
        if (all) {
            held_.clear();
            pushers_.clear();
        } else if (!held_.empty()) {
            held_.erase(held_.begin());
        }
    }

    void answer_held() {
        if (held_.empty()) return;
        herd::Responder r = std::move(held_.front());
        held_.erase(held_.begin());
        if (!r) return;
        switch (in_.ConsumeIntegralInRange(0, 2)) {
            case 0:
                r.response().set_body("answered late");
                r.send();
                break;
            case 1:
                (void)r.write("a piece");
                r.end();
                break;
            case 2:
                held_.push_back(std::move(r));  // a late write, kept
                (void)held_.back().write("late piece");
                break;
        }
    }

    void check_responses() {
        // Which responses have no body: those to HEAD requests, in the order the plugin saw.
        auto got =
            herd::conn_test::parse_responses(client_.received(), client_.eof(), stats_.heads);
        CHECK(got.error.empty(), got.error + "\n" + client_.received());
        CHECK(got.responses.size() <= stats_.heads.size() + 1,
              std::to_string(got.responses.size()) + " responses for " +
                  std::to_string(stats_.heads.size()) + " requests");
        // Each response is the one recorded for its request (499s had none). A body that ends
        // with the close, or a head only, may be a stream cut by a failure (recorded 500).
        std::vector<int> expected;
        for (const auto& d : host_->done)
            if (d.status != 499) expected.push_back(d.status);
        for (std::size_t i = 0; i < got.responses.size(); ++i) {
            const auto& r = got.responses[i];
            bool head_only = i < stats_.heads.size() && stats_.heads[i];
            if (r.close_delimited || head_only) continue;
            CHECK(
                i < expected.size() && r.status == expected[i],
                "response " + std::to_string(i) + ": " + r.status_line + "\n" + client_.received());
        }
    }

    void finish() {
        // The client reads what is left, then goes; the plugin lets go of what it holds.
        client_.pump();
        check_responses();
        client_.close();
        in_loop([this] { let_go(true); });
        bool gone = herd::conn_test::run_until(
            *loop_, [&] { return host_->live_count() == 0 && slot_->loop_empty(); }, 2s);
        auto c = slot_->loop().counts();
        CHECK(gone, "live " + std::to_string(host_->live_count()) + ", state " +
                        (host_->alive(conn_) ? std::to_string(static_cast<int>(conn_->state()))
                                             : std::string("freed")) +
                        ", timers " + std::to_string(c.timers) + ", posts " +
                        std::to_string(c.posts) + ", tasks " + std::to_string(c.tasks));
        // At most one failure per throwing request, each named by its own marker.
        std::set<std::string> seen;
        for (const std::string& f : slot_->failures) {
            auto at = f.find("fuzz-throw-");
            CHECK(at != std::string::npos, "a failure no request threw: " + f);
            std::string marker = f.substr(at, f.find(' ', at) - at);
            CHECK(seen.insert(marker).second, "reported twice: " + f);
        }
        CHECK(slot_->failures.size() <= static_cast<std::size_t>(stats_.throws));
        CHECK(host_->busy_word.load() == 1);  // idle again after every plugin call
        CHECK(host_->done.size() <= host_->started + 1);
    }

    using Clock = herd::conn_test::Clock;
    FuzzedDataProvider in_;
    std::unique_ptr<herd::core::EventLoop> loop_;
    std::unique_ptr<PluginSlot> slot_;
    std::unique_ptr<FakeHost> host_;
    Client client_;
    Connection* conn_ = nullptr;
    Stats stats_;
    std::vector<herd::Responder> held_;
    std::vector<std::unique_ptr<Pusher>> pushers_;
    int cancels_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    tracing = std::getenv("HERD_FUZZ_TRACE") != nullptr;
    // The connection logs every refusal and failure: quiet, unless asked.
    if (std::getenv("HERD_FUZZ_LOG") == nullptr) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) herd::core::set_log_fd(null);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    Script script(data, size);
    script.run();
    return 0;
}
