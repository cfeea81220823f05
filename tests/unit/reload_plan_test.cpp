// Tests the reload plan: which apps a reload adds, changes (and why), leaves alone or removes,
// and what it refuses, from configs and injected plugin-file identities.
#include "master/reload_plan.hpp"

#include <gtest/gtest.h>

#include <map>

using herd::core::Config;
using herd::core::parse_config_text;
using herd::master::AppChange;
using herd::master::plan_reload;
using herd::master::ReloadPlan;
using herd::master::RunningApp;

namespace {

Config parse(const std::string& apps) {
    return parse_config_text(R"({"apps": [)" + apps + "]}", "test.json", "/srv");
}

const char* web = R"({"name": "web", "listen": "127.0.0.1:8080", "workers": 2,
                      "plugins": [{"mount": "/", "path": "hello.so"}]})";
const char* api = R"({"name": "api", "listen": "127.0.0.1:8081", "balance": "round-robin",
                      "plugins": [{"mount": "/", "path": "api.so"}]})";

std::vector<RunningApp> running(const Config& c) {
    std::vector<RunningApp> out;
    for (const auto& app : c.apps) out.push_back({app, "stamp-" + app.name, false});
    return out;
}

// Plugin files as they were when the apps started, unless `changed` says otherwise.
ReloadPlan plan(const std::vector<RunningApp>& now, const Config& next,
                std::map<std::string, std::string> changed = {}) {
    return plan_reload(std::span<const RunningApp>(now), next, [&](const herd::core::AppConfig& a) {
        auto it = changed.find(a.name);
        return it != changed.end() ? it->second : "stamp-" + a.name;
    });
}

AppChange::Kind kind_of(const ReloadPlan& p, const std::string& name) {
    for (const auto& a : p.apps)
        if (a.name == name) return a.kind;
    ADD_FAILURE() << "no plan entry for " << name;
    return AppChange::Kind::unchanged;
}

}  // namespace

TEST(ReloadPlanTest, TheSameConfigChangesNothing) {
    Config c = parse(std::string(web) + "," + api);
    ReloadPlan p = plan(running(c), c);
    EXPECT_FALSE(p.any_change());
    EXPECT_TRUE(p.errors.empty());
    ASSERT_EQ(p.apps.size(), 2u);
}

TEST(ReloadPlanTest, AChangedSettingChangesOnlyThatAppAndSaysWhat) {
    Config before = parse(std::string(web) + "," + api);
    Config after = parse(
        R"({"name": "web", "listen": "127.0.0.1:8080", "workers": 3,
            "env": {"GREETING": "hi"}, "plugins": [{"mount": "/", "path": "hello.so"}]},)" +
        std::string(api));
    ReloadPlan p = plan(running(before), after);
    EXPECT_EQ(kind_of(p, "web"), AppChange::Kind::changed);
    EXPECT_EQ(kind_of(p, "api"), AppChange::Kind::unchanged);
    EXPECT_EQ(p.apps[0].why, "workers, env changed");
    EXPECT_FALSE(p.apps[0].new_listen);
}

TEST(ReloadPlanTest, ANewPluginBuildOnDiskChangesTheApp) {
    Config c = parse(std::string(web) + "," + api);
    ReloadPlan p = plan(running(c), c, {{"api", "another inode"}});
    EXPECT_EQ(kind_of(p, "web"), AppChange::Kind::unchanged);
    EXPECT_EQ(kind_of(p, "api"), AppChange::Kind::changed);
    EXPECT_EQ(p.apps[1].why, "plugin file changed on disk");
}

TEST(ReloadPlanTest, AFailedAppIsTriedAgain) {
    Config c = parse(web);
    auto now = running(c);
    now[0].failed = true;
    ReloadPlan p = plan(now, c);
    EXPECT_EQ(kind_of(p, "web"), AppChange::Kind::changed);
}

