// The status page; see status_page.hpp.
#include "master/status_page.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>

#include "master/status_fields.hpp"

namespace herd::master {
namespace {

using json = nlohmann::json;

constexpr std::string_view style = R"css(
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 18px}header h1{display:inline;font-size:18px;margin-right:12px}
header .meta{opacity:.85}main{padding:6px 18px 24px}section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:12px 0;padding:8px 14px}
h2{font-size:15px;margin:6px 0 8px}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eceef2;white-space:nowrap}
th{font-weight:600;color:#556}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#176f2c}.warn{color:#9a5b00}.bad{color:#b3261e;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:14px;margin-top:10px}figure{margin:0}figcaption{font-size:12px;color:#556}
svg{background:#fbfcfd;border:1px solid #eceef2}.legend span{margin-right:10px}
.stale{opacity:.55}
)css";

// Refreshes the content every second; keeps the last one (greyed) when the master does not
// answer.
constexpr std::string_view script = R"js(
(function(){
  async function refresh(){
    var main=document.getElementById('status');
    try{
      var r=await fetch(location.pathname,{cache:'no-store'});
      if(!r.ok)throw new Error(r.status);
      var doc=new DOMParser().parseFromString(await r.text(),'text/html');
      var next=doc.getElementById('status');
      if(next){main.replaceWith(next);}
    }catch(e){main.classList.add('stale');}
  }
  setInterval(refresh,1000);
})();
)js";

std::string num(double v, int decimals) {
    return fmt::format("{:.{}f}", v, decimals);
}

std::string state_class(std::string_view state) {
    if (state == "ready" || state == "running" || state == "up") return "ok";
    if (state == "failed" || state == "down" || state == "crashed") return "bad";
    return "warn";
}

struct Series {
    const char* key;
    const char* label;
    const char* color;
};

// One chart of the app's history: a line per series (or bars) on a time axis of `span_ms`
// ending at the last point (the history's whole length: an hour).
std::string chart(const json& points, double span_ms, double step_ms, std::string_view title,
                  std::string_view unit, std::initializer_list<Series> series, bool bars = false) {
    constexpr int w = 420, h = 120, pad = 4;
    double top = 0;
    for (const auto& p : points)
        for (const Series& s : series) top = std::max(top, field_number(p, s.key));
    std::string out = fmt::format(
        "<figure class=\"chart\" data-chart=\"{}\"><svg width=\"{}\" height=\"{}\" "
        "viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\">",
        html_escape(title), w, h, w, h, html_escape(title));
    std::size_t n = points.size();
    double scale = top > 0 ? (h - 2 * pad) / top : 0;
    double right = n > 0 ? field_number(points[n - 1], "t") : 0;
    auto x_at = [&](std::size_t i) {
        double age = std::clamp(right - field_number(points[i], "t"), 0.0, span_ms);
        return w - pad - (w - 2.0 * pad) * age / span_ms;
    };
    for (const Series& s : series) {
        if (n == 1 && !bars) {  // one point: a dot, not an invisible line
            out += fmt::format(
                "<circle data-series=\"{}\" cx=\"{}\" cy=\"{}\" r=\"2.5\" "
                "fill=\"{}\"/>",
                s.key, num(x_at(0), 1), num(h - pad - field_number(points[0], s.key) * scale, 1),
                s.color);
            continue;
        }
        if (bars) {
            // The series side by side within the step, so none hides another.
            double step_width = std::max(1.5, (w - 2.0 * pad) * step_ms / span_ms);
            double width = step_width / static_cast<double>(series.size());
            double offset = width * static_cast<double>(&s - series.begin());
            for (std::size_t i = 0; i < n; ++i) {
                double v = field_number(points[i], s.key);
                if (v <= 0) continue;
                out +=
                    fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>",
                                num(x_at(i) - step_width + offset, 1), num(h - pad - v * scale, 1),
                                num(width, 1), num(v * scale, 1), s.color);
            }
            continue;
        }
        std::string line;
        for (std::size_t i = 0; i < n; ++i)
            line += fmt::format("{}{},{}", i == 0 ? "" : " ", num(x_at(i), 1),
                                num(h - pad - field_number(points[i], s.key) * scale, 1));
        if (!line.empty())
            out += fmt::format(
                "<polyline data-series=\"{}\" points=\"{}\" fill=\"none\" stroke=\"{}\" "
                "stroke-width=\"1.5\"/>",
                s.key, line, s.color);
    }
    if (n == 0)
        out += fmt::format(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#889\">no figures yet</text>",
            w / 2, h / 2);
    out += fmt::format("<text x=\"{}\" y=\"14\" fill=\"#556\" font-size=\"11\">max {} {}</text>",
                       pad + 2, num(top, top < 10 ? 2 : 0), html_escape(unit));
    out += "</svg><figcaption>" + std::string(html_escape(title)) + " <span class=\"legend\">";
    for (const Series& s : series)
        out += fmt::format("<span style=\"color:{}\">&#9632; {}</span>", s.color, s.label);
    out += "</span></figcaption></figure>";
    return out;
}

