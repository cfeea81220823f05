// Spawning children: fork (no exec), then make the child a clean process that cannot
// outlive the master. Policy (when to spawn, what to do on exit) lives in master.cpp.
#pragma once

#include <sys/types.h>

#include <string>

#include <functional>
#include <vector>

namespace herd::master {

// Forks. In the child: PR_SET_PDEATHSIG(SIGKILL), signal mask and dispositions reset
// (SIGPIPE and SIGINT ignored: Ctrl-C on the master must be one graceful stop, not N
// crashes), every descriptor closed except 0-2 and keep_fds, then body(), which must not
// return (if it does, the child exits 1). Returns the child's pid; throws core::Error.
// With die_with_parent false (the new master of an upgrade, which must outlive this one) no
// parent-death signal is set.
pid_t spawn_process(const std::vector<int>& keep_fds, const std::function<void()>& body,
                    bool die_with_parent = true);

// Who the children run as. Resolved once in the master (names to ids), applied in each child.
struct Credentials {
    bool change = false;  // false: children keep the master's identity
    std::string user;
    uid_t uid = 0;
    gid_t gid = 0;
};

// From the config's "user", "group" and "allow_root" and the master's own identity. Throws
// core::Error: an unknown user or group, a root master without a user (unless allow_root), a
// non-root master asked to become someone else.
Credentials resolve_credentials(const std::string& user, const std::string& group, bool allow_root);

// In a child: initgroups, setgid, setuid, then checks that root cannot be regained and sets
// the parent-death signal again (a change of credentials clears it). Exits the child with
// code 3 (a start-up failure) on any error, after logging it.
void become(const Credentials& credentials);

}  // namespace herd::master
