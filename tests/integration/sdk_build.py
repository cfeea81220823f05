"""herd's SDK as a plugin author gets it: `meson install` of the test's build into a temporary
root, and the out-of-tree examples copied beside it and built with pkg-config (herd-plugin)
against that install. Shared by test_sdk.py and the examples' own tests."""
import glob
import json
import os
import re
import shutil
import subprocess

import harness

SOURCE = os.environ.get("HERD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.dirname(os.path.dirname(harness.HERD_BIN))


def run(cmd, **kw):
    """Runs cmd; its output, or AssertionError with the output when it fails."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=harness.timeout(300), **kw)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stdout.decode()))
    return p.stdout.decode()


class Sdk:
    """The SDK installed under folder/root; examples are built in folder/NAME."""

    def __init__(self, folder):
        self.folder = folder
        self.root = os.path.join(folder, "root")
        run(["meson", "install", "-C", BUILD, "--quiet", "--destdir", self.root])
        self.headers = glob.glob(os.path.join(self.root, "**", "include", "herd", "herd.hpp"), recursive=True)
        self.pcs = glob.glob(os.path.join(self.root, "**", "pkgconfig", "herd-plugin.pc"), recursive=True)

    def env(self):
        """The environment in which pkg-config finds the installed SDK."""
        if len(self.pcs) != 1:
            raise AssertionError("herd-plugin.pc installed %d times under %s" % (len(self.pcs), self.root))
        return dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(self.pcs[0]), PKG_CONFIG_SYSROOT_DIR=self.root)

    def build_example(self, name):
        """Copies examples/NAME out of the tree and builds it against the installed SDK; returns
        its folder and the environment that finds the SDK."""
        src = os.path.join(self.folder, name)
        shutil.copytree(os.path.join(SOURCE, "examples", name), src)
        env = self.env()
        run(["meson", "setup", "build"], cwd=src, env=env)
        run(["meson", "compile", "-C", "build"], cwd=src, env=env)
        return src, env

    def build_and_test_example(self, name, unit_test):
        """build_example(), then the example's own unit tests: `unit_test` must be among those
        that passed (AssertionError otherwise)."""
        src, env = self.build_example(name)
        out = run(["meson", "test", "-C", "build", "--print-errorlogs"], cwd=src, env=env)
        if not re.search(r"%s\s+OK" % re.escape(unit_test), out):
            raise AssertionError("the example's unit tests did not run:\n" + out)
        return src, env


def checked_config(src, so, config_name="herd.json", **plugin_config):
    """The example's config (src/config_name) on port 0 with the built library and these plugin
    config keys, written to src/test.json and checked by `herd check` (AssertionError if it
    fails)."""
    with open(os.path.join(src, config_name)) as f:
        config = json.load(f)
    config["apps"][0]["listen"] = "127.0.0.1:0"
    config["apps"][0]["plugins"][0]["path"] = so
    config["apps"][0]["plugins"][0].setdefault("config", {}).update(plugin_config)
    config_path = os.path.join(src, "test.json")
    with open(config_path, "w") as f:
        json.dump(config, f)
    code, out = harness.run_herd("check", config_path)
    if code != 0 or "OK" not in out:
        raise AssertionError("herd check %s failed (%d):\n%s" % (config_path, code, out))
    return config


class ExampleTestCase(harness.HerdTestCase):
    """A HerdTestCase for an example built out of tree: setUpClass fills cls.cleanup (undone
    in reverse, by release(), on a failed setup or after the class's herd has stopped)."""
    cleanup = []

    @classmethod
    def release(cls):
        for fn in reversed(cls.cleanup):
            fn()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.release()

