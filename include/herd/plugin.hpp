// The plugin interface and HERD_PLUGIN, the one macro that exports a plugin from a .so.
#pragma once

#include <cstdint>
#include <memory>

#include <boost/config.hpp>
#include <boost/dll/alias.hpp>

#include <stdexcept>

#include "herd/abi.hpp"
#include "herd/context.hpp"
#include "herd/http.hpp"
#include "herd/responder.hpp"
#include "herd/task.hpp"

namespace herd {

// A plugin object lives in one worker from on_start to on_stop, and runs in the worker's
// event loop: concurrency inside a worker comes from not blocking it (the process model
// gives cores and crash isolation). A handler answers in one of three styles:
//
//   - synchronous: override handle(request, response), fill the response, return;
//   - callbacks: override respond(responder), keep the Responder, answer it later from a
//     timer, a watched descriptor or a client's callback (see responder.hpp);
//   - coroutines: derive from CoroutinePlugin and override serve(), a herd::Task<>.
//
// One policy for every entry into plugin code at run time (handle, respond, a resumed
// coroutine, a loop callback, on_message, a state callback): an exception escaping it (but
// herd::Cancelled, which ends cancelled work) is a plugin failure. The request in hand, if
// any, gets a 500; the worker logs the exception with where it was thrown, reports "fatal",
// stops accepting, and leaves once its replacement is ready, finishing what it has in flight
// (see the README's failure model).
class Plugin {
  public:
    virtual ~Plugin() = default;
    // Called once after loading, before the worker takes connections. Throwing here is a
    // start-up failure: the worker never serves. The Context outlives the plugin.
    virtual void on_start(Context& ctx) { (void)ctx; }
    // The synchronous handler: the response is sent when it returns.
    virtual void handle(const Request& request, Response& response) {
        (void)request;
        (void)response;
        throw std::logic_error("this plugin overrides neither handle() nor respond()");
    }
    // What the worker calls for each request routed to the plugin. The default runs handle()
    // and sends at once; override it to answer later.
    virtual void respond(Responder responder) {
        handle(responder.request(), responder.response());
        responder.send();
    }
    // A message broadcast by this plugin in a worker of the app (Context::broadcast);
    // from_worker is the sender's worker_id().
    virtual void on_message(const nlohmann::json& message, int from_worker) {
        (void)message;
        (void)from_worker;
    }
    // Called when the worker stops gracefully, after its last request, once everything the
    // plugin registered on the loop is cancelled and removed.
    virtual void on_stop() {}
};

// A plugin whose handler is a coroutine: serve() gets the request's responder (valid until
// the task ends), may co_await (Context::loop()'s awaitables, herd's clients), and the
// response is sent when it returns, unless it sent or streamed it itself.
class CoroutinePlugin : public Plugin {
  public:
    virtual Task<> serve(Responder& responder) = 0;
    void respond(Responder responder) override {
        serve_coroutine(std::move(responder), [this](Responder& r) { return serve(r); });
    }
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
