// Tests server/core/event_loop: timers, fd handlers, removal inside callbacks, defer().
#include "core/event_loop.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.hpp"

namespace herd::core {
namespace {

using namespace std::chrono_literals;

std::size_t open_fd_count() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

struct Pipe {
    UniqueFd read, write;
    Pipe() {
        int p[2];
        if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("pipe2() failed");
        read.reset(p[0]);
        write.reset(p[1]);
    }
    void poke() const {
        char c = 'x';
        if (::write(write.get(), &c, 1) != 1) throw std::runtime_error("write() failed");
    }
    void drain() const {
        char buf[64];
        while (::read(read.get(), buf, sizeof buf) > 0) {
        }
    }
};

// Runs the loop until pred() holds, each wait bounded so a bug fails instead of hangs.
template <class Pred>
bool pump(EventLoop& loop, Pred pred, int max_rounds = 100) {
    for (int i = 0; i < max_rounds; ++i) {
        if (pred()) return true;
        loop.run_once(1000);
    }
    return pred();
}

TEST(EventLoopTest, TimersFireInDeadlineOrder) {
    EventLoop loop;
    std::vector<int> order;
    auto start = EventLoop::now();  // before the timers, whose deadlines count from their add
    // Added out of order; the deadlines decide.
    loop.add_timer(30ms, [&] { order.push_back(30); });
    loop.add_timer(10ms, [&] { order.push_back(10); });
    loop.add_timer(20ms, [&] { order.push_back(20); });
    loop.add_timer(0ms, [&] { order.push_back(0); });
    ASSERT_TRUE(pump(loop, [&] { return order.size() == 4; }));
    EXPECT_EQ(order, (std::vector<int>{0, 10, 20, 30}));
    EXPECT_GE(EventLoop::now() - start, 30ms);  // none fired before its deadline
}

TEST(EventLoopTest, TimerDoesNotFireEarly) {
    EventLoop loop;
    bool fired = false;
    auto start = EventLoop::now();
    EventLoop::Clock::time_point fired_at;
    loop.add_timer(15ms, [&] {
        fired = true;
        fired_at = EventLoop::now();
    });
    loop.run_once(0);
    EXPECT_FALSE(fired);
    ASSERT_TRUE(pump(loop, [&] { return fired; }));
    EXPECT_GE(fired_at - start, 15ms);
}

TEST(EventLoopTest, CancelTimer) {
    EventLoop loop;
    std::vector<int> order;
    auto first = loop.add_timer(1ms, [&] { order.push_back(1); });
    loop.add_timer(5ms, [&] { order.push_back(5); });
    auto third = loop.add_timer(8ms, [&] { order.push_back(8); });
    loop.add_timer(12ms, [&] { order.push_back(12); });
    loop.cancel_timer(first);
    loop.cancel_timer(third);
    loop.cancel_timer(third);   // twice: nothing
    loop.cancel_timer(999999);  // unknown: nothing
    ASSERT_TRUE(pump(loop, [&] { return order.size() == 2; }));
    EXPECT_EQ(order, (std::vector<int>{5, 12}));
    loop.cancel_timer(first);  // already cancelled, and its deadline is past
}

TEST(EventLoopTest, CancelOnlyTimerThenAddLater) {
    EventLoop loop;
    bool early = false, late = false;
    auto id = loop.add_timer(1ms, [&] { early = true; });
    loop.cancel_timer(id);
    loop.add_timer(20ms, [&] { late = true; });
    ASSERT_TRUE(pump(loop, [&] { return late; }));
    EXPECT_FALSE(early);
}

TEST(EventLoopTest, TimerCanCancelAnotherDueInTheSameBatch) {
    EventLoop loop;
    std::vector<int> order;
    EventLoop::TimerId second = 0;
    loop.add_timer(1ms, [&] {
        order.push_back(1);
        loop.cancel_timer(second);
    });
    second = loop.add_timer(2ms, [&] { order.push_back(2); });
    loop.add_timer(10ms, [&] { order.push_back(3); });
    ASSERT_TRUE(pump(loop, [&] { return order.size() >= 2; }));
    EXPECT_EQ(order, (std::vector<int>{1, 3}));
}

TEST(EventLoopTest, TimerAddedFromATimer) {
    EventLoop loop;
    std::vector<int> order;
    loop.add_timer(1ms, [&] {
        order.push_back(1);
        loop.add_timer(0ms, [&] { order.push_back(2); });
    });
    loop.add_timer(50ms, [&] { order.push_back(3); });
    ASSERT_TRUE(pump(loop, [&] { return order.size() == 3; }));
    EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(EventLoopTest, TimerIdsAreDistinct) {
    EventLoop loop;
    auto a = loop.add_timer(1h, [] {});
    auto b = loop.add_timer(1h, [] {});
    EXPECT_NE(a, b);
}

TEST(EventLoopTest, FdHandlerGetsItsEvents) {
    EventLoop loop;
    Pipe p;
    std::vector<std::uint32_t> events;
    loop.add(p.read.get(), EPOLLIN, [&](std::uint32_t ev) {
        events.push_back(ev);
        p.drain();
    });
    EXPECT_TRUE(loop.watching(p.read.get()));
    loop.run_once(0);
    EXPECT_TRUE(events.empty());
    p.poke();
    ASSERT_TRUE(pump(loop, [&] { return events.size() == 1; }));
    EXPECT_TRUE(events[0] & EPOLLIN);
    loop.modify(p.read.get(), 0);
    p.poke();
    loop.run_once(0);
    EXPECT_EQ(events.size(), 1u);  // no interest, no event
    loop.modify(p.read.get(), EPOLLIN);
    ASSERT_TRUE(pump(loop, [&] { return events.size() == 2; }));
}

TEST(EventLoopTest, AddingARegisteredFdThrows) {
    EventLoop loop;
    Pipe p;
    loop.add(p.read.get(), EPOLLIN, [](std::uint32_t) {});
    try {
        loop.add(p.read.get(), EPOLLIN, [](std::uint32_t) {});
        FAIL() << "expected core::Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("already registered"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(loop.watching(p.read.get()));
}

TEST(EventLoopTest, AddingABadFdThrows) {
    EventLoop loop;
    EXPECT_THROW(loop.add(-1, EPOLLIN, [](std::uint32_t) {}), Error);
    int closed_fd;
    {
        Pipe p;
        closed_fd = p.read.get();
    }
    try {
        loop.add(closed_fd, EPOLLIN, [](std::uint32_t) {});
        FAIL() << "expected core::Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("epoll_ctl(ADD, fd " + std::to_string(closed_fd)),
                  std::string::npos)
            << e.what();
        EXPECT_NE(std::string(e.what()).find("EBADF"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(loop.watching(closed_fd));
    // A failed add leaves the slot usable.
    Pipe q;
    EXPECT_NO_THROW(loop.add(q.read.get(), EPOLLIN, [](std::uint32_t) {}));
}

TEST(EventLoopTest, ModifyUnregisteredThrows) {
    EventLoop loop;
    Pipe p;
    EXPECT_THROW(loop.modify(p.read.get(), EPOLLIN), Error);
}

TEST(EventLoopTest, RemoveAndReAdd) {
    EventLoop loop;
    Pipe p;
    int calls_a = 0, calls_b = 0;
    loop.add(p.read.get(), EPOLLIN, [&](std::uint32_t) { ++calls_a; });
    loop.remove(p.read.get());
    EXPECT_FALSE(loop.watching(p.read.get()));
    loop.remove(p.read.get());  // twice: nothing
    loop.remove(12345);         // never added: nothing
    loop.add(p.read.get(), EPOLLIN, [&](std::uint32_t) {
        ++calls_b;
        p.drain();
    });
    p.poke();
    ASSERT_TRUE(pump(loop, [&] { return calls_b == 1; }));
    EXPECT_EQ(calls_a, 0);
}

TEST(EventLoopTest, RemoveBeforeCloseLetsTheFdNumberComeBack) {
    // No EPOLL_CTL_DEL: close() takes the fd out of the epoll set, so the number can be
    // added again; an event of the old file, while a copy of it lives on elsewhere, is dropped.
    EventLoop loop;
    auto old_pipe = std::make_unique<Pipe>();
    int calls_old = 0, calls_new = 0;
    int fd = old_pipe->read.get();
    loop.add(fd, EPOLLIN, [&](std::uint32_t) { ++calls_old; });
    UniqueFd copy(dup(fd));  // another holder of the open file: it stays in the epoll set
    ASSERT_TRUE(copy);
    loop.remove_before_close(fd);
    EXPECT_FALSE(loop.watching(fd));
    old_pipe->read.reset();
    Pipe fresh;
    ASSERT_EQ(fresh.read.get(), fd) << "the fd number was not reused; the test proves nothing";
    loop.add(fd, EPOLLIN, [&](std::uint32_t) {
        ++calls_new;
        fresh.drain();
    });
    old_pipe->poke();  // the old file's registration fires with the old generation
    fresh.poke();
    ASSERT_TRUE(pump(loop, [&] { return calls_new == 1; }));
    loop.run_once(0);
    EXPECT_EQ(calls_old, 0);
    EXPECT_EQ(calls_new, 1);
}

TEST(EventLoopTest, ConnectionChurnReusesEntriesAndFreesHandlersAfterTheBatch) {
    // As connections come and go: a handler removes its own fd; the fd number comes back with
    // the next pipe. Each handler runs once; its closure is destroyed once the batch is done
    // (the entry's box is kept for reuse, not its handler).
    EventLoop loop;
    for (int round = 0; round < 200; ++round) {
        Pipe p;
        auto token = std::make_shared<int>(round);
        int calls = 0;
        loop.add(p.read.get(), EPOLLIN, [&, token](std::uint32_t) {
            ++calls;
            p.drain();
            loop.remove(p.read.get());
            EXPECT_GE(token.use_count(), 2);  // still alive while it runs
        });
        p.poke();
        loop.run_once(1000);
        EXPECT_EQ(calls, 1) << "round " << round;
        EXPECT_EQ(token.use_count(), 1) << "round " << round;
        EXPECT_FALSE(loop.watching(p.read.get()));
    }
}

TEST(EventLoopTest, HandlerRemovesItselfAndAnotherPendingFd) {
    EventLoop loop;
    Pipe p1, p2;
    int calls1 = 0, calls2 = 0;
    // Whichever handler runs first removes both fds; the other one's event is in the same
    // batch and must be dropped, with no call into a dead handler.
    auto handler = [&](int& calls) {
        return [&, big = std::string(200, 'x')](std::uint32_t) {
            ++calls;
            loop.remove(p1.read.get());
            loop.remove(p2.read.get());
            EXPECT_EQ(big.size(), 200u);  // the running closure is still alive
        };
    };
    loop.add(p1.read.get(), EPOLLIN, handler(calls1));
    loop.add(p2.read.get(), EPOLLIN, handler(calls2));
    p1.poke();
    p2.poke();
    ASSERT_TRUE(pump(loop, [&] { return calls1 + calls2 >= 1; }));
    loop.run_once(0);
    EXPECT_EQ(calls1 + calls2, 1);
    EXPECT_FALSE(loop.watching(p1.read.get()));
    EXPECT_FALSE(loop.watching(p2.read.get()));
}

TEST(EventLoopTest, StaleEventForAReusedFdNumberIsDropped) {
    EventLoop loop;
    std::unique_ptr<Pipe> pipes[2] = {std::make_unique<Pipe>(), std::make_unique<Pipe>()};
    int calls[2] = {0, 0};
    int calls_new = 0;
    bool reused = false;
    std::unique_ptr<Pipe> replacement;
    // Whichever runs first closes the other pipe and registers a new one, which gets the
    // same (lowest free) fd number: the other's event, already in this batch, must not reach
    // the new handler.
    auto make_handler = [&](int me) {
        return [&, me](std::uint32_t) {
            ++calls[me];
            pipes[me]->drain();
            if (replacement) return;
            int other = 1 - me;
            int old_fd = pipes[other]->read.get();
            loop.remove(old_fd);
            pipes[other].reset();
            replacement = std::make_unique<Pipe>();
            reused = replacement->read.get() == old_fd;
            loop.add(replacement->read.get(), EPOLLIN, [&](std::uint32_t) { ++calls_new; });
        };
    };
    loop.add(pipes[0]->read.get(), EPOLLIN, make_handler(0));
    loop.add(pipes[1]->read.get(), EPOLLIN, make_handler(1));
    pipes[0]->poke();
    pipes[1]->poke();
    loop.run_once(1000);  // both fds are readable: one epoll_wait returns both events
    ASSERT_TRUE(replacement);
    ASSERT_TRUE(reused) << "the fd number was not reused; the test proves nothing";
    EXPECT_EQ(calls[0] + calls[1], 1);
    EXPECT_EQ(calls_new, 0);  // the replacement has no data: any call was a stale event
    loop.run_once(0);
    EXPECT_EQ(calls_new, 0);
    replacement->poke();
    ASSERT_TRUE(pump(loop, [&] { return calls_new == 1; }));
}

TEST(EventLoopTest, HandlerRemovesAndReAddsItsOwnFd) {
    struct Ctx {
        EventLoop loop;
        Pipe p;
        int old_calls = 0, new_calls = 0;
        int* seen_after_readd = nullptr;
    } ctx;
    // Two pointers: small enough for std::function's in-place buffer, like most handlers
    // ([this], [this, fd]).
    ctx.loop.add(ctx.p.read.get(), EPOLLIN, [c = &ctx, counter = &ctx.old_calls](std::uint32_t) {
        c->p.drain();
        c->loop.remove(c->p.read.get());
        c->loop.add(c->p.read.get(), EPOLLIN, [c, counter2 = &c->new_calls](std::uint32_t) {
            ++*counter2;
            c->p.drain();
        });
        // The running closure's own captures must be unchanged by the add().
        c->seen_after_readd = counter;
        ++*counter;
    });
    ctx.p.poke();
    ASSERT_TRUE(pump(ctx.loop, [&] { return ctx.old_calls + ctx.new_calls >= 1; }));
    EXPECT_EQ(ctx.seen_after_readd, &ctx.old_calls);
    EXPECT_EQ(ctx.old_calls, 1);
    EXPECT_EQ(ctx.new_calls, 0);
    ctx.p.poke();
    ASSERT_TRUE(pump(ctx.loop, [&] { return ctx.new_calls == 1; }));
    EXPECT_EQ(ctx.old_calls, 1);
}

TEST(EventLoopTest, DeferRunsAfterTheBatch) {
    EventLoop loop;
    Pipe p1, p2;
    std::vector<std::string> log;
    auto handler = [&](const char* name, const Pipe& p) {
        return [&, name](std::uint32_t) {
            log.push_back(name);
            p.drain();
            loop.defer([&, name] {
                log.push_back(std::string("deferred ") + name);
                // Deferred from a deferred function: still runs in this run_once.
                if (std::string(name) == "p1") loop.defer([&] { log.push_back("nested"); });
            });
        };
    };
    loop.add(p1.read.get(), EPOLLIN, handler("p1", p1));
    loop.add(p2.read.get(), EPOLLIN, handler("p2", p2));
    p1.poke();
    p2.poke();
    // Both pipes are readable before the wait, so one epoll_wait returns both events.
    loop.run_once(1000);
    ASSERT_EQ(log.size(), 5u);
    EXPECT_TRUE((log[0] == "p1" && log[1] == "p2") || (log[0] == "p2" && log[1] == "p1"));
    EXPECT_EQ(log[2], "deferred " + log[0]);
    EXPECT_EQ(log[3], "deferred " + log[1]);
    EXPECT_EQ(log[4], "nested");
}

TEST(EventLoopTest, DeferWithoutEventsRunsOnTheNextRound) {
    EventLoop loop;
    bool ran = false;
    loop.defer([&] { ran = true; });
    EXPECT_FALSE(ran);
    loop.run_once(0);
    EXPECT_TRUE(ran);
}

TEST(EventLoopTest, RunStopsFromAHandler) {
    EventLoop loop;
    int fired = 0;
    loop.add_timer(1ms, [&] {
        ++fired;
        loop.stop();
    });
    loop.run();
    EXPECT_EQ(fired, 1);
    EXPECT_TRUE(loop.stopped());
}

TEST(EventLoopTest, ExceptionLeavesRun) {
    EventLoop loop;
    loop.add_timer(0ms, [] { throw std::runtime_error("boom"); });
    EXPECT_THROW(loop.run(), std::runtime_error);
}

TEST(EventLoopTest, LoopClosesItsFds) {
    std::size_t before = open_fd_count();
    {
        EventLoop loop;
        EXPECT_EQ(open_fd_count(), before + 2);  // epoll and timerfd
    }
    EXPECT_EQ(open_fd_count(), before);
}

}  // namespace
}  // namespace herd::core
