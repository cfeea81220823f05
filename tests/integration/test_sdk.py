"""The installable SDK: `meson install` into a temporary root, then the out-of-tree example
plugin is configured with pkg-config against it, built, checked and served."""
import glob
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import harness

SOURCE = os.environ.get("HERD_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.dirname(os.path.dirname(harness.HERD_BIN))


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=harness.timeout(300), **kw)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, p.stdout.decode()))
    return p.stdout.decode()


class SdkTest(unittest.TestCase):
    def test_out_of_tree_plugin_builds_and_serves(self):
        tmp = tempfile.mkdtemp(prefix="herd-sdk-")
        try:
            root = os.path.join(tmp, "root")
            run(["meson", "install", "-C", BUILD, "--quiet", "--destdir", root])
            headers = glob.glob(os.path.join(root, "**", "include", "herd", "herd.hpp"), recursive=True)
            self.assertEqual(len(headers), 1, "herd.hpp installed once")
            pcs = glob.glob(os.path.join(root, "**", "pkgconfig", "herd-plugin.pc"), recursive=True)
            self.assertEqual(len(pcs), 1, "herd-plugin.pc installed")
            # Only the SDK's headers are installed: the server's are not part of it.
            installed = sorted(os.listdir(os.path.dirname(headers[0])))
            sdk = sorted(h for h in os.listdir(os.path.join(SOURCE, "include", "herd")) if h.endswith(".hpp"))
            self.assertEqual(installed, sdk)

            src = os.path.join(tmp, "plugin")
            shutil.copytree(os.path.join(SOURCE, "examples", "out-of-tree-plugin"), src)
            env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]), PKG_CONFIG_SYSROOT_DIR=root)
            run(["meson", "setup", "build"], cwd=src, env=env)
            run(["meson", "compile", "-C", "build"], cwd=src, env=env)
            so = os.path.join(src, "build", "libgreeter.so")
            self.assertTrue(os.path.exists(so))

            with open(os.path.join(src, "herd.json")) as f:
                config = json.load(f)
            config["apps"][0]["listen"] = "127.0.0.1:0"
            config["apps"][0]["plugins"][0]["path"] = so
            config_path = os.path.join(src, "test.json")
            with open(config_path, "w") as f:
                json.dump(config, f)
            code, out = harness.run_herd("check", config_path)
            self.assertEqual(code, 0, out)
            self.assertIn("OK", out)

            with harness.Herd(config) as herd:
                r = harness.get(herd.port("greeter"), "/hi")
                self.assertEqual(r.status, 200)
                self.assertEqual(r.body, b"Greetings, operator, from /hi\n")
                herd.wait_for(r"plugin /: greeter ready in worker 0")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    harness.main()
