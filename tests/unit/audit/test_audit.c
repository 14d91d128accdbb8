/* test_audit.c - unit tests of the audit log: JSON lines, escaping, rings, overflow policies, failures, syncing beside the writer, the chained and signed trail, crash recovery */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "audit/audit.h"
#include "audit/audit_int.h" /* audit_json_str */
#include "common/ward.h"

#define S(lit) ((audit_str){(lit), sizeof(lit) - 1}) /* a literal as a slice, NUL bytes included */
#define NODE "spiffe://example.org/ns/shop/sa/proxy"

static char tmpdir[64];
static char dir[128];  /* tmpdir/audit: the log's folder */
static char file[200]; /* dir/segment-00000000000000000001.jsonl: the first segment */
static char cpfile[200]; /* dir/checkpoints.jsonl */

/* ---- helpers --------------------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

#define SEG1 "segment-00000000000000000001.jsonl"

static void set_paths(void)
{
    snprintf(file, sizeof(file), "%s/" SEG1, dir);
    snprintf(cpfile, sizeof(cpfile), "%s/checkpoints.jsonl", dir);
}

static int setup(void **state)
{
    strcpy(tmpdir, "/tmp/ward-audit-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(dir, sizeof(dir), "%s/audit", tmpdir);
    set_paths();
    return 0;
}

static void sched_restore(void);

static int teardown(void **state)
{
    sched_restore();
    chmod(tmpdir, 0700);
    return nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static audit_options opts_for(audit_overflow overflow, uint32_t ring_slots)
{
    audit_options o;
    audit_options_init(&o);
    o.dir = dir;
    o.node = NODE;
    o.overflow = overflow;
    o.ring_slots = ring_slots;
    return o;
}

static audit_log *open_log(const audit_options *o)
{
    audit_log *log = NULL;
    ward_err err;
    ward_err_clear(&err);
    int rc = audit_log_open(o, &log, &err);
    if (rc != 0)
        fail_msg("audit_log_open: %s (%s)", err.msg, ward_strerror(rc));
    return log;
}

static void close_log(audit_log *log)
{
    ward_err err;
    ward_err_clear(&err);
    int rc = audit_log_close(log, &err);
    if (rc != 0)
        fail_msg("audit_log_close: %s", err.msg);
}

static audit_producer *producer(audit_log *log)
{
    audit_producer *p = NULL;
    assert_int_equal(audit_log_producer_new(log, &p), 0);
    assert_non_null(p);
    return p;
}

/* A minimal record: decision d, reason as given. */
static audit_record rec_of(audit_verdict d, const char *reason)
{
    audit_record r;
    audit_record_init(&r);
    r.decision = d;
    r.reason = audit_cstr(reason);
    return r;
}

static char *read_all(const char *path, size_t *len)
{
    char *data = NULL;
    size_t n = 0;
    ward_err err;
    if (ward_file_read(path, (size_t)1 << 30, &data, &n, &err) != 0)
        fail_msg("reading %s: %s", path, err.msg);
    if (len != NULL)
        *len = n;
    return data;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The segment files of dir in seq order (20-digit names sort as numbers). */
static size_t segment_names(const char *d, char ***out)
{
    DIR *dd = opendir(d);
    size_t n = 0;
    *out = NULL;
    if (dd == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(dd)) != NULL) {
        if (strncmp(e->d_name, "segment-", 8) != 0 || strlen(e->d_name) != 34 ||
            strcmp(e->d_name + 28, ".jsonl") != 0)
            continue;
        *out = realloc(*out, (n + 1) * sizeof(**out));
        assert_non_null(*out);
        (*out)[n++] = strdup(e->d_name);
    }
    closedir(dd);
    if (n > 1)
        qsort(*out, n, sizeof(**out), name_cmp);
    return n;
}

static void names_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Every segment's bytes, in order. */
static char *slurp(size_t *len)
{
    char **names;
    size_t n = segment_names(dir, &names), total = 0;
    char *all = calloc(1, 1);
    for (size_t i = 0; i < n; i++) {
        char path[400];
        size_t l;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        char *d = read_all(path, &l);
        all = realloc(all, total + l + 1);
        memcpy(all + total, d, l);
        total += l;
        all[total] = '\0';
        free(d);
    }
    names_free(names, n);
    if (len != NULL)
        *len = total;
    return all;
}

/* ---- an independent verifier of docs/audit.md (OpenSSL and cJSON only) ---------------- */

typedef struct trail {
    uint64_t records, last_seq, segments;
    uint64_t checkpoints, cp_seq; /* the last checkpoint's seq (0: none) */
    bool torn;                    /* a torn last line was skipped (allow_torn) */
    char *cp_segment;             /* the last checkpoint's "segment" */
} trail;

static void hex_of(char *out, const unsigned char *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", in[i]);
}

static bool is_hex64(const char *s, size_t n)
{
    return n == 64 && strspn(s, "0123456789abcdef") >= 64;
}

/* Checks one record line against the doc; NULL if fine, else what is wrong.
 * hash_out: the line's hash (hex, NUL-terminated). */
static const char *check_record(const char *line, size_t n, uint64_t want_seq, const char *want_prev,
                                char hash_out[65])
{
    static const char tail[] = "\"}";
    const char *h = n > 75 ? line + n - 75 : NULL; /* ,"hash":"<64>"} is 75 bytes */
    if (h == NULL || memcmp(h, ",\"hash\":\"", 9) != 0 || memcmp(line + n - 2, tail, 2) != 0 ||
        !is_hex64(h + 9, 64))
        return "does not end with a hash";
    unsigned char md[32];
    unsigned int mdl;
    EVP_Digest(line, (size_t)(h - line), md, &mdl, EVP_sha256(), NULL);
    hex_of(hash_out, md, 32);
    if (memcmp(hash_out, h + 9, 64) != 0)
        return "hash does not match";
    cJSON *j = cJSON_ParseWithLength(line, n);
    const char *why = NULL;
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(j, "seq");
    const cJSON *prev = cJSON_GetObjectItemCaseSensitive(j, "prev");
    const cJSON *hash = cJSON_GetObjectItemCaseSensitive(j, "hash");
    if (j == NULL || !cJSON_IsNumber(seq) || !cJSON_IsString(prev) || !cJSON_IsString(hash))
        why = "not a record";
    else if (seq->valuedouble != (double)want_seq)
        why = "seq out of order";
    else if (strcmp(prev->valuestring, want_prev) != 0)
        why = "prev is not the previous hash";
    else if (strcmp(hash->valuestring, hash_out) != 0)
        why = "hash key differs";
    else if (strcmp(j->child->string, "v") != 0 || strcmp(j->child->next->string, "seq") != 0 ||
             strcmp(cJSON_GetArrayItem(j, cJSON_GetArraySize(j) - 2)->string, "prev") != 0)
        why = "keys out of order";
    cJSON_Delete(j);
    return why;
}

static EVP_PKEY *load_pub(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/checkpoint.pub", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("no %s", path);
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL || EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519)
        fail_msg("%s is not an Ed25519 public key", path);
    return k;
}

/* The doc's message, built here by hand (not with audit_checkpoint_message). */
static char *doc_message(const cJSON *cp, size_t *len)
{
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(cp, "node");
    char *m = NULL;
    int n = asprintf(&m, "ward-audit-checkpoint/1\n%s\n%.0f\n%s\n%s\n",
                     cJSON_IsString(node) ? node->valuestring : "",
                     cJSON_GetObjectItemCaseSensitive(cp, "seq")->valuedouble,
                     cJSON_GetObjectItemCaseSensitive(cp, "head")->valuestring,
                     cJSON_GetObjectItemCaseSensitive(cp, "ts")->valuestring);
    assert_true(n > 0);
    *len = (size_t)n;
    return m;
}

static bool sig_ok(EVP_PKEY *pub, const char *msg, size_t len, const char *b64)
{
    unsigned char sig[100];
    if (strlen(b64) != 88 || EVP_DecodeBlock(sig, (const unsigned char *)b64, 88) != 66)
        return false;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok = EVP_DigestVerifyInit(c, NULL, NULL, NULL, pub) == 1 &&
              EVP_DigestVerify(c, sig, 64, (const unsigned char *)msg, len) == 1;
    EVP_MD_CTX_free(c);
    return ok;
}

/* Verifies dir as docs/audit.md says: every line's hash, seq contiguous from
 * 1, prev links across segments, segment names, every checkpoint's
 * signature, key id and head, and nothing cut below the last checkpoint.
 * allow_torn: the last line of the last segment (and of checkpoints.jsonl)
 * may be torn, as a crash leaves it. Fails the test on any finding. */
static trail verify_trail(bool allow_torn)
{
    trail t = {0};
    char **names;
    size_t nseg = segment_names(dir, &names);
    char prev[65];
    memset(prev, '0', 64);
    prev[64] = '\0';
    size_t cap = 1024;
    char (*hashes)[65] = malloc(cap * 65); /* [seq - 1] */
    char (*segof)[40] = malloc(cap * 40);
    assert_non_null(hashes);
    for (size_t i = 0; i < nseg; i++) {
        char path[400];
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        char *data = read_all(path, &len);
        bool last_seg = i + 1 == nseg;
        if (len == 0 && !last_seg)
            fail_msg("%s is empty", names[i]);
        if (len > 0 && strtoull(names[i] + 8, NULL, 10) != t.last_seq + 1)
            fail_msg("%s does not start at seq %llu", names[i], (unsigned long long)t.last_seq + 1);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        if (!last_seg && (st.st_mode & 0777) != 0400)
            fail_msg("%s is not sealed (mode %o)", names[i], st.st_mode & 0777);
        size_t line_no = 0;
        for (size_t at = 0; at < len; line_no++) {
            char *nl = memchr(data + at, '\n', len - at);
            size_t n = nl != NULL ? (size_t)(nl - data) - at : len - at;
            char h[65];
            const char *why = nl == NULL ? "no newline" : check_record(data + at, n, t.last_seq + 1, prev, h);
            bool is_last = last_seg && (nl == NULL || (size_t)(nl - data) + 1 == len);
            if (why != NULL) {
                if (allow_torn && is_last) {
                    t.torn = true;
                    break;
                }
                fail_msg("%s:%zu: %s: %.*s", names[i], line_no + 1, why, (int)(n > 300 ? 300 : n), data + at);
            }
            if (t.last_seq == cap) {
                cap *= 2;
                hashes = realloc(hashes, cap * 65);
                segof = realloc(segof, cap * 40);
            }
            memcpy(hashes[t.last_seq], h, 65);
            snprintf(segof[t.last_seq], 40, "%s", names[i]);
            memcpy(prev, h, 65);
            t.last_seq++;
            t.records++;
            at += n + 1;
        }
        free(data);
    }
    t.segments = nseg;
    names_free(names, nseg);

    size_t len;
    char *cps = access(cpfile, F_OK) == 0 ? read_all(cpfile, &len) : (len = 0, calloc(1, 1));
    EVP_PKEY *pub = len > 0 ? load_pub() : NULL;
    char kid[65] = "";
    if (pub != NULL) {
        unsigned char raw[32], md[32];
        size_t rl = sizeof(raw);
        unsigned int mdl;
        assert_int_equal(EVP_PKEY_get_raw_public_key(pub, raw, &rl), 1);
        EVP_Digest(raw, rl, md, &mdl, EVP_sha256(), NULL);
        hex_of(kid, md, 8);
    }
    for (size_t at = 0; at < len;) {
        char *nl = memchr(cps + at, '\n', len - at);
        if (nl == NULL) {
            if (allow_torn)
                break;
            fail_msg("checkpoints.jsonl: a torn last line");
        }
        size_t n = (size_t)(nl - cps) - at;
        cJSON *cp = cJSON_ParseWithLength(cps + at, n);
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(cp, "seq");
        const cJSON *head = cJSON_GetObjectItemCaseSensitive(cp, "head");
        const cJSON *seg = cJSON_GetObjectItemCaseSensitive(cp, "segment");
        const cJSON *key = cJSON_GetObjectItemCaseSensitive(cp, "key");
        const cJSON *sig = cJSON_GetObjectItemCaseSensitive(cp, "sig");
        if (!cJSON_IsNumber(seq) || !cJSON_IsString(head) || !cJSON_IsString(seg) ||
            !cJSON_IsString(key) || !cJSON_IsString(sig) ||
            !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cp, "ts")))
            fail_msg("checkpoint %llu is malformed: %.*s", (unsigned long long)t.checkpoints + 1, (int)n, cps + at);
        size_t ml;
        char *msg = doc_message(cp, &ml);
        if (!sig_ok(pub, msg, ml, sig->valuestring))
            fail_msg("checkpoint %llu: bad signature", (unsigned long long)t.checkpoints + 1);
        free(msg);
        assert_string_equal(key->valuestring, kid);
        uint64_t s = (uint64_t)seq->valuedouble;
        if (s < t.cp_seq)
            fail_msg("checkpoint %llu goes back to seq %llu", (unsigned long long)t.checkpoints + 1, (unsigned long long)s);
        if (s == 0 || s > t.last_seq)
            fail_msg("checkpoint for seq %llu but the trail ends at %llu: truncated below a checkpoint",
                     (unsigned long long)s, (unsigned long long)t.last_seq);
        if (strcmp(head->valuestring, hashes[s - 1]) != 0)
            fail_msg("checkpoint for seq %llu: head is not that record's hash", (unsigned long long)s);
        if (strcmp(seg->valuestring, segof[s - 1]) != 0)
            fail_msg("checkpoint for seq %llu names %s, the record is in %s", (unsigned long long)s,
                     seg->valuestring, segof[s - 1]);
        t.cp_seq = s;
        free(t.cp_segment);
        t.cp_segment = strdup(seg->valuestring);
        t.checkpoints++;
        cJSON_Delete(cp);
        at += n + 1;
    }
    EVP_PKEY_free(pub);
    free(cps);
    free(hashes);
    free(segof);
    return t;
}

