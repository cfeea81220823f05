#!/usr/bin/env python3
"""Several herd hosts on one machine (issue #18): each host, a redis-server and haproxy in a
network namespace of its own, joined by a bridge (tests/integration/topology.py: addresses in
127.77.0.0/24, route_localnet), the same layout as tests/integration/test_fleet.py. A
benchmark, not a test: nothing passes or fails on these numbers. Root only (namespaces).

Where the measuring client runs: this script makes the namespaces (from the root namespace),
then moves itself into the load balancer's namespace with setns(2) (through ctypes: Python
3.11 has no os.setns) before it starts anything. Every server is started with
`ip netns exec NS ...` (into its own namespace); every socket this script opens, and wrk, which
it starts, are then in the lb namespace, which reaches every host, Redis and haproxy.
`herd status --json -c CONFIG` works from there too (the control socket is a file).
time.monotonic_ns() and the probe plugin's timestamps are CLOCK_MONOTONIC, which is the same
clock in every network namespace (there is no time namespace here).

1. Cross-host state propagation (--writes, 300): Redis in its namespace; hosts of 2 workers
   each (round-robin balancing, hello at /, the probe plugin at /probe, state backend
   redis://REDIS:6379/0). First 1 host (h1 alone), then 3 hosts (h1, h2, h3 started, the
   same Redis). Write i: PUT http://h1:8080/probe/state/bench.<phase>.<i> with a small JSON
   body over a keep-alive connection to h1 (the worker answers 202 at once and hands the write
   to its broker, which writes it to Redis; every broker, h1's included, gets it back from
   Redis and pushes it to its workers); t0 = time.monotonic_ns() just before sending. The
   probe plugin records in each worker, on CLOCK_MONOTONIC, when its copy got each "bench."
   key (GET /probe/state-seen?key=K, 404 until then). One keep-alive connection per worker of
   every host (new connections go round-robin, so asking /probe/state-seen on new connections
   until every pid that `herd status` lists for the host has answered gives one connection per
   worker; the X-Pid header says whose). Latency = the last arrival over every worker of every
   host - t0; also the last arrival per host. Writes are spaced: write i+1 is sent only once
   every worker has write i, after a random pause in [0, 5 ms) (latency, not queueing). Workers
   are asked with growing pauses (1 ms, 2 ms, capped at 2 ms), as bench/state.py does.
2. Requests/s through haproxy with 1, 2 and 3 hosts (--rounds, 3; --seconds, 5): the hosts
   restarted with 1 worker each (hello at /); one haproxy (Debian 12's 2.6, its default
   threads: one per CPU) with three frontends, :8001 -> h1, :8002 -> h1 + h2, :8003 -> h1 + h2
   + h3, round-robin, each host's GET /healthz checked every 100 ms (test_fleet's haproxy
   config). wrk -t1 -c64 keep-alive from the lb namespace, 1 s warm-up then --seconds
   measured, the three (and h1 without haproxy, for reference) interleaved in each round. Each
   host's share of the requests from `herd status` (the workers' request counts) before and
   after each run, and the CPU time per request of haproxy and of all herd hosts' process trees
   (utime + stime from /proc; pids are global). All hosts, haproxy, Redis and wrk share the machine's CPUs: the ratios to
   1 host show the cost of more hosts and processes on the same CPUs, not scaling.
3. Failover time, from the Redis primary's death to the first acknowledged write
   (--failovers, 3 rounds per setting): in namespaces r1 (primary), r2 and r3 (replicas),
   s1-s3 (redis-sentinel, quorum 2, down-after-milliseconds 1000), fresh for each round; one
   host (h1, 2 workers) whose broker finds the primary through the sentinels, with
   min_replicas_ack 0 and then 1 (two replicas, so that the promoted one still has a replica to
   confirm writes). Writes one after another over one keep-alive connection to h1, 2 ms apart:
   PUT /probe/state-ack/fo.<i>, which the probe answers once its broker has answered the write
   (200, or 503 and why). After 50 acknowledged writes the primary gets SIGKILL; the figure is
   the time from the kill to the answer of the first write sent after it that is acknowledged.
   The sentinels' own log lines (+sdown, +switch-master; read as they are printed) split it
   into Sentinel's part and herd's (from +switch-master on). Also counted: writes that failed
   meanwhile, and acknowledged writes the new primary lacks (HKEYS).

Results: bench/results/fleet.md (tables, also on stdout) and fleet.csv (one row per write and
per wrk run). Every process started here and every namespace made here is removed on any exit
(Ctrl-C included). Python standard library only.

usage: bench/fleet.py [--build build-release] [--writes N] [--rounds N] [--seconds S]
                      [--parts state,rps,failover] [--failovers N]
                      [--results bench/results]
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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))
import benchlib  # noqa: E402  (kills every process group it started on any exit)
import topology  # noqa: E402
from benchlib import ROOT, Proc, cpu_seconds, log  # noqa: E402
from state import collect, machine, percentile  # noqa: E402

HOSTS = ["h1", "h2", "h3"]
REDIS = ["r1", "r2", "r3"]  # part 3: the primary and two replicas
SENTINELS = ["s1", "s2", "s3"]

HAPROXY = topology.HAPROXY_DEFAULTS + """{sections}
"""

SECTION = """frontend f{n}
    bind {lb}:{port}
    default_backend b{n}
