// Reload plan helpers; see reload_plan.hpp.
#include "master/reload_plan.hpp"

#include <sys/stat.h>

#include <fmt/format.h>

#include <algorithm>

namespace herd::master {

bool ReloadPlan::any_change() const {
    return std::any_of(apps.begin(), apps.end(),
                       [](const AppChange& a) { return a.kind != AppChange::Kind::unchanged; });
}

std::string plugin_stamp(const core::AppConfig& app) {
    std::string stamp;
    for (const core::PluginConfig& p : app.plugins) {
        struct stat st {};
        stamp += p.path;
        if (::stat(p.path.c_str(), &st) < 0) {
            stamp += " missing;";
            continue;
        }
        // fmt, not a chain of `+`: GCC 12 at -O3 reports a false -Wrestrict in the chain.
        stamp += fmt::format(" {}:{} {} {}.{};", st.st_dev, st.st_ino, st.st_size,
                             st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    }
    return stamp;
}

std::string changed_keys(const core::AppConfig& a, const core::AppConfig& b) {
    std::string out;
    for (const core::AppKey& k : core::app_keys())
        if (core::app_key_differs(k, a, b)) out += (out.empty() ? "" : ", ") + std::string(k.name);
    return out.empty() ? "settings" : out;
}

}  // namespace herd::master
