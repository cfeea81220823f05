#!/usr/bin/env python3
"""Does the status page cost the request path anything? (issue #19). A benchmark, not a test:
nothing passes or fails on these numbers.

herd (build-release), the hello plugin, 1 worker, keep-alive: wrk -t1 -c64 for --seconds after
1 s of warm-up, in two set-ups interleaved round by round (--rounds):
  plain  no metrics address (no status page, no history sampling);
  page   a metrics address, and a client that does what an open status page does: GET / every
         second (the page's own refresh), plus /status.json and /metrics every 5 s.
Each run starts a fresh herd. Reported: requests/s (median, min-max), the round-by-round ratio
page/plain, p99, and the master's CPU time per second of the run (utime + stime from /proc),
which is where the page's work happens. The machine is shared: the ratio round by round says
more than either figure.

Results: bench/results/status_page.md (and on stdout). Python standard library only.
usage: bench/status_page.py [--build build-release] [--rounds 6] [--seconds 5]
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import ROOT, CLK_TCK, Proc, free_port, log, wait_port, wrk  # noqa: E402


def master_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run(args, tmp, setup):
    port = free_port()
    config = {"log_level": "warn", "allow_root": os.geteuid() == 0,
              "control": os.path.join(tmp, "herd.sock"),
              "apps": [{"name": "bench", "listen": "127.0.0.1:%d" % port, "workers": 1,
                        "plugins": [{"mount": "/", "path": os.path.join(args.build, "plugins", "libhello.so")}]}]}
    metrics_port = None
    if setup == "page":
        metrics_port = free_port()
        config["metrics"] = "127.0.0.1:%d" % metrics_port
    path = os.path.join(tmp, "herd.json")
    with open(path, "w") as f:
        json.dump(config, f)
    herd = Proc([os.path.join(args.build, "server", "herd"), "run", path])
    stop = threading.Event()
    fetched = {"pages": 0, "bytes": 0}
    try:
        wait_port(port, herd.proc)
        if metrics_port:
            wait_port(metrics_port, herd.proc)

            def viewer():
                n = 0
                while not stop.is_set():
                    paths = ["/"] + (["/status.json", "/metrics"] if n % 5 == 0 else [])
                    for p in paths:
                        body = urllib.request.urlopen("http://127.0.0.1:%d%s" % (metrics_port, p), timeout=10).read()
                        fetched["bytes"] += len(body)
                    fetched["pages"] += 1
                    n += 1
                    stop.wait(1.0)
            threading.Thread(target=viewer, daemon=True).start()
        wrk(port, 1)  # warm-up
        cpu0, t0 = master_cpu(herd.pid), time.monotonic()
        res = wrk(port, args.seconds)
        res["master_cpu_ms_per_s"] = (master_cpu(herd.pid) - cpu0) * 1000 / (time.monotonic() - t0)
        res["pages"] = fetched["pages"]
        return res
    finally:
        stop.set()
        herd.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-release"))
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="herd-status-bench-")
    results = {"plain": [], "page": []}
    try:
        for r in range(args.rounds):
            order = ("plain", "page") if r % 2 == 0 else ("page", "plain")
            for setup in order:
                res = run(args, tmp, setup)
                results[setup].append(res)
                log("round %d %-5s %8.0f req/s p99 %.2f ms, master %.2f ms CPU/s, %d page(s) fetched" % (
                    r + 1, setup, res["rps"], res["p99_ms"], res["master_cpu_ms_per_s"], res["pages"]))
    finally:
        shutil.rmtree(tmp, True)
    ratios = [p["rps"] / q["rps"] for p, q in zip(results["page"], results["plain"])]
    lines = ["# The status page's cost on the request path (bench/status_page.py)\n",
             "%s; %d CPU(s); herd at %s; hello, 1 worker, wrk -t1 -c64 keep-alive, %d rounds of %d s, "
             "interleaved; page = GET / every second and /status.json + /metrics every 5 s during the run.\n" % (
                 time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), os.cpu_count(),
                 benchlib.first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]), args.rounds, args.seconds),
             "| set-up | requests/s | p99 (ms) | master CPU (ms per s) | errors / non-2xx |",
             "| --- | --- | --- | --- | --- |"]
    for setup in ("plain", "page"):
        rs = results[setup]
        lines.append("| %s | %s | %s | %s | %d / %d |" % (
            setup, benchlib.med([x["rps"] for x in rs]), benchlib.med([x["p99_ms"] for x in rs], "%.2f"),
            benchlib.med([x["master_cpu_ms_per_s"] for x in rs], "%.2f"),
            sum(x["socket_errors"] for x in rs), sum(x["non_2xx"] for x in rs)))
    lines.append("\npage / plain, round by round: %s (median %.3f)" % (
        ", ".join("%.3f" % x for x in ratios), statistics.median(ratios)))
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "status_page.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
