#!/usr/bin/env python3
"""Failed requests per reload and per crash, under load: herd next to PM2 cluster mode.

The load is wrk -t1 -c16 for --seconds (as in bench/crash.py); failed = wrk's socket errors
+ non-2xx responses. The requests that crash a worker are sent outside wrk and not counted.

- reload: herd gets a changed config (an env value of the app: herd reloads only what
  changed) and `kill -HUP` (its reload), PM2 gets `pm2 reload` (its zero-downtime reload),
  one after the other for the whole load; a reload counts once every worker has been replaced
  (herd: every worker pid under the master changed; PM2: `pm2 reload` returned). If
  herd's workers are not replaced within 10 s of a SIGHUP, herd has no reload (yet) and its row
  says "not available".
- crash, exception: every --interval (1 s) a request that throws in the handler (herd: probe's
  /probe/throw, a 500 and the worker is replaced; PM2: a throw in the Node handler, the worker
  dies and PM2 restarts it).
- crash, SIGKILL: every --interval a worker is killed (the oldest one).
  One crash a second, not ten as in bench/crash.py: a Node worker takes tens of ms to come
  back, and at ten crashes a second PM2 has no worker for much of the time, so its count would
  measure wrk's reconnect loop rather than a crash.

The PM2 app is bench/peers/node-cluster.js (the same hello as the Node cluster), 2 instances in
cluster mode, with PM2's restart limit raised (max_restarts) so that 100 crashes in 10 s do not
make PM2 give the app up as "errored" (its default after 15 unstable restarts); PM2 runs with
its own PM2_HOME, and `pm2 kill` ends it. herd runs hello + probe with 2 workers and
"restart_backoff_ms": 0, as in bench/crash.py.

usage: bench/reload.py [--seconds 20] [--interval 1] [--pm2 bench/.npm/node_modules/.bin/pm2] [--quick]
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, Proc, free_port, log, process_tree, wait_port, wrk  # noqa: E402


def throw_once(port, path):
    """Sends a request that throws in the handler; True once it was sent."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
            try:
                c.recv(4096)  # herd: a 500; Node: the connection dies with its worker
            except OSError:
                pass
        return True
    except OSError:
        return False


