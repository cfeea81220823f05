// Tests server/worker/output_queue: order and accounting of appended and pushed pieces through
// partial writes (a non-blocking pipe of one page).
#include "worker/output_queue.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include <gtest/gtest.h>

namespace herd::worker {
namespace {

struct Pipe {
    int r = -1, w = -1;
    Pipe() {
        int p[2];
        if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("pipe2() failed");
        r = p[0];
        w = p[1];
        (void)fcntl(w, F_SETPIPE_SZ, 4096);  // small: writes end part-way
    }
    ~Pipe() {
        close(r);
        close(w);
    }
    std::string read_all() {
        std::string got;
        char buffer[65536];
        for (;;) {
            ssize_t n = ::read(r, buffer, sizeof buffer);
            if (n <= 0) break;
            got.append(buffer, static_cast<std::size_t>(n));
        }
        return got;
    }
};

std::string pattern(char first, std::size_t n) {
    std::string s(n, first);
    for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(first + i % 7);
    return s;
}

// Writes until the queue is empty, reading the pipe whenever it is full; checks size() on the way.
std::string drain(OutputQueue& q, Pipe& p) {
    std::string got;
    std::size_t total = q.size();
    while (!q.empty()) {
        ssize_t w = q.write_to(p.w);
        if (w < 0) {
            EXPECT_EQ(errno, EAGAIN);
            got += p.read_all();
            continue;
        }
        EXPECT_GT(w, 0);
        EXPECT_EQ(q.size() + got.size() + static_cast<std::size_t>(w), total);
        got += p.read_all();
    }
    EXPECT_EQ(q.size(), 0u);
    return got;
}

TEST(OutputQueueTest, AppendedBytesLeaveInOrder) {
    Pipe p;
    OutputQueue q;
    EXPECT_TRUE(q.empty());
    std::string expected = pattern('a', 10000);
    q.tail() += expected;
    EXPECT_EQ(q.size(), expected.size());
    EXPECT_EQ(drain(q, p), expected);
    // The tail is reused after a complete write.
    q.tail() += "next";
    EXPECT_EQ(drain(q, p), "next");
}

TEST(OutputQueueTest, PushedPiecesKeepTheirPlaceBetweenAppends) {
    Pipe p;
    OutputQueue q;
    std::string expected;
    for (int round = 0; round < 3; ++round) {
        std::string head = pattern('A', 100 + round), big = pattern('0', 20000 + round);
        std::string& tail = q.tail();
        tail += head;
        q.push(std::string(big));
        EXPECT_TRUE(tail.empty());  // the reference is still the tail, emptied by push
        expected += head + big;
    }
    q.push(std::string());  // nothing
    q.tail() += "end";
    expected += "end";
    EXPECT_EQ(q.size(), expected.size());
    EXPECT_EQ(drain(q, p), expected);
}

TEST(OutputQueueTest, PushAfterAPartialWriteOfTheTail) {
    Pipe p;
    OutputQueue q;
    std::string first = pattern('a', 9000), big = pattern('0', 30000);
    q.tail() += first;
    ssize_t w = q.write_to(p.w);  // part of the tail: the pipe holds one page
    ASSERT_GT(w, 0);
    ASSERT_LT(static_cast<std::size_t>(w), first.size());
    std::string got = p.read_all();
    q.push(std::string(big));
    q.tail() += "after";
    EXPECT_EQ(q.size(), first.size() - got.size() + big.size() + 5);
    got += drain(q, p);
    EXPECT_EQ(got, first + big + "after");
}

TEST(OutputQueueTest, MorePiecesThanOneWritevTakes) {
    Pipe p;
    OutputQueue q;
    std::string expected;
    for (int i = 0; i < 40; ++i) {
        std::string small = "small" + std::to_string(i);
        q.tail() += small;
        std::string big = pattern(static_cast<char>('a' + i % 20), 500 + i);
        q.push(std::string(big));
        expected += small + big;
    }
    EXPECT_EQ(drain(q, p), expected);
    q.tail() += "again";  // usable after it emptied
    EXPECT_EQ(drain(q, p), "again");
}

TEST(OutputQueueTest, ClearForgetsEverything) {
    Pipe p;
    OutputQueue q;
    q.tail() += "x";
    q.push(pattern('0', 100));
    q.clear();
    EXPECT_TRUE(q.empty());
    q.tail() += "y";
    EXPECT_EQ(drain(q, p), "y");
}

}  // namespace
}  // namespace herd::worker
