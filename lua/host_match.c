/* host_match.c - host functions on single strings: path templates, prefix/suffix, SPIFFE IDs, lower */
#include "lua/wlua_int.h"

#include <lauxlib.h>
#include <string.h>

/* ---- shared helpers for host functions ------------------------------------------ */

const char *wlua_opt_subject(lua_State *L, int idx, size_t *len)
{
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING || t == LUA_TNUMBER)
        return lua_tolstring(L, idx, len);
    if (t != LUA_TNIL && t != LUA_TNONE)
        luaL_typeerror(L, idx, "string or nil");
    *len = 0;
    return NULL;
}

void *wlua_check_host(lua_State *L, int idx, const char *tname)
{
    void *p = lua_touserdata(L, idx);
    if (p != NULL && lua_getmetatable(L, idx)) {
        int same = lua_rawequal(L, -1, lua_upvalueindex(1));
        lua_pop(L, 1);
        if (same)
            return p;
    }
    luaL_typeerror(L, idx, tname);
    return NULL;
}

void wlua_new_host_mt(lua_State *L, const char *tname, lua_CFunction gc)
{
    luaL_newmetatable(L, tname);
    if (gc != NULL) {
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
}

/* ---- path templates ----------------------------------------------------------------- */

enum { SEG_LITERAL, SEG_ONE, SEG_REST };

typedef struct tseg {
    size_t off, len;
    int kind;
} tseg;

typedef struct tmpl {
    size_t n;
    tseg *segs;
    char *text;
} tmpl;

/* ward.template(tpl): segments split on '/'; "{*}" is one non-empty segment,
 * "{**}" any number of segments (possibly none) and must come last. */
static int h_template(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '/';
    if (n > (SIZE_MAX - sizeof(tmpl) - len - 1) / sizeof(tseg))
        return luaL_error(L, "ward.template: template too long");
    tmpl *t = lua_newuserdatauv(L, sizeof(tmpl) + n * sizeof(tseg) + len + 1, 0);
    t->n = n;
    t->segs = (tseg *)(t + 1);
    t->text = (char *)(t->segs + n);
    memcpy(t->text, s, len);
    t->text[len] = '\0';
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '/')
            continue;
        const char *seg = s + start;
        size_t sl = i - start;
        tseg *g = &t->segs[k];
        g->off = start;
        g->len = sl;
        if (sl == 3 && memcmp(seg, "{*}", 3) == 0) {
            g->kind = SEG_ONE;
        } else if (sl == 4 && memcmp(seg, "{**}", 4) == 0) {
            if (k != n - 1)
                return luaL_error(L, "ward.template: \"{**}\" must be the last segment");
            g->kind = SEG_REST;
        } else if (memmem(seg, sl, "{*", 2) != NULL) {
            return luaL_error(L, "ward.template: \"{*}\" and \"{**}\" must be whole path segments");
        } else {
            g->kind = SEG_LITERAL;
        }
        k++;
        start = i + 1;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
    return 1;
}

static bool tmpl_match(const tmpl *t, const char *p, size_t len)
{
    const char *end = p + len;
    bool more = true; /* a path always has at least one (maybe empty) segment */
    for (size_t i = 0; i < t->n; i++) {
        const tseg *g = &t->segs[i];
        if (g->kind == SEG_REST)
            return true;
        if (!more)
            return false;
        const char *slash = memchr(p, '/', (size_t)(end - p));
        size_t sl = (size_t)((slash != NULL ? slash : end) - p);
        if (g->kind == SEG_ONE) {
            if (sl == 0)
                return false;
        } else if (sl != g->len || memcmp(p, t->text + g->off, sl) != 0) {
            return false;
        }
        if (slash != NULL) {
            p = slash + 1;
        } else {
            p = end;
            more = false;
        }
    }
    return !more;
}

static int h_template_match(lua_State *L)
{
    const tmpl *t = wlua_check_host(L, 1, "ward.template");
    size_t len;
    const char *p = wlua_opt_subject(L, 2, &len);
    lua_pushboolean(L, p != NULL && tmpl_match(t, p, len));
    return 1;
}

/* ---- prefix / suffix (no allocation) ------------------------------------------------- */

static int h_prefix(lua_State *L)
{
    size_t sl, pl;
    const char *s = wlua_opt_subject(L, 1, &sl);
    const char *p = luaL_checklstring(L, 2, &pl);
    lua_pushboolean(L, s != NULL && pl <= sl && memcmp(s, p, pl) == 0);
    return 1;
}

static int h_suffix(lua_State *L)
{
    size_t sl, pl;
    const char *s = wlua_opt_subject(L, 1, &sl);
    const char *p = luaL_checklstring(L, 2, &pl);
    lua_pushboolean(L, s != NULL && pl <= sl && memcmp(s + sl - pl, p, pl) == 0);
    return 1;
}

/* ---- SPIFFE IDs ------------------------------------------------------------------------ */

/* ward.spiffe(id) -> trust_domain, path, namespace|nil; nil when invalid. */
static int h_spiffe(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING) {
        lua_pushnil(L);
        return 1;
    }
    size_t len;
    const char *s = lua_tolstring(L, 1, &len);
    ward_spiffe_id id;
    if (ward_spiffe_id_parse(s, len, &id, NULL) < 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, id.td, id.td_len);
    lua_pushlstring(L, id.path, id.path_len);
    const char *ns;
    size_t ns_len;
    if (ward_spiffe_id_namespace(&id, &ns, &ns_len))
        lua_pushlstring(L, ns, ns_len);
    else
        lua_pushnil(L);
    return 3;
}

/* ---- lower ------------------------------------------------------------------------------- */

/* ward.lower(s): ASCII lowercase; returns s itself when it has no uppercase. */
static int h_lower(lua_State *L)
{
    size_t len;
    const char *s = wlua_opt_subject(L, 1, &len);
    if (s == NULL) {
        lua_pushnil(L);
        return 1;
    }
    size_t i = 0;
    while (i < len && !(s[i] >= 'A' && s[i] <= 'Z'))
        i++;
    if (i == len) {
        lua_settop(L, 1);
        return 1;
    }
    luaL_Buffer b;
    char *d = luaL_buffinitsize(L, &b, len);
    memcpy(d, s, i);
    for (; i < len; i++)
        d[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    luaL_pushresultsize(&b, len);
    return 1;
}

static const luaL_Reg template_fns[] = {
    {"template", h_template},
    {"template_match", h_template_match},
    {NULL, NULL},
};

static const luaL_Reg plain_fns[] = {
    {"prefix", h_prefix}, {"suffix", h_suffix}, {"spiffe", h_spiffe},
    {"lower", h_lower},   {NULL, NULL},
};

void wlua_host_match(lua_State *L)
{
    wlua_new_host_mt(L, "ward.template", NULL);
    luaL_setfuncs(L, template_fns, 1);
    luaL_setfuncs(L, plain_fns, 0);
}
