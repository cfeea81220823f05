// Per-worker CPU use from /proc; see cpu.hpp.
#include "master/cpu.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <string>

#include "core/unique_fd.hpp"

namespace herd::master {

std::optional<std::uint64_t> parse_stat_cpu(std::string_view stat) {
    // "PID (COMM) STATE PPID ...": the fields after the last ')' start with the state (3).
    auto close = stat.rfind(')');
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view rest = stat.substr(close + 1);
    std::uint64_t utime = 0, stime = 0;
    for (int field = 3; field <= 15; ++field) {
        auto start = rest.find_first_not_of(' ');
        if (start == std::string_view::npos) return std::nullopt;
        rest.remove_prefix(start);
        auto end = rest.find_first_of(" \n");
        std::string_view value = rest.substr(0, end);
        if (field == 14 || field == 15) {
            std::uint64_t n = 0;
            auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc() || p != value.data() + value.size()) return std::nullopt;
            (field == 14 ? utime : stime) = n;
        }
        if (end == std::string_view::npos) {
            if (field < 15) return std::nullopt;
            break;
        }
        rest.remove_prefix(end);
    }
    return utime + stime;
}

std::optional<std::uint64_t> read_cpu_ticks(pid_t pid) {
    std::string path = "/proc/" + std::to_string(pid) + "/stat";
    core::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return std::nullopt;
    char buf[1024];
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    return parse_stat_cpu(std::string_view(buf, static_cast<std::size_t>(n)));
}

long clock_ticks_per_second() {
    static const long ticks = [] {
        long t = sysconf(_SC_CLK_TCK);
        return t > 0 ? t : 100;
    }();
    return ticks;
}

void CpuMeter::sample(std::uint64_t ticks, Clock::time_point now, long ticks_per_second) {
    seconds_ = static_cast<double>(ticks) / static_cast<double>(ticks_per_second);
    if (primed_ && now > at_ && ticks >= ticks_) {
        double wall = std::chrono::duration<double>(now - at_).count();
        percent_ = 100.0 * static_cast<double>(ticks - ticks_) /
                   static_cast<double>(ticks_per_second) / wall;
    }
    primed_ = true;
    ticks_ = ticks;
    at_ = now;
}

}  // namespace herd::master
