// Channel: framed JSON messages with file descriptors; see channel.hpp for the framing rules.
#include "core/channel.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include "core/log.hpp"

namespace herd::core {

std::string Message::type() const {
    if (body.is_object()) {
        auto it = body.find("type");
        if (it != body.end() && it->is_string()) return it->get<std::string>();
    }
    return {};
}

// ---- FrameDecoder ----

void FrameDecoder::append(const char* data, std::size_t size) {
    if (start_ > 0 && start_ == buffer_.size()) {
        buffer_.clear();
        start_ = 0;
    } else if (start_ > (1u << 20) && start_ > buffer_.size() / 2) {
        buffer_.erase(0, start_);
        start_ = 0;
    }
    buffer_.append(data, size);
}

FrameDecoder::Result FrameDecoder::next(Message& out, std::string& error) {
    if (buffered() < header_size) return Result::need_more;
    std::uint32_t length = 0, nfds = 0;
    std::memcpy(&length, buffer_.data() + start_, 4);
    std::memcpy(&nfds, buffer_.data() + start_ + 4, 4);
    if (length > max_payload) {
        error = "frame of " + std::to_string(length) + " bytes exceeds the limit of " +
                std::to_string(max_payload);
        return Result::broken;
    }
    if (nfds > max_fds) {
        error = "frame declares " + std::to_string(nfds) + " descriptors, limit " +
                std::to_string(max_fds);
        return Result::broken;
    }
    if (buffered() < header_size + length) return Result::need_more;
    std::vector<UniqueFd> fds;
    std::size_t lost = 0;
    if (nfds > 0) {
        if (batches_.empty()) {
            error = "frame declares " + std::to_string(nfds) + " descriptors but 0 arrived";
            return Result::broken;
        }
        Batch& batch = batches_.front();
        if (batch.fds.size() > nfds || (batch.fds.size() < nfds && !batch.truncated)) {
            error = "frame declares " + std::to_string(nfds) + " descriptors but " +
                    std::to_string(batch.fds.size()) + " arrived";
            return Result::broken;
        }
        lost = nfds - batch.fds.size();
        fds = std::move(batch.fds);
        batches_.pop_front();
    }
    const char* payload = buffer_.data() + start_ + header_size;
    start_ += header_size + length;
    nlohmann::json body = nlohmann::json::parse(payload, payload + length, nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
        error = body.is_discarded()
                    ? "payload of " + std::to_string(length) + " bytes is not valid JSON"
                    : "payload is JSON but not an object";
        return Result::bad_message;  // fds close here, with the vector
    }
    out.body = std::move(body);
    out.fds = std::move(fds);
    out.fds_lost = lost;
    return Result::message;
}

void FrameDecoder::add_fds(std::vector<UniqueFd> batch, bool truncated) {
    if (batch.empty() && !truncated) return;
    batches_.push_back(Batch{std::move(batch), truncated});
}

std::size_t FrameDecoder::pending_fds() const {
    std::size_t n = 0;
    for (const Batch& b : batches_) n += b.fds.size();
    return n;
}

void FrameDecoder::clear() {
    buffer_.clear();
    start_ = 0;
    batches_.clear();
}

std::string encode_frame(const nlohmann::json& body, std::uint32_t fd_count) {
    std::string payload = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    std::string frame(FrameDecoder::header_size, '\0');
    auto length = static_cast<std::uint32_t>(payload.size());
    std::memcpy(frame.data(), &length, 4);
    std::memcpy(frame.data() + 4, &fd_count, 4);
    frame += payload;
    return frame;
}

// ---- Channel ----

Channel::Channel(EventLoop& loop, UniqueFd fd, std::string peer_name)
    : loop_(loop), fd_(std::move(fd)), peer_name_(std::move(peer_name)) {}

Channel::~Channel() {
    if (retry_timer_ != 0) loop_.cancel_timer(retry_timer_);
    if (fd_) loop_.remove(fd_.get());
}

void Channel::drain_input() {
    // read_ready() reads a bounded amount per call; a dead peer's socket ends in EOF.
    while (fd_ && read_ready()) {
    }
}

void Channel::drain_into(MessageHandler on_message) {
    on_message_ = std::move(on_message);
    on_close_ = nullptr;
    drain_input();
}

std::vector<Message> Channel::take_unsent() {
    std::vector<Message> out;
    for (Frame& f : queue_) {
        if (f.offset != 0) continue;
        FrameDecoder decoder;
        decoder.append(f.bytes.data(), f.bytes.size());
        if (!f.fds.empty()) decoder.add_fds(std::move(f.fds), false);
        Message m;
        std::string error;
        if (decoder.next(m, error) == FrameDecoder::Result::message) out.push_back(std::move(m));
    }
    queue_.clear();
    queued_bytes_ = 0;
    update_interest();
    return out;
}

void Channel::start(MessageHandler on_message, CloseHandler on_close) {
    on_message_ = std::move(on_message);
    on_close_ = std::move(on_close);
    loop_.add(fd_.get(), EPOLLIN | EPOLLRDHUP, [this](std::uint32_t ev) { on_events(ev); });
    update_interest();
}

void Channel::on_events(std::uint32_t events) {
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) (void)read_ready();
    if (fd_ && (events & EPOLLOUT)) write_ready();
}

