// hiredis on core::EventLoop; see redis_adapter.hpp.
#include "client/redis_adapter.hpp"

#include "core/log.hpp"

namespace herd::client {
namespace {

struct Attachment {
    core::EventLoop& loop;
    redisAsyncContext* context;  // nullptr once hiredis has cleaned up
    int fd;
    bool reading = false;
    bool writing = false;
    bool registered = false;
    bool dispatching = false;  // inside on_events: cleanup must not free us

    void update() {
        if (context == nullptr) return;
        std::uint32_t events = (reading ? EPOLLIN : 0u) | (writing ? EPOLLOUT : 0u);
        try {
            if (events == 0) {
                if (registered) loop.remove(fd);
                registered = false;
            } else if (!registered) {
                loop.add(fd, events, [this](std::uint32_t ev) { on_events(ev); });
                registered = true;
            } else {
                loop.modify(fd, events);
            }
        } catch (const std::exception& e) {
            // epoll refusing a socket hiredis just made: nothing wakes this connection now;
            // the backend's command timeout ends it and its callbacks report the loss.
            core::log_error("redis connection on fd {}: {}", fd, e.what());
        }
    }

    void on_events(std::uint32_t ev) {
        // Errors and hang-ups go to whichever side is waiting: a failed connect shows up as
        // writable-with-error, a closed connection as readable (EOF).
        dispatching = true;
        if (reading && (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) redisAsyncHandleRead(context);
        if (context != nullptr && writing && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            redisAsyncHandleWrite(context);
        dispatching = false;
        if (context == nullptr) delete this;  // hiredis freed the connection meanwhile
    }

    static void add_read(void* p) {
        auto* a = static_cast<Attachment*>(p);
        if (a->reading) return;
        a->reading = true;
        a->update();
    }
    static void del_read(void* p) {
        auto* a = static_cast<Attachment*>(p);
        if (!a->reading) return;
        a->reading = false;
        a->update();
    }
    static void add_write(void* p) {
        auto* a = static_cast<Attachment*>(p);
        if (a->writing) return;
        a->writing = true;
        a->update();
    }
    static void del_write(void* p) {
        auto* a = static_cast<Attachment*>(p);
        if (!a->writing) return;
        a->writing = false;
        a->update();
    }
    static void cleanup(void* p) {
        auto* a = static_cast<Attachment*>(p);
        if (a->registered) a->loop.remove(a->fd);  // before hiredis closes the fd
        a->registered = false;
        a->reading = a->writing = false;
        a->context = nullptr;
        if (!a->dispatching) delete a;  // else on_events frees it on its way out
    }
};

}  // namespace

bool attach_to_loop(redisAsyncContext* context, core::EventLoop& loop) {
    if (context == nullptr || context->err != 0 || context->ev.data != nullptr) return false;
    auto* a = new Attachment{loop, context, context->c.fd};
    context->ev.addRead = &Attachment::add_read;
    context->ev.delRead = &Attachment::del_read;
    context->ev.addWrite = &Attachment::add_write;
    context->ev.delWrite = &Attachment::del_write;
    context->ev.cleanup = &Attachment::cleanup;
    context->ev.data = a;
    return true;
}

}  // namespace herd::client
