/* test_wlua.c - unit tests of the sandboxed Lua runtime: loading, calling, sandbox, budgets */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua/wlua.h"

/* ---- helpers ------------------------------------------------------------------ */

static wlua_state *new_state(uint64_t instr, size_t mem)
{
    wlua_limits lim = {.max_instructions = instr, .max_memory = mem};
    wlua_state *st = NULL;
    ward_err err = {{0}};
    int rc = wlua_new(&lim, &st, &err);
    if (rc != 0)
        print_error("wlua_new: %s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_non_null(st);
    return st;
}

static int setup(void **state)
{
    *state = new_state(0, 0);
    return 0;
}

static int teardown(void **state)
{
    wlua_free(*state);
    return 0;
}

/* Loads src and leaves its value on the stack (returns the wlua_load code). */
static int load(wlua_state *st, const char *src, ward_err *err)
{
    return wlua_load(st, "test.lua", src, strlen(src), err);
}

/* Runs a chunk that must succeed and return a boolean. */
static bool eval_bool(wlua_state *st, const char *src)
{
    ward_err err = {{0}};
    lua_State *L = wlua_L(st);
    int top = lua_gettop(L);
    int rc = load(st, src, &err);
    if (rc != 0)
        print_error("%s: %s\n", src, err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(lua_gettop(L), top + 1);
    assert_int_equal(lua_type(L, -1), LUA_TBOOLEAN);
    bool b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
}

/* Runs a chunk that must fail; returns its code, err says why, stack unchanged. */
static int eval_fail(wlua_state *st, const char *src, ward_err *err)
{
    lua_State *L = wlua_L(st);
    int top = lua_gettop(L);
    int rc = load(st, src, err);
    assert_int_not_equal(rc, 0);
    assert_int_equal(lua_gettop(L), top);
    return rc;
}

/* Loads a chunk returning a function and leaves the function on the stack. */
static void load_fn(wlua_state *st, const char *src)
{
    ward_err err = {{0}};
    assert_int_equal(load(st, src, &err), 0);
    assert_int_equal(lua_type(wlua_L(st), -1), LUA_TFUNCTION);
}

/* The state still serves an ordinary call after whatever happened before. */
static void assert_usable(wlua_state *st)
{
    assert_true(eval_bool(st, "local t = {} for i = 1, 100 do t[i] = i end return #t == 100"));
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- lifecycle ------------------------------------------------------------------ */

static void test_new_defaults(void **state)
{
    wlua_state *st = *state;
    assert_non_null(wlua_L(st));
    assert_true(wlua_memory(st) > 0);
    assert_int_equal(lua_gettop(wlua_L(st)), 0);
}

static void test_new_refuses_tiny_memory(void **state)
{
    (void)state;
    wlua_limits lim = {.max_memory = 2048};
    wlua_state *st = (wlua_state *)1;
    ward_err err = {{0}};
    int rc = wlua_new(&lim, &st, &err);
    assert_int_not_equal(rc, 0);
    assert_null(st);
    assert_non_null(strstr(err.msg, "memory"));
}

static void test_free_null(void **state)
{
    (void)state;
    wlua_free(NULL);
}

/* ---- loading ----------------------------------------------------------------------- */

static void test_load_returns_value(void **state)
{
    wlua_state *st = *state;
    ward_err err = {{0}};
    assert_int_equal(load(st, "return 40 + 2", &err), 0);
    assert_int_equal(lua_gettop(wlua_L(st)), 1);
    assert_int_equal(lua_tointeger(wlua_L(st), -1), 42);
    lua_pop(wlua_L(st), 1);
}

static void test_load_nil_return_is_error(void **state)
{
    ward_err err = {{0}};
    assert_int_equal(eval_fail(*state, "local x = 1", &err), WARD_ELUA);
    assert_non_null(strstr(err.msg, "nil"));
}

static void test_load_syntax_error_names_chunk_and_line(void **state)
{
    ward_err err = {{0}};
    assert_int_equal(eval_fail(*state, "return 1\n+", &err), WARD_ELUA);
    assert_non_null(strstr(err.msg, "test.lua:2:"));
}

static void test_load_runtime_error_names_line(void **state)
{
    ward_err err = {{0}};
    assert_int_equal(eval_fail(*state, "local t = nil\nreturn t.x", &err), WARD_ELUA);
    assert_non_null(strstr(err.msg, "test.lua:2:"));
}

static void test_load_refuses_bytecode_prefix(void **state)
{
    wlua_state *st = *state;
    ward_err err = {{0}};
    const char src[] = "\x1bLua\x54\x00garbage";
    assert_int_equal(wlua_load(st, "bc", src, sizeof(src) - 1, &err), WARD_ELUA);
    assert_non_null(strstr(err.msg, "binary"));
    assert_int_equal(lua_gettop(wlua_L(st)), 0);
}

static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    luaL_addlstring(ud, p, sz);
    return 0;
}

/* Real bytecode made by a stock Lua state is refused too. */
static void test_load_refuses_real_bytecode(void **state)
{
    wlua_state *st = *state;
    lua_State *plain = luaL_newstate();
    assert_int_equal(luaL_loadstring(plain, "return 42"), 0);
    luaL_Buffer b;
    luaL_buffinit(plain, &b);
    lua_pushvalue(plain, -2);
    lua_dump(plain, dump_writer, &b, 0);
    lua_pop(plain, 1);
    luaL_pushresult(&b);
    size_t len;
    const char *bc = lua_tolstring(plain, -1, &len);
    ward_err err = {{0}};
    assert_int_equal(wlua_load(st, "bc", bc, len, &err), WARD_ELUA);
    assert_non_null(strstr(err.msg, "binary"));
    lua_close(plain);
}

static void test_load_env_is_fresh_per_chunk(void **state)
{
    wlua_state *st = *state;
    assert_true(eval_bool(st, "leaked = 1 return true"));
    assert_true(eval_bool(st, "return leaked == nil"));
}

/* ---- calling ------------------------------------------------------------------------ */

static void test_call_args_and_results(void **state)
{
    wlua_state *st = *state;
    lua_State *L = wlua_L(st);
    ward_err err = {{0}};
    load_fn(st, "return function(a, b) return a + b, a * b end");
    lua_pushinteger(L, 3);
    lua_pushinteger(L, 4);
    assert_int_equal(wlua_call(st, 2, 2, &err), 0);
    assert_int_equal(lua_gettop(L), 2);
    assert_int_equal(lua_tointeger(L, 1), 7);
    assert_int_equal(lua_tointeger(L, 2), 12);
    lua_settop(L, 0);
}

static void test_call_multret(void **state)
{
    wlua_state *st = *state;
    lua_State *L = wlua_L(st);
    ward_err err = {{0}};
    load_fn(st, "return function() return 1, 2, 3 end");
    assert_int_equal(wlua_call(st, 0, LUA_MULTRET, &err), 0);
    assert_int_equal(lua_gettop(L), 3);
    lua_settop(L, 0);
}

static void test_call_error_leaves_stack_clean(void **state)
{
    wlua_state *st = *state;
    lua_State *L = wlua_L(st);
    ward_err err = {{0}};
    lua_pushliteral(L, "caller's own value");
    load_fn(st, "return function(a) error('boom: ' .. a) end");
    lua_pushliteral(L, "arg");
    assert_int_equal(wlua_call(st, 1, 1, &err), WARD_ELUA);
    assert_non_null(strstr(err.msg, "boom: arg"));
    assert_int_equal(lua_gettop(L), 1);
    assert_string_equal(lua_tostring(L, 1), "caller's own value");
    lua_settop(L, 0);
}

static void test_call_non_string_error_objects(void **state)
{
    wlua_state *st = *state;
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "error({})", &err), WARD_ELUA);
    assert_non_null(strstr(err.msg, "table value"));
    assert_int_equal(eval_fail(st, "error(setmetatable({}, {__tostring = function() "
                                   "return 'custom' end}))",
                               &err),
                     WARD_ELUA);
    assert_string_equal(err.msg, "custom");
    assert_int_equal(eval_fail(st, "error(nil)", &err), WARD_ELUA);
    assert_non_null(strstr(err.msg, "nil value"));
}

