#!/usr/bin/env python3
# bench_util.py - benchmark helpers: run a command measuring wall time and peak RSS, read wardctl's bench JSON, print the report
"""
bench_util.py measure OUT.json [--stdout FILE] [--repeat N] -- CMD...
    Runs CMD (N times, keeping the fastest), writes {"rc","wall_s","maxrss_kb",
    "runs"} to OUT.json and CMD's stdout to FILE. Exits with CMD's status.

bench_util.py report DIR [--sizes 10,1000,10000] [--markdown FILE]
    Reads DIR/<size>/{bench.json,bench.measure.json,compile.measure.json,meta.json,
    mix.json,error.txt}, prints the table, the ratios and the
    targets of issue 2, and (with --markdown) writes bench/RESULTS.md.
"""
import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time

TARGETS = {
    "rate_1000": 300000.0,  # decisions/s at 1,000 rules
    "slowdown_10000": 2.0,  # rate(10) / rate(10,000) at most
    "p99_1000_us": 20.0,    # p99 latency at 1,000 rules
    "compile_10000_s": 1.0,  # compile of 10,000 rules
}


# ---- measure -----------------------------------------------------------------

def cmd_measure(argv):
    out = argv[0]
    stdout_file = None
    repeat = 1
    i = 1
    while i < len(argv) and argv[i] != "--":
        if argv[i] == "--stdout":
            stdout_file = argv[i + 1]
            i += 2
        elif argv[i] == "--repeat":
            repeat = int(argv[i + 1])
            i += 2
        else:
            sys.exit("bench_util.py measure: unknown option %s" % argv[i])
    cmd = argv[i + 1:]
    if not cmd:
        sys.exit("bench_util.py measure: no command")
    best = None
    rss = 0
    rc = 0
    runs = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        with open(stdout_file or os.devnull, "wb") as f:
            p = subprocess.run(cmd, stdout=f)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        # the max over this helper's children: the command (taskset execs it)
        rss = max(rss, after if after > before else before)
        runs.append(round(wall, 4))
        rc = p.returncode
        if rc != 0:
            break
        best = wall if best is None else min(best, wall)
    with open(out, "w") as f:
        json.dump({"rc": rc, "wall_s": best, "maxrss_kb": rss, "runs": runs, "cmd": cmd}, f)
    sys.exit(rc)


# ---- reading wardctl's JSON ---------------------------------------------------

