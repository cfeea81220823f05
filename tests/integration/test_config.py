"""Bad input at start-up: every kind gets a clear message and a non-zero exit, never a
crash, a hang or a fork storm."""
import json
import os
import socket
import tempfile
import unittest

import harness
from harness import app, plugin


def write_config(text):
    fd, path = tempfile.mkstemp(prefix="herd-config-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        f.write(text if isinstance(text, str) else json.dumps(harness.with_root_allowed(text)))
    return path


class ConfigErrors(unittest.TestCase):
    def check_fails(self, config, *expected, command="check", code=None):
        path = write_config(config)
        try:
            rc, out = harness.run_herd(command, path)
        finally:
            os.unlink(path)
        self.assertNotEqual(rc, 0, out)
        if code is not None:
            self.assertEqual(rc, code, out)
        self.assertLess(rc, 128, "no crash: " + out)
        for e in expected:
            self.assertIn(e, out)
        return out

    def test_malformed_json_has_line_and_column(self):
        out = self.check_fails('{"apps": [\n  {"name": "web",\n   "listen" "127.0.0.1:1"}]}', "line 3", "column", code=2)
        self.assertIn("invalid JSON", out)

    def test_unknown_key_has_json_path(self):
        self.check_fails({"apps": [app(workres=2)]}, "apps[0].workres: unknown key", code=2)

    def test_mistyped_workers(self):
        self.check_fails({"apps": [app(workers=-2)]}, 'apps[0].workers: expected a positive integer or "auto"', code=2)

    def test_run_rejects_bad_config_too(self):
        self.check_fails({"apps": [app(listen="localhost:80")]}, "apps[0].listen", command="run", code=2)

    def test_missing_config_file(self):
        rc, out = harness.run_herd("run", "/nonexistent/herd.json")
        self.assertEqual(rc, 2, out)
        self.assertIn("cannot read config file /nonexistent/herd.json", out)

    def test_missing_plugin_file(self):
        self.check_fails({"apps": [app(plugins=[{"path": "/nonexistent/libx.so"}])]},
                         '/nonexistent/libx.so', "cannot open")

    def test_library_without_herd_export(self):
        self.check_fails({"apps": [app(plugins=[{"path": plugin("no_export")}])]},
                         "herd_plugin_abi", "HERD_PLUGIN")

    def test_wrong_abi(self):
        out = self.check_fails({"apps": [app(plugins=[{"path": plugin("bad_abi")}])]}, "ABI 99.0")
        self.assertNotIn("factory must never run", out)

    def test_on_start_throws(self):
        self.check_fails({"apps": [app(plugins=[{"path": plugin("throw_on_start")}])]},
                         "on_start threw", "refusing to start")


class RunFailures(unittest.TestCase):
    def test_port_in_use(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            path = write_config({"apps": [app(listen="127.0.0.1:%d" % port)]})
            rc, out = harness.run_herd("run", path)
            os.unlink(path)
        finally:
            s.close()
        self.assertEqual(rc, 1, out)
        self.assertIn('app "web": bind(127.0.0.1:%d): EADDRINUSE' % port, out)

    def test_plugin_that_never_starts_fails_its_app_only(self):
        # Two apps: one whose plugin always throws in on_start, one that is fine.
        config = {"apps": [app(workers=2, plugins=[{"path": plugin("throw_on_start")}]),
                           app(name="good", workers=1)]}
        with harness.Herd(config, wait_ready=False) as herd:
            herd_wait = herd.wait_for(r'app "web" failed: 5 workers in a row could not start; the last: '
                                      r'.*on_start threw std::runtime_error: throw_on_start: refusing to start',
                                      seconds=20)
            self.assertTrue(herd_wait)
            # Back-off, not a fork storm: the first failure of each slot restarts at once, the
            # next ones after a delay; five failures (plus one restart per other slot already
            # under way) and nothing started or scheduled once the app failed.
            self.assertIn(herd.count(r"spawned worker web/"), (5, 6), herd.log())
            lines = herd.log().split("\n")
            failed_at = next(i for i, l in enumerate(lines) if 'app "web" failed' in l)
            mark = herd.mark()
            self.assertEqual(harness.get(herd.port("good")).status, 200)  # lets the loop run on
            self.assertFalse([l for l in lines[failed_at:] + herd.log().split("\n")[mark:]
                              if "spawned worker web/" in l or 'restarting app "web"' in l])
            self.assertTrue(herd.count(r'restarting app "web" slot \d in 100 ms'))
            # The master stays up and the other app serves.
            self.assertEqual(harness.get(herd.port("good")).body, b"Hello, World!")
            self.assertIsNone(herd.proc.poll())
            # And it answers: status shows the app failed and the other one running.
            code, out = harness.run_herd("status", "--json", "-c", herd.config_path)
            self.assertEqual(code, 0, out)
            states = {a["name"]: a["state"] for a in json.loads(out)["apps"]}
            self.assertEqual(states, {"web": "failed", "good": "running"})
            self.assertEqual(herd.stop(), 0, herd.log())


class ExamplesCheck(unittest.TestCase):
    def test_every_example_config_checks(self):
        examples = os.path.join(os.environ.get("HERD_SOURCE_DIR", "../.."), "examples")
        build = os.path.dirname(os.path.dirname(harness.HERD_BIN))
        configs = [f for f in os.listdir(examples) if f.endswith(".json")]
        self.assertGreaterEqual(len(configs), 3)
        for name in configs:
            with open(os.path.join(examples, name)) as f:
                config = json.load(f)
            # The examples point at ../build/plugins; point them at this build's plugins.
            for a in config["apps"]:
                for p in a["plugins"]:
                    p["path"] = os.path.join(build, "plugins", os.path.basename(p["path"]))
            path = write_config(config)
            try:
                rc, out = harness.run_herd("check", path)
            finally:
                os.unlink(path)
            self.assertEqual(rc, 0, name + ": " + out)


if __name__ == "__main__":
    harness.main()
