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
 * with write(2) in batches (group commit). A syncer thread fdatasyncs what was
 * written every `fsync_ms` (and at close), so the writer goes on draining the
 * rings while the disk syncs. The writer is the only place that serializes
 * records: it also links each line into the hash chain (prev/hash), rotates
 * and seals segments and writes the signed checkpoints, each only for records
 * already synced (see "the trail on disk" below), without touching producers.
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
#define AUDIT_MAX_HEADERS 2048 /* request.headers, all pairs together */
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
    /* a TCP connection's record, written when it ends: "connection":{bytes_in,
     * bytes_out, duration_ms} (absent from other records) */
    bool has_connection;
    uint64_t bytes_in, bytes_out; /* from the client to the upstream, and back */
    int64_t duration_ns;          /* accepted .. closed */
    audit_str peer_cert_sha256; /* hex SHA-256 of the peer's leaf certificate, when known */
    /* request fields the operator chose to record, as "name\0value\0" pairs
     * (names lowercased): "request":{..., "headers":{name: value}}; absent:
     * no "headers" key. The values of authorization, proxy-authorization,
     * cookie and set-cookie are always written as "[redacted]". */
    audit_str headers;
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
                               0 = 1024. The ring has room for that many records
                               of AUDIT_SLOT_SIZE bytes (4 MiB by default) but
                               packs them by size and starts over while the
                               writer keeps up: tens of KiB are resident */
    uint32_t fsync_ms;      /* fdatasync at most this often; 0 = 100 */
    uint32_t max_producers; /* 0 = 512 */
    /* the trail on disk (see below) */
    uint64_t segment_bytes;      /* seal a segment once it holds this much; 0 = 64 MiB */
    uint64_t segment_age_ms;     /* ... or once it is this old (with a record); 0 = 1 h */
    uint32_t checkpoint_records; /* a checkpoint at least every this many records; 0 = 10,000
                                    (and at least every second while records come) */
    const char *key_file; /* Ed25519 private key (PEM PKCS#8) signing checkpoints; NULL =
                             DIR/checkpoint.key, generated (0600) when absent */
    /* Test hook (like audit_log_pause): every fdatasync/fsync of the trail
     * takes this many ms longer (the syncer sleeps first), as on a busy disk.
     * 0 (the default) in production. */
    uint32_t sync_delay_ms;
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

/* ---- identity events (wardd) ------------------------------------------------------------ */

/* The identity service's events (an SVID issued, a join token redeemed, a
 * refusal, a CA rotated) are records of the same trail: same ring, seq,
 * chain, checkpoints and readers, a different body (docs/audit.md,
 * "Identity-event records"). They carry "event" in place of the decision
 * keys:
 *   {"v":1,"seq":N,"ts":"...","id":"...","node":"spiffe://td/ward/server",
 *    "event":"svid.issued","outcome":"success","subject":"spiffe://td/ns/x/sa/y",
 *    "serial":"hex","not_after":"2026-11-26T01:00:00Z","via":"attest",
 *    "token_id":"16 hex","audience":["..."],"key_id":"...","bundle_sequence":7,
 *    "source":{"principal":"spiffe://...","ip":"127.0.0.1","port":41234,"uid":null},
 *    "response":{"status":200},"error":null,"reason":null,
 *    "truncated":["subject"],             <- only when a field was cut
 *    "prev":"...","hash":"..."}
 * Every key is always there (null when absent). Never a secret: a join
 * token only ever appears as token_id (a prefix of its SHA-256). An event is
 * never dropped: under overflow DROP it waits for room as a deny record does. */
#define AUDIT_MAX_EVENT 64     /* event, via, error */
#define AUDIT_MAX_SERIAL 128   /* serial, token_id, key_id */
#define AUDIT_MAX_AUDIENCE 2048 /* all audiences together */

typedef enum audit_outcome { AUDIT_FAILURE = 0, AUDIT_SUCCESS = 1 } audit_outcome;

