/* test_strlib.c - the budgeted string/table functions behave exactly like stock Lua 5.4's (differential tests) */
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

#include "lua/wlua.h"

/* Runs the string functions every way on (s, p) and serializes what comes back. */
static const char probe_src[] =
    "return function(s, p)\n"
    "  local function ser(...)\n"
    "    local t = table.pack(...)\n"
    "    local o = {}\n"
    "    for i = 1, t.n do\n"
    "      local v = t[i]\n"
    "      o[#o + 1] = type(v) .. ':' .. ((type(v) == 'table' or type(v) == 'function') and '' or tostring(v))\n"
    "    end\n"
    "    return table.concat(o, '|')\n"
    "  end\n"
    "  local function gm(init)\n"
    "    local o = {}\n"
    "    for a, b in string.gmatch(s, p, init) do\n"
    "      o[#o + 1] = tostring(a) .. ',' .. tostring(b)\n"
    "      if #o > 50 then break end\n"
    "    end\n"
    "    return table.concat(o, ';')\n"
    "  end\n"
    "  local r = {}\n"
    "  r[#r + 1] = ser(pcall(string.find, s, p))\n"
    "  r[#r + 1] = ser(pcall(string.find, s, p, 2))\n"
    "  r[#r + 1] = ser(pcall(string.find, s, p, -3))\n"
    "  r[#r + 1] = ser(pcall(string.find, s, p, 1, true))\n"
    "  r[#r + 1] = ser(pcall(string.find, s, p, 100))\n"
    "  r[#r + 1] = ser(pcall(string.match, s, p))\n"
    "  r[#r + 1] = ser(pcall(string.match, s, p, 3))\n"
    "  r[#r + 1] = ser(pcall(string.gsub, s, p, '<%0>'))\n"
    "  r[#r + 1] = ser(pcall(string.gsub, s, p, '%1'))\n"
    "  r[#r + 1] = ser(pcall(string.gsub, s, p, '%2%%'))\n"
    "  r[#r + 1] = ser(pcall(string.gsub, s, p, function(...) return select('#', ...) .. '' end))\n"
    "  r[#r + 1] = ser(pcall(string.gsub, s, p, function() return false end))\n"
    "  r[#r + 1] = ser(pcall(string.gsub, s, p, {a = 'A', b = 7}, 2))\n"
    "  r[#r + 1] = ser(pcall(gm))\n"
    "  r[#r + 1] = ser(pcall(gm, 2))\n"
    "  r[#r + 1] = ser(pcall(gm, -2))\n"
    "  return table.concat(r, '\\n')\n"
    "end\n";

typedef struct pair {
    lua_State *stock; /* a plain Lua state with the stock libraries */
    wlua_state *st;
} pair;

static int setup(void **state)
{
    pair *p = calloc(1, sizeof(*p));
    p->stock = luaL_newstate();
    luaL_openlibs(p->stock);
    ward_err err = {{0}};
    assert_int_equal(wlua_new(NULL, &p->st, &err), 0);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    pair *p = *state;
    lua_close(p->stock);
    wlua_free(p->st);
    free(p);
    return 0;
}

/* The probe's output in the stock state and in the sandbox must be equal. */
static void compare(pair *p, const char *probe, const char *s, size_t ls, const char *pat,
                    size_t lp)
{
    lua_State *N = p->stock, *W = wlua_L(p->st);
    ward_err err = {{0}};
    assert_int_equal(luaL_loadbufferx(N, probe, strlen(probe), "=probe", "t"), 0);
    assert_int_equal(lua_pcall(N, 0, 1, 0), 0);
    lua_pushlstring(N, s, ls);
    lua_pushlstring(N, pat, lp);
    if (lua_pcall(N, 2, 1, 0) != 0)
        fail_msg("stock: %s", lua_tostring(N, -1));
    assert_int_equal(wlua_load(p->st, "probe", probe, strlen(probe), &err), 0);
    lua_pushlstring(W, s, ls);
    lua_pushlstring(W, pat, lp);
    int rc = wlua_call(p->st, 2, 1, &err);
    if (rc != 0)
        fail_msg("sandbox (s=%s p=%s): %s", s, pat, err.msg);
    const char *a = lua_tostring(N, -1), *b = lua_tostring(W, -1);
    if (strcmp(a, b) != 0) {
        fprintf(stderr, "s=\"%s\" p=\"%s\"\nstock:\n%s\nsandbox:\n%s\n", s, pat, a, b);
        fail();
    }
    lua_settop(N, 0);
    lua_settop(W, 0);
}

static void compare_str(pair *p, const char *s, const char *pat)
{
    compare(p, probe_src, s, strlen(s), pat, strlen(pat));
}

static const char *const subjects[] = {
    "", "a", "aaa", "hello world", "key=val; k2 = v2", "(foo(bar))baz", "THE (quick) fox",
    "  padded  ", "a.b.c", "x[y]z%", "abcabcabc", "0x1F, 42, -7.5e3", "^$^$", "f(a(b)c)d",
};

