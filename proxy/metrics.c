/* metrics.c - per-worker request metrics, and their Prometheus text rendering */
#include "proxy/proxy.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Every counter has one writer (its worker): a relaxed load and store is an
 * update without a locked instruction, and readers never see a torn value. */
typedef _Atomic uint64_t ctr;

static inline void ctr_add(ctr *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline uint64_t ctr_get(ctr *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- histograms ------------------------------------------------------------------------------ */

#define N_BUCKETS 22 /* finite ones; then +Inf */

static const uint64_t bucket_ns[N_BUCKETS] = {
    1000,      2500,      5000,       10000,      25000,      50000,      100000,   250000,
    500000,    1000000,   2500000,    5000000,    10000000,   25000000,   50000000, 100000000,
    250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000};

static const char *const bucket_le[N_BUCKETS + 1] = {
    "1e-06",  "2.5e-06", "5e-06",  "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025",
    "0.0005", "0.001",   "0.0025", "0.005", "0.01",    "0.025", "0.05",   "0.1",
    "0.25",   "0.5",     "1",      "2.5",   "5",       "10",    "+Inf"};

/* Counts per bucket (not cumulative: one store per observation); the count
 * is their sum, so _count always equals the +Inf bucket. */
typedef struct histo {
    ctr b[N_BUCKETS + 1];
    ctr sum_ns;
} histo;

static void histo_observe(histo *h, uint64_t ns)
{
    size_t lo = 0, hi = N_BUCKETS; /* the first bound >= ns, or N_BUCKETS (+Inf) */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ns > bucket_ns[mid])
            lo = mid + 1;
        else
            hi = mid;
    }
    ctr_add(&h->b[lo], 1);
    ctr_add(&h->sum_ns, ns);
}

/* ---- label sets ------------------------------------------------------------------------------ */

#define N_CODES 600 /* status 100..599 kept, anything else is 0 */

/* One label set and its counter. Immutable once published but for count. */
typedef struct series {
    uint64_t hash;
    uint8_t dir; /* 0 inbound, 1 outbound */
    uint8_t allow;
    uint16_t code;
    const char *v[3]; /* source principal, destination service, destination principal */
    size_t len[3];
    ctr count;
} series;

/* Append-only: items[0..n) never change once published; the index is the
 * writer's own. */
typedef struct series_table {
    series **items;
    _Atomic size_t n;
    size_t cap;
    uint32_t *index; /* 1 + position in items, 0 = empty slot */
    size_t mask;
    uint64_t seed;
} series_table;

/* What a route series counts beside its requests (after its series struct). */
typedef struct route_stats {
    ctr classes[6]; /* responses: none, 1xx .. 5xx */
    ctr retries, rate_limited, mirrored;
    histo latency;
} route_stats;

struct proxy_metrics {
    series_table requests;  /* labels: all three values */
    series_table upstreams; /* labels: v[1] = the service */
    series_table routes;    /* labels: v[0] = the Route, v[1] = its entry; a route_stats each */
    route_stats routes_other[2];
    ctr requests_other[2][2][N_CODES];
    ctr upstreams_other[2];
    histo decision[2];
    histo request[2];
    ctr tls[2][PROXY_TLS_FAILURE_CLASSES];
    _Atomic int64_t conns[2];
};

static const char *const dir_name[2] = {"inbound", "outbound"};

static int table_init(series_table *t, size_t cap)
{
    size_t slots = 1;
    while (slots < cap * 2)
        slots <<= 1;
    t->items = calloc(cap, sizeof(*t->items));
    t->index = calloc(slots, sizeof(*t->index));
    if (t->items == NULL || t->index == NULL)
        return WARD_ENOMEM;
    t->cap = cap;
    t->mask = slots - 1;
    if (getrandom(&t->seed, sizeof(t->seed), 0) != sizeof(t->seed))
        t->seed = (uint64_t)(uintptr_t)t ^ (uint64_t)time(NULL);
    atomic_init(&t->n, 0);
    return 0;
}

static void table_dispose(series_table *t)
{
    size_t n = atomic_load_explicit(&t->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        free(t->items[i]);
    free(t->items);
    free(t->index);
}

/* A keyed multiply-xor hash, 8 bytes at a time (the seed is random per
 * table, so colliding label values cannot be prepared in advance). */
static inline uint64_t mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 29);
}

