#!/usr/bin/env bash
# test_proxy_mesh.sh - the mesh as operators run it: wardd, two ward-proxy sidecars
# (frontend -> payments) and an app; SVID rotation and wardd down under load, policy
# hot reload under load, deny after reload, graceful shutdown, static identity
# refusals, 10,000 idle connections, and the audit trail of every request made.
. "$(dirname "$0")/lib.sh"

P="$BIN/ward-proxy"
WD="$BIN/wardd"
WC="$BIN/wardctl"
TD=example.org
PAY_ID="spiffe://$TD/ns/shop/sa/payments"
FRONT_ID="spiffe://$TD/ns/shop/sa/frontend"
PY=/usr/bin/python3 # Debian's, with python3-cryptography
[ -x "$PY" ] || PY=python3
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -KILL "$p" 2>/dev/null; done
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

for b in "$P" "$WD" "$WC"; do
    if [ ! -x "$b" ]; then
        fail "$(basename "$b") is built" "missing $b (run make)"
        finish
    fi
done
for tool in curl openssl wrk timeout; do
    if ! command -v "$tool" >/dev/null; then
        fail "$tool is installed"
        finish
    fi
done
# 10,000 idle connections need the descriptors (the proxies inherit the limit)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
# sanitizer builds: RSS figures mean nothing there
SANITIZED=0
case "$BUILD" in *sanitize*) SANITIZED=1 ;; esac
if command -v nm >/dev/null && nm "$P" 2>/dev/null | grep -q '__asan_init'; then SANITIZED=1; fi
ldd "$P" 2>/dev/null | grep -q 'libasan' && SANITIZED=1

T_START=$(date +%s)

# ---- helpers -------------------------------------------------------------------------------

