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

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include <boost/core/demangle.hpp>
#include <nlohmann/json.hpp>

#include "herd/context.hpp"
#include "herd/http.hpp"
#include "herd/loop.hpp"
#include "herd/plugin.hpp"
#include "herd/responder.hpp"
#include "herd/scope.hpp"
#include "herd/state.hpp"
#include "herd/task.hpp"

namespace herd::testing {

// "std::runtime_error: boom" for an exception.
inline std::string describe(std::exception_ptr error) {
    try {
        std::rethrow_exception(std::move(error));
    } catch (const std::exception& e) {
        return boost::core::demangle(typeid(e).name()) + ": " + e.what();
    } catch (...) {
        return "an exception that is not a std::exception";
    }
}

// ---- Requests

// Builds a Request as herd's parser would fill it. The bytes live in the builder: the Request
// that request() returns is valid until the builder is changed, copied over or destroyed.
// Headers are exactly those added (no Host or Content-Length is invented).
class RequestBuilder {
  public:
    explicit RequestBuilder(std::string_view method = "GET", std::string_view target = "/")
        : method_(method), target_(target) {}

    RequestBuilder& method(std::string_view m) {
        method_ = m;
        return *this;
    }
    // As sent: "/a/b?x=1", or absolute-form "http://host/a?x=1".
    RequestBuilder& target(std::string_view t) {
        target_ = t;
        return *this;
    }
    RequestBuilder& version(int major, int minor) {
        major_ = major;
        minor_ = minor;
        return *this;
    }
    RequestBuilder& header(std::string_view name, std::string_view value) {
        headers_.emplace_back(name, value);
        return *this;
    }
    RequestBuilder& body(std::string_view b) {
        body_ = b;
        return *this;
    }
    std::string_view method() const noexcept { return method_; }
    std::string_view target() const noexcept { return target_; }

    // The request routed to a plugin mounted at `mount` (subpath() is the path below it).
    // std::invalid_argument when herd would not route this path to that mount.
    const Request& request(std::string_view mount = "/") {
        Request& r = request_;
        std::string_view t = target_;
        r.method_ = method_;
        r.target_ = t;
        r.path_len_ = std::min(t.find('?'), t.size());
        r.path_start_ = 0;
        if (!t.starts_with('/')) {  // absolute-form: the path starts after the authority
            auto scheme = t.find("://");
            if (scheme != std::string_view::npos && scheme < r.path_len_) {
                auto slash = t.find('/', scheme + 3);
                r.path_start_ =
                    slash == std::string_view::npos || slash > r.path_len_ ? r.path_len_ : slash;
            }
        }
        std::string_view path = r.path();
        bool under = mount == "/" || (path.starts_with(mount) &&
                                      (path.size() == mount.size() || path[mount.size()] == '/'));
        if (!under)
            throw std::invalid_argument("herd::testing::RequestBuilder: herd routes path \"" +
                                        std::string(path) + "\" to no plugin mounted at \"" +
                                        std::string(mount) + "\"");
        r.mount_len_ = mount == "/" ? 0 : mount.size();
        r.major_ = major_;
        r.minor_ = minor_;
        r.headers_.clear();
        for (const auto& [name, value] : headers_) r.headers_.push_back(Header{name, value});
        r.header_count_ = r.headers_.size();
        r.body_ = body_;
        // As llhttp_should_keep_alive: HTTP/1.1 unless "Connection: close", HTTP/1.0 only with
        // "Connection: keep-alive".
        auto connection = r.header("Connection");
        r.keep_alive_ = major_ == 1 && minor_ >= 1
                            ? !(connection && iequals(*connection, "close"))
                            : connection && iequals(*connection, "keep-alive");
        return r;
    }

  private:
    std::string method_;
    std::string target_;
    int major_ = 1;
    int minor_ = 1;
    std::vector<std::pair<std::string, std::string>> headers_;
    std::string body_;
    Request request_;
};

// ---- The loop

// herd::Loop on a manual clock. Nothing runs until the test says: run_until_idle() runs what
// is ready now (posted callbacks, blocking work, due timers, and whatever those make ready),
// advance(d) moves the clock, firing each timer at its own time, in order. Callbacks run
// as the worker runs plugin code: an exception escaping one (but Cancelled) is a plugin
// failure, recorded in failures().
class FakeLoop final : public Loop, private detail::TaskOwner {
  public:
    explicit FakeLoop(TimePoint start = TimePoint(std::chrono::hours(24))) : now_(start) {}
    FakeLoop(const FakeLoop&) = delete;
    FakeLoop& operator=(const FakeLoop&) = delete;
    ~FakeLoop() { stop(); }

