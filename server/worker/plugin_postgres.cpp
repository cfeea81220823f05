// A plugin's PostgreSQL client: scopes, deadlines and the plugin's loop around the worker's
// pool; see plugin_postgres.hpp.
#include "worker/plugin_postgres.hpp"

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
    // (No structured binding: clang 14 cannot capture one in the lambdas below.)
    auto opened = calls_.open(s, std::move(call));
    Id id = opened.first;
    auto* e = opened.second;
    if (e == nullptr) return id;

    e->data.client = calls_.client_for<herd::PgResult>(loop_, id, shared_);
    if (e->data.client == nullptr) return id;
    client::PgQuery q;
    q.sql = std::move(sql);
    q.params = std::move(params);
    q.deadline = s.deadline();
    e->data.inner = e->data.client->query(
        std::move(q), [this, id](herd::PgResult result, const client::ClientError* error) {
            calls_.answer(loop_, id, std::move(result), error);
        });
    return id;
}

}  // namespace herd::worker
