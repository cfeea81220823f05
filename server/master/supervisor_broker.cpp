// The supervisor's view of the state broker: started, ready, silent, dead; see supervisor.hpp.
#include <sys/wait.h>

#include <algorithm>

#include <fmt/format.h>

#include "master/describe.hpp"
#include "master/supervisor.hpp"

namespace herd::master {

void Supervisor::broker_spawned(pid_t pid, TimePoint now) {
    broker_ = Broker{pid, false, now, now};
}

Actions Supervisor::broker_spawn_failed(const std::string& error, TimePoint now) {
    // Out of processes, descriptors or memory for now: workers keep the state they have.
    Actions out;
    auto delay = std::max(broker_backoff_.next_delay(now, now), min_spawn_retry);
    log(out, core::LogLevel::error,
        fmt::format("cannot start the broker: {}; next try in {} ms", error, delay.count()));
    out.push_back(act::StartBroker{delay});
    return out;
}

void Supervisor::broker_ready(TimePoint now) {
    if (!broker_) return;
    broker_->ready = true;
    broker_->last_heartbeat = now;
}

void Supervisor::broker_heartbeat(TimePoint now) {
    if (broker_) broker_->last_heartbeat = now;
}

Actions Supervisor::broker_exited(int status, TimePoint now) {
    Actions out;
    if (!broker_) return out;
    Broker b = *broker_;
    broker_.reset();
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    std::string how = describe_status(status);
    emit(out, "broker.exited", {{"pid", b.pid}, {"status", how}, {"expected", stopping_}});
    if (stopping_) {
        log(out, clean ? core::LogLevel::info : core::LogLevel::warn,
            fmt::format("broker (pid {}) {}", b.pid, how));
        return out;
    }
    ++broker_restarts_;
    auto delay = broker_backoff_.next_delay(b.started, now);
    log(out, core::LogLevel::error,
        fmt::format(
            "broker (pid {}) {} unexpectedly; workers keep their state; restarting in {} ms", b.pid,
            how, delay.count()));
    out.push_back(act::StartBroker{delay});
    return out;
}

}  // namespace herd::master