    TimePoint now() const noexcept override { return now_; }
    Id at(TimePoint when, Callback fn, Scope* scope = nullptr) override {
        Id id;
        Reg* r = make(Kind::timer, scope, false, id);
        if (r == nullptr) return id;
        r->fn = std::move(fn);
        arm(*r, when);
        return id;
    }
    Id watch(int fd, unsigned, Function<void(unsigned)>, Scope* = nullptr) override {
        throw std::logic_error("herd::testing::FakeLoop cannot watch descriptors (fd " +
                               std::to_string(fd) +
                               "): test the code behind the descriptor without the loop");
    }
    void rewatch(Id id, unsigned) override {
        throw std::logic_error("herd::testing::FakeLoop::rewatch(" + std::to_string(id) +
                               "): the fake loop has no watches");
    }
    Id post(Callback fn, Scope* scope = nullptr) override {
        Id id;
        Reg* r = make(Kind::post, scope, false, id);
        if (r == nullptr) return id;
        r->fn = std::move(fn);
        ready_.push_back(id);
        return id;
    }
    // The work runs inline (in the test's thread) in the next iteration, then done.
    Id run_blocking(Function<void()> work, Function<void(std::exception_ptr)> done,
                    Scope* scope = nullptr) override {
        Id id;
        Reg* r = make(Kind::job, scope, false, id);
        if (r == nullptr) return id;
        r->work = std::move(work);
        r->done = std::move(done);
        ready_.push_back(id);
        return id;
    }
    bool cancel(Id id) noexcept override {
        auto it = regs_.find(id);
        if (it == regs_.end()) return false;
        std::unique_ptr<Reg> r = std::move(it->second);
        regs_.erase(it);
        r->unlink();
        if (r->kind == Kind::timer) timers_.erase({r->when, id});
        r.reset();  // its callback's destructor may call back into the loop
        return true;
    }
    void spawn(Task<> task, Scope* scope = nullptr) override {
        auto h = task.release();
        if (!h) return;
        if (stopped_) {
            h.destroy();
            return;
        }
        h.promise().scope = scope != nullptr ? scope : &scope_;
        h.promise().owner = this;
        tasks_.insert(h.address());
        // It starts in the next iteration, never inside the call that spawned it.
        host_post([this, frame = h.address()] {
            if (tasks_.contains(frame)) std::coroutine_handle<>::from_address(frame).resume();
        });
    }
    Scope& scope() noexcept override { return scope_; }

    // ---- For the test

    // Runs iterations until nothing is ready at the current time. std::runtime_error after a
    // million iterations (work that posts itself again and again never idles).
    void run_until_idle() {
        for (int rounds = 0; step(); ++rounds)
            if (rounds == 1000000)
                throw std::runtime_error(
                    "herd::testing::FakeLoop: still busy after a million iterations (work that "
                    "posts itself, or a timer that re-arms at now()?)");
    }
    // Moves the clock by d: each timer due on the way fires at its time (now() tells it), in
    // the order of their times (of registration, for equal times), with what they make ready
    // run in between; then whatever is ready at the end.
    void advance(Duration d) {
        TimePoint end = now_ + d;
        run_until_idle();
        while (!timers_.empty() && timers_.begin()->first <= end) {
            now_ = std::max(now_, timers_.begin()->first);
            run_until_idle();
        }
        now_ = std::max(now_, end);
        run_until_idle();
    }
    // When the next timer is due (the plugin's or the harness's), if any.
    std::optional<TimePoint> next_timer() const {
        if (timers_.empty()) return std::nullopt;
        return timers_.begin()->first;
    }
    // What the plugin has registered and not yet run or cancelled (timers, posts, blocking
    // work), and background coroutines still alive: 0 once everything was cleaned up.
    std::size_t pending() const {
        std::size_t n = tasks_.size();
        for (const auto& [id, r] : regs_) n += r->host ? 0 : 1;
        return n;
    }
    // Every plugin failure so far: "std::runtime_error: boom (in a loop callback)".
    const std::vector<std::string>& failures() const noexcept { return failures_; }

    // The plugin stops, as in the worker: its scope is cancelled (its coroutines resume with
    // Cancelled), every registration left is removed without running, the coroutines still
    // suspended are destroyed, and later registrations are dropped.
    void stop() {
        if (stopped_) return;
        stopped_ = true;
        scope_.cancel("the plugin is stopping");
        while (!regs_.empty()) cancel(regs_.begin()->first);
        ready_.clear();
        auto frames = std::move(tasks_);
        tasks_.clear();
        for (void* frame : frames) std::coroutine_handle<>::from_address(frame).destroy();
    }

    // ---- For the kit (the Harness, the State): herd's own work, not the plugin's. It is not
    // counted in pending() and is not plugin code (it guards the plugin code it runs itself).
    Id host_post(Callback fn) {
        Id id;
        Reg* r = make(Kind::post, nullptr, true, id);
        if (r == nullptr) return id;
        r->fn = std::move(fn);
        ready_.push_back(id);
        return id;
    }
    Id host_at(TimePoint when, Callback fn) {
        Id id;
        Reg* r = make(Kind::timer, nullptr, true, id);
        if (r == nullptr) return id;
        r->fn = std::move(fn);
        arm(*r, when);
        return id;
    }
    // Runs plugin code under the worker's policy; false when it failed (recorded).
    template <class F>
    bool guarded(std::string_view entry, F&& fn) {
        try {
            std::forward<F>(fn)();
            return true;
        } catch (...) {
            return !record_failure(std::current_exception(), entry);
        }
    }
    // Records error as a plugin failure in `entry`; false for a null one or a Cancelled.
    bool record_failure(std::exception_ptr error, std::string_view entry) {
        if (!error) return false;
        try {
            std::rethrow_exception(error);
        } catch (const Cancelled&) {
            return false;
        } catch (...) {
        }
        failures_.push_back(describe(error) + " (" + std::string(entry) + ")");
        return true;
    }

