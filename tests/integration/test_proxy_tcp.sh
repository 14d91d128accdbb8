#!/usr/bin/env bash
# test_proxy_tcp.sh - ward-proxy's TCP mode: a real Redis server from Debian reached through two proxies with mTLS (orders -> outbound TCP listener -> mTLS -> redis's inbound TCP listener -> redis-server), each connection authorized once by principal, port and SNI and audited with its bytes and duration; denials never reach the server; half-close passes both ways.
. "$(dirname "$0")/lib.sh"

WP="$BIN/ward-proxy"
WARDCTL="$BIN/wardctl"
TD=tcp.test
ORDERS_ID="spiffe://$TD/ns/shop/sa/orders"
REDIS_ID="spiffe://$TD/ns/data/sa/redis"
INTRUDER_ID="spiffe://$TD/ns/shop/sa/intruder"
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT

for b in redis-server redis-cli openssl; do
    if ! command -v $b >/dev/null; then
        fail "$b is installed" "apt-get install redis-server redis-tools openssl (make deps)"
        finish
    fi
done
if [ ! -x "$WP" ]; then
    fail "ward-proxy is built" "missing $WP (run make)"
    finish
fi

check() { if eval "$2"; then pass "$1"; else fail "$1" "${3:-}"; fi; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- certificates -------------------------------------------------------------------------------

PKI="$TMP/pki"
mkdir -p "$PKI"
ca() { # ca NAME TRUST-DOMAIN
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$PKI/$1.key" \
        -out "$PKI/$1.pem" -days 2 -subj "/O=test/CN=$1" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectAltName=URI:spiffe://$2" 2>/dev/null
}
leaf() { # leaf NAME CA SPIFFE-ID
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null &&
        openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$2.pem" -CAkey "$PKI/$2.key" -CAcreateserial \
            -out "$PKI/$1.pem" -days 1 -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
                "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" \
                "subjectAltName=URI:$3") 2>/dev/null &&
        chmod 600 "$PKI/$1.key"
}
ca ca "$TD" && ca evil-ca evil.test && leaf orders ca "$ORDERS_ID" && leaf redis ca "$REDIS_ID" &&
    leaf intruder ca "$INTRUDER_ID" && leaf evil evil-ca "spiffe://evil.test/ns/shop/sa/orders"
for f in ca orders redis intruder evil; do
    if [ ! -s "$PKI/$f.pem" ]; then
        fail "test certificates are made" "no $PKI/$f.pem"
        finish
    fi
done

# ---- redis, an echo-until-EOF server, the policy ---------------------------------------------------

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$TMP" >"$TMP/redis.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do
    redis-cli -p "$RPORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.05
done
redis_conns() { redis-cli -p "$RPORT" info stats | sed -n 's/^total_connections_received:\([0-9]*\).*/\1/p'; }

# reads until the client's FIN, then answers "got N bytes" and closes: half-close both ways
cat >"$TMP/eof_server.py" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        n += len(b)
    c.sendall(b"got %d bytes\n" % n)
    c.close()
EOF
python3 "$TMP/eof_server.py" >"$TMP/eof.port" 2>"$TMP/eof.log" &
PIDS+=("$!")
for _ in $(seq 50); do
    EOF_PORT=$(head -1 "$TMP/eof.port" 2>/dev/null)
    [ -n "$EOF_PORT" ] && break
    sleep 0.1
done

# one file for both proxies: redis admits orders when it asks for "redis" or
# "echo" by SNI; the intruder is denied outright
cat >"$TMP/policy.yaml" <<EOF
apiVersion: ward/v1
kind: AuthorizationPolicy
metadata: {name: redis-clients, namespace: data}
spec:
  selector: {services: [redis]}
  action: ALLOW
  rules:
    - from: [{principals: ["$ORDERS_ID"]}]
      when: [{key: connection.sni, values: [redis, echo]}]
---
apiVersion: ward/v1
kind: AuthorizationPolicy
metadata: {name: no-intruders, namespace: data}
spec:
  selector: {services: [redis]}
  action: DENY
  rules:
    - from: [{principals: ["$INTRUDER_ID"]}]
