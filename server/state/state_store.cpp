// The shared state's data model; see state_store.hpp.
#include "state/state_store.hpp"

#include <cmath>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

namespace herd::state {
namespace {

// Offset of the first byte that is not part of well-formed UTF-8 (no overlong forms, no
// surrogates, nothing above U+10FFFF), or npos.
std::size_t invalid_utf8_at(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len;
        unsigned lo = 0x80, hi = 0xbf;  // bounds of the second byte
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return i;
        }
        if (i + len > s.size()) return i;
        auto c1 = static_cast<unsigned char>(s[i + 1]);
        if (c1 < lo || c1 > hi) return i;
        for (std::size_t k = 2; k < len; ++k) {
            auto ck = static_cast<unsigned char>(s[i + k]);
            if (ck < 0x80 || ck > 0xbf) return i;
        }
        i += len;
    }
    return std::string_view::npos;
}

}  // namespace

std::string key_error(std::string_view key) {
    if (key.empty()) return "key is empty";
    if (key.size() > max_key_bytes)
        return fmt::format("key is {} bytes long, more than the limit of {}", key.size(),
                           max_key_bytes);
    for (std::size_t i = 0; i < key.size(); ++i) {
        auto c = static_cast<unsigned char>(key[i]);
        if (c < 0x20 || c == 0x7f)
            return fmt::format("key contains a control character (byte 0x{:02x} at offset {})", c,
                               i);
    }
    if (auto at = invalid_utf8_at(key); at != std::string_view::npos)
        return fmt::format("key is not valid UTF-8 (at byte offset {})", at);
    return {};
}

int json_depth(const json& value, int limit) {
    int deepest = 0;
    std::vector<std::pair<const json*, int>> stack{{&value, 0}};
    while (!stack.empty()) {
        auto [v, depth] = stack.back();
        stack.pop_back();
        if (!v->is_structured()) continue;
        int inner = depth + 1;
        if (inner > deepest) deepest = inner;
        if (deepest > limit) return deepest;
        for (const auto& child : *v) stack.emplace_back(&child, inner);
    }
    return deepest;
}

std::string value_error(const json& value, std::size_t* serialized_size) {
    // One walk: depth, and the kinds of values JSON text cannot carry.
    std::vector<std::pair<const json*, int>> stack{{&value, 0}};
    while (!stack.empty()) {
        auto [v, depth] = stack.back();
        stack.pop_back();
        switch (v->type()) {
            case json::value_t::binary:
                return "value contains binary data, which JSON text cannot carry";
            case json::value_t::discarded:
                return "value is a discarded JSON value";
            case json::value_t::number_float:
                if (!std::isfinite(v->get<double>()))
                    return "value contains a number that is not finite (NaN or infinity)";
                break;
            case json::value_t::object:
            case json::value_t::array:
                if (depth + 1 > max_value_depth)
                    return fmt::format("value is nested more than {} levels deep", max_value_depth);
                for (const auto& child : *v) stack.emplace_back(&child, depth + 1);
                break;
            default:
                break;
        }
    }
    std::string text;
    try {
        text = value.dump();
    } catch (const json::type_error& e) {
        // 316: a string (or an object key) that is not UTF-8.
        return std::string("value cannot be serialized: ") + e.what();
    }
    if (text.size() > max_value_bytes)
        return fmt::format("value is {} bytes as JSON, more than the limit of {}", text.size(),
                           max_value_bytes);
    if (serialized_size != nullptr) *serialized_size = text.size();
    return {};
}

std::vector<Change> diff(const Entries& from, const Entries& to) {
    std::vector<Change> changes;
    auto a = from.begin();
    auto b = to.begin();
    while (a != from.end() || b != to.end()) {
        if (b == to.end() || (a != from.end() && a->first < b->first)) {
            changes.push_back(Change{a->first, std::nullopt});
            ++a;
        } else if (a == from.end() || b->first < a->first) {
            changes.push_back(Change{b->first, b->second});
            ++b;
        } else {
            if (a->second != b->second) changes.push_back(Change{b->first, b->second});
            ++a;
            ++b;
        }
    }
    return changes;
}

const json* StateStore::find(std::string_view key) const {
    auto it = entries_.find(key);
    return it == entries_.end() ? nullptr : &it->second;
}

Entries StateStore::list(std::string_view prefix) const {
    Entries out;
    for (auto it = entries_.lower_bound(prefix);
         it != entries_.end() && std::string_view(it->first).starts_with(prefix); ++it)
        out.emplace_hint(out.end(), it->first, it->second);
    return out;
}

void StateStore::apply_changes(const std::vector<Change>& changes) {
    for (const Change& c : changes) {
        if (c.value) {
            auto it = entries_.find(c.key);
            if (it != entries_.end())
                it->second = *c.value;
            else
                entries_.emplace(c.key, *c.value);
        } else {
            auto it = entries_.find(c.key);
            if (it != entries_.end()) entries_.erase(it);
        }
    }
}

Delta StateStore::commit(std::vector<Change> changes, std::uint64_t new_version) {
    if (new_version < version_)
        throw std::invalid_argument(
            fmt::format("StateStore::commit(): version {} is older than the current {}",
                        new_version, version_));
    apply_changes(changes);
    Delta d{version_, new_version, std::move(changes)};
    version_ = new_version;
    return d;
}

Delta StateStore::set(std::string key, json value) {
    std::vector<Change> changes;
    changes.push_back(Change{std::move(key), std::move(value)});
    return commit(std::move(changes), version_ + 1);
}

Delta StateStore::erase(std::string key) {
    std::vector<Change> changes;
    changes.push_back(Change{std::move(key), std::nullopt});
    return commit(std::move(changes), version_ + 1);
}

StateStore::ApplyResult StateStore::apply(const Delta& delta) {
    if (delta.base == version_ && delta.version >= delta.base) {
        apply_changes(delta.changes);
        version_ = delta.version;
        return ApplyResult::applied;
    }
    if (delta.version <= version_) return ApplyResult::stale;
    return ApplyResult::gap;
}

std::vector<Change> StateStore::reset(Snapshot snapshot) {
    std::vector<Change> changes = diff(entries_, snapshot.entries);
    entries_ = std::move(snapshot.entries);
    version_ = snapshot.version;
    return changes;
}

std::vector<Change> Replica::apply(Snapshot snapshot) {
    synced_ = true;
    return store_.reset(std::move(snapshot));
}

Replica::Result Replica::apply(const Delta& delta) {
    if (!synced_) return Result::unsynced;
    switch (store_.apply(delta)) {
        case StateStore::ApplyResult::applied:
            return Result::applied;
        case StateStore::ApplyResult::stale:
            return Result::stale;
        case StateStore::ApplyResult::gap:
            return Result::gap;
    }
    return Result::gap;
}

}  // namespace herd::state
