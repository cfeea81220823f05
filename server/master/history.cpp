// The status page's charts; see history.hpp.
#include "master/history.hpp"

#include <algorithm>
#include <cmath>

namespace herd::master {
namespace {

// later - earlier, or later alone when a counter went back (the figures started again).
core::RequestStats minus(const core::RequestStats& later, const core::RequestStats& earlier) {
    core::RequestStats d;
    for (std::size_t i = 0; i < d.by_class.size(); ++i)
        if (later.by_class[i] < earlier.by_class[i]) return later;
    for (std::size_t i = 0; i < d.buckets.size(); ++i)
        if (later.buckets[i] < earlier.buckets[i]) return later;
    for (std::size_t i = 0; i < d.by_class.size(); ++i)
        d.by_class[i] = later.by_class[i] - earlier.by_class[i];
    for (std::size_t i = 0; i < d.buckets.size(); ++i)
        d.buckets[i] = later.buckets[i] - earlier.buckets[i];
    d.latency_sum = std::max(0.0, later.latency_sum - earlier.latency_sum);
    return d;
}

double round_to(double v, double unit) {
    return std::round(v / unit) * unit;
}

}  // namespace

History::History(std::chrono::milliseconds step, std::size_t capacity)
    : step_(step), capacity_(capacity) {}

double History::quantile_ms(const core::RequestStats& s, double q) {
    std::uint64_t n = s.count();
    if (n == 0) return 0;
    const auto& bounds = core::RequestStats::bounds;
    double target = q * static_cast<double>(n);
    double below = 0;
    for (std::size_t i = 0; i < s.buckets.size(); ++i) {
        double in = static_cast<double>(s.buckets[i]);
        if (in > 0 && below + in >= target) {
            if (i == bounds.size()) return bounds.back() * 1000;  // beyond the last bound
            double lower = i == 0 ? 0 : bounds[i - 1];
            double fraction = std::clamp((target - below) / in, 0.0, 1.0);
            return (lower + (bounds[i] - lower) * fraction) * 1000;
        }
        below += in;
    }
    return bounds.back() * 1000;
}

void History::sample(Clock::time_point now, std::int64_t wall_ms,
                     const std::map<std::string, Totals>& apps) {
    std::erase_if(apps_, [&](const auto& entry) { return !apps.contains(entry.first); });
    for (const auto& [name, totals] : apps) {
        auto [it, added] = apps_.try_emplace(name);
        Series& s = it->second;
        if (added) {
            s.at_start = totals;
            s.start = now;
            continue;
        }
        if (now - s.start < step_) continue;
        double seconds = std::chrono::duration<double>(now - s.start).count();
        core::RequestStats d = minus(totals.requests, s.at_start.requests);
        Point p;
        p.end_ms = wall_ms;
        p.requests_per_s = round_to(static_cast<double>(d.count()) / seconds, 0.01);
        p.p50_ms = round_to(quantile_ms(d, 0.5), 0.001);
        p.p99_ms = round_to(quantile_ms(d, 0.99), 0.001);
        p.errors = d.by_class[4];
        p.restarts = totals.restarts >= s.at_start.restarts ? totals.restarts - s.at_start.restarts
                                                            : totals.restarts;
        s.points.push_back(p);
        while (s.points.size() > capacity_) s.points.pop_front();
        // The next step starts now (steps last from `step` to `step` plus the sampling
        // interval; the rate divides by the time that really passed).
        s.at_start = totals;
        s.start = now;
    }
}

const std::deque<History::Point>* History::points(const std::string& app) const {
    auto it = apps_.find(app);
    return it == apps_.end() ? nullptr : &it->second.points;
}

nlohmann::json History::to_json() const {
    nlohmann::json apps = nlohmann::json::object();
    for (const auto& [name, s] : apps_) {
        nlohmann::json list = nlohmann::json::array();
        for (const Point& p : s.points)
            list.push_back({{"t", p.end_ms},
                            {"rps", p.requests_per_s},
                            {"p50_ms", p.p50_ms},
                            {"p99_ms", p.p99_ms},
                            {"errors", p.errors},
                            {"restarts", p.restarts}});
        apps[name] = std::move(list);
    }
    return {{"step_s", std::chrono::duration<double>(step_).count()},
            {"capacity", capacity_},
            {"apps", std::move(apps)}};
}

}  // namespace herd::master
