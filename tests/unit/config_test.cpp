// Tests server/core/config: parsing and strict validation of the herd config, error paths.
#include "core/config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>

namespace herd::core {
namespace {

using nlohmann::json;

// A minimal valid config; tests change one field at a time.
json base_config() {
    return json::parse(R"({
        "apps": [{
            "name": "web",
            "listen": "127.0.0.1:8080",
            "plugins": [{"path": "/opt/plugins/libhello.so"}]
        }]
    })");
}

Config parse(const json& j, const std::string& base_dir = "/etc/herd") {
    return parse_config_text(j.dump(), "test.json", base_dir);
}

// The ConfigError message for j, or a test failure if it parses.
std::string error_of(const json& j) {
    try {
        parse(j);
    } catch (const ConfigError& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected a ConfigError for " << j.dump();
    return {};
}

std::string error_of_text(const std::string& text) {
    try {
        parse_config_text(text, "test.json", "/etc/herd");
    } catch (const ConfigError& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected a ConfigError for " << text;
    return {};
}

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

// ---- errors ----

TEST(ConfigErrorTest, MalformedJsonNamesLineAndColumn) {
    std::string e = error_of_text("{\n  \"apps\": [\n    {\"name\": }\n  ]\n}");
    EXPECT_EQ(e.rfind("test.json: invalid JSON: ", 0), 0u) << e;
    EXPECT_NE(e.find("line 3"), std::string::npos) << e;
    EXPECT_NE(e.find("column"), std::string::npos) << e;
    EXPECT_EQ(e.find("[json.exception"), std::string::npos) << e;
}

TEST(ConfigErrorTest, EmptyTextIsInvalidJson) {
    std::string e = error_of_text("");
    EXPECT_NE(e.find("invalid JSON"), std::string::npos) << e;
}

TEST(ConfigErrorTest, NumberTooLargeForADoubleIsAConfigError) {
    // Found by fuzz_config: nlohmann throws out_of_range (not parse_error) for "1e400", which
    // escaped parse_config_text and aborted `herd run` and `herd check`.
    std::string e = error_of_text(
        R"({"apps": [{"name": "a", "listen": "127.0.0.1:0", "workers": 1e400,
                      "plugins": [{"path": "p.so"}]}]})");
    EXPECT_EQ(e.rfind("test.json: invalid JSON: ", 0), 0u) << e;
    EXPECT_NE(e.find("1e400"), std::string::npos) << e;
    EXPECT_EQ(e.find("[json.exception"), std::string::npos) << e;
}

TEST(ConfigErrorTest, ARepeatedKeyIsNamedWithWhereItIs) {
    // nlohmann would keep the last of the two silently.
    std::string e = error_of_text(
        R"({"apps": [{"name": "a", "listen": "127.0.0.1:0", "workers": 2, "workers": 8,
                      "plugins": [{"path": "p.so"}]}]})");
    EXPECT_EQ(e, "test.json: key \"workers\" appears twice in apps[0]");
    e = error_of_text(
        R"({"apps": [{"name": "a", "listen": "127.0.0.1:0", "plugins": [{"path": "p.so"}]},
                     {"name": "b", "listen": "127.0.0.1:0", "plugins": [{"path": "p.so"},
                      {"path": "q.so", "config": {"x": [1, {"y": 1}], "z": {}, "x": 2}}]}]})");
    EXPECT_EQ(e, "test.json: key \"x\" appears twice in apps[1].plugins[1].config");
    e = error_of_text(R"({"log_level": "info", "apps": [], "log_level": "debug"})");
    EXPECT_EQ(e, "test.json: key \"log_level\" appears twice in the top-level object");
    // The same key in different objects, or in objects inside arrays, is fine.
    EXPECT_NO_THROW(parse_config_text(
        R"({"apps": [{"name": "a", "listen": "127.0.0.1:0", "plugins": [{"path": "p.so",
            "config": {"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 1}, {"k": 2}]}}]}]})",
        "test.json", "/etc/herd"));
}

