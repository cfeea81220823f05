"""Handlers that answer later, on the real herd: many deferred requests at once, clients that
leave mid-wait (nothing left behind in the worker), the request deadline, drains with requests
in flight, an exception after a resume under load, streams to clients that stop reading, and
pipelined requests behind a deferred one. The probe plugin's /wait, /wait-cb, /gate, /stream,
/sse and /blocking endpoints answer later in each of the SDK's styles."""
import json
import os
import selectors
import signal
import socket
import struct
import time
import unittest

import harness
from harness import Client, Herd, app, ms, plugin, raise_nofile, timeout, wait_until

PROBE = [{"mount": "/", "path": plugin("probe")}]


def probe_app(**extra):
    # The default watchdog (30 s; heartbeats, and with them the figures read here, every
    # second): nothing here tests the watchdog, and a worker busy for long stretches on
    # purpose (1,000 connections at once, a plugin writing 100,000 pieces in one turn of the
    # loop) went past 1 s under ASan on a loaded machine and was killed.
    return app(plugins=PROBE, **extra)


def status(herd):
    code, out = harness.run_herd("status", "--json", "-c", herd.config_path)
    assert code == 0, out
    return json.loads(out)


def figures(herd, app_name="web"):
    """The ready workers' "async" heartbeat figures, added up."""
    total = {}
    for a in status(herd)["apps"]:
        if a["name"] != app_name:
            continue
        for w in a["workers"]:
            if w["state"] != "ready":
                continue
            for k, v in w.get("async", {}).items():
                total[k] = total.get(k, 0) + v
    return total


class Connections:
    """Many client connections driven from one thread: send scripted bytes, collect responses."""

    def __init__(self, port, count):
        self.socks = []
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout(10))
            self.socks.append(s)
        self.clients = []

    def send_all(self, payloads):
        for s, data in zip(self.socks, payloads):
            s.sendall(data)

    def read_all(self, per_connection, seconds=60):
        """Reads per_connection responses on every socket; returns the lists of responses."""
        clients = [Client.__new__(Client) for _ in self.socks]
        results = [[] for _ in self.socks]
        sel = selectors.DefaultSelector()
        for i, (c, s) in enumerate(zip(clients, self.socks)):
            c.sock, c.buf = s, b""
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        pending = len(self.socks)
        deadline = time.monotonic() + timeout(seconds)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sum(1 for r in results if len(r) < per_connection)
                raise AssertionError("%d connection(s) still without all answers" % missing)
            for key, _ in sel.select(min(left, 1)):
                i = key.data
                c, s = clients[i], self.socks[i]
                data = s.recv(65536)
                if not data:
                    raise AssertionError("connection %d closed after %d answers" % (i, len(results[i])))
                c.buf += data
                while len(results[i]) < per_connection:
                    r = parse_one(c)
                    if r is None:
                        break
                    results[i].append(r)
                if len(results[i]) == per_connection:
                    sel.unregister(s)
                    pending -= 1
        for s in self.socks:
            s.setblocking(True)
        return results

    def close(self, reset_every=0):
        for i, s in enumerate(self.socks):
            if reset_every and i % reset_every == 0:
                # SO_LINGER 0: the close sends a reset instead of a FIN.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        self.socks = []


def parse_one(client):
    """One complete Content-Length response from client.buf, or None if not all there yet."""
    head_end = client.buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = client.buf[:head_end].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ")[1])
    length = 0
    for line in head[1:]:
        k, v = line.split(":", 1)
        if k.lower() == "content-length":
            length = int(v)
    if len(client.buf) < head_end + 4 + length:
        return None
    body = client.buf[head_end + 4:head_end + 4 + length]
    client.buf = client.buf[head_end + 4 + length:]
    return status, body


