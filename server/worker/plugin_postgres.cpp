// A plugin's PostgreSQL client: scopes, deadlines and the plugin's loop around the worker's
// pool; see plugin_postgres.hpp.
#include "worker/plugin_postgres.hpp"

#include <optional>

namespace herd::worker {

PluginPostgres::PluginPostgres(std::function<client::PgClient&()> shared, PluginLoop& loop)
    : shared_(std::move(shared)), loop_(loop), calls_([](PluginCalls<Call>::Entry& e) {
          if (e.data.client != nullptr && e.data.inner != 0) e.data.client->cancel(e.data.inner);
      }) {}

herd::PostgresClient::Id PluginPostgres::run(std::string sql, herd::PgParams params, Done done,
                                             herd::Scope* scope) {
    herd::Scope& s = scope != nullptr ? *scope : loop_.scope();
    Call call;
    call.done = std::move(done);
    auto [id, e] = calls_.open(s, std::move(call));
    if (e == nullptr) return id;

    auto deliver = [this, id](herd::PgResult result, const client::ClientError* error) {
        auto entry = calls_.take(id);
        if (!entry) return;
        std::optional<herd::ClientError> copy;
        if (error != nullptr) copy.emplace(*error);
        loop_.post(
            [done = std::move(entry->data.done), result = std::move(result),
             copy = std::move(copy)]() mutable {
                if (done) done(std::move(result), copy ? &*copy : nullptr);
            },
            entry->scope);
    };
    try {
        e->data.client = &shared_();
    } catch (const herd::ClientError& error) {
        // No (usable) config.postgres: the query fails, from the loop like any other.
        loop_.post([deliver, error] { deliver({}, &error); });
        return id;
    }
    client::PgQuery q;
    q.sql = std::move(sql);
    q.params = std::move(params);
    q.deadline = s.deadline();
    e->data.inner = e->data.client->query(std::move(q), deliver);
    return id;
}

}  // namespace herd::worker
