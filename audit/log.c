/* log.c - the audit log: per-producer SPSC rings, the writer thread (chain, segments, checkpoints, group commit), overflow and failure policy */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/audit_int.h"

#define CACHE_LINE 64
#define RING_DEFAULT 1024 /* ~140 ms of slack at 7,000 requests/s per worker */
#define RING_MAX (1u << 20)
#define PRODUCERS_DEFAULT 512
#define FSYNC_DEFAULT_MS 100
#define IDLE_MAX_MS 32       /* longest writer nap when nothing comes */
/* The writer's longest nap while records flow (see flowing_nap). */
#define SHORT_NAP_MS 10
#define PAUSED_NAP_MS 100
#define RETRY_MS 1000        /* writes are retried this often after a failure */
#define BATCH_BYTES (256 * 1024) /* write() once this much is rendered */
#define RING_HOT_BYTES (64 * 1024) /* see ring_slot_begin */
#define SPINS 64             /* BLOCK: busy retries before sleeping */
#define BLOCK_NAP_NS 50000
#define SEGMENT_BYTES_DEFAULT ((uint64_t)64 << 20)
#define SEGMENT_AGE_DEFAULT_MS ((uint64_t)3600 * 1000)
#define CHECKPOINT_RECORDS_DEFAULT 10000
#define CHECKPOINT_MS 1000   /* a checkpoint at least this often while records come */
#define MARKS_MAX 256        /* records awaiting their every-checkpoint_records checkpoint */

/* A record that gets a checkpoint (every checkpoint_records) once it is synced. */
typedef struct cp_mark {
    uint64_t seq;
    uint8_t hash[AUDIT_HASH_LEN];
    char segment[AUDIT_SEGMENT_NAME_MAX];
} cp_mark;

/* The producer's and the writer's fields live on separate cache lines. */
struct audit_producer {
    /* written by the producer thread */
    _Atomic uint64_t head;
    uint64_t tail_seen;   /* last tail read: avoids reading the writer's line per append */
    uint64_t gap_pending; /* records dropped since the last queued one */
    uint64_t reserved;    /* slots promised by audit_log_reserve and not yet filled */
    uint64_t id_prefix, id_key, id_count;
    size_t put_at; /* ring offset for the next slot */
    _Atomic uint64_t appended, dropped, refused;
    /* written by the writer thread */
    _Alignas(CACHE_LINE) _Atomic uint64_t tail;
    uint64_t gaps_written; /* drops already on record */
    /* fixed at creation */
    _Alignas(CACHE_LINE) audit_log *log;
    uint64_t mask;
    char *ring; /* slots packed end to end, each as long as its record (see ring_slot_begin) */
    size_t ring_bytes;
    size_t *slot_at; /* [mask + 1]: the ring offset of record seq, at seq & mask */
};

struct audit_log {
    /* fixed at open */
    char *dir, *node;
    size_t node_len;
    audit_overflow overflow;
    uint32_t ring_slots, fsync_ms, max_producers, checkpoint_records;
    uint64_t segment_bytes;
    int64_t segment_age_ns;
    EVP_PKEY *key;
    char key_id[AUDIT_KEY_ID_HEX + 1];
    int cp_fd, efd; /* checkpoints.jsonl (flock held), the writer's wake-up */
    pthread_t writer;
    audit_syncer *syncer; /* fdatasyncs for the writer, one job at a time */
    uint32_t sync_delay_ms;
    bool sync_ready;
    audit_producer **producers; /* [max_producers]; the first n_producers are set */
    _Atomic uint32_t n_producers;

    /* read by every append, written once */
    _Alignas(CACHE_LINE) _Atomic int failed; /* 0, or WARD_EIO for the rest of the log's life */
    char fail_msg[sizeof(((ward_err *)0)->msg)]; /* written once, before failed is set */
    _Atomic bool fail_claimed; /* by the thread (writer or syncer) that writes fail_msg */
    /* the writer's naps (read by appends: see kick_if_filling) */
    _Alignas(CACHE_LINE) _Atomic bool sleeping;
    _Atomic bool napping_long; /* the nap is longer than SHORT_NAP_MS: appends wake it */
    _Atomic bool kicked;

    /* control, under mu; cv tells waiters a flush is done or a pause taken */
    _Alignas(CACHE_LINE) pthread_mutex_t mu;
    pthread_cond_t cv;
    bool closing, pause_req, paused;
    uint64_t flush_req, flush_done;

    /* the writer's own */
    uint64_t seq;                 /* of the next record */
    uint8_t head[AUDIT_HASH_LEN]; /* hash of record seq - 1: the next prev */
    ward_buf out;                 /* rendered lines, all for the active segment (or, while
                                     one is sealed, for the next) */
    size_t out_off;               /* bytes of out already written */
    int64_t next_retry_ms;
    /* written: the last record whose line (and every one before it) is in a segment */
    uint64_t wr_seq;
    uint8_t wr_hash[AUDIT_HASH_LEN];
    char wr_segment[AUDIT_SEGMENT_NAME_MAX];
    /* synced: the last record the syncer made durable; checkpoints vouch for no more */
    uint64_t synced_seq;
    uint8_t synced_hash[AUDIT_HASH_LEN];
    char synced_segment[AUDIT_SEGMENT_NAME_MAX];
    /* syncing: a job in flight (sync_busy), what is written since the last one */
    bool sync_busy;
    audit_sync_job sync_job;
    bool seg_dirty, cp_dirty; /* written since the last job handed over */
    bool dir_dirty;           /* a segment created since then */
    bool sync_broken;         /* an fsync failed: nothing is vouched for any more */
    int64_t last_sync_ms;     /* when the last job was handed over */
    /* the active segment (seg_fd -1: the next write starts one at next_first) */
    int seg_fd;
    char seg_name[AUDIT_SEGMENT_NAME_MAX];
    uint64_t seg_first, seg_bytes, seg_records, next_first;
    int64_t seg_born_ns;
    bool seal_due;
    /* the segment being sealed (seal.fd -1: none): its fsync, then its
     * checkpoint and 0400; the next segment's lines wait in out meanwhile */
    audit_sync_job seal;
    char head_segment[AUDIT_SEGMENT_NAME_MAX]; /* the sealed segment holding seq - 1 */
    /* checkpoints */
    ward_buf cp_out; /* rendered, not yet written */
    size_t cp_off;
    uint64_t cp_seq; /* the last record vouched for */
    int64_t cp_last_ms;
    cp_mark marks[MARKS_MAX]; /* due every checkpoint_records, waiting to be synced */
    size_t n_marks;
    uint64_t mark_seq; /* the last record marked (or vouched for) */
    /* flushes: the last request taken, the record it waits for, the last one answered */
    uint64_t flush_taken, flush_seq, flush_answered;
    int close_rc;
    char close_msg[sizeof(((ward_err *)0)->msg)];
    _Atomic uint64_t written, write_errors, bytes, checkpoints, sealed;
    uint64_t torn_bytes;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Single-writer counters: a plain load and store, no locked instruction. */
static void bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* ---- options ------------------------------------------------------------------ */

void audit_options_init(audit_options *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->overflow = AUDIT_OVERFLOW_DENY;
    opts->ring_slots = RING_DEFAULT;
    opts->fsync_ms = FSYNC_DEFAULT_MS;
    opts->max_producers = PRODUCERS_DEFAULT;
}

static const char *const overflow_names[] = {"deny", "block", "drop"};

int audit_overflow_parse(const char *s, size_t len, audit_overflow *out)
{
    for (int i = 0; i < 3; i++) {
        if (strlen(overflow_names[i]) == len && memcmp(s, overflow_names[i], len) == 0) {
            *out = (audit_overflow)i;
            return 0;
        }
    }
    return WARD_EINVAL;
}

const char *audit_overflow_name(audit_overflow o)
{
    return (unsigned)o < 3 ? overflow_names[o] : "?";
}

/* ---- waking the writer ------------------------------------------------------------ */

static void kick(audit_log *l)
{
    uint64_t one = 1;
    ssize_t r = write(l->efd, &one, sizeof(one));
    (void)r; /* EAGAIN only when the counter is saturated: the writer is awake anyway */
}

/* From the hot path: one write(2) at most per writer nap, none while it works. */
static void kick_if_sleeping(audit_log *l)
{
    if (atomic_load(&l->sleeping) && !atomic_exchange(&l->kicked, true))
        kick(l);
}

static void writer_nap(audit_log *l, int ms)
{
    struct pollfd pfd = {.fd = l->efd, .events = POLLIN};
    atomic_store(&l->napping_long, ms > SHORT_NAP_MS);
    atomic_store(&l->sleeping, true);
    (void)poll(&pfd, 1, ms);
    atomic_store(&l->sleeping, false);
    uint64_t v;
    ssize_t r = read(l->efd, &v, sizeof(v));
    (void)r;
    atomic_store(&l->kicked, false);
}

/* ---- producers and the hot path ---------------------------------------------------- */

static uint64_t mix64(uint64_t x) /* splitmix64's finalizer: a bijection */
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static void put_hex64(char *out, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4)
        out[i] = hex[v & 15];
}

