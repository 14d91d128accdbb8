#!/usr/bin/python3
"""audit_fixture.py - write, tamper with and check audit trails exactly as docs/audit.md specifies.

Independent of Ward's C code: the trails it writes are what the reader
(wardctl audit verify/export/query) is tested against, and `check` verifies
any trail (including one written by the real writer) against the spec.

  audit_fixture.py gen DIR [--records N] [--per-segment K] [--checkpoint-every C]
                           [--start RFC3339] [--step-ms MS] [--seed S] [--hostile]
                           [--gap-at SEQ] [--no-final-checkpoint]
  audit_fixture.py keygen PUBFILE                 another Ed25519 key (a wrong --key)
  audit_fixture.py tamper DIR KIND [--seq N] [--line K] [--index I]
        KIND: modify delete swap truncate drop-segment forge-sig rechain
        prints "file=F line=L seq=S" of the first bad record (what verify must name)
  audit_fixture.py check DIR [--key PUB]         exit 0 verified, 1 tampered
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import random
import re
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

ZERO = "0" * 64
NODE = "spiffe://example.org/ns/shop/sa/payments-proxy"
SEG_RE = re.compile(r"^segment-(\d{20})\.jsonl$")

PRINCIPALS = [
    "spiffe://example.org/ns/shop/sa/checkout",
    "spiffe://example.org/ns/shop/sa/frontend",
    "spiffe://example.org/ns/ops/sa/debugger",
    "spiffe://example.org/ns/batch/sa/reports",
]
SERVICES = ["payments", "inventory", "orders"]
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]
PATHS = ["/v1/items", "/v1/items/42", "/v1/orders", "/admin/users", "/healthz"]

# Records with values that break naive exporters (CSV formulas, CEF | = \ and
# newlines, JSON escapes); the tests know them by seq.
HOSTILE = {
    2: {"source.principal": "spiffe://example.org/ns/evil/sa/a|b=c\\d\ne",
        "request.path": "/x|y=z\\w\r\nInjected: 1",
        "reason": "=HYPERLINK(\"http://evil\",\"click\")",
        "request.host": "+cmd|' /C calc'!A0",
        "policy": "@evil/policy,with \"quotes\""},
    3: {"reason": "-2+3", "request.host": "\tpayments", "source.principal": "plain, \"quoted\"",
        "request.path": "/caf\u00e9/\u2028/\u0000"},
}


def ts_str(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def seal(body, prev):
    """body: a record's JSON without its closing brace. Returns (line, hash)."""
    hashed = body + ',"prev":"' + prev + '"'
    h = hashlib.sha256(hashed.encode("utf-8")).hexdigest()
    return hashed + ',"hash":"' + h + '"}\n', h


def seg_name(first):
    return "segment-%020d.jsonl" % first


def key_id(pub):
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def checkpoint_line(key, node, seq, head, ts, segment, kid=None, sign_key=None):
    msg = "ward-audit-checkpoint/1\n%s\n%d\n%s\n%s\n" % (node or "", seq, head, ts)
    sig = (sign_key or key).sign(msg.encode("utf-8"))
    cp = {"v": 1, "seq": seq, "head": head, "ts": ts, "node": node, "segment": segment,
          "key": kid or key_id(key.public_key()), "sig": base64.b64encode(sig).decode()}
    return dumps(cp) + "\n"


