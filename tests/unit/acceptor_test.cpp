// Tests server/core/acceptor: what each accept4() error means, and the loop on a real
// listening socket: batches, stop and pause from the handler, and the EMFILE pause (one
// warning, the socket unwatched, watched again after the pause).
#include "core/acceptor.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/log.hpp"
#include "core/socket.hpp"

namespace herd::core {
namespace {

using namespace std::chrono_literals;

TEST(AcceptStep, EmptyQueueEndsTheWakeUp) {
    EXPECT_EQ(accept_step(EAGAIN), AcceptStep::done);
    EXPECT_EQ(accept_step(EWOULDBLOCK), AcceptStep::done);
}

TEST(AcceptStep, OneConnectionsFailureGoesOn) {
    for (int err : {EINTR, ECONNABORTED, EPERM, EPROTO, ENETDOWN, EHOSTUNREACH, ENETUNREACH})
        EXPECT_EQ(accept_step(err), AcceptStep::again) << err;
}

TEST(AcceptStep, ShortageOfDescriptorsOrMemoryPauses) {
    for (int err : {EMFILE, ENFILE, ENOBUFS, ENOMEM})
        EXPECT_EQ(accept_step(err), AcceptStep::pause);
    // Unexpected (a closed socket, a bug): never a spin either.
    for (int err : {EBADF, EINVAL, ENOTSOCK}) EXPECT_EQ(accept_step(err), AcceptStep::pause);
}

// A listening socket on 127.0.0.1 and clients that connect to it.
struct Listener {
    UniqueFd socket = listen_tcp(parse_address("127.0.0.1:0"), false, 64);
    SocketAddress address = parse_address(local_address(socket.get()));
    std::vector<UniqueFd> clients;

