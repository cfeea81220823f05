// LoadBoard: per-slot load figures in memory shared by the master and the workers of one
// app (mapped before the fork), so that workers accepting on a shared socket can even out
// without any message. Each slot writes only its own entry.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

namespace herd::balance {

// What a worker publishes about itself.
enum class SlotState : std::uint32_t { absent = 0, idle = 1, busy = 2 };

struct alignas(64) SlotLoad {  // one cache line each: no false sharing between workers
    std::atomic<std::uint32_t> open{0};
    std::atomic<std::uint32_t> state{0};
};

struct SlotView {
    std::uint32_t open = 0;
    SlotState state = SlotState::absent;
};

// The pure decision: should a worker with `me` step back from accepting once, because a
// sibling that is present, not inside a handler, and clearly less loaded could take the
// connection? Only a clear skew counts (more than twice the sibling's load, plus 4), so that
// the jitter of short connections never costs a pause.
bool should_yield_accept(SlotView me, std::span<const SlotView> others);

class LoadBoard {
  public:
    static constexpr int max_slots = 1024;

    LoadBoard();  // maps the shared page; throws core::Error
    ~LoadBoard();
    LoadBoard(const LoadBoard&) = delete;
    LoadBoard& operator=(const LoadBoard&) = delete;

    SlotLoad& slot(int i) { return slots_[i]; }
    // Reads every other slot of the first `slots` and applies should_yield_accept.
    bool should_yield(int me, int slots) const;

  private:
    SlotLoad* slots_ = nullptr;
};

}  // namespace herd::balance