static void trail_free(trail *t)
{
    free(t->cp_segment);
    t->cp_segment = NULL;
}

/* Calls fn with each line of the file parsed (freed after); every line must
 * be a JSON object ending in '\n' with no raw control byte inside. */
static size_t scan_lines(void (*fn)(const cJSON *line, size_t i, void *ctx), void *ctx)
{
    size_t len, n = 0;
    char *data = slurp(&len);
    for (size_t at = 0; at < len; n++) {
        char *nl = memchr(data + at, '\n', len - at);
        assert_non_null(nl); /* the last line ends too */
        size_t llen = (size_t)(nl - data) - at;
        for (const char *c = data + at; c < nl; c++)
            if ((unsigned char)*c < 0x20)
                fail_msg("line %zu has a raw control byte 0x%02x", n + 1, (unsigned char)*c);
        cJSON *j = cJSON_ParseWithLength(data + at, llen);
        if (j == NULL || !cJSON_IsObject(j))
            fail_msg("line %zu is not a JSON object: %.*s", n + 1, (int)llen, data + at);
        fn(j, n, ctx);
        cJSON_Delete(j);
        at += llen + 1;
    }
    free(data);
    return n;
}

/* The file as parsed lines (for small files). */
typedef struct lines {
    cJSON **v;
    size_t n;
} lines;

static void keep_line(const cJSON *line, size_t i, void *ctx)
{
    lines *l = ctx;
    l->v = realloc(l->v, (i + 1) * sizeof(*l->v));
    assert_non_null(l->v);
    l->v[i] = cJSON_Duplicate(line, true);
    l->n = i + 1;
}

/* The trail's records as parsed lines (for small trails), after verify_trail
 * found the chain and the checkpoints intact. */
static lines read_lines(void)
{
    lines l = {NULL, 0};
    trail t = verify_trail(false);
    trail_free(&t);
    scan_lines(keep_line, &l);
    return l;
}

static void lines_free(lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        cJSON_Delete(l->v[i]);
    free(l->v);
}

static const cJSON *get(const cJSON *o, const char *path) /* "a.b" */
{
    char key[64];
    const char *dot;
    while ((dot = strchr(path, '.')) != NULL) {
        snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
        o = cJSON_GetObjectItemCaseSensitive(o, key);
        path = dot + 1;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, path);
    if (v == NULL)
        fail_msg("no key %s", path);
    return v;
}

static void assert_str_at(const cJSON *o, const char *path, const char *want)
{
    const cJSON *v = get(o, path);
    if (!cJSON_IsString(v))
        fail_msg("%s is not a string", path);
    assert_string_equal(v->valuestring, want);
}

static void assert_num_at(const cJSON *o, const char *path, double want)
{
    const cJSON *v = get(o, path);
    if (!cJSON_IsNumber(v))
        fail_msg("%s is not a number", path);
    assert_true(v->valuedouble == want);
}

static void assert_null_at(const cJSON *o, const char *path)
{
    if (!cJSON_IsNull(get(o, path)))
        fail_msg("%s is not null", path);
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* seq of every line is 1, 2, 3, ... */
static void assert_seq_contiguous(const lines *l, uint64_t first)
{
    for (size_t i = 0; i < l->n; i++)
        if (num(l->v[i], "seq") != (double)(first + i))
            fail_msg("line %zu has seq %.0f, want %llu", i + 1, num(l->v[i], "seq"),
                     (unsigned long long)(first + i));
}

/* A thread that appends one record and says when it returned. */
typedef struct appender {
    audit_log *log;
    audit_producer *p;
    audit_record rec;
    atomic_int done;
    int rc;
    pthread_t t;
} appender;

static void *appender_main(void *arg)
{
    appender *a = arg;
    a->rc = audit_log_append(a->log, a->p, &a->rec);
    atomic_store(&a->done, 1);
    return NULL;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- what fdatasync and fsync made durable ------------------------------------------ */

/* This program's own fdatasync and fsync stand in for libc's everywhere in it
 * (the log's syncer thread included) and call the kernel directly. While
 * sync_fail is set, fdatasync fails with EIO (a dying disk). In a child that
 * sets durable_on, each successful call notes in shared memory the size the
 * file had when the call began (for the folder: the segments it named then),
 * in order. After the child is killed, check_sync_history() replays them
 * (had the power failed right after any of them, would every checkpoint
 * then on disk vouch for records then on disk?), and cut_to_durable() leaves
 * the trail as a power loss at the kill would have: every file cut back to
 * what was synced, every segment whose name was never synced gone. */
typedef struct durable {
    ino_t ino;
    off_t size;
    bool named; /* a folder's fsync made the name durable */
} durable;

enum { DURABLE_MAX = 4096, EVENTS_MAX = 1 << 16 };

typedef struct durable_log {
    size_t n, n_ev;
    durable now[DURABLE_MAX]; /* each file as its last sync left it */
    durable ev[EVENTS_MAX];   /* every note, in order, from durable_reset() on */
} durable_log;

static _Atomic bool sync_fail;
static bool durable_on;
static durable_log *dur; /* MAP_SHARED with the children */
static pthread_mutex_t dur_mu = PTHREAD_MUTEX_INITIALIZER;

static durable *durable_of(ino_t ino)
{
    for (size_t i = 0; i < dur->n; i++)
        if (dur->now[i].ino == ino)
            return &dur->now[i];
    if (dur->n == DURABLE_MAX)
        return NULL;
    dur->now[dur->n] = (durable){.ino = ino};
    return &dur->now[dur->n++];
}

static void durable_note(ino_t ino, off_t size, bool named)
{
    durable *d = durable_of(ino);
    if (d != NULL && d->size < size)
        d->size = size;
    if (d != NULL && named)
        d->named = true;
    if (dur->n_ev < EVENTS_MAX) /* the entry before the count: a kill leaves no half entry */
        dur->ev[dur->n_ev] = (durable){.ino = ino, .size = size, .named = named};
    dur->n_ev++;
}

/* The inodes of dir's segments (at most max). */
static size_t segment_inodes(ino_t *out, size_t max)
{
    DIR *dd = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    while (dd != NULL && (e = readdir(dd)) != NULL && n < max)
        if (strncmp(e->d_name, "segment-", 8) == 0)
            out[n++] = e->d_ino;
    if (dd != NULL)
        closedir(dd);
    return n;
}

static int sync_call(long nr, int fd)
{
    if (nr == SYS_fdatasync && atomic_load(&sync_fail)) {
        errno = EIO;
        return -1;
    }
    struct stat st;
    static ino_t names[1024];
    size_t n = 0;
    bool note = durable_on && fstat(fd, &st) == 0;
    if (note)
        pthread_mutex_lock(&dur_mu);
    if (note && S_ISDIR(st.st_mode))
        n = segment_inodes(names, 1024);
    int rc = (int)syscall(nr, fd);
    if (note && rc == 0 && !S_ISDIR(st.st_mode))
        durable_note(st.st_ino, st.st_size, false);
    for (size_t i = 0; note && rc == 0 && i < n; i++)
        durable_note(names[i], 0, true);
    if (note)
        pthread_mutex_unlock(&dur_mu);
    return rc;
}

int fdatasync(int fd)
{
    return sync_call(SYS_fdatasync, fd);
}

int fsync(int fd)
{
    return sync_call(SYS_fsync, fd);
}

/* Starts noting: everything in dir now counts as durable. */
static void durable_reset(void)
{
    if (dur == NULL) {
        void *m =
            mmap(NULL, sizeof(*dur), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        assert_true(m != MAP_FAILED);
        dur = m;
    }
    dur->n = dur->n_ev = 0;
    DIR *dd = opendir(dir);
    struct dirent *e;
    while (dd != NULL && (e = readdir(dd)) != NULL) {
        char path[400];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode))
            durable_note(st.st_ino, st.st_size, true);
    }
    if (dd != NULL)
        closedir(dd);
}

static size_t count_nl(const char *p, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i] == '\n';
    return k;
}

/* The seq of a checkpoint line (0 if none). */
static uint64_t cp_line_seq(const char *line, size_t n)
{
    const char *at = memmem(line, n, "\"seq\":", 6);
    return at != NULL ? strtoull(at + 6, NULL, 10) : 0;
}

/* Replays the child's syncs (see above): after each sync of
 * checkpoints.jsonl, every checkpoint in its synced part must be for a
 * record the segments' syncs had made durable by then (the records of every
 * segment before it complete). Returns how many syncs it checked. */
static size_t check_sync_history(void)
{
    struct stat st;
    if (stat(cpfile, &st) < 0)
        return 0; /* killed before there was one */
    assert_true(dur->n_ev <= EVENTS_MAX);
    ino_t cp_ino = st.st_ino;
    size_t cp_len;
    char *cps = read_all(cpfile, &cp_len);
    char **names;
    size_t nseg = segment_names(dir, &names);
    struct {
        ino_t ino;
        uint64_t first;
        size_t lines;
        off_t *ends; /* of each line, '\n' included */
        off_t size;  /* synced */
        bool named;
    } *seg = calloc(nseg + 1, sizeof(*seg));
    for (size_t i = 0; i < nseg; i++) {
        char path[400];
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        assert_int_equal(stat(path, &st), 0);
        seg[i].ino = st.st_ino;
        seg[i].first = strtoull(names[i] + 8, NULL, 10);
        char *data = read_all(path, &len);
        seg[i].ends = malloc((count_nl(data, len) + 1) * sizeof(off_t));
        for (size_t k = 0; k < len; k++)
            if (data[k] == '\n')
                seg[i].ends[seg[i].lines++] = (off_t)k + 1;
        free(data);
    }
    size_t checks = 0;
    for (size_t e = 0; e < dur->n_ev; e++) {
        const durable *ev = &dur->ev[e];
        for (size_t i = 0; i < nseg; i++) {
            if (seg[i].ino != ev->ino)
                continue;
            seg[i].named |= ev->named;
            if (seg[i].size < ev->size)
                seg[i].size = ev->size;
        }
        if (ev->ino != cp_ino || ev->named)
            continue;
        uint64_t synced = 0; /* the last record a power loss now would keep */
        for (size_t i = 0; i < nseg && seg[i].named; i++) {
            size_t k = 0;
            while (k < seg[i].lines && seg[i].ends[k] <= seg[i].size)
                k++;
            if (k > 0)
                synced = seg[i].first + k - 1;
            if (k < seg[i].lines)
                break;
        }
        for (size_t at = 0; at < (size_t)ev->size && at < cp_len;) {
            char *nl = memchr(cps + at, '\n', cp_len - at);
            if (nl == NULL || (size_t)(nl - cps) >= (size_t)ev->size)
                break;
            uint64_t seq = cp_line_seq(cps + at, (size_t)(nl - cps) - at);
            if (seq > synced)
                fail_msg("sync %zu of checkpoints.jsonl (%lld bytes): a checkpoint for seq %llu, "
                         "but only records up to %llu were synced",
                         e, (long long)ev->size, (unsigned long long)seq,
                         (unsigned long long)synced);
            at = (size_t)(nl - cps) + 1;
        }
        checks++;
    }
    for (size_t i = 0; i < nseg; i++)
        free(seg[i].ends);
    free(seg);
    names_free(names, nseg);
    free(cps);
    return checks;
}

/* The trail as a power loss would have left it (see above). Returns the
 * bytes of records lost. */
static uint64_t cut_to_durable(void)
{
    uint64_t lost = 0;
    DIR *dd = opendir(dir);
    if (dd == NULL)
        return 0; /* killed before the folder was made */
    struct dirent *e;
    while ((e = readdir(dd)) != NULL) {
        bool seg = strncmp(e->d_name, "segment-", 8) == 0;
        if (!seg && strcmp(e->d_name, "checkpoints.jsonl") != 0)
            continue;
        char path[400];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        assert_int_equal(lstat(path, &st), 0);
        durable *d = NULL;
        for (size_t i = 0; i < dur->n; i++)
            if (dur->now[i].ino == st.st_ino)
                d = &dur->now[i];
        if (seg && (d == NULL || !d->named)) {
            lost += (uint64_t)st.st_size;
            assert_int_equal(unlink(path), 0);
            continue;
        }
        off_t keep = d != NULL ? d->size : 0;
        if (keep < st.st_size) {
            lost += seg ? (uint64_t)(st.st_size - keep) : 0;
            assert_int_equal(truncate(path, keep), 0);
        }
    }
    closedir(dd);
    return lost;
}

/* ======================================================================== */
/* records as JSON                                                            */
/* ======================================================================== */

