// Part of herd/testing.hpp, the plugin author's test kit (include that): FakeWebSocket, the
// socket a plugin gets from Responder::accept_websocket in the kit (Call::websocket()), and
// what the test does as the client.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herd/loop.hpp"
#include "herd/scope.hpp"
#include "herd/testing/loop.hpp"
#include "herd/websocket.hpp"

namespace herd::testing {

// Whether s is UTF-8 as RFC 3629 has it (the worker checks the same with its own validator).
inline bool is_utf8(std::string_view s) noexcept {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = c < 0x80           ? 0
                        : (c >> 5) == 0x6  ? 1
                        : (c >> 4) == 0xE  ? 2
                        : (c >> 3) == 0x1E ? 3
                                           : 4;
        if (n == 4 || s.size() - i <= n) return false;  // not a lead byte, or cut short
        std::uint32_t cp = n == 0 ? c : c & (0x3Fu >> n);
        for (std::size_t k = 1; k <= n; ++k) {
            auto d = static_cast<unsigned char>(s[i + k]);
            if ((d & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3Fu);
        }
        static constexpr std::uint32_t least[] = {0, 0x80, 0x800, 0x10000};
        if (cp < least[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += n + 1;
    }
    return true;
}

// The worker's WebSocket without the socket: what the plugin sends is recorded, and the test
// plays the client (client_sends, client_closes, client_gone). The client reads all that is
// sent at once, and answers the plugin's close in the loop's next iteration (then on_close
// runs). Unlike the worker, it has no send queue: ws_send_queue_bytes never closes it.
class FakeWebSocket final : public WsEndpoint {
  public:
    struct Sent {
        std::string data;
        bool binary = false;
    };

    FakeWebSocket(FakeLoop& loop, std::uint64_t id) : loop_(loop), id_(id) {}
    FakeWebSocket(const FakeWebSocket&) = delete;
    FakeWebSocket& operator=(const FakeWebSocket&) = delete;
    ~FakeWebSocket() = default;

    // ---- what the plugin did
    const std::vector<Sent>& sent() const noexcept { return sent_; }
    // The socket has closed (either side); then the code and reason of the close.
    bool closed() const noexcept { return !open_ && finished_; }
    int close_code() const noexcept { return close_code_; }
    const std::string& close_reason() const noexcept { return close_reason_; }
    // The plugin still holds its WebSocket.
    bool held() const noexcept { return held_; }
    const std::vector<std::string>& topics() const noexcept { return topics_; }
    bool subscribed(std::string_view topic) const {
        return std::find(topics_.begin(), topics_.end(), topic) != topics_.end();
    }

    // ---- the client
    // A whole message arrives: on_message runs now (messages sent before it is set wait).
    void client_sends(std::string_view data, bool binary = false) {
        if (!open_) throw std::logic_error("FakeWebSocket::client_sends on a closed socket");
        pending_.push_back(Sent{std::string(data), binary});
        deliver();
    }
    // The client sends a close frame (1005: without a code): on_close runs, and herd answers.
    void client_closes(int code = 1000, std::string_view reason = {}) {
        if (finished_) return;
        if (!open_) {
            // The answer to the plugin's close: on_close reports the plugin's code.
            return;
        }
        finish(code, reason, true);
    }
    // The connection is lost without a close frame (1006).
    void client_gone() {
        if (finished_) return;
        finish(1006, {}, true);
    }

    // ---- herd::WsEndpoint
    bool send(std::string_view data, bool binary) override {
        if (!binary && !is_utf8(data))
            throw std::invalid_argument("herd::WebSocket::send: a text message must be UTF-8");
        if (!open_) return false;
        sent_.push_back(Sent{std::string(data), binary});
        return true;
    }
    void close(int code, std::string_view reason) override {
        if (code != 1000 && (code < 3000 || code > 4999))
            throw std::invalid_argument("herd::WebSocket::close: code " + std::to_string(code) +
                                        " (1000, or 3000-4999)");
        if (!open_) return;
        // As in the worker: no more messages, and on_close runs once the client has answered,
        // in the loop's next iteration here (never inside the plugin's call).
        open_ = false;
        loop_.post([this, code, why = std::string(reason.substr(0, 123))] {
            if (!finished_) finish(code, why, false);
        });
    }
    bool open() const noexcept override { return open_; }
    bool writable() const noexcept override { return open_; }
    void when_writable(Callback fn) override {
        if (open_) loop_.post(std::move(fn), &scope_);
    }
    void on_message(Function<void(const WsMessage&)> fn) override {
        on_message_ = std::move(fn);
        deliver();
    }
    void on_close(Function<void(const WsClose&)> fn) override { on_close_ = std::move(fn); }
    void subscribe(std::string_view topic) override {
        if (!subscribed(topic)) topics_.emplace_back(topic);
    }
    void unsubscribe(std::string_view topic) override { std::erase(topics_, topic); }
    Scope& scope() noexcept override { return scope_; }
    Loop& loop() noexcept override { return loop_; }
    std::uint64_t id() const noexcept override { return id_; }
    void release() noexcept override {
        held_ = false;
        if (open_) {
            open_ = false;
            finished_ = true;
            close_code_ = 1000;
            scope_.cancel("the plugin let go of the WebSocket");
        }
    }

  private:
    void deliver() {
        while (on_message_ && open_ && !pending_.empty()) {
            Sent m = std::move(pending_.front());
            pending_.erase(pending_.begin());
            Function<void(const WsMessage&)> fn = std::move(on_message_);
            fn(WsMessage{m.data, m.binary});
            if (!on_message_) on_message_ = std::move(fn);  // unless it set another
        }
    }
    void finish(int code, std::string_view reason, bool by_client) {
        open_ = false;
        finished_ = true;
        close_code_ = code;
        close_reason_ = std::string(reason);
        scope_.cancel("the WebSocket closed");
        Function<void(const WsClose&)> fn = std::move(on_close_);
        on_close_ = nullptr;
        if (fn) fn(WsClose{code, close_reason_, by_client});
    }

    FakeLoop& loop_;
    std::uint64_t id_;
    BasicScope scope_;
    std::vector<Sent> sent_;
    std::vector<Sent> pending_;
    std::vector<std::string> topics_;
    Function<void(const WsMessage&)> on_message_;
    Function<void(const WsClose&)> on_close_;
    std::string close_reason_;
    int close_code_ = 0;
    bool open_ = true;
    bool finished_ = false;
    bool held_ = true;
};

}  // namespace herd::testing
