// PostgreSQL results: from libpq's PGresult to the SDK's PgResult (herd/postgres.hpp, which
// types them as JSON).
#include <charconv>
#include <cstring>

#include "client/pg_client_impl.hpp"

namespace herd::client {

namespace detail {

PgResult convert(const PGresult* r) {
    PgResult out;
    int fields = PQnfields(r), tuples = PQntuples(r);
    for (int i = 0; i < fields; ++i) {
        const char* name = PQfname(r, i);
        out.columns.emplace_back(name != nullptr ? name : "");
        out.types.push_back(PQftype(r, i));
    }
    out.rows.reserve(static_cast<std::size_t>(tuples));
    for (int t = 0; t < tuples; ++t) {
        auto& row = out.rows.emplace_back();
        row.reserve(static_cast<std::size_t>(fields));
        for (int i = 0; i < fields; ++i) {
            if (PQgetisnull(r, t, i))
                row.emplace_back(std::nullopt);
            else
                row.emplace_back(std::string(PQgetvalue(r, t, i),
                                             static_cast<std::size_t>(PQgetlength(r, t, i))));
        }
    }
    const char* affected = PQcmdTuples(const_cast<PGresult*>(r));
    if (affected != nullptr)
        (void)std::from_chars(affected, affected + std::strlen(affected), out.affected);
    const char* status = PQcmdStatus(const_cast<PGresult*>(r));
    out.command = status != nullptr ? status : "";
    return out;
}

}  // namespace detail

}  // namespace herd::client