class TestAnswersLater(harness.HerdTestCase):
    config = {"apps": [probe_app(workers=2)]}

    def test_coroutine_timer(self):
        r = harness.get(self.port, "/wait?ms=20&tag=x")
        self.assertEqual(r.status, 200)
        pid, tag = r.body.decode().split()
        self.assertIn(int(pid), self.herd.worker_pids())
        self.assertEqual(tag, "x")

    def test_callback_timer(self):
        r = harness.get(self.port, "/wait-cb?ms=20")
        self.assertEqual(r.status, 200)
        self.assertIn(int(r.body), self.herd.worker_pids())

    def test_watched_descriptor(self):
        r = harness.get(self.port, "/watch?ms=20")
        self.assertEqual(r.status, 200)
        self.assertIn(int(r.body), self.herd.worker_pids())

    def test_blocking_work_runs_on_another_thread(self):
        r = harness.get(self.port, "/blocking?ms=20")
        self.assertEqual(r.status, 200)
        pid, thread = map(int, r.body.split())
        self.assertIn(pid, self.herd.worker_pids())
        self.assertNotEqual(pid, thread)
        self.assertTrue(os.path.exists("/proc/%d/task/%d" % (pid, thread)))

    def test_dropped_responder_answers_500_and_is_logged(self):
        mark = self.herd.mark()
        r = harness.get(self.port, "/drop")
        self.assertEqual(r.status, 500)
        self.herd.wait_for(r"dropped its Responder without answering \(while handling GET /drop\)",
                           after=mark)

    def test_chunked_stream(self):
        with Client(self.port) as c:
            r = c.request("GET", "/stream?chunks=5&ms=5")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Transfer-Encoding"), "chunked")
            self.assertIsNone(r.header("Content-Length"))
            self.assertEqual(r.chunks, [b"chunk %d\n" % i for i in range(5)])
            # The connection stays usable after the stream.
            self.assertEqual(c.request("GET", "/pid").status, 200)

    def test_stream_to_http10_is_close_delimited(self):
        with Client(self.port) as c:
            r = c.request("GET", "/stream?chunks=3&ms=1", version="HTTP/1.0")
            self.assertEqual(r.status, 200)
            self.assertIsNone(r.header("Transfer-Encoding"))
            self.assertEqual(r.header("Connection"), "close")
            self.assertEqual(r.body, b"chunk 0\nchunk 1\nchunk 2\n")

    def test_stream_head_has_no_body(self):
        with Client(self.port) as c:
            r = c.request("HEAD", "/stream?chunks=3&ms=1")
            self.assertEqual(r.status, 200)
            self.assertEqual(c.request("GET", "/pid").status, 200)  # nothing stray before it

    def test_server_sent_events(self):
        with Client(self.port) as c:
            r = c.request("GET", "/sse?events=3&ms=5")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("Content-Type"), "text/event-stream; charset=utf-8")
            self.assertEqual(r.header("Cache-Control"), "no-cache")
            events = [e for e in r.body.decode().split("\n\n") if e]
            self.assertEqual(len(events), 3)
            for i, e in enumerate(events):
                lines = e.split("\n")
                self.assertEqual(lines[0], "event: tick")
                self.assertEqual(lines[1], "id: %d" % i)
                self.assertTrue(lines[2].startswith("data: %d " % i), lines)

    def test_sse_keepalive_comments(self):
        with Client(self.port) as c:
            r = c.request("GET", "/sse?events=1&ms=300&keepalive=50")
            self.assertIn(b":\n\n", r.body)  # a comment line kept the stream alive meanwhile

    def test_pipelined_requests_behind_a_deferred_one_answer_in_order(self):
        with Client(self.port) as c:
            c.send(b"GET /wait?ms=100&tag=a HTTP/1.1\r\nHost: h\r\n\r\n"
                   b"GET /wait?ms=0&tag=b HTTP/1.1\r\nHost: h\r\n\r\n"
                   b"GET /stream?chunks=2&ms=0 HTTP/1.1\r\nHost: h\r\n\r\n"
                   b"GET /wait-cb?ms=1 HTTP/1.1\r\nHost: h\r\n\r\n"
                   b"GET /async-stats HTTP/1.1\r\nHost: h\r\n\r\n")
            a, b, s, cb, stats = (c.read_response() for _ in range(5))
            self.assertTrue(a.body.endswith(b" a"), a.body)
            self.assertTrue(b.body.endswith(b" b"), b.body)
            self.assertEqual(s.chunks, [b"chunk 0\n", b"chunk 1\n"])
            pid = int(a.body.split()[0])
            self.assertEqual(int(cb.body), pid)
            self.assertEqual(json.loads(stats.body)["pid"], pid)

    def test_deferred_connection_is_not_idle(self):
        # keepalive 1 s and header timeout 1 s (below): a 2.5 s wait is not cut short. All
        # three scaled: the client's next request must come within the keep-alive timeout.
        with Herd({"apps": [probe_app(workers=1, keepalive_timeout_ms=ms(1000),
                                      header_timeout_ms=ms(1000))]}) as herd:
            with Client(herd.port(), seconds=30) as c:
                r = c.request("GET", "/wait?ms=%d" % ms(2500))
                self.assertEqual(r.status, 200)
                r = c.request("GET", "/stream?chunks=2&ms=%d" % ms(2500))
                self.assertEqual(r.chunks, [b"chunk 0\n", b"chunk 1\n"])


