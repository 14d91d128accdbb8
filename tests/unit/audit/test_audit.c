/* test_audit.c - unit tests of the audit log: JSON lines, escaping, rings, overflow policies, failures, files */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "audit/audit.h"
#include "common/ward.h"

#define S(lit) ((audit_str){(lit), sizeof(lit) - 1}) /* a literal as a slice, NUL bytes included */
#define NODE "spiffe://example.org/ns/shop/sa/proxy"

static char tmpdir[64];
static char dir[128];  /* tmpdir/audit: the log's folder */
static char file[160]; /* dir/audit.jsonl */

/* ---- helpers --------------------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    strcpy(tmpdir, "/tmp/ward-audit-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(dir, sizeof(dir), "%s/audit", tmpdir);
    snprintf(file, sizeof(file), "%s/audit.jsonl", dir);
    return 0;
}

static int teardown(void **state)
{
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

static char *slurp(size_t *len)
{
    char *data = NULL;
    size_t n = 0;
    ward_err err;
    if (ward_file_read(file, (size_t)1 << 30, &data, &n, &err) != 0)
        fail_msg("reading %s: %s", file, err.msg);
    if (len != NULL)
        *len = n;
    return data;
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

static lines read_lines(void)
{
    lines l = {NULL, 0};
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

static void test_seq_contiguous_across_threads(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_BLOCK, 64); /* small: producers wait often */
    audit_log *log = open_log(&o);
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.log = log, .p = producer(log), .no = i};
        assert_int_equal(pthread_create(&w[i].t, NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(w[i].t, NULL);
        assert_int_equal(w[i].failures, 0);
    }
    audit_stats st;
    audit_log_stats(log, &st);
    assert_int_equal(st.appended, THREADS * PER_THREAD);
    close_log(log);

    int next[THREADS] = {0};
    assert_int_equal(scan_lines(check_worker_line, next), THREADS * PER_THREAD);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(next[i], PER_THREAD);
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
    assert_non_null(strstr(err.msg, "audit.jsonl: write: File too large"));
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

static void test_open_creates_dir_and_file_private(void **state)
{
    snprintf(dir, sizeof(dir), "%s/a/b/audit", tmpdir); /* missing parents too */
    snprintf(file, sizeof(file), "%s/audit.jsonl", dir);
    mode_t old = umask(0);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    umask(old);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(stat(file, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    int fl = open(file, O_RDONLY);
    assert_true(fl >= 0);
    assert_true((fcntl(fl, F_GETFL) & O_ACCMODE) == O_RDONLY);
    close(fl);
    close_log(log);
}

static void test_open_narrows_existing_file(void **state)
{
    assert_int_equal(mkdir(dir, 0700), 0);
    int fd = open(file, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    fchmod(fd, 0644);
    close(fd);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    audit_log *log = open_log(&o);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    close_log(log);
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
    assert_int_equal(symlink(target, file), 0);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
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

static void test_open_continues_seq(void **state)
{
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    for (int round = 0; round < 2; round++) {
        audit_log *log = open_log(&o);
        audit_producer *p = producer(log);
        audit_record r = rec_of(AUDIT_ALLOW, "r");
        for (int i = 0; i < 3; i++)
            assert_int_equal(audit_log_append(log, p, &r), 0);
        close_log(log);
    }
    /* a crash in the middle of a write leaves a torn line: cut off at open */
    FILE *f = fopen(file, "a");
    assert_non_null(f);
    fputs("{\"v\":1,\"seq\":7,\"ts\":\"20", f);
    fclose(f);
    audit_log *log = open_log(&o);
    audit_record r = rec_of(AUDIT_ALLOW, "after the crash");
    assert_int_equal(audit_log_append(log, producer(log), &r), 0);
    close_log(log);
    lines l = read_lines();
    assert_int_equal(l.n, 7);
    assert_seq_contiguous(&l, 1);
    assert_str_at(l.v[6], "reason", "after the crash");
    lines_free(&l);
}

static void test_open_refuses_foreign_file(void **state)
{
    assert_int_equal(mkdir(dir, 0700), 0);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("hello, world\n", f);
    fclose(f);
    audit_options o = opts_for(AUDIT_OVERFLOW_DENY, 0);
    expect_open_error(&o, WARD_EINVAL, "move the file aside");
    size_t len;
    char *data = slurp(&len); /* untouched */
    assert_string_equal(data, "hello, world\n");
    free(data);
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
        T(test_record_key_order),
        T(test_record_time_format),
        T(test_record_escaping),
        T(test_record_truncation),
        T(test_record_ids),
        T(test_seq_contiguous_across_threads),
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
        T(test_open_refuses_foreign_file),
        T(test_producer_limit),
        T(test_append_with_another_logs_producer),
        T(test_overflow_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