static uint64_t hash_bytes(uint64_t h, const char *s, size_t len)
{
    uint64_t w;
    h = mix(h, len);
    for (; len >= 8; s += 8, len -= 8) {
        memcpy(&w, s, 8);
        h = mix(h, w);
    }
    if (len > 0) {
        w = 0;
        memcpy(&w, s, len);
        h = mix(h, w);
    }
    return h;
}

static uint64_t key_hash(const series_table *t, const series *k)
{
    uint64_t h = mix(t->seed, (uint64_t)k->dir | (uint64_t)k->allow << 8 | (uint64_t)k->code << 16);
    for (int i = 0; i < 3; i++)
        h = hash_bytes(h, k->v[i], k->len[i]);
    return mix(h, 0);
}

static bool key_eq(const series *a, const series *b)
{
    if (a->hash != b->hash || a->dir != b->dir || a->allow != b->allow || a->code != b->code)
        return false;
    for (int i = 0; i < 3; i++)
        if (a->len[i] != b->len[i] || memcmp(a->v[i], b->v[i], a->len[i]) != 0)
            return false;
    return true;
}

/* A new series holding a copy of the key's values, its count already 1 (a
 * reader never sees a series at 0), and `extra` zeroed bytes right after the
 * struct (a route's stats). */
static series *series_new(const series *k, size_t extra)
{
    size_t total = k->len[0] + k->len[1] + k->len[2] + 3;
    series *s = calloc(1, sizeof(*s) + extra + total);
    if (s == NULL)
        return NULL;
    char *p = (char *)(s + 1) + extra;
    s->hash = k->hash;
    s->dir = k->dir;
    s->allow = k->allow;
    s->code = k->code;
    for (int i = 0; i < 3; i++) {
        memcpy(p, k->v[i], k->len[i]);
        p[k->len[i]] = '\0';
        s->v[i] = p;
        s->len[i] = k->len[i];
        p += k->len[i] + 1;
    }
    atomic_init(&s->count, 1);
    return s;
}

/* Counts one more for key and returns its series: NULL when the key is new
 * and the table is full (or memory ran out): the caller counts it elsewhere. */
static series *table_count(series_table *t, series *k, size_t extra)
{
    k->hash = key_hash(t, k);
    size_t n = atomic_load_explicit(&t->n, memory_order_relaxed);
    size_t i = (size_t)k->hash & t->mask;
    for (; t->index[i] != 0; i = (i + 1) & t->mask) {
        series *s = t->items[t->index[i] - 1];
        if (key_eq(s, k)) {
            ctr_add(&s->count, 1);
            return s;
        }
    }
    if (n >= t->cap)
        return NULL;
    series *s = series_new(k, extra);
    if (s == NULL)
        return NULL;
    t->items[n] = s;
    t->index[i] = (uint32_t)(n + 1);
    atomic_store_explicit(&t->n, n + 1, memory_order_release);
    return s;
}

static bool table_add(series_table *t, series *k)
{
    return table_count(t, k, 0) != NULL;
}

static void key_value(series *k, int i, const char *s)
{
    if (s == NULL)
        s = "";
    size_t len = strnlen(s, PROXY_METRICS_LABEL_MAX);
    k->v[i] = s;
    k->len[i] = len;
}

static unsigned code_index(int status)
{
    return status >= 100 && status < N_CODES ? (unsigned)status : 0;
}

/* ---- updates (the worker's thread) ----------------------------------------------------------- */

int proxy_metrics_new(proxy_metrics **out)
{
    *out = NULL;
    proxy_metrics *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return WARD_ENOMEM;
    if (table_init(&m->requests, PROXY_METRICS_SERIES_MAX) < 0 ||
        table_init(&m->upstreams, PROXY_METRICS_UPSTREAMS_MAX) < 0 ||
        table_init(&m->routes, PROXY_METRICS_ROUTES_MAX) < 0) {
        proxy_metrics_free(m);
        return WARD_ENOMEM;
    }
    *out = m;
    return 0;
}

void proxy_metrics_free(proxy_metrics *m)
{
    if (m == NULL)
        return;
    table_dispose(&m->requests);
    table_dispose(&m->upstreams);
    table_dispose(&m->routes);
    free(m);
}

