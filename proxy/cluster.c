/* cluster.c - one worker's view of an upstream: balancing, breakers, outlier ejection, retry budget
 */
#include "proxy/proxy.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shared counters have one writer (the worker): a relaxed load and store is an
 * update without a locked instruction, and readers on other threads never see
 * a torn value. */
typedef _Atomic uint64_t ctr;

static inline uint64_t ctr_get(const ctr *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static inline void ctr_set(ctr *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

static inline void ctr_inc(ctr *c)
{
    ctr_set(c, ctr_get(c) + 1);
}

/* Gauges never wrap below zero, whatever a caller reports. */
static inline void ctr_dec(ctr *c)
{
    uint64_t v = ctr_get(c);
    if (v > 0)
        ctr_set(c, v - 1);
}

#define RING_MIN 4096 /* ring points at least, for an even spread with few endpoints */

typedef struct ring_point {
    uint32_t hash;
    uint32_t ep;
} ring_point;

typedef struct endpoint {
    char *name;
    struct sockaddr_storage addr;
    /* the worker's own state */
    bool ejected;         /* out of rotation until ejected_until */
    uint64_t run_5xx;     /* consecutive 5xx answers (and resets) */
    uint64_t run_connect; /* consecutive connect failures */
    uint64_t multiplier;  /* ejection count for the next ejection's length (decays) */
    uint64_t returned_at; /* when the last ejection ended */
    /* also read by other threads */
    _Atomic bool healthy;
    ctr ejected_until; /* 0 = not ejected */
    ctr requests, active, connections, errors_5xx, connect_failures, ejections;
} endpoint;

struct proxy_cluster {
    char *service;
    char *spiffe_id;
    char *hash_header; /* PROXY_HASH_HEADER */
    proxy_balance balance;
    proxy_hash_on hash_on;
    endpoint *eps;
    size_t n;
    size_t *cand; /* scratch: n candidates */
    ring_point *ring;
    size_t n_ring;
    /* worker state */
    size_t n_available; /* healthy and not ejected */
    size_t n_ejected;
    uint64_t next_return; /* earliest ejected_until of the ejected, UINT64_MAX: none */
    size_t rr_next;
    proxy_rng rng;
    /* limits of this instance */
    uint64_t max_connections, max_pending, max_requests, max_retries;
    uint64_t consecutive_5xx, consecutive_connect;
    uint64_t base_ejection_ms, max_ejection_ms, max_ejection_percent;
    uint64_t budget_percent, budget_min;
    /* shared counters */
    ctr connections, pending, active_requests, active_retries, requests, retries;
    ctr overflows[PROXY_OVERFLOW_KINDS];
};

/* ---- names, random numbers, hashing ------------------------------------------------ */

const char *proxy_cluster_overflow_name(proxy_cluster_overflow kind)
{
    switch (kind) {
    case PROXY_OVERFLOW_CONNECTIONS: return "max_connections";
    case PROXY_OVERFLOW_PENDING: return "max_pending";
    case PROXY_OVERFLOW_REQUESTS: return "max_requests";
    case PROXY_OVERFLOW_RETRIES: return "max_retries";
    case PROXY_OVERFLOW_RETRY_BUDGET: return "retry_budget";
    }
    return "unknown";
}

static const char *overflow_reason(proxy_cluster_overflow kind)
{
    switch (kind) {
    case PROXY_OVERFLOW_CONNECTIONS: return "circuit breaker: max_connections";
    case PROXY_OVERFLOW_PENDING: return "circuit breaker: max_pending";
    case PROXY_OVERFLOW_REQUESTS: return "circuit breaker: max_requests";
    case PROXY_OVERFLOW_RETRIES: return "circuit breaker: max_retries";
    case PROXY_OVERFLOW_RETRY_BUDGET: return "retry budget exhausted";
    }
    return "circuit breaker";
}

const char *proxy_balance_name(proxy_balance b)
{
    switch (b) {
    case PROXY_BALANCE_LEAST_REQUEST: return "least_request";
    case PROXY_BALANCE_ROUND_ROBIN: return "round_robin";
    case PROXY_BALANCE_CONSISTENT_HASH: return "consistent_hash";
    }
    return "unknown";
}

/* splitmix64's finalizer: every input bit affects every output bit. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* FNV-1a, then mixed (FNV alone spreads short keys poorly in the high bits). */
static uint64_t hash_bytes(const char *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return mix64(h);
}

void proxy_rng_seed(proxy_rng *r, uint64_t seed)
{
    r->s = mix64(seed + 0x9e3779b97f4a7c15ull);
    if (r->s == 0) /* xorshift's one forbidden state */
        r->s = 0x9e3779b97f4a7c15ull;
}

uint64_t proxy_rng_next(proxy_rng *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dull;
}

size_t proxy_weighted_pick(const uint32_t *weights, size_t n, uint64_t rand)
{
    uint64_t total = 0; /* at most n * 2^32: no overflow below 2^32 destinations */
    for (size_t i = 0; i < n; i++)
        total += weights[i];
    if (total == 0)
        return n;
    uint64_t r = rand % total; /* bias below total / 2^64: none measurable */
    for (size_t i = 0; i < n; i++) {
        if (r < weights[i])
            return i;
        r -= weights[i];
    }
    return n; /* not reached */
}

/* ---- lifecycle ------------------------------------------------------------------------- */

void proxy_config_upstream_defaults(proxy_config_upstream *u)
{
    u->balance = PROXY_BALANCE_LEAST_REQUEST;
    u->hash_on = PROXY_HASH_SOURCE_PRINCIPAL;
    u->circuit_breakers.max_connections = PROXY_CLUSTER_DEFAULT_MAX_CONNECTIONS;
    u->circuit_breakers.max_pending = PROXY_CLUSTER_DEFAULT_MAX_PENDING;
    u->circuit_breakers.max_requests = PROXY_CLUSTER_DEFAULT_MAX_REQUESTS;
    u->circuit_breakers.max_retries = PROXY_CLUSTER_DEFAULT_MAX_RETRIES;
    u->outlier.consecutive_5xx = PROXY_CLUSTER_DEFAULT_CONSECUTIVE;
    u->outlier.consecutive_connect_failures = PROXY_CLUSTER_DEFAULT_CONSECUTIVE;
    u->outlier.base_ejection_ms = PROXY_CLUSTER_DEFAULT_BASE_EJECTION_MS;
    u->outlier.max_ejection_ms = PROXY_CLUSTER_DEFAULT_MAX_EJECTION_MS;
    u->outlier.max_ejection_percent = PROXY_CLUSTER_DEFAULT_MAX_EJECTION_PCT;
    u->retry_budget.percent = PROXY_CLUSTER_DEFAULT_BUDGET_PERCENT;
    u->retry_budget.min_concurrency = PROXY_CLUSTER_DEFAULT_BUDGET_MIN;
}

/* A whole-proxy limit shared out among workers: rounded up, so never 0 unless it was. */
static uint64_t share(uint64_t limit, unsigned workers)
{
    return limit == 0 ? 0 : limit / workers + (limit % workers != 0);
}

static int point_cmp(const void *a, const void *b)
{
    const ring_point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->ep < y->ep ? -1 : x->ep > y->ep;
}

/* Each endpoint's points depend on its name only, not on its position or the
 * others: an endpoint added, removed or skipped moves only its own keys. */
static int ring_build(proxy_cluster *c)
{
    size_t vnodes = RING_MIN / c->n + (RING_MIN % c->n != 0);
    if (vnodes < PROXY_CLUSTER_VNODES)
        vnodes = PROXY_CLUSTER_VNODES;
    if (c->n > UINT32_MAX || c->n > SIZE_MAX / vnodes / sizeof(ring_point))
        return WARD_ELIMIT;
    c->n_ring = c->n * vnodes;
    c->ring = malloc(c->n_ring * sizeof(*c->ring));
    if (c->ring == NULL)
        return WARD_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        uint64_t base = hash_bytes(c->eps[i].name, strlen(c->eps[i].name));
        for (size_t v = 0; v < vnodes; v++) {
            c->ring[k].hash = (uint32_t)(mix64(base + (v + 1) * 0x9e3779b97f4a7c15ull) >> 32);
            c->ring[k].ep = (uint32_t)i;
            k++;
        }
    }
    qsort(c->ring, c->n_ring, sizeof(*c->ring), point_cmp);
    return 0;
}

static char *dup_or_null(const char *s, int *rc)
{
    if (s == NULL)
        return NULL;
    char *p = strdup(s);
    if (p == NULL)
        *rc = WARD_ENOMEM;
    return p;
}

int proxy_cluster_new(const proxy_config_upstream *u, unsigned workers, uint64_t seed,
                      proxy_cluster **out)
{
    int rc = 0;
    *out = NULL;
    if (u == NULL || u->service == NULL || u->n_endpoints == 0 || u->endpoints == NULL ||
        u->addrs == NULL || u->outlier.max_ejection_percent > 100 ||
        (u->balance == PROXY_BALANCE_CONSISTENT_HASH && u->hash_on == PROXY_HASH_HEADER &&
         u->hash_header == NULL))
        return WARD_EINVAL;
    if (workers == 0)
        workers = 1;
    proxy_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return WARD_ENOMEM;
    c->n = u->n_endpoints;
    c->eps = calloc(c->n, sizeof(*c->eps));
    c->cand = calloc(c->n, sizeof(*c->cand));
    if (c->eps == NULL || c->cand == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    c->service = dup_or_null(u->service, &rc);
    c->spiffe_id = dup_or_null(u->spiffe_id, &rc);
    c->balance = u->balance;
    c->hash_on = u->hash_on;
    if (u->balance == PROXY_BALANCE_CONSISTENT_HASH && u->hash_on == PROXY_HASH_HEADER)
        c->hash_header = dup_or_null(u->hash_header, &rc);
    for (size_t i = 0; i < c->n; i++) {
        endpoint *e = &c->eps[i];
        e->name = dup_or_null(u->endpoints[i] != NULL ? u->endpoints[i] : "", &rc);
        e->addr = u->addrs[i];
        atomic_init(&e->healthy, true);
    }
    if (rc < 0)
        goto fail;
    if (c->balance == PROXY_BALANCE_CONSISTENT_HASH)
        WARD_TRY(ring_build(c));
    c->n_available = c->n;
    c->next_return = UINT64_MAX;
    proxy_rng_seed(&c->rng, seed);
    c->max_connections = share(u->circuit_breakers.max_connections, workers);
    c->max_pending = share(u->circuit_breakers.max_pending, workers);
    c->max_requests = share(u->circuit_breakers.max_requests, workers);
    c->max_retries = share(u->circuit_breakers.max_retries, workers);
    c->budget_min = share(u->retry_budget.min_concurrency, workers);
    c->budget_percent = u->retry_budget.percent;
    c->consecutive_5xx = u->outlier.consecutive_5xx;
    c->consecutive_connect = u->outlier.consecutive_connect_failures;
    c->base_ejection_ms = u->outlier.base_ejection_ms > 0 ? u->outlier.base_ejection_ms : 1;
    c->max_ejection_ms = u->outlier.max_ejection_ms > c->base_ejection_ms
                             ? u->outlier.max_ejection_ms
                             : c->base_ejection_ms;
    c->max_ejection_percent = u->outlier.max_ejection_percent;
    *out = c;
    return 0;
fail:
    proxy_cluster_free(c);
    return rc;
}

void proxy_cluster_free(proxy_cluster *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; c->eps != NULL && i < c->n; i++)
        free(c->eps[i].name);
    free(c->eps);
    free(c->cand);
    free(c->ring);
    free(c->service);
    free(c->spiffe_id);
    free(c->hash_header);
    free(c);
}

const char *proxy_cluster_service(const proxy_cluster *c)
{
    return c->service;
}

const char *proxy_cluster_spiffe_id(const proxy_cluster *c)
{
    return c->spiffe_id;
}

size_t proxy_cluster_endpoint_count(const proxy_cluster *c)
{
    return c->n;
}

const char *proxy_cluster_endpoint_name(const proxy_cluster *c, size_t ep)
{
    return ep < c->n ? c->eps[ep].name : NULL;
}

const struct sockaddr *proxy_cluster_endpoint_addr(const proxy_cluster *c, size_t ep)
{
    return ep < c->n ? (const struct sockaddr *)&c->eps[ep].addr : NULL;
}

proxy_slice proxy_cluster_hash_key(const proxy_cluster *c, const proxy_http_request *req,
                                   const char *source_principal)
{
    proxy_slice none = {NULL, 0};
    if (c->balance != PROXY_BALANCE_CONSISTENT_HASH)
        return none;
    if (c->hash_on == PROXY_HASH_HEADER)
        return req != NULL ? proxy_http_header_get(req, c->hash_header) : none;
    if (source_principal == NULL)
        return none;
    return (proxy_slice){source_principal, strlen(source_principal)};
}

/* ---- admission --------------------------------------------------------------------------- */

static bool overflow(proxy_cluster *c, proxy_cluster_overflow kind, const char **why)
{
    ctr_inc(&c->overflows[kind]);
    if (why != NULL)
        *why = overflow_reason(kind);
    return false;
}

bool proxy_cluster_admit(proxy_cluster *c, bool is_retry, const char **why)
{
    uint64_t active = ctr_get(&c->active_requests);
    if (active >= c->max_requests)
        return overflow(c, PROXY_OVERFLOW_REQUESTS, why);
    if (!is_retry)
        return true;
    uint64_t retrying = ctr_get(&c->active_retries);
    if (retrying >= c->max_retries)
        return overflow(c, PROXY_OVERFLOW_RETRIES, why);
    uint64_t first = active > retrying ? active - retrying : 0;
    uint64_t budget = first / 100 * c->budget_percent + first % 100 * c->budget_percent / 100;
    if (budget < c->budget_min)
        budget = c->budget_min;
    if (retrying >= budget)
        return overflow(c, PROXY_OVERFLOW_RETRY_BUDGET, why);
    return true;
}

bool proxy_cluster_connect_admit(proxy_cluster *c, const char **why)
{
    if (ctr_get(&c->connections) >= c->max_connections)
        return overflow(c, PROXY_OVERFLOW_CONNECTIONS, why);
    if (ctr_get(&c->pending) >= c->max_pending)
        return overflow(c, PROXY_OVERFLOW_PENDING, why);
    return true;
}

/* ---- choosing an endpoint --------------------------------------------------------------- */

static bool available(const proxy_cluster *c, size_t i)
{
    const endpoint *e = &c->eps[i];
    return !e->ejected && atomic_load_explicit(&e->healthy, memory_order_relaxed);
}

/* Ejections whose time has come end. */
static void refresh(proxy_cluster *c, uint64_t now_ms)
{
    if (now_ms < c->next_return)
        return;
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < c->n; i++) {
        endpoint *e = &c->eps[i];
        if (!e->ejected)
            continue;
        uint64_t until = ctr_get(&e->ejected_until);
        if (until > now_ms) {
            if (until < next)
                next = until;
            continue;
        }
        e->ejected = false;
        e->returned_at = until;
        e->run_5xx = e->run_connect = 0;
        ctr_set(&e->ejected_until, 0);
        c->n_ejected--;
        if (atomic_load_explicit(&e->healthy, memory_order_relaxed))
            c->n_available++;
    }
    c->next_return = next;
}

