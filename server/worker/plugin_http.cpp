// A plugin's HTTP client: scopes, deadlines and the plugin's loop around the worker's client;
// see plugin_http.hpp.
#include "worker/plugin_http.hpp"

#include <optional>

namespace herd::worker {

struct PluginHttp::Entry final : herd::CancelHook {
    PluginHttp* self = nullptr;
    Id id = 0;
    client::HttpClient::Id inner = 0;
    herd::Scope* scope = nullptr;
    herd::HttpHandlers handlers;
    void on_cancel() noexcept override { self->cancel(id); }
};

PluginHttp::PluginHttp(std::function<client::HttpClient&()> shared, PluginLoop& loop)
    : shared_(std::move(shared)), loop_(loop) {}

PluginHttp::~PluginHttp() {
    shutdown();
}

herd::HttpClient::Id PluginHttp::fetch(herd::HttpRequest request, herd::HttpHandlers handlers,
                                       herd::Scope* scope) {
    herd::Scope& s = scope != nullptr ? *scope : loop_.scope();
    Id id = next_id_++;
    auto owned = std::make_unique<Entry>();
    Entry& e = *owned;
    e.self = this;
    e.id = id;
    e.scope = &s;
    e.handlers = std::move(handlers);
    // A cancelled scope: nothing starts and nothing will be called (as with Loop's).
    if (!s.add_hook(e)) return id;
    entries_[id] = std::move(owned);

    client::HttpRequest r;
    r.method = std::move(request.method);
    r.url = std::move(request.url);
    r.headers = std::move(request.headers);
    r.body = std::move(request.body);
    r.connect_timeout = request.connect_timeout;
    r.first_byte_timeout = request.first_byte_timeout;
    r.total_timeout = request.total_timeout;
    r.max_response_bytes = request.max_response_bytes;
    r.deadline = s.deadline();

    client::HttpHandlers h;
    if (e.handlers.head) {
        // Streamed: each piece reaches the plugin in order, through its loop, tied to the
        // scope (dropped if it is cancelled meanwhile).
        h.head = [this, id](const client::HttpResponse& head) {
            auto it = entries_.find(id);
            if (it == entries_.end()) return;
            herd::HttpReply reply;
            reply.status = head.status;
            reply.reason = head.reason;
            reply.headers = head.headers;
            loop_.post(
                [this, id, reply = std::move(reply)] {
                    if (auto it = entries_.find(id); it != entries_.end())
                        it->second->handlers.head(reply);
                },
                it->second->scope);
        };
        h.body = [this, id](std::string_view piece) {
            auto it = entries_.find(id);
            if (it == entries_.end() || !it->second->handlers.body) return;
            loop_.post(
                [this, id, piece = std::string(piece)] {
                    if (auto it = entries_.find(id);
                        it != entries_.end() && it->second->handlers.body)
                        it->second->handlers.body(piece);
                },
                it->second->scope);
        };
    }
    h.done = [this, id](client::HttpResponse response, const client::ClientError* error) {
        auto it = entries_.find(id);
        if (it == entries_.end()) return;
        std::unique_ptr<Entry> entry = std::move(it->second);
        entries_.erase(it);
        entry->unlink();
        herd::HttpReply reply;
        reply.status = response.status;
        reply.reason = std::move(response.reason);
        reply.headers = std::move(response.headers);
        reply.body = std::move(response.body);
        std::optional<herd::ClientError> copy;
        if (error != nullptr) copy.emplace(*error);
        loop_.post(
            [done = std::move(entry->handlers.done), reply = std::move(reply),
             copy = std::move(copy)]() mutable {
                if (done) done(std::move(reply), copy ? &*copy : nullptr);
            },
            entry->scope);
    };
    e.inner = shared_().fetch(std::move(r), std::move(h));
    return id;
}

bool PluginHttp::cancel(Id id) noexcept {
    auto it = entries_.find(id);
    if (it == entries_.end()) return false;
    std::unique_ptr<Entry> entry = std::move(it->second);
    entries_.erase(it);
    entry->unlink();
    try {
        if (entry->inner != 0) shared_().cancel(entry->inner);
    } catch (...) {
        // The client could not even note it (out of memory): the exchange ends on its own
        // timeout and its handlers find no entry.
    }
    return true;
}

void PluginHttp::shutdown() noexcept {
    while (!entries_.empty()) cancel(entries_.begin()->first);
}

}  // namespace herd::worker
