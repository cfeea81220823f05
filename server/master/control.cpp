// ControlServer and the CLI's request; see control.hpp.
#include "master/control.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "core/error.hpp"
#include "core/log.hpp"

namespace herd::master {
namespace {

constexpr std::size_t max_request = 64 << 10;

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof a.sun_path)
        throw core::Error("control socket path is longer than " +
                          std::to_string(sizeof a.sun_path - 1) + " bytes: " + path);
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return a;
}

// Connects, or returns an invalid fd with errno set.
core::UniqueFd connect_to(const std::string& path) {
    sockaddr_un a = unix_address(path);
    core::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) core::throw_errno("socket(AF_UNIX)");
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return {};
    return fd;
}

// Sends the request. A master that closed the connection first (it is stopping) may have
// written why before it did: a broken pipe still leaves that to read.
void send_request(int fd, const std::string& path, const nlohmann::json& request) {
    std::string line = request.dump() + "\n";
    ssize_t n = ::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(line.size())) return;
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) return;
    core::throw_errno("send() to " + path);
}

}  // namespace

std::string unix_socket_path(int fd) {
    sockaddr_un a{};
    socklen_t length = sizeof a;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &length) < 0 || a.sun_family != AF_UNIX ||
        length <= offsetof(sockaddr_un, sun_path) || a.sun_path[0] == '\0')
        return {};
    return std::string(a.sun_path, strnlen(a.sun_path, sizeof a.sun_path));
}

ControlServer::ControlServer(core::EventLoop& loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)) {}

ControlServer::~ControlServer() {
    for (auto& [fd, c] : clients_) loop_.remove(fd);
    acceptor_.reset();
    if (socket_ && owns_path_) (void)::unlink(path_.c_str());  // a new master may bind the path
}

void ControlServer::listen(const std::string& path) {
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            throw core::Error(
                "control socket " + path +
                " exists and is not a socket (a symlink or file?): refusing to replace it");
        if (connect_to(path))
            throw core::Error("control socket " + path + ": another herd master is running there");
        if (::unlink(path.c_str()) < 0)
            core::throw_errno("unlink(stale control socket " + path + ")");
        core::log_warn("replaced the stale control socket {} (its master is gone)", path);
    }
    sockaddr_un a = unix_address(path);
    socket_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!socket_) core::throw_errno("socket(AF_UNIX) for " + path);
    // Mode 0600 from the start: the umask applies to bind(), so no moment with wider access.
    mode_t old = umask(0177);
    int rc = ::bind(socket_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    int err = errno;
    umask(old);
    if (rc < 0) throw core::Error(core::errno_text("bind(control socket " + path + ")", err));
    if (::listen(socket_.get(), 16) < 0) core::throw_errno("listen(control socket " + path + ")");
    path_ = path;
    start_accepting();
}

void ControlServer::adopt(core::UniqueFd socket, const std::string& path, bool accepting) {
    socket_ = std::move(socket);
    path_ = path;
    if (accepting) start_accepting();
}

void ControlServer::start_accepting() {
    if (!socket_ || acceptor_) return;
    owns_path_ = true;
    acceptor_ =
        std::make_unique<core::Acceptor>(loop_, socket_.get(), "control socket " + path_,
                                         [this](core::UniqueFd fd) { on_accept(std::move(fd)); });
    acceptor_->start();
}

void ControlServer::hand_over() {
    acceptor_.reset();  // before its socket closes
    full_ = false;
    owns_path_ = false;
    socket_.reset();  // our copy; the path is the new master's now
}

void ControlServer::on_accept(core::UniqueFd fd) {
    int key = fd.get();
    auto c = std::make_unique<Client>();
    c->fd = std::move(fd);
    c->id = next_id_++;
    try {
        loop_.add(key, EPOLLIN | EPOLLRDHUP, [this, key](std::uint32_t ev) { on_client(key, ev); });
    } catch (const core::Error& e) {
        core::log_warn("control socket {}: cannot watch a client: {}; closing it", path_, e.what());
        return;  // closes it
    }
    std::uint64_t id = c->id;
    clients_[key] = std::move(c);
    if (clients_.size() >= max_clients && acceptor_) {
        // Full: the next ones wait in the backlog until one leaves (drop()).
        core::log_warn("control socket {}: {} clients at once; accepting more once one leaves",
                       path_, max_clients);
        acceptor_->stop();
        full_ = true;
    }
    loop_.add_timer(request_timeout, [this, key, id] {
        auto it = clients_.find(key);
        if (it == clients_.end() || it->second->id != id || it->second->asked) return;
        core::log_warn("control socket {}: a client sent no whole request in {} ms; dropping it",
                       path_, request_timeout.count());
        drop(key);
    });
}

