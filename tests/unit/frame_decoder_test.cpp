// Tests server/core/channel's FrameDecoder: frames cut anywhere, descriptors paired with their
// frame (or closed when nothing claims them), broken and truncated streams, message types.
#include "core/channel.hpp"

#include <unistd.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "channel_test_helpers.hpp"

namespace herd::core {
namespace {

using nlohmann::json;
using namespace channel_test;

TEST(FrameDecoderTest, EncodeFrameLayout) {
    std::string frame = encode_frame(json{{"type", "x"}}, 3);
    ASSERT_GE(frame.size(), 8u);
    std::uint32_t length = 0, nfds = 0;
    std::memcpy(&length, frame.data(), 4);
    std::memcpy(&nfds, frame.data() + 4, 4);
    EXPECT_EQ(length, frame.size() - 8);
    EXPECT_EQ(nfds, 3u);
    EXPECT_EQ(json::parse(frame.substr(8)), (json{{"type", "x"}}));
}

TEST(FrameDecoderTest, ByteByByte) {
    std::vector<json> sent = {{{"type", "a"}, {"n", 1}},
                              {{"type", "b"}, {"s", std::string(300, 'z')}},
                              json::object(),
                              {{"type", "c"}, {"nested", {{"k", json::array({1, 2, 3})}}}}};
    std::string stream;
    for (const json& j : sent) stream += encode_frame(j, 0);
    FrameDecoder d;
    std::vector<json> got;
    for (std::size_t i = 0; i < stream.size(); ++i) {
        d.append(&stream[i], 1);
        Message m;
        std::string error;
        auto r = d.next(m, error);
        if (r == FrameDecoder::Result::message) {
            got.push_back(m.body);
            EXPECT_TRUE(m.fds.empty());
            EXPECT_EQ(d.next(m, error), FrameDecoder::Result::need_more);
        } else {
            ASSERT_EQ(r, FrameDecoder::Result::need_more) << error;
        }
    }
    EXPECT_EQ(got, sent);
    EXPECT_EQ(d.buffered(), 0u);
}

TEST(FrameDecoderTest, SeveralFramesInOneAppend) {
    std::string stream;
    for (int i = 0; i < 50; ++i) stream += encode_frame(json{{"i", i}}, 0);
    stream += encode_frame(json{{"i", 50}}, 0).substr(0, 5);  // and a partial header
    FrameDecoder d;
    d.append(stream.data(), stream.size());
    Message m;
    std::string error;
    for (int i = 0; i < 50; ++i) {
        ASSERT_EQ(d.next(m, error), FrameDecoder::Result::message) << i;
        EXPECT_EQ(m.body["i"], i);
    }
    EXPECT_EQ(d.next(m, error), FrameDecoder::Result::need_more);
    EXPECT_EQ(d.buffered(), 5u);
}

std::vector<UniqueFd> one_fd(UniqueFd fd) {
    std::vector<UniqueFd> v;
    v.push_back(std::move(fd));
    return v;
}

TEST(FrameDecoderTest, FdsArePairedWithTheirFrame) {
    std::size_t before = open_fd_count();
    {
        Pipe a, b;
        ino_t ia = inode_of(a.read.get()), ib = inode_of(b.read.get());
        FrameDecoder d;
        std::string stream = encode_frame(json{{"n", 0}}, 0) + encode_frame(json{{"n", 1}}, 1) +
                             encode_frame(json{{"n", 2}}, 0) + encode_frame(json{{"n", 3}}, 1);
        d.add_fds(one_fd(UniqueFd(dup(a.read.get()))), false);
        d.add_fds(one_fd(UniqueFd(dup(b.read.get()))), false);
        EXPECT_EQ(d.pending_fds(), 2u);
        d.append(stream.data(), stream.size());
        Message m;
        std::string error;
        ASSERT_EQ(d.next(m, error), FrameDecoder::Result::message);
        EXPECT_TRUE(m.fds.empty());
        ASSERT_EQ(d.next(m, error), FrameDecoder::Result::message);
        ASSERT_EQ(m.fds.size(), 1u);
        EXPECT_EQ(inode_of(m.fds[0].get()), ia);
        ASSERT_EQ(d.next(m, error), FrameDecoder::Result::message);
        EXPECT_TRUE(m.fds.empty());
        ASSERT_EQ(d.next(m, error), FrameDecoder::Result::message);
        ASSERT_EQ(m.fds.size(), 1u);
        EXPECT_EQ(inode_of(m.fds[0].get()), ib);
        EXPECT_EQ(d.pending_fds(), 0u);
    }
    EXPECT_EQ(open_fd_count(), before);
}

TEST(FrameDecoderTest, NonObjectPayloadIsSkippedAndItsFdsClosed) {
    std::size_t before = open_fd_count();
    {
        Pipe p;
        FrameDecoder d;
        int dup_fd = dup(p.read.get());
        d.add_fds(one_fd(UniqueFd(dup_fd)), false);
        std::string stream = raw_frame(8, 1, "not json") + encode_frame(json::array({1}), 0) +
                             encode_frame(json{{"ok", true}}, 0);
        d.append(stream.data(), stream.size());
        Message m;
        std::string error;
        EXPECT_EQ(d.next(m, error), FrameDecoder::Result::bad_message);
        EXPECT_NE(error.find("not valid JSON"), std::string::npos) << error;
        EXPECT_FALSE(fd_is_open(dup_fd));
        EXPECT_EQ(d.next(m, error), FrameDecoder::Result::bad_message);
        EXPECT_NE(error.find("not an object"), std::string::npos) << error;
        ASSERT_EQ(d.next(m, error), FrameDecoder::Result::message);
        EXPECT_EQ(m.body, (json{{"ok", true}}));
    }
    EXPECT_EQ(open_fd_count(), before);
}

TEST(FrameDecoderTest, BrokenStreams) {
    Message m;
    std::string error;
    {
        FrameDecoder d;
        std::string f = raw_frame(FrameDecoder::max_payload + 1, 0, "");
        d.append(f.data(), f.size());
        EXPECT_EQ(d.next(m, error), FrameDecoder::Result::broken);
        EXPECT_NE(error.find("exceeds the limit"), std::string::npos) << error;
    }
    {
        FrameDecoder d;
        std::string f = raw_frame(2, FrameDecoder::max_fds + 1, "{}");
        d.append(f.data(), f.size());
        EXPECT_EQ(d.next(m, error), FrameDecoder::Result::broken);
        EXPECT_NE(error.find("declares 17 descriptors, limit 16"), std::string::npos) << error;
    }
    {
        FrameDecoder d;
        std::string f = raw_frame(2, 2, "{}");
        d.append(f.data(), f.size());
        d.add_fds(one_fd(UniqueFd(dup(STDIN_FILENO))), false);
        EXPECT_EQ(d.next(m, error), FrameDecoder::Result::broken);
        EXPECT_NE(error.find("declares 2 descriptors but 1 arrived"), std::string::npos) << error;
    }
}

TEST(FrameDecoderTest, TruncatedBatchIsReportedNotBroken) {
    std::size_t before = open_fd_count();
    {
        FrameDecoder d;
        // The kernel dropped the descriptors of the first fd-carrying frame (MSG_CTRUNC, none
        // installed); the second frame's batch arrived whole and must stay paired with it.
        std::string stream = encode_frame(json{{"n", 1}}, 1) + encode_frame(json{{"n", 2}}, 1);
        d.add_fds({}, true);
        d.add_fds(one_fd(UniqueFd(dup(STDIN_FILENO))), false);
        d.append(stream.data(), stream.size());
        Message m;
        std::string error;
        ASSERT_EQ(d.next(m, error), FrameDecoder::Result::message);
        EXPECT_EQ(m.body["n"], 1);
        EXPECT_TRUE(m.fds.empty());
        EXPECT_EQ(m.fds_lost, 1u);
        ASSERT_EQ(d.next(m, error), FrameDecoder::Result::message);
        EXPECT_EQ(m.body["n"], 2);
        EXPECT_EQ(m.fds.size(), 1u);
        EXPECT_EQ(m.fds_lost, 0u);
    }
    EXPECT_EQ(open_fd_count(), before);
}

TEST(FrameDecoderTest, ClearClosesUnclaimedFds) {
    std::size_t before = open_fd_count();
    FrameDecoder d;
    d.add_fds(one_fd(UniqueFd(dup(STDIN_FILENO))), false);
    d.add_fds(one_fd(UniqueFd(dup(STDIN_FILENO))), false);
    EXPECT_EQ(open_fd_count(), before + 2);
    d.clear();
    EXPECT_EQ(d.pending_fds(), 0u);
    EXPECT_EQ(open_fd_count(), before);
}

TEST(FrameDecoderTest, MessageType) {
    Message m;
    m.body = json{{"type", "ready"}};
    EXPECT_EQ(m.type(), "ready");
    m.body = json{{"type", 3}};
    EXPECT_EQ(m.type(), "");
    m.body = json::array({"type"});
    EXPECT_EQ(m.type(), "");
    m.body = json::object();
    EXPECT_EQ(m.type(), "");
}

}  // namespace
}  // namespace herd::core
