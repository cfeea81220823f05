// Connection: one client socket in a worker; see connection.hpp.
#include "worker/connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include "core/log.hpp"
#include "http/http_response.hpp"
#include "worker/plugin_host.hpp"

namespace herd::worker {
namespace {
// Bodies up to this size are copied next to their head (one buffer, one iovec); larger ones
// are queued by move.
constexpr std::size_t inline_body_limit = 16 << 10;
// Stop reading a client that sends requests faster than it reads responses.
constexpr std::size_t max_unsent_bytes = 1 << 20;
// Input held while a request is in the plugin's hands (pipelined requests): beyond, reading
// stops until the answer (the client's going away is still seen).
constexpr std::size_t max_held_input = 64 << 10;
// Streaming: write() says "full" above the high-water mark of unsent bytes, when_writable
// fires below the low-water mark, and a plugin that writes on regardless is cut off.
constexpr std::size_t stream_high_water = 64 << 10;
constexpr std::size_t stream_low_water = 16 << 10;
constexpr std::size_t stream_cut_off = 16 * stream_high_water;
// After our FIN, how long we read and discard what the client still sends before closing:
// closing with unread input would send a reset that can destroy the response in flight.
constexpr auto linger_time = std::chrono::seconds(2);
// A client that reads nothing of a pending response for this long is dropped.
constexpr auto send_timeout = std::chrono::seconds(60);
}  // namespace

Connection::Connection(ConnectionHost& host, core::UniqueFd fd)
    : host_(host),
      loop_(host.loop()),
      app_(host.app()),
      read_buffer_(host.read_buffer()),
      read_size_(host.read_buffer_size()),
      fd_(std::move(fd)),
      parser_(host.limits()) {}

Connection::~Connection() {
    destroying_ = true;
    disarm_deadline();
    if (task_) std::exchange(task_, nullptr).destroy();  // its awaiters deregister themselves
    held_ = herd::Responder();
    if (fd_) loop_.remove_before_close(fd_.get());
}

void Connection::start() {
    phase_since_ = loop_.cached_now();
    loop_.add(fd_.get(), interest_, [this](std::uint32_t ev) { on_events(ev); });
}

bool Connection::idle() const {
    return state_ == State::reading && parser_.phase() == http::HttpParser::Phase::idle &&
           out_.empty() && unparsed_.empty() && !input_paused_;
}

void Connection::update_interest_now() {
    if (!fd_) return;
    std::uint32_t want = 0;
    switch (state_) {
        case State::reading:
            want = input_paused_ ? 0u : EPOLLIN | EPOLLRDHUP;
            break;
        case State::handling:
            return;  // after_call() decides
        case State::waiting:
        case State::streaming:
        case State::answered:
            // The client's leaving is watched even when no more input is wanted.
            want = EPOLLRDHUP | (input_paused_ ? 0u : EPOLLIN);
            break;
        case State::closing:
            break;
        case State::lingering:
            want = EPOLLIN | EPOLLRDHUP;
            break;
        case State::closed:
            return;
    }
    if (output_blocked_) want |= EPOLLOUT;
    if (want == interest_) return;
    interest_ = want;
    loop_.modify(fd_.get(), want);
}

void Connection::on_events(std::uint32_t events) {
    switch (state_) {
        case State::lingering:
            linger();
            return;
        case State::closed:
        case State::handling:
            return;
        case State::waiting:
        case State::streaming:
        case State::answered:
            // While the plugin has the request, the client's FIN or reset cancels it.
            if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
                client_gone(events & EPOLLERR ? "the connection was reset"
                                              : "the client closed the connection");
                return;
            }
            if (events & EPOLLIN) read_held();
            if (fd_ && (events & EPOLLOUT)) flush();
            return;
        case State::reading:
        case State::closing:
            break;
    }
    if (events & EPOLLERR) {
        close_fd();  // a reset or a failed send: nothing more can be delivered
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) on_readable();
    // EPOLLHUP is reported whatever we asked for: a closing connection tries its last write,
    // which fails and frees it, instead of being woken again and again.
    if (fd_ && (events & (EPOLLOUT | EPOLLHUP))) flush();
}

