// FakePostgres: the PostgreSQL client of a FakeContext (Context::postgres()). A statement
// answered with on() gets that result, one set with fail() that error (a ClientError of kind
// `server` with the SQLSTATE given), any other a ClientError of kind `invalid` saying no fake
// answer was set; statements are matched by their SQL text exactly. Every query is recorded
// with its parameters. Results arrive through the loop (run_until_idle() or advance()), never
// inside run(), and go with their scope when it is cancelled. Part of herd/testing.hpp.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "herd/postgres.hpp"
#include "herd/testing/loop.hpp"

namespace herd::testing {

class FakePostgres final : public PostgresClient {
  public:
    struct Query {
        std::string sql;
        PgParams params;
    };
    explicit FakePostgres(FakeLoop& loop) : posted_(loop) {}
    FakePostgres(const FakePostgres&) = delete;
    FakePostgres& operator=(const FakePostgres&) = delete;

    void on(std::string sql, PgResult result) { answers_[std::move(sql)] = std::move(result); }
    void fail(std::string sql, std::string sqlstate, std::string message) {
        failures_.insert_or_assign(
            std::move(sql),
            ClientError(ClientError::Kind::server,
                        "PostgreSQL: " + message + " (SQLSTATE " + sqlstate + ")", sqlstate));
    }
    const std::vector<Query>& queries() const noexcept { return queries_; }

    Id run(std::string sql, PgParams params, Done done, Scope* scope = nullptr) override {
        queries_.push_back(Query{sql, params});
        std::optional<PgResult> result;
        std::optional<ClientError> error;
        if (auto a = answers_.find(sql); a != answers_.end())
            result = a->second;
        else if (auto f = failures_.find(sql); f != failures_.end())
            error = f->second;
        else
            error = ClientError(ClientError::Kind::invalid,
                                "no fake answer for \"" + sql + "\" (FakePostgres::on)");
        return posted_.post(
            [done = std::move(done), result = std::move(result),
             error = std::move(error)]() mutable {
                if (error)
                    done(PgResult(), &*error);
                else
                    done(std::move(*result), nullptr);
            },
            scope);
    }
    bool cancel(Id id) noexcept override { return posted_.cancel(id); }

  private:
    std::map<std::string, PgResult> answers_;
    std::map<std::string, ClientError> failures_;
    std::vector<Query> queries_;
    PostedAnswers posted_;
};

}  // namespace herd::testing
