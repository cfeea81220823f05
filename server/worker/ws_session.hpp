// WsSession: one WebSocket in a worker, from the 101 answer to the closed descriptor, as a
// state machine. A Connection hands its socket over when its plugin accepts a handshake
// (Connection::upgrade); from then on the session reads frames (ws::FrameParser), calls the
// plugin's callbacks, answers pings, writes what the plugin sends or publishes, and closes.
//
//   open ──plugin close() / drain (1001)──► closing ──client's close──► finishing ──► closed
//     │                                        └──close_timeout──────────────────────► closed
//     ├──client's close (echoed) / protocol error (1002, 1007, 1009) / 1008 / 1011──► finishing
//     └──EOF or reset without a close frame, a dead client (ping unanswered)────────► closed
//   finishing: what is queued is written, then our FIN, then reads until the client's FIN
//   (at most linger_time): RFC 6455 7.1.1 has the server close the TCP connection first.
//
// on_close runs once, when the socket leaves open or closing. The object lives on while the
// plugin holds its WebSocket (the worker keeps it, as it keeps orphaned connections).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <herd/websocket.hpp>

#include "core/config.hpp"
#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"
#include "worker/output_queue.hpp"
#include "ws/ws_frame.hpp"

namespace herd::worker {

class WsSession;
struct MountedPlugin;

// What a WebSocket needs of its worker.
class WsHost {
  public:
    virtual core::EventLoop& loop() = 0;
    virtual const core::AppConfig& app() const = 0;
    virtual char* read_buffer() = 0;
    virtual std::size_t read_buffer_size() const = 0;
    // Its descriptor is closed. `held`: the plugin still holds its WebSocket, so the object
    // must live on until ws_unheld().
    virtual void ws_closed(WsSession& s, bool held) = 0;
    virtual void ws_unheld(WsSession& s) = 0;

  protected:
    ~WsHost() = default;
};

// One plugin's topics in one worker: which of its sockets each published message goes to.
class WsTopics {
  public:
    void subscribe(const std::string& topic, WsSession& s);
    void unsubscribe(const std::string& topic, WsSession& s);
    // Writes a message (as one frame, encoded once) to every socket subscribed to topic;
    // returns to how many.
    std::size_t publish(const std::string& topic, std::string_view data, bool binary);
    std::size_t size() const { return topics_.size(); }

  private:
    std::unordered_map<std::string, std::vector<WsSession*>> topics_;
};

class WsSession final : public herd::WsEndpoint {
  public:
    using Clock = core::EventLoop::Clock;
    enum class State : std::uint8_t { open, closing, finishing, closed };

    WsSession(WsHost& host, MountedPlugin& plugin, WsTopics& topics, std::uint64_t id);
    WsSession(const WsSession&) = delete;
    WsSession& operator=(const WsSession&) = delete;
    ~WsSession();

    // The connection's socket, with what it still had to write (the 101 answer last) and what
    // it had read past the handshake. Reading begins in the loop's next iteration (after the
    // plugin code that accepted).
    void adopt(core::UniqueFd fd, OutputQueue&& out, std::string input);
    // More of what was read past the handshake (before the session starts).
    void add_input(const char* data, std::size_t size) { input_.append(data, size); }
    int fd() const { return fd_.get(); }
    State state() const { return state_; }
    bool held() const { return held_; }
    // Ping, close, linger and send timeouts (the worker's sweep).
    void check_timeouts(Clock::time_point now);
    // The worker drains: close 1001 ("going away"); clients reconnect to other workers.
    void drain();
    // The worker leaves now: one last write, then the descriptor closes.
    void abort();
    // A published message's frame: written unless the socket is not open.
    void deliver(std::string_view frame);

    // herd::WsEndpoint: what the plugin's WebSocket does.
    bool send(std::string_view data, bool binary) override;
    void close(int code, std::string_view reason) override;
    bool open() const noexcept override { return state_ == State::open; }
    bool writable() const noexcept override;
    void when_writable(herd::Callback fn) override;
    void on_message(herd::Function<void(const herd::WsMessage&)> fn) override;
    void on_close(herd::Function<void(const herd::WsClose&)> fn) override;
    void subscribe(std::string_view topic) override;
    void unsubscribe(std::string_view topic) override;
    herd::Scope& scope() noexcept override { return scope_; }
    herd::Loop& loop() noexcept override;
    std::uint64_t id() const noexcept override { return id_; }
    void release() noexcept override;

