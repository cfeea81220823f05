"""The control socket and the CLI: herd status (table and JSON), herd stop (graceful and
--now), clear errors when no master runs, safe creation (mode 0600, a planted symlink
refused, a stale socket replaced, a live one refused), and a stopped worker never blocking
the answers."""
import json
import os
import shutil
import signal
import stat
import threading
import unittest

import harness
from harness import app, plugin


def probe_app(workers=2):
    # The default watchdog: test_stop_and_stop_now holds a worker in a 20 s handler for
    # `stop --now` to cut off, which a short watchdog would do first (and under ASan, a busy
    # worker could miss a short one anywhere).
    return app(workers=workers, plugins=[
        {"mount": "/", "path": plugin("hello")},
        {"mount": "/probe", "path": plugin("probe")},
    ])


def cli(herd, *args):
    return harness.run_herd(*args, "-c", herd.config_path)


class Control(unittest.TestCase):
    def test_status_table_and_json(self):
        with harness.Herd({"apps": [probe_app()]}) as herd:
            port = herd.port()
            sock = os.path.join(herd.tmpdir, "herd.sock")
            self.assertEqual(stat.S_IMODE(os.lstat(sock).st_mode), 0o600)
            for _ in range(30):
                harness.get(port)

            def status():
                code, out = cli(herd, "status", "--json")
                self.assertEqual(code, 0, out)
                return json.loads(out)

            # Figures come from the workers' heartbeats: wait until they show the requests.
            harness.wait_until(lambda: sum(w["requests"] for w in status()["apps"][0]["workers"]) >= 30,
                               what="status to count the 30 requests")
            s = status()
            self.assertEqual(s["pid"], herd.proc.pid)
            web = s["apps"][0]
            self.assertEqual((web["name"], web["state"], web["balance"]), ("web", "running", "shared"))
            self.assertEqual(sorted(w["pid"] for w in web["workers"]), herd.worker_pids())
            self.assertEqual({w["state"] for w in web["workers"]}, {"ready"})
            self.assertEqual(sorted(w["slot"] for w in web["workers"]), [0, 1])
            self.assertTrue(all(w["rss_kb"] > 0 for w in web["workers"]))
            code, table = cli(herd, "status")
            self.assertEqual(code, 0, table)
            self.assertIn("app web on 127.0.0.1:%d (shared) running" % port, table)
            for pid in herd.worker_pids():
                self.assertRegex(table, r"\n  \d +%d +ready " % pid)
            # Through -s as well.
            code, out = harness.run_herd("status", "-s", os.path.join(herd.tmpdir, "herd.sock"))
            self.assertEqual(code, 0, out)

    def test_stop_and_stop_now(self):
        with harness.Herd({"apps": [probe_app()]}) as herd, harness.Events(herd) as events:
            code, out = cli(herd, "stop")
            self.assertEqual(code, 0, out)
            self.assertEqual(herd.wait_exit(), 0)
            events.wait_for("herd.stopping", reason="herd stop", exit_code=0)
        with harness.Herd({"apps": [probe_app()]}) as herd:
            mark = herd.mark()
            c = harness.Client(herd.port())
            c.send("GET /probe/sleep?ms=20000 HTTP/1.1\r\nHost: x\r\n\r\n")
            herd.wait_for(r"sleeping 20000 ms", after=mark)
            code, out = cli(herd, "stop", "--now")
            self.assertEqual(code, 0, out)
            self.assertEqual(herd.wait_exit(seconds=5), 1)
            c.close()

    def test_no_master_is_a_clear_error(self):
        code, out = harness.run_herd("status", "-s", "/nonexistent/herd.sock")
        self.assertEqual(code, 1)
        self.assertIn("no herd master is running at /nonexistent/herd.sock", out)
        code, out = harness.run_herd("status")
        self.assertEqual(code, 2)
        self.assertIn("give the master's config (-c) or its control socket (-s)", out)

    def test_stale_socket_replaced_live_one_refused_symlink_refused(self):
        config = {"apps": [probe_app(1)]}
        first = harness.Herd(config)
        first.start()  # not `with`: its temp dir must outlive it
        try:
            # A live master: a second one is refused before it binds anything.
            code, out = harness.run_herd("run", first.config_path)
            self.assertEqual(code, 1, out)
            self.assertIn("another herd master is running there", out)
        finally:
            first.kill()
        # Its socket is stale now: the next master replaces it.
        with harness.Herd(config, tmpdir=first.tmpdir) as second:
            second.wait_for(r"replaced the stale control socket")
            self.assertEqual(cli(second, "status")[0], 0)
        # A planted symlink in its place is refused, and what it points at is untouched.
        third = harness.Herd(config)  # writes its config into a fresh temp dir; not started
        target = os.path.join(third.tmpdir, "precious")
        with open(target, "w") as f:
            f.write("keep me")
        os.symlink(target, os.path.join(third.tmpdir, "herd.sock"))
        code, out = harness.run_herd("run", third.config_path)
        self.assertEqual(code, 1, out)
        self.assertIn("is not a socket", out)
        with open(target) as f:
            self.assertEqual(f.read(), "keep me")
        shutil.rmtree(third.tmpdir, ignore_errors=True)

    def test_a_stopped_worker_does_not_block_status(self):
        with harness.Herd({"apps": [app(workers=2, watchdog_ms=60000)]}) as herd:
            stopped = herd.worker_pids()[0]
            os.kill(stopped, signal.SIGSTOP)
            try:
                for _ in range(5):
                    code, out = cli(herd, "status", "--json")
                    self.assertEqual(code, 0, out)
                    self.assertIn(stopped, [w["pid"] for w in json.loads(out)["apps"][0]["workers"]])
            finally:
                os.kill(stopped, signal.SIGCONT)


class SilentClients(unittest.TestCase):
    """Clients that connect to the control socket and say nothing cannot take the master's
    descriptors: with 128 at once the master accepts no more (the next ones wait in the
    backlog), and each is dropped 10 s after it connected without a whole request."""

    def test_silent_clients_are_capped_then_dropped(self):
        import socket as sockets
        with harness.Herd({"apps": [probe_app(1)]}) as herd:
            path = os.path.join(herd.tmpdir, "herd.sock")
            mark = herd.mark()
            silent = []
            try:
                for _ in range(128):
                    s = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
                    s.connect(path)
                    silent.append(s)
                herd.wait_for(r"control socket .*: 128 clients at once; accepting more once one "
                              r"leaves", after=mark)
                # The next client waits in the backlog, and is answered once the silent ones
                # are dropped, ten seconds after they connected.
                code, out = harness.run_herd("status", "-c", herd.config_path, seconds=60)
                self.assertEqual(code, 0, out)
                herd.wait_for(r"a client sent no whole request in 10000 ms; dropping it",
                              after=mark)
                for s in silent:
                    s.settimeout(harness.timeout(30))
                    self.assertEqual(s.recv(1), b"")  # closed by the master
            finally:
                for s in silent:
                    s.close()


if __name__ == "__main__":
    harness.main()
