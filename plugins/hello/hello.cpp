// hello: answers every GET and HEAD with a greeting ("Hello, World!" unless configured).
#include <herd/herd.hpp>

namespace {

class Hello final : public herd::Plugin {
  public:
    void on_start(herd::Context& ctx) override {
        const auto& cfg = ctx.config();
        if (cfg.contains("greeting")) {
            if (!cfg["greeting"].is_string())
                throw std::invalid_argument("config.greeting: expected a string, got " +
                                            cfg["greeting"].dump());
            greeting_ = cfg["greeting"].get<std::string>();
        }
    }

    void handle(const herd::Request& request, herd::Response& response) override {
        if (request.method() != "GET" && request.method() != "HEAD") {
            response.set_status(405);
            response.add_header("Allow", "GET, HEAD");
            return;
        }
        response.add_header("Content-Type", "text/plain");
        response.set_body(greeting_);
    }

  private:
    std::string greeting_ = "Hello, World!";
};

}  // namespace

HERD_PLUGIN(Hello)
