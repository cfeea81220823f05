// Tests server/state/state_replica: the worker's copy, driven by a fake broker (the test's
// end of a real socketpair): snapshot, deltas, gaps, watches, writes and their acks, a lost
// or replaced broker, plugin views going away, throwing callbacks, malformed messages.
#include "state/state_replica.hpp"

#include <sys/socket.h>

#include <deque>

#include <gtest/gtest.h>

#include "state/codec.hpp"
#include "test_util.hpp"

namespace herd::state {
namespace {

using namespace broker::test;

class StateReplicaTest : public ::testing::Test {
  protected:
    StateReplicaTest()
        : replica(loop, [this](const std::string& e) { callback_errors.push_back(e); }) {
        connect();
    }
    // A new fake broker; the replica gets the other end.
    void connect() {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            throw std::runtime_error("socketpair");
        received.clear();
        fake = std::make_unique<core::Channel>(loop, core::UniqueFd(sv[0]), "worker");
        fake->start([this](core::Message&& m) { received.push_back(std::move(m.body)); },
                    [](const std::string&) {});
        replica.attach(core::UniqueFd(sv[1]));
    }
    json wait_for(const std::string& type) {
        json found;
        EXPECT_TRUE(run_until(loop,
                              [&] {
                                  for (auto it = received.begin(); it != received.end(); ++it)
                                      if ((*it)["type"] == type) {
                                          found = *it;
                                          received.erase(it);
                                          return true;
                                      }
                                  return false;
                              }))
            << "no " << type;
        return found;
    }
    void send_snapshot(std::uint64_t version, Entries entries) {
        fake->send(encode_snapshot(Snapshot{version, std::move(entries)}));
    }
    void sync(std::uint64_t version, Entries entries) {
        send_snapshot(version, std::move(entries));
        ASSERT_TRUE(
            run_until(loop, [&] { return replica.version() == version && replica.synced(); }));
    }

