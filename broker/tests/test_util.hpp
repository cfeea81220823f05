// Helpers for the broker's tests: a temporary folder, running an EventLoop until a condition
// holds (bounded), a real redis-server started on a free port or a unix socket, and a real
// redis-sentinel.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "broker/backend.hpp"
#include "core/event_loop.hpp"

namespace herd::broker::test {

using namespace std::chrono_literals;

// Collects what a backend reports.
struct Recorder {
    std::vector<state::Delta> deltas;
    int resets = 0;
    int status_changes = 0;
    Backend::Events events() {
        Backend::Events e;
        e.on_delta = [this](const state::Delta& d) { deltas.push_back(d); };
        e.on_reset = [this] { ++resets; };
        e.on_status = [this] { ++status_changes; };
        return e;
    }
};

// The outcome of one Backend::write.
struct WriteResult {
    bool done = false;
    std::string error;
    std::uint64_t version = 0;
    Backend::WriteDone callback() {
        return [this](const std::string& e, std::uint64_t v) {
            done = true;
            error = e;
            version = v;
        };
    }
};

class TempDir {
  public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "herd-broker-XXXXXX");
        std::vector<char> buf(pattern.begin(), pattern.end());
        buf.push_back('\0');
        if (mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp() failed");
        path_ = buf.data();
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    std::string operator/(const std::string& name) const { return path_ + "/" + name; }

  private:
    std::string path_;
};

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void write_file(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
}

// Runs the loop until pred() holds or the deadline passes; returns pred().
inline bool run_until(core::EventLoop& loop, const std::function<bool()>& pred,
                      std::chrono::milliseconds deadline = 10s) {
    auto end = core::EventLoop::now() + deadline;
    while (!pred()) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(end - core::EventLoop::now());
        if (left.count() <= 0) return pred();
        loop.run_once(static_cast<int>(std::min<long long>(left.count(), 50)));
    }
    return true;
}

// Forks and execs args (args[0] a path) with standard input /dev/null and standard output a
// pipe, whose read end goes in read_end (close-on-exec). Returns the child's pid.
inline pid_t spawn_piped(const std::vector<std::string>& args, int& read_end) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe2() failed");
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork() failed");
    if (pid == 0) {
        dup2(out[1], 1);
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        std::vector<char*> argv;
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        execv(argv[0], argv.data());
        _exit(127);
    }
    close(out[1]);
    read_end = out[0];
    return pid;
}

// Kills a process spawn_until_ready started, waits for it, and closes its output pipe.
inline void kill_and_reap(pid_t& pid, int& log_fd) {
    if (pid > 0) {
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        pid = -1;
    }
    if (log_fd >= 0) close(log_fd);
    log_fd = -1;
}

// Runs a command, returns its standard output (and the exit status in status).
inline std::string run_command(const std::vector<std::string>& args, int* status = nullptr) {
    int out = -1;
    pid_t pid = spawn_piped(args, out);
    std::string text;
    char buf[4096];
    ssize_t n;
    while ((n = read(out, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    close(out);
    int st = 0;
    waitpid(pid, &st, 0);
    if (status != nullptr) *status = st;
    return text;
}

inline int free_tcp_port() {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        close(fd);
        throw std::runtime_error("cannot find a free port");
    }
    int port = ntohs(a.sin_port);
    close(fd);
    return port;
}

// Starts args (its standard output a pipe) and waits, at most 10 s, for marker on that output;
// then keeps the pipe (log_fd, non-blocking) so the process never blocks on a full pipe.
// Throws with what it printed when the marker does not come (the process is then killed).
inline void spawn_until_ready(const std::vector<std::string>& args, const std::string& marker,
                              pid_t& pid_out, int& log_fd) {
    int out = -1;
    pid_t pid = spawn_piped(args, out);
    std::string log;
    auto end = std::chrono::steady_clock::now() + 10s;
    bool ready = false;
    while (!ready && std::chrono::steady_clock::now() < end) {
        pollfd p{out, POLLIN, 0};
        int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        end - std::chrono::steady_clock::now())
                                        .count());
        if (poll(&p, 1, std::max(left, 1)) <= 0) continue;
        char buf[4096];
        ssize_t n = read(out, buf, sizeof buf);
        if (n <= 0) break;
        log.append(buf, static_cast<size_t>(n));
        ready = log.find(marker) != std::string::npos;
    }
    fcntl(out, F_SETFL, O_NONBLOCK);
    if (!ready) {
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        close(out);
        throw std::runtime_error(args[0] + " did not become ready:\n" + log);
    }
    pid_out = pid;
    log_fd = out;
}

// A redis-server of our own: no persistence, no system config. Started on a unix socket in
// dir (and on a TCP port when port != 0); waits for "ready to accept connections" on its
// log (its standard output), bounded.
class RedisServer {
  public:
    static bool available() { return std::string(REDIS_SERVER).size() > 0; }

