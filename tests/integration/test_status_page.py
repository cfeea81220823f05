"""The status page, /status.json and the credentials on the metrics address, over plain HTTP:
the page's worker rows are those of `herd status --json`, a worker killed shows as restarted
(new pid, restart counted, its exit among the events) within seconds, the charts get their
first points, CPU figures reach the status and /metrics, and with "metrics_auth" everything
but /healthz asks for credentials (bearer or basic), rotated by a reload. The page in a real
browser: test_status_browser.py."""
import base64
import json
import os
import re
import signal
import unittest

import harness
from harness import app, plugin


def rows(page):
    """{pid: slot} of the page's worker rows."""
    return {int(pid): int(slot) for pid, slot in
            re.findall(r'<tr data-pid="(\d+)" data-slot="(\d+)">', page)}


class StatusPage(harness.HerdTestCase):
    config = {"metrics": "127.0.0.1:0",
              "apps": [app(workers=2, plugins=[{"mount": "/probe", "path": plugin("probe")}])]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.metrics_port = int(cls.herd.wait_for(
            r"status page on http://127\.0\.0\.1:(\d+)/").group(1))

    def fetch(self, path, headers=None):
        with harness.Client(self.metrics_port) as c:
            return c.request("GET", path, headers=headers)

    def status(self):
        code, out = harness.run_herd("status", "--json", "-c", self.herd.config_path)
        self.assertEqual(code, 0, out)
        return json.loads(out)

    def test_rows_match_the_status_and_a_killed_worker_shows_restarted(self):
        r = self.fetch("/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "text/html; charset=utf-8")
        self.assertIn("default-src 'none'", r.header("Content-Security-Policy"))
        page = r.body.decode()
        workers = self.status()["apps"][0]["workers"]
        self.assertEqual(rows(page), {w["pid"]: w["slot"] for w in workers})
        doc = json.loads(self.fetch("/status.json").body)
        self.assertEqual({w["pid"] for w in doc["apps"][0]["workers"]},
                         {w["pid"] for w in workers})
        for key in ("history", "events", "now", "version", "state"):
            self.assertIn(key, doc)
        self.assertEqual(doc["state"]["lag"], 0)
        self.assertIn("<th>lag</th>", page)

        victim = workers[0]
        os.kill(victim["pid"], signal.SIGKILL)

        def restarted():
            page = self.fetch("/").body.decode()
            seen = rows(page)
            return (victim["pid"] not in seen and sorted(seen.values()) == [0, 1]
                    and ">worker.exited<" in page and page)
        page = harness.wait_until_value(restarted, seconds=10,
                                        what="the page to show the worker restarted")
        new_pid = next(pid for pid, slot in rows(page).items() if slot == victim["slot"])
        doc = json.loads(self.fetch("/status.json").body)
        row = next(w for w in doc["apps"][0]["workers"] if w["pid"] == new_pid)
        self.assertEqual(row["restarts"], victim["restarts"] + 1)
        self.assertTrue(any(e["event"] == "worker.exited" and e.get("pid") == victim["pid"]
                            for e in doc["events"]), doc["events"])

    def test_charts_get_points_and_cpu_is_reported(self):
        for _ in range(20):
            self.assertEqual(harness.get(self.port, "/probe/pid").status, 200)
        # Some CPU for one worker: 64 MiB touched (kept until it exits).
        r = harness.get(self.port, "/probe/alloc?mb=64")
        self.assertEqual(r.status, 200)
        busy = int(r.body)
        # One point per 5 s step.
        doc = harness.wait_until_value(
            lambda: (lambda d: d if d["history"]["apps"].get("web") else None)(
                json.loads(self.fetch("/status.json").body)),
            seconds=20, what="the first point of the charts")
        point = doc["history"]["apps"]["web"][0]
        for key in ("t", "rps", "p50_ms", "p99_ms", "errors", "restarts"):
            self.assertIn(key, point)
        self.assertIn('data-series="rps"', self.fetch("/").body.decode())  # a dot, then a line
        for w in doc["apps"][0]["workers"]:
            self.assertGreaterEqual(w["cpu_percent"], 0)
            self.assertGreaterEqual(w["cpu_s"], 0)
        harness.wait_until(
            lambda: any(w["pid"] == busy and w["cpu_s"] > 0
                        for w in json.loads(self.fetch("/status.json").body)["apps"][0]["workers"]),
            what="the busy worker's CPU time (from /proc at its next heartbeat)")
        metrics = self.fetch("/metrics").body.decode()
        self.assertRegex(metrics, r'herd_worker_cpu_seconds_total\{app="web",slot="0",pid="\d+"\} ')
        self.assertRegex(metrics, r'herd_worker_cpu_percent\{app="web",slot="1",pid="\d+"\} ')
        code, out = harness.run_herd("status", "-c", self.herd.config_path)
        self.assertRegex(out, r"rss +cpu\n")


class Credentials(unittest.TestCase):
    def test_bearer_then_basic_after_a_reload(self):
        config = {"metrics": "127.0.0.1:0", "metrics_auth": {"token": "t0ken-1"},
                  "apps": [app(workers=1, plugins=[{"mount": "/probe", "path": plugin("probe")}])]}
        with harness.Herd(config) as herd:
            port = int(herd.wait_for(r"status page on http://127\.0\.0\.1:(\d+)/").group(1))

            def get(path, auth=None):
                with harness.Client(port) as c:
                    return c.request("GET", path,
                                     headers={"Authorization": auth} if auth else None)
            for path in ("/", "/status.json", "/metrics"):
                r = get(path)
                self.assertEqual(r.status, 401, path)
                self.assertEqual(r.header("WWW-Authenticate"), 'Bearer realm="herd"')
                self.assertEqual(get(path, "Bearer wrong").status, 401)
                self.assertEqual(get(path, "Bearer t0ken-1").status, 200, path)
            self.assertEqual(get("/healthz").status, 200)  # load balancers need no secret
            self.assertNotIn(b"t0ken", get("/status.json", "Bearer t0ken-1").body)

            # New credentials with a reload: basic, the old token refused.
            with open(herd.config_path, "w") as f:
                json.dump(harness.with_root_allowed(dict(
                    config, metrics_auth={"user": "ops", "password": "pa55"})), f)
            code, out = harness.run_herd("reload", "-c", herd.config_path)
            self.assertEqual(code, 0, out)
            basic = "Basic " + base64.b64encode(b"ops:pa55").decode()
            self.assertEqual(get("/", "Bearer t0ken-1").status, 401)
            r = get("/")
            self.assertEqual(r.header("WWW-Authenticate"), 'Basic realm="herd", charset="UTF-8"')
            self.assertEqual(get("/", basic).status, 200)
            self.assertNotIn(b"pa55", get("/status.json", basic).body)
            self.assertNotIn("pa55", herd.log())
            self.assertEqual(herd.stop(), 0, herd.log())


if __name__ == "__main__":
    harness.main()
