// HttpParser, continued: its llhttp side. The parser's construction (one llhttp settings table
// naming herd's callbacks, shared by every connection), the callbacks themselves (method,
// target, header fields, Host and Expect, end of head, body, end of message), and the failures
// they report. See http_parser.hpp.
#include "http/http_parser.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "http/http_chars.hpp"

namespace herd::http {
using namespace chars;

namespace {
HttpParser* self(llhttp_t* p) {
    return static_cast<HttpParser*>(p->data);
}

const llhttp_settings_t& settings() {
    static const llhttp_settings_t s = [] {
        llhttp_settings_t t;
        llhttp_settings_init(&t);
        return t;
    }();
    return s;
}
}  // namespace

HttpParser::HttpParser(const HttpLimits& limits) : limits_(limits) {
    // One settings table for every connection; llhttp keeps a pointer to it.
    static llhttp_settings_t shared = [] {
        llhttp_settings_t t = settings();
        t.on_message_begin = &HttpParser::on_message_begin;
        t.on_url = &HttpParser::on_url;
        t.on_url_complete = &HttpParser::on_url_complete;
        t.on_header_field = &HttpParser::on_header_field;
        t.on_header_value = &HttpParser::on_header_value;
        t.on_header_value_complete = &HttpParser::on_header_value_complete;
        t.on_headers_complete = &HttpParser::on_headers_complete;
        t.on_body = &HttpParser::on_body;
        t.on_message_complete = &HttpParser::on_message_complete;
        return t;
    }();
    // Strict parsing (LLHTTP_STRICT_MODE in meson.build, no lenient flags): conflicting
    // Content-Length / Transfer-Encoding, bare LF and bad chunk sizes are errors, which is what
    // closes smuggling holes.
    llhttp_init(&parser_, HTTP_REQUEST, &shared);
    // Any HTTP/d.d gets to on_headers_complete, which serves 1.x as 1.1 and answers 505 to the
    // other majors (RFC 9110 6.2); without this llhttp refuses all but 0.9, 1.0, 1.1 and 2.0
    // with a 400. (llhttp 8.1 has no setter for this flag.)
    parser_.lenient_flags |= LENIENT_VERSION;
    parser_.data = this;
    request_.headers_.reserve(16);  // grown once in a while, not for every connection
}

int HttpParser::fail(int status, std::string reason) {
    error_status_ = status;
    error_reason_ = std::move(reason);
    return HPE_USER;
}

int HttpParser::fail_head_too_large() {
    return fail(431,
                "request head larger than " + std::to_string(limits_.max_header_bytes) + " bytes");
}

int HttpParser::fail_target_too_long() {
    return fail(414,
                "request target longer than " + std::to_string(limits_.max_url_bytes) + " bytes");
}

int HttpParser::fail_too_many_headers() {
    return fail(431, "more than " + std::to_string(limits_.max_headers) + " header fields");
}

int HttpParser::fail_empty_name() {
    return fail(400, "header field with an empty name");
}

void HttpParser::add_header_slot() {
    request_.headers_.emplace_back();
}

int HttpParser::on_message_begin(llhttp_t* p) {
    HttpParser* s = self(p);
    Request& r = s->request_;
    r.method_ = {};
    r.target_ = {};
    // The previous request's kept bytes are no longer seen; a large head's memory goes.
    s->kept_.clear();
    if (s->kept_.capacity() > (16u << 10)) s->kept_.shrink_to_fit();
    r.path_start_ = 0;
    r.path_len_ = 0;
    r.mount_len_ = 0;
    r.header_count_ = 0;
    r.body_.clear();
    // A kept-alive connection does not keep a past large body's memory.
    if (r.body_.capacity() > (256u << 10)) r.body_.shrink_to_fit();
    r.keep_alive_ = true;
    s->phase_ = Phase::headers;
    s->header_bytes_ = 0;
    s->in_value_ = false;
    s->expect_continue_ = false;
    s->expect_other_ = false;
    s->head_ = false;
    s->absolute_form_ = false;
    s->host_count_ = 0;
    return HPE_OK;
}

int HttpParser::on_url(llhttp_t* p, const char* at, std::size_t n) {
    HttpParser* s = self(p);
    s->head_ = p->method == HTTP_HEAD;  // the method is known once the target starts
    bool over_url = s->request_.target_.size() + n > s->limits_.max_url_bytes;
    bool over_head = !s->count_header_bytes(n);
    // The target is the first thing counted in the head, so both limits apply to the same
    // bytes. Over both, the answer is the smaller limit's: a client that sends the target in
    // pieces meets that one first, and the status must not depend on how TCP cut the stream.
    if (over_url && over_head && s->limits_.max_header_bytes < s->limits_.max_url_bytes)
        over_url = false;
    if (over_url) return s->fail_target_too_long();
    if (over_head) return s->fail_head_too_large();
    s->extend(s->request_.target_, at, n);
    return HPE_OK;
}

int HttpParser::on_url_complete(llhttp_t* p) {
    HttpParser* s = self(p);
    Request& r = s->request_;
    // RFC 9110 9.3.6: any 2xx to CONNECT would open a tunnel; herd opens none.
    if (p->method == HTTP_CONNECT) return s->fail(501, "CONNECT is not implemented");
    std::string_view t = r.target_;
    auto q = t.find('?');
    r.path_len_ = q == std::string::npos ? t.size() : q;
    r.path_start_ = 0;
    // RFC 9112 3.2: a request target has no fragment.
    if (std::memchr(t.data(), '#', t.size()) != nullptr)
        return s->fail(400, "request target with a fragment ('#')");
    if (t.starts_with('/')) return HPE_OK;  // origin-form: the usual case
    return s->check_other_target(p->method);
}

int HttpParser::check_other_target(std::uint8_t method) {
    Request& r = request_;
    std::string_view t = r.target_;
    if (t == "*") {
        // RFC 9112 3.2.4: the asterisk-form is for a server-wide OPTIONS only (and "PRI *" starts
        // the HTTP/2 preface, which llhttp reports: 505).
        if (method != HTTP_OPTIONS && method != HTTP_PRI)
            return fail(400, "target \"*\" with a method other than OPTIONS");
        return HPE_OK;
    }
    // Absolute-form ("http://host:80/path?q", RFC 9112 3.2.2): the path starts after the
    // authority, which must name a host (RFC 9110 4.2.1) and carry no userinfo (4.2.4).
    auto scheme_end = t.find("://");
    if (scheme_end == std::string::npos || scheme_end > r.path_len_)
        return fail(400, "request target is neither a path, \"*\" nor an absolute URI");
    std::string_view scheme = t.substr(0, scheme_end);
    if (!iequals(scheme, "http") && !iequals(scheme, "https"))
        return fail(400, "absolute request target with a scheme other than http and https");
    std::size_t start = scheme_end + 3;
    std::size_t end = std::min(t.find('/', start), r.path_len_);
    std::string_view authority = t.substr(start, end - start);
    if (authority.find('@') != std::string::npos)
        return fail(400, "absolute request target with userinfo");
    if (authority.empty() || !valid_host(authority))
        return fail(400, "absolute request target without a valid host");
    r.path_start_ = end;
    absolute_form_ = true;
    authority_start_ = start;
    authority_size_ = authority.size();
    return HPE_OK;
}

int HttpParser::on_header_field(llhttp_t* p, const char* at, std::size_t n) {
    HttpParser* s = self(p);
    Request& r = s->request_;
    if (!s->count_header_bytes(n)) return s->fail_head_too_large();
    if (s->in_value_ || r.header_count_ == 0) {
        // A new field starts: reuse the storage of an earlier request's header if there is one.
        if (r.header_count_ == s->limits_.max_headers) return s->fail_too_many_headers();
        if (r.header_count_ == r.headers_.size()) s->add_header_slot();
        Header& h = r.headers_[r.header_count_++];
        h.name = {};
        h.value = {};
        s->in_value_ = false;
    }
    s->extend(r.headers_[r.header_count_ - 1].name, at, n);
    return HPE_OK;
}

int HttpParser::on_header_value(llhttp_t* p, const char* at, std::size_t n) {
    HttpParser* s = self(p);
    if (!s->count_header_bytes(n)) return s->fail_head_too_large();
    s->in_value_ = true;
    s->extend(s->request_.headers_[s->request_.header_count_ - 1].value, at, n);
    return HPE_OK;
}

int HttpParser::on_header_value_complete(llhttp_t* p) {
    HttpParser* s = self(p);
    s->in_value_ = true;  // also for an empty value, where on_header_value never ran
    Header& h = s->request_.headers_[s->request_.header_count_ - 1];
    // RFC 9112 5.1: a field name is a token, one character at least. llhttp takes a line
    // starting with ':' as a field with an empty name; a front end may not, so it is refused.
    if (h.name.empty()) return s->fail_empty_name();
    // llhttp strips leading whitespace only; trailing OWS is not part of the value either.
    while (!h.value.empty() && (h.value.back() == ' ' || h.value.back() == '\t'))
        h.value.remove_suffix(1);
    // The fields herd itself reads (this runs for every field).
    if (name_is(h.name, "host")) return s->on_host(h.value);
    if (name_is(h.name, "expect")) return s->on_expect(h.value);
    return HPE_OK;
}

int HttpParser::on_host(std::string_view value) {
    // RFC 9112 3.2: 400 for more than one Host field line, or an invalid value.
    if (++host_count_ > 1) return fail(400, "more than one Host header field");
    host_index_ = request_.header_count_ - 1;
    if (value.size() == valid_host_size_ &&
        std::memcmp(value.data(), valid_host_, value.size()) == 0)
        return HPE_OK;  // this connection's last Host, valid already
    if (!valid_host(value))
        return fail(400, "invalid Host header field \"" + std::string(value.substr(0, 100)) + "\"");
    if (value.size() <= sizeof valid_host_) {
        std::memcpy(valid_host_, value.data(), value.size());
        valid_host_size_ = static_cast<std::uint8_t>(value.size());
    }
    return HPE_OK;
}

int HttpParser::on_expect(std::string_view value) {
    switch (classify_expectation(value)) {
        case Expectation::none:
            break;
        case Expectation::continue_100:
            expect_continue_ = true;
            break;
        case Expectation::other:
            expect_other_ = true;
            break;
    }
    return HPE_OK;
}

int HttpParser::on_headers_complete(llhttp_t* p) {
    HttpParser* s = self(p);
    Request& r = s->request_;
    r.method_ = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    r.major_ = p->http_major;
    r.minor_ = p->http_minor;
    if (r.major_ != 1)  // HTTP/0.9 ("GET /" with no version), 2.0 and others: RFC 9110 6.2
        return s->fail(505, "HTTP/" + std::to_string(r.major_) + "." + std::to_string(r.minor_) +
                                " is not supported");
    if (r.minor_ > 1) r.minor_ = 1;  // RFC 9110 6.2: a later HTTP/1.x is served as HTTP/1.1
    if (s->host_count_ == 0 && r.minor_ == 1)  // RFC 9112 3.2
        return s->fail(400, "HTTP/1.1 request without a Host header field");
    if (r.minor_ == 0) {
        // RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        if (p->flags & F_TRANSFER_ENCODING)
            return s->fail(400, "Transfer-Encoding in an HTTP/1.0 request");
        s->expect_continue_ = false;  // RFC 9110 10.1.1: ignored in HTTP/1.0
        p->upgrade = 0;               // RFC 9110 7.8: Upgrade is ignored in HTTP/1.0
    }
    if (s->expect_other_)  // RFC 9110 10.1.1: MAY answer 417
        return s->fail(417, "an expectation other than 100-continue");
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s->limits_.max_body_bytes)
        return s->fail(413, "Content-Length " + std::to_string(p->content_length) +
                                " exceeds the limit of " +
                                std::to_string(s->limits_.max_body_bytes) + " bytes");
    if ((p->flags & F_TRANSFER_ENCODING) && (p->flags & F_CHUNKED)) {
        // llhttp frames by a final "chunked" (and refuses, with 400, a coding list not ending
        // in it: RFC 9112 6.3); a coding before it ("gzip, chunked") would reach the plugin
        // still encoded. RFC 9112 6.1: 501.
        for (const Header& h : r.headers())
            if (iequals(h.name, "transfer-encoding") && !only_chunked(h.value))
                return s->fail(501, "Transfer-Encoding \"" + std::string(h.value.substr(0, 100)) +
                                        "\" is not implemented (only chunked)");
    }
    if (s->absolute_form_) s->use_target_authority();
    s->phase_ = Phase::body;
    if (p->flags & F_CHUNKED) {
        // llhttp 8.1 refuses valid chunk extensions ("5;a=b;c=d", BWS, quoted pairs): the body
        // is decoded by feed(). llhttp takes the message as one without a body (1), completes
        // it, and pauses in on_message_complete.
        s->chunked_ = Chunked{};
        s->chunked_.active = true;
        return 1;
    }
    // Reserve the announced body once, instead of growing it chunk by chunk.
    // (at most 64 KiB up front: a client announcing a large body must send it to use memory)
    if (p->flags & F_CONTENT_LENGTH)
        r.body_.reserve(
            std::min<std::size_t>(static_cast<std::size_t>(p->content_length), 64 << 10));
    return HPE_OK;
}

