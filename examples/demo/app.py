#!/usr/bin/env python3
"""app.py - one small shop service of the Ward demo (Python standard library only).

    python3 app.py NAME PORT [OUTBOUND] [--version V]

NAME is frontend, checkout, payments or inventory; the app listens in plaintext
on 127.0.0.1:PORT, which only its own ward-proxy reaches (`inbound.app`), and
answers JSON. OUTBOUND (HOST:PORT) is its sidecar's outbound listener: to call
another service the app sends plain HTTP there with `Host: <service>`, and the
proxy decides, originates mutual TLS with the app's SPIFFE identity and checks
the callee's. The app holds no certificate, no key and no policy.

--version (default v1) names the build: the demo runs checkout and payments
twice, v1 and v2 (the canary that examples/policies/routes.yaml sends some
calls to), each build with its own ward-proxy and SPIFFE identity. Every
answer carries "version", so a client sees which build served it.

Every answer says who called (the verified SPIFFE ID the proxy put in
X-Forwarded-Client-Cert) and the W3C trace id, which the app passes on to the
services it calls, so one trace id runs through every proxy's audit trail.
Each request the app receives is printed on stdout (its log): a request a
policy denied never shows up there.
"""
import http.client
import http.server
import json
import re
import secrets
import sys
import time

ARGS = sys.argv[1:]
VERSION = "v1"
if "--version" in ARGS:
    i = ARGS.index("--version")
    VERSION = ARGS[i + 1] if i + 1 < len(ARGS) else sys.exit("app.py: --version needs a value")
    del ARGS[i:i + 2]
if len(ARGS) not in (2, 3):
    sys.exit("usage: app.py NAME PORT [OUTBOUND] [--version V]")
NAME, PORT = ARGS[0], int(ARGS[1])
OUTBOUND = ARGS[2] if len(ARGS) > 2 else None


def log(msg):
    print("%s %s %s: %s" % (time.strftime("%H:%M:%S"), NAME, VERSION, msg), flush=True)


