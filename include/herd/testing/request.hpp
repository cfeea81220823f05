// Part of herd/testing.hpp, the plugin author's test kit (include that): RequestBuilder, a
// Request as herd's parser would fill it.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herd/http.hpp"

namespace herd::testing {

// Builds a Request as herd's parser would fill it. The bytes live in the builder: the Request
// that request() returns is valid until the builder is changed, copied over or destroyed.
// Headers are exactly those added (no Host or Content-Length is invented).
class RequestBuilder {
  public:
    explicit RequestBuilder(std::string_view method = "GET", std::string_view target = "/")
        : method_(method), target_(target) {}

    RequestBuilder& method(std::string_view m) {
        method_ = m;
        return *this;
    }
    // As sent: "/a/b?x=1", or absolute-form "http://host/a?x=1".
    RequestBuilder& target(std::string_view t) {
        target_ = t;
        return *this;
    }
    RequestBuilder& version(int major, int minor) {
        major_ = major;
        minor_ = minor;
        return *this;
    }
    RequestBuilder& header(std::string_view name, std::string_view value) {
        headers_.emplace_back(name, value);
        return *this;
    }
    RequestBuilder& body(std::string_view b) {
        body_ = b;
        return *this;
    }
    std::string_view method() const noexcept { return method_; }
    std::string_view target() const noexcept { return target_; }

    // The request routed to a plugin mounted at `mount` (subpath() is the path below it).
    // std::invalid_argument when herd would not route this path to that mount.
    const Request& request(std::string_view mount = "/") {
        Request& r = request_;
        std::string_view t = target_;
        r.method_ = method_;
        r.target_ = t;
        r.path_len_ = std::min(t.find('?'), t.size());
        r.path_start_ = 0;
        if (!t.starts_with('/')) {  // absolute-form: the path starts after the authority
            auto scheme = t.find("://");
            if (scheme != std::string_view::npos && scheme < r.path_len_) {
                auto slash = t.find('/', scheme + 3);
                r.path_start_ =
                    slash == std::string_view::npos || slash > r.path_len_ ? r.path_len_ : slash;
            }
        }
        std::string_view path = r.path();
        bool under = mount == "/" || (path.starts_with(mount) &&
                                      (path.size() == mount.size() || path[mount.size()] == '/'));
        if (!under)
            throw std::invalid_argument("herd::testing::RequestBuilder: herd routes path \"" +
                                        std::string(path) + "\" to no plugin mounted at \"" +
                                        std::string(mount) + "\"");
        r.mount_len_ = mount == "/" ? 0 : mount.size();
        r.major_ = major_;
        r.minor_ = minor_;
        r.headers_.clear();
        for (const auto& [name, value] : headers_) r.headers_.push_back(Header{name, value});
        r.header_count_ = r.headers_.size();
        r.body_ = body_;
        // As llhttp_should_keep_alive: HTTP/1.1 unless "Connection: close", HTTP/1.0 only with
        // "Connection: keep-alive".
        auto connection = r.header("Connection");
        r.keep_alive_ = major_ == 1 && minor_ >= 1
                            ? !(connection && iequals(*connection, "close"))
                            : connection && iequals(*connection, "keep-alive");
        return r;
    }

  private:
    std::string method_;
    std::string target_;
    int major_ = 1;
    int minor_ = 1;
    std::vector<std::pair<std::string, std::string>> headers_;
    std::string body_;
    Request request_;
};

}  // namespace herd::testing
