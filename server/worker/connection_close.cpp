// Connection, continued: writing out what is queued (flush, when_writable), closing (our FIN,
// lingering, a client gone, an abort), cancelling an exchange, and the clocks: the request
// deadline and the header, keep-alive, linger and send timeouts. See connection.hpp.
#include "worker/connection.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/log.hpp"
#include "http/http_response.hpp"
#include "worker/plugin_host.hpp"

namespace herd::worker {

void Connection::flush() {
    if (stream_cut_) {
        core::log_warn(
            "{}: more than {} bytes of a stream unsent ({}): the client reads too "
            "slowly for what the plugin writes; closing the connection",
            plugin_ != nullptr ? plugin_->who : "a plugin", stream_cut_off, describe_request());
        stream_cut_ = false;
        client_gone("the client read the stream too slowly");
        return;
    }
    while (!out_.empty()) {
        ssize_t w = out_.write_to(fd_.get());
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                // Input is not watched while we wait to write: whatever the client sends
                // meanwhile would be unread at close. Linger instead, unless it has finished.
                if (!peer_done_) close_at_once_ = false;
                output_blocked_ = true;
                update_interest();
                notify_writable();
                return;
            }
            client_gone("writing the response failed");  // EPIPE, ECONNRESET
            return;
        }
        last_write_ = loop_.cached_now();
    }
    output_blocked_ = false;
    if (state_ == State::closing ||
        (state_ == State::reading && host_.closing_idle() &&
         parser_.phase() == http::HttpParser::Phase::idle && unparsed_.empty() && !input_paused_)) {
        // Draining: a connection whose last response just left closes now, not at the deadline.
        close_after_ = true;
        if (close_at_once_)
            close_fd();
        else
            begin_close();
        return;
    }
    if (state_ == State::reading && (input_paused_ || !unparsed_.empty())) {
        continue_reading();
        return;
    }
    update_interest();
    notify_writable();
}

void Connection::notify_writable_now() {
    // Waiting too: a handler may wait for earlier responses to leave before it begins.
    if ((state_ != State::streaming && state_ != State::waiting) ||
        out_.size() > stream_low_water || scope_.cancelled())
        return;
    herd::Callback fn = std::move(when_writable_);
    when_writable_ = nullptr;
    core::guarded(*plugin_->failed, plugin_->who, "in a when_writable callback", fn);
    loop_.refresh_now();
}

void Connection::begin_close() {
    // Send our FIN, then read and discard until the client's FIN (or linger_time).
    if (::shutdown(fd_.get(), SHUT_WR) < 0) {
        close_fd();
        return;
    }
    state_ = State::lingering;
    host_.connection_lingering();
    phase_since_ = loop_.cached_now();
    update_interest();
}

void Connection::linger() {
    char* buffer = read_buffer_;
    // Bounded like on_readable: a client that keeps sending must not stall the others; the
    // sweep ends lingering after linger_time.
    for (int round = 0; round < 4; ++round) {
        ssize_t n = ::read(fd_.get(), buffer, read_size_);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        close_fd();  // EOF or error: the client is done
        return;
    }
    if (loop_.cached_now() - phase_since_ > linger_time) close_fd();
}

void Connection::client_gone(const char* why, int status) {
    if (state_ == State::waiting || state_ == State::streaming) {
        // The request ends without its answer reaching the client: 499, as nginx logs it.
        host_.request_done(parser_.request(), status, stream_bytes_, request_start_, *this);
    }
    bool cancel = exchange_active();
    close_fd();
    if (cancel) cancel_exchange(why);
    maybe_unheld();
}

void Connection::close_fd() {
    if (!fd_) return;
    bool was_lingering = state_ == State::lingering;
    int fd = fd_.get();
    loop_.remove_before_close(fd);
    fd_.reset();
    State before = state_;
    state_ = State::closed;
    // While its exchange is cancelled (client_gone) the object is held too.
    orphaned_ = held() || before == State::waiting || before == State::streaming ||
                before == State::answered;
    host_.connection_closed(*this, fd, was_lingering, orphaned_);
}

void Connection::maybe_unheld() {
    if (state_ != State::closed || !orphaned_ || held()) return;
    orphaned_ = false;
    host_.connection_unheld(*this);
}

void Connection::cancel_exchange(const std::string& why) {
    disarm_deadline();
    when_writable_ = nullptr;
    herd::Callback fn = std::move(on_cancel_);
    on_cancel_ = nullptr;
    bool was_pinned = pinned_;
    pinned_ = true;  // held while coroutines resume into it
    scope_.cancel(why);
    if (fn && plugin_ != nullptr)
        core::guarded(*plugin_->failed, plugin_->who, "in an on_cancel callback", fn);
    pinned_ = was_pinned;
    loop_.refresh_now();
}