TEST(ConfigErrorTest, TopLevelMustBeAnObject) {
    std::string e = error_of_text("[1, 2]");
    EXPECT_NE(e.find("test.json: config: expected an object"), std::string::npos) << e;
}

TEST(ConfigErrorTest, UnknownTopLevelKey) {
    json j = base_config();
    j["aps"] = json::array();
    std::string e = error_of(j);
    EXPECT_NE(e.find("test.json: aps: unknown key"), std::string::npos) << e;
    EXPECT_NE(e.find("allow_root, apps, control, group, log_file, log_level, metrics, state, user"),
              std::string::npos)
        << e;
}

// The keys whose table (config_keys(), app_keys()) the parser reads, and a valid value of each
// that differs from its default: a key added to a table needs a value here, and a key the parser
// accepts must be in its table.
std::map<std::string, json> top_level_samples() {
    return {
        {"user", "www-data"},     {"group", "www-data"},         {"allow_root", true},
        {"log_level", "debug"},   {"control", "run/herd.sock"},  {"state", {{"backend", "file"}}},
        {"log_file", "herd.log"}, {"metrics", "127.0.0.1:9100"}, {"apps", base_config()["apps"]},
    };
}

std::map<std::string, json> app_samples() {
    return {
        {"name", "api"},
        {"listen", "127.0.0.1:9090"},
        {"workers", 3},
        {"balance", "round-robin"},
        {"plugins", {{{"path", "/opt/plugins/libecho.so"}}}},
        {"env", {{"A", "1"}}},
        {"access_log", "access.log"},
        {"max_body_bytes", 2048},
        {"max_header_bytes", 2048},
        {"header_timeout_ms", 1000},
        {"keepalive_timeout_ms", 1000},
        {"request_timeout_ms", 1000},
        {"blocking_threads", 2},
        {"backlog", 64},
        {"drain_timeout_ms", 1000},
        {"watchdog_ms", 1000},
        {"start_timeout_ms", 1000},
        {"restart_backoff_ms", 1000},
        {"restart_backoff_max_ms", 1000},
        {"healthy_after_ms", 1000},
        {"max_requests", 1000},
        {"max_rss_mb", 1000},
    };
}

// The list of known keys in an unknown-key error, as the parser gives it.
std::string known_keys_in(const std::string& error) {
    std::size_t at = error.find("(known keys: ");
    if (at == std::string::npos) return "";
    at += 13;
    return error.substr(at, error.find(')', at) - at);
}

TEST(ConfigKeysTest, TheTopLevelTableHasEachKeyTheParserAccepts) {
    std::set<std::string> table;
    for (const ConfigKey& k : config_keys()) {
        EXPECT_TRUE(table.insert(k.name).second) << k.name << " is declared twice";
        EXPECT_NE(k.read, nullptr) << k.name;
        EXPECT_STRNE(k.readme_default, "") << k.name;
        EXPECT_STRNE(k.type, "") << k.name;
    }
    auto samples = top_level_samples();
    std::set<std::string> sampled;
    for (const auto& [name, value] : samples) sampled.insert(name);
    EXPECT_EQ(table, sampled);
    // The unknown-key check refuses everything else and names exactly the table's keys.
    json j = base_config();
    j["not_a_key"] = 1;
    std::string list;
    for (const std::string& name : table) list += (list.empty() ? "" : ", ") + name;
    EXPECT_EQ(known_keys_in(error_of(j)), list);
    // Each key is accepted, and read: its value is not the default's.
    Config plain = parse(base_config());
    for (const auto& [name, value] : samples) {
        json with = base_config();
        with[name] = value;
        if (name == "group") with["user"] = "www-data";
        EXPECT_NO_THROW(parse(with)) << name;
    }
    json all = base_config();
    for (const auto& [name, value] : samples) all[name] = value;
    all["apps"][0]["name"] = "other";
    Config c = parse(all);
    EXPECT_NE(c.user, plain.user);
    EXPECT_NE(c.group, plain.group);
    EXPECT_NE(c.allow_root, plain.allow_root);
    EXPECT_NE(c.log_level, plain.log_level);
    EXPECT_NE(c.control_path, plain.control_path);
    EXPECT_NE(c.state, plain.state);
    EXPECT_NE(c.log_file, plain.log_file);
    EXPECT_NE(c.metrics.text, plain.metrics.text);
    EXPECT_NE(c.apps[0].name, plain.apps[0].name);
}

