/* program.c - the compiled rules as compact C data: built from the Lua bundle, laid out contiguously, indexed */
#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "authz/authz_int.h"
#include "authz/program_int.h"

const char *const program_field_names[] = {
    "principals", "notPrincipals", "namespaces", "notNamespaces", "trustDomains",
    "notTrustDomains", "ipBlocks", "notIpBlocks", "methods", "notMethods", "hosts", "notHosts",
    "ports", "notPorts", "paths", "notPaths", "values", "notValues", "headers", "queryParams",
};
enum { NAME_SOURCE = 0, NAME_OPERATION = 8, NAME_VALUES = 16 };

#define HUGE_PAGE (2u << 20)
#define RECORD_ALIGN 64
#define PACK_MIN (1u << 20) /* a program reading this much is packed on huge pages */

/* Up to this many exact keys of one attribute per bucket go in its filter. */
#define FILTERED_EXACT_KEYS 32

/* ---- arena: strings and policies, freed at once ---- */

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
    /* the rule records being written (offsets stay valid, pointers do not) */
    char *code;
    size_t len, cap;
    lua_cond *lua; /* the current rule's `lua:` conditions */
    uint32_t n_lua, cap_lua;
    char *strings; /* the decisions' strings */
    size_t strings_len, strings_cap;
} builder;

static int bad(builder *b, const char *what)
{
    ward_err_set(b->err, "policy bundle: %s: %s", b->where ? b->where : "?", what);
    return WARD_ERESULT;
}

/* Adds s (NUL-terminated) to the decisions' strings; *off is where. */
static int add_string(builder *b, const char *s, uint32_t *off)
{
    size_t len = strlen(s) + 1;
    if (b->strings_cap - b->strings_len < len) {
        size_t cap = b->strings_cap ? b->strings_cap : 4096;
        while (cap - b->strings_len < len)
            cap *= 2;
        char *c = realloc(b->strings, cap);
        if (c == NULL)
            return WARD_ENOMEM;
        b->strings = c;
        b->strings_cap = cap;
    }
    if (b->strings_len > UINT32_MAX)
        return bad(b, "too many strings");
    *off = (uint32_t)b->strings_len;
    memcpy(b->strings + b->strings_len, s, len);
    b->strings_len += len;
    return 0;
}

/* Appends n zeroed bytes (rounded up to PROGRAM_ALIGN) to the records; *off is where. */
static int code_reserve(builder *b, size_t n, size_t *off)
{
    n = program_align(n);
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap - b->len < n)
            cap *= 2;
        char *c = realloc(b->code, cap);
        if (c == NULL)
            return WARD_ENOMEM;
        b->code = c;
        b->cap = cap;
    }
    *off = b->len;
    memset(b->code + b->len, 0, n);
    b->len += n;
    return 0;
}

#define AT(b, off, type) ((type *)(void *)((b)->code + (off)))

/* The size of the record begun at off, now that it is complete. */
static int code_size(builder *b, size_t off, uint32_t *size)
{
    if (b->len - off > UINT32_MAX)
        return bad(b, "a rule is too large");
    *size = (uint32_t)(b->len - off);
    return 0;
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

static int emit_pat(builder *b, uint8_t kind, size_t len, const void *payload, size_t payload_len)
{
    size_t off;
    if (len > UINT32_MAX)
        return bad(b, "a pattern is too long");
    int rc = code_reserve(b, sizeof(pat) + payload_len, &off);
    if (rc < 0)
        return rc;
    pat *x = AT(b, off, pat);
    x->kind = kind;
    x->len = (uint32_t)len;
    if (payload_len > 0)
        memcpy(x + 1, payload, payload_len);
    return 0;
}

/* Templates: "{**}" only as the last segment. */
static bool template_valid(const char *s, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '/')
            continue;
        if (i - start == 4 && memcmp(s + start, "{**}", 4) == 0 && i != len)
            return false;
        start = i + 1;
    }
    return true;
}

/* The bytes of whole literal segments (each with its '/') before a
 * template's first '{', at most 65535: a path must start with them. Not
 * the segment before a last "{**}", which matches without its '/'. */
static uint16_t template_lead(const char *s, size_t len)
{
    size_t lead = 0, before = 0;
    for (size_t i = 0; i < len && i < 65535 && s[i] != '{'; i++) {
        if (s[i] == '/') {
            before = lead;
            lead = i + 1;
        }
    }
    if (len - lead == 4 && memcmp(s + lead, "{**}", 4) == 0)
        lead = before;
    return (uint16_t)lead;
}

