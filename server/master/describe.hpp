// Small wordings shared by the master's files: how a child ended, how long ago.
#pragma once

#include <sys/wait.h>

#include <chrono>
#include <cstring>
#include <string>

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

inline double seconds_since(core::EventLoop::Clock::time_point t) {
    return std::chrono::duration<double>(core::EventLoop::Clock::now() - t).count();
}

}  // namespace herd::master
