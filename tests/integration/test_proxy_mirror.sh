#!/usr/bin/env bash
# test_proxy_mirror.sh - a Route's mirror: copies of body-less requests reach the shadow service through its own inbound proxy (mTLS, its SPIFFE ID pinned), fire-and-forget: a shadow that hangs or is gone never slows or fails the real request.
. "$(dirname "$0")/lib.sh"

WP="$BIN/ward-proxy"
TD=mirror.test
ORDERS_ID="spiffe://$TD/ns/shop/sa/orders"
PAY_ID="spiffe://$TD/ns/shop/sa/payments"
SHADOW_ID="spiffe://$TD/ns/shop/sa/payments-shadow"
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ ! -x "$WP" ]; then
    fail "ward-proxy is built" "missing $WP (run make)"
    finish
fi
check() { if eval "$2"; then pass "$1"; else fail "$1" "${3:-}"; fi; }

PKI="$TMP/pki"
spiffe_ca "$PKI" "$TD"
spiffe_leaf "$PKI" orders "$ORDERS_ID" && spiffe_leaf "$PKI" payments "$PAY_ID" &&
    spiffe_leaf "$PKI" shadow "$SHADOW_ID"
for f in ca orders payments shadow; do
    [ -s "$PKI/$f.pem" ] || { fail "test certificates are made" "no $PKI/$f.pem"; finish; }
done

# requests N PATH [METHOD]: N requests to the orders proxy's outbound listener (Host: payments);
# prints the status codes and the slowest request's seconds
requests() {
    python3 - "$OUT" "$1" "$2" "${3:-GET}" <<'EOF'
import http.client, sys, time
port, n, path, method = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
codes, slowest = {}, 0.0
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for i in range(n):
    t0 = time.monotonic()
    body = b"x" * 100 if method == "POST" else None
    conn.request(method, path, body=body, headers={"Host": "payments"})
    r = conn.getresponse()
    r.read()
    slowest = max(slowest, time.monotonic() - t0)
    codes[r.status] = codes.get(r.status, 0) + 1
print(" ".join("%d:%d" % kv for kv in sorted(codes.items())), "%.3f" % slowest)
EOF
}
# recorded NAME: requests the app NAME received, and how many carried X-Ward-Mirror: 1 and
# Host: payments-shadow
recorded() {
    python3 - "$TMP/$1.rec" <<'EOF'
import json, sys
n = m = h = 0
try:
    for line in open(sys.argv[1]):
        r = json.loads(line)
        if "method" not in r:
            continue
        n += 1
        hs = {k.lower(): v for k, v in r["headers"]}
        m += hs.get("x-ward-mirror") == "1"
        h += hs.get("host") == "payments-shadow"
except FileNotFoundError:
    pass
print(n, m, h)
EOF
}

cat >"$TMP/policy.yaml" <<EOF
apiVersion: ward/v1
kind: AuthorizationPolicy
metadata: {name: payments-callers, namespace: shop}
spec:
  selector: {services: [payments, payments-shadow, impostor]}
  action: ALLOW
  rules:
    - from: [{principals: ["$ORDERS_ID"]}]
---
apiVersion: ward/v1
kind: Route
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments]
  http:
    - name: pinned
      match: [{paths: ["/pinned/*"]}]
      destinations: [{service: payments}]
      mirror: {service: impostor, percent: 100}
    - name: reads
      match: [{methods: [GET, POST]}]
      destinations: [{service: payments}]
      mirror: {service: payments-shadow, percent: 100}
EOF

