// echo: reflects the request (method, path, query, headers, body) as JSON.
#include <herd/herd.hpp>

namespace {

class Echo final : public herd::Plugin {
  public:
    void handle(const herd::Request& request, herd::Response& response) override {
        nlohmann::json headers = nlohmann::json::array();
        for (const herd::Header& h : request.headers()) headers.push_back({h.name, h.value});
        nlohmann::json out = {
            {"method", request.method()},
            {"target", request.target()},
            {"path", request.path()},
            {"subpath", request.subpath()},
            {"query", request.query()},
            {"version",
             std::to_string(request.http_major()) + "." + std::to_string(request.http_minor())},
            {"headers", headers},
            {"body", request.body()},
        };
        response.add_header("Content-Type", "application/json");
        // Bodies are bytes: invalid UTF-8 is replaced, never an exception.
        response.set_body(out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
};

}  // namespace

HERD_PLUGIN(Echo)
