#!/usr/bin/env bash
# proxy_bench.sh - the mesh hop (wrk → outbound proxy → mTLS → inbound proxy with authz + log → app) for ward-proxy, nginx and HAProxy: requests/s, p50/p99, added latency, RSS
#
#   bench/proxy_bench.sh [--write-results]
#
# One topology, four legs, the same app and the same worker counts:
#   direct   wrk → app
#   ward     wrk → ward-proxy (outbound, plaintext) → mTLS → ward-proxy (inbound:
#            policy set, audit dir) → app
#   nginx    wrk → nginx (proxy_pass https, client cert, proxy_ssl_verify) → mTLS →
#            nginx (ssl_verify_client on, access_by_lua_block, access_log) → app
#   haproxy  wrk → haproxy (server ... ssl crt ... verify required) → mTLS →
#            haproxy (bind ... ssl verify required, Lua action, log) → app
# The app is Debian's nginx answering `return 200 "ok"` with keep-alive. The
# proxies' TLS is 1.3 with P-256 certificates made here by the openssl CLI
# (SPIFFE X509-SVIDs: one URI SAN spiffe://bench.test/ns/shop/sa/<name>).
# The inbound proxies authorize every request against the same generated rule
# set (BENCH_POLICIES AuthorizationPolicies for Ward; a Lua table with the same
# rules for nginx and HAProxy); the benchmark request is allowed by one of them.
#
# All legs are started (and checked: the benchmark request allowed, others
# denied) before any measurement; then, in BENCH_ROUNDS rounds where the legs
# take turns (so that outside load spreads over all of them; the median round
# is reported): the maximum throughput (wrk -t BENCH_THREADS -c BENCH_CONNS,
# closed loop), then fixed-rate runs (bench/fixed_rate.c: requests spaced
# 1/rate apart with µs timers, latency from each request's scheduled time;
# each after BENCH_WARMUP at its rate) at half of each leg's maximum, with the
# direct leg at the same rate for the added latency, and nginx and HAProxy also at half of
# Ward's maximum, for a comparison at equal load. Each run also counts the CPU
# time of the leg's proxies (/proc, user + system) per request. Then RSS idle
# and while BENCH_IDLE_CONNS idle connections are held.
#
# Environment: WARD_BIN (build/bin/ward-proxy), WARD_NOTE (how that binary
# was built, for RESULTS.md), BENCH_WORKERS (1: ward-proxy workers = nginx
# worker_processes = HAProxy nbthread), BENCH_APP_WORKERS (1),
# BENCH_THREADS (2), BENCH_CONNS (64), BENCH_DURATION (10s), BENCH_WARMUP (2s),
# BENCH_ROUNDS (3), BENCH_POLICIES (80), BENCH_IDLE_CONNS (10000), BENCH_LEGS
# ("ward nginx haproxy ward_tmpfs nginx_trail"; also ward_noaudit: the same two proxies built from
# WARD_NOAUDIT_BIN, build/bench-noaudit/bin/ward-proxy, whose request path
# leaves out the audit ring calls; bench/audit_store_bench.sh compares it.
# The two control legs run only at ½ Ward's max: ward_tmpfs, Ward with its
# trails in /dev/shm, and nginx_trail, nginx beside bench/trail_io, which
# gives it the disk writes of Ward's trail), BENCH_TRAIL_RECORD (nginx_trail's
# record bytes when there is no ward leg to measure: 1000), TRAIL_IO_BIN
# (build/bench/trail_io),
# BENCH_PHASES ("max fixed idle": maximum throughput, the fixed rates, the
# idle connections; "max" alone for a throughput comparison), BENCH_JSON (a
# file that gets every leg's maximum-throughput runs as JSON), BENCH_FLIP=1
# (the legs' order is reversed every other round), BENCH_KEEP=1
# keeps the temporary folder (debugging), FIXED_RATE_BIN
# (build/bench/fixed_rate, made by make bench or make build/bench/fixed_rate).
# --write-results replaces the proxy section of bench/RESULTS.md (between
# <!-- proxy-bench:start --> and <!-- proxy-bench:end -->).
# Exit status: 0 every leg ran, 2 a leg (ward-proxy included) could not be run,
# failed its checks, died, or a run had non-2xx answers or socket errors;
# 3 (with BENCH_STRICT=1) a target was missed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