static size_t pick_round_robin(proxy_cluster *c, size_t avoid)
{
    size_t fallback = PROXY_CLUSTER_NONE;
    for (size_t k = 0; k < c->n; k++) {
        size_t i = (c->rr_next + k) % c->n;
        if (!available(c, i))
            continue;
        if (i == avoid) {
            fallback = i;
            continue;
        }
        c->rr_next = i + 1;
        return i;
    }
    if (fallback != PROXY_CLUSTER_NONE)
        c->rr_next = fallback + 1;
    return fallback;
}

/* Two distinct candidates at random; the one with fewer attempts in flight
 * (the first on a tie). */
static size_t pick_least_request(proxy_cluster *c, size_t avoid)
{
    bool skip = avoid < c->n && available(c, avoid);
    size_t m = c->n_available - (skip ? 1 : 0);
    if (m == 0)
        return skip ? avoid : PROXY_CLUSTER_NONE;
    const size_t *cand = NULL;
    if (c->n_available != c->n) {
        size_t k = 0;
        for (size_t i = 0; i < c->n; i++)
            if (available(c, i) && i != avoid)
                c->cand[k++] = i;
        m = k;
        cand = c->cand;
    }
    size_t a = (size_t)(proxy_rng_next(&c->rng) % m);
    size_t b = a;
    if (m > 1) {
        b = (size_t)(proxy_rng_next(&c->rng) % (m - 1));
        if (b >= a)
            b++;
    }
    if (cand != NULL) {
        a = cand[a];
        b = cand[b];
    } else if (skip) { /* every endpoint is available: index around the avoided one */
        a += a >= avoid;
        b += b >= avoid;
    }
    return ctr_get(&c->eps[b].active) < ctr_get(&c->eps[a].active) ? b : a;
}