  private:
    enum class Kind { timer, post, job };
    struct Reg final : CancelHook {
        FakeLoop* owner = nullptr;
        Id id = 0;
        Kind kind = Kind::timer;
        bool host = false;
        TimePoint when{};
        Callback fn;
        Function<void()> work;
        Function<void(std::exception_ptr)> done;
        void on_cancel() noexcept override { owner->cancel(id); }
    };

    // Null when the scope is cancelled already or the plugin stopped: the callback is dropped
    // (as if cancelled at once; id is still a fresh one).
    Reg* make(Kind kind, Scope* scope, bool host, Id& id) {
        id = next_id_++;
        if (stopped_) return nullptr;
        auto r = std::make_unique<Reg>();
        r->owner = this;
        r->id = id;
        r->kind = kind;
        r->host = host;
        if (!host && !(scope != nullptr ? *scope : scope_).add_hook(*r)) return nullptr;
        Reg* raw = r.get();
        regs_.emplace(raw->id, std::move(r));
        return raw;
    }
    void arm(Reg& r, TimePoint when) {
        r.when = when;
        timers_.insert({when, r.id});
    }

    // One iteration: the timers due now, then the posts and blocking work queued before it.
    bool step() {
        std::vector<Id> due;
        for (const auto& [when, id] : timers_) {
            if (when > now_) break;
            due.push_back(id);
        }
        std::deque<Id> posted = std::exchange(ready_, {});
        bool ran = false;
        for (Id id : due) ran = fire(id) || ran;
        for (Id id : posted) ran = fire(id) || ran;
        return ran;
    }
    bool fire(Id id) {
        auto it = regs_.find(id);
        if (it == regs_.end()) return false;  // cancelled meanwhile
        std::unique_ptr<Reg> r = std::move(it->second);
        regs_.erase(it);
        r->unlink();
        if (r->kind == Kind::timer) timers_.erase({r->when, id});
        if (r->host) {
            r->fn();
        } else if (r->kind == Kind::job) {
            std::exception_ptr error;
            try {
                r->work();
            } catch (...) {
                error = std::current_exception();
            }
            guarded("in a blocking work's completion", [&] { r->done(std::move(error)); });
        } else {
            guarded("in a loop callback", r->fn);
        }
        return true;
    }

    void task_finished(std::coroutine_handle<> frame, std::exception_ptr error) noexcept override {
        tasks_.erase(frame.address());
        frame.destroy();
        record_failure(std::move(error), "in a background coroutine (Loop::spawn)");
    }

    TimePoint now_;
    BasicScope scope_;
    std::map<Id, std::unique_ptr<Reg>> regs_;
    std::set<std::pair<TimePoint, Id>> timers_;
    std::deque<Id> ready_;  // posts and blocking work, in order
    std::set<void*> tasks_;
    std::vector<std::string> failures_;
    Id next_id_ = 1;
    bool stopped_ = false;
};

// ---- The context

// An in-memory State: writes apply at once, as if the broker accepted them; watchers and done
// callbacks run in the loop's next iteration. apply() and remove() are changes made elsewhere
// (another worker). Keys are checked as the worker checks them (1 to 1024 bytes, no control
// characters) and values up to 1 MiB serialized.
class FakeState final : public State {
  public:
    explicit FakeState(FakeLoop& loop) : loop_(loop) {}

    std::optional<nlohmann::json> get(std::string_view key) const override {
        const nlohmann::json* v = find(key);
        return v != nullptr ? std::optional<nlohmann::json>(*v) : std::nullopt;
    }
    const nlohmann::json* find(std::string_view key) const override {
        auto it = values_.find(key);
        return it != values_.end() ? &it->second : nullptr;
    }
    std::uint64_t version() const override { return version_; }
    bool synced() const override { return true; }
    WatchId watch(std::string_view prefix, WatchCallback callback) override {
        watches_.emplace(next_watch_, Watch{std::string(prefix), std::move(callback)});
        return next_watch_++;
    }
    void unwatch(WatchId id) override { watches_.erase(id); }
    void set(std::string_view key, nlohmann::json value, DoneCallback done) override {
        std::string error = check(key);
        if (error.empty() && value.dump().size() > (1u << 20))
            error = "the value of \"" + std::string(key) + "\" is larger than 1 MiB serialized";
        if (!error.empty()) return finish(std::move(done), error);
        apply(key, std::move(value));
        finish(std::move(done), {});
    }
    void erase(std::string_view key, DoneCallback done) override {
        std::string error = check(key);
        if (error.empty()) remove(key);
        finish(std::move(done), error);
    }

