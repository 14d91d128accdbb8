/* audit_store_bench.c - the audit store under load: records/s through its one writer (chain, checkpoints, fsync) and the latency of each enqueue call */
/*
 *   build/bench/audit_store_bench --dir DIR [--producers N] [--seconds S | --records N]
 *                                 [--rate R] [--deny-every K] [--ring-slots N] [--warmup N]
 *
 * Opens a new trail in DIR (which must not exist) with the options ward-proxy
 * uses by default (fsync every 100 ms, a checkpoint every 10,000 records and
 * every second, 64 MiB segments, 1,024-slot rings) except overflow BLOCK, and
 * starts N producer threads, each with its own producer, as ward-proxy's
 * workers. Each thread appends records shaped as ward-proxy's inbound
 * decisions (principals, host, path, trace id, policy revision, peer
 * certificate hash; about 900 bytes once rendered): an allowed request as
 * ward-proxy does it, audit_log_reserve() at the decision and
 * audit_log_append_reserved() with the status once answered; every K-th
 * (--deny-every, 10) a denial with audit_log_append(). The record is filled
 * before the clock starts (as the proxy fills it before the call), so each
 * timing is the call alone: clock_gettime(CLOCK_MONOTONIC) before and after,
 * into a per-thread log-linear histogram (32 steps per power of two, ~3%).
 * The first --warmup records of each thread (2 laps of its ring) are sent but
 * not timed: a ring's memory is only touched, so faulted in, on its first lap
 * (once in a proxy's life).
 *
 * --rate R: R records/s in all, spread over the threads, each sending at
 * absolute times 1/(R/N) apart (clock_nanosleep; a late wake-up sends what is
 * due at once). Without it, as fast as the store takes them: with BLOCK a
 * full ring makes the call wait for the writer, so the producers run at the
 * writer's pace and the run measures what the writer sustains.
 *
 * The run lasts S seconds (--seconds, 5) or until N records in all
 * (--records). The clock of the throughput starts before the first append and
 * stops when audit_log_close() has returned: the last records written, the
 * final fdatasync and checkpoint included. After closing, the trail is read
 * back (audit_reader) and its lines counted: the run fails (exit 1) unless it
 * holds every record appended, with seq 1..N. `wardctl audit verify` is left
 * to the caller (bench/audit_store_bench.sh).
 *
 * Output: one JSON object on stdout (figures below); progress on stderr.
 * Exit status: 0 done, 1 the store failed or lost records, 2 bad usage. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "audit/audit.h"
#include "common/ward.h"

#define MAX_PRODUCERS 64
#define SAMPLE_MS 250 /* the writer's progress is sampled this often */
#define MAX_SAMPLES 4096

/* ---- a log-linear latency histogram (ns) ---------------------------------------- */

#define HIST_SUB_BITS 5 /* 32 buckets per power of two */
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_EXACT (2u * HIST_SUB) /* values below are their own bucket */
#define HIST_BUCKETS (HIST_EXACT + (64u - HIST_SUB_BITS - 1u) * HIST_SUB)

typedef struct hist {
    uint64_t n, max, sum;
    uint64_t b[HIST_BUCKETS];
} hist;

static unsigned hist_bucket(uint64_t v)
{
    if (v < HIST_EXACT)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS + 1 */
    unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1u);
    return HIST_EXACT + (e - HIST_SUB_BITS - 1u) * HIST_SUB + sub;
}

/* The largest value that falls in bucket b (a percentile is reported as the
 * upper edge of its bucket: never below the true value). */
static uint64_t hist_upper(unsigned b)
{
    if (b < HIST_EXACT)
        return b;
    unsigned e = (b - HIST_EXACT) / HIST_SUB + HIST_SUB_BITS + 1u;
    uint64_t sub = (b - HIST_EXACT) % HIST_SUB;
    uint64_t lo = (HIST_SUB + sub) << (e - HIST_SUB_BITS);
    return lo + (1ull << (e - HIST_SUB_BITS)) - 1u;
}

