/* test_load.c - unit tests of policy loading: AuthorizationPolicy validation, errors, sets, files */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/ward.h"
#include "policy/policy.h"

/* Lines 1-3 of most documents below; spec starts on line 4. */
#define HDR "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\n"
/* A rule written after RULE starts at line 6, column 5. */
#define RULE HDR "spec:\n  rules:\n  - "

typedef struct loaded {
    policy_set *set;
    ward_diag d;
    int rc;
} loaded;

static void load_n(loaded *l, const char *text, size_t len)
{
    assert_int_equal(policy_set_new(&l->set), 0);
    ward_diag_init(&l->d);
    l->rc = policy_set_load_buffer(l->set, "p.yaml", text, len, &l->d);
}

static void load(loaded *l, const char *text)
{
    load_n(l, text, strlen(text));
}

static void unload(loaded *l)
{
    policy_set_free(l->set);
    ward_diag_dispose(&l->d);
}

static void dump_diag(const ward_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "  %s\n", d->msgs[i]);
}

static void assert_diag(const ward_diag *d, const char *msg)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->msgs[i], msg) == 0)
            return;
    fprintf(stderr, "expected diagnostic: %s\ngot %zu:\n", msg, d->n);
    dump_diag(d);
    fail();
}

/* The one valid policy of l. */
static const policy_authz *only(loaded *l)
{
    if (l->rc != 0 || l->d.n != 0) {
        fprintf(stderr, "unexpected rc %d:\n", l->rc);
        dump_diag(&l->d);
    }
    assert_int_equal(l->rc, 0);
    assert_int_equal(l->d.n, 0);
    assert_int_equal(policy_set_count(l->set), 1);
    return policy_set_get(l->set, 0);
}

/* text must be rejected with diagnostic msg (among others) and load nothing. */
static void check_error_n(const char *text, size_t len, const char *msg)
{
    loaded l;
    load_n(&l, text, len);
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(policy_set_count(l.set), 0);
    assert_diag(&l.d, msg);
    unload(&l);
}

static void check_only_error_n(const char *text, size_t len, const char *msg)
{
    loaded l;
    load_n(&l, text, len);
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(policy_set_count(l.set), 0);
    assert_diag(&l.d, msg);
    assert_int_equal(l.d.n, 1);
    unload(&l);
}

static void check_error(const char *text, const char *msg)
{
    check_error_n(text, strlen(text), msg);
}

/* ... with msg its only diagnostic. */
static void check_only_error(const char *text, const char *msg)
{
    loaded l;
    load(&l, text);
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(policy_set_count(l.set), 0);
    assert_diag(&l.d, msg);
    if (l.d.n != 1)
        dump_diag(&l.d);
    assert_int_equal(l.d.n, 1);
    unload(&l);
}

static void assert_match(const policy_match *m, policy_match_kind kind, const char *value)
{
    assert_int_equal(m->kind, kind);
    assert_int_equal(m->len, strlen(value));
    assert_string_equal(m->value, value);
}

/* ---- positive ---------------------------------------------------------------------- */

static const char design_example[] =
    "apiVersion: ward/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: payments-read, namespace: shop}\n"
    "spec:\n"
    "  selector: {services: [payments]}\n"
    "  action: ALLOW\n"
    "  mode: enforce\n"
    "  rules:\n"
    "    - from:\n"
    "        - principals: [\"spiffe://example.org/ns/shop/sa/checkout\", "
    "\"spiffe://example.org/ns/ops/*\"]\n"
    "      to:\n"
    "        - methods: [GET, HEAD]\n"
    "          paths: [\"/v1/items\", \"/v1/items/*\", \"/v1/users/{*}/orders/{**}\", "
    "{regex: \"^/v2/[0-9]+$\"}]\n"
    "      when:\n"
    "        - key: request.headers[X-Tenant]\n"
    "          values: [\"acme\", \"beta-*\"]\n"
    "        - lua: \"req.time.hour >= 8 and req.time.hour < 18\"\n"
    "  denyResponse: {status: 403, body: \"forbidden by payments policy\"}\n";

static void test_design_example(void **state)
{
    (void)state;
    loaded l;
    load(&l, design_example);
    const policy_authz *a = only(&l);
    assert_string_equal(a->name, "payments-read");
    assert_string_equal(a->ns, "shop");
    assert_string_equal(a->id, "shop/payments-read");
    assert_string_equal(a->pos.file, "p.yaml");
    assert_int_equal(a->pos.line, 1);
    assert_int_equal(a->pos.col, 1);
    assert_true(a->selector_present);
    assert_int_equal(a->n_services, 1);
    assert_string_equal(a->services[0], "payments");
    assert_int_equal(a->action, POLICY_ALLOW);
    assert_false(a->dry_run);
    assert_true(a->rules_present);
    assert_int_equal(a->n_rules, 1);
    assert_int_equal(a->deny_status, 403);
    assert_string_equal(a->deny_body, "forbidden by payments policy");

    const policy_rule *r = &a->rules[0];
    assert_int_equal(r->pos.line, 9);
    assert_int_equal(r->pos.col, 7);
    assert_true(r->from_present);
    assert_int_equal(r->n_from, 1);
    const policy_source *src = &r->from[0];
    assert_true(src->principals.present);
    assert_int_equal(src->principals.n, 2);
    assert_match(&src->principals.v[0], POLICY_MATCH_EXACT,
                 "spiffe://example.org/ns/shop/sa/checkout");
    assert_match(&src->principals.v[1], POLICY_MATCH_PREFIX, "spiffe://example.org/ns/ops/");
    assert_int_equal(src->principals.v[1].pos.line, 10);
    assert_int_equal(src->principals.v[1].pos.col, 68);
    assert_false(src->not_principals.present);
    assert_false(src->ip_blocks.present);

    assert_true(r->to_present);
    assert_int_equal(r->n_to, 1);
    const policy_operation *op = &r->to[0];
    assert_int_equal(op->methods.n, 2);
    assert_match(&op->methods.v[0], POLICY_MATCH_EXACT, "GET");
    assert_match(&op->methods.v[1], POLICY_MATCH_EXACT, "HEAD");
    assert_int_equal(op->paths.n, 4);
    assert_match(&op->paths.v[0], POLICY_MATCH_EXACT, "/v1/items");
    assert_match(&op->paths.v[1], POLICY_MATCH_PREFIX, "/v1/items/");
    assert_match(&op->paths.v[2], POLICY_MATCH_TEMPLATE, "/v1/users/{*}/orders/{**}");
    assert_match(&op->paths.v[3], POLICY_MATCH_REGEX, "^/v2/[0-9]+$");
    assert_false(op->hosts.present);
    assert_false(op->ports.present);

    assert_int_equal(r->n_when, 2);
    const policy_condition *k = &r->when[0];
    assert_false(k->is_lua);
    assert_int_equal(k->attr, POLICY_ATTR_REQUEST_HEADER);
    assert_string_equal(k->header, "x-tenant");
    assert_int_equal(k->values.n, 2);
    assert_match(&k->values.v[0], POLICY_MATCH_EXACT, "acme");
    assert_match(&k->values.v[1], POLICY_MATCH_PREFIX, "beta-");
    assert_false(k->not_values.present);
    assert_int_equal(k->pos.line, 15);
    assert_int_equal(k->pos.col, 11);
    assert_true(r->when[1].is_lua);
    assert_string_equal(r->when[1].lua, "req.time.hour >= 8 and req.time.hour < 18");
    unload(&l);
}

static void test_defaults(void **state)
{
    (void)state;
    loaded l;
    load(&l, "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {}\n");
    const policy_authz *a = only(&l);
    assert_string_equal(a->ns, "default");
    assert_string_equal(a->id, "default/p");
    assert_int_equal(a->action, POLICY_ALLOW);
    assert_false(a->dry_run);
    assert_false(a->selector_present);
    assert_int_equal(a->n_services, 0);
    assert_false(a->rules_present);
    assert_int_equal(a->n_rules, 0);
    assert_int_equal(a->deny_status, 0);
    assert_null(a->deny_body);
    unload(&l);
}

static void test_action_and_mode(void **state)
{
    (void)state;
    loaded l;
    load(&l, HDR "spec: {action: DENY, mode: dry-run}\n");
    assert_int_equal(only(&l)->action, POLICY_DENY);
    assert_true(only(&l)->dry_run);
    unload(&l);
    load(&l, HDR "spec: {action: AUDIT, mode: enforce}\n");
    assert_int_equal(only(&l)->action, POLICY_AUDIT);
    assert_false(only(&l)->dry_run);
    unload(&l);
}

static void test_rules_empty_and_match_all(void **state)
{
    (void)state;
    loaded l;
    load(&l, HDR "spec: {rules: []}\n");
    assert_true(only(&l)->rules_present);
    assert_int_equal(only(&l)->n_rules, 0);
    unload(&l);
    load(&l, HDR "spec: {rules: [{}]}\n");
    const policy_authz *a = only(&l);
    assert_int_equal(a->n_rules, 1);
    assert_false(a->rules[0].from_present);
    assert_false(a->rules[0].to_present);
    assert_int_equal(a->rules[0].n_when, 0);
    unload(&l);
}

static void test_string_pattern_kinds(void **state)
{
    (void)state;
    loaded l;
    load(&l, RULE "{to: [{methods: [\"*\", \"GE*\", \"*ET\", GET], notMethods: [DELETE]}]}\n");
    const policy_operation *op = &only(&l)->rules[0].to[0];
    assert_match(&op->methods.v[0], POLICY_MATCH_ANY, "");
    assert_match(&op->methods.v[1], POLICY_MATCH_PREFIX, "GE");
    assert_match(&op->methods.v[2], POLICY_MATCH_SUFFIX, "ET");
    assert_match(&op->methods.v[3], POLICY_MATCH_EXACT, "GET");
    assert_match(&op->not_methods.v[0], POLICY_MATCH_EXACT, "DELETE");
    assert_true(op->not_methods.present);
    unload(&l);
}

static void test_path_kinds(void **state)
{
    (void)state;
    loaded l;
    load(&l, RULE "{to: [{paths: [\"*\", \"*.json\", \"/api/*\", \"/\", \"/{**}\", \"/a/{*}\", "
                  "\"/a/{*}/\"], notPaths: [{regex: \"/admin/.*\"}, \"/admin\"]}]}\n");
    const policy_operation *op = &only(&l)->rules[0].to[0];
    assert_int_equal(op->paths.n, 7);
    assert_match(&op->paths.v[0], POLICY_MATCH_ANY, "");
    assert_match(&op->paths.v[1], POLICY_MATCH_SUFFIX, ".json");
    assert_match(&op->paths.v[2], POLICY_MATCH_PREFIX, "/api/");
    assert_match(&op->paths.v[3], POLICY_MATCH_EXACT, "/");
    assert_match(&op->paths.v[4], POLICY_MATCH_TEMPLATE, "/{**}");
    assert_match(&op->paths.v[5], POLICY_MATCH_TEMPLATE, "/a/{*}");
    assert_match(&op->paths.v[6], POLICY_MATCH_TEMPLATE, "/a/{*}/");
    assert_match(&op->not_paths.v[0], POLICY_MATCH_REGEX, "/admin/.*");
    assert_match(&op->not_paths.v[1], POLICY_MATCH_EXACT, "/admin");
    assert_int_equal(op->not_paths.v[0].pos.line, 6);
    unload(&l);
}

