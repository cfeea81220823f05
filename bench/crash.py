#!/usr/bin/env python3
"""Crash recovery, herd next to a Node.js cluster on the same machine:

1. crash to ready: a worker is killed (SIGKILL) 100 times; the time from the kill to the
   replacement's ready line (herd: "... ready", Node: cluster 'listening'), median and p99.
   Measured in this script from os.kill() to reading the line, so it includes the log pipe.
   herd runs with "restart_backoff_ms": 0, so that repeated kills of the same slot measure
   the mechanism rather than the back-off that would slow them down in production.
2. failed requests under load: wrk -c16 for 10 s while a crash happens every 100 ms, either
   an exception in a handler (herd: /probe/throw, Node: a throw in the handler) or SIGKILL of a
   worker. Failed = wrk's socket errors + non-2xx responses; the crashing requests themselves
   are sent outside wrk and not counted.

A benchmark: it prints figures, it passes or fails nothing.
usage: bench/crash.py [--crashes 100] [--seconds 10]
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, cmd, env, ready_rx):
        self.ready_rx = re.compile(ready_rx)
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.cond = threading.Condition()
        self.ready = []  # (monotonic time seen, pid)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            m = self.ready_rx.search(raw.decode("utf-8", "replace"))
            if m:
                with self.cond:
                    self.ready.append((time.monotonic(), int(m.group(1))))
                    self.cond.notify_all()

    def wait_ready(self, count, timeout=20):
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.ready) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("no ready line within %ss" % timeout)
                self.cond.wait(left)
            return self.ready[count - 1]

    def workers(self):
        with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
            return [int(p) for p in f.read().split()]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_herd(port, tmp):
    build = os.path.join(ROOT, "build")
    # Back-off off: the benchmark kills the same slots again and again, which herd's default
    # policy (rightly) slows down; what is measured here is the mechanism, crash to ready.
    config = {"allow_root": os.geteuid() == 0, "apps": [{"name": "bench", "listen": "127.0.0.1:%d" % port, "workers": 2, "restart_backoff_ms": 0,
                        "plugins": [{"mount": "/", "path": os.path.join(build, "plugins", "libhello.so")},
                                    {"mount": "/probe", "path": os.path.join(build, "plugins", "libprobe.so")}]}]}
    path = os.path.join(tmp, "crash.json")
    with open(path, "w") as f:
        json.dump(config, f)
    s = Server([os.path.join(build, "server", "herd"), "run", path], dict(os.environ),
               r"worker bench/\d \(pid (\d+)\) ready")
    s.wait_ready(2)
    return s, "/probe/throw"


def start_node(port, tmp):
    s = Server(["node", os.path.join(ROOT, "bench", "peers", "node-cluster.js")],
               dict(os.environ, PORT=str(port), WORKERS="2"), r"ready (\d+)")
    s.wait_ready(2)
    return s, "/throw"


def crash_to_ready(server, crashes):
    times = []
    for i in range(crashes):
        seen = len(server.ready)
        victim = server.workers()[0]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        t1, _ = server.wait_ready(seen + 1)
        times.append((t1 - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def failures_under_load(server, port, throw_path, mode, seconds):
    stop = threading.Event()

    def crasher():
        while not stop.is_set():
            try:
                if mode == "exception":
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                        c.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % throw_path).encode())
                        c.recv(4096)  # herd: a 500; Node: the connection dies
                else:
                    os.kill(server.workers()[0], signal.SIGKILL)
            except OSError:
                pass
            stop.wait(0.1)

    t = threading.Thread(target=crasher)
    t.start()
    out = subprocess.run(["wrk", "-t1", "-c16", "-d%ds" % seconds, "http://127.0.0.1:%d/" % port],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()
    stop.set()
    t.join()
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise RuntimeError("wrk gave no totals:\n" + out)
    total = int(m.group(1))
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    return errors, total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--crashes", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="herd-crash-")
    rows = []
    for name, start in (("herd (2 workers)", start_herd), ("Node cluster (2 workers)", start_node)):
        port = free_port()
        server, throw_path = start(port, tmp)
        try:
            median, p99 = crash_to_ready(server, args.crashes)
            exc = failures_under_load(server, port, throw_path, "exception", args.seconds)
            kill = failures_under_load(server, port, throw_path, "kill", args.seconds)
        finally:
            server.stop()
        rows.append((name, median, p99, exc, kill))
        print("%s: crash to ready median %.2f ms, p99 %.2f ms; exceptions: %d of %d failed; SIGKILL: %d of %d failed"
              % (name, median, p99, exc[0], exc[1], kill[0], kill[1]), file=sys.stderr)
    print("\n| server | crash to ready, median | p99 | failed requests, an exception every 100 ms for %d s | failed requests, a SIGKILL every 100 ms for %d s |" % (args.seconds, args.seconds))
    print("| --- | --- | --- | --- | --- |")
    for name, median, p99, exc, kill in rows:
        print("| %s | %.2f ms | %.2f ms | %d of %d | %d of %d |" % (name, median, p99, exc[0], exc[1], kill[0], kill[1]))


if __name__ == "__main__":
    main()
