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
    std::vector<std::string> keys;
    auto check = [&](bool same, const char* key) {
        if (!same) keys.push_back(key);
    };
    check(a.listen == b.listen, "listen");
    check(a.workers == b.workers, "workers");
    check(a.balance == b.balance, "balance");
    check(a.plugins == b.plugins, "plugins");
    check(a.env == b.env, "env");
    check(a.drain_timeout_ms == b.drain_timeout_ms, "drain_timeout_ms");
    check(a.max_body_bytes == b.max_body_bytes, "max_body_bytes");
    check(a.max_header_bytes == b.max_header_bytes, "max_header_bytes");
    check(a.header_timeout_ms == b.header_timeout_ms, "header_timeout_ms");
    check(a.keepalive_timeout_ms == b.keepalive_timeout_ms, "keepalive_timeout_ms");
    check(a.backlog == b.backlog, "backlog");
    check(a.watchdog_ms == b.watchdog_ms, "watchdog_ms");
    check(a.start_timeout_ms == b.start_timeout_ms, "start_timeout_ms");
    check(a.restart_backoff_ms == b.restart_backoff_ms, "restart_backoff_ms");
    check(a.restart_backoff_max_ms == b.restart_backoff_max_ms, "restart_backoff_max_ms");
    check(a.healthy_after_ms == b.healthy_after_ms, "healthy_after_ms");
    check(a.max_requests == b.max_requests, "max_requests");
    check(a.max_rss_mb == b.max_rss_mb, "max_rss_mb");
    check(a.access_log == b.access_log, "access_log");
    std::string out;
    for (const auto& k : keys) out += (out.empty() ? "" : ", ") + k;
    return out.empty() ? "settings" : out;
}

}  // namespace herd::master
