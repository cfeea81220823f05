// Tests broker/broker: the protocol on real socketpairs (the test plays the master and the
// workers), end to end with the worker's StateReplica, a broker started while Redis is down,
// and broker_main in a forked process (orphan rule, SIGTERM).
#include "broker/broker.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <deque>

#include <gtest/gtest.h>

#include "broker/file_backend.hpp"
#include "core/log.hpp"
#include "state/codec.hpp"
#include "state/state_replica.hpp"
#include "test_util.hpp"

namespace herd::broker {
namespace {

using namespace test;

std::pair<core::UniqueFd, core::UniqueFd> socket_pair() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        throw std::runtime_error("socketpair() failed");
    return {core::UniqueFd(sv[0]), core::UniqueFd(sv[1])};
}

// One end of a channel, as the test sees it: everything received, in order.
struct Peer {
    Peer(core::EventLoop& loop, core::UniqueFd fd, std::string name)
        : channel(loop, std::move(fd), std::move(name)) {
        channel.start([this](core::Message&& m) { received.push_back(std::move(m.body)); },
                      [this](const std::string& reason) { closed = reason; });
    }
    // The first message of this type received so far (removed), or null.
    std::optional<json> take(const std::string& type) {
        for (auto it = received.begin(); it != received.end(); ++it)
            if ((*it)["type"] == type) {
                json j = std::move(*it);
                received.erase(it);
                return j;
            }
        return std::nullopt;
    }
    bool has(const std::string& type) const {
        for (const auto& j : received)
            if (j["type"] == type) return true;
        return false;
    }
    std::vector<std::string> types() const {
        std::vector<std::string> t;
        for (const auto& j : received) t.push_back(j["type"]);
        return t;
    }
    core::Channel channel;
    std::deque<json> received;
    std::string closed;
};

class BrokerTest : public ::testing::Test {
  protected:
    void start(StateConfig config) {
        auto [ours, theirs] = socket_pair();
        master = std::make_unique<Peer>(loop, std::move(ours), "broker");
        BrokerSpec spec;
        spec.config = std::move(config);
        spec.channel = std::move(theirs);
        spec.heartbeat = 100ms;
        broker = std::make_unique<Broker>(loop, std::move(spec));
        broker->start();
    }
    void start_file() { start(default_state_config(dir / "app.state.json")); }
    // Attaches a worker; returns the test's end of its channel.
    Peer& attach(const std::string& name) {
        auto [ours, theirs] = socket_pair();
        std::vector<core::UniqueFd> fds;
        fds.push_back(std::move(theirs));
        master->channel.send(state::encode_attach(name), std::move(fds));
        workers.push_back(std::make_unique<Peer>(loop, std::move(ours), "broker"));
        return *workers.back();
    }
    json wait_for(Peer& peer, const std::string& type) {
        std::optional<json> j;
        EXPECT_TRUE(run_until(loop, [&] { return (j = peer.take(type)).has_value(); }))
            << "no " << type << "; received: " << json(peer.types()).dump();
        return j.value_or(json());
    }