static void test_hosts_lowercased(void **state)
{
    (void)state;
    loaded l;
    load(&l, RULE "{to: [{hosts: [\"API.Example.COM\", \"*.Example.com\", \"Shop:8080\", "
                  "\"[::1]:443\"], notHosts: [\"ADMIN*\"]}]}\n");
    const policy_operation *op = &only(&l)->rules[0].to[0];
    assert_match(&op->hosts.v[0], POLICY_MATCH_EXACT, "api.example.com");
    assert_match(&op->hosts.v[1], POLICY_MATCH_SUFFIX, ".example.com");
    assert_match(&op->hosts.v[2], POLICY_MATCH_EXACT, "shop:8080");
    assert_match(&op->hosts.v[3], POLICY_MATCH_EXACT, "[::1]:443");
    assert_match(&op->not_hosts.v[0], POLICY_MATCH_PREFIX, "admin");
    unload(&l);
}

static void test_ports(void **state)
{
    (void)state;
    loaded l;
    load(&l, RULE "{to: [{ports: [80, \"8080\", 65535, 1], notPorts: ['443']}]}\n");
    const policy_operation *op = &only(&l)->rules[0].to[0];
    assert_true(op->ports.present);
    assert_int_equal(op->ports.n, 4);
    assert_int_equal(op->ports.v[0], 80);
    assert_int_equal(op->ports.v[1], 8080);
    assert_int_equal(op->ports.v[2], 65535);
    assert_int_equal(op->ports.v[3], 1);
    assert_int_equal(op->not_ports.n, 1);
    assert_int_equal(op->not_ports.v[0], 443);
    assert_int_equal(op->ports.pos.line, 6);
    unload(&l);
}

static void test_source_kinds(void **state)
{
    (void)state;
    loaded l;
    load(&l, RULE "{from: [{principals: [\"*\", \"spiffe://td/ns/a/sa/b\", \"spiffe://td/ns/a/*\", "
                  "\"spiffe://td/ns/a/sa/web-*\", \"spiffe://*\", \"*/sa/admin\"], "
                  "notPrincipals: [\"spiffe://other.org*\"], "
                  "namespaces: [shop, \"team-*\", \"*-prod\", \"*\"], notNamespaces: [kube.system], "
                  "trustDomains: [example.org, \"*.example.org\", \"corp.*\"], "
                  "notTrustDomains: [evil.org], "
                  "ipBlocks: [\"10.0.0.0/8\", \"192.168.1.7\", \"2001:db8::/32\", \"::1\"], "
                  "notIpBlocks: [\"10.1.0.0/16\"]}]}\n");
    const policy_source *s = &only(&l)->rules[0].from[0];
    assert_match(&s->principals.v[0], POLICY_MATCH_ANY, "");
    assert_match(&s->principals.v[1], POLICY_MATCH_EXACT, "spiffe://td/ns/a/sa/b");
    assert_match(&s->principals.v[2], POLICY_MATCH_PREFIX, "spiffe://td/ns/a/");
    assert_match(&s->principals.v[3], POLICY_MATCH_PREFIX, "spiffe://td/ns/a/sa/web-");
    assert_match(&s->principals.v[4], POLICY_MATCH_PREFIX, "spiffe://");
    assert_match(&s->principals.v[5], POLICY_MATCH_SUFFIX, "/sa/admin");
    assert_match(&s->not_principals.v[0], POLICY_MATCH_PREFIX, "spiffe://other.org");
    assert_match(&s->namespaces.v[0], POLICY_MATCH_EXACT, "shop");
    assert_match(&s->namespaces.v[1], POLICY_MATCH_PREFIX, "team-");
    assert_match(&s->namespaces.v[2], POLICY_MATCH_SUFFIX, "-prod");
    assert_match(&s->namespaces.v[3], POLICY_MATCH_ANY, "");
    assert_match(&s->not_namespaces.v[0], POLICY_MATCH_EXACT, "kube.system");
    assert_match(&s->trust_domains.v[0], POLICY_MATCH_EXACT, "example.org");
    assert_match(&s->trust_domains.v[1], POLICY_MATCH_SUFFIX, ".example.org");
    assert_match(&s->trust_domains.v[2], POLICY_MATCH_PREFIX, "corp.");
    assert_match(&s->not_trust_domains.v[0], POLICY_MATCH_EXACT, "evil.org");
    assert_match(&s->ip_blocks.v[0], POLICY_MATCH_CIDR, "10.0.0.0/8");
    assert_match(&s->ip_blocks.v[1], POLICY_MATCH_CIDR, "192.168.1.7");
    assert_match(&s->ip_blocks.v[2], POLICY_MATCH_CIDR, "2001:db8::/32");
    assert_match(&s->ip_blocks.v[3], POLICY_MATCH_CIDR, "::1");
    assert_match(&s->not_ip_blocks.v[0], POLICY_MATCH_CIDR, "10.1.0.0/16");
    unload(&l);
}

static void test_conditions(void **state)
{
    (void)state;
    loaded l;
    load(&l, RULE "{when: [{key: source.ip, values: [\"10.0.0.0/8\", \"fd00::/8\"]},\n"
                  "  {key: request.host, values: [\"API.Example.com\"], notValues: [\"*.INTERNAL\"]},\n"
                  "  {key: connection.mtls, values: [true]},\n"
                  "  {key: connection.mtls, notValues: [\"false\", no]},\n"
                  "  {key: destination.port, values: [8443, \"80\", \"*\"]},\n"
                  "  {key: request.path, values: [\"/a/{*}\", {regex: \"/b.*\"}]},\n"
                  "  {key: source.principal, values: [\"spiffe://td/ns/x/*\"]},\n"
                  "  {key: request.method, values: [GET]},\n"
                  "  {key: time, values: [\"2026-*\"]},\n"
                  "  {key: request.query, values: [\"*debug=1\", 123]}]}\n");
    const policy_rule *r = &only(&l)->rules[0];
    assert_int_equal(r->n_when, 10);
    assert_int_equal(r->when[0].attr, POLICY_ATTR_SOURCE_IP);
    assert_match(&r->when[0].values.v[0], POLICY_MATCH_CIDR, "10.0.0.0/8");
    assert_match(&r->when[0].values.v[1], POLICY_MATCH_CIDR, "fd00::/8");
    assert_int_equal(r->when[1].attr, POLICY_ATTR_REQUEST_HOST);
    assert_match(&r->when[1].values.v[0], POLICY_MATCH_EXACT, "api.example.com");
    assert_match(&r->when[1].not_values.v[0], POLICY_MATCH_SUFFIX, ".internal");
    assert_int_equal(r->when[2].attr, POLICY_ATTR_CONNECTION_MTLS);
    assert_match(&r->when[2].values.v[0], POLICY_MATCH_EXACT, "true");
    assert_false(r->when[3].values.present);
    assert_match(&r->when[3].not_values.v[0], POLICY_MATCH_EXACT, "false");
    assert_match(&r->when[3].not_values.v[1], POLICY_MATCH_EXACT, "false");
    assert_int_equal(r->when[4].attr, POLICY_ATTR_DESTINATION_PORT);
    assert_match(&r->when[4].values.v[0], POLICY_MATCH_EXACT, "8443");
    assert_match(&r->when[4].values.v[1], POLICY_MATCH_EXACT, "80");
    assert_match(&r->when[4].values.v[2], POLICY_MATCH_ANY, "");
    assert_match(&r->when[5].values.v[0], POLICY_MATCH_TEMPLATE, "/a/{*}");
    assert_match(&r->when[5].values.v[1], POLICY_MATCH_REGEX, "/b.*");
    assert_match(&r->when[6].values.v[0], POLICY_MATCH_PREFIX, "spiffe://td/ns/x/");
    assert_int_equal(r->when[7].attr, POLICY_ATTR_REQUEST_METHOD);
    assert_int_equal(r->when[8].attr, POLICY_ATTR_TIME);
    assert_match(&r->when[9].values.v[0], POLICY_MATCH_SUFFIX, "debug=1");
    assert_match(&r->when[9].values.v[1], POLICY_MATCH_EXACT, "123");
    assert_null(r->when[0].header);
    assert_int_equal(r->when[9].pos.line, 15);
    assert_int_equal(r->when[9].pos.col, 3);
    unload(&l);
}

static void test_every_attribute_name(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        policy_attr attr;
        const char *value;
    } keys[] = {
        {"source.principal", POLICY_ATTR_SOURCE_PRINCIPAL, "spiffe://td/x"},
        {"source.ip", POLICY_ATTR_SOURCE_IP, "10.0.0.1"},
        {"source.port", POLICY_ATTR_SOURCE_PORT, "1234"},
        {"source.namespace", POLICY_ATTR_SOURCE_NAMESPACE, "shop"},
        {"source.trustDomain", POLICY_ATTR_SOURCE_TRUST_DOMAIN, "example.org"},
        {"destination.service", POLICY_ATTR_DESTINATION_SERVICE, "payments"},
        {"destination.principal", POLICY_ATTR_DESTINATION_PRINCIPAL, "spiffe://td/y"},
        {"destination.port", POLICY_ATTR_DESTINATION_PORT, "8443"},
        {"request.method", POLICY_ATTR_REQUEST_METHOD, "GET"},
        {"request.host", POLICY_ATTR_REQUEST_HOST, "a.b"},
        {"request.path", POLICY_ATTR_REQUEST_PATH, "/x"},
        {"request.query", POLICY_ATTR_REQUEST_QUERY, "a=b"},
        {"request.headers[x-a]", POLICY_ATTR_REQUEST_HEADER, "v"},
        {"request.protocol", POLICY_ATTR_REQUEST_PROTOCOL, "HTTP/1.1"},
        {"connection.mtls", POLICY_ATTR_CONNECTION_MTLS, "true"},
        {"connection.sni", POLICY_ATTR_CONNECTION_SNI, "a.b"},
        {"time", POLICY_ATTR_TIME, "2026-01-01T00:00:00Z"},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), RULE "{when: [{key: \"%s\", values: [\"%s\"]}]}\n",
                 keys[i].key, keys[i].value);
        loaded l;
        load(&l, text);
        const policy_condition *k = &only(&l)->rules[0].when[0];
        assert_int_equal(k->attr, keys[i].attr);
        assert_string_equal(k->values.v[0].value, keys[i].value);
        if (keys[i].attr == POLICY_ATTR_REQUEST_HEADER)
            assert_string_equal(policy_attr_name(k->attr), "request.headers");
        else
            assert_string_equal(policy_attr_name(k->attr), keys[i].key);
        unload(&l);
    }
}

