// Placement: the master accepting for round-robin, least-conn and removed slots, and handing
// connections to workers; see master.hpp.
#include "master/master.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "core/log.hpp"
#include "master/describe.hpp"

namespace herd::master {

void Master::watch_master_socket(App& app, balance::Strategy& strategy) {
    int fd = strategy.master_socket();
    if (fd >= 0 && !app.acceptors.contains(fd))
        accept_on(app, fd, "app \"" + app.config.name + "\" on " + strategy.bound_address());
}

void Master::accept_on(App& app, int fd, const std::string& name) {
    core::Acceptor::Options options;
    options.batch = 64;
    App* raw = &app;
    auto acceptor = std::make_unique<core::Acceptor>(
        loop_, fd, name, [this, raw](core::UniqueFd c) { place_connection(*raw, std::move(c)); },
        std::move(options));
    try {
        acceptor->start();
    } catch (const core::Error& e) {
        core::log_error("{}: {}; trying again in 100 ms", name, e.what());
        acceptor->pause_for(std::chrono::milliseconds(100));
    }
    app.acceptors[fd] = std::move(acceptor);
}

void Master::close_strategy(App& app, balance::Strategy& strategy) {
    if (int fd = strategy.master_socket(); fd >= 0) app.acceptors.erase(fd);
    strategy.close();
}

void Master::place_connection(App& app, core::UniqueFd fd, const WorkerProc* refused_by) {
    if (handed_over_) {
        pass_to_new_master(app, std::move(fd));
        return;
    }
    std::vector<WorkerProc*> workers;
    std::vector<balance::Candidate> candidates;
    for (auto& [pid, w] : workers_) {
        if (w->app != &app) continue;
        workers.push_back(w.get());
        balance::Candidate c;
        c.open = static_cast<std::uint32_t>(w->passed - w->closed);
        c.accepting = sup_.takes_connections(pid) && w.get() != refused_by &&
                      c.open < w->capacity && !w->channel->closed();
        candidates.push_back(c);
    }
    int i = app.strategy->pick(candidates);
    if (i < 0) {
        constexpr std::size_t max_pending = 4096;
        if (app.pending.size() >= max_pending) {
            core::log_error(
                "app \"{}\": no worker can take a connection and {} are waiting; closing this one",
                app.config.name, app.pending.size());
            return;  // fd closes here
        }
        if (app.pending.empty())
            core::log_warn(
                "app \"{}\": no worker can take a connection now (starting, draining or at "
                "capacity); queueing",
                app.config.name);
        app.pending.push_back(std::move(fd));
        return;
    }
    WorkerProc* w = workers[static_cast<std::size_t>(i)];
    std::vector<core::UniqueFd> fds;
    fds.push_back(std::move(fd));
    if (w->channel->send({{"type", "conn"}}, std::move(fds))) ++w->passed;
    // A failed send closed the channel (and the descriptor): the worker is going away and
    // its exit will be handled on SIGCHLD.
}

void Master::recover_unread(WorkerProc& w) {
    const SupervisedApp* app = sup_.app(w.app->id);
    // A removed app's clients are closed, as before.
    if (!w.unread || app == nullptr || app->removed) return;
    std::vector<core::UniqueFd> conns;
    // If the worker died having read part of a frame, what is left starts in the middle of
    // one: the decoder stops at it, and the descriptors left are closed as before.
    core::Channel leftover(loop_, std::move(w.unread), "the unread messages of " + w.name);
    auto take = [&](core::Message&& m) {
        if (m.type() == "conn")
            for (auto& fd : m.fds) conns.push_back(std::move(fd));
    };
    leftover.drain_into(take);
    // And those still queued in the master once the worker's socket was full.
    if (!w.channel->closed())
        for (core::Message& m : w.channel->take_unsent()) take(std::move(m));
    if (conns.empty()) return;
    core::log_warn("{} left {} connection(s) it had not read; passing them to other workers",
                   w.name, conns.size());
    for (auto& fd : conns) place_connection(*w.app, std::move(fd));
}

void Master::flush_pending(App& app) {
    while (!app.pending.empty()) {
        std::size_t before = app.pending.size();
        core::UniqueFd fd = std::move(app.pending.front());
        app.pending.pop_front();
        place_connection(app, std::move(fd));
        if (app.pending.size() >= before) break;  // still nobody: it went back in the queue
    }
}

}  // namespace herd::master
