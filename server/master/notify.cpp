// Service-manager notifications; see notify.hpp.
#include "master/notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/log.hpp"
#include "core/unique_fd.hpp"

namespace herd::master {

Notifier::Notifier() {
    if (const char* p = std::getenv("NOTIFY_SOCKET"); p != nullptr && *p != '\0') path_ = p;
    ::unsetenv("NOTIFY_SOCKET");
}

void Notifier::send(std::string_view state) {
    if (path_.empty() || muted_) return;
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path_.size() >= sizeof a.sun_path || (path_[0] != '/' && path_[0] != '@')) {
        if (!warned_) core::log_error("NOTIFY_SOCKET \"{}\" is not a usable socket path", path_);
        warned_ = true;
        return;
    }
    std::memcpy(a.sun_path, path_.data(), path_.size());
    if (a.sun_path[0] == '@') a.sun_path[0] = '\0';  // abstract namespace
    socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size());
    core::UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd || ::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
                        reinterpret_cast<sockaddr*>(&a), length) < 0) {
        if (!warned_)
            core::log_error("{}", core::errno_text("notifying the service manager at " + path_));
        warned_ = true;
        return;
    }
    core::log_debug("told the service manager: {}", state);
}

void Notifier::ready(std::string_view status) {
    send("READY=1\nSTATUS=" + std::string(status));
}

void Notifier::reloading(std::string_view status) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ull +
                static_cast<unsigned long long>(ts.tv_nsec) / 1000ull;
    send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=" + std::string(status));
}

void Notifier::stopping(std::string_view status) {
    send("STOPPING=1\nSTATUS=" + std::string(status));
}

void Notifier::main_pid(pid_t pid, std::string_view status) {
    send("MAINPID=" + std::to_string(pid) + "\nSTATUS=" + std::string(status));
}

}  // namespace herd::master