static void hist_add(hist *h, uint64_t v)
{
    h->b[hist_bucket(v)]++;
    h->n++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(hist *into, const hist *h)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += h->b[i];
    into->n += h->n;
    into->sum += h->sum;
    if (h->max > into->max)
        into->max = h->max;
}

/* q in [0, 1]: the value at or below which a share q of the samples lie. */
static uint64_t hist_quantile(const hist *h, double q)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t u = hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

/* ---- clocks ------------------------------------------------------------------------ */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t process_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

/* ---- the producers ----------------------------------------------------------------- */

enum { CALL_APPEND, CALL_RESERVE, CALL_APPEND_RESERVED, CALL_KINDS };
static const char *const CALL_NAME[CALL_KINDS] = {"append", "reserve", "append_reserved"};

typedef struct bench {
    audit_log *log;
    uint64_t records;  /* per producer; 0 = until stop */
    double rate;       /* per producer, records/s; 0 = full speed */
    unsigned deny_every;
    uint64_t warmup; /* per producer: the first records are not timed */
    atomic_bool stop;
    atomic_uint ready;
    atomic_bool go;
} bench;

typedef struct producer {
    bench *b;
    unsigned index;
    pthread_t thread;
    audit_producer *p;
    uint64_t appended, failures, behind_ns, cpu_ns;
    int first_error;
    hist h[CALL_KINDS];
} producer;

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void hex64(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = digits[v & 15u];
}

static const char *const PATHS[] = {
    "/api/v1/orders/%" PRIu64 "/items",      "/api/v1/payments/%" PRIu64 "/capture",
    "/api/v2/customers/%" PRIu64 "/profile", "/api/v1/carts/%" PRIu64,
    "/api/v1/inventory/sku-%" PRIu64,        "/healthz/%" PRIu64,
};

/* The strings of one record (the record borrows them). */
typedef struct record_text {
    char path[96], trace[33], src_ip[16];
} record_text;

/* A record as ward-proxy's inbound side fills it for request i of producer k. */
static void record_fill(audit_record *rec, record_text *t, audit_producer *p, unsigned k,
                        uint64_t i, bool deny)
{
    uint64_t r = mix64(((uint64_t)k << 40) ^ i);
    audit_record_init(rec);
    rec->ts_ns = audit_now_ns();
    audit_producer_id_next(p, &rec->id);
    rec->direction = AUDIT_INBOUND;
    rec->decision = deny ? AUDIT_DENY : AUDIT_ALLOW;
    rec->policy = audit_cstr(deny ? "mesh/deny-admin" : "shop/payments-from-checkout");
    rec->rule = deny ? 0 : 2;
    rec->reason = audit_cstr(deny ? "DENY mesh/deny-admin rule 0"
                                  : "ALLOW shop/payments-from-checkout rule 2");
    rec->source_principal = audit_cstr(deny ? "spiffe://example.org/ns/batch/sa/report-exporter"
                                            : "spiffe://example.org/ns/checkout/sa/checkout-api");
    snprintf(t->src_ip, sizeof(t->src_ip), "10.42.%u.%u", (unsigned)(r >> 8) & 255u,
             (unsigned)r & 255u);
    rec->source_ip = audit_cstr(t->src_ip);
    rec->source_port = 32768 + (int)((r >> 16) % 28000u);
    rec->destination_service = audit_cstr("payments");
    rec->destination_principal = audit_cstr("spiffe://example.org/ns/shop/sa/payments");
    rec->destination_port = 8443;
    rec->method = audit_cstr((r >> 24) % 4u == 0 ? "POST" : "GET");
    rec->host = audit_cstr("payments");
    snprintf(t->path, sizeof(t->path), PATHS[(r >> 28) % (sizeof(PATHS) / sizeof(PATHS[0]))],
             (r >> 32) % 10000000u);
    rec->path = audit_cstr(t->path);
    rec->protocol = audit_cstr("HTTP/1.1");
    rec->status = deny ? 403 : -1; /* an allowed request's status comes with its response */
    rec->bundle = audit_cstr("6f1c0e9d2b7a4c3e8f5a1d0b9c8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e");
    hex64(t->trace, mix64(r));
    hex64(t->trace + 16, mix64(r + 1));
    t->trace[32] = '\0';
    rec->trace_id = audit_cstr(t->trace);
    rec->latency_ns = 900 + (int64_t)(r % 4000u);
    rec->peer_cert_sha256 =
        audit_cstr("3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b");
}

