/* audit.h - decision records: per-worker lock-free rings drained by one writer thread into a hash-chained, signed trail in DIR */
#ifndef AUDIT_H
#define AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/ward.h"

/*
 * One record per authorization decision, one JSON object per line in the
 * segments of DIR (schema "v":1; the trail's contract is docs/audit.md). A
 * worker thread fills an audit_record with borrowed strings and calls
 * audit_log_append() with its own producer: the record is copied into a slot
 * of that producer's bounded single-producer / single-consumer ring (C11
 * atomics; no lock, no allocation, no disk I/O on that path). One writer
 * thread per log drains every ring, assigns `seq`, renders JSON and appends it
 * with write(2) in batches (group commit), calling fdatasync(2) at most every
 * `fsync_ms` and at close. The writer is the only place that serializes
 * records: it also links each line into the hash chain (prev/hash), rotates
 * and seals segments and writes the signed checkpoints (see "the trail on
 * disk" below), without touching producers.
 *
 * What a record never contains (v1): no header values at all (so no
 * Authorization, Cookie or token can leak), no query string, no bodies.
 *
 * A line (keys in this order; absent strings are null, absent numbers null):
 *   {"v":1,"seq":12,"ts":"2024-05-01T12:34:56.123456Z",
 *    "id":"3f9c...32 hex...","node":"spiffe://td/ns/x/sa/proxy",
 *    "direction":"inbound","decision":"deny","policy":"shop/payments","rule":2,
 *    "reason":"...","audit":false,
 *    "dry_run":{"decision":"allow","policy":"ns/name","rule":0}|null,
 *    "source":{"principal":"spiffe://...","ip":"10.0.0.7","port":41234},
 *    "destination":{"service":"payments","principal":"spiffe://...","port":8443},
 *    "request":{"method":"GET","host":"payments","path":"/v1/items","protocol":"HTTP/1.1"},
 *    "response":{"status":403}|null,
 *    "bundle":"rev-7","trace_id":"...","latency_ns":1830,
 *    "peer_cert_sha256":"64 hex"|null,
 *    "truncated":["request.path"],          <- only when a field was cut
 *    "prev":"64 hex","hash":"64 hex"}
 * A gap record (overflow DROP, see below) keeps seq contiguous:
 *   {"v":1,"seq":13,"ts":"...","node":"...","gap":K,"reason":"...","prev":"...","hash":"..."}
 *
 * Strings are JSON-escaped: '"' and '\\' escaped, control bytes (and DEL) as
 * \u00XX, NUL bytes inside slices as \u0000, U+2028/U+2029 as escapes, each
 * byte of invalid UTF-8 (overlong, surrogate, > U+10FFFF, cut sequence) as
 * \ufffd. Output is always valid UTF-8 JSON, one line per record.
 */

/* ---- records ---------------------------------------------------------------- */

/* A borrowed byte slice; ptr == NULL means absent (JSON null). May contain
 * NUL bytes; need not be NUL-terminated. */
typedef struct audit_str {
    const char *ptr;
    size_t len;
} audit_str;

/* A C string as a slice (NULL stays absent). */
static inline audit_str audit_cstr(const char *s)
{
    audit_str r = {s, s != NULL ? strlen(s) : 0};
    return r;
}

/* Same values as authz_verdict, so (audit_verdict)d.decision is a valid cast. */
typedef enum audit_verdict { AUDIT_DENY = 0, AUDIT_ALLOW = 1 } audit_verdict;
typedef enum audit_direction { AUDIT_INBOUND = 0, AUDIT_OUTBOUND = 1 } audit_direction;

/* A decision id: 128 bits as 32 lowercase hex digits (+ NUL). */
#define AUDIT_ID_HEX 32
typedef struct audit_id {
    char hex[AUDIT_ID_HEX + 1];
} audit_id;

/* Per-field maxima in bytes; a longer value is cut (at a UTF-8 character
 * boundary) and named in the record's "truncated" list. Besides these, a
 * record's strings share one slot of AUDIT_SLOT_DATA bytes, filled in the
 * order below (decision and identity fields first, client-supplied request
 * fields last), so a hostile request can never push out who/what decided. */
#define AUDIT_MAX_POLICY 320     /* policy, dry_run.policy ("ns/name") */
#define AUDIT_MAX_REASON 512
#define AUDIT_MAX_BUNDLE 128
#define AUDIT_MAX_CERT_SHA256 64 /* hex */
#define AUDIT_MAX_PRINCIPAL 2048 /* source.principal, destination.principal */
#define AUDIT_MAX_IP 64
#define AUDIT_MAX_SERVICE 256
#define AUDIT_MAX_METHOD 32
#define AUDIT_MAX_PROTOCOL 16
#define AUDIT_MAX_HOST 256
#define AUDIT_MAX_TRACE_ID 128
#define AUDIT_MAX_PATH 2048
#define AUDIT_SLOT_SIZE 4096 /* bytes per ring slot, header included */
#define AUDIT_SLOT_DATA 3840 /* of which the strings of one record */

