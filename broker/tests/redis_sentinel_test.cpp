// Tests broker/redis_backend through Redis Sentinel against real processes the tests start on
// free 127.0.0.1 ports: a redis-server primary, a redis-server replica of it and three
// redis-sentinel processes (quorum 2, down after 500 ms). The backend finds the primary (a dead
// sentinel listed first is skipped), follows a failover to the replica, and gives workers a
// fresh snapshot when the new primary lacks the last write. Skipped without redis-server or
// redis-sentinel. Waits are on conditions with deadlines, scaled by HERD_TIMEOUT_SCALE.
#include <signal.h>

#include <gtest/gtest.h>

#include "broker/redis_backend.hpp"
#include "test_util.hpp"

namespace herd::broker {
namespace {

using namespace test;

std::chrono::milliseconds scaled(std::chrono::milliseconds ms) {
    const char* s = std::getenv("HERD_TIMEOUT_SCALE");
    double k = s != nullptr ? std::atof(s) : 1.0;
    return std::chrono::milliseconds(static_cast<long long>(ms.count() * (k > 1 ? k : 1)));
}

int count_lines(const std::string& text, const std::string& line) {
    int n = 0;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) n += l == line;
    return n;
}

class RedisSentinelTest : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!RedisServer::available()) GTEST_SKIP() << "redis-server is not installed";
        if (!RedisSentinel::available())
            GTEST_SKIP() << "redis-sentinel is not installed (Debian package redis-sentinel, "
                            "which scripts/setup.sh installs)";
        std::vector<int> ports;
        while (ports.size() < 6) {
            int p = free_tcp_port();
            if (std::find(ports.begin(), ports.end(), p) == ports.end()) ports.push_back(p);
        }
        dead_sentinel = "127.0.0.1:" + std::to_string(ports[5]);
        std::filesystem::create_directories(dir / "primary");
        std::filesystem::create_directories(dir / "replica");
        primary = std::make_unique<RedisServer>(dir / "primary", ports[0], password());
        std::vector<std::string> replica_args = {"--replicaof", "127.0.0.1",
                                                 std::to_string(ports[0])};
        if (!password().empty())
            replica_args.insert(replica_args.end(), {"--masterauth", password()});
        replica =
            std::make_unique<RedisServer>(dir / "replica", ports[1], password(), replica_args);
        for (int i = 0; i < 3; ++i)
            sentinels.push_back(std::make_unique<RedisSentinel>(
                dir.path(), ports[2 + i], "herd", ports[0], password(), sentinel_password()));
    }
    // The primary's and the replica's password ("": none).
    virtual std::string password() const { return {}; }
    // The sentinels' own password (requirepass; "": none).
    virtual std::string sentinel_password() const { return {}; }

    void TearDown() override {
        backend.reset();
        sentinels.clear();
        replica.reset();
        primary.reset();
    }

    // A failover needs the replica in step and sentinels that know it and each other (they
    // meet through hello messages every 2 s).
    bool wait_ready_for_failover() {
        return run_until(
            loop,
            [&] {
                if (replica->cli({"INFO", "replication"}).find("master_link_status:up") ==
                    std::string::npos)
                    return false;
                for (const auto& s : sentinels) {
                    if (count_lines(s->cli({"SENTINEL", "sentinels", "herd"}), "name") < 2)
                        return false;
                    if (count_lines(s->cli({"SENTINEL", "replicas", "herd"}), "name") < 1)
                        return false;
                }
                return true;
            },
            scaled(15s));
    }

    // Through the config parser, as herd reads it: a dead sentinel first; extra keys added.
    RedisStateConfig config(const json& extra = json::object()) {
        json sentinel_list = {dead_sentinel};
        for (const auto& s : sentinels) sentinel_list.push_back(s->address());
        json j = {{"backend", "redis"},      {"sentinels", sentinel_list},
                  {"master_name", "herd"},   {"prefix", "t:"},
                  {"poll_ms", 50},           {"connect_timeout_ms", 1000},
                  {"reconnect_max_ms", 200}, {"sentinel_timeout_ms", 500}};
        if (!password().empty()) {
            j["password"] = password();
            j["db"] = 2;
        }
        if (!sentinel_password().empty()) j["sentinel_password"] = sentinel_password();
        for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
        StateConfig c = parse_state_config(j, dir.path(), "state", dir / "x");
        c.redis.reconnect_min_ms = 20;
        return c.redis;
    }
    void make(RedisStateConfig c) {
        backend = std::make_unique<RedisBackend>(loop, std::move(c), recorder.events());
        backend->start();
    }
    std::string address(const RedisServer& r) { return "127.0.0.1:" + std::to_string(r.port()); }
    // Up, at this primary.
    bool wait_up_at(const RedisServer& r, std::chrono::milliseconds deadline) {
        return run_until(
            loop,
            [&] {
                BackendStatus s = backend->status();
                return s.up && s.primary && s.primary->address == address(r);
            },
            scaled(deadline));
    }
    WriteResult& write(std::string key, std::optional<json> value) {
        results.push_back(std::make_unique<WriteResult>());
        backend->write(state::Change{std::move(key), std::move(value)}, results.back()->callback());
        return *results.back();
    }
    bool wait(WriteResult& r) {
        return run_until(
            loop, [&] { return r.done; }, scaled(5s));
    }
    const json* value(const std::string& key) { return backend->store().find(key); }

    TempDir dir;
    core::EventLoop loop;
    Recorder recorder;
    std::string dead_sentinel;
    std::unique_ptr<RedisServer> primary, replica;
    std::vector<std::unique_ptr<RedisSentinel>> sentinels;
    std::unique_ptr<RedisBackend> backend;
    std::vector<std::unique_ptr<WriteResult>> results;
};

