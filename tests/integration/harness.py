"""Integration-test harness: starts the real herd binary, waits on its log lines (never on
sleeps), and offers plain-socket HTTP helpers that see exactly what herd sends (those are in
http_client.py, the scaled timeouts in timeouts.py; harness re-exports both).

Environment (set by meson test):
  HERD_BIN             path to build/server/herd
  HERD_PLUGIN_DIR      folder with the built plugins (libhello.so, libprobe.so, ...)
  HERD_TIMEOUT_SCALE   multiplies every timeout, for slow machines (default 1)
  HERD_KEEP_TMP        keep temp dirs even when a test passes
"""
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

# Re-exported: the tests use them as harness.timeout, harness.Client, `from harness import ...`.
from http_client import Client, KeepAliveLoad, Response, burst, get  # noqa: F401
from timeouts import SCALE, ms, timeout  # noqa: F401

HERD_BIN = os.environ.get("HERD_BIN", "build/server/herd")
PLUGIN_DIR = os.environ.get("HERD_PLUGIN_DIR", "build/plugins")
SANITIZER_REPORT = re.compile(r"ERROR: (Address|Leak|Undefined)Sanitizer|runtime error: ")


def plugin(name):
    return os.path.join(PLUGIN_DIR, "lib%s.so" % name)


def app(name="web", workers=2, plugins=None, **extra):
    """One app entry listening on a kernel-chosen port of 127.0.0.1."""
    entry = {
        "name": name,
        "listen": "127.0.0.1:0",
        "workers": workers,
        "plugins": plugins if plugins is not None else [{"mount": "/", "path": plugin("hello")}],
    }
    entry.update(extra)
    return entry


def with_root_allowed(config):
    """The tests run as root on CI machines: herd refuses to run plugins as root unless the
    config says "allow_root" (or names a "user"). Added here unless the test chose itself."""
    if os.geteuid() == 0 and isinstance(config, dict) and "user" not in config \
            and "allow_root" not in config:
        config = dict(config, allow_root=True)
    return config


