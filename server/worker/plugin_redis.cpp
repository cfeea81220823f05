// A plugin's Redis client: scopes, deadlines and the plugin's loop around the worker's client;
// see plugin_redis.hpp.
#include "worker/plugin_redis.hpp"

#include <optional>

namespace herd::worker {

struct PluginRedis::Entry final : herd::CancelHook {
    PluginRedis* self = nullptr;
    Id id = 0;
    client::RedisClient* client = nullptr;
    client::RedisClient::Id inner = 0;
    herd::Scope* scope = nullptr;
    Done done;
    void on_cancel() noexcept override { self->cancel(id); }
};

PluginRedis::PluginRedis(std::function<client::RedisClient&()> shared, PluginLoop& loop)
    : shared_(std::move(shared)), loop_(loop) {}

PluginRedis::~PluginRedis() {
    shutdown();
}

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
    Id id = next_id_++;
    auto owned = std::make_unique<Entry>();
    Entry& e = *owned;
    e.self = this;
    e.id = id;
    e.scope = &s;
    e.done = std::move(done);
    // A cancelled scope: nothing starts and nothing will be called (as with Loop's).
    if (!s.add_hook(e)) return id;
    entries_[id] = std::move(owned);

    auto deliver = [this, id](herd::RedisReply reply, const client::ClientError* error) {
        auto it = entries_.find(id);
        if (it == entries_.end()) return;
        std::unique_ptr<Entry> entry = std::move(it->second);
        entries_.erase(it);
        entry->unlink();
        std::optional<herd::ClientError> copy;
        if (error != nullptr) copy.emplace(*error);
        loop_.post(
            [done = std::move(entry->done), reply = std::move(reply),
             copy = std::move(copy)]() mutable {
                if (done) done(std::move(reply), copy ? &*copy : nullptr);
            },
            entry->scope);
    };
    try {
        e.client = &shared_();
    } catch (const herd::ClientError& error) {
        // No (usable) config.redis: the command fails, from the loop like any other.
        loop_.post([deliver, error] { deliver({}, &error); });
        return id;
    }
    auto deadline = s.deadline();
    e.inner = transaction ? e.client->transaction(std::move(commands), deliver, deadline)
                          : e.client->command(std::move(commands.front()), deliver, deadline);
    return id;
}

bool PluginRedis::cancel(Id id) noexcept {
    auto it = entries_.find(id);
    if (it == entries_.end()) return false;
    std::unique_ptr<Entry> entry = std::move(it->second);
    entries_.erase(it);
    entry->unlink();
    try {
        if (entry->client != nullptr && entry->inner != 0) entry->client->cancel(entry->inner);
    } catch (...) {
        // The client could not even note it (out of memory): the command ends on its own
        // timeout and finds no entry.
    }
    return true;
}

void PluginRedis::shutdown() noexcept {
    while (!entries_.empty()) cancel(entries_.begin()->first);
}

}  // namespace herd::worker
