// Tests server/http/http_parser: HttpParser over llhttp, bytes in, requests or errors out.
// Here the requests it parses (whole, in pieces, pipelined, kept alive or closing); what it
// refuses is in http_parser_errors_test, the RFC rules in http_parser_conformance_test.
#include "http/http_parser.hpp"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "http_parser_helpers.hpp"

namespace herd::http {
namespace {

using namespace parser_test;

TEST(HttpParserTest, SimpleGet) {
    HttpParser p{HttpLimits{}};
    EXPECT_EQ(p.phase(), Phase::idle);
    std::string in =
        "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n";
    std::size_t consumed = 0;
    ASSERT_EQ(feed_all(p, in, &consumed), Status::request);
    EXPECT_EQ(consumed, in.size());
    const Request& r = p.request();
    EXPECT_EQ(r.method(), "GET");
    EXPECT_EQ(r.target(), "/a/b?x=1&y=2");
    EXPECT_EQ(r.path(), "/a/b");
    EXPECT_EQ(r.query(), "x=1&y=2");
    EXPECT_EQ(r.subpath(), "/a/b");
    EXPECT_EQ(r.http_major(), 1);
    EXPECT_EQ(r.http_minor(), 1);
    ASSERT_EQ(r.headers().size(), 3u);
    EXPECT_EQ(r.headers()[0].name, "Host");
    EXPECT_EQ(r.headers()[0].value, "example.com");
    EXPECT_EQ(r.headers()[1].name, "User-Agent");
    EXPECT_EQ(r.headers()[1].value, "test");
    EXPECT_EQ(r.headers()[2].name, "Accept");
    EXPECT_EQ(r.headers()[2].value, "*/*");
    EXPECT_EQ(r.body(), "");
    EXPECT_TRUE(r.keep_alive());
    EXPECT_FALSE(p.must_close());
    EXPECT_FALSE(p.expects_continue());
    EXPECT_EQ(p.error_status(), 0);
}

TEST(HttpParserTest, HeaderLookupIsCaseInsensitive) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "GET / HTTP/1.1\r\nX-Thing: one\r\nx-thing: two\r\nHOST: h\r\n\r\n"),
              Status::request);
    const Request& r = p.request();
    EXPECT_EQ(r.header("x-thing"), "one");  // the first of that name
    EXPECT_EQ(r.header("X-THING"), "one");
    EXPECT_EQ(r.header("host"), "h");
    EXPECT_EQ(r.header("Host"), "h");
    EXPECT_FALSE(r.header("hos").has_value());
    EXPECT_FALSE(r.header("x-thing2").has_value());
}

TEST(HttpParserTest, EmptyHeaderValue) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nY: 1\r\n\r\n"),
              Status::request);
    ASSERT_EQ(p.request().headers().size(), 3u);
    EXPECT_EQ(p.request().header("x-empty"), "");
    EXPECT_EQ(p.request().header("y"), "1");
}

TEST(HttpParserTest, QueryAndSubpath) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "GET /api/users? HTTP/1.1\r\nHost: h\r\n\r\n"), Status::request);
    EXPECT_EQ(p.request().path(), "/api/users");
    EXPECT_EQ(p.request().query(), "");
    p.set_mount_length(4);
    EXPECT_EQ(p.request().subpath(), "/users");
    p.next();
    ASSERT_EQ(feed_all(p, "GET /api HTTP/1.1\r\nHost: h\r\n\r\n"), Status::request);
    EXPECT_EQ(p.request().query(), "");
    p.set_mount_length(4);
    EXPECT_EQ(p.request().subpath(), "/");
}

TEST(HttpParserTest, ContentLengthBody) {
    HttpParser p{HttpLimits{}};
    std::string in = "POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world";
    std::size_t consumed = 0;
    ASSERT_EQ(feed_all(p, in, &consumed), Status::request);
    EXPECT_EQ(consumed, in.size());
    EXPECT_EQ(p.request().method(), "POST");
    EXPECT_EQ(p.request().body(), "hello world");
    EXPECT_EQ(p.request().header("content-length"), "11");
}