static void test_call_bad_nargs(void **state)
{
    wlua_state *st = *state;
    ward_err err = {{0}};
    assert_int_equal(wlua_call(st, 3, 0, &err), WARD_EINVAL);
    assert_int_equal(lua_gettop(wlua_L(st)), 0);
}

static void test_call_long_message_truncated(void **state)
{
    ward_err err = {{0}};
    assert_int_equal(eval_fail(*state, "error(string.rep('x', 5000), 0)", &err), WARD_ELUA);
    assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
    assert_memory_equal(err.msg + sizeof(err.msg) - 4, "...", 3);
}

static void test_call_message_with_nul(void **state)
{
    ward_err err = {{0}};
    assert_int_equal(eval_fail(*state, "error('a\\0b', 0)", &err), WARD_ELUA);
    assert_string_equal(err.msg, "a?b");
}

/* ---- sandbox ---------------------------------------------------------------------------- */

static void test_sandbox_no_io_os_debug(void **state)
{
    assert_true(eval_bool(*state, "return io == nil and os == nil and debug == nil and "
                                  "package == nil and coroutine == nil"));
}

static void test_sandbox_no_loaders(void **state)
{
    assert_true(eval_bool(*state, "return load == nil and loadstring == nil and dofile == nil "
                                  "and loadfile == nil and require == nil"));
}

