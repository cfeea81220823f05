#!/usr/bin/env python3
"""Handlers that wait: herd's event-driven workers next to a Node.js cluster, on 127.0.0.1.

I/O-bound part: every request waits 10 ms on a timer before it is answered, 2 workers each:
  herd coroutine   probe's GET /wait?ms=10 (a CoroutinePlugin-style handler: co_await sleep_for)
  herd callback    probe's GET /wait-cb?ms=10 (a Responder kept in a timer's callback)
  herd blocking    probe's GET /sleep?ms=10 (std::this_thread::sleep_for: the worker is frozen),
                   for contrast: what herd did before handlers could answer later
  node cluster     bench/peers/node-wait.js (setTimeout(10), Node's http and cluster at defaults)
wrk -t1 at 64, 256 and 1024 connections, on the same machine. For each run: requests/s, p50 and
p99 latency (wrk --latency), CPU per request (utime + stime of the server's whole process tree
from /proc, before and after) and the workers' private memory (smaps_rollup, sampled in the
middle of the run). Configurations are interleaved round by round; the table gives the median
and the min-max over rounds.

Stream part: 1,000 clients of herd's GET /sse (an event every 100 ms, from probe's EventStream)
read by this script with one selector. Reported: the workers' private memory per open stream
(with the streams open, less before), the timer lateness of each event (the interval between
two events' send times, taken by the worker with CLOCK_MONOTONIC, less 100 ms) and the delivery
delay (this script's CLOCK_MONOTONIC at reading less the send time; it includes the time this
Python client takes to get to the socket, on the same two cores).

A benchmark: it passes or fails nothing. Results: bench/results/async.md, async.csv, async.png.

usage: bench/async.py [--rounds 3] [--seconds 5] [--warmup 1] [--streams 1000] [--stream-seconds 10] [--quick]
"""
import argparse
import csv
import json
import os
import resource
import selectors
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, med, Proc, cpu_seconds, free_port, log, process_tree, smaps_rollup, wait_port, wrk)  # noqa: E402

CONNECTIONS = [64, 256, 1024]
WAIT_MS = 10


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