typedef struct audit_event {
    int64_t ts_ns; /* 0 = now */
    audit_id id;   /* empty = assigned by append */
    audit_str event; /* required: "svid.issued", "token.refused", ... */
    audit_outcome outcome;
    audit_str subject;  /* the SPIFFE ID the event is about (issued, asked for, CA's TD) */
    audit_str serial;   /* of the certificate issued (lowercase hex) */
    int64_t not_after_ns; /* its expiry (certificate, JWT, token); -1 = null */
    audit_str via;      /* how: "attest", "renew", "server", "admin", ... */
    audit_str token_id; /* the first 16 hex digits of SHA-256(join token); never the token */
    audit_str audience; /* JWT audiences, separated by NUL bytes (rendered as an array) */
    audit_str key_id;   /* a CA's key id (ca.* events) */
    int64_t bundle_sequence; /* the bundle's spiffe_sequence; -1 = null */
    audit_str source_principal; /* the client's SPIFFE ID, when it authenticated with one */
    audit_str source_ip;
    int source_port;    /* -1 = null */
    int64_t source_uid; /* a Unix-socket client's uid; -1 = null */
    int status;         /* HTTP status answered; -1 = "response":null */
    audit_str error;    /* the refusal's error code ("token_used") */
    audit_str reason;   /* why, in words */
} audit_event;

/* All strings absent, numbers -1, outcome FAILURE, ts 0, id "". */
void audit_event_init(audit_event *ev);

/* As audit_log_append / audit_log_append_reserved, for an identity event
 * (reserve its slot with audit_log_reserve(log, p, AUDIT_DENY)). WARD_EINVAL
 * without ev->event. */
int audit_log_append_event(audit_log *log, audit_producer *p, const audit_event *ev);
int audit_log_append_event_reserved(audit_log *log, audit_producer *p, const audit_event *ev);

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

/* ==== reading a trail: verify.c, query.c, export.c (wardctl audit verify|export|query) ====
 * docs/audit.md is the contract: segment-<20-digit seq>.jsonl files whose
 * records chain by prev/hash, and checkpoints.jsonl signed with Ed25519. */

#include <stdio.h>

/* Called now and then while a trail is read (about every 64 Ki lines and at
 * each segment): bytes of the segments read so far, their total size when the
 * read began, and the lines read. */
typedef void (*audit_progress_cb)(uint64_t done_bytes, uint64_t total_bytes, uint64_t lines,
                                  void *data);

/* ---- segments, in seq order -------------------------------------------------------- */

/* Streams the complete lines of DIR's segment-<20 digits>.jsonl files in seq
 * order with large buffered reads (constant memory). */
typedef struct audit_reader audit_reader;

/* WARD_ENOENT: DIR missing or without segments (err says which); WARD_EIO. */
int audit_reader_open(const char *dir, audit_reader **out, ward_err *err);
void audit_reader_free(audit_reader *r);
/* 1: *line and *len hold the next line without its '\n' (valid until the next
 * call); 0: the end; WARD_EIO. The last line of the last segment, when it has
 * no '\n' (a write torn by a crash), is not returned: see audit_reader_torn. */
int audit_reader_next(audit_reader *r, const char **line, size_t *len, ward_err *err);
/* Where the last line returned is: its segment's file name and 1-based line. */
const char *audit_reader_file(const audit_reader *r);
uint64_t audit_reader_line(const audit_reader *r);
size_t audit_reader_segments(const audit_reader *r);
void audit_reader_progress(const audit_reader *r, uint64_t *done_bytes, uint64_t *total_bytes);
/* True once the end was reached and the last segment ended in a torn line. */
bool audit_reader_torn(const audit_reader *r);

/* ---- verification (verify.c) ---------------------------------------------------------- */

