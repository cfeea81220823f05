// The herd command line: run a master, or check a config.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "broker/state_config.hpp"
#include "build_info.hpp"
#include "core/config.hpp"
#include "core/json_text.hpp"
#include "core/log.hpp"
#include "master/control.hpp"
#include "master/inherit.hpp"
#include "master/master.hpp"
#include "master/spawn.hpp"
#include "top.hpp"
#include "worker/plugin_host.hpp"

namespace {

constexpr int exit_usage = 2;

const char* usage =
    "usage: herd run CONFIG      serve the apps of CONFIG (foreground; TERM/INT stop gracefully)\n"
    "       herd check CONFIG    validate CONFIG and load its plugins in a throwaway process\n"
    "       herd status [--json] (-c CONFIG | -s SOCKET)   what the running master's workers do\n"
    "       herd reload (-c CONFIG | -s SOCKET)            read CONFIG again and roll the apps\n"
    "                                                    that changed (like SIGHUP; waits)\n"
    "       herd scale APP N (-c CONFIG | -s SOCKET)       run N workers for APP\n"
    "       herd state get KEY | set KEY JSON | del KEY | list [PREFIX] (-c CONFIG | -s SOCKET)\n"
    "                                                    read and write the shared state\n"
    "       herd stop [--now] (-c CONFIG | -s SOCKET)      graceful stop (--now: at once)\n"
    "       herd upgrade [--binary PATH] (-c CONFIG | -s SOCKET)\n"
    "                                                    start the new herd binary (default: the\n"
    "                                                    running one's path) on the same sockets;\n"
    "                                                    it takes over once ready (like SIGUSR2)\n"
    "       herd events [--json] (-c CONFIG | -s SOCKET)   stream what happens to workers, apps,\n"
    "                                                    reloads and the broker, one per line\n"
    "       herd top (-c CONFIG | -s SOCKET)               the apps and workers live in the\n"
    "                                                    terminal, every second (q quits)\n"
    "       herd version\n";

// The config, or nothing after printing why not (and putting it in *problem).
std::optional<herd::core::Config> load_or_report(const std::string& file,
                                                 std::string* problem = nullptr) {
    try {
        return herd::core::load_config(file);
    } catch (const herd::core::Error& e) {
        std::fprintf(stderr, "herd: %s\n", e.what());
        if (problem != nullptr) *problem = e.what();
        return std::nullopt;
    }
}

// The "state" section, validated by the broker's parser, or nothing after printing why not.
std::optional<herd::broker::StateConfig> state_or_report(const herd::core::Config& c,
                                                         std::string* problem = nullptr) {
    try {
        if (c.state.is_null()) return herd::broker::default_state_config(c.state_default_path);
        return herd::broker::parse_state_config(c.state, c.dir, "state", c.state_default_path);
    } catch (const herd::core::Error& e) {
        std::fprintf(stderr, "herd: %s: %s\n", c.file.c_str(), e.what());
        if (problem != nullptr) *problem = c.file + ": " + e.what();
        return std::nullopt;
    }
}

int cmd_run(const std::string& file) {
    // Sockets from the master this one upgrades from, or from systemd: taken first, so that
    // a refused config can be reported to the old master, which then serves on.
    std::optional<herd::master::Inherited> inherited;
    try {
        inherited = herd::master::take_inherited();
    } catch (const herd::core::Error& e) {
        std::fprintf(stderr, "herd: %s\n", e.what());
        return exit_usage;
    }
    std::string problem;
    auto refused = [&] {
        if (inherited && inherited->upgrade())
            herd::master::report_upgrade_failure(inherited->channel.get(),
                                                 "the config is refused: " + problem);
        return exit_usage;
    };
    std::optional<herd::core::Config> loaded = load_or_report(file, &problem);
    if (!loaded) return refused();
    std::optional<herd::broker::StateConfig> state = state_or_report(*loaded, &problem);
    if (!state) return refused();
    herd::core::Config config = std::move(*loaded);
    herd::core::set_log_level(herd::core::parse_log_level(config.log_level));
    try {
        herd::master::Master master(std::move(config), std::move(*state), std::move(inherited));
        return master.run();
    } catch (const std::exception& e) {
        herd::core::log_error("{}", e.what());
        return 1;
    }
}

// Loads every plugin of every app and runs on_start/on_stop, in a child so that nothing a
// plugin does at load time touches this process.
int cmd_check(const std::string& file) {
    std::optional<herd::core::Config> loaded = load_or_report(file);
    if (!loaded) return exit_usage;
    if (!state_or_report(*loaded)) return exit_usage;
    herd::core::Config config = std::move(*loaded);
    herd::core::set_log_identity("check");
    herd::core::set_log_level(herd::core::LogLevel::warn);
    // The plugins are loaded as the workers would load them: as "user" when it is set, and
    // refused as root unless "allow_root" says so (the owner checks depend on who loads).
    // Not as root, "user" cannot be taken: check as ourselves, and say so.
    herd::master::Credentials credentials;
    if (geteuid() != 0 && !config.user.empty()) {
        std::fprintf(stderr,
                     "herd: %s: not root, so the plugins are loaded as uid %u, not as user "
                     "\"%s\" (herd run, started as root, switches to it)\n",
                     config.file.c_str(), static_cast<unsigned>(geteuid()), config.user.c_str());
    } else {
        try {
            credentials =
                herd::master::resolve_credentials(config.user, config.group, config.allow_root);
        } catch (const herd::core::Error& e) {
            std::fprintf(stderr, "herd: %s: %s\n", config.file.c_str(), e.what());
            return 1;
        }
    }
    std::size_t plugins = 0;
    for (const auto& app : config.apps) plugins += app.plugins.size();
    pid_t pid = herd::master::spawn_process({}, [&] {
        herd::master::become(credentials);
        int failures = 0;
        for (const auto& app : config.apps) {
            herd::worker::PluginHost host;
            try {
                host.load(app, 0);
                host.start();
                host.stop();
            } catch (const std::exception& e) {
                std::fprintf(stderr, "herd: app \"%s\": %s\n", app.name.c_str(), e.what());
                ++failures;
            }
        }
        std::fflush(nullptr);
        _exit(failures == 0 ? 0 : 1);
    });
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            std::perror("herd: waitpid");
            return 1;
        }
    }
    if (WIFSIGNALED(status)) {
        std::fprintf(stderr,
                     "herd: %s: loading the plugins crashed the check process (signal %d, %s)\n",
                     config.file.c_str(), WTERMSIG(status), strsignal(WTERMSIG(status)));
        return 1;
    }
    if (WEXITSTATUS(status) != 0) return 1;
    std::printf("herd: %s: OK (%zu app(s), %zu plugin(s) loaded and started)\n",
                config.file.c_str(), config.apps.size(), plugins);
    return 0;
}

