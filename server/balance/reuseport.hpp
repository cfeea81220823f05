// reuseport: one SO_REUSEPORT socket per worker slot, created and kept by the master. The
// socket belongs to the slot, not to the process: a replaced worker inherits it with its
// queue, so connections waiting there are not lost. The kernel spreads connections over the
// sockets by a hash of the addresses, so one busy worker can hold up the ones hashed to it.
// When a slot is removed (scale-down) the master takes its socket over, passes whatever
// queues there to the other workers, and closes it once the slot's worker has left.
#pragma once

#include <vector>

#include "balance/strategy.hpp"
#include "core/unique_fd.hpp"

namespace herd::balance {

class Reuseport final : public Strategy {
  public:
    Mode mode() const override { return Mode::reuseport; }
    void bind(const core::SocketAddress& address, int backlog, int slots) override;
    void adopt(std::vector<core::UniqueFd> sockets) override { sockets_ = std::move(sockets); }
    std::vector<int> sockets() const override;
    int worker_socket(int slot) const override;
    int master_socket() const override { return -1; }
    std::string bound_address() const override;
    void close() override { sockets_.clear(); }
    core::UniqueFd remove_slot(int slot) override;

  private:
    std::vector<core::UniqueFd> sockets_;  // by slot
};

}  // namespace herd::balance