TEST(ConfigKeysTest, TheAppTableHasEachKeyTheParserAccepts) {
    std::set<std::string> table;
    for (const AppKey& k : app_keys()) {
        EXPECT_TRUE(table.insert(k.name).second) << k.name << " is declared twice";
        EXPECT_STRNE(k.readme_default, "") << k.name;
    }
    auto samples = app_samples();
    std::set<std::string> sampled;
    for (const auto& [name, value] : samples) sampled.insert(name);
    EXPECT_EQ(table, sampled);
    json j = base_config();
    j["apps"][0]["not_a_key"] = 1;
    std::string list;
    for (const std::string& name : table) list += (list.empty() ? "" : ", ") + name;
    EXPECT_EQ(known_keys_in(error_of(j)), list);
    // Each key is accepted, and read: the app differs from the plain one in that key alone
    // (as a reload sees it), which also checks the table's `differs`.
    AppConfig plain = parse(base_config()).apps[0];
    for (const AppKey& k : app_keys()) {
        json with = base_config();
        with["apps"][0][k.name] = samples[k.name];
        AppConfig a = parse(with).apps[0];
        EXPECT_TRUE(app_key_differs(k, plain, a)) << k.name;
    }
}

TEST(ConfigKeysTest, TheReadmeDefaultsAreTheParsersDefaults) {
    // A number in the README's Default column is what an app that leaves the key out gets.
    AppConfig plain = parse(base_config()).apps[0];
    int numbers = 0;
    for (const AppKey& k : app_keys()) {
        std::string d = k.readme_default;
        if (d.empty() || d.find_first_not_of("0123456789") != std::string::npos) continue;
        ++numbers;
        json with = base_config();
        with["apps"][0][k.name] = std::stoull(d);
        EXPECT_FALSE(app_key_differs(k, plain, parse(with).apps[0]))
            << "apps[]." << k.name << ": the README says " << d;
    }
    EXPECT_GE(numbers, 15);
    // Likewise at the top level, for the defaults that are values.
    Config c = parse(base_config());
    std::map<std::string, std::string> defaults;
    for (const ConfigKey& k : config_keys()) defaults[k.name] = k.readme_default;
    EXPECT_EQ(defaults["log_level"], "`" + c.log_level + "`");
    EXPECT_EQ(defaults["allow_root"], c.allow_root ? "`true`" : "`false`");
    EXPECT_EQ(defaults["apps"], "required");
    EXPECT_NE(error_of(json::object()).find("apps: missing (a list of apps)"), std::string::npos);
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

TEST(ConfigErrorTest, BadLogsAndMetrics) {
    json j = base_config();
    j["metrics"] = "localhost:x";
    EXPECT_NE(error_of(j).find("metrics: "), std::string::npos) << error_of(j);
    j = base_config();
    j["log_file"] = "";
    EXPECT_NE(error_of(j).find("log_file: must not be empty"), std::string::npos);
    j = base_config();
    j["apps"][0]["access_log"] = 3;
    EXPECT_NE(error_of(j).find("apps[0].access_log: expected a string"), std::string::npos)
        << error_of(j);
}

TEST(ConfigErrorTest, UnknownAppKey) {
    json j = base_config();
    j["apps"][0]["worker"] = 2;
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[0].worker: unknown key"), std::string::npos) << e;
    EXPECT_NE(e.find("workers"), std::string::npos) << e;  // the list of known keys
}

TEST(ConfigErrorTest, UnknownPluginKey) {
    json j = base_config();
    j["apps"][0]["plugins"][0]["foo"] = 1;
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[0].plugins[0].foo: unknown key"), std::string::npos) << e;
}

TEST(ConfigErrorTest, UnknownKeyInSecondPluginOfSecondApp) {
    json j = base_config();
    json second = j["apps"][0];
    second["name"] = "b";
    second["listen"] = "127.0.0.1:8081";
    second["plugins"].push_back({{"path", "x.so"}, {"mount", "/x"}, {"bar", true}});
    j["apps"].push_back(second);
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[1].plugins[1].bar: unknown key"), std::string::npos) << e;
}

TEST(ConfigErrorTest, AppsMissingEmptyOrNotArray) {
    EXPECT_NE(error_of(json::object()).find("apps: missing"), std::string::npos);
    json j = base_config();
    j["apps"] = json::array();
    EXPECT_NE(error_of(j).find("apps: expected a non-empty array"), std::string::npos);
    j["apps"] = json::object();
    EXPECT_NE(error_of(j).find("apps: expected a non-empty array"), std::string::npos);
}

TEST(ConfigErrorTest, AppMustBeAnObject) {
    json j = base_config();
    j["apps"][0] = "web";
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[0]: expected an object, got \"web\""), std::string::npos) << e;
}

