// Connection, continued: its herd::Exchange side, what a plugin calls on a request: answering
// at once (send), streaming (begin, write, end, when_writable), cancellation, holding the
// request (release, adopt), and running a handler coroutine (run). See connection.hpp.
#include "worker/connection.hpp"

#include <charconv>

#include "core/log.hpp"
#include "http/http_response.hpp"
#include "worker/plugin_host.hpp"
#include "worker/ws_session.hpp"
#include "ws/handshake.hpp"

namespace herd::worker {

const Request& Connection::request() const noexcept {
    return parser_.request();
}

herd::Loop& Connection::loop() noexcept {
    return *plugin_->loop;
}

void Connection::send() {
    responder_out_ = false;
    if (state_ == State::streaming) {
        end();
        return;
    }
    if (!can_answer()) {
        maybe_unheld();
        return;
    }
    // A later answer closes if the worker began to drain meanwhile (it says so in its head).
    if (!in_call_ && host_.responses_close()) close_after_ = true;
    std::string& out = out_.tail();
    std::string error;
    std::string& body = response_.body();
    auto now = loop_.cached_now();
    if (!http::encode_head(out, response_, body.size(), close_after_, http10_keep_alive_, error,
                           now)) {
        core::log_error("{} gave an invalid response {}: {}", plugin_->who, describe_request(),
                        error);
        http::encode_error(out, 500, close_after_, head_only_, http10_keep_alive_, now);
        finish_exchange(500, 0);
        return;
    }
    std::size_t bytes = head_only_ ? 0 : body.size();
    if (!head_only_ && !body.empty()) {
        if (body.size() <= inline_body_limit) {
            out.append(body);
        } else {
            out_.push(std::move(body));
            body = std::string();
        }
    }
    if (in_call_ && state_ == State::handling) {
        // The usual answer, inside respond(): dispatch() finishes it once the call returned.
        answered_in_call_ = true;
        answer_status_ = response_.status();
        answer_bytes_ = bytes;
        return;
    }
    finish_exchange(response_.status(), bytes);
}

void Connection::begin_stream() {
    if (!can_answer()) return;
    const Request& r = parser_.request();
    int status = response_.status();
    if (!in_call_ && host_.responses_close()) close_after_ = true;
    stream_body_ = !head_only_ && status != 204 && status != 304;
    chunked_ = stream_body_ && r.http_minor() >= 1;
    if (stream_body_ && !chunked_) close_after_ = true;  // HTTP/1.0: the close ends the body
    std::string error;
    auto now = loop_.cached_now();
    if (!http::encode_stream_head(out_.tail(), response_, chunked_, close_after_,
                                  http10_keep_alive_, error, now)) {
        core::log_error("{} gave an invalid response head {}: {}", plugin_->who, describe_request(),
                        error);
        http::encode_error(out_.tail(), 500, close_after_, head_only_, http10_keep_alive_, now);
        finish_exchange(500, 0);  // the responder's later writes go nowhere
        return;
    }
    disarm_deadline();  // it has answered: a stream lasts as long as it needs
    scope_.set_deadline(Clock::time_point::max());
    stream_status_ = status;
    stream_bytes_ = 0;
    phase_since_ = now;
    state_ = State::streaming;
    std::string body = std::move(response_.body());
    response_.body().clear();
    if (!body.empty()) write(body);
    if (!in_dispatch_) schedule_resume();
}

bool Connection::write(std::string_view piece) {
    if (scope_.cancelled() || !fd_ || stream_cut_) return false;
    if (can_answer()) begin_stream();
    if (state_ != State::streaming) return false;
    if (!piece.empty() && stream_body_) {
        std::string& tail = out_.tail();
        if (chunked_) {
            char size[20];
            auto end = std::to_chars(size, size + sizeof size, piece.size(), 16).ptr;
            tail.append(size, end).append("\r\n").append(piece).append("\r\n");
        } else {
            tail.append(piece);
        }
        stream_bytes_ += piece.size();
    }
    if (out_.size() > stream_cut_off) stream_cut_ = true;  // resume() closes
    // Inside respond() the caller flushes, but only resume() acts on the cut-off.
    if (!in_dispatch_ || stream_cut_) schedule_resume();
    return out_.size() < stream_high_water && !stream_cut_;
}

void Connection::end() {
    responder_out_ = false;
    if (can_answer()) {
        send();
        return;
    }
    if (state_ != State::streaming || scope_.cancelled() || stream_cut_) {
        maybe_unheld();  // a stream cut off ends with the connection (resume())
        return;
    }
    if (chunked_) out_.tail().append("0\r\n\r\n");
    finish_exchange(stream_status_, stream_bytes_);
}

bool Connection::writable() const noexcept {
    return !scope_.cancelled() && fd_ && out_.size() < stream_high_water && !stream_cut_;
}

void Connection::when_writable(herd::Callback fn) {
    if (scope_.cancelled()) return;
    when_writable_ = std::move(fn);
    if (!in_dispatch_) schedule_resume();  // it runs from flush() once below the low-water mark
}

void Connection::on_cancel(herd::Callback fn) {
    if (scope_.cancelled()) return;
    on_cancel_ = std::move(fn);
}

void Connection::release() noexcept {
    if (destroying_) return;
    responder_out_ = false;
    // Inside respond(), after_call() decides (a handler that returns without answering);
    // a quiet release has its answer already (a plugin failure: 500).
    if (in_call_ || quiet_release_) return;
    switch (state_) {
        case State::waiting:
            if (!scope_.cancelled()) {
                core::log_error("{} dropped its Responder without answering ({}); answering 500",
                                plugin_->who, describe_request());
                answer_plugin_error(500);
            }
            break;
        case State::streaming:
            core::log_error(
                "{} dropped its Responder in the middle of a stream ({}); closing "
                "the connection",
                plugin_->who, describe_request());
            answer_plugin_error(500);
            break;
        default:
            break;
    }
    maybe_unheld();
}

herd::Responder& Connection::adopt(herd::Responder&& responder) {
    held_ = std::move(responder);
    return held_;
}

void Connection::run(herd::Task<> task) {
    auto h = task.release();
    if (!h) return;
    ready_scope();
    h.promise().scope = &scope_;
    h.promise().owner = this;
    task_ = h;
    h.resume();  // to its first suspension (or its end)
}

void Connection::task_finished(std::coroutine_handle<> frame, std::exception_ptr error) noexcept {
    task_ = nullptr;
    frame.destroy();
    bool failed = error && core::report_plugin_error(*plugin_->failed, plugin_->who,
                                                     "in a coroutine " + describe_request(), error);
    if (held_) {
        if (failed) {
            // No "dropped" message for this one: the failure is the answer (500).
            quiet_release_ = true;
            held_ = herd::Responder();
            quiet_release_ = false;
            answer_plugin_error(500);
        } else {
            held_.send();  // returning answers (nothing happens if cancelled)
        }
    }
    if (state_ == State::answered) next_request();
    maybe_unheld();
}

herd::WsEndpoint* Connection::upgrade(const herd::WsAccept& accept) {
    responder_out_ = false;
    if (!can_answer()) {
        maybe_unheld();
        return nullptr;
    }
    const Request& r = parser_.request();
    ws::HandshakeCheck check = ws::check_handshake(r);
    std::string head;
    if (check.status == 0 && !accept.protocol.empty() && !ws::offers_protocol(r, accept.protocol)) {
        check.status = 500;
        check.reason = "the plugin chose subprotocol \"" + accept.protocol.substr(0, 64) +
                       "\", which the client did not offer";
    } else if (check.status == 0 &&
               !http::encode_switch(head, accept.headers, check.accept, accept.protocol,
                                    check.reason, loop_.cached_now())) {
        check.status = 500;
    }
    if (check.status == 0 && host_.closing_idle()) {
        // Draining: its sockets were told 1001 already; a new one would only be cut off.
        check.status = 503;
        check.reason = "this worker is draining: connect again";
    }
    WsSession* session = check.status == 0 ? host_.open_websocket(*plugin_) : nullptr;
    if (check.status == 0 && session == nullptr) {
        check.status = 503;
        check.reason = "WebSockets are not served here";
    }
    if (check.status != 0) {
        if (check.status == 500)
            core::log_error("{} accepted a WebSocket {}: {}; answering 500", plugin_->who,
                            describe_request(), check.reason);
        else
            core::log_info("refusing a WebSocket handshake {} with {}: {}", describe_request(),
                           check.status, check.reason);
        response_.clear();
        response_.set_status(check.status);
        response_.set_header("Content-Type", "text/plain; charset=utf-8");
        if (check.status == 426) response_.set_header("Sec-WebSocket-Version", "13");
        response_.set_body(check.reason + "\n");
        close_after_ = true;
        send();
        return nullptr;
    }
    // The socket goes to the session with what it still had to write (earlier pipelined
    // answers, then the 101) and what it read past the handshake; reading and the request's
    // deadline stop here.
    out_.tail().append(head);
    upgraded_to_ = session;
    upgraded_fd_ = fd_.get();
    loop_.remove(fd_.get());
    session->adopt(std::move(fd_), std::move(out_), std::move(unparsed_));
    out_.clear();
    unparsed_.clear();
    scope_.set_deadline(Clock::time_point::max());
    if (in_call_ && state_ == State::handling) {
        answered_in_call_ = true;  // dispatch() finishes once respond() has returned
        answer_status_ = 101;
        answer_bytes_ = 0;
    } else {
        finish_exchange(101, 0);
    }
    return session;
}

void Connection::hand_over() {
    state_ = State::closed;
    orphaned_ = held();
    host_.connection_upgraded(*this, upgraded_fd_, orphaned_);
}

}  // namespace herd::worker
