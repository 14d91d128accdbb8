/* test_route.c - unit tests of Route loading: the shape of DESIGN.md, every validation error, shadowing warnings */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/ward.h"
#include "policy/policy.h"

/* Lines 1-6; the first http entry starts on line 7, column 5. */
#define RHDR                                                                                       \
    "apiVersion: ward/v1\nkind: Route\nmetadata: {name: r, namespace: shop}\nspec:\n"             \
    "  hosts: [payments]\n  http:\n"
/* An entry whose destinations are fine, to add one field to: "  - {name: e, DEST, ...}". */
#define DEST "destinations: [{service: v1}]"

typedef struct loaded {
    policy_set *set;
    ward_diag d;
    int rc;
} loaded;

static void load(loaded *l, const char *text)
{
    assert_int_equal(policy_set_new(&l->set), 0);
    ward_diag_init(&l->d);
    l->rc = policy_set_load_buffer(l->set, "r.yaml", text, strlen(text), &l->d);
}

static void unload(loaded *l)
{
    policy_set_free(l->set);
    ward_diag_dispose(&l->d);
}

static void dump(const char *what, const ward_diag *d)
{
    fprintf(stderr, "%s (%zu):\n", what, d->n);
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "  %s\n", d->msgs[i]);
}

static bool has(const ward_diag *d, const char *msg)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->msgs[i], msg) == 0)
            return true;
    return false;
}

/* text is rejected, loads no Route, and msg is among its diagnostics. */
static void check_error(const char *text, const char *msg)
{
    loaded l;
    load(&l, text);
    if (l.rc != WARD_EPOLICY || !has(&l.d, msg)) {
        fprintf(stderr, "expected: %s\n", msg);
        dump("got", &l.d);
        fail();
    }
    assert_int_equal(policy_set_route_count(l.set), 0);
    unload(&l);
}

/* ... and msg is its only diagnostic. */
static void check_only_error(const char *text, const char *msg)
{
    loaded l;
    load(&l, text);
    if (l.rc != WARD_EPOLICY || l.d.n != 1 || !has(&l.d, msg)) {
        fprintf(stderr, "expected only: %s\n", msg);
        dump("got", &l.d);
        fail();
    }
    assert_int_equal(policy_set_route_count(l.set), 0);
    unload(&l);
}

/* The one valid Route of text; *l must be unloaded. */
static const policy_route *only(loaded *l, const char *text)
{
    load(l, text);
    if (l->rc != 0 || l->d.n != 0)
        dump("unexpected errors", &l->d);
    assert_int_equal(l->rc, 0);
    assert_int_equal(l->d.n, 0);
    assert_int_equal(policy_set_route_count(l->set), 1);
    assert_int_equal(policy_set_count(l->set), 0);
    return policy_set_route(l->set, 0);
}

/* text is valid and warns exactly the messages given (NULL-terminated). */
static void check_warnings(const char *text, ...)
{
    loaded l;
    const policy_route *r = only(&l, text);
    assert_non_null(r);
    const ward_diag *w = policy_set_warnings(l.set);
    va_list ap;
    va_start(ap, text);
    size_t n = 0;
    const char *msg;
    while ((msg = va_arg(ap, const char *)) != NULL) {
        n++;
        if (!has(w, msg)) {
            fprintf(stderr, "expected warning: %s\n", msg);
            dump("warnings", w);
            fail();
        }
    }
    va_end(ap);
    if (w->n != n) {
        dump("warnings", w);
        assert_int_equal(w->n, n);
    }
    unload(&l);
}

/* ---- the shape ------------------------------------------------------------------------ */

static const char design_example[] =
    "apiVersion: ward/v1\n"
    "kind: Route\n"
    "metadata: {name: payments, namespace: shop}\n"
    "spec:\n"
    "  hosts: [payments, Payments.Shop.SVC]\n"
    "  http:\n"
    "    - name: canary\n"
    "      match:\n"
    "        - paths: [\"/v2/*\"]\n"
    "          methods: [GET]\n"
    "          headers: {X-Canary: \"1\", x-user: {prefix: beta-}, x-v: {regex: \"^[0-9]+$\"}}\n"
    "          queryParams: {Debug: {exact: \"on\"}}\n"
    "      destinations:\n"
    "        - {service: payments-v2, weight: 10}\n"
    "        - {service: payments-v1, weight: 90}\n"
    "      timeout: 2s\n"
    "      retries: {attempts: 2, perTryTimeout: 500ms, on: [connect-failure, reset, \"503\", 504]}\n"
    "      rewrite: {prefix: /}\n"
    "      headers: {request: {set: {x-route: canary}, remove: [x-debug]}, response: {add: {X-Served-By: v2}}}\n"
    "      rateLimit: {requests: 100, per: 1s}\n"
    "      mirror: {service: payments-shadow, percent: 5}\n"
    "    - name: stable\n"
    "      destinations: [{service: payments-v1}]\n"
    "      retries: {attempts: 1, nonIdempotent: true, maxBodyBytes: 64KiB}\n"
    "      rateLimit: {requests: 10, per: 1m, key: \"request.headers[X-Tenant]\"}\n";

