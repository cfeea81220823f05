// Reading hiredis replies; see redis_reply.hpp.
#include "broker/redis_reply.hpp"

#include <charconv>

#include <fmt/format.h>

#include "state/codec.hpp"

namespace herd::broker {

std::string reply_text(const redisReply* r) {
    return r->str != nullptr ? std::string(r->str, r->len) : std::string();
}

const char* reply_type_name(int type) {
    switch (type) {
        case REDIS_REPLY_STRING:
            return "string";
        case REDIS_REPLY_ARRAY:
            return "array";
        case REDIS_REPLY_INTEGER:
            return "integer";
        case REDIS_REPLY_NIL:
            return "nil";
        case REDIS_REPLY_STATUS:
            return "status";
        case REDIS_REPLY_ERROR:
            return "error";
        default:
            return "unknown";
    }
}

bool parse_version_reply(const redisReply* r, std::uint64_t& out, std::string& error) {
    if (r->type == REDIS_REPLY_NIL) {
        out = 0;
        return true;
    }
    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0) {
            error = fmt::format("is negative ({})", r->integer);
            return false;
        }
        out = static_cast<std::uint64_t>(r->integer);
        return true;
    }
    if (r->type == REDIS_REPLY_STRING) {
        std::string text = reply_text(r);
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
        if (!text.empty() && ec == std::errc() && end == text.data() + text.size()) return true;
        error = "holds " + state::quote_key(text) + ", not a non-negative integer";
        return false;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        error = "cannot be read: " + reply_text(r);
        return false;
    }
    error = std::string("gave a reply of type ") + reply_type_name(r->type);
    return false;
}

}  // namespace herd::broker
