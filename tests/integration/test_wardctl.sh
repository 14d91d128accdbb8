#!/usr/bin/env bash
# test_wardctl.sh - wardctl policy check/compile/eval/explain/test/bench, run as a user runs them.
. "$(dirname "$0")/lib.sh"

W="$BIN/wardctl"
EX="$ROOT/examples/policies"
CHECKOUT='spiffe://example.org/ns/shop/sa/checkout'
FRONTEND='spiffe://example.org/ns/shop/sa/frontend'

if [ ! -x "$W" ]; then
    fail "wardctl is built" "missing $W (run make)"
    finish
fi

# req PRINCIPAL SERVICE METHOD PATH -> one request JSON line
req() {
    printf '{"source":{"principal":"%s"},"destination":{"service":"%s"},"request":{"method":"%s","path":"%s"}}\n' \
        "$1" "$2" "$3" "$4"
}

# run CMD... : sets OUT, ERR, RC
run() {
    "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
    OUT=$(cat "$TMP/out")
    ERR=$(cat "$TMP/err")
}

# ---- help and usage errors ----------------------------------------------------------

run "$W" --help
expect_eq "wardctl --help exits 0" 0 "$RC"
expect_match "wardctl --help lists the policy group and exit codes" 'policy .*Exit status' "$(echo $OUT)"
for c in check compile eval explain test bench; do
    run "$W" policy "$c" --help
    expect_eq "policy $c --help exits 0" 0 "$RC"
    expect_match "policy $c --help documents exit statuses" '2  usage error' "$OUT"
done
run "$W" policy test --help
expect_match "policy test --help documents the test file format" 'cases:.*expect:.*decision' "$(echo $OUT)"

run "$W" policy eval -p "$EX" --bogus
expect_eq "unknown flag exits 2" 2 "$RC"
expect_match "unknown flag is named" "unknown option '--bogus'" "$ERR"
run "$W" policy check -x "$EX"
expect_eq "unknown short flag exits 2" 2 "$RC"
run "$W" nosuchgroup
expect_eq "unknown command group exits 2" 2 "$RC"
run "$W" audit verify /tmp
expect_eq "audit verify of a folder that is no audit trail exits 3 (unreadable)" 3 "$RC"
run "$W" policy frobnicate
expect_eq "unknown policy command exits 2" 2 "$RC"
run "$W" policy eval
expect_eq "eval without policies exits 2" 2 "$RC"
run "$W" policy eval -p "$EX" --default maybe
expect_eq "bad --default value exits 2" 2 "$RC"
run "$W" policy eval -p "$EX" --input "$TMP/does-not-exist.jsonl"
expect_eq "unreadable --input exits 2" 2 "$RC"

# ---- check ----------------------------------------------------------------------------

run "$W" policy check "$EX"
expect_eq "check accepts the examples" 0 "$RC"
expect_match "check reports the count" '^ok: [0-9]+ policies( and [0-9]+ routes?)? in [0-9]+ files$' "$OUT"

mkdir -p "$TMP/bad"
cat >"$TMP/bad/bad.yaml" <<'EOF'
apiVersion: ward/v1
kind: AuthorizationPolicy
metadata: {name: bad}
spec:
  action: ALLOW
  rules:
    - to:
        - paths: ["/a/{**}/b"]
          methodz: [GET]
EOF
run "$W" policy check "$TMP/bad/bad.yaml"
expect_eq "check rejects an invalid policy with exit 1" 1 "$RC"
expect_match "check names file:line:col and field path of a bad template" \
    'bad\.yaml:8:19: spec\.rules\[0\]\.to\[0\]\.paths\[0\]: .*\{\*\*\}' "$ERR"
expect_match "check names file:line:col of an unknown field" \
    'bad\.yaml:9:11: spec\.rules\[0\]\.to\[0\]\.methodz: unknown field' "$ERR"
expect_eq "check prints nothing on stdout when invalid" "" "$OUT"
run "$W" policy check "$EX" "$TMP/bad/bad.yaml"
expect_eq "one bad file among good ones fails the check" 1 "$RC"

# ---- compile ----------------------------------------------------------------------------

