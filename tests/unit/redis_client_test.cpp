// Tests herd's Redis client (server/client/redis_client) against a real redis-server that each
// test starts on a free 127.0.0.1 port: replies of every type, server errors with their code,
// pipelining on one connection, transactions, refused commands, per-command timeouts with the
// late reply dropped, a frozen server (stall), Redis stopped (fail fast) and started again
// (recovery without a new client), passwords kept out of every message, the URL's database,
// a name looked up through c-ares, cancellation, and destruction with commands in flight.
// Skipped when redis-server is not installed.
#include "client/redis_client.hpp"

#include <signal.h>

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "broker/tests/test_util.hpp"

using namespace std::chrono_literals;
using herd::ClientError;
using herd::RedisReply;
using herd::broker::test::free_tcp_port;
using herd::broker::test::RedisServer;
using herd::broker::test::run_until;
using herd::broker::test::TempDir;
using herd::client::RedisClient;
using herd::core::EventLoop;
using Kind = herd::ClientError::Kind;

namespace {

// Scales the waits for sanitizer builds on a busy machine (HERD_TIMEOUT_SCALE).
std::chrono::milliseconds scaled(std::chrono::milliseconds ms) {
    const char* s = std::getenv("HERD_TIMEOUT_SCALE");
    double k = s != nullptr ? std::atof(s) : 1.0;
    return std::chrono::milliseconds(static_cast<long long>(ms.count() * (k > 1 ? k : 1)));
}

struct Outcome {
    bool done = false;
    RedisReply reply;
    std::optional<ClientError> error;
    RedisClient::Done callback() {
        return [this](RedisReply r, const ClientError* e) {
            done = true;
            reply = std::move(r);
            if (e != nullptr) error.emplace(*e);
        };
    }
};

class RedisClientTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!RedisServer::available()) GTEST_SKIP() << "redis-server is not installed";
        port_ = free_tcp_port();
        server_ = std::make_unique<RedisServer>(dir_.path(), port_, password_);
    }
    std::string url(const std::string& extra = "") const {
        return "redis://" + extra + "127.0.0.1:" + std::to_string(port_);
    }
    // Runs one command to its end.
    Outcome run(RedisClient& c, std::vector<std::string> args,
                std::chrono::milliseconds timeout = 0ms) {
        Outcome o;
        c.command(std::move(args), o.callback(), EventLoop::Clock::time_point::max(), timeout);
        EXPECT_TRUE(run_until(
            loop_, [&] { return o.done; }, scaled(10s)));
        return o;
    }
    // Sends PING until one succeeds (the client reconnects by itself); false at the deadline.
    bool eventually_pong(RedisClient& c, std::chrono::milliseconds deadline) {
        Outcome o;
        o.done = true;
        o.error.emplace(Kind::connect, "not sent yet");
        return run_until(
            loop_,
            [&] {
                if (!o.done) return false;
                if (!o.error) return o.reply.str == "PONG";
                o = Outcome();
                c.command({"PING"}, o.callback());
                return false;
            },
            deadline);
    }
    int redis_pid() const {
        std::string info = server_->cli({"INFO", "server"});
        auto at = info.find("process_id:");
        return at == std::string::npos ? -1 : std::atoi(info.c_str() + at + 11);
    }

    TempDir dir_;
    std::string password_;
    int port_ = 0;
    std::unique_ptr<RedisServer> server_;
    EventLoop loop_;
};

