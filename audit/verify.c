/* verify.c - read a trail's segments in seq order; check its hash chain and its signed checkpoints
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "audit/audit.h"

#define SEG_PREFIX     "segment-"
#define SEG_SUFFIX     ".jsonl"
#define SEG_DIGITS     20
#define CHECKPOINTS    "checkpoints.jsonl"
#define PUBKEY         "checkpoint.pub"
#define HEX            64                /* digits of prev, hash and head */
#define HASH_TAIL      75                /* ,"hash":"<64 hex>"} */
#define PREV_TAIL      74                /* ,"prev":"<64 hex>" */
#define READ_BUF       ((size_t)4 << 20) /* bytes read at once */
#define LINE_MAX_BYTES ((size_t)1 << 28) /* a longer line is an error, not a record */

/* ---- segments ---------------------------------------------------------------------------- */

typedef struct seg {
    char name[SEG_DIGITS + sizeof(SEG_PREFIX) + sizeof(SEG_SUFFIX)];
    uint64_t first; /* seq its name gives */
    uint64_t size;  /* when listed */
} seg;

struct audit_reader {
    char *dir;
    seg *segs;
    size_t n_segs;
    bool own_segs;
    size_t cur; /* the segment open (fd >= 0) or to open next */
    int fd;
    char *buf;
    size_t cap, head, tail; /* unread bytes: buf[head..tail) */
    bool eof;
    uint64_t off;                   /* file offset of buf[head] */
    uint64_t line;                  /* lines returned from segs[cur] */
    uint64_t start_off, start_line; /* where to begin in the first segment opened */
    /* the last line returned */
    size_t line_seg;
    uint64_t line_no;
    bool no_newline; /* the end of a segment that is not the last, without '\n' */
    uint64_t done_bytes, total_bytes;
    bool torn;
    size_t torn_seg;
    uint64_t torn_line, torn_bytes;
    /* names that look like segments but are not exactly one */
    size_t ignored;
    char ignored_name[64];
};

static int seg_cmp(const void *a, const void *b)
{
    const seg *x = a, *y = b;
    return x->first < y->first ? -1 : x->first > y->first;
}

/* The first seq of "segment-<20 digits>.jsonl"; false for any other name. */
static bool seg_name_parse(const char *name, uint64_t *first)
{
    size_t plen = sizeof(SEG_PREFIX) - 1, slen = sizeof(SEG_SUFFIX) - 1;
    if (strlen(name) != plen + SEG_DIGITS + slen || memcmp(name, SEG_PREFIX, plen) != 0 ||
        memcmp(name + plen + SEG_DIGITS, SEG_SUFFIX, slen) != 0)
        return false;
    return ward_parse_u64(name + plen, SEG_DIGITS, UINT64_MAX, first) == 0 && *first >= 1;
}

static void seg_name(char *out, size_t size, uint64_t first)
{
    snprintf(out, size, SEG_PREFIX "%020" PRIu64 SEG_SUFFIX, first);
}

