#!/usr/bin/env python3
# gen_policies.py - generate a realistic policy set of N rules and matching JSON Lines requests (allowed and denied) for the benchmarks
"""
Usage: gen_policies.py --rules N --out DIR [--requests M] [--seed S] [--td example.org]

Writes DIR/policies/<service>.yaml (multi-document YAML, one file per service,
several AuthorizationPolicies each) and DIR/requests.jsonl (M request
attribute objects, roughly 60% built to be allowed and 40% built to be
denied), plus DIR/meta.json describing what was generated.

The set looks like a real mesh's: rules spread over several services and
policies, distinct workload principals spiffe://TD/ns/nsX/sa/saY, namespace
prefixes, paths /api/vN/<resource>/{*} (exact, prefix*, templates with {*} and
{**}, some regexes), method lists, a few header conditions, IP blocks and
negations, and one DENY policy for admin paths per service. The output is
deterministic for a given seed.
"""
import argparse
import json
import os
import random
import sys

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]
RESOURCES = ["orders", "items", "users", "carts", "payments", "invoices", "refunds", "shipments",
             "reviews", "coupons", "accounts", "sessions", "reports", "prices", "stock"]
TENANTS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"]


def q(s):
    """A YAML double-quoted scalar."""
    return json.dumps(s)


def qlist(v):
    return "[" + ", ".join(q(x) for x in v) + "]"


