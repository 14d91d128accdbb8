#!/usr/bin/env bash
# test_proxy_routes.sh - traffic management end to end (issue 6): Route splits, canary, rewrite and
# header ops, retries, per-try timeout, circuit breaker, outlier ejection, retry budget, rate limits.
#
# Topology (loopback, static SPIFFE identities made with the openssl CLI):
#   client --plain--> frontend proxy (outbound) --mTLS--> inbound proxy of each backend --> its app
#   client --plain--> reports proxy (outbound)  --mTLS--> ledger's inbound proxy (a second caller)
# Backends, each a Python app behind its own ward-proxy with its own identity:
#   payments   3 endpoints (pay-a, pay-b, pay-c)   least_request, outlier detection, retry budget
#   payments-v2 1 endpoint (v2; also upstream "inventory", whose circuit breaker is small)
#   orders     2 endpoints (ord-a, ord-b)          round_robin, never ejected: retries are exact
#   ledger     1 endpoint, its inbound proxy enforces the Route's rate limits
#   dead       1 endpoint where nobody listens
# Every app records what reaches it; its behaviour (ok, 503, slow503, reset, hang) is read from a
# mode file at each request.
. "$(dirname "$0")/lib.sh"

WP="$BIN/ward-proxy"
WC="$BIN/wardctl"
TD=example.org
sid() { echo "spiffe://$TD/ns/shop/sa/$1"; }
FRONT_ID=$(sid frontend) REPORTS_ID=$(sid reports)
PIDS=()
T_START=$(date +%s)

cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -KILL "$p" 2>/dev/null; done
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

for b in "$WP" "$WC"; do
    if [ ! -x "$b" ]; then
        fail "$(basename "$b") is built" "missing $b (run make)"
        finish
    fi
done
for tool in curl openssl python3 timeout; do
    if ! command -v "$tool" >/dev/null; then
        fail "$tool is installed"
        finish
    fi
done

# ---- identities ------------------------------------------------------------------------------

PKI="$TMP/pki"
mkdir -p "$PKI"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$PKI/ca.key" \
    -out "$PKI/ca.pem" -days 2 -subj "/O=test/CN=routes-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectAltName=URI:spiffe://$TD" 2>/dev/null
# svid NAME: an X509-SVID for spiffe://TD/ns/shop/sa/NAME
svid() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
        -keyout "$PKI/$1.key" -out "$PKI/$1.csr" 2>/dev/null &&
        openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial \
            -out "$PKI/$1.pem" -days 1 -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
                "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" \
                "subjectAltName=URI:$(sid "$1")") 2>/dev/null &&
        chmod 600 "$PKI/$1.key"
}
for n in frontend reports payments payments-v2 orders ledger; do
    if ! svid "$n"; then
        fail "the test identity of $n is made (openssl)"
        finish
    fi
done

# ---- the backend app -------------------------------------------------------------------------

cat >"$TMP/app.py" <<'EOF'
"""app.py NAME RECORDS MODEFILE PORTFILE: records each request (a JSON line, before answering);
behaves as MODEFILE says: ok | 503 | slow503 (503 after 200 ms) | reset | hang (5 s, then 200).
/slow/... waits 1 s. Answers carry X-App (its name) and X-Powered-By."""
import http.server, json, socket, struct, sys, threading, time
name, recf, modef, portf = sys.argv[1:5]
rec = open(recf, "a", buffering=1)
lock = threading.Lock()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall
    def log_message(self, *a):
        pass
    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App", name)
        self.send_header("X-Powered-By", "python-test-app")
        self.end_headers()
        self.wfile.write(body)
    def serve(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        try:
            mode = open(modef).read().strip() or "ok"
        except OSError:
            mode = "ok"
        hdrs = {k.lower(): v for k, v in self.headers.items()}
        r = {"app": name, "method": self.command, "target": self.path, "headers": hdrs, "mode": mode}
        with lock:
            rec.write(json.dumps(r) + "\n")
        if mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if mode == "hang":
            time.sleep(5)
        if mode == "slow503":
            time.sleep(0.2)
        if mode in ("503", "slow503"):
            self.answer(503, b'{"error": "unavailable"}\n')
            return
        if self.path.startswith("/slow/"):
            time.sleep(1)
        self.answer(200, json.dumps({"app": name, "target": self.path, "headers": hdrs}).encode() + b"\n")
    do_GET = do_POST = do_PUT = do_DELETE = serve

class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    def handle_error(self, request, client_address):
        pass
s = S(("127.0.0.1", 0), H)
open(portf + ".tmp", "w").write("%d\n" % s.server_address[1])
import os
os.rename(portf + ".tmp", portf)
s.serve_forever()
EOF

APPS="pay-a pay-b pay-c v2 ord-a ord-b ledger"
declare -A APP_PORT IN_PORT ADM_OF PROXY_PID
for a in $APPS; do
    echo ok >"$TMP/$a.mode"
    : >"$TMP/$a.rec"
    python3 "$TMP/app.py" "$a" "$TMP/$a.rec" "$TMP/$a.mode" "$TMP/$a.port" 2>>"$TMP/$a.applog" &
    PIDS+=("$!")
done
for a in $APPS; do
    for _ in $(seq 100); do
        [ -s "$TMP/$a.port" ] && break
        sleep 0.05
    done
    APP_PORT[$a]=$(cat "$TMP/$a.port" 2>/dev/null)
    if [ -z "${APP_PORT[$a]}" ]; then
        fail "the app $a starts" "$(cat "$TMP/$a.applog")"
        finish
    fi
done
mode() { # mode MODE APP...
    local m=$1 a
    shift
    for a in "$@"; do echo "$m" >"$TMP/$a.mode"; done
}

# ---- policies: authorization, Routes ---------------------------------------------------------

POL="$TMP/mesh.yaml"
cat >"$POL" <<EOF
apiVersion: ward/v1
kind: AuthorizationPolicy
metadata: {name: mesh, namespace: shop}
spec:
  selector: {services: [payments, payments-v2, orders, ledger, inventory, stock, dead, impostor]}
  action: ALLOW
  rules:
    - from: [{principals: ["$FRONT_ID", "$REPORTS_ID"]}]
---
apiVersion: ward/v1
kind: Route
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments]
  http:
    - name: canary
      match: [{headers: {x-canary: "1"}}]
      destinations: [{service: payments-v2}]
      headers: {request: {set: {x-route: canary}}}
    - name: split
      match: [{paths: ["/split/*"]}]
      destinations: [{service: payments-v2, weight: 10}, {service: payments, weight: 90}]
    - name: legacy
      match: [{paths: ["/old/*"]}]
      destinations: [{service: payments}]
      rewrite: {prefix: /new/}
      headers:
        request: {set: {x-route: legacy}, add: {x-via: ward}, remove: [x-debug]}
        response: {set: {x-served-by: ward-route}, remove: [x-powered-by]}
    - name: budget
      match: [{paths: ["/budget/*"]}]
      destinations: [{service: payments}]
      retries: {attempts: 3, on: [gateway-error]}
    - name: ghost
      match: [{paths: ["/ghost/*"]}]
      destinations: [{service: ghost}]
    - name: default
      destinations: [{service: payments}]
