#!/usr/bin/env bash
# test_proxy_http.sh - two ward-proxy sidecars and a recording app: HTTP/1.1 semantics, smuggling, mTLS refusals, faults.
#
# Topology (all on loopback):  client --plaintext--> frontend proxy (outbound listener)
#   --mTLS--> payments proxy (inbound listener) --plaintext--> mesh_app.py, which
# records every request that reaches it. Clients: curl, openssl s_client, and raw
# sockets from Python (helper below) for what curl will not send.
. "$(dirname "$0")/lib.sh"

HERE="$(cd "$(dirname "$0")" && pwd)"
WP="$BIN/ward-proxy"
APP="$HERE/mesh_app.py"
TD=example.org
FRONT_ID="spiffe://$TD/ns/shop/sa/frontend"
PAY_ID="spiffe://$TD/ns/shop/sa/payments"
TP_TRACE=4bf92f3577b34da6a3ce929d0e0e4736
TRACEPARENT="00-$TP_TRACE-00f067aa0ba902b7-01"
APP_PID="" PAY_PID="" FRONT_PID="" RSS_PID=""

cleanup() {
    local p
    for p in $RSS_PID $FRONT_PID $PAY_PID $APP_PID; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ ! -x "$WP" ]; then
    fail "ward-proxy is built" "missing $WP (run make)"
    finish
fi
for tool in curl openssl python3 timeout sha256sum; do
    if ! command -v "$tool" >/dev/null; then
        fail "$tool is installed"
        finish
    fi
done
if ! python3 -c 'import cryptography' 2>/dev/null; then
    fail "python3-cryptography is installed"
    finish
fi

# ---- identities ----------------------------------------------------------------------------

PKI="$TMP/pki"
mkdir -p "$PKI"
# ca NAME TD: a self-signed CA for trust domain TD
ca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$PKI/$1.key" \
        -out "$PKI/$1.pem" -days 2 -subj "/O=test/CN=$1" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectAltName=URI:spiffe://$2" 2>/dev/null
}
# svid NAME CA SPIFFE_ID: an X509-SVID signed by CA
svid() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null &&
        openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$2.pem" -CAkey "$PKI/$2.key" -CAcreateserial \
            -out "$PKI/$1.pem" -days 1 -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
                "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" \
                "subjectAltName=URI:$3") 2>/dev/null &&
        chmod 600 "$PKI/$1.key"
}
ca ca "$TD" && ca rogue-ca "$TD" &&
    svid payments ca "$PAY_ID" && svid frontend ca "$FRONT_ID" &&
    svid rogue rogue-ca "$FRONT_ID" &&
    svid othertd ca "spiffe://other.org/ns/shop/sa/frontend"
