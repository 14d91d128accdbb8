#!/usr/bin/env bash
# run.sh - run the unit test binaries given as arguments, then every
# tests/integration/*.sh, and print one summary line "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
export BUILD="${BUILD:-build}"
passed=0 failed=0 broken=()

for bin in "$@"; do
    out=$("$bin" 2>&1); rc=$?
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    if [ "$rc" -ne 0 ] && [ -z "$f" ]; then failed=$((failed + 1)); broken+=("$bin (exit $rc)"); fi
    [ "$rc" -ne 0 ] && [ -n "$f" ] && broken+=("$bin")
done

for t in tests/integration/*.sh; do
    [ -e "$t" ] || continue
    echo "== $t"
    out=$(bash "$t" 2>&1); rc=$?
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | grep -c '^PASS: ')
    f=$(printf '%s\n' "$out" | grep -c '^FAIL: ')
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
    [ "$rc" -ne 0 ] && broken+=("$t (exit $rc)")
done

echo
for b in "${broken[@]+"${broken[@]}"}"; do echo "failed: $b"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
