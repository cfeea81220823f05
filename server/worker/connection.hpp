// Connection: one client socket in a worker, as a state machine. It reads, feeds the parser,
// hands each request to its plugin (herd::Exchange: the plugin may answer at once, later, or
// in pieces), writes responses with writev, and enforces timeouts, deadlines and closing.
//
//   reading ──request──► handling ──answered in the call──► reading (or closing)
//                           │
//                           └─not yet──► waiting ──send()──► reading / answered
//                                           │   └─begin()/write()──► streaming ──end()──► reading
//                                           └─deadline: 504──► closing
//   any state with a request ──client gone──► closed (cancelled)
//   closing ──written──► lingering (our FIN, then read to the client's) ──► closed
//
// One request at a time: while a handler has not answered (waiting, streaming) or its
// coroutine has not returned after answering (answered), input is read and held, not parsed,
// so pipelined responses leave in request order. A closed connection object lives on while
// its plugin still holds the request (a Responder, a coroutine): the worker keeps it aside.
#pragma once

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <string>

#include <herd/responder.hpp>

#include "core/config.hpp"
#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"
#include "http/http_parser.hpp"
#include "worker/output_queue.hpp"

namespace herd::worker {

class Connection;
class WsSession;
struct MountedPlugin;

// What a connection needs of its worker (tests give it a fake one).
class ConnectionHost {
  public:
    using Clock = core::EventLoop::Clock;

    virtual core::EventLoop& loop() = 0;
    virtual const core::AppConfig& app() const = 0;
    virtual const http::HttpLimits& limits() const = 0;
    // The plugin with the longest mount covering path, or null.
    virtual MountedPlugin* route(std::string_view path) = 0;
    // A buffer for reads, shared by the worker's connections: read into it and use it at once.
    virtual char* read_buffer() = 0;
    virtual std::size_t read_buffer_size() const = 0;
    // A request is about to be handled (max_requests counts them).
    virtual void request_started() = 0;
    // A response was queued (or the request ended without one: 499): metrics, access log.
    virtual void request_done(const Request& request, int status, std::size_t bytes,
                              Clock::time_point started, Connection& connection) = 0;
    // Responses close their connections (draining, or retiring after a plugin failure).
    bool responses_close() const { return responses_close_; }
    // Told to drain: a connection closes as soon as it is idle.
    bool closing_idle() const { return closing_idle_; }
    virtual std::chrono::milliseconds drain_idle_grace() const = 0;
    // Around a synchronous plugin call: shared mode's load board, while it counts this worker
    // (siblings do not step back for a worker that cannot accept).
    void set_busy(bool busy) {
        if (busy_word_ != nullptr) busy_word_->store(busy ? 2u : 1u, std::memory_order_relaxed);
    }
    // The connection answered its last response and waits for the client's FIN.
    virtual void connection_lingering() = 0;
    // Its descriptor is closed (fd is the number it had). `held`: a plugin still holds its
    // request, so the object must live on until connection_unheld().
    virtual void connection_closed(Connection& c, int fd, bool was_lingering, bool held) = 0;
    virtual void connection_unheld(Connection& c) = 0;
    // A plugin accepts a WebSocket handshake: the session that will own the socket, or null
    // when this host serves none (the handshake is then answered 503).
    virtual WsSession* open_websocket(MountedPlugin& plugin) {
        (void)plugin;
        return nullptr;
    }
    // The connection gave its socket (descriptor fd) to the WebSocket session open_websocket
    // made: it counts as open still, as that session. `held` as for connection_closed.
    virtual void connection_upgraded(Connection& c, int fd, bool held) {
        (void)c;
        (void)fd;
        (void)held;
    }

  protected:
    ~ConnectionHost() = default;

    // Plain fields, not virtual calls: they are read for every request.
    bool responses_close_ = false;
    bool closing_idle_ = false;
    // The load board's word of this worker (balance::SlotState: 1 idle, 2 busy), or null.
    std::atomic<std::uint32_t>* busy_word_ = nullptr;
};

class Connection final : public herd::Exchange, private herd::detail::TaskOwner {
  public:
    using Clock = core::EventLoop::Clock;
    enum class State : std::uint8_t {
        reading,    // for a request (or idle between requests); earlier output may be unsent
        handling,   // inside the plugin's respond()
        waiting,    // the plugin answers later; input is held, not parsed
        streaming,  // the head is out, body pieces follow until end()
        answered,   // the response is queued; the handler's coroutine has not returned yet
        closing,    // the last response is queued: close once it is written
        lingering,  // our FIN is sent: reading and discarding until the client's
        closed,     // the descriptor is closed; the object lives while a plugin holds it
    };

