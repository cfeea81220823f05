// OutputReader; see output.hpp.
#include "master/output.hpp"

#include <unistd.h>

#include <cerrno>

namespace herd::master {

OutputReader::OutputReader(core::EventLoop& loop, core::UniqueFd fd, Sink sink,
                           std::function<void()> on_eof)
    : loop_(loop), fd_(std::move(fd)), sink_(std::move(sink)), on_eof_(std::move(on_eof)) {
    loop_.add(fd_.get(), EPOLLIN, [this](std::uint32_t) { on_readable(); });
}

OutputReader::~OutputReader() {
    if (fd_) loop_.remove(fd_.get());
}

void OutputReader::on_readable() {
    // At most 64 KiB per wake-up: a worker printing without pause gets its turn like
    // everything else in the master's loop.
    for (int round = 0; round < 4; ++round)
        if (!read_once()) return;
}

void OutputReader::drain() {
    while (read_once()) {
    }
}

bool OutputReader::read_once() {
    if (!fd_) return false;
    char chunk[16 << 10];
    ssize_t n = ::read(fd_.get(), chunk, sizeof chunk);
    if (n > 0) {
        buffer_.append(chunk, static_cast<std::size_t>(n));
        emit_lines(false);
        return true;
    }
    if (n < 0 && errno == EINTR) return true;
    if (n < 0 && errno == EAGAIN) return false;
    // End of file (every writer is gone) or an error: pass on the last partial line.
    emit_lines(true);
    loop_.remove(fd_.get());
    fd_.reset();
    if (on_eof_) on_eof_();
    return false;
}

void OutputReader::emit_lines(bool flush_partial) {
    std::size_t start = 0;
    for (;;) {
        std::size_t newline = buffer_.find('\n', start);
        if (newline == std::string::npos) break;
        for (; newline - start > max_line; start += max_line)
            sink_(std::string_view(buffer_).substr(start, max_line));
        sink_(std::string_view(buffer_).substr(start, newline - start));
        start = newline + 1;
    }
    while (buffer_.size() - start >= max_line) {
        sink_(std::string_view(buffer_).substr(start, max_line));
        start += max_line;
    }
    if (flush_partial && start < buffer_.size()) {
        sink_(std::string_view(buffer_).substr(start));
        start = buffer_.size();
    }
    buffer_.erase(0, start);
}

}  // namespace herd::master
