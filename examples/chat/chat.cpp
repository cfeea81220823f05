// chat: the plugin (routes, the join's checks, the room's events); the page is in page.cpp.
#include "chat.hpp"

#include <algorithm>
#include <utility>

namespace chat {

namespace {

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::optional<std::string> percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out.push_back(' ');
        } else if (s[i] != '%') {
            out.push_back(s[i]);
        } else {
            if (i + 2 >= s.size()) return std::nullopt;
            int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0) return std::nullopt;
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        }
    }
    return out;
}

}  // namespace

std::optional<std::string> query_value(std::string_view query, std::string_view key) {
    while (!query.empty()) {
        std::size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        std::size_t eq = pair.find('=');
        std::string_view name = pair.substr(0, eq);
        if (name == key)
            return percent_decode(eq == std::string_view::npos ? std::string_view()
                                                               : pair.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return std::nullopt;
}

bool valid_name(std::string_view name) {
    return !name.empty() && name.size() <= max_name_bytes &&
           std::all_of(name.begin(), name.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-';
           });
}

Join parse_join(std::string_view query) {
    Join j;
    for (auto [key, value] : {std::pair{"room", &j.room}, std::pair{"name", &j.name}}) {
        std::optional<std::string> v = query_value(query, key);
        if (!v || !valid_name(*v)) {
            j.error =
                std::string("\"") + key + "\" must be 1 to 32 characters from A-Z a-z 0-9 _ -";
            return j;
        }
        *value = std::move(*v);
    }
    return j;
}

void Chat::on_start(herd::Context& ctx) {
    ctx_ = &ctx;
}

void Chat::on_stop() {
    members_.clear();  // their sockets close (1000); nobody is left to tell
}

void Chat::respond(herd::Responder r) {
    const herd::Request& request = r.request();
    herd::Response& res = r.response();
    std::string_view path = request.subpath();
    bool get = request.method() == "GET" || request.method() == "HEAD";
    if (path != "/" && path != "/ws") {
        res.set_status(404);
        res.set_body("not found\n");
    } else if (!get) {
        res.set_status(405);
        res.set_header("Allow", "GET, HEAD");
        res.set_body("GET\n");
    } else if (path == "/") {
        res.set_header("Content-Type", "text/html; charset=utf-8");
        res.set_header("Cache-Control", "no-cache");
        res.set_body(page());
        return r.send();
    } else if (Join who = parse_join(request.query()); !who.error.empty()) {
        res.set_status(400);
        res.set_body(who.error + "\n");
    } else if (!herd::is_websocket_request(request)) {
        res.set_status(426);
        res.set_header("Upgrade", "websocket");
        res.set_body("a WebSocket handshake is expected here\n");
    } else {
        return join(std::move(r), std::move(who));
    }
    res.set_header("Content-Type", "text/plain; charset=utf-8");
    r.send();
}

void Chat::join(herd::Responder r, Join who) {
    herd::WebSocket socket = r.accept_websocket();
    if (!socket) return;  // not a valid handshake: herd answered it
    std::uint64_t id = socket.id();
    socket.subscribe("room:" + who.room);
    nlohmann::json welcome = {
        {"type", "welcome"}, {"room", who.room}, {"name", who.name}, {"worker", ctx_->worker_id()}};
    socket.send_text(welcome.dump());
    socket.on_message([this, id](const herd::WsMessage& m) { receive(id, m); });
    socket.on_close([this, id](const herd::WsClose&) { leave(id); });
    auto [it, inserted] =
        members_.emplace(id, Member{std::move(socket), std::move(who.room), std::move(who.name)});
    publish(it->second, {{"type", "join"}});
}

void Chat::receive(std::uint64_t id, const herd::WsMessage& message) {
    Member& member = members_.at(id);
    if (message.binary) {
        member.socket.close(close_binary, "text messages only");
        return;  // the socket may be gone: on_close can run inside close()
    }
    if (message.data.size() > max_text_bytes) {
        member.socket.close(close_too_long, "a message is at most 2000 bytes");
        return;
    }
    if (message.data.empty()) return;
    publish(member, {{"type", "message"}, {"text", message.data}});
}

void Chat::leave(std::uint64_t id) {
    auto it = members_.find(id);
    if (it == members_.end()) return;
    Member gone = std::move(it->second);
    members_.erase(it);
    publish(gone, {{"type", "leave"}});
}

void Chat::publish(const Member& member, nlohmann::json event) {
    // Copied first: ctx.publish closes (1008) a socket of this worker whose client reads too
    // slowly, and runs its on_close inside, which may be this member's.
    std::string topic = "room:" + member.room;
    event["room"] = member.room;
    event["from"] = member.name;
    event["worker"] = ctx_->worker_id();
    if (!ctx_->publish(topic, event.dump(), false))
        ctx_->log().warn(topic +
                         ": an event reached this worker's sockets only (the master is "
                         "unreachable)");
}

}  // namespace chat
