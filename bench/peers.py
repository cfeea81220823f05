#!/usr/bin/env python3
"""herd next to its peers, on 127.0.0.1, with wrk -t1 -c64 on the same machine.

Servers: herd's hello plugin (1 and 2 workers, each balancing strategy), nginx
(`return 200 "Hello, World!"`, access log off), h2o (an mruby handler, and a static file),
a Node.js cluster (bench/peers/node-cluster.js) and bench/peers/raw_epoll.c, a single-process
epoll responder that does not parse HTTP: the ceiling of this machine.

Two series: keep-alive, and a new connection per request (wrk -H "Connection: close"; every
server answers with Connection: close and wrk reconnects, which /proc/net/snmp's ActiveOpens
confirms: the CSV has connections opened per request).

Every run starts a fresh server, warms it up, then runs wrk for --seconds while reading the
CPU time (utime + stime) of the server's whole process tree from /proc before and after:
requests per CPU-second of the server is requests / that CPU time. Configurations are
interleaved round by round (A B C ... A B C ...) so noise hits them alike. Prints a table
(median, min-max), writes every run to bench/results/peers.csv and a chart to
bench/results/peers.png. A benchmark: it passes or fails nothing.

usage: bench/peers.py [--rounds 5] [--seconds 5] [--warmup 1] [--quick] [--only REGEX]
       (bench/peers.sh installs what is needed, builds herd and runs this)
"""
import argparse
import csv
import json
import os
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, Proc, cpu_seconds, free_port, log, nginx_command, pin_tree, tcp_active_opens, wait_port, wrk)  # noqa: E402

MODES = ["shared", "reuseport", "round-robin", "least-conn"]
HELLO = "Hello, World!"


class Server:
    name = "?"

    def start(self, tmp):
        raise NotImplementedError

    def stop(self):
        self.proc.stop()


