/* worker.c - ward-proxy's workers: per request identity -> attributes -> decide -> audit -> forward or deny */
#include "cmd/ward-proxy/wp.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HEADERS_ON_STACK 128
/* mTLS connects in progress per upstream endpoint and worker; a burst past them
 * waits for a connection instead of opening one handshake per request */
#define MESH_CONNECTS_IN_PROGRESS 2
static const char DENY_BODY[] = "access denied\n";

/* What a request carries from its decision to its end. */
typedef struct wp_req {
    bool inbound, allow;
    proxy_cluster *cluster; /* outbound: the upstream's, and the endpoint of this attempt */
    size_t ep;
    bool is_retry;
    unsigned retries_left;
    uint64_t deadline_ms; /* a Route's timeout: the end of every attempt (uv_now); 0 = none */
    uint32_t per_try_ms;  /* each attempt's own limit (0: the deadline's or the proxy's) */
    bool idempotent;
    authz_route_retries retry; /* when to retry (a route's, or the default) */
    bool reserved; /* an allowed request's audit slot, filled when the response is known */
    char *route_label; /* the Route entry that served it: "ns/name" NUL "entry" NUL, or NULL */
    bool rate_limited;
    unsigned retries_done;
    uint64_t decision_ns;
    audit_record rec; /* its strings point into strings */
    char *strings;
} wp_req;

static audit_str aud(authz_str s)
{
    return (audit_str){s.ptr, s.len};
}

void wp_record_of(audit_record *rec, bool inbound, const authz_request *a, const authz_decision *d)
{
    audit_record_init(rec);
    rec->ts_ns = audit_now_ns();
    rec->direction = inbound ? AUDIT_INBOUND : AUDIT_OUTBOUND;
    rec->decision = (audit_verdict)d->decision;
    rec->policy = audit_cstr(d->policy);
    rec->rule = d->rule;
    rec->reason = audit_cstr(d->reason);
    rec->audit = d->audit;
    rec->has_dry_run = d->has_dry_run;
    rec->dry_run_decision = (audit_verdict)d->dry_run_decision;
    rec->dry_run_policy = audit_cstr(d->dry_run_policy);
    rec->dry_run_rule = d->dry_run_rule;
    rec->source_principal = aud(a->source_principal);
    rec->source_ip = aud(a->source_ip);
    rec->source_port = a->source_port;
    rec->destination_service = aud(a->destination_service);
    rec->destination_principal = aud(a->destination_principal);
    rec->destination_port = a->destination_port;
    rec->method = aud(a->method);
    rec->host = aud(a->host);
    rec->path = aud(a->path);
    rec->protocol = aud(a->protocol);
}

void wp_record_trim(audit_record *rec, uint32_t omit)
{
    static const audit_str none = {NULL, 0};
    if (omit & PROXY_AUDIT_OMIT_SOURCE_IP)
        rec->source_ip = none;
    if (omit & PROXY_AUDIT_OMIT_SOURCE_PORT)
        rec->source_port = -1;
    if (omit & PROXY_AUDIT_OMIT_DESTINATION_PORT)
        rec->destination_port = -1;
    if (omit & PROXY_AUDIT_OMIT_REQUEST_HOST)
        rec->host = none;
    if (omit & PROXY_AUDIT_OMIT_REQUEST_PATH)
        rec->path = none;
    if (omit & PROXY_AUDIT_OMIT_REQUEST_HEADERS)
        rec->headers = none;
    if (omit & PROXY_AUDIT_OMIT_REASON)
        rec->reason = none;
    if (omit & PROXY_AUDIT_OMIT_TRACE_ID)
        rec->trace_id = none;
    if (omit & PROXY_AUDIT_OMIT_LATENCY)
        rec->latency_ns = -1;
    if (omit & PROXY_AUDIT_OMIT_PEER_CERT)
        rec->peer_cert_sha256 = none;
}

/* The request fields audit.headers names, as "name\0value\0" pairs in buf
 * (every field of each name, in request order); the values of audit.redact's
 * names become "[redacted]" here, the audit layer adds the built-in secrets. */
static audit_str record_headers(const proxy_config *cfg, const proxy_http_request *h, char *buf,
                                size_t size)
{
    size_t used = 0;
    for (size_t i = 0; i < h->n_headers; i++) {
        proxy_slice name = h->headers[i].name, value = h->headers[i].value;
        bool wanted = false, redact = false;
        for (size_t k = 0; !wanted && k < cfg->audit.n_headers; k++)
            wanted = proxy_slice_eq_nocase(name, cfg->audit.headers[k]);
        for (size_t k = 0; wanted && !redact && k < cfg->audit.n_redact; k++)
            redact = proxy_slice_eq_nocase(name, cfg->audit.redact[k]);
        if (!wanted)
            continue;
        if (redact)
            value = (proxy_slice){"[redacted]", 10};
        if (used + name.len + value.len + 2 > size)
            break; /* the rest does not fit a record */
        for (size_t k = 0; k < name.len; k++)
            buf[used++] = (char)tolower((unsigned char)name.ptr[k]);
        buf[used++] = '\0';
        memcpy(buf + used, value.ptr, value.len);
        used += value.len;
        buf[used++] = '\0';
    }
    return used > 0 ? (audit_str){buf, used} : (audit_str){NULL, 0};
}

