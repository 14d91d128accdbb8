#!/usr/bin/env bash
# route_bench.sh - routing cost (a policy set of 1,000 Routes against 10, through the whole mesh hop) and weighted-split accuracy of ward-proxy, with real processes on loopback
#
#   bench/route_bench.sh [--write-results]
#
# Leg 1, routing cost:
#   wrk (plaintext, keep-alive, Host: bench-app) → outbound ward-proxy whose
#   policy set has N Route documents → mTLS → inbound ward-proxy (service app,
#   one ALLOW policy) → app (Debian's nginx, `return 200 "ok"`)
# with two sets made by bench/gen_routes.py: N = 10 and N = 1,000 (each Route
# its own hosts and 2-5 http entries: header canaries, weighted splits,
# retries, rewrites, header operations, regex/template/query matches, rate
# limits, a catch-all), the benchmark's Route (host bench-app, destination
# app) the same in both and placed late (number 950 of 1,000, 9 of 10). Its
# request, GET /api/v1/items/42, is routed by that Route's second entry
# (rewrite to /v1/items/42, request and response header operations, timeout,
# retries); before measuring, the answer must be 200 with the response header
# the entry sets. The two sets take turns over BENCH_ROUNDS rounds (the order
# flips every round, so drift in the machine's load hits both alike); the
# outbound proxy is restarted with the other set each time (same ports), then
# warmed up, then measured (wrk -t BENCH_THREADS -c BENCH_CONNS -d
# BENCH_DURATION --latency, closed loop). Reported per set: the median round's
# requests/s, p50/p99, the outbound proxy's CPU (user + system, /proc) per
# request, the routing decision cost (ward_decision_duration_seconds of the
# outbound proxy's admin /metrics over the run: _sum/_count), its time from
# start to /ready and its RSS; the ratio of the medians (1,000 / 10; target ≥
# 0.90) and the median of the per-round ratios.
#
# Leg 2, split accuracy:
#   wrk (Host: split-70-30, ...) → outbound ward-proxy (a Route per case: one
#   entry, destinations app-v1 W1 / app-v2 W2) → mTLS → two inbound
#   ward-proxies (services app-v1 and app-v2, each its own SPIFFE ID and
#   audit folder) → the app
# For each case of BENCH_SPLITS, wrk runs in chunks of BENCH_SPLIT_CHUNK until
# at least BENCH_SPLIT_REQUESTS answers have come back; what each inbound proxy
# served is counted from its audit trail (`wardctl audit query DIR --where
# request.host=HOST --where decision=allow --count`) and cross-checked against
# its admin /metrics (ward_requests_total, inbound allow, before/after) and
# wrk's count. Reported: observed vs configured share, absolute error, the
# binomial standard deviation sqrt(p(1-p)/n) and whether the error is within
# 3 of them.
#
# Certificates: a CA and X509-SVIDs (EC P-256, one URI SAN
# spiffe://bench.test/ns/shop/sa/<name>) for client, app, app-v1, app-v2, made
# by the openssl CLI. Every proxy writes its audit trail with `overflow: block`
# (the worker waits for the writer instead of answering 503 when the audit
# queue is full: every request is served and recorded, so the throughput
# figures are not inflated by fast refusals and the split counts are complete).
#
# Environment: WARD_BIN (build/bin/ward-proxy), WARDCTL_BIN (wardctl beside
# WARD_BIN), WARD_NOTE (how that binary was built, for RESULTS.md),
# BENCH_WORKERS (1: ward-proxy workers), BENCH_APP_WORKERS (1),
# BENCH_THREADS (2), BENCH_CONNS (64), BENCH_DURATION (10s), BENCH_WARMUP (2s),
# BENCH_ROUNDS (3), BENCH_ROUTE_SETS ("10 1000"), BENCH_SPLITS
# ("70/30 90/10 99/1"), BENCH_SPLIT_REQUESTS (100000), BENCH_SPLIT_CHUNK (10s),
# BENCH_LEGS ("routes split"), BENCH_NOTE (a line added under the routing
# table in RESULTS.md, e.g. other runs of the day), BENCH_KEEP=1 keeps the
# temporary folder.
# --write-results replaces the Routes section of bench/RESULTS.md (between
# <!-- route-bench:start --> and <!-- route-bench:end -->).
# Exit status: 0 every leg ran; 2 a leg could not run, failed its checks, a
# proxy died, or a run had non-2xx answers or socket errors; 3 (with
# BENCH_STRICT=1) a target was missed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

