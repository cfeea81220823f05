// WebSockets (RFC 6455). A plugin accepts a handshake from its respond() (or later, from the
// coroutine or callback that answers the request) with Responder::accept_websocket(), and
// gets a herd::WebSocket: send text and binary messages, receive whole messages (herd
// reassembles fragments, answers pings and checks every rule of the protocol), close with a
// code and a reason, and subscribe to topics that Context::publish() reaches in every worker
// of the app. Everything runs in the worker's event loop. (ABI 5.3)
//
//     void respond(herd::Responder r) override {
//         herd::WebSocket ws = r.accept_websocket();
//         if (!ws) return;  // not a valid handshake: herd answered 400, 405, 426 or 505
//         std::uint64_t id = ws.id();
//         ws.on_message([this, id](const herd::WsMessage& m) {
//             sockets_.at(id).send(m.data, m.binary);
//         });
//         ws.on_close([this, id](const herd::WsClose&) { sockets_.erase(id); });
//         sockets_.emplace(id, std::move(ws));
//     }
//
// What herd does on its own (the README's WebSockets section has the config keys):
//   - answers pings, and pings a silent client every ws_ping_interval_ms: one that sends
//     nothing within the next interval is cut off (close code 1006 to the plugin);
//   - closes with 1002 (a protocol error: an unmasked frame, reserved bits, bad opcodes or
//     control frames), 1007 (a text message that is not UTF-8), 1009 (a message above
//     max_ws_message_bytes), 1008 (a client that reads too slowly: more than
//     ws_send_queue_bytes unsent), 1011 (this socket's plugin callback threw), 1001 (the
//     worker drains: reload, replacement, scale-down, stop; clients reconnect to the workers
//     that replace it).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herd/function.hpp"
#include "herd/http.hpp"
#include "herd/loop.hpp"
#include "herd/scope.hpp"

namespace herd {

// A whole message (its fragments joined). The data is valid during the callback only.
struct WsMessage {
    std::string_view data;
    bool binary = false;
};

// How a socket ended: the code and reason of the close frame the client sent, or of the one
// herd sent (1001 draining, 1002, 1007, 1008, 1009, 1011: see above; the plugin's own code
// after WebSocket::close). 1005: the client's close frame had no code. 1006: the connection
// ended without a close frame (reset, or a dead client cut off). The reason is valid during
// the callback only.
struct WsClose {
    int code = 1005;
    std::string_view reason;
    bool by_client = false;  // the client began the closing (or vanished)
};

// How a handshake is accepted.
struct WsAccept {
    // A subprotocol the client offered in Sec-WebSocket-Protocol, or "" for none. One it did
    // not offer is the plugin's error (RFC 6455 4.2.2): herd answers 500 and logs it.
    std::string protocol;
    // More header fields for the 101 answer (Set-Cookie, ...). The handshake's own fields
    // (Upgrade, Connection, Sec-WebSocket-*) are herd's.
    std::vector<ResponseHeader> headers;
};

// One accepted socket, as the worker keeps it; plugins use it through a WebSocket. (The
// worker implements it; so does the test kit, herd/testing.hpp.)
class WsEndpoint {
  public:
    virtual bool send(std::string_view data, bool binary) = 0;
    virtual void close(int code, std::string_view reason) = 0;
    virtual bool open() const noexcept = 0;
    virtual bool writable() const noexcept = 0;
    virtual void when_writable(Callback fn) = 0;
    virtual void on_message(Function<void(const WsMessage&)> fn) = 0;
    virtual void on_close(Function<void(const WsClose&)> fn) = 0;
    virtual void subscribe(std::string_view topic) = 0;
    virtual void unsubscribe(std::string_view topic) = 0;
    virtual Scope& scope() noexcept = 0;
    virtual Loop& loop() noexcept = 0;
    virtual std::uint64_t id() const noexcept = 0;
    // The WebSocket holding it went away: the socket closes (1000) if it is still open.
    virtual void release() noexcept = 0;

