// The plugin interface and HERD_PLUGIN, the one macro that exports a plugin from a .so.
#pragma once

#include <cstdint>
#include <memory>

#include <boost/config.hpp>
#include <boost/dll/alias.hpp>

#include "herd/context.hpp"
#include "herd/http.hpp"

namespace herd {

// Bumped whenever any type in include/herd/ changes layout or virtual functions; the worker
// refuses a plugin built against another version before running any of its code.
inline constexpr std::uint32_t abi_version = 4;

// A plugin object lives in one worker from on_start to on_stop. Handlers are synchronous:
// the process model, not threads, gives concurrency. An exception escaping handle() turns
// the request into a 500 and is logged with its type and message.
class Plugin {
  public:
    virtual ~Plugin() = default;
    // Called once after loading, before the worker takes connections. Throwing here is a
    // start-up failure: the worker never serves. The Context outlives the plugin.
    virtual void on_start(Context& ctx) { (void)ctx; }
    virtual void handle(const Request& request, Response& response) = 0;
    // A message broadcast by this plugin in a worker of the app (Context::broadcast);
    // from_worker is the sender's worker_id().
    virtual void on_message(const nlohmann::json& message, int from_worker) {
        (void)message;
        (void)from_worker;
    }
    // Called when the worker stops gracefully, after its last request.
    virtual void on_stop() {}
};

using PluginFactory = std::unique_ptr<Plugin>();

}  // namespace herd

// Exports PluginClass (default-constructible, derived from herd::Plugin) as this library's
// plugin: a Boost.DLL alias "herd_plugin_create" for its factory and the ABI version symbol
// "herd_plugin_abi" that the worker checks first.
#define HERD_PLUGIN(PluginClass)                              \
    namespace {                                               \
    std::unique_ptr<::herd::Plugin> herd_plugin_factory_() {  \
        return std::make_unique<PluginClass>();               \
    }                                                         \
    }                                                         \
    BOOST_DLL_ALIAS(herd_plugin_factory_, herd_plugin_create) \
    extern "C" BOOST_SYMBOL_EXPORT const std::uint32_t herd_plugin_abi = ::herd::abi_version;
