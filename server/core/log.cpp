// Process-wide logging: one line per write(2), so lines from many processes never interleave.
#include "core/log.hpp"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.hpp"

namespace herd::core {
namespace {

std::string g_identity = "herd";
LogLevel g_level = LogLevel::info;
int g_fd = STDERR_FILENO;

const char* level_name(LogLevel level) {
    switch (level) {
        case LogLevel::debug:
            return "debug";
        case LogLevel::info:
            return "info";
        case LogLevel::warn:
            return "warn";
        case LogLevel::error:
            return "error";
    }
    return "?";
}

}  // namespace

void set_log_identity(std::string identity) {
    g_identity = std::move(identity);
}
void set_log_level(LogLevel level) {
    g_level = level;
}
void set_log_fd(int fd) {
    g_fd = fd;
}
LogLevel parse_log_level(std::string_view name) {
    if (name == "debug") return LogLevel::debug;
    if (name == "warn") return LogLevel::warn;
    if (name == "error") return LogLevel::error;
    return LogLevel::info;
}
bool log_enabled(LogLevel level) {
    return level >= g_level;
}

namespace {

void write_line(std::string& line) {
    if (line.empty() || line.back() != '\n') line.push_back('\n');
    // One write per line keeps lines whole across processes (O_APPEND or a pipe under
    // PIPE_BUF). A failing log write has nowhere to be reported; it must not stop the server.
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
        ssize_t w = ::write(g_fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        p += w;
        left -= static_cast<size_t>(w);
    }
}

std::string prefix(LogLevel level, std::string_view identity, int pid) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm local{};
    localtime_r(&ts.tv_sec, &local);
    char stamp[32];
    size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
    return fmt::format("{}.{:03d} {} [{}:{}] ", std::string_view(stamp, n),
                       static_cast<int>(ts.tv_nsec / 1000000), level_name(level), identity, pid);
}

}  // namespace

void log_line(LogLevel level, std::string_view message) {
    std::string line = prefix(level, g_identity, getpid());
    line.append(message);
    write_line(line);
}

void log_raw(std::string_view text) {
    std::string line(text);
    write_line(line);
}

void log_line_as(LogLevel level, std::string_view identity, int pid, std::string_view message) {
    std::string line = prefix(level, identity, pid);
    line.append(message);
    write_line(line);
}

void open_log_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) throw Error(errno_text("open(log file " + path + ")"));
    int old = g_fd;
    g_fd = fd;
    if (old > STDERR_FILENO) ::close(old);
}

std::string errno_text(std::string_view what) {
    return errno_text(what, errno);
}

std::string errno_text(std::string_view what, int err) {
    return fmt::format("{}: {}", what, strerrorname_np(err) ? strerrorname_np(err) : "?") +
           fmt::format(" ({})", strerror(err));
}

}  // namespace herd::core