TEST(ConfigErrorTest, PluginsMissingEmptyOrNotArray) {
    json j = base_config();
    j["apps"][0].erase("plugins");
    EXPECT_NE(error_of(j).find("apps[0].plugins: missing"), std::string::npos);
    j["apps"][0]["plugins"] = json::array();
    EXPECT_NE(error_of(j).find("apps[0].plugins: expected a non-empty array"), std::string::npos);
    j["apps"][0]["plugins"] = "libhello.so";
    EXPECT_NE(error_of(j).find("apps[0].plugins: expected a non-empty array"), std::string::npos);
}

TEST(ConfigErrorTest, PluginMustBeAnObjectWithAPath) {
    json j = base_config();
    j["apps"][0]["plugins"][0] = "libhello.so";
    EXPECT_NE(error_of(j).find("apps[0].plugins[0]: expected an object"), std::string::npos);
    j["apps"][0]["plugins"][0] = {{"mount", "/"}};
    EXPECT_NE(error_of(j).find("apps[0].plugins[0].path: missing"), std::string::npos);
    j["apps"][0]["plugins"][0] = {{"path", ""}};
    EXPECT_NE(error_of(j).find("apps[0].plugins[0].path: must not be empty"), std::string::npos);
    j["apps"][0]["plugins"][0] = {{"path", 5}};
    EXPECT_NE(error_of(j).find("apps[0].plugins[0].path: expected a string, got 5"),
              std::string::npos);
}

TEST(ConfigErrorTest, BadMounts) {
    json j = base_config();
    j["apps"][0]["plugins"][0]["mount"] = "api";
    EXPECT_NE(error_of(j).find("apps[0].plugins[0].mount: must start with \"/\""),
              std::string::npos);
    j["apps"][0]["plugins"][0]["mount"] = "/a?b";
    EXPECT_NE(error_of(j).find("apps[0].plugins[0].mount: must be a plain path"),
              std::string::npos);
    j["apps"][0]["plugins"][0]["mount"] = "/a b";
    EXPECT_NE(error_of(j).find("apps[0].plugins[0].mount: must be a plain path"),
              std::string::npos);
    j["apps"][0]["plugins"][0]["mount"] = 1;
    EXPECT_NE(error_of(j).find("apps[0].plugins[0].mount: expected a string"), std::string::npos);
}

TEST(ConfigErrorTest, PluginConfigMustBeAnObject) {
    json j = base_config();
    j["apps"][0]["plugins"][0]["config"] = json::array({1});
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[0].plugins[0].config: expected an object, got [1]"), std::string::npos)
        << e;
}

TEST(ConfigErrorTest, DuplicateMountsAfterNormalisation) {
    json j = base_config();
    j["apps"][0]["plugins"] = json::array({
        {{"path", "a.so"}, {"mount", "/api"}},
        {{"path", "b.so"}, {"mount", "/api/"}},
    });
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[0].plugins[1].mount: \"/api\" is mounted twice"), std::string::npos)
        << e;
}

TEST(ConfigErrorTest, DuplicateDefaultMount) {
    json j = base_config();
    j["apps"][0]["plugins"].push_back({{"path", "b.so"}});
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[0].plugins[1].mount: \"/\" is mounted twice"), std::string::npos) << e;
}

