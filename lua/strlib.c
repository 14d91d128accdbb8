/* strlib.c - string functions whose work is charged to the budget: Lua patterns with a step count, rep, byte */
#include "lua/wlua_int.h"

#include <ctype.h>
#include <lauxlib.h>
#include <limits.h>
#include <string.h>

/*
 * Lua's own pattern matcher backtracks without bound: s:find(".-.-.-b") on a
 * few kilobytes runs for hours inside one VM instruction, out of the hook's
 * reach. This is a matcher for the same pattern language (Lua 5.4 manual,
 * §6.4.1) that counts its steps and charges them to the instruction budget,
 * so a pathological pattern ends with WARD_EBUDGET like any other loop.
 */

#define MAX_CAPTURES 32
#define MAX_DEPTH 200     /* recursion of the matcher, as Lua's MAXCCALLS */
#define STEP_BATCH 256    /* steps charged at once */
#define CAP_UNFINISHED (-1)
#define CAP_POSITION (-2)
#define SPECIALS "^$*+?.([%-"

typedef struct matcher {
    lua_State *L;
    const char *src, *src_end;
    const char *pat_end;
    int depth; /* remaining */
    int level; /* captures opened */
    uint64_t steps;
    struct {
        const char *init;
        ptrdiff_t len;
    } cap[MAX_CAPTURES];
} matcher;

static void charge_steps(matcher *m, uint64_t n)
{
    m->steps += n;
    if (m->steps >= STEP_BATCH) {
        uint64_t s = m->steps;
        m->steps = 0;
        wlua_charge(m->L, s);
    }
}

static void flush_steps(matcher *m)
{
    uint64_t s = m->steps;
    m->steps = 0;
    if (s > 0)
        wlua_charge(m->L, s);
}

static void matcher_init(matcher *m, lua_State *L, const char *s, size_t ls, const char *p,
                         size_t lp)
{
    m->L = L;
    m->src = s;
    m->src_end = s + ls;
    m->pat_end = p + lp;
    m->depth = MAX_DEPTH;
    m->level = 0;
    m->steps = 0;
}

static void matcher_reset(matcher *m)
{
    m->level = 0;
    m->depth = MAX_DEPTH;
}

/* Positions as string.find takes them: negative counts from the end. */
static size_t start_pos(lua_Integer pos, size_t len)
{
    if (pos > 0)
        return (size_t)pos;
    if (pos == 0 || pos < -(lua_Integer)len)
        return 1;
    return len + (size_t)pos + 1;
}

static size_t end_pos(lua_State *L, int arg, lua_Integer def, size_t len)
{
    lua_Integer pos = luaL_optinteger(L, arg, def);
    if (pos > (lua_Integer)len)
        return len;
    if (pos >= 0)
        return (size_t)pos;
    if (pos < -(lua_Integer)len)
        return 0;
    return len + (size_t)pos + 1;
}

/* ---- single character classes ---------------------------------------------------- */

/* The end of the character class starting at p ("x", "%a", "[...]"). */
static const char *class_end(matcher *m, const char *p)
{
    char c = *p++;
    if (c == '%') {
        if (p == m->pat_end)
            luaL_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c == '[') {
        if (*p == '^')
            p++;
        do { /* the first character of a set is literal, even ']' */
            if (p == m->pat_end)
                luaL_error(m->L, "malformed pattern (missing ']')");
            c = *p++;
            if (c == '%' && p < m->pat_end)
                p++;
        } while (*p != ']');
        return p + 1;
    }
    return p;
}

static bool class_has(int c, int cl)
{
    bool r;
    switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    case 'z': r = c == 0; break; /* deprecated, still in 5.4 */
    default: return cl == c;
    }
    return isupper(cl) ? !r : r;
}

