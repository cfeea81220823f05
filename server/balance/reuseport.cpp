// reuseport: one SO_REUSEPORT socket per slot; see reuseport.hpp.
#include "balance/reuseport.hpp"

#include "core/error.hpp"

namespace herd::balance {

void Reuseport::bind(const core::SocketAddress& address, int backlog, int slots) {
    core::SocketAddress a = address;
    if (!sockets_.empty() && a.port() == 0) {
        // Port 0: the first socket chose the port; the others join its group.
        a = core::parse_address(core::local_address(sockets_.front().get()));
        a.text = address.text;
    }
    if (sockets_.size() < static_cast<std::size_t>(slots))
        sockets_.resize(static_cast<std::size_t>(slots));
    for (auto& socket : sockets_) {
        if (socket) continue;  // slot 0 is never removed, so the first one is bound first
        socket = core::listen_tcp(a, true, backlog);
        if (a.port() == 0) {
            a = core::parse_address(core::local_address(socket.get()));
            a.text = address.text;
        }
    }
}

core::UniqueFd Reuseport::remove_slot(int slot) {
    if (slot <= 0 || static_cast<std::size_t>(slot) >= sockets_.size()) return {};
    return std::move(sockets_[static_cast<std::size_t>(slot)]);
}

std::vector<int> Reuseport::sockets() const {
    std::vector<int> out;
    for (const core::UniqueFd& s : sockets_) out.push_back(s.get());
    return out;
}

int Reuseport::worker_socket(int slot) const {
    if (slot < 0 || static_cast<std::size_t>(slot) >= sockets_.size() ||
        !sockets_[static_cast<std::size_t>(slot)])
        throw core::Error("reuseport: no socket for slot " + std::to_string(slot));
    return sockets_[static_cast<std::size_t>(slot)].get();
}

std::string Reuseport::bound_address() const {
    return sockets_.empty() ? "?" : core::local_address(sockets_.front().get());
}

}  // namespace herd::balance
