// Tests server/core/channel: Channel on a real socketpair and EventLoop, Dispatcher (the
// FrameDecoder under Channel is in frame_decoder_test).
#include "core/channel.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "channel_test_helpers.hpp"

namespace herd::core {
namespace {

using nlohmann::json;
using namespace channel_test;

// Writes one byte into `write` and expects to read it back from `read`.
void expect_same_pipe(int write_fd, int read_fd, char tag) {
    ASSERT_EQ(::write(write_fd, &tag, 1), 1);
    char got = 0;
    ASSERT_EQ(::read(read_fd, &got, 1), 1);
    EXPECT_EQ(got, tag);
}

// sendmsg with SCM_RIGHTS, for frames a Channel would never produce.
void send_raw(int sock, const std::string& bytes, const std::vector<int>& fds = {}) {
    iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ASSERT_EQ(sendmsg(sock, &msg, MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
}

// ---- Channel ----

// Two channels on a socketpair, both in one loop; or one channel and a raw peer socket.
class ChannelTest : public ::testing::Test {
  protected:
    void SetUp() override {
        baseline_ = open_fd_count();
        loop_.emplace();
        int sv[2];
        ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        fd_a_ = sv[0];
        fd_b_ = sv[1];
    }

    void TearDown() override {
        a_.reset();
        b_.reset();
        raw_.reset();
        received_a_.clear();
        received_b_.clear();
        loop_.reset();
        EXPECT_EQ(open_fd_count(), baseline_) << "file descriptors leaked";
    }

    // Both ends are Channels.
    void start_both() {
        a_ = std::make_unique<Channel>(*loop_, UniqueFd(fd_a_), "peer a");
        b_ = std::make_unique<Channel>(*loop_, UniqueFd(fd_b_), "peer b");
        a_->start([this](Message&& m) { received_a_.push_back(std::move(m)); },
                  [this](const std::string& reason) { closed_a_.push_back(reason); });
        b_->start([this](Message&& m) { received_b_.push_back(std::move(m)); },
                  [this](const std::string& reason) { closed_b_.push_back(reason); });
    }

    // b is a Channel; the test writes to the raw socket raw_.
    void start_raw_peer() {
        raw_.emplace(fd_a_);
        b_ = std::make_unique<Channel>(*loop_, UniqueFd(fd_b_), "peer b");
        b_->start([this](Message&& m) { received_b_.push_back(std::move(m)); },
                  [this](const std::string& reason) { closed_b_.push_back(reason); });
    }

    // Runs the loop until pred() holds; each wait is bounded so a bug fails instead of hangs.
    template <class Pred>
    bool pump(Pred pred, int max_rounds = 2000) {
        for (int i = 0; i < max_rounds; ++i) {
            if (pred()) return true;
            loop_->run_once(1000);
        }
        return pred();
    }

    std::size_t baseline_ = 0;
    std::optional<EventLoop> loop_;
    int fd_a_ = -1, fd_b_ = -1;
    std::optional<UniqueFd> raw_;
    std::unique_ptr<Channel> a_, b_;
    std::vector<Message> received_a_, received_b_;
    std::vector<std::string> closed_a_, closed_b_;
};

TEST_F(ChannelTest, RoundTrip) {
    start_both();
    ASSERT_TRUE(a_->send(json{{"type", "ping"}, {"n", 1}, {"text", "héllo"}}));
    ASSERT_TRUE(pump([&] { return received_b_.size() == 1; }));
    EXPECT_EQ(received_b_[0].type(), "ping");
    EXPECT_EQ(received_b_[0].body["n"], 1);
    EXPECT_EQ(received_b_[0].body["text"], "héllo");
    EXPECT_TRUE(received_b_[0].fds.empty());
    ASSERT_TRUE(b_->send(json{{"type", "pong"}}));
    ASSERT_TRUE(pump([&] { return received_a_.size() == 1; }));
    EXPECT_EQ(received_a_[0].type(), "pong");
    EXPECT_TRUE(closed_a_.empty());
    EXPECT_TRUE(closed_b_.empty());
    EXPECT_EQ(a_->peer_name(), "peer a");
    EXPECT_FALSE(a_->closed());
}

TEST_F(ChannelTest, BurstKeepsBoundariesAndOrder) {
    start_both();
    const int count = 3000;
    for (int i = 0; i < count; ++i)
        ASSERT_TRUE(a_->send(json{{"type", "n"}, {"i", i}, {"pad", std::string(i % 257, 'x')}}));
    ASSERT_TRUE(pump([&] { return received_b_.size() == count; }));
    for (int i = 0; i < count; ++i) {
        ASSERT_EQ(received_b_[i].body["i"], i);
        ASSERT_EQ(received_b_[i].body["pad"].get<std::string>().size(),
                  static_cast<std::size_t>(i % 257));
    }
    EXPECT_EQ(a_->queued_bytes(), 0u);
    EXPECT_TRUE(closed_b_.empty());
}

TEST_F(ChannelTest, SeventeenMebibyteMessageArrivesIntact) {
    start_both();
    std::string data(17u << 20, '\0');
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + (i * 7) % 26);
    ASSERT_TRUE(a_->send(json{{"type", "big"}, {"data", data}}));
    // The socket buffer cannot take 17 MiB at once: the rest waits for EPOLLOUT.
    EXPECT_GT(a_->queued_bytes(), 0u);
    ASSERT_TRUE(a_->send(json{{"type", "after"}}));
    ASSERT_TRUE(pump([&] { return received_b_.size() == 2; }));
    EXPECT_EQ(received_b_[0].type(), "big");
    EXPECT_TRUE(received_b_[0].body["data"].get<std::string>() == data);
    EXPECT_EQ(received_b_[1].type(), "after");
    EXPECT_EQ(a_->queued_bytes(), 0u);
    EXPECT_TRUE(a_->flush());
}

TEST_F(ChannelTest, PassesAFileDescriptor) {
    start_both();
    Pipe p;
    ASSERT_EQ(fcntl(p.read.get(), F_GETFD) & FD_CLOEXEC, 0);
    int sent_fd = dup(p.read.get());
    std::vector<UniqueFd> fds;
    fds.emplace_back(sent_fd);
    ASSERT_TRUE(a_->send(json{{"type", "conn"}}, std::move(fds)));
    // Written at once (the queue was empty): the kernel holds the fd, our copy is closed.
    EXPECT_EQ(a_->queued_bytes(), 0u);
    EXPECT_FALSE(fd_is_open(sent_fd));
    ASSERT_TRUE(pump([&] { return received_b_.size() == 1; }));
    ASSERT_EQ(received_b_[0].fds.size(), 1u);
    int got = received_b_[0].fds[0].get();
    EXPECT_NE(got, p.read.get());
    EXPECT_EQ(inode_of(got), inode_of(p.read.get()));
    EXPECT_NE(fcntl(got, F_GETFD) & FD_CLOEXEC, 0) << "received fds must be close-on-exec";
    expect_same_pipe(p.write.get(), got, 'q');
}

TEST_F(ChannelTest, FdsAndPlainMessagesInterleaved) {
    start_both();
    std::vector<Pipe> pipes(12);
    // Congest the socket first, so the following frames queue up and go out together, with
    // partial writes: the at-most-one-fd-frame-per-sendmsg rule is exercised.
    ASSERT_TRUE(a_->send(json{{"type", "filler"}, {"data", std::string(3u << 20, 'f')}}));
    ASSERT_GT(a_->queued_bytes(), 0u);
    std::size_t next_pipe = 0;
    std::vector<std::vector<std::size_t>> expected;  // per message: which pipes
    for (int i = 0; i < 20; ++i) {
        std::vector<UniqueFd> fds;
        std::vector<std::size_t> which;
        int n = i % 3 == 1 ? 1 : (i % 5 == 3 ? 2 : 0);
        for (int k = 0; k < n && next_pipe < pipes.size(); ++k) {
            fds.emplace_back(dup(pipes[next_pipe].read.get()));
            which.push_back(next_pipe++);
        }
        expected.push_back(which);
        ASSERT_TRUE(a_->send(json{{"type", "m"}, {"i", i}, {"pad", std::string(i * 1000, 'p')}},
                             std::move(fds)));
    }
    ASSERT_TRUE(pump([&] { return received_b_.size() == 21; }));
    EXPECT_EQ(received_b_[0].type(), "filler");
    EXPECT_TRUE(received_b_[0].fds.empty());
    for (int i = 0; i < 20; ++i) {
        const Message& m = received_b_[i + 1];
        ASSERT_EQ(m.body["i"], i);
        ASSERT_EQ(m.fds.size(), expected[i].size()) << "message " << i;
        for (std::size_t k = 0; k < m.fds.size(); ++k) {
            const Pipe& p = pipes[expected[i][k]];
            EXPECT_EQ(inode_of(m.fds[k].get()), inode_of(p.read.get())) << "message " << i;
            expect_same_pipe(p.write.get(), m.fds[k].get(), static_cast<char>('A' + i));
        }
    }
    EXPECT_GT(next_pipe, 5u);
}

TEST_F(ChannelTest, ADeadReadersMessagesAreTakenBackFromBothSides) {
    // The master's case: the worker (reader of b's socket) died. What reached its socket is
    // read back through a second Channel on that socket (drain_into); what the master still
    // queued is taken from the sender (take_unsent). Every descriptor comes back, none leaks.
    a_ = std::make_unique<Channel>(*loop_, UniqueFd(fd_a_), "peer a");
    a_->start([](Message&&) {}, [](const std::string&) {});
    std::vector<Pipe> pipes(40);
    auto send_conn = [&](std::size_t i) {
        std::vector<UniqueFd> fds;
        fds.emplace_back(dup(pipes[i].read.get()));
        return a_->send(json{{"type", "conn"}, {"i", i}}, std::move(fds));
    };
    // Ten reach the socket; a large frame then fills it (partly written), and the rest queue.
    for (std::size_t i = 0; i < 10; ++i) ASSERT_TRUE(send_conn(i));
    ASSERT_TRUE(a_->send(json{{"type", "filler"}, {"data", std::string(4u << 20, 'f')}}));
    for (std::size_t i = 10; i < pipes.size(); ++i) ASSERT_TRUE(send_conn(i));
    ASSERT_GT(a_->queued_bytes(), 0u) << "nothing queued: the test proves nothing";
    std::vector<Message> taken;
    Channel dead_end(*loop_, UniqueFd(fd_b_), "dead reader");
    dead_end.drain_into([&](Message&& m) { taken.push_back(std::move(m)); });
    EXPECT_EQ(taken.size(), 10u);  // then the filler's first part: not a whole frame
    for (Message& m : a_->take_unsent()) taken.push_back(std::move(m));
    EXPECT_EQ(a_->queued_bytes(), 0u);
    std::vector<int> seen(pipes.size(), 0);
    for (const Message& m : taken) {
        if (m.type() != "conn") continue;
        ASSERT_EQ(m.fds.size(), 1u);
        auto i = m.body["i"].get<std::size_t>();
        ASSERT_LT(i, pipes.size());
        ++seen[i];
        EXPECT_EQ(inode_of(m.fds[0].get()), inode_of(pipes[i].read.get())) << "conn " << i;
    }
    for (std::size_t i = 0; i < pipes.size(); ++i) EXPECT_EQ(seen[i], 1) << "conn " << i;
}

TEST_F(ChannelTest, HeaderWithHugeLengthBreaksTheChannel) {
    start_raw_peer();
    send_raw(raw_->get(), raw_frame(0xffffffffu, 0, "garbage garbage"));
    ASSERT_TRUE(pump([&] { return !closed_b_.empty(); }));
    ASSERT_EQ(closed_b_.size(), 1u);
    EXPECT_NE(closed_b_[0].find("bad frame from peer b"), std::string::npos) << closed_b_[0];
    EXPECT_NE(closed_b_[0].find("exceeds the limit"), std::string::npos) << closed_b_[0];
    EXPECT_TRUE(b_->closed());
    EXPECT_TRUE(received_b_.empty());
    EXPECT_FALSE(b_->send(json{{"type", "x"}}));
}

TEST_F(ChannelTest, InvalidJsonFrameIsSkippedAndItsFdClosed) {
    start_raw_peer();
    Pipe p;
    // The fd count while the frame's fd is in flight and after: the channel must close it.
    std::size_t with_pipe = open_fd_count();
    send_raw(raw_->get(), raw_frame(9, 1, "{not json"), {p.read.get()});
    send_raw(raw_->get(), encode_frame(json{{"type", "next"}}, 0));
    ASSERT_TRUE(pump([&] { return received_b_.size() == 1; }));
    EXPECT_EQ(received_b_[0].type(), "next");
    EXPECT_TRUE(closed_b_.empty());
    EXPECT_FALSE(b_->closed());
    EXPECT_EQ(open_fd_count(), with_pipe);
}

TEST_F(ChannelTest, FrameDeclaringMissingFdsBreaksTheChannel) {
    start_raw_peer();
    send_raw(raw_->get(), encode_frame(json{{"type", "conn"}}, 1));
    ASSERT_TRUE(pump([&] { return !closed_b_.empty(); }));
    EXPECT_NE(closed_b_[0].find("declares 1 descriptors but 0 arrived"), std::string::npos)
        << closed_b_[0];
    EXPECT_TRUE(received_b_.empty());
}

TEST_F(ChannelTest, FdsBeyondTheControlBufferAreDroppedWithoutLeaks) {
    start_raw_peer();
    std::vector<UniqueFd> many;
    std::vector<int> raw_fds;
    for (int i = 0; i < 20; ++i) {
        many.emplace_back(dup(STDIN_FILENO));
        raw_fds.push_back(many.back().get());
    }
    std::size_t with_dups = open_fd_count();
    // 20 descriptors for a frame that declares 16: the receiver's control buffer takes 16, the
    // kernel drops the rest (MSG_CTRUNC). The frame gets its 16 and the channel stays up.
    send_raw(raw_->get(), encode_frame(json{{"type", "conn"}}, 16), raw_fds);
    ASSERT_TRUE(pump([&] { return !received_b_.empty(); }));
    EXPECT_TRUE(closed_b_.empty());
    EXPECT_EQ(received_b_[0].fds.size(), 16u);
    EXPECT_EQ(open_fd_count(), with_dups + 16);
    received_b_.clear();
    EXPECT_EQ(open_fd_count(), with_dups);
}

TEST_F(ChannelTest, PeerCloseIsReported) {
    start_both();
    a_.reset();
    ASSERT_TRUE(pump([&] { return !closed_b_.empty(); }));
    ASSERT_EQ(closed_b_.size(), 1u);
    EXPECT_EQ(closed_b_[0], "peer closed the channel");
    EXPECT_TRUE(b_->closed());
}

TEST_F(ChannelTest, PeerCloseMidFrameIsReported) {
    start_raw_peer();
    std::string frame = encode_frame(json{{"type", "cut"}}, 0);
    send_raw(raw_->get(), frame.substr(0, frame.size() - 2));
    raw_.reset();
    ASSERT_TRUE(pump([&] { return !closed_b_.empty(); }));
    EXPECT_NE(closed_b_[0].find("in the middle of a frame"), std::string::npos) << closed_b_[0];
    EXPECT_TRUE(received_b_.empty());
}

TEST_F(ChannelTest, MessagesBeforePeerCloseAreDelivered) {
    start_raw_peer();
    send_raw(raw_->get(), encode_frame(json{{"type", "last"}}, 0));
    raw_.reset();
    ASSERT_TRUE(pump([&] { return !closed_b_.empty(); }));
    ASSERT_EQ(received_b_.size(), 1u);
    EXPECT_EQ(received_b_[0].type(), "last");
    EXPECT_EQ(closed_b_[0], "peer closed the channel");
}

TEST_F(ChannelTest, SendToAClosedPeerFails) {
    start_raw_peer();
    raw_.reset();
    // Either the send itself sees EPIPE or the loop sees the hang-up first.
    bool sent = b_->send(json{{"type", "x"}});
    if (sent) {
        ASSERT_TRUE(pump([&] { return !closed_b_.empty(); }));
    }
    ASSERT_EQ(closed_b_.size(), 1u);
    EXPECT_TRUE(b_->closed());
    EXPECT_FALSE(b_->send(json{{"type", "y"}}));
}

TEST_F(ChannelTest, SendAfterCloseFailsAndClosesTheGivenFds) {
    start_both();
    a_->close();
    EXPECT_TRUE(a_->closed());
    std::vector<UniqueFd> fds;
    fds.emplace_back(dup(STDIN_FILENO));
    int fd = fds.back().get();
    EXPECT_FALSE(a_->send(json{{"type", "x"}}, std::move(fds)));
    EXPECT_FALSE(fd_is_open(fd));
    EXPECT_TRUE(closed_a_.empty());  // close() is not a failure
    ASSERT_TRUE(pump([&] { return !closed_b_.empty(); }));
    EXPECT_EQ(closed_b_[0], "peer closed the channel");
}

TEST_F(ChannelTest, RefusesMoreFdsThanTheLimit) {
    start_both();
    std::vector<UniqueFd> fds;
    for (std::uint32_t i = 0; i <= FrameDecoder::max_fds; ++i) fds.emplace_back(dup(STDIN_FILENO));
    EXPECT_FALSE(a_->send(json{{"type", "x"}}, std::move(fds)));
    EXPECT_FALSE(a_->closed());
    EXPECT_EQ(a_->queued_bytes(), 0u);
    ASSERT_TRUE(a_->send(json{{"type", "still works"}}));
    ASSERT_TRUE(pump([&] { return received_b_.size() == 1; }));
    EXPECT_EQ(received_b_[0].type(), "still works");
}

TEST_F(ChannelTest, HandlerMayCloseTheChannel) {
    a_ = std::make_unique<Channel>(*loop_, UniqueFd(fd_a_), "peer a");
    b_ = std::make_unique<Channel>(*loop_, UniqueFd(fd_b_), "peer b");
    a_->start([](Message&&) {}, [](const std::string&) {});
    int seen = 0;
    b_->start(
        [&](Message&&) {
            ++seen;
            b_->close();
        },
        [&](const std::string& reason) { closed_b_.push_back(reason); });
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(a_->send(json{{"type", "m"}, {"i", i}}));
    ASSERT_TRUE(pump([&] { return b_->closed(); }));
    // Later events of this batch must not reach the closed channel.
    loop_->run_once(0);
    EXPECT_EQ(seen, 1);
    EXPECT_TRUE(closed_b_.empty());
}

// ---- Dispatcher ----

TEST(DispatcherTest, CallsOnlyTheMatchingHandler) {
    Dispatcher d;
    int ready = 0, drain = 0;
    d.on("ready", [&](Message& m) {
        ++ready;
        EXPECT_EQ(m.body["pid"], 42);
    });
    d.on("drain", [&](Message&) { ++drain; });
    Message m;
    m.body = json{{"type", "ready"}, {"pid", 42}};
    d.dispatch(m, "worker web/0");
    EXPECT_EQ(ready, 1);
    EXPECT_EQ(drain, 0);
}

TEST(DispatcherTest, UnknownOrMissingTypeCallsNothing) {
    Dispatcher d;
    int calls = 0;
    d.on("ready", [&](Message&) { ++calls; });
    for (json body : {json{{"type", "unknown"}}, json{{"x", 1}}, json{{"type", 7}},
                      json{{"type", ""}}, json::array({"ready"})}) {
        Message m;
        m.body = body;
        EXPECT_NO_THROW(d.dispatch(m, "worker web/0")) << body.dump();
    }
    EXPECT_EQ(calls, 0);
}

TEST(DispatcherTest, LaterRegistrationReplaces) {
    Dispatcher d;
    int first = 0, second = 0;
    d.on("x", [&](Message&) { ++first; });
    d.on("x", [&](Message&) { ++second; });
    Message m;
    m.body = json{{"type", "x"}};
    d.dispatch(m, "test");
    EXPECT_EQ(first, 0);
    EXPECT_EQ(second, 1);
}

}  // namespace
}  // namespace herd::core
