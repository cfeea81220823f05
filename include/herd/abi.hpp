// The plugin ABI version: the one place its number is written (meson.build reads it from
// here for herd-plugin.pc).
//
// A plugin exports the version it was built against (HERD_PLUGIN does it); the worker reads
// it before running any of the plugin's code and loads the plugin only when
//   - the majors are equal, and
//   - the plugin's minor is not above the worker's (it may call only what the worker has).
//
// The rules for changing include/herd/:
//   - minor: something is added that old plugins do not see. A new virtual function at the
//     end of a class the worker implements (Context, Loop, State, Exchange, Logger); a new
//     inline function or a new type. Old plugins keep loading. A new virtual function of
//     Plugin (which plugins implement) is called by the worker only for plugins built with
//     that minor or later (PluginHost checks), so it is a minor change too.
//   - major (minor back to 0): a layout or a meaning changes. Members added to or removed
//     from a class whose objects cross between worker and plugin (Request, Response,
//     Responder, Task's promise, Function, Scope, CancelHook), a virtual function removed or
//     reordered, a signature changed. Plugins built before are refused, with a message
//     naming both versions: rebuild them.
#pragma once

#include <cstdint>

namespace herd {

inline constexpr std::uint32_t abi_major = 5;
inline constexpr std::uint32_t abi_minor = 3;  // 5.1: Context::http(); 5.2: the Redis and
                                               // PostgreSQL clients, ClientError::code();
                                               // 5.3: WebSockets, Context::publish()
// What a plugin exports as herd_plugin_abi. Before 5.0 herd exported a single number (1 to
// 4): a value below 1 << 16 is one of those.
inline constexpr std::uint32_t abi_version = (abi_major << 16) | abi_minor;

}  // namespace herd