TEST(ConfigErrorTest, WrongTypes) {
    struct Case {
        const char* key;
        json value;
        const char* message;
    };
    const Case cases[] = {
        {"name", 3, "apps[0].name: expected a string, got 3"},
        {"listen", 8080, "apps[0].listen: expected a string, got 8080"},
        {"balance", true, "apps[0].balance: expected a string, got true"},
        {"env", json::array(), "apps[0].env: expected an object of strings, got []"},
        {"drain_timeout_ms", "5s", "apps[0].drain_timeout_ms: expected an integer from 0 to"},
        {"backlog", 1.5, "apps[0].backlog: expected an integer from 1 to 65535, got 1.5"},
        {"max_body_bytes", nullptr, "apps[0].max_body_bytes: expected an integer"},
        {"header_timeout_ms", false, "apps[0].header_timeout_ms: expected an integer"},
    };
    for (const Case& c : cases) {
        json j = base_config();
        j["apps"][0][c.key] = c.value;
        std::string e = error_of(j);
        EXPECT_NE(e.find(c.message), std::string::npos) << c.key << ": " << e;
    }
}

TEST(ConfigErrorTest, BadNames) {
    for (json name : {json(""), json("a b"), json("web/1"), json(std::string(65, 'a'))}) {
        json j = base_config();
        j["apps"][0]["name"] = name;
        std::string e = error_of(j);
        EXPECT_NE(e.find("apps[0].name: expected 1 to 64 letters"), std::string::npos) << e;
    }
    json j = base_config();
    j["apps"][0]["name"] = std::string(64, 'a');
    EXPECT_EQ(parse(j).apps[0].name, std::string(64, 'a'));
    j["apps"][0].erase("name");
    EXPECT_NE(error_of(j).find("apps[0].name: missing"), std::string::npos);
}

TEST(ConfigErrorTest, BadWorkers) {
    for (json w : {json(-2), json(0), json("many"), json(2.5), json(true), json(nullptr)}) {
        json j = base_config();
        j["apps"][0]["workers"] = w;
        std::string e = error_of(j);
        EXPECT_NE(e.find("test.json: apps[0].workers: expected a positive integer"),
                  std::string::npos)
            << w.dump() << ": " << e;
        EXPECT_NE(e.find("got " + w.dump()), std::string::npos) << e;
    }
}

TEST(ConfigErrorTest, HugeUnsignedWorkersIsRejected) {
    // 2^64-1 as a JSON number: must not wrap to -1 or to a small positive count.
    std::string e = error_of_text(
        R"({"apps": [{"name": "web", "listen": "127.0.0.1:1", "workers": 18446744073709551615,
                      "plugins": [{"path": "a.so"}]}]})");
    EXPECT_NE(e.find("apps[0].workers: expected a positive integer"), std::string::npos) << e;
    e = error_of_text(
        R"({"apps": [{"name": "web", "listen": "127.0.0.1:1", "workers": 4294967297,
                      "plugins": [{"path": "a.so"}]}]})");
    EXPECT_NE(e.find("apps[0].workers: expected a positive integer"), std::string::npos) << e;
}

TEST(ConfigErrorTest, BadListenAddresses) {
    struct Case {
        const char* listen;
        const char* message;
    };
    const Case cases[] = {
        {"nohost", "expected \"host:port\""},
        {"1.2.3.4:99999", "port must be a number from 0 to 65535"},
        {"1.2.3.4:-1", "port must be a number from 0 to 65535"},
        {"1.2.3.4:", "port must be a number from 0 to 65535"},
        {"1.2.3.4:80x", "port must be a number from 0 to 65535"},
        {"localhost:80", "host names are not resolved"},
        {"256.1.1.1:80", "is not an IPv4 or IPv6 address"},
        {"[::1:80", "expected \"[IPv6]:port\""},
        {"[::1]80", "expected \"[IPv6]:port\""},
        {"[nothex]:80", "is not an IPv4 or IPv6 address"},
    };
    for (const Case& c : cases) {
        json j = base_config();
        j["apps"][0]["listen"] = c.listen;
        std::string e = error_of(j);
        EXPECT_NE(e.find("test.json: apps[0].listen: "), std::string::npos)
            << c.listen << ": " << e;
        EXPECT_NE(e.find(c.message), std::string::npos) << c.listen << ": " << e;
    }
    json j = base_config();
    j["apps"][0].erase("listen");
    EXPECT_NE(error_of(j).find("apps[0].listen: missing"), std::string::npos);
}

