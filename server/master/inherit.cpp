// Sockets from an old master or from systemd; see inherit.hpp.
#include "master/inherit.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/channel.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/socket.hpp"

namespace herd::master {
namespace {

constexpr int listen_fds_start = 3;  // SD_LISTEN_FDS_START
constexpr int max_listen_fds = 1024;

int int_field(const nlohmann::json& j, const char* key, const std::string& where) {
    if (!j.contains(key) || !j[key].is_number_integer())
        throw core::Error(where + ": \"" + key + "\" must be an integer");
    return j[key].get<int>();
}

std::string string_field(const nlohmann::json& j, const char* key, const std::string& where) {
    if (!j.contains(key) || !j[key].is_string())
        throw core::Error(where + ": \"" + key + "\" must be a string");
    return j[key].get<std::string>();
}

int get_int_option(int fd, int level, int name) {
    int value = 0;
    socklen_t length = sizeof value;
    if (getsockopt(fd, level, name, &value, &length) < 0) return -1;
    return value;
}

// A listening stream socket of `family` (AF_UNSPEC: IPv4 or IPv6), made non-blocking and
// close-on-exec; throws saying what it is instead.
void check_listening(int fd, bool unix_socket, const std::string& what) {
    struct stat st {};
    if (fstat(fd, &st) < 0) throw core::Error(core::errno_text(what + ": fstat()"));
    if (!S_ISSOCK(st.st_mode)) throw core::Error(what + " is not a socket");
    if (get_int_option(fd, SOL_SOCKET, SO_TYPE) != SOCK_STREAM)
        throw core::Error(what + " is not a stream (TCP) socket");
    if (get_int_option(fd, SOL_SOCKET, SO_ACCEPTCONN) != 1)
        throw core::Error(what + " is not listening");
    int domain = get_int_option(fd, SOL_SOCKET, SO_DOMAIN);
    if (unix_socket ? domain != AF_UNIX : (domain != AF_INET && domain != AF_INET6))
        throw core::Error(what + (unix_socket ? " is not a Unix socket" : " is not TCP/IP"));
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        throw core::Error(core::errno_text(what + ": fcntl()"));
}

// Takes ownership of `fd` after checking it is a socket we may hold.
void check_socket(InheritedSocket& s, const std::string& origin) {
    std::string what =
        origin + ": descriptor " + std::to_string(s.fd.get()) + " (\"" + s.name + "\")";
    check_listening(s.fd.get(), false, what);
    s.address = core::local_address(s.fd.get());
    s.reuseport = get_int_option(s.fd.get(), SOL_SOCKET, SO_REUSEPORT) == 1;
}

// The same family, address and port ("0.0.0.0:80" is not "127.0.0.1:80").
bool same_address(const core::SocketAddress& a, const core::SocketAddress& b) {
    if (a.family() != b.family() || a.port() != b.port()) return false;
    if (a.family() == AF_INET)
        return reinterpret_cast<const sockaddr_in*>(a.get())->sin_addr.s_addr ==
               reinterpret_cast<const sockaddr_in*>(b.get())->sin_addr.s_addr;
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(a.get())->sin6_addr,
                       &reinterpret_cast<const sockaddr_in6*>(b.get())->sin6_addr,
                       sizeof(in6_addr)) == 0;
}

}  // namespace

std::string encode_upgrade_env(pid_t from_pid, std::string_view version, int channel, int control,
                               const UpgradeEndpoint& metrics, const UpgradeEndpoint& health,
                               const std::vector<UpgradeSocket>& sockets) {
    nlohmann::json list = nlohmann::json::array();
    for (const UpgradeSocket& s : sockets)
        list.push_back({{"fd", s.fd},
                        {"app", s.app},
                        {"listen", s.listen},
                        {"reuseport", s.reuseport},
                        {"slot", s.slot}});
    return nlohmann::json{{"pid", from_pid},       {"version", std::string(version)},
                          {"channel", channel},    {"control", control},
                          {"metrics", metrics.fd}, {"metrics_listen", metrics.listen},
                          {"health", health.fd},   {"health_listen", health.listen},
                          {"sockets", list}}
        .dump();
}

