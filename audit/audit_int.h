/* audit_int.h - audit internals shared by the module's files: the ring slot layout, the renderers, the chain, the trail on disk */
#ifndef AUDIT_INT_H
#define AUDIT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "audit/audit.h"

/* The strings of a record, in the order they are packed into a slot (the
 * order that decides who keeps room when the slot's budget runs out). */
typedef enum audit_field {
    AF_POLICY,
    AF_DRY_RUN_POLICY,
    AF_REASON,
    AF_BUNDLE,
    AF_CERT,
    AF_SOURCE_PRINCIPAL,
    AF_SOURCE_IP,
    AF_DESTINATION_SERVICE,
    AF_DESTINATION_PRINCIPAL,
    AF_METHOD,
    AF_PROTOCOL,
    AF_HOST,
    AF_TRACE_ID,
    AF_PATH,
    AF_HEADERS, /* last: the first to be cut when the slot runs out of room */
    AF_COUNT
} audit_field;

/* The strings of an identity event (AUDIT_FLAG_EVENT): the same off/len
 * slots, in their packing order (who and what first). */
typedef enum audit_event_field {
    AEF_EVENT,
    AEF_ERROR,
    AEF_VIA,
    AEF_SUBJECT,
    AEF_SERIAL,
    AEF_TOKEN_ID,
    AEF_KEY_ID,
    AEF_REASON,
    AEF_SOURCE_PRINCIPAL,
    AEF_SOURCE_IP,
    AEF_AUDIENCE,
    AEF_COUNT
} audit_event_field;

#define AUDIT_ABSENT UINT16_MAX /* len[] of an absent string */
#define AUDIT_FLAG_AUDIT 1u
#define AUDIT_FLAG_DRY_RUN 2u
#define AUDIT_FLAG_EVENT 4u /* an identity event: decision holds the outcome, strings are AEF_* */
#define AUDIT_FLAG_CONNECTION 8u /* a TCP connection's record: bytes_in, bytes_out, duration_ns */

/* One record as copied by the producer: fixed fields, then the strings
 * packed in data[] (off/len per field). Plain bytes: the ring's head/tail
 * atomics order them between the two threads. */
typedef struct audit_slot_hdr {
    int64_t ts_ns;
    int64_t latency_ns;
    uint64_t gap; /* records this producer dropped just before this one */
    int32_t rule, dry_run_rule, source_port, destination_port, status;
    int64_t not_after_ns, bundle_sequence, source_uid; /* identity events only */
    uint64_t bytes_in, bytes_out; /* AUDIT_FLAG_CONNECTION only */
    int64_t duration_ns;
    uint8_t direction, decision, dry_run_decision, flags;
    uint16_t truncated; /* bit per audit_field */
    uint16_t used;      /* bytes of data[] filled: the slot's size in the ring */
    uint16_t off[AF_COUNT];
    uint16_t len[AF_COUNT];
    char id[AUDIT_ID_HEX];
} audit_slot_hdr;

typedef union audit_slot {
    struct {
        audit_slot_hdr h;
        char data[AUDIT_SLOT_DATA];
    } r;
    char size_[AUDIT_SLOT_SIZE];
} audit_slot;

_Static_assert(sizeof(audit_slot_hdr) + AUDIT_SLOT_DATA <= AUDIT_SLOT_SIZE,
               "AUDIT_SLOT_DATA too large for AUDIT_SLOT_SIZE");
_Static_assert(AUDIT_SLOT_DATA < AUDIT_ABSENT, "slot offsets are 16-bit");
_Static_assert(AF_COUNT <= 16, "truncated is a 16-bit mask");
_Static_assert((int)AEF_COUNT <= (int)AF_COUNT, "an event's strings use the record's slots");

/* record.c: appends one record / gap record up to (not including) its
 * ",\"prev\"" and the closing brace: audit_chain_line finishes the line. On
 * failure out is unchanged. */
int audit_render_record(ward_buf *out, const audit_slot *s, uint64_t seq, const char *node,
                        size_t node_len);
/* An identity event (a slot with AUDIT_FLAG_EVENT), likewise. */
int audit_render_event(ward_buf *out, const audit_slot *s, uint64_t seq, const char *node,
                       size_t node_len);
/* A gap record: k records lost before seq. */
int audit_render_gap(ward_buf *out, uint64_t seq, int64_t ts_ns, const char *node,
                     size_t node_len, uint64_t k);
/* A JSON string (with quotes), escaped as records are. */
int audit_json_str(ward_buf *out, const char *s, size_t n);
/* "YYYY-MM-DDThh:mm:ss.uuuuuuZ" (AUDIT_TS_LEN bytes, no NUL), UTC. */
#define AUDIT_TS_LEN 27
void audit_time_format(char out[AUDIT_TS_LEN], int64_t ns);

/* ---- chain.c: the hash chain ------------------------------------------------ */

#define AUDIT_HASH_LEN 32
/* Bytes after prev's closing quote in a chained line (without '\n'):
 * ,"hash":"<64 hex>"}  */
#define AUDIT_HASH_FIELD_LEN (9 + AUDIT_HASH_HEX + 2)
/* ,"prev":"<64 hex>"  */
#define AUDIT_PREV_FIELD_LEN (9 + AUDIT_HASH_HEX + 1)

void audit_hex(char *out, const uint8_t *in, size_t n); /* 2n lowercase hex digits, no NUL */
int audit_unhex(uint8_t *out, const char *in, size_t n); /* n bytes from 2n lowercase hex digits */
void audit_sha256(uint8_t out[AUDIT_HASH_LEN], const void *data, size_t len);

/* Finishes the line that starts at out->ptr + start: appends
 * ,"prev":"<hex of head>","hash":"<H>"}\n and sets head = H (the SHA-256 of
 * the line up to prev's closing quote). On failure out is cut back to start
 * and head is unchanged. */
