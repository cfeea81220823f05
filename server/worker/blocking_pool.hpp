// BlockingPool: the worker's few threads for plugins' blocking work (Loop::run_blocking).
// Started at the first job, so a worker whose plugins never block starts no thread. Jobs
// run in order of submission; their completions come back to the event loop through an
// eventfd. The threads touch only the job's own work and the queues below.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <herd/function.hpp>

#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"

namespace herd::worker {

class BlockingPool {
  public:
    // Called in the loop with the job's owner and id, and what its work threw (or null).
    using Completion =
        std::function<void(const void* owner, std::uint64_t id, std::exception_ptr error)>;

    BlockingPool(core::EventLoop& loop, std::size_t threads, Completion completion);
    BlockingPool(const BlockingPool&) = delete;
    BlockingPool& operator=(const BlockingPool&) = delete;
    // Joins the threads after their current jobs; jobs not started are dropped.
    ~BlockingPool();

    void submit(const void* owner, std::uint64_t id, herd::Function<void()> work);
    // Drops owner's jobs that have not started and waits until none of its jobs runs; their
    // completions are dropped too. Blocks the loop: for a plugin that stops.
    void forget(const void* owner);
    // Jobs queued or running.
    std::size_t busy() const;
    std::size_t threads() const { return threads_.size(); }

  private:
    struct Job {
        const void* owner;
        std::uint64_t id;
        herd::Function<void()> work;
    };
    struct Done {
        const void* owner;
        std::uint64_t id;
        std::exception_ptr error;
        herd::Function<void()> work;  // destroyed in the loop's thread: it is plugin code
    };

    void run_thread();
    void on_completions();

    core::EventLoop& loop_;
    std::size_t max_threads_;
    Completion completion_;
    core::UniqueFd event_;  // written by the threads, read by the loop
    mutable std::mutex mutex_;
    std::condition_variable work_ready_;
    std::condition_variable job_finished_;
    std::deque<Job> queue_;
    std::vector<const void*> running_;  // owner of each job being run
    std::vector<Done> done_;
    std::vector<std::thread> threads_;
    bool stopping_ = false;
};

}  // namespace herd::worker
