#!/usr/bin/env python3
"""Worker spawn time and worker memory: herd's hello next to a Node.js child_process.fork()
worker serving the same hello.

herd: one worker, then SIGTTIN (one worker more) and SIGTTOU (one fewer) to the master, COUNT
times: each SIGTTIN forks a worker that loads the hello plugin and reports ready. Two figures:
the master's own "ready in X ms" (from fork() returning in the master to the ready message,
0.1 ms resolution), and from this script's kill(SIGTTIN) to reading that log line (the signal,
the fork and the log pipe included).
Node: bench/peers/node-fork.js forks COUNT workers one after another, each an HTTP hello server
that sends "ready" once listening; the time is from fork() to that message, in the parent.

Memory: after a 1 s wrk load, /proc/PID/smaps_rollup of a worker: private (Private_Clean +
Private_Dirty: what the worker alone costs), proportional (Pss: its share of pages shared with
its siblings and the master) and resident (Rss).

usage: bench/spawn.py [--count 200] [--quick]
"""
import argparse
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, Proc, free_port, log, smaps_rollup, wrk  # noqa: E402

import json  # noqa: E402
import tempfile  # noqa: E402


def pct(values, p):
    v = sorted(values)
    return v[max(0, min(len(v) - 1, int(round(p / 100 * len(v) + 0.5)) - 1))]


def herd_side(build, count, tmp):
    port = free_port()
    config = {"log_level": "info", "allow_root": os.geteuid() == 0, "control": os.path.join(tmp, "herd.sock"), "apps": [{
        "name": "bench", "listen": "127.0.0.1:%d" % port, "workers": 1, "restart_backoff_ms": 0,
        "plugins": [{"mount": "/", "path": os.path.join(build, "plugins", "libhello.so")}]}]}
    path = os.path.join(tmp, "spawn.json")
    with open(path, "w") as f:
        json.dump(config, f)
    p = Proc([os.path.join(build, "server", "herd"), "run", path],
             watch=r"worker bench/(\d+) \(pid (\d+)\) (?:ready in ([\d.]+) ms|.*slot \d+ removed)")
    try:
        _, m = p.wait_matches(1)
        worker0 = int(m.group(2))
        idle = smaps_rollup(worker0)
        wrk(port, 1)
        mem = smaps_rollup(worker0)
        master_mem = smaps_rollup(p.pid)
        log_ms, outside_ms = [], []
        for i in range(count):
            seen = len(p.matches)
            t0 = time.monotonic()
            os.kill(p.pid, signal.SIGTTIN)
            t1, m = p.wait_matches(seen + 1)
            if m.group(3) is None:
                raise RuntimeError("expected a ready line, got: " + m.group(0))
            log_ms.append(float(m.group(3)))
            outside_ms.append((t1 - t0) * 1000)
            os.kill(p.pid, signal.SIGTTOU)
            _, m = p.wait_matches(seen + 2)
            if "removed" not in m.group(0):
                raise RuntimeError("expected the removed worker's exit, got: " + m.group(0))
    finally:
        p.stop()
    return log_ms, outside_ms, idle, mem, master_mem


def node_side(count):
    p = Proc(["node", os.path.join(ROOT, "bench", "peers", "node-fork.js"), str(count)],
             watch=r"spawn ([\d.]+)|worker (\d+) (\d+)")
    try:
        _, m = p.wait_matches(count + 1, timeout=30 + count)
        times = [float(x.group(1)) for _, x in p.matches[:count]]
        pid, port = int(m.group(2)), int(m.group(3))
        idle = smaps_rollup(pid)
        wrk(port, 1)
        mem = smaps_rollup(pid)
        parent_mem = smaps_rollup(p.pid)
    finally:
        p.stop()
    return times, idle, mem, parent_mem


def mb(kb):
    return "%.1f MB" % (kb / 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--build", default=os.environ.get("HERD_BUILD_DIR", os.path.join(ROOT, "build-release")))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    if args.quick:
        args.count = 20
    build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="herd-spawn-")
    log("herd: %d spawns (SIGTTIN/SIGTTOU)" % args.count)
    h_log, h_out, h_idle, h_mem, h_master = herd_side(build, args.count, tmp)
    n_count = max(10, args.count // 4)  # Node's forks take tens of ms each
    log("node: %d child_process.fork() workers" % n_count)
    n_times, n_idle, n_mem, n_parent = node_side(n_count)

    os.makedirs(args.out, exist_ok=True)
    lines = [
        "%s, %d CPUs; herd build %s" % (time.strftime("%Y-%m-%d"), os.cpu_count(), os.path.relpath(build, ROOT)),
        "",
        "| worker | spawns | fork to ready, median | p99 | max |",
        "| --- | --- | --- | --- | --- |",
        "| herd hello (master's log: fork to ready message) | %d | %.2f ms | %.2f ms | %.2f ms |" % (
            len(h_log), statistics.median(h_log), pct(h_log, 99), max(h_log)),
        "| herd hello (this script: SIGTTIN to reading the ready line) | %d | %.2f ms | %.2f ms | %.2f ms |" % (
            len(h_out), statistics.median(h_out), pct(h_out, 99), max(h_out)),
        "| Node child_process.fork() hello (fork() to its ready message) | %d | %.2f ms | %.2f ms | %.2f ms |" % (
            len(n_times), statistics.median(n_times), pct(n_times, 99), max(n_times)),
        "",
        "| worker memory (smaps_rollup) | private, ready | Pss, ready | Rss, ready | private, after 1 s of wrk | Pss, after | Rss, after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ] + ["| %s | %s | %s | %s | %s | %s | %s |" % (name, mb(i["private_kb"]), mb(i["pss_kb"]), mb(i["rss_kb"]),
                                                mb(a["private_kb"]), mb(a["pss_kb"]), mb(a["rss_kb"]))
         for name, i, a in (("herd hello worker", h_idle, h_mem), ("Node child_process.fork() hello worker", n_idle, n_mem))] + [
        "",
        "herd master: private %s, Pss %s, Rss %s; Node parent: private %s, Pss %s, Rss %s" % (
            mb(h_master["private_kb"]), mb(h_master["pss_kb"]), mb(h_master["rss_kb"]),
            mb(n_parent["private_kb"]), mb(n_parent["pss_kb"]), mb(n_parent["rss_kb"])),
    ]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "spawn.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "spawn.csv"), "w") as f:
        f.write("server,measure,ms\n")
        for v in h_log:
            f.write("herd,log fork to ready,%.3f\n" % v)
        for v in h_out:
            f.write("herd,SIGTTIN to ready line,%.3f\n" % v)
        for v in n_times:
            f.write("node,fork to ready message,%.3f\n" % v)
    sys.stdout.write("\n" + text)


if __name__ == "__main__":
    main()