int wp_record_keep(audit_record *rec, char **strings)
{
    audit_str *f[] = {&rec->policy,           &rec->reason,      &rec->dry_run_policy,
                      &rec->source_principal, &rec->source_ip,   &rec->destination_service,
                      &rec->destination_principal, &rec->method, &rec->host,
                      &rec->path,             &rec->protocol,    &rec->bundle,
                      &rec->trace_id,         &rec->peer_cert_sha256, &rec->headers};
    size_t n = sizeof(f) / sizeof(f[0]), total = 0;
    for (size_t i = 0; i < n; i++)
        total += f[i]->ptr ? f[i]->len + 1 : 0;
    if ((*strings = malloc(total + 1)) == NULL)
        return WARD_ENOMEM;
    char *p = *strings;
    for (size_t i = 0; i < n; i++) {
        if (f[i]->ptr == NULL)
            continue;
        memcpy(p, f[i]->ptr, f[i]->len);
        p[f[i]->len] = '\0';
        f[i]->ptr = p;
        p += f[i]->len + 1;
    }
    return 0;
}

static const char *cstr_of(audit_str s)
{
    return s.ptr; /* NUL-terminated once kept */
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static authz_str astr(proxy_slice s)
{
    return (authz_str){s.ptr, s.len};
}



void wp_split_addr(const char *a, authz_str *ip, int *port)
{
    *ip = (authz_str){NULL, 0};
    *port = -1;
    const char *colon = strrchr(a, ':');
    if (colon == NULL)
        return;
    if (a[0] == '[' && colon > a && colon[-1] == ']')
        *ip = (authz_str){a + 1, (size_t)(colon - a - 2)};
    else
        *ip = (authz_str){a, (size_t)(colon - a)};
    *port = atoi(colon + 1);
}

/* The Host header without its port, for finding the upstream service. */
static proxy_slice host_name(proxy_slice host)
{
    if (host.len > 0 && host.ptr[0] == '[')
        return host;
    for (size_t i = host.len; i > 0; i--)
        if (host.ptr[i - 1] == ':')
            return (proxy_slice){host.ptr, i - 1};
    return host;
}

static const proxy_config_upstream *find_upstream(const proxy_config *cfg, proxy_slice name,
                                                  size_t *index)
{
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        const char *s = cfg->upstreams[i].service;
        if (strlen(s) == name.len && strncasecmp(s, name.ptr, name.len) == 0) {
            *index = i;
            return &cfg->upstreams[i];
        }
    }
    return NULL;
}

/* Without a Route, one more attempt on another endpoint (connect failures,
 * and idempotent requests that failed before the app answered). */
static const authz_route_retries DEFAULT_RETRY = {
    .attempts = 1, .on = AUTHZ_RETRY_CONNECT_FAILURE | AUTHZ_RETRY_RESET,
    .on_status = {(1u << 2) | (1u << 3) | (1u << 4)}, /* 502, 503, 504 */
};

/* What a route adds to a forwarded request: arrays the relay reads at once. */
typedef struct route_ops {
    const char **remove; /* request fields removed (remove + set) */
    size_t n_remove;
    proxy_header *add; /* request fields added (set + add) */
    size_t n_add;
    const char **resp_remove;
    size_t n_resp_remove;
    proxy_header *resp_add;
    size_t n_resp_add;
} route_ops;

static void route_ops_free(route_ops *o)
{
    free(o->remove);
    free(o->add);
    free(o->resp_remove);
    free(o->resp_add);
}

/* remove + set names, and set + add fields, of one direction. */
static bool header_ops(const authz_header_ops *h, const char ***rm, size_t *n_rm,
                       proxy_header **add, size_t *n_add)
{
    *rm = calloc(h->n_remove + h->n_set + 1, sizeof(**rm));
    *add = calloc(h->n_set + h->n_add + 1, sizeof(**add));
    if (*rm == NULL || *add == NULL)
        return false;
    for (uint32_t i = 0; i < h->n_remove; i++)
        (*rm)[(*n_rm)++] = h->remove[i].name;
    for (uint32_t i = 0; i < h->n_set; i++)
        (*rm)[(*n_rm)++] = h->set[i].name;
    const authz_header_op *lists[2] = {h->set, h->add};
    uint32_t counts[2] = {h->n_set, h->n_add};
    for (int k = 0; k < 2; k++)
        for (uint32_t i = 0; i < counts[k]; i++)
            (*add)[(*n_add)++] = (proxy_header){{lists[k][i].name, strlen(lists[k][i].name)},
                                                {lists[k][i].value, strlen(lists[k][i].value)}};
    return true;
}

/* An attempt's timeout at now: the per-try limit, cut to what the Route's
 * deadline leaves (at least 1 ms); 0 = the proxy's request timeout. */
static uint64_t attempt_timeout(const wp_req *q, uint64_t now)
{
    uint64_t t = q->per_try_ms;
    if (q->deadline_ms != 0) {
        uint64_t left = q->deadline_ms > now ? q->deadline_ms - now : 1;
        if (t == 0 || left < t)
            t = left;
    }
    return t;
}

/* The Route entry's destination (weighted pick), rewrite, header operations,
 * timeout and retries. False: the destination is no upstream of ours. */