class TestManyAtOnce(unittest.TestCase):
    def test_1000_concurrent_deferred_requests_answered_in_order_per_connection(self):
        if not raise_nofile(4096):
            self.skipTest("cannot open 1000 connections: RLIMIT_NOFILE too low")
        n = 1000
        with Herd({"apps": [probe_app(workers=2)]}, nofile=4096) as herd:
            port = herd.port()
            conns = Connections(port, n)
            try:
                # Each connection: a request held at the gate, then one pipelined behind it.
                conns.send_all(b"GET /gate?tag=%d HTTP/1.1\r\nHost: h\r\n\r\n"
                               b"GET /wait?ms=1&tag=after%d HTTP/1.1\r\nHost: h\r\n\r\n" % (i, i)
                               for i in range(n))
                # All of them are in the plugin's hands at once (from the workers' own figures).
                wait_until(lambda: figures(herd).get("waiting", 0) == n, seconds=30,
                           what="%d deferred requests in the workers" % n)
                self.assertEqual(harness.get(port, "/gate-open").status, 202)
                results = conns.read_all(2)
            finally:
                conns.close()
            pids = set(herd.worker_pids())
            for i, (first, second) in enumerate(results):
                self.assertEqual(first[0], 200)
                pid, tag = first[1].decode().split()
                self.assertEqual(tag, str(i))
                self.assertIn(int(pid), pids)
                self.assertEqual(second[0], 200)
                self.assertEqual(second[1].decode().split()[1], "after%d" % i)


class TestClientsLeave(unittest.TestCase):
    def round(self, herd, port, n):
        conns = Connections(port, n)
        styles = ["/wait?ms=600000", "/wait-cb?ms=600000", "/gate?tag=x", "/stream?chunks=2&ms=600000",
                  "/watch?ms=600000"]
        conns.send_all(b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % styles[i % len(styles)].encode()
                       for i in range(n))
        wait_until(lambda: figures(herd).get("waiting", 0) + figures(herd).get("streaming", 0) == n,
                   seconds=30, what="%d requests in the plugins' hands" % n)
        conns.close(reset_every=2)  # half leave with a reset, half with a FIN

    def test_500_clients_that_leave_mid_wait_leave_nothing_behind(self):
        if not raise_nofile(4096):
            self.skipTest("RLIMIT_NOFILE too low")
        with Herd({"apps": [probe_app(workers=2)]}, nofile=4096) as herd:
            port = herd.port()

            def settled():
                f = figures(herd)
                return f.get("waiting") == 0 and f.get("streaming") == 0 and \
                    f.get("orphans") == 0 and f.get("timers") == 0 and f.get("tasks") == 0

            # A first round warms the worker up (its tables grow once); the second must give
            # back everything it takes.
            self.round(herd, port, 500)
            wait_until(settled, seconds=30, what="the first round to be cleaned up")
            before = figures(herd)
            self.round(herd, port, 500)
            wait_until(settled, seconds=30, what="the second round to be cleaned up")
            wait_until(lambda: figures(herd)["fds"] == before["fds"], seconds=30,
                       what="descriptors back to %d" % before["fds"])
            after = figures(herd)
            for k in ("timers", "watches", "posts", "jobs", "tasks", "orphans"):
                self.assertEqual(after[k], 0, k)
            if before["heap_bytes"] > 0:  # 0 under ASan, whose allocator mallinfo2 cannot see
                self.assertLess(after["heap_bytes"] - before["heap_bytes"], 256 << 10,
                                "heap grew by %d bytes over 500 cancelled requests" %
                                (after["heap_bytes"] - before["heap_bytes"]))
            # Every one was cancelled in the plugin (coroutines resumed, callbacks told).
            total = 0
            seen = set()
            while len(seen) < 2:
                stats = json.loads(harness.get(port, "/async-stats").body)
                if stats["pid"] not in seen:
                    seen.add(stats["pid"])
                    total += stats["cancelled"]
                    self.assertEqual(stats["gate"], 0)
            self.assertEqual(total, 1000)