/* c against the set [p .. ec), p at '[' and ec at its ']'. */
static bool set_has(int c, const char *p, const char *ec)
{
    bool in = true;
    if (p[1] == '^') {
        in = false;
        p++;
    }
    while (++p < ec) {
        if (*p == '%') {
            p++;
            if (class_has(c, (unsigned char)*p))
                return in;
        } else if (p[1] == '-' && p + 2 < ec) {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
                return in;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return in;
        }
    }
    return !in;
}

static bool single_match(const matcher *m, const char *s, const char *p, const char *ep)
{
    if (s >= m->src_end)
        return false;
    int c = (unsigned char)*s;
    switch (*p) {
    case '.': return true;
    case '%': return class_has(c, (unsigned char)p[1]);
    case '[': return set_has(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

/* ---- the matcher ------------------------------------------------------------------------ */

static const char *match(matcher *m, const char *s, const char *p);

static const char *greedy(matcher *m, const char *s, const char *p, const char *ep)
{
    ptrdiff_t n = 0;
    while (single_match(m, s + n, p, ep))
        n++;
    charge_steps(m, (uint64_t)n);
    for (; n >= 0; n--) {
        const char *r = match(m, s + n, ep + 1);
        if (r != NULL)
            return r;
    }
    return NULL;
}

static const char *lazy(matcher *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *r = match(m, s, ep + 1);
        if (r != NULL)
            return r;
        if (!single_match(m, s, p, ep))
            return NULL;
        s++;
    }
}

static const char *open_capture(matcher *m, const char *s, const char *p, ptrdiff_t what)
{
    if (m->level >= MAX_CAPTURES)
        luaL_error(m->L, "too many captures");
    m->cap[m->level].init = s;
    m->cap[m->level].len = what;
    m->level++;
    const char *r = match(m, s, p);
    if (r == NULL)
        m->level--;
    return r;
}

static const char *close_capture(matcher *m, const char *s, const char *p)
{
    int l = m->level - 1;
    while (l >= 0 && m->cap[l].len != CAP_UNFINISHED)
        l--;
    if (l < 0)
        luaL_error(m->L, "invalid pattern capture");
    m->cap[l].len = s - m->cap[l].init;
    const char *r = match(m, s, p);
    if (r == NULL)
        m->cap[l].len = CAP_UNFINISHED;
    return r;
}

/* %bxy at p (p points at x). */
static const char *balanced(matcher *m, const char *s, const char *p)
{
    if (p + 1 >= m->pat_end)
        luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->src_end || *s != *p)
        return NULL;
    char open = p[0], close = p[1];
    int depth = 1;
    const char *start = s;
    while (++s < m->src_end) {
        if (*s == close) {
            if (--depth == 0) {
                charge_steps(m, (uint64_t)(s - start));
                return s + 1;
            }
        } else if (*s == open) {
            depth++;
        }
    }
    charge_steps(m, (uint64_t)(s - start));
    return NULL;
}

static int capture_index(matcher *m, int c)
{
    int l = c - '1';
    if (l < 0 || l >= m->level || m->cap[l].len == CAP_UNFINISHED)
        luaL_error(m->L, "invalid capture index %%%d", l + 1);
    return l;
}

/* %1..%9: the text of an earlier capture again. */
static const char *back_reference(matcher *m, const char *s, int c)
{
    int l = capture_index(m, c);
    if (m->cap[l].len < 0)
        return NULL; /* a position capture has no text: it never matches */
    size_t len = (size_t)m->cap[l].len;
    charge_steps(m, len / 64);
    if ((size_t)(m->src_end - s) >= len && memcmp(m->cap[l].init, s, len) == 0)
        return s + len;
    return NULL;
}

static const char *match(matcher *m, const char *s, const char *p)
{
    if (m->depth-- == 0)
        luaL_error(m->L, "pattern too complex");
    charge_steps(m, 1);
    while (p != m->pat_end) {
        switch (*p) {
        case '(':
            s = p[1] == ')' ? open_capture(m, s, p + 2, CAP_POSITION)
                            : open_capture(m, s, p + 1, CAP_UNFINISHED);
            goto done;
        case ')':
            s = close_capture(m, s, p + 1);
            goto done;
        case '$':
            if (p + 1 == m->pat_end) {
                s = s == m->src_end ? s : NULL;
                goto done;
            }
            break;
        case '%':
            if (p[1] == 'b') {
                s = balanced(m, s, p + 2);
                if (s == NULL)
                    goto done;
                p += 4;
                continue;
            }
            if (p[1] == 'f') {
                p += 2;
                if (*p != '[')
                    luaL_error(m->L, "missing '[' after '%%f' in pattern");
                const char *ep = class_end(m, p);
                int prev = s == m->src ? 0 : (unsigned char)s[-1];
                int cur = s < m->src_end ? (unsigned char)*s : 0;
                if (!set_has(prev, p, ep - 1) && set_has(cur, p, ep - 1)) {
                    p = ep;
                    continue;
                }
                s = NULL;
                goto done;
            }
            if (isdigit((unsigned char)p[1])) {
                s = back_reference(m, s, (unsigned char)p[1]);
                if (s == NULL)
                    goto done;
                p += 2;
                continue;
            }
            break;
        default:
            break;
        }
        /* a single character class, maybe followed by a quantifier */
        const char *ep = class_end(m, p);
        if (!single_match(m, s, p, ep)) {
            if (*ep == '*' || *ep == '?' || *ep == '-') {
                p = ep + 1;
                continue;
            }
            s = NULL;
            goto done;
        }
        switch (*ep) {
        case '?': {
            const char *r = match(m, s + 1, ep + 1);
            if (r != NULL) {
                s = r;
                goto done;
            }
            p = ep + 1;
            continue;
        }
        case '+': s = greedy(m, s + 1, p, ep); goto done;
        case '*': s = greedy(m, s, p, ep); goto done;
        case '-': s = lazy(m, s, p, ep); goto done;
        default:
            s++;
            p = ep;
            continue;
        }
    }
done:
    m->depth++;
    return s;
}

/* ---- captures ---------------------------------------------------------------------------- */

/* Pushes capture i (the whole match s..e when there are no captures). */
static void push_capture(matcher *m, int i, const char *s, const char *e)
{
    if (i >= m->level) {
        if (i != 0)
            luaL_error(m->L, "invalid capture index %%%d", i + 1);
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    ptrdiff_t len = m->cap[i].len;
    if (len == CAP_UNFINISHED)
        luaL_error(m->L, "unfinished capture");
    if (len == CAP_POSITION)
        lua_pushinteger(m->L, (m->cap[i].init - m->src) + 1);
    else
        lua_pushlstring(m->L, m->cap[i].init, (size_t)len);
}

/* Pushes all captures (or the whole match when s != NULL and there are none). */
static int push_captures(matcher *m, const char *s, const char *e)
{
    int n = (m->level == 0 && s != NULL) ? 1 : m->level;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++)
        push_capture(m, i, s, e);
    return n;
}

/* ---- string.find / string.match ---------------------------------------------------------- */

static bool no_specials(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++)
        if (p[i] != '\0' && strchr(SPECIALS, p[i]) != NULL)
            return false;
    return true;
}

