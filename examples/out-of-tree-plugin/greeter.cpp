// greeter: a complete minimal herd plugin, built against the installed SDK.
#include <herd/herd.hpp>

class Greeter final : public herd::Plugin {
  public:
    void on_start(herd::Context& ctx) override {      // once per worker, before serving
        name_ = ctx.config().value("name", "world");  // this plugin's "config" object
        ctx.log().info("greeter ready in worker " + std::to_string(ctx.worker_id()));
    }

    void handle(const herd::Request& request, herd::Response& response) override {
        response.add_header("Content-Type", "text/plain");
        response.set_body("Greetings, " + name_ + ", from " + std::string(request.path()) + "\n");
    }

  private:
    std::string name_;
};

HERD_PLUGIN(Greeter)
