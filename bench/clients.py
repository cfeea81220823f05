#!/usr/bin/env python3
"""Handlers that call a backend: herd's asynchronous clients next to a Node.js cluster using
what Node users pick from npm, on 127.0.0.1.

Every request does one call to a backend the script starts for itself:
  redis  one GET of a random key of 10,000 (redis-server, no persistence)
  pg     SELECT name FROM items WHERE id = $1, a random id of 10,000 (a private PostgreSQL, the
         table keyed by id)
  http   one GET of a small static body from a local nginx (1 worker, keep-alive)
by three servers of 2 workers each:
  herd async     the clients_bench plugin's /redis, /pg, /http: ctx.redis(), ctx.postgres(),
                 ctx.http() awaited in a coroutine (herd::serve_coroutine)
  herd blocking  the same plugin's /blocking/...: hiredis redisCommand, libpq PQexecParams and a
                 blocking keep-alive socket inside handle(), one connection per worker; the
                 worker waits in each call, for contrast
  node cluster   bench/peers/node-clients.js: cluster, http, ioredis, pg (a Pool at its
                 defaults), http.Agent({keepAlive: true}), from bench/.npm
wrk -t1 -c64 --latency (a Lua script picks the key or id). For each run: requests/s, p50 and p99
latency, CPU per request of the server's whole process tree and of the backend's (utime + stime
from /proc, before and after), and the TCP connections the server's processes hold to the
backend (established sockets in /proc/net/tcp whose inode is one of the server tree's open
descriptors, sampled in the middle of the run). A fresh server per run, 1 s of warm-up;
configurations interleaved round by round; the table gives the median and min-max over rounds.

A benchmark: it passes or fails nothing. Results: bench/results/clients.md, clients.csv.

usage: bench/clients.py [--rounds 3] [--seconds 5] [--warmup 1] [--connections 64]
                        [--kinds redis,pg,http] [--quick] [--build DIR]
"""
import argparse
import csv
import glob
import json
import os
import pwd
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, start_herd, first_line, med, Proc, cpu_seconds, free_port, log, nginx_command, process_tree, wait_port, wrk)  # noqa: E402

KINDS = ["redis", "pg", "http"]
ROWS = 10000
NPM = os.path.join(ROOT, "bench", ".npm")


# The backends ---------------------------------------------------------------------------------