static bool apply_route(wp_worker *w, wp_req *q, const authz_route *rt, proxy_relay_target *t,
                        size_t *up_index, route_ops *ops)
{
    const authz_route_destination *dest = authz_route_pick(rt, (uint32_t)proxy_rng_next(&w->rng));
    const proxy_config *cfg = w->px->cfg;
    size_t i;
    if (find_upstream(cfg, (proxy_slice){dest->service, strlen(dest->service)}, &i) == NULL)
        return false;
    *up_index = i;
    t->path = rt->rewrite_path;
    if (!header_ops(&rt->request_headers, &ops->remove, &ops->n_remove, &ops->add, &ops->n_add) ||
        !header_ops(&rt->response_headers, &ops->resp_remove, &ops->n_resp_remove, &ops->resp_add,
                    &ops->n_resp_add))
        return false;
    t->remove_headers = ops->remove;
    t->n_remove_headers = ops->n_remove;
    t->add_headers = ops->add;
    t->n_add_headers = ops->n_add;
    t->response_remove = ops->resp_remove;
    t->n_response_remove = ops->n_resp_remove;
    t->response_add = ops->resp_add;
    t->n_response_add = ops->n_resp_add;
    /* the Route's timeout bounds the request, retries included; perTryTimeout each attempt */
    q->per_try_ms = rt->has_retries ? rt->retries.per_try_timeout_ms : 0;
    q->deadline_ms = rt->timeout_ms ? uv_now(&w->loop) + rt->timeout_ms : 0;
    t->timeout_ms = attempt_timeout(q, uv_now(&w->loop));
    if (rt->has_retries)
        q->retry = rt->retries;
    /* shadow traffic: a share of the requests copied to the mirror service's
     * healthiest endpoint (its load is not counted: nobody waits for it) */
    size_t m;
    if (rt->mirror_service != NULL && proxy_rng_next(&w->rng) % 100 < rt->mirror_percent &&
        find_upstream(cfg, (proxy_slice){rt->mirror_service, strlen(rt->mirror_service)}, &m) !=
            NULL) {
        size_t ep;
        if (proxy_cluster_pick(w->clusters[m], (proxy_slice){NULL, 0}, PROXY_CLUSTER_NONE,
                               uv_now(&w->loop), &ep) == 0) {
            t->mirror_addr = proxy_cluster_endpoint_addr(w->clusters[m], ep);
            t->mirror_expected_id = cfg->upstreams[m].spiffe_id;
            t->mirror_host = cfg->upstreams[m].service;
        }
    }
    return true;
}

static bool is_idempotent(proxy_slice m)
{
    static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (m.len == strlen(ok[i]) && memcmp(m.ptr, ok[i], m.len) == 0)
            return true;
    return false;
}

/* The upstream cannot take the request now (circuit breaker, no healthy endpoint). */
static void unavailable(proxy_relay_request *r, const char *why)
{
    static const char body[] = "service unavailable\n";
    proxy_header h[2] = {{{"Content-Type", 12}, {"text/plain", 10}},
                         {{"X-Ward-Reason", 13}, {why, strlen(why)}}};
    proxy_relay_respond(r, 503, h, 2, body, sizeof(body) - 1);
}

/* Answers a denial: the policy's status and body, the decision id to quote to
 * an operator, nothing about policies or internals; a rate limit's refusal
 * says when to come back (retry_after_s > 0). */
static void deny(proxy_relay_request *r, int status, const char *body, const audit_id *id,
                 uint64_t retry_after_s)
{
    if (body == NULL)
        body = DENY_BODY;
    char ra[24];
    size_t n = 1;
    proxy_header h[3] = {{{"Content-Type", 12}, {"text/plain", 10}}};
    if (id->hex[0])
        h[n++] = (proxy_header){{"X-Ward-Decision-Id", 18}, {id->hex, strlen(id->hex)}};
    if (retry_after_s > 0) {
        int len = snprintf(ra, sizeof(ra), "%llu", (unsigned long long)retry_after_s);
        h[n++] = (proxy_header){{"Retry-After", 11}, {ra, (size_t)len}};
    }
    proxy_relay_respond(r, status, h, n, body, strlen(body));
}

/* Keeps the labels of the Route entry that serves q, for its metrics. */
static void route_label_keep(wp_req *q, const authz_route *rt)
{
    char entry[32];
    const char *name = rt->name;
    if (name == NULL || name[0] == '\0') {
        snprintf(entry, sizeof(entry), "http[%d]", rt->index);
        name = entry;
    }
    size_t a = strlen(rt->policy), b = strlen(name);
    if ((q->route_label = malloc(a + b + 2)) == NULL)
        return; /* not counted per route; the request goes on */
    memcpy(q->route_label, rt->policy, a + 1);
    memcpy(q->route_label + a + 1, name, b + 1);
}

/* Inbound: the rate limit of the Route entry that matched, where the caller's
 * identity is verified (a caller cannot go around it). Refused: the decision
 * becomes a denial by the Route (429, audited like any denial). */