static int find_aux(lua_State *L, bool find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
        /* memmem is linear (two-way); charge what it may scan */
        wlua_charge(L, 1 + (ls - init + lp) / 64);
        const char *hit = memmem(s + init, ls - init, p, lp);
        if (hit != NULL) {
            lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
            lua_pushinteger(L, (lua_Integer)(hit - s + (ptrdiff_t)lp));
            return 2;
        }
        luaL_pushfail(L);
        return 1;
    }
    matcher m;
    bool anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    matcher_init(&m, L, s, ls, p, lp);
    const char *s1 = s + init;
    do {
        matcher_reset(&m);
        const char *e = match(&m, s1, p);
        if (e != NULL) {
            flush_steps(&m);
            if (find) {
                lua_pushinteger(L, (lua_Integer)(s1 - s) + 1);
                lua_pushinteger(L, (lua_Integer)(e - s));
                return push_captures(&m, NULL, NULL) + 2;
            }
            return push_captures(&m, s1, e);
        }
    } while (s1++ < m.src_end && !anchor);
    flush_steps(&m);
    luaL_pushfail(L);
    return 1;
}

static int s_find(lua_State *L)
{
    return find_aux(L, true);
}

static int s_match(lua_State *L)
{
    return find_aux(L, false);
}

/* ---- string.gmatch ------------------------------------------------------------------------- */

