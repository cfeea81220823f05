// Metrics rendering and endpoint; see metrics.hpp.
#include "master/metrics.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/log.hpp"
#include "http/http_parser.hpp"
#include "http/http_response.hpp"
#include "master/status_page.hpp"
#include "ws/base64.hpp"

namespace herd::master {
namespace {

constexpr std::size_t max_clients = 64;
constexpr auto client_timeout = std::chrono::seconds(5);

// Label values: backslash, quote and newline escaped as the format requires.
std::string label(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

void family(std::string& out, const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

// The plugins' clients (Context::http(), redis(), postgres()), per app: herd_http_client_*,
// herd_redis_client_*, herd_postgres_client_*. Only HTTP has responses by status class.
void render_client(std::string& out, const MasterMetrics& m, const std::string& client,
                   const char* what) {
    const core::ClientStats none;
    auto stats = [&](const AppMetrics& a) -> const core::ClientStats& {
        auto it = a.clients.find(client);
        return it == a.clients.end() ? none : it->second;
    };
    std::string p = "herd_" + client + "_client_";
    family(out, (p + "requests_total").c_str(), "counter",
           fmt::format("Requests plugins started with herd's {} client.", what).c_str());
    for (const auto& a : m.apps)
        out +=
            fmt::format("{}requests_total{{app=\"{}\"}} {}\n", p, label(a.name), stats(a).requests);
    if (client == "http") {
        family(out, (p + "responses_total").c_str(), "counter",
               "Responses the HTTP client received, by status class.");
        for (const auto& a : m.apps)
            for (std::size_t i = 0; i < stats(a).responses.by_class.size(); ++i)
                out += fmt::format("{}responses_total{{app=\"{}\",code=\"{}xx\"}} {}\n", p,
                                   label(a.name), i + 1, stats(a).responses.by_class[i]);
    }
    family(out, (p + "errors_total").c_str(), "counter",
           "Requests that ended without an answer (or with the server's error), by kind.");
    for (const auto& a : m.apps)
        for (const auto& [kind, n] : stats(a).errors)
            out += fmt::format("{}errors_total{{app=\"{}\",kind=\"{}\"}} {}\n", p, label(a.name),
                               label(kind), n);
    family(out, (p + "duration_seconds").c_str(), "histogram",
           "Time from a request started to its whole answer.");
    for (const auto& a : m.apps) {
        std::uint64_t cumulative = 0;
        const core::RequestStats& r = stats(a).responses;
        for (std::size_t i = 0; i < r.buckets.size(); ++i) {
            cumulative += r.buckets[i];
            std::string le = i < core::RequestStats::bounds.size()
                                 ? fmt::format("{}", core::RequestStats::bounds[i])
                                 : "+Inf";
            out += fmt::format("{}duration_seconds_bucket{{app=\"{}\",le=\"{}\"}} {}\n", p,
                               label(a.name), le, cumulative);
        }
        out += fmt::format("{}duration_seconds_sum{{app=\"{}\"}} {}\n", p, label(a.name),
                           r.latency_sum);
        out += fmt::format("{}duration_seconds_count{{app=\"{}\"}} {}\n", p, label(a.name),
                           cumulative);
    }
    family(
        out, (p + "connections").c_str(), "gauge",
        fmt::format("The {} client's connections, open (idle included) and idle.", what).c_str());
    for (const auto& a : m.apps) {
        out += fmt::format("{}connections{{app=\"{}\",state=\"open\"}} {}\n", p, label(a.name),
                           stats(a).open);
        out += fmt::format("{}connections{{app=\"{}\",state=\"idle\"}} {}\n", p, label(a.name),
                           stats(a).idle);
    }
    family(out, (p + "waiting").c_str(), "gauge",
           "Requests waiting for a connection (the pool's limit reached, or connecting).");
    for (const auto& a : m.apps)
        out += fmt::format("{}waiting{{app=\"{}\"}} {}\n", p, label(a.name), stats(a).waiting);
}

}  // namespace

std::string render_metrics(const MasterMetrics& m) {
    std::string out;
    family(out, "herd_requests_total", "counter", "Responses sent, by status class.");
    for (const auto& a : m.apps)
        for (std::size_t i = 0; i < a.requests.by_class.size(); ++i)
            out += fmt::format("herd_requests_total{{app=\"{}\",code=\"{}xx\"}} {}\n",
                               label(a.name), i + 1, a.requests.by_class[i]);
    family(out, "herd_request_duration_seconds", "histogram",
           "Time from a request's first byte to its response being queued.");
    for (const auto& a : m.apps) {
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < a.requests.buckets.size(); ++i) {
            cumulative += a.requests.buckets[i];
            std::string le = i < core::RequestStats::bounds.size()
                                 ? fmt::format("{}", core::RequestStats::bounds[i])
                                 : "+Inf";
            out += fmt::format("herd_request_duration_seconds_bucket{{app=\"{}\",le=\"{}\"}} {}\n",
                               label(a.name), le, cumulative);
        }
        out += fmt::format("herd_request_duration_seconds_sum{{app=\"{}\"}} {}\n", label(a.name),
                           a.requests.latency_sum);
        out += fmt::format("herd_request_duration_seconds_count{{app=\"{}\"}} {}\n", label(a.name),
                           cumulative);
    }
    family(out, "herd_open_connections", "gauge", "Client connections open in the workers.");
    for (const auto& a : m.apps)
        out += fmt::format("herd_open_connections{{app=\"{}\"}} {}\n", label(a.name),
                           a.open_connections);
    family(out, "herd_workers", "gauge", "Worker processes, by state.");
    for (const auto& a : m.apps)
        for (const auto& [state, n] : a.workers)
            out += fmt::format("herd_workers{{app=\"{}\",state=\"{}\"}} {}\n", label(a.name),
                               label(state), n);
    family(out, "herd_worker_restarts_total", "counter",
           "Workers replaced or restarted, by reason.");
    for (const auto& a : m.apps)
        for (const auto& [reason, n] : a.restarts)
            out += fmt::format("herd_worker_restarts_total{{app=\"{}\",reason=\"{}\"}} {}\n",
                               label(a.name), label(reason), n);
    family(out, "herd_worker_resident_bytes", "gauge", "Resident memory of each worker.");
    for (const auto& a : m.apps)
        for (const auto& w : a.worker_rss)
            out +=
                fmt::format("herd_worker_resident_bytes{{app=\"{}\",slot=\"{}\",pid=\"{}\"}} {}\n",
                            label(a.name), w.slot, w.pid, w.rss_bytes);
    family(out, "herd_worker_cpu_seconds_total", "counter",
           "CPU time (user + system) of each worker, from /proc.");
    for (const auto& a : m.apps)
        for (const auto& w : a.worker_rss)
            out += fmt::format(
                "herd_worker_cpu_seconds_total{{app=\"{}\",slot=\"{}\",pid=\"{}\"}} {:.2f}\n",
                label(a.name), w.slot, w.pid, w.cpu_seconds);
    family(out, "herd_worker_cpu_percent", "gauge",
           "CPU use of each worker between its last two heartbeats (100 = one CPU).");
    for (const auto& a : m.apps)
        for (const auto& w : a.worker_rss)
            out +=
                fmt::format("herd_worker_cpu_percent{{app=\"{}\",slot=\"{}\",pid=\"{}\"}} {:.1f}\n",
                            label(a.name), w.slot, w.pid, w.cpu_percent);
    family(out, "herd_app_generation", "gauge", "The generation an app's workers run.");
    for (const auto& a : m.apps)
        out += fmt::format("herd_app_generation{{app=\"{}\"}} {}\n", label(a.name), a.generation);
    if (m.state_known) {
        family(out, "herd_state_version", "gauge", "The shared state's version at the broker.");
        out += fmt::format("herd_state_version {}\n", m.state_version);
        family(out, "herd_state_backend_up", "gauge", "1 when the state backend is reachable.");
        out += fmt::format("herd_state_backend_up {}\n", m.state_up ? 1 : 0);
        family(out, "herd_state_lag_versions", "gauge",
               "How many versions the furthest-behind worker's copy trails the broker.");
        out += fmt::format("herd_state_lag_versions {}\n", m.state_lag);
        family(out, "herd_broker_restarts_total", "counter", "Broker processes restarted.");
        out += fmt::format("herd_broker_restarts_total {}\n", m.broker_restarts);
        if (m.state_primary) {
            family(out, "herd_state_primary", "gauge",
                   "The Redis primary the sentinels named, with its role as last checked (1).");
            out += fmt::format("herd_state_primary{{address=\"{}\",role=\"{}\"}} 1\n",
                               label(m.state_primary->address), label(m.state_primary->role));
            family(out, "herd_state_failovers_total", "counter",
                   "Times the Redis primary changed (Sentinel failovers seen by the broker).");
            out += fmt::format("herd_state_failovers_total {}\n", m.state_primary->failovers);
        }
        if (m.state_unconfirmed_writes) {
            family(out, "herd_state_unconfirmed_writes_total", "counter",
                   "Writes applied on the Redis primary that fewer than min_replicas_ack "
                   "replicas confirmed in time (failed to their writers).");
            out += fmt::format("herd_state_unconfirmed_writes_total {}\n",
                               *m.state_unconfirmed_writes);
        }
    }
    render_client(out, m, "http", "HTTP");
    render_client(out, m, "redis", "Redis");
    render_client(out, m, "postgres", "PostgreSQL");
    family(out, "herd_reloads_total", "counter", "Reloads, by outcome.");
    out += fmt::format("herd_reloads_total{{result=\"ok\"}} {}\n", m.reloads);
    out += fmt::format("herd_reloads_total{{result=\"failed\"}} {}\n", m.reload_failures);
    return out;
}

struct MetricsServer::Client {
    core::UniqueFd fd;
    http::HttpLimits limits;
    std::unique_ptr<http::HttpParser> parser;
    std::string out;
    std::size_t written = 0;
    core::EventLoop::Clock::time_point since;
};

bool authorized(const core::Config::MetricsAuth& auth, std::string_view header) {
    if (!auth.required()) return true;
    std::string expected = auth.token.empty()
                               ? "Basic " + ws::base64_encode(auth.user + ":" + auth.password)
                               : "Bearer " + auth.token;
    // The scheme is case-insensitive (RFC 9110 11.1); the rest is compared without an early
    // exit, so the time taken says nothing of how much matched.
    std::size_t scheme = expected.find(' ');
    if (header.size() != expected.size()) return false;
    unsigned char diff = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        unsigned char a = static_cast<unsigned char>(header[i]);
        unsigned char b = static_cast<unsigned char>(expected[i]);
        if (i < scheme) {
            a = static_cast<unsigned char>(std::tolower(a));
            b = static_cast<unsigned char>(std::tolower(b));
        }
        diff |= static_cast<unsigned char>(a ^ b);
    }
    return diff == 0;
}

MetricsServer::MetricsServer(core::EventLoop& loop, Source source, HealthSource health,
                             StatusSource status)
    : loop_(loop),
      source_(std::move(source)),
      health_(std::move(health)),
      status_(std::move(status)) {}

MetricsServer::~MetricsServer() {
    for (auto& [fd, c] : clients_) loop_.remove(fd);
    acceptor_.reset();
}

void MetricsServer::listen(const core::SocketAddress& address) {
    try {
        socket_ = core::listen_tcp(address, false, 64);
    } catch (const core::Error& e) {
        throw core::Error(std::string("metrics: ") + e.what());
    }
    start_accepting();
    sweep();
}

void MetricsServer::adopt(core::UniqueFd socket, bool accepting) {
    socket_ = std::move(socket);
    if (accepting) start_accepting();
    sweep();
}

void MetricsServer::start_accepting() {
    if (!socket_ || acceptor_) return;
    acceptor_ = std::make_unique<core::Acceptor>(
        loop_, socket_.get(), "metrics endpoint " + core::local_address(socket_.get()),
        [this](core::UniqueFd fd) { on_accept(std::move(fd)); });
    acceptor_->start();
}

void MetricsServer::stop_accepting() {
    acceptor_.reset();
    socket_.reset();
}

std::string MetricsServer::bound_address() const {
    return core::local_address(socket_.get());
}

void MetricsServer::on_accept(core::UniqueFd fd) {
    if (clients_.size() >= max_clients) return;  // a scraper is one client; this many is abuse
    int key = fd.get();
    auto c = std::make_unique<Client>();
    c->fd = std::move(fd);
    c->limits.max_header_bytes = 8 << 10;
    c->limits.max_body_bytes = 4 << 10;
    c->parser = std::make_unique<http::HttpParser>(c->limits);
    c->since = core::EventLoop::Clock::now();
    try {
        loop_.add(key, EPOLLIN | EPOLLRDHUP, [this, key](std::uint32_t ev) { on_client(key, ev); });
    } catch (const core::Error& e) {
        core::log_warn("metrics endpoint: cannot watch a client: {}; closing it", e.what());
        return;  // closes it
    }
    clients_[key] = std::move(c);
}

void MetricsServer::on_client(int fd, std::uint32_t events) {
    auto it = clients_.find(fd);
    if (it == clients_.end()) return;
    Client& c = *it->second;
    if (c.out.empty()) {
        char buf[4096];
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) {
            drop(fd);
            return;
        }
        std::size_t consumed = 0;
        auto status = c.parser->feed(buf, static_cast<std::size_t>(n), consumed);
        if (status == http::HttpParser::Status::need_more) return;
        std::string body, type = "text/plain; charset=utf-8", extra;
        int code = 200;
        std::string_view path =
            status == http::HttpParser::Status::error ? "" : c.parser->request().path();
        bool known = (source_ && path == "/metrics") || (health_ && path == "/healthz") ||
                     (status_ && (path == "/" || path == "/status.json"));
        if (status == http::HttpParser::Status::error) {
            code = c.parser->error_status();
            body = c.parser->error_reason() + "\n";
        } else if (!known) {
            code = 404;
            body = status_ ? "herd serves its status page at /, /status.json, its metrics at "
                             "/metrics and its health at /healthz\n"
                           : "herd serves its health at /healthz\n";
        } else if (c.parser->request().method() != "GET") {
            code = 405;
            body = "GET only\n";
        } else if (path != "/healthz" &&
                   !authorized(auth_, c.parser->request().header("authorization").value_or(""))) {
            code = 401;
            body = "herd's status and metrics need credentials (metrics_auth)\n";
            extra = auth_.token.empty()
                        ? "WWW-Authenticate: Basic realm=\"herd\", charset=\"UTF-8\"\r\n"
                        : "WWW-Authenticate: Bearer realm=\"herd\"\r\n";
        } else if (path == "/healthz") {
            HealthVerdict verdict = health_();
            code = verdict.status;
            body = std::move(verdict.body);
        } else if (path == "/status.json") {
            body = status_().dump() + "\n";
            type = "application/json";
        } else if (path == "/") {
            body = render_status_page(status_());
            type = "text/html; charset=utf-8";
            // Everything is inline: nothing else may load, and no other site may frame it.
            extra =
                "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; "
                "frame-ancestors 'none'\r\nCache-Control: no-store\r\n";
        } else {
            body = render_metrics(source_());
            type = "text/plain; version=0.0.4; charset=utf-8";
        }
        c.out = fmt::format(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: "
            "close\r\n\r\n{}",
            code, http::reason_phrase(code), type, body.size(), extra, body);
        loop_.modify(fd, EPOLLOUT);
        events |= EPOLLOUT;
    }
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
        ssize_t w = ::send(fd, c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
        if (w > 0) c.written += static_cast<std::size_t>(w);
        if (c.written == c.out.size() || (w < 0 && errno != EAGAIN && errno != EINTR)) drop(fd);
    }
}

void MetricsServer::drop(int fd) {
    loop_.remove(fd);
    clients_.erase(fd);
}

void MetricsServer::sweep() {
    // A client that neither asks nor reads within the timeout is dropped: the master never
    // holds a descriptor for a silent peer for long.
    auto now = core::EventLoop::Clock::now();
    std::vector<int> stale;
    for (auto& [fd, c] : clients_)
        if (now - c->since > client_timeout) stale.push_back(fd);
    for (int fd : stale) drop(fd);
    loop_.add_timer(std::chrono::seconds(1), [this] { sweep(); });
}

}  // namespace herd::master
