// What the worker gives a plugin: its config section, a logger and where it runs.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include "herd/client.hpp"
#include "herd/loop.hpp"
#include "herd/postgres.hpp"
#include "herd/redis.hpp"
#include "herd/state.hpp"
#include "herd/websocket.hpp"

namespace herd {

// Lines go to the worker's log with the app, worker slot and plugin mount as prefix.
class Logger {
  public:
    enum class Level { debug, info, warn, error };
    virtual ~Logger() = default;
    virtual void write(Level level, std::string_view message) = 0;

    void debug(std::string_view m) { write(Level::debug, m); }
    void info(std::string_view m) { write(Level::info, m); }
    void warn(std::string_view m) { write(Level::warn, m); }
    void error(std::string_view m) { write(Level::error, m); }
};

// One per mounted plugin, owned by the worker; it outlives the plugin object.
class Context {
  public:
    virtual ~Context() = default;
    // The plugin's "config" object from the herd config file ({} when absent).
    virtual const nlohmann::json& config() const = 0;
    virtual Logger& log() = 0;
    // The worker's slot in its app: 0 .. workers-1, stable across replacements.
    virtual int worker_id() const = 0;
    virtual std::string_view app() const = 0;
    virtual std::string_view mount() const = 0;

    // Node's process.send: a JSON message to the master, which logs it (herd runs no plugin
    // code in the master). False when the master cannot be reached.
    virtual bool send(const nlohmann::json& message) = 0;
    // This plugin's instance in every worker of the app, this one included, receives the
    // message in Plugin::on_message, in its own event loop. False when it cannot be sent.
    virtual bool broadcast(const nlohmann::json& message) = 0;

    // The shared state (see state.hpp): the same key -> JSON map in every worker of every
    // app, kept by herd's broker. Reads are local; writes go to the broker.
    virtual State& state() = 0;

    // The worker's event loop, as this plugin's: timers, descriptors, posted and blocking
    // work, background coroutines (loop.hpp). What the plugin registers there is removed
    // before its on_stop.
    virtual Loop& loop() = 0;

    // The worker's HTTP client (client.hpp), on the same loop: requests to other services
    // that wait without blocking. Exchanges still running when the plugin stops are
    // cancelled before its on_stop. (ABI 5.1)
    virtual HttpClient& http() = 0;

    // The worker's Redis client (redis.hpp) for the URL in this plugin's config "redis"
    // ("redis://127.0.0.1:6379/0"): one pipelined connection per worker and URL, on the same
    // loop. Without that key its commands fail with a ClientError of kind `invalid`. (ABI 5.2)
    virtual RedisClient& redis() = 0;

    // The worker's PostgreSQL client (postgres.hpp) for the URL in this plugin's config
    // "postgres" ("postgresql://app@127.0.0.1:5432/app"): a pool per worker and URL, on the
    // same loop. Without that key its queries fail with a ClientError of kind `invalid`.
    // (ABI 5.2)
    virtual PostgresClient& postgres() = 0;

    // Sends a WebSocket message to every socket of this plugin subscribed to `topic`
    // (WebSocket::subscribe), in every worker of the app: herd encodes the frame once per
    // worker and writes it to each socket, subject to each one's ws_send_queue_bytes (a
    // socket too far behind is closed with 1008; the others are not held up). A text message
    // must be UTF-8 (std::invalid_argument). False when it could not reach the other workers
    // (this worker's sockets have it all the same). (ABI 5.3)
    virtual bool publish(std::string_view topic, std::string_view data, bool binary) = 0;
};

}  // namespace herd