typedef struct gmatch_state {
    const char *src;       /* where the next search starts */
    const char *p;         /* the pattern */
    const char *lastmatch; /* end of the last match (no empty match right there) */
    matcher m;
} gmatch_state;

static int gmatch_next(lua_State *L)
{
    gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
    g->m.L = L;
    for (const char *src = g->src; src <= g->m.src_end; src++) {
        matcher_reset(&g->m);
        const char *e = match(&g->m, src, g->p);
        if (e != NULL && e != g->lastmatch) {
            g->src = g->lastmatch = e;
            flush_steps(&g->m);
            return push_captures(&g->m, src, e);
        }
    }
    g->src = g->m.src_end + 1;
    flush_steps(&g->m);
    return 0;
}

static int s_gmatch(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
    if (init > ls)
        init = ls + 1;
    lua_settop(L, 2); /* the closure keeps s and p alive as upvalues */
    gmatch_state *g = lua_newuserdatauv(L, sizeof(*g), 0);
    matcher_init(&g->m, L, s, ls, p, lp);
    g->src = s + init;
    g->p = p;
    g->lastmatch = NULL;
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* ---- string.gsub --------------------------------------------------------------------------- */

/* Appends the replacement string (arg 3) with its %0-%9 and %% expanded. */
static void add_template(matcher *m, luaL_Buffer *b, const char *s, const char *e)
{
    lua_State *L = m->L;
    size_t l;
    const char *r = lua_tolstring(L, 3, &l);
    const char *pct;
    while ((pct = memchr(r, '%', l)) != NULL) {
        luaL_addlstring(b, r, (size_t)(pct - r));
        pct++; /* the replacement string is NUL-terminated: *pct is readable */
        if (*pct == '%') {
            luaL_addchar(b, '%');
        } else if (isdigit((unsigned char)*pct)) {
            if (*pct == '0') {
                luaL_addlstring(b, s, (size_t)(e - s));
            } else {
                push_capture(m, *pct - '1', s, e);
                luaL_tolstring(L, -1, NULL);
                lua_remove(L, -2);
                luaL_addvalue(b);
            }
        } else {
            luaL_error(L, "invalid use of '%%' in replacement string");
        }
        l -= (size_t)(pct + 1 - r);
        r = pct + 1;
    }
    luaL_addlstring(b, r, l);
}

/* Appends the replacement of the match s..e; false when the original is kept. */
static bool add_replacement(matcher *m, luaL_Buffer *b, const char *s, const char *e, int tr)
{
    lua_State *L = m->L;
    if (tr == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e);
        lua_call(L, n, 1);
    } else if (tr == LUA_TTABLE) {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    } else {
        add_template(m, b, s, e);
        return true;
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return false;
    }
    if (!lua_isstring(L, -1))
        luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return true;
}

static int s_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *src = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    const char *lastmatch = NULL;
    int tr = lua_type(L, 3);
    lua_Integer max_n = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L,
                     tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION ||
                         tr == LUA_TTABLE,
                     3, "string/function/table");
    bool anchor = lp > 0 && *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    matcher m;
    matcher_init(&m, L, src, ls, p, lp);
    lua_Integer n = 0;
    bool changed = false;
    while (n < max_n) {
        matcher_reset(&m);
        const char *e = match(&m, src, p);
        if (e != NULL && e != lastmatch) {
            n++;
            changed = add_replacement(&m, &b, src, e, tr) || changed;
            src = lastmatch = e;
        } else if (src < m.src_end) {
            luaL_addchar(&b, *src++);
        } else {
            break;
        }
        if (anchor)
            break;
    }
    flush_steps(&m);
    if (!changed) {
        lua_pushvalue(L, 1);
    } else {
        luaL_addlstring(&b, src, (size_t)(m.src_end - src));
        luaL_pushresult(&b);
    }
    lua_pushinteger(L, n);
    return 2;
}

