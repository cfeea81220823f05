"""Request limits and timeouts of a worker: malformed and oversized requests are answered with
the right status and "Connection: close", then closed; slow and idle clients are cut off
without holding up anyone else."""
import select
import time
import unittest

import harness
from harness import Client

# Scaled: the tests that check a client is served before a timeout need the margin under
# ASan; the ones that check a timeout fires wait for it with waits scaled alike.
HEADER_TIMEOUT_MS = harness.ms(300)
KEEPALIVE_TIMEOUT_MS = harness.ms(2000)
MAX_BODY = 1024

REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
           414: "URI Too Long", 431: "Request Header Fields Too Large"}


class TestLimits(harness.HerdTestCase):
    # One worker: a slow or stuck client and the ordinary one share the same event loop.
    config = {"apps": [harness.app(
        workers=1,
        plugins=[{"mount": "/", "path": harness.plugin("hello")},
                 {"mount": "/echo", "path": harness.plugin("echo")},
                 {"mount": "/probe", "path": harness.plugin("probe")}],
        max_body_bytes=MAX_BODY,
        header_timeout_ms=HEADER_TIMEOUT_MS,
        keepalive_timeout_ms=KEEPALIVE_TIMEOUT_MS)]}

    def assert_error_and_close(self, c, status, log=None, mark=0):
        """The next response is `status` with "Connection: close"; then the server closes."""
        r = c.read_response()
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.reason, REASONS[status])
        self.assertEqual(r.header("Connection"), "close")
        self.assertEqual(r.header("Server"), "herd")
        self.assertEqual(r.body, (REASONS[status] + "\n").encode())
        self.assertTrue(c.closed_by_server(), "the server kept the connection open")
        self.assertEqual(c.buf, b"", "more was sent after the error response")
        if log:
            self.herd.wait_for(r"answering %d and closing fd \d+: %s" % (status, log), after=mark)
        return r

    def raw_error(self, data, status, log=None):
        mark = self.herd.mark()
        c = self.client()
        c.send(data)
        return self.assert_error_and_close(c, status, log, mark)

    # -- malformed requests ---------------------------------------------------------------
    def test_malformed_request_line_is_400(self):
        cases = {
            "not http": b"this is not http\r\n\r\n",
            "bad version": b"GET / HTTP/1.x\r\nHost: x\r\n\r\n",  # HTTP/9.9 is 505
            "control char in target": b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
            "space in method": b"G T / HTTP/1.1\r\nHost: x\r\n\r\n",
        }
        for what, data in cases.items():
            with self.subTest(what):
                self.raw_error(data, 400, "HPE_")
        with self.subTest("bare LF"):
            self.raw_error(b"GET / HTTP/1.1\nHost: x\n\n", 400, "bare LF in the request head")

    def test_malformed_request_after_a_good_one_on_the_same_connection(self):
        c = self.client()
        self.assertEqual(c.request("GET", "/").status, 200)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBROKEN\x00 / HTTP/1.1\r\n\r\n")
        self.assertEqual(c.read_response().body, b"Hello, World!")  # the good one is answered
        self.assert_error_and_close(c, 400)

    # -- head limits ----------------------------------------------------------------------
    def test_headers_over_16k_are_431(self):
        c = self.client()
        r = c.request("GET", "/", headers={"X-Big": "a" * (15 << 10)})  # under: served
        self.assertEqual(r.status, 200)
        c = self.client()
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (17 << 10) + b"\r\n\r\n")
        self.assert_error_and_close(c, 431, "request head larger than 16384 bytes")
        # Many medium fields add up the same way.
        c = self.client()
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n"
               + b"".join(b"X-F%d: %s\r\n" % (i, b"b" * 1000) for i in range(20)) + b"\r\n")
        self.assert_error_and_close(c, 431)

    def test_target_over_8k_is_414(self):
        c = self.client()
        r = c.request("GET", "/echo/" + "a" * 8000)  # under: served, in full
        self.assertEqual(r.status, 200)
        self.assertIn(b"a" * 8000, r.body)
        c = self.client()
        c.send(b"GET /" + b"a" * (9 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assert_error_and_close(c, 414, "request target longer than 8192 bytes")

    def test_more_than_100_header_fields_is_431(self):
        def head(n):  # Host plus n-1 more: n fields
            return (b"GET /echo/h HTTP/1.1\r\nHost: x\r\n"
                    + b"".join(b"X-H%d: v\r\n" % i for i in range(n - 1)) + b"\r\n")
        c = self.client()
        c.send(head(100))
        r = c.read_response()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body.count(b'"X-H'), 99)
        c = self.client()
        c.send(head(101))
        self.assert_error_and_close(c, 431, "more than 100 header fields")

    # -- body limits ----------------------------------------------------------------------
    def test_content_length_over_max_body_is_413_before_the_body(self):
        c = self.client()
        r = c.request("POST", "/echo/b", body="x" * MAX_BODY)  # at the limit: served
        self.assertEqual(r.status, 200)
        mark = self.herd.mark()
        c = self.client()
        # Only the head is sent: the answer must not wait for the 2000 bytes announced.
        c.send(b"POST /echo/b HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1))
        self.assert_error_and_close(c, 413, "Content-Length 1025 exceeds the limit of 1024", mark)

    def test_expect_100_continue_over_max_body_is_413_without_100(self):
        c = self.client()
        c.send(b"POST /echo/b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               b"Content-Length: 5000000\r\n\r\n")
        self.assert_error_and_close(c, 413)

    def test_chunked_body_over_max_body_is_413(self):
        c = self.client()
        c.send(b"POST /echo/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"200\r\n" + b"x" * 512 + b"\r\n200\r\n" + b"y" * 512 + b"\r\n0\r\n\r\n")
        r = c.read_response()  # exactly the limit: served
        self.assertEqual(r.status, 200)
        self.assertIn(b"x" * 512 + b"y" * 512, r.body)
        mark = self.herd.mark()
        c.send(b"POST /echo/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"300\r\n" + b"x" * 768 + b"\r\n")
        c.send(b"101\r\n" + b"y" * 257 + b"\r\n")  # 1025 bytes: answered without the last chunk
        self.assert_error_and_close(c, 413, "request body exceeds the limit of 1024 bytes", mark)

    # -- framing errors -------------------------------------------------------------------
    def test_content_length_with_transfer_encoding_is_400(self):
        for order in ([b"Content-Length: 3", b"Transfer-Encoding: chunked"],
                      [b"Transfer-Encoding: chunked", b"Content-Length: 3"]):
            with self.subTest(order[0].decode()):
                self.raw_error(b"POST /echo/s HTTP/1.1\r\nHost: x\r\n" + b"\r\n".join(order)
                               + b"\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400,
                               "HPE_UNEXPECTED_CONTENT_LENGTH")

    def test_other_framing_errors_are_400(self):
        cases = {
            "duplicate Content-Length": b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "negative Content-Length": b"Content-Length: -1\r\n\r\n",
            "overflowing Content-Length": b"Content-Length: 99999999999999999999999\r\n\r\n",
            "Transfer-Encoding not chunked": b"Transfer-Encoding: gzip\r\n\r\nabc",
        }
        for what, rest in cases.items():
            with self.subTest(what):
                self.raw_error(b"POST /echo/f HTTP/1.1\r\nHost: x\r\n" + rest, 400, "HPE_")

    def test_bad_chunk_size_is_400(self):
        for size in (b"zz", b"-1", b"0x10", b"ffffffffffffffffff"):
            with self.subTest(size.decode()):
                self.raw_error(b"POST /echo/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                               b"\r\n\r\n" + size + b"\r\nabc\r\n0\r\n\r\n", 400,
                               "malformed chunked body")

    def test_chunk_data_must_end_with_crlf(self):
        # BUG: llhttp is compiled in loose mode (meson.build builds llhttp.c without
        # -DLLHTTP_STRICT_MODE=1), whose chunk_data_almost_done state skips ANY two bytes
        # after chunk data. "3\r\nabcXY0\r\n\r\n" is accepted as body "abc" (and
        # "3\r\nabcdef\r\n" reads "def" as the next chunk size): a request-smuggling
        # desync with any front end that frames chunks strictly.
        self.raw_error(b"POST /echo/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabcXY0\r\n\r\n", 400)

    def test_whitespace_in_header_name_is_400(self):
        # BUG: llhttp in loose mode (see above) accepts "Bad Header: x" and hands the plugin
        # a field named "Bad Header"; RFC 9112 5.1: a field name is a token, and whitespace
        # in it must be rejected with 400.
        self.raw_error(b"GET /echo/w HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n", 400)

    # -- timeouts -------------------------------------------------------------------------
    def test_slowloris_gets_408_while_others_are_served(self):
        mark = self.herd.mark()
        slow = []
        started = time.monotonic()  # before the server's clocks start: a lower bound below
        for i in range(10):
            c = self.client()
            c.send(b"GET /slow%d HTTP/1.1\r\nHost: x\r\nX-Partial: " % i if i % 2 else b"GE")
            slow.append(c)
        # The same (single) worker serves ordinary clients at once, on new connections and
        # pipelined ones, while the slow ones are still waiting for their 408.
        for _ in range(5):
            with Client(self.port) as ok:
                r = ok.request("GET", "/")
                self.assertEqual((r.status, r.body), (200, b"Hello, World!"))
        # Served while the slow ones still wait: none of them has its 408 yet.
        readable, _, _ = select.select([c.sock for c in slow], [], [], 0)
        self.assertEqual(readable, [], "a slow client was answered before the ordinary ones")
        for c in slow:
            self.assert_error_and_close(c, 408)
        # 408 comes after header_timeout_ms, not before.
        self.assertGreaterEqual(time.monotonic() - started, HEADER_TIMEOUT_MS / 1000 * 0.9)
        self.herd.wait_for(r"answering 408 and closing fd \d+: request headers not complete "
                           r"within header_timeout_ms", after=mark)

    def test_header_timeout_is_a_deadline_not_an_inactivity_timer(self):
        # A client that keeps sending a byte of header every 20 ms is cut off all the same.
        started = time.monotonic()  # before the connection: a lower bound of its age
        c = self.client()
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Trickle: ")
        while True:
            c.send(b"a")
            readable, _, _ = select.select([c.sock], [], [], 0.02)
            if readable:
                break
            self.assertLess(time.monotonic() - started, harness.timeout(5), "never cut off")
        self.assert_error_and_close(c, 408)
        self.assertGreaterEqual(time.monotonic() - started, HEADER_TIMEOUT_MS / 1000 * 0.9)

    def test_stalled_body_gets_408(self):
        mark = self.herd.mark()
        c = self.client()
        c.send(b"POST /echo/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        self.assert_error_and_close(
            c, 408, "no request body data within header_timeout_ms", mark)

    def test_fresh_connection_sending_nothing_is_closed_after_header_timeout(self):
        # Connection::check_timeouts: a connection that never sent a request gets
        # header_timeout_ms (300), not keepalive_timeout_ms (2000), and since there is no
        # request to answer it is closed with no response at all.
        started = time.monotonic()  # before the connection: a lower bound of its age
        c = self.client()
        self.assertTrue(c.closed_by_server())
        elapsed = time.monotonic() - started
        self.assertEqual(c.buf, b"", "a silent connection got a response")
        self.assertGreaterEqual(elapsed, HEADER_TIMEOUT_MS / 1000 * 0.9)
        self.assertLess(elapsed, KEEPALIVE_TIMEOUT_MS / 1000 * 0.75,
                        "closed after the keep-alive timeout, not the header timeout")

    def test_idle_keep_alive_connection_is_closed(self):
        c = self.client()
        asked = time.monotonic()  # before the response, where the server's idle time starts
        self.assertEqual(c.request("GET", "/").status, 200)
        self.assertTrue(c.closed_by_server())
        self.assertEqual(c.buf, b"", "an idle connection got a response")
        self.assertGreaterEqual(time.monotonic() - asked, KEEPALIVE_TIMEOUT_MS / 1000 * 0.9)

    def test_keep_alive_connection_in_use_is_not_closed(self):
        # Requests every ~100 ms for longer than keepalive_timeout_ms: never cut off.
        c = self.client()
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < KEEPALIVE_TIMEOUT_MS / 1000 * 1.5:
            self.assertEqual(c.request("GET", "/").status, 200)
            n += 1
            readable, _, _ = select.select([c.sock], [], [], 0.1)
            self.assertEqual(readable, [], "the server closed a connection in use")
        self.assertGreater(n, 5)

    def test_keep_alive_timer_starts_after_the_response(self):
        # Regression (fixed in 1d20877): the keep-alive idle time was measured from the first
        # byte of the previous request, so after a request slower than keepalive_timeout_ms
        # the connection was closed at the next sweep, before the client could reuse it.
        c = self.client()
        r = c.request("GET", "/probe/sleep?ms=%d" % (KEEPALIVE_TIMEOUT_MS + 100))
        self.assertEqual(r.status, 200)
        # Well inside keepalive_timeout_ms of idling, the connection must still be open.
        readable, _, _ = select.select([c.sock], [], [], KEEPALIVE_TIMEOUT_MS / 1000 * 0.4)
        self.assertEqual(readable, [], "closed right after a slow response")
        self.assertEqual(c.request("GET", "/").status, 200)


if __name__ == "__main__":
    harness.main()
