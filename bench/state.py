#!/usr/bin/env python3
"""Shared state: how long a write takes to reach every worker, and how much load herd's broker
puts on Redis next to workers that each poll Redis themselves. A benchmark, not a test: nothing
passes or fails on these numbers.

1. Propagation latency, for 2 and 8 workers (round-robin balancing, the probe plugin at /probe):
   - publish: writes through the documented Lua script (EVALSHA from a Redis client here); the
     broker gets each one on its SUBSCRIBE connection;
   - polling: a writer that does HSET + INCR (MULTI/EXEC) and no PUBLISH; the broker finds it
     with its GET of the version every poll_ms (then waits a grace of poll_ms/4, at most
     100 ms, for a notice that never comes, then reads everything): the figure is mostly poll_ms;
   - file: the file backend, the state file written atomically from here (temporary file,
     fsync, rename); the broker sees the rename through inotify.
   Write i sets key bench.<i>; t0 = time.monotonic_ns() just before the write (for the file,
   just before the rename that makes it visible). The probe plugin in each worker records, on
   the same CLOCK_MONOTONIC, when its copy got the key (GET /probe/state-seen?key=K). Latency =
   the last worker's arrival - t0. Writes are spaced: write i+1 is made only once every worker
   has write i, after a random pause (uniform in [0, poll_ms) for the polling path so that
   writes do not lock to the broker's poll timer, [0, 5 ms) otherwise): this measures latency,
   not queueing. Workers are asked over one keep-alive connection each, with growing pauses
   between asks, so asking costs them little. Keys are never deleted: each run's state grows
   from 0 to --writes keys, and the table gives the median of the first and of the last 100
   writes beside the overall figures (the file backend reads and parses the whole file on each
   change, so its cost grows with the state).
2. Load on Redis: commands/s issued by the broker with 8 idle workers over --idle-seconds (60,
   so that the broker's full read every resync_ms, 60 s by default, normally falls in it)
   (Redis's INFO commandstats before and after, with only herd and this script's idle client
   connected; INFO itself is not counted), then the same for 8 naive pollers (threads here,
   one connection each) doing what a worker would do without the broker: GET <prefix>version
   every poll_ms, and MULTI/GET/HGETALL/EXEC when it changed (it does not change while idle).

Starts its own redis-server (127.0.0.1, a free port, a temporary folder, no persistence) and
its own herd instances; stops them all on any exit. Python standard library only.

usage: bench/state.py [--writes N] [--poll-ms MS] [--idle-seconds S] [--workers 2,8]
                      [--paths publish,polling,file] [--herd build/server/herd]
"""
import argparse
import csv
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (kills every process group it started on any exit)
from benchlib import ROOT, Proc, free_port, log, wait_port  # noqa: E402

PREFIX = "herd:"  # herd's default; each run starts from an empty Redis (FLUSHALL)


# ---- a small RESP client ----

class RedisError(Exception):
    pass


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    @staticmethod
    def encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RedisError("Redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RedisError("Redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("unexpected reply %r" % line)

    def send(self, *args):
        self.sock.sendall(self.encode(args))

    def call(self, *args):
        self.send(*args)
        reply = self._reply()
        if isinstance(reply, RedisError):
            raise reply
        return reply


def commandstats(r):
    """{command: calls} from INFO commandstats."""
    text = r.call("INFO", "commandstats").decode()
    out = {}
    for m in re.finditer(r"^cmdstat_([^:]+):calls=(\d+)", text, re.M):
        out[m.group(1)] = int(m.group(2))
    return out


def info_field(r, section, name):
    m = re.search(r"^%s:(\S+)" % re.escape(name), r.call("INFO", section).decode(), re.M)
    return m.group(1) if m else None


def start_redis(tmp):
    port = free_port()
    folder = os.path.join(tmp, "redis")
    os.makedirs(folder)
    proc = Proc(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                 "--appendonly", "no", "--dir", folder, "--protected-mode", "yes",
                 "--daemonize", "no", "--logfile", ""])
    wait_port(port, proc.proc)
    return proc, port


