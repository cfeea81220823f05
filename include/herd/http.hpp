// The request a plugin handles and the response it fills: herd's plugin-facing HTTP types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herd {

namespace http {
class HttpParser;  // the host's parser fills Requests; plugins only read them
}
namespace testing {
class RequestBuilder;  // herd/testing.hpp builds them for plugin tests
}

// A header field of a Request: views of the request's bytes, valid during Plugin::handle only.
struct Header {
    std::string_view name;
    std::string_view value;
};

// A header field a plugin sets on its Response (owned).
struct ResponseHeader {
    ResponseHeader() = default;
    ResponseHeader(std::string_view n, std::string_view v) : name(n), value(v) {}
    std::string name;
    std::string value;
};

// ASCII case-insensitive comparison, as HTTP field names require.
inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
        if (x != y) return false;
    }
    return true;
}

// One parsed HTTP/1.x request. Its views (target, header fields) point into the bytes the
// worker read and stay valid for the duration of Plugin::handle only: copy what must outlive it.
class Request {
  public:
    std::string_view method() const noexcept { return method_; }
    // The request target as sent ("/a/b?x=1"), its path ("/a/b") and its query ("x=1").
    std::string_view target() const noexcept { return target_; }
    // For an absolute-form target ("http://host/a?b", RFC 9112 3.2.2) the path is "/a".
    std::string_view path() const noexcept {
        return std::string_view(target_).substr(path_start_, path_len_ - path_start_);
    }
    std::string_view query() const noexcept {
        return path_len_ < target_.size() ? std::string_view(target_).substr(path_len_ + 1)
                                          : std::string_view();
    }
    // The path below the plugin's mount point: "/api/users" mounted at "/api" gives "/users".
    std::string_view subpath() const noexcept {
        std::string_view p = path().substr(mount_len_);
        return p.empty() ? std::string_view("/") : p;
    }
    int http_major() const noexcept { return major_; }
    int http_minor() const noexcept { return minor_; }
    std::span<const Header> headers() const noexcept { return {headers_.data(), header_count_}; }
    // The first header of that name (case-insensitive), if any.
    std::optional<std::string_view> header(std::string_view name) const noexcept {
        for (const Header& h : headers())
            if (iequals(h.name, name)) return h.value;
        return std::nullopt;
    }
    std::string_view body() const noexcept { return body_; }
    bool keep_alive() const noexcept { return keep_alive_; }

  private:
    friend class http::HttpParser;
    friend class testing::RequestBuilder;
    std::string_view method_;
    std::string_view target_;
    std::size_t path_start_ = 0;  // past "scheme://authority" in absolute-form
    std::size_t path_len_ = 0;    // end of the path (the '?' or the end of the target)
    std::size_t mount_len_ = 0;
    int major_ = 1;
    int minor_ = 1;
    std::vector<Header> headers_;  // reused across requests: only the first header_count_ count
    std::size_t header_count_ = 0;
    std::string body_;
    bool keep_alive_ = true;
};

// What a plugin answers. herd adds Date, Server (unless set), Content-Length and Connection;
// a plugin must not set Content-Length, Transfer-Encoding, Connection or Date itself (the
// request then fails with 500 and the reason is logged).
class Response {
  public:
    int status() const noexcept { return status_; }
    void set_status(int code) noexcept { status_ = code; }

    // Replaces every header of that name.
    void set_header(std::string_view name, std::string_view value) {
        erase_header(name);
        add_header(name, value);
    }
    void add_header(std::string_view name, std::string_view value) {
        headers_.emplace_back(name, value);  // built in place: no temporaries to move
    }
    void erase_header(std::string_view name) {
        std::erase_if(headers_, [&](const ResponseHeader& h) { return iequals(h.name, name); });
    }
    const std::vector<ResponseHeader>& headers() const noexcept { return headers_; }

    std::string& body() noexcept { return body_; }
    const std::string& body() const noexcept { return body_; }
    void set_body(std::string_view text) {
        if (text.data() >= body_.data() && text.data() <= body_.data() + body_.size()) {
            body_.assign(text);  // a part of the body itself
            return;
        }
        body_.clear();  // then append: cheaper than assign's general replace
        body_.append(text);
    }
    void append(std::string_view text) { body_.append(text); }

    // Resets to "200, no headers, empty body", keeping the allocated storage.
    void clear() noexcept {
        status_ = 200;
        headers_.clear();
        body_.clear();
    }

  private:
    int status_ = 200;
    std::vector<ResponseHeader> headers_;
    std::string body_;
};

}  // namespace herd