/* One call timed into h. */
#define TIMED(h, call)                                                                             \
    do {                                                                                           \
        uint64_t t0_ = mono_ns();                                                                  \
        rc = (call);                                                                               \
        hist_add((h), mono_ns() - t0_);                                                            \
    } while (0)

static void *producer_main(void *data)
{
    producer *pr = data;
    bench *b = pr->b;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* paced sends wake on time, not 50 us late */
    atomic_fetch_add(&b->ready, 1);
    while (!atomic_load(&b->go))
        ;
    uint64_t interval = b->rate > 0 ? (uint64_t)(1e9 / b->rate) : 0;
    uint64_t start = mono_ns(), cpu0 = thread_cpu_ns();
    audit_record rec;
    record_text text;
    for (uint64_t i = 0; b->records == 0 || i < b->records; i++) {
        if ((i & 63u) == 0 && atomic_load_explicit(&b->stop, memory_order_relaxed))
            break;
        if (interval != 0) {
            uint64_t due = start + i * interval, now = mono_ns();
            if (now < due) {
                struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
                while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
                    ;
            } else {
                if (now - due > pr->behind_ns)
                    pr->behind_ns = now - due; /* the latest send */
            }
        }
        bool deny = b->deny_every != 0 && i % b->deny_every == b->deny_every - 1;
        record_fill(&rec, &text, pr->p, pr->index, i, deny);
        int rc;
        if (i < b->warmup) { /* the ring's first lap: its pages are touched once */
            rc = deny ? audit_log_append(b->log, pr->p, &rec)
                      : audit_log_reserve(b->log, pr->p, AUDIT_ALLOW);
            if (rc == 0 && !deny) {
                rec.status = 200;
                rc = audit_log_append_reserved(b->log, pr->p, &rec);
            }
        } else if (deny) {
            TIMED(&pr->h[CALL_APPEND], audit_log_append(b->log, pr->p, &rec));
        } else {
            TIMED(&pr->h[CALL_RESERVE], audit_log_reserve(b->log, pr->p, AUDIT_ALLOW));
            if (rc == 0) {
                rec.status = 200; /* the response: the proxy appends then */
                TIMED(&pr->h[CALL_APPEND_RESERVED],
                      audit_log_append_reserved(b->log, pr->p, &rec));
            }
        }
        if (rc < 0) {
            if (pr->failures++ == 0)
                pr->first_error = rc;
            if (rc == WARD_EIO)
                break;
            continue;
        }
        pr->appended++;
    }
    pr->cpu_ns = thread_cpu_ns() - cpu0;
    return NULL;
}

/* ---- the run ----------------------------------------------------------------------- */

static int usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s --dir DIR [--producers N] [--seconds S | --records N] [--rate R]\n"
            "          [--deny-every K] [--ring-slots N] [--warmup N]\n"
            "Appends ward-proxy-like decision records into a new audit trail in DIR (which\n"
            "must not exist) from N threads (1), for S seconds (5) or N records in all, at R\n"
            "records/s in all (0: as fast as the store takes them; overflow block), and prints\n"
            "records/s (to the end of audit_log_close) and per-call latencies as JSON.\n",
            prog);
    return 2;
}

static int arg_u64(const char *prog, const char *name, const char *v, uint64_t max, uint64_t *out)
{
    if (v == NULL || ward_parse_u64(v, strlen(v), max, out) < 0) {
        fprintf(stderr, "%s: %s wants a whole number <= %" PRIu64 "\n", prog, name, max);
        return -1;
    }
    return 0;
}

