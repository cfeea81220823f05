// Graveyard: where a worker puts an object it is done with (a closed connection, a closed
// WebSocket) while the object may still be on the stack below, or have work deferred to the
// end of this loop iteration. Each object is freed in the next iteration, by a post of its
// own: a batch freed together would take an object buried late in an iteration with one
// buried in the iteration before, before the late one's deferred work has run.
#pragma once

#include <memory>
#include <unordered_map>

#include "core/event_loop.hpp"

namespace herd::worker {

template <class T>
class Graveyard {
  public:
    explicit Graveyard(core::EventLoop& loop) : loop_(loop) {}
    Graveyard(const Graveyard&) = delete;
    Graveyard& operator=(const Graveyard&) = delete;

    void bury(std::unique_ptr<T> object) {
        T* raw = object.get();
        dead_.emplace(raw, std::move(object));
        loop_.post([this, raw] { dead_.erase(raw); });
    }
    // Frees everything now (the worker is leaving: no iteration follows).
    void clear() { dead_.clear(); }

  private:
    core::EventLoop& loop_;
    std::unordered_map<T*, std::unique_ptr<T>> dead_;
};

}  // namespace herd::worker