  protected:
    ~WsEndpoint() = default;
};

// A WebSocket, move-only. Dropping it closes the socket (1000, "") if it is still open: keep
// it (in a member, a map by id(), a coroutine) for as long as the conversation lasts.
// Methods other than the bool conversion throw std::logic_error on an empty one (moved from,
// or returned empty by accept_websocket for a refused handshake). A socket that has closed
// stays a valid object: send() returns false, close() does nothing.
class WebSocket {
  public:
    WebSocket() noexcept = default;
    explicit WebSocket(WsEndpoint* endpoint) noexcept : ep_(endpoint) {}
    WebSocket(WebSocket&& o) noexcept : ep_(std::exchange(o.ep_, nullptr)) {}
    WebSocket& operator=(WebSocket&& o) noexcept {
        if (this != &o) {
            drop();
            ep_ = std::exchange(o.ep_, nullptr);
        }
        return *this;
    }
    WebSocket(const WebSocket&) = delete;
    WebSocket& operator=(const WebSocket&) = delete;
    ~WebSocket() { drop(); }

    explicit operator bool() const noexcept { return ep_ != nullptr; }

    // Queues a message. A text message must be UTF-8 (std::invalid_argument otherwise: the
    // client would have to fail the connection). False when the socket is not open, or when
    // its unsent bytes are above the high-water mark (the message is queued all the same:
    // wait for when_writable before sending more). Past ws_send_queue_bytes unsent, herd
    // closes the socket (1008).
    bool send(std::string_view data, bool binary = false) { return get().send(data, binary); }
    bool send_text(std::string_view text) { return get().send(text, false); }
    bool send_binary(std::string_view bytes) { return get().send(bytes, true); }
    // Begins the close handshake (the client's answer, or a timeout, ends it; on_close then
    // runs). code: 1000, or 3000-4999 for the application's own (std::invalid_argument
    // otherwise); the reason is cut to 123 bytes.
    void close(int code = 1000, std::string_view reason = {}) { get().close(code, reason); }
    // Open: neither side has begun closing.
    bool open() const { return get().open(); }
    bool writable() const { return get().writable(); }
    // Runs fn once when the unsent bytes fall below the low-water mark (not if the socket
    // closes first). Replaces an earlier fn.
    void when_writable(Callback fn) { get().when_writable(std::move(fn)); }
    // Each message the client sends, in order. Messages that arrive before fn is set wait for
    // it (reading stops meanwhile). Replaces an earlier fn (even from inside it).
    void on_message(Function<void(const WsMessage&)> fn) { get().on_message(std::move(fn)); }
    // Once, when the socket has closed (whoever began it). Not run when the WebSocket is
    // dropped first.
    void on_close(Function<void(const WsClose&)> fn) { get().on_close(std::move(fn)); }
    // Messages Context::publish(topic, ...) sends in any worker of the app reach this socket
    // (herd writes them; the plugin is not called). Topics are the plugin's own (another
    // plugin's "news" is another topic). Subscriptions end with the socket.
    void subscribe(std::string_view topic) { get().subscribe(topic); }
    void unsubscribe(std::string_view topic) { get().unsubscribe(topic); }
    // Cancelled when the socket closes: tie the socket's timers and client calls to it.
    Scope& scope() { return get().scope(); }
    Loop& loop() { return get().loop(); }
    // Unique in the worker for its lifetime (never reused).
    std::uint64_t id() const { return get().id(); }

  private:
    WsEndpoint& get() const {
        if (ep_ == nullptr)
            throw std::logic_error(
                "herd::WebSocket used when empty (moved from, or a refused handshake)");
        return *ep_;
    }
    void drop() noexcept {
        if (ep_ != nullptr) std::exchange(ep_, nullptr)->release();
    }

    WsEndpoint* ep_ = nullptr;
};

namespace detail {
// Whether a comma-separated field value has `token` (case-insensitive) among its elements.
inline bool has_token(std::string_view list, std::string_view token) noexcept {
    while (!list.empty()) {
        std::size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t'))
            item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (iequals(item, token)) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}
}  // namespace detail

// Whether the request asks for a WebSocket (an Upgrade field naming "websocket"): the plugin
// may then accept_websocket() (which checks the rest of the handshake) or answer otherwise.
inline bool is_websocket_request(const Request& request) noexcept {
    for (const Header& h : request.headers())
        if (iequals(h.name, "Upgrade") && detail::has_token(h.value, "websocket")) return true;
    return false;
}

}  // namespace herd
