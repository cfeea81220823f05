// Tests server/http/http_parser against RFC 9110 and RFC 9112 (the README's "HTTP conformance"
// table): the Host, Expect and Transfer-Encoding rules, versions, methods, request-target
// forms, chunked bodies and trailers.
#include "http/http_parser.hpp"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "http_parser_helpers.hpp"

namespace herd::http {
namespace {

using namespace parser_test;

TEST(HttpRulesTest, ValidHost) {
    for (std::string_view ok :
         {"", "a", "a.example", "a.example:8080", "a.example:", "1.2.3.4:80", "[::1]", "[::1]:8080",
          "[v1.x]", "a_b~c!$&'()*+,;=", "%41b", "xn--bcher-kva.example"})
        EXPECT_TRUE(valid_host(ok)) << ok;
    for (std::string_view bad : {"a b", "a/b", "u@a", "a:b", "a:80:80", "[::1", "[]", "a\"b", ":80",
                                 "a%zz", "a%4", "a.example:80x", "a\tb", "[::1]x", "a?b", "a#b"})
        EXPECT_FALSE(valid_host(bad)) << bad;
}

TEST(HttpRulesTest, Expectations) {
    EXPECT_EQ(classify_expectation(""), Expectation::none);
    EXPECT_EQ(classify_expectation(" , ,"), Expectation::none);
    EXPECT_EQ(classify_expectation("100-continue"), Expectation::continue_100);
    EXPECT_EQ(classify_expectation("100-Continue , ,100-continue"), Expectation::continue_100);
    EXPECT_EQ(classify_expectation("100-continue, foo"), Expectation::other);
    EXPECT_EQ(classify_expectation("foo, 100-continue"), Expectation::other);
    EXPECT_EQ(classify_expectation("100-continue=1"), Expectation::other);
}

TEST(HttpRulesTest, OnlyChunked) {
    EXPECT_TRUE(only_chunked("chunked"));
    EXPECT_TRUE(only_chunked(" ,Chunked, "));
    EXPECT_FALSE(only_chunked("gzip, chunked"));
    EXPECT_FALSE(only_chunked("chunked;x=1"));
}

TEST(HttpParserErrorTest, Http11NeedsExactlyOneValidHost) {
    // RFC 9112 3.2: 400 for an HTTP/1.1 request without Host, and for any request with more
    // than one Host line or an invalid one.
    expect_error("GET / HTTP/1.1\r\n\r\n", 400, "without a Host");
    expect_error("GET / HTTP/1.1\r\nX-Host: h\r\n\r\n", 400, "without a Host");
    expect_error("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 400, "more than one Host");
    expect_error("GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n", 400, "more than one Host");
    expect_error("GET / HTTP/1.0\r\nHost: a b\r\n\r\n", 400, "invalid Host");
    expect_error("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, "invalid Host");
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "GET / HTTP/1.0\r\n\r\n"), Status::request);
    EXPECT_FALSE(p.request().header("host").has_value());
}

TEST(HttpParserErrorTest, AKeptAliveConnectionsHostIsStillCheckedWhenItChanges) {
    // The last valid Host is remembered per connection (a compare instead of a scan): a
    // different value on the same connection is checked again.
    HttpParser p{HttpLimits{}};
    for (int i = 0; i < 2; ++i) {
        ASSERT_EQ(feed_all(p, "GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n"), Status::request)
            << p.error_reason();
        EXPECT_EQ(p.request().header("host"), "a.example:8080");
        p.next();
    }
    ASSERT_EQ(feed_all(p, "GET / HTTP/1.1\r\nHost: a.example:80x\r\n\r\n"), Status::error);
    EXPECT_EQ(p.error_status(), 400);
    HttpParser q{HttpLimits{}};
    ASSERT_EQ(feed_all(q, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Status::request);
    q.next();
    ASSERT_EQ(feed_all(q, "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), Status::error);
}

TEST(HttpParserTest, HigherMinorVersionsAreServedAsHttp11) {
    for (std::string_view v : {"HTTP/1.2", "HTTP/1.9"}) {
        HttpParser p{HttpLimits{}};
        ASSERT_EQ(feed_all(p, "GET / " + std::string(v) + "\r\nHost: h\r\n\r\n"), Status::request)
            << p.error_reason();
        EXPECT_EQ(p.request().http_major(), 1);
        EXPECT_EQ(p.request().http_minor(), 1);
        EXPECT_FALSE(p.must_close());
        p.next();
        ASSERT_EQ(feed_all(p, "GET /2 " + std::string(v) + "\r\n\r\n"), Status::error);
        EXPECT_EQ(p.error_status(), 400);  // 1.1 rules: Host
    }
}

TEST(HttpParserErrorTest, OtherMajorVersionsAre505) {
    for (std::string_view v : {"HTTP/0.9", "HTTP/2.0", "HTTP/3.0", "HTTP/9.9"})
        expect_error("GET / " + std::string(v) + "\r\nHost: h\r\n\r\n", 505, "not supported");
    expect_error("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/2");
}

TEST(HttpParserErrorTest, VersionMustBeHttpDigitDotDigit) {
    for (std::string_view v : {"http/1.1", "RTSP/1.0", "ICE/1.0", "HTTP/1.10", "HTTP/1",
                               "HTTP/11.1", "HTTP/1.1x", "HTTP/1.a"})
        expect_error("GET / " + std::string(v) + "\r\nHost: h\r\n\r\n", 400);
    // Wherever the request line is cut (the version is checked at its end).
    std::string in = "GET /some/path RTSP/1.0\r\nHost: h\r\n\r\n";
    for (std::size_t cut = 1; cut < in.size(); ++cut) {
        HttpParser p{HttpLimits{}};
        std::size_t consumed = 0;
        Status s = p.feed(in.data(), cut, consumed);
        if (s != Status::error) s = p.feed(in.data() + cut, in.size() - cut, consumed);
        EXPECT_EQ(s, Status::error) << "cut at " << cut;
        EXPECT_EQ(p.error_status(), 400) << "cut at " << cut;
    }
}

TEST(HttpParserErrorTest, UnknownMethodsAre501) {
    // RFC 9110 9.1: 501 for a method the server does not implement; a method is a token,
    // case-sensitive; anything else in its place is no request line (400).
    for (std::string_view m : {"FOO", "get", "GE", "HEADX", "PLAY", "SETUP", "M-SEARCHX"})
        expect_error(std::string(m) + " / HTTP/1.1\r\nHost: h\r\n\r\n", 501, "");
    expect_error(std::string(40, 'X'), 501, "longer");
    for (std::string_view m : {"G@T", "(GET)", " GET", "GET\x01", "\x16\x03\x01", "G T", "FOO /a"})
        expect_error(std::string(m) + " / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "");
    // 501 only for a request line that is one but for its method.
    for (std::string_view line : {"this is not http", "FOO / HTTP/1.1x", "FOO / http/1.1",
                                  "FOO  / HTTP/1.1", "FOO / HTTP/1.1 "})
        expect_error(std::string(line) + "\r\n\r\n", 400, "");
    // The same answer however the request line is cut, and after a request.
    for (std::string in :
         {"FOO / HTTP/1.1\r\n\r\n", "PROPFOO / HTTP/1.1\r\n\r\n", "PROPF@ / HTTP/1.1\r\n\r\n",
          "GET / HTTP/1.1\r\nHost: h\r\n\r\nXGET /x HTTP/1.1\r\n"}) {
        int want = in.find('@') == std::string::npos ? 501 : 400;
        for (std::size_t cut = 1; cut < in.size(); ++cut) {
            HttpParser p{HttpLimits{}};
            std::size_t pos = 0, consumed = 0;
            Status s = Status::need_more;
            for (std::size_t end : {cut, in.size()}) {
                while (pos < end && s != Status::error) {
                    s = p.feed(in.data() + pos, end - pos, consumed);
                    pos += consumed;
                    if (s == Status::request) p.next();
                }
            }
            EXPECT_EQ(s, Status::error) << in << " cut at " << cut;
            EXPECT_EQ(p.error_status(), want)
                << in << " cut at " << cut << ": " << p.error_reason();
        }
    }
}

TEST(HttpParserErrorTest, ConnectIs501) {
    // RFC 9110 9.3.6: a 2xx to CONNECT opens a tunnel; herd opens none.
    expect_error("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 501, "CONNECT");
    expect_error("CONNECT / HTTP/1.1\r\nHost: h\r\n\r\n", 501, "CONNECT");
}

TEST(HttpParserTest, TargetForms) {
    HttpParser p{HttpLimits{}};
    // RFC 9112 3.2.4: "*" with OPTIONS; its path is "*".
    ASSERT_EQ(feed_all(p, "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), Status::request);
    EXPECT_EQ(p.request().path(), "*");
    p.next();
    // 3.2.2: absolute-form; the authority replaces Host.
    ASSERT_EQ(feed_all(p, "GET hTTp://a.example:81/x/y?q HTTP/1.1\r\nHost: b\r\nX: 1\r\n\r\n"),
              Status::request)
        << p.error_reason();
    EXPECT_EQ(p.request().path(), "/x/y");
    EXPECT_EQ(p.request().query(), "q");
    EXPECT_EQ(p.request().header("host"), "a.example:81");
    ASSERT_EQ(p.request().headers().size(), 2u);
    p.next();
    ASSERT_EQ(feed_all(p, "GET https://a?q HTTP/1.1\r\nHost: b\r\n\r\n"), Status::request);
    EXPECT_EQ(p.request().path(), "");
    EXPECT_EQ(p.request().query(), "q");
    EXPECT_EQ(p.request().header("host"), "a");
    p.next();
    // HTTP/1.0 without Host: the authority is the request's Host.
    ASSERT_EQ(feed_all(p, "GET http://a.example/z HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
              Status::request);
    EXPECT_EQ(p.request().header("host"), "a.example");
    EXPECT_EQ(p.request().headers().size(), 2u);
}

TEST(HttpParserTest, AbsoluteFormHostOutlivesTheReadBuffer) {
    std::string in =
        "GET http://a.example:8080/p?q=1 HTTP/1.1\r\nHost: other\r\nContent-Length: 3\r\n\r\nabc"
        "GET http://b.example/ HTTP/1.0\r\n\r\n";
    std::vector<Snapshot> whole = parse_in_steps(in, in.size());
    ASSERT_EQ(whole.size(), 2u);
    EXPECT_EQ(whole[0].headers[0],
              std::make_pair(std::string("Host"), std::string("a.example:8080")));
    EXPECT_EQ(whole[1].headers[0], std::make_pair(std::string("Host"), std::string("b.example")));
    for (std::size_t step = 1; step <= 40; ++step) {
        std::vector<Snapshot> split = parse_in_steps(in, step);
        ASSERT_EQ(split.size(), whole.size()) << "step " << step;
        for (std::size_t i = 0; i < whole.size(); ++i)
            EXPECT_TRUE(split[i] == whole[i]) << "step " << step << ", request " << i;
    }
}

TEST(HttpParserErrorTest, TargetFormRefusals) {
    expect_error("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400, "OPTIONS");
    expect_error("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", 400, "neither");
    expect_error("GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400, "fragment");
    expect_error("GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n", 400, "valid host");
    expect_error("GET http://:80/p HTTP/1.1\r\nHost: h\r\n\r\n", 400, "valid host");
    expect_error("GET http://a b/p HTTP/1.1\r\nHost: h\r\n\r\n", 400);
    expect_error("GET http://u:p@a/p HTTP/1.1\r\nHost: h\r\n\r\n", 400, "userinfo");
    expect_error("GET ftp://a/p HTTP/1.1\r\nHost: h\r\n\r\n", 400, "scheme");
    expect_error("GET http://a/p HTTP/1.1\r\n\r\n", 400, "without a Host");
}

TEST(HttpParserErrorTest, TransferEncodingInHttp10Is400) {
    // RFC 9112 6.1: faulty framing.
    expect_error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "HTTP/1.0");
}

TEST(HttpParserTest, UpgradeIsIgnoredInHttp10) {
    // RFC 9110 7.8: a keep-alive HTTP/1.0 request with Upgrade stays a keep-alive request.
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(
        feed_all(p, "GET / HTTP/1.0\r\nConnection: Upgrade, keep-alive\r\nUpgrade: x\r\n\r\n"),
        Status::request);
    EXPECT_FALSE(p.must_close());
    p.next();
    ASSERT_EQ(feed_all(p, "GET /2 HTTP/1.0\r\n\r\n"), Status::request);
    EXPECT_EQ(p.request().target(), "/2");
}

TEST(HttpParserTest, HeadIsKnownForRefusals) {
    // RFC 9110 9.3.2: herd's refusal of a HEAD carries no content; the parser says which.
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "HEAD / HTTP/2.0\r\nHost: h\r\n\r\n"), Status::error);
    EXPECT_TRUE(p.head_request());
    HttpParser q{HttpLimits{}};
    ASSERT_EQ(feed_all(q, "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n"), Status::request);
    EXPECT_TRUE(q.head_request());
    q.next();
    EXPECT_FALSE(q.head_request());
    ASSERT_EQ(feed_all(q, "FOO / HTTP/1.1\r\n\r\n"), Status::error);
    EXPECT_FALSE(q.head_request());
}

TEST(HttpParserTest, ChunkExtensionsAreIgnored) {
    // RFC 9112 7.1.1, which llhttp 8.1 does not follow ("5;a=b;c=d", BWS, quoted pairs).
    for (std::string_view line :
         {"5;a", "5;a=b", "5;a=b;c=d", "5;a=\"b;c\"", "5 ;a", "5\t; a = b ; c", "5;a=\"q\\\"x\"",
          "5;a=\"\t\x80\"", "5;a;b;c=d;e=\"f\"", "05", "0000000005"}) {
        HttpParser p{HttpLimits{}};
        std::string in = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
                         std::string(line) + "\r\nhello\r\n0;x=\"y\"\r\n\r\n";
        std::size_t consumed = 0;
        ASSERT_EQ(feed_all(p, in, &consumed), Status::request) << line << ": " << p.error_reason();
        EXPECT_EQ(consumed, in.size());
        EXPECT_EQ(p.request().body(), "hello");
    }
}

TEST(HttpParserErrorTest, MalformedChunkedBodies) {
    for (std::string_view framing : {"5;\r\nhello\r\n0\r\n\r\n",
                                     "5 \r\nhello\r\n0\r\n\r\n",
                                     "5;a=\r\nhello\r\n0\r\n\r\n",
                                     "5;a=\"b\r\nhello\r\n0\r\n\r\n",
                                     "5;a b\r\nhello\r\n0\r\n\r\n",
                                     "5;a=b c\r\nhello\r\n0\r\n\r\n",
                                     ";a\r\nhello\r\n0\r\n\r\n",
                                     "5\r\nhelloX\r\n0\r\n\r\n",
                                     "5\nhello\r\n0\r\n\r\n",
                                     "5\r\nhello\n0\r\n\r\n",
                                     "5\rhello\r\n0\r\n\r\n",
                                     "0\r\n\n",
                                     "0\r\n\r\r",
                                     "x\r\n",
                                     "10000000000000000\r\n",
                                     "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n",
                                     "0\r\nX : t\r\n\r\n",
                                     "0\r\n X: t\r\n\r\n",
                                     "0\r\nX: a\r\n b\r\n\r\n",
                                     "0\r\nX: a\x01\r\n\r\n",
                                     "0\r\nX: a\x7f\r\n\r\n",
                                     "0\r\nX\r\n\r\n",
                                     "0\r\nX: t\n\r\n",
                                     "0\r\n: t\r\n\r\n"})
        expect_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
                         std::string(framing),
                     400, "chunk");
    // Extensions and trailers are bounded by max_header_bytes.
    HttpLimits limits;
    limits.max_header_bytes = 100;
    expect_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1;" +
                     std::string(200, 'e') + "\r\n",
                 431, "chunk extensions", limits);
    expect_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: " +
                     std::string(200, 't') + "\r\n",
                 431, "trailer", limits);
}

TEST(HttpParserTest, TrailersAreNotMergedIntoTheHeaders) {
    // RFC 9110 6.5.1: a trailer field is not merged into the header section.
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p,
                       "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3\r\nabc\r\n0\r\nHost: evil\r\nContent-Length: 9\r\nX-T:\r\n\r\n"),
              Status::request)
        << p.error_reason();
    EXPECT_EQ(p.request().body(), "abc");
    ASSERT_EQ(p.request().headers().size(), 2u);
    EXPECT_EQ(p.request().header("host"), "h");
    EXPECT_FALSE(p.request().header("x-t").has_value());
}

TEST(HttpParserTest, ChunkedBodiesWhereverTheReadsAreCut) {
    // The chunked decoder against the same input cut at every size, with views kept, and the
    // requests after it parsed from a clean state; Expect: 100-continue holds until the end.
    std::string in =
        "POST /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3;x=\"a\\\"b\" ; y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\nU:  v \r\n\r\n"
        "POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n"
        "GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
    std::vector<Snapshot> whole = parse_in_steps(in, in.size());
    ASSERT_EQ(whole.size(), 3u);
    EXPECT_EQ(whole[0].body, "abc0123456789abcdef");
    EXPECT_EQ(whole[1].body, "z");
    EXPECT_EQ(whole[2].target, "/c");
    for (std::size_t step = 1; step <= 64; ++step) {
        std::vector<Snapshot> split = parse_in_steps(in, step);
        ASSERT_EQ(split.size(), whole.size()) << "step " << step;
        for (std::size_t i = 0; i < whole.size(); ++i)
            EXPECT_TRUE(split[i] == whole[i]) << "step " << step << ", request " << i;
    }
    HttpParser p{HttpLimits{}};
    std::size_t consumed = 0;
    std::string head = in.substr(0, in.find("3;x"));
    ASSERT_EQ(feed_all(p, head, &consumed), Status::need_more);
    EXPECT_TRUE(p.expects_continue());
    EXPECT_EQ(p.phase(), Phase::body);
    ASSERT_EQ(feed_all(p, "3\r\nab"), Status::need_more);
    EXPECT_TRUE(p.expects_continue());
    ASSERT_EQ(feed_all(p, "c\r\n0\r\n\r\n"), Status::request);
    EXPECT_FALSE(p.expects_continue());
}

TEST(HttpParserTest, UpgradeWithAChunkedBody) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p,
                       "POST / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
              Status::request)
        << p.error_reason();
    EXPECT_EQ(p.request().body(), "hi");
    EXPECT_TRUE(p.must_close());
}

}  // namespace
}  // namespace herd::http