bool Channel::read_ready() {
    char data[65536];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * FrameDecoder::max_fds)];
    // Bounded work per wake-up so one chatty peer cannot starve the loop.
    for (int round = 0; round < 64 && fd_; ++round) {
        iovec iov{data, sizeof data};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t n = recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return false;
            fail(errno_text("recvmsg() from " + peer_name_));
            return false;
        }
        // Wrap every received descriptor first, so each error path below closes them.
        std::vector<UniqueFd> batch;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
                int received;
                std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                batch.emplace_back(received);
            }
        }
        // MSG_CTRUNC: the kernel dropped descriptors (we are at our descriptor limit). The
        // frame that owns this batch is told; the channel itself stays sound.
        bool carried_fds = !batch.empty() || (msg.msg_flags & MSG_CTRUNC) != 0;
        decoder_.add_fds(std::move(batch), (msg.msg_flags & MSG_CTRUNC) != 0);
        if (n == 0) {
            if (decoder_.buffered() > 0)
                fail("peer closed the channel in the middle of a frame (" +
                     std::to_string(decoder_.buffered()) + " bytes pending)");
            else
                fail("peer closed the channel");
            return false;
        }
        decoder_.append(data, static_cast<std::size_t>(n));
        for (;;) {
            Message m;
            std::string error;
            auto result = decoder_.next(m, error);
            if (result == FrameDecoder::Result::need_more) break;
            if (result == FrameDecoder::Result::broken) {
                fail("bad frame from " + peer_name_ + ": " + error);
                return false;
            }
            if (result == FrameDecoder::Result::bad_message) {
                log_error("ignoring malformed message from {}: {}", peer_name_, error);
                continue;
            }
            if (m.fds_lost > 0)
                log_error(
                    "{} descriptor(s) of a \"{}\" message from {} were dropped by the kernel "
                    "(MSG_CTRUNC: out of descriptors?)",
                    m.fds_lost, m.type(), peer_name_);
            try {
                on_message_(std::move(m));
            } catch (const nlohmann::json::exception& e) {
                // A well-framed message with a field of the wrong type: the sender's bug.
                log_error("ignoring a malformed message from {}: {}", peer_name_, e.what());
            }
            if (!fd_) return false;  // the handler closed us
        }
        // A short read has taken what was there, unless the kernel stopped early after a
        // descriptor-carrying segment (it never merges two of them into one read).
        if (static_cast<std::size_t>(n) < sizeof data && !carried_fds) return false;
    }
    return static_cast<bool>(fd_);  // stopped at the bound: more may be waiting
}

