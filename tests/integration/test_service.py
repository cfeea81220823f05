"""Service managers: the systemd notify protocol, checked with a fake NOTIFY_SOCKET (a Unix
datagram socket the test binds): READY=1 once every app is ready, RELOADING=1 ... READY=1
around a reload (a refused one too), STOPPING=1 on TERM; workers do not inherit the socket."""
import json
import os
import signal
import socket
import unittest

import harness
from harness import app, plugin


class FakeSystemd:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(harness.timeout(10))

    def next(self):
        """The next notification as a dict of its KEY=VALUE lines."""
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n") if line)

    def close(self):
        self.sock.close()


def hello(greeting):
    return {"apps": [app(workers=2, plugins=[{"mount": "/", "path": plugin("hello"),
                                              "config": {"greeting": greeting}},
                                             {"mount": "/probe", "path": plugin("probe")}])]}


class Notify(unittest.TestCase):
    def run_with(self, address, bind_path):
        systemd = FakeSystemd(bind_path)
        self.addCleanup(systemd.close)
        with harness.Herd(hello("one"), env={"NOTIFY_SOCKET": address}) as herd:
            ready = systemd.next()
            self.assertEqual(ready["READY"], "1")
            self.assertEqual(ready["STATUS"], "1 app(s) ready")
            # getenv in a plugin does not see it (/proc/PID/environ would: a forked worker
            # keeps the master's initial environment block, whatever unsetenv did).
            self.assertEqual(harness.get(herd.port(), "/probe/env/NOTIFY_SOCKET").status, 404)
            self.assertEqual(harness.get(herd.port(), "/probe/env/HOME").status, 200)

            with open(herd.config_path, "w") as f:
                json.dump(hello("two"), f)
            herd.signal(signal.SIGHUP)
            reloading = systemd.next()
            self.assertEqual(reloading["RELOADING"], "1")
            self.assertGreater(int(reloading["MONOTONIC_USEC"]), 0)
            done = systemd.next()
            self.assertEqual((done["READY"], done["STATUS"]), ("1", "reloaded"))
            self.assertEqual(harness.get(herd.port()).body, b"two")

            with open(herd.config_path, "w") as f:
                f.write("{")
            herd.signal(signal.SIGHUP)
            self.assertEqual(systemd.next()["RELOADING"], "1")
            refused = systemd.next()
            self.assertEqual(refused["READY"], "1")
            self.assertTrue(refused["STATUS"].startswith("reload refused: the config is invalid"),
                            refused)

            herd.signal(signal.SIGTERM)
            self.assertEqual(systemd.next()["STOPPING"], "1")
            self.assertEqual(herd.wait_exit(), 0)

    def test_path_socket(self):
        tmp = harness.tempfile.mkdtemp(prefix="herd-notify-")
        path = os.path.join(tmp, "notify.sock")
        self.run_with(path, path)

    def test_abstract_socket(self):
        name = "herd-test-notify-%d" % os.getpid()
        self.run_with("@" + name, "\0" + name)


if __name__ == "__main__":
    harness.main()
