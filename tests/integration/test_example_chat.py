"""examples/chat for real: built against a temporary SDK install (its unit tests run first),
served by herd as its chat.json says (two workers, round-robin), and used from two pages in
headless Chromium, driven over the DevTools protocol (browser.py). Alice's page and Bob's
page join one room on sockets held by different workers; what one types reaches the other
(Context::publish across workers) with the label of the worker that sent it, as text (markup
in a message stays text); a message over 2000 bytes closes its socket with 4000; a bad nick
is refused with 400 before the handshake.
"""
import json
import os
import shutil
import sys
import tempfile
import unittest

import browser
import harness
import sdk_build

ROUNDS = 8  # how many times a page may join again to land on the other worker


@unittest.skipUnless(browser.EXECUTABLE, "chromium is not installed (scripts/test.sh installs it)")
class ChatExample(sdk_build.ExampleTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="herd-chat-")
        cleanup = [lambda: shutil.rmtree(cls.tmp, ignore_errors=True)]
        cls.cleanup = cleanup
        try:
            sdk = sdk_build.Sdk(os.path.join(cls.tmp, "sdk"))
            src, env = sdk.build_and_test_example("chat", "chat_test")

            cls.config = sdk_build.checked_config(src, os.path.join(src, "build", "libchat.so"), "chat.json")
            app = cls.config["apps"][0]
            # As the example ships it: each new connection goes to the next worker.
            if (app["workers"], app["balance"]) != (2, "round-robin"):
                raise AssertionError("chat.json should run 2 workers, round-robin: %s" % app)
            # As HerdTestCase.setUpClass, for an app named "chat".
            cls.failed = False
            cls.herd = harness.Herd(cls.config)
            cleanup.append(lambda: cls.herd.__exit__(AssertionError, None, None))
            cls.herd.start()
            cls.port = cls.herd.port("chat")
            cleanup.pop()

            cls.chromium = browser.Chromium(os.path.join(cls.tmp, "chromium"))
            cleanup.append(cls.chromium.close)
        except BaseException:
            cls.release()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.failed:
            sys.stderr.write("---- chromium log (the end) ----\n%s\n" % cls.chromium.log()[-4000:])
        super().tearDownClass()

    # -- helpers ----------------------------------------------------------------------------
    def url(self, query):
        return "http://127.0.0.1:%d/?%s" % (self.port, query)

    def welcomed(self, page, after=0):
        """The worker of the page's socket, once welcomed more than `after` times."""
        return page.wait_for("typeof chat === 'object' && chat.welcomes > %d && chat.worker !== null"
                             " ? {worker: chat.worker} : null" % after, what="the welcome")["worker"]

    def join(self, room, name):
        page = self.chromium.open(self.url("room=%s&name=%s" % (room, name)))
        return page, self.welcomed(page)

    def type(self, page, text):
        """Types text in the page's input and clicks send (the form clears the input)."""
        self.assertTrue(page.evaluate(
            "document.getElementById('text').value = %s; document.getElementById('send').click();"
            " document.getElementById('text').value === ''" % json.dumps(text)))

    def line(self, page, kind, sender, text, worker=None):
        """Waits for a line of that kind, sender and text in the page's log; returns it."""
        want = {"kind": kind, "from": sender, "text": text}
        if worker is not None:
            want["worker"] = "worker %d" % worker
        return page.wait_for(
            "(() => { const want = %s;"
            " for (const li of document.querySelectorAll('#log li')) {"
            "  const seen = {kind: li.className, worker: li.querySelector('.worker').textContent,"
            "    from: li.querySelector('.from').textContent, text: li.querySelector('.text').textContent,"
            "    elements: li.querySelector('.text').children.length};"
            "  if (Object.keys(want).every((k) => seen[k] === want[k])) return seen; }"
            " return null; })()" % json.dumps(want), what="%s %r from %s" % (kind, text[:40], sender))

    # -- tests ------------------------------------------------------------------------------
    def test_two_pages_on_two_workers_talk(self):
        alice, alice_worker = self.join("r", "alice")
        bob, bob_worker = self.join("r", "bob")
        # Round-robin hands each new connection to the next worker, but the browser opens
        # connections of its own (the pages, kept alive or not): Bob joins again, a connection
        # at a time, until his socket is on the other worker.
        for joined in range(1, ROUNDS + 1):
            if bob_worker != alice_worker:
                break
            bob.evaluate("chat.join(), true")
            bob_worker = self.welcomed(bob, after=joined)
        self.assertNotEqual(alice_worker, bob_worker, "both sockets stayed on one worker")
        status = "document.getElementById('status').textContent"
        self.assertIn("served by worker %d" % alice_worker, alice.evaluate(status))
        self.assertIn("served by worker %d" % bob_worker, bob.evaluate(status))
        # Bob's join, published by his worker, reached Alice's.
        self.line(alice, "join", "bob", "joined", bob_worker)

        hello = 'hello <img src=x onerror="window.pwned = 1"> & <b>bold</b> \u00e9'
        self.type(alice, hello)
        seen = self.line(bob, "message", "alice", hello, alice_worker)
        self.assertEqual(seen["elements"], 0)  # text, not markup
        self.line(alice, "message", "alice", hello, alice_worker)  # her own, back from the room

        reply = "hi alice \u2713"
        self.type(bob, reply)
        self.line(alice, "message", "bob", reply, bob_worker)
        for page in (alice, bob):
            self.assertEqual(page.evaluate("typeof window.pwned"), "undefined")
            self.assertEqual(page.evaluate("document.querySelectorAll('#log img, #log b').length"), 0)

    def test_a_message_over_2000_bytes_closes_with_4000(self):
        carol, _ = self.join("big", "carol")
        dave, _ = self.join("big", "dave")
        self.line(carol, "join", "dave", "joined")
        self.assertTrue(carol.evaluate("chat.send('y'.repeat(2000))"))
        self.line(dave, "message", "carol", "y" * 2000)
        self.assertTrue(carol.evaluate("chat.send('x'.repeat(2001))"))
        closed = carol.wait_for("chat.closed", what="the close")
        self.assertEqual(closed, {"code": 4000, "reason": "a message is at most 2000 bytes"})
        self.line(dave, "leave", "carol", "left")
        self.assertIsNone(dave.evaluate("chat.closed"))

    def test_bad_names_are_400_before_the_handshake(self):
        handshake = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        for query in ["room=r&name=a%20b", "room=&name=x", "room=r", "room=r&name=" + "n" * 33,
                      "room=r%3Cb%3E&name=x"]:
            with harness.Client(self.port) as c:
                r = c.request("GET", "/ws?" + query, handshake)
            self.assertEqual(r.status, 400, query)
            self.assertIn(b"1 to 32 characters", r.body)
        with harness.Client(self.port) as c:
            self.assertEqual(c.request("GET", "/ws?room=r&name=x").status, 426)
        # In the browser: the socket fails (the page sees 1006) and nobody joined.
        page = self.chromium.open(self.url("room=r&name=bad%20nick"))
        self.assertEqual(page.wait_for("typeof chat === 'object' && chat.closed", what="the refusal")["code"], 1006)
        self.assertEqual(page.evaluate("chat.welcomes"), 0)


if __name__ == "__main__":
    harness.main()
