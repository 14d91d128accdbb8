#!/usr/bin/env bash
# run.sh - the Ward demo: wardd and a shop mesh on loopback, and a narrated tour.
#
#   examples/demo/run.sh            start the mesh, tour it, leave it running until Ctrl-C
#   examples/demo/run.sh --ci       the same tour, checking every step (PASS:/FAIL: lines),
#                                   then stop everything; exit 1 if a check failed (DEMO_CI=1)
#   examples/demo/run.sh --no-tour  start the mesh and leave it running, without the tour
#   examples/demo/run.sh --stop     stop a running demo (make demo-stop), from any terminal
#
# `make demo` builds first and runs the first form. The mesh:
#
#   you ──curl──► gateway ══mTLS══► frontend ══mTLS══► checkout ══mTLS══► payments
#                                      ║     ╲            ║   ╲══mTLS══════► payments-v2 (canary, 10% of /v2 reads)
#                                      ║      ╲══mTLS══► checkout-v2 (canary: x-canary: 1, beta tenants)
#                                      ║                   ╚══════mTLS═════► inventory
#                                      ╚═══════════════mTLS════════════════► inventory
#
# one wardd (the CA), six Python apps (examples/demo/app.py: four services, and a
# v2 build of checkout and of payments), seven ward-proxy sidecars
# (examples/demo/*.yaml) enforcing examples/policies. Everything lives in
# DEMO_DIR (default BUILD/demo: configs, tokens, SVIDs, audit trails, logs) and
# every process started is listed in DEMO_DIR/pids, which --stop and the exit
# trap use to stop exactly those processes.
#
# Environment: BUILD (default build: binaries in BUILD/bin), DEMO_DIR,
# DEMO_PORT_BASE (default 18000: the configs' ports are 18000..18699; another
# base shifts them all; busy ports make the script pick a free base itself).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 3
EX=examples/demo
BUILD="${BUILD:-build}"
case "$BUILD" in /*) BIN="$BUILD/bin" ;; *) BIN="$ROOT/$BUILD/bin" ;; esac
DEMO_DIR="${DEMO_DIR:-$BUILD/demo}"
case "$DEMO_DIR" in /*) ;; *) DEMO_DIR="$ROOT/$DEMO_DIR" ;; esac
DEMO_DIR="${DEMO_DIR%/}"
PIDFILE="$DEMO_DIR/pids"
TD=example.org
SERVICES=(frontend checkout payments inventory checkout-v2 payments-v2) # the apps
PROXIES=(gateway frontend checkout payments inventory checkout-v2 payments-v2)
PY=/usr/bin/python3 # Debian's; a pyenv shim would add ~100 ms to every start
[ -x "$PY" ] || PY=python3

MODE=tour
[ "${DEMO_CI:-0}" = 1 ] && MODE=ci
for a in "$@"; do
    case "$a" in
    --ci) MODE=ci ;;
    --no-tour) MODE=up ;;
    --stop) MODE=stop ;;
    -h | --help)
        sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "run.sh: unknown argument '$a' (try --help)" >&2
        exit 2
        ;;
    esac
done

if [ -t 1 ] && [ "$MODE" != ci ]; then
    B=$'\e[1m' D=$'\e[2m' G=$'\e[32m' RED=$'\e[31m' Y=$'\e[33m' R=$'\e[0m'
else
    B='' D='' G='' RED='' Y='' R=''
fi
rel() { # a path as the user would type it from the repository
    local p="${1#"$ROOT"/}"
    printf '%s' "$p"
}
DD=$(rel "$DEMO_DIR")

# ---- processes: every one started is a line "PID STARTTIME NAME" in $PIDFILE -------------

# proc_start PID: the process's start time (clock ticks since boot), empty if gone or a
# zombie. A PID with the recorded start time is the very process we started, never a
# later process that got the PID again.
proc_start() {
    local s
    s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
    # shellcheck disable=SC2086 # the fields after the command name, split
    set -- $s
    [ "$1" = Z ] && return 1
    printf '%s' "${20}"
}
record_pid() { # PID NAME
    echo "$1 $(proc_start "$1") $2" >>"$PIDFILE"
}
# spawn NAME CMD...: run CMD in the background, output to logs/NAME.log
spawn() {
    local name=$1
    shift
    "$@" >>"$DEMO_DIR/logs/$name.log" 2>&1 &
    record_pid $! "$name"
}
# ours_alive: the PIDs of $PIDFILE (but the supervisor) that still run
ours_alive() {
    local pid st name
    [ -f "$PIDFILE" ] || return 0
    while read -r pid st name; do
        [ "$name" = run.sh ] && continue
        [ -n "$st" ] && [ "$(proc_start "$pid")" = "$st" ] && echo "$pid"
    done <"$PIDFILE"
}
# stop_all: SIGTERM to every process of $PIDFILE (proxies drain for up to 2 s), SIGKILL
# to any still running after 6 s.
stop_all() {
    local pids p i
    pids=$(ours_alive)
    [ -z "$pids" ] && return 0
    for p in $pids; do kill -TERM "$p" 2>/dev/null; done
    for i in $(seq 60); do
        [ -z "$(ours_alive)" ] && break # (a zombie counts as stopped)
        sleep 0.1
    done
    for p in $(ours_alive); do kill -KILL "$p" 2>/dev/null; done
    for i in $(seq 20); do
        [ -z "$(ours_alive)" ] && break
        sleep 0.1
    done
    wait 2>/dev/null # reap our children (none when --stop runs in another shell)
}

supervisor() { # the PID of a running run.sh for this DEMO_DIR, if any
    local pid st name
    [ -f "$PIDFILE" ] || return 1
    read -r pid st name <"$PIDFILE" || return 1
    [ "$name" = run.sh ] && [ -n "$st" ] && [ "$(proc_start "$pid")" = "$st" ] && echo "$pid"
}

if [ "$MODE" = stop ]; then
    if [ ! -f "$PIDFILE" ]; then
        echo "no demo is running (no $DD/pids)"
        exit 0
    fi
    if sup=$(supervisor); then
        echo "stopping the demo (run.sh, pid $sup) ..."
        kill -TERM "$sup" 2>/dev/null
        for _ in $(seq 150); do
            supervisor >/dev/null || break
            sleep 0.1
        done
    fi
    left=$(ours_alive | wc -l)
    if [ "$left" -gt 0 ]; then
        echo "stopping $left process(es) left in $DD/pids ..."
        stop_all
    fi
    left=$(ours_alive | wc -l)
    if [ "$left" -gt 0 ]; then
        echo "still running: $(ours_alive | tr '\n' ' ')" >&2
        exit 1
    fi
    rm -f "$PIDFILE"
    echo "the demo is stopped (its files stay in $DD)"
    exit 0
fi

# ---- narration and checks ----------------------------------------------------------------

FAILS=0 CHECKS=0
T0=$(date +%s%N)
elapsed() { echo $((($(date +%s%N) - T0) / 1000000000)); }

step() { printf '\n%s== %s%s\n' "$B" "$1" "$R"; }
say() { printf '%s\n' "$@"; }
cmdline() { printf '%s$ %s%s\n' "$D" "$1" "$R"; } # prints a command (run or started here)
# run 'COMMAND': prints it, runs it (PATH has BUILD/bin first), prints its output;
# OUT is the output (stdout and stderr), RC the exit status.
run() {
    printf '%s$ %s%s\n' "$D" "$1" "$R"
    OUT=$(eval "$1" 2>&1)
    RC=$?
    [ -n "$OUT" ] && printf '%s\n' "$OUT"
    return 0
}
pass() {
    CHECKS=$((CHECKS + 1))
    if [ "$MODE" = ci ]; then echo "PASS: $1"; else printf '  %s✓ %s%s\n' "$G" "$1" "$R"; fi
}
fail() {
    CHECKS=$((CHECKS + 1)) FAILS=$((FAILS + 1))
    if [ "$MODE" = ci ]; then echo "FAIL: $1"; else printf '  %s✗ %s%s\n' "$RED" "$1" "$R"; fi
    shift
    [ $# -gt 0 ] && printf '    %s\n' "$@"
    return 0
}
expect() { # NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected: $2" "actual:   $3"; fi
}
expect_match() { # NAME REGEX ACTUAL
    if printf '%s' "$3" | grep -Eq -- "$2"; then pass "$1"; else fail "$1" "expected to match: $2" "actual: $3"; fi
}
# abort WHAT [DETAIL...]: a step the rest depends on failed
abort() {
    fail "$@"
    printf '%sthe demo cannot go on; logs are in %s/logs/%s\n' "$RED" "$DD" "$R" >&2
    exit 1
}

wait_for() { # SECONDS CMD...: poll CMD every 0.1 s
    local n=$(($1 * 10))
    shift
    for _ in $(seq "$n"); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}
json() { # FILE EXPR: a value of the JSON document in FILE (EXPR over `d`), '' if absent
    "$PY" -c 'import json, sys
try:
    d = json.load(open(sys.argv[1]))
    v = eval(sys.argv[2])
    print("" if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else v))
except Exception:
    print("")' "$1" "$2"
}
http_code() { # METHOD URL HOST [CURL ARGS...]: the status of one call (000: no answer)
    local m=$1 u=$2 h=$3
    shift 3
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$m" -H "Host: $h" "$@" "$u"
}
metric() { # ADMIN_PORT NAME: an unlabelled sample's value
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {print $2; exit}'
}
count() { # PATTERN FILE: lines with PATTERN (fixed string)
    local n
    n=$(grep -cF -- "$1" "$2" 2>/dev/null)
    echo "${n:-0}"
}

# ---- ports -----------------------------------------------------------------------------------

# The configs in examples/demo use 127.0.0.1:18000..18699; DEMO_PORT_BASE moves them all.
CFG_PORTS=$(grep -ohE '127\.0\.0\.1:18[0-6][0-9][0-9]' "$EX"/*.yaml | cut -d: -f2 | sort -u)
free_base() { # PREFERRED ANY: the preferred base if all ports are free there, else (ANY=1) another
    # shellcheck disable=SC2086 # one argument per port
    "$PY" - "$1" "$2" $CFG_PORTS <<'EOF'
import random, socket, sys
pref, anyb, ports = int(sys.argv[1]), sys.argv[2] == "1", [int(p) - 18000 for p in sys.argv[3:]]
def free(base):
    for p in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", base + p))
        except OSError:
            return False
        finally:
            s.close()
    return True
cands = [pref] if pref else []
if anyb:
    cands += random.sample(range(20000, 32001, 500), 25)  # below the ephemeral ports (32768..)
for b in cands:
    if free(b):
        print(b)
        sys.exit(0)
sys.exit(1)
EOF
}
PORT_BASE_ASKED="${DEMO_PORT_BASE:-}"
if [ "$MODE" = ci ] && [ -z "$PORT_BASE_ASKED" ]; then
    PORT_BASE=$(free_base 0 1) # CI: never the default ports a running demo may hold
elif [ -n "$PORT_BASE_ASKED" ]; then
    PORT_BASE=$(free_base "$PORT_BASE_ASKED" 0)
else
    PORT_BASE=$(free_base 18000 1)
fi
port() { echo $((PORT_BASE + $1 - 18000)); } # port 18001: that port after the shift

# ---- start ------------------------------------------------------------------------------------

for b in wardd wardctl ward-proxy; do
    [ -x "$BIN/$b" ] || abort "the binaries are built" "missing $BIN/$b (run make)"
done
for tool in curl perl; do
    command -v "$tool" >/dev/null || abort "$tool is installed" "make deps installs it"
done
export PATH="$BIN:$PATH"

if [ -f "$PIDFILE" ]; then
    if sup=$(supervisor); then
        echo "a demo is already running in $DD (pid $sup): stop it first with 'make demo-stop'" >&2
        echo "(or run another one elsewhere: DEMO_DIR=/tmp/demo2 $EX/run.sh)" >&2
        exit 1
    fi
    stop_all # leftovers of a demo that was killed
fi
if [ -z "$PORT_BASE" ]; then
    echo "run.sh: the demo's ports ($(port 18000)..$(port 18699)) are busy, and no free range was found" >&2
    [ -n "$PORT_BASE_ASKED" ] && echo "(DEMO_PORT_BASE=$PORT_BASE_ASKED; unset it to let the demo pick)" >&2
    exit 1
fi
if [ -e "$DEMO_DIR" ] && [ ! -e "$DEMO_DIR/.ward-demo" ] && [ -n "$(ls -A "$DEMO_DIR" 2>/dev/null)" ]; then
    echo "run.sh: $DEMO_DIR exists and is not a demo folder; set DEMO_DIR to a new or empty folder" >&2
    exit 1
fi
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"/{logs,keys,state,audit} || exit 3
touch "$DEMO_DIR/.ward-demo"
echo "$$ $(proc_start $$) run.sh" >"$PIDFILE"

on_exit() {
    trap '' INT TERM
    if [ -n "$(ours_alive)" ]; then
        [ "$MODE" != ci ] && printf '\n%sstopping the mesh ...%s\n' "$D" "$R"
        stop_all
    fi
    if [ "$MODE" = ci ]; then
        if [ -z "$(ours_alive)" ]; then
            echo "PASS: every process the demo started has stopped"
        else
            echo "FAIL: every process the demo started has stopped"
            echo "    still running: $(ours_alive | tr '\n' ' ')"
            FAILS=$((FAILS + 1))
        fi
        # sanitizer builds (make SANITIZE=...): reports land in the logs, leaks at exit
        if grep -lqE 'AddressSanitizer|LeakSanitizer|runtime error:' "$DEMO_DIR"/logs/*.log 2>/dev/null; then
            echo "FAIL: no sanitizer report in the logs"
            grep -E -A8 'AddressSanitizer|LeakSanitizer|runtime error:' "$DEMO_DIR"/logs/*.log | head -30 |
                sed 's/^/    /'
            FAILS=$((FAILS + 1))
        else
            echo "PASS: no sanitizer report in the logs"
        fi
    elif [ -z "$(ours_alive)" ]; then
        printf 'the demo is stopped; its files stay in %s\n' "$DD"
    fi
    rm -f "$PIDFILE"
    [ "$MODE" = ci ] && [ "$FAILS" -gt 0 ] && exit 1
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Configs: examples/demo/*.yaml with the ports shifted to PORT_BASE; policies: a copy of
# examples/policies that the proxies watch (edit it: every proxy reloads within a second).
for f in "$EX"/*.yaml; do
    BASE=$PORT_BASE perl -pe 's/127\.0\.0\.1:18([0-6]\d\d)/"127.0.0.1:" . ($ENV{BASE} + $1)/ge' \
        "$f" >"$DEMO_DIR/$(basename "$f")"
done
cp -r examples/policies "$DEMO_DIR/policies"

GW_OUT=$(port 18001)
CK_OUT=$(port 18201)
declare -A ADMIN=([gateway]=$(port 18000) [frontend]=$(port 18100) [checkout]=$(port 18200)
    [payments]=$(port 18300) [inventory]=$(port 18400) [payments-v2]=$(port 18500)
    [checkout-v2]=$(port 18600))
declare -A APP=([frontend]=$(port 18180) [checkout]=$(port 18280) [payments]=$(port 18380)
    [inventory]=$(port 18480) [payments-v2]=$(port 18580) [checkout-v2]=$(port 18680))
declare -A OUTB=([frontend]=127.0.0.1:$(port 18101) [checkout]=127.0.0.1:$CK_OUT
    [checkout-v2]=127.0.0.1:$(port 18601))
app_args() { # app -> app.py's arguments: NAME PORT [OUTBOUND] [--version v2]
    local name=${1%-v2}
    printf '%s\n' "$name" "${APP[$1]}"
    [ -n "${OUTB[$1]:-}" ] && printf '%s\n' "${OUTB[$1]}"
    [ "$name" != "$1" ] && printf '%s\n' --version v2
    return 0
}
sid() { # service -> SPIFFE ID
    case "$1" in
    gateway) echo "spiffe://$TD/ns/edge/sa/gateway" ;;
    *) echo "spiffe://$TD/ns/shop/sa/$1" ;;
    esac
}

printf '%sWard demo%s: wardd and a shop mesh on loopback (files in %s)\n' "$B" "$R" "$DD"
say "${D}Commands below run with $(rel "$BIN") first in PATH.${R}"
[ "$PORT_BASE" != 18000 ] && say "${Y}Ports are shifted by $((PORT_BASE - 18000)) from the configs in $EX (base $PORT_BASE).${R}"

step "Start wardd, the mesh's certificate authority (SVIDs live 30 s here, 1 h by default)"
cmdline "wardd --config $DD/wardd.yaml --data-dir $DD/wardd &"
spawn wardd wardd --config "$DEMO_DIR/wardd.yaml" --data-dir "$DEMO_DIR/wardd"
wait_for 10 grep -qs 'bound port' "$DEMO_DIR/logs/wardd.log" ||
    abort "wardd starts" "$(tail -5 "$DEMO_DIR/logs/wardd.log")"
grep -m1 'bound port' "$DEMO_DIR/logs/wardd.log"
say "${D}# the proxies pin wardd with its CA certificate; on one host, a copy is out of band enough${R}"
run "cat $DD/wardd/ca/*.pem > $DD/bundle.pem"

step "One-time join tokens: wardd binds each to the SPIFFE ID it will issue"
export WARD_ADMIN_SOCKET="$DEMO_DIR/wardd/admin.sock"
cmdline "export WARD_ADMIN_SOCKET=$DD/wardd/admin.sock    # wardd's admin API: a 0600 Unix socket"
for s in "${PROXIES[@]}"; do
    cmdline "wardctl identity token create --spiffe-id $(sid "$s") --ttl 10m > $DD/$s.token"
    (umask 077 && wardctl identity token create --spiffe-id "$(sid "$s")" --ttl 10m \
        >"$DEMO_DIR/$s.token" 2>"$DEMO_DIR/logs/token.err") ||
        abort "wardctl creates a join token for $s" "$(cat "$DEMO_DIR/logs/token.err")"
done

step "Six apps (plain HTTP on loopback: four services, a v2 build of checkout and of payments), a ward-proxy beside each, and the edge gateway"
for s in "${SERVICES[@]}"; do
    mapfile -t args < <(app_args "$s")
    cmdline "python3 $EX/app.py ${args[*]} &"
    spawn "app-$s" "$PY" -u "$EX/app.py" "${args[@]}"
done
for s in "${PROXIES[@]}"; do
    cmdline "ward-proxy --config $DD/$s.yaml &"
    spawn "$s" ward-proxy --config "$DEMO_DIR/$s.yaml"
done
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/ready")" = 200 ]; }
for s in "${PROXIES[@]}"; do
    wait_for 30 ready "${ADMIN[$s]}" ||
        abort "the $s proxy attests to wardd and is ready" "$(tail -5 "$DEMO_DIR/logs/$s.log")"
done
for s in "${SERVICES[@]}"; do
    wait_for 10 eval "curl -s -o /dev/null --max-time 2 http://127.0.0.1:${APP[$s]}/healthz" ||
        abort "the $s app starts" "$(tail -5 "$DEMO_DIR/logs/app-$s.log")"
done
for s in "${PROXIES[@]}"; do
    grep -m1 ': inbound [0-9]* (app' "$DEMO_DIR/logs/$s.log" | sed 's/^[^ ]* //'
    # an auditor's copy of the key that signs this trail's checkpoints (out of band)
    cp "$DEMO_DIR/audit/$s/checkpoint.pub" "$DEMO_DIR/keys/$s-audit.pub" 2>/dev/null
done
pass "wardd, ${#SERVICES[@]} apps and ${#PROXIES[@]} proxies are up ($(elapsed) s)"
cat <<EOF

   you ──curl──► gateway :$GW_OUT ══mTLS══► frontend ══mTLS══► checkout ══mTLS══► payments
                                             ║      ╲             ║  ╲═══mTLS═════► payments-v2 (canary)
                                             ║       ╲══mTLS══► checkout-v2 (canary)
                                             ║                    ╚═══════mTLS═════► inventory
                                             ╚════════════mTLS═══════════════════► inventory
EOF

# ---- the tour -----------------------------------------------------------------------------------

# shellcheck disable=SC2016 # wait_for ... eval '...': expanded when evaluated, each time
tour() {
    local code trace n s rec id i ok calls exp0 exp1 line n1 n2

    step "1. An allowed call across the mesh: gateway → frontend → checkout → payments (+ inventory)"
    say "The frontend app calls checkout through its sidecar, and checkout calls inventory and"
    say "payments through its own: three hops of mutual TLS. Each call is decided twice, with the"
    say "callee's policies: by the caller's proxy on the way out, by the callee's on the way in."
    run "curl -s -o $DD/order.json -w 'HTTP %{http_code}\n' -X POST -H 'Host: frontend' http://127.0.0.1:$GW_OUT/checkout -d '{\"cart\": \"c-42\"}'"
    expect "the order goes through the mesh: HTTP 200" "HTTP 200" "$OUT"
    run "python3 $EX/show.py < $DD/order.json"
    expect "checkout saw the frontend's verified identity" "$(sid frontend)" \
        "$(json "$DEMO_DIR/order.json" 'd["order"]["caller"]')"
    expect "payments saw checkout's verified identity and charged" "$(sid checkout) succeeded" \
        "$(json "$DEMO_DIR/order.json" 'd["order"]["charge"]["caller"] + " " + d["order"]["charge"]["status"]')"
    trace=$(json "$DEMO_DIR/order.json" 'd["trace_id"]')
    say "" "Every proxy on the way decided and recorded its part; the trace id links the records:"
    # the audit writer runs beside the workers: give it a moment to append the last record
    wait_for 5 eval '[ "$(cat "$DEMO_DIR"/audit/*/segment-*.jsonl | grep -c "\"trace_id\":\"$trace\"")" -ge 8 ]'
    run "for s in gateway frontend checkout payments inventory; do wardctl audit query $DD/audit/\$s --where trace_id=$trace; done | sort"
    n=$(printf '%s\n' "$OUT" | grep -c ' allow ')
    expect "8 allow records with trace id ${trace:0:8}... in 5 audit trails" 8 "$n"

    step "2. A denied call: a compromised checkout tries payments' admin endpoint"
    say "Anything on checkout's host can use its sidecar's outbound port, and so speak as checkout."
    say "The mesh-wide DENY in examples/policies/00-mesh-deny-admin.yaml keeps all but ops out:"
    run "curl -si -H 'Host: payments' http://127.0.0.1:$CK_OUT/admin/users"
    code=$(printf '%s\n' "$OUT" | head -1 | awk '{print $2}')
    expect "the admin call is refused with 403" 403 "$code"
    id=$(printf '%s\n' "$OUT" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-ward-decision-id" {print $2}')
    say "" "X-Ward-Decision-Id is the audit record's id; checkout's proxy decided (egress):"
    wait_for 5 eval '[ "$(wardctl audit query "$DEMO_DIR/audit/checkout" --where "id=$id" --count 2>/dev/null)" = 1 ]'
    run "wardctl audit query $DD/audit/checkout --where id=$id"
    expect_match "the deny record names the policy (mesh/deny-admin, rule 0)" \
        " deny outbound .*/admin/users 403 mesh/deny-admin#0 " "$OUT"
    run "grep -c /admin $DD/logs/app-payments.log"
    expect "the payments app never saw the request" 0 "$OUT"

    step "3. A dry-run policy: what shop/inventory-no-deletes would do, without doing it"
    say "examples/policies/dry-run.yaml DENYs deletes on inventory in mode: dry-run. The delete works,"
    run "curl -s -w 'HTTP %{http_code}\n' -X DELETE -H 'Host: inventory' http://127.0.0.1:$CK_OUT/v1/reservations/r-7"
    expect_match "the delete is allowed (the dry run is not enforced): HTTP 200" 'HTTP 200$' "$OUT"
    say "" "and the audit record says what the rule would have done:"
    wait_for 5 eval '[ "$(wardctl audit query "$DEMO_DIR/audit/inventory" --where request.method=DELETE --count 2>/dev/null)" = 1 ]'
    run "wardctl audit export $DD/audit/inventory --where request.method=DELETE | python3 $EX/show.py decision policy rule dry_run"
    expect_match "the record: allowed by shop/inventory-access, dry run deny by shop/inventory-no-deletes" \
        '"decision":"allow","policy":"shop/inventory-access",.*"dry_run":\{"decision":"deny","policy":"shop/inventory-no-deletes","rule":0\}' \
        "$OUT"

    step "4. A canary route: payments' v2 build gets 10% of the v2 reads, checkout's v2 the testers"
    say "examples/policies/routes.yaml is a Route: on the caller's side, the outbound proxy picks the"
    say "build. GET/HEAD on payments' /v2/* go 10% to payments-v2, 90% to payments; each build is its"
    say "own workload (app, ward-proxy, SPIFFE ID) and every answer says which one served it."
    say "200 reads of a charge from checkout, on one keep-alive connection (curl's [001-200] range):"
    run "curl -s -H 'Host: payments' 'http://127.0.0.1:$CK_OUT/v2/charges/ch_canary[001-200]' | python3 $EX/show.py version | sort | uniq -c"
    n1=$(printf '%s\n' "$OUT" | awk '/"version":"v1"/ {print $1}')
    n2=$(printf '%s\n' "$OUT" | awk '/"version":"v2"/ {print $1}')
    n1=${n1:-0} n2=${n2:-0}
    expect "all 200 reads answered, by one build or the other" 200 $((n1 + n2))
    # 200 draws at 10%: 20 expected, standard deviation 4.2; 5..40 fails about once in 10^4 runs
    if [ "$n2" -ge 5 ] && [ "$n2" -le 40 ]; then
        pass "payments-v2 served $n2 of 200 ($((n2 / 2)).$((n2 % 2 * 5))%, configured weight 10%; v1 $((n1 / 2)).$((n1 % 2 * 5))%, configured 90%)"
    else
        fail "payments-v2 served about 10% of the reads (5..40 of 200)" "it served $n2, v1 $n1"
    fi
    say "" "payments-v2's own audit trail holds those reads, each decided for checkout's identity:"
    wait_for 5 eval '[ "$(wardctl audit query "$DEMO_DIR/audit/payments-v2" --where request.method=GET --count 2>/dev/null)" = "$n2" ]'
    run "wardctl audit query $DD/audit/payments-v2 --where request.method=GET --count-by source.principal"
    expect_match "... $n2 allowed reads from checkout in payments-v2's trail" \
        "^ *$n2 +$(sid checkout)|$(sid checkout) +$n2\$" "$OUT"
    say "" "checkout's Route pins testers to checkout-v2: \"x-canary: 1\" (which the frontend passes on)."
    say "20 orders with it, through the gateway:"
    run "for i in \$(seq 20); do curl -s -X POST -H 'Host: frontend' -H 'x-canary: 1' http://127.0.0.1:$GW_OUT/checkout -d '{}'; done | python3 $EX/show.py order.version order.charge.version | sort | uniq -c"
    expect_match "every order with x-canary: 1 was placed by checkout v2 (which charged through payments v1)" \
        '^ *20 \{"order.version":"v2","order.charge.version":"v1"\}$' "$OUT"
    run "curl -s -X POST -H 'Host: frontend' -H 'x-canary: 0' http://127.0.0.1:$GW_OUT/checkout -d '{}' | python3 $EX/show.py order.version"
    expect "an order with x-canary: 0 stays on checkout v1" '{"order.version":"v1"}' "$OUT"

    step "5. SVID rotation in progress: the proxies renew at about half-life, traffic keeps flowing"
    s=payments
    exp0=$(metric "${ADMIN[$s]}" ward_svid_expiry_timestamp_seconds)
    run "curl -s http://127.0.0.1:${ADMIN[$s]}/metrics | grep '^ward_svid_expiry'"
    [ -n "$exp0" ] && say "${D}# payments' SVID expires in $((exp0 - $(date +%s))) s${R}"
    declare -A before
    for p in "${PROXIES[@]}"; do before[$p]=$(count 'identity: new SVID' "$DEMO_DIR/logs/$p.log"); done
    renewed_all() {
        local p
        for p in "${PROXIES[@]}"; do
            [ "$(count 'identity: new SVID' "$DEMO_DIR/logs/$p.log")" -gt "${before[$p]}" ] || return 1
        done
    }
    say "Orders go through the whole mesh (POST /checkout via the gateway) until every proxy has"
    printf 'renewed its SVID: '
    calls=0 ok=0
    for i in $(seq 200); do # 200 x ~0.25 s: at most ~50 s
        renewed_all && break
        code=$(http_code POST "http://127.0.0.1:$GW_OUT/checkout" frontend -d "{\"cart\": \"c-r$i\"}")
        calls=$((calls + 1))
        [ "$code" = 200 ] && ok=$((ok + 1))
        [ $((calls % 4)) = 0 ] && printf '.'
        sleep 0.2
    done
    printf ' %d orders, %d answered 200\n' "$calls" "$ok"
    if renewed_all; then
        pass "all ${#PROXIES[@]} proxies renewed their SVID (at $(elapsed) s)"
    else
        fail "all ${#PROXIES[@]} proxies renewed their SVID" "$(grep -h 'identity:' "$DEMO_DIR"/logs/*.log | tail -5)"
    fi
    expect "every order during the rotation answered 200" "$calls" "$ok"
    say "${D}# the latest five (each proxy also logs its first SVID, at start)${R}"
    run "grep -h 'identity: new SVID' $DD/logs/*.log | sort | tail -5"
    exp1=$(metric "${ADMIN[$s]}" ward_svid_expiry_timestamp_seconds)
    run "curl -s http://127.0.0.1:${ADMIN[$s]}/metrics | grep '^ward_svid_expiry'"
    if [ -n "$exp0" ] && [ -n "$exp1" ] && [ "$exp1" -gt "$exp0" ]; then
        pass "payments' ward_svid_expiry_timestamp_seconds moved forward by $((exp1 - exp0)) s"
    else
        fail "payments' ward_svid_expiry_timestamp_seconds moved forward" "before: $exp0, after: $exp1"
    fi
    code=$(http_code POST "http://127.0.0.1:$GW_OUT/checkout" frontend -d '{"cart": "c-43"}')
    expect "an order after the rotation goes through, on the new SVIDs: HTTP 200" 200 "$code"

    step "6. wardctl audit verify: the payments trail is intact"
    say "Each record carries the hash of the one before; checkpoints sign the chain's head with"
    say "Ed25519. An auditor checks them with the public key obtained out of band (copied at start):"
    run "wardctl audit verify $DD/audit/payments --key $DD/keys/payments-audit.pub"
    expect "verify exits 0" 0 "$RC"
    expect_match "... and says verified" '^verified: [0-9]+ records' "$OUT"

    step "7. Export to OCSF for a SIEM: the denied admin call as an API Activity event"
    run "wardctl audit export $DD/audit/checkout --format ocsf --where decision=deny -o $DD/denials.ocsf.jsonl"
    expect "export exits 0" 0 "$RC"
    run "head -1 $DD/denials.ocsf.jsonl | python3 $EX/show.py --pack"
    rec=$(head -1 "$DEMO_DIR/denials.ocsf.jsonl" 2>/dev/null)
    printf '%s\n' "$rec" >"$DEMO_DIR/ocsf1.json"
    expect "an OCSF API Activity event (class_uid 6003) denying by mesh/deny-admin" \
        "6003 Failure mesh/deny-admin /admin/users" \
        "$(json "$DEMO_DIR/ocsf1.json" '"%s %s %s %s" % (d["class_uid"], d["status"], d["authorizations"][0]["policy"]["name"], d["http_request"]["url"]["path"])')"

    step "8. Tampering: one byte changed in a copy of the trail, and verify names the record"
    mkdir -p "$DEMO_DIR/tampered"
    run "cp $DD/audit/payments/segment-*.jsonl $DD/audit/payments/checkpoints.jsonl $DD/tampered/"
    # the middle one of the records of successful charges (all of them, in this tour)
    line=$(grep -n '"status":200' "$DEMO_DIR"/tampered/segment-*.jsonl | grep '"path":"/v1/charges"' | cut -d: -f1 |
        awk '{l[NR] = $1} END {print l[int((NR + 1) / 2)]}')
    say "${D}# hide a successful charge: turn the 200 of record $line into a 500 (one byte)${R}"
    run "sed -i '${line}s/\"status\":200/\"status\":500/' $DD/tampered/segment-*.jsonl"
    run "wardctl audit verify $DD/tampered --key $DD/keys/payments-audit.pub"
    expect "verify of the tampered copy exits 1" 1 "$RC"
    expect_match "... and names the modified record (seq $line)" "^modified: .*segment-[0-9]+\.jsonl:$line: seq $line" "$OUT"
    run "wardctl audit verify $DD/audit/payments --key $DD/keys/payments-audit.pub --quiet && echo 'the original still verifies'"
    expect "the original trail still verifies" 0 "$RC"
}

