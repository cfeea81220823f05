// Tests the pure balancing decisions: round-robin and least-conn picks, and the shared-mode
// rule for stepping back from an accept. No sockets are bound.
#include <gtest/gtest.h>

#include <vector>

#include "balance/least_conn.hpp"
#include "balance/load_board.hpp"
#include "balance/round_robin.hpp"
#include "balance/strategy.hpp"

using herd::balance::Candidate;
using herd::balance::LeastConn;
using herd::balance::Mode;
using herd::balance::RoundRobin;
using herd::balance::should_yield_accept;
using herd::balance::SlotState;
using herd::balance::SlotView;

namespace {
Candidate ready(std::uint32_t open = 0) {
    return Candidate{true, open};
}
Candidate not_ready() {
    return Candidate{false, 0};
}
}  // namespace

TEST(BalanceTest, ModeNamesRoundTrip) {
    for (Mode m : {Mode::shared, Mode::reuseport, Mode::round_robin, Mode::least_conn})
        EXPECT_EQ(herd::balance::parse_mode(herd::balance::mode_name(m)), m);
    EXPECT_FALSE(herd::balance::parse_mode("random").has_value());
}

TEST(RoundRobinTest, TakesTurnsAndSkipsWorkersNotAccepting) {
    RoundRobin rr;
    std::vector<Candidate> c{ready(), ready(), ready(), ready()};
    std::vector<int> picks;
    for (int i = 0; i < 8; ++i) picks.push_back(rr.pick(c));
    EXPECT_EQ(picks, (std::vector<int>{0, 1, 2, 3, 0, 1, 2, 3}));
    c[1] = not_ready();  // draining or starting
    picks.clear();
    for (int i = 0; i < 6; ++i) picks.push_back(rr.pick(c));
    EXPECT_EQ(picks, (std::vector<int>{0, 2, 3, 0, 2, 3}));
}

TEST(RoundRobinTest, NobodyAccepting) {
    RoundRobin rr;
    std::vector<Candidate> c{not_ready(), not_ready()};
    EXPECT_EQ(rr.pick(c), -1);
    EXPECT_EQ(rr.pick(std::vector<Candidate>{}), -1);
}

TEST(LeastConnTest, PicksFewestOpenAndRotatesTies) {
    LeastConn lc;
    EXPECT_EQ(lc.pick(std::vector<Candidate>{ready(5), ready(2), ready(7)}), 1);
    // All equal: successive picks go round instead of always the first.
    std::vector<Candidate> tie{ready(3), ready(3), ready(3)};
    std::vector<int> picks;
    for (int i = 0; i < 3; ++i) picks.push_back(lc.pick(tie));
    std::sort(picks.begin(), picks.end());
    EXPECT_EQ(picks, (std::vector<int>{0, 1, 2}));
}

TEST(LeastConnTest, IgnoresWorkersNotAcceptingEvenIfEmpty) {
    LeastConn lc;
    EXPECT_EQ(lc.pick(std::vector<Candidate>{not_ready(), ready(9), not_ready()}), 1);
    EXPECT_EQ(lc.pick(std::vector<Candidate>{not_ready(), not_ready()}), -1);
}

TEST(LoadBoardTest, YieldsOnlyToAnIdleClearlyLessLoadedSibling) {
    auto view = [](std::uint32_t open, SlotState s) { return SlotView{open, s}; };
    std::vector<SlotView> others{view(0, SlotState::idle)};
    EXPECT_FALSE(should_yield_accept(view(4, SlotState::idle), others));  // within the margin
    EXPECT_TRUE(should_yield_accept(view(5, SlotState::idle), others));
    // A busy sibling (inside a handler) cannot accept: never step back for it.
    EXPECT_FALSE(should_yield_accept(view(50, SlotState::idle),
                                     std::vector<SlotView>{view(0, SlotState::busy)}));
    // An absent slot (starting, draining, dead) neither.
    EXPECT_FALSE(should_yield_accept(view(50, SlotState::idle),
                                     std::vector<SlotView>{view(0, SlotState::absent)}));
    // Proportional: 100 against 48 is close enough, against 47 it is not.
    EXPECT_FALSE(should_yield_accept(view(100, SlotState::idle),
                                     std::vector<SlotView>{view(48, SlotState::idle)}));
    EXPECT_TRUE(should_yield_accept(view(100, SlotState::idle),
                                    std::vector<SlotView>{view(47, SlotState::idle)}));
    EXPECT_FALSE(should_yield_accept(view(100, SlotState::idle), std::vector<SlotView>{}));
}

TEST(LoadBoardTest, BoardReadsOtherSlots) {
    herd::balance::LoadBoard board;
    board.slot(0).open = 10;
    board.slot(0).state = static_cast<std::uint32_t>(SlotState::idle);
    board.slot(1).open = 1;
    board.slot(1).state = static_cast<std::uint32_t>(SlotState::idle);
    EXPECT_TRUE(board.should_yield(0, 2));
    EXPECT_FALSE(board.should_yield(1, 2));
    EXPECT_FALSE(board.should_yield(0, 1));  // alone: nobody to yield to
}
