// Acceptor: the one accept loop of every herd process (a worker's listen socket, the master's
// placement sockets, the control socket, the metrics endpoint), and what it does when the
// process runs out of descriptors or memory.
#pragma once

#include <sys/epoll.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"

namespace herd::core {

// What the loop does after accept4() failed with `err`. Pure: unit-tested.
enum class AcceptStep {
    done,   // EAGAIN: the queue is empty; wait for the next wake-up
    again,  // the failure was this one connection's (aborted, refused by a firewall): go on
    pause,  // out of descriptors or memory, or unexpected: stop watching for a moment
};
AcceptStep accept_step(int err);

// Accepts on a listening socket it does not own, for as long as it is started. The socket is
// level-triggered, so on EMFILE, ENFILE, ENOBUFS or ENOMEM (the socket stays readable: watching
// it again at once would spin) it stops watching the socket, logs one warning naming the socket
// and the errno, and watches again after the pause (nginx's way; the backlog keeps the
// clients). The caller destroys or stops it before closing the socket.
class Acceptor {
  public:
    using Handler = std::function<void(UniqueFd connection)>;
    struct Options {
        int batch = 16;                  // connections accepted per wake-up at most
        std::uint32_t events = EPOLLIN;  // EPOLLIN | EPOLLEXCLUSIVE where workers share one
        std::chrono::milliseconds pause{100};
        // Asked at each wake-up before accepting; false: accept nothing this time (the gate
        // has called pause_for(), say, to let a sibling take the connection).
        std::function<bool()> gate;
        // Appended to the pause warning: "(12 connections open)".
        std::function<std::string()> context;
    };

    // `name` says which socket in the warning: "app \"web\" on 127.0.0.1:8080".
    Acceptor(EventLoop& loop, int fd, std::string name, Handler handler, Options options);
    Acceptor(EventLoop& loop, int fd, std::string name, Handler handler)
        : Acceptor(loop, fd, std::move(name), std::move(handler), Options()) {}
    ~Acceptor();
    Acceptor(const Acceptor&) = delete;
    Acceptor& operator=(const Acceptor&) = delete;

    // Watches the socket (again); cancels a pause. Throws Error if epoll refuses it.
    void start();
    // Stops watching, for good until start(); cancels a pause. Safe from inside the handler.
    void stop();
    // Stops watching and starts again after `delay`, without a warning.
    void pause_for(std::chrono::milliseconds delay);
    // One batch now, watched or not: the last pass over a queue before its socket closes.
    void accept_now();

    bool started() const { return state_ != State::stopped; }
    bool paused() const { return state_ == State::paused; }
    int fd() const { return fd_; }
    const std::string& name() const { return name_; }

  private:
    enum class State { stopped, watching, paused };
    void on_readable();
    void accept_batch();
    void unwatch();
    void cancel_pause();

    EventLoop& loop_;
    int fd_;
    std::string name_;
    Handler handler_;
    Options options_;
    State state_ = State::stopped;
    EventLoop::TimerId resume_ = 0;
    // Cleared by the destructor: a handler may destroy its acceptor in the middle of a batch.
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace herd::core
