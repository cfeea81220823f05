// shared: one listen socket, inherited by every worker, each accepting with EPOLLEXCLUSIVE;
// whoever is idle wins, and the kernel wakes one waiter per connection, not the herd. The
// kernel always wakes the first idle waiter, and on a busy machine the worker on the CPU
// drains the whole backlog; a LoadBoard lets a worker far ahead of an idle sibling step back
// for one accept, so keep-alive connections end up spread.
#pragma once

#include "balance/one_socket.hpp"

namespace herd::balance {

class Shared final : public OneSocket {
  public:
    Mode mode() const override { return Mode::shared; }
    int worker_socket(int) const override { return socket_.get(); }
    int master_socket() const override { return -1; }
    LoadBoard* load_board() override { return &board_; }

  private:
    LoadBoard board_;
};

}  // namespace herd::balance
