// Tests master/inherit: HERD_UPGRADE as the old master writes it and the new one reads it,
// systemd's LISTEN_FDS and LISTEN_FDNAMES, and which inherited sockets each app claims (by app
// and "listen" text from an old master; by name, then by address, from systemd).
#include "master/inherit.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/error.hpp"
#include "core/socket.hpp"

namespace herd::master {
namespace {

core::AppConfig app(const std::string& name, const std::string& listen,
                    const std::string& balance = "shared") {
    core::AppConfig a;
    a.name = name;
    a.listen = core::parse_address(listen);
    a.balance = balance;
    return a;
}

// A descriptor to stand for a socket (the claim never reads it).
core::UniqueFd any_fd() {
    return core::UniqueFd(::dup(STDIN_FILENO));
}

InheritedSocket socket_of(const std::string& name, const std::string& listen,
                          const std::string& address, bool reuseport = false, int slot = 0) {
    InheritedSocket s;
    s.fd = any_fd();
    s.name = name;
    s.listen = listen;
    s.address = address;
    s.reuseport = reuseport;
    s.slot = slot;
    return s;
}

Inherited from_old_master() {
    Inherited in;
    in.origin = "the master it upgrades from (pid 1)";
    in.channel = any_fd();
    return in;
}

Inherited from_systemd() {
    Inherited in;
    in.origin = "systemd (LISTEN_FDS)";
    return in;
}

TEST(UpgradeEnv, RoundTripsWhatTheOldMasterPasses) {
    std::string text = encode_upgrade_env(
        4711, "0.1.0", 7, 8, {}, {11, "127.0.0.1:9101"},
        {{9, "web", "127.0.0.1:0", false, 0}, {10, "api", "127.0.0.1:8081", true, 1}});
    Inherited in = parse_upgrade_env(text);
    EXPECT_EQ(in.from_pid, 4711);
    EXPECT_EQ(in.from_version, "0.1.0");
    EXPECT_EQ(in.channel.get(), 7);
    EXPECT_EQ(in.control.get(), 8);
    EXPECT_FALSE(in.metrics);
    EXPECT_EQ(in.health.get(), 11);
    EXPECT_EQ(in.health_listen, "127.0.0.1:9101");
    ASSERT_EQ(in.sockets.size(), 2u);
    EXPECT_EQ(in.sockets[1].fd.get(), 10);
    EXPECT_EQ(in.sockets[1].name, "api");
    EXPECT_EQ(in.sockets[1].listen, "127.0.0.1:8081");
    EXPECT_TRUE(in.sockets[1].reuseport);
    EXPECT_EQ(in.sockets[1].slot, 1);
    EXPECT_NE(in.origin.find("pid 4711, herd 0.1.0"), std::string::npos) << in.origin;
    // Not ours to close: they are numbers made up for the test.
    (void)in.channel.release();
    (void)in.control.release();
    (void)in.health.release();
    for (auto& s : in.sockets) (void)s.fd.release();
}

TEST(UpgradeEnv, BadValuesNameTheField) {
    auto error = [](const std::string& text) {
        try {
            Inherited in = parse_upgrade_env(text);
            (void)in.channel.release();
            for (auto& s : in.sockets) (void)s.fd.release();
        } catch (const core::Error& e) {
            return std::string(e.what());
        }
        return std::string("(accepted)");
    };
    EXPECT_EQ(error("["), "HERD_UPGRADE is not a JSON object");
    EXPECT_EQ(error(R"({"pid": "x"})"), "HERD_UPGRADE: \"pid\" must be an integer");
    EXPECT_EQ(error(R"({"pid": 1, "version": "v", "channel": 1})"),
              "HERD_UPGRADE: \"channel\" must be a descriptor above 2");
    EXPECT_EQ(error(R"({"pid": 1, "version": "v", "channel": 5, "control": -1, "metrics": -1,
                  "metrics_listen": "", "health": -1, "health_listen": "",
                  "sockets": [{"fd": 2}]})"),
              "HERD_UPGRADE: a socket: \"fd\" must be a descriptor above 2");
    EXPECT_EQ(error(R"({"pid": 1, "version": "v", "channel": 5, "control": -1, "metrics": -1,
                  "metrics_listen": "", "health": -1, "health_listen": "",
                  "sockets": [{"fd": 6, "app": "web", "listen": "x",
                  "reuseport": 1, "slot": 0}]})"),
              "HERD_UPGRADE: a socket: \"reuseport\" must be true or false");
}