static void test_record_round_trip(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_record r;
    audit_record_init(&r);
    r.ts_ns = 1714566896123456789LL; /* 2024-05-01T12:34:56.123456789Z */
    r.direction = AUDIT_INBOUND;
    r.decision = AUDIT_DENY;
    r.policy = audit_cstr("shop/payments");
    r.rule = 2;
    r.reason = audit_cstr("rule 2 of shop/payments denies");
    r.audit = true;
    r.has_dry_run = true;
    r.dry_run_decision = AUDIT_ALLOW;
    r.dry_run_policy = audit_cstr("shop/next");
    r.dry_run_rule = 0;
    r.source_principal = audit_cstr("spiffe://example.org/ns/shop/sa/checkout");
    r.source_ip = audit_cstr("10.0.0.7");
    r.source_port = 41234;
    r.destination_service = audit_cstr("payments");
    r.destination_principal = audit_cstr("spiffe://example.org/ns/shop/sa/payments");
    r.destination_port = 8443;
    r.method = audit_cstr("GET");
    r.host = audit_cstr("payments");
    r.path = audit_cstr("/v1/items");
    r.protocol = audit_cstr("HTTP/1.1");
    r.status = 403;
    r.bundle = audit_cstr("rev-7");
    r.trace_id = audit_cstr("4bf92f3577b34da6a3ce929d0e0e4736");
    r.latency_ns = 1830;
    r.peer_cert_sha256 =
        audit_cstr("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    assert_int_equal(audit_log_append(log, p, &r), 0);

    audit_record bare;
    audit_record_init(&bare);
    bare.direction = AUDIT_OUTBOUND;
    bare.decision = AUDIT_ALLOW;
    assert_int_equal(audit_log_append(log, p, &bare), 0);
    close_log(log);

    lines l = read_lines();
    assert_int_equal(l.n, 2);
    const cJSON *a = l.v[0];
    assert_num_at(a, "v", 1);
    assert_num_at(a, "seq", 1);
    assert_str_at(a, "ts", "2024-05-01T12:34:56.123456Z");
    const cJSON *id = get(a, "id");
    assert_true(cJSON_IsString(id));
    assert_int_equal(strlen(id->valuestring), AUDIT_ID_HEX);
    assert_int_equal(strspn(id->valuestring, "0123456789abcdef"), AUDIT_ID_HEX);
    assert_str_at(a, "node", NODE);
    assert_str_at(a, "direction", "inbound");
    assert_str_at(a, "decision", "deny");
    assert_str_at(a, "policy", "shop/payments");
    assert_num_at(a, "rule", 2);
    assert_str_at(a, "reason", "rule 2 of shop/payments denies");
    assert_true(cJSON_IsTrue(get(a, "audit")));
    assert_str_at(a, "dry_run.decision", "allow");
    assert_str_at(a, "dry_run.policy", "shop/next");
    assert_num_at(a, "dry_run.rule", 0);
    assert_str_at(a, "source.principal", "spiffe://example.org/ns/shop/sa/checkout");
    assert_str_at(a, "source.ip", "10.0.0.7");
    assert_num_at(a, "source.port", 41234);
    assert_str_at(a, "destination.service", "payments");
    assert_str_at(a, "destination.principal", "spiffe://example.org/ns/shop/sa/payments");
    assert_num_at(a, "destination.port", 8443);
    assert_str_at(a, "request.method", "GET");
    assert_str_at(a, "request.host", "payments");
    assert_str_at(a, "request.path", "/v1/items");
    assert_str_at(a, "request.protocol", "HTTP/1.1");
    assert_num_at(a, "response.status", 403);
    assert_str_at(a, "bundle", "rev-7");
    assert_str_at(a, "trace_id", "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_num_at(a, "latency_ns", 1830);
    assert_str_at(a, "peer_cert_sha256",
                  "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    assert_null(cJSON_GetObjectItemCaseSensitive(a, "truncated"));
    /* never any header, query or body */
    assert_null(cJSON_GetObjectItemCaseSensitive(get(a, "request"), "headers"));
    assert_null(cJSON_GetObjectItemCaseSensitive(get(a, "request"), "query"));

    const cJSON *b = l.v[1];
    assert_num_at(b, "seq", 2);
    assert_str_at(b, "direction", "outbound");
    assert_str_at(b, "decision", "allow");
    assert_false(cJSON_IsTrue(get(b, "audit")));
    const char *nulls[] = {"policy", "rule", "reason", "dry_run", "source.principal",
                           "source.ip", "source.port", "destination.service",
                           "destination.principal", "destination.port", "request.method",
                           "request.host", "request.path", "request.protocol", "response",
                           "bundle", "trace_id", "latency_ns", "peer_cert_sha256"};
    for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        assert_null_at(b, nulls[i]);
    assert_string_not_equal(get(a, "id")->valuestring, get(b, "id")->valuestring);
    lines_free(&l);
}

/* A TCP connection's record carries its bytes and duration; others have no "connection". */
static void test_record_connection(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    audit_record r = rec_of(AUDIT_ALLOW, "tcp");
    r.has_connection = true;
    r.bytes_in = 1048597;
    r.bytes_out = 42;
    r.duration_ns = 1234567890; /* 1234.567 ms */
    assert_int_equal(audit_log_append(log, producer(log), &r), 0);
    audit_record plain = rec_of(AUDIT_ALLOW, "http");
    assert_int_equal(audit_log_append(log, producer(log), &plain), 0);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 2);
    assert_num_at(l.v[0], "connection.bytes_in", 1048597);
    assert_num_at(l.v[0], "connection.bytes_out", 42);
    assert_true(fabs(get(l.v[0], "connection.duration_ms")->valuedouble - 1234.567) < 1e-9);
    assert_null(cJSON_GetObjectItemCaseSensitive(l.v[1], "connection"));
    lines_free(&l);
    char *data = slurp(NULL);
    /* after "response", before "bundle" */
    assert_non_null(strstr(data, "\"response\":null,\"connection\":{\"bytes_in\":1048597,"
                                 "\"bytes_out\":42,\"duration_ms\":1234.567},\"bundle\""));
    free(data);
}

/* Recorded request fields: a JSON object inside "request"; the built-in
 * secrets are written as "[redacted]" whatever the caller passed. */
static void test_record_headers(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    static const char pairs[] = "x-request-id\0abc-123\0authorization\0Bearer s3cr3t\0"
                                "cookie\0sid=42\0x-quote\0say \"hi\"\n\0";
    audit_record r = rec_of(AUDIT_ALLOW, "with headers");
    r.method = audit_cstr("GET");
    r.headers = (audit_str){pairs, sizeof(pairs) - 1};
    assert_int_equal(audit_log_append(log, producer(log), &r), 0);
    close_log(log);
    char *data = slurp(NULL);
    assert_null(strstr(data, "s3cr3t"));
    assert_null(strstr(data, "sid=42"));
    assert_non_null(strstr(data, "\"protocol\":null,\"headers\":{\"x-request-id\":\"abc-123\","
                                 "\"authorization\":\"[redacted]\",\"cookie\":\"[redacted]\","
                                 "\"x-quote\":\"say \\\"hi\\\"\\u000a\"}},\"response\""));
    free(data);
    lines l = read_lines();
    assert_str_at(l.v[0], "request.headers.x-request-id", "abc-123");
    lines_free(&l);
}

/* The JSON string writer against what a JSON parser reads back, over random
 * mixes of plain runs (its 8-byte fast path) and bytes it must escape or
 * replace, at every alignment. */
static void test_json_str_random(void **state)
{
    (void)state;
    static const struct {
        const char *in, *decoded; /* decoded NULL: the same bytes */
    } tok[] = {
        {"abcdefgh", NULL}, {"x", NULL}, {"/ns/shop/sa/", NULL}, {"\"", NULL}, {"\\", NULL},
        {"\x01", NULL},   {"\x1f", NULL}, {"\x7f", NULL}, {"\xc3\xa9", NULL},
        {"\xe2\x80\xa8", NULL}, {"\xf0\x9f\x94\x92", NULL}, {"\xff", "\xef\xbf\xbd"},
        {"\xc3", "\xef\xbf\xbd"}, {"\t\n", NULL},
    };
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    for (int round = 0; round < 2000; round++) {
        char in[512], want[1024];
        size_t n = 0, wn = 0;
        int parts = (int)(rng % 24);
        for (int k = 0; k < parts; k++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t t = (size_t)(rng >> 33) % (sizeof(tok) / sizeof(tok[0]));
            /* "\xc3" alone is invalid only when no continuation byte follows */
            const char *a = tok[t].in, *d = tok[t].decoded ? tok[t].decoded : a;
            if (t == 12 && k + 1 < parts)
                continue;
            memcpy(in + n, a, strlen(a));
            n += strlen(a);
            memcpy(want + wn, d, strlen(d));
            wn += strlen(d);
        }
        ward_buf b;
        ward_buf_init(&b);
        assert_int_equal(ward_buf_puts(&b, "x"), 0); /* not at the buffer's start */
        assert_int_equal(audit_json_str(&b, in, n), 0);
        for (size_t i = 1; i < b.len; i++)
            assert_true((unsigned char)b.ptr[i] >= 0x20 && (unsigned char)b.ptr[i] != 0x7f);
        cJSON *j = cJSON_ParseWithLength(b.ptr + 1, b.len - 1);
        assert_non_null(j);
        assert_true(cJSON_IsString(j));
        assert_int_equal(strlen(j->valuestring), wn);
        assert_memory_equal(j->valuestring, want, wn);
        cJSON_Delete(j);
        ward_buf_dispose(&b);
    }
}

static void test_record_key_order(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    audit_record r = rec_of(AUDIT_ALLOW, "ok");
    assert_int_equal(audit_log_append(log, producer(log), &r), 0);
    close_log(log);
    char *data = slurp(NULL);
    /* every line starts v, seq, ts, id (readers and the later chain rely on it) */
    static const char head[] = "{\"v\":1,\"seq\":1,\"ts\":\"";
    assert_int_equal(strncmp(data, head, strlen(head)), 0);
    assert_non_null(strstr(data, "Z\",\"id\":\""));
    free(data);
}

static void test_record_time_format(void **state)
{
    static const struct {
        int64_t ns;
        const char *want;
    } cases[] = {
        {1714566896123456789LL, "2024-05-01T12:34:56.123456Z"},
        {1714566896000001999LL, "2024-05-01T12:34:56.000001Z"}, /* same second */
        {1714566897000000000LL, "2024-05-01T12:34:57.000000Z"}, /* the next */
        {951782400000000000LL, "2000-02-29T00:00:00.000000Z"},   /* leap day */
        {-1, "1969-12-31T23:59:59.999999Z"},                        /* before the epoch */
        {INT64_MAX, "2262-04-11T23:47:16.854775Z"},
    };
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        audit_record r = rec_of(AUDIT_ALLOW, "t");
        r.ts_ns = cases[i].ns;
        assert_int_equal(audit_log_append(log, p, &r), 0);
    }
    audit_record now = rec_of(AUDIT_ALLOW, "now"); /* ts 0: taken by append */
    int64_t before = audit_now_ns();
    assert_int_equal(audit_log_append(log, p, &now), 0);
    close_log(log);
    lines l = read_lines();
    size_t n = sizeof(cases) / sizeof(cases[0]);
    assert_int_equal(l.n, n + 1);
    for (size_t i = 0; i < n; i++)
        assert_str_at(l.v[i], "ts", cases[i].want);
    const char *ts = get(l.v[n], "ts")->valuestring;
    struct tm tm;
    time_t t = (time_t)(before / 1000000000);
    char want[32];
    gmtime_r(&t, &tm);
    strftime(want, sizeof(want), "%Y-%m-%dT%H:", &tm);
    assert_int_equal(strncmp(ts, want, strlen(want)), 0);
    lines_free(&l);
}

/* Every hostile byte comes back as a JSON escape, and the line stays one line. */
static void test_record_escaping(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_record r = rec_of(AUDIT_DENY, "x");
    r.path = S("/a\"b\\c\nd\re\tf\x01g\x7fh");           /* quotes, backslash, controls, DEL */
    r.host = S("evil\0host");                              /* NUL inside a slice */
    r.method = S("G\xff" "E\xc0\xaf" "T");                 /* invalid byte, overlong '/' */
    r.reason = S("\xed\xa0\x80|\xe2\x82|\xf4\x90\x80\x80|\xc3"); /* surrogate, cut, > U+10FFFF, cut at end */
    r.trace_id = S("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x94\x92"); /* valid multibyte stays as is */
    r.policy = S("a\xe2\x80\xa8" "b\xe2\x80\xa9" "c");      /* U+2028, U+2029 */
    r.source_principal = S("spiffe://x/\"},\"decision\":\"allow"); /* injection attempt */
    assert_int_equal(audit_log_append(log, p, &r), 0);
    close_log(log);

    char *raw = slurp(NULL);
    assert_non_null(strstr(raw, "\"path\":\"/a\\\"b\\\\c\\u000ad\\u000de\\u0009f\\u0001g\\u007fh\""));
    assert_non_null(strstr(raw, "\"host\":\"evil\\u0000host\""));
    assert_non_null(strstr(raw, "\"method\":\"G\\ufffdE\\ufffd\\ufffdT\""));
    assert_non_null(
        strstr(raw, "\"reason\":\"\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd\\ufffd|\\ufffd\""));
    assert_non_null(strstr(raw, "\"trace_id\":\"caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x94\x92\""));
    assert_non_null(strstr(raw, "\"policy\":\"a\\u2028b\\u2029c\""));
    assert_int_equal(strchr(raw, '\n') - raw + 1, (ptrdiff_t)strlen(raw)); /* one line */
    free(raw);

    lines l = read_lines();
    assert_int_equal(l.n, 1);
    const cJSON *a = l.v[0];
    assert_str_at(a, "request.path", "/a\"b\\c\nd\re\tf\x01g\x7fh");
    assert_str_at(a, "request.method", "G\xef\xbf\xbd" "E\xef\xbf\xbd\xef\xbf\xbd" "T");
    assert_str_at(a, "trace_id", "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x94\x92");
    assert_str_at(a, "decision", "deny"); /* the injection stayed inside its string */
    assert_str_at(a, "source.principal", "spiffe://x/\"},\"decision\":\"allow");
    lines_free(&l);
}

static void test_record_truncation(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    static char path[5000], utf8[AUDIT_MAX_PATH + 1], principal[AUDIT_MAX_PRINCIPAL];
    memset(path, 'p', sizeof(path));
    memset(utf8, 'u', sizeof(utf8));
    memcpy(utf8 + AUDIT_MAX_PATH - 1, "\xc3\xa9", 2); /* é across the limit */
    memset(principal, 's', sizeof(principal));

    audit_record r = rec_of(AUDIT_DENY, "long path");
    r.path = (audit_str){path, sizeof(path)};
    assert_int_equal(audit_log_append(log, p, &r), 0);
    r.path = (audit_str){utf8, sizeof(utf8)};
    assert_int_equal(audit_log_append(log, p, &r), 0);
    /* the slot budget: identity fields first, the client's path gets the rest */
    r = rec_of(AUDIT_DENY, "long principals");
    r.source_principal = (audit_str){principal, sizeof(principal)};
    r.destination_principal = (audit_str){principal, sizeof(principal) / 2};
    r.path = (audit_str){path, 1000};
    assert_int_equal(audit_log_append(log, p, &r), 0);
    close_log(log);

    lines l = read_lines();
    assert_int_equal(l.n, 3);
    const cJSON *t = get(l.v[0], "truncated");
    assert_int_equal(cJSON_GetArraySize(t), 1);
    assert_string_equal(cJSON_GetArrayItem(t, 0)->valuestring, "request.path");
    assert_int_equal(strlen(get(l.v[0], "request.path")->valuestring), AUDIT_MAX_PATH);

    const char *cut = get(l.v[1], "request.path")->valuestring; /* no half é, no \ufffd */
    assert_int_equal(strlen(cut), AUDIT_MAX_PATH - 1);
    assert_int_equal(strspn(cut, "u"), AUDIT_MAX_PATH - 1);

    assert_int_equal(strlen(get(l.v[2], "source.principal")->valuestring), AUDIT_MAX_PRINCIPAL);
    assert_int_equal(strlen(get(l.v[2], "destination.principal")->valuestring),
                     AUDIT_MAX_PRINCIPAL / 2);
    assert_str_at(l.v[2], "reason", "long principals");
    size_t path_len = strlen(get(l.v[2], "request.path")->valuestring);
    assert_true(path_len < 1000);
    assert_int_equal(strlen("long principals") + AUDIT_MAX_PRINCIPAL * 3 / 2 + path_len,
                     AUDIT_SLOT_DATA);
    t = get(l.v[2], "truncated");
    assert_int_equal(cJSON_GetArraySize(t), 1);
    assert_string_equal(cJSON_GetArrayItem(t, 0)->valuestring, "request.path");
    lines_free(&l);
}

static int id_cmp(const void *a, const void *b)
{
    return strcmp(((const audit_id *)a)->hex, ((const audit_id *)b)->hex);
}

static void test_record_ids(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 0);
    audit_log *log = open_log(&o);
    audit_producer *p1 = producer(log), *p2 = producer(log);
    enum { N = 5000 };
    static audit_id ids[2 * N];
    for (size_t i = 0; i < N; i++) {
        audit_producer_id_next(p1, &ids[2 * i]);
        audit_producer_id_next(p2, &ids[2 * i + 1]);
    }
    for (size_t i = 0; i < 2 * N; i++) {
        assert_int_equal(strlen(ids[i].hex), AUDIT_ID_HEX);
        assert_int_equal(strspn(ids[i].hex, "0123456789abcdef"), AUDIT_ID_HEX);
    }
    qsort(ids, 2 * N, sizeof(ids[0]), id_cmp);
    for (size_t i = 1; i < 2 * N; i++)
        assert_string_not_equal(ids[i - 1].hex, ids[i].hex);
    /* an id taken beforehand is the one recorded */
    audit_record r = rec_of(AUDIT_DENY, "id");
    audit_producer_id_next(p1, &r.id);
    assert_int_equal(audit_log_append(log, p1, &r), 0);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 1);
    assert_str_at(l.v[0], "id", r.id.hex);
    lines_free(&l);
}

