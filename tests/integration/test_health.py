"""The health endpoint ("health": ADDRESS, GET /healthz), answered by the master for a load
balancer: 200 while the host serves; 503 while an app has never been ready, while herd drains,
and once the shared state's backend has been down longer than health_max_state_age_ms; 200
again when it is back. The metrics address answers /healthz too."""
import os
import shutil
import signal
import socket
import threading
import unittest

import harness
import redis_server
from harness import app, plugin


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe_app(**extra):
    return app(workers=1, plugins=[{"mount": "/", "path": plugin("probe")}], **extra)


class Health(unittest.TestCase):
    def test_serving_then_draining(self):
        health, metrics = free_port(), free_port()
        config = {"health": "127.0.0.1:%d" % health, "metrics": "127.0.0.1:%d" % metrics,
                  "apps": [probe_app()]}
        with harness.Herd(config) as herd:
            r = harness.get(health, "/healthz")
            self.assertEqual((r.status, r.body), (200, b"ok\n"))
            self.assertEqual(harness.get(metrics, "/healthz").status, 200)
            # The health address shows no figures.
            r = harness.get(health, "/metrics")
            self.assertEqual((r.status, r.body), (404, b"herd serves its health at /healthz\n"))
            # A request in flight keeps the worker draining after TERM: meanwhile the host
            # tells its load balancer to send nothing more.
            port = herd.port()
            mark = herd.mark()
            answer = {}
            slow = threading.Thread(
                target=lambda: answer.setdefault("r", harness.get(port, "/sleep?ms=%d" % int(
                    harness.timeout(3) * 1000))))
            slow.start()
            herd.wait_for(r"sleeping \d+ ms", after=mark)
            herd.signal(signal.SIGTERM)
            herd.wait_for(r"draining", after=mark)
            r = harness.get(health, "/healthz")
            self.assertEqual((r.status, r.body), (503, b"draining: herd is stopping\n"))
            slow.join(harness.timeout(30))
            self.assertEqual(answer["r"].status, 200)
            self.assertEqual(herd.wait_exit(), 0)

    def test_an_app_that_never_started(self):
        health = free_port()
        config = {"health": "127.0.0.1:%d" % health,
                  "apps": [probe_app(), dict(app(workers=1, plugins=[
                      {"mount": "/", "path": plugin("throw_on_start")}]), name="broken")]}
        with harness.Herd(config, wait_ready=False) as herd:
            herd.wait_for(r"worker broken/0 .* exited")
            r = harness.get(health, "/healthz")
            self.assertEqual((r.status, r.body), (503, b"starting: not every app is ready yet\n"))

    @unittest.skipUnless(shutil.which("redis-server"), "redis-server is not installed")
    def test_stale_state_past_the_limit(self):
        health, port = free_port(), redis_server.free_port()
        tmp = harness.tempfile.mkdtemp(prefix="herd-health-")
        self.addCleanup(shutil.rmtree, tmp, True)
        redis = redis_server.RedisServer(port, tmp)
        redis.start()
        self.addCleanup(redis.stop)
        config = {"health": "127.0.0.1:%d" % health, "health_max_state_age_ms": 200,
                  "state": {"backend": "redis", "url": "redis://127.0.0.1:%d/0" % port,
                            "reconnect_max_ms": 200},
                  "apps": [probe_app()]}
        with harness.Herd(config):
            self.assertEqual(harness.get(health, "/healthz").status, 200)
            redis.stop()
            seen = {}

            def stale():
                seen["r"] = harness.get(health, "/healthz")
                return seen["r"].status == 503
            harness.wait_until(stale, seconds=20, what="/healthz to say the state is stale")
            self.assertRegex(seen["r"].body.decode(),
                             r"^the shared state is stale: its backend has been down for \d+ ms "
                             r"\(more than health_max_state_age_ms, 200 ms\)")
            redis.start()
            harness.wait_until(lambda: harness.get(health, "/healthz").status == 200, seconds=20,
                               what="/healthz to be 200 again")


if __name__ == "__main__":
    harness.main()
