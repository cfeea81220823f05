"""examples/notes-service for real: built against a temporary SDK install (its unit tests run
first), served by herd with two workers against a PostgreSQL and a redis-server of the test's
own and an upstream HTTP server in a thread. Every endpoint: a note created with a url stores
its page's <title> (seen in PostgreSQL) or, when the upstream fails, null and why; GET is
cached in Redis (the key seen there) and PUT/DELETE invalidate it; the list is newest first;
writes over writes_per_minute get 429; bad bodies 400 naming the field; PostgreSQL stopped is
a 503 naming it, and started again serves without restarting herd; Redis stopped leaves reads
served from PostgreSQL and refuses writes with a 503 naming it.
"""
import http.server
import json
import os
import shutil
import socketserver
import tempfile
import threading
import unittest

import harness
import pg_server
import sdk_build
from redis_server import RedisServer, free_port

PASSWORD = "notes-pw-5e1c"
WORKERS = 2
WRITES_PER_MINUTE = 6
CACHE_TTL_MS = 60000
PAGE = b"<!doctype html><html><head><title>\n  The Upstream &amp; Co </title></head><body>hi</body></html>"


class Upstream(http.server.BaseHTTPRequestHandler):
    """/page: a page with a <title>; /missing: 404; /slow: no answer until the test ends."""
    release = threading.Event()

    def do_GET(self):
        if self.path == "/slow":
            Upstream.release.wait(harness.timeout(30))
            return
        status, body = (200, PAGE) if self.path == "/page" else (404, b"not here")
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


@unittest.skipUnless(pg_server.available() and shutil.which("redis-server") and shutil.which("redis-cli"),
                     "postgresql or redis-server is not installed (scripts/setup.sh installs them)")
