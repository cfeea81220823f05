// Fatal signals in a worker (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT): an async-signal-safe
// handler writes a report prepared in advance to the master's channel and the stack to
// stderr, then lets the signal kill the process; the master logs the exit and replaces it.
#pragma once

#include <string>

namespace herd::worker {

// Prepares the reports and installs the handlers (on an alternate stack, so a stack
// overflow is reported too). who: "worker web/0", for the lines written.
void install_crash_handlers(int channel_fd, const std::string& who);

}  // namespace herd::worker
