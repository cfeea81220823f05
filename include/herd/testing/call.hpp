// Part of herd/testing.hpp, the plugin author's test kit (include that): Call, one request in
// flight as the worker's Connection runs it, its Result, and the harness's Options.
#pragma once

#include <coroutine>
#include <cstddef>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "herd/http.hpp"
#include "herd/loop.hpp"
#include "herd/plugin.hpp"
#include "herd/responder.hpp"
#include "herd/scope.hpp"
#include "herd/task.hpp"
#include "herd/testing/loop.hpp"
#include "herd/testing/request.hpp"
#include "herd/testing/websocket.hpp"

namespace herd::testing {

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
    WsEndpoint* upgrade(const WsAccept& accept) override {
        responder_out_ = false;
        if (!can_answer()) return nullptr;
        const Request& r = *request_;
        if (r.method() != "GET" || !is_websocket_request(r) || !r.header("Sec-WebSocket-Key")) {
            herd_answer(400,
                        "not a WebSocket handshake (GET, Upgrade: websocket, Sec-WebSocket-Key)");
            finish_exchange();
            return nullptr;
        }
        result_.answered = true;
        result_.status = 101;
        result_.headers = accept.headers;
        if (!accept.protocol.empty())
            result_.headers.emplace_back("Sec-WebSocket-Protocol", accept.protocol);
        result_.ended = true;
        websocket_ = std::make_unique<FakeWebSocket>(loop_, ++websocket_ids_);
        finish_exchange();
        return websocket_.get();
    }
    // The socket the plugin accepted (accept_websocket), or null.
    FakeWebSocket* websocket() noexcept { return websocket_.get(); }

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
    std::unique_ptr<FakeWebSocket> websocket_;  // before held_: a coroutine may hold its WebSocket
    static inline std::uint64_t websocket_ids_ = 0;
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

}  // namespace herd::testing