---
apiVersion: ward/v1
kind: Route
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders]
  http:
    - name: deadline
      match: [{paths: ["/deadline/*"]}]
      destinations: [{service: orders}]
      timeout: 700ms
      retries: {attempts: 5, perTryTimeout: 300ms, on: [gateway-error]}
    - name: retry
      destinations: [{service: orders}]
      timeout: 3s
      retries: {attempts: 2, perTryTimeout: 300ms, on: [connect-failure, reset, gateway-error]}
---
apiVersion: ward/v1
kind: Route
metadata: {name: ledger, namespace: shop}
spec:
  hosts: [ledger]
  http:
    - name: per-tenant
      match: [{paths: ["/keyed/*"]}]
      destinations: [{service: ledger}]
      rateLimit: {requests: 3, per: 10s, key: "request.headers[x-tenant]"}
    - name: per-caller
      destinations: [{service: ledger}]
      rateLimit: {requests: 5, per: 10s, key: source.principal}
EOF

# ---- the proxies -----------------------------------------------------------------------------

# start_proxy NAME: ward-proxy with $TMP/NAME.yaml (log $TMP/NAME.log), in the background.
start_proxy() {
    "$WP" --config "$TMP/$1.yaml" 2>>"$TMP/$1.log" &
    PROXY_PID[$1]=$!
    PIDS+=("$!")
}
# proxy_ports NAME: waits for its start line; sets IN_PORT[NAME], ADM_OF[NAME], OUT.
proxy_ports() {
    local line=""
    for _ in $(seq 150); do
        line=$(grep -m1 ' inbound [0-9]' "$TMP/$1.log" 2>/dev/null)
        [ -n "$line" ] && break
        kill -0 "${PROXY_PID[$1]}" 2>/dev/null || return 1
        sleep 0.1
    done
    IN_PORT[$1]=$(printf '%s' "$line" | grep -o 'inbound [0-9]*' | awk '{print $2}')
    ADM_OF[$1]=$(printf '%s' "$line" | grep -o 'admin [0-9]*' | awk '{print $2}')
    OUT=$(printf '%s' "$line" | grep -o 'outbound [0-9]*' | awk '{print $2}')
    [ -n "${IN_PORT[$1]}" ] && [ -n "${ADM_OF[$1]}" ]
}
# backend_cfg APP IDENTITY
backend_cfg() {
    cat >"$TMP/$1.yaml" <<EOF
service: $2
identity: {cert_file: $PKI/$2.pem, key_file: $PKI/$2.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:${APP_PORT[$1]}}
policy: {paths: [$POL]}
audit: {dir: $TMP/audit-$1}
admin: {listen: 127.0.0.1:0}
workers: 1
EOF
}
declare -A ID_OF=([pay-a]=payments [pay-b]=payments [pay-c]=payments [v2]=payments-v2
    [ord-a]=orders [ord-b]=orders [ledger]=ledger)
for a in $APPS; do
    backend_cfg "$a" "${ID_OF[$a]}"
    start_proxy "$a"
done
for a in $APPS; do
    if ! proxy_ports "$a"; then
        fail "the inbound proxy of $a starts" "$(tail -5 "$TMP/$a.log")"
        finish
    fi
done
pass "7 backend apps, each behind its own inbound ward-proxy, are up"

