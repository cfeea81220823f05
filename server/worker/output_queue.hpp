// OutputQueue: the bytes a connection still has to write, sent with writev. Small responses
// are appended into one reusable buffer; large bodies are queued by move, never copied.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <deque>
#include <string>

namespace herd::worker {

class OutputQueue {
  public:
    // The buffer to append small pieces to (kept at the tail of the queue).
    std::string& tail();
    void push(std::string&& big);
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    // One writev of what is queued: bytes written, or -1 with errno (EAGAIN included).
    ssize_t write_to(int fd);
    void clear();
    // Accounts bytes appended to tail() since the last call; call after appending.
    void commit();

  private:
    struct Chunk {
        std::string data;
        bool appendable;
    };
    std::deque<Chunk> chunks_;
    std::size_t offset_ = 0;  // into chunks_.front()
    std::size_t size_ = 0;
    std::size_t tail_counted_ = 0;  // bytes of the appendable tail already in size_
    std::string spare_;             // capacity of a written small buffer, reused for the next one
};

}  // namespace herd::worker
