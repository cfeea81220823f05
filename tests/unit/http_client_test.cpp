// Tests herd's HTTP client against real loopback servers on the same event loop: URLs, the
// response parser (Content-Length, chunked, close-delimited, HEAD, 1xx, malformed), keep-alive
// reuse and the per-origin limit, connect / first-byte / total timeouts and the caller's
// deadline, the size limit, cancellation closing the connection, a stale pooled connection,
// https:// refused, and a name looked up through c-ares (/etc/hosts' localhost).
#include "client/http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "client/response_parser.hpp"
#include "client/url.hpp"

using namespace std::chrono_literals;
using namespace herd::client;
using herd::core::EventLoop;

namespace {

// ---- URLs -------------------------------------------------------------------------------

TEST(Url, TakesAnHttpUrlApart) {
    Url u = parse_url("http://127.0.0.1:8080/v1/items?id=3#frag");
    EXPECT_EQ(u.host, "127.0.0.1");
    EXPECT_EQ(u.port, 8080);
    EXPECT_EQ(u.target, "/v1/items?id=3");
    EXPECT_TRUE(u.ip_literal);
    EXPECT_EQ(u.host_header, "127.0.0.1:8080");
    EXPECT_EQ(u.origin(), "127.0.0.1:8080");
    u = parse_url("HTTP://Api.Internal");
    EXPECT_EQ(u.host, "api.internal");
    EXPECT_EQ(u.port, 80);
    EXPECT_EQ(u.target, "/");
    EXPECT_FALSE(u.ip_literal);
    EXPECT_EQ(u.host_header, "api.internal");
    u = parse_url("http://[::1]:81?q");
    EXPECT_EQ(u.host, "::1");
    EXPECT_EQ(u.target, "/?q");
    EXPECT_EQ(u.origin(), "[::1]:81");
    EXPECT_EQ(u.host_header, "[::1]:81");
}

ErrorKind kind_of(const char* url) {
    try {
        parse_url(url);
    } catch (const ClientError& e) {
        return e.kind();
    }
    ADD_FAILURE() << url << " was accepted";
    return ErrorKind::cancelled;
}

TEST(Url, RefusesHttpsAndBadUrlsSayingWhy) {
    EXPECT_EQ(kind_of("https://example.com/"), ErrorKind::unsupported);
    EXPECT_EQ(kind_of("ftp://example.com/"), ErrorKind::unsupported);
    for (const char* bad : {"example.com/x", "http://", "http://a:0/", "http://a:70000/",
                            "http://a:x/", "http://us:pw@a/", "http://a b/", "http://a/b c",
                            "http://[::1/", "http://[zz]/", "http://a/\r\nX: y"})
        EXPECT_EQ(kind_of(bad), ErrorKind::invalid) << bad;
    try {
        parse_url("https://example.com/");
    } catch (const ClientError& e) {
        EXPECT_NE(std::string(e.what()).find("no TLS"), std::string::npos) << e.what();
    }
}

// ---- the response parser ----------------------------------------------------------------

struct Collect : ResponseParser::Sink {
    std::vector<ResponseHead> heads;
    std::string body;
    int completes = 0;
    void on_head(ResponseHead&& h) override { heads.push_back(std::move(h)); }
    void on_body(std::string_view p) override { body.append(p); }
    void on_complete() override { ++completes; }
};

TEST(ResponseParser, ContentLengthInPieces) {
    Collect c;
    ResponseParser p(c);
    std::string r = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello";
    for (char ch : r) ASSERT_TRUE(p.feed(std::string_view(&ch, 1))) << p.error();
    ASSERT_EQ(c.heads.size(), 1u);
    EXPECT_EQ(c.heads[0].status, 200);
    EXPECT_EQ(c.heads[0].reason, "OK");
    ASSERT_EQ(c.heads[0].headers.size(), 2u);
    EXPECT_EQ(c.heads[0].headers[1], (std::pair<std::string, std::string>{"X-A", "1"}));
    EXPECT_EQ(c.body, "hello");
    EXPECT_TRUE(p.complete());
    EXPECT_TRUE(p.keep_alive());
    EXPECT_FALSE(p.feed("H"));  // nothing may follow
}

TEST(ResponseParser, ChunkedCloseDelimitedHeadAndInterim) {
    {
        Collect c;
        ResponseParser p(c);
        ASSERT_TRUE(
            p.feed("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: "
                   "chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"))
            << p.error();
        ASSERT_EQ(c.heads.size(), 1u);
        EXPECT_EQ(c.heads[0].status, 200);
        EXPECT_EQ(c.body, "abcde");
        EXPECT_TRUE(p.complete());
    }
    {
        Collect c;
        ResponseParser p(c);
        ASSERT_TRUE(p.feed("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"));
        EXPECT_FALSE(p.complete());
        EXPECT_TRUE(p.finish()) << p.error();
        EXPECT_EQ(c.body, "until the end");
        EXPECT_FALSE(p.keep_alive());
    }
    {
        Collect c;
        ResponseParser p(c);
        p.no_body();
        ASSERT_TRUE(p.feed("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"));
        EXPECT_TRUE(p.complete());
        EXPECT_EQ(c.body, "");
    }
}

TEST(ResponseParser, MalformedTruncatedAndOversizedResponsesAreErrors) {
    {
        Collect c;
        ResponseParser p(c);
        EXPECT_FALSE(p.feed("HTTP/1.1 2x0 OK\r\n\r\n"));
        EXPECT_NE(p.error().find("malformed"), std::string::npos) << p.error();
    }
    {
        Collect c;
        ResponseParser p(c);
        ASSERT_TRUE(p.feed("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"));
        EXPECT_FALSE(p.finish());
        EXPECT_NE(p.error().find("before the response was complete"), std::string::npos)
            << p.error();
    }
    {
        Collect c;
        ResponseParser p(c, 100);
        EXPECT_FALSE(p.feed("HTTP/1.1 200 OK\r\nX-Big: " + std::string(200, 'a') + "\r\n\r\n"));
        EXPECT_NE(p.error().find("larger than 100"), std::string::npos) << p.error();
    }
    {
        Collect c;
        ResponseParser p(c);
        EXPECT_FALSE(p.finish());  // nothing at all
    }
    {
        // An interim response has no body, whatever its headers say (found by fuzzing).
        Collect c;
        ResponseParser p(c);
        ASSERT_TRUE(
            p.feed("HTTP/1.1 130 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
            << p.error();
        ASSERT_EQ(c.heads.size(), 1u);
        EXPECT_EQ(c.heads[0].status, 200);
        EXPECT_EQ(c.body, "ok");
    }
    for (const char* status : {"000", "099", "600", "999"}) {
        Collect c;
        ResponseParser p(c);
        EXPECT_FALSE(p.feed(std::string("HTTP/1.1 ") + status + " X\r\n\r\n")) << status;
        EXPECT_NE(p.error().find("is not from 100 to 599"), std::string::npos) << p.error();
        EXPECT_TRUE(c.heads.empty());
    }
}

// ---- the client against loopback servers --------------------------------------------------

// A scripted HTTP server on 127.0.0.1 in the test's loop: each request (head, then a body of
// its Content-Length) is answered by `answer`, which returns the bytes to send (empty: send
// nothing; the connection stays open) and may ask for the connection to close after them.
class Server {
  public:
    struct Reply {
        std::string bytes;
        bool close = false;
    };
    std::function<Reply(const std::string& request, int connection)> answer;
    int accepted = 0;
    int closed_by_peer = 0;  // connections the client closed
    std::vector<std::string> requests;

    explicit Server(EventLoop& loop) : loop_(loop) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        EXPECT_EQ(::listen(fd_, 64), 0);
        socklen_t len = sizeof a;
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        loop_.add(fd_, EPOLLIN, [this](std::uint32_t) { on_accept(); });
    }
    ~Server() {
        for (auto& [fd, c] : conns_) {
            loop_.remove(fd);
            ::close(fd);
        }
        loop_.remove(fd_);
        ::close(fd_);
    }
    std::string url(const std::string& path = "/") const {
        return "http://127.0.0.1:" + std::to_string(port_) + path;
    }
    int port() const { return port_; }

  private:
    struct Conn {
        int number = 0;
        std::string in;
    };
    void on_accept() {
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) return;
        conns_[c].number = accepted++;
        loop_.add(c, EPOLLIN, [this, c](std::uint32_t) { on_read(c); });
    }
    void on_read(int fd) {
        char buf[65536];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) {
            ++closed_by_peer;
            drop(fd);
            return;
        }
        Conn& c = conns_[fd];
        c.in.append(buf, static_cast<std::size_t>(n));
        for (;;) {
            auto end = c.in.find("\r\n\r\n");
            if (end == std::string::npos) return;
            std::size_t length = 0;
            auto cl = c.in.find("Content-Length: ");
            if (cl != std::string::npos && cl < end) length = std::stoul(c.in.substr(cl + 16));
            if (c.in.size() < end + 4 + length) return;
            std::string request = c.in.substr(0, end + 4 + length);
            c.in.erase(0, end + 4 + length);
            requests.push_back(request);
            Reply r = answer(request, c.number);
            if (!r.bytes.empty()) (void)::send(fd, r.bytes.data(), r.bytes.size(), MSG_NOSIGNAL);
            if (r.close) {
                drop(fd);
                return;
            }
        }
    }
    void drop(int fd) {
        loop_.remove(fd);
        ::close(fd);
        conns_.erase(fd);
    }
    EventLoop& loop_;
    int fd_ = -1;
    int port_ = 0;
    std::map<int, Conn> conns_;
};