TEST(HttpParserTest, ChunkedBodyIsDecoded) {
    HttpParser p{HttpLimits{}};
    std::string in =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n";
    std::size_t consumed = 0;
    ASSERT_EQ(feed_all(p, in, &consumed), Status::request) << p.error_reason();
    EXPECT_EQ(consumed, in.size());
    EXPECT_EQ(p.request().body(), "hello 0123456789");
    EXPECT_TRUE(p.request().keep_alive());
}

TEST(HttpParserTest, PipelinedRequestsInOneBuffer) {
    HttpParser p{HttpLimits{}};
    std::string first = "POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nA: 1\r\n\r\nabc";
    std::string second = "GET /two HTTP/1.1\r\nHost: h\r\nB: 2\r\n\r\n";
    std::string third = "GET /three HTTP/1.1\r\nHost: h\r\n";
    std::string in = first + second + third;
    std::size_t consumed = 0;
    ASSERT_EQ(feed_all(p, in, &consumed), Status::request);
    EXPECT_EQ(consumed, first.size());
    EXPECT_EQ(p.request().target(), "/one");
    EXPECT_EQ(p.request().body(), "abc");
    p.next();

    std::string_view rest = std::string_view(in).substr(consumed);
    ASSERT_EQ(feed_all(p, rest, &consumed), Status::request);
    EXPECT_EQ(consumed, second.size());
    EXPECT_EQ(p.request().target(), "/two");
    EXPECT_EQ(p.request().body(), "");
    EXPECT_EQ(p.request().header("b"), "2");
    EXPECT_FALSE(p.request().header("a").has_value());
    p.next();

    rest = rest.substr(consumed);
    EXPECT_EQ(feed_all(p, rest, &consumed), Status::need_more);
    EXPECT_EQ(consumed, third.size());
    EXPECT_EQ(p.phase(), Phase::headers);
    ASSERT_EQ(feed_all(p, "\r\n"), Status::request);
    EXPECT_EQ(p.request().target(), "/three");
}

TEST(HttpParserTest, ByteByByteGivesTheSameResult) {
    std::string in =
        "POST /x/y?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-Long-Header-Name: "
        "some value\r\n\r\nhello"
        "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX: "
        "y\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        "GET / HTTP/1.0\r\n\r\n";
    std::vector<Snapshot> whole = parse_in_steps(in, in.size());
    ASSERT_EQ(whole.size(), 3u);
    EXPECT_EQ(whole[0].body, "hello");
    EXPECT_EQ(whole[0].query, "q=1");
    EXPECT_EQ(whole[1].body, "abcde");
    EXPECT_EQ(whole[1].headers.size(), 3u);
    EXPECT_FALSE(whole[2].keep_alive);
    for (std::size_t step : {1u, 2u, 3u, 7u}) {
        std::vector<Snapshot> split = parse_in_steps(in, step);
        ASSERT_EQ(split.size(), whole.size()) << "step " << step;
        for (std::size_t i = 0; i < whole.size(); ++i)
            EXPECT_TRUE(split[i] == whole[i]) << "step " << step << ", request " << i;
    }
}

TEST(HttpParserTest, ViewsOutliveTheReadBufferWhereverItIsCut) {
    // A head with many long fields (what is kept from earlier reads grows and moves several
    // times), a body, then a pipelined request: cut into pieces of every size up to 64, each
    // piece read into the same buffer.
    std::string in = "POST /upload/file?name=a%20b HTTP/1.1\r\nHost: example.com\r\n";
    for (int i = 0; i < 40; ++i)
        in += "X-Field-" + std::to_string(i) + ": " +
              std::string(20 + i, static_cast<char>('a' + i % 26)) + "\r\n";
    in += "Content-Length: 11\r\n\r\nhello world";
    in += "GET /next HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n";
    std::vector<Snapshot> whole = parse_in_steps(in, in.size());
    ASSERT_EQ(whole.size(), 2u);
    EXPECT_EQ(whole[0].headers.size(), 42u);
    EXPECT_EQ(whole[0].headers[41].second, "11");
    EXPECT_EQ(whole[0].body, "hello world");
    EXPECT_EQ(whole[1].target, "/next");
    for (std::size_t step = 1; step <= 64; ++step) {
        std::vector<Snapshot> split = parse_in_steps(in, step);
        ASSERT_EQ(split.size(), whole.size()) << "step " << step;
        for (std::size_t i = 0; i < whole.size(); ++i)
            EXPECT_TRUE(split[i] == whole[i]) << "step " << step << ", request " << i;
    }
}

