#!/usr/bin/env python3
# gen_routes.py - generate a realistic set of N `kind: Route` documents (plus the benchmark's own Route) for bench/route_bench.sh
"""
Usage:
  gen_routes.py set --routes N --out DIR --bench-host HOST --bench-service SVC [--seed S] [--td TD]
  gen_routes.py split --out FILE --route NAME:HOST:SVC=W,SVC=W [--route ...]

`set` writes DIR/routes-nsXX.yaml (multi-document YAML, one file per
namespace, about 50 Routes each) and DIR.meta.json (beside the folder: the
proxy loads every YAML/JSON file in DIR as policy). N counts every Route,
the benchmark's included: N-1 generated Routes plus one that serves
`--bench-host`, placed late (at index N-N//20-1 of N, i.e. 95% of the way
through the files; the last but one for N=10) so that nothing can profit from
it being first. Each generated Route has its own hosts (`<svc>`, often also
`<svc>.<ns>.svc`, sometimes a third alias) and 2 to 5 http entries in the
shapes real meshes use: a header canary (exact value or prefix), a weighted
split of a versioned API path (`/api/vK/<res>/*`, GET/HEAD, retries on
connect-failure/reset/503), a write path (POST/PUT/PATCH with a timeout and
no retries), a legacy prefix rewrite, a regex or template path, query-param
matches, request/response header add/set/remove, a rate limit on some, and a
catch-all entry last. Destinations are per-route services (`<svc>`,
`<svc>-v2`, `<svc>-canary`): ward-proxy warns that it has no upstream for
them (a mesh-wide set names services a given proxy never calls) and would
answer 503 if one were routed to; the benchmark only sends to its own host.

The benchmark's Route (host HOST, destination SVC) has the same shape: its
request (GET /api/v1/items/<n>, no canary header) skips a header-canary
entry and is routed by the second entry, which rewrites /api/v1/items/ to
/v1/items/, sets a request header, adds another, removes one, sets the
response header `x-bench-route: items-read` (the benchmark checks for it),
has a timeout and retries.

`split` writes one Route per --route (a single entry, no match, the given
weighted destinations) for the split-accuracy leg.

The output is deterministic for a given seed.
"""
import argparse
import json
import os
import random
import sys

RESOURCES = ["orders", "items", "users", "carts", "payments", "invoices", "refunds", "shipments",
             "reviews", "coupons", "accounts", "sessions", "reports", "prices", "stock"]
WORDS = ["catalog", "checkout", "billing", "ledger", "search", "profile", "notify", "pricing",
         "fraud", "inventory", "shipping", "tax", "media", "auth", "reco", "loyalty"]


def q(s):
    """A YAML double-quoted scalar."""
    return json.dumps(s)


def qlist(v):
    return "[" + ", ".join(q(x) for x in v) + "]"


def bench_route(host, svc):
    return """apiVersion: ward/v1
kind: Route
metadata: {name: bench-app, namespace: bench}
spec:
  hosts: [%s, %s]
  http:
    - name: canary-by-header
      match:
        - headers: {x-canary: "1"}
        - headers: {x-tenant: {prefix: beta-}}
      destinations: [{service: %s}]
      headers: {request: {set: {x-route: canary}}}
    - name: items-read
      match:
        - paths: ["/api/v1/items/*"]
          methods: [GET, HEAD]
      destinations: [{service: %s}]
      timeout: 5s
      retries: {attempts: 2, perTryTimeout: 2s, on: [connect-failure, reset, "503"]}
      rewrite: {prefix: /v1/items/}
      headers:
        request: {set: {x-route: items-read}, add: {x-via: ward-bench}, remove: [x-debug]}
        response: {set: {x-bench-route: items-read}, remove: [x-powered-by]}
    - name: stable
      destinations: [{service: %s}]
      timeout: 10s
""" % (q(host), q(host + ".bench.svc"), q(svc), q(svc), q(svc))


