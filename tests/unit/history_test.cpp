// Tests server/master/history: quantiles from the latency histogram, one point per step with
// the step's rate, latency, errors and restarts, figures that start again (an upgrade's new
// master), apps forgotten, and the memory bound over two hours of samples on a made-up clock.
#include "master/history.hpp"

#include <gtest/gtest.h>

namespace herd::master {
namespace {

using namespace std::chrono_literals;
using Clock = History::Clock;

// n requests of `seconds` each, answered with `status`.
void add(core::RequestStats& s, int n, double seconds, int status = 200) {
    for (int i = 0; i < n; ++i) s.record(status, seconds);
}

TEST(HistoryTest, QuantilesInterpolateInsideTheBucket) {
    core::RequestStats s;
    EXPECT_EQ(History::quantile_ms(s, 0.5), 0);
    add(s, 100, 0.002);  // all in (1 ms, 2.5 ms]
    EXPECT_DOUBLE_EQ(History::quantile_ms(s, 0.5), 1.75);
    EXPECT_DOUBLE_EQ(History::quantile_ms(s, 1.0), 2.5);
    add(s, 100, 0.00005);  // and as many in [0, 0.1 ms]
    EXPECT_DOUBLE_EQ(History::quantile_ms(s, 0.5), 0.1);
    EXPECT_NEAR(History::quantile_ms(s, 0.99), 1.0 + 1.5 * 0.98, 1e-9);
    core::RequestStats slow;
    add(slow, 10, 60.0);  // past the last bound: the last bound
    EXPECT_DOUBLE_EQ(History::quantile_ms(slow, 0.99), 5000);
}

TEST(HistoryTest, OnePointPerStepWithItsRateLatencyErrorsAndRestarts) {
    History h(5s, 720);
    Clock::time_point t{};
    History::Totals web;
    h.sample(t, 1000, {{"web", web}});
    ASSERT_NE(h.points("web"), nullptr);
    EXPECT_TRUE(h.points("web")->empty());
    add(web.requests, 500, 0.0008);
    add(web.requests, 20, 0.0008, 503);
    web.restarts = 2;
    h.sample(t + 4s, 5000, {{"web", web}});  // the step has not ended
    EXPECT_TRUE(h.points("web")->empty());
    h.sample(t + 5s, 6000, {{"web", web}});
    ASSERT_EQ(h.points("web")->size(), 1u);
    History::Point p = h.points("web")->back();
    EXPECT_EQ(p.end_ms, 6000);
    EXPECT_DOUBLE_EQ(p.requests_per_s, 104);  // 520 in 5 s
    EXPECT_GT(p.p50_ms, 0.5);
    EXPECT_LE(p.p99_ms, 1.0);
    EXPECT_EQ(p.errors, 20u);
    EXPECT_EQ(p.restarts, 2u);
    // A quiet step: zeros, not the totals again.
    h.sample(t + 10s, 11000, {{"web", web}});
    ASSERT_EQ(h.points("web")->size(), 2u);
    p = h.points("web")->back();
    EXPECT_EQ(p.requests_per_s, 0);
    EXPECT_EQ(p.p99_ms, 0);
    EXPECT_EQ(p.errors, 0u);
    EXPECT_EQ(p.restarts, 0u);
    nlohmann::json j = h.to_json();
    EXPECT_EQ(j["step_s"], 5.0);
    EXPECT_EQ(j["apps"]["web"].size(), 2u);
    EXPECT_EQ(j["apps"]["web"][0]["rps"], 104.0);
    EXPECT_EQ(j["apps"]["web"][0]["errors"], 20);
}

TEST(HistoryTest, FiguresThatStartAgainCountFromZero) {
    History h(5s, 720);
    Clock::time_point t{};
    History::Totals web;
    add(web.requests, 1000, 0.001);
    web.restarts = 7;
    h.sample(t, 0, {{"web", web}});
    History::Totals again;  // smaller than before: counted from zero
    add(again.requests, 50, 0.001);
    again.restarts = 1;
    h.sample(t + 5s, 5000, {{"web", again}});
    ASSERT_EQ(h.points("web")->size(), 1u);
    EXPECT_DOUBLE_EQ(h.points("web")->back().requests_per_s, 10);
    EXPECT_EQ(h.points("web")->back().restarts, 1u);
}

TEST(HistoryTest, BoundedOverHoursAndAppsThatLeaveAreForgotten) {
    History h(5s, 720);  // an hour
    Clock::time_point t{};
    History::Totals web, api;
    for (int second = 0; second <= 2 * 3600; ++second) {
        add(web.requests, 3, 0.001);
        add(api.requests, 1, 0.001);
        h.sample(t + std::chrono::seconds(second), second * 1000LL, {{"web", web}, {"api", api}});
        ASSERT_LE(h.points("web")->size(), 720u);
    }
    EXPECT_EQ(h.points("web")->size(), 720u);
    EXPECT_EQ(h.points("api")->size(), 720u);
    // The oldest point kept is an hour old: the first hour's are gone.
    EXPECT_EQ(h.points("web")->front().end_ms, (2 * 3600 - 719 * 5) * 1000LL);
    EXPECT_DOUBLE_EQ(h.points("web")->back().requests_per_s, 3);
    h.sample(t + 7201s, 7201000, {{"web", web}});
    EXPECT_EQ(h.points("api"), nullptr);
    EXPECT_EQ(h.to_json()["apps"].size(), 1u);
}

}  // namespace
}  // namespace herd::master
