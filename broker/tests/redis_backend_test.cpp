// Tests broker/redis_backend against a real redis-server that each test starts itself (unix
// socket in a temporary folder, or a free 127.0.0.1 port) and stops: writes through the
// script, change notices, writers that bypass herd, Redis stopped, restarted, flushed and
// frozen, passwords, malformed data. Skipped when redis-server is not installed.
#include "broker/redis_backend.hpp"

#include <signal.h>

#include <gtest/gtest.h>

#include "core/log.hpp"
#include "state/codec.hpp"
#include "test_util.hpp"

namespace herd::broker {
namespace {

using namespace test;

class RedisBackendTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!RedisServer::available()) GTEST_SKIP() << "redis-server is not installed";
    }
    void TearDown() override {
        backend.reset();
        redis.reset();
    }

    void start_redis(int port = 0, std::string password = {}) {
        redis = std::make_unique<RedisServer>(dir.path(), port, std::move(password));
    }
    RedisStateConfig config(const std::string& url = {}) {
        RedisStateConfig c;
        c.url = url.empty() ? "unix://" + redis->socket() : url;
        c.parsed = parse_redis_url(c.url);
        c.prefix = "t:";
        c.poll_ms = 50;
        c.resync_ms = 60000;
        c.connect_timeout_ms = 1000;
        c.reconnect_min_ms = 20;
        c.reconnect_max_ms = 200;
        return c;
    }
    void make(RedisStateConfig c) {
        backend = std::make_unique<RedisBackend>(loop, std::move(c), recorder.events());
        backend->start();
    }
    bool wait_up() {
        return run_until(loop, [&] { return backend->status().up; });
    }
    WriteResult& write(std::string key, std::optional<json> value) {
        results.push_back(std::make_unique<WriteResult>());
        backend->write(state::Change{std::move(key), std::move(value)}, results.back()->callback());
        return *results.back();
    }
    bool wait(WriteResult& r) {
        return run_until(loop, [&] { return r.done; });
    }
    // The documented way for an outside program to write: EVAL of the script via redis-cli.
    std::string cli_write(const std::string& op, const std::string& key,
                          const std::string& value = {}) {
        std::vector<std::string> args = {
            "EVAL", std::string(redis_write_script()), "2", "t:data", "t:version", "t:changes", op,
            key};
        if (op == "set") args.push_back(value);
        return redis->cli(args);
    }
    const json* value(const std::string& key) { return backend->store().find(key); }

    TempDir dir;
    core::EventLoop loop;
    Recorder recorder;
    std::unique_ptr<RedisServer> redis;
    std::unique_ptr<RedisBackend> backend;
    std::vector<std::unique_ptr<WriteResult>> results;
};

TEST_F(RedisBackendTest, WritesGoThroughTheScriptAndComeBackAsDeltas) {
    start_redis();
    make(config());
    ASSERT_TRUE(wait_up());
    EXPECT_TRUE(backend->status().loaded);
    EXPECT_EQ(recorder.resets, 1);
    EXPECT_EQ(backend->store().version(), 0u);

    WriteResult& r = write("user:1", json{{"name", "Ann"}});
    EXPECT_FALSE(r.done);
    ASSERT_TRUE(wait(r));
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(r.version, 1u);
    // Acknowledged only once the store has it (read your own write).
    ASSERT_NE(value("user:1"), nullptr);
    EXPECT_EQ(*value("user:1"), json({{"name", "Ann"}}));
    ASSERT_EQ(recorder.deltas.size(), 1u);
    EXPECT_EQ(recorder.deltas[0], (state::Delta{0, 1, {{"user:1", json{{"name", "Ann"}}}}}));
    EXPECT_EQ(redis->cli({"HGET", "t:data", "user:1"}), R"({"name":"Ann"})");
    EXPECT_EQ(redis->cli({"GET", "t:version"}), "1");

    WriteResult& e = write("user:1", std::nullopt);
    ASSERT_TRUE(wait(e));
    EXPECT_EQ(e.error, "");
    EXPECT_EQ(e.version, 2u);
    EXPECT_EQ(value("user:1"), nullptr);
    EXPECT_EQ(redis->cli({"HEXISTS", "t:data", "user:1"}), "0");
    // Erasing what is not there changes nothing and is acknowledged at the current version.
    WriteResult& e2 = write("never", std::nullopt);
    ASSERT_TRUE(wait(e2));
    EXPECT_EQ(e2.error, "");
    EXPECT_EQ(e2.version, 2u);
    EXPECT_EQ(recorder.deltas.size(), 2u);
    EXPECT_EQ(backend->status().details["notices"], 2);
    EXPECT_EQ(backend->status().details["gaps"], 0);
}

