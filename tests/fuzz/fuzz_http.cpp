// libFuzzer target: the HTTP request path of a worker, HttpParser over llhttp with the limits a
// worker enforces. Bytes in, requests or one clean error out, whatever the split points.
//
// Input: [1 byte: limits][1 byte: split seed][request bytes...]. The first byte picks the
// default limits (HttpLimits{}, what a worker with the default config uses) or small ones so
// that the 414/431/413 boundaries are reached by short inputs. The stream is parsed twice:
// whole, as one read() would bring it, and cut at pseudo-random points (from the seed), as a
// trickling client would send it. Both must give the same requests and the same final state;
// every request must respect the limits; an error must be one of the statuses herd answers and
// must stick. Any violation aborts, and libFuzzer reports it as a crash.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "http/http_parser.hpp"

namespace {

using herd::Header;
using herd::Request;
using herd::http::HttpLimits;
using herd::http::HttpParser;
using Status = HttpParser::Status;

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "fuzz_http: invariant violated: %s\n", what);
    std::abort();
}

#define CHECK(cond)                   \
    do {                              \
        if (!(cond)) violated(#cond); \
    } while (0)

struct Seen {
    std::string method, target, path, query, body;
    std::vector<std::pair<std::string, std::string>> headers;
    int major = 0, minor = 0;
    bool keep_alive = false;
    bool operator==(const Seen&) const = default;
};

struct Outcome {
    std::vector<Seen> requests;
    int error_status = 0;  // 0: the input ended inside (or between) requests
    bool operator==(const Outcome&) const = default;
};

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() &&
                            part.data() + part.size() <= whole.data() + whole.size());
}

Seen check_request(const Request& r, const HttpLimits& limits) {
    CHECK(!r.method().empty());
    CHECK(r.http_major() == 1);
    CHECK(r.http_minor() <= 1);  // a later 1.x is served as 1.1
    CHECK(r.target().size() <= limits.max_url_bytes);
    CHECK(r.headers().size() <= limits.max_headers);
    CHECK(r.body().size() <= limits.max_body_bytes);
    std::size_t head = r.target().size();
    for (const Header& h : r.headers()) head += h.name.size() + h.value.size();
    CHECK(head <= limits.max_header_bytes);
    CHECK(inside(r.path(), r.target()));
    CHECK(inside(r.query(), r.target()));
    CHECK(r.subpath() == "/" || inside(r.subpath(), r.target()));
    // HTTP/1.1 has exactly one Host (RFC 9112 3.2); no version has two.
    std::size_t hosts = 0;
    for (const Header& h : r.headers()) hosts += herd::iequals(h.name, "host");
    CHECK(hosts <= 1);
    CHECK(r.http_minor() == 0 || hosts == 1);
    for (const Header& h : r.headers()) {
        CHECK(!h.name.empty());
        CHECK(h.name.find_first_of(" \t\r\n:") == std::string::npos);  // a token, strict mode
        CHECK(h.value.find_first_of("\r\n") == std::string::npos);
        CHECK(h.value.empty() || (h.value.back() != ' ' && h.value.back() != '\t'));
        // Header lookup is case-insensitive and finds the first field of that name.
        CHECK(r.header(h.name).has_value());
    }
    Seen s{std::string(r.method()), std::string(r.target()), std::string(r.path()),
           std::string(r.query()),  std::string(r.body()),   {},
           r.http_major(),          r.http_minor(),          r.keep_alive()};
    for (const Header& h : r.headers()) s.headers.emplace_back(h.name, h.value);
    return s;
}

// Feeds `input` in pieces whose sizes come from `cuts` (0: the rest at once), as Connection
// does: after a request, next(), then the unconsumed rest of the same read. Requests are
// checked (and copied) as they complete, while their read is still there.
Outcome parse(std::string_view input, const HttpLimits& limits, std::uint32_t seed) {
    HttpParser parser(limits);
    Outcome out;
    std::size_t pos = 0;
    std::uint32_t state = seed;
    while (pos < input.size()) {
        std::size_t piece = input.size() - pos;
        if (seed != 0) {
            state = state * 1103515245u + 12345u;  // a tiny LCG: reproducible cut points
            std::size_t cut = 1 + (state >> 16) % 64;
            if (cut < piece) piece = cut;
        }
        // Each piece in a buffer of its own, freed after it (the worker's read buffer is
        // reused): a request's view into an earlier piece is a use after free under ASan.
        std::vector<char> read(input.begin() + static_cast<std::ptrdiff_t>(pos),
                               input.begin() + static_cast<std::ptrdiff_t>(pos + piece));
        const char* data = read.data();
        std::size_t left = piece;
        while (left > 0) {
            std::size_t consumed = ~std::size_t{0};
            Status s = parser.feed(data, left, consumed);
            CHECK(consumed <= left);
            data += consumed;
            left -= consumed;
            if (s == Status::error) {
                int st = parser.error_status();
                CHECK(st == 400 || st == 413 || st == 414 || st == 417 || st == 431 || st == 501 ||
                      st == 505);
                CHECK(!parser.error_reason().empty());
                // An error sticks: nothing more is parsed on this connection.
                std::size_t again = 0;
                CHECK(parser.feed("GET / HTTP/1.1\r\n\r\n", 18, again) == Status::error);
                CHECK(parser.error_status() == st);
                out.error_status = st;
                return out;
            }
            if (s == Status::need_more) {
                CHECK(left == 0);
                break;
            }
            out.requests.push_back(check_request(parser.request(), limits));
            bool closing = parser.must_close();
            parser.next();
            CHECK(parser.phase() == HttpParser::Phase::idle);
            if (closing) {
                // Connection stops here (what follows a closing request is never parsed).
                out.error_status = -1;
                return out;
            }
        }
        pos += piece;
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    HttpLimits limits;  // the defaults: what a worker runs with unless the config says otherwise
    if (data[0] & 1) {
        // Small limits, derived from the byte, so that short inputs reach every boundary.
        limits.max_header_bytes = 16 + (data[0] >> 1) % 64 * 4;
        limits.max_url_bytes = 8 + (data[0] >> 3) % 32 * 2;
        limits.max_headers = 1 + (data[0] >> 4) % 8;
        limits.max_body_bytes = (data[0] >> 2) % 48;
    }
    std::uint32_t seed = data[1] | 1u;
    std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
    Outcome whole = parse(input, limits, 0);
    Outcome split = parse(input, limits, seed);
    if (whole.requests != split.requests) violated("split input gave other requests");
    if (whole.error_status != split.error_status) {
        // The one legitimate difference: input that is both malformed and over a limit.
        // llhttp reports a token (URL, field, value) at its end or at the end of each buffer,
        // so a cut inside an over-long token can meet the limit (413/414/431) before the bad
        // byte that the whole buffer reports first (400), and the other way round.
        auto limit = [](int s) { return s == 413 || s == 414 || s == 431; };
        bool either = (whole.error_status == 400 && limit(split.error_status)) ||
                      (split.error_status == 400 && limit(whole.error_status));
        if (!either) {
            std::fprintf(stderr, "whole: %zu requests, then %d; split: %zu requests, then %d\n",
                         whole.requests.size(), whole.error_status, split.requests.size(),
                         split.error_status);
            violated("split input ended in another state than the whole input");
        }
    }
    return 0;
}
