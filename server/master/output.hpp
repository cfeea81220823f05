// OutputReader: the master's end of a pipe a worker writes to (its herd log, its stdout, its
// stderr). Non-blocking and bounded per wake-up, so nothing a plugin prints can hold the
// master; it reads until end of file, so nothing is lost when the worker dies first (the
// pipe keeps what was written). Each complete line goes to the sink.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"

namespace herd::master {

class OutputReader {
  public:
    using Sink = std::function<void(std::string_view line)>;
    // A line longer than this is passed on in pieces.
    static constexpr std::size_t max_line = 16 << 10;

    OutputReader(core::EventLoop& loop, core::UniqueFd fd, Sink sink, std::function<void()> on_eof);
    ~OutputReader();
    OutputReader(const OutputReader&) = delete;
    OutputReader& operator=(const OutputReader&) = delete;

    // Reads what is there now (also at end of file); called by the loop.
    void on_readable();
    // Reads everything there is, however much (the writers are gone: it ends).
    void drain();
    bool done() const { return !fd_; }

  private:
    void emit_lines(bool flush_partial);
    // One read; false when nothing more can be read now.
    bool read_once();

    core::EventLoop& loop_;
    core::UniqueFd fd_;
    Sink sink_;
    std::function<void()> on_eof_;
    std::string buffer_;
};

}  // namespace herd::master