static void test_values_byte_exact(void **state)
{
    (void)state;
    /* NUL, quotes, "]]", "]=]", newlines and backslashes survive as written */
    static const char text[] =
        RULE "{when: [{key: \"request.headers[X-Data]\", values: [\"a\\0b\", \"q\\\"'x\", "
             "\"]]\", \"l1\\nl2\", \"back\\\\slash]=]\"]},\n"
             "  {lua: \"req.x == \\\"]]\\\" and\\nreq.y == '\\\\n'\"}]}\n"
             "  denyResponse: {status: 451, body: \"no\\0pe\\n]]\"}\n";
    loaded l;
    load_n(&l, text, sizeof(text) - 1);
    const policy_authz *a = only(&l);
    const policy_condition *k = &a->rules[0].when[0];
    assert_string_equal(k->header, "x-data");
    assert_int_equal(k->values.v[0].len, 3);
    assert_memory_equal(k->values.v[0].value, "a\0b", 4);
    assert_string_equal(k->values.v[1].value, "q\"'x");
    assert_string_equal(k->values.v[2].value, "]]");
    assert_string_equal(k->values.v[3].value, "l1\nl2");
    assert_string_equal(k->values.v[4].value, "back\\slash]=]");
    assert_string_equal(a->rules[0].when[1].lua, "req.x == \"]]\" and\nreq.y == '\\n'");
    assert_int_equal(a->deny_status, 451);
    assert_memory_equal(a->deny_body, "no\0pe\n]]", 9);
    unload(&l);
}

static void test_multi_document(void **state)
{
    (void)state;
    loaded l;
    load(&l, "# leading comment\n---\n" HDR "spec: {action: DENY}\n---\n---\n# empty\n"
             "---\napiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: q}\n"
             "spec: {}\n...\n");
    assert_int_equal(l.rc, 0);
    assert_int_equal(l.d.n, 0);
    assert_int_equal(policy_set_count(l.set), 2);
    assert_string_equal(policy_set_get(l.set, 0)->id, "ns/p");
    assert_int_equal(policy_set_get(l.set, 0)->pos.line, 3);
    assert_string_equal(policy_set_get(l.set, 1)->id, "default/q");
    assert_int_equal(policy_set_get(l.set, 1)->pos.line, 11);
    assert_null(policy_set_get(l.set, 2));
    unload(&l);
}

static void test_json_input(void **state)
{
    (void)state;
    loaded l;
    load(&l, "{\"apiVersion\": \"ward/v1\", \"kind\": \"AuthorizationPolicy\",\n"
             " \"metadata\": {\"name\": \"j\", \"namespace\": \"ns\"},\n"
             " \"spec\": {\"action\": \"DENY\", \"rules\": [{\"to\": [{\"ports\": [8080, \"9090\"],\n"
             "   \"paths\": [\"/x\", {\"regex\": \"^/y$\"}]}],\n"
             "   \"when\": [{\"key\": \"connection.mtls\", \"values\": [false]}]}],\n"
             "  \"denyResponse\": {\"status\": 418, \"body\": \"teapot\\u0000\"}}}\n");
    const policy_authz *a = only(&l);
    assert_string_equal(a->id, "ns/j");
    assert_int_equal(a->action, POLICY_DENY);
    assert_int_equal(a->rules[0].to[0].ports.v[0], 8080);
    assert_int_equal(a->rules[0].to[0].ports.v[1], 9090);
    assert_match(&a->rules[0].to[0].paths.v[1], POLICY_MATCH_REGEX, "^/y$");
    assert_int_equal(a->rules[0].to[0].paths.v[1].pos.line, 4);
    assert_match(&a->rules[0].when[0].values.v[0], POLICY_MATCH_EXACT, "false");
    assert_int_equal(a->deny_status, 418);
    assert_memory_equal(a->deny_body, "teapot\0", 8);
    unload(&l);
}

static void test_json_errors_have_positions(void **state)
{
    (void)state;
    check_only_error("{\"apiVersion\": \"ward/v1\", \"kind\": \"AuthorizationPolicy\",\n"
                     " \"metadata\": {\"name\": \"j\"},\n"
                     " \"spec\": {\"rules\": [{\"to\": [{\"methods\": [true]}]}]}}\n",
                     "p.yaml:3:42: spec.rules[0].to[0].methods[0]: expected a string, got the "
                     "boolean true (quote it: \"true\")");
}

static void test_valid_kept_beside_invalid(void **state)
{
    (void)state;
    loaded l;
    load(&l, HDR "spec: {}\n---\n" HDR "spec: {action: allow}\n---\n"
                 "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: r}\nspec: {}\n");
    assert_int_equal(l.rc, WARD_EPOLICY);
    /* the documents before and after the invalid one are kept */
    assert_int_equal(policy_set_count(l.set), 2);
    assert_string_equal(policy_set_get(l.set, 0)->id, "ns/p");
    assert_string_equal(policy_set_get(l.set, 1)->id, "default/r");
    assert_int_equal(l.d.n, 1);
    assert_diag(&l.d, "p.yaml:9:16: spec.action: invalid value \"allow\" (values are "
                      "case-sensitive: ALLOW); allowed: ALLOW, DENY, AUDIT");
    unload(&l);
    /* an invalid first document does not hide the next */
    load(&l, HDR "spec: {mode: x}\n---\n"
                 "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: r}\nspec: {}\n");
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(policy_set_count(l.set), 1);
    assert_string_equal(policy_set_get(l.set, 0)->id, "default/r");
    unload(&l);
}

static void test_all_errors_collected(void **state)
{
    (void)state;
    loaded l;
    load(&l, RULE "{to: [{methods: [get], paths: [x], ports: [0]}], from: [{ipBlocks: [bad]}]}\n"
                  "  action: NOPE\n");
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(l.d.n, 5);
    /* in document order */
    assert_string_equal(l.d.msgs[0], "p.yaml:6:22: spec.rules[0].to[0].methods[0]: method \"get\" "
                                     "must be uppercase (methods match case-sensitively)");
    assert_string_equal(l.d.msgs[4], "p.yaml:7:11: spec.action: invalid value \"NOPE\"; allowed: "
                                     "ALLOW, DENY, AUDIT");
    unload(&l);
}

