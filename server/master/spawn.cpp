// Spawning children; see spawn.hpp.
#include "master/spawn.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include "core/error.hpp"
#include "core/log.hpp"

namespace herd::master {
namespace {

// Closes every descriptor above 2 that is not in keep (sorted).
void close_other_fds(std::vector<int> keep) {
    std::sort(keep.begin(), keep.end());
    unsigned first = 3;
    for (int k : keep) {
        if (k < 3) continue;
        if (static_cast<unsigned>(k) > first) {
            if (close_range(first, static_cast<unsigned>(k) - 1, 0) < 0) goto fallback;
        }
        first = static_cast<unsigned>(k) + 1;
    }
    if (close_range(first, ~0u, 0) == 0) return;
fallback:
    // Kernels before 5.9 have no close_range: walk /proc/self/fd instead.
    if (DIR* d = opendir("/proc/self/fd")) {
        int self = dirfd(d);
        std::vector<int> doomed;
        while (dirent* e = readdir(d)) {
            int fd = std::atoi(e->d_name);
            if (fd > 2 && fd != self && !std::binary_search(keep.begin(), keep.end(), fd))
                doomed.push_back(fd);
        }
        closedir(d);
        for (int fd : doomed) (void)::close(fd);
    }
}

}  // namespace

pid_t spawn_process(const std::vector<int>& keep_fds, const std::function<void()>& body) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) core::throw_errno("fork()");
    if (pid > 0) return pid;

    // Child. If the master dies, the kernel kills us; if it died before this line, exit now.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
        core::log_error("{}", core::errno_text("prctl(PR_SET_PDEATHSIG) in a new child"));
        _exit(1);
    }
    if (getppid() != parent) _exit(4);  // the master died between fork and prctl
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        signal(sig, SIG_DFL);  // errors for reserved real-time signals are harmless
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    // Operator signals are the master's: "pkill -HUP herd" or a terminal hangup must not kill
    // every worker at once.
    for (int sig : {SIGHUP, SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU}) signal(sig, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    close_other_fds(keep_fds);
    try {
        body();
    } catch (const std::exception& e) {
        core::log_error("child failed: {}", e.what());
    }
    _exit(1);
}

}  // namespace herd::master
