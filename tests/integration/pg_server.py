"""A PostgreSQL of a test's own (Debian's postgresql: initdb and postgres from
/usr/lib/postgresql/*/bin), on 127.0.0.1 and a port the test picks, its data in the test's
folder; stopped and started again at will on the same port. PostgreSQL refuses to run as root:
as root, it runs as the `postgres` user the package creates. TCP connections need the
password (scram-sha-256); the test's own psql goes through the Unix socket (trust).
"""

import glob
import os
import pwd
import shutil
import subprocess

import harness


def bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return os.path.dirname(found[-1]) if found else None


def available():
    return bindir() is not None and shutil.which("psql") is not None


class PgServer:
    def __init__(self, port, folder, password):
        self.port, self.folder, self.password, self.proc = port, folder, password, None
        self.data = os.path.join(folder, "data")
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        pwfile = os.path.join(folder, "pw")
        with open(pwfile, "w") as f:
            f.write(password + "\n")
        if self.user:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        subprocess.run([os.path.join(bindir(), "initdb"), "-D", self.data, "-U", "app",
                        "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile", pwfile,
                        "-E", "UTF8", "--no-sync"],
                       user=self.user, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.STDOUT)

    def url(self, database="postgres"):
        return "postgresql://app:%s@127.0.0.1:%d/%s" % (self.password, self.port, database)

    def start(self):
        self.proc = subprocess.Popen(
            [os.path.join(bindir(), "postgres"), "-D", self.data, "-p", str(self.port),
             "-k", self.folder, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            user=self.user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness.wait_until(lambda: self.psql("SELECT 1") == "1", seconds=30,
                           what="postgres to answer")

    def stop(self):
        """A fast shutdown (SIGINT), as an operator's restart would do."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(2)
            self.proc.wait(harness.timeout(30))

    def psql(self, sql):
        p = subprocess.run(["psql", "-h", self.folder, "-p", str(self.port), "-U", "app",
                            "-d", "postgres", "-AtXq", "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return p.stdout.decode().strip()
