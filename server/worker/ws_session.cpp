// WsSession: one WebSocket in a worker; see ws_session.hpp. Here: reading and parsing frames,
// the plugin's callbacks, writing, the close handshake and the timeouts; and WsTopics.
#include "worker/ws_session.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>

#include "core/log.hpp"
#include "worker/plugin_host.hpp"
#include "ws/utf8.hpp"

namespace herd::worker {

namespace close_code = ws::close_code;

void WsTopics::subscribe(const std::string& topic, WsSession& s) {
    topics_[topic].push_back(&s);
}

void WsTopics::unsubscribe(const std::string& topic, WsSession& s) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) return;
    auto& v = it->second;
    auto at = std::find(v.begin(), v.end(), &s);
    if (at != v.end()) {
        *at = v.back();  // order among subscribers does not matter
        v.pop_back();
    }
    if (v.empty()) topics_.erase(it);
}

std::size_t WsTopics::publish(const std::string& topic, std::string_view data, bool binary) {
    auto it = topics_.find(topic);
    if (it == topics_.end()) return 0;  // nobody here: nothing to encode
    // Encoded once, written to each subscriber.
    std::string frame;
    frame.reserve(data.size() + ws::max_frame_header);
    ws::append_frame(frame, binary ? ws::Opcode::binary : ws::Opcode::text, data);
    // deliver() may close a socket (its queue is full), which unsubscribes it from this very
    // list: walk a copy.
    std::vector<WsSession*> sockets = it->second;
    for (WsSession* s : sockets) s->deliver(frame);
    return sockets.size();
}

WsSession::WsSession(WsHost& host, MountedPlugin& plugin, WsTopics& topics, std::uint64_t id)
    : host_(host),
      loop_(host.loop()),
      plugin_(plugin),
      topics_(topics),
      parser_(host.app().max_ws_message_bytes),
      id_(id) {
    last_heard_ = last_write_ = loop_.cached_now();
}

WsSession::~WsSession() {
    destroying_ = true;
    for (const std::string& t : subscriptions_) topics_.unsubscribe(t, *this);
    if (fd_) loop_.remove_before_close(fd_.get());
}

void WsSession::adopt(core::UniqueFd fd, OutputQueue&& out, std::string input) {
    fd_ = std::move(fd);
    out_ = std::move(out);
    input_ = std::move(input);
    // After the plugin code that accepted: its callbacks are not run from inside it.
    loop_.defer([this] { start(); });
}

void WsSession::start() {
    if (!fd_) return;  // closed (aborted) before it began
    interest_ = EPOLLRDHUP;
    loop_.add(fd_.get(), interest_, [this](std::uint32_t ev) { on_events(ev); });
    if (state_ == State::finishing) {
        finish_step();  // closed from the handler that accepted
        return;
    }
    flush(false);
    resume_input();
}

void WsSession::resume_input() {
    // A message held while the plugin had no on_message goes first, then what was read
    // behind it; then the socket is read again.
    if (held_message_ && on_message_ && state_ == State::open) {
        held_message_ = false;
        std::string data = std::move(held_data_);
        held_data_ = std::string();
        message(herd::WsMessage{data, held_binary_});
    }
    if (fd_ && !input_.empty() && !reading_paused()) {
        std::string input = std::move(input_);
        input_.clear();
        process(input.data(), input.size());
    }
    if (fd_) {
        flush(true);
        update_interest();
    }
}

herd::Loop& WsSession::loop() noexcept {
    return *plugin_.loop;
}

void WsSession::update_interest() {
    // Before start() the socket is not watched yet (the plugin may send or close from the
    // handler that accepted): start() sets the interest.
    if (!fd_ || interest_ == 0) return;
    std::uint32_t want = EPOLLRDHUP;
    // Reading waits while a message waits for the plugin's on_message; the client's leaving
    // is still seen. Finishing, input is read and dropped until the client's FIN.
    if (!reading_paused() || state_ == State::finishing) want |= EPOLLIN;
    if (output_blocked_) want |= EPOLLOUT;
    if (want == interest_) return;
    interest_ = want;
    loop_.modify(fd_.get(), want);
}

void WsSession::on_events(std::uint32_t events) {
    if (!fd_) return;
    if (events & EPOLLERR) {
        lost("the connection was reset");
        return;
    }
    if (state_ == State::finishing) {
        finish_step();
        return;
    }
    if (reading_paused() && (events & (EPOLLRDHUP | EPOLLHUP))) {
        lost("the client closed the connection without a close frame");
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) on_readable();
    if (fd_ && (events & EPOLLOUT)) flush(true);
}

