// The master carrying out the supervisor's actions (supervisor.hpp): each one becomes system
// calls, log lines or events; what they lead to goes back to the supervisor. Master member
// functions; see master.hpp.
#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include "build_info.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "master/master.hpp"

namespace herd::master {

void Master::apply(Actions actions) {
    for (Action& a : actions) actions_.push_back(std::move(a));
    if (applying_) return;  // the loop below, further up the stack, carries them out
    applying_ = true;
    while (!actions_.empty()) {
        Action a = std::move(actions_.front());
        actions_.pop_front();
        try {
            carry_out(a);
        } catch (const std::exception& e) {
            // Each action handles its own failures; this is the backstop that keeps the
            // master's loop (and every worker) alive if one does not.
            core::log_error("carrying out the supervisor's action {}: {}", a.index(), e.what());
        }
    }
    applying_ = false;
}

void Master::carry_out_spawn(const act::Spawn& s) {
    App* app = find_app(s.app);
    if (app == nullptr) {
        apply(sup_.spawn_failed(s, "the app is gone", Clock::now()));
        return;
    }
    try {
        WorkerProc* w = spawn_worker(*app, s.slot, s.next);
        apply(sup_.spawned(s, w->pid, Clock::now()));
    } catch (const std::exception& e) {
        // fork, pipe or socketpair failed: out of processes, descriptors or memory for now.
        std::string what = e.what();
        apply(sup_.spawn_failed(s, what, Clock::now()));
    }
}

void Master::carry_out(Action& action) {
    auto now = Clock::now();
    std::visit(
        [&](auto& a) {
            using T = std::decay_t<decltype(a)>;
            if constexpr (std::is_same_v<T, act::Spawn>) {
                carry_out_spawn(a);
            } else if constexpr (std::is_same_v<T, act::Drain>) {
                send_drain(a.pid, a.close_idle, a.deadline);
            } else if constexpr (std::is_same_v<T, act::Kill>) {
                if (workers_.contains(a.pid)) (void)kill(a.pid, a.signal);
            } else if constexpr (std::is_same_v<T, act::Log>) {
                if (core::log_enabled(a.level)) core::log_line(a.level, a.text);
            } else if constexpr (std::is_same_v<T, act::Emit>) {
                emit(a.event, std::move(a.fields));
            } else if constexpr (std::is_same_v<T, act::RestartLater>) {
                if (a.delay.count() == 0) {
                    apply(sup_.restart_due(a.app, a.slot, now));
                } else {
                    loop_.add_timer(a.delay, [this, id = a.app, slot = a.slot] {
                        apply(sup_.restart_due(id, slot, Clock::now()));
                    });
                }
            } else if constexpr (std::is_same_v<T, act::RollLater>) {
                loop_.add_timer(a.delay,
                                [this, id = a.app] { apply(sup_.roll_due(id, Clock::now())); });
            } else if constexpr (std::is_same_v<T, act::RetireSlot>) {
                if (auto it = workers_.find(a.pid); it != workers_.end()) retire_slot(*it->second);
            } else if constexpr (std::is_same_v<T, act::CloseRetiredSlot>) {
                if (App* app = find_app(a.app)) close_retired_slot(*app, a.slot);
            } else if constexpr (std::is_same_v<T, act::FlushPending>) {
                if (App* app = find_app(a.app)) flush_pending(*app);
            } else if constexpr (std::is_same_v<T, act::AllReady>) {
                core::log_info("all apps ready");
                all_ready_ = true;
                if (!taking_over())
                    notify_.ready(std::to_string(apps_.size()) + " app(s) ready");
                else if (predecessor_ && !predecessor_->closed())
                    predecessor_->send({{"type", "upgrade.ready"},
                                        {"pid", getpid()},
                                        {"version", build::version()}});
                else
                    take_over("the old master is gone");
            } else if constexpr (std::is_same_v<T, act::Committed>) {
                if (reload_) {
                    core::log_info(
                        "reload ({}): every canary is ready after {:.1f} ms; rolling out",
                        reload_->source,
                        std::chrono::duration<double, std::milli>(now - reload_->started).count());
                    emit("reload.rolling", {{"source", reload_->source}, {"id", reload_->id}});
                }
            } else if constexpr (std::is_same_v<T, act::Adopt>) {
                if (App* app = find_app(a.app)) adopt_next(*app);
            } else if constexpr (std::is_same_v<T, act::Serve>) {
                if (App* app = find_app(a.app)) watch_master_socket(*app, *app->strategy);
            } else if constexpr (std::is_same_v<T, act::DropNext>) {
                if (App* app = find_app(a.app); app != nullptr && app->next) {
                    if (app->next->strategy) close_strategy(*app, *app->next->strategy);
                    app->next.reset();
                }
            } else if constexpr (std::is_same_v<T, act::RollBack>) {
                if (App* app = find_app(a.app)) restore_previous(*app);
            } else if constexpr (std::is_same_v<T, act::Rolled>) {
                if (App* app = find_app(a.app)) rolled(*app);
            } else if constexpr (std::is_same_v<T, act::CloseApp>) {
                if (App* app = find_app(a.app)) close_app(*app);
            } else if constexpr (std::is_same_v<T, act::ForgetApp>) {
                if (App* app = find_app(a.app)) forget_app(*app);
            } else if constexpr (std::is_same_v<T, act::StartBroker>) {
                auto start = [this] {
                    if (!stopping() && !broker_) start_broker();
                };
                if (a.delay.count() == 0)
                    start();
                else
                    loop_.add_timer(a.delay, start);
            } else if constexpr (std::is_same_v<T, act::KillBroker>) {
                if (broker_ && broker_->pid == a.pid) (void)kill(a.pid, SIGKILL);
            } else if constexpr (std::is_same_v<T, act::FinishReload>) {
                end_reload(a.ok, a.committed, a.message);
            }
        },
        action);
}

}  // namespace herd::master