class Gen:
    def __init__(self, seed):
        self.rnd = random.Random(seed)

    def route(self, i, ns):
        rnd = self.rnd
        svc = "%s-%s%d" % (WORDS[i % len(WORDS)], RESOURCES[(i // len(WORDS)) % len(RESOURCES)], i)
        hosts = [svc]
        if rnd.random() < 0.7:
            hosts.append("%s.%s.svc" % (svc, ns))
        if rnd.random() < 0.15:
            hosts.append("%s-alias%d" % (svc, i))
        v2, canary = svc + "-v2", svc + "-canary"
        res = RESOURCES[i % len(RESOURCES)]
        ver = 1 + i % 3
        entries = []
        # header canary (most routes)
        if rnd.random() < 0.6:
            if rnd.random() < 0.5:
                m = '        - headers: {x-canary: "1"}\n'
            else:
                m = '        - headers: {x-tenant: {prefix: beta-}}\n          methods: [GET, HEAD]\n'
            entries.append(("canary", "      match:\n" + m +
                            "      destinations: [{service: %s}]\n" % canary +
                            "      headers: {request: {set: {x-route: canary}}}\n"))
        # weighted split of a versioned read API
        w = rnd.choice([95, 90, 80, 75, 50])
        entries.append(("reads", "      match:\n"
                        "        - paths: [%s]\n          methods: [GET, HEAD]\n"
                        "      destinations:\n        - {service: %s, weight: %d}\n        - {service: %s, weight: %d}\n"
                        "      timeout: %ds\n"
                        "      retries: {attempts: %d, perTryTimeout: %dms, on: [connect-failure, reset, \"503\"]}\n"
                        "      headers:\n        request: {add: {x-via: ward}, remove: [x-debug]}\n"
                        "        response: {remove: [x-powered-by]}\n"
                        % (q("/api/v%d/%s/*" % (ver, res)), svc, w, v2, 100 - w, rnd.choice([2, 3, 5]),
                           rnd.choice([1, 2, 3]), rnd.choice([250, 500, 1000]))))
        # writes: no retries, a longer timeout, sometimes a rate limit
        if rnd.random() < 0.5:
            rl = "      rateLimit: {requests: %d, per: 1s, key: source.principal}\n" % rnd.choice([50, 100, 500]) \
                if rnd.random() < 0.4 else ""
            entries.append(("writes", "      match:\n"
                            "        - paths: [%s, %s]\n          methods: [POST, PUT, PATCH]\n"
                            "      destinations: [{service: %s}]\n      timeout: %ds\n%s"
                            % (q("/api/v%d/%s" % (ver, res)), q("/api/v%d/%s/*" % (ver, res)), svc,
                               rnd.choice([5, 10, 30]), rl)))
        # legacy prefix rewrite
        if rnd.random() < 0.3:
            entries.append(("legacy", "      match: [{paths: [%s]}]\n"
                            "      destinations: [{service: %s}]\n      rewrite: {prefix: %s}\n"
                            % (q("/legacy/%s/*" % res), svc, q("/api/v1/%s/" % res))))
        # regex / template / query-param matches
        r = rnd.random()
        if r < 0.2:
            entries.append(("by-id", "      match:\n        - paths: [{regex: %s}]\n"
                            "      destinations: [{service: %s}]\n"
                            "      headers: {response: {set: {cache-control: no-store}}}\n"
                            % (q("^/api/v%d/%s/[0-9a-f]{8,32}/history$" % (ver, res)), svc)))
        elif r < 0.4:
            entries.append(("nested", "      match:\n        - paths: [%s]\n          queryParams: {debug: {exact: \"on\"}}\n"
                            "      destinations: [{service: %s}]\n"
                            % (q("/api/v%d/%s/{*}/lines/{**}" % (ver, res)), v2)))
        # catch-all last
        entries.append(("stable", "      destinations: [{service: %s}]\n      timeout: %ds\n"
                        % (svc, rnd.choice([5, 10, 15]))))
        out = ["apiVersion: ward/v1\nkind: Route\nmetadata: {name: %s, namespace: %s}\nspec:\n"
               "  hosts: %s\n  http:\n" % (svc, ns, qlist(hosts))]
        for name, body in entries:
            out.append("    - name: %s\n" % name)
            out.append(body)
        return "".join(out), len(entries), len(hosts)


def cmd_set(a):
    n = max(1, a.routes)
    os.makedirs(a.out, exist_ok=True)
    g = Gen(a.seed)
    per_file = 50
    bench_at = max(0, n - n // 20 - 1) if n >= 20 else max(0, n - 2)
    docs = []  # (file index, text)
    entries = hosts = 0
    gi = 0
    for k in range(n):
        f = k // per_file
        if k == bench_at:
            docs.append((f, bench_route(a.bench_host, a.bench_service)))
            entries += 3
            hosts += 2
            continue
        text, ne, nh = g.route(gi, "ns%02d" % f)
        gi += 1
        docs.append((f, text))
        entries += ne
        hosts += nh
    files = {}
    for f, text in docs:
        files.setdefault(f, []).append(text)
    for f, texts in sorted(files.items()):
        with open(os.path.join(a.out, "routes-ns%02d.yaml" % f), "w") as fh:
            fh.write("# generated by bench/gen_routes.py (seed %d)\n" % a.seed)
            for t in texts:
                fh.write("---\n" + t)
    meta = {"routes": n, "entries": entries, "hosts": hosts, "files": len(files), "bench_index": bench_at,
            "bench_host": a.bench_host, "seed": a.seed}
    json.dump(meta, open(a.out.rstrip("/") + ".meta.json", "w"))
    print("%d Routes (%d hosts, %d http entries) in %d files; the benchmark's Route is number %d of %d"
          % (n, hosts, entries, len(files), bench_at + 1, n))


def cmd_split(a):
    with open(a.out, "w") as fh:
        for spec in a.route:
            name, host, dests = spec.split(":", 2)
            fh.write("---\napiVersion: ward/v1\nkind: Route\nmetadata: {name: %s, namespace: bench}\nspec:\n"
                     "  hosts: [%s]\n  http:\n    - name: split\n      destinations:\n" % (name, q(host)))
            for d in dests.split(","):
                svc, w = d.split("=")
                fh.write("        - {service: %s, weight: %d}\n" % (svc, int(w)))
    print("%d split Routes in %s" % (len(a.route), a.out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("set")
    s.add_argument("--routes", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--bench-host", required=True)
    s.add_argument("--bench-service", required=True)
    s.add_argument("--seed", type=int, default=6)
    s = sub.add_parser("split")
    s.add_argument("--out", required=True)
    s.add_argument("--route", action="append", required=True, help="NAME:HOST:SVC=W,SVC=W")
    a = p.parse_args()
    {"set": cmd_set, "split": cmd_split}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
