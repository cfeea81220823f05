// Connection: one client socket in a worker. Reads, feeds the parser, runs the plugin for
// each request, writes responses with writev, and enforces timeouts and closing rules.
#pragma once

#include <cstdint>
#include <string>

#include "core/event_loop.hpp"
#include "core/unique_fd.hpp"
#include "worker/http_parser.hpp"
#include "worker/output_queue.hpp"

namespace herd::worker {

class Worker;

class Connection {
  public:
    using Clock = core::EventLoop::Clock;

    Connection(Worker& worker, core::UniqueFd fd);
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection();

    void start();
    // Reads whatever has arrived, as if the socket had been reported readable.
    void read_now() { on_events(EPOLLIN); }
    int fd() const { return fd_.get(); }
    // Closes the connection when a deadline has passed (408 for an unfinished request).
    void check_timeouts(Clock::time_point now);
    // The worker is draining: finish what is in flight, answer with "Connection: close";
    // with close_idle, a connection between requests closes now (FIN, then lingering).
    void drain(bool close_idle);
    // Between requests with nothing left to write.
    bool idle() const;
    // The client's address ("127.0.0.1"), looked up once, for the access log.
    const std::string& peer();

  private:
    enum class State { open, closing, lingering };

    void on_events(std::uint32_t events);
    void on_readable();
    void process(const char* data, std::size_t size);
    void handle_request();
    void respond_error(int status, const std::string& reason);
    void flush();
    void begin_close();
    void linger();
    void destroy();
    void set_interest(bool in, bool out);

    Worker& worker_;
    core::UniqueFd fd_;
    HttpParser parser_;
    herd::Response response_;
    OutputQueue out_;
    std::string pending_;  // unparsed input kept while reading is paused for backpressure
    std::string peer_;
    State state_ = State::open;
    bool close_after_ = false;
    bool served_any_ = false;
    bool continue_sent_ = false;
    bool reading_paused_ = false;
    bool want_out_ = false;
    bool want_in_ = true;
    bool read_all_ = false;          // the last read() did not fill the buffer
    bool close_at_once_ = false;     // closing needs no FIN-and-wait (see process())
    bool peer_done_ = false;         // the client's FIN has arrived
    Clock::time_point phase_since_;  // start of the current timeout phase
    Clock::time_point last_write_;   // last progress writing a response
};

}  // namespace herd::worker
