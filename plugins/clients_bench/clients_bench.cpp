// clients_bench: the handlers of bench/clients.py, one Redis GET, one PostgreSQL SELECT by
// primary key or one HTTP GET per request, twice: through herd's asynchronous clients
// (ctx.redis(), ctx.postgres(), ctx.http(), in a coroutine) and with blocking clients inside
// handle() (hiredis redisCommand, libpq PQexecParams, a plain socket), to show what the
// asynchronous path buys. Not for production: the blocking half freezes its worker per call.
//
// Config: "redis" and "postgres" (URLs, herd's clients and the blocking ones alike) and
// "upstream" (http://127.0.0.1:PORT/path, the HTTP endpoint of both).
//   GET /redis?key=K           /blocking/redis?key=K   the value, 404 when there is none
//   GET /pg?id=N               /blocking/pg?id=N       SELECT name FROM items WHERE id = $1
//   GET /http                  /blocking/http          the upstream's body
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include <herd/herd.hpp>

namespace {

constexpr const char* kSelect = "SELECT name FROM items WHERE id = $1";

std::string query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        auto amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        auto eq = pair.find('=');
        if (pair.substr(0, eq) == name)
            return eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1));
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return {};
}

// host, port and path of "scheme://[user[:password]@]host:port[/path]": enough for the
// bench's loopback URLs (an IPv4 address, a port always given).
struct Endpoint {
    std::string host;
    int port = 0;
    std::string path = "/";
};

Endpoint parse_endpoint(const std::string& url, std::string_view key) {
    auto scheme = url.find("://");
    if (scheme == std::string::npos)
        throw std::runtime_error("clients_bench: config \"" + std::string(key) +
                                 "\": expected scheme://host:port, got " + url);
    std::string_view rest = std::string_view(url).substr(scheme + 3);
    std::string_view authority = rest.substr(0, rest.find('/'));
    Endpoint out;
    if (authority.size() < rest.size()) out.path = std::string(rest.substr(authority.size()));
    if (auto at = authority.rfind('@'); at != std::string_view::npos)
        authority.remove_prefix(at + 1);
    auto colon = authority.rfind(':');
    std::string_view port = colon == std::string_view::npos ? "" : authority.substr(colon + 1);
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), out.port);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size())
        throw std::runtime_error("clients_bench: config \"" + std::string(key) + "\": no port in " +
                                 std::string(authority));
    out.host = std::string(authority.substr(0, colon));
    return out;
}

// One keep-alive HTTP/1.1 connection, blocking: a request, then the head and a
// Content-Length body read whole. Reconnects once when the connection was closed meanwhile.
class BlockingHttp {
  public:
    explicit BlockingHttp(Endpoint to) : to_(std::move(to)) {
        request_ = "GET " + to_.path + " HTTP/1.1\r\nHost: " + to_.host + ":" +
                   std::to_string(to_.port) + "\r\n\r\n";
    }
    ~BlockingHttp() { close_fd(); }
    BlockingHttp(const BlockingHttp&) = delete;
    BlockingHttp& operator=(const BlockingHttp&) = delete;

    // The body of a 200, or throws saying what failed.
    std::string get() {
        bool fresh = fd_ < 0;
        if (fresh) connect_fd();
        try {
            return exchange();
        } catch (const std::exception&) {
            close_fd();
            if (fresh) throw;
            connect_fd();  // a kept connection the server closed: one new try
            return exchange();
        }
    }

