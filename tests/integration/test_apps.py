"""Several apps in one master: each is its own group (address, plugins, workers, balancing,
env, limits), and a crash loop, a reload or a failed reload of one never disturbs another:
the steady app keeps its workers and serves every request meanwhile."""
import json
import os
import threading
import unittest

import harness
from harness import app, plugin


def steady():
    return app(name="steady", workers=2, balance="shared",
               plugins=[{"mount": "/", "path": plugin("hello"), "config": {"greeting": "steady"}}])


def crashy(env_value="1", path=None):
    return app(name="crashy", workers=2, balance="reuseport", env={"CRASHY": env_value},
               restart_backoff_ms=10, max_body_bytes=1024,
               plugins=[{"mount": "/", "path": path or plugin("probe")}])


class KeepAliveLoad:
    """One thread sending keep-alive requests until stopped; counts answers and failures."""

    def __init__(self, port):
        self.port, self.ok, self.failures = port, 0, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        client = None
        while not self.stop.is_set():
            try:
                client = client or harness.Client(self.port)
                r = client.request("GET", "/")
                if r.status != 200 or r.body != b"steady":
                    self.failures.append(repr(r))
                self.ok += 1
                if r.header("Connection") == "close":
                    client.close()
                    client = None
            except Exception as e:  # any error on the steady app is a failure of the test
                self.failures.append(repr(e))
                client = None
        if client:
            client.close()

    def finish(self):
        self.stop.set()
        self.thread.join(harness.timeout(30))


class Isolation(unittest.TestCase):
    def test_crash_loop_and_reloads_of_one_app_leave_the_other_alone(self):
        config = {"apps": [steady(), crashy()]}
        with harness.Herd(config) as herd, harness.Events(herd) as events:
            steady_port, crashy_port = herd.port("steady"), herd.port("crashy")
            self.assertEqual(harness.get(crashy_port, "/env/CRASHY").body, b"1")
            before = self.steady_workers(herd)
            load = KeepAliveLoad(steady_port)
            try:
                # A crash loop: crashy's workers die one after another.
                for i in range(6):
                    mark = events.mark()
                    try:
                        harness.get(crashy_port, "/segv")
                    except (ConnectionError, OSError):
                        pass  # the crashing request itself is lost, by design
                    exited = events.wait_for("worker.exited", after=mark, app="crashy", signal=11)
                    spawned = events.wait_for("worker.spawned", after=mark, app="crashy",
                                              slot=exited["slot"])
                    events.wait_for("worker.ready", after=mark, pid=spawned["pid"])
                # A reload that changes only crashy.
                self.write(herd, {"apps": [steady(), crashy("2")]})
                code, out = harness.run_herd("reload", "-c", herd.config_path)
                self.assertEqual(code, 0, out)
                self.assertIn("app steady: generation 1", out)
                self.assertIn("app crashy: generation 2", out)
                self.assertEqual(harness.get(crashy_port, "/env/CRASHY").body, b"2")
                # A reload of crashy that fails at its canary.
                self.write(herd, {"apps": [steady(), crashy("3", path="/nonexistent/libx.so")]})
                code, out = harness.run_herd("reload", "-c", herd.config_path)
                self.assertEqual(code, 1, out)
                self.assertIn("/nonexistent/libx.so", out)
                self.assertEqual(harness.get(crashy_port, "/env/CRASHY").body, b"2")
            finally:
                load.finish()
            self.assertEqual(load.failures, [])
            self.assertGreater(load.ok, 50)
            self.assertEqual(self.steady_workers(herd), before)
            # No steady worker was drained, replaced or lost along the way.
            for name in ("worker.exited", "worker.killed", "worker.draining", "worker.replacing"):
                self.assertEqual(events.seen(name, app="steady"), [], herd.log())

    def steady_workers(self, herd):
        code, out = harness.run_herd("status", "--json", "-c", herd.config_path)
        self.assertEqual(code, 0, out)
        app = [a for a in json.loads(out)["apps"] if a["name"] == "steady"][0]
        return sorted((w["slot"], w["pid"], w["generation"]) for w in app["workers"])

    @staticmethod
    def write(herd, config):
        with open(herd.config_path + ".tmp", "w") as f:
            json.dump(config, f)
        os.replace(herd.config_path + ".tmp", herd.config_path)


if __name__ == "__main__":
    harness.main()