TEST(ListenFds, NamesAndCounts) {
    std::vector<InheritedSocket> s = parse_listen_fds("3", "web::api");
    ASSERT_EQ(s.size(), 3u);
    EXPECT_EQ(s[0].fd.get(), 3);
    EXPECT_EQ(s[0].name, "web");
    EXPECT_EQ(s[1].name, "unknown");  // an empty name, as sd_listen_fds_with_names gives it
    EXPECT_EQ(s[2].fd.get(), 5);
    EXPECT_EQ(s[2].name, "api");
    for (auto& x : s) (void)x.fd.release();
    std::vector<InheritedSocket> unnamed = parse_listen_fds("1", nullptr);
    EXPECT_EQ(unnamed[0].name, "unknown");
    (void)unnamed[0].fd.release();
    EXPECT_THROW(parse_listen_fds("2", "web"), core::Error);
    EXPECT_THROW(parse_listen_fds("x", nullptr), core::Error);
    EXPECT_THROW(parse_listen_fds("", nullptr), core::Error);
    EXPECT_THROW(parse_listen_fds("99999", nullptr), core::Error);
}

TEST(Claim, FromAnOldMasterByAppAndListenText) {
    Inherited in = from_old_master();
    in.sockets.push_back(socket_of("web", "127.0.0.1:0", "127.0.0.1:40001"));
    in.sockets.push_back(socket_of("api", "127.0.0.1:0", "127.0.0.1:40002"));
    in.sockets.push_back(socket_of("gone", "127.0.0.1:0", "127.0.0.1:40003"));
    EXPECT_EQ(claim_sockets(in, app("web", "127.0.0.1:0")).size(), 1u);
    // Moved to another address in the new config: bound afresh, the old one not taken.
    EXPECT_TRUE(claim_sockets(in, app("api", "127.0.0.1:9000")).empty());
    // Left over: closed without an error (the old master closes its own copy).
    check_unclaimed(in);
    for (const auto& s : in.sockets) EXPECT_FALSE(s.fd);
}

TEST(Claim, ReuseportSlotsInOrderAndNoSwitchOfBalance) {
    Inherited in = from_old_master();
    in.sockets.push_back(socket_of("web", "127.0.0.1:0", "127.0.0.1:40001", true, 1));
    in.sockets.push_back(socket_of("web", "127.0.0.1:0", "127.0.0.1:40001", true, 0));
    int slot0 = in.sockets[1].fd.get();
    std::vector<core::UniqueFd> fds = claim_sockets(in, app("web", "127.0.0.1:0", "reuseport"));
    ASSERT_EQ(fds.size(), 2u);
    EXPECT_EQ(fds[0].get(), slot0);

    Inherited other = from_old_master();
    other.sockets.push_back(socket_of("web", "127.0.0.1:0", "127.0.0.1:40001", true, 0));
    try {
        claim_sockets(other, app("web", "127.0.0.1:0", "round-robin"));
        FAIL() << "a reuseport socket given to a round-robin app";
    } catch (const core::Error& e) {
        EXPECT_NE(std::string(e.what()).find("change \"balance\" from or to reuseport with herd "
                                             "reload"),
                  std::string::npos)
            << e.what();
    }
}

TEST(Claim, FromSystemdByNameThenByAddress) {
    Inherited in = from_systemd();
    in.sockets.push_back(socket_of("web", "", "127.0.0.1:8080"));
    in.sockets.push_back(socket_of("unknown", "", "127.0.0.1:8081"));
    in.sockets.push_back(socket_of("unknown", "", "0.0.0.0:8082"));
    EXPECT_EQ(claim_sockets(in, app("web", "127.0.0.1:0")).size(), 1u);
    EXPECT_EQ(claim_sockets(in, app("api", "127.0.0.1:8081")).size(), 1u);
    // The same port on another address is not the app's.
    EXPECT_TRUE(claim_sockets(in, app("admin", "127.0.0.1:8082")).empty());
    try {
        check_unclaimed(in);
        FAIL() << "an unclaimed socket from systemd";
    } catch (const core::Error& e) {
        EXPECT_NE(std::string(e.what()).find("named \"unknown\" on 0.0.0.0:8082"),
                  std::string::npos)
            << e.what();
    }
}

TEST(Claim, OneSocketAppsTakeOne) {
    Inherited in = from_systemd();
    in.sockets.push_back(socket_of("web", "", "127.0.0.1:8080"));
    in.sockets.push_back(socket_of("web", "", "127.0.0.1:8081"));
    EXPECT_THROW(claim_sockets(in, app("web", "127.0.0.1:0")), core::Error);
}

}  // namespace
}  // namespace herd::master