TEST_F(RedisClientTest, AnswersEveryReplyType) {
    RedisClient c(loop_, url());
    Outcome set = run(c, {"SET", "k", "v\r\nwith bytes\0"});
    ASSERT_FALSE(set.error) << set.error->what();
    EXPECT_EQ(set.reply.type, RedisReply::Type::status);
    EXPECT_EQ(set.reply.str, "OK");
    Outcome get = run(c, {"GET", "k"});
    EXPECT_EQ(get.reply.type, RedisReply::Type::string);
    EXPECT_EQ(get.reply.str, std::string("v\r\nwith bytes"));
    EXPECT_TRUE(run(c, {"GET", "missing"}).reply.is_nil());
    Outcome incr = run(c, {"INCR", "n"});
    EXPECT_EQ(incr.reply.type, RedisReply::Type::integer);
    EXPECT_EQ(incr.reply.integer, 1);
    run(c, {"RPUSH", "l", "a", "b"});
    Outcome range = run(c, {"LRANGE", "l", "0", "-1"});
    ASSERT_EQ(range.reply.type, RedisReply::Type::array);
    ASSERT_EQ(range.reply.elements.size(), 2u);
    EXPECT_EQ(range.reply.elements[1].str, "b");
    // An error reply: kind server, its first word as the code.
    Outcome wrong = run(c, {"INCR", "l"});
    ASSERT_TRUE(wrong.error);
    EXPECT_EQ(wrong.error->kind(), Kind::server);
    EXPECT_EQ(wrong.error->code(), "WRONGTYPE");
    EXPECT_NE(std::string(wrong.error->what()).find("WRONGTYPE"), std::string::npos);
    EXPECT_EQ(c.state(), RedisClient::State::up);
    auto s = c.stats();
    EXPECT_EQ(s.requests, 7u);
    EXPECT_EQ(s.errors["server"], 1u);
    EXPECT_EQ(s.open, 1u);
}

TEST_F(RedisClientTest, PipelinesManyCommandsOnOneConnection) {
    RedisClient c(loop_, url());
    std::vector<long long> order;
    int done = 0;
    for (int i = 0; i < 2000; ++i)
        c.command({"INCR", "counter"}, [&](RedisReply r, const ClientError* e) {
            ++done;
            if (e == nullptr) order.push_back(r.integer);
        });
    ASSERT_TRUE(run_until(
        loop_, [&] { return done == 2000; }, scaled(20s)));
    ASSERT_EQ(order.size(), 2000u);
    for (int i = 0; i < 2000; ++i) ASSERT_EQ(order[i], i + 1) << "replies out of order";
    // One connection for all of them (redis-cli's own is the other).
    EXPECT_NE(server_->cli({"INFO", "clients"}).find("connected_clients:2"), std::string::npos);
}

TEST_F(RedisClientTest, TransactionsSendMultiAndExecTogether) {
    RedisClient c(loop_, url());
    Outcome o;
    c.transaction({{"SET", "a", "1"}, {"INCR", "a"}, {"INCR", "a"}}, o.callback());
    ASSERT_TRUE(run_until(
        loop_, [&] { return o.done; }, scaled(10s)));
    ASSERT_FALSE(o.error) << o.error->what();
    ASSERT_EQ(o.reply.type, RedisReply::Type::array);
    ASSERT_EQ(o.reply.elements.size(), 3u);
    EXPECT_EQ(o.reply.elements[2].integer, 3);
    // A command Redis refuses to queue aborts the whole transaction.
    Outcome bad;
    c.transaction({{"SET", "b", "1"}, {"NOSUCHCOMMAND"}}, bad.callback());
    ASSERT_TRUE(run_until(
        loop_, [&] { return bad.done; }, scaled(10s)));
    ASSERT_TRUE(bad.error);
    EXPECT_EQ(bad.error->code(), "EXECABORT");
    EXPECT_TRUE(run(c, {"GET", "b"}).reply.is_nil());
}