static void test_design_example(void **state)
{
    (void)state;
    loaded l;
    const policy_route *r = only(&l, design_example);
    assert_string_equal(r->id, "shop/payments");
    assert_int_equal(r->n_hosts, 2);
    assert_string_equal(r->hosts[0], "payments");
    assert_string_equal(r->hosts[1], "payments.shop.svc"); /* hosts are case-insensitive */
    assert_int_equal(r->n_http, 2);
    const policy_http_route *e = &r->http[0];
    assert_string_equal(e->name, "canary");
    assert_int_equal(e->pos.line, 7);
    assert_true(e->match_present);
    assert_int_equal(e->n_match, 1);
    const policy_route_match *m = &e->match[0];
    assert_int_equal(m->paths.n, 1);
    assert_int_equal(m->paths.v[0].kind, POLICY_MATCH_PREFIX);
    assert_string_equal(m->paths.v[0].value, "/v2/");
    assert_int_equal(m->methods.n, 1);
    assert_int_equal(m->n_headers, 3);
    assert_string_equal(m->headers[0].name, "x-canary"); /* header names lowercased */
    assert_int_equal(m->headers[0].value.kind, POLICY_MATCH_EXACT);
    assert_string_equal(m->headers[0].value.value, "1");
    assert_int_equal(m->headers[1].value.kind, POLICY_MATCH_PREFIX);
    assert_int_equal(m->headers[2].value.kind, POLICY_MATCH_REGEX);
    assert_int_equal(m->n_query, 1);
    assert_string_equal(m->query[0].name, "Debug"); /* query names as written */
    assert_int_equal(e->n_destinations, 2);
    assert_string_equal(e->destinations[0].service, "payments-v2");
    assert_int_equal(e->destinations[0].weight, 10);
    assert_int_equal(e->destinations[1].weight, 90);
    assert_int_equal(e->timeout_ms, 2000);
    assert_true(e->retries.present);
    assert_int_equal(e->retries.attempts, 2);
    assert_int_equal(e->retries.per_try_timeout_ms, 500);
    assert_int_equal(e->retries.on, POLICY_RETRY_CONNECT_FAILURE | POLICY_RETRY_RESET);
    assert_int_equal(e->retries.n_on, 4);
    assert_string_equal(e->retries.on_names[3], "504"); /* numbers become status strings */
    assert_false(e->retries.non_idempotent);
    assert_string_equal(e->rewrite_prefix, "/");
    assert_int_equal(e->request_headers.n_set, 1);
    assert_string_equal(e->request_headers.set[0].name, "x-route");
    assert_string_equal(e->request_headers.set[0].value, "canary");
    assert_int_equal(e->request_headers.n_remove, 1);
    assert_int_equal(e->response_headers.n_add, 1);
    assert_string_equal(e->response_headers.add[0].name, "X-Served-By"); /* as written */
    assert_true(e->rate_limit.present);
    assert_int_equal(e->rate_limit.requests, 100);
    assert_int_equal(e->rate_limit.per_ms, 1000);
    assert_int_equal(e->rate_limit.key, POLICY_RATE_KEY_NONE);
    assert_string_equal(e->mirror_service, "payments-shadow");
    assert_int_equal(e->mirror_percent, 5);
    e = &r->http[1];
    assert_false(e->match_present);
    assert_int_equal(e->destinations[0].weight, 100); /* a single destination takes all */
    assert_int_equal(e->timeout_ms, 0);
    assert_true(e->retries.non_idempotent);
    assert_int_equal(e->retries.max_body_bytes, 64 * 1024);
    /* the default conditions */
    assert_int_equal(e->retries.on, POLICY_RETRY_CONNECT_FAILURE | POLICY_RETRY_RESET);
    assert_int_equal(e->retries.n_on, 3);
    assert_string_equal(e->retries.on_names[2], "gateway-error");
    assert_int_equal(e->rate_limit.key, POLICY_RATE_KEY_HEADER);
    assert_string_equal(e->rate_limit.header, "x-tenant");
    assert_int_equal(e->rate_limit.per_ms, 60000);
    assert_null(e->mirror_service);
    assert_int_equal(policy_set_warnings(l.set)->n, 0);
    unload(&l);
}

static void test_routes_and_policies_share_a_file(void **state)
{
    (void)state;
    static const char text[] =
        "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\n"
        "spec: {rules: [{}]}\n---\n" RHDR "  - {name: a, " DEST "}\n";
    loaded l;
    load(&l, text);
    assert_int_equal(l.rc, 0);
    assert_int_equal(policy_set_count(l.set), 1);
    assert_int_equal(policy_set_route_count(l.set), 1);
    /* a Route may share its ns/name with an AuthorizationPolicy: another kind */
    unload(&l);
    static const char same_name[] =
        "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: r, namespace: shop}\n"
        "spec: {rules: [{}]}\n---\n" RHDR "  - {name: a, " DEST "}\n";
    load(&l, same_name);
    assert_int_equal(l.rc, 0);
    unload(&l);
}

/* ---- errors: the document ---------------------------------------------------------------- */

