// Tests state/codec (and the broker's state file format): round trips, and hostile input rejected
// with errors naming the field.
#include "state/codec.hpp"

#include <random>

#include <gtest/gtest.h>

#include "broker/file_backend.hpp"

namespace herd::state {
namespace {

using broker::decode_state_file;
using broker::encode_state_file;

// The error a decoder throws, or "" when it accepts.
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const CodecError& e) {
        return e.what();
    }
    return {};
}

TEST(Codec, SnapshotRoundTrip) {
    Snapshot s{42, {{"a", 1}, {"b", {{"x", json::array({1, "two", nullptr})}}}}};
    json body = encode_snapshot(s);
    EXPECT_EQ(body["type"], "state.snapshot");
    EXPECT_EQ(decode_snapshot(body), s);
    // Through text, as the channel carries it.
    EXPECT_EQ(decode_snapshot(json::parse(body.dump())), s);
}

TEST(Codec, DeltaRoundTrip) {
    Delta d{7, 9, {{"a", json(1)}, {"gone", std::nullopt}, {"n", json(nullptr)}}};
    json body = encode_delta(d);
    EXPECT_EQ(decode_delta(json::parse(body.dump())), d);
    // A null value is a value, not an erase.
    EXPECT_FALSE(decode_delta(body).changes[2].erased());
}

TEST(Codec, WritesAcksAndReadsRoundTrip) {
    WriteRequest set{5, "k", json{{"v", 1}}};
    WriteRequest erase{6, "k", std::nullopt};
    EXPECT_EQ(decode_write(encode_write(set)), set);
    EXPECT_EQ(decode_write(encode_write(erase)), erase);
    EXPECT_EQ(encode_write(erase)["type"], "state.erase");
    Ack ok{5, true, "", 12};
    Ack bad{6, false, "Redis is down", 0};
    EXPECT_EQ(decode_ack(encode_ack(ok)), ok);
    EXPECT_EQ(decode_ack(encode_ack(bad)), bad);
    ReadRequest get{ReadRequest::Kind::get, 1, "k"};
    ReadRequest list{ReadRequest::Kind::list, 2, "user:"};
    EXPECT_EQ(decode_read(encode_read(get)), get);
    EXPECT_EQ(decode_read(encode_read(list)), list);
    ReadReply found{1, true, "", 3, json(5), {}};
    ReadReply absent{1, true, "", 3, std::nullopt, {}};
    ReadReply entries{2, true, "", 3, std::nullopt, {{"user:1", 1}}};
    EXPECT_EQ(decode_read_reply(encode_read_reply(found, ReadRequest::Kind::get)), found);
    EXPECT_EQ(decode_read_reply(encode_read_reply(absent, ReadRequest::Kind::get)), absent);
    EXPECT_EQ(decode_read_reply(encode_read_reply(entries, ReadRequest::Kind::list)), entries);
    EXPECT_EQ(decode_attach(encode_attach("web/0/4711")), "web/0/4711");
}

