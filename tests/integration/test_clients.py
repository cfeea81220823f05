"""herd's HTTP client as a plugin uses it (probe's /fetch): a real upstream answers through the
worker's loop; keep-alive connections are pooled; https:// and an unreachable upstream fail
with a clear error; an exchange whose request ends (the client went away, request_timeout_ms
passed) closes its upstream connection; hostile, slow and restarted upstreams fail only their
own requests, with a clear 502, and leave no descriptor behind."""
import socket
import threading
import time
import unittest
import urllib.parse

import harness
from harness import app, plugin
from outage import outage_under_load, worker_fds


class Upstream:
    """A loopback HTTP/1.1 server in the test: answers each request with `reply(request)`
    (bytes), or never when it returns None; counts connections and the ones the client
    closed."""

    def __init__(self, reply, port=0):
        self.reply = reply
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.cond = threading.Condition()
        self.connections = 0
        self.closed_by_client = 0
        self.requests = []
        self.conns = []
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.cond:
                self.connections += 1
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        data = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    with self.cond:
                        if not self.stopping:
                            self.closed_by_client += 1
                        self.cond.notify_all()
                    return
                data += chunk
                while b"\r\n\r\n" in data:
                    head, data = data.split(b"\r\n\r\n", 1)
                    with self.cond:
                        self.requests.append(head.decode())
                        self.cond.notify_all()
                    answer = self.reply(head.decode())
                    try:
                        if callable(answer):
                            answer(conn)  # it writes (and closes) itself
                        elif answer is not None:
                            conn.sendall(answer)
                    except OSError:
                        return  # the client (or close()) went first

    def wait(self, predicate, what):
        with self.cond:
            if not self.cond.wait_for(predicate, harness.timeout(10)):
                raise AssertionError("timed out waiting for the upstream: " + what)

    def close(self):
        """Stops listening and closes every connection (a stopped service)."""
        with self.cond:
            self.stopping = True
            conns = list(self.conns)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() that holds it open
        except OSError:
            pass
        self.sock.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def ok(body):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def probe_app(workers=1, **extra):
    return app(workers=workers, plugins=[{"mount": "/probe", "path": plugin("probe")}], **extra)


def fetch_path(url):
    return "/probe/fetch?url=" + urllib.parse.quote(url, safe="")