class Herd:
    """A herd master run in the background. Use as a context manager."""

    def __init__(self, config, tmpdir=None, args=None, nofile=None, wait_ready=True, env=None,
                 wrapper=None):
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix="herd-test-")
        self.config_path = os.path.join(self.tmpdir, "herd.json")
        config = with_root_allowed(config)
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=2)
        self.args = args
        self.env = env  # added to the environment herd starts with
        self.wrapper = wrapper or []  # a command herd runs under ("ip netns exec NAME")
        self.nofile = nofile  # RLIMIT_NOFILE for herd and its workers, to provoke EMFILE
        self.starved = False  # set_master_nofile() took the master's descriptors away
        self.wait_ready = wait_ready  # used by `with`: wait for "all apps ready" 
        self.proc = None
        self.lines = []
        self.cond = threading.Condition()
        self.reader = None

    # -- process --------------------------------------------------------------------------
    def start(self, wait_ready=True):
        self.proc = subprocess.Popen(
            self.wrapper + [HERD_BIN, "run", self.config_path] + (self.args or []),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=self.tmpdir, preexec_fn=self._limits if self.nofile else None,
            env=dict(os.environ, **self.env) if self.env else None)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if wait_ready:
            try:
                self.wait_for(r"all apps ready")
            except BaseException:
                # `with` calls no __exit__ when __enter__ raises: nothing may be left running.
                self.kill()
                raise
        return self

    def _limits(self):
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def set_master_nofile(self, soft):
        """Sets the running master's RLIMIT_NOFILE soft limit (prlimit: its live children keep
        theirs) and returns the one it had. At 3 or below it can open no descriptor at all,
        whichever it closes meanwhile: a shortage that lasts until the test ends it."""
        old_soft, hard = resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(self.proc.pid, resource.RLIMIT_NOFILE, (soft, hard))
        self.starved = True
        return old_soft

    def cpu_seconds(self):
        """The master's CPU time so far, user and system (/proc/PID/stat utime + stime)."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<eof>")
            self.cond.notify_all()

    def wait_for(self, pattern, after=0, seconds=10):
        """Waits for a log line matching pattern (regex) at index >= after; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout(seconds)
        i = after
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    if self.lines[i] == "<eof>":
                        raise AssertionError("herd exited before logging /%s/; log:\n%s" % (pattern, self.log()))
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for /%s/; log:\n%s" % (pattern, self.log()))
                self.cond.wait(left)

    def mark(self):
        """Index of the next log line: pass to wait_for(after=...) to see only new lines."""
        with self.cond:
            return len(self.lines)

    def count(self, pattern):
        rx = re.compile(pattern)
        with self.cond:
            return sum(1 for l in self.lines if rx.search(l))

    def matches(self, pattern):
        rx = re.compile(pattern)
        with self.cond:
            return [m for m in (rx.search(l) for l in self.lines) if m]

    def log(self):
        with self.cond:
            return "\n".join(self.lines)

    def port(self, app_name="web"):
        m = self.wait_for(r'app "%s" listening on 127\.0\.0\.1:(\d+)' % re.escape(app_name))
        return int(m.group(1))

    def children(self):
        """Pids of the master's live children, from /proc (no guessing from logs)."""
        pids = []
        for task in os.listdir("/proc/%d/task" % self.proc.pid):
            try:
                with open("/proc/%d/task/%s/children" % (self.proc.pid, task)) as f:
                    pids += [int(p) for p in f.read().split()]
            except FileNotFoundError:
                pass
        return sorted(pids)

    def worker_pids(self):
        """Pids of the master's workers: its children but the state broker."""
        return [p for p in self.children() if comm(p) != "herd-broker"]

    def broker_pid(self):
        pids = [p for p in self.children() if comm(p) == "herd-broker"]
        return pids[0] if pids else None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, seconds=15):
        """Waits for the master to exit and for its whole log to be read; returns the code."""
        try:
            code = self.proc.wait(timeout(seconds))
        except subprocess.TimeoutExpired:
            raise AssertionError("herd did not exit within %ss; log:\n%s" % (seconds, self.log()))
        # Workers may still hold the pipe for a moment after the master is gone.
        if self.reader:
            self.reader.join(timeout(seconds))
        return code

    def stop(self, seconds=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            return self.wait_exit(seconds)
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _sanitizer_reports(self):
        lines = self.lines
        reports = [i for i, l in enumerate(lines) if SANITIZER_REPORT.search(l)]
        if (self.nofile or self.starved) and any("EMFILE" in l for l in lines):
            # UBSan checks a vptr by reading the vtable through a pipe; with no descriptor
            # left it cannot make one and reports any virtual call as "invalid vptr", memory
            # unprintable (a ten-line program that exhausts its descriptors, then calls a
            # member function, gets the same report). Only that exact shape is excused, and
            # only for a herd run whose descriptors the test exhausts on purpose.
            def exhausted_vptr_check(i):
                near = " ".join(lines[i + 1:i + 4])
                return ("runtime error: member call on address" in lines[i]
                        and "object has invalid vptr" in near
                        and "<memory cannot be printed>" in near)
            reports = [i for i in reports if not exhausted_vptr_check(i)]
        return [lines[i] for i in reports]

    def __enter__(self):
        return self.start(wait_ready=self.wait_ready)

    def __exit__(self, *exc):
        self.kill()
        if self.reader:
            self.reader.join(timeout(5))
        # In a sanitizer build a worker's report reaches only its log: it fails the test.
        reports = self._sanitizer_reports()
        if reports and exc[0] is None:
            sys.stderr.write("---- herd log (temp dir %s kept) ----\n%s\n" % (self.tmpdir, self.log()))
            raise AssertionError("sanitizer report in herd's log: %s" % reports[0])
        if exc[0] is not None:
            sys.stderr.write("---- herd log (temp dir %s kept) ----\n%s\n" % (self.tmpdir, self.log()))
        elif not os.environ.get("HERD_KEEP_TMP"):
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        return False


def raise_nofile(n):
    """Raises this process's RLIMIT_NOFILE soft limit to n if the hard limit allows; True when
    it is at least n (a test opening thousands of connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= n


def run_herd(*args, seconds=30):
    """Runs `herd ARGS...` to completion: (exit code, combined output)."""
    p = subprocess.run([HERD_BIN] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout(seconds))
    return p.returncode, p.stdout.decode("utf-8", "replace")


def comm(pid):
    """A process's name (/proc/PID/comm), or None when it is gone."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(predicate, seconds=10, what="condition"):
    """Polls a cheap predicate (a /proc read) with a short back-off; for process states only,
    where no log line or socket can be waited on."""
    deadline = time.monotonic() + timeout(seconds)
    delay = 0.005
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def wait_until_value(fn, seconds=10, what="condition"):
    """wait_until for a function whose value is wanted: polls it until the value is truthy
    and returns that value."""
    box = {}

    def truthy():
        box["value"] = fn()
        return bool(box["value"])
    wait_until(truthy, seconds, what)
    return box["value"]


def wait_metrics(port, wanted, what="the figures in /metrics"):
    """Polls /metrics on port until every line in `wanted` (bytes) is there; returns the body
    (the master shows each worker's figures as of its last heartbeat, one a second)."""
    seen = {}

    def reported():
        seen["body"] = get(port, "/metrics").body
        return all(line in seen["body"] for line in wanted)
    wait_until(reported, what=what)
    return seen["body"]


class HerdTestCase(unittest.TestCase):
    """One herd per test class; its log is printed and its temp dir kept if any test failed."""
    config = None
    herd = None
    failed = False

    @classmethod
    def setUpClass(cls):
        cls.failed = False
        cls.herd = Herd(cls.config)
        try:
            cls.herd.start()
            cls.port = cls.herd.port()
        except BaseException:
            cls.herd.__exit__(AssertionError, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.failed:
            cls.herd.__exit__(AssertionError, AssertionError("a test failed"), None)
        else:
            cls.herd.__exit__(None, None, None)

    def run(self, result=None):
        before = (len(result.failures), len(result.errors)) if result else None
        out = super().run(result)
        if result and (len(result.failures), len(result.errors)) != before:
            type(self).failed = True
        return out

    def client(self):
        c = Client(self.port)
        self.addCleanup(c.close)
        return c


class Events:
    """`herd events --json` against a running Herd: wait_for(event, **fields) returns the
    first event (a dict) at or after index `after` with that name and those field values.
    Tests wait on these rather than on log wording. Use as a context manager."""

    def __init__(self, herd):
        self.herd = herd
        self.events = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen([HERD_BIN, "events", "--json", "-c", herd.config_path],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.wait_for("events.subscribed")  # nothing after this is missed

    def _read(self):
        for raw in self.proc.stdout:
            event = json.loads(raw)
            with self.cond:
                self.events.append(event)
                self.cond.notify_all()
        with self.cond:
            self.events.append(None)  # the stream ended
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.events)

    def wait_for(self, name, after=0, seconds=10, **fields):
        deadline = time.monotonic() + timeout(seconds)
        i = after
        with self.cond:
            while True:
                while i < len(self.events):
                    e = self.events[i]
                    if e is None:
                        raise AssertionError("the event stream ended before %s %s; events:\n%s" %
                                             (name, fields, self._dump()))
                    if e.get("event") == name and all(e.get(k) == v for k, v in fields.items()):
                        return e
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for event %s %s; events:\n%s" %
                                         (name, fields, self._dump()))
                self.cond.wait(left)

    def seen(self, name, after=0, **fields):
        """The events so far (at or after index `after`) with that name and those field values;
        waits for none: for what must not have happened."""
        with self.cond:
            return [e for e in self.events[after:] if e is not None and e.get("event") == name
                    and all(e.get(k) == v for k, v in fields.items())]

    def ended(self, seconds=10):
        """Waits for the stream's end (herd stopped); returns `herd events`' exit code."""
        return self.proc.wait(timeout(seconds))

    def _dump(self):
        return "\n".join(json.dumps(e) for e in self.events)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(timeout(5))  # it reads to the end of the pipe: not closed under it
        self.proc.stdout.close()
        self.proc.stderr.close()


def wait_answers(results, lock, count):
    """Waits until a burst() has collected at least `count` answers."""
    def enough():
        with lock:
            return len(results) >= count
    wait_until(enough, what="%d answers" % count)


def main():
    unittest.main(verbosity=2)