static const char *const patterns[] = {
    "",         "a",          "a*",          "a+",          "a-",        "a?",
    ".",        ".-",         "^a",          "a$",          "^$",        "^",
    "$",        "%a+",        "%A+",         "%d+",         "%s*",       "%S+",
    "%w+",      "%x+",        "%p",          "%l%u",        "%c",        "%g+",
    "[abc]+",   "[^abc]+",    "[a-c]+",      "[%a_]+",      "[]]",       "[^]]",
    "[a-]",     "[-a]",       "[%]]",        "(a)",         "(a)(b)",    "()a()",
    "(h)(.)",   "((a)b)",     "(%w+)=(%w+)", "%((%w+)%)",   "%bxy",      "%b()",
    "%b[]",     "%f[%a]%a+",  "%f[%A]",      "%f[%w]%w+",   "(a)%1",     "(%w)%1",
    "(.)(.)%2", "%.",         "%%",          "a.b",         "x*$",       "^(.-)%s*$",
    "(.-)=(.*)", "[%d%.]+",   "%-?%d+",      "(()a)",       "a-b",       "[^%s]+",
    ".-b",      "(a*(.)%w(%s*))", "%",        "[a",          "(",         ")",
    "%b",       "%bx",        "%f",          "%fa",         "%1",        "(a)%2",
    "(()",      "%g%",        "[%",          "(%1)",        "%0",        "[^",
    "a**",      "*a",         "+",           "-",           "?",         "^^a",
    "$$",       "a$b",        "%z",          "[\\0-\\255]", ".\0.",      "((((((((((a))))))))))",
};

static void test_patterns_match_stock_lua(void **state)
{
    pair *p = *state;
    for (size_t i = 0; i < sizeof(subjects) / sizeof(subjects[0]); i++)
        for (size_t j = 0; j < sizeof(patterns) / sizeof(patterns[0]); j++)
            compare_str(p, subjects[i], patterns[j]);
}

static void test_patterns_with_nul_bytes(void **state)
{
    pair *p = *state;
    compare(p, probe_src, "a\0b\0c", 5, "%z", 2);
    compare(p, probe_src, "a\0b\0c", 5, "\0", 1);
    compare(p, probe_src, "a\0b\0c", 5, "[\0b]+", 5);
    compare(p, probe_src, "a\0b\0c", 5, "(.)\0", 4);
    compare(p, probe_src, "a\0b\0c", 5, "b\0", 2);
    compare(p, probe_src, "a]]\"'\0x", 7, "[]\"']+", 6);
}