TEST_F(RedisSentinelTest, FindsThePrimaryAndFollowsAFailover) {
    ASSERT_TRUE(wait_ready_for_failover())
        << "the sentinels did not find each other and the replica";
    make(config());
    ASSERT_TRUE(wait_up_at(*primary, 5s));
    BackendStatus st = backend->status();
    EXPECT_EQ(st.primary->role, "master");
    EXPECT_EQ(st.primary->failovers, 0u);
    // The dead sentinel was skipped; the one that answered is asked first from now on.
    EXPECT_EQ(st.details["sentinels"][0], sentinels[0]->address());
    EXPECT_EQ(st.details["sentinels"][1], dead_sentinel);
    EXPECT_EQ(st.to_json()["primary"]["address"], address(*primary));
    EXPECT_EQ(st.target.rfind("redis://" + address(*primary) +
                                  "/0 (primary \"herd\" from sentinels " + dead_sentinel + ",",
                              0),
              0u)
        << st.target;

    WriteResult& a = write("a", json(1));
    ASSERT_TRUE(wait(a));
    EXPECT_EQ(a.error, "");
    EXPECT_EQ(a.version, 1u);
    EXPECT_EQ(primary->cli({"WAIT", "1", "5000"}), "1");  // the replica has it

    // The primary freezes: the sentinels promote the replica, the backend notices (a command
    // unanswered, or the +switch-master hint), asks the sentinels again, and checks ROLE.
    ASSERT_EQ(kill(primary->pid(), SIGSTOP), 0);
    ASSERT_TRUE(run_until(
        loop, [&] { return !backend->status().up; }, scaled(5s)));
    ASSERT_TRUE(wait_up_at(*replica, 20s)) << backend->status().to_json().dump();
    st = backend->status();
    EXPECT_EQ(st.primary->role, "master");
    EXPECT_EQ(st.primary->failovers, 1u);
    EXPECT_EQ(st.target.rfind("redis://" + address(*replica) + "/0 (", 0), 0u) << st.target;
    EXPECT_EQ(st.details["rollbacks"], 0);
    EXPECT_EQ(st.version, 1u);
    ASSERT_NE(value("a"), nullptr);
    EXPECT_EQ(*value("a"), 1);
    EXPECT_EQ(recorder.resets, 1);  // nothing was lost: no fresh snapshot

    WriteResult& b = write("b", json(2));
    ASSERT_TRUE(wait(b));
    EXPECT_EQ(b.error, "");
    EXPECT_EQ(b.version, 2u);
    EXPECT_EQ(replica->cli({"HGET", "t:data", "b"}), "2");
    primary->stop();  // SIGKILL ends a stopped process too
}

