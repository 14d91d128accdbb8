/* wlua.c - the sandboxed Lua state: capped allocator, instruction budget, protected load and call */
#include "lua/wlua_int.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The error value raised for an exhausted budget (its address is the value). */
static const char budget_sentinel = 0;

/* ---- memory ------------------------------------------------------------------ */

/* True when a growth of `grow` bytes must be refused. Outside calls (host code
 * pushing arguments, lua_close) nothing is refused: an unprotected failure
 * would abort the process, and the host bounds what it pushes. */
static bool refuse_growth(wlua_state *st, size_t grow)
{
    if (st->depth == 0)
        return false;
    if (st->exhausted != WLUA_BUDGET_OK)
        return true;
    if (st->used > st->cap || grow > st->cap - st->used)
        return true;
    /* bulk C-level work (concatenations, big strings) is charged to the
     * instruction budget, so a loop of cheap instructions that each copy
     * megabytes still ends */
    if (!wlua_metering(st))
        return false;
    st->instr += grow / WLUA_BYTES_PER_INSTR;
    if (st->instr >= st->max_instr) {
        st->exhausted = WLUA_BUDGET_INSTRUCTIONS;
        return true;
    }
    return false;
}

static void *wlua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    wlua_state *st = ud;
    size_t old = ptr != NULL ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        st->used -= old;
        return NULL;
    }
    if (nsize > old && refuse_growth(st, nsize - old))
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p == NULL) {
        if (nsize > old)
            return NULL;
        p = ptr; /* a failed shrink keeps the larger block; Lua now calls it nsize */
    }
    st->used = st->used - old + nsize;
    return p;
}

/* PCRE2 blocks carry their size in a header so frees can be accounted. */
typedef union pcre_hdr {
    max_align_t align;
    size_t size;
} pcre_hdr;

static void *pcre_malloc(size_t size, void *ud)
{
    wlua_state *st = ud;
    if (size > SIZE_MAX - sizeof(pcre_hdr) || refuse_growth(st, size + sizeof(pcre_hdr))) {
        st->pcre_refused = true;
        return NULL;
    }
    pcre_hdr *h = malloc(sizeof(pcre_hdr) + size);
    if (h == NULL) {
        st->pcre_refused = true;
        return NULL;
    }
    h->size = size + sizeof(pcre_hdr);
    st->used += h->size;
    return h + 1;
}

static void pcre_free(void *p, void *ud)
{
    wlua_state *st = ud;
    if (p == NULL)
        return;
    pcre_hdr *h = (pcre_hdr *)p - 1;
    st->used -= h->size;
    free(h);
}

/* ---- instruction budget -------------------------------------------------------- */

static void budget_hook(lua_State *L, lua_Debug *ar);

int wlua_budget_raise(lua_State *L, int kind)
{
    wlua_state *st = wlua_state_of(L);
    if (st->exhausted == WLUA_BUDGET_OK)
        st->exhausted = kind;
    /* from now on the hook fires at every instruction: each catch by sandboxed
     * code is followed by a new raise at its next instruction */
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    if (lua_checkstack(L, 1))
        lua_pushlightuserdata(L, (void *)&budget_sentinel);
    lua_error(L);
    abort(); /* not reached: lua_error does not return */
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    wlua_state *st = wlua_state_of(L);
    if (st->depth == 0) {
        /* Lua code running outside wlua_call/wlua_load has no budget at all */
        lua_pushlightuserdata(L, (void *)&budget_sentinel);
        lua_error(L);
    }
    if (st->exhausted != WLUA_BUDGET_OK)
        wlua_budget_raise(L, st->exhausted);
    st->instr += (uint64_t)st->step;
    if (st->instr >= st->max_instr)
        wlua_budget_raise(L, WLUA_BUDGET_INSTRUCTIONS);
}

void wlua_call_metered(lua_State *L, int nargs, int nresults)
{
    wlua_state *st = wlua_state_of(L);
    bool arm = st->meter_untrusted_only && lua_gethook(L) == NULL;
    if (arm)
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, st->step);
    st->untrusted++;
    lua_call(L, nargs, nresults); /* on error the outer run disarms and resets */
    st->untrusted--;
    if (arm && st->exhausted == WLUA_BUDGET_OK)
        lua_sethook(L, NULL, 0, 0);
}

