/* tablib.c - table functions whose loops are charged to the budget: insert, remove, move, concat, unpack, sort */
#include "lua/wlua_int.h"

#include <lauxlib.h>
#include <limits.h>

/*
 * Lua's own versions loop in C over a length that sandboxed code controls
 * (table.move({}, 1, 1e12, 1), or a __len returning 1e12 for insert), out of
 * the hook's reach. These keep the documented semantics (Lua 5.4 manual,
 * §6.6) and charge one instruction per element they touch.
 */

enum { TAB_R = 1, TAB_W = 2, TAB_L = 4, TAB_RW = TAB_R | TAB_W };

static bool has_metafield(lua_State *L, int arg, const char *field)
{
    if (luaL_getmetafield(L, arg, field) == LUA_TNIL)
        return false;
    lua_pop(L, 1);
    return true;
}

/* A table, or a value whose metatable provides what the operation needs. */
static void check_tab(lua_State *L, int arg, int what)
{
    if (lua_type(L, arg) == LUA_TTABLE)
        return;
    if ((!(what & TAB_R) || has_metafield(L, arg, "__index")) &&
        (!(what & TAB_W) || has_metafield(L, arg, "__newindex")) &&
        (!(what & TAB_L) || has_metafield(L, arg, "__len")))
        return;
    luaL_checktype(L, arg, LUA_TTABLE);
}

static lua_Integer table_len(lua_State *L, int arg, int what)
{
    check_tab(L, arg, what | TAB_L);
    return luaL_len(L, arg);
}

static int t_insert(lua_State *L)
{
    lua_Integer e = table_len(L, 1, TAB_RW);
    e = luaL_intop(+, e, 1); /* first empty slot */
    lua_Integer pos;
    switch (lua_gettop(L)) {
    case 2:
        pos = e;
        break;
    case 3:
        pos = luaL_checkinteger(L, 2);
        luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)e, 2, "position out of bounds");
        for (lua_Integer i = e; i > pos; i--) {
            wlua_charge(L, 1);
            lua_geti(L, 1, i - 1);
            lua_seti(L, 1, i);
        }
        break;
    default:
        return luaL_error(L, "wrong number of arguments to 'insert'");
    }
    lua_seti(L, 1, pos);
    return 0;
}

static int t_remove(lua_State *L)
{
    lua_Integer size = table_len(L, 1, TAB_RW);
    lua_Integer pos = luaL_optinteger(L, 2, size);
    if (pos != size)
        luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 1, /* as Lua 5.4.4 */
                      "position out of bounds");
    lua_geti(L, 1, pos);
    for (; pos < size; pos++) {
        wlua_charge(L, 1);
        lua_geti(L, 1, pos + 1);
        lua_seti(L, 1, pos);
    }
    lua_pushnil(L);
    lua_seti(L, 1, pos);
    return 1;
}

static int t_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    lua_Integer t = luaL_checkinteger(L, 4);
    int tt = !lua_isnoneornil(L, 5) ? 5 : 1;
    check_tab(L, 1, TAB_R);
    check_tab(L, tt, TAB_W);
    if (e >= f) {
        luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
        lua_Integer n = e - f + 1;
        luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
        if (t > e || t <= f || (tt != 1 && !lua_compare(L, 1, tt, LUA_OPEQ))) {
            for (lua_Integer i = 0; i < n; i++) {
                wlua_charge(L, 1);
                lua_geti(L, 1, f + i);
                lua_seti(L, tt, t + i);
            }
        } else {
            for (lua_Integer i = n - 1; i >= 0; i--) {
                wlua_charge(L, 1);
                lua_geti(L, 1, f + i);
                lua_seti(L, tt, t + i);
            }
        }
    }
    lua_pushvalue(L, tt);
    return 1;
}

static int t_concat(lua_State *L)
{
    lua_Integer last = table_len(L, 1, TAB_R);
    size_t lsep;
    const char *sep = luaL_optlstring(L, 2, "", &lsep);
    lua_Integer i = luaL_optinteger(L, 3, 1);
    last = luaL_optinteger(L, 4, last);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (; i <= last; i++) {
        wlua_charge(L, 1);
        lua_geti(L, 1, i);
        if (!lua_isstring(L, -1))
            return luaL_error(L, "invalid value (%s) at index %I in table for 'concat'",
                              luaL_typename(L, -1), (LUAI_UACINT)i);
        luaL_addvalue(&b);
        if (i != last)
            luaL_addlstring(&b, sep, lsep);
        if (i == LUA_MAXINTEGER)
            break;
    }
    luaL_pushresult(&b);
    return 1;
}