"$W" policy compile "$EX" >"$TMP/c1.lua" 2>/dev/null
rc1=$?
"$W" policy compile "$EX" >"$TMP/c2.lua" 2>/dev/null
expect_eq "compile exits 0" 0 "$rc1"
if [ -s "$TMP/c1.lua" ] && cmp -s "$TMP/c1.lua" "$TMP/c2.lua"; then
    pass "compile is deterministic (two runs byte-identical)"
else
    fail "compile is deterministic (two runs byte-identical)"
fi
expect_match "compiled Lua points back at file:line" 'payments\.yaml:[0-9]+' "$(cat "$TMP/c1.lua")"
"$W" policy compile "$EX" --service payments >"$TMP/cp.lua" 2>/dev/null
if grep -q 'shop/payments-from-checkout' "$TMP/cp.lua" && ! grep -q 'shop/inventory-access' "$TMP/cp.lua"; then
    pass "compile --service keeps only that service's policies"
else
    fail "compile --service keeps only that service's policies"
fi
run "$W" policy compile "$TMP/bad/bad.yaml"
expect_eq "compile of invalid policies exits 1" 1 "$RC"

# ---- eval ---------------------------------------------------------------------------------

req "$CHECKOUT" payments GET /v1/charges/ch_3MtwBwLkdIwH >"$TMP/stdin.json"
run "$W" policy eval -p "$EX" <"$TMP/stdin.json"
expect_eq "eval of one request exits 0" 0 "$RC"
expect_match "eval prints the decision JSON" \
    '^\{"decision":"allow","policy":"shop/payments-from-checkout","rule":1,' "$OUT"

req "$FRONTEND" payments GET /v1/charges/ch_3MtwBwLkdIwH >"$TMP/one.json"
run "$W" policy eval -p "$EX" --input "$TMP/one.json"
expect_match "eval --input FILE denies the storefront" '"decision":"deny","policy":null,"rule":null' "$OUT"

cat >"$TMP/pretty.json" <<EOF
{
  "source": {"principal": "$CHECKOUT"},
  "destination": {"service": "inventory"},
  "request": {
    "method": "POST",
    "path": "/v1/reservations"
  }
}
EOF
run "$W" policy eval -p "$EX" --input - <"$TMP/pretty.json"
expect_eq "a pretty-printed object gives one decision" 1 "$(printf '%s\n' "$OUT" | grep -c '"decision"')"
expect_match "a pretty-printed object is decided" '"decision":"allow","policy":"shop/inventory-access","rule":1' "$OUT"

: >"$TMP/lines.jsonl"
for i in $(seq 1 50); do
    req "$CHECKOUT" inventory POST /v1/reservations >>"$TMP/lines.jsonl"
    echo >>"$TMP/lines.jsonl"   # blank lines are skipped
    req "$FRONTEND" inventory DELETE "/v1/items/sku-$i" >>"$TMP/lines.jsonl"
done
run "$W" policy eval -p "$EX" --input "$TMP/lines.jsonl"
expect_eq "JSON Lines: 100 requests in, 100 decisions out" 100 "$(printf '%s\n' "$OUT" | grep -c '^{"decision":')"
expect_eq "JSON Lines: decisions keep the input order" \
    '"allow" "deny"' "$(printf '%s\n' "$OUT" | head -2 | sed 's/^{"decision":\("[a-z]*"\).*/\1/' | tr '\n' ' ' | sed 's/ $//')"
expect_match "eval reports the dry-run decision beside the real one" \
    '"dry_run":\{"decision":"deny","policy":"shop/inventory-no-deletes","rule":0' "$(printf '%s\n' "$OUT" | sed -n 2p)"

{
    req "$CHECKOUT" payments GET /v1/charges/ch_3MtwBwLkdIwH
    echo '{"source": {"principal": '
    echo '{"request": {"method": 42}}'
    echo 'not json at all'
    req "$CHECKOUT" inventory POST /v1/reservations
} >"$TMP/malformed.jsonl"
run "$W" policy eval -p "$EX" --input "$TMP/malformed.jsonl"
expect_eq "malformed lines: exit status 2" 2 "$RC"
expect_eq "malformed lines: one output line per input line" 5 "$(printf '%s\n' "$OUT" | wc -l)"
expect_match "malformed line 2 gets an error object naming it" '^\{"error":"line 2: [^"]+","line":2\}$' \
    "$(printf '%s\n' "$OUT" | sed -n 2p)"
