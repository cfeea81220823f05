// Fatal-signal reports; see crash_report.hpp. Everything the handler touches is prepared
// before: it only calls write(), backtrace() (loaded once up front), backtrace_symbols_fd()
// and raise(), and reads static buffers.
#include "worker/crash_report.hpp"

#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "core/channel.hpp"

namespace herd::worker {
namespace {

constexpr int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr int max_report = 512;

struct Report {
    int signal = 0;
    char frame[max_report];  // a complete channel frame: {"type":"fatal","phase":"signal",...}
    std::size_t frame_size = 0;
    char line[max_report];  // the first log line
    std::size_t line_size = 0;
};

Report g_reports[std::size(fatal_signals)];
int g_channel = -1;
alignas(16) char g_alt_stack[64 << 10];

void write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w <= 0) return;  // nothing else is safe to try here
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}

void on_fatal_signal(int sig) {
    for (const Report& r : g_reports) {
        if (r.signal != sig) continue;
        write_all(STDERR_FILENO, r.line, r.line_size);
        if (g_channel >= 0) write_all(g_channel, r.frame, r.frame_size);
        break;
    }
    void* frames[64];
    int depth = backtrace(frames, 64);
    backtrace_symbols_fd(frames, depth, STDERR_FILENO);
    // SA_RESETHAND restored the default action: dying of the same signal tells the master
    // (and a core dump, if enabled) what happened.
    raise(sig);
}

}  // namespace

void install_crash_handlers(int channel_fd, const std::string& who) {
    g_channel = channel_fd;
    void* warm[1];
    (void)backtrace(warm, 1);  // loads libgcc now: the first call may allocate
    for (std::size_t i = 0; i < std::size(fatal_signals); ++i) {
        int sig = fatal_signals[i];
        Report& r = g_reports[i];
        r.signal = sig;
        std::string reason =
            std::string("fatal signal ") + std::to_string(sig) + " (" + strsignal(sig) + ")";
        std::string frame =
            core::encode_frame({{"type", "fatal"}, {"phase", "signal"}, {"reason", reason}}, 0);
        std::string line =
            "error [" + who + ":" + std::to_string(getpid()) + "] " + reason + "; stack:\n";
        r.frame_size = std::min(frame.size(), sizeof r.frame);
        std::memcpy(r.frame, frame.data(), r.frame_size);
        r.line_size = std::min(line.size(), sizeof r.line);
        std::memcpy(r.line, line.data(), r.line_size);
    }
    stack_t alt{};
    alt.ss_sp = g_alt_stack;
    alt.ss_size = sizeof g_alt_stack;
    (void)sigaltstack(&alt, nullptr);  // without it a stack overflow dies unreported, no worse
    struct sigaction sa {};
    sa.sa_handler = on_fatal_signal;
    sa.sa_flags = SA_RESETHAND | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (int sig : fatal_signals) (void)sigaction(sig, &sa, nullptr);
}

}  // namespace herd::worker
