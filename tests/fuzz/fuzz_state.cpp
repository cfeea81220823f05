// libFuzzer target: the broker's decoders (state/codec.cpp: snapshots, deltas, writes, acks,
// reads, replies, attach; broker/file_backend.cpp: the state file), bytes in. Each decoder
// either throws CodecError with a one-line message or returns a value that is within the
// limits and survives an encode/decode round trip unchanged. A decoded snapshot or delta is
// applied to a replica, which must end exactly at the version it announces. Any other
// exception, a crash or a broken invariant is a finding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "broker/file_backend.hpp"
#include "state/codec.hpp"
#include "state/state_store.hpp"

namespace {

using namespace herd::broker;
using namespace herd::state;

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "fuzz_state: invariant violated: %s\n", what);
    std::abort();
}

#define CHECK(cond)                   \
    do {                              \
        if (!(cond)) violated(#cond); \
    } while (0)

void check_error(const CodecError& e) {
    std::string what = e.what();
    CHECK(!what.empty());
    for (unsigned char ch : what) CHECK(ch >= 0x20);  // one log line
}

void check_entries(const Entries& entries) {
    for (const auto& [k, v] : entries) {
        CHECK(key_error(k).empty());
        CHECK(value_error(v).empty());
    }
}

template <class F>
void expect_codec(F&& f) {
    try {
        f();
    } catch (const CodecError& e) {
        check_error(e);
    }
}

void fuzz_body(const json& body) {
    expect_codec([&] {
        Snapshot s = decode_snapshot(body);
        check_entries(s.entries);
        CHECK(decode_snapshot(json::parse(encode_snapshot(s).dump())) == s);
        Replica r;
        r.apply(s);
        CHECK(r.synced() && r.version() == s.version && r.store().entries() == s.entries);
    });
    expect_codec([&] {
        Delta d = decode_delta(body);
        CHECK(d.version >= d.base);
        for (const Change& c : d.changes) {
            CHECK(key_error(c.key).empty());
            if (c.value) CHECK(value_error(*c.value).empty());
        }
        CHECK(decode_delta(json::parse(encode_delta(d).dump())) == d);
        Replica r;
        r.apply(Snapshot{d.base, {}});
        CHECK(r.apply(d) == Replica::Result::applied);
        CHECK(r.version() == d.version);
        for (const Change& c : d.changes) {
            // The last change of a key wins.
            const Change* last = &c;
            for (const Change& later : d.changes)
                if (later.key == c.key) last = &later;
            if (last->value)
                CHECK(r.find(c.key) != nullptr && *r.find(c.key) == *last->value);
            else
                CHECK(r.find(c.key) == nullptr);
        }
    });
    expect_codec([&] {
        WriteRequest w = decode_write(body);
        CHECK(key_error(w.key).empty());
        CHECK(decode_write(json::parse(encode_write(w).dump())) == w);
    });
    expect_codec([&] {
        Ack a = decode_ack(body);
        CHECK(a.ok || !a.error.empty());
        Ack again = decode_ack(json::parse(encode_ack(a).dump()));
        if (!a.ok) a.version = 0;  // not carried by a failed ack
        CHECK(again == a);
    });
    expect_codec([&] {
        ReadRequest r = decode_read(body);
        CHECK(decode_read(json::parse(encode_read(r).dump())) == r);
    });
    expect_codec([&] {
        ReadReply r = decode_read_reply(body);
        check_entries(r.entries);
        if (r.ok && !(r.value && !r.entries.empty())) {
            auto kind = r.value ? ReadRequest::Kind::get : ReadRequest::Kind::list;
            CHECK(decode_read_reply(json::parse(encode_read_reply(r, kind).dump())) == r);
        }
    });
    expect_codec([&] {
        std::string worker = decode_attach(body);
        CHECK(!worker.empty() && worker.size() <= 200);
    });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    try {
        Snapshot s = decode_state_file(text);
        check_entries(s.entries);
        CHECK(decode_state_file(encode_state_file(s)) == s);
    } catch (const CodecError& e) {
        check_error(e);
    }
    json body;
    try {
        body = parse_json(text, "fuzz");
    } catch (const CodecError& e) {
        check_error(e);
        return 0;
    }
    fuzz_body(body);
    return 0;
}