static void rate_limit(wp_worker *w, wp_req *q, const proxy_http_request *h, authz_str principal,
                       authz_decision *d, char *reason, size_t size, uint64_t *retry_after_s)
{
    const authz_route *rt = d->route;
    const authz_rate_limit *rl = &rt->rate_limit;
    proxy_slice key = {"", 0};
    if (rl->key == AUTHZ_RATE_KEY_PRINCIPAL)
        key = (proxy_slice){principal.ptr, principal.len};
    else if (rl->key == AUTHZ_RATE_KEY_HEADER)
        key = proxy_http_header_get(h, rl->header); /* absent: the same key as empty */
    int rc = wp_limits_take(w->limits, rt, key, uv_now(&w->loop), retry_after_s);
    if (rc == 1)
        return;
    bool by_header = rl->key == AUTHZ_RATE_KEY_HEADER;
    if (rc < 0) { /* no limiter (out of memory): refused all the same */
        snprintf(reason, size, "rate limit of Route %s http[%d] unavailable: %s", rt->policy,
                 rt->index, ward_strerror(rc));
        *retry_after_s = 1;
    } else {
        snprintf(reason, size, "rate limited by Route %s http[%d]: %u per %u ms%s%s%s", rt->policy,
                 rt->index, rl->requests, rl->per_ms,
                 rl->key == AUTHZ_RATE_KEY_PRINCIPAL ? " per source.principal"
                 : by_header                         ? " per request.headers["
                                                     : "",
                 by_header ? rl->header : "", by_header ? "]" : "");
    }
    q->rate_limited = true;
    d->decision = AUTHZ_DENY;
    d->policy = rt->policy;
    d->rule = rt->index;
    d->reason = reason;
    d->deny_status = 429;
    d->deny_body = "too many requests\n";
}

/* The request attributes of DESIGN.md, the decision, its audit record, and
 * then forward or deny. `up` is the outbound upstream (NULL inbound). */