/* Lists dir's segments in seq order (possibly none). */
static int list_segments(audit_reader *r, ward_err *err)
{
    DIR *d = opendir(r->dir);
    struct dirent *e;
    size_t cap = 0;
    int rc = 0;
    if (d == NULL) {
        ward_err_set(err, "%s: %s", r->dir, strerror(errno));
        return errno == ENOENT ? WARD_ENOENT : WARD_EIO;
    }
    while ((e = readdir(d)) != NULL) {
        uint64_t first;
        if (!seg_name_parse(e->d_name, &first)) {
            if (strncmp(e->d_name, SEG_PREFIX, sizeof(SEG_PREFIX) - 1) == 0 && r->ignored++ == 0)
                snprintf(r->ignored_name, sizeof(r->ignored_name), "%.60s", e->d_name);
            continue;
        }
        if (r->n_segs == cap) {
            cap = cap ? cap * 2 : 64;
            seg *s = realloc(r->segs, cap * sizeof(*s));
            if (s == NULL) {
                rc = WARD_ENOMEM;
                goto fail;
            }
            r->segs = s;
        }
        seg *s = &r->segs[r->n_segs++];
        memcpy(s->name, e->d_name, sizeof(s->name)); /* the exact length was checked */
        s->name[sizeof(s->name) - 1] = '\0';
        s->first = first;
        struct stat st;
        s->size = fstatat(dirfd(d), e->d_name, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
        r->total_bytes += s->size;
    }
    if (r->n_segs > 0)
        qsort(r->segs, r->n_segs, sizeof(*r->segs), seg_cmp);
fail:
    closedir(d);
    return rc;
}

static int reader_new(const char *dir, audit_reader **out)
{
    audit_reader *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return WARD_ENOMEM;
    r->fd = -1;
    r->own_segs = true;
    r->dir = strdup(dir);
    r->cap = READ_BUF;
    r->buf = malloc(r->cap);
    if (r->dir == NULL || r->buf == NULL) {
        audit_reader_free(r);
        return WARD_ENOMEM;
    }
    *out = r;
    return 0;
}

int audit_reader_open(const char *dir, audit_reader **out, ward_err *err)
{
    audit_reader *r;
    int rc = reader_new(dir, &r);
    if (rc < 0)
        return rc;
    rc = list_segments(r, err);
    if (rc == 0 && r->n_segs == 0) {
        struct stat st;
        char legacy[4096];
        snprintf(legacy, sizeof(legacy), "%s/audit.jsonl", dir);
        if (stat(legacy, &st) == 0)
            ward_err_set(err,
                         "%s: no segment-*.jsonl files; audit.jsonl is a log from before the "
                         "hash chain (docs/audit.md)",
                         dir);
        else
            ward_err_set(err, "%s: no segment-*.jsonl files: not an audit trail", dir);
        rc = WARD_ENOENT;
    }
    if (rc < 0) {
        audit_reader_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void audit_reader_free(audit_reader *r)
{
    if (r == NULL)
        return;
    if (r->fd >= 0)
        close(r->fd);
    if (r->own_segs)
        free(r->segs);
    free(r->buf);
    free(r->dir);
    free(r);
}

static int seg_open(audit_reader *r, ward_err *err)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", r->dir, r->segs[r->cur].name);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0 || fstat(r->fd, &st) < 0) {
        ward_err_set(err, "%s: %s", path, strerror(errno));
        return WARD_EIO;
    }
    if (!S_ISREG(st.st_mode)) {
        ward_err_set(err, "%s: not a regular file", path);
        return WARD_EIO;
    }
    posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    r->head = r->tail = 0;
    r->eof = false;
    r->off = 0;
    r->line = 0;
    if (r->start_off > 0) {
        if (lseek(r->fd, (off_t)r->start_off, SEEK_SET) < 0) {
            ward_err_set(err, "%s: %s", path, strerror(errno));
            return WARD_EIO;
        }
        r->off = r->start_off;
        r->line = r->start_line;
        r->start_off = r->start_line = 0;
    }
    return 0;
}

static void take_line(audit_reader *r, const char **line, size_t *len, size_t n, bool newline)
{
    *line = r->buf + r->head;
    *len = n;
    r->head += n + newline;
    r->off += n + newline;
    r->line++;
    r->line_seg = r->cur;
    r->line_no = r->line;
    r->no_newline = !newline;
}

int audit_reader_next(audit_reader *r, const char **line, size_t *len, ward_err *err)
{
    for (;;) {
        if (r->fd < 0) {
            if (r->cur >= r->n_segs)
                return 0;
            int rc = seg_open(r, err);
            if (rc < 0)
                return rc;
        }
        if (r->head < r->tail) {
            const char *nl = memchr(r->buf + r->head, '\n', r->tail - r->head);
            if (nl != NULL) {
                take_line(r, line, len, (size_t)(nl - (r->buf + r->head)), true);
                return 1;
            }
        }
        if (!r->eof) {
            if (r->head > 0) {
                memmove(r->buf, r->buf + r->head, r->tail - r->head);
                r->tail -= r->head;
                r->head = 0;
            }
            if (r->tail == r->cap) {
                if (r->cap >= LINE_MAX_BYTES) {
                    ward_err_set(err, "%s/%s: a line longer than %zu bytes", r->dir,
                                 r->segs[r->cur].name, LINE_MAX_BYTES);
                    return WARD_EIO;
                }
                char *b = realloc(r->buf, r->cap * 2);
                if (b == NULL)
                    return WARD_ENOMEM;
                r->buf = b;
                r->cap *= 2;
            }
            ssize_t n = read(r->fd, r->buf + r->tail, r->cap - r->tail);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                ward_err_set(err, "%s/%s: %s", r->dir, r->segs[r->cur].name, strerror(errno));
                return WARD_EIO;
            }
            if (n == 0)
                r->eof = true;
            r->tail += (size_t)n;
            continue;
        }
        if (r->head < r->tail) { /* bytes after the last '\n' */
            if (r->cur + 1 < r->n_segs) {
                take_line(r, line, len, r->tail - r->head, false);
                return 1;
            }
            r->torn = true;
            r->torn_seg = r->cur;
            r->torn_line = r->line + 1;
            r->torn_bytes = r->tail - r->head;
            r->off += r->tail - r->head;
            r->head = r->tail;
        }
        close(r->fd);
        r->fd = -1;
        r->done_bytes += r->off;
        r->cur++;
    }
}

