#!/usr/bin/env bash
# test_audit_sink.sh - ward-proxy ships its audit trail to a real rsyslog (imtcp, RFC 5424 octet-counted; TLS via gtls): every record arrives with its seq and hash, none is lost while rsyslog is down.
#
# rsyslogd runs in the foreground with its own configuration (imtcp on a free
# loopback port; every message written as one line: the fields its RFC 5424
# parser found, then the message as received), never the system one. The trail starts as a 30,000-record fixture
# (audit_fixture.py, with hostile values and a gap record) that ward-proxy
# continues with the records of real mTLS requests (allowed and denied).
. "$(dirname "$0")/lib.sh"

HERE="$(cd "$(dirname "$0")" && pwd)"
WP="$BIN/ward-proxy"
FIX="$HERE/audit_fixture.py"
TD=example.org
FRONT_ID="spiffe://$TD/ns/shop/sa/frontend"
PAY_ID="spiffe://$TD/ns/shop/sa/payments"
RSYSLOGD=$(command -v rsyslogd || echo /usr/sbin/rsyslogd)
FIXTURE_RECORDS=30000
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ ! -x "$RSYSLOGD" ]; then
    fail "rsyslog is installed" "apt-get install rsyslog rsyslog-gnutls (make deps)"
    finish
fi
if [ ! -x "$WP" ]; then
    fail "ward-proxy is built" "missing $WP (run make)"
    finish
fi
if ! python3 -c 'import cryptography' 2>/dev/null; then
    fail "python3-cryptography is installed"
    finish