/* What the request path knows about one decision. Start from
 * audit_record_init() (numbers absent, strings absent), then fill what is
 * known. Nothing is retained after audit_log_append() returns. */
typedef struct audit_record {
    int64_t ts_ns;  /* decision time, ns since the Unix epoch (CLOCK_REALTIME);
                       0 = taken by audit_log_append */
    audit_id id;    /* from audit_producer_id_next(); empty ("") = assigned by append */
    audit_direction direction;
    audit_verdict decision;
    audit_str policy; /* "ns/name" or absent */
    int rule;         /* index in the policy, -1 = null */
    audit_str reason;
    bool audit;       /* marked by an AUDIT policy */
    bool has_dry_run; /* false: "dry_run":null */
    audit_verdict dry_run_decision;
    audit_str dry_run_policy;
    int dry_run_rule; /* -1 = null */
    audit_str source_principal; /* SPIFFE ID of the peer */
    audit_str source_ip;
    int source_port; /* -1 = null */
    audit_str destination_service;
    audit_str destination_principal;
    int destination_port; /* -1 = null */
    audit_str method;
    audit_str host;
    audit_str path; /* as normalized by the proxy; never the query */
    audit_str protocol; /* "HTTP/1.1" */
    int status; /* response status; -1 = "response":null (none sent) */
    audit_str bundle;   /* policy revision that decided */
    audit_str trace_id;
    int64_t latency_ns; /* decision latency; -1 = null */
    audit_str peer_cert_sha256; /* hex SHA-256 of the peer's leaf certificate, when known */
} audit_record;

/* All strings absent, rule/dry_run_rule/ports/status/latency -1, ts 0, id "". */
void audit_record_init(audit_record *rec);

/* ns since the Unix epoch, UTC (clock_gettime(CLOCK_REALTIME); no syscall via vDSO). */
int64_t audit_now_ns(void);

/* ---- the log ---------------------------------------------------------------- */

/* When a producer's ring is full. The default (zero) is DENY: fail closed. */
typedef enum audit_overflow {
    /* append returns WARD_ELIMIT at once; the caller must deny the request
     * (and may answer 503). No record is ever lost. */
    AUDIT_OVERFLOW_DENY = 0,
    /* append waits (spin, then sleeps of ~50 us) until the writer frees a
     * slot. No record is lost; requests slow down to the disk's pace. */
    AUDIT_OVERFLOW_BLOCK = 1,
    /* an allow record is dropped: append returns WARD_ELIMIT (the caller may
     * still serve the request) and the drop is counted; a deny record is never
     * dropped: append blocks for it as with BLOCK. The writer puts a gap
     * record {"gap":K} before the producer's next record (or at close), so
     * every loss is on record and seq stays contiguous. */
    AUDIT_OVERFLOW_DROP = 2,
} audit_overflow;

/* "deny", "block", "drop" (for configuration). */
int audit_overflow_parse(const char *s, size_t len, audit_overflow *out);
const char *audit_overflow_name(audit_overflow o);

typedef struct audit_options {
    const char *dir;  /* required; created 0700 (with missing parents) if absent */
    const char *node; /* the proxy's SPIFFE ID, written in every record and signed in
                         every checkpoint: printable ASCII, at most AUDIT_MAX_PRINCIPAL
                         bytes; NULL = null */
    audit_overflow overflow;
    uint32_t ring_slots;    /* per producer, rounded up to a power of two (2..2^20);
                               0 = 512 (AUDIT_SLOT_SIZE bytes each: 2 MiB) */
    uint32_t fsync_ms;      /* fdatasync at most this often; 0 = 100 */
    uint32_t max_producers; /* 0 = 512 */
    /* the trail on disk (see below) */
    uint64_t segment_bytes;      /* seal a segment once it holds this much; 0 = 64 MiB */
    uint64_t segment_age_ms;     /* ... or once it is this old (with a record); 0 = 1 h */
    uint32_t checkpoint_records; /* a checkpoint at least every this many records; 0 = 10,000
                                    (and at least every second while records come) */
    const char *key_file; /* Ed25519 private key (PEM PKCS#8) signing checkpoints; NULL =
                             DIR/checkpoint.key, generated (0600) when absent */
} audit_options;

/* Zero everything, then the defaults above. */
void audit_options_init(audit_options *opts);

typedef struct audit_log audit_log;
typedef struct audit_producer audit_producer;

