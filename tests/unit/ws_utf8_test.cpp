// ws/utf8: the validator, whole and fed in pieces, on the boundary cases of RFC 3629.
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "ws/utf8.hpp"

namespace {

using herd::ws::Utf8Validator;
using herd::ws::valid_utf8;

// Fed one byte at a time: the verdict of the whole (false at the first bad byte, or not ended
// on a character boundary).
bool valid_bytewise(std::string_view s) {
    Utf8Validator v;
    for (char c : s)
        if (!v.feed(std::string_view(&c, 1))) return false;
    return v.complete();
}

TEST(WsUtf8, AcceptsValidText) {
    for (std::string_view s : {
             std::string_view(""),
             std::string_view("hello, world: a long enough ASCII run for the 8-byte path"),
             std::string_view("\x00\x7F", 2),
             std::string_view("\xC2\x80 \xDF\xBF"),                  // U+0080, U+07FF
             std::string_view("\xE0\xA0\x80 \xEF\xBF\xBF"),          // U+0800, U+FFFF
             std::string_view("\xED\x9F\xBF \xEE\x80\x80"),          // around the surrogates
             std::string_view("\xF0\x90\x80\x80 \xF4\x8F\xBF\xBF"),  // U+10000, U+10FFFF
             std::string_view("Kosme: \xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5"),
             std::string_view("emoji \xF0\x9F\x98\x80 at the end of eight bytes"),
         }) {
        EXPECT_TRUE(valid_utf8(s)) << s;
        EXPECT_TRUE(valid_bytewise(s)) << s;
    }
}

TEST(WsUtf8, RefusesInvalidSequences) {
    for (std::string_view s : {
             std::string_view("\xC0\xAF"),          // overlong '/'
             std::string_view("\xC1\xBF"),          // overlong
             std::string_view("\xE0\x80\xAF"),      // overlong 3-byte
             std::string_view("\xE0\x9F\xBF"),      // overlong U+07FF
             std::string_view("\xF0\x80\x80\xAF"),  // overlong 4-byte
             std::string_view("\xF0\x8F\xBF\xBF"),  // overlong U+FFFF
             std::string_view("\xED\xA0\x80"),      // U+D800
             std::string_view("\xED\xBF\xBF"),      // U+DFFF
             std::string_view("\xF4\x90\x80\x80"),  // U+110000
             std::string_view("\xF5\x80\x80\x80"),  // no such lead byte
             std::string_view("\xFF"), std::string_view("\xFE"),
             std::string_view("\x80"),  // stray continuation
             std::string_view("abc\xBF"),
             std::string_view("\xC3\x28"),  // lead then ASCII
             std::string_view("\xE2\x82\x28"),
             std::string_view("0123456789\xC2 abcdefgh"),  // lead inside an ASCII run
         }) {
        EXPECT_FALSE(valid_utf8(s)) << testing::PrintToString(s);
        EXPECT_FALSE(valid_bytewise(s)) << testing::PrintToString(s);
    }
}

TEST(WsUtf8, TruncatedSequenceIsIncompleteNotFailed) {
    for (std::string_view s : {std::string_view("\xC2"), std::string_view("\xE2\x82"),
                               std::string_view("\xF0\x9F\x98"), std::string_view("ok\xF0")}) {
        Utf8Validator v;
        EXPECT_TRUE(v.feed(s)) << testing::PrintToString(s);
        EXPECT_FALSE(v.complete());
        EXPECT_FALSE(valid_utf8(s));
    }
}

TEST(WsUtf8, EmojiSplitAtEveryByte) {
    const std::string text = "a\xF0\x9F\x98\x80z";  // U+1F600
    for (std::size_t cut = 0; cut <= text.size(); ++cut) {
        Utf8Validator v;
        EXPECT_TRUE(v.feed(std::string_view(text).substr(0, cut)));
        EXPECT_EQ(v.complete(), cut <= 1 || cut >= 5) << cut;
        EXPECT_TRUE(v.feed(std::string_view(text).substr(cut)));
        EXPECT_TRUE(v.complete()) << cut;
    }
}

TEST(WsUtf8, SurrogateSplitFailsAtItsSecondByte) {
    Utf8Validator v;
    EXPECT_TRUE(v.feed("\xED"));
    EXPECT_FALSE(v.feed("\xA0"));
}

TEST(WsUtf8, StaysFailedUntilReset) {
    Utf8Validator v;
    EXPECT_FALSE(v.feed("\xC0\xAF"));
    EXPECT_FALSE(v.feed("plain"));
    EXPECT_FALSE(v.complete());
    v.reset();
    EXPECT_TRUE(v.feed("plain"));
    EXPECT_TRUE(v.complete());
}

}  // namespace