static void test_revision(void **state)
{
    (void)state;
    policy_set *a, *b, *c;
    assert_int_equal(policy_set_new(&a), 0);
    /* nothing loaded: SHA-256 of no input */
    assert_string_equal(policy_set_revision(a),
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(policy_set_new(&b), 0);
    assert_int_equal(policy_set_new(&c), 0);
    const char *t1 = HDR "spec: {}\n", *t2 = "# nothing\n";
    assert_int_equal(policy_set_load_buffer(a, "one.yaml", t1, strlen(t1), NULL), 0);
    assert_int_equal(policy_set_load_buffer(a, "two.yaml", t2, strlen(t2), NULL), 0);
    assert_int_equal(policy_set_load_buffer(b, "one.yaml", t1, strlen(t1), NULL), 0);
    assert_int_equal(policy_set_load_buffer(b, "two.yaml", t2, strlen(t2), NULL), 0);
    assert_string_equal(policy_set_revision(a), policy_set_revision(b));
    assert_int_equal(strlen(policy_set_revision(a)), 64);
    for (const char *p = policy_set_revision(a); *p; p++)
        assert_non_null(strchr("0123456789abcdef", *p));
    /* another order, another name or other bytes: another revision */
    assert_int_equal(policy_set_load_buffer(c, "two.yaml", t2, strlen(t2), NULL), 0);
    assert_int_equal(policy_set_load_buffer(c, "one.yaml", t1, strlen(t1), NULL), 0);
    assert_string_not_equal(policy_set_revision(a), policy_set_revision(c));
    policy_set_free(c);
    assert_int_equal(policy_set_new(&c), 0);
    assert_int_equal(policy_set_load_buffer(c, "one.yml", t1, strlen(t1), NULL), 0);
    assert_int_equal(policy_set_load_buffer(c, "two.yaml", t2, strlen(t2), NULL), 0);
    assert_string_not_equal(policy_set_revision(a), policy_set_revision(c));
    policy_set_free(a);
    policy_set_free(b);
    policy_set_free(c);
}

static void test_attr_name(void **state)
{
    (void)state;
    assert_string_equal(policy_attr_name(POLICY_ATTR_SOURCE_PRINCIPAL), "source.principal");
    assert_string_equal(policy_attr_name(POLICY_ATTR_SOURCE_TRUST_DOMAIN), "source.trustDomain");
    assert_string_equal(policy_attr_name(POLICY_ATTR_REQUEST_HEADER), "request.headers");
    assert_string_equal(policy_attr_name(POLICY_ATTR_TIME), "time");
}

static void test_null_set_accessors(void **state)
{
    (void)state;
    assert_int_equal(policy_set_count(NULL), 0);
    assert_null(policy_set_get(NULL, 0));
    policy_set_free(NULL);
    policy_set *s;
    assert_int_equal(policy_set_new(&s), 0);
    assert_int_equal(policy_set_count(s), 0);
    assert_null(policy_set_get(s, 0));
    assert_int_equal(policy_set_load_buffer(s, "e", "", 0, NULL), 0);
    assert_int_equal(policy_set_load_buffer(NULL, "e", "", 0, NULL), WARD_EINVAL);
    policy_set_free(s);
}

/* ---- document-level errors --------------------------------------------------------- */

static void test_error_api_version(void **state)
{
    (void)state;
    check_only_error("apiVersion: ward/v2\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {}\n",
                     "p.yaml:1:13: apiVersion: unsupported apiVersion \"ward/v2\" (expected ward/v1)");
    check_only_error("kind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {}\n",
                     "p.yaml:1:1: apiVersion: required field is missing (write apiVersion: "
                     "ward/v1)");
    check_only_error("apiVersion: [ward/v1]\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
                     "spec: {}\n",
                     "p.yaml:1:13: apiVersion: expected a string, got a list");
}

static void test_error_kind(void **state)
{
    (void)state;
    check_only_error("apiVersion: ward/v1\nkind: Route\nmetadata: {name: p}\nspec: {hosts: [a]}\n",
                     "p.yaml:4:7: spec.http: required field is missing (the ordered list of http "
                     "routes)");
    check_only_error("apiVersion: ward/v1\nkind: Gateway\nmetadata: {name: p}\n",
                     "p.yaml:2:7: kind: unknown kind \"Gateway\" (supported kinds: "
                     "AuthorizationPolicy, Route)");
    check_only_error("apiVersion: ward/v1\nkind: authorizationpolicy\n",
                     "p.yaml:2:7: kind: unknown kind \"authorizationpolicy\" (supported kinds: "
                     "AuthorizationPolicy, Route)");
    check_only_error("apiVersion: ward/v1\nmetadata: {name: p}\nspec: {}\n",
                     "p.yaml:1:1: kind: required field is missing (supported kinds: "
                     "AuthorizationPolicy, Route)");
}

static void test_error_document_not_map(void **state)
{
    (void)state;
    check_only_error("- a\n- b\n", "p.yaml:1:1: document: expected a map with apiVersion, kind, "
                                   "metadata and spec, got a list");
    check_only_error("just text\n", "p.yaml:1:1: document: expected a map with apiVersion, kind, "
                                    "metadata and spec, got a string");
    check_only_error("[{\"apiVersion\": \"ward/v1\"}]",
                     "p.yaml:1:1: document: expected a map with apiVersion, kind, metadata and "
                     "spec, got a list");
}

static void test_error_yaml_syntax(void **state)
{
    (void)state;
    check_only_error(HDR "spec: {rules: [}\n",
                     "p.yaml:4:16: did not find expected node content (while parsing a flow node)");
    check_only_error(HDR "spec: {}\nspec: {}\n",
                     "p.yaml:5:1: duplicate key \"spec\" (first defined at line 4, column 1)");
    check_only_error(HDR "spec: &s {}\n",
                     "p.yaml:4:7: anchor &s is not supported (anchors and aliases are refused)");
}

static void test_error_unknown_fields(void **state)
{
    (void)state;
    check_only_error(HDR "spec: {}\nstatus: {}\n",
                     "p.yaml:5:1: status: unknown field; allowed: apiVersion, kind, metadata, spec");
    check_only_error("apiVersion: ward/v1\nkind: AuthorizationPolicy\n"
                     "metadata: {name: p, labels: {a: b}}\nspec: {}\n",
                     "p.yaml:3:21: metadata.labels: unknown field; allowed: name, namespace");
    check_only_error(HDR "spec: {rule: []}\n",
                     "p.yaml:4:8: spec.rule: unknown field (did you mean \"rules\"?); allowed: "
                     "selector, action, mode, rules, denyResponse");
    check_error(HDR "spec: {selector: {service: [a]}}\n",
                     "p.yaml:4:19: spec.selector.service: unknown field (did you mean "
                     "\"services\"?); allowed: services");
    check_only_error(RULE "{form: []}\n",
                     "p.yaml:6:6: spec.rules[0].form: unknown field (did you mean \"from\"?); "
                     "allowed: from, to, when");
    check_only_error(RULE "{from: [{principal: [\"*\"]}]}\n",
                     "p.yaml:6:14: spec.rules[0].from[0].principal: unknown field (did you mean "
                     "\"principals\"?); allowed: principals, notPrincipals, namespaces, "
                     "notNamespaces, trustDomains, notTrustDomains, ipBlocks, notIpBlocks");
    check_only_error(RULE "{from: [{requestPrincipals: [\"*\"]}]}\n",
                     "p.yaml:6:14: spec.rules[0].from[0].requestPrincipals: unknown field; "
                     "allowed: principals, notPrincipals, namespaces, notNamespaces, "
                     "trustDomains, notTrustDomains, ipBlocks, notIpBlocks");
    check_only_error(RULE "{to: [{methods: [GET], path: [/]}]}\n",
                     "p.yaml:6:28: spec.rules[0].to[0].path: unknown field (did you mean "
                     "\"paths\"?); allowed: methods, notMethods, hosts, notHosts, ports, "
                     "notPorts, paths, notPaths");
    check_only_error(RULE "{when: [{key: time, values: [x], value: [y]}]}\n",
                     "p.yaml:6:38: spec.rules[0].when[0].value: unknown field (did you mean "
                     "\"values\"?); allowed: key, values, notValues, lua");
    check_only_error(RULE "{to: [{paths: [{regex: \"/a\", flags: i}]}]}\n",
                     "p.yaml:6:34: spec.rules[0].to[0].paths[0].flags: unknown field; allowed: "
                     "regex");
    check_only_error(HDR "spec: {denyResponse: {status: 403, headers: {}}}\n",
                     "p.yaml:4:36: spec.denyResponse.headers: unknown field; allowed: status, "
                     "body");
    /* a key that is not an identifier is quoted in the path */
    check_only_error(HDR "spec: {\"a b\": 1}\n",
                     "p.yaml:4:8: spec[\"a b\"]: unknown field; allowed: selector, action, mode, "
                     "rules, denyResponse");
}

static void test_error_istio_nesting(void **state)
{
    (void)state;
    check_only_error(RULE "{to: [{operation: {methods: [GET]}}]}\n",
                     "p.yaml:6:12: spec.rules[0].to[0].operation: unknown field (Ward does not "
                     "nest: write the fields directly in the list item); allowed: methods, "
                     "notMethods, hosts, notHosts, ports, notPorts, paths, notPaths");
    check_only_error(RULE "{from: [{source: {principals: [\"*\"]}}]}\n",
                     "p.yaml:6:14: spec.rules[0].from[0].source: unknown field (Ward does not "
                     "nest: write the fields directly in the list item); allowed: principals, "
                     "notPrincipals, namespaces, notNamespaces, trustDomains, notTrustDomains, "
                     "ipBlocks, notIpBlocks");
}

static void test_error_metadata(void **state)
{
    (void)state;
    const char *pre = "apiVersion: ward/v1\nkind: AuthorizationPolicy\n";
    char text[1024];
    snprintf(text, sizeof(text), "%sspec: {}\n", pre);
    check_only_error(text, "p.yaml:1:1: metadata: required field is missing (metadata: {name: "
                           "..., namespace: ...})");
    snprintf(text, sizeof(text), "%smetadata: {namespace: a}\nspec: {}\n", pre);
    check_only_error(text, "p.yaml:3:11: metadata.name: required field is missing");
    snprintf(text, sizeof(text), "%smetadata: {name: \"\"}\nspec: {}\n", pre);
    check_only_error(text, "p.yaml:3:18: metadata.name: must not be empty");
    snprintf(text, sizeof(text), "%smetadata: {name: Payments}\nspec: {}\n", pre);
    check_only_error(text, "p.yaml:3:18: metadata.name: invalid name \"Payments\": use lowercase "
                           "letters, digits, '-' and '.', starting and ending with a letter or "
                           "digit (at most 253 characters)");
    snprintf(text, sizeof(text), "%smetadata: {name: -a}\nspec: {}\n", pre);
    check_error(text, "p.yaml:3:18: metadata.name: invalid name \"-a\": use lowercase letters, "
                      "digits, '-' and '.', starting and ending with a letter or digit (at most "
                      "253 characters)");
    snprintf(text, sizeof(text), "%smetadata: {name: a/b}\nspec: {}\n", pre);
    check_error(text, "p.yaml:3:18: metadata.name: invalid name \"a/b\": use lowercase letters, "
                      "digits, '-' and '.', starting and ending with a letter or digit (at most "
                      "253 characters)");
    snprintf(text, sizeof(text), "%smetadata: {name: p, namespace: Shop_1}\nspec: {}\n", pre);
    check_only_error(text, "p.yaml:3:32: metadata.namespace: invalid name \"Shop_1\": use "
                           "lowercase letters, digits, '-' and '.', starting and ending with a "
                           "letter or digit (at most 253 characters)");
    snprintf(text, sizeof(text), "%smetadata: {name: {a: 1}}\nspec: {}\n", pre);
    check_only_error(text, "p.yaml:3:18: metadata.name: expected a string, got a map");
    snprintf(text, sizeof(text), "%smetadata: {name: }\nspec: {}\n", pre);
    check_only_error(text, "p.yaml:3:18: metadata.name: expected a string, got null");
    snprintf(text, sizeof(text), "%smetadata: [p]\nspec: {}\n", pre);
    check_only_error(text, "p.yaml:3:11: metadata: expected a map, got a list");
    /* 253 characters is the limit */
    char name[300];
    memset(name, 'a', 254);
    name[254] = '\0';
    snprintf(text, sizeof(text), "%smetadata: {name: %s}\nspec: {}\n", pre, name);
    check_error(text, "p.yaml:3:18: metadata.name: invalid name \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\": use lowercase "
                      "letters, digits, '-' and '.', starting and ending with a letter or digit "
                      "(at most 253 characters)");
    name[253] = '\0';
    snprintf(text, sizeof(text), "%smetadata: {name: %s}\nspec: {}\n", pre, name);
    loaded l;
    load(&l, text);
    assert_int_equal(strlen(only(&l)->name), 253);
    unload(&l);
    /* numbers are fine as names; dots are fine */
    load(&l, "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: 42, namespace: "
             "a.b-c}\nspec: {}\n");
    assert_string_equal(only(&l)->id, "a.b-c/42");
    unload(&l);
}

static void test_error_spec(void **state)
{
    (void)state;
    check_only_error(HDR, "p.yaml:1:1: spec: required field is missing");
    check_only_error(HDR "spec: allow-all\n", "p.yaml:4:7: spec: expected a map, got a string");
    check_only_error(HDR "spec: {action: allow}\n",
                     "p.yaml:4:16: spec.action: invalid value \"allow\" (values are "
                     "case-sensitive: ALLOW); allowed: ALLOW, DENY, AUDIT");
    check_only_error(HDR "spec: {action: PERMIT}\n",
                     "p.yaml:4:16: spec.action: invalid value \"PERMIT\"; allowed: ALLOW, DENY, "
                     "AUDIT");
    check_only_error(HDR "spec: {mode: dryrun}\n",
                     "p.yaml:4:14: spec.mode: invalid value \"dryrun\"; allowed: enforce, dry-run");
    check_only_error(HDR "spec: {mode: Enforce}\n",
                     "p.yaml:4:14: spec.mode: invalid value \"Enforce\" (values are "
                     "case-sensitive: enforce); allowed: enforce, dry-run");
    check_only_error(HDR "spec: {rules: {from: []}}\n",
                     "p.yaml:4:15: spec.rules: expected a list, got a map");
    check_only_error(HDR "spec: {rules: }\n", "p.yaml:4:15: spec.rules: expected a list, got null");
    check_only_error(RULE "\n", "p.yaml:6:4: spec.rules[0]: expected a map, got null");
    check_only_error(RULE "allow\n",
                     "p.yaml:6:5: spec.rules[0]: expected a map, got a string");
}

static void test_error_selector(void **state)
{
    (void)state;
    check_only_error(HDR "spec: {selector: {}}\n",
                     "p.yaml:4:18: spec.selector.services: required field is missing (omit "
                     "selector to select every service)");
    check_only_error(HDR "spec: {selector: {services: []}}\n",
                     "p.yaml:4:29: spec.selector.services: must not be empty (omit selector to "
                     "select every service)");
    check_only_error(HDR "spec: {selector: {services: payments}}\n",
                     "p.yaml:4:29: spec.selector.services: expected a list, got a string (write "
                     "[value] for a single value)");
    check_only_error(HDR "spec: {selector: {services: [a, \"\"]}}\n",
                     "p.yaml:4:33: spec.selector.services[1]: must not be empty");
    check_only_error(HDR "spec: {selector: {services: [\"pay*\"]}}\n",
                     "p.yaml:4:30: spec.selector.services[0]: service names are exact, not "
                     "patterns (omit selector to select every service)");
    check_only_error(HDR "spec: {selector: {services: [\"a b\"]}}\n",
                     "p.yaml:4:30: spec.selector.services[0]: invalid service name \"a b\": no "
                     "spaces or control characters");
    check_only_error(HDR "spec: {selector: {services: [null]}}\n",
                     "p.yaml:4:30: spec.selector.services[0]: expected a string, got null");
    check_only_error(HDR "spec: {selector: [payments]}\n",
                     "p.yaml:4:18: spec.selector: expected a map, got a list");
}

static void test_error_lists(void **state)
{
    (void)state;
    check_only_error(RULE "{from: []}\n",
                     "p.yaml:6:12: spec.rules[0].from: must not be empty (omit from to match any "
                     "source)");
    check_only_error(RULE "{to: []}\n",
                     "p.yaml:6:10: spec.rules[0].to: must not be empty (omit to to match any "
                     "operation)");
    check_only_error(RULE "{when: []}\n",
                     "p.yaml:6:12: spec.rules[0].when: must not be empty (omit when for no "
                     "conditions)");
    check_only_error(RULE "{from: {principals: [\"*\"]}}\n",
                     "p.yaml:6:12: spec.rules[0].from: expected a list, got a map");
    check_only_error(RULE "{from: [{}]}\n",
                     "p.yaml:6:13: spec.rules[0].from[0]: an empty source matches nothing "
                     "useful; set at least one of: principals, notPrincipals, namespaces, "
                     "notNamespaces, trustDomains, notTrustDomains, ipBlocks, notIpBlocks");
    check_only_error(RULE "{to: [{}]}\n",
                     "p.yaml:6:11: spec.rules[0].to[0]: an empty operation matches nothing "
                     "useful; set at least one of: methods, notMethods, hosts, notHosts, ports, "
                     "notPorts, paths, notPaths");
    check_only_error(RULE "{to: [{methods: []}]}\n",
                     "p.yaml:6:21: spec.rules[0].to[0].methods: must not be empty (omit the "
                     "field for no constraint)");
    check_only_error(RULE "{to: [{methods: GET}]}\n",
                     "p.yaml:6:21: spec.rules[0].to[0].methods: expected a list, got a string "
                     "(write [value] for a single value)");
    check_only_error(RULE "{to: [{ports: 80}]}\n",
                     "p.yaml:6:19: spec.rules[0].to[0].ports: expected a list, got a number "
                     "(write [value] for a single value)");
    check_only_error(RULE "{to: [[GET]]}\n",
                     "p.yaml:6:11: spec.rules[0].to[0]: expected a map, got a list");
}

static void test_error_scalar_types(void **state)
{
    (void)state;
    check_only_error(RULE "{to: [{methods: [yes]}]}\n",
                     "p.yaml:6:22: spec.rules[0].to[0].methods[0]: expected a string, got the "
                     "boolean yes (quote it: \"yes\")");
    check_only_error(RULE "{to: [{methods: [Off]}]}\n",
                     "p.yaml:6:22: spec.rules[0].to[0].methods[0]: expected a string, got the "
                     "boolean Off (quote it: \"Off\")");
    check_only_error(RULE "{when: [{key: request.query, values: [~]}]}\n",
                     "p.yaml:6:43: spec.rules[0].when[0].values[0]: expected a string, got null");
    check_only_error(RULE "{when: [{key: request.query, values: [[a]]}]}\n",
                     "p.yaml:6:43: spec.rules[0].when[0].values[0]: expected a string, got a list");
    check_only_error(RULE "{to: [{hosts: [{a: b}]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].hosts[0]: expected a string, got a map");
    /* quoted booleans are strings */
    loaded l;
    load(&l, RULE "{when: [{key: request.query, values: [\"yes\", 'null', 1.5]}]}\n");
    assert_string_equal(only(&l)->rules[0].when[0].values.v[0].value, "yes");
    assert_string_equal(only(&l)->rules[0].when[0].values.v[1].value, "null");
    assert_string_equal(only(&l)->rules[0].when[0].values.v[2].value, "1.5");
    unload(&l);
}

static void test_error_patterns(void **state)
{
    (void)state;
    static const char *const bad[] = {"a*b", "**", "*a*", "a**"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512], msg[512];
        snprintf(text, sizeof(text), RULE "{when: [{key: request.query, values: [\"%s\"]}]}\n",
                 bad[i]);
        snprintf(msg, sizeof(msg),
                 "p.yaml:6:43: spec.rules[0].when[0].values[0]: invalid pattern \"%s\": \"*\" is "
                 "allowed only alone (\"*\"), at the end (\"prefix*\") or at the start "
                 "(\"*suffix\")",
                 bad[i]);
        check_only_error(text, msg);
    }
    check_only_error(RULE "{when: [{key: request.query, values: [\"\"]}]}\n",
                     "p.yaml:6:43: spec.rules[0].when[0].values[0]: must not be empty");
    check_only_error(RULE "{to: [{methods: [\"\"]}]}\n",
                     "p.yaml:6:22: spec.rules[0].to[0].methods[0]: must not be empty");
}

