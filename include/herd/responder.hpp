// Answering later. A Responder is a request a handler has not answered yet: keep it (move it
// into a callback, a coroutine, a member), fill its response and send() it when the answer
// is known, or stream the body in pieces. Everything here runs in the worker's event loop.
#pragma once

#include <chrono>
#include <coroutine>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "herd/function.hpp"
#include "herd/http.hpp"
#include "herd/loop.hpp"
#include "herd/scope.hpp"
#include "herd/task.hpp"
#include "herd/websocket.hpp"

namespace herd {

class Responder;

// One request in flight, as the worker keeps it; plugins use it through a Responder. (The
// worker implements it; so does the test kit, herd/testing.hpp.)
class Exchange {
  public:
    virtual const Request& request() const noexcept = 0;
    virtual Response& response() noexcept = 0;
    // Cancelled when the client goes, the request's deadline passes (504) or the worker stops.
    virtual Scope& scope() noexcept = 0;
    // The loop of the plugin that handles the request.
    virtual Loop& loop() noexcept = 0;
    virtual void send() = 0;
    virtual void begin_stream() = 0;
    virtual bool write(std::string_view piece) = 0;
    virtual void end() = 0;
    virtual bool writable() const noexcept = 0;
    virtual void when_writable(Callback fn) = 0;
    virtual void on_cancel(Callback fn) = 0;
    // The responder went away without answering.
    virtual void release() noexcept = 0;
    // For coroutine handlers (serve_coroutine): keeps the responder where it stays put until
    // the task given to run() ends, then runs the task in the request's scope.
    virtual Responder& adopt(Responder&& responder) = 0;
    virtual void run(Task<> task) = 0;
    // Answers 101 and makes the connection a WebSocket (null, having answered 4xx itself,
    // when the request is not a valid handshake). (ABI 5.3)
    virtual WsEndpoint* upgrade(const WsAccept& accept) = 0;

  protected:
    ~Exchange() = default;
};

// A request to answer, move-only. The request's data (method, target, headers, body) stays
// valid as long as the responder is held. Once it has answered (send(), end()) it is empty.
//
// Dropped without an answer, it answers 500 and the worker logs it. After the request was
// cancelled (see scope()), answering does nothing: it is safe to do so from a late callback.
class Responder {
  public:
    Responder() noexcept = default;
    explicit Responder(Exchange& exchange) noexcept : ex_(&exchange) {}
    Responder(Responder&& o) noexcept : ex_(std::exchange(o.ex_, nullptr)) {}
    Responder& operator=(Responder&& o) noexcept {
        if (this != &o) {
            drop();
            ex_ = std::exchange(o.ex_, nullptr);
        }
        return *this;
    }
    Responder(const Responder&) = delete;
    Responder& operator=(const Responder&) = delete;
    ~Responder() { drop(); }

    // False once it has answered, or was moved from: then every other call throws
    // std::logic_error.
    explicit operator bool() const noexcept { return ex_ != nullptr; }

    const Request& request() const { return get().request(); }
    Response& response() { return get().response(); }
    Scope& scope() { return get().scope(); }
    bool cancelled() { return get().scope().cancelled(); }
    // The plugin's loop (the same as Context::loop()).
    Loop& loop() { return get().loop(); }
    // Runs fn once if the request is cancelled (the client went away, the deadline passed,
    // the worker stopped) while the responder still has it: release what waits for it.
    // Replaces an earlier fn.
    void on_cancel(Callback fn) { get().on_cancel(std::move(fn)); }

    // Sends response() as the whole answer.
    void send() {
        Exchange& e = get();
        ex_ = nullptr;
        e.send();
    }

    // Streaming: begin() sends the status and headers of response() (and the body set so far);
    // write() sends a piece of the body (chunked for HTTP/1.1, up to the close for HTTP/1.0);
    // end() finishes it. write() begins if needed. write() returns false when the unsent
    // bytes are above the high-water mark (the piece is queued all the same) or the client
    // is gone: wait for writable (when_writable, or co_await drained()) before writing more.
    // A plugin that writes on regardless is cut off at 16 times the mark (the request is
    // cancelled and the connection closed).
    void begin() { get().begin_stream(); }
    bool write(std::string_view piece) { return get().write(piece); }
    void end() {
        Exchange& e = get();
        ex_ = nullptr;
        e.end();
    }
    bool writable() const { return get().writable(); }

    // Accepts a WebSocket handshake (websocket.hpp): answers 101 and returns the socket. A
    // request that is not a valid handshake (is_websocket_request() is only its first test)
    // is answered by herd instead: 400, 405, 426 (a version other than 13), with the reason,
    // and the WebSocket returned is empty. Either way the responder has answered. The
    // request's data is not kept: copy what the conversation needs (a query parameter, a
    // cookie) before. (ABI 5.3)
    WebSocket accept_websocket(const WsAccept& accept = {}) {
        Exchange& e = get();
        ex_ = nullptr;
        return WebSocket(e.upgrade(accept));
    }