const char *audit_reader_file(const audit_reader *r)
{
    return r->n_segs > 0 ? r->segs[r->line_seg].name : "";
}

uint64_t audit_reader_line(const audit_reader *r)
{
    return r->line_no;
}

size_t audit_reader_segments(const audit_reader *r)
{
    return r->n_segs;
}

void audit_reader_progress(const audit_reader *r, uint64_t *done_bytes, uint64_t *total_bytes)
{
    *done_bytes = r->done_bytes + (r->fd >= 0 ? r->off : 0);
    *total_bytes = r->total_bytes;
}

bool audit_reader_torn(const audit_reader *r)
{
    return r->torn;
}

/* ---- verification: findings ----------------------------------------------------------------- */

const char *audit_finding_kind_name(audit_finding_kind k)
{
    switch (k) {
    case AUDIT_FINDING_MODIFIED: return "modified";
    case AUDIT_FINDING_DELETED: return "deleted";
    case AUDIT_FINDING_REORDERED: return "reordered";
    case AUDIT_FINDING_TRUNCATED: return "truncated";
    case AUDIT_FINDING_FORGED_CHECKPOINT: return "forged checkpoint";
    }
    return "?";
}

typedef struct ckpt {
    uint64_t seq, line;
    char head[HEX];
    bool ok; /* well-formed, our key, signature valid */
} ckpt;

typedef struct verifier {
    const audit_verify_options *opts;
    audit_verify_report *rep;
    audit_reader *r;
    EVP_PKEY *key;
    ckpt *cps;
    size_t n_cps;
    size_t *order; /* cps by seq */
    size_t next_cp;
    size_t cp_findings;      /* findings about checkpoints kept (a few slots stay for the chain) */
    uint64_t last_match_seq; /* the last checkpoint whose head matched */
    bool stopped;            /* the chain broke: no later record is checked */
} verifier;

static void finding(verifier *v, audit_finding_kind kind, const char *file, uint64_t line,
                    uint64_t seq, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void finding(verifier *v, audit_finding_kind kind, const char *file, uint64_t line,
                    uint64_t seq, const char *fmt, ...)
{
    audit_verify_report *rep = v->rep;
    bool cp = kind == AUDIT_FINDING_FORGED_CHECKPOINT;
    size_t kept =
        rep->n_findings < AUDIT_VERIFY_MAX_FINDINGS ? rep->n_findings : AUDIT_VERIFY_MAX_FINDINGS;
    rep->n_findings++;
    /* two slots stay free for the chain's first bad record and a truncation */
    if (kept >= AUDIT_VERIFY_MAX_FINDINGS ||
        (cp && v->cp_findings >= AUDIT_VERIFY_MAX_FINDINGS - 2))
        return;
    v->cp_findings += cp;
    audit_finding *f = &rep->findings[kept];
    memset(f, 0, sizeof(*f));
    f->kind = kind;
    snprintf(f->file, sizeof(f->file), "%s", file);
    f->line = line;
    f->seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
    va_end(ap);
}

static void note(audit_verify_report *rep, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void note(audit_verify_report *rep, const char *fmt, ...)
{
    if (rep->n_notes >= AUDIT_VERIFY_MAX_NOTES)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->notes[rep->n_notes++], sizeof(rep->notes[0]), fmt, ap);
    va_end(ap);
}

static int finding_cmp(const void *a, const void *b)
{
    const audit_finding *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    bool xc = x->kind == AUDIT_FINDING_FORGED_CHECKPOINT,
         yc = y->kind == AUDIT_FINDING_FORGED_CHECKPOINT;
    if (xc != yc)
        return xc ? 1 : -1;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* ---- keys and checkpoints ----------------------------------------------------------------------
 */

static void hex_encode(char *out, const uint8_t *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
}

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* The key id of docs/audit.md: first 16 hex digits of SHA-256 of the raw 32-byte key. */
static int key_id(EVP_PKEY *key, char out[17])
{
    uint8_t raw[32], h[32];
    size_t len = sizeof(raw);
    unsigned hl = 0;
    if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != 32 ||
        EVP_Digest(raw, len, h, &hl, EVP_sha256(), NULL) != 1)
        return WARD_EINVAL;
    hex_encode(out, h, 8);
    out[16] = '\0';
    return 0;
}

static int key_load(const char *path, EVP_PKEY **out, ward_err *err)
{
    char *pem = NULL;
    size_t len = 0;
    struct stat st;
    if (stat(path, &st) < 0) {
        ward_err_set(err, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? WARD_ENOENT : WARD_EIO;
    }
    int rc = ward_file_read(path, 64 * 1024, &pem, &len, err);
    if (rc < 0)
        return rc;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *k = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    free(pem);
    ERR_clear_error();
    if (k == NULL) {
        ward_err_set(err, "%s: not a PEM public key (-----BEGIN PUBLIC KEY-----)", path);
        return WARD_EINVAL;
    }
    if (EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519) {
        EVP_PKEY_free(k);
        ward_err_set(err, "%s: not an Ed25519 public key", path);
        return WARD_EINVAL;
    }
    *out = k;
    return 0;
}

/* Strict RFC 4648 base64, padded (88 characters), of exactly 64 bytes. */
static bool b64_sig(const char *s, size_t n, uint8_t out[64])
{
    if (n != 88 || s[86] != '=' || s[87] != '=') /* RFC 4648 with padding */
        return false;
    n = 86;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int v = c >= 'A' && c <= 'Z'   ? c - 'A'
                : c >= 'a' && c <= 'z' ? c - 'a' + 26
                : c >= '0' && c <= '9' ? c - '0' + 52
                : c == '+'             ? 62
                : c == '/'             ? 63
                                       : -1;
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o < 64)
                out[o] = (uint8_t)(acc >> bits);
            o++;
        }
    }
    return o == 64 && (acc & ((1u << bits) - 1)) == 0;
}