TEST(Codec, ErrorsNameTheMessageAndTheField) {
    EXPECT_EQ(error_of([] { decode_snapshot(json::array()); }),
              "state.snapshot: expected a JSON object, got []");
    EXPECT_EQ(error_of([] {
                  decode_snapshot({{"entries", json::object()}});
              }),
              "state.snapshot: \"version\" is missing");
    EXPECT_EQ(error_of([] {
                  decode_snapshot({{"version", -1}, {"entries", json::object()}});
              }),
              "state.snapshot: \"version\": expected a non-negative integer, got -1");
    EXPECT_EQ(error_of([] {
                  decode_snapshot({{"version", 1.5}, {"entries", json::object()}});
              }),
              "state.snapshot: \"version\": expected a non-negative integer, got 1.5");
    EXPECT_EQ(error_of([] {
                  decode_snapshot({{"version", 1}, {"entries", {{"", 1}}}});
              }),
              "state.snapshot: entries[\"\"]: key is empty");
    EXPECT_EQ(error_of([] {
                  decode_delta({{"base", 5}, {"version", 4}, {"changes", json::array()}});
              }),
              "state.delta: \"version\" 4 is older than \"base\" 5");
    EXPECT_EQ(error_of([] {
                  decode_delta({{"base", 1}, {"version", 2}, {"changes", {{{"key", "a"}}}}});
              }),
              "state.delta: changes[0]: expected \"value\" or \"erased\": true");
    EXPECT_EQ(error_of([] {
                  decode_delta({{"base", 1},
                                {"version", 2},
                                {"changes", {{{"key", "a"}, {"value", 1}, {"erased", true}}}}});
              }),
              "state.delta: changes[0]: has both \"value\" and \"erased\"");
    EXPECT_EQ(
        error_of([] {
            decode_delta({{"base", 1}, {"version", 2}, {"changes", {{{"key", 7}, {"value", 1}}}}});
        }),
        "state.delta: changes[0].key: expected a string, got 7");
    EXPECT_EQ(error_of([] {
                  decode_write({{"type", "state.set"}, {"id", 1}, {"key", "k"}});
              }),
              "state.set: \"value\" is missing");
    EXPECT_EQ(error_of([] {
                  decode_write({{"type", "state.erase"}, {"id", 1}, {"key", "k"}, {"value", 1}});
              }),
              "state.erase: has a \"value\" (state.erase takes only \"id\" and \"key\")");
    EXPECT_EQ(error_of([] {
                  decode_write({{"type", "state.set"}, {"key", "k"}, {"value", 1}});
              }),
              "state.set: \"id\" is missing");
    EXPECT_NE(error_of([] {
                  decode_write({{"type", "state.set"}, {"id", 1}, {"key", "a\tb"}, {"value", 1}});
              }).find("state.set: key: key contains a control character"),
              std::string::npos);
    EXPECT_EQ(error_of([] {
                  decode_attach({{"worker", ""}});
              }),
              "attach: \"worker\": expected a name of 1 to 200 characters (\"app/slot/pid\"), "
              "got \"\"");
    EXPECT_EQ(error_of([] {
                  decode_read({{"type", "state.get"}, {"id", 1}});
              }),
              "state.get: \"key\" is missing");
}

TEST(Codec, LongKeysAreShortenedInMessages) {
    std::string key(5000, 'k');
    std::string e = error_of([&] { decode_snapshot({{"version", 1}, {"entries", {{key, 1}}}}); });
    EXPECT_LT(e.size(), 300u);
    EXPECT_NE(e.find("(5000 bytes)"), std::string::npos);
}

TEST(Codec, ParseJsonLimitsNestingAndReportsPosition) {
    std::string deep(100000, '[');
    std::string e = error_of([&] { parse_json(deep, "state file x"); });
    EXPECT_NE(e.find("nested more than"), std::string::npos) << e;
    e = error_of([] { parse_json("{\n  \"a\": ,\n}", "state file x"); });
    EXPECT_NE(e.find("state file x: invalid JSON: "), std::string::npos) << e;
    EXPECT_NE(e.find("line 2"), std::string::npos) << e;
    EXPECT_EQ(parse_json(" {\"a\": [1]} ", "x"), json::parse(R"({"a":[1]})"));
    // A number too large for a double is nlohmann's out_of_range, not a parse_error (found by
    // fuzz_state): still a CodecError.
    e = error_of([] { parse_json("{\"a\": 1e999}", "x"); });
    EXPECT_NE(e.find("x: invalid JSON: number overflow"), std::string::npos) << e;
    EXPECT_NE(error_of([] { decode_state_file("{\"entries\": {\"a\": 77e7777777}}"); }), "");
}

TEST(Codec, ParseJsonRefusesARepeatedKey) {
    // A state file edited by hand, or a value written to Redis by an outside program: nlohmann
    // would keep the last of the two silently.
    std::string e = error_of(
        [] { parse_json(R"({"version": 3, "entries": {"a": 1, "b": {"x": 1, "x": 2}}})", "f"); });
    EXPECT_EQ(e, "f: key \"x\" appears twice in entries.b");
    e = error_of([] { decode_state_file(R"({"entries": {"a": 1, "a": 2}})"); });
    EXPECT_NE(e.find("key \"a\" appears twice in entries"), std::string::npos) << e;
    EXPECT_EQ(parse_json(R"({"a": {"x": 1}, "b": {"x": 2}})", "f")["b"]["x"], 2);
}

TEST(Codec, ParseJsonIsLinearInAContainersMembers) {
    // 200k empty objects in one array (600 KB, within the value limits): the depth limit once
    // used nlohmann's parse callback, which rescans a container at each close, and this took
    // minutes, stalling the broker past its watchdog on every restart.
    std::string many = "{\"entries\": {\"k\": [";
    for (int i = 0; i < 200000; ++i) many += i ? ",{}" : "{}";
    many += "]}}";
    json j = parse_json(many, "x");
    EXPECT_EQ(j["entries"]["k"].size(), 200000u);
    // Brackets inside strings do not count as nesting; escaped quotes do not end a string.
    std::string brackets = "{\"a\": \"" + std::string(1000, '[') + "\\\"{{{\"}";
    EXPECT_EQ(parse_json(brackets, "x")["a"].get<std::string>().size(), 1004u);
    std::string e = error_of(
        [] { parse_json("{\"a\": " + std::string(131, '[') + std::string(131, ']') + "}", "x"); });
    EXPECT_NE(e.find("x: nested more than 130 levels deep (at byte"), std::string::npos) << e;
    EXPECT_NO_THROW(parse_json(std::string(130, '[') + std::string(130, ']'), "x"));
}