static void test_too_many_captures_and_depth(void **state)
{
    pair *p = *state;
    char pat[200] = "";
    for (int i = 0; i < 33; i++)
        strcat(pat, "(a)");
    compare_str(p, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", pat);
    char deep[1000] = "";
    for (int i = 0; i < 250; i++)
        strcat(deep, "a?");
    compare_str(p, "aaaa", deep);
}

/* Random patterns over a small alphabet: malformed ones included, on purpose. */
static void test_random_patterns_match_stock_lua(void **state)
{
    pair *p = *state;
    static const char alphabet[] = "ab.%()[]^$*+-?afbdws1AF";
    static const char subj_chars[] = "aab(b)[]% .xA1";
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (int n = 0; n < 3000; n++) {
        char pat[12], subj[12];
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        size_t lp = (size_t)(seed >> 60) % 9 + 1, ls = (size_t)(seed >> 56) % 11;
        for (size_t i = 0; i < lp; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            pat[i] = alphabet[(seed >> 33) % (sizeof(alphabet) - 1)];
        }
        for (size_t i = 0; i < ls; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            subj[i] = subj_chars[(seed >> 33) % (sizeof(subj_chars) - 1)];
        }
        pat[lp] = subj[ls] = '\0';
        compare(p, probe_src, subj, ls, pat, lp);
    }
}

/* rep, byte and the table functions, same comparison. */
static const char other_src[] =
    "return function(s, p)\n"
    "  local function ser(...)\n"
    "    local t = table.pack(...)\n"
    "    local o = {}\n"
    "    for i = 1, t.n do\n"
    "      local v = t[i]\n"
    "      o[#o + 1] = type(v) .. ':' .. ((type(v) == 'table' or type(v) == 'function') and '' or tostring(v))\n"
    "    end\n"
    "    return table.concat(o, '|')\n"
    "  end\n"
    "  local function arr(t) local o = {} for i = -1, 12 do o[#o + 1] = tostring(t[i]) end\n"
    "    return table.concat(o, ',') end\n"
    "  local function tcall(f, ...) local t = {5, 3, 'x', 9} local r = ser(pcall(f, t, ...))\n"
    "    return r .. ' => ' .. arr(t) end\n"
    "  local r = {}\n"
    "  r[#r + 1] = ser(pcall(string.rep, s, 3))\n"
    "  r[#r + 1] = ser(pcall(string.rep, s, 3, p))\n"
    "  r[#r + 1] = ser(pcall(string.rep, s, 0, p))\n"
    "  r[#r + 1] = ser(pcall(string.rep, s, -1))\n"
    "  r[#r + 1] = ser(pcall(string.rep, s))\n"
    "  r[#r + 1] = ser(pcall(string.byte, s))\n"
    "  r[#r + 1] = ser(pcall(string.byte, s, 2, -1))\n"
    "  r[#r + 1] = ser(pcall(string.byte, s, -2))\n"
    "  r[#r + 1] = ser(pcall(string.byte, s, 0, 100))\n"
    "  r[#r + 1] = ser(pcall(string.byte, s, 5, 2))\n"
    "  r[#r + 1] = tcall(table.insert, 'y')\n"
    "  r[#r + 1] = tcall(table.insert, 1, 'y')\n"
    "  r[#r + 1] = tcall(table.insert, 5, 'y')\n"
    "  r[#r + 1] = tcall(table.insert, 6, 'y')\n"
    "  r[#r + 1] = tcall(table.insert, 0, 'y')\n"
    "  r[#r + 1] = tcall(table.insert, 1, 2, 3)\n"
    "  r[#r + 1] = tcall(table.remove)\n"
    "  r[#r + 1] = tcall(table.remove, 1)\n"
    "  r[#r + 1] = tcall(table.remove, 5)\n"
    "  r[#r + 1] = tcall(table.remove, 6)\n"
    "  r[#r + 1] = tcall(table.move, 1, 3, 2)\n"
    "  r[#r + 1] = tcall(table.move, 2, 4, 1)\n"
    "  r[#r + 1] = tcall(table.move, 1, 4, 3, {})\n"
    "  r[#r + 1] = tcall(table.move, 3, 1, 1)\n"
    "  r[#r + 1] = tcall(table.move, -2, 2, 8)\n"
    "  r[#r + 1] = tcall(table.concat)\n"
    "  r[#r + 1] = tcall(table.concat, p)\n"
    "  r[#r + 1] = tcall(table.concat, p, 2, 3)\n"
    "  r[#r + 1] = tcall(table.concat, p, 3, 2)\n"
    "  r[#r + 1] = tcall(table.concat, p, 1, 6)\n"
    "  r[#r + 1] = tcall(table.unpack)\n"
    "  r[#r + 1] = tcall(table.unpack, 2)\n"
    "  r[#r + 1] = tcall(table.unpack, -1, 2)\n"
    "  r[#r + 1] = tcall(table.unpack, 3, 2)\n"
    "  r[#r + 1] = ser((pcall(table.sort, {5, 3, 'x'})))\n"
    "  r[#r + 1] = ser(pcall(table.concat, {1, {}, 3}))\n"
    "  r[#r + 1] = ser(pcall(table.insert, 'str', 1))\n"
    "  local sizes = {}\n"
    "  for n = 0, 40 do sizes[#sizes + 1] = n end\n"
    "  sizes[#sizes + 1] = 128; sizes[#sizes + 1] = 129; sizes[#sizes + 1] = 517\n"
    "  for _, n in ipairs(sizes) do\n"
    "    local t, u = {}, {}\n"
    "    for i = 1, n do t[i] = (i * 7919) % 23 .. s; u[i] = (i * 104729) % 31 end\n"
    "    table.sort(t) table.sort(u, function(a, b) return a > b end)\n"
    "    r[#r + 1] = table.concat(t, ',') .. '/' .. table.concat(u, ',')\n"
    "  end\n"
    "  local mt = setmetatable({}, {__index = function(_, i) return i <= 3 and i * 10 or nil end,\n"
    "    __len = function() return 3 end, __newindex = function(t, k, v) rawset(t, k, v) end})\n"
    "  r[#r + 1] = ser(table.unpack(mt)) .. table.concat(mt, '+')\n"
    "  return table.concat(r, '\\n')\n"
    "end\n";

static void test_rep_byte_and_table_functions_match_stock_lua(void **state)
{
    pair *p = *state;
    const char *strs[] = {"", "ab", "x\0y", ",", "hello"};
    size_t lens[] = {0, 2, 3, 1, 5};
    for (size_t i = 0; i < 5; i++)
        for (size_t j = 0; j < 5; j++)
            compare(p, other_src, strs[i], lens[i], strs[j], lens[j]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_patterns_match_stock_lua),
        T(test_patterns_with_nul_bytes),
        T(test_too_many_captures_and_depth),
        T(test_random_patterns_match_stock_lua),
        T(test_rep_byte_and_table_functions_match_stock_lua),
#undef T
    };
    if (getenv("WLUA_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("WLUA_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
