// Tests server/core/config: parsing and strict validation of the herd config, error paths.
// Here the valid configs, their defaults and normalisation, and load_config; the refusals are
// in config_errors_test, the key tables in config_keys_test.
#include "core/config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "config_test_helpers.hpp"

namespace herd::core {
namespace {

using namespace config_test;

TEST(ConfigTest, MinimalConfigGetsDefaults) {
    Config c = parse(base_config());
    EXPECT_EQ(c.file, "");
    EXPECT_EQ(c.dir, "/etc/herd");
    EXPECT_EQ(c.log_level, "info");
    ASSERT_EQ(c.apps.size(), 1u);
    const AppConfig& a = c.apps[0];
    AppConfig defaults;
    EXPECT_EQ(a.name, "web");
    EXPECT_EQ(a.listen.text, "127.0.0.1:8080");
    EXPECT_EQ(a.listen.family(), AF_INET);
    EXPECT_EQ(a.listen.port(), 8080);
    EXPECT_EQ(a.listen.length, sizeof(sockaddr_in));
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&a.listen.storage);
    EXPECT_EQ(ntohl(v4->sin_addr.s_addr), 0x7f000001u);
    EXPECT_EQ(a.workers, 1);
    EXPECT_EQ(a.balance, "shared");
    EXPECT_TRUE(a.env.empty());
    EXPECT_EQ(a.drain_timeout_ms, defaults.drain_timeout_ms);
    EXPECT_EQ(a.max_body_bytes, defaults.max_body_bytes);
    EXPECT_EQ(a.max_header_bytes, defaults.max_header_bytes);
    EXPECT_EQ(a.header_timeout_ms, defaults.header_timeout_ms);
    EXPECT_EQ(a.keepalive_timeout_ms, defaults.keepalive_timeout_ms);
    EXPECT_EQ(a.backlog, defaults.backlog);
    ASSERT_EQ(a.plugins.size(), 1u);
    EXPECT_EQ(a.plugins[0].mount, "/");
    EXPECT_EQ(a.plugins[0].path, "/opt/plugins/libhello.so");
    EXPECT_EQ(a.plugins[0].config, json::object());
}

TEST(ConfigTest, EveryFieldIsRead) {
    json j = base_config();
    j["log_level"] = "debug";
    json& app = j["apps"][0];
    app["workers"] = 7;
    app["balance"] = "shared";
    app["env"] = {{"REDIS_URL", "redis://x"}, {"EMPTY", ""}};
    app["drain_timeout_ms"] = 0;
    app["max_body_bytes"] = 123;
    app["max_header_bytes"] = 2048;
    app["header_timeout_ms"] = 11;
    app["keepalive_timeout_ms"] = 12;
    app["backlog"] = 13;
    app["plugins"][0]["mount"] = "/api";
    app["plugins"][0]["config"] = {{"greeting", "hi"}, {"n", 3}};
    app["access_log"] = "logs/access.log";
    j["log_file"] = "herd.log";
    j["metrics"] = "127.0.0.1:9100";
    Config c = parse(j);
    EXPECT_EQ(c.log_level, "debug");
    EXPECT_EQ(c.log_file, "/etc/herd/herd.log");
    EXPECT_EQ(c.metrics.text, "127.0.0.1:9100");
    EXPECT_EQ(c.metrics.port(), 9100);
    EXPECT_EQ(c.apps.at(0).access_log, "/etc/herd/logs/access.log");
    const AppConfig& a = c.apps.at(0);
    EXPECT_EQ(a.workers, 7);
    EXPECT_EQ(a.env.size(), 2u);
    EXPECT_EQ(a.env.at("REDIS_URL"), "redis://x");
    EXPECT_EQ(a.env.at("EMPTY"), "");
    EXPECT_EQ(a.drain_timeout_ms, 0);
    EXPECT_EQ(a.max_body_bytes, 123u);
    EXPECT_EQ(a.max_header_bytes, 2048u);
    EXPECT_EQ(a.header_timeout_ms, 11);
    EXPECT_EQ(a.keepalive_timeout_ms, 12);
    EXPECT_EQ(a.backlog, 13);
    EXPECT_EQ(a.plugins.at(0).mount, "/api");
    EXPECT_EQ(a.plugins.at(0).config, (json{{"greeting", "hi"}, {"n", 3}}));
}

TEST(ConfigTest, StartTimeoutDefaultsToTheWatchdogAndCanBeSet) {
    json j = base_config();
    j["apps"][0]["watchdog_ms"] = 700;
    EXPECT_EQ(parse(j).apps[0].start_timeout_ms, 700);
    j["apps"][0]["start_timeout_ms"] = 9000;
    EXPECT_EQ(parse(j).apps[0].start_timeout_ms, 9000);
    EXPECT_EQ(parse(j).apps[0].watchdog_ms, 700);
    j["apps"][0]["start_timeout_ms"] = 10;
    EXPECT_NE(error_of(j).find("apps[0].start_timeout_ms"), std::string::npos) << error_of(j);
}

TEST(ConfigTest, WorkersAutoIsCpuCount) {
    json j = base_config();
    j["apps"][0]["workers"] = "auto";
    int cpus = cpu_count();
    EXPECT_GE(cpus, 1);
    EXPECT_EQ(parse(j).apps.at(0).workers, cpus);
}

TEST(ConfigTest, CpuCountFollowsAffinity) {
    cpu_set_t set;
    ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
    EXPECT_EQ(cpu_count(), CPU_COUNT(&set));
}

TEST(ConfigTest, WorkersBoundsAreAccepted) {
    json j = base_config();
    j["apps"][0]["workers"] = 1024;
    EXPECT_EQ(parse(j).apps.at(0).workers, 1024);
    j["apps"][0]["workers"] = 1025;
    EXPECT_NE(error_of(j).find("apps[0].workers: expected a positive integer"), std::string::npos);
}

TEST(ConfigTest, RelativePluginPathResolvesAgainstBaseDir) {
    json j = base_config();
    j["apps"][0]["plugins"] = json::array({
        {{"path", "plugins/libhello.so"}, {"mount", "/"}},
        {{"path", "../lib/./libecho.so"}, {"mount", "/echo"}},
        {{"path", "/abs/libx.so"}, {"mount", "/x"}},
    });
    Config c = parse(j, "/etc/herd");
    const auto& p = c.apps.at(0).plugins;
    ASSERT_EQ(p.size(), 3u);
    EXPECT_EQ(p[0].path, "/etc/herd/plugins/libhello.so");
    EXPECT_EQ(p[1].path, "/etc/lib/libecho.so");
    EXPECT_EQ(p[2].path, "/abs/libx.so");
}

TEST(ConfigTest, RelativePluginPathStaysRelativeWithoutBaseDir) {
    json j = base_config();
    j["apps"][0]["plugins"][0]["path"] = "./plugins/libhello.so";
    EXPECT_EQ(parse(j, "").apps.at(0).plugins.at(0).path, "plugins/libhello.so");
}

TEST(ConfigTest, MountTrailingSlashIsRemoved) {
    json j = base_config();
    j["apps"][0]["plugins"] = json::array({
        {{"path", "a.so"}, {"mount", "/api/"}},
        {{"path", "b.so"}, {"mount", "/"}},
    });
    Config c = parse(j);
    EXPECT_EQ(c.apps.at(0).plugins.at(0).mount, "/api");
    EXPECT_EQ(c.apps.at(0).plugins.at(1).mount, "/");
}

TEST(ConfigTest, MountWithSeveralTrailingSlashesIsNormalised) {
    json j = base_config();
    j["apps"][0]["plugins"][0]["mount"] = "/api//";
    EXPECT_EQ(parse(j).apps.at(0).plugins.at(0).mount, "/api");
}

TEST(ConfigTest, SeveralAppsKeepTheirOrder) {
    json j = base_config();
    json second = j["apps"][0];
    second["name"] = "admin";
    second["listen"] = "[::1]:9090";
    j["apps"].push_back(second);
    Config c = parse(j);
    ASSERT_EQ(c.apps.size(), 2u);
    EXPECT_EQ(c.apps[0].name, "web");
    EXPECT_EQ(c.apps[1].name, "admin");
    EXPECT_EQ(c.apps[1].listen.family(), AF_INET6);
    EXPECT_EQ(c.apps[1].listen.port(), 9090);
}

TEST(ConfigTest, ListenWildcardAndPortZero) {
    json j = base_config();
    j["apps"][0]["listen"] = "*:0";
    Config c = parse(j);
    EXPECT_EQ(c.apps[0].listen.family(), AF_INET);
    EXPECT_EQ(c.apps[0].listen.port(), 0);
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&c.apps[0].listen.storage);
    EXPECT_EQ(v4->sin_addr.s_addr, htonl(INADDR_ANY));
}

