/* test_route.c - routes in the engine: host lookup, first match wins, every matcher, rewrites, JSON, scale */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "authz/authz.h"

#define ROUTE(name, hosts)                                                                         \
    "apiVersion: ward/v1\nkind: Route\nmetadata: {name: " name ", namespace: shop}\nspec:\n"      \
    "  hosts: " hosts "\n  http:\n"
#define ALLOW_ALL "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: all}\nspec: {rules: [{}]}\n---\n"

static authz_engine *engine_of(const char *yaml)
{
    policy_set *set;
    ward_diag diag;
    ward_diag_init(&diag);
    assert_int_equal(policy_set_new(&set), 0);
    int rc = policy_set_load_buffer(set, "t.yaml", yaml, strlen(yaml), &diag);
    for (size_t i = 0; i < diag.n; i++)
        print_error("%s\n", diag.msgs[i]);
    assert_int_equal(rc, 0);
    authz_options opts = {.default_allow = false};
    authz_bundle *b;
    ward_err err;
    if (authz_bundle_new(set, &opts, &b, &err) != 0)
        fail_msg("bundle: %s", err.msg);
    policy_set_free(set);
    ward_diag_dispose(&diag);
    authz_engine *e;
    if (authz_engine_new(b, &e, &err) != 0)
        fail_msg("engine: %s", err.msg);
    authz_bundle_unref(b);
    return e;
}

static void decide(authz_engine *e, const char *json, bool explain, authz_decision *d)
{
    authz_request req;
    authz_request_storage *st;
    ward_err err;
    if (authz_request_from_json(json, strlen(json), &req, &st, &err) != 0)
        fail_msg("input: %s", err.msg);
    assert_int_equal(authz_decide(e, &req, explain, d), 0);
    authz_request_storage_free(st);
}

/* The name of the chosen entry ("-" for none) of a request given as
 * host, method, path, query (NULL: none) and headers JSON (NULL: none). */
static const char *route_of(authz_engine *e, const char *host, const char *method, const char *path,
                            const char *query, const char *headers, char *buf, size_t size)
{
    char json[2048];
    int n = snprintf(json, sizeof(json), "{\"request\":{\"method\":\"%s\",\"path\":\"%s\"", method, path);
    if (host != NULL)
        n += snprintf(json + n, sizeof(json) - (size_t)n, ",\"host\":\"%s\"", host);
    if (query != NULL)
        n += snprintf(json + n, sizeof(json) - (size_t)n, ",\"query\":\"%s\"", query);
    if (headers != NULL)
        n += snprintf(json + n, sizeof(json) - (size_t)n, ",\"headers\":%s", headers);
    snprintf(json + n, sizeof(json) - (size_t)n, "}}");
    authz_decision d;
    decide(e, json, false, &d);
    snprintf(buf, size, "%s", d.route != NULL ? d.route->name : "-");
    authz_decision_dispose(&d);
    return buf;
}

#define EXPECT_ROUTE(e, want, host, method, path, query, headers)                                  \
    do {                                                                                           \
        char got_[128];                                                                            \
        route_of(e, host, method, path, query, headers, got_, sizeof(got_));                      \
        if (strcmp(got_, want) != 0)                                                               \
            fail_msg("%s %s %s?%s %s: route %s, expected %s", host ? host : "(no host)", method,  \
                     path, query ? query : "", headers ? headers : "", got_, want);               \
    } while (0)