static void test_error_paths(void **state)
{
    (void)state;
    check_only_error(RULE "{to: [{paths: [\"/a/{**}/b\"]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].paths[0]: template \"{**}\" must be last");
    check_only_error(RULE "{to: [{paths: [\"/a\", \"/a/{**}/\"]}]}\n",
                     "p.yaml:6:26: spec.rules[0].to[0].paths[1]: template \"{**}\" must be last");
    check_only_error(RULE "{to: [{paths: [\"/users/{id}\"]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].paths[0]: invalid template segment "
                     "\"{id}\": use \"{*}\" for one segment or \"{**}\" for the rest");
    check_only_error(RULE "{to: [{paths: [\"/a/x{*}\"]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].paths[0]: invalid template segment "
                     "\"x{*}\": use \"{*}\" for one segment or \"{**}\" for the rest");
    check_only_error(RULE "{to: [{paths: [\"/a/{*}/b*\"]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].paths[0]: \"*\" is not allowed in a "
                     "template segment (\"b*\"); use \"{*}\"");
    check_only_error(RULE "{to: [{paths: [\"/a//{*}\"]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].paths[0]: path template \"/a//{*}\" has an "
                     "empty segment (\"//\")");
    check_only_error(RULE "{to: [{paths: [\"{*}/a\"]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].paths[0]: path template \"{*}/a\" must "
                     "start with \"/\"");
    check_only_error(RULE "{to: [{paths: [\"v1/items\"]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].paths[0]: path \"v1/items\" must start "
                     "with \"/\" (or be \"*\" or \"*suffix\")");
    check_only_error(RULE "{to: [{notPaths: [\"v1*\"]}]}\n",
                     "p.yaml:6:23: spec.rules[0].to[0].notPaths[0]: path \"v1*\" must start with "
                     "\"/\" (or be \"*\" or \"*suffix\")");
    check_only_error(RULE "{to: [{paths: [\"/a?b=1\"]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].paths[0]: path \"/a?b=1\" must not contain "
                     "\"?\" (paths are matched without the query; use request.query)");
    check_only_error(RULE "{to: [{paths: [\"/a\\0\"]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].paths[0]: path \"/a\\x00\" must not "
                     "contain NUL bytes");
}

static void test_error_regex(void **state)
{
    (void)state;
    check_only_error(RULE "{to: [{paths: [{regex: \"^/v2/(\"}]}]}\n",
                     "p.yaml:6:28: spec.rules[0].to[0].paths[0].regex: invalid regex \"^/v2/(\": "
                     "missing closing parenthesis at offset 6");
    check_only_error(RULE "{to: [{paths: [{regex: \"[z-a]\"}]}]}\n",
                     "p.yaml:6:28: spec.rules[0].to[0].paths[0].regex: invalid regex \"[z-a]\": "
                     "range out of order in character class at offset 3");
    check_only_error(RULE "{to: [{paths: [{regex: \"\"}]}]}\n",
                     "p.yaml:6:28: spec.rules[0].to[0].paths[0].regex: must not be empty");
    check_only_error(RULE "{to: [{paths: [{}]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].paths[0].regex: required field is missing "
                     "(a path is a string or {regex: \"...\"})");
    check_only_error(RULE "{to: [{paths: [{regex: [a]}]}]}\n",
                     "p.yaml:6:28: spec.rules[0].to[0].paths[0].regex: expected a string, got a "
                     "list");
    /* regex is for paths only */
    check_only_error(RULE "{to: [{methods: [{regex: \"G.*\"}]}]}\n",
                     "p.yaml:6:22: spec.rules[0].to[0].methods[0]: expected a string, got a map");
    char *text = malloc(6000);
    assert_non_null(text);
    int n = snprintf(text, 6000, RULE "{to: [{paths: [{regex: \"");
    memset(text + n, 'a', 4097);
    snprintf(text + n + 4097, 6000 - (size_t)n - 4097, "\"}]}]}\n");
    check_only_error(text, "p.yaml:6:28: spec.rules[0].to[0].paths[0].regex: too long (4097 "
                           "bytes, limit 4096)");
    free(text);
}

static void test_error_methods_hosts(void **state)
{
    (void)state;
    check_only_error(RULE "{to: [{methods: [get]}]}\n",
                     "p.yaml:6:22: spec.rules[0].to[0].methods[0]: method \"get\" must be "
                     "uppercase (methods match case-sensitively)");
    check_only_error(RULE "{to: [{methods: [\"GE T\"]}]}\n",
                     "p.yaml:6:22: spec.rules[0].to[0].methods[0]: invalid method \"GE T\": not "
                     "an HTTP token");
    check_only_error(RULE "{to: [{notMethods: [\"P(ST\"]}]}\n",
                     "p.yaml:6:25: spec.rules[0].to[0].notMethods[0]: invalid method \"P(ST\": "
                     "not an HTTP token");
    check_only_error(RULE "{to: [{hosts: [\"a b.com\"]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].hosts[0]: invalid host \"a b.com\": only "
                     "letters, digits, '.', '-', '_', ':' and '[ ]' are allowed");
    check_only_error(RULE "{to: [{notHosts: [\"a/b\"]}]}\n",
                     "p.yaml:6:23: spec.rules[0].to[0].notHosts[0]: invalid host \"a/b\": only "
                     "letters, digits, '.', '-', '_', ':' and '[ ]' are allowed");
}

static void test_error_ports(void **state)
{
    (void)state;
    static const char *const bad[] = {"0", "65536", "\"abc\"", "-1", "\"+80\"", "\"\"", "1.5",
                                      "0x50"};
    static const char *const shown[] = {"0", "65536", "abc", "-1", "+80", "", "1.5", "0x50"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[512], msg[512];
        snprintf(text, sizeof(text), RULE "{to: [{ports: [%s]}]}\n", bad[i]);
        snprintf(msg, sizeof(msg),
                 "p.yaml:6:20: spec.rules[0].to[0].ports[0]: invalid port \"%s\": must be an "
                 "integer 1..65535",
                 shown[i]);
        check_only_error(text, msg);
    }
    check_only_error(RULE "{to: [{notPorts: [80, true]}]}\n",
                     "p.yaml:6:27: spec.rules[0].to[0].notPorts[1]: expected a port number, got "
                     "a boolean");
    check_only_error(RULE "{to: [{ports: [[80]]}]}\n",
                     "p.yaml:6:20: spec.rules[0].to[0].ports[0]: expected a port number, got a "
                     "list");
}

