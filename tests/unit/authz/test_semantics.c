/* test_semantics.c - the decision table: every matcher, every not, precedence, defaults, dry-run, audit */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "authz/authz.h"

/* A header every policy document shares. */
#define DOC(ns, name, extra)                                                                       \
    "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: " name ", namespace: " ns     \
    "}\nspec:\n" extra

#define CHECKOUT "spiffe://example.org/ns/shop/sa/checkout"
#define FRONTEND "spiffe://example.org/ns/shop/sa/frontend"
#define OPS "spiffe://example.org/ns/ops/sa/admin"
#define OTHER_TD "spiffe://other.org/ns/shop/sa/checkout"

typedef struct sem_case {
    const char *name;
    const char *policies; /* YAML */
    const char *input;    /* request JSON */
    const char *expect;   /* "allow|deny POLICY#RULE|- [audit] [dry=allow|deny POLICY#RULE|-]" */
    int default_allow;
} sem_case;

/* Renders a decision in the compact form of sem_case.expect. */
static void render(const authz_decision *d, char *out, size_t len)
{
    char who[256], dry[300] = "";
    if (d->policy)
        snprintf(who, sizeof(who), "%s#%d", d->policy, d->rule);
    else
        snprintf(who, sizeof(who), "-");
    if (d->has_dry_run) {
        char dwho[256];
        if (d->dry_run_policy)
            snprintf(dwho, sizeof(dwho), "%s#%d", d->dry_run_policy, d->dry_run_rule);
        else
            snprintf(dwho, sizeof(dwho), "-");
        snprintf(dry, sizeof(dry), " dry=%s %s", d->dry_run_decision == AUTHZ_ALLOW ? "allow" : "deny",
                 dwho);
    }
    snprintf(out, len, "%s %s%s%s", d->decision == AUTHZ_ALLOW ? "allow" : "deny", who,
             d->audit ? " audit" : "", dry);
}

static void run_case(const sem_case *c)
{
    policy_set *set;
    ward_diag diag;
    ward_diag_init(&diag);
    assert_int_equal(policy_set_new(&set), 0);
    int rc = policy_set_load_buffer(set, "case.yaml", c->policies, strlen(c->policies), &diag);
    if (rc != 0) {
        for (size_t i = 0; i < diag.n; i++)
            print_error("%s: %s\n", c->name, diag.msgs[i]);
        fail_msg("%s: policies did not load", c->name);
    }
    authz_options opts = {.default_allow = c->default_allow != 0};
    authz_bundle *b;
    ward_err err;
    rc = authz_bundle_new(set, &opts, &b, &err);
    if (rc != 0)
        fail_msg("%s: bundle: %s", c->name, err.msg);
    authz_engine *e;
    rc = authz_engine_new(b, &e, &err);
    if (rc != 0)
        fail_msg("%s: engine: %s", c->name, err.msg);
    authz_request req;
    authz_request_storage *st;
    rc = authz_request_from_json(c->input, strlen(c->input), &req, &st, &err);
    if (rc != 0)
        fail_msg("%s: input: %s", c->name, err.msg);
    authz_decision d;
    assert_int_equal(authz_decide(e, &req, false, &d), 0);
    char got[700];
    render(&d, got, sizeof(got));
    if (strcmp(got, c->expect) != 0)
        fail_msg("%s:\n  expected: %s\n  got:      %s (reason: %s)", c->name, c->expect, got,
                 d.reason ? d.reason : "");
    authz_decision_dispose(&d);
    authz_request_storage_free(st);
    authz_engine_free(e);
    authz_bundle_unref(b);
    policy_set_free(set);
    ward_diag_dispose(&diag);
}

/* ---- policies shared by many cases ---- */

static const char ALLOW_CHECKOUT_GET[] = DOC("shop", "pay-read",
    "  selector: {services: [payments]}\n"
    "  action: ALLOW\n"
    "  rules:\n"
    "    - from: [{principals: [\"" CHECKOUT "\"]}]\n"
    "      to: [{methods: [GET, HEAD], paths: [\"/v1/items\", \"/v1/items/*\"]}]\n");

