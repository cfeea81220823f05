// herd/testing.hpp's FakeHttp: a plugin that calls another service through Context::http()
// is tested with scripted answers, errors, streaming, and a client that leaves mid-fetch.
#include <herd/testing.hpp>

#include <gtest/gtest.h>

#include <string>

namespace {

using herd::testing::Harness;
using herd::testing::RequestBuilder;

// Relays GET /users/N to http://users.internal/N: 502 with the client's error when it fails.
class Relay final : public herd::Plugin {
  public:
    void on_start(herd::Context& ctx) override { ctx_ = &ctx; }
    void respond(herd::Responder r) override {
        herd::serve_coroutine(std::move(r), [this](herd::Responder& held) { return relay(held); });
    }

  private:
    herd::Task<> relay(herd::Responder& r) {
        std::string id(r.request().subpath().substr(std::string_view("/users/").size()));
        auto upstream = ctx_->http().get("http://users.internal/" + id);
        try {
            herd::HttpReply user = co_await upstream;
            r.response().set_status(user.status);
            r.response().set_body(user.body);
        } catch (const herd::ClientError& e) {
            r.response().set_status(502);
            r.response().set_body(e.what());
        }
    }
    herd::Context* ctx_ = nullptr;
};

TEST(FakeHttp, ScriptedAnswersReachThePluginThroughTheLoop) {
    Harness h;
    h.load<Relay>();
    herd::HttpReply user;
    user.status = 200;
    user.body = "{\"id\":7}";
    h.http().on("http://users.internal/7", user);
    auto result = h.run(RequestBuilder("GET", "/users/7"));
    EXPECT_EQ(result.status, 200);
    EXPECT_EQ(result.body, "{\"id\":7}");
    ASSERT_EQ(h.http().requests().size(), 1u);
    EXPECT_EQ(h.http().requests()[0].method, "GET");
}

TEST(FakeHttp, ErrorsAndUnscriptedUrlsAreClientErrors) {
    Harness h;
    h.load<Relay>();
    h.http().fail("http://users.internal/8", herd::ClientError::Kind::timeout, "too slow");
    auto failed = h.run(RequestBuilder("GET", "/users/8"));
    EXPECT_EQ(failed.status, 502);
    EXPECT_EQ(failed.body, "too slow");
    auto unknown = h.run(RequestBuilder("GET", "/users/9"));
    EXPECT_EQ(unknown.status, 502);
    EXPECT_NE(unknown.body.find("no fake answer"), std::string::npos) << unknown.body;
}

TEST(FakeHttp, ClientLeavingCancelsTheFetch) {
    Harness h;
    h.load<Relay>();
    herd::HttpReply user;
    user.status = 200;
    h.http().on("http://users.internal/7", user);
    auto& call = h.start(RequestBuilder("GET", "/users/7"));
    call.client_gone();
    h.loop().run_until_idle();
    EXPECT_TRUE(call.result().cancelled);
    EXPECT_FALSE(call.result().answered);
}

TEST(FakeHttp, StreamedBodyComesAfterTheHead) {
    herd::testing::FakeLoop loop;
    herd::testing::FakeHttp http(loop);
    herd::HttpReply big;
    big.status = 200;
    big.body = "abc";
    http.on("http://x/", big);
    std::string order;
    herd::HttpHandlers handlers;
    handlers.head = [&](const herd::HttpReply& head) {
        order += "head" + std::to_string(head.status);
    };
    handlers.body = [&](std::string_view piece) { order += " body " + std::string(piece); };
    handlers.done = [&](herd::HttpReply&& r, const herd::ClientError* e) {
        order += e == nullptr && r.body.empty() ? " done" : " wrong";
    };
    herd::HttpRequest q;
    q.url = "http://x/";
    auto id = http.fetch(q, std::move(handlers));
    EXPECT_EQ(order, "");  // never inside fetch()
    loop.run_until_idle();
    EXPECT_EQ(order, "head200 body abc done");
    EXPECT_FALSE(http.cancel(id));  // finished
}

}  // namespace