/* The first point at or after the key's hash, walking on past endpoints that
 * cannot be used: only the keys of a skipped endpoint move. */
static size_t pick_hash(proxy_cluster *c, proxy_slice key, size_t avoid)
{
    uint32_t h = (uint32_t)(hash_bytes(key.ptr, key.len) >> 32);
    size_t lo = 0, hi = c->n_ring;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t fallback = PROXY_CLUSTER_NONE;
    for (size_t k = 0; k < c->n_ring; k++) {
        size_t ep = c->ring[(lo + k) % c->n_ring].ep;
        if (!available(c, ep))
            continue;
        if (ep != avoid)
            return ep;
        fallback = ep;
    }
    return fallback;
}

int proxy_cluster_pick(proxy_cluster *c, proxy_slice key, size_t avoid, uint64_t now_ms, size_t *ep)
{
    refresh(c, now_ms);
    *ep = PROXY_CLUSTER_NONE;
    if (c->n_available == 0)
        return WARD_ENOENT;
    size_t i;
    if (c->balance == PROXY_BALANCE_ROUND_ROBIN)
        i = pick_round_robin(c, avoid);
    else if (c->balance == PROXY_BALANCE_CONSISTENT_HASH && key.ptr != NULL)
        i = pick_hash(c, key, avoid);
    else
        i = pick_least_request(c, avoid);
    if (i == PROXY_CLUSTER_NONE)
        return WARD_ENOENT;
    *ep = i;
    return 0;
}

