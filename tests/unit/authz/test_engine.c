/* test_engine.c - the engine fails closed: hostile conditions, budgets, bad input, swaps, threads */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "authz/authz.h"

#define HEAD(name)                                                                                 \
    "apiVersion: ward/v1\nkind: AuthorizationPolicy\nmetadata: {name: " name                       \
    ", namespace: shop}\nspec:\n"

/* Allows everything except what a DENY with a lua condition catches. */
#define DENY_WHEN(lua)                                                                             \
    HEAD("all") "  rules: [{}]\n---\n" HEAD("guard") "  action: DENY\n  rules: [{when: [{lua: \"" lua "\"}]}]\n"

static const char REQ[] = "{\"source\":{\"principal\":\"spiffe://example.org/ns/shop/sa/checkout\"},"
                          "\"destination\":{\"service\":\"payments\"},"
                          "\"request\":{\"method\":\"GET\",\"path\":\"/v1/items\"}}";

static authz_bundle *bundle_of(const char *yaml, bool default_allow)
{
    policy_set *set;
    ward_diag diag;
    ward_diag_init(&diag);
    assert_int_equal(policy_set_new(&set), 0);
    int rc = policy_set_load_buffer(set, "t.yaml", yaml, strlen(yaml), &diag);
    for (size_t i = 0; i < diag.n; i++)
        print_error("%s\n", diag.msgs[i]);
    assert_int_equal(rc, 0);
    authz_options opts = {.default_allow = default_allow};
    authz_bundle *b;
    ward_err err;
    assert_int_equal(authz_bundle_new(set, &opts, &b, &err), 0);
    policy_set_free(set);
    ward_diag_dispose(&diag);
    return b;
}

static authz_engine *engine_of(const char *yaml)
{
    authz_bundle *b = bundle_of(yaml, false);
    authz_engine *e;
    ward_err err;
    int rc = authz_engine_new(b, &e, &err);
    if (rc != 0)
        fail_msg("engine: %s", err.msg);
    authz_bundle_unref(b);
    return e;
}

static void decide_json(authz_engine *e, const char *json, bool explain, authz_decision *d)
{
    authz_request req;
    authz_request_storage *st;
    ward_err err;
    if (authz_request_from_json(json, strlen(json), &req, &st, &err) != 0)
        fail_msg("input: %s", err.msg);
    assert_int_equal(authz_decide(e, &req, explain, d), 0);
    authz_request_storage_free(st);
}

