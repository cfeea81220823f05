// libFuzzer target: the HTTP client's response parsing (client/response_parser, llhttp in
// response mode), what a hostile or broken upstream can send a plugin's fetch.
//
// Input: [1 byte: flags][1 byte: split seed][response bytes...]. Flag bit 0: the request was
// HEAD (no body whatever the headers say); bit 1: a small head limit (64 bytes), so that the
// limit is reached by short inputs. The bytes are parsed twice, whole and cut at pseudo-random
// points, then the connection "closes" (finish()). Both must see the same head, body and
// outcome; at most one final head, never a body byte before it or after completion; an error
// sticks; a head over the limit is an error. Any violation aborts (libFuzzer reports a crash).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "client/response_parser.hpp"

namespace {

using herd::client::ResponseHead;
using herd::client::ResponseParser;

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "fuzz_http_response: invariant violated: %s\n", what);
    std::abort();
}

#define CHECK(cond)                   \
    do {                              \
        if (!(cond)) violated(#cond); \
    } while (0)

struct Outcome : ResponseParser::Sink {
    std::vector<ResponseHead> heads;
    std::string body;
    int completes = 0;
    bool ok = true;  // no feed() or finish() failed
    bool complete = false;
    bool keep_alive = false;

    void on_head(ResponseHead&& h) override {
        CHECK(heads.empty());  // one final head per response
        CHECK(completes == 0);
        CHECK(h.status >= 100 && h.status <= 999);
        CHECK(h.status >= 200 || h.status == 101);  // 1xx heads are skipped
        heads.push_back(std::move(h));
    }
    void on_body(std::string_view piece) override {
        CHECK(heads.size() == 1);  // no body before the head
        CHECK(completes == 0);     // nor after the end
        body.append(piece);
    }
    void on_complete() override {
        CHECK(heads.size() == 1);
        ++completes;
        CHECK(completes == 1);
    }
    bool same(const Outcome& o) const {
        if (heads.size() != o.heads.size() || body != o.body || completes != o.completes ||
            ok != o.ok || complete != o.complete || keep_alive != o.keep_alive)
            return false;
        for (std::size_t i = 0; i < heads.size(); ++i)
            if (heads[i].status != o.heads[i].status || heads[i].reason != o.heads[i].reason ||
                heads[i].headers != o.heads[i].headers)
                return false;
        return true;
    }
};

void run(std::string_view data, bool head_request, std::size_t max_head,
         const std::vector<std::size_t>& cuts, Outcome& out) {
    ResponseParser p(out, max_head);
    if (head_request) p.no_body();
    std::size_t at = 0;
    for (std::size_t cut : cuts) {
        if (!out.ok) break;
        std::size_t end = cut < data.size() ? cut : data.size();
        if (end <= at) continue;
        out.ok = p.feed(data.substr(at, end - at));
        at = end;
    }
    if (out.ok && at < data.size()) out.ok = p.feed(data.substr(at));
    if (!out.ok) {
        CHECK(!p.error().empty());
        CHECK(!p.feed("x"));  // an error sticks
    } else {
        out.ok = p.finish();
        CHECK(out.ok == p.error().empty());
    }
    out.complete = p.complete();
    out.keep_alive = p.complete() && p.keep_alive();
    CHECK(out.complete == (out.completes == 1));
    std::size_t head_bytes = 0;
    for (const ResponseHead& h : out.heads) {
        head_bytes += h.reason.size();
        for (const auto& [name, value] : h.headers) head_bytes += name.size() + value.size();
    }
    CHECK(head_bytes <= max_head);
    if (head_request) CHECK(out.body.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    if (size < 2) return 0;
    bool head_request = (bytes[0] & 1) != 0;
    std::size_t max_head = (bytes[0] & 2) != 0 ? 64 : 64 * 1024;
    std::uint32_t seed = bytes[1] * 2654435761u + 1;
    std::string_view data(reinterpret_cast<const char*>(bytes + 2), size - 2);

    Outcome whole;
    run(data, head_request, max_head, {}, whole);

    std::vector<std::size_t> cuts;
    for (std::size_t at = 0; at < data.size();) {
        seed = seed * 1103515245u + 12345u;
        at += 1 + (seed >> 16) % 7;
        cuts.push_back(at);
    }
    Outcome split;
    run(data, head_request, max_head, cuts, split);
    CHECK(whole.same(split));
    return 0;
}