/* ---- reports and outlier detection ---------------------------------------------------------- */

static void eject(proxy_cluster *c, size_t i, uint64_t now_ms)
{
    endpoint *e = &c->eps[i];
    if (e->ejected)
        return;
    /* never more than max_ejection_percent of the endpoints out */
    if ((c->n_ejected + 1) * 100 > c->max_ejection_percent * c->n)
        return;
    if (e->multiplier > 0 && now_ms > e->returned_at) {
        uint64_t calm = (now_ms - e->returned_at) / c->base_ejection_ms;
        e->multiplier = calm >= e->multiplier ? 0 : e->multiplier - calm;
    }
    e->multiplier++;
    uint64_t len = e->multiplier > c->max_ejection_ms / c->base_ejection_ms
                       ? c->max_ejection_ms
                       : e->multiplier * c->base_ejection_ms;
    uint64_t until = now_ms > UINT64_MAX - len ? UINT64_MAX : now_ms + len;
    e->ejected = true;
    e->run_5xx = e->run_connect = 0;
    ctr_set(&e->ejected_until, until);
    ctr_inc(&e->ejections);
    c->n_ejected++;
    if (atomic_load_explicit(&e->healthy, memory_order_relaxed))
        c->n_available--;
    if (until < c->next_return)
        c->next_return = until;
}

