// round-robin: the master accepts and passes each connection to worker i = (i + 1) mod n,
// skipping workers that are not ready or are draining (Node's RoundRobinHandle).
#pragma once

#include "balance/strategy.hpp"
#include "core/unique_fd.hpp"

namespace herd::balance {

class RoundRobin final : public Strategy {
  public:
    Mode mode() const override { return Mode::round_robin; }
    void bind(const core::SocketAddress& address, int backlog, int slots) override;
    int worker_socket(int) const override { return -1; }
    int master_socket() const override { return socket_.get(); }
    std::string bound_address() const override;
    void close() override { socket_.reset(); }
    int pick(std::span<const Candidate> candidates) override;

  private:
    core::UniqueFd socket_;
    std::size_t next_ = 0;
};

}  // namespace herd::balance