where_next() {
    local s
    step "Where to look next"
    say "${D}# the commands below need Ward's binaries on PATH: export PATH=$BIN:\$PATH${R}"
    say "${B}Admin endpoints${R} (loopback; also /ready /config /policy /clusters):"
    for s in "${PROXIES[@]}"; do printf '  %-12s curl http://127.0.0.1:%s/metrics\n' "$s" "${ADMIN[$s]}"; done
    say "${B}Audit trails${R} (one per proxy; checkpoint keys copied to $DD/keys/):"
    say "  $DD/audit/<service>/"
    say "  wardctl audit query $DD/audit/checkout --where decision=deny"
    say "  wardctl audit export $DD/audit/payments --format csv"
    say "${B}Policies${R}: $DD/policies/ (a copy of examples/policies, tests in tests/);"
    say "  edit a file there and every proxy reloads it within a second (see $DD/logs/*.log)"
    say "  wardctl policy test -p $DD/policies"
    say "${B}Configs${R}: $EX/*.yaml (commented; copied to $DD/ with the ports in use)"
    say "${B}Logs${R}: $DD/logs/ (wardd, each proxy, each app: app-<service>.log)"
    say "${B}Try${R}:"
    say "  curl -H 'Host: frontend' http://127.0.0.1:$GW_OUT/products"
    say "  curl -X POST -H 'Host: frontend' -H 'x-tenant: globex' http://127.0.0.1:$GW_OUT/checkout   # 403: not on the new checkout flow"
    say "  curl -X POST -H 'Host: frontend' -H 'x-canary: 1' http://127.0.0.1:$GW_OUT/checkout      # placed by checkout v2 (the canary)"
    say "${B}The policy engine alone${R}: examples/policy-tour.sh"
}