/* prefix (random per producer) + mix(count * odd + key): distinct for every
 * count, so ids never repeat within a producer, and look random outside. */
static void id_next(audit_producer *p, char out[AUDIT_ID_HEX])
{
    put_hex64(out, p->id_prefix);
    put_hex64(out + 16, mix64(p->id_count++ * 0x9e3779b97f4a7c15ULL + p->id_key));
}

void audit_producer_id_next(audit_producer *p, audit_id *out)
{
    id_next(p, out->hex);
    out->hex[AUDIT_ID_HEX] = '\0';
}

static void producer_free(audit_producer *p)
{
    free(p->ring);
    free(p->slot_at);
    free(p);
}

int audit_log_producer_new(audit_log *log, audit_producer **out)
{
    *out = NULL;
    audit_producer *p = aligned_alloc(CACHE_LINE, sizeof(*p)); /* sizeof: a multiple of 64 */
    if (p == NULL)
        return WARD_ENOMEM;
    memset(p, 0, sizeof(*p));
    p->log = log;
    p->mask = log->ring_slots - 1;
    p->ring_bytes = ((size_t)log->ring_slots + 1) * AUDIT_SLOT_SIZE;
    p->ring = aligned_alloc(CACHE_LINE, p->ring_bytes);
    p->slot_at = calloc(log->ring_slots, sizeof(*p->slot_at));
    uint64_t seed[2];
    if (p->ring == NULL || p->slot_at == NULL) {
        producer_free(p);
        return WARD_ENOMEM;
    }
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        producer_free(p);
        return WARD_EIO;
    }
    p->id_prefix = seed[0];
    p->id_key = seed[1];

    pthread_mutex_lock(&log->mu);
    uint32_t n = atomic_load(&log->n_producers);
    if (n >= log->max_producers || log->closing) {
        pthread_mutex_unlock(&log->mu);
        producer_free(p);
        return WARD_ELIMIT;
    }
    for (uint32_t i = 0; i < n; i++) /* prefixes differ within a log: ids cannot collide */
        if (log->producers[i]->id_prefix == p->id_prefix) {
            p->id_prefix++;
            i = (uint32_t)-1; /* and check again from the first */
        }
    log->producers[n] = p;
    atomic_store_explicit(&log->n_producers, n + 1, memory_order_release);
    pthread_mutex_unlock(&log->mu);
    *out = p;
    return 0;
}

/* Copies v into the slot's data, bounded by max and by the room left; a cut
 * value ends on a UTF-8 character boundary and is marked truncated. */
static void put(audit_slot *s, size_t *used, unsigned f, audit_str v, size_t max)
{
    if (v.ptr == NULL) {
        s->r.h.off[f] = 0;
        s->r.h.len[f] = AUDIT_ABSENT;
        return;
    }
    size_t room = AUDIT_SLOT_DATA - *used, lim = max < room ? max : room, n = v.len;
    if (n > lim) {
        n = lim;
        for (int k = 0; k < 3 && n > 0 && ((unsigned char)v.ptr[n] & 0xC0) == 0x80; k++)
            n--;
        s->r.h.truncated |= (uint16_t)(1u << f);
    }
    memcpy(s->r.data + *used, v.ptr, n);
    s->r.h.off[f] = (uint16_t)*used;
    s->r.h.len[f] = (uint16_t)n;
    *used += n;
}

static void fill(audit_slot *s, audit_producer *p, const audit_record *rec)
{
    audit_slot_hdr *h = &s->r.h;
    size_t used = 0;
    h->ts_ns = rec->ts_ns != 0 ? rec->ts_ns : audit_now_ns();
    h->latency_ns = rec->latency_ns;
    h->gap = p->gap_pending;
    p->gap_pending = 0;
    h->rule = rec->rule;
    h->dry_run_rule = rec->dry_run_rule;
    h->source_port = rec->source_port;
    h->destination_port = rec->destination_port;
    h->status = rec->status;
    h->direction = (uint8_t)rec->direction;
    h->decision = (uint8_t)rec->decision;
    h->dry_run_decision = (uint8_t)rec->dry_run_decision;
    h->flags = (uint8_t)((rec->audit ? AUDIT_FLAG_AUDIT : 0) |
                         (rec->has_dry_run ? AUDIT_FLAG_DRY_RUN : 0) |
                         (rec->has_connection ? AUDIT_FLAG_CONNECTION : 0));
    h->bytes_in = rec->bytes_in;
    h->bytes_out = rec->bytes_out;
    h->duration_ns = rec->duration_ns;
    h->truncated = 0;
    if (rec->id.hex[0] == '\0') {
        id_next(p, h->id);
    } else {
        size_t n = strnlen(rec->id.hex, AUDIT_ID_HEX);
        memcpy(h->id, rec->id.hex, n);
        memset(h->id + n, 0, AUDIT_ID_HEX - n);
    }
    put(s, &used, AF_POLICY, rec->policy, AUDIT_MAX_POLICY);
    put(s, &used, AF_DRY_RUN_POLICY, rec->has_dry_run ? rec->dry_run_policy : (audit_str){0},
        AUDIT_MAX_POLICY);
    put(s, &used, AF_REASON, rec->reason, AUDIT_MAX_REASON);
    put(s, &used, AF_BUNDLE, rec->bundle, AUDIT_MAX_BUNDLE);
    put(s, &used, AF_CERT, rec->peer_cert_sha256, AUDIT_MAX_CERT_SHA256);
    put(s, &used, AF_SOURCE_PRINCIPAL, rec->source_principal, AUDIT_MAX_PRINCIPAL);
    put(s, &used, AF_SOURCE_IP, rec->source_ip, AUDIT_MAX_IP);
    put(s, &used, AF_DESTINATION_SERVICE, rec->destination_service, AUDIT_MAX_SERVICE);
    put(s, &used, AF_DESTINATION_PRINCIPAL, rec->destination_principal, AUDIT_MAX_PRINCIPAL);
    put(s, &used, AF_METHOD, rec->method, AUDIT_MAX_METHOD);
    put(s, &used, AF_PROTOCOL, rec->protocol, AUDIT_MAX_PROTOCOL);
    put(s, &used, AF_HOST, rec->host, AUDIT_MAX_HOST);
    put(s, &used, AF_TRACE_ID, rec->trace_id, AUDIT_MAX_TRACE_ID);
    put(s, &used, AF_PATH, rec->path, AUDIT_MAX_PATH);
    put(s, &used, AF_HEADERS, rec->headers, AUDIT_MAX_HEADERS);
    h->used = (uint16_t)used;
}