static void test_error_hosts(void **state)
{
    (void)state;
    static const char tail[] = "  http: [{name: a, " DEST "}]\n";
    char buf[512];
#define HOSTS(h) (snprintf(buf, sizeof(buf), "apiVersion: ward/v1\nkind: Route\nmetadata: {name: r}\nspec:\n  hosts: " h "\n%s", tail), buf)
    check_only_error(HOSTS("[]"), "r.yaml:5:10: spec.hosts: must not be empty (list the Host names this route serves)");
    check_only_error(HOSTS("payments"), "r.yaml:5:10: spec.hosts: expected a list, got a string (write [value] for a single value)");
    check_only_error(HOSTS("[\"*\"]"), "r.yaml:5:11: spec.hosts[0]: wildcard hosts are not supported: a Route names each Host it serves exactly");
    check_only_error(HOSTS("[\"*.shop\"]"), "r.yaml:5:11: spec.hosts[0]: wildcard hosts are not supported: a Route names each Host it serves exactly");
    check_only_error(HOSTS("[\"payments:8443\"]"),
                     "r.yaml:5:11: spec.hosts[0]: host \"payments:8443\": write the host without a port (a request's port is ignored when its Host is matched)");
    check_only_error(HOSTS("[pay_ments]"),
                     "r.yaml:5:11: spec.hosts[0]: invalid host \"pay_ments\": a DNS name (letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)");
    check_only_error(HOSTS("[a, B, b]"), "r.yaml:5:17: spec.hosts[2]: host \"b\" is listed twice (hosts[1]; hosts are case-insensitive)");
#undef HOSTS
    check_only_error("apiVersion: ward/v1\nkind: Route\nmetadata: {name: r}\nspec:\n  http: [{name: a, " DEST "}]\n",
                     "r.yaml:5:3: spec.hosts: required field is missing (the Host names this route serves)");
}

static void test_error_one_route_per_host(void **state)
{
    (void)state;
    static const char text[] = RHDR "  - {name: a, " DEST "}\n---\n"
                               "apiVersion: ward/v1\nkind: Route\nmetadata: {name: other}\nspec:\n"
                               "  hosts: [inventory, PAYMENTS]\n  http: [{name: a, " DEST "}]\n";
    loaded l;
    load(&l, text);
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_true(has(&l.d, "r.yaml:13:22: spec.hosts[1]: host \"payments\" is already routed by shop/r (r.yaml:5:11); one Route per host"));
    assert_int_equal(policy_set_route_count(l.set), 1); /* the first stays */
    unload(&l);
    static const char dup[] = RHDR "  - {name: a, " DEST "}\n---\n"
                              "apiVersion: ward/v1\nkind: Route\nmetadata: {name: r, namespace: shop}\nspec:\n"
                              "  hosts: [inventory]\n  http: [{name: a, " DEST "}]\n";
    load(&l, dup);
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_true(has(&l.d, "r.yaml:11:18: metadata.name: duplicate route \"shop/r\" (first defined at r.yaml:3:18)"));
    unload(&l);
}

static void test_error_http_list(void **state)
{
    (void)state;
    check_only_error("apiVersion: ward/v1\nkind: Route\nmetadata: {name: r}\nspec:\n  hosts: [a]\n  http: []\n",
                     "r.yaml:6:9: spec.http: must not be empty (a Route needs at least one http entry)");
    check_only_error(RHDR "  - just-a-name\n", "r.yaml:7:5: spec.http[0]: expected a map, got a string");
    check_only_error(RHDR "  - {" DEST "}\n",
                     "r.yaml:7:5: spec.http[0].name: required field is missing (decisions, tests and metrics name the entry by it)");
    check_only_error(RHDR "  - {name: Canary, " DEST "}\n",
                     "r.yaml:7:12: spec.http[0].name: invalid name \"Canary\": use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (at most 253 characters)");
    check_only_error(RHDR "  - {name: a, " DEST "}\n  - {name: a, " DEST "}\n",
                     "r.yaml:8:12: spec.http[1].name: name \"a\" is already used by http[0]");
    check_error(RHDR "  - {name: a, " DEST ", route: [{destination: {host: x}}]}\n",
                "r.yaml:7:46: spec.http[0].route: unknown field; allowed: name, match, destinations, timeout, retries, rewrite, headers, rateLimit, mirror");
}