static void test_sandbox_no_gc_print_warn_G(void **state)
{
    assert_true(eval_bool(*state, "return collectgarbage == nil and print == nil and "
                                  "warn == nil and _G == nil"));
}

static void test_sandbox_whitelist_present(void **state)
{
    const char *names[] = {"assert", "error",    "ipairs",   "next",   "pairs",  "pcall",
                           "rawequal", "rawget", "rawlen",   "rawset", "select", "tonumber",
                           "tostring", "type",   "xpcall",   "setmetatable", "getmetatable"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char src[128];
        snprintf(src, sizeof(src), "return type(%s) == 'function'", names[i]);
        assert_true(eval_bool(*state, src));
    }
    assert_true(eval_bool(*state, "return type(string.format) == 'function' and "
                                  "type(table.concat) == 'function' and type(math.floor) == "
                                  "'function' and type(utf8.char) == 'function' and "
                                  "type(ward.regex) == 'function'"));
}

static void test_sandbox_no_string_dump(void **state)
{
    assert_true(eval_bool(*state, "return string.dump == nil and ('').dump == nil"));
}

static void test_sandbox_no_math_random(void **state)
{
    assert_true(eval_bool(*state, "return math.random == nil and math.randomseed == nil and "
                                  "math.floor(2.5) == 2"));
}

static void test_sandbox_string_metatable_locked(void **state)
{
    assert_true(eval_bool(*state, "return type(getmetatable('')) ~= 'table'"));
}

static void test_sandbox_string_methods_survive_rewrites(void **state)
{
    wlua_state *st = *state;
    assert_true(eval_bool(st, "string.upper = function() return 'pwned' end "
                              "return ('a'):upper() == 'A'"));
    assert_true(eval_bool(st, "return string.upper('a') == 'A' and ('b'):upper() == 'B'"));
}

static void test_sandbox_ward_table_per_chunk(void **state)
{
    wlua_state *st = *state;
    assert_true(eval_bool(st, "ward.prefix = function() return true end return true"));
    assert_true(eval_bool(st, "return ward.prefix('abc', 'x') == false"));
}

static void test_sandbox_setmetatable_refuses_gc(void **state)
{
    wlua_state *st = *state;
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "setmetatable({}, {__gc = function() end})", &err), WARD_ELUA);
    assert_non_null(strstr(err.msg, "__gc"));
    assert_true(eval_bool(st, "local t = setmetatable({}, {__index = function() return 7 end}) "
                              "return t.x == 7"));
}

static void test_sandbox_host_metatables_locked(void **state)
{
    assert_true(eval_bool(*state, "return getmetatable(ward.regex('a')) == false and "
                                  "getmetatable(ward.template('/a')) == false"));
}