bool Channel::send(const nlohmann::json& body, std::vector<UniqueFd> fds) {
    if (!fd_) return false;
    if (fds.size() > FrameDecoder::max_fds) {
        log_error("refusing to send {} descriptors in one message to {} (limit {})", fds.size(),
                  peer_name_, FrameDecoder::max_fds);
        return false;
    }
    Frame f{encode_frame(body, static_cast<std::uint32_t>(fds.size())), std::move(fds), 0};
    if (f.bytes.size() - FrameDecoder::header_size > FrameDecoder::max_payload) {
        log_error("refusing to send a {}-byte message to {} (limit {})", f.bytes.size(), peer_name_,
                  FrameDecoder::max_payload);
        return false;
    }
    queued_bytes_ += f.bytes.size();
    queue_.push_back(std::move(f));
    if (queued_bytes_ > max_queued_bytes) {
        fail("outgoing queue to " + peer_name_ + " exceeds " + std::to_string(max_queued_bytes) +
             " bytes: peer is not reading");
        return false;
    }
    if (queue_.size() == 1) write_ready();
    return fd_ ? true : false;
}

bool Channel::flush() {
    if (fd_ && !queue_.empty()) write_ready();
    return queue_.empty();
}

void Channel::write_ready() {
    while (fd_ && !queue_.empty()) {
        // One sendmsg carries the frames up to (not past) a second frame with unsent fds.
        iovec iov[64];
        int niov = 0;
        std::vector<int> fds;
        Frame* fd_frame = nullptr;
        for (auto& f : queue_) {
            if (niov == 64) break;
            if (!f.fds.empty()) {  // fds are cleared once the kernel has taken them
                if (fd_frame) break;
                fd_frame = &f;
                for (auto& d : f.fds) fds.push_back(d.get());
            }
            iov[niov++] = iovec{f.bytes.data() + f.offset, f.bytes.size() - f.offset};
        }
        msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = static_cast<std::size_t>(niov);
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * FrameDecoder::max_fds)];
        if (!fds.empty()) {
            msg.msg_control = control;
            msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
            cmsghdr* c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
            std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
        }
        ssize_t n = sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            if (errno == ETOOMANYREFS || errno == ENOBUFS || errno == ENOMEM) {
                // Transient: too many descriptors in flight (they count against our limit
                // until the peer reads them) or no memory now. The socket stays writable,
                // so EPOLLOUT would not wake us: retry on a timer.
                if (retry_timer_ == 0) {
                    log_warn("{}; retrying", errno_text("sendmsg() to " + peer_name_));
                    retry_timer_ = loop_.add_timer(std::chrono::milliseconds(10), [this] {
                        retry_timer_ = 0;
                        write_ready();
                    });
                }
                break;
            }
            fail(errno_text("sendmsg() to " + peer_name_));
            return;
        }
        // The kernel took the descriptors with the first byte it accepted, even when that
        // byte belongs to an earlier frame: our copies close now and are never sent again.
        if (fd_frame) fd_frame->fds.clear();
        auto left = static_cast<std::size_t>(n);
        while (!queue_.empty()) {
            Frame& f = queue_.front();
            std::size_t rest = f.bytes.size() - f.offset;
            if (left < rest) {
                f.offset += left;
                queued_bytes_ -= left;
                left = 0;
                break;
            }
            left -= rest;
            queued_bytes_ -= rest;
            queue_.pop_front();
            if (left == 0) break;
        }
    }
    update_interest();
}

void Channel::update_interest() {
    if (!fd_) return;
    bool want = !queue_.empty();
    if (want == want_write_) return;
    want_write_ = want;
    if (loop_.watching(fd_.get()))
        loop_.modify(fd_.get(), EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0u));
}

void Channel::fail(const std::string& reason) {
    if (!fd_) return;
    close();
    if (on_close_) on_close_(reason);
}

void Channel::close() {
    if (retry_timer_ != 0) loop_.cancel_timer(retry_timer_);
    retry_timer_ = 0;
    if (!fd_) return;
    loop_.remove(fd_.get());
    fd_.reset();
    queue_.clear();
    queued_bytes_ = 0;
    decoder_.clear();
}

void log_untyped_message(const Message& message, std::string_view sender) {
    log_error("ignoring message without a \"type\" from {}: {}", sender,
              message.body.dump().substr(0, 200));
}

void log_unknown_message(const std::string& type, std::string_view sender) {
    log_warn("ignoring message of unknown type \"{}\" from {}", type, sender);
}

}  // namespace herd::core