static const char shop[] =
    ALLOW_ALL ROUTE("payments", "[payments, Payments.Shop]")
    "    - name: canary-header\n"
    "      match: [{headers: {x-canary: \"1\"}}]\n"
    "      destinations: [{service: payments-v2}]\n"
    "    - name: v2-get\n"
    "      match: [{paths: [\"/v2/*\"], methods: [GET, HEAD]}]\n"
    "      destinations: [{service: payments-v2, weight: 10}, {service: payments-v1, weight: 90}]\n"
    "    - name: beta-user\n"
    "      match: [{headers: {X-User: {prefix: beta-}}}, {headers: {x-user: {regex: \"^qa-[0-9]+$\"}}}]\n"
    "      destinations: [{service: payments-v2}]\n"
    "    - name: debug-query\n"
    "      match: [{queryParams: {debug: {exact: \"1\"}}}, {queryParams: {trace: {prefix: \"on\"}}}, {queryParams: {flag: {exact: \"\"}}}]\n"
    "      destinations: [{service: payments-debug}]\n"
    "    - name: orders\n"
    "      match: [{paths: [\"/v1/users/{*}/orders/{**}\", {regex: \"^/v1/o/[0-9]+$\"}]}]\n"
    "      destinations: [{service: orders}]\n"
    "    - name: rest\n"
    "      destinations: [{service: payments-v1}]\n"
    "---\n" ROUTE("inventory", "[inventory]")
    "    - name: reads\n"
    "      match: [{methods: [GET]}]\n"
    "      destinations: [{service: inventory-ro}]\n";

static void test_first_match_wins(void **state)
{
    (void)state;
    authz_engine *e = engine_of(shop);
    /* the header entry comes first, so it takes /v2 GETs that carry it */
    EXPECT_ROUTE(e, "canary-header", "payments", "GET", "/v2/items", NULL, "{\"x-canary\":\"1\"}");
    EXPECT_ROUTE(e, "v2-get", "payments", "GET", "/v2/items", NULL, NULL);
    EXPECT_ROUTE(e, "v2-get", "payments", "GET", "/v2/", NULL, "{\"x-user\":\"beta-joe\"}");
    EXPECT_ROUTE(e, "beta-user", "payments", "POST", "/v2/items", NULL, "{\"x-user\":\"beta-joe\"}");
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/v2/items", NULL, NULL);
    EXPECT_ROUTE(e, "rest", "payments", "GET", "/v3", NULL, NULL);
    EXPECT_ROUTE(e, "reads", "inventory", "GET", "/anything", NULL, NULL);
    authz_engine_free(e);
}

static void test_host_port_and_case(void **state)
{
    (void)state;
    authz_engine *e = engine_of(shop);
    EXPECT_ROUTE(e, "v2-get", "payments:8080", "GET", "/v2/x", NULL, NULL);
    EXPECT_ROUTE(e, "v2-get", "PAYMENTS", "GET", "/v2/x", NULL, NULL);
    EXPECT_ROUTE(e, "v2-get", "Payments.SHOP:443", "GET", "/v2/x", NULL, NULL);
    EXPECT_ROUTE(e, "-", "payments.shop.svc", "GET", "/v2/x", NULL, NULL); /* hosts are exact */
    EXPECT_ROUTE(e, "-", "payment", "GET", "/v2/x", NULL, NULL);
    EXPECT_ROUTE(e, "-", "paymentsx", "GET", "/v2/x", NULL, NULL);
    EXPECT_ROUTE(e, "-", ":8080", "GET", "/v2/x", NULL, NULL);
    EXPECT_ROUTE(e, "-", "[::1]:8080", "GET", "/v2/x", NULL, NULL);
    EXPECT_ROUTE(e, "-", "", "GET", "/v2/x", NULL, NULL);
    EXPECT_ROUTE(e, "-", NULL, "GET", "/v2/x", NULL, NULL); /* no host: no route */
    authz_engine_free(e);
}

static void test_header_matching(void **state)
{
    (void)state;
    authz_engine *e = engine_of(shop);
    EXPECT_ROUTE(e, "canary-header", "payments", "POST", "/", NULL, "{\"X-Canary\":\"1\"}"); /* names: any case */
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/", NULL, "{\"x-canary\":\"11\"}");          /* exact */
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/", NULL, "{\"x-canary\":\"\"}");
    EXPECT_ROUTE(e, "beta-user", "payments", "POST", "/", NULL, "{\"x-user\":\"beta-\"}");      /* bare prefix */
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/", NULL, "{\"x-user\":\"Beta-joe\"}");      /* values: case-sensitive */
    EXPECT_ROUTE(e, "beta-user", "payments", "POST", "/", NULL, "{\"x-user\":\"qa-42\"}");     /* second alternative */
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/", NULL, "{\"x-user\":\"qa-42x\"}");         /* anchored regex */
    authz_engine_free(e);
}

