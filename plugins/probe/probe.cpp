// probe: endpoints for tests and deployment checks (pid, environment, slow, crashing and
// stuck requests, messages between workers, printed output, and answers that come later:
// timers, streams, server-sent events, blocking work; fetching through herd's HTTP client;
// WebSockets, in probe_ws.hpp).
// Never mount it on a public address.
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <herd/herd.hpp>

#include "probe_ws.hpp"

namespace {

std::string query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        auto amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        auto eq = pair.find('=');
        if (pair.substr(0, eq) == name)
            return eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return {};
}

// "%2F" and "+" decoded (a URL passed in a query parameter); a bad escape stays as it is.
std::string percent_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        unsigned value = 0;
        if (s[i] == '%' && i + 2 < s.size() &&
            std::from_chars(s.data() + i + 1, s.data() + i + 3, value, 16).ptr ==
                s.data() + i + 3) {
            out += static_cast<char>(value);
            i += 2;
        } else {
            out += s[i] == '+' ? ' ' : s[i];
        }
    }
    return out;
}

// Reads query parameter `name` as a number from 0 to max into out, or answers 400 saying so.
bool number_param(const herd::Request& request, std::string_view name, long max,
                  std::string_view unit, herd::Response& response, long& out) {
    std::string text = query_param(request.query(), name);
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    if (ec == std::errc() && end == text.data() + text.size() && out >= 0 && out <= max)
        return true;
    response.set_status(400);
    response.set_body(std::string(name) + " must be a number of " + std::string(unit) +
                      " from 0 to " + std::to_string(max) + "\n");
    return false;
}

class Probe final : public herd::Plugin {
  public:
    // The endpoints that answer later; the others are handle()'s, answered at once.
    void respond(herd::Responder r) override {
        std::string_view path = r.request().subpath();
        if (path == "/wait" || path == "/wait-throw" || path == "/wait-forever" ||
            path == "/stream" || path == "/sse" || path == "/blocking" || path == "/watch" ||
            path == "/fetch" || path == "/redis/get" || path == "/redis/set" ||
            path == "/pg/ping" || path == "/pg/sleep")
            return herd::serve_coroutine(std::move(r),
                                         [this](herd::Responder& held) { return later(held); });
        if (path == "/wait-cb") return wait_callback(std::move(r));
        if (path.starts_with("/state-ack/")) return acknowledged_write(std::move(r));
        if (path == "/gate") return enter_gate(std::move(r));
        if (path == "/hold") {
            // Kept, and never answered or let go until the plugin is destroyed (a careless
            // plugin: no on_cancel, no scope): for the worker's stop.
            kept_.push_back(std::move(r));
            return;
        }
        if (path == "/drop") return;  // dropped without an answer: herd answers 500 and logs
        if (path.starts_with("/ws/")) {
            std::string_view query = r.request().query();
            if (sockets_.respond(r, path, query_param(query, "room"),
                                 query_param(query, "hello") == "1"))
                return;
        }
        Plugin::respond(std::move(r));
    }

    void on_start(herd::Context& ctx) override {
        ctx_ = &ctx;
        sockets_.start(ctx);
        // {"hang_on_start_slots": [1]}: on_start never returns in those slots (a plugin stuck
        // connecting to something at start-up), for the master's start_timeout_ms.
        if (const auto& hang = ctx.config().value("hang_on_start_slots", nlohmann::json::array());
            hang.is_array())
            for (const auto& slot : hang)
                if (slot == ctx.worker_id())
                    for (;;) pause();
        // For bench/state.py: when this worker's copy got each "bench." key (CLOCK_MONOTONIC,
        // the same clock in every process), served at /state-seen?key=K.
        ctx.state().watch("bench.", [this](std::string_view key, const nlohmann::json*) {
            if (seen_.size() >= 100000) seen_.clear();
            timespec ts{};
            clock_gettime(CLOCK_MONOTONIC, &ts);
            seen_[std::string(key)] =
                static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
        });
    }

