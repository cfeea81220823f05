"""Faults in the master's own resources: no exception escapes its loop, it keeps serving, and
it recovers once the fault is gone. Out of descriptors while the broker and a worker restart;
fork failing while they restart; the control socket and the metrics endpoint out of
descriptors without a busy loop; a state file where nothing can be written."""
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import harness
from harness import app, plugin


def config(balance="shared", **extra):
    # Short back-off caps: recovery, once the fault ends, comes within a second or so.
    return dict({"apps": [app(workers=2, balance=balance, restart_backoff_ms=50,
                              restart_backoff_max_ms=400,
                              plugins=[{"mount": "/", "path": plugin("hello")},
                                       {"mount": "/probe", "path": plugin("probe")}])]},
                **extra)


def status(herd):
    code, out = harness.run_herd("status", "--json", "-c", herd.config_path)
    if code != 0:
        raise AssertionError("herd status failed (%d): %s" % (code, out))
    return json.loads(out)


def ready_workers(herd):
    return [w["pid"] for a in status(herd)["apps"] for w in a["workers"] if w["state"] == "ready"]


def serves(herd):
    r = harness.get(herd.port(), "/probe/pid")
    return r.status == 200 and int(r.body) in herd.worker_pids()


def count_after(herd, pattern, mark):
    rx = re.compile(pattern)
    with herd.cond:
        return sum(1 for line in herd.lines[mark:] if rx.search(line))


class Recovery:
    """Kills the broker and one worker while `fault` holds, checks that each is tried again
    (at least twice: the broker's second try once let an exception escape the master's loop)
    and that the master keeps serving, then ends the fault and waits for both to be back."""

    def check(self, herd, events, failure, end_fault):
        victim, broker = herd.worker_pids()[0], herd.broker_pid()
        mark = herd.mark()
        os.kill(broker, signal.SIGKILL)
        os.kill(victim, signal.SIGKILL)
        events.wait_for("broker.exited", pid=broker, expected=False)
        slot = events.wait_for("worker.exited", pid=victim, expected=False)["slot"]
        for what in (r"cannot start the broker: .*%s" % failure,
                     r"cannot start a worker: .*%s" % failure):
            herd.wait_for(what, after=mark)
            # A second try, after the back-off, fails the same way: still running.
            harness.wait_until(lambda: count_after(herd, what, mark) >= 2,
                               what="a second /%s/" % what)
        self.assertIsNone(herd.proc.poll(), herd.log())
        # The other worker serves on: the master's exit would take it along (and in
        # round-robin the master places the connection).
        self.assertTrue(serves(herd))
        mark = events.mark()
        end_fault()
        events.wait_for("broker.ready", after=mark, seconds=20)
        events.wait_for("worker.ready", after=mark, app="web", slot=slot, seconds=20)
        harness.wait_until(lambda: len(ready_workers(herd)) == 2, what="two ready workers")
        self.assertNotIn(victim, herd.worker_pids())
        self.assertTrue(serves(herd))
        self.assertEqual(status(herd)["state"]["up"], True)
        self.assertEqual(herd.stop(), 0, herd.log())


class DescriptorShortage(Recovery, unittest.TestCase):
    def test_broker_and_worker_restart_when_descriptors_are_free_again(self):
        with harness.Herd(config()) as herd, harness.Events(herd) as events:
            herd.port()
            self.assertEqual(len(ready_workers(herd)), 2)  # before: the CLI needs a descriptor
            before = herd.set_master_nofile(3)  # stdin, stdout, stderr: nothing new opens
            self.check(herd, events, "EMFILE", lambda: herd.set_master_nofile(before))


def pids_cgroup(pid):
    """The folder of pid's pids cgroup if this process may make a child group there (cgroup
    v1 "pids" hierarchy, or v2 with the pids controller enabled for children), else None."""
    with open("/proc/%d/cgroup" % pid) as f:
        lines = [l.rstrip("\n").split(":", 2) for l in f]
    for _, controllers, path in lines:
        if "pids" in controllers.split(","):
            root = "/sys/fs/cgroup/pids"
            break
    else:
        v2 = [path for _, controllers, path in lines if controllers == ""]
        if not v2:
            return None
        root, path = "/sys/fs/cgroup", v2[0]
        try:
            with open(os.path.join(root, path.lstrip("/"), "cgroup.subtree_control")) as f:
                if "pids" not in f.read().split():
                    return None
        except OSError:
            return None
    folder = os.path.join(root, path.lstrip("/"))
    return folder if os.access(folder, os.W_OK) else None