void WsSession::on_readable() {
    if (reading_paused()) return;
    char* buffer = host_.read_buffer();
    std::size_t capacity = host_.read_buffer_size();
    for (int round = 0; round < 4 && fd_; ++round) {
        ssize_t n = ::read(fd_.get(), buffer, capacity);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            lost("the connection was reset");
            return;
        }
        if (n == 0) {
            lost("the client closed the connection without a close frame");
            return;
        }
        process(buffer, static_cast<std::size_t>(n));
        if (static_cast<std::size_t>(n) < capacity || state_ == State::finishing ||
            reading_paused())
            break;
    }
    if (fd_ && state_ != State::finishing) {
        flush(true);
        update_interest();
    }
}

void WsSession::process(char* data, std::size_t size) {
    last_heard_ = loop_.cached_now();
    ping_out_ = false;  // any frame shows the client alive
    while (fd_ && (state_ == State::open || state_ == State::closing)) {
        if (reading_paused()) {
            input_.append(data, size);  // behind the held message
            return;
        }
        std::size_t used = 0;
        ws::FrameParser::Event ev = parser_.next(data, size, used);
        data += used;
        size -= used;
        using Kind = ws::FrameParser::Event::Kind;
        switch (ev.kind) {
            case Kind::none:
                parser_.trim();
                return;
            case Kind::message:
                // While closing, the client's messages are read and dropped (RFC 6455 1.4).
                if (state_ != State::open) break;
                if (!on_message_) {
                    // No callback yet (or it let it go): the message waits for one, and
                    // reading stops behind it.
                    held_data_.assign(ev.data);
                    held_binary_ = ev.binary;
                    held_message_ = true;
                    break;
                }
                message(herd::WsMessage{ev.data, ev.binary});
                break;
            case Kind::ping:
                if (state_ == State::open) queue_frame(ws::Opcode::pong, ev.data);
                break;
            case Kind::pong:
                break;
            case Kind::close:
                client_closed(ev.code, ev.data);
                return;
            case Kind::error:
                fail(ev.code, ev.reason);
                return;
        }
    }
}

void WsSession::message(const herd::WsMessage& m) {
    // The callback may replace itself, or let the socket go: it runs from a local.
    auto fn = std::move(on_message_);
    on_message_ = nullptr;
    in_message_ = true;
    bool returned = core::guarded(*plugin_.failed, plugin_.who,
                                  "in a WebSocket on_message callback", [&] { fn(m); });
    in_message_ = false;
    if (!on_message_ && held_ && state_ == State::open) on_message_ = std::move(fn);
    loop_.refresh_now();
    // The worker was told (it retires); this socket ends with "internal error".
    if (!returned && fd_)
        fail(close_code::internal_error, "the plugin's on_message callback threw");
}

void WsSession::client_closed(int code, std::string_view reason) {
    if (state_ == State::open) {
        // Echo its code (RFC 6455 5.5.1), then close our side.
        std::string why(reason);  // the view is into the buffer the close frame is queued from
        queue_close(code, {});
        state_ = State::finishing;
        notify_close(code, why, true);
    } else {
        // The answer to ours: the handshake is complete.
        state_ = State::finishing;
        notify_close(close_code_, close_reason_, false);
    }
    begin_finish();
}

void WsSession::fail(int code, const char* reason) {
    core::log_info("closing WebSocket {} of {} with {}: {}", id_, plugin_.who, code, reason);
    if (state_ == State::open) queue_close(code, reason);
    state_ = State::finishing;
    notify_close(code, reason, false);
    begin_finish();
}

void WsSession::queue_close(int code, std::string_view reason) {
    std::string& tail = out_.tail();
    ws::append_close(tail, code, reason);
}

void WsSession::begin_finish() {
    if (!fd_) return;
    phase_since_ = loop_.cached_now();
    held_message_ = false;
    input_.clear();
    finish_step();
}

void WsSession::finish_step() {
    // What is queued (the close frame last) goes out; then our FIN; input is read and dropped
    // meanwhile, until the client's FIN.
    flush(false);
    if (!fd_) return;
    if (out_.empty() && !fin_sent_) {
        fin_sent_ = true;
        phase_since_ = loop_.cached_now();  // lingering from now
        if (::shutdown(fd_.get(), SHUT_WR) < 0) {
            close_fd();
            return;
        }
    }
    char* buffer = host_.read_buffer();
    for (int round = 0; round < 4; ++round) {
        ssize_t n = ::read(fd_.get(), buffer, host_.read_buffer_size());
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        close_fd();  // EOF or an error: the client is done
        return;
    }
    update_interest();
}