TEST(ConfigTest, TwoAppsOnPortZeroAreNotDuplicates) {
    json j = base_config();
    j["apps"][0]["listen"] = "127.0.0.1:0";
    json second = j["apps"][0];
    second["name"] = "other";
    j["apps"].push_back(second);
    EXPECT_EQ(parse(j).apps.size(), 2u);
}

TEST(ConfigTest, UserGroupAllowRoot) {
    json j = base_config();
    j["user"] = "www-data";
    j["group"] = "www-data";
    Config c = parse(j);
    EXPECT_EQ(c.user, "www-data");
    EXPECT_EQ(c.group, "www-data");
    EXPECT_FALSE(c.allow_root);
    j = base_config();
    j["allow_root"] = true;
    EXPECT_TRUE(parse(j).allow_root);
    j = base_config();
    j["group"] = "staff";
    EXPECT_NE(error_of(j).find("group: needs \"user\" as well"), std::string::npos);
    j = base_config();
    j["allow_root"] = "yes";
    EXPECT_NE(error_of(j).find("allow_root: expected true or false"), std::string::npos);
    j = base_config();
    j["user"] = "";
    EXPECT_NE(error_of(j).find("user: must not be empty"), std::string::npos);
}

TEST(ConfigTest, EveryBalanceModeIsAccepted) {
    for (const char* mode : {"shared", "reuseport", "round-robin", "least-conn"}) {
        json j = base_config();
        j["apps"][0]["balance"] = mode;
        EXPECT_EQ(parse_config(j, "/srv").apps[0].balance, mode);
    }
}

