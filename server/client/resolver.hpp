// Host names to addresses without blocking the loop: c-ares (Debian's libc-ares) driven by the
// core EventLoop: its sockets are watched there, its timeouts are a loop timer. /etc/hosts and
// /etc/resolv.conf are read as the system resolver reads them. An IP literal needs no lookup.
#pragma once

#include <sys/socket.h>

#include <ares.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/event_loop.hpp"

namespace herd::client {

class Resolver {
  public:
    // addresses empty: error says why ("no address for api.internal: ...").
    using Done = std::function<void(std::vector<sockaddr_storage> addresses, std::string error)>;
    // servers: "" for /etc/resolv.conf's, or "127.0.0.1:5353,..." (c-ares' CSV form); a
    // query is tried `tries` times, `timeout` each (0: c-ares' defaults).
    struct Options {
        std::string servers;
        int tries = 0;
        std::chrono::milliseconds timeout{0};
    };
    Resolver(core::EventLoop& loop, const Options& options);
    explicit Resolver(core::EventLoop& loop) : Resolver(loop, Options()) {}
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    // Looks host up (IPv4 and IPv6); done runs in the loop, never inside this call. Returns an
    // id for cancel().
    std::uint64_t resolve(const std::string& host, std::uint16_t port, Done done);
    // done will not be called (c-ares finishes the query; its answer is dropped).
    void cancel(std::uint64_t id);

  private:
    struct Query {
        Resolver* self = nullptr;
        std::uint64_t id = 0;
        std::string host;
        Done done;
    };
    static void on_socket(void* data, ares_socket_t fd, int readable, int writable);
    static void on_answer(void* arg, int status, int timeouts, ares_addrinfo* result);
    void process(ares_socket_t read_fd, ares_socket_t write_fd);
    void arm_timer();

    core::EventLoop& loop_;
    ares_channel channel_ = nullptr;
    std::map<std::uint64_t, std::unique_ptr<Query>> queries_;
    std::set<std::uint64_t> delivering_;  // answered, done deferred to the loop
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
    std::uint64_t next_id_ = 1;
    core::EventLoop::TimerId timer_ = 0;
    bool destroying_ = false;
};

}  // namespace herd::client
