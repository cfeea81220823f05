"""TTIN / TTOU: one worker more or fewer for every app, and a removed reuseport slot whose
queued connections are passed to the remaining workers instead of being lost."""
import collections
import signal
import threading
import unittest

import harness
from harness import app, plugin


def probe_app(mode, workers):
    return app(workers=workers, balance=mode, plugins=[
        {"mount": "/", "path": plugin("hello")},
        {"mount": "/probe", "path": plugin("probe")},
    ])


class Scale(unittest.TestCase):
    def test_ttin_and_ttou(self):
        with harness.Herd({"apps": [probe_app("shared", 2)]}) as herd, \
                harness.Events(herd) as events:
            port = herd.port()
            herd.signal(signal.SIGTTIN)
            scaled = events.wait_for("app.scaled", app="web")
            self.assertEqual((scaled["from"], scaled["to"]), (2, 3))
            events.wait_for("worker.ready", slot=2)
            self.assertEqual(len(herd.worker_pids()), 3)
            herd.signal(signal.SIGTTOU)
            exited = events.wait_for("worker.exited", slot=2)
            self.assertEqual((exited["code"], exited["expected"]), (0, True))
            herd.signal(signal.SIGTTOU)
            exited = events.wait_for("worker.exited", slot=1)
            self.assertEqual((exited["code"], exited["expected"]), (0, True))
            herd.wait_for(r"worker web/1 \(pid \d+\) exited with code 0 after .*; slot 1 removed")
            # At one worker, a further TTOU changes nothing.
            herd.signal(signal.SIGTTOU)
            self.assertEqual(len(herd.worker_pids()), 1)
            for _ in range(10):
                self.assertEqual(harness.get(port).status, 200)
            self.assertEqual(herd.count(r"spawned worker web/[12] .* generation"), 2, "no replacement")

    def test_removed_reuseport_slot_loses_no_queued_connection(self):
        with harness.Herd({"apps": [probe_app("reuseport", 4)]}) as herd:
            port = herd.port()
            victim = int(herd.wait_for(r"spawned worker web/3 \(pid (\d+)\)").group(1))
            # Stopped, the slot-3 worker accepts nothing: connections hashed to its socket queue.
            harness.os.kill(victim, signal.SIGSTOP)
            mark = herd.mark()
            threads, results, errors, lock = harness.burst(port, threads=32, per_thread=10)
            harness.wait_answers(results, lock, 20)
            # Remove slot 3: the master takes its socket over and passes what waits there on.
            herd.signal(signal.SIGTTOU)
            herd.wait_for(r'app "web": 4 to 3 worker\(s\)', after=mark)
            for t in threads:
                t.join()
            harness.os.kill(victim, signal.SIGKILL)
            herd.wait_for(r"worker web/3 \(pid %d\) killed by signal 9.*slot 3 removed" % victim, after=mark)
            self.assertEqual(errors, [])
            self.assertEqual(len(results), 320)
            pids = collections.Counter(int(body) for _, body in results)
            self.assertNotIn(victim, pids)
            self.assertEqual(set(pids), set(herd.worker_pids()))
            self.assertEqual(len(herd.worker_pids()), 3)


if __name__ == "__main__":
    harness.main()