TEST_F(RedisBackendTest, LoadsWhatRedisHoldsAtConnection) {
    start_redis();
    cli_write("set", "a", "1");
    cli_write("set", "b", R"({"x":[true,null]})");
    make(config());
    ASSERT_TRUE(wait_up());
    EXPECT_EQ(backend->store().version(), 2u);
    EXPECT_EQ(backend->store().entries(),
              (state::Entries{{"a", 1}, {"b", json::parse(R"({"x":[true,null]})")}}));
}

TEST_F(RedisBackendTest, OutsideWritersUsingTheScriptAreDeliveredByTheirNotice) {
    start_redis();
    make(config());
    ASSERT_TRUE(wait_up());
    EXPECT_EQ(cli_write("set", "feature", "true"), "1");
    ASSERT_TRUE(run_until(loop, [&] { return value("feature") != nullptr; }));
    EXPECT_EQ(*value("feature"), true);
    EXPECT_EQ(cli_write("del", "feature"), "2");
    ASSERT_TRUE(run_until(loop, [&] { return value("feature") == nullptr; }));
    EXPECT_EQ(backend->status().details["gaps"], 0);
    EXPECT_EQ(backend->status().details["resyncs"], 1);  // only the one at connection
    // The script refuses what herd would refuse.
    EXPECT_NE(cli_write("set", "k", "{not json").find("herd: the value must be JSON"),
              std::string::npos);
    EXPECT_NE(cli_write("set", "", "1").find("herd: the key must be"), std::string::npos);
    EXPECT_NE(cli_write("put", "k", "1").find("herd: the operation must be"), std::string::npos);
    EXPECT_EQ(redis->cli({"GET", "t:version"}), "2");
}

TEST_F(RedisBackendTest, WritersBypassingHerdAreCaughtByPollAndResync) {
    start_redis();
    RedisStateConfig c = config();
    c.resync_ms = 300;
    make(c);
    ASSERT_TRUE(wait_up());
    // Bumps the version but publishes nothing: the poll sees a version it has not had.
    redis->cli({"HSET", "t:data", "polled", "1"});
    redis->cli({"INCR", "t:version"});
    ASSERT_TRUE(run_until(loop, [&] { return value("polled") != nullptr; }));
    EXPECT_EQ(backend->store().version(), 1u);
    EXPECT_GE(backend->status().details["gaps"].get<int>(), 1);
    // Not even the version: only the periodic full read finds it.
    redis->cli({"HSET", "t:data", "sneaky", "\"yes\""});
    ASSERT_TRUE(run_until(loop, [&] { return value("sneaky") != nullptr; }));
    EXPECT_EQ(*value("sneaky"), "yes");
    EXPECT_EQ(backend->store().version(), 1u);
    EXPECT_EQ(recorder.deltas.back(), (state::Delta{1, 1, {{"sneaky", json("yes")}}}));
}

TEST_F(RedisBackendTest, RedisStopsAndComesBackWithItsData) {
    start_redis();
    make(config());
    ASSERT_TRUE(wait_up());
    ASSERT_TRUE(wait(write("kept", json("before"))));

    redis->cli({"SAVE"});  // so that the restarted server has the data
    redis->stop();
    ASSERT_TRUE(run_until(loop, [&] { return !backend->status().up; }));
    BackendStatus down = backend->status();
    EXPECT_TRUE(down.down_since.has_value());
    EXPECT_NE(down.last_error, "");
    EXPECT_EQ(*value("kept"), "before");  // the last state stays

    // Writes fail at once and say why; nothing is queued.
    WriteResult& refused = write("during", json(1));
    ASSERT_TRUE(wait(refused));
    EXPECT_NE(refused.error.find("is down since"), std::string::npos) << refused.error;
    EXPECT_NE(refused.error.find("not applied"), std::string::npos) << refused.error;
    EXPECT_NE(refused.error.find(redis->socket()), std::string::npos) << refused.error;
    // The back-off keeps trying.
    std::uint64_t attempts = backend->status().details["reconnects"];
    ASSERT_TRUE(run_until(loop, [&] {
        return backend->status().details["reconnects"].get<std::uint64_t>() > attempts + 2;
    }));

    redis->start();
    cli_write("set", "while-away", "2");  // changed before the broker is back
    ASSERT_TRUE(wait_up());
    ASSERT_TRUE(run_until(loop, [&] { return value("while-away") != nullptr; }));
    EXPECT_EQ(*value("kept"), "before");
    EXPECT_EQ(backend->store().version(), 2u);
    EXPECT_EQ(recorder.resets, 1);  // no reset: Redis kept its history
    WriteResult& after = write("after", json(3));
    ASSERT_TRUE(wait(after));
    EXPECT_EQ(after.error, "");
    EXPECT_EQ(after.version, 3u);
}