fi
HAVE_GTLS=0
for d in /usr/lib/x86_64-linux-gnu/rsyslog /usr/lib/rsyslog /usr/lib/*/rsyslog; do
    [ -e "$d/lmnsd_gtls.so" ] && HAVE_GTLS=1
done

check() { if eval "$2"; then pass "$1"; else fail "$1" "${3:-}"; fi; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- certificates: the mesh (SPIFFE) and the log collector (a separate CA) -------------------

PKI="$TMP/pki"
mkdir -p "$PKI"
ca() { # ca NAME SUBJECT-ALT-NAME
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$PKI/$1.key" \
        -out "$PKI/$1.pem" -days 2 -subj "/O=test/CN=$1" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectAltName=$2" 2>/dev/null
}
leaf() { # leaf NAME CA SUBJECT-ALT-NAME
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null &&
        openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$2.pem" -CAkey "$PKI/$2.key" -CAcreateserial \
            -out "$PKI/$1.pem" -days 1 -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
                "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" \
                "subjectAltName=$3") 2>/dev/null &&
        chmod 600 "$PKI/$1.key"
}
ca ca "URI:spiffe://$TD" && leaf payments ca "URI:$PAY_ID" && leaf frontend ca "URI:$FRONT_ID" &&
    ca logs-ca "DNS:logs-ca" && ca other-ca "DNS:other-ca" &&
    leaf collector logs-ca "DNS:localhost,IP:127.0.0.1" && leaf sink logs-ca "DNS:ward-proxy"
for f in ca payments frontend logs-ca other-ca collector sink; do
    if [ ! -s "$PKI/$f.pem" ]; then
        fail "test certificates are made" "no $PKI/$f.pem"
        finish
    fi
done

# ---- helpers --------------------------------------------------------------------------------

PY="$TMP/sink.py"
cat >"$PY" <<'EOF'
"""Load and checks for test_audit_sink.sh."""
import glob, hashlib, http.client, json, os, re, socket, ssl, sys, time

def load(port, n, cert, key, ca):
    """n mTLS requests to the payments inbound listener: every third a DELETE (denied)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(ca)
    ctx.load_cert_chain(cert, key)
    conn, codes = None, {}
    for i in range(int(n)):
        for attempt in range(5):
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=10)
                conn.request("DELETE" if i % 3 == 0 else "GET", "/v1/echo?i=%d" % i,
                             headers={"Host": "payments"})
                r = conn.getresponse()
                r.read()
                codes[r.status] = codes.get(r.status, 0) + 1
                if (r.getheader("connection") or "").lower() == "close":
                    conn.close()
                    conn = None
                break
            except (OSError, http.client.HTTPException) as e:
                conn = None
                err = "%s:%s" % (type(e).__name__, e)
                sys.stderr.write("request %d, attempt %d: %s\n" % (i, attempt + 1, err))
                time.sleep(0.05 * (attempt + 1))
    print(" ".join("%s:%d" % kv for kv in sorted(codes.items())))

def trail(d):
    """seq -> line (bytes) of every record of the trail in d."""
    out = {}
    for p in sorted(glob.glob(os.path.join(d, "segment-*.jsonl"))):
        for line in open(p, "rb").read().split(b"\n"):
            if line:
                out[json.loads(line)["seq"]] = line
    return out

FIELDS = ("pri", "ts", "host", "app", "procid", "msgid", "sd", "raw")
SEQ = re.compile(rb'seq="(\d+)"')

def lines_of(pattern):
    """The complete lines of every file rsyslog wrote (one file per start of rsyslog: a
    line that a kill -9 cut is left out) and how many were cut."""
    out, torn = [], 0
    for p in sorted(glob.glob(pattern)):
        data = open(p, "rb").read()
        ls = data.split(b"\n")
        if ls[-1]:
            torn += 1
        out += [l for l in ls[:-1] if l]
    return out, torn

def received(pattern):
    """The messages rsyslog wrote: the fields it parsed, then the message as received."""
    ls, torn = lines_of(pattern)
    return [dict(zip(FIELDS, l.split(b"|", 7))) for l in ls], torn

def count(pattern):
    """Distinct seqs received (from the SD) and messages."""
    seqs = set()
    ls, _ = lines_of(pattern)
    for l in ls:
        m = SEQ.search(l)
        if m:
            seqs.add(int(m.group(1)))
    return seqs, len(ls)

def wait(pattern, d, timeout):
    """Waits until every seq of the trail has arrived, reading only what rsyslog appends;
    prints "got want seconds seconds-since-the-first-new-message"."""
    t0 = time.monotonic()
    first = None
    want = set(trail(d))
    # what is there now, counted from the same read that sets where reading
    # goes on (a message written in between is neither lost nor counted twice)
    seqs, files = set(), {}
    for p in glob.glob(pattern):
        with open(p, "rb") as f:
            data = f.read()
        cut = data.rfind(b"\n") + 1
        for l in data[:cut].split(b"\n"):
            m = SEQ.search(l)
            if m:
                seqs.add(int(m.group(1)))
        files[p] = [cut, b""]
    while True:
        for p in glob.glob(pattern):
            off, buf = files.setdefault(p, [0, b""])
            with open(p, "rb") as f:
                f.seek(off)
                data = f.read()
            if not data:
                continue
            if first is None:
                first = time.monotonic()
            ls = (buf + data).split(b"\n")
            files[p] = [off + len(data), ls.pop()]
            for l in ls:
                m = SEQ.search(l)
                if m:
                    seqs.add(int(m.group(1)))
        if want <= seqs or time.monotonic() - t0 > float(timeout):
            break
        time.sleep(0.02)
    t1 = time.monotonic()
    print("%d %d %.3f %.3f" % (len(want & seqs), len(want), t1 - t0, t1 - (first or t1)))

def check(path, d, facility):
    """Every record of the trail arrived, each message exact: prints findings, then a summary."""
    facility = int(facility)
    recs = trail(d)
    msgs, torn = received(path)
    seen, bad = {}, []
    host = socket.gethostname().encode()
    for m in msgs:
        raw = m.get("raw", b"")
        i = raw.find(b"] \xef\xbb\xbf")
        if i < 0:
            bad.append("no SD and BOM: %r" % raw[:80])
            continue
        line = raw[i + 5:]
        rec = json.loads(line)
        seq = rec["seq"]
        seen[seq] = seen.get(seq, 0) + 1
        if recs.get(seq) != line:
            bad.append("seq %d: message is not the stored line" % seq)
            continue
        h = hashlib.sha256(line[:line.rindex(b',"hash":')]).hexdigest()
        if h != rec["hash"]:
            bad.append("seq %d: hash does not verify" % seq)
        sd = '[ward@32473 seq="%d"' % seq
        if "id" in rec:
            sd += ' id="%s"' % rec["id"]
        if "decision" in rec:
            sd += ' decision="%s"' % rec["decision"]
        if "gap" in rec:
            sd += ' gap="%d"' % rec["gap"]
        sd += ' hash="%s"]' % rec["hash"]
        sev = 3 if "gap" in rec else 4 if rec.get("decision") == "deny" else 5
        msgid = "gap" if "gap" in rec else "decision"
        want = b"<%d>1 %s %s ward-proxy %s %s %s \xef\xbb\xbf" % (
            facility * 8 + sev, rec["ts"].encode(), host, m["procid"], msgid.encode(), sd.encode())
        if raw != want + line or not m["procid"].isdigit():
            bad.append("seq %d: message %r, want %r" % (seq, raw[:i + 5], want))
        # what rsyslog made of it (its RFC 5424 parser)
        parsed = {"pri": str(facility * 8 + sev), "ts": rec["ts"], "host": host.decode(),
                  "app": "ward-proxy", "msgid": msgid, "sd": sd}
        for k, v in parsed.items():
            if m[k].decode() != v:
                bad.append("seq %d: rsyslog's %s is %r, want %r" % (seq, k, m[k], v))
    missing = sorted(set(recs) - set(seen))
    for b in bad[:5]:
        print("bad: " + b)
    if missing:
        print("missing: %d, first %s" % (len(missing), missing[:10]))
    dups = sum(v - 1 for v in seen.values())
    kinds = {}
    for s in seen:
        r = json.loads(recs[s])
        k = "gap" if "gap" in r else r.get("decision")
        kinds[k] = kinds.get(k, 0) + 1
    if torn:
        print("rsyslog's own output: %d line(s) cut by kill -9 (left out)" % torn)
    print("records=%d received=%d duplicates=%d missing=%d bad=%d allow=%d deny=%d gap=%d" %
          (len(recs), len(msgs), dups, len(missing), len(bad), kinds.get("allow", 0),
           kinds.get("deny", 0), kinds.get("gap", 0)))

def nmsgs(path):
    print(count(path)[1])

def lastseq(d):
    print(max(trail(d)))

if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
EOF

# start_rsyslog NAME PORT [tls]: rsyslogd -n with $TMP/NAME.conf writing $TMP/NAME.out.<start>
# (a new file at each start); sets RS_PID
RS_STARTS=0
start_rsyslog() {
    local name=$1 port=$2 tls=${3:-}
    RS_STARTS=$((RS_STARTS + 1))
    mkdir -p "$TMP/$name.work"
    {
        echo "global(workDirectory=\"$TMP/$name.work\" maxMessageSize=\"64k\")"
        if [ -n "$tls" ]; then
            echo "global(defaultNetstreamDriverCAFile=\"$PKI/logs-ca.pem\""
            echo "       defaultNetstreamDriverCertFile=\"$PKI/collector.pem\""
            echo "       defaultNetstreamDriverKeyFile=\"$PKI/collector.key\")"
            echo "module(load=\"imtcp\" streamDriver.name=\"gtls\" streamDriver.mode=\"1\""
            echo "       streamDriver.authMode=\"x509/certvalid\")"
        else
            echo 'module(load="imtcp")'
        fi
        cat <<EOF
input(type="imtcp" port="$port" address="127.0.0.1")
template(name="fields" type="string"
         string="%pri%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%rawmsg%\n")
*.* action(type="omfile" file="$TMP/$name.out.$RS_STARTS" template="fields")
EOF
    } >"$TMP/$name.conf"
    "$RSYSLOGD" -n -f "$TMP/$name.conf" -i "$TMP/$name.pid" >>"$TMP/$name.log" 2>&1 &
    RS_PID=$!
    PIDS+=("$RS_PID")
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2).close()" \
            2>/dev/null && return 0
        kill -0 "$RS_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# start_proxy NAME: ward-proxy with $TMP/NAME.yaml, log $TMP/NAME.log; sets LPID, IN
start_proxy() {
    "$WP" --config "$TMP/$1.yaml" 2>>"$TMP/$1.log" &
    LPID=$!
    PIDS+=("$LPID")
    local line=""
    for _ in $(seq 200); do
        line=$(grep -m1 ' inbound [0-9]' "$TMP/$1.log" 2>/dev/null)
        [ -n "$line" ] && break
        kill -0 "$LPID" 2>/dev/null || return 1
        sleep 0.05
    done
    IN=$(printf '%s' "$line" | grep -o 'inbound [0-9]*' | awk '{print $2}')
    [ -n "$IN" ]
}

# proxy_config NAME AUDIT_DIR SINK_YAML
proxy_config() {
    cat >"$TMP/$1.yaml" <<EOF
service: payments
identity: {cert_file: $PKI/payments.pem, key_file: $PKI/payments.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:$APP_PORT}
policy: {paths: [$TMP/policy.yaml]}
audit:
  dir: $2
  sink: $3
admin: {listen: 127.0.0.1:0}
workers: 2
EOF
}

requests() { python3 "$PY" load "$1" "$2" "$PKI/frontend.pem" "$PKI/frontend.key" "$PKI/ca.pem" 2>>"$TMP/load.err"; }

# ---- the mesh side ----------------------------------------------------------------------------

start_mesh_app || { fail "the app starts" "$(tail -3 "$TMP/app.log")"; finish; }
payments_policy "$TMP/policy.yaml" "$FRONT_ID" '[{methods: [GET], paths: ["/v1/*"]}]'

# ---- plain TCP: a backlog, live records, rsyslog killed and restarted, ward-proxy restarted --------

AUD="$TMP/audit"
python3 "$FIX" gen "$AUD" --records $FIXTURE_RECORDS --per-segment 8000 --hostile --gap-at 500 \
    --start "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)" --step-ms 100 >/dev/null ||
    { fail "the fixture trail is generated"; finish; }
PORT=$(free_port)
if ! start_rsyslog rs "$PORT"; then
    fail "rsyslogd starts (imtcp on 127.0.0.1:$PORT)" "$(cat "$TMP/rs.log")"
    finish
fi
RS=$RS_PID
proxy_config p1 "$AUD" "{address: 127.0.0.1:$PORT}"
python3 "$PY" wait "$TMP/rs.out.*" "$AUD" 30 >"$TMP/watch.out" & # watching before the sink starts
WATCH=$!
sleep 1
T0=$(date +%s.%N)
if ! start_proxy p1; then
    fail "ward-proxy starts with audit.sink" "$(tail -5 "$TMP/p1.log")"
    finish
fi
P1=$LPID IN1=$IN
wait "$WATCH"
read -r got want _ flow <"$TMP/watch.out"
secs=$(python3 -c "print('%.2f' % ($(date +%s.%N) - $T0))")
expect_eq "the backlog of $want records reaches rsyslog" "$want" "$got"
echo "catch-up: $got records ($(($(du -k "$AUD" | cut -f1) / 1024)) MiB of trail) into rsyslog's file in ${flow}s from its first message to the last$(python3 -c "print(': %d records/s' % ($got / $flow) if $flow >= 0.05 else ' (all there at the first look)')") (${secs}s from ward-proxy's start)"
expect_match "ward-proxy says the sink is connected" "syslog sink: connected to 127.0.0.1:$PORT; sending from seq 1" \
    "$(cat "$TMP/p1.log")"

codes=$(requests "$IN1" 300)
expect_match "300 live requests are answered (200 allowed, 403 denied)" '^200:200 403:100( |$)' \
    "$codes $(tail -3 "$TMP/load.err" 2>/dev/null)"
read -r got want _ <<<"$(python3 "$PY" wait "$TMP/rs.out.*" "$AUD" 15)"
expect_eq "the live records follow the backlog into rsyslog" "$want" "$got"
ADMIN1=$(grep -o 'admin [0-9]*' "$TMP/p1.log" | head -1 | awk '{print $2}')
metric() { curl -s "http://127.0.0.1:$ADMIN1/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
sleep 0.5
expect_eq "/metrics: ward_audit_sink_connected 1" "1" "$(metric ward_audit_sink_connected)"
check "/metrics: ward_audit_sink_delivered_seq reaches the last record ($want)" \
    '[ "$(metric ward_audit_sink_delivered_seq)" -ge $((want - 300)) ] 2>/dev/null' \
    "$(curl -s "http://127.0.0.1:$ADMIN1/metrics" | grep ward_audit_sink)"

# rsyslog killed (SIGKILL) in the middle of a stream of requests, then started again
requests "$IN1" 900 >"$TMP/load2.out" &
LOAD=$!
PIDS+=("$LOAD")
sleep 0.7
{ kill -KILL "$RS"; wait "$RS"; } 2>/dev/null
n_at_kill=$(python3 "$PY" nmsgs "$TMP/rs.out.*")
wait "$LOAD"
expect_match "requests go on while the collector is down" '^200:600 403:300( |$)' \
    "$(cat "$TMP/load2.out") $(tail -3 "$TMP/load.err" 2>/dev/null)"
codes=$(requests "$IN1" 150)
sleep 1
read -r got want _ <<<"$(python3 "$PY" wait "$TMP/rs.out.*" "$AUD" 0)"
check "while rsyslog is down, records wait in the trail ($got of $want received)" "[ $got -lt $want ]"
expect_eq "/metrics: ward_audit_sink_connected 0 while rsyslog is down" "0" "$(metric ward_audit_sink_connected)"
check "/metrics: ward_audit_sink_failures_total counts the broken connection" \
    '[ "$(metric ward_audit_sink_failures_total)" -ge 1 ] 2>/dev/null'
expect_eq "a collector that is down does not make ward-proxy unready (/ready 200)" "200" \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN1/ready")"
if ! start_rsyslog rs "$PORT"; then
    fail "rsyslogd starts again" "$(tail -5 "$TMP/rs.log")"
    finish
fi
RS=$RS_PID
read -r got want secs _ <<<"$(python3 "$PY" wait "$TMP/rs.out.*" "$AUD" 40)"
if [ "$got" = "$want" ]; then
    pass "after the restart every record arrives ($((want - FIXTURE_RECORDS)) live, rsyslog killed after $n_at_kill messages)"
else
    fail "after the restart every record arrives ($((want - FIXTURE_RECORDS)) live, rsyslog killed after $n_at_kill messages)" \
        "expected: $want" "actual:   $got (after ${secs}s)" "ward-proxy's sink said:" \
        "$(grep 'syslog sink' "$TMP/p1.log" | tail -8)" "rsyslog said: $(tail -5 "$TMP/rs.log")"
fi
expect_match "ward-proxy reported the broken connection" "syslog sink: collector 127.0.0.1:$PORT: .*resending after seq" \
    "$(cat "$TMP/p1.log")"

# ward-proxy stopped and started on the same trail: it resumes from its cursor
kill -TERM "$P1"
wait "$P1"
expect_eq "ward-proxy stops cleanly (exit 0)" 0 "$?"
cursor=$(cat "$AUD/sink-syslog.cursor" 2>/dev/null)
last=$(python3 "$PY" lastseq "$AUD")
expect_match "the cursor names the last record ($last) once rsyslog confirmed the end of the stream" \
    "^\\{\"v\":1,\"seq\":$last,\"hash\":\"[0-9a-f]{64}\"" "$cursor"
before=$(python3 "$PY" nmsgs "$TMP/rs.out.*")
mv "$TMP/p1.log" "$TMP/p1-first.log"
if start_proxy p1; then
    P1=$LPID IN1=$IN
    requests "$IN1" 60 >/dev/null
    read -r got want _ <<<"$(python3 "$PY" wait "$TMP/rs.out.*" "$AUD" 15)"
    expect_eq "after a restart of ward-proxy the new records arrive" "$want" "$got"
    expect_match "it resumed after the cursor" "sending from seq $((last + 1))" "$(tail -3 "$TMP/p1.log")"
    after=$(python3 "$PY" nmsgs "$TMP/rs.out.*")
    expect_eq "nothing was sent twice across the clean restart" 60 "$((after - before))"
    kill -TERM "$P1"
    wait "$P1"
else
    fail "ward-proxy starts again on its trail" "$(tail -5 "$TMP/p1.log")"
fi

summary=$(python3 "$PY" check "$TMP/rs.out.*" "$AUD" 16)
echo "$summary"
expect_match "rsyslog holds every record exactly (message = stored line, SD seq/id/decision/hash, PRI, MSGID, TIMESTAMP), duplicates counted by seq" \
    'missing=0 bad=0 allow=[1-9][0-9]* deny=[1-9][0-9]* gap=1$' "$(printf '%s' "$summary" | tail -1)"
{ kill -TERM "$RS"; wait "$RS"; } 2>/dev/null

# ---- TLS: rsyslog with gtls, requiring our client certificate ---------------------------------------

if [ "$HAVE_GTLS" = 1 ]; then
    AUD2="$TMP/audit-tls"
    PORT2=$(free_port)
    if ! start_rsyslog rstls "$PORT2" tls; then
        fail "rsyslogd starts with TLS (gtls)" "$(cat "$TMP/rstls.log")"
        finish
    fi
    RS2=$RS_PID
    proxy_config p2 "$AUD2" "{address: 127.0.0.1:$PORT2, facility: local5, tls: {ca_file: $PKI/logs-ca.pem,
      cert_file: $PKI/sink.pem, key_file: $PKI/sink.key, server_name: localhost}}"
    if start_proxy p2; then
        P2=$LPID
        requests "$IN" 200 >/dev/null
        read -r got want _ <<<"$(python3 "$PY" wait "$TMP/rstls.out.*" "$AUD2" 15)"
        expect_eq "over TLS every record reaches rsyslog" "$want" "$got"
        expect_match "the sink says TLS" "connected to 127.0.0.1:$PORT2 \\(TLS\\)" "$(cat "$TMP/p2.log")"
        kill -TERM "$P2"
        wait "$P2"
        expect_match "over TLS too the cursor names the last record once rsyslog confirmed the end of the stream" \
            "^\\{\"v\":1,\"seq\":$(python3 "$PY" lastseq "$AUD2")," "$(cat "$AUD2/sink-syslog.cursor" 2>/dev/null)"
        summary=$(python3 "$PY" check "$TMP/rstls.out.*" "$AUD2" 21)
        expect_match "over TLS each message is exact (facility local5)" 'missing=0 bad=0' "$summary"
    else
        fail "ward-proxy starts with a TLS sink" "$(tail -5 "$TMP/p2.log")"
    fi
    # a collector certificate from another CA: the sink refuses it, nothing is sent
    AUD3="$TMP/audit-wrongca"
    proxy_config p3 "$AUD3" "{address: 127.0.0.1:$PORT2, tls: {ca_file: $PKI/other-ca.pem}}"
    before=$(python3 "$PY" nmsgs "$TMP/rstls.out.*")
    if start_proxy p3; then
        P3=$LPID
        requests "$IN" 20 >/dev/null
        sleep 1
        kill -TERM "$P3"
        wait "$P3"
        expect_match "a collector not signed by tls.ca_file is refused" \
            "syslog sink: collector 127.0.0.1:$PORT2: TLS handshake: certificate verify failed" \
            "$(cat "$TMP/p3.log")"
        after=$(python3 "$PY" nmsgs "$TMP/rstls.out.*")
        expect_eq "... and gets nothing" "$before" "$after"
    else
        fail "ward-proxy starts with a wrong-CA sink" "$(tail -5 "$TMP/p3.log")"
    fi
    { kill -TERM "$RS2"; wait "$RS2"; } 2>/dev/null
else
    echo "note: rsyslog-gnutls is not installed (no lmnsd_gtls.so): TLS against rsyslog not tested"
fi

finish