    void handle(const herd::Request& request, herd::Response& response) override {
        std::string_view path = request.subpath();
        response.add_header("Content-Type", "text/plain");
        if (path == "/pid") {
            answer_pid(response);
        } else if (path == "/print") {
            // What a plugin prints reaches the master's log: `lines` lines of `text` on
            // stdout, one on stderr, and with tail=1 a last stderr line without a newline.
            long lines = 1;
            if (!query_param(request.query(), "lines").empty() &&
                !number_param(request, "lines", 1000000, "lines", response, lines))
                return;
            std::string text = query_param(request.query(), "text");
            for (long i = 0; i < lines; ++i) std::printf("%s %ld\n", text.c_str(), i);
            std::fflush(stdout);
            std::fprintf(stderr, "%s on stderr\n", text.c_str());
            if (query_param(request.query(), "tail") == "1")
                std::fprintf(stderr, "%s unfinished", text.c_str());
            response.set_body("printed\n");
        } else if (path.starts_with("/state/")) {
            answer_state(request, std::string(path.substr(7)), response);
        } else if (path == "/state-seen") {
            auto it = seen_.find(query_param(request.query(), "key"));
            response.add_header("X-Pid", std::to_string(getpid()));
            if (it == seen_.end()) {
                response.set_status(404);
                response.set_body("not seen\n");
            } else {
                response.set_body(std::to_string(it->second));
            }
        } else if (path == "/state-range") {
            // ?prefix=P&count=N: which of the keys P0 .. P(N-1) this worker's copy has.
            long count = 0;
            if (!number_param(request, "count", 100000, "keys", response, count)) return;
            std::string prefix = query_param(request.query(), "prefix");
            nlohmann::json present = nlohmann::json::array();
            for (long i = 0; i < count; ++i)
                if (ctx_->state().find(prefix + std::to_string(i)) != nullptr) present.push_back(i);
            response.set_header("Content-Type", "application/json");
            response.set_body(nlohmann::json{
                {"pid", getpid()}, {"version", ctx_->state().version()}, {"present", present}}
                                  .dump());
        } else if (path == "/state-writes") {
            // The outcome of this worker's PUTs and DELETEs, as the broker acknowledged them.
            response.add_header("Content-Type", "application/json");
            response.set_body(writes_.dump());
        } else if (path.starts_with("/env/")) {
            std::string name(path.substr(5));
            const char* value = std::getenv(name.c_str());
            if (value == nullptr) {
                response.set_status(404);
                response.set_body("no variable " + name + "\n");
            } else {
                response.set_body(value);
            }
        } else if (path == "/sleep") {
            long n = 0;
            if (!number_param(request, "ms", 600000, "milliseconds", response, n)) return;
            // Logged so a test can tell the request is in flight without guessing.
            ctx_->log().info("sleeping " + std::to_string(n) + " ms");
            std::this_thread::sleep_for(std::chrono::milliseconds(n));
            answer_pid(response);
        } else if (path == "/broadcast") {
            if (request.method() != "POST") {
                response.set_status(405);
                response.add_header("Allow", "POST");
                return;
            }
            // A JSON body is sent as JSON, anything else as a string.
            auto message = nlohmann::json::parse(request.body(), nullptr, false);
            if (message.is_discarded()) message = std::string(request.body());
            bool sent = ctx_->broadcast(message);
            response.set_status(sent ? 202 : 503);
            response.set_body(sent ? "sent\n" : "the master cannot be reached\n");
        } else if (path == "/alloc") {
            // Holds N MiB of touched memory (up to 1024) until the worker exits: for testing
            // max_rss_mb.
            long n = 0;
            if (!number_param(request, "mb", 1024, "MiB", response, n)) return;
            held_.emplace_back(static_cast<std::size_t>(n) << 20, '\1');
            answer_pid(response);
        } else if (path == "/gate-open") {
            bool sent = ctx_->broadcast(nlohmann::json{{"gate", "open"}});
            response.set_status(sent ? 202 : 503);
            response.set_body(sent ? "opening\n" : "the master cannot be reached\n");
        } else if (path == "/async-stats") {
            response.set_header("Content-Type", "application/json");
            response.set_body(nlohmann::json{
                {"cancelled", cancelled_},
                {"gate", gate_.size()},
                {"drain_waits", drain_waits_},
                {"stream_bytes", stream_bytes_},
                {"pid", getpid()}}.dump());
        } else if (path == "/inbox") {
            response.set_header("Content-Type", "application/json");
            response.set_body(inbox_.dump());
        } else if (path == "/throw") {
            throw std::runtime_error("probe: /throw was requested");
        } else if (path == "/segv") {
            // A real segmentation fault, on purpose: a write to a page mapped with no access
            // (not a null pointer, which sanitizers would report as undefined behaviour).
            void* page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (page == MAP_FAILED) throw std::runtime_error("probe: /segv: mmap failed");
            *static_cast<volatile int*>(page) = 1;
        } else if (path == "/spin") {
            volatile unsigned long spins = 0;
            for (;;) spins = spins + 1;  // an endless loop, on purpose (the watchdog's test)
        } else {
            response.set_status(404);
            response.set_body("probe: no endpoint " + std::string(path) + "\n");
        }
    }

