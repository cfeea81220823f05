"""The plugins' Redis client (Context::redis()) through probe's /redis/get and /redis/set, against
a real redis-server started here on a free 127.0.0.1 port: values round-trip into the URL's
database, the password reaches Redis and never herd's log, status or metrics; a bad URL stops
the start naming config.redis; and under load Redis stopped and started again: requests fail
with a clear 503 during the outage only, everything recovers without restarting herd, no
worker crashes and none keeps a descriptor more.
"""

import json
import shutil
import tempfile
import unittest

import harness
from harness import app, plugin
from outage import outage_under_load
from redis_server import RedisServer, free_port

PASSWORD = "pw-7c1e-secret"


def probe_app(redis_url, workers=1):
    return app(workers=workers, plugins=[{"mount": "/probe", "path": plugin("probe"),
                                          "config": {"redis": redis_url}}])


def put(port, target, body):
    with harness.Client(port) as c:
        return c.request("PUT", target, body=body)


@unittest.skipUnless(shutil.which("redis-server") and shutil.which("redis-cli"),
                     "redis-server is not installed (scripts/setup.sh installs it)")
class RedisClient(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="herd-redis-client-")
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.redis = RedisServer(free_port(), self.folder, password=PASSWORD)
        self.redis.start()
        self.addCleanup(self.redis.stop)
        self.url = "redis://:%s@127.0.0.1:%d/2" % (PASSWORD, self.redis.port)

    def test_values_round_trip_and_the_password_stays_secret(self):
        config = {"apps": [probe_app(self.url)], "metrics": "127.0.0.1:0"}
        with harness.Herd(config) as herd:
            port = herd.port()
            metrics_port = int(herd.wait_for(
                r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1))
            r = put(port, "/probe/redis/set?key=greeting", "hello, redis")
            self.assertEqual((r.status, r.body), (200, b"OK"))
            self.assertEqual(self.redis.cli("-n", "2", "GET", "greeting"), "hello, redis")
            r = harness.get(port, "/probe/redis/get?key=greeting")
            self.assertEqual((r.status, r.body), (200, b"hello, redis"))
            self.assertEqual(harness.get(port, "/probe/redis/get?key=nothing").status, 404)
            # A Redis error comes back as the client's error, with Redis's words.
            self.redis.cli("-n", "2", "RPUSH", "alist", "x")
            r = harness.get(port, "/probe/redis/get?key=alist")
            self.assertEqual(r.status, 503)
            self.assertIn(b"WRONGTYPE", r.body)
            self.assertEqual(harness.get(port, "/probe/redis/set?key=k").status, 405)

            wanted = [b'herd_redis_client_requests_total{app="web"} 4',
                      b'herd_redis_client_errors_total{app="web",kind="server"} 1',
                      b'herd_redis_client_connections{app="web",state="open"} 1',
                      b'herd_redis_client_duration_seconds_count{app="web"} 3']
            metrics = harness.wait_metrics(metrics_port, wanted,
                                           "the Redis client's figures in /metrics")
            code, status = harness.run_herd("status", "--json", "-c", herd.config_path)
            self.assertEqual(code, 0, status)
            self.assertEqual(herd.stop(), 0, herd.log())
            for text, where in [(herd.log(), "log"), (status, "status"),
                                (metrics.decode(), "metrics")]:
                self.assertNotIn(PASSWORD, text, where)

    def test_a_bad_url_stops_the_start_naming_the_key(self):
        bad = "redis://:%s@127.0.0.1:notaport/0" % PASSWORD
        fd, path = tempfile.mkstemp(prefix="herd-config-", suffix=".json")
        with open(fd, "w") as f:
            json.dump(harness.with_root_allowed({"apps": [probe_app(bad)]}), f)
        self.addCleanup(lambda: __import__("os").unlink(path))
        code, out = harness.run_herd("check", path)
        self.assertNotEqual(code, 0, out)
        self.assertIn('plugin "/probe"', out)
        self.assertIn("config.redis", out)
        self.assertIn("the port", out)
        self.assertNotIn(PASSWORD, out)

    def test_redis_stopped_and_started_again_under_load(self):
        with harness.Herd({"apps": [probe_app(self.url, workers=2)]}) as herd:
            self.assertEqual(put(herd.port(), "/probe/redis/set?key=k", "v").status, 200)
            # The redis-server started again has no data (no persistence): 404 is Redis's
            # answer then.
            outage_under_load(self, herd, "/probe/redis/get?key=k", self.redis.stop,
                              self.redis.start, before_ok=(200, b"v"), after_ok=(404, b""),
                              reasons=[b"is down", b"cannot connect", b"broke"],
                              secret=PASSWORD)
            self.assertEqual(herd.stop(), 0, herd.log())

if __name__ == "__main__":
    harness.main()
