// The status page's charts: for each app, one point per step (5 s by default) over the last
// hour, made from figures the master already has: the app's request counters and latency
// histogram (its workers' heartbeats, live and gone, summed) and its restarts. At most
// `capacity` points per app, and an app that is no longer given is forgotten: the memory is
// bounded however long herd runs. Pure: the caller gives the time (unit-tested with a made-up
// clock); the master samples it every second.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "core/request_stats.hpp"

namespace herd::master {

class History {
  public:
    using Clock = std::chrono::steady_clock;
    struct Point {
        std::int64_t end_ms = 0;  // wall clock at the end of the step (ms since the epoch)
        double requests_per_s = 0;
        double p50_ms = 0, p99_ms = 0;  // estimated from the histogram; 0 without requests
        std::uint64_t errors = 0;       // 5xx answers in the step
        std::uint64_t restarts = 0;     // workers replaced in the step
    };
    // An app's figures so far (they only grow; smaller ones mean they started again: an
    // upgrade's new master).
    struct Totals {
        core::RequestStats requests;
        std::uint64_t restarts = 0;
    };

    explicit History(std::chrono::milliseconds step = std::chrono::seconds(5),
                     std::size_t capacity = 720);

    // The apps' totals now: closes the step once it has ended. Apps not given are forgotten.
    void sample(Clock::time_point now, std::int64_t wall_ms,
                const std::map<std::string, Totals>& apps);

    const std::deque<Point>* points(const std::string& app) const;
    std::chrono::milliseconds step() const { return step_; }
    std::size_t capacity() const { return capacity_; }

    // {"step_s": 5, "capacity": 720, "apps": {"web": [{"t": ms, "rps": .., "p50_ms": ..,
    // "p99_ms": .., "errors": .., "restarts": ..}, ...]}}
    nlohmann::json to_json() const;

    // The q-quantile (0..1) of the latencies a histogram counts, in ms, interpolated inside
    // its bucket as Prometheus's histogram_quantile does (the +Inf bucket gives the last
    // bound); 0 when it counts nothing.
    static double quantile_ms(const core::RequestStats& s, double q);

  private:
    struct Series {
        Totals at_start;  // the totals when the current step began
        Clock::time_point start{};
        std::deque<Point> points;
    };
    std::chrono::milliseconds step_;
    std::size_t capacity_;
    std::map<std::string, Series> apps_;
};

}  // namespace herd::master