/* ======================================================================== */
/* rings, seq and overflow                                                    */
/* ======================================================================== */

enum { THREADS = 4, PER_THREAD = 50000 };

typedef struct worker {
    audit_log *log;
    audit_producer *p;
    int no;
    int failures;
    pthread_t t;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    char reason[32];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(reason, sizeof(reason), "%d:%d", w->no, i);
        audit_record r = rec_of(i % 3 ? AUDIT_ALLOW : AUDIT_DENY, reason);
        r.path = audit_cstr("/v1/items");
        if (audit_log_append(w->log, w->p, &r) != 0)
            w->failures++;
    }
    return NULL;
}

/* seq contiguous; each producer's records all there and in order */
static void check_worker_line(const cJSON *line, size_t i, void *ctx)
{
    int *next = ctx, t, k;
    if (num(line, "seq") != (double)(i + 1))
        fail_msg("line %zu has seq %.0f", i + 1, num(line, "seq"));
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(line, "reason");
    assert_true(cJSON_IsString(reason));
    assert_int_equal(sscanf(reason->valuestring, "%d:%d", &t, &k), 2);
    assert_true(t >= 0 && t < THREADS);
    if (k != next[t])
        fail_msg("line %zu: record %d of producer %d, want %d", i + 1, k, t, next[t]);
    next[t]++;
}

/* Runs n producers of log, each fn(&w[i]) on its own thread; none may fail an append. */
static void run_producers(audit_log *log, worker *w, int n, void *(*fn)(void *))
{
    for (int i = 0; i < n; i++) {
        w[i] = (worker){.log = log, .p = producer(log), .no = i};
        assert_int_equal(pthread_create(&w[i].t, NULL, fn, &w[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(w[i].t, NULL);
        assert_int_equal(w[i].failures, 0);
    }
}

static void test_seq_contiguous_across_threads(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 64); /* small: producers wait often */
    audit_log *log = open_log(&o);
    worker w[THREADS];
    run_producers(log, w, THREADS, worker_main);
    audit_stats st;
    audit_log_stats(log, &st);
    assert_int_equal(st.appended, THREADS * PER_THREAD);
    close_log(log);

    trail t = verify_trail(false);
    assert_int_equal(t.records, THREADS * PER_THREAD);
    assert_int_equal(t.cp_seq, THREADS * PER_THREAD); /* close vouches for the last record */
    assert_true(t.checkpoints >= THREADS * PER_THREAD / 10000);
    trail_free(&t);
    int next[THREADS] = {0};
    assert_int_equal(scan_lines(check_worker_line, next), THREADS * PER_THREAD);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(next[i], PER_THREAD);
}

/* Records of every size, some appended at once and some reserved first, pass
 * whole and in order through a ring (slots packed by size) of four slots, and
 * of 256, where the slots start over at the ring's start whenever the writer
 * has caught up. */
enum { SIZES_THREADS = 2, SIZES_PER_THREAD = 4000 }; /* ~20 MB of trail: enough wraps, little disk */

/* Record k of producer t: a path of 1..AUDIT_MAX_PATH bytes and headers of
 * 0..1,500, lengths that change with k so that slots of every size meet. */
static size_t sizes_path_len(int t, int k)
{
    return 1 + ((size_t)k * 7919u + (size_t)t * 104729u) % AUDIT_MAX_PATH;
}

static size_t sizes_headers_len(int k)
{
    return ((size_t)k * 3571u) % 1501u;
}

static void sizes_fill(char *buf, size_t n, int t, int k)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + (i + (size_t)k + (size_t)t * 13u) % 26u);
    buf[0] = '/';
}

static void *sizes_main(void *arg)
{
    worker *w = arg;
    char reason[32], path[AUDIT_MAX_PATH], headers[1501];
    for (int k = 0; k < SIZES_PER_THREAD; k++) {
        snprintf(reason, sizeof(reason), "%d:%d", w->no, k);
        audit_record r = rec_of(AUDIT_ALLOW, reason);
        size_t pl = sizes_path_len(w->no, k), hl = sizes_headers_len(k);
        sizes_fill(path, pl, w->no, k);
        memset(headers, 'h', hl);
        r.path = (audit_str){path, pl};
        r.headers = (audit_str){headers, hl};
        bool reserve = k % 2 == 1;
        if (reserve && audit_log_reserve(w->log, w->p, AUDIT_ALLOW) != 0)
            w->failures++;
        else if (reserve ? audit_log_append_reserved(w->log, w->p, &r) != 0
                         : audit_log_append(w->log, w->p, &r) != 0)
            w->failures++;
    }
    return NULL;
}

static void check_sizes_line(const cJSON *line, size_t i, void *ctx)
{
    int *next = ctx, t, k;
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(line, "reason");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(line, "request");
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(req, "path");
    assert_true(cJSON_IsString(reason) && cJSON_IsString(path));
    assert_int_equal(sscanf(reason->valuestring, "%d:%d", &t, &k), 2);
    assert_true(t >= 0 && t < SIZES_THREADS);
    if (k != next[t])
        fail_msg("line %zu: record %d of producer %d, want %d", i + 1, k, t, next[t]);
    next[t]++;
    char want[AUDIT_MAX_PATH + 1];
    size_t pl = sizes_path_len(t, k);
    sizes_fill(want, pl, t, k);
    want[pl] = '\0';
    if (strcmp(path->valuestring, want) != 0)
        fail_msg("line %zu: the path of record %d of producer %d changed on its way", i + 1, k, t);
}

static void records_of_every_size(uint32_t ring_slots)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, ring_slots);
    audit_log *log = open_log(&o);
    worker w[SIZES_THREADS];
    run_producers(log, w, SIZES_THREADS, sizes_main);
    close_log(log);
    int next[SIZES_THREADS] = {0};
    assert_int_equal(scan_lines(check_sizes_line, next), SIZES_THREADS * SIZES_PER_THREAD);
    for (int i = 0; i < SIZES_THREADS; i++)
        assert_int_equal(next[i], SIZES_PER_THREAD);
}

static void test_ring_of_4_records_of_every_size(void **state)
{
    records_of_every_size(4);
}

static void test_ring_of_256_records_of_every_size(void **state)
{
    records_of_every_size(256);
}

/* ---- identity events (wardd) ------------------------------------------------------------------ */

static audit_event event_of(const char *name, audit_outcome outcome)
{
    audit_event e;
    audit_event_init(&e);
    e.event = audit_cstr(name);
    e.outcome = outcome;
    return e;
}

static void test_event_record_fields(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 8);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_event e = event_of("svid.issued", AUDIT_SUCCESS);
    e.subject = audit_cstr("spiffe://example.org/ns/shop/sa/payments");
    e.serial = audit_cstr("0a1b2c3d4e5f60718293a4b5c6d7e8f9");
    e.not_after_ns = (int64_t)1795669200 * 1000000000; /* 2026-11-26T05:00:00Z */
    e.via = audit_cstr("attest");
    e.token_id = audit_cstr("5ad2c844ce966000");
    e.source_ip = audit_cstr("127.0.0.1");
    e.source_port = 41234;
    e.status = 200;
    static const char aud[] = "spiffe://example.org/a\0spiffe://example.org/b";
    e.audience = (audit_str){aud, sizeof(aud) - 1};
    e.bundle_sequence = 7;
    assert_int_equal(audit_log_append_event(log, p, &e), 0);
    audit_event r = event_of("token.refused", AUDIT_FAILURE);
    r.error = audit_cstr("token_used");
    r.reason = audit_cstr("join token already used");
    r.source_uid = 0;
    r.status = 401;
    assert_int_equal(audit_log_append_event(log, p, &r), 0);
    audit_record d = rec_of(AUDIT_DENY, "a decision in the same trail");
    assert_int_equal(audit_log_append(log, p, &d), 0);
    close_log(log);
    lines l = read_lines(); /* the chain, seq and checkpoints verify */
    assert_int_equal(l.n, 3);
    assert_seq_contiguous(&l, 1);
    const cJSON *x = l.v[0];
    assert_str_at(x, "event", "svid.issued");
    assert_str_at(x, "outcome", "success");
    assert_str_at(x, "node", NODE);
    assert_str_at(x, "subject", "spiffe://example.org/ns/shop/sa/payments");
    assert_str_at(x, "serial", "0a1b2c3d4e5f60718293a4b5c6d7e8f9");
    assert_str_at(x, "not_after", "2026-11-26T05:00:00Z");
    assert_str_at(x, "via", "attest");
    assert_str_at(x, "token_id", "5ad2c844ce966000");
    assert_str_at(x, "source.ip", "127.0.0.1");
    assert_num_at(x, "source.port", 41234);
    assert_null_at(x, "source.uid");
    assert_null_at(x, "source.principal");
    assert_num_at(x, "response.status", 200);
    assert_num_at(x, "bundle_sequence", 7);
    assert_null_at(x, "error");
    const cJSON *a = get(x, "audience");
    assert_true(cJSON_IsArray(a));
    assert_int_equal(cJSON_GetArraySize(a), 2);
    assert_string_equal(cJSON_GetArrayItem(a, 1)->valuestring, "spiffe://example.org/b");
    assert_null(cJSON_GetObjectItemCaseSensitive(x, "decision")); /* not a decision */
    const cJSON *y = l.v[1];
    assert_str_at(y, "outcome", "failure");
    assert_str_at(y, "error", "token_used");
    assert_num_at(y, "source.uid", 0);
    assert_null_at(y, "audience");
    assert_null_at(y, "not_after");
    assert_str_at(l.v[2], "decision", "deny");
    lines_free(&l);
}

static void test_event_record_key_order(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 8);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_event e = event_of("ca.activated", AUDIT_SUCCESS);
    assert_int_equal(audit_log_append_event(log, p, &e), 0);
    close_log(log);
    size_t len;
    char *all = slurp(&len);
    assert_non_null(strstr(all, "\"node\":\"" NODE "\",\"event\":\"ca.activated\",\"outcome\":\"success\","
                                "\"subject\":null,\"serial\":null,\"not_after\":null,\"via\":null,"
                                "\"token_id\":null,\"audience\":null,\"key_id\":null,"
                                "\"bundle_sequence\":null,\"source\":{\"principal\":null,\"ip\":null,"
                                "\"port\":null,\"uid\":null},\"response\":null,\"error\":null,"
                                "\"reason\":null,\"prev\":"));
    free(all);
}