def lua_script():
    """The write script exactly as broker/README.md documents it (outside writers copy it)."""
    with open(os.path.join(ROOT, "broker", "README.md")) as f:
        m = re.search(r"```lua\n(.*?)```", f.read(), re.S)
    if not m:
        raise RuntimeError("no ```lua block in broker/README.md")
    return m.group(1)


# ---- herd ----

class Herd:
    def __init__(self, herd, tmp, name, workers, state):
        self.herd = herd
        self.folder = os.path.join(tmp, name)
        os.makedirs(self.folder)
        self.config = os.path.join(self.folder, "herd.json")
        probe = os.path.join(os.path.dirname(os.path.dirname(herd)), "plugins", "libprobe.so")
        config = {
            "log_level": "info",
            "apps": [{
                "name": "bench", "listen": "127.0.0.1:0", "workers": workers,
                "balance": "round-robin", "keepalive_timeout_ms": 3600000,
                "plugins": [{"mount": "/probe", "path": probe}],
            }],
            "state": state,
            "allow_root": os.geteuid() == 0,
        }
        with open(self.config, "w") as f:
            json.dump(config, f, indent=2)
        self.proc = Proc([herd, "run", self.config], cwd=self.folder,
                         watch=r"listening on 127\.0\.0\.1:(\d+)|all apps ready")
        self.proc.wait_for(lambda: any("all apps ready" in m.group(0) for _, m in self.proc.matches),
                           timeout=60, what="all apps ready")
        self.port = next(int(m.group(1)) for _, m in self.proc.matches if m.group(1))
        self.pids = set(self.worker_pids())
        if len(self.pids) != workers:
            raise RuntimeError("herd status lists %d worker pid(s), expected %d" % (len(self.pids), workers))

    def status(self):
        out = subprocess.run([self.herd, "status", "--json", "-c", self.config], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=30)
        if out.returncode != 0:
            raise RuntimeError("herd status failed: %s" % out.stderr.decode())
        return json.loads(out.stdout)

    def worker_pids(self):
        pids = []

        def walk(node):  # the worker list, wherever the JSON keeps it: objects with pid and slot
            if isinstance(node, dict):
                if "pid" in node and "slot" in node:
                    pids.append(int(node["pid"]))
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)
        walk(self.status().get("apps"))
        return pids

    def stop(self):
        self.proc.stop()


class Worker:
    """One keep-alive connection, which round-robin gave to one worker."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def get(self, path):
        self.sock.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path.encode())
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("herd closed a keep-alive connection")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("herd closed a keep-alive connection")
            self.buf += chunk
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def close(self):
        self.sock.close()


def connect_workers(herd):
    """{pid: Worker}: one keep-alive connection to each worker (new connections go round-robin)."""
    conns = {}
    for _ in range(20 * len(herd.pids)):
        w = Worker(herd.port)
        _, headers, _ = w.get("/probe/state-seen?key=bench.none")
        pid = int(headers["x-pid"])
        if pid in herd.pids and pid not in conns:
            conns[pid] = w
        else:
            w.close()
        if len(conns) == len(herd.pids):
            return conns
    raise RuntimeError("reached %d of %d workers in %d connections" % (len(conns), len(herd.pids), 20 * len(herd.pids)))


def collect(conns, key, cap_s, timeout_s):
    """Each worker's arrival time of key (ns), asking with growing pauses up to cap_s."""
    seen = {}
    pause = cap_s / 2
    deadline = time.monotonic() + timeout_s
    time.sleep(cap_s / 2)  # the first ask a little later: asking early would only compete for the CPU
    while True:
        for pid, w in conns.items():
            if pid in seen:
                continue
            status, _, body = w.get("/probe/state-seen?key=" + key)
            if status == 200:
                seen[pid] = int(body)
        if len(seen) == len(conns):
            return seen
        if time.monotonic() > deadline:
            raise RuntimeError("%s reached %d of %d workers within %ss" % (key, len(seen), len(conns), timeout_s))
        time.sleep(pause)
        pause = min(pause * 2, cap_s)


