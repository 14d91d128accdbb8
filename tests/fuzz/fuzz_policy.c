/* fuzz_policy.c - libFuzzer target: YAML/JSON policy bytes -> load -> compile -> Lua that must load -> engine that decides */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authz/authz.h"
#include "common/ward.h"
#include "lua/wlua.h"
#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A bug the fuzzer must report: print what and where, then crash. */
static void die(const char *what, const char *detail, const ward_buf *lua)
{
    fprintf(stderr, "fuzz_policy: %s: %s\n", what, detail ? detail : "");
    if (lua != NULL && lua->ptr != NULL)
        fprintf(stderr, "---- generated Lua (%zu bytes) ----\n%.*s\n----\n", lua->len,
                (int)(lua->len > 20000 ? 20000 : lua->len), lua->ptr);
    abort();
}

/* Compiles the set with opts twice (the output must be byte-identical: the
 * compiler is deterministic) and loads the result into a fresh sandbox. */
static void compile_and_load(const policy_set *set, const policy_compile_opts *opts)
{
    ward_buf lua, again;
    ward_buf_init(&lua);
    ward_buf_init(&again);
    ward_err err;
    ward_err_clear(&err);

    int rc = policy_set_compile(set, opts, &lua, &err);
    if (rc == WARD_ENOMEM)
        goto out;
    if (rc != 0)
        die("a valid policy set failed to compile", err.msg, NULL);

    rc = policy_set_compile(set, opts, &again, &err);
    if (rc == WARD_ENOMEM)
        goto out;
    if (rc != 0 || again.len != lua.len || memcmp(again.ptr, lua.ptr, lua.len) != 0)
        die("compiling the same set twice gave different Lua", err.msg, &lua);

    wlua_state *st = NULL;
    wlua_limits limits = {0}; /* the defaults */
    rc = wlua_new(&limits, &st, &err);
    if (rc == WARD_ENOMEM)
        goto out;
    if (rc != 0)
        die("wlua_new failed", err.msg, NULL);
    rc = wlua_load(st, "=fuzz", lua.ptr, lua.len, &err);
    if (rc != 0)
        die("compiled Lua does not load", err.msg, &lua);
    lua_settop(wlua_L(st), 0);
    wlua_free(st);
out:
    ward_buf_dispose(&lua);
    ward_buf_dispose(&again);
}

#define STR(lit) ((authz_str){lit, sizeof(lit) - 1})
#define SLICE(p, n) ((authz_str){(p), (n)})

/* Decides req with e: must succeed (or run out of memory) with a verdict. */
static void decide_one(authz_engine *e, const authz_request *req)
{
    for (int explain = 0; explain <= 1; explain++) {
        authz_decision d;
        authz_decision_init(&d);
        int rc = authz_decide(e, req, explain != 0, &d);
        if (rc != 0 && rc != WARD_ENOMEM)
            die("authz_decide failed", ward_strerror(rc), NULL);
        if (d.decision != AUTHZ_ALLOW && d.decision != AUTHZ_DENY)
            die("decision is neither allow nor deny", NULL, NULL);
        if (d.decision == AUTHZ_ALLOW && d.reason == NULL)
            die("allow without a reason", NULL, NULL);
        ward_buf json;
        ward_buf_init(&json);
        (void)authz_decision_to_json(&d, &json);
        ward_buf_dispose(&json);
        authz_decision_dispose(&d);
    }
}

/* The first value of a match list as a request attribute (exact or prefix). */
static authz_str first_value(const policy_matches *m, authz_str fallback)
{
    if (m->present && m->n > 0 &&
        (m->v[0].kind == POLICY_MATCH_EXACT || m->v[0].kind == POLICY_MATCH_PREFIX))
        return SLICE(m->v[0].value, m->v[0].len);
    return fallback;
}

/* Builds an engine from every valid set and decides a few requests: fixed
 * ones, and one made of the first values the set itself names. */