static void test_event_without_name_is_refused(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 8);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_event e;
    audit_event_init(&e);
    assert_int_equal(audit_log_append_event(log, p, &e), WARD_EINVAL);
    assert_int_equal(audit_log_append_event(log, p, NULL), WARD_EINVAL);
    close_log(log);
}

static void test_event_escaping_and_truncation(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 8);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_event e = event_of("svid.refused", AUDIT_FAILURE);
    char reason[AUDIT_MAX_REASON + 100];
    memset(reason, 'x', sizeof(reason));
    memcpy(reason, "bad \"CSR\"\n", 10);
    e.reason = (audit_str){reason, sizeof(reason)};
    assert_int_equal(audit_log_append_event(log, p, &e), 0);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 1);
    const cJSON *r = get(l.v[0], "reason");
    assert_int_equal(strlen(r->valuestring), AUDIT_MAX_REASON);
    assert_memory_equal(r->valuestring, "bad \"CSR\"\n", 10);
    const cJSON *t = get(l.v[0], "truncated");
    assert_string_equal(cJSON_GetArrayItem(t, 0)->valuestring, "reason");
    lines_free(&l);
}

/* Fail closed: under DENY an event that cannot be queued is refused (wardd then
 * refuses the issuance); a reserved slot is always there for it. */
static void test_event_overflow_deny_and_reserve(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 4);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_log_pause(log);
    audit_event e = event_of("token.redeemed", AUDIT_SUCCESS);
    for (int i = 0; i < 3; i++)
        assert_int_equal(audit_log_append_event(log, p, &e), 0);
    assert_int_equal(audit_log_reserve(log, p, AUDIT_DENY), 0);
    assert_int_equal(audit_log_append_event(log, p, &e), WARD_ELIMIT);
    audit_event issued = event_of("svid.issued", AUDIT_SUCCESS);
    assert_int_equal(audit_log_append_event_reserved(log, p, &issued), 0);
    assert_int_equal(audit_log_append_event_reserved(log, p, &issued), WARD_EINVAL);
    audit_log_resume(log);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 4);
    assert_str_at(l.v[3], "event", "svid.issued");
    lines_free(&l);
}

/* Under DROP an identity event is never dropped: it waits as a deny record does. */
static void test_event_never_dropped(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DROP, 2);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_event e = event_of("svid.issued", AUDIT_SUCCESS);
    for (int i = 0; i < 50; i++)
        assert_int_equal(audit_log_append_event(log, p, &e), 0);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 50);
    for (size_t i = 0; i < l.n; i++)
        assert_null(cJSON_GetObjectItemCaseSensitive(l.v[i], "gap"));
    lines_free(&l);
}

static void test_overflow_deny_refuses_when_full(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 4);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_log_pause(log);
    audit_record r = rec_of(AUDIT_ALLOW, "fits");
    for (int i = 0; i < 4; i++)
        assert_int_equal(audit_log_append(log, p, &r), 0);
    audit_record more = rec_of(AUDIT_DENY, "refused");
    assert_int_equal(audit_log_append(log, p, &more), WARD_ELIMIT);
    more.decision = AUDIT_ALLOW;
    assert_int_equal(audit_log_append(log, p, &more), WARD_ELIMIT);
    audit_stats st;
    audit_log_stats(log, &st);
    assert_int_equal(st.appended, 4);
    assert_int_equal(st.refused, 2);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(audit_log_status(log, NULL), 0); /* a full ring is not a failure */

    audit_log_resume(log);
    assert_int_equal(audit_log_flush(log, 5000), 0);
    audit_record after = rec_of(AUDIT_DENY, "after");
    assert_int_equal(audit_log_append(log, p, &after), 0);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 5); /* refused records are not written: the caller denied them */
    assert_seq_contiguous(&l, 1);
    assert_str_at(l.v[4], "reason", "after");
    for (size_t i = 0; i < l.n; i++)
        assert_null(cJSON_GetObjectItemCaseSensitive(l.v[i], "gap"));
    lines_free(&l);
}

static void test_reserved_slot_cannot_be_taken(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 4);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_log_pause(log);
    audit_record r = rec_of(AUDIT_ALLOW, "fits");
    for (int i = 0; i < 3; i++)
        assert_int_equal(audit_log_append(log, p, &r), 0);
    /* the last slot is promised to a request being served ... */
    assert_int_equal(audit_log_reserve(log, p, AUDIT_ALLOW), 0);
    assert_int_equal(audit_log_reserve(log, p, AUDIT_ALLOW), WARD_ELIMIT);
    audit_record other = rec_of(AUDIT_DENY, "other");
    assert_int_equal(audit_log_append(log, p, &other), WARD_ELIMIT);
    /* ... so its record still fits when the response is known */
    audit_record done = rec_of(AUDIT_ALLOW, "completed");
    done.status = 200;
    assert_int_equal(audit_log_append_reserved(log, p, &done), 0);
    /* no promise left: appending "reserved" again is a caller bug */
    assert_int_equal(audit_log_append_reserved(log, p, &done), WARD_EINVAL);
    audit_log_resume(log);
    assert_int_equal(audit_log_flush(log, 5000), 0);
    assert_int_equal(audit_log_reserve(log, p, AUDIT_ALLOW), 0);
    audit_log_unreserve(p); /* given back unused: nothing is written for it */
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 4);
    assert_seq_contiguous(&l, 1);
    assert_str_at(l.v[3], "reason", "completed");
    lines_free(&l);
}

static void test_overflow_block_waits_for_writer(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 2);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_log_pause(log);
    audit_record r = rec_of(AUDIT_ALLOW, "fits");
    for (int i = 0; i < 2; i++)
        assert_int_equal(audit_log_append(log, p, &r), 0);
    appender a = {.log = log, .p = p, .rec = rec_of(AUDIT_ALLOW, "waited")};
    assert_int_equal(pthread_create(&a.t, NULL, appender_main, &a), 0);
    sleep_ms(100);
    assert_int_equal(atomic_load(&a.done), 0); /* still waiting for a slot */
    audit_log_resume(log);
    pthread_join(a.t, NULL);
    assert_int_equal(a.rc, 0);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 3);
    assert_str_at(l.v[2], "reason", "waited");
    lines_free(&l);
}

static void test_overflow_drop_gap_and_deny_kept(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DROP, 4);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_log_pause(log);
    audit_record r = rec_of(AUDIT_ALLOW, "kept");
    for (int i = 0; i < 4; i++)
        assert_int_equal(audit_log_append(log, p, &r), 0);
    audit_record lost = rec_of(AUDIT_ALLOW, "lost");
    for (int i = 0; i < 3; i++)
        assert_int_equal(audit_log_append(log, p, &lost), WARD_ELIMIT);
    /* a deny is never dropped: it waits for room */
    appender a = {.log = log, .p = p, .rec = rec_of(AUDIT_DENY, "deny kept")};
    assert_int_equal(pthread_create(&a.t, NULL, appender_main, &a), 0);
    sleep_ms(100);
    assert_int_equal(atomic_load(&a.done), 0);
    audit_log_resume(log);
    pthread_join(a.t, NULL);
    assert_int_equal(a.rc, 0);
    audit_stats st;
    audit_log_stats(log, &st);
    assert_int_equal(st.dropped, 3);
    assert_int_equal(st.appended, 5);
    close_log(log);

    lines l = read_lines();
    assert_int_equal(l.n, 6);
    assert_seq_contiguous(&l, 1);
    for (size_t i = 0; i < 4; i++)
        assert_str_at(l.v[i], "reason", "kept");
    assert_num_at(l.v[4], "gap", 3); /* the loss is on record, where it happened */
    assert_str_at(l.v[4], "node", NODE);
    assert_str_at(l.v[5], "reason", "deny kept");
    assert_str_at(l.v[5], "decision", "deny");
    for (size_t i = 0; i < l.n; i++)
        assert_true(strcmp(cJSON_GetObjectItemCaseSensitive(l.v[i], "reason")->valuestring,
                           "lost") != 0);
    lines_free(&l);
}

static void test_overflow_drop_trailing_gap_at_close(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DROP, 2);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_log_pause(log);
    audit_record r = rec_of(AUDIT_ALLOW, "kept");
    for (int i = 0; i < 2; i++)
        assert_int_equal(audit_log_append(log, p, &r), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(audit_log_append(log, p, &r), WARD_ELIMIT);
    audit_log_resume(log);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 3);
    assert_seq_contiguous(&l, 1);
    assert_num_at(l.v[2], "gap", 5);
    lines_free(&l);
}

/* ======================================================================== */
/* flush, close and failures                                                 */
/* ======================================================================== */

static void test_close_writes_everything(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 0);
    o.fsync_ms = 60000; /* nothing but close syncs */
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_record r = rec_of(AUDIT_ALLOW, "r");
    for (int i = 0; i < 1000; i++)
        assert_int_equal(audit_log_append(log, p, &r), 0);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 1000);
    assert_seq_contiguous(&l, 1);
    lines_free(&l);
}

static void test_flush_writes_before_returning(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    o.fsync_ms = 60000;
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_record r = rec_of(AUDIT_ALLOW, "flushed");
    assert_int_equal(audit_log_append(log, p, &r), 0);
    assert_int_equal(audit_log_flush(log, 5000), 0);
    lines l = read_lines(); /* on disk while the log is still open */
    assert_int_equal(l.n, 1);
    lines_free(&l);
    audit_stats st;
    audit_log_stats(log, &st);
    assert_int_equal(st.written, 1);
    assert_true(st.bytes > 0);

    audit_log_pause(log); /* a paused writer cannot flush: the timeout says so */
    assert_int_equal(audit_log_append(log, p, &r), 0);
    assert_int_equal(audit_log_flush(log, 50), WARD_ELIMIT);
    audit_log_resume(log);
    assert_int_equal(audit_log_flush(log, 5000), 0);
    close_log(log);
}

/* Disk full stand-in: a file size limit (write fails with EFBIG). The error is
 * sticky and visible, appends fail closed, and no accepted record is lost. */
static void test_write_failure_is_sticky(void **state)
{
    struct rlimit old, lim;
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = 2048;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

    audit_record r = rec_of(AUDIT_DENY, "before the failure");
    int accepted = 0;
    audit_log_pause(log); /* all 20 are queued before the writer meets the limit */
    for (int i = 0; i < 20; i++)
        if (audit_log_append(log, p, &r) == 0)
            accepted++;
    audit_log_resume(log);
    int frc = audit_log_flush(log, 5000);
    ward_err err;
    ward_err_clear(&err);
    int src = audit_log_status(log, &err);
    audit_record after = rec_of(AUDIT_DENY, "after the failure");
    int arc = audit_log_append(log, p, &after);
    audit_stats st;
    audit_log_stats(log, &st);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_DFL);

    assert_int_equal(accepted, 20);
    assert_int_equal(frc, WARD_EIO);
    assert_int_equal(src, WARD_EIO);
    assert_non_null(strstr(err.msg, SEG1 ": write: File too large"));
    assert_int_equal(arc, WARD_EIO); /* fail closed */
    assert_true(st.write_errors >= 1);
    assert_int_equal(st.refused, 1);
    assert_true(st.written < 20);

    ward_err_clear(&err);
    assert_int_equal(audit_log_close(log, &err), WARD_EIO); /* close reports it too */
    assert_non_null(strstr(err.msg, "File too large"));
    lines l = read_lines(); /* the last try at close wrote what was held */
    assert_int_equal(l.n, 20);
    assert_seq_contiguous(&l, 1);
    lines_free(&l);
}

/* ======================================================================== */
/* the folder and the file                                                   */
/* ======================================================================== */

static void assert_private_file(const char *name, unsigned mode)
{
    char path[400];
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (lstat(path, &st) != 0)
        fail_msg("%s missing", name);
    assert_true(S_ISREG(st.st_mode));
    if ((st.st_mode & 0777) != mode)
        fail_msg("%s has mode %o, want %o", name, st.st_mode & 0777, mode);
}

static void test_open_creates_dir_and_file_private(void **state)
{
    snprintf(dir, sizeof(dir), "%s/a/b/audit", tmpdir); /* missing parents too */
    set_paths();
    mode_t old = umask(0);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    audit_record r = rec_of(AUDIT_ALLOW, "r");
    assert_int_equal(audit_log_append(log, producer(log), &r), 0);
    assert_int_equal(audit_log_flush(log, 5000), 0);
    umask(old);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_private_file(SEG1, 0600);
    assert_private_file("checkpoints.jsonl", 0600);
    assert_private_file("checkpoint.key", 0600);
    assert_private_file("checkpoint.pub", 0600);
    int fl = open(file, O_RDONLY);
    assert_true(fl >= 0);
    assert_true((fcntl(fl, F_GETFL) & O_ACCMODE) == O_RDONLY);
    close(fl);
    close_log(log);
    /* the key is kept across opens: the same public key */
    char *pub1 = read_all(strcat(strcpy((char[400]){0}, dir), "/checkpoint.pub"), NULL);
    log = open_log(&o);
    close_log(log);
    char *pub2 = read_all(strcat(strcpy((char[400]){0}, dir), "/checkpoint.pub"), NULL);
    assert_string_equal(pub1, pub2);
    free(pub1);
    free(pub2);
}

