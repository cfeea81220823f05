"""What the soak (bench/soak.py) starts and talks to: a minimal Redis client, herd's control
socket, one-off HTTP GETs, redis-server and herd run as processes (herd's log kept with the
monotonic time of each line), and the client ports connected to a worker at a given moment."""
import ctypes
import errno
import json
import os
import re
import signal
import socket
import time

from benchlib import Proc, free_port

PREFIX = "soak:"
APP = "soak"


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