    Connection(ConnectionHost& host, core::UniqueFd fd);
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection();

    void start();
    // Reads whatever has arrived, as if the socket had been reported readable.
    void read_now() { on_events(EPOLLIN); }
    int fd() const { return fd_.get(); }
    State state() const { return state_; }
    // Closes the connection when a timeout has passed (408 for an unfinished request).
    void check_timeouts(Clock::time_point now);
    // The worker is draining: finish what is in flight, answer with "Connection: close";
    // with close_idle, a connection between requests closes now (FIN, then lingering).
    void drain(bool close_idle);
    // The worker leaves now: a request still waiting gets 503, a stream ends, and their work
    // is cancelled; one last write is tried, then the descriptor closes.
    void abort(const std::string& why);
    // Between requests with nothing left to write.
    bool idle() const;
    // A plugin still holds its request (a Responder, a running coroutine).
    bool held() const { return responder_out_ || task_ || in_call_ || pinned_; }
    // The client's address ("127.0.0.1"), looked up once, for the access log.
    const std::string& peer();

    // herd::Exchange: what the plugin's Responder does.
    const Request& request() const noexcept override;
    herd::Response& response() noexcept override { return response_; }
    herd::Scope& scope() noexcept override {
        ready_scope();
        return scope_;
    }
    herd::Loop& loop() noexcept override;
    void send() override;
    void begin_stream() override;
    bool write(std::string_view piece) override;
    void end() override;
    bool writable() const noexcept override;
    void when_writable(herd::Callback fn) override;
    void on_cancel(herd::Callback fn) override;
    void release() noexcept override;
    herd::Responder& adopt(herd::Responder&& responder) override;
    void run(herd::Task<> task) override;
    herd::WsEndpoint* upgrade(const herd::WsAccept& accept) override;

  private:
    void on_events(std::uint32_t events);
    void on_readable();
    // Reads into unparsed_ while a request is in the plugin's hands (client gone: cancel).
    void read_held();
    void process(const char* data, std::size_t size);
    void dispatch();
    void after_call(bool returned);
    void answer_error(int status, const std::string& reason);
    void answer_plugin_error(int status);
    void finish_exchange(int status, std::size_t bytes);
    void next_request();
    // The 101 answer is recorded: the socket is the WebSocket session's, this object ends as
    // a closed connection (kept while a coroutine still runs in it).
    void hand_over();
    void schedule_resume();
    void resume();
    void continue_reading();
    void notify_writable() {
        if (when_writable_) notify_writable_now();
    }
    void notify_writable_now();
    void cancel_exchange(const std::string& why);
    void ready_scope();
    void arm_deadline();
    void disarm_deadline() {
        if (deadline_timer_ != 0) loop_.cancel_timer(std::exchange(deadline_timer_, 0));
    }
    void on_deadline();
    void flush();
    void begin_close();
    void linger();
    // The connection is lost with the request in hand: recorded with status (499: the client
    // went; 500: the plugin failed in a stream), cancelled, closed.
    void client_gone(const char* why, int status = 499);
    void close_fd();
    void maybe_unheld();
    void update_interest() {
        // The usual case first: reading, nothing held back, watched as such already.
        if (state_ == State::reading && !input_paused_ && !output_blocked_ &&
            interest_ == (EPOLLIN | EPOLLRDHUP))
            return;
        update_interest_now();
    }
    void update_interest_now();
    // The request in hand may still be answered (not yet, and not cancelled).
    bool can_answer() const {
        return !scope_.cancelled() &&
               ((state_ == State::handling && !answered_in_call_) || state_ == State::waiting);
    }
    bool exchange_active() const {
        return state_ == State::handling || state_ == State::waiting ||
               state_ == State::streaming || state_ == State::answered;
    }
    std::string describe_request() const;
    void task_finished(std::coroutine_handle<> frame, std::exception_ptr error) noexcept override;