TEST_F(RedisSentinelTest, AFailoverThatLostWritesGivesWorkersAFreshSnapshot) {
    ASSERT_TRUE(wait_ready_for_failover())
        << "the sentinels did not find each other and the replica";
    make(config());
    ASSERT_TRUE(wait_up_at(*primary, 5s));
    ASSERT_TRUE(wait(write("a", json(1))));
    EXPECT_EQ(primary->cli({"WAIT", "1", "5000"}), "1");

    // The replica misses the next write (stopped, and cut off from the primary), then the
    // primary dies: the replica is promoted without it.
    ASSERT_EQ(kill(replica->pid(), SIGSTOP), 0);
    primary->cli({"CLIENT", "KILL", "TYPE", "replica"});
    WriteResult& lost = write("lost", json(2));
    ASSERT_TRUE(wait(lost));
    EXPECT_EQ(lost.error, "");
    EXPECT_EQ(lost.version, 2u);
    primary->stop();
    ASSERT_EQ(kill(replica->pid(), SIGCONT), 0);

    ASSERT_TRUE(wait_up_at(*replica, 20s)) << backend->status().to_json().dump();
    BackendStatus st = backend->status();
    EXPECT_EQ(st.primary->failovers, 1u);
    EXPECT_EQ(st.details["rollbacks"], 1);
    EXPECT_EQ(st.version, 1u);
    EXPECT_EQ(value("lost"), nullptr);
    ASSERT_NE(value("a"), nullptr);
    EXPECT_EQ(recorder.resets, 2);  // the first load, then the fresh snapshot

    WriteResult& after = write("after", json(3));
    ASSERT_TRUE(wait(after));
    EXPECT_EQ(after.error, "");
    EXPECT_EQ(after.version, 2u);
}

TEST_F(RedisSentinelTest, AFailoverAnnouncedDuringTheBackOffEndsIt) {
    ASSERT_TRUE(wait_ready_for_failover())
        << "the sentinels did not find each other and the replica";
    RedisStateConfig c = config();
    // After the primary's death the next attempt would be a minute away: only a sentinel's
    // +switch-master, heard during the back-off, brings the backend to the new primary in time.
    c.reconnect_min_ms = c.reconnect_max_ms = 60000;
    make(c);
    ASSERT_TRUE(wait_up_at(*primary, 5s));
    ASSERT_TRUE(wait(write("a", json(1))));
    EXPECT_EQ(primary->cli({"WAIT", "1", "5000"}), "1");
    primary->stop();  // SIGKILL: the connections close at once
    ASSERT_TRUE(run_until(
        loop, [&] { return !backend->status().up; }, scaled(5s)));
    ASSERT_TRUE(wait_up_at(*replica, 20s)) << backend->status().to_json().dump();
    BackendStatus st = backend->status();
    EXPECT_EQ(st.primary->failovers, 1u);
    EXPECT_GE(st.details["switch_hints"], 1);
    ASSERT_NE(value("a"), nullptr);
    WriteResult& b = write("b", json(2));
    ASSERT_TRUE(wait(b));
    EXPECT_EQ(b.error, "");
}

TEST_F(RedisSentinelTest, WithMinReplicasAckOnlyConfirmedWritesAreAcknowledged) {
    ASSERT_TRUE(wait_ready_for_failover())
        << "the sentinels did not find each other and the replica";
    make(config({{"min_replicas_ack", 1}, {"replica_ack_timeout_ms", 300}}));
    ASSERT_TRUE(wait_up_at(*primary, 5s));
    WriteResult& a = write("a", json(1));
    ASSERT_TRUE(wait(a));
    EXPECT_EQ(a.error, "");
    EXPECT_EQ(a.version, 1u);
    EXPECT_EQ(replica->cli({"HGET", "t:data", "a"}), "1");  // already there when acknowledged

    // The replica stops and is cut off: writes are applied on the primary but not confirmed.
    // Three at once: the first goes out with its WAIT, the other two wait for it and then go
    // out together with one WAIT.
    ASSERT_EQ(kill(replica->pid(), SIGSTOP), 0);
    primary->cli({"CLIENT", "KILL", "TYPE", "replica"});
    std::uint64_t waits = backend->status().details["waits"];
    std::vector<WriteResult*> unconfirmed;
    for (const char* key : {"u1", "u2", "u3"}) unconfirmed.push_back(&write(key, json(key)));
    for (WriteResult* w : unconfirmed) {
        ASSERT_TRUE(wait(*w));
        EXPECT_NE(w->error.find("was applied on the Redis primary at " + address(*primary) +
                                " (version "),
                  std::string::npos)
            << w->error;
        EXPECT_NE(w->error.find("but only 0 of the 1 replica(s) required (min_replicas_ack) "
                                "confirmed it within 300 ms; it may be lost if the primary fails"),
                  std::string::npos)
            << w->error;
    }
    BackendStatus st = backend->status();
    EXPECT_EQ(st.details["waits"], waits + 2);
    EXPECT_EQ(st.details["unconfirmed_writes"], 3);
    EXPECT_EQ(st.details["min_replicas_ack"], 1);
    // Applied: the workers get them like any write.
    ASSERT_TRUE(run_until(
        loop, [&] { return value("u3") != nullptr; }, scaled(5s)));

    // The primary dies and the replica is promoted: what was acknowledged is there, the
    // unconfirmed writes are not (their writers were told).
    primary->stop();
    ASSERT_EQ(kill(replica->pid(), SIGCONT), 0);
    ASSERT_TRUE(wait_up_at(*replica, 20s)) << backend->status().to_json().dump();
    ASSERT_NE(value("a"), nullptr);
    EXPECT_EQ(*value("a"), 1);
    EXPECT_EQ(value("u1"), nullptr);
    EXPECT_EQ(backend->status().details["rollbacks"], 1);
    // No replica is left: writes fail until one is (as with Redis's min-replicas-to-write).
    WriteResult& alone = write("alone", json(1));
    ASSERT_TRUE(wait(alone));
    EXPECT_NE(alone.error.find("but only 0 of the 1 replica(s)"), std::string::npos) << alone.error;
}

