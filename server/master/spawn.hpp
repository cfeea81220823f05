// Spawning children: fork (no exec), then make the child a clean process that cannot
// outlive the master. Policy (when to spawn, what to do on exit) lives in master.cpp.
#pragma once

#include <sys/types.h>

#include <functional>
#include <vector>

namespace herd::master {

// Forks. In the child: PR_SET_PDEATHSIG(SIGKILL), signal mask and dispositions reset
// (SIGPIPE and SIGINT ignored: Ctrl-C on the master must be one graceful stop, not N
// crashes), every descriptor closed except 0-2 and keep_fds, then body(), which must not
// return (if it does, the child exits 1). Returns the child's pid; throws core::Error.
pid_t spawn_process(const std::vector<int>& keep_fds, const std::function<void()>& body);

}  // namespace herd::master
