// probe's WebSocket endpoints, for tests and benchmarks (included by probe.cpp):
//   /ws/echo              echoes every message (text or binary); a text message that is a
//                         command does it instead: "pid" (answers the worker's pid), "throw"
//                         (the callback throws: 1011, and the worker retires),
//                         "close CODE REASON" (the plugin closes), "flood N SIZE" (sends N
//                         messages of SIZE bytes at once, for a client that does not read),
//                         "drop" (lets go of the socket: herd closes it with 1000)
//   /ws/room?room=R       every message goes to every socket of room R in every worker of the
//                         app (Context::publish); with &hello=1 the socket first gets
//                         "pid PID" (which worker took it)
//   /ws/publish?room=R    (POST) publishes the body to room R as text; answers 202
//   /ws/count             this worker's open probe sockets
#pragma once

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

#include <herd/herd.hpp>

class ProbeSockets {
  public:
    void start(herd::Context& ctx) { ctx_ = &ctx; }

    // For the paths above; false for any other.
    bool respond(herd::Responder& r, std::string_view path, std::string_view query_room,
                 bool hello) {
        if (path == "/ws/echo") {
            accept(std::move(r), "", false);
            return true;
        }
        if (path == "/ws/room") {
            accept(std::move(r), "room:" + std::string(query_room), hello);
            return true;
        }
        if (path == "/ws/publish") {
            herd::Response& res = r.response();
            if (r.request().method() != "POST") {
                res.set_status(405);
                res.set_body("POST\n");
            } else {
                ctx_->publish("room:" + std::string(query_room), r.request().body(), false);
                res.set_status(202);
                res.set_body("published\n");
            }
            r.send();
            return true;
        }
        if (path == "/ws/count") {
            r.response().set_body(std::to_string(sockets_.size()));
            r.send();
            return true;
        }
        return false;
    }

  private:
    void accept(herd::Responder r, std::string topic, bool hello) {
        herd::WebSocket ws = r.accept_websocket();
        if (!ws) return;  // herd answered the bad handshake
        std::uint64_t id = ws.id();
        if (topic.empty()) {
            ws.on_message([this, id](const herd::WsMessage& m) { echo(id, m); });
        } else {
            ws.subscribe(topic);
            ws.on_message([this, topic](const herd::WsMessage& m) {
                ctx_->publish(topic, m.data, m.binary);
            });
            if (hello) ws.send_text("pid " + std::to_string(getpid()));
        }
        ws.on_close([this, id](const herd::WsClose&) { sockets_.erase(id); });
        sockets_.emplace(id, std::move(ws));
    }

    void echo(std::uint64_t id, const herd::WsMessage& m) {
        herd::WebSocket& ws = sockets_.at(id);
        std::string_view text = m.data;
        if (m.binary) {
            ws.send_binary(text);
        } else if (text == "pid") {
            ws.send_text(std::to_string(getpid()));
        } else if (text == "throw") {
            throw std::runtime_error("probe: /ws/echo was asked to throw");
        } else if (text == "drop") {
            sockets_.erase(id);
        } else if (text.starts_with("close ")) {
            std::string_view rest = text.substr(6);
            int code = 0;
            auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), code);
            std::string_view reason =
                end < rest.data() + rest.size()
                    ? std::string_view(end + 1, rest.data() + rest.size() - end - 1)
                    : std::string_view();
            ws.close(ec == std::errc() ? code : 1000, reason);
        } else if (text.starts_with("flood ")) {
            long n = 0, size = 0;
            std::string_view rest = text.substr(6);
            auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
            if (ec == std::errc() && end < rest.data() + rest.size())
                std::from_chars(end + 1, rest.data() + rest.size(), size);
            std::string piece(static_cast<std::size_t>(std::clamp(size, 0L, 1L << 20)), 'x');
            for (long i = 0; i < std::clamp(n, 0L, 100000L) && ws.open(); ++i) ws.send_text(piece);
        } else {
            ws.send_text(text);
        }
    }

    herd::Context* ctx_ = nullptr;
    std::unordered_map<std::uint64_t, herd::WebSocket> sockets_;
};
