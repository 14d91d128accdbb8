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

/* Strings a decision points at, owned by the engine until its next decision. */
typedef struct decision_text {
    char policy[512];
    char dry_run_policy[512];
    char reason[1024];
    char deny_body[4100];
} decision_text;

struct authz_engine {
    wlua_state *st;
    authz_bundle *bundle;
    int decide_ref;
    int explain_ref;
    int request_ref; /* the request table, reused by every decision */
    unsigned uses;   /* the slots the bundle reads (policy_slot bits) */
    decision_text text;
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

/* Loads b into a new Lua state and finds its entry points. */
static int engine_load(authz_bundle *b, wlua_state **st_out, int refs[3], unsigned *uses_out,
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
    lua_getfield(L, -1, "uses");
    if (!lua_isinteger(L, -1)) {
        ward_err_set(err, "policy bundle lacks uses");
        rc = WARD_ERESULT;
        goto fail;
    }
    *uses_out = (unsigned)lua_tointeger(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, -1, "decide");
    lua_getfield(L, -2, "explain");
    if (!lua_isfunction(L, -1) || !lua_isfunction(L, -2)) {
        ward_err_set(err, "policy bundle lacks decide/explain");
        rc = WARD_ERESULT;
        goto fail;
    }
    refs[1] = luaL_ref(L, LUA_REGISTRYINDEX);
    refs[0] = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    lua_createtable(L, POLICY_SLOT_COUNT, 0);
    refs[2] = luaL_ref(L, LUA_REGISTRYINDEX);
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
    int refs[3];
    unsigned u;
    int rc = engine_load(b, &e->st, refs, &u, err);
    if (rc < 0) {
        free(e);
        return rc;
    }
    authz_bundle_ref(b);
    e->bundle = b;
    e->decide_ref = refs[0];
    e->explain_ref = refs[1];
    e->request_ref = refs[2];
    e->uses = u;
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
    int refs[3];
    unsigned u;
    int rc = engine_load(b, &st, refs, &u, err);
    if (rc < 0)
        return rc; /* the old bundle keeps serving */
    wlua_free(e->st);
    authz_bundle_unref(e->bundle);
    authz_bundle_ref(b);
    e->st = st;
    e->bundle = b;
    e->decide_ref = refs[0];
    e->explain_ref = refs[1];
    e->request_ref = refs[2];
    e->uses = u;
    return 0;
}

/* ---- the request table ---- */

/* Each slot the bundle reads is written on every decision (nil when absent),
 * so the reused table never carries a value over from the previous request;
 * slots it never reads are never written. */
static inline bool uses(const authz_engine *e, policy_slot s)
{
    return (e->uses >> s) & 1u;
}

static void set_str(lua_State *L, policy_slot slot, authz_str s)
{
    if (s.ptr == NULL)
        lua_pushnil(L);
    else
        lua_pushlstring(L, s.ptr, s.len);
    lua_rawseti(L, -2, slot);
}

static void set_int(lua_State *L, policy_slot slot, int v)
{
    if (v < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, v);
    lua_rawseti(L, -2, slot);
}

static void push_lower(lua_State *L, const char *s, size_t len)
{
    char small[256];
    if (len > sizeof(small)) {
        luaL_Buffer lb;
        char *p = luaL_buffinitsize(L, &lb, len);
        for (size_t j = 0; j < len; j++)
            p[j] = (s[j] >= 'A' && s[j] <= 'Z') ? (char)(s[j] + 32) : s[j];
        luaL_pushresultsize(&lb, len);
        return;
    }
    for (size_t j = 0; j < len; j++)
        small[j] = (s[j] >= 'A' && s[j] <= 'Z') ? (char)(s[j] + 32) : s[j];
    lua_pushlstring(L, small, len);
}

/* Header names lowercased; repeated headers joined with ", " as RFC 9110 allows. */
static void set_headers(lua_State *L, const authz_request *req)
{
    lua_createtable(L, 0, (int)(req->n_headers < 64 ? req->n_headers : 64));
    for (size_t i = 0; i < req->n_headers; i++) {
        const authz_header *h = &req->headers[i];
        if (h->name.ptr == NULL || h->value.ptr == NULL)
            continue;
        push_lower(L, h->name.ptr, h->name.len);
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
    lua_rawseti(L, -2, POLICY_SLOT_HEADERS);
}

static void set_identity(lua_State *L, const authz_engine *e, authz_str principal)
{
    authz_str td = {NULL, 0}, ns = {NULL, 0};
    ward_spiffe_id id;
    if (principal.ptr != NULL &&
        ward_spiffe_id_parse(principal.ptr, principal.len, &id, NULL) == 0) {
        td = (authz_str){id.td, id.td_len};
        if (!ward_spiffe_id_namespace(&id, &ns.ptr, &ns.len))
            ns.ptr = NULL;
    }
    if (uses(e, POLICY_SLOT_SOURCE_TRUST_DOMAIN))
        set_str(L, POLICY_SLOT_SOURCE_TRUST_DOMAIN, td);
    if (uses(e, POLICY_SLOT_SOURCE_NAMESPACE))
        set_str(L, POLICY_SLOT_SOURCE_NAMESPACE, ns);
}

static void push_request(authz_engine *e, const authz_request *req)
{
    lua_State *L = wlua_L(e->st);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->request_ref);
    set_str(L, POLICY_SLOT_SOURCE_PRINCIPAL, req->source_principal);
    set_str(L, POLICY_SLOT_DESTINATION_SERVICE, req->destination_service);
    set_str(L, POLICY_SLOT_PATH, req->path);
    if (uses(e, POLICY_SLOT_SOURCE_TRUST_DOMAIN) || uses(e, POLICY_SLOT_SOURCE_NAMESPACE))
        set_identity(L, e, req->source_principal);
    if (uses(e, POLICY_SLOT_SOURCE_IP))
        set_str(L, POLICY_SLOT_SOURCE_IP, req->source_ip);
    if (uses(e, POLICY_SLOT_SOURCE_PORT))
        set_int(L, POLICY_SLOT_SOURCE_PORT, req->source_port);
    if (uses(e, POLICY_SLOT_DESTINATION_PRINCIPAL))
        set_str(L, POLICY_SLOT_DESTINATION_PRINCIPAL, req->destination_principal);
    if (uses(e, POLICY_SLOT_DESTINATION_PORT))
        set_int(L, POLICY_SLOT_DESTINATION_PORT, req->destination_port);
    if (uses(e, POLICY_SLOT_METHOD))
        set_str(L, POLICY_SLOT_METHOD, req->method);
    if (uses(e, POLICY_SLOT_HOST)) { /* hosts match case-insensitively */
        if (req->host.ptr != NULL)
            push_lower(L, req->host.ptr, req->host.len);
        else
            lua_pushnil(L);
        lua_rawseti(L, -2, POLICY_SLOT_HOST);
    }
    if (uses(e, POLICY_SLOT_QUERY))
        set_str(L, POLICY_SLOT_QUERY, req->query);
    if (uses(e, POLICY_SLOT_PROTOCOL))
        set_str(L, POLICY_SLOT_PROTOCOL, req->protocol);
    if (uses(e, POLICY_SLOT_MTLS)) {
        if (req->mtls >= 0)
            lua_pushstring(L, req->mtls ? "true" : "false");
        else
            lua_pushnil(L);
        lua_rawseti(L, -2, POLICY_SLOT_MTLS);
    }
    if (uses(e, POLICY_SLOT_SNI))
        set_str(L, POLICY_SLOT_SNI, req->sni);
    if (uses(e, POLICY_SLOT_TIME_UNIX)) {
        int64_t t = req->time_unix != 0 ? req->time_unix : (int64_t)time(NULL);
        lua_pushinteger(L, (lua_Integer)t);
        lua_rawseti(L, -2, POLICY_SLOT_TIME_UNIX);
    }
    if (uses(e, POLICY_SLOT_VIEW)) { /* the lazily built view of the previous request */
        lua_pushnil(L);
        lua_rawseti(L, -2, POLICY_SLOT_VIEW);
    }
    if (uses(e, POLICY_SLOT_HEADERS))
        set_headers(L, req);
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

/* Fills d as a deny caused by an engine failure. */
static void deny_failure(authz_engine *e, authz_decision *d, const char *what, const char *detail)
{
    authz_decision_dispose(d);
    snprintf(e->text.reason, sizeof(e->text.reason), "%s: %.900s", what, detail);
    d->reason = e->text.reason;
}

/* Copies an optional Lua string result into buf (at most cap-1 bytes, no NULs). */
static int opt_string(lua_State *L, int idx, char *buf, size_t cap, const char **out)
{
    int t = lua_type(L, idx);
    if (t == LUA_TNIL)
        return 0;
    if (t != LUA_TSTRING)
        return WARD_ERESULT;
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (len >= cap || memchr(s, '\0', len) != NULL)
        return WARD_ERESULT;
    memcpy(buf, s, len);
    buf[len] = '\0';
    *out = buf;
    return 0;
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
static int read_results(lua_State *L, decision_text *text, authz_decision *d)
{
    int rc = 0;
    const int base = lua_gettop(L) - 9;
    if (lua_type(L, base) != LUA_TBOOLEAN || lua_type(L, base + 3) != LUA_TSTRING ||
        lua_type(L, base + 4) != LUA_TBOOLEAN)
        return WARD_ERESULT;
    bool allow = lua_toboolean(L, base);
    WARD_TRY(opt_string(L, base + 1, text->policy, sizeof(text->policy), &d->policy));
    WARD_TRY(opt_int(L, base + 2, 0, 1 << 30, &d->rule));
    WARD_TRY(opt_string(L, base + 3, text->reason, sizeof(text->reason), &d->reason));
    d->audit = lua_toboolean(L, base + 4);
    if (!lua_isnil(L, base + 5)) {
        if (lua_type(L, base + 5) != LUA_TSTRING)
            return WARD_ERESULT;
        const char *dry = lua_tostring(L, base + 5);
        if (strcmp(dry, "allow") != 0 && strcmp(dry, "deny") != 0)
            return WARD_ERESULT;
        d->has_dry_run = true;
        d->dry_run_decision = strcmp(dry, "allow") == 0 ? AUTHZ_ALLOW : AUTHZ_DENY;
        WARD_TRY(opt_string(L, base + 6, text->dry_run_policy, sizeof(text->dry_run_policy),
                            &d->dry_run_policy));
        WARD_TRY(opt_int(L, base + 7, 0, 1 << 30, &d->dry_run_rule));
    }
    WARD_TRY(opt_int(L, base + 8, 100, 599, &d->deny_status));
    WARD_TRY(opt_string(L, base + 9, text->deny_body, sizeof(text->deny_body), &d->deny_body));
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
    push_request(e, req);
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
    push_request(e, req);
    int rc = wlua_call(e->st, 1, 10, &err);
    if (rc < 0) {
        deny_failure(e, out, "policy engine error", err.msg);
        return 0;
    }
    rc = read_results(L, &e->text, out);
    lua_settop(L, top);
    if (rc < 0) {
        authz_decision_init(out);
        deny_failure(e, out, "policy engine error", "malformed decision from the policy bundle");
        return 0;
    }
    if (explain && run_explain(e, req, out, &err) < 0)
        deny_failure(e, out, "policy engine error (explain)", err.msg);
    return 0;
}
