// Metrics: the master's Prometheus endpoint ("metrics": "127.0.0.1:9100" in the config), and
// on the same address the status page (/) and /status.json (status_page.hpp).
// The figures come from the workers' heartbeats (at most a second old); a scrape never waits
// on a worker. render_metrics is pure and unit-tested; MetricsServer is the socket.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/acceptor.hpp"
#include "core/client_stats.hpp"
#include "core/config.hpp"
#include "core/event_loop.hpp"
#include "core/request_stats.hpp"
#include "core/socket.hpp"
#include "core/unique_fd.hpp"
#include "master/health.hpp"

namespace herd::master {

struct AppMetrics {
    std::string name;
    int generation = 0;
    core::RequestStats requests;   // every worker the app had, live and gone
    core::ClientStatsMap clients;  // the plugins' clients: counters of all, pools of live
    std::uint64_t open_connections = 0;
    std::map<std::string, std::uint64_t> restarts;  // by reason
    std::map<std::string, int> workers;             // by state
    struct Worker {
        int slot = 0;
        int pid = 0;
        std::uint64_t rss_bytes = 0;
        double cpu_seconds = 0;  // in all
        double cpu_percent = 0;  // of one CPU, between its last two heartbeats
    };
    std::vector<Worker> worker_rss;
};

struct MasterMetrics {
    std::uint64_t reloads = 0;
    std::uint64_t reload_failures = 0;
    // Shared state: the broker's version, whether its backend is up, and how far the
    // furthest-behind worker's copy trails (in versions; 0 when every worker is current).
    bool state_known = false;
    std::uint64_t state_version = 0;
    bool state_up = false;
    std::uint64_t state_lag = 0;
    std::uint64_t broker_restarts = 0;
    // Redis through sentinels: the primary the broker uses, its role as last checked, and how
    // many times the primary changed (failovers). Unset for other backends.
    struct Primary {
        std::string address, role;
        std::uint64_t failovers = 0;
    };
    std::optional<Primary> state_primary;
    // With min_replicas_ack: writes applied on the primary that the replicas did not confirm
    // (failed to their writers). Unset without it.
    std::optional<std::uint64_t> state_unconfirmed_writes;
    std::vector<AppMetrics> apps;
};

// The Prometheus text exposition format (version 0.0.4).
std::string render_metrics(const MasterMetrics& m);

// Whether an Authorization header value carries the credentials (compared in constant time);
// always true when none are required.
bool authorized(const core::Config::MetricsAuth& auth, std::string_view header);

// The master's HTTP endpoint: /metrics (when it has a metrics source), / and /status.json
// (when it has a status source) and /healthz (when it has a health source). The "metrics"
// address serves them all, the "health" address only the health check (a load balancer need
// not see the figures). With credentials set, every path but /healthz asks for them (401).
class MetricsServer {
  public:
    using Source = std::function<MasterMetrics()>;
    using HealthSource = std::function<HealthVerdict()>;
    using StatusSource = std::function<nlohmann::json()>;
    MetricsServer(core::EventLoop& loop, Source source, HealthSource health = {},
                  StatusSource status = {});
    // Credentials for the next requests (at start and on reload).
    void set_auth(core::Config::MetricsAuth auth) { auth_ = std::move(auth); }
    ~MetricsServer();
    MetricsServer(const MetricsServer&) = delete;
    MetricsServer& operator=(const MetricsServer&) = delete;

    // Binds; throws core::Error naming the address.
    void listen(const core::SocketAddress& address);
    // An upgrade: the new master takes over the old one's socket (accepting once it has taken
    // over); the old one stops accepting on it (and answers the scrapes it has).
    void adopt(core::UniqueFd socket, bool accepting);
    void start_accepting();
    void stop_accepting();
    int socket() const { return socket_.get(); }
    std::string bound_address() const;

  private:
    struct Client;
    void on_accept(core::UniqueFd fd);
    void on_client(int fd, std::uint32_t events);
    void drop(int fd);
    void sweep();

    core::EventLoop& loop_;
    Source source_;
    HealthSource health_;
    StatusSource status_;
    core::Config::MetricsAuth auth_;
    core::UniqueFd socket_;
    std::unique_ptr<core::Acceptor> acceptor_;  // after socket_: stops before it closes
    std::map<int, std::unique_ptr<Client>> clients_;
};

}  // namespace herd::master