WARD_BIN="${WARD_BIN:-build/bin/ward-proxy}"
case "$WARD_BIN" in /*) ;; *) WARD_BIN="$ROOT/$WARD_BIN" ;; esac
WARDCTL_BIN="${WARDCTL_BIN:-$(dirname "$WARD_BIN")/wardctl}"
WORKERS="${BENCH_WORKERS:-1}"
APP_WORKERS="${BENCH_APP_WORKERS:-1}"
THREADS="${BENCH_THREADS:-2}"
CONNS="${BENCH_CONNS:-64}"
DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-2s}"
ROUNDS="${BENCH_ROUNDS:-3}"
SETS="${BENCH_ROUTE_SETS:-10 1000}"
SPLITS="${BENCH_SPLITS:-70/30 90/10 99/1}"
SPLIT_REQUESTS="${BENCH_SPLIT_REQUESTS:-100000}"
SPLIT_CHUNK="${BENCH_SPLIT_CHUNK:-10s}"
LEGS="${BENCH_LEGS:-routes split}"
PY=/usr/bin/python3
WRITE_RESULTS=""
[ "${1:-}" = "--write-results" ] && WRITE_RESULTS="$ROOT/bench/RESULTS.md"
BENCH_PATH=/api/v1/items/42
BENCH_HOST=bench-app

die() {
    echo "route_bench.sh: $*" >&2
    exit 2
}
for t in wrk nginx curl openssl "$PY"; do
    command -v "$t" >/dev/null 2>&1 || die "$t not found (make bench installs the peers: nginx wrk)"
done
[ -x "$WARD_BIN" ] || die "$WARD_BIN not built (run make)"
[ -x "$WARDCTL_BIN" ] || die "$WARDCTL_BIN not built (run make)"
[ "$WRITE_RESULTS" = "" ] || [ -f "$WRITE_RESULTS" ] || die "$WRITE_RESULTS not found"
ulimit -n 65536 2>/dev/null || true

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
COMMIT_START=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
T=$(mktemp -d "${TMPDIR:-/tmp}/ward-route-bench.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-}" = 1 ]; then echo "route_bench.sh: kept $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$T/pki" "$T/runs" "$T/sets" "$T/inpol" "$T/split" "$T/metrics"

# ---------------------------------------------------------------- helpers (Python)
cat >"$T/util.py" <<'EOF'
# util.py - route_bench.sh's helpers: free ports, /metrics sums, wrk output, /proc CPU, the report
import datetime, json, math, os, platform, re, socket, subprocess, sys

def ports(n):
    socks = []
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

def msum(path, name, *filters):
    """Sum of the samples of NAME in a Prometheus text file whose labels match every k=v filter."""
    want = dict(f.split("=", 1) for f in filters)
    total, seen = 0.0, False
    for line in open(path):
        m = SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        labels = dict(LABEL.findall(m.group(2) or ""))
        if all(labels.get(k) == v for k, v in want.items()):
            total += float(m.group(3))
            seen = True
    return total if seen else None

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}

def ms(v):
    m = re.match(r"([0-9.]+)(us|ms|s|m)$", v)
    return float(m.group(1)) * UNIT[m.group(2)]

def wrkparse(path):
    t = open(path).read()
    r = {"rps": None, "p50": None, "p90": None, "p99": None, "requests": 0, "non2xx": 0, "sockerr": 0}
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
    return r

def ticks(pid):
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    print(int(f[11]) + int(f[12]))  # utime + stime (fields 14, 15)

def tp(wrkout, m0, m1, t0, t1, ready_ms, rss_kb, out):
    """One routing-cost run -> JSON."""
    r = wrkparse(wrkout)
    hz = os.sysconf("SC_CLK_TCK")
    r["cpu_us"] = 1e6 * (int(t1) - int(t0)) / hz / r["requests"] if r["requests"] else None
    d = {}
    for k in ("sum", "count"):
        a = msum(m0, "ward_decision_duration_seconds_" + k, "direction=outbound")
        b = msum(m1, "ward_decision_duration_seconds_" + k, "direction=outbound")
        if a is None or b is None:  # no direction label: all of them (the outbound proxy has no inbound traffic)
            a = msum(m0, "ward_decision_duration_seconds_" + k)
            b = msum(m1, "ward_decision_duration_seconds_" + k)
        d[k] = (b - a) if a is not None and b is not None else None
    r["decisions"] = d["count"]
    r["decision_us"] = 1e6 * d["sum"] / d["count"] if d["count"] else None
    r["ready_ms"] = float(ready_ms)
    r["rss_mb"] = int(rss_kb) / 1024.0
    json.dump(r, open(out, "w"))
    ok = r["rps"] is not None and r["p99"] is not None
    print("%10s req/s  p50 %7s ms  p99 %7s ms  outbound CPU %s us/req  decision %s us%s" % (
        "%.0f" % r["rps"] if ok else "?", "%.3f" % r["p50"] if ok else "?", "%.3f" % r["p99"] if ok else "?",
        "%.0f" % r["cpu_us"] if r["cpu_us"] else "?", "%.2f" % r["decision_us"] if r["decision_us"] else "?",
        "  (%d non-2xx, %d socket errors)" % (r["non2xx"], r["sockerr"]) if r["non2xx"] or r["sockerr"] else ""))
    return 0 if ok and not r["non2xx"] and not r["sockerr"] else 1

def wrkreq(path):
    r = wrkparse(path)
    print(r["requests"], r["non2xx"], r["sockerr"])

def split(name, host, w1, w2, wrk_requests, wrk_non2xx, wrk_sockerr, a1, a2, m1a, m1b, m2a, m2b, out):
    """One split case -> JSON and a line. a1/a2: audit counts (v1/v2); mNa/mNb: metrics files before/after."""
    def delta(a, b):
        x = msum(a, "ward_requests_total", "direction=inbound", "decision=allow")
        y = msum(b, "ward_requests_total", "direction=inbound", "decision=allow")
        return int((y or 0) - (x or 0))  # absent: nothing counted yet
    w1, w2 = int(w1), int(w2)
    n1, n2 = int(a1), int(a2)
    n = n1 + n2
    p = w1 / float(w1 + w2)
    obs = n1 / float(n) if n else None
    sigma = math.sqrt(p * (1 - p) / n) if n else None
    err = abs(obs - p) if obs is not None else None
    r = {"name": name, "host": host, "w1": w1, "w2": w2, "v1": n1, "v2": n2, "n": n, "p": p, "obs": obs,
         "err": err, "sigma": sigma, "z": (obs - p) / sigma if sigma else None,
         "within": err is not None and sigma is not None and err <= 3 * sigma,
         "metrics_v1": delta(m1a, m1b), "metrics_v2": delta(m2a, m2b),
         "wrk_requests": int(wrk_requests), "wrk_non2xx": int(wrk_non2xx), "wrk_sockerr": int(wrk_sockerr)}
    json.dump(r, open(out, "w"))
    if not n:
        print("no requests counted")
        return 1
    print("%d/%d: %d requests: v1 %d, v2 %d; v1 share %.4f%% (configured %.1f%%), error %.4f points, "
          "3 sigma %.4f points: %s; metrics v1 %s v2 %s; wrk %d answers"
          % (w1, w2, n, n1, n2, 100 * obs, 100 * p, 100 * err, 300 * sigma,
             "within" if r["within"] else "OUTSIDE", r["metrics_v1"], r["metrics_v2"], r["wrk_requests"]))
    return 0

def median(v):
    v = sorted(v)
    return v[(len(v) - 1) // 2] if v else None  # the lower of two

def f(v, spec="{:,.0f}", none="n/a"):
    return spec.format(v) if v is not None else none

def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = ", %.1f GiB RAM" % (int(line.split()[1]) / 1048576.0)
    except OSError:
        pass
    return "%s, %d cores (nproc)%s, Linux %s" % (cpu, os.cpu_count(), mem, platform.release())

def report(tdir, md):
    E = os.environ
    runs = os.path.join(tdir, "runs")
    sets = E["SETS"].split()
    rounds = int(E["ROUNDS"])
    lines, problems = [], ["the %s leg failed (could not run, a check failed or a proxy died): see the script's output" % l
                           for l in E.get("FAILED_LEGS", "").split()]
    tg = []  # (target, measured, result)
    # ---- routing cost
    med = {}
    table = []
    if "routes" in E["LEGS"].split():
        for s in sets:
            rs = []
            for k in range(1, rounds + 1):
                p = os.path.join(runs, "tp-%s.r%d.json" % (s, k))
                if os.path.exists(p):
                    r = json.load(open(p))
                    r["round"] = k
                    rs.append(r)
                    if r["non2xx"] or r["sockerr"]:
                        problems.append("%s routes round %d: %d non-2xx, %d socket errors" % (s, k, r["non2xx"], r["sockerr"]))
            meta = json.load(open(os.path.join(tdir, "sets", "r%s.meta.json" % s)))
            good = [r for r in rs if r["rps"] is not None]
            m = median([r["rps"] for r in good])
            mr = next((r for r in good if r["rps"] == m), None)
            med[s] = {"rps": m, "run": mr, "runs": rs, "meta": meta,
                      "cpu": median([r["cpu_us"] for r in good if r["cpu_us"]]),
                      "dec": median([r["decision_us"] for r in good if r["decision_us"]]),
                      "ready": median([r["ready_ms"] for r in rs]), "rss": median([r["rss_mb"] for r in rs])}
            table.append("| %s | %s / %s / %s | **%s** | %s | %s | %s | %s | %s | %s | %s |" % (
                f(int(s)), f(meta["hosts"]), f(meta["entries"]), meta["files"], f(m),
                f(mr["p50"] if mr else None, "{:.2f}"), f(mr["p99"] if mr else None, "{:.2f}"),
                f(med[s]["cpu"], "{:.0f}"), f(med[s]["dec"], "{:.2f}"), f(med[s]["ready"], "{:.0f}"),
                f(med[s]["rss"], "{:.1f}"), ", ".join(f(r["rps"]) for r in rs)))
    ratio = paired = None
    lo, hi = (sets[0], sets[-1]) if len(sets) >= 2 else (None, None)
    if lo and med.get(lo, {}).get("rps") and med.get(hi, {}).get("rps"):
        ratio = med[hi]["rps"] / med[lo]["rps"]
        pr = []
        for k in range(1, rounds + 1):
            a = next((r for r in med[lo]["runs"] if r["round"] == k and r["rps"]), None)
            b = next((r for r in med[hi]["runs"] if r["round"] == k and r["rps"]), None)
            if a and b:
                pr.append(b["rps"] / a["rps"])
        paired = median(pr)
        cpu_ratio = med[hi]["cpu"] / med[lo]["cpu"] if med[hi]["cpu"] and med[lo]["cpu"] else None
        tg.append(("%s Routes keep throughput within 10%% of %s (ratio of the median requests/s ≥ 0.90)" % (f(int(hi)), f(int(lo))),
                   "%s vs %s requests/s: ratio %.3f (per-round ratios %s, median %.3f)" % (
                       f(med[hi]["rps"]), f(med[lo]["rps"]), ratio, ", ".join("%.3f" % x for x in pr), paired),
                   "met" if ratio >= 0.90 else "**MISSED**"))
    # ---- split
    splits = []
    if "split" in E["LEGS"].split():
        for c in E["SPLITS"].split():
            p = os.path.join(runs, "split-%s.json" % c.replace("/", "-"))
            if os.path.exists(p):
                splits.append(json.load(open(p)))
            else:
                problems.append("split %s: not measured" % c)
        for s in splits:
            tg.append(("split %d/%d within 3 binomial standard deviations over ≥ %s requests" % (s["w1"], s["w2"], f(int(E["SPLIT_REQUESTS"]))),
                       "v1 %.3f%% of %s (error %.3f points, 3σ = %.3f points)" % (100 * s["obs"], f(s["n"]), 100 * s["err"], 300 * s["sigma"]) if s["n"] else "nothing counted",
                       "met" if s["within"] and s["n"] >= int(E["SPLIT_REQUESTS"]) else "**MISSED**"))
            if s["metrics_v1"] != s["v1"] or s["metrics_v2"] != s["v2"]:
                problems.append("split %d/%d: audit counts %d/%d but /metrics deltas %s/%s" % (s["w1"], s["w2"], s["v1"], s["v2"], s["metrics_v1"], s["metrics_v2"]))
            if s["wrk_non2xx"] or s["wrk_sockerr"]:
                problems.append("split %d/%d: %d non-2xx, %d socket errors" % (s["w1"], s["w2"], s["wrk_non2xx"], s["wrk_sockerr"]))
    # ---- print
    print()
    print("== Routes: routing cost (median of %d rounds) and split accuracy" % rounds)
    if table:
        print("set | hosts/entries/files | req/s | p50 ms | p99 ms | outbound CPU us/req | decision us | ready ms | RSS MiB | rounds")
        for t in table:
            print("  " + t.strip("| ").replace("**", ""))
    if ratio is not None:
        print("ratio %s/%s routes: %.3f (median of per-round ratios %.3f); CPU per request %s"
              % (hi, lo, ratio, paired, "%.2fx" % cpu_ratio if cpu_ratio else "n/a"))
    for s in splits:
        if s["n"]:
            print("split %d/%d: n=%d v1=%d v2=%d observed %.3f%%/%.3f%% error %.3f points (3 sigma %.3f) z=%.2f %s"
                  % (s["w1"], s["w2"], s["n"], s["v1"], s["v2"], 100 * s["obs"], 100 - 100 * s["obs"], 100 * s["err"],
                     300 * s["sigma"], s["z"], "within" if s["within"] else "OUTSIDE"))
    for t in tg:
        print("target: %s: %s: %s" % (t[0], t[1], t[2].replace("*", "")))
    for p in problems:
        print("problem: " + p)
    if not md:
        return 3 if any("MISSED" in t[2] for t in tg) else 0
    # ---- RESULTS.md
    load_end = open("/proc/loadavg").read().split()[:3]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if E.get("COMMIT_START") and E["COMMIT_START"] != commit:  # others committed meanwhile
        commit = "%s at the start, %s at the end" % (E["COMMIT_START"], commit)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    try:
        wrkv = re.search(r"wrk \S*?([0-9][0-9.]*)", subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout).group(1)
    except Exception:
        wrkv = "?"
    try:
        ngv = re.search(r"nginx/([0-9.]+)", subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr).group(1)
    except Exception:
        ngv = "?"
    wb = os.path.relpath(E["WARD_BIN"])
    if wb.startswith(".."):
        wb = E["WARD_BIN"]
    busy = float(E["LOAD_START"].split()[0]) > os.cpu_count() / 2 or float(load_end[0]) > os.cpu_count() / 2
    o = []
    o.append("<!-- route-bench:start -->")
    o.append("## Routes: routing cost and split accuracy (bench/route_bench.sh)")
    o.append("")
    o.append("- Date: %s" % now)
    o.append("- Machine: %s; load average %s at the start, %s at the end" % (machine(), E["LOAD_START"], " ".join(load_end)))
    o.append("- Commit: %s%s" % (commit, " (working tree with uncommitted changes by others)" if dirty else ""))
    o.append("- ward-proxy: `%s`%s" % (wb, " (%s)" % E["WARD_NOTE"] if E.get("WARD_NOTE") else ""))
    o.append("- Command: `%s`: wrk %s `-t%s -c%s -d%s --latency` after a %s warm-up, %d round(s) (the two sets take turns, the order flips each round; the median round is shown); ward-proxy `workers: %s`; app: nginx %s with %s worker(s). Split leg: wrk in %s chunks until ≥ %s answers per case. Nothing is pinned: wrk, the proxies and the app share the cores."
             % (E.get("BENCH_CMD", "bench/route_bench.sh --write-results"), wrkv, E["THREADS"], E["CONNS"], E["DURATION"], E["WARMUP"],
                rounds, E["WORKERS"], ngv, E["APP_WORKERS"], E["SPLIT_CHUNK"], f(int(E["SPLIT_REQUESTS"]))))
    if busy:
        o.append("- **The machine was shared and busy** (load average above half the cores, from other engineers' builds and tests): absolute figures are noisy; compare the two sets within a round (the per-round ratios) and the CPU per request rather than absolute requests/s.")
    else:
        o.append("- The machine is shared: other work may have run meanwhile; see the load averages and the spread of the rounds.")
    o.append("")
    if table:
        o.append("Routing cost: wrk → outbound ward-proxy (policy set of N Routes) → mTLS → inbound ward-proxy → app. The benchmark's Host is served by one Route, the same in both sets, placed late in each. CPU µs per request: user + system time of the outbound proxy over the run divided by the requests; decision µs: mean of the outbound proxy's `ward_decision_duration_seconds` over the run (_sum / _count: the engine's decision including the route lookup and match); ready: from the outbound proxy's start to its admin `/ready` (loading and compiling the set); RSS after the run.")
        o.append("")
        o.append("| Routes | hosts / http entries / files | requests/s | p50 ms | p99 ms | outbound CPU µs per request | decision µs (mean) | start to ready ms | outbound RSS MiB | requests/s of each round |")
        o.append("|---|---|---|---|---|---|---|---|---|---|")
        o.extend(table)
        o.append("")
        if ratio is not None:
            o.append("- Ratio of the median requests/s, %s / %s Routes: **%.3f** (median of the per-round ratios %.3f); outbound CPU per request %s×; decision %s vs %s µs"
                     % (f(int(hi)), f(int(lo)), ratio, paired, "%.2f" % cpu_ratio if cpu_ratio else "n/a",
                        f(med[hi]["dec"], "{:.2f}"), f(med[lo]["dec"], "{:.2f}")))
            if med[hi]["dec"] and med[hi]["cpu"] and med[lo]["dec"]:
                o.append("- The whole engine decision (authorization, Route lookup and match) with %s Routes is %.1f%% of the outbound proxy's CPU per request, %+.2f µs against %s Routes: the engine's extra cost can explain a throughput difference of about %.1f%% at most. A larger gap comes from elsewhere: the machine's other load (see the spread of the rounds), or per-request work outside the engine that grows with the set, which would show as a consistently higher CPU per request."
                         % (f(int(hi)), 100 * med[hi]["dec"] / med[hi]["cpu"], med[hi]["dec"] - med[lo]["dec"], f(int(lo)),
                            max(0.0, 100 * (med[hi]["dec"] - med[lo]["dec"]) / med[lo]["cpu"])))
            if E.get("BENCH_NOTE"):
                o.append("- Note: " + E["BENCH_NOTE"])
            o.append("")
    if splits:
        o.append("Split accuracy: wrk → outbound ward-proxy (one Route per case: a single entry, destinations app-v1 / app-v2 with the configured weights) → mTLS → two inbound ward-proxies, app-v1 and app-v2 (own SPIFFE IDs) → app. Served requests are counted in each inbound proxy's audit trail (`wardctl audit query DIR --where request.host=HOST --where decision=allow --count`), cross-checked against its `/metrics` (`ward_requests_total` inbound allow, before/after). σ = sqrt(p(1−p)/n), the binomial standard deviation of the observed share.")
        o.append("")
        o.append("| configured v1 / v2 | requests counted | served by v1 | served by v2 | observed v1 / v2 | absolute error | 3σ | z | within 3σ | /metrics v1 / v2 | wrk answers |")
        o.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for s in splits:
            if not s["n"]:
                o.append("| %d / %d | 0 | | | | | | | no | | %s |" % (s["w1"], s["w2"], f(s["wrk_requests"])))
                continue
            o.append("| %d%% / %d%% | %s | %s | %s | %.3f%% / %.3f%% | %.3f points | %.3f points | %+.2f | %s | %s / %s | %s |" % (
                s["w1"], s["w2"], f(s["n"]), f(s["v1"]), f(s["v2"]), 100 * s["obs"], 100 - 100 * s["obs"], 100 * s["err"],
                300 * s["sigma"], s["z"], "yes" if s["within"] else "**no**", f(s["metrics_v1"]), f(s["metrics_v2"]), f(s["wrk_requests"])))
        o.append("")
    o.append("| target | measured | result |")
    o.append("|---|---|---|")
    for t in tg:
        o.append("| %s | %s | %s |" % t)
    o.append("")
    if problems:
        o.append("Problems: " + "; ".join(problems) + ".")
        o.append("")
    o.append("How it is set up: the Route sets come from `bench/gen_routes.py set --routes N` (seed 6): per Route its own hosts (a name, often also `NAME.NS.svc`, sometimes an alias) and 2–5 http entries — a header canary (exact value or prefix), a 95/5…50/50 weighted split of `/api/vK/RES/*` for GET/HEAD with a timeout and retries, writes (POST/PUT/PATCH, a timeout, some with a rate limit), a legacy prefix rewrite, a regex or `{*}`/`{**}` template path with a query-parameter match, request/response header add/set/remove, and a catch-all; their destinations are services this proxy has no upstream for (ward-proxy warns at load; a mesh-wide set names services a given proxy never calls). The benchmark's Route (`bench/bench-app`, hosts `bench-app` and `bench-app.bench.svc`) has a header-canary entry the request does not match, then `items-read` (GET/HEAD `/api/v1/items/*` → upstream app, rewrite to `/v1/items/`, request header set/add/remove, response header set/remove, timeout 5s, 2 retries) that routes it; every round checks the answer is 200 with `x-bench-route: items-read`. The outbound proxy egress-decides with `default: allow` (no AuthorizationPolicy), the inbound proxies authorize with one ALLOW policy for the client's SPIFFE ID. TLS 1.3 with P-256 X509-SVIDs (URI SANs `spiffe://bench.test/ns/shop/sa/{client,app,app-v1,app-v2}`, made by the openssl CLI). All proxies keep their audit trail with `overflow: block`. The outbound proxy is restarted (same ports) for each run with the other set.")
    o.append("<!-- route-bench:end -->")
    sec = "\n".join(o) + "\n"
    text = open(md).read()
    if "<!-- route-bench:start -->" in text:
        text = re.sub(r"<!-- route-bench:start -->.*?<!-- route-bench:end -->\n?", lambda _: sec, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + sec
    open(md, "w").write(text)
    print("wrote " + md)
    return 3 if any("MISSED" in t[2] for t in tg) else 0

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "ports":
        ports(*args)
    elif cmd == "msum":
        v = msum(*args) or 0  # absent: nothing counted yet
        print("%.0f" % v if v == int(v) else v)
    elif cmd == "ticks":
        ticks(*args)
    elif cmd == "tp":
        sys.exit(tp(*args))
    elif cmd == "wrkreq":
        wrkreq(*args)
    elif cmd == "split":
        sys.exit(split(*args))
    elif cmd == "report":
        sys.exit(report(*args))
EOF
U() { "$PY" "$T/util.py" "$@"; }

# ---------------------------------------------------------------- certificates
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
    for n in client app app-v1 app-v2; do
        (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$n.key") 2>/dev/null
        openssl req -new -key "$d/$n.key" -subj "/CN=$n" -config "$d/ext.cnf" -out "$d/$n.csr" 2>/dev/null
        printf '%s\n' "basicConstraints = critical, CA:FALSE" "keyUsage = critical, digitalSignature" \
            "extendedKeyUsage = serverAuth, clientAuth" "subjectKeyIdentifier = hash" \
            "authorityKeyIdentifier = keyid" "subjectAltName = URI:spiffe://bench.test/ns/shop/sa/$n" >"$d/$n.ext"
        openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -set_serial "0x$(openssl rand -hex 8)" \
            -days 1 -sha256 -extfile "$d/$n.ext" -out "$d/$n.pem" 2>/dev/null
        chmod 600 "$d/$n.key"
        openssl verify -CAfile "$d/ca.pem" "$d/$n.pem" >/dev/null || return 1
    done
}
mkcerts || die "certificates: openssl failed"

# ---------------------------------------------------------------- policy sets
for n in $SETS; do
    "$PY" bench/gen_routes.py set --routes "$n" --out "$T/sets/r$n" --bench-host "$BENCH_HOST" --bench-service app |
        sed "s/^/set r$n: /"
done
SPLIT_ARGS=()
for c in $SPLITS; do SPLIT_ARGS+=(--route "split-${c/\//-}:split-${c/\//-}:app-v1=${c%/*},app-v2=${c#*/}"); done
"$PY" bench/gen_routes.py split --out "$T/split/split.yaml" "${SPLIT_ARGS[@]}" | sed 's/^/split: /'
cat >"$T/inpol/allow.yaml" <<'EOF'
apiVersion: ward/v1
kind: AuthorizationPolicy
metadata: {name: app-from-client, namespace: shop}
spec:
  selector: {services: [app, app-v1, app-v2]}
  action: ALLOW
  rules:
    - from: [{principals: ["spiffe://bench.test/ns/shop/sa/client"]}]
      to: [{methods: [GET, HEAD], paths: ["/v1/items/*", "/api/v1/items/*", "/"]}]
