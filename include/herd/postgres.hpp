// herd's PostgreSQL client, as a plugin sees it (Context::postgres()): queries to the database
// at its config's "postgres" URL, on the worker's event loop.
//
//   herd::Task<> show(herd::Context& ctx, herd::Responder r, std::string id) {
//       auto q = ctx.postgres().query("SELECT id, body FROM notes WHERE id = $1", {id});
//       herd::PgResult notes = co_await q;  // may throw ClientError
//       r.send(200, notes.to_json().dump());
//   }
//
// - Parameters are always bound ($1, $2 ...; text, or nullopt for NULL), never pasted into the
//   SQL; results come as text with each column's type, and to_json() types them.
// - A pool per worker and URL, shared by the worker's plugins: at most 4 connections, the rest
//   of the queries wait in order; idle connections are closed after a minute, or as soon as the
//   server closes them (a restart), and opened again when needed.
// - Timeouts: connecting (5 s) and the whole query (30 s), cut to the scope's deadline (a
//   request's scope has the request's deadline). A query that times out or is cancelled (its
//   request's client left) is cancelled on the server too.
// - A PostgreSQL error is a ClientError of kind `server` with the server's message and its
//   SQLSTATE as code() ("23505": a unique violation). While the server refuses connections,
//   queries fail at once (kind `connect`) and herd retries with a back-off.
// - The URL's password goes to the server and never into a message or a log line.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "herd/client.hpp"
#include "herd/function.hpp"
#include "herd/scope.hpp"

namespace herd {

struct PgResult {
    std::vector<std::string> columns;
    std::vector<unsigned> types;                                // the columns' type OIDs
    std::vector<std::vector<std::optional<std::string>>> rows;  // text values; nullopt: NULL
    std::uint64_t affected = 0;                                 // rows inserted, updated...
    std::string command;                                        // "SELECT 1", "INSERT 0 1"

    // The rows as a JSON array of objects (a repeated column name: the last one wins), typed
    // by OID: bool -> true/false; int2/int4/int8/oid -> integer; float4/float8 -> number, but
    // NaN and the infinities (JSON has no word for them) -> string; numeric -> string, so that
    // no precision is lost; json/jsonb -> the parsed JSON; NULL -> null; anything else (and a
    // value that does not parse as its type says) -> string.
    nlohmann::json to_json() const {
        auto out = nlohmann::json::array();
        for (const auto& row : rows) {
            auto object = nlohmann::json::object();
            for (std::size_t i = 0; i < row.size() && i < columns.size(); ++i)
                object[columns[i]] =
                    row[i] ? typed(i < types.size() ? types[i] : 0, *row[i]) : nullptr;
            out.push_back(std::move(object));
        }
        return out;
    }

  private:
    static nlohmann::json typed(unsigned type, const std::string& v) {
        // PostgreSQL's type OIDs (pg_type.dat).
        enum : unsigned {
            oid_bool = 16,
            oid_int8 = 20,
            oid_int2 = 21,
            oid_int4 = 23,
            oid_oid = 26,
            oid_json = 114,
            oid_float4 = 700,
            oid_float8 = 701,
            oid_jsonb = 3802,
        };
        const char* end = v.data() + v.size();
        switch (type) {
            case oid_bool:
                if (v == "t") return true;
                if (v == "f") return false;
                break;
            case oid_int2:
            case oid_int4:
            case oid_int8: {
                std::int64_t n = 0;
                auto [p, ec] = std::from_chars(v.data(), end, n);
                if (ec == std::errc() && p == end) return n;
                break;
            }
            case oid_oid: {
                std::uint64_t n = 0;
                auto [p, ec] = std::from_chars(v.data(), end, n);
                if (ec == std::errc() && p == end) return n;
                break;
            }
            case oid_float4:
            case oid_float8: {
                double d = 0;
                auto [p, ec] = std::from_chars(v.data(), end, d);
                if (ec == std::errc() && p == end && std::isfinite(d)) return d;
                break;
            }
            case oid_json:
            case oid_jsonb: {
                auto j = nlohmann::json::parse(v, nullptr, false);
                if (!j.is_discarded()) return j;
                break;
            }
            default:
                break;
        }
        return v;
    }
};

using PgParams = std::vector<std::optional<std::string>>;

class PostgresClient {
  public:
    using Id = std::uint64_t;
    // done runs once, in the worker's loop (never inside run()), unless the query is
    // cancelled; error is null when the query succeeded.
    using Done = Function<void(PgResult&& result, const ClientError* error)>;

    // Runs one statement tied to `scope` (by default the plugin's): when the scope is
    // cancelled so is the query, on the server too.
    virtual Id run(std::string sql, PgParams params, Done done, Scope* scope = nullptr) = 0;
    // done is not called after this; a query the server runs is cancelled there.
    virtual bool cancel(Id id) noexcept = 0;

    // For coroutines: PgResult r = co_await pg.query(sql, {params}); throws ClientError, or
    // Cancelled when the task's scope is.
    auto query(std::string sql, PgParams params = {});

  protected:
    ~PostgresClient() = default;
};

namespace detail {

class PgAwait final : public ClientAwait<PgAwait, PostgresClient, PgResult> {
  public:
    PgAwait(PostgresClient& client, std::string sql, PgParams params)
        : ClientAwait(client), sql_(std::move(sql)), params_(std::move(params)) {}
    PostgresClient::Id start(Done done) {
        return client_.run(std::move(sql_), std::move(params_), std::move(done), scope_);
    }
    PgResult await_resume() { return take(); }

  private:
    std::string sql_;
    PgParams params_;
};

}  // namespace detail

inline auto PostgresClient::query(std::string sql, PgParams params) {
    return detail::PgAwait(*this, std::move(sql), std::move(params));
}

}  // namespace herd
