/* decide.c - one decision over a rule program: candidates from the indexes, matching, precedence, the route, explain */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authz/authz_int.h"
#include "authz/program_int.h"

#define NONE UINT32_MAX
#define MAX_PREFIX_KEYS 32 /* prefix keys of one attribute held at once */
#define MAX_DONE 16        /* candidates remembered before stamping p->seen */
#define MAX_LISTS 32       /* candidate lists gathered before evaluating them */
#define PREFETCH_LINES 3   /* of each candidate record, fetched while gathering (most span 3) */

/* The request with what is derived from it, computed on first use. */
typedef struct view {
    const authz_request *r;
    bool identity_done;
    authz_str ns, td;
    int host_state; /* 0 not yet, 1 done, -1 absent */
    char host[1024];
    size_t host_len;
    char port[2][8];
    char time[32];
    char header[8192];
} view;

static void derive_identity(view *v)
{
    if (v->identity_done)
        return;
    v->identity_done = true;
    ward_spiffe_id id;
    authz_str p = v->r->source_principal;
    if (p.ptr == NULL || ward_spiffe_id_parse(p.ptr, p.len, &id, NULL) < 0)
        return;
    v->td = (authz_str){id.td, id.td_len};
    if (!ward_spiffe_id_namespace(&id, &v->ns.ptr, &v->ns.len))
        v->ns.ptr = NULL;
}

static int port_str(view *v, int which, int port, authz_str *out)
{
    if (port < 0)
        return 0;
    int n = snprintf(v->port[which], sizeof(v->port[which]), "%d", port);
    *out = (authz_str){v->port[which], (size_t)n};
    return 1;
}

/* A header by name, case-insensitively; repeats joined with ", " (RFC 9110). */
static int header_value(view *v, const char *name, size_t len, authz_str *out)
{
    const authz_request *r = v->r;
    size_t found = 0, used = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const authz_header *h = &r->headers[i];
        if (h->name.len != len || h->value.ptr == NULL || strncasecmp(h->name.ptr, name, len) != 0)
            continue;
        if (found++ == 0) {
            *out = h->value;
            continue;
        }
        if (found == 2) { /* start the joined copy with the first value */
            if (out->len > sizeof(v->header))
                return WARD_ELIMIT;
            memcpy(v->header, out->ptr, out->len);
            used = out->len;
        }
        if (used + 2 + h->value.len > sizeof(v->header))
            return WARD_ELIMIT;
        memcpy(v->header + used, ", ", 2);
        memcpy(v->header + used + 2, h->value.ptr, h->value.len);
        used += 2 + h->value.len;
        *out = (authz_str){v->header, used};
    }
    return found > 0;
}

/* The first value of query parameter name in the query ("a=1&b&c=3"), as it
 * is written (not percent-decoded); a parameter without "=" has the value "". */
static int query_param(view *v, const char *name, size_t len, authz_str *out)
{
    authz_str q = v->r->query;
    if (q.ptr == NULL)
        return 0;
    const char *s = q.ptr, *end = q.ptr + q.len;
    while (s < end) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *pend = amp != NULL ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(pend - s));
        const char *kend = eq != NULL ? eq : pend;
        if ((size_t)(kend - s) == len && memcmp(s, name, len) == 0) {
            *out = eq != NULL ? (authz_str){eq + 1, (size_t)(pend - eq - 1)} : (authz_str){"", 0};
            return 1;
        }
        s = pend + 1;
    }
    return 0;
}

