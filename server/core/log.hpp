// Process-wide logging: one line per write(2), so lines from many processes never interleave.
#pragma once

#include <fmt/format.h>
#include <string>
#include <string_view>

namespace herd::core {

enum class LogLevel { debug, info, warn, error };

// Names the process in every line ("master", "worker web/0", "check").
void set_log_identity(std::string identity);
void set_log_level(LogLevel level);
// "debug", "warn", "error"; anything else (the config allows only "info") is info.
LogLevel parse_log_level(std::string_view name);
void set_log_fd(int fd);
bool log_enabled(LogLevel level);
void log_line(LogLevel level, std::string_view message);
// A line already formatted by another herd process (a worker's log, through its pipe).
void log_raw(std::string_view line);
// A line in the name of another process (what a worker's plugin printed), whatever the
// level setting: it is the plugin's output, not herd's chatter.
void log_line_as(LogLevel level, std::string_view identity, int pid, std::string_view message);
// Opens `path` for appending (0640) and logs there from now on, closing the file logged to
// before (standard error is kept). For the master's log_file and its reopening on SIGUSR1.
// Throws Error naming the path; the previous destination stays on failure.
void open_log_file(const std::string& path);

// Formats "what failed: strerror(errno)" for the current errno.
std::string errno_text(std::string_view what);
std::string errno_text(std::string_view what, int err);

template <class... Args>
void log_info(fmt::format_string<Args...> f, Args&&... a) {
    if (log_enabled(LogLevel::info))
        log_line(LogLevel::info, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... a) {
    if (log_enabled(LogLevel::warn))
        log_line(LogLevel::warn, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args>
void log_error(fmt::format_string<Args...> f, Args&&... a) {
    if (log_enabled(LogLevel::error))
        log_line(LogLevel::error, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... a) {
    if (log_enabled(LogLevel::debug))
        log_line(LogLevel::debug, fmt::format(f, std::forward<Args>(a)...));
}

}  // namespace herd::core
