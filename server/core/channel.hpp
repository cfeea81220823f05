// Channel: framed JSON messages with attached file descriptors over one AF_UNIX stream
// socket. Transport only: it knows bytes and fds, never what a message means.
//
// Framing: a stream socketpair with an 8-byte header per frame, [u32 payload length][u32 fd
// count], then the JSON payload. SOCK_SEQPACKET was rejected: its message size is bounded by
// the socket buffer, and state snapshots of tens of MiB must pass. Received descriptors go
// into a FIFO in arrival order; the kernel delivers a sendmsg's descriptors with the first
// byte of that sendmsg, which is never later than the first byte of the frame that owns
// them, and a recvmsg never returns the descriptors of two sendmsg calls. The sender puts at
// most one fd-carrying frame in a sendmsg, and after a partial write never sends those fds
// again (libuv's rule). So each recvmsg that brings descriptors (a batch) belongs to the next
// frame that declares some, in order. When the receiver is out of descriptors the kernel
// drops a batch (MSG_CTRUNC): that batch is marked truncated, and the frame it belongs to is
// delivered with what arrived and the loss reported, instead of breaking the channel.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"

namespace herd::core {

struct Message {
    nlohmann::json body;
    std::vector<UniqueFd> fds;
    std::size_t fds_lost = 0;  // declared by the sender but dropped by the kernel (MSG_CTRUNC)

    std::string type() const;  // body["type"] if it is a string, else ""
};

// Pure decoder: bytes and received fds in, messages out. No I/O, so it can be fuzzed.
class FrameDecoder {
  public:
    static constexpr std::uint32_t header_size = 8;
    static constexpr std::uint32_t max_payload = 256u << 20;  // 256 MiB
    static constexpr std::uint32_t max_fds = 16;

    enum class Result {
        message,      // out holds the next message
        need_more,    // no complete frame buffered
        bad_message,  // one frame was not a JSON object: skipped (its fds closed), error says why
        broken,       // the stream cannot be trusted any more (bad header, missing fds)
    };

    void append(const char* data, std::size_t size);
    // The descriptors one recvmsg returned; truncated when it reported MSG_CTRUNC.
    void add_fds(std::vector<UniqueFd> batch, bool truncated);
    Result next(Message& out, std::string& error);
    std::size_t buffered() const { return buffer_.size() - start_; }
    std::size_t pending_fds() const;
    // Only the fds still unclaimed; they are closed here.
    void clear();

  private:
    std::string buffer_;
    std::size_t start_ = 0;
    struct Batch {
        std::vector<UniqueFd> fds;
        bool truncated = false;
    };
    std::deque<Batch> batches_;
};

// Encodes one frame: header and JSON payload.
std::string encode_frame(const nlohmann::json& body, std::uint32_t fd_count);

class Channel {
  public:
    using MessageHandler = std::function<void(Message&&)>;
    // reason: "peer closed the channel", or the error that broke it.
    using CloseHandler = std::function<void(const std::string& reason)>;

    // peer_name is used in every log line about this channel ("worker web/1 (pid 4711)").
    Channel(EventLoop& loop, UniqueFd fd, std::string peer_name);
    ~Channel();
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;

    void start(MessageHandler on_message, CloseHandler on_close);
    // Queues the message and writes what the socket takes now; the rest goes on EPOLLOUT.
    // Returns false (and closes nothing the caller still owns) when the channel is closed.
    bool send(const nlohmann::json& body, std::vector<UniqueFd> fds = {});
    // Writes as much of the queue as possible without waiting; true when it is empty.
    bool flush();
    // Reads and dispatches everything the peer has sent, up to EOF (used when the peer is
    // known to be dead, so that its last messages, such as "ready" or "fatal", are not lost).
    void drain_input();
    // For a socket whose reader died (the master keeps a worker's own end): dispatches the
    // messages still queued in it, without the event loop, and stops at the first frame it
    // cannot read. Not for a started channel.
    void drain_into(MessageHandler on_message);
    // The queued messages not yet begun on the socket (the peer is dead: nothing more will be
    // written), with their descriptors; the queue is emptied. A frame already partly written
    // is dropped: its descriptors left with its first bytes.
    std::vector<Message> take_unsent();
    void close();
    bool closed() const { return !fd_; }
    std::size_t queued_bytes() const { return queued_bytes_; }
    const std::string& peer_name() const { return peer_name_; }
    void set_peer_name(std::string name) { peer_name_ = std::move(name); }
    int fd() const { return fd_.get(); }

    // Beyond this the peer is considered stuck and the channel is closed.
    static constexpr std::size_t max_queued_bytes = 512u << 20;

  private:
    struct Frame {
        std::string bytes;
        std::vector<UniqueFd> fds;
        std::size_t offset = 0;
    };

    void on_events(std::uint32_t events);
    // Reads up to a bound; true when it stopped at the bound (more may be waiting).
    bool read_ready();
    void write_ready();
    void fail(const std::string& reason);
    void update_interest();

    EventLoop& loop_;
    UniqueFd fd_;
    std::string peer_name_;
    MessageHandler on_message_;
    CloseHandler on_close_;
    FrameDecoder decoder_;
    std::deque<Frame> queue_;
    std::size_t queued_bytes_ = 0;
    bool want_write_ = false;
    EventLoop::TimerId retry_timer_ = 0;
};

// Type -> handler table. An unknown type or a message without one is logged with its sender
// and ignored, never dropped silently and never a crash. Context is what a handler gets
// besides the message (the master passes the worker it came from).
void log_untyped_message(const Message& message, std::string_view sender);
void log_unknown_message(const std::string& type, std::string_view sender);

template <class... Context>
class BasicDispatcher {
  public:
    using Handler = std::function<void(Message&, Context...)>;
    void on(std::string type, Handler handler) { handlers_[std::move(type)] = std::move(handler); }
    void dispatch(Message& message, std::string_view sender, Context... context) const {
        std::string type = message.type();
        if (type.empty()) {
            log_untyped_message(message, sender);
            return;
        }
        auto it = handlers_.find(type);
        if (it == handlers_.end()) {
            log_unknown_message(type, sender);
            return;
        }
        it->second(message, context...);
    }

  private:
    std::unordered_map<std::string, Handler> handlers_;
};

using Dispatcher = BasicDispatcher<>;

}  // namespace herd::core