bool program_template_match(const char *t, size_t tlen, const char *s, size_t len, size_t lead)
{
    if (len < lead || memcmp(s, t, lead) != 0)
        return false;
    const char *tend = t + tlen, *end = s + len;
    t += lead;
    s += lead;
    bool more = true; /* a path has at least one (maybe empty) segment */
    for (;;) {
        const char *tseg = t;
        while (t < tend && *t != '/')
            t++;
        size_t tl = (size_t)(t - tseg);
        bool star = tl == 3 && memcmp(tseg, "{*}", 3) == 0;
        if (tl == 4 && memcmp(tseg, "{**}", 4) == 0)
            return true;
        if (!more)
            return false;
        const char *seg = s;
        while (s < end && *s != '/')
            s++;
        size_t sl = (size_t)(s - seg);
        if (star ? sl == 0 : (sl != tl || memcmp(seg, tseg, sl) != 0))
            return false;
        if (s < end)
            s++; /* past the '/': another segment follows, maybe empty */
        else
            more = false;
        if (t == tend)
            break;
        t++;
    }
    return !more;
}

static int note_regex(builder *b, pcre2_code *re)
{
    program *p = b->p;
    if (p->n_regexes == p->cap_regexes) {
        uint32_t cap = p->cap_regexes ? p->cap_regexes * 2 : 16;
        pcre2_code **v = realloc(p->regexes, cap * sizeof(*v));
        if (v == NULL)
            return WARD_ENOMEM;
        p->regexes = v;
        p->cap_regexes = cap;
    }
    p->regexes[p->n_regexes++] = re;
    return 0;
}

/* One pattern from the bundle: a string in the policy syntax, a {regex=}
 * table, or a port number; `cidr` says the field holds CIDR blocks. */
static int build_pat(builder *b, int idx, bool cidr, bool path)
{
    lua_State *L = b->L;
    int t = lua_type(L, idx);
    if (t == LUA_TNUMBER && lua_isinteger(L, idx)) {
        lua_Integer v = lua_tointeger(L, idx);
        if (v < 1 || v > 65535)
            return bad(b, "port out of range");
        return emit_pat(b, P_PORT, (size_t)v, NULL, 0);
    }
    if (t == LUA_TTABLE) {
        size_t len;
        const char *s = NULL;
        if (rawfield(L, idx, "regex") == LUA_TSTRING)
            s = lua_tolstring(L, -1, &len);
        if (s == NULL) {
            lua_pop(L, 1);
            return bad(b, "a table pattern must be {regex = \"...\"}");
        }
        int ecode;
        PCRE2_SIZE eoff;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)s, len, PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                                       &ecode, &eoff, NULL);
        lua_pop(L, 1);
        if (re == NULL) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(ecode, msg, sizeof(msg));
            ward_err_set(b->err, "policy bundle: %s: regex at offset %zu: %s", b->where,
                         (size_t)eoff, (char *)msg);
            return WARD_ERESULT;
        }
        if (note_regex(b, re) < 0) {
            pcre2_code_free(re);
            return WARD_ENOMEM;
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter */
        return emit_pat(b, P_REGEX, len, &re, sizeof(re));
    }
    if (t != LUA_TSTRING)
        return bad(b, "a pattern must be a string");
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (cidr) {
        ward_cidr c;
        memset(&c, 0, sizeof(c));
        if (ward_cidr_parse(s, len, &c, b->err) < 0)
            return bad(b, "bad CIDR block");
        return emit_pat(b, P_CIDR, 0, &c, sizeof(c));
    }
    if (len == 1 && s[0] == '*')
        return emit_pat(b, P_ANY, 0, NULL, 0);
    if (path && memchr(s, '{', len) != NULL) {
        if (!template_valid(s, len))
            return bad(b, "template \"{**}\" must be last");
        int rc = emit_pat(b, P_TEMPLATE, len, s, len);
        if (rc == 0) /* the last pattern written */
            AT(b, b->len - sizeof(pat) - program_align(len), pat)->lead = template_lead(s, len);
        return rc;
    }
    if (len > 1 && s[len - 1] == '*')
        return emit_pat(b, P_PREFIX, len - 1, s, len - 1);
    if (len > 1 && s[0] == '*')
        return emit_pat(b, P_SUFFIX, len - 1, s + 1, len - 1);
    return emit_pat(b, P_EXACT, len, s, len);
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

typedef struct check_spec {
    uint8_t attr, name;
    bool negated, cidr, path;
    uint32_t item;
    const char *header; /* A_HEADER: the name as written (lowercased here) */
    size_t header_len;
} check_spec;

/* The list at the top of the stack becomes a check and its patterns. */
static int build_check(builder *b, const check_spec *cs)
{
    lua_State *L = b->L;
    if (!lua_istable(L, -1))
        return bad(b, "a field must be a list");
    lua_Unsigned n = lua_rawlen(L, -1);
    if (n == 0 || n > 100000)
        return bad(b, "a field must list 1..100000 values");
    size_t off, hoff;
    int rc = code_reserve(b, sizeof(check), &off);
    if (rc < 0)
        return rc;
    if (cs->item > UINT16_MAX)
        return bad(b, "too many sources, operations or conditions");
    check *c = AT(b, off, check);
    c->attr = cs->attr;
    c->flags = (uint8_t)(cs->name | (cs->negated ? CHECK_NEGATED : 0));
    c->item = (uint16_t)cs->item;
    if (cs->attr == A_HEADER || cs->attr == A_QPARAM) {
        if (cs->header_len > UINT32_MAX - 8)
            return bad(b, "a header name is too long");
        uint32_t hl = (uint32_t)cs->header_len;
        if ((rc = code_reserve(b, sizeof(uint32_t) + hl, &hoff)) < 0)
            return rc;
        memcpy(b->code + hoff, &hl, sizeof(hl));
        char *name = b->code + hoff + sizeof(hl);
        for (size_t i = 0; i < hl; i++) {
            char ch = cs->header[i];
            name[i] = (cs->attr == A_HEADER && ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        }
    }
    /* ports in string form ("8443") stay strings for `when`, numbers for `to` */
    for (lua_Unsigned i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i);
        rc = build_pat(b, -1, cs->cidr, cs->path);
        lua_pop(L, 1);
        if (rc < 0)
            return rc;
    }
    return code_size(b, off, &AT(b, off, check)->size);
}