WARD_BIN="${WARD_BIN:-build/bin/ward-proxy}"
WARD_NOAUDIT_BIN="${WARD_NOAUDIT_BIN:-build/bench-noaudit/bin/ward-proxy}"
FIXED_RATE_BIN="${FIXED_RATE_BIN:-build/bench/fixed_rate}"
TRAIL_IO_BIN="${TRAIL_IO_BIN:-build/bench/trail_io}"
TRAIL_RECORD="${BENCH_TRAIL_RECORD:-1000}"
PHASES="${BENCH_PHASES:-max fixed idle}"
WORKERS="${BENCH_WORKERS:-1}"
APP_WORKERS="${BENCH_APP_WORKERS:-1}"
THREADS="${BENCH_THREADS:-2}"
CONNS="${BENCH_CONNS:-64}"
DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-2s}"
NPOL="${BENCH_POLICIES:-80}"
IDLE="${BENCH_IDLE_CONNS:-10000}"
LEGS="${BENCH_LEGS:-ward nginx haproxy ward_tmpfs nginx_trail}"
ROUNDS="${BENCH_ROUNDS:-3}"
PY=/usr/bin/python3
WRITE_RESULTS=""
[ "${1:-}" = "--write-results" ] && WRITE_RESULTS="$ROOT/bench/RESULTS.md"
case "$WARD_BIN" in /*) ;; *) WARD_BIN="$ROOT/$WARD_BIN" ;; esac
case "$WARD_NOAUDIT_BIN" in /*) ;; *) WARD_NOAUDIT_BIN="$ROOT/$WARD_NOAUDIT_BIN" ;; esac
case "$FIXED_RATE_BIN" in /*) ;; *) FIXED_RATE_BIN="$ROOT/$FIXED_RATE_BIN" ;; esac
case "$TRAIL_IO_BIN" in /*) ;; *) TRAIL_IO_BIN="$ROOT/$TRAIL_IO_BIN" ;; esac
case "${BENCH_JSON:-}" in "" | /*) ;; *) BENCH_JSON="$ROOT/$BENCH_JSON" ;; esac
phase() { case " $PHASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# the control legs run at ½ Ward's max only
control_leg() { case "$1" in ward_tmpfs | nginx_trail) return 0 ;; *) return 1 ;; esac; }
NGINX_MODS=/usr/share/nginx/modules

die() {
    echo "proxy_bench.sh: $*" >&2
    exit 2
}
for t in wrk nginx curl openssl "$PY"; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found (make bench installs the peers: nginx libnginx-mod-http-lua haproxy wrk)"
done
case " $LEGS " in *" haproxy "*) command -v haproxy >/dev/null 2>&1 || die "haproxy not found (make bench installs it)" ;; esac
[ -f "$NGINX_MODS/ngx_http_lua_module.so" ] || die "$NGINX_MODS/ngx_http_lua_module.so not found (apt-get install libnginx-mod-http-lua)"
[ "$WRITE_RESULTS" = "" ] || [ -f "$WRITE_RESULTS" ] || die "$WRITE_RESULTS not found"
! phase fixed || [ -x "$FIXED_RATE_BIN" ] || die "$FIXED_RATE_BIN not found (make build/bench/fixed_rate)"

# The 10,000 idle connections need file descriptors in the holder and in each proxy.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=65536
[ "$NOFILE" -ge $((IDLE + 1000)) ] ||
    echo "proxy_bench.sh: warning: ulimit -n is $NOFILE, too low for $IDLE idle connections" >&2

T=$(mktemp -d "${TMPDIR:-/tmp}/ward-proxy-bench.XXXXXX")
SHM_DIR="" # the ward_tmpfs leg's trails
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    [ -z "$SHM_DIR" ] || rm -rf "$SHM_DIR"
    if [ "${BENCH_KEEP:-}" = 1 ]; then echo "proxy_bench.sh: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$T/pki" "$T/runs" "$T/legs" "$T/lua" "$T/policies"

# ---------------------------------------------------------------- helpers (Python)
cat >"$T/util.py" <<'EOF'
# util.py - proxy_bench.sh's helpers: free ports, the rule set, wrk output, idle connections, the report
import json, os, re, resource, socket, sys, time

def ports(n):
    socks = []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))

# The rule set, one source for both forms: Ward's AuthorizationPolicies (YAML)
# and the Lua table the nginx and HAProxy legs check. One mesh-wide DENY
# (admin paths for everyone outside ns ops) and n-1 ALLOW policies selecting
# the app, each with its own principal, method set and paths (exact + prefix);
# the benchmark's rule (client, GET /api/v1/items/*) sits in the middle.
METHODS = [["GET", "HEAD"], ["GET"], ["POST"], ["GET", "POST", "PUT"], ["DELETE"], ["GET", "PATCH"]]

def rules(n):
    n = max(2, int(n))
    allow = []
    for i in range(n - 1):
        if i == (n - 1) // 2:
            allow.append(("app-from-client", "spiffe://bench.test/ns/shop/sa/client", ["GET", "HEAD"],
                          "/api/v1/items"))
            continue
        allow.append(("app-from-svc%d" % i, "spiffe://bench.test/ns/team%d/sa/svc%d" % (i % 8, i),
                      METHODS[i % len(METHODS)], "/api/v%d/res%d" % (1 + i % 3, i)))
    return allow

def q(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

def gen(n, poldir, luafile):
    allow = rules(n)
    with open(os.path.join(poldir, "00-deny-admin.yaml"), "w") as f:
        f.write("apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-admin, namespace: mesh}\n"
                "spec:\n  action: DENY\n  rules:\n    - from: [{notNamespaces: [ops]}]\n"
                "      to: [{paths: [\"/admin\", \"/admin/*\"]}]\n")
    with open(os.path.join(poldir, "app.yaml"), "w") as f:
        for name, principal, methods, path in allow:
            f.write("---\napiVersion: ward/v1\nkind: AuthorizationPolicy\n"
                    "metadata: {name: %s, namespace: shop}\nspec:\n  selector: {services: [app]}\n"
                    "  action: ALLOW\n  rules:\n    - from: [{principals: [%s]}]\n"
                    "      to: [{methods: [%s], paths: [%s, %s]}]\n"
                    % (name, q(principal), ", ".join(methods), q(path), q(path + "/*")))
    with open(luafile, "w") as f:
        f.write("-- generated by proxy_bench.sh: the same rules as the Ward policy set\nreturn {\n")
        f.write("  deny = { { not_namespaces = { ops = true }, exact = { [\"/admin\"] = true }, prefixes = { \"/admin/\" } } },\n")
        f.write("  allow = {\n")
        for name, principal, methods, path in allow:
            f.write("    [%s] = { { methods = { %s }, exact = { [%s] = true }, prefixes = { %s } } },\n"
                    % (q(principal), ", ".join("%s = true" % m for m in methods), q(path), q(path + "/")))
        f.write("  },\n}\n")
    print("%d policies (1 DENY, %d ALLOW), %d rules" % (len(allow) + 1, len(allow), len(allow) + 1))

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}

def ms(v):
    m = re.match(r"([0-9.]+)(us|ms|s|m)$", v)
    return float(m.group(1)) * UNIT[m.group(2)]

def wrk(path, out, ticks="0", rate=""):
    """wrk --latency output -> JSON: rps, p50/p90/p99 ms, requests, errors, CPU ticks of the measured processes."""
    t = open(path).read()
    r = {"rps": None, "p50": None, "p90": None, "p99": None, "requests": 0, "non2xx": 0, "sockerr": 0,
         "cpu_ticks": int(ticks), "hz": os.sysconf("SC_CLK_TCK"), "rate": float(rate) if rate else None}
    m = re.search(r"Requests/sec:\s+([0-9.]+)", t)
    if m:
        r["rps"] = float(m.group(1))
    for p in ("50", "90", "99"):
        m = re.search(r"^\s+%s\.000%%\s+(\S+)" % p, t, re.M) or re.search(r"^\s+%s%%\s+(\S+)" % p, t, re.M)
        if m:
            r["p" + p] = ms(m.group(1))
    m = re.search(r"(\d+) requests in", t)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    if m:
        r["sockerr"] = sum(int(x) for x in m.groups())
    r["cpu_us"] = 1e6 * r["cpu_ticks"] / r["hz"] / r["requests"] if r["requests"] and r["cpu_ticks"] > 0 else None
    json.dump(r, open(out, "w"))
    ok = r["rps"] is not None and r["p99"] is not None
    print("%10s req/s  p50 %7s ms  p99 %7s ms%s%s%s" % (
        "%.0f" % r["rps"] if ok else "?", "%.3f" % r["p50"] if ok else "?", "%.3f" % r["p99"] if ok else "?",
        "  CPU %.0f us/req" % r["cpu_us"] if r["cpu_us"] else "",
        "  (%d non-2xx, %d socket errors)" % (r["non2xx"], r["sockerr"]) if r["non2xx"] or r["sockerr"] else "",
        "  (behind: target %.0f/s)" % r["rate"] if ok and r["rate"] and r["rps"] < 0.95 * r["rate"] else ""))
    return 0 if ok and not r["non2xx"] else 1

def hold(host, port, n, settle):
    """Open n TCP connections, wait, report how many the peer still holds, keep them until stdin closes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks, err = [], None
    for _ in range(int(n)):
        s = socket.socket()
        s.settimeout(10)
        try:
            s.connect((host, int(port)))
        except OSError as e:
            err = repr(e)
            s.close()
            break
        socks.append(s)
    time.sleep(float(settle))
    import select
    p = select.poll()
    for s in socks:
        p.register(s, select.POLLIN)
    closed = len(p.poll(0))  # readable while idle: the peer closed (EOF) or reset
    print(json.dumps({"opened": len(socks), "closed_by_peer": closed, "error": err}), flush=True)
    sys.stdin.read()

def median_run(d, config, key):
    """The run (of CONFIG.r1, CONFIG.r2, ...) whose KEY is the median (the lower one of two)."""
    runs = []
    for f in sorted(os.listdir(d)):
        if f.startswith(config + ".r") and f.endswith(".json"):
            r = json.load(open(os.path.join(d, f)))
            if r.get(key) is not None:
                runs.append(r)
    runs.sort(key=lambda r: r[key])
    return runs[(len(runs) - 1) // 2] if runs else None

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ports":
        ports(*args)
    elif cmd == "gen":
        gen(*args)
    elif cmd == "wrk":
        sys.exit(wrk(*args))
    elif cmd == "hold":
        hold(*args)
    elif cmd == "median":  # median DIR CONFIG KEY: KEY of the median run of CONFIG's rounds
        r = median_run(*args)
        print(r[args[2]] if r else 0)
EOF
U() { "$PY" "$T/util.py" "$@"; }

# ---------------------------------------------------------------- certificates
# A CA and two X509-SVIDs (EC P-256): "client" for the outbound proxies,
# "app" for the inbound proxies. The subject CN is the service name: nginx and
# HAProxy can only check a host name of their upstream (proxy_ssl_name,
# verifyhost); Ward checks the URI SAN.
cat >"$T/pki/ext.cnf" <<'EOF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
mkcerts() {
    local d="$T/pki" n
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key") 2>/dev/null
    openssl req -x509 -new -key "$d/ca.key" -subj "/O=Ward bench/CN=bench.test CA" -days 2 -sha256 \
        -config "$d/ext.cnf" -extensions ca -out "$d/ca.pem" 2>/dev/null
    for n in client app; do
        (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$n.key") 2>/dev/null
        openssl req -new -key "$d/$n.key" -subj "/CN=$n" -config "$d/ext.cnf" -out "$d/$n.csr" 2>/dev/null
        printf '%s\n' "basicConstraints = critical, CA:FALSE" "keyUsage = critical, digitalSignature" \
            "extendedKeyUsage = serverAuth, clientAuth" "subjectKeyIdentifier = hash" \
            "authorityKeyIdentifier = keyid" "subjectAltName = URI:spiffe://bench.test/ns/shop/sa/$n" >"$d/$n.ext"
        openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
            -days 1 -sha256 -extfile "$d/$n.ext" -out "$d/$n.pem" 2>/dev/null
        (umask 077 && cat "$d/$n.pem" "$d/$n.key" >"$d/$n.full.pem") # HAProxy's crt: certificate + key
        chmod 600 "$d/$n.key" "$d/$n.full.pem"
        openssl verify -CAfile "$d/ca.pem" "$d/$n.pem" >/dev/null || return 1
    done
}
mkcerts || die "certificates: openssl failed"

# ---------------------------------------------------------------- rules and the peers' Lua check
U gen "$NPOL" "$T/policies" "$T/lua/rules.lua" | sed 's/^/rule set: /'

# authz.lua: the nginx and HAProxy legs' authorization, the same code for both
# (LuaJIT in nginx, Lua 5.3 in HAProxy). The principal is the single URI SAN of
# the verified client certificate, parsed from its DER here (no shortcut through
# the subject DN), cached per worker by the certificate's fingerprint, as a
# proxy computes it once per connection. Then: DENY rules (not in namespace
# ops, admin paths) first; ALLOW rules are indexed by principal, each checked for
# method, exact path or path prefix.
cat >"$T/lua/authz.lua" <<'EOF'
local M = {}
local R = require("rules")
local byte, sub = string.byte, string.sub

-- One DER TLV at pos: tag, first content byte, last content byte.
local function tlv(s, pos)
    local tag, len = byte(s, pos, pos + 1)
    if not len then return nil end
    pos = pos + 2
    if len >= 128 then
        local n = len - 128
        if n < 1 or n > 3 then return nil end
        len = 0
        for i = 0, n - 1 do len = len * 256 + (byte(s, pos + i) or 0) end
        pos = pos + n
    end
    if pos + len - 1 > #s then return nil end
    return tag, pos, pos + len - 1
end

-- The certificate's URI SAN when it has exactly one (SPIFFE), else nil.
function M.principal_from_der(der)
    if not der then return nil end
    local tag, p, e = tlv(der, 1)                  -- Certificate
    if tag ~= 0x30 then return nil end
    tag, p, e = tlv(der, p)                        -- tbsCertificate
    if tag ~= 0x30 then return nil end
    local pos = p
    while pos <= e do
        local t, cp, ce = tlv(der, pos)
        if not t then return nil end
        if t == 0xA3 then                          -- [3] extensions
            local _, xp, xe = tlv(der, cp)         -- SEQUENCE OF Extension
            while xp and xp <= xe do
                local _, ep, ee = tlv(der, xp)     -- Extension
                if not ep then return nil end
                local ot, op, oe = tlv(der, ep)    -- extnID
                if ot == 0x06 and sub(der, op, oe) == "\85\29\17" then  -- 2.5.29.17 subjectAltName
                    local vt, vp, ve = tlv(der, oe + 1)
                    if vt == 0x01 then vt, vp, ve = tlv(der, ve + 1) end  -- critical
                    if vt ~= 0x04 then return nil end                  -- extnValue
                    local gt, gp, ge = tlv(der, vp)                    -- GeneralNames
                    if gt ~= 0x30 then return nil end
                    local uri, count = nil, 0
                    while gp and gp <= ge do
                        local nt, np, ne = tlv(der, gp)
                        if not nt then return nil end
                        if nt == 0x86 then uri, count = sub(der, np, ne), count + 1 end  -- [6] URI
                        gp = ne + 1
                    end
                    if count == 1 then return uri end
                    return nil
                end
                xp = ee + 1
            end
            return nil
        end
        pos = ce + 1
    end
    return nil
end

function M.pem_to_der(pem, decode_base64)
    if not pem then return nil end
    local b64 = pem:match("%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-(.-)%-%-%-%-%-END")
    return b64 and decode_base64((b64:gsub("%s", "")))
end

local cache, cached = {}, 0
function M.cached(key) return cache[key] end
function M.learn(key, principal)
    if cached >= 1024 then cache, cached = {}, 0 end
    cache[key] = principal or false
    cached = cached + 1
    return principal or false
end

local function path_in(rule, path)
    if rule.exact[path] then return true end
    for _, p in ipairs(rule.prefixes) do
        if sub(path, 1, #p) == p then return true end
    end
    return false
end

function M.allowed(principal, method, path)
    if not principal then return false end
    local ns = principal:match("^spiffe://[^/]+/ns/([^/]+)/")
    for _, r in ipairs(R.deny) do
        if not (ns and r.not_namespaces[ns]) and path_in(r, path) then return false end
    end
    local rs = R.allow[principal]
    if not rs then return false end
    for _, r in ipairs(rs) do
        if r.methods[method] and path_in(r, path) then return true end
    end
    return false
end

return M
EOF

cat >"$T/lua/haproxy_authz.lua" <<EOF
package.path = "$T/lua/?.lua;" .. package.path
local authz = require("authz")
core.register_action("ward_authz", { "http-req" }, function(txn)
    local fp = txn.f:ssl_c_sha1()
    local p = authz.cached(fp)
    if p == nil then p = authz.learn(fp, authz.principal_from_der(txn.f:ssl_c_der())) end
    txn:set_var("txn.allow", authz.allowed(p, txn.f:method(), txn.f:path()))
end)
EOF

# ---------------------------------------------------------------- processes
SELF_ROOT=""
[ "$(id -u)" = 0 ] && SELF_ROOT=1
read -r APP_PORT < <(U ports 1)

# start NAME CMD...: run in the background, output to $T/NAME.log, pid in PIDS and LAST_PID
declare -A PNAME # pid -> name
start() {
    local name="$1"
    shift
    "$@" >"$T/$name.log" 2>&1 &
    PIDS+=("$!")
    PNAME[$!]=$name
    LAST_PID=$!
}
# gone PID: why a process we started is no longer running (reaps it)
gone() {
    local st=0
    wait "$1" 2>/dev/null || st=$?
    if [ "$st" -gt 128 ] && [ "$st" -lt 160 ]; then
        echo "${PNAME[$1]:-pid $1} was killed by SIG$(kill -l $((st - 128)))"
    else
        echo "${PNAME[$1]:-pid $1} exited with status $st"
    fi
}
stop() { # stop PID: TERM, then KILL after 3 s
    local p="$1"
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
wait_port() { # wait_port PORT PID: until something listens, or the process died
    for _ in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
# rss_kb PID: VmRSS of the process and its children (nginx: master + workers)
rss_kb() {
    local p="$1" total=0 c
    total=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
        total=$((total + $(awk '/^VmRSS:/ {print $2}' "/proc/$c/status" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

nginx_common() { # nginx_common DIR WORKERS: the main context shared by every nginx here
    local d="$1"
    mkdir -p "$d/tmp"
    [ -n "$SELF_ROOT" ] && echo "user root;"
    cat <<EOF
worker_processes $2;
worker_rlimit_nofile $NOFILE;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections $((NOFILE - 100)); }
EOF
}
nginx_http_common() {
    cat <<EOF
    client_body_temp_path $1/tmp/body; proxy_temp_path $1/tmp/proxy; fastcgi_temp_path $1/tmp/fcgi;
    uwsgi_temp_path $1/tmp/uwsgi; scgi_temp_path $1/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
EOF
}

# The app: nginx answering 200 "ok", keep-alive, no log.
mkdir -p "$T/app"
{
    nginx_common "$T/app" "$APP_WORKERS"
    cat <<EOF
http {
$(nginx_http_common "$T/app")
    access_log off;
    server {
        listen 127.0.0.1:$APP_PORT backlog=4096;
        location / { default_type text/plain; return 200 "ok"; }
    }
}
EOF
} >"$T/app/nginx.conf"
start app nginx -p "$T/app" -e "$T/app/error.log" -c "$T/app/nginx.conf" -g "daemon off;"
PID_app=$LAST_PID
wait_port "$APP_PORT" "$PID_app" || die "app nginx did not start: $(tail -3 "$T/app.log" "$T/app/error.log" 2>/dev/null)"
[ "$(curl -s "http://127.0.0.1:$APP_PORT/")" = ok ] || die "app nginx does not answer ok"

# ---------------------------------------------------------------- the legs
# Each start_<leg> sets OUT_PORT (the outbound listener) and OUT_PID/IN_PID,
# or prints why it could not start and returns 1.

start_ward() { start_ward_bin ward "$WARD_BIN"; }
# ward_tmpfs: the same binary with both trails in memory (/dev/shm), a control
# leg: Ward's audit work without its writes to the disk
start_ward_tmpfs() {
    SHM_DIR=$(mktemp -d /dev/shm/ward-proxy-bench.XXXXXX)
    start_ward_bin ward_tmpfs "$WARD_BIN" "$SHM_DIR"
}
# ward_noaudit: the same with the bench-only binary whose request path leaves
# out the audit ring calls (make build/bench-noaudit/bin/ward-proxy)
start_ward_noaudit() { start_ward_bin ward_noaudit "$WARD_NOAUDIT_BIN"; }
start_ward_bin() { # start_ward_bin LEG BINARY [AUDIT_DIR]: the trails in AUDIT_DIR (default: the leg's folder)
    local name="$1" bin="$2" d="$T/$1" in_port out_admin in_admin out_in err
    local ad="${3:-$T/$1}"
    if [ ! -x "$bin" ]; then
        echo "not built ($bin does not exist; run make)"
        return 1
    fi
    mkdir -p "$d"
    read -r OUT_PORT in_port out_admin in_admin out_in < <(U ports 5)
    cat >"$d/inbound.yaml" <<EOF
service: app
identity: {cert_file: $T/pki/app.pem, key_file: $T/pki/app.key, bundle_file: $T/pki/ca.pem}
inbound: {listen: 127.0.0.1:$in_port, app: 127.0.0.1:$APP_PORT}
policy: {paths: [$T/policies], default: deny}
audit: {dir: $ad/audit-in}
admin: {listen: 127.0.0.1:$in_admin}
timeouts: {drain: 1s}
limits: {max_connections: $((IDLE + 1000))}
workers: $WORKERS
EOF
    # The client side: its own inbound (unused here) and the outbound listener;
    # no policy paths and default allow: no egress restriction for this workload.
    cat >"$d/outbound.yaml" <<EOF
service: client
identity: {cert_file: $T/pki/client.pem, key_file: $T/pki/client.key, bundle_file: $T/pki/ca.pem}
inbound: {listen: 127.0.0.1:$out_in, app: 127.0.0.1:$APP_PORT}
outbound: {listen: 127.0.0.1:$OUT_PORT}
upstreams:
  - {service: app, endpoints: [127.0.0.1:$in_port], spiffe_id: "spiffe://bench.test/ns/shop/sa/app"}
policy: {default: allow}
audit: {dir: $ad/audit-out}
admin: {listen: 127.0.0.1:$out_admin}
timeouts: {drain: 1s}
limits: {max_connections: $((IDLE + 1000))}
workers: $WORKERS
EOF
    for c in inbound outbound; do
        local st=0
        err=$("$bin" --config "$d/$c.yaml" --check 2>&1) || st=$?
        if [ "$st" -ne 0 ]; then
            echo "failed: --check of the $c config (exit $st): $(echo "$err" | head -5 | tr '\n' ' ')"
            return 1
        fi
    done
    start "$name-in" "$bin" --config "$d/inbound.yaml"
    IN_PID=$LAST_PID
    start "$name-out" "$bin" --config "$d/outbound.yaml"
    OUT_PID=$LAST_PID
    LOGS="$ad/audit-in"
    local c port pid
    for c in "in $in_admin $IN_PID" "out $out_admin $OUT_PID"; do
        read -r c port pid <<<"$c"
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready")" = 200 ] && break
            sleep 0.05
        done
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "failed: the ${c}bound proxy exited: $(tail -5 "$T/$name-${c}.log" | tr '\n' ' ')"
            return 1
        fi
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/ready")" != 200 ]; then
            echo "failed: the ${c}bound proxy's admin /ready is not 200 after 5 s: $(tail -5 "$T/$name-${c}.log" | tr '\n' ' ')"
            return 1
        fi
    done
    wait_port "$OUT_PORT" "$OUT_PID" || { echo "failed: nothing listens on the outbound port"; return 1; }
}

start_nginx() { start_nginx_leg nginx; }
# nginx_trail: nginx as above, and beside it bench/trail_io, which appends a
# record of the size of Ward's to a file for every line either nginx logs and
# syncs the files every 100 ms, as Ward's trail does: a control leg, nginx
# with the disk writes of Ward's audit trail
start_nginx_trail() {
    start_nginx_leg nginx_trail || return 1
    [ -x "$TRAIL_IO_BIN" ] || { echo "not built ($TRAIL_IO_BIN does not exist; make build/bench/trail_io)"; return 1; }
    local d="$T/nginx_trail"
    start nginx_trail-io "$TRAIL_IO_BIN" -b "$(trail_record_bytes)" "$d/in/access.log:$d/in/trail" "$d/out/access.log:$d/out/trail"
    X_PID=$LAST_PID
    sleep 0.2
    kill -0 "$X_PID" 2>/dev/null || { echo "failed: trail_io: $(tail -3 "$T/nginx_trail-io.log" | tr '\n' ' ')"; return 1; }
}
# trail_record_bytes: the mean size of the records in the ward leg's trail (its
# checks wrote some), or BENCH_TRAIL_RECORD
trail_record_bytes() {
    local b
    b=$(cat "$T"/ward/audit-in/segment-*.jsonl 2>/dev/null | awk '{ n += length($0) + 1 } END { if (NR) printf "%d", n / NR }')
    echo "${b:-$TRAIL_RECORD}"
}
start_nginx_leg() { # start_nginx_leg LEG
    local name="$1" d="$T/$1" in_port
    mkdir -p "$d/in" "$d/out"
    read -r OUT_PORT in_port < <(U ports 2)
    {
        echo "load_module $NGINX_MODS/ndk_http_module.so;"
        echo "load_module $NGINX_MODS/ngx_http_lua_module.so;"
        nginx_common "$d/in" "$WORKERS"
        cat <<EOF
http {
$(nginx_http_common "$d/in")
    access_log $d/in/access.log;
    lua_package_path "$T/lua/?.lua;;";
    init_by_lua_block { authz = require("authz") }
    upstream app { server 127.0.0.1:$APP_PORT; keepalive 64; keepalive_requests 1000000; keepalive_timeout 60s; }
    server {
        listen 127.0.0.1:$in_port ssl backlog=4096;
        ssl_protocols TLSv1.3;
        ssl_certificate $T/pki/app.pem;
        ssl_certificate_key $T/pki/app.key;
        ssl_client_certificate $T/pki/ca.pem;
        ssl_verify_client on;
        ssl_verify_depth 1;
        location / {
            access_by_lua_block {
                local fp = ngx.var.ssl_client_fingerprint
                local p = authz.cached(fp)
                if p == nil then
                    p = authz.learn(fp, authz.principal_from_der(authz.pem_to_der(ngx.var.ssl_client_raw_cert, ngx.decode_base64)))
                end
                if not authz.allowed(p, ngx.req.get_method(), ngx.var.uri) then return ngx.exit(403) end
            }
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
EOF
    } >"$d/in/nginx.conf"
    {
        nginx_common "$d/out" "$WORKERS"
        cat <<EOF
http {
$(nginx_http_common "$d/out")
    access_log $d/out/access.log;
    upstream inbound { server 127.0.0.1:$in_port; keepalive 64; keepalive_requests 1000000; keepalive_timeout 60s; }
    server {
        listen 127.0.0.1:$OUT_PORT backlog=4096;
        location / {
            proxy_pass https://inbound;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_certificate $T/pki/client.pem;
            proxy_ssl_certificate_key $T/pki/client.key;
            proxy_ssl_trusted_certificate $T/pki/ca.pem;
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 1;
            proxy_ssl_name app;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF
    } >"$d/out/nginx.conf"
    local s
    for s in in out; do
        if ! nginx -t -p "$d/$s" -e "$d/$s/error.log" -c "$d/$s/nginx.conf" >"$d/$s/check.log" 2>&1; then
            echo "failed: nginx -t ($s): $(tail -3 "$d/$s/check.log" | tr '\n' ' ')"
            return 1
        fi
    done
    start "$name-in" nginx -p "$d/in" -e "$d/in/error.log" -c "$d/in/nginx.conf" -g "daemon off;"
    IN_PID=$LAST_PID
    start "$name-out" nginx -p "$d/out" -e "$d/out/error.log" -c "$d/out/nginx.conf" -g "daemon off;"
    OUT_PID=$LAST_PID
    LOGS="$d/in/access.log"
    wait_port "$in_port" "$IN_PID" || { echo "failed: inbound nginx: $(tail -3 "$d/in/error.log" | tr '\n' ' ')"; return 1; }
    wait_port "$OUT_PORT" "$OUT_PID" || { echo "failed: outbound nginx: $(tail -3 "$d/out/error.log" | tr '\n' ' ')"; return 1; }
}

start_haproxy() {
    # HAProxy counts two file descriptors per connection: its maxconn is capped by
    # the descriptor limit (the idle-connection figure says how many it accepted)
    local d="$T/haproxy" in_port maxconn=$((IDLE + 1000))
    [ "$maxconn" -le $(((NOFILE - 100) / 2)) ] || maxconn=$(((NOFILE - 100) / 2))
    mkdir -p "$d"
    read -r OUT_PORT in_port < <(U ports 2)
    # Logging: "log stdout" (format raw, HTTP log lines) with each haproxy's
    # stdout sent to a file in the temporary folder: a local file as for nginx.
    local common="global
    nbthread $WORKERS
    maxconn $maxconn
    log stdout format raw local0 info
defaults
    mode http
    log global
    option httplog
    option http-keep-alive
    maxconn $maxconn
    timeout connect 5s
    timeout client 60s
    timeout server 30s
    timeout http-request 60s
    timeout http-keep-alive 60s"
    cat >"$d/in.cfg" <<EOF
$common
global
    expose-experimental-directives
    lua-load-per-thread $T/lua/haproxy_authz.lua
frontend in
    bind 127.0.0.1:$in_port ssl crt $T/pki/app.full.pem ca-file $T/pki/ca.pem verify required ssl-min-ver TLSv1.3
    http-request normalize-uri path-merge-slashes
    http-request normalize-uri path-strip-dotdot
    http-request normalize-uri percent-decode-unreserved
    http-request lua.ward_authz
    http-request deny deny_status 403 unless { var(txn.allow) -m bool }
    option forwardfor
    default_backend app
backend app
    http-reuse always
    server app 127.0.0.1:$APP_PORT
EOF
    cat >"$d/out.cfg" <<EOF
$common
frontend out
    bind 127.0.0.1:$OUT_PORT
    option forwardfor
    default_backend inbound
backend inbound
    http-reuse always
    server in 127.0.0.1:$in_port ssl crt $T/pki/client.full.pem ca-file $T/pki/ca.pem verify required verifyhost app ssl-min-ver TLSv1.3
EOF
    local s
    for s in in out; do
        if ! haproxy -c -q -f "$d/$s.cfg" >"$d/$s.check" 2>&1; then
            echo "failed: haproxy -c ($s): $(tail -3 "$d/$s.check" | tr '\n' ' ')"
            return 1
        fi
    done
    start haproxy-in haproxy -db -f "$d/in.cfg"
    IN_PID=$LAST_PID
    start haproxy-out haproxy -db -f "$d/out.cfg"
    OUT_PID=$LAST_PID
    LOGS="$T/haproxy-in.log"
    wait_port "$in_port" "$IN_PID" || { echo "failed: inbound haproxy: $(tail -3 "$T/haproxy-in.log" | tr '\n' ' ')"; return 1; }
    wait_port "$OUT_PORT" "$OUT_PID" || { echo "failed: outbound haproxy: $(tail -3 "$T/haproxy-out.log" | tr '\n' ' ')"; return 1; }
}

# verify URL: the benchmark request is allowed (200 "ok"), an unlisted path and
# an admin path are denied (403): the authorization is really on the path.
REQ_PATH=/api/v1/items/42
verify() {
    local base="$1" got code p
    got=$(curl -s -m 5 -H "Host: app" -w ' %{http_code}' "$base$REQ_PATH" || true)
    if [ "$got" != "ok 200" ]; then
        echo "failed: the benchmark request GET $REQ_PATH is not allowed: got '${got:0:200}' (want 'ok 200')"
        return 1
    fi
    for p in /api/v1/other /admin/x /api/v2/res1/x; do
        code=$(curl -s -m 5 -o /dev/null -H "Host: app" -w '%{http_code}' "$base$p" || true)
        if [ "$code" != 403 ]; then
            echo "failed: GET $p should be denied (403), got $code"
            return 1
        fi
    done
}

# ---------------------------------------------------------------- wrk runs

# run NAME URL [RATE]: one wrk run (with RATE: one fixed_rate run), parsed into $T/runs/NAME.json; non-zero on failure
run() {
    local name="$1" url="$2" rate="${3:-}"
    local client=(wrk -t "$THREADS" -c "$CONNS" -d "$DURATION" --latency -H "Host: app" "$url")
    [ -z "$rate" ] || client=("$FIXED_RATE_BIN" -r "$rate" -c "$CONNS" -d "$(seconds "$DURATION")" -H "Host: app" "$url")
    printf '  %-34s' "$name"
    local t0 t1
    # Each run starts with no dirty pages: nginx's and HAProxy's logs are left
    # to the kernel's writeback, 30 s later, inside whichever run is measured
    # then (Ward's trail syncs its own as it goes).
    sync
    t0=$(cpu_ticks $RUN_PIDS)
    "${client[@]}" >"$T/runs/$name.txt" 2>&1 || true
    t1=$(cpu_ticks $RUN_PIDS)
    U wrk "$T/runs/$name.txt" "$T/runs/$name.json" "$((t1 - t0))" "$rate"
}
# seconds DURATION: wrk's 10s or 2m as fixed_rate's seconds
seconds() {
    case "$1" in *m) echo $((${1%m} * 60)) ;; *s) echo "${1%s}" ;; *) echo "$1" ;; esac
}
# cpu_ticks PID...: user + system clock ticks of the processes and their children (nginx workers)
cpu_ticks() {
    local p c t=0 v
    for p in "$@"; do
        for c in "$p" $(cat /proc/"$p"/task/*/children 2>/dev/null); do
            v=$(sed 's/^.*) //' "/proc/$c/stat" 2>/dev/null | awk '{print $12 + $13}')
            t=$((t + ${v:-0}))
        done
    done
    echo "$t"
}
# check_alive LEG WHAT: after a run, the leg's processes and the app must still run;
# a leg that lost one is dropped from the remaining runs, a lost app ends the benchmark
declare -A DEAD
check_alive() {
    local p why
    for p in $(pids_of "$1"); do
        kill -0 "$p" 2>/dev/null && continue
        why="$(gone "$p") during $2"
        [ "$p" = "$PID_app" ] && die "the app: $why (was it killed from outside, by pkill/killall nginx?)"
        echo "$why" >>"$T/legs/$1.missing"
        echo "proxy_bench.sh: $1: $why" >&2
        DEAD[$1]=1
        FAIL=1
    done
    kill -0 "$PID_app" 2>/dev/null || die "the app: $(gone "$PID_app") during $2 (was it killed from outside?)"
}
url_of() { # url_of LEG
    if [ "$1" = direct ]; then echo "http://127.0.0.1:$APP_PORT$REQ_PATH"; else echo "http://127.0.0.1:${OUTP[$1]}$REQ_PATH"; fi
}
pids_of() { # pids_of LEG: the processes whose CPU time a run of LEG counts (direct: the app)
    if [ "$1" = direct ]; then echo "$PID_app"; else echo "${OUTPID[$1]} ${INPID[$1]} ${XPID[$1]:-}"; fi
}

