// HttpParser: llhttp driven one request at a time, filling a herd::Request and enforcing the
// limits. Pure: bytes in, a request or an error status out; no sockets, no clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <llhttp.h>

#include "herd/http.hpp"

namespace herd::http {

// The pure rules of the request head (RFC 9110, 9112), used by HttpParser; here to be tested.
// A Host field value: empty, or uri-host [":" port] (RFC 9112 3.2, RFC 3986 3.2.2), where a
// port needs a host.
bool valid_host(std::string_view value);
// An Expect field value (RFC 9110 10.1.1): a list of expectations, empty elements ignored.
enum class Expectation { none, continue_100, other };
Expectation classify_expectation(std::string_view value);
// A Transfer-Encoding field value names only "chunked" (empty elements ignored): herd decodes
// no other coding (RFC 9112 6.1).
bool only_chunked(std::string_view value);

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
    // True once the head of the current HTTP/1.1 request asked for "Expect: 100-continue" (in
    // HTTP/1.0 the expectation is ignored: RFC 9110 10.1.1), until its body is read.
    bool expects_continue() const { return expect_continue_; }
    // The request being read or answered is a HEAD: no response to it carries content, herd's
    // own refusals included (RFC 9110 9.3.2).
    bool head_request() const { return head_; }
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
    // fail() for feed(): the error status.
    Status refuse(int status, std::string reason);
    // The request is complete: the next head starts at the next byte.
    Status complete() {
        scan_ = HeadScan{};
        return Status::request;
    }
    // llhttp refused the method at data[0]: the rest of the request line decides between a
    // method herd does not implement (501) and no request line (400). Across reads.
    Status scan_method(const char* data, std::size_t size, std::size_t& consumed);
    // The chunked body, decoded here (llhttp 8.1 refuses valid chunk extensions): see
    // decode_chunks() in http_parser_chunked.cpp.
    Status feed_chunked(const char* data, std::size_t size, std::size_t& consumed);
    enum class Decode { more, done, error };
    Decode decode_chunks(const char* data, std::size_t size, std::size_t& used);
    // Target forms other than origin-form (RFC 9112 3.2), out of line.
    [[gnu::cold, gnu::noinline]] int check_other_target(std::uint8_t method);
    int on_host(std::string_view value);
    [[gnu::cold, gnu::noinline]] int on_expect(std::string_view value);
    [[gnu::noinline]] void use_target_authority();
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
    // Where the request head must stop being parsed in data (a bare LF, a line starting with
    // whitespace, a request line not ending in HTTP/x.y), with the reason in refusal_; or npos.
    // See http_parser.cpp.
    std::size_t scan_head(const char* data, std::size_t size);
    bool version_at_end(const char* line, std::size_t n) const;
    void keep_line_tail(const char* p, std::size_t n);

    HttpLimits limits_;
    llhttp_t parser_{};
    Request request_;
    std::string kept_;  // the current request's bytes from earlier feeds (see keep_views)
    Phase phase_ = Phase::idle;
    std::size_t header_bytes_ = 0;
    bool in_value_ = false;
    bool expect_continue_ = false;
    bool expect_other_ = false;  // an expectation other than 100-continue: 417
    bool upgraded_ = false;
    bool head_ = false;
    bool absolute_form_ = false;   // the target is "http://authority/..."
    std::uint8_t host_count_ = 0;  // Host fields seen (only 0, 1 or 2 matter)
    std::size_t host_index_ = 0;   // of the Host field in the request's headers
    // The last Host value found valid on this connection: a kept-alive client sends the same
    // one with every request, which then costs a compare instead of a scan.
    char valid_host_[64];
    std::uint8_t valid_host_size_ = 0;
    std::size_t authority_start_ = 0;  // of an absolute-form target's authority, in the target
    std::size_t authority_size_ = 0;
    int error_status_ = 0;
    std::string error_reason_;
    struct HeadScan {
        bool active = true;          // inside a head (or before one); off from its empty line on
        bool cr = false;             // the last byte scanned was CR
        bool seen_line = false;      // a non-empty line (the request line) was seen
        bool line_start = false;     // the next byte starts a line after the request line
        std::uint8_t tail_size = 0;  // bytes in tail
        char tail[10];               // the request line's last bytes, from earlier reads
        std::size_t line_bytes = 0;  // of the current line, carried over from earlier reads
    } scan_;
    enum class Refusal : std::uint8_t { bare_lf, whitespace, version } refusal_ = Refusal::bare_lf;
    struct MethodScan {
        bool active = false;
        bool token = false;      // a method character was seen (by llhttp or here)
        std::size_t length = 0;  // of the part, as far as seen here
        enum class Part : std::uint8_t { method, target, version } part = Part::method;
    } method_scan_;
    struct Chunked {
        enum class State : std::uint8_t {
            size,               // chunk-size digits
            ws_then_semicolon,  // BWS after the size or an extension: only ';' may follow
            ext_name_start,     // after ';' (BWS allowed)
            ext_name,
            ws_after_name,    // BWS after a name: '=' or ';' may follow
            ext_value_start,  // after '=' (BWS allowed)
            ext_token,
            ext_quoted,
            ext_quoted_pair,  // after a backslash in a quoted value
            ext_after_quoted,
            line_lf,  // the CR of a chunk line was seen
            data,
            data_cr,
            data_lf,
            trailer_start,  // a trailer field line or the final CRLF
            trailer_name,
            trailer_value,
            trailer_lf,
            end_lf,
        };
        bool active = false;
        State state = State::size;
        std::uint8_t digits = 0;
        std::uint64_t size = 0;  // of the chunk: its size line, then what is left of its data
        std::size_t extra = 0;   // bytes of chunk extensions and trailer fields (bounded)
    } chunked_;
};

}  // namespace herd::http