    TempDir dir;
    core::EventLoop loop;
    std::unique_ptr<Peer> master;
    std::unique_ptr<Broker> broker;
    std::vector<std::unique_ptr<Peer>> workers;
};

TEST_F(BrokerTest, ReadyHeartbeatAndStatus) {
    start_file();
    json ready = wait_for(*master, "ready");
    EXPECT_EQ(ready["pid"], getpid());
    EXPECT_EQ(ready["backend"], "file");
    json hb = wait_for(*master, "heartbeat");
    EXPECT_EQ(hb["backend"], "file");
    EXPECT_EQ(hb["up"], true);
    EXPECT_EQ(hb["target"], dir / "app.state.json");
    EXPECT_EQ(hb["workers"], 0);
    // Periodic.
    wait_for(*master, "heartbeat");
    master->channel.send({{"type", "status"}, {"id", 7}});
    json st = wait_for(*master, "status");
    EXPECT_EQ(st["id"], 7);
    EXPECT_EQ(st["version"], 0);
    EXPECT_TRUE(st.contains("down_since_ms"));
    EXPECT_TRUE(st.contains("last_error"));
}

TEST_F(BrokerTest, WorkersGetASnapshotThenDeltasThenTheirAck) {
    write_file(dir / "app.state.json", R"({"version": 5, "entries": {"a": 1}})");
    start_file();
    Peer& w1 = attach("web/0/100");
    json snap = wait_for(w1, "state.snapshot");
    EXPECT_EQ(state::decode_snapshot(snap), (state::Snapshot{5, {{"a", 1}}}));

    w1.channel.send(state::encode_write(state::WriteRequest{1, "b", json{{"x", true}}}));
    ASSERT_TRUE(run_until(loop, [&] { return w1.has("state.ack"); }));
    // The delta that includes the write comes before its ack.
    ASSERT_EQ(w1.received.size(), 2u);
    EXPECT_EQ(w1.received[0]["type"], "state.delta");
    EXPECT_EQ(state::decode_delta(w1.received[0]),
              (state::Delta{5, 6, {{"b", json{{"x", true}}}}}));
    EXPECT_EQ(state::decode_ack(w1.received[1]), (state::Ack{1, true, "", 6}));
    w1.received.clear();

    // A second worker starts with everything so far, and both get what follows.
    Peer& w2 = attach("web/1/101");
    EXPECT_EQ(state::decode_snapshot(wait_for(w2, "state.snapshot")).entries,
              (state::Entries{{"a", 1}, {"b", json{{"x", true}}}}));
    w2.channel.send(state::encode_write(state::WriteRequest{9, "a", std::nullopt}));
    EXPECT_EQ(state::decode_ack(wait_for(w2, "state.ack")), (state::Ack{9, true, "", 7}));
    EXPECT_EQ(state::decode_delta(wait_for(w1, "state.delta")),
              (state::Delta{6, 7, {{"a", std::nullopt}}}));
    EXPECT_FALSE(w1.has("state.ack"));  // acks go to the writer only
    EXPECT_EQ(decode_state_file(read_file(dir / "app.state.json")).version, 7u);

    // A worker that saw a gap asks again.
    w1.channel.send({{"type", "state.resync"}});
    EXPECT_EQ(state::decode_snapshot(wait_for(w1, "state.snapshot")).version, 7u);
}

TEST_F(BrokerTest, MasterRequestsForTheCli) {
    start_file();
    master->channel.send(state::encode_write(state::WriteRequest{1, "user:1", json("Ann")}));
    master->channel.send(state::encode_write(state::WriteRequest{2, "user:2", json("Bob")}));
    master->channel.send(state::encode_write(state::WriteRequest{3, "other", json(3)}));
    for (std::uint64_t id : {1, 2, 3}) {
        state::Ack a = state::decode_ack(wait_for(*master, "state.ack"));
        EXPECT_EQ(a.id, id);
        EXPECT_TRUE(a.ok) << a.error;
    }
    master->channel.send(
        state::encode_read(state::ReadRequest{state::ReadRequest::Kind::get, 4, "user:2"}));
    state::ReadReply got = state::decode_read_reply(wait_for(*master, "state.reply"));
    EXPECT_EQ(got.id, 4u);
    EXPECT_TRUE(got.ok);
    EXPECT_EQ(got.value, json("Bob"));
    master->channel.send(
        state::encode_read(state::ReadRequest{state::ReadRequest::Kind::get, 5, "nobody"}));
    state::ReadReply absent = state::decode_read_reply(wait_for(*master, "state.reply"));
    EXPECT_TRUE(absent.ok);
    EXPECT_FALSE(absent.value.has_value());
    master->channel.send(
        state::encode_read(state::ReadRequest{state::ReadRequest::Kind::list, 6, "user:"}));
    state::ReadReply listed = state::decode_read_reply(wait_for(*master, "state.reply"));
    EXPECT_EQ(listed.entries, (state::Entries{{"user:1", "Ann"}, {"user:2", "Bob"}}));
    EXPECT_EQ(listed.version, 1u);
    master->channel.send(state::encode_write(state::WriteRequest{7, "other", std::nullopt}));
    EXPECT_EQ(state::decode_ack(wait_for(*master, "state.ack")), (state::Ack{7, true, "", 2}));
}

TEST_F(BrokerTest, MalformedMessagesAreAnsweredOrLoggedNeverFatal) {
    start_file();
    Peer& w = attach("web/0/100");
    wait_for(w, "state.snapshot");
    // With an id: answered with the reason.
    w.channel.send({{"type", "state.set"}, {"id", 5}, {"key", ""}, {"value", 1}});
    state::Ack a = state::decode_ack(wait_for(w, "state.ack"));
    EXPECT_EQ(a.id, 5u);
    EXPECT_FALSE(a.ok);
    EXPECT_EQ(a.error, "state.set: key: key is empty (\"\")");
    w.channel.send({{"type", "state.set"}, {"id", 6}, {"key", "k"}});
    EXPECT_EQ(state::decode_ack(wait_for(w, "state.ack")).error, "state.set: \"value\" is missing");
    master->channel.send({{"type", "state.get"}, {"id", 8}});
    state::ReadReply r = state::decode_read_reply(wait_for(*master, "state.reply"));
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error, "state.get: \"key\" is missing");
    // Without an id, unknown types, attach without a descriptor: logged and ignored.
    w.channel.send({{"type", "state.set"}, {"key", "k"}, {"value", 1}});
    w.channel.send({{"type", "no.such.thing"}});
    w.channel.send({{"no", "type"}});
    master->channel.send(state::encode_attach("web/9/9"));
    master->channel.send({{"type", "attach"}, {"worker", 42}});
    // Still serving.
    w.channel.send(state::encode_write(state::WriteRequest{10, "k", json(1)}));
    state::Ack ok = state::decode_ack(wait_for(w, "state.ack"));
    EXPECT_EQ(ok.id, 10u);
    EXPECT_TRUE(ok.ok);
    EXPECT_EQ(broker->workers(), 1u);
}

