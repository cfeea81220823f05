// inventory: see inventory.hpp.
#include "inventory.hpp"

#include <charconv>

namespace inventory {
namespace {

// "/items/apple" -> "apple", "/items/apple/wait" -> "apple" and wait; anything else -> "".
std::string item_of(std::string_view path, bool& wait) {
    constexpr std::string_view prefix = "/items/";
    wait = false;
    if (!path.starts_with(prefix)) return {};
    path.remove_prefix(prefix.size());
    if (path.ends_with("/wait")) {
        wait = true;
        path.remove_suffix(5);
    }
    if (path.find('/') != std::string_view::npos) return {};
    return std::string(path);
}

bool parse_number(std::string_view text, long& out) {
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

void Inventory::on_start(herd::Context& ctx) {
    ctx_ = &ctx;
    const nlohmann::json& config = ctx.config();
    lookup_ = std::chrono::milliseconds(config.value("lookup_ms", 50));
    wait_ = std::chrono::milliseconds(config.value("wait_ms", 20000));
    tick_ = std::chrono::milliseconds(config.value("tick_ms", 1000));
    if (config.contains("stock"))
        stock_ = config["stock"].get<std::map<std::string, long, std::less<>>>();
}

void Inventory::respond(herd::Responder r) {
    const herd::Request& request = r.request();
    bool wait = false;
    std::string item = item_of(request.subpath(), wait);
    if (request.method() == "GET" && request.subpath() == "/events")
        return herd::serve_coroutine(std::move(r),
                                     [this](herd::Responder& held) { return events(held); });
    if (request.method() == "GET" && !item.empty()) {
        if (wait) return wait_for_stock(std::move(r), std::move(item));
        // The lambda is not a coroutine: lookup() copies item into its own frame.
        return herd::serve_coroutine(
            std::move(r), [this, &item](herd::Responder& held) { return lookup(held, item); });
    }
    Plugin::respond(std::move(r));
}

// Coroutine style: returning sends the response. If the client goes (or request_timeout_ms
// passes) during the lookup, the co_await throws herd::Cancelled and the request ends there.
herd::Task<> Inventory::lookup(herd::Responder& r, std::string item) {
    try {
        auto query = ctx_->loop().sleep_for(lookup_);  // named before co_await (GCC 12)
        co_await query;
    } catch (const herd::Cancelled& e) {
        ctx_->log().info("lookup of " + item + " cancelled: " + e.what());
        throw;
    }
    answer_count(r.response(), item);
}

// Callback style: the responder waits in waiters_ until a restock, the timer, or the client
// going away, whichever comes first; each path removes it.
void Inventory::wait_for_stock(herd::Responder r, std::string item) {
    auto it = stock_.find(item);
    if (it == stock_.end() || it->second > 0) {
        answer_count(r.response(), item);  // nothing to wait for
        return r.send();
    }
    std::uint64_t key = next_waiter_++;
    // The client went away: forget it. (The timer goes by itself: it is tied to the request.)
    r.on_cancel([this, key] { waiters_.erase(key); });
    herd::Scope& scope = r.scope();
    herd::Loop::Id timer = ctx_->loop().after(
        wait_,
        [this, key] {
            auto node = waiters_.extract(key);
            if (node.empty()) return;
            node.mapped().responder.response().set_status(204);  // still none: ask again
            node.mapped().responder.send();
        },
        &scope);
    waiters_.emplace(key, Waiter{std::move(item), std::move(r), timer});
}

// Synchronous style: POST /items/NAME with a number as the body.
void Inventory::handle(const herd::Request& request, herd::Response& response) {
    bool wait = false;
    std::string item = item_of(request.subpath(), wait);
    long added = 0;
    if (item.empty() || wait) {
        response.set_status(404);
        response.set_body("no such endpoint\n");
    } else if (request.method() != "POST") {
        response.set_status(405);
        response.set_header("Allow", "GET, POST");
    } else if (!parse_number(request.body(), added)) {
        response.set_status(400);
        response.set_body("the body must be a number\n");
    } else {
        restock(item, added);
        answer_count(response, item);
    }
}

void Inventory::restock(const std::string& item, long added) {
    long count = stock_[item] += added;
    if (count <= 0) return;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->second.item != item) {
            ++it;
            continue;
        }
        Waiter waiter = std::move(it->second);
        it = waiters_.erase(it);
        ctx_->loop().cancel(waiter.timer);
        answer_count(waiter.responder.response(), item);
        waiter.responder.send();  // another request's answer, sent from this handler
    }
}

// Server-sent events: EventStream begins the stream and frames each event; drained() waits
// for a slow client instead of queueing without bound.
herd::Task<> Inventory::events(herd::Responder& r) {
    long count = 0;
    std::string_view query = r.request().query();
    if (query.starts_with("count=") && !parse_number(query.substr(6), count)) count = 0;
    herd::EventStream stream(r);
    for (long i = 0;; ++i) {
        if (!stream.send(nlohmann::json(stock_).dump(), "stock", std::to_string(i))) {
            auto room = r.drained();
            co_await room;
        }
        if (count > 0 && i + 1 >= count) break;
        auto tick = ctx_->loop().sleep_for(tick_);
        co_await tick;
    }
    r.end();
}

void Inventory::answer_count(herd::Response& response, const std::string& item) const {
    response.set_header("Content-Type", "application/json");
    auto it = stock_.find(item);
    if (it == stock_.end()) {
        response.set_status(404);
        response.set_body(nlohmann::json{{"error", "no item " + item}}.dump());
        return;
    }
    response.set_body(nlohmann::json{{"item", item}, {"count", it->second}}.dump());
}

}  // namespace inventory