expect_match "a wrongly typed attribute is an error for line 3" '^\{"error":"line 3: ' \
    "$(printf '%s\n' "$OUT" | sed -n 3p)"
expect_match "evaluation goes on after malformed lines" '^\{"decision":"allow","policy":"shop/inventory-access"' \
    "$(printf '%s\n' "$OUT" | sed -n 5p)"

req "$FRONTEND" recommendations GET /v1/suggestions >"$TMP/unselected.json"
run "$W" policy eval -p "$EX" --input "$TMP/unselected.json"
expect_match "default deny for a service no ALLOW policy selects" '"decision":"deny","policy":null,"rule":null' "$OUT"
run "$W" policy eval -p "$EX" --default allow --input "$TMP/unselected.json"
expect_match "--default allow opens unselected services" '"decision":"allow","policy":null,"rule":null' "$OUT"

printf '{"source":{"principal":"%s"},"request":{"method":"GET","path":"/v1/charges/ch_3MtwBwLkdIwH"}}\n' "$CHECKOUT" >"$TMP/noservice.json"
run "$W" policy eval -p "$EX" --service payments --input "$TMP/noservice.json"
expect_match "--service fills in destination.service" '"decision":"allow","policy":"shop/payments-from-checkout"' "$OUT"

# 100k requests must take seconds, not minutes (one engine, buffered output).
req "$CHECKOUT" payments GET /v1/charges/ch_3MtwBwLkdIwH >"$TMP/a.json"
yes "$(cat "$TMP/a.json")" | head -n 100000 >"$TMP/100k.jsonl"
start=$(date +%s%N)
n=$("$W" policy eval -p "$EX" --input "$TMP/100k.jsonl" | grep -c '"decision":"allow"')
ms=$((($(date +%s%N) - start) / 1000000))
limit=10000
case "$BUILD" in *sanitize*) limit=60000 ;; esac # ASan+UBSan run several times slower
expect_eq "100k JSON Lines give 100k decisions" 100000 "$n"
if [ "$ms" -lt "$limit" ]; then
    pass "100k decisions in under $((limit / 1000)) s (${ms} ms)"
else
    fail "100k decisions in under $((limit / 1000)) s" "took ${ms} ms"
fi

# ---- explain --------------------------------------------------------------------------------

req "$FRONTEND" payments POST /v1/charges >"$TMP/ex.json"
run "$W" policy eval -p "$EX" --explain --input "$TMP/ex.json"
expect_match "eval --explain adds the explain array" '"explain":\[\{' "$OUT"
run "$W" policy explain -p "$EX" --input "$TMP/ex.json"
expect_eq "explain exits 0" 0 "$RC"
expect_match "explain names each policy with action and mode" \
    'policy shop/payments-from-checkout \(ALLOW, enforce\)' "$OUT"
expect_match "explain names the field that failed" 'rule 0: no match: .*from\[0\]\.principals' "$OUT"
expect_match "explain prints the final decision" 'decision: deny' "$OUT"
req "$CHECKOUT" inventory DELETE /v1/reservations/r-1 | "$W" policy explain -p "$EX" >"$TMP/out" 2>&1
OUT=$(cat "$TMP/out")
expect_match "explain shows a matched rule" 'rule 1: matched' "$OUT"
expect_match "explain shows the dry-run decision" 'dry-run: would deny by shop/inventory-no-deletes rule 0' "$OUT"
expect_match "explain shows dry-run policies' mode" 'policy shop/inventory-no-deletes \(DENY, dry-run\)' "$OUT"

# ---- test -----------------------------------------------------------------------------------

run "$W" policy test -p "$EX" "$EX/tests"
expect_eq "the examples' test suite passes" 0 "$RC"
expect_match "the examples' suite has at least 20 cases, none failing" '^([2-9][0-9]|[1-9][0-9]{2,}) passed, 0 failed$' \
    "$(printf '%s\n' "$OUT" | tail -1)"