TEST_F(RedisSentinelTest, NoSentinelAnsweringIsReportedWithEachOnesReason) {
    RedisStateConfig c = config();
    c.master_name = "unknown";
    make(c);
    ASSERT_TRUE(run_until(
        loop, [&] { return backend->status().last_error.find("no sentinel") != std::string::npos; },
        scaled(5s)));
    BackendStatus st = backend->status();
    EXPECT_FALSE(st.up);
    EXPECT_NE(st.last_error.find(dead_sentinel + ": cannot connect"), std::string::npos)
        << st.last_error;
    EXPECT_NE(
        st.last_error.find(sentinels[0]->address() + ": does not know a primary named \"unknown\""),
        std::string::npos)
        << st.last_error;
    WriteResult& w = write("k", json(1));
    ASSERT_TRUE(wait(w));
    EXPECT_NE(w.error.find("(the primary \"unknown\", asking the sentinels)"), std::string::npos)
        << w.error;
    EXPECT_NE(backend->status().target.find("(asking them)"), std::string::npos);
}

class RedisSentinelPasswordTest : public RedisSentinelTest {
  protected:
    std::string password() const override { return "s3cret"; }
};

TEST_F(RedisSentinelPasswordTest, ThePasswordAndDbGoToThePrimaryAndNeverShow) {
    make(config());
    ASSERT_TRUE(wait_up_at(*primary, 5s)) << backend->status().to_json().dump();
    WriteResult& w = write("k", json("v"));
    ASSERT_TRUE(wait(w));
    EXPECT_EQ(w.error, "");
    EXPECT_EQ(primary->cli({"-n", "2", "HGET", "t:data", "k"}), "\"v\"");
    EXPECT_EQ(primary->cli({"-n", "0", "EXISTS", "t:data"}), "0");
    BackendStatus st = backend->status();
    EXPECT_EQ(st.target.rfind("redis://:***@" + address(*primary) + "/2 (", 0), 0u) << st.target;
    EXPECT_EQ(st.to_json().dump().find("s3cret"), std::string::npos);
}

class RedisSentinelAuthTest : public RedisSentinelTest {
  protected:
    std::string sentinel_password() const override { return "w4tch"; }
};

TEST_F(RedisSentinelAuthTest, SentinelsWithAPasswordAreAskedWithIt) {
    make(config());
    ASSERT_TRUE(wait_up_at(*primary, 5s)) << backend->status().to_json().dump();
    WriteResult& w = write("k", json("v"));
    ASSERT_TRUE(wait(w));
    EXPECT_EQ(w.error, "");
    EXPECT_EQ(backend->status().to_json().dump().find("w4tch"), std::string::npos);

    // A wrong one: each sentinel says why, and the password never shows.
    backend.reset();
    make(config({{"sentinel_password", "n0t-it"}}));
    ASSERT_TRUE(run_until(
        loop, [&] { return backend->status().last_error.find("no sentinel") != std::string::npos; },
        scaled(5s)));
    BackendStatus st = backend->status();
    EXPECT_FALSE(st.up);
    EXPECT_NE(st.last_error.find(sentinels[0]->address() + ": refused AUTH (sentinel_password): "),
              std::string::npos)
        << st.last_error;
    EXPECT_EQ(st.to_json().dump().find("n0t-it"), std::string::npos);
}

}  // namespace
}  // namespace herd::broker