class NotesService(sdk_build.ExampleTestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="herd-notes-")
        cleanup = [lambda: shutil.rmtree(cls.tmp, ignore_errors=True)]
        cls.cleanup = cleanup
        try:
            sdk = sdk_build.Sdk(os.path.join(cls.tmp, "sdk"))
            src, env = sdk.build_and_test_example("notes-service", "notes_test")

            # Its own temp dir: PgServer hands it to the postgres user, and cls.tmp is root's.
            pg_folder = tempfile.mkdtemp(prefix="herd-notes-pg-")
            cleanup.append(lambda: shutil.rmtree(pg_folder, ignore_errors=True))
            cls.pg = pg_server.PgServer(free_port(), pg_folder, PASSWORD)
            cls.pg.start()
            cleanup.append(cls.pg.stop)
            sdk_build.run(["psql", "-h", pg_folder, "-p", str(cls.pg.port), "-U", "app", "-d", "postgres",
                           "-XqA", "-v", "ON_ERROR_STOP=1", "-f", os.path.join(src, "schema.sql")])

            redis_folder = os.path.join(cls.tmp, "redis")
            os.mkdir(redis_folder)
            cls.redis = RedisServer(free_port(), redis_folder)
            cls.redis.start()
            cleanup.append(cls.redis.stop)

            cls.upstream = ThreadingServer(("127.0.0.1", 0), Upstream)
            threading.Thread(target=cls.upstream.serve_forever, daemon=True).start()
            cleanup.append(cls.upstream.shutdown)
            cleanup.append(Upstream.release.set)  # before shutdown: a /slow handler returns
            cls.origin = "http://127.0.0.1:%d" % cls.upstream.server_address[1]

            cls.config = sdk_build.checked_config(
                src, os.path.join(src, "build", "libnotes.so"), postgres=cls.pg.url(),
                redis="redis://127.0.0.1:%d/0" % cls.redis.port, writes_per_minute=WRITES_PER_MINUTE,
                cache_ttl_ms=CACHE_TTL_MS, fetch_timeout_ms=500)
            # Each new connection to the next worker: WORKERS requests in a row on fresh
            # connections reach every worker (see recovered()).
            cls.config["apps"][0]["workers"] = WORKERS
            cls.config["apps"][0]["balance"] = "round-robin"
            # As HerdTestCase.setUpClass, for an app named "notes".
            cls.failed = False
            cls.herd = harness.Herd(cls.config)
            cleanup.append(lambda: cls.herd.__exit__(AssertionError, None, None))
            cls.herd.start()
            cls.port = cls.herd.port("notes")
            cleanup.pop()
        except BaseException:
            cls.release()
            raise

    # -- helpers ----------------------------------------------------------------------------
    def call(self, method, target, body=None, client=None):
        """One request; the response with .json parsed when there is a body."""
        headers = {"X-Forwarded-For": client or self._testMethodName}
        if body is not None:
            headers["Content-Type"] = "application/json"
        c = harness.Client(self.port)
        try:
            if body is None:
                body = b""
            elif not isinstance(body, (str, bytes)):
                body = json.dumps(body)
            r = c.request(method, target, headers, body)
        finally:
            c.close()
        r.json = json.loads(r.body) if r.body else None
        return r

    def recovered(self, succeeds, what):
        """Waits until `succeeds()` holds WORKERS times in a row: every worker is past the
        outage (each has its own connections and back-off)."""
        harness.wait_until(lambda: all(succeeds() for _ in range(WORKERS)), seconds=30, what=what)

    def create(self, **note):
        note.setdefault("body", "text")
        r = self.call("POST", "/notes", note)
        self.assertEqual(r.status, 201, r.body)
        return r.json

    # -- tests ------------------------------------------------------------------------------
    def test_a_url_s_page_title_is_stored(self):
        note = self.create(title="read", url=self.origin + "/page")
        self.assertEqual(note["url_title"], "The Upstream & Co")
        self.assertNotIn("url_title_error", note)
        self.assertEqual(note["url"], self.origin + "/page")
        self.assertEqual(self.pg.psql("SELECT url_title FROM notes WHERE id = %d" % note["id"]),
                         "The Upstream & Co")
        self.assertEqual(self.pg.psql("SELECT title || '|' || body FROM notes WHERE id = %d" % note["id"]),
                         "read|text")

    def test_an_upstream_failure_is_not_fatal(self):
        nothing = "http://127.0.0.1:%d/" % free_port()  # nobody listens there
        cases = [(self.origin + "/missing", "answered 404"),
                 (self.origin + "/slow", "within 500 ms"),  # fetch_timeout_ms
                 (nothing, "cannot connect to 127.0.0.1"),
                 ("https://127.0.0.1/", "only http://")]
        for url, why in cases:
            note = self.create(title="fails", url=url)
            self.assertIsNone(note["url_title"], url)
            self.assertIn(why, note["url_title_error"], url)
            self.assertEqual(self.pg.psql("SELECT url_title IS NULL AND url = '%s' FROM notes WHERE id = %d"
                                          % (url, note["id"])), "t")

    def test_reads_are_cached_and_writes_invalidate(self):
        note = self.create(title="cached")
        key = "notes:note:%d" % note["id"]
        target = "/notes/%d" % note["id"]
        first = self.call("GET", target)
        self.assertEqual((first.status, first.header("X-Cache")), (200, "miss"))
        self.assertEqual(first.json, {k: v for k, v in note.items()})
        self.assertEqual(json.loads(self.redis.cli("GET", key)), note)
        self.assertTrue(0 < int(self.redis.cli("PTTL", key)) <= CACHE_TTL_MS)
        second = self.call("GET", target)
        self.assertEqual((second.status, second.header("X-Cache")), (200, "hit"))
        self.assertEqual(second.body, first.body)

        updated = self.call("PUT", target, {"title": "changed", "body": "new"})
        self.assertEqual(updated.status, 200, updated.body)
        self.assertEqual((updated.json["title"], updated.json["id"]), ("changed", note["id"]))
        self.assertEqual(self.redis.cli("EXISTS", key), "0")
        third = self.call("GET", target)
        self.assertEqual((third.status, third.header("X-Cache")), (200, "miss"))
        self.assertEqual(third.json["body"], "new")
        self.assertEqual(self.redis.cli("EXISTS", key), "1")

        self.assertEqual(self.call("DELETE", target).status, 204)
        self.assertEqual(self.redis.cli("EXISTS", key), "0")
        self.assertEqual(self.call("GET", target).status, 404)
        self.assertEqual(self.call("DELETE", target).status, 404)
        self.assertEqual(self.call("PUT", target, {"title": "t", "body": ""}).status, 404)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM notes WHERE id = %d" % note["id"]), "0")

    def test_the_list_is_newest_first(self):
        ids = [self.create(title="list %d" % i)["id"] for i in range(3)]
        r = self.call("GET", "/notes?limit=2")
        self.assertEqual(r.status, 200)
        self.assertEqual([n["id"] for n in r.json["notes"]], ids[:0:-1])
        everything = self.call("GET", "/notes").json["notes"]
        self.assertEqual(len(everything), min(20, int(self.pg.psql("SELECT count(*) FROM notes"))))

    def test_writes_over_the_limit_are_429(self):
        for i in range(WRITES_PER_MINUTE):
            self.create(title="burst %d" % i)
        before = self.pg.psql("SELECT count(*) FROM notes")
        over = self.call("POST", "/notes", {"title": "one too many", "body": ""})
        self.assertEqual(over.status, 429, over.body)
        self.assertTrue(1 <= int(over.header("Retry-After")) <= 60)
        self.assertEqual(self.call("DELETE", "/notes/1").status, 429)  # every write counts
        self.assertEqual(self.pg.psql("SELECT count(*) FROM notes"), before)
        key = "notes:writes:" + self._testMethodName
        self.assertEqual(self.redis.cli("GET", key), str(WRITES_PER_MINUTE + 2))
        self.assertTrue(0 < int(self.redis.cli("PTTL", key)) <= 60000)
        # Reads are not limited, and another client has its own budget.
        self.assertEqual(self.call("GET", "/notes?limit=1").status, 200)
        self.assertEqual(self.call("POST", "/notes", {"title": "t", "body": ""}, client="elsewhere").status, 201)

    def test_bad_requests_name_the_field(self):
        for body, field in [("{oops", ""), ("[]", ""), ({"body": "b"}, "title"),
                            ({"title": 3, "body": "b"}, "title"), ({"title": "t"}, "body"),
                            ({"title": "t", "body": "b", "url": 5}, "url")]:
            r = self.call("POST", "/notes", body)
            self.assertEqual(r.status, 400, body)
            self.assertEqual(r.header("Content-Type"), "application/json")
            self.assertEqual(r.json["field"], field, body)
            self.assertIn(field, r.json["error"])
        self.assertEqual(self.call("GET", "/notes?limit=500").json["field"], "limit")
        self.assertEqual(self.call("GET", "/notes/zero").status, 404)
        self.assertEqual(self.call("PATCH", "/notes").status, 405)
        self.assertEqual(self.redis.cli("EXISTS", "notes:writes:" + self._testMethodName), "0")  # not counted

    def test_postgres_stopped_is_503_and_started_again_serves(self):
        note = self.create(title="survives")
        target = "/notes/%d" % note["id"]
        self.assertEqual(self.call("GET", target).header("X-Cache"), "miss")  # now cached
        self.pg.stop()
        try:
            for method, path, body in [("GET", "/notes", None), ("POST", "/notes", {"title": "t", "body": ""}),
                                       ("DELETE", "/notes/%d" % (note["id"] + 100000), None)]:
                r = self.call(method, path, body)
                self.assertEqual(r.status, 503, (method, path, r.body))
                self.assertEqual(r.json["dependency"], "postgres")
                self.assertIn("postgres is unavailable", r.json["error"])
                self.assertNotIn(PASSWORD, r.json["error"])
            cached = self.call("GET", target)  # the cache answers without PostgreSQL
            self.assertEqual((cached.status, cached.header("X-Cache")), (200, "hit"))
        finally:
            self.pg.start()
        self.recovered(lambda: self.call("GET", "/notes?limit=1").status == 200,
                       "every worker to use PostgreSQL again")
        self.assertEqual(self.create(title="after")["title"], "after")

    def test_redis_stopped_reads_go_on_and_writes_are_503(self):
        note = self.create(title="no cache")
        target = "/notes/%d" % note["id"]
        before = self.pg.psql("SELECT count(*) FROM notes")
        self.redis.stop()
        try:
            for _ in range(2):
                r = self.call("GET", target)
                self.assertEqual((r.status, r.header("X-Cache")), (200, "bypass"), r.body)
                self.assertEqual(r.json["title"], "no cache")
            w = self.call("POST", "/notes", {"title": "t", "body": ""})
            self.assertEqual(w.status, 503, w.body)
            self.assertEqual(w.json["dependency"], "redis")
            self.assertEqual(self.pg.psql("SELECT count(*) FROM notes"), before)  # not stored
        finally:
            self.redis.start()
        self.recovered(lambda: self.call("POST", "/notes", {"title": "back", "body": ""}).status == 201,
                       "every worker to use Redis again")
        self.assertEqual(self.call("GET", target).header("X-Cache"), "miss")
        self.assertEqual(self.call("GET", target).header("X-Cache"), "hit")


if __name__ == "__main__":
    harness.main()
