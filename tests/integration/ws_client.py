"""WebSocket clients for the tests: a raw one that writes frames byte by byte as the test
builds them (masked or not, reserved bits, any opcode: what a well-behaved library will not
send), and small helpers around Python's `websockets` (Debian's python3-websockets)."""
import os
import socket
import struct

from timeouts import timeout

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 1.3's example key


def handshake_request(path, host="127.0.0.1", extra="", version="13", key=KEY, method="GET",
                      http="HTTP/1.1"):
    return ("%s %s %s\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: %s\r\n%s\r\n"
            % (method, path, http, host, key, version, extra)).encode()


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length_form=None):
    """A client frame. length_form: force the 16-bit (126) or 64-bit (127) length form."""
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if length_form == 127 or (length_form is None and n > 0xFFFF):
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    elif length_form == 126 or (length_form is None and n > 125):
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | n])
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


class RawSocket:
    """One connection: the handshake by hand, then frames in and out."""

    def __init__(self, port, path, rcvbuf=None, **handshake):
        # rcvbuf: a receive buffer of that size, set before connecting (the window follows).
        self.sock = socket.socket()
        self.sock.settimeout(timeout(10))
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.sock.sendall(handshake_request(path, **handshake))
        self.status, self.head = self._read_head()

    def _read_head(self):
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed before the handshake's answer: %r" % self.buf)
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return status, fields

    def send(self, data):
        self.sock.sendall(data)

    def _need(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self.buf += data

    def recv_frame(self, control=False):
        """(fin, opcode, payload) of the next server frame; EOFError at the end. Unless
        `control`, herd's keep-alive pings are answered and pongs skipped on the way."""
        while True:
            fin, opcode, payload = self._next_frame()
            if control or opcode not in (0x9, 0xA):
                return fin, opcode, payload
            if opcode == 0x9:
                self.send(frame(0xA, payload))

    def _next_frame(self):
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        if b1 & 0x80:
            raise AssertionError("a server frame is masked")
        n, at = b1 & 0x7F, 2
        if n == 126:
            self._need(4)
            n, at = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10)
            n, at = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(at + n)
        payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_close(self):
        """The code and reason of the server's close frame (skipping data frames before it),
        then its end of the connection."""
        while True:
            _, opcode, payload = self.recv_frame()
            if opcode == 0x8:
                break
        code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
        return code, payload[2:].decode()

    def at_eof(self):
        """True once the server has closed its side (anything before is discarded)."""
        try:
            while self.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
        return True

    def close(self):
        self.sock.close()
