// ControlServer: the master's Unix socket for the herd CLI. One JSON request per
// connection, one JSON answer, then close; or, for {"cmd": "events"}, an answer and then one
// JSON object per line for every event the master publishes, until either side closes.
// Non-blocking in the master's loop: a slow or silent client never holds the master up.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/acceptor.hpp"
#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"

namespace herd::master {

class ControlServer {
  public:
    // Answers the request, now or later (a reload answers once it has finished). Calling it
    // after the client has gone does nothing; calling it twice keeps the first answer.
    using Reply = std::function<void(const nlohmann::json& answer)>;
    using Handler = std::function<void(const nlohmann::json& request, Reply reply)>;

    ControlServer(core::EventLoop& loop, Handler handler);
    ~ControlServer();

    // Creates the socket safely, mode 0600: refuses a path that is not a socket (a planted
    // symlink or file), refuses a socket a live master answers on, replaces a stale one.
    // Throws core::Error naming the path.
    void listen(const std::string& path);
    const std::string& path() const { return path_; }
    // An upgrade: the new master takes over the old one's socket (`accepting` false until it
    // has taken over), and the old one hands it over: it stops accepting, answers the clients
    // it has (the `herd upgrade` waiting for its answer, `herd events`), and leaves the path
    // to the new master. socket() is -1 once handed over.
    void adopt(core::UniqueFd socket, const std::string& path, bool accepting);
    void start_accepting();
    void hand_over();
    int socket() const { return socket_.get(); }

    // Sends `event` as one line to every "events" client. A client that has let more than
    // max_event_backlog bytes pile up is disconnected (it sees the stream end), not waited on.
    void publish(const nlohmann::json& event);
    static constexpr std::size_t max_event_backlog = 4 << 20;
    // A client that has not sent its whole request within this is dropped; with max_clients
    // at once (events clients included) no more are accepted until one leaves, so that
    // silent clients cannot take the master's descriptors.
    static constexpr std::chrono::milliseconds request_timeout{10000};
    static constexpr std::size_t max_clients = 128;

  private:
    struct Client {
        core::UniqueFd fd;
        std::uint64_t id = 0;  // descriptors are reused; a late answer finds its client by id
        std::string in;
        bool asked = false;       // the request is with the handler
        bool subscribed = false;  // an "events" client: the connection stays open
        std::string out;
        std::size_t written = 0;
    };
    void on_accept(core::UniqueFd fd);
    void on_client(int fd, std::uint32_t events);
    void answer(std::uint64_t id, const nlohmann::json& answer);
    void write_out(Client& c);
    void on_subscriber(Client& c, std::uint32_t events);
    void drop(int fd);

    core::EventLoop& loop_;
    Handler handler_;
    core::UniqueFd socket_;
    std::unique_ptr<core::Acceptor> acceptor_;  // after socket_: stops before it closes
    std::string path_;
    std::map<int, std::unique_ptr<Client>> clients_;
    std::uint64_t next_id_ = 1;
    bool full_ = false;  // max_clients reached: not accepting until one leaves
    // The path is ours to remove when we go: we made the socket, or took over from the master
    // that did (an adopted socket is not ours before then: a new master that fails must not
    // remove the old one's).
    bool owns_path_ = false;
};

// The path a listening Unix socket is bound to ("" when it has none).
std::string unix_socket_path(int fd);

// The CLI side: sends one request to the socket and returns the answer. Throws core::Error
// saying that no master runs there, or what else went wrong.
nlohmann::json control_request(const std::string& path, const nlohmann::json& request);

// The CLI side of a stream ("events"): sends the request, then calls on_line with each JSON
// object the master sends (the answer first) until the master closes the connection or
// on_line returns false. Throws core::Error as control_request does, and for a line that is
// not a JSON object.
void control_stream(const std::string& path, const nlohmann::json& request,
                    const std::function<bool(const nlohmann::json&)>& on_line);

}  // namespace herd::master
