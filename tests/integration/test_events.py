"""`herd events`: the master's lifecycle events as they happen, one JSON object per line, from
the control socket: workers spawned, ready, killed for a missed deadline, exited with their
reason; apps ready, scaled, failed; reloads; the broker; herd stopping."""
import os
import queue
import signal
import subprocess
import threading
import unittest

import harness
from harness import app, plugin


def probe_app(workers=2, probe_config=None, **extra):
    return app(workers=workers, plugins=[
        {"mount": "/", "path": plugin("hello")},
        {"mount": "/probe", "path": plugin("probe"), "config": probe_config or {}},
    ], **extra)


class Stream(unittest.TestCase):
    def test_a_killed_worker_is_seen_exiting_and_its_slot_restarting(self):
        with harness.Herd({"apps": [probe_app()]}) as herd, harness.Events(herd) as events:
            victim = int(harness.get(herd.port(), "/probe/pid").body)
            os.kill(victim, signal.SIGKILL)
            exited = events.wait_for("worker.exited", pid=victim)
            self.assertEqual((exited["signal"], exited["expected"], exited["state"]),
                             (9, False, "ready"))
            self.assertIn("killed by signal 9", exited["status"])
            spawned = events.wait_for("worker.spawned", app="web", slot=exited["slot"])
            ready = events.wait_for("worker.ready", pid=spawned["pid"])
            self.assertEqual(ready["generation"], 1)
            self.assertRegex(ready["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertEqual(herd.stop(), 0)
            events.wait_for("herd.stopping", reason="signal Terminated")
            events.wait_for("worker.exited", pid=spawned["pid"], expected=True)
            self.assertEqual(events.ended(), 0)

    def test_reload_and_scale(self):
        with harness.Herd({"apps": [probe_app()]}) as herd, harness.Events(herd) as events:
            code, out = harness.run_herd("scale", "web", "3", "-c", herd.config_path)
            self.assertEqual(code, 0, out)
            self.assertEqual(events.wait_for("app.scaled", app="web")["to"], 3)
            events.wait_for("worker.ready", slot=2)
            with open(herd.config_path) as f:
                config = f.read()
            with open(herd.config_path, "w") as f:
                f.write(config.replace('"workers": 2', '"workers": 1'))
            code, out = harness.run_herd("reload", "-c", herd.config_path, seconds=60)
            self.assertEqual(code, 0, out)
            started = events.wait_for("reload.started", source="herd reload")
            events.wait_for("reload.rolling", id=started["id"])
            events.wait_for("worker.ready", generation=2, slot=0)
            events.wait_for("app.rolled", app="web", generation=2)
            finished = events.wait_for("reload.finished", id=started["id"])
            self.assertEqual((finished["ok"], finished["error"]), (True, ""))

    def test_a_start_timeout_is_a_kill_with_its_reason_then_the_app_fails(self):
        limit = harness.ms(1000)
        config = {"apps": [probe_app(1, {"hang_on_start_slots": [0]}, start_timeout_ms=limit,
                                     restart_backoff_ms=50)]}
        with harness.Herd(config, wait_ready=False) as herd:
            herd.wait_for(r"control socket")
            with harness.Events(herd) as events:
                killed = events.wait_for("worker.killed", deadline="start_timeout", seconds=30)
                self.assertEqual(killed["reason"],
                                 "not ready within %d ms (start_timeout_ms)" % limit)
                exited = events.wait_for("worker.exited", pid=killed["pid"])
                self.assertEqual((exited["state"], exited["signal"]), ("starting", 9))
                failed = events.wait_for("app.failed", app="web", seconds=60)
                self.assertIn("start_timeout_ms", failed["reason"])

    def test_text_format_and_a_refused_socket(self):
        with harness.Herd({"apps": [probe_app(1)]}) as herd:
            p = subprocess.Popen([harness.HERD_BIN, "events", "-c", herd.config_path],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            lines = queue.Queue()
            reader = threading.Thread(target=lambda: [lines.put(l) for l in p.stdout], daemon=True)
            reader.start()
            try:
                # The text form prints no subscribed line: scale until an event shows (a scale
                # sent before the subscription is not seen).
                line = None
                for n in (2, 1, 2, 1, 2, 1):
                    code, out = harness.run_herd("scale", "web", str(n), "-c", herd.config_path)
                    self.assertEqual(code, 0, out)
                    try:
                        line = lines.get(timeout=harness.timeout(2)).decode()
                        break
                    except queue.Empty:
                        continue
                self.assertIsNotNone(line)
                self.assertRegex(line, r"^\S+Z (app\.scaled app=web from=\d to=\d$|"
                                 r"worker\.\w+ app=web generation=1 .*pid=\d+ slot=\d)")
            finally:
                p.kill()
                p.wait()
                reader.join()
                p.stdout.close()
                p.stderr.close()
        code, out = harness.run_herd("events", "-s", "/nonexistent/herd.sock")
        self.assertEqual(code, 1)
        self.assertIn("no herd master is running at /nonexistent/herd.sock", out)


if __name__ == "__main__":
    harness.main()
