"""The uncaught-error path: a plugin exception gives its request a 500, the worker reports
"fatal", the master starts the replacement, and only once it is ready does the old worker
drain (in-flight requests finish, kept-alive connections get Connection: close) and exit."""
import re
import signal
import threading
import time
import unittest

import json

import harness
from harness import app, plugin


def probe_app(workers=2, **extra):
    return app(workers=workers, plugins=[
        {"mount": "/", "path": plugin("hello")},
        {"mount": "/probe", "path": plugin("probe")},
    ], **extra)


def event_order(herd):
    """For each worker that reported a fatal error: (index of 'replaced by ...; draining it',
    index of its exit line) in the log."""
    lines = herd.log().split("\n")
    order = {}
    for i, line in enumerate(lines):
        m = re.search(r"worker web/\d \(pid (\d+)\) generation \d+ reported a fatal error", line)
        if m:
            order.setdefault(int(m.group(1)), [None, None, None])[0] = i
        m = re.search(r"worker web/\d \(pid (\d+)\) replaced by worker web/\d \(pid \d+\); draining it", line)
        if m:
            order.setdefault(int(m.group(1)), [None, None, None])[1] = i
        m = re.search(r"worker web/\d \(pid (\d+)\) exited with code 0 .*\(replaced by pid", line)
        if m:
            order.setdefault(int(m.group(1)), [None, None, None])[2] = i
    return order


class UncaughtError(unittest.TestCase):
    def test_throws_under_load_fail_only_themselves(self):
        with harness.Herd({"apps": [probe_app(2)]}) as herd:
            port = herd.port()
            throws = []
            with harness.KeepAliveLoad(port, "/probe/pid") as load:
                for _ in range(15):
                    # Paced by the load, not the clock: 10 answers between throws, however
                    # slow the build, so the throws meet a load that is running.
                    done = load.answered()
                    harness.wait_until(lambda: load.answered() >= done + 10 or load.failures,
                                       what="10 more answers to the load")
                    throws.append(harness.get(port, "/probe/throw").status)
            self.assertEqual(throws, [500] * 15)
            self.assertEqual(load.failures, [])
            self.assertGreater(load.ok, 100)
            # Every failed worker was replaced, the replacement was ready before the old one
            # was drained, and it exited only after that.
            harness.wait_until(lambda: herd.count(r"exited with code 0 .*\(replaced by pid") == 15,
                               what="all 15 failed workers to drain and exit")
            self.assertEqual(herd.stop(), 0)
            order = event_order(herd)
            self.assertEqual(len(order), 15, herd.log())
            for pid, (fatal, drained, exited) in order.items():
                self.assertIsNotNone(drained, "pid %d drained after its replacement was ready" % pid)
                self.assertIsNotNone(exited, "pid %d exited" % pid)
                self.assertLess(fatal, drained)
                self.assertLess(drained, exited)

    def test_request_in_flight_on_the_failing_worker_completes(self):
        with harness.Herd({"apps": [probe_app(2)]}) as herd:
            with harness.Client(herd.port()) as c:
                # Pipelined: the throw, then a slow request behind it on the same worker.
                c.send("GET /probe/throw HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /probe/sleep?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n")
                first, second = c.read_response(), c.read_response()
                self.assertEqual(first.status, 500)
                self.assertEqual(second.status, 200)
                self.assertEqual(second.header("Connection"), "close")
                self.assertTrue(c.closed_by_server())

    def test_idle_keep_alive_connection_holds_the_drain_until_its_deadline(self):
        with harness.Herd({"apps": [probe_app(2, drain_timeout_ms=1000)]}) as herd, \
                harness.Events(herd) as events:
            with harness.Client(herd.port()) as c:
                pid = int(c.request("GET", "/probe/pid").body)
                mark = herd.mark()
                self.assertEqual(c.request("GET", "/probe/throw").status, 500)
                # The connection stays open and idle: the drain waits for it until the deadline.
                herd.wait_for(r"worker web/\d:%d\] draining: 1 connection\(s\) open, deadline 1000 ms" % pid,
                              after=mark)
                herd.wait_for(r"worker web/\d:%d\] drain deadline passed with 1 connection\(s\) open" % pid,
                              after=mark)
                exited = events.wait_for("worker.exited", pid=pid)
                self.assertEqual((exited["code"], exited["expected"]), (0, True))
                self.assertTrue(c.closed_by_server())