static const char *json_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Checks one line of checkpoints.jsonl; c->ok when it is a valid checkpoint by key. */
static void checkpoint_check(verifier *v, const char *text, size_t len, ckpt *c)
{
    char why[200] = "";
    cJSON *o = cJSON_ParseWithLength(text, len);
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "seq");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(o, "v");
    const cJSON *nodev = cJSON_GetObjectItemCaseSensitive(o, "node");
    const char *head = json_str(o, "head"), *ts = json_str(o, "ts"), *kid = json_str(o, "key");
    const char *sig = json_str(o, "sig");
    uint8_t raw[64];
    c->ok = false;
    if (cJSON_IsNumber(seq) && seq->valuedouble >= 1 && seq->valuedouble <= 9007199254740992.0 &&
        seq->valuedouble == (double)(uint64_t)seq->valuedouble)
        c->seq = (uint64_t)seq->valuedouble;
    if (!cJSON_IsObject(o))
        snprintf(why, sizeof(why), "not a JSON object");
    else if (!cJSON_IsNumber(ver) || ver->valuedouble != 1)
        snprintf(why, sizeof(why), "\"v\" is not 1");
    else if (c->seq == 0)
        snprintf(why, sizeof(why), "\"seq\" is not a positive integer");
    else if (head == NULL || strlen(head) != HEX || !is_hex(head, HEX))
        snprintf(why, sizeof(why), "\"head\" is not 64 lowercase hex digits");
    else if (ts == NULL)
        snprintf(why, sizeof(why), "\"ts\" is missing");
    else if (!cJSON_IsString(nodev) && !cJSON_IsNull(nodev))
        snprintf(why, sizeof(why), "\"node\" is missing");
    else if (kid == NULL)
        snprintf(why, sizeof(why), "\"key\" is missing");
    else if (sig == NULL || !b64_sig(sig, strlen(sig), raw))
        snprintf(why, sizeof(why), "\"sig\" is not the base64 of a 64-byte signature");
    if (why[0] != '\0') {
        finding(v, AUDIT_FINDING_FORGED_CHECKPOINT, CHECKPOINTS, c->line, c->seq,
                "not a valid checkpoint: %s", why);
        cJSON_Delete(o);
        return;
    }
    memcpy(c->head, head, HEX);
    if (strcmp(kid, v->rep->key_id) != 0) {
        finding(v, AUDIT_FINDING_FORGED_CHECKPOINT, CHECKPOINTS, c->line, c->seq,
                "signed with key id %.40s, not with the key given (id %s)", kid, v->rep->key_id);
        cJSON_Delete(o);
        return;
    }
    /* ward-audit-checkpoint/1 \n node \n seq \n head \n ts \n ("node":null: an empty line) */
    ward_buf msg;
    ward_buf_init(&msg);
    const char *node = cJSON_IsString(nodev) ? nodev->valuestring : "";
    int rc = ward_buf_printf(&msg, "ward-audit-checkpoint/1\n%s\n%" PRIu64 "\n%s\n%s\n", node,
                             c->seq, head, ts);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool good = rc == 0 && md != NULL && EVP_DigestVerifyInit(md, NULL, NULL, NULL, v->key) == 1 &&
                EVP_DigestVerify(md, raw, 64, (const unsigned char *)msg.ptr, msg.len) == 1;
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    ward_buf_dispose(&msg);
    cJSON_Delete(o);
    if (!good) {
        finding(v, AUDIT_FINDING_FORGED_CHECKPOINT, CHECKPOINTS, c->line, c->seq,
                "the signature does not verify with key %s: the checkpoint was altered or "
                "forged",
                v->rep->key_id);
        return;
    }
    c->ok = true;
}

