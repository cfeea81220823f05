// Small wordings shared by the master's files: how a child ended, how long ago.
#pragma once

#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <string>

#include <fmt/chrono.h>

#include "core/event_loop.hpp"

namespace herd::master {

// "exited with code 3", "killed by signal 9 (Killed)", "..., core dumped".
inline std::string describe_status(int status) {
    if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        std::string s = "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
                        strsignal(WTERMSIG(status)) + ")";
        if (WCOREDUMP(status)) s += ", core dumped";
        return s;
    }
    return "changed state " + std::to_string(status);
}

// "2026-12-06T05:10:00Z".
inline std::string format_utc(std::chrono::system_clock::time_point t) {
    return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}",
                       fmt::gmtime(std::chrono::system_clock::to_time_t(t)));
}

inline double seconds_since(core::EventLoop::Clock::time_point t) {
    return std::chrono::duration<double>(core::EventLoop::Clock::now() - t).count();
}

}  // namespace herd::master
