// libFuzzer target: the config parser (core::parse_config_text), text in, a Config or a
// ConfigError out. Any other exception, a crash, or a Config that breaks the documented rules
// is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "core/config.hpp"

namespace {

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "fuzz_config: invariant violated: %s\n", what);
    std::abort();
}

#define CHECK(cond)                   \
    do {                              \
        if (!(cond)) violated(#cond); \
    } while (0)

void check(const herd::core::Config& c) {
    CHECK(!c.apps.empty());
    std::set<std::string> names;
    for (const auto& a : c.apps) {
        CHECK(!a.name.empty() && a.name.size() <= 64);
        CHECK(names.insert(a.name).second);
        CHECK(a.workers >= 1 && a.workers <= 1024);
        CHECK(!a.plugins.empty());
        for (const auto& [k, v] : a.env)
            CHECK(!k.empty() && k.find_first_of(std::string_view("=\0", 2)) == std::string::npos &&
                  v.find('\0') == std::string::npos);
        for (const auto& p : a.plugins) {
            CHECK(p.path.find('\0') == std::string::npos);  // dlopen would load another file
            CHECK(p.mount.find('\0') == std::string::npos);
            CHECK(p.mount.starts_with("/"));
            CHECK(!p.path.empty());
            CHECK(p.path.starts_with("/"));  // resolved against the (absolute) base dir
            CHECK(p.config.is_object());
        }
        CHECK(a.max_header_bytes > 0);
        CHECK(a.header_timeout_ms > 0);
        CHECK(a.backlog > 0);
        CHECK(a.balance == "shared" || a.balance == "reuseport" || a.balance == "round-robin" ||
              a.balance == "least-conn");
    }
    CHECK(c.control_path.find('\0') == std::string::npos);
    CHECK(c.log_level == "debug" || c.log_level == "info" || c.log_level == "warn" ||
          c.log_level == "error");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    try {
        check(herd::core::parse_config_text(text, "fuzz.json", "/etc/herd"));
    } catch (const herd::core::ConfigError& e) {
        std::string what = e.what();
        CHECK(what.starts_with("fuzz.json: "));  // every error names its source
        // One log line: no control character, so nothing splits or ends it early.
        // (nlohmann's "last read: '...'" shows DEL and bytes >= 0x80 raw, which is harmless.)
        for (unsigned char ch : what) CHECK(ch >= 0x20);
    }
    return 0;
}