void proxy_metrics_request(proxy_metrics *m, const proxy_metrics_request_info *info)
{
    unsigned d = info->inbound ? 0 : 1;
    series k;
    k.dir = (uint8_t)d;
    k.allow = info->allow ? 1 : 0;
    k.code = (uint16_t)code_index(info->status);
    key_value(&k, 0, info->source_principal);
    key_value(&k, 1, info->destination_service);
    key_value(&k, 2, info->destination_principal);
    if (!table_add(&m->requests, &k))
        ctr_add(&m->requests_other[d][k.allow][k.code], 1);
    if (info->decision_ns != 0)
        histo_observe(&m->decision[d], info->decision_ns);
    histo_observe(&m->request[d], info->request_ns);
}

void proxy_metrics_tls_failure(proxy_metrics *m, bool inbound, const char *reason)
{
    ctr_add(&m->tls[inbound ? 0 : 1][proxy_tls_failure_classify(reason)], 1);
}

void proxy_metrics_connections(proxy_metrics *m, bool inbound, int delta)
{
    _Atomic int64_t *g = &m->conns[inbound ? 0 : 1];
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + delta,
                          memory_order_relaxed);
}

void proxy_metrics_upstream_failure(proxy_metrics *m, bool inbound, const char *service)
{
    series k;
    memset(&k, 0, sizeof(k));
    k.dir = inbound ? 0 : 1;
    key_value(&k, 0, NULL);
    key_value(&k, 1, service);
    key_value(&k, 2, NULL);
    if (!table_add(&m->upstreams, &k))
        ctr_add(&m->upstreams_other[k.dir], 1);
}

void proxy_metrics_route(proxy_metrics *m, const proxy_metrics_route_info *info)
{
    series k;
    memset(&k, 0, sizeof(k));
    k.dir = info->inbound ? 0 : 1;
    key_value(&k, 0, info->route);
    key_value(&k, 1, info->entry);
    key_value(&k, 2, NULL);
    series *s = table_count(&m->routes, &k, sizeof(route_stats));
    route_stats *st = s != NULL ? (route_stats *)(s + 1) : &m->routes_other[k.dir];
    int status = info->status;
    ctr_add(&st->classes[status >= 100 && status < 600 ? status / 100 : 0], 1);
    if (info->retries > 0)
        ctr_add(&st->retries, info->retries);
    if (info->rate_limited)
        ctr_add(&st->rate_limited, 1);
    if (info->mirrored)
        ctr_add(&st->mirrored, 1);
    histo_observe(&st->latency, info->request_ns);
}

/* ---- TLS failure classes --------------------------------------------------------------------- */

static const char *const tls_failure_names[PROXY_TLS_FAILURE_CLASSES] = {
    "no_certificate", "untrusted", "expired", "wrong_trust_domain", "protocol", "other"};

const char *proxy_tls_failure_name(proxy_tls_failure f)
{
    if ((unsigned)f >= PROXY_TLS_FAILURE_CLASSES)
        f = PROXY_TLS_FAILURE_OTHER;
    return tls_failure_names[f];
}

static bool has_any(const char *s, const char *const *needles)
{
    for (; *needles != NULL; needles++)
        if (strcasestr(s, *needles) != NULL)
            return true;
    return false;
}

/* First match wins, most specific first: "peer certificate: leaf certificate
 * has expired" is expired, not untrusted; OpenSSL's alerts name the cause
 * ("tlsv1 alert unknown ca", "sslv3 alert certificate expired") before the
 * generic protocol words. */
