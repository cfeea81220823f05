// herd/testing.hpp's FakeRedis and FakePostgres: a plugin that keeps its data in PostgreSQL and
// caches it in Redis (Context::postgres(), Context::redis()) is tested with an in-memory Redis,
// scripted query results and errors, Redis down, and a client that leaves mid-call.
#include <herd/testing.hpp>

#include <gtest/gtest.h>

#include <string>

namespace {

using herd::testing::Harness;
using herd::testing::RequestBuilder;

herd::PgResult row(std::string id, std::string name) {
    herd::PgResult r;
    r.columns = {"id", "name"};
    r.types = {20, 25};  // int8, text
    r.rows = {{std::move(id), std::move(name)}};
    return r;
}

// GET /users/N: the cached JSON from Redis, else the row from PostgreSQL (then cached); 503
// naming the error when PostgreSQL fails. Redis failing is only a missed cache.
class Users final : public herd::Plugin {
  public:
    void on_start(herd::Context& ctx) override { ctx_ = &ctx; }
    void respond(herd::Responder r) override {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& held) { return serve(held); });
    }

  private:
    herd::Task<> serve(herd::Responder& r) {
        std::string id(r.request().subpath().substr(std::string_view("/users/").size()));
        std::optional<std::string> cached;
        try {
            auto get = ctx_->redis().get("user:" + id);
            cached = co_await get;
        } catch (const herd::ClientError&) {
            cached.reset();
        }
        if (cached) {
            r.response().set_body("cached " + *cached);
            co_return;
        }
        try {
            auto q = ctx_->postgres().query("SELECT id, name FROM users WHERE id = $1", {id});
            herd::PgResult found = co_await q;
            std::string json = found.to_json().dump();
            try {
                auto put = ctx_->redis().set("user:" + id, json);
                co_await put;
            } catch (const herd::ClientError&) {
            }
            r.response().set_body(json);
        } catch (const herd::ClientError& e) {
            r.response().set_status(503);
            r.response().set_body(e.code() + " " + e.what());
        }
    }
    herd::Context* ctx_ = nullptr;
};

TEST(FakePostgres, ScriptedRowsAreTypedAndTheCacheIsFilled) {
    Harness h;
    h.load<Users>();
    h.postgres().on("SELECT id, name FROM users WHERE id = $1", row("7", "Ada"));
    auto first = h.run(RequestBuilder("GET", "/users/7"));
    EXPECT_EQ(first.status, 200);
    EXPECT_EQ(first.body, R"([{"id":7,"name":"Ada"}])");
    ASSERT_EQ(h.postgres().queries().size(), 1u);
    EXPECT_EQ(h.postgres().queries()[0].params, herd::PgParams{"7"});
    EXPECT_EQ(h.redis().data()["user:7"], R"([{"id":7,"name":"Ada"}])");
    auto second = h.run(RequestBuilder("GET", "/users/7"));
    EXPECT_EQ(second.body, R"(cached [{"id":7,"name":"Ada"}])");
    EXPECT_EQ(h.postgres().queries().size(), 1u);  // answered from the cache
}

TEST(FakePostgres, ServerErrorsCarryTheSqlstate) {
    Harness h;
    h.load<Users>();
    h.postgres().fail("SELECT id, name FROM users WHERE id = $1", "42P01",
                      "relation \"users\" does not exist");
    auto r = h.run(RequestBuilder("GET", "/users/1"));
    EXPECT_EQ(r.status, 503);
    EXPECT_EQ(r.body.substr(0, 6), "42P01 ");
    EXPECT_NE(r.body.find("does not exist"), std::string::npos) << r.body;
}

TEST(FakeRedis, DownIsAMissedCacheForThisPlugin) {
    Harness h;
    h.load<Users>();
    h.redis().data()["user:7"] = "stale";
    h.redis().down();
    h.postgres().on("SELECT id, name FROM users WHERE id = $1", row("7", "Ada"));
    auto r = h.run(RequestBuilder("GET", "/users/7"));
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, R"([{"id":7,"name":"Ada"}])");
    h.redis().down(std::nullopt);
    EXPECT_EQ(h.run(RequestBuilder("GET", "/users/7")).body, "cached stale");
}

TEST(FakeRedis, AnswersLikeRedis) {
    herd::testing::FakeLoop loop;
    herd::testing::FakeRedis redis(loop);
    std::vector<herd::RedisReply> replies;
    std::vector<std::string> errors;
    auto keep = [&](herd::RedisReply&& r, const herd::ClientError* e) {
        if (e != nullptr)
            errors.push_back(e->code() + ":" + e->what());
        else
            replies.push_back(std::move(r));
    };
    redis.command({"INCR", "n"}, keep);
    redis.command({"SET", "s", "text"}, keep);
    redis.command({"INCR", "s"}, keep);
    redis.transaction({{"INCR", "n"}, {"DEL", "s", "nope"}, {"GET", "s"}}, keep);
    redis.on("PEXPIRE", [](const herd::RedisArgs&) {
        herd::RedisReply one;
        one.type = herd::RedisReply::Type::integer;
        one.integer = 1;
        return one;
    });
    redis.command({"pexpire", "n", "100"}, keep);
    redis.command({"LPUSH", "l", "x"}, keep);
    EXPECT_TRUE(replies.empty());  // nothing inside command(): through the loop
    loop.run_until_idle();
    ASSERT_EQ(replies.size(), 4u);
    EXPECT_EQ(replies[0].integer, 1);
    EXPECT_EQ(replies[1].str, "OK");
    ASSERT_EQ(replies[2].elements.size(), 3u);
    EXPECT_EQ(replies[2].elements[0].integer, 2);
    EXPECT_EQ(replies[2].elements[1].integer, 1);
    EXPECT_TRUE(replies[2].elements[2].is_nil());
    EXPECT_EQ(replies[3].integer, 1);
    ASSERT_EQ(errors.size(), 2u);
    EXPECT_EQ(errors[0].substr(0, 4), "ERR:");
    EXPECT_NE(errors[1].find("FakeRedis has no answer for LPUSH"), std::string::npos);
    EXPECT_EQ(redis.commands().size(), 8u);
}

TEST(FakeRedis, ClientLeavingStopsTheCallsInFlight) {
    Harness h;
    h.load<Users>();
    h.postgres().on("SELECT id, name FROM users WHERE id = $1", row("7", "Ada"));
    auto& call = h.start(RequestBuilder("GET", "/users/7"));
    call.client_gone();
    h.loop().run_until_idle();
    EXPECT_TRUE(call.result().cancelled);
    EXPECT_FALSE(call.result().answered);
    // The cache lookup's answer was dropped with the request: no query followed it.
    EXPECT_EQ(h.redis().commands().size(), 1u);
    EXPECT_TRUE(h.postgres().queries().empty());
}

}  // namespace