/* Opens the trail in DIR and starts the writer thread. DIR must be a folder
 * writable by this process; anything else is refused with a message naming
 * it, as are a symbolic link in the place of any file of the trail and a
 * trail another process writes (an exclusive flock on checkpoints.jsonl).
 * The checkpoint key is loaded (or DIR/checkpoint.key generated) and
 * DIR/checkpoint.pub written when missing or different. An existing trail
 * is continued (crash recovery, docs/audit.md): the active segment is
 * re-read and every line checked (shape, hash, seq, prev); a torn or
 * unverifiable last line, left by a crash in the middle of a write, is cut
 * off (audit_stats.torn_bytes says how much), while a bad line before the
 * last one, a missing link between segments, or a trail that ends below its
 * last checkpoint (or whose record there has another hash) is tampering:
 * refused with WARD_EINVAL naming the file and line. seq and the chain go on
 * from the last good record; the first record of a new trail has seq 1 and
 * a prev of 64 zeros. */
int audit_log_open(const audit_options *opts, audit_log **out, ward_err *err);

/* Drains every ring, writes (a last try even after a failure), fdatasyncs,
 * joins the writer and frees the log and all its producers. Producers must no
 * longer be in use. Returns 0, or WARD_EIO when the log failed at any time or
 * records could not be written (err, may be NULL: how many and why). */
int audit_log_close(audit_log *log, ward_err *err);

/* A producer for one thread (one per worker, at setup; takes a lock and
 * allocates its ring). Producers live until audit_log_close. WARD_ELIMIT
 * beyond max_producers. */
int audit_log_producer_new(audit_log *log, audit_producer **out);

/* Next decision id of this producer: a random 64-bit producer prefix and a
 * keyed bijective mix of a counter (unique per producer, unpredictable; no
 * syscall). Use it when the id is needed before the record is appended (for
 * example in a deny response); otherwise append assigns one. */
void audit_producer_id_next(audit_producer *p, audit_id *out);

/* The hot path: copies rec into p's ring. Never blocks on disk, never locks,
 * never allocates; its only system call is a rare write(2) to an eventfd that
 * wakes a napping writer once the ring is half full. Returns
 *   0            the record is queued (the writer will write it);
 *   WARD_ELIMIT  the ring is full (overflow DENY, or DROP for an allow record);
 *   WARD_EIO     the writer has failed (see audit_log_status); in every
 *                overflow mode, so the caller fails closed;
 *   WARD_EINVAL  p does not belong to log.
 * Only the thread that owns p may call it. */
int audit_log_append(audit_log *log, audit_producer *p, const audit_record *rec);

/* A record whose content is only complete later (the response status of an
 * allowed request), but whose place must be certain now, before the request
 * is served. audit_log_reserve applies the overflow policy as append would
 * for a record with this decision and, on 0, promises one slot: the matching
 * audit_log_append_reserved cannot then be refused for lack of space (only
 * WARD_EIO if the writer failed in between). audit_log_unreserve gives a
 * promised slot back unused. Same thread rules as append. */
int audit_log_reserve(audit_log *log, audit_producer *p, audit_verdict decision);
int audit_log_append_reserved(audit_log *log, audit_producer *p, const audit_record *rec);
void audit_log_unreserve(audit_producer *p);

/* Waits until every record appended before the call is written and
 * fdatasynced. WARD_ELIMIT when timeout_ms passes first (also while paused),
 * WARD_EIO when the writer has failed. */
int audit_log_flush(audit_log *log, uint32_t timeout_ms);

/* 0 while healthy. After a write or fdatasync failure (disk full, EIO, quota):
 * WARD_EIO, with the first error's message in err
 * ("DIR/segment-00000000000000000001.jsonl: write: No space left on device").
 * Sticky for the life of the log: the writer keeps retrying the records it
 * holds (every second, and at close) so none accepted is lost if space comes
 * back, but appends keep failing until the proxy restarts. Lock-free; for
 * /ready. err may be NULL. */
int audit_log_status(const audit_log *log, ward_err *err);

/* Counters (monotonic; relaxed atomic loads, lock-free; for /metrics). */
typedef struct audit_stats {
    uint64_t appended;     /* records accepted by append */
    uint64_t written;      /* records (gap records included) written to the file */
    uint64_t dropped;      /* allow records dropped under overflow DROP */
    uint64_t refused;      /* appends refused (WARD_ELIMIT under DENY, WARD_EIO) */
    uint64_t write_errors; /* failed write/fdatasync calls */
    uint64_t bytes;        /* bytes of records written */
    uint64_t checkpoints;  /* checkpoints written */
    uint64_t sealed;       /* segments sealed */
    uint64_t torn_bytes;   /* cut off the active segment at open (a crash's torn last line) */
} audit_stats;

void audit_log_stats(const audit_log *log, audit_stats *out);

/* Test and maintenance hook: pause stops the writer from draining rings (it
 * returns once the writer has finished its current batch and stopped), so
 * rings fill up and the overflow policy can be observed; resume lets it go
 * on. Records are never lost by pausing. */