void proxy_cluster_request_start(proxy_cluster *c, size_t ep, bool is_retry)
{
    ctr_inc(&c->requests);
    ctr_inc(&c->active_requests);
    if (is_retry) {
        ctr_inc(&c->retries);
        ctr_inc(&c->active_retries);
    }
    if (ep < c->n) {
        ctr_inc(&c->eps[ep].requests);
        ctr_inc(&c->eps[ep].active);
    }
}

void proxy_cluster_request_end(proxy_cluster *c, size_t ep, bool is_retry, int status,
                               uint64_t now_ms)
{
    ctr_dec(&c->active_requests);
    if (is_retry)
        ctr_dec(&c->active_retries);
    if (ep >= c->n)
        return;
    refresh(c, now_ms); /* an ejection that ended counts as ended, picked since or not */
    endpoint *e = &c->eps[ep];
    ctr_dec(&e->active);
    if (status == PROXY_CLUSTER_CONNECT_FAILURE) {
        ctr_inc(&e->connect_failures);
        e->run_connect++;
        if (c->consecutive_connect > 0 && e->run_connect >= c->consecutive_connect)
            eject(c, ep, now_ms);
    } else if (status == PROXY_CLUSTER_RESET || (status >= 500 && status <= 599)) {
        ctr_inc(&e->errors_5xx);
        e->run_connect = 0; /* it was reached */
        e->run_5xx++;
        if (c->consecutive_5xx > 0 && e->run_5xx >= c->consecutive_5xx)
            eject(c, ep, now_ms);
    } else if (status >= 100 && status <= 499) {
        e->run_5xx = e->run_connect = 0;
    }
    /* PROXY_CLUSTER_CANCELLED and anything else: not the endpoint's doing */
}

void proxy_cluster_pending_start(proxy_cluster *c)
{
    ctr_inc(&c->pending);
}

void proxy_cluster_pending_end(proxy_cluster *c)
{
    ctr_dec(&c->pending);
}

void proxy_cluster_connection_start(proxy_cluster *c, size_t ep)
{
    ctr_inc(&c->connections);
    if (ep < c->n)
        ctr_inc(&c->eps[ep].connections);
}

void proxy_cluster_connection_end(proxy_cluster *c, size_t ep)
{
    ctr_dec(&c->connections);
    if (ep < c->n)
        ctr_dec(&c->eps[ep].connections);
}

void proxy_cluster_set_healthy(proxy_cluster *c, size_t ep, bool healthy)
{
    if (ep >= c->n)
        return;
    endpoint *e = &c->eps[ep];
    bool was = atomic_load_explicit(&e->healthy, memory_order_relaxed);
    if (was == healthy)
        return;
    atomic_store_explicit(&e->healthy, healthy, memory_order_relaxed);
    if (!e->ejected) {
        if (healthy)
            c->n_available++;
        else
            c->n_available--;
    }
}

/* ---- stats (any thread) ------------------------------------------------------------------ */

void proxy_cluster_endpoint_get_stats(const proxy_cluster *c, size_t ep, uint64_t now_ms,
                                      proxy_cluster_endpoint_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (ep >= c->n)
        return;
    const endpoint *e = &c->eps[ep];
    uint64_t until = ctr_get(&e->ejected_until);
    out->name = e->name;
    out->healthy = atomic_load_explicit(&e->healthy, memory_order_relaxed);
    out->ejected = until > now_ms;
    out->ejected_until_ms = out->ejected ? until : 0;
    out->requests = ctr_get(&e->requests);
    out->active = ctr_get(&e->active);
    out->connections = ctr_get(&e->connections);
    out->errors_5xx = ctr_get(&e->errors_5xx);
    out->connect_failures = ctr_get(&e->connect_failures);
    out->ejections = ctr_get(&e->ejections);
}