TEST(HttpParserTest, Http10WithoutKeepAliveMustClose) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "GET / HTTP/1.0\r\nHost: h\r\n\r\n"), Status::request);
    EXPECT_EQ(p.request().http_major(), 1);
    EXPECT_EQ(p.request().http_minor(), 0);
    EXPECT_FALSE(p.request().keep_alive());
    EXPECT_TRUE(p.must_close());
}

TEST(HttpParserTest, Http10WithKeepAliveStaysOpen) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), Status::request);
    EXPECT_FALSE(p.must_close());
}

TEST(HttpParserTest, ConnectionCloseMustClose) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
              Status::request);
    EXPECT_TRUE(p.must_close());
    EXPECT_FALSE(p.request().keep_alive());
}

TEST(HttpParserTest, NoRequestIsParsedAfterAClosingOne) {
    // What a client pipelines after "Connection: close" is never answered: llhttp in strict
    // mode calls it an error (without LLHTTP_STRICT_MODE it silently swallows it).
    for (std::string_view first :
         {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"}) {
        HttpParser p{HttpLimits{}};
        ASSERT_EQ(feed_all(p, first), Status::request);
        ASSERT_TRUE(p.must_close());
        p.next();
        EXPECT_NE(feed_all(p, "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"), Status::request) << first;
        EXPECT_NE(p.request().target(), "/2");
    }
}

TEST(HttpParserTest, KeepAliveIsResetForEachRequest) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "GET /1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"),
              Status::request);
    EXPECT_FALSE(p.must_close());
    p.next();
    ASSERT_EQ(feed_all(p, "GET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"),
              Status::request);
    EXPECT_TRUE(p.must_close());
}

TEST(HttpParserTest, UpgradeIsAnsweredThenClosed) {
    HttpParser p{HttpLimits{}};
    std::string in =
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    std::size_t consumed = 0;
    std::string read =
        in + "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";  // the request's views point into it
    ASSERT_EQ(feed_all(p, read, &consumed), Status::request);
    EXPECT_EQ(consumed, in.size());
    EXPECT_EQ(p.request().target(), "/ws");
    EXPECT_TRUE(p.must_close());
}

TEST(HttpParserTest, NothingParsesAfterAnUpgrade) {
    HttpParser p{HttpLimits{}};
    std::string in =
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    ASSERT_EQ(feed_all(p, in), Status::request);
    p.next();
    std::size_t consumed = 0;
    // The connection must close after an upgrade request; the parser must not hand out the
    // same request again (a caller looping "while input left" would never end).
    EXPECT_NE(feed_all(p, "GET /next HTTP/1.1\r\nHost: h\r\n\r\n", &consumed), Status::request);
}

TEST(HttpParserTest, ExpectContinueIsSeenAfterHeaders) {
    HttpParser p{HttpLimits{}};
    std::size_t consumed = 0;
    std::string head =
        "PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n";
    ASSERT_EQ(feed_all(p, head, &consumed), Status::need_more);
    EXPECT_EQ(consumed, head.size());
    EXPECT_TRUE(p.expects_continue());
    EXPECT_EQ(p.phase(), Phase::body);
    ASSERT_EQ(feed_all(p, "da"), Status::need_more);
    EXPECT_TRUE(p.expects_continue());
    ASSERT_EQ(feed_all(p, "ta"), Status::request);
    EXPECT_EQ(p.request().body(), "data");
    EXPECT_FALSE(p.expects_continue());  // answered: no 100 Continue after the request
    p.next();
    ASSERT_EQ(feed_all(p, "PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n"),
              Status::need_more);
    EXPECT_FALSE(p.expects_continue());
}

TEST(HttpParserTest, ExpectContinueIsAList) {
    for (std::string_view e :
         {"100-continue", "100-CONTINUE", ", 100-continue", "100-continue ,,"}) {
        HttpParser p{HttpLimits{}};
        ASSERT_EQ(feed_all(p, "PUT / HTTP/1.1\r\nHost: h\r\nExpect: " + std::string(e) +
                                  "\r\nContent-Length: 1\r\n\r\n"),
                  Status::need_more)
            << p.error_reason();
        EXPECT_TRUE(p.expects_continue()) << e;
    }
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "PUT / HTTP/1.1\r\nHost: h\r\nExpect:\r\nContent-Length: 1\r\n\r\n"),
              Status::need_more);
    EXPECT_FALSE(p.expects_continue());
}