    // Changes from elsewhere: applied now, watchers told in the next iteration.
    void apply(std::string_view key, nlohmann::json value) {
        values_[std::string(key)] = std::move(value);
        changed(key);
    }
    void remove(std::string_view key) {
        auto it = values_.find(key);
        if (it == values_.end()) return;
        values_.erase(it);
        changed(key);
    }
    const std::map<std::string, nlohmann::json, std::less<>>& values() const { return values_; }

  private:
    struct Watch {
        std::string prefix;
        WatchCallback fn;
    };
    static std::string check(std::string_view key) {
        bool control = std::any_of(key.begin(), key.end(), [](char c) {
            return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
        });
        if (key.empty() || key.size() > 1024 || control)
            return "invalid key \"" + std::string(key.substr(0, 64)) +
                   "\": 1 to 1024 bytes without control characters";
        return {};
    }
    // Watchers hear of each change in order, with the value it set (later writes already
    // show in get(): this state applies them at once).
    void changed(std::string_view key) {
        ++version_;
        const nlohmann::json* now = find(key);
        auto value = now != nullptr ? std::optional<nlohmann::json>(*now) : std::nullopt;
        loop_.host_post([this, k = std::string(key), v = std::move(value)] {
            std::vector<WatchId> ids;
            for (const auto& [id, w] : watches_)
                if (k.starts_with(w.prefix)) ids.push_back(id);
            for (WatchId id : ids) {
                auto it = watches_.find(id);  // an earlier callback may have removed it
                if (it == watches_.end()) continue;
                WatchCallback fn = it->second.fn;
                loop_.guarded("in a state watch callback", [&] { fn(k, v ? &*v : nullptr); });
            }
        });
    }
    void finish(DoneCallback done, std::string error) {
        if (!done) return;
        loop_.host_post([this, done = std::move(done), error = std::move(error)] {
            loop_.guarded("in a state write's callback", [&] { done(error.empty(), error); });
        });
    }

    FakeLoop& loop_;
    std::map<std::string, nlohmann::json, std::less<>> values_;
    std::map<WatchId, Watch> watches_;
    std::uint64_t version_ = 1;
    WatchId next_watch_ = 1;
};

// What a plugin's logger wrote.
struct LogLine {
    Logger::Level level;
    std::string text;
};

// An HttpClient whose answers the test gives (Context::http() of a FakeContext): every
// request is recorded; a URL answered with on() gets that reply, one set with fail() that
// error, any other a ClientError of kind `connect` saying no fake answer was set. Answers
// arrive through the loop (run_until_idle() or advance()), never inside fetch(), and go with
// their scope when it is cancelled.
class FakeHttp final : public HttpClient {
  public:
    explicit FakeHttp(FakeLoop& loop) : loop_(loop) {}
    FakeHttp(const FakeHttp&) = delete;
    FakeHttp& operator=(const FakeHttp&) = delete;

    void on(std::string url, HttpReply reply) { answers_[std::move(url)] = std::move(reply); }
    void fail(std::string url, ClientError::Kind kind, std::string message) {
        failures_.insert_or_assign(std::move(url), ClientError(kind, std::move(message)));
    }
    const std::vector<HttpRequest>& requests() const noexcept { return requests_; }

    Id fetch(HttpRequest request, HttpHandlers handlers, Scope* scope = nullptr) override {
        requests_.push_back(request);
        Id id = next_id_++;
        std::optional<HttpReply> reply;
        std::optional<ClientError> error;
        if (auto a = answers_.find(request.url); a != answers_.end())
            reply = a->second;
        else if (auto f = failures_.find(request.url); f != failures_.end())
            error = f->second;
        else
            error = ClientError(ClientError::Kind::connect,
                                request.method + " " + request.url +
                                    ": no fake answer for this URL (FakeHttp::on)");
        posted_[id] = loop_.post(
            [this, id, h = std::move(handlers), reply = std::move(reply),
             error = std::move(error)]() mutable {
                posted_.erase(id);
                if (error) {
                    if (h.done) h.done(HttpReply(), &*error);
                    return;
                }
                if (h.head) {
                    HttpReply head = *reply;
                    head.body.clear();
                    h.head(head);
                    if (h.body && !reply->body.empty()) h.body(reply->body);
                    reply->body.clear();
                }
                if (h.done) h.done(std::move(*reply), nullptr);
            },
            scope);
        return id;
    }
    bool cancel(Id id) noexcept override {
        auto it = posted_.find(id);
        if (it == posted_.end()) return false;
        loop_.cancel(it->second);
        posted_.erase(it);
        return true;
    }

  private:
    FakeLoop& loop_;
    std::map<std::string, HttpReply> answers_;
    std::map<std::string, ClientError> failures_;
    std::vector<HttpRequest> requests_;
    std::map<Id, Loop::Id> posted_;
    Id next_id_ = 1;
};

// A Context with settable identity and config, recording what the plugin logs and sends.
class FakeContext final : public Context, private Logger {
  public:
    FakeContext() = default;
    explicit FakeContext(nlohmann::json config) : config_(std::move(config)) {}
    FakeContext(const FakeContext&) = delete;
    FakeContext& operator=(const FakeContext&) = delete;