TEST(ConfigErrorTest, DuplicateAppNames) {
    json j = base_config();
    json second = j["apps"][0];
    second["listen"] = "127.0.0.1:8081";
    j["apps"].push_back(second);
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[1].name: \"web\" is used by another app"), std::string::npos) << e;
}

TEST(ConfigErrorTest, DuplicateListenAddresses) {
    json j = base_config();
    json second = j["apps"][0];
    second["name"] = "other";
    j["apps"].push_back(second);
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[1].listen: \"127.0.0.1:8080\" is used by another app"),
              std::string::npos)
        << e;
}

TEST(ConfigErrorTest, DuplicateListenAddressesSpelledDifferently) {
    // "*:8080", ":8080" and "0.0.0.0:8080" are the same socket address; so are two spellings
    // of ::1. The second bind() would fail at start-up instead of as a config error.
    const std::pair<const char*, const char*> pairs[] = {
        {"*:8080", "0.0.0.0:8080"},
        {":8080", "0.0.0.0:8080"},
        {"[::1]:8080", "[0:0::1]:8080"},
    };
    for (const auto& [first, second_listen] : pairs) {
        json j = base_config();
        j["apps"][0]["listen"] = first;
        json second = j["apps"][0];
        second["name"] = "other";
        second["listen"] = second_listen;
        j["apps"].push_back(second);
        std::string e = error_of(j);
        EXPECT_NE(e.find("apps[1].listen: "), std::string::npos) << first << " / " << second_listen;
        EXPECT_NE(e.find("is used by another app"), std::string::npos) << e;
    }
}

TEST(ConfigErrorTest, BadBalance) {
    json j = base_config();
    j["apps"][0]["balance"] = "random";
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[0].balance: expected \"shared\", \"reuseport\", \"round-robin\" or "
                     "\"least-conn\", got \"random\""),
              std::string::npos)
        << e;
}

TEST(ConfigTest, EveryBalanceModeIsAccepted) {
    for (const char* mode : {"shared", "reuseport", "round-robin", "least-conn"}) {
        json j = base_config();
        j["apps"][0]["balance"] = mode;
        EXPECT_EQ(parse_config(j, "/srv").apps[0].balance, mode);
    }
}

TEST(ConfigErrorTest, BadEnv) {
    json j = base_config();
    j["apps"][0]["env"] = {{"PORT", 8080}};
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[0].env.PORT: expected a string, got 8080"), std::string::npos) << e;
    j["apps"][0]["env"] = {{"A=B", "x"}};
    e = error_of(j);
    EXPECT_NE(e.find("apps[0].env.A=B: not a valid environment variable name"), std::string::npos)
        << e;
    j["apps"][0]["env"] = {{"", "x"}};
    e = error_of(j);
    EXPECT_NE(e.find("apps[0].env.: not a valid environment variable name"), std::string::npos)
        << e;
    j["apps"][0]["env"] = "A=B";
    e = error_of(j);
    EXPECT_NE(e.find("apps[0].env: expected an object of strings"), std::string::npos) << e;
}

