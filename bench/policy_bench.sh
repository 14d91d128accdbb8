#!/usr/bin/env bash
# policy_bench.sh - policy engine benchmark: decisions/s and p50/p90/p99 latency at 10, 1,000 and 10,000 rules, compile time, memory
#
#   bench/policy_bench.sh [--write-results]
#
# Environment: WARDCTL (build/bin/wardctl), BENCH_OUT (build/bench),
# BENCH_SIZES ("10 1000 10000"), BENCH_SECONDS (3, per size), BENCH_REQUESTS
# (20000 distinct requests per size), BENCH_CPU (0: the core to pin to),
# BENCH_HOT (500: requests of the extra hot-working-set pass).
# Exit status: 0 when every run worked, non-zero when a step failed; with
# BENCH_STRICT=1 also 3 when a target of issue 2 was missed.
set -euo pipefail
cd "$(dirname "$0")/.."

WARDCTL="${WARDCTL:-build/bin/wardctl}"
OUT="${BENCH_OUT:-build/bench}"
SIZES="${BENCH_SIZES:-10 1000 10000}"
export BENCH_SECONDS="${BENCH_SECONDS:-3}"
REQUESTS="${BENCH_REQUESTS:-20000}"
CPU="${BENCH_CPU:-0}"
HOT="${BENCH_HOT:-500}"
WRITE_RESULTS=""
[ "${1:-}" = "--write-results" ] && WRITE_RESULTS=bench/RESULTS.md

if [ ! -x "$WARDCTL" ]; then
    echo "policy_bench.sh: $WARDCTL not found; run make first" >&2
    exit 2
fi
PIN=()
if command -v taskset >/dev/null 2>&1 && taskset -c "$CPU" true 2>/dev/null; then
    PIN=(taskset -c "$CPU")
fi
U=bench/bench_util.py
mkdir -p "$OUT"
echo "policy_bench: $(date -u +%FT%TZ), $(nproc) cores, ${PIN[*]:-not pinned}, ${BENCH_SECONDS}s per size"

# bench_size N: one size; on failure writes the reason to $OUT/N/error.txt.
bench_size() {
    local n="$1" d="$OUT/$1"
    echo
    echo "== $n rules"
    rm -rf "$d"
    mkdir -p "$d"
    python3 bench/gen_policies.py --rules "$n" --out "$d" --requests "$REQUESTS" --seed "$n"

    # Compile time: best of 3, load + validate + generate.
    if ! python3 "$U" measure "$d/compile.measure.json" --repeat 3 --stdout "$d/compiled.lua" -- \
        "${PIN[@]}" "$WARDCTL" policy compile "$d/policies"; then
        echo "policy compile failed: $(head -c 300 "$d/compiled.lua" | tr '\n' ' ')" >"$d/error.txt"
        return 1
    fi
    python3 - "$d/compile.measure.json" "$d/compiled.lua" <<'EOF'
import json, os, sys
m = json.load(open(sys.argv[1])); m["lua_bytes"] = os.path.getsize(sys.argv[2])
json.dump(m, open(sys.argv[1], "w"))
print("compile: %.3f s (runs %s), %d bytes of Lua" % (m["wall_s"], m["runs"], m["lua_bytes"]))
EOF

    # The generated set must be valid (and load), or the numbers mean nothing.
    if ! "$WARDCTL" policy check "$d/policies" >"$d/check.txt" 2>&1; then
        echo "policy check failed: $(head -c 300 "$d/check.txt" | tr '\n' ' ')" >"$d/error.txt"
        cat "$d/error.txt" >&2
        return 1
    fi

    # The allow/deny mix of the request file (a sanity check of the generator).
    if head -n 5000 "$d/requests.jsonl" | "$WARDCTL" policy eval -p "$d/policies" --input - \
        >"$d/eval.jsonl" 2>"$d/eval.err"; then
        python3 - "$d/eval.jsonl" "$d/mix.json" <<'EOF'
import json, sys
allow = total = 0
for line in open(sys.argv[1]):
    line = line.strip()
    if line:
        total += 1
        allow += json.loads(line).get("decision") == "allow"
json.dump({"allow": allow, "total": total}, open(sys.argv[2], "w"))
print("mix: %d of %d sampled requests allowed (%.0f%%)" % (allow, total, 100.0 * allow / max(total, 1)))
EOF
    else
        echo "mix: wardctl policy eval failed ($(head -c 200 "$d/eval.err"))"
    fi

    # Throughput and latency on one core.
    if ! python3 "$U" measure "$d/bench.measure.json" --stdout "$d/bench.json" -- \
        "${PIN[@]}" "$WARDCTL" policy bench -p "$d/policies" --input "$d/requests.jsonl" \
        --duration "$BENCH_SECONDS" --json; then
        echo "policy bench failed" >"$d/error.txt"
        return 1
    fi
    echo "bench: $(cat "$d/bench.json")"

    # The same with a hot working set (the first BENCH_HOT requests only): how
    # much of the cost is cache misses over a large rule set.
    head -n "$HOT" "$d/requests.jsonl" >"$d/hot.jsonl"
    if "${PIN[@]}" "$WARDCTL" policy bench -p "$d/policies" --input "$d/hot.jsonl" \
        --duration "$BENCH_SECONDS" --json >"$d/hot.json"; then
        echo "hot ($HOT requests): $(cat "$d/hot.json")"
    fi
}

failed=0
for n in $(printf '%s\n' $SIZES | sort -n); do
    bench_size "$n" || failed=$((failed + 1))
done

echo
csv_sizes=$(printf '%s\n' $SIZES | sort -n | paste -sd, -)
rc=0
python3 "$U" report "$OUT" --sizes "$csv_sizes" ${WRITE_RESULTS:+--markdown "$WRITE_RESULTS"} || rc=$?
if [ -n "$WRITE_RESULTS" ]; then echo; echo "wrote $WRITE_RESULTS"; fi
if [ "$rc" -eq 3 ] && [ "${BENCH_STRICT:-0}" != 1 ]; then rc=0; fi
if [ "$failed" -gt 0 ]; then
    echo "policy_bench.sh: $failed size(s) failed (see the table)" >&2
    rc=1
fi
exit "$rc"