class Upstream(Exception):
    """A call through the sidecar did not answer 2xx."""

    def __init__(self, service, status, body):
        super().__init__("%s answered %d" % (service, status))
        self.service, self.status, self.body = service, status, body


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "shop-%s/%s" % (NAME, VERSION)

    def log_message(self, *args):  # the default goes to stderr; we log in serve()
        pass

    # -- what the sidecar tells us -------------------------------------------------------
    def caller(self):
        # X-Forwarded-Client-Cert: By=<our ID>;URI=<the verified caller's ID>
        m = re.search(r"URI=([^;,]+)", self.headers.get("X-Forwarded-Client-Cert", ""))
        return m.group(1) if m else None

    def trace_id(self):
        parts = self.headers.get("traceparent", "").split("-")
        return parts[1] if len(parts) == 4 else None

    # -- calling another service through our sidecar --------------------------------------
    def call(self, service, method, path, body=None, headers=None):
        if not OUTBOUND:
            raise RuntimeError("no outbound listener configured")
        host, port = OUTBOUND.rsplit(":", 1)
        hdrs = {"Host": service, "Content-Type": "application/json"}
        if self.headers.get("traceparent"):  # one trace through every hop
            hdrs["traceparent"] = self.headers["traceparent"]
        hdrs.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        log("  -> %s %s %s: %d" % (service, method, path, resp.status))
        if resp.status // 100 != 2:
            raise Upstream(service, resp.status, raw.strip())
        return json.loads(raw)

    # -- the services -----------------------------------------------------------------------
    def frontend(self, m, path, req):
        if m in ("GET", "HEAD") and path in ("/", "/products"):
            return 200, {"products": self.call("inventory", "GET", "/v1/items")["items"]}
        if m == "POST" and path == "/checkout":
            cart = req.get("cart", "c-42")
            # which checkout flow a tenant is on is checkout's policy (a `when` on x-tenant)
            tenant = self.headers.get("x-tenant", "acme")
            hdrs = {"x-tenant": tenant}
            # testers opt in to checkout's canary build (routes.yaml: canary-by-header)
            if self.headers.get("x-canary"):
                hdrs["x-canary"] = self.headers["x-canary"]
            order = self.call("checkout", "POST", "/v1/carts/%s/checkout" % cart,
                              {"items": req.get("items", ["sku-123"])}, hdrs)
            return 200, {"order": order}
        return None

    def checkout(self, m, path, req):
        mt = re.fullmatch(r"/v1/carts/([^/]+)/checkout", path)
        if m == "POST" and mt:
            items = req.get("items", ["sku-123"])
            reservation = self.call("inventory", "POST", "/v1/reservations", {"items": items})
            # payments refuses a charge without an idempotency key (policy payments.yaml)
            charge = self.call("payments", "POST", "/v1/charges", {"amount": 4200 * len(items)},
                               {"Idempotency-Key": "order-" + mt.group(1)})
            return 200, {"order_id": "o-" + secrets.token_hex(3), "cart": mt.group(1),
                         "status": "paid", "reservation": reservation, "charge": charge}
        if m == "GET" and path.startswith("/v1/orders/"):
            return 200, {"order_id": path.rsplit("/", 1)[1], "status": "paid"}
        return None

    def payments(self, m, path, req):
        if m == "POST" and path == "/v1/charges":
            return 200, {"charge_id": "ch_" + secrets.token_hex(6), "amount": req.get("amount"),
                         "status": "succeeded"}
        if m in ("GET", "HEAD") and re.fullmatch(r"/v[12]/charges/[^/]+", path):
            # both builds serve the v2 API; routes.yaml sends 10% of its reads to v2
            return 200, {"charge_id": path.rsplit("/", 1)[1], "status": "succeeded"}
        if path.startswith("/admin"):
            # would hand out secrets; the mesh-wide DENY keeps every caller but ops away
            return 200, {"admins": ["alice", "bob"], "api_keys": "sk_live_..."}
        return None

    def inventory(self, m, path, req):
        if m in ("GET", "HEAD") and path == "/v1/items":
            return 200, {"items": [{"sku": "sku-123", "name": "blue mug", "stock": 7},
                                   {"sku": "sku-456", "name": "red kettle", "stock": 2}]}
        if m == "POST" and path == "/v1/reservations":
            return 200, {"reservation_id": "r-" + secrets.token_hex(3), "items": req.get("items")}
        if m == "DELETE" and path.startswith("/v1/reservations/"):
            return 200, {"released": path.rsplit("/", 1)[1]}
        return None

    # -- plumbing ------------------------------------------------------------------------------
    def serve(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        path = self.path.split("?", 1)[0]
        log("%s %s from %s" % (self.command, path, self.caller() or "(no identity)"))
        try:
            req = json.loads(raw) if raw.strip() else {}
            if not isinstance(req, dict):
                req = {}
        except ValueError:
            req = {}
        try:
            if path == "/healthz":
                res = (200, {"status": "ok"})
            else:
                res = getattr(self, NAME)(self.command, path, req)
            if res is None:
                res = (404, {"error": "no such endpoint"})
        except Upstream as e:
            # pass the refusal on, saying which hop refused
            res = (e.status, {"error": "%s answered %d" % (e.service, e.status),
                              "upstream_body": e.body})
        except Exception as e:  # noqa: BLE001 - a demo app answers 502 and keeps serving
            res = (502, {"error": "%s: %s" % (type(e).__name__, e)})
        status, doc = res
        out = {"service": NAME, "version": VERSION, "caller": self.caller(),
               "trace_id": self.trace_id()}
        out.update(doc)
        body = (json.dumps(out) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = serve


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    if NAME not in ("frontend", "checkout", "payments", "inventory"):
        sys.exit("app.py: unknown service %r" % NAME)
    srv = Server(("127.0.0.1", PORT), Handler)
    log("listening on 127.0.0.1:%d%s" % (PORT, ", calling out through " + OUTBOUND if OUTBOUND else ""))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
