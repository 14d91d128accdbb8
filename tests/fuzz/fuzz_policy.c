/* fuzz_policy.c - libFuzzer target: YAML/JSON policy bytes -> load -> compile -> Lua that must load */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (rc == 0 || policy_set_count(set) > 0) {
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
    }

    ward_diag_dispose(&diag);
    policy_set_free(set);
    return 0;
}
