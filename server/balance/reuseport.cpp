// reuseport: one SO_REUSEPORT socket per slot; see reuseport.hpp.
#include "balance/reuseport.hpp"

#include "core/error.hpp"

namespace herd::balance {

void Reuseport::bind(const core::SocketAddress& address, int backlog, int slots) {
    core::SocketAddress a = address;
    for (int slot = static_cast<int>(sockets_.size()); slot < slots; ++slot) {
        if (!sockets_.empty() && a.port() == 0) {
            // Port 0: the first socket chose the port; the others join its group.
            a = core::parse_address(core::local_address(sockets_.front().get()));
            a.text = address.text;
        }
        sockets_.push_back(core::listen_tcp(a, true, backlog));
    }
}

int Reuseport::worker_socket(int slot) const {
    if (slot < 0 || static_cast<std::size_t>(slot) >= sockets_.size())
        throw core::Error("reuseport: no socket for slot " + std::to_string(slot));
    return sockets_[static_cast<std::size_t>(slot)].get();
}

std::string Reuseport::bound_address() const {
    return sockets_.empty() ? "?" : core::local_address(sockets_.front().get());
}

}  // namespace herd::balance
