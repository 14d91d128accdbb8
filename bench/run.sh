#!/usr/bin/env bash
# run.sh - run every benchmark in bench/ (called by `make bench`); pass --write-results to refresh bench/RESULTS.md
set -euo pipefail
cd "$(dirname "$0")/.."

rc=0
echo "### policy engine (bench/policy_bench.sh)"
bench/policy_bench.sh "$@" || rc=$?
case "$rc" in
0) echo "bench: done (targets: see the table above; BENCH_STRICT=1 fails on a miss)" ;;
3) echo "bench: some targets missed (see the table above)" ;;
*) echo "bench: policy_bench.sh failed (exit $rc)" ;;
esac

echo
echo "### identity service (bench/identity_bench.sh)"
irc=0
bench/identity_bench.sh "$@" || irc=$?
[ "$irc" -eq 0 ] || echo "bench: identity_bench.sh exit $irc"
[ "$rc" -ne 0 ] || rc=$irc

echo
echo "### proxy: the mesh hop against nginx and HAProxy (bench/proxy_bench.sh)"
prc=0
bench/proxy_bench.sh "$@" || prc=$?
[ "$prc" -eq 0 ] || echo "bench: proxy_bench.sh exit $prc (2: a leg could not run or had errors, see above)"
[ "$rc" -ne 0 ] || rc=$prc
echo
echo "### routes: routing cost of 1,000 Routes against 10, split accuracy (bench/route_bench.sh)"
rrc=0
bench/route_bench.sh "$@" || rrc=$?
[ "$rrc" -eq 0 ] || echo "bench: route_bench.sh exit $rrc (2: a leg could not run or had errors, see above)"
[ "$rc" -ne 0 ] || rc=$rrc
echo
echo "### audit trail: store records/s, enqueue latency, proxy with audit on/off, verify and export (bench/audit_store_bench.sh, which runs bench/audit_bench.sh)"
arc=0
bench/audit_store_bench.sh "$@" || arc=$?
[ "$arc" -eq 0 ] || echo "bench: audit_store_bench.sh exit $arc (2: a step failed or a trail did not verify, see above)"
[ "$rc" -ne 0 ] || rc=$arc
exit "$rc"
