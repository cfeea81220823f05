// PluginHost: loads an app's plugins with Boost.DLL after the fork, checks their ABI before
// running any of their code, and routes a path to the plugin with the longest mount.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/dll/shared_library.hpp>

#include "core/config.hpp"
#include "core/error.hpp"
#include "herd/plugin.hpp"

namespace herd::worker {

// Says which plugin (mount and file) failed and why.
class PluginError : public core::Error {
  public:
    using core::Error::Error;
};

class PluginContext;
class StateReplica;

// Where plugins' messages go: the worker's channel to the master.
class MessageSink {
  public:
    virtual ~MessageSink() = default;
    // broadcast: to the plugin at `mount` in every worker of the app; else to the master.
    virtual bool plugin_message(std::string_view mount, const nlohmann::json& message,
                                bool broadcast) = 0;
};

struct MountedPlugin {
    MountedPlugin();
    ~MountedPlugin();  // out of line: PluginContext is complete only in plugin_host.cpp
    // Declaration order is destruction order reversed: the plugin object dies first, then
    // its context, and only then is the library that holds its code unloaded.
    boost::dll::shared_library library;
    std::unique_ptr<PluginContext> context;
    std::unique_ptr<Plugin> plugin;
    std::string mount;
    std::string path;
    bool started = false;
};

class PluginHost {
  public:
    PluginHost() = default;
    PluginHost(const PluginHost&) = delete;
    PluginHost& operator=(const PluginHost&) = delete;
    ~PluginHost();

    // Loads every plugin of the app and constructs it. Throws PluginError.
    // sink may be null (herd check): messages then go nowhere and send() returns false.
    // `state` gives each plugin its view of the shared state; without one (herd check) the
    // state is empty and writes fail.
    void load(const core::AppConfig& app, int worker_id, MessageSink* sink = nullptr,
              StateReplica* state = nullptr);
    // on_start for each, in config order. Throws PluginError naming the plugin.
    void start();
    // on_stop for each started plugin, in reverse order; exceptions are logged, not thrown.
    void stop();

    // Hands a broadcast to the plugin mounted at `mount`; false when there is none.
    bool deliver(std::string_view mount, const nlohmann::json& message, int from_worker);

    // The plugin with the longest mount that is a path-segment prefix of `path`, or null.
    MountedPlugin* route(std::string_view path);
    std::size_t size() const { return plugins_.size(); }

  private:
    std::vector<std::unique_ptr<MountedPlugin>> plugins_;  // sorted by mount length, longest first
    std::vector<MountedPlugin*> config_order_;
};

// Whether mount ("/api") covers path ("/api", "/api/x", but not "/apix").
bool mount_matches(std::string_view mount, std::string_view path);

// "std::runtime_error: boom" for the exception being handled (call inside a catch block).
std::string describe_current_exception();

// Loads a plugin file, checks it and constructs its object; used by load() and `herd check`.
void open_plugin(MountedPlugin& m, const std::string& path);

}  // namespace herd::worker
