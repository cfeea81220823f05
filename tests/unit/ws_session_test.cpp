// A WebSocket in the worker: a Connection on a real socketpair whose plugin accepts the
// handshake (at once or later), the WsSession it becomes, and the client's frames and what it
// reads back: the 101, messages, bytes pipelined behind the handshake, a message waiting for
// on_message, the plugin closing or dropping its socket from the handler, refusals.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../support/ws_client_frames.hpp"
#include "connection_fixture.hpp"
#include "worker/ws_session.hpp"

namespace herd::worker::conn_fixture {
namespace {

using herd::ws::test::client_frame;
using herd::ws::test::close_payload;

std::string handshake(std::string_view version = "13") {
    return "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: " +
           std::string(version) + "\r\n\r\n";
}

struct ServerFrame {
    int opcode = 0;
    std::string payload;
};

class WsSessionTest : public ConnectionTest {
  protected:
    WsSessionTest() { host.serve_websockets = true; }
    ~WsSessionTest() override { socket.reset(); }

    // The client's input past the 101 head, as server frames (unmasked, never fragmented by
    // herd); `head` gets the head.
    std::vector<ServerFrame> frames(std::string* head = nullptr) {
        client.pump();
        std::string_view in = client.received();
        auto end = in.find("\r\n\r\n");
        if (end == std::string_view::npos) return {};
        if (head != nullptr) *head = std::string(in.substr(0, end));
        in.remove_prefix(end + 4);
        std::vector<ServerFrame> out;
        while (in.size() >= 2) {
            auto b1 = static_cast<unsigned char>(in[1]);
            std::size_t at = 2, n = b1 & 0x7F;
            if (n == 126) {
                if (in.size() < 4) break;
                n = (static_cast<unsigned char>(in[2]) << 8) | static_cast<unsigned char>(in[3]);
                at = 4;
            } else if (n == 127) {
                break;  // the tests send nothing that large
            }
            if (in.size() < at + n) break;
            out.push_back(
                {static_cast<unsigned char>(in[0]) & 0x0F, std::string(in.substr(at, n))});
            in.remove_prefix(at + n);
        }
        return out;
    }
    bool wait_frames(std::size_t n, int ms = 3000) {
        return run_until(
            loop, [&] { return frames().size() >= n; }, scaled(ms));
    }
    // Accepts in respond() and echoes each message.
    void accept_and_echo() {
        plugin().handler = [this](herd::Responder r) {
            socket.emplace(r.accept_websocket());
            socket->on_message([this](const herd::WsMessage& m) {
                messages.emplace_back(m.data);
                socket->send(m.data, m.binary);
            });
            socket->on_close([this](const herd::WsClose& c) { closes.push_back(c.code); });
        };
    }

