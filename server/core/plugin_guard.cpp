// The guard around plugin code; see plugin_guard.hpp.
#include "core/plugin_guard.hpp"

#include <boost/core/demangle.hpp>

#include "core/log.hpp"

namespace herd::core {

std::string describe_current_exception() {
    try {
        throw;
    } catch (const std::exception& e) {
        return boost::core::demangle(typeid(e).name()) + ": " + e.what();
    } catch (...) {
        return "an exception that is not a std::exception";
    }
}

bool report_plugin_error(const FailureHandler& failed, std::string_view who, std::string_view entry,
                         std::exception_ptr error) noexcept {
    if (!error) return false;
    std::string description;
    try {
        std::rethrow_exception(error);
    } catch (const herd::Cancelled&) {
        return false;
    } catch (...) {
        description =
            std::string(who) + " threw " + describe_current_exception() + " " + std::string(entry);
    }
    if (failed)
        failed(description);
    else
        core::log_error("{}", description);
    return true;
}

}  // namespace herd::core
