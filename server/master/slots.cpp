// Slots: scaling an app up or down, and the socket of a removed slot; see master.hpp.
#include <algorithm>

#include "core/error.hpp"
#include "core/log.hpp"
#include "master/master.hpp"

namespace herd::master {

void Master::scale(App& app, int workers) {
    int old = app.config.workers;
    workers = std::clamp(workers, 1, balance::LoadBoard::max_slots);
    if (workers == old) return;
    if (workers > old) {
        try {
            app.strategy->bind(app.config.listen, app.config.backlog, workers);
        } catch (const core::Error& e) {
            core::log_error("app \"{}\": cannot add workers: {}; staying at {}", app.config.name,
                            e.what(), old);
            return;
        }
    }
    app.config.workers = workers;
    apply(sup_.scale(app.id, workers, Clock::now()));
}

void Master::retire_slot(WorkerProc& w) {
    if (core::UniqueFd socket = w.strategy->remove_slot(w.slot)) {
        // The slot's queue must not be stranded: from now on the master accepts there and
        // passes connections to the remaining workers.
        App& app = *w.app;
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
