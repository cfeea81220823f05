"""Reload (SIGHUP and `herd reload`): zero failed requests under keep-alive load for every
balancing strategy, the canary gate (a config or plugin that cannot start changes nothing),
deploying a plugin by renaming a new build over the old path, apps added and removed, a new
listen address bound before the old one closes, and `herd scale`."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest

import harness
from harness import app, plugin

HERE = os.path.dirname(os.path.abspath(__file__))


def hello(greeting, **extra):
    return app(workers=2, plugins=[{"mount": "/", "path": plugin("hello"),
                                    "config": {"greeting": greeting}}], **extra)


def write_config(herd, config):
    # Written whole, then renamed over: the master never reads half a file.
    tmp = herd.config_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
    os.replace(tmp, herd.config_path)


def cli(herd, *args, seconds=60):
    return harness.run_herd(*args, "-c", herd.config_path, seconds=seconds)


def status(herd):
    code, out = cli(herd, "status", "--json")
    assert code == 0, out
    return json.loads(out)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=harness.timeout(5)).close()
        return False
    except ConnectionRefusedError:
        return True


class ZeroFailures(unittest.TestCase):
    """A real client (wrk, keep-alive, 16 connections) runs throughout 5 reloads, each with a
    new greeting: every response is a 2xx, no connection sees an error, and each new
    generation answers as soon as `herd reload` has returned."""

    def reload_under_load(self, balance):
        with harness.Herd({"apps": [hello("generation 1", balance=balance)]}) as herd, \
                harness.Events(herd) as events:
            port = herd.port()
            with subprocess.Popen(
                    ["wrk", "-t1", "-c16", "-d600s", "-s", os.path.join(HERE, "wrk_count.lua"),
                     "http://127.0.0.1:%d/" % port],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as wrk:
                out = self.reloads(herd, events, port, balance, wrk)
            m = re.search(r"^RESULT (.*)$", out, re.M)
            self.assertIsNotNone(m, out)
            result = json.loads(m.group(1))
            for error in ("connect", "read", "write", "timeout", "status"):
                self.assertEqual(result[error], 0, "%s errors: %s\n%s" % (error, result, herd.log()))
            self.assertEqual(set(result["statuses"]), {"2xx"}, result)
            self.assertGreater(result["requests"], 1000, result)
            # The load saw the generations change under it.
            self.assertIn("generation 1", result["bodies"])
            self.assertIn("generation 6", result["bodies"])
            self.assertEqual(len(events.seen("reload.finished")), 5, herd.log())
            self.assertEqual(herd.stop(), 0, herd.log())

    def reloads(self, herd, events, port, balance, wrk):
        try:
            # Load is flowing (the workers' heartbeats count it) before the first reload.
            harness.wait_until(
                lambda: sum(w["requests"] for w in status(herd)["apps"][0]["workers"]) > 100,
                seconds=20, what="wrk's requests to reach the workers")
            for g in range(2, 7):
                write_config(herd, {"apps": [hello("generation %d" % g, balance=balance)]})
                mark = events.mark()  # the last reload's events are in: it finished below
                code, out = cli(herd, "reload")
                self.assertEqual(code, 0, out)
                self.assertIn("app web: generation %d on" % g, out)
                started = events.wait_for("reload.started", after=mark, source="herd reload")
                finished = events.wait_for("reload.finished", after=mark, id=started["id"])
                self.assertEqual((finished["ok"], finished["error"]), (True, ""))
                events.wait_for("app.rolled", after=mark, app="web", generation=g)
                # Once reload has returned, every new connection meets the new generation.
                for _ in range(4):
                    self.assertEqual(harness.get(port).body, b"generation %d" % g)
        finally:
            wrk.send_signal(signal.SIGINT)
            out = wrk.communicate(timeout=harness.timeout(30))[0].decode()
        return out

    @unittest.skipUnless(shutil.which("wrk"), "wrk is not installed (scripts/setup.sh installs it)")
    def test_shared(self):
        self.reload_under_load("shared")

    @unittest.skipUnless(shutil.which("wrk"), "wrk is not installed (scripts/setup.sh installs it)")
    def test_reuseport(self):
        self.reload_under_load("reuseport")

    @unittest.skipUnless(shutil.which("wrk"), "wrk is not installed (scripts/setup.sh installs it)")
    def test_round_robin(self):
        self.reload_under_load("round-robin")

    @unittest.skipUnless(shutil.which("wrk"), "wrk is not installed (scripts/setup.sh installs it)")
    def test_least_conn(self):
        self.reload_under_load("least-conn")


class Canary(unittest.TestCase):
    def test_a_config_that_cannot_start_changes_nothing(self):
        with harness.Herd({"apps": [hello("one")]}) as herd:
            port = herd.port()
            pids = herd.worker_pids()
            # The hello plugin refuses a greeting that is not a string: the canary fails.
            write_config(herd, {"apps": [hello(3)]})
            code, out = cli(herd, "reload")
            self.assertEqual(code, 1, out)
            self.assertIn("reload failed, nothing changed", out)
            self.assertIn("config.greeting: expected a string, got 3", out)
            self.assertEqual(harness.get(port).body, b"one")
            s = status(herd)["apps"][0]
            self.assertEqual(s["generation"], 1)
            self.assertEqual(sorted(w["pid"] for w in s["workers"]), pids)
            # The file is fixed: the next reload goes through.
            write_config(herd, {"apps": [hello("two")]})
            code, out = cli(herd, "reload")
            self.assertEqual(code, 0, out)
            self.assertEqual(harness.get(port).body, b"two")

    def test_an_invalid_config_is_refused_by_signal_and_cli(self):
        with harness.Herd({"apps": [hello("one")]}) as herd, harness.Events(herd) as events:
            port = herd.port()
            with open(herd.config_path, "w") as f:
                f.write('{"apps": [')
            mark = herd.mark()
            herd.signal(signal.SIGHUP)
            refusal = events.wait_for("reload.refused", source="SIGHUP")
            self.assertRegex(refusal["error"], r"^the config is invalid, nothing changed: .*herd\.json")
            # A signal has no one to answer: the log says why, for a person.
            herd.wait_for(r"reload \(SIGHUP\) refused: the config is invalid, nothing changed: .*herd\.json",
                          after=mark)
            # The CLI still finds the master beside the broken file; the master says why not.
            code, out = cli(herd, "reload")
            self.assertEqual(code, 1, out)
            self.assertRegex(out, r"herd reload: the config is invalid, nothing changed: .*herd\.json.*line 1")
            code, out = harness.run_herd("reload", "-s", os.path.join(herd.tmpdir, "herd.sock"))
            self.assertEqual(code, 1, out)
            self.assertIn("the config is invalid, nothing changed", out)
            # Status works while the file is broken, with a warning.
            code, out = cli(herd, "status")
            self.assertEqual(code, 0, out)
            self.assertIn("herd: warning:", out)
            self.assertEqual(harness.get(port).body, b"one")
            self.assertIn("generation 1", out)

    def test_balance_cannot_change_on_the_same_address(self):
        with harness.Herd({"apps": [hello("one")]}) as herd:
            write_config(herd, {"apps": [hello("one", balance="reuseport")]})
            code, out = cli(herd, "reload")
            self.assertEqual(code, 1, out)
            self.assertIn('balance cannot change from "shared" to "reuseport"', out)


def greeting_and_probe(greeting, hang_slots=(), path=None, **extra):
    return app(workers=3, plugins=[
        {"mount": "/", "path": path or plugin("hello"), "config": {"greeting": greeting}},
        {"mount": "/probe", "path": plugin("probe"),
         "config": {"hang_on_start_slots": list(hang_slots)}},
    ], **extra)


class RollBack(unittest.TestCase):
    """The canary (slot 0) of the new generation starts, but a later slot's worker never
    becomes ready: past start_timeout_ms it is killed, the reload fails, and the app rolls back
    to the previous generation on every slot, with no failed request meanwhile."""

    def check(self, slot):
        limit = harness.ms(1000)
        with harness.Herd({"apps": [greeting_and_probe("one", start_timeout_ms=limit)]}) as herd:
            port = herd.port()
            write_config(herd, {"apps": [greeting_and_probe("two", [slot],
                                                            start_timeout_ms=limit)]})
            with harness.KeepAliveLoad(port, "/") as load:
                code, out = cli(herd, "reload")
                self.assertEqual(code, 1, out)
                self.assertRegex(out, r"worker web/%d \(pid \d+\) of generation 2 could not "
                                 r"start: not ready within %d ms \(start_timeout_ms\); rolled "
                                 r"back to generation 1" % (slot, limit))
                harness.wait_until(lambda: load.answered() > 0, what="answers during the roll back")
            self.assertEqual(load.failures, [])
            s = status(herd)["apps"][0]
            self.assertEqual(s["generation"], 1)
            self.assertEqual(s["state"], "running")
            self.assertEqual(sorted((w["slot"], w["generation"], w["state"]) for w in s["workers"]),
                             [(0, 1, "ready"), (1, 1, "ready"), (2, 1, "ready")])
            self.assertEqual({harness.get(port).body for _ in range(6)}, {b"one"})
            # The roll back is no failure of the app: the next reload is a normal one.
            write_config(herd, {"apps": [greeting_and_probe("three", start_timeout_ms=limit)]})
            code, out = cli(herd, "reload")
            self.assertEqual(code, 0, out)
            self.assertEqual(harness.get(port).body, b"three")

    def test_second_slot_hangs(self):
        self.check(1)

    def test_a_build_renamed_over_the_path_is_rolled_back_to_the_old_build(self):
        # Generation 1 runs hello from PATH; a new build (echo) is renamed over PATH and the
        # reload's slot 1 hangs. Slot 0, already rolled, comes back as generation 1 loading
        # the file generation 1 began with (the master keeps it open), not the one on disk.
        limit = harness.ms(1000)
        tmp = tempfile.mkdtemp(prefix="herd-rollback-")
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(tmp, "libapp.so")
        shutil.copy(plugin("hello"), path)
        # Round-robin: the master passes connections in turn, so one soon reaches slot 0.
        config = greeting_and_probe("one", path=path, start_timeout_ms=limit,
                                    balance="round-robin")
        with harness.Herd({"apps": [config]}) as herd:
            port = herd.port()
            shutil.copy(plugin("echo"), path + ".new")
            os.replace(path + ".new", path)
            write_config(herd, {"apps": [greeting_and_probe("one", [1], path=path,
                                                            start_timeout_ms=limit,
                                                            balance="round-robin")]})
            code, out = cli(herd, "reload")
            self.assertEqual(code, 1, out)
            self.assertIn("rolled back to generation 1", out)
            workers = status(herd)["apps"][0]["workers"]
            self.assertEqual(sorted((w["slot"], w["generation"]) for w in workers),
                             [(0, 1), (1, 1), (2, 1)])
            slot0 = [w["pid"] for w in workers if w["slot"] == 0][0]
            # Find slot 0's connection, then ask it.
            for _ in range(30):
                with harness.Client(port) as c:
                    if int(c.request("GET", "/probe/pid").body) == slot0:
                        self.assertEqual(c.request("GET", "/").body, b"one")
                        break
            else:
                self.fail("no connection reached slot 0 (pid %d) in 30 tries" % slot0)
            herd.wait_for(r"\[worker web/0:\d+\] plugin \"/\" \(%s\): the file was replaced "
                          r"since this generation began" % re.escape(path))

    def test_last_slot_hangs(self):
        self.check(2)


class Deploy(unittest.TestCase):
    def test_rename_a_new_build_over_the_old_path_then_reload(self):
        tmp = tempfile.mkdtemp(prefix="herd-test-")
        so = os.path.join(tmp, "app.so")
        shutil.copy(plugin("hello"), so)
        config = {"apps": [app(workers=2, plugins=[{"mount": "/", "path": so}])]}
        with harness.Herd(config, tmpdir=tmp) as herd:
            port = herd.port()
            self.assertEqual(harness.get(port, "/pid").body, b"Hello, World!")
            # The documented procedure: copy beside, rename over, reload.
            shutil.copy(plugin("probe"), so + ".new")
            os.rename(so + ".new", so)
            code, out = cli(herd, "reload")
            self.assertEqual(code, 0, out)
            self.assertRegex(herd.log(), r'app "web": plugin file changed on disk; generation 2')
            pids = {harness.get(port, "/pid").body for _ in range(6)}
            new = {str(p).encode() for p in herd.worker_pids()}
            self.assertTrue(pids <= new, (pids, new))
            # Nothing changed: a reload says so and leaves the workers alone.
            before = herd.worker_pids()
            code, out = cli(herd, "reload")
            self.assertEqual(code, 0, out)
            self.assertIn("no app changed", out)
            self.assertEqual(herd.worker_pids(), before)


class Apps(unittest.TestCase):
    def test_add_remove_and_move_apps(self):
        config = {"apps": [hello("web"), dict(hello("api"), name="api")]}
        with harness.Herd(config) as herd, harness.Events(herd) as events:
            web, api = herd.port("web"), herd.port("api")
            moved = free_port()
            new_web = hello("web moved")
            new_web["listen"] = "127.0.0.1:%d" % moved
            write_config(herd, {"apps": [new_web, dict(hello("extra"), name="extra")]})
            code, out = cli(herd, "reload")
            self.assertEqual(code, 0, out)
            self.assertIn("app web: generation 2 on 127.0.0.1:%d" % moved, out)
            extra = int(re.search(r"app extra: generation 1 on 127\.0\.0\.1:(\d+)", out).group(1))
            self.assertEqual(harness.get(moved).body, b"web moved")
            self.assertEqual(harness.get(extra).body, b"extra")
            # The old address closed once the new one served; the removed app's as well.
            self.assertTrue(refused(web))
            # The removed app is gone once its last worker is.
            for slot in (0, 1):
                exited = events.wait_for("worker.exited", app="api", slot=slot)
                self.assertEqual((exited["code"], exited["expected"]), (0, True))
            events.wait_for("app.removed", app="api")
            self.assertTrue(refused(api))
            names = [a["name"] for a in status(herd)["apps"]]
            self.assertEqual(names, ["web", "extra"])
            self.assertEqual(herd.stop(), 0, herd.log())


class Scale(unittest.TestCase):
    def test_scale_up_and_down(self):
        with harness.Herd({"apps": [hello("x", balance="reuseport")]}) as herd:
            port = herd.port()
            code, out = cli(herd, "scale", "web", "3")
            self.assertEqual(code, 0, out)
            self.assertIn("app web: 2 to 3 worker(s)", out)
            harness.wait_until(lambda: [w["state"] for w in status(herd)["apps"][0]["workers"]]
                               == ["ready"] * 3, what="three ready workers")
            code, out = cli(herd, "scale", "web", "1")
            self.assertEqual(code, 0, out)
            harness.wait_until(lambda: len(herd.worker_pids()) == 1, what="one worker left")
            self.assertEqual(harness.get(port).body, b"x")
            code, out = cli(herd, "scale", "nope", "2")
            self.assertEqual(code, 1, out)
            self.assertIn('no app named "nope"', out)
            code, out = cli(herd, "scale", "web", "zero")
            self.assertEqual(code, 2, out)


if __name__ == "__main__":
    harness.main()