static void test_error_match(void **state)
{
    (void)state;
#define M(x) RHDR "  - {name: a, " DEST ", match: " x "}\n"
    /* column 48 is where the match value starts */
    check_only_error(M("[]"), "r.yaml:7:53: spec.http[0].match: must not be empty (omit match to match every request)");
    check_only_error(M("[{}]"),
                     "r.yaml:7:54: spec.http[0].match[0]: an empty match alternative matches every request: omit match instead (or set paths, methods, headers or queryParams)");
    check_only_error(M("[{uri: {prefix: /v2}}]"),
                     "r.yaml:7:55: spec.http[0].match[0].uri: unknown field; allowed: paths, methods, headers, queryParams");
    check_only_error(M("[{paths: [\"/a/{**}/b\"]}]"), "r.yaml:7:63: spec.http[0].match[0].paths[0]: template \"{**}\" must be last");
    check_only_error(M("[{paths: [{regex: \"(\"}]}]"),
                     "r.yaml:7:71: spec.http[0].match[0].paths[0].regex: invalid regex \"(\": missing closing parenthesis at offset 1");
    check_only_error(M("[{methods: [get]}]"),
                     "r.yaml:7:65: spec.http[0].match[0].methods[0]: method \"get\" must be uppercase (methods match case-sensitively)");
    check_only_error(M("[{headers: {\"x y\": a}}]"), "r.yaml:7:65: spec.http[0].match[0].headers[\"x y\"]: invalid header name \"x y\": must be an HTTP token");
    check_only_error(M("[{headers: {x-t: \"beta-*\"}}]"),
                     "r.yaml:7:70: spec.http[0].match[0].headers.x-t: a plain value is matched exactly, so \"*\" would be literal here: write {prefix: ...}, {regex: ...} or {exact: \"beta-*\"}");
    check_only_error(M("[{headers: {x-t: {exact: a, prefix: b}}}]"),
                     "r.yaml:7:70: spec.http[0].match[0].headers.x-t: set exactly one of exact, prefix, regex");
    check_only_error(M("[{headers: {x-t: {}}}]"), "r.yaml:7:70: spec.http[0].match[0].headers.x-t: set exactly one of exact, prefix, regex");
    check_only_error(M("[{headers: {x-t: {prefix: \"\"}}}]"), "r.yaml:7:79: spec.http[0].match[0].headers.x-t.prefix: must not be empty");
    check_only_error(M("[{headers: {x-t: {exact: \"a\\nb\"}}}]"),
                     "r.yaml:7:78: spec.http[0].match[0].headers.x-t.exact: header value \"a\\nb\" contains control characters: it could never match");
    check_only_error(M("[{headers: {x-t: {regex: \"[\"}}}]"),
                     "r.yaml:7:78: spec.http[0].match[0].headers.x-t.regex: invalid regex \"[\": missing terminating ] for character class at offset 1");
    check_only_error(M("[{headers: {X-T: a, x-t: b}}]"),
                     "r.yaml:7:73: spec.http[0].match[0].headers.x-t: header \"x-t\" is listed twice (names are case-insensitive)");
    check_only_error(M("[{headers: {}}]"), "r.yaml:7:64: spec.http[0].match[0].headers: must not be empty (omit headers for no constraint)");
    check_only_error(M("[{queryParams: {\"a&b\": x}}]"),
                     "r.yaml:7:69: spec.http[0].match[0].queryParams[\"a&b\"]: invalid query parameter name \"a&b\": printable, without spaces, '&', '=' or '#'");
#undef M
}

static void test_error_destinations(void **state)
{
    (void)state;
#define D(x) RHDR "  - {name: a, destinations: " x "}\n"
    check_only_error(RHDR "  - {name: a}\n", "r.yaml:7:5: spec.http[0].destinations: required field is missing (destinations: [{service: ...}])");
    check_only_error(D("[]"), "r.yaml:7:29: spec.http[0].destinations: must not be empty (name at least one service)");
    check_only_error(D("[{weight: 100}]"), "r.yaml:7:30: spec.http[0].destinations[0].service: required field is missing");
    check_only_error(D("[{service: Payments}]"),
                     "r.yaml:7:40: spec.http[0].destinations[0].service: invalid service name \"Payments\": a DNS label (lowercase letters, digits and '-', at most 63), as upstream services are named");
    check_only_error(D("[{service: a.b}]"),
                     "r.yaml:7:40: spec.http[0].destinations[0].service: invalid service name \"a.b\": a DNS label (lowercase letters, digits and '-', at most 63), as upstream services are named");
    check_only_error(D("[{service: a, weight: 50}, {service: a, weight: 50}]"),
                     "r.yaml:7:66: spec.http[0].destinations[1].service: service \"a\" is listed twice (destinations[0])");
    check_only_error(D("[{service: a, weight: 50}, {service: b}]"),
                     "r.yaml:7:56: spec.http[0].destinations[1].weight: required field is missing (with several destinations each needs a weight 0..100; they add up to 100)");
    check_only_error(D("[{service: a, weight: 101}, {service: b, weight: 0}]"),
                     "r.yaml:7:51: spec.http[0].destinations[0].weight: 101 is out of range (0..100)");
    check_only_error(D("[{service: a, weight: \"50\"}, {service: b, weight: 50}]"),
                     "r.yaml:7:51: spec.http[0].destinations[0].weight: expected an integer 0..100, got a string");
    check_only_error(D("[{service: a, weight: 50}, {service: b, weight: 40}]"),
                     "r.yaml:7:29: spec.http[0].destinations: weights add up to 90, not 100");
    check_only_error(D("[{service: a, weight: 60}, {service: b, weight: 60}]"),
                     "r.yaml:7:29: spec.http[0].destinations: weights add up to 120, not 100");
    check_only_error(D("[{service: a, weight: 50}]"),
                     "r.yaml:7:51: spec.http[0].destinations[0].weight: a single destination takes all the traffic: omit weight or write 100");
    check_only_error(D("[{service: a, port: 80}]"),
                     "r.yaml:7:43: spec.http[0].destinations[0].port: unknown field; allowed: service, weight");
#undef D
}

