"""Least privilege: a master started as root refuses to run plugins as root unless the config
says so, and with "user" runs workers and the broker as that user (after binding, before any
plugin is loaded) while the master keeps root; unknown users are refused with their name.
`herd check` loads the plugins as that user too."""
import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import unittest

import harness
from harness import app, plugin


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[2])  # effective
    raise AssertionError("no Uid line for %d" % pid)


def readable_plugin():
    """A folder that every user can read (mode 0755) with a copy of the hello plugin (0644):
    (folder, plugin path)."""
    tmp = tempfile.mkdtemp(prefix="herd-test-")
    os.chmod(tmp, 0o755)
    so = os.path.join(tmp, "libhello.so")
    shutil.copy(plugin("hello"), so)
    os.chmod(so, 0o644)
    return tmp, so


@unittest.skipUnless(os.geteuid() == 0, "needs a master started as root")
class Privilege(unittest.TestCase):
    def test_root_without_user_is_refused(self):
        config = {"allow_root": False, "apps": [app(workers=1)]}
        with harness.Herd(config, wait_ready=False) as herd:
            herd.wait_for(r'herd runs as root: set "user"')
            self.assertEqual(herd.wait_exit(), 1)
            self.assertEqual(herd.count(r"spawned worker"), 0)

    def test_workers_and_broker_run_as_the_user(self):
        nobody = pwd.getpwnam("nobody")
        tmp, so = readable_plugin()  # somewhere the user can read
        config = {"user": "nobody", "apps": [app(workers=2, plugins=[{"mount": "/", "path": so}])]}
        with harness.Herd(config, tmpdir=tmp) as herd:
            herd.wait_for(r"workers and the broker run as user nobody \(uid %d" % nobody.pw_uid)
            self.assertEqual(harness.get(herd.port()).body, b"Hello, World!")
            self.assertEqual(uid_of(herd.proc.pid), 0)
            workers = herd.worker_pids()
            self.assertEqual(len(workers), 2)
            for pid in workers + [herd.broker_pid()]:
                self.assertEqual(uid_of(pid), nobody.pw_uid, pid)
            # The control socket stays the master's: root's, mode 0600.
            st = os.stat(os.path.join(tmp, "herd.sock"))
            self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o600))
            self.assertEqual(herd.stop(), 0)

    def test_an_unknown_user_is_refused_by_name(self):
        config = {"user": "no-such-user-h3rd", "apps": [app(workers=1)]}
        with harness.Herd(config, wait_ready=False) as herd:
            herd.wait_for(r'user "no-such-user-h3rd": no such user')
            self.assertEqual(herd.wait_exit(), 1)

    def test_check_loads_the_plugins_as_the_user(self):
        # A plugin owned by the workers' user is theirs to load: `herd check` run as root must
        # judge it as they do (it once refused it as "neither root nor herd's user (uid 0)").
        nobody = pwd.getpwnam("nobody")
        tmp, so = readable_plugin()
        os.chown(so, nobody.pw_uid, nobody.pw_gid)
        path = os.path.join(tmp, "herd.json")
        with open(path, "w") as f:
            json.dump({"user": "nobody", "apps": [app(workers=1, plugins=[{"mount": "/", "path": so}])]}, f)
        code, out = harness.run_herd("check", path)
        self.assertEqual(code, 0, out)
        self.assertIn("OK (1 app(s), 1 plugin(s) loaded and started)", out)
        # As root without "user", it refuses as `herd run` does.
        with open(path, "w") as f:
            json.dump({"allow_root": False, "apps": [app(workers=1, plugins=[{"mount": "/", "path": so}])]}, f)
        code, out = harness.run_herd("check", path)
        self.assertEqual(code, 1, out)
        self.assertIn('herd runs as root: set "user"', out)
        # Not as root, "user" cannot be taken: the check runs as that user and says so.
        with open(path, "w") as f:
            json.dump({"user": "root", "apps": [app(workers=1, plugins=[{"mount": "/", "path": so}])]}, f)
        os.chmod(path, 0o644)
        # A copy of herd where nobody can run it (the build folder may be in root's home).
        herd_copy = os.path.join(tmp, "herd")
        shutil.copy(harness.HERD_BIN, herd_copy)
        os.chmod(herd_copy, 0o755)
        p = subprocess.run(["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                            "--clear-groups", herd_copy, "check", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=harness.timeout(30))
        out = p.stdout.decode("utf-8", "replace")
        self.assertEqual(p.returncode, 0, out)
        self.assertIn('not root, so the plugins are loaded as uid %d, not as user "root"' % nobody.pw_uid, out)
        self.assertIn("OK (1 app(s), 1 plugin(s) loaded and started)", out)
        shutil.rmtree(tmp)


if __name__ == "__main__":
    harness.main()
