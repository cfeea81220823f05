// Tests server/top's frame: the header, the state, each app's workers with their rates from
// the previous counts, the last exits, cutting to the terminal's width and height, the problem
// line, and documents of the wrong shape.
#include "top.hpp"

#include <sstream>
#include <vector>

#include <gtest/gtest.h>

namespace herd::cli {
namespace {

using json = nlohmann::json;

json status() {
    json w0 = {{"slot", 0},      {"pid", 101},         {"state", "ready"}, {"generation", 1},
               {"uptime_s", 75}, {"restarts", 0},      {"requests", 1500}, {"open", 2},
               {"rss_kb", 7475}, {"cpu_percent", 12.5}};
    json w1 = w0;
    w1["slot"] = 1;
    w1["pid"] = 102;
    w1["requests"] = 900;
    w1["restarts"] = 1;
    return {{"ok", true},
            {"version", "0.1.0"},
            {"pid", 100},
            {"uptime_s", 3700},
            {"reloads", 2},
            {"state",
             {{"backend", "file"},
              {"target", "/srv/app.state.json"},
              {"up", true},
              {"version", 4},
              {"keys", 2},
              {"broker_pid", 103}}},
            {"apps",
             {{{"name", "web"},
               {"listen", "127.0.0.1:8080"},
               {"balance", "shared"},
               {"state", "running"},
               {"ready", 2},
               {"workers_wanted", 2},
               {"generation", 1},
               {"workers", {w0, w1}},
               {"slots", {{{"slot", 1}, {"last_exit", "exception"}, {"last_exit_s_ago", 12}}}}}}}};
}

std::vector<std::string> lines(const std::string& frame) {
    std::vector<std::string> out;
    std::istringstream in(frame);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

TEST(TopTest, AFrameWithRates) {
    RequestCounts before = {{101, 1000}, {102, 900}};
    std::string frame = render_top(status(), before, 2.0, 200, 50);
    auto l = lines(frame);
    ASSERT_GE(l.size(), 7u) << frame;
    EXPECT_EQ(l[0].rfind("herd 0.1.0 - master pid 100 - up 1h 01m - 2 reload(s) - ", 0), 0u);
    EXPECT_NE(l[0].find("(q quits)"), std::string::npos);
    EXPECT_EQ(l[1], "state: file /srv/app.state.json, up, version 4, 2 key(s), broker pid 103");
    EXPECT_EQ(l[3],
              "app web on 127.0.0.1:8080 (shared): running, 2 of 2 ready, generation 1, "
              "250.0 req/s");
    EXPECT_NE(l[4].find("REQ/S"), std::string::npos);
    // 500 requests in 2 s; none.
    EXPECT_EQ(l[5],
              "  0    101      ready        1   1m 15s        0     250.0       1500      2"
              "    7.3MB  12.5%");
    EXPECT_NE(l[6].find("  1    102      ready"), std::string::npos);
    EXPECT_NE(l[6].find("       0.0        900"), std::string::npos) << l[6];
    EXPECT_EQ(l[7], "  slot 1: last worker exception, 12s ago");
    EXPECT_EQ(request_counts(status()), (RequestCounts{{101, 1500}, {102, 900}}));
}

TEST(TopTest, FirstFrameNoRatesAndANewWorkerHasNone) {
    std::string frame = render_top(status(), {}, 0, 200, 50);
    EXPECT_EQ(frame.find("req/s"), std::string::npos) << frame;
    auto l = lines(frame);
    EXPECT_NE(l[5].find("        -       1500"), std::string::npos) << l[5];
    // A worker not counted before (a replacement): no rate for it yet.
    frame = render_top(status(), {{101, 1000}}, 1.0, 200, 50);
    EXPECT_NE(lines(frame)[6].find("        -        900"), std::string::npos) << frame;
}

TEST(TopTest, CutToTheTerminalAndShowsTheProblem) {
    std::string frame = render_top(status(), {}, 0, 30, 4, "cannot reach the master: gone");
    auto l = lines(frame);
    ASSERT_EQ(l.size(), 4u);
    for (const auto& line : l) EXPECT_LE(line.size(), 30u) << line;
    EXPECT_EQ(l[1], "!! cannot reach the master: go");
}

TEST(TopTest, DocumentsOfTheWrongShapeGiveAFrame) {
    EXPECT_FALSE(render_top(json::array(), {}, 0, 80, 24).empty());
    json s = status();
    s["apps"][0]["workers"] = {1, "x", {{"pid", "y"}}};
    s["state"]["up"] = "yes";
    s["apps"][0]["slots"] = 3;
    EXPECT_FALSE(render_top(s, {{0, 5}}, 1, 80, 24).empty());
    EXPECT_TRUE(request_counts(json{{"apps", 7}}).empty());
}

}  // namespace
}  // namespace herd::cli