/* s as a JSON string (quotes, backslashes and control bytes escaped). */
static void print_jstr(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void print_hist(const char *name, const hist *h, bool comma)
{
    printf("    \"%s\": {\"calls\": %" PRIu64 ", \"mean_ns\": %.1f, \"p50_ns\": %" PRIu64
           ", \"p90_ns\": %" PRIu64 ", \"p99_ns\": %" PRIu64 ", \"p999_ns\": %" PRIu64
           ", \"max_ns\": %" PRIu64 "}%s\n",
           name, h->n, h->n ? (double)h->sum / (double)h->n : 0.0, hist_quantile(h, 0.50),
           hist_quantile(h, 0.90), hist_quantile(h, 0.99), hist_quantile(h, 0.999), h->max,
           comma ? "," : "");
}

/* Lines of the trail and whether their seq run 1..n (the lines only: the
 * caller's `wardctl audit verify` checks the chain and the checkpoints). */
static int trail_count(const char *dir, uint64_t *lines, bool *seq_ok, ward_err *err)
{
    audit_reader *r = NULL;
    int rc = audit_reader_open(dir, &r, err);
    if (rc < 0)
        return rc;
    const char *line;
    size_t len;
    *lines = 0;
    *seq_ok = true;
    while ((rc = audit_reader_next(r, &line, &len, err)) == 1) {
        ++*lines;
        static const char pre[] = "{\"v\":1,\"seq\":";
        uint64_t seq = 0;
        size_t i = sizeof(pre) - 1;
        if (len < i || memcmp(line, pre, i) != 0) {
            *seq_ok = false;
            continue;
        }
        for (; i < len && line[i] >= '0' && line[i] <= '9'; i++)
            seq = seq * 10u + (uint64_t)(line[i] - '0');
        if (seq != *lines)
            *seq_ok = false;
    }
    if (audit_reader_torn(r))
        *seq_ok = false;
    audit_reader_free(r);
    return rc < 0 ? rc : 0;
}

int main(int argc, char **argv)
{
    const char *prog = "audit_store_bench", *dir = NULL;
    uint64_t producers = 1, seconds = 5, records = 0, rate = 0, deny_every = 10, ring_slots = 0;
    uint64_t warmup = UINT64_MAX;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--dir") == 0 && v != NULL)
            dir = v;
        else if (strcmp(a, "--producers") == 0)
            rc = arg_u64(prog, a, v, MAX_PRODUCERS, &producers);
        else if (strcmp(a, "--seconds") == 0)
            rc = arg_u64(prog, a, v, 3600, &seconds);
        else if (strcmp(a, "--records") == 0)
            rc = arg_u64(prog, a, v, UINT64_C(1) << 40, &records);
        else if (strcmp(a, "--rate") == 0)
            rc = arg_u64(prog, a, v, 100000000, &rate);
        else if (strcmp(a, "--deny-every") == 0)
            rc = arg_u64(prog, a, v, 1000000, &deny_every);
        else if (strcmp(a, "--warmup") == 0)
            rc = arg_u64(prog, a, v, UINT64_C(1) << 40, &warmup);
        else if (strcmp(a, "--ring-slots") == 0)
            rc = arg_u64(prog, a, v, 1u << 20, &ring_slots);
        else
            return usage(prog);
        if (rc < 0)
            return 2;
        i++;
    }
    if (dir == NULL || producers == 0)
        return usage(prog);
    struct stat st;
    if (stat(dir, &st) == 0) {
        fprintf(stderr, "%s: %s exists: give a folder for a new trail\n", prog, dir);
        return 2;
    }

    ward_err err = {{0}};
    audit_options o;
    audit_options_init(&o);
    o.dir = dir;
    o.node = "spiffe://example.org/ns/shop/sa/payments";
    o.overflow = AUDIT_OVERFLOW_BLOCK;
    o.ring_slots = (uint32_t)ring_slots;
    bench b = {.records = records ? (records + producers - 1) / producers : 0,
               .rate = rate ? (double)rate / (double)producers : 0,
               .deny_every = (unsigned)deny_every,
               .warmup = warmup != UINT64_MAX ? warmup : 2u * (ring_slots ? ring_slots : 1024u)};
    atomic_init(&b.stop, false);
    atomic_init(&b.ready, 0);
    atomic_init(&b.go, false);
    int rc = audit_log_open(&o, &b.log, &err);
    if (rc < 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, dir, err.msg[0] ? err.msg : ward_strerror(rc));
        return 1;
    }
    producer *prs = calloc(producers, sizeof(*prs));
    if (prs == NULL) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return 1;
    }
    for (unsigned k = 0; k < producers; k++) {
        prs[k] = (producer){.b = &b, .index = k};
        if ((rc = audit_log_producer_new(b.log, &prs[k].p)) < 0 ||
            pthread_create(&prs[k].thread, NULL, producer_main, &prs[k]) != 0) {
            fprintf(stderr, "%s: producer %u: %s\n", prog, k, rc < 0 ? ward_strerror(rc) : "thread");
            return 1;
        }
    }
    while (atomic_load(&b.ready) < producers)
        ;

    /* go: the writer's progress every SAMPLE_MS until the time or the records are done */
    static uint64_t sample_written[MAX_SAMPLES], sample_ns[MAX_SAMPLES];
    size_t n_samples = 0;
    uint64_t main_cpu0 = thread_cpu_ns(), cpu0 = process_cpu_ns();
    uint64_t t_start = mono_ns();
    atomic_store(&b.go, true);
    uint64_t t_end = records ? UINT64_MAX : t_start + seconds * 1000000000u;
    for (;;) {
        struct timespec ts = {0, SAMPLE_MS * 1000000L};
        nanosleep(&ts, NULL);
        audit_stats s;
        audit_log_stats(b.log, &s);
        uint64_t now = mono_ns();
        if (n_samples < MAX_SAMPLES) {
            sample_written[n_samples] = s.written;
            sample_ns[n_samples++] = now - t_start;
        }
        if (now >= t_end || (records && s.appended >= records) || audit_log_status(b.log, NULL) < 0)
            break;
    }
    atomic_store(&b.stop, true);
    for (unsigned k = 0; k < producers; k++)
        pthread_join(prs[k].thread, NULL);
    uint64_t t_appended = mono_ns();
    audit_stats before;
    audit_log_stats(b.log, &before);
    int close_rc = audit_log_close(b.log, &err);
    uint64_t t_closed = mono_ns();
    uint64_t cpu_all = process_cpu_ns() - cpu0, main_cpu = thread_cpu_ns() - main_cpu0;

    hist all = {0}, kind[CALL_KINDS] = {{0}};
    uint64_t appended = 0, failures = 0, producer_cpu = 0, behind_max = 0;
    int first_error = 0;
    for (unsigned k = 0; k < producers; k++) {
        for (int c = 0; c < CALL_KINDS; c++) {
            hist_merge(&kind[c], &prs[k].h[c]);
            hist_merge(&all, &prs[k].h[c]);
        }
        appended += prs[k].appended;
        failures += prs[k].failures;
        producer_cpu += prs[k].cpu_ns;
        if (prs[k].behind_ns > behind_max)
            behind_max = prs[k].behind_ns;
        if (first_error == 0)
            first_error = prs[k].first_error;
    }

    uint64_t lines = 0;
    bool seq_ok = false;
    ward_err rerr = {{0}};
    int count_rc = trail_count(dir, &lines, &seq_ok, &rerr);

    /* the steadiest second: the slowest and the median of the 1 s windows of
     * the writer's progress (after the first second, before the producers stopped) */
    double win_min = 0, win_med = 0;
    size_t per = 1000 / SAMPLE_MS, n_win = 0;
    static double wins[MAX_SAMPLES];
    for (size_t i = per; i + per < n_samples; i++)
        wins[n_win++] = (double)(sample_written[i + per] - sample_written[i]) * 1e9 /
                        (double)(sample_ns[i + per] - sample_ns[i]);
    if (n_win > 0) {
        for (size_t i = 1; i < n_win; i++) /* insertion sort: at most a few thousand */
            for (size_t j = i; j > 0 && wins[j - 1] > wins[j]; j--) {
                double x = wins[j];
                wins[j] = wins[j - 1];
                wins[j - 1] = x;
            }
        win_min = wins[0];
        win_med = wins[n_win / 2];
    }

    double total_s = (double)(t_closed - t_start) / 1e9;
    uint64_t writer_cpu = cpu_all > producer_cpu + main_cpu ? cpu_all - producer_cpu - main_cpu : 0;
    printf("{\n  \"producers\": %" PRIu64 ",\n  \"rate_target\": %" PRIu64 ",\n", producers, rate);
    printf("  \"appended\": %" PRIu64 ",\n  \"failures\": %" PRIu64 ",\n  \"first_error\": ", appended,
           failures);
    print_jstr(first_error ? ward_strerror(first_error) : "");
    printf(",\n  \"lines\": %" PRIu64 ",\n  \"seq_ok\": %s,\n", lines, seq_ok ? "true" : "false");
    printf("  \"seconds_appending\": %.3f,\n  \"seconds_close\": %.3f,\n  \"seconds_total\": %.3f,\n",
           (double)(t_appended - t_start) / 1e9, (double)(t_closed - t_appended) / 1e9, total_s);
    printf("  \"records_per_s\": %.0f,\n", total_s > 0 ? (double)lines / total_s : 0.0);
    printf("  \"window_1s_min\": %.0f,\n  \"window_1s_median\": %.0f,\n", win_min, win_med);
    printf("  \"bytes\": %" PRIu64 ",\n  \"bytes_per_record\": %.0f,\n  \"mb_per_s\": %.1f,\n",
           before.bytes, before.written ? (double)before.bytes / (double)before.written : 0.0,
           total_s > 0 ? (double)before.bytes / total_s / 1e6 : 0.0);
    printf("  \"checkpoints_before_close\": %" PRIu64 ",\n  \"sealed_before_close\": %" PRIu64 ",\n",
           before.checkpoints, before.sealed);
    printf("  \"cpu_s\": {\"process\": %.3f, \"producers\": %.3f, \"writer_and_syncer\": %.3f},\n",
           (double)cpu_all / 1e9, (double)producer_cpu / 1e9, (double)writer_cpu / 1e9);
    printf("  \"records_per_writer_cpu_s\": %.0f,\n",
           writer_cpu ? (double)lines / ((double)writer_cpu / 1e9) : 0.0);
    printf("  \"paced_behind_max_us\": %.1f,\n  \"warmup_per_producer\": %" PRIu64 ",\n",
           (double)behind_max / 1e3, b.warmup);
    uint64_t t0 = mono_ns(), t1 = mono_ns();
    printf("  \"clock_overhead_ns\": %" PRIu64 ",\n", t1 - t0);
    printf("  \"latency\": {\n");
    print_hist("all", &all, true);
    for (int c = 0; c < CALL_KINDS; c++)
        print_hist(CALL_NAME[c], &kind[c], c + 1 < CALL_KINDS);
    printf("  },\n  \"close_error\": ");
    print_jstr(close_rc < 0 ? (err.msg[0] ? err.msg : ward_strerror(close_rc)) : "");
    printf(",\n  \"count_error\": ");
    print_jstr(count_rc < 0 ? (rerr.msg[0] ? rerr.msg : ward_strerror(count_rc)) : "");
    printf("\n}\n");
    free(prs);

    if (close_rc < 0 || count_rc < 0 || failures != 0 || lines != appended || !seq_ok) {
        fprintf(stderr,
                "%s: FAILED: close %s, %" PRIu64 " failed calls (%s), %" PRIu64
                " records appended, %" PRIu64 " lines in the trail%s\n",
                prog, close_rc < 0 ? err.msg : "ok", failures,
                first_error ? ward_strerror(first_error) : "none", appended, lines,
                seq_ok ? "" : ", seq not 1..n");
        return 1;
    }
    return 0;
}