TEST(StateFile, RoundTripAndFormat) {
    Snapshot s{3, {{"b", {{"x", 1}}}, {"a", "text"}}};
    std::string text = encode_state_file(s);
    EXPECT_EQ(text.rfind("{\n  \"version\": 3,\n  \"entries\": {", 0), 0u) << text;
    EXPECT_EQ(text.back(), '\n');
    EXPECT_EQ(decode_state_file(text), s);
    EXPECT_EQ(decode_state_file(encode_state_file(Snapshot{})), Snapshot{});
}

TEST(StateFile, Invalid) {
    EXPECT_EQ(error_of([] { decode_state_file(""); }), "is empty (half-written?)");
    EXPECT_EQ(error_of([] { decode_state_file(" \n"); }), "is empty (half-written?)");
    EXPECT_NE(error_of([] {
                  decode_state_file("{\"version\": 1, \"entries\": {\"a\"");
              }).find("invalid JSON"),
              std::string::npos);
    EXPECT_EQ(error_of([] { decode_state_file("{\"version\": 1}"); }), "\"entries\" is missing");
    EXPECT_EQ(error_of([] { decode_state_file("{\"entires\": {}}"); }),
              "\"entires\": unknown key (known keys: entries, version)");
    EXPECT_EQ(error_of([] { decode_state_file("[1]"); }),
              "expected an object {\"version\": N, \"entries\": {...}}");
    // Without a version, hand-written: 0.
    EXPECT_EQ(decode_state_file("{\"entries\": {\"a\": 1}}").version, 0u);
}

// Random bytes and random mutations of valid messages: decoders accept or throw CodecError,
// nothing else (no crash, no other exception).
TEST(Codec, SurvivesMutatedInput) {
    std::mt19937 rng(12345);
    std::vector<std::string> seeds = {
        encode_snapshot(Snapshot{3, {{"a", 1}, {"b", {{"c", json::array({1, 2})}}}}}).dump(),
        encode_delta(Delta{3, 4, {{"a", json(2)}, {"b", std::nullopt}}}).dump(),
        encode_write(WriteRequest{1, "k", json("v")}).dump(),
        encode_ack(Ack{1, false, "no", 0}).dump(),
        encode_read_reply(ReadReply{1, true, "", 2, std::nullopt, {{"k", 1}}},
                          ReadRequest::Kind::list)
            .dump(),
    };
    const char alphabet[] = "{}[]\":,0123456789-.eEtruefalsnl \\u\x01\xff";
    int decoded = 0;
    for (int round = 0; round < 20000; ++round) {
        std::string text = seeds[rng() % seeds.size()];
        int edits = 1 + static_cast<int>(rng() % 4);
        for (int e = 0; e < edits && !text.empty(); ++e) {
            std::size_t at = rng() % text.size();
            switch (rng() % 3) {
                case 0:
                    text[at] = alphabet[rng() % (sizeof alphabet - 1)];
                    break;
                case 1:
                    text.erase(at, 1 + rng() % 3);
                    break;
                default:
                    text.insert(at, 1, alphabet[rng() % (sizeof alphabet - 1)]);
            }
        }
        json body;
        try {
            body = parse_json(text, "fuzz");
        } catch (const CodecError&) {
            continue;
        }
        for (auto* decode : std::initializer_list<void (*)(const json&)>{
                 [](const json& j) { (void)decode_snapshot(j); },
                 [](const json& j) { (void)decode_delta(j); },
                 [](const json& j) { (void)decode_write(j); },
                 [](const json& j) { (void)decode_ack(j); },
                 [](const json& j) { (void)decode_read(j); },
                 [](const json& j) { (void)decode_read_reply(j); },
                 [](const json& j) { (void)decode_attach(j); },
             }) {
            try {
                decode(body);
                ++decoded;
            } catch (const CodecError&) {
            }
        }
        try {
            (void)decode_state_file(text);
        } catch (const CodecError&) {
        }
    }
    EXPECT_GT(decoded, 0);
}

}  // namespace
}  // namespace herd::state
