// The one accept loop; see acceptor.hpp.
#include "core/acceptor.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "core/log.hpp"

namespace herd::core {

AcceptStep accept_step(int err) {
    switch (err) {
        case EAGAIN:
#if EWOULDBLOCK != EAGAIN
        case EWOULDBLOCK:
#endif
            return AcceptStep::done;
        case EINTR:
        case ECONNABORTED:
        case EPERM:  // a firewall rule refused this one
        // Linux passes errors already pending on the new connection up through accept();
        // accept(2) says to retry as for EAGAIN.
        case EPROTO:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
            return AcceptStep::again;
        default:  // EMFILE, ENFILE, ENOBUFS, ENOMEM, and anything unexpected
            return AcceptStep::pause;
    }
}

Acceptor::Acceptor(EventLoop& loop, int fd, std::string name, Handler handler, Options options)
    : loop_(loop),
      fd_(fd),
      name_(std::move(name)),
      handler_(std::move(handler)),
      options_(std::move(options)) {
    if (options_.batch < 1) options_.batch = 1;
}

Acceptor::~Acceptor() {
    *alive_ = false;
    stop();
}

void Acceptor::start() {
    cancel_pause();
    if (state_ == State::watching) return;
    loop_.add(fd_, options_.events, [this](std::uint32_t) { on_readable(); });
    state_ = State::watching;
}

void Acceptor::stop() {
    cancel_pause();
    unwatch();
    state_ = State::stopped;
}

void Acceptor::pause_for(std::chrono::milliseconds delay) {
    cancel_pause();
    unwatch();
    state_ = State::paused;
    resume_ = loop_.add_timer(delay, [this] {
        resume_ = 0;
        if (state_ != State::paused) return;
        try {
            start();
        } catch (const std::exception& e) {
            // epoll itself out of memory: try again after another pause rather than lose the
            // socket or end the process.
            log_error("{}: cannot watch it again: {}; next try in {} ms", name_, e.what(),
                      options_.pause.count());
            pause_for(options_.pause);
        }
    });
}

void Acceptor::accept_now() {
    accept_batch();
}

void Acceptor::on_readable() {
    if (options_.gate && !options_.gate()) return;
    accept_batch();
}

void Acceptor::accept_batch() {
    std::shared_ptr<bool> alive = alive_;
    State entry = state_;
    // Failures of single connections do not count against the batch, but they are bounded
    // too: a wake-up always ends.
    for (int accepted = 0, tries = 0; accepted < options_.batch && tries < options_.batch + 64;
         ++tries) {
        int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            ++accepted;
            handler_(UniqueFd(fd));
            // The handler may have stopped, paused or destroyed us.
            if (!*alive || state_ != entry) return;
            continue;
        }
        int err = errno;
        switch (accept_step(err)) {
            case AcceptStep::done:
                return;
            case AcceptStep::again:
                continue;
            case AcceptStep::pause: {
                std::string context = options_.context ? " (" + options_.context() + ")" : "";
                if (state_ == State::stopped) {
                    // A last pass (accept_now) on a socket about to close: nothing to resume.
                    log_warn("{}{}", errno_text("accept4() on " + name_, err), context);
                    return;
                }
                log_warn("{}; pausing accept for {} ms{}", errno_text("accept4() on " + name_, err),
                         options_.pause.count(), context);
                pause_for(options_.pause);
                return;
            }
        }
    }
}

void Acceptor::unwatch() {
    if (state_ == State::watching) loop_.remove(fd_);
}

void Acceptor::cancel_pause() {
    if (resume_ != 0) loop_.cancel_timer(resume_);
    resume_ = 0;
}

}  // namespace herd::core