// herd events: one line per event until the master stops (exit 0) or the stream breaks.
int follow_events(const std::string& socket, const nlohmann::json& request, bool json) {
    bool first = true;
    int rc = 0;
    try {
        herd::master::control_stream(socket, request, [&](const nlohmann::json& line) {
            if (first) {
                first = false;
                if (!line.value("ok", false)) {
                    std::fprintf(stderr, "herd events: %s\n",
                                 line.value("error", std::string("?")).c_str());
                    rc = 1;
                    return false;
                }
                if (!json) return true;  // in JSON, the first event: from here none is missed
            }
            if (json) {
                std::printf("%s\n", line.dump().c_str());
            } else {
                // "TIME EVENT key=value ...": strings bare unless they hold a space.
                std::string text = line.value("time", "") + " " + line.value("event", "");
                for (const auto& [key, value] : line.items()) {
                    if (key == "time" || key == "event") continue;
                    std::string v = value.is_string() ? value.get<std::string>() : value.dump();
                    if (value.is_string() && (v.empty() || v.find(' ') != std::string::npos))
                        v = value.dump();
                    text += " " + key + "=" + v;
                }
                std::printf("%s\n", text.c_str());
            }
            std::fflush(stdout);
            return true;
        });
    } catch (const std::exception& e) {
        std::fprintf(stderr, "herd: %s\n", e.what());
        return 1;
    }
    if (first) {
        std::fprintf(stderr, "herd events: the master closed the connection without an answer\n");
        return 1;
    }
    return rc;
}

