// The commands a connection shared by a worker's plugins refuses; see redis_client.hpp. Pure.
#include <algorithm>
#include <array>
#include <cctype>

#include "client/redis_client.hpp"

namespace herd::client {
namespace {

std::string upper(std::string_view s) {
    std::string u(s);
    std::transform(u.begin(), u.end(), u.begin(), [](unsigned char c) { return std::toupper(c); });
    return u;
}

}  // namespace

std::optional<std::string> refuse_redis_command(const std::vector<std::string>& args) {
    if (args.empty()) return "an empty command";
    std::string name = upper(args[0]);
    static const std::array<const char*, 6> state = {"AUTH", "HELLO", "SELECT",
                                                     "QUIT", "RESET", "MONITOR"};
    static const std::array<const char*, 6> pubsub = {
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE"};
    static const std::array<const char*, 5> multi = {"MULTI", "EXEC", "DISCARD", "WATCH",
                                                     "UNWATCH"};
    static const std::array<const char*, 11> blocking = {
        "BLPOP",    "BRPOP",  "BRPOPLPUSH", "BLMOVE",  "BLMPOP", "BZPOPMIN",
        "BZPOPMAX", "BZMPOP", "WAIT",       "WAITAOF", "SYNC"};
    auto in = [&](const auto& list) {
        return std::find(list.begin(), list.end(), name) != list.end();
    };
    if (in(state))
        return name +
               " would change the connection the worker's plugins share (the URL sets "
               "the password and the database)";
    if (in(pubsub)) return name + " would take over the shared connection (no pub/sub yet)";
    if (in(multi))
        return name +
               " on a shared connection: use transaction(), which sends MULTI ... EXEC "
               "as one piece";
    if (in(blocking)) return name + " blocks the shared connection; poll instead";
    if (name == "CLIENT" && args.size() > 1 && upper(args[1]) == "REPLY")
        return "CLIENT REPLY would break the shared connection's order of replies";
    if (name == "XREAD" || name == "XREADGROUP")
        for (const auto& a : args)
            if (upper(a) == "BLOCK") return name + " BLOCK blocks the shared connection";
    return std::nullopt;
}

}  // namespace herd::client
