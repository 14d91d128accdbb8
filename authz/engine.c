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
    int decide_ref;
    int explain_ref;
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

/* Loads b into a new Lua state and finds its entry points. */
static int engine_load(authz_bundle *b, wlua_state **st_out, int *decide_ref, int *explain_ref,
                       ward_err *err)
{
    wlua_state *st = NULL;
    int rc = 0;
    WARD_TRY(wlua_new(&b->opts.limits, &st, err));
    char name[80];
    snprintf(name, sizeof(name), "=policy bundle %.12s", b->revision);
    WARD_TRY(wlua_load(st, name, b->lua, b->lua_len, err));
    lua_State *L = wlua_L(st);
    if (!lua_istable(L, -1)) {
        ward_err_set(err, "policy bundle did not return a table");
        rc = WARD_ERESULT;
        goto fail;
    }
    lua_getfield(L, -1, "decide");
    lua_getfield(L, -2, "explain");
    if (!lua_isfunction(L, -1) || !lua_isfunction(L, -2)) {
        ward_err_set(err, "policy bundle lacks decide/explain");
        rc = WARD_ERESULT;
        goto fail;
    }
    *explain_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    *decide_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
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
    int rc = engine_load(b, &e->st, &e->decide_ref, &e->explain_ref, err);
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
    wlua_free(e->st);
    authz_bundle_unref(e->bundle);
    free(e);
}

int authz_engine_swap(authz_engine *e, authz_bundle *b, ward_err *err)
{
    wlua_state *st;
    int d, x;
    int rc = engine_load(b, &st, &d, &x, err);
    if (rc < 0)
        return rc; /* the old bundle keeps serving */
    wlua_free(e->st);
    authz_bundle_unref(e->bundle);
    authz_bundle_ref(b);
    e->st = st;
    e->bundle = b;
    e->decide_ref = d;
    e->explain_ref = x;
    return 0;
}

/* ---- the request table ---- */

static void set_str(lua_State *L, const char *key, authz_str s)
{
    if (s.ptr == NULL)
        return;
    lua_pushlstring(L, s.ptr, s.len);
    lua_setfield(L, -2, key);
}

static void set_int(lua_State *L, const char *key, int v)
{
    if (v < 0)
        return;
    lua_pushinteger(L, v);
    lua_setfield(L, -2, key);
}

