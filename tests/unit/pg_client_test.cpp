// Tests herd's PostgreSQL client against a real, private PostgreSQL (initdb + postgres from the
// system's installation, on a temp dir and a free 127.0.0.1 port; as the `postgres` user when
// run as root): URLs (never quoting a password), results and typed JSON, bound parameters and
// NULLs, NUL bytes refused, notices kept off stderr, server errors with their SQLSTATE, the
// pool's limit and its waiting limit, idle connections closing, the query timeout, cancel() and
// the caller's deadline (each checked in pg_stat_activity to have stopped the server's query
// too), a connection whose cancel goes unanswered, refused connections (unknown database, bad
// password), the connect timeout, a host name through c-ares, a Unix socket, destroying a client
// with queries in flight, and a server restart (fail fast, then recover). Waits are bounded and
// scaled by HERD_TIMEOUT_SCALE; nothing waits on a sleep.
#include "client/pg_client.hpp"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using namespace herd::client;
using herd::core::EventLoop;
namespace fs = std::filesystem;

namespace {

double scale() {
    const char* s = std::getenv("HERD_TIMEOUT_SCALE");
    double v = s != nullptr ? std::atof(s) : 1.0;
    return v > 0 ? v : 1.0;
}

std::chrono::milliseconds scaled(std::chrono::milliseconds d) {
    return std::chrono::milliseconds(static_cast<long>(static_cast<double>(d.count()) * scale()));
}

std::string find_bindir() {
    std::string best;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
        fs::path bin = e.path() / "bin";
        if (fs::exists(bin / "postgres") && fs::exists(bin / "initdb") &&
            (best.empty() || bin.string() > best))
            best = bin.string();
    }
    return best;
}

// A private PostgreSQL: its own data dir, socket dir and port; stopped and removed at the end.
class PgServer {
  public:
    bool init(std::string& why) {
        bindir_ = find_bindir();
        if (bindir_.empty()) {
            why = "no PostgreSQL binaries under /usr/lib/postgresql/*/bin (apt install postgresql)";
            return false;
        }
        char tmpl[] = "/tmp/herd-pg-XXXXXX";
        if (mkdtemp(tmpl) == nullptr) {
            why = "mkdtemp failed";
            return false;
        }
        dir_ = tmpl;
        if (geteuid() == 0) {
            passwd* pw = getpwnam("postgres");
            if (pw == nullptr) {
                why = "running as root and there is no `postgres` user to run PostgreSQL as";
                return false;
            }
            uid_ = pw->pw_uid;
            gid_ = pw->pw_gid;
            as_postgres_ = true;
            if (chown(dir_.c_str(), uid_, gid_) != 0) {
                why = "chown " + dir_ + " failed";
                return false;
            }
        }
        port_ = free_port();
        int rc = run({bindir_ + "/initdb", "-D", dir_ + "/data", "-U", "app", "-A", "trust",
                      "--no-sync", "-E", "UTF8", "--locale=C", "--no-instructions"},
                     false);
        if (rc != 0) {
            why = "initdb failed (" + std::to_string(rc) + "): " + log();
            return false;
        }
        // pwuser needs its password over TCP (the bad-password test); everyone else is trusted.
        std::ofstream(dir_ + "/data/pg_hba.conf") << "local all all trust\n"
                                                     "host all pwuser 127.0.0.1/32 scram-sha-256\n"
                                                     "host all pwuser ::1/128 scram-sha-256\n"
                                                     "host all all 127.0.0.1/32 trust\n"
                                                     "host all all ::1/128 trust\n";
        return start(why);
    }