void ControlServer::on_client(int fd, std::uint32_t events) {
    auto it = clients_.find(fd);
    if (it == clients_.end()) return;
    Client& c = *it->second;
    if (!c.asked) {
        char buf[4096];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) c.in.append(buf, static_cast<std::size_t>(n));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            drop(fd);
            return;
        }
        auto newline = c.in.find('\n');
        if (newline == std::string::npos && c.in.size() < max_request) return;
        c.asked = true;
        // From now on only the answer matters. A client that hangs up entirely (EPOLLHUP is
        // reported without asking) will not read it; one that only shut down its side will.
        loop_.modify(fd, 0);
        std::uint64_t id = c.id;
        auto request = nlohmann::json::parse(c.in.substr(0, newline), nullptr, false);
        if (newline == std::string::npos)
            answer(id,
                   {{"ok", false},
                    {"error", "request longer than " + std::to_string(max_request) + " bytes"}});
        else if (request.is_discarded() || !request.is_object())
            answer(id, {{"ok", false}, {"error", "request is not a JSON object"}});
        else if (request.value("cmd", nlohmann::json()) == "events") {
            // Its input from now on is only watched for the client's end.
            c.subscribed = true;
            loop_.modify(fd, EPOLLIN | EPOLLRDHUP);
            // The first line: from here on no event is missed (a script can wait for it).
            answer(id, {{"ok", true}, {"event", "events.subscribed"}});
        } else
            try {
                handler_(request, [this, id](const nlohmann::json& a) { answer(id, a); });
            } catch (const std::exception& e) {
                answer(id, {{"ok", false}, {"error", e.what()}});
            }
        return;
    }
    if (c.subscribed) return on_subscriber(c, events);
    if (c.out.empty()) {
        // Waiting for the answer, and the client hung up: it will not read it.
        if (events & (EPOLLHUP | EPOLLERR)) drop(fd);
        return;
    }
    write_out(c);
}

void ControlServer::answer(std::uint64_t id, const nlohmann::json& a) {
    auto it = std::find_if(clients_.begin(), clients_.end(),
                           [id](const auto& entry) { return entry.second->id == id; });
    if (it == clients_.end() || !it->second->out.empty()) return;
    Client& c = *it->second;
    c.out = a.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    loop_.modify(c.fd.get(), EPOLLOUT);
    write_out(c);
}

void ControlServer::write_out(Client& c) {
    int fd = c.fd.get();
    ssize_t w = ::send(fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
    if (w > 0) c.written += static_cast<std::size_t>(w);
    if (w < 0 && errno != EAGAIN && errno != EINTR) return drop(fd);
    if (c.written < c.out.size()) return;
    if (!c.subscribed) return drop(fd);
    // Everything sent: wait for the next event, watching only for the client's end.
    c.out.clear();
    c.written = 0;
    loop_.modify(fd, EPOLLIN | EPOLLRDHUP);
}

void ControlServer::on_subscriber(Client& c, std::uint32_t events) {
    int fd = c.fd.get();
    if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) return drop(fd);
    if (events & EPOLLIN) {
        // It sends nothing more; what it does send is read and ignored, its end closes it.
        char buf[512];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return drop(fd);
    }
    if ((events & EPOLLOUT) && !c.out.empty()) write_out(c);
}

void ControlServer::publish(const nlohmann::json& event) {
    std::string line;
    std::vector<int> slow, idle;
    for (auto& [fd, c] : clients_) {
        if (!c->subscribed) continue;
        if (line.empty())
            line = event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        if (c->out.size() - c->written + line.size() > max_event_backlog) {
            slow.push_back(fd);
            continue;
        }
        if (c->out.empty()) idle.push_back(fd);
        c->out += line;
    }
    for (int fd : slow) {
        core::log_warn(
            "an events client (control socket {}) reads too slowly ({} bytes behind); "
            "disconnecting it",
            path_, max_event_backlog);
        drop(fd);
    }
    // Writing may drop a client: not while iterating over them.
    for (int fd : idle) {
        auto it = clients_.find(fd);
        if (it == clients_.end()) continue;
        loop_.modify(fd, EPOLLIN | EPOLLRDHUP | EPOLLOUT);
        write_out(*it->second);
    }
}

void ControlServer::drop(int fd) {
    loop_.remove(fd);
    clients_.erase(fd);
    if (full_ && clients_.size() < max_clients && acceptor_) {
        full_ = false;
        try {
            acceptor_->start();
        } catch (const core::Error& e) {
            core::log_error("control socket {}: {}; trying again in 100 ms", path_, e.what());
            acceptor_->pause_for(std::chrono::milliseconds(100));
        }
    }
}

void control_stream(const std::string& path, const nlohmann::json& request,
                    const std::function<bool(const nlohmann::json&)>& on_line) {
    core::UniqueFd fd = connect_to(path);
    if (!fd)
        throw core::Error(core::errno_text("no herd master is running at " + path + " (connect)"));
    send_request(fd.get(), path, request);
    std::string in;
    char buf[65536];
    for (;;) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) core::throw_errno("read() from " + path);
        if (n == 0) return;
        in.append(buf, static_cast<std::size_t>(n));
        std::size_t start = 0;
        for (std::size_t nl; (nl = in.find('\n', start)) != std::string::npos; start = nl + 1) {
            auto json = nlohmann::json::parse(in.substr(start, nl - start), nullptr, false);
            if (json.is_discarded() || !json.is_object())
                throw core::Error("the master at " + path +
                                  " sent a line that is not a JSON object");
            if (!on_line(json)) return;
        }
        in.erase(0, start);
    }
}

nlohmann::json control_request(const std::string& path, const nlohmann::json& request) {
    nlohmann::json answer;
    control_stream(path, request, [&](const nlohmann::json& line) {
        answer = line;
        return false;  // one answer
    });
    if (!answer.is_object()) throw core::Error("the master at " + path + " gave no valid answer");
    return answer;
}

}  // namespace herd::master