class TestDeadline(unittest.TestCase):
    def test_a_handler_too_slow_gets_504_and_its_work_cancelled(self):
        with Herd({"apps": [probe_app(workers=1, request_timeout_ms=300)]}) as herd:
            port = herd.port()
            mark = herd.mark()
            for target in ("/wait-forever", "/wait-cb?ms=600000", "/gate?tag=x"):
                with Client(port) as c:
                    r = c.request("GET", target)
                    self.assertEqual(r.status, 504, target)
                    self.assertEqual(r.header("Connection"), "close")
                    self.assertTrue(c.closed_by_server())
            herd.wait_for(r"no answer within request_timeout_ms \(300 ms\) while handling GET "
                          r"/wait-forever; answering 504", after=mark)
            stats = json.loads(harness.get(port, "/async-stats").body)
            self.assertEqual(stats["cancelled"], 3)
            self.assertEqual(stats["gate"], 0)
            wait_until(lambda: figures(herd).get("orphans") == 0 and figures(herd).get("timers") == 0,
                       what="nothing left of the cancelled requests")
            # A stream that has begun is an answer: no deadline cuts it.
            with Client(port) as c:
                r = c.request("GET", "/stream?chunks=3&ms=250")
                self.assertEqual(r.chunks, [b"chunk %d\n" % i for i in range(3)])

    def test_zero_means_no_deadline(self):
        with Herd({"apps": [probe_app(workers=1, request_timeout_ms=0)]}) as herd:
            self.assertEqual(harness.get(herd.port(), "/wait?ms=400").status, 200)


class TestDrain(unittest.TestCase):
    def test_stop_lets_deferred_requests_finish(self):
        # The requests must finish before the drain deadline: it scales.
        with Herd({"apps": [probe_app(workers=2, drain_timeout_ms=ms(10000))]}) as herd:
            port = herd.port()
            conns = Connections(port, 20)
            # Long enough for a heartbeat (one a second) to show all 20 waiting at once.
            conns.send_all(b"GET /wait?ms=%d&tag=%d HTTP/1.1\r\nHost: h\r\n\r\n" % (ms(3000), i)
                           for i in range(20))
            wait_until(lambda: figures(herd).get("waiting", 0) == 20, what="20 deferred requests")
            herd.signal(signal.SIGTERM)
            results = conns.read_all(1)
            conns.close()
            for i, [(code, body)] in enumerate(results):
                self.assertEqual(code, 200)
                self.assertEqual(body.split()[1].decode(), str(i))
            self.assertEqual(herd.wait_exit(), 0)

    def test_drain_deadline_answers_503_and_ends_streams(self):
        with Herd({"apps": [probe_app(workers=1, drain_timeout_ms=300)]}) as herd:
            port = herd.port()
            waiting = Client(port, seconds=30)
            waiting.send(b"GET /wait-forever HTTP/1.1\r\nHost: h\r\n\r\n")
            streaming = Client(port, seconds=30)
            streaming.send(b"GET /sse?events=1000&ms=100 HTTP/1.1\r\nHost: h\r\n\r\n")
            wait_until(lambda: figures(herd).get("waiting") == 1 and figures(herd).get("streaming") == 1,
                       what="one waiting and one streaming request")
            herd.signal(signal.SIGTERM)
            r = waiting.read_response()
            self.assertEqual(r.status, 503)
            s = streaming.read_response()  # the chunked stream ends cleanly (0-length chunk)
            self.assertEqual(s.status, 200)
            self.assertTrue(s.chunks)
            self.assertEqual(herd.wait_exit(), 0)
            waiting.close()
            streaming.close()


    def test_a_request_the_plugin_never_lets_go_gets_503_at_the_stop(self):
        # /hold keeps its Responder in a member until the plugin is destroyed: the connection
        # must outlive the plugin's objects (a sanitizer build fails on any use after free).
        with Herd({"apps": [probe_app(workers=1, drain_timeout_ms=300)]}) as herd:
            held = Client(herd.port(), seconds=30)
            held.send(b"GET /hold HTTP/1.1\r\nHost: h\r\n\r\n")
            wait_until(lambda: figures(herd).get("waiting") == 1, what="the held request")
            herd.signal(signal.SIGTERM)
            self.assertEqual(held.read_response().status, 503)
            self.assertEqual(herd.wait_exit(), 0)
            held.close()