static void test_sandbox_pcall_catches_ordinary_errors(void **state)
{
    assert_true(eval_bool(*state, "local ok, e = pcall(error, 'x', 0) "
                                  "local ok2, e2 = xpcall(function() error('y', 0) end, "
                                  "function(m) return 'h:' .. m end) "
                                  "local ok3, a, b = pcall(function(x) return x, 2 end, 1) "
                                  "return ok == false and e == 'x' and ok2 == false and "
                                  "e2 == 'h:y' and ok3 and a == 1 and b == 2"));
}

/* ---- conditions (ward.condition) ---------------------------------------------------- */

static void test_condition_expression(void **state)
{
    assert_true(eval_bool(*state, "local f = ward.condition('req.x > 1 and req.y == \"a\"', "
                                  "'p.yaml:3') return f({x = 2, y = 'a'}) == true and "
                                  "f({x = 0, y = 'a'}) == false"));
}

static void test_condition_statements(void **state)
{
    assert_true(eval_bool(*state, "local f = ward.condition('local h = req.h\\nreturn h >= 8', "
                                  "'p.yaml:3') return f({h = 9}) == true"));
}

static void test_condition_syntax_error_names_source(void **state)
{
    ward_err err = {{0}};
    assert_int_equal(eval_fail(*state, "return ward.condition('req.x >', 'p.yaml:7')", &err),
                     WARD_ELUA);
    assert_non_null(strstr(err.msg, "p.yaml:7"));
}

static void test_condition_is_sandboxed(void **state)
{
    assert_true(eval_bool(*state, "local f = ward.condition('os == nil and load == nil', 'c') "
                                  "return f({})"));
    assert_true(eval_bool(*state, "local f = ward.condition('(function() leaked = 1 end)() or "
                                  "true', 'c') f({}) return leaked == nil"));
}

static void test_condition_refuses_bytecode(void **state)
{
    ward_err err = {{0}};
    assert_int_equal(eval_fail(*state, "return ward.condition('\\27Lua', 'c')", &err),
                     WARD_ELUA);
}

/* ---- instruction budget ------------------------------------------------------------------ */

static void test_budget_infinite_loop(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "while true do end", &err), WARD_EBUDGET);
    assert_string_equal(err.msg, "instruction budget exceeded (100000)");
    assert_usable(st);
    wlua_free(st);
}

static void test_budget_infinite_loop_in_call(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    lua_State *L = wlua_L(st);
    ward_err err = {{0}};
    load_fn(st, "return function(spin) if spin then while true do end end return 1 end");
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    assert_int_equal(wlua_call(st, 1, 1, &err), WARD_EBUDGET);
    assert_int_equal(lua_gettop(L), 1);
    lua_pushboolean(L, 0);
    assert_int_equal(wlua_call(st, 1, 1, &err), 0);
    assert_int_equal(lua_tointeger(L, -1), 1);
    lua_settop(L, 0);
    wlua_free(st);
}

static void test_budget_resets_per_call(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    lua_State *L = wlua_L(st);
    ward_err err = {{0}};
    load_fn(st, "return function() local n = 0 for i = 1, 20000 do n = n + i end return n end");
    for (int i = 0; i < 5; i++) {
        lua_pushvalue(L, 1);
        assert_int_equal(wlua_call(st, 0, 1, &err), 0);
        lua_pop(L, 1);
    }
    lua_settop(L, 0);
    wlua_free(st);
}

static void test_budget_pcall_cannot_swallow(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    ward_err err = {{0}};
    double t0 = now();
    assert_int_equal(eval_fail(st, "while true do pcall(function() while true do end end) end",
                               &err),
                     WARD_EBUDGET);
    assert_non_null(strstr(err.msg, "instruction budget"));
    assert_true(now() - t0 < 5.0);
    assert_usable(st);
    wlua_free(st);
}

static void test_budget_xpcall_handler_cannot_swallow(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "local function h() while true do end end "
                                   "while true do xpcall(function() while true do end end, h) "
                                   "end",
                               &err),
                     WARD_EBUDGET);
    assert_usable(st);
    wlua_free(st);
}