static void decide_and_route(wp_worker *w, proxy_relay_request *r, bool inbound,
                             const proxy_config_upstream *up, size_t up_index)
{
    wp_proxy *px = w->px;
    const proxy_config *cfg = px->cfg;
    const proxy_http_request *h = proxy_relay_request_head(r);
    const proxy_peer *peer = proxy_relay_request_peer(r);
    const char *self = ident_svid_id(w->svid);

    wp_req *q = calloc(1, sizeof(*q));
    route_ops ops = {0};
    authz_header stack_headers[HEADERS_ON_STACK];
    authz_header *hs = h->n_headers <= HEADERS_ON_STACK
                           ? stack_headers
                           : malloc(h->n_headers * sizeof(*hs));
    audit_id id = {{0}};
    audit_producer_id_next(w->audit, &id);
    if (q == NULL || hs == NULL) {
        deny(r, 503, "service unavailable\n", &id, 0);
        goto out;
    }
    proxy_relay_request_set_data(r, q);
    q->inbound = inbound;

    authz_request a = {0};
    size_t path_len;
    const char *path = proxy_relay_request_path(r, &path_len);
    if (inbound) {
        a.source_principal = cstr(peer->spiffe_id);
        wp_split_addr(peer->addr, &a.source_ip, &a.source_port);
        a.destination_service = cstr(cfg->service);
        a.destination_principal = cstr(self);
        a.destination_port = px->inbound_port;
        a.mtls = 1;
    } else {
        a.source_principal = cstr(self);
        wp_split_addr(peer->addr, &a.source_ip, &a.source_port);
        if (up != NULL) {
            a.destination_service = cstr(up->service);
            a.destination_principal = cstr(up->spiffe_id);
            wp_split_addr(up->endpoints[0], &(authz_str){0}, &a.destination_port);
        } else { /* a name only a Route can serve (a split between versions) */
            proxy_slice name = host_name(h->host);
            a.destination_service = (authz_str){name.ptr, name.len};
            a.destination_port = -1;
        }
        a.mtls = 0;
    }
    a.method = astr(h->method);
    a.host = astr(h->host);
    a.path = (authz_str){path, path_len};
    a.query = astr(h->query);
    for (size_t i = 0; i < h->n_headers; i++)
        hs[i] = (authz_header){astr(h->headers[i].name), astr(h->headers[i].value)};
    a.headers = hs;
    a.n_headers = h->n_headers;
    a.protocol = h->version_minor == 0 ? (authz_str){"HTTP/1.0", 8} : (authz_str){"HTTP/1.1", 8};

    authz_decision d;
    authz_decision_init(&d);
    uint64_t t0 = mono_ns();
    int rc = a.source_principal.ptr == NULL ? WARD_EINVAL : authz_decide(w->engine, &a, false, &d);
    q->decision_ns = mono_ns() - t0;
    if (rc < 0) { /* fail closed, whatever was filled in */
        d.decision = AUTHZ_DENY;
        d.reason = a.source_principal.ptr == NULL ? "no verified peer identity"
                                                  : "decision failed";
        d.deny_status = 403;
        d.deny_body = NULL;
    }

    char limit_reason[512];
    uint64_t retry_after_s = 0;
    bool limited = inbound && d.decision == AUTHZ_ALLOW && d.route != NULL &&
                   d.route->has_rate_limit;
    if (limited)
        rate_limit(w, q, h, a.source_principal, &d, limit_reason, sizeof(limit_reason),
                   &retry_after_s);
    if (d.route != NULL && (!inbound || limited))
        route_label_keep(q, d.route);

    if (!inbound && up == NULL && d.route == NULL) {
        /* neither an upstream nor a Route has this name: nothing to decide about */
        static const char body[] = "no upstream service with this name\n";
        proxy_header hd[1] = {{{"Content-Type", 12}, {"text/plain", 10}}};
        proxy_relay_respond(r, 404, hd, 1, body, sizeof(body) - 1);
        goto done;
    }
    audit_record *rec_p = &q->rec, rec;
    wp_record_of(&rec, inbound, &a, &d);
    rec.id = id;
    rec.status = d.decision == AUTHZ_ALLOW ? -1 : (d.deny_status ? d.deny_status : 403);
    rec.bundle = audit_cstr(authz_bundle_revision(w->bundle));
    rec.trace_id = audit_cstr(proxy_relay_request_trace_id(r));
    rec.latency_ns = (int64_t)q->decision_ns;
    if (inbound && peer->cert_sha256[0])
        rec.peer_cert_sha256 = audit_cstr(peer->cert_sha256);
    char header_buf[AUDIT_MAX_HEADERS];
    if (cfg->audit.n_headers > 0)
        rec.headers = record_headers(cfg, h, header_buf, sizeof(header_buf));
    wp_record_trim(&rec, cfg->audit.omit);
    /* a denial is recorded now (its answer is known); an allowed request gets
     * its place in the trail now and is recorded with its response status */
    *rec_p = rec;
    bool kept = wp_record_keep(&q->rec, &q->strings) == 0, audit_ok;
    if (!kept)
        q->rec = (audit_record){0};
    if (d.decision != AUTHZ_ALLOW) {
        audit_ok = wp_audit_append(px->audit, w->audit, &rec) == 0;
    } else {
        int arc = kept ? wp_audit_reserve(px->audit, w->audit, AUDIT_ALLOW) : WARD_ENOMEM;
        q->reserved = arc == 0;
        audit_ok = arc == 0 || (arc == WARD_ELIMIT && px->audit_overflow == AUDIT_OVERFLOW_DROP);
    }

    if (d.decision != AUTHZ_ALLOW) {
        deny(r, d.deny_status ? d.deny_status : 403, d.deny_body, &id, retry_after_s);
    } else if (!audit_ok) {
        /* the trail cannot take the record: nothing is served unrecorded */
        deny(r, 503, "service unavailable: audit trail unavailable\n", &id, 0);
    } else {
        q->allow = true;
        char xfcc[2 * IDENT_ID_MAX + 16];
        proxy_header add[1];
        proxy_relay_target t = {0};
        q->retry = DEFAULT_RETRY;
        if (inbound) {
            int n = snprintf(xfcc, sizeof(xfcc), "By=%s;URI=%s", self, peer->spiffe_id);
            add[0] = (proxy_header){{"X-Forwarded-Client-Cert", 23}, {xfcc, (size_t)n}};
            t.addr = (const struct sockaddr *)&cfg->inbound.app_addr;
            t.add_headers = add;
            t.n_add_headers = 1;
        } else {
            /* a Route for the host picks the service (traffic split) and shapes the request */
            const authz_route *rt = d.route;
            if (rt != NULL && !apply_route(w, q, rt, &t, &up_index, &ops)) {
                unavailable(r, "route destination is not a known upstream");
                goto done;
            }
            up = &cfg->upstreams[up_index];
            /* the upstream's cluster: circuit breakers, then an endpoint */
            proxy_cluster *c = w->clusters[up_index];
            const char *why = NULL;
            size_t ep;
            if (!proxy_cluster_admit(c, false, &why)) {
                unavailable(r, why);
                goto done;
            }
            proxy_slice key = proxy_cluster_hash_key(c, h, self);
            if (proxy_cluster_pick(c, key, PROXY_CLUSTER_NONE, uv_now(&w->loop), &ep) < 0) {
                unavailable(r, PROXY_CLUSTER_REASON_NO_ENDPOINT);
                goto done;
            }
            proxy_cluster_request_start(c, ep, false);
            q->cluster = c;
            q->ep = ep;
            q->retries_left = q->retry.attempts;
            q->idempotent = is_idempotent(h->method) || q->retry.non_idempotent;
            t.addr = proxy_cluster_endpoint_addr(c, ep);
            t.tls = w->client_tls;
            t.expected_id = up->spiffe_id;
            t.cluster = c;
            t.endpoint = ep;
        }
        proxy_relay_forward(r, &t);
    }
done:
    route_ops_free(&ops);
    authz_decision_dispose(&d);
out:
    if (hs != stack_headers)
        free(hs);
}

/* The attempt failed before its request was sent: the TCP connect, its
 * timeout, or the TLS handshake (proxy_stream and relay wording). */
static bool connect_failed(const char *why)
{
    return why != NULL && (strncmp(why, "connect", 7) == 0 ||
                           strncmp(why, "TLS handshake", 13) == 0 ||
                           strcmp(why, "upstream connect timeout") == 0);
}

/* Our own circuit breaker refused the attempt: not the endpoint's doing. */
static bool breaker_refused(const char *why)
{
    return why != NULL && strncmp(why, "circuit breaker", 15) == 0;
}