std::string ok(const std::string& body) {
    return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

struct Outcome {
    bool done = false;
    HttpResponse response;
    std::optional<ClientError> error;
};

struct ClientTest : ::testing::Test {
    EventLoop loop;
    Server server{loop};

    HttpHandlers collect(Outcome& o) {
        HttpHandlers h;
        h.done = [&o](HttpResponse r, const ClientError* e) {
            o.done = true;
            o.response = std::move(r);
            if (e != nullptr) o.error.emplace(*e);
        };
        return h;
    }
    // Runs the loop until pred() holds (10 s at most: then the test fails).
    void run_until(const std::function<bool()>& pred) {
        auto deadline = EventLoop::Clock::now() + 10s;
        while (!pred()) {
            ASSERT_LT(EventLoop::Clock::now(), deadline) << "timed out";
            loop.run_once(10);
        }
    }
    Outcome get(HttpClient& client, HttpRequest r) {
        Outcome o;
        client.fetch(std::move(r), collect(o));
        run_until([&] { return o.done; });
        return o;
    }
    HttpRequest req(const std::string& path = "/", const std::string& method = "GET") {
        HttpRequest r;
        r.method = method;
        r.url = server.url(path);
        return r;
    }
};

TEST_F(ClientTest, KeepAliveReusesOneConnectionForSequentialRequests) {
    server.answer = [](const std::string& r, int) {
        return Server::Reply{ok(r.substr(0, r.find(' ', 4)))};
    };
    HttpClient client(loop);
    for (int i = 0; i < 3; ++i) {
        Outcome o = get(client, req("/n" + std::to_string(i)));
        ASSERT_FALSE(o.error) << o.error->what();
        EXPECT_EQ(o.response.status, 200);
        EXPECT_EQ(o.response.body, "GET /n" + std::to_string(i));
    }
    EXPECT_EQ(server.accepted, 1);
    EXPECT_EQ(client.counts().reused, 2u);
    EXPECT_EQ(client.pool().idle, 1u);
    EXPECT_NE(server.requests[0].find("Host: 127.0.0.1:" + std::to_string(server.port())),
              std::string::npos);
}

TEST_F(ClientTest, PostSendsItsBodyAndHeaders) {
    server.answer = [](const std::string& r, int) {
        return Server::Reply{ok(r.substr(r.find("\r\n\r\n") + 4))};
    };
    HttpClient client(loop);
    HttpRequest r = req("/items", "POST");
    r.body = "{\"a\":1}";
    r.headers = {{"Content-Type", "application/json"}};
    Outcome o = get(client, r);
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(o.response.body, "{\"a\":1}");
    EXPECT_NE(server.requests[0].find("Content-Length: 7\r\n"), std::string::npos);
    EXPECT_NE(server.requests[0].find("Content-Type: application/json\r\n"), std::string::npos);
}

TEST_F(ClientTest, ChunkedAndCloseDelimitedBodies) {
    server.answer = [](const std::string& r, int) {
        if (r.starts_with("GET /chunked"))
            return Server::Reply{
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nherd\r\n0\r\n\r\n"};
        return Server::Reply{"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the close", true};
    };
    HttpClient client(loop);
    Outcome a = get(client, req("/chunked"));
    ASSERT_FALSE(a.error) << a.error->what();
    EXPECT_EQ(a.response.body, "herd");
    Outcome b = get(client, req("/close"));
    ASSERT_FALSE(b.error) << b.error->what();
    EXPECT_EQ(b.response.body, "to the close");
    EXPECT_EQ(server.accepted, 1);      // the second went on the pooled connection
    EXPECT_EQ(client.pool().open, 0u);  // which closed with its body: not pooled again
}

TEST_F(ClientTest, StreamedBodyArrivesInPiecesAfterTheHead) {
    server.answer = [](const std::string&, int) {
        return Server::Reply{ok(std::string(200000, 'x'))};
    };
    HttpClient client(loop);
    Outcome o;
    int heads = 0;
    std::size_t streamed = 0;
    HttpHandlers h = collect(o);
    h.head = [&](const HttpResponse& head) {
        ++heads;
        EXPECT_EQ(head.status, 200);
        EXPECT_EQ(head.header("content-length"), "200000");
    };
    h.body = [&](std::string_view piece) {
        EXPECT_EQ(heads, 1);
        streamed += piece.size();
    };
    client.fetch(req(), std::move(h));
    run_until([&] { return o.done; });
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(streamed, 200000u);
    EXPECT_TRUE(o.response.body.empty());
}

TEST_F(ClientTest, ConnectionRefusedNamesTheOrigin) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);  // nobody listens there now
    HttpClient client(loop);
    HttpRequest r;
    r.url = "http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "/";
    Outcome o = get(client, r);
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::connect);
    EXPECT_NE(std::string(o.error->what()).find("Connection refused"), std::string::npos)
        << o.error->what();
    EXPECT_EQ(client.counts().errors.at(ErrorKind::connect), 1u);
}

