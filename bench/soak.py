#!/usr/bin/env python3
"""Fault-injection soak: herd under steady load while its processes, its state backend and its
descriptor limit are attacked, for a bounded time. A benchmark, not a test: it prints what was
sent, what failed and why, and whether any acknowledged state write was lost; it fails nothing.

What runs (all started here, on 127.0.0.1, and all stopped on any exit):
- redis-server on a free port in a temporary folder, AOF on with appendfsync always (so that
  a restart, even after a SIGKILL, keeps every write Redis acknowledged: the soak tests herd,
  not Redis's durability setting);
- herd with the Redis state backend (prefix "soak:"), one app of --workers workers (shared
  balancing, the default), hello at / and probe at /probe, "restart_backoff_ms": 0 as in
  bench/crash.py (the soak kills a worker 5 times a second on purpose: with the production
  back-off every slot would soon wait seconds before its restart, which measures the back-off,
  not the recovery), started through `sh -c 'ulimit -n N; exec herd run ...'` so that every
  herd process has RLIMIT_NOFILE = --nofile (default 256) and the descriptor fill reaches it.

Load, for --seconds (default 60):
- HTTP: a separate Python process (this script with --client) keeps --connections (16)
  keep-alive connections busy with GET /, one request in flight on each, and checks each
  answer (200 and a body that is one of the configured greetings). It records every failure
  with its time (CLOCK_MONOTONIC, shared by every process), its kind (connect, reset, eof,
  timeout after 5 s, bad status or body) and the connection's local port. A response with
  `Connection: close` is not a failure: the client opens a new connection. Requests still in
  flight when the time is up are not counted.
- state writes: a thread sends `{"cmd":"state","op":"set","key":"soak.N","value":{"i":N}}`
  to the control socket (what `herd state set` sends), one at a time, about 100 a second, and
  records which were acknowledged (answer ok: the backend has the write), refused (ok false,
  with the reason) or unanswered.

Faults (times as fractions of --seconds; each one recorded with its time):
- kill -9 of a random ready worker every 200 ms (never the broker, never the stopped one).
  Just before each kill the worker's connections are listed: each socket in /proc/PID/fd is
  copied here with pidfd_getfd(2), asked its peer's port and closed (the worker's descriptor is
  untouched): the client ports connected to it at that moment;
- SIGSTOP of a worker (the one with the most client connections) for 1 s, then SIGCONT
  (0.18, 0.62; the watchdog is 30 s);
- kill -9 of the broker (comm herd-broker, pid from `status`) at 0.12, 0.42 and 0.72;
- Redis restarted: SIGTERM at 0.25 and SIGKILL at 0.55, down 1 s each time, same port;
- reload (`herd reload -c CONFIG` after changing hello's greeting) at 0.33 and 0.80; a
  refused reload is retried (at most 3 attempts) and counted;
- descriptor fill at 0.47: connections that send half a request line are opened until
  workers x nofile + 256 are open, or connecting stalls, or 2 s pass; held 3 s, then closed.
  The "pausing accept" warnings herd logs meanwhile show whether the limit was reached.

How a failed request is attributed (in this order; the method, not a guess per request):
1. "killed worker": its connection's local port was among the killed worker's sockets read just
   before a kill -9, the connection was opened before that kill, and the failure came at most
   5 s after it: the kill took the request with it;
2. "near a kill": a connection error (reset, eof) within 0.5 s after a kill -9, its socket
   not in the list (the worker accepted it between the listing and the kill);
3. "descriptor fill": any failure from the start of the fill to 1 s after its end;
4. "other": everything else. These are not explained by an injected fault.

At the end (once the app has its workers again, the broker is up and no reload runs): every
acknowledged key is read back with `herd state get` (the CLI, one call per key) and from Redis
(HGET soak:data KEY, pipelined); each value must be the one written. Lost = acknowledged and
missing (or different) in either. A sample of keys is also read from every worker's copy
(GET /probe/state/KEY). Then herd gets SIGTERM and must exit 0. Also counted from herd's log:
workers that started their plugins without the state ("no state from the broker").

Output: a table on stdout; in bench/results/: soak.csv (the figures), soak_events.csv (every
fault), soak_failures.csv (every failed request and its attribution), soak_writes.csv (every
state write and its outcome), soak_timeline.csv (successes and failures per 100 ms),
soak-herd.log (herd's log, each line with the CLOCK_MONOTONIC time it was read).

usage: bench/soak.py [--seconds 60] [--workers 4] [--connections 16] [--nofile 256]
                     [--build build] [--write-rate 100] [--seed N (victims; timing still varies)]
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (kills every process group it started on any exit)
from benchlib import ROOT, Proc, free_port, log  # noqa: E402
# The parts beside it: the load client, the processes and small clients, the report.
from soak_load import client_main  # noqa: E402
from soak_procs import APP, PREFIX, Herd, Redis, Resp, client_ports_of, comm, control, http_get  # noqa: E402
from soak_report import loadavg, report  # noqa: E402


def greeting(generation):
    return "soak generation %d\n" % generation


# ---------------------------------------------------------------- the soak

class Soak:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.rng = random.Random(args.seed)
        self.events = []           # dicts: t, fault, detail, ports (for kills/stops)
        self.events_lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.stopped_pid = None
        self.victim_lock = threading.Lock()
        self.killed = set()        # workers killed here (a zombie until the master reaps it)
        self.writes = []           # [key, value, outcome, detail, t]
        self.generation = 0
        self.fill = None           # (start, end)
        self.fill_stats = {}
        self.reload_results = []   # (attempt, code, output)
        self.redis = Redis(os.path.join(tmp, "redis"))
        os.makedirs(self.redis.folder)
        self.port = free_port()
        self.config_path = os.path.join(tmp, "soak.json")
        self.control_path = os.path.join(tmp, "soak.sock")
        self.herd_bin = os.path.join(args.build, "server", "herd")
        self.plugins = os.path.join(args.build, "plugins")

    def event(self, fault, detail="", ports=None, t=None):
        with self.events_lock:
            self.events.append({"t": time.monotonic() if t is None else t, "fault": fault,
                                "detail": detail, "ports": ports or set()})

    # -- config and processes

    def write_config(self):
        config = {
            "log_level": "info",
            "control": self.control_path,
            "state": {"backend": "redis", "prefix": PREFIX,
                      "url": "redis://127.0.0.1:%d/0" % self.redis.port},
            "apps": [{
                "name": APP, "listen": "127.0.0.1:%d" % self.port, "workers": self.args.workers,
                "restart_backoff_ms": 0,
                "plugins": [{"mount": "/", "path": os.path.join(self.plugins, "libhello.so"),
                             "config": {"greeting": greeting(self.generation)}},
                            {"mount": "/probe", "path": os.path.join(self.plugins, "libprobe.so")}]}]}
        if os.geteuid() == 0:
            config["allow_root"] = True
        with open(self.config_path + ".new", "w") as f:
            json.dump(config, f, indent=1)
        os.rename(self.config_path + ".new", self.config_path)

    def start(self):
        self.redis.start()
        self.write_config()
        cmd = ["sh", "-c", 'ulimit -n %d && exec "$0" run "$1"' % self.args.nofile,
               self.herd_bin, self.config_path]
        self.herd = Herd(cmd, os.path.join(self.tmp, "herd.log"))
        self.herd.wait_for(lambda: any("all apps ready" in l for l in self.herd.lines), timeout=60,
                           what="all apps ready")
        deadline = time.monotonic() + 30
        while not self.status().get("state", {}).get("up"):
            if time.monotonic() > deadline:
                raise RuntimeError("the state backend is not up after 30 s")
            time.sleep(0.1)

    def status(self):
        return control(self.control_path, {"cmd": "status"})

    # -- faults

    def kill_worker(self):
        with self.victim_lock:  # never the worker being stopped
            candidates = self.herd.workers(exclude=self.killed | {self.stopped_pid})
            if not candidates:
                self.event("worker kill skipped", "no ready worker")
                return
            victim = self.rng.choice(candidates)
            ports = client_ports_of(victim, self.port)
            t = time.monotonic()
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                return
            self.killed.add(victim)
        self.event("kill -9 worker", "pid %d, %d client connection(s)" % (victim, len(ports)), ports, t)

    def killer(self, start, end):
        next_t = start
        while not self.stop_flag.is_set():
            now = time.monotonic()
            if now >= end:
                return
            if now >= next_t:
                self.kill_worker()
                next_t += self.args.kill_every
                if next_t < now:
                    next_t = now + self.args.kill_every
            self.stop_flag.wait(max(0.0, min(next_t, end) - time.monotonic()))

    def sigstop_worker(self):
        with self.victim_lock:
            # The worker with the most client connections (a fresh replacement may have none),
            # so that the stop is felt; one that exited after it was listed is skipped.
            listed = self.herd.workers(exclude=self.killed)
            self.rng.shuffle(listed)
            by_load = sorted(((client_ports_of(pid, self.port), pid) for pid in listed),
                             key=lambda pp: -len(pp[0]))
            for ports, victim in by_load:
                try:
                    os.kill(victim, signal.SIGSTOP)
                except ProcessLookupError:
                    continue
                self.stopped_pid = victim
                break
            else:
                self.event("SIGSTOP skipped", "no ready worker")
                return
        self.event("SIGSTOP worker", "pid %d, %d client connection(s)" % (victim, len(ports)), ports)
        time.sleep(1.0)
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            pass
        self.event("SIGCONT worker", "pid %d" % victim)
        self.stopped_pid = None

    def kill_broker(self):
        pid = self.status().get("state", {}).get("broker_pid", 0)
        if not pid or comm(pid) != "herd-broker":
            self.event("broker kill skipped", "no broker (pid %s, comm %s)" % (pid, comm(pid) if pid else None))
            return
        os.kill(pid, signal.SIGKILL)
        self.event("kill -9 broker", "pid %d" % pid)

    def restart_redis(self, sig):
        self.event("Redis stop", "signal %s" % signal.Signals(sig).name)
        self.redis.stop(sig)
        time.sleep(1.0)
        self.redis.start()
        self.event("Redis started", "same port, same AOF")

    def reload(self):
        self.generation += 1
        self.write_config()
        for attempt in range(1, 4):
            self.event("reload", "greeting %r, attempt %d" % (greeting(self.generation).strip(), attempt))
            p = subprocess.run([self.herd_bin, "reload", "-c", self.config_path], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=120)
            out = p.stdout.decode("utf-8", "replace").strip()
            self.reload_results.append((self.generation, attempt, p.returncode, out))
            self.event("reload answered", "exit %d: %s" % (p.returncode, out.replace("\n", " | ")))
            if p.returncode == 0:
                return
            time.sleep(1.0)

    def fill_descriptors(self, hold):
        target = self.args.workers * self.args.nofile + 256
        socks = []
        start = time.monotonic()
        self.event("descriptor fill", "opening up to %d connections" % target)
        stalled = False
        while len(socks) < target and time.monotonic() - start < 2.0:
            s = socket.socket()
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", self.port))
                s.sendall(b"GET / HTTP/1.1\r\n")  # half a request: accepted, then waits
            except OSError:
                s.close()
                stalled = True
                break
            socks.append(s)
        opened = time.monotonic()
        self.event("descriptor fill held", "%d connections open%s" % (
            len(socks), ", connecting stalled" if stalled else ""))
        time.sleep(hold)
        for s in socks:
            s.close()
        end = time.monotonic()
        self.event("descriptor fill released", "%d connections closed" % len(socks))
        self.fill = (start, end)
        self.fill_stats = {"opened": len(socks), "target": target, "stalled": stalled,
                           "open_s": opened - start,
                           "accept_pauses": sum(1 for t in self.herd.accept_pauses if start <= t <= end + 1)}

    def writer(self, until):
        i = 0
        interval = 1.0 / self.args.write_rate
        while time.monotonic() < until:
            i += 1
            key, value = "soak.%d" % i, {"i": i}
            t0 = time.monotonic()
            try:
                a = control(self.control_path, {"cmd": "state", "op": "set", "key": key, "value": value})
                if a.get("ok"):
                    self.writes.append([key, value, "acknowledged", "version %s" % a.get("version"), t0])
                else:
                    self.writes.append([key, value, "refused", a.get("error", "?"), t0])
            except (OSError, ValueError) as e:
                self.writes.append([key, value, "unanswered", str(e), t0])
            left = interval - (time.monotonic() - t0)
            if left > 0:
                time.sleep(left)

    # -- the run

    def run(self):
        args = self.args
        T = float(args.seconds)
        client_out = os.path.join(self.tmp, "client.json")
        greetings = [greeting(g) for g in range(0, 3)]
        t0 = time.monotonic() + 0.5
        until = t0 + T
        client = Proc([sys.executable, os.path.abspath(__file__), "--client", str(self.port), repr(until),
                       str(args.connections), client_out, json.dumps(greetings)])
        client.wait_for(lambda: any("client started" in l for l in client.lines), what="the load client")
        self.t0 = t0
        self.until = until

        def at(fraction, fn, *a):
            def run():
                delay = t0 + fraction * T - time.monotonic()
                if delay > 0 and self.stop_flag.wait(delay):
                    return
                try:
                    fn(*a)
                except Exception as e:  # a fault that could not be injected is reported, not fatal
                    self.event("fault error", "%s: %s" % (fn.__name__, e))
            th = threading.Thread(target=run, name=fn.__name__)
            th.start()
            return th

        threads = [
            threading.Thread(target=self.writer, args=(until,), name="writer"),
            threading.Thread(target=self.killer, args=(t0 + 0.02 * T, t0 + 0.97 * T), name="killer"),
        ]
        for th in threads:
            th.start()
        threads += [
            at(0.12, self.kill_broker), at(0.42, self.kill_broker), at(0.72, self.kill_broker),
            at(0.18, self.sigstop_worker), at(0.62, self.sigstop_worker),
            at(0.25, self.restart_redis, signal.SIGTERM), at(0.55, self.restart_redis, signal.SIGKILL),
            at(0.33, self.reload), at(0.80, self.reload),
            at(0.47, self.fill_descriptors, 3.0),
        ]
        master_died = None
        while any(th.is_alive() for th in threads) or client.proc.poll() is None:
            if self.herd.proc.poll() is not None and master_died is None:
                master_died = time.monotonic()
                log("soak: the herd master exited (code %s)!" % self.herd.proc.returncode)
                self.stop_flag.set()
            time.sleep(0.1)
        client.proc.wait()
        self.master_died = master_died
        with open(client_out) as f:
            self.client = json.load(f)

    def settle(self, timeout=60):
        """Waits until the app has all its workers ready, the broker is up and no reload runs."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                s = self.status()
                last = s
                app = [a for a in s["apps"] if a["name"] == APP][0]
                ready = [w for w in app["workers"] if w["state"] == "ready"]
                if (len(ready) >= self.args.workers and s["state"].get("up") and "reload" not in s
                        and app["state"] == "running"):
                    return s
            except (OSError, ValueError, KeyError, IndexError):
                pass
            time.sleep(0.2)
        raise RuntimeError("herd did not settle within %d s: %s" % (timeout, json.dumps(last)))

    def verify(self):
        acked = [w for w in self.writes if w[2] == "acknowledged"]
        # herd state get, the CLI, once per key.
        def cli_get(w):
            p = subprocess.run([self.herd_bin, "state", "get", w[0], "-c", self.config_path], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=60)
            if p.returncode != 0:
                return w[0], None, p.stderr.decode().strip()
            return w[0], json.loads(p.stdout), ""
        cli = {}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for key, value, err in pool.map(cli_get, acked):
                cli[key] = (value, err)
        # Redis: HGET soak:data KEY, pipelined; the refused and unanswered ones too (a write
        # whose confirmation was lost may have been applied: that is allowed, and counted).
        r = Resp(self.redis.port, timeout=30)
        redis_values = {}
        try:
            for i in range(0, len(self.writes), 500):
                batch = self.writes[i:i + 500]
                r.send(*[("HGET", PREFIX + "data", w[0]) for w in batch])
                for w in batch:
                    redis_values[w[0]] = r.reply()
        finally:
            r.close()
        lost_cli, lost_redis, lost = [], [], []
        for w in acked:
            key, value = w[0], w[1]
            cv, _ = cli[key]
            rv = redis_values.get(key)
            bad_cli = cv != value
            bad_redis = rv is None or json.loads(rv) != value
            if bad_cli:
                lost_cli.append(key)
            if bad_redis:
                lost_redis.append(key)
            if bad_cli or bad_redis:
                lost.append((key, value, cv, cli[key][1], rv, w[4] - self.t0))
        # Every worker's copy: the last acknowledged key and a sample.
        sample = [w for w in acked[-1:]] + self.rng.sample(acked, min(20, len(acked)))
        workers = {}
        status = self.status()
        want = {w["pid"] for a in status["apps"] if a["name"] == APP for w in a["workers"] if w["state"] == "ready"}
        # Shared balancing: the kernel picks the worker; concurrent connections reach them all.
        def ask(w):
            try:
                code, headers, body = http_get(self.port, "/probe/state/" + w[0])
            except OSError:
                return None
            return int(headers.get("x-pid", 0)), w, code == 200 and json.loads(body) == w[1]
        deadline = time.monotonic() + 20
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            while time.monotonic() < deadline and not want <= {p for p, m in workers.items() if not m}:
                for answer in pool.map(ask, sample * 4):
                    if answer is None:
                        continue
                    pid, w, present = answer
                    missing = workers.setdefault(pid, set(x[0] for x in sample))
                    if present:
                        missing.discard(w[0])
                time.sleep(0.05)
        not_acked = [w for w in self.writes if w[2] != "acknowledged"]
        self.verified = {
            "not_acked_present": sum(1 for w in not_acked if redis_values.get(w[0]) is not None),
            "not_acked": len(not_acked),
            "acknowledged": len(acked), "lost": lost, "lost_cli": lost_cli, "lost_redis": lost_redis,
            "workers_checked": sorted(p for p in workers if p in want),
            "workers_missing": {p: sorted(m) for p, m in workers.items() if p in want and m},
            "workers_unreached": sorted(want - set(workers)), "sample": len(sample)}

    def stop_herd(self):
        if self.herd.proc.poll() is not None:
            return self.herd.proc.returncode
        self.herd.proc.send_signal(signal.SIGTERM)
        try:
            return self.herd.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            return "no exit within 30 s of SIGTERM"
        finally:
            self.herd.stop(signal.SIGKILL, timeout=5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--nofile", type=int, default=256, help="RLIMIT_NOFILE of every herd process")
    ap.add_argument("--kill-every", type=float, default=0.2)
    ap.add_argument("--write-rate", type=float, default=100, help="state writes per second (at most)")
    ap.add_argument("--build", default=os.environ.get("HERD_BUILD_DIR", os.path.join(ROOT, "build")))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--client", nargs=5, metavar=("PORT", "UNTIL", "CONNS", "OUT", "GREETINGS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    if args.client:
        port, until, conns, out, greetings = args.client
        client_main(int(port), float(until), int(conns), out, json.loads(greetings))
        return
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    for tool in ("redis-server", "sh"):
        if not shutil.which(tool):
            sys.exit("soak: %s is needed (scripts/setup.sh installs it)" % tool)
    if not os.path.exists(os.path.join(args.build, "server", "herd")):
        sys.exit("soak: no herd in %s (build it, or give --build)" % args.build)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.workers * args.nofile + 1024
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))

    tmp = tempfile.mkdtemp(prefix="herd-soak-")
    started = datetime.datetime.now()
    load_before = loadavg()
    soak = Soak(args, tmp)
    try:
        log("soak: %s s, %d workers, %d connections, nofile %d, seed %d, in %s" % (
            args.seconds, args.workers, args.connections, args.nofile, args.seed, tmp))
        soak.start()
        soak.run()
        load_after = loadavg()
        master_alive = soak.herd.proc.poll() is None
        settled, settle_error = None, ""
        if master_alive:
            try:
                settled = soak.settle()
                soak.verify()
            except Exception as e:  # reported below
                settle_error = str(e)
        exit_code = soak.stop_herd()
    finally:
        try:
            soak.herd.log_file.flush()
        except Exception:
            pass
        soak.redis.stop()
        if getattr(soak, "herd", None):
            soak.herd.stop(signal.SIGKILL, timeout=5)
    os.makedirs(args.results, exist_ok=True)
    shutil.copy(os.path.join(tmp, "herd.log"), os.path.join(args.results, "soak-herd.log"))
    report(soak, args, started, load_before, load_after, master_alive, settled, settle_error, exit_code)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
