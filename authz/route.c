/* route.c - the bundle's Routes as C data: http entries in order, their matches as check records, hosts in a hash index */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "authz/authz_int.h"
#include "authz/program_int.h"

#define MAX_ROUTES 100000
#define MAX_ENTRIES 100000 /* http entries of one Route */
#define MAX_LIST 10000

/* ---- reading the bundle (raw access only) ---- */

static int rawget(lua_State *L, int idx, const char *key)
{
    lua_pushstring(L, key);
    return lua_rawget(L, idx < 0 ? idx - 1 : idx);
}

/* t[key] as a program string; NULL when absent or not a string. */
static const char *get_str(builder *b, int idx, const char *key, size_t *len)
{
    lua_State *L = program_builder_L(b);
    const char *s = NULL;
    size_t n = 0;
    if (rawget(L, idx, key) == LUA_TSTRING) {
        const char *v = lua_tolstring(L, -1, &n);
        s = program_builder_str(b, v, n);
    }
    lua_pop(L, 1);
    if (len != NULL)
        *len = n;
    return s;
}

/* t[key] as an integer in [min, max]: 1, 0 when absent, <0 when malformed. */
static int get_int(builder *b, int idx, const char *key, lua_Integer min, lua_Integer max,
                   lua_Integer *out)
{
    lua_State *L = program_builder_L(b);
    int t = rawget(L, idx, key);
    int rc = 0;
    if (t == LUA_TNUMBER && lua_isinteger(L, -1)) {
        lua_Integer v = lua_tointeger(L, -1);
        if (v < min || v > max)
            rc = program_builder_bad(b, "a number is out of range");
        else
            *out = v, rc = 1;
    } else if (t != LUA_TNIL) {
        rc = program_builder_bad(b, "expected an integer");
    }
    lua_pop(L, 1);
    return rc;
}

