"""Shared state in Redis (a real redis-server started here on a free 127.0.0.1 port, with a
password): writes from `herd state`, from a plugin and from redis-cli through the documented
script reach every worker; while Redis is down the workers keep serving the last state, a
new worker gets it too, writes fail with a clear error, and herd status says since when;
when Redis returns every worker converges; the password never appears in logs or status."""
import json
import os
import re
import shutil
import signal
import tempfile
import unittest

import harness
from redis_server import RedisServer, free_port
from harness import app, plugin
from state_common import read_all, wait_all

PASSWORD = "s3cret-pw-81f0"
SOURCE = os.environ.get("HERD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))


def write_script():
    """The write script exactly as broker/README.md documents it for outside programs."""
    with open(os.path.join(SOURCE, "broker", "README.md")) as f:
        text = f.read()
    m = re.search(r"```lua\n(-- herd state write.*?)```", text, re.S)
    assert m, "broker/README.md has no write script"
    return m.group(1)


def Redis(port, folder):
    return RedisServer(port, folder, password=PASSWORD, appendonly=True)


@unittest.skipUnless(shutil.which("redis-server") and shutil.which("redis-cli"),
                     "redis-server is not installed (scripts/setup.sh installs it)")
class RedisBackend(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.mkdtemp(prefix="herd-redis-")
        self.redis = Redis(free_port(), self.folder)
        self.redis.start()
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.addCleanup(self.redis.stop)

    def config(self):
        return {"state": {"backend": "redis", "prefix": "t:", "poll_ms": 100,
                          "url": "redis://:%s@127.0.0.1:%d/2" % (PASSWORD, self.redis.port)},
                "apps": [app(workers=2, balance="round-robin",
                             plugins=[{"mount": "/probe", "path": plugin("probe")}])]}

    def cli(self, herd, *args):
        return harness.run_herd(*args, "-c", herd.config_path)

    def state_status(self, herd):
        code, out = self.cli(herd, "status", "--json")
        self.assertEqual(code, 0, out)
        return json.loads(out)["state"]

    def test_writes_outage_and_return(self):
        with harness.Herd(self.config()) as herd, harness.Events(herd) as events:
            port = herd.port()
            harness.wait_until(lambda: self.state_status(herd).get("up"), what="Redis up in status")

            code, out = self.cli(herd, "state", "set", "plan", '{"tier": "gold"}')
            self.assertEqual(code, 0, out)
            wait_all(herd, port, "plan", {"tier": "gold"})
            self.assertEqual(json.loads(self.redis.cli("-n", "2", "HGET", "t:data", "plan")),
                             {"tier": "gold"})

            # An outside program, through the documented script.
            script = write_script()
            reply = self.redis.cli("-n", "2", "EVAL", script, "2", "t:data", "t:version",
                                   "t:changes", "set", "feature.beta", "true")
            self.assertRegex(reply, r"^\d+$")
            wait_all(herd, port, "feature.beta", True)
            self.redis.cli("-n", "2", "EVAL", script, "2", "t:data", "t:version", "t:changes",
                           "del", "feature.beta")
            wait_all(herd, port, "feature.beta", None)

            # A plugin's write.
            with harness.Client(port) as c:
                self.assertEqual(c.request("PUT", "/probe/state/from-plugin", body="[1,2]").status, 202)
            wait_all(herd, port, "from-plugin", [1, 2])
            self.assertEqual(self.redis.cli("-n", "2", "HGET", "t:data", "from-plugin"), "[1,2]")

            # Redis goes away.
            mark = events.mark()
            self.redis.stop()
            events.wait_for("state.down", after=mark, backend="redis", seconds=15)
            self.assertFalse(self.state_status(herd).get("up"))
            code, out = self.cli(herd, "status")
            self.assertRegex(out, r"state: redis .*DOWN, .*down for [\d.]+ s")
            # The workers serve the last state; a write fails and says why.
            self.assertEqual(set(map(json.dumps, read_all(herd, port, "plan").values())),
                             {json.dumps({"tier": "gold"})})
            code, out = self.cli(herd, "state", "set", "plan", '"lost?"')
            self.assertEqual(code, 1, out)
            self.assertRegex(out.lower(), r"redis|down|connect")
            # A worker started during the outage has the last state on its first request.
            victim = herd.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            exited = events.wait_for("worker.exited", after=mark, pid=victim)
            events.wait_for("worker.ready", after=mark, app="web", slot=exited["slot"])
            self.assertNotIn(victim, herd.worker_pids())
            self.assertEqual(set(map(json.dumps, read_all(herd, port, "plan").values())),
                             {json.dumps({"tier": "gold"})})

            # Redis returns (same data, from its append-only file): everything converges.
            self.redis.start()
            events.wait_for("state.up", after=mark, backend="redis", seconds=20)
            self.assertTrue(self.state_status(herd).get("up"))
            code, out = self.cli(herd, "state", "set", "plan", '{"tier": "platinum"}')
            self.assertEqual(code, 0, out)
            wait_all(herd, port, "plan", {"tier": "platinum"})

            # The broker killed: restarted, resyncs, and the workers converge.
            mark = events.mark()
            broker = herd.broker_pid()
            os.kill(broker, signal.SIGKILL)
            events.wait_for("broker.exited", after=mark, pid=broker, expected=False)
            spawned = events.wait_for("broker.spawned", after=mark)
            events.wait_for("broker.ready", after=mark, pid=spawned["pid"])
            self.redis.cli("-n", "2", "EVAL", script, "2", "t:data", "t:version", "t:changes",
                           "set", "after-restart", '"ok"')
            wait_all(herd, port, "after-restart", "ok")

            # The password is in no answer and no log line.
            code, out = self.cli(herd, "status", "--json")
            self.assertEqual(code, 0, out)
            self.assertNotIn(PASSWORD, out)
            self.assertEqual(herd.stop(), 0)
            self.assertNotIn(PASSWORD, herd.log())


if __name__ == "__main__":
    harness.main()