static void test_budget_nested_pcall_cannot_swallow(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "local function f(d) if d == 0 then while true do end end "
                                   "while true do pcall(f, d - 1) end end f(50)",
                               &err),
                     WARD_EBUDGET);
    assert_usable(st);
    wlua_free(st);
}

static void test_budget_caught_then_returned_is_still_error(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "local ok = pcall(function() while true do end end) "
                                   "return ok",
                               &err),
                     WARD_EBUDGET);
    wlua_free(st);
}

static void test_budget_close_handler_cannot_swallow(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "local spin = setmetatable({}, {__close = function() "
                                   "while true do end end}) "
                                   "do local a <close> = spin local b <close> = spin "
                                   "while true do end end",
                               &err),
                     WARD_EBUDGET);
    assert_usable(st);
    wlua_free(st);
}

static void test_budget_sort_comparator_loop(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "local t = {3, 2, 1} table.sort(t, function(a, b) "
                                   "while true do end end)",
                               &err),
                     WARD_EBUDGET);
    wlua_free(st);
}

static void test_budget_gsub_callback_loop(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "return (('x'):gsub('x', function() while true do end end))",
                               &err),
                     WARD_EBUDGET);
    wlua_free(st);
}

/* ---- memory budget ---------------------------------------------------------------------- */

static void test_memory_huge_string(void **state)
{
    (void)state;
    wlua_state *st = new_state(0, 16u << 20);
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "return string.rep('x', 1e9)", &err), WARD_EBUDGET);
    assert_string_equal(err.msg, "memory limit exceeded (16777216 bytes)");
    assert_usable(st);
    wlua_free(st);
}

static void test_memory_pcall_cannot_swallow(void **state)
{
    (void)state;
    wlua_state *st = new_state(0, 16u << 20);
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "while true do pcall(string.rep, 'x', 1e9) end", &err),
                     WARD_EBUDGET);
    assert_non_null(strstr(err.msg, "memory limit"));
    assert_usable(st);
    wlua_free(st);
}

static void test_memory_table_growth_bomb(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000000, 4u << 20);
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "local t = {} for i = 1, 1e9 do t[i] = i end", &err),
                     WARD_EBUDGET);
    assert_non_null(strstr(err.msg, "memory limit"));
    assert_usable(st);
    wlua_free(st);
}

static void test_memory_concat_doubling(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000000, 4u << 20);
    ward_err err = {{0}};
    assert_int_equal(eval_fail(st, "local s = 'x' while true do s = s .. s end", &err),
                     WARD_EBUDGET);
    assert_usable(st);
    wlua_free(st);
}

static void test_memory_garbage_is_collected(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000000, 4u << 20);
    /* 100 MiB of short-lived garbage in total, never more than a little live */
    assert_true(eval_bool(st, "for i = 1, 100 do local s = string.rep('x', 1 << 20) end "
                              "return true"));
    assert_true(wlua_memory(st) < (4u << 20));
    wlua_free(st);
}

static void test_memory_accounted(void **state)
{
    wlua_state *st = *state;
    size_t before = wlua_memory(st);
    load_fn(st, "local keep = {} return function() for i = 1, 10000 do keep[i] = i end end");
    ward_err err = {{0}};
    assert_int_equal(wlua_call(st, 0, 0, &err), 0);
    assert_true(wlua_memory(st) > before + 10000 * 8);
}

/* ---- recursion ---------------------------------------------------------------------------- */

static void test_recursion_lua_stack_overflow(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000000, 256u << 20);
    ward_err err = {{0}};
    int rc = eval_fail(st, "local function f(n) return f(n + 1) + 1 end return f(1)", &err);
    assert_int_equal(rc, WARD_ELUA);
    assert_non_null(strstr(err.msg, "stack overflow"));
    assert_usable(st);
    wlua_free(st);
}