class ForkDenied:
    """Makes fork() fail for the master alone: RLIMIT_NPROC when it runs unprivileged (the
    limit counts every process of the user, and the user has more than one), else a pids
    cgroup of its own whose pids.max is what it has now. Root ignores RLIMIT_NPROC."""

    def __init__(self, test, herd):
        self.herd, self.pid, self.group = herd, herd.proc.pid, None
        if os.geteuid() != 0:
            self.old = set_nproc(self.pid, 1)
            return
        parent = pids_cgroup(self.pid)
        if parent is None:
            test.skipTest("fork cannot be made to fail here: herd runs as root, which "
                          "RLIMIT_NPROC does not limit, and no pids cgroup is writable")
        self.parent = parent
        self.group = os.path.join(parent, "herd-test-%d" % self.pid)
        os.mkdir(self.group)
        test.addCleanup(self.remove_group)
        try:
            write(os.path.join(self.group, "cgroup.procs"), str(self.pid))
        except OSError as e:
            test.skipTest("fork cannot be made to fail here: herd runs as root, which "
                          "RLIMIT_NPROC does not limit, and it cannot join a pids cgroup: %s" % e)
        write(os.path.join(self.group, "pids.max"), read(os.path.join(self.group, "pids.current")))

    def end(self):
        if self.group is None:
            set_nproc(self.pid, self.old)
        else:
            write(os.path.join(self.group, "pids.max"), "max")

    def remove_group(self):
        # Once herd has exited (the test stopped it); the group must be empty to go.
        self.herd.kill()
        harness.wait_until(lambda: not read(os.path.join(self.group, "cgroup.procs")),
                           what="herd's processes to leave the test cgroup")
        os.rmdir(self.group)


def set_nproc(pid, soft):
    """Sets pid's RLIMIT_NPROC soft limit; returns the one it had."""
    old, hard = resource.prlimit(pid, resource.RLIMIT_NPROC)
    resource.prlimit(pid, resource.RLIMIT_NPROC, (soft, hard))
    return old


def read(path):
    with open(path) as f:
        return f.read().strip()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


class ForkFailure(Recovery, unittest.TestCase):
    def test_broker_and_worker_restart_when_fork_works_again(self):
        with harness.Herd(config(balance="round-robin")) as herd, harness.Events(herd) as events:
            herd.port()
            self.assertEqual(len(ready_workers(herd)), 2)
            denied = ForkDenied(self, herd)
            self.check(herd, events, r"fork\(\): EAGAIN", denied.end)


