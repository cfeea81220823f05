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

TEST(ClientStatsTest, JsonRoundTripSumsAndBadShapesRefused) {
    herd::core::ClientStats s;
    s.requests = 4;
    s.responses.record(200, 0.003);
    s.errors["timeout"] = 2;
    s.open = 3;
    s.idle = 1;
    s.waiting = 5;
    herd::core::ClientStats back;
    ASSERT_TRUE(herd::core::ClientStats::from_json(s.to_json(), back));
    EXPECT_EQ(back.requests, 4u);
    EXPECT_EQ(back.responses.count(), 1u);
    EXPECT_EQ(back.errors.at("timeout"), 2u);
    EXPECT_EQ(back.waiting, 5u);
    herd::core::ClientStats sum = s.counters();
    EXPECT_EQ(sum.open, 0u);  // a gone worker leaves no pool
    sum += s;
    EXPECT_EQ(sum.requests, 8u);
    EXPECT_EQ(sum.errors.at("timeout"), 4u);
    EXPECT_EQ(sum.open, 3u);
    for (const char* bad :
         {R"([])", R"({"requests":1})",
          R"({"requests":-1,"open":0,"idle":0,"waiting":0,"errors":{},"responses":{}})",
          R"({"requests":1,"open":0,"idle":0,"waiting":0,"errors":{"x":"y"},)"
          R"("responses":{"by_class":[0,0,0,0,0],"buckets":[0,0,0,0,0,0,0,0,0,0,0,0],)"
          R"("latency_sum":0}})"}) {
        herd::core::ClientStats untouched = s;
        EXPECT_FALSE(herd::core::ClientStats::from_json(nlohmann::json::parse(bad), untouched))
            << bad;
        EXPECT_EQ(untouched.requests, 4u);
    }
}

TEST(RenderMetricsTest, HttpClientFamilies) {
    MasterMetrics m;
    AppMetrics a;
    a.name = "web";
    a.clients["http"].requests = 3;
    a.clients["http"].responses.record(200, 0.002);
    a.clients["http"].responses.record(503, 0.2);
    a.clients["http"].errors["connect"] = 1;
    a.clients["http"].open = 2;
    a.clients["http"].idle = 1;
    a.clients["http"].waiting = 4;
    m.apps.push_back(a);
    std::string t = render_metrics(m);
    for (const char* line :
         {"# TYPE herd_http_client_requests_total counter\n",
          "herd_http_client_requests_total{app=\"web\"} 3\n",
          "herd_http_client_responses_total{app=\"web\",code=\"2xx\"} 1\n",
          "herd_http_client_responses_total{app=\"web\",code=\"5xx\"} 1\n",
          "herd_http_client_errors_total{app=\"web\",kind=\"connect\"} 1\n",
          "herd_http_client_duration_seconds_bucket{app=\"web\",le=\"0.0025\"} 1\n",
          "herd_http_client_duration_seconds_bucket{app=\"web\",le=\"+Inf\"} 2\n",
          "herd_http_client_duration_seconds_count{app=\"web\"} 2\n",
          "herd_http_client_connections{app=\"web\",state=\"open\"} 2\n",
          "herd_http_client_connections{app=\"web\",state=\"idle\"} 1\n",
          "herd_http_client_waiting{app=\"web\"} 4\n"})
        EXPECT_NE(t.find(line), std::string::npos) << line << t;
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

TEST(RenderMetricsTest, SentinelPrimaryAndFailovers) {
    MasterMetrics m;
    m.state_known = true;
    std::string plain = render_metrics(m);
    EXPECT_EQ(plain.find("herd_state_primary"), std::string::npos) << "only with sentinels";
    m.state_primary = MasterMetrics::Primary{"127.0.0.1:6380", "master", 2};
    std::string t = render_metrics(m);
    EXPECT_NE(t.find("herd_state_primary{address=\"127.0.0.1:6380\",role=\"master\"} 1\n"),
              std::string::npos)
        << t;
    EXPECT_NE(t.find("# TYPE herd_state_failovers_total counter\nherd_state_failovers_total 2\n"),
              std::string::npos)
        << t;
    EXPECT_EQ(t.find("herd_state_unconfirmed_writes_total"), std::string::npos)
        << "only with min_replicas_ack";
    m.state_unconfirmed_writes = 7;
    t = render_metrics(m);
    EXPECT_NE(t.find("# TYPE herd_state_unconfirmed_writes_total counter\n"
                     "herd_state_unconfirmed_writes_total 7\n"),
              std::string::npos)
        << t;
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