TEST_F(ClientTest, SilentServerMeetsTheFirstByteTimeoutAndTheConnectionCloses) {
    server.answer = [](const std::string&, int) { return Server::Reply{}; };
    HttpClient client(loop);
    HttpRequest r = req();
    r.first_byte_timeout = 50ms;
    Outcome o = get(client, r);
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::timeout);
    EXPECT_NE(std::string(o.error->what()).find("no response from 127.0.0.1"), std::string::npos)
        << o.error->what();
    run_until([&] { return server.closed_by_peer == 1; });
    EXPECT_EQ(client.pool().open, 0u);
}

TEST_F(ClientTest, TheCallersDeadlineBoundsEveryTimeout) {
    server.answer = [](const std::string&, int) { return Server::Reply{}; };
    HttpClient client(loop);
    HttpRequest r = req();
    r.deadline = EventLoop::Clock::now() + 50ms;  // far shorter than every default
    Outcome o = get(client, r);
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::timeout);
    EXPECT_NE(std::string(o.error->what()).find("deadline"), std::string::npos) << o.error->what();
}

TEST_F(ClientTest, ResponseOverItsLimitFailsAndIsNotPooled) {
    server.answer = [](const std::string&, int) {
        return Server::Reply{ok(std::string(5000, 'x'))};
    };
    HttpClient client(loop);
    HttpRequest r = req();
    r.max_response_bytes = 1000;
    Outcome o = get(client, r);
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::too_large);
    EXPECT_EQ(client.pool().open, 0u);
}

