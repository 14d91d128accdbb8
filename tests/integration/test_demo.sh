#!/usr/bin/env bash
# test_demo.sh - `make demo` cannot rot: runs examples/demo/run.sh --ci (wardd, the shop
# mesh, the whole tour, each step's key facts checked by run.sh itself as PASS:/FAIL:
# lines), then the --no-tour / --stop path that `make demo-stop` uses. Each run gets its
# own folder and a free port range, so it does not disturb a demo someone is running.
. "$(dirname "$0")/lib.sh"

RUN="$ROOT/examples/demo/run.sh"
cleanup() {
    local d
    # only if something failed half way: run.sh --stop stops exactly what a demo started
    # (it checks each PID's start time, so it never signals a process that reused a PID)
    for d in "$TMP/demo" "$TMP/demo2"; do
        [ -e "$d/pids" ] && DEMO_DIR="$d" timeout 30 "$RUN" --stop >/dev/null 2>&1
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

for b in wardd wardctl ward-proxy; do
    if [ ! -x "$BIN/$b" ]; then
        fail "$b is built" "missing $BIN/$b (run make)"
        finish
    fi
done
for tool in curl perl python3; do
    if ! command -v "$tool" >/dev/null; then
        fail "$tool is installed"
        finish
    fi
done

# ---- the tour, non-interactively ---------------------------------------------------------
t0=$(date +%s)
DEMO_DIR="$TMP/demo" timeout 90 "$RUN" --ci >"$TMP/ci.out" 2>&1
rc=$?
t=$(($(date +%s) - t0))
# run.sh's own PASS:/FAIL: lines are this test's checks; the rest is kept for a failure
awk '/^(PASS|FAIL): / {print; f = /^FAIL/; next} f && /^    / {print} {f = f && /^    /}' "$TMP/ci.out"
if [ "$rc" = 0 ]; then
    pass "examples/demo/run.sh --ci exits 0 ($t s)"
else
    fail "examples/demo/run.sh --ci exits 0" "exit $rc after $t s; its last lines:" \
        "$(tail -25 "$TMP/ci.out")"
    for f in "$TMP"/demo/logs/*.log; do
        [ -s "$f" ] && printf '  --- %s\n%s\n' "$(basename "$f")" "$(tail -5 "$f" | sed 's/^/  /')"
    done
fi
n_pass=$(grep -c '^PASS: ' "$TMP/ci.out")
if [ "$n_pass" -ge 20 ]; then
    pass "the tour checked its steps ($n_pass checks passed)"
else
    fail "the tour checked its steps" "only $n_pass PASS lines"
fi
for s in "1. An allowed call" "2. A denied call" "3. A dry-run policy" "4. A canary route" \
    "5. SVID rotation" "6. wardctl audit verify" "7. Export to OCSF" "8. Tampering"; do
    if grep -qF "== $s" "$TMP/ci.out"; then
        pass "the tour has step \"$s\""
    else
        fail "the tour has step \"$s\""
    fi
done
expect_eq "no process of the demo is left (its pid file is removed)" "no" \
    "$([ -e "$TMP/demo/pids" ] && echo yes || echo no)"

# ---- --no-tour leaves the mesh running; --stop (make demo-stop) stops all of it ------------
D2="$TMP/demo2"
DEMO_DIR="$D2" "$RUN" --no-tour >"$TMP/up.out" 2>&1 &
SUP=$!
for _ in $(seq 300); do
    grep -q 'keeps running' "$TMP/up.out" && break
    kill -0 "$SUP" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q 'keeps running' "$TMP/up.out"; then
    fail "run.sh --no-tour starts the mesh and keeps it running" "$(tail -20 "$TMP/up.out")"
    DEMO_DIR="$D2" "$RUN" --stop >/dev/null 2>&1
    finish
fi
pass "run.sh --no-tour starts the mesh and keeps it running"
mapfile -t pids < <(awk '{print $1 ":" $2}' "$D2/pids") # PID:STARTTIME
expect_eq "its pid file lists run.sh, wardd, 6 apps and 7 proxies" 15 "${#pids[@]}"
gw=$(sed -n "s|.*curl -H 'Host: frontend' http://127.0.0.1:\([0-9]*\)/products.*|\1|p" "$TMP/up.out" | head -1)
code=$(curl -s -o "$TMP/products.json" -w '%{http_code}' --max-time 10 -H 'Host: frontend' \
    "http://127.0.0.1:${gw:-1}/products")
expect_eq "the printed 'Try' command works: GET /products through the gateway is 200" 200 "$code"
expect_match "... listing the inventory's items" '"sku": "sku-123"' "$(cat "$TMP/products.json")"

# The canary routes (examples/policies/routes.yaml), checked from outside the tour: the
# weighted split of payments' /v2 reads and checkout's header pin, on the running mesh.
ck=$(awk '/^outbound:/ {o = 1} o && /listen:/ {sub(/.*:/, ""); print; exit}' "$D2/checkout.yaml")
curl -s --max-time 30 -H 'Host: payments' "http://127.0.0.1:${ck:-1}/v2/charges/ch_canary[001-200]" \
    >"$TMP/split.jsonl"
v1=$(grep -c '"service": "payments", "version": "v1"' "$TMP/split.jsonl")
v2=$(grep -c '"service": "payments", "version": "v2"' "$TMP/split.jsonl")
expect_eq "200 GET /v2/charges/... from checkout: every one answered by payments v1 or v2" 200 $((v1 + v2))
# Route shop/payments v2-canary: payments-v2 weight 10. 200 draws: 20 expected (sd 4.2),
# 5..40 fails about once in 10^4 runs; 0 would mean no split, 200 no stable build.
if [ "$v2" -ge 5 ] && [ "$v2" -le 40 ]; then
    pass "payments-v2 served $v2 of 200 (weight 10%: 5..40 accepted)"
else
    fail "payments-v2 served about 10% of 200 reads (5..40)" "v2: $v2, v1: $v1"
fi
for _ in $(seq 50); do
    n=$("$BIN/wardctl" audit query "$D2/audit/payments-v2" --where request.method=GET \
        --where source.principal=spiffe://example.org/ns/shop/sa/checkout --count 2>/dev/null)
    [ "$n" = "$v2" ] && break
    sleep 0.1
done
expect_eq "... payments-v2's own audit trail has those $v2 reads, from checkout's identity" "$v2" "$n"
pins=""
for h in 'x-canary: 1' 'x-tenant: beta-widgets' 'x-canary: 0'; do
    for _ in 1 2 3 4 5; do
        curl -s --max-time 10 -X POST -H 'Host: frontend' -H "$h" -d '{}' \
            "http://127.0.0.1:${gw:-1}/checkout" | python3 -c 'import json, sys
try:
    d = json.load(sys.stdin)
    print(d["order"]["service"], d["order"]["version"], d["order"]["charge"]["version"])
except Exception as e:
    print("no order:", repr(e))'
    done >"$TMP/pin.txt"
    pins="$pins$h => $(sort "$TMP/pin.txt" | uniq -c | tr -s ' ' | tr '\n' ';')|"
done
expect_eq "checkout's Route pins x-canary: 1 and beta tenants to checkout-v2, x-canary: 0 to v1" \
    "x-canary: 1 =>  5 checkout v2 v1;|x-tenant: beta-widgets =>  5 checkout v2 v1;|x-canary: 0 =>  5 checkout v1 v1;|" \
    "$pins"
expect_match "... checkout-v2's app log shows the frontend's orders it served" \
    'POST /v1/carts/c-42/checkout from spiffe://example.org/ns/shop/sa/frontend' \
    "$(cat "$D2/logs/app-checkout-v2.log")"

DEMO_DIR="$D2" timeout 30 "$RUN" --no-tour >"$TMP/second.out" 2>&1
rc=$?
expect_eq "a second demo in the same folder refuses to start (exit 1)" 1 "$rc"
expect_match "... and says how to stop the first" 'make demo-stop' "$(cat "$TMP/second.out")"

DEMO_DIR="$D2" timeout 30 "$RUN" --stop >"$TMP/stop.out" 2>&1
expect_eq "run.sh --stop exits 0" 0 "$?"
wait "$SUP" 2>/dev/null
left=""
for ps in "${pids[@]}"; do
    # the same PID with the same start time, not a zombie: a process the stop missed
    read -r state start < <(sed 's/^.*) //' "/proc/${ps%%:*}/stat" 2>/dev/null | cut -d' ' -f1,20)
    [ -n "${state:-}" ] && [ "$state" != Z ] && [ "$start" = "${ps#*:}" ] && left="$left ${ps%%:*}"
    state=""
done
expect_eq "run.sh --stop stopped every process the demo started" "" "$left"
expect_eq "... and removed the pid file" "no" "$([ -e "$D2/pids" ] && echo yes || echo no)"
expect_match "... the proxies drained and flushed their audit trails" 'ward-proxy: stopped' \
    "$(cat "$D2/logs/payments.log")"
if "$BIN/wardctl" audit verify "$D2/audit/gateway" --quiet; then
    pass "the gateway's audit trail verifies after the stop"
else
    fail "the gateway's audit trail verifies after the stop" "$("$BIN/wardctl" audit verify "$D2/audit/gateway" 2>&1)"
fi
DEMO_DIR="$D2" "$RUN" --stop >"$TMP/stop2.out" 2>&1
expect_eq "run.sh --stop with nothing running exits 0" 0 "$?"

finish
