"""Plugin messaging and non-blocking channels: a broadcast reaches the plugin in every worker;
a stopped worker (SIGSTOP) with a flood queued for it never blocks the master, which keeps
relaying to and serving the other workers."""
import json
import signal
import unittest

import harness
from harness import app, plugin


def probe_app(workers, **extra):
    return app(workers=workers, plugins=[
        {"mount": "/", "path": plugin("hello")},
        {"mount": "/probe", "path": plugin("probe")},
    ], **extra)


def inbox(port):
    """GET /probe/inbox on a new connection: (pid, messages)."""
    with harness.Client(port) as c:
        pid = int(c.request("GET", "/probe/pid").body)
        return pid, json.loads(c.request("GET", "/probe/inbox").body)


class Messaging(unittest.TestCase):
    def test_broadcast_reaches_every_worker(self):
        with harness.Herd({"apps": [probe_app(4, balance="round-robin")]}) as herd:
            port = herd.port()
            workers = herd.worker_pids()
            with harness.Client(port) as c:
                r = c.request("POST", "/probe/broadcast", body='{"hello": "all"}')
            self.assertEqual(r.status, 202)
            # Delivery is asynchronous (worker -> master -> every worker): look until each
            # worker has it. Round-robin: four new connections reach the four workers.
            seen = {}

            def everyone_has_it():
                seen.clear()
                for _ in range(4):
                    pid, messages = inbox(port)
                    seen[pid] = messages
                return sorted(seen) == workers and all(len(m) == 1 for m in seen.values())

            harness.wait_until(everyone_has_it, what="the broadcast in every worker's inbox")
            senders = set()
            for pid, messages in seen.items():
                self.assertEqual(messages[0]["message"], {"hello": "all"}, pid)
                senders.add(messages[0]["from"])
            self.assertEqual(len(senders), 1, "one sender, as seen by all")
            sender = senders.pop()
            self.assertIn(sender, range(4))

    def test_non_json_body_is_sent_as_a_string(self):
        with harness.Herd({"apps": [probe_app(1)]}) as herd:
            port = herd.port()
            with harness.Client(port) as c:
                self.assertEqual(c.request("POST", "/probe/broadcast", body="plain text").status, 202)
            # Delivered asynchronously, through the master.
            harness.wait_until(lambda: inbox(port)[1], what="the broadcast in the inbox")
            _, messages = inbox(port)
            self.assertEqual([m["message"] for m in messages], ["plain text"])

    def test_stopped_worker_does_not_block_the_master(self):
        # The watchdog would kill the stopped worker after watchdog_ms (by design); this test
        # can take longer than the default 30 s on a loaded machine under ASan.
        config = {"apps": [probe_app(2, balance="round-robin", watchdog_ms=600000)]}
        with harness.Herd(config) as herd:
            port = herd.port()
            stopped, running = herd.worker_pids()
            harness.os.kill(stopped, signal.SIGSTOP)
            try:
                # 40 broadcasts of 512 KiB: the master queues 20 MiB for the stopped worker (its
                # socket buffer is full long before) while delivering them to the running one.
                payload = json.dumps({"blob": "x" * (512 << 10)})
                # Round-robin also passes connections to the stopped worker; they wait in its
                # queue. Find a connection the running worker answers, and keep it.
                c = None
                for _ in range(4):
                    candidate = harness.Client(port)
                    candidate.send("GET /probe/pid HTTP/1.1\r\nHost: x\r\n\r\n")
                    try:
                        candidate.sock.settimeout(harness.timeout(1))
                        if int(candidate.read_response().body) == running:
                            c = candidate
                            break
                    except OSError:
                        pass  # passed to the stopped worker: waits; try the next connection
                self.assertIsNotNone(c, "a connection to the running worker")
                c.sock.settimeout(harness.timeout(30))
                for _ in range(40):
                    self.assertEqual(c.request("POST", "/probe/broadcast", body=payload).status, 202)
                # The master relays all 40 back to the running worker (asynchronously).
                harness.wait_until(lambda: len(json.loads(c.request("GET", "/probe/inbox").body)) == 40,
                                   seconds=60, what="the running worker to receive all 40 broadcasts")
                # And it still accepts and places new connections.
                self.assertEqual(c.request("GET", "/").status, 200)
            finally:
                harness.os.kill(stopped, signal.SIGCONT)
            # Once resumed, the stopped worker catches up on its queue of 40 MiB.
            def caught_up():
                with harness.Client(port) as probe:
                    pid = int(probe.request("GET", "/probe/pid").body)
                    if pid != stopped:
                        return False
                    return len(json.loads(probe.request("GET", "/probe/inbox").body)) == 40
            harness.wait_until(caught_up, seconds=30, what="the resumed worker to receive all 40 broadcasts")


if __name__ == "__main__":
    harness.main()