TEST_F(BrokerTest, WorkersThatLeaveAreForgottenAndTheMasterLeavingEndsTheBroker) {
    start_file();
    Peer& w = attach("web/0/100");
    wait_for(w, "state.snapshot");
    EXPECT_EQ(broker->workers(), 1u);
    w.channel.close();
    ASSERT_TRUE(run_until(loop, [&] { return broker->workers() == 0; }));
    master->channel.close();
    ASSERT_TRUE(run_until(loop, [&] { return loop.stopped(); }));
    EXPECT_EQ(broker->exit_code(), exit_master_gone);
}

TEST_F(BrokerTest, EndToEndWithTheWorkerReplica) {
    write_file(dir / "app.state.json", R"({"version": 1, "entries": {"flag": false}})");
    start_file();
    auto [ours, theirs] = socket_pair();
    std::vector<core::UniqueFd> fds;
    fds.push_back(std::move(theirs));
    master->channel.send(state::encode_attach("web/0/100"), std::move(fds));
    state::StateReplica replica(loop);
    replica.attach(std::move(ours));
    ASSERT_TRUE(replica.wait_for_snapshot(5s));
    auto state = replica.make_view("plugin /");
    EXPECT_EQ(state->get("flag"), json(false));
    std::vector<std::pair<std::string, json>> seen;
    state->watch("", [&](std::string_view key, const json* value) {
        seen.emplace_back(std::string(key), value ? *value : json("<erased>"));
    });

    // A plugin's write: acknowledged after its own copy has it.
    bool done = false;
    std::optional<json> read_in_callback;
    state->set("flag", true, [&](bool ok, const std::string& error) {
        EXPECT_TRUE(ok) << error;
        read_in_callback = state->get("flag");
        done = true;
    });
    ASSERT_TRUE(run_until(loop, [&] { return done; }));
    EXPECT_EQ(read_in_callback, json(true));
    EXPECT_EQ(state->version(), 2u);

    // An edit of the file by hand reaches the plugin's watch.
    write_file(dir / "app.state.json", R"({"version": 2, "entries": {"flag": true, "new": 1}})");
    ASSERT_TRUE(run_until(loop, [&] { return state->get("new").has_value(); }));
    EXPECT_EQ(seen.back(), (std::pair<std::string, json>{"new", 1}));
    EXPECT_EQ(state->version(), 3u);

    // A write the backend refuses reports why.
    write_file(dir / "app.state.json", "{broken");
    ASSERT_TRUE(run_until(loop, [&] { return !broker->backend().status().up; }));
    std::string refusal;
    state->erase("new", [&](bool ok, const std::string& error) {
        EXPECT_FALSE(ok);
        refusal = error;
    });
    ASSERT_TRUE(run_until(loop, [&] { return !refusal.empty(); }));
    EXPECT_NE(refusal.find("invalid JSON"), std::string::npos) << refusal;
    EXPECT_EQ(state->get("new"), json(1));
}