start_mesh_app pay || { fail "the payments app starts"; finish; }
PAY_APP=$APP_PORT
start_mesh_app shadow || { fail "the shadow app starts"; finish; }
SHADOW_APP=$APP_PORT SHADOW_APP_PID=$APP_PID
proxy_yaml() { # proxy_yaml NAME SERVICE CERT APP-PORT [UPSTREAMS-YAML]
    cat >"$TMP/$1.yaml" <<EOF
service: $2
identity: {cert_file: $PKI/$3.pem, key_file: $PKI/$3.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:$4}
policy: {paths: [$TMP/policy.yaml]}
audit: {dir: $TMP/audit-$1}
admin: {listen: 127.0.0.1:0}
workers: 1
${5:-}
EOF
}
proxy_yaml pay payments payments "$PAY_APP"
start_ward_proxy pay || { fail "payments's proxy starts" "$(tail -3 "$TMP/pay.log")"; finish; }
PAY_IN=$IN
proxy_yaml shadow payments-shadow shadow "$SHADOW_APP"
start_ward_proxy shadow || { fail "the shadow's proxy starts" "$(tail -3 "$TMP/shadow.log")"; finish; }
SHADOW_IN=$IN SHADOW_PROXY=$LPID
proxy_yaml orders orders orders 9 "outbound: {listen: 127.0.0.1:0}
upstreams:
  - {service: payments, endpoints: [127.0.0.1:$PAY_IN], spiffe_id: $PAY_ID}
  - {service: payments-shadow, endpoints: [127.0.0.1:$SHADOW_IN], spiffe_id: $SHADOW_ID}
  - {service: impostor, endpoints: [127.0.0.1:$SHADOW_IN], spiffe_id: $PAY_ID}"
start_ward_proxy orders || { fail "orders's proxy starts" "$(tail -3 "$TMP/orders.log")"; finish; }
ORDERS_ADMIN=$ADMIN

read -r codes _ <<<"$(requests 20 /v1/echo)"
expect_eq "20 GETs through the Route are answered by payments" "200:20" "$codes"
sleep 0.5
read -r n m h <<<"$(recorded shadow)"
expect_eq "the shadow's app got a copy of each (through its own mTLS proxy)" "20" "$n"
expect_eq "... each marked X-Ward-Mirror: 1 with Host: payments-shadow" "20 20" "$m $h"
read -r n _ <<<"$(recorded pay)"
expect_eq "payments's app got each request once" "20" "$n"
read -r codes _ <<<"$(requests 3 /v1/echo POST)"
sleep 0.3
read -r n _ <<<"$(recorded shadow)"
expect_eq "requests with a body are served and not copied" "200:3 20" "$codes $n"
mirrored=$(curl -s "http://127.0.0.1:$ORDERS_ADMIN/metrics" |
    awk '$1 ~ /^ward_route_mirrored_total\{direction="outbound",route="shop\/payments",entry="reads"\}/ {print $2}')
expect_eq "ward_route_mirrored_total counts the copies" "20" "$mirrored"
allowed=$(grep -c '"decision":"allow"' "$TMP"/audit-shadow/segment-*.jsonl 2>/dev/null)
expect_eq "the shadow's proxy decided and audited every copy" "20" "$allowed"

# the mirror's identity is pinned: "impostor" is the shadow's address under payments's ID, so
# the shadow's proxy presents another ID than configured and gets no copy
read -r codes _ <<<"$(requests 5 /pinned/x)"
sleep 0.5
read -r n _ <<<"$(recorded shadow)"
expect_eq "a mirror endpoint presenting another SPIFFE ID than configured gets no copy (the requests are served)" \
    "200:5 20" "$codes $n"

# a shadow that hangs: the copies wait, the real requests do not
kill -STOP "$SHADOW_APP_PID"
read -r codes slowest <<<"$(requests 10 /v1/echo)"
expect_eq "with the shadow's app frozen, requests are still answered" "200:10" "$codes"
check "... none slower than 1 s (the slowest took ${slowest}s)" \
    "python3 -c 'import sys; sys.exit(0 if float(\"$slowest\") < 1.0 else 1)'"
kill -CONT "$SHADOW_APP_PID"

# a shadow that is gone
kill -KILL "$SHADOW_PROXY"
wait "$SHADOW_PROXY" 2>/dev/null
read -r codes slowest <<<"$(requests 10 /v1/echo)"
expect_eq "with the shadow's proxy gone, requests are still answered" "200:10" "$codes"
check "... promptly (slowest ${slowest}s)" \
    "python3 -c 'import sys; sys.exit(0 if float(\"$slowest\") < 1.0 else 1)'"
check "orders's proxy is still running" "kill -0 $LPID"
kill -TERM "$LPID"
wait "$LPID"
expect_eq "orders's proxy stops cleanly on SIGTERM (exit 0; sanitizer builds: no leak, no error)" \
    "0" "$?"

finish