/* The outcome of one attempt, as outlier detection counts it. */
static int attempt_outcome(int status, bool from_upstream, const char *why)
{
    if (from_upstream || why == NULL)
        return status;
    if (breaker_refused(why))
        return PROXY_CLUSTER_CANCELLED;
    return connect_failed(why) ? PROXY_CLUSTER_CONNECT_FAILURE : PROXY_CLUSTER_RESET;
}

/* An outbound attempt failed before the app saw anything: another endpoint,
 * if the request may be repeated, retries are left and the budget allows. */
static bool retry_outbound(proxy_relay_request *r, int status, bool from_upstream,
                           const char *why, void *data)
{
    wp_worker *w = data;
    wp_req *q = proxy_relay_request_data(r);
    if (q == NULL || q->cluster == NULL)
        return false;
    uint64_t now = uv_now(&w->loop);
    proxy_cluster_request_end(q->cluster, q->ep, q->is_retry,
                              attempt_outcome(status, from_upstream, why), now);
    bool connect_failure = !from_upstream && connect_failed(why);
    bool wanted = from_upstream ? authz_route_retries_status(&q->retry, status)
                  : connect_failure ? (q->retry.on & AUTHZ_RETRY_CONNECT_FAILURE) != 0
                  : status == 504 ? authz_route_retries_status(&q->retry, 504)
                                  : (q->retry.on & AUTHZ_RETRY_RESET) != 0;
    size_t ep;
    const char *refused;
    /* a connect failure never reached the app: safe to repeat whatever the method */
    if (q->retries_left == 0 || !wanted || !(connect_failure || q->idempotent) ||
        (q->deadline_ms != 0 && now >= q->deadline_ms) ||
        breaker_refused(why) ||
        !proxy_cluster_admit(q->cluster, true, &refused) ||
        proxy_cluster_pick(q->cluster, (proxy_slice){NULL, 0}, q->ep, now, &ep) < 0) {
        q->cluster = NULL; /* its end is reported */
        return false;
    }
    proxy_cluster_request_start(q->cluster, ep, true);
    q->retries_left--;
    q->retries_done++;
    q->is_retry = true;
    q->ep = ep;
    proxy_relay_target t = {
        .addr = proxy_cluster_endpoint_addr(q->cluster, ep),
        .tls = w->client_tls,
        .expected_id = proxy_cluster_spiffe_id(q->cluster),
        .cluster = q->cluster,
        .endpoint = ep,
        .timeout_ms = attempt_timeout(q, now),
    };
    if (proxy_relay_retarget(r, &t) < 0) {
        proxy_cluster_request_end(q->cluster, ep, true, PROXY_CLUSTER_CANCELLED, now);
        q->cluster = NULL;
        return false;
    }
    return true;
}

static void route_inbound(proxy_relay_request *r, void *data)
{
    decide_and_route(data, r, true, NULL, 0);
}

static void route_outbound(proxy_relay_request *r, void *data)
{
    wp_worker *w = data;
    const proxy_http_request *h = proxy_relay_request_head(r);
    size_t index;
    /* an unknown name may still have a Route: decided, then 404 if it has none */
    const proxy_config_upstream *up = find_upstream(w->px->cfg, host_name(h->host), &index);
    decide_and_route(w, r, false, up, up != NULL ? index : SIZE_MAX);
}

static void on_done(proxy_relay_request *r, const proxy_relay_result *res, bool inbound,
                    wp_worker *w)
{
    wp_req *q = proxy_relay_request_data(r);
    const char *service = q && q->rec.destination_service.ptr ? cstr_of(q->rec.destination_service)
                                                              : NULL;
    if (q != NULL && q->cluster != NULL)
        proxy_cluster_request_end(q->cluster, q->ep, q->is_retry,
                                  attempt_outcome(res->status, !res->local, res->error),
                                  uv_now(&w->loop));
    if (res->local && res->error != NULL && (res->status == 502 || res->status == 503))
        proxy_metrics_upstream_failure(w->metrics, inbound, service ? service : w->px->cfg->service);
    if (q != NULL && q->reserved) {
        q->rec.status = res->status > 0 ? res->status : -1;
        if (wp_audit_append_reserved(w->px->audit, w->audit, &q->rec) < 0)
            wp_log("audit: the record of an allowed request could not be written");
    }
    proxy_metrics_request_info info = {
        .inbound = inbound,
        .allow = q != NULL && q->allow,
        .status = res->status,
        .source_principal = q ? cstr_of(q->rec.source_principal) : NULL,
        .destination_service = service,
        .destination_principal = q ? cstr_of(q->rec.destination_principal) : NULL,
        .decision_ns = q ? q->decision_ns : 0,
        .request_ns = res->duration_ns,
    };
    proxy_metrics_request(w->metrics, &info);
    if (q != NULL && q->route_label != NULL) {
        proxy_metrics_route_info ri = {
            .inbound = inbound,
            .route = q->route_label,
            .entry = q->route_label + strlen(q->route_label) + 1,
            .status = res->status,
            .retries = q->retries_done,
            .rate_limited = q->rate_limited,
            .mirrored = res->mirrored,
            .request_ns = res->duration_ns,
        };
        proxy_metrics_route(w->metrics, &ri);
    }
    if (q != NULL) {
        free(q->strings);
        free(q->route_label);
    }
    free(q);
}