proxy_tls_failure proxy_tls_failure_classify(const char *reason)
{
    static const char *const no_cert[] = {"no certificate",
                                          "no client certificate",
                                          "did not return a certificate",
                                          "certificate required",
                                          "empty certificate chain",
                                          "presented none",
                                          NULL};
    static const char *const wrong_td[] = {"trust domain", NULL};
    static const char *const expired[] = {"expired", "not yet valid", NULL};
    static const char *const untrusted[] = {"unknown authority",
                                            "unknown ca",
                                            "verify failed",
                                            "bad certificate",
                                            "certificate",
                                            "self signed",
                                            "self-signed",
                                            "signature",
                                            "spiffe",
                                            "uri san",
                                            "key usage",
                                            "peer is ",
                                            "x509",
                                            NULL};
    static const char *const protocol[] = {"ssl routines",
                                           "alert",
                                           "version",
                                           "cipher",
                                           "protocol",
                                           "record",
                                           "unexpected message",
                                           "http request",
                                           "decrypt",
                                           "packet length",
                                           "sigalg",
                                           "handshake failure",
                                           "inappropriate fallback",
                                           NULL};
    if (reason == NULL)
        return PROXY_TLS_FAILURE_OTHER;
    if (has_any(reason, no_cert))
        return PROXY_TLS_FAILURE_NO_CERTIFICATE;
    if (has_any(reason, wrong_td))
        return PROXY_TLS_FAILURE_WRONG_TRUST_DOMAIN;
    if (has_any(reason, expired))
        return PROXY_TLS_FAILURE_EXPIRED;
    if (has_any(reason, untrusted))
        return PROXY_TLS_FAILURE_UNTRUSTED;
    if (has_any(reason, protocol))
        return PROXY_TLS_FAILURE_PROTOCOL;
    return PROXY_TLS_FAILURE_OTHER;
}

/* ---- rendering (any thread) ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s[0..len), 0 if there is none. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t min, cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        min = 0x80;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        min = 0x800;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        min = 0x10000;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A label value between its quotes: \ " and newline escaped, bytes that are
 * not UTF-8 replaced by U+FFFD (the format requires UTF-8). */
static int put_value(ward_buf *out, const char *v, size_t len)
{
    int rc = 0;
    const unsigned char *s = (const unsigned char *)v;
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '\\' && s[run] != '"')
            run++;
        if (run > i) {
            WARD_TRY(ward_buf_append(out, v + i, run - i));
            i = run;
            continue;
        }
        unsigned char c = s[i];
        if (c == '\\') {
            WARD_TRY(ward_buf_puts(out, "\\\\"));
            i++;
        } else if (c == '"') {
            WARD_TRY(ward_buf_puts(out, "\\\""));
            i++;
        } else if (c == '\n') {
            WARD_TRY(ward_buf_puts(out, "\\n"));
            i++;
        } else if (c < 0x80) {
            WARD_TRY(ward_buf_putc(out, (char)c)); /* other controls are valid UTF-8 */
            i++;
        } else {
            size_t n = utf8_seq(s + i, len - i);
            if (n == 0) {
                WARD_TRY(ward_buf_puts(out, "\xef\xbf\xbd"));
                i++;
            } else {
                WARD_TRY(ward_buf_append(out, v + i, n));
                i += n;
            }
        }
    }
fail:
    return rc;
}

static int put_label(ward_buf *out, bool first, const char *name, const char *v, size_t len)
{
    int rc = 0;
    WARD_TRY(ward_buf_printf(out, "%s%s=\"", first ? "" : ",", name));
    WARD_TRY(put_value(out, v, len));
    WARD_TRY(ward_buf_putc(out, '"'));
fail:
    return rc;
}

static int put_family(ward_buf *out, const char *name, const char *type, const char *help)
{
    return ward_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Nanoseconds as seconds, exactly: "0.00015", "2", "1.5". */
static int put_seconds(ward_buf *out, uint64_t ns)
{
    char frac[16];
    snprintf(frac, sizeof(frac), "%09" PRIu64, ns % 1000000000u);
    size_t n = strlen(frac);
    while (n > 0 && frac[n - 1] == '0')
        n--;
    frac[n] = '\0';
    return ward_buf_printf(out, "%" PRIu64 "%s%s", ns / 1000000000u, n > 0 ? "." : "", frac);
}

/* One label set of a scrape, summed over workers after sorting. */
typedef struct row {
    const series *s;
    uint64_t v;
} row;

typedef struct rows {
    row *r;
    size_t n, cap;
} rows;

static int rows_push(rows *rs, const series *s, uint64_t v)
{
    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 256;
        row *r = realloc(rs->r, cap * sizeof(*r));
        if (r == NULL)
            return WARD_ENOMEM;
        rs->r = r;
        rs->cap = cap;
    }
    rs->r[rs->n].s = s;
    rs->r[rs->n].v = v;
    rs->n++;
    return 0;
}

