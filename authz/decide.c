/* decide.c - one decision over a rule program: candidates from the indexes, matching, precedence, explain */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authz/authz_int.h"
#include "authz/program_int.h"

#define NONE UINT32_MAX
#define MAX_PREFIX_HITS 32

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
    case A_HEADER: return header_value(v, c->header, c->header_len, out);
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

/* 1 match, 0 no match, <0 a regex hit its limits (fail closed). */
static int pat_match(program *p, const pat *x, const char *s, size_t len)
{
    switch (x->kind) {
    case P_EXACT: return len == x->len && memcmp(s, x->s, len) == 0;
    case P_PREFIX: return len >= x->len && memcmp(s, x->s, x->len) == 0;
    case P_SUFFIX: return len >= x->len && memcmp(s + len - x->len, x->s, x->len) == 0;
    case P_ANY: return len > 0;
    case P_TEMPLATE: return program_template_match(x, s, len);
    case P_REGEX: {
        int rc = pcre2_match(x->u.re, (PCRE2_SPTR)s, len, 0, 0, p->md, p->mctx);
        if (rc >= 0)
            return 1;
        return rc == PCRE2_ERROR_NOMATCH ? 0 : WARD_ELIMIT; /* match or depth limit */
    }
    case P_CIDR: {
        ward_ip ip;
        return ward_ip_parse(s, len, &ip) == 0 && ward_cidr_contains(&x->u.cidr, &ip);
    }
    case P_PORT: {
        uint64_t port;
        return ward_parse_u64(s, len, 65535, &port) == 0 && port == x->u.port;
    }
    default: return WARD_EINVAL;
    }
}

/* 1 the check holds, 0 it does not, <0 failure. */
static int check_eval(program *p, view *v, const check *c)
{
    authz_str val;
    int present = attr_value(v, c, &val);
    if (present < 0)
        return present;
    if (!present)
        return c->negated ? 1 : 0;
    int any = 0;
    for (uint32_t i = 0; i < c->n && !any; i++) {
        any = pat_match(p, &c->pats[i], val.ptr, val.len);
        if (any < 0)
            return any;
    }
    return c->negated ? !any : any;
}

typedef struct evaluation {
    program *p;
    view *v;
    program_cond_fn cond;
    void *cond_data;
    ward_err *err;
    ward_buf *failed; /* explain: the JSON list of failed fields, else NULL */
    int n_failed;
} evaluation;

static int record_failure(evaluation *e, const char *field)
{
    if (e->failed == NULL)
        return 0;
    int rc = ward_buf_puts(e->failed, e->n_failed++ ? "," : "");
    return rc < 0 ? rc : authz_json_str(e->failed, field, strlen(field));
}

static int record_check_failure(evaluation *e, const check *c)
{
    if (e->failed == NULL)
        return 0;
    char field[64];
    snprintf(field, sizeof(field), "%s[%u].%s", c->group, c->item, c->name);
    return record_failure(e, field);
}

