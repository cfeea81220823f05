"""Hostile clients against one worker: slowloris, trickled bodies, 5000 idle connections,
request smuggling, oversized request lines, header floods, pipelined floods that never read,
and clients that reset in the middle of a response. For each: the right status or a closed
connection, bounded memory, no descriptor left behind, and ordinary clients served by the same
worker at the same time, measured in the same test.

One worker on purpose: every attack shares the event loop with the ordinary clients.
Each test prints one "hostile:" line with what it measured (the README's Hardening table).
"""
import os
import resource
import select
import socket
import struct
import threading
import time

import harness
from harness import Client

SCALE = harness.SCALE
HEADER_TIMEOUT_MS = int(500 * SCALE)
MAX_BODY = 2 << 20
IDLE_CONNECTIONS = 5000


def report(what, **facts):
    print("hostile: %s: %s" % (what, ", ".join("%s=%s" % kv for kv in facts.items())), flush=True)


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def rss_kb(pid):
    return proc_status(pid, "VmRSS")


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def sanitized(pid):
    """True in an ASan build: its allocator keeps freed memory in quarantine, so RSS bounds
    are looser there."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read() or os.environ.get("HERD_SANITIZED") == "1"


def reset_close(sock):
    """Closes with SO_LINGER 0: the kernel sends a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_until_closed(sock, limit=1 << 20):
    """Everything the server sends until it closes (EOF or reset), at most `limit` bytes."""
    data = b""
    try:
        while len(data) < limit:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data


def statuses(data):
    """Status codes of the responses in raw bytes (each starts a line with HTTP/1.x)."""
    out = []
    for line in data.split(b"\r\n"):
        if line.startswith(b"HTTP/1.") and len(line) >= 12:
            out.append(int(line[9:12]))
    return out