static void engine_decide(const policy_set *set)
{
    authz_bundle *bundle = NULL;
    authz_engine *e = NULL;
    ward_err err;
    ward_err_clear(&err);
    authz_options opts = {.default_allow = false};
    int rc = authz_bundle_new(set, &opts, &bundle, &err);
    if (rc == WARD_ENOMEM)
        return;
    if (rc != 0)
        die("a valid policy set failed to build a bundle", err.msg, NULL);
    rc = authz_engine_new(bundle, &e, &err);
    authz_bundle_unref(bundle);
    if (rc == WARD_ENOMEM)
        return;
    if (rc != 0)
        die("a valid policy set failed to load into an engine", err.msg, NULL);

    static const authz_header hdrs[] = {
        {{"x-tenant", 8}, {"acme", 4}}, {{"X-Empty", 7}, {"", 0}}, {{"cookie", 6}, {"a=b", 3}}};
    authz_request full = {
        .source_principal = STR("spiffe://example.org/ns/shop/sa/checkout"),
        .source_ip = STR("10.0.0.7"),
        .source_port = 41234,
        .destination_service = STR("payments"),
        .destination_principal = STR("spiffe://example.org/ns/shop/sa/payments"),
        .destination_port = 8443,
        .method = STR("GET"),
        .host = STR("Payments.Example.COM"),
        .path = STR("/v1/items/7"),
        .query = STR("a=1"),
        .headers = hdrs,
        .n_headers = 3,
        .protocol = STR("HTTP/1.1"),
        .mtls = 1,
        .sni = STR("payments"),
        .time_unix = 1767261600,
    };
    authz_request empty = {.source_port = -1, .destination_port = -1, .mtls = -1};
    authz_request odd = full;
    odd.source_principal = STR("not a spiffe id");
    odd.source_ip = STR("::ffff:10.0.0.7");
    odd.path = STR("");
    odd.method = SLICE("G\0ET", 4);
    decide_one(e, &full);
    decide_one(e, &empty);
    decide_one(e, &odd);

    for (size_t i = 0; i < policy_set_count(set) && i < 4; i++) {
        const policy_authz *p = policy_set_get(set, i);
        authz_request own = full;
        if (p->selector_present && p->n_services > 0)
            own.destination_service = SLICE(p->services[0], strlen(p->services[0]));
        if (p->n_rules > 0) {
            const policy_rule *r = &p->rules[0];
            if (r->n_from > 0) {
                own.source_principal = first_value(&r->from[0].principals, own.source_principal);
            }
            if (r->n_to > 0) {
                own.method = first_value(&r->to[0].methods, own.method);
                own.host = first_value(&r->to[0].hosts, own.host);
                own.path = first_value(&r->to[0].paths, own.path);
            }
        }
        decide_one(e, &own);
    }
    /* each Route's first host, with what its first entries match */
    for (size_t i = 0; i < policy_set_route_count(set) && i < 4; i++) {
        const policy_route *r = policy_set_route(set, i);
        authz_request own = full;
        if (r->n_hosts > 0)
            own.host = SLICE(r->hosts[0], strlen(r->hosts[0]));
        for (size_t k = 0; k < r->n_http && k < 3; k++) {
            const policy_http_route *h = &r->http[k];
            authz_header hd[1];
            if (h->n_match > 0) {
                const policy_route_match *m = &h->match[0];
                own.method = first_value(&m->methods, full.method);
                own.path = first_value(&m->paths, full.path);
                if (m->n_headers > 0 && m->headers[0].value.kind != POLICY_MATCH_REGEX) {
                    hd[0] = (authz_header){SLICE(m->headers[0].name, strlen(m->headers[0].name)),
                                           SLICE(m->headers[0].value.value, m->headers[0].value.len)};
                    own.headers = hd;
                    own.n_headers = 1;
                }
            }
            decide_one(e, &own);
            own.headers = full.headers;
            own.n_headers = full.n_headers;
        }
    }
    authz_engine_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    policy_set *set = NULL;
    if (policy_set_new(&set) != 0)
        return 0;
    ward_diag diag;
    ward_diag_init(&diag);

    int rc = policy_set_load_buffer(set, "fuzz.yaml", (const char *)data, size, &diag);
    if (rc != 0 && rc != WARD_ENOMEM && diag.n == 0)
        die("load failed without a diagnostic", ward_strerror(rc), NULL);
    if (rc == 0 && diag.n != 0)
        die("load succeeded with diagnostics", diag.msgs[0], NULL);

    /* Every document that was accepted (all of them when rc == 0; the valid
     * ones otherwise) must compile to Lua that loads. */
    if (rc == 0 || policy_set_count(set) > 0 || policy_set_route_count(set) > 0) {
        policy_compile_opts deny = {.default_allow = false, .only_service = NULL};
        compile_and_load(set, &deny);

        /* The per-service variant, for the first service any policy selects. */
        const char *svc = NULL;
        for (size_t i = 0; i < policy_set_count(set) && svc == NULL; i++) {
            const policy_authz *p = policy_set_get(set, i);
            if (p->selector_present && p->n_services > 0)
                svc = p->services[0];
        }
        policy_compile_opts one = {.default_allow = true, .only_service = svc ? svc : "x"};
        compile_and_load(set, &one);
        engine_decide(set);
    }

    ward_diag_dispose(&diag);
    policy_set_free(set);
    return 0;
}
