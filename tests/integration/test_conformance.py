"""HTTP conformance of the request side, case by case from the RFC text: what RFC 9112
(HTTP/1.1) and RFC 9110 (HTTP semantics) require of a server that receives a request, and the
response rules that go with it. Each test names its section; the README's "HTTP conformance"
table lists the same rules. Malformed requests go over raw sockets, byte for byte.

A refused request is followed, in the same send, by a request for /smuggled: it must never be
answered (the connection closes after the refusal)."""
import json
import select
import socket

import harness
from harness import Client

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
CHUNKED_HEAD = b"POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


class TestConformance(harness.HerdTestCase):
    # echo at the root reflects what a plugin sees; hello answers 405 to other methods.
    config = {"apps": [harness.app(
        workers=1,
        plugins=[{"mount": "/", "path": harness.plugin("echo")},
                 {"mount": "/hello", "path": harness.plugin("hello")}])]}

    # -- helpers ----------------------------------------------------------------------------
    def exchange(self, raw, head=False):
        """Sends raw bytes on a new connection; returns (client, first response)."""
        c = self.client()
        c.send(raw)
        return c, c.read_response(head_only=head)

    def served(self, raw):
        """The request as the echo plugin saw it; the connection must stay usable."""
        c, r = self.exchange(raw)
        self.assertEqual(r.status, 200, "refused: %r\nrequest: %r" % (r, raw))
        self.assertEqual(r.header("Content-Type"), "application/json", r)
        seen = json.loads(r.body)
        if r.header("Connection") != "close":
            again = c.request("GET", "/after")
            self.assertEqual(again.status, 200)
        return seen

    def refused(self, raw, status, head=False):
        """raw must be answered with `status`, "Connection: close", then the connection closes
        and whatever followed in the same send is never answered. Returns the response."""
        c, r = self.exchange(raw + SMUGGLED, head=head)
        self.assertEqual(r.status, status, "request: %r\nresponse: %r %r" % (raw, r, r.body))
        self.assertEqual(r.header("Connection"), "close", r)
        self.assertTrue(c.closed_by_server(), "the connection stayed open")
        self.assertEqual(c.buf, b"", "more was sent after the refusal")
        return r

    # -- RFC 9112 2.2, 3: the request line ----------------------------------------------------
    def test_empty_lines_before_the_request_line_are_ignored(self):
        # 2.2: a server SHOULD ignore at least one empty line before the request line.
        self.assertEqual(self.served(b"\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n")["path"], "/x")

    def test_whitespace_before_the_first_field_is_refused(self):
        # 2.2: MUST reject, or ignore each line that starts with whitespace.
        self.refused(b"GET / HTTP/1.1\r\n Host: x\r\nHost: x\r\n\r\n", 400)

    def test_bare_cr_is_refused(self):
        # 2.2: a bare CR MUST be treated as invalid (or replaced by SP).
        self.refused(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400)
        self.refused(b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400)

    def test_bare_lf_is_refused(self):
        # 2.2 lets a recipient accept a bare LF; herd refuses it (a front end may not).
        self.refused(b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400)
        self.refused(b"GET / HTTP/1.1\r\nHost: x\n\r\n", 400)

    def test_protocol_name_is_http_case_sensitive(self):
        # 2.3: HTTP-name is %s"HTTP"; anything else is an invalid request line (400).
        for version in (b"http/1.1", b"RTSP/1.0", b"HTTP/1.10", b"HTTP/1", b"HTTP/11.1", b"HTTP/1.1x"):
            with self.subTest(version):
                self.refused(b"GET / " + version + b"\r\nHost: x\r\n\r\n", 400)

    def test_higher_minor_version_is_served_as_http11(self):
        # RFC 9110 6.2: a higher minor version SHOULD be processed as the highest minor
        # version of that major version the recipient implements; the response is HTTP/1.1.
        for version in (b"HTTP/1.2", b"HTTP/1.9"):
            with self.subTest(version):
                c, r = self.exchange(b"GET /v " + version + b"\r\nHost: x\r\n\r\n")
                self.assertEqual((r.version, r.status), ("HTTP/1.1", 200), r)
                self.assertEqual(json.loads(r.body)["version"], "1.1")
                self.assertIsNone(r.header("Connection"))  # persistent, as 1.1
                self.assertEqual(c.request("GET", "/after").status, 200)

    def test_other_major_versions_are_505(self):
        # RFC 9110 6.2, 15.6.6: 505 for a major version the server does not support.
        for version in (b"HTTP/2.0", b"HTTP/3.0", b"HTTP/0.9", b"HTTP/9.9"):
            with self.subTest(version):
                r = self.refused(b"GET / " + version + b"\r\nHost: x\r\n\r\n", 505)
                self.assertEqual(r.version, "HTTP/1.1")

    def test_http2_preface_is_505(self):
        # The HTTP/2 connection preface (RFC 9113 3.4) on this HTTP/1.1 port.
        self.refused(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505)

    def test_unknown_methods_are_501(self):
        # RFC 9110 9.1 / RFC 9112 3.1: an unrecognized method SHOULD get 501; methods are
        # case-sensitive ("get" is not GET); a method longer than any implemented: 501.
        for method in (b"FOO", b"get", b"GE", b"HEADX", b"X" * 40, b"PLAY"):
            with self.subTest(method):
                self.refused(method + b" / HTTP/1.1\r\nHost: x\r\n\r\n", 501)

    def test_a_method_that_is_not_a_token_is_400(self):
        for method in (b"G@T", b"GET\x00", b"(GET)"):
            with self.subTest(method):
                self.refused(method + b" / HTTP/1.1\r\nHost: x\r\n\r\n", 400)
        self.refused(b" GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400)

    def test_extension_methods_llhttp_knows_reach_the_plugin(self):
        for method in (b"PATCH", b"PURGE", b"PROPFIND"):
            with self.subTest(method):
                self.assertEqual(self.served(method + b" / HTTP/1.1\r\nHost: x\r\n\r\n")["method"],
                                 method.decode())

    # -- RFC 9112 3.2: the request target ------------------------------------------------------
    def test_asterisk_form_only_with_options(self):
        # 3.2.4: "*" is only used for a server-wide OPTIONS; herd passes it to the plugin
        # mounted at "/" with the path "*".
        seen = self.served(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual((seen["method"], seen["target"], seen["path"]), ("OPTIONS", "*", "*"))
        self.refused(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400)
        self.refused(b"OPTIONS *x HTTP/1.1\r\nHost: x\r\n\r\n", 400)

    def test_fragment_in_the_target_is_400(self):
        # 3.2: request-target has no fragment; an invalid request line SHOULD get 400.
        self.refused(b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n", 400)

    def test_absolute_form_is_accepted_and_its_authority_replaces_host(self):
        # 3.2.2: a server MUST accept the absolute-form; an origin server MUST ignore the
        # received Host and use the target's authority instead.
        seen = self.served(b"GET http://a.example:8080/p/q?x=1 HTTP/1.1\r\nHost: b.example\r\n\r\n")
        self.assertEqual((seen["path"], seen["query"]), ("/p/q", "x=1"))
        self.assertEqual(seen["headers"], [["Host", "a.example:8080"]])
        seen = self.served(b"GET HTTPS://[::1]/ HTTP/1.1\r\nHost: b\r\n\r\n")
        self.assertEqual(seen["headers"], [["Host", "[::1]"]])
        # HTTP/1.0 needs no Host: the target's authority is the request's host all the same.
        seen = self.served(b"GET http://a.example/p HTTP/1.0\r\n\r\n")
        self.assertEqual(seen["headers"], [["Host", "a.example"]])

    def test_absolute_form_refusals(self):
        # RFC 9110 4.2.1: an http(s) URI with an empty host MUST be rejected; 4.2.4: userinfo
        # SHOULD be treated as an error; herd serves http and https only.
        self.refused(b"GET http:///p HTTP/1.1\r\nHost: x\r\n\r\n", 400)
        self.refused(b"GET http://:80/p HTTP/1.1\r\nHost: x\r\n\r\n", 400)
        self.refused(b"GET http://user@a.example/p HTTP/1.1\r\nHost: x\r\n\r\n", 400)
        self.refused(b"GET ftp://a.example/p HTTP/1.1\r\nHost: x\r\n\r\n", 400)
        # 3.2: an HTTP/1.1 request without Host is refused, absolute-form or not.
        self.refused(b"GET http://a.example/p HTTP/1.1\r\n\r\n", 400)

    def test_authority_form_without_connect_is_400(self):
        # 3.2.3: the authority-form is only used for CONNECT.
        self.refused(b"GET a.example:80 HTTP/1.1\r\nHost: x\r\n\r\n", 400)

    def test_connect_is_501_and_never_a_tunnel(self):
        # RFC 9110 9.3.6: any 2xx to CONNECT means the tunnel is open; herd opens none.
        for target in (b"a.example:443", b"/p"):
            with self.subTest(target):
                self.refused(b"CONNECT " + target + b" HTTP/1.1\r\nHost: a.example:443\r\n\r\n", 501)

    # -- RFC 9112 3.2, RFC 9110 7.2: Host ------------------------------------------------------
    def test_http11_without_host_is_400(self):
        self.refused(b"GET / HTTP/1.1\r\n\r\n", 400)
        self.refused(b"GET / HTTP/1.1\r\nX-Host: x\r\n\r\n", 400)

    def test_http10_without_host_is_served(self):
        self.assertEqual(self.served(b"GET /ten HTTP/1.0\r\n\r\n")["path"], "/ten")

    def test_more_than_one_host_is_400(self):
        for version in (b"HTTP/1.1", b"HTTP/1.0"):
            with self.subTest(version):
                self.refused(b"GET / " + version + b"\r\nHost: a\r\nHost: a\r\n\r\n", 400)
                self.refused(b"GET / " + version + b"\r\nHost: a\r\nhost: b\r\n\r\n", 400)
        self.refused(b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400)

    def test_invalid_host_is_400(self):
        for host in (b"a b", b"a/b", b"u@a", b"a:b", b"a:80:80", b"[::1", b"a\"b", b":80", b"a%zz",
                     b"a.example:80x"):
            with self.subTest(host):
                self.refused(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", 400)

    def test_valid_hosts_are_served(self):
        # An empty Host is what a client sends when the target has no authority (3.2).
        for host in (b"", b"a.example", b"a.example:8080", b"a.example:", b"127.0.0.1:80",
                     b"[::1]:8080", b"[v1.x]", b"xn--bcher-kva.example", b"a_b~c!$&'()*+,;=%41"):
            with self.subTest(host):
                seen = self.served(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
                self.assertEqual(seen["headers"], [["Host", host.decode()]])

    # -- RFC 9112 5, RFC 9110 5: fields ------------------------------------------------------
    def test_whitespace_between_name_and_colon_is_400(self):
        # 5.1: a server MUST reject with 400.
        self.refused(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400)
        self.refused(b"GET / HTTP/1.1\r\nHost: x\r\nX\t: y\r\n\r\n", 400)

    def test_obs_fold_is_400(self):
        # 5.2: MUST reject with 400 or replace each obs-fold by SP; herd refuses.
        self.refused(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400)
        self.refused(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n\tb\r\n\r\n", 400)
        # The folded line must never be read as a field of its own.
        self.refused(b"POST / HTTP/1.1\r\nHost: x\r\n Content-Length: 5\r\n\r\nhello", 400)

    def test_nul_cr_lf_in_a_value_are_400(self):
        # RFC 9110 5.5: MUST reject or replace with SP.
        self.refused(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400)
        self.refused(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", 400)

    def test_obs_text_in_a_value_is_accepted(self):
        # RFC 9110 5.5: field-vchar includes obs-text (0x80-0xFF).
        c, r = self.exchange(b"GET /hello HTTP/1.1\r\nHost: x\r\nX: caf\xe9\r\n\r\n")
        self.assertEqual(r.status, 200)

    def test_field_name_must_be_a_token(self):
        for name in (b"X@Y", b"X\xe9", b"", b"X(Y)"):
            with self.subTest(name):
                self.refused(b"GET / HTTP/1.1\r\nHost: x\r\n" + name + b": v\r\n\r\n", 400)

    # -- RFC 9112 6: message body length -----------------------------------------------------
    def test_content_length_and_transfer_encoding_together_are_400(self):
        # 6.3: MAY reject; the connection MUST close after responding. herd refuses.
        self.refused(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)

    def test_invalid_or_conflicting_content_length_is_400(self):
        # 6.3 (5): differing values or an invalid value: 400, then close.
        for value in (b"-1", b"+5", b"0x5", b"", b"5 5", b"5, 6", b"99999999999999999999"):
            with self.subTest(value):
                self.refused(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + value +
                             b"\r\n\r\nhello", 400)
        self.refused(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
                     b"hello!", 400)
        # RFC 9110 8.6: identical repeated values MAY be accepted or refused; herd refuses.
        self.refused(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", 400)

    def test_content_length_with_leading_zeros_is_valid(self):
        seen = self.served(b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 005\r\n\r\nhello")
        self.assertEqual(seen["body"], "hello")

    def test_transfer_encoding_in_http10_is_400(self):
        # 6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as having faulty
        # framing, then the connection closed.
        self.refused(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                     400)

    def test_chunked_not_last_is_400(self):
        # 6.3 (4): MUST respond 400 and close.
        for value in (b"chunked, gzip", b"gzip", b"identity"):
            with self.subTest(value):
                self.refused(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + value +
                             b"\r\n\r\n0\r\n\r\n", 400)

    def test_unknown_coding_before_chunked_is_501(self):
        # 6.1: a transfer coding the server does not understand SHOULD get 501.
        self.refused(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                     b"0\r\n\r\n", 501)

    def test_transfer_encoding_list_with_empty_elements(self):
        # RFC 9110 5.6.1: a recipient MUST accept empty list elements.
        seen = self.served(b"POST /te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,chunked\r\n\r\n"
                           b"5\r\nhello\r\n0\r\n\r\n")
        self.assertEqual(seen["body"], "hello")

    def test_incomplete_body_is_never_processed(self):
        # 6.3: a body cut short by the client's close is incomplete: no response, closed.
        c = self.client()
        c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        c.sock.shutdown(socket.SHUT_WR)
        self.assertTrue(c.closed_by_server())
        self.assertEqual(c.buf, b"")

    # -- RFC 9112 7: chunked -----------------------------------------------------------------
    def test_chunk_extensions_are_ignored(self):
        # 7.1.1: a recipient MUST ignore unrecognized chunk extensions, and must parse
        # them as the grammar has them: BWS, token or quoted-string values, quoted pairs.
        for line in (b"5;a", b"5;a=b", b"5;a=b;c=d", b"5;a=\"b;c\"", b"5 ;a", b"5; a = b ; c",
                     b"5;a=\"q\\\"x\"", b"5;a=\"\t\x80\"", b"5;a;b;c=d;e=\"f\""):
            with self.subTest(line):
                seen = self.served(CHUNKED_HEAD.replace(b"/body", b"/ext") + line +
                                   b"\r\nhello\r\n0;last=1\r\n\r\n")
                self.assertEqual(seen["body"], "hello")

    def test_malformed_chunks_are_400(self):
        for framing in (b"5;\r\nhello\r\n0\r\n\r\n", b"5 \r\nhello\r\n0\r\n\r\n",
                        b"5;a=\r\nhello\r\n0\r\n\r\n", b"5;a=\"b\r\nhello\r\n0\r\n\r\n",
                        b"5;a b\r\nhello\r\n0\r\n\r\n", b"5;a=b c\r\nhello\r\n0\r\n\r\n",
                        b";a\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloX\r\n0\r\n\r\n",
                        b"5\nhello\r\n0\r\n\r\n", b"5\r\nhello\n0\r\n\r\n", b"5\rhello\r\n0\r\n\r\n",
                        b"1000000000000000000\r\n", b"0\r\n\n"):
            with self.subTest(framing):
                self.refused(CHUNKED_HEAD + framing, 400)

    def test_trailer_fields_are_not_merged_into_the_header_section(self):
        # RFC 9110 6.5.1: a recipient MUST NOT merge a trailer field into the header section
        # unless its definition allows it; herd discards trailers.
        seen = self.served(CHUNKED_HEAD + b"5\r\nhello\r\n0\r\nX-Trailer: t\r\nHost: evil\r\n"
                           b"Content-Length: 99\r\n\r\n")
        self.assertEqual(seen["body"], "hello")
        self.assertEqual(seen["headers"], [["Host", "x"], ["Transfer-Encoding", "chunked"]])

    def test_malformed_trailers_are_400(self):
        for trailer in (b"X : t\r\n", b"X: a\r\n b\r\n", b" X: t\r\n", b"X: a\x00b\r\n",
                        b"X\r\n", b"X: t\n"):
            with self.subTest(trailer):
                self.refused(CHUNKED_HEAD + b"0\r\n" + trailer + b"\r\n", 400)

    # -- RFC 9110 10.1.1: Expect -----------------------------------------------------------
    def test_unknown_expectation_is_417(self):
        # A server MAY answer 417 to an expectation other than 100-continue; herd does.
        for value in (b"foo", b"100-continue, foo", b"100-continue=1", b"200-ok"):
            with self.subTest(value):
                self.refused(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: " + value +
                             b"\r\nContent-Length: 2\r\n\r\nhi", 417)

    def test_100_continue_is_case_insensitive_and_a_list(self):
        for value in (b"100-Continue", b", 100-continue", b"100-continue ,"):
            with self.subTest(value):
                c = self.client()
                c.send(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: " + value +
                       b"\r\nContent-Length: 2\r\n\r\n")
                r = c.read_response()
                self.assertEqual((r.status, r.headers), (100, []))
                c.send(b"hi")
                self.assertEqual(json.loads(c.read_response().body)["body"], "hi")

    def test_100_continue_before_a_chunked_body(self):
        c = self.client()
        c.send(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        self.assertEqual(c.read_response().status, 100)
        c.send(b"2\r\nhi\r\n0\r\n\r\n")
        self.assertEqual(json.loads(c.read_response().body)["body"], "hi")

    def test_pipelined_chunked_requests(self):
        c = self.client()
        c.send(CHUNKED_HEAD + b"1;a=b;c=d\r\nx\r\n0\r\n\r\n" + CHUNKED_HEAD +
               b"2\r\nyz\r\n0\r\nT: 1\r\n\r\nGET /third HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(json.loads(c.read_response().body)["body"], "x")
        self.assertEqual(json.loads(c.read_response().body)["body"], "yz")
        self.assertEqual(json.loads(c.read_response().body)["path"], "/third")

    def test_no_100_continue_to_http10(self):
        # 10.1.1: a 100-continue expectation in HTTP/1.0 MUST be ignored (and RFC 9110 15.2:
        # no 1xx to an HTTP/1.0 client). Absence needs a bounded wait: 0.5 s.
        c = self.client()
        c.send(b"POST /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        readable, _, _ = select.select([c.sock], [], [], harness.timeout(0.5))
        self.assertEqual(c.sock.recv(100) if readable else b"", b"")
        c.send(b"hi")
        self.assertEqual(json.loads(c.read_response().body)["body"], "hi")

    # -- RFC 9112 9: connection management --------------------------------------------------
    def test_close_option_in_a_list(self):
        # 9.6: a "close" connection option: close after the response, process nothing more.
        for value in (b"foo, close", b"close, keep-alive", b",close"):
            with self.subTest(value):
                self.refused_like_close(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: " + value +
                                        b"\r\n\r\n")

    def refused_like_close(self, raw):
        c, r = self.exchange(raw + SMUGGLED)
        self.assertEqual((r.status, r.header("Connection")), (200, "close"))
        self.assertTrue(c.closed_by_server())
        self.assertEqual(c.buf, b"")

    def test_upgrade_in_http10_is_ignored(self):
        # RFC 9110 7.8: a server MUST ignore an Upgrade header field in an HTTP/1.0 request:
        # a keep-alive HTTP/1.0 request stays a keep-alive request.
        c, r = self.exchange(b"GET /u HTTP/1.0\r\nConnection: Upgrade, keep-alive\r\n"
                             b"Upgrade: websocket\r\n\r\n")
        self.assertEqual((r.status, r.header("Connection")), (200, "keep-alive"))
        r = c.request("GET", "/after", version="HTTP/1.0", headers={"Connection": "keep-alive"})
        self.assertEqual(r.status, 200)

    # -- responses ----------------------------------------------------------------------------
    def test_no_content_in_any_response_to_head(self):
        # RFC 9110 9.3.2: the server MUST NOT send content in the response to HEAD: herd's own
        # refusals included.
        for raw, status in ((b"HEAD / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
                            (b"HEAD / HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\n", 413),
                            (b"HEAD / HTTP/1.1\r\n\r\n", 400),
                            (b"HEAD / HTTP/1.1\r\nHost: x\r\nExpect: foo\r\n\r\n", 417),
                            (b"HEAD /" + b"a" * (9 << 10) + b" HTTP/1.1\r\n\r\n", 414)):
            with self.subTest(status):
                c, r = self.exchange(raw, head=True)
                self.assertEqual(r.status, status)
                self.assertIsNotNone(r.header("Content-Length"))
                self.assertTrue(c.closed_by_server())
                self.assertEqual(c.buf, b"", "a response to HEAD carried content")
        c, r = self.exchange(b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", head=True)
        self.assertEqual((r.status, r.header("Content-Length")), (200, "13"))
        self.assertEqual(c.request("GET", "/hello").body, b"Hello, World!")

    def test_date_and_version_in_every_response(self):
        # RFC 9110 6.6.1: Date in 2xx, 3xx, 4xx from a server with a clock; 6.2: the response
        # is HTTP/1.1 (the highest version herd conforms to), HTTP/1.0 request or not.
        for raw in (b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"):
            c, r = self.exchange(raw)
            self.assertEqual(r.version, "HTTP/1.1")
            self.assertIsNotNone(r.header("Date"))


if __name__ == "__main__":
    harness.main()