    const nlohmann::json& config() const override { return config_; }
    Logger& log() override { return *this; }
    int worker_id() const override { return worker_id_; }
    std::string_view app() const override { return app_; }
    std::string_view mount() const override { return mount_; }
    bool send(const nlohmann::json& message) override {
        sent_.push_back(message);
        return reachable_;
    }
    bool broadcast(const nlohmann::json& message) override {
        broadcasts_.push_back(message);
        return reachable_;
    }
    FakeState& state() override { return state_; }
    FakeLoop& loop() override { return loop_; }
    FakeHttp& http() override { return http_; }

    void set_config(nlohmann::json config) { config_ = std::move(config); }
    void set_worker_id(int id) { worker_id_ = id; }
    void set_app(std::string_view app) { app_ = app; }
    void set_mount(std::string_view mount) { mount_ = mount; }
    // What send() and broadcast() return (false: "the master cannot be reached").
    void set_reachable(bool reachable) { reachable_ = reachable; }

    const std::vector<LogLine>& log_lines() const noexcept { return lines_; }
    // Whether some logged line contains text.
    bool logged(std::string_view text) const {
        return std::any_of(lines_.begin(), lines_.end(), [&](const LogLine& l) {
            return l.text.find(text) != std::string::npos;
        });
    }
    const std::vector<nlohmann::json>& sent() const noexcept { return sent_; }
    const std::vector<nlohmann::json>& broadcasts() const noexcept { return broadcasts_; }

  private:
    void write(Level level, std::string_view message) override {
        lines_.push_back(LogLine{level, std::string(message)});
    }

    nlohmann::json config_ = nlohmann::json::object();
    int worker_id_ = 0;
    std::string app_ = "app";
    std::string mount_ = "/";
    bool reachable_ = true;
    std::vector<LogLine> lines_;
    std::vector<nlohmann::json> sent_;
    std::vector<nlohmann::json> broadcasts_;
    FakeLoop loop_;  // before state_ and http_: they post into it
    FakeState state_{loop_};
    FakeHttp http_{loop_};
};

// ---- Requests in flight

// What the client got, and what became of the request.
struct Result {
    bool answered = false;  // a status and headers went out: send(), begin(), or herd's own
    int status = 0;         // 0 until answered
    std::vector<ResponseHeader> headers;  // the plugin's (herd adds Date, Content-Length, ...)
    std::string body;        // the body, or the streamed pieces so far, joined (none for HEAD)
    bool streamed = false;   // begin() or write(): a body in pieces
    bool ended = false;      // the whole response went out (sent, or the stream ended)
    bool dropped = false;    // the Responder went unanswered: herd answered 500 or cut the stream
    std::string herd_error;  // why herd answered in the plugin's place (500, 503, 504)
    std::string failure;     // what escaped respond() or the request's coroutine, if anything
    bool cancelled = false;  // the request's scope was cancelled (client gone, deadline, stop)
    std::string cancel_reason;
    bool done = false;       // the plugin holds nothing of it any more (coroutine returned too)
    std::size_t unsent = 0;  // streamed bytes the client has not read yet

    // The first header of that name (case-insensitive), if any.
    std::optional<std::string> header(std::string_view name) const {
        for (const ResponseHeader& h : headers)
            if (iequals(h.name, name)) return h.value;
        return std::nullopt;
    }
};

struct Options {
    nlohmann::json config = nlohmann::json::object();  // the plugin's "config"
    std::string mount = "/";
    std::string app = "app";
    int worker_id = 0;
    // The app's request_timeout_ms: an unanswered request gets 504 and is cancelled once the
    // fake clock passes it. Zero: no deadline.
    Loop::Duration request_timeout{};
    // Streaming: write() says "full" at high_water unsent bytes, when_writable fires at or
    // below low_water, and 16 times high_water cuts the client off (the worker's figures).
    std::size_t high_water = 64 << 10;
    std::size_t low_water = 16 << 10;
    // The client reads everything streamed, in the loop's next iteration. False: it reads
    // only when the test calls Call::client_read().
    bool client_reads = true;
};

class Harness;

// One request in flight: herd::Exchange as the worker's Connection implements it, without
// the socket. Made by Harness::start, alive as long as the harness.
class Call final : public Exchange, private detail::TaskOwner {
  public:
    Call(FakeLoop& loop, const Options& options, RequestBuilder request)
        : loop_(loop), options_(options), spec_(std::move(request)) {}
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;
    ~Call() {
        destroying_ = true;
        destroy_task();
        held_ = Responder();
    }

    Result result() const {
        Result r = result_;
        r.cancelled = scope_.cancelled();
        r.cancel_reason = std::string(scope_.why());
        r.done = !responder_out_ && !task_;
        r.unsent = unsent_;
        return r;
    }
    // The client goes away: the request is cancelled (if it is still in the plugin's hands).
    void client_gone(const std::string& why = "the client closed the connection") {
        bool active = exchange_active();
        state_ = State::closed;
        if (active) cancel_exchange(why);
    }
    // The app's request_timeout_ms passes now: an unanswered request gets 504 and is
    // cancelled (with Options::request_timeout this happens by itself on the fake clock).
    void expire() {
        disarm_deadline();
        if (state_ != State::waiting) return;
        herd_answer(504, "no answer within the request's deadline");
        state_ = State::closed;
        cancel_exchange("request_timeout_ms passed before the handler answered");
    }
    // The client reads up to `bytes` of what was streamed (all by default): when_writable
    // and drained() fire once the unsent bytes are at or below the low-water mark.
    void client_read(std::size_t bytes = std::numeric_limits<std::size_t>::max()) {
        unsent_ -= std::min(bytes, unsent_);
        notify_writable();
    }

