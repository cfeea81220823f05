// HttpParser: llhttp driven one request at a time, filling a herd::Request and enforcing the
// limits. Pure: bytes in, a request or an error status out; no sockets, no clock.
#pragma once

#include <cstddef>
#include <string>

#include <llhttp.h>

#include "herd/http.hpp"

namespace herd::worker {

struct HttpLimits {
    std::size_t max_header_bytes = 16 << 10;  // request line + header fields, beyond: 431
    std::size_t max_url_bytes = 8 << 10;      // beyond: 414
    std::size_t max_headers = 100;            // beyond: 431
    std::size_t max_body_bytes = 1 << 20;     // beyond: 413
};

class HttpParser {
  public:
    enum class Status {
        need_more,  // all input consumed, no complete request yet
        request,    // request() is complete; call next() before feeding more
        error,      // error_status() / error_reason(); the connection must close after answering
    };
    enum class Phase { idle, headers, body };

    explicit HttpParser(const HttpLimits& limits);
    HttpParser(const HttpParser&) = delete;
    HttpParser& operator=(const HttpParser&) = delete;

    // Parses from data; `consumed` says how much was used (all of it unless a request ended
    // or an error occurred inside the buffer).
    Status feed(const char* data, std::size_t size, std::size_t& consumed);
    // Forgets the completed request and resumes parsing.
    void next();

    Request& request() { return request_; }
    const Request& request() const { return request_; }
    // Records where the routed plugin's mount ends in the path (for Request::subpath()).
    void set_mount_length(std::size_t n) { request_.mount_len_ = n; }
    int error_status() const { return error_status_; }
    const std::string& error_reason() const { return error_reason_; }
    // Phase of the request being read: idle (between requests), headers, body.
    Phase phase() const { return phase_; }
    // True once the headers of the current request asked for "Expect: 100-continue".
    bool expects_continue() const { return expect_continue_; }
    // The connection must close after answering the current request (HTTP/1.0 without
    // keep-alive, "Connection: close", or an upgrade herd does not perform).
    bool must_close() const { return !request_.keep_alive_; }
    // The complete request's views (target, header fields) point into the caller's buffer:
    // this copies what they see into the parser's own storage, for a request that outlives
    // that buffer (a handler that answers later). Valid until next().
    void keep_views();

  private:
    static int on_message_begin(llhttp_t* p);
    static int on_url(llhttp_t* p, const char* at, std::size_t n);
    static int on_url_complete(llhttp_t* p);
    static int on_header_field(llhttp_t* p, const char* at, std::size_t n);
    static int on_header_value(llhttp_t* p, const char* at, std::size_t n);
    static int on_header_value_complete(llhttp_t* p);
    static int on_headers_complete(llhttp_t* p);
    static int on_body(llhttp_t* p, const char* at, std::size_t n);
    static int on_message_complete(llhttp_t* p);

    int fail(int status, std::string reason);
    // The refusals of the callbacks, out of line: the callbacks run for every field.
    [[gnu::cold, gnu::noinline]] int fail_head_too_large();
    [[gnu::cold, gnu::noinline]] int fail_target_too_long();
    [[gnu::cold, gnu::noinline]] int fail_too_many_headers();
    [[gnu::cold, gnu::noinline]] int fail_empty_name();
    // One more entry in the request's header vector (reused by later requests).
    [[gnu::noinline]] void add_header_slot();
    bool count_header_bytes(std::size_t n) {
        header_bytes_ += n;
        return header_bytes_ <= limits_.max_header_bytes;
    }
    // The request's views (target, header names and values) point into the caller's buffer;
    // when a feed ends inside a request, keep_views() copies their bytes into kept_ so that
    // they outlive that buffer, and extend() continues a view with bytes of a later feed.
    template <class F>
    void for_each_view(F f);
    bool in_kept(std::string_view v, std::size_t kept_size) const;
    char* grow_kept(std::size_t n);
    void extend(std::string_view& view, const char* at, std::size_t n) {
        if (view.empty())
            view = {at, n};  // the usual case: a field reported once
        else
            extend_more(view, at, n);
    }
    void extend_more(std::string_view& view, const char* at, std::size_t n);
    // Where the first bare LF of the request head is in data, or npos; see http_parser.cpp.
    std::size_t scan_head(const char* data, std::size_t size);

    HttpLimits limits_;
    llhttp_t parser_{};
    Request request_;
    std::string kept_;  // the current request's bytes from earlier feeds (see keep_views)
    Phase phase_ = Phase::idle;
    std::size_t header_bytes_ = 0;
    bool in_value_ = false;
    bool expect_continue_ = false;
    bool upgraded_ = false;
    int error_status_ = 0;
    std::string error_reason_;
    struct HeadScan {
        bool active = true;          // inside a head (or before one); off from its empty line on
        bool cr = false;             // the last byte scanned was CR
        bool seen_line = false;      // a non-empty line (the request line) was seen
        std::size_t line_bytes = 0;  // of the current line, carried over from earlier reads
    } scan_;
};

}  // namespace herd::worker
