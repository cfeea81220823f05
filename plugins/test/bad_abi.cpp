// A plugin that claims another ABI major version (99.0): the worker must refuse it before
// running it.
#include <herd/herd.hpp>

namespace {
class Never final : public herd::Plugin {
  public:
    Never() { throw std::logic_error("bad_abi: the factory must never run"); }
    void handle(const herd::Request&, herd::Response&) override {}
};
std::unique_ptr<herd::Plugin> make() {
    return std::make_unique<Never>();
}
}  // namespace

BOOST_DLL_ALIAS(make, herd_plugin_create)
extern "C" BOOST_SYMBOL_EXPORT const std::uint32_t herd_plugin_abi = 99u << 16;