    // Bodies up to this size are copied next to their head (one buffer, one iovec); larger ones
    // are queued by move.
    static constexpr std::size_t inline_body_limit = 16 << 10;
    // Stop reading a client that sends requests faster than it reads responses.
    static constexpr std::size_t max_unsent_bytes = 1 << 20;
    // Input held while a request is in the plugin's hands (pipelined requests): beyond, reading
    // stops until the answer (the client's going away is still seen).
    static constexpr std::size_t max_held_input = 64 << 10;
    // Streaming: write() says "full" above the high-water mark of unsent bytes, when_writable
    // fires below the low-water mark, and a plugin that writes on regardless is cut off.
    static constexpr std::size_t stream_high_water = 64 << 10;
    static constexpr std::size_t stream_low_water = 16 << 10;
    static constexpr std::size_t stream_cut_off = 16 * stream_high_water;
    // After our FIN, how long we read and discard what the client still sends before closing:
    // closing with unread input would send a reset that can destroy the response in flight.
    static constexpr auto linger_time = std::chrono::seconds(2);
    // A client that reads nothing of a pending response for this long is dropped.
    static constexpr auto send_timeout = std::chrono::seconds(60);

    ConnectionHost& host_;
    core::EventLoop& loop_;       // the host's, looked up once
    const core::AppConfig& app_;  // likewise
    char* read_buffer_;           // the worker's, shared by its connections
    std::size_t read_size_;
    core::UniqueFd fd_;
    http::HttpParser parser_;
    herd::Response response_;
    OutputQueue out_;
    std::string unparsed_;  // input read but not parsed yet (held, or paused for backpressure)
    std::string peer_;
    State state_ = State::reading;
    std::uint32_t interest_ = EPOLLIN | EPOLLRDHUP;  // what the loop watches now

    // The request in the plugin's hands (handling, waiting, streaming, answered).
    MountedPlugin* plugin_ = nullptr;
    WsSession* upgraded_to_ = nullptr;  // the plugin accepted a WebSocket: its session
    int upgraded_fd_ = -1;
    herd::BasicScope scope_;
    herd::Responder held_;  // a coroutine handler's (serve_coroutine)
    std::coroutine_handle<> task_;
    herd::Callback on_cancel_;
    herd::Callback when_writable_;
    core::EventLoop::TimerId deadline_timer_ = 0;
    Clock::time_point request_start_;
    std::size_t stream_bytes_ = 0;
    int stream_status_ = 0;
    bool responder_out_ = false;     // the plugin has a Responder that has not answered
    bool in_call_ = false;           // inside respond(): its caller finishes the work
    bool answered_in_call_ = false;  // send() inside respond(): dispatch() finishes it
    bool in_dispatch_ = false;       // inside dispatch(): process() goes on by itself
    bool pinned_ = false;            // cancelling: coroutines resume into this object
    bool quiet_release_ = false;     // letting go of a responder whose answer is decided
    int answer_status_ = 0;
    std::size_t answer_bytes_ = 0;
    bool chunked_ = false;     // streaming with chunked framing
    bool stream_body_ = true;  // streaming pieces are sent (not for HEAD, 204, 304)
    bool head_only_ = false;   // a HEAD request
    bool http10_keep_alive_ = false;
    bool stream_cut_ = false;   // the plugin wrote past the cut-off: resume() closes
    bool orphaned_ = false;     // closed while held: the worker keeps it aside
    bool scope_ready_ = false;  // scope_ has this request's deadline (ready_scope())

    bool close_after_ = false;
    bool served_any_ = false;
    bool continue_sent_ = false;
    bool input_paused_ = false;    // reading stopped: too much unsent output, or held input
    bool output_blocked_ = false;  // the last write met EAGAIN: waiting for EPOLLOUT
    bool read_all_ = false;        // the last read() did not fill the buffer
    bool close_at_once_ = false;   // closing needs no FIN-and-wait (see process())
    bool peer_done_ = false;       // the client's FIN has arrived
    bool in_io_ = false;           // inside on_events: it flushes and resumes on its way out
    bool resume_queued_ = false;
    bool destroying_ = false;
    Clock::time_point phase_since_;  // start of the current timeout phase
    Clock::time_point last_write_;   // last progress writing a response
};

}  // namespace herd::worker