/* 1 present (out set), 0 absent, <0 the attribute cannot be read (a deny). */
static int attr_value(view *v, const check *c, authz_str *out)
{
    const authz_request *r = v->r;
    switch (c->attr) {
    case A_SOURCE_PRINCIPAL: *out = r->source_principal; break;
    case A_SOURCE_IP: *out = r->source_ip; break;
    case A_SOURCE_PORT: return port_str(v, 0, r->source_port, out);
    case A_SOURCE_NAMESPACE: derive_identity(v); *out = v->ns; break;
    case A_SOURCE_TRUST_DOMAIN: derive_identity(v); *out = v->td; break;
    case A_DESTINATION_SERVICE: *out = r->destination_service; break;
    case A_DESTINATION_PRINCIPAL: *out = r->destination_principal; break;
    case A_DESTINATION_PORT: return port_str(v, 1, r->destination_port, out);
    case A_METHOD: *out = r->method; break;
    case A_HOST:
        if (v->host_state == 0) { /* hosts match case-insensitively: patterns are lowercase */
            if (r->host.ptr == NULL) {
                v->host_state = -1;
            } else {
                if (r->host.len > sizeof(v->host))
                    return WARD_ELIMIT;
                for (size_t i = 0; i < r->host.len; i++) {
                    char ch = r->host.ptr[i];
                    v->host[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
                }
                v->host_len = r->host.len;
                v->host_state = 1;
            }
        }
        if (v->host_state < 0)
            return 0;
        *out = (authz_str){v->host, v->host_len};
        return 1;
    case A_PATH: *out = r->path; break;
    case A_QUERY: *out = r->query; break;
    case A_HEADER: return header_value(v, check_header(c), check_header_len(c), out);
    case A_QPARAM: return query_param(v, check_header(c), check_header_len(c), out);
    case A_PROTOCOL: *out = r->protocol; break;
    case A_MTLS:
        if (r->mtls < 0)
            return 0;
        *out = r->mtls ? (authz_str){"true", 4} : (authz_str){"false", 5};
        return 1;
    case A_SNI: *out = r->sni; break;
    case A_TIME: {
        time_t t = r->time_unix != 0 ? (time_t)r->time_unix : time(NULL);
        struct tm tm;
        if (gmtime_r(&t, &tm) == NULL)
            return WARD_ERANGE;
        size_t n = strftime(v->time, sizeof(v->time), "%Y-%m-%dT%H:%M:%SZ", &tm);
        *out = (authz_str){v->time, n};
        return 1;
    }
    default: return WARD_EINVAL;
    }
    return out->ptr != NULL;
}

/* memcmp(a, b, n) == 0 for the short strings patterns hold, in a few loads. */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&x, a + i, 8);
            memcpy(&y, b + i, 8);
            if (x != y)
                return false;
        }
        memcpy(&x, a + n - 8, 8); /* the last 8, maybe again some of the above */
        memcpy(&y, b + n - 8, 8);
        return x == y;
    }
    if (n >= 4) {
        uint32_t u, v, w, z;
        memcpy(&u, a, 4);
        memcpy(&v, b, 4);
        memcpy(&w, a + n - 4, 4);
        memcpy(&z, b + n - 4, 4);
        return u == v && w == z;
    }
    return n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1]);
}

/* 1 match, 0 no match, <0 a regex hit its limits (fail closed). */
static int pat_match(program *p, const pat *x, const char *s, size_t len)
{
    switch (x->kind) {
    case P_EXACT: return len == x->len && same_bytes(s, pat_text(x), len);
    case P_PREFIX: return len >= x->len && same_bytes(s, pat_text(x), x->len);
    case P_SUFFIX: return len >= x->len && same_bytes(s + len - x->len, pat_text(x), x->len);
    case P_ANY: return len > 0;
    case P_TEMPLATE: return program_template_match(pat_text(x), x->len, s, len, x->lead);
    case P_REGEX: {
        int rc = pcre2_match(pat_regex(x), (PCRE2_SPTR)s, len, 0, 0, p->md, p->mctx);
        if (rc >= 0)
            return 1;
        return rc == PCRE2_ERROR_NOMATCH ? 0 : WARD_ELIMIT; /* match or depth limit */
    }
    case P_CIDR: {
        ward_ip ip;
        return ward_ip_parse(s, len, &ip) == 0 && ward_cidr_contains(pat_cidr(x), &ip);
    }
    case P_PORT: {
        uint64_t port;
        return ward_parse_u64(s, len, 65535, &port) == 0 && port == x->len;
    }
    default: return WARD_EINVAL;
    }
}

/* 1 the check holds, 0 it does not, <0 failure. */
static int check_eval(program *p, view *v, const check *c)
{
    authz_str val = {NULL, 0};
    int present = attr_value(v, c, &val);
    if (present < 0)
        return present;
    bool negated = check_negated(c);
    if (!present)
        return negated ? 1 : 0;
    int any = 0;
    const void *end = part_end(c, c->size);
    for (const pat *x = check_pats(c); (const void *)x < end && !any; x = pat_next(x)) {
        any = pat_match(p, x, val.ptr, val.len);
        if (any < 0)
            return any;
    }
    return negated ? !any : any;
}

typedef struct best {
    uint32_t ed, ea, dd, da, audit; /* lowest matching rule (record ref) per category */
} best;

typedef struct evaluation {
    program *p;
    view *v;
    program_cond_fn cond;
    void *cond_data;
    ward_err *err;
    ward_buf *failed; /* explain: the JSON list of failed fields, else NULL */
    int n_failed;
    best b;
    /* the candidates considered so far: the first few here, then stamped in p->seen */
    uint32_t done[MAX_DONE];
    uint32_t n_done;
    bool stamping;
} evaluation;

