"""The four balancing strategies with 4 workers: slow requests spread over the workers,
round-robin's exact shares, least-conn steering away from a loaded worker, reuseport keeping
a killed worker's queue, and every accept loop surviving EMFILE."""
import collections
import signal
import socket
import threading
import unittest

import harness
from harness import app, plugin

MODES = ["shared", "reuseport", "round-robin", "least-conn"]


def probe_app(mode, workers=4, **extra):
    return app(workers=workers, balance=mode, plugins=[
        {"mount": "/", "path": plugin("hello")},
        {"mount": "/probe", "path": plugin("probe")},
    ], **extra)


def concurrent_pids(port, count, ms):
    """Sends `count` GET /probe/sleep?ms=... at once, each on its own connection; returns
    the pids that answered (raises if any request failed)."""
    results, errors = [], []
    lock = threading.Lock()
    clients = [harness.Client(port, seconds=60) for _ in range(count)]

    def run(c):
        try:
            r = c.request("GET", "/probe/sleep?ms=%d" % ms)
            with lock:
                results.append((r.status, int(r.body)))
        except Exception as e:
            with lock:
                errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise AssertionError("requests failed: %r" % errors)
    assert all(status == 200 for status, _ in results), results
    return [pid for _, pid in results]


class SlowRequestsSpread(unittest.TestCase):
    def check(self, mode, count, ms):
        with harness.Herd({"apps": [probe_app(mode)]}) as herd:
            workers = set(herd.worker_pids())
            pids = concurrent_pids(herd.port(), count, ms)
            self.assertEqual(set(pids), workers, "every worker served: %s" % collections.Counter(pids))
            return pids

    # Where the worker picks (shared) or the master picks (round-robin, least-conn), four
    # concurrent slow requests go to four different workers: none waits behind another.
    # The requests last a (scaled) second: all four must arrive before the first ends.
    def test_shared(self):
        self.assertEqual(len(set(self.check("shared", 4, harness.ms(1000)))), 4)

    def test_round_robin(self):
        self.assertEqual(len(set(self.check("round-robin", 4, harness.ms(1000)))), 4)

    def test_least_conn(self):
        self.assertEqual(len(set(self.check("least-conn", 4, harness.ms(1000)))), 4)

    def test_reuseport(self):
        # The kernel hashes connections over the slots' sockets: with 64 connections every
        # worker gets some (a worker missing out has probability 4 * (3/4)^64).
        self.check("reuseport", 64, 20)


class RoundRobin(unittest.TestCase):
    def test_each_worker_gets_exactly_its_share(self):
        with harness.Herd({"apps": [probe_app("round-robin")]}) as herd:
            port = herd.port()
            counts = collections.Counter(int(harness.get(port, "/probe/pid").body) for _ in range(40))
            self.assertEqual(sorted(counts), sorted(herd.worker_pids()))
            self.assertEqual(set(counts.values()), {10}, counts)


class LeastConn(unittest.TestCase):
    def test_new_connections_avoid_the_loaded_worker(self):
        config = {"log_level": "debug", "apps": [probe_app("least-conn")]}
        with harness.Herd(config) as herd:
            port = herd.port()
            # 16 kept-alive connections: least-conn spreads them 4 per worker.
            clients = [harness.Client(port) for _ in range(16)]
            by_pid = collections.defaultdict(list)
            for c in clients:
                by_pid[int(c.request("GET", "/probe/pid").body)].append(c)
            self.assertEqual(sorted(len(v) for v in by_pid.values()), [4, 4, 4, 4])
            loaded = min(by_pid)
            # Every worker but one closes its four; wait until the master has their reports.
            mark = herd.mark()
            for pid, cs in by_pid.items():
                if pid != loaded:
                    for c in cs:
                        c.close()
            for pid in by_pid:
                if pid != loaded:
                    herd.wait_for(r"\(pid %d\) has 0 connection\(s\) open" % pid, after=mark)
            # The loaded worker is now also busy with a slow request on one of its connections.
            busy = by_pid[loaded][0]
            busy.send("GET /probe/sleep?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n")
            herd.wait_for(r"worker web/\d:%d\] plugin /probe: sleeping 3000 ms" % loaded, after=mark)
            # Nine new connections: three per idle worker, none to the loaded one (4 open).
            fresh = [harness.Client(port) for _ in range(9)]
            pids = [int(c.request("GET", "/probe/pid").body) for c in fresh]
            self.assertNotIn(loaded, pids)
            self.assertEqual(sorted(collections.Counter(pids).values()), [3, 3, 3])
            self.assertEqual(busy.read_response().status, 200)
            for c in fresh + by_pid[loaded]:
                c.close()


