// Connection: one client socket in a worker; see connection.hpp. Here: watching the socket,
// reading, parsing and dispatching requests, answering errors, and the next request.
// Writing and closing are in connection_close.cpp, the herd::Exchange side (what plugins
// call) in connection_exchange.cpp.
#include "worker/connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/log.hpp"
#include "http/http_response.hpp"
#include "worker/plugin_host.hpp"
#include "worker/ws_session.hpp"

namespace herd::worker {

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
        if (upgraded_to_ != nullptr) {
            // What the client sent past its handshake is the WebSocket's first input.
            upgraded_to_->add_input(data, size);
            return;
        }
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
    if (upgraded_to_ != nullptr) {
        hand_over();
        return;
    }
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

}  // namespace herd::worker