def record(rng, seq, t, node, hostile):
    method = rng.choice(METHODS)
    decision = "deny" if rng.random() < 0.3 else "allow"
    policy = rng.choice(["shop/payments-read", "shop/deny-admin", None])
    rule = rng.randrange(3) if policy else None
    rec = {
        "v": 1, "seq": seq, "ts": ts_str(t), "id": "%032x" % rng.getrandbits(128), "node": node,
        "direction": "inbound" if rng.random() < 0.7 else "outbound", "decision": decision,
        "policy": policy, "rule": rule,
        "reason": ("matched %s rule %d" % (policy, rule)) if policy else "no ALLOW policy matched",
        "audit": rng.random() < 0.05,
        "dry_run": ({"decision": "deny", "policy": "shop/dry", "rule": 0}
                    if rng.random() < 0.1 else None),
        "source": {"principal": rng.choice(PRINCIPALS),
                   "ip": "10.0.%d.%d" % (rng.randrange(4), rng.randrange(1, 250)),
                   "port": rng.randrange(1024, 65535)},
        "destination": {"service": rng.choice(SERVICES),
                        "principal": "spiffe://example.org/ns/shop/sa/payments", "port": 8443},
        "request": {"method": method, "host": "payments", "path": rng.choice(PATHS),
                    "protocol": "HTTP/1.1"},
        "response": {"status": 403 if decision == "deny" else rng.choice([200, 200, 201, 404])},
        "bundle": "sha256:" + "ab" * 8, "trace_id": "%032x" % rng.getrandbits(128),
        "latency_ns": rng.randrange(800, 40000),
        "peer_cert_sha256": "%064x" % rng.getrandbits(256),
    }
    if decision == "deny" and rng.random() < 0.5:
        rec["response"] = {"status": 403}
    for k, v in (HOSTILE.get(seq, {}) if hostile else {}).items():
        if "." in k:
            a, b = k.split(".")
            rec[a][b] = v
        else:
            rec[k] = v
    return rec


