// The health endpoint ("health": "127.0.0.1:9101" in the config, GET /healthz): what a load
// balancer's health check asks of a host. Answered by the master itself from what it knows
// (no worker is asked, so a busy worker never makes the check time out). judge_health is
// pure and unit-tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace herd::master {

struct HealthInput {
    bool stopping = false;     // draining for a stop, or handed over to a new master
    bool taking_over = false;  // a new master not yet serving (an upgrade)
    bool started = false;      // every app has been ready once
    struct App {
        std::string name;
        int ready = 0;  // workers that take connections now
    };
    std::vector<App> apps;
    // The shared state as the broker last reported it; nothing while no broker has reported.
    std::optional<bool> state_up;
    std::int64_t state_down_ms = 0;  // how long its backend has been down
    std::string state_error;         // the backend's last error
    int max_state_age_ms = 0;        // "health_max_state_age_ms"; 0: never unhealthy for it
};

struct HealthVerdict {
    int status = 200;  // 200 or 503
    std::string body;  // "ok\n", or why not, one line
};

HealthVerdict judge_health(const HealthInput& in);

}  // namespace herd::master
