// The exception herd throws for a failed system call or invalid input: one message that
// says what failed and where.
#pragma once

#include <stdexcept>
#include <string>

namespace herd::core {

class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Throws Error("<what>: <ERRNAME> (<strerror>)") for the current errno.
[[noreturn]] void throw_errno(const std::string& what);

}  // namespace herd::core
