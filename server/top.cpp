// `herd top`; see top.hpp.
#include "top.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include <fmt/format.h>

#include "master/control.hpp"
#include "master/status_fields.hpp"

namespace herd::cli {
namespace {

using json = nlohmann::json;
using master::field_number;
using master::field_text;
using master::short_duration;

// Cut to `width` columns (the frame is ASCII but for what the master sends: counted in bytes,
// never splitting a UTF-8 sequence).
std::string fit(std::string line, int width) {
    if (width <= 0 || line.size() <= static_cast<std::size_t>(width)) return line;
    std::size_t n = static_cast<std::size_t>(width);
    while (n > 0 && (static_cast<unsigned char>(line[n]) & 0xC0) == 0x80) --n;
    line.resize(n);
    return line;
}

}  // namespace

RequestCounts request_counts(const json& status) {
    RequestCounts counts;
    if (!status.is_object() || !status.contains("apps") || !status["apps"].is_array())
        return counts;
    for (const auto& app : status["apps"]) {
        if (!app.is_object() || !app.contains("workers") || !app["workers"].is_array()) continue;
        for (const auto& w : app["workers"])
            if (w.is_object())
                counts[static_cast<long long>(field_number(w, "pid"))] =
                    static_cast<unsigned long long>(field_number(w, "requests"));
    }
    return counts;
}

std::string render_top(const json& status, const RequestCounts& before, double seconds, int width,
                       int height, const std::string& problem) {
    std::vector<std::string> lines;
    time_t now = time(nullptr);
    tm local{};
    localtime_r(&now, &local);
    char clock[16];
    std::strftime(clock, sizeof clock, "%H:%M:%S", &local);
    lines.push_back(fmt::format("herd {} - master pid {} - up {} - {} reload(s) - {}   (q quits)",
                                field_text(status, "version"), field_text(status, "pid"),
                                short_duration(field_number(status, "uptime_s")),
                                field_text(status, "reloads"), clock));
    if (!problem.empty()) lines.push_back("!! " + problem);
    const json& st = status.is_object() && status.contains("state") ? status["state"] : json();
    if (st.is_object()) {
        std::string line = fmt::format(
            "state: {} {}, {}, version {}, {} key(s), broker pid {}", field_text(st, "backend"),
            field_text(st, "target"), st.contains("up") && st["up"] == true ? "up" : "DOWN",
            field_text(st, "version"), field_text(st, "keys"), field_text(st, "broker_pid"));
        if (st.contains("primary") && st["primary"].is_object())
            line += fmt::format(
                ", primary {} ({}), {} failover(s)", field_text(st["primary"], "address"),
                field_text(st["primary"], "role"), field_text(st["primary"], "failovers"));
        lines.push_back(line);
    }
    if (status.is_object() && status.contains("reload") && status["reload"].is_object())
        lines.push_back(fmt::format("reload in progress ({}): {}",
                                    field_text(status["reload"], "source"),
                                    field_text(status["reload"], "phase")));
    if (status.is_object() && status.contains("upgrade") && status["upgrade"].is_object())
        lines.push_back(fmt::format(
            "upgrade in progress to {} (pid {}): {}", field_text(status["upgrade"], "binary"),
            field_text(status["upgrade"], "pid"), field_text(status["upgrade"], "phase")));
    const json& apps = status.is_object() && status.contains("apps") ? status["apps"] : json();
    if (apps.is_array())
        for (const auto& app : apps) {
            if (!app.is_object()) continue;
            std::vector<std::string> rows;
            double app_rate = 0;
            if (app.contains("workers") && app["workers"].is_array())
                for (const auto& w : app["workers"]) {
                    if (!w.is_object()) continue;
                    auto pid = static_cast<long long>(field_number(w, "pid"));
                    auto requests = static_cast<unsigned long long>(field_number(w, "requests"));
                    std::string rate = "-";
                    if (auto it = before.find(pid);
                        seconds > 0 && it != before.end() && requests >= it->second) {
                        double r = static_cast<double>(requests - it->second) / seconds;
                        app_rate += r;
                        rate = fmt::format("{:.1f}", r);
                    }
                    rows.push_back(fmt::format(
                        "  {:<4} {:<8} {:<9} {:>4} {:>8} {:>8} {:>9} {:>10} {:>6} {:>8} {:>6}",
                        field_text(w, "slot"), pid, field_text(w, "state"),
                        field_text(w, "generation"), short_duration(field_number(w, "uptime_s")),
                        field_text(w, "restarts"), rate, requests, field_text(w, "open"),
                        fmt::format("{:.1f}MB", field_number(w, "rss_kb") / 1024),
                        fmt::format("{:.1f}%", field_number(w, "cpu_percent"))));
                }
            lines.push_back("");
            lines.push_back(fmt::format(
                "app {} on {} ({}): {}, {} of {} ready, generation {}{}", field_text(app, "name"),
                field_text(app, "listen"), field_text(app, "balance"), field_text(app, "state"),
                field_text(app, "ready"), field_text(app, "workers_wanted"),
                field_text(app, "generation"),
                seconds > 0 ? fmt::format(", {:.1f} req/s", app_rate) : std::string()));
            lines.push_back(
                fmt::format("  {:<4} {:<8} {:<9} {:>4} {:>8} {:>8} {:>9} {:>10} {:>6} {:>8} {:>6}",
                            "SLOT", "PID", "STATE", "GEN", "UPTIME", "RESTARTS", "REQ/S",
                            "REQUESTS", "OPEN", "MEM", "CPU"));
            lines.insert(lines.end(), rows.begin(), rows.end());
            if (app.contains("slots") && app["slots"].is_array())
                for (const auto& s : app["slots"])
                    if (s.is_object())
                        lines.push_back(
                            fmt::format("  slot {}: last worker {}, {} ago", field_text(s, "slot"),
                                        field_text(s, "last_exit"),
                                        short_duration(field_number(s, "last_exit_s_ago"))));
        }
    std::string out;
    int n = 0;
    for (auto& line : lines) {
        if (height > 0 && n == height) break;
        out += fit(std::move(line), width);
        out += '\n';
        ++n;
    }
    return out;
}

namespace {

volatile sig_atomic_t stop_requested = 0;
volatile sig_atomic_t resized = 0;

void on_stop(int) {
    stop_requested = 1;
}
void on_resize(int) {
    resized = 1;
}

// The terminal as it was, put back however run_top ends.
class RawTerminal {
  public:
    RawTerminal() {
        if (tcgetattr(STDIN_FILENO, &saved_) != 0) return;
        termios raw = saved_;
        raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));  // ISIG stays: Ctrl-C works
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        active_ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0;
        // The alternate screen, the cursor hidden.
        std::fputs("\x1b[?1049h\x1b[?25l", stdout);
        std::fflush(stdout);
    }
    ~RawTerminal() {
        std::fputs("\x1b[?25h\x1b[?1049l", stdout);
        std::fflush(stdout);
        if (active_) tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_);
    }
    RawTerminal(const RawTerminal&) = delete;
    RawTerminal& operator=(const RawTerminal&) = delete;

  private:
    termios saved_{};
    bool active_ = false;
};

