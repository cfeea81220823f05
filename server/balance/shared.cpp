// shared: one listen socket for every worker; see shared.hpp.
#include "balance/shared.hpp"

namespace herd::balance {

void Shared::bind(const core::SocketAddress& address, int backlog, int) {
    if (!socket_) socket_ = core::listen_tcp(address, false, backlog);  // one socket for any count
}

std::string Shared::bound_address() const {
    return core::local_address(socket_.get());
}

}  // namespace herd::balance