class HerdTarget:
    name = "herd (2 workers)"

    def __init__(self, build, tmp):
        self.port = free_port()
        self.config = {"log_level": "info", "allow_root": os.geteuid() == 0, "control": os.path.join(tmp, "herd.sock"), "apps": [{
            "name": "bench", "listen": "127.0.0.1:%d" % self.port, "workers": 2, "restart_backoff_ms": 0,
            "env": {"BENCH_RELOAD": "0"},
            "plugins": [{"mount": "/", "path": os.path.join(build, "plugins", "libhello.so")},
                        {"mount": "/probe", "path": os.path.join(build, "plugins", "libprobe.so")}]}]}
        self.path = os.path.join(tmp, "reload.json")
        self.reloads = 0
        self.write_config()
        # Worker pids come from the log ("worker bench/0 (pid N) ..."): the master has other
        # children too (the state broker), which are neither reloaded nor crashed here.
        self.proc = Proc([os.path.join(build, "server", "herd"), "run", self.path],
                         watch=r"worker bench/\d+ \(pid (\d+)\)|(all apps ready)")
        self.proc.wait_for(lambda: any(m.group(2) for _, m in self.proc.matches), what="all apps ready")
        self.throw_path = "/probe/throw"

    def write_config(self):
        with open(self.path + ".new", "w") as f:
            json.dump(self.config, f)
        os.rename(self.path + ".new", self.path)

    def workers(self):
        with self.proc.cond:
            known = {int(m.group(1)) for _, m in self.proc.matches if m.group(1)}
        return [p for p in process_tree(self.proc.pid) if p in known]

    def reload_once(self, timeout=10):
        """A deploy: the config changes (an env value, so every worker must be replaced), then
        SIGHUP; waits until no worker of before is left and 2 new ones run."""
        self.reloads += 1
        self.config["apps"][0]["env"]["BENCH_RELOAD"] = str(self.reloads)
        self.write_config()
        before = set(self.workers())
        os.kill(self.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = set(self.workers())
            if len(now) >= 2 and not (now & before):
                return True
            time.sleep(0.01)
        return False

    def settle(self, timeout=20):
        """Waits until two workers run and the port answers."""
        deadline = time.monotonic() + timeout
        while len(self.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        wait_port(self.port, self.proc.proc)

    def stop(self):
        self.proc.stop()


class Pm2Target:
    name = "PM2 cluster mode (2 instances)"

    def __init__(self, pm2, tmp):
        self.pm2 = pm2
        self.port = free_port()
        self.env = dict(os.environ, PM2_HOME=os.environ.get("PM2_HOME") or os.path.join(tmp, "pm2"))
        eco = os.path.join(tmp, "ecosystem.json")
        with open(eco, "w") as f:
            json.dump({"apps": [{
                "name": "hello", "script": os.path.join(ROOT, "bench", "peers", "node-cluster.js"),
                "exec_mode": "cluster", "instances": 2, "env": {"PORT": str(self.port)},
                "max_restarts": 1000000, "autorestart": True}]}, f)
        self.run("start", eco)
        wait_port(self.port, None, timeout=30)
        self.wait_online()
        self.throw_path = "/throw"

    def run(self, *args):
        return subprocess.run([self.pm2, *args], env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, check=True, timeout=120).stdout.decode("utf-8", "replace")

    def god(self):
        with open(os.path.join(self.env["PM2_HOME"], "pm2.pid")) as f:
            return int(f.read())

    def workers(self):
        god = self.god()
        return [p for p in process_tree(god) if p != god]

    def wait_online(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            apps = json.loads(self.run("jlist").strip().splitlines()[-1])
            if len(apps) == 2 and all(a["pm2_env"]["status"] == "online" for a in apps):
                return
            time.sleep(0.2)
        raise RuntimeError("PM2's app is not online after %ss: %s" % (
            timeout, [(a["pid"], a["pm2_env"]["status"]) for a in apps]))

    def settle(self):
        self.wait_online()
        wait_port(self.port, None, timeout=30)

    def reload_once(self):
        self.run("reload", "hello")
        return True

    def stop(self):
        try:
            self.run("delete", "all")
        finally:
            subprocess.run([self.pm2, "kill"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=60)


def start_time(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError):
        return 0


def under_load(target, seconds, action):
    """Runs action() in a loop beside wrk for `seconds`; returns (actions done, failed, total)."""
    stop = threading.Event()
    done = [0]
    unavailable = [False]

    def loop():
        while not stop.is_set():
            r = action()
            if r is None:
                unavailable[0] = True
                return
            if r:
                done[0] += 1

    target.settle()
    t = threading.Thread(target=loop)
    t.start()
    try:
        res = wrk(target.port, seconds, connections=16)
    finally:
        stop.set()
        t.join()
    return (None if unavailable[0] else done[0]), res["socket_errors"] + res["non_2xx"], res["requests"], res["connect_errors"]


def measure(target, seconds, pause, interval):
    rows = {}
    # reload: one after the other (each waits until its workers are replaced), for the whole load
    def reload():
        ok = target.reload_once()
        if not ok:
            return None
        stop_at = time.monotonic() + pause
        while time.monotonic() < stop_at:
            time.sleep(0.05)
        return True
    rows["reload"] = under_load(target, seconds, reload)

    def throw():
        r = throw_once(target.port, target.throw_path)
        time.sleep(interval)
        return r
    rows["exception"] = under_load(target, seconds, throw)

    def kill():
        # The oldest worker (as bench/crash.py does): the newest may be a replacement still
        # starting, with no connection to lose.
        ws = sorted(target.workers(), key=start_time)
        r = False
        if ws:
            try:
                os.kill(ws[0], signal.SIGKILL)
                r = True
            except OSError:
                pass
        time.sleep(interval)
        return r
    rows["SIGKILL"] = under_load(target, seconds, kill)
    return rows


def cell(row):
    done, failed, total, connect = row
    if done is None:
        return "not available"
    per = ("%.1f" % (failed / done)) if done else "–"
    text = "%s (%d failed in %d events; %d requests served)" % (per, failed, done, total)
    if connect:
        text += "; %d of the failures are refused connections" % connect
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between two crashes")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between the end of a reload and the next")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--build", default=os.environ.get("HERD_BUILD_DIR", os.path.join(ROOT, "build-release")))
    ap.add_argument("--pm2", default=os.path.join(ROOT, "bench", ".npm", "node_modules", ".bin", "pm2"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.interval = 3, 0.5
    build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="herd-reload-")
    results = []
    log("herd: reload (SIGHUP), exception, SIGKILL under load, %d s each" % args.seconds)
    herd = HerdTarget(build, tmp)
    try:
        results.append((herd.name, measure(herd, args.seconds, args.pause, args.interval)))
    finally:
        herd.stop()
    if os.access(args.pm2, os.X_OK):
        log("PM2: pm2 reload, exception, SIGKILL under load, %d s each" % args.seconds)
        pm2 = Pm2Target(args.pm2, tmp)
        try:
            results.append((pm2.name, measure(pm2, args.seconds, args.pause, args.interval)))
        finally:
            pm2.stop()
    else:
        log("no PM2 at %s (bench/peers.sh installs it): PM2 skipped" % args.pm2)

    lines = ["%s, %d CPUs; wrk -t1 -c16 for %d s per column; failed = socket errors (a refused connection counts: wrk retries at once) + non-2xx, the crashing requests not counted" % (
        time.strftime("%Y-%m-%d"), os.cpu_count(), args.seconds), "",
        "| server | failed requests per reload | per crash: an exception every %g s | per crash: a SIGKILL every %g s |" % (args.interval, args.interval),
        "| --- | --- | --- | --- |"]
    for name, rows in results:
        lines.append("| %s | %s | %s | %s |" % (name, cell(rows["reload"]), cell(rows["exception"]), cell(rows["SIGKILL"])))
    text = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "reload.md"), "w") as f:
        f.write(text)
    sys.stdout.write("\n" + text)


if __name__ == "__main__":
    main()