# ---- the writers ----

class PublishWriter:
    """The documented Lua script, EVALSHA."""
    name = "publish"

    def __init__(self, port, tmp):
        self.r = Redis(port)
        self.sha = self.r.call("SCRIPT", "LOAD", lua_script()).decode()

    def write(self, key, value):
        args = ("EVALSHA", self.sha, 2, PREFIX + "data", PREFIX + "version", PREFIX + "changes",
                "set", key, value)
        t0 = time.monotonic_ns()
        self.r.call(*args)
        return t0


class PollingWriter:
    """HSET + INCR in one MULTI/EXEC, no PUBLISH: only the broker's version poll finds it."""
    name = "polling"

    def __init__(self, port, tmp):
        self.r = Redis(port)

    def write(self, key, value):
        payload = b"".join(Redis.encode(a) for a in (
            ("MULTI",), ("HSET", PREFIX + "data", key, value), ("INCR", PREFIX + "version"), ("EXEC",)))
        t0 = time.monotonic_ns()
        self.r.sock.sendall(payload)
        replies = [self.r._reply() for _ in range(4)]
        if any(isinstance(x, RedisError) for x in replies):
            raise RuntimeError("polling writer: %r" % replies)
        return t0


class FileWriter:
    """The whole state file, written atomically: temporary file, fsync, then rename (t0)."""
    name = "file"

    def __init__(self, path):
        self.path = path
        self.entries = {}
        self.version = 0

    def write(self, key, value):
        self.entries[key] = json.loads(value)
        self.version += 1
        tmp = self.path + ".bench-tmp"
        with open(tmp, "w") as f:
            json.dump({"version": self.version, "entries": self.entries}, f)
            f.flush()
            os.fsync(f.fileno())
        t0 = time.monotonic_ns()
        os.rename(tmp, self.path)
        return t0


def run_latency(args, tmp, redis_port, redis_admin, path, workers, rows):
    name = "%s-%d" % (path, workers)
    if path == "file":
        state_file = os.path.join(tmp, name, "herd.state.json")
        state = {"backend": "file", "path": state_file}
    else:
        redis_admin.call("FLUSHALL")
        state = {"backend": "redis", "url": "redis://127.0.0.1:%d/0" % redis_port, "prefix": PREFIX,
                 "poll_ms": args.poll_ms}
    herd = Herd(args.herd, tmp, name, workers, state)
    try:
        conns = connect_workers(herd)
        if path == "publish":
            writer = PublishWriter(redis_port, tmp)
        elif path == "polling":
            writer = PollingWriter(redis_port, tmp)
        else:
            writer = FileWriter(state_file)
        if path == "polling":
            gap_s, cap_s = args.poll_ms / 1000.0, args.poll_ms / 1000.0 / 10
        else:
            gap_s, cap_s = 0.005, 0.002
        rng = random.Random(12345 + workers)
        lat = []
        for i in range(args.writes):
            time.sleep(rng.uniform(0, gap_s))
            key = "bench.%d" % i
            t0 = writer.write(key, json.dumps({"i": i}))
            seen = collect(conns, key, cap_s, timeout_s=max(10, 20 * args.poll_ms / 1000.0))
            arrivals = sorted(seen.values())
            last_ns, first_ns = arrivals[-1] - t0, arrivals[0] - t0
            if first_ns < 0:
                raise RuntimeError("%s: a worker has %s before it was written (%d ns)" % (name, key, first_ns))
            lat.append(last_ns)
            rows.append([path, workers, i, last_ns, first_ns])
            if (i + 1) % 200 == 0:
                log("  %s, %d workers: %d/%d writes, median so far %.3f ms" % (
                    path, workers, i + 1, args.writes, statistics.median(lat) / 1e6))
        # Cross-check: the same pids still serve (no worker was replaced during the run).
        if set(herd.worker_pids()) != herd.pids:
            log("  WARNING: the worker pids changed during the %s run" % name)
        time.sleep(1.5)  # the broker's figures in herd status come from its heartbeat, every second
        broker = herd.status().get("state") or {}
        if broker.get("version") != len(lat):
            log("  NOTE: the broker is at version %s after %d writes" % (broker.get("version"), len(lat)))
        for w in conns.values():
            w.close()
    finally:
        herd.stop()
    return lat, broker