static void fill_event(audit_slot *s, audit_producer *p, const audit_event *ev)
{
    audit_slot_hdr *h = &s->r.h;
    size_t used = 0;
    memset(h, 0, sizeof(*h));
    h->ts_ns = ev->ts_ns != 0 ? ev->ts_ns : audit_now_ns();
    h->latency_ns = -1;
    h->gap = p->gap_pending;
    p->gap_pending = 0;
    h->rule = h->dry_run_rule = h->destination_port = -1;
    h->source_port = ev->source_port;
    h->status = ev->status;
    h->not_after_ns = ev->not_after_ns;
    h->bundle_sequence = ev->bundle_sequence;
    h->source_uid = ev->source_uid;
    h->decision = (uint8_t)(ev->outcome == AUDIT_SUCCESS ? AUDIT_SUCCESS : AUDIT_FAILURE);
    h->flags = AUDIT_FLAG_EVENT;
    if (ev->id.hex[0] == '\0') {
        id_next(p, h->id);
    } else {
        size_t n = strnlen(ev->id.hex, AUDIT_ID_HEX);
        memcpy(h->id, ev->id.hex, n);
    }
    for (unsigned f = AEF_COUNT; f < AF_COUNT; f++)
        h->len[f] = AUDIT_ABSENT;
    put(s, &used, AEF_EVENT, ev->event, AUDIT_MAX_EVENT);
    put(s, &used, AEF_ERROR, ev->error, AUDIT_MAX_EVENT);
    put(s, &used, AEF_VIA, ev->via, AUDIT_MAX_EVENT);
    put(s, &used, AEF_SUBJECT, ev->subject, AUDIT_MAX_PRINCIPAL);
    put(s, &used, AEF_SERIAL, ev->serial, AUDIT_MAX_SERIAL);
    put(s, &used, AEF_TOKEN_ID, ev->token_id, AUDIT_MAX_SERIAL);
    put(s, &used, AEF_KEY_ID, ev->key_id, AUDIT_MAX_SERIAL);
    put(s, &used, AEF_REASON, ev->reason, AUDIT_MAX_REASON);
    put(s, &used, AEF_SOURCE_PRINCIPAL, ev->source_principal, AUDIT_MAX_PRINCIPAL);
    put(s, &used, AEF_SOURCE_IP, ev->source_ip, AUDIT_MAX_IP);
    put(s, &used, AEF_AUDIENCE, ev->audience, AUDIT_MAX_AUDIENCE);
    h->used = (uint16_t)used;
}

/* BLOCK (and DROP for a deny record): wait for the writer to free a slot. */
static int wait_for_slot(audit_log *l, audit_producer *p, uint64_t head)
{
    for (unsigned spins = 0;; spins++) {
        kick_if_sleeping(l);
        if (atomic_load_explicit(&l->failed, memory_order_relaxed) != 0)
            return WARD_EIO;
        p->tail_seen = atomic_load_explicit(&p->tail, memory_order_acquire);
        if (head - p->tail_seen <= p->mask)
            return 0;
        if (spins < SPINS) {
            sched_yield();
        } else {
            struct timespec ts = {0, BLOCK_NAP_NS};
            nanosleep(&ts, NULL);
        }
    }
}

/* Makes sure one more slot than those already promised is free, following the
 * overflow policy when it is not. */
static int claim(audit_log *log, audit_producer *p, audit_verdict decision)
{
    if (atomic_load_explicit(&log->failed, memory_order_relaxed) != 0) {
        bump(&p->refused, 1);
        return WARD_EIO;
    }
    uint64_t head = atomic_load_explicit(&p->head, memory_order_relaxed) + p->reserved;
    if (head - p->tail_seen <= p->mask)
        return 0;
    p->tail_seen = atomic_load_explicit(&p->tail, memory_order_acquire);
    if (head - p->tail_seen <= p->mask)
        return 0;
    if (log->overflow == AUDIT_OVERFLOW_DROP && decision == AUDIT_ALLOW) {
        p->gap_pending++;
        bump(&p->dropped, 1);
        kick_if_sleeping(log);
        return WARD_ELIMIT;
    }
    if (log->overflow == AUDIT_OVERFLOW_DENY) {
        bump(&p->refused, 1);
        kick_if_sleeping(log);
        return WARD_ELIMIT;
    }
    int rc = wait_for_slot(log, p, head);
    if (rc < 0)
        bump(&p->refused, 1);
    return rc;
}

/* After an append: a writer that naps long (nothing came for a while) is woken
 * at once; one in its short naps (records flowing) only when the ring is an
 * eighth full, read afresh. While records flow the writer comes back within
 * a millisecond by itself, so the request path makes no system call; a stale
 * view of the writer's progress would otherwise wake it on every append. */
static void kick_if_filling(audit_log *log, audit_producer *p, uint64_t head)
{
    if (!atomic_load_explicit(&log->sleeping, memory_order_acquire))
        return;
    if (head - p->tail_seen > p->mask / 8)
        p->tail_seen = atomic_load_explicit(&p->tail, memory_order_acquire);
    if (head - p->tail_seen > p->mask / 8 ||
        atomic_load_explicit(&log->napping_long, memory_order_relaxed))
        kick_if_sleeping(log);
}

