// An HTTP/1.1 response read with llhttp (Node's parser, in response mode): the head, the body
// in pieces as it arrives (Content-Length, chunked or until the connection closes), and
// whether the connection may carry another request. Pure: bytes in, callbacks out.
#pragma once

#include <llhttp.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herd::client {

struct ResponseHead {
    int status = 0;
    std::string reason;
    std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
};

class ResponseParser {
  public:
    struct Sink {
        virtual void on_head(ResponseHead&& head) = 0;  // 1xx heads are skipped
        virtual void on_body(std::string_view piece) = 0;
        virtual void on_complete() = 0;

      protected:
        ~Sink() = default;
    };
    // max_head: the status line and headers together (a peer cannot make herd buffer more).
    ResponseParser(Sink& sink, std::size_t max_head = 64 * 1024);
    ResponseParser(const ResponseParser&) = delete;
    ResponseParser& operator=(const ResponseParser&) = delete;

    // The request was HEAD: the response has no body whatever its headers say.
    void no_body() { no_body_ = true; }
    // Feeds bytes; false on a protocol error (error() says what). Bytes after a complete
    // response are an error too: herd sends one request at a time on a connection.
    bool feed(std::string_view data);
    // The peer closed: ends a body delimited by the close; false (error()) when the response
    // was not complete.
    bool finish();
    bool complete() const { return complete_; }
    bool started() const { return started_; }  // a byte of the response was seen
    // After complete(): the connection may be used again (HTTP/1.1 without "close", or
    // HTTP/1.0 with "keep-alive").
    bool keep_alive() const { return keep_alive_; }
    const std::string& error() const { return error_; }

  private:
    static int on_status(llhttp_t* p, const char* at, std::size_t n);
    static int on_header_field(llhttp_t* p, const char* at, std::size_t n);
    static int on_header_value(llhttp_t* p, const char* at, std::size_t n);
    static int on_headers_complete(llhttp_t* p);
    static int on_body(llhttp_t* p, const char* at, std::size_t n);
    static int on_message_complete(llhttp_t* p);
    bool count_head(std::size_t n);

    Sink& sink_;
    std::size_t max_head_;
    llhttp_settings_t settings_{};
    llhttp_t parser_{};
    ResponseHead head_;
    std::size_t head_bytes_ = 0;
    bool in_value_ = false;
    bool interim_ = false;  // the head being read is a 1xx
    bool no_body_ = false;
    bool started_ = false;
    bool complete_ = false;
    bool keep_alive_ = false;
    int bad_status_ = -1;  // a status outside 100..599, refused
    std::string error_;
};

}  // namespace herd::client
