// OneSocket: the part shared by the strategies that bind a single listen socket for the whole
// app (shared, round-robin, least-conn); they differ in who accepts on it.
#pragma once

#include "balance/strategy.hpp"
#include "core/unique_fd.hpp"

namespace herd::balance {

class OneSocket : public Strategy {
  public:
    void bind(const core::SocketAddress& address, int backlog, int) override {
        if (!socket_) socket_ = core::listen_tcp(address, false, backlog);  // one for any count
    }
    void adopt(std::vector<core::UniqueFd> sockets) override {
        if (!sockets.empty()) socket_ = std::move(sockets.front());
    }
    std::vector<int> sockets() const override {
        return socket_ ? std::vector<int>{socket_.get()} : std::vector<int>{};
    }
    std::string bound_address() const override { return core::local_address(socket_.get()); }
    void close() override { socket_.reset(); }

  protected:
    core::UniqueFd socket_;
};

}  // namespace herd::balance