free_port() {
    "$PY" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds.
wait_for() {
    local n=$(($1 * 10))
    shift
    for _ in $(seq "$n"); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

count() { # count PATTERN FILE: lines matching (fixed string)
    local n
    n=$(grep -cF -- "$1" "$2" 2>/dev/null)
    echo "${n:-0}"
}

# admin_get PORT PATH: body to stdout; ACODE = status
admin_get() {
    local out
    out=$(timeout 10 curl -s --max-time 5 -w '\n%{http_code}' "http://127.0.0.1:$1$2")
    ACODE=${out##*$'\n'}
    printf '%s' "${out%$'\n'*}"
}
admin_code() { # PORT PATH -> status
    timeout 10 curl -s --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1$2"
}
metric() { # PORT NAME: the value of an unlabelled sample (empty if absent)
    admin_get "$1" /metrics | awk -v n="$2" '$1 == n {print $2; exit}'
}

# call METHOD PATH: one request through the frontend's outbound listener; sets CODE,
# BODY and records "METHOD PATH CODE" in calls.txt (the audit trail is checked against it).
call() {
    local out
    out=$(timeout 15 curl -s --max-time 10 -X "$1" -H 'Host: payments' -w '\n%{http_code}' \
        "http://127.0.0.1:$FOUT$2")
    CODE=${out##*$'\n'}
    BODY=${out%$'\n'*}
    BODY=${BODY%$'\n'}
    echo "$1 $2 $CODE" >>"$TMP/calls.txt"
}

# run_wrk SECONDS OUTFILE [PATH]: load through the frontend (in the background: WRK_PID).
run_wrk() {
    wrk -t2 -c16 -d"$1"s --timeout 5s -H 'Host: payments' "http://127.0.0.1:$FOUT${3:-/v1/items}" \
        >"$2" 2>&1 &
    WRK_PID=$!
    PIDS+=("$WRK_PID")
}
# wrk_stats FILE: "REQUESTS NON2XX SOCKET_ERRORS"
wrk_stats() {
    local req non2xx errs
    req=$(awk '/requests in/ {print $1; exit}' "$1")
    non2xx=$(awk -F: '/Non-2xx or 3xx responses/ {gsub(/ /, "", $2); print $2; exit}' "$1")
    errs=$(awk '/Socket errors/ {gsub(/,/, ""); print $4 + $6 + $8 + $10; exit}' "$1")
    echo "${req:-0} ${non2xx:-0} ${errs:-0}"
}
# check_wrk NAME FILE: zero non-2xx, zero socket errors, some requests.
check_wrk() {
    local req non2xx errs
    read -r req non2xx errs <<<"$(wrk_stats "$2")"
    if [ "$req" -gt 0 ] && [ "$non2xx" = 0 ] && [ "$errs" = 0 ]; then
        pass "$1 ($req requests, 0 non-2xx, 0 socket errors)"
    else
        fail "$1" "requests=$req non-2xx=$non2xx socket-errors=$errs" "$(cat "$2")"
    fi
    echo "$req" >>"$TMP/wrk_requests.txt"
}

# start_wardd: on the fixed port WPORT (the proxies know it), data in $D.
start_wardd() {
    local before
    before=$(count 'bound port' "$TMP/wardd.log")
    "$WD" --trust-domain "$TD" --data-dir "$D" --listen "127.0.0.1:$WPORT" --svid-ttl 16s \
        2>>"$TMP/wardd.log" &
    WPID=$!
    PIDS+=("$WPID")
    wait_for 10 eval '[ "$(count "bound port" "$TMP/wardd.log")" -gt "$before" ]'
}

# start_proxy NAME: runs ward-proxy with $TMP/NAME.yaml (log $TMP/NAME.log); sets PPID_,
# IN_PORT, OUT_PORT and ADM_PORT from its start line.
start_proxy() {
    local n=$1 line
    "$P" --config "$TMP/$n.yaml" 2>>"$TMP/$n.log" &
    PPID_=$!
    PIDS+=("$PPID_")
    if ! wait_for 30 grep -qs ': inbound [0-9]* (app' "$TMP/$n.log"; then
        return 1
    fi
    line=$(grep ': inbound [0-9]* (app' "$TMP/$n.log" | tail -1)
    IN_PORT=$(sed -n 's/.*: inbound \([0-9]*\) (app.*/\1/p' <<<"$line")
    OUT_PORT=$(sed -n 's/.*outbound \(none \)\{0,1\}\([0-9]*\), admin.*/\2/p' <<<"$line")
    ADM_PORT=$(sed -n 's/.*, admin \([0-9]*\),.*/\1/p' <<<"$line")
    [ -n "$IN_PORT" ] && [ -n "$ADM_PORT" ]
}

# stop_proc PID SECONDS: SIGTERM, wait up to SECONDS; STOP_RC (124: still running), STOP_S.
stop_proc() {
    local t0=$(date +%s%N)
    kill -TERM "$1" 2>/dev/null
    STOP_RC=0
    if ! timeout "$2" tail --pid="$1" -f /dev/null; then
        STOP_RC=124
        kill -KILL "$1" 2>/dev/null
    fi
    wait "$1" 2>/dev/null
    local rc=$?
    [ "$STOP_RC" = 0 ] && STOP_RC=$rc
    STOP_MS=$((($(date +%s%N) - t0) / 1000000))
}

# served_not_after PORT: notAfter (Unix time) of the certificate a proxy's inbound listener
# serves (TLS 1.3 sends it before asking for ours).
served_not_after() {
    timeout 10 openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null |
        openssl x509 -noout -enddate 2>/dev/null | sed 's/^notAfter=//' |
        { read -r d && [ -n "$d" ] && date -d "$d" +%s; }
}

# sanitizer_report: a check per proxy that its stderr holds no sanitizer report.
sanitizer_report() {
    local n
    for n in payments frontend; do
        [ -e "$TMP/$n.log" ] || continue
        if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$TMP/$n.log"; then
            fail "no sanitizer report in the $n proxy's stderr" \
                "$(grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error' "$TMP/$n.log" | head -40)"
        else
            pass "no sanitizer report in the $n proxy's stderr"
        fi
    done
}

# require_alive STAGE: both proxies still run; if not, the rest cannot be checked.
require_alive() {
    local dead=""
    kill -0 "$PAY_PID" 2>/dev/null || dead="payments"
    kill -0 "$FRONT_PID" 2>/dev/null || dead="$dead frontend"
    if [ -n "$dead" ]; then
        fail "both proxies are still running after $1" "died:$dead" \
            "payments: $(tail -3 "$TMP/payments.log")" "frontend: $(tail -3 "$TMP/frontend.log")"
        sanitizer_report
        finish
    fi
    pass "both proxies are still running after $1"
}

# ---- the app: records every request that reaches it, /v1/slow answers after 2 s ------------

cat >"$TMP/app.py" <<'EOF'
import http.server, sys, threading, time
rec = open(sys.argv[1], "a", buffering=1)
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def serve(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        with lock:
            rec.write("%s %s\n" % (self.command, self.path))
        if self.path.startswith("/v1/slow"):
            time.sleep(2)
        body = ("ok %s %s\n" % (self.command, self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = serve
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
s = S(("127.0.0.1", 0), H)
open(sys.argv[2], "w").write("%d\n" % s.server_address[1])
s.serve_forever()
EOF
"$PY" "$TMP/app.py" "$TMP/app.rec" "$TMP/app.port" 2>"$TMP/app.log" &
APP_PID=$!
PIDS+=("$APP_PID")
touch "$TMP/app.rec" "$TMP/calls.txt" "$TMP/wrk_requests.txt"
if ! wait_for 10 test -s "$TMP/app.port"; then
    fail "the test app starts" "$(cat "$TMP/app.log")"
    finish
fi
APP_PORT=$(cat "$TMP/app.port")

# ---- static identity mode ----------------------------------------------------------------------------

mkdir -p "$TMP/static"
"$PY" - "$TMP/static" "$PAY_ID" <<'EOF' 2>"$TMP/static/py.err"
import datetime, sys
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
d, sid = sys.argv[1:3]
now = datetime.datetime.now(datetime.timezone.utc)
def pem(c): return c.public_bytes(serialization.Encoding.PEM)
def keypem(k): return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
cakey = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "static test CA")])
ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(cakey.public_key())
      .serial_number(x509.random_serial_number())
      .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(now + datetime.timedelta(days=2))
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
      .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
      .sign(cakey, hashes.SHA256()))
open(d + "/bundle.pem", "wb").write(pem(ca))
def leaf(fn, nb, na):
    key = ec.generate_private_key(ec.SECP256R1())
    c = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(nb).not_valid_after(na)
         .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(sid)]), True)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
         .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False)
         .sign(cakey, hashes.SHA256()))
    open(d + "/" + fn + ".pem", "wb").write(pem(c))
    open(d + "/" + fn + ".key", "wb").write(keypem(key))