void HttpParser::use_target_authority() {
    // RFC 9112 3.2.2: the origin server ignores the Host field and uses the target's authority.
    Request& r = request_;
    std::string_view authority = r.target_.substr(authority_start_, authority_size_);
    if (host_count_ > 0) {
        r.headers_[host_index_].value = authority;
        return;
    }
    if (r.header_count_ == r.headers_.size()) add_header_slot();
    r.headers_[r.header_count_++] = Header{"Host", authority};
}

int HttpParser::on_body(llhttp_t* p, const char* at, std::size_t n) {
    HttpParser* s = self(p);
    if (s->request_.body_.size() + n > s->limits_.max_body_bytes)
        return s->fail(413, "request body exceeds the limit of " +
                                std::to_string(s->limits_.max_body_bytes) + " bytes");
    s->request_.body_.append(at, n);
    return HPE_OK;
}

int HttpParser::on_message_complete(llhttp_t* p) {
    HttpParser* s = self(p);
    // An upgrade (WebSocket, CONNECT) is answered as a plain request and the connection
    // closed: herd performs no protocol switch.
    s->request_.keep_alive_ = llhttp_should_keep_alive(p) != 0 && p->upgrade == 0;
    s->upgraded_ = p->upgrade != 0;
    if (!s->chunked_.active) s->expect_continue_ = false;  // else once the body is read
    // Pause so the caller answers this request before the parser looks at the next one.
    return HPE_PAUSED;
}

}  // namespace herd::http
