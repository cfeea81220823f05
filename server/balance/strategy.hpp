// Balancing strategies: who accepts an app's connections. One file per strategy behind this
// interface, as Node's cluster has one class per handle kind: the listen sockets a strategy
// owns, and for strategies where the master accepts, the (pure) choice of worker.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "balance/load_board.hpp"
#include "core/socket.hpp"
#include "core/unique_fd.hpp"

namespace herd::balance {

enum class Mode { shared, reuseport, round_robin, least_conn };

std::optional<Mode> parse_mode(std::string_view name);
std::string_view mode_name(Mode mode);

// The master's view of one worker when it places a connection.
struct Candidate {
    bool accepting = false;  // ready, not draining
    std::uint32_t open = 0;  // connections passed to it and not yet reported closed
};

class Strategy {
  public:
    virtual ~Strategy() = default;
    virtual Mode mode() const = 0;

    // Binds what the strategy needs for `slots` workers (again after a scale-up: only what is
    // missing); throws core::Error.
    virtual void bind(const core::SocketAddress& address, int backlog, int slots) = 0;
    // Takes over listen sockets bound elsewhere (an old master's, systemd's), before bind(),
    // which then binds only what is still missing: one for the single-socket strategies, one
    // per slot (in slot order) for reuseport.
    virtual void adopt(std::vector<core::UniqueFd> sockets) = 0;
    // Its listen sockets (by slot for reuseport): what an upgrade passes to the new master.
    virtual std::vector<int> sockets() const = 0;
    // The socket a worker in `slot` accepts on itself, or -1 when the master accepts for it.
    virtual int worker_socket(int slot) const = 0;
    // The socket the master accepts on and passes connections from, or -1.
    virtual int master_socket() const = 0;
    // The address actually bound ("127.0.0.1:39117").
    virtual std::string bound_address() const = 0;
    // Closes every socket (stop).
    virtual void close() = 0;
    // Shared load figures for workers that accept on one socket (shared), or null.
    virtual LoadBoard* load_board() { return nullptr; }
    // A slot is going away (scale-down): the socket that belonged to it alone, if any
    // (reuseport), for the master to drain into other workers and close.
    virtual core::UniqueFd remove_slot(int slot) {
        (void)slot;
        return {};
    }

    // For strategies where the master accepts: the index of the worker that gets the next
    // connection, or -1 when no worker is accepting. Pure: no I/O, no clock.
    // Where workers accept themselves, the master places only the connections it drains from
    // a removed slot's socket: to the accepting worker with the fewest it was passed.
    virtual int pick(std::span<const Candidate> candidates);
};

std::unique_ptr<Strategy> make_strategy(Mode mode);

}  // namespace herd::balance
