// The version this executable was built as; see build_info.hpp.
#include "build_info.hpp"

#include <csignal>

#ifndef HERD_VERSION
#error "HERD_VERSION must be set by the build"
#endif

namespace herd::build {

std::string_view version() {
    return HERD_VERSION;
}

void fault_point([[maybe_unused]] std::string_view point) {
#ifdef HERD_FAULT_POINT
    // The upgrade tests' build that crashes where it is told to, as a real crash would.
    if (point == HERD_FAULT_POINT) std::raise(SIGSEGV);
#endif
}

}  // namespace herd::build