class Gen:
    def __init__(self, n_rules, td, seed):
        self.n = n_rules
        self.td = td
        self.rnd = random.Random(seed)
        # services: 2 for tiny sets, up to 50 for large ones (about 200 rules each at 10k)
        self.n_services = max(2, min(50, n_rules // 50))
        self.services = ["svc%02d" % i for i in range(self.n_services)]
        # namespaces: a realistic handful per mesh
        self.n_ns = max(2, min(100, n_rules // 50))
        self.rules = []  # (service, policy name, rule dict) for request generation

    def principal(self, i):
        return "spiffe://%s/ns/ns%d/sa/sa%d" % (self.td, i % self.n_ns, i)

    def path_pattern(self, i):
        """Returns (kind, pattern) for rule i."""
        v = 1 + i % 3
        res = "%s%d" % (RESOURCES[i % len(RESOURCES)], i // len(RESOURCES) % max(1, self.n // 20))
        r = self.rnd.random()
        if r < 0.45:
            return "template", "/api/v%d/%s/{*}" % (v, res)
        if r < 0.65:
            return "exact", "/api/v%d/%s" % (v, res)
        if r < 0.80:
            return "prefix", "/api/v%d/%s/*" % (v, res)
        if r < 0.92:
            return "template", "/api/v%d/%s/{*}/items/{**}" % (v, res)
        return "regex", "^/api/v%d/%s/[0-9]+$" % (v, res)

    def rule(self, i):
        """A rule dict: from/to/when pieces as python data (rendered later)."""
        rnd = self.rnd
        rule = {"principals": [], "prefix_principals": [], "namespaces": [], "methods": [],
                "not_methods": [], "paths": [], "not_paths": [], "ip_blocks": [], "tenants": []}
        shape = rnd.random()
        n_princ = 1 + (rnd.random() < 0.3)
        if shape < 0.12:
            rule["prefix_principals"] = ["spiffe://%s/ns/ns%d/" % (self.td, i % self.n_ns)]
        elif shape < 0.20:
            rule["namespaces"] = ["ns%d" % (i % self.n_ns)]
        else:
            rule["principals"] = [self.principal(i + k * 7919) for k in range(n_princ)]
        for _ in range(1 + (rnd.random() < 0.25)):
            rule["paths"].append(self.path_pattern(i))
        if rnd.random() < 0.08:
            rule["not_methods"] = ["DELETE"]
        else:
            rule["methods"] = sorted(rnd.sample(METHODS[:5], 1 + (rnd.random() < 0.4)))
        if rule["paths"][0][0] in ("template", "prefix") and rnd.random() < 0.08:
            rule["not_paths"] = [rule["paths"][0][1].replace("{*}", "internal").replace("{**}", "x")
                                 .replace("*", "internal")]
        if rnd.random() < 0.06:
            rule["ip_blocks"] = ["10.%d.0.0/16" % (i % 250)]
        if rnd.random() < 0.10:
            rule["tenants"] = sorted(rnd.sample(TENANTS, 2))
        return rule

    def render_rule(self, r):
        out = []
        src = []
        if r["principals"] or r["prefix_principals"]:
            src.append("principals: " + qlist(r["principals"] + [p + "*" for p in r["prefix_principals"]]))
        if r["namespaces"]:
            src.append("namespaces: " + qlist(r["namespaces"]))
        if r["ip_blocks"]:
            src.append("ipBlocks: " + qlist(r["ip_blocks"]))
        out.append("    - from:")
        out.append("        - {" + ", ".join(src) + "}")
        op = []
        if r["methods"]:
            op.append("methods: " + qlist(r["methods"]))
        if r["not_methods"]:
            op.append("notMethods: " + qlist(r["not_methods"]))
        paths = []
        for kind, p in r["paths"]:
            paths.append("{regex: %s}" % q(p) if kind == "regex" else q(p))
        op.append("paths: [" + ", ".join(paths) + "]")
        if r["not_paths"]:
            op.append("notPaths: " + qlist(r["not_paths"]))
        out.append("      to:")
        out.append("        - {" + ", ".join(op) + "}")
        if r["tenants"]:
            out.append("      when:")
            out.append("        - {key: \"request.headers[x-tenant]\", values: %s}" % qlist(r["tenants"]))
        return out

    def generate(self):
        """Returns {service: yaml text}."""
        files = {s: [] for s in self.services}
        # one DENY policy (2 rules) per service while the budget allows, the rest ALLOW rules
        n_deny_services = min(self.n_services, max(0, (self.n - self.n_services) // 2))
        deny_rules = 2 * n_deny_services
        allow_total = self.n - deny_rules
        per_service = [allow_total // self.n_services + (1 if k < allow_total % self.n_services else 0)
                       for k in range(self.n_services)]
        idx = 0
        for k, svc in enumerate(self.services):
            docs = files[svc]
            if k < n_deny_services:
                docs.append("\n".join([
                    "apiVersion: ward/v1",
                    "kind: AuthorizationPolicy",
                    "metadata: {name: %s-deny-admin, namespace: mesh}" % svc,
                    "spec:",
                    "  selector: {services: [%s]}" % svc,
                    "  action: DENY",
                    "  rules:",
                    "    - to: [{paths: [\"/admin*\", \"/internal/{**}\"]}]",
                    "    - from: [{notNamespaces: [\"ns0\", \"ns1\"]}]",
                    "      to: [{methods: [\"DELETE\"], paths: [\"/api/v1/accounts/{*}\"]}]",
                ]))
            left = per_service[k]
            p = 0
            while left > 0:
                size = min(left, self.rnd.randint(5, 25))
                lines = [
                    "apiVersion: ward/v1",
                    "kind: AuthorizationPolicy",
                    "metadata: {name: %s-allow-%d, namespace: ns%d}" % (svc, p, p % self.n_ns),
                    "spec:",
                    "  selector: {services: [%s]}" % svc,
                    "  action: ALLOW",
                    "  rules:",
                ]
                for _ in range(size):
                    r = self.rule(idx)
                    idx += 1
                    self.rules.append((svc, r))
                    lines.extend(self.render_rule(r))
                docs.append("\n".join(lines))
                left -= size
                p += 1
        return {svc: "---\n".join(d + "\n" for d in docs) for svc, docs in files.items() if docs}

    # ---- requests ----------------------------------------------------------

    def concrete_path(self, kind, p):
        rnd = self.rnd
        if kind == "exact":
            return p
        if kind == "prefix":
            return p[:-1] + "%d" % rnd.randint(1, 99999)
        if kind == "regex":
            return p[1:-len("[0-9]+$")] + "%d" % rnd.randint(1, 99999)
        return p.replace("{**}", "a/b/c").replace("{*}", "%d" % rnd.randint(1, 99999))

    def request(self, svc, r, allowed):
        rnd = self.rnd
        if r["principals"]:
            principal = rnd.choice(r["principals"])
        elif r["prefix_principals"]:
            principal = r["prefix_principals"][0] + "sa/worker%d" % rnd.randint(1, 999)
        else:
            principal = "spiffe://%s/ns/%s/sa/app%d" % (self.td, r["namespaces"][0], rnd.randint(1, 999))
        kind, p = rnd.choice(r["paths"])
        path = self.concrete_path(kind, p)
        method = rnd.choice(r["methods"]) if r["methods"] else "GET"
        headers = {"user-agent": "bench/1.0", "accept": "application/json"}
        if r["tenants"]:
            headers["x-tenant"] = rnd.choice(r["tenants"])
        ip = "10.%d.%d.%d" % (int(r["ip_blocks"][0].split(".")[1]), rnd.randint(0, 255),
                              rnd.randint(1, 254)) if r["ip_blocks"] else "192.168.%d.%d" % (
            rnd.randint(0, 255), rnd.randint(1, 254))
        if not allowed:
            how = rnd.random()
            if how < 0.4:
                principal = "spiffe://%s/ns/untrusted%d/sa/intruder%d" % (self.td, rnd.randint(0, 9),
                                                                        rnd.randint(0, 9999))
            elif how < 0.6:
                method = "OPTIONS" if r["methods"] and "OPTIONS" not in r["methods"] else "DELETE"
            elif how < 0.8:
                path = "/api/v9/unknown%d/%d" % (rnd.randint(0, 999), rnd.randint(0, 999))
            elif how < 0.9:
                path = "/admin/users/%d" % rnd.randint(0, 999)
            else:
                principal = principal.replace("spiffe://%s/" % self.td, "spiffe://evil.example/")
        return {
            "source": {"principal": principal, "ip": ip, "port": rnd.randint(30000, 60000)},
            "destination": {"service": svc, "port": 8443},
            "request": {"method": method, "host": svc, "path": path, "protocol": "HTTP/1.1",
                        "headers": headers},
            "connection": {"mtls": True},
        }

    def requests(self, m, allow_share=0.6):
        out = []
        for _ in range(m):
            svc, r = self.rnd.choice(self.rules)
            out.append(self.request(svc, r, self.rnd.random() < allow_share))
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--td", default="example.org")
    a = ap.parse_args()
    if a.rules < 1:
        sys.exit("gen_policies.py: --rules must be >= 1")
    g = Gen(a.rules, a.td, a.seed)
    files = g.generate()
    pdir = os.path.join(a.out, "policies")
    os.makedirs(pdir, exist_ok=True)
    for name in os.listdir(pdir):
        os.unlink(os.path.join(pdir, name))
    for svc, text in sorted(files.items()):
        with open(os.path.join(pdir, svc + ".yaml"), "w") as f:
            f.write(text)
    reqs = g.requests(a.requests)
    with open(os.path.join(a.out, "requests.jsonl"), "w") as f:
        for r in reqs:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    n_rules = sum(t.count("\n    - ") for t in files.values())
    meta = {"rules": n_rules, "services": len(files), "policies": sum(t.count("kind: ") for t in files.values()),
            "requests": len(reqs), "seed": a.seed}
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f)
    if n_rules != a.rules:
        sys.exit("gen_policies.py: generated %d rules, wanted %d" % (n_rules, a.rules))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
