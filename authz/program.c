/* program.c - the compiled rules as compact C data: built from the Lua bundle, indexed, decided */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authz/authz_int.h"
#include "authz/program_int.h"

/* ---- arena: everything the program holds, freed at once ---- */

static void *arena_alloc(program *p, size_t size)
{
    size = (size + 7) & ~(size_t)7;
    chunk *c = p->arena;
    if (c == NULL || c->cap - c->used < size) {
        size_t cap = size > 60000 ? size : 60000;
        c = malloc(sizeof(chunk) + cap);
        if (c == NULL)
            return NULL;
        c->next = p->arena;
        c->used = 0;
        c->cap = cap;
        p->arena = c;
    }
    void *r = (char *)c->data + c->used;
    c->used += size;
    memset(r, 0, size);
    return r;
}

static const char *arena_str(program *p, const char *s, size_t len)
{
    char *d = arena_alloc(p, len + 1);
    if (d != NULL) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

static int push_id(uint32_t **v, uint32_t *n, uint32_t *cap, uint32_t id)
{
    if (*n == *cap) {
        uint32_t c = *cap ? *cap * 2 : 8;
        uint32_t *nv = realloc(*v, c * sizeof(**v));
        if (nv == NULL)
            return WARD_ENOMEM;
        *v = nv;
        *cap = c;
    }
    (*v)[(*n)++] = id;
    return 0;
}

/* ---- reading the bundle's tables (raw access only: no metamethods run) ---- */

typedef struct builder {
    program *p;
    lua_State *L;
    ward_err *err;
    const char *where; /* for error messages */
} builder;

static int bad(builder *b, const char *what)
{
    ward_err_set(b->err, "policy bundle: %s: %s", b->where ? b->where : "?", what);
    return WARD_ERESULT;
}

/* Pushes t[key] (raw) for the table at idx. */
static int rawfield(lua_State *L, int idx, const char *key)
{
    lua_pushstring(L, key);
    return lua_rawget(L, idx < 0 ? idx - 1 : idx);
}

static const char *opt_str(builder *b, int idx, const char *key, size_t *len)
{
    const char *s = NULL;
    if (rawfield(b->L, idx, key) == LUA_TSTRING) {
        const char *v = lua_tolstring(b->L, -1, len);
        s = arena_str(b->p, v, *len);
    }
    lua_pop(b->L, 1);
    return s;
}

static bool opt_int(builder *b, int idx, const char *key, lua_Integer *out)
{
    bool ok = rawfield(b->L, idx, key) == LUA_TNUMBER && lua_isinteger(b->L, -1);
    if (ok)
        *out = lua_tointeger(b->L, -1);
    lua_pop(b->L, 1);
    return ok;
}

/* ---- patterns ---- */

static int build_template(builder *b, pat *x)
{
    uint32_t n = 1;
    for (uint32_t i = 0; i < x->len; i++)
        n += x->s[i] == '/';
    x->u.tpl.segs = arena_alloc(b->p, n * sizeof(tseg));
    if (x->u.tpl.segs == NULL)
        return WARD_ENOMEM;
    uint32_t start = 0, k = 0;
    for (uint32_t i = 0; i <= x->len; i++) {
        if (i < x->len && x->s[i] != '/')
            continue;
        tseg *g = &x->u.tpl.segs[k++];
        g->off = start;
        g->len = i - start;
        if (g->len == 3 && memcmp(x->s + start, "{*}", 3) == 0)
            g->kind = 1;
        else if (g->len == 4 && memcmp(x->s + start, "{**}", 4) == 0)
            g->kind = 2;
        if (g->kind == 2 && i != x->len)
            return bad(b, "template \"{**}\" must be last");
        start = i + 1;
    }
    x->u.tpl.n = k;
    return 0;
}

bool program_template_match(const pat *x, const char *s, size_t len)
{
    const char *end = s + len;
    bool more = true; /* a path has at least one (maybe empty) segment */
    for (uint32_t i = 0; i < x->u.tpl.n; i++) {
        const tseg *g = &x->u.tpl.segs[i];
        if (g->kind == 2)
            return true;
        if (!more)
            return false;
        const char *slash = memchr(s, '/', (size_t)(end - s));
        size_t sl = (size_t)((slash != NULL ? slash : end) - s);
        if (g->kind == 1 ? sl == 0 : (sl != g->len || memcmp(s, x->s + g->off, sl) != 0))
            return false;
        if (slash != NULL) {
            s = slash + 1;
        } else {
            s = end;
            more = false;
        }
    }
    return !more;
}

/* One pattern from the bundle: a string in the policy syntax, a {regex=}
 * table, or a port number; `cidr` says the field holds CIDR blocks. */
static int build_pat(builder *b, int idx, bool cidr, bool path, pat *x)
{
    lua_State *L = b->L;
    int t = lua_type(L, idx);
    if (t == LUA_TNUMBER && lua_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);
        if (v < 1 || v > 65535)
            return bad(b, "port out of range");
        x->kind = P_PORT;
        x->u.port = (unsigned)v;
        return 0;
    }
    if (t == LUA_TTABLE) {
        size_t len;
        x->s = opt_str(b, idx, "regex", &len);
        if (x->s == NULL)
            return bad(b, "a table pattern must be {regex = \"...\"}");
        x->len = (uint32_t)len;
        x->kind = P_REGEX;
        int ecode;
        PCRE2_SIZE eoff;
        x->u.re = pcre2_compile((PCRE2_SPTR)x->s, len, PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                                &ecode, &eoff, NULL);
        if (x->u.re == NULL) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ecode, msg, sizeof(msg));
            ward_err_set(b->err, "policy bundle: %s: regex at offset %zu: %s", b->where,
                         (size_t)eoff, (char *)msg);
            return WARD_ERESULT;
        }
        pcre2_jit_compile(x->u.re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
        return 0;
    }
    if (t != LUA_TSTRING)
        return bad(b, "a pattern must be a string");
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (cidr) {
        x->kind = P_CIDR;
        if (ward_cidr_parse(s, len, &x->u.cidr, b->err) < 0)
            return bad(b, "bad CIDR block");
        return 0;
    }
    if (len == 1 && s[0] == '*') {
        x->kind = P_ANY;
        x->s = "";
        return 0;
    }
    if (path && memchr(s, '{', len) != NULL) {
        x->kind = P_TEMPLATE;
        x->s = arena_str(b->p, s, len);
        x->len = (uint32_t)len;
        return x->s ? build_template(b, x) : WARD_ENOMEM;
    }
    if (len > 1 && s[len - 1] == '*') {
        x->kind = P_PREFIX;
        len--;
    } else if (len > 1 && s[0] == '*') {
        x->kind = P_SUFFIX;
        s++;
        len--;
    } else {
        x->kind = P_EXACT;
    }
    x->s = arena_str(b->p, s, len);
    x->len = (uint32_t)len;
    return x->s ? 0 : WARD_ENOMEM;
}