    // Write() says "full" above this many unsent bytes; when_writable fires below the low mark.
    static constexpr std::size_t high_water = 64 << 10;
    static constexpr std::size_t low_water = 16 << 10;
    // How long herd waits for the client's answer to its close frame, and reads after its FIN.
    static constexpr auto close_timeout = std::chrono::seconds(5);
    static constexpr auto linger_time = std::chrono::seconds(2);
    // A client that reads nothing of what is queued for this long is dropped.
    static constexpr auto send_timeout = std::chrono::seconds(60);

  private:
    void start();
    void on_events(std::uint32_t events);
    void on_readable();
    void process(char* data, std::size_t size);
    void message(const herd::WsMessage& m);
    void client_closed(int code, std::string_view reason);
    // herd ends the socket with a close frame and no wait for the client's (protocol errors,
    // 1008, 1011): logged with the reason.
    void fail(int code, const char* reason);
    void queue_close(int code, std::string_view reason);
    // open -> closing: herd's close frame is queued (the plugin's close, a drop, a drain).
    void begin_closing(int code, std::string_view reason);
    void begin_finish();
    void finish_step();
    void resume_input();
    // The connection ended without the close handshake (1006 for the plugin).
    void lost(const char* why);
    // The socket has closed: no more messages or publications; the scope is cancelled and
    // on_close runs, after the plugin's call when it closed inside one (a send past the queue
    // bound, a failed write): the plugin may still use the socket there.
    void notify_close(int code, std::string_view reason, bool by_client);
    void closed_callbacks(int code, std::string_view reason, bool by_client);
    void close_fd();
    // Writes what is queued; `notify`: may run the plugin's when_writable.
    void flush(bool notify);
    void queue_frame(herd::ws::Opcode opcode, std::string_view payload);
    bool over_queue_limit();
    void update_interest();
    bool reading_paused() const { return held_message_; }
    // Marks a call the plugin makes (send, close, a publish): what closes the socket inside it
    // runs the plugin's callbacks after it.
    struct PluginCall {
        explicit PluginCall(WsSession& s) : s_(s) { ++s_.plugin_calls_; }
        ~PluginCall() { --s_.plugin_calls_; }
        PluginCall(const PluginCall&) = delete;
        PluginCall& operator=(const PluginCall&) = delete;
        WsSession& s_;
    };

    WsHost& host_;
    core::EventLoop& loop_;
    MountedPlugin& plugin_;
    WsTopics& topics_;
    core::UniqueFd fd_;
    ws::FrameParser parser_;
    OutputQueue out_;
    std::string input_;      // read but not parsed: behind a held message, or before start()
    std::string held_data_;  // a message that waits for on_message
    herd::Function<void(const herd::WsMessage&)> on_message_;
    herd::Function<void(const herd::WsClose&)> on_close_;
    herd::Callback when_writable_;
    herd::BasicScope scope_;
    std::vector<std::string> subscriptions_;
    std::string close_reason_;  // of the close frame herd sent (closing)
    std::uint64_t id_;
    Clock::time_point last_heard_;   // the client's last frame (or the open)
    Clock::time_point phase_since_;  // closing, finishing: since when
    Clock::time_point last_write_;
    int close_code_ = 0;    // of the close frame herd sent
    int plugin_calls_ = 0;  // PluginCall depth
    std::uint32_t interest_ = 0;
    State state_ = State::open;
    bool held_ = true;
    bool ping_out_ = false;      // a keep-alive ping is unanswered
    bool held_message_ = false;  // held_data_ waits for on_message: reading stops meanwhile
    bool held_binary_ = false;
    bool fin_sent_ = false;
    bool resume_queued_ = false;
    bool output_blocked_ = false;
    bool notified_ = false;    // on_close ran (or was due)
    bool in_message_ = false;  // inside on_message
    bool destroying_ = false;
};

}  // namespace herd::worker
