// Tests broker/state_config and broker/redis_url: defaults, JSON-path errors, URL forms,
// and that no error or redacted form ever contains the password.
#include "broker/state_config.hpp"

#include <gtest/gtest.h>

#include "core/config.hpp"

namespace herd::broker {
namespace {

using nlohmann::json;

std::string config_error(const json& j) {
    try {
        parse_state_config(j, "/etc/herd", "state", "/etc/herd/app.state.json");
    } catch (const core::ConfigError& e) {
        return e.what();
    }
    return {};
}

TEST(StateConfig, DefaultsToTheFileBesideTheConfig) {
    StateConfig d = default_state_config("/etc/herd/app.state.json");
    EXPECT_EQ(d.backend, StateConfig::Backend::file);
    EXPECT_EQ(d.file.path, "/etc/herd/app.state.json");
    StateConfig c =
        parse_state_config(json::object(), "/etc/herd", "state", "/etc/herd/app.state.json");
    EXPECT_EQ(c.backend, StateConfig::Backend::file);
    EXPECT_EQ(c.file.path, "/etc/herd/app.state.json");
    EXPECT_STREQ(c.backend_name(), "file");
}

TEST(StateConfig, FilePathResolvesAgainstTheConfigFolder) {
    StateConfig c = parse_state_config({{"backend", "file"}, {"path", "data/../state.json"}},
                                       "/etc/herd", "state", "/x");
    EXPECT_EQ(c.file.path, "/etc/herd/state.json");
    c = parse_state_config({{"path", "/var/lib/herd/s.json"}}, "/etc/herd", "state", "/x");
    EXPECT_EQ(c.file.path, "/var/lib/herd/s.json");
}

TEST(StateConfig, Redis) {
    StateConfig c = parse_state_config({{"backend", "redis"},
                                        {"url", "redis://:s3cret@10.0.0.5:6380/2"},
                                        {"prefix", "app1:"},
                                        {"poll_ms", 250},
                                        {"resync_ms", 30000}},
                                       "/etc/herd", "state", "/x");
    EXPECT_EQ(c.backend, StateConfig::Backend::redis);
    EXPECT_EQ(c.redis.parsed.host, "10.0.0.5");
    EXPECT_EQ(c.redis.parsed.port, 6380);
    EXPECT_EQ(c.redis.parsed.db, 2);
    EXPECT_EQ(c.redis.parsed.password, "s3cret");
    EXPECT_EQ(c.redis.prefix, "app1:");
    EXPECT_EQ(c.redis.poll_ms, 250);
    EXPECT_EQ(c.redis.resync_ms, 30000);
    StateConfig d = parse_state_config({{"backend", "redis"}}, "/", "state", "/x");
    EXPECT_EQ(d.redis.parsed.host, "127.0.0.1");
    EXPECT_EQ(d.redis.parsed.port, 6379);
    EXPECT_EQ(d.redis.prefix, "herd:");
    EXPECT_EQ(d.redis.poll_ms, 1000);
}

TEST(StateConfig, ErrorsNameTheJsonPath) {
    EXPECT_EQ(config_error(json::array()), "state: expected an object, got []");
    EXPECT_EQ(config_error({{"backend", "etcd"}}),
              "state.backend: expected \"file\" or \"redis\", got \"etcd\"");
    EXPECT_EQ(config_error({{"backend", "file"}, {"url", "redis://x"}}),
              "state.url: only for backend \"redis\" (this one is \"file\")");
    EXPECT_EQ(config_error({{"backend", "redis"}, {"path", "x"}}),
              "state.path: only for backend \"file\" (this one is \"redis\")");
    EXPECT_EQ(config_error({{"colour", 1}}),
              "state.colour: unknown key (known keys: backend, path)");
    EXPECT_EQ(config_error({{"path", ""}}), "state.path: must not be empty");
    EXPECT_EQ(config_error({{"path", 5}}), "state.path: expected a string, got 5");
    EXPECT_EQ(config_error({{"backend", "redis"}, {"poll_ms", 0}}),
              "state.poll_ms: expected an integer from 10 to 3600000, got 0");
    EXPECT_EQ(config_error({{"backend", "redis"}, {"poll_ms", 1.5}}),
              "state.poll_ms: expected an integer from 10 to 3600000, got 1.5");
    EXPECT_EQ(config_error({{"backend", "redis"}, {"resync_ms", 18446744073709551615ull}}),
              "state.resync_ms: expected an integer from 100 to 86400000, got "
              "18446744073709551615");
    EXPECT_EQ(config_error({{"backend", "redis"}, {"prefix", "a b"}}),
              "state.prefix: must not contain spaces or control characters, got \"a b\"");
    EXPECT_EQ(config_error({{"backend", "redis"}, {"url", "http://x"}}),
              "state.url: redis url: expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or "
              "unix://[[USER]:PASSWORD@]/PATH[?db=N]");
    EXPECT_EQ(parse_state_config({{"backend", "redis"}}, "/", "apps[0].state", "/x").redis.prefix,
              "herd:");
    try {
        parse_state_config({{"backend", "bad"}}, "/", "apps[0].state", "/x");
        FAIL();
    } catch (const core::ConfigError& e) {
        EXPECT_EQ(std::string(e.what()).rfind("apps[0].state.backend: ", 0), 0u);
    }
}

TEST(StateConfig, RedisThroughSentinels) {
    StateConfig c = parse_state_config(
        {{"backend", "redis"},
         {"sentinels", {"10.0.0.1:26379", "sentinel.example:26380", "[::1]:26381"}},
         {"master_name", "herd"},
         {"password", "s3cret"},
         {"db", 3},
         {"sentinel_timeout_ms", 250}},
        "/etc/herd", "state", "/x");
    ASSERT_TRUE(c.redis.uses_sentinels());
    ASSERT_EQ(c.redis.sentinels.size(), 3u);
    EXPECT_EQ(c.redis.sentinels[0], (SentinelAddress{"10.0.0.1", 26379}));
    EXPECT_EQ(c.redis.sentinels[1], (SentinelAddress{"sentinel.example", 26380}));
    EXPECT_EQ(c.redis.sentinels[2], (SentinelAddress{"::1", 26381}));
    EXPECT_EQ(c.redis.sentinels[2].text(), "[::1]:26381");
    EXPECT_EQ(c.redis.master_name, "herd");
    EXPECT_EQ(c.redis.parsed.password, "s3cret");
    EXPECT_EQ(c.redis.parsed.user, "");
    EXPECT_EQ(c.redis.parsed.db, 3);
    EXPECT_EQ(c.redis.parsed.host, "");  // the sentinels say, at each connection
    EXPECT_EQ(c.redis.sentinel_timeout_ms, 250);
    EXPECT_EQ(c.redis.url, "");
    // The password never shows, even with sentinels.
    EXPECT_EQ(c.redis.parsed.scrub("AUTH s3cret"), "AUTH ***");
    StateConfig d = parse_state_config(
        {{"backend", "redis"}, {"sentinels", {"127.0.0.1:26379"}}, {"master_name", "m"}}, "/",
        "state", "/x");
    EXPECT_EQ(d.redis.parsed.password, "");
    EXPECT_EQ(d.redis.parsed.db, 0);
    EXPECT_EQ(d.redis.sentinel_timeout_ms, 1000);
    EXPECT_EQ(d.redis.sentinel_password, "");
    StateConfig e = parse_state_config({{"backend", "redis"},
                                        {"sentinels", {"127.0.0.1:26379"}},
                                        {"master_name", "m"},
                                        {"sentinel_user", "watcher"},
                                        {"sentinel_password", "w4tch"}},
                                       "/", "state", "/x");
    EXPECT_EQ(e.redis.sentinel_user, "watcher");
    EXPECT_EQ(e.redis.sentinel_password, "w4tch");
    EXPECT_FALSE(
        parse_state_config({{"backend", "redis"}}, "/", "state", "/x").redis.uses_sentinels());
}

TEST(StateConfig, SentinelErrorsNameTheKey) {
    auto with = [](json extra) {
        json j = {
            {"backend", "redis"}, {"sentinels", {"127.0.0.1:26379"}}, {"master_name", "herd"}};
        for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
        return config_error(j);
    };
    EXPECT_EQ(with({{"url", "redis://127.0.0.1"}}),
              "state.sentinels: give either \"url\" (one Redis) or \"sentinels\" (find the "
              "primary through Redis Sentinel), not both");
    EXPECT_EQ(with({{"sentinels", json::array()}}),
              "state.sentinels: expected a non-empty array of \"HOST:PORT\" strings, got []");
    EXPECT_EQ(with({{"sentinels", "127.0.0.1:26379"}}),
              "state.sentinels: expected a non-empty array of \"HOST:PORT\" strings, got "
              "\"127.0.0.1:26379\"");
    EXPECT_EQ(with({{"sentinels", {"127.0.0.1:26379", 26380}}}),
              "state.sentinels[1]: expected a string, got 26380");
    EXPECT_EQ(with({{"sentinels", {"127.0.0.1"}}}),
              "state.sentinels[0]: expected \"HOST:PORT\" (\"10.0.0.1:26379\"): the port is "
              "missing, got \"127.0.0.1\"");
    EXPECT_EQ(with({{"sentinels", {"127.0.0.1:0"}}}),
              "state.sentinels[0]: the port must be a number from 1 to 65535, got "
              "\"127.0.0.1:0\"");
    EXPECT_EQ(with({{"sentinels", {":26379"}}}),
              "state.sentinels[0]: the host is missing, got \":26379\"");
    EXPECT_EQ(with({{"sentinels", {"::1:26379"}}}),
              "state.sentinels[0]: an IPv6 address needs brackets (\"[::1]:26379\"), got "
              "\"::1:26379\"");
    EXPECT_EQ(with({{"sentinels", {"a:1", "b:2", "a:1"}}}),
              "state.sentinels[2]: repeats sentinels[0] \"a:1\"");
    EXPECT_EQ(config_error({{"backend", "redis"}, {"sentinels", {"127.0.0.1:26379"}}}),
              "state.master_name: required with \"sentinels\": the name the sentinels monitor "
              "the primary under (\"sentinel monitor NAME ...\")");
    EXPECT_EQ(with({{"master_name", ""}}), "state.master_name: must not be empty");
    EXPECT_EQ(with({{"master_name", "a b"}}),
              "state.master_name: must not contain spaces or control characters, got \"a b\"");
    EXPECT_EQ(with({{"password", ""}}), "state.password: must not be empty (leave it out)");
    EXPECT_EQ(with({{"user", "app"}}), "state.user: needs \"password\" (AUTH USER PASSWORD)");
    EXPECT_EQ(with({{"db", -1}}), "state.db: expected an integer from 0 to 65535, got -1");
    EXPECT_EQ(with({{"sentinel_timeout_ms", 1}}),
              "state.sentinel_timeout_ms: expected an integer from 10 to 600000, got 1");
    // Without sentinels, the sentinel keys and the URL's parts are refused.
    EXPECT_EQ(config_error({{"backend", "redis"}, {"master_name", "herd"}}),
              "state.master_name: only with \"sentinels\"");
    EXPECT_EQ(config_error({{"backend", "redis"}, {"password", "x"}}),
              "state.password: only with \"sentinels\"; with \"url\", put it in the URL "
              "(redis://USER:PASSWORD@HOST:PORT/DB)");
    EXPECT_EQ(config_error({{"backend", "file"}, {"sentinels", {"127.0.0.1:26379"}}}),
              "state.sentinels: only for backend \"redis\" (this one is \"file\")");
    EXPECT_EQ(with({{"sentinel_password", ""}}),
              "state.sentinel_password: must not be empty (leave it out)");
    EXPECT_EQ(with({{"sentinel_user", "u"}}),
              "state.sentinel_user: needs \"sentinel_password\" (AUTH USER PASSWORD)");
    EXPECT_EQ(config_error({{"backend", "redis"}, {"sentinel_password", "x"}}),
              "state.sentinel_password: only with \"sentinels\"");
    // An error never quotes the password.
    EXPECT_EQ(with({{"password", "s3cret"}, {"db", "x"}}).find("s3cret"), std::string::npos);
}

TEST(StateConfig, MinReplicasAck) {
    auto parse = [](json extra) {
        json j = {{"backend", "redis"}};
        for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
        return parse_state_config(j, "/", "state", "/x").redis;
    };
    EXPECT_EQ(parse({}).min_replicas_ack, 0);
    RedisStateConfig r = parse({{"min_replicas_ack", 2}});
    EXPECT_EQ(r.min_replicas_ack, 2);
    EXPECT_EQ(r.replica_ack_timeout_ms, 1000);
    r = parse(
        {{"min_replicas_ack", 1}, {"replica_ack_timeout_ms", 3000}, {"connect_timeout_ms", 6000}});
    EXPECT_EQ(r.replica_ack_timeout_ms, 3000);
    EXPECT_EQ(config_error({{"backend", "redis"}, {"min_replicas_ack", -1}}),
              "state.min_replicas_ack: expected an integer from 0 to 100, got -1");
    EXPECT_EQ(config_error({{"backend", "redis"}, {"replica_ack_timeout_ms", 100}}),
              "state.replica_ack_timeout_ms: only with \"min_replicas_ack\" above 0");
    EXPECT_EQ(
        config_error(
            {{"backend", "redis"}, {"min_replicas_ack", 1}, {"replica_ack_timeout_ms", 3000}}),
        "state.replica_ack_timeout_ms: must be at most half of connect_timeout_ms (5000), "
        "got 3000: commands sent behind a WAIT count as unanswered after "
        "connect_timeout_ms");
    EXPECT_EQ(config_error({{"backend", "file"}, {"min_replicas_ack", 1}}),
              "state.min_replicas_ack: only for backend \"redis\" (this one is \"file\")");
}

TEST(RedisUrl, Forms) {
    RedisUrl u = parse_redis_url("redis://localhost");
    EXPECT_FALSE(u.unix_socket);
    EXPECT_EQ(u.host, "localhost");
    EXPECT_EQ(u.port, 6379);
    EXPECT_EQ(u.db, 0);
    EXPECT_EQ(u.password, "");
    u = parse_redis_url("redis://user:p%40ss@[::1]:7000/3");
    EXPECT_EQ(u.host, "::1");
    EXPECT_EQ(u.port, 7000);
    EXPECT_EQ(u.db, 3);
    EXPECT_EQ(u.user, "user");
    EXPECT_EQ(u.password, "p@ss");
    EXPECT_EQ(u.redacted(), "redis://user:***@[::1]:7000/3");
    EXPECT_EQ(u.endpoint(), "[::1]:7000");
    u = parse_redis_url("redis://secret@host:1");
    EXPECT_EQ(u.password, "secret");
    EXPECT_EQ(u.user, "");
    u = parse_redis_url("unix:///run/redis/redis.sock?db=5");
    EXPECT_TRUE(u.unix_socket);
    EXPECT_EQ(u.path, "/run/redis/redis.sock");
    EXPECT_EQ(u.db, 5);
    EXPECT_EQ(u.redacted(), "unix:///run/redis/redis.sock?db=5");
    u = parse_redis_url("unix://:pw@/tmp/r.sock");
    EXPECT_EQ(u.path, "/tmp/r.sock");
    EXPECT_EQ(u.password, "pw");
    EXPECT_EQ(u.redacted(), "unix://:***@/tmp/r.sock");
}

TEST(RedisUrl, ErrorsNeverQuoteThePassword) {
    for (const char* url :
         {"redis://:hunter2@host:99999", "redis://:hunter2@host/abc", "redis://:hunter2@",
          "redis://:hunter2%zz@host", "unix://:hunter2@relative", "redis://:hunter2@[::1",
          "rediss://:hunter2@host", "redis://:hunter2@host?x=1"}) {
        try {
            parse_redis_url(url);
            ADD_FAILURE() << "accepted " << url;
        } catch (const core::Error& e) {
            EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos) << e.what();
        }
    }
}

TEST(RedisUrl, ScrubRemovesThePasswordFromAnyText) {
    RedisUrl u = parse_redis_url("redis://:p%40ss@h");
    EXPECT_EQ(u.scrub("AUTH p@ss failed, p%40ss too"), "AUTH *** failed, *** too");
    RedisUrl none = parse_redis_url("redis://h");
    EXPECT_EQ(none.scrub("unchanged"), "unchanged");
}

}  // namespace
}  // namespace herd::broker