    core::EventLoop loop;
    std::vector<std::string> callback_errors;
    StateReplica replica;
    std::unique_ptr<core::Channel> fake;
    std::deque<json> received;
};

TEST_F(StateReplicaTest, WaitsForTheFirstSnapshotAndReadsLocally) {
    auto state = replica.make_view("plugin /");
    EXPECT_FALSE(state->synced());
    EXPECT_EQ(state->version(), 0u);
    EXPECT_FALSE(replica.wait_for_snapshot(50ms));  // nothing yet: times out
    send_snapshot(4, {{"a", 1}, {"b", {{"c", "d"}}}});
    EXPECT_TRUE(replica.wait_for_snapshot(5s));
    EXPECT_TRUE(state->synced());
    EXPECT_EQ(state->version(), 4u);
    EXPECT_EQ(state->get("a"), json(1));
    EXPECT_EQ(*state->find("b"), json({{"c", "d"}}));
    EXPECT_EQ(state->get("missing"), std::nullopt);
    EXPECT_EQ(state->find("missing"), nullptr);
}

TEST_F(StateReplicaTest, WaitOutlivesABrokerThatDiesAndTakesItsSuccessorsSnapshot) {
    // The broker dies while a new worker waits (its end closes); the master then attaches the
    // restarted broker's channel. The wait goes on until that snapshot, not only until the close.
    bool attached = false;
    loop.defer([&] {
        fake.reset();
        loop.add_timer(20ms, [&] {
            connect();
            attached = true;
            send_snapshot(9, {{"a", 2}});
        });
    });
    EXPECT_TRUE(replica.wait_for_snapshot(5s));
    EXPECT_TRUE(attached);
    EXPECT_EQ(replica.version(), 9u);
}

TEST_F(StateReplicaTest, DeltasRunWatchesByPrefixAfterTheWholeDelta) {
    sync(1, {{"user:1", "Ann"}});
    auto state = replica.make_view("plugin /");
    std::vector<std::string> calls;
    state->watch("user:", [&](std::string_view key, const json* value) {
        // The whole delta is applied before any callback: both keys are visible.
        calls.push_back(std::string(key) + "=" + (value ? value->dump() : "erased") +
                        " other=" + (state->find("user:2") ? "yes" : "no"));
    });
    int all = 0;
    state->watch("", [&](std::string_view, const json*) { ++all; });
    fake->send(encode_delta(
        Delta{1, 2, {{"user:1", std::nullopt}, {"user:2", json("Bob")}, {"x", json(1)}}}));
    ASSERT_TRUE(run_until(loop, [&] { return replica.version() == 2; }));
    EXPECT_EQ(calls,
              (std::vector<std::string>{"user:1=erased other=yes", "user:2=\"Bob\" other=yes"}));
    EXPECT_EQ(all, 3);
}

TEST_F(StateReplicaTest, AGapAsksForASnapshotWhoseDifferencesAreReported) {
    sync(1, {{"a", 1}, {"b", 2}});
    auto state = replica.make_view("plugin /");
    std::vector<std::string> keys;
    state->watch("", [&](std::string_view key, const json*) { keys.emplace_back(key); });
    fake->send(encode_delta(Delta{5, 6, {{"a", json(9)}}}));  // 2..5 missing
    wait_for("state.resync");
    EXPECT_EQ(replica.gaps(), 1u);
    EXPECT_EQ(state->get("a"), json(1));  // not applied out of order
    // Stale and duplicate deltas are ignored quietly.
    fake->send(encode_delta(Delta{0, 1, {{"a", json(0)}}}));
    send_snapshot(6, {{"a", 9}, {"c", 3}});
    ASSERT_TRUE(run_until(loop, [&] { return replica.version() == 6; }));
    EXPECT_EQ(keys, (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(state->get("b"), std::nullopt);
}

TEST_F(StateReplicaTest, WritesAreSentWithIdsAndAcksRouted) {
    sync(1, {});
    auto state = replica.make_view("plugin /api");
    std::vector<std::string> results;
    state->set("k", json{{"v", 1}}, [&](bool ok, const std::string& e) {
        results.push_back(std::string("set ") + (ok ? "ok" : e));
    });
    state->erase("k", [&](bool ok, const std::string& e) {
        results.push_back(std::string("erase ") + (ok ? "ok" : e));
    });
    state->set("quiet", 1);  // no callback
    EXPECT_TRUE(results.empty());
    json set = wait_for("state.set");
    json erase = wait_for("state.erase");
    wait_for("state.set");
    EXPECT_EQ(set["key"], "k");
    EXPECT_EQ(set["value"], json({{"v", 1}}));
    EXPECT_NE(set["id"], erase["id"]);
    EXPECT_EQ(replica.pending_writes(), 3u);
    // Acks in any order, each to its own callback.
    fake->send(encode_ack(Ack{erase["id"], false, "Redis is down", 0}));
    fake->send(encode_ack(Ack{set["id"], true, "", 2}));
    fake->send(encode_ack(Ack{999, true, "", 2}));  // unknown: logged
    ASSERT_TRUE(run_until(loop, [&] { return results.size() == 2; }));
    EXPECT_EQ(results, (std::vector<std::string>{"erase Redis is down", "set ok"}));
    EXPECT_EQ(replica.pending_writes(), 1u);
}

TEST_F(StateReplicaTest, InvalidWritesFailWithoutBeingSent) {
    sync(1, {});
    auto state = replica.make_view("plugin /");
    std::vector<std::string> errors;
    auto collect = [&](bool ok, const std::string& e) {
        EXPECT_FALSE(ok);
        errors.push_back(e);
    };
    state->set("", 1, collect);
    state->set("k\n", 1, collect);
    json deep = 1;
    for (int i = 0; i < 200; ++i) deep = json::array({deep});
    state->set("deep", deep, collect);
    state->set("nan", std::nan(""), collect);
    state->set("bytes", "\xff", collect);
    EXPECT_TRUE(errors.empty());  // never inside set()
    ASSERT_TRUE(run_until(loop, [&] { return errors.size() == 5; }));
    EXPECT_NE(errors[0].find("key is empty"), std::string::npos);
    EXPECT_NE(errors[1].find("control character"), std::string::npos);
    EXPECT_NE(errors[2].find("nested"), std::string::npos);
    EXPECT_NE(errors[3].find("finite"), std::string::npos);
    EXPECT_NE(errors[4].find("UTF-8"), std::string::npos) << errors[4];
    loop.run_once(0);  // anything sent would be readable already
    EXPECT_TRUE(received.empty());
}

TEST_F(StateReplicaTest, ALostBrokerFailsPendingWritesAndKeepsTheState) {
    sync(3, {{"a", 1}});
    auto state = replica.make_view("plugin /");
    std::string error;
    state->set("b", 2, [&](bool ok, const std::string& e) {
        EXPECT_FALSE(ok);
        error = e;
    });
    wait_for("state.set");
    fake.reset();  // the broker dies
    ASSERT_TRUE(run_until(loop, [&] { return !error.empty(); }));
    EXPECT_NE(error.find("may or may not have been applied"), std::string::npos) << error;
    EXPECT_FALSE(replica.connected());
    EXPECT_EQ(state->get("a"), json(1));  // still served
    std::string refused;
    state->set("c", 3, [&](bool, const std::string& e) { refused = e; });
    ASSERT_TRUE(run_until(loop, [&] { return !refused.empty(); }));
    EXPECT_NE(refused.find("not connected to the state broker"), std::string::npos);

    // The master passes a new broker's channel: fresh snapshot, differences reported.
    std::vector<std::string> keys;
    state->watch("", [&](std::string_view key, const json*) { keys.emplace_back(key); });
    connect();
    sync(4, {{"a", 1}, {"b", 2}});
    EXPECT_EQ(keys, (std::vector<std::string>{"b"}));
    EXPECT_TRUE(replica.connected());
}

TEST_F(StateReplicaTest, AViewThatGoesAwayTakesItsWatchesAndCallbacks) {
    sync(1, {});
    auto keep = replica.make_view("plugin /keep");
    auto gone = replica.make_view("plugin /gone");
    int kept_calls = 0, gone_calls = 0;
    keep->watch("", [&](std::string_view, const json*) { ++kept_calls; });
    gone->watch("", [&](std::string_view, const json*) { ++gone_calls; });
    bool gone_done = false;
    gone->set("k", 1, [&](bool, const std::string&) { gone_done = true; });
    json set = wait_for("state.set");
    gone.reset();
    fake->send(encode_delta(Delta{1, 2, {{"k", json(1)}}}));
    fake->send(encode_ack(Ack{set["id"], true, "", 2}));
    ASSERT_TRUE(run_until(loop, [&] { return replica.pending_writes() == 0; }));
    EXPECT_EQ(kept_calls, 1);
    EXPECT_EQ(gone_calls, 0);
    EXPECT_FALSE(gone_done);
}

TEST_F(StateReplicaTest, WatchesMayChangeInsideCallbacks) {
    sync(1, {});
    auto state = replica.make_view("plugin /");
    int first = 0, second = 0;
    herd::State::WatchId self = 0;
    self = state->watch("", [&](std::string_view, const json*) {
        ++first;
        state->unwatch(self);  // only once
        state->watch("", [&](std::string_view, const json*) { ++second; });
    });
    fake->send(encode_delta(Delta{1, 2, {{"a", json(1)}}}));
    fake->send(encode_delta(Delta{2, 3, {{"b", json(1)}}}));
    ASSERT_TRUE(run_until(loop, [&] { return replica.version() == 3; }));
    EXPECT_EQ(first, 1);
    EXPECT_EQ(second, 1);
}

TEST_F(StateReplicaTest, ThrowingCallbacksAreReportedAsPluginFailures) {
    sync(1, {});
    auto state = replica.make_view("plugin /bad");
    state->watch("", [](std::string_view, const json*) { throw std::runtime_error("boom"); });
    int later = 0;
    state->watch("", [&](std::string_view, const json*) { ++later; });
    fake->send(encode_delta(Delta{1, 2, {{"a", json(1)}}}));
    ASSERT_TRUE(run_until(loop, [&] { return !callback_errors.empty(); }));
    EXPECT_NE(callback_errors[0].find("plugin /bad"), std::string::npos) << callback_errors[0];
    EXPECT_NE(callback_errors[0].find("boom"), std::string::npos);
    EXPECT_NE(callback_errors[0].find("\"a\""), std::string::npos);
    EXPECT_EQ(later, 1);  // the others still run
    state->set("k", 1, [](bool, const std::string&) { throw std::logic_error("ack boom"); });
    json set = wait_for("state.set");
    fake->send(encode_ack(Ack{set["id"], true, "", 3}));
    ASSERT_TRUE(run_until(loop, [&] { return callback_errors.size() == 2; }));
    EXPECT_NE(callback_errors[1].find("ack boom"), std::string::npos);
}

TEST_F(StateReplicaTest, MalformedMessagesAreLoggedAndAGapIsAssumed) {
    sync(1, {{"a", 1}});
    fake->send(
        {{"type", "state.delta"}, {"base", 1}, {"version", "two"}, {"changes", json::array()}});
    wait_for("state.resync");
    fake->send({{"type", "state.ack"}, {"id", "x"}});
    fake->send({{"type", "who.knows"}});
    fake->send({{"no", "type"}});
    send_snapshot(2, {{"a", 2}});
    ASSERT_TRUE(run_until(loop, [&] { return replica.version() == 2; }));
    EXPECT_EQ(replica.replica().find("a")->get<int>(), 2);
}

}  // namespace
}  // namespace herd::state
