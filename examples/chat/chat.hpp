// chat: chat rooms over WebSockets, served with their own page.
//
//   GET /                         the page (page.cpp); /?room=NAME&name=NICK joins at once
//   GET /ws?room=NAME&name=NICK   the room's WebSocket; room and nick are 1 to 32 bytes of
//                                 A-Z a-z 0-9 _ - (400 otherwise, before the handshake)
//
// Each socket of a room subscribes to the topic "room:NAME", and what it sends is published
// there (Context::publish), so it reaches the room's sockets in every worker of the app. The
// events are JSON text messages:
//   {"type": "welcome", "room", "name", "worker"}          to the new socket only, first
//   {"type": "join", "room", "from", "worker"}             a socket joined the room
//   {"type": "message", "room", "from", "text", "worker"}  a text message of a member
//   {"type": "leave", "room", "from", "worker"}            a socket of the room closed
// "worker" is the slot (Context::worker_id) of the worker holding the sender's socket. The
// server sends the text as the client wrote it; the page shows it with textContent.
// A text over 2000 bytes closes its socket with 4000, a binary message with 4001.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <herd/herd.hpp>

namespace chat {

inline constexpr std::size_t max_name_bytes = 32;
inline constexpr std::size_t max_text_bytes = 2000;
inline constexpr int close_too_long = 4000;
inline constexpr int close_binary = 4001;

// The value of the first `key=` in a query string, percent-decoded ('+' is a space); nullopt
// when the key is absent or its value is badly encoded.
std::optional<std::string> query_value(std::string_view query, std::string_view key);

// A room's or a nick's name: 1 to max_name_bytes of [A-Za-z0-9_-].
bool valid_name(std::string_view name);

// The room and nick of a join's query, or why it is refused.
struct Join {
    std::string room;
    std::string name;
    std::string error;  // empty when room and name are valid
};
Join parse_join(std::string_view query);

// The HTML page, with its script and style inline.
std::string_view page();

class Chat final : public herd::Plugin {
  public:
    void on_start(herd::Context& ctx) override;
    void respond(herd::Responder r) override;
    void on_stop() override;

  private:
    struct Member {
        herd::WebSocket socket;
        std::string room;
        std::string name;
    };

    void join(herd::Responder r, Join who);
    void receive(std::uint64_t id, const herd::WsMessage& message);
    void leave(std::uint64_t id);
    // The event with "room", "from" and "worker" added, to the room's topic.
    void publish(const Member& member, nlohmann::json event);

    herd::Context* ctx_ = nullptr;
    std::unordered_map<std::uint64_t, Member> members_;
};

}  // namespace chat