void WsSession::lost(const char* why) {
    core::log_debug("WebSocket {} of {}: {}", id_, plugin_.who, why);
    held_message_ = false;
    if (state_ == State::closing)
        notify_close(close_code_, close_reason_, false);
    else
        notify_close(close_code::abnormal, {}, true);
    close_fd();
}

void WsSession::notify_close(int code, std::string_view reason, bool by_client) {
    if (notified_) return;
    notified_ = true;
    for (const std::string& t : subscriptions_) topics_.unsubscribe(t, *this);
    subscriptions_.clear();
    when_writable_ = nullptr;
    on_message_ = nullptr;
    if (plugin_calls_ > 0) {
        // Ended inside the plugin's own call: its callbacks run after that call, never inside
        // it. The session is freed in a later iteration, after this.
        loop_.defer([this, code, why = std::string(reason), by_client] {
            closed_callbacks(code, why, by_client);
        });
        return;
    }
    closed_callbacks(code, reason, by_client);
}

void WsSession::closed_callbacks(int code, std::string_view reason, bool by_client) {
    scope_.cancel("the WebSocket closed");
    auto fn = std::move(on_close_);
    on_close_ = nullptr;
    if (!fn) return;
    core::guarded(*plugin_.failed, plugin_.who, "in a WebSocket on_close callback", [&] {
        fn(herd::WsClose{code, reason, by_client});
    });
    loop_.refresh_now();
}

void WsSession::close_fd() {
    if (!fd_) return;
    if (!notified_) notify_close(close_code::abnormal, {}, true);
    loop_.remove_before_close(fd_.get());
    fd_.reset();
    state_ = State::closed;
    out_.clear();
    input_.clear();
    host_.ws_closed(*this, held_);
}

void WsSession::flush(bool notify) {
    while (!out_.empty()) {
        ssize_t w = out_.write_to(fd_.get());
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                if (!output_blocked_) {
                    output_blocked_ = true;
                    update_interest();
                }
                return;
            }
            lost("writing failed");
            return;
        }
        last_write_ = loop_.cached_now();
    }
    if (output_blocked_) {
        output_blocked_ = false;
        update_interest();
    }
    if (notify && when_writable_ && state_ == State::open) {
        auto fn = std::move(when_writable_);
        when_writable_ = nullptr;
        core::guarded(*plugin_.failed, plugin_.who, "in a WebSocket when_writable callback", fn);
        loop_.refresh_now();
    }
}

void WsSession::queue_frame(ws::Opcode opcode, std::string_view payload) {
    std::string& tail = out_.tail();
    // Large payloads go as their own piece: the tail buffer does not grow to their size.
    if (payload.size() > (16 << 10)) {
        ws::append_frame_header(tail, opcode, payload.size());
        out_.push(std::string(payload));
    } else {
        ws::append_frame(tail, opcode, payload);
    }
}

bool WsSession::over_queue_limit() {
    if (out_.size() <= host_.app().ws_send_queue_bytes) return false;
    // The client reads too slowly for what is sent: herd's policy is to close (1008) rather
    // than drop messages silently or grow without bound. The close frame waits behind the
    // queue; the send timeout ends a client that reads nothing at all.
    fail(close_code::policy, "ws_send_queue_bytes exceeded: the client reads too slowly");
    return true;
}

bool WsSession::send(std::string_view data, bool binary) {
    if (!binary && !ws::valid_utf8(data))
        throw std::invalid_argument("herd::WebSocket::send: a text message must be UTF-8");
    if (state_ != State::open || !fd_) return false;
    PluginCall call(*this);
    bool was_empty = out_.empty();
    queue_frame(binary ? ws::Opcode::binary : ws::Opcode::text, data);
    if (over_queue_limit()) return false;
    if (was_empty && !output_blocked_) flush(false);
    return fd_ && out_.size() < high_water;
}

void WsSession::deliver(std::string_view frame) {
    if (state_ != State::open || !fd_) return;
    PluginCall call(*this);  // a publish may come from the plugin's own call
    bool was_empty = out_.empty();
    if (frame.size() > (16 << 10))
        out_.push(std::string(frame));
    else
        out_.tail().append(frame);
    if (over_queue_limit()) return;
    if (was_empty && !output_blocked_) flush(false);
}

void WsSession::close(int code, std::string_view reason) {
    if (code != close_code::normal && (code < 3000 || code > 4999))
        throw std::invalid_argument("herd::WebSocket::close: code " + std::to_string(code) +
                                    " (1000, or 3000-4999 for the application's own)");
    if (state_ != State::open || !fd_) return;
    PluginCall call(*this);
    begin_closing(code, reason);
    flush(false);
    update_interest();
}