def cmd_gen(a):
    rng = random.Random(a.seed)
    os.makedirs(a.dir, mode=0o700, exist_ok=True)
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ward-test-%d" % a.seed).digest())
    with open(os.path.join(a.dir, "checkpoint.key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(os.path.join(a.dir, "checkpoint.key"), 0o600)
    with open(os.path.join(a.dir, "checkpoint.pub"), "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    t0 = datetime.datetime.strptime(a.start, "%Y-%m-%dT%H:%M:%SZ")
    step = datetime.timedelta(milliseconds=a.step_ms)
    prev = ZERO
    seg = None
    segname = None
    cps = open(os.path.join(a.dir, "checkpoints.jsonl"), "w", encoding="utf-8")
    out = []
    last_cp = 0
    gaps = set(a.gap_at or [])
    for seq in range(1, a.records + 1):
        if (seq - 1) % a.per_segment == 0:
            segname = seg_name(seq)
            seg = open(os.path.join(a.dir, segname), "w", encoding="utf-8")
        t = t0 + step * (seq - 1)
        if seq in gaps:
            body = dumps({"v": 1, "seq": seq, "ts": ts_str(t), "node": a.node, "gap": 3,
                          "reason": "3 allow record(s) dropped: audit ring full (overflow: drop)"})
        else:
            body = dumps(record(rng, seq, t, a.node, a.hostile))
        line, prev = seal(body[:-1], prev)
        out.append(line)
        if len(out) >= 4096:
            seg.write("".join(out))
            out = []
        end_of_seg = seq % a.per_segment == 0 or seq == a.records
        if seq % a.checkpoint_every == 0 or (end_of_seg and seq != a.records) or \
                (seq == a.records and not a.no_final_checkpoint):
            cps.write(checkpoint_line(key, a.node, seq, prev, ts_str(t), segname))
            last_cp = seq
        if end_of_seg:
            seg.write("".join(out))
            out = []
            seg.close()
            os.chmod(os.path.join(a.dir, segname), 0o400 if seq != a.records else 0o600)
    cps.close()
    print("records=%d segments=%d last_checkpoint=%d" %
          (a.records, (a.records + a.per_segment - 1) // a.per_segment, last_cp))


def cmd_keygen(a):
    key = Ed25519PrivateKey.generate()
    with open(a.pubfile, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


# ---- reading -----------------------------------------------------------------------------

def segments(d):
    segs = []
    for n in os.listdir(d):
        m = SEG_RE.match(n)
        if m:
            segs.append((int(m.group(1)), n))
    return [n for _, n in sorted(segs)]


def read_lines(path):
    with open(path, "rb") as f:
        return f.read().split(b"\n")[:-1]


def locate(d, seq):
    """(segment, 1-based line, raw line) of record seq."""
    pre = b'{"v":1,"seq":%d,' % seq
    for n in segments(d):
        for i, l in enumerate(read_lines(os.path.join(d, n))):
            if l.startswith(pre):
                return n, i + 1, l
    raise SystemExit("seq %d not found" % seq)


def write_lines(path, lines):
    os.chmod(path, 0o600)
    with open(path, "wb") as f:
        f.write(b"".join(l + b"\n" for l in lines))


def rehash(line, prev):
    body = line[:line.rindex(b',"prev":"')]
    text, h = seal(body.decode("utf-8"), prev)
    return text.encode("utf-8")[:-1], h


def cmd_tamper(a):
    d = a.dir
    if a.kind == "modify":  # one byte of a field, hash left as it was
        n, ln, l = locate(d, a.seq)
        i = l.index(b'"decision":"') + len(b'"decision":"')
        new = l[:i] + (b"x" if l[i:i + 1] != b"x" else b"y") + l[i + 1:]
        lines = read_lines(os.path.join(d, n))
        lines[ln - 1] = new
        write_lines(os.path.join(d, n), lines)
        print("file=%s line=%d seq=%d" % (n, ln, a.seq))
    elif a.kind == "delete":
        n, ln, _ = locate(d, a.seq)
        lines = read_lines(os.path.join(d, n))
        del lines[ln - 1]
        write_lines(os.path.join(d, n), lines)
        print("file=%s line=%d seq=%d" % (n, ln, a.seq))
    elif a.kind == "swap":  # records seq and seq+1 trade places
        n, ln, _ = locate(d, a.seq)
        lines = read_lines(os.path.join(d, n))
        lines[ln - 1], lines[ln] = lines[ln], lines[ln - 1]
        write_lines(os.path.join(d, n), lines)
        print("file=%s line=%d seq=%d" % (n, ln, a.seq + 1))
    elif a.kind == "truncate":  # cut the last segment in the middle of record seq
        n, ln, l = locate(d, a.seq)
        assert n == segments(d)[-1], "truncate works on the last segment"
        lines = read_lines(os.path.join(d, n))
        keep = b"".join(x + b"\n" for x in lines[:ln - 1]) + l[:len(l) // 2]
        os.chmod(os.path.join(d, n), 0o600)
        with open(os.path.join(d, n), "wb") as f:
            f.write(keep)
        print("file=%s line=%d seq=%d" % (n, ln, a.seq))
    elif a.kind == "drop-segment":
        n = segments(d)[a.index]
        first = int(SEG_RE.match(n).group(1))
        os.unlink(os.path.join(d, n))
        print("file=%s line=0 seq=%d" % (n, first))
    elif a.kind == "forge-sig":  # checkpoint line K claims another head, signed by another key
        p = os.path.join(d, "checkpoints.jsonl")
        lines = read_lines(p)
        cp = json.loads(lines[a.line - 1])
        thief = Ed25519PrivateKey.generate()
        real = serialization.load_pem_public_key(open(os.path.join(d, "checkpoint.pub"), "rb").read())
        forged = checkpoint_line(thief, cp["node"], cp["seq"], "f" * 64, cp["ts"], cp["segment"],
                                 kid=key_id(real))
        lines[a.line - 1] = forged.encode("utf-8")[:-1]
        write_lines(p, lines)
        print("file=checkpoints.jsonl line=%d seq=%d" % (a.line, cp["seq"]))
    elif a.kind == "rechain":  # modify record seq, recompute every hash after it
        segs = segments(d)
        prev = ZERO
        for n in segs:
            lines = read_lines(os.path.join(d, n))
            for i, l in enumerate(lines):
                seq = int(l[13:l.index(b",", 13)])
                if seq == a.seq:
                    l = l.replace(b'"decision":"allow"', b'"decision":"deny"', 1) \
                        if b'"decision":"allow"' in l else \
                        l.replace(b'"decision":"deny"', b'"decision":"allow"', 1)
                if seq >= a.seq:
                    l, prev = rehash(l, prev)
                    lines[i] = l
                else:
                    prev = json.loads(l)["hash"]
            write_lines(os.path.join(d, n), lines)
        # the first checkpoint at or after seq is what catches it
        cps = [json.loads(l) for l in read_lines(os.path.join(d, "checkpoints.jsonl"))]
        k = min((i for i, c in enumerate(cps) if c["seq"] >= a.seq), key=lambda i: cps[i]["seq"])
        print("file=checkpoints.jsonl line=%d seq=%d" % (k + 1, cps[k]["seq"]))
    else:
        raise SystemExit("unknown kind " + a.kind)


def cmd_check(a):
    """An independent verifier of docs/audit.md (slow, simple): the first problem wins."""
    d = a.dir
    pub = serialization.load_pem_public_key(open(a.key or os.path.join(d, "checkpoint.pub"),
                                                 "rb").read())
    assert isinstance(pub, Ed25519PublicKey)
    kid = key_id(pub)
    heads = {}
    for i, l in enumerate(read_lines(os.path.join(d, "checkpoints.jsonl")) if
                          os.path.exists(os.path.join(d, "checkpoints.jsonl")) else []):
        cp = json.loads(l)
        msg = "ward-audit-checkpoint/1\n%s\n%d\n%s\n%s\n" % (cp["node"] or "", cp["seq"],
                                                              cp["head"], cp["ts"])
        if cp["key"] != kid:
            print("forged checkpoint: checkpoints.jsonl:%d: key id" % (i + 1))
            return 1
        try:
            pub.verify(base64.b64decode(cp["sig"], validate=True), msg.encode("utf-8"))
        except Exception:
            print("forged checkpoint: checkpoints.jsonl:%d: signature" % (i + 1))
            return 1
        heads.setdefault(cp["seq"], []).append(cp["head"])
    prev, expect, n = ZERO, 1, 0
    segs = segments(d)
    every = [(name, i + 1, l) for name in segs for i, l in enumerate(read_lines(os.path.join(d, name)))]
    pos = 0
    for si, name in enumerate(segs):
        data = open(os.path.join(d, name), "rb").read()
        lines = data.split(b"\n")
        if lines[-1] != b"":
            if si != len(segs) - 1:
                print("truncated: %s: no final newline" % name)
                return 1
        first = int(SEG_RE.match(name).group(1))
        if len(lines) > 1 and first > expect and json.loads(lines[0])["seq"] == first:
            print("truncated: %s: seq %d: segment missing" % (seg_name(expect), expect))
            return 1
        for i, l in enumerate(lines[:-1]):
            pos += 1
            rec = json.loads(l)  # every line is one JSON object
            cut = l.rindex(b',"hash":"')
            if hashlib.sha256(l[:cut]).hexdigest() != rec["hash"] or \
                    l[cut:] != b',"hash":"' + rec["hash"].encode() + b'"}':
                print("modified: %s:%d: seq %s" % (name, i + 1, rec.get("seq")))
                return 1
            if rec["seq"] != expect:
                later = any(x[2].startswith(b'{"v":1,"seq":%d,' % expect) for x in every[pos:])
                kind = "deleted" if rec["seq"] > expect and not later else "reordered"
                print("%s: %s:%d: seq %d (expected %d)" % (kind, name, i + 1, rec["seq"], expect))
                return 1
            if rec["prev"] != prev:
                print("modified: %s:%d: prev" % (name, i + 1))
                return 1
            for h in heads.get(rec["seq"], []):
                if h != rec["hash"]:
                    print("forged checkpoint: head of seq %d" % rec["seq"])
                    return 1
            prev, expect, n = rec["hash"], expect + 1, n + 1
    if heads and max(heads) >= expect:
        print("truncated: ends at %d below checkpoint %d" % (expect - 1, max(heads)))
        return 1
    print("ok: %d records, %d segments, %d checkpoints" % (n, len(segs),
                                                            sum(len(v) for v in heads.values())))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("dir")
    g.add_argument("--records", type=int, default=1000)
    g.add_argument("--per-segment", type=int, default=400)
    g.add_argument("--checkpoint-every", type=int, default=100)
    g.add_argument("--start", default="2026-11-26T02:00:00Z")
    g.add_argument("--step-ms", type=int, default=1000)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--node", default=NODE)
    g.add_argument("--hostile", action="store_true")
    g.add_argument("--gap-at", type=int, action="append")
    g.add_argument("--no-final-checkpoint", action="store_true")
    k = sub.add_parser("keygen")
    k.add_argument("pubfile")
    t = sub.add_parser("tamper")
    t.add_argument("dir")
    t.add_argument("kind")
    t.add_argument("--seq", type=int, default=0)
    t.add_argument("--line", type=int, default=1)
    t.add_argument("--index", type=int, default=0)
    c = sub.add_parser("check")
    c.add_argument("dir")
    c.add_argument("--key")
    a = p.parse_args()
    return {"gen": cmd_gen, "keygen": cmd_keygen, "tamper": cmd_tamper, "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main() or 0)