void Connection::on_readable() {
    if (input_paused_ || state_ != State::reading) return;
    char* buffer = read_buffer_;
    std::size_t capacity = read_size_;
    for (int round = 0; round < 4; ++round) {
        ssize_t n = ::read(fd_.get(), buffer, capacity);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            close_fd();  // ECONNRESET and friends: the client is gone
            return;
        }
        if (n == 0) {
            // The client closed its side. What it sent is answered; then we close.
            if (out_.empty()) {
                close_fd();
                return;
            }
            close_after_ = true;
            peer_done_ = true;
            close_at_once_ = true;    // its FIN is here: nothing more can come to linger for
            state_ = State::closing;  // flush() below stops reading if it must wait
            break;
        }
        read_all_ = static_cast<std::size_t>(n) < capacity;
        process(buffer, static_cast<std::size_t>(n));
        if (!fd_ || state_ != State::reading || input_paused_) break;
        if (static_cast<std::size_t>(n) < capacity) break;
    }
    if (fd_) flush();
}

void Connection::read_held() {
    char* buffer = read_buffer_;
    for (int round = 0; round < 4; ++round) {
        if (unparsed_.size() >= max_held_input) {
            input_paused_ = true;  // until the answer; the client's leaving is still watched
            update_interest();
            return;
        }
        std::size_t capacity = std::min(read_size_, max_held_input - unparsed_.size());
        ssize_t n = ::read(fd_.get(), buffer, capacity);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            client_gone("the connection was reset");
            return;
        }
        if (n == 0) {
            client_gone("the client closed the connection");
            return;
        }
        unparsed_.append(buffer, static_cast<std::size_t>(n));
        read_all_ = false;  // what follows is read after the answer
        if (static_cast<std::size_t>(n) < capacity) return;
    }
}

void Connection::process(const char* data, std::size_t size) {
    while (size > 0 && state_ == State::reading) {
        if (parser_.phase() == http::HttpParser::Phase::idle) phase_since_ = loop_.cached_now();
        std::size_t consumed = 0;
        auto status = parser_.feed(data, size, consumed);
        data += consumed;
        size -= consumed;
        if (status == http::HttpParser::Status::need_more) {
            // RFC 9110 10.1.1: only once the head is complete (it may still be refused with
            // 413), and never to an HTTP/1.0 client.
            if (parser_.expects_continue() && !continue_sent_ &&
                parser_.phase() == http::HttpParser::Phase::body &&
                parser_.request().http_minor() >= 1) {
                out_.tail().append("HTTP/1.1 100 Continue\r\n\r\n");
                continue_sent_ = true;
            }
            if (parser_.phase() == http::HttpParser::Phase::body) phase_since_ = loop_.cached_now();
            return;
        }
        if (status == http::HttpParser::Status::error) {
            answer_error(parser_.error_status(), parser_.error_reason());
            return;
        }
        dispatch();
        switch (state_) {
            case State::reading:
                break;
            case State::closing:
                // Whatever the client pipelined after a closing request is not answered, and
                // not read either until the response is out (level-triggered input would
                // spin): the flush() that follows every process() waits for EPOLLOUT only,
                // or closes. Nothing after this request in our hands, and the read that
                // brought it did not fill the buffer: close without lingering, as nginx does
                // (lingering_close on), unless the response cannot leave at once (flush()).
                // Closing with unread input resets the connection, which can cut off the
                // response on its way; bytes that arrive while the handler runs are that
                // risk, as they are for nginx.
                close_at_once_ = size == 0 && read_all_;
                return;
            case State::waiting:
            case State::streaming:
            case State::answered:
                unparsed_.assign(data, size);  // the next requests wait for this one's answer
                update_interest();
                return;
            default:
                return;
        }
        if (out_.size() > max_unsent_bytes && size > 0) {
            unparsed_.assign(data, size);
            input_paused_ = true;  // the flush() that follows stops reading if it must wait
            return;
        }
    }
}