static void test_error_timeouts_and_retries(void **state)
{
    (void)state;
#define F(x) RHDR "  - {name: a, " DEST ", " x "}\n"
    /* the field's value starts at column 51 for "timeout: ", 51 for "retries: " */
    check_only_error(F("timeout: 2"), "r.yaml:7:55: spec.http[0].timeout: expected a duration with a unit (e.g. 2s, 500ms), got the number \"2\"");
    check_only_error(F("timeout: 2 secs"),
                     "r.yaml:7:55: spec.http[0].timeout: invalid duration \"2 secs\" (a number with a unit: ms, s, m, h; e.g. 2s, 500ms)");
    check_only_error(F("timeout: 0s"), "r.yaml:7:55: spec.http[0].timeout: duration \"0s\" is out of range (1ms..3600000ms)");
    check_only_error(F("timeout: 2h"), "r.yaml:7:55: spec.http[0].timeout: duration \"2h\" is out of range (1ms..3600000ms)");
    check_only_error(F("timeout: 1500us"), "r.yaml:7:55: spec.http[0].timeout: duration \"1500us\" must be whole milliseconds");
    check_only_error(F("retries: {on: [reset]}"),
                     "r.yaml:7:55: spec.http[0].retries.attempts: required field is missing (retries after the first try, 0..10)");
    check_only_error(F("retries: {attempts: 11}"), "r.yaml:7:66: spec.http[0].retries.attempts: 11 is out of range (0..10)");
    check_only_error(F("retries: {attempts: 1, on: [\"404\"]}"),
                     "r.yaml:7:74: spec.http[0].retries.on[0]: status \"404\" is not retried: only 5xx statuses are (a 4xx is the client's own error)");
    check_only_error(F("retries: {attempts: 1, on: [timeout]}"),
                     "r.yaml:7:74: spec.http[0].retries.on[0]: invalid retry condition \"timeout\"; allowed: connect-failure, reset, 5xx, gateway-error (502, 503, 504) or a status 500..599");
    check_only_error(F("retries: {attempts: 1, on: [reset, reset]}"),
                     "r.yaml:7:81: spec.http[0].retries.on[1]: \"reset\" is listed twice (on[0])");
    check_only_error(F("retries: {attempts: 1, on: []}"),
                     "r.yaml:7:73: spec.http[0].retries.on: must not be empty (omit on for connect-failure, reset, gateway-error)");
    check_only_error(F("retries: {attempts: 1, perTryTimeout: soon}"),
                     "r.yaml:7:84: spec.http[0].retries.perTryTimeout: invalid duration \"soon\" (a number with a unit: ms, s, m, h; e.g. 2s, 500ms)");
    check_only_error(F("retries: {attempts: 1, nonIdempotent: \"yes\"}"),
                     "r.yaml:7:84: spec.http[0].retries.nonIdempotent: expected true or false, got a string");
    check_only_error(F("retries: {attempts: 1, maxBodyBytes: 1024}"),
                     "r.yaml:7:83: spec.http[0].retries.maxBodyBytes: invalid size \"1024\" (a whole number with a unit: B, KiB, MiB; e.g. 64KiB)");
    check_only_error(F("retries: {attempts: 1, maxBodyBytes: 1GiB}"),
                     "r.yaml:7:83: spec.http[0].retries.maxBodyBytes: invalid size \"1GiB\" (a whole number with a unit: B, KiB, MiB; e.g. 64KiB)");
    check_only_error(F("retries: {attempts: 1, maxBodyBytes: 65MiB}"),
                     "r.yaml:7:83: spec.http[0].retries.maxBodyBytes: size \"65MiB\" is out of range (0B..64MiB)");
    check_only_error(F("retries: {attempts: 1, retryOn: reset}"),
                     "r.yaml:7:69: spec.http[0].retries.retryOn: unknown field; allowed: attempts, perTryTimeout, on, nonIdempotent, maxBodyBytes");
#undef F
}

static void test_error_rewrite(void **state)
{
    (void)state;
#define W(m, x) RHDR "  - {name: a, " DEST ", " m "rewrite: " x "}\n"
    check_only_error(W("", "{}"), "r.yaml:7:55: spec.http[0].rewrite.prefix: required field is missing (the path prefix that replaces the matched one)");
    check_only_error(W("", "{prefix: v2}"), "r.yaml:7:64: spec.http[0].rewrite.prefix: \"v2\" must start with \"/\"");
    check_only_error(W("", "{prefix: \"/a?b\"}"),
                     "r.yaml:7:64: spec.http[0].rewrite.prefix: \"/a?b\": a rewritten path is a plain normalized path (no spaces, control characters, '?', '#', '%' or any of \"<>\\^`{|})");
    check_only_error(W("", "{prefix: \"/a%2f\"}"),
                     "r.yaml:7:64: spec.http[0].rewrite.prefix: \"/a%2f\": a rewritten path is a plain normalized path (no spaces, control characters, '?', '#', '%' or any of \"<>\\^`{|})");
    check_only_error(W("", "{prefix: /a/../admin/}"),
                     "r.yaml:7:64: spec.http[0].rewrite.prefix: \"/a/../admin/\": a rewritten path is normalized (no empty, \".\" or \"..\" segments)");
    check_only_error(W("", "{prefix: //a}"),
                     "r.yaml:7:64: spec.http[0].rewrite.prefix: \"//a\": a rewritten path is normalized (no empty, \".\" or \"..\" segments)");
    check_only_error(W("match: [{paths: [\"/v2/{*}\"]}], ", "{prefix: /}"),
                     "r.yaml:7:95: spec.http[0].rewrite.prefix: a prefix rewrite needs exact paths or prefixes (\"/v2/*\") to replace, but match[0].paths[0] is a template");
    check_only_error(W("match: [{paths: [{regex: \"^/v[0-9]$\"}]}], ", "{prefix: /}"),
                     "r.yaml:7:106: spec.http[0].rewrite.prefix: a prefix rewrite needs exact paths or prefixes (\"/v2/*\") to replace, but match[0].paths[0] is a regex");
#undef W
}