class Fetch(unittest.TestCase):
    def test_answers_come_through_the_pool_and_errors_name_their_cause(self):
        upstream = Upstream(lambda head: ok(b"upstream saw " + head.split("\r\n")[0].encode()))
        try:
            with harness.Herd({"apps": [probe_app()], "metrics": "127.0.0.1:0"}) as herd:
                port = herd.port()
                metrics_port = int(herd.wait_for(
                    r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
                for i in range(5):
                    r = harness.get(port, fetch_path(upstream.url("/item/%d?x=1" % i)))
                    self.assertEqual(r.status, 200, r.body)
                    self.assertEqual(r.body, b"upstream saw GET /item/%d?x=1 HTTP/1.1" % i)
                # One worker, one origin, one request at a time: one pooled connection.
                self.assertEqual(upstream.connections, 1)

                r = harness.get(port, fetch_path("https://127.0.0.1:%d/" % upstream.port))
                self.assertEqual(r.status, 502)
                self.assertIn(b"no TLS", r.body)

                with socket.socket() as s:  # a port nobody listens on
                    s.bind(("127.0.0.1", 0))
                    closed = s.getsockname()[1]
                r = harness.get(port, fetch_path("http://127.0.0.1:%d/" % closed))
                self.assertEqual(r.status, 502)
                self.assertIn(b"Connection refused", r.body)
                self.assertIn(b"127.0.0.1:%d" % closed, r.body)

                # /metrics: the figures of the worker's last heartbeat (one a second).
                wanted = [b'herd_http_client_requests_total{app="web"} 7',
                          b'herd_http_client_responses_total{app="web",code="2xx"} 5',
                          b'herd_http_client_errors_total{app="web",kind="connect"} 1',
                          b'herd_http_client_errors_total{app="web",kind="unsupported"} 1',
                          b'herd_http_client_duration_seconds_count{app="web"} 5',
                          b'herd_http_client_connections{app="web",state="idle"} 1',
                          b'herd_http_client_waiting{app="web"} 0']
                harness.wait_metrics(metrics_port, wanted, "the client's figures in /metrics")
                self.assertEqual(herd.stop(), 0, herd.log())
        finally:
            upstream.close()

    def test_a_client_that_leaves_closes_the_upstream_exchange(self):
        upstream = Upstream(lambda head: None)  # never answers
        try:
            with harness.Herd({"apps": [probe_app()]}) as herd:
                port = herd.port()
                c = harness.Client(port)
                c.send(b"GET " + fetch_path(upstream.url("/slow")).encode() +
                       b" HTTP/1.1\r\nHost: x\r\n\r\n")
                upstream.wait(lambda: len(upstream.requests) == 1, "the request")
                c.close()
                upstream.wait(lambda: upstream.closed_by_client == 1, "herd closing it")
                self.assertEqual(herd.stop(), 0, herd.log())
        finally:
            upstream.close()

    def test_request_timeout_ms_bounds_the_exchange(self):
        upstream = Upstream(lambda head: None)
        try:
            with harness.Herd({"apps": [probe_app(request_timeout_ms=harness.ms(300))]}) as herd:
                r = harness.get(herd.port(), fetch_path(upstream.url("/slow")))
                self.assertEqual(r.status, 504, r.body)
                upstream.wait(lambda: upstream.closed_by_client == 1, "herd closing it")
                self.assertEqual(herd.stop(), 0, herd.log())
        finally:
            upstream.close()


def trickle(data):
    """An answer written a byte at a time."""
    def send(conn):
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            time.sleep(0.001)  # the upstream's pace, not the test's synchronisation
    return send


def then_close(data):
    def send(conn):
        conn.sendall(data)
        conn.shutdown(socket.SHUT_RDWR)
    return send


def hostile(head):
    path = head.split(" ")[1]
    return {
        "/malformed": b"HTTP/1.1 2x0 Nope\r\n\r\n",
        "/big": ok(b"x" * 100000),
        "/trickle": trickle(ok(b"one byte at a time")),
        "/truncated": then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf"),
        "/garbage": then_close(b"\x00\xff\x13garbage\r\n\r\n"),
        "/huge-head": ok(b"") .replace(b"\r\n\r\n", b"\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n"),
        "/slow": None,
    }.get(path, ok(b"fine"))


class Faults(unittest.TestCase):
    def test_hostile_slow_and_restarted_upstreams_fail_only_their_requests(self):
        upstream = Upstream(hostile)
        port_of_upstream = upstream.port
        try:
            with harness.Herd({"apps": [probe_app()]}) as herd:
                port = herd.port()
                pid = harness.get(port, "/probe/pid").body
                self.assertEqual(harness.get(port, fetch_path(upstream.url("/"))).status, 200)
                baseline = {}

                def settled():
                    baseline["fds"] = worker_fds(herd)
                    return baseline["fds"] is not None
                harness.wait_until(settled, what="the worker's descriptor count")

                def fetch(path, **params):
                    extra = "".join("&%s=%s" % kv for kv in params.items())
                    return harness.get(port, fetch_path(upstream.url(path)) + extra)

                for path, expected in [("/malformed", b"malformed response"),
                                       ("/truncated", b"closed the connection"),
                                       ("/garbage", b"malformed response"),
                                       ("/huge-head", b"larger than")]:
                    r = fetch(path)
                    self.assertEqual(r.status, 502, (path, r.body))
                    self.assertIn(expected, r.body, path)
                r = fetch("/big", max_bytes=1000)
                self.assertEqual(r.status, 502)
                self.assertIn(b"larger than 1000 bytes", r.body)
                r = fetch("/trickle")
                self.assertEqual((r.status, r.body), (200, b"one byte at a time"))
                r = fetch("/slow", timeout_ms=harness.ms(200))
                self.assertEqual(r.status, 502)
                self.assertIn(b"no response from 127.0.0.1:%d within" % port_of_upstream, r.body)

                # The upstream stops: refused, clearly; it starts again: served, herd untouched.
                upstream.close()
                r = fetch("/")
                self.assertEqual(r.status, 502)
                self.assertIn(b"Connection refused", r.body)
                upstream = Upstream(hostile, port=port_of_upstream)
                self.assertEqual(fetch("/").status, 200)
                self.assertEqual(harness.get(port, "/probe/pid").body, pid)  # no crash

                # Every failed exchange closed its connection: the worker holds what it held.
                harness.wait_until(lambda: worker_fds(herd) == baseline["fds"],
                                   what="the worker back at %s descriptors" % baseline["fds"])
                self.assertEqual(herd.stop(), 0, herd.log())
        finally:
            upstream.close()


    def test_an_upstream_stopped_and_started_again_under_load(self):
        holder = {"upstream": Upstream(hostile)}
        port_of_upstream = holder["upstream"].port

        def stop():
            holder["upstream"].close()

        def start():
            holder["upstream"] = Upstream(hostile, port=port_of_upstream)
        try:
            with harness.Herd({"apps": [probe_app(workers=2)]}) as herd:
                target = fetch_path("http://127.0.0.1:%d/" % port_of_upstream)
                self.assertEqual(harness.get(herd.port(), target).status, 200)
                outage_under_load(self, herd, target, stop, start, before_ok=(200, b"fine"),
                                  after_ok=(200, b"fine"), failure=502,
                                  reasons=[b"Connection refused", b"closed the connection",
                                           b"Connection reset"])
                self.assertEqual(herd.stop(), 0, herd.log())
        finally:
            holder["upstream"].close()

if __name__ == "__main__":
    harness.main()