void wlua_charge(lua_State *L, uint64_t cost)
{
    wlua_state *st = wlua_state_of(L);
    if (st->depth == 0 || !wlua_metering(st))
        return;
    if (st->exhausted != WLUA_BUDGET_OK)
        wlua_budget_raise(L, st->exhausted);
    if (cost >= st->max_instr - st->instr) {
        st->instr = st->max_instr;
        wlua_budget_raise(L, WLUA_BUDGET_INSTRUCTIONS);
    }
    st->instr += cost;
}

/* ---- protected runs -------------------------------------------------------------- */

/* Turns the error value at index 1 into a string (runs protected, under the
 * running call's budget: __tostring is sandboxed code). */
static int error_to_string(lua_State *L)
{
    int t = lua_type(L, 1);
    if (t == LUA_TSTRING)
        return 1;
    if (t == LUA_TNUMBER) {
        lua_tostring(L, 1);
        lua_settop(L, 1);
        return 1;
    }
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
        return 1;
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    return 1;
}

/* Copies a Lua message into err: NUL bytes become '?', overlong ones end in "...". */
static void set_lua_err(ward_err *err, const char *msg, size_t len)
{
    if (err == NULL)
        return;
    size_t max = sizeof(err->msg) - 1;
    size_t n = len;
    if (n > max)
        n = max - 3;
    for (size_t i = 0; i < n; i++)
        err->msg[i] = msg[i] != '\0' ? msg[i] : '?';
    if (len > max) {
        memcpy(err->msg + n, "...", 3);
        n += 3;
    }
    err->msg[n] = '\0';
}

static int budget_error(const wlua_state *st, int kind, ward_err *err)
{
    if (kind == WLUA_BUDGET_INSTRUCTIONS)
        ward_err_set(err, "instruction budget exceeded (%llu)", (unsigned long long)st->max_instr);
    else
        ward_err_set(err, "memory limit exceeded (%zu bytes)", st->cap);
    return WARD_EBUDGET;
}

/* Calls the function below nargs arguments under the budget. No message
 * handler on the hot path: budget errors are recognised by st->exhausted and
 * other error values are turned into strings afterwards. */
static int run(wlua_state *st, int nargs, int nresults, ward_err *err)
{
    lua_State *L = st->L;
    int top = lua_gettop(L);
    if (nargs < 0 || top < nargs + 1 || (nresults < 0 && nresults != LUA_MULTRET)) {
        ward_err_set(err, "wlua_call: %d arguments requested but the stack holds %d values", nargs,
                     top);
        return WARD_EINVAL;
    }
    int base = top - nargs - 1; /* what stays on the stack */
    bool outer = st->depth == 0;
    if (outer) {
        st->instr = 0;
        st->exhausted = WLUA_BUDGET_OK;
        if (st->meter_untrusted_only)
            lua_sethook(L, NULL, 0, 0);
        else
            lua_sethook(L, budget_hook, LUA_MASKCOUNT, st->step); /* also resets the count */
    }
    st->depth++;
    int status = lua_pcall(L, nargs, nresults, 0);
    if (status != LUA_OK && status != LUA_ERRMEM && st->exhausted == WLUA_BUDGET_OK &&
        lua_type(L, -1) != LUA_TSTRING && lua_checkstack(L, 1)) {
        lua_pushcfunction(L, error_to_string);
        lua_insert(L, -2);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK && lua_type(L, -1) != LUA_TSTRING)
            status = LUA_ERRERR;
    }
    st->depth--;
    int kind = st->exhausted;
    if (outer && st->meter_untrusted_only) {
        st->exhausted = WLUA_BUDGET_OK;
        st->untrusted = 0;
        lua_sethook(L, NULL, 0, 0); /* a condition may have left it armed by raising */
    } else if (outer && kind != WLUA_BUDGET_OK) {
        st->exhausted = WLUA_BUDGET_OK;
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, st->step); /* back from every-instruction */
    }
    if (status == LUA_OK && kind == WLUA_BUDGET_OK)
        return 0;
    int rc;
    if (kind != WLUA_BUDGET_OK) {
        rc = budget_error(st, kind, err);
    } else if (status == LUA_ERRMEM) {
        rc = budget_error(st, WLUA_BUDGET_MEMORY, err);
    } else {
        size_t len = 0;
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (msg == NULL) {
            msg = "(error object is not a string)";
            len = strlen(msg);
        }
        set_lua_err(err, msg, len);
        rc = WARD_ELUA;
    }
    lua_settop(L, base);
    return rc;
}

