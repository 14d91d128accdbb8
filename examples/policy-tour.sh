#!/usr/bin/env bash
# policy-tour.sh - a narrated tour of the policy engine alone, on the shop mesh's policies
#
# No wardd and no proxy (`make demo` runs the whole mesh): checking, compiling,
# evaluating, explaining and testing the policies in examples/policies, which is
# what decides every request of the mesh. Each step prints what it runs.
#   examples/policy-tour.sh          (after make; BUILD=build/... for another build)
set -euo pipefail
cd "$(dirname "$0")/.."
WARDCTL="${BUILD:-build}/bin/wardctl"
POL=examples/policies
CHECKOUT=spiffe://example.org/ns/shop/sa/checkout
FRONTEND=spiffe://example.org/ns/shop/sa/frontend

if [ -t 1 ]; then B=$'\e[1m' D=$'\e[2m' R=$'\e[0m'; else B='' D='' R=''; fi
step() { printf '\n%s== %s%s\n' "$B" "$1" "$R"; }
run() { printf '%s$ %s%s\n' "$D" "$*" "$R"; "$@"; }
request() { # principal service method path -> request JSON
    printf '{"source":{"principal":"%s","ip":"10.0.1.7"},"destination":{"service":"%s"},"request":{"method":"%s","path":"%s","headers":{"idempotency-key":"k-1"}},"connection":{"mtls":true}}' "$@"
}

step "1. Validate the shop mesh's policies (every error would name file:line:col)"
run "$WARDCTL" policy check "$POL"

step "2. A mistake is caught before it is deployed"
bad=$(mktemp -d)
trap 'rm -rf "$bad"' EXIT
cat > "$bad/typo.yaml" <<'EOF'
apiVersion: ward/v1
kind: AuthorizationPolicy
metadata: {name: typo, namespace: shop}
spec:
  rules:
    - to: [{paths: ["/v1/users/{**}/orders"]}]
EOF
run "$WARDCTL" policy check "$bad" || echo "(exit $? - as expected)"

step "3. checkout may create a charge on payments"
request "$CHECKOUT" payments POST /v1/charges | run "$WARDCTL" policy eval -p "$POL"

step "4. frontend may not: no ALLOW rule of payments matches (zero trust: deny)"
request "$FRONTEND" payments POST /v1/charges | run "$WARDCTL" policy eval -p "$POL"

step "5. Admin paths are denied mesh-wide, whoever asks, unless from the ops namespace"
request "$CHECKOUT" payments GET /admin/flags | run "$WARDCTL" policy eval -p "$POL"

step "6. Why? explain walks every policy that applies and names the field that failed"
request "$FRONTEND" payments POST /v1/charges | run "$WARDCTL" policy explain -p "$POL"

step "7. The generated Lua that runs (readable, deterministic, comments point at the rules)"
run "$WARDCTL" policy compile "$POL" --service payments | sed -n '/generated policies/,/^end)/p'

step "8. The policy tests that ship with the examples"
run "$WARDCTL" policy test -p "$POL" "$POL/tests/shop.yaml"

printf '\n%sNext:%s write a rule in %s, a test case in %s/tests/, and run\n' "$B" "$R" "$POL" "$POL"
printf '  %s policy test -p %s\n' "$WARDCTL" "$POL"