    bool start(std::string& why) {
        pid_ = spawn({bindir_ + "/postgres", "-D", dir_ + "/data", "-p", std::to_string(port_),
                      "-k", dir_, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
                      "max_connections=40"});
        // Ready when a connection works: polled, bounded.
        std::string info = "host=127.0.0.1 port=" + std::to_string(port_) +
                           " dbname=postgres user=app connect_timeout=2";
        auto until = EventLoop::Clock::now() + scaled(30s);
        while (EventLoop::Clock::now() < until) {
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                why = "postgres exited: " + log();
                return false;
            }
            PGconn* c = PQconnectdb(info.c_str());
            bool ok = PQstatus(c) == CONNECTION_OK;
            PQfinish(c);
            if (ok) return true;
            std::this_thread::sleep_for(50ms);  // between polls, not a synchronisation
        }
        why = "postgres not ready within 30 s: " + log();
        return false;
    }

    void stop() {
        if (pid_ <= 0) return;
        (void)kill(pid_, SIGINT);  // fast shutdown: sessions are ended (57P01)
        int status = 0;
        (void)waitpid(pid_, &status, 0);
        pid_ = -1;
    }

    ~PgServer() {
        stop();
        if (!dir_.empty()) {
            std::error_code ec;
            fs::remove_all(dir_, ec);
        }
    }

    int port() const { return port_; }
    std::string url(const std::string& db = "postgres", const std::string& user = "app",
                    const std::string& host = "127.0.0.1") const {
        return "postgresql://" + user + "@" + host + ":" + std::to_string(port_) + "/" + db;
    }
    std::string log() const {
        std::ifstream in(dir_ + "/log");
        std::stringstream s;
        s << in.rdbuf();
        std::string text = s.str();
        return text.size() > 2000 ? text.substr(text.size() - 2000) : text;
    }

  private:
    static int free_port() {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        (void)bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        socklen_t len = sizeof a;
        (void)getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        close(fd);
        return ntohs(a.sin_port);
    }

    pid_t spawn(const std::vector<std::string>& argv) {
        std::string logfile = dir_ + "/log";
        pid_t pid = fork();
        if (pid == 0) {
            int fd = open(logfile.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0666);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
            }
            if (as_postgres_ &&
                (setgroups(0, nullptr) != 0 || setgid(gid_) != 0 || setuid(uid_) != 0))
                _exit(126);
            // Should the test die without its teardown, the server goes too (set after the
            // setuid, which clears it).
            (void)prctl(PR_SET_PDEATHSIG, SIGINT);
            std::vector<char*> args;
            for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
            args.push_back(nullptr);
            execv(args[0], args.data());
            _exit(127);
        }
        return pid;
    }

    int run(const std::vector<std::string>& argv, bool) {
        pid_t pid = spawn(argv);
        int status = 0;
        if (waitpid(pid, &status, 0) != pid) return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

    std::string bindir_, dir_;
    int port_ = 0;
    pid_t pid_ = -1;
    bool as_postgres_ = false;
    uid_t uid_ = 0;
    gid_t gid_ = 0;
};

struct Outcome {
    bool called = false;
    PgResult result;
    std::optional<ClientError> error;
};

// Cancels run on threads the tests join, so that none outlives the test.
std::mutex threads_mutex;
std::vector<std::thread> cancel_threads;
void join_cancel_threads() {
    std::lock_guard lock(threads_mutex);
    for (auto& t : cancel_threads) t.join();
    cancel_threads.clear();
}

class PgClientTest : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        server_ = new PgServer();
        if (!server_->init(setup_error_)) {
            delete server_;
            server_ = nullptr;
        }
    }
    static void TearDownTestSuite() {
        delete server_;
        server_ = nullptr;
        join_cancel_threads();
    }
    void SetUp() override {
        if (server_ == nullptr) GTEST_SKIP() << "no PostgreSQL to test against: " << setup_error_;
    }
    void TearDown() override { join_cancel_threads(); }

    PgClient::Options options(const std::string& url = "") {
        PgClient::Options o;
        o.url = url.empty() ? server_->url() : url;
        o.run_blocking = [](std::function<void()> fn) {
            std::lock_guard lock(threads_mutex);
            cancel_threads.emplace_back(std::move(fn));
        };
        return o;
    }

    // Runs the loop until `done` or a bounded time passes.
    template <class Pred>
    void run_until(Pred done, std::chrono::milliseconds limit = 10s) {
        auto until = EventLoop::Clock::now() + scaled(limit);
        while (!done()) {
            ASSERT_LT(EventLoop::Clock::now(), until) << "timed out";
            loop.run_once(10);
        }
    }

    PgClient::Id start(PgClient& c, PgQuery q, Outcome& out) {
        return c.query(std::move(q), [&out](PgResult r, const ClientError* e) {
            EXPECT_FALSE(out.called) << "done called twice";
            out.called = true;
            out.result = std::move(r);
            if (e != nullptr) out.error.emplace(*e);
        });
    }

    Outcome run(PgClient& c, PgQuery q) {
        Outcome out;
        start(c, std::move(q), out);
        EXPECT_FALSE(out.called) << "done ran inside query()";
        run_until([&] { return out.called; }, 40s);
        return out;
    }
    Outcome run(PgClient& c, const std::string& sql,
                std::vector<std::optional<std::string>> params = {}) {
        PgQuery q;
        q.sql = sql;
        q.params = std::move(params);
        return run(c, std::move(q));
    }

    // Until no server process runs `sql_prefix`... (polled through a client of its own).
    void expect_not_running(const std::string& sql_prefix) {
        PgClient watcher(loop, options());
        auto until = EventLoop::Clock::now() + scaled(10s);
        for (;;) {
            Outcome o = run(watcher,
                            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                            "query LIKE $1",
                            {sql_prefix + "%"});
            ASSERT_FALSE(o.error) << o.error->what();
            ASSERT_EQ(o.result.rows.size(), 1u);
            if (o.result.rows[0][0] == "0") return;
            ASSERT_LT(EventLoop::Clock::now(), until) << sql_prefix << " still runs on the server";
            Outcome pause;
            loop.add_timer(50ms, [&] { pause.called = true; });
            run_until([&] { return pause.called; });
        }
    }

    EventLoop loop;
    static PgServer* server_;
    static std::string setup_error_;
};

