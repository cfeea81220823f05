// `herd top -c CONFIG`: the running master's apps and workers in the terminal, refreshed every
// second (like htop or `pm2 monit`), usable over SSH; `q` quits. render_top is pure (a frame
// from two status answers) and unit-tested; run_top is the terminal (raw mode, the alternate
// screen, restored however it ends). Not on a terminal, it prints one frame and exits.
#pragma once

#include <map>
#include <string>

#include <nlohmann/json.hpp>

namespace herd::cli {

// Requests per worker (by pid) at the previous frame, for the rates.
using RequestCounts = std::map<long long, unsigned long long>;

// One frame, each line at most `width` columns, at most `height` lines. `seconds` is the time
// since `before` was counted (0: no rates yet). `problem`, when not empty, is shown on top
// (the master stopped answering; the figures are the last ones it gave).
std::string render_top(const nlohmann::json& status, const RequestCounts& before, double seconds,
                       int width, int height, const std::string& problem = "");

// Each worker's request count in a status answer.
RequestCounts request_counts(const nlohmann::json& status);

// The terminal loop against the master's control socket; the exit status.
int run_top(const std::string& socket);

}  // namespace herd::cli