void audit_log_pause(audit_log *log);
void audit_log_resume(audit_log *log);

/* ---- the trail on disk (writer side; the contract is docs/audit.md) -------------------- */

/* DIR holds:
 *   segment-<first seq, 20 digits>.jsonl  records; the newest is the active
 *       one (0600), the others are sealed (0400): a segment is sealed once it
 *       holds segment_bytes or is segment_age_ms old, after a checkpoint for
 *       its last record; the chain runs on through every segment;
 *   checkpoints.jsonl   one signed checkpoint per line; the writer holds an
 *       exclusive flock(2) on it while the log is open;
 *   checkpoint.pub      the public key (PEM SubjectPublicKeyInfo);
 *   checkpoint.key      the private key (PEM PKCS#8, 0600), unless key_file.
 * A record line ends ,"prev":"P","hash":"H"} where H is the SHA-256 (hex) of
 * the line's bytes up to and including P's closing quote. A checkpoint:
 *   {"v":1,"seq":N,"head":"<hash of record N>","ts":"<RFC 3339, us>",
 *    "node":"..."|null,"segment":"<segment holding N>","key":"<key id>",
 *    "sig":"<base64 (RFC 4648, padded) of the 64-byte Ed25519 signature>"}
 * over the bytes of audit_checkpoint_message(). One is written at least
 * every second while records come, every checkpoint_records records, when a
 * segment is sealed and at close; always after the records it vouches for
 * are fdatasynced. */
#define AUDIT_SEGMENT_PREFIX "segment-"
#define AUDIT_SEGMENT_SUFFIX ".jsonl"
#define AUDIT_SEGMENT_DIGITS 20
#define AUDIT_SEGMENT_NAME_MAX 36 /* "segment-" + 20 digits + ".jsonl" + NUL fit */
#define AUDIT_CHECKPOINTS_FILE "checkpoints.jsonl"
#define AUDIT_PUBLIC_KEY_FILE "checkpoint.pub"
#define AUDIT_PRIVATE_KEY_FILE "checkpoint.key"
#define AUDIT_HASH_HEX 64   /* digits of prev, hash and head */
#define AUDIT_KEY_ID_HEX 16 /* digits of a checkpoint's "key" */
#define AUDIT_CHECKPOINT_MAGIC "ward-audit-checkpoint/1"

/* "segment-00000000000000001001.jsonl" for first_seq 1001. */
void audit_segment_name(char out[AUDIT_SEGMENT_NAME_MAX], uint64_t first_seq);
/* The first seq a segment's name gives; WARD_EINVAL if name is not exactly
 * a segment's (prefix, 20 digits, suffix; seq >= 1). */
int audit_segment_name_parse(const char *name, uint64_t *first_seq);

/* Appends the bytes a checkpoint signs (each line ending in '\n'):
 *   ward-audit-checkpoint/1 \n node \n seq (decimal) \n head \n ts \n
 * node NULL (a log without node, "node":null) gives an empty line; head is
 * the AUDIT_HASH_HEX digits and ts the "ts" string of the checkpoint, both as
 * written (without quotes). */
int audit_checkpoint_message(ward_buf *out, const char *node, size_t node_len, uint64_t seq,
                             const char *head, const char *ts, size_t ts_len);

/* 0 when sig_b64 (a checkpoint's "sig") is a valid Ed25519 signature of msg
 * by pub, WARD_EINVAL otherwise (malformed base64 included). */
int audit_checkpoint_sig_verify(EVP_PKEY *pub, const char *msg, size_t msg_len,
                                const char *sig_b64, size_t sig_len);

/* A checkpoint's "key": the first AUDIT_KEY_ID_HEX hex digits of the SHA-256
 * of the raw 32-byte Ed25519 public key (of key, private or public), NUL-
 * terminated. WARD_EINVAL if key is not Ed25519. */
int audit_key_id(EVP_PKEY *key, char out[AUDIT_KEY_ID_HEX + 1]);

/* Loads an Ed25519 key from a PEM file: a private key (PKCS#8) or a public
 * one (SubjectPublicKeyInfo, as checkpoint.pub). *out is the caller's
 * (EVP_PKEY_free). WARD_ENOENT if the file does not exist, WARD_EINVAL if
 * it holds no Ed25519 key, WARD_EIO if it cannot be read. */
int audit_key_load(const char *path, EVP_PKEY **out, ward_err *err);
int audit_public_key_load(const char *path, EVP_PKEY **out, ward_err *err);

/* Generates an Ed25519 key into path (PEM PKCS#8, 0600), which must not
 * exist (it is never replaced), crash-safe (a temporary file, fsynced, then
 * linked into place). out may be NULL; else the key is the caller's. */
int audit_key_generate(const char *path, EVP_PKEY **out, ward_err *err);

#endif
