// JSON text from files and outside programs (the config, the state file, Redis values),
// parsed strictly: an object that repeats a key is refused. nlohmann keeps the last of the two
// silently, so a config with "workers" twice would run with whichever came last.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace herd::core {

// Parses `text` into `out`. Returns false, with `problem` saying which key repeats and where
// ("key \"workers\" appears twice in apps[0]"), when an object repeats a key. Syntax errors
// and numbers out of range throw nlohmann's exceptions, as json::parse does. Linear in the
// text (nlohmann's DOM builder; no parse callback).
bool parse_json_text(std::string_view text, nlohmann::json& out, std::string& problem);

}  // namespace herd::core