EOF

# ---------------------------------------------------------------- processes
declare -A PNAME
start() { # start NAME CMD...: background, output to $T/NAME.log, pid in PIDS and LAST_PID
    local name="$1"
    shift
    "$@" >"$T/$name.log" 2>&1 &
    PIDS+=("$!")
    PNAME[$!]=$name
    LAST_PID=$!
}
gone() { # gone PID: GONE = why a process we started is no longer running (reaps it; not in a subshell)
    local st=0
    wait "$1" 2>/dev/null || st=$?
    if [ "$st" -gt 128 ] && [ "$st" -lt 160 ]; then
        GONE="${PNAME[$1]:-pid $1} was killed by SIG$(kill -l $((st - 128)))"
    else
        GONE="${PNAME[$1]:-pid $1} exited with status $st"
    fi
}
stop() { # stop PID: TERM, then KILL after 5 s; drops it from PIDS
    local p="$1" q keep=()
    kill "$p" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
    PIDS=("${keep[@]}")
}
wait_port() { # wait_port PORT PID
    for _ in $(seq 1 200); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
wait_ready() { # wait_ready ADMIN_PORT PID NAME: until /ready is 200 (60 s), or explain
    for _ in $(seq 1 1200); do
        kill -0 "$2" 2>/dev/null || { gone "$2"; echo "$3: $GONE: $(tail -5 "$T/$3.log" | tr '\n' ' ')"; return 1; }
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/ready")" = 200 ] && return 0
        sleep 0.05
    done
    echo "$3: admin /ready not 200 after 60 s: $(tail -5 "$T/$3.log" | tr '\n' ' ')"
    return 1
}
alive() { # alive PID NAME: fail with the reason when a proxy died
    kill -0 "$1" 2>/dev/null && return 0
    gone "$1"
    echo "route_bench.sh: $2 died: $GONE: $(tail -5 "$T/$2.log" | tr '\n' ' ')" >&2
    return 1
}
metrics() { curl -sf "http://127.0.0.1:$1/metrics" >"$2"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
ms_now() { date +%s%3N; }
check() { # check PID NAME: ward-proxy --check of a config, with the reason when it fails
    local st=0 err
    err=$("$WARD_BIN" --config "$1" --check 2>&1) || st=$?
    [ "$st" = 0 ] && return 0
    echo "--check of $2 failed (exit $st): $(echo "$err" | grep -v warning | head -5 | tr '\n' ' ')"
    return 1
}

read -r APP_PORT IN_PORT IN_ADMIN V1_PORT V1_ADMIN V2_PORT V2_ADMIN OUT_PORT OUT_ADMIN OUT_IN SP_PORT SP_ADMIN SP_IN < <(U ports 13)

# The app: nginx answering 200 "ok", keep-alive, no log.
mkdir -p "$T/app/tmp"
{
    [ "$(id -u)" = 0 ] && echo "user root;"
    cat <<EOF
worker_processes $APP_WORKERS;
pid $T/app/nginx.pid;
error_log $T/app/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $T/app/tmp/body; proxy_temp_path $T/app/tmp/proxy; fastcgi_temp_path $T/app/tmp/fcgi;
    uwsgi_temp_path $T/app/tmp/uwsgi; scgi_temp_path $T/app/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
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

inbound_conf() { # inbound_conf SERVICE LISTEN ADMIN > file
    cat <<EOF
service: $1
identity: {cert_file: $T/pki/$1.pem, key_file: $T/pki/$1.key, bundle_file: $T/pki/ca.pem}
inbound: {listen: 127.0.0.1:$2, app: 127.0.0.1:$APP_PORT}
policy: {paths: [$T/inpol], default: deny}
audit: {dir: $T/audit-$1, overflow: block}
admin: {listen: 127.0.0.1:$3}
timeouts: {drain: 1s}
workers: $WORKERS
EOF
}
# outbound_conf POLICYDIR LISTEN ADMIN OWN_INBOUND AUDIT UPSTREAMS...(service=port)
outbound_conf() {
    local pol="$1" listen="$2" admin="$3" own="$4" audit="$5" u
    shift 5
    cat <<EOF
service: client
identity: {cert_file: $T/pki/client.pem, key_file: $T/pki/client.key, bundle_file: $T/pki/ca.pem}
inbound: {listen: 127.0.0.1:$own, app: 127.0.0.1:$APP_PORT}
outbound: {listen: 127.0.0.1:$listen}
upstreams:
EOF
    for u in "$@"; do
        echo "  - {service: ${u%=*}, endpoints: [127.0.0.1:${u#*=}], spiffe_id: \"spiffe://bench.test/ns/shop/sa/${u%=*}\"}"
    done
    cat <<EOF
policy: {paths: [$pol], default: allow}
audit: {dir: $audit, overflow: block}
admin: {listen: 127.0.0.1:$admin}
timeouts: {drain: 1s}
workers: $WORKERS
EOF
}

FAIL=0
FAILED_LEGS=""
# ---------------------------------------------------------------- leg 1: routing cost
routes_leg() {
    local n k order pid t0 t1 ready st=0 hdr
    inbound_conf app "$IN_PORT" "$IN_ADMIN" >"$T/in-app.yaml"
    check "$T/in-app.yaml" "the inbound config" || return 1
    for n in $SETS; do
        outbound_conf "$T/sets/r$n" "$OUT_PORT" "$OUT_ADMIN" "$OUT_IN" "$T/audit-out-$n" "app=$IN_PORT" >"$T/out-$n.yaml"
        check "$T/out-$n.yaml" "the outbound config with $n Routes" || return 1
        echo "outbound config with $n Routes: $("$WARD_BIN" --config "$T/out-$n.yaml" --check 2>&1 | grep -c warning || true) warnings at --check (destinations without an upstream here)"
    done
    start ward-in "$WARD_BIN" --config "$T/in-app.yaml"
    IN_PID=$LAST_PID
    wait_ready "$IN_ADMIN" "$IN_PID" ward-in || return 1
    for k in $(seq 1 "$ROUNDS"); do
        order=$SETS
        [ $((k % 2)) = 0 ] && order=$(echo "$SETS" | tr ' ' '\n' | tac | tr '\n' ' ')
        for n in $order; do
            t0=$(ms_now)
            start "ward-out-$n.r$k" "$WARD_BIN" --config "$T/out-$n.yaml"
            pid=$LAST_PID
            wait_ready "$OUT_ADMIN" "$pid" "ward-out-$n.r$k" || return 1
            ready=$(($(ms_now) - t0))
            wait_port "$OUT_PORT" "$pid" || { echo "nothing listens on the outbound port"; return 1; }
            hdr=$(curl -s -D - -o "$T/body" -H "Host: $BENCH_HOST" "http://127.0.0.1:$OUT_PORT$BENCH_PATH" | tr -d '\r')
            if ! echo "$hdr" | head -1 | grep -q " 200" || ! echo "$hdr" | grep -qi '^x-bench-route: items-read$' ||
                [ "$(cat "$T/body")" != ok ]; then
                echo "the benchmark request through $n Routes was not routed as expected: $(echo "$hdr" | head -8 | tr '\n' ' ') body: $(head -c 200 "$T/body")"
                return 1
            fi
            printf 'round %d, %5s Routes (ready in %4d ms): ' "$k" "$n" "$ready"
            wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -H "Host: $BENCH_HOST" "http://127.0.0.1:$OUT_PORT$BENCH_PATH" >/dev/null 2>&1 || true
            metrics "$OUT_ADMIN" "$T/metrics/out-$n.r$k.0" || { echo "admin /metrics failed"; return 1; }
            t0=$(U ticks "$pid")
            wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Host: $BENCH_HOST" \
                "http://127.0.0.1:$OUT_PORT$BENCH_PATH" >"$T/runs/tp-$n.r$k.txt" 2>&1 || true
            t1=$(U ticks "$pid")
            metrics "$OUT_ADMIN" "$T/metrics/out-$n.r$k.1" || { echo "admin /metrics failed"; return 1; }
            U tp "$T/runs/tp-$n.r$k.txt" "$T/metrics/out-$n.r$k.0" "$T/metrics/out-$n.r$k.1" "$t0" "$t1" \
                "$ready" "$(rss_kb "$pid")" "$T/runs/tp-$n.r$k.json" || st=1
            alive "$pid" "ward-out-$n.r$k" || return 1
            alive "$IN_PID" ward-in || return 1
            stop "$pid"
        done
    done
    stop "$IN_PID"
    return "$st"
}

# ---------------------------------------------------------------- leg 2: split accuracy
split_leg() {
    local c host w1 w2 got req non sock a1 a2 st=0 pid p1 p2 i
    inbound_conf app-v1 "$V1_PORT" "$V1_ADMIN" >"$T/in-v1.yaml"
    inbound_conf app-v2 "$V2_PORT" "$V2_ADMIN" >"$T/in-v2.yaml"
    outbound_conf "$T/split" "$SP_PORT" "$SP_ADMIN" "$SP_IN" "$T/audit-out-split" "app-v1=$V1_PORT" "app-v2=$V2_PORT" >"$T/out-split.yaml"
    for c in in-v1 in-v2 out-split; do check "$T/$c.yaml" "$c" || return 1; done
    start ward-in-v1 "$WARD_BIN" --config "$T/in-v1.yaml"
    p1=$LAST_PID
    start ward-in-v2 "$WARD_BIN" --config "$T/in-v2.yaml"
    p2=$LAST_PID
    start ward-out-split "$WARD_BIN" --config "$T/out-split.yaml"
    pid=$LAST_PID
    wait_ready "$V1_ADMIN" "$p1" ward-in-v1 || return 1
    wait_ready "$V2_ADMIN" "$p2" ward-in-v2 || return 1
    wait_ready "$SP_ADMIN" "$pid" ward-out-split || return 1
    wait_port "$SP_PORT" "$pid" || { echo "nothing listens on the split outbound port"; return 1; }
    for c in $SPLITS; do
        host="split-${c/\//-}"
        w1=${c%/*}
        w2=${c#*/}
        metrics "$V1_ADMIN" "$T/metrics/v1-$host.0" && metrics "$V2_ADMIN" "$T/metrics/v2-$host.0" || { echo "admin /metrics failed"; return 1; }
        [ "$(curl -s -H "Host: $host" "http://127.0.0.1:$SP_PORT$BENCH_PATH")" = ok ] ||
            { echo "$host: the request through the split Route is not answered ok: $(curl -s -i -H "Host: $host" "http://127.0.0.1:$SP_PORT$BENCH_PATH" | head -5 | tr '\r\n' '  ')"; return 1; }
        # this check request is counted too (audit and metrics): start at 1
        got=1 non=0 sock=0 i=0
        printf 'split %s: ' "$c"
        while [ "$got" -lt "$SPLIT_REQUESTS" ]; do
            i=$((i + 1))
            wrk -t"$THREADS" -c"$CONNS" -d"$SPLIT_CHUNK" -H "Host: $host" "http://127.0.0.1:$SP_PORT$BENCH_PATH" >"$T/runs/split-$host.$i.txt" 2>&1 || true
            read -r req a1 a2 < <(U wrkreq "$T/runs/split-$host.$i.txt")
            [ "$req" -gt 0 ] || { echo "wrk got no answers: $(tail -3 "$T/runs/split-$host.$i.txt" | tr '\n' ' ')"; return 1; }
            got=$((got + req)) non=$((non + a1)) sock=$((sock + a2))
            printf '%d.. ' "$got"
            alive "$pid" ward-out-split && alive "$p1" ward-in-v1 && alive "$p2" ward-in-v2 || return 1
        done
        echo
        # Records reach the trail within the writer's flush interval: wait until
        # the audit counts equal the metrics (or 10 s).
        metrics "$V1_ADMIN" "$T/metrics/v1-$host.1" && metrics "$V2_ADMIN" "$T/metrics/v2-$host.1" || { echo "admin /metrics failed"; return 1; }
        local m1 m2
        m1=$(($(U msum "$T/metrics/v1-$host.1" ward_requests_total direction=inbound decision=allow) - $(U msum "$T/metrics/v1-$host.0" ward_requests_total direction=inbound decision=allow)))
        m2=$(($(U msum "$T/metrics/v2-$host.1" ward_requests_total direction=inbound decision=allow) - $(U msum "$T/metrics/v2-$host.0" ward_requests_total direction=inbound decision=allow)))
        for _ in $(seq 1 40); do
            a1=$("$WARDCTL_BIN" audit query "$T/audit-app-v1" --where "request.host=$host" --where decision=allow --count 2>/dev/null || echo -1)
            a2=$("$WARDCTL_BIN" audit query "$T/audit-app-v2" --where "request.host=$host" --where decision=allow --count 2>/dev/null || echo -1)
            [ "$a1" = "$m1" ] && [ "$a2" = "$m2" ] && break
            sleep 0.25
        done
        if [ "$a1" -lt 0 ] || [ "$a2" -lt 0 ]; then
            echo "wardctl audit query failed: $("$WARDCTL_BIN" audit query "$T/audit-app-v1" --count 2>&1 | tail -2 | tr '\n' ' ')"
            return 1
        fi
        printf '  '
        U split "$c" "$host" "$w1" "$w2" "$got" "$non" "$sock" "$a1" "$a2" \
            "$T/metrics/v1-$host.0" "$T/metrics/v1-$host.1" "$T/metrics/v2-$host.0" "$T/metrics/v2-$host.1" \
            "$T/runs/split-${c/\//-}.json" || st=1
        [ "$non" = 0 ] && [ "$sock" = 0 ] || { echo "  ($non non-2xx, $sock socket errors)"; st=1; }
    done
    stop "$pid"
    stop "$p1"
    stop "$p2"
    return "$st"
}

echo "ward-proxy: $WARD_BIN; load average at the start: $LOAD_START"
for leg in $LEGS; do
    echo
    echo "== $leg"
    lrc=0
    case "$leg" in
    routes) routes_leg || lrc=$? ;;
    split) split_leg || lrc=$? ;;
    *) echo "unknown leg $leg"; lrc=1 ;;
    esac
    if [ "$lrc" != 0 ]; then
        echo "route_bench.sh: the $leg leg failed (see above)" >&2
        FAIL=1
        FAILED_LEGS="${FAILED_LEGS:+$FAILED_LEGS }$leg"
    fi
done

REPORT_RC=0
export COMMIT_START FAILED_LEGS SETS ROUNDS LEGS SPLITS SPLIT_REQUESTS SPLIT_CHUNK THREADS CONNS DURATION WARMUP WORKERS APP_WORKERS WARD_BIN LOAD_START
export BENCH_CMD="${BENCH_CMD:-bench/route_bench.sh${WRITE_RESULTS:+ --write-results}}"
U report "$T" "$WRITE_RESULTS" || REPORT_RC=$?
[ "$FAIL" = 0 ] || exit 2
[ "$REPORT_RC" = 3 ] && [ "${BENCH_STRICT:-}" != 1 ] && REPORT_RC=0
exit "$REPORT_RC"