static int cmp_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* inbound before outbound, allow before deny, codes ascending, then the values. */
static int row_cmp(const void *pa, const void *pb)
{
    const series *a = ((const row *)pa)->s, *b = ((const row *)pb)->s;
    if (a->dir != b->dir)
        return a->dir < b->dir ? -1 : 1;
    if (a->allow != b->allow)
        return a->allow > b->allow ? -1 : 1;
    if (a->code != b->code)
        return a->code < b->code ? -1 : 1;
    for (int i = 0; i < 3; i++) {
        int c = cmp_bytes(a->v[i], a->len[i], b->v[i], b->len[i]);
        if (c != 0)
            return c;
    }
    return 0;
}

static bool same_labels(const series *a, const series *b)
{
    return row_cmp(&(row){a, 0}, &(row){b, 0}) == 0;
}

/* The rows of every series of one table across workers, plus one row per
 * non-zero "_other_" counter (other: room for 2 * 2 * N_CODES keys, filled
 * here), sorted so that equal label sets are adjacent. */
static int collect(proxy_metrics *const *w, size_t n, bool requests, series *other, rows *rs)
{
    int rc = 0;
    size_t n_other = 0;
    static const size_t olen = sizeof(PROXY_METRICS_OTHER) - 1;
    for (size_t i = 0; i < n; i++) {
        series_table *t = requests ? &w[i]->requests : &w[i]->upstreams;
        size_t cnt = atomic_load_explicit(&t->n, memory_order_acquire);
        for (size_t j = 0; j < cnt; j++) {
            series *s = t->items[j];
            WARD_TRY(rows_push(rs, s, ctr_get(&s->count)));
        }
    }
    for (unsigned d = 0; d < 2; d++)
        for (unsigned a = 0; a < (requests ? 2u : 1u); a++)
            for (unsigned c = 0; c < (requests ? N_CODES : 1u); c++) {
                uint64_t v = 0;
                for (size_t i = 0; i < n; i++)
                    v += requests ? ctr_get(&w[i]->requests_other[d][a][c])
                                  : ctr_get(&w[i]->upstreams_other[d]);
                if (v == 0)
                    continue;
                series *o = &other[n_other++];
                memset(o, 0, sizeof(*o));
                o->dir = (uint8_t)d;
                o->allow = (uint8_t)a;
                o->code = (uint16_t)c;
                for (int k = 0; k < 3; k++) {
                    bool used = requests || k == 1;
                    o->v[k] = used ? PROXY_METRICS_OTHER : "";
                    o->len[k] = used ? olen : 0;
                }
                WARD_TRY(rows_push(rs, o, v));
            }
    if (rs->n > 1)
        qsort(rs->r, rs->n, sizeof(row), row_cmp);
fail:
    return rc;
}

static int render_requests(proxy_metrics *const *w, size_t n, ward_buf *out, series *other)
{
    int rc = 0;
    rows rs = {0};
    WARD_TRY(put_family(out, "ward_requests_total", "counter",
                        "Requests by direction, decision, response code and peers."));
    WARD_TRY(collect(w, n, true, other, &rs));
    for (size_t i = 0; i < rs.n;) {
        const series *s = rs.r[i].s;
        uint64_t v = 0;
        for (; i < rs.n && same_labels(rs.r[i].s, s); i++)
            v += rs.r[i].v;
        WARD_TRY(ward_buf_puts(out, "ward_requests_total{"));
        WARD_TRY(put_label(out, true, "direction", dir_name[s->dir], strlen(dir_name[s->dir])));
        WARD_TRY(put_label(out, false, "decision", s->allow ? "allow" : "deny", s->allow ? 5 : 4));
        WARD_TRY(ward_buf_printf(out, ",code=\"%u\"", (unsigned)s->code));
        WARD_TRY(put_label(out, false, "source_principal", s->v[0], s->len[0]));
        WARD_TRY(put_label(out, false, "destination_service", s->v[1], s->len[1]));
        WARD_TRY(put_label(out, false, "destination_principal", s->v[2], s->len[2]));
        WARD_TRY(ward_buf_printf(out, "} %" PRIu64 "\n", v));
    }
fail:
    free(rs.r);
    return rc;
}

