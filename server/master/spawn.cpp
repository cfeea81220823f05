// Spawning children; see spawn.hpp.
#include "master/spawn.hpp"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

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

pid_t spawn_process(const std::vector<int>& keep_fds, const std::function<void()>& body,
                    bool die_with_parent) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) core::throw_errno("fork()");
    if (pid > 0) return pid;

    // Child. If the master dies, the kernel kills us; if it died before this line, exit now.
    if (die_with_parent && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
        core::log_error("{}", core::errno_text("prctl(PR_SET_PDEATHSIG) in a new child"));
        _exit(1);
    }
    if (die_with_parent && getppid() != parent) _exit(4);  // the master died before prctl
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

Credentials resolve_credentials(const std::string& user, const std::string& group,
                                bool allow_root) {
    Credentials c;
    bool root = geteuid() == 0;
    if (user.empty()) {
        if (root && !allow_root)
            throw core::Error(
                "herd runs as root: set \"user\" (and optionally \"group\") so that workers and "
                "the broker run unprivileged, or \"allow_root\": true to run plugins as root");
        return c;
    }
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    int err = getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
    if (found == nullptr)
        throw core::Error("user \"" + user +
                          "\": " + (err != 0 ? std::string(strerror(err)) : "no such user"));
    c.user = user;
    c.uid = pw.pw_uid;
    c.gid = pw.pw_gid;
    if (!group.empty()) {
        struct group gr {};
        struct group* g = nullptr;
        err = getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &g);
        if (g == nullptr)
            throw core::Error("group \"" + group +
                              "\": " + (err != 0 ? std::string(strerror(err)) : "no such group"));
        c.gid = g->gr_gid;
    }
    if (!root) {
        if (c.uid != geteuid() || c.gid != getegid())
            throw core::Error("\"user\": \"" + user +
                              "\" needs a master started as root (it runs as uid " +
                              std::to_string(geteuid()) + ")");
        return c;  // already that user: nothing to change
    }
    if (c.uid == 0 && !allow_root)
        throw core::Error("\"user\": \"" + user +
                          "\" is root; set \"allow_root\": true to mean it");
    c.change = true;
    return c;
}

void become(const Credentials& c) {
    if (!c.change) return;
    pid_t parent = getppid();
    auto fail = [&](const std::string& what) {
        core::log_error("{}", core::errno_text(what + " becoming user " + c.user));
        _exit(3);
    };
    if (initgroups(c.user.c_str(), c.gid) < 0) fail("initgroups()");
    if (setgid(c.gid) < 0) fail("setgid()");
    if (setuid(c.uid) < 0) fail("setuid()");
    if (c.uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        core::log_error("could regain root after becoming user {}; refusing to go on", c.user);
        _exit(3);
    }
    // The kernel clears the parent-death signal when credentials change: set it again.
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail("prctl(PR_SET_PDEATHSIG)");
    if (getppid() != parent) _exit(4);
}

}  // namespace herd::master