TEST_F(RedisClientTest, RefusesCommandsThatWouldChangeTheSharedConnection) {
    RedisClient c(loop_, url());
    for (std::vector<std::string> args : {std::vector<std::string>{"select", "2"},
                                          {"AUTH", "x"},
                                          {"SUBSCRIBE", "ch"},
                                          {"MULTI"},
                                          {"BLPOP", "l", "0"},
                                          {"XREAD", "BLOCK", "0", "STREAMS", "s", "$"},
                                          {}}) {
        Outcome o = run(c, args);
        ASSERT_TRUE(o.error) << (args.empty() ? "(empty)" : args[0]);
        EXPECT_EQ(o.error->kind(), Kind::invalid);
    }
    // Nothing was sent: the connection was never even opened.
    EXPECT_EQ(c.state(), RedisClient::State::idle);
}

TEST_F(RedisClientTest, ATimedOutCommandsLateReplyIsDropped) {
    RedisClient c(loop_, url());
    ASSERT_FALSE(run(c, {"SET", "k", "v"}).error);
    // A script keeps Redis busy for 800 ms; the GET behind it times out at 100 ms.
    Outcome busy, get;
    c.command({"EVAL",
               "local s=redis.call('TIME') local t0=s[1]*1e6+s[2] "
               "repeat local n=redis.call('TIME') until n[1]*1e6+n[2]-t0 > 800000 return 1",
               "0"},
              busy.callback());
    c.command({"GET", "k"}, get.callback(), EventLoop::Clock::time_point::max(), 100ms);
    ASSERT_TRUE(run_until(
        loop_, [&] { return get.done; }, scaled(10s)));
    ASSERT_TRUE(get.error);
    EXPECT_EQ(get.error->kind(), Kind::timeout);
    EXPECT_FALSE(busy.done);
    // The script's reply and the GET's late one arrive; the latter is dropped, and the
    // connection stays in step: the next command gets its own reply.
    ASSERT_TRUE(run_until(
        loop_, [&] { return busy.done; }, scaled(10s)));
    EXPECT_FALSE(busy.error);
    Outcome next = run(c, {"ECHO", "mine"});
    EXPECT_EQ(next.reply.str, "mine");
    EXPECT_EQ(c.stats().waiting, 0u);
}

TEST_F(RedisClientTest, ADeadlineAlreadyPassedFailsAtOnce) {
    RedisClient c(loop_, url());
    Outcome o;
    c.command({"GET", "k"}, o.callback(), EventLoop::now() - 1ms);
    ASSERT_TRUE(run_until(
        loop_, [&] { return o.done; }, scaled(5s)));
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), Kind::timeout);
}

TEST_F(RedisClientTest, AFrozenServerIsLeftAndFoundAgain) {
    RedisClient::Options opt;
    opt.stall_timeout = 300ms;
    opt.command_timeout = 200ms;
    RedisClient c(loop_, url(), opt);
    ASSERT_FALSE(run(c, {"PING"}).error);
    int pid = redis_pid();
    ASSERT_GT(pid, 0);
    ASSERT_EQ(kill(pid, SIGSTOP), 0);
    Outcome o = run(c, {"PING"});
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), Kind::timeout);
    // No reply for the stall timeout: the connection is dropped, the client goes down.
    bool down = run_until(
        loop_, [&] { return c.state() != RedisClient::State::up; }, scaled(10s));
    kill(pid, SIGCONT);
    ASSERT_TRUE(down);
    EXPECT_TRUE(eventually_pong(c, scaled(15s)));
}

TEST_F(RedisClientTest, FailsFastWhileRedisIsDownAndRecoversByItself) {
    RedisClient c(loop_, url());
    ASSERT_FALSE(run(c, {"SET", "k", "v"}).error);
    server_->stop();
    // The command in flight when it went, or the first after, fails with the connection.
    Outcome first = run(c, {"GET", "k"});
    ASSERT_TRUE(first.error);
    ASSERT_TRUE(run_until(
        loop_, [&] { return c.state() == RedisClient::State::down; }, scaled(10s)));
    // While down: at once, kind connect, saying so (not after the 5 s timeout).
    Outcome fast = run(c, {"GET", "k"});
    ASSERT_TRUE(fast.error);
    EXPECT_EQ(fast.error->kind(), Kind::connect);
    EXPECT_NE(std::string(fast.error->what()).find("is down"), std::string::npos)
        << fast.error->what();
    server_->start();
    // The client reconnects on its own (back-off): a command succeeds again.
    EXPECT_TRUE(eventually_pong(c, scaled(20s)));
    EXPECT_GT(c.stats().errors["connect"], 0u);
}