class Ordinary(threading.Thread):
    """An ordinary client running beside an attack: requests one after another, alternately on
    a kept-alive connection and on a new one, each checked in full. Records failures and the
    slowest answer; never fails on speed, only on a request not served correctly (or not
    within the generous socket timeout)."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.served = 0
        self.failures = []
        self.slowest = 0.0
        self.lock = threading.Lock()

    def one(self, keep):
        started = time.monotonic()
        try:
            if keep is None:
                with Client(self.port, seconds=10) as c:
                    r = c.request("GET", "/", headers={"Connection": "close"})
            else:
                r = keep.request("GET", "/")
            if (r.status, r.body) != (200, b"Hello, World!"):
                raise AssertionError("unexpected answer %r" % r)
            with self.lock:
                self.served += 1
                self.slowest = max(self.slowest, time.monotonic() - started)
        except Exception as e:  # any failure is recorded, the test asserts there is none
            with self.lock:
                self.failures.append(repr(e))
            return False
        return True

    def run(self):
        keep = None
        while not self.stop.is_set():
            if keep is None:
                try:
                    keep = Client(self.port, seconds=10)
                except OSError as e:
                    with self.lock:
                        self.failures.append(repr(e))
                    continue
            if not self.one(keep):
                keep.close()
                keep = None
            self.one(None)
        if keep is not None:
            keep.close()

    def count(self):
        with self.lock:
            return self.served

    def wait_served(self, more, seconds=10):
        """Waits until this client has been served `more` further requests: proof that the
        worker answers ordinary clients at this moment of the attack."""
        target = self.count() + more
        harness.wait_until(lambda: self.count() >= target or self.failures, seconds,
                           "%d more ordinary requests" % more)

    def finish(self, test):
        self.stop.set()
        self.join(harness.timeout(30))
        test.assertFalse(self.is_alive(), "the ordinary client is stuck")
        test.assertEqual(self.failures, [], "ordinary requests failed during the attack")
        test.assertGreater(self.served, 0)
        return self.served


class TestHostile(harness.HerdTestCase):
    config = {"apps": [harness.app(
        workers=1,
        plugins=[{"mount": "/", "path": harness.plugin("hello")},
                 {"mount": "/echo", "path": harness.plugin("echo")},
                 {"mount": "/probe", "path": harness.plugin("probe")}],
        max_body_bytes=MAX_BODY,
        header_timeout_ms=HEADER_TIMEOUT_MS,
        keepalive_timeout_ms=int(120000 * SCALE),
        backlog=4096)]}

    @classmethod
    def setUpClass(cls):
        # Room for the idle-connection test on our side; herd inherits the same limit.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = IDLE_CONNECTIONS + 2000
        if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        super().setUpClass()
        with Client(cls.port) as c:
            cls.worker = int(c.request("GET", "/probe/pid").body)
        cls.base_fds = open_fds(cls.worker)

    def setUp(self):
        self.ordinary = Ordinary(self.port)
        self.ordinary.start()
        self.ordinary.wait_served(5)
        self.rss_before = rss_kb(self.worker)

    def tearDown(self):
        self.ordinary.stop.set()
        self.ordinary.join(harness.timeout(30))

    # -- what every test checks at its end -------------------------------------------------
    def finish(self, what, **facts):
        served = self.ordinary.finish(self)
        # The attack is over and its sockets are closed: the worker lets go of all of them.
        harness.wait_until(lambda: open_fds(self.worker) <= self.base_fds + 2, 20,
                           "the worker to close the attack's connections (%d open, %d before)"
                           % (open_fds(self.worker), self.base_fds))
        self.assertEqual(harness.get(self.port, "/probe/pid").body, str(self.worker).encode(),
                         "the worker was replaced")
        report(what, ordinary_served=served, ordinary_failed=len(self.ordinary.failures),
               slowest_ordinary_ms=int(self.ordinary.slowest * 1000),
               worker_restarts=0, rss_kb_before=self.rss_before, **facts)

    def assert_status_then_close(self, sock, status):
        data = read_until_closed(sock)
        self.assertEqual(statuses(data), [status], data[:300])
        self.assertIn(b"\r\nConnection: close\r\n", data)

    # -- slowloris --------------------------------------------------------------------------
    def test_slowloris_headers_one_byte_at_a_time(self):
        head = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\nX-Pad: " + b"a" * 4000
        started = time.monotonic()  # before the connections: a lower bound of their age
        slow = [socket.create_connection(("127.0.0.1", self.port)) for _ in range(50)]
        sent = [0] * len(slow)
        answered = {}
        deadline = started + harness.timeout(30)
        while len(answered) < len(slow):
            self.assertLess(time.monotonic(), deadline, "slowloris clients never cut off")
            for i, s in enumerate(slow):
                if i not in answered and sent[i] < len(head):
                    try:
                        s.send(head[sent[i]:sent[i] + 1])
                        sent[i] += 1
                    except OSError:
                        pass  # closed by the server: its answer is read below
            # One byte per client every 20 ms: the pace of the trickle, not a wait for herd.
            readable, _, _ = select.select([s for i, s in enumerate(slow) if i not in answered],
                                           [], [], 0.02)
            for s in readable:
                i = slow.index(s)
                answered[i] = (read_until_closed(s), time.monotonic() - started)
        for i, (data, _) in answered.items():
            self.assertEqual(statuses(data), [408], data[:200])
        self.assertTrue(all(n < len(head) for n in sent), "a slowloris head was completed")
        first = min(t for _, t in answered.values())
        self.assertGreaterEqual(first, HEADER_TIMEOUT_MS / 1000 * 0.9, "cut off before the timeout")
        for s in slow:
            s.close()
        self.finish("slowloris", clients=len(slow), got_408=len(answered),
                    bytes_sent_max=max(sent), rss_kb_after=rss_kb(self.worker))

    # -- trickled bodies --------------------------------------------------------------------
    def test_body_trickled_after_valid_headers(self):
        # A slow but live sender is served in full: the body timer restarts with each byte...
        body = b"0123456789abcdefghij"
        live = [socket.create_connection(("127.0.0.1", self.port)) for _ in range(10)]
        for s in live:
            s.sendall(b"POST /echo/t HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(len(body)):
            for s in live:
                s.sendall(body[i:i + 1])
            if i + 1 < len(body):
                # The pace of the trickle: a byte per client every 50 ms, inside the timeout.
                readable, _, _ = select.select(live, [], [], 0.05)
                self.assertEqual(readable, [], "answered before the body was complete")
        for s in live:
            s.settimeout(harness.timeout(10))
            data = b""
            while b'"body":"0123456789abcdefghij"' not in data:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "closed before answering a trickled body")
                data += chunk
            self.assertEqual(statuses(data), [200])
            s.close()
        # ...and a sender that stops for longer than header_timeout_ms gets 408.
        mark = self.herd.mark()
        stalled = [socket.create_connection(("127.0.0.1", self.port)) for _ in range(10)]
        for s in stalled:
            s.sendall(b"POST /echo/t HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc")
        self.ordinary.wait_served(5)  # served while the stalled bodies are pending
        for s in stalled:
            s.settimeout(harness.timeout(10))
            self.assert_status_then_close(s, 408)
            s.close()
        self.herd.wait_for(r"answering 408 .*no request body data within header_timeout_ms",
                           after=mark)
        self.finish("trickled body", live_served=len(live), stalled_408=len(stalled),
                    rss_kb_after=rss_kb(self.worker))

    # -- idle connections -------------------------------------------------------------------
    def test_5000_idle_connections_held(self):
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < IDLE_CONNECTIONS + 500:
            self.skipTest("RLIMIT_NOFILE %d is too small for %d connections"
                          % (soft, IDLE_CONNECTIONS))
        held = []
        try:
            # Each says one request and keeps the connection: the worker holds them all.
            request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            for batch in range(0, IDLE_CONNECTIONS, 500):
                # Each sends its request as it connects: a silent connection has only the
                # header timeout, which opening the rest of a batch must not race.
                socks = []
                for _ in range(500):
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=harness.timeout(30))
                    s.sendall(request)
                    socks.append(s)
                for s in socks:
                    data = b""
                    while not data.endswith(b"Hello, World!"):
                        chunk = s.recv(4096)
                        self.assertTrue(chunk, "closed while opening idle connections")
                        data += chunk
                held += socks
            harness.wait_until(lambda: open_fds(self.worker) >= self.base_fds + IDLE_CONNECTIONS,
                               10, "the worker to hold every connection")
            rss_held = rss_kb(self.worker)
            # Ordinary clients are served while all of them are held, on new connections too.
            self.ordinary.wait_served(50)
            for _ in range(20):
                self.assertEqual(harness.get(self.port, "/").status, 200)
            # None of the held connections was closed under us.
            readable, _, _ = select.select(held[:1000], [], [], 0)
            self.assertEqual(readable, [], "held idle connections were closed")
            # Connections that send nothing at all are closed by the server (header timeout).
            silent = [socket.create_connection(("127.0.0.1", self.port), timeout=harness.timeout(30))
                      for _ in range(200)]
            for s in silent:
                self.assertEqual(read_until_closed(s), b"", "a silent connection got an answer")
                s.close()
            per_connection = (rss_held - self.rss_before) * 1024 // IDLE_CONNECTIONS
            bound = 64 << 10 if sanitized(self.worker) else 16 << 10
            self.assertLess(per_connection, bound,
                            "%d bytes of worker memory per idle connection" % per_connection)
        finally:
            for s in held:
                s.close()
        self.finish("5000 idle", held=IDLE_CONNECTIONS, silent_closed=200,
                    rss_kb_held=rss_held, bytes_per_connection=per_connection)

    # -- request smuggling --------------------------------------------------------------------
    SMUGGLING = {
        # Each carries a second request that must never be answered.
        "Content-Length and Transfer-Encoding":
            b"POST /echo/s HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "Transfer-Encoding and Content-Length":
            b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Length: 30\r\n\r\n0\r\n\r\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "two Content-Length, different":
            b"POST /echo/s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 27\r\n\r\n"
            b"GET /probe/pid HTTP/1.1\r\n\r\n",
        "two Content-Length, same":
            b"POST /echo/s HTTP/1.1\r\nHost: x\r\nContent-Length: 27\r\nContent-Length: 27\r\n\r\n"
            b"GET /probe/pid HTTP/1.1\r\n\r\n",
        "Content-Length list": b"POST /echo/s HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 27\r\n\r\n"
                               b"GET /probe/pid HTTP/1.1\r\n\r\n",
        "Content-Length +0": b"POST /echo/s HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n"
                             b"GET /probe/pid HTTP/1.1\r\n\r\n",
        "two Transfer-Encoding chunked":
            b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "Transfer-Encoding not chunked":
            b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n"
            b"GET /probe/pid HTTP/1.1\r\n\r\n",
        "space before the colon":
            b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n"
            b"Content-Length: 30\r\n\r\n0\r\n\r\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "vertical tab in Transfer-Encoding":
            b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n"
            b"GET /probe/pid HTTP/1.1\r\n\r\n",
        "chunk size zz": b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"zz\r\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "chunk size -1": b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"-1\r\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "chunk size 0x1b": b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"0x1b\r\nGET /probe/pid HTTP/1.1\r\n\r\n0\r\n\r\n",
        "chunk size overflowing 64 bits":
            b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1000000000000001b\r\nGET /probe/pid HTTP/1.1\r\n\r\n0\r\n\r\n",
        "chunk size with a space": b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                   b"\r\n\r\n1b \r\nGET /probe/pid HTTP/1.1\r\n\r\n0\r\n\r\n",
        "chunk data without CRLF": b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                   b"\r\n\r\n1\r\naXY0\r\n\r\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "bare LF in headers": b"GET / HTTP/1.1\nHost: x\n\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "bare LF ending the head": b"GET / HTTP/1.1\r\nHost: x\r\n\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "bare LF after the request line":
            b"GET / HTTP/1.1\nHost: x\r\n\r\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "bare LF in chunk framing": b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                                    b"\r\n\r\n0\n\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "bare CR": b"GET / HTTP/1.1\rHost: x\r\r\nGET /probe/pid HTTP/1.1\r\n\r\n",
        "header with an empty name": b"GET / HTTP/1.1\r\nHost: x\r\n: x\r\n\r\n"
                                     b"GET /probe/pid HTTP/1.1\r\n\r\n",
        "NUL in a header value": b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n"
                                 b"GET /probe/pid HTTP/1.1\r\n\r\n",
    }

    def test_request_smuggling_is_refused(self):
        mark = self.herd.mark()
        for what, data in self.SMUGGLING.items():
            with self.subTest(what):
                with Client(self.port) as c:
                    c.send(data)
                    self.assert_status_then_close(c.sock, 400)
        # A coding herd does not decode, before chunked: 501, and nothing after it is read.
        with Client(self.port) as c:
            c.send(b"POST /echo/s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                   b"0\r\n\r\nGET /probe/pid HTTP/1.1\r\n\r\n")
            self.assert_status_then_close(c.sock, 501)
        # Each was refused once, in the log too (and the request it carried never answered).
        def refused():
            with self.herd.cond:
                return sum(1 for line in self.herd.lines[mark:]
                           if "answering 400 and closing" in line)
        harness.wait_until(lambda: refused() >= len(self.SMUGGLING), 10, "the refusals' log")
        self.assertEqual(refused(), len(self.SMUGGLING))
        self.finish("smuggling", attempts=len(self.SMUGGLING) + 1, refused=len(self.SMUGGLING) + 1,
                    smuggled_answered=0)

    # -- oversized request line, header floods ----------------------------------------------
    def send_flood(self, sock, head, filler, total):
        """Sends head, then `filler` repeatedly up to `total` bytes or until the server closes
        (it answers and closes long before): how much it took in is returned."""
        sent = 0
        try:
            sock.sendall(head)
            sent = len(head)
            while sent < total:
                sock.sendall(filler)
                sent += len(filler)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return sent

    def test_oversized_request_lines_and_header_floods(self):
        cases = [
            ("request target of 9 KiB", b"GET /" + b"a" * (9 << 10) + b" HTTP/1.1\r\n\r\n", 414),
            ("request target of 8 MiB", b"GET /", 414, b"a" * 65536),
            # RFC 9112 3: a method longer than any implemented: 501 (known after 32 bytes).
            ("method of 8 MiB", b"", 501, b"G" * 65536),
            ("one 17 KiB header", b"GET / HTTP/1.1\r\nX: " + b"v" * (17 << 10) + b"\r\n\r\n", 431),
            ("101 header fields", b"GET / HTTP/1.1\r\n" + b"".join(
                b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", 431),
            ("8 MiB of header fields", b"GET / HTTP/1.1\r\n", 431, b"X-Flood: 0123456789abcdef\r\n" * 2048),
            ("8 MiB header value", b"GET / HTTP/1.1\r\nX: ", 431, b"v" * 65536),
        ]
        rss_peak = 0
        for case in cases:
            what, head, status = case[0], case[1], case[2]
            with self.subTest(what):
                s = socket.create_connection(("127.0.0.1", self.port), timeout=harness.timeout(10))
                if len(case) == 4:
                    sender = threading.Thread(
                        target=self.send_flood, args=(s, head, case[3], 8 << 20), daemon=True)
                    sender.start()
                else:
                    s.sendall(head)
                self.assert_status_then_close(s, status)
                rss_peak = max(rss_peak, rss_kb(self.worker))
                if len(case) == 4:
                    sender.join(harness.timeout(30))
                    self.assertFalse(sender.is_alive(), "the flood's sender is stuck")
                s.close()
        # Nothing of the floods stays in the worker (a head is at most 16 KiB).
        growth = rss_peak - self.rss_before
        self.assertLess(growth, (64 << 10) if sanitized(self.worker) else (8 << 10),
                        "the worker grew by %d KiB during header floods" % growth)
        self.finish("oversized lines and header floods", cases=len(cases),
                    rss_kb_peak=rss_peak)

    # -- pipelined floods that never read ----------------------------------------------------
    def test_pipelined_flood_without_reading_responses(self):
        request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        per_flooder = 16 << 20  # unbounded buffering would be 60 MiB of responses each
        flooders = []
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", self.port))
            # Small buffers on our side, so that what piles up is the server's.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 10)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 << 10)
            s.setblocking(False)
            flooders.append({"sock": s, "sent": 0})
        chunk = request * 2048
        rss_peak = 0
        stalled_since = None
        # Send until the server stops reading from every flooder (our sends would block) for a
        # while, or until each sent per_flooder bytes. The "while" only ends the flood; what is
        # asserted is the memory it cost, sampled throughout.
        deadline = time.monotonic() + harness.timeout(40)
        while time.monotonic() < deadline:
            progress = False
            for f in flooders:
                if f["sent"] >= per_flooder:
                    continue
                try:
                    n = f["sock"].send(chunk[f["sent"] % len(request):])
                    f["sent"] += n
                    progress = progress or n > 0
                except BlockingIOError:
                    pass
            rss_peak = max(rss_peak, rss_kb(self.worker))
            if all(f["sent"] >= per_flooder for f in flooders):
                break
            if progress:
                stalled_since = None
            else:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 2:
                    break
                select.select([], [f["sock"] for f in flooders], [], 0.05)
        sent = [f["sent"] for f in flooders]
        self.assertTrue(all(n < per_flooder for n in sent),
                        "the worker took %r bytes of requests without their answers being read"
                        % sent)
        # Ordinary clients are served while the flooders hold their responses unread.
        self.ordinary.wait_served(50)
        rss_peak = max(rss_peak, rss_kb(self.worker))
        growth = rss_peak - self.rss_before
        bound = (256 << 10) if sanitized(self.worker) else (24 << 10)
        self.assertLess(growth, bound, "the worker grew by %d KiB for 3 flooders" % growth)
        # Reading now, each flooder gets every complete request it sent answered, in order.
        for f, n in zip(flooders, sent):
            s = f["sock"]
            s.setblocking(True)
            s.settimeout(harness.timeout(30))
            want = n // len(request)
            got = 0
            tail = b""
            while got < want:
                data = s.recv(1 << 20)
                self.assertTrue(data, "closed after %d of %d answers" % (got, want))
                data = tail + data
                got += data.count(b"Hello, World!")
                tail = data[-12:]
            self.assertEqual(got, want)
            s.close()
        self.finish("pipelined flood", flooders=len(flooders),
                    requests_sent=sum(n // len(request) for n in sent),
                    answered_once_read=sum(n // len(request) for n in sent),
                    rss_kb_peak=rss_peak, rss_growth_kb=growth)

    # -- resets in the middle of a response --------------------------------------------------
    def test_clients_resetting_mid_response(self):
        body = b"x" * (1 << 20)
        resets = 0
        for i in range(60):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=harness.timeout(10))
            if i % 3 == 0:
                # A 1 MiB answer (echo): read its first bytes, then reset.
                s.sendall(b"POST /echo/r HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                          % len(body) + body)
                self.assertTrue(s.recv(1024).startswith(b"HTTP/1.1 200"))
            elif i % 3 == 1:
                # 2000 pipelined requests, nothing read, then reset.
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)
            else:
                # A reset in the middle of sending a request body.
                s.sendall(b"POST /echo/r HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                          % len(body) + body[:len(body) // 2])
            reset_close(s)
            resets += 1
        self.ordinary.wait_served(20)
        self.finish("reset mid-response", resets=resets, rss_kb_after=rss_kb(self.worker))


if __name__ == "__main__":
    harness.main()
