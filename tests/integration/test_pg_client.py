"""The plugins' PostgreSQL client (Context::postgres()) through probe's /pg/ping and /pg/sleep,
against a real PostgreSQL started here on a free 127.0.0.1 port: a query answers, the password
reaches the server and never herd's log, status or metrics; a bad URL stops the start naming
config.postgres; a client that leaves mid-query gets its query cancelled on the server (seen in
pg_stat_activity); and under load PostgreSQL stopped and started again: requests fail with a
clear 503 during the outage only, everything recovers without restarting herd, no worker
crashes and none keeps a descriptor more.
"""

import json
import os
import shutil
import socket
import tempfile
import threading
import unittest

import harness
import pg_server
from harness import app, plugin
from redis_server import free_port

PASSWORD = "pg-pw-3b9d-secret"
SLEEPING = ("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE 'SELECT pg_sleep(%'")


def probe_app(url, workers=1):
    return app(workers=workers, plugins=[{"mount": "/probe", "path": plugin("probe"),
                                          "config": {"postgres": url}}])


def worker_fds(herd):
    code, out = harness.run_herd("status", "--json", "-c", herd.config_path)
    if code != 0:
        return None
    return [w["async"].get("fds") for w in json.loads(out)["apps"][0]["workers"]]


@unittest.skipUnless(pg_server.available(),
                     "postgresql is not installed (scripts/setup.sh installs it)")
class PostgresClient(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="herd-pg-client-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.pg = pg_server.PgServer(free_port(), self.folder, PASSWORD)
        self.pg.start()
        self.addCleanup(self.pg.stop)

    def test_ping_and_the_password_stays_secret(self):
        config = {"apps": [probe_app(self.pg.url())], "metrics": "127.0.0.1:0"}
        with harness.Herd(config) as herd:
            port = herd.port()
            metrics_port = int(herd.wait_for(
                r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
            for _ in range(3):
                r = harness.get(port, "/probe/pg/ping")
                self.assertEqual((r.status, r.body), (200, b"1"))
            metrics = harness.wait_metrics(
                metrics_port, [b'herd_postgres_client_requests_total{app="web"} 3',
                               b'herd_postgres_client_duration_seconds_count{app="web"} 3',
                               b'herd_postgres_client_connections{app="web",state="idle"} 1'],
                "the PostgreSQL client's figures in /metrics")
            code, status = harness.run_herd("status", "--json", "-c", herd.config_path)
            self.assertEqual(code, 0, status)
            self.assertEqual(herd.stop(), 0, herd.log())
            for text, where in [(herd.log(), "log"), (status, "status"),
                                (metrics.decode(), "metrics")]:
                self.assertNotIn(PASSWORD, text, where)

    def test_a_wrong_password_is_a_clear_503_without_it(self):
        url = "postgresql://app:not-%s@127.0.0.1:%d/postgres" % (PASSWORD, self.pg.port)
        with harness.Herd({"apps": [probe_app(url)]}) as herd:
            r = harness.get(herd.port(), "/probe/pg/ping")
            self.assertEqual(r.status, 503)
            self.assertIn(b"28P01", r.body)
            self.assertNotIn(PASSWORD.encode(), r.body)
            self.assertEqual(herd.stop(), 0, herd.log())
            self.assertNotIn(PASSWORD, herd.log())

    def test_a_bad_url_stops_the_start_naming_the_key(self):
        bad = "postgresql://app:%s@127.0.0.1:99999/postgres" % PASSWORD
        fd, path = tempfile.mkstemp(prefix="herd-config-", suffix=".json")
        with open(fd, "w") as f:
            json.dump(harness.with_root_allowed({"apps": [probe_app(bad)]}), f)
        self.addCleanup(os.unlink, path)
        code, out = harness.run_herd("check", path)
        self.assertNotEqual(code, 0, out)
        self.assertIn('plugin "/probe"', out)
        self.assertIn("config.postgres", out)
        self.assertNotIn(PASSWORD, out)

    def test_a_client_that_leaves_cancels_the_query_on_the_server(self):
        with harness.Herd({"apps": [probe_app(self.pg.url())]}) as herd:
            port = herd.port()
            self.assertEqual(harness.get(port, "/probe/pg/ping").status, 200)
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /probe/pg/sleep?ms=600000 HTTP/1.1\r\nHost: x\r\n\r\n")
            harness.wait_until(lambda: self.pg.psql(SLEEPING) == "1",
                               what="the query running on the server")
            s.close()
            harness.wait_until(lambda: self.pg.psql(SLEEPING) == "0",
                               what="the query cancelled on the server")
            # The pool is whole again: a query goes through at once.
            self.assertEqual(harness.get(port, "/probe/pg/ping").body, b"1")
            self.assertEqual(herd.stop(), 0, herd.log())

    def test_postgres_stopped_and_started_again_under_load(self):
        with harness.Herd({"apps": [probe_app(self.pg.url(), workers=2)]}) as herd:
            port = herd.port()
            pids = sorted(herd.worker_pids())
            for _ in range(4):
                self.assertEqual(harness.get(port, "/probe/pg/ping").status, 200)
            baseline = {}

            def settled():
                baseline["fds"] = worker_fds(herd)
                return baseline["fds"] is not None and None not in baseline["fds"]
            harness.wait_until(settled, what="the workers' descriptor counts")

            answers, lock, stop = [], threading.Lock(), threading.Event()

            def load():
                with harness.Client(port, seconds=60) as c:
                    while not stop.is_set():
                        r = c.request("GET", "/probe/pg/ping")
                        with lock:
                            answers.append((r.status, r.body))
            threads = [threading.Thread(target=load) for _ in range(2)]
            for t in threads:
                t.start()
            try:
                def answered(n):
                    with lock:
                        return len(answers) >= n
                harness.wait_until(lambda: answered(50), what="answers before the outage")
                with lock:
                    before = len(answers)
                self.pg.stop()

                def failing():
                    with lock:
                        return any(s == 503 for s, _ in answers[before:])
                harness.wait_until(failing, what="503s while PostgreSQL is down")
                with lock:
                    down_at = len(answers)
                harness.wait_until(lambda: answered(down_at + 20), what="answers while down")
                self.pg.start()

                def recovered():
                    with lock:
                        tail = answers[-50:]
                    return (len(tail) == 50 and answers[-1][0] == 200
                            and all(s == 200 for s, _ in tail))
                harness.wait_until(recovered, seconds=30, what="PostgreSQL answering again")
            finally:
                stop.set()
                for t in threads:
                    t.join(harness.timeout(60))
            with lock:
                seen = list(answers)
            self.assertTrue(all(a == (200, b"1") for a in seen[:before]), seen[:before][:5])
            last_503 = max(i for i, (s, _) in enumerate(seen) if s == 503)
            self.assertGreater(last_503, before)
            self.assertTrue(all(a == (200, b"1") for a in seen[last_503 + 1:]))
            for status, body in seen[before:last_503 + 1]:
                self.assertIn(status, (200, 503), body)
                if status == 503:
                    self.assertIn(b"PostgreSQL", body)
                    self.assertNotIn(PASSWORD.encode(), body)
            self.assertEqual(sorted(herd.worker_pids()), pids)
            harness.wait_until(lambda: worker_fds(herd) == baseline["fds"],
                               what="the workers back at %s descriptors" % baseline["fds"])
            self.assertEqual(herd.stop(), 0, herd.log())


if __name__ == "__main__":
    harness.main()
