"""WebSockets across a reload: 1,000 open sockets in a room, the app rolled to a new
generation. Every socket gets close 1001 ("going away") from its draining worker and
reconnects; once the reload is done every socket is on a worker of the new generation, and
every message published after that reaches every socket, in order."""
import asyncio
import json
import os
import unittest

import harness
from harness import Herd, app, plugin, raise_nofile, timeout

try:
    import websockets
except ImportError:  # scripts/test.sh installs python3-websockets
    websockets = None

SOCKETS = 1000
MESSAGES = 20
PROBE = [{"mount": "/", "path": plugin("probe")}]


def config(generation):
    # The env differs between generations: the reload rolls the app.
    return {"apps": [app(plugins=PROBE, workers=2, env={"GENERATION": str(generation)},
                         drain_timeout_ms=int(timeout(20) * 1000))]}


def write_config(herd, config):
    tmp = herd.config_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(harness.with_root_allowed(config), f, indent=2)
    os.replace(tmp, herd.config_path)


def worker_pids(herd, generation):
    code, out = harness.run_herd("status", "--json", "-c", herd.config_path)
    assert code == 0, out
    return {w["pid"] for a in json.loads(out)["apps"] for w in a["workers"]
            if w["generation"] == generation and w["state"] == "ready"}


class Member:
    """One socket of the room, reconnecting as a client would when it is told 1001."""

    def __init__(self, url):
        self.url = url
        self.ws = None
        self.pid = None
        self.going_away = 0  # 1001s received
        self.messages = []

    async def connect(self):
        self.ws = await websockets.connect(self.url, open_timeout=timeout(30))
        hello = await self.ws.recv()
        assert hello.startswith("pid "), hello
        self.pid = int(hello[4:])
        self.messages = []

    async def run(self, stop):
        """Reads; on 1001 reconnects (counting it); any other end is a failure."""
        while True:
            try:
                message = await self.ws.recv()
                self.messages.append(message)
            except websockets.ConnectionClosed:
                if stop.is_set():
                    return
                code = self.ws.close_code
                assert code == 1001, "closed with %s (%s)" % (code, self.ws.close_reason)
                self.going_away += 1
                await self.connect()


@unittest.skipIf(websockets is None, "python3-websockets is not installed")
class ReloadWithOpenSocketsTest(unittest.TestCase):

    def test_reload_with_1000_sockets(self):
        self.assertTrue(raise_nofile(4 * SOCKETS), "cannot raise RLIMIT_NOFILE")
        with Herd(config(1)) as herd:
            asyncio.run(asyncio.wait_for(self.scenario(herd), timeout(240)))

    async def scenario(self, herd):
        port = herd.port()
        url = "ws://127.0.0.1:%d/ws/room?room=all&hello=1" % port
        members = [Member(url) for _ in range(SOCKETS)]
        for i in range(0, SOCKETS, 100):  # a hundred handshakes at a time: within the backlog
            await asyncio.gather(*(m.connect() for m in members[i:i + 100]))
        old = worker_pids(herd, 1)
        self.assertEqual({m.pid for m in members}, old)  # both workers have sockets
        stop = asyncio.Event()
        readers = [asyncio.create_task(m.run(stop)) for m in members]

        write_config(herd, config(2))
        code, out = await asyncio.to_thread(harness.run_herd, "reload", "-c", herd.config_path,
                                            seconds=timeout(120))
        self.assertEqual(code, 0, out)
        new = worker_pids(herd, 2)
        self.assertEqual(len(new), 2, new)

        # Every socket was told 1001 at least once, and is back on a new worker. (One that
        # reconnected during the roll may have reached the old worker not rolled yet, and
        # was told again when that one drained.)
        def settled():
            failed = [r for r in readers if r.done()]
            if failed:
                failed[0].result()  # raises what went wrong
            return all(m.going_away >= 1 and m.pid in new and m.ws.open for m in members)
        await wait_until_async(settled, "every socket back on the new generation")

        # Published after the reconnects: every socket has all of it, in order.
        sent = ["after %d" % i for i in range(MESSAGES)]
        for text in sent:
            await asyncio.to_thread(publish, port, text)
        await wait_until_async(lambda: all(m.messages[-MESSAGES:] == sent for m in members),
                               "every message at every socket")
        for m in members:
            self.assertEqual(m.messages, sent)  # nothing else, nothing lost, in order
        stop.set()
        await asyncio.gather(*(m.ws.close() for m in members))
        await asyncio.gather(*readers)


def publish(port, text):
    with harness.Client(port) as c:
        r = c.request("POST", "/ws/publish?room=all", body=text.encode())
        assert r.status == 202, r


async def wait_until_async(predicate, what):
    deadline = asyncio.get_running_loop().time() + timeout(60)
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    harness.main()