Inherited parse_upgrade_env(std::string_view text) {
    std::string where = std::string(upgrade_env);
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (!j.is_object()) throw core::Error(where + " is not a JSON object");
    Inherited in;
    in.from_pid = int_field(j, "pid", where);
    in.from_version = string_field(j, "version", where);
    in.origin = "the master it upgrades from (pid " + std::to_string(in.from_pid) + ", herd " +
                in.from_version + ")";
    int channel = int_field(j, "channel", where);
    if (channel < 3) throw core::Error(where + ": \"channel\" must be a descriptor above 2");
    in.channel.reset(channel);
    if (int fd = int_field(j, "control", where); fd >= 3) in.control.reset(fd);
    if (int fd = int_field(j, "metrics", where); fd >= 3) in.metrics.reset(fd);
    in.metrics_listen = string_field(j, "metrics_listen", where);
    if (int fd = int_field(j, "health", where); fd >= 3) in.health.reset(fd);
    in.health_listen = string_field(j, "health_listen", where);
    if (!j.contains("sockets") || !j["sockets"].is_array())
        throw core::Error(where + ": \"sockets\" must be an array");
    for (const nlohmann::json& s : j["sockets"]) {
        std::string at = where + ": a socket";
        if (!s.is_object()) throw core::Error(at + " is not an object");
        InheritedSocket socket;
        int fd = int_field(s, "fd", at);
        if (fd < 3) throw core::Error(at + ": \"fd\" must be a descriptor above 2");
        socket.fd.reset(fd);
        socket.name = string_field(s, "app", at);
        socket.listen = string_field(s, "listen", at);
        if (!s.contains("reuseport") || !s["reuseport"].is_boolean())
            throw core::Error(at + ": \"reuseport\" must be true or false");
        socket.reuseport = s["reuseport"].get<bool>();
        socket.slot = int_field(s, "slot", at);
        in.sockets.push_back(std::move(socket));
    }
    return in;
}

std::vector<InheritedSocket> parse_listen_fds(std::string_view count, const char* names) {
    int n = 0;
    for (char c : count) {
        if (c < '0' || c > '9' || n > max_listen_fds)
            throw core::Error("LISTEN_FDS=\"" + std::string(count) +
                              "\" is not a number of descriptors");
        n = n * 10 + (c - '0');
    }
    if (count.empty() || n > max_listen_fds)
        throw core::Error("LISTEN_FDS=\"" + std::string(count) +
                          "\" is not a number of descriptors up to " +
                          std::to_string(max_listen_fds));
    std::vector<std::string> split;
    if (names != nullptr) {
        std::string_view rest = names;
        for (;;) {
            std::size_t colon = rest.find(':');
            split.emplace_back(rest.substr(0, colon));
            if (colon == std::string_view::npos) break;
            rest.remove_prefix(colon + 1);
        }
        if (split.size() != static_cast<std::size_t>(n))
            throw core::Error("LISTEN_FDNAMES names " + std::to_string(split.size()) +
                              " socket(s) but LISTEN_FDS passes " + std::to_string(n));
    }
    std::vector<InheritedSocket> out;
    for (int i = 0; i < n; ++i) {
        InheritedSocket s;
        s.fd.reset(listen_fds_start + i);
        s.name = split.empty() || split[static_cast<std::size_t>(i)].empty()
                     ? "unknown"
                     : split[static_cast<std::size_t>(i)];
        out.push_back(std::move(s));
    }
    return out;
}