# expired: signed by the real CA, valid two days ago for one day (openssl 3.0's x509 cannot backdate)
python3 - "$PKI" "$FRONT_ID" <<'EOF'
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
d, sid = sys.argv[1], sys.argv[2]
ca_key = serialization.load_pem_private_key(open(d + "/ca.key", "rb").read(), None)
ca_cert = x509.load_pem_x509_certificate(open(d + "/ca.pem", "rb").read())
key = ec.generate_private_key(ec.SECP256R1())
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(sid)]),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
open(d + "/expired.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(d + "/expired.key", "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
EOF
chmod 600 "$PKI/expired.key" 2>/dev/null
for f in ca payments frontend rogue othertd expired; do
    if [ ! -s "$PKI/$f.pem" ]; then
        fail "test identities are made" "no $PKI/$f.pem"
        finish
    fi
done

# ---- the Python side: raw clients ------------------------------------------------------------

H="$TMP/h.py"
cat >"$H" <<'EOF'
"""Raw HTTP/1.1 clients for test_proxy_http.sh (plain or mTLS)."""
import codecs, hashlib, base64, json, os, random, select, socket, ssl, struct, sys, time

def unescape(s):
    return codecs.escape_decode(s.encode("latin-1"))[0]

def tls_ctx(cert, key, ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    return ctx

def connect(host, port, tls=None, timeout=5):
    s = socket.create_connection((host, int(port)), timeout=timeout)
    if tls:
        s = tls_ctx(*tls).wrap_socket(s)
    return s

def complete(out):
    """Whether out holds a whole response with a Content-Length body."""
    i = out.find(b"\r\n\r\n")
    if i < 0:
        return False
    for line in out[:i].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(out) >= i + 4 + int(v.strip() or 0)
    return False

def read_all(s, timeout=3.0, until_complete=False):
    """Reads until the peer closes, or timeout (or, with until_complete, until one whole
    response is in): (bytes, "closed" | "reset" | "open")."""
    out = b""
    end = time.monotonic() + timeout
    while True:
        if until_complete and complete(out):
            return out, "open"
        left = end - time.monotonic()
        if left <= 0:
            return out, "open"
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except socket.timeout:
            return out, "open"
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return out, "closed"
        except (ConnectionResetError, ssl.SSLError, OSError):
            return out, "reset"
        if not d:
            return out, "closed"
        out += d

def status_of(resp):
    try:
        line = resp.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        return int(parts[1]) if parts[0].startswith("HTTP/1.") else 0
    except (IndexError, ValueError):
        return 0

def tls_args(argv):
    return tuple(argv[:3]) if argv and argv[0] != "-" else None

def cmd_raw(host, port, data, *tls):
    """raw HOST PORT BYTES [CERT KEY CA]: BYTES (Python escapes) in one write; the
    response until close, then a line <<closed>> / <<reset>> / <<open>>."""
    s = connect(host, port, tls_args(tls))
    s.sendall(unescape(data))
    out, how = read_all(s, 4.0)
    sys.stdout.write(out.decode("latin-1") + "\n<<%s>>\n" % how)

def records(path):
    try:
        return open(path, "rb").read()
    except FileNotFoundError:
        return b""

V = []  # (id, label, bytes, statuses, must_close)
def vec(label, data, statuses=(400,), must_close=True):
    V.append(("wv%02d" % len(V), label, data, statuses, must_close))

def build_vectors():
    M = "X-Vec: {id}\r\n"
    H = "Host: payments\r\n"
    SMUG = "GET /v1/echo?smuggled={id} HTTP/1.1\r\nHost: payments\r\n\r\n"
    post = "POST /v1/echo HTTP/1.1\r\n" + H + M
    chunked = post + "Transfer-Encoding: chunked\r\n\r\n"
    vec("CL+TE", post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUG)
    vec("TE+CL", post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n" + SMUG)
    vec("duplicate differing Content-Length",
        post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + SMUG)
    vec("Content-Length: 1,1", post + "Content-Length: 1,1\r\n\r\nx" + SMUG)
    vec("Content-Length: +1", post + "Content-Length: +1\r\n\r\nx" + SMUG)
    vec("Content-Length: 0x10", post + "Content-Length: 0x10\r\n\r\n0123456789abcdef" + SMUG)
    vec("Content-Length with a space inside (1 0)", post + "Content-Length: 1 0\r\n\r\n0123456789" + SMUG)
    vec("Content-Length: -1", post + "Content-Length: -1\r\n\r\n" + SMUG)
    vec("empty Content-Length", post + "Content-Length:\r\n\r\n" + SMUG)
    vec("Content-Length beyond 2^63 (400 or 413)", post + "Content-Length: 99999999999999999999\r\n\r\n",
        (400, 413))
    vec("chunk size 0x5", chunked + "0x5\r\nhello\r\n0\r\n\r\n" + SMUG)
    vec("chunk size -1", chunked + "-1\r\nhello\r\n0\r\n\r\n" + SMUG)
    vec("chunk size '5 ;ext' (space before ';')", chunked + "5 ;a=b\r\nhello\r\n0\r\n\r\n" + SMUG)
    vec("chunk size of 17 hex digits", chunked + "fffffffffffffffff\r\nhello\r\n0\r\n\r\n" + SMUG)
    vec("chunk size line ending in bare LF", chunked + "5\nhello\r\n0\r\n\r\n" + SMUG)
    vec("chunk data longer than its size", chunked + "5\r\nhelloXX\r\n0\r\n\r\n" + SMUG)
    vec("obs-fold header continuation", "GET /v1/echo HTTP/1.1\r\n" + H + M + "X-Fold: a\r\n b\r\n\r\n")
    vec("bare CR inside a header value", "GET /v1/echo HTTP/1.1\r\n" + H + M + "X-A: a\rb\r\n\r\n")
    vec("bare CR ending the request line", "GET /v1/echo HTTP/1.1\r" + H + M + "\r\n")
    vec("bare LF line endings", "GET /v1/echo HTTP/1.1\n" + "Host: payments\n" + "X-Vec: {id}\n\n")
    vec("one header line ending in bare LF", "GET /v1/echo HTTP/1.1\r\n" + H + M + "X-A: b\n\r\n")
    vec("NUL in a header value", "GET /v1/echo HTTP/1.1\r\n" + H + M + "X-A: a\x00b\r\n\r\n")
    vec("space before colon (Content-Length : 5)", post + "Content-Length : 5\r\n\r\nhello" + SMUG)
    vec("tab before colon (Transfer-Encoding<TAB>: chunked)",
        post + "Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n" + SMUG)
    vec("Transfer-Encoding: chunked, identity", post + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUG)
    vec("Transfer-Encoding: identity, chunked (501: unsupported coding)",
        post + "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + SMUG, (501,))
    vec("Transfer-Encoding: gzip, chunked (501: unsupported coding)",
        post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + SMUG, (501,))
    vec("Transfer-Encoding: xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + SMUG)
    vec("Transfer-Encoding with a vertical tab", post + "Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n" + SMUG)
    vec("two Transfer-Encoding fields", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUG)
    vec("Transfer-Encoding in HTTP/1.0", "POST /v1/echo HTTP/1.0\r\n" + H + M +
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUG)
    vec("absolute-form target with a different Host", "GET http://evil.example/v1/echo HTTP/1.1\r\n" + H + M + "\r\n")
    vec("missing Host in HTTP/1.1", "GET /v1/echo HTTP/1.1\r\n" + M + "\r\n")
    vec("two Host fields", "GET /v1/echo HTTP/1.1\r\n" + H + "Host: evil.example\r\n" + M + "\r\n")
    vec("%2F in the path", "GET /v1%2Fecho HTTP/1.1\r\n" + H + M + "\r\n")
    vec("..%2F in the path", "GET /v1/..%2Fadmin HTTP/1.1\r\n" + H + M + "\r\n")
    vec("path climbing above the root", "GET /../v1/echo HTTP/1.1\r\n" + H + M + "\r\n")
    vec("backslash traversal", "GET /v1\\..\\admin HTTP/1.1\r\n" + H + M + "\r\n")
    vec("malformed request line (two spaces)", "GET  /v1/echo HTTP/1.1\r\n" + H + M + "\r\n")
    vec("lowercase version http/1.1", "GET /v1/echo http/1.1\r\n" + H + M + "\r\n")
    vec("HTTP/1.2 (505)", "GET /v1/echo HTTP/1.2\r\n" + H + M + "\r\n", (505,))
    close = "Connection: close\r\n"
    vec("/v1/../admin normalized to /admin and denied (403)",
        "GET /v1/../admin HTTP/1.1\r\n" + H + M + close + "\r\n", (403,), False)
    vec("/v1/%2e%2e/admin normalized to /admin and denied (403)",
        "GET /v1/%2e%2e/admin HTTP/1.1\r\n" + H + M + close + "\r\n", (403,), False)
    vec("/v1/.%2E/admin normalized to /admin and denied (403)",
        "GET /v1/.%2E/admin HTTP/1.1\r\n" + H + M + close + "\r\n", (403,), False)
    # beyond the limits (100 fields, 60 KiB) even with the inbound listener's room for
    # what the calling proxy adds (8 fields, 4 KiB; docs/proxy-config.md)
    fields = "".join("X-F%03d: v\r\n" % i for i in range(107))  # + Host + X-Vec = 109
    vec("109 header fields (431)", "GET /v1/echo HTTP/1.1\r\n" + H + M + fields + "\r\n", (431,))
    big = "".join("X-Big%d: %s\r\n" % (i, "b" * 8200) for i in range(8))  # ~66 KB > 64 KiB
    vec("more than 64 KiB of header fields (431)", "GET /v1/echo HTTP/1.1\r\n" + H + M + big + "\r\n", (431,))

def cmd_vectors(host, port, recfile, *tls):
    """vectors HOST PORT RECORDS [CERT KEY CA]: every smuggling vector on its own connection;
    prints ok|LABEL|detail or bad|LABEL|detail per vector."""
    build_vectors()
    tls = tls_args(tls)
    out = []
    for vid, label, data, statuses, must_close in V:
        raw = data.replace("{id}", vid).encode("latin-1")
        before = len(records(recfile))
        try:
            s = connect(host, port, tls)
            s.sendall(raw)
            resp, how = read_all(s, 3.0, until_complete=not must_close)
            s.close()
        except OSError as e:
            resp, how = b"", "error: %s" % e
        time.sleep(0.05)
        grown = records(recfile)[before:]
        st = status_of(resp)
        first = resp.split(b"\r\n", 1)[0].decode("latin-1")
        problems = []
        if st not in statuses:
            problems.append("status %s, expected %s" % (st or "none", "/".join(map(str, statuses))))
        if must_close and how not in ("closed", "reset"):
            problems.append("connection not closed (%s)" % how)
        for line in grown.decode("latin-1").splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                r = {"partial": line}
            if "partial" in r:
                problems.append("the app received bytes: %r" % r["partial"][:200])
            else:
                problems.append("the app received the head %s %s%s (body: %d bytes, %s)" % (
                    r["method"], r["target"], "".join(", %s: %s" % (k, v) for k, v in r["headers"]
                                                      if k.lower() == "transfer-encoding"),
                    r["body_len"], "complete" if r["complete"] else "then the connection was cut"))
        out.append([vid, label, problems, "%s, %s" % (first or "no response", how), raw])
    time.sleep(0.5)  # anything forwarded late still carries the vector's id
    allrec = records(recfile).decode("latin-1")
    for vid, label, problems, detail, raw in out:
        if vid in allrec and not any("the app" in p for p in problems):
            problems.append("the app recorded the vector (late)")
        if problems:
            print("bad|%s|%s; sent %r; got %s" % (label, "; ".join(problems), raw[:400], detail))
        else:
            print("ok|%s|%s" % (label, detail))

def cmd_pipeline(host, port):
    """pipeline HOST PORT: two requests in one write; prints the targets the responses echo, in order."""
    s = connect(host, port)
    s.sendall(b"GET /v1/slow?ms=200&n=1 HTTP/1.1\r\nHost: payments\r\n\r\n"
              b"GET /v1/echo?n=2 HTTP/1.1\r\nHost: payments\r\nConnection: close\r\n\r\n")
    data, how = read_all(s, 5.0)
    targets = []
    while data:
        i = data.find(b"\r\n\r\n")
        if i < 0:
            break
        head = data[:i].decode("latin-1").split("\r\n")
        n = 0
        for line in head[1:]:
            k, _, v = line.partition(":")
            if k.lower() == "content-length":
                n = int(v.strip())
        body = data[i + 4:i + 4 + n]
        data = data[i + 4 + n:]
        try:
            targets.append("%s %s" % (head[0].split(" ")[1], json.loads(body)["target"]))
        except (ValueError, KeyError, IndexError):
            targets.append("%s ?" % head[0])
    print(" | ".join(targets) + " | " + how)

def ws_frame(opcode, payload, mask):
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + mask + masked

def ws_read(s, buf):
    def need(n):
        nonlocal buf
        while len(buf) < n:
            d = s.recv(65536)
            if not d:
                raise EOFError("closed")
            buf += d
    need(2)
    op, n = buf[0] & 15, buf[1] & 127
    off = 2
    if n == 126:
        need(4); n = struct.unpack("!H", buf[2:4])[0]; off = 4
    elif n == 127:
        need(10); n = struct.unpack("!Q", buf[2:10])[0]; off = 10
    need(off + n)
    return op, buf[off:off + n], buf[off + n:]

def cmd_ws(host, port):
    """ws HOST PORT: a WebSocket handshake and echo through the proxies."""
    s = connect(host, port, timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /v1/ws HTTP/1.1\r\nHost: payments\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            print("bad|no handshake response: %r" % buf[:300]); return
        buf += d
    i = buf.index(b"\r\n\r\n")
    head, buf = buf[:i].decode("latin-1"), buf[i + 4:]
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    if not head.startswith("HTTP/1.1 101") or ("Sec-WebSocket-Accept: " + want) not in head:
        print("bad|handshake: %r" % head[:400]); return
    big = bytes(random.Random(7).getrandbits(8) for _ in range(70000))
    for op, payload in ((1, b"hello through ward"), (2, big), (9, b"ping")):
        s.sendall(ws_frame(op, payload, os.urandom(4)))
        try:
            rop, data, buf = ws_read(s, buf)
        except (EOFError, OSError) as e:
            print("bad|frame opcode %d: no echo (%s)" % (op, e)); return
        if rop != op or data != payload:
            print("bad|frame opcode %d echoed as opcode %d, %d bytes" % (op, rop, len(data))); return
    s.sendall(ws_frame(8, b"\x03\xe8", os.urandom(4)))
    try:
        rop, _, buf = ws_read(s, buf)
    except (EOFError, OSError):
        rop = -1
    print("ok|101 with the right Sec-WebSocket-Accept; text, 70000-byte binary and ping echoed; close %s"
          % ("echoed" if rop == 8 else "not echoed"))

def cmd_slowloris(host, port, tls_handshake):
    """slowloris HOST PORT plain|silent: plain sends a head one byte per second; silent
    connects and sends nothing (a TLS listener waiting for its handshake). Prints
    SECONDS|WHAT_CAME_BACK|how once the proxy closes (or after 8 s)."""
    s = socket.create_connection((host, int(port)), timeout=5)
    msg = b"GET /v1/echo HTTP/1.1\r\nHost: payments\r\nX-Slow: " + b"z" * 64
    t0 = time.monotonic()
    got, how, i = b"", "open", 0
    while time.monotonic() - t0 < 8:
        if tls_handshake == "plain" and i < len(msg):
            try:
                s.send(msg[i:i + 1]); i += 1
            except OSError:
                how = "reset"; break
        r, _, _ = select.select([s], [], [], 1.0)
        if r:
            try:
                d = s.recv(65536)
            except OSError:
                how = "reset"; break
            if not d:
                how = "closed"; break
            got += d
    print("%.1f|%s|%s" % (time.monotonic() - t0, got.split(b"\r\n", 1)[0].decode("latin-1"), how))

def cmd_garbage(host, port, seed):
    """garbage HOST PORT SEED: 4 KiB of random bytes; prints the first response line and how it ended."""
    s = connect(host, port)
    try:
        s.sendall(random.Random(int(seed)).randbytes(4096))
    except OSError:
        pass
    data, how = read_all(s, 4.0)
    print("%s|%s" % (data.split(b"\r\n", 1)[0].decode("latin-1", "replace")[:80], how))

if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1]](*sys.argv[2:])
EOF

# raw HOST PORT BYTES [CERT KEY CA]: the response to BYTES sent in one write (see h.py).
raw() { timeout 20 python3 "$H" raw "$@"; }
# recs: the number of requests the app has recorded; rq EXPR: EXPR over R, the records.
recs() { [ -f "$REC" ] && wc -l <"$REC" | tr -d ' ' || echo 0; }
rq() {
    python3 -c 'import json, sys
R = [json.loads(l) for l in open(sys.argv[1])]
def hdr(r, n): return [v for k, v in r.get("headers", []) if k.lower() == n]
print(eval(sys.argv[2]))' "$REC" "$1"
}
# audit_has DIR EXPR: waits (3 s at most) for a record in DIR's segments with EXPR true (a is the record).
audit_has() {
    python3 - "$1" "$2" <<'EOF'
import glob, json, sys, time
end = time.time() + 3
while time.time() < end:
    try:
        for f in sorted(glob.glob(sys.argv[1] + "/segment-*.jsonl")):
            for l in open(f):
                a = json.loads(l)
                if eval(sys.argv[2]):
                    sys.exit(0)
    except (FileNotFoundError, ValueError):
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
}
# hc ARGS...: curl through the frontend's outbound listener with Host: payments; sets CODE, BODY, HDRS.
hc() {
    local p=$1
    shift
    BODY=$(timeout 30 curl -s -D "$TMP/hdrs" -H "Host: ${HOST:-payments}" --max-time 20 -w '\n%{http_code}' \
        "$@" "http://127.0.0.1:$FOUT$p")
    CODE=${BODY##*$'\n'}
    BODY=${BODY%$'\n'*}
    HDRS=$(tr -d '\r' <"$TMP/hdrs" 2>/dev/null)
}
# check NAME COND [DETAIL...]: pass if the shell condition COND holds.
check() {
    local name=$1 cond=$2
    shift 2
    if eval "$cond"; then pass "$name"; else fail "$name" "$@"; fi
}
# start_proxy NAME: ward-proxy with $TMP/NAME.yaml, log $TMP/NAME.log; sets LPID, IN, OUT, ADM.
start_proxy() {
    "$WP" --config "$TMP/$1.yaml" 2>>"$TMP/$1.log" &
    LPID=$!
    local line=""
    for _ in $(seq 100); do
        line=$(grep -m1 ' inbound [0-9]' "$TMP/$1.log" 2>/dev/null)
        [ -n "$line" ] && break
        kill -0 "$LPID" 2>/dev/null || return 1
        sleep 0.1
    done
    IN=$(printf '%s' "$line" | grep -o 'inbound [0-9]*' | awk '{print $2}')
    OUT=$(printf '%s' "$line" | grep -o 'outbound [0-9]*' | awk '{print $2}')
    ADM=$(printf '%s' "$line" | grep -o 'admin [0-9]*' | awk '{print $2}')
    [ -n "$IN" ] && [ -n "$ADM" ]
}
tls_failures() { # the inbound TLS handshake failures the payments admin reports
    curl -s --max-time 5 "http://127.0.0.1:$PADM/metrics" |
        awk '/^ward_tls_handshake_failures_total\{direction="inbound"/ {s += $NF} END {print s + 0}'
}

# ---- the mesh ---------------------------------------------------------------------------------

REC="$TMP/app.rec" # start_mesh_app's
: >"$REC"
if ! start_mesh_app; then
    fail "the app starts" "$(cat "$TMP/app.log")"
    finish
fi
CLOSED_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

{
    payments_policy_doc "$FRONT_ID" '[{methods: [GET, POST], paths: ["/v1/*"]}]'
    cat <<EOF
---
apiVersion: ward/v1
kind: AuthorizationPolicy
metadata: {name: test-upstreams, namespace: shop}
spec:
  selector: {services: [impostor, nowhere]}
  action: ALLOW
  rules:
    - from: [{principals: ["$FRONT_ID"]}]
EOF
} >"$TMP/policy.yaml"
cat >"$TMP/payments.yaml" <<EOF
service: payments
identity: {cert_file: $PKI/payments.pem, key_file: $PKI/payments.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:$APP_PORT}
policy: {paths: [$TMP/policy.yaml]}
audit: {dir: $TMP/audit-payments}
admin: {listen: 127.0.0.1:0}
workers: 2
timeouts: {header_read: 2s, request: 1s}
EOF
if ! start_proxy payments; then
    fail "the payments proxy starts" "$(tail -5 "$TMP/payments.log")"
    finish
fi
PAY_PID=$LPID PIN=$IN PADM=$ADM

cat >"$TMP/frontend.yaml" <<EOF
service: frontend
identity: {cert_file: $PKI/frontend.pem, key_file: $PKI/frontend.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:$APP_PORT}
outbound: {listen: 127.0.0.1:0}
upstreams:
  - {service: payments, endpoints: [127.0.0.1:$PIN], spiffe_id: "$PAY_ID"}
  - {service: impostor, endpoints: [127.0.0.1:$PIN], spiffe_id: "spiffe://$TD/ns/shop/sa/inventory"}
  - {service: nowhere, endpoints: [127.0.0.1:$CLOSED_PORT], spiffe_id: "spiffe://$TD/ns/shop/sa/nowhere"}
policy: {paths: [$TMP/policy.yaml]}
audit: {dir: $TMP/audit-frontend}
admin: {listen: 127.0.0.1:0}
workers: 2
timeouts: {header_read: 2s}
EOF
if ! start_proxy frontend || [ -z "$OUT" ]; then
    fail "the frontend proxy starts with an outbound listener" "$(tail -5 "$TMP/frontend.log")"
    finish
fi
FRONT_PID=$LPID FOUT=$OUT
FRONT_TLS=("$PKI/frontend.pem" "$PKI/frontend.key" "$PKI/ca.pem")

# ---- allowed requests end to end ----------------------------------------------------------------

n0=$(recs)
hc "/v1/echo?q=1" -H "X-Forwarded-Client-Cert: By=x;URI=spiffe://evil.org/ns/x/sa/y" -H "traceparent: $TRACEPARENT"
expect_eq "allowed GET through both proxies: 200" 200 "$CODE"
expect_eq "allowed GET: the app recorded it once" 1 "$(($(recs) - n0))"
expect_eq "allowed GET: the app got the path and query" "/v1/echo?q=1" "$(rq 'R[-1]["target"]')"
expect_match "allowed GET: X-Forwarded-For reaching the app names 127.0.0.1" '(^|, )127\.0\.0\.1' \
    "$(rq '", ".join(hdr(R[-1], "x-forwarded-for"))')"
expect_eq "allowed GET: the app got exactly the payments proxy's X-Forwarded-Client-Cert (the client's is dropped)" \
    "['By=$PAY_ID;URI=$FRONT_ID']" "$(rq 'hdr(R[-1], "x-forwarded-client-cert")')"
expect_match "allowed GET: the client's valid traceparent keeps its trace id" "^\\['00-$TP_TRACE-[0-9a-f]{16}-[0-9a-f]{2}'\\]$" \
    "$(rq 'hdr(R[-1], "traceparent")')"
check "allowed GET: the frontend's audit trail has an outbound allow with that trace_id" \
    "audit_has '$TMP/audit-frontend' 'a[\"trace_id\"] == \"$TP_TRACE\" and a[\"decision\"] == \"allow\" and a[\"direction\"] == \"outbound\"'" \
    "$(cat "$TMP"/audit-frontend/segment-*.jsonl 2>/dev/null | tail -2)"
check "allowed GET: the payments audit trail has an inbound allow from $FRONT_ID with that trace_id" \
    "audit_has '$TMP/audit-payments' 'a[\"trace_id\"] == \"$TP_TRACE\" and a[\"decision\"] == \"allow\" and a[\"source\"][\"principal\"] == \"$FRONT_ID\"'" \
    "$(cat "$TMP"/audit-payments/segment-*.jsonl 2>/dev/null | tail -2)"

n0=$(recs)
hc /v1/echo -H "traceparent: 00-zz-not-valid"
tp=$(rq 'hdr(R[-1], "traceparent")')
expect_match "no valid traceparent: the app gets a new valid one" "^\\['00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}'\\]$" "$tp"
tid=$(printf '%s' "$tp" | sed -n "s/^\['00-\([0-9a-f]\{32\}\)-.*/\1/p")
check "new trace id: the same in both proxies' audit records (propagated, not regenerated)" \
    "[ -n '$tid' ] && audit_has '$TMP/audit-frontend' 'a[\"trace_id\"] == \"$tid\"' && audit_has '$TMP/audit-payments' 'a[\"trace_id\"] == \"$tid\"'" \
    "trace id at the app: $tid"

printf 'hello, payments' >"$TMP/small.txt"
n0=$(recs)
hc /v1/echo --data-binary @"$TMP/small.txt"
expect_eq "allowed POST: 200" 200 "$CODE"
expect_eq "allowed POST: recorded once, body intact" "1 POST $(sha256sum <"$TMP/small.txt" | cut -d' ' -f1)" \
    "$(($(recs) - n0)) $(rq 'R[-1]["method"] + " " + R[-1]["body_sha256"]')"

# ---- denied --------------------------------------------------------------------------------------

n0=$(recs)
hc /admin
expect_eq "denied /admin: 403 with body \"access denied\"" "403 access denied" "$CODE ${BODY%$'\n'}"
did=$(printf '%s\n' "$HDRS" | sed -n 's/^[Xx]-[Ww]ard-[Dd]ecision-[Ii]d: *//p')
check "denied /admin: X-Ward-Decision-Id present" '[ -n "$did" ]' "$HDRS"
check "denied /admin: the frontend's audit has a deny record with that id and path" \
    "audit_has '$TMP/audit-frontend' 'a[\"id\"] == \"$did\" and a[\"decision\"] == \"deny\" and a[\"request\"][\"path\"] == \"/admin\"'" \
    "$(cat "$TMP"/audit-frontend/segment-*.jsonl 2>/dev/null | tail -1)"
out=$(raw 127.0.0.1 "$PIN" 'GET /admin HTTP/1.1\r\nHost: payments\r\nConnection: close\r\n\r\n' "${FRONT_TLS[@]}")
did=$(printf '%s\n' "$out" | tr -d '\r' | sed -n 's/^[Xx]-[Ww]ard-[Dd]ecision-[Ii]d: *//p')
check "denied /admin at the payments inbound (mTLS as frontend): 403, audited as deny" \
    "printf '%s' \"\$out\" | head -1 | grep -q '^HTTP/1.1 403' && audit_has '$TMP/audit-payments' 'a[\"id\"] == \"$did\" and a[\"decision\"] == \"deny\" and a[\"source\"][\"principal\"] == \"$FRONT_ID\"'" \
    "$(printf '%s' "$out" | head -3)"
expect_eq "denied /admin: the app recorded nothing" 0 "$(($(recs) - n0))"
# RFC 9112 9.6: after a response to a request with "Connection: close" (or an HTTP/1.0
# request without keep-alive) the server closes the connection
out=$(raw 127.0.0.1 "$FOUT" 'GET /admin HTTP/1.1\r\nHost: payments\r\nConnection: close\r\n\r\n')
check "denied request with Connection: close: 403, then the connection is closed" \
    "printf '%s' \"\$out\" | head -1 | grep -q '^HTTP/1.1 403' && printf '%s' \"\$out\" | grep -q '<<closed>>'" \
    "sent: GET /admin HTTP/1.1\\r\\nHost: payments\\r\\nConnection: close\\r\\n\\r\\n" \
    "got (<<open>>: still open 4 s after the response):" "$(printf '%s' "$out" | tr -d '\r')"
out=$(raw 127.0.0.1 "$FOUT" 'GET /admin HTTP/1.0\r\nHost: payments\r\n\r\n')
check "denied HTTP/1.0 request (no keep-alive): 403, then the connection is closed" \
    "printf '%s' \"\$out\" | head -1 | grep -q '^HTTP/1.1 403' && printf '%s' \"\$out\" | grep -q '<<closed>>'" \
    "sent: GET /admin HTTP/1.0\\r\\nHost: payments\\r\\n\\r\\n" "got (<<open>>: still open 4 s after the response):" "$(printf '%s' "$out" | tr -d '\r')"

# ---- keep-alive and pipelining -------------------------------------------------------------------

n0=$(recs)
out=$(timeout 20 curl -sv -H "Host: payments" -o /dev/null -o /dev/null -w '%{http_code} ' \
    "http://127.0.0.1:$FOUT/v1/echo?ka=1" "http://127.0.0.1:$FOUT/v1/echo?ka=2" 2>&1)
check "keep-alive: curl re-uses one client connection for two requests, both 200" \
    "printf '%s' \"\$out\" | grep -q 'Re-using existing connection' && printf '%s' \"\$out\" | grep -q '200 200'" \
    "$(printf '%s' "$out" | grep -E 'Re-using|Connected|< HTTP|200' | head -6)"
expect_eq "keep-alive: both reached the app over one pooled app connection" "2 True" \
    "$(($(recs) - n0)) $(rq 'R[-1]["conn"] == R[-2]["conn"]')"
out=$(timeout 20 python3 "$H" pipeline 127.0.0.1 "$FOUT")
expect_eq "pipelining: two requests in one write, two responses in order" \
    "200 /v1/slow?ms=200&n=1 | 200 /v1/echo?n=2 | closed" "$out"

# ---- a burst on the mesh hop: mTLS connects are paced, not one per request -------------------------------

mesh_conns() { ss -Htn state established "( sport = :$PIN )" | wc -l; }
c0=$(mesh_conns)
args=()
for i in $(seq 32); do args+=(-o /dev/null "http://127.0.0.1:$FOUT/v1/echo?burst=$i"); done
codes=$(timeout 60 curl -s --parallel --parallel-immediate --parallel-max 32 -H "Host: payments" \
    -w '%{http_code}\n' "${args[@]}" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
c1=$(mesh_conns)
check "burst of 32 parallel requests through the outbound: all 200 ($codes)" '[ "$codes" = " 32 200 " ]'
check "burst of 32: fewer mTLS connections than requests at the payments inbound ($c0 before, $c1 after)" \
    '[ "$c1" -lt 32 ]'

# ---- bodies: chunked, large, HTTP/1.0 ---------------------------------------------------------------

head -c 3000000 /dev/urandom >"$TMP/3m.bin"
hc /v1/echo -H "Transfer-Encoding: chunked" --data-binary @"$TMP/3m.bin"
expect_eq "chunked request body (3 MB) reaches the app intact" \
    "200 3000000 $(sha256sum <"$TMP/3m.bin" | cut -d' ' -f1)" \
    "$CODE $(rq 'str(R[-1]["body_len"]) + " " + R[-1]["body_sha256"]')"
hc /v1/chunked -o "$TMP/chunked.out"
want=$(printf '%s\n' "$HDRS" | sed -n 's/^[Xx]-[Ee]xpect-[Ss]ha256: *//p')
expect_eq "chunked response (/v1/chunked) arrives intact" "200 $want" "$CODE $(sha256sum <"$TMP/chunked.out" | cut -d' ' -f1)"
hc /v1/close -o "$TMP/close.out"
expect_eq "close-delimited response (/v1/close) arrives intact" "200 5" "$CODE $(grep -c '^close-delimited line' "$TMP/close.out")"

head -c 52428800 /dev/urandom >"$TMP/50m.bin"
hc /v1/echo --data-binary @"$TMP/50m.bin"
expect_eq "50 MB request body through both proxies intact" "200 52428800 $(sha256sum <"$TMP/50m.bin" | cut -d' ' -f1)" \
    "$CODE $(rq 'str(R[-1]["body_len"]) + " " + R[-1]["body_sha256"]')"
rm -f "$TMP/50m.bin"
got=$(timeout 30 curl -s --max-time 25 -H "Host: payments" "http://127.0.0.1:$FOUT/v1/big?bytes=52428800" | sha256sum | cut -d' ' -f1)
expect_eq "50 MB response body through both proxies intact" "$(python3 "$APP" --pattern-sha256 52428800)" "$got"

# RSS of both proxies while 200 MB stream each way with a slow reader on the other end
if nm -D "$WP" 2>/dev/null | grep -q __asan_init || nm "$WP" 2>/dev/null | grep -q __asan_init; then
    echo "SKIP: proxy RSS bound (AddressSanitizer build: shadow memory and quarantine)"
else
    rm -f "$TMP/rss.stop"
    (max=0
        while [ ! -e "$TMP/rss.stop" ]; do
            for p in $FRONT_PID $PAY_PID; do
                v=$(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null)
                [ "${v:-0}" -gt "$max" ] && max=$v
            done
            echo "$max" >"$TMP/rss.max"
            sleep 0.05
        done) &
    RSS_PID=$!
    down=$(timeout 30 curl -s --max-time 25 --limit-rate 100M -H "Host: payments" \
        "http://127.0.0.1:$FOUT/v1/big?bytes=209715200" | wc -c)
    truncate -s 200M "$TMP/200m.bin"
    timeout 30 curl -s -i --max-time 25 -X POST -T "$TMP/200m.bin" -H "Host: payments" \
        "http://127.0.0.1:$FOUT/v1/echo?throttle_mbps=100" >"$TMP/up.out"
    up=$(sed -n 's/.*"body_len": \([0-9]*\).*/\1/p' "$TMP/up.out")
    rm -f "$TMP/200m.bin"
    touch "$TMP/rss.stop"
    wait "$RSS_PID" 2>/dev/null
    RSS_PID=""
    rss=$(cat "$TMP/rss.max" 2>/dev/null)
    expect_eq "200 MB response body to a client reading at 100 MB/s arrives whole" 209715200 "$down"
    # the upload lasts about 2 s, longer than the payments proxy's timeouts.request (1s),
    # but never stalls: bytes flow all the time, at the pace the app reads them
    expect_eq "200 MB request body to an app reading at 100 MB/s (2 s of steady progress) arrives whole" \
        209715200 "${up:-cut: $(tail -c 200 "$TMP/up.out" 2>/dev/null | tr -d '\r' | tr '\n' ' ')}"
    check "proxy RSS stays below 64 MB while streaming (max ${rss:-?} kB)" '[ "${rss:-999999}" -lt 65536 ]'
fi

out=$(timeout 20 curl -s --http1.0 -D "$TMP/h10" -H "Host: payments" "http://127.0.0.1:$FOUT/v1/chunked" | sha256sum | cut -d' ' -f1)
want=$(tr -d '\r' <"$TMP/h10" | sed -n 's/^[Xx]-[Ee]xpect-[Ss]ha256: *//p')
check "HTTP/1.0 client: a chunked upstream response arrives de-chunked, intact, not chunked-framed" \
    "[ -n '$want' ] && [ '$out' = '$want' ] && ! grep -qi '^transfer-encoding' '$TMP/h10'" "$(cat "$TMP/h10")"
out=$(raw 127.0.0.1 "$FOUT" 'GET /v1/echo?h10=1 HTTP/1.0\r\nHost: payments\r\n\r\n')
check "HTTP/1.0 client: /v1/echo answered with a length- or close-delimited body, then closed" \
    "printf '%s' \"\$out\" | head -1 | grep -q '^HTTP/1.[01] 200' && printf '%s' \"\$out\" | grep -q '\"target\": \"/v1/echo?h10=1\"' && printf '%s' \"\$out\" | grep -q '<<closed>>'" \
    "$(printf '%s' "$out" | head -12)"

# ---- WebSocket ---------------------------------------------------------------------------------

out=$(timeout 20 python3 "$H" ws 127.0.0.1 "$FOUT" 2>&1)
check "WebSocket upgrade through both proxies: ${out#*|}" '[ "${out%%|*}" = ok ]'

# ---- normalization -------------------------------------------------------------------------------

hc /v1//x/./y --path-as-is
expect_eq "path normalization: /v1//x/./y is forwarded as /v1/x/y" "200 /v1/x/y" "$CODE $(rq 'R[-1]["target"]')"

# ---- header limits and smuggling, on both listeners -------------------------------------------------

# requests at the limits (100 fields; 60 KiB of field lines) are served end to end: the
# fields a proxy adds (X-Forwarded-For, traceparent) must not push them over at the next hop
# at_limit NAME PATH: checks the answer in $out; on failure, says whether the frontend
# decided (audited) the request, i.e. whether the 431 came from the payments proxy
at_limit() {
    local fwd=no
    audit_has "$TMP/audit-frontend" "a['request']['path'] == '$2' and a['decision'] == 'allow'" && fwd=yes
    check "$1" "printf '%s' \"\$out\" | head -1 | grep -q '^HTTP/1.1 200'" \
        "got: $(printf '%s' "$out" | tr -d '\r' | grep -v '^$' | tr '\n' ' ')" \
        "the frontend allowed and forwarded it (audit record for $2): $fwd"
}
n0=$(recs)
f98=$(python3 -c 'print("".join("X-F%03d: v\\r\\n" % i for i in range(98)), end="")')
out=$(raw 127.0.0.1 "$FOUT" "GET /v1/at-limit-fields HTTP/1.1\\r\\nHost: payments\\r\\n${f98}Connection: close\\r\\n\\r\\n")
at_limit "header limits: a request of exactly 100 fields (Host, 98 X-F*, Connection) gets through both proxies (200)" \
    /v1/at-limit-fields
# 16 (Host) + 19 (Connection) + pad line = 61440 - 64 bytes of field lines, CRLFs included
pad=$(python3 -c 'print("b" * (61440 - 64 - 16 - 19 - 9), end="")')
out=$(raw 127.0.0.1 "$FOUT" "GET /v1/at-limit-bytes HTTP/1.1\\r\\nHost: payments\\r\\nConnection: close\\r\\nX-Pad: ${pad}\\r\\n\\r\\n")
at_limit "header limits: a request with 60 KiB - 64 bytes of field lines gets through both proxies (200)" \
    /v1/at-limit-bytes
expect_eq "header limits: the app recorded both requests at the limits" 2 "$(($(recs) - n0))"

# warm_pools: 24 concurrent requests, so that every worker of both proxies holds idle
# pooled upstream connections, as in a busy mesh. The smuggling runs below then do not
# depend on which worker happens to accept them: with a pooled upstream connection at
# hand a proxy forwards a request head at once, so a body refused later (bad chunk) would
# show; with cold pools the same bug shows only when the accepting worker has one.
warm_pools() {
    local i pids=()
    for i in $(seq 24); do
        timeout 10 curl -s -o /dev/null -H "Host: payments" "http://127.0.0.1:$FOUT/v1/slow?ms=300&warm=$i" &
        pids+=($!)
    done
    wait "${pids[@]}"
}

run_vectors() { # WHERE PORT [CERT KEY CA]
    local where=$1 port=$2 verdict label detail
    shift 2
    while IFS='|' read -r verdict label detail; do
        if [ "$verdict" = ok ]; then
            pass "$where: $label -> rejected, nothing reached the app ($detail)"
        else
            fail "$where: $label" "$detail"
        fi
    done < <(timeout 120 python3 "$H" vectors 127.0.0.1 "$port" "$REC" "$@")
}
warm_pools
run_vectors "outbound listener" "$FOUT"
warm_pools
run_vectors "inbound listener (mTLS)" "$PIN" "${FRONT_TLS[@]}"
if ! kill -0 "$APP_PID" 2>/dev/null; then
    fail "the test app is still running after the smuggling vectors" "$(tail -5 "$TMP/app.log")"
    start_mesh_app app "$APP_PORT"
fi

# ---- mTLS refusals at the payments inbound listener ----------------------------------------------------

# s_client NAME [args]: one HTTP request over openssl s_client to the payments inbound; prints what came back
s_client() {
    printf 'GET /v1/echo HTTP/1.1\r\nHost: payments\r\nConnection: close\r\n\r\n' |
        timeout 8 openssl s_client -connect "127.0.0.1:$PIN" -quiet -CAfile "$PKI/ca.pem" "$@" 2>&1
}
out=$(s_client -cert "$PKI/frontend.pem" -key "$PKI/frontend.key")
check "mTLS control: the frontend's SVID over openssl s_client gets 200" \
    "printf '%s' \"\$out\" | grep -q '^HTTP/1.1 200'" "$(printf '%s' "$out" | head -5)"
f0=$(tls_failures)
n0=$(recs)
refused() { # NAME s_client-args...
    local name=$1 out
    shift
    out=$(s_client "$@")
    check "mTLS refusal: $name: no HTTP response" "! printf '%s' \"\$out\" | grep -q '^HTTP/'" \
        "$(printf '%s' "$out" | tail -5)"
}
refused "no client certificate"
refused "a certificate from another CA with the same trust domain" -cert "$PKI/rogue.pem" -key "$PKI/rogue.key"
refused "an expired certificate from the right CA" -cert "$PKI/expired.pem" -key "$PKI/expired.key"
refused "a certificate of another trust domain (spiffe://other.org/...)" -cert "$PKI/othertd.pem" -key "$PKI/othertd.key"
refused "a TLS 1.2 only client with a valid certificate" -tls1_2 -cert "$PKI/frontend.pem" -key "$PKI/frontend.key"
expect_eq "mTLS refusals: the app recorded nothing" 0 "$(($(recs) - n0))"
f1=$(tls_failures)
check "mTLS refusals: ward_tls_handshake_failures_total (inbound) rose by at least 5 ($f0 -> $f1)" \
    '[ "$((f1 - f0))" -ge 5 ]' "$(curl -s "http://127.0.0.1:$PADM/metrics" | grep tls_handshake)"

# ---- upstream identity and failures ---------------------------------------------------------------------

n0=$(recs)
HOST=impostor hc /v1/echo
reason=$(printf '%s\n' "$HDRS" | sed -n 's/^[Xx]-[Ww]ard-[Rr]eason: *//p')
check "upstream identity mismatch: 502 with X-Ward-Reason ($reason)" '[ "$CODE" = 502 ] && [ -n "$reason" ]' \
    "code $CODE" "$HDRS"
expect_eq "upstream identity mismatch: the app recorded nothing" 0 "$(($(recs) - n0))"
HOST=nowhere hc /v1/echo
reason=$(printf '%s\n' "$HDRS" | sed -n 's/^[Xx]-[Ww]ard-[Rr]eason: *//p')
check "upstream endpoint refusing connections: 503 with X-Ward-Reason ($reason)" '[ "$CODE" = 503 ] && [ -n "$reason" ]' \
    "code $CODE" "$HDRS"
HOST=unknown-service hc /v1/echo
expect_eq "unknown upstream service in Host: 404" 404 "$CODE"

hc /v1/crash
expect_eq "app closes without a response (/v1/crash): 502" 502 "$CODE"
timeout 20 curl -s --max-time 10 -H "Host: payments" -o "$TMP/reset.out" "http://127.0.0.1:$FOUT/v1/reset"
rc=$?
check "app resets mid-response (/v1/reset): the client sees an error, not a short well-formed body (curl exit $rc, $(wc -c <"$TMP/reset.out") bytes)" \
    '[ "$rc" -ne 0 ]'
t0=$(date +%s%N)
hc "/v1/slow?ms=2500"
ms=$((($(date +%s%N) - t0) / 1000000))
check "app slower than timeouts.request (1s): 504 after about 1 s (${ms} ms)" \
    '[ "$CODE" = 504 ] && [ "$ms" -lt 2400 ]' "code $CODE" "$HDRS"
for s in 200 404 418 503; do
    hc "/v1/status/$s"
    expect_eq "app status $s is passed through" "$s" "$CODE"
done

# ---- slow and garbage clients ---------------------------------------------------------------------------

timeout 20 python3 "$H" slowloris 127.0.0.1 "$FOUT" plain >"$TMP/slow1" &
sl1=$!
timeout 20 python3 "$H" slowloris 127.0.0.1 "$PIN" silent >"$TMP/slow2" &
sl2=$!
wait "$sl1" "$sl2"
IFS='|' read -r secs line how <"$TMP/slow1"
check "slowloris on the outbound listener (a byte a second): cut after header_read 2s (${secs}s, \"$line\", $how)" \
    "awk -v s='${secs:-99}' 'BEGIN {exit !(s >= 1.5 && s <= 4)}' && [ '$how' != open ] && { [ -z '$line' ] || printf '%s' '$line' | grep -q ' 408 '; }"
IFS='|' read -r secs line how <"$TMP/slow2"
check "silent connection on the inbound listener (no TLS handshake): closed after header_read 2s (${secs}s, $how)" \
    "awk -v s='${secs:-99}' 'BEGIN {exit !(s >= 1.5 && s <= 4)}' && [ '$how' != open ]"

n0=$(recs)
for seed in 1 2 3; do
    out=$(timeout 20 python3 "$H" garbage 127.0.0.1 "$FOUT" "$seed")
    check "garbage bytes (seed $seed) to the outbound listener: 400 or close ($out)" \
        "printf '%s' \"\$out\" | grep -Eq '^(HTTP/1.1 400 .*)?\\|(closed|reset)$'"
    out=$(timeout 20 python3 "$H" garbage 127.0.0.1 "$PIN" "$seed")
    check "garbage bytes (seed $seed) to the inbound TLS listener: closed, no HTTP ($out)" \
        "printf '%s' \"\$out\" | grep -Eq '^\\|(closed|reset)$'"
done
expect_eq "garbage: the app recorded nothing" 0 "$(($(recs) - n0))"
hc /v1/echo
expect_eq "after the garbage both proxies still serve: 200" 200 "$CODE"

# ---- the app goes away and comes back ---------------------------------------------------------------------

kill -KILL "$APP_PID" 2>/dev/null
wait "$APP_PID" 2>/dev/null
APP_PID=""
hc /v1/echo
reason=$(printf '%s\n' "$HDRS" | sed -n 's/^[Xx]-[Ww]ard-[Rr]eason: *//p')
check "app down: 503 ($reason)" '[ "$CODE" = 503 ]' "code $CODE" "$HDRS"
if start_mesh_app app "$APP_PORT"; then
    hc /v1/echo
    check "app back on its port: 200 again" '[ "$CODE" = 200 ]' "code $CODE" "$HDRS"
else
    fail "the app restarts on port $APP_PORT" "$(tail -3 "$TMP/app.log")"
fi

# ---- the proxies survived, cleanly -------------------------------------------------------------------------

check "both proxies are alive at the end" 'kill -0 "$FRONT_PID" 2>/dev/null && kill -0 "$PAY_PID" 2>/dev/null'
kill -TERM "$FRONT_PID" "$PAY_PID" 2>/dev/null
for p in FRONT_PID PAY_PID; do
    pid=${!p}
    timeout 15 tail --pid="$pid" -f /dev/null
    wait "$pid" 2>/dev/null
    rc=$?
    eval "$p=''"
    expect_eq "SIGTERM: $p exits 0" 0 "$rc"
done
bad=$(grep -hE 'AddressSanitizer|LeakSanitizer|runtime error|ThreadSanitizer' "$TMP/frontend.log" "$TMP/payments.log" | head -5)
check "no sanitizer reports in the proxies' stderr" '[ -z "$bad" ]' "$bad"

finish