/* The kinds of docs/audit.md's verification table. */
typedef enum audit_finding_kind {
    AUDIT_FINDING_MODIFIED = 1,
    AUDIT_FINDING_DELETED,
    AUDIT_FINDING_REORDERED,
    AUDIT_FINDING_TRUNCATED,
    AUDIT_FINDING_FORGED_CHECKPOINT,
} audit_finding_kind;

/* "modified", "deleted", "reordered", "truncated", "forged checkpoint". */
const char *audit_finding_kind_name(audit_finding_kind k);

typedef struct audit_finding {
    audit_finding_kind kind;
    char file[64]; /* "segment-....jsonl" (the one at fault or missing) or "checkpoints.jsonl" */
    uint64_t line; /* 1-based line in file; 0 = no line (a missing file) */
    uint64_t seq;  /* the first bad (or missing) record; for checkpoints their seq */
    char detail[400];
} audit_finding;

#define AUDIT_VERIFY_MAX_FINDINGS 16
#define AUDIT_VERIFY_MAX_NOTES    6

typedef struct audit_verify_options {
    const char *dir;
    const char *key_file;       /* Ed25519 public key (PEM); NULL = DIR/checkpoint.pub */
    audit_progress_cb progress; /* may be NULL */
    void *data;
} audit_verify_options;

typedef struct audit_verify_report {
    uint64_t records;     /* records read and checked (gap records included) */
    uint64_t gaps;        /* gap records among them */
    uint64_t segments;    /* segment files */
    uint64_t checkpoints; /* lines of checkpoints.jsonl */
    uint64_t bytes;       /* bytes of records read */
    uint64_t first_seq, last_seq;
    uint64_t checkpoint_seq; /* highest seq vouched for by a valid checkpoint; 0 = none */
    bool key_from_dir;       /* the key was DIR/checkpoint.pub (no independent key) */
    bool have_key;
    char key_id[17];    /* of the key used (first 16 hex of SHA-256 of its 32 bytes) */
    double seconds;     /* wall clock */
    double cpu_seconds; /* CPU time of the process meanwhile */
    /* Every finding, sorted by seq: findings[0] names the first bad record.
     * Checking the chain stops at the first bad record; every checkpoint's
     * signature is checked. n_findings > AUDIT_VERIFY_MAX_FINDINGS means some
     * were counted but not kept. */
    size_t n_findings;
    audit_finding findings[AUDIT_VERIFY_MAX_FINDINGS];
    /* Remarks that are not tampering (a torn last line, no checkpoints yet). */
    size_t n_notes;
    char notes[AUDIT_VERIFY_MAX_NOTES][256];
} audit_verify_report;

/* Reads every segment and checkpoint of opts->dir; the outcome is in *out
 * (n_findings == 0: verified). Returns 0 whenever the trail could be read,
 * tampered or not; WARD_ENOENT / WARD_EIO / WARD_EINVAL (err) when the
 * folder, a file or the key cannot be read: no verdict. */
int audit_verify(const audit_verify_options *opts, audit_verify_report *out, ward_err *err);

/* ---- records as fields, filters, counts (query.c) ------------------------------------- */

