"""Upgrading herd itself (`herd upgrade`, SIGUSR2): the running master starts another build of
herd (herd-next: the same code, another version set at build time) on the same sockets; once
that one is ready it hands over and stops. Under wrk's keep-alive load, for every balancing
strategy: no socket error, no non-2xx, and once the command has returned every request is
served by the new build's workers. A new build that refuses the config, whose workers cannot
start, or that crashes once it has the sockets (herd-crash) changes nothing: the old master
serves throughout. Then systemd: the notify protocol across the hand-over, checked on a real
datagram socket with the sender's credentials, and socket activation (LISTEN_FDS).

The old master is the test's child; the new one is reparented to the test when the old one
exits (the test process is a child subreaper), so the test reaps it and reads its exit code."""
import ctypes
import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

import harness
from harness import app, plugin

HERE = os.path.dirname(os.path.abspath(__file__))
NEXT_BIN = os.environ.get("HERD_NEXT_BIN", "")
CRASH_BIN = os.environ.get("HERD_CRASH_BIN", "")
HAVE_WRK = shutil.which("wrk") is not None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def wait_pid(pid, seconds=30):
    """Waits for a child of this process (a reparented master) to exit; returns its exit code
    (negative: the signal that killed it)."""
    fd = os.pidfd_open(pid)
    try:
        if not select.select([fd], [], [], harness.timeout(seconds))[0]:
            raise AssertionError("pid %d did not exit within %ss" % (pid, seconds))
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def kill_pid(pid):
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def web(balance="shared", greeting="hello", workers=2):
    return app(workers=workers, balance=balance,
               plugins=[{"mount": "/", "path": plugin("hello"), "config": {"greeting": greeting}},
                        {"mount": "/probe", "path": plugin("probe")}])


def cli(herd, *args, seconds=90):
    return harness.run_herd(*args, "-c", herd.config_path, seconds=seconds)


def status(herd):
    """`herd status --json` (its warnings, on standard error, left out)."""
    p = subprocess.run([harness.HERD_BIN, "status", "--json", "-c", herd.config_path],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=harness.timeout(30))
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def worker_pids(st, name="web"):
    return {w["pid"] for a in st["apps"] if a["name"] == name for w in a["workers"]}


def write_config(herd, config):
    tmp = herd.config_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(harness.with_root_allowed(config), f, indent=2)
    os.replace(tmp, herd.config_path)