TEST(ReloadPlanTest, AppsAreAddedAndRemovedByName) {
    ReloadPlan p = plan(running(parse(web)), parse(api));
    EXPECT_EQ(kind_of(p, "api"), AppChange::Kind::added);
    EXPECT_TRUE(p.apps[0].new_listen);
    EXPECT_EQ(kind_of(p, "web"), AppChange::Kind::removed);
    EXPECT_TRUE(p.any_change());
}

TEST(ReloadPlanTest, ANewListenAddressIsBoundAnew) {
    Config after = parse(R"({"name": "web", "listen": "127.0.0.1:9090", "workers": 2,
                             "plugins": [{"mount": "/", "path": "hello.so"}]})");
    ReloadPlan p = plan(running(parse(web)), after);
    EXPECT_EQ(kind_of(p, "web"), AppChange::Kind::changed);
    EXPECT_TRUE(p.apps[0].new_listen);
    EXPECT_EQ(p.apps[0].why, "listen changed");
}

TEST(ReloadPlanTest, BalanceCannotChangeOnTheSameAddress) {
    Config after = parse(R"({"name": "web", "listen": "127.0.0.1:8080", "workers": 2,
                             "balance": "reuseport",
                             "plugins": [{"mount": "/", "path": "hello.so"}]})");
    ReloadPlan p = plan(running(parse(web)), after);
    ASSERT_EQ(p.errors.size(), 1u);
    EXPECT_NE(p.errors[0].find("balance cannot change from \"shared\" to \"reuseport\""),
              std::string::npos)
        << p.errors[0];
}

TEST(ReloadPlanTest, BalanceCanChangeWithANewAddress) {
    Config after = parse(R"({"name": "web", "listen": "127.0.0.1:9090", "workers": 2,
                             "balance": "reuseport",
                             "plugins": [{"mount": "/", "path": "hello.so"}]})");
    ReloadPlan p = plan(running(parse(web)), after);
    EXPECT_TRUE(p.errors.empty());
    EXPECT_EQ(p.apps[0].why, "listen, balance changed");
}

TEST(ReloadPlanTest, ABacklogChangeOnTheSameAddressIsNotedAsLater) {
    Config after = parse(R"({"name": "web", "listen": "127.0.0.1:8080", "workers": 2,
                             "backlog": 64, "plugins": [{"mount": "/", "path": "hello.so"}]})");
    ReloadPlan p = plan(running(parse(web)), after);
    EXPECT_EQ(kind_of(p, "web"), AppChange::Kind::changed);
    ASSERT_EQ(p.notes.size(), 1u);
    EXPECT_NE(p.notes[0].find("backlog"), std::string::npos);
}

TEST(ReloadPlanTest, EveryAppKeyIsNamedWhenItAloneChanges) {
    using herd::core::AppConfig;
    const AppConfig a = parse(web).apps[0];
    int keys = 0;
    for (const herd::core::AppKey& k : herd::core::app_keys()) {
        AppConfig b = a;
        std::string name = k.name;
        if (k.int_member)
            b.*k.int_member = static_cast<int>(a.*k.int_member == k.max ? k.min : k.max);
        else if (k.size_member)
            b.*k.size_member =
                static_cast<std::size_t>(a.*k.size_member == std::size_t(k.max) ? k.min : k.max);
        else if (k.u64_member)
            b.*k.u64_member =
                static_cast<std::uint64_t>(a.*k.u64_member == std::uint64_t(k.max) ? k.min : k.max);
        else if (name == "name")
            b.name = "other";
        else if (name == "listen")
            b.listen = parse(api).apps[0].listen;
        else if (name == "workers")
            b.workers = a.workers + 1;
        else if (name == "balance")
            b.balance = "least-conn";
        else if (name == "plugins")
            b.plugins[0].config = {{"greeting", "hi"}};
        else if (name == "env")
            b.env["X"] = "1";
        else if (name == "access_log")
            b.access_log = "/var/log/web.log";
        else
            ADD_FAILURE() << "no change written for key " << name << ": add one here";
        EXPECT_FALSE(a == b) << name;
        EXPECT_EQ(herd::master::changed_keys(a, b), name);
        ++keys;
    }
    EXPECT_EQ(keys, 25);
}