/* The ring holds slots packed end to end, each only as long as its record
 * (about a tenth of AUDIT_SLOT_SIZE; slots AUDIT_SLOT_SIZE apart would touch
 * a new page per append). A slot never starts closer than AUDIT_SLOT_SIZE to the
 * end, so the largest fits whole. At most ring_slots are queued (claim), each
 * at most AUDIT_SLOT_SIZE, plus less than one skipped at the end: with room
 * for one slot more than that, a slot being filled never meets one queued.
 * Once past RING_HOT_BYTES, the next slot starts over at the ring's start if
 * the writer has taken every queued one: while it keeps up, appends write
 * into memory still in the cache. */
static size_t ring_slot_begin(audit_producer *p, uint64_t head)
{
    if (p->put_at >= RING_HOT_BYTES &&
        (p->tail_seen = atomic_load_explicit(&p->tail, memory_order_acquire)) == head)
        p->put_at = 0;
    p->slot_at[head & p->mask] = p->put_at;
    return p->put_at;
}

static void ring_slot_end(audit_producer *p, const audit_slot *s)
{
    size_t n = offsetof(audit_slot, r.data) + s->r.h.used;
    size_t at = p->put_at + ((n + CACHE_LINE - 1) & ~(size_t)(CACHE_LINE - 1));
    p->put_at = p->ring_bytes - at < AUDIT_SLOT_SIZE ? 0 : at;
}

static void ring_put(audit_log *log, audit_producer *p, const audit_record *rec)
{
    uint64_t head = atomic_load_explicit(&p->head, memory_order_relaxed);
    audit_slot *s = (audit_slot *)(p->ring + ring_slot_begin(p, head));
    fill(s, p, rec);
    ring_slot_end(p, s);
    atomic_store_explicit(&p->head, head + 1, memory_order_release);
    bump(&p->appended, 1);
    kick_if_filling(log, p, head + 1);
}

int audit_log_append(audit_log *log, audit_producer *p, const audit_record *rec)
{
    if (log == NULL || p == NULL || rec == NULL || p->log != log)
        return WARD_EINVAL;
    int rc = claim(log, p, rec->decision);
    if (rc < 0)
        return rc;
    ring_put(log, p, rec);
    return 0;
}

int audit_log_reserve(audit_log *log, audit_producer *p, audit_verdict decision)
{
    if (log == NULL || p == NULL || p->log != log)
        return WARD_EINVAL;
    int rc = claim(log, p, decision);
    if (rc == 0)
        p->reserved++;
    return rc;
}

int audit_log_append_reserved(audit_log *log, audit_producer *p, const audit_record *rec)
{
    if (log == NULL || p == NULL || rec == NULL || p->log != log || p->reserved == 0)
        return WARD_EINVAL;
    p->reserved--;
    if (atomic_load_explicit(&log->failed, memory_order_relaxed) != 0) {
        bump(&p->refused, 1);
        return WARD_EIO;
    }
    ring_put(log, p, rec);
    return 0;
}

static void ring_put_event(audit_log *log, audit_producer *p, const audit_event *ev)
{
    uint64_t head = atomic_load_explicit(&p->head, memory_order_relaxed);
    audit_slot *s = (audit_slot *)(p->ring + ring_slot_begin(p, head));
    fill_event(s, p, ev);
    ring_slot_end(p, s);
    atomic_store_explicit(&p->head, head + 1, memory_order_release);
    bump(&p->appended, 1);
    kick_if_filling(log, p, head + 1);
}

int audit_log_append_event(audit_log *log, audit_producer *p, const audit_event *ev)
{
    if (log == NULL || p == NULL || ev == NULL || ev->event.ptr == NULL || p->log != log)
        return WARD_EINVAL;
    int rc = claim(log, p, AUDIT_DENY); /* never dropped */
    if (rc < 0)
        return rc;
    ring_put_event(log, p, ev);
    return 0;
}

int audit_log_append_event_reserved(audit_log *log, audit_producer *p, const audit_event *ev)
{
    if (log == NULL || p == NULL || ev == NULL || ev->event.ptr == NULL || p->log != log ||
        p->reserved == 0)
        return WARD_EINVAL;
    p->reserved--;
    if (atomic_load_explicit(&log->failed, memory_order_relaxed) != 0) {
        bump(&p->refused, 1);
        return WARD_EIO;
    }
    ring_put_event(log, p, ev);
    return 0;
}

void audit_log_unreserve(audit_producer *p)
{
    if (p != NULL && p->reserved > 0)
        p->reserved--;
}

/* ---- the writer ------------------------------------------------------------------------ */

/* The first failure is kept (sticky); later ones only count. Called by the
 * writer and, for a failed sync, by the syncer: the first to claim the
 * message writes it. */
static void fail(audit_log *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(audit_log *l, const char *fmt, ...)
{
    atomic_fetch_add(&l->write_errors, 1);
    if (atomic_exchange(&l->fail_claimed, true))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->fail_msg, sizeof(l->fail_msg), fmt, ap);
    va_end(ap);
    atomic_store_explicit(&l->failed, WARD_EIO, memory_order_release);
}

/* name: a file of the trail (NULL: the folder). */
static void set_failed(audit_log *l, const char *name, const char *what, int e)
{
    fail(l, "%s%s%s: %s: %s", l->dir, name ? "/" : "", name ? name : "", what, strerror(e));
}

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t k = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        k++;
    return k;
}

/* Starts the segment whose first record is next_first. */
static int segment_start(audit_log *l)
{
    char path[4096];
    audit_segment_name(l->seg_name, l->next_first);
    snprintf(path, sizeof(path), "%s/%s", l->dir, l->seg_name);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_failed(l, l->seg_name, "creating the segment", errno);
        return -1;
    }
    if (fchmod(fd, 0600) < 0) { /* whatever the umask */
        set_failed(l, l->seg_name, "creating the segment", errno);
        close(fd);
        (void)unlink(path);
        return -1;
    }
    l->seg_fd = fd;
    l->seg_first = l->next_first;
    l->dir_dirty = true; /* its name is durable with the next sync, before any checkpoint */
    l->seg_bytes = l->seg_records = 0;
    l->seg_born_ns = audit_now_ns();
    return 0;
}

/* write() of buf from *off to fd. Returns the bytes written, and in *lines
 * the lines they complete (a failure is set_failed). */
static size_t write_buf(audit_log *l, int fd, const char *name, ward_buf *b, size_t *off,
                        uint64_t *lines)
{
    size_t done = 0;
    *lines = 0;
    while (*off < b->len) {
        ssize_t w = write(fd, b->ptr + *off, b->len - *off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            set_failed(l, name, "write", w < 0 ? errno : EIO);
            l->next_retry_ms = mono_ms() + RETRY_MS;
            return done;
        }
        *lines += count_lines(b->ptr + *off, (size_t)w);
        *off += (size_t)w;
        done += (size_t)w;
    }
    if (b->cap > 4 * BATCH_BYTES) { /* give back what a burst or an outage grew */
        ward_buf_dispose(b);
        ward_buf_init(b);
    }
    ward_buf_reset(b);
    *off = 0;
    return done;
}

static bool retry_wait(audit_log *l, bool force)
{
    return atomic_load(&l->failed) != 0 && !force && mono_ms() < l->next_retry_ms;
}

/* Writes the rendered records to the active segment (starting one if
 * needed); not while a segment is being sealed: they are the next one's. */
