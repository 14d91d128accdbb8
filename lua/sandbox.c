/* sandbox.c - the environment chunks run in: whitelisted libraries, budget-safe pcall, text-only loading */
#include "lua/wlua_int.h"

#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

/* Registry key (its address) of the environment template. */
static const char env_key = 0;

/* Base functions copied as they are. pcall, xpcall and setmetatable are
 * replaced below; load, loadstring, dofile, loadfile, require,
 * collectgarbage, print, warn and _G are never there. */
static const char *const base_names[] = {
    "assert", "error",  "ipairs",   "next",     "pairs", "rawequal",     "rawget", "rawlen",
    "rawset", "select", "tonumber", "tostring", "type",  "getmetatable", NULL,
};

/* ---- guarded base functions ------------------------------------------------------ */

/* After a protected call inside the sandbox: a budget error (or any memory
 * error) is never returned to sandboxed code; it is raised again. */
static void rethrow_budget(lua_State *L, int status)
{
    wlua_state *st = wlua_state_of(L);
    if (status == LUA_ERRMEM && st->exhausted == WLUA_BUDGET_OK && st->depth > 0)
        st->exhausted = WLUA_BUDGET_MEMORY;
    if (st->exhausted != WLUA_BUDGET_OK) {
        lua_settop(L, 0);
        wlua_budget_raise(L, st->exhausted);
    }
}

static int sb_pcall(lua_State *L)
{
    luaL_checkany(L, 1);
    lua_pushboolean(L, 1);
    lua_insert(L, 1);
    int status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
    rethrow_budget(L, status);
    if (status != LUA_OK) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L);
}

static int sb_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, 1);
    lua_rotate(L, 3, 2); /* f, handler, true, f, args... */
    int status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
    rethrow_budget(L, status);
    if (status != LUA_OK) {
        lua_pushboolean(L, 0);
        lua_pushvalue(L, -2);
        return 2;
    }
    return lua_gettop(L) - 2;
}

/* setmetatable without finalizers: a __gc metamethod could run sandboxed code
 * outside any call, where no budget applies. */
static int sb_setmetatable(lua_State *L)
{
    int t = lua_type(L, 2);
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
    if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
        return luaL_error(L, "cannot change a protected metatable");
    if (t == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in the sandbox");
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_setmetatable(L, 1);
    return 1;
}

/* ---- loading ------------------------------------------------------------------------ */

/* Loads text-only source; on success sets the chunk's _ENV to a fresh sandbox. */
static int load_text(lua_State *L, const char *chunk, const char *src, size_t len)
{
    int status = luaL_loadbufferx(L, src, len, chunk, "t");
    if (status == LUA_OK) {
        wlua_sandbox_push_env(L);
        if (lua_setupvalue(L, -2, 1) == NULL)
            lua_pop(L, 1);
    }
    return status;
}

/* Raises the error a failed load left on the stack. */
static void raise_load_error(lua_State *L, int status)
{
    if (status == LUA_ERRMEM)
        wlua_budget_raise(L, WLUA_BUDGET_MEMORY);
    lua_error(L);
}

/* Lua shows "=name" as "name" in messages; plain names get the '='. */
static const char *push_chunkname(lua_State *L, const char *name)
{
    if (name[0] == '=' || name[0] == '@') {
        lua_pushstring(L, name);
        return name;
    }
    return lua_pushfstring(L, "=%s", name);
}

void wlua_sandbox_load(lua_State *L, const char *name, const char *src, size_t len)
{
    const char *chunk = push_chunkname(L, name);
    int status = load_text(L, chunk, src, len);
    if (status != LUA_OK)
        raise_load_error(L, status);
    lua_remove(L, -2); /* the chunk name */
}

static void push_prefixed(lua_State *L, const char *prefix, const char *src, size_t len)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, prefix);
    luaL_addlstring(&b, src, len);
    luaL_pushresult(&b);
}

/* The function ward.condition returns: the compiled source, always metered. */
static int metered_condition(lua_State *L)
{
    int nargs = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    wlua_call_metered(L, nargs, LUA_MULTRET);
    return lua_gettop(L);
}

/* ward.condition(src [, name]) -> function(req): the escape hatch of `when:
 * - lua:` conditions. src is an expression over `req` ("req.time.hour < 18"),
 * or a block of statements that returns a value, as in the Lua REPL. */
