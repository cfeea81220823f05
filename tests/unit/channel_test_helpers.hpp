// Helpers of the channel tests (channel_test, frame_decoder_test): counting and checking
// descriptors, a pipe to pass, and a frame's raw bytes as a peer could send them.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "core/channel.hpp"

namespace herd::core::channel_test {

inline std::size_t open_fd_count() {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd"))
        ++n;
    return n;
}

inline bool fd_is_open(int fd) {
    return fcntl(fd, F_GETFD) >= 0;
}

struct Pipe {
    UniqueFd read, write;
    // Without O_CLOEXEC on purpose: the receiving side must set it itself.
    Pipe() {
        int p[2];
        if (pipe(p) != 0) throw std::runtime_error("pipe() failed");
        read.reset(p[0]);
        write.reset(p[1]);
    }
};

inline ino_t inode_of(int fd) {
    struct stat st {};
    EXPECT_EQ(fstat(fd, &st), 0);
    return st.st_ino;
}

inline std::string raw_frame(std::uint32_t length, std::uint32_t nfds, const std::string& payload) {
    std::string frame(8, '\0');
    std::memcpy(frame.data(), &length, 4);
    std::memcpy(frame.data() + 4, &nfds, 4);
    return frame + payload;
}

}  // namespace herd::core::channel_test
