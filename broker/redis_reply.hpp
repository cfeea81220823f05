// Reading hiredis replies, for the Redis backend's files (redis_backend.cpp,
// redis_backend_sync.cpp): a reply's text, its type's name, and a version as Redis holds it.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>

namespace herd::broker {

std::string reply_text(const redisReply* r);

const char* reply_type_name(int type);

// A version as Redis holds it: a bulk string of digits (GET), an integer, or nil (0).
// Returns false with a description when it is anything else.
bool parse_version_reply(const redisReply* r, std::uint64_t& out, std::string& error);

}  // namespace herd::broker