int wlua_call(wlua_state *st, int nargs, int nresults, ward_err *err)
{
    return run(st, nargs, nresults, err);
}

typedef struct load_args {
    const char *name;
    const char *src;
    size_t len;
} load_args;

static int load_chunk(lua_State *L)
{
    const load_args *a = lua_touserdata(L, 1);
    wlua_sandbox_load(L, a->name, a->src, a->len);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1))
        return luaL_error(L, "%s: the chunk returned nil (it must return a value)", a->name);
    return 1;
}

int wlua_load(wlua_state *st, const char *chunkname, const char *src, size_t len, ward_err *err)
{
    lua_State *L = st->L;
    load_args a = {chunkname != NULL ? chunkname : "chunk", src != NULL ? src : "", len};
    if (src == NULL)
        a.len = 0;
    if (!lua_checkstack(L, 3))
        return budget_error(st, WLUA_BUDGET_MEMORY, err);
    lua_pushcfunction(L, load_chunk);
    lua_pushlightuserdata(L, &a);
    return run(st, 1, 1, err);
}

/* ---- lifecycle ----------------------------------------------------------------------- */

static int panic(lua_State *L)
{
    const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(not a string)";
    fprintf(stderr, "ward: unprotected Lua error: %s\n", msg);
    fflush(stderr);
    abort();
}

static int open_sandbox(lua_State *L)
{
    return wlua_sandbox_open(L);
}

int wlua_new(const wlua_limits *limits, wlua_state **out, ward_err *err)
{
    int rc = 0;
    *out = NULL;
    wlua_state *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        ward_err_set(err, "out of memory");
        return WARD_ENOMEM;
    }
    st->max_instr = limits != NULL && limits->max_instructions != 0 ? limits->max_instructions
                                                                     : WLUA_DEFAULT_INSTRUCTIONS;
    st->cap = limits != NULL && limits->max_memory != 0 ? limits->max_memory : WLUA_DEFAULT_MEMORY;
    st->step = st->max_instr < WLUA_HOOK_STEP ? (int)st->max_instr : WLUA_HOOK_STEP;
    st->meter_untrusted_only = limits != NULL && limits->meter_untrusted_only;

    st->pgen = pcre2_general_context_create(pcre_malloc, pcre_free, st);
    st->pcomp = st->pgen != NULL ? pcre2_compile_context_create(st->pgen) : NULL;
    st->pmatch = st->pgen != NULL ? pcre2_match_context_create(st->pgen) : NULL;
    st->L = lua_newstate(wlua_alloc, st);
    if (st->pcomp == NULL || st->pmatch == NULL || st->L == NULL) {
        ward_err_set(err, "out of memory creating the Lua state");
        rc = WARD_ENOMEM;
        goto fail;
    }
    pcre2_set_match_limit(st->pmatch, WLUA_RE_MATCH_LIMIT);
    pcre2_set_depth_limit(st->pmatch, WLUA_RE_DEPTH_LIMIT);
    pcre2_set_heap_limit(st->pmatch, WLUA_RE_HEAP_LIMIT_KIB);

    *(wlua_state **)lua_getextraspace(st->L) = st;
    lua_atpanic(st->L, panic);
    lua_pushcfunction(st->L, open_sandbox);
    ward_err why;
    rc = run(st, 0, 0, &why);
    if (rc < 0) {
        ward_err_set(err, "cannot create the sandbox: %s", why.msg);
        goto fail;
    }
    *out = st;
    return 0;
fail:
    wlua_free(st);
    return rc;
}

void wlua_free(wlua_state *st)
{
    if (st == NULL)
        return;
    if (st->L != NULL)
        lua_close(st->L); /* runs __gc of regex userdata: PCRE2 frees go through st */
    if (st->pjit != NULL)
        pcre2_jit_stack_free(st->pjit);
    pcre2_match_context_free(st->pmatch);
    pcre2_compile_context_free(st->pcomp);
    pcre2_general_context_free(st->pgen);
    free(st);
}

lua_State *wlua_L(wlua_state *st)
{
    return st->L;
}

size_t wlua_memory(const wlua_state *st)
{
    return st->used;
}