PgServer* PgClientTest::server_ = nullptr;
std::string PgClientTest::setup_error_;

// ---- URLs (no server needed) -------------------------------------------------------------

std::string url_error(const std::string& url) {
    try {
        check_pg_url(url);
    } catch (const ClientError& e) {
        EXPECT_EQ(e.kind(), ErrorKind::invalid) << url;
        return e.what();
    }
    ADD_FAILURE() << url << " was accepted";
    return "";
}

TEST(PgUrl, RefusesBadUrlsWithoutQuotingThePassword) {
    EXPECT_NO_THROW(check_pg_url("postgresql://app:pw@127.0.0.1:5432/app"));
    EXPECT_NO_THROW(check_pg_url("postgres://app@db.internal/app?sslmode=disable"));
    EXPECT_NO_THROW(check_pg_url("postgresql://app@%2Ftmp%2Fpg/app"));
    EXPECT_NE(url_error("mysql://app:hunter2@h/db").find("expected postgresql://"),
              std::string::npos);
    EXPECT_NE(url_error("postgresql://app:hunter2@h:99999/db").find("port"), std::string::npos);
    EXPECT_NE(url_error("postgresql://app:hunter2@h:abc/db").find("port"), std::string::npos);
    EXPECT_NE(url_error("postgresql://app:hunter2@a,b/db").find("several hosts"),
              std::string::npos);
    EXPECT_NE(url_error("postgresql://app:hun%zzter2@h/db").find("password"), std::string::npos);
    EXPECT_NE(url_error("postgresql://app:hunter2@h/db?nosuchoption=1").find("nosuchoption"),
              std::string::npos);
    EXPECT_NE(url_error("postgresql://app:hunter2@[::1/db").find("invalid PostgreSQL URL"),
              std::string::npos);
    for (const char* bad :
         {"mysql://app:hunter2@h/db", "postgresql://app:hunter2@h:99999/db",
          "postgresql://app:hunter2@a,b/db", "postgresql://app:hun%zzter2@h/db",
          "postgresql://app:hunter2@h/db?nosuchoption=1", "postgresql://app:hunter2@[::1/db",
          "postgresql://app:hunter2@h:0/db", "postgresql://app:hunter2@/db"}) {
        std::string what = url_error(bad);
        EXPECT_EQ(what.find("hunter2"), std::string::npos) << what;
        EXPECT_EQ(what.find("hun%zz"), std::string::npos) << what;
    }
}

TEST(PgUrl, DescribeLeavesThePasswordOut) {
    EventLoop loop;
    PgClient::Options o;
    o.url = "postgresql://app:hunter2@127.0.0.1:5433/shop";
    PgClient c(loop, o);
    EXPECT_EQ(c.describe(), "postgresql://app@127.0.0.1:5433/shop");
    o.url = "postgres://app@db.internal";
    PgClient d(loop, o);
    EXPECT_EQ(d.describe(), "postgresql://app@db.internal:5432/app");
    o.url = "postgres://app:hunter2@h:0/x";
    try {
        PgClient e(loop, o);
        ADD_FAILURE() << "accepted port 0";
    } catch (const ClientError& e) {
        EXPECT_EQ(e.kind(), ErrorKind::invalid);
        EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos) << e.what();
    }
}

