// PostgreSQL results: from libpq's PGresult, and as JSON typed by column OID; see
// pg_client.hpp.
#include <charconv>
#include <cmath>
#include <cstring>

#include "client/pg_client_impl.hpp"

namespace herd::client {

namespace {

// PostgreSQL type OIDs (pg_type.dat): the ones to_json() types.
enum : unsigned {
    oid_bool = 16,
    oid_int8 = 20,
    oid_int2 = 21,
    oid_int4 = 23,
    oid_oid = 26,
    oid_json = 114,
    oid_float4 = 700,
    oid_float8 = 701,
    oid_numeric = 1700,
    oid_jsonb = 3802,
};

nlohmann::json typed(unsigned type, const std::string& v) {
    switch (type) {
        case oid_bool:
            if (v == "t") return true;
            if (v == "f") return false;
            break;
        case oid_int2:
        case oid_int4:
        case oid_int8: {
            std::int64_t n = 0;
            auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec == std::errc() && end == v.data() + v.size()) return n;
            break;
        }
        case oid_oid: {
            std::uint64_t n = 0;
            auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec == std::errc() && end == v.data() + v.size()) return n;
            break;
        }
        case oid_float4:
        case oid_float8: {
            double d = 0;
            auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
            if (ec == std::errc() && end == v.data() + v.size() && std::isfinite(d)) return d;
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

}  // namespace

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

nlohmann::json PgResult::to_json() const {
    auto out = nlohmann::json::array();
    for (const auto& row : rows) {
        auto object = nlohmann::json::object();
        for (std::size_t i = 0; i < row.size() && i < columns.size(); ++i) {
            const auto& v = row[i];
            object[columns[i]] = v ? typed(i < types.size() ? types[i] : 0, *v) : nullptr;
        }
        out.push_back(std::move(object));
    }
    return out;
}

}  // namespace herd::client