if [ "$MODE" != up ]; then
    tour
    TOUR_S=$(elapsed)
    if [ "$MODE" = ci ]; then
        if [ "$TOUR_S" -lt 60 ]; then pass "the tour took $TOUR_S s (under 60 s)"; else fail "the tour took under 60 s" "it took $TOUR_S s"; fi
    fi
    printf '\n%sThe tour took %s s; %d of %d checks passed.%s\n' "$B" "$TOUR_S" $((CHECKS - FAILS)) "$CHECKS" "$R"
fi
if [ "$MODE" = ci ]; then
    exit $((FAILS > 0))
fi
where_next
printf '\n%sThe mesh keeps running (each proxy renews its SVID about every 10 s). Ctrl-C here, or make demo-stop from another terminal, stops it.%s\n' "$B" "$R"
while :; do
    for s in wardd "${PROXIES[@]}"; do
        pid=$(awk -v n="$s" '$3 == n {print $1; exit}' "$PIDFILE")
        st=$(awk -v n="$s" '$3 == n {print $2; exit}' "$PIDFILE")
        if [ "$(proc_start "$pid")" != "$st" ]; then
            printf '%s%s stopped unexpectedly; see %s/logs/%s.log%s\n' "$RED" "$s" "$DD" "$s" "$R"
            exit 1
        fi
    done
    sleep 1
done