/* The fields a record may have, by their dotted names ("source.principal"). */
typedef enum audit_attr {
    AUDIT_A_V,
    AUDIT_A_SEQ,
    AUDIT_A_TS,
    AUDIT_A_ID,
    AUDIT_A_NODE,
    AUDIT_A_DIRECTION,
    AUDIT_A_DECISION,
    AUDIT_A_POLICY,
    AUDIT_A_RULE,
    AUDIT_A_REASON,
    AUDIT_A_AUDIT,
    AUDIT_A_DRY_RUN,
    AUDIT_A_DRY_RUN_DECISION,
    AUDIT_A_DRY_RUN_POLICY,
    AUDIT_A_DRY_RUN_RULE,
    AUDIT_A_SOURCE_PRINCIPAL,
    AUDIT_A_SOURCE_IP,
    AUDIT_A_SOURCE_PORT,
    AUDIT_A_DESTINATION_SERVICE,
    AUDIT_A_DESTINATION_PRINCIPAL,
    AUDIT_A_DESTINATION_PORT,
    AUDIT_A_REQUEST_METHOD,
    AUDIT_A_REQUEST_HOST,
    AUDIT_A_REQUEST_PATH,
    AUDIT_A_REQUEST_PROTOCOL,
    AUDIT_A_RESPONSE,
    AUDIT_A_RESPONSE_STATUS,
    AUDIT_A_BUNDLE,
    AUDIT_A_TRACE_ID,
    AUDIT_A_LATENCY_NS,
    AUDIT_A_PEER_CERT_SHA256,
    AUDIT_A_TRUNCATED,
    AUDIT_A_GAP,
    AUDIT_A_EVENT,
    /* identity events (audit_event) */
    AUDIT_A_OUTCOME,
    AUDIT_A_SUBJECT,
    AUDIT_A_SERIAL,
    AUDIT_A_NOT_AFTER,
    AUDIT_A_VIA,
    AUDIT_A_TOKEN_ID,
    AUDIT_A_AUDIENCE,
    AUDIT_A_KEY_ID,
    AUDIT_A_BUNDLE_SEQUENCE,
    AUDIT_A_SOURCE_UID,
    AUDIT_A_ERROR,
    AUDIT_A_PREV,
    AUDIT_A_HASH,
    AUDIT_A_CONNECTION,
    AUDIT_A_CONNECTION_BYTES_IN,
    AUDIT_A_CONNECTION_BYTES_OUT,
    AUDIT_A_CONNECTION_DURATION_MS,
    AUDIT_A_REQUEST_HEADERS,
    AUDIT_A_COUNT
} audit_attr;

/* "source.principal" -> AUDIT_A_SOURCE_PRINCIPAL; -1 if unknown. */
int audit_attr_lookup(const char *name, size_t len);
const char *audit_attr_name(audit_attr a);

typedef enum audit_vtype {
    AUDIT_V_ABSENT = 0,
    AUDIT_V_NULL,
    AUDIT_V_STRING,
    AUDIT_V_NUMBER,
    AUDIT_V_TRUE,
    AUDIT_V_FALSE,
    AUDIT_V_OBJECT,
    AUDIT_V_ARRAY
} audit_vtype;

/* One value as it stands in the line: a string without its quotes, still
 * JSON-escaped (escaped says whether it holds a backslash); anything else as
 * its JSON text. */
typedef struct audit_value {
    audit_vtype type;
    bool escaped;
    const char *ptr;
    size_t len;
} audit_value;

/* A record line split into its fields (pointers into the line). */
typedef struct audit_view {
    const char *line;
    size_t len;
    audit_value f[AUDIT_A_COUNT];
} audit_view;

/* 0, or WARD_ESYNTAX when the line is not one JSON object (depth <= 16). Keys
 * it does not know are skipped. */
int audit_view_parse(audit_view *v, const char *line, size_t len);
/* Appends the value as text: strings unescaped (UTF-8; a lone surrogate as
 * U+FFFD), numbers and booleans as written, nothing for null or absent. */
int audit_value_text(const audit_value *val, ward_buf *out);
/* The record's ts in ns since the epoch; WARD_EINVAL if absent or not RFC 3339. */
int audit_view_time(const audit_view *v, int64_t *ns);

/* RFC 3339 ("2026-11-26T02:03:14Z", fraction and offset optional, or a date
 * alone), "now", or a duration back from now_ns ("90s", "15m", "1h", "1h30m",
 * "7d"). */
int audit_time_parse(const char *s, int64_t now_ns, int64_t *out_ns, ward_err *err);

/* Which records to take: --since (inclusive), --until (exclusive) and
 * --where conditions: every key given must match (AND); several values of
 * one key are alternatives (OR). */
