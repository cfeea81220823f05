// Tests server/core/config's refusals: each invalid config (malformed JSON, unknown keys,
// wrong types, bad names, mounts, addresses, values out of range, duplicates) is a ConfigError
// that says where and why.
#include "core/config.hpp"

#include <cstddef>
#include <string>

#include <gtest/gtest.h>

#include "config_test_helpers.hpp"

namespace herd::core {
namespace {

using namespace config_test;

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
    EXPECT_NE(e.find("allow_root, apps, control, group, health, health_max_state_age_ms, log_file, "
                     "log_level, "
                     "metrics, metrics_auth, state, user"),
              std::string::npos)
        << e;
}

TEST(ConfigErrorTest, BadLogsAndMetrics) {
    json j = base_config();
    j["metrics"] = "localhost:x";
    EXPECT_NE(error_of(j).find("metrics: "), std::string::npos) << error_of(j);
    j = base_config();
    j["health"] = "127.0.0.1:http";
    EXPECT_NE(error_of(j).find("health: "), std::string::npos) << error_of(j);
    j = base_config();
    j["health_max_state_age_ms"] = -1;
    EXPECT_NE(error_of(j).find("health_max_state_age_ms: expected an integer from 0 to 86400000, "
                               "got -1"),
              std::string::npos)
        << error_of(j);
    j = base_config();
    j["log_file"] = "";
    EXPECT_NE(error_of(j).find("log_file: must not be empty"), std::string::npos);
    auto auth_error = [](json auth) {
        json j = base_config();
        j["metrics_auth"] = std::move(auth);
        return error_of(j);
    };
    EXPECT_NE(auth_error("secret").find("metrics_auth: expected an object ({\"token\": ...} or "
                                        "{\"user\": ..., \"password\": ...}), got string"),
              std::string::npos)
        << auth_error("secret");
    EXPECT_EQ(auth_error("secret").find("\"secret\""), std::string::npos);
    EXPECT_NE(auth_error(json::object())
                  .find("metrics_auth: expected {\"token\": ...} or {\"user\": ..., "
                        "\"password\": ...}"),
              std::string::npos);
    EXPECT_NE(auth_error({{"token", "a"}, {"user", "b"}, {"password", "c"}})
                  .find("metrics_auth: give either \"token\""),
              std::string::npos);
    EXPECT_NE(auth_error({{"user", "ops"}})
                  .find("metrics_auth: basic authentication needs both \"user\" and "
                        "\"password\""),
              std::string::npos);
    EXPECT_NE(auth_error({{"token", ""}}).find("metrics_auth.token: must not be empty"),
              std::string::npos);
    EXPECT_NE(auth_error({{"user", "a:b"}, {"password", "x"}})
                  .find("metrics_auth.user: must not contain ':'"),
              std::string::npos);
    EXPECT_NE(auth_error({{"token", "t"}, {"realm", "x"}}).find("metrics_auth.realm: unknown key"),
              std::string::npos);
    // A secret is never quoted back.
    std::string e = auth_error({{"token", "has space"}});
    EXPECT_NE(e.find("metrics_auth.token: must not contain spaces or control characters"),
              std::string::npos)
        << e;
    EXPECT_EQ(e.find("has space"), std::string::npos) << e;
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

}  // namespace
}  // namespace herd::core