static int cp_order_cmp(const void *a, const void *b, void *arg)
{
    const ckpt *cps = arg;
    const ckpt *x = &cps[*(const size_t *)a], *y = &cps[*(const size_t *)b];
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* Reads and checks every checkpoint (a missing file is no checkpoint). */
static int checkpoints_load(verifier *v, bool *exists, ward_err *err)
{
    char path[4096];
    char *data = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    struct stat st;
    snprintf(path, sizeof(path), "%s/" CHECKPOINTS, v->opts->dir);
    *exists = stat(path, &st) == 0;
    if (!*exists)
        return 0;
    rc = ward_file_read(path, (size_t)1 << 31, &data, &len, err);
    if (rc < 0)
        return rc;
    uint64_t lineno = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(data + i, '\n', len - i);
        size_t n = nl != NULL ? (size_t)(nl - (data + i)) : len - i;
        lineno++;
        if (nl == NULL) {
            note(v->rep,
                 CHECKPOINTS ":%" PRIu64 ": a torn last line (%zu bytes, an interrupted "
                             "write) was not checked",
                 lineno, n);
            break;
        }
        v->rep->checkpoints++;
        if (v->n_cps == cap) {
            cap = cap ? cap * 2 : 256;
            ckpt *c = realloc(v->cps, cap * sizeof(*c));
            if (c == NULL) {
                rc = WARD_ENOMEM;
                goto fail;
            }
            v->cps = c;
        }
        ckpt *c = &v->cps[v->n_cps++];
        memset(c, 0, sizeof(*c));
        c->line = lineno;
        if (v->key != NULL)
            checkpoint_check(v, data + i, n, c);
        i += n + 1;
    }
    v->order = malloc((v->n_cps ? v->n_cps : 1) * sizeof(*v->order));
    if (v->order == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    for (size_t i = 0; i < v->n_cps; i++)
        v->order[i] = i;
    qsort_r(v->order, v->n_cps, sizeof(*v->order), cp_order_cmp, v->cps);
fail:
    free(data);
    return rc;
}

/* ---- the chain ------------------------------------------------------------------------------ */

/* The fixed parts of a record line (docs/audit.md, "The hash"): NULL when they
 * are all there, else what is wrong. */
static const char *line_shape(const char *p, size_t n, uint64_t *seq, size_t *after_seq)
{
    static const char pre[] = "{\"v\":1,\"seq\":";
    const size_t plen = sizeof(pre) - 1;
    if (n < plen + 2 + HASH_TAIL + PREV_TAIL)
        return "too short to be a record";
    if (memcmp(p, pre, plen) != 0)
        return "does not begin with {\"v\":1,\"seq\":";
    size_t i = plen;
    uint64_t s = 0;
    if (p[i] < '1' || p[i] > '9')
        return "its seq is not a positive integer";
    while (p[i] >= '0' && p[i] <= '9') {
        if (s > (UINT64_MAX - 9) / 10)
            return "its seq is out of range";
        s = s * 10 + (uint64_t)(p[i++] - '0');
    }
    if (p[i] != ',')
        return "its seq is not a plain integer";
    if (memcmp(p + n - HASH_TAIL, ",\"hash\":\"", 9) != 0 || memcmp(p + n - 2, "\"}", 2) != 0)
        return "does not end with ,\"hash\":\"<64 hex>\"}";
    /* prev's digits are compared with the hash before, which is known to be hex */
    if (memcmp(p + n - HASH_TAIL - PREV_TAIL, ",\"prev\":\"", 9) != 0 ||
        p[n - HASH_TAIL - 1] != '"')
        return "has no ,\"prev\":\"<64 hex>\" before its hash";
    *seq = s;
    *after_seq = i;
    return NULL;
}

/* Whether a record with this seq comes later in the trail (after the line r
 * just returned): tells a reordering from a deletion. */
static bool seq_ahead(const audit_reader *r, uint64_t want, char *file, size_t fsize,
                      uint64_t *line)
{
    audit_reader *a;
    char pre[48];
    int plen = snprintf(pre, sizeof(pre), "{\"v\":1,\"seq\":%" PRIu64 ",", want);
    const char *l;
    size_t n;
    bool found = false;
    ward_err err;
    if (reader_new(r->dir, &a) < 0)
        return false;
    a->segs = r->segs;
    a->n_segs = r->n_segs;
    a->own_segs = false;
    a->cur = r->line_seg;
    a->start_off = r->off;
    a->start_line = r->line_no;
    if (r->no_newline) { /* that line ended its segment */
        a->cur++;
        a->start_off = a->start_line = 0;
    }
    while (!found && audit_reader_next(a, &l, &n, &err) > 0) {
        if (n > (size_t)plen && memcmp(l, pre, (size_t)plen) == 0) {
            found = true;
            snprintf(file, fsize, "%s", audit_reader_file(a));
            *line = audit_reader_line(a);
        }
    }
    audit_reader_free(a);
    return found;
}

/* at: the ',' after seq. */
static bool is_gap(const char *p, size_t n, size_t at)
{
    /* a gap record has "node" right after "ts", a decision record "id" */
    const char *ts = p + at;
    if (n - at < 16 || memcmp(ts, ",\"ts\":\"", 7) != 0)
        return false;
    const char *q = memchr(ts + 7, '"', (size_t)(p + n - ts - 7));
    if (q == NULL || (size_t)(p + n - q) < 9 || memcmp(q + 1, ",\"node\":", 8) != 0)
        return false;
    return memmem(q, (size_t)(p + n - q), ",\"gap\":", 7) != NULL;
}

static void check_checkpoints_at(verifier *v, uint64_t seq, const char *hash, const char *file,
                                 uint64_t line)
{
    while (v->next_cp < v->n_cps && v->cps[v->order[v->next_cp]].seq <= seq) {
        const ckpt *c = &v->cps[v->order[v->next_cp++]];
        if (!c->ok || c->seq != seq)
            continue;
        if (memcmp(c->head, hash, HEX) == 0) {
            v->last_match_seq = seq;
            continue;
        }
        if (v->last_match_seq > 0)
            finding(v, AUDIT_FINDING_FORGED_CHECKPOINT, CHECKPOINTS, c->line, c->seq,
                    "its signed head is not the hash of record %" PRIu64 " (%s:%" PRIu64
                    "): records %" PRIu64 "..%" PRIu64 " were rewritten and re-chained after it "
                    "was signed, or the checkpoint was replaced",
                    seq, file, line, v->last_match_seq + 1, seq);
        else
            finding(v, AUDIT_FINDING_FORGED_CHECKPOINT, CHECKPOINTS, c->line, c->seq,
                    "its signed head is not the hash of record %" PRIu64 " (%s:%" PRIu64
                    "): records up to %" PRIu64 " were rewritten and re-chained after it was "
                    "signed, or the checkpoint was replaced",
                    seq, file, line, seq);
    }
}

static int chain_check(verifier *v, ward_err *err)
{
    audit_verify_report *rep = v->rep;
    audit_reader *r = v->r;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_MD *sha = EVP_MD_fetch(NULL, "SHA256", NULL);
    char prev[HEX], got[HEX];
    uint64_t expected = 1, prev_line = 0;
    size_t seg_now = SIZE_MAX, prev_seg = 0;
    const char *line;
    size_t len;
    int rc = 0, more;
    memset(prev, '0', HEX);
    if (md == NULL || sha == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    while ((more = audit_reader_next(r, &line, &len, err)) > 0) {
        const char *file = audit_reader_file(r);
        uint64_t lno = audit_reader_line(r), seq = 0;
        size_t at = 0;
        if (rep->records > 0 && (rep->records & 0xFFFF) == 0 && v->opts->progress != NULL) {
            uint64_t done, total;
            audit_reader_progress(r, &done, &total);
            v->opts->progress(done, total, rep->records, v->opts->data);
        }
        const char *bad = line_shape(line, len, &seq, &at);
        if (r->line_seg != seg_now) { /* the first line of a segment */
            const seg *s = &r->segs[r->line_seg];
            seg_now = r->line_seg;
            if (bad == NULL && s->first > expected && seq == s->first) {
                char missing[64];
                seg_name(missing, sizeof(missing), expected);
                finding(v, AUDIT_FINDING_TRUNCATED, missing, 0, expected,
                        "records %" PRIu64 "..%" PRIu64 " are missing: no segment holds them "
                        "(%s, the next one, begins at seq %" PRIu64 ")",
                        expected, s->first - 1, s->name, s->first);
                goto stop;
            }
            if (bad == NULL && seq != s->first)
                note(rep, "%s: its first record is seq %" PRIu64 ", not the seq its name gives",
                     s->name, seq);
        }
        if (r->no_newline) {
            finding(v, AUDIT_FINDING_TRUNCATED, file, lno, expected,
                    "this sealed segment ends in the middle of a line (no final newline): it "
                    "was cut");
            goto stop;
        }
        if (bad != NULL) {
            finding(v, AUDIT_FINDING_MODIFIED, file, lno, expected,
                    "not a record line: %s (expected seq %" PRIu64 " here)", bad, expected);
            goto stop;
        }
        /* H = SHA-256 of the bytes before ,"hash": */
        uint8_t h[32];
        unsigned hl = 0;
        if (EVP_DigestInit_ex2(md, sha, NULL) != 1 ||
            EVP_DigestUpdate(md, line, len - HASH_TAIL) != 1 ||
            EVP_DigestFinal_ex(md, h, &hl) != 1) {
            ward_err_set(err, "SHA-256 failed");
            rc = WARD_EIO;
            goto fail;
        }
        hex_encode(got, h, 32);
        const char *hash = line + len - HASH_TAIL + 9;
        if (memcmp(got, hash, HEX) != 0) {
            finding(v, AUDIT_FINDING_MODIFIED, file, lno, seq,
                    "the record's hash does not match its bytes: it was changed after it was "
                    "written");
            goto stop;
        }
        if (seq > expected) {
            char where[64];
            uint64_t wline = 0;
            if (seq_ahead(r, expected, where, sizeof(where), &wline))
                finding(v, AUDIT_FINDING_REORDERED, file, lno, seq,
                        "seq %" PRIu64 " comes before seq %" PRIu64 " (%s:%" PRIu64
                        "): records are out of order",
                        seq, expected, where, wline);
            else if (seq == expected + 1)
                finding(v, AUDIT_FINDING_DELETED, file, lno, expected,
                        "record %" PRIu64 " is missing: seq %" PRIu64 " follows seq %" PRIu64
                        " here",
                        expected, seq, expected - 1);
            else
                finding(v, AUDIT_FINDING_DELETED, file, lno, expected,
                        "records %" PRIu64 "..%" PRIu64 " are missing: seq %" PRIu64
                        " follows seq %" PRIu64 " here",
                        expected, seq - 1, seq, expected - 1);
            goto stop;
        }
        if (seq < expected) {
            finding(v, AUDIT_FINDING_REORDERED, file, lno, seq,
                    "seq %" PRIu64 " comes after seq %" PRIu64
                    ": a record repeats or records are out of order",
                    seq, expected - 1);
            goto stop;
        }
        if (memcmp(line + len - HASH_TAIL - 1 - HEX, prev, HEX) != 0) {
            if (expected == 1)
                finding(v, AUDIT_FINDING_MODIFIED, file, lno, seq,
                        "the first record's prev is not 64 zeros");
            else
                finding(v, AUDIT_FINDING_MODIFIED, file, lno, seq,
                        "its prev is not the hash of record %" PRIu64 " (%s:%" PRIu64
                        "): a record was replaced, inserted or re-chained here",
                        seq - 1, r->segs[prev_seg].name, prev_line);
            goto stop;
        }
        if (rep->records == 0)
            rep->first_seq = seq;
        rep->records++;
        rep->bytes += len + 1;
        rep->last_seq = seq;
        if (is_gap(line, len, at))
            rep->gaps++;
        memcpy(prev, hash, HEX);
        prev_seg = r->line_seg;
        prev_line = lno;
        expected = seq + 1;
        if (v->next_cp < v->n_cps && v->cps[v->order[v->next_cp]].seq <= seq)
            check_checkpoints_at(v, seq, hash, file, lno);
    }
    rc = more;
    goto fail;
stop:
    v->stopped = true;
fail:
    EVP_MD_free(sha);
    EVP_MD_CTX_free(md);
    return rc;
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int audit_verify(const audit_verify_options *opts, audit_verify_report *out, ward_err *err)
{
    verifier v = {opts, out, NULL, NULL, NULL, 0, NULL, 0, 0, 0, false};
    char keypath[4096];
    bool have_cps = false;
    int rc = 0;
    double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    memset(out, 0, sizeof(*out));
    if (opts->dir == NULL) {
        ward_err_set(err, "no audit folder given");
        return WARD_EINVAL;
    }
    WARD_TRY(reader_new(opts->dir, &v.r));
    WARD_TRY(list_segments(v.r, err));
    out->segments = v.r->n_segs;

    /* the key: --key, or the one beside the log */
    if (opts->key_file != NULL) {
        WARD_TRY(key_load(opts->key_file, &v.key, err));
    } else {
        snprintf(keypath, sizeof(keypath), "%s/" PUBKEY, opts->dir);
        out->key_from_dir = true;
        if (access(keypath, F_OK) == 0)
            WARD_TRY(key_load(keypath, &v.key, err));
    }
    if (v.key != NULL) {
        out->have_key = true;
        if (key_id(v.key, out->key_id) < 0) {
            ward_err_set(err, "cannot compute the key id");
            rc = WARD_EINVAL;
            goto fail;
        }
    }
    WARD_TRY(checkpoints_load(&v, &have_cps, err));
    if (v.n_cps > 0 && v.key == NULL) {
        ward_err_set(err, "%s/" PUBKEY " is missing: pass the checkpoints' public key with --key",
                     opts->dir);
        rc = WARD_ENOENT;
        goto fail;
    }
    if (v.r->n_segs == 0 && !have_cps && v.key == NULL) {
        ward_err_set(err,
                     "%s: no segment-*.jsonl, " CHECKPOINTS " or " PUBKEY ": not an audit "
                     "trail",
                     opts->dir);
        rc = WARD_ENOENT;
        goto fail;
    }
    if (v.r->ignored > 0)
        note(out, "%s%s: not a segment name (segment-<20 digits>.jsonl); ignored",
             v.r->ignored_name, v.r->ignored > 1 ? " and others" : "");
    size_t bad_key = 0, valid = 0;
    for (size_t i = 0; i < v.n_cps; i++)
        valid += v.cps[i].ok;
    for (size_t i = 0; i < out->n_findings && i < AUDIT_VERIFY_MAX_FINDINGS; i++)
        bad_key += strstr(out->findings[i].detail, "not with the key given") != NULL;
    if (v.n_cps > 0 && valid == 0 && bad_key > 0)
        note(out, "no checkpoint is signed with the key given (id %s): is it the right key?",
             out->key_id);

    WARD_TRY(chain_check(&v, err));

    /* the trail must reach the highest seq a valid checkpoint vouches for */
    for (size_t i = 0; i < v.n_cps; i++)
        if (v.cps[i].ok && v.cps[i].seq > out->checkpoint_seq)
            out->checkpoint_seq = v.cps[i].seq;
    if (!v.stopped && out->checkpoint_seq > out->last_seq) {
        const ckpt *top = NULL;
        for (size_t i = 0; i < v.n_cps; i++)
            if (v.cps[i].ok && v.cps[i].seq == out->checkpoint_seq && top == NULL)
                top = &v.cps[i];
        char file[64];
        uint64_t line = 0;
        if (v.r->n_segs > 0) {
            size_t last = v.r->n_segs - 1;
            snprintf(file, sizeof(file), "%s", v.r->segs[last].name);
            line = v.r->torn && v.r->torn_seg == last ? v.r->torn_line
                   : v.r->line_seg == last            ? v.r->line_no + 1
                                                      : 1;
        } else {
            seg_name(file, sizeof(file), 1);
        }
        finding(&v, AUDIT_FINDING_TRUNCATED, file, line, out->last_seq + 1,
                "the trail ends at seq %" PRIu64 " but a checkpoint (" CHECKPOINTS ":%" PRIu64
                ") vouches for seq %" PRIu64 ": records %" PRIu64 "..%" PRIu64 " were cut off",
                out->last_seq, top->line, out->checkpoint_seq, out->last_seq + 1,
                out->checkpoint_seq);
    }
    if (v.r->torn) {
        uint64_t torn_seq = out->last_seq + 1;
        note(out,
             "%s:%" PRIu64 ": a torn last line (%" PRIu64 " bytes, seq %" PRIu64
             "?, an interrupted write) was not checked",
             v.r->segs[v.r->torn_seg].name, v.r->torn_line, v.r->torn_bytes, torn_seq);
    }
    if (!have_cps && out->records > 0)
        note(out, "no " CHECKPOINTS ": nothing vouches for this trail; a cut or rewritten end "
                  "cannot be detected");
    if (opts->progress != NULL) {
        uint64_t done, total;
        audit_reader_progress(v.r, &done, &total);
        opts->progress(done, total, out->records, opts->data);
    }
    size_t kept =
        out->n_findings < AUDIT_VERIFY_MAX_FINDINGS ? out->n_findings : AUDIT_VERIFY_MAX_FINDINGS;
    qsort(out->findings, kept, sizeof(out->findings[0]), finding_cmp);
fail:
    out->seconds = clock_s(CLOCK_MONOTONIC) - t0;
    out->cpu_seconds = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    EVP_PKEY_free(v.key);
    free(v.cps);
    free(v.order);
    audit_reader_free(v.r);
    return rc;
}