static void test_error_cidr(void **state)
{
    (void)state;
    check_only_error(RULE "{from: [{ipBlocks: [\"10.0.0.1/8\"]}]}\n",
                     "p.yaml:6:25: spec.rules[0].from[0].ipBlocks[0]: invalid CIDR block "
                     "\"10.0.0.1/8\": host bits set after the /8 prefix");
    check_only_error(RULE "{from: [{notIpBlocks: [\"10.0.0.0/33\"]}]}\n",
                     "p.yaml:6:28: spec.rules[0].from[0].notIpBlocks[0]: invalid CIDR block "
                     "\"10.0.0.0/33\": invalid prefix length (0..32)");
    check_only_error(RULE "{from: [{ipBlocks: [\"2001:db8::1/32\"]}]}\n",
                     "p.yaml:6:25: spec.rules[0].from[0].ipBlocks[0]: invalid CIDR block "
                     "\"2001:db8::1/32\": host bits set after the /32 prefix");
    check_only_error(RULE "{from: [{ipBlocks: [\"*\"]}]}\n",
                     "p.yaml:6:25: spec.rules[0].from[0].ipBlocks[0]: invalid CIDR block \"*\": "
                     "invalid IP address \"*\"");
    check_only_error(RULE "{from: [{ipBlocks: [\"\"]}]}\n",
                     "p.yaml:6:25: spec.rules[0].from[0].ipBlocks[0]: must not be empty");
    check_only_error(RULE "{when: [{key: source.ip, values: [\"300.1.1.1\"]}]}\n",
                     "p.yaml:6:39: spec.rules[0].when[0].values[0]: invalid CIDR block "
                     "\"300.1.1.1\": invalid IP address \"300.1.1.1\"");
}

static void test_error_principals(void **state)
{
    (void)state;
    check_only_error(RULE "{from: [{principals: [\"spiffe://Example.org/x\"]}]}\n",
                     "p.yaml:6:27: spec.rules[0].from[0].principals[0]: invalid SPIFFE ID "
                     "\"spiffe://Example.org/x\": trust domain must be lowercase");
    check_only_error(RULE "{from: [{principals: [\"spiffe://td/a//b\"]}]}\n",
                     "p.yaml:6:27: spec.rules[0].from[0].principals[0]: invalid SPIFFE ID "
                     "\"spiffe://td/a//b\": SPIFFE ID path has an empty segment");
    check_only_error(RULE "{from: [{principals: [\"http://td/a\"]}]}\n",
                     "p.yaml:6:27: spec.rules[0].from[0].principals[0]: invalid SPIFFE ID "
                     "\"http://td/a\": SPIFFE ID must start with \"spiffe://\"");
    check_only_error(RULE "{from: [{principals: [\"cluster.local/ns/a/sa/b\"]}]}\n",
                     "p.yaml:6:27: spec.rules[0].from[0].principals[0]: invalid SPIFFE ID "
                     "\"cluster.local/ns/a/sa/b\": SPIFFE ID must start with \"spiffe://\"");
    check_only_error(RULE "{from: [{notPrincipals: [\"http://*\"]}]}\n",
                     "p.yaml:6:30: spec.rules[0].from[0].notPrincipals[0]: principal pattern "
                     "\"http://*\" must start with \"spiffe://\"");
    check_only_error(RULE "{from: [{principals: [\"spiffe://td/a//b*\"]}]}\n",
                     "p.yaml:6:27: spec.rules[0].from[0].principals[0]: invalid SPIFFE ID pattern "
                     "\"spiffe://td/a//b*\": SPIFFE ID path has an empty segment");
    check_only_error(RULE "{from: [{principals: [\"spiffe://Td/*\"]}]}\n",
                     "p.yaml:6:27: spec.rules[0].from[0].principals[0]: invalid SPIFFE ID pattern "
                     "\"spiffe://Td/*\": trust domain must be lowercase");
    check_only_error(RULE "{from: [{principals: [\"spiffe://td:8443/*\"]}]}\n",
                     "p.yaml:6:27: spec.rules[0].from[0].principals[0]: invalid SPIFFE ID pattern "
                     "\"spiffe://td:8443/*\": trust domain must not include a port");
    check_only_error(RULE "{from: [{principals: [\"*/a//b\"]}]}\n",
                     "p.yaml:6:27: spec.rules[0].from[0].principals[0]: invalid principal suffix "
                     "\"*/a//b\": only [A-Za-z0-9._-] segments separated by single \"/\" are "
                     "allowed");
    check_only_error(RULE "{from: [{principals: [\"spiffe://td/sa/x\", \"spiffe://td/x/\"]}]}\n",
                     "p.yaml:6:47: spec.rules[0].from[0].principals[1]: invalid SPIFFE ID "
                     "\"spiffe://td/x/\": SPIFFE ID must not end with a slash");
}

static void test_error_namespaces_trust_domains(void **state)
{
    (void)state;
    check_only_error(RULE "{from: [{namespaces: [\"a/b\"]}]}\n",
                     "p.yaml:6:27: spec.rules[0].from[0].namespaces[0]: invalid namespace \"a/b\": "
                     "only [A-Za-z0-9._-] is allowed");
    check_only_error(RULE "{from: [{notNamespaces: [\"te am*\"]}]}\n",
                     "p.yaml:6:30: spec.rules[0].from[0].notNamespaces[0]: invalid namespace "
                     "\"te am*\": only [A-Za-z0-9._-] is allowed");
    check_only_error(RULE "{from: [{trustDomains: [\"Example.org\"]}]}\n",
                     "p.yaml:6:29: spec.rules[0].from[0].trustDomains[0]: invalid trust domain "
                     "\"Example.org\": must be 1..255 characters of [a-z0-9._-]");
    check_only_error(RULE "{from: [{notTrustDomains: [\"*.Corp\"]}]}\n",
                     "p.yaml:6:32: spec.rules[0].from[0].notTrustDomains[0]: invalid trust domain "
                     "\"*.Corp\": must be 1..255 characters of [a-z0-9._-]");
    check_only_error(RULE "{from: [{trustDomains: [\"spiffe://td\"]}]}\n",
                     "p.yaml:6:29: spec.rules[0].from[0].trustDomains[0]: invalid trust domain "
                     "\"spiffe://td\": must be 1..255 characters of [a-z0-9._-]");
}

static void test_error_conditions(void **state)
{
    (void)state;
    check_only_error(RULE "{when: [{key: request.header, values: [a]}]}\n",
                     "p.yaml:6:19: spec.rules[0].when[0].key: unknown attribute "
                     "\"request.header\" (did you mean \"request.headers[<name>]\"?); known: source.principal, source.ip, source.port, "
                     "source.namespace, source.trustDomain, destination.service, "
                     "destination.principal, destination.port, request.method, request.host, "
                     "request.path, request.query, request.headers[<name>], request.protocol, "
                     "connection.mtls, connection.sni, time");
    check_error(RULE "{when: [{key: source.principle, values: [a]}]}\n",
                "p.yaml:6:19: spec.rules[0].when[0].key: unknown attribute \"source.principle\" "
                "(did you mean \"source.principal\"?); known: source.principal, source.ip, "
                "source.port, source.namespace, source.trustDomain, destination.service, "
                "destination.principal, destination.port, request.method, request.host, "
                "request.path, request.query, request.headers[<name>], request.protocol, "
                "connection.mtls, connection.sni, time");
    check_only_error(RULE "{when: [{key: request.headers, values: [a]}]}\n",
                     "p.yaml:6:19: spec.rules[0].when[0].key: write request.headers[<name>] with "
                     "a header name, as in request.headers[x-tenant]");
    check_only_error(RULE "{when: [{key: \"request.headers[]\", values: [a]}]}\n",
                     "p.yaml:6:19: spec.rules[0].when[0].key: invalid header name \"\": must be "
                     "an HTTP token");
    check_only_error(RULE "{when: [{key: \"request.headers[x tenant]\", values: [a]}]}\n",
                     "p.yaml:6:19: spec.rules[0].when[0].key: invalid header name \"x tenant\": "
                     "must be an HTTP token");
    check_only_error(RULE "{when: [{key: \"request.headers[x:y]\", values: [a]}]}\n",
                     "p.yaml:6:19: spec.rules[0].when[0].key: invalid header name \"x:y\": must "
                     "be an HTTP token");
    check_only_error(RULE "{when: [{values: [a]}]}\n",
                     "p.yaml:6:13: spec.rules[0].when[0].key: required field is missing (a "
                     "condition is {key, values/notValues} or {lua})");
    check_only_error(RULE "{when: [{key: time}]}\n",
                     "p.yaml:6:13: spec.rules[0].when[0]: needs values or notValues");
    check_only_error(RULE "{when: [{key: time, values: []}]}\n",
                     "p.yaml:6:33: spec.rules[0].when[0].values: must not be empty (omit the "
                     "field for no constraint)");
    check_only_error(RULE "{when: [{lua: \"true\", key: time, values: [x]}]}\n",
                     "p.yaml:6:13: spec.rules[0].when[0]: lua cannot be combined with key, values "
                     "or notValues");
    check_only_error(RULE "{when: [{lua: \"req.time.hour >\"}]}\n",
                     "p.yaml:6:19: spec.rules[0].when[0].lua: invalid Lua condition: line 1: "
                     "unexpected symbol near <eof>");
    check_only_error(RULE "{when: [{lua: \"1) or (function() return true end)() or (1\"}]}\n",
                     "p.yaml:6:19: spec.rules[0].when[0].lua: invalid Lua condition: line 1: "
                     "unexpected symbol near '1'");
    check_only_error(RULE "{when: [\"req.x\"]}\n",
                     "p.yaml:6:13: spec.rules[0].when[0]: expected a map, got a string");
    check_only_error(RULE "{when: [{key: connection.mtls, values: [maybe]}]}\n",
                     "p.yaml:6:45: spec.rules[0].when[0].values[0]: expected true or false, got a "
                     "string");
    check_only_error(RULE "{when: [{key: source.port, values: [http]}]}\n",
                     "p.yaml:6:41: spec.rules[0].when[0].values[0]: invalid port \"http\": must be "
                     "an integer 1..65535");
    check_only_error(RULE "{when: [{key: request.method, notValues: [post]}]}\n",
                     "p.yaml:6:47: spec.rules[0].when[0].notValues[0]: method \"post\" must be "
                     "uppercase (methods match case-sensitively)");
    check_only_error(RULE "{when: [{key: request.path, values: [\"/a/{x}\"]}]}\n",
                     "p.yaml:6:42: spec.rules[0].when[0].values[0]: invalid template segment "
                     "\"{x}\": use \"{*}\" for one segment or \"{**}\" for the rest");
    check_only_error(RULE "{when: [{key: source.principal, values: [\"spiffe://A/b\"]}]}\n",
                     "p.yaml:6:46: spec.rules[0].when[0].values[0]: invalid SPIFFE ID "
                     "\"spiffe://A/b\": trust domain must be lowercase");
}

