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
import threading
import unittest

import harness
from harness import app, plugin
from redis_server import RedisServer, free_port

PASSWORD = "pw-7c1e-secret"


def probe_app(redis_url, workers=1):
    return app(workers=workers, plugins=[{"mount": "/probe", "path": plugin("probe"),
                                          "config": {"redis": redis_url}}])


def put(port, target, body):
    with harness.Client(port) as c:
        return c.request("PUT", target, body=body)


def worker_fds(herd):
    code, out = harness.run_herd("status", "--json", "-c", herd.config_path)
    if code != 0:
        return None
    return [w["async"].get("fds") for w in json.loads(out)["apps"][0]["workers"]]


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
            port = herd.port()
            self.assertEqual(put(port, "/probe/redis/set?key=k", "v").status, 200)
            pids = sorted(herd.worker_pids())
            baseline = {}

            def settled():
                baseline["fds"] = worker_fds(herd)
                return baseline["fds"] is not None and None not in baseline["fds"]
            harness.wait_until(settled, what="the workers' descriptor counts")

            # Two clients read in a loop on keep-alive connections; each answer is recorded.
            answers, lock, stop = [], threading.Lock(), threading.Event()

            def load():
                with harness.Client(port, seconds=30) as c:
                    while not stop.is_set():
                        r = c.request("GET", "/probe/redis/get?key=k")
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
                self.redis.stop()

                def failing():
                    with lock:
                        return any(s == 503 for s, _ in answers[before:])
                harness.wait_until(failing, what="503s while Redis is down")
                with lock:
                    down_at = len(answers)
                harness.wait_until(lambda: answered(down_at + 50), what="answers while down")
                self.redis.start()
                # The redis-server started again has no data (no persistence): 404 means Redis
                # answered. Wait for a run of 50 answers in a row from Redis.

                def recovered():
                    with lock:
                        tail = answers[-50:]
                    return len(tail) == 50 and all(s == 404 for s, _ in tail)
                harness.wait_until(recovered, seconds=30, what="Redis answering again")
            finally:
                stop.set()
                for t in threads:
                    t.join(harness.timeout(30))
            with lock:
                seen = list(answers)
            # Before the outage every answer was the value; after it Redis's own (404); between,
            # while each worker found Redis again in its own time (its back-off), 503s that say
            # why, and nothing else anywhere.
            self.assertTrue(all(a == (200, b"v") for a in seen[:before]), seen[:before][:5])
            last_503 = max(i for i, (s, _) in enumerate(seen) if s == 503)
            self.assertGreater(last_503, before)
            self.assertGreaterEqual(len(seen) - last_503 - 1, 50)
            self.assertTrue(all(s == 404 for s, _ in seen[last_503 + 1:]))
            for status, body in seen[before:last_503 + 1]:
                self.assertIn(status, (200, 404, 503), body)
                if status == 503:
                    self.assertTrue(b"is down" in body or b"cannot connect" in body
                                    or b"broke" in body, body)
                    self.assertNotIn(PASSWORD.encode(), body)
            # Same workers, same descriptors.
            self.assertEqual(sorted(herd.worker_pids()), pids)
            harness.wait_until(lambda: worker_fds(herd) == baseline["fds"],
                               what="the workers back at %s descriptors" % baseline["fds"])
            self.assertEqual(herd.stop(), 0, herd.log())


if __name__ == "__main__":
    harness.main()
