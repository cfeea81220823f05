// notes: a JSON REST service for short notes, on herd's clients for plugins.
//
//   POST   /notes          {"title", "body", "url"?} -> 201 and the note
//   GET    /notes?limit=N  the newest N notes (default 20, at most 100)
//   GET    /notes/ID       the note, from the Redis cache when it is there
//   PUT    /notes/ID       {"title", "body", "url"?} -> 200 and the note
//   DELETE /notes/ID       204
//
// PostgreSQL stores the notes (schema.sql); Redis caches GET /notes/ID for cache_ttl_ms and
// counts each client's writes (writes_per_minute); a note's url (http:// only) is fetched for
// its page's <title>, within fetch_timeout_ms. Policies, in README.md: a read does without
// Redis, a write does not; a failed fetch leaves url_title null and says why.
//
// Config: {"postgres": "postgresql://...", "redis": "redis://...", "writes_per_minute": 30,
// "cache_ttl_ms": 60000, "fetch_timeout_ms": 2000, "client_header": "X-Forwarded-For"}.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include <herd/herd.hpp>

namespace notes {

// The statements, exactly as sent (the unit tests answer them by their text).
namespace sql {
inline constexpr const char* insert =
    "INSERT INTO notes (title, body, url, url_title) VALUES ($1, $2, $3, $4) "
    "RETURNING id, title, body, url, url_title, created_at";
inline constexpr const char* select_one =
    "SELECT id, title, body, url, url_title, created_at FROM notes WHERE id = $1";
inline constexpr const char* select_newest =
    "SELECT id, title, body, url, url_title, created_at FROM notes "
    "ORDER BY created_at DESC, id DESC LIMIT $1";
inline constexpr const char* update =
    "UPDATE notes SET title = $2, body = $3, url = $4, url_title = $5 WHERE id = $1 "
    "RETURNING id, title, body, url, url_title, created_at";
inline constexpr const char* remove = "DELETE FROM notes WHERE id = $1";
}  // namespace sql

// The Redis keys.
std::string cache_key(std::int64_t id);             // "notes:note:ID"
std::string writes_key(const std::string& client);  // "notes:writes:CLIENT"

class Notes final : public herd::Plugin {
  public:
    void on_start(herd::Context& ctx) override;
    void respond(herd::Responder r) override;

  private:
    // The page title fetched for a note, or why there is none.
    struct Title {
        std::optional<std::string> text;
        std::optional<std::string> error;
    };

    herd::Task<> route(herd::Responder& r);
    herd::Task<> create(herd::Responder& r);
    herd::Task<> list(herd::Responder& r);
    herd::Task<> show(herd::Responder& r, std::int64_t id);
    herd::Task<> replace(herd::Responder& r, std::int64_t id);
    herd::Task<> remove(herd::Responder& r, std::int64_t id);

    herd::Task<> count_write(const herd::Request& request);
    herd::Task<Title> fetch_title(std::string url);
    herd::Task<herd::PgResult> query(std::string sql, herd::PgParams params);
    herd::Task<> forget(std::int64_t id);

    herd::Context* ctx_ = nullptr;
    long long writes_per_minute_ = 30;
    std::chrono::milliseconds cache_ttl_{60000};
    std::chrono::milliseconds fetch_timeout_{2000};
    std::string client_header_ = "X-Forwarded-For";
};

}  // namespace notes
