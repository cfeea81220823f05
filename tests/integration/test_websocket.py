"""WebSockets on the real herd (the probe plugin's /ws/echo and /ws/room): the handshake and
its refusals, messages whole and fragmented, control frames between fragments, ping and pong,
herd's keep-alive, and every close code herd sends, with a real client (Python's
`websockets`) and a raw one for what a real client will not send (ws_client.RawSocket)."""
import asyncio
import unittest

import harness
from harness import HerdTestCase, app, ms, plugin, timeout
from ws_client import RawSocket, close_payload, frame, handshake_request

try:
    import websockets
except ImportError:  # scripts/setup.sh installs python3-websockets
    websockets = None

PROBE = [{"mount": "/", "path": plugin("probe")}]

# Small limits, so that the tests reach them quickly.
MAX_MESSAGE = 64 << 10
CONFIG = {"apps": [app(plugins=PROBE, balance="round-robin", max_ws_message_bytes=MAX_MESSAGE,
                       ws_send_queue_bytes=256 << 10)]}

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout(30)))


@unittest.skipIf(websockets is None, "python3-websockets is not installed")
class WebSocketTest(HerdTestCase):
    config = CONFIG

    def url(self, path="/ws/echo"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def raw(self, path="/ws/echo", **handshake):
        s = RawSocket(self.port, path, **handshake)
        self.addCleanup(s.close)
        return s

    def open_raw(self, path="/ws/echo"):
        return open_raw(self, path)

    def assert_closed_with(self, s, code, reason_part=""):
        got, reason = s.recv_close()
        self.assertEqual(got, code, reason)
        self.assertIn(reason_part, reason)
        self.assertTrue(s.at_eof())

    # -- the handshake ---------------------------------------------------------------------
    def test_handshake_answer(self):
        s = self.open_raw()
        # RFC 6455 1.3's example: this key gives this accept value.
        self.assertEqual(s.head["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        self.assertEqual(s.head["upgrade"].lower(), "websocket")
        self.assertEqual(s.head["connection"].lower(), "upgrade")

    def test_handshake_refusals(self):
        cases = [
            ({"version": "8"}, 426, "Sec-WebSocket-Version"),
            ({"key": "short"}, 400, "Sec-WebSocket-Key"),
            ({"method": "POST"}, 405, "GET"),
        ]
        for handshake, status, words in cases:
            with self.subTest(handshake=handshake):
                c = harness.Client(self.port)
                self.addCleanup(c.close)
                c.send(handshake_request("/ws/echo", **handshake))
                r = c.read_response()
                self.assertEqual(r.status, status, r.body)
                self.assertIn(words.encode(), r.body)
                if status == 426:
                    self.assertEqual(r.header("sec-websocket-version"), "13")
        # A plain GET to a WebSocket endpoint: no Upgrade.
        r = harness.get(self.port, "/ws/echo")
        self.assertEqual(r.status, 400)
        self.assertIn(b"Upgrade", r.body)

    # -- messages --------------------------------------------------------------------------
    def test_echo_text_binary_and_large(self):
        async def talk():
            async with websockets.connect(self.url(), max_size=None) as ws:
                await ws.send("héllo")
                self.assertEqual(await ws.recv(), "héllo")
                await ws.send(bytes(range(256)))
                self.assertEqual(await ws.recv(), bytes(range(256)))
                big = "z" * (MAX_MESSAGE - 1)  # the 64-bit length form's neighbour: 16-bit is < 64 KiB
                await ws.send(big)
                self.assertEqual(await ws.recv(), big)
                # A fragmented message is reassembled before the plugin sees it.
                await ws.send(["frag", "ment", "ed"])
                self.assertEqual(await ws.recv(), "fragmented")
        run(talk())

    def test_control_frames_between_fragments(self):
        s = self.open_raw()
        s.send(frame(TEXT, "one ", fin=False) + frame(PING, "p1") + frame(CONT, "two ", fin=False)
               + frame(PONG, "unasked") + frame(CONT, "three"))
        fin, opcode, payload = s.recv_frame(control=True)
        self.assertEqual((opcode, payload), (PONG, b"p1"))  # the ping's answer, its payload
        fin, opcode, payload = s.recv_frame()
        self.assertEqual((fin, opcode, payload), (True, TEXT, b"one two three"))
        # The 16-bit and 64-bit length forms for a short payload are accepted too.
        s.send(frame(BINARY, b"ab", length_form=126) + frame(BINARY, b"cd", length_form=127))
        self.assertEqual(s.recv_frame()[2], b"ab")
        self.assertEqual(s.recv_frame()[2], b"cd")

    def test_ping_pong_with_a_real_client(self):
        async def talk():
            async with websockets.connect(self.url()) as ws:
                waiter = await ws.ping(b"are you there")
                await asyncio.wait_for(waiter, timeout(10))
        run(talk())

    # -- close codes herd sends ------------------------------------------------------------
    def test_1000_the_client_closes(self):
        s = self.open_raw()
        s.send(frame(CLOSE, close_payload(1000, b"done")))
        self.assert_closed_with(s, 1000)  # echoed, then herd closes the TCP connection

    def test_1000_the_plugin_lets_go(self):
        s = self.open_raw()
        s.send(frame(TEXT, "drop"))
        self.assertEqual(s.recv_close()[0], 1000)
        s.send(frame(CLOSE, close_payload(1000)))
        self.assertTrue(s.at_eof())

    def test_the_plugins_own_code(self):
        async def talk():
            async with websockets.connect(self.url()) as ws:
                await ws.send("close 4001 bye now")
                with self.assertRaises(websockets.ConnectionClosed):
                    await ws.recv()
                self.assertEqual((ws.close_code, ws.close_reason), (4001, "bye now"))
        run(talk())

    def test_1002_protocol_errors(self):
        cases = {
            "unmasked": frame(TEXT, "hi", mask=False),
            "reserved bits": frame(TEXT, "hi", rsv=4),
            "unknown opcode": frame(0x3, "hi"),
            "fragmented control frame": frame(PING, "p", fin=False),
            "control frame over 125 bytes": frame(PING, "p" * 126),
            "continuation outside a message": frame(CONT, "x"),
            "new message inside a fragmented one": frame(TEXT, "a", fin=False) + frame(TEXT, "b"),
            "close code 1005 on the wire": frame(CLOSE, close_payload(1005)),
            "a one-byte close payload": frame(CLOSE, b"\x03"),
        }
        for name, data in cases.items():
            with self.subTest(name):
                s = self.open_raw()
                s.send(data)
                self.assert_closed_with(s, 1002)

    def test_1007_invalid_utf8(self):
        for name, data in {
            "in one frame": frame(TEXT, b"caf\xc3"),
            "across fragments": frame(TEXT, b"\xed", fin=False) + frame(CONT, b"\xa0\x80"),
            "in a close reason": frame(CLOSE, close_payload(1000, b"\xff")),
        }.items():
            with self.subTest(name):
                s = self.open_raw()
                s.send(data)
                self.assert_closed_with(s, 1007)
        # A character cut between fragments is fine.
        s = self.open_raw()
        s.send(frame(TEXT, b"\xe2\x82", fin=False) + frame(CONT, b"\xac"))
        self.assertEqual(s.recv_frame()[2], "€".encode())

    def test_1009_oversized_message(self):
        s = self.open_raw()
        # Refused from the frame header, before its payload is sent.
        s.send(frame(BINARY, b"x" * (MAX_MESSAGE + 1))[:14])  # 2 + 8 bytes of length + mask
        self.assert_closed_with(s, 1009)
        # The same limit for a message in fragments.
        s = self.open_raw()
        half = b"y" * (MAX_MESSAGE // 2 + 1)
        s.send(frame(BINARY, half, fin=False) + frame(CONT, half))
        self.assert_closed_with(s, 1009)

    def test_1008_a_client_that_does_not_read(self):
        # 32 MiB at once for a client that reads nothing meanwhile: more than the socket
        # buffers hold (its receive buffer is kept small; the sender's is at most a few MiB),
        # so herd's queue passes ws_send_queue_bytes (256 KiB) and herd closes the socket
        # rather than queue on. The client then reads what got through, and the close frame
        # at its end.
        s = RawSocket(self.port, "/ws/echo", rcvbuf=64 << 10)
        self.addCleanup(s.close)
        self.assertEqual(s.status, 101, s.head)
        mark = self.herd.mark()
        s.send(frame(TEXT, "flood 512 65536"))
        # Nothing is read before herd has given up (reading would keep its queue short).
        self.herd.wait_for(r"closing WebSocket \d+ of .* with 1008", after=mark, seconds=20)
        code, reason = s.recv_close()
        self.assertEqual(code, 1008, reason)
        self.assertIn("ws_send_queue_bytes", reason)

    def test_1011_and_the_worker_retires(self):
        # Sockets on both workers (round-robin places them in turn).
        sockets = [self.open_raw() for _ in range(4)]
        pids = []
        for s in sockets:
            s.send(frame(TEXT, "pid"))
            pids.append(int(s.recv_frame()[2]))
        self.assertEqual(len(set(pids)), 2, pids)
        thrower = pids[0]
        with harness.Events(self.herd) as events:
            mark = events.mark()
            sockets[0].send(frame(TEXT, "throw"))
            self.assert_closed_with(sockets[0], 1011)
            # The worker that threw is replaced, then drains: its other socket gets 1001.
            same = [s for s, p in zip(sockets[1:], pids[1:]) if p == thrower]
            other = [s for s, p in zip(sockets[1:], pids[1:]) if p != thrower]
            for s in same:
                self.assert_closed_with(s, 1001, "going away")
            events.wait_for("worker.exited", after=mark, pid=thrower, seconds=timeout(20))
        # The other worker's sockets never noticed.
        for s in other:
            s.send(frame(TEXT, "still"))
            fin, opcode, payload = s.recv_frame()
            self.assertEqual((opcode, payload), (TEXT, b"still"))


class KeepAliveTest(HerdTestCase):
    """herd pings a silent client every ws_ping_interval_ms and cuts off one that stays
    silent for another interval."""
    config = {"apps": [app(plugins=PROBE, ws_ping_interval_ms=ms(300))]}

    def test_keepalive_ping_and_dead_client_cut_off(self):
        s = open_raw(self)
        # Silent: herd pings after ws_ping_interval_ms ...
        fin, opcode, payload = s.recv_frame(control=True)
        self.assertEqual(opcode, PING)
        # ... and cuts off a client that stays silent for another interval (no close frame:
        # nothing answers on a dead connection).
        with self.assertRaises(EOFError):
            s.recv_frame(control=True)

    def test_a_client_that_answers_pings_stays(self):
        s = open_raw(self)
        for _ in range(3):
            fin, opcode, payload = s.recv_frame(control=True)
            self.assertEqual(opcode, PING)
            s.send(frame(PONG, payload))
        s.send(frame(TEXT, "still here"))
        self.assertEqual(s.recv_frame()[2], b"still here")


def open_raw(test, path="/ws/echo"):
    s = RawSocket(test.port, path)
    test.addCleanup(s.close)
    test.assertEqual(s.status, 101, s.head)
    return s


@unittest.skipIf(websockets is None, "python3-websockets is not installed")
class RoomTest(HerdTestCase):
    """Context::publish: one message reaches the room's sockets in every worker."""
    config = {"apps": [app(plugins=PROBE, balance="round-robin", workers=3)]}

    def test_publish_reaches_every_worker(self):
        async def talk():
            url = "ws://127.0.0.1:%d/ws/room?room=lobby&hello=1" % self.port
            sockets = [await websockets.connect(url) for _ in range(9)]
            pids = {(await ws.recv()) for ws in sockets}
            self.assertEqual(len(pids), 3, pids)  # round-robin: three each
            other = await websockets.connect("ws://127.0.0.1:%d/ws/room?room=elsewhere" % self.port)
            for i in range(20):
                await sockets[i % 9].send("message %d" % i)
            for ws in sockets:
                got = [await ws.recv() for _ in range(20)]
                self.assertEqual(sorted(got), sorted("message %d" % i for i in range(20)))
            # In order from one sender.
            await sockets[0].send(b"\x00binary")
            for ws in sockets:
                self.assertEqual(await ws.recv(), b"\x00binary")
            # Published by plain HTTP (the probe's POST /ws/publish), from any worker.
            with harness.Client(self.port) as c:
                r = c.request("POST", "/ws/publish?room=lobby", body=b"from http")
                self.assertEqual(r.status, 202, r.body)
            for ws in sockets:
                self.assertEqual(await ws.recv(), "from http")
            # Nothing reached the other room: its first message is the marker sent now.
            await other.send("marker")
            self.assertEqual(await other.recv(), "marker")
            for ws in sockets + [other]:
                await ws.close()
        run(talk())


if __name__ == "__main__":
    harness.main()