void terminal_size(int& width, int& height) {
    winsize ws{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
        width = ws.ws_col;
        height = ws.ws_row;
    } else {
        width = 80;
        height = 24;
    }
}

}  // namespace

int run_top(const std::string& socket) {
    using Clock = std::chrono::steady_clock;
    json status;
    try {
        status = master::control_request(socket, {{"cmd", "status"}});
    } catch (const std::exception& e) {
        std::fprintf(stderr, "herd: %s\n", e.what());
        return 1;
    }
    if (!status.value("ok", false)) {
        std::fprintf(stderr, "herd top: %s\n", status.value("error", std::string("?")).c_str());
        return 1;
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        // Not a terminal (a pipe, a script): one frame, no rates.
        std::fputs(render_top(status, {}, 0, 0, 0).c_str(), stdout);
        return 0;
    }
    struct sigaction sa {};
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);  // the SSH session went away
    sa.sa_handler = on_resize;
    sigaction(SIGWINCH, &sa, nullptr);

    RawTerminal terminal;
    RequestCounts before;
    Clock::time_point counted{};
    std::string problem;
    auto next = Clock::now();
    while (!stop_requested) {
        auto now = Clock::now();
        if (now >= next) {
            try {
                json fresh = master::control_request(socket, {{"cmd", "status"}});
                if (fresh.value("ok", false)) {
                    status = std::move(fresh);
                    problem.clear();
                } else {
                    problem = "the master says: " + fresh.value("error", std::string("?"));
                }
            } catch (const std::exception& e) {
                problem =
                    std::string("cannot reach the master (showing its last figures): ") + e.what();
            }
            double seconds = counted == Clock::time_point{}
                                 ? 0
                                 : std::chrono::duration<double>(now - counted).count();
            int width = 80, height = 24;
            terminal_size(width, height);
            std::string frame = render_top(status, before, seconds, width, height, problem);
            // Home, the frame with each line's rest cleared, then the screen's rest cleared.
            // (no newline after the last line: the screen must not scroll).
            std::string out = "\x1b[H";
            for (std::size_t at = 0; at < frame.size();) {
                std::size_t end = frame.find('\n', at);
                if (at > 0) out += "\r\n";
                out += frame.substr(at, end - at) + "\x1b[K";
                at = end + 1;
            }
            out += "\x1b[J";
            std::fwrite(out.data(), 1, out.size(), stdout);
            std::fflush(stdout);
            if (problem.empty()) {
                before = request_counts(status);
                counted = now;
            }
            next = now + std::chrono::seconds(1);
        }
        int wait_ms = static_cast<int>(
            std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count());
        pollfd p{STDIN_FILENO, POLLIN, 0};
        int r = poll(&p, 1, std::max(wait_ms, 0));
        if (r > 0 && (p.revents & POLLIN)) {
            char keys[64];
            ssize_t n = read(STDIN_FILENO, keys, sizeof keys);
            if (n == 0) break;  // the terminal closed
            for (ssize_t i = 0; i < n; ++i)
                if (keys[i] == 'q' || keys[i] == 'Q') stop_requested = 1;
        } else if (r > 0 && (p.revents & (POLLHUP | POLLERR))) {
            break;
        }
        if (resized) {
            resized = 0;
            next = Clock::now();  // draw again at the new size
        }
    }
    return 0;
}

}  // namespace herd::cli