static int record_failure(evaluation *e, const char *field)
{
    if (e->failed == NULL)
        return 0;
    int rc = ward_buf_puts(e->failed, e->n_failed++ ? "," : "");
    return rc < 0 ? rc : authz_json_str(e->failed, field, strlen(field));
}

static int record_check_failure(evaluation *e, const char *group_name, const check *c)
{
    if (e->failed == NULL)
        return 0;
    char field[64];
    snprintf(field, sizeof(field), "%s[%u].%s", group_name, (unsigned)c->item, check_name(c));
    return record_failure(e, field);
}

/* Any alternative whose checks all hold (from / to). */
static int alts_eval(evaluation *e, const group *g, const char *group_name)
{
    const void *end = part_end(g, g->size);
    for (const alt *a = group_alts(g); (const void *)a < end; a = alt_next(a)) {
        int ok = 1;
        const void *aend = part_end(a, a->size);
        for (const check *c = alt_checks(a); (const void *)c < aend && ok == 1; c = check_next(c)) {
            ok = check_eval(e->p, e->v, c);
            if (ok == 0 && record_check_failure(e, group_name, c) < 0)
                return WARD_ENOMEM;
        }
        if (ok != 0)
            return ok; /* a match, or a failure */
    }
    return 0;
}

static int rule_eval(evaluation *e, const rule *r)
{
    int ok;
    const group *g;
    if ((g = rule_from(r)) != NULL && (ok = alts_eval(e, g, "from")) <= 0)
        return ok;
    if ((g = rule_to(r)) != NULL && (ok = alts_eval(e, g, "to")) <= 0)
        return ok;
    if ((g = rule_when(r)) != NULL) {
        const void *end = part_end(g, g->size);
        for (const check *c = group_checks(g); (const void *)c < end; c = check_next(c)) {
            ok = check_eval(e->p, e->v, c);
            if (ok < 0)
                return ok;
            if (ok == 0)
                return record_check_failure(e, "when", c) < 0 ? WARD_ENOMEM : 0;
        }
    }
    const lua_cond *l = rule_lua(r);
    for (uint32_t i = 0; i < r->n_lua; i++) {
        char field[32];
        snprintf(field, sizeof(field), "when[%u].lua", (unsigned)l[i].item);
        ok = e->cond(e->cond_data, l[i].ref, field, e->err);
        if (ok < 0)
            return ok;
        if (ok == 0)
            return record_failure(e, field) < 0 ? WARD_ENOMEM : 0;
    }
    return 1;
}

static const bucket *bucket_for(const program *p, authz_str service)
{
    if (service.ptr != NULL) {
        uint64_t key = strmap_hash(p->seed ^ SERVICE_SALT, service.ptr, service.len);
        uint32_t pos = (uint32_t)key, n;
        const uint32_t *ids;
        while ((ids = strmap_next(&p->by_service, key, &pos, &n)) != NULL) {
            const bucket *bk = &p->buckets[ids[0]];
            if (bk->service_len == service.len && memcmp(bk->service, service.ptr, service.len) == 0)
                return bk;
        }
    }
    return &p->wildcard;
}

/* Has the candidate been considered already in this decision? Marks it. */
static bool seen_before(evaluation *e, uint32_t ref)
{
    program *p = e->p;
    if (!e->stamping) {
        for (uint32_t i = 0; i < e->n_done; i++)
            if (e->done[i] == ref)
                return true;
        if (e->n_done < MAX_DONE) {
            e->done[e->n_done++] = ref;
            return false;
        }
        /* many candidates: stamp them per rule from now on */
        if (++p->gen == 0) { /* wrapped: forget every stamp */
            memset(p->seen, 0, p->n_rules * sizeof(uint32_t));
            p->gen = 1;
        }
        for (uint32_t i = 0; i < e->n_done; i++)
            p->seen[program_rule(p, e->done[i])->id] = p->gen;
        e->stamping = true;
    }
    uint32_t id = program_rule(p, ref)->id;
    if (p->seen[id] == p->gen)
        return true;
    p->seen[id] = p->gen;
    return false;
}

/* Evaluates one candidate if it could still change the outcome. */
static int consider(evaluation *e, uint32_t ref)
{
    if (seen_before(e, ref))
        return 0;
    const rule *r = program_rule(e->p, ref);
    for (uint32_t off = 64 * PREFETCH_LINES; off < r->size; off += 64) /* the lines gather_list did not */
        __builtin_prefetch((const char *)r + off);
    best *b = &e->b;
    uint32_t *primary, *secondary = NULL;
    switch (r->kind) {
    case K_DENY: primary = &b->ed, secondary = &b->dd; break;
    case K_ALLOW: primary = &b->ea, secondary = &b->da; break;
    case K_DRY_DENY: primary = &b->dd; break;
    case K_DRY_ALLOW: primary = &b->da; break;
    case K_AUDIT: primary = &b->audit; break;
    default: return 0;
    }
    if (ref >= *primary)
        return 0;
    int ok = rule_eval(e, r);
    if (ok <= 0)
        return ok;
    *primary = ref;
    if (secondary != NULL && ref < *secondary)
        *secondary = ref;
    return 0;
}

