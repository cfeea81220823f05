// A plugin whose on_start throws: a start-up failure, never served.
#include <herd/herd.hpp>

namespace {
class ThrowOnStart final : public herd::Plugin {
  public:
    void on_start(herd::Context&) override {
        throw std::runtime_error("throw_on_start: refusing to start");
    }
    void handle(const herd::Request&, herd::Response&) override {}
};
}  // namespace

HERD_PLUGIN(ThrowOnStart)
