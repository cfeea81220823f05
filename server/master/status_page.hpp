// The status page the master serves at / on the metrics address: one HTML document rendered
// from the same JSON as /status.json (the master's status, its chart history and its recent
// events), so the two never disagree. Tables and charts (inline SVG) are complete without
// JavaScript; a short inline script fetches the page again every second and swaps its
// content in. Nothing comes from elsewhere (no CDN, no external file). Pure: unit-tested on
// made-up documents.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace herd::master {

std::string render_status_page(const nlohmann::json& status);

// Text safe inside HTML elements and double-quoted attributes.
std::string html_escape(std::string_view text);

}  // namespace herd::master