void WsSession::begin_closing(int code, std::string_view reason) {
    close_code_ = code;
    close_reason_ = std::string(reason.substr(0, 123));
    queue_close(code, close_reason_);
    state_ = State::closing;
    phase_since_ = loop_.cached_now();
    // What the client still sends is read for its close frame, and its messages dropped; a
    // message held for on_message is dropped too, and what was read behind it is parsed.
    on_message_ = nullptr;
    if (held_message_) {
        held_message_ = false;
        held_data_ = std::string();
        if (!input_.empty() && !resume_queued_) {
            resume_queued_ = true;
            loop_.defer([this] {
                resume_queued_ = false;
                if (fd_ && state_ == State::closing) resume_input();
            });
        }
    }
}

bool WsSession::writable() const noexcept {
    return state_ == State::open && fd_ && out_.size() < high_water;
}

void WsSession::when_writable(herd::Callback fn) {
    if (state_ != State::open) return;
    when_writable_ = std::move(fn);
    if (out_.size() < low_water)
        loop_.defer([this] {
            if (fd_ && !output_blocked_) flush(true);
        });
}

void WsSession::on_message(herd::Function<void(const herd::WsMessage&)> fn) {
    if (state_ != State::open) return;
    bool was_paused = reading_paused();
    on_message_ = std::move(fn);
    if (was_paused && !in_message_ && on_message_ && fd_ && !resume_queued_) {
        resume_queued_ = true;
        loop_.defer([this] {
            resume_queued_ = false;
            if (fd_ && state_ != State::finishing) resume_input();
        });
    }
}

void WsSession::on_close(herd::Function<void(const herd::WsClose&)> fn) {
    if (notified_) return;
    on_close_ = std::move(fn);
}

void WsSession::subscribe(std::string_view topic) {
    if (notified_) return;
    std::string t(topic);
    if (std::find(subscriptions_.begin(), subscriptions_.end(), t) != subscriptions_.end()) return;
    topics_.subscribe(t, *this);
    subscriptions_.push_back(std::move(t));
}

void WsSession::unsubscribe(std::string_view topic) {
    auto it = std::find(subscriptions_.begin(), subscriptions_.end(), topic);
    if (it == subscriptions_.end()) return;
    topics_.unsubscribe(*it, *this);
    subscriptions_.erase(it);
}

void WsSession::release() noexcept {
    if (destroying_) return;
    held_ = false;
    // Dropped: no more callbacks, and an open socket closes normally.
    on_message_ = nullptr;
    on_close_ = nullptr;
    when_writable_ = nullptr;
    if (state_ == State::open && fd_) {
        begin_closing(close_code::normal, {});
        loop_.defer([this] {
            if (fd_) {
                flush(false);
                update_interest();
            }
        });
    }
    if (state_ == State::closed) host_.ws_unheld(*this);
}

void WsSession::drain() {
    if (state_ != State::open || !fd_) return;
    begin_closing(close_code::going_away, "going away");
    flush(false);
    update_interest();
}

void WsSession::abort() {
    if (!fd_) return;
    if (state_ == State::open) begin_closing(close_code::going_away, "going away");
    for (int i = 0; i < 8 && !out_.empty(); ++i)
        if (out_.write_to(fd_.get()) < 0 && errno != EINTR) break;
    if (state_ == State::closing) notify_close(close_code_, close_reason_, false);
    close_fd();
}

void WsSession::check_timeouts(Clock::time_point now) {
    if (!fd_) return;
    if (output_blocked_ && now - last_write_ > send_timeout) {
        lost("the client read nothing for 60 s");
        return;
    }
    switch (state_) {
        case State::open: {
            int interval = host_.app().ws_ping_interval_ms;
            if (interval <= 0) return;
            auto period = std::chrono::milliseconds(interval);
            if (ping_out_ && now - last_heard_ > 2 * period) {
                lost("no answer to a ping within ws_ping_interval_ms");
                return;
            }
            if (!ping_out_ && now - last_heard_ > period) {
                ping_out_ = true;
                bool was_empty = out_.empty();
                queue_frame(ws::Opcode::ping, {});
                if (was_empty && !output_blocked_) flush(false);
            }
            return;
        }
        case State::closing:
            if (now - phase_since_ > close_timeout) lost("no answer to the close frame");
            return;
        case State::finishing:
            // Writing out what is queued has the send timeout (above); after our FIN, the
            // client has linger_time to send its own.
            if (fin_sent_ && now - phase_since_ > linger_time) close_fd();
            return;
        case State::closed:
            return;
    }
}

}  // namespace herd::worker
