// UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF),
// incremental: a text message is checked as its fragments arrive, and a sequence may be cut
// anywhere between them.
#pragma once

#include <cstdint>
#include <string_view>

namespace herd::ws {

class Utf8Validator {
  public:
    // False at the first byte that cannot begin or continue a valid sequence (the validator
    // then stays failed until reset()).
    bool feed(std::string_view bytes) noexcept;
    // True when the input so far ends on a character boundary (no sequence left open).
    bool complete() const noexcept { return state_ == 0; }
    void reset() noexcept { state_ = 0; }

  private:
    std::uint32_t state_ = 0;  // see utf8.cpp
};

// The whole of s is valid UTF-8.
bool valid_utf8(std::string_view s) noexcept;

}  // namespace herd::ws
