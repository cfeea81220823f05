// Request figures a worker keeps for metrics: responses by status class and a latency
// histogram. Counters only grow; they travel in heartbeats and the master adds them up.
#pragma once

#include <array>
#include <cstdint>

#include <nlohmann/json.hpp>

namespace herd::core {

struct RequestStats {
    // Upper bounds of the latency buckets in seconds (Prometheus "le"); one more for +Inf.
    static constexpr std::array<double, 11> bounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                      0.01,   0.05,    0.25,   1.0,   5.0};
    std::array<std::uint64_t, 5> by_class{};                 // 1xx .. 5xx
    std::array<std::uint64_t, bounds.size() + 1> buckets{};  // per bucket, not cumulative
    double latency_sum = 0;                                  // seconds

    void record(int status, double seconds) {
        if (status >= 100 && status < 600) ++by_class[static_cast<std::size_t>(status / 100 - 1)];
        std::size_t i = 0;
        while (i < bounds.size() && seconds > bounds[i]) ++i;
        ++buckets[i];
        latency_sum += seconds;
    }
    std::uint64_t count() const {
        std::uint64_t n = 0;
        for (auto b : buckets) n += b;
        return n;
    }
    RequestStats& operator+=(const RequestStats& o) {
        for (std::size_t i = 0; i < by_class.size(); ++i) by_class[i] += o.by_class[i];
        for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
        latency_sum += o.latency_sum;
        return *this;
    }

    nlohmann::json to_json() const {
        return {{"by_class", by_class}, {"buckets", buckets}, {"latency_sum", latency_sum}};
    }
    // From a heartbeat; false (and `out` untouched) when the shape is wrong.
    static bool from_json(const nlohmann::json& j, RequestStats& out) {
        if (!j.is_object() || !j.contains("by_class") || !j.contains("buckets") ||
            !j.contains("latency_sum"))
            return false;
        const auto& c = j["by_class"];
        const auto& b = j["buckets"];
        if (!c.is_array() || c.size() != out.by_class.size() || !b.is_array() ||
            b.size() != out.buckets.size() || !j["latency_sum"].is_number())
            return false;
        RequestStats s;
        for (std::size_t i = 0; i < s.by_class.size(); ++i) {
            if (!c[i].is_number_unsigned()) return false;
            s.by_class[i] = c[i].get<std::uint64_t>();
        }
        for (std::size_t i = 0; i < s.buckets.size(); ++i) {
            if (!b[i].is_number_unsigned()) return false;
            s.buckets[i] = b[i].get<std::uint64_t>();
        }
        s.latency_sum = j["latency_sum"].get<double>();
        out = s;
        return true;
    }
};

}  // namespace herd::core
