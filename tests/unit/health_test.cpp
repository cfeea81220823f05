// Tests master/health: when a host answers its load balancer 200, and why it answers 503.
#include "master/health.hpp"

#include <gtest/gtest.h>

namespace herd::master {
namespace {

HealthInput serving() {
    HealthInput in;
    in.started = true;
    in.apps = {{"web", 2}, {"api", 1}};
    in.state_up = true;
    in.max_state_age_ms = 10000;
    return in;
}

TEST(Health, ServingIsOk) {
    HealthVerdict v = judge_health(serving());
    EXPECT_EQ(v.status, 200);
    EXPECT_EQ(v.body, "ok\n");
}

TEST(Health, StartingDrainingAndTakingOverAreNot) {
    HealthInput in = serving();
    in.started = false;
    EXPECT_EQ(judge_health(in).body, "starting: not every app is ready yet\n");
    in = serving();
    in.taking_over = true;
    EXPECT_EQ(judge_health(in).status, 503);
    in = serving();
    in.stopping = true;
    EXPECT_EQ(judge_health(in).body, "draining: herd is stopping\n");
}

TEST(Health, AnAppWithNoWorkerReadyIsNot) {
    HealthInput in = serving();
    in.apps[1].ready = 0;
    HealthVerdict v = judge_health(in);
    EXPECT_EQ(v.status, 503);
    EXPECT_EQ(v.body, "app \"api\" has no worker ready (restarting or failed)\n");
    // One worker of two is enough to serve.
    in = serving();
    in.apps[0].ready = 1;
    EXPECT_EQ(judge_health(in).status, 200);
}

TEST(Health, StaleStateOnlyPastTheLimit) {
    HealthInput in = serving();
    in.state_up = false;
    in.state_down_ms = 10000;
    EXPECT_EQ(judge_health(in).status, 200);  // down, but not for longer than the limit
    in.state_down_ms = 10001;
    in.state_error = "connection refused";
    HealthVerdict v = judge_health(in);
    EXPECT_EQ(v.status, 503);
    EXPECT_EQ(v.body,
              "the shared state is stale: its backend has been down for 10001 ms (more than "
              "health_max_state_age_ms, 10000 ms): connection refused\n");
    in.max_state_age_ms = 0;  // never unhealthy for the state
    EXPECT_EQ(judge_health(in).status, 200);
    in = serving();
    in.state_up.reset();  // no broker has reported yet: nothing to judge
    EXPECT_EQ(judge_health(in).status, 200);
}

}  // namespace
}  // namespace herd::master