static void done_inbound(proxy_relay_request *r, const proxy_relay_result *res, void *data)
{
    on_done(r, res, true, data);
}

static void done_outbound(proxy_relay_request *r, const proxy_relay_result *res, void *data)
{
    on_done(r, res, false, data);
}

static void tls_error_inbound(const proxy_peer *peer, const char *reason, void *data)
{
    wp_worker *w = data;
    (void)peer;
    proxy_metrics_tls_failure(w->metrics, true, reason);
}

static void conn_inbound(bool opened, void *data)
{
    proxy_metrics_connections(((wp_worker *)data)->metrics, true, opened ? 1 : -1);
}

static void conn_outbound(bool opened, void *data)
{
    proxy_metrics_connections(((wp_worker *)data)->metrics, false, opened ? 1 : -1);
}

/* ---- snapshots and lifecycle ------------------------------------------------------------- */

static void relay_closed(void *data)
{
    wp_worker *w = data;
    if (--w->relays_open > 0)
        return;
    proxy_relay_pool_free(w->pool);
    w->pool = NULL;
    uv_close((uv_handle_t *)&w->wake, NULL); /* the loop ends once everything is closed */
}

/* Picks up what the main thread published: a policy set, an SVID, or stop. */
static void on_wake(uv_async_t *a)
{
    wp_worker *w = a->data;
    wp_proxy *px = w->px;
    authz_bundle *b = NULL;
    wp_tls t = {0};
    pthread_mutex_lock(&px->lock);
    if (w->policy_gen != px->policy_gen) {
        b = px->bundle;
        authz_bundle_ref(b);
        w->policy_gen = px->policy_gen;
    }
    if (w->tls_gen != px->tls_gen) {
        t = px->tls;
        proxy_tls_ctx_ref(t.server);
        proxy_tls_ctx_ref(t.client);
        ident_svid_ref(t.svid);
        w->tls_gen = px->tls_gen;
    }
    bool stop = px->stopping && !w->stopping;
    pthread_mutex_unlock(&px->lock);
    if (b != NULL) {
        /* between requests: every request decided so far used the old set */
        ward_err err;
        ward_err_clear(&err);
        if (authz_engine_swap(w->engine, b, &err) < 0) {
            wp_log("worker %u: cannot load the new policy set, keeping the old one: %s",
                   w->index, err.msg);
            authz_bundle_unref(b);
        } else {
            authz_bundle_unref(w->bundle);
            w->bundle = b;
        }
    }
    if (t.server != NULL) {
        if (w->inbound)
            proxy_relay_set_tls(w->inbound, t.server);
        wp_tcp_set_tls(w, t.server);
        proxy_tls_ctx_unref(t.server);
        proxy_tls_ctx_unref(w->client_tls);
        w->client_tls = t.client;
        ident_svid_unref(w->svid);
        w->svid = t.svid;
    }
    if (stop) {
        w->stopping = true;
        if (w->inbound)
            proxy_relay_close(w->inbound, px->cfg->drain_ms, relay_closed, w);
        if (w->outbound)
            proxy_relay_close(w->outbound, px->cfg->drain_ms, relay_closed, w);
        w->inbound = w->outbound = NULL;
        wp_tcp_close(w, px->cfg->drain_ms, relay_closed);
    }
}

