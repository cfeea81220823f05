// Listen sockets herd did not bind itself: those of the master it upgrades from (the
// HERD_UPGRADE environment variable, set by that master for the binary it starts) and those
// of systemd's socket activation (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES). Each app claims the
// sockets that are its own before binding what is still missing.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.hpp"
#include "core/unique_fd.hpp"

namespace herd::master {

struct InheritedSocket {
    core::UniqueFd fd;
    std::string name;        // the app it served (upgrade), or systemd's FileDescriptorName
    std::string listen;      // the old config's "listen" as written (upgrade); "" from systemd
    std::string address;     // as bound ("127.0.0.1:8080"), read from the socket
    bool reuseport = false;  // SO_REUSEPORT is set on it
    int slot = 0;            // upgrade, reuseport: the slot it belonged to
};

// What a new master received: from an old master (an upgrade) or from systemd.
struct Inherited {
    std::string origin;  // for messages: "the master it upgrades from (pid 4711)", "systemd"
    std::vector<InheritedSocket> sockets;
    // An upgrade only: the channel to the old master, its control and metrics sockets.
    core::UniqueFd channel, control, metrics, health;
    std::string metrics_listen;  // the old config's "metrics" as written
    std::string health_listen;   // and its "health"
    pid_t from_pid = 0;
    std::string from_version;
    bool upgrade() const { return static_cast<bool>(channel); }
};

// The environment variable an old master sets for the binary it starts.
inline constexpr const char* upgrade_env = "HERD_UPGRADE";

// The old master's side: HERD_UPGRADE's value. The descriptors are numbers in the new
// process (the old master clears their close-on-exec flag in the child).
struct UpgradeSocket {
    int fd = -1;
    std::string app, listen;
    bool reuseport = false;
    int slot = 0;
};
// The master's own sockets: -1 where there is none; `listen` is the config's text.
struct UpgradeEndpoint {
    int fd = -1;
    std::string listen;
};
std::string encode_upgrade_env(pid_t from_pid, std::string_view version, int channel, int control,
                               const UpgradeEndpoint& metrics, const UpgradeEndpoint& health,
                               const std::vector<UpgradeSocket>& sockets);

// The new master's side, before it has a loop (its config refused, its exec failed): tells
// the old master why on the channel, in one blocking write. Errors are ignored: the old
// master also sees the exit.
void report_upgrade_failure(int channel, const std::string& reason);

// The new master's side, run first thing: HERD_UPGRADE, else systemd's variables (for this
// process only: LISTEN_PID must be ours), else nothing. The variables are removed from the
// environment (workers must not see them); every descriptor is checked (a listening TCP
// socket; the control socket a listening Unix socket) and made non-blocking and
// close-on-exec. Throws core::Error naming the variable, the descriptor and what is wrong.
std::optional<Inherited> take_inherited();

// Pure parts, unit-tested. `text` is HERD_UPGRADE's value; descriptors are not checked.
Inherited parse_upgrade_env(std::string_view text);
// LISTEN_FDS and LISTEN_FDNAMES (LISTEN_PID already matched): descriptors 3.. with their
// names ("unknown" where none is given, as sd_listen_fds_with_names says).
std::vector<InheritedSocket> parse_listen_fds(std::string_view count, const char* names);

// The sockets that are `app`'s, taken out of `from` (slot order for reuseport): from an old
// master, those it bound for the same app name and "listen" text; from systemd, those named
// as the app, else those bound to the app's exact address. Throws core::Error when what
// matches cannot serve the app (reuseport set on one side only).
std::vector<core::UniqueFd> claim_sockets(Inherited& from, const core::AppConfig& app);

// A socket no app claimed: from systemd that is a mistake in the units (an error naming each
// one); from an old master it served an app the new config no longer has (closed here, the
// old master closes its own copy).
void check_unclaimed(Inherited& from);

}  // namespace herd::master