static void test_error_header_operations(void **state)
{
    (void)state;
#define H(x) RHDR "  - {name: a, " DEST ", headers: " x "}\n"
    /* headers start at column 51 */
    check_only_error(H("{}"), "r.yaml:7:55: spec.http[0].headers: must not be empty (request and/or response)");
    check_only_error(H("{upstream: {set: {a: b}}}"),
                     "r.yaml:7:56: spec.http[0].headers.upstream: unknown field; allowed: request, response");
    check_only_error(H("{request: {set: {\"x y\": b}}}"),
                     "r.yaml:7:72: spec.http[0].headers.request.set[\"x y\"]: invalid header name \"x y\": must be an HTTP token");
    /* response splitting: a value may never carry CR or LF */
    check_only_error(H("{response: {set: {x-a: \"ok\\r\\nSet-Cookie: s=1\"}}}"),
                     "r.yaml:7:78: spec.http[0].headers.response.set.x-a: header value \"ok\\x0d\\nSet-Cookie: s=1\" contains a control character (CR, LF, NUL ... would split or corrupt the message)");
    check_only_error(H("{request: {add: {x-a: \"a\\u0000b\"}}}"),
                     "r.yaml:7:77: spec.http[0].headers.request.add.x-a: header value \"a\\x00b\" contains a control character (CR, LF, NUL ... would split or corrupt the message)");
    check_only_error(H("{request: {set: {x-a: \" padded\"}}}"),
                     "r.yaml:7:77: spec.http[0].headers.request.set.x-a: header value \" padded\" has leading or trailing whitespace");
    check_only_error(H("{request: {set: {Content-Length: \"0\"}}}"),
                     "r.yaml:7:72: spec.http[0].headers.request.set.Content-Length: header \"Content-Length\" cannot be changed by a route: it frames or routes the message");
    check_only_error(H("{request: {remove: [transfer-encoding]}}"),
                     "r.yaml:7:75: spec.http[0].headers.request.remove[0]: header \"transfer-encoding\" cannot be changed by a route: it frames or routes the message");
    check_only_error(H("{request: {set: {host: evil}}}"),
                     "r.yaml:7:72: spec.http[0].headers.request.set.host: header \"host\" cannot be changed by a route: it frames or routes the message");
    check_only_error(H("{request: {set: {X-Forwarded-Client-Cert: \"By=spiffe://x\"}}}"),
                     "r.yaml:7:72: spec.http[0].headers.request.set.X-Forwarded-Client-Cert: header \"X-Forwarded-Client-Cert\" cannot be changed by a route: the proxy sets it on its own authority");
    check_only_error(H("{response: {remove: [x-ward-reason]}}"),
                     "r.yaml:7:76: spec.http[0].headers.response.remove[0]: header \"x-ward-reason\" cannot be changed by a route: x-ward* headers belong to the proxy");
    check_only_error(H("{request: {set: {x-a: b}, remove: [X-A]}}"),
                     "r.yaml:7:90: spec.http[0].headers.request.remove[0]: header \"X-A\" is also in set (names are case-insensitive)");
    check_only_error(H("{request: {set: {x-a: b}, add: {x-a: c}}}"),
                     "r.yaml:7:87: spec.http[0].headers.request.add.x-a: header \"x-a\" is also in set (names are case-insensitive)");
    check_only_error(H("{request: {set: {}}}"), "r.yaml:7:71: spec.http[0].headers.request.set: must not be empty (omit set)");
#undef H
}

static void test_error_rate_limit_and_mirror(void **state)
{
    (void)state;
#define F(x) RHDR "  - {name: a, " DEST ", " x "}\n"
    check_only_error(F("rateLimit: {per: 1s}"),
                     "r.yaml:7:57: spec.http[0].rateLimit.requests: required field is missing (how many requests per period)");
    check_only_error(F("rateLimit: {requests: 10}"),
                     "r.yaml:7:57: spec.http[0].rateLimit.per: required field is missing (the period, e.g. 1s or 1m)");
    check_only_error(F("rateLimit: {requests: 0, per: 1s}"),
                     "r.yaml:7:68: spec.http[0].rateLimit.requests: 0 is out of range (1..1000000000)");
    check_only_error(F("rateLimit: {requests: 10, per: 2d}"),
                     "r.yaml:7:77: spec.http[0].rateLimit.per: invalid duration \"2d\" (a number with a unit: ms, s, m, h; e.g. 2s, 500ms)");
    check_only_error(F("rateLimit: {requests: 10, per: 1s, key: source.ip}"),
                     "r.yaml:7:86: spec.http[0].rateLimit.key: invalid key \"source.ip\"; allowed: none, source.principal, request.headers[<name>]");
    check_only_error(F("rateLimit: {requests: 10, per: 1s, key: \"request.headers[a b]\"}"),
                     "r.yaml:7:86: spec.http[0].rateLimit.key: invalid header name \"a b\": must be an HTTP token");
    check_only_error(F("mirror: {percent: 5}"),
                     "r.yaml:7:54: spec.http[0].mirror.service: required field is missing (where copies of the requests go)");
    check_only_error(F("mirror: {service: shadow, percent: 101}"),
                     "r.yaml:7:81: spec.http[0].mirror.percent: 101 is out of range (0..100)");
#undef F
}

static void test_every_error_is_reported(void **state)
{
    (void)state;
    loaded l;
    load(&l, RHDR "  - {name: a, destinations: [{service: A}], timeout: 5}\n"
                  "  - {name: b, destinations: [{service: b, weight: 10}, {service: c, weight: 10}]}\n");
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(l.d.n, 3);
    unload(&l);
}