int audit_chain_line(ward_buf *out, size_t start, uint8_t head[AUDIT_HASH_LEN]);

/* What is wrong with a line (audit_line_check). */
typedef enum audit_line_fault {
    AUDIT_LINE_OK = 0,
    AUDIT_LINE_SHAPE, /* not {"v":1,"seq":N,... ,"prev":"..","hash":".."} */
    AUDIT_LINE_HASH,  /* hash does not match the bytes */
    AUDIT_LINE_SEQ,   /* seq is not the one expected */
    AUDIT_LINE_PREV,  /* prev is not the hash of the line before */
} audit_line_fault;

/* Checks one line (without its '\n'): its shape, its hash, then (when
 * want_seq != 0) its seq and (when want_prev != NULL) its prev. Gives its seq,
 * prev and hash whenever the shape is right. */
audit_line_fault audit_line_check(const char *line, size_t len, uint64_t want_seq,
                                  const uint8_t *want_prev, uint64_t *seq,
                                  uint8_t prev[AUDIT_HASH_LEN], uint8_t hash[AUDIT_HASH_LEN]);
const char *audit_line_fault_name(audit_line_fault f);

/* ---- checkpoint.c: signed checkpoints ---------------------------------------- */

/* Appends one checkpoint line (with '\n') for record seq whose hash is head,
 * signed with key (key_id: its AUDIT_KEY_ID_HEX digits). */
int audit_checkpoint_render(ward_buf *out, EVP_PKEY *key, const char *key_id, const char *node,
                            size_t node_len, uint64_t seq, const uint8_t head[AUDIT_HASH_LEN],
                            int64_t ts_ns, const char *segment, ward_err *err);

/* The private key of a log: key_file, or DIR/checkpoint.key (generated when
 * absent; a symbolic link there is refused); DIR/checkpoint.pub is written
 * when missing or different. */
int audit_key_setup(const char *dir, const char *key_file, EVP_PKEY **key,
                    char key_id[AUDIT_KEY_ID_HEX + 1], ward_err *err);

/* ---- file.c, recover.c: the trail on disk -------------------------------------- */

/* What open found: where the trail goes on. */
typedef struct audit_resume {
    int cp_fd;              /* checkpoints.jsonl: O_APPEND, exclusive flock held */
    uint64_t next_seq;      /* seq of the next record */
    uint8_t head[AUDIT_HASH_LEN]; /* hash of record next_seq - 1 (zeros: none) */
    uint64_t cp_seq;        /* the last checkpoint's seq (0: none) */
    char head_segment[AUDIT_SEGMENT_NAME_MAX]; /* segment of record next_seq - 1 ("" none) */
    int seg_fd;             /* the active segment to continue (-1: the next record starts one) */
    uint64_t seg_first;     /* its first seq (its name) */
    uint64_t seg_bytes;     /* its size */
    uint64_t seg_records;   /* records in it */
    int64_t seg_born_ns;    /* its creation time (CLOCK_REALTIME) */
    uint64_t torn_bytes;    /* cut off a torn last line */
} audit_resume;

/* Creates dir (0700, with parents) if absent; refuses a non-folder or one it cannot write. */
int audit_dir_make(const char *dir, ward_err *err);
/* Opens dir/name (no symlink, must be a regular file) with flags (O_CREAT: 0600);
 * an existing file with group/other rights is narrowed to 0600 when narrow. */
int audit_file_open(const char *dir, const char *name, int flags, bool narrow, int *fd,
                    ward_err *err);
/* Locks checkpoints.jsonl, cuts torn last lines, re-reads the last segment
 * and checks it against the last checkpoint (recover.c). */
int audit_trail_open(const char *dir, audit_resume *r, ward_err *err);

/* ---- sync.c: the syncer thread ------------------------------------------------------ */

/* One round of syncing: the folder dir (fsync: a new segment's name; NULL
 * skips it), fd (fsync when full, else fdatasync), then cp_fd (fdatasync; -1
 * skips either). dir and the fds must stay valid until the job is reaped.
 * seq, hash, segment: what fd's sync makes durable (the last record written
 * to it before the job); carried for the writer, not used. */
typedef struct audit_sync_job {
    const char *dir;
    int fd;
    bool full;
    int cp_fd;
    uint64_t seq;
    uint8_t hash[AUDIT_HASH_LEN];
    char segment[AUDIT_SEGMENT_NAME_MAX];
} audit_sync_job;

/* Runs one job at a time on its own thread, so the writer goes on writing
 * while the disk syncs. */
typedef struct audit_syncer audit_syncer;

/* On the syncer thread: fail for each failed call (name: the file, NULL for
 * the folder; what: "fdatasync" or "fsync"; e: errno), done after each job (wakes the writer). */
typedef void (*audit_sync_fail_cb)(const char *name, const char *what, int e, void *data);
typedef void (*audit_sync_done_cb)(void *data);

/* delay_ms: a test hook, each call sleeps this long first (a busy disk). */
int audit_syncer_new(uint32_t delay_ms, audit_sync_done_cb done, audit_sync_fail_cb fail,
                     void *data, audit_syncer **out, ward_err *err);
/* Hands over one job; only when none is in flight (reaped). */
void audit_syncer_submit(audit_syncer *s, const audit_sync_job *job);
/* True, with *rc (0, or -1 when a call failed), once the job handed over is
 * done, waiting for it when wait; false while it runs. */
bool audit_syncer_reap(audit_syncer *s, bool wait, int *rc);
/* Finishes the job in flight, stops the thread and frees s (NULL: nothing). */
void audit_syncer_free(audit_syncer *s);

#endif