CLOSED_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ep() { echo "127.0.0.1:${IN_PORT[$1]}"; }
cat >"$TMP/frontend.yaml" <<EOF
service: frontend
identity: {cert_file: $PKI/frontend.pem, key_file: $PKI/frontend.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:${APP_PORT[v2]}}
outbound: {listen: 127.0.0.1:0}
upstreams:
  - service: payments
    endpoints: [$(ep pay-a), $(ep pay-b), $(ep pay-c)]
    spiffe_id: "$(sid payments)"
    outlier_detection: {consecutive_5xx: 3, base_ejection_time: 3s, max_ejection_percent: 34}
    retry_budget: {percent: 20, min_concurrency: 2}
  - {service: payments-v2, endpoints: [$(ep v2)], spiffe_id: "$(sid payments-v2)"}
  - service: orders
    endpoints: [$(ep ord-a), $(ep ord-b)]
    spiffe_id: "$(sid orders)"
    balance: round_robin
    outlier_detection: {consecutive_5xx: 0, consecutive_connect_failures: 0}
  - service: inventory
    endpoints: [$(ep v2)]
    spiffe_id: "$(sid payments-v2)"
    circuit_breakers: {max_requests: 2}
  - service: stock
    endpoints: [$(ep ledger)]
    spiffe_id: "$(sid ledger)"
    circuit_breakers: {max_connections: 2}
  - {service: ledger, endpoints: [$(ep ledger)], spiffe_id: "$(sid ledger)"}
  - service: dead
    endpoints: [127.0.0.1:$CLOSED_PORT]
    spiffe_id: "$(sid dead)"
    outlier_detection: {consecutive_connect_failures: 1, max_ejection_percent: 100, base_ejection_time: 30s}
  - service: impostor
    endpoints: [$(ep ledger)]
    spiffe_id: "$(sid orders)"
    outlier_detection: {consecutive_connect_failures: 2, consecutive_5xx: 0, max_ejection_percent: 100, base_ejection_time: 30s}
policy: {paths: [$POL]}
audit: {dir: $TMP/audit-frontend}
admin: {listen: 127.0.0.1:0}
workers: 1
EOF
cat >"$TMP/reports.yaml" <<EOF
service: reports
identity: {cert_file: $PKI/reports.pem, key_file: $PKI/reports.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:${APP_PORT[v2]}}
outbound: {listen: 127.0.0.1:0}
upstreams:
  - {service: ledger, endpoints: [$(ep ledger)], spiffe_id: "$(sid ledger)"}
policy: {paths: [$POL]}
audit: {dir: $TMP/audit-reports}
admin: {listen: 127.0.0.1:0}
workers: 1
EOF

# unknown route destination: --check warns, names it, and passes (the set is the mesh's)
CHECK_OUT=$(timeout 20 "$WP" --config "$TMP/frontend.yaml" --check 2>&1)
CHECK_RC=$?
expect_eq "ward-proxy --check accepts the frontend's configuration (exit 0)" 0 "$CHECK_RC"
expect_match "... and warns that the Route destination \"ghost\" is no upstream of this proxy" \
    'warning.*ghost' "$CHECK_OUT"

start_proxy frontend
start_proxy reports
if ! proxy_ports frontend || [ -z "$OUT" ]; then
    fail "the frontend proxy starts with an outbound listener" "$(tail -5 "$TMP/frontend.log")"
    finish
fi
FOUT=$OUT FADM=${ADM_OF[frontend]}
if ! proxy_ports reports || [ -z "$OUT" ]; then
    fail "the reports proxy starts with an outbound listener" "$(tail -5 "$TMP/reports.log")"
    finish
fi
ROUT=$OUT
expect_match "the frontend logs the unknown Route destination at start" 'warning.*ghost' \
    "$(cat "$TMP/frontend.log")"

# ---- helpers -----------------------------------------------------------------------------------

cat >"$TMP/client.py" <<'EOF'
"""client.py CMD ...: HTTP/1.1 clients for the test (plain, to a proxy's outbound listener).
  bulk PORT HOST N PREFIX THREADS            N GETs PREFIX<i> over keep-alive: "code count" lines
  burst PORT HOST N PATH [NAME:VALUE]...     N GETs in a row: "code retry-after" lines
  concurrent PORT HOST N PATH                N GETs at once: "code reason" lines"""
import http.client, sys, threading

def one(conn_box, port, host, path, headers, method="GET"):
    for attempt in range(2):
        if conn_box[0] is None:
            conn_box[0] = http.client.HTTPConnection("127.0.0.1", int(port), timeout=20)
        c = conn_box[0]
        try:
            c.request(method, path, headers=dict(headers, Host=host))
            r = c.getresponse()
            r.read()
            if r.getheader("Connection", "").lower() == "close":
                c.close(); conn_box[0] = None
            return r
        except (http.client.HTTPException, OSError):
            c.close(); conn_box[0] = None
            if attempt:
                raise

def bulk(port, host, n, prefix, threads):
    n, threads = int(n), int(threads)
    counts, lock = {}, threading.Lock()
    def run(k):
        box = [None]
        for i in range(k, n, threads):
            try:
                code = one(box, port, host, "%s%d" % (prefix, i), {}).status
            except Exception as e:
                code = "error:%s" % type(e).__name__
            with lock:
                counts[code] = counts.get(code, 0) + 1
    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts: t.start()
    for t in ts: t.join()
    for k, v in sorted(counts.items(), key=str):
        print(k, v)

