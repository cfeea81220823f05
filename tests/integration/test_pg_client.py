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
import unittest

import harness
import pg_server
from harness import app, plugin
from outage import outage_under_load, proc_fds
from redis_server import free_port

PASSWORD = "pg-pw-3b9d-secret"
SLEEPING = ("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE 'SELECT pg_sleep(%'")


def probe_app(url, workers=1):
    return app(workers=workers, plugins=[{"mount": "/probe", "path": plugin("probe"),
                                          "config": {"postgres": url}}])


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
            # No connection to PostgreSQL yet: the count to come back to once the server has
            # closed the pools' connections after the test (they stay open while idle).
            rest = proc_fds(herd)
            for _ in range(4):
                self.assertEqual(harness.get(herd.port(), "/probe/pg/ping").status, 200)
            outage_under_load(self, herd, "/probe/pg/ping", self.pg.stop, self.pg.start,
                              before_ok=(200, b"1"), after_ok=(200, b"1"),
                              reasons=[b"PostgreSQL"], secret=PASSWORD,
                              at_rest=(rest, self.pg.stop))
            self.assertEqual(herd.stop(), 0, herd.log())

if __name__ == "__main__":
    harness.main()
