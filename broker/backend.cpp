// State backend base; see backend.hpp.
#include "broker/backend.hpp"

namespace herd::broker {

nlohmann::json BackendStatus::to_json() const {
    using namespace std::chrono;
    nlohmann::json j = {{"backend", kind},  {"target", target},         {"up", up},
                        {"loaded", loaded}, {"last_error", last_error}, {"version", version},
                        {"keys", keys},     {"details", details}};
    if (primary)
        j["primary"] = {{"address", primary->address},
                        {"role", primary->role},
                        {"failovers", primary->failovers}};
    if (down_since) {
        auto now = system_clock::now();
        j["down_since_ms"] = duration_cast<milliseconds>(down_since->time_since_epoch()).count();
        j["down_for_ms"] =
            std::max<long long>(0, duration_cast<milliseconds>(now - *down_since).count());
    } else {
        j["down_since_ms"] = nullptr;
        j["down_for_ms"] = 0;
    }
    return j;
}

void Backend::mark_up() {
    bool changed = !up_ || !last_error_.empty();
    up_ = true;
    down_since_.reset();
    last_error_.clear();
    if (changed && events_.on_status) events_.on_status();
}

void Backend::mark_down(const std::string& error) {
    bool changed = up_ || last_error_ != error;
    if (up_ || !down_since_) down_since_ = std::chrono::system_clock::now();
    up_ = false;
    last_error_ = error;
    if (changed && events_.on_status) events_.on_status();
}

void Backend::set_error(const std::string& error) {
    if (last_error_ == error) return;
    last_error_ = error;
    if (events_.on_status) events_.on_status();
}

void Backend::publish(std::vector<state::Change> changes, std::uint64_t new_version) {
    state::Delta d = store_.commit(std::move(changes), new_version);
    if (events_.on_delta) events_.on_delta(d);
}

void Backend::replace(state::Snapshot snapshot) {
    store_.reset(std::move(snapshot));
    loaded_ = true;
    if (events_.on_reset) events_.on_reset();
}

void Backend::fill_common(BackendStatus& s) const {
    s.up = up_;
    s.loaded = loaded_;
    s.down_since = up_ ? std::nullopt : down_since_;
    s.last_error = last_error_;
    s.version = store_.version();
    s.keys = store_.size();
}

void Backend::defer(std::function<void()> fn) {
    loop_.defer([alive = std::weak_ptr<char>(alive_), fn = std::move(fn)] {
        if (alive.lock()) fn();
    });
}

}  // namespace herd::broker
