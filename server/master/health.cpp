// The health verdict; see health.hpp.
#include "master/health.hpp"

#include <fmt/format.h>

namespace herd::master {

HealthVerdict judge_health(const HealthInput& in) {
    auto unhealthy = [](std::string why) { return HealthVerdict{503, why + "\n"}; };
    if (in.stopping) return unhealthy("draining: herd is stopping");
    if (in.taking_over || !in.started) return unhealthy("starting: not every app is ready yet");
    for (const HealthInput::App& app : in.apps)
        if (app.ready == 0)
            return unhealthy("app \"" + app.name + "\" has no worker ready (restarting or failed)");
    if (in.max_state_age_ms > 0 && in.state_up.has_value() && !*in.state_up &&
        in.state_down_ms > in.max_state_age_ms)
        return unhealthy(
            fmt::format("the shared state is stale: its backend has been down for {} ms (more than "
                        "health_max_state_age_ms, {} ms){}",
                        in.state_down_ms, in.max_state_age_ms,
                        in.state_error.empty() ? "" : ": " + in.state_error));
    return {200, "ok\n"};
}

}  // namespace herd::master
