// What a herd binary knows about its own build. Defined in build_info.cpp, compiled into each
// executable with the version it was built as (the unit tests and the upgrade tests' second
// build link their own copy), so that the server library does not depend on it.
#pragma once

#include <string_view>

namespace herd::build {

// "0.1.0", or with meson's -Dversion_suffix: "0.1.0-rc1".
std::string_view version();

// A fault-injection point for the upgrade tests' "crashing" build: does nothing in herd
// itself. `point` names where the new master is ("inherited": it has read the sockets).
void fault_point(std::string_view point);

}  // namespace herd::build
