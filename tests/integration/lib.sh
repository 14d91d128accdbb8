# lib.sh - helpers for integration tests: each check prints "PASS: name" or "FAIL: name".
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${BUILD:-build}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
BIN="$BUILD/bin"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
FAILS=0

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; shift; [ $# -gt 0 ] && printf '  %s\n' "$@"; FAILS=$((FAILS + 1)); }

# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected: $2" "actual:   $3"; fi
}
# expect_match NAME REGEX ACTUAL
expect_match() {
    if printf '%s' "$3" | grep -Eq -- "$2"; then pass "$1"; else fail "$1" "expected to match: $2" "actual: $3"; fi
}
finish() { exit $((FAILS > 0)); }

# ---- a mesh of static SPIFFE identities (openssl CLI) -------------------------------------------
# spiffe_ca DIR TRUST-DOMAIN: DIR/ca.pem and DIR/ca.key, a CA whose URI SAN is the trust domain
spiffe_ca() {
    mkdir -p "$1"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1/ca.key" \
        -out "$1/ca.pem" -days 2 -subj "/O=test/CN=ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectAltName=URI:spiffe://$2" 2>/dev/null
}
# spiffe_leaf DIR NAME SPIFFE-ID: DIR/NAME.pem and DIR/NAME.key, an X509-SVID signed by DIR/ca
spiffe_leaf() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
        -keyout "$1/$2.key" -out "$1/$2.csr" 2>/dev/null &&
        openssl x509 -req -in "$1/$2.csr" -CA "$1/ca.pem" -CAkey "$1/ca.key" -CAcreateserial \
            -out "$1/$2.pem" -days 1 -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
                "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth,clientAuth" \
                "subjectAltName=URI:$3") 2>/dev/null && chmod 600 "$1/$2.key"
}
# start_ward_proxy NAME: $BIN/ward-proxy --config $TMP/NAME.yaml (log $TMP/NAME.log) in the
# background, appended to PIDS; waits for its start line; sets LPID, IN, OUT, ADMIN
start_ward_proxy() {
    "$BIN/ward-proxy" --config "$TMP/$1.yaml" 2>>"$TMP/$1.log" &
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
    OUT=$(printf '%s' "$line" | grep -o 'outbound [0-9]*' | awk '{print $2}')
    ADMIN=$(printf '%s' "$line" | grep -o 'admin [0-9]*' | awk '{print $2}')
    [ -n "$IN" ]
}
# payments_policy_doc PRINCIPAL TO: prints an AuthorizationPolicy (shop/payments)
# allowing PRINCIPAL what the flow list TO says (for instance '[{methods: [GET]}]');
# payments_policy FILE PRINCIPAL TO writes it to FILE
payments_policy_doc() {
    cat <<EOF
apiVersion: ward/v1
kind: AuthorizationPolicy
metadata: {name: payments, namespace: shop}
spec:
  selector: {services: [payments]}
  action: ALLOW
  rules:
    - from: [{principals: ["$1"]}]
      to: $2
EOF
}
payments_policy() {
    payments_policy_doc "$2" "$3" >"$1"
}
# start_mesh_app [NAME [PORT]]: mesh_app.py recording to $TMP/NAME.rec (NAME: app;
# log $TMP/NAME.log) on PORT (0: any), in the background (appended to PIDS); sets
# APP_PID and APP_PORT; non-zero when it did not come up
start_mesh_app() {
    local name="${1:-app}"
    # a restart on the same port must not read the last run's port before the redirect truncates it
    rm -f "$TMP/$name.port"
    python3 "$(dirname "${BASH_SOURCE[0]}")/mesh_app.py" "$TMP/$name.rec" --port "${2:-0}" \
        >"$TMP/$name.port" 2>>"$TMP/$name.log" &
    APP_PID=$!
    PIDS+=("$APP_PID")
    APP_PORT=""
    for _ in $(seq 50); do
        APP_PORT=$(head -1 "$TMP/$name.port" 2>/dev/null)
        [ -n "$APP_PORT" ] && return 0
        sleep 0.1
    done
    return 1
}
