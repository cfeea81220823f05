// Tests state/state_store: commit, deltas, snapshots, diff, replica gap detection, limits.
#include "state/state_store.hpp"

#include <gtest/gtest.h>

namespace herd::state {
namespace {

TEST(StateStore, SetAndEraseProduceDeltasWithConsecutiveVersions) {
    StateStore s;
    EXPECT_EQ(s.version(), 0u);
    Delta d1 = s.set("a", 1);
    EXPECT_EQ(d1.base, 0u);
    EXPECT_EQ(d1.version, 1u);
    ASSERT_EQ(d1.changes.size(), 1u);
    EXPECT_EQ(d1.changes[0], (Change{"a", json(1)}));
    Delta d2 = s.erase("a");
    EXPECT_EQ(d2.base, 1u);
    EXPECT_EQ(d2.version, 2u);
    EXPECT_TRUE(d2.changes[0].erased());
    EXPECT_EQ(s.find("a"), nullptr);
    EXPECT_EQ(s.version(), 2u);
}

TEST(StateStore, CommitRejectsAnOlderVersionAndAcceptsTheSame) {
    StateStore s;
    s.commit({{"a", json(1)}}, 10);
    EXPECT_THROW(s.commit({{"a", json(2)}}, 9), std::invalid_argument);
    EXPECT_EQ(*s.find("a"), 1);
    // A writer that bypassed the version counter: same version, new content.
    Delta d = s.commit({{"a", json(3)}}, 10);
    EXPECT_EQ(d.base, 10u);
    EXPECT_EQ(d.version, 10u);
    EXPECT_EQ(*s.find("a"), 3);
}

TEST(StateStore, ListByPrefix) {
    StateStore s;
    s.set("user:1", "a");
    s.set("user:2", "b");
    s.set("users", "c");
    s.set("u", "d");
    s.set("zeta", "e");
    Entries l = s.list("user:");
    ASSERT_EQ(l.size(), 2u);
    EXPECT_EQ(l.begin()->first, "user:1");
    EXPECT_EQ(s.list("").size(), 5u);
    EXPECT_TRUE(s.list("nothing").empty());
}

TEST(Diff, ReportsAddedChangedAndRemovedKeysInOrder) {
    Entries from = {{"a", 1}, {"b", 2}, {"c", 3}};
    Entries to = {{"b", 2}, {"c", 30}, {"d", 4}};
    std::vector<Change> changes = diff(from, to);
    ASSERT_EQ(changes.size(), 3u);
    EXPECT_EQ(changes[0], (Change{"a", std::nullopt}));
    EXPECT_EQ(changes[1], (Change{"c", json(30)}));
    EXPECT_EQ(changes[2], (Change{"d", json(4)}));
    EXPECT_TRUE(diff(to, to).empty());
    EXPECT_EQ(diff({}, to).size(), 3u);
}

TEST(Diff, AppliedToTheOldStateGivesTheNewOne) {
    Entries from = {{"a", 1}, {"b", {{"x", 1}}}, {"k", nullptr}};
    Entries to = {{"b", {{"x", 2}}}, {"k", false}, {"z", "new"}};
    StateStore s;
    s.reset(Snapshot{5, from});
    s.commit(diff(from, to), 6);
    EXPECT_EQ(s.entries(), to);
}

TEST(Replica, AppliesDeltasOnlyOnTopOfItsVersion) {
    StateStore broker;
    Replica r;
    Delta early = broker.set("a", 1);
    EXPECT_EQ(r.apply(early), Replica::Result::unsynced);  // before the first snapshot
    auto changes = r.apply(broker.snapshot());
    EXPECT_EQ(changes.size(), 1u);
    EXPECT_TRUE(r.synced());
    EXPECT_EQ(r.version(), 1u);

    Delta d2 = broker.set("b", 2);
    Delta d3 = broker.set("c", 3);
    Delta d4 = broker.erase("a");
    EXPECT_EQ(r.apply(d2), Replica::Result::applied);
    EXPECT_EQ(r.apply(d2), Replica::Result::stale);  // duplicate
    EXPECT_EQ(r.apply(d4), Replica::Result::gap);    // d3 missing
    EXPECT_EQ(r.version(), 2u);
    EXPECT_EQ(r.find("c"), nullptr);
    EXPECT_EQ(r.apply(d3), Replica::Result::applied);
    EXPECT_EQ(r.apply(d4), Replica::Result::applied);
    EXPECT_EQ(r.store().entries(), broker.entries());
    EXPECT_EQ(r.version(), broker.version());
}

TEST(Replica, ASnapshotReplacesEverythingAndReportsTheDifferences) {
    Replica r;
    r.apply(Snapshot{10, {{"a", 1}, {"b", 2}}});
    auto changes = r.apply(Snapshot{3, {{"b", 2}, {"c", 3}}});  // the backend lost data
    EXPECT_EQ(r.version(), 3u);
    ASSERT_EQ(changes.size(), 2u);
    EXPECT_EQ(changes[0], (Change{"a", std::nullopt}));
    EXPECT_EQ(changes[1], (Change{"c", json(3)}));
}

TEST(Limits, Keys) {
    EXPECT_EQ(key_error("user:42"), "");
    EXPECT_EQ(key_error("clé/ü/日本"), "");
    EXPECT_NE(key_error(""), "");
    EXPECT_NE(key_error(std::string(max_key_bytes + 1, 'k')), "");
    EXPECT_EQ(key_error(std::string(max_key_bytes, 'k')), "");
    EXPECT_NE(key_error("a\nb").find("control character (byte 0x0a at offset 1)"),
              std::string::npos);
    EXPECT_NE(key_error(std::string("a\0b", 3)), "");
    EXPECT_NE(key_error("\x7f"), "");
    EXPECT_NE(key_error("\xff").find("UTF-8"), std::string::npos);
    EXPECT_NE(key_error("\xc0\xaf"), "");          // overlong '/'
    EXPECT_NE(key_error("\xed\xa0\x80"), "");      // surrogate
    EXPECT_NE(key_error("\xf4\x90\x80\x80"), "");  // above U+10FFFF
    EXPECT_NE(key_error("\xe2\x82"), "");          // truncated
}

TEST(Limits, Values) {
    EXPECT_EQ(value_error(json::parse(R"({"a": [1, 2.5, "x", null, true]})")), "");
    json deep = json::array();
    for (int i = 0; i < max_value_depth + 5; ++i) deep = json::array({deep});
    EXPECT_NE(value_error(deep).find("nested"), std::string::npos);
    json ok_deep = 1;
    for (int i = 0; i < max_value_depth; ++i) ok_deep = json::array({ok_deep});
    EXPECT_EQ(value_error(ok_deep), "");
    EXPECT_NE(value_error(std::string(max_value_bytes, 'x')).find("bytes"), std::string::npos);
    EXPECT_NE(value_error(json(std::nan(""))).find("finite"), std::string::npos);
    EXPECT_NE(value_error(json("\xff\xfe")), "");  // not UTF-8: cannot be serialized
    EXPECT_NE(value_error(json::binary({1, 2, 3})), "");
    std::size_t size = 0;
    EXPECT_EQ(value_error(json{{"k", "v"}}, &size), "");
    EXPECT_EQ(size, std::string(R"({"k":"v"})").size());
}

TEST(Limits, DepthIsComputedWithoutRecursion) {
    // Built in place (no recursive copies); nlohmann's destructor is iterative.
    json deep = json::array();
    json* inner = &deep;
    for (int i = 0; i < 100000; ++i) {
        inner->push_back(json::array());
        inner = &inner->back();
    }
    EXPECT_GT(json_depth(deep), max_value_depth);
    EXPECT_NE(value_error(deep), "");
}

}  // namespace
}  // namespace herd::state
