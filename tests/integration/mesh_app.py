#!/usr/bin/env python3
"""mesh_app.py - a small HTTP/1.1 app for the proxy tests that records every request reaching it.

usage: mesh_app.py RECORD_FILE [--port N]    serve on 127.0.0.1 (port 0: any), print the port
       mesh_app.py --pattern-sha256 N        print the sha256 of /v1/big?bytes=N's body

Every request head that arrives is appended to RECORD_FILE as one JSON line
(written before the response, so a client that got an answer can read it):
  {"conn": 3, "seq": 1, "raw_head": "...", "method": ..., "target": ..., "version": ...,
   "headers": [[name, value], ...], "body_len": N, "body_sha256": "...", "complete": bool}
Bytes that do not form a head (garbage, a head cut by the connection closing) are
recorded too, as {"conn": N, "partial": "..."}; nothing that reaches the app is
left out. The parser is deliberately independent of the proxy's: it reads what
arrived, byte for byte, and never tries to repair it.

Endpoints (any method):
  /v1/echo, anything else  200, JSON of the request (method, path, target, headers,
                           body_len, body_sha256); ?throttle_mbps=N reads the body slowly
  /v1/chunked              a chunked response in several chunks (X-Expect-Sha256 gives its digest)
  /v1/big?bytes=N          N bytes of a fixed pattern with Content-Length
  /v1/close                HTTP/1.1, no Content-Length: the body ends when the connection closes
  /v1/reset                part of a response, then a reset (SO_LINGER 0)
  /v1/crash                closes without any response
  /v1/slow?ms=N            waits N ms, then answers as /v1/echo
  /v1/ws                   WebSocket: 101 with Sec-WebSocket-Accept, then echoes every frame
  /v1/status/N             status N
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

HEAD_MAX = 1 << 20
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PATTERN = bytes(range(256)) * 256  # 64 KiB; /v1/big repeats it
CHUNKS = [b"chunk %02d " % i + b"abcdefghij" * (i * 37 + 1) + b"\n" for i in range(7)]


def pattern_sha256(n):
    h = hashlib.sha256()
    full, rest = divmod(n, len(PATTERN))
    for _ in range(full):
        h.update(PATTERN)
    h.update(PATTERN[:rest])
    return h.hexdigest()


class Recorder:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.f = open(path, "a", encoding="utf-8")

    def write(self, rec):
        line = json.dumps(rec, sort_keys=True)
        with self.lock:
            self.f.write(line + "\n")
            self.f.flush()


class Closed(Exception):
    pass


class Conn:
    """One client connection: a buffered reader over the socket."""

    def __init__(self, sock, cid, rec):
        self.s = sock
        self.id = cid
        self.rec = rec
        self.buf = b""
        self.seq = 0

    def fill(self):
        try:
            data = self.s.recv(65536)
        except OSError:
            data = b""
        if not data:
            raise Closed()
        self.buf += data

    def read_exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self, limit=65536):
        while b"\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("line too long")
            self.fill()
        i = self.buf.index(b"\n")
        out, self.buf = self.buf[: i + 1], self.buf[i + 1 :]
        return out

    def send(self, data):
        self.s.sendall(data)


def latin(b):
    return b.decode("latin-1")


def parse_head(raw):
    """Splits a head into (method, target, version, headers); None if it is not one."""
    lines = raw.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        headers.append([latin(name), latin(value.strip(b" \t"))])
    return latin(parts[0]), latin(parts[1]), latin(parts[2]), headers


def header(headers, name):
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def response(status, body=b"", headers=(), reason=None):
    reason = reason or {200: "OK", 101: "Switching Protocols", 400: "Bad Request",
                        404: "Not Found"}.get(status, "Status")
    head = "HTTP/1.1 %d %s\r\n" % (status, reason)
    for n, v in headers:
        head += "%s: %s\r\n" % (n, v)
    if status >= 200 and status not in (204, 304):
        head += "Content-Length: %d\r\n" % len(body)
    return head.encode() + b"\r\n" + body


class Body:
    """Reads a request body as framed by its head, hashing it as it goes."""

    def __init__(self, conn, headers, throttle=0):
        self.c = conn
        self.h = hashlib.sha256()
        self.n = 0
        self.complete = False
        self.throttle = throttle  # bytes per second, 0 = as fast as possible
        self.t0 = time.monotonic()
        te = header(headers, "transfer-encoding")
        cl = header(headers, "content-length")
        self.kind = "chunked" if te is not None and te.lower() == "chunked" else (
            "length" if cl is not None else "none")
        self.cl = int(cl) if self.kind == "length" and cl.isdigit() else 0

    def take(self, data):
        self.h.update(data)
        self.n += len(data)
        if self.throttle:
            ahead = self.n / self.throttle - (time.monotonic() - self.t0)
            if ahead > 0:
                time.sleep(ahead)

    def read(self):
        c = self.c
        if self.kind == "length":
            left = self.cl
            while left > 0:
                if not c.buf:
                    c.fill()
                piece = c.buf[: min(left, 65536)]
                c.buf = c.buf[len(piece) :]
                left -= len(piece)
                self.take(piece)
        elif self.kind == "chunked":
            while True:
                line = c.read_line()
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while c.read_line() not in (b"\r\n", b"\n"):
                        pass
                    break
                left = size
                while left > 0:
                    if not c.buf:
                        c.fill()
                    piece = c.buf[: min(left, 65536)]
                    c.buf = c.buf[len(piece) :]
                    left -= len(piece)
                    self.take(piece)
                c.read_exact(2)
        self.complete = True


def ws_frame(opcode, payload):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def ws_echo(c):
    """Echoes every frame (unmasked, same opcode) until a close frame or EOF."""
    while True:
        b0, b1 = c.read_exact(2)
        opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", c.read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", c.read_exact(8))[0]
        key = c.read_exact(4) if masked else b"\0\0\0\0"
        data = bytearray(c.read_exact(n))
        for i in range(n):
            data[i] ^= key[i & 3]
        c.send(ws_frame(opcode, bytes(data)))
        if opcode == 8:
            return


def serve_one(c, method, target, version, headers, raw_head):
    """Answers one request; returns False when the connection must end."""
    url = urlsplit(target)
    q = parse_qs(url.query)
    path = url.path

    def qint(name, default):
        try:
            return int(q.get(name, [default])[0])
        except ValueError:
            return default

    body = Body(c, headers, throttle=qint("throttle_mbps", 0) * 1000000)
    rec = {"conn": c.id, "seq": c.seq, "raw_head": latin(raw_head), "method": method,
           "target": target, "path": path, "version": version, "headers": headers}
    c.seq += 1
    try:
        body.read()
    finally:
        rec.update(body_len=body.n, body_sha256=body.h.hexdigest(), complete=body.complete)
        c.rec.write(rec)

    conn_hdr = (header(headers, "connection") or "").lower()
    keep = ("close" not in conn_hdr) if version == "HTTP/1.1" else ("keep-alive" in conn_hdr)

    def echo(status=200):
        info = {"method": method, "path": path, "target": target, "version": version,
                "headers": headers, "body_len": body.n, "body_sha256": body.h.hexdigest(),
                "conn": c.id}
        out = json.dumps(info).encode() + b"\n"
        extra = [("Content-Type", "application/json")] + ([] if keep else [("Connection", "close")])
        c.send(response(status, out, extra))

    if path == "/v1/chunked":
        digest = hashlib.sha256(b"".join(CHUNKS)).hexdigest()
        c.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
               b"X-Expect-Sha256: " + digest.encode() + b"\r\n\r\n")
        for ch in CHUNKS:
            c.send(b"%x\r\n%s\r\n" % (len(ch), ch))
            time.sleep(0.01)
        c.send(b"0\r\n\r\n")
    elif path == "/v1/big":
        n = qint("bytes", 0)
        c.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
               b"Content-Length: %d\r\n\r\n" % n)
        mv = memoryview(PATTERN)
        while n > 0:
            k = min(n, len(PATTERN))
            c.send(mv[:k])
            n -= k
    elif path == "/v1/close":
        c.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        for i in range(5):
            c.send(b"close-delimited line %d\n" % i)
            time.sleep(0.01)
        return False
    elif path == "/v1/reset":
        c.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
               + b"r" * 1000)
        time.sleep(0.05)
        c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False
    elif path == "/v1/crash":
        return False
    elif path == "/v1/slow":
        time.sleep(qint("ms", 0) / 1000.0)
        echo()
    elif path == "/v1/ws":
        key = header(headers, "sec-websocket-key")
        up = (header(headers, "upgrade") or "").lower()
        if key is None or up != "websocket" or "upgrade" not in conn_hdr or \
                header(headers, "sec-websocket-version") != "13":
            c.send(response(400, b"not a websocket handshake\n"))
            return keep
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        c.send(response(101, headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                      ("Sec-WebSocket-Accept", accept)]))
        ws_echo(c)
        return False
    elif path.startswith("/v1/status/"):
        try:
            status = int(path[len("/v1/status/"):])
        except ValueError:
            status = 400
        c.send(response(status, b"" if status in (204, 304) else b"status %d\n" % status))
    else:
        echo()
    return keep


def handle(sock, cid, rec):
    c = Conn(sock, cid, rec)
    try:
        while True:
            try:
                while b"\r\n\r\n" not in c.buf:
                    if len(c.buf) > HEAD_MAX:
                        raise ValueError("head too large")
                    c.fill()
            except Closed:
                if c.buf:
                    rec.write({"conn": cid, "partial": latin(c.buf)})
                return
            i = c.buf.index(b"\r\n\r\n") + 4
            raw, c.buf = c.buf[:i], c.buf[i:]
            parsed = parse_head(raw[:-4])
            if parsed is None:
                rec.write({"conn": cid, "partial": latin(raw + c.buf)})
                c.send(response(400, b"bad request\n", [("Connection", "close")]))
                return
            if not serve_one(c, *parsed, raw):
                return
    except (Closed, OSError, ValueError):
        pass
    except Exception as e:  # a bug here must not look like a proxy fault: say it
        sys.stderr.write("mesh_app: connection %d: %r\n" % (cid, e))
    finally:
        try:
            sock.close()
        except OSError:
            pass


def main(argv):
    if len(argv) == 3 and argv[1] == "--pattern-sha256":
        print(pattern_sha256(int(argv[2])))
        return 0
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--port"):
        sys.stderr.write(__doc__)
        return 2
    rec = Recorder(argv[1])
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", int(argv[3]) if len(argv) == 4 else 0))
    ls.listen(512)
    print(ls.getsockname()[1], flush=True)
    cid = 0
    while True:
        try:
            s, _ = ls.accept()
        except OSError as e:  # ECONNABORTED, EMFILE...: keep serving
            sys.stderr.write("mesh_app: accept: %s\n" % e)
            time.sleep(0.01)
            continue
        cid += 1
        try:
            threading.Thread(target=handle, args=(s, cid, rec), daemon=True).start()
        except RuntimeError as e:
            sys.stderr.write("mesh_app: %s\n" % e)
            s.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
