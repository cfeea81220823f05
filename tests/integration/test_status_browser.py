"""The status page in headless Chromium (Debian's, over the DevTools protocol: browser.py): it
loads, its worker rows match `herd status --json`, a worker killed shows as restarted (a new
pid in its slot, one more restart) within two seconds without reloading the page (its script
refreshes it every second), and the charts render. The page's screenshot is written to the
test's folder, or to $HERD_SCREENSHOT when set (docs/status-page.png is one)."""
import json
import os
import shutil
import signal
import sys
import tempfile
import unittest

import browser
import harness
from harness import app, plugin


@unittest.skipUnless(browser.EXECUTABLE, "chromium is not installed (scripts/test.sh installs it)")
class StatusBrowser(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="herd-status-browser-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        config = {"metrics": "127.0.0.1:0",
                  "apps": [app(workers=2, plugins=[{"mount": "/", "path": plugin("hello")},
                                                   {"mount": "/probe", "path": plugin("probe")}])]}
        self.herd = harness.Herd(config)
        self.addCleanup(self.herd.__exit__, None, None, None)
        self.herd.start()
        self.metrics_port = int(self.herd.wait_for(
            r"status page on http://127\.0\.0\.1:(\d+)/").group(1))
        self.chromium = browser.Chromium(os.path.join(self.tmp, "chromium"))
        self.addCleanup(self.chromium.close)

    def workers(self):
        code, out = harness.run_herd("status", "--json", "-c", self.herd.config_path)
        self.assertEqual(code, 0, out)
        return json.loads(out)["apps"][0]["workers"]

    def rows(self, page):
        """{pid: [slot, restarts]} of the page's worker rows."""
        return {int(k): v for k, v in page.evaluate(
            "Object.fromEntries([...document.querySelectorAll('tr[data-pid]')].map(r => "
            "[r.dataset.pid, [Number(r.dataset.slot), Number(r.cells[5].textContent)]]))").items()}

    def test_rows_a_restart_within_two_seconds_and_the_charts(self):
        page = self.chromium.open("http://127.0.0.1:%d/" % self.metrics_port)
        page.wait_for("document.querySelectorAll('tr[data-pid]').length === 2",
                      what="the worker rows")
        workers = self.workers()
        self.assertEqual(self.rows(page), {w["pid"]: [w["slot"], w["restarts"]] for w in workers})

        # Traffic for the charts, and a worker killed: the open page shows its replacement.
        for _ in range(50):
            self.assertEqual(harness.get(self.herd.port(), "/").status, 200)
        victim = workers[0]
        os.kill(victim["pid"], signal.SIGKILL)
        page.wait_for(
            "(() => { const rows = [...document.querySelectorAll('tr[data-pid]')];"
            " const mine = rows.filter(r => Number(r.dataset.slot) === %d);"
            " return rows.length === 2 && mine.length === 1 && mine[0].dataset.pid !== '%d'"
            " && Number(mine[0].cells[5].textContent) === %d; })()"
            % (victim["slot"], victim["pid"], victim["restarts"] + 1),
            seconds=2, what="the worker shown restarted within two seconds")
        after = self.workers()
        self.assertEqual(self.rows(page), {w["pid"]: [w["slot"], w["restarts"]] for w in after})

        # The charts: the first point (one per 5 s; a dot, then lines) drawn, in an SVG of
        # real size.
        page.wait_for("document.querySelector('[data-series=\"rps\"]') !== null",
                      seconds=20, what="the request rate chart")
        box = page.evaluate("(() => { const r = document.querySelector('figure.chart svg')"
                            ".getBoundingClientRect(); return [r.width, r.height]; })()")
        self.assertGreater(box[0], 100)
        self.assertGreater(box[1], 50)
        self.assertEqual(page.evaluate("document.querySelectorAll('figure.chart').length"), 3)
        shot = os.environ.get("HERD_SCREENSHOT") or os.path.join(self.tmp, "status-page.png")
        page.screenshot(shot)
        with open(shot, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        sys.stderr.write("screenshot: %s\n" % shot)


if __name__ == "__main__":
    harness.main()
