// PluginHost: Boost.DLL loading, ABI check, routing; see plugin_host.hpp.
#include "worker/plugin_host.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <boost/core/demangle.hpp>

#include "core/log.hpp"
#include "state/state_replica.hpp"
#include "ws/utf8.hpp"

namespace herd::worker {

// Where there is no broker (herd check, unit tests): empty, and writes fail saying so.
class NoState final : public State {
  public:
    std::optional<nlohmann::json> get(std::string_view) const override { return std::nullopt; }
    const nlohmann::json* find(std::string_view) const override { return nullptr; }
    std::uint64_t version() const override { return 0; }
    bool synced() const override { return false; }
    WatchId watch(std::string_view, WatchCallback) override { return 0; }
    void unwatch(WatchId) override {}
    void set(std::string_view, nlohmann::json, DoneCallback done) override { refuse(done); }
    void erase(std::string_view, DoneCallback done) override { refuse(done); }

  private:
    static void refuse(const DoneCallback& done) {
        // No loop to defer to here: nothing runs a plugin's callback later, so none is called.
        (void)done;
        core::log_warn("a plugin wrote shared state where there is none (herd check)");
    }
};

class PluginContext final : public Context, public Logger {
  public:
    PluginContext(const core::AppConfig& app, const core::PluginConfig& plugin, int worker_id,
                  MessageSink* sink, state::StateReplica* state, PluginLoop& loop, PluginHttp& http,
                  PluginRedis& redis, PluginPostgres& postgres)
        : config_(plugin.config),
          app_(app.name),
          mount_(plugin.mount),
          worker_id_(worker_id),
          sink_(sink),
          state_(state != nullptr ? state->make_view("plugin " + plugin.mount)
                                  : std::make_unique<NoState>()),
          loop_(loop),
          http_(http),
          redis_(redis),
          postgres_(postgres) {}

    const nlohmann::json& config() const override { return config_; }
    Logger& log() override { return *this; }
    int worker_id() const override { return worker_id_; }
    std::string_view app() const override { return app_; }
    std::string_view mount() const override { return mount_; }
    bool send(const nlohmann::json& message) override {
        return sink_ != nullptr && sink_->plugin_message(mount_, message, false);
    }
    bool broadcast(const nlohmann::json& message) override {
        return sink_ != nullptr && sink_->plugin_message(mount_, message, true);
    }
    State& state() override { return *state_; }
    Loop& loop() override { return loop_; }
    HttpClient& http() override { return http_; }
    RedisClient& redis() override { return redis_; }
    PostgresClient& postgres() override { return postgres_; }
    bool publish(std::string_view topic, std::string_view data, bool binary) override {
        if (!binary && !ws::valid_utf8(data))
            throw std::invalid_argument("herd::Context::publish: a text message must be UTF-8");
        return sink_ != nullptr && sink_->ws_publish(mount_, topic, data, binary);
    }

    void write(Level level, std::string_view message) override {
        core::LogLevel l = level == Level::debug  ? core::LogLevel::debug
                           : level == Level::info ? core::LogLevel::info
                           : level == Level::warn ? core::LogLevel::warn
                                                  : core::LogLevel::error;
        if (!core::log_enabled(l)) return;
        std::string line = "plugin " + mount_ + ": ";
        line.append(message);
        core::log_line(l, line);
    }