void Connection::ready_scope() {
    // Set up only for a request that needs it (one that waits, or asks for its scope): the
    // usual request, answered in its call, never pays for it.
    if (scope_ready_) return;
    scope_ready_ = true;
    int timeout = app_.request_timeout_ms;
    scope_.set_deadline(timeout > 0 ? request_start_ + std::chrono::milliseconds(timeout)
                                    : Clock::time_point::max());
}

void Connection::arm_deadline() {
    if (scope_.deadline() == Clock::time_point::max()) return;
    deadline_timer_ = loop_.add_timer_at(scope_.deadline(), [this] {
        deadline_timer_ = 0;
        on_deadline();
    });
}

void Connection::on_deadline() {
    if (state_ != State::waiting) return;
    int timeout = app_.request_timeout_ms;
    core::log_warn("{}: no answer within request_timeout_ms ({} ms) {}; answering 504",
                   plugin_->who, timeout, describe_request());
    close_after_ = true;
    http::encode_error(out_.tail(), 504, true, head_only_, false, loop_.cached_now());
    host_.request_done(parser_.request(), 504, 0, request_start_, *this);
    state_ = State::closing;  // the responder may live on: the connection takes no more
    cancel_exchange("request_timeout_ms (" + std::to_string(timeout) +
                    " ms) passed before the handler answered");
    if (fd_) flush();
    maybe_unheld();
}

void Connection::abort(const std::string& why) {
    switch (state_) {
        case State::waiting:
            http::encode_error(out_.tail(), 503, true, head_only_, false, loop_.cached_now());
            host_.request_done(parser_.request(), 503, 0, request_start_, *this);
            state_ = State::closing;
            cancel_exchange(why);
            break;
        case State::streaming:
            if (chunked_) out_.tail().append("0\r\n\r\n");  // a clean end: clients reconnect
            host_.request_done(parser_.request(), stream_status_, stream_bytes_, request_start_,
                               *this);
            state_ = State::closing;
            cancel_exchange(why);
            break;
        case State::answered:
            state_ = State::closing;
            cancel_exchange(why);
            break;
        default:
            break;
    }
    if (task_) {
        // Still suspended after its cancellation, on something that knows nothing of herd's
        // scopes: its frame goes now, before its plugin stops (it holds plugin code).
        std::exchange(task_, nullptr).destroy();
        quiet_release_ = true;
        held_ = herd::Responder();
        quiet_release_ = false;
    }
    if (!fd_) return;
    // One last try at what is queued; then the descriptor closes with the worker.
    for (int i = 0; i < 8 && !out_.empty(); ++i)
        if (out_.write_to(fd_.get()) < 0 && errno != EINTR) break;
    close_fd();
}

void Connection::check_timeouts(Clock::time_point now) {
    if (!fd_) return;
    auto since = now - phase_since_;
    const core::AppConfig& app = app_;
    auto header_timeout = std::chrono::milliseconds(app.header_timeout_ms);
    switch (state_) {
        case State::lingering:
            if (since > linger_time) close_fd();
            return;
        case State::closed:
        case State::handling:
            return;
        case State::waiting:
        case State::streaming:
        case State::answered:
            // Not idle: no header or keep-alive timeout. Only a client that stopped reading.
            if (output_blocked_ && now - std::max(last_write_, phase_since_) > send_timeout)
                client_gone("the client read nothing of the response for 60 s");
            return;
        case State::reading:
        case State::closing:
            break;
    }
    if (!out_.empty() || input_paused_) {
        // A client that stopped reading what it asked for.
        if (now - std::max(last_write_, phase_since_) > send_timeout) close_fd();
        return;
    }
    if (state_ == State::closing) return;
    switch (parser_.phase()) {
        case http::HttpParser::Phase::idle:
            // A connection that never sent a request gets the header timeout (as nginx's
            // client_header_timeout); between requests, the keep-alive timeout. Either way
            // there is no request to answer: close without a response. A draining worker
            // waits a short grace for the next request (answered with "Connection: close")
            // before closing. Either way with our FIN first and lingering reads after, so a
            // request already on its way meets a clean end of stream, never a reset.
            if (since > (served_any_ ? std::chrono::milliseconds(app.keepalive_timeout_ms)
                                     : header_timeout) ||
                (host_.closing_idle() && since > host_.drain_idle_grace()))
                begin_close();
            return;
        case http::HttpParser::Phase::headers:
        case http::HttpParser::Phase::body:
            if (since > header_timeout) {
                answer_error(408, parser_.phase() == http::HttpParser::Phase::headers
                                      ? "request headers not complete within header_timeout_ms"
                                      : "no request body data within header_timeout_ms");
                flush();
            }
            return;
    }
}

}  // namespace herd::worker