static int consider_list(evaluation *e, const uint32_t *refs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        int rc = consider(e, refs[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The candidate lists of one decision, gathered from the indexes before
 * any is evaluated, so that their records are fetched from memory together
 * (each record is one contiguous block: its first lines are prefetched
 * here, the rest when it is considered). Evaluated in the order gathered. */
typedef struct gather {
    evaluation *e;
    struct {
        const uint32_t *refs;
        uint32_t n;
    } lists[MAX_LISTS];
    uint32_t n;
} gather;

static int gather_flush(gather *g)
{
    for (uint32_t i = 0; i < g->n; i++) {
        int rc = consider_list(g->e, g->lists[i].refs, g->lists[i].n);
        if (rc < 0)
            return rc;
    }
    g->n = 0;
    return 0;
}

static int gather_list(gather *g, const uint32_t *refs, uint32_t n)
{
    const program *p = g->e->p;
    if (n == 0)
        return 0;
    if (g->n == MAX_LISTS) {
        int rc = gather_flush(g);
        if (rc < 0)
            return rc;
    }
    g->lists[g->n].refs = refs;
    g->lists[g->n++].n = n;
    for (uint32_t i = 0; i < n && i < 8; i++) {
        const char *r = (const char *)program_rule(p, refs[i]);
        for (int k = 0; k < PREFETCH_LINES; k++)
            __builtin_prefetch(r + 64 * k);
    }
    return 0;
}

static int gather_key(gather *g, const strmap *m, uint64_t key)
{
    uint32_t pos = (uint32_t)key, n;
    const uint32_t *refs;
    while ((refs = strmap_next(m, key, &pos, &n)) != NULL) {
        int rc = gather_list(g, refs, n);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The index keys of one attribute's value: its exact key, then its prefix
 * keys, shortest first (the filter drops most at once). One pass hashes
 * the value's prefixes and the value itself. The slots of the keys are
 * prefetched; keys beyond MAX_PREFIX_KEYS are left for attr_rest. */
typedef struct attr_keys {
    authz_str val;
    uint64_t keys[1 + MAX_PREFIX_KEYS];
    uint32_t n;
    uint32_t rest; /* index in the bucket's lens of the first length not hashed */
} attr_keys;

static void attr_keys_get(const program *p, const bucket *bk, int ix, authz_str val, attr_keys *ak)
{
    const uint32_t *lens = bk->lens[ix];
    uint32_t n_lens = bk->n_lens[ix], i = 0;
    const strmap *m = &bk->index;
    ak->val = val;
    ak->n = 0;
    ak->rest = n_lens;
    if (val.ptr == NULL || (n_lens == 0 && bk->n_exact[ix] == 0))
        return;
    const uint64_t *filter = m->filter;
    uint32_t filter_mask = m->filter_mask;
    uint64_t pre[MAX_PREFIX_KEYS];
    uint32_t n_pre = 0;
    strmap_hasher h;
    strmap_hasher_init(&h, p->seed, val.ptr);
    uint32_t last = n_lens; /* the lengths to hash: those within the value, at most MAX_PREFIX_KEYS hits */
    while (last > 0 && lens[2 * (last - 1)] > val.len)
        last--;
    for (; i < last; i++) {
        uint32_t len = lens[2 * i], end = lens[2 * i + 1];
        if (end != 0 && (unsigned char)val.ptr[len - 1] != (end & 0xff))
            continue; /* no key of this length ends like this */
        uint64_t key = program_key(strmap_hasher_at(&h, len), ix, true);
        if (strmap_filter_test(filter, filter_mask, key)) {
            pre[n_pre++] = key;
            if (n_pre == MAX_PREFIX_KEYS) {
                i++;
                break;
            }
        }
    }
    if (i < last)
        ak->rest = i;
    if (bk->n_exact[ix] > 0) {
        uint64_t key = program_key(strmap_hasher_at(&h, val.len), ix, false);
        if (!bk->exact_filtered[ix] || strmap_filter_has(m, key))
            ak->keys[ak->n++] = key;
    }
    for (uint32_t k = 0; k < n_pre; k++)
        ak->keys[ak->n++] = pre[k];
    for (uint32_t k = 0; k < ak->n; k++)
        __builtin_prefetch(&m->slots[ak->keys[k] & m->mask]);
}

static int gather_attr(gather *g, const bucket *bk, int ix, const attr_keys *ak)
{
    const strmap *m = &bk->index;
    int rc = 0;
    for (uint32_t k = 0; k < ak->n && rc == 0; k++)
        rc = gather_key(g, m, ak->keys[k]);
    const uint32_t *lens = bk->lens[ix];
    uint32_t i = ak->rest;
    if (rc == 0 && i < bk->n_lens[ix]) { /* more prefix keys than held: the rest now */
        strmap_hasher h;
        strmap_hasher_init(&h, g->e->p->seed, ak->val.ptr);
        for (; i < bk->n_lens[ix] && lens[2 * i] <= ak->val.len && rc == 0; i++) {
            uint64_t key = program_key(strmap_hasher_at(&h, lens[2 * i]), ix, true);
            if (strmap_filter_has(m, key))
                rc = gather_key(g, m, key);
        }
    }
    return rc;
}

/* The namespace of a principal ("spiffe://td/ns/<namespace>/..."), found
 * as ward_spiffe_id_namespace finds it in a parsed ID, but without checking
 * the ID: for a valid ID it is the same; for an invalid one the rules it
 * yields are candidates that fail (they need a namespace, and an invalid
 * ID has none). Only the namespace index reads it. */
static authz_str principal_namespace(authz_str p)
{
    static const char scheme[] = "spiffe://";
    const size_t slen = sizeof(scheme) - 1;
    authz_str none = {NULL, 0};
    if (p.ptr == NULL || p.len < slen || memcmp(p.ptr, scheme, slen) != 0)
        return none;
    const char *end = p.ptr + p.len;
    const char *q = memchr(p.ptr + slen, '/', p.len - slen); /* the path */
    while (q != NULL && q < end) {
        const char *seg = q + 1;
        const char *next = memchr(seg, '/', (size_t)(end - seg));
        if (next == NULL)
            next = end;
        if (next - seg == 2 && seg[0] == 'n' && seg[1] == 's' && next < end) {
            const char *ns = next + 1;
            const char *ns_end = memchr(ns, '/', (size_t)(end - ns));
            return (authz_str){ns, (size_t)((ns_end != NULL ? ns_end : end) - ns)};
        }
        q = next;
    }
    return none;
}

/* The namespace candidates and the rules no index covers are considered
 * together in id order (as if all were always considered): a k-way merge
 * of their lists. */
static int consider_merged(evaluation *e, const gather *t)
{
    uint32_t at[MAX_LISTS];
    memset(at, 0, t->n * sizeof(at[0]));
    for (;;) {
        uint32_t next = NONE, from = 0;
        for (uint32_t i = 0; i < t->n; i++) {
            if (at[i] < t->lists[i].n && t->lists[i].refs[at[i]] < next) {
                next = t->lists[i].refs[at[i]];
                from = i;
            }
        }
        if (next == NONE)
            return 0;
        at[from]++;
        int rc = consider(e, next);
        if (rc < 0)
            return rc;
    }
}

/* The lists of the namespace keys, then always; or, when the keys give more
 * lists than t holds, the bucket's late list (all of them). */
static void gather_late(gather *t, const bucket *bk, const attr_keys *ns)
{
    const strmap *m = &bk->index;
    bool whole = ns->rest < bk->n_lens[IX_NAMESPACE]; /* keys left unhashed */
    for (uint32_t k = 0; k < ns->n && !whole; k++) {
        uint32_t pos = (uint32_t)ns->keys[k], n;
        const uint32_t *refs;
        while (!whole && (refs = strmap_next(m, ns->keys[k], &pos, &n)) != NULL) {
            if (t->n + 1 == MAX_LISTS)
                whole = true;
            else
                gather_list(t, refs, n);
        }
    }
    if (whole) {
        t->n = 0;
        gather_list(t, bk->late, bk->n_late);
    } else {
        gather_list(t, bk->always, bk->n_always);
    }
}

/* The candidates: what the principal, path and namespace indexes give, and
 * the rest; their records are all requested from memory before the first is
 * evaluated. */
static int consider_candidates(evaluation *e, const bucket *bk)
{
    const authz_request *r = e->v->r;
    gather g, late; /* (not zeroed: only their first n lists are read) */
    g.e = late.e = e;
    g.n = late.n = 0;
    attr_keys principal, path, ns;
    /* the work is ordered so that memory is waited for as little as
     * possible: the path is hashed while the principal's slot is fetched,
     * the namespace while the principal's candidates are */
    attr_keys_get(e->p, bk, IX_PRINCIPAL, r->source_principal, &principal);
    attr_keys_get(e->p, bk, IX_PATH, r->path, &path);
    int rc = gather_attr(&g, bk, IX_PRINCIPAL, &principal);
    authz_str nsv = {NULL, 0};
    if (bk->n_exact[IX_NAMESPACE] > 0 || bk->n_lens[IX_NAMESPACE] > 0)
        nsv = principal_namespace(r->source_principal);
    attr_keys_get(e->p, bk, IX_NAMESPACE, nsv, &ns);
    if (rc == 0)
        rc = gather_attr(&g, bk, IX_PATH, &path);
    if (rc < 0)
        return rc;
    gather_late(&late, bk, &ns);
    rc = gather_flush(&g);
    return rc < 0 ? rc : consider_merged(e, &late);
}

/* Every policy that selects the workload and each of its rules, matched or
 * with the fields that failed. */
static int explain_bucket(evaluation *e, const bucket *bk, ward_buf *out)
{
    static const char *const actions[] = {"ALLOW", "DENY", "AUDIT"};
    program *p = e->p;
    int rc = ward_buf_putc(out, '[');
    uint32_t ri = 0;
    ward_buf failed;
    ward_buf_init(&failed);
    for (uint32_t i = 0; i < bk->n_policies && rc == 0; i++) {
        uint32_t pi = bk->policies[i];
        const pol *x = &p->pols[pi];
        rc = ward_buf_printf(out, "%s{\"action\":\"%s\",\"mode\":\"%s\",\"policy\":", i ? "," : "",
                             actions[x->action], x->dry ? "dry-run" : "enforce");
        if (rc == 0)
            rc = authz_json_str(out, x->id, strlen(x->id));
        if (rc == 0)
            rc = ward_buf_puts(out, ",\"rules\":[");
        for (int first = 1; rc == 0 && ri < bk->n_rules; ri++, first = 0) {
            const rule *r = program_rule(p, p->rule_ref[bk->rules[ri]]);
            if (r->policy != pi)
                break;
            ward_buf_reset(&failed);
            e->failed = &failed;
            e->n_failed = 0;
            int ok = rule_eval(e, r);
            e->failed = NULL;
            if (ok < 0) {
                rc = ok;
                break;
            }
            if (ok)
                rc = ward_buf_printf(out, "%s{\"matched\":true,\"rule\":%u}", first ? "" : ",",
                                     (unsigned)r->index);
            else
                rc = ward_buf_printf(out, "%s{\"failed\":[%s],\"matched\":false,\"rule\":%u}",
                                     first ? "" : ",", failed.ptr ? failed.ptr : "", (unsigned)r->index);
        }
        if (rc == 0)
            rc = ward_buf_puts(out, "],\"source\":");
        if (rc == 0)
            rc = authz_json_str(out, x->source ? x->source : "", x->source ? strlen(x->source) : 0);
        if (rc == 0)
            rc = ward_buf_putc(out, '}');
    }
    ward_buf_dispose(&failed);
    return rc < 0 ? rc : ward_buf_putc(out, ']');
}

static int decide_failed(ward_err *err, int rc)
{
    if (rc == WARD_ELIMIT)
        ward_err_set(err, "a matcher hit its limits (regex match/depth limit or oversized attribute)");
    else if (rc != WARD_ELUA && rc != WARD_EBUDGET && rc != WARD_ERESULT)
        ward_err_set(err, "cannot evaluate the request: %s", ward_strerror(rc));
    return rc;
}

/* ---- routes ---- */

/* The Route serving the request's host (without its port, lowercased), or
 * NULL. Without Routes this is one test; with them, a host of a length no
 * routed host has is turned away by one bit, the others cost one hash and
 * usually one filter bit. */
static const route_def *route_def_for(const program *p, authz_str host)
{
    if (p->n_hosts == 0 || host.ptr == NULL)
        return NULL;
    const char *colon = memchr(host.ptr, ':', host.len);
    size_t n = colon != NULL ? (size_t)(colon - host.ptr) : host.len;
    if (n == 0 || n > 253 || !((p->host_lens[n / 64] >> (n % 64)) & 1))
        return NULL;
    char buf[256];
    for (size_t i = 0; i < n; i++) {
        char ch = host.ptr[i];
        buf[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    uint64_t key = strmap_hash(p->seed ^ HOST_SALT, buf, n);
    if (!strmap_filter_has(&p->by_host, key))
        return NULL;
    uint32_t pos = (uint32_t)key, cnt;
    const uint32_t *ids;
    while ((ids = strmap_next(&p->by_host, key, &pos, &cnt)) != NULL) {
        for (uint32_t i = 0; i < cnt; i++) {
            const route_host *h = &p->hosts[ids[i]];
            if (h->len == n && memcmp(h->host, buf, n) == 0)
                return &p->routes[h->def];
        }
    }
    return NULL;
}

static int route_failure(evaluation *e, const check *c)
{
    if (e->failed == NULL)
        return 0;
    char field[300];
    if (check_named(c))
        snprintf(field, sizeof(field), "match[%u].%s[%.*s]", (unsigned)c->item, check_name(c),
                 (int)(check_header_len(c) > 200 ? 200 : check_header_len(c)), check_header(c));
    else
        snprintf(field, sizeof(field), "match[%u].%s", (unsigned)c->item, check_name(c));
    return record_failure(e, field);
}

/* The first alternative of a route match whose checks all hold: 1 (*which
 * set), 0 none, <0 a failure. With explain, records the failed fields. */
static int route_match(evaluation *e, const group *g, const alt **which)
{
    const void *end = part_end(g, g->size);
    for (const alt *a = group_alts(g); (const void *)a < end; a = alt_next(a)) {
        int ok = 1;
        const void *aend = part_end(a, a->size);
        for (const check *c = alt_checks(a); (const void *)c < aend && ok == 1; c = check_next(c)) {
            ok = check_eval(e->p, e->v, c);
            if (ok == 0 && route_failure(e, c) < 0)
                return WARD_ENOMEM;
        }
        if (ok < 0)
            return ok;
        if (ok) {
            *which = a;
            return 1;
        }
    }
    return 0;
}

/* The entry's route with rewrite_path: the request's path with the prefix
 * the matched path pattern names (an exact path: all of it; none: "/")
 * replaced. In the program's scratch: valid until the next decision. */
static int route_rewrite(evaluation *e, const route_entry *re, const alt *a, const authz_route **out)
{
    program *p = e->p;
    authz_str path = e->v->r->path;
    size_t skip = path.ptr != NULL && path.len > 0 && path.ptr[0] == '/' ? 1 : 0;
    const void *aend = a != NULL ? part_end(a, a->size) : NULL;
    for (const check *c = a != NULL ? alt_checks(a) : NULL; c != NULL && (const void *)c < aend;
         c = check_next(c)) {
        if (c->attr != A_PATH || check_negated(c))
            continue;
        const void *cend = part_end(c, c->size);
        for (const pat *x = check_pats(c); (const void *)x < cend; x = pat_next(x)) {
            int ok = pat_match(p, x, path.ptr, path.len);
            if (ok < 0)
                return ok;
            if (ok) { /* the validator lets only exact paths and prefixes rewrite */
                skip = x->kind == P_PREFIX ? x->len : path.len;
                break;
            }
        }
        break;
    }
    ward_buf_reset(&p->rewrite);
    if (ward_buf_puts(&p->rewrite, re->route.rewrite_prefix) < 0 ||
        (path.len > skip && ward_buf_append(&p->rewrite, path.ptr + skip, path.len - skip) < 0))
        return WARD_ENOMEM;
    p->scratch = re->route;
    p->scratch.rewrite_path = p->rewrite.ptr;
    *out = &p->scratch;
    return 0;
}

/* The first entry of the Route whose match holds (entries without match
 * hold for every request) becomes d->route. */
static int choose_route(evaluation *e, const route_def *rd, authz_decision *d)
{
    for (uint32_t k = 0; k < rd->n_entries; k++) {
        const route_entry *re = &rd->entries[k];
        const alt *a = NULL;
        if (re->has_match) {
            const group *g = (const group *)(const void *)(e->p->code + (size_t)re->match * PROGRAM_ALIGN);
            int ok = route_match(e, g, &a);
            if (ok <= 0) {
                if (ok < 0)
                    return ok;
                continue;
            }
        }
        if (re->route.rewrite_prefix != NULL)
            return route_rewrite(e, re, a, &d->route);
        d->route = &re->route;
        return 0;
    }
    return 0;
}

/* Appends {"route": id, "source", "http": [each entry matched or its failed
 * fields, the chosen one marked]} to the explain array. */
static int explain_route(evaluation *e, const route_def *rd, const authz_decision *d, ward_buf *out)
{
    if (out->len > 0 && out->ptr[out->len - 1] == ']')
        out->len--;
    int rc = ward_buf_puts(out, out->len > 1 ? ",{\"route\":" : "{\"route\":");
    if (rc == 0)
        rc = authz_json_str(out, rd->id, strlen(rd->id));
    if (rc == 0)
        rc = ward_buf_puts(out, ",\"source\":");
    if (rc == 0)
        rc = authz_json_str(out, rd->source ? rd->source : "", rd->source ? strlen(rd->source) : 0);
    if (rc == 0)
        rc = ward_buf_puts(out, ",\"http\":[");
    ward_buf failed;
    ward_buf_init(&failed);
    for (uint32_t k = 0; k < rd->n_entries && rc == 0; k++) {
        const route_entry *re = &rd->entries[k];
        int ok = 1;
        ward_buf_reset(&failed);
        if (re->has_match) {
            const alt *a;
            e->failed = &failed;
            e->n_failed = 0;
            ok = route_match(e, (const group *)(const void *)(e->p->code + (size_t)re->match * PROGRAM_ALIGN), &a);
            e->failed = NULL;
            if (ok < 0) {
                rc = ok;
                break;
            }
        }
        rc = ward_buf_printf(out, "%s{\"index\":%u,\"name\":", k ? "," : "", (unsigned)k);
        if (rc == 0)
            rc = authz_json_str(out, re->route.name, strlen(re->route.name));
        if (rc == 0 && ok)
            rc = ward_buf_printf(out, ",\"matched\":true%s}",
                                 d->route != NULL && d->route->index == (int)k ? ",\"chosen\":true" : "");
        else if (rc == 0)
            rc = ward_buf_printf(out, ",\"matched\":false,\"failed\":[%s]}", failed.ptr ? failed.ptr : "");
    }
    ward_buf_dispose(&failed);
    if (rc == 0)
        rc = ward_buf_puts(out, "]}]");
    return rc;
}

int program_decide(program *p, const authz_request *req, program_cond_fn cond, void *cond_data,
                   authz_decision *d, ward_buf *explain, ward_err *err)
{
    view v;
    v.r = req;
    v.identity_done = false;
    v.ns = v.td = (authz_str){NULL, 0};
    v.host_state = 0;
    evaluation e = {.p = p, .v = &v, .cond = cond, .cond_data = cond_data, .err = err,
                    .b = {NONE, NONE, NONE, NONE, NONE}};
    const bucket *bk = bucket_for(p, req->destination_service);
    int rc = consider_candidates(&e, bk);
    if (rc < 0)
        return decide_failed(err, rc);
    const best *b = &e.b;
    const rule *deciding = NULL;
    if (b->ed != NONE) {
        deciding = program_rule(p, b->ed);
        d->decision = AUTHZ_DENY;
        d->reason = program_string(p, deciding->reason);
    } else if (bk->allow_exists) {
        if (b->ea != NONE) {
            deciding = program_rule(p, b->ea);
            d->decision = AUTHZ_ALLOW;
            d->reason = program_string(p, deciding->reason);
        } else {
            d->decision = AUTHZ_DENY;
            d->reason = "no ALLOW rule matched";
        }
    } else {
        d->decision = p->default_allow ? AUTHZ_ALLOW : AUTHZ_DENY;
        d->reason = bk->default_reason;
    }
    if (deciding != NULL) {
        d->policy = program_string(p, deciding->policy_id);
        d->rule = (int)deciding->index;
    }
    d->audit = b->audit != NONE;
    if (bk->has_dry) {
        uint32_t w = NONE;
        d->has_dry_run = true;
        if (b->dd != NONE) {
            d->dry_run_decision = AUTHZ_DENY;
            w = b->dd;
        } else if (bk->dry_allow_exists) {
            d->dry_run_decision = b->da != NONE ? AUTHZ_ALLOW : AUTHZ_DENY;
            w = b->da;
        } else {
            d->dry_run_decision = p->default_allow ? AUTHZ_ALLOW : AUTHZ_DENY;
        }
        if (w != NONE) {
            const rule *r = program_rule(p, w);
            d->dry_run_policy = program_string(p, r->policy_id);
            d->dry_run_rule = (int)r->index;
        }
    }
    if (d->decision == AUTHZ_DENY) {
        /* the deciding policy's response, else the workload's first enforced ALLOW's */
        const pol *x = deciding != NULL ? &p->pols[deciding->policy] : NULL;
        if (x != NULL && x->deny_status) {
            d->deny_status = x->deny_status;
            d->deny_body = x->deny_body;
        } else if (bk->deny_status) {
            d->deny_status = bk->deny_status;
            d->deny_body = bk->deny_body;
        }
    }
    const route_def *rd = route_def_for(p, req->host);
    if (rd != NULL && (rc = choose_route(&e, rd, d)) < 0)
        return decide_failed(err, rc);
    if (explain != NULL) {
        rc = explain_bucket(&e, bk, explain);
        if (rc == 0 && rd != NULL)
            rc = explain_route(&e, rd, d, explain);
        return rc < 0 ? decide_failed(err, rc) : 0;
    }
    return 0;
}