leaf("expired", now - datetime.timedelta(days=1), now - datetime.timedelta(hours=1))
leaf("good", now - datetime.timedelta(minutes=5), now + datetime.timedelta(hours=1))
EOF
if [ -s "$TMP/static/expired.pem" ]; then
    chmod 600 "$TMP/static/expired.key" "$TMP/static/good.key"
    static_cfg() { # NAME CERT KEY
        cat >"$TMP/static/$1.yaml" <<EOF
service: payments
identity: {cert_file: $2.pem, key_file: $3.key, bundle_file: bundle.pem}
inbound: {listen: "127.0.0.1:0", app: "127.0.0.1:$APP_PORT"}
audit: {dir: audit-$1}
admin: {listen: "127.0.0.1:0"}
workers: 1
EOF
    }
    static_cfg expired expired expired
    timeout 15 "$P" --config "$TMP/static/expired.yaml" >"$TMP/static/expired.out" 2>&1
    rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then
        pass "static identity with an expired certificate refuses to start (exit $rc)"
    else
        fail "static identity with an expired certificate refuses to start" "exit $rc" \
            "$(cat "$TMP/static/expired.out")"
    fi
    expect_match "... with a clear message" 'expired' "$(cat "$TMP/static/expired.out")"
    static_cfg good good good
    timeout 15 "$P" --config "$TMP/static/good.yaml" --check >"$TMP/static/good.out" 2>&1
    expect_eq "a static config with a 0600 key passes --check" 0 "$?"
    chmod 644 "$TMP/static/good.key"
    timeout 15 "$P" --config "$TMP/static/good.yaml" --check >"$TMP/static/mode.out" 2>&1
    expect_eq "... with the key mode 0644, --check refuses it (exit 1)" 1 "$?"
    expect_match "... naming the key file, its mode and the fix" 'identity.key_file: .*0644.*chmod 600' \
        "$(cat "$TMP/static/mode.out")"
else
    fail "test certificates for static mode could be made" "$(cat "$TMP/static/py.err")"
fi

# ---- wardd and the two proxies -------------------------------------------------------------

D="$TMP/wardd"
WPORT=$(free_port)
if ! start_wardd; then
    fail "wardd starts" "$(tail -5 "$TMP/wardd.log")"
    finish
