#!/usr/bin/env bash
# test_audit_full.sh - fail closed when the audit trail's disk fills up: ward-proxy refuses (503) every request it can no longer record, the app sees none of them, /ready says why, and /metrics and the log count the refusals.
. "$(dirname "$0")/lib.sh"

TD=full.test
FRONT_ID="spiffe://$TD/ns/shop/sa/frontend"
PAY_ID="spiffe://$TD/ns/shop/sa/payments"
PIDS=()
MOUNTED=""

cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ -n "$MOUNTED" ] && umount "$MOUNTED" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ ! -x "$BIN/ward-proxy" ]; then
    fail "ward-proxy is built" "missing $BIN/ward-proxy (run make)"
    finish
fi
PKI="$TMP/pki"
spiffe_ca "$PKI" "$TD"
spiffe_leaf "$PKI" frontend "$FRONT_ID" && spiffe_leaf "$PKI" payments "$PAY_ID"
[ -s "$PKI/payments.pem" ] || { fail "test certificates are made"; finish; }

# a small disk for the trail: a 256 KiB tmpfs fills up after a few hundred records
mkdir -p "$TMP/audit"
if ! mount -t tmpfs -o size=256k,mode=0700 tmpfs "$TMP/audit" 2>"$TMP/mount.err"; then
    fail "a 256 KiB tmpfs is mounted for the trail (needs root)" "$(cat "$TMP/mount.err")"
    finish
fi
MOUNTED="$TMP/audit"

start_mesh_app || { fail "the app starts" "$(tail -3 "$TMP/app.log")"; finish; }
payments_policy "$TMP/policy.yaml" "$FRONT_ID" '[{methods: [GET]}]'
cat >"$TMP/pay.yaml" <<EOF2
service: payments
identity: {cert_file: $PKI/payments.pem, key_file: $PKI/payments.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:$APP_PORT}
policy: {paths: [$TMP/policy.yaml]}
audit: {dir: $TMP/audit, queue_records: 128}
admin: {listen: 127.0.0.1:0}
workers: 1
EOF2
start_ward_proxy pay || { fail "ward-proxy starts with its trail on a small tmpfs" "$(tail -3 "$TMP/pay.log")"; finish; }
P=$LPID
ready=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/ready")
expect_eq "/ready is 200 while the trail has room" "200" "$ready"

# GETs one after the other until the disk is full; then 40 more
summary=$(python3 - "$IN" "$PKI" <<'EOF2'
import http.client, ssl, sys
port, pki = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.load_verify_locations(pki + "/ca.pem")
ctx.load_cert_chain(pki + "/frontend.pem", pki + "/frontend.key")
codes, bodies, conn, after = [], set(), None, 0
for i in range(5000):
    if conn is None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    conn.request("GET", "/v1/charges/%d" % i, headers={"Host": "payments"})
    r = conn.getresponse()
    body = r.read()
    codes.append(r.status)
    if r.status != 200:
        bodies.add(body.decode(errors="replace").strip())
    if r.will_close:
        conn.close()
        conn = None
    if 503 in codes:
        after += 1
        if after > 40:
            break
first = codes.index(503) if 503 in codes else -1
tail = codes[first:] if first >= 0 else []
print(codes.count(200), codes.count(503), len(codes) - codes.count(200) - codes.count(503),
      first, int(all(c == 503 for c in tail)), "|".join(sorted(bodies)))
EOF2
)
read -r ok refused other first all_after body <<<"$summary"
check() { if eval "$2"; then pass "$1"; else fail "$1" "${3:-}"; fi; }
check "requests are served (200) while the trail has room" '[ "${ok:-0}" -gt 0 ]' "$summary"
check "once the disk is full, requests are refused with 503" '[ "${refused:-0}" -gt 40 ]' "$summary"
expect_eq "... every one after the first refusal (the trail stays failed: nothing is served unrecorded)" "1" "$all_after"
expect_eq "... no other status" "0" "$other"
expect_eq "the refusal names the trail, nothing internal" "service unavailable: audit trail unavailable" "$body"
reached=$(grep -c '"method": "GET"' "$TMP/app.rec" 2>/dev/null || echo 0)
expect_eq "the app got exactly the requests answered 200 (none of the refused ones)" "$ok" "$reached"
sleep 1.2
code=$(curl -s -o "$TMP/ready.body" -w '%{http_code}' "http://127.0.0.1:$ADMIN/ready")
expect_eq "/ready is 503 once the trail failed" "503" "$code"
expect_match "... and says why" '^not ready: audit: .*: write: No space left on device' "$(cat "$TMP/ready.body")"
metrics=$(curl -s "http://127.0.0.1:$ADMIN/metrics")
m() { printf '%s\n' "$metrics" | awk -v k="$1" '$1 == k {print $2}'; }
check "ward_audit_records_refused_total counts at least the refused requests" \
    '[ "$(m ward_audit_records_refused_total)" -ge "$refused" ]' "refused $refused, metric $(m ward_audit_records_refused_total)"
check "ward_audit_write_errors_total counts the failed write" '[ "$(m ward_audit_write_errors_total)" -ge 1 ]' \
    "$(printf '%s\n' "$metrics" | grep '^ward_audit_')"
check "ward_audit_records_written_total counts what reached the disk" '[ "$(m ward_audit_records_written_total)" -gt 0 ]'
sleep 1.2
check "the log tells the refusals and the trail's failure" \
    'grep -q "audit: the trail failed, requests are refused until a restart: .*No space left on device" "$TMP/pay.log" && grep -q "audit: [0-9]* request(s) refused (503) in the last second: the trail failed" "$TMP/pay.log"' \
    "$(grep audit "$TMP/pay.log" | tail -3)"
kill -TERM "$P"
wait "$P"
expect_eq "ward-proxy stops with exit status 3: its trail failed" "3" "$?"

finish