/* ---- warnings ---------------------------------------------------------------------------- */

static void test_warn_entry_after_catch_all(void **state)
{
    (void)state;
    check_warnings(RHDR "  - {name: all, " DEST "}\n  - {name: v2, " DEST ", match: [{paths: [\"/v2/*\"]}]}\n"
                        "  - {name: v3, " DEST ", match: [{paths: [\"/v3/*\"]}]}\n",
                   "r.yaml:8:5: warning: spec.http[1]: \"v2\" never matches: spec.http[0] (\"all\") has no match and takes every request",
                   "r.yaml:9:5: warning: spec.http[2]: \"v3\" never matches: spec.http[0] (\"all\") has no match and takes every request",
                   NULL);
}

static void test_warn_same_prefix_fewer_constraints(void **state)
{
    (void)state;
    /* a prefix entry before a narrower GET of one path under it */
    check_warnings(RHDR "  - {name: v2, " DEST ", match: [{paths: [\"/v2/*\"]}]}\n"
                        "  - {name: items, " DEST ", match: [{paths: [/v2/items, \"/v2/items/*\", \"/v2/{*}/x\"], methods: [GET], headers: {x-a: \"1\"}}]}\n",
                   "r.yaml:8:5: warning: spec.http[1]: \"items\" never matches: spec.http[0] (\"v2\") matches every request it does",
                   NULL);
    /* a header prefix covers longer prefixes and exact values under it */
    check_warnings(RHDR "  - {name: beta, " DEST ", match: [{headers: {x-user: {prefix: beta-}}}]}\n"
                        "  - {name: joe, " DEST ", match: [{paths: [/], headers: {x-user: beta-joe, x-b: \"1\"}}]}\n",
                   "r.yaml:8:5: warning: spec.http[1]: \"joe\" never matches: spec.http[0] (\"beta\") matches every request it does",
                   NULL);
    /* methods: "*" covers every method */
    check_warnings(RHDR "  - {name: any, " DEST ", match: [{paths: [/a], methods: [\"*\"]}]}\n"
                        "  - {name: get, " DEST ", match: [{paths: [/a], methods: [GET]}]}\n",
                   "r.yaml:8:5: warning: spec.http[1]: \"get\" never matches: spec.http[0] (\"any\") matches every request it does",
                   NULL);
}

static void test_no_warning_when_later_entry_is_wider(void **state)
{
    (void)state;
    check_warnings(RHDR "  - {name: get, " DEST ", match: [{paths: [\"/v2/*\"], methods: [GET]}]}\n"
                        "  - {name: v2, " DEST ", match: [{paths: [\"/v2/*\"]}]}\n"
                        "  - {name: other-header, " DEST ", match: [{paths: [\"/v2/*\"], headers: {x-a: \"1\"}}]}\n"
                        "  - {name: v, " DEST ", match: [{paths: [\"/v*\"]}]}\n"
                        "  - {name: rest, " DEST "}\n",
                   "r.yaml:9:5: warning: spec.http[2]: \"other-header\" never matches: spec.http[1] (\"v2\") matches every request it does",
                   NULL);
    /* different regexes, templates and header names are never judged */
    check_warnings(RHDR "  - {name: a, " DEST ", match: [{paths: [{regex: \"^/a.*$\"}]}]}\n"
                        "  - {name: b, " DEST ", match: [{paths: [/a/b]}]}\n"
                        "  - {name: c, " DEST ", match: [{headers: {x-a: \"1\"}}]}\n"
                        "  - {name: d, " DEST ", match: [{headers: {x-b: \"1\"}}]}\n",
                   NULL);
}

static void test_warn_shadowed_alternatives(void **state)
{
    (void)state;
    check_warnings(RHDR "  - {name: a, " DEST ", match: [{paths: [\"/a/*\"]}]}\n"
                        "  - {name: b, " DEST ", match: [{paths: [/a/x]}, {paths: [/b]}, {paths: [/b], methods: [GET]}]}\n",
                   "r.yaml:8:54: warning: spec.http[1].match[0]: never matches: spec.http[0].match[0] (in \"a\") matches every request it does",
                   "r.yaml:8:86: warning: spec.http[1].match[2]: redundant: match[1] already matches every request it does",
                   NULL);
    /* each alternative covered, by different earlier entries */
    check_warnings(RHDR "  - {name: a, " DEST ", match: [{paths: [\"/a/*\"]}]}\n"
                        "  - {name: b, " DEST ", match: [{paths: [\"/b/*\"]}]}\n"
                        "  - {name: c, " DEST ", match: [{paths: [/a/1]}, {paths: [/b/1]}]}\n",
                   "r.yaml:9:54: warning: spec.http[2].match[0]: never matches: spec.http[0].match[0] (in \"a\") matches every request it does",
                   "r.yaml:9:71: warning: spec.http[2].match[1]: never matches: spec.http[1].match[0] (in \"b\") matches every request it does",
                   "r.yaml:9:5: warning: spec.http[2]: \"c\" never matches: earlier entries match every request it does",
                   NULL);
}