static void test_error_lua(void **state)
{
    (void)state;
    check_only_error(RULE "{when: [{lua: \"\"}]}\n",
                     "p.yaml:6:19: spec.rules[0].when[0].lua: must not be empty");
    check_only_error(RULE "{when: [{lua: \"a\\0b\"}]}\n",
                     "p.yaml:6:19: spec.rules[0].when[0].lua: must not contain NUL bytes");
    check_only_error(RULE "{when: [{lua: [x]}]}\n",
                     "p.yaml:6:19: spec.rules[0].when[0].lua: expected a string, got a list");
    check_only_error(RULE "{when: [{lua: }]}\n",
                     "p.yaml:6:19: spec.rules[0].when[0].lua: expected a string, got null");
    char *text = malloc(6000);
    assert_non_null(text);
    int n = snprintf(text, 6000, RULE "{when: [{lua: \"");
    memset(text + n, 'x', 4097);
    snprintf(text + n + 4097, 6000 - (size_t)n - 4097, "\"}]}\n");
    check_only_error(text, "p.yaml:6:19: spec.rules[0].when[0].lua: too long (4097 bytes, limit "
                           "4096)");
    /* exactly 4096 is fine */
    snprintf(text + n + 4096, 6000 - (size_t)n - 4096, "\"}]}\n");
    loaded l;
    load(&l, text);
    assert_int_equal(strlen(only(&l)->rules[0].when[0].lua), 4096);
    unload(&l);
    free(text);
}

static void test_error_deny_response(void **state)
{
    (void)state;
    check_only_error(HDR "spec: {denyResponse: {status: 200}}\n",
                     "p.yaml:4:31: spec.denyResponse.status: status 200 is out of range "
                     "(400..599)");
    check_only_error(HDR "spec: {denyResponse: {status: 600}}\n",
                     "p.yaml:4:31: spec.denyResponse.status: status 600 is out of range "
                     "(400..599)");
    check_only_error(HDR "spec: {denyResponse: {status: \"403\"}}\n",
                     "p.yaml:4:31: spec.denyResponse.status: expected an integer 400..599, got a "
                     "string");
    check_only_error(HDR "spec: {denyResponse: {status: forbidden}}\n",
                     "p.yaml:4:31: spec.denyResponse.status: expected an integer 400..599, got a "
                     "string");
    check_only_error(HDR "spec: {denyResponse: {status: 403.5}}\n",
                     "p.yaml:4:31: spec.denyResponse.status: status 403.5 is not an integer in "
                     "400..599");
    check_only_error(HDR "spec: {denyResponse: {status: 99999999999999999999999}}\n",
                     "p.yaml:4:31: spec.denyResponse.status: status 99999999999999999999 is not "
                     "an integer in 400..599");
    check_only_error(HDR "spec: {denyResponse: {status: -403}}\n",
                     "p.yaml:4:31: spec.denyResponse.status: status -403 is not an integer in "
                     "400..599");
    check_only_error(HDR "spec: {denyResponse: {}}\n",
                     "p.yaml:4:22: spec.denyResponse: set status and/or body");
    check_only_error(HDR "spec: {denyResponse: forbidden}\n",
                     "p.yaml:4:22: spec.denyResponse: expected a map, got a string");
    check_only_error(HDR "spec: {denyResponse: {body: [x]}}\n",
                     "p.yaml:4:29: spec.denyResponse.body: expected a string, got a list");
    check_only_error(HDR "spec: {action: AUDIT, denyResponse: {status: 403}}\n",
                     "p.yaml:4:37: spec.denyResponse: not allowed with action AUDIT (AUDIT "
                     "policies never deny)");
    char *text = malloc(6000);
    assert_non_null(text);
    int n = snprintf(text, 6000, HDR "spec: {denyResponse: {body: \"");
    memset(text + n, 'x', 4097);
    snprintf(text + n + 4097, 6000 - (size_t)n - 4097, "\"}}\n");
    check_only_error(text, "p.yaml:4:29: spec.denyResponse.body: too long (4097 bytes, limit "
                           "4096)");
    free(text);
    /* DENY policies take it too, and a body alone */
    loaded l;
    load(&l, HDR "spec: {action: DENY, denyResponse: {body: nope}}\n");
    assert_int_equal(only(&l)->deny_status, 0);
    assert_string_equal(only(&l)->deny_body, "nope");
    unload(&l);
}

static void test_error_duplicate_ids(void **state)
{
    (void)state;
    loaded l;
    load(&l, HDR "spec: {}\n---\napiVersion: ward/v1\nkind: AuthorizationPolicy\n"
                 "metadata:\n  namespace: ns\n  name: p\nspec: {action: DENY}\n");
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(policy_set_count(l.set), 1);
    assert_int_equal(policy_set_get(l.set, 0)->action, POLICY_ALLOW);
    assert_int_equal(l.d.n, 1);
    assert_string_equal(l.d.msgs[0], "p.yaml:10:9: metadata.name: duplicate policy \"ns/p\" "
                                     "(first defined at p.yaml:3:18)");
    /* across buffers of one set */
    const char *other = "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, "
                        "namespace: ns}\nspec: {}\n";
    ward_diag_dispose(&l.d);
    assert_int_equal(policy_set_load_buffer(l.set, "q.yaml", other, strlen(other), &l.d),
                     WARD_EPOLICY);
    assert_string_equal(l.d.msgs[0], "q.yaml:3:18: metadata.name: duplicate policy \"ns/p\" "
                                     "(first defined at p.yaml:3:18)");
    /* same name in another namespace is another policy */
    const char *third = "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
                        "spec: {}\n";
    assert_int_equal(policy_set_load_buffer(l.set, "r.yaml", third, strlen(third), &l.d), 0);
    assert_int_equal(policy_set_count(l.set), 2);
    unload(&l);
}

static void test_many_policies_ids(void **state)
{
    (void)state;
    ward_buf b;
    ward_buf_init(&b);
    for (int i = 0; i < 3000; i++)
        ward_buf_printf(&b, "---\napiVersion: ward/v1\nkind: AuthorizationPolicy\n"
                            "metadata: {name: p%d}\nspec: {}\n",
                        i);
    ward_buf_printf(&b, "---\napiVersion: ward/v1\nkind: AuthorizationPolicy\n"
                        "metadata: {name: p1234}\nspec: {}\n");
    loaded l;
    load_n(&l, b.ptr, b.len);
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(policy_set_count(l.set), 3000);
    assert_int_equal(l.d.n, 1);
    assert_string_equal(l.d.msgs[0], "p.yaml:15004:18: metadata.name: duplicate policy "
                                     "\"default/p1234\" (first defined at p.yaml:6174:18)");
    assert_string_equal(policy_set_get(l.set, 2999)->id, "default/p2999");
    unload(&l);
    ward_buf_dispose(&b);
}

/* ---- limits -------------------------------------------------------------------------------- */

static void test_limit_list_values(void **state)
{
    (void)state;
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_puts(&b, RULE "{to: [{methods: [GET");
    for (int i = 1; i < 10000; i++)
        ward_buf_puts(&b, ",GET");
    ward_buf_puts(&b, "]}]}\n");
    loaded l;
    load_n(&l, b.ptr, b.len);
    assert_int_equal(only(&l)->rules[0].to[0].methods.n, 10000);
    unload(&l);
    b.len -= 5;
    ward_buf_puts(&b, ",GET]}]}\n");
    load_n(&l, b.ptr, b.len);
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_diag(&l.d, "p.yaml:6:21: spec.rules[0].to[0].methods: too many values (10001, limit "
                      "10000)");
    unload(&l);
    ward_buf_dispose(&b);
}

static void test_limit_rule_lists(void **state)
{
    (void)state;
    static const char *const keys[] = {"from", "to", "when"};
    for (size_t k = 0; k < 3; k++) {
        ward_buf b;
        ward_buf_init(&b);
        ward_buf_printf(&b, RULE "{%s: [0", keys[k]);
        for (int i = 0; i < 10000; i++)
            ward_buf_puts(&b, ",0");
        ward_buf_puts(&b, "]}\n");
        char msg[256];
        snprintf(msg, sizeof(msg),
                 "p.yaml:6:%zu: spec.rules[0].%s: too many items (10001, limit 10000)",
                 strlen(keys[k]) + 8, keys[k]);
        check_only_error_n(b.ptr, b.len, msg);
        ward_buf_dispose(&b);
    }
}

static void test_limit_rules_per_set(void **state)
{
    (void)state;
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_puts(&b, HDR "spec: {rules: [{}");
    for (int i = 1; i < 100000; i++)
        ward_buf_puts(&b, ",{}");
    ward_buf_puts(&b, "]}\n");
    loaded l;
    load_n(&l, b.ptr, b.len);
    assert_int_equal(only(&l)->n_rules, 100000);
    /* the set is full: one more rule anywhere is refused */
    const char *more = "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: q}\n"
                       "spec: {rules: [{}]}\n";
    assert_int_equal(policy_set_load_buffer(l.set, "q.yaml", more, strlen(more), &l.d),
                     WARD_EPOLICY);
    assert_diag(&l.d, "q.yaml:4:15: spec.rules: too many rules: the policy set would exceed "
                      "100000 rules");
    assert_int_equal(policy_set_count(l.set), 1);
    /* a policy without rules still fits */
    const char *none = "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: r}\n"
                       "spec: {}\n";
    assert_int_equal(policy_set_load_buffer(l.set, "r.yaml", none, strlen(none), &l.d), 0);
    unload(&l);
    /* and one document over the limit alone */
    b.len -= 3;
    ward_buf_puts(&b, ",{}]}\n");
    load_n(&l, b.ptr, b.len);
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_diag(&l.d, "p.yaml:4:15: spec.rules: too many rules: the policy set would exceed "
                      "100000 rules");
    unload(&l);
    ward_buf_dispose(&b);
}

/* ---- files and folders --------------------------------------------------------------------- */

static char tmpdir[256];