void Connection::dispatch() {
    Request& request = parser_.request();
    host_.request_started();
    served_any_ = true;
    close_after_ = parser_.must_close() || host_.responses_close();
    head_only_ = request.method() == "HEAD";
    http10_keep_alive_ = request.http_major() == 1 && request.http_minor() == 0 && !close_after_;
    request_start_ = phase_since_;
    MountedPlugin* mounted = host_.route(request.path());
    in_dispatch_ = true;  // process() goes on with the next request itself
    if (mounted == nullptr) {
        http::encode_error(out_.tail(), 404, close_after_, head_only_, http10_keep_alive_,
                           loop_.cached_now());
        finish_exchange(404, 0);
        in_dispatch_ = false;
        return;
    }
    parser_.set_mount_length(mounted->mount == "/" ? 0 : mounted->mount.size());
    response_.clear();
    plugin_ = mounted;
    state_ = State::handling;
    responder_out_ = true;
    in_call_ = true;
    host_.set_busy(true);
    bool returned = core::guarded(
        *mounted->failed, mounted->who, [this] { return describe_request(); },
        [&] { mounted->plugin->respond(herd::Responder(*this)); });
    host_.set_busy(false);
    in_call_ = false;
    loop_.refresh_now();  // a handler may take long: timeouts count from its end
    if (returned && answered_in_call_ && !task_) {
        // The usual case, answered in the call: recorded now that the loop's time is past it.
        answered_in_call_ = false;
        finish_exchange(answer_status_, answer_bytes_);
    } else {
        after_call(returned);
    }
    in_dispatch_ = false;
}

std::string Connection::describe_request() const {
    const Request& r = parser_.request();
    return "while handling " + std::string(r.method()) + " " +
           std::string(r.target().substr(0, 200));
}

void Connection::after_call(bool returned) {
    // A handler that answered and then threw: the answer stands (the worker was told).
    if (!returned && !answered_in_call_) {
        // The handler threw, and the worker was told (it retires). The responder it gave a
        // coroutine is let go without a word: the answer is the 500 here.
        if (held_) {
            quiet_release_ = true;
            held_ = herd::Responder();
            quiet_release_ = false;
        }
        if (responder_out_) {
            // It had moved its responder elsewhere (release() has not run): the 500 is the
            // answer all the same, as for a deadline. The request is cancelled (what is tied
            // to it goes, a late answer does nothing), and the connection closes: it takes no
            // request that the stale responder could answer, and lives while it is held.
            parser_.keep_views();
            close_after_ = true;
            http::encode_error(out_.tail(), 500, true, head_only_, http10_keep_alive_,
                               loop_.cached_now());
            host_.request_done(parser_.request(), 500, 0, request_start_, *this);
            state_ = State::closing;
            cancel_exchange("the handler threw");
            return;
        }
        // A coroutine it started runs on, its responder gone: it is cancelled too (it resumes
        // with Cancelled instead of failing on the empty responder).
        if (task_) cancel_exchange("the handler threw");
        answer_plugin_error(500);
        return;
    }
    if (answered_in_call_) {
        // Recorded now that the loop's time is past the handler.
        answered_in_call_ = false;
        // Its coroutine runs on (answered): the request outlives the buffer it was read into.
        if (task_) parser_.keep_views();
        finish_exchange(answer_status_, answer_bytes_);
        return;
    }
    switch (state_) {
        case State::handling:
            if (!responder_out_ && !task_) {
                core::log_error("{} dropped its Responder without answering ({}); answering 500",
                                plugin_->who, describe_request());
                answer_plugin_error(500);
                return;
            }
            state_ = State::waiting;
            parser_.keep_views();  // the request outlives the shared read buffer
            ready_scope();
            arm_deadline();
            return;
        case State::streaming:
        case State::answered:
            parser_.keep_views();
            return;
        default:
            return;  // answered in the call
    }
}

