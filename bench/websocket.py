#!/usr/bin/env python3
"""WebSockets: herd's probe plugin (/ws/echo, /ws/room) next to a Node.js cluster with the `ws`
npm package (bench/peers/node-ws.js: /echo, /room, the cluster primary relaying room messages
between workers over IPC), both with 2 workers, on 127.0.0.1. The load is bench/peers/ws_load
(C, epoll, one thread; bench/websocket.sh builds it with cc -O2).

Three scenarios, a fresh server per run, servers interleaved round by round:
  idle    N idle sockets (10,000) to the echo path: memory per socket = (sum of the RSS of
          every process of the server's tree with N sockets open - with 0 sockets) / N.
          herd's tree is its master, its workers and its broker; Node's its primary and
          workers. Before the 0-socket sample, 100 sockets are opened and closed (one-time
          lazy set-up is not counted per socket); the N-socket sample is taken 2 s after the
          last one opened. Pss and the sockets each process holds are recorded too.
  echo    1,000 sockets, each sends a 32-byte text message, waits for its echo, repeats: 1 s of
          warm-up, then SECONDS measured: round trips per second, p50/p99 latency.
  fanout  10,000 sockets in one room; socket 0 sends one message to the room, COUNT times (0.3 s
          apart); for each, the time from the send until the last of the 10,000 sockets (the
          sender included) has it. Median over the messages, then over rounds.
The client's own CPU time (getrusage) over the measured echo run and over each fan-out wait is
recorded: a share near 1 (one CPU) means the client, not the server, set the pace.
Targets (the issue): idle ≤ 4 KB per socket and ≤ 0.25 × Node's; echo round trips ≥ 2 × Node's.

A benchmark: it passes or fails nothing. Results: bench/results/websocket.json, websocket.md.

usage: bench/websocket.py [--rounds 3] [--idle 10000] [--echo-sockets 1000] [--seconds 10]
                          [--fanout 10000] [--messages 7] [--parts idle,echo,fanout] [--quick]
                          [--build DIR] [--load PATH]
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ROOT, start_herd, first_line, med, Proc, free_port, log, pin_tree, process_tree, smaps_rollup, wait_port)  # noqa: E402

NPM = os.path.join(ROOT, "bench", ".npm")
PARTS = ["idle", "echo", "fanout"]


class Herd:
    name = "herd"
    echo_path, room_path = "/ws/echo", "/ws/room?room=bench"

    def __init__(self, build, workers=2):
        self.build, self.workers = build, workers

    def start(self, tmp):
        plugin = {"mount": "/", "path": os.path.join(self.build, "plugins", "libprobe.so")}
        self.proc, self.port = start_herd(self.build, tmp, self.workers, plugin)

    def stop(self):
        self.proc.stop()


class Node:
    name = "node ws"
    echo_path, room_path = "/echo", "/room?room=bench"

    def __init__(self, workers=2):
        self.workers = workers

    def start(self, tmp):
        self.port = free_port()
        env = dict(os.environ, PORT=str(self.port), WORKERS=str(self.workers),
                   NODE_PATH=os.path.join(NPM, "node_modules"))
        self.proc = Proc(["node", os.path.join(ROOT, "bench", "peers", "node-ws.js")], env=env, watch=r"ready (\d+)")
        self.proc.wait_matches(self.workers)

    def stop(self):
        self.proc.stop()


def tree_memory(root):
    """Sum of Rss and Pss (kB) over root's tree, and the TCP sockets each process holds."""
    rss = pss = 0
    procs = []
    for pid in process_tree(root):
        try:
            m = smaps_rollup(pid)
            with open("/proc/%d/comm" % pid) as f:
                comm = f.read().strip()
            sockets = sum(1 for fd in os.listdir("/proc/%d/fd" % pid)
                          if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"))
        except OSError:
            continue
        rss += m["rss_kb"]
        pss += m["pss_kb"]
        procs.append({"pid": pid, "comm": comm, "rss_kb": m["rss_kb"], "pss_kb": m["pss_kb"], "sockets": sockets})
    return {"rss_kb": rss, "pss_kb": pss, "processes": procs}


class Load:
    """bench/peers/ws_load, on the CPUs `cpus` if given."""

    def __init__(self, path, cpus, sources):
        self.path, self.cpus, self.sources = path, cpus, sources

    def cmd(self, port, *args):
        cmd = [self.path, "-s", str(self.sources), "127.0.0.1", str(port)] + [str(a) for a in args]
        if self.cpus:
            cmd = ["taskset", "-c", ",".join(str(c) for c in sorted(self.cpus))] + cmd
        return cmd

    def run(self, port, *args, timeout=300):
        p = subprocess.run(self.cmd(port, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("ws_load %s: exit %d: %s" % (args, p.returncode, p.stderr.decode()[-2000:]))
        return json.loads(p.stdout.decode().strip().splitlines()[-1])

    def hold(self, port, n, path, timeout=120):
        """Opens n idle sockets; returns (process, its first JSON line) once all are open."""
        p = subprocess.Popen(self.cmd(port, "idle", n, path), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        line = p.stdout.readline()  # printed once every socket is open (or failed)
        if not line:
            p.kill()
            raise RuntimeError("ws_load idle: no output: %s" % p.stderr.read().decode()[-2000:])
        return p, json.loads(line)

    @staticmethod
    def release(p):
        p.stdin.close()  # the client closes its sockets and exits
        try:
            out = p.stdout.read().decode().strip()
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            out = ""
        return json.loads(out.splitlines()[-1]) if out else {}


def run_idle(server, load, n, tmp, server_cpus):
    server.start(tmp)
    try:
        if server_cpus:
            pin_tree(server.proc.pid, server_cpus)
        p, _ = load.hold(server.port, 100, server.echo_path)  # warm-up: 100 sockets, then none
        load.release(p)
        time.sleep(1.5)
        before = tree_memory(server.proc.pid)
        p, opened = load.hold(server.port, n, server.echo_path)
        try:
            time.sleep(2)
            after = tree_memory(server.proc.pid)
        finally:
            closed = load.release(p)
        open_n = opened["open"]
        per = (after["rss_kb"] - before["rss_kb"]) * 1024 / max(open_n, 1)
        per_pss = (after["pss_kb"] - before["pss_kb"]) * 1024 / max(open_n, 1)
        return {"sockets": open_n, "errors": opened["errors"] + closed.get("errors", 0),
                "closed_by_server": closed.get("closed_by_server", 0), "open_seconds": opened["open_seconds"],
                "rss_kb_0": before["rss_kb"], "rss_kb_n": after["rss_kb"], "pss_kb_0": before["pss_kb"],
                "pss_kb_n": after["pss_kb"], "bytes_per_socket": per, "pss_bytes_per_socket": per_pss,
                "processes_0": before["processes"], "processes_n": after["processes"]}
    finally:
        server.stop()


def run_echo(server, load, n, seconds, tmp, server_cpus):
    server.start(tmp)
    try:
        if server_cpus:
            pin_tree(server.proc.pid, server_cpus)
        return load.run(server.port, "echo", n, seconds, 32, server.echo_path, timeout=seconds + 120)
    finally:
        server.stop()


def run_fanout(server, load, n, messages, tmp, server_cpus):
    server.start(tmp)
    try:
        if server_cpus:
            pin_tree(server.proc.pid, server_cpus)
        return load.run(server.port, "fanout", n, server.room_path, messages, timeout=300)
    finally:
        server.stop()


def versions():
    try:
        with open(os.path.join(NPM, "node_modules", "ws", "package.json")) as f:
            ws = json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        ws = "?"
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"node": first_line(["node", "--version"]), "ws": ws, "cpu": cpu, "nproc": os.cpu_count(),
            "commit": first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
            "kernel": os.uname().release}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=10000, help="idle sockets")
    ap.add_argument("--echo-sockets", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10, help="measured echo seconds (after 1 s of warm-up)")
    ap.add_argument("--fanout", type=int, default=10000, help="sockets in the room")
    ap.add_argument("--messages", type=int, default=7, help="messages fanned out per fanout run")
    ap.add_argument("--sources", type=int, default=1, help="loopback source addresses for the client")
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--quick", action="store_true", help="1 round, 2 s of echo, 2,000 sockets: a smoke run")
    ap.add_argument("--build", default=os.environ.get("HERD_BUILD_DIR", os.path.join(ROOT, "build-release")))
    ap.add_argument("--load", default=os.path.join(ROOT, "bench", "results", "ws_load"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.idle, args.fanout, args.messages = 1, 2, 2000, 2000, 3
    parts = [p for p in args.parts.split(",") if p]
    if any(p not in PARTS for p in parts):
        ap.error("--parts: expected some of %s" % ",".join(PARTS))
    build = os.path.abspath(args.build)
    for need in (os.path.join(build, "server", "herd"), os.path.join(build, "plugins", "libprobe.so"),
                 os.path.join(NPM, "node_modules", "ws"), args.load):
        if not os.path.exists(need):
            raise SystemExit("websocket: %s is missing (bench/websocket.sh builds herd and ws_load and installs ws)"
                             % need)
    if shutil.which("node") is None:
        raise SystemExit("websocket: node is not installed")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if nofile < max(args.idle, args.fanout) + 64:
        raise SystemExit("websocket: RLIMIT_NOFILE is %d, too low for %d sockets" % (nofile, max(args.idle, args.fanout)))
    os.makedirs(args.out, exist_ok=True)

    # The client on its own CPU when there are enough (4 or more); on fewer, everything shares.
    ncpu = os.cpu_count()
    client_cpus = server_cpus = None
    if ncpu >= 4:
        client_cpus, server_cpus = {ncpu - 1}, set(range(ncpu - 1))
    load = Load(args.load, client_cpus, args.sources)

    servers = [Herd(build), Node()]
    results = {p: {s.name: [] for s in servers} for p in parts}
    started = time.time()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="herd-bench-ws-") as tmp:
        for r in range(args.rounds):
            for part in parts:
                for s in servers:
                    if part == "idle":
                        res = run_idle(s, load, args.idle, tmp, server_cpus)
                        log("round %d/%d  idle    %-8s %6d sockets  %7.0f B/socket RSS (%7.0f Pss)  "
                            "RSS %d -> %d kB  errors %d" % (
                                r + 1, args.rounds, s.name, res["sockets"], res["bytes_per_socket"],
                                res["pss_bytes_per_socket"], res["rss_kb_0"], res["rss_kb_n"], res["errors"]))
                    elif part == "echo":
                        res = run_echo(s, load, args.echo_sockets, args.seconds, tmp, server_cpus)
                        log("round %d/%d  echo    %-8s %6d sockets  %9.0f round trips/s  p50 %.2f ms  p99 %.2f ms  "
                            "client CPU %.0f%%  errors %d" % (r + 1, args.rounds, s.name, res["sockets"],
                                                             res["per_second"], res["p50_ms"], res["p99_ms"],
                                                             100 * res["client_cpu_share"], res["errors"]))
                    else:
                        res = run_fanout(s, load, args.fanout, args.messages, tmp, server_cpus)
                        log("round %d/%d  fanout  %-8s %6d sockets  last %s ms  (median %.1f ms, first %.1f ms, "
                            "client CPU %s ms)  errors %d" % (
                                r + 1, args.rounds, s.name, res["sockets"],
                                ", ".join("%.0f" % x for x in res["last_ms"]), res["median_last_ms"],
                                res["median_first_ms"], ", ".join("%.0f" % x for x in res["client_cpu_ms"]),
                                res["errors"]))
                    res["round"] = r + 1
                    res["load_avg"] = os.getloadavg()[0]
                    results[part][s.name].append(res)
    meta = dict(versions(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), rounds=args.rounds,
                idle_sockets=args.idle, echo_sockets=args.echo_sockets, echo_seconds=args.seconds,
                fanout_sockets=args.fanout, messages=args.messages, sources=args.sources,
                client_cpus=sorted(client_cpus) if client_cpus else "shared with the servers",
                nofile=nofile, load_avg_start=load_before, load_avg_end=os.getloadavg()[0],
                minutes=(time.time() - started) / 60, out=args.out)
    with open(os.path.join(args.out, "websocket.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    report(meta, results, parts)


def ratio_cells(h, n):
    pairs = [(a, b) for a, b in zip(h, n) if b]
    whole = statistics.median(h) / statistics.median(n) if pairs else float("nan")
    return whole, "%.2f (%s)" % (whole, ", ".join("%.2f" % (a / b) for a, b in pairs))


def report(meta, results, parts):
    out = ["# WebSockets: herd and Node.js + ws (bench/websocket.py, %s)" % meta["date"], "",
           "Commit %s. %d CPUs (%s), kernel %s; client %s. Node %s, ws %s. Load average %.1f at the start, %.1f at "
           "the end; %d round(s), %.1f min. Median (min–max) over rounds." % (
               meta["commit"], meta["nproc"], meta["cpu"], meta["kernel"],
               "on CPU %s" % meta["client_cpus"] if isinstance(meta["client_cpus"], list) else meta["client_cpus"],
               meta["node"], meta["ws"], meta["load_avg_start"], meta["load_avg_end"], meta["rounds"],
               meta["minutes"]), ""]
    verdicts = []
    H, N = "herd", "node ws"
    if "idle" in parts:
        out += ["## %d idle sockets: memory per socket" % meta["idle_sockets"], "",
                "| server | sockets | RSS 0 → N sockets, kB | bytes per socket (RSS) | bytes per socket (Pss) | errors |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name in (H, N):
            rs = results["idle"][name]
            out.append("| %s | %s | %s → %s | %s | %s | %d |" % (
                name, med([r["sockets"] for r in rs]), med([r["rss_kb_0"] for r in rs]),
                med([r["rss_kb_n"] for r in rs]), med([r["bytes_per_socket"] for r in rs]),
                med([r["pss_bytes_per_socket"] for r in rs]), sum(r["errors"] for r in rs)))
        h = [r["bytes_per_socket"] for r in results["idle"][H]]
        n = [r["bytes_per_socket"] for r in results["idle"][N]]
        whole, cell = ratio_cells(h, n)
        out += ["", "herd / node, bytes per socket: %s" % cell, ""]
        last = results["idle"][H][-1]["processes_n"]
        out += ["herd's processes with the sockets open (last round): " + ", ".join(
            "%s %d kB RSS, %d sockets" % (p["comm"], p["rss_kb"], p["sockets"]) for p in last), ""]
        hm = statistics.median(h)
        verdicts.append("- idle: herd %.0f B per socket (target ≤ 4096: %s), %.2f × Node's (target ≤ 0.25: %s)" % (
            hm, "met" if hm <= 4096 else "missed", whole, "met" if whole <= 0.25 else "missed"))
    if "echo" in parts:
        out += ["## Echo, %d sockets, 32-byte messages, %g s" % (meta["echo_sockets"], meta["echo_seconds"]), "",
                "| server | round trips/s | p50 ms | p99 ms | max ms | the client's CPU share | errors |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name in (H, N):
            rs = results["echo"][name]
            out.append("| %s | %s | %s | %s | %s | %s | %d |" % (
                name, med([r["per_second"] for r in rs]), med([r["p50_ms"] for r in rs], "%.2f"),
                med([r["p99_ms"] for r in rs], "%.2f"), med([r["max_ms"] for r in rs], "%.1f"),
                med([r.get("client_cpu_share", float("nan")) for r in rs], "%.2f"), sum(r["errors"] for r in rs)))
        whole, cell = ratio_cells([r["per_second"] for r in results["echo"][H]],
                                  [r["per_second"] for r in results["echo"][N]])
        _, p99 = ratio_cells([r["p99_ms"] for r in results["echo"][H]], [r["p99_ms"] for r in results["echo"][N]])
        out += ["", "herd / node: round trips/s %s; p99 %s" % (cell, p99), ""]
        verdicts.append("- echo: herd %.2f × Node's round trips/s (target ≥ 2: %s)" % (
            whole, "met" if whole >= 2 else "missed"))
    if "fanout" in parts:
        out += ["## One message to %d sockets of one room (%d messages per run)" % (
            meta["fanout_sockets"], meta["messages"]), "",
                "| server | until the last socket has it, ms (median of a run) | until the first, ms | "
                "the client's CPU meanwhile, ms | every socket reached | errors |", "| --- | ---: | ---: | ---: | --- | ---: |"]
        for name in (H, N):
            rs = results["fanout"][name]
            complete = all(all(x == r["sockets"] for x in r["reached"]) for r in rs)
            out.append("| %s | %s | %s | %s | %s | %d |" % (
                name, med([r["median_last_ms"] for r in rs], "%.1f"), med([r["median_first_ms"] for r in rs], "%.2f"),
                med([statistics.median(r["client_cpu_ms"]) if r.get("client_cpu_ms") else float("nan") for r in rs],
                    "%.1f"), "yes" if complete else "no", sum(r["errors"] for r in rs)))
        _, cell = ratio_cells([r["median_last_ms"] for r in results["fanout"][H]],
                              [r["median_last_ms"] for r in results["fanout"][N]])
        out += ["", "herd / node, time until the last socket: %s" % cell, ""]
    out += ["## Against the targets", ""] + verdicts
    text = "\n".join(out) + "\n"
    with open(os.path.join(meta["out"], "websocket.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