    // ---- herd::Exchange, as the worker's Connection does it
    const Request& request() const noexcept override { return *request_; }
    Response& response() noexcept override { return response_; }
    Scope& scope() noexcept override { return scope_; }
    Loop& loop() noexcept override { return loop_; }
    void send() override {
        responder_out_ = false;
        if (state_ == State::streaming) return end();
        if (!can_answer()) return;
        std::string error = invalid(response_, response_.body().size());
        if (!error.empty()) {
            herd_answer(500, "the plugin gave an invalid response: " + error);
            return finish_exchange();
        }
        record_head(false);
        if (!head_only_) result_.body = response_.body();
        result_.ended = true;
        finish_exchange();
    }
    void begin_stream() override {
        if (!can_answer()) return;
        int status = response_.status();
        stream_body_ = !head_only_ && status != 204 && status != 304;
        std::string error = invalid(response_, 0);
        if (!error.empty()) {
            herd_answer(500, "the plugin gave an invalid response head: " + error);
            return finish_exchange();  // the responder's later writes go nowhere
        }
        disarm_deadline();  // it has answered: a stream lasts as long as it needs
        scope_.set_deadline(Loop::TimePoint::max());
        state_ = State::streaming;
        record_head(true);
        std::string body = std::move(response_.body());
        response_.body().clear();
        if (!body.empty()) write(body);
        schedule_flush();
    }
    bool write(std::string_view piece) override {
        if (scope_.cancelled() || state_ == State::closed) return false;
        if (can_answer()) begin_stream();
        if (state_ != State::streaming) return false;
        if (stream_body_) {
            result_.body.append(piece);
            unsent_ += piece.size();
        }
        if (unsent_ > 16 * options_.high_water) stream_cut_ = true;  // the next flush cuts
        schedule_flush();
        return unsent_ < options_.high_water && !stream_cut_;
    }
    void end() override {
        responder_out_ = false;
        if (can_answer()) return send();
        if (state_ != State::streaming || scope_.cancelled()) return;
        result_.ended = true;
        finish_exchange();
    }
    bool writable() const noexcept override {
        return !scope_.cancelled() && state_ != State::closed && unsent_ < options_.high_water &&
               !stream_cut_;
    }
    void when_writable(Callback fn) override {
        if (scope_.cancelled()) return;
        when_writable_ = std::move(fn);
        schedule_flush();
    }
    void on_cancel(Callback fn) override {
        if (scope_.cancelled()) return;
        on_cancel_ = std::move(fn);
    }
    void release() noexcept override {
        if (destroying_) return;
        responder_out_ = false;
        if (in_call_ || quiet_release_) return;  // inside respond(): dispatch() decides
        if (state_ == State::waiting && !scope_.cancelled()) {
            result_.dropped = true;
            plugin_failed("the plugin dropped its Responder without answering");
        } else if (state_ == State::streaming) {
            result_.dropped = true;
            plugin_failed("the plugin dropped its Responder in the middle of a stream");
        }
    }
    Responder& adopt(Responder&& responder) override {
        held_ = std::move(responder);
        return held_;
    }
    void run(Task<> task) override {
        auto h = task.release();
        if (!h) return;
        h.promise().scope = &scope_;
        h.promise().owner = this;
        task_ = h;
        h.resume();  // to its first suspension (or its end)
    }

  private:
    friend class Harness;
    enum class State { handling, waiting, streaming, answered, finished, closed };

    // As Connection::dispatch and after_call.
    void dispatch(Plugin& plugin, std::string_view mount) {
        request_ = &spec_.request(mount);
        head_only_ = request_->method() == "HEAD";
        auto timeout = options_.request_timeout;
        scope_.reset(timeout > Loop::Duration::zero() ? loop_.now() + timeout
                                                      : Loop::TimePoint::max());
        state_ = State::handling;
        responder_out_ = true;
        in_call_ = true;
        bool returned =
            guarded("in respond() while handling", [&] { plugin.respond(Responder(*this)); });
        in_call_ = false;
        if (!returned) {
            // The handler threw: the coroutine's responder goes without a word, the failure
            // is the answer.
            quiet_release_ = true;
            held_ = Responder();
            quiet_release_ = false;
            responder_out_ = false;
            return plugin_failed("the plugin threw");
        }
        if (answered_in_call_) {
            answered_in_call_ = false;
            return finish_exchange();
        }
        if (state_ != State::handling) return;  // streaming, or answered with a coroutine on
        if (!responder_out_ && !task_) {
            result_.dropped = true;
            return plugin_failed("the plugin dropped its Responder without answering");
        }
        state_ = State::waiting;
        if (scope_.deadline() != Loop::TimePoint::max())
            deadline_ = loop_.host_at(scope_.deadline(), [this] {
                deadline_ = 0;
                expire();
            });
    }

