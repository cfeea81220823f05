"""What the benchmark scripts share: starting and always stopping servers, wrk, CPU time of a
process tree from /proc, memory from smaps_rollup. Python standard library only."""
import atexit
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Every process group started here, killed on any exit (normal, exception, Ctrl-C, SIGTERM).
_groups = set()


def _kill_all():
    for pgid in list(_groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    _groups.clear()


atexit.register(_kill_all)


def _on_signal(sig, _frame):
    raise SystemExit(128 + sig)  # unwinds through every finally, then atexit


for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def med(values, fmt="%.0f"):
    """The median of the rounds' figures (NaN left out), with their range when there are
    several: "120 (110–130)"."""
    import statistics
    values = [v for v in values if v == v]
    if not values:
        return "n/a"
    m = statistics.median(values)
    if len(values) == 1:
        return fmt % m
    return (fmt + " (" + fmt + "–" + fmt + ")") % (m, min(values), max(values))


def first_line(cmd):
    """The first line a command prints (a version), or "?"."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        return p.stdout.decode("utf-8", "replace").strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("server exited (code %s) before listening on %d" % (proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("nothing listening on 127.0.0.1:%d after %ss" % (port, timeout))


class Proc:
    """A server process in its own process group (its session), with its output read by a
    thread so that it never blocks on a full pipe. Lines matching `watch` are kept with the
    time they were read. user: run as that user (PostgreSQL refuses root)."""

    def __init__(self, cmd, env=None, cwd=None, watch=None, user=None):
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, user=user,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        _groups.add(self.pid)
        self.watch = re.compile(watch) if watch else None
        self.lines = []      # every line, for error messages
        self.matches = []    # (monotonic time, match) for lines matching watch
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            now = time.monotonic()
            with self.cond:
                self.lines.append(line)
                if len(self.lines) > 2000:
                    del self.lines[:1000]
                if self.watch:
                    m = self.watch.search(line)
                    if m:
                        self.matches.append((now, m))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, predicate, timeout=20, what="a line"):
        """Waits until predicate(lines) is true; returns its value."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = predicate()
                if v:
                    return v
                if self.proc.poll() is not None:
                    raise RuntimeError("%s exited (code %s) waiting for %s:\n%s" % (
                        self.cmd[0], self.proc.returncode, what, "\n".join(self.lines[-20:])))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("%s: no %s within %ss:\n%s" % (self.cmd[0], what, timeout, "\n".join(self.lines[-20:])))
                self.cond.wait(min(left, 0.2))

    def wait_matches(self, count, timeout=20):
        return self.wait_for(lambda: len(self.matches) >= count and self.matches[count - 1], timeout,
                             "line %d matching %r" % (count, self.watch.pattern if self.watch else ""))

    def stop(self, sig=signal.SIGTERM, timeout=15):
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    log("%s did not stop within %ss: killing its process group" % (self.cmd[0], timeout))
        finally:
            try:
                os.killpg(self.pid, signal.SIGKILL)  # whatever it left behind
            except OSError:
                pass
            self.proc.wait()
            _groups.discard(self.pid)


def process_tree(root):
    """root and all its descendants (from /proc/*/stat)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def pin_tree(root, cpus):
    """Sets the CPU affinity of root, its descendants and all their threads."""
    for pid in process_tree(root):
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(int(tid), cpus)
            except OSError:
                pass  # gone meanwhile


def cpu_seconds(root):
    """utime + stime of root and every live descendant (all their threads), in seconds."""
    ticks = 0
    for pid in process_tree(root):
        try:
            with open("/proc/%d/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / CLK_TCK


def tcp_active_opens():
    """Connections opened by clients on this machine so far (/proc/net/snmp Tcp ActiveOpens)."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])


def smaps_rollup(pid):
    """Rss, Pss and private (clean + dirty) memory of pid, in kB."""
    values = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            m = re.match(r"(\w+):\s+(\d+) kB", line)
            if m:
                values[m.group(1)] = int(m.group(2))
    return {"rss_kb": values["Rss"], "pss_kb": values["Pss"],
            "private_kb": values["Private_Clean"] + values["Private_Dirty"]}


_SCALE_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def nginx_command(tmp, port, workers=1, single_process=False, body="Hello, World!"):
    """Writes an nginx config into tmp answering every request with 200 and `body` (access log
    off) and returns the command that runs it in the foreground. single_process: no master,
    the one process serves (`master_process off`, for profiling)."""
    user = ""
    if os.geteuid() == 0:  # as root nginx would switch its workers to nobody: stay this user
        import grp
        import pwd
        user = "user %s %s;" % (pwd.getpwuid(0).pw_name, grp.getgrgid(os.getegid()).gr_name)
    mode = "master_process off;" if single_process else "worker_processes %d;" % workers
    conf = f"""{user}
{mode}
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  # nginx closes a keep-alive connection after 1000 requests by default; herd, h2o and Node
  # do not, so neither does nginx here.
  keepalive_requests 1000000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type text/plain; return 200 "{body}"; }}
  }}
}}
"""
    path = os.path.join(tmp, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return ["nginx", "-p", tmp, "-c", path, "-e", os.path.join(tmp, "nginx-error.log")]


def wrk(port, seconds, close=False, connections=64, path="/", cpus=None, script=None):
    """Runs wrk -t1 against 127.0.0.1:port (on the CPUs `cpus` if given, with the Lua `script`
    if given); returns a dict of its figures."""
    cmd = ["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, "--latency"]
    if close:
        cmd += ["-H", "Connection: close"]
    if script:
        cmd += ["-s", script]
    cmd.append("http://127.0.0.1:%d%s" % (port, path))
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         timeout=seconds + 60, preexec_fn=pin).stdout.decode("utf-8", "replace")
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        raise RuntimeError("wrk gave no totals:\n" + out)
    res = {"requests": int(m.group(1)), "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    res["p99_ms"] = float(m.group(1)) * _SCALE_MS[m.group(2)] if m else float("nan")
    m = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    res["p50_ms"] = float(m.group(1)) * _SCALE_MS[m.group(2)] if m else float("nan")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    res["connect_errors"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    return res


def start_herd(build, tmp, workers, plugin):
    """Runs build's herd with one app "bench" of `workers` workers serving `plugin` (a
    plugins[] entry) on a free port of 127.0.0.1, quietly; returns (Proc, port) once every
    worker is up."""
    port = free_port()
    config = {"log_level": "warn", "allow_root": os.geteuid() == 0, "control": os.path.join(tmp, "herd.sock"),
              "apps": [{"name": "bench", "listen": "127.0.0.1:%d" % port, "workers": workers,
                        "plugins": [plugin]}]}
    path = os.path.join(tmp, "herd.json")
    with open(path, "w") as f:
        json.dump(config, f)
    proc = Proc([os.path.join(build, "server", "herd"), "run", path])
    wait_port(port, proc.proc)
    deadline = time.monotonic() + 20
    while len(process_tree(proc.pid)) < 1 + workers:
        if time.monotonic() > deadline:
            raise RuntimeError("herd: %d workers not up" % workers)
        time.sleep(0.05)
    return proc, port