TEST_F(ClientTest, CancelledExchangeClosesItsConnectionAndCallsNothing) {
    server.answer = [](const std::string&, int) { return Server::Reply{}; };
    HttpClient client(loop);
    Outcome o;
    HttpClient::Id id = client.fetch(req(), collect(o));
    run_until([&] { return !server.requests.empty(); });
    EXPECT_TRUE(client.cancel(id));
    EXPECT_FALSE(client.cancel(id));
    run_until([&] { return server.closed_by_peer == 1; });
    loop.run_once(0);
    EXPECT_FALSE(o.done);
    EXPECT_EQ(client.pool().open, 0u);
}

TEST_F(ClientTest, BeyondMaxConnectionsRequestsWaitForAPooledOne) {
    server.answer = [](const std::string&, int c) { return Server::Reply{ok(std::to_string(c))}; };
    HttpClient::Options options;
    options.max_connections = 1;
    HttpClient client(loop, options);
    std::vector<Outcome> outcomes(4);
    for (auto& o : outcomes) client.fetch(req(), collect(o));
    EXPECT_EQ(client.pool().waiting, 3u);
    run_until([&] {
        return std::all_of(outcomes.begin(), outcomes.end(), [](auto& o) { return o.done; });
    });
    for (auto& o : outcomes) {
        ASSERT_FALSE(o.error) << o.error->what();
        EXPECT_EQ(o.response.body, "0");
    }
    EXPECT_EQ(server.accepted, 1);
}