static void test_open_narrows_existing_file(void **state)
{
    assert_int_equal(mkdir(dir, 0700), 0);
    int fd = open(file, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    fchmod(fd, 0644);
    close(fd);
    fd = open(cpfile, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    fchmod(fd, 0644);
    close(fd);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    assert_private_file(SEG1, 0600);
    assert_private_file("checkpoints.jsonl", 0600);
    audit_record r = rec_of(AUDIT_ALLOW, "into the empty segment");
    assert_int_equal(audit_log_append(log, producer(log), &r), 0);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 1);
    assert_num_at(l.v[0], "seq", 1);
    lines_free(&l);
}

static void expect_open_error(const audit_options *o, int want_rc, const char *want_msg)
{
    audit_log *log = (audit_log *)1;
    ward_err err;
    ward_err_clear(&err);
    int rc = audit_log_open(o, &log, &err);
    assert_int_equal(rc, want_rc);
    assert_null(log);
    if (strstr(err.msg, want_msg) == NULL)
        fail_msg("error \"%s\" does not say \"%s\"", err.msg, want_msg);
}

static void test_open_refuses_a_file_as_dir(void **state)
{
    int fd = open(dir, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    expect_open_error(&o, WARD_EINVAL, "exists and is not a folder");
}

static void test_open_refuses_missing_dir_option(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    o.dir = NULL;
    expect_open_error(&o, WARD_EINVAL, "no dir");
    o.dir = "";
    expect_open_error(&o, WARD_EINVAL, "no dir");
    o = opts_for((audit_overflow)7, 0);
    expect_open_error(&o, WARD_EINVAL, "overflow must be deny, block or drop");
}

/* As root, access checks always pass: the check runs in a child as nobody. */
static void test_open_refuses_unwritable_dir(void **state)
{
    assert_int_equal(mkdir(dir, 0755), 0);
    chmod(dir, 0555);
    chmod(tmpdir, 0755);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(10);
        audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
        audit_log *log = NULL;
        ward_err err;
        ward_err_clear(&err);
        int rc = audit_log_open(&o, &log, &err);
        if (rc != WARD_EIO || log != NULL)
            _exit(11);
        if (strstr(err.msg, "not writable by this process") == NULL || strstr(err.msg, dir) == NULL)
            _exit(12);
        /* a folder that cannot be created says so as well */
        snprintf(dir, sizeof(dir), "%s/audit/sub", tmpdir);
        o.dir = dir;
        ward_err_clear(&err);
        rc = audit_log_open(&o, &log, &err);
        if (rc != WARD_EIO || strstr(err.msg, "cannot create") == NULL)
            _exit(13);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_open_refuses_symlinked_file(void **state)
{
    assert_int_equal(mkdir(dir, 0700), 0);
    char target[200];
    snprintf(target, sizeof(target), "%s/elsewhere", tmpdir);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    /* in the place of checkpoints.jsonl, of the active segment, of the key */
    assert_int_equal(symlink(target, cpfile), 0);
    expect_open_error(&o, WARD_EIO, "is a symbolic link");
    assert_int_equal(unlink(cpfile), 0);
    assert_int_equal(symlink(target, file), 0);
    expect_open_error(&o, WARD_EIO, "is a symbolic link");
    assert_int_equal(unlink(file), 0);
    char key[300];
    snprintf(key, sizeof(key), "%s/checkpoint.key", dir);
    assert_int_equal(symlink(target, key), 0);
    expect_open_error(&o, WARD_EIO, "is a symbolic link");
    assert_int_equal(access(target, F_OK), -1);
}

static void test_open_refuses_second_writer(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    expect_open_error(&o, WARD_EIO, "another process is writing this audit log");
    close_log(log);
}

static void append_n(audit_log *log, audit_producer *p, int n, const char *reason)
{
    audit_record r = rec_of(AUDIT_ALLOW, reason);
    for (int i = 0; i < n; i++)
        assert_int_equal(audit_log_append(log, p, &r), 0);
}

static void write_trail(int n)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 0);
    audit_log *log = open_log(&o);
    append_n(log, producer(log), n, "r");
    close_log(log);
}

static void append_bytes(const char *path, const char *bytes)
{
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(bytes, f);
    fclose(f);
}

static void test_open_continues_seq(void **state)
{
    write_trail(3);
    write_trail(3);
    /* a crash in the middle of a write leaves a torn line: cut off at open */
    append_bytes(file, "{\"v\":1,\"seq\":7,\"ts\":\"20");
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    audit_stats st;
    audit_log_stats(log, &st);
    assert_int_equal(st.torn_bytes, strlen("{\"v\":1,\"seq\":7,\"ts\":\"20"));
    audit_record r = rec_of(AUDIT_ALLOW, "after the crash");
    assert_int_equal(audit_log_append(log, producer(log), &r), 0);
    close_log(log);
    lines l = read_lines(); /* the chain goes on through the cut */
    assert_int_equal(l.n, 7);
    assert_seq_contiguous(&l, 1);
    assert_str_at(l.v[6], "reason", "after the crash");
    lines_free(&l);
}

/* A complete last line whose hash does not verify (a torn write the
 * checkpoints never vouched for) is cut too. */
static void test_open_cuts_unverifiable_last_line(void **state)
{
    write_trail(3);
    size_t len;
    char *data = read_all(file, &len);
    char *last = (char *)memrchr(data, '\n', len - 1) + 1;
    char forged[2048];
    snprintf(forged, sizeof(forged), "%.*s", (int)(data + len - last), last);
    char *seq = strstr(forged, "\"seq\":3");
    assert_non_null(seq);
    seq[6] = '4'; /* record 4, with record 3's bytes and hash: does not verify */
    append_bytes(file, forged);
    free(data);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    audit_record r = rec_of(AUDIT_ALLOW, "the real 4");
    assert_int_equal(audit_log_append(log, producer(log), &r), 0);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 4);
    assert_str_at(l.v[3], "reason", "the real 4");
    lines_free(&l);
}

/* Replaces the byte at offset off of path. */
static void poke(const char *path, long off, char c)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static long line_offset(const char *data, int line) /* 1-based */
{
    const char *p = data;
    for (int i = 1; i < line; i++)
        p = strchr(p, '\n') + 1;
    return (long)(p - data);
}

static void test_open_refuses_modified_middle_line(void **state)
{
    write_trail(5);
    char *data = read_all(file, NULL);
    long off = line_offset(data, 2) + (long)(strstr(data + line_offset(data, 2), "\"reason\":\"r\"") -
                                             (data + line_offset(data, 2))) + 10;
    free(data);
    poke(file, off, 'R'); /* "reason":"R" in record 2 */
    char *before = read_all(file, NULL);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    expect_open_error(&o, WARD_EINVAL, SEG1 ":2: its hash does not match its bytes (modified)");
    char *after = read_all(file, NULL);
    assert_string_equal(before, after); /* nothing cut */
    free(before);
    free(after);
}

static void test_open_refuses_deleted_middle_line(void **state)
{
    write_trail(5);
    size_t len;
    char *data = read_all(file, &len);
    long a = line_offset(data, 3), b = line_offset(data, 4);
    FILE *f = fopen(file, "w");
    fwrite(data, 1, (size_t)a, f);
    fwrite(data + b, 1, len - (size_t)b, f);
    fclose(f);
    free(data);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    expect_open_error(&o, WARD_EINVAL, SEG1 ":3: its seq is out of order");
}

/* The checkpoint at close vouches for record 5: cutting it off (or changing
 * it, which open would take for a torn line) is truncation, refused. */
static void test_open_refuses_truncation_below_checkpoint(void **state)
{
    write_trail(5);
    size_t len;
    char *data = read_all(file, &len);
    long four = line_offset(data, 5);
    assert_int_equal(truncate(file, four), 0);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    expect_open_error(&o, WARD_EINVAL, "vouches for seq 5 but the trail ends at seq 4");
    /* the same with record 5 there but changed */
    FILE *f = fopen(file, "w");
    fwrite(data, 1, len, f);
    fclose(f);
    poke(file, four + (long)(strstr(data + four, "\"reason\":\"r\"") - (data + four)) + 10, 'R');
    expect_open_error(&o, WARD_EINVAL, "truncated below its last checkpoint");
    free(data);
    /* and a trail whose segments are all gone */
    assert_int_equal(unlink(file), 0);
    expect_open_error(&o, WARD_EINVAL, "no segment, yet checkpoints.jsonl vouches for 5 record(s)");
}

static void test_open_refuses_forged_checkpoint_head(void **state)
{
    write_trail(3);
    size_t len;
    char *cps = read_all(cpfile, &len);
    const char *last = memrchr(cps, '{', len);
    char *head = strstr(last, "\"head\":\"");
    assert_non_null(head);
    poke(cpfile, (long)(head - cps) + 8, head[8] == 'a' ? 'b' : 'a');
    free(cps);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    expect_open_error(&o, WARD_EINVAL, "head is not the hash of record 3");
}

static void test_open_refuses_foreign_file(void **state)
{
    assert_int_equal(mkdir(dir, 0700), 0);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("hello, world\nand more\n", f);
    fclose(f);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    expect_open_error(&o, WARD_EINVAL, SEG1 ":1: not a chained audit record");
    char *data = read_all(file, NULL); /* untouched */
    assert_string_equal(data, "hello, world\nand more\n");
    free(data);
    /* a checkpoints.jsonl that is not ours either */
    assert_int_equal(unlink(file), 0);
    f = fopen(cpfile, "w");
    fputs("{\"v\":1}\n", f);
    fclose(f);
    expect_open_error(&o, WARD_EINVAL, "not a checkpoint written by ward");
}

/* ======================================================================== */
/* the chain, segments and checkpoints                                       */
/* ======================================================================== */

static void test_chain_first_prev_is_zeros_and_links(void **state)
{
    write_trail(3);
    lines l = read_lines(); /* verify_trail checked every link */
    assert_int_equal(l.n, 3);
    assert_str_at(l.v[0], "prev", "0000000000000000000000000000000000000000000000000000000000000000");
    assert_string_equal(get(l.v[1], "prev")->valuestring, get(l.v[0], "hash")->valuestring);
    assert_string_equal(get(l.v[2], "prev")->valuestring, get(l.v[1], "hash")->valuestring);
    lines_free(&l);
    /* the line ends exactly as the doc says */
    char *raw = read_all(file, NULL);
    char *nl = strchr(raw, '\n');
    assert_true(nl - raw > 150);
    assert_int_equal(memcmp(nl - 75, ",\"hash\":\"", 9), 0);
    assert_int_equal(memcmp(nl - 75 - 74, ",\"prev\":\"", 9), 0);
    assert_int_equal(memcmp(nl - 2, "\"}", 2), 0);
    free(raw);
}

static void test_chain_links_across_rotation(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 0);
    o.segment_bytes = 4096; /* a handful of records each */
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    append_n(log, p, 100, "rotating");
    assert_int_equal(audit_log_flush(log, 5000), 0);
    audit_stats st;
    audit_log_stats(log, &st);
    close_log(log);
    trail t = verify_trail(false); /* names, links, seals (0400) and checkpoints */
    assert_int_equal(t.records, 100);
    assert_true(t.segments >= 10);
    assert_true(st.sealed >= t.segments - 2);
    assert_int_equal(t.cp_seq, 100);
    assert_true(t.checkpoints >= t.segments - 1); /* at least one per sealed segment */
    trail_free(&t);

    /* every sealed segment's last record has a checkpoint */
    char **names;
    size_t n = segment_names(dir, &names);
    char *cps = read_all(cpfile, NULL);
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned long long next = strtoull(names[i + 1] + 8, NULL, 10);
        char want[128];
        snprintf(want, sizeof(want), "{\"v\":1,\"seq\":%llu,", next - 1);
        if (strstr(cps, want) == NULL)
            fail_msg("no checkpoint for the last record (%llu) of sealed %s", next - 1, names[i]);
        char path[400];
        struct stat sst;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        assert_int_equal(stat(path, &sst), 0);
        assert_true((uint64_t)sst.st_size >= 4096); /* sealed once full, not before */
    }
    free(cps);
    names_free(names, n);

    /* and reopening continues in the last segment, or starts one after a sealed one */
    log = open_log(&o);
    append_n(log, producer(log), 5, "after reopening");
    close_log(log);
    t = verify_trail(false);
    assert_int_equal(t.records, 105);
    trail_free(&t);
}

static void test_rotation_by_age(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 0);
    o.segment_age_ms = 200;
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    append_n(log, p, 3, "old");
    assert_int_equal(audit_log_flush(log, 5000), 0);
    audit_stats st;
    for (int i = 0; i < 300; i++) { /* sealed while quiet, soon after 200 ms */
        audit_log_stats(log, &st);
        if (st.sealed > 0)
            break;
        sleep_ms(10);
    }
    assert_int_equal(st.sealed, 1);
    struct stat sst;
    assert_int_equal(stat(file, &sst), 0);
    assert_int_equal(sst.st_mode & 0777, 0400);
    append_n(log, p, 2, "new");
    close_log(log);
    trail t = verify_trail(false);
    assert_int_equal(t.segments, 2);
    assert_int_equal(t.records, 5);
    assert_string_equal(t.cp_segment, "segment-00000000000000000004.jsonl");
    trail_free(&t);
}

static void test_checkpoint_signatures_verify(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 0);
    o.checkpoint_records = 7;
    audit_log *log = open_log(&o);
    append_n(log, producer(log), 50, "signed");
    close_log(log);
    trail t = verify_trail(false); /* every signature, with EVP_DigestVerify and the doc's message */
    assert_int_equal(t.records, 50);
    assert_true(t.checkpoints >= 50 / 7);
    trail_free(&t);

    /* audit_checkpoint_message gives the doc's bytes; a changed byte fails */
    EVP_PKEY *pub = load_pub();
    char *cps = read_all(cpfile, NULL);
    cJSON *cp = cJSON_ParseWithLength(cps, strchr(cps, '\n') - cps);
    assert_non_null(cp);
    assert_str_at(cp, "node", NODE);
    size_t ml;
    char *want = doc_message(cp, &ml);
    ward_buf m;
    ward_buf_init(&m);
    const char *ts = get(cp, "ts")->valuestring;
    assert_int_equal(audit_checkpoint_message(&m, NODE, strlen(NODE), (uint64_t)get(cp, "seq")->valuedouble,
                                              get(cp, "head")->valuestring, ts, strlen(ts)),
                     0);
    assert_int_equal(m.len, ml);
    assert_memory_equal(m.ptr, want, ml);
    const char *sig = get(cp, "sig")->valuestring;
    assert_int_equal(audit_checkpoint_sig_verify(pub, m.ptr, m.len, sig, strlen(sig)), 0);
    m.ptr[30] ^= 1;
    assert_int_equal(audit_checkpoint_sig_verify(pub, m.ptr, m.len, sig, strlen(sig)), WARD_EINVAL);
    assert_false(sig_ok(pub, m.ptr, m.len, sig));
    m.ptr[30] ^= 1;
    assert_int_equal(audit_checkpoint_sig_verify(pub, m.ptr, m.len, "AAAA", 4), WARD_EINVAL);
    char key_id[AUDIT_KEY_ID_HEX + 1];
    assert_int_equal(audit_key_id(pub, key_id), 0);
    assert_str_at(cp, "key", key_id);
    assert_true(strncmp(get(cp, "segment")->valuestring, "segment-", 8) == 0);
    ward_buf_dispose(&m);
    free(want);
    cJSON_Delete(cp);
    free(cps);
    EVP_PKEY_free(pub);
}