static void write_out(audit_log *l, bool force)
{
    if (l->out_off == l->out.len || l->seal.fd >= 0 || retry_wait(l, force))
        return;
    if (l->seg_fd < 0 && segment_start(l) < 0) {
        l->next_retry_ms = mono_ms() + RETRY_MS;
        return;
    }
    uint64_t lines;
    size_t w = write_buf(l, l->seg_fd, l->seg_name, &l->out, &l->out_off, &lines);
    if (w > 0) {
        atomic_fetch_add(&l->written, lines);
        atomic_fetch_add(&l->bytes, (uint64_t)w);
        l->seg_records += lines;
        l->seg_bytes += w;
        l->seg_dirty = true;
    }
    if (l->out_off == l->out.len) { /* everything rendered is in the segment */
        l->wr_seq = l->seq - 1;
        memcpy(l->wr_hash, l->head, sizeof(l->wr_hash));
        memcpy(l->wr_segment, l->seg_name, sizeof(l->wr_segment));
    }
}

/* Writes the rendered checkpoints. */
static void write_checkpoints(audit_log *l, bool force)
{
    if (l->cp_off == l->cp_out.len || retry_wait(l, force))
        return;
    uint64_t lines;
    size_t w = write_buf(l, l->cp_fd, AUDIT_CHECKPOINTS_FILE, &l->cp_out, &l->cp_off, &lines);
    if (w > 0) {
        atomic_fetch_add(&l->checkpoints, lines);
        l->cp_dirty = true;
    }
}

/* ---- checkpoints: only ever for synced records ---- */

/* A checkpoint for record seq (its hash, the segment holding it), which the
 * syncer made durable. */
static void checkpoint_at(audit_log *l, uint64_t seq, const uint8_t hash[AUDIT_HASH_LEN],
                          const char *segment)
{
    if (seq <= l->cp_seq || seq > l->synced_seq || l->sync_broken)
        return;
    ward_err err;
    if (audit_checkpoint_render(&l->cp_out, l->key, l->key_id, l->node, l->node_len, seq, hash,
                                audit_now_ns(), segment, &err) < 0) {
        fail(l, "%.200s/%s: %.700s", l->dir, AUDIT_CHECKPOINTS_FILE, err.msg);
        return; /* the next checkpoint vouches for these records too */
    }
    l->cp_seq = seq;
    l->cp_last_ms = mono_ms();
    if (l->mark_seq < seq)
        l->mark_seq = seq;
}

/* The segment holding record seq - 1 (the last rendered). */
static void last_segment(const audit_log *l, char out[AUDIT_SEGMENT_NAME_MAX])
{
    if (l->seg_fd >= 0 && l->seq - 1 >= l->seg_first)
        memcpy(out, l->seg_name, AUDIT_SEGMENT_NAME_MAX);
    else if (l->seg_fd < 0 && l->seq - 1 >= l->next_first) /* the next write starts its segment */
        audit_segment_name(out, l->next_first);
    else
        memcpy(out, l->head_segment, AUDIT_SEGMENT_NAME_MAX);
}

/* Every checkpoint_records records, the last one rendered gets a checkpoint
 * once it is synced. */
static void mark_if_due(audit_log *l)
{
    uint64_t last = l->seq - 1;
    if (last - l->mark_seq < l->checkpoint_records ||
        atomic_load_explicit(&l->failed, memory_order_relaxed) != 0)
        return;
    l->mark_seq = last;
    if (l->n_marks == MARKS_MAX)
        return; /* far behind the disk: a later checkpoint vouches for these records too */
    cp_mark *m = &l->marks[l->n_marks++];
    m->seq = last;
    memcpy(m->hash, l->head, sizeof(m->hash));
    last_segment(l, m->segment);
}

/* The marked checkpoints a sync let through. */
static void checkpoint_marks(audit_log *l)
{
    size_t k = 0;
    for (; k < l->n_marks && l->marks[k].seq <= l->synced_seq; k++)
        checkpoint_at(l, l->marks[k].seq, l->marks[k].hash, l->marks[k].segment);
    memmove(l->marks, l->marks + k, (l->n_marks - k) * sizeof(l->marks[0]));
    l->n_marks -= k;
}

/* Every second while records come: one for the last record synced. */
static void checkpoint_if_due(audit_log *l)
{
    if (l->synced_seq > l->cp_seq && mono_ms() - l->cp_last_ms >= CHECKPOINT_MS)
        checkpoint_at(l, l->synced_seq, l->synced_hash, l->synced_segment);
}

/* ---- syncing: the syncer thread fdatasyncs, the writer goes on ---- */

static void on_sync_fail(const char *name, const char *what, int e, void *data)
{
    set_failed(data, name, what, e);
}

static void on_sync_done(void *data)
{
    kick(data);
}

/* Is a sync of what was written due? Every fsync_ms, or sooner when a
 * flush, a marked checkpoint or the checkpoint of the second waits for it. */
static bool sync_due(const audit_log *l)
{
    int64_t now = mono_ms();
    return now - l->last_sync_ms >= l->fsync_ms ||
           (l->flush_taken != l->flush_answered && l->flush_seq > l->synced_seq) ||
           (l->n_marks > 0 && l->marks[0].seq <= l->wr_seq) ||
           (l->wr_seq > l->cp_seq && now - l->cp_last_ms >= CHECKPOINT_MS);
}

/* Hands the syncer its next job when it is idle: a segment being sealed
 * first (fsync); else, when due (or now), the active segment up to the
 * last record written and checkpoints.jsonl, whichever was written since. */
static void sync_start(audit_log *l, bool now)
{
    if (l->sync_busy || l->sync_broken)
        return;
    audit_sync_job j = {.fd = -1, .cp_fd = -1};
    if (l->seal.fd >= 0) {
        j = l->seal;
    } else if ((l->seg_dirty || l->cp_dirty || l->dir_dirty) && (now || sync_due(l))) {
        if (l->seg_dirty) {
            j.fd = l->seg_fd;
            j.seq = l->wr_seq;
            memcpy(j.hash, l->wr_hash, sizeof(j.hash));
            memcpy(j.segment, l->wr_segment, sizeof(j.segment));
        }
    } else {
        return;
    }
    l->seg_dirty = false; /* a seal's fsync covers the active segment's writes: there are none */
    if (l->cp_dirty)
        j.cp_fd = l->cp_fd;
    l->cp_dirty = false;
    if (l->dir_dirty)
        j.dir = l->dir;
    l->dir_dirty = false;
    l->sync_job = j;
    l->sync_busy = true;
    l->last_sync_ms = mono_ms();
    audit_syncer_submit(l->syncer, &j);
}

static void seal_finish(audit_log *l);

/* Takes the result of the job in flight (waiting for it when wait): what it
 * made durable, the checkpoints that waited for it, the end of a seal. */