/* Header names lowercased; repeated headers joined with ", " as RFC 9110 allows. */
static void push_headers(lua_State *L, const authz_request *req)
{
    lua_createtable(L, 0, (int)(req->n_headers < 64 ? req->n_headers : 64));
    for (size_t i = 0; i < req->n_headers; i++) {
        const authz_header *h = &req->headers[i];
        if (h->name.ptr == NULL || h->value.ptr == NULL)
            continue;
        luaL_Buffer lb;
        char *p = luaL_buffinitsize(L, &lb, h->name.len);
        for (size_t j = 0; j < h->name.len; j++) {
            char ch = h->name.ptr[j];
            p[j] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        luaL_pushresultsize(&lb, h->name.len);
        lua_pushvalue(L, -1);
        if (lua_rawget(L, -3) == LUA_TSTRING) {
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
}

static void push_request(lua_State *L, const authz_request *req)
{
    lua_createtable(L, 0, 20);
    set_str(L, "source_principal", req->source_principal);
    if (req->source_principal.ptr != NULL) {
        ward_spiffe_id id;
        if (ward_spiffe_id_parse(req->source_principal.ptr, req->source_principal.len, &id,
                                 NULL) == 0) {
            set_str(L, "source_trust_domain", (authz_str){id.td, id.td_len});
            const char *ns;
            size_t ns_len;
            if (ward_spiffe_id_namespace(&id, &ns, &ns_len))
                set_str(L, "source_namespace", (authz_str){ns, ns_len});
        }
    }
    set_str(L, "source_ip", req->source_ip);
    set_int(L, "source_port", req->source_port);
    set_str(L, "destination_service", req->destination_service);
    set_str(L, "destination_principal", req->destination_principal);
    set_int(L, "destination_port", req->destination_port);
    set_str(L, "method", req->method);
    if (req->host.ptr != NULL) { /* hosts match case-insensitively */
        luaL_Buffer lb;
        char *p = luaL_buffinitsize(L, &lb, req->host.len);
        for (size_t j = 0; j < req->host.len; j++) {
            char ch = req->host.ptr[j];
            p[j] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        luaL_pushresultsize(&lb, req->host.len);
        lua_setfield(L, -2, "host");
    }
    set_str(L, "path", req->path);
    set_str(L, "query", req->query);
    set_str(L, "protocol", req->protocol);
    if (req->mtls >= 0) {
        lua_pushstring(L, req->mtls ? "true" : "false");
        lua_setfield(L, -2, "mtls");
    }
    set_str(L, "sni", req->sni);
    int64_t t = req->time_unix;
    if (t == 0)
        t = (int64_t)time(NULL);
    lua_pushinteger(L, (lua_Integer)t);
    lua_setfield(L, -2, "time_unix");
    push_headers(L, req);
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
    free(d->policy);
    free(d->reason);
    free(d->dry_run_policy);
    free(d->deny_body);
    free(d->explain_json);
    authz_decision_init(d);
}

/* Fills d as a deny caused by an engine failure. */
static int deny_failure(authz_decision *d, const char *what, const char *detail)
{
    authz_decision_dispose(d);
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_printf(&b, "%s: %s", what, detail);
    d->reason = ward_buf_steal(&b);
    return d->reason ? 0 : WARD_ENOMEM;
}

static int opt_string(lua_State *L, int idx, char **out)
{
    int t = lua_type(L, idx);
    if (t == LUA_TNIL)
        return 0;
    if (t != LUA_TSTRING)
        return WARD_ERESULT;
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    *out = strndup(s, len);
    return *out ? 0 : WARD_ENOMEM;
}

static int opt_int(lua_State *L, int idx, int lo, int hi, int *out)
{
    if (lua_isnil(L, idx))
        return 0;
    if (!lua_isinteger(L, idx))
        return WARD_ERESULT;
    lua_Integer v = lua_tointeger(L, idx);
    if (v < lo || v > hi)
        return WARD_ERESULT;
    *out = (int)v;
    return 0;
}

/* Reads decide()'s ten results (at -10..-1) strictly: anything unexpected is a bad result. */
static int read_results(lua_State *L, authz_decision *d)
{
    int rc = 0;
    const int base = lua_gettop(L) - 9;
    if (lua_type(L, base) != LUA_TBOOLEAN || lua_type(L, base + 3) != LUA_TSTRING ||
        lua_type(L, base + 4) != LUA_TBOOLEAN)
        return WARD_ERESULT;
    bool allow = lua_toboolean(L, base);
    WARD_TRY(opt_string(L, base + 1, &d->policy));
    WARD_TRY(opt_int(L, base + 2, 0, 1 << 30, &d->rule));
    WARD_TRY(opt_string(L, base + 3, &d->reason));
    d->audit = lua_toboolean(L, base + 4);
    if (!lua_isnil(L, base + 5)) {
        const char *dry = lua_tostring(L, base + 5);
        if (lua_type(L, base + 5) != LUA_TSTRING ||
            (strcmp(dry, "allow") != 0 && strcmp(dry, "deny") != 0))
            return WARD_ERESULT;
        d->has_dry_run = true;
        d->dry_run_decision = strcmp(dry, "allow") == 0 ? AUTHZ_ALLOW : AUTHZ_DENY;
        WARD_TRY(opt_string(L, base + 6, &d->dry_run_policy));
        WARD_TRY(opt_int(L, base + 7, 0, 1 << 30, &d->dry_run_rule));
    }
    WARD_TRY(opt_int(L, base + 8, 100, 599, &d->deny_status));
    WARD_TRY(opt_string(L, base + 9, &d->deny_body));
    /* the verdict is set last: a malformed result above leaves the deny in place */
    d->decision = allow ? AUTHZ_ALLOW : AUTHZ_DENY;
    return 0;
fail:
    return rc;
}

static int run_explain(authz_engine *e, const authz_request *req, authz_decision *d,
                       ward_err *err)
{
    lua_State *L = wlua_L(e->st);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->explain_ref);
    push_request(L, req);
    int rc = wlua_call(e->st, 1, 1, err);
    if (rc < 0)
        return rc;
    ward_buf json;
    ward_buf_init(&json);
    rc = authz_lua_to_json(L, -1, &json, err);
    lua_pop(L, 1);
    if (rc < 0) {
        ward_buf_dispose(&json);
        return rc;
    }
    d->explain_json = ward_buf_steal(&json);
    return 0;
}

int authz_decide(authz_engine *e, const authz_request *req, bool explain, authz_decision *out)
{
    ward_err err;
    authz_decision_init(out);
    lua_State *L = wlua_L(e->st);
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->decide_ref);
    push_request(L, req);
    int rc = wlua_call(e->st, 1, 10, &err);
    if (rc < 0)
        return deny_failure(out, "policy engine error", err.msg);
    rc = read_results(L, out);
    lua_settop(L, top);
    if (rc == WARD_ENOMEM) {
        authz_decision_dispose(out);
        return rc;
    }
    if (rc < 0)
        return deny_failure(out, "policy engine error", "malformed decision from the policy bundle");
    if (explain && run_explain(e, req, out, &err) < 0)
        return deny_failure(out, "policy engine error (explain)", err.msg);
    return 0;
}