/* ---- checks: one field of a source, an operation or a condition ---- */

typedef struct field_spec {
    const char *name;
    uint8_t attr;
    bool negated, cidr, path;
} field_spec;

static const field_spec source_fields[] = {
    {"principals", A_SOURCE_PRINCIPAL, false, false, false},
    {"notPrincipals", A_SOURCE_PRINCIPAL, true, false, false},
    {"namespaces", A_SOURCE_NAMESPACE, false, false, false},
    {"notNamespaces", A_SOURCE_NAMESPACE, true, false, false},
    {"trustDomains", A_SOURCE_TRUST_DOMAIN, false, false, false},
    {"notTrustDomains", A_SOURCE_TRUST_DOMAIN, true, false, false},
    {"ipBlocks", A_SOURCE_IP, false, true, false},
    {"notIpBlocks", A_SOURCE_IP, true, true, false},
};

static const field_spec op_fields[] = {
    {"methods", A_METHOD, false, false, false},
    {"notMethods", A_METHOD, true, false, false},
    {"hosts", A_HOST, false, false, false},
    {"notHosts", A_HOST, true, false, false},
    {"ports", A_DESTINATION_PORT, false, false, false},
    {"notPorts", A_DESTINATION_PORT, true, false, false},
    {"paths", A_PATH, false, false, true},
    {"notPaths", A_PATH, true, false, true},
};