    // Runs fn once when the unsent bytes fall below the low-water mark (not if the request is
    // cancelled first). Replaces an earlier fn.
    void when_writable(Callback fn) { get().when_writable(std::move(fn)); }
    // co_await responder.drained(): resumes once writable (at once if it is), or with
    // Cancelled when the client has gone.
    auto drained();

    Exchange& exchange() const { return get(); }

  private:
    Exchange& get() const {
        if (ex_ == nullptr)
            throw std::logic_error("herd::Responder used after it answered (send, end) or moved");
        return *ex_;
    }
    void drop() noexcept {
        if (ex_ != nullptr) std::exchange(ex_, nullptr)->release();
    }

    Exchange* ex_ = nullptr;
};

namespace detail {

class DrainedAwait final : public CancelHook {
  public:
    explicit DrainedAwait(Exchange& ex) noexcept : ex_(ex) {}
    DrainedAwait(const DrainedAwait&) = delete;
    ~DrainedAwait() = default;
    bool await_ready() const noexcept { return ex_.scope().cancelled() || ex_.writable(); }
    bool await_suspend(std::coroutine_handle<> h) {
        handle_ = h;
        if (!ex_.scope().add_hook(*this)) return false;
        ex_.when_writable([this] {
            unlink();
            handle_.resume();
        });
        return true;
    }
    void await_resume() const {
        if (ex_.scope().cancelled()) throw Cancelled(std::string(ex_.scope().why()));
    }
    void on_cancel() noexcept override { handle_.resume(); }  // the worker drops when_writable's fn

  private:
    Exchange& ex_;
    std::coroutine_handle<> handle_;
};

}  // namespace detail

inline auto Responder::drained() {
    return detail::DrainedAwait(get());
}

// Runs make(responder), a function returning a herd::Task<>, as the request's handler: the
// Responder& it is given stays valid until the task ends, the task runs in the request's scope
// (cancelled with it), and when it returns the response is sent unless the task already sent
// or streamed it. What the task throws is a plugin failure (500), but Cancelled.
//
//     void respond(herd::Responder r) override {
//         herd::serve_coroutine(std::move(r), [this](herd::Responder& r) { return lookup(r); });
//     }
template <class Make>
void serve_coroutine(Responder responder, Make&& make) {
    Exchange& ex = responder.exchange();
    Responder& held = ex.adopt(std::move(responder));
    ex.run(std::forward<Make>(make)(held));
}

// Server-sent events (text/event-stream) on a responder: begins the stream (status 200 unless
// set, no caching), frames each event, and writes a comment line every `keepalive` so that
// proxies keep the stream open. The responder must outlive it; end the stream with
// responder.end().
class EventStream {
  public:
    explicit EventStream(Responder& responder,
                         std::chrono::milliseconds keepalive = std::chrono::seconds(15))
        : r_(responder), loop_(responder.loop()), keepalive_(keepalive) {
        Response& res = r_.response();
        res.set_header("Content-Type", "text/event-stream; charset=utf-8");
        res.set_header("Cache-Control", "no-cache");
        r_.begin();
        arm();
    }
    EventStream(const EventStream&) = delete;
    EventStream& operator=(const EventStream&) = delete;
    ~EventStream() {
        if (timer_ != 0) loop_.cancel(timer_);
    }

    // One event. Lines of data become "data:" lines; event and id must not hold CR or LF
    // (std::invalid_argument). False as for Responder::write.
    bool send(std::string_view data, std::string_view event = {}, std::string_view id = {}) {
        std::string frame;
        frame.reserve(data.size() + event.size() + id.size() + 32);
        if (!event.empty()) field(frame, "event", event);
        if (!id.empty()) field(frame, "id", id);
        for (;;) {
            auto eol = data.find_first_of("\r\n");
            frame.append("data: ").append(data.substr(0, eol)).push_back('\n');
            if (eol == std::string_view::npos) break;
            data.remove_prefix(eol + (data.compare(eol, 2, "\r\n") == 0 ? 2 : 1));
        }
        frame.push_back('\n');
        return r_.write(frame);
    }
    // A comment line (": text"), which clients ignore.
    bool comment(std::string_view text = {}) {
        std::string line = ":";
        if (!text.empty()) line.append(" ").append(text.substr(0, text.find_first_of("\r\n")));
        line.append("\n\n");
        return r_.write(line);
    }

  private:
    static void field(std::string& frame, std::string_view name, std::string_view value) {
        if (value.find_first_of("\r\n") != std::string_view::npos)
            throw std::invalid_argument("herd::EventStream: an event's " + std::string(name) +
                                        " must not hold CR or LF");
        frame.append(name).append(": ").append(value).push_back('\n');
    }
    void arm() {
        if (keepalive_.count() <= 0) return;
        timer_ = loop_.after(
            keepalive_,
            [this] {
                timer_ = 0;
                if (!r_) return;  // ended
                comment();
                arm();
            },
            &r_.scope());
    }

    Responder& r_;
    Loop& loop_;
    std::chrono::milliseconds keepalive_;
    Loop::Id timer_ = 0;
};

}  // namespace herd
