// Tests server/worker/plugin_loop (a plugin's herd::Loop) and the blocking pool on a real core
// loop: timers, posts, watches, blocking work, coroutines, scopes and the plugin's shutdown.
#include "worker/plugin_loop.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.hpp"

namespace herd::worker {
namespace {

using namespace std::chrono_literals;

struct Fixture {
    core::EventLoop loop;
    std::vector<std::string> failures;
    core::FailureHandler failed = [this](const std::string& what) { failures.push_back(what); };
    std::unique_ptr<BlockingPool> pool;
    std::unique_ptr<PluginLoop> plugin;

    explicit Fixture(bool with_pool = true) {
        if (with_pool)
            pool = std::make_unique<BlockingPool>(
                loop, 2, [](const void* owner, std::uint64_t id, std::exception_ptr error) {
                    static_cast<PluginLoop*>(const_cast<void*>(owner))->job_done(id, error);
                });
        plugin = std::make_unique<PluginLoop>(loop, pool.get(), "plugin \"/t\" (test)", &failed);
    }
    ~Fixture() { plugin->shutdown(); }

    // Runs the loop until done() or a bound (never a sleep as synchronization).
    template <class Done>
    bool run_until(Done done, std::chrono::milliseconds bound = 5s) {
        auto end = core::EventLoop::now() + bound;
        while (!done()) {
            if (core::EventLoop::now() > end) return false;
            loop.run_once(10);
        }
        return true;
    }
};

TEST(PluginLoopTest, TimersFireInOrderAndCancelledOnesNever) {
    Fixture f;
    std::vector<int> seen;
    f.plugin->after(20ms, [&] { seen.push_back(2); });
    f.plugin->after(1ms, [&] { seen.push_back(1); });
    auto never = f.plugin->after(5ms, [&] { seen.push_back(99); });
    EXPECT_TRUE(f.plugin->cancel(never));
    EXPECT_FALSE(f.plugin->cancel(never));   // twice: nothing
    EXPECT_FALSE(f.plugin->cancel(123456));  // unknown
    ASSERT_TRUE(f.run_until([&] { return seen.size() == 2; }));
    EXPECT_EQ(seen, (std::vector<int>{1, 2}));
    EXPECT_EQ(f.plugin->counts().timers, 0u);
}

TEST(PluginLoopTest, CallbacksNeverRunInsideTheCallThatRegisteredThem) {
    Fixture f;
    bool ran = false;
    f.plugin->post([&] { ran = true; });
    f.plugin->at(f.plugin->now() - 1s, [&] { ran = true; });  // already due
    EXPECT_FALSE(ran);
    ASSERT_TRUE(f.run_until([&] { return ran; }));
}

TEST(PluginLoopTest, APostThatPostsItselfDoesNotStarveTimers) {
    Fixture f;
    int posts = 0;
    bool timer = false;
    std::function<void()> again = [&] {
        ++posts;
        if (!timer) f.plugin->post(again);
    };
    f.plugin->post(again);
    f.plugin->after(5ms, [&] { timer = true; });
    ASSERT_TRUE(f.run_until([&] { return timer; }));
    EXPECT_GT(posts, 1);
}

TEST(PluginLoopTest, AWatchReportsReadableAndMayCancelItself) {
    Fixture f;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int calls = 0;
    herd::Loop::Id id = 0;
    id = f.plugin->watch(sv[0], herd::Loop::readable, [&](unsigned events) {
        EXPECT_TRUE(events & herd::Loop::readable);
        ++calls;
        f.plugin->cancel(id);  // from inside its own callback
    });
    EXPECT_EQ(f.plugin->counts().watches, 1u);
    ASSERT_EQ(::write(sv[1], "x", 1), 1);
    ASSERT_TRUE(f.run_until([&] { return calls == 1; }));
    f.loop.run_once(0);
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(f.plugin->counts().watches, 0u);
    close(sv[0]);
    close(sv[1]);
}

TEST(PluginLoopTest, APluginClosingItsDescriptorFirstLeavesTheLoopSound) {
    Fixture f;
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    auto id = f.plugin->watch(sv[0], herd::Loop::readable, [](unsigned) {});
    close(sv[0]);  // the plugin's own number goes; the loop watches its duplicate
    int again[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, again), 0);
    // The number is free again: watching it (as a new connection would be) must work.
    auto second = f.plugin->watch(again[0], herd::Loop::readable, [](unsigned) {});
    EXPECT_TRUE(f.plugin->cancel(id));
    EXPECT_TRUE(f.plugin->cancel(second));
    close(sv[1]);
    close(again[0]);
    close(again[1]);
}

TEST(PluginLoopTest, ABadDescriptorIsAnErrorNamingThePlugin) {
    Fixture f;
    try {
        f.plugin->watch(-1, herd::Loop::readable, [](unsigned) {});
        FAIL() << "expected an error";
    } catch (const core::Error& e) {
        EXPECT_NE(std::string(e.what()).find("plugin \"/t\" (test): Loop::watch(fd -1)"),
                  std::string::npos)
            << e.what();
    }
}

TEST(PluginLoopTest, BlockingWorkRunsOnAnotherThreadAndComesBack) {
    Fixture f;
    std::thread::id worker_thread;
    bool done = false;
    f.plugin->run_blocking([&] { worker_thread = std::this_thread::get_id(); },
                           [&](std::exception_ptr e) {
                               EXPECT_FALSE(e);
                               done = true;
                           });
    ASSERT_TRUE(f.run_until([&] { return done; }));
    EXPECT_NE(worker_thread, std::this_thread::get_id());
    std::string error;
    f.plugin->run_blocking([] { throw std::runtime_error("no luck"); },
                           [&](std::exception_ptr e) {
                               try {
                                   std::rethrow_exception(e);
                               } catch (const std::exception& x) {
                                   error = x.what();
                               }
                           });
    ASSERT_TRUE(f.run_until([&] { return !error.empty(); }));
    EXPECT_EQ(error, "no luck");
}

TEST(PluginLoopTest, WithoutAPoolBlockingWorkFailsSayingSo) {
    Fixture f(false);
    std::string error;
    f.plugin->run_blocking([] {},
                           [&](std::exception_ptr e) {
                               try {
                                   std::rethrow_exception(e);
                               } catch (const std::exception& x) {
                                   error = x.what();
                               }
                           });
    ASSERT_TRUE(f.run_until([&] { return !error.empty(); }));
    EXPECT_NE(error.find("no blocking pool"), std::string::npos) << error;
}

TEST(PluginLoopTest, AThrowingCallbackIsAPluginFailureAndCancelledIsNot) {
    Fixture f;
    int ran = 0;
    f.plugin->post([&] {
        ++ran;
        throw std::runtime_error("boom");
    });
    f.plugin->post([&] {
        ++ran;
        throw herd::Cancelled("stopped");
    });
    ASSERT_TRUE(f.run_until([&] { return ran == 2; }));
    ASSERT_EQ(f.failures.size(), 1u);
    EXPECT_EQ(f.failures[0],
              "plugin \"/t\" (test) threw std::runtime_error: boom in a loop callback");
}

TEST(PluginLoopTest, CancellingAScopeRemovesWhatIsTiedToIt) {
    Fixture f;
    herd::BasicScope request;
    bool fired = false;
    f.plugin->after(
        1ms, [&] { fired = true; }, &request);
    f.plugin->post([&] { fired = true; }, &request);
    EXPECT_EQ(f.plugin->counts().timers, 1u);
    request.cancel("the client closed the connection");
    EXPECT_EQ(f.plugin->counts().timers, 0u);
    EXPECT_EQ(f.plugin->counts().posts, 0u);
    f.plugin->after(
        0ms, [&] { fired = true; }, &request);  // cancelled already: dropped
    bool later = false;
    f.plugin->after(5ms, [&] { later = true; });
    ASSERT_TRUE(f.run_until([&] { return later; }));
    EXPECT_FALSE(fired);
}

herd::Task<int> add_after(herd::Loop& loop, int a, int b) {
    auto nap = loop.sleep_for(1ms);
    co_await nap;
    co_return a + b;
}

herd::Task<> background(herd::Loop& loop, int& result, std::string& why) {
    try {
        auto sum = add_after(loop, 2, 3);
        result = co_await sum;
        auto forever = loop.sleep_for(std::chrono::hours(1));
        co_await forever;
    } catch (const herd::Cancelled& c) {
        why = c.what();
        throw;
    }
}

TEST(PluginLoopTest, SpawnedCoroutinesRunAndAreCancelledAtShutdown) {
    Fixture f;
    int result = 0;
    std::string why;
    f.plugin->spawn(background(*f.plugin, result, why));
    EXPECT_EQ(f.plugin->counts().tasks, 1u);
    ASSERT_TRUE(f.run_until([&] { return result == 5; }));
    EXPECT_EQ(f.plugin->counts().timers, 1u);  // the hour-long sleep
    f.plugin->shutdown();
    EXPECT_EQ(why, "the plugin is stopping");
    EXPECT_EQ(f.plugin->counts().tasks, 0u);
    EXPECT_EQ(f.plugin->counts().timers, 0u);
    EXPECT_TRUE(f.failures.empty());  // Cancelled is no failure
}

herd::Task<> throws_after(herd::Loop& loop) {
    auto nap = loop.sleep_for(1ms);
    co_await nap;
    throw std::logic_error("after a resume");
}

TEST(PluginLoopTest, AnExceptionEscapingASpawnedCoroutineIsAPluginFailure) {
    Fixture f;
    f.plugin->spawn(throws_after(*f.plugin));
    ASSERT_TRUE(f.run_until([&] { return !f.failures.empty(); }));
    EXPECT_EQ(f.failures[0],
              "plugin \"/t\" (test) threw std::logic_error: after a resume in a background "
              "coroutine (Loop::spawn)");
    EXPECT_EQ(f.plugin->counts().tasks, 0u);
}

herd::Task<long> blocking_sum(herd::Loop& loop) {
    auto job = loop.blocking([] {
        long s = 0;
        for (long i = 1; i <= 1000; ++i) s += i;
        return s;
    });
    long s = co_await job;
    co_return s;
}

herd::Task<> store_sum(herd::Loop& loop, long& out) {
    auto t = blocking_sum(loop);
    out = co_await t;
}

TEST(PluginLoopTest, ACoroutineAwaitsBlockingWork) {
    Fixture f;
    long out = 0;
    f.plugin->spawn(store_sum(*f.plugin, out));
    ASSERT_TRUE(f.run_until([&] { return out != 0; }));
    EXPECT_EQ(out, 500500);
}

TEST(PluginLoopTest, AfterShutdownRegistrationsAreRefused) {
    Fixture f;
    f.plugin->shutdown();
    bool ran = false;
    f.plugin->post([&] { ran = true; });
    f.plugin->spawn(throws_after(*f.plugin));  // destroyed unrun
    f.loop.run_once(0);
    EXPECT_FALSE(ran);
    EXPECT_EQ(f.plugin->counts().tasks, 0u);
    EXPECT_TRUE(f.failures.empty());
}

TEST(ScopeTest, AChildFollowsItsParent) {
    herd::BasicScope parent(herd::Scope::Clock::now() + 1s);
    herd::BasicScope child(parent, herd::Scope::TimePoint::max());
    EXPECT_EQ(child.deadline(), parent.deadline());
    parent.cancel("the worker is stopping");
    EXPECT_TRUE(child.cancelled());
    EXPECT_EQ(child.why(), "the worker is stopping");
    herd::BasicScope late(parent);
    EXPECT_TRUE(late.cancelled());
}

}  // namespace
}  // namespace herd::worker
