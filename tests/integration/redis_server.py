"""A redis-server of a test's own (Debian's redis-server), on 127.0.0.1 and a port the test
picks, with its files in the test's folder; stopped and started again at will on the same port.
"""

import socket
import subprocess

import harness


class RedisServer:
    def __init__(self, port, folder, password=None, appendonly=False):
        self.port, self.folder, self.proc = port, folder, None
        self.password, self.appendonly = password, appendonly

    def start(self):
        # AOF when asked, so that a restart keeps the data (as a production Redis would).
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if self.appendonly else "no", "--dir", self.folder]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_until(lambda: self.cli("PING") == "PONG", what="redis-server to answer")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(harness.timeout(10))

    def cli(self, *args):
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        p = subprocess.run(["redis-cli", "-p", str(self.port)] + auth + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return p.stdout.decode().strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