run "$W" policy test -p "$EX"
expect_eq "test with no TESTFILE runs PATH/tests" 0 "$RC"
run "$W" policy test -v -p "$EX" "$EX/tests/default-allow.yaml"
expect_match "test -v lists passing cases with file:line" 'default-allow\.yaml:[0-9]+: ok: ' "$OUT"

cat >"$TMP/wrong.yaml" <<EOF
cases:
  - name: the storefront may charge cards (it may not)
    input:
      source: {principal: $FRONTEND}
      destination: {service: payments}
      request: {method: POST, path: /v1/charges, headers: {idempotency-key: k1}}
    expect: {decision: allow, policy: shop/payments-from-checkout, rule: 0}
EOF
run "$W" policy test -p "$EX" "$TMP/wrong.yaml"
expect_eq "a wrong expectation fails with exit 1" 1 "$RC"
expect_eq "a wrong expectation is counted" "0 passed, 1 failed" "$(printf '%s\n' "$OUT" | tail -1)"
expect_match "a failing case names file:line, expected and actual" \
    'wrong\.yaml:2: FAIL: .*expected \{decision: allow, policy: shop/payments-from-checkout, rule: 0\}, got \{decision: deny, policy: null, rule: null\}' \
    "$OUT"

cat >"$TMP/unusable.yaml" <<'EOF'
cases:
  - name: typo
    input: {request: {method: GET}, sauce: {}}
    expect: {decision: alow, rule: first}
EOF
run "$W" policy test -p "$EX" "$TMP/unusable.yaml"
expect_eq "an unusable test file exits 2" 2 "$RC"
expect_match "unusable test file errors name file:line:col and field" \
    'unusable\.yaml:4:24: cases\[0\]\.expect\.decision: expected allow or deny' "$ERR"
expect_match "a bad input in a test file is reported at the input" 'unusable\.yaml:3:12: cases\[0\]\.input: ' "$ERR"

# ---- injection: rule values reach the Lua only as escaped literals ---------------------------

mkdir -p "$TMP/inj"
cat >"$TMP/inj/inj.yaml" <<'EOF'
apiVersion: ward/v1
kind: AuthorizationPolicy
metadata: {name: inject, namespace: evil}
spec:
  selector: {services: [victim]}
  action: ALLOW
  rules:
    - to:
        - paths: ["/\"]] os.exit() --[[", "/x\nreturn true", "/q\\\"%s end) return true --", "/k]=]==]"]
    - to:
        - paths: ["/hdr"]
      when:
        - key: request.headers[x-evil]
          values: ["\"]] os.exit() --[[", "a\nreturn true"]
EOF
run "$W" policy check "$TMP/inj"
expect_eq "hostile rule values are valid policy" 0 "$RC"
"$W" policy compile "$TMP/inj" >"$TMP/inj.lua"
if [ -s "$TMP/inj.lua" ] && ! grep -q '^return true' "$TMP/inj.lua" && ! grep -q '^ *os\.exit' "$TMP/inj.lua"; then
    pass "no hostile value starts a Lua line of its own"
else
    fail "no hostile value starts a Lua line of its own"
