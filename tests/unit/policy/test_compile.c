/* test_compile.c - golden tests for the generated Lua, determinism, and escaping of hostile values */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lua/wlua.h"
#include "policy/policy.h"

#define GOLDEN_DIR "tests/unit/policy/golden/"
#define MARKER "-- ---- generated policies"

/* Compiles one golden input; returns the generated part (after the prelude). */
static char *compile_file(const char *path, ward_buf *all)
{
    policy_set *set;
    ward_diag diag;
    ward_diag_init(&diag);
    assert_int_equal(policy_set_new(&set), 0);
    const char *paths[] = {path};
    int rc = policy_set_load_paths(set, paths, 1, &diag);
    for (size_t i = 0; i < diag.n; i++)
        print_error("%s\n", diag.msgs[i]);
    assert_int_equal(rc, 0);
    ward_err err;
    ward_buf_init(all);
    policy_compile_opts opts = {.default_allow = false};
    assert_int_equal(policy_set_compile(set, &opts, all, &err), 0);
    policy_set_free(set);
    ward_diag_dispose(&diag);
    char *gen = strstr(all->ptr, MARKER);
    assert_non_null(gen);
    return gen;
}

/* Compares with GOLDEN_DIR/name.lua; WARD_UPDATE_GOLDEN=1 rewrites it instead. */
static void check_golden(const char *name)
{
    char in[256], gold[256];
    snprintf(in, sizeof(in), GOLDEN_DIR "%s.yaml", name);
    snprintf(gold, sizeof(gold), GOLDEN_DIR "%s.lua", name);
    ward_buf all;
    const char *gen = compile_file(in, &all);
    if (getenv("WARD_UPDATE_GOLDEN") != NULL) {
        FILE *f = fopen(gold, "wb");
        assert_non_null(f);
        fputs(gen, f);
        fclose(f);
    }
    char *want;
    size_t want_len;
    ward_err err;
    if (ward_file_read(gold, 0, &want, &want_len, &err) != 0)
        fail_msg("%s (run with WARD_UPDATE_GOLDEN=1 to create it)", err.msg);
    if (strlen(gen) != want_len || memcmp(gen, want, want_len) != 0) {
        FILE *f = fopen("build/golden-actual.lua", "wb");
        if (f != NULL) {
            fputs(gen, f);
            fclose(f);
        }
        fail_msg("%s differs from %s (actual output in build/golden-actual.lua)", in, gold);
    }
    free(want);
    ward_buf_dispose(&all);
}

static void test_golden_matchers(void **state)
{
    (void)state;
    check_golden("matchers");
}

static void test_golden_hostile(void **state)
{
    (void)state;
    check_golden("hostile");
}

static void test_golden_routes(void **state)
{
    (void)state;
    check_golden("routes");
}

/* Route values reach the source as escaped literals too, and the bundle loads. */
static void test_hostile_route_values_stay_literals(void **state)
{
    (void)state;
    ward_buf all;
    const char *gen = compile_file(GOLDEN_DIR "routes.yaml", &all);
    assert_non_null(strstr(gen, "exact = \"\\034]] os.exit() --[[\""));
    assert_non_null(strstr(gen, "value = \"\\034]] return true --[[ \\092\""));
    assert_null(strstr(gen, "\n return true"));
    assert_non_null(strstr(all.ptr, "local routes = {}\n"));
    assert_non_null(strstr(gen, "routes = routes}\n"));
    wlua_state *st;
    ward_err err;
    assert_int_equal(wlua_new(NULL, &st, &err), 0);
    if (wlua_load(st, "=routes", all.ptr, all.len, &err) != 0)
        fail_msg("the routes bundle does not load: %s", err.msg);
    wlua_free(st);
    ward_buf_dispose(&all);
}