static void test_checkpoint_at_close_covers_last_record(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DROP, 4);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_log_pause(log);
    append_n(log, p, 4, "kept");
    audit_record r = rec_of(AUDIT_ALLOW, "dropped");
    assert_int_equal(audit_log_append(log, p, &r), WARD_ELIMIT);
    audit_log_resume(log);
    close_log(log); /* the trailing gap record is the last record, and vouched for */
    trail t = verify_trail(false);
    assert_int_equal(t.records, 5);
    assert_int_equal(t.cp_seq, 5);
    trail_free(&t);
    /* a close with nothing new adds no checkpoint */
    log = open_log(&o);
    close_log(log);
    trail u = verify_trail(false);
    assert_int_equal(u.checkpoints, t.checkpoints);
    trail_free(&u);
}

static void test_checkpoint_every_n_records(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 0);
    o.checkpoint_records = 100;
    audit_log *log = open_log(&o);
    append_n(log, producer(log), 1000, "n");
    assert_int_equal(audit_log_flush(log, 5000), 0);
    sleep_ms(50);
    /* while still open: one every 100 records */
    char *cps = read_all(cpfile, NULL);
    double last = 0;
    int n = 0;
    for (char *at = cps; *at != '\0'; at = strchr(at, '\n') + 1, n++) {
        double seq = strtod(strstr(at, "\"seq\":") + 6, NULL);
        if (seq - last > 100)
            fail_msg("checkpoints at seq %.0f then %.0f", last, seq);
        last = seq;
    }
    assert_true(n >= 10);
    assert_true(last >= 1000 - 100);
    free(cps);
    close_log(log);
    trail t = verify_trail(false);
    trail_free(&t);
}

static void test_checkpoint_every_second(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 0);
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    int64_t t0 = audit_now_ns();
    for (int i = 0; i < 25; i++) { /* 2.5 s of a trickle */
        append_n(log, p, 1, "trickle");
        sleep_ms(100);
    }
    audit_stats st;
    audit_log_stats(log, &st);
    int64_t secs = (audit_now_ns() - t0) / 1000000000;
    assert_true(st.checkpoints >= 2);
    assert_true((int64_t)st.checkpoints <= secs + 1); /* not one per record either */
    close_log(log);
    trail t = verify_trail(false);
    assert_int_equal(t.cp_seq, 25);
    trail_free(&t);
}

static void test_key_file_option(void **state)
{
    char key[300];
    snprintf(key, sizeof(key), "%s/signing.pem", tmpdir);
    ward_err err;
    EVP_PKEY *k = NULL;
    assert_int_equal(audit_key_generate(key, &k, &err), 0);
    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(audit_key_generate(key, NULL, &err), WARD_EIO); /* never replaced */
    assert_non_null(strstr(err.msg, "refusing to replace it"));
    char kid[AUDIT_KEY_ID_HEX + 1];
    assert_int_equal(audit_key_id(k, kid), 0);

    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    o.key_file = key;
    audit_log *log = open_log(&o);
    audit_record r = rec_of(AUDIT_ALLOW, "r");
    assert_int_equal(audit_log_append(log, producer(log), &r), 0);
    close_log(log);
    char path[400];
    snprintf(path, sizeof(path), "%s/checkpoint.key", dir);
    assert_int_equal(access(path, F_OK), -1); /* none generated beside the log */
    trail t = verify_trail(false);            /* with checkpoint.pub, written from key */
    trail_free(&t);
    char *cps = read_all(cpfile, NULL);
    char want[64];
    snprintf(want, sizeof(want), "\"key\":\"%s\"", kid);
    assert_non_null(strstr(cps, want));
    free(cps);
    EVP_PKEY *pub = NULL;
    snprintf(path, sizeof(path), "%s/checkpoint.pub", dir);
    assert_int_equal(audit_public_key_load(path, &pub, &err), 0);
    assert_int_equal(EVP_PKEY_eq(pub, k), 1);
    EVP_PKEY_free(pub);
    EVP_PKEY_free(k);

    /* a missing key file, a file that is no key, an EC key: refused, named */
    snprintf(path, sizeof(path), "%s/missing.pem", tmpdir);
    o.key_file = path;
    expect_open_error(&o, WARD_ENOENT, "missing.pem: No such file or directory");
    snprintf(path, sizeof(path), "%s/junk.pem", tmpdir);
    append_bytes(path, "not a key\n");
    expect_open_error(&o, WARD_EINVAL, "junk.pem: not a PEM private key");
    snprintf(path, sizeof(path), "%s/ec.pem", tmpdir);
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    FILE *f = fopen(path, "w");
    PEM_write_PrivateKey(f, ec, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    EVP_PKEY_free(ec);
    expect_open_error(&o, WARD_EINVAL, "ec.pem: not an Ed25519 key");
}

static void test_open_refuses_bad_node(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    o.node = "spiffe://td/x\nforged";
    expect_open_error(&o, WARD_EINVAL, "node must be printable ASCII");
    o.node = NULL; /* no node: null in records, an empty line in the signed message */
    audit_log *log = open_log(&o);
    audit_record r = rec_of(AUDIT_ALLOW, "r");
    assert_int_equal(audit_log_append(log, producer(log), &r), 0);
    close_log(log);
    trail t = verify_trail(false);
    assert_int_equal(t.checkpoints, 1);
    trail_free(&t);
}

static void test_open_refuses_missing_segment_between(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 0);
    o.segment_bytes = 2048;
    audit_log *log = open_log(&o);
    append_n(log, producer(log), 40, "r");
    close_log(log);
    char **names;
    size_t n = segment_names(dir, &names);
    assert_true(n >= 3);
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", dir, names[n - 2]);
    assert_int_equal(unlink(path), 0);
    char want[200];
    snprintf(want, sizeof(want), "but %s starts at", names[n - 1]);
    names_free(names, n);
    expect_open_error(&o, WARD_EINVAL, want);
}

/* ======================================================================== */
/* syncing beside the writer (a busy disk)                                   */
/* ======================================================================== */

/* 3 ms of slack (64 slots at 20 records/ms) is less than a loaded (virtual)
 * machine may keep a CPU from a thread. sched_first() puts this thread,
 * and the threads it then starts (a log's writer and syncer inherit it), on
 * one CPU, so a CPU taken away stops producer and writer alike, and ahead
 * of other processes: round-robin real-time when allowed (root), else nice
 * -10, else as it is. sched_restore() undoes it (teardown too). */
static bool sched_saved;
static cpu_set_t sched_cpus;
static int sched_policy, sched_nice;
static struct sched_param sched_param_was;

static void sched_first(void)
{
    cpu_set_t one;
    assert_int_equal(sched_getaffinity(0, sizeof(sched_cpus), &sched_cpus), 0);
    assert_int_equal(pthread_getschedparam(pthread_self(), &sched_policy, &sched_param_was), 0);
    errno = 0;
    sched_nice = getpriority(PRIO_PROCESS, 0);
    sched_saved = true;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
    struct sched_param rt = {.sched_priority = 1};
    if (pthread_setschedparam(pthread_self(), SCHED_RR, &rt) != 0 &&
        setpriority(PRIO_PROCESS, 0, -10) != 0)
        printf("(at normal priority: %s)\n", strerror(errno));
}

static void sched_restore(void)
{
    if (!sched_saved)
        return;
    sched_saved = false;
    pthread_setschedparam(pthread_self(), sched_policy, &sched_param_was);
    setpriority(PRIO_PROCESS, 0, sched_nice);
    sched_setaffinity(0, sizeof(sched_cpus), &sched_cpus);
}

/* One second of ~20,000 records/s: 20 every ms, by absolute deadlines (a
 * deadline the test itself missed is skipped, never caught up in a burst).
 * Returns the records refused; *appended counts those taken, *longest_ms is
 * the longest run of refusals (from the first to the last of a run of ticks
 * that each saw one). */
static int paced_second(audit_log *log, audit_producer *p, const audit_record *r, int *appended,
                        double *longest_ms)
{
    int refused = 0;
    int64_t run_from = -1, last_refused = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    *longest_ms = 0;
    for (int tick = 0; tick < 1000; tick++) {
        bool hit = false;
        for (int i = 0; i < 20; i++) {
            int rc = audit_log_append(log, p, r);
            if (rc == WARD_ELIMIT)
                refused++, hit = true;
            else if (rc != 0)
                fail_msg("append: %s", ward_strerror(rc));
            else
                (*appended)++;
        }
        int64_t t = audit_now_ns();
        if (hit) {
            if (run_from < 0)
                run_from = t;
            last_refused = t;
            if ((double)(last_refused - run_from) / 1e6 > *longest_ms)
                *longest_ms = (double)(last_refused - run_from) / 1e6;
        } else {
            run_from = -1;
        }
        next.tv_nsec += 1000000;
        if (next.tv_nsec >= 1000000000) {
            next.tv_sec++;
            next.tv_nsec -= 1000000000;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec)) {
            next = now; /* late: the next tick a whole ms from now */
            next.tv_nsec += 1000000;
            if (next.tv_nsec >= 1000000000) {
                next.tv_sec++;
                next.tv_nsec -= 1000000000;
            }
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    return refused;
}

/* Every fdatasync 300 ms late: the writer goes on draining and writing
 * while the syncer waits, so a producer at ~20,000 records/s into a
 * 1,024-slot ring (51 ms of records) under DENY is never refused, and the
 * trail is whole. A writer that waited for a sync would refuse appends for
 * about 250 ms of every 300, every time. (With 64 slots, 3 ms of records,
 * the test measured the scheduler: under ASan in CI every second saw 6-11 ms
 * runs of refusals.) */
static void test_slow_sync_never_refuses_appends(void **state)
{
    sched_first();
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 1024);
    o.sync_delay_ms = 300;
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_record r = rec_of(AUDIT_ALLOW, "busy disk");
    r.path = audit_cstr("/v1/items");
    r.source_principal = audit_cstr("spiffe://example.org/ns/shop/sa/frontend");

    int64_t t0 = audit_now_ns(); /* the hook is on: a flush waits for a sync */
    assert_int_equal(audit_log_append(log, p, &r), 0);
    assert_int_equal(audit_log_flush(log, 10000), 0);
    assert_true(audit_now_ns() - t0 >= 300 * 1000000LL);

    /* Zero refusals in a second. A second that saw a few ms of them (a
     * loaded machine kept the writer from its CPU, or the kernel held one
     * write(2) that long) is tried again, up to five seconds in all; a
     * writer that waits for a sync never gets one without. */
    int appended = 1, refused = 0;
    audit_stats st;
    for (int attempt = 1; attempt <= 5; attempt++) {
        audit_stats before;
        audit_log_stats(log, &before);
        int taken = 0;
        double longest;
        int64_t start = audit_now_ns();
        refused = paced_second(log, p, &r, &taken, &longest);
        double secs = (double)(audit_now_ns() - start) / 1e9;
        appended += taken;
        audit_log_stats(log, &st);
        printf("%d records in %.2f s (%.0f/s), %d refused (for %.1f ms at most in a row); "
               "%llu checkpoints meanwhile\n",
               taken, secs, taken / secs, refused, longest,
               (unsigned long long)(st.checkpoints - before.checkpoints));
        if (longest >= 100)
            fail_msg("appends were refused for %.0f ms in a row: the writer waited for a sync",
                     longest);
        if (refused == 0) {
            assert_true(st.checkpoints > before.checkpoints); /* synced records were vouched for */
            break;
        }
    }
    assert_int_equal(refused, 0);
    assert_int_equal(audit_log_flush(log, 10000), 0);
    close_log(log);
    sched_restore();
    trail t = verify_trail(false);
    assert_int_equal(t.records, (uint64_t)appended);
    assert_int_equal(t.cp_seq, t.records);
    trail_free(&t);
}

/* A checkpoint is only written once its record is synced: with every sync
 * 200 ms late, the writer has written 1000 records (10 checkpoints due) and
 * vouched for none; once a flush saw them synced, there is one every 100. */