  private:
    void connect_fd() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) throw std::runtime_error(std::string("socket(): ") + std::strerror(errno));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(to_.port));
        if (inet_pton(AF_INET, to_.host.c_str(), &addr.sin_addr) != 1) {
            close_fd();
            throw std::runtime_error("clients_bench: upstream host " + to_.host +
                                     " is not an IPv4 address");
        }
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            int e = errno;
            close_fd();
            throw std::runtime_error("connect() to " + to_.host + ":" + std::to_string(to_.port) +
                                     ": " + std::strerror(e));
        }
        int one = 1;
        // Without it a small request can wait on Nagle; a failure only costs latency.
        (void)::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        buffer_.clear();
    }

    void close_fd() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

    void read_more() {
        char chunk[16384];
        ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
        if (n == 0) throw std::runtime_error("upstream closed the connection");
        if (n < 0) throw std::runtime_error(std::string("recv(): ") + std::strerror(errno));
        buffer_.append(chunk, static_cast<std::size_t>(n));
    }

    std::string exchange() {
        std::string_view out = request_;
        while (!out.empty()) {
            ssize_t n = ::send(fd_, out.data(), out.size(), MSG_NOSIGNAL);
            if (n < 0) throw std::runtime_error(std::string("send(): ") + std::strerror(errno));
            out.remove_prefix(static_cast<std::size_t>(n));
        }
        std::size_t head_end;
        while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) read_more();
        std::string_view head(buffer_.data(), head_end);
        if (!head.starts_with("HTTP/1.1 200"))
            throw std::runtime_error("upstream answered " + std::string(head.substr(0, 12)));
        // A Content-Length is all this client reads (nginx's static answers have one).
        std::optional<std::size_t> length;
        for (std::string_view name : {"Content-Length: ", "content-length: "}) {
            auto at = head.find(name);
            if (at == std::string_view::npos) continue;
            std::string_view digits = head.substr(at + name.size());
            std::size_t n = 0;
            if (std::from_chars(digits.data(), digits.data() + digits.size(), n).ec == std::errc())
                length = n;
            break;
        }
        if (!length) throw std::runtime_error("upstream answered without a Content-Length");
        std::size_t total = head_end + 4 + *length;
        while (buffer_.size() < total) read_more();
        std::string body = buffer_.substr(head_end + 4, *length);
        buffer_.erase(0, total);
        return body;
    }

    Endpoint to_;
    std::string request_;
    std::string buffer_;
    int fd_ = -1;
};

class ClientsBench final : public herd::Plugin {
  public:
    void on_start(herd::Context& ctx) override {
        ctx_ = &ctx;
        const auto& config = ctx.config();
        redis_url_ = config.at("redis").get<std::string>();
        pg_url_ = config.at("postgres").get<std::string>();
        upstream_ = config.at("upstream").get<std::string>();
        redis_at_ = parse_endpoint(redis_url_, "redis");
        http_ = std::make_unique<BlockingHttp>(parse_endpoint(upstream_, "upstream"));
    }

    void on_stop() override {
        if (redis_ != nullptr) redisFree(redis_);
        if (pg_ != nullptr) PQfinish(pg_);
        redis_ = nullptr;
        pg_ = nullptr;
        http_.reset();
    }

    void respond(herd::Responder r) override {
        std::string_view path = r.request().subpath();
        if (path == "/redis" || path == "/pg" || path == "/http")
            return herd::serve_coroutine(std::move(r),
                                         [this](herd::Responder& held) { return serve(held); });
        Plugin::respond(std::move(r));
    }

    // The blocking half: the worker waits in each call.
    void handle(const herd::Request& request, herd::Response& response) override {
        std::string_view path = request.subpath();
        response.add_header("Content-Type", "text/plain");
        try {
            if (path == "/blocking/redis") {
                std::string key = query_param(request.query(), "key");
                std::optional<std::string> value = redis_get(key);
                if (value)
                    response.set_body(*value);
                else
                    response.set_status(404);
            } else if (path == "/blocking/pg") {
                std::optional<std::string> name = pg_select(query_param(request.query(), "id"));
                if (name)
                    response.set_body(*name);
                else
                    response.set_status(404);
            } else if (path == "/blocking/http") {
                response.set_body(http_->get());
            } else {
                response.set_status(404);
                response.set_body("clients_bench: no " + std::string(path) + "\n");
            }
        } catch (const std::exception& e) {
            response.set_status(503);
            response.set_body("clients_bench: " + std::string(path) + ": " + e.what() + "\n");
        }
    }

