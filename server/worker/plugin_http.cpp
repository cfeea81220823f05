// A plugin's HTTP client: scopes, deadlines and the plugin's loop around the worker's client;
// see plugin_http.hpp.
#include "worker/plugin_http.hpp"

#include <optional>

namespace herd::worker {

PluginHttp::PluginHttp(std::function<client::HttpClient&()> shared, PluginLoop& loop)
    : shared_(std::move(shared)), loop_(loop), calls_([this](PluginCalls<Call>::Entry& e) {
          if (e.data.inner != 0) shared_().cancel(e.data.inner);
      }) {}

herd::HttpClient::Id PluginHttp::fetch(herd::HttpRequest request, herd::HttpHandlers handlers,
                                       herd::Scope* scope) {
    herd::Scope& s = scope != nullptr ? *scope : loop_.scope();
    Call call;
    call.handlers = std::move(handlers);
    // (No structured binding: clang 14 cannot capture one in the lambdas below.)
    auto opened = calls_.open(s, std::move(call));
    Id id = opened.first;
    auto* e = opened.second;
    if (e == nullptr) return id;

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
    if (e->data.handlers.head) {
        // Streamed: each piece reaches the plugin in order, through its loop, tied to the
        // scope (dropped if it is cancelled meanwhile).
        h.head = [this, id](const client::HttpResponse& head) {
            auto* entry = calls_.find(id);
            if (entry == nullptr) return;
            herd::HttpReply reply;
            reply.status = head.status;
            reply.reason = head.reason;
            reply.headers = head.headers;
            loop_.post(
                [this, id, reply = std::move(reply)] {
                    if (auto* entry = calls_.find(id)) entry->data.handlers.head(reply);
                },
                entry->scope);
        };
        h.body = [this, id](std::string_view piece) {
            auto* entry = calls_.find(id);
            if (entry == nullptr || !entry->data.handlers.body) return;
            loop_.post(
                [this, id, piece = std::string(piece)] {
                    if (auto* entry = calls_.find(id); entry && entry->data.handlers.body)
                        entry->data.handlers.body(piece);
                },
                entry->scope);
        };
    }
    h.done = [this, id](client::HttpResponse response, const client::ClientError* error) {
        auto entry = calls_.take(id);
        if (!entry) return;
        herd::HttpReply reply;
        reply.status = response.status;
        reply.reason = std::move(response.reason);
        reply.headers = std::move(response.headers);
        reply.body = std::move(response.body);
        std::optional<herd::ClientError> copy;
        if (error != nullptr) copy.emplace(*error);
        loop_.post(
            [done = std::move(entry->data.handlers.done), reply = std::move(reply),
             copy = std::move(copy)]() mutable {
                if (done) done(std::move(reply), copy ? &*copy : nullptr);
            },
            entry->scope);
    };
    e->data.inner = shared_().fetch(std::move(r), std::move(h));
    return id;
}

}  // namespace herd::worker
