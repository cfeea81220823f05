"""Headless Chromium for the tests, driven over its DevTools protocol (a WebSocket on
127.0.0.1, with Python's `websockets`: Debian's python3-websockets, so run under
/usr/bin/python3). Chromium(folder) starts the browser with its profile in folder and waits
for the DevToolsActivePort file it writes (the port it chose: no fixed port, no sleep);
open(url) is a new tab, whose evaluate() runs an expression in the page and returns its value.
"""
import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import time

import websockets

from timeouts import timeout

EXECUTABLE = shutil.which("chromium")

FLAGS = [
    "--headless=new", "--no-sandbox",  # the tests run as root
    "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
    "--disable-extensions", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--mute-audio", "--remote-debugging-port=0",
]


class Page:
    """A tab, attached to (a DevTools session of its own)."""

    def __init__(self, browser, target, session):
        self.browser = browser
        self.target = target
        self.session = session

    def evaluate(self, expression, seconds=30):
        """The expression's value (JSON-able), or AssertionError with the page's exception."""
        r = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                   "awaitPromise": True}, self.session, seconds)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise AssertionError("%s threw: %s" % (expression, d.get("exception", {}).get("description", d)))
        return r["result"].get("value")

    def screenshot(self, path, width=1280, height=1000):
        """The page as a PNG file at path, in a viewport of width x height."""
        self.browser.call("Emulation.setDeviceMetricsOverride",
                          {"width": width, "height": height, "deviceScaleFactor": 1,
                           "mobile": False}, self.session)
        data = self.browser.call("Page.captureScreenshot", {"format": "png"}, self.session)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def wait_for(self, expression, seconds=30, what=None):
        """Evaluates expression until its value is truthy (polling, within a deadline scaled by
        HERD_TIMEOUT_SCALE) and returns that value."""
        deadline = time.monotonic() + timeout(seconds)
        delay = 0.01
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s in the page" % (what or expression))
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


class Chromium:
    def __init__(self, folder):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self.profile = os.path.join(folder, "profile")
        self.log_path = os.path.join(folder, "chromium.log")
        self.ids = itertools.count(1)
        self.loop = asyncio.new_event_loop()
        self.socket = None
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([EXECUTABLE] + FLAGS + ["--user-data-dir=" + self.profile, "about:blank"],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            self.socket = self.loop.run_until_complete(asyncio.wait_for(self._connect(self._endpoint()), timeout(30)))
        except BaseException:
            self.close()
            raise

    def _endpoint(self):
        """ws://127.0.0.1:PORT/devtools/browser/ID, from the DevToolsActivePort file."""
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout(30)
        delay = 0.01
        while True:
            try:
                with open(path) as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[0].isdigit() and lines[1].startswith("/devtools/"):
                    return "ws://127.0.0.1:%s%s" % (lines[0], lines[1])
            except FileNotFoundError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError("chromium exited (%d) before it listened:\n%s"
                                     % (self.proc.returncode, self.log()))
            if time.monotonic() > deadline:
                raise AssertionError("chromium wrote no %s:\n%s" % (path, self.log()))
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    @staticmethod
    async def _connect(url):
        # Inside the loop: websockets 10 binds a connection to the loop running when it is made.
        return await websockets.connect(url, max_size=None, max_queue=None, ping_interval=None)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def call(self, method, params=None, session=None, seconds=30):
        """One DevTools command and its result; the events in between are let go."""
        return self.loop.run_until_complete(asyncio.wait_for(self._call(method, params, session), timeout(seconds)))

    async def _call(self, method, params, session):
        n = next(self.ids)
        message = {"id": n, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        await self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(await self.socket.recv())
            if reply.get("id") != n:
                continue  # an event
            if "error" in reply:
                raise AssertionError("DevTools %s failed: %s" % (method, reply["error"]))
            return reply["result"]

    def open(self, url):
        """A new tab at url (once its navigation is committed: its scripts may still run)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        nav = self.call("Page.navigate", {"url": url}, session)
        if nav.get("errorText"):
            raise AssertionError("chromium could not open %s: %s" % (url, nav["errorText"]))
        return Page(self, target, session)

    def close(self):
        if self.socket is None:
            self.proc.terminate()
        else:
            try:
                self.call("Browser.close", seconds=10)
            except Exception:
                pass  # it may close the socket before answering; it is killed below if need be
            try:
                self.loop.run_until_complete(self.socket.close())
            except Exception:
                pass
        try:
            self.proc.wait(timeout(15))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.loop.close()