void Connection::answer_error(int status, const std::string& reason) {
    core::log_info("answering {} and closing fd {}: {}", status, fd_.get(), reason);
    // RFC 9110 9.3.2: no content in a response to HEAD, herd's own refusals included.
    http::encode_error(out_.tail(), status, true, parser_.head_request(), false,
                       loop_.cached_now());
    host_.request_done(parser_.request(), status, 0, phase_since_, *this);
    close_after_ = true;
    state_ = State::closing;  // the caller's flush() stops reading if it must wait
}

void Connection::answer_plugin_error(int status) {
    switch (state_) {
        case State::handling:
        case State::waiting:
            http::encode_error(out_.tail(), status, close_after_, head_only_, http10_keep_alive_,
                               loop_.cached_now());
            finish_exchange(status, 0);
            return;
        case State::streaming:
            // The head is out: the client can only be told by an incomplete response.
            client_gone("the plugin failed in the middle of a stream", status);
            return;
        default:
            return;  // it had answered
    }
}

void Connection::finish_exchange(int status, std::size_t bytes) {
    if (in_call_ && state_ == State::handling) {
        // Answered inside respond(): dispatch() finishes once the call has returned.
        answered_in_call_ = true;
        answer_status_ = status;
        answer_bytes_ = bytes;
        return;
    }
    host_.request_done(parser_.request(), status, bytes, request_start_, *this);
    disarm_deadline();
    on_cancel_ = nullptr;
    when_writable_ = nullptr;
    if (task_) {
        state_ = State::answered;  // the next request waits for the coroutine to return
        return;
    }
    next_request();
}

void Connection::next_request() {
    plugin_ = nullptr;
    if (scope_ready_) {
        scope_ready_ = false;
        scope_.reset();  // work still tied to the request goes on untied
    }
    parser_.next();
    continue_sent_ = false;
    // The keep-alive timeout runs from the response (the loop's time is refreshed after
    // each plugin handler: as recent as the last one).
    phase_since_ = loop_.cached_now();
    if (close_after_) {
        state_ = State::closing;
        close_at_once_ = peer_done_;
    } else {
        state_ = State::reading;
    }
    if (!in_dispatch_) schedule_resume();
}

void Connection::schedule_resume() {
    if (resume_queued_ || !fd_) return;
    resume_queued_ = true;
    // After the plugin code that got us here has returned: never re-entered from inside it.
    loop_.defer([this] { resume(); });
}

void Connection::resume() {
    resume_queued_ = false;
    if (!fd_) return;
    flush();
}

void Connection::continue_reading() {
    // Parses what arrived while the last request was in the plugin's hands (or while output
    // was backed up), then watches the socket again and sends what that produced.
    input_paused_ = false;
    read_all_ = false;  // more may wait in the socket behind what we kept
    if (!unparsed_.empty()) {
        std::string input = std::move(unparsed_);
        unparsed_.clear();
        process(input.data(), input.size());
        if (!fd_) return;
    }
    update_interest();
    flush();
}

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

void Connection::drain(bool close_idle) {
    // Otherwise the next response carries "Connection: close" (responses_close()), and the
    // sweep closes the connection once it has been idle for the drain grace.
    if (close_idle && idle()) begin_close();
}

const std::string& Connection::peer() {
    if (peer_.empty()) {
        sockaddr_storage a{};
        socklen_t length = sizeof a;
        char text[INET6_ADDRSTRLEN] = "-";
        if (fd_ && getpeername(fd_.get(), reinterpret_cast<sockaddr*>(&a), &length) == 0) {
            if (a.ss_family == AF_INET)
                inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&a)->sin_addr, text,
                          sizeof text);
            else if (a.ss_family == AF_INET6)
                inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&a)->sin6_addr, text,
                          sizeof text);
        }
        peer_ = text;
    }
    return peer_;
}

// ---- herd::Exchange

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

}  // namespace herd::worker
