/* engine.c - compiled bundles, per-thread engines, and the decide call (fail closed) */
#include "authz/authz.h"

#include <lauxlib.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authz/authz_int.h"

struct authz_bundle {
    atomic_int refs;
    char *lua;
    size_t lua_len;
    char *revision;
    authz_options opts;
};

struct authz_engine {
    wlua_state *st;
    authz_bundle *bundle;
    program *prog;
    char reason[1100]; /* the reason of a failure, for the decision it denies */
};

/* ---- bundles ---- */

int authz_bundle_new(const policy_set *set, const authz_options *opts, authz_bundle **out,
                     ward_err *err)
{
    int rc = 0;
    ward_buf src;
    ward_buf_init(&src);
    authz_bundle *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return WARD_ENOMEM;
    if (opts != NULL)
        b->opts = *opts;
    /* compiled rules are bounded by construction; only `lua:` conditions are metered */
    b->opts.limits.meter_untrusted_only = true;
    policy_compile_opts copts = {.default_allow = b->opts.default_allow};
    WARD_TRY(policy_set_compile(set, &copts, &src, err));
    b->lua_len = src.len;
    b->lua = ward_buf_steal(&src);
    b->revision = strdup(policy_set_revision(set));
    if (b->revision == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    atomic_init(&b->refs, 1);
    *out = b;
    return 0;
fail:
    ward_buf_dispose(&src);
    free(b->lua);
    free(b);
    return rc;
}

void authz_bundle_ref(authz_bundle *b)
{
    atomic_fetch_add(&b->refs, 1);
}

void authz_bundle_unref(authz_bundle *b)
{
    if (b == NULL || atomic_fetch_sub(&b->refs, 1) != 1)
        return;
    free(b->lua);
    free(b->revision);
    free(b);
}

const char *authz_bundle_revision(const authz_bundle *b)
{
    return b->revision;
}

const char *authz_bundle_lua(const authz_bundle *b, size_t *len)
{
    if (len != NULL)
        *len = b->lua_len;
    return b->lua;
}

/* ---- engines ---- */

/* Loads b into a new Lua state: the bundle runs once in the sandbox and its
 * result becomes the program. */
static int engine_load(authz_bundle *b, wlua_state **st_out, program **prog_out, ward_err *err)
{
    wlua_state *st = NULL;
    int rc = 0;
    WARD_TRY(wlua_new(&b->opts.limits, &st, err));
    char name[80];
    snprintf(name, sizeof(name), "=policy bundle %.12s", b->revision);
    WARD_TRY(wlua_load(st, name, b->lua, b->lua_len, err));
    lua_State *L = wlua_L(st);
    rc = program_build(L, prog_out, err);
    lua_pop(L, 1);
    WARD_TRY(rc);
    lua_gc(L, LUA_GCCOLLECT); /* the bundle's tables now live on as the program */
    *st_out = st;
    return 0;
fail:
    wlua_free(st);
    return rc;
}

int authz_engine_new(authz_bundle *b, authz_engine **out, ward_err *err)
{
    authz_engine *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return WARD_ENOMEM;
    int rc = engine_load(b, &e->st, &e->prog, err);
    if (rc < 0) {
        free(e);
        return rc;
    }
    authz_bundle_ref(b);
    e->bundle = b;
    *out = e;
    return 0;
}

void authz_engine_free(authz_engine *e)
{
    if (e == NULL)
        return;
    program_free(e->prog, wlua_L(e->st));
    wlua_free(e->st);
    authz_bundle_unref(e->bundle);
    free(e);
}

int authz_engine_swap(authz_engine *e, authz_bundle *b, ward_err *err)
{
    wlua_state *st;
    program *prog;
    int rc = engine_load(b, &st, &prog, err);
    if (rc < 0)
        return rc; /* the old bundle keeps serving */
    program_free(e->prog, wlua_L(e->st));
    wlua_free(e->st);
    authz_bundle_unref(e->bundle);
    authz_bundle_ref(b);
    e->st = st;
    e->prog = prog;
    e->bundle = b;
    return 0;
}

/* ---- `lua:` conditions: the request as nested tables, as `req` ---- */

static void set_str(lua_State *L, const char *key, authz_str s)
{
    if (s.ptr == NULL)
        return;
    lua_pushlstring(L, s.ptr, s.len);
    lua_setfield(L, -2, key);
}

static void set_int(lua_State *L, const char *key, int64_t v)
{
    if (v < 0)
        return;
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, key);
}

static void push_lower(lua_State *L, const char *s, size_t len)
{
    luaL_Buffer lb;
    char *p = luaL_buffinitsize(L, &lb, len);
    for (size_t j = 0; j < len; j++)
        p[j] = (s[j] >= 'A' && s[j] <= 'Z') ? (char)(s[j] + 32) : s[j];
    luaL_pushresultsize(&lb, len);
}

