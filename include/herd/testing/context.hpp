// Part of herd/testing.hpp, the plugin author's test kit (include that): FakeContext, a
// Context with settable identity and config that records what the plugin logs and sends, its
// in-memory FakeState, FakeHttp, its scripted HTTP client, FakeRedis (testing/redis.hpp) and
// FakePostgres (testing/postgres.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "herd/context.hpp"
#include "herd/state.hpp"
#include "herd/testing/loop.hpp"
#include "herd/testing/postgres.hpp"
#include "herd/testing/redis.hpp"
#include "herd/testing/websocket.hpp"

namespace herd::testing {

// An in-memory State: writes apply at once, as if the broker accepted them; watchers and done
// callbacks run in the loop's next iteration. apply() and remove() are changes made elsewhere
// (another worker). Keys are checked as the worker checks them (1 to 1024 bytes, no control
// characters) and values up to 1 MiB serialized.
class FakeState final : public State {
  public:
    explicit FakeState(FakeLoop& loop) : loop_(loop) {}

    std::optional<nlohmann::json> get(std::string_view key) const override {
        const nlohmann::json* v = find(key);
        return v != nullptr ? std::optional<nlohmann::json>(*v) : std::nullopt;
    }
    const nlohmann::json* find(std::string_view key) const override {
        auto it = values_.find(key);
        return it != values_.end() ? &it->second : nullptr;
    }
    std::uint64_t version() const override { return version_; }
    bool synced() const override { return true; }
    WatchId watch(std::string_view prefix, WatchCallback callback) override {
        watches_.emplace(next_watch_, Watch{std::string(prefix), std::move(callback)});
        return next_watch_++;
    }
    void unwatch(WatchId id) override { watches_.erase(id); }
    void set(std::string_view key, nlohmann::json value, DoneCallback done) override {
        std::string error = check(key);
        if (error.empty() && value.dump().size() > (1u << 20))
            error = "the value of \"" + std::string(key) + "\" is larger than 1 MiB serialized";
        if (!error.empty()) return finish(std::move(done), error);
        apply(key, std::move(value));
        finish(std::move(done), {});
    }
    void erase(std::string_view key, DoneCallback done) override {
        std::string error = check(key);
        if (error.empty()) remove(key);
        finish(std::move(done), error);
    }

    // Changes from elsewhere: applied now, watchers told in the next iteration.
    void apply(std::string_view key, nlohmann::json value) {
        values_[std::string(key)] = std::move(value);
        changed(key);
    }
    void remove(std::string_view key) {
        auto it = values_.find(key);
        if (it == values_.end()) return;
        values_.erase(it);
        changed(key);
    }
    const std::map<std::string, nlohmann::json, std::less<>>& values() const { return values_; }

  private:
    struct Watch {
        std::string prefix;
        WatchCallback fn;
    };
    static std::string check(std::string_view key) {
        bool control = std::any_of(key.begin(), key.end(), [](char c) {
            return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
        });
        if (key.empty() || key.size() > 1024 || control)
            return "invalid key \"" + std::string(key.substr(0, 64)) +
                   "\": 1 to 1024 bytes without control characters";
        return {};
    }
    // Watchers hear of each change in order, with the value it set (later writes already
    // show in get(): this state applies them at once).
    void changed(std::string_view key) {
        ++version_;
        const nlohmann::json* now = find(key);
        auto value = now != nullptr ? std::optional<nlohmann::json>(*now) : std::nullopt;
        loop_.host_post([this, k = std::string(key), v = std::move(value)] {
            std::vector<WatchId> ids;
            for (const auto& [id, w] : watches_)
                if (k.starts_with(w.prefix)) ids.push_back(id);
            for (WatchId id : ids) {
                auto it = watches_.find(id);  // an earlier callback may have removed it
                if (it == watches_.end()) continue;
                WatchCallback fn = it->second.fn;
                loop_.guarded("in a state watch callback", [&] { fn(k, v ? &*v : nullptr); });
            }
        });
    }
    void finish(DoneCallback done, std::string error) {
        if (!done) return;
        loop_.host_post([this, done = std::move(done), error = std::move(error)] {
            loop_.guarded("in a state write's callback", [&] { done(error.empty(), error); });
        });
    }

    FakeLoop& loop_;
    std::map<std::string, nlohmann::json, std::less<>> values_;
    std::map<WatchId, Watch> watches_;
    std::uint64_t version_ = 1;
    WatchId next_watch_ = 1;
};

// What a plugin's logger wrote.
struct LogLine {
    Logger::Level level;
    std::string text;
};

// An HttpClient whose answers the test gives (Context::http() of a FakeContext): every
// request is recorded; a URL answered with on() gets that reply, one set with fail() that
// error, any other a ClientError of kind `connect` saying no fake answer was set. Answers
// arrive through the loop (run_until_idle() or advance()), never inside fetch(), and go with
// their scope when it is cancelled.
class FakeHttp final : public HttpClient {
  public:
    explicit FakeHttp(FakeLoop& loop) : answers_(loop) {}
    FakeHttp(const FakeHttp&) = delete;
    FakeHttp& operator=(const FakeHttp&) = delete;