void report_upgrade_failure(int channel, const std::string& reason) {
    std::string frame = core::encode_frame({{"type", "upgrade.failed"}, {"reason", reason}}, 0);
    std::size_t off = 0;
    while (off < frame.size()) {
        ssize_t n = ::send(channel, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        off += static_cast<std::size_t>(n);
    }
}

std::optional<Inherited> take_inherited() {
    if (const char* text = std::getenv(upgrade_env)) {
        std::string copy = text;
        ::unsetenv(upgrade_env);
        Inherited in = parse_upgrade_env(copy);
        int flags = fcntl(in.channel.get(), F_GETFL);
        if (flags < 0 || fcntl(in.channel.get(), F_SETFL, flags | O_NONBLOCK) < 0 ||
            fcntl(in.channel.get(), F_SETFD, FD_CLOEXEC) < 0)
            throw core::Error(core::errno_text(std::string(upgrade_env) + ": the channel (" +
                                               std::to_string(in.channel.get()) + ")"));
        if (in.control) check_listening(in.control.get(), true, in.origin + ": the control socket");
        if (in.metrics)
            check_listening(in.metrics.get(), false, in.origin + ": the metrics socket");
        for (InheritedSocket& s : in.sockets) {
            bool said = s.reuseport;
            check_socket(s, in.origin);
            if (s.reuseport != said)
                throw core::Error(in.origin + ": descriptor " + std::to_string(s.fd.get()) +
                                  " of app \"" + s.name + "\" is not bound as described");
        }
        return in;
    }
    const char* pid = std::getenv("LISTEN_PID");
    const char* fds = std::getenv("LISTEN_FDS");
    const char* names = std::getenv("LISTEN_FDNAMES");
    std::string pid_text = pid ? pid : "", fds_text = fds ? fds : "",
                names_text = names ? names : "";
    bool have_names = names != nullptr;
    for (const char* v : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"}) ::unsetenv(v);
    if (fds_text.empty()) return std::nullopt;
    // For another process (a parent that was activated and started us): not ours.
    if (pid_text != std::to_string(getpid())) {
        core::log_info("LISTEN_FDS is set for pid {}, not this one ({}): ignored", pid_text,
                       getpid());
        return std::nullopt;
    }
    Inherited in;
    in.origin = "systemd (LISTEN_FDS)";
    in.sockets = parse_listen_fds(fds_text, have_names ? names_text.c_str() : nullptr);
    for (InheritedSocket& s : in.sockets) check_socket(s, in.origin);
    return in;
}

std::vector<core::UniqueFd> claim_sockets(Inherited& from, const core::AppConfig& app) {
    bool reuseport = app.balance == "reuseport";
    std::vector<InheritedSocket*> mine;
    auto matches = [&](const InheritedSocket& s) {
        if (!s.fd) return false;
        if (from.upgrade()) return s.name == app.name && s.listen == app.listen.text;
        return s.name == app.name;
    };
    for (InheritedSocket& s : from.sockets)
        if (matches(s)) mine.push_back(&s);
    if (mine.empty() && !from.upgrade() && app.listen.port() != 0) {
        // systemd: by address, when no socket is named as the app.
        for (InheritedSocket& s : from.sockets)
            if (s.fd && same_address(core::parse_address(s.address), app.listen))
                mine.push_back(&s);
    }
    if (mine.empty()) return {};
    std::sort(mine.begin(), mine.end(),
              [](const InheritedSocket* a, const InheritedSocket* b) { return a->slot < b->slot; });
    for (const InheritedSocket* s : mine)
        if (s->reuseport != reuseport)
            throw core::Error(
                "app \"" + app.name + "\" (balance " + app.balance + "): " + from.origin +
                " gives it socket " + std::to_string(s->fd.get()) + " on " + s->address +
                (s->reuseport ? " with SO_REUSEPORT" : " without SO_REUSEPORT") +
                (from.upgrade()
                     ? "; an upgrade keeps how an address is bound: change \"balance\" from or "
                       "to reuseport with herd reload, before or after upgrading"
                     : "; set ReusePort= in the .socket unit to match the app's balance"));
    if (!reuseport && mine.size() > 1)
        throw core::Error("app \"" + app.name + "\" (balance " + app.balance + "): " + from.origin +
                          " gives it " + std::to_string(mine.size()) +
                          " sockets; it listens on one (only reuseport takes one per worker)");
    std::vector<core::UniqueFd> out;
    for (InheritedSocket* s : mine) out.push_back(std::move(s->fd));
    return out;
}

void check_unclaimed(Inherited& from) {
    std::string problems;
    for (InheritedSocket& s : from.sockets) {
        if (!s.fd) continue;
        if (from.upgrade()) {
            core::log_info(
                "{}: socket {} of app \"{}\" ({}): no app of the new config listens "
                "there as before; closed",
                from.origin, s.fd.get(), s.name, s.address);
            s.fd.reset();
            continue;
        }
        problems += (problems.empty() ? "" : "; ") + std::string("descriptor ") +
                    std::to_string(s.fd.get()) + " named \"" + s.name + "\" on " + s.address;
    }
    if (!problems.empty())
        throw core::Error(from.origin +
                          " passed sockets no app is named as or listens on: " + problems +
                          " (name each with FileDescriptorName= as its app, or set the app's "
                          "\"listen\" to its address)");
}

}  // namespace herd::master
