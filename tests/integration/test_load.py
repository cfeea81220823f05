"""Load from a real client: wrk -c64 for 5 s against two hello workers. No socket errors, no
non-2xx responses, and both workers served requests (each logs its count when it stops)."""
import re
import shutil
import subprocess
import unittest

import harness
from harness import app


class Load(unittest.TestCase):
    @unittest.skipUnless(shutil.which("wrk"), "wrk is not installed (scripts/setup.sh installs it)")
    def test_wrk_two_workers(self):
        with harness.Herd({"apps": [app(workers=2)]}) as herd:
            port = herd.port()
            p = subprocess.run(["wrk", "-t1", "-c64", "-d5s", "http://127.0.0.1:%d/" % port],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=harness.timeout(60))
            out = p.stdout.decode()
            self.assertEqual(p.returncode, 0, out)
            self.assertNotIn("Socket errors", out)
            self.assertNotIn("Non-2xx", out)
            total = int(re.search(r"(\d+) requests in", out).group(1))
            self.assertGreater(total, 0, out)
            self.assertEqual(herd.stop(), 0, herd.log())
            served = [int(m.group(1)) for m in herd.matches(r"worker web/\d.*stopped after serving (\d+) requests")]
            self.assertEqual(len(served), 2, herd.log())
            self.assertTrue(all(n > 0 for n in served), served)
            # wrk stops counting with requests still in flight, which the workers did serve.
            self.assertGreaterEqual(sum(served), total)


if __name__ == "__main__":
    harness.main()
