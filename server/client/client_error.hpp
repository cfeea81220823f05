// The error every herd client (HTTP, Redis, PostgreSQL) reports: what kind of failure, and a
// message that names the request or command and the peer.
#pragma once

#include <stdexcept>
#include <string>

namespace herd::client {

enum class ErrorKind {
    invalid,      // a bad URL, header or option: the caller's mistake
    unsupported,  // something herd's client does not do (https://)
    resolve,      // the host name has no address
    connect,      // refused, unreachable, reset before the request was sent
    timeout,      // connect, first byte or total
    protocol,     // the peer broke the protocol (a malformed response)
    too_large,    // the response passed its size limit
    closed,       // the connection closed before the response was complete
    cancelled,    // the caller cancelled (its request ended)
    overloaded,   // too many waiting for a connection of this origin
};
const char* error_kind_name(ErrorKind k);

class ClientError : public std::runtime_error {
  public:
    ClientError(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
    ErrorKind kind() const noexcept { return kind_; }

  private:
    ErrorKind kind_;
};

}  // namespace herd::client
