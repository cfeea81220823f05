"""Process lifecycle: graceful stop with a request in flight, a killed worker replaced, a
killed master leaving no worker behind, and a second stop signal stopping at once."""
import signal
import threading
import unittest

import harness
from harness import app, plugin

# The drain deadline scales: the request in flight must finish before it.
PROBE_APP = app(workers=2, drain_timeout_ms=harness.ms(5000), plugins=[
    {"mount": "/", "path": plugin("hello")},
    {"mount": "/probe", "path": plugin("probe")},
])


def fetch_in_background(port, target):
    """Sends GET target on its own connection in a thread; returns (thread, result dict)."""
    result = {}

    def run():
        try:
            with harness.Client(port, seconds=30) as c:
                result["response"] = c.request("GET", target)
        except Exception as e:  # reported by the test's assertions
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


class Lifecycle(unittest.TestCase):
    def test_graceful_stop_completes_request_in_flight(self):
        with harness.Herd({"apps": [PROBE_APP]}) as herd, harness.Events(herd) as events:
            port = herd.port()
            workers = herd.worker_pids()
            broker = herd.broker_pid()
            mark = herd.mark()
            t, result = fetch_in_background(port, "/probe/sleep?ms=1000")
            herd.wait_for(r"plugin /probe: sleeping 1000 ms", after=mark)
            herd.signal(signal.SIGTERM)
            code = herd.wait_exit()
            t.join(harness.timeout(10))
            self.assertEqual(code, 0, herd.log())
            self.assertNotIn("error", result, herd.log())
            self.assertEqual(result["response"].status, 200)
            self.assertEqual(events.ended(), 0)
            events.wait_for("herd.stopping", reason="signal Terminated", exit_code=0)
            for pid in workers:
                events.wait_for("worker.exited", pid=pid, code=0, expected=True)
            events.wait_for("broker.exited", pid=broker, status="exited with code 0",
                            expected=True)

    def test_new_connections_refused_after_stop(self):
        with harness.Herd({"apps": [PROBE_APP]}) as herd:
            port = herd.port()
            herd.signal(signal.SIGTERM)
            self.assertEqual(herd.wait_exit(), 0)
            with self.assertRaises(ConnectionRefusedError):
                harness.get(port)

    def test_killed_worker_is_replaced(self):
        with harness.Herd({"apps": [PROBE_APP]}) as herd:
            port = herd.port()
            victim = int(harness.get(port, "/probe/pid").body)
            self.assertIn(victim, herd.worker_pids())
            with harness.Events(herd) as events:
                harness.os.kill(victim, signal.SIGKILL)
                exited = events.wait_for("worker.exited", pid=victim)
                self.assertEqual((exited["signal"], exited["expected"]), (9, False))
                spawned = events.wait_for("worker.spawned", slot=exited["slot"])
                replacement = events.wait_for("worker.ready", pid=spawned["pid"])["pid"]
            self.assertNotEqual(replacement, victim)
            pids = herd.worker_pids()
            self.assertEqual(len(pids), 2, pids)
            self.assertNotIn(victim, pids)
            self.assertIn(replacement, pids)
            for _ in range(20):
                self.assertEqual(harness.get(port).status, 200)

    def test_killed_master_leaves_no_worker_and_port_rebinds_at_once(self):
        herd = harness.Herd({"apps": [PROBE_APP]})
        with herd:
            port = herd.port()
            workers = herd.worker_pids()
            self.assertEqual(len(workers), 2)
            # A kept-alive client connection: the new master must bind despite it.
            c = harness.Client(port)
            self.assertEqual(c.request().status, 200)
            herd.proc.kill()
            herd.proc.wait()
            for pid in workers:
                harness.wait_until(lambda: not harness.pid_alive(pid), what="worker %d to die" % pid)
            c.close()
        again = dict(PROBE_APP, listen="127.0.0.1:%d" % port)
        with harness.Herd({"apps": [again]}) as second:
            self.assertEqual(second.port(), port)
            self.assertEqual(harness.get(port).body, b"Hello, World!")

    def test_second_signal_stops_at_once(self):
        with harness.Herd({"apps": [PROBE_APP]}) as herd:
            port = herd.port()
            mark = herd.mark()
            t, result = fetch_in_background(port, "/probe/sleep?ms=20000")
            herd.wait_for(r"plugin /probe: sleeping 20000 ms", after=mark)
            workers = herd.worker_pids()
            with harness.Events(herd) as events:
                herd.signal(signal.SIGINT)
                events.wait_for("herd.stopping", reason="signal Interrupt", exit_code=0)
            herd.signal(signal.SIGINT)
            code = herd.wait_exit(seconds=5)
            self.assertEqual(code, 1, herd.log())
            self.assertTrue(herd.count(r"second Interrupt: stopping at once"))
            for pid in workers:
                self.assertFalse(harness.pid_alive(pid))
            t.join(harness.timeout(5))
            self.assertIn("error", result)  # the in-flight request was cut off, as asked


if __name__ == "__main__":
    harness.main()
