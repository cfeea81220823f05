// Recording the stack of every throw; see throw_trace.hpp. This file must not include
// <cxxabi.h>: its declaration of __cxa_throw would clash with the definition below.
#include "worker/throw_trace.hpp"

#include <dlfcn.h>
#include <execinfo.h>

#include <cstdlib>
#include <typeinfo>

#if !defined(__SANITIZE_ADDRESS__)
namespace {
void* g_frames[64];
int g_depth = 0;
}  // namespace

// Exported from the executable (meson.build's dynamic list), so plugins' throws come here.
extern "C" [[noreturn]] void __cxa_throw(void* object, std::type_info* type,
                                         void (*destroy)(void*)) {
    g_depth = backtrace(g_frames, 64);
    using Real = void (*)(void*, std::type_info*, void (*)(void*));
    static Real real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "__cxa_throw"));
    if (real == nullptr) std::abort();  // no C++ runtime below us: nothing sane to do
    real(object, type, destroy);
    __builtin_unreachable();
}
#endif

namespace herd::worker {

std::string last_throw_trace() {
#if defined(__SANITIZE_ADDRESS__)
    return "  (no throw stack in a sanitizer build)";
#else
    if (g_depth <= 1) return "  (no throw stack recorded)";
    char** symbols = backtrace_symbols(g_frames, g_depth);
    std::string out;
    // Frame 0 is __cxa_throw above.
    for (int i = 1; i < g_depth; ++i) {
        out += "  #" + std::to_string(i - 1) + " ";
        out += symbols != nullptr ? symbols[i] : "?";
        if (i + 1 < g_depth) out += "\n";
    }
    std::free(symbols);
    return out;
#endif
}

}  // namespace herd::worker