TEST_F(BrokerTest, NothingIsSentToWorkersBeforeTheBackendWasRead) {
    if (!RedisServer::available()) GTEST_SKIP() << "redis-server is not installed";
    StateConfig c;
    c.backend = StateConfig::Backend::redis;
    std::string socket = dir / "redis.sock";
    c.redis.url = "unix://" + socket;
    c.redis.parsed = parse_redis_url(c.redis.url);
    c.redis.poll_ms = 50;
    c.redis.reconnect_min_ms = 20;
    c.redis.reconnect_max_ms = 100;
    start(std::move(c));
    json hb = wait_for(*master, "heartbeat");
    EXPECT_EQ(hb["up"], false);
    EXPECT_EQ(hb["loaded"], false);
    EXPECT_TRUE(hb["down_since_ms"].is_number());
    Peer& w = attach("web/0/100");
    // A write while Redis is down fails at once, and says so.
    w.channel.send(state::encode_write(state::WriteRequest{1, "k", json(1)}));
    state::Ack refused = state::decode_ack(wait_for(w, "state.ack"));
    EXPECT_FALSE(refused.ok);
    EXPECT_NE(refused.error.find("is down"), std::string::npos) << refused.error;
    EXPECT_FALSE(w.has("state.snapshot"));
    master->channel.send(
        state::encode_read(state::ReadRequest{state::ReadRequest::Kind::get, 2, "k"}));
    state::ReadReply r = state::decode_read_reply(wait_for(*master, "state.reply"));
    EXPECT_FALSE(r.ok);
    EXPECT_NE(r.error.find("not been read"), std::string::npos) << r.error;

    RedisServer redis(dir.path());
    redis.cli({"HSET", "herd:data", "k", "\"from redis\""});
    EXPECT_EQ(state::decode_snapshot(wait_for(w, "state.snapshot")).entries,
              (state::Entries{{"k", "from redis"}}));
    // The master hears at once that the backend is up.
    ASSERT_TRUE(run_until(loop, [&] {
        auto h = master->take("heartbeat");
        return h && (*h)["up"] == true;
    }));
}

// broker_main in a real child process: the orphan rule and SIGTERM.
class BrokerProcessTest : public ::testing::Test {
  protected:
    pid_t spawn(core::UniqueFd& ours) {
        auto [a, b] = socket_pair();
        ours = std::move(a);
        BrokerSpec spec;
        spec.config = default_state_config(dir / "state.json");
        spec.channel = std::move(b);
        pid_t pid = fork();
        if (pid == 0) {
            ours.reset();  // the master's end stays with the master only (spawn_process does this)
            broker_main(std::move(spec));
        }
        return pid;
    }
    // Waits (bounded, on a pidfd: no polling loop) for the child to exit; its status.
    int wait_exit(pid_t pid) {
        int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
        EXPECT_GE(pidfd, 0);
        pollfd p{pidfd, POLLIN, 0};
        EXPECT_EQ(poll(&p, 1, 10000), 1) << "the broker did not exit";
        close(pidfd);
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) != pid) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
        return status;
    }
    TempDir dir;
    core::EventLoop loop;
};

TEST_F(BrokerProcessTest, ExitsWhenTheMasterGoes) {
    core::UniqueFd ours;
    pid_t pid = spawn(ours);
    Peer master(loop, std::move(ours), "broker process");
    ASSERT_TRUE(run_until(loop, [&] { return master.has("ready"); }));
    master.channel.close();
    int status = wait_exit(pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), exit_master_gone);
}

TEST_F(BrokerProcessTest, SigtermEndsItCleanly) {
    core::UniqueFd ours;
    pid_t pid = spawn(ours);
    Peer master(loop, std::move(ours), "broker process");
    ASSERT_TRUE(run_until(loop, [&] { return master.has("ready"); }));
    kill(pid, SIGTERM);
    int status = wait_exit(pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), exit_ok);
}

}  // namespace
}  // namespace herd::broker