class Herd:
    def __init__(self, build, name, path, workers=2):
        self.build, self.name, self.path, self.workers = build, name, path, workers

    def start(self, tmp):
        self.port = free_port()
        config = {"log_level": "warn", "allow_root": os.geteuid() == 0,
                  "control": os.path.join(tmp, "herd.sock"),
                  "apps": [{"name": "bench", "listen": "127.0.0.1:%d" % self.port, "workers": self.workers,
                            "plugins": [{"mount": "/", "path": os.path.join(self.build, "plugins", "libprobe.so")}]}]}
        path = os.path.join(tmp, "herd.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self.proc = Proc([os.path.join(self.build, "server", "herd"), "run", path])
        wait_port(self.port, self.proc.proc)
        deadline = time.monotonic() + 20
        while len(self.workers_pids()) < self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError("herd: %d workers not up" % self.workers)
            time.sleep(0.05)

    def workers_pids(self):
        return [p for p in process_tree(self.proc.pid)[1:] if comm(p) not in ("herd-broker", "")]

    def stop(self):
        self.proc.stop()


class Node:
    def __init__(self, workers=2):
        self.name, self.path, self.workers = "node cluster", "/wait?ms=%d" % WAIT_MS, workers

    def start(self, tmp):
        self.port = free_port()
        self.proc = Proc(["node", os.path.join(ROOT, "bench", "peers", "node-wait.js")],
                         env=dict(os.environ, PORT=str(self.port), WORKERS=str(self.workers)), watch=r"ready (\d+)")
        self.proc.wait_matches(self.workers)

    def workers_pids(self):
        return process_tree(self.proc.pid)[1:]

    def stop(self):
        self.proc.stop()


def private_kb(server):
    total = 0
    for pid in server.workers_pids():
        try:
            total += smaps_rollup(pid)["private_kb"]
        except OSError:
            pass
    return total


def one_run(server, tmp, connections, seconds, warmup):
    server.start(tmp)
    try:
        if warmup > 0:
            wrk(server.port, warmup, connections=connections, path=server.path)
        mem = []
        sampler = threading.Timer(seconds / 2, lambda: mem.append(private_kb(server)))
        cpu0 = cpu_seconds(server.proc.pid)
        sampler.start()
        res = wrk(server.port, seconds, connections=connections, path=server.path)
        sampler.join()
        cpu = cpu_seconds(server.proc.pid) - cpu0
        res["cpu_us_per_req"] = cpu / max(res["requests"], 1) * 1e6
        res["workers_private_kb"] = mem[0] if mem else float("nan")
        return res
    finally:
        server.stop()


def streams(build, tmp, count, seconds):
    server = Herd(build, "herd sse", "")
    server.start(tmp)
    try:
        before_kb = private_kb(server)
        events = max(2, int(seconds * 10))
        socks = []
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(b"GET /sse?events=%d&ms=100 HTTP/1.1\r\nHost: h\r\n\r\n" % events)
            s.setblocking(False)
            socks.append(s)
        sel = selectors.DefaultSelector()
        for i, s in enumerate(socks):
            sel.register(s, selectors.EVENT_READ, i)
        bufs = [b""] * count
        last_sent = [None] * count
        got = [0] * count
        lateness, delivery = [], []
        mem_kb = None
        started = time.monotonic()
        deadline = started + seconds + 30
        done = 0
        while done < count and time.monotonic() < deadline:
            if mem_kb is None and time.monotonic() - started > seconds / 2:
                mem_kb = private_kb(server)
            for key, _ in sel.select(1):
                i = key.data
                data = key.fileobj.recv(65536)
                now_ns = time.monotonic_ns()
                if not data:
                    sel.unregister(key.fileobj)
                    done += 1
                    continue
                bufs[i] += data
                while True:
                    at = bufs[i].find(b"data: ")
                    if at < 0:
                        break
                    eol = bufs[i].find(b"\n", at)
                    if eol < 0:
                        break
                    _, sent = bufs[i][at + 6:eol].split()
                    sent = int(sent)
                    bufs[i] = bufs[i][eol + 1:]
                    delivery.append((now_ns - sent) / 1e6)
                    if last_sent[i] is not None:
                        lateness.append((sent - last_sent[i]) / 1e6 - 100)
                    last_sent[i] = sent
                    got[i] += 1
                    if got[i] == events:
                        sel.unregister(key.fileobj)
                        done += 1
                        break
        for s in socks:
            s.close()
        q = lambda xs, p: statistics.quantiles(xs, n=1000)[int(p * 10) - 1] if len(xs) > 1 else float("nan")  # noqa: E731
        return {"streams": count, "events": sum(got), "expected": count * events,
                "per_stream_bytes": ((mem_kb or 0) - before_kb) * 1024 / count,
                "lateness_p50_ms": q(lateness, 50), "lateness_p99_ms": q(lateness, 99), "lateness_max_ms": max(lateness or [float("nan")]),
                "delivery_p50_ms": q(delivery, 50), "delivery_p99_ms": q(delivery, 99), "delivery_max_ms": max(delivery or [float("nan")])}
    finally:
        server.stop()


def chart(summary, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("no matplotlib (Debian's python3-matplotlib, for /usr/bin/python3): no chart")
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, by_conn in summary.items():
        xs = sorted(by_conn)
        # A run in which wrk got no answer at all has no latency to plot.
        answered = [x for x in xs if statistics.median(by_conn[x]["rps"]) > 0]
        a.plot(xs, [statistics.median(by_conn[x]["rps"]) for x in xs], marker="o", label=name)
        b.plot(answered, [statistics.median(by_conn[x]["p99_ms"]) for x in answered], marker="o",
               label=name)
    for ax, title in ((a, "requests/s"), (b, "p99 latency, ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(CONNECTIONS)
        ax.set_xticklabels([str(c) for c in CONNECTIONS])
        ax.set_xlabel("connections (wrk -t1)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    a.plot(CONNECTIONS, [c * 1000 / WAIT_MS for c in CONNECTIONS], "k:", label="connections ÷ 10 ms")
    b.set_yscale("log")
    a.legend(fontsize=8)
    fig.suptitle("a handler that waits 10 ms, 2 workers, 127.0.0.1 (%s)" % time.strftime("%Y-%m-%d"))
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--stream-seconds", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-blocking", action="store_true", help="leave out herd's blocking /sleep")
    ap.add_argument("--build", default=os.environ.get("HERD_BUILD_DIR", os.path.join(ROOT, "build-release")))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.streams, args.stream_seconds = 1, 2, 0, 200, 3
    build = os.path.abspath(args.build)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))  # wrk, and us
    os.makedirs(args.out, exist_ok=True)

    servers = [Herd(build, "herd coroutine", "/wait?ms=%d" % WAIT_MS),
               Herd(build, "herd callback", "/wait-cb?ms=%d" % WAIT_MS),
               Node()]
    if not args.no_blocking:
        servers.append(Herd(build, "herd blocking", "/sleep?ms=%d" % WAIT_MS))
    rows = []
    summary = {s.name: {c: {"rps": [], "p50_ms": [], "p99_ms": [], "cpu_us_per_req": [], "workers_private_kb": [],
                            "errors": []} for c in CONNECTIONS} for s in servers}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="herd-bench-async-") as tmp:
        for r in range(args.rounds):
            for c in CONNECTIONS:
                for s in servers:
                    res = one_run(s, tmp, c, args.seconds, args.warmup)
                    errors = res["socket_errors"] + res["non_2xx"]
                    log("round %d/%d  c=%-5d %-15s %9.0f req/s  p50 %7.2f ms  p99 %8.2f ms  %6.1f us CPU/req  %6d kB  errors %d" % (
                        r + 1, args.rounds, c, s.name, res["rps"], res["p50_ms"], res["p99_ms"], res["cpu_us_per_req"],
                        res["workers_private_kb"], errors))
                    rows.append(dict(round=r + 1, connections=c, server=s.name, errors=errors, **{
                        k: res[k] for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "workers_private_kb")}))
                    for k in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "workers_private_kb"):
                        summary[s.name][c][k].append(res[k])
                    summary[s.name][c]["errors"].append(errors)
        stream = streams(build, tmp, args.streams, args.stream_seconds)

    write_results(args, rows, summary, servers, stream, started)