static void write_file(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_dir(const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    assert_int_equal(mkdir(path, 0700), 0);
}

static char *policy_text(const char *name)
{
    static char text[256];
    snprintf(text, sizeof(text),
             "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: %s}\nspec: {}\n",
             name);
    return text;
}

static int setup_tree(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ward-test-load-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    return 0;
}

static int teardown_tree(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_load_paths_folder(void **state)
{
    (void)state;
    make_dir("pol");
    make_dir("pol/b-sub");
    make_dir("pol/tests");
    make_dir("pol/.git");
    write_file("pol/c.yaml", policy_text("c"));
    write_file("pol/a.yml", policy_text("a"));
    write_file("pol/b-sub/z.json", "{\"apiVersion\": \"ward/v1\", \"kind\": "
                                   "\"AuthorizationPolicy\", \"metadata\": {\"name\": \"z\"}, "
                                   "\"spec\": {}}");
    write_file("pol/b.yaml", policy_text("b"));
    write_file("pol/README.md", "not a policy");
    write_file("pol/notes.txt", "not: [a policy");
    write_file("pol/.hidden.yaml", "broken: [");
    write_file("pol/tests/t.yaml", "broken: [");
    write_file("pol/.git/x.yaml", "broken: [");

    char dir[512];
    snprintf(dir, sizeof(dir), "%s/pol", tmpdir);
    const char *paths[] = {dir};
    policy_set *s;
    ward_diag d;
    ward_diag_init(&d);
    assert_int_equal(policy_set_new(&s), 0);
    int rc = policy_set_load_paths(s, paths, 1, &d);
    assert_int_equal(rc, 0);
    assert_int_equal(d.n, 0);
    /* sorted by name: a.yml, b-sub/z.json, b.yaml, c.yaml */
    assert_int_equal(policy_set_count(s), 4);
    assert_string_equal(policy_set_get(s, 0)->name, "a");
    assert_string_equal(policy_set_get(s, 1)->name, "z");
    assert_string_equal(policy_set_get(s, 2)->name, "b");
    assert_string_equal(policy_set_get(s, 3)->name, "c");
    char want[600];
    snprintf(want, sizeof(want), "%s/pol/b-sub/z.json", tmpdir);
    assert_string_equal(policy_set_get(s, 1)->pos.file, want);
    char rev[65];
    snprintf(rev, sizeof(rev), "%s", policy_set_revision(s));
    policy_set_free(s);

    /* same tree, same revision; trailing slash is fine too but names the files differently */
    assert_int_equal(policy_set_new(&s), 0);
    assert_int_equal(policy_set_load_paths(s, paths, 1, &d), 0);
    assert_string_equal(policy_set_revision(s), rev);
    policy_set_free(s);
    ward_diag_dispose(&d);
}

static void test_load_paths_files_and_errors(void **state)
{
    (void)state;
    make_dir("mix");
    write_file("mix/ok.yaml", policy_text("ok"));
    write_file("mix/bad.yaml", "apiVersion: ward/v1\nkind: AuthorizationPolicy\n"
                               "metadata: {name: bad}\nspec: {action: nope}\n");
    write_file("mix/explicit.txt", policy_text("explicit"));
    char ok[512], bad[512], txt[512], missing[512];
    snprintf(ok, sizeof(ok), "%s/mix/ok.yaml", tmpdir);
    snprintf(bad, sizeof(bad), "%s/mix/bad.yaml", tmpdir);
    snprintf(txt, sizeof(txt), "%s/mix/explicit.txt", tmpdir);
    snprintf(missing, sizeof(missing), "%s/mix/missing.yaml", tmpdir);
    const char *paths[] = {missing, ok, bad, txt};
    policy_set *s;
    ward_diag d;
    ward_diag_init(&d);
    assert_int_equal(policy_set_new(&s), 0);
    assert_int_equal(policy_set_load_paths(s, paths, 4, &d), WARD_EPOLICY);
    /* everything valid is still loaded, every problem reported */
    assert_int_equal(policy_set_count(s), 2);
    assert_string_equal(policy_set_get(s, 0)->name, "ok");
    assert_string_equal(policy_set_get(s, 1)->name, "explicit");
    assert_int_equal(d.n, 2);
    char want[700];
    snprintf(want, sizeof(want), "%s: cannot access: No such file or directory", missing);
    assert_string_equal(d.msgs[0], want);
    snprintf(want, sizeof(want),
             "%s:4:16: spec.action: invalid value \"nope\"; allowed: ALLOW, DENY, AUDIT", bad);
    assert_string_equal(d.msgs[1], want);
    policy_set_free(s);
    ward_diag_dispose(&d);
}

static void test_load_paths_unreadable(void **state)
{
    (void)state;
    if (geteuid() == 0)
        skip(); /* root reads everything */
    make_dir("locked");
    write_file("locked/x.yaml", policy_text("x"));
    char path[512];
    snprintf(path, sizeof(path), "%s/locked/x.yaml", tmpdir);
    assert_int_equal(chmod(path, 0), 0);
    const char *paths[] = {path};
    policy_set *s;
    ward_diag d;
    ward_diag_init(&d);
    assert_int_equal(policy_set_new(&s), 0);
    assert_int_equal(policy_set_load_paths(s, paths, 1, &d), WARD_EPOLICY);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.msgs[0], "Permission denied"));
    policy_set_free(s);
    ward_diag_dispose(&d);
}

static void test_load_paths_symlink_loop(void **state)
{
    (void)state;
    make_dir("loop");
    make_dir("loop/sub");
    write_file("loop/sub/p.yaml", policy_text("p"));
    char link[512], target[512];
    snprintf(link, sizeof(link), "%s/loop/sub/back", tmpdir);
    snprintf(target, sizeof(target), "%s/loop", tmpdir);
    assert_int_equal(symlink(target, link), 0);
    const char *paths[] = {target};
    policy_set *s;
    ward_diag d;
    ward_diag_init(&d);
    assert_int_equal(policy_set_new(&s), 0);
    assert_int_equal(policy_set_load_paths(s, paths, 1, &d), WARD_EPOLICY);
    assert_int_equal(policy_set_count(s), 1);
    assert_int_equal(d.n, 1);
    char want[600];
    snprintf(want, sizeof(want), "%s: folder loop (already being loaded), skipped", link);
    assert_string_equal(d.msgs[0], want);
    policy_set_free(s);
    ward_diag_dispose(&d);
}

static void test_load_paths_special_entries(void **state)
{
    (void)state;
    make_dir("special");
    write_file("special/a.yaml", policy_text("a"));
    char dangling[512], target[512], fifo[512], dir[512];
    snprintf(dangling, sizeof(dangling), "%s/special/gone.yaml", tmpdir);
    snprintf(target, sizeof(target), "%s/special/nowhere", tmpdir);
    assert_int_equal(symlink(target, dangling), 0);
    snprintf(fifo, sizeof(fifo), "%s/special/pipe", tmpdir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(dir, sizeof(dir), "%s/special/", tmpdir);
    /* a folder (with a trailing slash), a FIFO named explicitly, an empty path */
    const char *paths[] = {dir, fifo, ""};
    policy_set *s;
    ward_diag d;
    ward_diag_init(&d);
    assert_int_equal(policy_set_new(&s), 0);
    assert_int_equal(policy_set_load_paths(s, paths, 3, &d), WARD_EPOLICY);
    assert_int_equal(policy_set_count(s), 1);
    char want[700];
    snprintf(want, sizeof(want), "%sa.yaml", dir);
    assert_string_equal(policy_set_get(s, 0)->pos.file, want);
    assert_int_equal(d.n, 3);
    /* the dangling link has a policy name: reported; the FIFO in the folder is ignored */
    snprintf(want, sizeof(want), "%s: cannot access: No such file or directory", dangling);
    assert_string_equal(d.msgs[0], want);
    snprintf(want, sizeof(want), "%s: not a regular file or folder", fifo);
    assert_string_equal(d.msgs[1], want);
    assert_string_equal(d.msgs[2], "empty policy path");
    policy_set_free(s);
    ward_diag_dispose(&d);
}

static void test_load_paths_depth_limit(void **state)
{
    (void)state;
    char rel[512] = "deep";
    make_dir(rel);
    for (int i = 0; i < 34; i++) {
        strcat(rel, "/d");
        make_dir(rel);
    }
    char path[600];
    snprintf(path, sizeof(path), "%s/deep", tmpdir);
    const char *paths[] = {path};
    policy_set *s;
    ward_diag d;
    ward_diag_init(&d);
    assert_int_equal(policy_set_new(&s), 0);
    assert_int_equal(policy_set_load_paths(s, paths, 1, &d), WARD_EPOLICY);
    assert_int_equal(d.n, 1);
    assert_non_null(strstr(d.msgs[0], ": folders nested too deep (limit 32)"));
    policy_set_free(s);
    ward_diag_dispose(&d);
}

static void test_load_paths_empty_folder(void **state)
{
    (void)state;
    make_dir("empty");
    char path[512];
    snprintf(path, sizeof(path), "%s/empty", tmpdir);
    const char *paths[] = {path};
    policy_set *s;
    ward_diag d;
    ward_diag_init(&d);
    assert_int_equal(policy_set_new(&s), 0);
    assert_int_equal(policy_set_load_paths(s, paths, 1, &d), 0);
    assert_int_equal(policy_set_count(s), 0);
    assert_int_equal(policy_set_load_paths(s, NULL, 0, &d), 0);
    policy_set_free(s);
    ward_diag_dispose(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_design_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_action_and_mode),
        cmocka_unit_test(test_rules_empty_and_match_all),
        cmocka_unit_test(test_string_pattern_kinds),
        cmocka_unit_test(test_path_kinds),
        cmocka_unit_test(test_hosts_lowercased),
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_source_kinds),
        cmocka_unit_test(test_conditions),
        cmocka_unit_test(test_every_attribute_name),
        cmocka_unit_test(test_values_byte_exact),
        cmocka_unit_test(test_multi_document),
        cmocka_unit_test(test_json_input),
        cmocka_unit_test(test_json_errors_have_positions),
        cmocka_unit_test(test_valid_kept_beside_invalid),
        cmocka_unit_test(test_all_errors_collected),
        cmocka_unit_test(test_revision),
        cmocka_unit_test(test_attr_name),
        cmocka_unit_test(test_null_set_accessors),
        cmocka_unit_test(test_error_api_version),
        cmocka_unit_test(test_error_kind),
        cmocka_unit_test(test_error_document_not_map),
        cmocka_unit_test(test_error_yaml_syntax),
        cmocka_unit_test(test_error_unknown_fields),
        cmocka_unit_test(test_error_istio_nesting),
        cmocka_unit_test(test_error_metadata),
        cmocka_unit_test(test_error_spec),
        cmocka_unit_test(test_error_selector),
        cmocka_unit_test(test_error_lists),
        cmocka_unit_test(test_error_scalar_types),
        cmocka_unit_test(test_error_patterns),
        cmocka_unit_test(test_error_paths),
        cmocka_unit_test(test_error_regex),
        cmocka_unit_test(test_error_methods_hosts),
        cmocka_unit_test(test_error_ports),
        cmocka_unit_test(test_error_cidr),
        cmocka_unit_test(test_error_principals),
        cmocka_unit_test(test_error_namespaces_trust_domains),
        cmocka_unit_test(test_error_conditions),
        cmocka_unit_test(test_error_lua),
        cmocka_unit_test(test_error_deny_response),
        cmocka_unit_test(test_error_duplicate_ids),
        cmocka_unit_test(test_many_policies_ids),
        cmocka_unit_test(test_limit_list_values),
        cmocka_unit_test(test_limit_rule_lists),
        cmocka_unit_test(test_limit_rules_per_set),
        cmocka_unit_test(test_load_paths_folder),
        cmocka_unit_test(test_load_paths_files_and_errors),
        cmocka_unit_test(test_load_paths_unreadable),
        cmocka_unit_test(test_load_paths_symlink_loop),
        cmocka_unit_test(test_load_paths_special_entries),
        cmocka_unit_test(test_load_paths_depth_limit),
        cmocka_unit_test(test_load_paths_empty_folder),
    };
    return cmocka_run_group_tests(tests, setup_tree, teardown_tree);
}
