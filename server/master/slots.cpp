// Slots: scaling an app up or down, and the socket of a removed slot; see master.hpp.
#include <algorithm>
#include <fstream>
#include <string>

#include "core/error.hpp"
#include "core/log.hpp"
#include "master/master.hpp"

namespace herd::master {
namespace {

// The first line of a /proc/sys file, or "" when it cannot be read.
std::string read_sysctl(const char* path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

}  // namespace

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
    // Last pass over its queue, then close. Connections the kernel hashes here between this
    // accept and the close (and those still in their handshake) are reset, unless the kernel
    // moves them to the group's other sockets: net.ipv4.tcp_migrate_req (Linux 5.14+).
    if (!migrate_req_warned_ && read_sysctl("/proc/sys/net/ipv4/tcp_migrate_req") != "1") {
        migrate_req_warned_ = true;
        core::log_warn(
            "app \"{}\": closing reuseport slot {}'s socket: connections still queued on it are "
            "reset; set net.ipv4.tcp_migrate_req = 1 (Linux 5.14+) so that the kernel moves "
            "them to the other slots",
            app.config.name, slot);
    }
    if (auto a = app.acceptors.find(it->second.get()); a != app.acceptors.end()) {
        a->second->accept_now();
        app.acceptors.erase(a);
    }
    app.retiring.erase(it);
}

}  // namespace herd::master
