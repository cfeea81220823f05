// Service-manager notifications: systemd's sd_notify datagram protocol, written out (one
// AF_UNIX datagram to $NOTIFY_SOCKET, "@" for the abstract namespace) so herd needs no
// libsystemd. Without NOTIFY_SOCKET every call does nothing.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace herd::master {

class Notifier {
  public:
    // Reads NOTIFY_SOCKET and removes it from the environment: workers must not talk to
    // the service manager in the master's name.
    Notifier();
    bool enabled() const { return !path_.empty(); }
    const std::string& path() const { return path_; }
    // Muted, nothing is sent: a new master before it has taken over (the old one is still
    // the service's main process) and an old one after it has handed over.
    void mute(bool muted) { muted_ = muted; }
    // "READY=1\nSTATUS=...". A failure is logged once; it never stops herd.
    void send(std::string_view state);
    void ready(std::string_view status);
    // RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload expects.
    void reloading(std::string_view status);
    void stopping(std::string_view status);
    // An upgrade: `pid` is the service's main process from now on (systemd follows it with
    // NotifyAccess=main; its own notifications count from then on).
    void main_pid(pid_t pid, std::string_view status);

  private:
    std::string path_;
    bool warned_ = false;
    bool muted_ = false;
};

}  // namespace herd::master