static void test_recursion_through_metamethods(void **state)
{
    wlua_state *st = *state;
    ward_err err = {{0}};
    int rc = eval_fail(st, "local t = setmetatable({}, {__index = function(t, k) return t[k] "
                           "end}) return t.x",
                       &err);
    assert_true(rc == WARD_ELUA || rc == WARD_EBUDGET);
    assert_usable(st);
}

static void test_recursion_through_pcall(void **state)
{
    wlua_state *st = *state;
    assert_true(eval_bool(st, "local function f() return pcall(f) end local ok = f() "
                              "return ok == true or ok == false"));
    assert_usable(st);
}

static void test_recursion_in_gsub_callbacks(void **state)
{
    wlua_state *st = *state;
    ward_err err = {{0}};
    int rc = eval_fail(st, "local function f(s) return (s:gsub('.', f)) end return f('ab')",
                       &err);
    assert_true(rc == WARD_ELUA || rc == WARD_EBUDGET);
    assert_usable(st);
}

/* ---- C-level work is charged to the budget ---------------------------------------------- */

static void test_charge_string_rep_empty(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    double t0 = now();
    assert_true(eval_bool(st, "return string.rep('', 1e15) == '' and ('x'):rep(0) == ''"));
    assert_true(now() - t0 < 5.0);
    wlua_free(st);
}

static void test_charge_string_rep_many(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 1u << 30);
    ward_err err = {{0}};
    double t0 = now();
    assert_int_equal(eval_fail(st, "return string.rep('x', 1e8)", &err), WARD_EBUDGET);
    assert_non_null(strstr(err.msg, "instruction budget"));
    assert_true(now() - t0 < 5.0);
    wlua_free(st);
}

static void test_charge_table_move(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    ward_err err = {{0}};
    double t0 = now();
    assert_int_equal(eval_fail(st, "table.move({}, 1, 1e12, 1)", &err), WARD_EBUDGET);
    assert_true(now() - t0 < 5.0);
    wlua_free(st);
}

static void test_charge_table_insert_with_huge_len(void **state)
{
    (void)state;
    wlua_state *st = new_state(100000, 0);
    ward_err err = {{0}};
    double t0 = now();
    assert_int_equal(eval_fail(st, "local t = setmetatable({}, {__len = function() return 1e12 "
                                   "end}) table.insert(t, 1, 'x')",
                               &err),
                     WARD_EBUDGET);
    assert_true(now() - t0 < 5.0);
    wlua_free(st);
}

static void test_charge_pattern_backtracking(void **state)
{
    (void)state;
    wlua_state *st = new_state(1000000, 0);
    ward_err err = {{0}};
    double t0 = now();
    assert_int_equal(eval_fail(st, "local s = string.rep('a', 5000) return s:find('.-.-.-b')",
                               &err),
                     WARD_EBUDGET);
    assert_true(now() - t0 < 5.0);
    wlua_free(st);
}

static void test_charge_plain_find_big_strings(void **state)
{
    (void)state;
    wlua_state *st = new_state(1000000, 0);
    ward_err err = {{0}};
    double t0 = now();
    int rc = load(st, "local s = string.rep('a', 1 << 20) local p = string.rep('a', 1 << 19) "
                      ".. 'b' for i = 1, 1e9 do s:find(p, 1, true) end return true",
                  &err);
    assert_int_equal(rc, WARD_EBUDGET);
    assert_true(now() - t0 < 5.0);
    wlua_free(st);
}

static void test_charge_sort_big_table(void **state)
{
    (void)state;
    wlua_state *st = new_state(1000000, 0);
    ward_err err = {{0}};
    double t0 = now();
    int rc = load(st, "local t = {('x'):rep(100000):byte(1, -1)} "
                      "for i = 1, 1e9 do table.sort(t) end return true",
                  &err);
    assert_int_equal(rc, WARD_EBUDGET);
    assert_true(now() - t0 < 5.0);
    wlua_free(st);
}

