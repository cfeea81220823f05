// What the notes service reads from outside, checked without I/O: a note's JSON body, an id,
// the ?limit= of a listing, the client's identity for the rate limit, a page's <title>.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace notes {

// A request the service refuses with 400, naming the field at fault ("" for the whole body).
class BadRequest : public std::runtime_error {
  public:
    BadRequest(std::string field, const std::string& what)
        : std::runtime_error(what), field_(std::move(field)) {}
    const std::string& field() const noexcept { return field_; }

  private:
    std::string field_;
};

struct NoteInput {
    std::string title;               // 1 to 200 bytes
    std::string body;                // up to 100000 bytes, may be empty
    std::optional<std::string> url;  // absent or null: none
};

// {"title": "...", "body": "...", "url": "..." (optional)}; throws BadRequest.
NoteInput parse_note(std::string_view json);

// "42" -> 42; anything but 1 to 18 digits -> nullopt (no such note).
std::optional<std::int64_t> parse_id(std::string_view text);

// The query's limit=N: 1 to 100, `fallback` when absent; throws BadRequest.
int parse_limit(std::string_view query, int fallback);

// Who the rate limit counts: the first address of the header (X-Forwarded-For: "a, b" -> "a"),
// at most 64 bytes, or "unknown" without one (then every such client shares one budget).
std::string client_of(std::optional<std::string_view> header);

// The text of the page's first <title>, entities &amp; &lt; &gt; &quot; &#39; decoded,
// whitespace collapsed, cut to 300 bytes, made valid UTF-8; nullopt when there is none.
std::optional<std::string> page_title(std::string_view html);

}  // namespace notes
