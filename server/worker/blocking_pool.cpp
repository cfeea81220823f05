// BlockingPool; see blocking_pool.hpp.
#include "worker/blocking_pool.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "core/error.hpp"
#include "core/log.hpp"

namespace herd::worker {

BlockingPool::BlockingPool(core::EventLoop& loop, std::size_t threads, Completion completion)
    : loop_(loop),
      max_threads_(std::max<std::size_t>(threads, 1)),
      completion_(std::move(completion)) {}

BlockingPool::~BlockingPool() {
    std::deque<Job> dropped;
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
        dropped.swap(queue_);
    }
    work_ready_.notify_all();
    for (std::thread& t : threads_) t.join();
    if (event_) loop_.remove(event_.get());
}

void BlockingPool::submit(const void* owner, std::uint64_t id, herd::Function<void()> work) {
    if (!event_) {
        event_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
        if (!event_) core::throw_errno("eventfd() for the blocking pool");
        loop_.add(event_.get(), EPOLLIN, [this](std::uint32_t) { on_completions(); });
    }
    bool more_threads;
    {
        std::lock_guard lock(mutex_);
        queue_.push_back(Job{owner, id, std::move(work)});
        // One more thread while every thread is busy, up to the limit.
        more_threads =
            threads_.size() < max_threads_ && queue_.size() + running_.size() > threads_.size();
    }
    if (more_threads) threads_.emplace_back([this] { run_thread(); });
    work_ready_.notify_one();
}

void BlockingPool::run_thread() {
    for (;;) {
        Job job;
        {
            std::unique_lock lock(mutex_);
            work_ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
            if (stopping_) return;
            job = std::move(queue_.front());
            queue_.pop_front();
            running_.push_back(job.owner);
        }
        std::exception_ptr error;
        try {
            job.work();
        } catch (...) {
            error = std::current_exception();
        }
        {
            std::lock_guard lock(mutex_);
            running_.erase(std::find(running_.begin(), running_.end(), job.owner));
            done_.push_back(Done{job.owner, job.id, std::move(error), std::move(job.work)});
        }
        job_finished_.notify_all();
        std::uint64_t one = 1;
        // Only EAGAIN is possible (the counter at its maximum): the loop is woken already.
        (void)::write(event_.get(), &one, sizeof one);
    }
}

void BlockingPool::on_completions() {
    std::uint64_t count = 0;
    (void)::read(event_.get(), &count, sizeof count);  // EAGAIN: read by an earlier wake-up
    std::vector<Done> done;
    {
        std::lock_guard lock(mutex_);
        done.swap(done_);
    }
    for (Done& d : done) {
        d.work = nullptr;
        completion_(d.owner, d.id, std::move(d.error));
    }
}

void BlockingPool::forget(const void* owner) {
    std::vector<Job> dropped;
    std::vector<Done> finished;
    {
        std::unique_lock lock(mutex_);
        for (auto it = queue_.begin(); it != queue_.end();) {
            if (it->owner == owner) {
                dropped.push_back(std::move(*it));
                it = queue_.erase(it);
            } else {
                ++it;
            }
        }
        if (std::find(running_.begin(), running_.end(), owner) != running_.end())
            core::log_info("waiting for blocking work of a stopping plugin to return");
        job_finished_.wait(lock, [&] {
            return std::find(running_.begin(), running_.end(), owner) == running_.end();
        });
        for (auto it = done_.begin(); it != done_.end();) {
            if (it->owner == owner) {
                finished.push_back(std::move(*it));
                it = done_.erase(it);
            } else {
                ++it;
            }
        }
    }
    // The closures are destroyed here, in the loop's thread, outside the lock.
}

std::size_t BlockingPool::busy() const {
    std::lock_guard lock(mutex_);
    return queue_.size() + running_.size();
}

}  // namespace herd::worker