/* Ordinary library behaviour is unchanged by the budgeted replacements. */
static void test_library_semantics_kept(void **state)
{
    assert_true(eval_bool(*state,
                          "local t = {5, 1, 4} table.sort(t) table.insert(t, 9) "
                          "table.insert(t, 1, 0) local r = table.remove(t, 1) "
                          "local m = table.move({1, 2, 3}, 1, 3, 2, {}) "
                          "local a, b = ('key=val'):match('^(%w+)=(%w+)$') "
                          "local g = {} for w in ('a b c'):gmatch('%a') do g[#g + 1] = w end "
                          "local s, n = ('hello'):gsub('l', 'L') "
                          "local i, j = ('hello'):find('ll', 1, true) "
                          "return table.concat(t, ',') == '1,4,5,9' and r == 0 and "
                          "m[2] == 1 and m[4] == 3 and a == 'key' and b == 'val' and "
                          "#g == 3 and s == 'heLLo' and n == 2 and i == 3 and j == 4 and "
                          "table.unpack({1, 2}) == 1 and select('#', table.unpack({1, 2, 3})) "
                          "== 3 and ('x'):rep(3, ',') == 'x,x,x'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_new_defaults),
        T(test_new_refuses_tiny_memory),
        T(test_free_null),
        T(test_load_returns_value),
        T(test_load_nil_return_is_error),
        T(test_load_syntax_error_names_chunk_and_line),
        T(test_load_runtime_error_names_line),
        T(test_load_refuses_bytecode_prefix),
        T(test_load_refuses_real_bytecode),
        T(test_load_env_is_fresh_per_chunk),
        T(test_call_args_and_results),
        T(test_call_multret),
        T(test_call_error_leaves_stack_clean),
        T(test_call_non_string_error_objects),
        T(test_call_bad_nargs),
        T(test_call_long_message_truncated),
        T(test_call_message_with_nul),
        T(test_sandbox_no_io_os_debug),
        T(test_sandbox_no_loaders),
        T(test_sandbox_no_gc_print_warn_G),
        T(test_sandbox_whitelist_present),
        T(test_sandbox_no_string_dump),
        T(test_sandbox_no_math_random),
        T(test_sandbox_string_metatable_locked),
        T(test_sandbox_string_methods_survive_rewrites),
        T(test_sandbox_ward_table_per_chunk),
        T(test_sandbox_setmetatable_refuses_gc),
        T(test_sandbox_host_metatables_locked),
        T(test_sandbox_pcall_catches_ordinary_errors),
        T(test_condition_expression),
        T(test_condition_statements),
        T(test_condition_syntax_error_names_source),
        T(test_condition_is_sandboxed),
        T(test_condition_refuses_bytecode),
        T(test_budget_infinite_loop),
        T(test_budget_infinite_loop_in_call),
        T(test_budget_resets_per_call),
        T(test_budget_pcall_cannot_swallow),
        T(test_budget_xpcall_handler_cannot_swallow),
        T(test_budget_nested_pcall_cannot_swallow),
        T(test_budget_caught_then_returned_is_still_error),
        T(test_budget_close_handler_cannot_swallow),
        T(test_budget_sort_comparator_loop),
        T(test_budget_gsub_callback_loop),
        T(test_memory_huge_string),
        T(test_memory_pcall_cannot_swallow),
        T(test_memory_table_growth_bomb),
        T(test_memory_concat_doubling),
        T(test_memory_garbage_is_collected),
        T(test_memory_accounted),
        T(test_recursion_lua_stack_overflow),
        T(test_recursion_through_metamethods),
        T(test_recursion_through_pcall),
        T(test_recursion_in_gsub_callbacks),
        T(test_charge_string_rep_empty),
        T(test_charge_string_rep_many),
        T(test_charge_table_move),
        T(test_charge_table_insert_with_huge_len),
        T(test_charge_pattern_backtracking),
        T(test_charge_plain_find_big_strings),
        T(test_charge_sort_big_table),
        T(test_library_semantics_kept),
#undef T
    };
    /* WLUA_TEST_FILTER / WLUA_TEST_SKIP select tests by name pattern (e.g. "*budget*") */
    if (getenv("WLUA_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("WLUA_TEST_FILTER"));
    if (getenv("WLUA_TEST_SKIP") != NULL)
        cmocka_set_skip_filter(getenv("WLUA_TEST_SKIP"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