typedef struct audit_filter audit_filter;

int audit_filter_new(audit_filter **out);
void audit_filter_free(audit_filter *f);
/* "key=value" (equal), "key!=value" (not equal), a value ending in '*' is a
 * prefix, an empty value means null or absent. WARD_EINVAL (err) for an
 * unknown key or a missing '='. */
int audit_filter_where(audit_filter *f, const char *expr, ward_err *err);
/* INT64_MIN / INT64_MAX: no bound. A record without a valid ts never matches a bound. */
void audit_filter_range(audit_filter *f, int64_t since_ns, int64_t until_ns);
bool audit_filter_match(const audit_filter *f, const audit_view *v);

/* Calls cb for every record of DIR that matches filter (NULL: all), in seq
 * order; a negative return from cb stops the scan with that code. Lines that
 * are not JSON objects are counted in malformed and skipped. */
typedef int (*audit_record_cb)(const audit_view *v, void *data);

typedef struct audit_scan_options {
    const char *dir;
    const audit_filter *filter;
    audit_progress_cb progress;
    void *data;
    /* cb only uses v->line, v->len (and ts): without --where conditions lines
     * are not split into fields (a line is then taken as a record when it
     * begins {"v":1,"seq":N,"ts":"..." and ends with '}') */
    bool lines_only;
} audit_scan_options;

typedef struct audit_scan_stats {
    uint64_t lines, matched, malformed, segments, bytes;
    char first_malformed[128];   /* "segment-...jsonl:LINE" */
    bool torn;                   /* a torn last line was left out */
    double seconds, cpu_seconds; /* wall clock, CPU time of the process */
} audit_scan_stats;

int audit_scan(const audit_scan_options *o, audit_record_cb cb, void *cb_data, audit_scan_stats *st,
               ward_err *err);

/* Counts of records per value of one key (--count-by). */
typedef struct audit_count {
    const char *value; /* NUL-terminated text; NULL: null or absent */
    size_t len;
    uint64_t n;
} audit_count;

typedef struct audit_counter audit_counter;

int audit_counter_new(audit_attr attr, audit_counter **out);
void audit_counter_free(audit_counter *c);
int audit_counter_add(audit_counter *c, const audit_view *v);
/* The values, most frequent first (ties by value, bytewise; null last). Valid
 * until the counter changes or is freed. */
int audit_counter_sorted(audit_counter *c, const audit_count **out, size_t *n);

/* ---- export formats (export.c) -------------------------------------------------------- */

typedef enum audit_format {
    AUDIT_FORMAT_JSONL, /* the lines as stored */
    AUDIT_FORMAT_CSV,   /* RFC 4180 (CRLF), a header row, the columns of docs/audit.md */
    AUDIT_FORMAT_OCSF,  /* OCSF API Activity (6003) events, one JSON object per line */
    AUDIT_FORMAT_CEF,   /* ArcSight CEF:0 lines */
} audit_format;

#define AUDIT_OCSF_VERSION    "1.1.0" /* the OCSF schema version events are written in */
#define AUDIT_PRODUCT_VERSION "0.1.0"

/* "jsonl", "csv", "ocsf", "cef". */
int audit_format_parse(const char *s, audit_format *out);
const char *audit_format_name(audit_format f);

/* Appends what comes before the first record (the CSV header row). */
int audit_export_header(audit_format f, ward_buf *out);
/* Appends one record in format f: 1 written, 0 left out (gap records and
 * CA rotation events (ca.*) have no OCSF form), or an error. Identity events
 * are OCSF Authentication (3002) or Account Change (3001) events (docs/audit.md). */
int audit_export_record(audit_format f, const audit_view *v, ward_buf *out);

typedef struct audit_export_stats {
    audit_scan_stats scan;
    uint64_t exported, left_out;
    uint64_t out_bytes;
} audit_export_stats;

