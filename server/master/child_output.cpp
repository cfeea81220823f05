// Children's output: each child's log, stdout and stderr pipes read into the master's log, and
// USR1's reopening; see master.hpp.
#include "master/master.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.hpp"
#include "core/exit_codes.hpp"
#include "core/log.hpp"
#include "core/socket.hpp"
#include "master/describe.hpp"

namespace herd::master {

void Master::reopen_logs() {
    // logrotate renamed the files: open them again by name. The master's log is written by
    // the master alone (the workers' lines come through it); access logs by each worker.
    if (!config_.log_file.empty()) {
        try {
            core::open_log_file(config_.log_file);
        } catch (const core::Error& e) {
            core::log_error("SIGUSR1: {}; still logging to the file open before", e.what());
        }
    }
    int told = 0;
    for (auto& [pid, w] : workers_)
        if (!w->channel->closed() && !w->app->config.access_log.empty() &&
            w->channel->send({{"type", "reopen"}}))
            ++told;
    core::log_info("SIGUSR1: log file reopened{}",
                   told > 0 ? fmt::format("; {} worker(s) reopen their access logs", told) : "");
}

Master::ChildPipes Master::make_child_pipes() {
    ChildPipes p;
    for (int i = 0; i < 3; ++i) {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0) core::throw_errno("pipe2() for a child's output");
        p.read_ends[i].reset(fds[0]);
        p.write_ends[i].reset(fds[1]);
        core::set_nonblocking(fds[0]);
    }
    return p;
}

void Master::ChildPipes::in_child() {
    core::set_log_fd(write_ends[0].get());
    if (dup2(write_ends[1].get(), STDOUT_FILENO) < 0 ||
        dup2(write_ends[2].get(), STDERR_FILENO) < 0)
        _exit(core::exit_start_failure);
    // Line by line: what a plugin prints reaches the log now, not when a buffer fills.
    setvbuf(stdout, nullptr, _IOLBF, 0);
}

void Master::watch_child_output(ChildPipes& pipes, const std::string& identity, pid_t pid) {
    for (auto& fd : pipes.write_ends) fd.reset();
    watch_output(std::move(pipes.read_ends[0]), [](std::string_view line) { core::log_raw(line); });
    watch_output(std::move(pipes.read_ends[1]), [identity, pid](std::string_view line) {
        core::log_line_as(core::LogLevel::info, identity, pid, fmt::format("stdout: {}", line));
    });
    watch_output(std::move(pipes.read_ends[2]), [identity, pid](std::string_view line) {
        core::log_line_as(core::LogLevel::warn, identity, pid, fmt::format("stderr: {}", line));
    });
}

void Master::watch_output(core::UniqueFd fd, OutputReader::Sink sink) {
    int key = fd.get();
    outputs_[key] =
        std::make_unique<OutputReader>(loop_, std::move(fd), std::move(sink), [this, key] {
            // At end of file, from inside the reader: free it after this iteration.
            loop_.defer([this, key] { outputs_.erase(key); });
        });
}

void Master::drain_outputs() {
    // The workers are gone; what they wrote is still in the pipes. Read it before exiting.
    for (auto& [fd, reader] : outputs_) reader->drain();
}

}  // namespace herd::master