void proxy_cluster_get_stats(const proxy_cluster *c, uint64_t now_ms, proxy_cluster_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->service = c->service;
    out->balance = c->balance;
    out->endpoints = c->n;
    for (size_t i = 0; i < c->n; i++) {
        const endpoint *e = &c->eps[i];
        if (atomic_load_explicit(&e->healthy, memory_order_relaxed) &&
            ctr_get(&e->ejected_until) <= now_ms)
            out->available++;
    }
    out->connections = ctr_get(&c->connections);
    out->pending = ctr_get(&c->pending);
    out->active_requests = ctr_get(&c->active_requests);
    out->active_retries = ctr_get(&c->active_retries);
    out->requests = ctr_get(&c->requests);
    out->retries = ctr_get(&c->retries);
    for (size_t k = 0; k < PROXY_OVERFLOW_KINDS; k++)
        out->overflows[k] = ctr_get(&c->overflows[k]);
    out->max_connections = c->max_connections;
    out->max_pending = c->max_pending;
    out->max_requests = c->max_requests;
    out->max_retries = c->max_retries;
    out->budget_min_concurrency = c->budget_min;
}

/* ---- rendering: every worker's instances, summed per service ------------------------------- */

typedef struct merged_ep {
    proxy_cluster_endpoint_stats s; /* sums; ejected_until_ms: the latest */
    size_t ejected_in;              /* instances that eject it now */
} merged_ep;

typedef struct merged {
    proxy_cluster_stats s; /* sums */
    size_t instances;
    merged_ep *eps;
} merged;

static void merged_free(merged *m, size_t n)
{
    for (size_t i = 0; m != NULL && i < n; i++)
        free(m[i].eps);
    free(m);
}

/* One entry per service, in order of first appearance. */
static int merge(proxy_cluster *const *cs, size_t n, uint64_t now_ms, merged **out, size_t *n_out)
{
    merged *m = calloc(n > 0 ? n : 1, sizeof(*m));
    size_t k = 0;
    if (m == NULL)
        return WARD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const proxy_cluster *c = cs[i];
        if (c == NULL)
            continue;
        size_t j = 0;
        while (j < k && strcmp(m[j].s.service, c->service) != 0)
            j++;
        proxy_cluster_stats st;
        proxy_cluster_get_stats(c, now_ms, &st);
        merged *g = &m[j];
        if (j == k) {
            g->eps = calloc(c->n, sizeof(*g->eps));
            if (g->eps == NULL) {
                merged_free(m, k);
                return WARD_ENOMEM;
            }
            k++;
            g->s = st;
            g->instances = 1;
            for (size_t e = 0; e < c->n; e++) {
                proxy_cluster_endpoint_get_stats(c, e, now_ms, &g->eps[e].s);
                g->eps[e].ejected_in = g->eps[e].s.ejected;
            }
            continue;
        }
        if (st.endpoints != g->s.endpoints)
            continue; /* not the same configuration: cannot be summed */
        g->instances++;
        g->s.available = st.available < g->s.available ? st.available : g->s.available;
        g->s.connections += st.connections;
        g->s.pending += st.pending;
        g->s.active_requests += st.active_requests;
        g->s.active_retries += st.active_retries;
        g->s.requests += st.requests;
        g->s.retries += st.retries;
        for (size_t o = 0; o < PROXY_OVERFLOW_KINDS; o++)
            g->s.overflows[o] += st.overflows[o];
        g->s.max_connections += st.max_connections;
        g->s.max_pending += st.max_pending;
        g->s.max_requests += st.max_requests;
        g->s.max_retries += st.max_retries;
        g->s.budget_min_concurrency += st.budget_min_concurrency;
        for (size_t e = 0; e < c->n; e++) {
            proxy_cluster_endpoint_stats es;
            proxy_cluster_endpoint_get_stats(c, e, now_ms, &es);
            merged_ep *me = &g->eps[e];
            me->s.healthy = me->s.healthy && es.healthy;
            if (es.ejected) {
                me->s.ejected = true;
                me->ejected_in++;
                if (es.ejected_until_ms > me->s.ejected_until_ms)
                    me->s.ejected_until_ms = es.ejected_until_ms;
            }
            me->s.requests += es.requests;
            me->s.active += es.active;
            me->s.connections += es.connections;
            me->s.errors_5xx += es.errors_5xx;
            me->s.connect_failures += es.connect_failures;
            me->s.ejections += es.ejections;
        }
    }
    *out = m;
    *n_out = k;
    return 0;
}