def burst(port, host, n, path, *hv):
    headers = dict(h.split(":", 1) for h in hv)
    box = [None]
    for i in range(int(n)):
        r = one(box, port, host, path, headers)
        print(r.status, r.getheader("Retry-After", "-"))

def concurrent(port, host, n, path):
    n = int(n)
    out, lock = [], threading.Lock()
    barrier = threading.Barrier(n)
    def run(i):
        box = [None]
        barrier.wait()
        try:
            r = one(box, port, host, "%s%d" % (path, i), {})
            line = "%d %s" % (r.status, (r.getheader("X-Ward-Reason") or "-").replace(" ", "_"))
        except Exception as e:
            line = "error %s" % type(e).__name__
        with lock:
            out.append(line)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    print("\n".join(sorted(out)))

globals()[sys.argv[1]](*sys.argv[2:])
EOF
client() { timeout 60 python3 "$TMP/client.py" "$@"; }

# hc HOST PATH [CURL ARGS...]: one request through the frontend; sets CODE, BODY, HDRS, SECS.
hc() {
    local host=$1 path=$2 out
    shift 2
    out=$(timeout 30 curl -s -D "$TMP/hdrs" -H "Host: $host" --max-time 20 \
        -w '\n%{http_code} %{time_total}' "$@" "http://127.0.0.1:${PORT_OVERRIDE:-$FOUT}$path")
    local last=${out##*$'\n'}
    CODE=${last% *}
    SECS=${last#* }
    BODY=${out%$'\n'*}
    HDRS=$(tr -d '\r' <"$TMP/hdrs" 2>/dev/null)
}
hdr() { printf '%s\n' "$HDRS" | awk -v n="$1" 'tolower($0) ~ "^"tolower(n)":" {sub(/^[^:]*: */, ""); print; exit}'; }
# seen APP PYEXPR: the number of records of APP for which PYEXPR holds (r is the record)
seen() {
    python3 -c 'import json, sys
n = 0
for l in open(sys.argv[1]):
    r = json.loads(l)
    if eval(sys.argv[2]):
        n += 1
print(n)' "$TMP/$1.rec" "$2"
}
seen_path() { seen "$1" "r['target'] == '$2'"; }
seen_prefix() { seen "$1" "r['target'].startswith('$2')"; }
metrics() { curl -s --max-time 5 "http://127.0.0.1:$1/metrics"; }
# metric ADMIN_PORT REGEX: the sum of the samples whose name{labels} matches REGEX
metric() {
    metrics "$1" | awk -v re="$2" '$1 ~ re {s += $NF} END {print s + 0}'
}
clusters_ep() { # clusters_ep SERVICE ENDPOINT FIELD: a field of the frontend's /clusters
    curl -s --max-time 5 "http://127.0.0.1:$FADM/clusters" | python3 -c 'import json, sys
svc, addr, field = sys.argv[1:4]
for c in json.load(sys.stdin)["clusters"]:
    if c["service"] == svc:
        for e in c["endpoints"]:
            if e["address"] == addr:
                print(json.dumps(e[field]))' "$1" "$2" "$3"
}
# audit_count DIR WHERE...: records that match, via wardctl audit query (the trail is written in
# groups: polled until two reads agree)
audit_count() {
    local dir=$1 prev=-1 n
    shift
    local args=()
    for w in "$@"; do args+=(--where "$w"); done
    for _ in $(seq 20); do
        n=$(timeout 10 "$WC" audit query "$dir" "${args[@]}" --count 2>/dev/null)
        [ -n "$n" ] && [ "$n" = "$prev" ] && break
        prev=$n
        sleep 0.2
    done
    echo "${n:-none}"
}

echo "# t=$(($(date +%s) - T_START)) s"
# ---- 1. weighted split ------------------------------------------------------------------------

N=2400
split=$(client bulk "$FOUT" payments "$N" /split/ 4)
expect_eq "weighted split: $N GETs through the Route, every one 200" "200 $N" "$split"
v2=$(seen_prefix v2 /split/)
v1=$(($(seen_prefix pay-a /split/) + $(seen_prefix pay-b /split/) + $(seen_prefix pay-c /split/)))
expect_eq "weighted split: the backends received each request exactly once" "$N" "$((v1 + v2))"
# 10% of N: mean 240, sigma = sqrt(N * 0.1 * 0.9) = 14.7; 4 sigma = 59
lo=$((N / 10 - 59)) hi=$((N / 10 + 59))
if [ "$v2" -ge "$lo" ] && [ "$v2" -le "$hi" ]; then
    pass "weighted split 10/90: payments-v2 got $v2 of $N (expected $((N / 10)) +- 4 sigma: $lo..$hi)"
else
    fail "weighted split 10/90: payments-v2's share is within 4 sigma" "v2: $v2, payments: $v1 (bounds $lo..$hi)"
fi
each=""
for a in pay-a pay-b pay-c; do each="$each $(seen_prefix "$a" /split/)"; done
ok=1
for x in $each; do [ "$x" -ge $((v1 / 3 - v1 / 6)) ] || ok=0; done
check_each() { if [ "$1" = 1 ]; then pass "$2"; else fail "$2" "${@:3}"; fi; }
check_each "$ok" "weighted split: least_request spreads payments' share over its 3 endpoints ($each)" "per endpoint:$each"
expect_eq "weighted split: payments-v2's inbound audit trail has exactly the requests its app received" \
    "$v2" "$(audit_count "$TMP/audit-v2" 'request.path=/split/*' decision=allow direction=inbound)"
a_all=0
for a in pay-a pay-b pay-c; do
    a_all=$((a_all + $(audit_count "$TMP/audit-$a" 'request.path=/split/*' decision=allow)))
done
expect_eq "weighted split: payments' inbound audit trails (3 endpoints) have exactly the requests its apps received" \
    "$v1" "$a_all"
expect_eq "per-route metrics: ward_route_requests_total{route=shop/payments,entry=split,2xx} = $N" "$N" \
    "$(metric "$FADM" '^ward_route_requests_total\{direction="outbound",route="shop/payments",entry="split",code_class="2xx"\}$')"
expect_eq "per-route metrics: the latency histogram of that entry counts them" "$N" \
    "$(metric "$FADM" '^ward_route_request_duration_seconds_count\{direction="outbound",route="shop/payments",entry="split"\}$')"

echo "# t=$(($(date +%s) - T_START)) s"
# ---- 2. canary by header, rewrite and header operations ----------------------------------------

before_v2=$(seen_prefix v2 /split/canary)
hits=0
for i in $(seq 20); do
    hc payments "/split/canary$i" -H 'x-canary: 1'
    [ "$CODE" = 200 ] && [ "$(hdr x-app)" = v2 ] && hits=$((hits + 1))
done
expect_eq "header canary: 20 of 20 requests with x-canary: 1 answered by payments-v2" 20 "$hits"
expect_eq "header canary: the v2 app received all 20" 20 "$(($(seen_prefix v2 /split/canary) - before_v2))"
expect_eq "header canary: the request carried x-route: canary (set by the Route)" 20 \
    "$(seen v2 "r['target'].startswith('/split/canary') and r['headers'].get('x-route') == 'canary'")"
hc payments "/split/nocanary" -H 'x-canary: 0'
expect_match "header canary: x-canary: 0 falls through to the split entry (200)" '^200$' "$CODE"

hc payments "/old/items/7?q=1" -H 'x-debug: secret' -H 'x-route: from-client'
expect_eq "rewrite: 200 through the legacy entry" 200 "$CODE"
rw=$(python3 -c 'import json, sys
recs = []
for a in ("pay-a", "pay-b", "pay-c"):
    recs += [json.loads(l) for l in open(sys.argv[1] + "/" + a + ".rec")]
r = [r for r in recs if "items/7" in r["target"]]
if len(r) != 1:
    print("records: %d" % len(r))
else:
    h = r[0]["headers"]
    print(r[0]["target"], h.get("x-route"), h.get("x-via"), h.get("x-debug", "no-x-debug"))' "$TMP")
expect_eq "rewrite: the app got /new/items/7?q=1 with x-route set (the client's replaced), x-via added, x-debug removed" \
    "/new/items/7?q=1 legacy ward no-x-debug" "$rw"
expect_eq "response header ops: X-Powered-By removed, x-served-by set, the app's X-App kept" \
    "|ward-route|pay-" "$(hdr x-powered-by)|$(hdr x-served-by)|$(hdr x-app | cut -c1-4)"

echo "# t=$(($(date +%s) - T_START)) s"
# ---- 3. retries --------------------------------------------------------------------------------

# retried_on_other MODE NAME: ord-a misbehaves; requests until one reaches ord-a first (round robin:
# at most 2); that one must be answered 200 by ord-b.
retried_on_other() {
    local m=$1 name=$2 i got=""
    mode "$m" ord-a
    for i in 1 2 3; do
        hc orders "/r/$m$i"
        if [ "$(seen_path ord-a "/r/$m$i")" = 1 ]; then
            got=$i
            break
        fi
    done
    mode ok ord-a
    if [ -z "$got" ]; then
        fail "$name: a request reached ord-a" "3 requests, none on ord-a"
        return
    fi
    expect_eq "$name: the client gets 200 from ord-b" "200 ord-b" "$CODE $(hdr x-app)"
    expect_eq "$name: ord-a saw the request once, ord-b saw the retry once" "1 1" \
        "$(seen_path ord-a "/r/$m$got") $(seen_path ord-b "/r/$m$got")"
}
r0=$(metric "$FADM" '^ward_route_retries_total\{direction="outbound",route="shop/orders",entry="retry"\}$')
retried_on_other reset "retry on reset (the app resets; its proxy answers 502)"
retried_on_other 503 "retry on 503"

mode 503 ord-a ord-b
hc orders /r/get-all-503
expect_eq "GET with both endpoints answering 503: the client gets the 503 after attempts: 2" 503 "$CODE"
expect_eq "... the endpoints saw 3 attempts (1 + 2 retries), alternating" 3 \
    "$(($(seen_path ord-a /r/get-all-503) + $(seen_path ord-b /r/get-all-503)))"
hc orders /r/post -X POST
expect_eq "POST (not idempotent, no nonIdempotent in the Route): the client gets the 503" 503 "$CODE"
expect_eq "... and the apps saw exactly one POST (no retry)" 1 \
    "$(($(seen ord-a "r['target'] == '/r/post' and r['method'] == 'POST'") + $(seen ord-b "r['target'] == '/r/post' and r['method'] == 'POST'")))"
hc orders /r/post-body -X POST --data-binary 'charge=1'
expect_eq "POST with a body: one attempt only" "503 1" \
    "$CODE $(($(seen_path ord-a /r/post-body) + $(seen_path ord-b /r/post-body)))"
mode ok ord-a ord-b

# per-try timeout: ord-a hangs (5 s); perTryTimeout 300ms, timeout 3s
mode hang ord-a
got=""
for i in 1 2 3; do
    hc orders "/r/hang$i"
    if [ "$(seen_path ord-a "/r/hang$i")" = 1 ]; then
        got=$i
        break
    fi
done
mode ok ord-a
if [ -n "$got" ]; then
    expect_eq "per-try timeout: the request that hit the hanging endpoint is answered 200 by ord-b" \
        "200 ord-b 1" "$CODE $(hdr x-app) $(seen_path ord-b "/r/hang$got")"
    ms=$(python3 -c "print(int(float('$SECS') * 1000))")
    if [ "$ms" -ge 280 ] && [ "$ms" -lt 1500 ]; then
        pass "per-try timeout: retried elsewhere after ~perTryTimeout (${ms} ms; perTryTimeout 300 ms, hang 5 s)"
    else
        fail "per-try timeout: retried elsewhere after ~perTryTimeout (300 ms)" "took ${ms} ms"
    fi
else
    fail "per-try timeout: a request reached the hanging ord-a" "none of 3"
fi
r1=$(metric "$FADM" '^ward_route_retries_total\{direction="outbound",route="shop/orders",entry="retry"\}$')
# reset 1 + 503 1 + all-503 2 + hang 1 = 5 retries
expect_eq "per-route metrics: ward_route_retries_total{route=shop/orders,entry=retry} counts the 5 retries" \
    5 "$((r1 - r0))"
expect_match "per-route metrics: ward_route_requests_total{route=shop/orders} has a 5xx class sample" \
    '^[1-9]' "$(metric "$FADM" '^ward_route_requests_total\{direction="outbound",route="shop/orders",entry="retry",code_class="5xx"\}$')"

# the Route's timeout bounds the whole request: 5 retries of 300 ms would take 1.8 s
mode hang ord-a ord-b
hc orders /deadline/x
mode ok ord-a ord-b
ms=$(python3 -c "print(int(float('$SECS') * 1000))")
if [ "$CODE" = 504 ] && [ "$ms" -ge 650 ] && [ "$ms" -lt 1300 ]; then
    pass "timeout 700ms with perTryTimeout 300ms and 5 retries: 504 after the Route's timeout (${ms} ms), not 6 tries"
else
    fail "timeout 700ms with perTryTimeout 300ms and 5 retries: 504 after about 700 ms" "got $CODE after ${ms} ms"
fi

echo "# t=$(($(date +%s) - T_START)) s"
# ---- 4. circuit breaker ------------------------------------------------------------------------

ov0=$(metric "$FADM" '^ward_cluster_overflows_total\{service="inventory",breaker="max_requests"\}$')
cb=$(client concurrent "$FOUT" inventory 8 /slow/cb)
n200=$(printf '%s\n' "$cb" | grep -c '^200 ')
n503=$(printf '%s\n' "$cb" | grep -c '^503 circuit_breaker:_max_requests$')
expect_eq "circuit breaker max_requests 2: of 8 concurrent slow requests 2 pass, 6 get 503 with X-Ward-Reason: circuit breaker: max_requests" \
    "2 6" "$n200 $n503"
expect_eq "... the app received only the 2 admitted" 2 "$(seen_prefix v2 /slow/cb)"
expect_eq "... ward_cluster_overflows_total{service=inventory,breaker=max_requests} counts the 6" 6 \
    "$(($(metric "$FADM" '^ward_cluster_overflows_total\{service="inventory",breaker="max_requests"\}$') - ov0))"

# max_connections: concurrent requests each need a connection of their own
ov0=$(metric "$FADM" '^ward_cluster_overflows_total\{service="stock",breaker="max_connections"\}$')
cb=$(client concurrent "$FOUT" stock 8 /slow/mc)
n200=$(printf '%s\n' "$cb" | grep -c '^200 ')
n503=$(printf '%s\n' "$cb" | grep -c '^503 circuit_breaker:_max_connections$')
expect_eq "circuit breaker max_connections 2: of 8 concurrent slow requests 2 pass, 6 get 503 with X-Ward-Reason: circuit breaker: max_connections" \
    "2 6" "$n200 $n503"
expect_eq "... the app received only the 2 admitted" 2 "$(seen_prefix ledger /slow/mc)"
expect_eq "... ward_cluster_overflows_total{service=stock,breaker=max_connections} counts the 6" 6 \
    "$(($(metric "$FADM" '^ward_cluster_overflows_total\{service="stock",breaker="max_connections"\}$') - ov0))"
expect_eq "... ward_cluster_connections{service=stock} shows the 2 kept open" 2 \
    "$(metric "$FADM" '^ward_cluster_connections\{service="stock"\}$')"

echo "# t=$(($(date +%s) - T_START)) s"
# ---- 5. outlier ejection and return ------------------------------------------------------------

PC=$(ep pay-c)
mode 503 pay-c
client bulk "$FOUT" payments 30 /eject/a 1 >"$TMP/eject1.out"
expect_eq "outlier: with pay-c answering 503, every client request still gets 200 (retried)" "200 30" \
    "$(cat "$TMP/eject1.out")"
expect_eq "outlier: /clusters shows pay-c ejected" true "$(clusters_ep payments "$PC" ejected)"
expect_eq "outlier: it was ejected after 3 consecutive 5xx (it saw exactly 3 requests)" 3 "$(seen_prefix pay-c /eject/a)"
expect_match "outlier: ward_cluster_endpoint_ejections_total counts it" '^[1-9]' \
    "$(metric "$FADM" "^ward_cluster_endpoint_ejections_total\\{service=\"payments\",endpoint=\"$PC\"\\}\$")"
client bulk "$FOUT" payments 30 /eject/b 1 >/dev/null
expect_eq "outlier: while ejected (still so after the requests) pay-c receives nothing" "0 true" \
    "$(seen_prefix pay-c /eject/b) $(clusters_ep payments "$PC" ejected)"
mode ok pay-c
left=$(clusters_ep payments "$PC" ejected_remaining_ms)
sleep "$(python3 -c "print(min(${left:-3000}, 3000) / 1000 + 0.2)")"
client bulk "$FOUT" payments 30 /eject/c 1 >/dev/null
n_back=$(seen_prefix pay-c /eject/c)
if [ "$n_back" -ge 3 ]; then
    pass "outlier: after its ejection time pay-c is back in rotation ($n_back of 30 requests)"
else
    fail "outlier: after its ejection time pay-c is back in rotation" "it got $n_back of 30"
fi
expect_eq "outlier: /clusters shows it no longer ejected" false "$(clusters_ep payments "$PC" ejected)"

echo "# t=$(($(date +%s) - T_START)) s"
# ---- 6. every endpoint failing: the retry budget -----------------------------------------------

mode slow503 pay-a pay-b pay-c
rb0=$(metric "$FADM" '^ward_cluster_overflows_total\{service="payments",breaker="retry_budget"\}$')
NB=40
budget=$(client concurrent "$FOUT" payments "$NB" /budget/)
mode ok pay-a pay-b pay-c
attempts=$(($(seen_prefix pay-a /budget/) + $(seen_prefix pay-b /budget/) + $(seen_prefix pay-c /budget/)))
expect_eq "retry budget: all $NB concurrent requests to a failing service get 503" "$NB" \
    "$(printf '%s\n' "$budget" | grep -c '^503 ')"
# budget: retries in flight <= max(20% of first attempts in flight, min_concurrency 2);
# attempts: 3 would allow 4 x 40 = 160 without it
bound=$((NB + NB / 5 + 2 * 3))
if [ "$attempts" -ge "$NB" ] && [ "$attempts" -le "$bound" ]; then
    pass "retry budget: the backends received $attempts attempts for $NB requests (<= $NB x 1.2 + 2 x 3 = $bound; 160 without a budget)"
else
    fail "retry budget: the backends received at most $bound attempts for $NB requests" "attempts: $attempts"
fi
rb1=$(metric "$FADM" '^ward_cluster_overflows_total\{service="payments",breaker="retry_budget"\}$')
if [ "$((rb1 - rb0))" -gt 0 ]; then
    pass "retry budget: the refused retries are counted (ward_cluster_overflows_total{breaker=retry_budget} +$((rb1 - rb0)))"
else
    fail "retry budget: the refused retries are counted" "ward_cluster_overflows_total{breaker=retry_budget}: $rb0 -> $rb1"
fi

echo "# t=$(($(date +%s) - T_START)) s"
# ---- 7. no healthy endpoint; unknown destination -----------------------------------------------

hc dead /x1
expect_eq "dead upstream, first request: 503 (nobody listening)" 503 "$CODE"
hc dead /x2
expect_eq "dead upstream once ejected: 503 with X-Ward-Reason: no healthy endpoint" \
    "503 no healthy endpoint" "$CODE $(hdr x-ward-reason)"
# an endpoint presenting another identity fails the TLS handshake: a connect failure (the request
# never left), so outlier detection counts it as one (docs/proxy-config.md) and ejects it
hc impostor /who
expect_match "an endpoint with the wrong SPIFFE ID: 502 naming the TLS handshake" '^502 TLS handshake' \
    "$CODE $(hdr x-ward-reason)"
IMP=$(ep ledger)
expect_eq "... counted as connect failures (2 attempts: the default retry), not 5xx, and ejected" \
    "2 0 true" "$(clusters_ep impostor "$IMP" connect_failures) $(clusters_ep impostor "$IMP" errors_5xx) $(clusters_ep impostor "$IMP" ejected)"
hc payments /ghost/x
expect_eq "a Route destination that is no upstream: 503 with its reason" \
    "503 route destination is not a known upstream" "$CODE $(hdr x-ward-reason)"

echo "# t=$(($(date +%s) - T_START)) s"
# ---- 8. rate limits (the ledger's inbound proxy) -----------------------------------------------

LADM=${ADM_OF[ledger]}
burst=$(client burst "$FOUT" ledger 8 /pay)
n200=$(printf '%s\n' "$burst" | grep -c '^200 ')
n429=$(printf '%s\n' "$burst" | grep -c '^429 ')
expect_eq "rate limit 5 per 10s per source.principal: a burst of 8 from the frontend gets 5 x 200 and 3 x 429" \
    "5 3" "$n200 $n429"
ra=$(printf '%s\n' "$burst" | awk '$1 == 429 {print $2}' | sort -u)
expect_match "... every 429 carries Retry-After, an integer >= 1 ($ra)" '^[1-9][0-9]*$' "$ra"
hc ledger /pay-again
expect_eq "rate limit: still limited right after the burst" 429 "$CODE"
RA=$(hdr retry-after)
t_limited=$(date +%s%N)
expect_eq "... the ledger app received only the 5 admitted" 5 "$(seen_path ledger /pay)"
other=$(client burst "$ROUT" ledger 5 /pay-reports)
expect_eq "rate limit: another caller (spiffe://.../reports) has its own bucket: 5 of 5 pass" 5 \
    "$(printf '%s\n' "$other" | grep -c '^200 ')"
expect_eq "rate limit: the 429s are in the ledger's audit trail as denials by the Route, status 429" "$n429" \
    "$(audit_count "$TMP/audit-ledger" decision=deny policy=shop/ledger response.status=429 request.path=/pay)"
expect_eq "... recorded with the caller's principal (the burst's and the one after it)" "$((n429 + 1))" \
    "$(audit_count "$TMP/audit-ledger" decision=deny response.status=429 "source.principal=$FRONT_ID")"
expect_eq "rate limit: ward_route_rate_limited_total{direction=inbound,route=shop/ledger,entry=per-caller} = $((n429 + 1))" \
    "$((n429 + 1))" "$(metric "$LADM" '^ward_route_rate_limited_total\{direction="inbound",route="shop/ledger",entry="per-caller"\}$')"
# what is left of Retry-After since that answer
sleep "$(python3 -c "print(max(0, ${RA:-0} - ($(date +%s%N) - $t_limited) / 1e9))")"
hc ledger /pay-after-wait
expect_eq "rate limit: after waiting Retry-After seconds a request passes again" 200 "$CODE"

keyed=$(client burst "$FOUT" ledger 4 /keyed/a x-tenant:acme)
expect_eq "header-keyed limit (3 per 10s per x-tenant): tenant acme gets 3 x 200 then 429" "200 200 200 429" \
    "$(printf '%s\n' "$keyed" | awk '{print $1}' | tr '\n' ' ' | sed 's/ $//')"
keyed_b=$(client burst "$FOUT" ledger 3 /keyed/b x-tenant:globex)
expect_eq "... the same caller with x-tenant: globex has its own bucket (3 x 200)" 3 \
    "$(printf '%s\n' "$keyed_b" | grep -c '^200 ')"
expect_eq "... its 429 is audited with the per-tenant entry's Route" 1 \
    "$(audit_count "$TMP/audit-ledger" decision=deny policy=shop/ledger response.status=429 'request.path=/keyed/*')"
expect_eq "... and counted in ward_route_rate_limited_total{entry=per-tenant}" 1 \
    "$(metric "$LADM" '^ward_route_rate_limited_total\{direction="inbound",route="shop/ledger",entry="per-tenant"\}$')"

echo "# t=$(($(date +%s) - T_START)) s"
# ---- 9. per-route metrics families -----------------------------------------------------------

m=$(metrics "$FADM")
for fam in ward_route_requests_total ward_route_retries_total ward_route_request_duration_seconds_bucket; do
    expect_match "per-route metrics: $fam has route and entry labels" \
        "^$fam\\{direction=\"outbound\",route=\"shop/payments\",entry=\"(split|legacy|budget|default|canary)\"" \
        "$(printf '%s\n' "$m" | grep "^$fam{" | grep 'route="shop/payments"' | head -1)"
done
expect_match "per-route metrics: the budget entry's retries are counted" '^[1-9]' \
    "$(metric "$FADM" '^ward_route_retries_total\{direction="outbound",route="shop/payments",entry="budget"\}$')"

# ---- the trails verify; nobody died ----------------------------------------------------------

for n in frontend ledger; do
    kill -TERM "${PROXY_PID[$n]}" 2>/dev/null
    if timeout 10 tail --pid="${PROXY_PID[$n]}" -f /dev/null; then :; fi
    if out=$(timeout 20 "$WC" audit verify "$TMP/audit-$n" 2>&1); then
        pass "wardctl audit verify passes on the $n proxy's trail"
    else
        fail "wardctl audit verify passes on the $n proxy's trail" "$out"
    fi
done
dead=""
for n in $APPS reports; do
    [ "$n" = ledger ] && continue
    kill -0 "${PROXY_PID[$n]}" 2>/dev/null || dead="$dead $n"
done
expect_eq "every other proxy is still running" "" "$dead"
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$TMP"/*.log; then
    fail "no sanitizer report in the proxies' logs" "$(grep -lE 'AddressSanitizer|runtime error' "$TMP"/*.log)"
fi
echo "# test_proxy_routes.sh took $(($(date +%s) - T_START)) s"
finish
