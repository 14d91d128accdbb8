/* ward.h - the shared base: error codes, diagnostics, buffers, bounded parsers, SPIFFE IDs, IP/CIDR */
#ifndef WARD_H
#define WARD_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- errors ------------------------------------------------------------ */

/* Functions that can fail return 0 or one of these (negative). */
enum {
    WARD_OK = 0,
    WARD_ENOMEM = -1,   /* allocation failed */
    WARD_EINVAL = -2,   /* invalid argument or input */
    WARD_EIO = -3,      /* I/O error (see errno / detail) */
    WARD_ELIMIT = -4,   /* a configured bound was exceeded */
    WARD_ESYNTAX = -5,  /* malformed document */
    WARD_ELUA = -6,     /* Lua runtime error */
    WARD_EBUDGET = -7,  /* Lua instruction or memory budget exhausted */
    WARD_ENOENT = -8,   /* not found */
    WARD_ERANGE = -9,   /* number out of range */
    WARD_EPOLICY = -10, /* policy validation failed (see diagnostics) */
    WARD_ERESULT = -11, /* engine returned a malformed result */
};

const char *ward_strerror(int code);

/* Early return for int-returning functions with a `rc` variable and a `fail:` label. */
#define WARD_TRY(expr)                                                                             \
    do {                                                                                           \
        int ward_try_rc_ = (expr);                                                                 \
        if (ward_try_rc_ < 0) {                                                                    \
            rc = ward_try_rc_;                                                                     \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* A single human-readable error message (fixed size, always NUL-terminated). */
typedef struct ward_err {
    char msg[1024];
} ward_err;

void ward_err_set(ward_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ward_err_clear(ward_err *err);

/* ---- growable byte buffer ------------------------------------------------ */

typedef struct ward_buf {
    char *ptr; /* always NUL-terminated when len > 0 or after any append */
    size_t len;
    size_t cap;
} ward_buf;

void ward_buf_init(ward_buf *b);
void ward_buf_dispose(ward_buf *b);
void ward_buf_reset(ward_buf *b); /* len = 0, keeps memory */
int ward_buf_append(ward_buf *b, const void *data, size_t len);
/* Room for extra more bytes (and the NUL) at ptr + len, for a caller that
 * writes them itself and then moves len. */
int ward_buf_reserve(ward_buf *b, size_t extra);
int ward_buf_puts(ward_buf *b, const char *s);
int ward_buf_putc(ward_buf *b, char c);
int ward_buf_printf(ward_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Takes ownership of the bytes; the buffer is reset to empty. */
char *ward_buf_steal(ward_buf *b);

/* ---- diagnostics: a list of "file:line:col: path: message" lines ---------- */

typedef struct ward_diag {
    char **msgs;
    size_t n;
    size_t cap;
    size_t max; /* stop collecting after this many (0 = 100) */
} ward_diag;

void ward_diag_init(ward_diag *d);
void ward_diag_dispose(ward_diag *d);
/* Adds "file:line:col: message" (line/col omitted when 0). Returns WARD_EPOLICY
 * so callers can `return ward_diag_add(...)`. */
int ward_diag_add(ward_diag *d, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- files ---------------------------------------------------------------- */

/* Reads a whole regular file (at most max_len bytes; 0 = 64 MiB). *out is
 * NUL-terminated and must be freed. */
int ward_file_read(const char *path, size_t max_len, char **out, size_t *out_len, ward_err *err);

/* Writes dir/name atomically: a temporary file in dir (created 0600, then
 * given `mode`), fsynced, renamed into place, and the folder fsynced. A
 * reader sees the old file or the new one, never a part, and the file never
 * exists with wider rights than mode. */
int ward_file_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                           unsigned mode, ward_err *err);
/* fsync of a folder (after a rename in it); -1 with errno on failure. */
int ward_dir_fsync(const char *dir);

/* ---- bounded number / duration parsers ------------------------------------ */

/* Decimal digits only, no sign, no whitespace, value <= max. */
int ward_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out);
/* "150ms", "2s", "5m", "1h", "1h30m", "10us" -> nanoseconds, value <= max_ns. */
int ward_parse_duration(const char *s, size_t len, uint64_t max_ns, uint64_t *out_ns);

/* ---- SPIFFE IDs (spiffe://td/path; parsed strictly, never normalized) ------- */

typedef struct ward_spiffe_id {
    const char *td; /* points into the parsed string */
    size_t td_len;
    const char *path; /* "" or "/seg/seg" */
    size_t path_len;
} ward_spiffe_id;

#define WARD_SPIFFE_TD_MAX 255
#define WARD_SPIFFE_ID_MAX 2048

/* On error fills err (if non-NULL) with what is wrong. */
int ward_spiffe_id_parse(const char *s, size_t len, ward_spiffe_id *out, ward_err *err);
/* Trust domain name alone (as in trustDomains): [a-z0-9._-], 1..255 bytes. */
bool ward_spiffe_td_valid(const char *s, size_t len);
/* The namespace of a workload ID: the segment after a "/ns/" segment, or none. */
bool ward_spiffe_id_namespace(const ward_spiffe_id *id, const char **ns, size_t *ns_len);

/* ---- IP addresses and CIDR blocks ----------------------------------------- */

typedef struct ward_ip {
    uint8_t family; /* 4 or 6 */
    uint8_t addr[16]; /* IPv4 in the first 4 bytes */
} ward_ip;

typedef struct ward_cidr {
    ward_ip ip; /* host bits zero */
    uint8_t prefix_len;
} ward_cidr;

int ward_ip_parse(const char *s, size_t len, ward_ip *out);
/* "10.0.0.0/8", "2001:db8::/32"; a bare address means a host route. Host bits
 * set after the prefix are an error (as Istio/Envoy would reject them). */
int ward_cidr_parse(const char *s, size_t len, ward_cidr *out, ward_err *err);
bool ward_cidr_contains(const ward_cidr *c, const ward_ip *ip);

/* ---- YAML / JSON documents as a tree with positions (common/doc.c) --------- */

typedef enum ward_node_kind { WARD_NODE_SCALAR, WARD_NODE_SEQ, WARD_NODE_MAP } ward_node_kind;

typedef struct ward_node ward_node;
typedef struct ward_node_pair {
    ward_node *key; /* always a scalar */
    ward_node *value;
} ward_node_pair;

struct ward_node {
    ward_node_kind kind;
    int line, col;  /* 1-based */
    bool quoted;    /* scalar written in quotes (or a JSON string): always a string */
    char *str;      /* scalar bytes, NUL-terminated; may contain NUL: use len */
    size_t len;
    ward_node **items; /* SEQ */
    ward_node_pair *pairs; /* MAP, in document order; duplicate keys are rejected */
    size_t n;          /* items or pairs */
};

typedef struct ward_docs {
    ward_node **docs;
    size_t n;
} ward_docs;

/* Parses a YAML stream (several documents allowed; JSON is accepted as YAML).
 * Bounded: depth <= 64, <= 1,000,000 nodes, anchors/aliases and tags other than
 * the standard ones are refused. Problems go to diag as "name:line:col: msg".
 * On error *out is left empty. */
int ward_docs_parse(const char *name, const char *data, size_t len, ward_docs *out,
                    ward_diag *diag);
void ward_docs_dispose(ward_docs *docs);
/* The value of key `key` in a MAP, or NULL. */
const ward_node *ward_node_get(const ward_node *map, const char *key);

/* ---- checking documents (common/doccheck.c) ---------------------------------
 * A validator walks a ward_node tree keeping the field path
 * ("spec.rules[0].to[1].paths[2]"; keys that are not plain identifiers as
 * ["key"]) and records every problem as "path: message" at a node's position;
 * ward_docv_flush hands them to a ward_diag in document order, so users see
 * all their mistakes at once as "file:line:col: path: message". */

typedef struct ward_docv_problem {
    int line, col;
    size_t seq;
    char *msg;
} ward_docv_problem;

typedef struct ward_docv {
    const char *file;
    const char *noun; /* what a key is called in messages: NULL = "field" ("key" for configs) */
    int rc; /* WARD_ENOMEM once an allocation failed */
    ward_docv_problem *probs;
    size_t n_probs, cap_probs;
    char path[1024];
    size_t plen;
} ward_docv;

void ward_docv_error(ward_docv *c, const ward_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sorts the problems by position, adds them to diag (may be NULL), frees them. */
void ward_docv_flush(ward_docv *c, ward_diag *diag);
/* Path steps; each returns the length to pop back to. */
size_t ward_docv_push(ward_docv *c, const char *key);
size_t ward_docv_push_key(ward_docv *c, const char *key, size_t len);
size_t ward_docv_push_idx(ward_docv *c, size_t i);
void ward_docv_pop(ward_docv *c, size_t old);
/* Allocation that records WARD_ENOMEM in c->rc. */
char *ward_docv_dup(ward_docv *c, const char *s, size_t len);
void *ward_docv_calloc(ward_docv *c, size_t n, size_t size);
/* Type checks that record "expected a map, got a list" and the like. */
bool ward_docv_expect_map(ward_docv *c, const ward_node *n);
bool ward_docv_expect_list(ward_docv *c, const ward_node *n);
/* Any scalar but an unquoted null or boolean reads as a string. */
bool ward_docv_get_str(ward_docv *c, const ward_node *n, const char **s, size_t *len);
/* Records every key of map not in allowed (NULL-terminated), naming the
 * allowed ones and a near miss; hint_of (may be NULL) adds a domain hint. */
void ward_docv_check_fields(ward_docv *c, const ward_node *map, const char *const *allowed,
                            const char *(*hint_of)(const ward_node *key));
void ward_docv_missing(ward_docv *c, const ward_node *map, const char *key, const char *extra);

/* What a scalar reads as in YAML 1.1 (plain scalars only). */
bool ward_node_is(const ward_node *n, const char *word);
bool ward_node_is_null(const ward_node *n);
bool ward_node_is_bool(const ward_node *n, bool *val);
bool ward_node_is_number(const ward_node *n);
/* "a map", "a list", "null", "a boolean", "a number", "a string". */
const char *ward_node_describe(const ward_node *n);
/* The name in names (NULL-terminated) within edit distance 2 of s, or NULL. */
const char *ward_closest_name(const char *s, size_t len, const char *const *names);
/* "a, b, c" */
void ward_join_names(char *out, size_t size, const char *const *names);
/* s as a double-quoted string with escapes, cut at 80 bytes with "..."; returns out. */
const char *ward_quote(char *out, size_t size, const char *s, size_t len);

#endif
