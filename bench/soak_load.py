"""The soak's HTTP load, run in a process of its own (bench/soak.py --client, started by the
soak): keep-alive connections busy with GET /, every answer checked and every failure recorded
with its time, kind and local port. See bench/soak.py for what it measures."""
import collections
import errno
import json
import os
import selectors
import socket
import time

REQUEST_TIMEOUT = 5.0


def client_main(port, until, connections, out_path, greetings):
    """Keeps `connections` keep-alive connections busy with GET / until `until` (monotonic);
    writes its figures as JSON to out_path."""
    request = b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n"
    accepted = {g.encode() for g in greetings}
    sel = selectors.DefaultSelector()
    failures = []           # [t, kind, local port, opened, responses before on this conn, detail]
    ok_per_tick = collections.Counter()   # successes per 100 ms
    bodies = collections.Counter()
    latencies = []
    counts = {"attempted": 0, "ok": 0, "closed_by_server": 0}

    class Conn:
        pass

    def open_conn():
        c = Conn()
        c.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.sock.setblocking(False)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.opened = time.monotonic()
        c.port = 0
        c.responses = 0
        c.buf = b""
        c.started = c.opened
        c.state = "connecting"
        counts["attempted"] += 1
        rc = c.sock.connect_ex(("127.0.0.1", port))
        if rc not in (0, errno.EINPROGRESS):
            fail(c, "connect", os.strerror(rc), registered=False)
            return
        sel.register(c.sock, selectors.EVENT_WRITE, c)

    def close(c, registered=True):
        if registered:
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
        c.sock.close()

    def fail(c, kind, detail, registered=True):
        failures.append([time.monotonic(), kind, c.port, c.opened, c.responses, detail])
        close(c, registered)
        if time.monotonic() < until:
            open_conn()

    def send(c):
        try:
            c.sock.send(request)  # 30 bytes into an empty socket buffer: sent whole
        except OSError as e:
            fail(c, "reset" if e.errno in (errno.ECONNRESET, errno.EPIPE) else "send", str(e))
            return
        c.state = "reading"
        sel.modify(c.sock, selectors.EVENT_READ, c)

    def on_event(c):
        if c.state == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                fail(c, "connect", os.strerror(err))
                return
            c.port = c.sock.getsockname()[1]
            send(c)
            return
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            fail(c, "reset" if e.errno == errno.ECONNRESET else "recv", str(e))
            return
        if not data:
            fail(c, "eof", "end of stream after %d byte(s) of the response" % len(c.buf))
            return
        c.buf += data
        head_end = c.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = c.buf[:head_end].decode("latin-1").split("\r\n")
        length, close_after = 0, False
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close_after = True
        if len(c.buf) < head_end + 4 + length:
            return
        body = c.buf[head_end + 4:head_end + 4 + length]
        status = head[0].split(" ")[1] if " " in head[0] else "?"
        now = time.monotonic()
        if status != "200":
            fail(c, "status", "status %s" % status)
            return
        if body not in accepted:
            fail(c, "body", "body %r" % body[:60])
            return
        counts["ok"] += 1
        latencies.append(now - c.started)
        ok_per_tick[int(now * 10)] += 1
        bodies[body.decode()] += 1
        c.responses += 1
        c.buf = c.buf[head_end + 4 + length:]
        if close_after:
            counts["closed_by_server"] += 1
            close(c)
            if now < until:
                open_conn()
            return
        if now >= until:
            close(c)
            return
        c.started = now
        counts["attempted"] += 1
        send(c)

    for _ in range(connections):
        open_conn()
    print("client started", flush=True)
    loop_gaps = []  # (t, s): this client's loop did not run for that long (the machine, not herd)
    last_loop = time.monotonic()
    while True:
        now = time.monotonic()
        if now - last_loop > 0.2:
            loop_gaps.append((last_loop, now - last_loop))
        last_loop = now
        conns = [key.data for key in sel.get_map().values()]
        if not conns:
            break
        if now >= until + REQUEST_TIMEOUT:
            break
        for key, _ in sel.select(timeout=0.05):
            on_event(key.data)
        now = time.monotonic()
        for c in [key.data for key in sel.get_map().values()]:
            if now - c.started > REQUEST_TIMEOUT and c.started < until:
                fail(c, "timeout", "no complete response in %.0f s (%s)" % (REQUEST_TIMEOUT, c.state))
    # What is still open at the end began after `until`, or is a request in flight at the end.
    abandoned = 0
    for key in list(sel.get_map().values()):
        c = key.data
        if c.started < until:
            abandoned += 1
            counts["attempted"] -= 1
        close(c)
    # A request that failed after `until` began before it: it counts.
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else float("nan")
    with open(out_path, "w") as f:
        json.dump({"counts": counts, "abandoned": abandoned, "failures": failures, "loop_gaps": loop_gaps,
                   "ok_per_tick": ok_per_tick, "bodies": bodies,
                   "latency": {"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999),
                               "max": latencies[-1] if latencies else float("nan")}}, f)