    void on(std::string url, HttpReply reply) { replies_[std::move(url)] = std::move(reply); }
    void fail(std::string url, ClientError::Kind kind, std::string message) {
        failures_.insert_or_assign(std::move(url), ClientError(kind, std::move(message)));
    }
    const std::vector<HttpRequest>& requests() const noexcept { return requests_; }

    Id fetch(HttpRequest request, HttpHandlers handlers, Scope* scope = nullptr) override {
        requests_.push_back(request);
        std::optional<HttpReply> reply;
        std::optional<ClientError> error;
        if (auto a = replies_.find(request.url); a != replies_.end())
            reply = a->second;
        else if (auto f = failures_.find(request.url); f != failures_.end())
            error = f->second;
        else
            error = ClientError(ClientError::Kind::connect,
                                request.method + " " + request.url +
                                    ": no fake answer for this URL (FakeHttp::on)");
        return answers_.post(
            [h = std::move(handlers), reply = std::move(reply),
             error = std::move(error)]() mutable {
                if (error) {
                    if (h.done) h.done(HttpReply(), &*error);
                    return;
                }
                if (h.head) {
                    HttpReply head = *reply;
                    head.body.clear();
                    h.head(head);
                    if (h.body && !reply->body.empty()) h.body(reply->body);
                    reply->body.clear();
                }
                if (h.done) h.done(std::move(*reply), nullptr);
            },
            scope);
    }
    bool cancel(Id id) noexcept override { return answers_.cancel(id); }

  private:
    std::map<std::string, HttpReply> replies_;
    std::map<std::string, ClientError> failures_;
    std::vector<HttpRequest> requests_;
    PostedAnswers answers_;
};

// A Context with settable identity and config, recording what the plugin logs and sends.
class FakeContext final : public Context, private Logger {
  public:
    FakeContext() = default;
    explicit FakeContext(nlohmann::json config) : config_(std::move(config)) {}
    FakeContext(const FakeContext&) = delete;
    FakeContext& operator=(const FakeContext&) = delete;

    const nlohmann::json& config() const override { return config_; }
    Logger& log() override { return *this; }
    int worker_id() const override { return worker_id_; }
    std::string_view app() const override { return app_; }
    std::string_view mount() const override { return mount_; }
    bool send(const nlohmann::json& message) override {
        sent_.push_back(message);
        return reachable_;
    }
    bool broadcast(const nlohmann::json& message) override {
        broadcasts_.push_back(message);
        return reachable_;
    }
    FakeState& state() override { return state_; }
    FakeHttp& http() override { return http_; }
    FakeRedis& redis() override { return redis_; }
    FakePostgres& postgres() override { return postgres_; }
    FakeLoop& loop() override { return loop_; }
    bool publish(std::string_view topic, std::string_view data, bool binary) override {
        if (!binary && !is_utf8(data))
            throw std::invalid_argument("herd::Context::publish: a text message must be UTF-8");
        published_.push_back(Published{std::string(topic), std::string(data), binary});
        return reachable_;
    }

    void set_config(nlohmann::json config) { config_ = std::move(config); }
    void set_worker_id(int id) { worker_id_ = id; }
    void set_app(std::string_view app) { app_ = app; }
    void set_mount(std::string_view mount) { mount_ = mount; }
    // What send() and broadcast() return (false: "the master cannot be reached").
    void set_reachable(bool reachable) { reachable_ = reachable; }

    const std::vector<LogLine>& log_lines() const noexcept { return lines_; }
    // Whether some logged line contains text.
    bool logged(std::string_view text) const {
        return std::any_of(lines_.begin(), lines_.end(), [&](const LogLine& l) {
            return l.text.find(text) != std::string::npos;
        });
    }
    const std::vector<nlohmann::json>& sent() const noexcept { return sent_; }
    const std::vector<nlohmann::json>& broadcasts() const noexcept { return broadcasts_; }
    // What publish() sent (the test delivers it to its FakeWebSockets if it wants).
    struct Published {
        std::string topic;
        std::string data;
        bool binary = false;
    };
    const std::vector<Published>& published() const noexcept { return published_; }

  private:
    void write(Level level, std::string_view message) override {
        lines_.push_back(LogLine{level, std::string(message)});
    }

    nlohmann::json config_ = nlohmann::json::object();
    int worker_id_ = 0;
    std::string app_ = "app";
    std::string mount_ = "/";
    bool reachable_ = true;
    std::vector<LogLine> lines_;
    std::vector<nlohmann::json> sent_;
    std::vector<nlohmann::json> broadcasts_;
    std::vector<Published> published_;
    FakeLoop loop_;  // before state_ and http_: they post into it
    FakeState state_{loop_};
    FakeHttp http_{loop_};
    FakeRedis redis_{loop_};
    FakePostgres postgres_{loop_};
};

}  // namespace herd::testing