/* A list of sources or operations (`from` / `to`) at idx: a group of alternatives. */
static int build_alts(builder *b, int idx, const field_spec *specs, size_t n_specs, uint8_t name)
{
    lua_State *L = b->L;
    int rc = 0;
    size_t goff;
    lua_Unsigned n = lua_rawlen(L, idx);
    if (n > UINT32_MAX)
        return bad(b, "too many sources or operations");
    WARD_TRY(code_reserve(b, sizeof(group), &goff));
    for (lua_Unsigned i = 1; i <= n; i++) {
        size_t aoff;
        lua_rawgeti(L, idx, (lua_Integer)i);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            return bad(b, "a source or operation must be a table");
        }
        WARD_TRY(code_reserve(b, sizeof(alt), &aoff));
        for (size_t f = 0; f < n_specs && rc == 0; f++) {
            if (rawfield(L, -1, specs[f].name) != LUA_TNIL) {
                check_spec cs = {.attr = specs[f].attr, .name = (uint8_t)(name + f),
                                 .negated = specs[f].negated, .cidr = specs[f].cidr,
                                 .path = specs[f].path, .item = (uint32_t)(i - 1)};
                rc = build_check(b, &cs);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        WARD_TRY(rc);
        WARD_TRY(code_size(b, aoff, &AT(b, aoff, alt)->size));
    }
    return code_size(b, goff, &AT(b, goff, group)->size);
fail:
    return rc;
}

/* Parses "request.headers[name]" or a plain attribute name. */
static int when_attr(builder *b, const char *key, size_t len, check_spec *cs)
{
    static const char hdr[] = "request.headers[";
    size_t hl = sizeof(hdr) - 1;
    if (len > hl + 1 && memcmp(key, hdr, hl) == 0 && key[len - 1] == ']') {
        cs->attr = A_HEADER;
        cs->header = key + hl;
        cs->header_len = len - hl - 1;
        return 0;
    }
    for (size_t i = 0; i < sizeof(when_keys) / sizeof(when_keys[0]); i++) {
        if (strlen(when_keys[i].key) == len && memcmp(when_keys[i].key, key, len) == 0) {
            cs->attr = when_keys[i].attr;
            return 0;
        }
    }
    return bad(b, "unknown when key");
}

static int note_lua(builder *b, int ref, uint32_t item)
{
    program *p = b->p;
    if (p->n_refs == p->cap_refs) {
        uint32_t cap = p->cap_refs ? p->cap_refs * 2 : 16;
        int *v = realloc(p->refs, cap * sizeof(*v));
        if (v == NULL)
            return WARD_ENOMEM;
        p->refs = v;
        p->cap_refs = cap;
    }
    p->refs[p->n_refs++] = ref; /* program_free unrefs it */
    if (b->n_lua == b->cap_lua) {
        uint32_t cap = b->cap_lua ? b->cap_lua * 2 : 8;
        lua_cond *v = realloc(b->lua, cap * sizeof(*v));
        if (v == NULL)
            return WARD_ENOMEM;
        b->lua = v;
        b->cap_lua = cap;
    }
    b->lua[b->n_lua++] = (lua_cond){ref, item};
    return 0;
}

/* The `when` list at idx: a group of checks; `lua:` conditions go to b->lua. */
static int build_when(builder *b, int idx)
{
    lua_State *L = b->L;
    int rc = 0;
    size_t goff;
    lua_Unsigned n = lua_rawlen(L, idx);
    WARD_TRY(code_reserve(b, sizeof(group), &goff));
    for (lua_Unsigned i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (lua_Integer)i);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            return bad(b, "a condition must be a table");
        }
        if (rawfield(L, -1, "lua") == LUA_TFUNCTION) {
            int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops it */
            lua_pop(L, 1);
            if (note_lua(b, ref, (uint32_t)(i - 1)) < 0) {
                if (b->p->n_refs == 0 || b->p->refs[b->p->n_refs - 1] != ref)
                    luaL_unref(L, LUA_REGISTRYINDEX, ref);
                return WARD_ENOMEM;
            }
            continue;
        }
        lua_pop(L, 1);
        size_t klen;
        const char *key = NULL;
        if (rawfield(L, -1, "key") == LUA_TSTRING)
            key = lua_tolstring(L, -1, &klen);
        if (key == NULL) {
            lua_pop(L, 2);
            return bad(b, "a condition needs key or lua");
        }
        check_spec cs = {.item = (uint32_t)(i - 1)};
        rc = when_attr(b, key, klen, &cs);
        cs.cidr = cs.attr == A_SOURCE_IP;
        cs.path = cs.attr == A_PATH;
        lua_pop(L, 1); /* the key string stays alive in the condition table */
        static const char *const lists[2] = {"values", "notValues"};
        for (int neg = 0; neg < 2 && rc == 0; neg++) {
            if (rawfield(L, -1, lists[neg]) != LUA_TNIL) {
                cs.negated = neg == 1;
                cs.name = (uint8_t)(NAME_VALUES + neg);
                rc = build_check(b, &cs);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        WARD_TRY(rc);
    }
    return code_size(b, goff, &AT(b, goff, group)->size);
fail:
    return rc;
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
    int rc = add_string(b, p->id, &p->id_off);
    if (rc < 0)
        return rc;
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
                if ((p->services[p->n_services++] = arena_str(b->p, s, len)) == NULL) {
                    lua_pop(L, 2);
                    return WARD_ENOMEM;
                }
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return 0;
}

/* One rule record: the header, from, to, when, then its `lua:` conditions. */
static int build_rule(builder *b, uint32_t i)
{
    lua_State *L = b->L;
    int rc = 0;
    size_t off, pad = (RECORD_ALIGN - b->len % RECORD_ALIGN) % RECORD_ALIGN;
    if (pad > 0) /* each record starts a cache line: it spans as few as it can */
        WARD_TRY(code_reserve(b, pad, &off));
    WARD_TRY(code_reserve(b, sizeof(rule), &off));
    if (off / PROGRAM_ALIGN > UINT32_MAX)
        return bad(b, "the rules are too large");
    b->p->rule_ref[i] = (uint32_t)(off / PROGRAM_ALIGN);
    lua_Integer policy, index;
    if (!opt_int(b, -1, "policy", &policy) || !opt_int(b, -1, "index", &index) || policy < 1 ||
        policy > b->p->n_pols || index < 0 || index > UINT16_MAX)
        return bad(b, "a rule needs policy and index");
    const pol *p = &b->p->pols[policy - 1];
    b->where = p->id;
    char reason[600];
    snprintf(reason, sizeof(reason), "%s policy %s rule %u",
             p->action == ACT_DENY ? "denied by DENY" : "allowed by ALLOW", p->id,
             (unsigned)index);
    uint32_t why;
    WARD_TRY(add_string(b, reason, &why));
    rule *r = AT(b, off, rule);
    r->id = i;
    r->policy = (uint32_t)policy - 1;
    r->index = (uint16_t)index;
    r->kind = p->action == ACT_DENY    ? (p->dry ? K_DRY_DENY : K_DENY)
              : p->action == ACT_ALLOW ? (p->dry ? K_DRY_ALLOW : K_ALLOW)
              : p->dry                 ? K_NONE
                                       : K_AUDIT;
    r->reason = why;
    r->policy_id = p->id_off;
    uint8_t flags = 0;
    if (rawfield(L, -1, "from") == LUA_TTABLE) {
        flags |= R_FROM;
        rc = build_alts(b, lua_gettop(L), source_fields, 8, NAME_SOURCE);
    }
    lua_pop(L, 1);
    WARD_TRY(rc);
    if (rawfield(L, -1, "to") == LUA_TTABLE) {
        flags |= R_TO;
        rc = build_alts(b, lua_gettop(L), op_fields, 8, NAME_OPERATION);
    }
    lua_pop(L, 1);
    WARD_TRY(rc);
    b->n_lua = 0;
    if (rawfield(L, -1, "when") == LUA_TTABLE) {
        flags |= R_WHEN;
        rc = build_when(b, lua_gettop(L));
    }
    lua_pop(L, 1);
    WARD_TRY(rc);
    if (b->n_lua > UINT16_MAX)
        return bad(b, "too many lua conditions");
    if (b->n_lua > 0) {
        size_t loff;
        WARD_TRY(code_reserve(b, b->n_lua * sizeof(lua_cond), &loff));
        memcpy(b->code + loff, b->lua, b->n_lua * sizeof(lua_cond));
    }
    r = AT(b, off, rule);
    r->flags = flags;
    r->n_lua = (uint16_t)b->n_lua;
    return code_size(b, off, &r->size);
fail:
    return rc;
}

/* ---- buckets: per workload, the policies and rules that select it, indexed ---- */

static const check *positive_check(const alt *a, uint8_t at)
{
    const void *end = part_end(a, a->size);
    for (const check *c = alt_checks(a); (const void *)c < end; c = check_next(c))
        if (c->attr == at && !check_negated(c))
            return c;
    return NULL;
}

/* Every alternative must pin the attribute to exact values or prefixes. */
static bool indexable(const group *g, uint8_t at)
{
    if (g == NULL || g->size == sizeof(group))
        return false;
    const void *end = part_end(g, g->size);
    for (const alt *a = group_alts(g); (const void *)a < end; a = alt_next(a)) {
        const check *c = positive_check(a, at);
        if (c == NULL)
            return false;
        const void *cend = part_end(c, c->size);
        for (const pat *x = check_pats(c); (const void *)x < cend; x = pat_next(x))
            if (x->kind != P_EXACT && x->kind != P_PREFIX && !(at == A_PATH && x->kind == P_TEMPLATE))
                return false;
    }
    return true;
}

/* A bucket while it is being built. */
typedef struct bucket_build {
    strmap_builder keys;
    uint32_t *lens[IX_COUNT], n_lens[IX_COUNT], cap_lens[IX_COUNT];
    uint32_t *always, n_always, cap_always;
    uint32_t *late, n_late, cap_late;
} bucket_build;

/* Notes the length of a prefix key (s, len) of attribute ix: the lengths
 * are kept as (length, last) pairs by ascending length, where last is
 * PREFIX_LAST | the last byte when all keys of the length end with it. */
static int note_length(bucket_build *bb, int ix, const char *s, uint32_t len)
{
    uint32_t n = bb->n_lens[ix] / 2, last = len > 0 ? PREFIX_LAST | (unsigned char)s[len - 1] : 0;
    uint32_t *l = bb->lens[ix];
    for (uint32_t i = 0; i < n; i++) {
        if (l[2 * i] == len) {
            if (l[2 * i + 1] != last)
                l[2 * i + 1] = 0; /* keys of this length end differently */
            return 0;
        }
    }
    if (push_id(&bb->lens[ix], &bb->n_lens[ix], &bb->cap_lens[ix], len) < 0 ||
        push_id(&bb->lens[ix], &bb->n_lens[ix], &bb->cap_lens[ix], last) < 0)
        return WARD_ENOMEM;
    l = bb->lens[ix];
    for (uint32_t i = n; i > 0 && l[2 * (i - 1)] > len; i--) { /* kept sorted ascending */
        l[2 * i] = l[2 * (i - 1)];
        l[2 * i + 1] = l[2 * (i - 1) + 1];
        l[2 * (i - 1)] = len;
        l[2 * (i - 1) + 1] = last;
    }
    return 0;
}

/* Files the rule under its keys: of its principals, else of its paths,
 * else of its namespaces; or among the rules always considered. With
 * count_only, only counts its exact keys. */
static int index_rule(program *p, bucket *bk, bucket_build *bb, const rule *r, uint32_t ref,
                      bool count_only)
{
    const group *g;
    int ix;
    uint8_t at;
    if (indexable(rule_from(r), A_SOURCE_PRINCIPAL)) {
        g = rule_from(r), ix = IX_PRINCIPAL, at = A_SOURCE_PRINCIPAL;
    } else if (indexable(rule_to(r), A_PATH)) {
        g = rule_to(r), ix = IX_PATH, at = A_PATH;
    } else if (indexable(rule_from(r), A_SOURCE_NAMESPACE)) {
        g = rule_from(r), ix = IX_NAMESPACE, at = A_SOURCE_NAMESPACE;
        if (!count_only && push_id(&bb->late, &bb->n_late, &bb->cap_late, ref) < 0)
            return WARD_ENOMEM;
    } else {
        if (count_only)
            return 0;
        if (push_id(&bb->late, &bb->n_late, &bb->cap_late, ref) < 0)
            return WARD_ENOMEM;
        return push_id(&bb->always, &bb->n_always, &bb->cap_always, ref);
    }
    const void *end = part_end(g, g->size);
    for (const alt *a = group_alts(g); (const void *)a < end; a = alt_next(a)) {
        const check *c = positive_check(a, at);
        const void *cend = part_end(c, c->size);
        for (const pat *x = check_pats(c); (const void *)x < cend; x = pat_next(x)) {
            const char *s = pat_text(x);
            int rc;
            if (count_only) {
                bk->n_exact[ix] += x->kind == P_EXACT;
                continue;
            }
            if (x->kind == P_EXACT) {
                rc = strmap_builder_add(&bb->keys, program_key(strmap_hash(p->seed, s, x->len), ix, false),
                                        ref, bk->exact_filtered[ix]);
            } else { /* a prefix, or the literal text before a template's first '{' */
                uint32_t len = x->kind == P_PREFIX ? x->len
                               : (uint32_t)((const char *)memchr(s, '{', x->len) - s);
                rc = note_length(bb, ix, s, len);
                if (rc == 0)
                    rc = strmap_builder_add(&bb->keys, program_key(strmap_hash(p->seed, s, len), ix, true),
                                            ref, true);
            }
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

static void bucket_build_dispose(bucket_build *bb)
{
    strmap_builder_dispose(&bb->keys);
    for (int ix = 0; ix < IX_COUNT; ix++)
        free(bb->lens[ix]);
    free(bb->always);
    free(bb->late);
}

static void bucket_dispose(bucket *bk)
{
    free(bk->policies);
    free(bk->rules);
    free(bk->own);
    strmap_dispose(&bk->index);
}

/* Indexes the bucket's rules and fills what decisions read. */
static int finish_bucket(program *p, bucket *bk)
{
    int rc = 0;
    bucket_build bb;
    memset(&bb, 0, sizeof(bb));
    strmap_builder_init(&bb.keys);
    for (uint32_t i = 0; i < bk->n_policies; i++) {
        const pol *x = &p->pols[bk->policies[i]];
        bk->has_dry |= x->dry;
        if (x->action == ACT_ALLOW && !x->dry) {
            bk->allow_exists = true;
            if (bk->deny_status == 0 && x->deny_status) {
                bk->deny_status = x->deny_status;
                bk->deny_body = x->deny_body;
            }
        }
        if (x->action == ACT_ALLOW)
            bk->dry_allow_exists = true;
    }
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < bk->n_rules; i++) {
            uint32_t ref = p->rule_ref[bk->rules[i]];
            const rule *r = program_rule(p, ref);
            if (r->kind != K_NONE)
                WARD_TRY(index_rule(p, bk, &bb, r, ref, pass == 0));
        }
        /* few exact keys: a lookup asks the filter first, not the table */
        for (int ix = 0; ix < IX_COUNT; ix++)
            bk->exact_filtered[ix] = bk->n_exact[ix] <= FILTERED_EXACT_KEYS;
    }
    size_t words = (size_t)bb.n_always + bb.n_late;
    for (int ix = 0; ix < IX_COUNT; ix++)
        words += bb.n_lens[ix];
    bk->own = malloc((words ? words : 1) * sizeof(uint32_t));
    if (bk->own == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    uint32_t *w = bk->own;
    for (int ix = 0; ix < IX_COUNT; ix++) {
        if (bb.n_lens[ix] > 0)
            memcpy(w, bb.lens[ix], bb.n_lens[ix] * sizeof(uint32_t));
        bk->lens[ix] = w;
        bk->n_lens[ix] = bb.n_lens[ix] / 2;
        w += bb.n_lens[ix];
    }
    if (bb.n_always > 0)
        memcpy(w, bb.always, bb.n_always * sizeof(uint32_t));
    bk->always = w;
    bk->n_always = bb.n_always;
    w += bb.n_always;
    if (bb.n_late > 0)
        memcpy(w, bb.late, bb.n_late * sizeof(uint32_t));
    bk->late = w;
    bk->n_late = bb.n_late;
    WARD_TRY(strmap_build(&bk->index, &bb.keys));
    char reason[400];
    snprintf(reason, sizeof(reason), "no ALLOW policy selects %s%s%s",
             bk->service ? "service " : "this workload", bk->service ? bk->service : "",
             p->default_allow ? "; default allow" : "; default deny");
    bk->default_reason = arena_str(p, reason, strlen(reason));
    if (bk->default_reason == NULL)
        rc = WARD_ENOMEM;
fail:
    bucket_build_dispose(&bb);
    return rc;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The bucket of a service name, among the sorted buckets. */
static bucket *find_bucket(program *p, const char *name)
{
    uint32_t lo = 0, hi = p->n_buckets;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(p->buckets[mid].service, name);
        if (c == 0)
            return &p->buckets[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Adds policy or rule `id` of policy x to every bucket x selects: all of
 * them (and the wildcard bucket) without a selector, else its services'. */
static int assign(program *p, const pol *x, uint32_t id, bool is_rule)
{
    int rc = 0;
    if (x->services == NULL) {
        for (uint32_t i = 0; i <= p->n_buckets && rc == 0; i++) {
            bucket *bk = i < p->n_buckets ? &p->buckets[i] : &p->wildcard;
            rc = is_rule ? push_id(&bk->rules, &bk->n_rules, &bk->cap_rules, id)
                         : push_id(&bk->policies, &bk->n_policies, &bk->cap_policies, id);
        }
        return rc;
    }
    for (uint32_t s = 0; s < x->n_services && rc == 0; s++) {
        bucket *bk = find_bucket(p, x->services[s]);
        uint32_t *v = is_rule ? bk->rules : bk->policies;
        uint32_t n = is_rule ? bk->n_rules : bk->n_policies;
        if (n > 0 && v[n - 1] == id)
            continue; /* a service listed twice */
        rc = is_rule ? push_id(&bk->rules, &bk->n_rules, &bk->cap_rules, id)
                     : push_id(&bk->policies, &bk->n_policies, &bk->cap_policies, id);
    }
    return rc;
}

/* One bucket per service any selector names, plus the wildcard bucket. */
static int build_buckets(program *p)
{
    int rc = 0;
    size_t n = 0;
    for (uint32_t i = 0; i < p->n_pols; i++)
        n += p->pols[i].n_services;
    const char **names = malloc((n ? n : 1) * sizeof(*names));
    if (names == NULL)
        return WARD_ENOMEM;
    n = 0;
    for (uint32_t i = 0; i < p->n_pols; i++)
        for (uint32_t s = 0; s < p->pols[i].n_services; s++)
            names[n++] = p->pols[i].services[s];
    qsort(names, n, sizeof(*names), name_cmp);
    p->buckets = calloc(n ? n : 1, sizeof(bucket));
    if (p->buckets == NULL) {
        free(names);
        return WARD_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
            continue;
        bucket *bk = &p->buckets[p->n_buckets++];
        bk->service = names[i];
        bk->service_len = strlen(names[i]);
    }
    free(names);
    for (uint32_t i = 0; i < p->n_pols && rc == 0; i++)
        rc = assign(p, &p->pols[i], i, false);
    for (uint32_t i = 0; i < p->n_rules && rc == 0; i++)
        rc = assign(p, &p->pols[program_rule(p, p->rule_ref[i])->policy], i, true);
    WARD_TRY(rc);
    WARD_TRY(finish_bucket(p, &p->wildcard));
    strmap_builder names_map;
    strmap_builder_init(&names_map);
    for (uint32_t i = 0; i < p->n_buckets && rc == 0; i++) {
        bucket *bk = &p->buckets[i];
        rc = finish_bucket(p, bk);
        if (rc == 0)
            rc = strmap_builder_add(&names_map, strmap_hash(p->seed ^ SERVICE_SALT, bk->service,
                                                            bk->service_len), i, false);
    }
    if (rc < 0) {
        strmap_builder_dispose(&names_map);
        goto fail;
    }
    return strmap_build(&p->by_service, &names_map);
fail:
    return rc;
}

/* ---- packing: what decisions read, in one block on huge pages ---- */

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static size_t strmap_bytes(const strmap *m)
{
    size_t n = align64((m->filter_mask + 1) / 8);
    if (m->slots != NULL)
        n += align64((m->mask + 1) * sizeof(strmap_slot)) + align64(m->list_words * sizeof(uint32_t));
    return n;
}

static void *pack_copy(char **at, const void *src, size_t n)
{
    void *d = *at;
    memcpy(d, src, n);
    *at += align64(n);
    return d;
}

static void pack_strmap(char **at, strmap *m, bool filter)
{
    if (filter) {
        uint64_t *f = pack_copy(at, m->filter, (m->filter_mask + 1) / 8);
        free(m->filter);
        m->filter = f;
        return;
    }
    if (m->slots != NULL) {
        strmap_slot *s = pack_copy(at, m->slots, (m->mask + 1) * sizeof(strmap_slot));
        uint32_t *l = pack_copy(at, m->lists, m->list_words * sizeof(uint32_t));
        free(m->slots);
        free(m->lists);
        m->slots = s;
        m->lists = l;
    }
    m->borrowed = true;
}

static size_t bucket_words(const bucket *bk)
{
    size_t n = (size_t)bk->n_always + bk->n_late;
    for (int ix = 0; ix < IX_COUNT; ix++)
        n += 2 * (size_t)bk->n_lens[ix];
    return n;
}

static void pack_bucket(char **at, bucket *bk)
{
    uint32_t *own = pack_copy(at, bk->own, bucket_words(bk) * sizeof(uint32_t));
    for (int ix = 0; ix < IX_COUNT; ix++)
        bk->lens[ix] = own + (bk->lens[ix] - bk->own);
    bk->always = own + (bk->always - bk->own);
    bk->late = own + (bk->late - bk->own);
    free(bk->own);
    bk->own = NULL;
}

/* A large program gets one block for its records and indexes, on huge
 * pages where the system allows them: the small, hot parts (filters, key
 * lengths, the service map) first, then the tables, then the records.
 * Without the block (small, or no memory) everything stays where it is. */
static void pack(program *p)
{
    size_t need = align64(p->code_len) + strmap_bytes(&p->by_service);
    for (uint32_t i = 0; i <= p->n_buckets; i++) {
        const bucket *bk = i < p->n_buckets ? &p->buckets[i] : &p->wildcard;
        need += strmap_bytes(&bk->index) + align64(bucket_words(bk) * sizeof(uint32_t));
    }
    if (need < PACK_MIN)
        return;
    /* whole 2 MiB parts get huge pages (a TLB miss on a record costs as much
     * as the cache miss): the last part is filled up unless that would more
     * than double the block */
    size_t size = (need + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    if (size - need > need)
        size = (need + 4095) & ~(size_t)4095;
    void *block;
    if (posix_memalign(&block, HUGE_PAGE, size) != 0)
        return;
#ifdef MADV_HUGEPAGE
    madvise(block, size, MADV_HUGEPAGE); /* advice only: fine if refused */
#endif
    char *at = block;
    p->region = at;
    for (uint32_t i = 0; i <= p->n_buckets; i++) {
        bucket *bk = i < p->n_buckets ? &p->buckets[i] : &p->wildcard;
        pack_strmap(&at, &bk->index, true);
        pack_bucket(&at, bk);
    }
    pack_strmap(&at, &p->by_service, true);
    pack_strmap(&at, &p->by_service, false);
    for (uint32_t i = 0; i <= p->n_buckets; i++)
        pack_strmap(&at, i < p->n_buckets ? &p->buckets[i].index : &p->wildcard.index, false);
    char *code = pack_copy(&at, p->code, p->code_len);
    free(p->code);
    p->code = code;
}

int program_build(lua_State *L, program **out, ward_err *err)
{
    int rc = 0;
    program *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return WARD_ENOMEM;
    p->seed = (uint64_t)(uintptr_t)p ^ (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ULL;
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
    p->pols = calloc(np ? np : 1, sizeof(pol));
    p->rule_ref = calloc(nr ? nr : 1, sizeof(uint32_t));
    p->seen = calloc(nr ? nr : 1, sizeof(uint32_t));
    if (p->pols == NULL || p->rule_ref == NULL || p->seen == NULL) {
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
        p->n_rules++;
    }
    lua_pop(L, 2);
    WARD_TRY(route_build(&b, top)); /* their match groups follow the rule records */
    if (b.len > 0) { /* final: records no longer move, each on a cache line */
        void *c;
        if (posix_memalign(&c, RECORD_ALIGN, b.len) != 0) {
            rc = WARD_ENOMEM;
            goto fail;
        }
        memcpy(c, b.code, b.len);
        free(b.code);
        b.code = c;
    }
    p->code = b.code;
    p->code_len = b.len;
    b.code = NULL;
    p->strings = b.strings;
    p->strings_len = b.strings_len;
    b.strings = NULL;
    WARD_TRY(build_buckets(p));
    pack(p);
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
    free(b.lua);
    lua_settop(L, top);
    *out = p;
    return 0;
fail:
    lua_settop(L, top);
    free(b.code);
    free(b.strings);
    free(b.lua);
    program_free(p, L);
    return rc;
}

void program_free(program *p, lua_State *L)
{
    if (p == NULL)
        return;
    for (uint32_t i = 0; i < p->n_refs && L != NULL; i++)
        luaL_unref(L, LUA_REGISTRYINDEX, p->refs[i]);
    for (uint32_t i = 0; i < p->n_regexes; i++)
        pcre2_code_free(p->regexes[i]);
    route_free(p);
    bucket_dispose(&p->wildcard);
    for (uint32_t i = 0; i < p->n_buckets; i++)
        bucket_dispose(&p->buckets[i]);
    free(p->buckets);
    strmap_dispose(&p->by_service);
    if (p->region != NULL)
        free(p->region); /* it holds the records */
    else
        free(p->code);
    free(p->strings);
    free(p->refs);
    free(p->regexes);
    free(p->pols);
    free(p->rule_ref);
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

/* ---- building, for route.c ---- */

lua_State *program_builder_L(builder *b)
{
    return b->L;
}

program *program_builder_program(builder *b)
{
    return b->p;
}

void program_builder_where(builder *b, const char *where)
{
    b->where = where;
}

int program_builder_bad(builder *b, const char *what)
{
    return bad(b, what);
}

int program_builder_reserve(builder *b, size_t n, size_t *off)
{
    return code_reserve(b, n, off);
}

void *program_builder_at(builder *b, size_t off)
{
    return b->code + off;
}

int program_builder_size(builder *b, size_t off, uint32_t *size)
{
    return code_size(b, off, size);
}

int program_builder_check(builder *b, uint8_t at, uint8_t name, uint32_t item, bool path)
{
    check_spec cs = {.attr = at, .name = name, .item = item, .path = path};
    return build_check(b, &cs);
}

int program_builder_named(builder *b, uint8_t at, uint8_t name, uint32_t item, const char *key,
                          size_t key_len, uint8_t kind, const char *value, size_t len)
{
    int rc = 0;
    size_t off, hoff;
    if (item > UINT16_MAX || key_len > UINT16_MAX)
        return bad(b, "a match is too large");
    WARD_TRY(code_reserve(b, sizeof(check), &off));
    check *c = AT(b, off, check);
    c->attr = at;
    c->flags = name;
    c->item = (uint16_t)item;
    uint32_t kl = (uint32_t)key_len;
    WARD_TRY(code_reserve(b, sizeof(uint32_t) + kl, &hoff));
    memcpy(b->code + hoff, &kl, sizeof(kl));
    char *dst = b->code + hoff + sizeof(kl);
    for (size_t i = 0; i < key_len; i++) {
        char ch = key[i];
        dst[i] = (at == A_HEADER && ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    if (kind == P_REGEX) {
        int ecode;
        PCRE2_SIZE eoff;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)value, len, PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                                       &ecode, &eoff, NULL);
        if (re == NULL)
            return bad(b, "bad regex");
        if (note_regex(b, re) < 0) {
            pcre2_code_free(re);
            return WARD_ENOMEM;
        }
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        WARD_TRY(emit_pat(b, P_REGEX, len, &re, sizeof(re)));
    } else {
        WARD_TRY(emit_pat(b, kind, len, value, len));
    }
    return code_size(b, off, &AT(b, off, check)->size);
fail:
    return rc;
}

void *program_builder_alloc(builder *b, size_t size)
{
    return arena_alloc(b->p, size);
}

const char *program_builder_str(builder *b, const char *s, size_t len)
{
    return arena_str(b->p, s, len);
}
