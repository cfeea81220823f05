// notes: see parse.hpp.
#include "parse.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <nlohmann/json.hpp>

namespace notes {
namespace {

constexpr std::size_t max_title = 200;
constexpr std::size_t max_body = 100000;
constexpr std::size_t max_page_title = 300;

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

std::string trim(std::string_view s) {
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return std::string(s);
}

// A string member: present and a string, else BadRequest naming it.
std::string required_string(const nlohmann::json& doc, const char* name) {
    auto it = doc.find(name);
    if (it == doc.end()) throw BadRequest(name, std::string("\"") + name + "\" is required");
    if (!it->is_string())
        throw BadRequest(name,
                         std::string("\"") + name + "\" must be a string, got " + it->type_name());
    return it->get<std::string>();
}

// Invalid UTF-8 (a Latin-1 page) replaced by U+FFFD: JSON and PostgreSQL want UTF-8.
std::string valid_utf8(const std::string& s) {
    auto dumped = nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return nlohmann::json::parse(dumped).get<std::string>();
}

}  // namespace

NoteInput parse_note(std::string_view json) {
    // nlohmann's parser checks UTF-8 too: what it accepts PostgreSQL will.
    auto doc = nlohmann::json::parse(json, nullptr, false);
    if (doc.is_discarded()) throw BadRequest("", "the body is not valid JSON");
    if (!doc.is_object()) throw BadRequest("", "the body must be a JSON object");
    NoteInput note;
    note.title = required_string(doc, "title");
    if (note.title.empty() || note.title.size() > max_title)
        throw BadRequest("title",
                         "\"title\" must be 1 to " + std::to_string(max_title) + " bytes long");
    note.body = required_string(doc, "body");
    if (note.body.size() > max_body)
        throw BadRequest("body",
                         "\"body\" must be at most " + std::to_string(max_body) + " bytes long");
    if (auto it = doc.find("url"); it != doc.end() && !it->is_null()) {
        if (!it->is_string() || it->get<std::string>().empty())
            throw BadRequest("url", "\"url\" must be a non-empty string or null");
        note.url = it->get<std::string>();
    }
    return note;
}

std::optional<std::int64_t> parse_id(std::string_view text) {
    if (text.empty() || text.size() > 18) return std::nullopt;
    std::int64_t id = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
    if (ec != std::errc() || end != text.data() + text.size() || id <= 0) return std::nullopt;
    return id;
}

int parse_limit(std::string_view query, int fallback) {
    while (!query.empty()) {
        std::string_view pair = query.substr(0, query.find('&'));
        query.remove_prefix(std::min(query.size(), pair.size() + 1));
        if (!pair.starts_with("limit=")) continue;
        std::string_view value = pair.substr(6);
        int limit = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), limit);
        if (ec != std::errc() || end != value.data() + value.size() || limit < 1 || limit > 100)
            throw BadRequest("limit", "\"limit\" must be an integer from 1 to 100");
        return limit;
    }
    return fallback;
}

std::string client_of(std::optional<std::string_view> header) {
    if (!header) return "unknown";
    std::string first = trim(header->substr(0, header->find(',')));
    if (first.empty()) return "unknown";
    return first.substr(0, 64);
}

std::optional<std::string> page_title(std::string_view html) {
    // Case-insensitive search in a lowered copy; offsets are the same in both.
    std::string low = lower(html);
    auto open = low.find("<title");
    while (open != std::string::npos && open + 6 < low.size() && low[open + 6] != '>' &&
           !std::isspace(static_cast<unsigned char>(low[open + 6])))
        open = low.find("<title", open + 6);  // <titles> is not <title>
    if (open == std::string::npos) return std::nullopt;
    auto start = low.find('>', open);
    if (start == std::string::npos) return std::nullopt;
    auto close = low.find("</title", ++start);
    if (close == std::string::npos) return std::nullopt;
    std::string_view raw = html.substr(start, close - start);

    static constexpr std::pair<std::string_view, char> entities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''}};
    std::string text;
    bool space = false;
    for (std::size_t i = 0; i < raw.size(); ++i) {
        char c = raw[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            space = !text.empty();
            continue;
        }
        if (space) text += ' ';
        space = false;
        if (c == '&') {
            auto entity =
                std::find_if(std::begin(entities), std::end(entities),
                             [&](const auto& e) { return raw.substr(i).starts_with(e.first); });
            if (entity != std::end(entities)) {
                text += entity->second;
                i += entity->first.size() - 1;
                continue;
            }
        }
        text += c;
    }
    if (text.empty()) return std::nullopt;
    if (text.size() > max_page_title) {
        text.resize(max_page_title);
        // Not in the middle of a UTF-8 sequence: drop continuation bytes and their lead.
        while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0xC0) == 0x80)
            text.pop_back();
        if (!text.empty() && static_cast<unsigned char>(text.back()) >= 0xC0) text.pop_back();
    }
    return valid_utf8(text);
}

}  // namespace notes