  private:
    herd::Task<> serve(herd::Responder& r) {
        const herd::Request& request = r.request();
        herd::Response& response = r.response();
        std::string path(request.subpath());
        response.add_header("Content-Type", "text/plain");
        try {
            if (path == "/redis") {
                auto read = ctx_->redis().get(query_param(request.query(), "key"));
                std::optional<std::string> value = co_await read;
                if (value)
                    response.set_body(*value);
                else
                    response.set_status(404);
            } else if (path == "/pg") {
                auto q = ctx_->postgres().query(kSelect, {query_param(request.query(), "id")});
                herd::PgResult result = co_await q;
                if (!result.rows.empty() && !result.rows[0].empty() && result.rows[0][0])
                    response.set_body(*result.rows[0][0]);
                else
                    response.set_status(404);
            } else {
                auto upstream = ctx_->http().get(upstream_);
                herd::HttpReply reply = co_await upstream;
                response.set_status(reply.status);
                response.set_body(reply.body);
            }
        } catch (const herd::ClientError& e) {
            response.set_status(503);
            response.set_body("clients_bench: " + path + ": " + e.what() + "\n");
        }
    }

    // hiredis, synchronous: one connection per worker, opened at the first call and again
    // after an error.
    std::optional<std::string> redis_get(const std::string& key) {
        if (redis_ == nullptr) {
            redis_ = redisConnect(redis_at_.host.c_str(), redis_at_.port);
            if (redis_ == nullptr || redis_->err != 0) {
                std::string why = redis_ != nullptr ? redis_->errstr : "out of memory";
                if (redis_ != nullptr) redisFree(redis_);
                redis_ = nullptr;
                throw std::runtime_error("redisConnect() to " + redis_at_.host + ":" +
                                         std::to_string(redis_at_.port) + ": " + why);
            }
        }
        auto* reply =
            static_cast<redisReply*>(redisCommand(redis_, "GET %b", key.data(), key.size()));
        if (reply == nullptr) {
            std::string why = redis_->errstr;
            redisFree(redis_);
            redis_ = nullptr;
            throw std::runtime_error("redisCommand(GET): " + why);
        }
        std::unique_ptr<redisReply, void (*)(void*)> owned(reply, freeReplyObject);
        if (reply->type == REDIS_REPLY_NIL) return std::nullopt;
        if (reply->type != REDIS_REPLY_STRING)
            throw std::runtime_error("GET answered type " + std::to_string(reply->type));
        return std::string(reply->str, reply->len);
    }

    // libpq, synchronous: one connection per worker, opened at the first call and again when
    // it is found broken.
    std::optional<std::string> pg_select(const std::string& id) {
        if (pg_ != nullptr && PQstatus(pg_) != CONNECTION_OK) {
            PQfinish(pg_);
            pg_ = nullptr;
        }
        if (pg_ == nullptr) {
            pg_ = PQconnectdb(pg_url_.c_str());
            if (PQstatus(pg_) != CONNECTION_OK) {
                std::string why = PQerrorMessage(pg_);  // libpq never puts the password there
                PQfinish(pg_);
                pg_ = nullptr;
                throw std::runtime_error("PQconnectdb(): " + why);
            }
        }
        const char* values[] = {id.c_str()};
        std::unique_ptr<PGresult, void (*)(PGresult*)> result(
            PQexecParams(pg_, kSelect, 1, nullptr, values, nullptr, nullptr, 0), PQclear);
        if (PQresultStatus(result.get()) != PGRES_TUPLES_OK)
            throw std::runtime_error(std::string("PQexecParams(): ") + PQerrorMessage(pg_));
        if (PQntuples(result.get()) == 0 || PQgetisnull(result.get(), 0, 0)) return std::nullopt;
        return std::string(PQgetvalue(result.get(), 0, 0),
                           static_cast<std::size_t>(PQgetlength(result.get(), 0, 0)));
    }

    herd::Context* ctx_ = nullptr;
    std::string redis_url_, pg_url_, upstream_;
    Endpoint redis_at_;
    redisContext* redis_ = nullptr;
    PGconn* pg_ = nullptr;
    std::unique_ptr<BlockingHttp> http_;
};

}  // namespace

HERD_PLUGIN(ClientsBench)
