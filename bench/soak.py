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
import collections
import concurrent.futures
import csv
import ctypes
import datetime
import errno
import json
import os
import random
import re
import resource
import selectors
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

PREFIX = "soak:"
APP = "soak"
REQUEST_TIMEOUT = 5.0
KILL_ATTRIBUTION_S = 5.0
NEAR_KILL_S = 0.5
FILL_GRACE_S = 1.0


def greeting(generation):
    return "soak generation %d\n" % generation


# ---------------------------------------------------------------- the HTTP load (a process)

def client_main(port, until, connections, out_path, greetings):
    """Keeps `connections` keep-alive connections busy with GET / until `until` (monotonic);
    writes its figures as JSON to out_path."""
    request = b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n"
    accepted = {g.encode() for g in greetings}
    sel = selectors.DefaultSelector()
    failures = []           # [t, kind, local port, opened, responses before on this conn, detail]
    ok_per_tick = collections.Counter()   # successes per 100 ms
    bodies = collections.Counter()
    latencies = []
    counts = {"attempted": 0, "ok": 0, "closed_by_server": 0}

    class Conn:
        pass

    def open_conn():
        c = Conn()
        c.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.sock.setblocking(False)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.opened = time.monotonic()
        c.port = 0
        c.responses = 0
        c.buf = b""
        c.started = c.opened
        c.state = "connecting"
        counts["attempted"] += 1
        rc = c.sock.connect_ex(("127.0.0.1", port))
        if rc not in (0, errno.EINPROGRESS):
            fail(c, "connect", os.strerror(rc), registered=False)
            return
        sel.register(c.sock, selectors.EVENT_WRITE, c)

    def close(c, registered=True):
        if registered:
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        c.sock.close()

    def fail(c, kind, detail, registered=True):
        failures.append([time.monotonic(), kind, c.port, c.opened, c.responses, detail])
        close(c, registered)
        if time.monotonic() < until:
            open_conn()

    def send(c):
        try:
            c.sock.send(request)  # 30 bytes into an empty socket buffer: sent whole
        except OSError as e:
            fail(c, "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "send", str(e))
            return
        c.state = "reading"
        sel.modify(c.sock, selectors.EVENT_READ, c)

    def on_event(c):
        if c.state == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                fail(c, "connect", os.strerror(err))
                return
            c.port = c.sock.getsockname()[1]
            send(c)
            return
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            fail(c, "reset" if e.errno == errno.ECONNRESET else "recv", str(e))
            return
        if not data:
            fail(c, "eof", "end of stream after %d byte(s) of the response" % len(c.buf))
            return
        c.buf += data
        head_end = c.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = c.buf[:head_end].decode("latin-1").split("\r\n")
        length, close_after = 0, False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close_after = True
        if len(c.buf) < head_end + 4 + length:
            return
        body = c.buf[head_end + 4:head_end + 4 + length]
        status = head[0].split(" ")[1] if " " in head[0] else "?"
        now = time.monotonic()
        if status != "200":
            fail(c, "status", "status %s" % status)
            return
        if body not in accepted:
            fail(c, "body", "body %r" % body[:60])
            return
        counts["ok"] += 1
        latencies.append(now - c.started)
        ok_per_tick[int(now * 10)] += 1
        bodies[body.decode()] += 1
        c.responses += 1
        c.buf = c.buf[head_end + 4 + length:]
        if close_after:
            counts["closed_by_server"] += 1
            close(c)
            if now < until:
                open_conn()
            return
        if now >= until:
            close(c)
            return
        c.started = now
        counts["attempted"] += 1
        send(c)

    for _ in range(connections):
        open_conn()
    print("client started", flush=True)
    loop_gaps = []  # (t, s): this client's loop did not run for that long (the machine, not herd)
    last_loop = time.monotonic()
    while True:
        now = time.monotonic()
        if now - last_loop > 0.2:
            loop_gaps.append((last_loop, now - last_loop))
        last_loop = now
        conns = [key.data for key in sel.get_map().values()]
        if not conns:
            break
        if now >= until + REQUEST_TIMEOUT:
            break
        for key, _ in sel.select(timeout=0.05):
            on_event(key.data)
        now = time.monotonic()
        for c in [key.data for key in sel.get_map().values()]:
            if now - c.started > REQUEST_TIMEOUT and c.started < until:
                fail(c, "timeout", "no complete response in %.0f s (%s)" % (REQUEST_TIMEOUT, c.state))
    # What is still open at the end began after `until`, or is a request in flight at the end.
    abandoned = 0
    for key in list(sel.get_map().values()):
        c = key.data
        if c.started < until:
            abandoned += 1
            counts["attempted"] -= 1
        close(c)
    # A request that failed after `until` began before it: it counts.
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else float("nan")
    with open(out_path, "w") as f:
        json.dump({"counts": counts, "abandoned": abandoned, "failures": failures, "loop_gaps": loop_gaps,
                   "ok_per_tick": ok_per_tick, "bodies": bodies,
                   "latency": {"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999),
                               "max": latencies[-1] if latencies else float("nan")}}, f)


# ---------------------------------------------------------------- small clients

class Resp:
    """A minimal Redis (RESP2) client: enough for PING and pipelined HGET."""

    def __init__(self, port, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def close(self):
        self.file.close()
        self.sock.close()

    def send(self, *commands):
        out = []
        for cmd in commands:
            out.append(b"*%d\r\n" % len(cmd))
            for a in cmd:
                a = a if isinstance(a, bytes) else str(a).encode()
                out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def reply(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind in (b"+", b":"):
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("Redis: " + rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)
            return data[:-2].decode()
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError("Redis: unexpected reply %r" % line)

    def call(self, *cmd):
        self.send(cmd)
        return self.reply()


def control(path, request, timeout=20):
    """One request to herd's control socket: one JSON line out, one JSON line back."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def http_get(port, path, timeout=5):
    """GET on a new connection: (status, headers dict, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("GET %s HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n" % path).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body


# ---------------------------------------------------------------- the processes

class Redis:
    def __init__(self, folder):
        self.port = free_port()
        self.folder = folder
        self.proc = None

    def start(self):
        self.proc = Proc(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "yes", "--appendfsync", "always", "--dir", self.folder,
                          "--daemonize", "no", "--logfile", ""])
        deadline = time.monotonic() + 20
        while True:
            try:
                r = Resp(self.port, timeout=1)
                try:
                    if r.call("PING") == "PONG":
                        return
                finally:
                    r.close()
            except (OSError, RuntimeError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer within 20 s:\n" + "\n".join(self.proc.lines[-20:]))
            time.sleep(0.02)

    def stop(self, sig=signal.SIGTERM):
        if self.proc:
            self.proc.stop(sig)
            self.proc = None


class Herd(Proc):
    """herd run, its log kept in a file (with the monotonic time each line was read) and the
    workers it reported ready."""

    READY = re.compile(r"worker %s/(\d+) \(pid (\d+)\) ready" % APP)

    def __init__(self, cmd, log_path):
        self.log_file = open(log_path, "w")
        self.ready_pids = set()
        self.accept_pauses = []  # monotonic times of "pausing accept" lines
        self.no_state = []       # workers that started their plugins without the state
        super().__init__(cmd)

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            now = time.monotonic()
            self.log_file.write("%.3f %s\n" % (now, line))
            with self.cond:
                self.lines.append(line)
                if len(self.lines) > 5000:
                    del self.lines[:2500]
                m = self.READY.search(line)
                if m:
                    self.ready_pids.add(int(m.group(2)))
                if "pausing accept" in line:
                    self.accept_pauses.append(now)
                if "no state from the broker" in line:
                    self.no_state.append(line)
                self.cond.notify_all()
        self.log_file.flush()
        with self.cond:
            self.cond.notify_all()

    def children(self):
        try:
            with open("/proc/%d/task/%d/children" % (self.pid, self.pid)) as f:
                return [int(p) for p in f.read().split()]
        except OSError:
            return []

    def workers(self, exclude=()):
        out = []
        with self.cond:
            ready = set(self.ready_pids)
        for pid in self.children():
            if pid in exclude or pid not in ready:
                continue
            try:
                with open("/proc/%d/stat" % pid) as f:
                    stat = f.read()
            except OSError:
                continue
            # comm and state: never the broker, never a worker that died and is not reaped yet
            name, state = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2]
            if name == "herd-broker" or state in "ZX":
                continue
            out.append(pid)
        return out


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


_libc = ctypes.CDLL(None, use_errno=True)
SYS_pidfd_getfd = 438  # the same number on every architecture (syscalls added since Linux 5.1)


def client_ports_of(pid, port):
    """The client ports of `pid`'s TCP connections to our port. Each of its socket descriptors
    is copied into this process with pidfd_getfd(2) (Linux 5.6; the workers are this script's
    descendants), asked getsockname/getpeername and closed again at once. Where that is not
    allowed: /proc/net/tcp (inode -> ports), which the kernel hands out 4 KiB per read(), so an
    entry can be missed when sockets close between two reads."""
    try:
        return _ports_by_pidfd(pid, port)
    except PermissionError:
        return _ports_by_proc(pid, port)


def _socket_fds(pid):
    out = []
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:["):
                    out.append(int(fd))
            except OSError:
                continue
    except OSError:
        pass
    return out


def _ports_by_pidfd(pid, port):
    ports = set()
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return ports
    try:
        for fd in _socket_fds(pid):
            dup = _libc.syscall(SYS_pidfd_getfd, pidfd, fd, 0)
            if dup < 0:
                err = ctypes.get_errno()
                if err in (errno.EPERM, errno.ENOSYS, errno.EACCES):
                    raise PermissionError(err, os.strerror(err))
                continue  # closed meanwhile, or the process is gone
            s = socket.socket(fileno=dup)
            try:
                if s.family == socket.AF_INET and s.type == socket.SOCK_STREAM and s.getsockname()[1] == port:
                    ports.add(s.getpeername()[1])
            except OSError:
                pass
            finally:
                s.close()  # only this copy: the worker's descriptor stays as it was
    finally:
        os.close(pidfd)
    return ports


def _ports_by_proc(pid, port):
    by_inode = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] != "0A":  # 0A: LISTEN
                by_inode[int(fields[9])] = int(fields[2].rsplit(":", 1)[1], 16)
    ports = set()
    for fd in _socket_fds(pid):
        try:
            target = os.readlink("/proc/%d/fd/%d" % (pid, fd))
        except OSError:
            continue
        inode = int(target[8:-1])
        if inode in by_inode:
            ports.add(by_inode[inode])
    return ports


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


# ---------------------------------------------------------------- the report

def attribute(failures, events, fill):
    kills = [e for e in events if e["fault"] == "kill -9 worker"]
    out = []
    for f in failures:
        t, kind, port, opened = f[0], f[1], f[2], f[3]
        reason = None
        for k in kills:
            if port and port in k["ports"] and opened <= k["t"] <= t <= k["t"] + KILL_ATTRIBUTION_S:
                reason = "killed worker"
                break
        if reason is None and kind in ("reset", "eof", "send", "recv"):
            if any(k["t"] <= t <= k["t"] + NEAR_KILL_S for k in kills):
                reason = "near a kill"
        if reason is None and fill and fill[0] <= t <= fill[1] + FILL_GRACE_S:
            reason = "descriptor fill"
        out.append(reason or "other")
    return out


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d CPU(s) (nproc), %s" % (len(os.sched_getaffinity(0)), cpu)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


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


def report(soak, args, started, load_before, load_after, master_alive, settled, settle_error, exit_code):
    c = soak.client
    failures = c["failures"]
    reasons = attribute(failures, soak.events, soak.fill)
    by_reason = collections.Counter(reasons)
    by_kind = collections.defaultdict(collections.Counter)
    for f, r in zip(failures, reasons):
        by_kind[r][f[1]] += 1
    ev = collections.Counter(e["fault"] for e in soak.events)
    writes = collections.Counter(w[2] for w in soak.writes)
    refusals = collections.Counter(re.sub(r"\d+", "N", w[3]) for w in soak.writes if w[2] != "acknowledged")
    v = getattr(soak, "verified", None)
    # The longest time without a successful response, from the per-100 ms counts.
    ticks = {int(k): n for k, n in c["ok_per_tick"].items()}
    first, last = int(soak.t0 * 10) + 1, int(soak.until * 10)
    stalls, run_start = [], None   # (start tick, length in ticks) of runs without a success
    for tick in range(first, last + 1):
        if tick < last and ticks.get(tick, 0) == 0:
            run_start = tick if run_start is None else run_start
        elif run_start is not None:
            stalls.append((run_start, tick - run_start))
            run_start = None
    longest = max(stalls, key=lambda st: st[1]) if stalls else (first, 0)
    reloads_ok = sum(1 for r in soak.reload_results if r[2] == 0)
    worker_kills = ev["kill -9 worker"]

    def kinds(r):
        k = by_kind.get(r)
        return " (%s)" % ", ".join("%s %d" % kv for kv in sorted(k.items())) if k else ""

    rows = [
        ("duration", "%.0f s under load, %d workers, %d keep-alive connections, RLIMIT_NOFILE %d, seed %d"
         % (args.seconds, args.workers, args.connections, args.nofile, args.seed)),
        ("faults injected", "%d worker kill -9 (every %.0f ms), %d SIGSTOP of 1 s, %d broker kill -9, "
         "%d Redis restarts (SIGTERM, SIGKILL), %d reloads (%d of %d attempts answered ok), "
         "descriptor fill: %s connections held 3 s, %d \"pausing accept\" warnings"
         % (worker_kills, args.kill_every * 1000, ev["SIGSTOP worker"], ev["kill -9 broker"],
            ev["Redis started"], len({r[0] for r in soak.reload_results}), reloads_ok, len(soak.reload_results),
            soak.fill_stats.get("opened", "no"), soak.fill_stats.get("accept_pauses", 0))),
        ("requests sent", "%d" % c["counts"]["attempted"]),
        ("succeeded", "%d (p50 %.1f ms, p99 %.1f ms, max %.0f ms)"
         % (c["counts"]["ok"], c["latency"]["p50"] * 1000, c["latency"]["p99"] * 1000,
            c["latency"]["max"] * 1000)),
        ("longest time without a successful response", "%s; %d stretch(es) of 300 ms or more; "
         "the load client's own loop stood still over 200 ms %d time(s)"
         % ("%d ms (from %.1f s)" % (longest[1] * 100, longest[0] / 10 - soak.t0) if longest[1]
            else "under 100 ms", sum(1 for st in stalls if st[1] >= 3),
            sum(1 for g in c["loop_gaps"] if soak.t0 <= g[0] <= soak.until))),
        ("failed", "%d" % len(failures)),
        ("answered with Connection: close (reloads; not failures)", "%d" % c["counts"]["closed_by_server"]),
        ("failed: on a worker killed by kill -9", "%d%s" % (by_reason["killed worker"], kinds("killed worker"))),
        ("failed: within %.1f s of a kill -9, socket not seen" % NEAR_KILL_S,
         "%d%s" % (by_reason["near a kill"], kinds("near a kill"))),
        ("failed: during the descriptor fill", "%d%s" % (by_reason["descriptor fill"], kinds("descriptor fill"))),
        ("failed: not explained by a fault", "%d%s" % (by_reason["other"], kinds("other"))),
        ("state writes sent", "%d (acknowledged %d, refused %d, unanswered %d)" % (
            len(soak.writes), writes["acknowledged"], writes["refused"], writes["unanswered"])),
    ]
    if v:
        rows += [
            ("acknowledged writes present at the end", "%d of %d by `herd state get`, %d of %d in Redis (HGET)" % (
                v["acknowledged"] - len(v["lost_cli"]), v["acknowledged"],
                v["acknowledged"] - len(v["lost_redis"]), v["acknowledged"])),
            ("acknowledged writes lost", "%d" % len(v["lost"])),
            ("refused or unanswered writes present anyway", "%d of %d (allowed: a write whose confirmation "
             "was lost may have been applied)" % (v["not_acked_present"], v["not_acked"])),
            ("workers' copies", "%d workers read, %d key(s) each (the last acknowledged + a sample): %s" % (
                len(v["workers_checked"]), v["sample"],
                "all present" if not v["workers_missing"] and not v["workers_unreached"]
                else "missing %s, unreached %s" % (v["workers_missing"], v["workers_unreached"]))),
        ]
    else:
        rows.append(("acknowledged writes present at the end", "not checked: %s" % (settle_error or "master gone")))
    rows.append(("workers that started without the state", "%d (herd log: \"no state from the broker\")"
                 % len(soak.herd.no_state)))
    rows.append(("master", "%s; exit code %s on SIGTERM" % (
        "ran throughout" if master_alive else "EXITED during the soak", exit_code)))
    rows.append(("machine", "%s; load average %s before, %s after" % (machine(), load_before, load_after)))

    print("\n| soak, %s | |" % started.strftime("%Y-%m-%d %H:%M"))
    print("| --- | --- |")
    for k, val in rows:
        print("| %s | %s |" % (k, val))
    if refusals:
        print("\nrefused or unanswered writes, by reason:")
        for reason, n in refusals.most_common():
            print("  %5d  %s" % (n, reason))
    if v and v["lost"]:
        print("\nLOST acknowledged writes (key, written, herd state get, its error, Redis, written at s):")
        for row in v["lost"][:50]:
            print("  %r" % (row,))
    if soak.herd.no_state:
        print("\nworkers that started their plugins without the state (herd log):")
        for line in soak.herd.no_state:
            print("  " + line)
    other = [(f, r) for f, r in zip(failures, reasons) if r == "other"]
    if other:
        print("\nfailures not explained by a fault (t since start, kind, port, detail):")
        for f, _ in other[:50]:
            print("  %8.3f s  %-8s port %-5d  %s" % (f[0] - soak.t0, f[1], f[2], f[5]))
    if stalls:
        print("\nstretches of 300 ms or more without a successful response (from s, ms):")
        for st in stalls:
            if st[1] >= 3:
                print("  %7.1f s  %5d ms" % (st[0] / 10 - soak.t0, st[1] * 100))
    gaps = [g for g in c["loop_gaps"] if soak.t0 <= g[0] <= soak.until]
    print("\nthe load client's own loop stood still for over 200 ms %d time(s)%s" % (
        len(gaps), ": " + ", ".join("%.1f s (%d ms)" % (g[0] - soak.t0, g[1] * 1000) for g in gaps[:20]) if gaps else ""))
    print("\nbodies: %s" % dict(c["bodies"]))
    print("reloads: %s" % [(g, a, code, out.replace("\n", " | ")) for g, a, code, out in soak.reload_results])

    res = args.results
    with open(os.path.join(res, "soak.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["measure", "value"])
        w.writerow(["date", started.isoformat(timespec="seconds")])
        for k, val in rows:
            w.writerow([k, val])
        w.writerow(["requests_sent", c["counts"]["attempted"]])
        w.writerow(["requests_ok", c["counts"]["ok"]])
        w.writerow(["requests_failed", len(failures)])
        for r in ("killed worker", "near a kill", "descriptor fill", "other"):
            w.writerow(["failed_" + r.replace(" ", "_"), by_reason[r]])
        w.writerow(["writes_acknowledged", writes["acknowledged"]])
        w.writerow(["writes_lost", len(v["lost"]) if v else "not checked"])
    with open(os.path.join(res, "soak_events.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "fault", "detail", "client_ports"])
        for e in sorted(soak.events, key=lambda e: e["t"]):
            w.writerow(["%.3f" % (e["t"] - soak.t0), e["fault"], e["detail"], " ".join(map(str, sorted(e["ports"])))])
    with open(os.path.join(res, "soak_failures.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "kind", "client_port", "connection_age_s", "responses_before", "attribution", "detail"])
        for fl, r in zip(failures, reasons):
            w.writerow(["%.3f" % (fl[0] - soak.t0), fl[1], fl[2], "%.3f" % (fl[0] - fl[3]), fl[4], r, fl[5]])
    with open(os.path.join(res, "soak_writes.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "key", "outcome", "detail"])
        for wr in soak.writes:
            w.writerow(["%.3f" % (wr[4] - soak.t0), wr[0], wr[2], wr[3]])
    with open(os.path.join(res, "soak_timeline.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "ok_per_100ms", "failed_per_100ms"])
        failed_ticks = collections.Counter(int(fl[0] * 10) for fl in failures)
        for tick in range(first, last):
            w.writerow(["%.1f" % (tick / 10 - soak.t0), ticks.get(tick, 0), failed_ticks.get(tick, 0)])
    log("soak: results in %s (soak.csv, soak_events.csv, soak_failures.csv, soak_writes.csv, soak_timeline.csv, "
        "soak-herd.log)" % res)


if __name__ == "__main__":
    main()
