#!/usr/bin/env python3
"""Requests/s of each balancing strategy, 1 and 2 workers, keep-alive and a new connection per
request (wrk -H "Connection: close"), measured with wrk on 127.0.0.1. Configurations are
interleaved round by round (A B C ... A B C ...) so machine noise hits all of them alike;
the table shows the median and the spread. A benchmark, not a test: nothing passes or fails
on these numbers.

usage: bench/strategies.py [--rounds N] [--seconds S] [--herd build/server/herd]
"""
import argparse
import csv
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ["shared", "reuseport", "round-robin", "least-conn"]


def start_herd(herd, mode, workers, tmp):
    config = {"log_level": "warn", "allow_root": os.geteuid() == 0, "apps": [{
        "name": "bench", "listen": "127.0.0.1:0", "workers": workers, "balance": mode,
        "plugins": [{"mount": "/", "path": os.path.join(os.path.dirname(os.path.dirname(herd)), "plugins", "libhello.so")}],
    }]}
    path = os.path.join(tmp, "bench-%s-%d.json" % (mode, workers))
    with open(path, "w") as f:
        json.dump(config, f)
    # log_level warn keeps the log quiet; "info" lines we need are the listening/ready ones,
    # so run at info but read only until ready.
    config["log_level"] = "info"
    with open(path, "w") as f:
        json.dump(config, f)
    p = subprocess.Popen([herd, "run", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = None
    for raw in p.stdout:
        line = raw.decode()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        if "all apps ready" in line:
            break
    else:
        raise RuntimeError("herd exited before it was ready")
    # Keep draining its output so it never blocks on a full pipe.
    subprocess.Popen(["cat"], stdin=p.stdout, stdout=subprocess.DEVNULL)
    return p, port


def wrk(port, seconds, close):
    cmd = ["wrk", "-t1", "-c64", "-d%ds" % seconds, "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(cmd + ["http://127.0.0.1:%d/" % port], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=seconds + 30).stdout.decode()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors = sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non2xx = int(m.group(1)) if m else 0
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    return rps, p99_ms, errors, non2xx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--herd", default=os.path.join(ROOT, "build", "server", "herd"))
    ap.add_argument("--csv", default=os.path.join(ROOT, "bench", "results", "strategies.csv"))
    args = ap.parse_args()

    configs = [(mode, workers, close) for close in (False, True) for workers in (1, 2) for mode in MODES]
    samples = {c: [] for c in configs}
    tmp = tempfile.mkdtemp(prefix="herd-bench-")
    os.makedirs(os.path.dirname(args.csv), exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["round", "mode", "workers", "connection", "requests_per_s", "p99_ms", "socket_errors", "non_2xx"])
        for r in range(args.rounds):
            for c in configs:
                mode, workers, close = c
                p, port = start_herd(args.herd, mode, workers, tmp)
                try:
                    rps, p99, errors, non2xx = wrk(port, args.seconds, close)
                finally:
                    p.send_signal(signal.SIGTERM)
                    p.wait(timeout=30)
                samples[c].append((rps, p99, errors, non2xx))
                out.writerow([r, mode, workers, "close" if close else "keep-alive", "%.0f" % rps, "%.3f" % p99, errors, non2xx])
                f.flush()
                print("round %d %-11s %d worker(s) %-10s %9.0f req/s  p99 %.2f ms  errors %d  non-2xx %d" %
                      (r + 1, mode, workers, "close" if close else "keep-alive", rps, p99, errors, non2xx),
                      file=sys.stderr)

    print("\n| strategy | workers | keep-alive req/s (min-max) | new connection per request req/s (min-max) |")
    print("| --- | --- | --- | --- |")
    for workers in (1, 2):
        for mode in MODES:
            cells = []
            for close in (False, True):
                rps = [s[0] for s in samples[(mode, workers, close)]]
                bad = sum(s[2] + s[3] for s in samples[(mode, workers, close)])
                cell = "%.0f (%.0f-%.0f)" % (statistics.median(rps), min(rps), max(rps))
                if bad:
                    cell += " **%d errors**" % bad
                cells.append(cell)
            print("| %s | %d | %s | %s |" % (mode, workers, cells[0], cells[1]))
    print("\nraw results: %s" % os.path.relpath(args.csv, ROOT))


if __name__ == "__main__":
    main()