fi
# wardd's trust bundle as PEM pins it on the proxies' first contact
cat "$D"/ca/*.pem >"$TMP/wardd-bundle.pem"
for s in payments frontend; do
    sid="spiffe://$TD/ns/shop/sa/$s"
    (umask 077 && timeout 10 "$WC" identity token create --spiffe-id "$sid" --ttl 5m \
        --admin-socket "$D/admin.sock" >"$TMP/$s.token" 2>"$TMP/token.err")
    if [ ! -s "$TMP/$s.token" ]; then
        fail "wardctl creates a join token for $s" "$(cat "$TMP/token.err")"
        finish
    fi
done

mkdir -p "$TMP/pol"
POL="$TMP/pol/mesh.yaml"
# policy_v1: frontend may GET/POST /v1/* on payments
policy_v1() {
    payments_policy_doc "$FRONT_ID" '[{methods: [GET, POST], paths: ["/v1/*"]}]'
}
policy_v2() { # v1 + a rule allowing /v2/*
    policy_v1
    cat <<EOF
    - from: [{principals: ["$FRONT_ID"]}]
      to: [{methods: [GET], paths: ["/v2/*"]}]
EOF
}
# install_policy FUNC: as editors save (a temporary file renamed into place)
install_policy() {
    "$1" >"$TMP/pol/.mesh.yaml.tmp" && mv -f "$TMP/pol/.mesh.yaml.tmp" "$POL"
}
install_policy policy_v1
# only payments has this one: its inbound side denies what the frontend's egress allows
mkdir -p "$TMP/pol-pay"
cat >"$TMP/pol-pay/pay-only.yaml" <<EOF
apiVersion: ward/v1
kind: AuthorizationPolicy
metadata: {name: payments-secret, namespace: shop}
spec:
  selector: {services: [payments]}
  action: DENY
  rules:
    - to: [{paths: ["/v1/secret"]}]
EOF

cat >"$TMP/payments.yaml" <<EOF
service: payments
identity: {server: "https://127.0.0.1:$WPORT", token_file: payments.token, bundle_file: wardd-bundle.pem}
inbound: {listen: "127.0.0.1:0", app: "127.0.0.1:$APP_PORT"}
policy: {paths: ["$POL", "$TMP/pol-pay/pay-only.yaml"]}
audit: {dir: audit-payments}
admin: {listen: "127.0.0.1:0"}
workers: 2
timeouts: {drain: 5s}
EOF
if ! start_proxy payments; then
    fail "the payments proxy starts (attesting to wardd)" "$(tail -5 "$TMP/payments.log")"
    sanitizer_report
    finish
fi
PAY_PID=$PPID_ PIN=$IN_PORT PADM=$ADM_PORT
pass "the payments proxy attests to wardd and starts (inbound $PIN, admin $PADM)"

cat >"$TMP/frontend.yaml" <<EOF
service: frontend
identity: {server: "https://127.0.0.1:$WPORT", token_file: frontend.token, bundle_file: wardd-bundle.pem}
inbound: {listen: "127.0.0.1:0", app: "127.0.0.1:$APP_PORT"}
outbound: {listen: "127.0.0.1:0"}
upstreams:
  - service: payments
    endpoints: ["127.0.0.1:$PIN"]
    spiffe_id: "$PAY_ID"
policy: {paths: ["$POL"]}
audit: {dir: audit-frontend}
admin: {listen: "127.0.0.1:0"}
workers: 2
timeouts: {drain: 5s}
EOF
if ! start_proxy frontend; then
    fail "the frontend proxy starts (attesting to wardd)" "$(tail -5 "$TMP/frontend.log")"
    sanitizer_report
    finish
fi
FRONT_PID=$PPID_ FOUT=$OUT_PORT FADM=$ADM_PORT
if [ -n "$FOUT" ] && [ "$FOUT" != 0 ]; then
    pass "the frontend proxy attests to wardd and starts (outbound $FOUT, admin $FADM)"
else
    fail "the frontend proxy opens its outbound listener" "$(grep 'inbound' "$TMP/frontend.log")"
    sanitizer_report
    finish
fi

# ---- wardd mode: end to end ------------------------------------------------------------------

call GET /v1/check
expect_eq "an allowed call goes frontend -> mTLS -> payments -> app and back" "200 ok GET /v1/check" \
    "$CODE $BODY"
expect_eq "... and the app received it once" 1 "$(count 'GET /v1/check' "$TMP/app.rec")"
expect_eq "/ready on the payments admin port is 200" 200 "$(admin_code "$PADM" /ready)"
expect_eq "/ready on the frontend admin port is 200" 200 "$(admin_code "$FADM" /ready)"
for a in "$PADM" "$FADM"; do
    exp=$(metric "$a" ward_svid_expiry_timestamp_seconds)
    now=$(date +%s)
    if [ -n "$exp" ] && [ "$exp" -gt "$now" ] && [ "$exp" -le $((now + 17)) ]; then
        pass "/metrics (admin $a) shows ward_svid_expiry_timestamp_seconds of a 16 s SVID ($((exp - now)) s left)"
    else
        fail "/metrics (admin $a) shows ward_svid_expiry_timestamp_seconds of a 16 s SVID" \
            "value: '$exp', now: $now"
    fi
done
expect_match "the frontend counts its egress in /metrics with its own SPIFFE ID as source_principal" \
    "source_principal=\"$FRONT_ID\"" \
    "$(admin_get "$FADM" /metrics | grep '^ward_requests_total{direction="outbound"')"
call DELETE /v1/check
expect_eq "a method the policy does not allow is 403" 403 "$CODE"
call GET /v1/secret
expect_eq "a path payments' own DENY policy refuses is 403 (decided inbound)" 403 "$CODE"
expect_eq "... and neither denied request reached the app" "0 0" \
    "$(count 'DELETE /v1/check' "$TMP/app.rec") $(count 'GET /v1/secret' "$TMP/app.rec")"

# ---- SVID rotation under load ----------------------------------------------------------------

# 16 s SVIDs (NotBefore backdated 10 s, renewal at 45..55 % of the 26 s validity) are
# renewed 1.7 .. 4.3 s after issue: a 7 s run spans at least one renewal of each proxy.
exp_pay0=$(metric "$PADM" ward_svid_expiry_timestamp_seconds)
exp_front0=$(metric "$FADM" ward_svid_expiry_timestamp_seconds)
served0=$(served_not_after "$PIN")
ren_pay0=$(count 'identity: new SVID' "$TMP/payments.log")
ren_front0=$(count 'identity: new SVID' "$TMP/frontend.log")
run_wrk 7 "$TMP/wrk-rotate.txt"
wait "$WRK_PID"
ren_pay1=$(count 'identity: new SVID' "$TMP/payments.log")
ren_front1=$(count 'identity: new SVID' "$TMP/frontend.log")
if [ "$ren_pay1" -gt "$ren_pay0" ] && [ "$ren_front1" -gt "$ren_front0" ]; then
    pass "both proxies renewed their SVID during the load ($((ren_pay1 - ren_pay0)) and $((ren_front1 - ren_front0)) renewals)"
else
    fail "both proxies renewed their SVID during the load" \
        "payments: $ren_pay0 -> $ren_pay1, frontend: $ren_front0 -> $ren_front1" \
        "$(grep identity: "$TMP/payments.log" "$TMP/frontend.log" | tail -6)"
fi
check_wrk "wrk across the SVID rotations: every response 2xx, no socket errors" "$TMP/wrk-rotate.txt"
exp_pay1=$(metric "$PADM" ward_svid_expiry_timestamp_seconds)
exp_front1=$(metric "$FADM" ward_svid_expiry_timestamp_seconds)
if [ -n "$exp_pay1" ] && [ -n "$exp_front1" ] && [ "$exp_pay1" -gt "${exp_pay0:-0}" ] &&
    [ "$exp_front1" -gt "${exp_front0:-0}" ]; then
    pass "the SVID expiry gauges moved forward on both proxies"
else
    fail "the SVID expiry gauges moved forward on both proxies" \
        "payments: $exp_pay0 -> $exp_pay1, frontend: $exp_front0 -> $exp_front1"
fi
g_a=$(metric "$PADM" ward_svid_expiry_timestamp_seconds)
served1=$(served_not_after "$PIN")
g_b=$(metric "$PADM" ward_svid_expiry_timestamp_seconds) # (a renewal may fall in between)
if [ -n "$served1" ] && [ "$served1" != "$served0" ] &&
    { [ "$served1" = "$g_a" ] || [ "$served1" = "$g_b" ]; }; then
    pass "payments' inbound listener now serves the renewed SVID (notAfter = the gauge)"
else
    fail "payments' inbound listener now serves the renewed SVID (notAfter = the gauge)" \
        "served before: $served0, after: $served1, gauge: $g_a / $g_b"
fi
call GET /v1/after-rotation
expect_eq "a call after the rotation works" 200 "$CODE"

require_alive "the SVID rotation under load"

# ---- wardd down -------------------------------------------------------------------------------

fails_pay0=$(count 'identity: renewal failed' "$TMP/payments.log")
fails_front0=$(count 'identity: renewal failed' "$TMP/frontend.log")
# wardd is killed just after both proxies renewed: each tries again 1.7 .. 4.3 s later and
# fails, wardd comes back right after, and the retries (backoff 1 s, 2 s, 4 s) reach it
# well before the 16 s SVIDs expire.
ren_pay_k=$(count 'identity: new SVID' "$TMP/payments.log")
ren_front_k=$(count 'identity: new SVID' "$TMP/frontend.log")
wait_for 6 eval '[ "$(count "identity: new SVID" "$TMP/payments.log")" -gt "$ren_pay_k" ] &&
        [ "$(count "identity: new SVID" "$TMP/frontend.log")" -gt "$ren_front_k" ]'
{ kill -KILL "$WPID" && wait "$WPID"; } 2>/dev/null
run_wrk 3 "$TMP/wrk-down.txt" # load while the renewals fail
if wait_for 10 eval '[ "$(count "identity: renewal failed" "$TMP/payments.log")" -gt "$fails_pay0" ] &&
        [ "$(count "identity: renewal failed" "$TMP/frontend.log")" -gt "$fails_front0" ]'; then
    pass "with wardd killed both proxies log renewal failures"
else
    fail "with wardd killed both proxies log renewal failures" \
        "$(grep identity: "$TMP/payments.log" "$TMP/frontend.log" | tail -6)"
fi
expect_match "... saying they keep the current SVID" 'serving with the current SVID' \
    "$(grep 'renewal failed' "$TMP/payments.log" | tail -1)"
call GET /v1/wardd-down
expect_eq "calls keep working while wardd is down" "200 ok GET /v1/wardd-down" "$CODE $BODY"
expect_eq "/ready stays 200 on payments while its SVID is valid" 200 "$(admin_code "$PADM" /ready)"
expect_eq "/ready stays 200 on the frontend while its SVID is valid" 200 "$(admin_code "$FADM" /ready)"
# wardd comes back on the same port and the proxies renew again (before their SVIDs expire)
ren_pay2=$(count 'identity: new SVID' "$TMP/payments.log")
ren_front2=$(count 'identity: new SVID' "$TMP/frontend.log")
if ! start_wardd; then
    fail "wardd restarts on port $WPORT" "$(tail -5 "$TMP/wardd.log")"
fi
wait "$WRK_PID"
check_wrk "wrk while wardd is down and the renewals fail: every response 2xx, no socket errors" \
    "$TMP/wrk-down.txt"
if wait_for 15 eval '[ "$(count "identity: new SVID" "$TMP/payments.log")" -gt "$ren_pay2" ] &&
        [ "$(count "identity: new SVID" "$TMP/frontend.log")" -gt "$ren_front2" ]'; then
    pass "after wardd is back both proxies renew again"
else
    fail "after wardd is back both proxies renew again" \
        "$(grep identity: "$TMP/payments.log" "$TMP/frontend.log" | tail -6)"
fi
call GET /v1/wardd-back
expect_eq "... and calls work" 200 "$CODE"

require_alive "wardd went down and came back"

# ---- policy hot reload under load ---------------------------------------------------------------

call GET /v2/x
expect_eq "before the reload /v2/x is denied" 403 "$CODE"

# another file changing in the policy folder is no policy change
rel_front0=$(metric "$FADM" ward_policy_reloads_total)
rev_front0=$(admin_get "$FADM" /policy | "$PY" -c 'import json,sys; d = json.load(sys.stdin); print(d.get("revision"), d.get("reloads"))')
for i in 1 2 3; do
    echo "$i" >"$TMP/pol/notes.txt"
    sleep 0.4
done
sleep 0.4
rel_front1=$(metric "$FADM" ward_policy_reloads_total)
rev_front1=$(admin_get "$FADM" /policy | "$PY" -c 'import json,sys; d = json.load(sys.stdin); print(d.get("revision"), d.get("reloads"))')
expect_eq "an unrelated file changing beside the policy file counts no reload (ward_policy_reloads_total, /policy)" \
    "$rel_front0 $rev_front0" "$rel_front1 $rev_front1"
rel_pay0=$(metric "$PADM" ward_policy_reloads_total)
rel_front0=$(metric "$FADM" ward_policy_reloads_total)
run_wrk 6 "$TMP/wrk-reload.txt"
sleep 2
install_policy policy_v2
t0=$(date +%s%N)
got=""
for _ in $(seq 30); do
    call GET /v2/x
    if [ "$CODE" = 200 ]; then
        got=$((($(date +%s%N) - t0) / 1000000))
        break
    fi
    sleep 0.1
done
if [ -n "$got" ] && [ "$got" -le 1500 ]; then
    pass "a changed policy file (renamed into place) is in force within ~1 s under load (${got} ms)"
else
    fail "a changed policy file (renamed into place) is in force within ~1 s under load" \
        "allowed after: ${got:-never (3 s)} ms" "$(grep policy: "$TMP/payments.log" | tail -3)"
fi
wait "$WRK_PID"
check_wrk "wrk across the hot reload: every response 2xx, no socket errors" "$TMP/wrk-reload.txt"
rel_pay1=$(metric "$PADM" ward_policy_reloads_total)
rel_front1=$(metric "$FADM" ward_policy_reloads_total)
if [ "${rel_pay1:-0}" -gt "${rel_pay0:-0}" ] && [ "${rel_front1:-0}" -gt "${rel_front0:-0}" ]; then
    pass "ward_policy_reloads_total increased on both proxies ($rel_pay0 -> $rel_pay1, $rel_front0 -> $rel_front1)"
else
    fail "ward_policy_reloads_total increased on both proxies" \
        "payments: $rel_pay0 -> $rel_pay1, frontend: $rel_front0 -> $rel_front1"
fi

# an invalid file, then SIGHUP: the set in force stays
rev_good=$(admin_get "$PADM" /policy | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("revision"))')
fail_pay0=$(metric "$PADM" ward_policy_reload_failures_total)
{
    policy_v2
    echo "      when: [{key: request.headers[x-tenant], valuez: [a]}]"
} >"$TMP/pol/.mesh.yaml.tmp"
BAD_LINE=$(wc -l <"$TMP/pol/.mesh.yaml.tmp")
mv -f "$TMP/pol/.mesh.yaml.tmp" "$POL"
sleep 0.5
kill -HUP "$PAY_PID" "$FRONT_PID"
wait_for 3 eval '[ "$(metric "$PADM" ward_policy_reload_failures_total)" -gt "${fail_pay0:-0}" ]'
call GET /v2/x
expect_eq "after SIGHUP with an invalid policy file the old set stays (/v2/x still allowed)" 200 "$CODE"
call GET /v1/after-bad-reload
expect_eq "... and /v1 calls still work" 200 "$CODE"
pol_json=$(admin_get "$PADM" /policy)
pol_state=$(printf '%s' "$pol_json" | "$PY" -c 'import json,sys
d = json.load(sys.stdin)
print(d.get("revision"), "error" if d.get("last_reload_error") else "no-error")' 2>&1)
expect_eq "/policy shows the old revision and last_reload_error set" "$rev_good error" "$pol_state"
expect_match "... the error names file:line:col" "mesh\.yaml:$BAD_LINE:[0-9]+" \
    "$(printf '%s' "$pol_json" | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("last_reload_error"))' 2>&1)"
expect_match "the log names file:line:col of the problem" "policy: .*mesh\.yaml:$BAD_LINE:[0-9]+: " \
    "$(grep 'policy:' "$TMP/payments.log")"
expect_match "... and says the revision in force is kept" 'reload \(SIGHUP\) failed, keeping revision' \
    "$(grep 'policy:' "$TMP/payments.log")"
fail_pay1=$(metric "$PADM" ward_policy_reload_failures_total)
if [ "${fail_pay1:-0}" -gt "${fail_pay0:-0}" ]; then
    pass "ward_policy_reload_failures_total increased ($fail_pay0 -> $fail_pay1)"
else
    fail "ward_policy_reload_failures_total increased" "$fail_pay0 -> $fail_pay1"
fi
expect_eq "/ready stays 200 after a failed reload" 200 "$(admin_code "$PADM" /ready)"

require_alive "the policy reloads"

# ---- deny after reload --------------------------------------------------------------------------

install_policy policy_v1
kill -HUP "$PAY_PID" "$FRONT_PID" # the file watcher should also see it; SIGHUP makes sure
denied=""
for _ in $(seq 30); do
    call GET /v2/x
    if [ "$CODE" = 403 ]; then
        denied=1
        break
    fi
    sleep 0.1
done
expect_eq "with the allowing rule removed /v2/x is 403 again" 1 "${denied:-0}"
call GET /v2/x
expect_eq "... and stays 403" 403 "$CODE"
n_allowed=$(awk '$1 == "GET" && $2 == "/v2/x" && $3 == 200' "$TMP/calls.txt" | wc -l)
expect_eq "the app received /v2/x exactly as often as it was allowed ($n_allowed)" "$n_allowed" \
    "$(count 'GET /v2/x' "$TMP/app.rec")"
expect_eq "/policy has no reload error after a good reload" "None" \
    "$(admin_get "$PADM" /policy | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("last_reload_error"))' 2>&1)"

# a policy file beside a file that keeps changing (a log, say) is still reloaded promptly
( while :; do date +%s%N >>"$TMP/pol/busy.log"; sleep 0.05; done ) &
BUSY_PID=$!
PIDS+=("$BUSY_PID")
sleep 0.3
install_policy policy_v2
t0=$(date +%s%N)
got=""
for _ in $(seq 30); do
    call GET /v2/busy
    if [ "$CODE" = 200 ]; then
        got=$((($(date +%s%N) - t0) / 1000000))
        break
    fi
    sleep 0.1
done
kill "$BUSY_PID" 2>/dev/null
wait "$BUSY_PID" 2>/dev/null
if [ -n "$got" ] && [ "$got" -le 1500 ]; then
    pass "a changed policy file beside a busy file is in force within ~1 s (${got} ms)"
else
    fail "a changed policy file beside a busy file is in force within ~1 s" \
        "allowed after: ${got:-never (3 s)} ms (a file written every 50 ms in the same folder)"
fi
install_policy policy_v1
kill -HUP "$PAY_PID" "$FRONT_PID"
for _ in $(seq 30); do
    call GET /v2/busy
    [ "$CODE" = 403 ] && break
    sleep 0.1
done
expect_eq "... and the rule is gone again once it is removed" 403 "$CODE"

require_alive "the deny after reload"

# ---- 10,000 idle connections ----------------------------------------------------------------------

cat >"$TMP/idle.py" <<'EOF'
import os, select, socket, sys, time
port, n, ready, release = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
socks = []
try:
    for i in range(n):
        s = socket.socket()
        s.connect(("127.0.0.1", port))
        socks.append(s)
except OSError as e:
    print("opened %d: %s" % (len(socks), e), flush=True)
open(ready, "w").write("%d\n" % len(socks))
while not os.path.exists(release):
    time.sleep(0.1)
# how many the proxy closed meanwhile (readable = EOF or reset: it sent nothing else)
p = select.poll()
for s in socks:
    p.register(s, select.POLLIN)
closed = len(p.poll(0))
print("closed-by-proxy %d" % closed, flush=True)
for s in socks:
    s.close()
EOF
rss_before=$(awk '/^VmRSS/ {print $2}' "/proc/$FRONT_PID/status")
"$PY" "$TMP/idle.py" "$FOUT" 10000 "$TMP/idle.ready" "$TMP/idle.release" >"$TMP/idle.out" 2>&1 &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
if wait_for 60 test -s "$TMP/idle.ready"; then
    expect_eq "10,000 TCP connections to the frontend's outbound listener are open" 10000 \
        "$(cat "$TMP/idle.ready")"
    sleep 1
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$FRONT_PID/status")
    if [ "$SANITIZED" = 1 ]; then
        echo "SKIP: RSS with 10,000 idle connections under sanitizers ($((rss / 1024)) MB)"
    elif [ -n "$rss" ] && [ "$rss" -lt 65536 ]; then
        pass "the frontend's RSS holding them is < 64 MB ($((rss / 1024)) MB; $((rss_before / 1024)) MB before)"
    else
        fail "the frontend's RSS holding them is < 64 MB" "VmRSS: ${rss:-?} kB (before: $rss_before kB)"
    fi
    active=$(admin_get "$FADM" /metrics | awk '/^ward_connections_active\{.*outbound/ {s += $2} END {print s + 0}')
    if [ "$active" -ge 10000 ]; then
        pass "ward_connections_active shows them ($active outbound)"
    else
        fail "ward_connections_active shows them" "outbound: $active"
    fi
    call GET /v1/while-idle
    expect_eq "a normal request works while they are held" "200 ok GET /v1/while-idle" "$CODE $BODY"
    expect_eq "/ready is 200 while they are held" 200 "$(admin_code "$FADM" /ready)"
else
    fail "10,000 TCP connections to the frontend's outbound listener are open" "$(cat "$TMP/idle.out")"
fi
touch "$TMP/idle.release"
wait "$IDLE_PID"
expect_eq "none of them was closed by the proxy while idle" "closed-by-proxy 0" \
    "$(grep closed-by-proxy "$TMP/idle.out")"
kill -0 "$FRONT_PID" 2>/dev/null
expect_eq "the frontend is alive after they close" 0 "$?"
sleep 1
call GET /v1/after-idle
expect_eq "... and serves" 200 "$CODE"

require_alive "10,000 idle connections"

# ---- graceful shutdown of payments -----------------------------------------------------------------

timeout 20 curl -s --max-time 15 -H 'Host: payments' -w '\n%{http_code}' \
    "http://127.0.0.1:$FOUT/v1/slow" >"$TMP/slow.out" 2>&1 &
SLOW_PID=$!
PIDS+=("$SLOW_PID")
if ! wait_for 5 grep -q 'GET /v1/slow' "$TMP/app.rec"; then
    fail "the slow request reaches the app" "$(cat "$TMP/slow.out")"
fi
t0=$(date +%s%N)
kill -TERM "$PAY_PID"
sleep 0.3
refused=$("$PY" -c 'import socket,sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
    print("accepted")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print("error: %s" % e)' "$PIN")
expect_eq "after SIGTERM new connections to payments' inbound listener are refused" refused "$refused"
wait "$SLOW_PID"
slow="$(head -1 "$TMP/slow.out") $(tail -1 "$TMP/slow.out")"
echo "GET /v1/slow $(tail -1 "$TMP/slow.out")" >>"$TMP/calls.txt"
expect_eq "the in-flight slow request completes with 200" "ok GET /v1/slow 200" "$slow"
STOP_RC=0
if timeout 8 tail --pid="$PAY_PID" -f /dev/null; then
    wait "$PAY_PID"
    STOP_RC=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    expect_eq "payments exits with status 0 after draining" 0 "$STOP_RC"
    if [ "$ms" -le 6000 ]; then
        pass "... within the drain deadline (5 s; took ${ms} ms)"
    else
        fail "... within the drain deadline (5 s)" "took ${ms} ms"
    fi
else
    fail "payments exits after SIGTERM within the drain deadline (5 s)" "still running after 8 s"
    kill -KILL "$PAY_PID" 2>/dev/null
    wait "$PAY_PID" 2>/dev/null
fi
expect_match "... logging its drain and stop" 'stopped$' "$(tail -1 "$TMP/payments.log")"
PAY_AUDIT="$TMP/audit-payments.jsonl" # its segments, in order
cat "$TMP"/audit-payments/segment-*.jsonl >"$PAY_AUDIT" 2>/dev/null
expect_eq "payments' audit trail is complete (last line valid JSON)" ok \
    "$(tail -n 1 "$PAY_AUDIT" 2>&1 | "$PY" -c 'import json,sys; json.loads(sys.stdin.read()); print("ok")' 2>&1 | tail -1)"
expect_eq "... and ends with a newline" "" "$(tail -c 1 "$PAY_AUDIT" 2>/dev/null | tr -d '\n')"
call GET /v1/after-stop
expect_match "with payments gone the frontend answers 502/503 itself" '^50[23]$' "$CODE"

# ---- the audit trail ------------------------------------------------------------------------------------

stop_proc "$FRONT_PID" 10
expect_eq "the frontend stops with status 0 on SIGTERM" 0 "$STOP_RC"
FRONT_AUDIT="$TMP/audit-frontend.jsonl"
cat "$TMP"/audit-frontend/segment-*.jsonl >"$FRONT_AUDIT" 2>/dev/null
audit_report=$("$PY" - "$FRONT_AUDIT" "$PAY_AUDIT" "$TMP/calls.txt" "$TMP/app.rec" \
    "$(awk '{s += $1} END {print s + 0}' "$TMP/wrk_requests.txt")" <<'EOF' 2>&1
import collections, json, sys
front_f, pay_f, calls_f, app_f, wrk_total = sys.argv[1:6]
wrk_total = int(wrk_total)
problems = []
def load(fn, name):
    recs, seqs = [], []
    for i, line in enumerate(open(fn, encoding="utf-8"), 1):
        try:
            r = json.loads(line)
        except ValueError as e:
            problems.append("%s line %d is not JSON: %s" % (name, i, e))
            continue
        recs.append(r)
        seqs.append(r.get("seq"))
    for a, b in zip(seqs, seqs[1:]):
        if not (isinstance(a, int) and b == a + 1):
            problems.append("%s: seq not contiguous (%r then %r)" % (name, a, b))
            break
    if seqs and seqs[0] not in (0, 1):
        problems.append("%s: seq starts at %r" % (name, seqs[0]))
    return [r for r in recs if "gap" not in r], len(recs)
front, nf = load(front_f, "frontend")
pay, np_ = load(pay_f, "payments")
def key(r):
    q = r.get("request") or {}
    return (q.get("method"), q.get("path"))
fr = collections.Counter((key(r), r.get("direction"), r.get("decision")) for r in front)
pr = collections.Counter((key(r), r.get("direction"), r.get("decision")) for r in pay)
app = collections.Counter(tuple(l.split(" ", 1)) for l in open(app_f).read().splitlines())
calls = collections.defaultdict(list)
for l in open(calls_f).read().splitlines():
    m, p, c = l.split()
    calls[(m, p)].append(c)
for k, codes in sorted(calls.items()):
    n = len(codes)
    fa, fd = fr[(k, "outbound", "allow")], fr[(k, "outbound", "deny")]
    pa, pd = pr[(k, "inbound", "allow")], pr[(k, "inbound", "deny")]
    if fa + fd != n:
        problems.append("%s %s: %d calls, frontend recorded %d" % (k + (n, fa + fd)))
    if k[1] != "/v1/after-stop" and pa + pd != fa:
        problems.append("%s %s: frontend allowed %d, payments recorded %d" % (k + (fa, pa + pd)))
    if k[1] != "/v1/after-stop" and app[k] != pa:
        problems.append("%s %s: payments allowed %d, the app received %d" % (k + (pa, app[k])))
    if codes.count("403") != fd + pd:
        problems.append("%s %s: %d answers 403, %d denials recorded" % (k + (codes.count("403"), fd + pd)))
    if codes.count("200") != pa:
        problems.append("%s %s: %d answers 200, %d allowed by payments" % (k + (codes.count("200"), pa)))
# the load: every response wrk counted was recorded on both sides (it may have sent a few more)
wk = ("GET", "/v1/items")
if not (fr[(wk, "outbound", "allow")] >= wrk_total and pr[(wk, "inbound", "allow")] >= wrk_total):
    problems.append("wrk: %d responses, frontend recorded %d, payments %d" %
                    (wrk_total, fr[(wk, "outbound", "allow")], pr[(wk, "inbound", "allow")]))
if app[wk] != pr[(wk, "inbound", "allow")]:
    problems.append("wrk: payments allowed %d, the app received %d" % (pr[(wk, "inbound", "allow")], app[wk]))
if fr[(wk, "outbound", "deny")] or pr[(wk, "inbound", "deny")]:
    problems.append("wrk requests were denied")
print("ok %d %d" % (nf, np_) if not problems else "\n".join(problems[:20]))
EOF
)
if [ "${audit_report%% *}" = ok ]; then
    read -r _ nf np_ <<<"$audit_report"
    pass "every request made appears in the audit trail on both sides with its decision; lines are JSON, seq contiguous ($nf + $np_ records)"
else
    fail "every request made appears in the audit trail on both sides with its decision; lines are JSON, seq contiguous" \
        "$audit_report"
fi
expect_eq "the frontend's audit trail ends with a complete line" ok \
    "$(tail -n 1 "$FRONT_AUDIT" 2>&1 | "$PY" -c 'import json,sys; json.loads(sys.stdin.read()); print("ok")' 2>&1 | tail -1)"

# ---- sanitizers and time ------------------------------------------------------------------------------

sanitizer_report
echo "# test_proxy_mesh.sh took $(($(date +%s) - T_START)) s"
finish