class KilledWorkerQueue(unittest.TestCase):
    """Connections waiting for a worker that is then killed are served by another: reuseport's
    wait in the master's socket for the slot; round-robin's and least-conn's, passed to the
    worker but never read, are taken back from its end of the channel."""

    def check(self, mode, then=None):
        with harness.Herd({"apps": [probe_app(mode)]}) as herd, harness.Events(herd) as events:
            port = herd.port()
            victim = herd.worker_pids()[0]
            # Stopped, the victim reads nothing: the connections given to it queue up.
            harness.os.kill(victim, signal.SIGSTOP)
            mark = herd.mark()
            threads, results, errors, lock = harness.burst(port, threads=32, per_thread=10)
            # Some connections go to the stopped worker and wait, each holding up its thread;
            # the other workers keep answering. Then the victim dies.
            harness.wait_answers(results, lock, 20)
            harness.os.kill(victim, signal.SIGKILL)
            exited = events.wait_for("worker.exited", pid=victim)
            self.assertEqual((exited["signal"], exited["expected"]), (9, False))
            spawned = events.wait_for("worker.spawned", app="web", slot=exited["slot"])
            replacement = events.wait_for("worker.ready", pid=spawned["pid"])["pid"]
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            self.assertEqual(len(results), 320)
            self.assertTrue(all(status == 200 for status, _ in results))
            pids = collections.Counter(int(body) for _, body in results)
            self.assertNotIn(victim, pids)
            if then:
                then(herd, replacement, pids, mark)

    def test_reuseport(self):
        def then(herd, replacement, pids, mark):
            # The replacement served the connections that had queued on the victim's socket.
            self.assertIn(replacement, pids)
        self.check("reuseport", then)

    def test_round_robin(self):
        def then(herd, replacement, pids, mark):
            # Every fourth connection went to the victim while it was stopped.
            herd.wait_for(r"worker web/\d \(pid \d+\) left \d+ connection\(s\) it had not read",
                          after=mark)
        self.check("round-robin", then)

    def test_least_conn(self):
        # The victim's open count only grows, so least-conn soon avoids it: whatever it was
        # given before that is taken back (all 320 answered, checked above).
        self.check("least-conn")


class DescriptorExhaustion(unittest.TestCase):
    """With RLIMIT_NOFILE at 40, 60 idle clients exhaust a worker's descriptors. The accept
    loop pauses (no busy loop, the listen socket kept), and service resumes once they go."""

    def check(self, mode):
        config = {"apps": [probe_app(mode, workers=1)]}
        with harness.Herd(config, nofile=40) as herd:
            port = herd.port()
            mark = herd.mark()
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(60)]
            for s in idle:
                s.sendall(b"G")  # a first byte, so TCP_DEFER_ACCEPT lets them be accepted now
            herd.wait_for(r"EMFILE.*pausing accept", after=mark)
            # Paused, not spinning: at most one warning per 100 ms pause.
            for s in idle:
                s.close()
            r = harness.get(port, "/probe/pid")
            self.assertEqual(r.status, 200)
            self.assertEqual(herd.worker_pids(), [int(r.body)])
            self.assertLess(herd.count(r"pausing accept"), 200)
            self.assertEqual(herd.stop(), 0, herd.log())

    def test_shared(self):
        self.check("shared")

    def test_reuseport(self):
        self.check("reuseport")

    def test_round_robin(self):
        self.check("round-robin")

    def test_least_conn(self):
        self.check("least-conn")


if __name__ == "__main__":
    harness.main()
