// The master's event stream (`herd events`): what happened to workers, apps, reloads and the
// broker, as one JSON object per event, to every client of the control socket that asked.
#include <time.h>

#include "master/master.hpp"

namespace herd::master {

void Master::emit(std::string_view event, nlohmann::json fields) {
    timespec now{};
    clock_gettime(CLOCK_REALTIME, &now);
    tm utc{};
    gmtime_r(&now.tv_sec, &utc);
    char stamp[40];
    std::size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", now.tv_nsec / 1000000);
    nlohmann::json out = {{"time", stamp}, {"event", event}};
    if (fields.is_object()) out.update(fields);
    // The status page lists the last ones.
    recent_events_.push_back(out);
    while (recent_events_.size() > max_recent_events) recent_events_.pop_front();
    if (control_) control_->publish(out);
}

}  // namespace herd::master
