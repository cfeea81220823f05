// AccessLog: one line per request in the combined log format (Apache's and nginx's default,
// which every log tool reads), written by the worker itself: buffered, one write per loop
// iteration, O_APPEND so the workers of an app share the file line by line. Reopened by
// name on the master's "reopen" (SIGUSR1, for logrotate).
#pragma once

#include <ctime>
#include <string>
#include <string_view>

#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"

namespace herd {
class Request;
}

namespace herd::worker {

class AccessLog {
  public:
    explicit AccessLog(core::EventLoop& loop) : loop_(loop) {}
    ~AccessLog() { flush(); }
    AccessLog(const AccessLog&) = delete;
    AccessLog& operator=(const AccessLog&) = delete;

    // Throws core::Error naming the path.
    void open(const std::string& path);
    bool enabled() const { return static_cast<bool>(fd_); }
    // Opens the path again; on failure logs why and keeps the file open before.
    void reopen();
    // 127.0.0.1 - - [25/Nov/2026:03:01:26 +0000] "GET / HTTP/1.1" 200 13 "-" "curl/7.88.1"
    void record(std::string_view peer, const Request& request, int status, std::size_t bytes);
    void flush();

  private:
    core::EventLoop& loop_;
    std::string path_;
    core::UniqueFd fd_;
    std::string buffer_;
    bool flush_due_ = false;
    std::time_t stamp_second_ = 0;
    std::string stamp_;
    std::uint64_t lost_ = 0;  // lines lost to write errors since the last one that worked
};

// Appends `text` with bytes that could forge or break a log line (control characters,
// quotes, backslashes, non-ASCII) written as \xHH, as nginx does.
void append_escaped(std::string& out, std::string_view text);

}  // namespace herd::worker