/* A JSON string (names are plain ASCII in practice; anything else is escaped). */
static int json_str(ward_buf *b, const char *s)
{
    int rc = 0;
    WARD_TRY(ward_buf_putc(b, '"'));
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            WARD_TRY(ward_buf_printf(b, "\\%c", *p));
        else if (*p < 0x20 || *p >= 0x7f)
            WARD_TRY(ward_buf_printf(b, "\\u%04x", *p));
        else
            WARD_TRY(ward_buf_putc(b, (char)*p));
    }
    WARD_TRY(ward_buf_putc(b, '"'));
fail:
    return rc;
}

static int render_json_one(ward_buf *b, const merged *g, uint64_t now_ms)
{
    int rc = 0;
    const proxy_cluster_stats *s = &g->s;
    WARD_TRY(ward_buf_puts(b, "{\"service\":"));
    WARD_TRY(json_str(b, s->service));
    WARD_TRY(ward_buf_printf(
        b,
        ",\"balance\":\"%s\",\"instances\":%zu,\"endpoints_total\":%zu,\"available\":%zu,"
        "\"connections\":%" PRIu64 ",\"pending\":%" PRIu64 ",\"active_requests\":%" PRIu64
        ",\"active_retries\":%" PRIu64 ",\"requests\":%" PRIu64 ",\"retries\":%" PRIu64,
        proxy_balance_name(s->balance), g->instances, s->endpoints, s->available, s->connections,
        s->pending, s->active_requests, s->active_retries, s->requests, s->retries));
    WARD_TRY(ward_buf_printf(b,
                             ",\"circuit_breakers\":{\"max_connections\":%" PRIu64
                             ",\"max_pending\":%" PRIu64 ",\"max_requests\":%" PRIu64
                             ",\"max_retries\":%" PRIu64 "},\"overflows\":{",
                             s->max_connections, s->max_pending, s->max_requests, s->max_retries));
    for (size_t o = 0; o < PROXY_OVERFLOW_KINDS; o++)
        WARD_TRY(ward_buf_printf(b, "%s\"%s\":%" PRIu64, o ? "," : "",
                                 proxy_cluster_overflow_name((proxy_cluster_overflow)o),
                                 s->overflows[o]));
    WARD_TRY(ward_buf_puts(b, "},\"endpoints\":["));
    for (size_t e = 0; e < s->endpoints; e++) {
        const merged_ep *me = &g->eps[e];
        WARD_TRY(ward_buf_puts(b, e ? ",{\"address\":" : "{\"address\":"));
        WARD_TRY(json_str(b, me->s.name));
        uint64_t left = me->s.ejected ? me->s.ejected_until_ms - now_ms : 0;
        WARD_TRY(ward_buf_printf(
            b,
            ",\"healthy\":%s,\"ejected\":%s,\"ejected_in\":%zu,\"ejected_until_ms\":%" PRIu64
            ",\"ejected_remaining_ms\":%" PRIu64 ",\"requests\":%" PRIu64 ",\"active\":%" PRIu64
            ",\"connections\":%" PRIu64 ",\"errors_5xx\":%" PRIu64 ",\"connect_failures\":%" PRIu64
            ",\"ejections\":%" PRIu64 "}",
            me->s.healthy ? "true" : "false", me->s.ejected ? "true" : "false", me->ejected_in,
            me->s.ejected_until_ms, left, me->s.requests, me->s.active, me->s.connections,
            me->s.errors_5xx, me->s.connect_failures, me->s.ejections));
    }
    WARD_TRY(ward_buf_puts(b, "]}"));
fail:
    return rc;
}

int proxy_cluster_render_json(proxy_cluster *const *cs, size_t n, uint64_t now_ms, ward_buf *out)
{
    int rc = 0;
    merged *m = NULL;
    size_t k = 0;
    WARD_TRY(merge(cs, n, now_ms, &m, &k));
    WARD_TRY(ward_buf_puts(out, "{\"clusters\":["));
    for (size_t i = 0; i < k; i++) {
        if (i > 0)
            WARD_TRY(ward_buf_putc(out, ','));
        WARD_TRY(render_json_one(out, &m[i], now_ms));
    }
    WARD_TRY(ward_buf_puts(out, "]}\n"));
fail:
    merged_free(m, k);
    return rc;
}

/* A Prometheus label value: \, " and newline escaped. */
static int label(ward_buf *b, const char *s)
{
    int rc = 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"')
            WARD_TRY(ward_buf_printf(b, "\\%c", *p));
        else if (*p == '\n')
            WARD_TRY(ward_buf_puts(b, "\\n"));
        else
            WARD_TRY(ward_buf_putc(b, *p));
    }
fail:
    return rc;
}

/* What a family is labelled by, and where its value comes from. */
enum { F_SERVICE, F_OVERFLOW, F_ENDPOINT, F_EP_EJECTED, F_EP_HEALTHY };