class Redis:
    def start(self, tmp):
        self.port = free_port()
        self.proc = Proc(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", tmp])
        wait_port(self.port, self.proc.proc)
        args = ["redis-cli", "-p", str(self.port), "MSET"]
        for i in range(1, ROWS + 1):
            args += ["k%d" % i, "value-%d" % i]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        self.url = "redis://127.0.0.1:%d/0" % self.port

    def stop(self):
        self.proc.stop()


class Postgres:
    """As tests/integration/pg_server.py: initdb and postgres from /usr/lib/postgresql/*/bin, as
    the `postgres` user when root; TCP with a password, psql through the Unix socket."""

    def start(self, tmp):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not found:
            raise RuntimeError("no /usr/lib/postgresql/*/bin/postgres: install Debian's postgresql")
        bindir = os.path.dirname(found[-1])
        self.folder = os.path.join(tmp, "pg")
        os.makedirs(self.folder)
        user = None
        if os.geteuid() == 0:
            user = "postgres"
            entry = pwd.getpwnam(user)
            os.chmod(tmp, 0o755)  # postgres must reach its folder inside ours
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        password = secrets.token_hex(8)
        pwfile = os.path.join(self.folder, "pw")
        with open(pwfile, "w") as f:
            f.write(password + "\n")
        if user:
            os.chown(pwfile, pwd.getpwnam(user).pw_uid, -1)
        subprocess.run([os.path.join(bindir, "initdb"), "-D", os.path.join(self.folder, "data"), "-U", "app",
                        "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile", pwfile, "-E", "UTF8",
                        "--no-sync"], user=user, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.port = free_port()
        self.proc = Proc([os.path.join(bindir, "postgres"), "-D", os.path.join(self.folder, "data"),
                          "-p", str(self.port), "-k", self.folder, "-c", "listen_addresses=127.0.0.1",
                          "-c", "fsync=off"], user=user)
        deadline = time.monotonic() + 30
        while self.psql("SELECT 1") != "1":
            if time.monotonic() > deadline or self.proc.proc.poll() is not None:
                raise RuntimeError("postgres did not answer:\n" + "\n".join(self.proc.lines[-20:]))
            time.sleep(0.1)
        self.psql("CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL); "
                  "INSERT INTO items SELECT g, 'name-' || g FROM generate_series(1, %d) g; ANALYZE items" % ROWS)
        self.url = "postgresql://app:%s@127.0.0.1:%d/postgres" % (password, self.port)

    def psql(self, sql):
        p = subprocess.run(["psql", "-h", self.folder, "-p", str(self.port), "-U", "app", "-d", "postgres",
                            "-AtXq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return p.stdout.decode().strip()

    def stop(self):
        self.proc.stop(sig=2)  # a fast shutdown


class Nginx:
    def start(self, tmp):
        self.folder = os.path.join(tmp, "nginx")
        os.makedirs(self.folder)
        self.port = free_port()
        self.proc = Proc(nginx_command(self.folder, self.port, workers=1))
        wait_port(self.port, self.proc.proc)
        self.url = "http://127.0.0.1:%d/" % self.port

    def stop(self):
        self.proc.stop()


# The servers ----------------------------------------------------------------------------------

class Herd:
    def __init__(self, build, name, prefix, workers=2):
        self.build, self.name, self.prefix, self.workers = build, name, prefix, workers

    def start(self, tmp, backends):
        plugin = {"mount": "/", "path": os.path.join(self.build, "plugins", "libclients_bench.so"),
                  "config": {"redis": backends["redis"].url, "postgres": backends["pg"].url,
                             "upstream": backends["http"].url}}
        self.proc, self.port = start_herd(self.build, tmp, self.workers, plugin)

    def stop(self):
        self.proc.stop()


class Node:
    def __init__(self, workers=2):
        self.name, self.prefix, self.workers = "node cluster", "", workers

    def start(self, tmp, backends):
        self.port = free_port()
        env = dict(os.environ, PORT=str(self.port), WORKERS=str(self.workers), REDIS=backends["redis"].url,
                   POSTGRES=backends["pg"].url, UPSTREAM=backends["http"].url,
                   NODE_PATH=os.path.join(NPM, "node_modules"))
        self.proc = Proc(["node", os.path.join(ROOT, "bench", "peers", "node-clients.js")], env=env,
                         watch=r"ready (\d+)")
        self.proc.wait_matches(self.workers)

    def stop(self):
        self.proc.stop()


# Measuring ------------------------------------------------------------------------------------

def connections_to(root, port):
    """Established TCP connections to 127.0.0.1:port held by root's process tree: the sockets
    of /proc/net/tcp whose inode is an open descriptor of one of its processes (a socket
    shared by several processes counts once)."""
    inodes = set()
    for pid in process_tree(root):
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    if fields[3] == "01" and remote_port == port and int(fields[9]) in inodes:
                        count += 1
        except OSError:
            pass
    return count


def wrk_script(tmp, path):
    """A wrk Lua script asking for path with a random key or id from 1 to ROWS."""
    script = os.path.join(tmp, "wrk-%s.lua" % path.strip("/").replace("/", "-").replace("?", "-").replace("=", ""))
    with open(script, "w") as f:
        f.write('math.randomseed(%d)\nrequest = function()\n  return wrk.format(nil, "%s" .. math.random(%d))\nend\n'
                % (os.getpid(), path, ROWS))
    return script


def one_run(server, kind, backends, tmp, args):
    backend = backends[kind]
    path = server.prefix + {"redis": "/redis?key=k", "pg": "/pg?id=", "http": "/http"}[kind]
    script = None if kind == "http" else wrk_script(tmp, path)
    server.start(tmp, backends)
    try:
        if args.warmup > 0:
            wrk(server.port, args.warmup, connections=args.connections, path=path, script=script)
        held = []
        sampler = threading.Timer(args.seconds / 2, lambda: held.append(connections_to(server.proc.pid, backend.port)))
        cpu0, bcpu0 = cpu_seconds(server.proc.pid), cpu_seconds(backend.proc.pid)
        sampler.start()
        res = wrk(server.port, args.seconds, connections=args.connections, path=path, script=script)
        sampler.join()
        cpu, bcpu = cpu_seconds(server.proc.pid) - cpu0, cpu_seconds(backend.proc.pid) - bcpu0
        n = max(res["requests"], 1)
        res["cpu_us_per_req"] = cpu / n * 1e6
        res["backend_cpu_us_per_req"] = bcpu / n * 1e6
        res["connections"] = held[0] if held else float("nan")
        return res
    finally:
        server.stop()


def versions():

    def npm_version(name):
        try:
            with open(os.path.join(NPM, "node_modules", name, "package.json")) as f:
                return json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            return "?"
    pg = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    redis = first_line(["redis-server", "--version"])  # "Redis server v=7.0.15 sha=..."
    redis = "Redis " + redis.split("v=", 1)[1].split()[0] if "v=" in redis else redis
    return {"redis": redis,
            "postgres": first_line([pg[-1], "--version"]).replace("postgres (PostgreSQL)", "PostgreSQL") if pg else "?",
            "nginx": first_line(["nginx", "-v"]).replace("nginx version: ", ""), "node": first_line(["node", "--version"]),
            "ioredis": npm_version("ioredis"), "pg": npm_version("pg"),
            "commit": first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--kinds", default=",".join(KINDS), help="which backends, of redis,pg,http")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s, no warm-up: a smoke run")
    ap.add_argument("--build", default=os.environ.get("HERD_BUILD_DIR", os.path.join(ROOT, "build-release")))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 2, 0
    kinds = [k for k in args.kinds.split(",") if k]
    if any(k not in KINDS for k in kinds):
        ap.error("--kinds: expected some of %s, got %s" % (",".join(KINDS), args.kinds))
    build = os.path.abspath(args.build)
    for need in (os.path.join(build, "server", "herd"), os.path.join(build, "plugins", "libclients_bench.so"),
                 os.path.join(NPM, "node_modules", "ioredis"), os.path.join(NPM, "node_modules", "pg")):
        if not os.path.exists(need):
            raise SystemExit("clients: %s is missing (bench/clients.sh builds herd and installs the npm packages)" % need)
    for tool in ("wrk", "nginx", "redis-server", "redis-cli", "psql", "node"):
        if shutil.which(tool) is None:
            raise SystemExit("clients: %s is not installed (bench/clients.sh installs what is missing)" % tool)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    os.makedirs(args.out, exist_ok=True)

    servers = [Herd(build, "herd async", ""), Herd(build, "herd blocking", "/blocking"), Node()]
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "backend_cpu_us_per_req", "connections")
    summary = {k: {s.name: {x: [] for x in keys + ("errors",)} for s in servers} for k in kinds}
    rows = []
    started = time.time()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="herd-bench-clients-") as tmp:
        backends = {"redis": Redis(), "pg": Postgres(), "http": Nginx()}
        try:
            for b in backends.values():
                b.start(tmp)
            for r in range(args.rounds):
                for kind in kinds:
                    for s in servers:
                        res = one_run(s, kind, backends, tmp, args)
                        errors = res["socket_errors"] + res["non_2xx"]
                        log("round %d/%d  %-5s %-13s %8.0f req/s  p50 %6.2f ms  p99 %7.2f ms  %6.1f us CPU/req  "
                            "backend %6.1f us/req  %3s conns  errors %d" % (
                                r + 1, args.rounds, kind, s.name, res["rps"], res["p50_ms"], res["p99_ms"],
                                res["cpu_us_per_req"], res["backend_cpu_us_per_req"], res["connections"], errors))
                        rows.append(dict(round=r + 1, backend=kind, server=s.name, errors=errors,
                                         **{k: res[k] for k in keys}))
                        for k in keys:
                            summary[kind][s.name][k].append(res[k])
                        summary[kind][s.name]["errors"].append(errors)
        finally:
            for b in backends.values():
                if hasattr(b, "proc"):
                    b.stop()
    write_results(args, rows, summary, servers, kinds, started, load_before)


def write_results(args, rows, summary, servers, kinds, started, load_before):
    with open(os.path.join(args.out, "clients.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    v = versions()
    names = {"redis": "Redis GET", "pg": "PostgreSQL SELECT by id", "http": "HTTP GET to nginx"}
    out = ["# Handlers that call a backend (bench/clients.py, %s)" % time.strftime("%Y-%m-%d %H:%M"), "",
           "Commit %s. %d CPUs (shared), everything on 127.0.0.1: wrk -t1 -c%d --latency, the servers (2 workers "
           "each) and the backends on the same CPUs. Load average %.1f at the start, %.1f at the end. "
           "%d round(s) of %d s (warm-up %d s, a fresh server per run), %.1f min. Median (min–max) over rounds." % (
               v["commit"], os.cpu_count(), args.connections, load_before, os.getloadavg()[0], args.rounds,
               args.seconds, args.warmup, (time.time() - started) / 60), "",
           "Backends: %s (no persistence), %s (fsync off), %s (1 worker, a 13-byte body). Node %s with ioredis %s, "
           "pg %s (Pool at its defaults), http.Agent({keepAlive: true}). CPU per request: utime + stime of the whole "
           "process tree over the measured run, divided by the requests wrk completed. Connections: established "
           "TCP connections from the server's processes to the backend, in the middle of the run." % (
               v["redis"], v["postgres"], v["nginx"], v["node"], v["ioredis"], v["pg"]), "",
           "| backend | server | requests/s | p50 ms | p99 ms | server CPU µs/request | backend CPU µs/request "
           "| connections to the backend | errors |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for kind in kinds:
        for s in servers:
            m = summary[kind][s.name]
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                names[kind], s.name, med(m["rps"]), med(m["p50_ms"], "%.2f"), med(m["p99_ms"], "%.2f"),
                med(m["cpu_us_per_req"], "%.1f"), med(m["backend_cpu_us_per_req"], "%.1f"), med(m["connections"]),
                sum(m["errors"])))
    out += ["", "## herd / node, against the targets", "",
            "Ratios of the medians (round by round in brackets). Targets: requests/s ≥ 2, CPU per request ≤ 0.5, "
            "p99 ≤ 1.", "",
            "| backend | herd | requests/s | server CPU per request | p99 |",
            "| --- | --- | ---: | ---: | ---: |"]
    verdicts = []
    for kind in kinds:
        n = summary[kind]["node cluster"]
        for name in ("herd async", "herd blocking"):
            h = summary[kind][name]
            cells = []
            for k in ("rps", "cpu_us_per_req", "p99_ms"):
                pairs = [(a, b) for a, b in zip(h[k], n[k]) if b and a == a and b == b]
                whole = statistics.median(h[k]) / statistics.median(n[k]) if pairs else float("nan")
                cells.append("%.2f (%s)" % (whole, ", ".join("%.2f" % (a / b) for a, b in pairs)))
            out.append("| %s | %s | %s | %s | %s |" % (names[kind], name, *cells))
            if name == "herd async":
                rps = statistics.median(h["rps"]) / statistics.median(n["rps"])
                cpu = statistics.median(h["cpu_us_per_req"]) / statistics.median(n["cpu_us_per_req"])
                p99 = statistics.median(h["p99_ms"]) / statistics.median(n["p99_ms"])
                missed = [t for t, ok in (("requests/s ≥ 2 × node (%.2f)" % rps, rps >= 2),
                                          ("CPU per request ≤ 0.5 × node (%.2f)" % cpu, cpu <= 0.5),
                                          ("p99 ≤ node's (%.2f)" % p99, p99 <= 1)) if not ok]
                verdicts.append("- %s: %s" % (names[kind], "all three targets met" if not missed else
                                              "missed: " + "; ".join(missed)))
    out += [""] + verdicts
    text = "\n".join(out) + "\n"
    with open(os.path.join(args.out, "clients.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
