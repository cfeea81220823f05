#!/usr/bin/env python3
"""Failed requests per upgrade of the server binary, under load: herd next to nginx.

The load is wrk -t1 -c64 (--connections; keep-alive; then, with --close, a new connection per request:
-H 'Connection: close') on 127.0.0.1 with tests/integration/wrk_count.lua, which counts the
responses by status class and prints wrk's error counts (connect, read, write, timeout) in a
RESULT line when wrk stops (SIGINT). failed = those socket errors + non-2xx responses.

During the load, after --warmup s, each server gets --upgrades binary upgrades one after the
other; an upgrade counts once the old master has exited, then --pause s pass before the next
one; --tail s after the last one, wrk is stopped.

- herd (hello plugin on "/", 2 workers): `herd upgrade -c CONFIG` (the same binary). Its
  duration is from the command's start to its return (the old workers have stopped
  accepting); the time until the old master has exited is reported too, and the "in N ms" the
  command prints.
- nginx (`return 200 "Hello, World!"`, worker_processes 2, its own prefix, config, pid file and
  error log in a temporary folder, access_log off, keepalive_requests raised as in
  bench/peers.py), nginx's documented sequence (https://nginx.org/en/docs/control.html,
  "Upgrading Executable on the Fly"): USR2 to the master (it starts the same binary,
  /usr/sbin/nginx by its absolute path, as a new master; the pid file becomes .oldbin), wait
  until the new pid file names a new master with its 2 workers, WINCH to the old master (its
  workers shut down gracefully), wait until it has no worker left, QUIT to the old master, wait
  until it has exited. Its duration: USR2 to the old master gone. nginx runs with `daemon on`:
  with `daemon off` it ignores USR2 while the process that started it is alive ("the changing
  binary signal is ignored").

The old master of either server is not the child of the new one: once it exits, the new
master is reparented. This process makes itself a child subreaper (prctl
PR_SET_CHILD_SUBREAPER), so that every master ends up its child: it reaps each old master and,
at the end or on any exit (Ctrl-C included), kills the servers' process groups (a new master
stays in the group of the first) and reaps what is left.

A fresh server per run; each round runs herd then nginx (keep-alive), then the same with a new
connection per request (unless --no-close). Results: bench/results/upgrade.md and upgrade.csv.

usage: bench/upgrade.py [--rounds 3] [--upgrades 10] [--pause 0.5] [--connections 64] [--no-close] [--quick]
"""
import argparse
import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, first_line, free_port, log, med, nginx_command, process_tree, start_herd, wait_port  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36
WRK_SCRIPT = os.path.join(ROOT, "tests", "integration", "wrk_count.lua")

# Process groups of the servers (a new master stays in its predecessor's group), killed on any
# exit; then every child left (the old masters reparented here) is reaped.
_pgroups = set()