static void sync_reap(audit_log *l, bool wait)
{
    int rc;
    if (!l->sync_busy || !audit_syncer_reap(l->syncer, wait, &rc))
        return;
    l->sync_busy = false;
    const audit_sync_job *j = &l->sync_job;
    if (rc < 0) {
        l->sync_broken = true; /* the kernel may have dropped the pages: vouch for nothing more */
    } else if (j->fd >= 0 && j->seq > l->synced_seq) {
        l->synced_seq = j->seq;
        memcpy(l->synced_hash, j->hash, sizeof(l->synced_hash));
        memcpy(l->synced_segment, j->segment, sizeof(l->synced_segment));
    }
    checkpoint_marks(l);
    if (l->seal.fd >= 0 && (j->full || l->sync_broken))
        seal_finish(l);
}

/* Between two steps of the writer: results in, the next job out. */
static void sync_poll(audit_log *l)
{
    sync_reap(l, false);
    sync_start(l, false);
}

/* Waits for the job in flight and for a seal under way (close). */
static void sync_settle(audit_log *l)
{
    sync_reap(l, true);
    if (l->seal.fd >= 0) {
        sync_start(l, true);
        sync_reap(l, true);
    }
}

/* Syncs everything written, and waits (close). */
static void sync_now(audit_log *l)
{
    sync_settle(l);
    sync_start(l, true);
    sync_reap(l, true);
}

/* ---- segments ---- */

/* Starts sealing the active segment once every record rendered for it is
 * written: the syncer fsyncs it (the next segment's records wait in out
 * meanwhile), then seal_finish. False when it cannot start: a seal is still
 * under way, or the records are not all written (a failing disk: the
 * segment then goes on). */
static bool seal_begin(audit_log *l)
{
    if (l->seal.fd >= 0)
        return false;
    write_out(l, false);
    if (l->out_off != l->out.len)
        return false;
    l->seal_due = false;
    if (l->seg_fd < 0 || l->seg_records == 0)
        return true;
    l->seal = (audit_sync_job){.fd = l->seg_fd, .full = true, .cp_fd = -1, .seq = l->wr_seq};
    memcpy(l->seal.hash, l->wr_hash, sizeof(l->seal.hash));
    memcpy(l->seal.segment, l->seg_name, sizeof(l->seal.segment));
    memcpy(l->head_segment, l->seg_name, sizeof(l->head_segment));
    l->seg_fd = -1;
    l->seg_dirty = false;
    l->next_first = l->seq;
    l->seg_bytes = l->seg_records = 0;
    if (l->sync_broken) /* no more syncs (so none in flight): sealed as it is */
        seal_finish(l);
    else
        sync_start(l, true);
    return true;
}

/* After the sealed segment's fsync: a checkpoint for its last record, then
 * read-only. The next segment can start. */
static void seal_finish(audit_log *l)
{
    checkpoint_at(l, l->seal.seq, l->seal.hash, l->seal.segment);
    write_checkpoints(l, false);
    if (fchmod(l->seal.fd, 0400) < 0)
        set_failed(l, l->seal.segment, "sealing (chmod 0400)", errno);
    close(l->seal.fd);
    l->seal.fd = -1;
    atomic_fetch_add(&l->sealed, 1);
}

static bool seal_by_age(audit_log *l)
{
    return l->seg_fd >= 0 && l->seg_records > 0 &&
           audit_now_ns() - l->seg_born_ns >= l->segment_age_ns;
}

/* Renders one slot (and the gap record before it), each line chained: all or nothing. */
static int render_slot(audit_log *l, audit_producer *p, const audit_slot *s)
{
    size_t len = l->out.len;
    uint64_t seq = l->seq;
    uint8_t head[AUDIT_HASH_LEN];
    int rc = 0;
    memcpy(head, l->head, sizeof(head));
    if (s->r.h.gap > 0) {
        size_t at = l->out.len;
        WARD_TRY(audit_render_gap(&l->out, seq++, s->r.h.ts_ns, l->node, l->node_len, s->r.h.gap));
        WARD_TRY(audit_chain_line(&l->out, at, head));
    }
    size_t at = l->out.len;
    if (s->r.h.flags & AUDIT_FLAG_EVENT)
        WARD_TRY(audit_render_event(&l->out, s, seq++, l->node, l->node_len));
    else
        WARD_TRY(audit_render_record(&l->out, s, seq++, l->node, l->node_len));
    WARD_TRY(audit_chain_line(&l->out, at, head));
    p->gaps_written += s->r.h.gap;
    l->seq = seq;
    memcpy(l->head, head, sizeof(head));
    return 0;
fail:
    l->out.len = len;
    if (l->out.ptr != NULL)
        l->out.ptr[len] = '\0';
    set_failed(l, NULL, "rendering a record", ENOMEM);
    return rc;
}

/* After each record: is the active segment full? */
static void check_size(audit_log *l)
{
    if (!l->seal_due && l->seg_bytes + (l->out.len - l->out_off) >= l->segment_bytes)
        l->seal_due = true;
}

/* Moves every queued record into out (writing each full batch, sealing each
 * full segment, marking every checkpoint_records); returns how many, *all
 * false when some are left: out of memory, or the next segment is full
 * while the last one is still being sealed (rare: the disk is slower than
 * a whole segment). */
static size_t drain(audit_log *l, bool *all)
{
    size_t n = 0;
    *all = false;
    uint32_t np = atomic_load_explicit(&l->n_producers, memory_order_acquire);
    for (uint32_t i = 0; i < np; i++) {
        audit_producer *p = l->producers[i];
        uint64_t tail = atomic_load_explicit(&p->tail, memory_order_relaxed);
        uint64_t head = atomic_load_explicit(&p->head, memory_order_acquire);
        for (; tail != head; tail++) {
            if (l->seal_due && !seal_begin(l) && l->seal.fd >= 0)
                return n;
            mark_if_due(l);
            if (render_slot(l, p, (const audit_slot *)(p->ring + p->slot_at[tail & p->mask])) < 0)
                return n; /* out of memory: the slot stays queued */
            atomic_store_explicit(&p->tail, tail + 1, memory_order_release);
            n++;
            check_size(l);
            if (l->out.len - l->out_off >= BATCH_BYTES) {
                write_out(l, false);
                sync_poll(l);
            }
        }
    }
    *all = true;
    return n;
}

/* At close, drops that no later record carried are put on record. */
static void write_trailing_gaps(audit_log *l)
{
    uint32_t np = atomic_load_explicit(&l->n_producers, memory_order_acquire);
    for (uint32_t i = 0; i < np; i++) {
        audit_producer *p = l->producers[i];
        uint64_t dropped = atomic_load(&p->dropped);
        if (dropped <= p->gaps_written)
            continue;
        if (l->seal_due && seal_begin(l))
            sync_settle(l);
        size_t at = l->out.len;
        if (audit_render_gap(&l->out, l->seq, audit_now_ns(), l->node, l->node_len,
                             dropped - p->gaps_written) < 0 ||
            audit_chain_line(&l->out, at, l->head) < 0) {
            l->out.len = at;
            set_failed(l, NULL, "rendering a gap record", ENOMEM);
            return;
        }
        l->seq++;
        p->gaps_written = dropped;
        check_size(l);
    }
}

/* Close: every record drained, written, synced, then a checkpoint for the
 * last one, itself synced. all: the last drain left none behind. */
