// Base64 (RFC 4648, with padding), on nettle: the handshake's key and accept value, and binary
// messages published across workers (the channel carries JSON text).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace herd::ws {

std::string base64_encode(std::string_view bytes);
// Nothing when `text` is not valid base64.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace herd::ws