  private:
    nlohmann::json config_;
    std::string app_;
    std::string mount_;
    int worker_id_;
    MessageSink* sink_;
    std::unique_ptr<State> state_;
    PluginLoop& loop_;
    PluginHttp& http_;
    PluginRedis& redis_;
    PluginPostgres& postgres_;
};

MountedPlugin::MountedPlugin() = default;
MountedPlugin::~MountedPlugin() {
    if (http) http->shutdown();
    if (redis) redis->shutdown();
    if (postgres) postgres->shutdown();
    if (loop) loop->shutdown();  // nothing of the plugin runs once its object is gone
    plugin.reset();  // before the loop, the context and the library, whatever the member order
}

bool mount_matches(std::string_view mount, std::string_view path) {
    if (mount == "/") return true;
    if (!path.starts_with(mount)) return false;
    return path.size() == mount.size() || path[mount.size()] == '/';
}

namespace {

// A client's URL from the plugin's config ("redis": "redis://..."), checked now, before any of
// the plugin's code runs, so that a bad one stops the start naming the key; "" when absent.
std::string client_url(const core::PluginConfig& pc, const char* key, const std::string& who) {
    if (!pc.config.is_object() || !pc.config.contains(key)) return {};
    const nlohmann::json& v = pc.config[key];
    std::string where = who + ": config." + key;
    if (!v.is_string()) throw PluginError(where + " must be a URL string, not " + v.type_name());
    try {
        if (std::string_view(key) == "redis")
            client::parse_redis_url(v.get<std::string>());
        else
            client::check_pg_url(v.get<std::string>());
    } catch (const core::Error& e) {
        throw PluginError(where + ": " + e.what());
    } catch (const ClientError& e) {
        throw PluginError(where + ": " + e.what());
    }
    return v.get<std::string>();
}

std::string octal_mode(mode_t mode) {
    char text[8];
    std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
    return text;
}

// A plugin is code that runs in the server: only root or herd's own user may be able to change
// it, and no folder above it may let anybody replace it. A world-writable folder with the
// sticky bit (/tmp) is safe for a file of ours: others cannot rename or delete it there.
void refuse_unsafe_plugin(const std::string& who, const std::string& path, const struct stat& st) {
    uid_t me = geteuid();
    auto trusted = [me](uid_t uid) { return uid == 0 || uid == me; };
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        throw PluginError(who + ": refusing to load a plugin that " +
                          ((st.st_mode & S_IWOTH) ? "anybody" : "its group") + " may write (mode " +
                          octal_mode(st.st_mode) +
                          "): it is code that runs in the server (chmod go-w " + path + ")");
    if (!trusted(st.st_uid))
        throw PluginError(who + ": refusing to load a plugin owned by uid " +
                          std::to_string(st.st_uid) + ", neither root nor herd's user (uid " +
                          std::to_string(me) + "): its owner could change code that runs here");
    struct stat link {};
    if (lstat(path.c_str(), &link) == 0 && S_ISLNK(link.st_mode) && !trusted(link.st_uid))
        throw PluginError(who + ": refusing to follow a symbolic link owned by uid " +
                          std::to_string(link.st_uid) + ", neither root nor herd's user");
    // The folders above the path as written and above the file it resolves to.
    std::error_code ec;
    std::filesystem::path given = std::filesystem::absolute(path, ec).lexically_normal();
    std::filesystem::path real = std::filesystem::canonical(path, ec);
    for (const std::filesystem::path& p : {given, real}) {
        if (p.empty()) continue;
        for (std::filesystem::path dir = p.parent_path();; dir = dir.parent_path()) {
            struct stat d {};
            if (stat(dir.c_str(), &d) == 0 && (d.st_mode & S_IWOTH) && !(d.st_mode & S_ISVTX))
                throw PluginError(who + ": refusing to load a plugin from folder " + dir.string() +
                                  ", which anybody may write (mode " + octal_mode(d.st_mode) +
                                  ", no sticky bit): anybody could replace the plugin");
            if (dir == dir.root_path() || dir.parent_path() == dir) break;
        }
    }
}

}  // namespace

std::string abi_refusal(std::uint32_t plugin_abi) {
    auto text = [](std::uint32_t major, std::uint32_t minor) {
        return std::to_string(major) + "." + std::to_string(minor);
    };
    std::string here = text(abi_major, abi_minor);
    if (plugin_abi < (1u << 16))  // herd before 5.0 exported one number
        return "built for plugin ABI " + std::to_string(plugin_abi) +
               " (an older herd), this herd speaks ABI " + here +
               ": rebuild it against this herd's SDK";
    std::uint32_t major = plugin_abi >> 16, minor = plugin_abi & 0xffff;
    if (major != abi_major)
        return "built for plugin ABI " + text(major, minor) + ", this herd speaks ABI " + here +
               " (another major version: layouts differ): rebuild it against this herd's SDK";
    if (minor > abi_minor)
        return "built for plugin ABI " + text(major, minor) + ", newer than this herd's " + here +
               " (it may call what this herd lacks): upgrade herd, or rebuild the plugin "
               "against this herd's SDK";
    return {};
}

void open_plugin(MountedPlugin& m, const std::string& path, int fd) {
    std::string who = "plugin \"" + m.mount + "\" (" + path + ")";
    struct stat st {};
    if ((fd >= 0 ? fstat(fd, &st) : stat(path.c_str(), &st)) < 0)
        throw PluginError(who + ": cannot open: " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw PluginError(who + ": not a regular file");
    refuse_unsafe_plugin(who, path, st);
    boost::system::error_code ec;
    // By its path while that still names the generation's file (stack traces and dladdr()
    // then name it); else by the kernel's name for the open file, so that dlopen() reaches
    // the very inode the generation began with (a roll back after a new build was renamed
    // over the path). A rename between this check and dlopen() is not caught.
    std::string load_path = path;
    struct stat now {};
    if (fd >= 0 &&
        (stat(path.c_str(), &now) < 0 || now.st_dev != st.st_dev || now.st_ino != st.st_ino)) {
        load_path = "/proc/self/fd/" + std::to_string(fd);
        core::log_info(
            "{}: the file was replaced since this generation began; loading the "
            "generation's own file ({} in stack traces)",
            who, load_path);
    }
    // RTLD_NOW: an unresolved symbol is a load error now, not a crash at the first request.
    m.library.load(load_path, ec,
                   boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    if (ec) throw PluginError(who + ": cannot load: " + ec.message());
    if (!m.library.has("herd_plugin_abi") || !m.library.has("herd_plugin_create"))
        throw PluginError(
            who +
            ": symbol herd_plugin_abi or herd_plugin_create not found: not a herd plugin "
            "(export one with HERD_PLUGIN(YourClass))");
    std::string refusal = abi_refusal(m.library.get<const std::uint32_t>("herd_plugin_abi"));
    if (!refusal.empty()) throw PluginError(who + ": " + refusal);
    auto& factory = m.library.get_alias<PluginFactory>("herd_plugin_create");
    try {
        m.plugin = factory();
    } catch (...) {
        throw PluginError(who + ": constructor threw " + core::describe_current_exception());
    }
    if (!m.plugin) throw PluginError(who + ": factory returned no plugin");
    m.path = path;
}

PluginHost::~PluginHost() {
    unload();
}

void PluginHost::unload() {
    // Every loop stops before any plugin object dies (a coroutine of one plugin may be
    // cancelled into code that uses another); then plugins are destroyed in reverse order of
    // construction, each before its library.
    for (auto it = config_order_.rbegin(); it != config_order_.rend(); ++it) {
        if ((*it)->http) (*it)->http->shutdown();
        if ((*it)->redis) (*it)->redis->shutdown();
        if ((*it)->postgres) (*it)->postgres->shutdown();
        if ((*it)->loop) (*it)->loop->shutdown();
    }
    while (!config_order_.empty()) {
        MountedPlugin* m = config_order_.back();
        config_order_.pop_back();
        m->plugin.reset();
    }
    plugins_.clear();  // loops, contexts, then the libraries
}

void PluginHost::load(const core::AppConfig& app, int worker_id, PluginServices services) {
    core::EventLoop* loop = services.loop;
    if (loop == nullptr) {
        if (!own_loop_) own_loop_ = std::make_unique<core::EventLoop>();
        loop = own_loop_.get();
    }
    loop_ = loop;
    failed_ = std::move(services.failed);
    if (!failed_) failed_ = [](const std::string& what) { core::log_error("{}", what); };
    for (std::size_t i = 0; i < app.plugins.size(); ++i) {
        const core::PluginConfig& pc = app.plugins[i];
        auto m = std::make_unique<MountedPlugin>();
        m->mount = pc.mount;
        m->who = "plugin \"" + pc.mount + "\" (" + pc.path + ")";
        m->failed = &failed_;
        m->loop = std::make_unique<PluginLoop>(*loop, services.pool, m->who, &failed_);
        m->http = std::make_unique<PluginHttp>(
            [this]() -> client::HttpClient& { return shared_http(); }, *m->loop);
        std::string redis_url = client_url(pc, "redis", m->who);
        m->redis = std::make_unique<PluginRedis>(
            [this, redis_url, who = m->who]() -> client::RedisClient& {
                if (redis_url.empty())
                    throw ClientError(ClientError::Kind::invalid,
                                      who +
                                          " has no Redis URL: set \"redis\" in its config "
                                          "(\"redis://127.0.0.1:6379/0\")");
                return shared_redis(redis_url);
            },
            *m->loop);
        std::string pg_url = client_url(pc, "postgres", m->who);
        m->postgres = std::make_unique<PluginPostgres>(
            [this, pg_url, who = m->who]() -> client::PgClient& {
                if (pg_url.empty())
                    throw ClientError(ClientError::Kind::invalid,
                                      who +
                                          " has no PostgreSQL URL: set \"postgres\" in its "
                                          "config (\"postgresql://user@127.0.0.1:5432/db\")");
                return shared_postgres(pg_url);
            },
            *m->loop);
        m->context =
            std::make_unique<PluginContext>(app, pc, worker_id, services.sink, services.state,
                                            *m->loop, *m->http, *m->redis, *m->postgres);
        open_plugin(*m, pc.path, i < services.files.size() ? services.files[i] : -1);
        config_order_.push_back(m.get());
        plugins_.push_back(std::move(m));
    }
    std::stable_sort(plugins_.begin(), plugins_.end(), [](const auto& a, const auto& b) {
        return a->mount.size() > b->mount.size();
    });
}

void PluginHost::start() {
    for (MountedPlugin* m : config_order_) {
        try {
            m->plugin->on_start(*m->context);
        } catch (...) {
            throw PluginError("plugin \"" + m->mount + "\" (" + m->path + "): on_start threw " +
                              core::describe_current_exception());
        }
        m->started = true;
    }
}

client::HttpClient& PluginHost::shared_http() {
    if (!http_) http_ = std::make_unique<client::HttpClient>(*loop_);
    return *http_;
}

client::RedisClient& PluginHost::shared_redis(const std::string& url) {
    auto& c = redis_[url];
    if (!c) c = std::make_unique<client::RedisClient>(*loop_, url);
    return *c;
}

client::PgClient& PluginHost::shared_postgres(const std::string& url) {
    auto& c = postgres_[url];
    if (!c) {
        client::PgClient::Options options;
        options.url = url;
        c = std::make_unique<client::PgClient>(*loop_, std::move(options));
    }
    return *c;
}

core::ClientStatsMap PluginHost::client_stats() const {
    core::ClientStatsMap m;
    if (http_) m["http"] = http_->stats();
    for (const auto& [url, c] : redis_) m["redis"] += c->stats();
    for (const auto& [url, c] : postgres_) m["postgres"] += c->stats();
    return m;
}

void PluginHost::stop() {
    for (auto it = config_order_.rbegin(); it != config_order_.rend(); ++it) {
        MountedPlugin* m = *it;
        m->http->shutdown();  // its exchanges and commands, then what it registered on its loop
        m->redis->shutdown();
        m->postgres->shutdown();
        m->loop->shutdown();  // also for a plugin whose on_start threw after registering
        if (!m->started) continue;
        m->started = false;
        try {
            m->plugin->on_stop();
        } catch (...) {
            core::log_error("plugin \"{}\" ({}): on_stop threw {}", m->mount, m->path,
                            core::describe_current_exception());
        }
    }
}

bool PluginHost::deliver(std::string_view mount, const nlohmann::json& message, int from_worker) {
    for (MountedPlugin* m : config_order_) {
        if (m->mount != mount || !m->started) continue;
        core::guarded(failed_, m->who, "in on_message",
                      [&] { m->plugin->on_message(message, from_worker); });
        return true;
    }
    return false;
}

PluginLoop::Counts PluginHost::loop_counts() const {
    PluginLoop::Counts sum;
    for (const auto& m : plugins_) {
        PluginLoop::Counts c = m->loop->counts();
        sum.timers += c.timers;
        sum.watches += c.watches;
        sum.posts += c.posts;
        sum.jobs += c.jobs;
        sum.tasks += c.tasks;
    }
    return sum;
}

MountedPlugin* PluginHost::route(std::string_view path) {
    for (auto& m : plugins_)
        if (mount_matches(m->mount, path)) return m.get();
    return nullptr;
}

}  // namespace herd::worker