// herd status / reload / scale / stop: talks to a running master over its control socket.
int cmd_control(std::string_view cmd, int argc, char** argv) {
    std::string socket, config, binary;
    bool json = false, now = false;
    std::vector<std::string> positional;
    for (int i = 2; i < argc; ++i) {
        std::string_view a = argv[i];
        if ((a == "-c" || a == "-s") && i + 1 < argc)
            (a == "-c" ? config : socket) = argv[++i];
        else if (a == "--json" && (cmd == "status" || cmd == "events"))
            json = true;
        else if (a == "--now" && cmd == "stop")
            now = true;
        else if (a == "--binary" && cmd == "upgrade" && i + 1 < argc)
            binary = argv[++i];
        else if (((cmd == "scale" && positional.size() < 2) ||
                  (cmd == "state" && positional.size() < 3)) &&
                 (!a.starts_with("-") || positional.size() == 2))
            positional.emplace_back(a);
        else {
            std::fprintf(stderr, "herd %s: unexpected argument \"%s\"\n%s",
                         std::string(cmd).c_str(), argv[i], usage);
            return exit_usage;
        }
    }
    if (socket.empty() == config.empty()) {
        std::fprintf(stderr, "herd %s: give the master's config (-c) or its control socket (-s)\n",
                     std::string(cmd).c_str());
        return exit_usage;
    }
    nlohmann::json request = {{"cmd", std::string(cmd)}};
    if (cmd == "stop") request["now"] = now;
    if (cmd == "upgrade" && !binary.empty()) {
        // The master executes it from its own folder: give it the whole path.
        std::error_code ec;
        std::filesystem::path absolute = std::filesystem::absolute(binary, ec);
        request["binary"] = ec ? binary : absolute.lexically_normal().string();
    }
    if (cmd == "scale") {
        char* end = nullptr;
        long n = positional.size() == 2 ? std::strtol(positional[1].c_str(), &end, 10) : 0;
        if (positional.size() != 2 || end == positional[1].c_str() || *end != '\0' || n < 1 ||
            n > 1024) {
            std::fprintf(stderr, "herd scale: give an app name and a worker count (1 or more)\n%s",
                         usage);
            return exit_usage;
        }
        request["app"] = positional[0];
        request["workers"] = n;
    }
    if (cmd == "state") {
        std::string op = positional.empty() ? "" : positional[0];
        std::size_t want = op == "get" || op == "del" ? 2 : op == "set" ? 3 : op == "list" ? 1 : 0;
        if (want == 0 || positional.size() < want ||
            positional.size() > (op == "list" ? 2 : want)) {
            std::fprintf(stderr, "herd state: get KEY, set KEY JSON, del KEY or list [PREFIX]\n%s",
                         usage);
            return exit_usage;
        }
        request["op"] = op;
        if (op == "list")
            request["prefix"] = positional.size() == 2 ? positional[1] : "";
        else
            request["key"] = positional[1];
        if (op == "set") {
            nlohmann::json value;
            std::string problem;
            try {
                if (!herd::core::parse_json_text(positional[2], value, problem)) {
                    std::fprintf(stderr, "herd state set: the value is refused: %s\n",
                                 problem.c_str());
                    return exit_usage;
                }
            } catch (const nlohmann::json::exception&) {
                std::fprintf(stderr, "herd state set: the value is not JSON: %s\n",
                             positional[2].c_str());
                return exit_usage;
            }
            request["value"] = value;
        }
    }
    if (socket.empty()) {
        // A config being edited still finds its master; a reload is then refused by the
        // master, which reads the file itself and says what is wrong.
        std::string problem;
        socket = herd::core::control_path_of(config, &problem);
        if (!problem.empty() && cmd != "reload")
            std::fprintf(stderr, "herd: warning: %s\nherd: trying the control socket %s\n",
                         problem.c_str(), socket.c_str());
    }
    if (cmd == "events") return follow_events(socket, request, json);
    if (cmd == "top") return herd::cli::run_top(socket);
    nlohmann::json answer;
    try {
        answer = herd::master::control_request(socket, request);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "herd: %s\n", e.what());
        return 1;
    }
    if (!answer.value("ok", false)) {
        std::fprintf(stderr, "herd %s: %s\n", std::string(cmd).c_str(),
                     answer.value("error", std::string("?")).c_str());
        return 1;
    }
    if (cmd == "stop") {
        std::printf("herd: master %s\n", now ? "stopping at once" : "stopping gracefully");
        return 0;
    }
    if (cmd == "upgrade") {
        std::printf("herd: upgraded from herd %s (pid %d) to herd %s (pid %d) in %.0f ms\n",
                    answer.value("from_version", "?").c_str(), answer.value("from_pid", 0),
                    answer.value("version", "?").c_str(), answer.value("pid", 0),
                    answer.value("ms", 0.0));
        return 0;
    }
    if (cmd == "reload") {
        if (answer.contains("ms")) {
            std::printf("herd: reloaded in %.0f ms\n", answer.value("ms", 0.0));
            for (const auto& app : answer["apps"])
                std::printf("  app %s: generation %d on %s\n", app.value("name", "").c_str(),
                            app.value("generation", 0), app.value("listen", "").c_str());
        } else {
            std::printf("herd: reloaded: no app changed\n");
        }
        return 0;
    }
    if (cmd == "scale") {
        std::printf("herd: app %s: %d to %d worker(s)\n", answer.value("app", "").c_str(),
                    answer.value("from", 0), answer.value("workers", 0));
        return 0;
    }
    if (cmd == "state") {
        std::string op = request["op"];
        if (op == "get") {
            if (!answer.value("found", false)) {
                std::fprintf(stderr, "herd state get: %s is not set (version %llu)\n",
                             positional[1].c_str(),
                             static_cast<unsigned long long>(answer.value("version", 0ull)));
                return 1;
            }
            std::printf("%s\n", answer["value"].dump().c_str());
        } else if (op == "list") {
            if (answer.contains("entries"))
                for (auto it = answer["entries"].begin(); it != answer["entries"].end(); ++it)
                    std::printf("%s %s\n", it.key().c_str(), it.value().dump().c_str());
        } else {
            std::printf("herd: %s %s (version %llu)\n", positional[1].c_str(),
                        op == "set" ? "set" : "erased",
                        static_cast<unsigned long long>(answer.value("version", 0ull)));
        }
        return 0;
    }
    if (json) {
        std::printf("%s\n", answer.dump(2).c_str());
        return 0;
    }
    std::printf("master pid %d%s, herd %s (%s), started %s\n", answer.value("pid", 0),
                answer.value("stopping", false) ? " (stopping)" : "",
                answer.value("version", "?").c_str(), answer.value("binary", "?").c_str(),
                answer.value("started", "?").c_str());
    if (answer.contains("upgrade") && answer["upgrade"].is_object())
        std::printf("upgrading: new master pid %d (%s), %s, %.1f s\n",
                    answer["upgrade"].value("pid", 0),
                    answer["upgrade"].value("binary", "?").c_str(),
                    answer["upgrade"].value("phase", "?").c_str(),
                    answer["upgrade"].value("running_s", 0.0));
    if (answer.contains("state") && answer["state"].is_object()) {
        const auto& st = answer["state"];
        bool up = st.value("up", false);
        std::printf("state: %s %s, %s, version %llu, %llu key(s), broker pid %d",
                    st.value("backend", "?").c_str(), st.value("target", "").c_str(),
                    up ? "up" : "DOWN", static_cast<unsigned long long>(st.value("version", 0ull)),
                    static_cast<unsigned long long>(st.value("keys", 0ull)),
                    st.value("broker_pid", 0));
        if (!up && st.contains("down_for_ms") && st["down_for_ms"].is_number())
            std::printf(", down for %.1f s",
                        static_cast<double>(st.value("down_for_ms", 0ll)) / 1000);
        if (!up && !st.value("last_error", std::string()).empty())
            std::printf(" (%s)", st.value("last_error", std::string()).c_str());
        std::printf("\n");
        if (st.contains("primary") && st["primary"].is_object())
            std::printf("state primary (sentinels): %s, role %s, %llu failover(s)\n",
                        st["primary"].value("address", "?").c_str(),
                        st["primary"].value("role", "?").c_str(),
                        static_cast<unsigned long long>(
                            st["primary"].value("failovers", std::uint64_t{0})));
    }
    for (const auto& app : answer["apps"]) {
        std::string state = app.value("state", "");
        if (state == "degraded" || state == "starting" || state == "reloading")
            state += " (" + std::to_string(app.value("ready", 0)) + " of " +
                     std::to_string(app.value("workers_wanted", 0)) + " ready)";
        std::printf("\napp %s on %s (%s) %s, generation %d\n", app.value("name", "").c_str(),
                    app.value("listen", "").c_str(), app.value("balance", "").c_str(),
                    state.c_str(), app.value("generation", 0));
        std::printf("  %-4s %-8s %-9s %-4s %9s %8s %10s %6s %9s %6s\n", "slot", "pid", "state",
                    "gen", "uptime", "restarts", "requests", "open", "rss", "cpu");
        for (const auto& w : app["workers"])
            std::printf("  %-4d %-8d %-9s %-4d %8.0fs %8llu %10llu %6llu %7lluMB %5.1f%%\n",
                        w.value("slot", 0), w.value("pid", 0), w.value("state", "").c_str(),
                        w.value("generation", 0), w.value("uptime_s", 0.0),
                        static_cast<unsigned long long>(w.value("restarts", 0ull)),
                        static_cast<unsigned long long>(w.value("requests", 0ull)),
                        static_cast<unsigned long long>(w.value("open", 0ull)),
                        static_cast<unsigned long long>(w.value("rss_kb", 0ull) / 1024),
                        w.value("cpu_percent", 0.0));
        if (app.contains("slots"))
            for (const auto& s : app["slots"])
                std::printf("  slot %d: last worker %s, %.0f s ago\n", s.value("slot", 0),
                            s.value("last_exit", "").c_str(), s.value("last_exit_s_ago", 0.0));
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fputs(usage, stderr);
        return exit_usage;
    }
    std::string_view cmd = argv[1];
    if (cmd == "version" || cmd == "--version") {
        std::printf("herd %s (plugin ABI %u)\n", std::string(herd::build::version()).c_str(),
                    herd::abi_version);
        return 0;
    }
    if (cmd == "help" || cmd == "--help" || cmd == "-h") {
        std::fputs(usage, stdout);
        return 0;
    }
    if ((cmd == "run" || cmd == "check") && argc == 3)
        return cmd == "run" ? cmd_run(argv[2]) : cmd_check(argv[2]);
    if (cmd == "status" || cmd == "stop" || cmd == "reload" || cmd == "scale" || cmd == "state" ||
        cmd == "events" || cmd == "upgrade" || cmd == "top")
        return cmd_control(cmd, argc, argv);
    std::fputs(usage, stderr);
    return exit_usage;
}
