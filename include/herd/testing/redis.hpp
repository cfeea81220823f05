// FakeRedis: the Redis client of a FakeContext (Context::redis()), an in-memory store that
// answers GET, SET (EX/PX accepted, no expiry), DEL, EXISTS and INCR like Redis, and any other
// command with what on() gives it. down() makes every command fail as a real client does
// while Redis is down. Every command is recorded. Replies arrive through the loop
// (run_until_idle() or advance()), never inside command(), and go with their scope when it is
// cancelled. Part of herd/testing.hpp.
#pragma once

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "herd/redis.hpp"
#include "herd/testing/loop.hpp"

namespace herd::testing {

class FakeRedis final : public RedisClient {
  public:
    using Answer = Function<RedisReply(const RedisArgs& args)>;
    explicit FakeRedis(FakeLoop& loop) : posted_(loop) {}
    FakeRedis(const FakeRedis&) = delete;
    FakeRedis& operator=(const FakeRedis&) = delete;

    // Answers a command by name (any case): the reply, or throw ClientError to fail it.
    void on(std::string name, Answer answer) { answers_[upper(name)] = std::move(answer); }
    // Every command fails with kind `connect` (nullopt: up again).
    void down(std::optional<std::string> why = std::string("Redis is down (FakeRedis::down)")) {
        down_ = std::move(why);
    }
    std::map<std::string, std::string>& data() noexcept { return data_; }
    const std::vector<RedisArgs>& commands() const noexcept { return commands_; }

    Id command(RedisArgs args, Done done, Scope* scope = nullptr) override {
        std::vector<RedisArgs> one;
        one.push_back(std::move(args));
        return start(std::move(one), false, std::move(done), scope);
    }
    Id transaction(std::vector<RedisArgs> commands, Done done, Scope* scope = nullptr) override {
        return start(std::move(commands), true, std::move(done), scope);
    }
    bool cancel(Id id) noexcept override { return posted_.cancel(id); }

  private:
    static std::string upper(std::string s) {
        std::transform(s.begin(), s.end(), s.begin(),
                       [](unsigned char c) { return std::toupper(c); });
        return s;
    }
    static RedisReply status(std::string s) {
        RedisReply r;
        r.type = RedisReply::Type::status;
        r.str = std::move(s);
        return r;
    }
    static RedisReply integer(long long n) {
        RedisReply r;
        r.type = RedisReply::Type::integer;
        r.integer = n;
        return r;
    }
    static ClientError wrong_args(const std::string& name) {
        return ClientError(ClientError::Kind::server,
                           "Redis: ERR wrong number of arguments for '" + name + "' command",
                           "ERR");
    }
    RedisReply run(const RedisArgs& args) {
        if (args.empty()) throw ClientError(ClientError::Kind::invalid, "an empty command");
        std::string name = upper(args[0]);
        if (auto a = answers_.find(name); a != answers_.end()) return a->second(args);
        if (name == "GET") {
            if (args.size() != 2) throw wrong_args("get");
            RedisReply r;
            if (auto it = data_.find(args[1]); it != data_.end()) {
                r.type = RedisReply::Type::string;
                r.str = it->second;
            }
            return r;
        }
        if (name == "SET") {
            if (args.size() < 3) throw wrong_args("set");
            data_[args[1]] = args[2];
            return status("OK");
        }
        if (name == "DEL" || name == "EXISTS") {
            if (args.size() < 2) throw wrong_args(name == "DEL" ? "del" : "exists");
            long long n = 0;
            for (std::size_t i = 1; i < args.size(); ++i)
                n += name == "DEL" ? static_cast<long long>(data_.erase(args[i]))
                                   : static_cast<long long>(data_.count(args[i]));
            return integer(n);
        }
        if (name == "INCR") {
            if (args.size() != 2) throw wrong_args("incr");
            long long v = 0;
            if (auto it = data_.find(args[1]); it != data_.end()) {
                std::size_t used = 0;
                try {
                    v = std::stoll(it->second, &used);
                } catch (...) {
                    used = 0;
                }
                if (used == 0 || used != it->second.size())
                    throw ClientError(ClientError::Kind::server,
                                      "Redis: ERR value is not an integer or out of range", "ERR");
            }
            data_[args[1]] = std::to_string(++v);
            return integer(v);
        }
        throw ClientError(ClientError::Kind::invalid,
                          "FakeRedis has no answer for " + name + " (FakeRedis::on)");
    }
    Id start(std::vector<RedisArgs> commands, bool transaction, Done done, Scope* scope) {
        for (const auto& c : commands) commands_.push_back(c);
        RedisReply reply;
        std::optional<ClientError> error;
        if (down_) {
            error = ClientError(ClientError::Kind::connect, *down_);
        } else if (transaction) {
            reply.type = RedisReply::Type::array;
            for (const auto& c : commands) {
                try {
                    reply.elements.push_back(run(c));
                } catch (const ClientError& e) {
                    RedisReply r;
                    r.type = RedisReply::Type::error;
                    r.str = e.what();
                    reply.elements.push_back(std::move(r));
                }
            }
        } else {
            try {
                reply = run(commands.front());
            } catch (const ClientError& e) {
                error = e;
            }
        }
        return posted_.post(
            [done = std::move(done), reply = std::move(reply), error = std::move(error)]() mutable {
                if (done) done(std::move(reply), error ? &*error : nullptr);
            },
            scope);
    }

    std::map<std::string, Answer> answers_;
    std::map<std::string, std::string> data_;
    std::optional<std::string> down_;
    std::vector<RedisArgs> commands_;
    PostedAnswers posted_;
};

}  // namespace herd::testing