static const char ADMIN_DENY[] = DOC("shop", "pay-read",
    "  selector: {services: [payments]}\n"
    "  action: ALLOW\n"
    "  rules: [{}]\n"
    "---\n") DOC("shop", "no-admin",
    "  action: DENY\n"
    "  rules:\n"
    "    - to: [{paths: [\"/admin/*\"]}]\n"
    "      from: [{notNamespaces: [ops]}]\n");

#define REQ(principal, service, method, path)                                                      \
    "{\"source\":{\"principal\":\"" principal "\",\"ip\":\"10.1.2.3\",\"port\":40000},"              \
    "\"destination\":{\"service\":\"" service "\",\"port\":8443},"                                  \
    "\"request\":{\"method\":\"" method "\",\"host\":\"Payments.Shop:8443\",\"path\":\"" path "\","  \
    "\"headers\":{\"x-tenant\":\"acme\",\"X-Empty\":\"\"}},\"connection\":{\"mtls\":true}}"

static const sem_case cases[] = {
    /* defaults */
    {"no policies: default deny", "", REQ(CHECKOUT, "payments", "GET", "/v1/items"), "deny -", 0},
    {"no policies: default allow", "", REQ(CHECKOUT, "payments", "GET", "/v1/items"), "allow -", 1},
    {"ALLOW for another service: default applies", ALLOW_CHECKOUT_GET,
     REQ(CHECKOUT, "inventory", "GET", "/v1/items"), "deny -", 0},
    {"ALLOW for another service, default allow", ALLOW_CHECKOUT_GET,
     REQ(CHECKOUT, "inventory", "GET", "/v1/items"), "allow -", 1},
    {"ALLOW exists but nothing matches: deny even with default allow", ALLOW_CHECKOUT_GET,
     REQ(FRONTEND, "payments", "GET", "/v1/items"), "deny -", 1},
    /* principals */
    {"principal exact matches", ALLOW_CHECKOUT_GET, REQ(CHECKOUT, "payments", "GET", "/v1/items"),
     "allow shop/pay-read#0", 0},
    {"principal exact differs", ALLOW_CHECKOUT_GET, REQ(FRONTEND, "payments", "GET", "/v1/items"),
     "deny -", 0},
    {"principal of another trust domain", ALLOW_CHECKOUT_GET,
     REQ(OTHER_TD, "payments", "GET", "/v1/items"), "deny -", 0},
    {"principal prefix", DOC("shop", "p", "  rules: [{from: [{principals: [\"spiffe://example.org/ns/shop/*\"]}]}]\n"),
     REQ(FRONTEND, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"principal prefix does not match other namespace", DOC("shop", "p", "  rules: [{from: [{principals: [\"spiffe://example.org/ns/shop/*\"]}]}]\n"),
     REQ(OPS, "payments", "GET", "/"), "deny -", 0},
    {"principal suffix", DOC("shop", "p", "  rules: [{from: [{principals: [\"*/sa/checkout\"]}]}]\n"),
     REQ(OTHER_TD, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"principal any", DOC("shop", "p", "  rules: [{from: [{principals: [\"*\"]}]}]\n"),
     REQ(OPS, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"principal any needs a principal", DOC("shop", "p", "  rules: [{from: [{principals: [\"*\"]}]}]\n"),
     "{\"destination\":{\"service\":\"payments\"}}", "deny -", 0},
    {"notPrincipals excludes", DOC("shop", "p", "  rules: [{from: [{notPrincipals: [\"" CHECKOUT "\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"notPrincipals lets others", DOC("shop", "p", "  rules: [{from: [{notPrincipals: [\"" CHECKOUT "\"]}]}]\n"),
     REQ(FRONTEND, "payments", "GET", "/"), "allow shop/p#0", 0},
    /* namespaces and trust domains */
    {"namespace matches any trust domain", DOC("shop", "p", "  rules: [{from: [{namespaces: [shop]}]}]\n"),
     REQ(OTHER_TD, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"namespace plus trustDomains restricts", DOC("shop", "p", "  rules: [{from: [{namespaces: [shop], trustDomains: [example.org]}]}]\n"),
     REQ(OTHER_TD, "payments", "GET", "/"), "deny -", 0},
    {"namespace plus trustDomains matches", DOC("shop", "p", "  rules: [{from: [{namespaces: [shop], trustDomains: [example.org]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"namespace differs", DOC("shop", "p", "  rules: [{from: [{namespaces: [ops]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"notNamespaces", DOC("shop", "p", "  rules: [{from: [{notNamespaces: [ops]}]}]\n"),
     REQ(OPS, "payments", "GET", "/"), "deny -", 0},
    {"namespace prefix", DOC("shop", "p", "  rules: [{from: [{namespaces: [\"sh*\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"namespace with a regex path", DOC("shop", "p", "  rules: [{from: [{namespaces: [shop]}], to: [{paths: [{regex: \"/v[0-9]/.*\"}]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/items"), "allow shop/p#0", 0},
    {"namespace prefix with a regex path", DOC("shop", "p", "  rules: [{from: [{namespaces: [\"sh*\"]}], to: [{paths: [{regex: \"/v[0-9]/.*\"}]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/items"), "allow shop/p#0", 0},
    {"namespace of another source with a regex path", DOC("shop", "p", "  rules: [{from: [{namespaces: [shop]}], to: [{paths: [{regex: \"/v[0-9]/.*\"}]}]}]\n"),
     REQ(OPS, "payments", "GET", "/v1/items"), "deny -", 0},
    {"invalid principal has no namespace", DOC("shop", "p", "  rules: [{from: [{namespaces: [shop]}], to: [{paths: [{regex: \"/v[0-9]/.*\"}]}]}]\n"),
     REQ("spiffe://example.org/ns/shop/sa/check%20out", "payments", "GET", "/v1/items"), "deny -", 0},
    {"no principal: no namespace", DOC("shop", "p", "  rules: [{from: [{namespaces: [\"*\"]}]}]\n"),
     "{\"destination\":{\"service\":\"payments\"}}", "deny -", 0},
    {"trustDomains alone", DOC("shop", "p", "  rules: [{from: [{trustDomains: [other.org]}]}]\n"),
     REQ(OTHER_TD, "payments", "GET", "/"), "allow shop/p#0", 0},
    /* ip blocks */
    {"ipBlocks v4 match", DOC("shop", "p", "  rules: [{from: [{ipBlocks: [10.0.0.0/8]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"ipBlocks v4 miss", DOC("shop", "p", "  rules: [{from: [{ipBlocks: [192.168.0.0/16, \"2001:db8::/32\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"ipBlocks v6 match", DOC("shop", "p", "  rules: [{from: [{ipBlocks: [\"2001:db8::/32\"]}]}]\n"),
     "{\"source\":{\"ip\":\"2001:db8::7\"},\"destination\":{\"service\":\"payments\"}}", "allow shop/p#0", 0},
    {"notIpBlocks", DOC("shop", "p", "  rules: [{from: [{notIpBlocks: [10.1.0.0/16]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"v4-mapped v6 source matches v4 block", DOC("shop", "p", "  action: DENY\n  rules: [{from: [{ipBlocks: [10.0.0.0/8]}]}]\n---\n")
     DOC("shop", "all", "  rules: [{}]\n"),
     "{\"source\":{\"ip\":\"::ffff:10.9.9.9\"},\"destination\":{\"service\":\"payments\"}}", "deny shop/p#0", 0},
    /* methods, hosts, ports */
    {"method matches", ALLOW_CHECKOUT_GET, REQ(CHECKOUT, "payments", "HEAD", "/v1/items"),
     "allow shop/pay-read#0", 0},
    {"method is case-sensitive", ALLOW_CHECKOUT_GET, REQ(CHECKOUT, "payments", "get", "/v1/items"),
     "deny -", 0},
    {"method differs", ALLOW_CHECKOUT_GET, REQ(CHECKOUT, "payments", "POST", "/v1/items"), "deny -", 0},
    {"notMethods", DOC("shop", "p", "  rules: [{to: [{notMethods: [DELETE]}]}]\n"),
     REQ(CHECKOUT, "payments", "DELETE", "/"), "deny -", 0},
    {"many methods via a set", DOC("shop", "p", "  rules: [{to: [{methods: [GET, HEAD, PUT, PATCH, OPTIONS, POST]}]}]\n"),
     REQ(CHECKOUT, "payments", "POST", "/"), "allow shop/p#0", 0},
    {"hosts case-insensitive", DOC("shop", "p", "  rules: [{to: [{hosts: [\"PAYMENTS.shop:8443\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"hosts prefix", DOC("shop", "p", "  rules: [{to: [{hosts: [\"payments.*\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"notHosts", DOC("shop", "p", "  rules: [{to: [{notHosts: [\"*:8443\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"ports match", DOC("shop", "p", "  rules: [{to: [{ports: [8443]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"ports as strings", DOC("shop", "p", "  rules: [{to: [{ports: [\"80\", \"8443\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"ports miss", DOC("shop", "p", "  rules: [{to: [{ports: [80]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"notPorts", DOC("shop", "p", "  rules: [{to: [{notPorts: [8443]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    /* paths */
    {"path exact", ALLOW_CHECKOUT_GET, REQ(CHECKOUT, "payments", "GET", "/v1/items"), "allow shop/pay-read#0", 0},
    {"path prefix", ALLOW_CHECKOUT_GET, REQ(CHECKOUT, "payments", "GET", "/v1/items/42"), "allow shop/pay-read#0", 0},
    {"path prefix matches bare prefix", DOC("shop", "p", "  rules: [{to: [{paths: [\"/v1/items/*\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/items/"), "allow shop/p#0", 0},
    {"path exact is not a prefix", ALLOW_CHECKOUT_GET, REQ(CHECKOUT, "payments", "GET", "/v1/itemsX"), "deny -", 0},
    {"path suffix", DOC("shop", "p", "  rules: [{to: [{paths: [\"*.json\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/a/b.json"), "allow shop/p#0", 0},
    {"path template {*}", DOC("shop", "p", "  rules: [{to: [{paths: [\"/v1/users/{*}/orders\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/users/7/orders"), "allow shop/p#0", 0},
    {"path template {*} is one segment", DOC("shop", "p", "  rules: [{to: [{paths: [\"/v1/users/{*}/orders\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/users/7/8/orders"), "deny -", 0},
    {"path template {**}", DOC("shop", "p", "  rules: [{to: [{paths: [\"/v1/users/{*}/orders/{**}\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/users/7/orders/a/b/c"), "allow shop/p#0", 0},
    {"path template {**} matches no segment", DOC("shop", "p", "  rules: [{to: [{paths: [\"/v1/users/{*}/orders/{**}\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/users/7/orders"), "allow shop/p#0", 0},
    {"path template {**} needs the segments before it", DOC("shop", "p", "  rules: [{to: [{paths: [\"/v1/{**}\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1x"), "deny -", 0},
    {"path template {*} needs a non-empty segment", DOC("shop", "p", "  rules: [{to: [{paths: [\"/v1/{*}\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/"), "deny -", 0},
    {"path template literal segments are exact", DOC("shop", "p", "  rules: [{to: [{paths: [\"/v1/users/{*}\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/usersX/7"), "deny -", 0},
    {"path regex", DOC("shop", "p", "  rules: [{to: [{paths: [{regex: \"/v2/[0-9]+\"}]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v2/123"), "allow shop/p#0", 0},
    {"path regex is anchored", DOC("shop", "p", "  rules: [{to: [{paths: [{regex: \"/v2/[0-9]+\"}]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v2/123/x"), "deny -", 0},
    {"notPaths", DOC("shop", "p", "  rules: [{to: [{notPaths: [\"/admin/*\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/admin/users"), "deny -", 0},
    /* when */
    {"when header value", DOC("shop", "p", "  rules: [{when: [{key: \"request.headers[x-tenant]\", values: [acme]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"when header name is case-insensitive", DOC("shop", "p", "  rules: [{when: [{key: \"request.headers[X-Tenant]\", values: [\"ac*\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"when header value is case-sensitive", DOC("shop", "p", "  rules: [{when: [{key: \"request.headers[x-tenant]\", values: [ACME]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"when * does not match an empty header", DOC("shop", "p", "  rules: [{when: [{key: \"request.headers[x-empty]\", values: [\"*\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"when absent header fails values", DOC("shop", "p", "  rules: [{when: [{key: \"request.headers[x-none]\", values: [\"*\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"when notValues", DOC("shop", "p", "  rules: [{when: [{key: \"request.headers[x-tenant]\", notValues: [acme]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"when source.ip CIDR", DOC("shop", "p", "  rules: [{when: [{key: source.ip, values: [10.1.0.0/16]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"when destination.port", DOC("shop", "p", "  rules: [{when: [{key: destination.port, values: [\"8443\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"when connection.mtls", DOC("shop", "p", "  rules: [{when: [{key: connection.mtls, values: [\"true\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"when source.namespace", DOC("shop", "p", "  rules: [{when: [{key: source.namespace, values: [ops]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"when all must hold", DOC("shop", "p", "  rules: [{when: [{key: request.method, values: [GET]}, {key: request.path, values: [/x]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"when lua true", DOC("shop", "p", "  rules: [{when: [{lua: \"req.request.method == 'GET' and req.source.namespace == 'shop'\"}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"when lua false", DOC("shop", "p", "  rules: [{when: [{lua: \"req.connection.mtls == false\"}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"when lua time", DOC("shop", "p", "  rules: [{when: [{lua: \"req.time.hour >= 8 and req.time.hour < 18\"}]}]\n"),
     "{\"destination\":{\"service\":\"payments\"},\"time\":\"2026-11-25T09:30:00Z\"}", "allow shop/p#0", 0},
    {"when lua time outside hours", DOC("shop", "p", "  rules: [{when: [{lua: \"req.time.hour >= 8 and req.time.hour < 18\"}]}]\n"),
     "{\"destination\":{\"service\":\"payments\"},\"time\":\"2026-11-25T19:30:00Z\"}", "deny -", 0},
    /* AND / OR structure */
    {"from alternatives are OR", DOC("shop", "p", "  rules: [{from: [{principals: [\"" FRONTEND "\"]}, {namespaces: [shop]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#0", 0},
    {"fields within a source are AND", DOC("shop", "p", "  rules: [{from: [{principals: [\"" CHECKOUT "\"], ipBlocks: [192.168.0.0/16]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"from AND to", DOC("shop", "p", "  rules: [{from: [{namespaces: [shop]}], to: [{methods: [POST]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
    {"second rule decides", DOC("shop", "p", "  rules: [{to: [{methods: [POST]}]}, {to: [{methods: [GET]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/p#1", 0},
    /* empty rules */
    {"rules omitted matches nothing", DOC("shop", "p", "  action: ALLOW\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 1},
    {"rules [] matches nothing", DOC("shop", "p", "  rules: []\n"), REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 1},
    {"rules [{}] matches everything", DOC("shop", "p", "  rules: [{}]\n"), REQ(CHECKOUT, "payments", "GET", "/"),
     "allow shop/p#0", 0},
    {"DENY with rules [] never denies", DOC("shop", "d", "  action: DENY\n  rules: []\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow -", 1},
    /* precedence */
    {"DENY beats ALLOW", ADMIN_DENY, REQ(CHECKOUT, "payments", "GET", "/admin/users"), "deny shop/no-admin#0", 0},
    {"DENY exception via notNamespaces", ADMIN_DENY, REQ(OPS, "payments", "GET", "/admin/users"),
     "allow shop/pay-read#0", 0},
    {"DENY not matching leaves ALLOW", ADMIN_DENY, REQ(CHECKOUT, "payments", "GET", "/v1"), "allow shop/pay-read#0", 0},
    {"DENY beats default allow", DOC("shop", "d", "  action: DENY\n  rules: [{to: [{methods: [DELETE]}]}]\n"),
     REQ(CHECKOUT, "payments", "DELETE", "/"), "deny shop/d#0", 1},
    {"first ALLOW policy in load order decides", DOC("shop", "a", "  rules: [{to: [{methods: [GET]}]}]\n---\n")
     DOC("shop", "b", "  rules: [{}]\n"), REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/a#0", 0},
    {"selector limits a DENY", DOC("shop", "d", "  selector: {services: [inventory]}\n  action: DENY\n  rules: [{}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow -", 1},
    /* audit */
    {"AUDIT marks an allow", DOC("shop", "a", "  rules: [{}]\n---\n") DOC("shop", "au", "  action: AUDIT\n  rules: [{to: [{paths: [\"/v1/*\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/x"), "allow shop/a#0 audit", 0},
    {"AUDIT marks a deny", DOC("shop", "au", "  action: AUDIT\n  rules: [{}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/x"), "deny - audit", 0},
    {"AUDIT not matching", DOC("shop", "au", "  action: AUDIT\n  rules: [{to: [{methods: [POST]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/v1/x"), "allow -", 1},
    {"AUDIT alone does not count as ALLOW", DOC("shop", "au", "  action: AUDIT\n  rules: [{}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow - audit", 1},
    /* dry-run */
    {"dry-run DENY reported, not enforced", DOC("shop", "a", "  rules: [{}]\n---\n") DOC("shop", "dd", "  action: DENY\n  mode: dry-run\n  rules: [{to: [{methods: [GET]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow shop/a#0 dry=deny shop/dd#0", 0},
    {"dry-run ALLOW would allow", DOC("shop", "da", "  mode: dry-run\n  rules: [{from: [{namespaces: [shop]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny - dry=allow shop/da#0", 0},
    {"dry-run ALLOW that would deny", DOC("shop", "da", "  mode: dry-run\n  rules: [{from: [{namespaces: [ops]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "allow - dry=deny -", 1},
    {"dry-run with enforced DENY", DOC("shop", "d", "  action: DENY\n  rules: [{}]\n---\n") DOC("shop", "da", "  mode: dry-run\n  rules: [{}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny shop/d#0 dry=deny shop/d#0", 0},
    {"no dry-run policy: no dry result", ALLOW_CHECKOUT_GET, REQ(CHECKOUT, "payments", "GET", "/v1/items"),
     "allow shop/pay-read#0", 0},
    /* hostile values are literals */
    {"value with quotes and brackets is literal", DOC("shop", "p", "  rules: [{to: [{paths: [\"/a\\\"]] or true --\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/x"), "deny -", 0},
    {"value with newline and return true is literal", DOC("shop", "p", "  rules: [{to: [{paths: [\"/a\\n return true --\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/a"), "deny -", 0},
    {"header value with ]] and % is literal", DOC("shop", "p", "  rules: [{when: [{key: \"request.headers[x-tenant]\", values: [\"]]%s\\\\\"]}]}]\n"),
     REQ(CHECKOUT, "payments", "GET", "/"), "deny -", 0},
};

static void test_case(void **state)
{
    run_case(*state);
}

int main(void)
{
    size_t n = sizeof(cases) / sizeof(cases[0]);
    struct CMUnitTest *tests = calloc(n, sizeof(*tests));
    if (tests == NULL || n < 60)
        return 1;
    for (size_t i = 0; i < n; i++) {
        tests[i].name = cases[i].name;
        tests[i].test_func = test_case;
        tests[i].initial_state = (void *)&cases[i];
    }
    int failed = _cmocka_run_group_tests("semantics", tests, n, NULL, NULL);
    free(tests);
    return failed;
}