TEST(HttpParserTest, ExpectContinueIsIgnoredInHttp10) {
    // RFC 9110 10.1.1: a server MUST ignore a 100-continue expectation in HTTP/1.0.
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"),
              Status::need_more);
    EXPECT_FALSE(p.expects_continue());
}

TEST(HttpParserTest, Phases) {
    HttpParser p{HttpLimits{}};
    EXPECT_EQ(p.phase(), Phase::idle);
    ASSERT_EQ(feed_all(p, "PO"), Status::need_more);
    EXPECT_EQ(p.phase(), Phase::headers);
    ASSERT_EQ(feed_all(p, "ST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n"), Status::need_more);
    EXPECT_EQ(p.phase(), Phase::headers);
    ASSERT_EQ(feed_all(p, "\r\n"), Status::need_more);
    EXPECT_EQ(p.phase(), Phase::body);
    ASSERT_EQ(feed_all(p, "x"), Status::need_more);
    EXPECT_EQ(p.phase(), Phase::body);
    ASSERT_EQ(feed_all(p, "y"), Status::request);
    p.next();
    EXPECT_EQ(p.phase(), Phase::idle);
    ASSERT_EQ(feed_all(p, "G"), Status::need_more);
    EXPECT_EQ(p.phase(), Phase::headers);
}

TEST(HttpParserTest, HeaderStorageIsReusedAcrossRequests) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "GET /1 HTTP/1.1\r\nHost: h\r\nAaa: 1\r\nBbb: 2\r\nCcc: 3\r\n\r\n"),
              Status::request);
    ASSERT_EQ(p.request().headers().size(), 4u);
    p.next();
    ASSERT_EQ(feed_all(p, "GET /2 HTTP/1.1\r\nD: 4\r\nHost: h\r\n\r\n"), Status::request);
    const Request& r = p.request();
    ASSERT_EQ(r.headers().size(), 2u);
    EXPECT_EQ(r.headers()[0].name, "D");  // not "Host" with "D" appended
    EXPECT_EQ(r.headers()[0].value, "4");
    EXPECT_FALSE(r.header("aaa").has_value());
    EXPECT_FALSE(r.header("bbb").has_value());
    EXPECT_FALSE(r.header("ccc").has_value());
    p.next();
    ASSERT_EQ(feed_all(p, "GET /3 HTTP/1.0\r\n\r\n"), Status::request);
    EXPECT_TRUE(p.request().headers().empty());
    EXPECT_EQ(p.request().body(), "");
}

TEST(HttpParserTest, BodyDoesNotLeakIntoTheNextRequest) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"),
              Status::request);
    p.next();
    ASSERT_EQ(feed_all(p, "GET /?x HTTP/1.1\r\nHost: h\r\n\r\n"), Status::request);
    EXPECT_EQ(p.request().body(), "");
    EXPECT_EQ(p.request().method(), "GET");
    EXPECT_EQ(p.request().target(), "/?x");
}

TEST(HttpParserTest, HeaderSplitInsideNameAndValue) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p, "GET / HTTP/1.1\r\nHost: h\r\nX-Fi"), Status::need_more);
    ASSERT_EQ(feed_all(p, "rst: val"), Status::need_more);
    ASSERT_EQ(feed_all(p, "ue1\r\nSec"), Status::need_more);
    ASSERT_EQ(feed_all(p, "ond: v2\r\n\r\n"), Status::request);
    ASSERT_EQ(p.request().headers().size(), 3u);
    EXPECT_EQ(p.request().header("x-first"), "value1");
    EXPECT_EQ(p.request().header("second"), "v2");
}

TEST(HttpParserTest, TrailingWhitespaceIsNotPartOfTheValue) {
    HttpParser p{HttpLimits{}};
    ASSERT_EQ(feed_all(p,
                       "GET / HTTP/1.1\r\nHost: h\r\nX:   a  \r\nExpect: 100-continue \r\n"
                       "Content-Length: 1\r\n\r\n"),
              Status::need_more);
    EXPECT_EQ(p.request().header("x"), "a");
    EXPECT_TRUE(p.expects_continue());
}

}  // namespace
}  // namespace herd::http