static void test_warn_timeouts_and_rewrites(void **state)
{
    (void)state;
    check_warnings(RHDR "  - {name: a, " DEST ", timeout: 1s, retries: {attempts: 2, perTryTimeout: 1s}}\n",
                   "r.yaml:7:97: warning: spec.http[0].retries.perTryTimeout: perTryTimeout (1000ms) is not shorter than the route's timeout (1000ms): no retry can start in time",
                   NULL);
    check_warnings(RHDR "  - {name: a, " DEST ", match: [{paths: [\"/v2/*\"]}], rewrite: {prefix: /api}}\n",
                   "r.yaml:7:93: warning: spec.http[0].rewrite.prefix: \"/api\" does not end in \"/\" but the prefix \"/v2/\" it replaces (match[0].paths[0]) does (path segments get glued together): write both with or both without the trailing slash",
                   NULL);
    check_warnings(RHDR "  - {name: a, " DEST ", match: [{paths: [\"/v2*\", /exact]}], rewrite: {prefix: /api/}}\n",
                   "r.yaml:7:100: warning: spec.http[0].rewrite.prefix: \"/api/\" ends in \"/\" but the prefix \"/v2\" it replaces (match[0].paths[0]) does not (paths get a double slash): write both with or both without the trailing slash",
                   NULL);
}

static void test_warnings_do_not_fail_and_invalid_documents_do_not_warn(void **state)
{
    (void)state;
    loaded l;
    load(&l, RHDR "  - {name: all, " DEST "}\n  - {name: b, " DEST "}\n");
    assert_int_equal(l.rc, 0);
    assert_int_equal(l.d.n, 0); /* the error list stays empty */
    assert_int_equal(policy_set_warnings(l.set)->n, 1);
    unload(&l);
    /* an invalid document: its errors only */
    check_only_error(RHDR "  - {name: all, " DEST "}\n  - {name: b, destinations: []}\n",
                     "r.yaml:8:29: spec.http[1].destinations: must not be empty (name at least one service)");
    load(&l, RHDR "  - {name: all, " DEST "}\n  - {name: b, destinations: []}\n");
    assert_int_equal(policy_set_warnings(l.set)->n, 0);
    unload(&l);
    /* a Route refused for its host: its warnings go with it */
    load(&l, RHDR "  - {name: a, " DEST "}\n---\n"
                  "apiVersion: ward/v1\nkind: Route\nmetadata: {name: again}\nspec:\n"
                  "  hosts: [payments]\n  http: [{name: all, " DEST "}, {name: b, " DEST "}]\n");
    assert_int_equal(l.rc, WARD_EPOLICY);
    assert_int_equal(policy_set_route_count(l.set), 1);
    assert_int_equal(policy_set_warnings(l.set)->n, 0);
    unload(&l);
}

/* ---- destination services -------------------------------------------------------------- */

static bool known(void *data, const char *service)
{
    (void)data;
    return strcmp(service, "v1") == 0;
}

static void test_check_services_names_unknown_destinations(void **state)
{
    (void)state;
    loaded l;
    only(&l, RHDR "  - {name: a, destinations: [{service: v1, weight: 50}, {service: v9, weight: 50}], mirror: {service: ghost}}\n"
                  "  - {name: b, " DEST "}\n");
    ward_diag d;
    ward_diag_init(&d);
    assert_int_equal(policy_set_check_services(l.set, known, NULL, &d), WARD_EPOLICY);
    if (d.n != 2 ||
        !has(&d, "r.yaml:7:67: spec.http[0].destinations[1].service: unknown service \"v9\" (route shop/r; no upstream of that name)") ||
        !has(&d, "r.yaml:7:103: spec.http[0].mirror.service: unknown service \"ghost\" (route shop/r; no upstream of that name)")) {
        dump("check_services", &d);
        fail();
    }
    ward_diag_dispose(&d);
    unload(&l);
}

static void test_check_services_skips_routes_of_others(void **state)
{
    (void)state;
    loaded l;
    /* hosts payments, destinations v7, v8: nothing this caller knows */
    only(&l, RHDR "  - {name: a, destinations: [{service: v7, weight: 50}, {service: v8, weight: 50}]}\n");
    ward_diag d;
    ward_diag_init(&d);
    assert_int_equal(policy_set_check_services(l.set, known, NULL, &d), 0);
    assert_int_equal(d.n, 0);
    ward_diag_dispose(&d);
    unload(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_design_example),
        cmocka_unit_test(test_check_services_skips_routes_of_others),
        cmocka_unit_test(test_routes_and_policies_share_a_file),
        cmocka_unit_test(test_error_hosts),
        cmocka_unit_test(test_error_one_route_per_host),
        cmocka_unit_test(test_error_http_list),
        cmocka_unit_test(test_error_match),
        cmocka_unit_test(test_error_destinations),
        cmocka_unit_test(test_error_timeouts_and_retries),
        cmocka_unit_test(test_error_rewrite),
        cmocka_unit_test(test_error_header_operations),
        cmocka_unit_test(test_error_rate_limit_and_mirror),
        cmocka_unit_test(test_every_error_is_reported),
        cmocka_unit_test(test_warn_entry_after_catch_all),
        cmocka_unit_test(test_warn_same_prefix_fewer_constraints),
        cmocka_unit_test(test_no_warning_when_later_entry_is_wider),
        cmocka_unit_test(test_warn_shadowed_alternatives),
        cmocka_unit_test(test_warn_timeouts_and_rewrites),
        cmocka_unit_test(test_warnings_do_not_fail_and_invalid_documents_do_not_warn),
        cmocka_unit_test(test_check_services_names_unknown_destinations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
