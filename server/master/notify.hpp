// Service-manager notifications: systemd's sd_notify datagram protocol, written out (one
// AF_UNIX datagram to $NOTIFY_SOCKET, "@" for the abstract namespace) so herd needs no
// libsystemd. Without NOTIFY_SOCKET every call does nothing.
#pragma once

#include <string>
#include <string_view>

namespace herd::master {

class Notifier {
  public:
    // Reads NOTIFY_SOCKET and removes it from the environment: workers must not talk to
    // the service manager in the master's name.
    Notifier();
    bool enabled() const { return !path_.empty(); }
    // "READY=1\nSTATUS=...". A failure is logged once; it never stops herd.
    void send(std::string_view state);
    void ready(std::string_view status);
    // RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload expects.
    void reloading(std::string_view status);
    void stopping(std::string_view status);

  private:
    std::string path_;
    bool warned_ = false;
};

}  // namespace herd::master