static void test_output_is_deterministic(void **state)
{
    (void)state;
    ward_buf a, b;
    compile_file(GOLDEN_DIR "matchers.yaml", &a);
    compile_file(GOLDEN_DIR "matchers.yaml", &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.ptr, b.ptr, a.len);
    ward_buf_dispose(&a);
    ward_buf_dispose(&b);
}

/* Every byte of a hostile value reaches the source only inside an escaped
 * literal: no raw control byte, and the source loads as one valid chunk. */
static void test_hostile_values_stay_literals(void **state)
{
    (void)state;
    ward_buf all;
    const char *gen = compile_file(GOLDEN_DIR "hostile.yaml", &all);
    for (const char *p = gen; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\n')
            fail_msg("raw control byte 0x%02x in the generated source", (unsigned char)*p);
    assert_null(strstr(gen, "os.exit() --[["  "\n"));
    assert_non_null(strstr(gen, "\\010 return true --")); /* the newline, escaped */
    assert_non_null(strstr(gen, "\\000e"));               /* the NUL byte, escaped */
    /* the quote is escaped, so "]]" and "--[[" stay inside the double-quoted literal */
    assert_non_null(strstr(gen, "\"/a\\034]] os.exit() --[[\""));
    assert_int_equal(strlen(all.ptr), all.len);           /* no NUL in the source */
    wlua_state *st;
    ward_err err;
    assert_int_equal(wlua_new(NULL, &st, &err), 0);
    if (wlua_load(st, "=hostile", all.ptr, all.len, &err) != 0)
        fail_msg("hostile bundle does not load: %s", err.msg);
    wlua_free(st);
    ward_buf_dispose(&all);
}

static void test_comments_cannot_end_the_line(void **state)
{
    (void)state;
    /* a file name with a newline lands in comments: it must stay on its line */
    static const char doc[] = "apiVersion: ward/v1\nkind: AuthorizationPolicy\n"
                              "metadata: {name: p}\nspec:\n  rules: [{}]\n";
    policy_set *set;
    ward_diag diag;
    ward_diag_init(&diag);
    assert_int_equal(policy_set_new(&set), 0);
    assert_int_equal(policy_set_load_buffer(set, "evil\nos.exit()\n.yaml", doc, sizeof(doc) - 1, &diag), 0);
    ward_buf out;
    ward_buf_init(&out);
    ward_err err;
    assert_int_equal(policy_set_compile(set, NULL, &out, &err), 0);
    assert_null(strstr(out.ptr, "\nos.exit()"));
    assert_non_null(strstr(out.ptr, "evil?os.exit()?.yaml"));
    ward_buf_dispose(&out);
    policy_set_free(set);
    ward_diag_dispose(&diag);
}

static void test_only_service_compiles_what_selects_it(void **state)
{
    (void)state;
    policy_set *set;
    ward_diag diag;
    ward_diag_init(&diag);
    assert_int_equal(policy_set_new(&set), 0);
    const char *paths[] = {GOLDEN_DIR "matchers.yaml"};
    assert_int_equal(policy_set_load_paths(set, paths, 1, &diag), 0);
    ward_buf out;
    ward_buf_init(&out);
    ward_err err;
    policy_compile_opts opts = {.only_service = "frontend"};
    assert_int_equal(policy_set_compile(set, &opts, &out, &err), 0);
    assert_null(strstr(out.ptr, "shop/every-matcher"));   /* selects payments, inventory */
    assert_non_null(strstr(out.ptr, "default/no-admin")); /* selects every workload */
    ward_buf_dispose(&out);
    policy_set_free(set);
    ward_diag_dispose(&diag);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_matchers),
        cmocka_unit_test(test_golden_hostile),
        cmocka_unit_test(test_golden_routes),
        cmocka_unit_test(test_hostile_route_values_stay_literals),
        cmocka_unit_test(test_output_is_deterministic),
        cmocka_unit_test(test_hostile_values_stay_literals),
        cmocka_unit_test(test_comments_cannot_end_the_line),
        cmocka_unit_test(test_only_service_compiles_what_selects_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