    RedisServer(std::string dir, int port = 0, std::string password = {},
                std::vector<std::string> extra_args = {})
        : dir_(std::move(dir)),
          port_(port),
          password_(std::move(password)),
          extra_args_(std::move(extra_args)) {
        start();
    }
    ~RedisServer() { stop(); }

    std::string socket() const { return dir_ + "/redis.sock"; }
    int port() const { return port_; }
    bool running() const { return pid_ > 0; }
    pid_t pid() const { return pid_; }

    void start() {
        if (pid_ > 0) return;
        std::vector<std::string> args = {REDIS_SERVER,
                                         "--port",
                                         std::to_string(port_),
                                         "--bind",
                                         "127.0.0.1",
                                         "--unixsocket",
                                         socket(),
                                         "--unixsocketperm",
                                         "700",
                                         "--save",
                                         "",
                                         "--appendonly",
                                         "no",
                                         "--dir",
                                         dir_,
                                         "--logfile",
                                         "",
                                         "--daemonize",
                                         "no",
                                         "--protected-mode",
                                         "no"};
        if (!password_.empty()) {
            args.push_back("--requirepass");
            args.push_back(password_);
        }
        args.insert(args.end(), extra_args_.begin(), extra_args_.end());
        spawn_until_ready(args, "eady to accept connections", pid_, log_fd_);  // "Ready", "ready"
    }

    // Stops it and waits until it has exited (its sockets are closed then).
    void stop() {
        kill_and_reap(pid_, log_fd_);
        std::error_code ec;
        std::filesystem::remove(socket(), ec);
    }

    // redis-cli against this server (over the unix socket).
    std::string cli(const std::vector<std::string>& args, int* status = nullptr) const {
        std::vector<std::string> full = {REDIS_CLI, "-s", socket()};
        if (!password_.empty()) {
            full.push_back("--no-auth-warning");
            full.push_back("-a");
            full.push_back(password_);
        }
        full.insert(full.end(), args.begin(), args.end());
        std::string out = run_command(full, status);
        while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
        return out;
    }

  private:
    std::string dir_;
    int port_;
    std::string password_;
    std::vector<std::string> extra_args_;
    pid_t pid_ = -1;
    int log_fd_ = -1;
};

// A redis-sentinel of our own on 127.0.0.1:port, monitoring 127.0.0.1:primary_port as name
// with quorum 2 and short timeouts (down after 500 ms, failover timeout 2 s) so that tests fail
// over in seconds. Its config file, which it rewrites, is in dir. Ready once it monitors. The
// sentinel itself asks for no password.
class RedisSentinel {
  public:
    static bool available() { return std::string(REDIS_SENTINEL).size() > 0; }

    // auth_pass: the password of the primary and its replicas ("" : none); requirepass: the
    // sentinel's own ("" : none).
    RedisSentinel(const std::string& dir, int port, const std::string& name, int primary_port,
                  const std::string& auth_pass = {}, const std::string& requirepass = {})
        : port_(port), requirepass_(requirepass) {
        std::string conf = dir + "/sentinel-" + std::to_string(port) + ".conf";
        write_file(
            conf,
            "port " + std::to_string(port) +
                "\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\nlogfile \"\"\n"
                "dir " +
                dir + "\nsentinel monitor " + name + " 127.0.0.1 " + std::to_string(primary_port) +
                " 2\nsentinel down-after-milliseconds " + name +
                " 500\nsentinel failover-timeout " + name + " 2000\nsentinel parallel-syncs " +
                name + " 1\n" +
                (auth_pass.empty() ? "" : "sentinel auth-pass " + name + " " + auth_pass + "\n") +
                (requirepass.empty() ? ""
                                     : "requirepass " + requirepass + "\nsentinel sentinel-pass " +
                                           requirepass + "\n"));
        spawn_until_ready({REDIS_SENTINEL, conf}, "+monitor master", pid_, log_fd_);
    }
    ~RedisSentinel() { stop(); }

    int port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

    void stop() { kill_and_reap(pid_, log_fd_); }

    // redis-cli against this sentinel.
    std::string cli(const std::vector<std::string>& args) const {
        std::vector<std::string> full = {REDIS_CLI, "-h", "127.0.0.1", "-p", std::to_string(port_)};
        if (!requirepass_.empty())
            full.insert(full.end(), {"--no-auth-warning", "-a", requirepass_});
        full.insert(full.end(), args.begin(), args.end());
        std::string out = run_command(full);
        while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
        return out;
    }

  private:
    int port_;
    std::string requirepass_;
    pid_t pid_ = -1;
    int log_fd_ = -1;
};

}  // namespace herd::broker::test