EOF

# start_proxy NAME: ward-proxy with $TMP/NAME.yaml, log $TMP/NAME.log; sets LPID
start_proxy() {
    "$WP" --config "$TMP/$1.yaml" 2>>"$TMP/$1.log" &
    LPID=$!
    PIDS+=("$LPID")
    for _ in $(seq 200); do
        grep -q ' inbound [0-9]' "$TMP/$1.log" 2>/dev/null && return 0
        kill -0 "$LPID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
tcp_port() { grep -o "tcp $2: [a-z]* [0-9]*" "$TMP/$1.log" | head -1 | awk '{print $4}'; }

# ---- redis's proxy: inbound TCP listeners ------------------------------------------------------------

cat >"$TMP/redis.yaml" <<EOF
service: redis
identity: {cert_file: $PKI/redis.pem, key_file: $PKI/redis.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:9}
policy: {paths: [$TMP/policy.yaml]}
audit: {dir: $TMP/audit-redis}
admin: {listen: 127.0.0.1:0}
workers: 2
tcp:
  - {name: redis, listen: 127.0.0.1:0, app: 127.0.0.1:$RPORT}
  - {name: echo, listen: 127.0.0.1:0, app: 127.0.0.1:$EOF_PORT}
EOF
if ! start_proxy redis; then
    fail "redis's ward-proxy starts with two TCP listeners" "$(tail -5 "$TMP/redis.log")"
    finish
fi
P_REDIS=$LPID
B_REDIS=$(tcp_port redis redis)
B_ECHO=$(tcp_port redis echo)
check "redis's ward-proxy names its TCP listeners and ports" '[ -n "$B_REDIS" ] && [ -n "$B_ECHO" ]' \
    "$(cat "$TMP/redis.log")"

# ---- orders's proxy: outbound TCP listeners ------------------------------------------------------------

cat >"$TMP/orders.yaml" <<EOF
service: orders
identity: {cert_file: $PKI/orders.pem, key_file: $PKI/orders.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:9}
policy: {paths: [$TMP/policy.yaml]}
audit: {dir: $TMP/audit-orders}
admin: {listen: 127.0.0.1:0}
workers: 2
tcp:
  - name: redis-client
    listen: 127.0.0.1:0
    service: redis
    endpoints: [127.0.0.1:$B_REDIS]
    spiffe_id: $REDIS_ID
  - {name: echo-client, listen: 127.0.0.1:0, service: redis, server_name: echo,
     endpoints: ["127.0.0.1:$B_ECHO"], spiffe_id: "$REDIS_ID"}
  - {name: wrong-sni, listen: 127.0.0.1:0, service: redis, server_name: admin,
     endpoints: ["127.0.0.1:$B_REDIS"], spiffe_id: "$REDIS_ID"}
  - {name: wrong-id, listen: 127.0.0.1:0, service: redis,
     endpoints: ["127.0.0.1:$B_REDIS"], spiffe_id: "spiffe://$TD/ns/data/sa/not-redis"}
EOF
if ! start_proxy orders; then
    fail "orders's ward-proxy starts with outbound TCP listeners" "$(tail -5 "$TMP/orders.log")"
    finish
fi
P_ORDERS=$LPID
A_REDIS=$(tcp_port orders redis-client)
A_ECHO=$(tcp_port orders echo-client)
A_SNI=$(tcp_port orders wrong-sni)
A_ID=$(tcp_port orders wrong-id)

# ---- a real protocol through two proxies ------------------------------------------------------------

expect_eq "redis PING through both proxies (mTLS between them)" "PONG" \
    "$(redis-cli -p "$A_REDIS" ping 2>&1)"
python3 -c 'import sys; sys.stdout.write("v" * 1048576)' >"$TMP/big.val"
redis-cli -p "$A_REDIS" -x set big <"$TMP/big.val" >/dev/null 2>&1
got=$(redis-cli -p "$A_REDIS" --no-raw strlen big 2>&1)
expect_eq "a 1 MiB value written through the proxies arrives whole" "(integer) 1048576" "$got"
redis-cli -p "$A_REDIS" get big >"$TMP/big.back" 2>&1
check "... and reads back byte for byte" 'cmp -s <(head -c 1048576 "$TMP/big.back") "$TMP/big.val"'
pipeline=$(for i in $(seq 500); do printf 'INCR counter\r\n'; done | redis-cli -p "$A_REDIS" 2>&1 | tail -1)
expect_eq "500 pipelined commands in one connection" "500" "$pipeline"

# half-close: the client ends its side, the answer still comes back
got=$(python3 - "$A_ECHO" <<'EOF'
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
c.sendall(b"x" * 300000)
c.shutdown(socket.SHUT_WR)
out = b""
while True:
    b = c.recv(65536)
    if not b:
        break
    out += b
print(out.decode().strip())
EOF
)
expect_eq "half-close: the server reads to the client's FIN, then answers on the open side" \
    "got 300000 bytes" "$got"

# ---- denials never reach redis ---------------------------------------------------------------------

before=$(redis_conns)
tls_try() { # tls_try CERT SNI: sends PING over mTLS straight to redis's TCP listener
    printf 'PING\r\n' | timeout 5 openssl s_client -connect "127.0.0.1:$B_REDIS" -quiet \
        -cert "$PKI/$1.pem" -key "$PKI/$1.key" -CAfile "$PKI/ca.pem" ${2:+-servername "$2"} 2>/dev/null
}
out=$(tls_try intruder redis)
check "a principal the DENY policy names gets no answer" '! printf "%s" "$out" | grep -q PONG' "$out"
out=$(tls_try orders admin)
check "orders asking for another SNI (admin) is denied" '! printf "%s" "$out" | grep -q PONG' "$out"
out=$(tls_try orders "")
check "orders sending no SNI is denied (the policy wants one)" '! printf "%s" "$out" | grep -q PONG' "$out"
out=$(printf 'PING\r\n' | timeout 5 openssl s_client -connect "127.0.0.1:$B_REDIS" -quiet \
    -cert "$PKI/evil.pem" -key "$PKI/evil.key" -servername redis 2>&1)
check "a certificate of another trust domain is refused" '! printf "%s" "$out" | grep -q PONG' "$out"
out=$(printf 'PING\r\n' | timeout 5 openssl s_client -connect "127.0.0.1:$B_REDIS" -quiet \
    -servername redis 2>&1)
check "no client certificate: refused" '! printf "%s" "$out" | grep -q PONG' "$out"
out=$(printf 'PING\r\n' | timeout 5 python3 -c '
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
c.sendall(sys.stdin.buffer.read())
try:
    print(c.recv(100))
except OSError as e:
    print(e)' "$B_REDIS" 2>&1)
check "plaintext to the mTLS listener: refused" '! printf "%s" "$out" | grep -q PONG' "$out"
out=$(redis-cli -p "$A_SNI" ping 2>&1)
check "through orders's proxy with a denied SNI: refused" '! printf "%s" "$out" | grep -q PONG' "$out"
out=$(redis-cli -p "$A_ID" ping 2>&1)
check "an upstream presenting another SPIFFE ID than configured: refused" \
    '! printf "%s" "$out" | grep -q PONG' "$out"
after=$(redis_conns)
expect_eq "redis saw none of the refused connections (only redis-cli info's own)" "$((before + 1))" "$after"

# ---- the audit trails --------------------------------------------------------------------------------

# ward-proxy writes a connection's record when it ends: stop both proxies (drain)
kill -TERM "$P_ORDERS" "$P_REDIS"
wait "$P_ORDERS"
rc_orders=$?
wait "$P_REDIS"
rc_redis=$?
expect_eq "both proxies stop cleanly on SIGTERM (exit 0; sanitizer builds: no leak, no error)" \
    "0 0" "$rc_orders $rc_redis"
R="$TMP/audit-redis"
O="$TMP/audit-orders"
for d in "$R" "$O"; do
    out=$("$WARDCTL" audit verify "$d" 2>&1)
    rc=$?
    check "wardctl audit verify passes on $(basename "$d")" '[ $rc -eq 0 ]' "$out"
done
"$WARDCTL" audit export "$R" --format jsonl >"$TMP/redis.jsonl" 2>&1
"$WARDCTL" audit export "$O" --format jsonl >"$TMP/orders.jsonl" 2>&1
facts=$(python3 - "$TMP/redis.jsonl" "$TMP/orders.jsonl" "$ORDERS_ID" "$INTRUDER_ID" <<'EOF'
import json, re, sys
red = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
orders = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
ORD, INTR = sys.argv[3], sys.argv[4]
def tcp(rs):
    return [r for r in rs if (r.get("request") or {}).get("protocol") == "TCP"]
def byte_counts(r):
    c = r.get("connection")
    return (c["bytes_in"], c["bytes_out"]) if c else None
out = []
allowed = [r for r in tcp(red) if r["decision"] == "allow"]
denied_all = [r for r in tcp(red) + tcp(orders) if r["decision"] == "deny"]
out.append("redis-allowed=%d" % len(allowed))
out.append("redis-allowed-orders=%s" % all(r["source"]["principal"] == ORD for r in allowed))
out.append("redis-allowed-sni=%s" % sorted({r["request"]["host"] for r in allowed}))
big = [byte_counts(r) for r in allowed if byte_counts(r) and byte_counts(r)[0] > 1048576]
out.append("redis-big-upload-recorded=%s" % bool(big))
big_read = [b for b in map(byte_counts, allowed) if b and b[1] > 1048576]
out.append("redis-big-download-recorded=%s" % bool(big_read))
out.append("redis-has-duration=%s" % all(r["connection"]["duration_ms"] > 0 for r in allowed))
out.append("redis-ends=%s" % sorted({re.sub(r".*; tcp \w+: (\w+).*", r"\1", r["reason"]) for r in allowed}))
out.append("denied-have-no-connection=%s" % all("connection" not in r for r in denied_all))
denied = [r for r in tcp(red) if r["decision"] == "deny"]
out.append("redis-denied-intruder=%d" % sum(r["source"]["principal"] == INTR for r in denied))
out.append("redis-denied-intruder-policy=%s" % sorted({r["policy"] for r in denied if r["source"]["principal"] == INTR}))
out.append("redis-denied-orders-sni=%s" % sorted({r["request"]["host"] or "" for r in denied if r["source"]["principal"] == ORD}))
o_allowed = [r for r in tcp(orders) if r["decision"] == "allow"]
out.append("orders-outbound=%s" % all(r["direction"] == "outbound" for r in tcp(orders)))
out.append("orders-denied-sni=%s" % sorted({r["request"]["host"] for r in tcp(orders) if r["decision"] == "deny"}))
out.append("orders-upstream-tls=%d" % sum("upstream_tls" in (r.get("reason") or "") for r in o_allowed))
print(" ".join(out))
EOF
)
echo "audit: $facts"
expect_match "each allowed connection is one inbound record for orders, SNIs redis and echo" \
    "redis-allowed=[0-9]+ redis-allowed-orders=True redis-allowed-sni=\['echo', 'redis'\]" "$facts"
expect_match "the records count the bytes each way (the 1 MiB upload and download)" \
    "redis-big-upload-recorded=True redis-big-download-recorded=True" "$facts"
expect_match "... and the duration, and how each ended (done)" \
    "redis-has-duration=True redis-ends=\['done'\] denied-have-no-connection=True" "$facts"
expect_match "the intruder's connection is a deny record naming the DENY policy" \
    "redis-denied-intruder=1 redis-denied-intruder-policy=\['data/no-intruders'\]" "$facts"
expect_match "orders's denied SNIs are on the record (admin, none)" \
    "redis-denied-orders-sni=\['', 'admin'\]" "$facts"
expect_match "orders's proxy records its connections as outbound, the denied SNI too" \
    "orders-outbound=True orders-denied-sni=\['admin'\]" "$facts"
expect_match "the connection to the wrong upstream ID ended as upstream_tls" "orders-upstream-tls=1" "$facts"

# the connection's figures in every export format
"$WARDCTL" audit export "$R" --format csv --where request.protocol=TCP --where decision=allow \
    >"$TMP/redis.csv" 2>&1
"$WARDCTL" audit export "$R" --format ocsf --where request.protocol=TCP --where decision=allow \
    >"$TMP/redis.ocsf" 2>&1
"$WARDCTL" audit export "$R" --format cef --where request.protocol=TCP --where decision=allow \
    >"$TMP/redis.cef" 2>&1
facts=$(python3 - "$TMP/redis.csv" "$TMP/redis.ocsf" "$TMP/redis.cef" <<'EOF2'
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
ocsf = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
cef = [l for l in open(sys.argv[3]) if l.strip()]
ok_csv = len(rows) == 6 and all(int(r["connection.bytes_in"]) > 0 and int(r["connection.bytes_out"]) > 0
                                and float(r["connection.duration_ms"]) > 0 for r in rows)
ok_ocsf = len(ocsf) == 6 and all(o["traffic"]["bytes_in"] > 0 and o["duration"] > 0 for o in ocsf)
ok_cef = len(cef) == 6 and all(" in=" in l and " out=" in l and "cfp1Label=durationMs" in l for l in cef)
print("csv=%s ocsf=%s cef=%s" % (ok_csv, ok_ocsf, ok_cef))
EOF2
)
expect_eq "CSV, OCSF (traffic, duration) and CEF (in, out) carry each connection's bytes and duration" \
    "csv=True ocsf=True cef=True" "$facts"
got=$("$WARDCTL" audit query "$R" --where request.protocol=TCP --count-by connection.bytes_out 2>&1 |
    awk '$2 > 1048576 {n += $1} END {print n + 0}')
expect_eq "wardctl audit query counts by connection fields (one connection read the 1 MiB value)" "1" "$got"

# ---- configuration errors ------------------------------------------------------------------------

bad() { # bad NAME YAML-OF-TCP REGEX
    cat >"$TMP/bad.yaml" <<EOF
service: orders
identity: {cert_file: $PKI/orders.pem, key_file: $PKI/orders.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:9}
audit: {dir: $TMP/audit-bad}
tcp:
$2
EOF
    out=$("$WP" --config "$TMP/bad.yaml" --check 2>&1)
    expect_match "$1" "$3" "$out"
}
bad "a TCP listener with both app and endpoints is refused" \
    "  - {name: x, listen: 127.0.0.1:0, app: 127.0.0.1:1, endpoints: [127.0.0.1:2], spiffe_id: $REDIS_ID, service: y}" \
    'bad.yaml:6:[0-9]+: tcp\[0\]: give either app .* or endpoints'
bad "an outbound TCP listener off loopback is refused" \
    "  - {name: x, listen: 0.0.0.0:0, endpoints: [127.0.0.1:2], spiffe_id: $REDIS_ID, service: y}" \
    'tcp\[0\]\.listen: .*loopback'
bad "an outbound TCP listener without spiffe_id is refused" \
    "  - {name: x, listen: 127.0.0.1:0, endpoints: [127.0.0.1:2], service: y}" \
    'tcp\[0\]\.spiffe_id: required key is missing'
bad "duplicate TCP listener names are refused" \
    "$(printf '  - {name: x, listen: 127.0.0.1:0, app: 127.0.0.1:1}\n  - {name: x, listen: 127.0.0.1:0, app: 127.0.0.1:2}')" \
    'tcp\[1\]\.name: duplicate TCP listener "x"'
bad "an unknown key in a TCP listener is refused" \
    "  - {name: x, listen: 127.0.0.1:0, app: 127.0.0.1:1, sni: y}" \
    'tcp\[0\]\.sni: unknown key'

finish