class Wrk:
    """wrk with keep-alive connections and the status-counting script, until stopped."""

    def __init__(self, port, connections=16):
        self.proc = subprocess.Popen(
            ["wrk", "-t1", "-c%d" % connections, "-d600s", "-s",
             os.path.join(HERE, "wrk_count.lua"), "http://127.0.0.1:%d/" % port],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def stop(self):
        """Stops wrk; returns its RESULT line as a dict."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out = self.proc.communicate(timeout=harness.timeout(30))[0].decode()
        m = re.search(r"^RESULT (.*)$", out, re.M)
        if m is None:
            raise AssertionError("wrk printed no result:\n" + out)
        return json.loads(m.group(1))


CLONE_NEWNET = 0x40000000


class KeepAlivePids:
    """One keep-alive client asking /probe/pid in a loop (reconnecting when the server closes
    the connection): records when each request was sent and which worker answered it."""

    def __init__(self, port):
        self.port = port
        # (time.monotonic() just before sending, pid). Sent, not received: an old worker's
        # answer to a request sent before the command returned may be read after it.
        self.answers = []
        self.errors = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        client = None
        while not self.done.is_set():
            try:
                if client is None:
                    client = harness.Client(self.port)
                sent = time.monotonic()
                r = client.request("GET", "/probe/pid")
                self.answers.append((sent, int(r.body)))
                if (r.header("Connection") or "").lower() == "close":
                    client.close()
                    client = None
            except (ConnectionError, OSError) as e:
                # A connection closed between two requests: a keep-alive client sends again on
                # a new one, as wrk does. Counted, so that a refused connection shows.
                self.errors.append(repr(e))
                if client is not None:
                    client.close()
                client = None
        if client is not None:
            client.close()

    def stop(self):
        self.done.set()
        self.thread.join(harness.timeout(10))


def private_network(test, migrate_req):
    """Moves this thread, and what it starts from now on (processes, threads), into a new
    network namespace with its loopback up and net.ipv4.tcp_migrate_req set; back where it was
    at the test's cleanup. None, or why it cannot (not root, an old kernel)."""
    if os.geteuid() != 0:
        return "needs root (a network namespace of its own)"
    if not os.path.exists("/proc/sys/net/ipv4/tcp_migrate_req"):
        return "this kernel has no net.ipv4.tcp_migrate_req (Linux 5.14+)"
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)

    def back():
        if libc.setns(original, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back to the original network namespace")
        os.close(original)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        os.close(original)
        return "cannot make a network namespace: %s" % os.strerror(err)
    test.addCleanup(back)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # /proc/sys/net is the namespace of the thread that opens it.
    with open("/proc/sys/net/ipv4/tcp_migrate_req", "w") as f:
        f.write("1" if migrate_req else "0")
    return None


class Upgrades(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        become_subreaper()

    def start(self, config, env=None):
        herd = harness.Herd(config, env=env)
        herd.start()
        self.addCleanup(herd.__exit__, None, None, None)
        return herd

    def new_master(self, pid):
        """The new master: killed at the end if a test left it running."""
        self.addCleanup(kill_pid, pid)
        return pid

    def stop_new_master(self, herd, pid):
        code, out = cli(herd, "stop")
        self.assertEqual(code, 0, out)
        self.assertEqual(wait_pid(pid), 0, herd.log())


@unittest.skipUnless(HAVE_WRK, "wrk is not installed (scripts/setup.sh installs it)")
class ZeroFailures(Upgrades):
    """An upgrade to herd-next under wrk's keep-alive load."""

    def upgrade_under_load(self, balance, workers=2, new_config=None):
        herd = self.start({"apps": [web(balance, workers=workers)]})
        port = herd.port()
        old = status(herd)
        self.assertEqual(old["version"], harness.run_herd("version")[1].split()[1])
        wrk = Wrk(port)
        pids = KeepAlivePids(port)
        try:
            harness.wait_until(lambda: sum(w["requests"] for w in status(herd)["apps"][0]["workers"])
                               > 200, seconds=20, what="wrk's requests to reach the workers")
            if new_config is not None:
                write_config(herd, new_config)
            code, out = cli(herd, "upgrade", "--binary", NEXT_BIN)
            returned = time.monotonic()
            self.assertEqual(code, 0, out + herd.log())
            m = re.search(r"upgraded from herd (\S+) \(pid (\d+)\) to herd (\S+) \(pid (\d+)\)", out)
            self.assertIsNotNone(m, out)
            self.assertEqual((m.group(1), int(m.group(2))), (old["version"], old["pid"]))
            self.assertTrue(m.group(3).endswith("+next"), out)
            pid = self.new_master(int(m.group(4)))
            # The old master has no worker left when the command returns, and exits.
            self.assertEqual(herd.proc.wait(harness.timeout(30)), 0, herd.log())
            new = status(herd)
            self.assertEqual((new["pid"], new["version"]), (pid, m.group(3)))
            self.assertEqual(new["binary"], NEXT_BIN)
            self.assertNotEqual(new["started"], "")
            workers = worker_pids(new)
            self.assertEqual(len(workers), 2)
            if new_config is not None:
                # The old master's third reuseport socket: the new master passed on what the
                # kernel queued there until the old master had gone, then closed it.
                herd.wait_for(r"master:%d\] the old master has gone: closed its 1 reuseport "
                              r"socket\(s\) beyond this config's workers" % pid)
            self.assertFalse(workers & worker_pids(old))
            # New connections, and the keep-alive client's requests answered after the
            # command returned: all the new build's workers.
            for _ in range(6):
                self.assertIn(int(harness.get(port, "/probe/pid").body), workers)
            harness.wait_until(lambda: any(t > returned for t, _ in pids.answers), seconds=10,
                               what="an answer after the upgrade")
            late = {p for t, p in pids.answers if t > returned}
            self.assertTrue(late <= workers, (late, workers))
            # The load goes on against the new master.
            harness.wait_until(lambda: sum(w["requests"] for w in status(herd)["apps"][0]["workers"])
                               > 200, seconds=20, what="wrk's requests to reach the new workers")
        finally:
            pids.stop()
            result = wrk.stop()
        for error in ("connect", "read", "write", "timeout", "status"):
            self.assertEqual(result[error], 0, "%s errors: %s\n%s" % (error, result, herd.log()))
        self.assertEqual(set(result["statuses"]), {"2xx"}, result)
        self.assertGreater(result["requests"], 400, result)
        self.assertEqual(pids.errors, [], herd.log())
        self.stop_new_master(herd, pid)

    def test_shared(self):
        self.upgrade_under_load("shared")

    def test_reuseport(self):
        self.upgrade_under_load("reuseport")

    def test_reuseport_to_fewer_workers(self):
        """The new config has one reuseport slot fewer: connections the kernel hashes to the
        old master's third socket are not lost. Closing that socket resets what is still
        queued on it unless the kernel moves it to the group's other sockets
        (net.ipv4.tcp_migrate_req, Linux 5.14+; herd warns when it is off): the test runs in a
        network namespace of its own with it on (4 runs in 14 lost 3 to 5 connections
        without it)."""
        why = private_network(self, migrate_req=True)
        if why:
            self.skipTest(why)
        self.upgrade_under_load("reuseport", workers=3, new_config={"apps": [web("reuseport")]})

    def test_round_robin(self):
        self.upgrade_under_load("round-robin")

    def test_least_conn(self):
        self.upgrade_under_load("least-conn")


@unittest.skipUnless(HAVE_WRK, "wrk is not installed (scripts/setup.sh installs it)")
class Rollback(Upgrades):
    """A new build that cannot take over: the command fails with the reason and exit code 1,
    the old master and its workers serve on untouched, wrk sees no failure. Then an upgrade
    that works, from the same master."""

    def test_failed_upgrades_change_nothing(self):
        herd = self.start({"apps": [web("round-robin")]})
        port = herd.port()
        before = status(herd)
        wrk = Wrk(port)
        try:
            harness.wait_until(lambda: sum(w["requests"] for w in status(herd)["apps"][0]["workers"])
                               > 200, seconds=20, what="wrk's requests to reach the workers")
            cases = [
                ("refuses the config", {"apps": [web("round-robin")], "colour": "blue"}, NEXT_BIN,
                 r"refused to start: the config is refused: \S+herd\.json: colour: unknown key"),
                # The hello plugin refuses a greeting that is not a string.
                ("workers cannot start", {"apps": [web("round-robin", greeting=3)]}, NEXT_BIN,
                 r"worker web/\d \(pid \d+\) cannot start: .*greeting"),
                ("crashes after inheriting", {"apps": [web("round-robin")]}, CRASH_BIN,
                 r"killed by signal 6 \(Aborted\)(, core dumped)? before it was ready"),
            ]
            for what, config, binary, reason in cases:
                with self.subTest(what):
                    write_config(herd, config)
                    code, out = cli(herd, "upgrade", "--binary", binary)
                    self.assertEqual(code, 1, out)
                    self.assertIn("herd upgrade: upgrade failed, nothing changed:", out)
                    self.assertRegex(out, reason)
                    now = status(herd)
                    self.assertEqual(now["pid"], before["pid"])
                    self.assertEqual(worker_pids(now), worker_pids(before))
                    self.assertNotIn("upgrade", now)
                    self.assertEqual(harness.get(port).body, b"hello")
            write_config(herd, {"apps": [web("round-robin", greeting="after")]})
            code, out = cli(herd, "upgrade", "--binary", NEXT_BIN)
            self.assertEqual(code, 0, out + herd.log())
            pid = self.new_master(int(re.search(r"\(pid (\d+)\) in", out).group(1)))
            self.assertEqual(harness.get(port).body, b"after")
            self.assertEqual(herd.proc.wait(harness.timeout(30)), 0, herd.log())
        finally:
            result = wrk.stop()
        for error in ("connect", "read", "write", "timeout", "status"):
            self.assertEqual(result[error], 0, "%s errors: %s\n%s" % (error, result, herd.log()))
        self.assertEqual(set(result["statuses"]), {"2xx"}, result)
        self.stop_new_master(herd, pid)


class Refusals(Upgrades):
    def test_one_upgrade_at_a_time_and_binaries_that_are_not_herd(self):
        herd = self.start({"apps": [web()]})
        port = herd.port()
        code, out = cli(herd, "upgrade", "--binary", "/nonexistent/herd")
        self.assertEqual(code, 1, out)
        self.assertIn("the new binary /nonexistent/herd cannot be executed", out)
        self.assertIn("ENOENT", out)
        # Something that exits without speaking the protocol.
        code, out = cli(herd, "upgrade", "--binary", shutil.which("true"))
        self.assertEqual(code, 1, out)
        self.assertRegex(out, r"the new master \(pid \d+, \S+/true\) exited with code 0 before it "
                              r"was ready")
        # One that never gets ready: a second upgrade meanwhile is refused, and so is a reload.
        slow = os.path.join(herd.tmpdir, "slow-herd")
        with open(slow, "w") as f:
            f.write("#!/bin/sh\nexec sleep 600\n")
        os.chmod(slow, 0o755)
        with harness.Events(herd) as events:
            first = subprocess.Popen([harness.HERD_BIN, "upgrade", "--binary", slow, "-c",
                                      herd.config_path], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
            started = events.wait_for("upgrade.started", binary=slow)
            code, out = cli(herd, "upgrade", "--binary", NEXT_BIN)
            self.assertEqual(code, 1, out)
            self.assertRegex(out, r"an upgrade is already in progress: the new master \(pid %d, %s\)"
                             % (started["pid"], re.escape(slow)))
            code, out = cli(herd, "reload")
            self.assertEqual(code, 1, out)
            self.assertIn("an upgrade is in progress", out)
            self.assertEqual(status(herd)["upgrade"]["pid"], started["pid"])
            self.assertEqual(harness.get(port).body, b"hello")
            os.kill(started["pid"], signal.SIGKILL)
            out = first.communicate(timeout=harness.timeout(30))[0].decode()
            self.assertEqual(first.returncode, 1, out)
            self.assertIn("killed by signal 9", out)
            events.wait_for("upgrade.failed", pid=started["pid"])
        self.assertEqual(herd.proc.poll(), None)
        self.assertEqual(harness.get(port).body, b"hello")


class SignalAndState(Upgrades):
    def test_sigusr2_upgrades_and_the_state_carries_on(self):
        """SIGUSR2 upgrades to the binary herd was started from; the shared state (the file
        backend) is read by the new broker: what was written before is there after. The metrics
        and health endpoints carry over on their sockets."""
        metrics, health = free_port(), free_port()
        herd = self.start({"apps": [web()], "metrics": "127.0.0.1:%d" % metrics,
                           "health": "127.0.0.1:%d" % health})
        port = herd.port()
        self.assertEqual(harness.get(health, "/healthz").status, 200)
        for i in range(20):
            code, out = cli(herd, "state", "set", "key%d" % i, json.dumps({"n": i}))
            self.assertEqual(code, 0, out)
        old = status(herd)
        with harness.Events(herd) as events:
            herd.signal(signal.SIGUSR2)
            committed = events.wait_for("upgrade.committed")
        pid = self.new_master(committed["pid"])
        self.assertEqual(herd.proc.wait(harness.timeout(30)), 0, herd.log())
        new = status(herd)
        self.assertEqual((new["pid"], new["version"], new["binary"]),
                         (pid, old["version"], harness.HERD_BIN))
        for i in range(20):
            code, out = cli(herd, "state", "get", "key%d" % i)
            self.assertEqual((code, json.loads(out)), (0, {"n": i}), out)
        self.assertEqual(harness.get(health, "/healthz").body, b"ok\n")
        self.assertIn(b"herd_workers", harness.get(metrics, "/metrics").body)
        # The new workers have the state too, and a write through them is kept.
        self.assertEqual(json.loads(harness.get(port, "/probe/state/key7").body), {"n": 7})
        code, out = cli(herd, "state", "set", "after", "1")
        self.assertEqual(code, 0, out)
        with open(os.path.join(herd.tmpdir, "herd.state.json")) as f:
            entries = json.load(f)["entries"]
        self.assertEqual(len(entries), 21)
        self.stop_new_master(herd, pid)


class FakeSystemd:
    """A notify socket that, as systemd does, reads each datagram's sender from its
    credentials (SO_PASSCRED)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)
        self.sock.settimeout(harness.timeout(30))

    def next(self):
        """(sender pid, {KEY: VALUE})."""
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = int.from_bytes(payload[0:4], "little")
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        return pid, fields

    def close(self):
        self.sock.close()


class Systemd(Upgrades):
    def test_notify_follows_the_new_main_process(self):
        """With NotifyAccess=main systemd takes notifications only from the main process:
        every one herd sends comes from the main process of the moment, the old master's last
        says MAINPID=<new>, and the new master's come after it."""
        tmp = harness.tempfile.mkdtemp(prefix="herd-notify-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "notify.sock")
        systemd = FakeSystemd(path)
        self.addCleanup(systemd.close)
        herd = self.start({"apps": [web()]}, env={"NOTIFY_SOCKET": path})
        main = herd.proc.pid
        sender, ready = systemd.next()
        self.assertEqual((sender, ready.get("READY")), (main, "1"))
        code, out = cli(herd, "upgrade", "--binary", NEXT_BIN)
        self.assertEqual(code, 0, out)
        pid = self.new_master(int(re.search(r"\(pid (\d+)\) in", out).group(1)))
        sender, handover = systemd.next()
        self.assertEqual(sender, main)
        self.assertEqual(handover.get("MAINPID"), str(pid))
        self.assertIn("upgraded to herd", handover.get("STATUS", ""))
        main = pid
        sender, took = systemd.next()
        self.assertEqual((sender, took.get("READY")), (main, "1"), took)
        self.assertIn("took over from herd", took["STATUS"])
        # The old master exits without a word (no STOPPING=1: the service is not stopping).
        self.assertEqual(herd.proc.wait(harness.timeout(30)), 0, herd.log())
        # The new master reloads and stops as the service's main process.
        write_config(herd, {"apps": [web(greeting="two")]})
        code, out = cli(herd, "reload")
        self.assertEqual(code, 0, out)
        for expected in ("RELOADING", "READY"):
            sender, fields = systemd.next()
            self.assertEqual((sender, fields.get(expected)), (main, "1"), fields)
        code, out = cli(herd, "stop")
        self.assertEqual(code, 0, out)
        sender, fields = systemd.next()
        self.assertEqual((sender, fields.get("STOPPING")), (main, "1"), fields)
        self.assertEqual(wait_pid(pid), 0, herd.log())


class SocketActivation(Upgrades):
    """Sockets from systemd (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES), passed as systemd does:
    descriptors 3 and up in a process whose pid is LISTEN_PID (a shell that execs herd)."""

    def activated(self, sockets, names, config):
        """Starts herd with `sockets` as descriptors 3.. ; returns the Herd."""
        herd = harness.Herd(config)
        # Above the numbers they move to, so that no move overwrites a socket still to move.
        fds = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 64) for s in sockets]
        self.addCleanup(lambda: [os.close(fd) for fd in fds])
        moves = " ".join("%d<&%d" % (3 + i, fd) for i, fd in enumerate(fds))
        closes = " ".join("%d<&-" % fd for fd in fds)
        script = ('exec %s %s; LISTEN_PID=$$ LISTEN_FDS=%d LISTEN_FDNAMES=%s exec "$0" run "$1"'
                  % (moves, closes, len(fds), names))
        herd.proc = subprocess.Popen(
            ["/bin/bash", "-c", script, harness.HERD_BIN, herd.config_path], pass_fds=fds,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=herd.tmpdir)
        herd.reader = threading.Thread(target=herd._read, daemon=True)
        herd.reader.start()
        self.addCleanup(herd.__exit__, None, None, None)
        return herd

    def listener(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        self.addCleanup(s.close)
        return s

    def test_sockets_matched_by_name_and_by_address(self):
        by_name, by_address = self.listener(), self.listener()
        address = "127.0.0.1:%d" % by_address.getsockname()[1]
        config = {"apps": [dict(web(), name="web", listen="127.0.0.1:0"),
                           dict(web(greeting="api"), name="api", listen=address)]}
        herd = self.activated([by_name, by_address], "web:unknown", config)
        herd.wait_for("all apps ready")
        # Each app serves on the socket systemd made; herd bound nothing itself.
        self.assertEqual(herd.port("web"), by_name.getsockname()[1])
        by_name.close()
        by_address.close()
        self.assertEqual(harness.get(herd.port("web")).body, b"hello")
        self.assertEqual(harness.get(by_address_port := int(address.split(":")[1])).body, b"api")
        # Workers do not see systemd's variables.
        for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
            self.assertEqual(harness.get(by_address_port, "/probe/env/" + name).status, 404)
        # The sockets are passed on by an upgrade like any other.
        code, out = cli(herd, "upgrade", "--binary", NEXT_BIN)
        self.assertEqual(code, 0, out + herd.log())
        pid = self.new_master(int(re.search(r"\(pid (\d+)\) in", out).group(1)))
        self.assertEqual(harness.get(by_address_port).body, b"api")
        self.assertEqual(herd.proc.wait(harness.timeout(30)), 0, herd.log())
        self.stop_new_master(herd, pid)

    def test_a_socket_no_app_claims_is_an_error(self):
        extra = self.listener()
        herd = self.activated([self.listener(), extra], "web:metrics",
                              {"apps": [dict(web(), listen="127.0.0.1:0")]})
        self.assertEqual(herd.proc.wait(harness.timeout(30)), 1, herd.log())
        herd.reader.join(harness.timeout(5))
        self.assertRegex(herd.log(), r'systemd \(LISTEN_FDS\) passed sockets no app is named as '
                                     r'or listens on: descriptor 4 named "metrics" on '
                                     r'127\.0\.0\.1:%d' % extra.getsockname()[1])


if __name__ == "__main__":
    harness.main()
