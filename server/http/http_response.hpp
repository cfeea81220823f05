// Encoding response heads: status line, herd's own headers, the plugin's headers.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "herd/http.hpp"

namespace herd::http {

std::string_view reason_phrase(int status);

using SteadyTime = std::chrono::steady_clock::time_point;

// "Tue, 25 Nov 2026 10:00:00 GMT" for the current second, formatted once per second. `now` is
// the caller's monotonic time (the event loop's, read once per iteration): the wall clock is
// read again only once the second formatted last may have ended.
std::string_view http_date(SteadyTime now = std::chrono::steady_clock::now());

// Appends a complete response head for `response` with a body of `body_size` bytes. Returns
// false, appending nothing, when the plugin's headers cannot be sent (a reserved header, or
// CR/LF in a name or value); `error` then says which.
bool encode_head(std::string& out, const Response& response, std::size_t body_size, bool close,
                 bool http10_keep_alive, std::string& error,
                 SteadyTime now = std::chrono::steady_clock::now());

// The head of a streamed response: no Content-Length; "Transfer-Encoding: chunked" when
// chunked, else the body runs to the close (HTTP/1.0: close must be true) or there is none
// (HEAD, 204, 304). Fails as encode_head does.
bool encode_stream_head(std::string& out, const Response& response, bool chunked, bool close,
                        bool http10_keep_alive, std::string& error,
                        SteadyTime now = std::chrono::steady_clock::now());

// The 101 answer to a WebSocket handshake (RFC 6455 4.2.2): Upgrade, Connection,
// Sec-WebSocket-Accept, the subprotocol if any, Date and Server, then the plugin's `extra`
// headers. Fails as encode_head does, also for extra headers that are the handshake's own
// (Upgrade, Sec-WebSocket-*) or that a 101 cannot carry (Content-Length, Transfer-Encoding).
bool encode_switch(std::string& out, const std::vector<ResponseHeader>& extra,
                   std::string_view accept, std::string_view protocol, std::string& error,
                   SteadyTime now = std::chrono::steady_clock::now());

// Appends a whole plain-text error response (400, 408, 413, 500, ...).
void encode_error(std::string& out, int status, bool close, bool head_only = false,
                  bool http10_keep_alive = false,
                  SteadyTime now = std::chrono::steady_clock::now());

}  // namespace herd::http