# idle_rss LEG: hold IDLE connections to the leg's outbound listener; RSS of both proxies meanwhile
idle_rss() {
    local leg="$1" fifo="$T/hold.in" hp line
    mkfifo "$fifo"
    "$PY" "$T/util.py" hold 127.0.0.1 "${OUTP[$leg]}" "$IDLE" 2 <"$fifo" >"$T/hold.out" 2>&1 &
    hp=$!
    PIDS+=("$hp")
    exec 7>"$fifo" # the holder keeps its connections until this closes
    for _ in $(seq 1 600); do
        line=$(head -1 "$T/hold.out" 2>/dev/null || true)
        [ -n "$line" ] && break
        kill -0 "$hp" 2>/dev/null || break
        sleep 0.1
    done
    # accepted: established sockets of the listener that a process owns (not
    # those still waiting in the accept queue)
    echo "{\"out_idle_conns_kb\": $(rss_kb "${OUTPID[$leg]}"), \"in_idle_conns_kb\": $(rss_kb "${INPID[$leg]}")," \
        "\"accepted\": $(ss -Htnp state established "( sport = :${OUTP[$leg]} )" | grep -c 'users:'), \"hold\": ${line:-null}}" \
        >"$T/legs/$leg.idle.json"
    exec 7>&-
    wait "$hp" 2>/dev/null || true
    rm -f "$fifo"
    echo "  $leg: $(cat "$T/legs/$leg.idle.json")"
}