/* Streams the records of o->dir matching o->filter to out in format f. */
int audit_export(const audit_scan_options *o, audit_format f, FILE *out, audit_export_stats *st,
                 ward_err *err);

/* ==== end of reading ==== */

/* ==== shipping: the syslog sink (sink.c) ====
 * Ships every record of a trail to a remote collector as RFC 5424 syslog
 * messages over TCP with octet-counting framing (RFC 6587), optionally over
 * TLS (1.2 or later, the collector verified against a CA file, an optional
 * client certificate). The local trail stays the source of truth: the sink
 * runs on its own thread and only reads the segment files (never the rings),
 * following the active segment as it grows and moving on to the next one; a
 * slow or absent collector never touches the request path.
 *
 * Delivery is at least once. A record counts as delivered once the
 * collector's TCP has acknowledged its bytes (SIOCOUTQ); the last delivered
 * record is kept in DIR/sink-<name>.cursor ({"v":1,"seq":N,"hash":"..."},
 * written atomically at most every cursor_ms or cursor_records records).
 * When a connection breaks, the sink goes back replay_bytes before the last
 * acknowledged byte (what the collector may have received but not processed)
 * and re-sends from there after reconnecting with backoff; after a restart it
 * resumes after the cursor. Duplicates are possible, loss is not: every
 * message carries the record's seq and hash in its structured data.
 *
 * One message per record (one line of docs/audit.md):
 *   <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [ward@32473 seq="N" id="..."
 *   decision="..." hash="..."] BOM{"v":1,"seq":N,...}
 * PRI = facility * 8 + severity: notice (5) for allow, warning (4) for deny,
 * error (3) for a gap record (records were lost), notice for identity events.
 * TIMESTAMP is the record's ts ("-" if it has none), MSGID "decision", "gap"
 * or "event". The SD element holds seq, then id, decision, gap and event
 * when the record has them, then hash; PARAM-VALUEs escape '"', '\' and ']'
 * with a backslash (RFC 5424 section 6.3.3). MSG is the record line as
 * stored, UTF-8, preceded by the BOM (EF BB BF) as RFC 5424 MSG-UTF8 asks. */

#define AUDIT_SYSLOG_SD_ID "ward@32473"  /* 32473: the example enterprise number of RFC 5612 */
#define AUDIT_SYSLOG_APP_NAME "ward-proxy"
#define AUDIT_SYSLOG_FACILITY 16         /* local0 */
#define AUDIT_SINK_NAME_MAX 32

/* The fixed fields of every message. NULL or "" fields are written "-". */
typedef struct audit_syslog_header {
    int facility;         /* 0..23 */
    const char *hostname; /* at most 255 printable ASCII characters */
    const char *app_name; /* at most 48 */
    const char *procid;   /* at most 128 */
} audit_syslog_header;

/* Appends the RFC 5424 message for one record line (without its '\n').
 * WARD_EINVAL (out unchanged) when the line is not a JSON record with a
 * seq and a hash, or a header field is out of range. */
int audit_syslog_message(ward_buf *out, const audit_syslog_header *h, const char *line,
                         size_t len);
/* The same, framed for TCP (RFC 6587 octet counting): "MSG-LEN SP MSG". */
int audit_syslog_frame(ward_buf *out, const audit_syslog_header *h, const char *line,
                       size_t len);
/* Appends s as an SD PARAM-VALUE (without the quotes): '"', '\' and ']'
 * preceded by '\'. */
int audit_syslog_sd_escape(ward_buf *out, const char *s, size_t len);
/* "kern", "user", ..., "local0".."local7", or a number 0..23. */
int audit_syslog_facility_parse(const char *s, size_t len, int *out);
/* "HOST:PORT" (a DNS name or an IPv4 address) or "[IPv6]:PORT", port
 * 1..65535. host gets the name without brackets. */
int audit_sink_address_parse(const char *s, char *host, size_t host_size, uint16_t *port,
                             ward_err *err);