TEST(PgResult, ToJsonTypesByOid) {
    PgResult r;
    r.columns = {"b", "i", "f", "n", "j", "t", "z", "inf", "bad"};
    r.types = {16, 20, 701, 1700, 3802, 25, 23, 701, 23};
    r.rows = {{"t", "-9007199254740993", "1.5", "12345678901234567890.000001", R"({"a":[1,2]})",
               "x", std::nullopt, "Infinity", "12abc"}};
    auto j = r.to_json();
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0]["b"], true);
    EXPECT_EQ(j[0]["i"], -9007199254740993LL);
    EXPECT_EQ(j[0]["f"], 1.5);
    EXPECT_EQ(j[0]["n"], "12345678901234567890.000001");
    EXPECT_EQ(j[0]["j"]["a"][1], 2);
    EXPECT_EQ(j[0]["t"], "x");
    EXPECT_TRUE(j[0]["z"].is_null());
    EXPECT_EQ(j[0]["inf"], "Infinity");
    EXPECT_EQ(j[0]["bad"], "12abc");
    r.rows = {{"1"}};  // a short row never reads past its end
    EXPECT_EQ(r.to_json()[0].size(), 1u);
}

// ---- against the server ------------------------------------------------------------------

TEST_F(PgClientTest, SelectOne) {
    PgClient c(loop, options());
    Outcome o = run(c, "SELECT 1 AS one, 'two' AS two");
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(o.result.columns, (std::vector<std::string>{"one", "two"}));
    EXPECT_EQ(o.result.types, (std::vector<unsigned>{23, 25}));
    ASSERT_EQ(o.result.rows.size(), 1u);
    EXPECT_EQ(o.result.rows[0][0], "1");
    EXPECT_EQ(o.result.command, "SELECT 1");
    EXPECT_EQ(o.result.to_json(), nlohmann::json::parse(R"([{"one":1,"two":"two"}])"));
    auto s = c.stats();
    EXPECT_EQ(s.requests, 1u);
    EXPECT_EQ(s.responses.by_class[1], 1u);  // 2xx
    EXPECT_EQ(s.open, 1u);
    EXPECT_EQ(s.idle, 1u);
}

TEST_F(PgClientTest, ParametersAreBoundVerbatimAndNullsSurvive) {
    PgClient c(loop, options());
    Outcome o = run(c, "CREATE TABLE notes (id serial PRIMARY KEY, body text, extra text)");
    ASSERT_FALSE(o.error) << o.error->what();
    std::string evil = "x'); DROP TABLE notes; --";
    o = run(c, "INSERT INTO notes (body, extra) VALUES ($1, $2), ($3, $4)",
            {evil, std::nullopt, "plain", "e"});
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(o.result.affected, 2u);
    EXPECT_EQ(o.result.command, "INSERT 0 2");
    o = run(c, "SELECT body, extra FROM notes WHERE body = $1", {evil});
    ASSERT_FALSE(o.error) << o.error->what();
    ASSERT_EQ(o.result.rows.size(), 1u);
    EXPECT_EQ(o.result.rows[0][0], evil);
    EXPECT_EQ(o.result.rows[0][1], std::nullopt);
    EXPECT_TRUE(o.result.to_json()[0]["extra"].is_null());
    o = run(c, "SELECT $1::text IS NULL AS n", {std::nullopt});
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(o.result.to_json()[0]["n"], true);
    o = run(c, "DROP TABLE notes");
    EXPECT_FALSE(o.error) << "the table was dropped by the parameter";
}

TEST_F(PgClientTest, TypedJson) {
    PgClient c(loop, options());
    Outcome o = run(c,
                    "SELECT true AS b, 7::int2 AS s, 42 AS i, 9007199254740993::int8 AS l, "
                    "1.25::float8 AS f, 0.5::float4 AS g, 3.14159265358979323846264::numeric AS n, "
                    "'{\"a\":[1,null]}'::json AS j, '{\"k\":\"v\"}'::jsonb AS jb, 'hé'::text AS t, "
                    "NULL::int AS z, 'NaN'::float8 AS nan");
    ASSERT_FALSE(o.error) << o.error->what();
    auto j = o.result.to_json();
    EXPECT_EQ(j, nlohmann::json::parse(R"([{"b":true,"s":7,"i":42,"l":9007199254740993,"f":1.25,
        "g":0.5,"n":"3.14159265358979323846264","j":{"a":[1,null]},"jb":{"k":"v"},"t":"hé",
        "z":null,"nan":"NaN"}])"))
        << j.dump();
}

