// round-robin: the master accepts and passes each connection to worker i = (i + 1) mod n,
// skipping workers that are not ready or are draining (Node's RoundRobinHandle).
#pragma once

#include "balance/one_socket.hpp"

namespace herd::balance {

class RoundRobin final : public OneSocket {
  public:
    Mode mode() const override { return Mode::round_robin; }
    int worker_socket(int) const override { return -1; }
    int master_socket() const override { return socket_.get(); }
    int pick(std::span<const Candidate> candidates) override;

  private:
    std::size_t next_ = 0;
};

}  // namespace herd::balance
