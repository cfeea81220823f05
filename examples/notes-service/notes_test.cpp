// Unit tests of the notes service with herd's test kit: PostgreSQL, Redis and the upstream
// page are the kit's fakes (FakePostgres answers statements by their text), no server.
#include <herd/testing.hpp>

#include <gtest/gtest.h>

#include "notes.hpp"
#include "parse.hpp"

namespace {

using namespace std::chrono_literals;
using herd::testing::Harness;
using herd::testing::RequestBuilder;

const std::string page_url = "http://pages.test/article";

herd::testing::Options options(int writes_per_minute = 30) {
    return {.config = {{"postgres", "postgresql://notes@127.0.0.1/notes"},
                       {"redis", "redis://127.0.0.1:6379/0"},
                       {"writes_per_minute", writes_per_minute},
                       {"cache_ttl_ms", 5000},
                       {"fetch_timeout_ms", 1500}}};
}

herd::RedisReply integer(long long n) {
    herd::RedisReply r;
    r.type = herd::RedisReply::Type::integer;
    r.integer = n;
    return r;
}

// A plugin loaded on the fakes, with the commands FakeRedis does not know answered as Redis 7
// would for a fresh window.
struct Service {
    explicit Service(herd::testing::Options o = options()) : h(std::move(o)) {
        h.redis().on("PEXPIRE", [](const herd::RedisArgs&) { return integer(1); });
        h.redis().on("PTTL", [](const herd::RedisArgs&) { return integer(42000); });
        h.load<notes::Notes>();
    }
    herd::testing::Result post(const nlohmann::json& note, const std::string& client = "10.0.0.1") {
        return h.run(
            RequestBuilder("POST", "/notes").header("X-Forwarded-For", client).body(note.dump()));
    }
    Harness h;
};

struct Row {
    std::int64_t id;
    std::string title, body;
    std::optional<std::string> url, url_title;
};

// Rows as PostgreSQL sends them: text values and the columns' type OIDs.
herd::PgResult rows(std::vector<Row> list, std::uint64_t affected = 0) {
    herd::PgResult r;
    r.columns = {"id", "title", "body", "url", "url_title", "created_at"};
    r.types = {20, 25, 25, 25, 25, 1184};
    for (const Row& row : list)
        r.rows.push_back({std::to_string(row.id), row.title, row.body, row.url, row.url_title,
                          "2026-12-05 23:00:00+00"});
    r.affected = affected != 0 ? affected : list.size();
    return r;
}

nlohmann::json json_of(const herd::testing::Result& r) {
    return nlohmann::json::parse(r.body);
}

TEST(Create, StoresTheNoteAndAnswers201) {
    Service s;
    s.h.postgres().on(notes::sql::insert, rows({{7, "milk", "two litres", {}, {}}}));
    auto r = s.post({{"title", "milk"}, {"body", "two litres"}});
    EXPECT_EQ(r.status, 201);
    EXPECT_EQ(r.header("Content-Type"), "application/json");
    EXPECT_EQ(r.header("Location"), "/notes/7");
    auto note = json_of(r);
    EXPECT_EQ(note["id"], 7);
    EXPECT_EQ(note["title"], "milk");
    EXPECT_TRUE(note["url_title"].is_null());
    EXPECT_FALSE(note.contains("url_title_error"));
    ASSERT_EQ(s.h.postgres().queries().size(), 1u);
    EXPECT_EQ(s.h.postgres().queries()[0].params,
              (herd::PgParams{"milk", "two litres", std::nullopt, std::nullopt}));
    EXPECT_TRUE(s.h.http().requests().empty());
    EXPECT_EQ(s.h.redis().data().at("notes:writes:10.0.0.1"), "1");  // counted
}

TEST(Create, StoresThePageTitleOfItsUrl) {
    Service s;
    s.h.http().on(page_url, herd::HttpReply{200,
                                            "OK",
                                            {},
                                            "<html><head><TITLE>\n  Fish &amp; "
                                            "chips </TITLE></head></html>"});
    s.h.postgres().on(notes::sql::insert, rows({{8, "read", "", page_url, "Fish & chips"}}));
    auto r = s.post({{"title", "read"}, {"body", ""}, {"url", page_url}});
    EXPECT_EQ(r.status, 201);
    EXPECT_EQ(json_of(r)["url_title"], "Fish & chips");
    EXPECT_EQ(s.h.postgres().queries().at(0).params,
              (herd::PgParams{"read", "", page_url, "Fish & chips"}));
    ASSERT_EQ(s.h.http().requests().size(), 1u);
    EXPECT_EQ(s.h.http().requests()[0].total_timeout, 1500ms);  // fetch_timeout_ms
}

TEST(Create, AnUpstreamFailureIsNotFatal) {
    Service s;
    s.h.http().fail(page_url, herd::ClientError::Kind::timeout,
                    "GET " + page_url + ": no answer within 1500 ms");
    s.h.postgres().on(notes::sql::insert, rows({{9, "read", "", page_url, {}}}));
    auto r = s.post({{"title", "read"}, {"body", ""}, {"url", page_url}});
    EXPECT_EQ(r.status, 201);
    auto note = json_of(r);
    EXPECT_TRUE(note["url_title"].is_null());
    EXPECT_EQ(note["url_title_error"], "GET " + page_url + ": no answer within 1500 ms");
    EXPECT_EQ(s.h.postgres().queries().at(0).params[3], std::nullopt);
}

TEST(Create, APageWithoutTitleOrWithAnErrorOrHttpsIsSaidSo) {
    Service s;
    s.h.http().on(page_url, herd::HttpReply{404, "Not Found", {}, "<title>gone</title>"});
    s.h.http().on("http://pages.test/bare", herd::HttpReply{200, "OK", {}, "<p>no title</p>"});
    s.h.postgres().on(notes::sql::insert, rows({{10, "read", "", page_url, {}}}));
    auto missing = s.post({{"title", "read"}, {"body", ""}, {"url", page_url}});
    EXPECT_EQ(json_of(missing)["url_title_error"], "GET " + page_url + " answered 404");
    auto bare = s.post({{"title", "read"}, {"body", ""}, {"url", "http://pages.test/bare"}});
    EXPECT_EQ(json_of(bare)["url_title_error"],
              "GET http://pages.test/bare: the page has no <title>");
    auto tls = s.post({{"title", "read"}, {"body", ""}, {"url", "https://pages.test/"}});
    EXPECT_EQ(tls.status, 201);
    EXPECT_NE(json_of(tls)["url_title_error"].get<std::string>().find("only http://"),
              std::string::npos);
    EXPECT_EQ(s.h.http().requests().size(), 2u);  // https:// was not tried
}

TEST(Show, TheSecondReadComesFromTheCache) {
    Service s;
    s.h.postgres().on(notes::sql::select_one, rows({{7, "milk", "two litres", {}, {}}}));
    auto first = s.h.run(RequestBuilder("GET", "/notes/7"));
    EXPECT_EQ(first.status, 200);
    EXPECT_EQ(first.header("X-Cache"), "miss");
    EXPECT_EQ(json_of(first)["title"], "milk");
    EXPECT_EQ(s.h.redis().data().count("notes:note:7"), 1u);
    EXPECT_EQ(s.h.redis().commands().back(),
              (herd::RedisArgs{"SET", "notes:note:7", first.body, "PX", "5000"}));

    auto second = s.h.run(RequestBuilder("GET", "/notes/7"));
    EXPECT_EQ(second.status, 200);
    EXPECT_EQ(second.header("X-Cache"), "hit");
    EXPECT_EQ(second.body, first.body);
    EXPECT_EQ(s.h.postgres().queries().size(), 1u);  // no query for the hit
    EXPECT_EQ(s.h.postgres().queries()[0].params, (herd::PgParams{"7"}));
}

TEST(Show, AMissingNoteIs404AndNotCached) {
    Service s;
    s.h.postgres().on(notes::sql::select_one, rows({}));
    auto r = s.h.run(RequestBuilder("GET", "/notes/5"));
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(json_of(r)["error"], "no note 5");
    EXPECT_TRUE(s.h.redis().data().empty());
    EXPECT_EQ(s.h.run(RequestBuilder("GET", "/notes/abc")).status, 404);
    EXPECT_EQ(s.h.run(RequestBuilder("GET", "/other")).status, 404);
    EXPECT_EQ(s.h.postgres().queries().size(), 1u);
}

TEST(Show, WithoutRedisTheReadComesFromPostgres) {
    Service s;
    s.h.redis().down();
    s.h.postgres().on(notes::sql::select_one, rows({{7, "milk", "two litres", {}, {}}}));
    auto r = s.h.run(RequestBuilder("GET", "/notes/7"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.header("X-Cache"), "bypass");
    EXPECT_EQ(json_of(r)["title"], "milk");
    EXPECT_TRUE(s.h.context().logged("the cache is skipped"));
}

TEST(Write, WithoutRedisAWriteIs503NamingIt) {
    Service s;
    s.h.redis().down();
    auto r = s.post({{"title", "milk"}, {"body", ""}});
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(json_of(r)["dependency"], "redis");
    EXPECT_TRUE(s.h.postgres().queries().empty());  // not stored
}

TEST(Write, PostgresFailingIs503NamingIt) {
    Service s;  // no answer set: FakePostgres fails the statement as a dependency would
    auto r = s.post({{"title", "milk"}, {"body", ""}});
    EXPECT_EQ(r.status, 503);
    auto body = json_of(r);
    EXPECT_EQ(body["dependency"], "postgres");
    EXPECT_NE(body["error"].get<std::string>().find("postgres is unavailable"), std::string::npos);
    s.h.postgres().fail(notes::sql::select_newest, "57P01", "terminating connection");
    auto list = s.h.run(RequestBuilder("GET", "/notes"));
    EXPECT_EQ(list.status, 503);
    EXPECT_EQ(json_of(list)["sqlstate"], "57P01");
}

TEST(Write, ConstraintViolationsAre4xx) {
    Service s;
    s.h.postgres().fail(notes::sql::insert, "23505", "duplicate key value");
    EXPECT_EQ(s.post({{"title", "a"}, {"body", ""}}).status, 409);
    s.h.postgres().fail(notes::sql::insert, "23514", "violates check constraint");
    auto r = s.post({{"title", "a"}, {"body", ""}});
    EXPECT_EQ(r.status, 400);
    EXPECT_EQ(json_of(r)["sqlstate"], "23514");
}

TEST(Update, ReplacesAndInvalidatesTheCache) {
    Service s;
    s.h.redis().data()["notes:note:7"] = R"({"id":7,"title":"old"})";
    s.h.postgres().on(notes::sql::update, rows({{7, "new", "b", {}, {}}}));
    auto r = s.h.run(RequestBuilder("PUT", "/notes/7").body(R"({"title":"new","body":"b"})"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(json_of(r)["title"], "new");
    EXPECT_EQ(s.h.postgres().queries().at(0).params,
              (herd::PgParams{"7", "new", "b", std::nullopt, std::nullopt}));
    EXPECT_EQ(s.h.redis().data().count("notes:note:7"), 0u);

    s.h.postgres().on(notes::sql::update, rows({}));
    EXPECT_EQ(s.h.run(RequestBuilder("PUT", "/notes/8").body(R"({"title":"x","body":""})")).status,
              404);
}

TEST(Delete, RemovesAndInvalidatesTheCache) {
    Service s;
    s.h.redis().data()["notes:note:7"] = R"({"id":7})";
    s.h.postgres().on(notes::sql::remove, rows({}, 1));
    auto r = s.h.run(RequestBuilder("DELETE", "/notes/7"));
    EXPECT_EQ(r.status, 204);
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(s.h.redis().data().count("notes:note:7"), 0u);
    s.h.postgres().on(notes::sql::remove, rows({}));
    EXPECT_EQ(s.h.run(RequestBuilder("DELETE", "/notes/7")).status, 404);
}

TEST(List, TheNewestFirstUpToLimit) {
    Service s;
    s.h.postgres().on(notes::sql::select_newest,
                      rows({{2, "b", "", {}, {}}, {1, "a", "", {}, {}}}));
    auto r = s.h.run(RequestBuilder("GET", "/notes?limit=5"));
    EXPECT_EQ(r.status, 200);
    auto list = json_of(r)["notes"];
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[0]["id"], 2);
    EXPECT_EQ(s.h.postgres().queries().at(0).params, (herd::PgParams{"5"}));
    s.h.run(RequestBuilder("GET", "/notes"));
    EXPECT_EQ(s.h.postgres().queries().at(1).params, (herd::PgParams{"20"}));
    auto bad = s.h.run(RequestBuilder("GET", "/notes?limit=0"));
    EXPECT_EQ(bad.status, 400);
    EXPECT_EQ(json_of(bad)["field"], "limit");
}

TEST(RateLimit, WritesOverTheLimitAre429) {
    Service s(options(2));
    s.h.postgres().on(notes::sql::insert, rows({{1, "a", "", {}, {}}}));
    EXPECT_EQ(s.post({{"title", "a"}, {"body", ""}}).status, 201);
    EXPECT_EQ(s.post({{"title", "a"}, {"body", ""}}).status, 201);
    auto over = s.post({{"title", "a"}, {"body", ""}});
    EXPECT_EQ(over.status, 429);
    EXPECT_EQ(over.header("Retry-After"), "42");
    EXPECT_EQ(json_of(over)["retry_after_ms"], 42000);
    EXPECT_EQ(s.h.postgres().queries().size(), 2u);  // the third was not stored
    // Another client has its own budget; the window's expiry is set once (NX).
    EXPECT_EQ(s.post({{"title", "a"}, {"body", ""}}, "10.0.0.2, 10.9.9.9").status, 201);
    EXPECT_EQ(s.h.redis().data().at("notes:writes:10.0.0.2"), "1");
    auto& commands = s.h.redis().commands();
    EXPECT_NE(std::find(commands.begin(), commands.end(),
                        herd::RedisArgs{"PEXPIRE", "notes:writes:10.0.0.1", "60000", "NX"}),
              commands.end());
}

TEST(BadRequest, NamesTheField) {
    Service s;
    auto cases = std::vector<std::pair<std::string, std::string>>{
        {"{not json", ""},
        {"[1, 2]", ""},
        {R"({"body": "b"})", "title"},
        {R"({"title": "", "body": "b"})", "title"},
        {R"({"title": 5, "body": "b"})", "title"},
        {R"({"title": "t"})", "body"},
        {R"({"title": "t", "body": "b", "url": 3})", "url"},
    };
    for (const auto& [body, field] : cases) {
        auto r = s.h.run(RequestBuilder("POST", "/notes").body(body));
        EXPECT_EQ(r.status, 400) << body;
        EXPECT_EQ(json_of(r)["field"], field) << body;
        EXPECT_NE(json_of(r)["error"].get<std::string>().find(field), std::string::npos) << body;
    }
    EXPECT_EQ(json_of(s.h.run(RequestBuilder("POST", "/notes").body(R"({"body": "b"})")))["error"],
              "\"title\" is required");
    EXPECT_TRUE(s.h.postgres().queries().empty());
    EXPECT_TRUE(s.h.redis().commands().empty());  // a refused body is not counted
    auto r = s.h.run(RequestBuilder("PATCH", "/notes/1"));
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.header("Allow"), "GET, PUT, DELETE");
}

TEST(Config, ABadValueStopsTheStart) {
    auto bad = options();
    bad.config["writes_per_minute"] = -1;
    Harness h(bad);
    try {
        h.load<notes::Notes>();
        FAIL() << "loaded";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "config writes_per_minute: expected a positive integer, got -1");
    }
    auto none = options();
    none.config.erase("postgres");
    Harness h2(none);
    EXPECT_THROW(h2.load<notes::Notes>(), std::invalid_argument);
}

TEST(Parse, PageTitles) {
    EXPECT_EQ(notes::page_title("<title>A</title>"), "A");
    EXPECT_EQ(notes::page_title("<Title lang=\"en\">\n a\t  b \n</tItle>"), "a b");
    EXPECT_EQ(notes::page_title("<titles>x</titles><title>y</title>"), "y");
    EXPECT_EQ(notes::page_title("&lt;<title>&quot;1&#39; &lt; 2&gt;</title>"), "\"1' < 2>");
    EXPECT_EQ(notes::page_title("<title>  </title>"), std::nullopt);
    EXPECT_EQ(notes::page_title("<title>unclosed"), std::nullopt);
    EXPECT_EQ(notes::page_title("no title"), std::nullopt);
    EXPECT_EQ(notes::page_title("<title>caf\xe9</title>"), "caf\xef\xbf\xbd");  // Latin-1
    EXPECT_EQ(notes::page_title("<title>" + std::string(400, 'x') + "</title>")->size(), 300u);
}

TEST(Parse, ClientsAndIds) {
    EXPECT_EQ(notes::client_of(std::nullopt), "unknown");
    EXPECT_EQ(notes::client_of(" 10.0.0.1 , 10.0.0.2"), "10.0.0.1");
    EXPECT_EQ(notes::client_of(std::string(100, 'a')).size(), 64u);
    EXPECT_EQ(notes::parse_id("42"), 42);
    EXPECT_EQ(notes::parse_id("0"), std::nullopt);
    EXPECT_EQ(notes::parse_id("-1"), std::nullopt);
    EXPECT_EQ(notes::parse_id("1x"), std::nullopt);
    EXPECT_EQ(notes::parse_id("9999999999999999999"), std::nullopt);
}

}  // namespace
