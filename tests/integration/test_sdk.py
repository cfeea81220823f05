"""The installable SDK: `meson install` into a temporary root, then each out-of-tree example
plugin is configured with pkg-config against it, built, checked and served: the minimal one,
and the asynchronous one, whose own unit tests (on herd/testing.hpp) run first."""
import http.client
import json
import os
import shutil
import tempfile
import time
import unittest

import harness
import sdk_build
from sdk_build import SOURCE, run


class SdkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="herd-sdk-")
        cls.sdk = sdk_build.Sdk(cls.tmp)
        cls.headers, cls.pcs = cls.sdk.headers, cls.sdk.pcs

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def build_example(self, name):
        return self.sdk.build_example(name)

    def config_for(self, src, so, **plugin_config):
        return sdk_build.checked_config(src, so, **plugin_config)

    def test_sdk_installed(self):
        self.assertEqual(len(self.headers), 1, "herd.hpp installed once")
        self.assertEqual(len(self.pcs), 1, "herd-plugin.pc installed")
        # Only the SDK's headers are installed (the test kit's parts in herd/testing/ too): the
        # server's are not part of it.
        def tree(root):
            return sorted(os.path.relpath(os.path.join(d, f), root)
                          for d, _, files in os.walk(root) for f in files)
        installed = tree(os.path.dirname(self.headers[0]))
        sdk = [h for h in tree(os.path.join(SOURCE, "include", "herd")) if h.endswith(".hpp")]
        self.assertEqual(installed, sdk)
        self.assertIn("testing.hpp", installed)
        self.assertIn(os.path.join("testing", "harness.hpp"), installed)

    def test_out_of_tree_plugin_builds_and_serves(self):
        src, _ = self.build_example("out-of-tree-plugin")
        so = os.path.join(src, "build", "libgreeter.so")
        self.assertTrue(os.path.exists(so))
        config = self.config_for(src, so)
        with harness.Herd(config) as herd:
            r = harness.get(herd.port("greeter"), "/hi")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, b"Greetings, operator, from /hi\n")
            herd.wait_for(r"plugin /: greeter ready in worker 0")

    def test_async_plugin_unit_tests_and_serves(self):
        src, env = self.build_example("async-plugin")
        # Its own unit tests, on the installed test kit.
        out = run(["meson", "test", "-C", "build", "--print-errorlogs"], cwd=src, env=env)
        self.assertRegex(out, r"inventory_test\s+OK")
        so = os.path.join(src, "build", "libinventory.so")
        config = self.config_for(src, so, lookup_ms=50, tick_ms=20)
        with harness.Herd(config) as herd:
            port = herd.port("inventory")
            # The coroutine endpoint answers once its timer has fired (timers never fire early).
            started = time.monotonic()
            r = harness.get(port, "/items/apple")
            self.assertGreaterEqual(time.monotonic() - started, 0.045)
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.body), {"item": "apple", "count": 3})
            # Server-sent events, chunked: three events 20 ms apart, then the end of the stream.
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=harness.timeout(10))
            try:
                conn.request("GET", "/events?count=3")
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.getheader("Content-Type"), "text/event-stream; charset=utf-8")
                self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
                events = resp.read().decode().split("\n\n")
            finally:
                conn.close()
            self.assertEqual(events[-1], "")
            self.assertEqual(events[:-1], ['event: stock\nid: %d\ndata: {"apple":3,"pear":0}' % i for i in range(3)])


if __name__ == "__main__":
    harness.main()