/* Any alternative whose checks all hold (from / to). */
static int alts_eval(evaluation *e, const alt *alts, uint32_t n)
{
    for (uint32_t a = 0; a < n; a++) {
        int ok = 1;
        for (uint32_t i = 0; i < alts[a].n && ok == 1; i++) {
            ok = check_eval(e->p, e->v, &alts[a].checks[i]);
            if (ok == 0 && record_check_failure(e, &alts[a].checks[i]) < 0)
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
    if (r->from_present && (ok = alts_eval(e, r->from, r->n_from)) <= 0)
        return ok;
    if (r->to_present && (ok = alts_eval(e, r->to, r->n_to)) <= 0)
        return ok;
    for (uint32_t i = 0; i < r->n_when; i++) {
        ok = check_eval(e->p, e->v, &r->when[i]);
        if (ok < 0)
            return ok;
        if (ok == 0)
            return record_check_failure(e, &r->when[i]) < 0 ? WARD_ENOMEM : 0;
    }
    for (uint32_t i = 0; i < r->n_lua; i++) {
        ok = e->cond(e->cond_data, r->lua_refs[i], r->lua_fields[i], e->err);
        if (ok < 0)
            return ok;
        if (ok == 0)
            return record_failure(e, r->lua_fields[i]) < 0 ? WARD_ENOMEM : 0;
    }
    return 1;
}

static const bucket *bucket_for(const program *p, authz_str service)
{
    if (service.ptr != NULL) {
        const strmap_slot *s = strmap_get(&p->by_service, service.ptr, service.len);
        if (s != NULL)
            return &p->buckets[strmap_ids(s)[0]];
    }
    return &p->wildcard;
}

typedef struct best {
    uint32_t ed, ea, dd, da, audit; /* lowest matching rule id per category */
} best;

/* Evaluates one candidate if it could still change the outcome. */
static int consider(evaluation *e, best *b, uint32_t id)
{
    const rule *r = e->p->rules[id];
    uint32_t *primary, *secondary = NULL;
    switch (r->kind) {
    case K_DENY: primary = &b->ed, secondary = &b->dd; break;
    case K_ALLOW: primary = &b->ea, secondary = &b->da; break;
    case K_DRY_DENY: primary = &b->dd; break;
    case K_DRY_ALLOW: primary = &b->da; break;
    case K_AUDIT: primary = &b->audit; break;
    default: return 0;
    }
    if (id >= *primary)
        return 0;
    int ok = rule_eval(e, r);
    if (ok <= 0)
        return ok;
    *primary = id;
    if (secondary != NULL && id < *secondary)
        *secondary = id;
    return 0;
}

static int consider_list(evaluation *e, best *b, const uint32_t *ids, uint32_t n)
{
    program *p = e->p;
    for (uint32_t i = 0; i < n; i++) {
        if (p->seen[ids[i]] == p->gen)
            continue;
        p->seen[ids[i]] = p->gen;
        int rc = consider(e, b, ids[i]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The candidates: what the principal and path indexes give, and the rest. */
static int consider_candidates(evaluation *e, const bucket *bk, best *b)
{
    const authz_request *r = e->v->r;
    const strmap_slot *hits[MAX_PREFIX_HITS];
    int rc = 0;
    if (++e->p->gen == 0) { /* wrapped: forget every stamp */
        memset(e->p->seen, 0, e->p->n_rules * sizeof(uint32_t));
        e->p->gen = 1;
    }
    const authz_str keys[2] = {r->source_principal, r->path};
    const strmap *exact[2] = {&bk->principal_exact, &bk->path_exact};
    const strmap *prefix[2] = {&bk->principal_prefix, &bk->path_prefix};
    for (int k = 0; k < 2 && rc == 0; k++) {
        if (keys[k].ptr == NULL)
            continue;
        const strmap_slot *s = strmap_get(exact[k], keys[k].ptr, keys[k].len);
        if (s != NULL)
            rc = consider_list(e, b, strmap_ids(s), s->n_ids);
        size_t n = strmap_prefixes(prefix[k], keys[k].ptr, keys[k].len, hits, MAX_PREFIX_HITS);
        for (size_t i = 0; i < n && rc == 0; i++)
            rc = consider_list(e, b, strmap_ids(hits[i]), hits[i]->n_ids);
    }
    if (rc == 0)
        rc = consider_list(e, b, bk->always, bk->n_always);
    return rc;
}

static void deny_response(const program *p, const bucket *bk, uint32_t deciding,
                          authz_decision *d)
{
    if (deciding != NONE) {
        const pol *x = &p->pols[p->rules[deciding]->policy];
        if (x->deny_status) {
            d->deny_status = x->deny_status;
            d->deny_body = x->deny_body;
            return;
        }
    }
    for (uint32_t i = 0; i < bk->n_policies; i++) {
        const pol *x = &p->pols[bk->policies[i]];
        if (x->action == ACT_ALLOW && !x->dry && x->deny_status) {
            d->deny_status = x->deny_status;
            d->deny_body = x->deny_body;
            return;
        }
    }
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
        for (int first = 1; rc == 0 && ri < bk->n_rules && p->rules[bk->rules[ri]]->policy == pi;
             ri++, first = 0) {
            const rule *r = p->rules[bk->rules[ri]];
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
                                     r->index);
            else
                rc = ward_buf_printf(out, "%s{\"failed\":[%s],\"matched\":false,\"rule\":%u}",
                                     first ? "" : ",", failed.ptr ? failed.ptr : "", r->index);
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

int program_decide(program *p, const authz_request *req, program_cond_fn cond, void *cond_data,
                   authz_decision *d, ward_buf *explain, ward_err *err)
{
    view v;
    v.r = req;
    v.identity_done = false;
    v.ns = v.td = (authz_str){NULL, 0};
    v.host_state = 0;
    evaluation e = {.p = p, .v = &v, .cond = cond, .cond_data = cond_data, .err = err};
    const bucket *bk = bucket_for(p, req->destination_service);
    best b = {NONE, NONE, NONE, NONE, NONE};
    int rc = consider_candidates(&e, bk, &b);
    if (rc < 0) {
        if (rc == WARD_ELIMIT)
            ward_err_set(err, "a matcher hit its limits (regex match/depth limit or oversized attribute)");
        else if (rc != WARD_ELUA && rc != WARD_EBUDGET && rc != WARD_ERESULT)
            ward_err_set(err, "cannot evaluate the request: %s", ward_strerror(rc));
        return rc;
    }
    uint32_t deciding = NONE;
    if (b.ed != NONE) {
        d->decision = AUTHZ_DENY;
        deciding = b.ed;
        d->reason = p->rules[b.ed]->reason;
    } else if (bk->allow_exists) {
        if (b.ea != NONE) {
            d->decision = AUTHZ_ALLOW;
            deciding = b.ea;
            d->reason = p->rules[b.ea]->reason;
        } else {
            d->decision = AUTHZ_DENY;
            d->reason = "no ALLOW rule matched";
        }
    } else {
        d->decision = p->default_allow ? AUTHZ_ALLOW : AUTHZ_DENY;
        d->reason = bk->default_reason;
    }
    if (deciding != NONE) {
        d->policy = p->pols[p->rules[deciding]->policy].id;
        d->rule = (int)p->rules[deciding]->index;
    }
    d->audit = b.audit != NONE;
    if (bk->has_dry) {
        uint32_t w = NONE;
        d->has_dry_run = true;
        if (b.dd != NONE) {
            d->dry_run_decision = AUTHZ_DENY;
            w = b.dd;
        } else if (bk->dry_allow_exists) {
            d->dry_run_decision = b.da != NONE ? AUTHZ_ALLOW : AUTHZ_DENY;
            w = b.da;
        } else {
            d->dry_run_decision = p->default_allow ? AUTHZ_ALLOW : AUTHZ_DENY;
        }
        if (w != NONE) {
            d->dry_run_policy = p->pols[p->rules[w]->policy].id;
            d->dry_run_rule = (int)p->rules[w]->index;
        }
    }
    if (d->decision == AUTHZ_DENY)
        deny_response(p, bk, deciding, d);
    if (explain != NULL)
        return explain_bucket(&e, bk, explain);
    return 0;
}