static void writer_finish(audit_log *l, bool all)
{
    while (!all && l->seal.fd >= 0) { /* the rest waited for a seal */
        sync_settle(l);
        (void)drain(l, &all);
    }
    sync_settle(l);
    write_trailing_gaps(l);
    write_out(l, true);
    if (l->seal_due && seal_begin(l))
        sync_settle(l);
    sync_now(l);
    checkpoint_at(l, l->synced_seq, l->synced_hash, l->synced_segment);
    write_checkpoints(l, true);
    sync_now(l);
    if (l->out_off < l->out.len || l->cp_off < l->cp_out.len) {
        l->close_rc = WARD_EIO;
        snprintf(l->close_msg, sizeof(l->close_msg),
                 "%llu audit record(s) and %llu checkpoint(s) could not be written: %.900s",
                 (unsigned long long)count_lines(l->out.ptr + l->out_off, l->out.len - l->out_off),
                 (unsigned long long)count_lines(l->cp_out.ptr + l->cp_off,
                                                 l->cp_out.len - l->cp_off),
                 l->fail_msg);
    } else if (atomic_load(&l->failed) != 0) {
        l->close_rc = WARD_EIO;
        snprintf(l->close_msg, sizeof(l->close_msg), "%s", l->fail_msg);
    }
}

/* Answers the flush taken once the record it waits for is synced (or the log failed). */
static void flush_answer(audit_log *l)
{
    if (l->flush_taken == l->flush_answered ||
        (l->synced_seq < l->flush_seq && atomic_load(&l->failed) == 0))
        return;
    l->flush_answered = l->flush_taken;
    pthread_mutex_lock(&l->mu);
    l->flush_done = l->flush_answered;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* The nap while records flow: about as long as 1/8 of a ring takes to fill
 * at the rate just seen (n records in elapsed_ms), so that appends seldom
 * have to kick, within 1..SHORT_NAP_MS. Long naps mean fewer wake-ups
 * competing with the proxy's workers for the CPU (1 ms naps cost 0.3-0.9 ms
 * of p99 on a 2-core mesh hop); a small ring or a high rate keeps them short.
 * Durability is paced by fsync_ms, not by this. */
static int flowing_nap(const audit_log *l, size_t n, int64_t elapsed_ms)
{
    uint64_t ms = (uint64_t)(l->ring_slots / 8) * (uint64_t)(elapsed_ms > 0 ? elapsed_ms : 1) / n;
    return ms < 1 ? 1 : ms > SHORT_NAP_MS ? SHORT_NAP_MS : (int)ms;
}

static void *writer_main(void *arg)
{
    audit_log *l = arg;
    int nap = 1;
    int64_t last_wake = mono_ms();
    for (;;) {
        int64_t woke = mono_ms(), elapsed = woke - last_wake;
        last_wake = woke;
        pthread_mutex_lock(&l->mu);
        bool closing = l->closing, pause = l->pause_req && !closing;
        uint64_t flush_req = l->flush_req;
        if (pause != l->paused) {
            l->paused = pause;
            pthread_cond_broadcast(&l->cv);
        }
        pthread_mutex_unlock(&l->mu);

        sync_reap(l, false);
        bool all = true;
        size_t n = pause ? 0 : drain(l, &all);
        if (closing) {
            writer_finish(l, all);
            break;
        }
        write_out(l, false);
        if (l->seal_due || seal_by_age(l))
            (void)seal_begin(l);
        mark_if_due(l);
        if (!pause && (all || atomic_load(&l->failed) != 0) && flush_req != l->flush_taken) {
            l->flush_taken = flush_req; /* every record appended before it is rendered */
            l->flush_seq = l->seq - 1;
        }
        checkpoint_if_due(l);
        write_checkpoints(l, false);
        sync_start(l, false);
        flush_answer(l);

        nap = n > 0 ? flowing_nap(l, n, elapsed) : (nap * 2 > IDLE_MAX_MS ? IDLE_MAX_MS : nap * 2);
        int64_t ms = pause ? PAUSED_NAP_MS : nap, now = mono_ms();
        if (!l->sync_busy && !l->sync_broken && (l->seg_dirty || l->cp_dirty || l->dir_dirty) &&
            l->last_sync_ms + l->fsync_ms - now < ms)
            ms = l->last_sync_ms + l->fsync_ms - now; /* a job done wakes the writer itself */
        if (((l->out_off < l->out.len && l->seal.fd < 0) || l->cp_off < l->cp_out.len) &&
            atomic_load(&l->failed) != 0 && l->next_retry_ms - now < ms)
            ms = l->next_retry_ms - now; /* (lines held for a seal wait for its job) */
        writer_nap(l, ms < 0 ? 0 : (int)ms);
    }
    return NULL;
}

/* ---- open and close ----------------------------------------------------------------------- */

static void log_free(audit_log *l)
{
    audit_syncer_free(l->syncer); /* before the files it syncs are closed */
    uint32_t n = atomic_load(&l->n_producers);
    for (uint32_t i = 0; i < n; i++)
        producer_free(l->producers[i]);
    free(l->producers);
    if (l->sync_ready) {
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
    }
    if (l->seg_fd >= 0)
        close(l->seg_fd);
    if (l->seal.fd >= 0)
        close(l->seal.fd);
    if (l->cp_fd >= 0)
        close(l->cp_fd); /* and with it the lock */
    if (l->efd >= 0)
        close(l->efd);
    EVP_PKEY_free(l->key);
    ward_buf_dispose(&l->out);
    ward_buf_dispose(&l->cp_out);
    free(l->dir);
    free(l->node);
    free(l);
}

/* A node is signed line by line: printable ASCII only (a SPIFFE ID is). */
static bool node_ok(const char *node)
{
    size_t n = strlen(node);
    if (n > AUDIT_MAX_PRINCIPAL)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)node[i] < 0x20 || (unsigned char)node[i] > 0x7e)
            return false;
    return true;
}

