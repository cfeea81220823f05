// OutputQueue; see output_queue.hpp.
#include "worker/output_queue.hpp"

#include <sys/uio.h>
#include <unistd.h>

namespace herd::worker {
namespace {
// A tail buffer that grew past this (many pipelined responses) is freed once written.
constexpr std::size_t keep_tail_capacity = 64 << 10;
constexpr int max_iov = 16;
}  // namespace

void OutputQueue::push(std::string&& big) {
    if (big.empty()) return;
    if (!tail_.empty()) {
        queued_bytes_ += tail_.size();
        queued_.push_back(std::move(tail_));
        tail_.clear();  // moved from: empty, but say so
    }
    queued_bytes_ += big.size();
    queued_.push_back(std::move(big));
}

ssize_t OutputQueue::write_to(int fd) {
    ssize_t w;
    if (first_ == queued_.size()) {
        // The usual case: one buffer.
        w = ::write(fd, tail_.data() + offset_, tail_.size() - offset_);
    } else {
        iovec iov[max_iov];
        int n = 0;
        std::size_t skip = offset_;
        for (std::size_t i = first_; i < queued_.size() && n < max_iov; ++i) {
            iov[n++] = iovec{queued_[i].data() + skip, queued_[i].size() - skip};
            skip = 0;
        }
        if (n < max_iov && !tail_.empty())
            iov[n++] = iovec{tail_.data() + skip, tail_.size() - skip};
        w = ::writev(fd, iov, n);
    }
    if (w <= 0) return w;
    auto left = static_cast<std::size_t>(w);
    while (left > 0 && first_ < queued_.size()) {
        std::string& piece = queued_[first_];
        std::size_t rest = piece.size() - offset_;
        if (left < rest) {
            offset_ += left;
            return w;
        }
        left -= rest;
        offset_ = 0;
        queued_bytes_ -= piece.size();
        piece = std::string();  // a large body's memory goes now
        if (++first_ == queued_.size()) {
            queued_.clear();
            first_ = 0;
        }
    }
    if (first_ != queued_.size()) return w;  // a piece ended where the write did
    offset_ += left;                         // into the tail
    if (offset_ == tail_.size()) {
        tail_.clear();
        offset_ = 0;
        if (tail_.capacity() > keep_tail_capacity) tail_ = std::string();
    }
    return w;
}

void OutputQueue::clear() {
    queued_.clear();
    first_ = 0;
    queued_bytes_ = 0;
    offset_ = 0;
    tail_.clear();
}

}  // namespace herd::worker