class Herd(Server):
    def __init__(self, build, mode, workers):
        self.build, self.mode, self.workers = build, mode, workers
        self.name = "herd %s" % mode
        self.group = "herd"

    def start(self, tmp):
        self.port = free_port()
        config = {"log_level": "info", "allow_root": os.geteuid() == 0, "control": os.path.join(tmp, "herd.sock"), "apps": [{
            "name": "bench", "listen": "127.0.0.1:%d" % self.port, "workers": self.workers, "balance": self.mode,
            "plugins": [{"mount": "/", "path": os.path.join(self.build, "plugins", "libhello.so")}]}]}
        path = os.path.join(tmp, "herd.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self.proc = Proc([os.path.join(self.build, "server", "herd"), "run", path], watch=r"all apps ready")
        self.proc.wait_matches(1)


class Nginx(Server):
    def __init__(self, workers):
        self.workers = workers
        self.name = "nginx"
        self.group = "nginx"

    def start(self, tmp):
        self.port = free_port()
        self.proc = Proc(nginx_command(tmp, self.port, self.workers, body=HELLO))
        wait_port(self.port, self.proc.proc)

    def stop(self):
        self.proc.stop(sig=15)


class H2o(Server):
    """h2o 2.2 from Debian, multi-threaded (one process, num-threads event loops). Two handlers:
    mruby (Debian's h2o is built with it: a Proc that returns the fixed response, the closest to
    nginx's `return`), and file.file (a static file, served from h2o's open-file cache)."""

    def __init__(self, threads, handler):
        self.workers, self.handler = threads, handler
        self.name = "h2o %s" % handler
        self.group = "h2o"

    def start(self, tmp):
        self.port = free_port()
        hello = os.path.join(tmp, "hello.txt")
        with open(hello, "w") as f:
            f.write(HELLO)
        if self.handler == "mruby":
            handler = ("        mruby.handler: |\n"
                       "          Proc.new do |env|\n"
                       "            [200, {\"content-type\" => \"text/plain\"}, [\"%s\"]]\n"
                       "          end\n" % HELLO)
        else:
            handler = ("        file.file: %s\n"
                       "        file.mime.settypes: {\"text/plain\": \".txt\"}\n" % hello)
        user = "user: %s\n" % pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else ""
        conf = (f"{user}listen:\n  host: 127.0.0.1\n  port: {self.port}\nnum-threads: {self.workers}\n"
                f"pid-file: {tmp}/h2o.pid\nerror-log: {tmp}/h2o-error.log\naccess-log: /dev/null\n"
                f"hosts:\n  default:\n    paths:\n      /:\n{handler}")
        path = os.path.join(tmp, "h2o.conf")
        with open(path, "w") as f:
            f.write(conf)
        self.proc = Proc(["h2o", "-c", path])
        wait_port(self.port, self.proc.proc)


class NodeCluster(Server):
    def __init__(self, workers):
        self.workers = workers
        self.name = "node cluster"
        self.group = "node"

    def start(self, tmp):
        self.port = free_port()
        self.proc = Proc(["node", os.path.join(ROOT, "bench", "peers", "node-cluster.js")],
                         env=dict(os.environ, PORT=str(self.port), WORKERS=str(self.workers)), watch=r"ready (\d+)")
        self.proc.wait_matches(self.workers)


class RawEpoll(Server):
    def __init__(self, binary):
        self.binary = binary
        self.workers = 1
        self.name = "raw epoll"
        self.group = "raw"

    def start(self, tmp):
        self.port = free_port()
        self.proc = Proc([self.binary, str(self.port)], watch=r"ready")
        self.proc.wait_matches(1)


def check_response(port, close):
    """One request with curl-free Python: the server answers Hello, World! (and closes when asked)."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (b"Connection: close\r\n" if close else b""))
        data = b""
        while not data.endswith(HELLO.encode()):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1.1 200") or not data.endswith(HELLO.encode()):
        raise RuntimeError("unexpected response on port %d: %r" % (port, data[:300]))
    if close and not re.search(rb"\r\nconnection: *close\r\n", data, re.I):
        raise RuntimeError("no Connection: close in the response on port %d: %r" % (port, data[:300]))


def one_run(server, tmp, seconds, warmup, close, pin=False):
    server.proc = None
    # --pin: wrk on the last CPU, a one-worker server on the first, so that the two never
    # share a core (unpinned, the scheduler sometimes puts them together, and every server's
    # figures split into a fast and a slow mode). Servers with 2 workers stay unpinned.
    client_cpus = {os.cpu_count() - 1} if pin else None
    try:
        server.start(tmp)
        if pin and server.workers == 1:
            pin_tree(server.proc.pid, {0})
        check_response(server.port, close)
        if warmup > 0:
            wrk(server.port, warmup, close, cpus=client_cpus)
        opens0 = tcp_active_opens()
        cpu0 = cpu_seconds(server.proc.pid)
        res = wrk(server.port, seconds, close, cpus=client_cpus)
        cpu1 = cpu_seconds(server.proc.pid)
        opens1 = tcp_active_opens()
    finally:
        if server.proc:
            server.stop()
    res["server_cpu_s"] = cpu1 - cpu0
    res["req_per_cpu_s"] = res["requests"] / res["server_cpu_s"] if res["server_cpu_s"] > 0 else float("nan")
    res["conns_per_request"] = (opens1 - opens0) / res["requests"] if res["requests"] else float("nan")
    return res


def label(server):
    unit = {"h2o": "thread", "raw": "process"}.get(server.group, "worker")
    return "%s, %d %s%s" % (server.name, server.workers, unit, "s" if server.workers > 1 else "")


def fmt_range(values, fmt="%.0f"):
    return (fmt + " (" + fmt + "–" + fmt + ")") % (statistics.median(values), min(values), max(values))


def summarize(configs, samples, series):
    rows = []
    for c in configs:
        runs = samples[(c, series)]
        if not runs:
            continue
        rows.append({
            "label": label(c), "group": c.group, "name": c.name, "workers": c.workers,
            "rps": [r["rps"] for r in runs], "p99": [r["p99_ms"] for r in runs],
            "eff": [r["req_per_cpu_s"] for r in runs], "cpu": [r["server_cpu_s"] / r["seconds"] for r in runs],
            "bad": sum(r["socket_errors"] + r["non_2xx"] for r in runs),
            "conns": statistics.median(r["conns_per_request"] for r in runs),
        })
    return rows


def print_table(rows, series, out):
    out.write("\n%s\n\n" % ("keep-alive (wrk -t1 -c64)" if series == "keep-alive"
                            else "new connection per request (wrk -t1 -c64 -H 'Connection: close')"))
    out.write("| server | requests/s median (min–max) | p99 latency ms median (min–max) | requests per server CPU-s median (min–max) | server CPU cores busy | failed |\n")
    out.write("| --- | --- | --- | --- | --- | --- |\n")
    for r in rows:
        out.write("| %s | %s | %s | %s | %.2f | %d |\n" % (
            r["label"], fmt_range(r["rps"]), fmt_range(r["p99"], "%.2f"), fmt_range(r["eff"]),
            statistics.median(r["cpu"]), r["bad"]))


def find(rows, group, workers, name=None):
    for r in rows:
        if r["group"] == group and r["workers"] == workers and (name is None or r["name"] == name):
            return r
    return None


def targets(summary, out):
    """The issue's targets that these runs can check, for herd hello 1 worker (shared, the
    default balancing) and the best strategy."""
    ka, cl = summary.get("keep-alive", []), summary.get("close", [])
    med = statistics.median
    lines = []

    def verdict(ok):
        return "met" if ok else "**not met**"

    def paired(a, b):
        """Median and range of a/b taken round by round: the machine's slow and fast phases
        touch every server of a round alike, so the ratio within a round is steadier than the
        ratio of the medians."""
        ratios = [x / y for x, y in zip(a, b) if y > 0]
        return med(ratios), min(ratios), max(ratios)

    herd_ka = find(ka, "herd", 1, "herd shared")
    nginx_ka = find(ka, "nginx", 1)
    raw_ka = find(ka, "raw", 1)
    if herd_ka and nginx_ka and raw_ka:
        h, n, r = med(herd_ka["eff"]), med(nginx_ka["eff"]), med(raw_ka["eff"])
        pn, pr = paired(herd_ka["eff"], nginx_ka["eff"]), paired(herd_ka["eff"], raw_ka["eff"])
        lines.append(("hello, 1 worker, keep-alive: requests per server CPU-s",
                      "≥ 1.1 × nginx 1 worker, ≥ 0.95 × raw epoll",
                      "herd %.0f; nginx %.0f; raw epoll %.0f. Per round: herd / nginx × %.2f (%.2f–%.2f), "
                      "herd / raw epoll × %.2f (%.2f–%.2f)" % ((h, n, r) + pn + pr),
                      verdict(pn[0] >= 1.1 and pr[0] >= 0.95)))
    if herd_ka and nginx_ka:
        h, n = med(herd_ka["rps"]), med(nginx_ka["rps"])
        p = paired(herd_ka["rps"], nginx_ka["rps"])
        lines.append(("hello, 1 worker, keep-alive: requests/s", "≥ nginx",
                      "herd %.0f; nginx %.0f. Per round: × %.2f (%.2f–%.2f)" % ((h, n) + p), verdict(p[0] >= 1)))
    herd_cl, nginx_cl = find(cl, "herd", 1, "herd shared"), find(cl, "nginx", 1)
    if herd_cl and nginx_cl:
        h, n = med(herd_cl["rps"]), med(nginx_cl["rps"])
        p = paired(herd_cl["rps"], nginx_cl["rps"])
        lines.append(("new connection per request: requests/s (1 worker)", "≥ nginx",
                      "herd %.0f; nginx %.0f. Per round: × %.2f (%.2f–%.2f)" % ((h, n) + p), verdict(p[0] >= 1)))
    if herd_ka and nginx_ka:
        h, n = med(herd_ka["p99"]), med(nginx_ka["p99"])
        lines.append(("p99 latency at 64 connections (1 worker, keep-alive)", "≤ nginx",
                      "herd %.2f ms; nginx %.2f ms" % (h, n), verdict(h <= n)))
    if lines:
        out.write("\ntargets (herd: hello, shared balancing; medians, and the median of the ratios "
                  "taken round by round, which decides)\n\n")
        out.write("| figure | target | measured | |\n| --- | --- | --- | --- |\n")
        for line in lines:
            out.write("| %s | %s | %s | %s |\n" % line)


def chart(summary, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("no matplotlib (Debian's python3-matplotlib, for /usr/bin/python3): no chart")
        return
    series = [s for s in ("keep-alive", "close") if summary.get(s)]
    fig, axes = plt.subplots(2, len(series), figsize=(7.5 * len(series), 11), squeeze=False)
    colors = {"herd": "#d62728", "nginx": "#2ca02c", "h2o": "#1f77b4", "node": "#9467bd", "raw": "#7f7f7f"}
    for col, s in enumerate(series):
        rows = summary[s]
        names = [r["label"] for r in rows]
        for row, (key, title) in enumerate((("rps", "requests/s"), ("eff", "requests per server CPU-second"))):
            ax = axes[row][col]
            meds = [statistics.median(r[key]) for r in rows]
            lo = [m - min(r[key]) for m, r in zip(meds, rows)]
            hi = [max(r[key]) - m for m, r in zip(meds, rows)]
            ax.barh(range(len(rows)), meds, xerr=[lo, hi], color=[colors.get(r["group"], "k") for r in rows], capsize=3)
            ax.set_yticks(range(len(rows)))
            ax.set_yticklabels(names, fontsize=8)
            ax.invert_yaxis()
            ax.set_title("%s, %s" % (title, "keep-alive" if s == "keep-alive" else "new connection per request"), fontsize=10)
            ax.grid(axis="x", alpha=0.3)
            for i, (m, r) in enumerate(zip(meds, rows)):
                ax.text(max(r[key]), i, "  %.0fk" % (m / 1000), va="center", fontsize=7)
            ax.set_xlim(0, max(max(r[key]) for r in rows) * 1.15)
    fig.suptitle("hello world on 127.0.0.1, wrk -t1 -c64, median and min–max over rounds (%s)" % time.strftime("%Y-%m-%d"), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    log("chart: %s" % os.path.relpath(path, ROOT))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5, help="wrk duration of each measured run")
    ap.add_argument("--warmup", type=int, default=1, help="wrk seconds before each measured run (not counted)")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s, no warm-up, keep-alive and close, fewer herd strategies")
    ap.add_argument("--only", help="run only the configurations whose label matches this regular expression")
    ap.add_argument("--pin", action="store_true",
                    help="wrk on the last CPU, one-worker servers on the first (see one_run)")
    ap.add_argument("--series", choices=["both", "keep-alive", "close"], default="both")
    ap.add_argument("--build", default=os.environ.get("HERD_BUILD_DIR", os.path.join(ROOT, "build-release")))
    ap.add_argument("--raw-epoll", default=None, help="the compiled bench/peers/raw_epoll.c (default: compile it into the build folder)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 2, 0

    raw = args.raw_epoll or os.path.join(args.build, "raw_epoll")
    if not args.raw_epoll:
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", raw,
                        os.path.join(ROOT, "bench", "peers", "raw_epoll.c")], check=True)

    configs = []
    for workers in (1, 2):
        for mode in (MODES if not args.quick else ["shared", "round-robin"]):
            configs.append(Herd(args.build, mode, workers))
    for workers in (1, 2):
        configs.append(Nginx(workers))
    for handler in ("mruby", "file"):
        for threads in (1, 2):
            configs.append(H2o(threads, handler))
    for workers in (1, 2):
        configs.append(NodeCluster(workers))
    configs.append(RawEpoll(raw))
    if args.only:
        configs = [c for c in configs if re.search(args.only, label(c))]
    for tool in ("wrk", "nginx", "h2o", "node"):
        if not shutil.which(tool) and any(c.group == tool for c in configs):
            raise SystemExit("peers.py: %s is not installed (bench/peers.sh installs it)" % tool)
    series = ["keep-alive", "close"] if args.series == "both" else [args.series]

    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "peers.csv")
    samples = {(c, s): [] for c in configs for s in series}
    started = time.time()
    loads = []  # the machine's 1-minute load average before each run: what else ran
    with open(csv_path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["date", "round", "series", "server", "workers", "seconds", "requests", "requests_per_s",
                      "p50_ms", "p99_ms", "server_cpu_s", "requests_per_server_cpu_s", "connections_per_request",
                      "socket_errors", "non_2xx", "load_1min"])
        for r in range(args.rounds):
            for s in series:
                for c in configs:
                    with open("/proc/loadavg") as la:
                        load = float(la.read().split()[0])
                    loads.append(load)
                    tmp = tempfile.mkdtemp(prefix="herd-peers-")
                    try:
                        res = one_run(c, tmp, args.seconds, args.warmup, s == "close", args.pin)
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
                    res["seconds"] = args.seconds
                    samples[(c, s)].append(res)
                    out.writerow([time.strftime("%Y-%m-%dT%H:%M:%S"), r + 1, s, c.name, c.workers, args.seconds,
                                  res["requests"], "%.0f" % res["rps"], "%.3f" % res["p50_ms"], "%.3f" % res["p99_ms"],
                                  "%.2f" % res["server_cpu_s"], "%.0f" % res["req_per_cpu_s"],
                                  "%.3f" % res["conns_per_request"], res["socket_errors"], res["non_2xx"], "%.2f" % load])
                    f.flush()
                    log("round %d/%d %-10s %-28s %9.0f req/s  p99 %6.2f ms  %8.0f req/CPU-s  %.2f conn/req  errors %d" % (
                        r + 1, args.rounds, s, label(c), res["rps"], res["p99_ms"], res["req_per_cpu_s"],
                        res["conns_per_request"], res["socket_errors"] + res["non_2xx"]))

    summary = {s: summarize(configs, samples, s) for s in series}
    with open("/proc/cpuinfo") as f:
        model = re.search(r"model name\s*:\s*(.*)", f.read())
    header = ("%s, %d CPUs (%s), %d round(s) of %d s per configuration (+%d s warm-up), %.0f min in all; "
              "1-minute load average before the runs: median %.1f (%.1f–%.1f)\n") % (
        time.strftime("%Y-%m-%d"), os.cpu_count(), model.group(1) if model else "?", args.rounds, args.seconds,
        args.warmup, (time.time() - started) / 60, statistics.median(loads), min(loads), max(loads))
    if args.pin:
        header += "pinned: wrk on CPU %d, one-worker servers on CPU 0\n" % (os.cpu_count() - 1)
    table_path = os.path.join(args.out, "peers.md")
    with open(table_path, "w") as t:
        t.write(header)
        for s in series:
            print_table(summary[s], s, t)
        targets(summary, t)
    with open(table_path) as t:
        sys.stdout.write(t.read())
    chart(summary, os.path.join(args.out, "peers.png"))
    log("raw results: %s; table: %s" % (os.path.relpath(csv_path, ROOT), os.path.relpath(table_path, ROOT)))


if __name__ == "__main__":
    main()