def flatten(obj, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are skipped."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = (prefix + "." + k) if prefix else k
            if isinstance(v, dict):
                out.update(flatten(v, key))
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[key.lower()] = float(v)
    return out


def to_us(key, value):
    """Converts a latency to µs from the unit its key names (µs when none)."""
    k = key.replace("µ", "u")
    if re.search(r"(^|[._])ns($|[._])|_ns$|nsec|nanos", k):
        return value / 1000.0
    if re.search(r"(^|[._])ms($|[._])|_ms$|msec|millis", k):
        return value * 1000.0
    if re.search(r"(^|[._])s($|[._])|_s$|sec(ond)?s?$", k) and "us" not in k and "per" not in k:
        return value * 1e6
    return value


def find(flat, patterns, exclude=()):
    for pat in patterns:
        for k, v in flat.items():
            if re.search(pat, k) and not any(re.search(x, k) for x in exclude):
                return k, v
    return None, None


def parse_bench(path):
    """Normalizes whatever `wardctl policy bench --json` printed."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    doc = None
    for cand in (text, text.splitlines()[-1] if text else ""):
        try:
            doc = json.loads(cand)
            break
        except ValueError:
            continue
    if not isinstance(doc, dict):
        return {"raw": text[:500]}
    flat = flatten(doc)
    r = {"raw_keys": sorted(flat)}
    _, r["rate"] = find(flat, [r"decisions_per_s", r"per_s(ec(ond)?)?$", r"per_second", r"(^|\.)rate",
                               r"(^|\.)dps$", r"ops"])
    for p in ("p50", "p90", "p99", "p999", "max", "mean"):
        k, v = find(flat, [r"(^|[._])%s($|[._])" % p, p], exclude=[r"rate", r"per_s"])
        r[p + "_us"] = to_us(k, v) if k else None
    _, r["decisions"] = find(flat, [r"(^|\.)decisions$", r"iterations", r"(^|\.)count$", r"(^|\.)n$"])
    _, r["allow"] = find(flat, [r"allow"])
    for name in ("load_ms", "compile_ms", "engine_load_ms"):
        r[name] = flat.get(name)
    k, v = find(flat, [r"lua_mem", r"memory", r"mem_bytes", r"(^|[._])bytes$", r"rss"])
    if k is not None:
        r["memory_bytes"] = v * 1024 if k.endswith("kb") else v
    else:
        r["memory_bytes"] = None
    return r


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


# ---- report ------------------------------------------------------------------

def fmt(v, spec="{:,.0f}", none="n/a"):
    return none if v is None else spec.format(v)


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = "%.1f GiB" % (kb / 1048576)
    except (OSError, ValueError, IndexError):
        pass
    load = "%.2f %.2f %.2f" % os.getloadavg()
    return "%s, %d cores (nproc), %s RAM, %s %s; load average at the end %s" % (
        cpu, os.cpu_count() or 0, mem, platform.system(), platform.release(), load)


def cmd_report(argv):
    d = argv[0]
    sizes = [10, 1000, 10000]
    md = None
    i = 1
    while i < len(argv):
        if argv[i] == "--sizes":
            sizes = [int(x) for x in argv[i + 1].split(",")]
            i += 2
        elif argv[i] == "--markdown":
            md = argv[i + 1]
            i += 2
        else:
            sys.exit("bench_util.py report: unknown option %s" % argv[i])

    rows = {}
    for n in sizes:
        b = parse_bench(os.path.join(d, str(n), "bench.json")) or {}
        m = load_json(os.path.join(d, str(n), "bench.measure.json")) or {}
        meta = load_json(os.path.join(d, str(n), "meta.json")) or {}
        mix = load_json(os.path.join(d, str(n), "mix.json")) or {}
        c = load_json(os.path.join(d, str(n), "compile.measure.json")) or {}
        err = None
        try:
            with open(os.path.join(d, str(n), "error.txt")) as f:
                err = f.read().strip()
        except OSError:
            pass
        rows[n] = {"bench": b, "measure": m, "meta": meta, "mix": mix, "compile": c, "error": err}

    lines = []
    head = ("| rules | policies | services | decisions/s | p50 µs | p90 µs | p99 µs | allowed | "
            "load+compile+engine ms | `policy compile` s | Lua bytes | peak RSS MiB | engine memory MiB |")
    lines.append(head)
    lines.append("|" + "---|" * (head.count("|") - 1))
    for n in sizes:
        r = rows[n]
        b, m, meta, mix, c = r["bench"], r["measure"], r["meta"], r["mix"], r["compile"]
        allowed = None
        if b.get("allow") is not None and b.get("decisions"):
            allowed = "%.0f%%" % (100.0 * b["allow"] / b["decisions"])
        elif mix.get("total"):
            allowed = "%.0f%%" % (100.0 * mix["allow"] / mix["total"])
        inproc = None
        if b.get("load_ms") is not None and b.get("compile_ms") is not None:
            inproc = "%.1f + %.1f + %.1f" % (b["load_ms"], b["compile_ms"], b.get("engine_load_ms") or 0)
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            "{:,}".format(n), meta.get("policies", "?"), meta.get("services", "?"),
            fmt(b.get("rate")), fmt(b.get("p50_us"), "{:.2f}"), fmt(b.get("p90_us"), "{:.2f}"),
            fmt(b.get("p99_us"), "{:.2f}"), allowed or "n/a", inproc or "n/a",
            fmt(c.get("wall_s") if c.get("rc") == 0 else None, "{:.3f}"),
            fmt(c.get("lua_bytes"), "{:,}"),
            fmt(m.get("maxrss_kb") / 1024.0 if m.get("maxrss_kb") else None, "{:.1f}"),
            fmt(b.get("memory_bytes") / 1048576.0 if b.get("memory_bytes") else None, "{:.1f}")))

    def rate(n):
        return rows.get(n, {}).get("bench", {}).get("rate")

    checks = []
    ratio = None
    if rate(10) and rate(10000):
        ratio = rate(10000) / rate(10)
    lines.append("")
    lines.append("Ratio of rates, 10,000 rules / 10 rules: %s" % (fmt(ratio, "{:.2f}") if ratio else "n/a"))
    hot = {n: (parse_bench(os.path.join(d, str(n), "hot.json")) or {}).get("rate") for n in sizes}
    lo, hi = min(sizes), max(sizes)
    if hot.get(lo) and hot.get(hi) and lo != hi:
        lines.append("Hot working set (the first %s requests only): %s rules %s/s, %s rules %s/s, ratio %.2f "
                     "(%.2f× slower)" % (os.environ.get("BENCH_HOT", "500"), "{:,}".format(lo), fmt(hot[lo]),
                                         "{:,}".format(hi), fmt(hot[hi]), hot[hi] / hot[lo], hot[lo] / hot[hi]))
    base = rows[min(sizes)]["measure"].get("maxrss_kb")
    for n in sizes:
        rss = rows[n]["measure"].get("maxrss_kb")
        if base and rss and n != min(sizes):
            lines.append("Memory of the compiled %s-rule set ≈ peak RSS minus the %s-rule run's: %.1f MiB" % (
                "{:,}".format(n), "{:,}".format(min(sizes)), (rss - base) / 1024.0))
    if 1000 in rows:
        v = rate(1000)
        checks.append(("≥ 300,000 decisions/s at 1,000 rules", fmt(v),
                       None if v is None else v >= TARGETS["rate_1000"]))
        v = rows[1000]["bench"].get("p99_us")
        checks.append(("p99 ≤ 20 µs at 1,000 rules", fmt(v, "{:.2f} µs"),
                       None if v is None else v <= TARGETS["p99_1000_us"]))
    if ratio is not None:
        checks.append(("10,000 rules at most 2× slower than 10", "%.2f× slower" % (1 / ratio),
                       1 / ratio <= TARGETS["slowdown_10000"]))
    c = rows.get(10000, {}).get("compile", {})
    if c:
        v = c.get("wall_s") if c.get("rc") == 0 else None
        checks.append(("compile of 10,000 rules < 1 s (`wardctl policy compile`, load + compile)",
                       fmt(v, "{:.3f} s"), None if v is None else v < TARGETS["compile_10000_s"]))
    lines.append("")
    lines.append("| target | measured | met |")
    lines.append("|---|---|---|")
    for name, val, ok in checks:
        lines.append("| %s | %s | %s |" % (name, val, {True: "yes", False: "**no**", None: "n/a"}[ok]))
    for n in sizes:
        if rows[n]["error"]:
            lines.append("")
            lines.append("**%s rules: failed** — %s" % ("{:,}".format(n), rows[n]["error"]))
    report = "\n".join(lines)
    print(report)
    for n in sizes:
        b = rows[n]["bench"]
        if b.get("raw") or (b and b.get("rate") is None):
            print("\nnote: could not read wardctl's bench JSON for %d rules; keys seen: %s" % (
                n, b.get("raw_keys") or b.get("raw")), file=sys.stderr)

    if md:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "?"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            commit += " (working tree with uncommitted changes)"
        # other benchmarks' sections (from the first "<!-- NAME-bench:start -->"
        # marker, or "## Identity", on) are kept as they are
        tail = ""
        if os.path.exists(md):
            old = open(md).read()
            m = re.search(r"\n<!-- [a-z-]+-bench:start -->", old)
            at = m.start() if m else -1
            if at < 0:
                at = old.find("\n## Identity")
            if at >= 0:
                tail = old[at:]
        with open(md, "w") as f:
            f.write(RESULTS_HEAD)
            f.write("## Latest run\n\n")
            f.write("- Date: %s\n- Machine: %s\n- Commit: %s\n" % (now, machine(), commit))
            f.write("- Command: `make bench` (bench/run.sh → bench/policy_bench.sh), one core "
                    "(`taskset`), %s s per size\n\n" % os.environ.get("BENCH_SECONDS", "?"))
            f.write(report + "\n\n" + RESULTS_NOTES)
            f.write(tail)
    return 0 if all(ok is not False for _, _, ok in checks) else 3


RESULTS_HEAD = """# Ward benchmark results

Policy engine throughput and latency with generated policy sets
(`bench/gen_policies.py`: distinct principals `spiffe://example.org/ns/nsX/sa/saY`,
paths `/api/vN/<resource>/{*}` as exact values, prefixes, `{*}`/`{**}` templates
and regexes, method lists, header conditions, IP blocks, negations, one DENY
policy per service; requests are JSON Lines, about 60% built to be allowed).
Regenerate with `make bench` (or `bench/run.sh --write-results`).

"""

RESULTS_NOTES = """Columns: decisions/s and latency percentiles as reported by
`wardctl policy bench --json` on one pinned core; *allowed* is the share of
allow decisions among the benchmarked ones; *load+compile+engine ms* are
wardctl's in-process timings (YAML parse + validation, Lua generation, loading
the bundle into a Lua state); *`policy compile` s* is the best of 3 wall-clock
runs of the whole `wardctl policy compile` command (process start, load,
validation, generation, output); *Lua bytes* the size of the generated source;
*peak RSS* the bench process's maximum resident set (it also holds the parsed
requests); *engine memory* the heap of the compiled set and its engine as
wardctl reports it. The targets are judged on the full request mix (20,000
distinct requests spread over all rules); the hot-working-set line shows how
much of the large-set slowdown is cache misses rather than matching work.
The machine may be shared: see the load average above, and expect the
10-rule rate (the ratio's denominator) to be the noisiest figure.
"""


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    if sys.argv[1] == "measure":
        cmd_measure(sys.argv[2:])
    elif sys.argv[1] == "report":
        sys.exit(cmd_report(sys.argv[2:]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