void render_state(std::string& out, const json& st) {
    if (!st.is_object()) return;
    bool up = st.contains("up") && st["up"] == true;
    out += "<section id=\"state\"><h2>Shared state</h2><table><tbody>";
    auto row = [&](std::string_view name, const std::string& value, std::string_view cls = "") {
        out +=
            fmt::format("<tr><th>{}</th><td{}>{}</td></tr>", name,
                        cls.empty() ? "" : fmt::format(" class=\"{}\"", cls), html_escape(value));
    };
    row("backend", field_text(st, "backend") + " " + field_text(st, "target"));
    row("status",
        up ? "up"
           : "DOWN" + (st.contains("last_error") && !field_text(st, "last_error").empty()
                           ? ": " + field_text(st, "last_error")
                           : std::string()),
        up ? "ok" : "bad");
    row("version", field_text(st, "version") + ", " + field_text(st, "keys") + " key(s)");
    if (st.contains("lag"))
        row("lag", field_text(st, "lag") + " version(s) (the furthest-behind worker's copy)",
            field_number(st, "lag") > 0 ? "warn" : "");
    if (st.contains("primary") && st["primary"].is_object())
        row("primary", field_text(st["primary"], "address") + " (" +
                           field_text(st["primary"], "role") + "), " +
                           field_text(st["primary"], "failovers") + " failover(s)");
    row("broker", "pid " + field_text(st, "broker_pid") + ", " + field_text(st, "broker_restarts") +
                      " restart(s)");
    out += "</tbody></table></section>";
}

void render_app(std::string& out, const json& app, const json& history) {
    std::string name = field_text(app, "name");
    std::string state = field_text(app, "state");
    out += fmt::format(
        "<section class=\"app\" data-app=\"{}\"><h2>app {} on {} ({}): <span "
        "class=\"{}\">{}</span>, "
        "{} of {} ready, generation {}</h2>",
        html_escape(name), html_escape(name), html_escape(field_text(app, "listen")),
        html_escape(field_text(app, "balance")), state_class(state), html_escape(state),
        field_text(app, "ready"), field_text(app, "workers_wanted"), field_text(app, "generation"));
    std::map<int, std::string> last_exit;
    if (app.contains("slots") && app["slots"].is_array())
        for (const auto& s : app["slots"])
            if (s.is_object())
                last_exit[static_cast<int>(field_number(s, "slot"))] =
                    field_text(s, "last_exit") + ", " +
                    short_duration(field_number(s, "last_exit_s_ago")) + " ago";
    out +=
        "<table class=\"workers\"><thead><tr><th>slot</th><th>pid</th><th>state</th>"
        "<th class=\"n\">generation</th><th class=\"n\">uptime</th><th class=\"n\">restarts</th>"
        "<th>last exit</th><th class=\"n\">requests</th><th class=\"n\">open</th>"
        "<th class=\"n\">memory</th><th class=\"n\">CPU</th></tr></thead><tbody>";
    if (app.contains("workers") && app["workers"].is_array())
        for (const auto& w : app["workers"]) {
            if (!w.is_object()) continue;
            int slot = static_cast<int>(field_number(w, "slot"));
            std::string ws = field_text(w, "state");
            auto exit = last_exit.find(slot);
            out += fmt::format(
                "<tr data-pid=\"{}\" data-slot=\"{}\"><td>{}</td><td>{}</td><td "
                "class=\"{}\">{}</td>"
                "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td>"
                "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} MB</td>"
                "<td class=\"n\">{} %</td></tr>",
                field_text(w, "pid"), slot, slot, field_text(w, "pid"), state_class(ws),
                html_escape(ws), field_text(w, "generation"),
                short_duration(field_number(w, "uptime_s")), field_text(w, "restarts"),
                html_escape(exit == last_exit.end() ? "" : exit->second), field_text(w, "requests"),
                field_text(w, "open"), num(field_number(w, "rss_kb") / 1024, 1),
                num(field_number(w, "cpu_percent"), 1));
        }
    out += "</tbody></table>";
    const json empty = json::array();
    const json* points = &empty;
    if (history.is_object() && history.contains("apps") && history["apps"].is_object() &&
        history["apps"].contains(name) && history["apps"][name].is_array())
        points = &history["apps"][name];
    double step_ms = 5000, span_ms = 0;
    if (history.is_object()) {
        if (field_number(history, "step_s") > 0) step_ms = field_number(history, "step_s") * 1000;
        span_ms = step_ms * field_number(history, "capacity");
    }
    if (span_ms <= 0) span_ms = step_ms * 720;
    // The axis spans what there is, from a minute up to the whole history: an hour-wide axis
    // would squeeze the first minutes into its right edge.
    if (points->size() > 1) {
        double covered =
            field_number(points->back(), "t") - field_number(points->front(), "t") + step_ms;
        span_ms = std::min(span_ms, std::max(covered, 60000.0));
    }
    std::string window = span_ms >= 3600000 ? std::string("last hour")
                                            : fmt::format("last {:.0f} min", span_ms / 60000);
    out += "<div class=\"charts\">";
    out += chart(*points, span_ms, step_ms, "requests per second, " + window, "req/s",
                 {{"rps", "rate", "#2b6cb0"}});
    out += chart(*points, span_ms, step_ms, "latency, " + window, "ms",
                 {{"p50_ms", "p50", "#2f855a"}, {"p99_ms", "p99", "#c05621"}});
    out += chart(*points, span_ms, step_ms, "restarts and 5xx, " + window, "per step",
                 {{"restarts", "restarts", "#b3261e"}, {"errors", "5xx", "#805ad5"}}, true);
    out += "</div></section>";
}

