// notes: see notes.hpp.
#include "notes.hpp"

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

#include "parse.hpp"

namespace notes {
namespace {

constexpr std::size_t max_page_bytes = 1 << 20;
constexpr long long window_ms = 60000;  // writes_per_minute's window

// An answer other than success, thrown from anywhere in a request's coroutines.
class Refusal : public std::runtime_error {
  public:
    Refusal(int status, nlohmann::json body)
        : std::runtime_error(body.value("error", "")), status_(status), body_(std::move(body)) {}
    int status() const noexcept { return status_; }
    const nlohmann::json& body() const noexcept { return body_; }
    herd::ResponseHeader extra;  // a header to add (Retry-After), when named

  private:
    int status_;
    nlohmann::json body_;
};

Refusal dependency_down(const char* dependency, const herd::ClientError& e) {
    return Refusal(503, {{"error", std::string(dependency) + " is unavailable: " + e.what()},
                         {"dependency", dependency}});
}

// PostgreSQL refused the statement itself: the client's data, by SQLSTATE class. What is
// left (a connection refused, a missing table, a timeout) is the dependency's trouble.
Refusal postgres_refusal(const herd::ClientError& e) {
    const std::string& code = e.code();
    if (e.kind() == herd::ClientError::Kind::server && code.size() == 5) {
        if (code == "23505")
            return Refusal(409,
                           {{"error", std::string("conflict: ") + e.what()}, {"sqlstate", code}});
        if (code.starts_with("23") || code.starts_with("22"))
            return Refusal(400,
                           {{"error", std::string("rejected: ") + e.what()}, {"sqlstate", code}});
    }
    nlohmann::json body = dependency_down("postgres", e).body();
    if (!code.empty()) body["sqlstate"] = code;
    return Refusal(503, std::move(body));
}

long long positive(const nlohmann::json& config, const char* key, long long fallback) {
    auto it = config.find(key);
    if (it == config.end()) return fallback;
    if (!it->is_number_integer() || it->get<long long>() <= 0)
        throw std::invalid_argument(std::string("config ") + key +
                                    ": expected a positive integer, got " + it->dump());
    return it->get<long long>();
}

void answer_json(herd::Response& response, int status, const nlohmann::json& body) {
    response.set_status(status);
    response.set_header("Content-Type", "application/json");
    response.set_body(body.dump());
}

}  // namespace

std::string cache_key(std::int64_t id) {
    return "notes:note:" + std::to_string(id);
}
std::string writes_key(const std::string& client) {
    return "notes:writes:" + client;
}

void Notes::on_start(herd::Context& ctx) {
    ctx_ = &ctx;
    const nlohmann::json& config = ctx.config();
    for (const char* key : {"postgres", "redis"})
        if (!config.contains(key) || !config[key].is_string())
            throw std::invalid_argument(std::string("config ") + key +
                                        ": required, the URL of the service's " +
                                        (key[0] == 'p' ? "PostgreSQL" : "Redis"));
    writes_per_minute_ = positive(config, "writes_per_minute", 30);
    cache_ttl_ = std::chrono::milliseconds(positive(config, "cache_ttl_ms", 60000));
    fetch_timeout_ = std::chrono::milliseconds(positive(config, "fetch_timeout_ms", 2000));
    if (auto it = config.find("client_header"); it != config.end()) {
        if (!it->is_string() || it->get<std::string>().empty())
            throw std::invalid_argument("config client_header: expected a header name, got " +
                                        it->dump());
        client_header_ = it->get<std::string>();
    }
}

void Notes::respond(herd::Responder r) {
    herd::serve_coroutine(std::move(r), [this](herd::Responder& held) { return route(held); });
}

// Every endpoint's refusals (400, 404, 409, 429, 503) end here as a JSON answer.
herd::Task<> Notes::route(herd::Responder& r) {
    const herd::Request& request = r.request();
    std::string_view path = request.subpath();
    std::string_view method = request.method();
    try {
        if (path == "/notes") {
            if (method == "POST") {
                auto t = create(r);
                co_await t;
            } else if (method == "GET") {
                auto t = list(r);
                co_await t;
            } else {
                r.response().set_header("Allow", "GET, POST");
                throw Refusal(405, {{"error", "use GET or POST on /notes"}});
            }
            co_return;
        }
        std::optional<std::int64_t> id;
        if (path.starts_with("/notes/")) id = parse_id(path.substr(7));
        if (!id) throw Refusal(404, {{"error", "no such resource: " + std::string(path)}});
        if (method == "GET") {
            auto t = show(r, *id);
            co_await t;
        } else if (method == "PUT") {
            auto t = replace(r, *id);
            co_await t;
        } else if (method == "DELETE") {
            auto t = remove(r, *id);
            co_await t;
        } else {
            r.response().set_header("Allow", "GET, PUT, DELETE");
            throw Refusal(405, {{"error", "use GET, PUT or DELETE on /notes/ID"}});
        }
    } catch (const Refusal& e) {
        if (!e.extra.name.empty()) r.response().set_header(e.extra.name, e.extra.value);
        answer_json(r.response(), e.status(), e.body());
    } catch (const BadRequest& e) {
        answer_json(r.response(), 400, {{"error", e.what()}, {"field", e.field()}});
    }
}

herd::Task<> Notes::create(herd::Responder& r) {
    NoteInput note = parse_note(r.request().body());
    auto counted = count_write(r.request());
    co_await counted;
    Title title;
    if (note.url) {
        auto fetched = fetch_title(*note.url);
        title = co_await fetched;
    }
    auto inserted = query(sql::insert, {note.title, note.body, note.url, title.text});
    herd::PgResult result = co_await inserted;
    nlohmann::json row = result.to_json().at(0);
    if (title.error) row["url_title_error"] = *title.error;
    r.response().set_header("Location", "/notes/" + row["id"].dump());
    answer_json(r.response(), 201, row);
}

herd::Task<> Notes::list(herd::Responder& r) {
    int limit = parse_limit(r.request().query(), 20);
    auto selected = query(sql::select_newest, {std::to_string(limit)});
    herd::PgResult result = co_await selected;
    answer_json(r.response(), 200, {{"notes", result.to_json()}});
}

// The cache is optional: without Redis the note comes from PostgreSQL (X-Cache: bypass).
herd::Task<> Notes::show(herd::Responder& r, std::int64_t id) {
    std::string key = cache_key(id);
    bool redis_up = true;
    try {
        auto cached = ctx_->redis().get(key);
        std::optional<std::string> hit = co_await cached;
        if (hit) {
            r.response().set_header("X-Cache", "hit");
            r.response().set_status(200);
            r.response().set_header("Content-Type", "application/json");
            r.response().set_body(*hit);
            co_return;
        }
    } catch (const herd::ClientError& e) {
        redis_up = false;
        ctx_->log().warn(std::string("GET /notes/") + std::to_string(id) +
                         ": the cache is skipped: " + e.what());
    }
    auto selected = query(sql::select_one, {std::to_string(id)});
    herd::PgResult result = co_await selected;
    if (result.rows.empty()) throw Refusal(404, {{"error", "no note " + std::to_string(id)}});
    std::string body = result.to_json().at(0).dump();
    if (redis_up) {
        try {
            auto stored = ctx_->redis().set(key, body, cache_ttl_);
            co_await stored;
        } catch (const herd::ClientError& e) {
            ctx_->log().warn("caching " + key + " failed: " + e.what());
        }
    }
    r.response().set_header("X-Cache", redis_up ? "miss" : "bypass");
    answer_json(r.response(), 200, nlohmann::json::parse(body));
}

herd::Task<> Notes::replace(herd::Responder& r, std::int64_t id) {
    NoteInput note = parse_note(r.request().body());
    auto counted = count_write(r.request());
    co_await counted;
    Title title;
    if (note.url) {
        auto fetched = fetch_title(*note.url);
        title = co_await fetched;
    }
    auto updated =
        query(sql::update, {std::to_string(id), note.title, note.body, note.url, title.text});
    herd::PgResult result = co_await updated;
    if (result.rows.empty()) throw Refusal(404, {{"error", "no note " + std::to_string(id)}});
    auto forgotten = forget(id);
    co_await forgotten;
    nlohmann::json row = result.to_json().at(0);
    if (title.error) row["url_title_error"] = *title.error;
    answer_json(r.response(), 200, row);
}

herd::Task<> Notes::remove(herd::Responder& r, std::int64_t id) {
    auto counted = count_write(r.request());
    co_await counted;
    auto deleted = query(sql::remove, {std::to_string(id)});
    herd::PgResult result = co_await deleted;
    if (result.affected == 0) throw Refusal(404, {{"error", "no note " + std::to_string(id)}});
    auto forgotten = forget(id);
    co_await forgotten;
    r.response().set_status(204);
}

// A fixed window per client: the first write of a window starts its minute (PEXPIRE NX,
// Redis 7), INCR counts in it. A write that cannot be counted is refused: 503, not unlimited.
herd::Task<> Notes::count_write(const herd::Request& request) {
    std::string key = writes_key(client_of(request.header(client_header_)));
    herd::RedisReply reply;
    try {
        auto counted = ctx_->redis().exec(
            {{"INCR", key}, {"PEXPIRE", key, std::to_string(window_ms), "NX"}, {"PTTL", key}});
        reply = co_await counted;
    } catch (const herd::ClientError& e) {
        throw dependency_down("redis", e);
    }
    for (const herd::RedisReply& each : reply.elements)
        if (each.type != herd::RedisReply::Type::integer)
            throw Refusal(503,
                          {{"error", "redis: the rate limit's transaction failed: " +
                                         (each.str.empty() ? "an unexpected reply" : each.str)},
                           {"dependency", "redis"}});
    if (reply.elements.size() != 3)
        throw Refusal(503, {{"error", "redis: the rate limit's transaction was not run"},
                            {"dependency", "redis"}});
    if (reply.elements[0].integer <= writes_per_minute_) co_return;
    long long left_ms = std::max(reply.elements[2].integer, 0LL);
    Refusal refusal(429, {{"error", "more than " + std::to_string(writes_per_minute_) +
                                        " writes a minute from this client"},
                          {"retry_after_ms", left_ms}});
    refusal.extra = herd::ResponseHeader("Retry-After", std::to_string((left_ms + 999) / 1000));
    throw refusal;
}

// Not fatal: a note whose page cannot be fetched is stored with url_title null, and why.
herd::Task<Notes::Title> Notes::fetch_title(std::string url) {
    Title title;
    if (!url.starts_with("http://")) {
        title.error = "only http:// URLs are fetched (herd's HTTP client has no TLS)";
        co_return title;
    }
    herd::HttpRequest q;
    q.url = url;
    q.headers = {{"Accept", "text/html"}, {"User-Agent", "herd-notes-example/1.0"}};
    q.connect_timeout = q.first_byte_timeout = q.total_timeout = fetch_timeout_;
    q.max_response_bytes = max_page_bytes;
    try {
        auto fetched = ctx_->http().request(std::move(q));
        herd::HttpReply page = co_await fetched;
        if (page.status != 200)
            title.error = "GET " + url + " answered " + std::to_string(page.status);
        else if (!(title.text = page_title(page.body)))
            title.error = "GET " + url + ": the page has no <title>";
    } catch (const herd::ClientError& e) {
        title.error = e.what();
    }
    co_return title;
}

herd::Task<herd::PgResult> Notes::query(std::string statement, herd::PgParams params) {
    herd::PgResult result;
    try {
        auto q = ctx_->postgres().query(std::move(statement), std::move(params));
        result = co_await q;
    } catch (const herd::ClientError& e) {
        throw postgres_refusal(e);
    }
    co_return result;
}

// After a write: the cached copy goes. Redis failing here (after the commit) is logged, not
// the client's failure; the stale copy lives at most cache_ttl_ms.
herd::Task<> Notes::forget(std::int64_t id) {
    try {
        auto removed = ctx_->redis().del(cache_key(id));
        co_await removed;
    } catch (const herd::ClientError& e) {
        ctx_->log().error(
            "the cached note " + std::to_string(id) +
            " could not be removed; it may be served for up to cache_ttl_ms: " + e.what());
    }
}

}  // namespace notes
