// LoadBoard; see load_board.hpp.
#include "balance/load_board.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <new>
#include <vector>

#include "core/error.hpp"

namespace herd::balance {

bool should_yield_accept(SlotView me, std::span<const SlotView> others) {
    // Proportional: more than twice a sibling's count, plus a margin. Many short connections
    // (one request each, then lingering) make counts jitter; only a real skew costs a pause.
    return std::any_of(others.begin(), others.end(), [&](const SlotView& o) {
        return o.state == SlotState::idle && me.open > 2 * o.open + 4;
    });
}

LoadBoard::LoadBoard() {
    void* p = mmap(nullptr, sizeof(SlotLoad) * max_slots, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) core::throw_errno("mmap() of the shared load board");
    slots_ = new (p) SlotLoad[max_slots];
}

LoadBoard::~LoadBoard() {
    if (slots_ != nullptr) (void)munmap(slots_, sizeof(SlotLoad) * max_slots);
}

bool LoadBoard::should_yield(int me, int slots) const {
    SlotView mine{slots_[me].open.load(std::memory_order_relaxed),
                  static_cast<SlotState>(slots_[me].state.load(std::memory_order_relaxed))};
    SlotView others[64];
    std::size_t n = 0;
    for (int i = 0; i < slots && i < max_slots && n < std::size(others); ++i) {
        if (i == me) continue;
        others[n++] =
            SlotView{slots_[i].open.load(std::memory_order_relaxed),
                     static_cast<SlotState>(slots_[i].state.load(std::memory_order_relaxed))};
    }
    return should_yield_accept(mine, std::span<const SlotView>(others, n));
}

}  // namespace herd::balance
