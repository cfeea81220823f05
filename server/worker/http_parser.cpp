// HttpParser: llhttp driven one request at a time; see http_parser.hpp.
#include "worker/http_parser.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace herd::worker {
namespace {
constexpr std::size_t npos = std::string::npos;

HttpParser* self(llhttp_t* p) {
    return static_cast<HttpParser*>(p->data);
}
}  // namespace

namespace {
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
    parser_.data = this;
    request_.headers_.reserve(16);  // grown once in a while, not for every connection
}

HttpParser::Status HttpParser::feed(const char* data, std::size_t size, std::size_t& consumed) {
    consumed = 0;
    if (error_status_ != 0) return Status::error;
    // A bare LF in the head ends the input llhttp sees, so that whatever llhttp would say about
    // the bytes before it comes first, as it would if the client had sent them alone.
    std::size_t bare_lf = scan_head(data, size);
    std::size_t run = bare_lf == npos ? size : bare_lf;
    llhttp_errno_t err = llhttp_execute(&parser_, data, run);
    if (err == HPE_OK) {
        consumed = run;
        if (bare_lf == npos) {
            // The caller's buffer is about to be reused: what the request has of it is kept.
            if (phase_ != Phase::idle) keep_views();
            return Status::need_more;
        }
        error_status_ = 400;
        error_reason_ = "bare LF in the request head (lines must end in CRLF)";
        return Status::error;
    }
    const char* pos = llhttp_get_error_pos(&parser_);
    consumed = pos ? static_cast<std::size_t>(pos - data) : run;
    if (err == HPE_PAUSED) {
        // The next message's head starts where this one ended (it is scanned by the next feed:
        // past this message's head, nothing was).
        scan_ = HeadScan{};
        return Status::request;
    }
    if (err == HPE_PAUSED_UPGRADE) {
        // Only reached if input follows an upgrade request (next() refuses it first).
        error_status_ = 400;
        error_reason_ = "data after an upgrade request";
        return Status::error;
    }
    if (error_status_ == 0) {
        error_status_ = 400;
        error_reason_ =
            std::string(llhttp_errno_name(err)) + ": " + llhttp_get_error_reason(&parser_);
    }
    return Status::error;
}

std::size_t HttpParser::scan_head(const char* data, std::size_t size) {
    // llhttp 8.1 takes a bare LF after the request line and as the empty line that ends the
    // head (only header lines must end in CRLF). A front end that frames strictly would read
    // what follows as more header lines, not as a body or the next request: refused. Only
    // the head is scanned; it ends at its first empty line after the request line. Line by
    // line with memchr: this runs on every request.
    std::size_t i = 0;
    while (scan_.active && i < size) {
        const void* found = std::memchr(data + i, '\n', size - i);
        if (found == nullptr) {  // the line goes on in the next read
            scan_.line_bytes += size - i;
            scan_.cr = data[size - 1] == '\r';
            return npos;
        }
        std::size_t lf = static_cast<std::size_t>(static_cast<const char*>(found) - data);
        bool cr = lf > i ? data[lf - 1] == '\r' : scan_.cr;
        if (!cr) return lf;
        std::size_t line = scan_.line_bytes + (lf - i);  // with its CR
        if (line == 1 && scan_.seen_line)
            scan_.active = false;  // the empty line: the body (if any) follows
        else if (line > 1)
            scan_.seen_line = true;
        scan_.line_bytes = 0;
        scan_.cr = false;
        i = lf + 1;
    }
    return npos;
}

template <class F>
void HttpParser::for_each_view(F f) {
    Request& r = request_;
    f(r.target_);
    for (std::size_t i = 0; i < r.header_count_; ++i) {
        f(r.headers_[i].name);
        f(r.headers_[i].value);
    }
}

bool HttpParser::in_kept(std::string_view v, std::size_t kept_size) const {
    auto at = reinterpret_cast<std::uintptr_t>(v.data());
    auto begin = reinterpret_cast<std::uintptr_t>(kept_.data());
    return !v.empty() && at >= begin && at < begin + kept_size;
}

char* HttpParser::grow_kept(std::size_t n) {
    std::size_t size = kept_.size();
    if (size + n > kept_.capacity()) {
        auto old = reinterpret_cast<std::uintptr_t>(kept_.data());
        kept_.reserve(std::max(size + n, 2 * kept_.capacity()));
        const char* now = kept_.data();
        for_each_view([&](std::string_view& v) {
            auto at = reinterpret_cast<std::uintptr_t>(v.data());
            if (!v.empty() && at >= old && at < old + size) v = {now + (at - old), v.size()};
        });
    }
    kept_.resize(size + n);  // within the capacity: nothing moves
    return kept_.data() + size;
}

