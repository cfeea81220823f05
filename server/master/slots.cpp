// Slots: restarting one after its worker left, scaling an app up or down, and closing a removed
// slot; see master.hpp.
#include "master/master.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "core/log.hpp"
#include "master/describe.hpp"

namespace herd::master {

void Master::restart_slot(App& app, int slot, std::chrono::milliseconds delay) {
    auto start = [this, id = app.id, slot] {
        App* found = find_app(id);
        if (found == nullptr) return;  // removed by a reload meanwhile
        App& app = *found;
        bool occupied = std::any_of(workers_.begin(), workers_.end(), [&](const auto& other) {
            return other.second->app == &app && other.second->slot == slot &&
                   !other.second->exited && !other.second->leaving;
        });
        if (stopping_ || app.failed || app.removed || slot >= app.config.workers || occupied)
            return;
        start_worker(app, slot);
    };
    if (delay.count() == 0) {
        start();
        return;
    }
    core::log_info("restarting app \"{}\" slot {} in {} ms (failure {} in a row)", app.config.name,
                   slot, delay.count(), app.backoff[slot].streak());
    loop_.add_timer(delay, start);
}

void Master::scale(App& app, int workers) {
    int old = app.config.workers;
    workers = std::clamp(workers, 1, balance::LoadBoard::max_slots);
    if (workers == old) return;
    core::log_info("app \"{}\": {} to {} worker(s)", app.config.name, old, workers);
    emit("app.scaled", {{"app", app.config.name}, {"from", old}, {"to", workers}});
    app.config.workers = workers;
    if (workers > old) {
        try {
            app.strategy->bind(app.config.listen, app.config.backlog, workers);
        } catch (const core::Error& e) {
            core::log_error("app \"{}\": cannot add workers: {}; staying at {}", app.config.name,
                            e.what(), old);
            app.config.workers = old;
            return;
        }
        for (int slot = old; slot < workers; ++slot) start_worker(app, slot);
        return;
    }
    for (auto& [pid, w] : workers_)
        if (w->app == &app && w->slot >= workers && w->state != WorkerState::draining)
            retire_slot_worker(app, *w);
}

void Master::retire_slot_worker(App& app, WorkerProc& w) {
    drain_worker(w, false);
    if (core::UniqueFd socket = w.strategy->remove_slot(w.slot)) {
        // The slot's queue must not be stranded: from now on the master accepts there and
        // passes connections to the remaining workers.
        accept_on(app, socket.get(),
                  "app \"" + app.config.name + "\" slot " + std::to_string(w.slot) + " (removed)");
        app.retiring[w.slot] = std::move(socket);
    }
}

void Master::close_retired_slot(App& app, int slot) {
    auto it = app.retiring.find(slot);
    if (it == app.retiring.end()) return;
    // Last pass over its queue, then close. A connection that the kernel hashes here between
    // this accept and the close is reset: the window is one system call wide.
    if (auto a = app.acceptors.find(it->second.get()); a != app.acceptors.end()) {
        a->second->accept_now();
        app.acceptors.erase(a);
    }
    app.retiring.erase(it);
}

}  // namespace herd::master