static void push_time(lua_State *L, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    lua_createtable(L, 0, 8);
    set_int(L, "unix", t);
    if (gmtime_r(&tt, &tm) == NULL)
        return;
    set_int(L, "year", tm.tm_year + 1900);
    set_int(L, "month", tm.tm_mon + 1);
    set_int(L, "day", tm.tm_mday);
    set_int(L, "hour", tm.tm_hour);
    set_int(L, "minute", tm.tm_min);
    set_int(L, "second", tm.tm_sec);
    set_int(L, "weekday", tm.tm_wday); /* 0 = Sunday */
}

/* req = {source = {...}, destination = {...}, request = {...}, connection = {...}, time = {...}} */
static void push_view(lua_State *L, const authz_request *r)
{
    lua_createtable(L, 0, 5);
    lua_createtable(L, 0, 5);
    set_str(L, "principal", r->source_principal);
    set_str(L, "ip", r->source_ip);
    set_int(L, "port", r->source_port);
    ward_spiffe_id id;
    if (r->source_principal.ptr != NULL &&
        ward_spiffe_id_parse(r->source_principal.ptr, r->source_principal.len, &id, NULL) == 0) {
        set_str(L, "trustDomain", (authz_str){id.td, id.td_len});
        authz_str ns;
        if (ward_spiffe_id_namespace(&id, &ns.ptr, &ns.len))
            set_str(L, "namespace", ns);
    }
    lua_setfield(L, -2, "source");
    lua_createtable(L, 0, 3);
    set_str(L, "service", r->destination_service);
    set_str(L, "principal", r->destination_principal);
    set_int(L, "port", r->destination_port);
    lua_setfield(L, -2, "destination");
    lua_createtable(L, 0, 7);
    set_str(L, "method", r->method);
    if (r->host.ptr != NULL) {
        push_lower(L, r->host.ptr, r->host.len);
        lua_setfield(L, -2, "host");
    }
    set_str(L, "path", r->path);
    set_str(L, "query", r->query);
    set_str(L, "protocol", r->protocol);
    lua_createtable(L, 0, (int)(r->n_headers < 64 ? r->n_headers : 64));
    for (size_t i = 0; i < r->n_headers; i++) {
        const authz_header *h = &r->headers[i];
        if (h->name.ptr == NULL || h->value.ptr == NULL)
            continue;
        push_lower(L, h->name.ptr, h->name.len);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) == LUA_TSTRING) { /* repeated: joined as RFC 9110 allows */
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, h->value.ptr, h->value.len);
            lua_concat(L, 3);
        } else {
            lua_pop(L, 1);
            lua_pushlstring(L, h->value.ptr, h->value.len);
        }
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
    lua_setfield(L, -2, "request");
    lua_createtable(L, 0, 2);
    if (r->mtls >= 0) {
        lua_pushboolean(L, r->mtls);
        lua_setfield(L, -2, "mtls");
    }
    set_str(L, "sni", r->sni);
    lua_setfield(L, -2, "connection");
    push_time(L, r->time_unix != 0 ? r->time_unix : (int64_t)time(NULL));
    lua_setfield(L, -2, "time");
}

typedef struct cond_call {
    authz_engine *e;
    const authz_request *req;
} cond_call;

/* Runs one condition (metered: ward.condition's functions always are). */
static int run_condition(void *data, int ref, const char *field, ward_err *err)
{
    cond_call *cc = data;
    lua_State *L = wlua_L(cc->e->st);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    push_view(L, cc->req);
    int rc = wlua_call(cc->e->st, 1, 1, err);
    if (rc < 0)
        return rc;
    int t = lua_type(L, -1);
    bool holds = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (t == LUA_TBOOLEAN || t == LUA_TNIL)
        return holds;
    ward_err_set(err, "%s: lua condition returned a %s, not a boolean", field, lua_typename(L, t));
    return WARD_ERESULT;
}

/* ---- decisions ---- */

void authz_decision_init(authz_decision *d)
{
    memset(d, 0, sizeof(*d));
    d->decision = AUTHZ_DENY;
    d->rule = -1;
    d->dry_run_rule = -1;
    d->deny_status = 403;
}

void authz_decision_dispose(authz_decision *d)
{
    free(d->explain_json);
    authz_decision_init(d);
}

int authz_decide(authz_engine *e, const authz_request *req, bool explain, authz_decision *out)
{
    ward_err err;
    ward_buf trace;
    ward_buf_init(&trace);
    authz_decision_init(out);
    cond_call cc = {e, req};
    int rc = program_decide(e->prog, req, run_condition, &cc, out, explain ? &trace : NULL, &err);
    if (rc < 0) {
        /* fail closed: whatever was decided so far is discarded */
        ward_buf_dispose(&trace);
        authz_decision_init(out);
        snprintf(e->reason, sizeof(e->reason), "policy engine error: %.1000s", err.msg);
        out->reason = e->reason;
        return 0;
    }
    if (explain)
        out->explain_json = ward_buf_steal(&trace);
    return 0;
}
