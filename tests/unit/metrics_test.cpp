// Tests the metrics text (Prometheus exposition format), the request figures' wire form, and
// the master's line splitting of worker output (OutputReader over a real pipe).
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/event_loop.hpp"
#include "core/request_stats.hpp"
#include "master/metrics.hpp"
#include "master/output.hpp"

using herd::core::RequestStats;
using herd::master::AppMetrics;
using herd::master::MasterMetrics;
using herd::master::render_metrics;

TEST(RequestStatsTest, RecordsClassesAndBuckets) {
    RequestStats s;
    s.record(200, 0.00005);  // first bucket
    s.record(404, 0.003);    // le 0.005
    s.record(503, 100.0);    // +Inf
    s.record(99, 0.0);       // no class, still timed
    EXPECT_EQ(s.by_class[1], 1u);
    EXPECT_EQ(s.by_class[3], 1u);
    EXPECT_EQ(s.by_class[4], 1u);
    EXPECT_EQ(s.buckets[0], 2u);
    EXPECT_EQ(s.buckets[5], 1u);
    EXPECT_EQ(s.buckets.back(), 1u);
    EXPECT_EQ(s.count(), 4u);
}

TEST(RequestStatsTest, JsonRoundTripAndBadShapesRefused) {
    RequestStats s;
    s.record(200, 0.001);
    RequestStats back;
    ASSERT_TRUE(RequestStats::from_json(s.to_json(), back));
    EXPECT_EQ(back.by_class, s.by_class);
    EXPECT_EQ(back.buckets, s.buckets);
    for (const char* bad : {R"(null)", R"({"by_class": [1,2], "buckets": [], "latency_sum": 0})",
                            R"({"by_class": [1,2,3,4,-5], "buckets": [0,0,0,0,0,0,0,0,0,0,0,0],
                                "latency_sum": 0})",
                            R"({"by_class": [0,0,0,0,0], "buckets": [0,0,0,0,0,0,0,0,0,0,0,0],
                                "latency_sum": "x"})"}) {
        RequestStats untouched = s;
        EXPECT_FALSE(RequestStats::from_json(nlohmann::json::parse(bad), untouched)) << bad;
        EXPECT_EQ(untouched.by_class, s.by_class);
    }
}

TEST(RenderMetricsTest, ExpositionFormat) {
    MasterMetrics m;
    m.reloads = 2;
    m.reload_failures = 1;
    AppMetrics a;
    a.name = "we\"b";
    a.generation = 3;
    a.requests.record(200, 0.0002);
    a.requests.record(200, 0.002);
    a.open_connections = 5;
    a.restarts["signal"] = 4;
    a.workers["ready"] = 2;
    a.worker_rss.push_back({0, 42, 4096});
    m.apps.push_back(a);
    std::string t = render_metrics(m);
    EXPECT_NE(t.find("# TYPE herd_requests_total counter\n"), std::string::npos);
    EXPECT_NE(t.find("herd_requests_total{app=\"we\\\"b\",code=\"2xx\"} 2\n"), std::string::npos)
        << t;
    // Cumulative buckets: 0 up to 0.0001, 1 from 0.00025, 2 from 0.0025.
    EXPECT_NE(t.find("le=\"0.0001\"} 0\n"), std::string::npos) << t;
    EXPECT_NE(t.find("le=\"0.00025\"} 1\n"), std::string::npos) << t;
    EXPECT_NE(t.find("le=\"0.0025\"} 2\n"), std::string::npos) << t;
    EXPECT_NE(t.find("le=\"+Inf\"} 2\n"), std::string::npos) << t;
    EXPECT_NE(t.find("herd_request_duration_seconds_count{app=\"we\\\"b\"} 2\n"),
              std::string::npos);
    EXPECT_NE(t.find("herd_open_connections{app=\"we\\\"b\"} 5\n"), std::string::npos);
    EXPECT_NE(t.find("herd_worker_restarts_total{app=\"we\\\"b\",reason=\"signal\"} 4\n"),
              std::string::npos);
    EXPECT_NE(t.find("herd_worker_resident_bytes{app=\"we\\\"b\",slot=\"0\",pid=\"42\"} 4096\n"),
              std::string::npos);
    EXPECT_NE(t.find("herd_reloads_total{result=\"ok\"} 2\n"), std::string::npos);
    EXPECT_NE(t.find("herd_reloads_total{result=\"failed\"} 1\n"), std::string::npos);
}

TEST(OutputReaderTest, SplitsLinesCutsLongOnesAndFlushesThePartialAtEnd) {
    herd::core::EventLoop loop;
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    std::vector<std::string> lines;
    bool eof = false;
    herd::master::OutputReader reader(
        loop, herd::core::UniqueFd(p[0]), [&](std::string_view line) { lines.emplace_back(line); },
        [&] { eof = true; });
    std::string text =
        "one\ntwo\n" + std::string(herd::master::OutputReader::max_line + 3, 'x') + "\nunfinished";
    ASSERT_EQ(write(p[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
    close(p[1]);
    reader.drain();
    ASSERT_EQ(lines.size(), 5u);
    EXPECT_EQ(lines[0], "one");
    EXPECT_EQ(lines[1], "two");
    EXPECT_EQ(lines[2].size(), herd::master::OutputReader::max_line);
    EXPECT_EQ(lines[3], "xxx");
    EXPECT_EQ(lines[4], "unfinished");
    EXPECT_TRUE(eof);
    EXPECT_TRUE(reader.done());
}