static bool get_bool(builder *b, int idx, const char *key)
{
    lua_State *L = program_builder_L(b);
    bool v = rawget(L, idx, key) == LUA_TBOOLEAN && lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Pushes t[key] when it is a table of at most max items (*n set): 1; 0 when
 * absent (nothing pushed); <0 malformed. */
static int get_list(builder *b, int idx, const char *key, lua_Unsigned max, uint32_t *n)
{
    lua_State *L = program_builder_L(b);
    int t = rawget(L, idx, key);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (t != LUA_TTABLE || lua_rawlen(L, -1) > max) {
        lua_pop(L, 1);
        return program_builder_bad(b, "expected a list");
    }
    *n = (uint32_t)lua_rawlen(L, -1);
    return 1;
}

/* ---- matches ---- */

/* {{name = "x", exact|prefix|regex = "v"}, ...} at the top: one named check each. */
static int build_named(builder *b, uint8_t at, uint8_t name, uint32_t item)
{
    static const struct {
        const char *key;
        uint8_t kind;
    } kinds[] = {{"exact", P_EXACT}, {"prefix", P_PREFIX}, {"regex", P_REGEX}};
    lua_State *L = program_builder_L(b);
    lua_Unsigned n = lua_rawlen(L, -1);
    if (n == 0 || n > MAX_LIST)
        return program_builder_bad(b, "headers and queryParams list 1..10000 items");
    for (lua_Unsigned i = 1; i <= n; i++) {
        if (lua_rawgeti(L, -1, (lua_Integer)i) != LUA_TTABLE) {
            lua_pop(L, 1);
            return program_builder_bad(b, "a header or query match must be a table");
        }
        size_t kl = 0, vl = 0;
        const char *key = NULL, *val = NULL;
        uint8_t kind = P_EXACT;
        if (rawget(L, -1, "name") == LUA_TSTRING)
            key = lua_tolstring(L, -1, &kl);
        lua_pop(L, 1); /* the strings stay alive in the table */
        for (size_t k = 0; k < 3 && val == NULL; k++) {
            if (rawget(L, -1, kinds[k].key) == LUA_TSTRING) {
                val = lua_tolstring(L, -1, &vl);
                kind = kinds[k].kind;
            }
            lua_pop(L, 1);
        }
        int rc = key == NULL || val == NULL
                     ? program_builder_bad(b, "a header or query match needs name and a value")
                     : program_builder_named(b, at, name, item, key, kl, kind, val, vl);
        lua_pop(L, 1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The match list at the top: a group of alternatives; *ref its offset. */
static int build_match(builder *b, uint32_t *ref)
{
    lua_State *L = program_builder_L(b);
    int rc = 0;
    size_t goff;
    lua_Unsigned n = lua_rawlen(L, -1);
    if (n == 0 || n > MAX_LIST)
        return program_builder_bad(b, "match lists 1..10000 alternatives");
    WARD_TRY(program_builder_reserve(b, sizeof(group), &goff));
    if (goff / PROGRAM_ALIGN > UINT32_MAX)
        return program_builder_bad(b, "the program is too large");
    *ref = (uint32_t)(goff / PROGRAM_ALIGN);
    for (lua_Unsigned i = 1; i <= n; i++) {
        size_t aoff;
        uint32_t item = (uint32_t)(i - 1);
        if (lua_rawgeti(L, -1, (lua_Integer)i) != LUA_TTABLE) {
            lua_pop(L, 1);
            return program_builder_bad(b, "a match alternative must be a table");
        }
        rc = program_builder_reserve(b, sizeof(alt), &aoff);
        static const struct {
            const char *key;
            uint8_t attr, name;
        } fields[] = {{"paths", A_PATH, 14},
                      {"methods", A_METHOD, 8},
                      {"headers", A_HEADER, NAME_HEADERS},
                      {"queryParams", A_QPARAM, NAME_QUERY}};
        for (size_t f = 0; f < 4 && rc == 0; f++) {
            int t = rawget(L, -1, fields[f].key);
            if (t == LUA_TNIL)
                ;
            else if (t != LUA_TTABLE)
                rc = program_builder_bad(b, "a match field must be a list");
            else if (f < 2)
                rc = program_builder_check(b, fields[f].attr, fields[f].name, item, f == 0);
            else
                rc = build_named(b, fields[f].attr, fields[f].name, item);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        WARD_TRY(rc);
        WARD_TRY(program_builder_size(b, aoff, &((alt *)program_builder_at(b, aoff))->size));
    }
    return program_builder_size(b, goff, &((group *)program_builder_at(b, goff))->size);
fail:
    return rc;
}

/* ---- the other parts of an entry ---- */

static int build_destinations(builder *b, authz_route *r)
{
    lua_State *L = program_builder_L(b);
    uint32_t n = 0;
    int rc = get_list(b, -1, "destinations", 100, &n);
    if (rc <= 0 || n == 0) {
        if (rc == 1)
            lua_pop(L, 1);
        return rc < 0 ? rc : program_builder_bad(b, "an http entry needs destinations");
    }
    authz_route_destination *d = program_builder_alloc(b, n * sizeof(*d));
    uint32_t sum = 0;
    if (d == NULL)
        rc = WARD_ENOMEM;
    for (uint32_t i = 0; i < n && rc >= 0; i++) {
        lua_Integer w = 0;
        if (lua_rawgeti(L, -1, (lua_Integer)i + 1) != LUA_TTABLE ||
            (d[i].service = get_str(b, -1, "service", NULL)) == NULL ||
            get_int(b, -1, "weight", 0, 100, &w) != 1)
            rc = program_builder_bad(b, "a destination needs service and weight");
        d[i].weight = (uint32_t)w;
        sum += (uint32_t)w;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (rc >= 0 && sum != 100)
        rc = program_builder_bad(b, "destination weights do not add up to 100");
    r->destinations = d;
    r->n_destinations = n;
    return rc < 0 ? rc : 0;
}

static void status_set(uint8_t *bits, unsigned code)
{
    bits[(code - 500) / 8] |= (uint8_t)(1u << ((code - 500) % 8));
}

static int build_retries(builder *b, authz_route *r)
{
    lua_State *L = program_builder_L(b);
    int t = rawget(L, -1, "retries");
    int rc = 0;
    if (t == LUA_TNIL)
        goto out;
    if (t != LUA_TTABLE) {
        rc = program_builder_bad(b, "retries must be a table");
        goto out;
    }
    authz_route_retries *rt = &r->retries;
    lua_Integer v;
    r->has_retries = true;
    if ((rc = get_int(b, -1, "attempts", 0, 10, &v)) != 1) {
        rc = rc < 0 ? rc : program_builder_bad(b, "retries need attempts");
        goto out;
    }
    rt->attempts = (uint32_t)v;
    if ((rc = get_int(b, -1, "perTryTimeout_ms", 1, 3600000, &v)) < 0)
        goto out;
    rt->per_try_timeout_ms = rc == 1 ? (uint32_t)v : 0;
    if ((rc = get_int(b, -1, "maxBodyBytes", 0, (lua_Integer)1 << 40, &v)) < 0)
        goto out;
    rt->max_body_bytes = rc == 1 ? (uint64_t)v : 0;
    rt->non_idempotent = get_bool(b, -1, "nonIdempotent");
    uint32_t n = 0;
    if ((rc = get_list(b, -1, "on", 200, &n)) <= 0)
        goto out;
    rc = 0;
    for (uint32_t i = 1; rc == 0 && i <= n; i++) {
        size_t len = 0;
        const char *s = NULL;
        if (lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING)
            s = lua_tolstring(L, -1, &len);
        uint64_t code;
        if (s == NULL) {
            rc = program_builder_bad(b, "a retry condition must be a string");
        } else if (strcmp(s, "connect-failure") == 0) {
            rt->on |= AUTHZ_RETRY_CONNECT_FAILURE;
        } else if (strcmp(s, "reset") == 0) {
            rt->on |= AUTHZ_RETRY_RESET;
        } else if (strcmp(s, "5xx") == 0) {
            for (unsigned c = 500; c <= 599; c++)
                status_set(rt->on_status, c);
        } else if (strcmp(s, "gateway-error") == 0) {
            status_set(rt->on_status, 502);
            status_set(rt->on_status, 503);
            status_set(rt->on_status, 504);
        } else if (len == 3 && ward_parse_u64(s, len, 599, &code) == 0 && code >= 500) {
            status_set(rt->on_status, (unsigned)code);
        } else {
            rc = program_builder_bad(b, "unknown retry condition");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the list */
out:
    lua_pop(L, 1);
    return rc;
}

/* set / add: {{name = , value = }, ...}; remove: {"name", ...} */
static int build_op_list(builder *b, const char *key, bool remove, const authz_header_op **out,
                         uint32_t *n_out)
{
    lua_State *L = program_builder_L(b);
    uint32_t n = 0;
    int rc = get_list(b, -1, key, 1000, &n);
    if (rc <= 0)
        return rc;
    authz_header_op *v = program_builder_alloc(b, (n ? n : 1) * sizeof(*v));
    rc = v == NULL ? WARD_ENOMEM : 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        int t = lua_rawgeti(L, -1, (lua_Integer)i + 1);
        if (remove && t == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            v[i].name = program_builder_str(b, s, len);
            rc = v[i].name == NULL ? WARD_ENOMEM : 0;
        } else if (!remove && t == LUA_TTABLE) {
            v[i].name = get_str(b, -1, "name", NULL);
            v[i].value = get_str(b, -1, "value", NULL);
            if (v[i].name == NULL || v[i].value == NULL)
                rc = program_builder_bad(b, "a header operation needs name and value");
        } else {
            rc = program_builder_bad(b, "malformed header operation");
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *out = v;
    *n_out = n;
    return rc;
}

static int build_ops(builder *b, const char *key, authz_header_ops *ops)
{
    lua_State *L = program_builder_L(b);
    int t = rawget(L, -1, key);
    int rc = 0;
    if (t == LUA_TTABLE) {
        rc = build_op_list(b, "set", false, &ops->set, &ops->n_set);
        if (rc >= 0)
            rc = build_op_list(b, "add", false, &ops->add, &ops->n_add);
        if (rc >= 0)
            rc = build_op_list(b, "remove", true, &ops->remove, &ops->n_remove);
    } else if (t != LUA_TNIL) {
        rc = program_builder_bad(b, "header operations must be a table");
    }
    lua_pop(L, 1);
    return rc < 0 ? rc : 0;
}

static int build_headers(builder *b, authz_route *r)
{
    lua_State *L = program_builder_L(b);
    int t = rawget(L, -1, "headers");
    int rc = 0;
    if (t == LUA_TTABLE) {
        rc = build_ops(b, "request", &r->request_headers);
        if (rc == 0)
            rc = build_ops(b, "response", &r->response_headers);
    } else if (t != LUA_TNIL) {
        rc = program_builder_bad(b, "headers must be a table");
    }
    lua_pop(L, 1);
    return rc;
}

static int build_rate_limit(builder *b, authz_route *r)
{
    static const char hdr[] = "request.headers[";
    lua_State *L = program_builder_L(b);
    int t = rawget(L, -1, "rateLimit");
    int rc = 0;
    lua_Integer req = 0, per = 0;
    if (t == LUA_TNIL)
        goto out;
    if (t != LUA_TTABLE || get_int(b, -1, "requests", 1, 1000000000, &req) != 1 ||
        get_int(b, -1, "per_ms", 1, 86400000, &per) != 1) {
        rc = program_builder_bad(b, "rateLimit needs requests and per_ms");
        goto out;
    }
    r->has_rate_limit = true;
    r->rate_limit.requests = (uint32_t)req;
    r->rate_limit.per_ms = (uint32_t)per;
    size_t len;
    const char *key = get_str(b, -1, "key", &len);
    if (key == NULL || strcmp(key, "none") == 0) {
        r->rate_limit.key = AUTHZ_RATE_KEY_NONE;
    } else if (strcmp(key, "source.principal") == 0) {
        r->rate_limit.key = AUTHZ_RATE_KEY_PRINCIPAL;
    } else if (len > sizeof(hdr) && memcmp(key, hdr, sizeof(hdr) - 1) == 0 && key[len - 1] == ']') {
        r->rate_limit.key = AUTHZ_RATE_KEY_HEADER;
        char *h = (char *)key + sizeof(hdr) - 1; /* the program's own copy */
        h[len - sizeof(hdr)] = '\0';
        for (char *c = h; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                *c = (char)(*c + 32);
        r->rate_limit.header = h;
    } else {
        rc = program_builder_bad(b, "unknown rateLimit key");
    }
out:
    lua_pop(L, 1);
    return rc;
}

static int build_mirror(builder *b, authz_route *r)
{
    lua_State *L = program_builder_L(b);
    int t = rawget(L, -1, "mirror");
    int rc = 0;
    lua_Integer pct = 100;
    if (t == LUA_TTABLE) {
        r->mirror_service = get_str(b, -1, "service", NULL);
        if (r->mirror_service == NULL || get_int(b, -1, "percent", 0, 100, &pct) < 0)
            rc = program_builder_bad(b, "mirror needs service and a percent 0..100");
        r->mirror_percent = (uint32_t)pct;
    } else if (t != LUA_TNIL) {
        rc = program_builder_bad(b, "mirror must be a table");
    }
    lua_pop(L, 1);
    return rc;
}

/* One http entry (the table at the top). */
static int build_entry(builder *b, const route_def *def, uint32_t index, route_entry *e)
{
    lua_State *L = program_builder_L(b);
    authz_route *r = &e->route;
    int rc = 0;
    lua_Integer v;
    r->policy = def->id;
    r->index = (int)index;
    r->name = get_str(b, -1, "name", NULL);
    r->source = get_str(b, -1, "source", NULL);
    if (r->name == NULL)
        return program_builder_bad(b, "an http entry needs a name");
    int t = rawget(L, -1, "match");
    if (t == LUA_TTABLE) {
        e->has_match = true;
        rc = build_match(b, &e->match);
    } else if (t != LUA_TNIL) {
        rc = program_builder_bad(b, "match must be a list");
    }
    lua_pop(L, 1);
    WARD_TRY(rc);
    WARD_TRY(build_destinations(b, r));
    WARD_TRY(rc = get_int(b, -1, "timeout_ms", 1, 3600000, &v));
    r->timeout_ms = rc == 1 ? (uint32_t)v : 0;
    WARD_TRY(build_retries(b, r));
    size_t len;
    if (rawget(L, -1, "rewrite") == LUA_TTABLE) {
        r->rewrite_prefix = get_str(b, -1, "prefix", &len);
        if (r->rewrite_prefix == NULL || len == 0 || r->rewrite_prefix[0] != '/')
            rc = program_builder_bad(b, "rewrite needs a prefix starting with /");
    }
    lua_pop(L, 1);
    WARD_TRY(rc);
    WARD_TRY(build_headers(b, r));
    WARD_TRY(build_rate_limit(b, r));
    WARD_TRY(build_mirror(b, r));
    return 0;
fail:
    return rc;
}

/* ---- routes and hosts ---- */

static int add_host(program *p, uint32_t *cap, const char *host, size_t len, uint32_t def)
{
    if (p->n_hosts == *cap) {
        uint32_t c = *cap ? *cap * 2 : 16;
        route_host *v = realloc(p->hosts, c * sizeof(*v));
        if (v == NULL)
            return WARD_ENOMEM;
        p->hosts = v;
        *cap = c;
    }
    p->hosts[p->n_hosts++] = (route_host){host, (uint32_t)len, def};
    p->host_lens[len / 64] |= 1ULL << (len % 64);
    return 0;
}

/* One Route (the table at the top). */
static int build_route(builder *b, uint32_t i, uint32_t *host_cap)
{
    lua_State *L = program_builder_L(b);
    program *p = program_builder_program(b);
    route_def *def = &p->routes[i];
    int rc = 0;
    def->id = get_str(b, -1, "id", NULL);
    def->source = get_str(b, -1, "source", NULL);
    if (def->id == NULL)
        return program_builder_bad(b, "a route needs an id");
    program_builder_where(b, def->id);
    uint32_t n = 0;
    if ((rc = get_list(b, -1, "hosts", MAX_LIST, &n)) != 1 || n == 0) {
        if (rc == 1)
            lua_pop(L, 1);
        return rc < 0 ? rc : program_builder_bad(b, "a route needs hosts");
    }
    rc = 0;
    for (uint32_t k = 1; k <= n && rc == 0; k++) {
        size_t len = 0;
        const char *h = NULL;
        if (lua_rawgeti(L, -1, (lua_Integer)k) == LUA_TSTRING) {
            const char *s = lua_tolstring(L, -1, &len);
            char *own = (char *)program_builder_str(b, s, len);
            if (own != NULL) /* hosts match case-insensitively */
                for (size_t j = 0; j < len; j++)
                    if (own[j] >= 'A' && own[j] <= 'Z')
                        own[j] = (char)(own[j] + 32);
            h = own;
        }
        lua_pop(L, 1);
        if (h == NULL || len == 0 || len > 253)
            rc = program_builder_bad(b, "a host must be a name");
        else
            rc = add_host(p, host_cap, h, len, i);
    }
    lua_pop(L, 1);
    WARD_TRY(rc);
    if ((rc = get_list(b, -1, "http", MAX_ENTRIES, &n)) != 1 || n == 0) {
        if (rc == 1)
            lua_pop(L, 1);
        return rc < 0 ? rc : program_builder_bad(b, "a route needs http entries");
    }
    def->entries = program_builder_alloc(b, n * sizeof(route_entry));
    rc = def->entries == NULL ? WARD_ENOMEM : 0;
    for (uint32_t k = 0; k < n && rc == 0; k++) {
        if (lua_rawgeti(L, -1, (lua_Integer)k + 1) != LUA_TTABLE)
            rc = program_builder_bad(b, "an http entry must be a table");
        else
            rc = build_entry(b, def, k, &def->entries[k]);
        lua_pop(L, 1);
        def->n_entries = k + 1;
    }
    lua_pop(L, 1);
    return rc;
fail:
    return rc;
}

int route_build(builder *b, int bundle)
{
    lua_State *L = program_builder_L(b);
    program *p = program_builder_program(b);
    int rc = 0;
    uint32_t host_cap = 0;
    int t = rawget(L, bundle, "routes");
    if (t == LUA_TNIL)
        goto out;
    lua_Unsigned n = t == LUA_TTABLE ? lua_rawlen(L, -1) : 0;
    if (t != LUA_TTABLE || n > MAX_ROUTES) {
        rc = program_builder_bad(b, "routes must be a list of at most 100000");
        goto out;
    }
    p->routes = calloc(n ? n : 1, sizeof(*p->routes));
    if (p->routes == NULL) {
        rc = WARD_ENOMEM;
        goto out;
    }
    for (lua_Unsigned i = 0; i < n && rc == 0; i++) {
        if (lua_rawgeti(L, -1, (lua_Integer)i + 1) != LUA_TTABLE)
            rc = program_builder_bad(b, "a route must be a table");
        else
            rc = build_route(b, (uint32_t)i, &host_cap);
        lua_pop(L, 1);
        p->n_routes = (uint32_t)i + 1;
    }
    if (rc < 0)
        goto out;
    strmap_builder hosts;
    strmap_builder_init(&hosts);
    for (uint32_t i = 0; i < p->n_hosts && rc == 0; i++) {
        const route_host *h = &p->hosts[i];
        /* a host listed twice (the validator refuses that): the first wins */
        uint64_t key = strmap_hash(p->seed ^ HOST_SALT, h->host, h->len);
        rc = strmap_builder_add(&hosts, key, i, true);
    }
    if (rc == 0)
        rc = strmap_build(&p->by_host, &hosts);
    else
        strmap_builder_dispose(&hosts);
out:
    lua_pop(L, 1);
    return rc;
}

void route_free(program *p)
{
    free(p->routes);
    free(p->hosts);
    strmap_dispose(&p->by_host);
    ward_buf_dispose(&p->rewrite);
}

/* ---- the public helpers of authz.h ---- */

const authz_route_destination *authz_route_pick(const authz_route *r, uint32_t random)
{
    uint32_t x = random % 100, acc = 0;
    for (uint32_t i = 0; i < r->n_destinations; i++) {
        acc += r->destinations[i].weight;
        if (x < acc)
            return &r->destinations[i];
    }
    return r->n_destinations > 0 ? &r->destinations[r->n_destinations - 1] : NULL;
}

bool authz_route_retries_status(const authz_route_retries *rt, int status)
{
    if (status < 500 || status > 599)
        return false;
    unsigned k = (unsigned)(status - 500);
    return (rt->on_status[k / 8] >> (k % 8)) & 1;
}
