// OutputQueue: the bytes a connection still has to write, sent with writev. Small responses
// are appended into one reusable buffer; large bodies are queued by move, never copied.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <vector>

namespace herd::worker {

class OutputQueue {
  public:
    // The buffer to append small pieces to: always the end of the queue. Appending is all it
    // takes (no commit); the reference stays valid, and push() leaves it empty.
    std::string& tail() { return tail_; }
    // Queues a large piece after everything so far, by move.
    void push(std::string&& big);
    std::size_t size() const { return queued_bytes_ + tail_.size() - offset_; }
    bool empty() const { return size() == 0; }
    // One write (or writev) of what is queued: bytes written, or -1 with errno (EAGAIN
    // included).
    ssize_t write_to(int fd);
    void clear();

  private:
    // Pieces before the tail, in order, from queued_[first_] on (a vector, reset once written:
    // nothing is allocated for a connection that never queues a large body).
    std::vector<std::string> queued_;
    std::size_t first_ = 0;
    std::size_t queued_bytes_ = 0;  // in queued_[first_...], counted whole
    std::size_t offset_ = 0;        // written of the first piece: queued_[first_], or the tail
    std::string tail_;
};

}  // namespace herd::worker
