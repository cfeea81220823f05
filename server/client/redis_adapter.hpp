// Drives a hiredis (0.14) asynchronous connection from herd's core::EventLoop: hiredis calls
// the ev.addRead/delRead/addWrite/delWrite hooks when it wants to read or write, and we call
// redisAsyncHandleRead/Write when epoll says the socket is ready. No second event library.
//
// Lifetime: hiredis calls ev.cleanup from inside its own free (after an error, a
// disconnect, or redisAsyncFree), which may happen while our epoll handler for that very
// socket is running. cleanup removes the fd from the loop (safe inside a handler) and frees
// the attachment, or lets that handler free it on its way out.
#pragma once

#include <hiredis/async.h>

#include "core/event_loop.hpp"

namespace herd::client {

// Returns false (and attaches nothing) when the context already has event hooks or a
// connection error. The context may be freed by hiredis at any time afterwards; cleanup is
// automatic.
bool attach_to_loop(redisAsyncContext* context, core::EventLoop& loop);

}  // namespace herd::client