TEST_F(PgClientTest, ServerErrorsCarryTheirSqlstate) {
    PgClient c(loop, options());
    Outcome o = run(c, "SELECT * FROM nope");
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::server);
    EXPECT_EQ(o.error->code(), "42P01");
    EXPECT_STREQ(o.error->what(), "PostgreSQL: relation \"nope\" does not exist (SQLSTATE 42P01)");
    ASSERT_FALSE(run(c, "CREATE TEMP TABLE u (id int PRIMARY KEY)").error);
    ASSERT_FALSE(run(c, "INSERT INTO u VALUES (1)").error);
    o = run(c, "INSERT INTO u VALUES ($1)", {"1"});
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::server);
    EXPECT_EQ(o.error->code(), "23505");
    EXPECT_NE(std::string(o.error->what()).find("duplicate key"), std::string::npos);
    EXPECT_NE(std::string(o.error->what()).find("Key (id)=(1) already exists"), std::string::npos);
    // The connection is fine after an error (the temp table is still there: same session).
    o = run(c, "SELECT count(*) FROM u");
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(c.counts().connections_opened, 1u);
    EXPECT_EQ(c.counts().reused, 4u);  // every query but the first
    auto s = c.stats();
    EXPECT_EQ(s.errors["server"], 2u);
    EXPECT_EQ(s.responses.by_class[4], 2u);  // recorded as 500
    // Empty and odd statements never crash.
    EXPECT_FALSE(run(c, "").error);
    EXPECT_FALSE(run(c, "SET search_path = public").error);
    o = run(c, "COPY u TO STDOUT");
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::unsupported);
    EXPECT_FALSE(run(c, "SELECT 1").error);
}

TEST_F(PgClientTest, ALargeParameterIsFlushedThroughTheLoop) {
    // Far more than a socket buffer: PQflush says "more" and the loop waits for EPOLLOUT.
    PgClient c(loop, options());
    std::string big(16 * 1024 * 1024, 'x');
    big[12345] = 'y';
    Outcome o = run(c, "SELECT length($1) AS n, position('y' in $1) AS p", {big});
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(o.result.to_json()[0]["n"], 16 * 1024 * 1024);
    EXPECT_EQ(o.result.to_json()[0]["p"], 12346);
    o = run(c, "SELECT repeat('z', 8 * 1024 * 1024) AS r");
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(o.result.rows[0][0]->size(), 8u * 1024 * 1024);
}

TEST_F(PgClientTest, NulBytesAreRefusedAndNoticesStayOffStderr) {
    PgClient c(loop, options());
    Outcome o = run(c, "SELECT $1::text", {std::string("a\0b", 3)});
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::invalid);
    EXPECT_NE(std::string(o.error->what()).find("parameter $1 has a NUL byte"), std::string::npos);
    // A NOTICE from the server is not written to stderr by libpq.
    std::fflush(stderr);
    int saved = dup(2);
    FILE* capture = std::tmpfile();
    ASSERT_NE(capture, nullptr);
    dup2(fileno(capture), 2);
    o = run(c, "DO $$ BEGIN RAISE NOTICE 'herd-notice-marker'; END $$");
    std::fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ASSERT_FALSE(o.error) << o.error->what();
    std::rewind(capture);
    char buffer[4096] = {};
    std::size_t n = std::fread(buffer, 1, sizeof buffer - 1, capture);
    std::fclose(capture);
    EXPECT_EQ(std::string(buffer, n).find("herd-notice-marker"), std::string::npos);
}

TEST_F(PgClientTest, PoolNeverExceedsItsLimit) {
    auto o = options();
    o.max_connections = 2;
    PgClient c(loop, o);
    std::vector<Outcome> outs(5);
    for (auto& out : outs) start(c, PgQuery{"SELECT pg_sleep(0.2)", {}}, out);
    std::size_t most = 0;
    run_until([&] {
        most = std::max<std::size_t>(most, c.stats().open);
        for (auto& out : outs)
            if (!out.called) return false;
        return true;
    });
    for (auto& out : outs) EXPECT_FALSE(out.error) << out.error->what();
    EXPECT_LE(most, 2u);
    EXPECT_EQ(c.counts().connections_opened, 2u);
    EXPECT_EQ(c.stats().waiting, 0u);
    // And the server agrees: no more than two sessions of ours.
    Outcome n = run(c,
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND "
                    "backend_type = 'client backend' AND datname = 'postgres'");
    ASSERT_FALSE(n.error) << n.error->what();
    EXPECT_LE(std::stoi(*n.result.rows[0][0]), 2);
}