class RedisPasswordTest : public RedisClientTest {
  protected:
    void SetUp() override {
        password_ = "s3cret-pw";
        RedisClientTest::SetUp();
    }
};

TEST_F(RedisPasswordTest, SendsThePasswordAndNeverShowsIt) {
    RedisClient good(loop_, url(":s3cret-pw@"));
    EXPECT_EQ(good.describe().find("s3cret"), std::string::npos) << good.describe();
    Outcome ok = run(good, {"SET", "k", "v"});
    ASSERT_FALSE(ok.error) << ok.error->what();
    RedisClient bad(loop_, url(":wrong-pw@"));
    Outcome no = run(bad, {"GET", "k"});
    ASSERT_TRUE(no.error);
    std::string what = no.error->what();
    EXPECT_EQ(what.find("wrong-pw"), std::string::npos) << what;
    EXPECT_NE(what.find("WRONGPASS"), std::string::npos) << what;
    // A URL's error never quotes the password either.
    try {
        RedisClient broken(loop_, "redis://:s3cret-pw@127.0.0.1:notaport");
        ADD_FAILURE() << "accepted";
    } catch (const ClientError& e) {
        EXPECT_EQ(e.kind(), Kind::invalid);
        EXPECT_EQ(std::string(e.what()).find("s3cret"), std::string::npos) << e.what();
    }
}

TEST_F(RedisClientTest, UsesTheUrlsDatabaseAndLooksNamesUp) {
    RedisClient c(loop_, "redis://localhost:" + std::to_string(port_) + "/3");
    ASSERT_FALSE(run(c, {"SET", "in3", "yes"}).error);
    EXPECT_EQ(server_->cli({"-n", "3", "GET", "in3"}), "yes");
    EXPECT_EQ(server_->cli({"GET", "in3"}), "");
}

TEST_F(RedisClientTest, ACancelledCommandCallsNothing) {
    RedisClient c(loop_, url());
    bool called = false;
    auto id = c.command({"PING"}, [&](RedisReply, const ClientError*) { called = true; });
    EXPECT_TRUE(c.cancel(id));
    EXPECT_FALSE(c.cancel(id));
    Outcome after = run(c, {"ECHO", "after"});
    EXPECT_EQ(after.reply.str, "after");
    EXPECT_FALSE(called);
    EXPECT_EQ(c.stats().errors["cancelled"], 1u);
}

TEST_F(RedisClientTest, DestroyedWithCommandsInFlightCallsNothing) {
    bool called = false;
    {
        RedisClient c(loop_, url());
        for (int i = 0; i < 100; ++i)
            c.command({"PING"}, [&](RedisReply, const ClientError*) { called = true; });
        loop_.run_once(0);
    }
    for (int i = 0; i < 5; ++i) loop_.run_once(10);
    EXPECT_FALSE(called);
}

TEST(RedisClientCommands, RefusalsNameTheCommand) {
    using herd::client::refuse_redis_command;
    EXPECT_FALSE(refuse_redis_command({"GET", "k"}));
    EXPECT_FALSE(refuse_redis_command({"XREAD", "STREAMS", "s", "0"}));
    EXPECT_FALSE(refuse_redis_command({"CLIENT", "SETNAME", "x"}));
    auto why = refuse_redis_command({"client", "reply", "off"});
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("CLIENT REPLY"), std::string::npos);
    why = refuse_redis_command({"watch", "k"});
    ASSERT_TRUE(why);
    EXPECT_NE(why->find("transaction()"), std::string::npos);
}

}  // namespace