static int render_upstreams(proxy_metrics *const *w, size_t n, ward_buf *out, series *other)
{
    int rc = 0;
    rows rs = {0};
    WARD_TRY(put_family(out, "ward_upstream_connect_failures_total", "counter",
                        "Failed connections to the workload (inbound) or an upstream service "
                        "(outbound)."));
    WARD_TRY(collect(w, n, false, other, &rs));
    for (size_t i = 0; i < rs.n;) {
        const series *s = rs.r[i].s;
        uint64_t v = 0;
        for (; i < rs.n && same_labels(rs.r[i].s, s); i++)
            v += rs.r[i].v;
        WARD_TRY(ward_buf_puts(out, "ward_upstream_connect_failures_total{"));
        WARD_TRY(put_label(out, true, "direction", dir_name[s->dir], strlen(dir_name[s->dir])));
        WARD_TRY(put_label(out, false, "service", s->v[1], s->len[1]));
        WARD_TRY(ward_buf_printf(out, "} %" PRIu64 "\n", v));
    }
fail:
    free(rs.r);
    return rc;
}

/* The route series of every worker (their stats summed per label set), and
 * the overflow under "_other_". */
typedef struct route_row {
    const series *s; /* labels */
    route_stats sum; /* plain sums (not shared) */
} route_row;

static void stats_add(route_stats *to, route_stats *from)
{
    for (int c = 0; c < 6; c++)
        ctr_add(&to->classes[c], ctr_get(&from->classes[c]));
    ctr_add(&to->retries, ctr_get(&from->retries));
    ctr_add(&to->rate_limited, ctr_get(&from->rate_limited));
    ctr_add(&to->mirrored, ctr_get(&from->mirrored));
    for (int b = 0; b <= N_BUCKETS; b++)
        ctr_add(&to->latency.b[b], ctr_get(&from->latency.b[b]));
    ctr_add(&to->latency.sum_ns, ctr_get(&from->latency.sum_ns));
}

static uint64_t stats_requests(route_stats *st)
{
    uint64_t v = 0;
    for (int c = 0; c < 6; c++)
        v += ctr_get(&st->classes[c]);
    return v;
}

