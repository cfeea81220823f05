// Strategy names and the factory; each strategy lives in its own file.
#include "balance/strategy.hpp"

#include "balance/least_conn.hpp"
#include "balance/reuseport.hpp"
#include "balance/round_robin.hpp"
#include "balance/shared.hpp"

namespace herd::balance {

std::optional<Mode> parse_mode(std::string_view name) {
    if (name == "shared") return Mode::shared;
    if (name == "reuseport") return Mode::reuseport;
    if (name == "round-robin") return Mode::round_robin;
    if (name == "least-conn") return Mode::least_conn;
    return std::nullopt;
}

std::string_view mode_name(Mode mode) {
    switch (mode) {
        case Mode::shared:
            return "shared";
        case Mode::reuseport:
            return "reuseport";
        case Mode::round_robin:
            return "round-robin";
        case Mode::least_conn:
            return "least-conn";
    }
    return "?";
}

int Strategy::pick(std::span<const Candidate> candidates) {
    int best = -1;
    for (std::size_t i = 0; i < candidates.size(); ++i)
        if (candidates[i].accepting &&
            (best < 0 || candidates[i].open < candidates[static_cast<std::size_t>(best)].open))
            best = static_cast<int>(i);
    return best;
}

std::unique_ptr<Strategy> make_strategy(Mode mode) {
    switch (mode) {
        case Mode::shared:
            return std::make_unique<Shared>();
        case Mode::reuseport:
            return std::make_unique<Reuseport>();
        case Mode::round_robin:
            return std::make_unique<RoundRobin>();
        case Mode::least_conn:
            return std::make_unique<LeastConn>();
    }
    return nullptr;
}

}  // namespace herd::balance
