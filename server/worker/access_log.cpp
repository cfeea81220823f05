// AccessLog; see access_log.hpp.
#include "worker/access_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <herd/http.hpp>

#include "core/error.hpp"
#include "core/log.hpp"

namespace herd::worker {
namespace {
constexpr std::size_t flush_at = 64 << 10;
}

void append_escaped(std::string& out, std::string_view text) {
    static const char hex[] = "0123456789ABCDEF";
    for (char ch : text) {
        auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += ch;
        }
    }
}

void AccessLog::open(const std::string& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) throw core::Error(core::errno_text("open(access log " + path + ")"));
    path_ = path;
    fd_.reset(fd);
}

void AccessLog::reopen() {
    if (!fd_) return;
    flush();
    int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        core::log_error("{}; still writing to the file open before",
                        core::errno_text("reopening access log " + path_));
        return;
    }
    fd_.reset(fd);
}

void AccessLog::record(std::string_view peer, const Request& request, int status,
                       std::size_t bytes) {
    std::time_t now = std::time(nullptr);
    if (now != stamp_second_) {
        stamp_second_ = now;
        std::tm local{};
        localtime_r(&now, &local);
        char buf[40];
        std::size_t n = std::strftime(buf, sizeof buf, "[%d/%b/%Y:%H:%M:%S %z]", &local);
        stamp_.assign(buf, n);
    }
    std::string& b = buffer_;
    b.append(peer.empty() ? "-" : peer);
    b.append(" - - ");
    b.append(stamp_);
    b.append(" \"");
    append_escaped(b, request.method());
    b += ' ';
    append_escaped(b, request.target());
    b.append(request.http_minor() == 0 ? " HTTP/1.0\" " : " HTTP/1.1\" ");
    b.append(std::to_string(status));
    b += ' ';
    b.append(bytes == 0 ? "-" : std::to_string(bytes));
    b.append(" \"");
    append_escaped(b, request.header("Referer").value_or("-"));
    b.append("\" \"");
    append_escaped(b, request.header("User-Agent").value_or("-"));
    b.append("\"\n");
    if (buffer_.size() >= flush_at) {
        flush();
    } else if (!flush_due_) {
        flush_due_ = true;
        loop_.defer([this] { flush(); });
    }
}

void AccessLog::flush() {
    flush_due_ = false;
    if (buffer_.empty() || !fd_) return;
    std::size_t lines = 0;
    for (char c : buffer_) lines += c == '\n';
    const char* p = buffer_.data();
    std::size_t left = buffer_.size();
    while (left > 0) {
        ssize_t w = ::write(fd_.get(), p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            // A full disk must not stop the server; it must not go unnoticed either.
            if (lost_ == 0)
                core::log_error("{}; lines are lost until it works again",
                                core::errno_text("writing access log " + path_));
            lost_ += lines;
            buffer_.clear();
            return;
        }
        p += w;
        left -= static_cast<std::size_t>(w);
    }
    if (lost_ > 0) {
        core::log_warn("access log {} is written again; {} line(s) were lost", path_, lost_);
        lost_ = 0;
    }
    buffer_.clear();
}

}  // namespace herd::worker