/* other: two label sets for the overflow, other_sum their stats. */
static int route_rows(proxy_metrics *const *w, size_t n, series *other, route_stats *other_sum,
                      route_row **out, size_t *n_out)
{
    int rc = 0;
    rows rs = {0};
    *out = NULL;
    *n_out = 0;
    static const size_t olen = sizeof(PROXY_METRICS_OTHER) - 1;
    for (size_t i = 0; i < n; i++) {
        size_t cnt = atomic_load_explicit(&w[i]->routes.n, memory_order_acquire);
        for (size_t j = 0; j < cnt; j++)
            WARD_TRY(rows_push(&rs, w[i]->routes.items[j], 0));
    }
    for (unsigned d = 0; d < 2; d++) {
        memset(&other[d], 0, sizeof(other[d]));
        other[d].dir = (uint8_t)d;
        other[d].v[0] = other[d].v[1] = PROXY_METRICS_OTHER;
        other[d].len[0] = other[d].len[1] = olen;
        other[d].v[2] = "";
        for (size_t i = 0; i < n; i++)
            stats_add(&other_sum[d], &w[i]->routes_other[d]);
        if (stats_requests(&other_sum[d]) > 0)
            WARD_TRY(rows_push(&rs, &other[d], 0));
    }
    if (rs.n > 1)
        qsort(rs.r, rs.n, sizeof(row), row_cmp);
    route_row *rr = calloc(rs.n ? rs.n : 1, sizeof(*rr));
    if (rr == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    size_t k = 0;
    for (size_t i = 0; i < rs.n;) {
        rr[k].s = rs.r[i].s;
        for (; i < rs.n && same_labels(rs.r[i].s, rr[k].s); i++) {
            const series *s = rs.r[i].s;
            route_stats *st = s == &other[0] || s == &other[1] ? &other_sum[s->dir]
                                                               : (route_stats *)((series *)s + 1);
            stats_add(&rr[k].sum, st);
        }
        k++;
    }
    *out = rr;
    *n_out = k;
fail:
    free(rs.r);
    return rc;
}

static int route_labels(ward_buf *out, const char *name, const series *s)
{
    int rc = 0;
    WARD_TRY(ward_buf_printf(out, "%s{", name));
    WARD_TRY(put_label(out, true, "direction", dir_name[s->dir], strlen(dir_name[s->dir])));
    WARD_TRY(put_label(out, false, "route", s->v[0], s->len[0]));
    WARD_TRY(put_label(out, false, "entry", s->v[1], s->len[1]));
fail:
    return rc;
}

static int render_routes(proxy_metrics *const *w, size_t n, ward_buf *out)
{
    static const char *const classes[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
    int rc = 0;
    series other[2];
    route_stats other_sum[2];
    memset(other_sum, 0, sizeof(other_sum));
    route_row *rr = NULL;
    size_t nr = 0;
    WARD_TRY(route_rows(w, n, other, other_sum, &rr, &nr));
    WARD_TRY(put_family(out, "ward_route_requests_total", "counter",
                        "Requests a Route entry served, by response class."));
    for (size_t i = 0; i < nr; i++)
        for (int c = 0; c < 6; c++) {
            uint64_t v = ctr_get(&rr[i].sum.classes[c]);
            if (v == 0)
                continue;
            WARD_TRY(route_labels(out, "ward_route_requests_total", rr[i].s));
            WARD_TRY(ward_buf_printf(out, ",code_class=\"%s\"} %" PRIu64 "\n", classes[c], v));
        }
    WARD_TRY(put_family(out, "ward_route_retries_total", "counter",
                        "Retries of the requests a Route entry served."));
    for (size_t i = 0; i < nr; i++) {
        WARD_TRY(route_labels(out, "ward_route_retries_total", rr[i].s));
        WARD_TRY(ward_buf_printf(out, "} %" PRIu64 "\n", ctr_get(&rr[i].sum.retries)));
    }
    WARD_TRY(put_family(out, "ward_route_rate_limited_total", "counter",
                        "Requests a Route entry's rate limit refused (429)."));
    for (size_t i = 0; i < nr; i++) {
        WARD_TRY(route_labels(out, "ward_route_rate_limited_total", rr[i].s));
        WARD_TRY(ward_buf_printf(out, "} %" PRIu64 "\n", ctr_get(&rr[i].sum.rate_limited)));
    }
    WARD_TRY(put_family(out, "ward_route_mirrored_total", "counter",
                        "Requests a Route entry copied to its mirror."));
    for (size_t i = 0; i < nr; i++) {
        WARD_TRY(route_labels(out, "ward_route_mirrored_total", rr[i].s));
        WARD_TRY(ward_buf_printf(out, "} %" PRIu64 "\n", ctr_get(&rr[i].sum.mirrored)));
    }
    static const char hname[] = "ward_route_request_duration_seconds";
    WARD_TRY(put_family(out, hname, "histogram",
                        "Time from a request's head to its response, per Route entry."));
    for (size_t i = 0; i < nr; i++) {
        uint64_t cum = 0;
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            cum += ctr_get(&rr[i].sum.latency.b[b]);
            WARD_TRY(route_labels(out, "ward_route_request_duration_seconds_bucket", rr[i].s));
            WARD_TRY(ward_buf_printf(out, ",le=\"%s\"} %" PRIu64 "\n", bucket_le[b], cum));
        }
        WARD_TRY(route_labels(out, "ward_route_request_duration_seconds_sum", rr[i].s));
        WARD_TRY(ward_buf_puts(out, "} "));
        WARD_TRY(put_seconds(out, ctr_get(&rr[i].sum.latency.sum_ns)));
        WARD_TRY(route_labels(out, "\nward_route_request_duration_seconds_count", rr[i].s));
        WARD_TRY(ward_buf_printf(out, "} %" PRIu64 "\n", cum));
    }
fail:
    free(rr);
    return rc;
}

static int render_histo(proxy_metrics *const *w, size_t n, ward_buf *out, bool decision,
                        const char *name, const char *help)
{
    int rc = 0;
    WARD_TRY(put_family(out, name, "histogram", help));
    for (unsigned d = 0; d < 2; d++) {
        uint64_t cum = 0, sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += ctr_get(decision ? &w[i]->decision[d].sum_ns : &w[i]->request[d].sum_ns);
        for (size_t b = 0; b <= N_BUCKETS; b++) {
            for (size_t i = 0; i < n; i++)
                cum += ctr_get(decision ? &w[i]->decision[d].b[b] : &w[i]->request[d].b[b]);
            WARD_TRY(ward_buf_printf(out, "%s_bucket{direction=\"%s\",le=\"%s\"} %" PRIu64 "\n",
                                     name, dir_name[d], bucket_le[b], cum));
        }
        WARD_TRY(ward_buf_printf(out, "%s_sum{direction=\"%s\"} ", name, dir_name[d]));
        WARD_TRY(put_seconds(out, sum));
        WARD_TRY(ward_buf_printf(out, "\n%s_count{direction=\"%s\"} %" PRIu64 "\n", name,
                                 dir_name[d], cum));
    }
fail:
    return rc;
}

static int render_state(proxy_admin_state *st, ward_buf *out)
{
    int rc = 0;
    proxy_admin_status s;
    memset(&s, 0, sizeof(s));
    WARD_TRY(proxy_admin_state_get(st, &s));
    WARD_TRY(put_family(out, "ward_svid_expiry_timestamp_seconds", "gauge",
                        "When the proxy's current X509-SVID expires (Unix time)."));
    if (s.has_svid)
        WARD_TRY(ward_buf_printf(out, "ward_svid_expiry_timestamp_seconds %lld\n",
                                 (long long)s.svid_expiry));
    WARD_TRY(put_family(out, "ward_policy_info", "gauge", "The policy revision in force."));
    if (s.has_policy) {
        WARD_TRY(ward_buf_puts(out, "ward_policy_info{"));
        WARD_TRY(put_label(out, true, "revision", s.policy_revision, strlen(s.policy_revision)));
        WARD_TRY(ward_buf_puts(out, "} 1\n"));
    }
    WARD_TRY(put_family(out, "ward_policy_reloads_total", "counter",
                        "Successful policy reloads (the initial load not counted)."));
    WARD_TRY(ward_buf_printf(out, "ward_policy_reloads_total %" PRIu64 "\n", s.policy_reloads));
    WARD_TRY(put_family(out, "ward_policy_reload_failures_total", "counter",
                        "Policy reloads that failed (the policy in force stayed)."));
    WARD_TRY(ward_buf_printf(out, "ward_policy_reload_failures_total %" PRIu64 "\n",
                             s.policy_reload_failures));
fail:
    proxy_admin_status_dispose(&s);
    return rc;
}

int proxy_metrics_render(proxy_metrics *const *w, size_t n, proxy_admin_state *st, ward_buf *out)
{
    int rc = 0;
    series *other = calloc(2 * 2 * N_CODES, sizeof(*other));
    if (other == NULL)
        return WARD_ENOMEM;
    WARD_TRY(render_requests(w, n, out, other));
    WARD_TRY(render_histo(w, n, out, true, "ward_decision_duration_seconds",
                          "Time the policy engine took to decide a request."));
    WARD_TRY(render_histo(w, n, out, false, "ward_request_duration_seconds",
                          "Time from a request's head to its response."));
    WARD_TRY(put_family(out, "ward_tls_handshake_failures_total", "counter",
                        "Failed TLS handshakes by direction and reason class."));
    for (unsigned d = 0; d < 2; d++)
        for (unsigned f = 0; f < PROXY_TLS_FAILURE_CLASSES; f++) {
            uint64_t v = 0;
            for (size_t i = 0; i < n; i++)
                v += ctr_get(&w[i]->tls[d][f]);
            WARD_TRY(ward_buf_printf(
                out,
                "ward_tls_handshake_failures_total{direction=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
                dir_name[d], tls_failure_names[f], v));
        }
    WARD_TRY(put_family(out, "ward_connections_active", "gauge", "Open connections per listener."));
    for (unsigned d = 0; d < 2; d++) {
        int64_t v = 0;
        for (size_t i = 0; i < n; i++)
            v += atomic_load_explicit(&w[i]->conns[d], memory_order_relaxed);
        WARD_TRY(ward_buf_printf(out, "ward_connections_active{listener=\"%s\"} %" PRId64 "\n",
                                 dir_name[d], v));
    }
    WARD_TRY(render_upstreams(w, n, out, other));
    WARD_TRY(render_routes(w, n, out));
    if (st != NULL)
        WARD_TRY(render_state(st, out));
fail:
    free(other);
    return rc;
}