int audit_log_open(const audit_options *opts, audit_log **out, ward_err *err)
{
    int rc = 0;
    audit_log *l = NULL;
    audit_resume r;
    *out = NULL;
    if (opts == NULL || opts->dir == NULL || opts->dir[0] == '\0') {
        ward_err_set(err, "audit: no dir given");
        return WARD_EINVAL;
    }
    if ((unsigned)opts->overflow > AUDIT_OVERFLOW_DROP || opts->ring_slots > RING_MAX) {
        ward_err_set(err, "audit: overflow must be deny, block or drop and ring_slots at most %u",
                     RING_MAX);
        return WARD_EINVAL;
    }
    if (opts->node != NULL && !node_ok(opts->node)) {
        ward_err_set(err, "audit: node must be printable ASCII (a SPIFFE ID) of at most %d bytes",
                     AUDIT_MAX_PRINCIPAL);
        return WARD_EINVAL;
    }
    if (opts->segment_age_ms > (uint64_t)INT64_MAX / 1000000) {
        ward_err_set(err, "audit: segment_age_ms too large");
        return WARD_EINVAL;
    }
    if ((l = aligned_alloc(CACHE_LINE, sizeof(*l))) == NULL) /* sizeof: a multiple of 64 */
        return WARD_ENOMEM;
    memset(l, 0, sizeof(*l));
    l->cp_fd = l->seg_fd = l->seal.fd = l->efd = -1;
    ward_buf_init(&l->out);
    ward_buf_init(&l->cp_out);
    l->overflow = opts->overflow;
    l->fsync_ms = opts->fsync_ms != 0 ? opts->fsync_ms : FSYNC_DEFAULT_MS;
    l->sync_delay_ms = opts->sync_delay_ms;
    l->max_producers = opts->max_producers != 0 ? opts->max_producers : PRODUCERS_DEFAULT;
    l->segment_bytes = opts->segment_bytes != 0 ? opts->segment_bytes : SEGMENT_BYTES_DEFAULT;
    l->segment_age_ns = (int64_t)(opts->segment_age_ms != 0 ? opts->segment_age_ms
                                                            : SEGMENT_AGE_DEFAULT_MS) * 1000000;
    l->checkpoint_records =
        opts->checkpoint_records != 0 ? opts->checkpoint_records : CHECKPOINT_RECORDS_DEFAULT;
    uint32_t want = opts->ring_slots != 0 ? opts->ring_slots : RING_DEFAULT;
    for (l->ring_slots = 2; l->ring_slots < want; l->ring_slots *= 2)
        ;
    l->dir = strdup(opts->dir);
    l->node = opts->node != NULL ? strdup(opts->node) : NULL;
    l->node_len = opts->node != NULL ? strlen(opts->node) : 0;
    l->producers = calloc(l->max_producers, sizeof(*l->producers));
    if (l->dir == NULL || (opts->node != NULL && l->node == NULL) || l->producers == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    WARD_TRY(audit_trail_open(l->dir, &r, err));
    l->cp_fd = r.cp_fd;
    l->seg_fd = r.seg_fd;
    WARD_TRY(audit_key_setup(l->dir, opts->key_file, &l->key, l->key_id, err));
    l->seq = r.next_seq;
    memcpy(l->head, r.head, sizeof(l->head));
    l->cp_seq = l->mark_seq = r.cp_seq;
    memcpy(l->head_segment, r.head_segment, sizeof(l->head_segment));
    l->next_first = r.next_seq;
    l->wr_seq = l->synced_seq = r.next_seq - 1;
    memcpy(l->wr_hash, r.head, sizeof(l->wr_hash));
    memcpy(l->synced_hash, r.head, sizeof(l->synced_hash));
    memcpy(l->wr_segment, r.head_segment, sizeof(l->wr_segment));
    memcpy(l->synced_segment, r.head_segment, sizeof(l->synced_segment));
    if (l->seg_fd >= 0) {
        audit_segment_name(l->seg_name, r.seg_first);
        l->seg_first = r.seg_first;
        l->seg_bytes = r.seg_bytes;
        l->seg_records = r.seg_records;
        l->seg_born_ns = r.seg_born_ns;
        check_size(l); /* a segment left full by a crash is sealed before the next record */
        if (l->seg_records > 0 && l->wr_seq > l->cp_seq) {
            /* records a crash left in the page cache: vouched for once synced */
            l->seg_dirty = l->dir_dirty = true;
            l->synced_seq = l->cp_seq;
        }
    }
    l->torn_bytes = r.torn_bytes;
    if ((l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        ward_err_set(err, "audit: eventfd: %s", strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    l->sync_ready = true;
    l->last_sync_ms = l->cp_last_ms = mono_ms();
    WARD_TRY(audit_syncer_new(l->sync_delay_ms, on_sync_done, on_sync_fail, l, &l->syncer, err));

    /* the writer takes no signals: they stay with the threads that handle them */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(&l->writer, NULL, writer_main, l);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        ward_err_set(err, "audit: starting the writer thread: %s", strerror(e));
        rc = WARD_EIO;
        goto fail;
    }
    *out = l;
    return 0;
fail:
    log_free(l);
    return rc;
}

int audit_log_close(audit_log *log, ward_err *err)
{
    if (log == NULL)
        return 0;
    pthread_mutex_lock(&log->mu);
    log->closing = true;
    pthread_cond_broadcast(&log->cv);
    pthread_mutex_unlock(&log->mu);
    kick(log);
    pthread_join(log->writer, NULL);
    int rc = log->close_rc;
    if (rc < 0)
        ward_err_set(err, "%s", log->close_msg);
    log_free(log);
    return rc;
}

/* ---- control and status --------------------------------------------------------------------- */

int audit_log_flush(audit_log *log, uint32_t timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&log->mu);
    uint64_t mine = ++log->flush_req;
    pthread_mutex_unlock(&log->mu);
    kick(log);
    pthread_mutex_lock(&log->mu);
    while (log->flush_done < mine)
        if (pthread_cond_timedwait(&log->cv, &log->mu, &dl) == ETIMEDOUT)
            break;
    bool done = log->flush_done >= mine;
    pthread_mutex_unlock(&log->mu);
    if (atomic_load(&log->failed) != 0)
        return WARD_EIO;
    return done ? 0 : WARD_ELIMIT;
}

int audit_log_status(const audit_log *log, ward_err *err)
{
    int rc = atomic_load_explicit(&log->failed, memory_order_acquire);
    if (rc != 0)
        ward_err_set(err, "%s", log->fail_msg);
    return rc;
}

void audit_log_stats(const audit_log *log, audit_stats *out)
{
    memset(out, 0, sizeof(*out));
    uint32_t n = atomic_load_explicit(&log->n_producers, memory_order_acquire);
    for (uint32_t i = 0; i < n; i++) {
        const audit_producer *p = log->producers[i];
        out->appended += atomic_load_explicit(&p->appended, memory_order_relaxed);
        out->dropped += atomic_load_explicit(&p->dropped, memory_order_relaxed);
        out->refused += atomic_load_explicit(&p->refused, memory_order_relaxed);
    }
    out->written = atomic_load_explicit(&log->written, memory_order_relaxed);
    out->write_errors = atomic_load_explicit(&log->write_errors, memory_order_relaxed);
    out->bytes = atomic_load_explicit(&log->bytes, memory_order_relaxed);
    out->checkpoints = atomic_load_explicit(&log->checkpoints, memory_order_relaxed);
    out->sealed = atomic_load_explicit(&log->sealed, memory_order_relaxed);
    out->torn_bytes = log->torn_bytes;
}

void audit_log_pause(audit_log *log)
{
    pthread_mutex_lock(&log->mu);
    log->pause_req = true;
    pthread_mutex_unlock(&log->mu);
    kick(log);
    pthread_mutex_lock(&log->mu);
    while (!log->paused && !log->closing)
        pthread_cond_wait(&log->cv, &log->mu);
    pthread_mutex_unlock(&log->mu);
}

void audit_log_resume(audit_log *log)
{
    pthread_mutex_lock(&log->mu);
    log->pause_req = false;
    pthread_mutex_unlock(&log->mu);
    kick(log);
}