fi
inj_req() { # PATH [X-EVIL], both JSON-escaped
    if [ $# -gt 1 ]; then
        printf '{"destination":{"service":"victim"},"request":{"method":"GET","path":"%s","headers":{"x-evil":"%s"}}}\n' "$1" "$2"
    else
        printf '{"destination":{"service":"victim"},"request":{"method":"GET","path":"%s"}}\n' "$1"
    fi
}
{
    inj_req '/\"]] os.exit() --[['
    inj_req '/x\nreturn true'
    inj_req '/q\\\"%s end) return true --'
    inj_req '/k]=]==]'
    inj_req '/hdr' '\"]] os.exit() --[['
    inj_req '/hdr' 'a\nreturn true'
    inj_req '/x'
    inj_req '/xreturn true'
    inj_req '/anything'
    inj_req '/\"]]'
    inj_req '/hdr' 'a'
    inj_req '/hdr' '\"]]'
    inj_req '/hdr'
} >"$TMP/inj.jsonl"
run "$W" policy eval -p "$TMP/inj" --input "$TMP/inj.jsonl"
expect_eq "eval survives hostile policies (exit 0)" 0 "$RC"
expect_eq "hostile values match only literally (6 exact allows, 7 near misses denied)" \
    "allow allow allow allow allow allow deny deny deny deny deny deny deny" \
    "$(printf '%s\n' "$OUT" | sed 's/^{"decision":"\([a-z]*\)".*/\1/' | tr '\n' ' ' | sed 's/ $//')"

# ---- bench ----------------------------------------------------------------------------------

head -n 20 "$TMP/lines.jsonl" >"$TMP/bench.jsonl"
run "$W" policy bench -p "$EX" --input "$TMP/bench.jsonl" --iterations 20000 --json
expect_eq "bench --json exits 0" 0 "$RC"
expect_match "bench --json reports rate and percentiles" \
    '^\{"policies":[0-9]+,.*"decisions":20000,.*"decisions_per_sec":[0-9.e+]+,"p50_us":[0-9.e+-]+,"p90_us":.*"p99_us":.*"p999_us":.*"compile_ms":' "$OUT"
run "$W" policy bench -p "$EX" --input "$TMP/bench.jsonl" --duration 200ms
expect_match "bench prints decisions/s and latency" 'decisions/s.*latency: +p50 [0-9.]+ us' "$(echo $OUT)"
run "$W" policy bench -p "$EX" --input "$TMP/malformed.jsonl" --iterations 10
expect_eq "bench on malformed input exits 2" 2 "$RC"

# ---- routes -----------------------------------------------------------------------------

run "$W" policy check "$EX"
expect_match "check counts the examples' Routes" '^ok: [0-9]+ policies and 2 routes in [0-9]+ files$' "$OUT"

mkdir -p "$TMP/routes"
cat >"$TMP/routes/shadow.yaml" <<'EOF'
apiVersion: ward/v1
kind: Route
metadata: {name: api, namespace: shop}
spec:
  hosts: [api]
  http:
    - name: v2
      match: [{paths: ["/v2/*"]}]
      destinations: [{service: api-v2}]
    - name: v2-items
      match: [{paths: [/v2/items], methods: [GET]}]
      destinations: [{service: api-items}]
    - name: rest
      destinations: [{service: api}]
    - name: never
      destinations: [{service: api-old}]
EOF
run "$W" policy check "$TMP/routes"
expect_eq "shadowed routes are warnings: check still exits 0" 0 "$RC"
expect_match "check counts the warnings" '^ok: 0 policies and 1 route in 1 file, 2 warnings$' "$OUT"
expect_match "a route shadowed by a wider prefix is named with file:line:col" \
    'shadow\.yaml:10:7: warning: spec\.http\[1\]: "v2-items" never matches: spec\.http\[0\] \("v2"\) matches every request it does' "$ERR"
expect_match "a route after a catch-all entry is named" \
    'shadow\.yaml:15:7: warning: spec\.http\[3\]: "never" never matches: spec\.http\[2\] \("rest"\) has no match' "$ERR"

cat >"$TMP/routes-bad.yaml" <<'EOF'
apiVersion: ward/v1
kind: Route
metadata: {name: split, namespace: shop}
spec:
  hosts: [api, "api:8080"]
  http:
    - name: canary
      destinations:
        - {service: api-v2, weight: 10}
        - {service: api-v1, weight: 80}
      headers: {response: {set: {x-a: "ok\r\nSet-Cookie: s=1"}}}
EOF
run "$W" policy check "$TMP/routes-bad.yaml"
expect_eq "a bad Route fails the check with exit 1" 1 "$RC"
expect_match "weights that do not add up are an error at the list" \
    'routes-bad\.yaml:9:9: spec\.http\[0\]\.destinations: weights add up to 90, not 100' "$ERR"
expect_match "a host with a port is an error" 'routes-bad\.yaml:5:16: spec\.hosts\[1\]: host "api:8080": write the host without a port' "$ERR"
expect_match "a header value with CR LF is refused (no response splitting)" \
    'routes-bad\.yaml:11:39: spec\.http\[0\]\.headers\.response\.set\.x-a: header value .* contains a control character' "$ERR"

"$W" policy compile "$EX" >"$TMP/routes.lua" 2>/dev/null
if grep -q '^routes\[1\] = {id = "shop/payments", hosts = {"payments", "payments.shop.svc"}' "$TMP/routes.lua" &&
    grep -q 'routes = routes}$' "$TMP/routes.lua"; then
    pass "compile writes the Routes into the bundle's routes table"
else
    fail "compile writes the Routes into the bundle's routes table"
fi

printf '{"request":{"method":"GET","host":"Payments:8443","path":"/v2/charges/ch_1"}}\n' >"$TMP/route.json"
run "$W" policy eval -p "$EX" --input "$TMP/route.json"
expect_match "eval prints the chosen route with its destinations and weights" \
    '"route":\{"policy":"shop/payments","name":"v2-canary","index":0,"source":"[^"]*routes\.yaml:[0-9]+","destinations":\[\{"service":"payments-v2","weight":10\},\{"service":"payments","weight":90\}\],"timeout_ms":2000,"retries":\{"attempts":2,"per_try_timeout_ms":500,"on":\["connect-failure","reset","503"\]' "$OUT"
printf '{"request":{"method":"GET","host":"checkout","path":"/cart/c-1"}}\n' | "$W" policy eval -p "$EX" >"$TMP/out" 2>&1
expect_match "eval prints a rewritten path" '"rewrite":\{"prefix":"/v1/carts/","path":"/v1/carts/c-1"\}' "$(cat "$TMP/out")"
printf '{"request":{"method":"GET","host":"inventory","path":"/v1/items"}}\n' | "$W" policy eval -p "$EX" >"$TMP/out" 2>&1
expect_match "eval prints route null for a host without a Route" '"route":null\}$' "$(cat "$TMP/out")"

run "$W" policy explain -p "$EX" --input "$TMP/route.json"
expect_match "explain lists the Route's entries" 'route shop/payments \(Route for this host\)' "$OUT"
expect_match "explain marks the entry that routes" 'http\[0\] v2-canary: matched  <- routes' "$OUT"
expect_match "explain names the chosen route and its split" 'route: shop/payments http\[0\] v2-canary -> payments-v2 10%, payments 90%' "$OUT"
printf '{"request":{"method":"POST","host":"checkout","path":"/v1/x","headers":{"x-canary":"0"}}}\n' |
    "$W" policy explain -p "$EX" >"$TMP/out" 2>&1
expect_match "explain names the field a route entry failed on" \
    'http\[0\] canary-by-header: no match: match\[0\]\.headers\[x-canary\], match\[1\]\.headers\[x-tenant\]' "$(cat "$TMP/out")"

run "$W" policy test --help
expect_match "policy test --help documents route expectations" 'route: .*destinations: \[\{service: payments-v2, weight: 10\}' "$(echo $OUT)"
cat >"$TMP/route-wrong.yaml" <<'EOF'
cases:
  - name: the canary takes v2 writes too (it does not)
    input:
      request: {method: POST, host: payments, path: /v2/charges}
    expect: {route: {name: v2-canary, destinations: [payments-v2, payments]}}
  - name: no route for inventory
    input:
      request: {method: GET, host: inventory, path: /}
    expect: {route: null}
EOF
run "$W" policy test -p "$EX" "$TMP/route-wrong.yaml"
expect_eq "a wrong route expectation fails with exit 1" 1 "$RC"
expect_eq "route expectations are counted" "1 passed, 1 failed" "$(printf '%s\n' "$OUT" | tail -1)"
expect_match "a failing route case shows expected and actual routes" \
    'route-wrong\.yaml:2: FAIL: .*expected \{route: \{name: v2-canary, destinations: \[payments-v2, payments\]\}\}, got \{route: \{name: stable, destinations: \[\{service: payments, weight: 100\}\]\}\}' "$OUT"
cat >"$TMP/route-unusable.yaml" <<'EOF'
cases:
  - name: typo
    input: {request: {method: GET, host: payments, path: /}}
    expect: {route: {nam: stable}}
EOF
run "$W" policy test -p "$EX" "$TMP/route-unusable.yaml"
expect_eq "an unknown route expectation field makes the file unusable (exit 2)" 2 "$RC"
expect_match "the unknown route field is named" 'route-unusable\.yaml:4:22: cases\[0\]\.expect\.route\.nam: unknown field' "$ERR"

finish