static void expect_deny_with(const char *yaml, const char *reason_part)
{
    authz_engine *e = engine_of(yaml);
    authz_decision d;
    decide_json(e, REQ, false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    if (reason_part != NULL && (d.reason == NULL || strstr(d.reason, reason_part) == NULL))
        fail_msg("reason \"%s\" lacks \"%s\"", d.reason ? d.reason : "(null)", reason_part);
    authz_decision_dispose(&d);
    authz_engine_free(e);
}

static void test_condition_infinite_loop_denies(void **state)
{
    (void)state;
    expect_deny_with(DENY_WHEN("(function() while true do end end)()"), "instruction budget");
}

static void test_condition_swallowing_budget_with_pcall_denies(void **state)
{
    (void)state;
    expect_deny_with(DENY_WHEN("(function() while true do pcall(function() while true do end end) end end)()"),
                     "budget");
}

static void test_condition_huge_string_denies(void **state)
{
    (void)state;
    expect_deny_with(DENY_WHEN("#string.rep('x', 1 << 30) > 0"), "memory limit");
}

static void test_condition_deep_recursion_denies(void **state)
{
    (void)state;
    expect_deny_with(DENY_WHEN("(function(f) return f(f) end)(function(f) return 1 + f(f) end) > 0"), NULL);
}

static void test_condition_non_boolean_denies(void **state)
{
    (void)state;
    /* a DENY that cannot tell must not let the request through */
    expect_deny_with(DENY_WHEN("'yes'"), "not a boolean");
}

static void test_condition_error_denies(void **state)
{
    (void)state;
    expect_deny_with(DENY_WHEN("req.nothing.here == 1"), "policy engine error");
}

static void test_condition_has_no_os_io_load(void **state)
{
    (void)state;
    expect_deny_with(DENY_WHEN("os.exit(0)"), "policy engine error");
    expect_deny_with(DENY_WHEN("io.open('/etc/passwd') ~= nil"), "policy engine error");
    expect_deny_with(DENY_WHEN("load('return true')()"), "policy engine error");
    expect_deny_with(DENY_WHEN("require('os') ~= nil"), "policy engine error");
}

static void test_condition_cannot_reach_other_rules(void **state)
{
    (void)state;
    /* an expression that tries to rewrite the bundle's rule table and the
     * ward host table: it runs in its own chunk and environment */
    static const char yaml[] =
        HEAD("probe") "  action: AUDIT\n  rules: [{when: [{lua: \"(function() R = nil; P = nil; K = nil; ward.prefix = nil; string.sub = nil; return true end)()\"}]}]\n"
        "---\n" HEAD("deny-admin") "  action: DENY\n  rules: [{to: [{paths: [\"/admin/*\"]}]}]\n"
        "---\n" HEAD("all") "  rules: [{}]\n";
    authz_engine *e = engine_of(yaml);
    authz_decision d;
    static const char admin[] = "{\"destination\":{\"service\":\"payments\"},\"request\":{\"path\":\"/admin/x\"}}";
    for (int i = 0; i < 3; i++) {
        decide_json(e, admin, false, &d);
        assert_int_equal(d.decision, AUTHZ_DENY);
        assert_string_equal(d.policy, "shop/deny-admin");
        authz_decision_dispose(&d);
    }
    authz_engine_free(e);
}

static void test_condition_cannot_close_its_chunk(void **state)
{
    (void)state;
    /* text that would end the expression and run code if it were pasted into
     * the bundle: refused when the policy is loaded */
    static const char yaml[] = HEAD("x") "  rules: [{when: [{lua: \"1) or (function() R = nil end)() or (1\"}]}]\n";
    policy_set *set;
    ward_diag diag;
    ward_diag_init(&diag);
    assert_int_equal(policy_set_new(&set), 0);
    assert_int_equal(policy_set_load_buffer(set, "t.yaml", yaml, strlen(yaml), &diag), WARD_EPOLICY);
    assert_int_equal(diag.n, 1);
    assert_non_null(strstr(diag.msgs[0], "invalid Lua condition"));
    policy_set_free(set);
    ward_diag_dispose(&diag);
}

static void test_engine_serves_after_budget_failure(void **state)
{
    (void)state;
    static const char yaml[] = HEAD("all") "  rules: [{}]\n---\n" HEAD("guard")
        "  action: DENY\n  rules: [{to: [{paths: [\"/loop\"]}], when: [{lua: \"(function() while true do end end)()\"}]}]\n";
    authz_engine *e = engine_of(yaml);
    authz_decision d;
    decide_json(e, "{\"destination\":{\"service\":\"p\"},\"request\":{\"path\":\"/loop\"}}", false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    assert_non_null(strstr(d.reason, "budget"));
    authz_decision_dispose(&d);
    decide_json(e, "{\"destination\":{\"service\":\"p\"},\"request\":{\"path\":\"/ok\"}}", false, &d);
    assert_int_equal(d.decision, AUTHZ_ALLOW);
    assert_string_equal(d.policy, "shop/all");
    authz_decision_dispose(&d);
    authz_engine_free(e);
}

static void test_lua_condition_metered_but_rules_are_not(void **state)
{
    (void)state;
    /* 300 rules of work per decision stay well inside a tiny budget because
     * compiled rules are not metered; the condition still is */
    char *yaml = malloc(200000);
    assert_non_null(yaml);
    size_t n = (size_t)sprintf(yaml, HEAD("many") "  rules:\n");
    for (int i = 0; i < 300; i++)
        n += (size_t)sprintf(yaml + n, "    - to: [{methods: [M%d], paths: [\"*x%d\"]}]\n", i, i);
    authz_bundle *b;
    policy_set *set;
    ward_diag diag;
    ward_diag_init(&diag);
    assert_int_equal(policy_set_new(&set), 0);
    assert_int_equal(policy_set_load_buffer(set, "m.yaml", yaml, n, &diag), 0);
    authz_options opts = {.limits = {.max_instructions = 1000}};
    ward_err err;
    assert_int_equal(authz_bundle_new(set, &opts, &b, &err), 0);
    authz_engine *e;
    assert_int_equal(authz_engine_new(b, &e, &err), 0);
    authz_decision d;
    decide_json(e, REQ, false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    assert_string_equal(d.reason, "no ALLOW rule matched");
    authz_decision_dispose(&d);
    authz_engine_free(e);
    authz_bundle_unref(b);
    policy_set_free(set);
    ward_diag_dispose(&diag);
    free(yaml);
}

static void test_deny_response_of_deciding_policy(void **state)
{
    (void)state;
    static const char yaml[] = HEAD("all") "  rules: [{}]\n---\n" HEAD("admin")
        "  action: DENY\n  rules: [{to: [{paths: [\"/admin/*\"]}]}]\n"
        "  denyResponse: {status: 451, body: \"no admin here\"}\n";
    authz_engine *e = engine_of(yaml);
    authz_decision d;
    decide_json(e, "{\"request\":{\"path\":\"/admin/a\"}}", false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    assert_int_equal(d.deny_status, 451);
    assert_string_equal(d.deny_body, "no admin here");
    authz_decision_dispose(&d);
    authz_engine_free(e);
}

static void test_default_deny_is_403_without_body(void **state)
{
    (void)state;
    authz_engine *e = engine_of("");
    authz_decision d;
    decide_json(e, REQ, false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    assert_int_equal(d.deny_status, 403);
    assert_null(d.deny_body);
    assert_null(d.policy);
    assert_int_equal(d.rule, -1);
    assert_non_null(strstr(d.reason, "default deny"));
    authz_decision_dispose(&d);
    authz_engine_free(e);
}

static void test_explain_names_failed_fields(void **state)
{
    (void)state;
    static const char yaml[] = HEAD("read")
        "  rules:\n    - from: [{namespaces: [ops]}]\n    - to: [{methods: [GET]}]\n";
    authz_engine *e = engine_of(yaml);
    authz_decision d;
    decide_json(e, REQ, true, &d);
    assert_int_equal(d.decision, AUTHZ_ALLOW);
    assert_non_null(d.explain_json);
    assert_non_null(strstr(d.explain_json, "\"failed\":[\"from[0].namespaces\"]"));
    assert_non_null(strstr(d.explain_json, "{\"matched\":true,\"rule\":1}"));
    ward_buf out;
    ward_buf_init(&out);
    assert_int_equal(authz_decision_to_json(&d, &out), 0);
    assert_non_null(strstr(out.ptr, "\"decision\":\"allow\",\"policy\":\"shop/read\",\"rule\":1"));
    assert_non_null(strstr(out.ptr, "\"explain\":["));
    ward_buf_dispose(&out);
    authz_decision_dispose(&d);
    authz_engine_free(e);
}

/* A DENY rule reached only through the 41st of 41 prefix keys that all
 * match the path still denies: no candidate list is dropped. */
static void test_every_matching_prefix_is_considered(void **state)
{
    (void)state;
    ward_buf y;
    ward_buf_init(&y);
    assert_int_equal(ward_buf_puts(&y, HEAD("all") "  rules: [{}]\n---\n" HEAD("deep")
                                           "  action: DENY\n  rules:\n"), 0);
    char path[64] = "/";
    for (int k = 1; k <= 41; k++) {
        strcat(path, "a");
        assert_int_equal(ward_buf_printf(&y, "    - to: [{methods: [%s], paths: [\"%s*\"]}]\n",
                                         k == 41 ? "GET" : "POST", path), 0);
    }
    authz_engine *e = engine_of(y.ptr);
    char req[160];
    snprintf(req, sizeof(req), "{\"request\":{\"method\":\"GET\",\"path\":\"%sa/x\"}}", path);
    authz_decision d;
    decide_json(e, req, false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    assert_string_equal(d.policy, "shop/deep");
    assert_int_equal(d.rule, 40);
    authz_decision_dispose(&d);
    snprintf(req, sizeof(req), "{\"request\":{\"method\":\"POST\",\"path\":\"/aaab\"}}");
    decide_json(e, req, false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    assert_int_equal(d.rule, 0); /* the lowest of the three that match */
    authz_decision_dispose(&d);
    authz_engine_free(e);
    ward_buf_dispose(&y);
}

/* A large set (its rules and indexes are laid out in one block) decides
 * like a small one: each principal reaches its own rule, others none. */
static void test_large_set_decides_each_rule(void **state)
{
    (void)state;
    enum { N = 6000 };
    ward_buf y;
    ward_buf_init(&y);
    assert_int_equal(ward_buf_puts(&y, HEAD("many") "  selector: {services: [payments]}\n  rules:\n"), 0);
    for (int k = 0; k < N; k++)
        assert_int_equal(ward_buf_printf(&y,
            "    - from: [{principals: [\"spiffe://example.org/ns/n%d/sa/s%d\"]}]\n"
            "      to: [{methods: [GET], paths: [\"/v1/r%d/{*}\", \"/v1/x%d\"]}]\n", k % 7, k, k, k), 0);
    authz_engine *e = engine_of(y.ptr);
    static const int probes[] = {0, 1, 2999, N - 1};
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        int k = probes[i];
        char req[300];
        authz_decision d;
        snprintf(req, sizeof(req), "{\"source\":{\"principal\":\"spiffe://example.org/ns/n%d/sa/s%d\"},"
                 "\"destination\":{\"service\":\"payments\"},"
                 "\"request\":{\"method\":\"GET\",\"path\":\"/v1/r%d/42\"}}", k % 7, k, k);
        decide_json(e, req, false, &d);
        assert_int_equal(d.decision, AUTHZ_ALLOW);
        assert_int_equal(d.rule, k);
        authz_decision_dispose(&d);
        snprintf(req, sizeof(req), "{\"source\":{\"principal\":\"spiffe://example.org/ns/n%d/sa/s%d\"},"
                 "\"destination\":{\"service\":\"payments\"},"
                 "\"request\":{\"method\":\"GET\",\"path\":\"/v1/r%d/42\"}}", k % 7, k, k + 1);
        decide_json(e, req, false, &d); /* its principal, another rule's path */
        assert_int_equal(d.decision, AUTHZ_DENY);
        authz_decision_dispose(&d);
    }
    authz_decision d;
    decide_json(e, "{\"source\":{\"principal\":\"spiffe://example.org/ns/n1/sa/s99999\"},"
                   "\"destination\":{\"service\":\"payments\"},"
                   "\"request\":{\"method\":\"GET\",\"path\":\"/v1/x5\"}}", false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    assert_string_equal(d.reason, "no ALLOW rule matched");
    authz_decision_dispose(&d);
    authz_engine_free(e);
    ward_buf_dispose(&y);
}

static void test_swap_keeps_old_set_on_failure(void **state)
{
    (void)state;
    authz_engine *e = engine_of(HEAD("all") "  rules: [{}]\n");
    /* a bundle that cannot load: its engine would get 4 KiB of Lua memory */
    policy_set *set;
    ward_diag diag;
    ward_diag_init(&diag);
    static const char none[] = HEAD("none") "  rules: []\n";
    assert_int_equal(policy_set_new(&set), 0);
    assert_int_equal(policy_set_load_buffer(set, "n.yaml", none, strlen(none), &diag), 0);
    authz_options tiny = {.limits = {.max_memory = 4096}};
    authz_bundle *bad;
    ward_err err;
    assert_int_equal(authz_bundle_new(set, &tiny, &bad, &err), 0);
    assert_true(authz_engine_swap(e, bad, &err) < 0);
    authz_decision d;
    decide_json(e, REQ, false, &d);
    assert_int_equal(d.decision, AUTHZ_ALLOW);
    assert_string_equal(d.policy, "shop/all");
    authz_decision_dispose(&d);
    authz_bundle *good = bundle_of(none, false);
    assert_int_equal(authz_engine_swap(e, good, &err), 0);
    decide_json(e, REQ, false, &d);
    assert_int_equal(d.decision, AUTHZ_DENY);
    authz_decision_dispose(&d);
    authz_bundle_unref(bad);
    authz_bundle_unref(good);
    policy_set_free(set);
    ward_diag_dispose(&diag);
    authz_engine_free(e);
}

typedef struct thread_arg {
    authz_bundle *b;
    int allowed;
    int failed;
} thread_arg;

static void *decide_many(void *p)
{
    thread_arg *a = p;
    authz_engine *e;
    ward_err err;
    if (authz_engine_new(a->b, &e, &err) != 0) {
        a->failed = 1;
        return NULL;
    }
    authz_request req;
    authz_request_storage *st;
    if (authz_request_from_json(REQ, strlen(REQ), &req, &st, &err) != 0) {
        a->failed = 1;
        authz_engine_free(e);
        return NULL;
    }
    for (int i = 0; i < 2000; i++) {
        authz_decision d;
        authz_decide(e, &req, false, &d);
        a->allowed += d.decision == AUTHZ_ALLOW;
        authz_decision_dispose(&d);
    }
    authz_request_storage_free(st);
    authz_engine_free(e);
    return NULL;
}

static void test_one_bundle_many_threads(void **state)
{
    (void)state;
    authz_bundle *b = bundle_of(HEAD("all") "  rules: [{from: [{namespaces: [shop]}]}]\n", false);
    pthread_t t[4];
    thread_arg args[4] = {{0}};
    for (int i = 0; i < 4; i++) {
        args[i].b = b;
        assert_int_equal(pthread_create(&t[i], NULL, decide_many, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].failed, 0);
        assert_int_equal(args[i].allowed, 2000);
    }
    authz_bundle_unref(b);
}

static void test_request_json_rejects_unknown_and_wrong_types(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"sources\":{}}",
        "{\"source\":{\"principal\":7}}",
        "{\"source\":{\"namespace\":\"shop\"}}", /* derived, never supplied */
        "{\"destination\":{\"port\":70000}}",
        "{\"request\":{\"headers\":{\"x\":1}}}",
        "{\"time\":\"yesterday\"}",
        "[1,2]",
        "{\"source\":",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        authz_request req;
        authz_request_storage *st = NULL;
        ward_err err;
        if (authz_request_from_json(bad[i], strlen(bad[i]), &req, &st, &err) == 0)
            fail_msg("accepted: %s", bad[i]);
        assert_null(st);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_condition_infinite_loop_denies),
        cmocka_unit_test(test_condition_swallowing_budget_with_pcall_denies),
        cmocka_unit_test(test_condition_huge_string_denies),
        cmocka_unit_test(test_condition_deep_recursion_denies),
        cmocka_unit_test(test_condition_non_boolean_denies),
        cmocka_unit_test(test_condition_error_denies),
        cmocka_unit_test(test_condition_has_no_os_io_load),
        cmocka_unit_test(test_condition_cannot_reach_other_rules),
        cmocka_unit_test(test_condition_cannot_close_its_chunk),
        cmocka_unit_test(test_engine_serves_after_budget_failure),
        cmocka_unit_test(test_lua_condition_metered_but_rules_are_not),
        cmocka_unit_test(test_deny_response_of_deciding_policy),
        cmocka_unit_test(test_default_deny_is_403_without_body),
        cmocka_unit_test(test_explain_names_failed_fields),
        cmocka_unit_test(test_every_matching_prefix_is_considered),
        cmocka_unit_test(test_large_set_decides_each_rule),
        cmocka_unit_test(test_swap_keeps_old_set_on_failure),
        cmocka_unit_test(test_one_bundle_many_threads),
        cmocka_unit_test(test_request_json_rejects_unknown_and_wrong_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