static void test_checkpoint_waits_for_sync(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 0);
    o.sync_delay_ms = 200;
    o.checkpoint_records = 100;
    audit_log *log = open_log(&o);
    int64_t t0 = audit_now_ns();
    append_n(log, producer(log), 1000, "n");
    audit_stats st;
    do {
        sleep_ms(1);
        audit_log_stats(log, &st);
    } while (st.written < 1000 && audit_now_ns() - t0 < 5000000000LL);
    int64_t waited = audit_now_ns() - t0;
    assert_int_equal(st.written, 1000);
    if (waited < 150 * 1000000LL) /* else too slow a machine to tell */
        assert_int_equal(st.checkpoints, 0);
    assert_int_equal(audit_log_flush(log, 10000), 0);
    audit_log_stats(log, &st);
    assert_true(st.checkpoints >= 10);
    char *cps = read_all(cpfile, NULL);
    double last = 0;
    int hundreds = 0;
    for (char *at = cps; *at != '\0'; at = strchr(at, '\n') + 1) {
        double seq = strtod(strstr(at, "\"seq\":") + 6, NULL);
        assert_true(seq > last && seq - last <= 100);
        hundreds += (uint64_t)seq % 100 == 0;
        last = seq;
    }
    assert_int_equal(hundreds, 10); /* one every 100; a very slow disk may add one of the second */
    free(cps);
    close_log(log);
    trail t = verify_trail(false);
    assert_int_equal(t.cp_seq, 1000);
    trail_free(&t);
}

/* A failed fdatasync on the syncer thread is the log's sticky failure:
 * flush, status, append and close report it, and nothing written after it
 * is vouched for, not even at close. */
static void test_sync_failure_is_sticky(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    o.checkpoint_records = 1; /* every record gets a checkpoint once synced */
    audit_log *log = open_log(&o);
    audit_producer *p = producer(log);
    audit_record r = rec_of(AUDIT_DENY, "synced");
    assert_int_equal(audit_log_append(log, p, &r), 0);
    assert_int_equal(audit_log_flush(log, 5000), 0);
    audit_stats st;
    audit_log_stats(log, &st);
    assert_int_equal(st.checkpoints, 1);

    atomic_store(&sync_fail, true);
    r = rec_of(AUDIT_DENY, "written, never synced");
    assert_int_equal(audit_log_append(log, p, &r), 0);
    int frc = audit_log_flush(log, 5000);
    ward_err err;
    ward_err_clear(&err);
    int src = audit_log_status(log, &err);
    int arc = audit_log_append(log, p, &r);
    /* a checkpoint of the second would be due */
    sleep_ms(1100);
    atomic_store(&sync_fail, false); /* the disk works again: the failure stays */
    audit_log_stats(log, &st);
    assert_int_equal(frc, WARD_EIO);
    assert_int_equal(src, WARD_EIO);
    assert_non_null(strstr(err.msg, "fdatasync: Input/output error"));
    assert_true(strstr(err.msg, SEG1 ": ") != NULL || /* or a sync of checkpoints alone */
                strstr(err.msg, "checkpoints.jsonl: ") != NULL);
    assert_int_equal(arc, WARD_EIO);
    assert_true(st.write_errors >= 1);
    assert_int_equal(st.checkpoints, 1);

    ward_err_clear(&err);
    assert_int_equal(audit_log_close(log, &err), WARD_EIO);
    assert_non_null(strstr(err.msg, "fdatasync: Input/output error"));
    trail t = verify_trail(false);
    assert_int_equal(t.records, 2); /* written */
    assert_int_equal(t.cp_seq, 1);  /* but only the synced one vouched for */
    assert_int_equal(t.checkpoints, 1);
    trail_free(&t);
}

/* ---- kill -9 ------------------------------------------------------------------------- */

enum { KILL_ROUNDS = 8, MAX_ROUNDS = 16 };

/* How the children of a kill -9 test write. */
typedef struct crash_opts {
    uint64_t segment_bytes;
    uint32_t checkpoint_records;
    uint32_t sync_delay_ms; /* the test hook: a busy disk */
    int burst;              /* records between naps of 0.5 ms */
} crash_opts;

/* The child: appends "round:i" records as fast as a worker might, until killed. */
static void crash_child(int round, const crash_opts *co)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 256);
    o.segment_bytes = co->segment_bytes;
    o.checkpoint_records = co->checkpoint_records;
    o.fsync_ms = 5;
    o.sync_delay_ms = co->sync_delay_ms;
    audit_log *log = NULL;
    ward_err err;
    if (audit_log_open(&o, &log, &err) != 0) {
        fprintf(stderr, "child %d: %s\n", round, err.msg);
        _exit(3);
    }
    audit_producer *p;
    if (audit_log_producer_new(log, &p) != 0)
        _exit(4);
    char reason[32];
    for (int i = 0;; i++) {
        snprintf(reason, sizeof(reason), "%d:%d", round, i);
        audit_record r = rec_of(i % 5 ? AUDIT_ALLOW : AUDIT_DENY, reason);
        r.path = audit_cstr("/v1/items");
        if (audit_log_append(log, p, &r) != 0)
            _exit(5);
        if (i % co->burst == co->burst - 1) {
            struct timespec ts = {0, 500000};
            nanosleep(&ts, NULL);
        }
    }
}

/* Each round's records are 0, 1, 2, ... with no hole: only a tail may be lost. */
static void check_round_line(const cJSON *line, size_t i, void *ctx)
{
    int *next = ctx, round, k;
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(line, "reason");
    assert_true(cJSON_IsString(reason));
    assert_int_equal(sscanf(reason->valuestring, "%d:%d", &round, &k), 2);
    assert_true(round >= 0 && round < MAX_ROUNDS);
    if (k != next[round])
        fail_msg("record %zu: %d:%d, want %d:%d", i + 1, round, k, round, next[round]);
    next[round]++;
}

/* rounds children killed at a random moment (with a sync delay, later: a
 * few syncs into the run); power_loss: each file is then also cut back to
 * what the child had synced (cut_to_durable). */
static void kill9_rounds(int rounds, const crash_opts *co, bool power_loss)
{
    assert_true(rounds <= MAX_ROUNDS);
    uint32_t sync_delay_ms = co->sync_delay_ms;
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    uint64_t prev_cp = 0, lost = 0, cp_after_loss = 0, cp_syncs = 0;
    printf("kill -9 rounds, seed %u\n", seed);
    for (int round = 0; round < rounds; round++) {
        if (power_loss)
            durable_reset();
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            durable_on = power_loss;
            crash_child(round, co);
        }
        /* a random moment: sometimes during open (recovery, key), mostly mid-stream */
        int ms = round == 0 ? (int)(rand_r(&seed) % 5)
                            : (int)sync_delay_ms + 20 + (int)(rand_r(&seed) % 400);
        if (sync_delay_ms > 0 && round > 0)
            ms += (int)(rand_r(&seed) % (4 * sync_delay_ms));
        sleep_ms(ms);
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status))
            fail_msg("round %d: the child exited (status %d) before it was killed", round,
                     WEXITSTATUS(status));
        /* as the crash left it: the chain verifies up to at most a torn last
         * line, and every checkpointed record is there (verify_trail checks
         * each checkpoint's seq and head against the records) */
        trail t = verify_trail(true);
        assert_true(t.cp_seq >= prev_cp); /* checkpoints never go back */
        trail_free(&t);
        if (power_loss) {
            /* and as a power loss would have left it: still every
             * checkpointed record there, for checkpoints only cover
             * records already synced */
            cp_syncs += check_sync_history();
            lost += cut_to_durable();
            t = verify_trail(true);
            assert_true(t.cp_seq >= prev_cp);
            trail_free(&t);
            if (t.cp_seq > cp_after_loss)
                cp_after_loss = t.cp_seq;
        }
        prev_cp = t.cp_seq;
    }
    /* the last reopen cuts what the last crash tore and vouches for the rest */
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 0);
    audit_log *log = open_log(&o);
    close_log(log);
    trail t = verify_trail(false);
    assert_false(t.torn);
    assert_true(t.records >= prev_cp);
    assert_int_equal(t.cp_seq, t.records);
    assert_true(t.segments > 1);
    printf("%llu records in %llu segments, %llu checkpoints\n", (unsigned long long)t.records,
           (unsigned long long)t.segments, (unsigned long long)t.checkpoints);
    if (power_loss) {
        printf("power losses took %llu bytes of records never synced; a checkpoint up to seq "
               "%llu outlived them; %llu syncs of checkpoints.jsonl replayed\n",
               (unsigned long long)lost, (unsigned long long)cp_after_loss,
               (unsigned long long)cp_syncs);
        assert_true(lost > 0);          /* the losses did take something */
        assert_true(cp_after_loss > 0); /* and checkpoints were there to be checked */
        assert_true(cp_syncs > 0);
    }
    trail_free(&t);
    int next[MAX_ROUNDS] = {0};
    scan_lines(check_round_line, next);
}

static void test_kill9_rounds_lose_nothing_checkpointed(void **state)
{
    crash_opts co = {.segment_bytes = 64 * 1024, .checkpoint_records = 200, .burst = 50};
    kill9_rounds(KILL_ROUNDS, &co, false);
}

/* With every sync 50 ms late (the writer ahead of the disk), and the files
 * cut back to what was synced after each kill: no checkpoint ever vouches
 * for a record that a power loss takes. About 10,000 records/s into 1 MiB
 * segments, a checkpoint due every 50 records: most checkpoints are written
 * while the active segment is being written and synced side by side. */
static void test_kill9_power_loss_with_slow_sync(void **state)
{
    crash_opts co = {
        .segment_bytes = 1024 * 1024, .checkpoint_records = 50, .sync_delay_ms = 50, .burst = 5};
    kill9_rounds(10, &co, true);
}

/* ======================================================================== */
/* producers and options                                                     */
/* ======================================================================== */

static void test_producer_limit(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 2);
    o.max_producers = 2;
    audit_log *log = open_log(&o);
    audit_producer *p;
    assert_int_equal(audit_log_producer_new(log, &p), 0);
    assert_int_equal(audit_log_producer_new(log, &p), 0);
    assert_int_equal(audit_log_producer_new(log, &p), WARD_ELIMIT);
    assert_null(p);
    close_log(log);
}

static void test_append_with_another_logs_producer(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *a = open_log(&o);
    char other[160];
    snprintf(other, sizeof(other), "%s/other", tmpdir);
    o.dir = other;
    audit_log *b = open_log(&o);
    audit_producer *pa = producer(a);
    audit_record r = rec_of(AUDIT_ALLOW, "r");
    assert_int_equal(audit_log_append(b, pa, &r), WARD_EINVAL);
    assert_int_equal(audit_log_append(a, NULL, &r), WARD_EINVAL);
    close_log(a);
    close_log(b);
    size_t len;
    char *data = slurp(&len);
    assert_int_equal(len, 0);
    free(data);
}

static void test_overflow_names(void **state)
{
    audit_overflow o;
    assert_int_equal(audit_overflow_parse("deny", 4, &o), 0);
    assert_int_equal(o, AUDIT_OVERFLOW_DENY);
    assert_int_equal(audit_overflow_parse("block", 5, &o), 0);
    assert_int_equal(o, AUDIT_OVERFLOW_BLOCK);
    assert_int_equal(audit_overflow_parse("drop", 4, &o), 0);
    assert_int_equal(o, AUDIT_OVERFLOW_DROP);
    assert_int_equal(audit_overflow_parse("Deny", 4, &o), WARD_EINVAL);
    assert_int_equal(audit_overflow_parse("dro", 3, &o), WARD_EINVAL);
    assert_int_equal(audit_overflow_parse("", 0, &o), WARD_EINVAL);
    assert_string_equal(audit_overflow_name(AUDIT_OVERFLOW_DROP), "drop");
    audit_options opts;
    audit_options_init(&opts);
    assert_int_equal(opts.overflow, AUDIT_OVERFLOW_DENY); /* fail closed by default */
    assert_int_equal(opts.fsync_ms, 100);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_record_round_trip),
        T(test_record_connection),
        T(test_record_headers),
        T(test_json_str_random),
        T(test_record_key_order),
        T(test_record_time_format),
        T(test_record_escaping),
        T(test_record_truncation),
        T(test_record_ids),
        T(test_seq_contiguous_across_threads),
        T(test_ring_of_4_records_of_every_size),
        T(test_ring_of_256_records_of_every_size),
        T(test_event_record_fields),
        T(test_event_record_key_order),
        T(test_event_without_name_is_refused),
        T(test_event_escaping_and_truncation),
        T(test_event_overflow_deny_and_reserve),
        T(test_event_never_dropped),
        T(test_overflow_deny_refuses_when_full),
        T(test_reserved_slot_cannot_be_taken),
        T(test_overflow_block_waits_for_writer),
        T(test_overflow_drop_gap_and_deny_kept),
        T(test_overflow_drop_trailing_gap_at_close),
        T(test_close_writes_everything),
        T(test_flush_writes_before_returning),
        T(test_write_failure_is_sticky),
        T(test_open_creates_dir_and_file_private),
        T(test_open_narrows_existing_file),
        T(test_open_refuses_a_file_as_dir),
        T(test_open_refuses_missing_dir_option),
        T(test_open_refuses_unwritable_dir),
        T(test_open_refuses_symlinked_file),
        T(test_open_refuses_second_writer),
        T(test_open_continues_seq),
        T(test_open_cuts_unverifiable_last_line),
        T(test_open_refuses_modified_middle_line),
        T(test_open_refuses_deleted_middle_line),
        T(test_open_refuses_truncation_below_checkpoint),
        T(test_open_refuses_forged_checkpoint_head),
        T(test_open_refuses_foreign_file),
        T(test_chain_first_prev_is_zeros_and_links),
        T(test_chain_links_across_rotation),
        T(test_rotation_by_age),
        T(test_checkpoint_signatures_verify),
        T(test_checkpoint_at_close_covers_last_record),
        T(test_checkpoint_every_n_records),
        T(test_checkpoint_every_second),
        T(test_key_file_option),
        T(test_open_refuses_bad_node),
        T(test_open_refuses_missing_segment_between),
        T(test_slow_sync_never_refuses_appends),
        T(test_checkpoint_waits_for_sync),
        T(test_sync_failure_is_sticky),
        T(test_kill9_rounds_lose_nothing_checkpointed),
        T(test_kill9_power_loss_with_slow_sync),
        T(test_producer_limit),
        T(test_append_with_another_logs_producer),
        T(test_overflow_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
