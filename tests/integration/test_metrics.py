"""Metrics: the Prometheus endpoint counts responses by status class, keeps a latency
histogram consistent with them, counts restarts by reason and reloads, shows workers and
their memory, survives a worker's death without losing its counts, and answers anything
else with a clear status."""
import json
import re
import socket
import unittest

import harness
from harness import app, plugin


def sample(text, name, **labels):
    """The value of one sample, or None."""
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    m = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(name), re.escape(want)), text, re.M)
    return float(m.group(1)) if m else None


class Metrics(harness.HerdTestCase):
    config = {"metrics": "127.0.0.1:0",
              "apps": [app(workers=2, plugins=[{"mount": "/probe", "path": plugin("probe")}])]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.metrics_port = int(cls.herd.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))

    def scrape(self):
        with harness.Client(self.metrics_port) as c:
            r = c.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        return r.body.decode()

    def test_counts_histogram_restarts_and_reloads(self):
        for _ in range(10):
            self.assertEqual(harness.get(self.port, "/probe/pid").status, 200)
        for _ in range(3):
            self.assertEqual(harness.get(self.port, "/elsewhere").status, 404)
        with harness.Events(self.herd) as events:
            self.assertEqual(harness.get(self.port, "/probe/throw").status, 500)
            events.wait_for("worker.replacing", app="web", kind="exception")

        def settled():
            t = self.scrape()
            return (sample(t, "herd_requests_total", app="web", code="2xx") >= 10 and
                    sample(t, "herd_requests_total", app="web", code="4xx") >= 3 and
                    sample(t, "herd_requests_total", app="web", code="5xx") >= 1 and
                    sample(t, "herd_worker_restarts_total", app="web", reason="exception") == 1)
        # Heartbeats carry the figures (at most a second old); the thrower's last ones come
        # with its exit, so nothing it served is lost.
        harness.wait_until(settled, seconds=15, what="the metrics to count every request")
        t = self.scrape()
        total = sum(sample(t, "herd_requests_total", app="web", code=c) for c in
                    ("1xx", "2xx", "3xx", "4xx", "5xx"))
        self.assertEqual(sample(t, "herd_request_duration_seconds_count", app="web"), total)
        self.assertEqual(sample(t, "herd_request_duration_seconds_bucket", app="web", le="+Inf"), total)
        self.assertGreater(sample(t, "herd_request_duration_seconds_sum", app="web"), 0)
        buckets = [float(v) for v in re.findall(
            r'^herd_request_duration_seconds_bucket\{app="web",le="[^"]+"\} (\S+)$', t, re.M)]
        self.assertEqual(buckets, sorted(buckets))  # cumulative
        self.assertRegex(t, r'herd_worker_resident_bytes\{app="web",slot="0",pid="\d+"\} [1-9]\d+')
        self.assertEqual(sample(t, "herd_app_generation", app="web"), 1)
        self.assertRegex(t, r"\nherd_state_backend_up 1\n")
        self.assertRegex(t, r"\nherd_state_version \d+\n")

        code, out = harness.run_herd("reload", "-c", self.herd.config_path)
        self.assertEqual(code, 0, out)
        harness.wait_until(lambda: sample(self.scrape(), "herd_reloads_total", result="ok") == 1,
                           what="the reload to be counted")

    def test_other_paths_and_bad_requests(self):
        with harness.Client(self.metrics_port) as c:
            r = c.request("GET", "/elsewhere")
            self.assertEqual(r.status, 404)
            self.assertIn(b"/status.json", r.body)
        with harness.Client(self.metrics_port) as c:
            self.assertEqual(c.request("POST", "/metrics", body="x").status, 405)
        with harness.Client(self.metrics_port) as c:
            c.send(b"NOT HTTP AT ALL\r\n\r\n")
            self.assertEqual(c.read_response().status, 400)
        # A silent client does not hold the endpoint: others are served meanwhile.
        silent = socket.create_connection(("127.0.0.1", self.metrics_port))
        self.addCleanup(silent.close)
        self.assertIn("herd_requests_total", self.scrape())


if __name__ == "__main__":
    harness.main()
