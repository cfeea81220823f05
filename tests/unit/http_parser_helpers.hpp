// Helpers of the HttpParser tests (http_parser_test, http_parser_errors_test,
// http_parser_conformance_test): input fed whole or in pieces, a copy of a parsed request to
// compare parses, and a refusal expected with its status.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "http/http_parser.hpp"

namespace herd::http::parser_test {

using Status = HttpParser::Status;
using Phase = HttpParser::Phase;

// Feeds the whole of `input` in one call and expects it to be consumed by one request.
inline Status feed_all(HttpParser& p, std::string_view input, std::size_t* consumed_out = nullptr) {
    std::size_t consumed = 0;
    Status s = p.feed(input.data(), input.size(), consumed);
    if (consumed_out) *consumed_out = consumed;
    return s;
}

// A copy of what a plugin would see, to compare two parses.
struct Snapshot {
    std::string method, target, path, query, body;
    std::vector<std::pair<std::string, std::string>> headers;
    int major = 0, minor = 0;
    bool keep_alive = false;

    static Snapshot of(const Request& r) {
        Snapshot s{std::string(r.method()), std::string(r.target()), std::string(r.path()),
                   std::string(r.query()),  std::string(r.body()),   {},
                   r.http_major(),          r.http_minor(),          r.keep_alive()};
        for (const Header& h : r.headers()) s.headers.emplace_back(h.name, h.value);
        return s;
    }
    bool operator==(const Snapshot&) const = default;
};

// Parses every request in `input`, feeding it in pieces of at most `step` bytes. Each piece is
// copied into one buffer, overwritten after each feed, as the worker's read buffer is: the
// request's views must not point into an earlier piece.
inline std::vector<Snapshot> parse_in_steps(std::string_view input, std::size_t step) {
    HttpParser p{HttpLimits{}};
    std::vector<Snapshot> out;
    std::string buffer(step, '#');
    std::size_t pos = 0;
    while (pos < input.size()) {
        std::size_t n = std::min(step, input.size() - pos);
        std::size_t consumed = 0;
        buffer.replace(0, n, input.substr(pos, n));
        Status s = p.feed(buffer.data(), n, consumed);
        EXPECT_NE(s, Status::error) << p.error_reason();
        if (s == Status::error) break;
        pos += consumed;
        if (s == Status::request) {
            out.push_back(Snapshot::of(p.request()));
            p.next();
        } else {
            EXPECT_EQ(consumed, n);
        }
        buffer.assign(step, '#');  // the next read's bytes
    }
    return out;
}

inline void expect_error(std::string_view input, int status, std::string_view reason_part = {},
                         const HttpLimits& limits = HttpLimits{}) {
    HttpParser p{limits};
    std::size_t consumed = 0;
    Status s = p.feed(input.data(), input.size(), consumed);
    ASSERT_EQ(s, Status::error) << "input: " << input;
    EXPECT_EQ(p.error_status(), status) << p.error_reason();
    EXPECT_FALSE(p.error_reason().empty());
    EXPECT_NE(p.error_reason().find(reason_part), std::string::npos) << p.error_reason();
    EXPECT_LE(consumed, input.size());
    // An error is final: nothing more is parsed.
    EXPECT_EQ(p.feed("GET / HTTP/1.1\r\nHost: h\r\n\r\n", 18, consumed), Status::error);
    EXPECT_EQ(consumed, 0u);
    EXPECT_EQ(p.error_status(), status);
}

}  // namespace herd::http::parser_test