typedef struct family {
    const char *name, *type, *help;
    int by;
    size_t off; /* of the value in proxy_cluster_stats or proxy_cluster_endpoint_stats */
} family;

#define SVC(f) offsetof(proxy_cluster_stats, f)
#define EPS(f) offsetof(proxy_cluster_endpoint_stats, f)

static const family families[] = {
    {"ward_cluster_requests_total", "counter", "Attempts started, retries included.", F_SERVICE,
     SVC(requests)},
    {"ward_cluster_retries_total", "counter", "Retries started.", F_SERVICE, SVC(retries)},
    {"ward_cluster_active_requests", "gauge", "Attempts in flight.", F_SERVICE,
     SVC(active_requests)},
    {"ward_cluster_active_retries", "gauge", "Retries in flight.", F_SERVICE, SVC(active_retries)},
    {"ward_cluster_pending_requests", "gauge", "Requests waiting for a connection.", F_SERVICE,
     SVC(pending)},
    {"ward_cluster_connections", "gauge", "Connections open or opening.", F_SERVICE,
     SVC(connections)},
    {"ward_cluster_overflows_total", "counter",
     "Attempts and connections refused by a circuit breaker or the retry budget.", F_OVERFLOW, 0},
    {"ward_cluster_endpoint_requests_total", "counter", "Attempts started on the endpoint.",
     F_ENDPOINT, EPS(requests)},
    {"ward_cluster_endpoint_active_requests", "gauge", "Attempts in flight on the endpoint.",
     F_ENDPOINT, EPS(active)},
    {"ward_cluster_endpoint_connections", "gauge", "Connections to the endpoint.", F_ENDPOINT,
     EPS(connections)},
    {"ward_cluster_endpoint_5xx_total", "counter", "5xx answers and resets from the endpoint.",
     F_ENDPOINT, EPS(errors_5xx)},
    {"ward_cluster_endpoint_connect_failures_total", "counter", "Failed connects to the endpoint.",
     F_ENDPOINT, EPS(connect_failures)},
    {"ward_cluster_endpoint_ejections_total", "counter",
     "Times outlier detection ejected the endpoint.", F_ENDPOINT, EPS(ejections)},
    {"ward_cluster_endpoint_ejected", "gauge", "Workers that eject the endpoint now.", F_EP_EJECTED,
     0},
    {"ward_cluster_endpoint_healthy", "gauge", "1 when no worker marks the endpoint unhealthy.",
     F_EP_HEALTHY, 0},
};

static uint64_t field_u64(const void *base, size_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)base + off, sizeof(v));
    return v;
}

int proxy_cluster_render_metrics(proxy_cluster *const *cs, size_t n, uint64_t now_ms, ward_buf *out)
{
    int rc = 0;
    merged *m = NULL;
    size_t k = 0;
    WARD_TRY(merge(cs, n, now_ms, &m, &k));
    for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
        const family *fa = &families[f];
        WARD_TRY(ward_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fa->name, fa->help, fa->name,
                                 fa->type));
        for (size_t i = 0; i < k; i++) {
            const merged *g = &m[i];
            if (fa->by == F_SERVICE) {
                WARD_TRY(ward_buf_printf(out, "%s{service=\"", fa->name));
                WARD_TRY(label(out, g->s.service));
                WARD_TRY(ward_buf_printf(out, "\"} %" PRIu64 "\n", field_u64(&g->s, fa->off)));
                continue;
            }
            if (fa->by == F_OVERFLOW) {
                for (size_t o = 0; o < PROXY_OVERFLOW_KINDS; o++) {
                    WARD_TRY(ward_buf_printf(out, "%s{service=\"", fa->name));
                    WARD_TRY(label(out, g->s.service));
                    WARD_TRY(ward_buf_printf(out, "\",breaker=\"%s\"} %" PRIu64 "\n",
                                             proxy_cluster_overflow_name((proxy_cluster_overflow)o),
                                             g->s.overflows[o]));
                }
                continue;
            }
            for (size_t e = 0; e < g->s.endpoints; e++) {
                const merged_ep *me = &g->eps[e];
                uint64_t v = fa->by == F_EP_EJECTED   ? me->ejected_in
                             : fa->by == F_EP_HEALTHY ? (uint64_t)me->s.healthy
                                                      : field_u64(&me->s, fa->off);
                WARD_TRY(ward_buf_printf(out, "%s{service=\"", fa->name));
                WARD_TRY(label(out, g->s.service));
                WARD_TRY(ward_buf_puts(out, "\",endpoint=\""));
                WARD_TRY(label(out, me->s.name));
                WARD_TRY(ward_buf_printf(out, "\"} %" PRIu64 "\n", v));
            }
        }
    }
fail:
    merged_free(m, k);
    return rc;
}