    bool can_answer() const {
        return !scope_.cancelled() &&
               ((state_ == State::handling && !answered_in_call_) || state_ == State::waiting);
    }
    bool exchange_active() const {
        return state_ == State::handling || state_ == State::waiting ||
               state_ == State::streaming || state_ == State::answered;
    }
    // Plugin code under the worker's policy; the failure is also this request's.
    template <class F>
    bool guarded(std::string_view entry, F&& fn) {
        try {
            std::forward<F>(fn)();
            return true;
        } catch (...) {
            return !fail(std::current_exception(), entry);
        }
    }
    bool fail(std::exception_ptr error, std::string_view entry) {
        std::string what = std::string(entry) + " " + std::string(spec_.method()) + " " +
                           std::string(spec_.target());
        if (!loop_.record_failure(error, what)) return false;
        if (result_.failure.empty()) result_.failure = loop_.failures().back();
        return true;
    }
    void record_head(bool streamed) {
        result_.answered = true;
        result_.status = response_.status();
        result_.headers = response_.headers();
        result_.streamed = streamed;
    }
    // herd answers for the plugin (as encode_error: a plain-text reason phrase).
    void herd_answer(int status, std::string why) {
        result_.answered = true;
        result_.status = status;
        result_.headers = {{"Content-Type", "text/plain; charset=utf-8"}};
        result_.body = head_only_ ? "" : reason(status) + "\n";
        result_.ended = true;
        result_.herd_error = std::move(why);
    }
    // As Connection::answer_plugin_error.
    void plugin_failed(std::string why) {
        switch (state_) {
            case State::handling:
            case State::waiting:
                herd_answer(500, std::move(why));
                return finish_exchange();
            case State::streaming:
                // The head is out: the client can only be told by an incomplete response.
                result_.herd_error = std::move(why);
                return client_gone("the plugin failed in the middle of a stream");
            default:
                return;
        }
    }
    void finish_exchange() {
        if (in_call_ && state_ == State::handling) {
            answered_in_call_ = true;  // dispatch() finishes once respond() has returned
            return;
        }
        disarm_deadline();
        on_cancel_ = nullptr;
        when_writable_ = nullptr;
        if (task_) {
            state_ = State::answered;  // until the coroutine returns
            return;
        }
        state_ = State::finished;
        scope_.reset();  // work still tied to the request goes on untied
    }
    void cancel_exchange(const std::string& why) {
        disarm_deadline();
        when_writable_ = nullptr;
        Callback fn = std::move(on_cancel_);
        on_cancel_ = nullptr;
        scope_.cancel(why);
        if (fn) guarded("in an on_cancel callback while handling", fn);
    }
    // As the worker's stop: a request still waiting gets 503, a stream ends cleanly.
    void abort(const std::string& why) {
        switch (state_) {
            case State::waiting:
                herd_answer(503, why);
                break;
            case State::streaming:
                result_.ended = true;
                break;
            case State::answered:
                break;
            default:
                return;
        }
        state_ = State::closed;
        cancel_exchange(why);
    }
    void disarm_deadline() {
        if (deadline_ != 0) loop_.cancel(std::exchange(deadline_, 0));
    }
    // The worker writes what is queued after the plugin code returns; the fake client reads
    // it then (client_reads), or when the test says.
    void schedule_flush() {
        if (flush_queued_) return;
        flush_queued_ = true;
        loop_.host_post([this] {
            flush_queued_ = false;
            if (state_ == State::closed) return;
            if (stream_cut_) return client_gone("the client read the stream too slowly");
            if (options_.client_reads) unsent_ = 0;
            notify_writable();
        });
    }
    void notify_writable() {
        if (!when_writable_ || state_ != State::streaming || unsent_ > options_.low_water ||
            scope_.cancelled())
            return;
        Callback fn = std::move(when_writable_);
        when_writable_ = nullptr;
        guarded("in a when_writable callback while handling", fn);
    }
    void task_finished(std::coroutine_handle<> frame, std::exception_ptr error) noexcept override {
        task_ = nullptr;
        frame.destroy();
        bool failed = error && fail(error, "in a coroutine while handling");
        if (held_) {
            if (failed) {
                quiet_release_ = true;
                held_ = Responder();
                quiet_release_ = false;
                plugin_failed("the plugin's coroutine threw");
            } else {
                held_.send();  // returning answers (nothing happens if cancelled)
            }
        }
        if (state_ == State::answered) {
            state_ = State::finished;
            scope_.reset();
        }
    }
    void destroy_task() {
        if (task_) std::exchange(task_, nullptr).destroy();  // its awaiters deregister
    }
    // What the plugin may not send (as the worker's encode_head); empty when fine.
    static std::string invalid(const Response& response, std::size_t body_size) {
        int status = response.status();
        if (status < 200 || status > 999)
            return "status " + std::to_string(status) + " is not a final HTTP status (200-999)";
        if ((status == 204 || status == 304) && body_size > 0)
            return "status " + std::to_string(status) + " must not have a body";
        for (const ResponseHeader& h : response.headers()) {
            auto bad = [](std::string_view s, bool name) {
                return std::any_of(s.begin(), s.end(), [name](char c) {
                    auto u = static_cast<unsigned char>(c);
                    return (u < 0x20 && !(u == '\t' && !name)) || u == 0x7f ||
                           (name && (c == ' ' || c == ':'));
                });
            };
            if (h.name.empty() || bad(h.name, true) || bad(h.value, false))
                return "invalid header name or value: \"" + h.name.substr(0, 64) + "\"";
            if (iequals(h.name, "content-length") || iequals(h.name, "transfer-encoding") ||
                iequals(h.name, "connection") || iequals(h.name, "date"))
                return "header \"" + h.name + "\" is set by herd, not by plugins";
        }
        return {};
    }
    static std::string reason(int status) {
        switch (status) {
            case 500:
                return "Internal Server Error";
            case 503:
                return "Service Unavailable";
            case 504:
                return "Gateway Timeout";
            default:
                return "Unknown";
        }
    }