def _cleanup():
    for pgid in list(_pgroups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    _pgroups.clear()
    reap_all()


atexit.register(_cleanup)  # runs before benchlib's own (atexit is last in, first out)


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_all():
    """Reaps every child that has exited (only when no subprocess of ours is running)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def gone(pid):
    """True once pid has exited; reaps it if it is our child (an old master reparented here)."""
    try:
        r, _ = os.waitpid(pid, os.WNOHANG)
        if r == pid:
            return True
    except ChildProcessError:
        pass
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("no %s within %s s" % (what, timeout))
        time.sleep(0.002)


def children(pid):
    return [p for p in process_tree(pid) if p != pid and ppid_of(p) == pid]


def ppid_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError):
        return 0


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def stop_server(master, pgid):
    """TERM to the current master, up to 10 s for it to go, then SIGKILL to the whole process
    group (a new master stays in its predecessor's group) and every child reaped."""
    try:
        os.kill(master, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while not gone(master) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
    _pgroups.discard(pgid)
    reap_all()


class HerdServer:
    name = "herd"

    def __init__(self, build, tmp):
        self.herd = os.path.join(build, "server", "herd")
        self.proc, self.port = start_herd(build, tmp, 2, {"mount": "/", "path": os.path.join(build, "plugins", "libhello.so")})
        _pgroups.add(self.proc.pid)
        self.config = os.path.join(tmp, "herd.json")
        self.master = self.proc.pid
        self.version = self.status()["version"]

    def status(self):
        out = subprocess.run([self.herd, "status", "--json", "-c", self.config], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=30)
        if out.returncode != 0:
            raise RuntimeError("herd status: " + out.stdout.decode("utf-8", "replace"))
        return json.loads(out.stdout)

    def upgrade(self):
        """One upgrade; returns a dict of its times (ms), or raises."""
        old = self.master
        t0 = time.monotonic()
        out = subprocess.run([self.herd, "upgrade", "-c", self.config], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=60)
        t1 = time.monotonic()
        text = out.stdout.decode("utf-8", "replace").strip()
        m = re.search(r"\(pid (\d+)\) to herd \S+ \(pid (\d+)\) in ([\d.]+) ms", text)
        if out.returncode != 0 or not m:
            raise RuntimeError("herd upgrade failed (exit %d): %s" % (out.returncode, text))
        if int(m.group(1)) != old:
            raise RuntimeError("herd upgrade: upgraded pid %s, expected %d" % (m.group(1), old))
        self.master = int(m.group(2))
        wait_until(lambda: gone(old), 60, "exit of the old herd master %d" % old)
        t2 = time.monotonic()
        return {"ms": (t1 - t0) * 1000, "own_ms": float(m.group(3)), "old_gone_ms": (t2 - t0) * 1000}

    def check(self):
        """After the run: the master is the last new one, with 2 workers, in the first group."""
        st = self.status()
        if st["pid"] != self.master:
            raise RuntimeError("herd status: pid %s, expected %d" % (st["pid"], self.master))
        return "master pid %d, herd %s, process group %d" % (st["pid"], st.get("version"), os.getpgid(self.master))

    def log_lines(self):
        with self.proc.cond:
            return list(self.proc.lines)

    def stop(self):
        stop_server(self.master, self.proc.pid)
        self.proc.stop(timeout=1)  # its Proc (the first master, long gone): the output reader


class NginxServer:
    name = "nginx"

    def __init__(self, tmp):
        self.port = free_port()
        self.tmp = tmp
        self.binary = os.path.realpath(shutil.which("nginx") or "/usr/sbin/nginx")
        cmd = nginx_command(tmp, self.port, workers=2)
        cmd[0] = self.binary  # USR2 re-executes argv[0]: it must be absolute
        conf = cmd[cmd.index("-c") + 1]
        with open(conf) as f:
            text = f.read()
        # With `daemon off` nginx ignores USR2 while its parent (this process) lives.
        with open(conf, "w") as f:
            f.write(text.replace("daemon off;", "daemon on;"))
        self.pidfile = os.path.join(tmp, "nginx.pid")
        self.errlog = os.path.join(tmp, "nginx-error.log")
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=30)
        if out.returncode != 0:
            raise RuntimeError("nginx: " + out.stdout.decode("utf-8", "replace"))
        wait_until(lambda: self.read_pid(self.pidfile), 20, "nginx pid file")
        self.master = self.read_pid(self.pidfile)
        self.pgid = os.getpgid(self.master)
        _pgroups.add(self.pgid)
        wait_port(self.port, None)
        wait_until(lambda: len(self.workers(self.master)) == 2, 20, "2 nginx workers")

    @staticmethod
    def read_pid(path):
        try:
            with open(path) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def workers(self, master):
        return [p for p in children(master) if "worker process" in cmdline(p)]

    def upgrade(self):
        old = self.master
        t0 = time.monotonic()
        os.kill(old, signal.SIGUSR2)
        wait_until(lambda: self.read_pid(self.pidfile) not in (0, old), 30, "new nginx pid file")
        new = self.read_pid(self.pidfile)
        wait_until(lambda: len(self.workers(new)) == 2, 30, "the new nginx master's 2 workers")
        t_ready = time.monotonic()
        os.kill(old, signal.SIGWINCH)
        wait_until(lambda: not self.workers(old), 60, "the old nginx workers' exit")
        os.kill(old, signal.SIGQUIT)
        wait_until(lambda: gone(old), 60, "exit of the old nginx master %d" % old)
        t2 = time.monotonic()
        self.master = new
        if os.path.exists(self.pidfile + ".oldbin"):
            raise RuntimeError("nginx: %s.oldbin still there after the old master exited" % self.pidfile)
        return {"ms": (t2 - t0) * 1000, "ready_ms": (t_ready - t0) * 1000, "old_gone_ms": (t2 - t0) * 1000}

    def check(self):
        if len(self.workers(self.master)) != 2:
            raise RuntimeError("nginx: master %d has no 2 workers" % self.master)
        return "master pid %d, process group %d" % (self.master, os.getpgid(self.master))

    def log_lines(self):
        try:
            with open(self.errlog) as f:
                return [line.rstrip("\n") for line in f if "[notice]" not in line and "[info]" not in line]
        except OSError:
            return []

    def stop(self):
        stop_server(self.master, self.pgid)


def start_wrk(port, close, connections):
    cmd = ["wrk", "-t1", "-c%d" % connections, "-d600s", "-s", WRK_SCRIPT]
    if close:
        cmd += ["-H", "Connection: close"]
    cmd.append("http://127.0.0.1:%d/" % port)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop_wrk(p):
    p.send_signal(signal.SIGINT)
    out = p.communicate(timeout=60)[0].decode("utf-8", "replace")
    m = re.search(r"^RESULT (.*)$", out, re.M)
    if not m:
        raise RuntimeError("wrk gave no RESULT line:\n" + out)
    return json.loads(m.group(1))


def run_once(server, close, args):
    """wrk against server while it is upgraded args.upgrades times; returns the run's figures."""
    wrk = start_wrk(server.port, close, args.connections)
    t_start = time.monotonic()
    upgrades, error = [], None
    try:
        time.sleep(args.warmup)
        for _ in range(args.upgrades):
            try:
                upgrades.append(server.upgrade())
            except (RuntimeError, subprocess.SubprocessError) as e:
                error = str(e)
                log("%s: %s" % (server.name, error))
                break
            time.sleep(args.pause)
        time.sleep(args.tail)
    finally:
        res = stop_wrk(wrk) if wrk.poll() is None else None
        elapsed = time.monotonic() - t_start
    if res is None:
        raise RuntimeError("wrk exited early (code %s)" % wrk.returncode)
    non_2xx = sum(v for k, v in res["statuses"].items() if k != "2xx")
    errors = {k: res[k] for k in ("connect", "read", "write", "timeout")}
    failed = sum(errors.values()) + non_2xx
    check = server.check() if error is None else None
    return {"upgrades": upgrades, "error": error, "requests": res["requests"], "rps": res["requests"] / elapsed,
            "errors": errors, "non_2xx": non_2xx, "statuses": res["statuses"], "failed": failed,
            "bodies": res["bodies"], "check": check}


def run(kind, close, args, build, tmp_root):
    tmp = tempfile.mkdtemp(prefix="%s-" % kind, dir=tmp_root)
    server = HerdServer(build, tmp) if kind == "herd" else NginxServer(tmp)
    try:
        r = run_once(server, close, args)
        r["log"] = [line for line in server.log_lines()
                    if re.search(r"\b(warn|error|crit|alert|emerg)\b", line, re.I) and "allow_root" not in line][-20:]
        return r
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--upgrades", type=int, default=10, help="upgrades per run")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between an upgrade's end and the next")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds of load before the first upgrade")
    ap.add_argument("--tail", type=float, default=1.0, help="seconds of load after the last upgrade")
    ap.add_argument("--connections", type=int, default=64, help="wrk -c")
    ap.add_argument("--no-close", action="store_true", help="keep-alive only (no Connection: close runs)")
    ap.add_argument("--quick", action="store_true", help="1 round of 3 upgrades")
    ap.add_argument("--build", default=os.environ.get("HERD_BUILD_DIR", os.path.join(ROOT, "build-release")))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.upgrades = 1, 3
    build = os.path.abspath(args.build)
    become_subreaper()
    modes = [False] if args.no_close else [False, True]
    tmp_root = tempfile.mkdtemp(prefix="herd-upgrade-")
    herd_version = first_line([os.path.join(build, "server", "herd"), "--version"])
    nginx_version = first_line(["nginx", "-v"])
    log("herd: %s; %s; %d rounds of %d upgrades per server and mode" % (herd_version, nginx_version, args.rounds, args.upgrades))
    results = {}  # (kind, close) -> [run]
    csv = ["round,server,mode,upgrades,requests,rps,connect,read,write,timeout,non_2xx,failed,upgrade_ms_median,old_gone_ms_median,error"]
    try:
        for rnd in range(1, args.rounds + 1):
            for close in modes:
                for kind in ("herd", "nginx"):
                    mode = "close" if close else "keep-alive"
                    r = run(kind, close, args, build, tmp_root)
                    results.setdefault((kind, close), []).append(r)
                    n = len(r["upgrades"])
                    ms = [u["ms"] for u in r["upgrades"]]
                    gone_ms = [u["old_gone_ms"] for u in r["upgrades"]]
                    log("round %d %s %s: %d upgrades, %d requests (%.0f/s), failed %d (%s, non-2xx %d), upgrade ms median %s%s" % (
                        rnd, kind, mode, n, r["requests"], r["rps"], r["failed"],
                        ", ".join("%s %d" % kv for kv in r["errors"].items()), r["non_2xx"],
                        med(ms), "; ERROR " + r["error"] if r["error"] else ""))
                    if r["check"]:
                        log("  after the run: " + r["check"])
                    for line in r["log"]:
                        log("  log: " + line)
                    csv.append("%d,%s,%s,%d,%d,%.0f,%d,%d,%d,%d,%d,%d,%.1f,%.1f,%s" % (
                        rnd, kind, mode, n, r["requests"], r["rps"], r["errors"]["connect"], r["errors"]["read"],
                        r["errors"]["write"], r["errors"]["timeout"], r["non_2xx"], r["failed"],
                        statistics.median(ms) if ms else float("nan"),
                        statistics.median(gone_ms) if gone_ms else float("nan"), json.dumps(r["error"] or "")))
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    def per_upgrade(runs):
        return [r["failed"] / len(r["upgrades"]) if r["upgrades"] else float("nan") for r in runs]

    lines = ["%s, %d CPUs; %s, %s; wrk -t1 -c%d, 2 workers each; %d rounds, each run a fresh server and %d upgrades "
             "(%.1f s apart; %.1f s of load before the first, %.1f s after the last); failed = wrk socket errors "
             "(connect, read, write, timeout) + non-2xx; median (min–max) over rounds" % (
                 time.strftime("%Y-%m-%d"), os.cpu_count(), herd_version, nginx_version, args.connections, args.rounds, args.upgrades,
                 args.pause, args.warmup, args.tail), "",
             "| load | server | failed requests per upgrade | failed / upgrades (all rounds) | failures by kind | requests served, per run | upgrade duration, ms (all upgrades) | until the old master exited, ms |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for close in modes:
        totals = {}
        for kind in ("herd", "nginx"):
            runs = results.get((kind, close), [])
            ups = sum(len(r["upgrades"]) for r in runs)
            failed = sum(r["failed"] for r in runs)
            totals[kind] = failed / ups if ups else float("nan")
            kinds = {k: sum(r["errors"][k] for r in runs) for k in ("connect", "read", "write", "timeout")}
            kinds["non-2xx"] = sum(r["non_2xx"] for r in runs)
            ms = [u["ms"] for r in runs for u in r["upgrades"]]
            gone_ms = [u["old_gone_ms"] for r in runs for u in r["upgrades"]]
            dur = med(ms, "%.0f")
            if kind == "herd":
                dur += "; herd's own figure %s" % med([u["own_ms"] for r in runs for u in r["upgrades"]], "%.0f")
                name = "herd (`herd upgrade`)"
            else:
                dur += "; new workers up after %s" % med([u["ready_ms"] for r in runs for u in r["upgrades"]], "%.0f")
                name = "nginx (USR2, WINCH, QUIT)"
            errs = [r["error"] for r in runs if r["error"]]
            lines.append("| %s | %s | %s | %d / %d%s | %s | %s | %s | %s |" % (
                "new connection per request" if close else "keep-alive", name, med(per_upgrade(runs), "%.1f"),
                failed, ups, "; %d runs stopped early: %s" % (len(errs), "; ".join(errs)) if errs else "",
                ", ".join("%s %d" % kv for kv in kinds.items() if kv[1]) or "none",
                med([r["requests"] for r in runs]), dur, med(gone_ms, "%.0f")))
        h, n = totals.get("herd", float("nan")), totals.get("nginx", float("nan"))
        if h == 0 and n == 0:
            ratio = "– (neither failed a request)"
        elif n and n == n and h == h:
            ratio = "%.2f" % (h / n)
        else:
            ratio = "n/a (nginx failed none)" if n == 0 else "n/a"
        lines.append("| %s | herd / nginx, failed per upgrade (all rounds) | %s | | | | | |" % (
            "new connection per request" if close else "keep-alive", ratio))
    text = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "upgrade.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "upgrade.csv"), "w") as f:
        f.write("\n".join(csv) + "\n")
    sys.stdout.write("\n" + text)


if __name__ == "__main__":
    main()
