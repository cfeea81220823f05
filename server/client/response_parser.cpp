// Reading a response with llhttp; see response_parser.hpp.
#include "client/response_parser.hpp"

namespace herd::client {
namespace {
ResponseParser* self(llhttp_t* p) {
    return static_cast<ResponseParser*>(p->data);
}
}  // namespace

ResponseParser::ResponseParser(Sink& sink, std::size_t max_head)
    : sink_(sink), max_head_(max_head) {
    llhttp_settings_init(&settings_);
    settings_.on_status = on_status;
    settings_.on_header_field = on_header_field;
    settings_.on_header_value = on_header_value;
    settings_.on_headers_complete = on_headers_complete;
    settings_.on_body = on_body;
    settings_.on_message_complete = on_message_complete;
    llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
    parser_.data = this;
}

bool ResponseParser::count_head(std::size_t n) {
    head_bytes_ += n;
    return head_bytes_ <= max_head_;
}

int ResponseParser::on_status(llhttp_t* p, const char* at, std::size_t n) {
    ResponseParser& r = *self(p);
    if (!r.count_head(n)) return -1;
    r.head_.reason.append(at, n);
    return 0;
}

int ResponseParser::on_header_field(llhttp_t* p, const char* at, std::size_t n) {
    ResponseParser& r = *self(p);
    if (!r.count_head(n)) return -1;
    if (r.in_value_ || r.head_.headers.empty()) r.head_.headers.emplace_back();
    r.in_value_ = false;
    r.head_.headers.back().first.append(at, n);
    return 0;
}

int ResponseParser::on_header_value(llhttp_t* p, const char* at, std::size_t n) {
    ResponseParser& r = *self(p);
    if (!r.count_head(n)) return -1;
    r.in_value_ = true;
    if (r.head_.headers.empty()) return -1;
    r.head_.headers.back().second.append(at, n);
    return 0;
}

int ResponseParser::on_headers_complete(llhttp_t* p) {
    ResponseParser& r = *self(p);
    int status = p->status_code;
    if (status < 100 || status > 599) {
        r.bad_status_ = status;  // RFC 9110 15: a three-digit code from 100 to 599
        return -1;
    }
    if (status >= 100 && status < 200 && status != 101) {
        // 100 Continue, 103 Early Hints: informational, the real response follows.
        r.interim_ = true;
        r.head_ = ResponseHead();
        r.head_bytes_ = 0;
        r.in_value_ = false;
        return 1;  // never a body, whatever its headers say (RFC 9110 15.2)
    }
    r.interim_ = false;
    r.head_.status = status;
    r.sink_.on_head(std::move(r.head_));
    r.head_ = ResponseHead();
    // 1: no body (the request was HEAD), whatever Content-Length says.
    return r.no_body_ ? 1 : 0;
}

int ResponseParser::on_body(llhttp_t* p, const char* at, std::size_t n) {
    if (self(p)->interim_) return -1;
    self(p)->sink_.on_body(std::string_view(at, n));
    return 0;
}

int ResponseParser::on_message_complete(llhttp_t* p) {
    ResponseParser& r = *self(p);
    if (r.interim_) {
        r.interim_ = false;
        return 0;
    }
    r.complete_ = true;
    r.keep_alive_ = llhttp_should_keep_alive(p) != 0;
    r.sink_.on_complete();
    return HPE_PAUSED;  // anything after it is not ours
}

bool ResponseParser::feed(std::string_view data) {
    if (!error_.empty()) return false;
    if (data.empty()) return true;
    if (complete_) {
        error_ = "bytes after the end of the response";
        return false;
    }
    started_ = true;
    llhttp_errno_t e = llhttp_execute(&parser_, data.data(), data.size());
    if (e == HPE_OK) return true;
    if (e == HPE_PAUSED && complete_) {
        const char* stop = llhttp_get_error_pos(&parser_);
        if (stop != nullptr && stop < data.data() + data.size()) {
            error_ = "bytes after the end of the response";
            return false;
        }
        return true;
    }
    if (bad_status_ >= 0)
        error_ =
            "malformed response: status " + std::to_string(bad_status_) + " is not from 100 to 599";
    else if (head_bytes_ > max_head_)
        error_ = "the response's head is larger than " + std::to_string(max_head_) + " bytes";
    else
        error_ = std::string("malformed response: ") + llhttp_errno_name(e) + " (" +
                 (llhttp_get_error_reason(&parser_) ? llhttp_get_error_reason(&parser_) : "") + ")";
    return false;
}

bool ResponseParser::finish() {
    if (!error_.empty()) return false;
    if (complete_) return true;
    if (!started_) {
        error_ = "the connection closed before a response";
        return false;
    }
    llhttp_errno_t e = llhttp_finish(&parser_);
    if (e == HPE_OK && complete_) return true;
    if (e == HPE_OK && !complete_) {
        // A close-delimited body ends here: llhttp completes it in llhttp_finish().
        error_ = "the connection closed before the response was complete";
        return false;
    }
    if (e == HPE_PAUSED && complete_) return true;
    error_ = "the connection closed before the response was complete";
    return false;
}

}  // namespace herd::client
