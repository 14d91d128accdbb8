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
