// least-conn: the master accepts and passes each connection to the accepting worker with the
// fewest open connections; ties go round the workers so equal ones share the load. Counts
// are the master's own (connections passed) minus what each worker reports closed, so a
// burst is spread before any report comes back.
#pragma once

#include "balance/one_socket.hpp"

namespace herd::balance {

class LeastConn final : public OneSocket {
  public:
    Mode mode() const override { return Mode::least_conn; }
    int worker_socket(int) const override { return -1; }
    int master_socket() const override { return socket_.get(); }
    int pick(std::span<const Candidate> candidates) override;

  private:
    std::size_t next_ = 0;  // where the search for a tie starts
};

}  // namespace herd::balance
