// least-conn: the master passes each connection to the least loaded worker; see least_conn.hpp.
#include "balance/least_conn.hpp"

namespace herd::balance {

int LeastConn::pick(std::span<const Candidate> candidates) {
    std::size_t n = candidates.size();
    int best = -1;
    for (std::size_t k = 0; k < n; ++k) {
        std::size_t i = (next_ + k) % n;
        if (!candidates[i].accepting) continue;
        if (best < 0 || candidates[i].open < candidates[static_cast<std::size_t>(best)].open)
            best = static_cast<int>(i);
    }
    if (best >= 0) next_ = (static_cast<std::size_t>(best) + 1) % n;
    return best;
}

}  // namespace herd::balance