  private:
    // The coroutine endpoints. /wait?ms=N: the pid after a timer of N ms. /wait-throw?ms=N:
    // throws after it. /wait-forever: answers only if cancelled (never). /stream?chunks=N&ms=M
    // [&size=S][&ignore_backpressure=1]: N pieces M ms apart ("chunk i" lines, or S bytes),
    // waiting for the client whenever write() says full (unless told to ignore it).
    // /sse?events=N&ms=M[&keepalive=K]: N events M ms apart. /blocking?ms=N: sleeps N ms on the
    // blocking pool, answers "pid thread". /fetch?url=URL[&max_bytes=N][&timeout_ms=M]: fetches
    // URL (percent-encoded) with herd's HTTP client, tied to this request (a response body of at
    // most N bytes, a first byte within M ms), and answers the upstream's status and body (502
    // and the client's error when there is no response). /redis/get?key=K and PUT
    // /redis/set?key=K (the body is the value): through herd's Redis client at config.redis;
    // the value (404 when there is none) or "OK", 503 and the client's error when Redis fails.
    // /pg/ping: SELECT 1 through herd's PostgreSQL client at config.postgres, answers "1";
    // /pg/sleep?ms=N: SELECT pg_sleep(N/1000), tied to the request (a client that leaves
    // cancels it on the server); 503 and the client's error when PostgreSQL fails.
    herd::Task<> later(herd::Responder& r) {
        const herd::Request& request = r.request();
        herd::Response& response = r.response();
        herd::Loop& loop = ctx_->loop();
        std::string path(request.subpath());
        response.add_header("Content-Type", "text/plain");
        long ms = 0;
        try {
            if (path == "/wait" || path == "/wait-throw") {
                if (!number_param(request, "ms", 600000, "milliseconds", response, ms)) co_return;
                auto nap = loop.sleep_for(std::chrono::milliseconds(ms));
                co_await nap;
                if (path == "/wait-throw")
                    throw std::runtime_error("probe: /wait-throw after " + std::to_string(ms) +
                                             " ms");
                answer_pid(response);
                std::string tag = query_param(request.query(), "tag");
                if (!tag.empty()) response.append(" " + tag);
            } else if (path == "/wait-forever") {
                auto nap = loop.sleep_for(std::chrono::hours(24));
                co_await nap;
                response.set_body("a day went by\n");
            } else if (path == "/stream") {
                long chunks = 0, size = 0;
                if (!number_param(request, "chunks", 1000000, "pieces", response, chunks) ||
                    !number_param(request, "ms", 600000, "milliseconds", response, ms))
                    co_return;
                if (!query_param(request.query(), "size").empty() &&
                    !number_param(request, "size", 1 << 20, "bytes", response, size))
                    co_return;
                bool heed = query_param(request.query(), "ignore_backpressure") != "1";
                for (long i = 0; i < chunks; ++i) {
                    if (i > 0 && ms > 0) {
                        auto nap = loop.sleep_for(std::chrono::milliseconds(ms));
                        co_await nap;
                    }
                    std::string piece = size > 0 ? std::string(static_cast<std::size_t>(size), 'x')
                                                 : "chunk " + std::to_string(i) + "\n";
                    stream_bytes_ += piece.size();
                    if (!r.write(piece) && heed) {
                        ++drain_waits_;
                        auto room = r.drained();
                        try {
                            co_await room;
                        } catch (...) {
                            --drain_waits_;
                            throw;
                        }
                        --drain_waits_;
                    }
                }
                r.end();
            } else if (path == "/sse") {
                long events = 0, keepalive = 15000;
                if (!number_param(request, "events", 1000000, "events", response, events) ||
                    !number_param(request, "ms", 600000, "milliseconds", response, ms))
                    co_return;
                if (!query_param(request.query(), "keepalive").empty() &&
                    !number_param(request, "keepalive", 600000, "milliseconds", response,
                                  keepalive))
                    co_return;
                herd::EventStream stream(r, std::chrono::milliseconds(keepalive));
                for (long i = 0; i < events; ++i) {
                    if (ms > 0) {
                        auto nap = loop.sleep_for(std::chrono::milliseconds(ms));
                        co_await nap;
                    }
                    // The send time (CLOCK_MONOTONIC, ns), for bench/async.py's lateness.
                    timespec ts{};
                    clock_gettime(CLOCK_MONOTONIC, &ts);
                    std::string data =
                        std::to_string(i) + " " +
                        std::to_string(static_cast<std::int64_t>(ts.tv_sec) * 1000000000 +
                                       ts.tv_nsec);
                    if (!stream.send(data, "tick", std::to_string(i))) {
                        auto room = r.drained();
                        co_await room;
                    }
                }
                r.end();
            } else if (path == "/watch") {
                // A descriptor of its own (a timerfd armed for ms), waited on with the loop's
                // watch: the pid once it is readable. Closed however the wait ends.
                if (!number_param(request, "ms", 600000, "milliseconds", response, ms)) co_return;
                struct Fd {
                    int fd;
                    ~Fd() {
                        if (fd >= 0) ::close(fd);
                    }
                } timer{timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)};
                if (timer.fd < 0) throw std::runtime_error("probe: /watch: timerfd_create failed");
                itimerspec spec{};
                spec.it_value.tv_sec = ms / 1000;
                spec.it_value.tv_nsec = ms % 1000 * 1000000 + 1;  // never all zero (disarmed)
                timerfd_settime(timer.fd, 0, &spec, nullptr);
                auto turn = loop.yield();  // a turn of the loop first: posted work
                co_await turn;
                auto ready = loop.wait_readable(timer.fd);
                unsigned seen = co_await ready;
                std::uint64_t expirations = 0;
                if (!(seen & herd::Loop::readable) ||
                    ::read(timer.fd, &expirations, sizeof expirations) != sizeof expirations)
                    throw std::runtime_error("probe: /watch: the timerfd was not readable");
                answer_pid(response);
            } else if (path == "/fetch") {
                std::string url = percent_decode(query_param(request.query(), "url"));
                if (url.empty()) {
                    response.set_status(400);
                    response.set_body("probe: /fetch needs url=URL (percent-encoded)\n");
                    co_return;
                }
                herd::HttpRequest q;
                q.url = url;
                long limit = 0;
                if (!query_param(request.query(), "max_bytes").empty() &&
                    !number_param(request, "max_bytes", 1L << 30, "bytes", response, limit))
                    co_return;
                q.max_response_bytes = static_cast<std::size_t>(limit);
                if (!query_param(request.query(), "timeout_ms").empty()) {
                    if (!number_param(request, "timeout_ms", 600000, "milliseconds", response, ms))
                        co_return;
                    q.first_byte_timeout = std::chrono::milliseconds(ms);
                }
                auto upstream = ctx_->http().request(std::move(q));
                try {
                    herd::HttpReply reply = co_await upstream;
                    response.set_status(reply.status);
                    response.set_body(reply.body);
                } catch (const herd::ClientError& e) {
                    response.set_status(502);
                    response.set_body(std::string("probe: /fetch: ") + e.what() + "\n");
                }
            } else if (path == "/redis/get" || path == "/redis/set") {
                std::string key = percent_decode(query_param(request.query(), "key"));
                bool set = path == "/redis/set";
                if (key.empty() || (set && request.method() != "PUT")) {
                    response.set_status(key.empty() ? 400 : 405);
                    response.set_body("probe: " + path + (set ? " takes PUT and" : "") +
                                      " needs key=K\n");
                    co_return;
                }
                try {
                    if (set) {
                        auto write = ctx_->redis().set(key, std::string(request.body()));
                        co_await write;
                        response.set_body("OK");
                    } else {
                        auto read = ctx_->redis().get(key);
                        std::optional<std::string> value = co_await read;
                        if (value)
                            response.set_body(*value);
                        else
                            response.set_status(404);
                    }
                } catch (const herd::ClientError& e) {
                    response.set_status(503);
                    response.set_body(std::string("probe: ") + path + ": " + e.what() + "\n");
                }
            } else if (path == "/pg/ping" || path == "/pg/sleep") {
                std::string sql = "SELECT 1 AS one";
                herd::PgParams params;
                if (path == "/pg/sleep") {
                    if (!number_param(request, "ms", 600000, "milliseconds", response, ms))
                        co_return;
                    sql = "SELECT pg_sleep($1::float8 / 1000) IS NULL AS one";
                    params.push_back(std::to_string(ms));
                }
                try {
                    auto q = ctx_->postgres().query(sql, std::move(params));
                    herd::PgResult result = co_await q;
                    response.set_body(result.to_json().at(0).at("one").dump());
                } catch (const herd::ClientError& e) {
                    response.set_status(503);
                    response.set_body(std::string("probe: ") + path + ": " + e.what() + "\n");
                }
            } else if (path == "/blocking") {
                if (!number_param(request, "ms", 600000, "milliseconds", response, ms)) co_return;
                auto job = loop.blocking([ms] {
                    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
                    return static_cast<long>(syscall(SYS_gettid));
                });
                long thread = co_await job;
                response.set_body(std::to_string(getpid()) + " " + std::to_string(thread));
            }
        } catch (const herd::Cancelled&) {
            ++cancelled_;
            throw;
        }
    }

    // /wait-cb?ms=N: /wait with a callback instead of a coroutine: the timer is tied to the
    // request, so it goes if the request is cancelled.
    void wait_callback(herd::Responder r) {
        long ms = 0;
        if (!number_param(r.request(), "ms", 600000, "milliseconds", r.response(), ms)) {
            r.send();
            return;
        }
        r.on_cancel([this] { ++cancelled_; });
        herd::Scope& scope = r.scope();
        ctx_->loop().after(
            std::chrono::milliseconds(ms),
            [r = std::move(r)]() mutable {
                r.response().add_header("Content-Type", "text/plain");
                answer_pid(r.response());
                r.send();
            },
            &scope);
    }

    // PUT /state-ack/KEY (the body is the JSON value): answered once the broker has answered
    // the write: 200 "ok" when it is acknowledged, 503 and the error when it failed.
    void acknowledged_write(herd::Responder r) {
        const herd::Request& request = r.request();
        r.response().add_header("Content-Type", "text/plain");
        auto value = nlohmann::json::parse(request.body(), nullptr, false);
        if (request.method() != "PUT" || value.is_discarded()) {
            r.response().set_status(request.method() != "PUT" ? 405 : 400);
            r.response().set_body(request.method() != "PUT" ? "PUT only\n"
                                                            : "the body is not JSON\n");
            r.send();
            return;
        }
        std::string key(request.subpath().substr(11));
        auto held = std::make_shared<herd::Responder>(std::move(r));
        ctx_->state().set(key, std::move(value), [held](bool ok, const std::string& error) {
            held->response().set_status(ok ? 200 : 503);
            held->response().set_body(ok ? "ok\n" : error + "\n");
            held->send();
        });
    }

    // /gate?tag=T: held (callback style) until POST /gate-open, broadcast to every worker of
    // the app, answers all held requests with "pid T". A cancelled request leaves the gate.
    void enter_gate(herd::Responder r) {
        std::uint64_t id = next_gate_++;
        r.on_cancel([this, id] {
            ++cancelled_;
            gate_.erase(id);
        });
        std::string tag = query_param(r.request().query(), "tag");
        gate_.emplace(id, std::make_pair(std::move(tag), std::move(r)));
    }
    void open_gate() {
        auto held = std::move(gate_);
        gate_.clear();
        for (auto& [id, entry] : held) {
            herd::Responder& r = entry.second;
            r.response().add_header("Content-Type", "text/plain");
            r.response().set_body(std::to_string(getpid()) + " " + entry.first);
            r.send();
        }
    }

    // GET: the value in this worker's copy (404 when absent), with its version in a header.
    // PUT (the body is the JSON value) and DELETE go to the broker: 202 at once; the outcome
    // is listed at /state-writes when the broker has answered.
    void answer_state(const herd::Request& request, const std::string& key,
                      herd::Response& response) {
        herd::State& state = ctx_->state();
        response.add_header("X-State-Version", std::to_string(state.version()));
        response.add_header("X-Pid", std::to_string(getpid()));
        if (request.method() == "GET") {
            const nlohmann::json* value = state.find(key);
            if (value == nullptr) {
                response.set_status(404);
                response.set_body("no key " + key + "\n");
                return;
            }
            response.add_header("Content-Type", "application/json");
            response.set_body(value->dump());
            return;
        }
        auto done = [this, key, op = std::string(request.method())](bool ok,
                                                                    const std::string& error) {
            if (writes_.size() >= 1000) writes_.erase(writes_.begin());
            writes_.push_back({{"op", op}, {"key", key}, {"ok", ok}, {"error", error}});
        };
        if (request.method() == "PUT") {
            auto value = nlohmann::json::parse(request.body(), nullptr, false);
            if (value.is_discarded()) {
                response.set_status(400);
                response.set_body("the body is not JSON\n");
                return;
            }
            state.set(key, std::move(value), done);
        } else if (request.method() == "DELETE") {
            state.erase(key, done);
        } else {
            response.set_status(405);
            response.set_body("GET, PUT or DELETE\n");
            return;
        }
        response.set_status(202);
        response.set_body("sent to the broker\n");
    }

    static void answer_pid(herd::Response& response) {
        response.set_body(std::to_string(getpid()));
    }

    void on_message(const nlohmann::json& message, int from_worker) override {
        if (message == nlohmann::json{{"gate", "open"}}) {
            open_gate();
            return;
        }
        // Bounded: a test sending without end must not grow a worker without end.
        if (inbox_.size() >= 1000) inbox_.erase(inbox_.begin());
        inbox_.push_back({{"from", from_worker}, {"message", message}});
    }

    herd::Context* ctx_ = nullptr;
    std::uint64_t cancelled_ = 0;  // handlers that ended by cancellation
    std::map<std::uint64_t, std::pair<std::string, herd::Responder>> gate_;
    std::uint64_t next_gate_ = 1;
    std::vector<herd::Responder> kept_;  // /hold
    std::uint64_t drain_waits_ = 0;      // /stream coroutines waiting for the client to read
    std::uint64_t stream_bytes_ = 0;     // written by /stream, all streams together
    nlohmann::json writes_ = nlohmann::json::array();
    std::map<std::string, std::int64_t> seen_;
    std::vector<std::string> held_;  // /alloc
    nlohmann::json inbox_ = nlohmann::json::array();
    ProbeSockets sockets_;  // /ws/...
};

}  // namespace

HERD_PLUGIN(Probe)
