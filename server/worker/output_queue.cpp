// OutputQueue; see output_queue.hpp.
#include "worker/output_queue.hpp"

#include <sys/uio.h>

namespace herd::worker {

std::string& OutputQueue::tail() {
    if (chunks_.empty() || !chunks_.back().appendable) {
        spare_.clear();
        chunks_.push_back(Chunk{std::move(spare_), true});
        spare_ = std::string();
        tail_counted_ = 0;
    }
    return chunks_.back().data;
}

void OutputQueue::commit() {
    if (chunks_.empty() || !chunks_.back().appendable) return;
    size_ += chunks_.back().data.size() - tail_counted_;
    tail_counted_ = chunks_.back().data.size();
}

void OutputQueue::push(std::string&& big) {
    commit();
    if (big.empty()) return;
    size_ += big.size();
    chunks_.push_back(Chunk{std::move(big), false});
}

ssize_t OutputQueue::write_to(int fd) {
    commit();
    iovec iov[16];
    int n = 0;
    std::size_t skip = offset_;
    for (auto& c : chunks_) {
        if (n == 16) break;
        iov[n++] = iovec{c.data.data() + skip, c.data.size() - skip};
        skip = 0;
    }
    ssize_t w = ::writev(fd, iov, n);
    if (w <= 0) return w;
    auto left = static_cast<std::size_t>(w);
    size_ -= left;
    while (left > 0) {
        Chunk& c = chunks_.front();
        std::size_t rest = c.data.size() - offset_;
        if (left < rest) {
            offset_ += left;
            break;
        }
        left -= rest;
        offset_ = 0;
        if (c.appendable && c.data.capacity() <= (64u << 10)) spare_ = std::move(c.data);
        chunks_.pop_front();
    }
    if (chunks_.empty()) tail_counted_ = 0;
    return w;
}

void OutputQueue::clear() {
    chunks_.clear();
    offset_ = 0;
    size_ = 0;
    tail_counted_ = 0;
}

}  // namespace herd::worker