/* Called from the sink's thread on connects, disconnects and errors (one
 * line, no newline; repeated failures are reported once per 30 s). */
typedef void (*audit_sink_log_cb)(const char *msg, void *data);

typedef struct audit_sink_options {
    const char *dir;     /* the trail (required) */
    const char *name;    /* the cursor is DIR/sink-<name>.cursor: [a-z0-9_-], 1..32; NULL = "syslog" */
    const char *address; /* the collector, "HOST:PORT" (required); resolved at each connect */
    bool tls;
    const char *ca_file;     /* tls: the CAs the collector's certificate must chain to (required) */
    const char *cert_file;   /* tls, optional: our client certificate (chain, PEM) ... */
    const char *key_file;    /* ... and its key; both or neither */
    const char *server_name; /* tls: the name (or IP) checked in the collector's certificate and
                                sent as SNI; NULL = the address's host */
    int facility;            /* 0..23; audit_sink_options_init: 16 (local0) */
    const char *app_name;    /* NULL = "ward-proxy" */
    const char *hostname;    /* NULL = gethostname() */
    uint32_t backoff_min_ms; /* first reconnect delay, doubled per failure: 0 = 500 */
    uint32_t backoff_max_ms; /* ... up to: 0 = 30,000 */
    uint32_t cursor_ms;      /* the cursor file is written at most this often: 0 = 100 */
    uint32_t cursor_records; /* ... or after this many more records: 0 = 10,000 */
    uint32_t poll_ms;        /* how often an idle sink looks for new records: 0 = 20 */
    uint32_t connect_timeout_ms; /* TCP connect and TLS handshake: 0 = 5,000 */
    uint32_t drain_ms;       /* audit_sink_stop waits this long for the collector: 0 = 2,000 */
    int64_t replay_bytes;    /* re-sent before the last acknowledged byte after a broken
                                connection; -1 = 4 MiB, 0 = none */
    audit_sink_log_cb log;   /* may be NULL */
    void *data;
} audit_sink_options;

/* Zero everything, then facility 16 and replay_bytes -1 (the defaults above). */
void audit_sink_options_init(audit_sink_options *o);

typedef struct audit_sink audit_sink;

/* Checks the options, loads the TLS files and starts the sink's thread,
 * which connects (and reconnects) on its own: a collector that is down is
 * not an error. WARD_EINVAL (err) for bad options or TLS files. */
int audit_sink_start(const audit_sink_options *o, audit_sink **out, ward_err *err);

/* Lets the sink send what the trail holds and wait for the collector's
 * acknowledgments for up to drain_ms, writes the cursor, closes the
 * connection, joins the thread and frees the sink. What was not delivered
 * is sent after the next start. 0, or WARD_EIO when the cursor could not be
 * written (err; the next start re-sends more). */
int audit_sink_stop(audit_sink *s, ward_err *err);

typedef struct audit_sink_stats {
    uint64_t sent;          /* messages written to the collector (re-sent ones included) */
    uint64_t resent;        /* ... of which sent again after a reconnect or a restart */
    uint64_t bytes;         /* bytes written (framing and TLS included) */
    uint64_t delivered_seq; /* the last record the collector acknowledged */
    uint64_t cursor_seq;    /* the last cursor written */
    uint64_t read_seq;      /* the last record read from the trail */
    uint64_t connects;      /* connections made */
    uint64_t failures;      /* connects refused or failed, connections broken */
    bool connected;
} audit_sink_stats;

void audit_sink_stats_get(const audit_sink *s, audit_sink_stats *out);

/* 0 while connected and shipping; WARD_EIO with the last problem in err
 * ("collector 10.0.0.5:6514: connect: Connection refused", or a record of
 * the trail that fails its hash check: the sink stops before it). */
int audit_sink_status(const audit_sink *s, ward_err *err);

/* ==== end of shipping ==== */

#endif