TEST_F(PgClientTest, WaitersBeyondMaxWaitingAreOverloaded) {
    auto o = options();
    o.max_connections = 1;
    o.max_waiting = 2;
    PgClient c(loop, o);
    std::vector<Outcome> outs(4);
    for (auto& out : outs) start(c, PgQuery{"SELECT 1", {}}, out);
    run_until([&] { return outs[0].called && outs[1].called && outs[2].called && outs[3].called; });
    EXPECT_FALSE(outs[0].error);
    EXPECT_FALSE(outs[1].error);
    for (int i : {2, 3}) {
        ASSERT_TRUE(outs[i].error);
        EXPECT_EQ(outs[i].error->kind(), ErrorKind::overloaded) << outs[i].error->what();
    }
    EXPECT_EQ(c.stats().errors["overloaded"], 2u);
}

TEST_F(PgClientTest, TimeoutFailsAndCancelsOnTheServer) {
    auto o = options();
    o.max_connections = 1;
    PgClient c(loop, o);
    PgQuery q;
    q.sql = "SELECT pg_sleep(30) -- timeout";
    q.timeout = scaled(300ms);
    auto t0 = EventLoop::Clock::now();
    Outcome out = run(c, std::move(q));
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->kind(), ErrorKind::timeout) << out.error->what();
    EXPECT_LT(EventLoop::Clock::now() - t0, scaled(5s));
    EXPECT_EQ(c.counts().server_cancels, 1u);
    expect_not_running("SELECT pg_sleep(30) -- timeout");
    // The connection comes back once drained: the next query runs on it.
    Outcome next = run(c, "SELECT 2");
    ASSERT_FALSE(next.error) << next.error->what();
    EXPECT_EQ(c.counts().connections_opened, 1u);
    EXPECT_EQ(c.stats().open, 1u);
}

TEST_F(PgClientTest, CancelCallsNoHandlerAndStopsTheServerQuery) {
    auto o = options();
    o.max_connections = 1;
    PgClient c(loop, o);
    Outcome out;
    PgClient::Id id = start(c, PgQuery{"SELECT pg_sleep(30) -- cancel", {}}, out);
    // Until the server runs it.
    PgClient watcher(loop, options());
    for (int i = 0;; ++i) {
        Outcome n = run(watcher, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE $1",
                        {"SELECT pg_sleep(30) -- cancel%"});
        ASSERT_FALSE(n.error);
        if (n.result.rows[0][0] == "1") break;
        ASSERT_LT(i, 200) << "never started";
    }
    EXPECT_TRUE(c.cancel(id));
    EXPECT_FALSE(c.cancel(id));
    expect_not_running("SELECT pg_sleep(30) -- cancel");
    Outcome next = run(c, "SELECT 3");
    ASSERT_FALSE(next.error) << next.error->what();
    EXPECT_FALSE(out.called);
    EXPECT_EQ(c.counts().connections_opened, 1u);
}

TEST_F(PgClientTest, AConnectionNotDrainedInTimeIsClosed) {
    // The cancels are held back: the server keeps running the query, the connection never
    // drains, and after drain_timeout it is closed rather than pooled.
    std::vector<std::function<void()>> held;
    auto o = options();
    o.max_connections = 1;
    o.drain_timeout = scaled(200ms);
    o.run_blocking = [&held](std::function<void()> fn) { held.push_back(std::move(fn)); };
    PgClient c(loop, o);
    PgQuery q;
    q.sql = "SELECT pg_sleep(30) -- held";
    q.timeout = scaled(100ms);
    Outcome out = run(c, std::move(q));
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->kind(), ErrorKind::timeout);
    ASSERT_EQ(held.size(), 1u);
    EXPECT_EQ(c.stats().open, 1u);  // draining, not pooled
    EXPECT_EQ(c.stats().idle, 0u);
    run_until([&] { return c.stats().open == 0; });
    Outcome next = run(c, "SELECT 1");
    ASSERT_FALSE(next.error) << next.error->what();
    EXPECT_EQ(c.counts().connections_opened, 2u);
    for (auto& fn : held) fn();  // the cancel, late: it still stops the server's query
    expect_not_running("SELECT pg_sleep(30) -- held");
}