TEST_F(ClientTest, PooledConnectionTheServerClosedIsReplacedForAnIdempotentRequest) {
    // The server closes each connection after its answer without saying so.
    server.answer = [](const std::string&, int c) {
        return Server::Reply{ok("conn " + std::to_string(c)), true};
    };
    HttpClient client(loop);
    Outcome a = get(client, req());
    ASSERT_FALSE(a.error) << a.error->what();
    // The pooled connection may be seen closed before the next request or only when it is
    // sent: either way the GET is answered, on a new connection.
    Outcome b = get(client, req());
    ASSERT_FALSE(b.error) << b.error->what();
    EXPECT_EQ(b.response.body, "conn 1");
}

TEST_F(ClientTest, HttpsAndBadHeadersFailThroughDoneNotInsideFetch) {
    HttpClient client(loop);
    Outcome o;
    HttpRequest r;
    r.url = "https://127.0.0.1/";
    client.fetch(r, collect(o));
    EXPECT_FALSE(o.done);  // never inside fetch()
    run_until([&] { return o.done; });
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::unsupported);
    Outcome p;
    HttpRequest bad = req();
    bad.headers = {{"X-Evil", "a\r\nInjected: 1"}};
    client.fetch(bad, collect(p));
    run_until([&] { return p.done; });
    ASSERT_TRUE(p.error);
    EXPECT_EQ(p.error->kind(), ErrorKind::invalid);
    EXPECT_TRUE(server.requests.empty());
}

TEST_F(ClientTest, HostNamesAreLookedUpThroughCares) {
    server.answer = [](const std::string&, int) { return Server::Reply{ok("by name")}; };
    HttpClient client(loop);
    HttpRequest r;
    r.url = "http://localhost:" + std::to_string(server.port()) + "/";
    Outcome o = get(client, r);
    // localhost may name ::1 first (/etc/hosts): the client tries each address in turn.
    ASSERT_FALSE(o.error) << o.error->what();
    EXPECT_EQ(o.response.body, "by name");
}

TEST_F(ClientTest, NameWithoutAnAddressFailsAsAResolveError) {
    // No name server answers (a closed loopback port): the lookup fails fast, no network.
    int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    HttpClient::Options options;
    options.resolver.servers = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    options.resolver.tries = 1;
    options.resolver.timeout = 200ms;
    HttpClient client(loop, options);
    HttpRequest r;
    r.url = "http://no-such-host.invalid/";
    Outcome o = get(client, r);
    ASSERT_TRUE(o.error);
    EXPECT_EQ(o.error->kind(), ErrorKind::resolve);
    EXPECT_NE(std::string(o.error->what()).find("no-such-host.invalid"), std::string::npos)
        << o.error->what();
}

}  // namespace