    FakeLoop& loop_;
    const Options& options_;
    RequestBuilder spec_;
    const Request* request_ = nullptr;
    Response response_;
    BasicScope scope_;
    Responder held_;  // a coroutine handler's (serve_coroutine)
    std::coroutine_handle<> task_;
    Callback on_cancel_;
    Callback when_writable_;
    Loop::Id deadline_ = 0;
    State state_ = State::handling;
    Result result_;
    std::size_t unsent_ = 0;
    bool responder_out_ = false;
    bool in_call_ = false;
    bool answered_in_call_ = false;
    bool quiet_release_ = false;
    bool head_only_ = false;
    bool stream_body_ = true;
    bool stream_cut_ = false;
    bool flush_queued_ = false;
    bool destroying_ = false;
};

// One plugin in a fake worker: load() constructs it and runs on_start with context(); start()
// hands it a request as the worker does (respond(), whatever the plugin's style); stop() (or
// the destructor) stops it as the worker does.
class Harness {
  public:
    explicit Harness(Options options = {}) : options_(std::move(options)) {
        ctx_.set_config(options_.config);
        ctx_.set_mount(options_.mount);
        ctx_.set_app(options_.app);
        ctx_.set_worker_id(options_.worker_id);
    }
    Harness(const Harness&) = delete;
    Harness& operator=(const Harness&) = delete;
    ~Harness() { stop(); }

    FakeContext& context() noexcept { return ctx_; }
    FakeLoop& loop() noexcept { return ctx_.loop(); }
    FakeState& state() noexcept { return ctx_.state(); }
    FakeHttp& http() noexcept { return ctx_.http(); }  // answers for the plugin's fetches

    // Constructs the plugin and runs its on_start; what on_start throws comes out of here
    // (the worker's start-up failure), after the plugin's loop was stopped.
    template <class P, class... Args>
    P& load(Args&&... args) {
        if (plugin_) throw std::logic_error("herd::testing::Harness: a plugin is loaded already");
        auto plugin = std::make_unique<P>(std::forward<Args>(args)...);
        P& ref = *plugin;
        plugin_ = std::move(plugin);
        try {
            plugin_->on_start(ctx_);
        } catch (...) {
            loop().stop();
            plugin_.reset();
            throw;
        }
        return ref;
    }
    Plugin& plugin() {
        if (!plugin_) throw std::logic_error("herd::testing::Harness: no plugin loaded");
        return *plugin_;
    }

    // Calls the plugin's respond() with the request, as the worker does, and returns the
    // request in flight (valid as long as the harness). Each request comes as on a connection
    // of its own, so several may be in flight. Nothing else runs: see loop().
    Call& start(RequestBuilder request) {
        Plugin& p = plugin();
        calls_.push_back(std::make_unique<Call>(loop(), options_, std::move(request)));
        Call& call = *calls_.back();
        call.dispatch(p, ctx_.mount());
        return call;
    }
    // start(), then loop().run_until_idle(): the result of a handler that needs no time.
    Result run(RequestBuilder request) {
        Call& call = start(std::move(request));
        loop().run_until_idle();
        return call.result();
    }

    // The worker stops: requests in flight are cancelled (a waiting one gets 503), their
    // coroutines destroyed, the plugin's loop stopped, on_stop called, the plugin destroyed.
    void stop() {
        if (stopped_) return;
        stopped_ = true;
        for (auto& call : calls_) call->abort("the worker is stopping");
        for (auto& call : calls_) call->destroy_task();
        loop().stop();
        if (plugin_) loop().guarded("in on_stop", [&] { plugin_->on_stop(); });
        plugin_.reset();  // may still drop Responders: into calls that are alive
    }

  private:
    Options options_;
    FakeContext ctx_;
    std::vector<std::unique_ptr<Call>> calls_;
    std::unique_ptr<Plugin> plugin_;
    bool stopped_ = false;
};

}  // namespace herd::testing
