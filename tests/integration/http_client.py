"""HTTP over plain sockets for the integration tests, seeing exactly what herd sends: Client (one
connection: raw bytes out, responses read one at a time), Response, get(), burst() (many
connections at once) and KeepAliveLoad (clients back to back until stopped). harness
re-exports them: `harness.Client`, `from harness import Client` keep working."""
import socket
import threading

from timeouts import timeout


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.chunks = None  # for a chunked body: its pieces as sent
        self.version, self.status, self.reason = version, status, reason
        self.headers, self.body = headers, body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:80])


class Client:
    """One TCP connection; send raw bytes, read responses one at a time."""

    def __init__(self, port, host="127.0.0.1", seconds=10):
        self.sock = socket.create_connection((host, port), timeout=timeout(seconds))
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by server")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("latin-1")

    def read_response(self, head_only=False):
        status_line = self._line()
        version, status, reason = (status_line.split(" ", 2) + [""])[:3]
        headers = []
        while True:
            line = self._line()
            if line == "":
                break
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
        resp = Response(version, int(status), reason, headers, b"")
        if head_only or resp.status in (100, 204, 304):
            return resp
        length = resp.header("Content-Length")
        if resp.header("Transfer-Encoding") == "chunked":
            resp.body, resp.chunks = self._read_chunked()
            return resp
        if length is None:
            # Close-delimited (HTTP/1.0 streaming): the body runs to the end of the stream.
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
            resp.body, self.buf = self.buf, b""
            return resp
        n = int(length)
        while len(self.buf) < n:
            self._fill()
        resp.body, self.buf = self.buf[:n], self.buf[n:]
        return resp

    def _read_chunked(self):
        """A chunked body: (the body, the list of its chunks); raises on bad framing."""
        chunks = []
        while True:
            size_line = self._line()
            size = int(size_line.split(";")[0], 16)
            while len(self.buf) < size + 2:
                self._fill()
            data, crlf, self.buf = self.buf[:size], self.buf[size:size + 2], self.buf[size + 2:]
            if size == 0:
                if data + crlf != b"\r\n":  # no trailers from herd
                    raise AssertionError("bad end of a chunked body: %r" % (data + crlf))
                return b"".join(chunks), chunks
            if crlf != b"\r\n":
                raise AssertionError("chunk of %d bytes not followed by CRLF" % size)
            chunks.append(data)

    def request(self, method="GET", target="/", headers=None, body=b"", version="HTTP/1.1"):
        if isinstance(body, str):
            body = body.encode()
        lines = ["%s %s %s" % (method, target, version), "Host: 127.0.0.1"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in (headers or {})):
            lines.append("Content-Length: %d" % len(body))
        self.send("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        return self.read_response(head_only=(method == "HEAD"))

    def closed_by_server(self):
        """True when the server closed the connection (EOF after any buffered bytes)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get(port, target="/", **kw):
    with Client(port) as c:
        return c.request("GET", target, **kw)


def burst(port, threads, per_thread, target="/probe/pid"):
    """Starts `threads` threads, each sending `per_thread` requests on new connections
    (Connection: close). Returns (threads, results, errors, lock); results collects
    (status, body) as answers come; join the threads to wait for all."""
    results, errors = [], []
    lock = threading.Lock()

    def run():
        for _ in range(per_thread):
            try:
                with Client(port, seconds=30) as c:
                    r = c.request("GET", target, headers={"Connection": "close"})
                with lock:
                    results.append((r.status, r.body))
            except Exception as e:
                with lock:
                    errors.append(e)

    started = [threading.Thread(target=run) for _ in range(threads)]
    for t in started:
        t.start()
    return started, results, errors, lock



class KeepAliveLoad:
    """`threads` clients sending GET target back to back on kept-alive connections until
    stop(); a connection the server closes ("Connection: close", as a retiring worker's) is
    replaced. Counts the 200s; anything else (another status, a broken connection) is a
    failure, recorded. Use as a context manager."""

    def __init__(self, port, target, threads=4):
        self.port, self.target = port, target
        self.ok, self.failures = 0, []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self):
        c = None
        while not self.stopping.is_set():
            try:
                if c is None:
                    c = Client(self.port, seconds=30)
                r = c.request("GET", self.target)
                if r.status != 200:
                    raise AssertionError("status %d" % r.status)
                with self.lock:
                    self.ok += 1
                if r.header("Connection") == "close":  # a retiring worker sheds it
                    c.close()
                    c = None
            except Exception as e:
                with self.lock:
                    self.failures.append(repr(e))
                if c:
                    c.close()
                c = None
        if c:
            c.close()

    def answered(self):
        with self.lock:
            return self.ok

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for t in self.threads:
            t.join()