backend b{n}
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
    default-server inter 100ms fall 2 rise 2 port 8081
""" + topology.HAPROXY_BACKEND_RETRIES + """{servers}
"""


class Conn:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, addr, port):
        self.sock = socket.create_connection((addr, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed a keep-alive connection")
        self.buf += chunk

    def request(self, method, path, body=b""):
        head = "%s %s HTTP/1.1\r\nHost: bench\r\n" % (method, path)
        if body or method in ("PUT", "POST"):
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        self.sock.sendall(head.encode() + b"\r\n" + body)
        return self.response()

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._recv()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def get(self, path):  # what state.collect calls
        return self.request("GET", path)

    def close(self):
        self.sock.close()


class Host:
    """A herd master in a host's namespace."""

    def __init__(self, args, net, tmp, name, workers, tag, state=None):
        self.name = name
        self.herd = os.path.join(args.build, "server", "herd")
        self.addr = net.address(name)
        self.folder = os.path.join(tmp, "%s-%s" % (name, tag))
        os.makedirs(self.folder)
        self.config = os.path.join(self.folder, "herd.json")
        plugins = os.path.join(args.build, "plugins")
        config = {
            "log_level": "info",
            "allow_root": os.geteuid() == 0,
            "health": "%s:8081" % self.addr,
            "state": state or {"backend": "redis", "url": "redis://%s:6379/0" % net.address("redis")},
            "apps": [{"name": "web", "listen": "%s:8080" % self.addr, "workers": workers,
                      "balance": "round-robin", "keepalive_timeout_ms": 3600000,
                      "plugins": [{"mount": "/", "path": os.path.join(plugins, "libhello.so")},
                                  {"mount": "/probe", "path": os.path.join(plugins, "libprobe.so")}]}],
        }
        with open(self.config, "w") as f:
            json.dump(config, f, indent=2)
        self.proc = Proc(net.wrap(name) + [self.herd, "run", self.config], cwd=self.folder,
                         watch=r"all apps ready")
        self.proc.wait_matches(1, timeout=60)
        self.pids = set(self.worker_pids())
        if len(self.pids) != workers:
            raise RuntimeError("%s: herd status lists %d worker pid(s), expected %d" % (name, len(self.pids), workers))

    def status(self):
        out = subprocess.run([self.herd, "status", "--json", "-c", self.config], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=30)
        if out.returncode != 0:
            raise RuntimeError("herd status failed: %s" % out.stderr.decode())
        return json.loads(out.stdout)

    def workers(self):
        """[{pid, requests, ...}] of every worker, wherever the JSON keeps them."""
        found = []

        def walk(node):
            if isinstance(node, dict):
                if "pid" in node and "slot" in node:
                    found.append(node)
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)
        walk(self.status().get("apps"))
        return found

    def worker_pids(self):
        return [int(w["pid"]) for w in self.workers()]

    def requests(self):
        return sum(int(w.get("requests", 0)) for w in self.workers())

    def connect_workers(self):
        """{pid: Conn}: one keep-alive connection to each worker of this host."""
        conns = {}
        for _ in range(20 * len(self.pids)):
            c = Conn(self.addr, 8080)
            _, headers, _ = c.get("/probe/state-seen?key=bench.none")
            pid = int(headers["x-pid"])
            if pid in self.pids and pid not in conns:
                conns[pid] = c
            else:
                c.close()
            if len(conns) == len(self.pids):
                return conns
        raise RuntimeError("%s: reached %d of %d workers" % (self.name, len(conns), len(self.pids)))

    def stop(self):
        self.proc.stop()