class TestFailureAfterResume(unittest.TestCase):
    def test_exception_after_a_resume_retires_the_worker_and_no_other_request_fails(self):
        with Herd({"apps": [probe_app(workers=2)]}) as herd, harness.Events(herd) as events:
            port = herd.port()
            with harness.KeepAliveLoad(port, "/wait?ms=5", threads=8) as load:
                wait_until(lambda: load.answered() >= 100, what="load running")
                mark = herd.mark()
                at = events.mark()
                r = harness.get(port, "/wait-throw?ms=20")
                self.assertEqual(r.status, 500)
                herd.wait_for(r"threw std::runtime_error: probe: /wait-throw after 20 ms in a "
                              r"coroutine while handling GET /wait-throw", after=mark)
                replacing = events.wait_for("worker.replacing", after=at, app="web",
                                            kind="exception")
                exited = events.wait_for("worker.exited", after=at, pid=replacing["pid"],
                                         seconds=30)
                self.assertEqual((exited["code"], exited["expected"]), (0, True))
                events.wait_for("worker.ready", after=at, pid=replacing["replacement"])
                done = load.answered()
                wait_until(lambda: load.answered() >= done + 100, what="load after the replacement")
            self.assertEqual(load.failures, [])
            self.assertNotIn(exited["pid"], herd.worker_pids())


class TestSlowReader(unittest.TestCase):
    def slow_reader(self, port, target):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % target.encode())
        return s

    def test_stream_to_a_client_that_stops_reading_keeps_memory_bounded(self):
        with Herd({"apps": [probe_app(workers=1)]}) as herd:
            port = herd.port()
            before = figures(herd)
            # 16 KiB pieces, 100,000 of them (1.6 GB) if nothing held the plugin back.
            s = self.slow_reader(port, "/stream?chunks=100000&size=16384&ms=0")
            try:
                # The plugin was told "full" and waits in drained() for the client.
                wait_until(lambda: probe_stats(port)["drain_waits"] == 1,
                           what="the stream to wait for the client")
                stats = probe_stats(port)
                # What it wrote fits the socket buffers (kernel memory, a few MiB at most)
                # and herd's high-water mark: not the 1.6 GB asked for.
                self.assertLess(stats["stream_bytes"], 16 << 20)
                wait_until(lambda: figures(herd).get("streaming") == 1, what="the stream counted")
                if before["heap_bytes"] > 0:  # 0 under ASan
                    wait_until(lambda: figures(herd)["heap_bytes"] > 0, what="a heap figure")
                    self.assertLess(figures(herd)["heap_bytes"] - before["heap_bytes"], 4 << 20)
            finally:
                s.close()
            wait_until(lambda: figures(herd).get("streaming") == 0 and figures(herd).get("tasks") == 0,
                       what="the stream cancelled")
            self.assertEqual(probe_stats(port)["drain_waits"], 0)

    def test_a_plugin_that_ignores_backpressure_is_cut_off(self):
        with Herd({"apps": [probe_app(workers=1)]}) as herd:
            port = herd.port()
            mark = herd.mark()
            s = self.slow_reader(port, "/stream?chunks=100000&size=16384&ms=0&ignore_backpressure=1")
            try:
                herd.wait_for(r"bytes of a stream unsent .*the client reads too slowly", after=mark)
                wait_until(lambda: figures(herd).get("streaming") == 0, what="the stream cut")
                total = 0
                s.settimeout(timeout(10))
                try:
                    while True:
                        data = s.recv(1 << 20)
                        if not data:
                            break
                        total += len(data)
                except ConnectionResetError:
                    pass
                self.assertLess(total, 100000 * 16384)
            finally:
                s.close()


def probe_stats(port):
    return json.loads(harness.get(port, "/async-stats").body)


if __name__ == "__main__":
    harness.main()
