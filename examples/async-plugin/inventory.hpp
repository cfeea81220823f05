// inventory: a small stock service whose answers come later, in herd's three handler styles.
//
//   GET  /items/NAME       a coroutine: a slow lookup (a timer stands in for the database)
//   GET  /items/NAME/wait  callbacks: a long poll, answered when NAME is back in stock, or
//                          with 204 after wait_ms
//   POST /items/NAME       synchronous: adds the body's number to the stock; answers waiters
//   GET  /events?count=N   server-sent events: the whole stock now and every tick_ms (N
//                          events, or until the client goes)
//
// Config: {"lookup_ms": 50, "wait_ms": 20000, "tick_ms": 1000, "stock": {"apple": 3}}.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <herd/herd.hpp>

namespace inventory {

class Inventory final : public herd::Plugin {
  public:
    void on_start(herd::Context& ctx) override;
    // Picks the style per endpoint; what is left goes to handle(), answered at once.
    void respond(herd::Responder r) override;
    void handle(const herd::Request& request, herd::Response& response) override;

  private:
    herd::Task<> lookup(herd::Responder& r, std::string item);
    herd::Task<> events(herd::Responder& r);
    void wait_for_stock(herd::Responder r, std::string item);
    void restock(const std::string& item, long added);
    void answer_count(herd::Response& response, const std::string& item) const;

    // A long poll in progress: its responder, and the timer that ends it with 204.
    struct Waiter {
        std::string item;
        herd::Responder responder;
        herd::Loop::Id timer = 0;
    };

    herd::Context* ctx_ = nullptr;
    std::chrono::milliseconds lookup_{50};
    std::chrono::milliseconds wait_{20000};
    std::chrono::milliseconds tick_{1000};
    std::map<std::string, long, std::less<>> stock_;
    std::map<std::uint64_t, Waiter> waiters_;
    std::uint64_t next_waiter_ = 1;
};

}  // namespace inventory