def spawn(net, ns, argv, **kw):
    return Proc(net.wrap(ns) + argv, **kw)


def wait_until(pred, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except (OSError, RuntimeError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


# ---- part 1: propagation ----

def propagation(args, hosts, phase, rows):
    """Writes through hosts[0]; returns [(total_ns, {host: last_ns}, first_ns)]."""
    conns = {h.name: h.connect_workers() for h in hosts}
    everyone = {(h.name, pid): c for h in hosts for pid, c in conns[h.name].items()}
    writer = Conn(hosts[0].addr, 8080)
    rng = random.Random(1800 + len(hosts))
    out = []
    try:
        for i in range(args.writes):
            time.sleep(rng.uniform(0, 0.005))
            key = "bench.%s.%d" % (phase, i)
            body = json.dumps({"i": i}).encode()
            t0 = time.monotonic_ns()
            status, _, text = writer.request("PUT", "/probe/state/" + key, body)
            if status != 202:
                raise RuntimeError("PUT %s: %d %r" % (key, status, text))
            seen = collect(everyone, key, cap_s=0.002, timeout_s=10)
            per_host = {}
            for (name, _pid), at in seen.items():
                per_host[name] = max(per_host.get(name, 0), at - t0)
            first = min(seen.values()) - t0
            if first < 0:
                raise RuntimeError("%s: a worker has %s before it was written" % (phase, key))
            total = max(per_host.values())
            out.append((total, per_host, first))
            rows.append(["propagation", phase, i, total, first] + [per_host.get(n, "") for n in HOSTS])
            if (i + 1) % 100 == 0:
                log("  %s: %d/%d writes, median so far %.3f ms" % (
                    phase, i + 1, args.writes, statistics.median(x[0] for x in out) / 1e6))
    finally:
        writer.close()
        for c in everyone.values():
            c.close()
    for h in hosts:
        if set(h.worker_pids()) != h.pids:
            log("  WARNING: %s's worker pids changed during the %s run" % (h.name, phase))
    return out


# ---- part 3: failover time ----

def redis_ping(net, name):
    r = subprocess.run(["redis-cli", "-h", net.address(name)] + ["PING"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=5)
    return r.stdout.strip() == b"PONG"


def ready_for_failover(net):
    """Both replicas in step; every sentinel knows the other two and both replicas."""
    for name in REDIS[1:]:
        info = subprocess.run(["redis-cli", "-h", net.address(name), "INFO", "replication"],
                              stdout=subprocess.PIPE, timeout=5).stdout.decode()
        if "master_link_status:up" not in info:
            return False
    for name in SENTINELS:
        ask = ["redis-cli", "-h", net.address(name), "-p", "26379", "SENTINEL"]
        for what, n in (("sentinels", 2), ("replicas", 2)):
            out = subprocess.run(ask + [what, "herd"], stdout=subprocess.PIPE, timeout=5).stdout.decode()
            if out.split("\n").count("name") < n:
                return False
    return True


def failover_round(args, net, tmp, rows, rnd, ack):
    """One failover: fresh Redis servers and sentinels, one host; returns its times (ms)."""
    tag = "failover%d-ack%d" % (rnd, ack)
    folder = os.path.join(tmp, tag)
    mine = []
    try:
        primary = net.address("r1")
        for name in REDIS:
            data = os.path.join(folder, name)
            os.makedirs(data)
            argv = ["redis-server", "--bind", net.address(name), "--port", "6379", "--save", "",
                    "--appendonly", "no", "--protected-mode", "no", "--dir", data, "--logfile", ""]
            if name != "r1":
                argv += ["--replicaof", primary, "6379"]
            mine.append(spawn(net, name, argv))
            wait_until(lambda: redis_ping(net, name), 20, "redis-server in " + name)
        sentinels = []
        for name in SENTINELS:
            data = os.path.join(folder, name)
            os.makedirs(data)
            conf = os.path.join(data, "sentinel.conf")
            with open(conf, "w") as f:
                f.write(topology.SENTINEL_CONF.format(address=net.address(name), dir=data, primary=primary))
            sentinels.append(spawn(net, name, ["redis-sentinel", conf],
                                   watch=r"\+sdown master herd|\+switch-master herd"))
            mine.append(sentinels[-1])
        wait_until(lambda: ready_for_failover(net), 60, "the sentinels to know each other and both replicas")
        state = {"backend": "redis", "sentinels": ["%s:26379" % net.address(n) for n in SENTINELS],
                 "master_name": "herd", "min_replicas_ack": ack}
        host = Host(args, net, folder, "h1", 2, tag, state=state)
        mine.append(host)
        conn = Conn(host.addr, 8080)
        i, acked, killed_at, first_ok, failed = 0, [], None, None, 0
        deadline = time.monotonic() + 120
        while first_ok is None and time.monotonic() < deadline:
            key = "fo.%d" % i
            sent = time.monotonic()
            status, _, text = conn.request("PUT", "/probe/state-ack/" + key, json.dumps(i).encode())
            if status == 200:
                acked.append(key)
                if killed_at is not None and sent >= killed_at:
                    first_ok = time.monotonic()
            elif status == 503:
                failed += killed_at is not None
            else:
                raise RuntimeError("PUT %s: %d %r" % (key, status, text))
            i += 1
            if killed_at is None and len(acked) >= 50:
                killed_at = time.monotonic()
                mine[0].proc.kill()  # r1: SIGKILL
            time.sleep(0.002)
        conn.close()
        if first_ok is None:
            raise RuntimeError("%s: no write acknowledged within 120 s of the primary's death" % tag)

        def first(word):
            times = [t for s in sentinels for t, m in s.matches if word in m.group(0)]
            return (min(times) - killed_at) * 1000 if times else float("nan")
        # Acknowledged writes the new primary lacks (0 is expected with min_replicas_ack 1).
        new_primary = subprocess.run(
            ["redis-cli", "-h", net.address("s1"), "-p", "26379", "SENTINEL", "get-master-addr-by-name", "herd"],
            stdout=subprocess.PIPE, timeout=5).stdout.decode().split()[0]
        fields = set(subprocess.run(["redis-cli", "-h", new_primary, "HKEYS", "herd:data"], stdout=subprocess.PIPE,
                                    timeout=30).stdout.decode().split())
        out = {"first_ok_ms": (first_ok - killed_at) * 1000, "sdown_ms": first("+sdown"),
               "switch_ms": first("+switch-master"), "failed": failed,
               "lost": sum(1 for k in acked if k not in fields)}
        log("  min_replicas_ack %d, round %d: first acknowledged write %.0f ms after the kill "
            "(+sdown %.0f, +switch-master %.0f), %d failed meanwhile, %d acknowledged lost" % (
                ack, rnd + 1, out["first_ok_ms"], out["sdown_ms"], out["switch_ms"], failed, out["lost"]))
        rows.append(["failover", "min_replicas_ack=%d" % ack, rnd, out["first_ok_ms"], out["sdown_ms"],
                     out["switch_ms"], failed, out["lost"]])
        return out
    finally:
        for p in reversed(mine):
            p.stop()


def ms(ns_values, p):
    return percentile(ns_values, p) / 1e6


# ---- part 2: requests/s through haproxy ----

_SCALE_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url, seconds, connections):
    cmd = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, "--latency", url]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         timeout=seconds + 60).stdout.decode("utf-8", "replace")
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise RuntimeError("wrk gave no totals:\n" + out)
    res = {"requests": int(m.group(1)), "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for q, name in (("50%", "p50_ms"), ("99%", "p99_ms")):
        m = re.search(q + r"\s+([\d.]+)(us|ms|s)", out)
        res[name] = float(m.group(1)) * _SCALE_MS[m.group(2)] if m else float("nan")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["errors"] = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    return res


def throughput(args, net, tmp, hosts, rows):
    lb = net.address("lb")
    sections = []
    for n in (1, 2, 3):
        servers = "\n".join("    server %s %s:8080 check" % (h.name, h.addr) for h in hosts[:n])
        sections.append(SECTION.format(n=n, lb=lb, port=8000 + n, servers=servers))
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(HAPROXY.format(sections="\n".join(sections)))
    haproxy = spawn(net, "lb", ["haproxy", "-db", "-f", cfg])
    try:
        # Every frontend answers, and :8003 reaches every host (herd status request counts).
        def answers(n):
            c = Conn(lb, 8000 + n)
            try:
                return all(c.get("/")[0] == 200 for _ in range(6))
            finally:
                c.close()
        for n in (1, 2, 3):
            wait_until(lambda: answers(n), 30, "haproxy's frontend :%d" % (8000 + n))
        time.sleep(0.5)
        configs = [("1 host", "http://%s:8001/" % lb, 1), ("2 hosts", "http://%s:8002/" % lb, 2),
                   ("3 hosts", "http://%s:8003/" % lb, 3),
                   ("h1 direct, no haproxy", "http://%s:8080/" % hosts[0].addr, 1)]
        results = {name: [] for name, _, _ in configs}
        for r in range(args.rounds):
            for name, url, n in configs:
                wrk(url, 1, 64)  # warm-up
                before = [h.requests() for h in hosts]
                cpu_before = (cpu_seconds(haproxy.pid), sum(cpu_seconds(h.proc.pid) for h in hosts))
                res = wrk(url, args.seconds, 64)
                cpu_after = (cpu_seconds(haproxy.pid), sum(cpu_seconds(h.proc.pid) for h in hosts))
                after = [h.requests() for h in hosts]
                served = [a - b for a, b in zip(after, before)]
                total = sum(served) or 1
                res["shares"] = [s / total for s in served]
                # CPU per request (microseconds) of haproxy and of every herd host's whole tree
                # (master, workers, broker), from /proc (pids are global: no pid namespace).
                res["haproxy_us"] = (cpu_after[0] - cpu_before[0]) / res["requests"] * 1e6
                res["herd_us"] = (cpu_after[1] - cpu_before[1]) / res["requests"] * 1e6
                results[name].append(res)
                log("  round %d, %s: %.0f requests/s, p99 %.2f ms, errors %d, non-2xx %d, shares %s, "
                    "CPU us/request haproxy %.1f herd %.1f" % (
                        r + 1, name, res["rps"], res["p99_ms"], res["errors"], res["non_2xx"],
                        " ".join("%.2f" % s for s in res["shares"]), res["haproxy_us"], res["herd_us"]))
                rows.append(["rps", name, r + 1, "%.1f" % res["rps"], "%.3f" % res["p50_ms"], "%.3f" % res["p99_ms"],
                             res["errors"], res["non_2xx"]] + ["%.3f" % s for s in res["shares"]]
                            + ["%.2f" % res["haproxy_us"], "%.2f" % res["herd_us"]])
        if haproxy.proc.poll() is not None:
            raise RuntimeError("haproxy exited:\n" + "\n".join(haproxy.lines[-20:]))
    finally:
        haproxy.stop()
    return configs, results


# ---- main ----

def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def version(cmd, pattern):
    m = re.search(pattern, benchlib.first_line(cmd))
    return m.group(1) if m else "?"


def commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL).stdout.decode().strip() or "?"
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build-release"))
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--parts", default="state,rps,failover")
    ap.add_argument("--failovers", type=int, default=3)
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    parts = set(args.parts.split(","))
    why = topology.available()
    if why:
        sys.exit("fleet: " + why)
    missing = [p for p in ("haproxy", "redis-server", "redis-cli", "wrk") if not shutil.which(p)]
    if missing:
        sys.exit("fleet: missing " + ", ".join(missing))
    os.makedirs(args.results, exist_ok=True)

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = loadavg()
    tmp = tempfile.mkdtemp(prefix="herd-fleet-")
    net = topology.Topology(["lb"] + HOSTS + ["redis"] + REDIS + SENTINELS)
    rows, report = [], []
    procs = []
    try:
        net.__enter__()
        net.enter("lb")
        redis_addr = net.address("redis")
        procs.append(spawn(net, "redis", ["redis-server", "--bind", redis_addr, "--port", "6379", "--save", "",
                                          "--appendonly", "no", "--protected-mode", "no", "--dir", tmp,
                                          "--logfile", ""]))
        wait_until(lambda: subprocess.run(["redis-cli", "-h", redis_addr, "PING"], stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, timeout=5).stdout.strip() == b"PONG",
                   20, "redis-server")
        versions = "redis-server %s, haproxy %s, wrk %s" % (
            version(["redis-server", "--version"], r"v=(\S+)"), version(["haproxy", "-v"], r"version (\S+)"),
            version(["wrk", "-v"], r"wrk (\S+)"))

        report.append("# herd on several hosts (bench/fleet.py)\n")
        report.append("%s; %s; herd at commit %s (%s); load average before %s; %s\n" % (
            started, machine(), commit(), args.build, load_before, versions))

        if "state" in parts:
            log("part 1: propagation, 1 host x 2 workers")
            h1 = Host(args, net, tmp, "h1", 2, "state1")
            procs.append(h1)
            one = propagation(args, [h1], "1host", rows)
            h1.stop()
            log("part 1: propagation, 3 hosts x 2 workers")
            hosts = [Host(args, net, tmp, n, 2, "state3") for n in HOSTS]
            procs.extend(hosts)
            three = propagation(args, hosts, "3hosts", rows)
            for h in hosts:
                h.stop()
            report.append("\n## 1. State propagation: a write through h1 until every worker has it\n")
            report.append("%d spaced writes per row (PUT /probe/state/KEY on h1; t0 just before sending; "
                          "the last worker's arrival, CLOCK_MONOTONIC), 2 workers per host, one Redis.\n" % args.writes)
            report.append("| hosts | workers | median (ms) | p99 (ms) | max (ms) | first worker, median (ms) | "
                          "last worker per host, median (ms) | per host, p99 (ms) |")
            report.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
            for label, data, names in (("1 (h1)", one, ["h1"]), ("3 (h1, h2, h3)", three, HOSTS)):
                totals = [x[0] for x in data]
                firsts = [x[2] for x in data]
                per_med = ", ".join("%s %.3f" % (n, ms([x[1][n] for x in data], 50)) for n in names)
                per_p99 = ", ".join("%s %.2f" % (n, ms([x[1][n] for x in data], 99)) for n in names)
                report.append("| %s | %d | %.3f | %.2f | %.2f | %.3f | %s | %s |" % (
                    label, 2 * len(names), ms(totals, 50), ms(totals, 99), max(totals) / 1e6,
                    ms(firsts, 50), per_med, per_p99))

        if "rps" in parts:
            log("part 2: requests/s through haproxy, 1 worker per host")
            hosts = [Host(args, net, tmp, n, 1, "rps") for n in HOSTS]
            procs.extend(hosts)
            configs, results = throughput(args, net, tmp, hosts, rows)
            for h in hosts:
                h.stop()
            base = statistics.median(r["rps"] for r in results["1 host"])
            report.append("\n## 2. Requests/s through haproxy (hello at /, 1 worker per host)\n")
            report.append("wrk -t1 -c64 keep-alive from the lb namespace, %d round(s) of %d s (after 1 s of warm-up), "
                          "interleaved. Median (min-max) over the rounds. **Every host, haproxy, Redis and wrk share "
                          "the same %d CPUs: the ratios show the overhead of more hosts on the same CPUs, "
                          "not scaling.**\n" % (args.rounds, args.seconds, os.cpu_count()))
            report.append("| target | requests/s | ratio to 1 host (medians) | ratio to 1 host, round by round | p50 (ms) | p99 (ms) | errors / non-2xx | "
                          "share of requests per host (median) | CPU per request, haproxy / all herd hosts (us) |")
            report.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
            for name, _, n in configs:
                rs = results[name]
                rps = [r["rps"] for r in rs]
                shares = ", ".join("%s %.2f" % (HOSTS[k], statistics.median(r["shares"][k] for r in rs))
                                   for k in range(3) if any(r["shares"][k] for r in rs))
                by_round = [r["rps"] / b["rps"] for r, b in zip(rs, results["1 host"])]
                report.append("| %s | %s | %.2f | %s | %s | %s | %d / %d | %s | %s / %s |" % (
                    name, benchlib.med(rps), statistics.median(rps) / base, benchlib.med(by_round, "%.2f"),
                    benchlib.med([r["p50_ms"] for r in rs], "%.2f"), benchlib.med([r["p99_ms"] for r in rs], "%.2f"),
                    sum(r["errors"] for r in rs), sum(r["non_2xx"] for r in rs), shares,
                    benchlib.med([r["haproxy_us"] for r in rs], "%.1f"), benchlib.med([r["herd_us"] for r in rs], "%.1f")))

        if "failover" in parts:
            log("part 3: failover time, %d round(s) per setting" % args.failovers)
            outcomes = {0: [], 1: []}
            for rnd in range(args.failovers):
                for ack in (0, 1):
                    outcomes[ack].append(failover_round(args, net, tmp, rows, rnd, ack))
            report.append("\n## 3. Failover time: the Redis primary's death to the first acknowledged write\n")
            report.append("A primary, two replicas and three sentinels (quorum 2, `down-after-milliseconds 1000`: "
                          "Sentinel's default is 30000), each in its namespace; one host of 2 workers whose broker "
                          "finds the primary through the sentinels. Writes one after another to the host "
                          "(PUT /probe/state-ack/KEY, answered once the broker has answered the write; 2 ms apart), "
                          "SIGKILL of the primary, then the time until a write sent after it is acknowledged (200). "
                          "The sentinels' log lines give when the first one saw the primary down (+sdown) and "
                          "announced the new one (+switch-master); herd's share is from there. %d round(s) per "
                          "row, median (min-max), ms.\n" % args.failovers)
            report.append("| min_replicas_ack | death to first acknowledged write | to +sdown | to +switch-master | "
                          "+switch-master to first acknowledged write (herd) | writes failed meanwhile | "
                          "acknowledged writes lost |")
            report.append("| --- | --- | --- | --- | --- | --- | --- |")
            for ack, rs in outcomes.items():
                report.append("| %d | %s | %s | %s | %s | %s | %d |" % (
                    ack, benchlib.med([r["first_ok_ms"] for r in rs], "%.0f"),
                    benchlib.med([r["sdown_ms"] for r in rs], "%.0f"),
                    benchlib.med([r["switch_ms"] for r in rs], "%.0f"),
                    benchlib.med([r["first_ok_ms"] - r["switch_ms"] for r in rs], "%.0f"),
                    benchlib.med([r["failed"] for r in rs], "%.0f"), sum(r["lost"] for r in rs)))
        report.append("load average after: %s" % loadavg())
    finally:
        for p in reversed(procs):
            try:
                p.stop()
            except Exception as e:  # keep stopping the others
                log("stopping: %s" % e)
        net.close()
        shutil.rmtree(tmp, True)

    text = "\n".join(report) + "\n"
    print(text)
    with open(os.path.join(args.results, "fleet.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.results, "fleet.csv"), "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["part", "phase_or_target", "i_or_round", "total_ns_or_rps", "first_ns_or_p50_ms",
                      "h1_ns_or_p99_ms", "h2_ns_or_errors", "h3_ns_or_non2xx", "rps: share_h1", "share_h2", "share_h3", "haproxy_us_per_request", "herd_us_per_request"])
        out.writerows(rows)
    log("results: %s" % os.path.relpath(os.path.join(args.results, "fleet.md"), ROOT))


if __name__ == "__main__":
    main()
