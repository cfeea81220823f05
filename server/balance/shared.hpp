// shared: one listen socket, inherited by every worker, each accepting with EPOLLEXCLUSIVE;
// whoever is idle wins, and the kernel wakes one waiter per connection, not the herd. The
// kernel always wakes the first idle waiter, and on a busy machine the worker on the CPU
// drains the whole backlog; a LoadBoard lets a worker far ahead of an idle sibling step back
// for one accept, so keep-alive connections end up spread.
#pragma once

#include "balance/strategy.hpp"
#include "core/unique_fd.hpp"

namespace herd::balance {

class Shared final : public Strategy {
  public:
    Mode mode() const override { return Mode::shared; }
    void bind(const core::SocketAddress& address, int backlog, int slots) override;
    int worker_socket(int) const override { return socket_.get(); }
    int master_socket() const override { return -1; }
    std::string bound_address() const override;
    void close() override { socket_.reset(); }
    LoadBoard* load_board() override { return &board_; }

  private:
    core::UniqueFd socket_;
    LoadBoard board_;
};

}  // namespace herd::balance
