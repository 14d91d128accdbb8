#!/usr/bin/env bash
# audit_bench.sh - wardctl audit verify and export speed on a 1,000,000-record trail: records/s of wall clock and of CPU, on one core
#
#   bench/audit_bench.sh
#
# The trail is written by tests/integration/audit_fixture.py (docs/audit.md
# format: 10 segments of 100,000 records, a signed checkpoint every 10,000;
# records of about 950 bytes) into BENCH_OUT and kept for the next run.
# wardctl runs pinned to one core (BENCH_CPU, 0) when taskset can. Each
# measurement is the best of BENCH_REPEAT (3) runs. Prints records/s for
# verify (target: >= 500,000/s, issue 5) and for export in every format.
# Environment: WARDCTL (build/bin/wardctl), BENCH_RECORDS (1000000),
# BENCH_OUT (build/bench/audit), BENCH_REPEAT, BENCH_CPU, AUDIT_BENCH_TSV (a
# file that gets one tab-separated line per step: step, wall s, CPU s,
# records/s, records/s of CPU, MB/s; for bench/audit_store_bench.sh).
# Exit status: 0 done, 2 a step failed, 3 (with BENCH_STRICT=1) target missed.
set -euo pipefail
cd "$(dirname "$0")/.."

WARDCTL="${WARDCTL:-build/bin/wardctl}"
RECORDS="${BENCH_RECORDS:-1000000}"
OUT="${BENCH_OUT:-build/bench/audit}"
REPEAT="${BENCH_REPEAT:-3}"
CPU="${BENCH_CPU:-0}"
PY=/usr/bin/python3
TARGET=500000

if [ ! -x "$WARDCTL" ]; then
    echo "audit_bench.sh: $WARDCTL not found; run make first" >&2
    exit 2
fi
[ -z "${AUDIT_BENCH_TSV:-}" ] || : >"$AUDIT_BENCH_TSV"
PIN=()
if command -v taskset >/dev/null 2>&1 && taskset -c "$CPU" true 2>/dev/null; then
    PIN=(taskset -c "$CPU")
fi

TRAIL="$OUT/trail-$RECORDS"
if [ ! -f "$TRAIL/.complete" ]; then
    echo "writing a $RECORDS-record trail into $TRAIL (once; kept for the next run) ..."
    rm -rf "$TRAIL"
    mkdir -p "$OUT"
    per=$(( RECORDS >= 10 ? RECORDS / 10 : 1 ))
    $PY tests/integration/audit_fixture.py gen "$TRAIL" --records "$RECORDS" \
        --per-segment "$per" --checkpoint-every 10000 --step-ms 1 >/dev/null || exit 2
    touch "$TRAIL/.complete"
fi
cp "$TRAIL/checkpoint.pub" "$OUT/auditor.pub"
BYTES=$(cat "$TRAIL"/segment-*.jsonl | wc -c)

# best NAME CMD... : runs CMD REPEAT times (stdout to /dev/null); sets WALL and
# CPU (user + sys) of the fastest run
best() {
    local name=$1 i t
    shift
    WALL="" CPUS=""
    for ((i = 0; i < REPEAT; i++)); do
        t=$( { TIMEFORMAT='%R %U %S'; time "${PIN[@]}" "$@" >/dev/null 2>"$OUT/$name.err"; } 2>&1 ) || {
            echo "audit_bench.sh: $name failed:" >&2
            cat "$OUT/$name.err" >&2
            exit 2
        }
        read -r w u s <<<"$t"
        if [ -z "$WALL" ] || awk -v a="$w" -v b="$WALL" 'BEGIN { exit !(a < b) }'; then
            WALL=$w
            CPUS=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.3f", u + s }')
        fi
    done
}

# row STEP: prints the figures of the last best run (and adds them to AUDIT_BENCH_TSV)
row() {
    printf '%-22s %10s %10s %14s %14s %8s\n' "$1" "$WALL" "$CPUS" "$(rate "$WALL")" "$(rate "$CPUS")" "$(mbs "$WALL")"
    [ -z "${AUDIT_BENCH_TSV:-}" ] ||
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$WALL" "$CPUS" "$(rate "$WALL")" "$(rate "$CPUS")" "$(mbs "$WALL")" >>"$AUDIT_BENCH_TSV"
}
rate() { awk -v n="$RECORDS" -v t="$1" 'BEGIN { printf "%.0f", (t > 0 ? n / t : 0) }'; }
mbs() { awk -v n="$BYTES" -v t="$1" 'BEGIN { printf "%.0f", (t > 0 ? n / t / 1e6 : 0) }'; }

echo
echo "audit trail: $RECORDS records, $((BYTES / 1000000)) MB in $(ls "$TRAIL"/segment-*.jsonl | wc -l) segments," \
    "$(wc -l <"$TRAIL/checkpoints.jsonl") checkpoints; ${PIN[*]:-unpinned}; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %10s %10s %14s %14s %8s\n' step "wall s" "CPU s" "records/s" "rec/s of CPU" "MB/s"

best verify "$WARDCTL" audit verify "$TRAIL" --key "$OUT/auditor.pub"
VERIFY_WALL=$WALL VERIFY_CPU=$CPUS
row "verify"
for f in jsonl csv ocsf cef; do
    best "export-$f" "$WARDCTL" audit export "$TRAIL" --format "$f"
    row "export $f"
done
best "export-csv-deny" "$WARDCTL" audit export "$TRAIL" --format csv --where decision=deny
row "export csv (denies)"
best "query-count-by" "$WARDCTL" audit query "$TRAIL" --where decision=deny --count-by source.principal
row "query --count-by"

echo
VR=$(rate "$VERIFY_WALL")
echo "verify: $VR records/s (wall), $(rate "$VERIFY_CPU") records/s of CPU; target >= $TARGET records/s"
if [ "$VR" -lt "$TARGET" ]; then
    echo "verify: below the target on the wall clock (a loaded machine shows it in CPU vs wall)"
    [ "${BENCH_STRICT:-0}" = 1 ] && exit 3
fi
exit 0
