// Connection: one client socket in a worker; see connection.hpp.
#include "worker/connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "core/log.hpp"
#include "worker/http_response.hpp"
#include "worker/worker.hpp"

namespace herd::worker {
namespace {
// Bodies up to this size are copied next to their head (one buffer, one iovec); larger ones
// are queued by move.
constexpr std::size_t inline_body_limit = 16 << 10;
// Stop reading a client that sends requests faster than it reads responses.
constexpr std::size_t max_unsent_bytes = 1 << 20;
// After our FIN, how long we read and discard what the client still sends before closing:
// closing with unread input would send a reset that can destroy the response in flight.
constexpr auto linger_time = std::chrono::seconds(2);
// A client that reads nothing of a pending response for this long is dropped.
constexpr auto send_timeout = std::chrono::seconds(60);
}  // namespace

Connection::Connection(Worker& worker, core::UniqueFd fd)
    : worker_(worker), fd_(std::move(fd)), parser_(worker.limits()) {}

Connection::~Connection() = default;

void Connection::start() {
    phase_since_ = worker_.loop().cached_now();
    worker_.loop().add(fd_.get(), EPOLLIN | EPOLLRDHUP,
                       [this](std::uint32_t ev) { on_events(ev); });
}

bool Connection::idle() const {
    return state_ == State::open && parser_.phase() == HttpParser::Phase::idle && out_.empty() &&
           !reading_paused_;
}

void Connection::set_interest(bool in, bool out) {
    if (in == want_in_ && out == want_out_) return;
    want_in_ = in;
    want_out_ = out;
    worker_.loop().modify(fd_.get(), (in ? EPOLLIN | EPOLLRDHUP : 0u) | (out ? EPOLLOUT : 0u));
}

void Connection::on_events(std::uint32_t events) {
    if (state_ == State::lingering) {
        linger();
        return;
    }
    if (events & EPOLLERR) {
        destroy();  // a reset or a failed send: nothing more can be delivered
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) on_readable();
    // EPOLLHUP is reported whatever we asked for: a closing connection tries its last write,
    // which fails and frees it, instead of being woken again and again.
    if (fd_ && (events & (EPOLLOUT | EPOLLHUP))) flush();
}

void Connection::on_readable() {
    if (reading_paused_ || state_ != State::open) return;
    char* buffer = worker_.read_buffer();
    std::size_t capacity = worker_.read_buffer_size();
    for (int round = 0; round < 4; ++round) {
        ssize_t n = ::read(fd_.get(), buffer, capacity);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            destroy();  // ECONNRESET and friends: the client is gone
            return;
        }
        if (n == 0) {
            // The client closed its side. What it sent is answered; then we close.
            if (out_.empty()) {
                destroy();
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
        if (!fd_ || state_ != State::open || reading_paused_) break;
        if (static_cast<std::size_t>(n) < capacity) break;
    }
    if (fd_) flush();
}

void Connection::process(const char* data, std::size_t size) {
    while (size > 0 && state_ == State::open) {
        if (parser_.phase() == HttpParser::Phase::idle) phase_since_ = worker_.loop().cached_now();
        std::size_t consumed = 0;
        auto status = parser_.feed(data, size, consumed);
        data += consumed;
        size -= consumed;
        if (status == HttpParser::Status::need_more) {
            // RFC 9110 10.1.1: only once the head is complete (it may still be refused with
            // 413), and never to an HTTP/1.0 client.
            if (parser_.expects_continue() && !continue_sent_ &&
                parser_.phase() == HttpParser::Phase::body && parser_.request().http_minor() >= 1) {
                out_.tail().append("HTTP/1.1 100 Continue\r\n\r\n");
                continue_sent_ = true;
            }
            if (parser_.phase() == HttpParser::Phase::body)
                phase_since_ = worker_.loop().cached_now();
            return;
        }
        if (status == HttpParser::Status::error) {
            respond_error(parser_.error_status(), parser_.error_reason());
            return;
        }
        handle_request();
        parser_.next();
        continue_sent_ = false;
        // The keep-alive timeout runs from the response (the loop's time is refreshed after
        // each plugin handler: as recent as the last one).
        phase_since_ = worker_.loop().cached_now();
        if (close_after_) {
            // Whatever the client pipelined after a closing request is not answered, and not
            // read either until the response is out (level-triggered input would spin): the
            // flush() that follows every process() waits for EPOLLOUT only, or closes.
            state_ = State::closing;
            // Nothing after this request in our hands, and the read that brought it did not
            // fill the buffer: close without lingering, as nginx does (lingering_close on),
            // unless the response cannot leave at once (flush()). Closing with unread input
            // resets the connection, which can cut off the response on its way; bytes that
            // arrive while the handler runs are that risk, as they are for nginx.
            close_at_once_ = size == 0 && read_all_;
            return;
        }
        if (out_.size() > max_unsent_bytes && size > 0) {
            pending_.assign(data, size);
            reading_paused_ = true;  // the flush() that follows stops reading if it must wait
            return;
        }
    }
}

void Connection::handle_request() {
    Request& request = parser_.request();
    worker_.count_request();
    served_any_ = true;
    close_after_ = parser_.must_close() || worker_.draining();
    bool head = request.method() == "HEAD";
    bool http10_keep_alive =
        request.http_major() == 1 && request.http_minor() == 0 && !close_after_;
    std::string& out = out_.tail();
    MountedPlugin* mounted = worker_.plugins().route(request.path());
    if (mounted == nullptr) {
        encode_error(out, 404, close_after_, head, http10_keep_alive, worker_.loop().cached_now());
        worker_.record_request(request, 404, 0, phase_since_, *this);
        return;
    }
    parser_.set_mount_length(mounted->mount == "/" ? 0 : mounted->mount.size());
    response_.clear();
    worker_.set_busy(true);
    try {
        mounted->plugin->handle(request, response_);
        worker_.set_busy(false);
        worker_.loop().refresh_now();  // a handler may take long: timeouts count from its end
    } catch (...) {
        worker_.set_busy(false);
        worker_.loop().refresh_now();
        worker_.on_plugin_failure("plugin \"" + mounted->mount + "\" threw " +
                                  describe_current_exception() + " while handling " +
                                  std::string(request.method()) + " " +
                                  std::string(request.target().substr(0, 200)));
        encode_error(out, 500, close_after_, head, http10_keep_alive, worker_.loop().cached_now());
        worker_.record_request(request, 500, 0, phase_since_, *this);
        return;
    }
    std::string error;
    std::string& body = response_.body();
    if (!encode_head(out, response_, body.size(), close_after_, http10_keep_alive, error,
                     worker_.loop().cached_now())) {
        core::log_error("plugin \"{}\" gave an invalid response to {} {}: {}", mounted->mount,
                        request.method(), request.target().substr(0, 200), error);
        encode_error(out, 500, close_after_, head, http10_keep_alive, worker_.loop().cached_now());
        worker_.record_request(request, 500, 0, phase_since_, *this);
        return;
    }
    std::size_t bytes = head ? 0 : body.size();
    if (!head && !body.empty()) {
        if (body.size() <= inline_body_limit) {
            out.append(body);
        } else {
            out_.push(std::move(body));
            body = std::string();
        }
    }
    worker_.record_request(request, response_.status(), bytes, phase_since_, *this);
}

const std::string& Connection::peer() {
    if (peer_.empty()) {
        sockaddr_storage a{};
        socklen_t length = sizeof a;
        char text[INET6_ADDRSTRLEN] = "-";
        if (getpeername(fd_.get(), reinterpret_cast<sockaddr*>(&a), &length) == 0) {
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

void Connection::respond_error(int status, const std::string& reason) {
    core::log_info("answering {} and closing fd {}: {}", status, fd_.get(), reason);
    // RFC 9110 9.3.2: no content in a response to HEAD, herd's own refusals included.
    encode_error(out_.tail(), status, true, parser_.head_request(), false,
                 worker_.loop().cached_now());
    worker_.record_request(parser_.request(), status, 0, phase_since_, *this);
    close_after_ = true;
    state_ = State::closing;  // the caller's flush() stops reading if it must wait
}

void Connection::flush() {
    while (!out_.empty()) {
        ssize_t w = out_.write_to(fd_.get());
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                // Input is not watched while we wait to write: whatever the client sends
                // meanwhile would be unread at close. Linger instead, unless it has finished.
                if (!peer_done_) close_at_once_ = false;
                set_interest(state_ == State::open && !reading_paused_, true);
                return;
            }
            destroy();  // EPIPE, ECONNRESET: the client went away
            return;
        }
        last_write_ = worker_.loop().cached_now();
    }
    if (close_after_ || (worker_.closing_idle() && parser_.phase() == HttpParser::Phase::idle &&
                         !reading_paused_)) {
        // Draining: a connection whose last response just left closes now, not at the deadline.
        close_after_ = true;
        if (close_at_once_)
            destroy();
        else
            begin_close();
        return;
    }
    if (reading_paused_) {
        reading_paused_ = false;
        read_all_ = false;  // more may wait in the socket behind what we kept
        set_interest(true, false);
        std::string input = std::move(pending_);
        pending_.clear();
        process(input.data(), input.size());
        if (fd_) flush();
        return;
    }
    set_interest(true, false);
}

void Connection::begin_close() {
    // Send our FIN, then read and discard until the client's FIN (or linger_time).
    if (::shutdown(fd_.get(), SHUT_WR) < 0) {
        destroy();
        return;
    }
    state_ = State::lingering;
    worker_.connection_closing();
    phase_since_ = worker_.loop().cached_now();
    set_interest(true, false);
}

void Connection::linger() {
    char* buffer = worker_.read_buffer();
    // Bounded like on_readable: a client that keeps sending must not stall the others; the
    // sweep ends lingering after linger_time.
    for (int round = 0; round < 4; ++round) {
        ssize_t n = ::read(fd_.get(), buffer, worker_.read_buffer_size());
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        destroy();  // EOF or error: the client is done
        return;
    }
    if (worker_.loop().cached_now() - phase_since_ > linger_time) destroy();
}

void Connection::check_timeouts(Clock::time_point now) {
    if (!fd_) return;
    auto since = now - phase_since_;
    const core::AppConfig& app = worker_.app();
    auto header_timeout = std::chrono::milliseconds(app.header_timeout_ms);
    switch (state_) {
        case State::lingering:
            if (since > linger_time) destroy();
            return;
        case State::closing:
        case State::open:
            break;
    }
    if (!out_.empty() || reading_paused_) {
        // A client that stopped reading what it asked for.
        if (now - std::max(last_write_, phase_since_) > send_timeout) destroy();
        return;
    }
    if (state_ == State::closing) return;
    switch (parser_.phase()) {
        case HttpParser::Phase::idle:
            // A connection that never sent a request gets the header timeout (as nginx's
            // client_header_timeout); between requests, the keep-alive timeout. Either way
            // there is no request to answer: close without a response. A draining worker
            // waits a short grace for the next request (answered with "Connection: close")
            // before closing. Either way with our FIN first and lingering reads after, so a
            // request already on its way meets a clean end of stream, never a reset.
            if (since > (served_any_ ? std::chrono::milliseconds(app.keepalive_timeout_ms)
                                     : header_timeout) ||
                (worker_.closing_idle() && since > worker_.drain_idle_grace()))
                begin_close();
            return;
        case HttpParser::Phase::headers:
        case HttpParser::Phase::body:
            if (since > header_timeout) {
                respond_error(408, parser_.phase() == HttpParser::Phase::headers
                                       ? "request headers not complete within header_timeout_ms"
                                       : "no request body data within header_timeout_ms");
                flush();
            }
            return;
    }
}

void Connection::drain(bool close_idle) {
    // Otherwise the next response carries "Connection: close" (Worker::draining()), and the
    // sweep closes the connection once it has been idle for the drain grace.
    if (close_idle && idle()) begin_close();
}

void Connection::destroy() {
    if (!fd_) return;
    int fd = fd_.get();
    worker_.loop().remove_before_close(fd);
    fd_.reset();
    worker_.release(fd, state_ == State::lingering);
}

}  // namespace herd::worker