void HttpParser::keep_views() {
    std::size_t kept_size = kept_.size();
    std::size_t outside = 0;
    for_each_view([&](std::string_view& v) {
        if (!v.empty() && !in_kept(v, kept_size)) outside += v.size();
    });
    if (outside == 0) return;
    char* p = grow_kept(outside);
    for_each_view([&](std::string_view& v) {
        if (v.empty() || in_kept(v, kept_size)) return;
        std::memcpy(p, v.data(), v.size());
        v = {p, v.size()};
        p += v.size();
    });
}

void HttpParser::extend_more(std::string_view& view, const char* at, std::size_t n) {
    bool kept = in_kept(view, kept_.size());
    if (!kept && view.data() + view.size() == at) {  // the same buffer: one longer view
        view = {view.data(), view.size() + n};
        return;
    }
    // The view began in an earlier feed, so it is kept; as the field still open it is the last
    // of the kept bytes, and grows there. (Otherwise, not expected, it is copied to the end.)
    std::size_t length = view.size();
    bool last = kept && view.data() + length == kept_.data() + kept_.size();
    char* p = grow_kept(last ? n : length + n);  // moves kept views, this one included
    if (!last) {
        std::memcpy(p, view.data(), length);
        view = {p, length};
    }
    std::memcpy(const_cast<char*>(view.data()) + length, at, n);
    view = {view.data(), length + n};
}

void HttpParser::next() {
    phase_ = Phase::idle;
    // The request's views may point into a buffer that the caller reuses now.
    request_.method_ = {};
    request_.target_ = {};
    request_.header_count_ = 0;
    if (upgraded_) {
        // herd performs no protocol switch: the connection closes after the answer, and llhttp
        // would only report the upgrade again, so whatever follows is refused.
        error_status_ = 400;
        error_reason_ = "data after an upgrade request";
        return;
    }
    llhttp_resume(&parser_);
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
    return HPE_OK;
}

int HttpParser::on_url(llhttp_t* p, const char* at, std::size_t n) {
    HttpParser* s = self(p);
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
    Request& r = self(p)->request_;
    auto q = r.target_.find('?');
    r.path_len_ = q == std::string::npos ? r.target_.size() : q;
    r.path_start_ = 0;
    if (!r.target_.starts_with('/')) {
        // Absolute-form ("http://host:80/path?q"): the path starts after the authority.
        auto scheme_end = r.target_.find("://");
        if (scheme_end != std::string::npos && scheme_end < r.path_len_) {
            auto slash = r.target_.find('/', scheme_end + 3);
            r.path_start_ = slash == std::string::npos || slash > r.path_len_ ? r.path_len_ : slash;
        }
    }
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
    if (iequals(h.name, "expect") && iequals(h.value, "100-continue")) s->expect_continue_ = true;
    return HPE_OK;
}

int HttpParser::on_headers_complete(llhttp_t* p) {
    HttpParser* s = self(p);
    Request& r = s->request_;
    r.method_ = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    r.major_ = p->http_major;
    r.minor_ = p->http_minor;
    if (r.major_ != 1)  // HTTP/0.9 ("GET /" with no version) and 2.0+ are not spoken here
        return s->fail(505, "HTTP/" + std::to_string(r.major_) + "." + std::to_string(r.minor_) +
                                " is not supported");
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > s->limits_.max_body_bytes)
        return s->fail(413, "Content-Length " + std::to_string(p->content_length) +
                                " exceeds the limit of " +
                                std::to_string(s->limits_.max_body_bytes) + " bytes");
    if ((p->flags & F_TRANSFER_ENCODING) && (p->flags & F_CHUNKED)) {
        // llhttp frames by a final "chunked" (and refuses, with 400, a coding list not ending
        // in it: RFC 9112 6.3); a coding before it ("gzip, chunked") would reach the plugin
        // still encoded. RFC 9112 6.1: 501.
        for (const Header& h : r.headers())
            if (iequals(h.name, "transfer-encoding") && !iequals(h.value, "chunked"))
                return s->fail(501, "Transfer-Encoding \"" + std::string(h.value.substr(0, 100)) +
                                        "\" is not implemented (only chunked)");
    }
    // Reserve the announced body once, instead of growing it chunk by chunk.
    // (at most 64 KiB up front: a client announcing a large body must send it to use memory)
    if (p->flags & F_CONTENT_LENGTH)
        r.body_.reserve(
            std::min<std::size_t>(static_cast<std::size_t>(p->content_length), 64 << 10));
    s->phase_ = Phase::body;
    return HPE_OK;
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
    s->expect_continue_ = false;
    // Pause so the caller answers this request before the parser looks at the next one.
    return HPE_PAUSED;
}

}  // namespace herd::worker
