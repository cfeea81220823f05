"""`herd top` in a real terminal: tmux (Debian's) runs it in a detached session of 160x40 on a
socket of the test's own; capture-pane reads the screen. It shows every worker of `herd status`,
their request rates once there is traffic, a killed worker's replacement, and quits on `q` with
status 0, leaving the alternate screen. Piped, it prints one frame and exits."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

import harness
from harness import app, plugin

TMUX = shutil.which("tmux")


@unittest.skipUnless(TMUX, "tmux is not installed (scripts/test.sh installs it)")
class Top(harness.HerdTestCase):
    config = {"apps": [app(workers=2, plugins=[{"mount": "/", "path": plugin("hello")}])]}

    def setUp(self):
        folder = tempfile.mkdtemp(prefix="herd-top-")
        self.addCleanup(shutil.rmtree, folder, True)
        self.socket = os.path.join(folder, "tmux.sock")
        conf = os.path.join(folder, "tmux.conf")
        with open(conf, "w") as f:
            f.write("set -g remain-on-exit on\nset -g history-limit 0\n")
        # Its exit status goes to a file (tmux's own "Pane is dead (status N)" line is not
        # always drawn).
        self.status_file = os.path.join(folder, "status")
        self.tmux("-f", conf, "new-session", "-d", "-s", "top", "-x", "160", "-y", "40",
                  "%s top -c %s; echo $? > %s" % (harness.HERD_BIN, self.herd.config_path,
                                                   self.status_file))
        self.addCleanup(self.tmux, "kill-server", check=False)

    def tmux(self, *args, check=True):
        r = subprocess.run([TMUX, "-S", self.socket] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=harness.timeout(10))
        if check:
            self.assertEqual(r.returncode, 0, r.stdout.decode())
        return r.stdout.decode()

    def screen(self):
        return self.tmux("capture-pane", "-p", "-t", "top")

    def pids(self):
        code, out = harness.run_herd("status", "--json", "-c", self.herd.config_path)
        self.assertEqual(code, 0, out)
        return [w["pid"] for w in json.loads(out)["apps"][0]["workers"]]

    def test_workers_rates_a_restart_and_q(self):
        pids = self.pids()
        harness.wait_until(lambda: all(" %d " % p in self.screen() for p in pids),
                           what="both workers on the screen")
        screen = self.screen()
        self.assertIn("herd ", screen)
        self.assertIn("(q quits)", screen)
        self.assertIn("REQ/S", screen)
        # Traffic: the app's rate goes above zero on a later frame.
        for _ in range(200):
            self.assertEqual(harness.get(self.port, "/").status, 200)
        harness.wait_until(lambda: any(
            line.startswith("app web") and "req/s" in line and ", 0.0 req/s" not in line
            for line in self.screen().splitlines()), what="a request rate above zero")
        # A worker killed: its replacement shows.
        os.kill(pids[0], signal.SIGKILL)
        harness.wait_until(lambda: any(p not in pids for p in self.pids()),
                           what="the replacement worker")
        new = next(p for p in self.pids() if p not in pids)
        harness.wait_until(lambda: " %d " % new in self.screen() and
                           " %d " % pids[0] not in self.screen(),
                           what="the replacement on the screen")
        self.assertIn("last worker killed by signal 9", self.screen())
        # q quits, with status 0, off the alternate screen.
        self.tmux("send-keys", "-t", "top", "q")
        harness.wait_until(lambda: self.tmux("display-message", "-p", "-t", "top",
                                             "#{pane_dead}").strip() == "1",
                           what="herd top to quit on q")
        with open(self.status_file) as f:
            self.assertEqual(f.read().strip(), "0")
        screen = self.screen()
        self.assertNotIn("REQ/S", screen)  # the alternate screen is gone

    def test_piped_prints_one_frame(self):
        r = subprocess.run([harness.HERD_BIN, "top", "-c", self.herd.config_path],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=harness.timeout(10))
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertNotIn("\x1b", out)
        for pid in self.pids():
            self.assertIn(" %d " % pid, out)


class TopErrors(unittest.TestCase):
    def test_no_master(self):
        folder = tempfile.mkdtemp(prefix="herd-top-")
        self.addCleanup(shutil.rmtree, folder, True)
        r = subprocess.run([harness.HERD_BIN, "top", "-s", os.path.join(folder, "none.sock")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=harness.timeout(10))
        self.assertEqual(r.returncode, 1)
        self.assertIn("none.sock", r.stderr.decode())


if __name__ == "__main__":
    harness.main()