    std::optional<herd::WebSocket> socket;
    std::vector<std::string> messages;
    std::vector<int> closes;
};

TEST_F(WsSessionTest, TheHandshakeIsAnsweredAndMessagesEcho) {
    accept_and_echo();
    // A frame pipelined behind the handshake, in the same write.
    client.send(handshake() + client_frame(0x1, "early"));
    ASSERT_TRUE(wait_frames(1));
    std::string head;
    auto got = frames(&head);
    EXPECT_TRUE(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n")) << head;
    EXPECT_NE(head.find("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), std::string::npos);
    EXPECT_EQ(got[0].opcode, 0x1);
    EXPECT_EQ(got[0].payload, "early");
    ASSERT_EQ(host.done.size(), 1u);
    EXPECT_EQ(host.done[0].status, 101);  // the access log's and metrics' record
    EXPECT_TRUE(wait_freed());            // the Connection object ends at the hand-over

    client.send(client_frame(0x9, "ping!") + client_frame(0x2, std::string("\0\1", 2)));
    ASSERT_TRUE(wait_frames(3));
    got = frames();
    EXPECT_EQ(got[1].opcode, 0xA);  // pong, with the ping's payload
    EXPECT_EQ(got[1].payload, "ping!");
    EXPECT_EQ(got[2].opcode, 0x2);
    EXPECT_EQ(host.ws_open(), 1u);

    client.send(client_frame(0x8, close_payload(1000, "bye")));
    ASSERT_TRUE(wait_eof());
    got = frames();
    ASSERT_EQ(got.size(), 4u);
    EXPECT_EQ(got[3].opcode, 0x8);
    EXPECT_EQ(got[3].payload, close_payload(1000));  // its code echoed
    EXPECT_EQ(closes, std::vector<int>{1000});
    // herd's FIN came first (RFC 6455 7.1.1); the descriptor closes at the client's.
    EXPECT_EQ(host.ws_open(), 1u);
    client.shutdown_write();
    EXPECT_TRUE(run_until(
        loop, [&] { return host.ws_open() == 0; }, scaled(3000)));
}

TEST_F(WsSessionTest, AcceptedLaterFromATimer) {
    plugin().handler = [this](herd::Responder r) {
        plugin_loop().after(std::chrono::milliseconds(5), [this, r = std::move(r)]() mutable {
            socket.emplace(r.accept_websocket());
            socket->on_message([this](const herd::WsMessage& m) { socket->send(m.data); });
        });
    };
    // The frame arrives while the request waits for its answer: held, then the WebSocket's.
    client.send(handshake() + client_frame(0x1, "held"));
    ASSERT_TRUE(wait_frames(1));
    EXPECT_EQ(frames()[0].payload, "held");
}

TEST_F(WsSessionTest, AMessageWaitsForOnMessage) {
    plugin().handler = [this](herd::Responder r) {
        socket.emplace(r.accept_websocket());
        // on_message is set only later: the message waits, reading stops behind it.
        plugin_loop().after(std::chrono::milliseconds(20), [this] {
            socket->on_message([this](const herd::WsMessage& m) { messages.emplace_back(m.data); });
        });
    };
    client.send(handshake() + client_frame(0x1, "one") + client_frame(0x1, "two"));
    ASSERT_TRUE(run_until(
        loop, [&] { return messages.size() == 2; }, scaled(3000)));
    EXPECT_EQ(messages, (std::vector<std::string>{"one", "two"}));
}

TEST_F(WsSessionTest, ClosedFromTheHandlerThatAccepted) {
    plugin().handler = [this](herd::Responder r) {
        socket.emplace(r.accept_websocket());
        socket->send_text("hello");
        socket->on_close([this](const herd::WsClose& c) { closes.push_back(c.code); });
        socket->close(4000, "not today");
    };
    client.send(handshake());
    ASSERT_TRUE(wait_frames(2));
    auto got = frames();
    EXPECT_EQ(got[0].payload, "hello");
    EXPECT_EQ(got[1].opcode, 0x8);
    EXPECT_EQ(got[1].payload, close_payload(4000, "not today"));
    EXPECT_TRUE(closes.empty());  // until the client answers
    client.send(client_frame(0x8, close_payload(4000)));
    ASSERT_TRUE(wait_eof());
    EXPECT_EQ(closes, std::vector<int>{4000});
}

TEST_F(WsSessionTest, DroppingTheWebSocketClosesWith1000) {
    plugin().handler = [](herd::Responder r) { (void)r.accept_websocket(); };
    client.send(handshake());
    ASSERT_TRUE(wait_frames(1));
    EXPECT_EQ(frames()[0].opcode, 0x8);
    EXPECT_EQ(frames()[0].payload, close_payload(1000));
    client.send(client_frame(0x8, close_payload(1000)));
    ASSERT_TRUE(wait_eof());
    client.shutdown_write();
    // Closed and let go: the session is freed.
    EXPECT_TRUE(run_until(
        loop, [&] { return host.ws_alive() == 0; }, scaled(3000)));
}

TEST_F(WsSessionTest, AVersionOtherThan13Gets426) {
    accept_and_echo();
    client.request(handshake("8"));
    ASSERT_TRUE(wait_responses(1));
    auto r = got().responses.at(0);
    EXPECT_EQ(r.status, 426);
    EXPECT_EQ(r.header("Sec-WebSocket-Version").value_or(""), "13");
    EXPECT_FALSE(socket.has_value() && *socket);  // the WebSocket returned is empty
    EXPECT_EQ(host.ws_alive(), 0u);
}

TEST_F(WsSessionTest, AHostWithoutWebSocketsAnswers503) {
    host.serve_websockets = false;
    accept_and_echo();
    client.request(handshake());
    ASSERT_TRUE(wait_responses(1));
    EXPECT_EQ(got().responses.at(0).status, 503);
}

TEST_F(WsSessionTest, ADrainingWorkerAnswers503) {
    host.set_close_idle(true);  // what the worker sets when it drains
    accept_and_echo();
    client.request(handshake());
    ASSERT_TRUE(wait_responses(1));
    EXPECT_EQ(got().responses.at(0).status, 503);
    EXPECT_EQ(host.ws_alive(), 0u);
}

TEST_F(WsSessionTest, AThrowingCallbackCloses1011AndIsReported) {
    plugin().handler = [this](herd::Responder r) {
        socket.emplace(r.accept_websocket());
        socket->on_message([](const herd::WsMessage&) { throw std::runtime_error("boom"); });
    };
    client.send(handshake() + client_frame(0x1, "x"));
    ASSERT_TRUE(wait_frames(1));
    EXPECT_EQ(frames()[0].opcode, 0x8);
    EXPECT_EQ(frames()[0].payload.substr(0, 2), close_payload(1011));
    ASSERT_EQ(slot.failures.size(), 1u);
    EXPECT_NE(slot.failures[0].find("boom"), std::string::npos);
}

}  // namespace
}  // namespace herd::worker::conn_fixture