static void *worker_main(void *arg)
{
    wp_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

static proxy_relay_options relay_options(const proxy_config *cfg, wp_worker *w, bool inbound)
{
    /* inbound requests come from a proxy that applied the limits and then added
     * its own fields (X-Forwarded-For, traceparent): room for those */
    size_t more_fields = inbound ? 8 : 0, more_bytes = inbound ? 4096 : 0;
    proxy_relay_options o = {
        .limits = {.header_bytes_max = (size_t)cfg->limits.max_header_bytes + more_bytes,
                   .headers_max = (size_t)cfg->limits.max_headers + more_fields,
                   .body_max = cfg->limits.max_body},
        .timeouts = inbound ? cfg->inbound.timeouts : cfg->outbound.timeouts,
        .max_connections = (size_t)cfg->limits.max_connections,
        .pool = w->pool,
        .route = inbound ? route_inbound : route_outbound,
        .done = inbound ? done_inbound : done_outbound,
        .on_tls_error = inbound ? tls_error_inbound : NULL,
        .on_connection = inbound ? conn_inbound : conn_outbound,
        .retry = inbound ? NULL : retry_outbound,
        .data = w,
    };
    return o;
}

void wp_set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

static int worker_init(wp_proxy *px, wp_worker *w, ward_err *err)
{
    const proxy_config *cfg = px->cfg;
    int rc = uv_loop_init(&w->loop);
    if (rc < 0) {
        ward_err_set(err, "event loop: %s", uv_strerror(rc));
        return WARD_EIO;
    }
    uv_async_init(&w->loop, &w->wake, on_wake);
    w->wake.data = w;
    proxy_rng_seed(&w->rng, uv_hrtime() ^ ((uint64_t)w->index << 40));
    w->clusters = calloc(cfg->n_upstreams + 1, sizeof(*w->clusters));
    if (w->clusters == NULL)
        return WARD_ENOMEM;
    for (size_t i = 0; i < cfg->n_upstreams; i++)
        if ((rc = proxy_cluster_new(&cfg->upstreams[i], px->n_workers,
                                    uv_hrtime() ^ ((uint64_t)w->index << 32), &w->clusters[i])) < 0) {
            ward_err_set(err, "upstream %s: %s", cfg->upstreams[i].service, ward_strerror(rc));
            return rc;
        }
    if ((rc = proxy_metrics_new(&w->metrics)) < 0 || (rc = wp_limits_new(px->n_workers, &w->limits)) < 0 ||
        (rc = audit_log_producer_new(px->audit, &w->audit)) < 0 ||
        (rc = proxy_relay_pool_new(&w->loop, 0, 0, MESH_CONNECTS_IN_PROGRESS, &w->pool)) < 0) {
        ward_err_set(err, "worker %u: %s", w->index, ward_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&px->lock);
    authz_bundle *b = px->bundle;
    authz_bundle_ref(b);
    w->policy_gen = px->policy_gen;
    w->tls_gen = px->tls_gen;
    proxy_tls_ctx *server = px->tls.server;
    proxy_tls_ctx_ref(server);
    proxy_tls_ctx_ref(px->tls.client);
    w->client_tls = px->tls.client;
    ident_svid_ref(px->tls.svid);
    w->svid = px->tls.svid;
    pthread_mutex_unlock(&px->lock);
    rc = authz_engine_new(b, &w->engine, err);
    w->bundle = b; /* the set the engine runs: its revision goes into the records */
    if (rc < 0) {
        proxy_tls_ctx_unref(server);
        return rc;
    }

    bool reuse = true;
    proxy_relay_options in = relay_options(cfg, w, true);
    rc = proxy_relay_new(&w->loop, &in, &w->inbound);
    if (rc == 0) {
        proxy_relay_set_tls(w->inbound, server);
        struct sockaddr_storage addr = cfg->inbound.listen_addr;
        if (px->inbound_port > 0)
            wp_set_port(&addr, px->inbound_port);
        rc = proxy_relay_listen(w->inbound, (struct sockaddr *)&addr, reuse, err);
        if (rc == 0)
            px->inbound_port = proxy_relay_port(w->inbound);
        w->relays_open++;
    }
    if (rc == 0)
        rc = wp_tcp_start(w, server, err);
    proxy_tls_ctx_unref(server);
    if (rc < 0 || cfg->outbound.listen == NULL)
        return rc;
    proxy_relay_options out = relay_options(cfg, w, false);
    rc = proxy_relay_new(&w->loop, &out, &w->outbound);
    if (rc == 0) {
        struct sockaddr_storage addr = cfg->outbound.listen_addr;
        if (px->outbound_port > 0)
            wp_set_port(&addr, px->outbound_port);
        rc = proxy_relay_listen(w->outbound, (struct sockaddr *)&addr, reuse, err);
        if (rc == 0)
            px->outbound_port = proxy_relay_port(w->outbound);
        w->relays_open++;
    }
    return rc;
}

int wp_workers_start(wp_proxy *px, ward_err *err)
{
    px->workers = calloc(px->n_workers, sizeof(*px->workers));
    px->tcp_ports = calloc(px->cfg->n_tcp + 1, sizeof(*px->tcp_ports));
    if (px->workers == NULL || px->tcp_ports == NULL)
        return WARD_ENOMEM;
    for (unsigned i = 0; i < px->n_workers; i++) {
        wp_worker *w = &px->workers[i];
        w->px = px;
        w->index = i;
        int rc = worker_init(px, w, err);
        if (rc < 0)
            return rc;
    }
    for (unsigned i = 0; i < px->n_workers; i++) {
        if (pthread_create(&px->workers[i].thread, NULL, worker_main, &px->workers[i]) != 0) {
            ward_err_set(err, "cannot start worker threads");
            return WARD_EIO;
        }
        px->workers_running++;
    }
    return 0;
}

void wp_workers_notify(wp_proxy *px)
{
    for (int i = 0; i < px->workers_running; i++)
        uv_async_send(&px->workers[i].wake);
}

void wp_workers_stop(wp_proxy *px)
{
    pthread_mutex_lock(&px->lock);
    px->stopping = true;
    pthread_mutex_unlock(&px->lock);
    wp_workers_notify(px);
    for (int i = 0; i < px->workers_running; i++)
        pthread_join(px->workers[i].thread, NULL);
    px->workers_running = 0;
}

/* After the admin endpoint stopped reading the metrics. */
void wp_workers_free(wp_proxy *px)
{
    for (unsigned i = 0; px->workers != NULL && i < px->n_workers; i++) {
        wp_worker *w = &px->workers[i];
        if (w->engine)
            authz_engine_free(w->engine);
        if (w->bundle)
            authz_bundle_unref(w->bundle);
        if (w->client_tls)
            proxy_tls_ctx_unref(w->client_tls);
        if (w->svid)
            ident_svid_unref(w->svid);
        if (w->metrics)
            proxy_metrics_free(w->metrics);
        wp_limits_free(w->limits);
        wp_tcp_free(w);
        for (size_t k = 0; w->clusters != NULL && k < px->cfg->n_upstreams; k++)
            proxy_cluster_free(w->clusters[k]);
        free(w->clusters);
        uv_loop_close(&w->loop);
    }
    free(px->workers);
    px->workers = NULL;
}