/* ---- string.rep / string.byte ---------------------------------------------------------------- */

static int s_rep(lua_State *L)
{
    size_t l, lsep;
    const char *s = luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || (l | lsep) == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    size_t max = (size_t)LUA_MAXINTEGER < SIZE_MAX ? (size_t)LUA_MAXINTEGER : SIZE_MAX;
    if (l + lsep < l || l + lsep > max / (lua_Unsigned)n)
        return luaL_error(L, "resulting string too large");
    size_t total = (size_t)n * l + (size_t)(n - 1) * lsep;
    luaL_Buffer b;
    char *d = luaL_buffinitsize(L, &b, total); /* the memory cap applies first */
    wlua_charge(L, (uint64_t)n / 16);           /* the bytes were charged by the allocator */
    for (lua_Integer i = 0; i < n; i++) {
        memcpy(d, s, l);
        d += l;
        if (lsep > 0 && i + 1 < n) {
            memcpy(d, sep, lsep);
            d += lsep;
        }
    }
    luaL_pushresultsize(&b, total);
    return 1;
}

static int s_byte(lua_State *L)
{
    size_t l;
    const char *s = luaL_checklstring(L, 1, &l);
    lua_Integer pi = luaL_optinteger(L, 2, 1);
    size_t first = start_pos(pi, l);
    size_t last = end_pos(L, 3, pi, l);
    if (first > last)
        return 0;
    if (last - first >= (size_t)INT_MAX)
        return luaL_error(L, "string slice too long");
    int n = (int)(last - first) + 1;
    wlua_charge(L, (uint64_t)n);
    luaL_checkstack(L, n, "string slice too long");
    for (int i = 0; i < n; i++)
        lua_pushinteger(L, (unsigned char)s[first + (size_t)i - 1]);
    return n;
}

/* ---- charged wrappers for linear library functions that do not allocate -------------------- */

/* Upvalue 1: the wrapped function. Charges the bytes of the string arguments
 * (the functions scan them) before calling it. */
static int charged_call(lua_State *L)
{
    int n = lua_gettop(L);
    uint64_t bytes = 0;
    for (int i = 1; i <= n; i++)
        if (lua_type(L, i) == LUA_TSTRING)
            bytes += lua_rawlen(L, i);
    wlua_charge(L, 1 + bytes / 64);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

static void wrap_charged(lua_State *L, int table, const char *name)
{
    lua_getfield(L, table, name);
    if (lua_type(L, -1) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return;
    }
    lua_pushcclosure(L, charged_call, 1);
    lua_setfield(L, table, name);
}

static const luaL_Reg budgeted[] = {
    {"find", s_find}, {"match", s_match}, {"gmatch", s_gmatch}, {"gsub", s_gsub},
    {"rep", s_rep},   {"byte", s_byte},   {NULL, NULL},
};

void wlua_strlib_patch(lua_State *L, int string_table)
{
    string_table = lua_absindex(L, string_table);
    lua_pushvalue(L, string_table);
    luaL_setfuncs(L, budgeted, 0);
    lua_pop(L, 1);
    wrap_charged(L, string_table, "pack");
    wrap_charged(L, string_table, "packsize");
    wrap_charged(L, string_table, "unpack");
}

void wlua_utf8lib_patch(lua_State *L, int utf8_table)
{
    utf8_table = lua_absindex(L, utf8_table);
    wrap_charged(L, utf8_table, "len");
    wrap_charged(L, utf8_table, "codepoint");
    wrap_charged(L, utf8_table, "offset");
}
