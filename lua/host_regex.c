/* host_regex.c - ward.regex / ward.regex_match: PCRE2, anchored at both ends, JIT, match limits */
#include "lua/wlua_int.h"

#include <lauxlib.h>
#include <string.h>

typedef struct wregex {
    pcre2_code *code;
    pcre2_match_data *md; /* one ovector pair: a match is all we need */
} wregex;

static int regex_gc(lua_State *L)
{
    wregex *r = lua_touserdata(L, 1);
    pcre2_match_data_free(r->md);
    pcre2_code_free(r->code);
    r->md = NULL;
    r->code = NULL;
    return 0;
}

/* A PCRE2 failure caused by our allocator's cap is a memory budget error. */
static void check_pcre_memory(lua_State *L, wlua_state *st)
{
    if (st->pcre_refused) {
        st->pcre_refused = false;
        wlua_budget_raise(L, WLUA_BUDGET_MEMORY);
    }
}

static int h_regex(lua_State *L)
{
    wlua_state *st = wlua_state_of(L);
    size_t len;
    const char *pat = luaL_checklstring(L, 1, &len);
    wregex *r = lua_newuserdatauv(L, sizeof(*r), 0);
    r->code = NULL;
    r->md = NULL;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2); /* from here __gc frees whatever gets built */

    int ec = 0;
    PCRE2_SIZE off = 0;
    st->pcre_refused = false;
    r->code = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_ANCHORED | PCRE2_ENDANCHORED, &ec, &off,
                            st->pcomp);
    if (r->code == NULL) {
        check_pcre_memory(L, st);
        PCRE2_UCHAR msg[256];
        if (pcre2_get_error_message(ec, msg, sizeof(msg)) < 0)
            strcpy((char *)msg, "unknown error");
        return luaL_error(L, "ward.regex: %s at offset %d", (const char *)msg, (int)off);
    }
    /* JIT where the platform has it; the interpreter (same limits) otherwise */
    (void)pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE);
    st->pcre_refused = false;
    r->md = pcre2_match_data_create(1, st->pgen);
    if (r->md == NULL) {
        check_pcre_memory(L, st);
        return luaL_error(L, "ward.regex: out of memory");
    }
    if (st->pjit == NULL) {
        st->pjit = pcre2_jit_stack_create(32 * 1024, WLUA_RE_JIT_STACK_MAX, st->pgen);
        if (st->pjit != NULL)
            pcre2_jit_stack_assign(st->pmatch, NULL, st->pjit);
        st->pcre_refused = false; /* without a JIT stack PCRE2 uses its default one */
    }
    return 1;
}

static int h_regex_match(lua_State *L)
{
    wlua_state *st = wlua_state_of(L);
    const wregex *r = wlua_check_host(L, 1, "ward.regex");
    size_t len;
    const char *s = wlua_opt_subject(L, 2, &len);
    if (s == NULL || r->code == NULL) {
        lua_pushboolean(L, 0);
        return 1;
    }
    st->pcre_refused = false;
    int rc = pcre2_match(r->code, (PCRE2_SPTR)s, len, 0, 0, r->md, st->pmatch);
    if (rc >= 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (rc == PCRE2_ERROR_NOMATCH) {
        lua_pushboolean(L, 0);
        return 1;
    }
    check_pcre_memory(L, st);
    PCRE2_UCHAR msg[256];
    if (pcre2_get_error_message(rc, msg, sizeof(msg)) < 0)
        strcpy((char *)msg, "unknown error");
    return luaL_error(L, "ward.regex_match: %s", (const char *)msg);
}

static const luaL_Reg regex_fns[] = {
    {"regex", h_regex},
    {"regex_match", h_regex_match},
    {NULL, NULL},
};

void wlua_host_regex(lua_State *L)
{
    wlua_new_host_mt(L, "ward.regex", regex_gc);
    luaL_setfuncs(L, regex_fns, 1);
}