class FatalSignalsAndWatchdog(unittest.TestCase):
    def test_segv_is_reported_with_a_stack_and_replaced(self):
        with harness.Herd({"apps": [probe_app(2)]}) as herd, harness.Events(herd) as events:
            port = herd.port()
            with harness.Client(port) as c:
                victim = int(c.request("GET", "/probe/pid").body)
                mark = herd.mark()
                c.send("GET /probe/segv HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertTrue(c.closed_by_server())  # no response: the process is gone
            herd.wait_for(r"\[worker web/\d:%d\] fatal signal 11 \(Segmentation fault\); stack:" % victim, after=mark)
            herd.wait_for(r"libprobe\.so", after=mark)  # the faulting frame is in the stack
            herd.wait_for(r"\(pid %d\) generation \d+ reported a fatal error: fatal signal 11" % victim, after=mark)
            exited = events.wait_for("worker.exited", pid=victim)
            self.assertEqual((exited["signal"], exited["expected"]), (11, False))
            spawned = events.wait_for("worker.spawned", slot=exited["slot"])
            replacement = events.wait_for("worker.ready", pid=spawned["pid"])["pid"]
            self.assertIn(replacement, herd.worker_pids())
            self.assertNotIn(victim, herd.worker_pids())
            self.assertEqual(len(herd.worker_pids()), 2)
            self.assertEqual(harness.get(port).status, 200)

    def test_watchdog_kills_and_replaces_a_stuck_worker(self):
        # Scaled: the worker that is not stuck must never miss it (the stuck one always does).
        watchdog_ms = harness.ms(500)
        with harness.Herd({"apps": [probe_app(2, watchdog_ms=watchdog_ms)]}) as herd, \
                harness.Events(herd) as events:
            port = herd.port()
            with harness.Client(port) as c:
                victim = int(c.request("GET", "/probe/pid").body)
                mark = herd.mark()
                c.send("GET /probe/spin HTTP/1.1\r\nHost: x\r\n\r\n")  # never answers
                killed = events.wait_for("worker.killed", pid=victim)
                self.assertEqual(killed["deadline"], "watchdog")
                self.assertRegex(killed["reason"], r"no heartbeat for \d+ ms \(watchdog_ms %d\)"
                                 % watchdog_ms)
                herd.wait_for(r"\(pid %d\): no heartbeat .* stuck in a plugin\? SIGKILL" % victim,
                              after=mark)  # and the log says so, for people
                self.assertEqual(events.wait_for("worker.exited", pid=victim)["signal"], 9)
                spawned = events.wait_for("worker.spawned", slot=killed["slot"])
                events.wait_for("worker.ready", pid=spawned["pid"])
                self.assertTrue(c.closed_by_server())
            self.assertNotIn(victim, herd.worker_pids())
            self.assertEqual(len(herd.worker_pids()), 2)
            # The other worker served throughout.
            self.assertEqual(harness.get(port).status, 200)


def hanging_app(workers, slots, **extra):
    """An app whose probe plugin never returns from on_start in the given slots."""
    return app(workers=workers, plugins=[
        {"mount": "/", "path": plugin("hello")},
        {"mount": "/probe", "path": plugin("probe"), "config": {"hang_on_start_slots": slots}},
    ], **extra)


def status(herd):
    code, out = harness.run_herd("status", "--json", "-c", herd.config_path)
    assert code == 0, out
    return json.loads(out)["apps"][0]


class StartTimeout(unittest.TestCase):
    """A worker that never becomes ready (a plugin's on_start stuck) is killed after
    start_timeout_ms and counted as a start failure: back-off, then the app is failed.
    Status says so all along instead of "running"."""

    def test_on_start_that_never_returns_fails_the_app(self):
        limit = harness.ms(1000)
        config = {"apps": [hanging_app(2, [0, 1], start_timeout_ms=limit, watchdog_ms=60000,
                                       restart_backoff_ms=50)]}
        with harness.Herd(config, wait_ready=False) as herd:
            herd.wait_for(r"spawned worker web/0 \(pid \d+\)")
            self.assertEqual(status(herd)["state"], "starting")
            with harness.Events(herd) as events:
                killed = events.wait_for("worker.killed", deadline="start_timeout", seconds=30)
                self.assertEqual(killed["reason"], "not ready within %d ms (start_timeout_ms)" % limit)
                failed = events.wait_for("app.failed", app="web", seconds=60)
                self.assertEqual(failed["reason"], "not ready within %d ms (start_timeout_ms)" % limit)
            herd.wait_for(r'app "web" failed: 5 workers in a row could not start')  # for people
            st = status(herd)
            self.assertEqual(st["state"], "failed")
            self.assertEqual(st["ready"], 0)
            reasons = {s["slot"]: s["last_exit"] for s in st["slots"]}
            self.assertEqual(sorted(reasons), [0, 1])
            for reason in reasons.values():
                self.assertIn("killed by signal 9", reason)
                self.assertIn("not ready within %d ms (start_timeout_ms)" % limit, reason)
            code, text = harness.run_herd("status", "-c", herd.config_path)
            self.assertIn("not ready within %d ms (start_timeout_ms)" % limit, text)
            # Nobody was ever "ready", and nothing was said to be.
            self.assertEqual(herd.count(r"all apps ready"), 0)

    def test_a_slot_that_cannot_start_makes_the_app_degraded_not_running(self):
        # Slot 1 hangs in on_start; its start timeout is long, so it stays "starting".
        config = {"apps": [hanging_app(1, [1], start_timeout_ms=harness.ms(60000))]}
        with harness.Herd(config) as herd, harness.Events(herd) as events:
            self.assertEqual(status(herd)["state"], "running")
            code, out = harness.run_herd("scale", "web", "2", "-c", herd.config_path)
            self.assertEqual(code, 0, out)
            events.wait_for("worker.spawned", slot=1)
            st = status(herd)
            self.assertEqual((st["state"], st["ready"], st["workers_wanted"]), ("degraded", 1, 2))
            self.assertEqual(sorted(w["state"] for w in st["workers"]), ["ready", "starting"])
            code, text = harness.run_herd("status", "-c", herd.config_path)
            self.assertIn("degraded (1 of 2 ready)", text)
            # Slot 0 serves meanwhile.
            self.assertEqual(harness.get(herd.port()).status, 200)


class Recycling(unittest.TestCase):
    def test_max_requests_recycles_workers_without_a_failed_request(self):
        with harness.Herd({"apps": [probe_app(2, max_requests=50)]}) as herd:
            port = herd.port()
            lock = threading.Lock()
            statuses, failures = [], []

            def load(n):
                c = None
                for _ in range(n):
                    try:
                        if c is None:
                            c = harness.Client(port)
                        r = c.request("GET", "/probe/pid")
                        with lock:
                            statuses.append(r.status)
                        if r.header("Connection") == "close":
                            c.close()
                            c = None
                    except Exception as e:
                        with lock:
                            failures.append(repr(e))
                        c = None
                if c:
                    c.close()

            threads = [threading.Thread(target=load, args=(150,)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(failures, [])
            self.assertEqual(statuses, [200] * 600)
            # 600 requests over workers that retire after 50 to 55: at least 8 recyclings.
            recycled = herd.count(r"asks to be recycled: max_requests: served 5\d requests")
            self.assertGreaterEqual(recycled, 8, herd.log())
            herd.wait_for(r"replaced by worker web/\d \(pid \d+\); draining it")

    def test_max_rss_mb_recycles_a_worker_that_grew(self):
        # The default watchdog (30 s): touching 400 MiB takes seconds under ASan, and a short
        # watchdog killed the worker before its heartbeat could show the memory. The limit is
        # well above a fresh worker's resident memory in every build (about 67 MiB under ASan,
        # its shadow memory: a limit of 64 recycled each replacement again).
        config = {"apps": [probe_app(2, max_rss_mb=256, drain_timeout_ms=1000)]}
        with harness.Herd(config) as herd, harness.Events(herd) as events:
            with harness.Client(herd.port()) as c:
                pid = int(c.request("GET", "/probe/alloc?mb=400").body)
                replacing = events.wait_for("worker.replacing", pid=pid)
                self.assertEqual(replacing["kind"], "max_rss")
                self.assertRegex(replacing["reason"], r"^max_rss_mb: resident \d+ MiB$")
                events.wait_for("worker.ready", pid=replacing["replacement"])
                exited = events.wait_for("worker.exited", pid=pid)
                self.assertEqual((exited["code"], exited["expected"]), (0, True))
            self.assertNotIn(pid, herd.worker_pids())
            self.assertEqual(len(herd.worker_pids()), 2)


if __name__ == "__main__":
    harness.main()