TEST(ConfigErrorTest, NulInPathsAndEnvironmentIsRefused) {
    // Found by fuzz_config: "lib\u0000x.so" was accepted, and dlopen would load "lib".
    std::string nul("a\0b", 3);
    json j = base_config();
    j["apps"][0]["plugins"][0]["path"] = "/opt/" + nul + ".so";
    EXPECT_NE(error_of(j).find("apps[0].plugins[0].path: must not contain a NUL character"),
              std::string::npos);
    j = base_config();
    j["apps"][0]["plugins"][0]["mount"] = "/" + nul;
    EXPECT_NE(error_of(j).find("apps[0].plugins[0].mount: must be a plain path"),
              std::string::npos);
    j = base_config();
    j["control"] = "/run/" + nul + ".sock";
    EXPECT_NE(error_of(j).find("control: must not contain a NUL character"), std::string::npos);
    j = base_config();
    j["apps"][0]["env"] = {{"A", nul}};
    EXPECT_NE(error_of(j).find("apps[0].env.A: must not contain a NUL character"),
              std::string::npos);
    j = base_config();
    j["apps"][0]["env"] = {{nul, "x"}};
    // The whole message: the NUL is shown, not left to end the C string early.
    std::string e = error_of(j);
    EXPECT_NE(e.find("apps[0].env.a\\x00b: not a valid environment variable name"),
              std::string::npos)
        << e;
    j = base_config();
    j["apps"][0]["lo\ng"] = 1;
    e = error_of(j);
    EXPECT_NE(e.find("apps[0].lo\\x0ag: unknown key"), std::string::npos) << e;
    // Values quoted in a message too: one log line, whatever the file holds.
    j = base_config();
    j["apps"][0]["listen"] = "\f\nfake log line";
    e = error_of(j);
    EXPECT_NE(e.find("apps[0].listen: expected \"host:port\", got \"\\x0c\\x0afake log line\""),
              std::string::npos)
        << e;
}

TEST(ConfigErrorTest, BadLogLevel) {
    json j = base_config();
    j["log_level"] = "verbose";
    std::string e = error_of(j);
    EXPECT_NE(e.find("test.json: log_level: expected \"debug\", \"info\", \"warn\" or \"error\", "
                     "got \"verbose\""),
              std::string::npos)
        << e;
    j["log_level"] = 1;
    EXPECT_NE(error_of(j).find("log_level: expected a string, got 1"), std::string::npos);
    for (const char* level : {"debug", "info", "warn", "error"}) {
        j["log_level"] = level;
        EXPECT_EQ(parse(j).log_level, level);
    }
}

TEST(ConfigErrorTest, IntegersOutOfRange) {
    struct Case {
        const char* key;
        json low_bad, low_ok, high_ok, high_bad;
    };
    const Case cases[] = {
        {"drain_timeout_ms", -1, 0, 3600000, 3600001},
        {"max_body_bytes", -1, 0, 1LL << 32, (1LL << 32) + 1},
        {"max_header_bytes", 1023, 1024, 1 << 20, (1 << 20) + 1},
        {"header_timeout_ms", 0, 1, 3600000, 3600001},
        {"keepalive_timeout_ms", 0, 1, 3600000, 3600001},
        {"backlog", 0, 1, 65535, 65536},
    };
    for (const Case& c : cases) {
        for (const json& ok : {c.low_ok, c.high_ok}) {
            json j = base_config();
            j["apps"][0][c.key] = ok;
            EXPECT_NO_THROW(parse(j)) << c.key << " = " << ok.dump();
        }
        for (const json& bad : {c.low_bad, c.high_bad}) {
            json j = base_config();
            j["apps"][0][c.key] = bad;
            std::string e = error_of(j);
            std::string want = "apps[0]." + std::string(c.key) + ": expected an integer from " +
                               c.low_ok.dump() + " to " + c.high_ok.dump() + ", got " + bad.dump();
            EXPECT_NE(e.find(want), std::string::npos) << e;
        }
    }
}

TEST(ConfigErrorTest, HugeUnsignedIntegerIsOutOfRange) {
    std::string e = error_of_text(
        R"({"apps": [{"name": "web", "listen": "127.0.0.1:1", "backlog": 18446744073709551615,
                      "plugins": [{"path": "a.so"}]}]})");
    EXPECT_NE(e.find("apps[0].backlog: expected an integer from 1 to 65535"), std::string::npos)
        << e;
}

TEST(ConfigErrorTest, LargestBodyLimitIsStoredExactly) {
    json j = base_config();
    j["apps"][0]["max_body_bytes"] = 1LL << 32;
    EXPECT_EQ(parse(j).apps[0].max_body_bytes, std::size_t{1} << 32);
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
