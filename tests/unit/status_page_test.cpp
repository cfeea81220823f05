// Tests server/master/status_page and the metrics address's credentials check: the page's
// worker rows, state, events and charts come from the status document, every text from it is
// escaped, the page loads nothing from elsewhere; authorized() for bearer and basic.
#include "master/status_page.hpp"

#include <gtest/gtest.h>

#include "master/metrics.hpp"

namespace herd::master {
namespace {

using json = nlohmann::json;

json document() {
    json worker = {{"slot", 0},          {"pid", 4711},        {"state", "ready"},
                   {"generation", 2},    {"uptime_s", 3725.0}, {"restarts", 3},
                   {"requests", 1234},   {"open", 5},          {"rss_kb", 2048},
                   {"cpu_percent", 12.5}};
    json points = json::array();
    for (int i = 0; i < 3; ++i)
        points.push_back({{"t", 1000 * i},
                          {"rps", 100.0 * i},
                          {"p50_ms", 0.5},
                          {"p99_ms", 2.0 + i},
                          {"errors", 0},
                          {"restarts", i == 2 ? 1 : 0}});
    return {{"version", "0.9.0"},
            {"pid", 42},
            {"uptime_s", 90.0},
            {"started", "2026-12-06T08:00:00Z"},
            {"now", "2026-12-06T08:01:30Z"},
            {"reloads", 1},
            {"state",
             {{"backend", "redis"},
              {"target", "redis://:***@127.0.0.1:6379/0"},
              {"up", true},
              {"version", 17},
              {"keys", 3},
              {"broker_pid", 43},
              {"lag", 2},
              {"broker_restarts", 0}}},
            {"apps",
             {{{"name", "web<script>"},
               {"listen", "127.0.0.1:8080"},
               {"balance", "shared"},
               {"state", "running"},
               {"ready", 1},
               {"workers_wanted", 1},
               {"generation", 2},
               {"workers", {worker}},
               {"slots", {{{"slot", 0}, {"last_exit", "exception"}, {"last_exit_s_ago", 65.0}}}}}}},
            {"history", {{"step_s", 1}, {"capacity", 2}, {"apps", {{"web<script>", points}}}}},
            {"events",
             {{{"time", "2026-12-06T08:01:00Z"},
               {"event", "worker.exit"},
               {"pid", 4700},
               {"reason", "exception"}}}}};
}

TEST(StatusPageTest, RendersWorkersStateChartsAndEvents) {
    std::string page = render_status_page(document());
    EXPECT_EQ(page.rfind("<!doctype html>", 0), 0u);
    // The worker's row, with what the status says.
    auto row = page.find("<tr data-pid=\"4711\" data-slot=\"0\">");
    ASSERT_NE(row, std::string::npos) << page;
    std::string cells = page.substr(row, page.find("</tr>", row) - row);
    for (const char* expected : {">ready<", ">1h 02m<", ">3<", ">exception, 1m 05s ago<", ">1234<",
                                 ">5<", ">2.0 MB<", ">12.5 %<"})
        EXPECT_NE(cells.find(expected), std::string::npos) << expected << " in " << cells;
    EXPECT_NE(page.find("redis://:***@127.0.0.1:6379/0"), std::string::npos);
    EXPECT_NE(page.find("<td class=\"warn\">2 version(s) (the furthest-behind worker&#39;s copy)"),
              std::string::npos);
    EXPECT_NE(page.find(">worker.exit<"), std::string::npos);
    EXPECT_NE(page.find("pid 4700, reason exception"), std::string::npos);
    // Charts: a line per series on the time axis (here 2 s wide, ending at the last point), a
    // bar for the step with a restart.
    EXPECT_NE(page.find("<polyline data-series=\"rps\" points=\"4.0,116.0 210.0,60.0 416.0,4.0\""),
              std::string::npos)
        << page;
    EXPECT_NE(page.find("data-series=\"p99_ms\""), std::string::npos);
    // (restarts and 5xx side by side: each half the step)
    EXPECT_NE(page.find("<rect x=\"210.0\" y=\"4.0\" width=\"103.0\" height=\"112.0\""),
              std::string::npos)
        << page;
    // One point: a dot.
    json one = document();
    one["history"]["apps"]["web<script>"] = {one["history"]["apps"]["web<script>"][2]};
    EXPECT_NE(render_status_page(one).find("<circle data-series=\"rps\" cx=\"416.0\" cy=\"4.0\""),
              std::string::npos);
    // The app's name is escaped wherever it appears; no script but the page's own.
    EXPECT_EQ(page.find("web<script>"), std::string::npos);
    EXPECT_NE(page.find("web&lt;script&gt;"), std::string::npos);
    EXPECT_EQ(page.find("<script", page.find("<script>") + 1), std::string::npos);
    // Nothing from elsewhere.
    EXPECT_EQ(page.find("src=\"http"), std::string::npos);
    EXPECT_EQ(page.find("href=\"http"), std::string::npos);
}

TEST(StatusPageTest, WithoutHistoryTheChartsSaySo) {
    json doc = document();
    doc.erase("history");
    doc["apps"][0]["workers"] = json::array();
    std::string page = render_status_page(doc);
    EXPECT_NE(page.find("no figures yet"), std::string::npos);
    EXPECT_EQ(page.find("<tr data-pid="), std::string::npos);
    // A bad document gives a page, not a crash.
    EXPECT_NE(render_status_page(json::array()).find("</html>"), std::string::npos);
    EXPECT_NE(render_status_page(json{{"apps", 3}, {"state", "x"}}).find("</html>"),
              std::string::npos);
    doc = document();
    doc["apps"][0]["workers"][0]["slot"] = "x";
    doc["apps"][0]["slots"] = {7, {{"slot", "y"}}};
    doc["state"]["up"] = "yes";
    doc["history"]["apps"] = {{"web<script>", 5}};
    doc["events"] = {1, "two"};
    EXPECT_NE(render_status_page(doc).find("</html>"), std::string::npos);
}

TEST(StatusPageTest, Escapes) {
    EXPECT_EQ(html_escape("<a href=\"x\">'&'</a>"),
              "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
}

TEST(MetricsAuthTest, BearerAndBasic) {
    core::Config::MetricsAuth none;
    EXPECT_TRUE(authorized(none, ""));
    core::Config::MetricsAuth bearer{"s3cr3t", "", ""};
    EXPECT_TRUE(authorized(bearer, "Bearer s3cr3t"));
    EXPECT_TRUE(authorized(bearer, "bearer s3cr3t"));  // the scheme is case-insensitive
    EXPECT_FALSE(authorized(bearer, "Bearer S3CR3T"));
    EXPECT_FALSE(authorized(bearer, "Bearer s3cr3"));
    EXPECT_FALSE(authorized(bearer, ""));
    core::Config::MetricsAuth basic{"", "ops", "pw"};
    EXPECT_TRUE(authorized(basic, "Basic b3BzOnB3"));  // base64("ops:pw")
    EXPECT_FALSE(authorized(basic, "Basic b3BzOnB4"));
    EXPECT_FALSE(authorized(basic, "Bearer b3BzOnB3"));
}

}  // namespace
}  // namespace herd::master