TEST_F(RedisBackendTest, RedisRestartedEmptyResetsTheState) {
    start_redis();
    make(config());
    ASSERT_TRUE(wait_up());
    ASSERT_TRUE(wait(write("a", json(1))));
    ASSERT_TRUE(wait(write("b", json(2))));
    redis->stop();
    std::filesystem::remove(dir / "dump.rdb");
    redis->start();
    ASSERT_TRUE(run_until(loop, [&] { return recorder.resets == 2; }));
    EXPECT_EQ(backend->store().version(), 0u);
    EXPECT_EQ(backend->store().size(), 0u);
    EXPECT_TRUE(backend->status().up);
}

TEST_F(RedisBackendTest, FlushWhileConnectedIsNoticedByThePoll) {
    start_redis();
    make(config());
    ASSERT_TRUE(wait_up());
    ASSERT_TRUE(wait(write("a", json(1))));
    redis->cli({"FLUSHALL"});
    ASSERT_TRUE(run_until(loop, [&] { return recorder.resets == 2; }));
    EXPECT_EQ(backend->store().size(), 0u);
}

TEST_F(RedisBackendTest, AFrozenRedisIsDetectedByTheCommandTimeout) {
    start_redis();
    RedisStateConfig c = config();
    c.connect_timeout_ms = 300;
    make(c);
    ASSERT_TRUE(wait_up());
    // Find redis-server's pid through INFO, freeze it, and wait for the verdict.
    std::string info = redis->cli({"INFO", "server"});
    auto at = info.find("process_id:");
    ASSERT_NE(at, std::string::npos);
    pid_t pid = std::stoi(info.substr(at + 11));
    ASSERT_EQ(kill(pid, SIGSTOP), 0);
    bool down = run_until(
        loop, [&] { return !backend->status().up; }, 5s);
    std::string error = backend->status().last_error;
    kill(pid, SIGCONT);
    ASSERT_TRUE(down);
    EXPECT_NE(error.find("did not answer"), std::string::npos) << error;
    ASSERT_TRUE(wait_up());
}

TEST_F(RedisBackendTest, PasswordOverTcpIsUsedAndNeverShown) {
    const std::string password = "s3cr3t-pa55";
    start_redis(free_tcp_port(), password);
    int port = redis->port();
    make(config("redis://:" + password + "@127.0.0.1:" + std::to_string(port) + "/3"));
    ASSERT_TRUE(wait_up());
    ASSERT_TRUE(wait(write("k", json(1))));
    EXPECT_EQ(redis->cli({"-n", "3", "HGET", "t:data", "k"}), "1");  // in database 3
    BackendStatus s = backend->status();
    EXPECT_EQ(s.target, "redis://:***@127.0.0.1:" + std::to_string(port) + "/3");
    EXPECT_EQ(s.to_json().dump().find(password), std::string::npos);

    // A wrong password: refused, and the error does not echo either password.
    backend.reset();
    recorder = Recorder{};
    make(config("redis://:wrong-" + password + "@127.0.0.1:" + std::to_string(port)));
    ASSERT_TRUE(run_until(
        loop, [&] { return backend->status().last_error.find("AUTH") != std::string::npos; }));
    s = backend->status();
    EXPECT_FALSE(s.up);
    EXPECT_EQ(s.to_json().dump().find(password), std::string::npos) << s.to_json().dump();
    WriteResult& r = write("k", json(2));
    ASSERT_TRUE(wait(r));
    EXPECT_EQ(r.error.find(password), std::string::npos);
}

