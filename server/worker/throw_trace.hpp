// Where the exception being handled was thrown. herd's executable exports its own
// __cxa_throw, which every throw in herd and in the plugins it loads resolves to: it records
// the call stack, then hands over to the C++ runtime's.
#pragma once

#include <string>

namespace herd::worker {

// The call stack of the most recent throw in this process, one frame per line, or a note
// saying why there is none (a sanitizer build, which intercepts __cxa_throw itself).
std::string last_throw_trace();

}  // namespace herd::worker