TEST_F(PgClientTest, IdleConnectionsCloseAfterIdleTimeout) {
    auto o = options();
    o.idle_timeout = scaled(100ms);
    PgClient c(loop, o);
    ASSERT_FALSE(run(c, "SELECT 1").error);
    EXPECT_EQ(c.stats().idle, 1u);
    run_until([&] { return c.stats().open == 0; });
    EXPECT_EQ(c.stats().idle, 0u);
    ASSERT_FALSE(run(c, "SELECT 1").error);
    EXPECT_EQ(c.counts().connections_opened, 2u);
}

TEST_F(PgClientTest, TheDeadlineCutsTheTimeout) {
    PgClient c(loop, options());
    PgQuery q;
    q.sql = "SELECT pg_sleep(30) -- deadline";
    q.timeout = 60s;
    q.deadline = EventLoop::Clock::now() + scaled(200ms);
    auto t0 = EventLoop::Clock::now();
    Outcome out = run(c, std::move(q));
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->kind(), ErrorKind::timeout);
    EXPECT_NE(std::string(out.error->what()).find("deadline"), std::string::npos)
        << out.error->what();
    EXPECT_LT(EventLoop::Clock::now() - t0, scaled(5s));
    expect_not_running("SELECT pg_sleep(30) -- deadline");
    q = PgQuery{"SELECT 1", {}, {}, EventLoop::Clock::now() - 1ms};
    out = run(c, std::move(q));
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->kind(), ErrorKind::timeout);
}

TEST_F(PgClientTest, UnknownDatabaseAndBadPasswordAreNamed) {
    PgClient c(loop, options(server_->url("nope")));
    Outcome o = run(c, "SELECT 1");
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::server) << o.error->what();
    EXPECT_EQ(o.error->code(), "3D000");
    EXPECT_NE(std::string(o.error->what()).find("database \"nope\" does not exist"),
              std::string::npos)
        << o.error->what();

    PgClient admin(loop, options());
    ASSERT_FALSE(run(admin, "CREATE ROLE pwuser LOGIN PASSWORD 'right-secret'").error);
    std::string url =
        "postgresql://pwuser:wrong-s3cret@127.0.0.1:" + std::to_string(server_->port()) +
        "/postgres";
    PgClient bad(loop, options(url));
    EXPECT_EQ(bad.describe().find("wrong-s3cret"), std::string::npos);
    o = run(bad, "SELECT 1");
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->code(), "28P01") << o.error->what();
    EXPECT_NE(std::string(o.error->what()).find("password authentication failed"),
              std::string::npos)
        << o.error->what();
    EXPECT_EQ(std::string(o.error->what()).find("wrong-s3cret"), std::string::npos);
    url = "postgresql://pwuser:right-secret@127.0.0.1:" + std::to_string(server_->port()) +
          "/postgres";
    PgClient good(loop, options(url));
    o = run(good, "SELECT current_user");
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(o.result.rows[0][0], "pwuser");
}

TEST_F(PgClientTest, AHostNameIsResolvedThroughCares) {
    PgClient c(loop, options(server_->url("postgres", "app", "localhost")));
    EXPECT_EQ(c.describe(),
              "postgresql://app@localhost:" + std::to_string(server_->port()) + "/postgres");
    Outcome o = run(c, "SELECT inet_server_addr()::text AS a");
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(o.result.rows[0][0], "127.0.0.1/32");
    PgClient nx(loop, options(server_->url("postgres", "app", "no-such-host.invalid")));
    o = run(nx, "SELECT 1");
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::resolve) << o.error->what();
}

TEST_F(PgClientTest, AUnixSocketDirectoryNeedsNoLookup) {
    // The socket directory is the server's temp dir: find it from the server itself.
    PgClient tcp(loop, options());
    Outcome d = run(tcp, "SELECT setting FROM pg_settings WHERE name = 'unix_socket_directories'");
    ASSERT_FALSE(d.error) << d.error->what();
    std::string dir = *d.result.rows[0][0];
    std::string enc;
    for (char ch : dir) enc += ch == '/' ? std::string("%2F") : std::string(1, ch);
    PgClient c(loop, options("postgresql://app@" + enc + ":" + std::to_string(server_->port()) +
                             "/postgres"));
    Outcome o = run(c, "SELECT inet_server_addr() IS NULL AS unix");
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(o.result.to_json()[0]["unix"], true);
}