def percentile(values, p):
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ---- load on Redis ----

def count_commands(redis_admin, seconds):
    before = commandstats(redis_admin)
    clients = int(info_field(redis_admin, "clients", "connected_clients"))
    time.sleep(seconds)
    after = commandstats(redis_admin)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    delta = {k: v for k, v in delta.items() if v and k != "info"}
    return delta, clients


def naive_poller(port, poll_ms, stop, counts, idx):
    """What a worker without the broker does: GET version every poll_ms, a full read on change."""
    r = Redis(port)
    last = None
    n = 0
    next_at = time.monotonic()
    while not stop.is_set():
        v = r.call("GET", PREFIX + "version")
        n += 1
        if v != last:
            r.sock.sendall(b"".join(Redis.encode(a) for a in (
                ("MULTI",), ("GET", PREFIX + "version"), ("HGETALL", PREFIX + "data"), ("EXEC",))))
            for _ in range(4):  # +OK, QUEUED, QUEUED, the EXEC array
                r._reply()
            n += 4
            last = v
        next_at += poll_ms / 1000.0
        stop.wait(max(0.0, next_at - time.monotonic()))
    counts[idx] = n
    r.close()


def run_load(args, tmp, redis_port, redis_admin):
    results = []
    redis_admin.call("FLUSHALL")
    state = {"backend": "redis", "url": "redis://127.0.0.1:%d/0" % redis_port, "prefix": PREFIX,
             "poll_ms": args.poll_ms}
    herd = Herd(args.herd, tmp, "load-herd-8", 8, state)
    try:
        time.sleep(1.0)  # past the first full read
        log("  herd, 8 idle workers: counting Redis commands for %d s" % args.idle_seconds)
        delta, clients = count_commands(redis_admin, args.idle_seconds)
        broker = herd.status().get("state") or {}
    finally:
        herd.stop()
    results.append(("herd broker (8 workers)", delta, clients, broker))

    stop = threading.Event()
    counts = [0] * 8
    threads = [threading.Thread(target=naive_poller, args=(redis_port, args.poll_ms, stop, counts, i), daemon=True)
               for i in range(8)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        log("  8 naive pollers: counting Redis commands for %d s" % args.idle_seconds)
        delta, clients = count_commands(redis_admin, args.idle_seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    results.append(("8 naive pollers", delta, clients, {}))
    return results


def machine():
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return "%d CPU(s), %s" % (os.cpu_count(), model)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--poll-ms", type=int, default=100)
    ap.add_argument("--idle-seconds", type=int, default=60)
    ap.add_argument("--workers", default="2,8")
    ap.add_argument("--paths", default="publish,polling,file")
    ap.add_argument("--no-load", action="store_true", help="skip the load-on-Redis part")
    ap.add_argument("--herd", default=os.path.join(ROOT, "build", "server", "herd"))
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    args.herd = os.path.abspath(args.herd)
    for tool in ("redis-server",):
        if not shutil.which(tool):
            sys.exit("state.py: %s is not installed (bench/state.sh installs it)" % tool)
    if not os.access(args.herd, os.X_OK):
        sys.exit("state.py: no herd at %s (build it, or give --herd)" % args.herd)

    with open("/proc/loadavg") as f:
        load_before = " ".join(f.read().split()[:3])
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    log("state.py: %s, %s, load average %s, herd %s" % (started, machine(), load_before, args.herd))
    os.makedirs(args.results, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="herd-state-bench-")
    redis = None
    try:
        redis, redis_port = start_redis(tmp)
        admin = Redis(redis_port)
        log("redis-server %s on 127.0.0.1:%d" % (info_field(admin, "server", "redis_version"), redis_port))

        rows, summary = [], []
        for path in [p for p in args.paths.split(",") if p]:
            for workers in [int(w) for w in args.workers.split(",") if w]:
                log("latency: %s path, %d workers, %d writes" % (path, workers, args.writes))
                lat, broker = run_latency(args, tmp, redis_port, admin, path, workers, rows)
                summary.append((path, workers, len(lat), statistics.median(lat) / 1e6,
                                percentile(lat, 99) / 1e6, max(lat) / 1e6, broker,
                                statistics.median(lat[:100]) / 1e6, statistics.median(lat[-100:]) / 1e6))
                log("  median %.3f ms, p99 %.3f ms, max %.3f ms; broker at version %s with %s key(s)" % (
                    summary[-1][3], summary[-1][4], summary[-1][5], broker.get("version"), broker.get("keys")))

        with open(os.path.join(args.results, "state_latency.csv"), "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["path", "workers", "write", "last_worker_ns", "first_worker_ns"])
            out.writerows(rows)

        load = [] if args.no_load else run_load(args, tmp, redis_port, admin)
        admin.close()
    finally:
        if redis is not None:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    with open("/proc/loadavg") as f:
        load_after = " ".join(f.read().split()[:3])

    print("\nshared state, %s; %s; load average %s before, %s after; poll_ms %d" % (
        started, machine(), load_before, load_after, args.poll_ms))
    print("\n| path | workers | writes | median (ms) | p99 (ms) | max (ms) | median of the first / last 100 writes (ms) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for path, workers, n, med, p99, mx, _, first100, last100 in summary:
        label = {"publish": "Redis, publish (Lua script)",
                 "polling": "Redis, polling (HSET+INCR, poll_ms %d)" % args.poll_ms,
                 "file": "file (atomic rename, inotify)"}[path]
        print("| %s | %d | %d | %.2f | %.2f | %.2f | %.2f / %.2f |" % (label, workers, n, med, p99, mx, first100, last100))
    with open(os.path.join(args.results, "state_summary.csv"), "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["date", "machine", "load_before", "poll_ms", "kind", "path_or_client", "workers",
                      "writes_or_seconds", "median_ms", "p99_ms", "max_ms", "first100_median_ms",
                      "last100_median_ms", "commands_per_s", "commands"])
        for path, workers, n, med, p99, mx, _, first100, last100 in summary:
            out.writerow([started, machine(), load_before, args.poll_ms, "latency", path, workers, n,
                          "%.3f" % med, "%.3f" % p99, "%.3f" % mx, "%.3f" % first100, "%.3f" % last100, "", ""])
        if load:
            print("\n| Redis client | commands in %d s | commands/s | by command | clients connected |" % args.idle_seconds)
            print("| --- | --- | --- | --- | --- |")
            rates = []
            for who, delta, clients, broker in load:
                total = sum(delta.values())
                rate = total / float(args.idle_seconds)
                rates.append(rate)
                by = ", ".join("%s %d" % kv for kv in sorted(delta.items(), key=lambda kv: -kv[1]))
                print("| %s | %d | %.1f | %s | %d |" % (who, total, rate, by, clients))
                out.writerow([started, machine(), load_before, args.poll_ms, "load", who, 8, args.idle_seconds,
                              "", "", "", "", "", "%.2f" % rate, by])
            if rates[0] > 0:
                print("\nnaive / herd: %.1fx the commands" % (rates[1] / rates[0]))
            print("(clients connected includes this script's own idle INFO connection; INFO is not counted)")
    print("\nraw results: %s, %s" % (os.path.relpath(os.path.join(args.results, "state_latency.csv"), ROOT),
                                    os.path.relpath(os.path.join(args.results, "state_summary.csv"), ROOT)))


if __name__ == "__main__":
    main()
