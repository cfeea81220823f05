"""Logs: what plugins print reaches the master's log with the worker's name and pid (stdout,
stderr, an unfinished last line, a flood, and a worker that dies right after printing); the
master's log_file and the access logs are reopened on SIGUSR1 for logrotate; access log lines
use the combined format with hostile bytes escaped; log_level "warn" keeps the master's
routine lines out and its failures in."""
import json
import os
import re
import signal
import tempfile
import unittest

import harness
from harness import app, plugin


def probe_app(**extra):
    return app(workers=1, plugins=[{"mount": "/", "path": plugin("hello")},
                                   {"mount": "/probe", "path": plugin("probe")}], **extra)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_in_file(path, pattern, seconds=10):
    rx = re.compile(pattern)
    harness.wait_until(lambda: rx.search(read(path)), seconds=seconds,
                       what="/%s/ in %s" % (pattern, path))


def web_workers(herd):
    """{slot: (pid, state)} from `herd status --json` once the app runs, else None."""
    code, out = harness.run_herd("status", "--json", "-c", herd.config_path)
    if code != 0:
        return None
    web = json.loads(out)["apps"][0]
    if web["state"] != "running":
        return None
    return {w["slot"]: (w["pid"], w["state"]) for w in web["workers"]}


class LogLevel(unittest.TestCase):
    def test_warn_logs_the_failures_and_not_the_routine(self):
        with harness.Herd({"log_level": "warn", "apps": [probe_app()]}, wait_ready=False) as herd:
            seen = {}

            def running():
                seen["workers"] = web_workers(herd)
                return seen["workers"]
            harness.wait_until(running, what="app web running")
            first = seen["workers"]
            os.kill(first[0][0], signal.SIGKILL)
            harness.wait_until(lambda: running() and seen["workers"][0][0] != first[0][0],
                               what="a new worker in slot 0")
            herd.wait_for(r"error \[master:\d+\] worker web/0 \(pid %d\) killed by signal 9 "
                          r"\(Killed\) unexpectedly" % first[0][0])
            for routine in (r"spawned worker", r" ready in ", r"all apps ready",
                            r"listening on", r"restarting app"):
                self.assertEqual(herd.count(routine), 0, routine + "\n" + herd.log())


class PluginOutput(harness.HerdTestCase):
    # The default watchdog: a worker printing a 20,000-line flood blocks on the pipe while
    # the master copies it, longer than a short watchdog allows under ASan.
    config = {"apps": [probe_app()]}

    def test_stdout_and_stderr_lines_carry_the_worker(self):
        pid = int(harness.get(self.port, "/probe/pid").body)
        mark = self.herd.mark()
        self.assertEqual(harness.get(self.port, "/probe/print?text=tick&lines=2").status, 200)
        self.herd.wait_for(r"info \[worker web/0:%d\] stdout: tick 0$" % pid, after=mark)
        self.herd.wait_for(r"info \[worker web/0:%d\] stdout: tick 1$" % pid, after=mark)
        self.herd.wait_for(r"warn \[worker web/0:%d\] stderr: tick on stderr$" % pid, after=mark)

    def test_a_flood_arrives_whole_and_the_master_keeps_answering(self):
        mark = self.herd.mark()
        self.assertEqual(harness.get(self.port, "/probe/print?text=flood&lines=20000").status, 200)
        # The master answers the CLI while it copies the flood.
        code, out = harness.run_herd("status", "-c", self.herd.config_path)
        self.assertEqual(code, 0, out)
        self.herd.wait_for(r"stdout: flood 19999$", after=mark)
        self.assertEqual(self.herd.count(r"stdout: flood \d+$"), 20000)

    def test_what_a_dying_worker_printed_is_not_lost(self):
        mark = self.herd.mark()
        pid = int(harness.get(self.port, "/probe/pid").body)
        # An unfinished stderr line, then the worker is killed before it could add more.
        self.assertEqual(harness.get(self.port, "/probe/print?text=last&tail=1").status, 200)
        os.kill(pid, signal.SIGKILL)
        self.herd.wait_for(r"worker web/0 \(pid %d\) killed by signal 9" % pid, after=mark)
        self.herd.wait_for(r"stderr: last unfinished$", after=mark)
        self.herd.wait_for(r"worker web/0 \(pid \d+\) ready", after=mark)


class Files(unittest.TestCase):
    def test_log_file_and_access_log_reopen_on_usr1(self):
        tmp = tempfile.mkdtemp(prefix="herd-test-")
        log, access = os.path.join(tmp, "herd.log"), os.path.join(tmp, "access.log")
        config = {"log_file": "herd.log", "apps": [probe_app(access_log="access.log")]}
        with harness.Herd(config, tmpdir=tmp, wait_ready=False) as herd:
            wait_in_file(log, r"all apps ready")
            self.assertEqual(herd.log(), "")  # everything went to the file
            port = int(re.search(r'app "web" listening on 127\.0\.0\.1:(\d+)', read(log)).group(1))
            c = harness.Client(port)
            r = c.request("GET", "/probe/pid?x=%22", headers={
                "User-Agent": 'evil"agent \u00e9', "Referer": "http://ref/"})
            self.assertEqual(r.status, 200)
            c.close()
            harness.get(port, "/probe/nothing-here")
            wait_in_file(access, r"nothing-here")
            lines = read(access).splitlines()
            self.assertEqual(len(lines), 2, lines)
            self.assertRegex(
                lines[0],
                r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                r'"GET /probe/pid\?x=%22 HTTP/1\.1" 200 \d+ '
                r'"http://ref/" "evil\\x22agent \\xC3\\xA9"$')
            self.assertRegex(lines[1], r'"GET /probe/nothing-here HTTP/1\.1" 404 ')

            # logrotate: rename, then USR1; new lines go to new files, old ones keep theirs.
            os.rename(log, log + ".1")
            os.rename(access, access + ".1")
            herd.signal(signal.SIGUSR1)
            wait_in_file(log, r"SIGUSR1: log file reopened; 1 worker\(s\) reopen")
            # The worker reopens when its "reopen" message arrives: the new file appears then.
            harness.wait_until(lambda: os.path.exists(access), what="the new access log")
            harness.get(port, "/after-rotation")
            wait_in_file(access, r"after-rotation")
            self.assertNotIn("after-rotation", read(access + ".1"))
            self.assertIn("nothing-here", read(access + ".1"))
            self.assertEqual(herd.stop(), 0)
            self.assertIn("stopped after serving", read(log))

    def test_an_access_log_that_cannot_be_opened_stops_the_worker_with_a_reason(self):
        config = {"apps": [probe_app(access_log="/nonexistent-dir/access.log")]}
        with harness.Herd(config, wait_ready=False) as herd:
            herd.wait_for(r"cannot start: open\(access log /nonexistent-dir/access\.log\): ENOENT")

    def test_a_log_file_that_cannot_be_opened_stops_herd(self):
        config = {"log_file": "/nonexistent-dir/herd.log", "apps": [probe_app()]}
        with harness.Herd(config, wait_ready=False) as herd:
            herd.wait_for(r"open\(log file /nonexistent-dir/herd\.log\): ENOENT")
            self.assertEqual(herd.wait_exit(), 1)


if __name__ == "__main__":
    harness.main()