TEST_F(RedisBackendTest, NoRedisAtAllIsReportedWithBackOff) {
    RedisStateConfig c;
    c.url = "unix://" + dir / "nothing-here.sock";
    c.parsed = parse_redis_url(c.url);
    c.reconnect_min_ms = 10;
    c.reconnect_max_ms = 40;
    backend = std::make_unique<RedisBackend>(loop, c, recorder.events());
    backend->start();
    ASSERT_TRUE(
        run_until(loop, [&] { return backend->status().details["reconnects"].get<int>() >= 3; }));
    BackendStatus s = backend->status();
    EXPECT_FALSE(s.up);
    EXPECT_FALSE(s.loaded);
    EXPECT_NE(s.last_error.find("nothing-here.sock"), std::string::npos) << s.last_error;
    EXPECT_EQ(recorder.resets, 0);  // nothing is pushed to workers before the first read
}

TEST_F(RedisBackendTest, NothingListeningOnTheTcpPortIsReportedWithBackOff) {
    RedisStateConfig c;
    c.url = "redis://127.0.0.1:" + std::to_string(free_tcp_port());
    c.parsed = parse_redis_url(c.url);
    c.reconnect_min_ms = 10;
    c.reconnect_max_ms = 40;
    backend = std::make_unique<RedisBackend>(loop, c, recorder.events());
    backend->start();
    ASSERT_TRUE(
        run_until(loop, [&] { return backend->status().details["reconnects"].get<int>() >= 3; }));
    BackendStatus s = backend->status();
    EXPECT_FALSE(s.up);
    EXPECT_NE(s.last_error.find("Connection refused"), std::string::npos) << s.last_error;
}

TEST_F(RedisBackendTest, MalformedDataIsReportedAndSkipped) {
    start_redis();
    redis->cli({"HSET", "t:data", "good", "1", "bad", "not json", "bad2", "[1,"});
    make(config());
    ASSERT_TRUE(wait_up());
    EXPECT_EQ(backend->store().entries(), (state::Entries{{"good", 1}}));
    EXPECT_EQ(backend->status().details["bad_fields"], 2);
    // Garbage on the channel: ignored, and everything is read again.
    auto resyncs = backend->status().details["resyncs"].get<int>();
    redis->cli({"PUBLISH", "t:changes", "garbage"});
    redis->cli({"PUBLISH", "t:changes", R"({"version":"x","key":"k"})"});
    ASSERT_TRUE(
        run_until(loop, [&] { return backend->status().details["resyncs"].get<int>() > resyncs; }));
    EXPECT_TRUE(backend->status().up);
    // A version key that is not a number: the read fails and says so.
    redis->cli({"SET", "t:version", "abc"});
    backend->resync();
    ASSERT_TRUE(run_until(loop, [&] {
        return backend->status().last_error.find("t:version holds \"abc\"") != std::string::npos;
    }));
    // A hash that is not a hash: writes are refused by Redis, with its reason.
    redis->cli({"SET", "t:version", "5"});
    redis->cli({"DEL", "t:data"});
    redis->cli({"SET", "t:data", "oops"});
    WriteResult& r = write("k", json(1));
    ASSERT_TRUE(wait(r));
    EXPECT_NE(r.error.find("WRONGTYPE"), std::string::npos) << r.error;
}

TEST_F(RedisBackendTest, ScriptCacheFlushedFallsBackToEval) {
    start_redis();
    make(config());
    ASSERT_TRUE(wait_up());
    ASSERT_TRUE(wait(write("a", json(1))));
    redis->cli({"SCRIPT", "FLUSH"});
    WriteResult& r = write("b", json(2));
    ASSERT_TRUE(wait(r));
    EXPECT_EQ(r.error, "");
    EXPECT_EQ(*value("b"), 2);
}

TEST(RedisScript, TheReadmeShowsTheScriptTheBrokerRuns) {
    std::string readme = read_file(std::string(HERD_SOURCE_DIR) + "/broker/README.md");
    EXPECT_NE(readme.find(std::string(redis_write_script())), std::string::npos)
        << "broker/README.md must contain redis_write_script() verbatim";
}

}  // namespace
}  // namespace herd::broker