def write_results(args, rows, summary, servers, stream, started):
    with open(os.path.join(args.out, "async.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = ["# A handler that waits 10 ms (bench/async.py, %s)" % time.strftime("%Y-%m-%d %H:%M"), "",
           "%d CPUs, load average %.1f at the end, %d round(s) of %d s (warm-up %d s), %.1f min. "
           "Median (min–max) over rounds." % (os.cpu_count(), os.getloadavg()[0], args.rounds, args.seconds,
                                             args.warmup, (time.time() - started) / 60), "",
           "| connections | server | requests/s | p50 ms | p99 ms | CPU µs/request | workers' private memory kB | errors |",
           "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in CONNECTIONS:
        for s in servers:
            m = summary[s.name][c]
            out.append("| %d | %s | %s | %s | %s | %s | %s | %d |" % (
                c, s.name, med(m["rps"]), med(m["p50_ms"], "%.1f"), med(m["p99_ms"], "%.1f"),
                med(m["cpu_us_per_req"], "%.1f"), med(m["workers_private_kb"]), sum(m["errors"])))
    out += ["", "## Against the targets", ""]
    for c in (64, 256):
        m = summary["herd coroutine"][c]
        ceiling = c * 1000 / WAIT_MS
        out.append("- %d connections: herd coroutine %s req/s = %.2f × the ceiling of %d (target ≥ 0.95), p99 %s ms (target ≤ 12)" % (
            c, med(m["rps"]), statistics.median(m["rps"]) / ceiling, ceiling, med(m["p99_ms"], "%.1f")))
    h, n = summary["herd coroutine"][1024], summary["node cluster"][1024]
    pairs = list(zip(h["rps"], n["rps"]))
    cpu_pairs = list(zip(h["cpu_us_per_req"], n["cpu_us_per_req"]))
    out.append("- 1024 connections: herd coroutine / node cluster requests/s, round by round: %s (target ≥ 1.5); "
               "CPU per request: %s (target ≤ 0.5)" % (
                   ", ".join("%.2f" % (a / b) for a, b in pairs), ", ".join("%.2f" % (a / b) for a, b in cpu_pairs)))
    out += ["", "## 1,000 server-sent-event streams", "",
            "%d streams, an event every 100 ms for %d s: %d of %d events arrived. Workers' private memory per "
            "open stream: %.0f bytes (target ≤ 8 KB). Timer lateness (interval less 100 ms): p50 %.2f ms, p99 %.2f ms, "
            "max %.2f ms (target p99 ≤ 5). Delivery delay to this Python client: p50 %.2f ms, p99 %.2f ms, max %.2f ms." % (
                stream["streams"], args.stream_seconds, stream["events"], stream["expected"], stream["per_stream_bytes"],
                stream["lateness_p50_ms"], stream["lateness_p99_ms"], stream["lateness_max_ms"],
                stream["delivery_p50_ms"], stream["delivery_p99_ms"], stream["delivery_max_ms"])]
    text = "\n".join(out) + "\n"
    with open(os.path.join(args.out, "async.md"), "w") as f:
        f.write(text)
    print(text)
    chart(summary, os.path.join(args.out, "async.png"))


if __name__ == "__main__":
    main()
