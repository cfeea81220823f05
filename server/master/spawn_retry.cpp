// A worker that cannot be spawned: fork, pipe or socketpair failed because the master is out
// of processes, descriptors or memory for now. Master member functions; see master.hpp.
#include <algorithm>
#include <string>

#include "core/log.hpp"
#include "master/master.hpp"

namespace herd::master {

Master::WorkerProc* Master::start_worker(App& app, int slot) {
    try {
        return spawn_worker(app, slot);
    } catch (const std::exception& e) {
        // Like a worker that failed to start, for its slot's back-off; not for the app's
        // count of failed starts: this says nothing about its plugins, and the app must not
        // be given up while the machine is short of descriptors for a moment.
        RestartOptions options;
        options.initial_delay = std::chrono::milliseconds(app.config.restart_backoff_ms);
        options.max_delay = std::chrono::milliseconds(app.config.restart_backoff_max_ms);
        options.healthy_after = std::chrono::milliseconds(app.config.healthy_after_ms);
        SlotBackoff& backoff = app.backoff.try_emplace(slot, options).first->second;
        auto now = Clock::now();
        auto delay = std::max(backoff.next_delay(now, now), min_spawn_retry);
        // Say which slot, unless the message does (fork's does; pipe2's does not).
        std::string what = e.what();
        if (what.find("app \"" + app.config.name + "\"") == std::string::npos)
            what = "app \"" + app.config.name + "\" slot " + std::to_string(slot) + ": " + what;
        core::log_error("cannot start a worker: {}", what);
        restart_slot(app, slot, delay);
        return nullptr;
    }
}

}  // namespace herd::master