class AcceptWithoutDescriptors(unittest.TestCase):
    """The control socket and the metrics endpoint are level-triggered: a loop that logs and
    returns on EMFILE wakes up again at once, for as long as a client waits. They pause."""

    def test_control_socket_and_metrics_endpoint_do_not_spin(self):
        with harness.Herd(config(metrics="127.0.0.1:0")) as herd:
            metrics_port = int(herd.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/").group(1))
            control_path = os.path.join(herd.tmpdir, "herd.sock")
            before = herd.set_master_nofile(3)
            mark = herd.mark()
            control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            control.connect(control_path)
            control.sendall(b'{"cmd": "status"}\n')
            scrape = socket.create_connection(("127.0.0.1", metrics_port))
            scrape.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            herd.wait_for(r"control socket .*EMFILE", after=mark)
            herd.wait_for(r"accept4\(.*metrics.*EMFILE", after=mark)

            # The window is a measurement, not a wait for something: the master's CPU time
            # over it, while both clients wait and it can accept neither. A busy loop uses
            # all of it; pausing 100 ms between tries, almost none.
            window = harness.timeout(2.0)
            cpu, start = herd.cpu_seconds(), time.monotonic()
            time.sleep(window)
            used, elapsed = herd.cpu_seconds() - cpu, time.monotonic() - start
            print("master CPU without descriptors: %.2f s in %.2f s" % (used, elapsed))
            self.assertLess(used, 0.2 * elapsed,
                            "the master used %.2f s of CPU in %.2f s without descriptors"
                            % (used, elapsed))
            # Paused and tried again: one warning per socket per pause, and still trying.
            bound = (time.monotonic() - start + harness.timeout(5)) / 0.1 + 5
            for sock in (r"control socket", r"metrics endpoint"):
                self.assertLess(count_after(herd, sock + r".*EMFILE", mark), bound)
                warnings = count_after(herd, r"accept4\(\) on %s.*EMFILE.*pausing accept" % sock,
                                       mark)
                self.assertGreater(warnings, 1)

            # Descriptors again: both waiting clients are served, nothing was lost.
            herd.set_master_nofile(before)
            control.settimeout(harness.timeout(10))
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = control.recv(65536)
                if not chunk:
                    break
                answer += chunk
            self.assertTrue(json.loads(answer)["ok"])
            scrape.settimeout(harness.timeout(10))
            self.assertTrue(scrape.recv(65536).startswith(b"HTTP/1.1 200"))
            control.close()
            scrape.close()
            self.assertEqual(herd.stop(), 0, herd.log())


class ReadOnlyStateFile(unittest.TestCase):
    """The file backend's state file where nothing can be written (a folder that is read-only
    to herd): reads work, a write fails with an error naming the file and the call, and the
    master, the broker and the workers serve on."""

    def read_only_folder(self, folder):
        if os.geteuid() != 0:
            os.chmod(folder, 0o555)
            self.addCleanup(os.chmod, folder, 0o755)
            return
        # Root writes through any mode bits; not into an immutable folder.
        r = subprocess.run(["chattr", "+i", folder], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        if r.returncode != 0:
            self.skipTest("no read-only folder can be made for root here: chattr +i: %s"
                          % r.stdout.decode(errors="replace").strip())
        self.addCleanup(subprocess.run, ["chattr", "-i", folder])

    def test_write_fails_clearly_and_everything_serves_on(self):
        tmp = tempfile.mkdtemp(prefix="herd-test-")
        self.addCleanup(shutil.rmtree, tmp, True)
        folder = os.path.join(tmp, "state")
        os.mkdir(folder)
        path = os.path.join(folder, "herd.state.json")
        with open(path, "w") as f:
            json.dump({"version": 3, "entries": {"limits": {"rps": 100}}}, f)
        self.read_only_folder(folder)
        with harness.Herd(config(state={"backend": "file", "path": path}), tmpdir=tmp) as herd:
            port = herd.port()
            code, out = harness.run_herd("state", "get", "limits", "-c", herd.config_path)
            self.assertEqual((code, json.loads(out)), (0, {"rps": 100}), out)
            mark = herd.mark()
            code, out = harness.run_herd("state", "set", "limits", '{"rps": 5}',
                                         "-c", herd.config_path)
            self.assertNotEqual(code, 0, out)
            self.assertIn("cannot write state file %s: open(" % path, out)
            herd.wait_for(r"error \[broker:\d+\] cannot write state file %s: open\(.*\): "
                          r"(EPERM|EACCES|EROFS)" % re.escape(path), after=mark)
            # A plugin's write gets the same answer; nothing else changes.
            with harness.Client(port) as c:
                self.assertEqual(c.request("PUT", "/probe/state/color", body='"teal"').status, 202)
            self.assertEqual(status(herd)["state"]["version"], 3)
            self.assertIn("cannot write state file", status(herd)["state"]["last_error"])
            self.assertEqual(len(ready_workers(herd)), 2)
            self.assertTrue(serves(herd))
            with open(path) as f:
                self.assertEqual(json.load(f)["entries"], {"limits": {"rps": 100}})
            self.assertIsNone(herd.proc.poll())
            self.assertEqual(herd.stop(), 0, herd.log())


if __name__ == "__main__":
    harness.main()
