// What a worker's clients did (requests started, responses with their latency (by status class
// for HTTP), errors by kind) and their pools now (connections open and idle, requests waiting):
// sent in the heartbeat, added up per app by the master for /metrics. One per client: "http",
// "redis", "postgres" (ClientStatsMap).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/request_stats.hpp"

namespace herd::core {

struct ClientStats {
    std::uint64_t requests = 0;                     // exchanges started
    RequestStats responses;                         // completed, by status class and latency
    std::map<std::string, std::uint64_t> errors;    // failed, by kind ("timeout", ...)
    std::uint64_t open = 0, idle = 0, waiting = 0;  // gauges: the pool now

    // Counters and gauges alike (over the workers of an app).
    ClientStats& operator+=(const ClientStats& o) {
        requests += o.requests;
        responses += o.responses;
        for (const auto& [kind, n] : o.errors) errors[kind] += n;
        open += o.open;
        idle += o.idle;
        waiting += o.waiting;
        return *this;
    }
    // A worker that is gone leaves its counters, not its pool.
    ClientStats counters() const {
        ClientStats c = *this;
        c.open = c.idle = c.waiting = 0;
        return c;
    }
    nlohmann::json to_json() const {
        return {{"requests", requests}, {"responses", responses.to_json()},
                {"errors", errors},     {"open", open},
                {"idle", idle},         {"waiting", waiting}};
    }
    // From a heartbeat; false (and `out` untouched) when the shape is wrong.
    static bool from_json(const nlohmann::json& j, ClientStats& out) {
        if (!j.is_object()) return false;
        ClientStats s;
        for (auto [key, field] : {std::pair{"requests", &s.requests}, std::pair{"open", &s.open},
                                  std::pair{"idle", &s.idle}, std::pair{"waiting", &s.waiting}}) {
            if (!j.contains(key) || !j[key].is_number_unsigned()) return false;
            *field = j[key].get<std::uint64_t>();
        }
        if (!j.contains("responses") || !RequestStats::from_json(j["responses"], s.responses))
            return false;
        if (!j.contains("errors") || !j["errors"].is_object() || j["errors"].size() > 32)
            return false;
        for (const auto& [kind, n] : j["errors"].items()) {
            if (!n.is_number_unsigned() || kind.size() > 32) return false;
            s.errors[kind] = n.get<std::uint64_t>();
        }
        out = std::move(s);
        return true;
    }
};

// The clients' figures by name ("http", "redis", "postgres"): the heartbeat's "clients".
using ClientStatsMap = std::map<std::string, ClientStats>;

inline const std::vector<std::string>& client_names() {
    static const std::vector<std::string> names = {"http", "redis", "postgres"};
    return names;
}

inline ClientStatsMap& operator+=(ClientStatsMap& a, const ClientStatsMap& b) {
    for (const auto& [name, s] : b) a[name] += s;
    return a;
}
inline ClientStatsMap counters(const ClientStatsMap& m) {
    ClientStatsMap c;
    for (const auto& [name, s] : m) c[name] = s.counters();
    return c;
}
inline nlohmann::json to_json(const ClientStatsMap& m) {
    nlohmann::json j = nlohmann::json::object();
    for (const auto& [name, s] : m) j[name] = s.to_json();
    return j;
}
// False (and `out` untouched) when the shape is wrong or a client is not one herd has.
inline bool from_json(const nlohmann::json& j, ClientStatsMap& out) {
    if (!j.is_object()) return false;
    ClientStatsMap m;
    for (const auto& [name, s] : j.items()) {
        const auto& names = client_names();
        if (std::find(names.begin(), names.end(), name) == names.end()) return false;
        if (!ClientStats::from_json(s, m[name])) return false;
    }
    out = std::move(m);
    return true;
}

}  // namespace herd::core