/* The attribute names a `when` key may use (DESIGN.md, Request attributes). */
static const struct {
    const char *key;
    uint8_t attr;
} when_keys[] = {
    {"source.principal", A_SOURCE_PRINCIPAL}, {"source.ip", A_SOURCE_IP},
    {"source.port", A_SOURCE_PORT}, {"source.namespace", A_SOURCE_NAMESPACE},
    {"source.trustDomain", A_SOURCE_TRUST_DOMAIN}, {"destination.service", A_DESTINATION_SERVICE},
    {"destination.principal", A_DESTINATION_PRINCIPAL}, {"destination.port", A_DESTINATION_PORT},
    {"request.method", A_METHOD}, {"request.host", A_HOST}, {"request.path", A_PATH},
    {"request.query", A_QUERY}, {"request.protocol", A_PROTOCOL}, {"connection.mtls", A_MTLS},
    {"connection.sni", A_SNI}, {"time", A_TIME},
};

/* The list at the top of the stack becomes c's patterns. */
static int build_check(builder *b, check *c, bool cidr, bool path)
{
    lua_State *L = b->L;
    if (!lua_istable(L, -1))
        return bad(b, "a field must be a list");
    lua_Unsigned n = lua_rawlen(L, -1);
    if (n == 0 || n > 100000)
        return bad(b, "a field must list 1..100000 values");
    c->n = (uint32_t)n;
    c->pats = arena_alloc(b->p, n * sizeof(pat));
    if (c->pats == NULL)
        return WARD_ENOMEM;
    /* ports in string form ("8443") stay strings for `when`, numbers for `to` */
    for (lua_Unsigned i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        int rc = build_pat(b, -1, cidr, path, &c->pats[i - 1]);
        lua_pop(L, 1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* A list of sources or operations (`from` / `to`). */
static int build_alts(builder *b, int idx, const char *name, const field_spec *specs, size_t n_specs,
                      alt **out, uint32_t *n_out)
{
    lua_State *L = b->L;
    int rc = 0;
    lua_Unsigned n = lua_rawlen(L, idx);
    *out = arena_alloc(b->p, (n ? n : 1) * sizeof(alt));
    if (*out == NULL)
        return WARD_ENOMEM;
    *n_out = (uint32_t)n;
    for (lua_Unsigned i = 1; i <= n && rc == 0; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            return bad(b, "a source or operation must be a table");
        }
        alt *a = &(*out)[i - 1];
        size_t present = 0;
        for (size_t f = 0; f < n_specs; f++) {
            present += rawfield(L, -1, specs[f].name) != LUA_TNIL;
            lua_pop(L, 1);
        }
        a->checks = arena_alloc(b->p, (present ? present : 1) * sizeof(check));
        if (a->checks == NULL)
            return WARD_ENOMEM;
        for (size_t f = 0; f < n_specs && rc == 0; f++) {
            if (rawfield(L, -1, specs[f].name) != LUA_TNIL) {
                check *c = &a->checks[a->n++];
                c->attr = specs[f].attr;
                c->negated = specs[f].negated;
                c->group = name;
                c->item = (uint32_t)(i - 1);
                c->name = specs[f].name;
                rc = build_check(b, c, specs[f].cidr, specs[f].path);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    return rc;
}

/* Parses "request.headers[name]" or a plain attribute name. */
static int when_attr(builder *b, const char *key, size_t len, check *c)
{
    static const char hdr[] = "request.headers[";
    size_t hl = sizeof(hdr) - 1;
    if (len > hl + 1 && memcmp(key, hdr, hl) == 0 && key[len - 1] == ']') {
        c->attr = A_HEADER;
        char *name = arena_alloc(b->p, len - hl);
        if (name == NULL)
            return WARD_ENOMEM;
        for (size_t i = 0; i < len - hl - 1; i++) {
            char ch = key[hl + i];
            name[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
        c->header = name;
        c->header_len = len - hl - 1;
        return 0;
    }
    for (size_t i = 0; i < sizeof(when_keys) / sizeof(when_keys[0]); i++) {
        if (strlen(when_keys[i].key) == len && memcmp(when_keys[i].key, key, len) == 0) {
            c->attr = when_keys[i].attr;
            return 0;
        }
    }
    return bad(b, "unknown when key");
}

static int build_when(builder *b, int idx, rule *r)
{
    lua_State *L = b->L;
    lua_Unsigned n = lua_rawlen(L, idx);
    r->when = arena_alloc(b->p, (2 * n + 1) * sizeof(check));
    r->lua_refs = arena_alloc(b->p, (n + 1) * sizeof(int));
    r->lua_fields = arena_alloc(b->p, (n + 1) * sizeof(char *));
    if (r->when == NULL || r->lua_refs == NULL || r->lua_fields == NULL)
        return WARD_ENOMEM;
    for (lua_Unsigned i = 1; i <= n; i++) {
        int rc = 0;
        char field[64];
        lua_rawgeti(L, idx, (lua_Integer)i);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            return bad(b, "a condition must be a table");
        }
        if (rawfield(L, -1, "lua") == LUA_TFUNCTION) {
            snprintf(field, sizeof(field), "when[%u].lua", (unsigned)(i - 1));
            r->lua_fields[r->n_lua] = arena_str(b->p, field, strlen(field));
            r->lua_refs[r->n_lua++] = luaL_ref(L, LUA_REGISTRYINDEX); /* pops it */
            lua_pop(L, 1);
            continue;
        }
        lua_pop(L, 1);
        size_t klen;
        const char *key = opt_str(b, -1, "key", &klen);
        if (key == NULL) {
            lua_pop(L, 1);
            return bad(b, "a condition needs key or lua");
        }
        static const char *const lists[2] = {"values", "notValues"};
        for (int neg = 0; neg < 2 && rc == 0; neg++) {
            if (rawfield(L, -1, lists[neg]) != LUA_TNIL) {
                check *c = &r->when[r->n_when++];
                rc = when_attr(b, key, klen, c);
                c->negated = neg == 1;
                c->group = "when";
                c->item = (uint32_t)(i - 1);
                c->name = lists[neg];
                if (rc == 0)
                    rc = build_check(b, c, c->attr == A_SOURCE_IP, c->attr == A_PATH);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int build_policy(builder *b, uint32_t i)
{
    lua_State *L = b->L;
    pol *p = &b->p->pols[i];
    size_t len;
    p->id = opt_str(b, -1, "id", &len);
    p->source = opt_str(b, -1, "source", &len);
    const char *action = opt_str(b, -1, "action", &len);
    const char *mode = opt_str(b, -1, "mode", &len);
    if (p->id == NULL || action == NULL || mode == NULL)
        return bad(b, "a policy needs id, action and mode");
    b->where = p->id;
    p->action = strcmp(action, "DENY") == 0 ? ACT_DENY : strcmp(action, "AUDIT") == 0 ? ACT_AUDIT
                                                                                    : ACT_ALLOW;
    if (strcmp(action, "ALLOW") != 0 && p->action == ACT_ALLOW)
        return bad(b, "unknown action");
    if (strcmp(mode, "dry-run") != 0 && strcmp(mode, "enforce") != 0)
        return bad(b, "unknown mode");
    p->dry = strcmp(mode, "dry-run") == 0;
    lua_Integer status;
    if (opt_int(b, -1, "deny_status", &status)) {
        if (status < 100 || status > 599)
            return bad(b, "deny_status out of range");
        p->deny_status = (int)status;
    }
    p->deny_body = opt_str(b, -1, "deny_body", &len);
    if (rawfield(L, -1, "services") == LUA_TTABLE) {
        lua_Unsigned n = lua_rawlen(L, -1);
        p->services = arena_alloc(b->p, (n ? n : 1) * sizeof(char *));
        if (p->services == NULL)
            return WARD_ENOMEM;
        for (lua_Unsigned k = 1; k <= n; k++) {
            if (lua_rawgeti(L, -1, (lua_Integer)k) == LUA_TSTRING) {
                const char *s = lua_tolstring(L, -1, &len);
                p->services[p->n_services++] = arena_str(b->p, s, len);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return 0;
}

static int build_rule(builder *b, uint32_t i)
{
    lua_State *L = b->L;
    /* in the arena, so a rule and what it checks sit together in memory */
    rule *r = arena_alloc(b->p, sizeof(rule));
    if (r == NULL)
        return WARD_ENOMEM;
    b->p->rules[i] = r;
    lua_Integer policy, index;
    if (!opt_int(b, -1, "policy", &policy) || !opt_int(b, -1, "index", &index) || policy < 1 ||
        policy > b->p->n_pols || index < 0)
        return bad(b, "a rule needs policy and index");
    r->policy = (uint32_t)policy - 1;
    r->index = (uint32_t)index;
    const pol *p = &b->p->pols[r->policy];
    b->where = p->id;
    r->kind = p->action == ACT_DENY    ? (p->dry ? K_DRY_DENY : K_DENY)
              : p->action == ACT_ALLOW ? (p->dry ? K_DRY_ALLOW : K_ALLOW)
              : p->dry                 ? K_NONE
                                       : K_AUDIT;
    char reason[600];
    snprintf(reason, sizeof(reason), "%s policy %s rule %u",
             p->action == ACT_DENY ? "denied by DENY" : "allowed by ALLOW", p->id, r->index);
    r->reason = arena_str(b->p, reason, strlen(reason));
    int rc = 0;
    if (rawfield(L, -1, "from") == LUA_TTABLE) {
        r->from_present = true;
        rc = build_alts(b, lua_gettop(L), "from", source_fields, 8, &r->from, &r->n_from);
    }
    lua_pop(L, 1);
    if (rc == 0 && rawfield(L, -1, "to") == LUA_TTABLE) {
        r->to_present = true;
        rc = build_alts(b, lua_gettop(L), "to", op_fields, 8, &r->to, &r->n_to);
    }
    lua_pop(L, 1);
    if (rc == 0 && rawfield(L, -1, "when") == LUA_TTABLE)
        rc = build_when(b, lua_gettop(L), r);
    lua_pop(L, 1);
    return rc;
}

/* ---- buckets: per workload, the policies and rules that select it, indexed ---- */

static const check *positive_check(const alt *a, uint8_t at)
{
    for (uint32_t i = 0; i < a->n; i++)
        if (a->checks[i].attr == at && !a->checks[i].negated)
            return &a->checks[i];
    return NULL;
}

/* Every alternative must pin the attribute to exact values or prefixes. */
static bool indexable(const alt *alts, uint32_t n, uint8_t at)
{
    if (n == 0)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const check *c = positive_check(&alts[i], at);
        if (c == NULL)
            return false;
        for (uint32_t k = 0; k < c->n; k++) {
            uint8_t kind = c->pats[k].kind;
            if (kind != P_EXACT && kind != P_PREFIX && !(at == A_PATH && kind == P_TEMPLATE))
                return false;
        }
    }
    return true;
}

static int index_rule(bucket *bk, const rule *r, uint32_t id)
{
    const alt *alts = NULL;
    uint32_t n = 0;
    uint8_t at = 0;
    strmap *exact = NULL, *prefix = NULL;
    if (r->from_present && indexable(r->from, r->n_from, A_SOURCE_PRINCIPAL)) {
        alts = r->from, n = r->n_from, at = A_SOURCE_PRINCIPAL;
        exact = &bk->principal_exact, prefix = &bk->principal_prefix;
    } else if (r->to_present && indexable(r->to, r->n_to, A_PATH)) {
        alts = r->to, n = r->n_to, at = A_PATH;
        exact = &bk->path_exact, prefix = &bk->path_prefix;
    } else {
        return push_id(&bk->always, &bk->n_always, &bk->cap_always, id);
    }
    for (uint32_t i = 0; i < n; i++) {
        const check *c = positive_check(&alts[i], at);
        for (uint32_t k = 0; k < c->n; k++) {
            const pat *x = &c->pats[k];
            int rc;
            if (x->kind == P_EXACT) {
                rc = strmap_add(exact, x->s, x->len, id);
            } else { /* a prefix, or the literal text before a template's first '{' */
                size_t len = x->kind == P_PREFIX ? x->len
                             : (size_t)((const char *)memchr(x->s, '{', x->len) - x->s);
                rc = strmap_add(prefix, x->s, len, id);
            }
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static void bucket_init(bucket *bk, const char *service, uint64_t seed)
{
    memset(bk, 0, sizeof(*bk));
    bk->service = service;
    strmap_init(&bk->principal_exact, seed);
    strmap_init(&bk->principal_prefix, seed + 1);
    strmap_init(&bk->path_exact, seed + 2);
    strmap_init(&bk->path_prefix, seed + 3);
}

static void bucket_dispose(bucket *bk)
{
    free(bk->policies);
    free(bk->rules);
    free(bk->always);
    strmap_dispose(&bk->principal_exact);
    strmap_dispose(&bk->principal_prefix);
    strmap_dispose(&bk->path_exact);
    strmap_dispose(&bk->path_prefix);
}

static bool selects(const pol *p, const char *service)
{
    if (p->services == NULL)
        return true;
    if (service == NULL)
        return false;
    for (uint32_t i = 0; i < p->n_services; i++)
        if (strcmp(p->services[i], service) == 0)
            return true;
    return false;
}

static int fill_bucket(program *p, bucket *bk)
{
    int rc = 0;
    for (uint32_t i = 0; i < p->n_pols && rc == 0; i++) {
        const pol *x = &p->pols[i];
        if (!selects(x, bk->service))
            continue;
        rc = push_id(&bk->policies, &bk->n_policies, &bk->cap_policies, i);
        bk->has_dry |= x->dry;
        if (x->action == ACT_ALLOW && !x->dry)
            bk->allow_exists = true;
        if (x->action == ACT_ALLOW)
            bk->dry_allow_exists = true;
    }
    for (uint32_t i = 0; i < p->n_rules && rc == 0; i++) {
        const rule *r = p->rules[i];
        if (!selects(&p->pols[r->policy], bk->service))
            continue;
        rc = push_id(&bk->rules, &bk->n_rules, &bk->cap_rules, i);
        if (rc == 0 && r->kind != K_NONE)
            rc = index_rule(bk, r, i);
    }
    char reason[400];
    snprintf(reason, sizeof(reason), "no ALLOW policy selects %s%s%s",
             bk->service ? "service " : "this workload", bk->service ? bk->service : "",
             p->default_allow ? "; default allow" : "; default deny");
    bk->default_reason = arena_str(p, reason, strlen(reason));
    return rc == 0 && bk->default_reason == NULL ? WARD_ENOMEM : rc;
}

/* One bucket per service any selector names, plus the wildcard bucket.
 * Building each bucket by a pass over all rules is O(services x rules);
 * fine for the sizes we load (10,000 rules, a few hundred services). */
static int build_buckets(program *p)
{
    uint64_t seed = (uint64_t)(uintptr_t)p ^ (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL;
    strmap_init(&p->by_service, seed);
    bucket_init(&p->wildcard, NULL, seed + 7);
    int rc = fill_bucket(p, &p->wildcard);
    uint32_t cap = 0;
    for (uint32_t i = 0; i < p->n_pols && rc == 0; i++) {
        const pol *x = &p->pols[i];
        for (uint32_t s = 0; s < x->n_services && rc == 0; s++) {
            const char *name = x->services[s];
            if (strmap_get(&p->by_service, name, strlen(name)) != NULL)
                continue;
            if (p->n_buckets == cap) {
                cap = cap ? cap * 2 : 8;
                bucket *nb = realloc(p->buckets, cap * sizeof(*nb));
                if (nb == NULL)
                    return WARD_ENOMEM;
                p->buckets = nb;
            }
            bucket *bk = &p->buckets[p->n_buckets];
            bucket_init(bk, name, seed + 11 + p->n_buckets);
            rc = strmap_add(&p->by_service, name, strlen(name), p->n_buckets);
            p->n_buckets++;
            if (rc == 0)
                rc = fill_bucket(p, bk);
        }
    }
    return rc;
}

int program_build(lua_State *L, program **out, ward_err *err)
{
    int rc = 0;
    program *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return WARD_ENOMEM;
    builder b = {.p = p, .L = L, .err = err, .where = "bundle"};
    int top = lua_gettop(L);
    if (!lua_istable(L, -1)) {
        rc = bad(&b, "did not return a table");
        goto fail;
    }
    size_t len;
    const char *format = opt_str(&b, -1, "format", &len);
    if (format == NULL || strcmp(format, "ward-bundle/1") != 0) {
        rc = bad(&b, "unknown format (want ward-bundle/1)");
        goto fail;
    }
    const char *dflt = opt_str(&b, -1, "default", &len);
    p->default_allow = dflt != NULL && strcmp(dflt, "allow") == 0;
    if (rawfield(L, top, "policies") != LUA_TTABLE || rawfield(L, top, "rules") != LUA_TTABLE) {
        rc = bad(&b, "lacks policies or rules");
        goto fail;
    }
    /* stack: bundle, policies, rules */
    lua_Unsigned np = lua_rawlen(L, top + 1), nr = lua_rawlen(L, top + 2);
    if (np > 100000 || nr > 1000000) {
        rc = bad(&b, "too many policies or rules");
        goto fail;
    }
    p->n_pols = (uint32_t)np;
    p->n_rules = (uint32_t)nr;
    p->pols = calloc(np ? np : 1, sizeof(pol));
    p->rules = calloc(nr ? nr : 1, sizeof(rule *));
    p->seen = calloc(nr ? nr : 1, sizeof(uint32_t));
    if (p->pols == NULL || p->rules == NULL || p->seen == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    for (lua_Unsigned i = 1; i <= np; i++) {
        if (lua_rawgeti(L, top + 1, (lua_Integer)i) != LUA_TTABLE) {
            rc = bad(&b, "a policy must be a table");
            goto fail;
        }
        rc = build_policy(&b, (uint32_t)i - 1);
        lua_pop(L, 1);
        WARD_TRY(rc);
    }
    for (lua_Unsigned i = 1; i <= nr; i++) {
        if (lua_rawgeti(L, top + 2, (lua_Integer)i) != LUA_TTABLE) {
            rc = bad(&b, "a rule must be a table");
            goto fail;
        }
        rc = build_rule(&b, (uint32_t)i - 1);
        lua_pop(L, 1);
        WARD_TRY(rc);
    }
    WARD_TRY(build_buckets(p));
    p->md = pcre2_match_data_create(1, NULL);
    p->mctx = pcre2_match_context_create(NULL);
    p->jit = pcre2_jit_stack_create(32 * 1024, 512 * 1024, NULL);
    if (p->md == NULL || p->mctx == NULL || p->jit == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    pcre2_set_match_limit(p->mctx, RE_MATCH_LIMIT);
    pcre2_set_depth_limit(p->mctx, RE_DEPTH_LIMIT);
    pcre2_jit_stack_assign(p->mctx, NULL, p->jit);
    lua_settop(L, top);
    *out = p;
    return 0;
fail:
    lua_settop(L, top);
    program_free(p, L);
    return rc;
}

static void free_regexes(check *checks, uint32_t n)
{
    for (uint32_t c = 0; c < n; c++)
        for (uint32_t k = 0; k < checks[c].n; k++)
            if (checks[c].pats[k].kind == P_REGEX)
                pcre2_code_free(checks[c].pats[k].u.re);
}

void program_free(program *p, lua_State *L)
{
    if (p == NULL)
        return;
    for (uint32_t i = 0; i < p->n_rules; i++) {
        rule *r = p->rules[i];
        if (r == NULL)
            continue; /* the build failed before this rule */
        for (uint32_t k = 0; k < r->n_lua && L != NULL; k++)
            luaL_unref(L, LUA_REGISTRYINDEX, r->lua_refs[k]);
        for (uint32_t a = 0; a < r->n_from; a++)
            free_regexes(r->from[a].checks, r->from[a].n);
        for (uint32_t a = 0; a < r->n_to; a++)
            free_regexes(r->to[a].checks, r->to[a].n);
        free_regexes(r->when, r->n_when);
    }
    bucket_dispose(&p->wildcard);
    for (uint32_t i = 0; i < p->n_buckets; i++)
        bucket_dispose(&p->buckets[i]);
    free(p->buckets);
    strmap_dispose(&p->by_service);
    free(p->pols);
    free(p->rules);
    free(p->seen);
    pcre2_match_data_free(p->md);
    pcre2_match_context_free(p->mctx);
    pcre2_jit_stack_free(p->jit);
    while (p->arena != NULL) {
        chunk *c = p->arena;
        p->arena = c->next;
        free(c);
    }
    free(p);
}