# leg_missing LEG: record why a leg has no numbers (the report prints it)
leg_missing() {
    local why name="$1"
    why=$(tr '\n' ' ' <"$T/legs/$1.reason")
    [ "$1" = ward ] && name=ward-proxy
    echo "$name: ${why:-failed}" | tee "$T/legs/$1.missing" >&2
    FAIL=1
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
echo "proxy_bench: $(date -u +%FT%TZ), $(nproc) cores, load average $LOAD_START; workers $WORKERS" \
    "per proxy, app workers $APP_WORKERS, wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS round(s), $NPOL policies," \
    "$IDLE idle connections"
awk -v l="${LOAD_START%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }' &&
    echo "proxy_bench: warning: the machine is busy (load average $LOAD_START on $(nproc) cores): expect noisy figures" >&2
FAIL=0
declare -A OUTP OUTPID INPID XPID LOGP
UP=() # the legs that started and passed the checks
echo
echo "== starting the legs (wrk → outbound → mTLS → inbound with authz + log → app)"
for leg in $LEGS; do
    OUT_PID="" IN_PID="" X_PID="" LOGS="" OUT_PORT=""
    if ! "start_$leg" >"$T/legs/$leg.reason" 2>&1 ||
        ! verify "http://127.0.0.1:$OUT_PORT" >"$T/legs/$leg.reason" 2>&1; then
        leg_missing "$leg"
        for p in $OUT_PID $IN_PID $X_PID; do stop "$p"; done
        continue
    fi
    echo "  $leg: GET $REQ_PATH allowed (200 ok); /api/v1/other, /admin/x, /api/v2/res1/x denied (403)"
    OUTP[$leg]=$OUT_PORT OUTPID[$leg]=$OUT_PID INPID[$leg]=$IN_PID XPID[$leg]=$X_PID LOGP[$leg]=$LOGS
    UP+=("$leg")
done
sleep 1
for leg in "${UP[@]}"; do
    echo "{\"out_idle_kb\": $(rss_kb "${OUTPID[$leg]}"), \"in_idle_kb\": $(rss_kb "${INPID[$leg]}")}" >"$T/legs/$leg.rss.json"
done
for leg in direct "${UP[@]}"; do
    RUN_PIDS="" DURATION="$WARMUP" run "$leg-warmup" "$(url_of "$leg")" >/dev/null || true
done

# The legs take turns in every round, so that outside load spreads over all of them.
echo
echo "== maximum throughput"
for r in $(seq 1 "$ROUNDS"); do
    ORDER=(direct "${UP[@]}")
    # BENCH_FLIP=1: every other round the other way round (a leg is not always first after another)
    if [ "${BENCH_FLIP:-0}" = 1 ] && [ $((r % 2)) = 0 ]; then
        ORDER=()
        for leg in direct "${UP[@]}"; do ORDER=("$leg" "${ORDER[@]}"); done
    fi
    for leg in "${ORDER[@]}"; do
        [ -z "${DEAD[$leg]:-}" ] || continue
        ! control_leg "$leg" || continue
        RUN_PIDS=$(pids_of "$leg") run "$leg-max.r$r" "$(url_of "$leg")" || FAIL=1
        check_alive "$leg" "$leg-max.r$r"
    done
done

if phase fixed; then
    declare -A HALF
    for leg in "${UP[@]}"; do
        ! control_leg "$leg" || continue
        HALF[$leg]=$(($(U median "$T/runs" "$leg-max" rps | awk '{printf "%d", $1 + 0}') / 2))
        echo "${HALF[$leg]}" >"$T/legs/$leg.half"
    done
    CONFIGS=() # "NAME LEG RATE"
    if [ -n "${HALF[ward]:-}" ] && [ "${HALF[ward]}" -gt 0 ]; then
        for leg in "${UP[@]}" direct; do CONFIGS+=("$leg-at-ward-half $leg ${HALF[ward]}"); done
    fi
    for leg in "${UP[@]}"; do
        # the peers also at half of their own maximum
        [ "$leg" != ward ] && ! control_leg "$leg" && [ "${HALF[$leg]}" -gt 0 ] &&
            CONFIGS+=("$leg-at-$leg-half $leg ${HALF[$leg]}" "direct-at-$leg-half direct ${HALF[$leg]}")
    done
    echo
    echo "== fixed rates (half of a leg's median maximum)"
    for r in $(seq 1 "$ROUNDS"); do
        for c in "${CONFIGS[@]}"; do
            read -r name leg rate <<<"$c"
            [ -z "${DEAD[$leg]:-}" ] || continue
            # not measured: the leg's connection pools open again after the
            # other legs' turns (Ward closes idle upstream connections after
            # 30 s, nginx after 60 s), so the run sees the leg at that rate
            RUN_PIDS="" DURATION="$WARMUP" run "warmup-$name.r$r" "$(url_of "$leg")" "$rate" >/dev/null || true
            RUN_PIDS=$(pids_of "$leg") run "$name.r$r" "$(url_of "$leg")" "$rate" || FAIL=1
            check_alive "$leg" "$name.r$r"
        done
    done
fi

echo
phase idle && echo "== logs, liveness, $IDLE idle connections" || echo "== logs, liveness"
for leg in "${UP[@]}"; do
    [ -z "${DEAD[$leg]:-}" ] || continue
    bytes=$(find "${LOGP[$leg]}" -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }')
    echo "  $leg: inbound log/audit $bytes bytes"
    echo "$bytes" >"$T/legs/$leg.logbytes"
    [ "$bytes" -gt 0 ] || { echo "$leg: the inbound proxy wrote no log" >&2; FAIL=1; }
    phase idle || continue
    ! control_leg "$leg" || continue
    idle_rss "$leg"
    check_alive "$leg" "the idle connections"
done
for leg in "${UP[@]}"; do
    stop "${OUTPID[$leg]}"
    stop "${INPID[$leg]}"
    [ -z "${XPID[$leg]:-}" ] || { stop "${XPID[$leg]}"; echo "  $leg: $(tail -1 "$T/$leg-io.log")"; }
done

# ---------------------------------------------------------------- report
REPORT_RC=0
export THREADS CONNS DURATION WORKERS APP_WORKERS NPOL ROUNDS LOAD_START NOFILE WARD_BIN BENCH_JSON
"$PY" - "$T" "${WRITE_RESULTS:-}" "$LEGS" "$IDLE" <<'EOF' || REPORT_RC=$?
import datetime, json, os, platform, re, subprocess, sys
T, md, legs, idle = sys.argv[1], sys.argv[2], sys.argv[3].split(), int(sys.argv[4])
sys.path.insert(0, T)
from util import median_run
E = os.environ
RUNS = os.path.join(T, "runs")

def leg_file(leg, ext):
    p = os.path.join(T, "legs", leg + ext)
    return open(p).read().strip() if os.path.exists(p) else None

def missing(leg):
    return leg_file(leg, ".missing")

def round_values(config, key):
    """{round number: value} of a configuration's runs."""
    vals = {}
    for f in os.listdir(RUNS):
        if f.startswith(config + ".r") and f.endswith(".json") and f[len(config) + 2:-5].isdigit():
            vals[int(f[len(config) + 2:-5])] = json.load(open(os.path.join(RUNS, f))).get(key)
    return vals

def rounds(config, key):
    vals = round_values(config, key)
    return ", ".join("n/a" if v is None else (format(round(v), ",") if key == "rps" else "%.2f" % v)
                     for _, v in sorted(vals.items()))

f0 = lambda v: "n/a" if v is None else format(round(v), ",")
f2 = lambda v: "n/a" if v is None else "%.2f" % v
mb = lambda kb: None if kb is None else kb * 1024 / 1e6
def errs(r):
    e = " (%d non-2xx, %d socket errors)" % (r["non2xx"], r["sockerr"]) if r and (r["non2xx"] or r["sockerr"]) else ""
    if r and r.get("rate") and r["rps"] < 0.95 * r["rate"]:
        e += " (fell behind)"
    return e

# Maximum throughput: the median round by requests/s.
# Control legs: what the audit trail's disk writes cost, with and without Ward; run at ½ Ward's max only.
CONTROL = {"ward_tmpfs": ("ward", "Ward with both trails in memory (/dev/shm): its audit work without the disk writes"),
           "nginx_trail": ("nginx", "nginx, and beside it `bench/trail_io` appending a record of the size of Ward's (the "
                           "mean of the ward leg's trail) for every line either nginx logs, synced every 100 ms as Ward's "
                           "trail is: nginx with the disk writes of Ward's trail")}
mx = {leg: median_run(RUNS, leg + "-max", "rps") for leg in ["direct"] + legs if leg not in CONTROL}
t1 = ["| leg | requests/s | p50 ms | p99 ms | CPU µs per request | requests/s of each round |", "|---|---|---|---|---|---|"]
for leg in mx:
    r = mx[leg]
    if r is None:
        t1.append("| %s | missing: %s | | | | |" % (leg, missing(leg) or "not run"))
    else:
        t1.append("| %s | %s%s | %s | %s | %s | %s |" % (leg, f0(r["rps"]), errs(r), f2(r["p50"]), f2(r["p99"]),
                  f0(r.get("cpu_us")), rounds(leg + "-max", "rps")))

# Fixed rates: the median round by p99.
rate = lambda leg: int(leg_file(leg, ".half") or 0) or None
at = lambda leg, base: median_run(RUNS, "%s-at-%s-half" % (leg, base), "p99")
t2 = ["| leg | rate/s | achieved/s | p50 ms | p99 ms | direct p99 ms, same rate | added p99 ms | p99 of each round |",
      "|---|---|---|---|---|---|---|---|"]
added = {}
def row(leg, base, label):
    r, d = at(leg, base), at("direct", base)
    a = r["p99"] - d["p99"] if r and d else None
    t2.append("| %s | %s | %s%s | %s | %s | %s | %s | %s |" % (label, f0(rate(base)), f0(r and r["rps"]), errs(r),
              f2(r and r["p50"]), f2(r and r["p99"]), f2(d and d["p99"]), f2(a), rounds("%s-at-%s-half" % (leg, base), "p99")))
    return a
if at("ward", "ward"):
    added["ward"] = row("ward", "ward", "ward at ½ Ward's max")
    for peer in ("nginx", "haproxy"):
        if at(peer, "ward"):
            row(peer, "ward", "%s at ½ Ward's max" % peer)
elif "ward" in legs:
    t2.append("| ward | missing: %s | | | | | | |" % (missing("ward") or "not run"))
for peer in ("nginx", "haproxy"):
    if at(peer, peer):
        added[peer] = row(peer, peer, "%s at ½ its max" % peer)

t6 = []
for leg, (base, what) in CONTROL.items():
    c, b = at(leg, "ward"), at(base, "ward")
    if leg not in legs:
        continue
    if not c:
        t6.append("- %s (%s): missing: %s" % (leg, what, missing(leg) or "not run"))
        continue
    row(leg, "ward", "%s at ½ Ward's max (control)" % leg)
    line = "- %s (%s): p99 %s ms (rounds %s)" % (leg, what, f2(c["p99"]), rounds("%s-at-ward-half" % leg, "p99"))
    if b:
        line += " against %s's %s ms (rounds %s)" % (base, f2(b["p99"]), rounds("%s-at-ward-half" % base, "p99"))
    t6.append(line)
if t6:
    t6.insert(0, "Control legs, not judged by the targets (the same fixed rate, ½ Ward's max, in the same rounds):")

ratios = []
for peer in ("nginx", "haproxy"):
    if peer not in legs:
        continue
    w, p, wa, pa = mx.get("ward"), mx.get(peer), at("ward", "ward"), at(peer, "ward")
    if not w or not p:
        ratios.append("- ward/%s: n/a (%s missing)" % (peer, "ward-proxy" if not w else peer))
        continue
    s = "- ward/%s: throughput %.2f×" % (peer, w["rps"] / p["rps"])
    if w.get("cpu_us") and p.get("cpu_us"):
        s += ", CPU per request %.2f×" % (w["cpu_us"] / p["cpu_us"])
    if wa and pa:
        s += ", p99 at ½ Ward's max %.2f× (%.2f vs %.2f ms)" % (wa["p99"] / pa["p99"], wa["p99"], pa["p99"])
    ratios.append(s + "; p99 at maximum throughput %.2f×" % (w["p99"] / p["p99"]))

# Memory.
t3 = ["| leg | outbound idle MB | inbound idle MB | outbound, %s idle connections, MB | inbound meanwhile MB | connections accepted and held |" % format(idle, ","),
      "|---|---|---|---|---|---|"]
rss = {}
for leg in (l for l in legs if l not in CONTROL):
    a = json.loads(leg_file(leg, ".rss.json") or "null")
    b = json.loads(leg_file(leg, ".idle.json") or "null") or {}
    rss[leg] = (a, b)
    if not a:
        t3.append("| %s | missing | | | | |" % leg)
        continue
    h = b.get("hold") or {}
    held = min(h.get("opened", 0) - h.get("closed_by_peer", 0), b.get("accepted", 0))
    b["held"] = held
    t3.append("| %s | %.1f | %.1f | %s | %s | %s of %s%s |" % (leg, mb(a["out_idle_kb"]), mb(a["in_idle_kb"]),
              f2(mb(b.get("out_idle_conns_kb"))), f2(mb(b.get("in_idle_conns_kb"))), format(held, ","), format(idle, ","),
              ", error: %s" % h["error"] if h.get("error") else ""))

# Targets (issue 4).
def target(desc, measured, ok, why=None):
    return (desc, measured, ("n/a: " + why) if ok is None else ("met" if ok else "**MISSED**"))
tg = []
w, n = mx.get("ward"), mx.get("nginx")
why = "ward-proxy missing" if not w else "nginx missing"
tg.append(target("Ward throughput ≥ nginx's", "%s vs %s requests/s" % (f0(w and w["rps"]), f0(n and n["rps"])),
                 None if not (w and n) else w["rps"] >= n["rps"], why))
wa, na = at("ward", "ward"), at("nginx", "ward")
# Single rounds stall now and then, either leg's: a median round can be won by
# the other leg's stalls. Met when the median round and the best round are both no worse.
wv = [v for v in round_values("ward-at-ward-half", "p99").values() if v is not None]
nv = [v for v in round_values("nginx-at-ward-half", "p99").values() if v is not None]
wb, nb = (min(wv) if wv else None), (min(nv) if nv else None)
tg.append(target("Ward p99 ≤ nginx's (both at ½ Ward's max)",
                 "%s vs %s ms (median round), %s vs %s ms (best round)" % (f2(wa and wa["p99"]), f2(na and na["p99"]),
                                                                         f2(wb), f2(nb)),
                 None if not (wa and na and wb is not None and nb is not None) else
                 wa["p99"] <= na["p99"] and wb <= nb, why))
a = added.get("ward")
tg.append(target("added p99 of the two proxies over direct ≤ 1 ms at ½ max", "%s ms" % f2(a), None if a is None else a <= 1.0,
                 "ward-proxy missing"))
wr, wi = rss.get("ward", (None, {}))
tg.append(target("RSS ≤ 10 MB idle per proxy",
                 "%.1f / %.1f MB (outbound / inbound)" % (mb(wr["out_idle_kb"]), mb(wr["in_idle_kb"])) if wr else "n/a",
                 None if not wr else max(mb(wr["out_idle_kb"]), mb(wr["in_idle_kb"])) <= 10.0, "ward-proxy missing"))
ok = None
if wi.get("out_idle_conns_kb"):
    ok = mb(wi["out_idle_conns_kb"]) <= 64.0 and wi["held"] >= idle
tg.append(target("RSS ≤ 64 MB holding %s idle connections" % format(idle, ","),
                 "%.1f MB, %s held" % (mb(wi["out_idle_conns_kb"]), format(wi["held"], ",")) if ok is not None else "n/a",
                 ok, "ward-proxy missing"))
t4 = ["| target | measured | result |", "|---|---|---|"] + ["| %s | %s | %s |" % t for t in tg]

# Every run with errors, the median ones or not.
bad = []
for f in sorted(os.listdir(RUNS)):
    if f.endswith(".json") and ".r" in f:
        r = json.load(open(os.path.join(RUNS, f)))
        if errs(r) or r["rps"] is None:
            bad.append("%s:%s" % (f[:-5], errs(r) or " no result"))
t5 = ["Runs with errors or behind their rate: " + ("none" if not bad else "; ".join(bad)) + "."]
if bad:
    t5.append("(non-2xx: the proxy answered other than 200 — ward-proxy answers 503 \"audit trail unavailable\" when its audit ring is full and it fails closed; socket errors: the client's connect/read/write errors, and timeouts: wrk's 2 s, fixed_rate's requests unanswered for over 1 s at the end of a run.)")

load_end = " ".join(open("/proc/loadavg").read().split()[:3])
print()
for t in (t1, ratios, t2, t6, t3, t4, t5):
    print("\n".join(t) + "\n")
print("load average: %s at the start, %s at the end" % (E.get("LOAD_START"), load_end))
for leg in legs:
    if missing(leg):
        print("PROBLEM %s: %s" % (leg, missing(leg)))

if E.get("BENCH_JSON"):  # for other scripts (bench/audit_store_bench.sh): every leg's max runs
    out = {"load_start": E.get("LOAD_START"), "load_end": load_end, "rounds": int(E["ROUNDS"]), "legs": {}}
    for leg in ["direct"] + legs:
        runs = []
        for r in range(1, int(E["ROUNDS"]) + 1):
            f = os.path.join(RUNS, "%s-max.r%d.json" % (leg, r))
            runs.append(json.load(open(f)) if os.path.exists(f) else None)
        out["legs"][leg] = {"median": mx.get(leg), "runs": runs, "missing": missing(leg),
                            "log_bytes": int(leg_file(leg, ".logbytes") or 0)}
    json.dump(out, open(E["BENCH_JSON"], "w"), indent=1)

if md:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    git = lambda *a: subprocess.run(["git"] + list(a), capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") or "?"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (working tree with uncommitted changes)"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception:
        cpu = platform.processor() or "?"
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) / 1048576.0
    def version(cmd, pat):
        p = subprocess.run(cmd, capture_output=True, text=True)
        m = re.search(pat, p.stdout + p.stderr)
        return m.group(1) if m else "?"
    busy = ""
    if float(E.get("LOAD_START", "0").split()[0]) > os.cpu_count() / 2:
        busy = ("\n- **The machine was busy** (load average above half the cores at the start, from other work): "
                "the figures are noisy, see the spread of the rounds; compare legs within the tables and the CPU per "
                "request rather than absolute figures.")
    sec = """<!-- proxy-bench:start -->
## Proxy: the mesh hop (bench/proxy_bench.sh)

- Date: %s
- Machine: %s, %d cores (nproc), %.1f GiB RAM, Linux %s; load average %s at the start, %s at the end
- Commit: %s
- ward-proxy: `%s`%s
- Command: `bench/proxy_bench.sh --write-results`: wrk %s `-t%s -c%s -d%s --latency`, %s rounds (the legs take turns; the median round is shown); %s worker(s) per proxy (ward-proxy `workers`, nginx `worker_processes`, HAProxy `nbthread`), app: nginx with %s worker(s); nginx %s + lua-nginx-module, HAProxy %s; %s policies. Nothing is pinned: client, proxies and app share the cores.%s

Maximum throughput (closed loop: each connection sends its next request when the last is answered). CPU µs per request: user + system time of both proxies of the leg (direct: the app) over the run, divided by the requests; it depends less than requests/s on what else runs on the machine:

%s

%s

Added latency: each proxied leg and the direct leg at the same fixed rate (`bench/fixed_rate`, 1 thread, the same connections):

%s
%s
Memory (VmRSS; nginx: master + workers), idle after start, and while a client holds idle TCP connections to the outbound listener (held: still open for the client and accepted by the proxy; the descriptor limit was %s, and HAProxy, which reserves two per connection, gets maxconn ≤ (limit − 100) / 2):

%s

%s

%s

How it is set up: wrk (plaintext HTTP/1.1 keep-alive, `Host: app`) → outbound proxy → mTLS (TLS 1.3, P-256 X509-SVIDs with the URI SANs `spiffe://bench.test/ns/shop/sa/{client,app}`, made by the openssl CLI) → inbound proxy (authorization, log) → app (Debian's nginx, `return 200 "ok"`). Keep-alive pools on both hops of every leg. The inbound proxies check every request against the same rule set: one mesh-wide DENY (admin paths) and ALLOW policies each with its own principal, methods and paths, the benchmark's rule among them. Ward loads them as AuthorizationPolicies; nginx (`access_by_lua_block`) and HAProxy (`http-request lua.*`, `lua-load-per-thread`) run one Lua module that takes the principal from the single URI SAN of the verified client certificate (parsed from its DER, cached per worker by the certificate's fingerprint, as a proxy would once per connection), then checks the DENY rules, then the ALLOW rules indexed by principal (method set, exact path, path prefix); HAProxy normalizes the path first (`normalize-uri`), as Ward and nginx do. Before measuring, every leg must answer the benchmark request with 200 and deny three others with 403. Logs: Ward's audit records on both proxies (the outbound decides egress with `default: allow`), nginx `access_log` to a file on both, HAProxy `log stdout` (HTTP log format) with stdout to a file on both. Upstream identity: Ward checks the inbound's URI SAN; nginx (`proxy_ssl_verify`, `proxy_ssl_name`) and HAProxy (`verify required verifyhost`) check the chain and the certificate's name (CN). Fixed rates use `bench/fixed_rate.c` (wrk2 is not in Debian, and wrk's Lua `delay()` has a 1 ms resolution, which sent the requests of each millisecond as one burst): one thread, the same connections, requests spaced 1/rate apart with microsecond timers, each sent on the first idle connection; latency counts from each request's scheduled send time, so a request that waited for a free connection or a slow client counts its wait (wrk2's coordinated-omission correction); whether a leg kept up shows in achieved/s and in the runs marked behind their rate. Each fixed-rate run follows a warm-up at the same rate that is not measured (`BENCH_WARMUP`, 2 s): the legs take turns, and a leg's pooled connections may have closed meanwhile (Ward closes upstream connections idle for 30 s, nginx after 60 s); refilling a pool costs an mTLS handshake per connection (about 1.7 ms of the inbound proxy's CPU with Debian's OpenSSL 3.0), which the runs would otherwise measure for some legs and not others. Every run starts after a `sync`: nginx and HAProxy leave their logs to the kernel's writeback, which writes them 30 s later, inside whatever run is then measured (Ward syncs its trail as it goes). Added p99 = p99 of the proxied leg − p99 of the direct leg at the same rate. MB = 10⁶ bytes.
<!-- proxy-bench:end -->
""" % (now, cpu, os.cpu_count(), mem, platform.release(), E.get("LOAD_START"), load_end, commit,
       os.path.relpath(E["WARD_BIN"]) if not os.path.relpath(E["WARD_BIN"]).startswith("..") else E["WARD_BIN"],
       " (%s)" % E["WARD_NOTE"] if E.get("WARD_NOTE") else "",
       version(["wrk", "-v"], r"wrk \S*?([0-9][0-9.]*)"), E["THREADS"], E["CONNS"], E["DURATION"], E["ROUNDS"], E["WORKERS"],
       E["APP_WORKERS"], version(["nginx", "-v"], r"nginx/([0-9.]+)"), version(["haproxy", "-v"], r"version ([0-9.]+)"),
       E["NPOL"], busy, "\n".join(t1), "\n".join(ratios), "\n".join(t2),
       "\n" + "\n".join(t6) + "\n" if t6 else "", E["NOFILE"], "\n".join(t3), "\n".join(t4), "\n".join(t5))
    text = open(md).read()
    if "<!-- proxy-bench:start -->" in text:
        text = re.sub(r"<!-- proxy-bench:start -->.*?<!-- proxy-bench:end -->\n?", lambda _: sec, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + sec
    open(md, "w").write(text)
    print("wrote " + md)
sys.exit(3 if any("MISSED" in t[2] for t in tg) and E.get("BENCH_STRICT") == "1" else 0)
EOF
[ "$FAIL" = 0 ] || exit 2
exit "$REPORT_RC"