static int t_unpack(lua_State *L)
{
    lua_Integer i = luaL_optinteger(L, 2, 1);
    lua_Integer e = luaL_opt(L, luaL_checkinteger, 3, luaL_len(L, 1));
    if (i > e)
        return 0;
    lua_Unsigned n = (lua_Unsigned)e - (lua_Unsigned)i;
    if (n >= (unsigned int)INT_MAX)
        return luaL_error(L, "too many results to unpack");
    wlua_charge(L, n + 1);
    if (!lua_checkstack(L, (int)(++n)))
        return luaL_error(L, "too many results to unpack");
    for (; i < e; i++)
        lua_geti(L, 1, i);
    lua_geti(L, 1, e);
    return (int)n;
}

/* ---- sort: n log n comparisons whatever the order function does, each one
 * charged: binary insertion on the stack for small arrays, an in-place
 * heapsort for the others ----------------------------------------------------------------- */

/* Is the value at a less than the value at b (absolute indices)? */
static bool sort_less(lua_State *L, int a, int b)
{
    if (lua_isnil(L, 2))
        return lua_compare(L, a, b, LUA_OPLT);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, a);
    lua_pushvalue(L, b);
    lua_call(L, 2, 1);
    bool r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

static void sift_down(lua_State *L, lua_Integer root, lua_Integer n)
{
    for (;;) {
        lua_Integer child = 2 * root;
        if (child > n)
            return;
        wlua_charge(L, 2);
        lua_geti(L, 1, child);
        if (child + 1 <= n) {
            lua_geti(L, 1, child + 1);
            int top = lua_gettop(L);
            if (sort_less(L, top - 1, top)) {
                child++;
                lua_remove(L, -2);
            } else {
                lua_pop(L, 1);
            }
        }
        lua_geti(L, 1, root); /* stack: child value, root value */
        int top = lua_gettop(L);
        if (!sort_less(L, top, top - 1)) {
            lua_pop(L, 2);
            return;
        }
        lua_seti(L, 1, child); /* t[child] = root value */
        lua_seti(L, 1, root);  /* t[root] = child value */
        root = child;
    }
}

/* Small arrays are sorted on the stack: one read and one write per element
 * and a binary insertion (n log n comparisons, stable). */
#define SORT_ON_STACK_MAX 128

static void sort_on_stack(lua_State *L, int n)
{
    luaL_checkstack(L, n + 4, "array too big");
    int base = lua_gettop(L) + 1; /* the sorted run grows from here to the top */
    for (int i = 1; i <= n; i++) {
        lua_geti(L, 1, i);
        int top = lua_gettop(L);
        int lo = base, hi = top;
        while (lo < hi) { /* first element greater than the new one */
            int mid = lo + (hi - lo) / 2;
            wlua_charge(L, 1);
            if (sort_less(L, top, mid))
                hi = mid;
            else
                lo = mid + 1;
        }
        if (lo < top) {
            wlua_charge(L, (uint64_t)(top - lo) / 32);
            lua_rotate(L, lo, 1);
        }
    }
    for (int i = n; i >= 1; i--)
        lua_seti(L, 1, i);
}

static int t_sort(lua_State *L)
{
    lua_Integer n = table_len(L, 1, TAB_RW);
    if (n > 1) {
        luaL_argcheck(L, n < INT_MAX, 1, "array too big");
        if (!lua_isnoneornil(L, 2))
            luaL_checktype(L, 2, LUA_TFUNCTION);
        lua_settop(L, 2);
        if (n <= SORT_ON_STACK_MAX) {
            sort_on_stack(L, (int)n);
            return 0;
        }
        for (lua_Integer i = n / 2; i >= 1; i--)
            sift_down(L, i, n);
        for (lua_Integer end = n; end > 1; end--) {
            lua_geti(L, 1, 1);
            lua_geti(L, 1, end);
            lua_seti(L, 1, 1);   /* t[1] = t[end] */
            lua_seti(L, 1, end); /* t[end] = old t[1] */
            sift_down(L, 1, end - 1);
        }
    }
    return 0;
}

static const luaL_Reg budgeted[] = {
    {"insert", t_insert}, {"remove", t_remove}, {"move", t_move}, {"concat", t_concat},
    {"unpack", t_unpack}, {"sort", t_sort},     {NULL, NULL},
};

void wlua_tablib_patch(lua_State *L, int table_table)
{
    lua_pushvalue(L, table_table);
    luaL_setfuncs(L, budgeted, 0);
    lua_pop(L, 1);
}