static int sb_condition(lua_State *L)
{
    size_t len;
    const char *src = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "condition");
    lua_settop(L, 2);
    const char *chunk = push_chunkname(L, name); /* 3 */
    push_prefixed(L, "local req = ...; return ", src, len); /* 4 */
    size_t elen;
    const char *expr = lua_tolstring(L, 4, &elen);
    int status = load_text(L, chunk, expr, elen); /* 5 */
    if (status == LUA_OK) {
        lua_pushcclosure(L, metered_condition, 1);
        return 1;
    }
    if (status != LUA_ERRSYNTAX)
        raise_load_error(L, status);
    push_prefixed(L, "local req = ...; ", src, len); /* 6 */
    size_t blen;
    const char *block = lua_tolstring(L, 6, &blen);
    int status2 = load_text(L, chunk, block, blen); /* 7 */
    if (status2 == LUA_OK) {
        lua_pushcclosure(L, metered_condition, 1);
        return 1;
    }
    if (status2 != LUA_ERRSYNTAX)
        raise_load_error(L, status2);
    /* report the attempt the author most likely meant */
    if (memmem(src, len, "return", 6) == NULL)
        lua_pushvalue(L, 5);
    return lua_error(L);
}

/* Parse-only: the two forms sb_condition tries, in a throwaway state. */
int wlua_condition_check(const char *src, size_t len, ward_err *err)
{
    static const char *const prefixes[2] = {"local req = ...; return ", "local req = ...; "};
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        ward_err_set(err, "out of memory");
        return WARD_ENOMEM;
    }
    int rc = WARD_ESYNTAX;
    char first[512] = "";
    for (int i = 0; i < 2 && rc != 0; i++) {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addstring(&b, prefixes[i]);
        luaL_addlstring(&b, src, len);
        luaL_pushresult(&b);
        size_t n;
        const char *text = lua_tolstring(L, -1, &n);
        if (luaL_loadbufferx(L, text, n, "=condition", "t") == LUA_OK) {
            rc = 0;
        } else if (i == 0 || memmem(src, len, "return", 6) == NULL) {
            if (i == 0) /* report the expression form unless the author wrote a block */
                snprintf(first, sizeof(first), "%s", lua_tostring(L, -1));
        } else {
            snprintf(first, sizeof(first), "%s", lua_tostring(L, -1));
        }
        lua_settop(L, 0);
    }
    lua_close(L);
    if (rc != 0) {
        /* "condition:1: msg" -> "line 1: msg" */
        const char *m = strncmp(first, "condition:", 10) == 0 ? first + 10 : first;
        ward_err_set(err, "%s%s", m != first ? "line " : "", m);
    }
    return rc;
}

/* ---- the environment ------------------------------------------------------------------- */

/* Pushes a shallow copy of the table at idx, without the names in `skip`. */
static void copy_table(lua_State *L, int idx, const char *const *skip)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        bool skipped = false;
        if (skip != NULL && lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2);
            for (const char *const *s = skip; *s != NULL; s++)
                skipped = skipped || strcmp(k, *s) == 0;
        }
        if (skipped) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

void wlua_sandbox_push_env(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &env_key);
    int tpl = lua_gettop(L);
    lua_createtable(L, 0, 24);
    lua_pushnil(L);
    while (lua_next(L, tpl) != 0) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            copy_table(L, -1, NULL);
            lua_remove(L, -2);
        }
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, tpl + 1);
    }
    lua_remove(L, tpl);
}

static const luaL_Reg guarded[] = {
    {"pcall", sb_pcall},
    {"xpcall", sb_xpcall},
    {"setmetatable", sb_setmetatable},
    {NULL, NULL},
};

int wlua_sandbox_open(lua_State *L)
{
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    int g = lua_gettop(L);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    int s = lua_gettop(L);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    int t = lua_gettop(L);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    int m = lua_gettop(L);
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
    int u = lua_gettop(L);

    /* the string table is also the string metatable's __index: patch it in
     * place so ("").dump is gone and s:find() is budgeted too */
    lua_pushnil(L);
    lua_setfield(L, s, "dump");
    wlua_strlib_patch(L, s);
    wlua_tablib_patch(L, t);
    wlua_utf8lib_patch(L, u);
    /* getmetatable("") returns false: sandboxed code cannot reach the shared
     * string metatable (nor, through it, the methods other chunks rely on) */
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    lua_createtable(L, 0, 24);
    int tpl = lua_gettop(L);
    for (const char *const *n = base_names; *n != NULL; n++) {
        lua_getfield(L, g, *n);
        lua_setfield(L, tpl, *n);
    }
    luaL_setfuncs(L, guarded, 0);
    /* library tables are copies: a chunk that rewrites string.format changes
     * its own environment only, never ("x"):format or another chunk */
    copy_table(L, s, NULL);
    lua_setfield(L, tpl, "string");
    copy_table(L, t, NULL);
    lua_setfield(L, tpl, "table");
    static const char *const no_random[] = {"random", "randomseed", NULL};
    copy_table(L, m, no_random);
    lua_setfield(L, tpl, "math");
    copy_table(L, u, NULL);
    lua_setfield(L, tpl, "utf8");

    lua_newtable(L);
    wlua_host_regex(L);
    wlua_host_match(L);
    wlua_host_index(L);
    lua_pushcfunction(L, sb_condition);
    lua_setfield(L, -2, "condition");
    lua_setfield(L, tpl, "ward");

    lua_pushvalue(L, tpl);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &env_key);
    lua_settop(L, 0);
    return 0;
}