    void connect_clients(int n) {
        for (int i = 0; i < n; ++i) {
            UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            ASSERT_TRUE(c);
            ASSERT_EQ(::connect(c.get(), reinterpret_cast<const sockaddr*>(&address.storage),
                                address.length),
                      0);
            // TCP_DEFER_ACCEPT: a connection is accepted once it has sent something.
            ASSERT_EQ(::send(c.get(), "x", 1, 0), 1);
            clients.push_back(std::move(c));
        }
    }
};

// Log lines written while it lives, read from a pipe.
struct CapturedLog {
    UniqueFd read, write;
    CapturedLog() {
        int p[2];
        if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("pipe2() failed");
        read.reset(p[0]);
        write.reset(p[1]);
        set_log_fd(write.get());
    }
    ~CapturedLog() { set_log_fd(STDERR_FILENO); }
    std::string text() {
        std::string out;
        char buf[4096];
        ssize_t n;
        while ((n = ::read(read.get(), buf, sizeof buf)) > 0)
            out.append(buf, static_cast<std::size_t>(n));
        return out;
    }
};

std::size_t count(const std::string& text, const std::string& what) {
    std::size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

// Runs the loop until pred() holds, each wait bounded so a bug fails instead of hangs.
template <class Pred>
bool pump(EventLoop& loop, Pred pred, int max_rounds = 200) {
    for (int i = 0; i < max_rounds && !pred(); ++i) loop.run_once(50);
    return pred();
}

TEST(Acceptor, AcceptsUpToABatchPerWakeUp) {
    EventLoop loop;
    Listener l;
    std::vector<UniqueFd> got;
    Acceptor::Options options;
    options.batch = 2;
    Acceptor a(
        loop, l.socket.get(), "test", [&](UniqueFd fd) { got.push_back(std::move(fd)); }, options);
    a.start();
    l.connect_clients(5);
    // Each wake-up takes at most two; level-triggered, so the rest come on later wake-ups.
    ASSERT_TRUE(pump(loop, [&] { return got.size() >= 2; }));
    EXPECT_EQ(got.size() % 2, 0u);
    ASSERT_TRUE(pump(loop, [&] { return got.size() == 5; }));
    for (auto& fd : got) EXPECT_NE(fcntl(fd.get(), F_GETFL) & O_NONBLOCK, 0);
}

TEST(Acceptor, StopFromTheHandlerEndsTheBatchAndTheWatch) {
    EventLoop loop;
    Listener l;
    int calls = 0;
    Acceptor* self = nullptr;
    Acceptor a(loop, l.socket.get(), "test", [&](UniqueFd) {
        ++calls;
        self->stop();
    });
    self = &a;
    a.start();
    l.connect_clients(3);
    ASSERT_TRUE(pump(loop, [&] { return calls == 1; }));
    for (int i = 0; i < 5; ++i) loop.run_once(20);
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(a.started());
    EXPECT_FALSE(loop.watching(l.socket.get()));
    // A last pass takes what is queued, stopped or not, and does not watch again.
    a.stop();
    a.accept_now();
    EXPECT_EQ(calls, 3);
    EXPECT_FALSE(loop.watching(l.socket.get()));
}

TEST(Acceptor, DestroyedByItsHandler) {
    EventLoop loop;
    Listener l;
    int calls = 0;
    std::unique_ptr<Acceptor> a;
    a = std::make_unique<Acceptor>(loop, l.socket.get(), "test", [&](UniqueFd) {
        ++calls;
        a.reset();
    });
    a->start();
    l.connect_clients(3);
    ASSERT_TRUE(pump(loop, [&] { return calls == 1; }));
    for (int i = 0; i < 5; ++i) loop.run_once(20);
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(loop.watching(l.socket.get()));
}

TEST(Acceptor, GateAndPauseForLetAWakeUpPassWithoutAWarning) {
    EventLoop loop;
    Listener l;
    CapturedLog log;
    int calls = 0, asked = 0;
    Acceptor* self = nullptr;
    Acceptor::Options options;
    options.gate = [&] {
        if (++asked > 1) return true;
        self->pause_for(30ms);  // the first wake-up steps back
        return false;
    };
    Acceptor a(
        loop, l.socket.get(), "test", [&](UniqueFd) { ++calls; }, options);
    self = &a;
    a.start();
    l.connect_clients(1);
    ASSERT_TRUE(pump(loop, [&] { return asked == 1; }));
    EXPECT_TRUE(a.paused());
    EXPECT_EQ(calls, 0);
    ASSERT_TRUE(pump(loop, [&] { return calls == 1; }));
    EXPECT_TRUE(a.started());
    EXPECT_FALSE(a.paused());
    EXPECT_EQ(log.text(), "");
}

// Out of descriptors: the socket stays readable, and an acceptor that kept watching it would
// wake up for nothing in every iteration. It pauses instead, with one warning per pause.
TEST(Acceptor, OutOfDescriptorsPausesThenResumes) {
    EventLoop loop;
    Listener l;
    CapturedLog log;
    std::vector<UniqueFd> got;
    int wakeups = 0;
    Acceptor::Options options;
    options.pause = 100ms;
    options.gate = [&] {
        ++wakeups;
        return true;
    };
    options.context = [] { return std::string("7 connections open"); };
    Acceptor a(
        loop, l.socket.get(), "app \"web\" on test",
        [&](UniqueFd fd) { got.push_back(std::move(fd)); }, options);
    a.start();
    l.connect_clients(2);

    rlimit before{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &before), 0);
    int lowest_free = ::dup(0);
    ASSERT_GE(lowest_free, 0);
    ::close(lowest_free);
    rlimit exhausted = before;
    exhausted.rlim_cur = static_cast<rlim_t>(lowest_free);  // no new descriptor can be made
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &exhausted), 0);
    ASSERT_TRUE(pump(loop, [&] { return a.paused(); }));
    EXPECT_TRUE(got.empty());
    EXPECT_FALSE(loop.watching(l.socket.get()));
    // While paused the loop does not wake for the socket: 50 ms of it pass with no wake-up.
    int seen = wakeups;
    auto until = EventLoop::now() + 50ms;
    while (EventLoop::now() < until) loop.run_once(10);
    EXPECT_EQ(wakeups, seen);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &before), 0);

    std::string text = log.text();
    EXPECT_EQ(count(text, "pausing accept"), 1u) << text;
    EXPECT_NE(text.find("accept4() on app \"web\" on test: EMFILE (Too many open files); pausing "
                        "accept for 100 ms (7 connections open)"),
              std::string::npos)
        << text;
    // After the pause it watches again and takes both.
    ASSERT_TRUE(pump(loop, [&] { return got.size() == 2; }));
    EXPECT_TRUE(loop.watching(l.socket.get()));
    EXPECT_FALSE(a.paused());
}

TEST(Acceptor, StopCancelsAPause) {
    EventLoop loop;
    Listener l;
    Acceptor a(loop, l.socket.get(), "test", [](UniqueFd) {});
    a.start();
    a.pause_for(10ms);
    a.stop();
    for (int i = 0; i < 5; ++i) loop.run_once(10);
    EXPECT_FALSE(a.started());
    EXPECT_FALSE(loop.watching(l.socket.get()));
    a.start();
    EXPECT_TRUE(loop.watching(l.socket.get()));
}

}  // namespace
}  // namespace herd::core