static void test_query_matching(void **state)
{
    (void)state;
    authz_engine *e = engine_of(shop);
    EXPECT_ROUTE(e, "debug-query", "payments", "POST", "/", "debug=1", NULL);
    EXPECT_ROUTE(e, "debug-query", "payments", "POST", "/", "a=2&debug=1&b", NULL);
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/", "debug=10", NULL);
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/", "debug=2&debug=1", NULL); /* the first value counts */
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/", "Debug=1", NULL);         /* names: case-sensitive */
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/", "xdebug=1", NULL);
    EXPECT_ROUTE(e, "debug-query", "payments", "POST", "/", "trace=online", NULL);
    EXPECT_ROUTE(e, "debug-query", "payments", "POST", "/", "flag", NULL); /* no "=": the value "" */
    EXPECT_ROUTE(e, "debug-query", "payments", "POST", "/", "flag=", NULL);
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/", "flag=x", NULL);
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/", "", NULL);
    authz_engine_free(e);
}

static void test_path_and_method_matching(void **state)
{
    (void)state;
    authz_engine *e = engine_of(shop);
    EXPECT_ROUTE(e, "v2-get", "payments", "HEAD", "/v2/a", NULL, NULL);
    EXPECT_ROUTE(e, "rest", "payments", "get", "/v2/a", NULL, NULL); /* methods: case-sensitive */
    EXPECT_ROUTE(e, "orders", "payments", "POST", "/v1/users/u1/orders/o/2", NULL, NULL);
    EXPECT_ROUTE(e, "orders", "payments", "POST", "/v1/users/u1/orders", NULL, NULL);
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/v1/users/u1/x/orders", NULL, NULL);
    EXPECT_ROUTE(e, "orders", "payments", "POST", "/v1/o/17", NULL, NULL);
    EXPECT_ROUTE(e, "rest", "payments", "POST", "/v1/o/17/x", NULL, NULL);
    authz_engine_free(e);
}

static void test_no_entry_matches_is_no_route(void **state)
{
    (void)state;
    authz_engine *e = engine_of(shop);
    EXPECT_ROUTE(e, "-", "inventory", "POST", "/items", NULL, NULL);
    authz_decision d;
    decide(e, "{\"request\":{\"method\":\"POST\",\"host\":\"inventory\",\"path\":\"/\"}}", false, &d);
    assert_null(d.route);
    ward_buf out;
    ward_buf_init(&out);
    assert_int_equal(authz_decision_to_json(&d, &out), 0);
    assert_non_null(strstr(out.ptr, ",\"route\":null"));
    ward_buf_dispose(&out);
    authz_decision_dispose(&d);
    authz_engine_free(e);
}

