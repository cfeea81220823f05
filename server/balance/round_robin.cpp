// round-robin: the master passes connections to the workers in turn; see round_robin.hpp.
#include "balance/round_robin.hpp"

namespace herd::balance {

int RoundRobin::pick(std::span<const Candidate> candidates) {
    std::size_t n = candidates.size();
    for (std::size_t k = 0; k < n; ++k) {
        std::size_t i = (next_ + k) % n;
        if (candidates[i].accepting) {
            next_ = (i + 1) % n;
            return static_cast<int>(i);
        }
    }
    return -1;
}

}  // namespace herd::balance
