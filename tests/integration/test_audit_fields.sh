#!/usr/bin/env bash
# test_audit_fields.sh - what ward-proxy's audit records hold: the request fields audit.headers names (secrets and audit.redact's names as "[redacted]", never their values), and only the optional fields audit.fields allows.
. "$(dirname "$0")/lib.sh"

TD=fields.test
FRONT_ID="spiffe://$TD/ns/shop/sa/frontend"
PAY_ID="spiffe://$TD/ns/shop/sa/payments"
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -KILL "$p" 2>/dev/null; done
    wait 2>/dev/null
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

start_mesh_app || { fail "the app starts" "$(tail -3 "$TMP/app.log")"; finish; }
payments_policy "$TMP/policy.yaml" "$FRONT_ID" '[{methods: [GET]}]'
cat >"$TMP/pay.yaml" <<EOF
service: payments
identity: {cert_file: $PKI/payments.pem, key_file: $PKI/payments.key, bundle_file: $PKI/ca.pem}
inbound: {listen: 127.0.0.1:0, app: 127.0.0.1:$APP_PORT}
policy: {paths: [$TMP/policy.yaml]}
audit:
  dir: $TMP/audit
  headers: [X-Request-Id, authorization, cookie, x-api-key, x-absent]
  redact: [X-API-KEY]
  fields: [source.principal, request.path, request.headers, reason, trace_id]
admin: {listen: 127.0.0.1:0}
workers: 1
EOF
start_ward_proxy pay || { fail "ward-proxy starts with audit.headers, redact and fields" "$(tail -3 "$TMP/pay.log")"; finish; }
P=$LPID

# two requests with secrets in their fields: one allowed, one denied (DELETE)
codes=$(python3 - "$IN" "$PKI" <<'EOF'
import http.client, ssl, sys
port, pki = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.load_verify_locations(pki + "/ca.pem")
ctx.load_cert_chain(pki + "/frontend.pem", pki + "/frontend.key")
out = []
for method in ("GET", "DELETE"):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    c.request(method, "/v1/charges/7?card=4111111111111111", headers={
        "Host": "payments", "X-Request-Id": "req-%s-1" % method,
        "Authorization": "Bearer TOPSECRET-TOKEN", "Cookie": "session=COOKIE-SECRET",
        "X-Api-Key": "APIKEY-SECRET", "X-Other": "not-recorded"})
    r = c.getresponse()
    r.read()
    out.append(str(r.status))
    c.close()
print(" ".join(out))
EOF
)
expect_eq "an allowed GET and a denied DELETE" "200 403" "$codes"
kill -TERM "$P"
wait "$P"
expect_eq "ward-proxy stops cleanly" "0" "$?"

check() { if eval "$2"; then pass "$1"; else fail "$1" "${3:-}"; fi; }
out=$(grep -l -e TOPSECRET -e COOKIE-SECRET -e APIKEY-SECRET -e 4111111111111111 "$TMP"/audit/* 2>/dev/null)
check "no secret value (Authorization, Cookie, a redacted key, the query) is anywhere in the trail" \
    '[ -z "$out" ]' "$out"
grep -q 'Bearer TOPSECRET-TOKEN' "$TMP/app.rec"
check "... while the app still got its Authorization field (recording is not forwarding)" '[ $? -eq 0 ]'
facts=$("$BIN/wardctl" audit export "$TMP/audit" --format jsonl | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(r["request"]["method"], json.dumps(r["request"].get("headers"), sort_keys=True),
          r["source"]["principal"] is not None, r["source"]["ip"], r["source"]["port"],
          r["destination"]["port"], r["request"]["host"], r["request"]["path"],
          r["latency_ns"], r["peer_cert_sha256"], r["trace_id"] is not None, r["reason"] is not None)
')
expect_match "the GET's record holds the named fields, secrets as [redacted], nothing else" \
    'GET \{"authorization": "\[redacted\]", "cookie": "\[redacted\]", "x-api-key": "\[redacted\]", "x-request-id": "req-GET-1"\}' \
    "$facts"
expect_match "... and so does the denied DELETE's" \
    'DELETE \{"authorization": "\[redacted\]", "cookie": "\[redacted\]", "x-api-key": "\[redacted\]", "x-request-id": "req-DELETE-1"\}' \
    "$facts"
expect_match "audit.fields: the fields it leaves out are null (source ip and port, destination port, host, latency, certificate); those it lists are kept" \
    '^GET .* True None None None None /v1/charges/7 None None True True$' "$facts"
"$BIN/wardctl" audit verify "$TMP/audit" >/dev/null 2>&1
expect_eq "the trail verifies" "0" "$?"
csv=$("$BIN/wardctl" audit export "$TMP/audit" --format csv | python3 -c '
import csv, json, sys
rows = list(csv.DictReader(sys.stdin))
print(json.loads(rows[0]["request.headers"])["x-request-id"])')
expect_eq "the CSV export has the request.headers column (a JSON object)" "req-GET-1" "$csv"

# a bad list is refused before anything starts
sed 's/fields: \[source.principal,/fields: [source.principal, request.query,/' "$TMP/pay.yaml" >"$TMP/bad.yaml"
out=$("$BIN/ward-proxy" --config "$TMP/bad.yaml" --check 2>&1)
expect_match "an unknown field in audit.fields is refused with the list of the optional ones" \
    'audit\.fields\[1\]: "request\.query" is not a record field; the optional ones: source\.ip' "$out"

finish