void render_events(std::string& out, const json& events) {
    out +=
        "<section id=\"events\"><h2>Recent events</h2><table><thead><tr><th>time</th>"
        "<th>event</th><th>details</th></tr></thead><tbody>";
    if (events.is_array())
        for (auto it = events.rbegin(); it != events.rend(); ++it) {
            if (!it->is_object()) continue;
            std::string details;
            for (auto f = it->begin(); f != it->end(); ++f) {
                if (f.key() == "time" || f.key() == "event" || f->is_null() ||
                    (f->is_string() && f->get<std::string>().empty()))
                    continue;
                details += (details.empty() ? "" : ", ") + f.key() + " " +
                           (f->is_string() ? f->get<std::string>() : f->dump());
            }
            out += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                               html_escape(field_text(*it, "time")),
                               html_escape(field_text(*it, "event")), html_escape(details));
        }
    out += "</tbody></table></section>";
}

}  // namespace

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

std::string render_status_page(const json& document) {
    // Whatever the document holds, a page (a field of the wrong type reads as empty).
    static const json no_fields = json::object();
    const json& s = document.is_object() ? document : no_fields;
    std::string out;
    out.reserve(32 << 10);
    out +=
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        "<title>herd status</title><noscript><meta http-equiv=\"refresh\" content=\"5\">"
        "</noscript><style>";
    out += style;
    out += "</style></head><body><main id=\"status\">";
    out += fmt::format(
        "<header><h1>herd</h1><span class=\"meta\">version {}, master pid {}, up {}, started {} "
        "&middot; {} reload(s) &middot; updated <span id=\"updated\">{}</span></span></header>",
        html_escape(field_text(s, "version")), field_text(s, "pid"),
        short_duration(field_number(s, "uptime_s")), html_escape(field_text(s, "started")),
        field_text(s, "reloads"), html_escape(field_text(s, "now")));
    if (s.contains("stopping") && s["stopping"] == true)
        out += "<section class=\"bad\">herd is stopping: the workers drain.</section>";
    if (s.contains("reload") && s["reload"].is_object())
        out += fmt::format(
            "<section id=\"reload\" class=\"warn\">reload in progress ({}): {}, "
            "{} s</section>",
            html_escape(field_text(s["reload"], "source")),
            html_escape(field_text(s["reload"], "phase")),
            num(field_number(s["reload"], "running_s"), 1));
    if (s.contains("upgrade") && s["upgrade"].is_object())
        out += fmt::format(
            "<section id=\"upgrade\" class=\"warn\">upgrade in progress to {} "
            "(pid {}): {}</section>",
            html_escape(field_text(s["upgrade"], "binary")), field_text(s["upgrade"], "pid"),
            html_escape(field_text(s["upgrade"], "phase")));
    if (s.contains("state")) render_state(out, s["state"]);
    const json history = s.contains("history") ? s["history"] : json();
    if (s.contains("apps") && s["apps"].is_array())
        for (const auto& app : s["apps"])
            if (app.is_object()) render_app(out, app, history);
    if (s.contains("events")) render_events(out, s["events"]);
    out += "</main><script>";
    out += script;
    out += "</script></body></html>\n";
    return out;
}

}  // namespace herd::master
