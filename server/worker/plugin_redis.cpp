// A plugin's Redis client: scopes, deadlines and the plugin's loop around the worker's client;
// see plugin_redis.hpp.
#include "worker/plugin_redis.hpp"

namespace herd::worker {

PluginRedis::PluginRedis(std::function<client::RedisClient&()> shared, PluginLoop& loop)
    : shared_(std::move(shared)), loop_(loop), calls_([](PluginCalls<Call>::Entry& e) {
          if (e.data.client != nullptr && e.data.inner != 0) e.data.client->cancel(e.data.inner);
      }) {}

herd::RedisClient::Id PluginRedis::command(herd::RedisArgs args, Done done, herd::Scope* scope) {
    std::vector<herd::RedisArgs> one;
    one.push_back(std::move(args));
    return start(std::move(one), false, std::move(done), scope);
}

herd::RedisClient::Id PluginRedis::transaction(std::vector<herd::RedisArgs> commands, Done done,
                                               herd::Scope* scope) {
    return start(std::move(commands), true, std::move(done), scope);
}

herd::RedisClient::Id PluginRedis::start(std::vector<herd::RedisArgs> commands, bool transaction,
                                         Done done, herd::Scope* scope) {
    herd::Scope& s = scope != nullptr ? *scope : loop_.scope();
    Call call;
    call.done = std::move(done);
    // (No structured binding: clang 14 cannot capture one in the lambdas below.)
    auto opened = calls_.open(s, std::move(call));
    Id id = opened.first;
    auto* e = opened.second;
    if (e == nullptr) return id;

    e->data.client = calls_.client_for<herd::RedisReply>(loop_, id, shared_);
    if (e->data.client == nullptr) return id;
    auto deliver = [this, id](herd::RedisReply reply, const client::ClientError* error) {
        calls_.answer(loop_, id, std::move(reply), error);
    };
    auto deadline = s.deadline();
    e->data.inner = transaction
                        ? e->data.client->transaction(std::move(commands), deliver, deadline)
                        : e->data.client->command(std::move(commands.front()), deliver, deadline);
    return id;
}

}  // namespace herd::worker