TEST_F(PgClientTest, ConnectTimeoutWhenTheServerNeverAnswers) {
    // A listening socket nobody serves: the kernel completes the handshake, nothing answers.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(listen(fd, 8), 0);
    socklen_t len = sizeof a;
    ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
    auto o = options("postgresql://app@127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/db");
    o.connect_timeout = scaled(200ms);
    PgClient c(loop, o);
    auto t0 = EventLoop::Clock::now();
    Outcome out = run(c, "SELECT 1");
    close(fd);
    ASSERT_TRUE(out.error);
    EXPECT_EQ(out.error->kind(), ErrorKind::timeout) << out.error->what();
    EXPECT_NE(std::string(out.error->what()).find("not connected within"), std::string::npos)
        << out.error->what();
    EXPECT_LT(EventLoop::Clock::now() - t0, scaled(3s));
    EXPECT_EQ(c.stats().open, 0u);
}

TEST_F(PgClientTest, DestroyingWithQueriesInFlightCallsNothing) {
    Outcome a, b, w;
    {
        auto o = options();
        o.max_connections = 2;
        o.run_blocking = nullptr;  // the default: a detached thread per cancel
        PgClient c(loop, o);
        start(c, PgQuery{"SELECT pg_sleep(30) -- destroyed", {}}, a);
        start(c, PgQuery{"SELECT pg_sleep(30) -- destroyed", {}}, b);
        start(c, PgQuery{"SELECT 1", {}}, w);  // waits
        run_until(
            [&] { return c.stats().idle == 0 && c.pool().open == 2 && c.stats().waiting == 1; });
        for (int i = 0; i < 20; ++i) loop.run_once(5);
    }
    for (int i = 0; i < 20; ++i) loop.run_once(5);
    EXPECT_FALSE(a.called);
    EXPECT_FALSE(b.called);
    EXPECT_FALSE(w.called);
    expect_not_running("SELECT pg_sleep(30) -- destroyed");
}

// Last: it restarts the server.
TEST_F(PgClientTest, ServerRestartFailsFastThenRecovers) {
    PgClient c(loop, options());
    ASSERT_FALSE(run(c, "SELECT 1").error);
    Outcome running;
    start(c, PgQuery{"SELECT pg_sleep(10) -- restart", {}}, running);
    PgClient watcher(loop, options());
    ASSERT_FALSE(run(watcher, "SELECT 1").error);  // idle in its pool when the server goes
    for (int i = 0; i < 20; ++i) loop.run_once(5);
    auto t0 = EventLoop::Clock::now();
    server_->stop();
    run_until([&] { return running.called; });
    ASSERT_TRUE(running.error);
    EXPECT_EQ(running.error->kind(), ErrorKind::closed) << running.error->what();
    // Down: the first query finds the server gone, the next fail at once (back-off).
    Outcome first = run(c, "SELECT 1");
    ASSERT_TRUE(first.error);
    EXPECT_EQ(first.error->kind(), ErrorKind::connect) << first.error->what();
    Outcome second = run(c, "SELECT 1");
    ASSERT_TRUE(second.error);
    EXPECT_EQ(second.error->kind(), ErrorKind::connect);
    EXPECT_NE(std::string(second.error->what()).find("is down"), std::string::npos)
        << second.error->what();
    EXPECT_NE(std::string(second.error->what()).find("next attempt in"), std::string::npos);
    EXPECT_LT(EventLoop::Clock::now() - t0, scaled(5s));
    // The watcher's idle connection was dropped when the server ended it.
    EXPECT_EQ(watcher.stats().open, 0u);

    std::string why;
    ASSERT_TRUE(server_->start(why)) << why;
    auto until = EventLoop::Clock::now() + scaled(20s);
    for (;;) {
        Outcome o = run(c, "SELECT 42");
        if (!o.error) {
            EXPECT_EQ(o.result.rows[0][0], "42");
            break;
        }
        EXPECT_EQ(o.error->kind(), ErrorKind::connect) << o.error->what();
        ASSERT_LT(EventLoop::Clock::now(), until) << o.error->what();
        Outcome pause;
        loop.add_timer(50ms, [&] { pause.called = true; });
        run_until([&] { return pause.called; });
    }
    EXPECT_FALSE(run(watcher, "SELECT 1").error);
}

}  // namespace