// ---- load_config ----

class LoadConfigTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/herd_config_test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::filesystem::path dir_;
};

TEST_F(LoadConfigTest, MissingFileSaysWhichAndWhy) {
    std::string file = (dir_ / "nope.json").string();
    try {
        load_config(file);
        FAIL() << "expected a ConfigError";
    } catch (const ConfigError& e) {
        std::string m = e.what();
        EXPECT_NE(m.find("cannot read config file " + file), std::string::npos) << m;
        EXPECT_NE(m.find("No such file or directory"), std::string::npos) << m;
    }
}

TEST_F(LoadConfigTest, LoadsFileAndResolvesAgainstItsFolder) {
    std::filesystem::create_directory(dir_ / "etc");
    std::filesystem::path file = dir_ / "etc" / "herd.json";
    json j = base_config();
    j["apps"][0]["plugins"][0]["path"] = "lib/libhello.so";
    std::ofstream(file) << j.dump();
    Config c = load_config(file.string());
    EXPECT_EQ(c.file, file.string());
    EXPECT_EQ(c.dir, (dir_ / "etc").string());
    EXPECT_EQ(c.apps.at(0).plugins.at(0).path, (dir_ / "etc" / "lib" / "libhello.so").string());
}

TEST_F(LoadConfigTest, RelativeFileNameBecomesAbsolute) {
    std::ofstream(dir_ / "herd.json") << base_config().dump();
    struct Cwd {
        std::filesystem::path old = std::filesystem::current_path();
        ~Cwd() { std::filesystem::current_path(old); }
    } restore;
    std::filesystem::current_path(dir_);
    Config c = load_config("./sub/../herd.json");
    EXPECT_EQ(c.file, (dir_ / "herd.json").string());
    EXPECT_EQ(c.dir, dir_.string());
}

TEST_F(LoadConfigTest, ErrorsNameTheFile) {
    std::filesystem::path file = dir_ / "bad.json";
    std::ofstream(file) << "{\"apps\": [],\n}";
    try {
        load_config(file.string());
        FAIL() << "expected a ConfigError";
    } catch (const ConfigError& e) {
        std::string m = e.what();
        EXPECT_EQ(m.rfind(file.string() + ": invalid JSON", 0), 0u) << m;
        EXPECT_NE(m.find("line 2"), std::string::npos) << m;
    }
    std::ofstream(file, std::ios::trunc) << "{\"apps\": []}";
    try {
        load_config(file.string());
        FAIL() << "expected a ConfigError";
    } catch (const ConfigError& e) {
        EXPECT_EQ(std::string(e.what()),
                  file.string() + ": apps: expected a non-empty array, got []");
    }
}

}  // namespace
}  // namespace herd::core

TEST(ConfigTest, ControlSocketDefaultsBesideTheConfigFile) {
    char dir[] = "/tmp/herd-config-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    std::string file = std::string(dir) + "/site.json";
    {
        std::ofstream out(file);
        out << R"({"apps":[{"name":"web","listen":"127.0.0.1:0","plugins":[{"path":"p.so"}]}]})";
    }
    EXPECT_EQ(herd::core::load_config(file).control_path, std::string(dir) + "/site.sock");
    {
        std::ofstream out(file);
        out << R"({"control":"run/ctl.sock","apps":[{"name":"web","listen":"127.0.0.1:0","plugins":[{"path":"p.so"}]}]})";
    }
    EXPECT_EQ(herd::core::load_config(file).control_path, std::string(dir) + "/run/ctl.sock");
    std::remove(file.c_str());
    rmdir(dir);
}
