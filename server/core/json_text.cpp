// Strict JSON text; see json_text.hpp.
#include "core/json_text.hpp"

#include <cctype>
#include <set>
#include <vector>

namespace herd::core {
namespace {

using json = nlohmann::json;

// A key as JSON text, quoted and escaped (invalid UTF-8 replaced): safe in a log line.
std::string json_quoted(const std::string& key) {
    return json(key).dump(-1, ' ', false, json::error_handler_t::replace);
}

// A key in a path: bare when it is a plain name, quoted otherwise.
std::string name(const std::string& key) {
    bool plain = !key.empty();
    for (unsigned char c : key)
        if (!(std::isalnum(c) || c == '_' || c == '-')) plain = false;
    return plain ? key : json_quoted(key);
}

// nlohmann's DOM builder, refusing a key that an object repeats: nlohmann keeps the last one
// silently, and a config with "workers" twice would run with whichever came last. Events are
// passed on unchanged; json::sax_parse calls these by static type, so hiding is enough.
class NoDuplicateKeys : public nlohmann::detail::json_sax_dom_parser<json> {
    using Base = nlohmann::detail::json_sax_dom_parser<json>;

  public:
    explicit NoDuplicateKeys(json& root) : Base(root, true) {}

    bool null() { return element() && Base::null(); }
    bool boolean(bool v) { return element() && Base::boolean(v); }
    bool number_integer(json::number_integer_t v) { return element() && Base::number_integer(v); }
    bool number_unsigned(json::number_unsigned_t v) {
        return element() && Base::number_unsigned(v);
    }
    bool number_float(json::number_float_t v, const std::string& text) {
        return element() && Base::number_float(v, text);
    }
    bool string(std::string& v) { return element() && Base::string(v); }
    bool binary(json::binary_t& v) { return element() && Base::binary(v); }
    bool start_object(std::size_t n) {
        if (!element()) return false;
        frames_.push_back(Frame{false, 0, {}, {}});
        return Base::start_object(n);
    }
    bool start_array(std::size_t n) {
        if (!element()) return false;
        frames_.push_back(Frame{true, 0, {}, {}});
        return Base::start_array(n);
    }
    bool end_object() {
        frames_.pop_back();
        return Base::end_object();
    }
    bool end_array() {
        frames_.pop_back();
        return Base::end_array();
    }
    bool key(std::string& k) {
        Frame& f = frames_.back();
        if (!f.keys.insert(k).second) {
            std::string where = path();
            duplicate_ = "key " + json_quoted(k) + " appears twice in " +
                         (where.empty() ? std::string("the top-level object") : where);
            return false;
        }
        f.key = k;
        return Base::key(k);
    }
    const std::string& duplicate() const { return duplicate_; }

  private:
    struct Frame {
        bool array;
        std::size_t elements;  // arrays: how many have started
        std::set<std::string> keys;
        std::string key;  // objects: the member being read
    };
    bool element() {
        if (!frames_.empty() && frames_.back().array) ++frames_.back().elements;
        return true;
    }
    // Where the innermost open object sits, as "apps[0].plugins[1].config".
    std::string path() const {
        std::string out;
        for (std::size_t i = 0; i + 1 < frames_.size(); ++i) {
            const Frame& f = frames_[i];
            if (f.array)
                out += "[" + std::to_string(f.elements - 1) + "]";
            else
                out += (out.empty() ? "" : ".") + name(f.key);
        }
        return out;
    }

    std::vector<Frame> frames_;
    std::string duplicate_;
};

}  // namespace

bool parse_json_text(std::string_view text, nlohmann::json& out, std::string& problem) {
    NoDuplicateKeys builder(out);
    if (json::sax_parse(text.begin(), text.end(), &builder)) return true;
    problem = builder.duplicate().empty() ? "invalid JSON" : builder.duplicate();
    return false;
}

}  // namespace herd::core