static void test_route_whatever_the_decision_but_not_on_failure(void **state)
{
    (void)state;
    /* no ALLOW policy: a deny, still with its route */
    authz_engine *e = engine_of(ROUTE("r", "[svc]") "    - {name: all, destinations: [{service: v1}]}\n");
    authz_decision d;
    decide(e, "{\"request\":{\"method\":\"GET\",\"host\":\"svc\",\"path\":\"/\"}}", false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    assert_non_null(d.route);
    assert_string_equal(d.route->policy, "shop/r");
    assert_string_equal(d.route->name, "all");
    assert_int_equal(d.route->index, 0);
    authz_decision_dispose(&d);
    authz_engine_free(e);
    /* an engine failure discards everything: deny, no route */
    e = engine_of("apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: boom}\nspec:\n"
                  "  action: DENY\n  rules: [{when: [{lua: \"req.nothing.here == 1\"}]}]\n---\n" ROUTE("r", "[svc]")
                  "    - {name: all, destinations: [{service: v1}]}\n");
    decide(e, "{\"request\":{\"method\":\"GET\",\"host\":\"svc\",\"path\":\"/\"}}", false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    assert_non_null(strstr(d.reason, "policy engine error"));
    assert_null(d.route);
    authz_decision_dispose(&d);
    authz_engine_free(e);
}

static void test_route_regex_limit_fails_closed(void **state)
{
    (void)state;
    authz_engine *e = engine_of(ALLOW_ALL ROUTE("r", "[svc]")
                                "    - name: slow\n"
                                "      match: [{headers: {x-a: {regex: \"(a+)+$\"}}}]\n"
                                "      destinations: [{service: v1}]\n");
    char json[4096];
    int n = snprintf(json, sizeof(json), "{\"request\":{\"method\":\"GET\",\"host\":\"svc\",\"path\":\"/\",\"headers\":{\"x-a\":\"");
    for (int i = 0; i < 60; i++)
        json[n++] = 'a';
    snprintf(json + n, sizeof(json) - (size_t)n, "b\"}}}");
    authz_decision d;
    decide(e, json, false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    assert_null(d.route);
    assert_non_null(strstr(d.reason, "limits"));
    authz_decision_dispose(&d);
    authz_engine_free(e);
}

static void check_rewrite(authz_engine *e, const char *path, const char *want)
{
    char json[512];
    snprintf(json, sizeof(json), "{\"request\":{\"method\":\"GET\",\"host\":\"svc\",\"path\":\"%s\"}}", path);
    authz_decision d;
    decide(e, json, false, &d);
    assert_non_null(d.route);
    if (want == NULL)
        assert_null(d.route->rewrite_path);
    else if (d.route->rewrite_path == NULL || strcmp(d.route->rewrite_path, want) != 0)
        fail_msg("%s rewritten to %s, expected %s", path, d.route->rewrite_path ? d.route->rewrite_path : "(none)", want);
    authz_decision_dispose(&d);
}

static void test_rewrite_replaces_the_matched_prefix(void **state)
{
    (void)state;
    authz_engine *e = engine_of(ROUTE("r", "[svc]")
                                "    - name: v2\n"
                                "      match: [{paths: [\"/v2/*\", \"/beta/*\"]}, {paths: [/exact/path]}]\n"
                                "      destinations: [{service: v1}]\n"
                                "      rewrite: {prefix: /api/}\n"
                                "    - name: other\n"
                                "      match: [{methods: [GET], paths: [\"/o*\"]}]\n"
                                "      destinations: [{service: v1}]\n"
                                "    - name: any\n"
                                "      match: [{methods: [GET]}]\n"
                                "      destinations: [{service: v1}]\n"
                                "      rewrite: {prefix: /root/}\n");
    check_rewrite(e, "/v2/items/1", "/api/items/1");
    check_rewrite(e, "/v2/", "/api/");
    check_rewrite(e, "/beta/x", "/api/x"); /* the pattern that matched names the prefix */
    check_rewrite(e, "/exact/path", "/api/");
    check_rewrite(e, "/other", NULL);
    check_rewrite(e, "/x/y", "/root/x/y"); /* no path constraint: "/" is replaced */
    check_rewrite(e, "/", "/root/");
    /* rewrite_path lives until the next decision; the route itself in the program */
    authz_engine_free(e);
}

static void test_route_json(void **state)
{
    (void)state;
    authz_engine *e = engine_of(ROUTE("payments", "[payments]")
                                "    - name: canary\n"
                                "      match: [{paths: [\"/v2/*\"]}]\n"
                                "      destinations: [{service: payments-v2, weight: 10}, {service: payments-v1, weight: 90}]\n"
                                "      timeout: 2s\n"
                                "      retries: {attempts: 2, perTryTimeout: 500ms, on: [connect-failure, \"503\", 504]}\n"
                                "      rewrite: {prefix: /}\n"
                                "      headers: {request: {set: {x-route: canary}, remove: [x-debug]}, response: {add: {x-q: \"a\\\"b\"}}}\n"
                                "      rateLimit: {requests: 100, per: 1s, key: \"request.headers[X-User]\"}\n"
                                "      mirror: {service: payments-shadow, percent: 5}\n"
                                "    - name: rest\n"
                                "      destinations: [{service: payments-v1}]\n"
                                "      retries: {attempts: 1, on: [reset, 5xx], nonIdempotent: true, maxBodyBytes: 1KiB}\n"
                                "      rateLimit: {requests: 5, per: 1m, key: source.principal}\n");
    authz_decision d;
    ward_buf out;
    ward_buf_init(&out);
    decide(e, "{\"request\":{\"method\":\"GET\",\"host\":\"payments\",\"path\":\"/v2/items\"}}", false, &d);
    assert_non_null(d.route);
    assert_int_equal(authz_route_to_json(d.route, &out), 0);
    assert_string_equal(
        out.ptr,
        "{\"policy\":\"shop/payments\",\"name\":\"canary\",\"index\":0,\"source\":\"t.yaml:7\","
        "\"destinations\":[{\"service\":\"payments-v2\",\"weight\":10},{\"service\":\"payments-v1\",\"weight\":90}],"
        "\"timeout_ms\":2000,\"retries\":{\"attempts\":2,\"per_try_timeout_ms\":500,"
        "\"on\":[\"connect-failure\",\"503\",\"504\"],\"non_idempotent\":false,\"max_body_bytes\":0},"
        "\"rewrite\":{\"prefix\":\"/\",\"path\":\"/items\"},"
        "\"headers\":{\"request\":{\"set\":{\"x-route\":\"canary\"},\"add\":{},\"remove\":[\"x-debug\"]},"
        "\"response\":{\"set\":{},\"add\":{\"x-q\":\"a\\\"b\"},\"remove\":[]}},"
        "\"rate_limit\":{\"requests\":100,\"per_ms\":1000,\"key\":\"request.headers[x-user]\"},"
        "\"mirror\":{\"service\":\"payments-shadow\",\"percent\":5}}");
    assert_int_equal(d.route->retries.on, AUTHZ_RETRY_CONNECT_FAILURE);
    assert_true(authz_route_retries_status(&d.route->retries, 503));
    assert_false(authz_route_retries_status(&d.route->retries, 502));
    assert_false(authz_route_retries_status(&d.route->retries, 200));
    assert_int_equal(d.route->rate_limit.key, AUTHZ_RATE_KEY_HEADER);
    assert_string_equal(d.route->rate_limit.header, "x-user");
    authz_decision_dispose(&d);
    decide(e, "{\"request\":{\"method\":\"POST\",\"host\":\"payments\",\"path\":\"/v1\"}}", false, &d);
    ward_buf_reset(&out);
    assert_int_equal(authz_decision_to_json(&d, &out), 0);
    assert_non_null(strstr(out.ptr,
        ",\"route\":{\"policy\":\"shop/payments\",\"name\":\"rest\",\"index\":1,\"source\":\"t.yaml:16\","
        "\"destinations\":[{\"service\":\"payments-v1\",\"weight\":100}],\"timeout_ms\":null,"
        "\"retries\":{\"attempts\":1,\"per_try_timeout_ms\":null,\"on\":[\"reset\",\"5xx\"],\"non_idempotent\":true,"
        "\"max_body_bytes\":1024},\"rewrite\":null,\"headers\":null,"
        "\"rate_limit\":{\"requests\":5,\"per_ms\":60000,\"key\":\"source.principal\"},\"mirror\":null}}"));
    assert_true(authz_route_retries_status(&d.route->retries, 500));
    assert_true(authz_route_retries_status(&d.route->retries, 599));
    authz_decision_dispose(&d);
    ward_buf_dispose(&out);
    authz_engine_free(e);
}

static void test_pick_follows_the_weights(void **state)
{
    (void)state;
    authz_engine *e = engine_of(ROUTE("r", "[svc]")
                                "    - {name: split, destinations: [{service: a, weight: 10}, {service: b, weight: 0}, {service: c, weight: 90}]}\n");
    authz_decision d;
    decide(e, "{\"request\":{\"method\":\"GET\",\"host\":\"svc\",\"path\":\"/\"}}", false, &d);
    assert_non_null(d.route);
    int count[3] = {0, 0, 0};
    for (uint32_t r = 0; r < 100; r++) /* every residue once: exactly the weights */
        count[authz_route_pick(d.route, r) - d.route->destinations]++;
    assert_int_equal(count[0], 10);
    assert_int_equal(count[1], 0);
    assert_int_equal(count[2], 90);
    uint32_t x = 12345;
    memset(count, 0, sizeof(count));
    for (int i = 0; i < 100000; i++) {
        x = x * 1664525u + 1013904223u;
        count[authz_route_pick(d.route, x >> 8) - d.route->destinations]++;
    }
    assert_true(count[0] > 9400 && count[0] < 10600); /* 10% within 6 sigma-ish */
    assert_int_equal(count[1], 0);
    authz_decision_dispose(&d);
    authz_engine_free(e);
}

static void test_explain_names_the_route_entries(void **state)
{
    (void)state;
    authz_engine *e = engine_of(shop);
    authz_decision d;
    decide(e, "{\"request\":{\"method\":\"POST\",\"host\":\"payments\",\"path\":\"/v1/o/1\",\"headers\":{\"x-user\":\"alpha\"}}}", true, &d);
    assert_non_null(d.explain_json);
    const char *r = strstr(d.explain_json, "{\"route\":\"shop/payments\",\"source\":\"t.yaml:6\",\"http\":[");
    if (r == NULL)
        fail_msg("no route in %s", d.explain_json);
    assert_non_null(strstr(r, "{\"index\":0,\"name\":\"canary-header\",\"matched\":false,\"failed\":[\"match[0].headers[x-canary]\"]}"));
    assert_non_null(strstr(r, "{\"index\":1,\"name\":\"v2-get\",\"matched\":false,\"failed\":[\"match[0].paths\"]}"));
    assert_non_null(strstr(r, "\"failed\":[\"match[0].headers[x-user]\",\"match[1].headers[x-user]\"]"));
    assert_non_null(strstr(r, "\"failed\":[\"match[0].queryParams[debug]\",\"match[1].queryParams[trace]\",\"match[2].queryParams[flag]\"]"));
    assert_non_null(strstr(r, "{\"index\":4,\"name\":\"orders\",\"matched\":true,\"chosen\":true}"));
    assert_non_null(strstr(r, "{\"index\":5,\"name\":\"rest\",\"matched\":true}]}]"));
    authz_decision_dispose(&d);
    /* a host without a Route adds nothing to the trace */
    decide(e, "{\"request\":{\"method\":\"POST\",\"host\":\"elsewhere\",\"path\":\"/\"}}", true, &d);
    assert_null(strstr(d.explain_json, "\"route\""));
    authz_decision_dispose(&d);
    authz_engine_free(e);
}

/* ---- scale: index by host, then the entries of that host only ---- */

/* n routes over n / 5 hosts... as Routes of five entries each (one Route per host). */
static char *many_routes(int hosts, int per_host)
{
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_puts(&b, ALLOW_ALL);
    for (int h = 0; h < hosts; h++) {
        ward_buf_printf(&b, "apiVersion: ward/v1\nkind: Route\nmetadata: {name: r%d}\nspec:\n  hosts: [host-%d.shop]\n  http:\n", h, h);
        for (int k = 0; k < per_host; k++)
            ward_buf_printf(&b, "    - {name: e%d, match: [{paths: [\"/p%d/*\"], headers: {x-k: \"%d\"}}], destinations: [{service: s%d-%d}]}\n",
                            k, k, k, h, k);
        ward_buf_puts(&b, "---\n");
    }
    return ward_buf_steal(&b);
}

static double ns_per_decision(authz_engine *e, const authz_request *req, int iterations)
{
    double best = 1e18;
    for (int round = 0; round < 5; round++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < iterations; i++) {
            authz_decision d;
            authz_decide(e, req, false, &d);
            assert_non_null(d.route);
            authz_decision_dispose(&d);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / iterations;
        if (ns < best)
            best = ns;
    }
    return best;
}

static void test_thousand_routes_over_two_hundred_hosts(void **state)
{
    (void)state;
    char *big = many_routes(200, 5), *small = many_routes(2, 5);
    authz_engine *eb = engine_of(big), *es = engine_of(small);
    /* every host's every entry is found */
    for (int h = 0; h < 200; h++) {
        for (int k = 0; k < 5; k++) {
            char host[32], path[32], hdr[32], want[32], got[64];
            snprintf(host, sizeof(host), "HOST-%d.shop:80", h);
            snprintf(path, sizeof(path), "/p%d/x", k);
            snprintf(hdr, sizeof(hdr), "{\"x-k\":\"%d\"}", k);
            snprintf(want, sizeof(want), "e%d", k);
            route_of(eb, host, "GET", path, NULL, hdr, got, sizeof(got));
            if (strcmp(got, want) != 0)
                fail_msg("%s %s: %s, expected %s", host, path, got, want);
        }
    }
    /* the last entry of a host: five entries evaluated whatever the number of hosts */
    authz_header hd = {{"x-k", 3}, {"4", 1}};
    authz_request rq = {.source_port = -1, .destination_port = -1, .mtls = -1,
                        .method = {"GET", 3}, .path = {"/p4/x", 5}, .headers = &hd, .n_headers = 1};
    rq.host = (authz_str){"host-1.shop", 11};
    double t_small = ns_per_decision(es, &rq, 20000);
    rq.host = (authz_str){"host-199.shop", 13};
    double t_big = ns_per_decision(eb, &rq, 20000);
    print_message("last entry of a host: %.0f ns with 10 routes, %.0f ns with 1,000 routes over 200 hosts\n",
                  t_small, t_big);
    if (t_big > 3 * t_small + 200)
        fail_msg("1,000 routes cost %.0f ns per decision, 10 routes %.0f ns: not O(1) in the hosts", t_big, t_small);
    authz_engine_free(eb);
    authz_engine_free(es);
    free(big);
    free(small);
}

static void test_golden_routes_bundle_loads(void **state)
{
    (void)state;
    policy_set *set;
    ward_diag diag;
    ward_diag_init(&diag);
    assert_int_equal(policy_set_new(&set), 0);
    const char *paths[] = {"tests/unit/policy/golden/routes.yaml"};
    assert_int_equal(policy_set_load_paths(set, paths, 1, &diag), 0);
    authz_bundle *b;
    authz_engine *e;
    ward_err err;
    assert_int_equal(authz_bundle_new(set, NULL, &b, &err), 0);
    if (authz_engine_new(b, &e, &err) != 0)
        fail_msg("engine: %s", err.msg);
    authz_decision d;
    decide(e, "{\"request\":{\"method\":\"GET\",\"host\":\"evil\",\"path\":\"/\",\"query\":\"q]]=%22 .. os.exit() .. %22x\","
              "\"headers\":{\"x-evil\":\"\\\"]] os.exit() --[[\",\"x-two\":\"a\\\"]==]\"}}}", false, &d);
    assert_null(d.route); /* the query prefix is matched literally: %22 is not a quote */
    authz_decision_dispose(&d);
    decide(e, "{\"request\":{\"method\":\"GET\",\"host\":\"evil\",\"path\":\"/\",\"query\":\"q]]=\\\" .. os.exit() .. \\\"x\","
              "\"headers\":{\"x-evil\":\"\\\"]] os.exit() --[[\",\"x-two\":\"a\\\"]==]\"}}}", false, &d);
    assert_non_null(d.route);
    assert_string_equal(d.route->name, "h");
    assert_string_equal(d.route->request_headers.set[0].value, "\"]] return true --[[ \\");
    authz_decision_dispose(&d);
    authz_engine_free(e);
    authz_bundle_unref(b);
    policy_set_free(set);
    ward_diag_dispose(&diag);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_match_wins),
        cmocka_unit_test(test_host_port_and_case),
        cmocka_unit_test(test_header_matching),
        cmocka_unit_test(test_query_matching),
        cmocka_unit_test(test_path_and_method_matching),
        cmocka_unit_test(test_no_entry_matches_is_no_route),
        cmocka_unit_test(test_route_whatever_the_decision_but_not_on_failure),
        cmocka_unit_test(test_route_regex_limit_fails_closed),
        cmocka_unit_test(test_rewrite_replaces_the_matched_prefix),
        cmocka_unit_test(test_route_json),
        cmocka_unit_test(test_pick_follows_the_weights),
        cmocka_unit_test(test_explain_names_the_route_entries),
        cmocka_unit_test(test_thousand_routes_over_two_hundred_hosts),
        cmocka_unit_test(test_golden_routes_bundle_loads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
