// The version this executable was built as; see build_info.hpp.
#include "build_info.hpp"

#include <cstdlib>

#ifndef HERD_VERSION
#error "HERD_VERSION must be set by the build"
#endif

namespace herd::build {

std::string_view version() {
    return HERD_VERSION;
}

void fault_point([[maybe_unused]] std::string_view point) {
#ifdef HERD_FAULT_POINT
    // The upgrade tests' build that crashes where it is told to, as a failed assertion would
    // (SIGABRT: a sanitizer build reports a SIGSEGV as its own finding).
    if (point == HERD_FAULT_POINT) std::abort();
#endif
}

}  // namespace herd::build
