/* test_sink.c - the syslog sink: exact messages and SD escaping, framing, cursor, rotation, TLS */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "audit/audit.h"
#include "common/ward.h"

#define NODE   "spiffe://example.org/ns/shop/sa/proxy"
#define BOM    "\xEF\xBB\xBF"
#define HASH64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define ZERO64 "0000000000000000000000000000000000000000000000000000000000000000"

static char tmpdir[64];
static char dir[128];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/ward-sink-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(dir, sizeof(dir), "%s/audit", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    chmod(tmpdir, 0700);
    return nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- a collector: octet-counted frames over TCP (or TLS), seqs recorded ---------------- */

typedef struct collector {
    int lfd;
    uint16_t port;
    pthread_t thread;
    _Atomic bool stop;
    _Atomic bool stall; /* stop reading (a slow collector) */
    size_t crash_after; /* once: after this many messages, reset the connection and
                           drop what was read but not yet counted (0: never) */
    bool keep_raw;      /* keep every message's bytes */
    SSL_CTX *tls;       /* server side; NULL: plain TCP */
    pthread_mutex_t mu;
    uint64_t *seqs; /* per message, in arrival order */
    char **raw;
    size_t n, cap;
    _Atomic size_t n_pub; /* n, for polling without the lock */
    _Atomic int conns, tls_failures;
    size_t bad_frames;
    bool crashed;
} collector;

static void collector_add(collector *c, const char *msg, size_t len)
{
    const char *p = memmem(msg, len, "seq=\"", 5);
    uint64_t seq = 0;
    if (p != NULL)
        seq = strtoull(p + 5, NULL, 10);
    pthread_mutex_lock(&c->mu);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 1024;
        c->seqs = realloc(c->seqs, c->cap * sizeof(*c->seqs));
        c->raw = realloc(c->raw, c->cap * sizeof(*c->raw));
    }
    c->seqs[c->n] = seq;
    c->raw[c->n] = c->keep_raw ? strndup(msg, len) : NULL;
    c->n++;
    atomic_store(&c->n_pub, c->n);
    pthread_mutex_unlock(&c->mu);
}

/* Takes the complete frames at the start of buf; returns the bytes used. */
static size_t collector_frames(collector *c, const char *buf, size_t len, bool *crash)
{
    size_t off = 0;
    while (off < len) {
        size_t i = off, msglen = 0;
        while (i < len && buf[i] >= '0' && buf[i] <= '9' && i - off < 10)
            msglen = msglen * 10 + (size_t)(buf[i++] - '0');
        if (i == len)
            break;
        if (i == off || buf[i] != ' ' || buf[off] == '0') {
            c->bad_frames++;
            return len;
        }
        if (len - i - 1 < msglen)
            break;
        collector_add(c, buf + i + 1, msglen);
        off = i + 1 + msglen;
        if (c->crash_after != 0 && !c->crashed && atomic_load(&c->n_pub) >= c->crash_after) {
            *crash = true; /* the rest of buf is lost with the process */
            return len;
        }
    }
    return off;
}

static void serve(collector *c, int fd)
{
    SSL *ssl = NULL;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (c->tls != NULL) {
        ssl = SSL_new(c->tls);
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1) {
            atomic_fetch_add(&c->tls_failures, 1);
            SSL_free(ssl);
            close(fd);
            ERR_clear_error();
            return;
        }
    }
    atomic_fetch_add(&c->conns, 1);
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    while (!atomic_load(&c->stop)) {
        if (atomic_load(&c->stall)) {
            usleep(10000);
            continue;
        }
        if (ssl == NULL || SSL_pending(ssl) == 0) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 50) <= 0)
                continue;
        }
        ssize_t r = ssl != NULL ? SSL_read(ssl, buf + len, (int)(cap - len))
                                : recv(fd, buf + len, cap - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
        bool crash = false;
        size_t used = collector_frames(c, buf, len, &crash);
        memmove(buf, buf + used, len - used);
        len -= used;
        if (crash) {
            c->crashed = true;
            struct linger l = {1, 0}; /* RST: what the kernel holds unread is lost too */
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
            break;
        }
    }
    free(buf);
    if (ssl != NULL)
        SSL_free(ssl);
    close(fd);
    ERR_clear_error();
}

static void *collector_main(void *arg)
{
    collector *c = arg;
    while (!atomic_load(&c->stop)) {
        struct pollfd p = {c->lfd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(c->lfd, NULL, NULL);
        if (fd >= 0)
            serve(c, fd);
    }
    return NULL;
}

static int listen_on(uint16_t port, uint16_t *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 8) != 0) {
        close(fd);
        return -1;
    }
    socklen_t al = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &al);
    *bound = ntohs(a.sin_port);
    return fd;
}

/* port 0: any free port. */
static void collector_start(collector *c, uint16_t port)
{
    c->lfd = listen_on(port, &c->port);
    assert_true(c->lfd >= 0);
    pthread_mutex_init(&c->mu, NULL);
    atomic_store(&c->stop, false);
    assert_int_equal(pthread_create(&c->thread, NULL, collector_main, c), 0);
}

static void collector_stop(collector *c)
{
    atomic_store(&c->stop, true);
    pthread_join(c->thread, NULL);
    close(c->lfd);
    c->lfd = -1;
}

static void collector_free(collector *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->raw[i]);
    free(c->raw);
    free(c->seqs);
    pthread_mutex_destroy(&c->mu);
    SSL_CTX_free(c->tls);
    memset(c, 0, sizeof(*c));
}

/* Waits (up to ms) until every seq 1..n has arrived; returns whether it did. */
static bool collector_has_all(collector *c, uint64_t n, int ms)
{
    int64_t end = now_ms() + ms;
    uint8_t *seen = calloc(n + 1, 1);
    size_t done = 0, at = 0;
    uint64_t missing = n;
    while (now_ms() < end) {
        pthread_mutex_lock(&c->mu);
        for (; done < c->n; done++) {
            uint64_t q = c->seqs[done];
            if (q >= 1 && q <= n && !seen[q]) {
                seen[q] = 1;
                missing--;
            }
        }
        at = c->n;
        pthread_mutex_unlock(&c->mu);
        if (missing == 0)
            break;
        usleep(5000);
    }
    (void)at;
    free(seen);
    return missing == 0;
}

/* How many messages carried seq q. */
static size_t collector_count(collector *c, uint64_t q)
{
    size_t k = 0;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++)
        k += c->seqs[i] == q;
    pthread_mutex_unlock(&c->mu);
    return k;
}

/* ---- the trail ----------------------------------------------------------------------------- */

typedef struct trail {
    audit_log *log;
    audit_producer *p;
    int n; /* records appended */
} trail;

static void trail_open(trail *t, uint64_t segment_bytes)
{
    audit_options o;
    audit_options_init(&o);
    o.dir = dir;
    o.node = NODE;
    o.overflow = AUDIT_OVERFLOW_BLOCK;
    o.fsync_ms = 5;
    if (segment_bytes)
        o.segment_bytes = segment_bytes;
    ward_err err;
    assert_int_equal(audit_log_open(&o, &t->log, &err), 0);
    assert_int_equal(audit_log_producer_new(t->log, &t->p), 0);
}

static void trail_append(trail *t, int n)
{
    for (int i = 0; i < n; i++) {
        audit_record r;
        audit_record_init(&r);
        int k = ++t->n;
        r.decision = k % 3 == 0 ? AUDIT_DENY : AUDIT_ALLOW;
        r.reason = audit_cstr(k % 3 == 0 ? "no rule matched: \"x\" ] \\ y" : "allowed by rule 0");
        r.policy = audit_cstr("shop/payments");
        r.rule = 0;
        r.source_principal = audit_cstr("spiffe://example.org/ns/shop/sa/frontend");
        r.method = audit_cstr("GET");
        r.host = audit_cstr("payments");
        r.path = audit_cstr("/v1/caf\xC3\xA9");
        r.protocol = audit_cstr("HTTP/1.1");
        r.status = 200;
        assert_int_equal(audit_log_append(t->log, t->p, &r), 0);
    }
    assert_int_equal(audit_log_flush(t->log, 10000), 0);
}

static void trail_close(trail *t)
{
    ward_err err;
    assert_int_equal(audit_log_close(t->log, &err), 0);
    t->log = NULL;
}

/* The lines of the trail in seq order (lines[i] is record i + 1). */
typedef struct lines {
    char **l;
    size_t n;
} lines;

static int seg_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t segments(char ***names)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    *names = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t first;
        if (audit_segment_name_parse(e->d_name, &first) < 0)
            continue;
        *names = realloc(*names, (n + 1) * sizeof(char *));
        (*names)[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(*names, n, sizeof(char *), seg_cmp);
    return n;
}

static lines trail_lines(void)
{
    lines out = {0};
    char **names;
    size_t ns = segments(&names);
    for (size_t i = 0; i < ns; i++) {
        char path[512], *text;
        size_t len;
        ward_err err;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        assert_int_equal(ward_file_read(path, 0, &text, &len, &err), 0);
        for (char *p = text, *nl; (nl = memchr(p, '\n', len - (size_t)(p - text))) != NULL;
             p = nl + 1) {
            out.l = realloc(out.l, (out.n + 1) * sizeof(char *));
            out.l[out.n++] = strndup(p, (size_t)(nl - p));
        }
        free(text);
        free(names[i]);
    }
    free(names);
    return out;
}

static void lines_free(lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->l[i]);
    free(l->l);
}

/* ---- the sink -------------------------------------------------------------------------------- */

static char logged[64][512];
static _Atomic int n_logged;

static void on_log(const char *msg, void *data)
{
    (void)data;
    int i = atomic_fetch_add(&n_logged, 1);
    if (i < 64)
        snprintf(logged[i], sizeof(logged[i]), "%s", msg);
}

static bool logged_has(const char *needle)
{
    int n = atomic_load(&n_logged);
    for (int i = 0; i < n && i < 64; i++)
        if (strstr(logged[i], needle) != NULL)
            return true;
    return false;
}

static char address[64];

static audit_sink_options sink_opts(uint16_t port)
{
    audit_sink_options o;
    audit_sink_options_init(&o);
    snprintf(address, sizeof(address), "127.0.0.1:%u", port);
    o.dir = dir;
    o.address = address;
    o.hostname = "host1";
    o.backoff_min_ms = 50;
    o.backoff_max_ms = 200;
    o.poll_ms = 5;
    o.log = on_log;
    atomic_store(&n_logged, 0);
    return o;
}

static audit_sink *sink_start(const audit_sink_options *o)
{
    audit_sink *s = NULL;
    ward_err err;
    ward_err_clear(&err);
    int rc = audit_sink_start(o, &s, &err);
    if (rc != 0)
        fail_msg("audit_sink_start: %s", err.msg);
    return s;
}

static void sink_stop(audit_sink *s)
{
    ward_err err;
    ward_err_clear(&err);
    int rc = audit_sink_stop(s, &err);
    if (rc != 0)
        fail_msg("audit_sink_stop: %s", err.msg);
}

static bool wait_delivered(audit_sink *s, uint64_t seq, int ms)
{
    int64_t end = now_ms() + ms;
    audit_sink_stats st;
    do {
        audit_sink_stats_get(s, &st);
        if (st.delivered_seq >= seq)
            return true;
        usleep(2000);
    } while (now_ms() < end);
    return false;
}

static char *cursor_text(void)
{
    char path[256], *text = NULL;
    size_t len;
    ward_err err;
    snprintf(path, sizeof(path), "%s/sink-syslog.cursor", dir);
    if (ward_file_read(path, 0, &text, &len, &err) < 0)
        return NULL;
    return text;
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The 64 hex digits of a line's hash. */
static void line_hash(const char *line, char out[65])
{
    const char *h = strstr(line, ",\"hash\":\"");
    assert_non_null(h);
    memcpy(out, h + 9, 64);
    out[64] = '\0';
}

/* ---- messages: exact bytes ------------------------------------------------------------------- */

static const audit_syslog_header HDR = {16, "host1", "ward-proxy", "4242"};

#define ALLOW_LINE                                                                                 \
    "{\"v\":1,\"seq\":7,\"ts\":\"2026-11-26T02:03:14.337433Z\",\"id\":"                            \
    "\"0123456789abcdef0123456789abcdef\",\"node\":\"" NODE "\",\"direction\":\"inbound\","        \
    "\"decision\":\"allow\",\"policy\":\"shop/payments\",\"rule\":0,\"reason\":\"ok\","            \
    "\"audit\":false,\"dry_run\":null,\"source\":{\"principal\":\"spiffe://example.org/x\","       \
    "\"ip\":\"10.0.0.7\",\"port\":41234},\"destination\":{\"service\":\"payments\","               \
    "\"principal\":null,\"port\":8443},\"request\":{\"method\":\"GET\",\"host\":\"payments\","     \
    "\"path\":\"/v1/caf\xC3\xA9\",\"protocol\":\"HTTP/1.1\"},\"response\":{\"status\":200},"       \
    "\"bundle\":\"rev\",\"trace_id\":null,\"latency_ns\":1830,\"peer_cert_sha256\":null,"          \
    "\"prev\":\"" ZERO64 "\",\"hash\":\"" HASH64 "\"}"

static void test_sd_escape(void **state)
{
    (void)state;
    ward_buf b;
    ward_buf_init(&b);
    static const char in[] = "a\"b\\c]d[e=f \xC3\xA9\n";
    assert_int_equal(audit_syslog_sd_escape(&b, in, sizeof(in) - 1), 0);
    assert_string_equal(b.ptr, "a\\\"b\\\\c\\]d[e=f \xC3\xA9\n");
    ward_buf_reset(&b);
    assert_int_equal(audit_syslog_sd_escape(&b, "\"\\]", 3), 0);
    assert_string_equal(b.ptr, "\\\"\\\\\\]");
    ward_buf_reset(&b);
    assert_int_equal(audit_syslog_sd_escape(&b, "", 0), 0);
    assert_int_equal(b.len, 0);
    ward_buf_dispose(&b);
}

static void test_message_allow_exact(void **state)
{
    (void)state;
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(audit_syslog_message(&b, &HDR, ALLOW_LINE, strlen(ALLOW_LINE)), 0);
    assert_string_equal(b.ptr, "<133>1 2026-11-26T02:03:14.337433Z host1 ward-proxy 4242 decision "
                               "[ward@32473 seq=\"7\" id=\"0123456789abcdef0123456789abcdef\" "
                               "decision=\"allow\" hash=\"" HASH64 "\"] " BOM ALLOW_LINE);
    ward_buf_dispose(&b);
}

static void test_message_deny_gap_event_exact(void **state)
{
    (void)state;
    ward_buf b;
    ward_buf_init(&b);
    static const char deny[] =
        "{\"v\":1,\"seq\":12,\"ts\":\"2026-11-26T02:03:15Z\",\"id\":"
        "\"ffffffffffffffffffffffffffffffff\","
        "\"node\":null,\"decision\":\"deny\",\"prev\":\"" ZERO64 "\",\"hash\":\"" HASH64 "\"}";
    audit_syslog_header h = {0, "h", "app", "1"}; /* kern: PRI = severity */
    assert_int_equal(audit_syslog_message(&b, &h, deny, sizeof(deny) - 1), 0);
    assert_string_equal(b.ptr,
                        "<4>1 2026-11-26T02:03:15Z h app 1 decision [ward@32473 seq=\"12\" "
                        "id=\"ffffffffffffffffffffffffffffffff\" decision=\"deny\" hash=\"" HASH64
                        "\"] " BOM "{\"v\":1,\"seq\":12,\"ts\":\"2026-11-26T02:03:15Z\","
                        "\"id\":\"ffffffffffffffffffffffffffffffff\",\"node\":null,"
                        "\"decision\":\"deny\",\"prev\":\"" ZERO64 "\",\"hash\":\"" HASH64 "\"}");
    ward_buf_reset(&b);
    static const char gap[] =
        "{\"v\":1,\"seq\":13,\"ts\":\"2026-11-26T02:03:15.000001Z\",\"node\":\"n\","
        "\"gap\":5,\"reason\":\"queue full\",\"prev\":\"" ZERO64 "\",\"hash\":\"" HASH64 "\"}";
    h.facility = 23; /* local7: 184 + 3 */
    assert_int_equal(audit_syslog_message(&b, &h, gap, sizeof(gap) - 1), 0);
    assert_string_equal(
        b.ptr, "<187>1 2026-11-26T02:03:15.000001Z h app 1 gap [ward@32473 seq=\"13\" "
               "gap=\"5\" hash=\"" HASH64 "\"] " BOM "{\"v\":1,\"seq\":13,"
               "\"ts\":\"2026-11-26T02:03:15.000001Z\",\"node\":\"n\",\"gap\":5,"
               "\"reason\":\"queue full\",\"prev\":\"" ZERO64 "\",\"hash\":\"" HASH64 "\"}");
    ward_buf_reset(&b);
    /* an event whose value needs both JSON unescaping and SD escaping */
    static const char ev[] =
        "{\"v\":1,\"seq\":14,\"ts\":\"2026-11-26T02:03:16.5+01:00\","
        "\"event\":\"svid.\\\"issued\\\"]\\\\x\",\"prev\":\"" ZERO64 "\",\"hash\":\"" HASH64 "\"}";
    assert_int_equal(audit_syslog_message(&b, &HDR, ev, sizeof(ev) - 1), 0);
    const char *want =
        "<133>1 2026-11-26T02:03:16.5+01:00 host1 ward-proxy 4242 event "
        "[ward@32473 seq=\"14\" event=\"svid.\\\"issued\\\"\\]\\\\x\" hash=\"" HASH64 "\"] " BOM;
    assert_memory_equal(b.ptr, want, strlen(want));
    assert_string_equal(b.ptr + strlen(want), ev);
    ward_buf_dispose(&b);
}

static void test_message_nil_values(void **state)
{
    (void)state;
    ward_buf b;
    ward_buf_init(&b);
    /* a ts that is not an RFC 5424 TIMESTAMP (7 fraction digits) and no header fields */
    static const char l1[] =
        "{\"v\":1,\"seq\":1,\"ts\":\"2026-11-26T02:03:14.1234567Z\","
        "\"decision\":\"allow\",\"prev\":\"" ZERO64 "\",\"hash\":\"" HASH64 "\"}";
    audit_syslog_header h = {16, NULL, "", NULL};
    assert_int_equal(audit_syslog_message(&b, &h, l1, sizeof(l1) - 1), 0);
    assert_string_equal(b.ptr,
                        "<133>1 - - - - decision [ward@32473 seq=\"1\" decision=\"allow\" "
                        "hash=\"" HASH64 "\"] " BOM "{\"v\":1,\"seq\":1,\"ts\":"
                        "\"2026-11-26T02:03:14.1234567Z\",\"decision\":\"allow\",\"prev\":\"" ZERO64
                        "\",\"hash\":\"" HASH64 "\"}");
    ward_buf_reset(&b);
    static const char l2[] =
        "{\"v\":1,\"seq\":2,\"ts\":null,\"prev\":\"" ZERO64 "\",\"hash\":\"" HASH64 "\"}";
    assert_int_equal(audit_syslog_message(&b, &h, l2, sizeof(l2) - 1), 0);
    assert_true(strncmp(b.ptr, "<133>1 - - - - decision [ward@32473 seq=\"2\" hash=", 48) == 0);
    ward_buf_dispose(&b);
}

static void test_message_refuses_non_records(void **state)
{
    (void)state;
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(ward_buf_puts(&b, "keep"), 0);
    static const char *bad[] = {
        "not json",
        "{\"v\":1,\"seq\":1}",                                  /* no hash */
        "{\"v\":1,\"hash\":\"" HASH64 "\"}",                    /* no seq */
        "{\"v\":1,\"seq\":\"1\",\"hash\":\"" HASH64 "\"}",      /* seq not a number */
        "{\"v\":1,\"seq\":1,\"hash\":\"" HASH64 "\"} trailing", /* not one object */
        "[1,2]",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(audit_syslog_message(&b, &HDR, bad[i], strlen(bad[i])), WARD_EINVAL);
        assert_int_equal(audit_syslog_frame(&b, &HDR, bad[i], strlen(bad[i])), WARD_EINVAL);
        assert_string_equal(b.ptr, "keep");
    }
    /* header fields out of range */
    audit_syslog_header h = HDR;
    h.facility = 24;
    assert_int_equal(audit_syslog_message(&b, &h, ALLOW_LINE, strlen(ALLOW_LINE)), WARD_EINVAL);
    h = HDR;
    h.hostname = "two words";
    assert_int_equal(audit_syslog_message(&b, &h, ALLOW_LINE, strlen(ALLOW_LINE)), WARD_EINVAL);
    h = HDR;
    h.app_name = "a-name-longer-than-forty-eight-characters-is-refused";
    assert_int_equal(audit_syslog_message(&b, &h, ALLOW_LINE, strlen(ALLOW_LINE)), WARD_EINVAL);
    assert_string_equal(b.ptr, "keep");
    ward_buf_dispose(&b);
}

static void test_frame_octet_counting(void **state)
{
    (void)state;
    ward_buf b, m;
    ward_buf_init(&b);
    ward_buf_init(&m);
    assert_int_equal(audit_syslog_message(&m, &HDR, ALLOW_LINE, strlen(ALLOW_LINE)), 0);
    assert_int_equal(ward_buf_puts(&b, "x"), 0); /* appended after what is there */
    assert_int_equal(audit_syslog_frame(&b, &HDR, ALLOW_LINE, strlen(ALLOW_LINE)), 0);
    assert_int_equal(audit_syslog_frame(&b, &HDR, ALLOW_LINE, strlen(ALLOW_LINE)), 0);
    char prefix[32];
    int pl =
        snprintf(prefix, sizeof(prefix), "%zu ", m.len); /* octets: the BOM and é count as bytes */
    assert_int_equal(b.len, 1 + 2 * ((size_t)pl + m.len));
    assert_memory_equal(b.ptr + 1, prefix, (size_t)pl);
    assert_memory_equal(b.ptr + 1 + pl, m.ptr, m.len);
    assert_memory_equal(b.ptr + 1 + pl + m.len, prefix, (size_t)pl);
    assert_memory_equal(b.ptr + 1 + 2 * pl + m.len, m.ptr, m.len);
    /* the length counts bytes, not characters: the line has é (2 bytes) and the BOM 3 */
    assert_true(m.len > strlen("<133>1 "));
    ward_buf_dispose(&b);
    ward_buf_dispose(&m);
}

static void test_facility_parse(void **state)
{
    (void)state;
    int f = -1;
    assert_int_equal(audit_syslog_facility_parse("local0", 6, &f), 0);
    assert_int_equal(f, 16);
    assert_int_equal(audit_syslog_facility_parse("local7", 6, &f), 0);
    assert_int_equal(f, 23);
    assert_int_equal(audit_syslog_facility_parse("kern", 4, &f), 0);
    assert_int_equal(f, 0);
    assert_int_equal(audit_syslog_facility_parse("authpriv", 8, &f), 0);
    assert_int_equal(f, 10);
    assert_int_equal(audit_syslog_facility_parse("13", 2, &f), 0);
    assert_int_equal(f, 13);
    static const char *bad[] = {"", "24", "local8", "Local0", "-1", "16x", "0x10", " 16", "local"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(audit_syslog_facility_parse(bad[i], strlen(bad[i]), &f), WARD_EINVAL);
}

static void test_address_parse(void **state)
{
    (void)state;
    char host[256];
    uint16_t port;
    ward_err err;
    assert_int_equal(
        audit_sink_address_parse("logs.example.org:6514", host, sizeof(host), &port, &err), 0);
    assert_string_equal(host, "logs.example.org");
    assert_int_equal(port, 6514);
    assert_int_equal(audit_sink_address_parse("10.0.0.5:514", host, sizeof(host), &port, &err), 0);
    assert_string_equal(host, "10.0.0.5");
    assert_int_equal(audit_sink_address_parse("[::1]:601", host, sizeof(host), &port, &err), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 601);
    static const char *bad[] = {"logs.example.org",
                                "logs:0",
                                "logs:65536",
                                ":514",
                                "[::1]",
                                "::1:514",
                                "[nothex]:514",
                                "a b:514",
                                "logs:51x",
                                "logs:",
                                "-logs:514",
                                "http://logs:514",
                                ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ward_err_clear(&err);
        assert_int_equal(audit_sink_address_parse(bad[i], host, sizeof(host), &port, &err),
                         WARD_EINVAL);
        assert_true(err.msg[0] != '\0');
    }
    char tiny[4];
    assert_int_equal(audit_sink_address_parse("longname:1", tiny, sizeof(tiny), &port, &err),
                     WARD_EINVAL);
}

static void test_start_refuses_bad_options(void **state)
{
    (void)state;
    assert_int_equal(mkdir(dir, 0700), 0);
    audit_sink *s = NULL;
    ward_err err;
    audit_sink_options o = sink_opts(1);
    o.address = NULL;
    assert_int_equal(audit_sink_start(&o, &s, &err), WARD_EINVAL);
    o = sink_opts(1);
    o.dir = NULL;
    assert_int_equal(audit_sink_start(&o, &s, &err), WARD_EINVAL);
    o = sink_opts(1);
    o.address = "nowhere";
    assert_int_equal(audit_sink_start(&o, &s, &err), WARD_EINVAL);
    assert_non_null(strstr(err.msg, "HOST:PORT"));
    o = sink_opts(1);
    o.facility = 24;
    assert_int_equal(audit_sink_start(&o, &s, &err), WARD_EINVAL);
    o = sink_opts(1);
    o.app_name = "ward proxy";
    assert_int_equal(audit_sink_start(&o, &s, &err), WARD_EINVAL);
    o = sink_opts(1);
    o.name = "../x";
    assert_int_equal(audit_sink_start(&o, &s, &err), WARD_EINVAL);
    o = sink_opts(1);
    o.dir = "/nonexistent/ward";
    assert_int_equal(audit_sink_start(&o, &s, &err), WARD_EINVAL);
    o = sink_opts(1);
    o.tls = true; /* no ca_file */
    assert_int_equal(audit_sink_start(&o, &s, &err), WARD_EINVAL);
    assert_non_null(strstr(err.msg, "ca_file"));
    o.ca_file = "/nonexistent.pem";
    assert_int_equal(audit_sink_start(&o, &s, &err), WARD_EINVAL);
    assert_non_null(strstr(err.msg, "/nonexistent.pem"));
    char notpem[256];
    snprintf(notpem, sizeof(notpem), "%s/not.pem", tmpdir);
    FILE *f = fopen(notpem, "w");
    fputs("not a certificate\n", f);
    fclose(f);
    o.ca_file = notpem;
    assert_int_equal(audit_sink_start(&o, &s, &err), WARD_EINVAL);
    assert_null(s);
}

/* ---- shipping ----------------------------------------------------------------------------------
 */

static void test_ships_every_record(void **state)
{
    (void)state;
    trail t = {0};
    trail_open(&t, 0);
    trail_append(&t, 300);
    collector c = {.keep_raw = true};
    collector_start(&c, 0);
    audit_sink_options o = sink_opts(c.port);
    audit_sink *s = sink_start(&o);
    trail_append(&t, 700); /* while it runs: it follows the active segment */
    assert_true(collector_has_all(&c, 1000, 10000));
    assert_true(wait_delivered(s, 1000, 5000));
    audit_sink_stats st;
    audit_sink_stats_get(s, &st);
    assert_true(st.connected);
    assert_int_equal(st.connects, 1);
    assert_int_equal(st.sent, 1000);
    assert_int_equal(st.resent, 0);
    assert_int_equal(audit_sink_status(s, NULL), 0);
    sink_stop(s);
    trail_close(&t);
    collector_stop(&c);
    /* in order, once each, and each message carries its line and hash exactly */
    lines L = trail_lines();
    assert_int_equal(L.n, 1000);
    assert_int_equal(c.n, 1000);
    assert_int_equal(c.bad_frames, 0);
    char pid[16];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    for (size_t i = 0; i < L.n; i++) {
        assert_int_equal(c.seqs[i], i + 1);
        char hash[65], sd[200];
        line_hash(L.l[i], hash);
        const char *m = c.raw[i];
        int pri = (i + 1) % 3 == 0 ? 132 : 133;
        char head[64];
        snprintf(head, sizeof(head), "<%d>1 ", pri);
        assert_true(strncmp(m, head, strlen(head)) == 0);
        snprintf(sd, sizeof(sd), " host1 ward-proxy %s decision [ward@32473 seq=\"%zu\" id=\"", pid,
                 i + 1);
        assert_non_null(strstr(m, sd));
        snprintf(sd, sizeof(sd), "hash=\"%s\"] " BOM, hash);
        const char *tail = strstr(m, sd);
        assert_non_null(tail);
        assert_string_equal(tail + strlen(sd), L.l[i]);
    }
    /* the cursor names the last record and its hash */
    char *cur = cursor_text(), hash[65], want[200];
    assert_non_null(cur);
    line_hash(L.l[999], hash);
    snprintf(want, sizeof(want), "{\"v\":1,\"seq\":1000,\"hash\":\"%s\",\"ts\":\"", hash);
    assert_true(strncmp(cur, want, strlen(want)) == 0);
    char path[256];
    struct stat sst;
    snprintf(path, sizeof(path), "%s/sink-syslog.cursor", dir);
    assert_int_equal(stat(path, &sst), 0);
    assert_int_equal(sst.st_mode & 0777, 0600);
    free(cur);
    lines_free(&L);
    collector_free(&c);
}

static void test_follows_rotation(void **state)
{
    (void)state;
    trail t = {0};
    trail_open(&t, 4096); /* a segment per ~7 records */
    collector c = {0};
    collector_start(&c, 0);
    audit_sink_options o = sink_opts(c.port);
    audit_sink *s = sink_start(&o); /* before the first record: no segment yet */
    usleep(20000);
    for (int i = 0; i < 20; i++) {
        trail_append(&t, 1 + i * 7 % 23);
        usleep(2000);
    }
    int n = t.n;
    assert_true(collector_has_all(&c, (uint64_t)n, 10000));
    assert_true(wait_delivered(s, (uint64_t)n, 5000));
    sink_stop(s);
    trail_close(&t);
    collector_stop(&c);
    char **names;
    size_t ns = segments(&names);
    for (size_t i = 0; i < ns; i++)
        free(names[i]);
    free(names);
    assert_true(ns > 10);
    assert_int_equal(c.n, (size_t)n); /* no reconnect: each once, in order */
    for (int i = 0; i < n; i++)
        assert_int_equal(c.seqs[i], (uint64_t)i + 1);
    collector_free(&c);
}

static void test_resumes_from_cursor_after_restart(void **state)
{
    (void)state;
    trail t = {0};
    trail_open(&t, 8192);
    trail_append(&t, 200);
    collector c = {0};
    collector_start(&c, 0);
    audit_sink_options o = sink_opts(c.port);
    audit_sink *s = sink_start(&o);
    assert_true(collector_has_all(&c, 200, 10000));
    sink_stop(s); /* waits for the acknowledgments, writes the cursor */
    char *cur = cursor_text();
    assert_non_null(cur);
    assert_true(starts(cur, "{\"v\":1,\"seq\":200,"));
    free(cur);
    trail_append(&t, 300);
    s = sink_start(&o);
    assert_true(collector_has_all(&c, 500, 10000));
    assert_true(wait_delivered(s, 500, 5000));
    audit_sink_stats st;
    audit_sink_stats_get(s, &st);
    assert_int_equal(st.sent, 300); /* only what the cursor did not cover */
    sink_stop(s);
    trail_close(&t);
    collector_stop(&c);
    assert_int_equal(c.n, 500);
    for (size_t i = 0; i < c.n; i++)
        assert_int_equal(c.seqs[i], i + 1);
    assert_int_equal(atomic_load(&c.conns), 2);
    collector_free(&c);
}

static void test_unconfirmed_stop_resends(void **state)
{
    (void)state;
    trail t = {0};
    trail_open(&t, 0);
    trail_append(&t, 100);
    collector c = {0};
    collector_start(&c, 0);
    audit_sink_options o = sink_opts(c.port);
    o.drain_ms = 100;
    audit_sink *s = sink_start(&o);
    assert_true(collector_has_all(&c, 100, 10000));
    assert_true(wait_delivered(s, 100, 5000)); /* acknowledged by its TCP */
    usleep(150000);
    char *cur = cursor_text();
    assert_non_null(cur);
    assert_true(starts(cur, "{\"v\":1,\"seq\":100,"));
    free(cur);
    atomic_store(&c.stall, true); /* it never reads our end of stream */
    usleep(150000);               /* (once its current poll is over) */
    sink_stop(s);
    assert_true(logged_has("did not confirm the end of the stream"));
    cur = cursor_text(); /* back by the replay window: to the start of that connection */
    assert_non_null(cur);
    assert_true(starts(cur, "{\"v\":1,\"seq\":0,"));
    free(cur);
    collector_stop(&c);
    collector_free(&c);
    collector c2 = {0};
    collector_start(&c2, 0);
    o = sink_opts(c2.port);
    s = sink_start(&o);
    assert_true(collector_has_all(&c2, 100, 10000));
    sink_stop(s);
    collector_stop(&c2);
    assert_int_equal(c2.n, 100);
    collector_free(&c2);
    trail_close(&t);
}

static void write_cursor(const char *text)
{
    ward_err err;
    assert_int_equal(
        ward_file_write_atomic(dir, "sink-syslog.cursor", text, strlen(text), 0600, &err), 0);
}

static void test_cursor_of_another_trail_resends_all(void **state)
{
    (void)state;
    trail t = {0};
    trail_open(&t, 0);
    trail_append(&t, 50);
    /* the right seq with another hash, a seq beyond the trail, garbage: all re-send from 1 */
    static const char *cursors[] = {
        "{\"v\":1,\"seq\":30,\"hash\":\"" HASH64 "\",\"ts\":\"x\"}\n",
        "{\"v\":1,\"seq\":900,\"hash\":\"" HASH64 "\"}\n",
        "garbage",
    };
    for (size_t k = 0; k < 3; k++) {
        write_cursor(cursors[k]);
        collector c = {0};
        collector_start(&c, 0);
        audit_sink_options o = sink_opts(c.port);
        audit_sink *s = sink_start(&o);
        assert_true(collector_has_all(&c, 50, 10000));
        assert_true(wait_delivered(s, 50, 5000));
        sink_stop(s);
        collector_stop(&c);
        assert_int_equal(c.seqs[0], 1);
        assert_true(logged_has("re-sending the trail from its first record"));
        collector_free(&c);
    }
    /* a cursor that matches: nothing is sent again */
    collector c = {0};
    collector_start(&c, 0);
    audit_sink_options o = sink_opts(c.port);
    audit_sink *s = sink_start(&o);
    usleep(200000);
    audit_sink_stats st;
    audit_sink_stats_get(s, &st);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.delivered_seq, 50);
    sink_stop(s);
    collector_stop(&c);
    assert_int_equal(c.n, 0);
    collector_free(&c);
    trail_close(&t);
}

static void test_collector_down_then_up(void **state)
{
    (void)state;
    uint16_t port;
    int probe = listen_on(0, &port); /* a free port, closed again: nobody listens */
    close(probe);
    trail t = {0};
    trail_open(&t, 16384);
    trail_append(&t, 100);
    audit_sink_options o = sink_opts(port);
    audit_sink *s = sink_start(&o);
    usleep(300000);
    trail_append(&t, 400); /* the store keeps them while the collector is down */
    audit_sink_stats st;
    audit_sink_stats_get(s, &st);
    assert_false(st.connected);
    assert_true(st.failures >= 2); /* retried with backoff */
    assert_int_equal(st.sent, 0);
    ward_err err;
    assert_int_equal(audit_sink_status(s, &err), WARD_EIO);
    assert_non_null(strstr(err.msg, "Connection refused"));
    assert_true(logged_has("Connection refused"));
    collector c = {0};
    collector_start(&c, port);
    assert_true(collector_has_all(&c, 500, 10000));
    assert_true(wait_delivered(s, 500, 5000));
    assert_int_equal(audit_sink_status(s, NULL), 0);
    sink_stop(s);
    trail_close(&t);
    collector_stop(&c);
    assert_int_equal(c.n, 500);
    collector_free(&c);
}

static void test_collector_crash_loses_nothing(void **state)
{
    (void)state;
    trail t = {0};
    trail_open(&t, 65536);
    trail_append(&t, 3000);
    collector c = {.crash_after = 1000};
    collector_start(&c, 0);
    audit_sink_options o = sink_opts(c.port);
    audit_sink *s = sink_start(&o);
    trail_append(&t, 2000);
    assert_true(collector_has_all(&c, 5000, 15000));
    assert_true(wait_delivered(s, 5000, 5000));
    audit_sink_stats st;
    audit_sink_stats_get(s, &st);
    assert_true(c.crashed);
    assert_int_equal(atomic_load(&c.conns), 2);
    assert_true(st.failures >= 1);
    assert_true(st.resent > 0); /* what the collector held unprocessed was sent again */
    sink_stop(s);
    trail_close(&t);
    collector_stop(&c);
    for (uint64_t q = 1; q <= 5000; q++)
        assert_true(collector_count(&c, q) >= 1);
    collector_free(&c);
}

static void test_slow_collector_never_slows_the_log(void **state)
{
    (void)state;
    trail t = {0};
    audit_options ao;
    audit_options_init(&ao);
    ao.dir = dir;
    ao.node = NODE;
    ao.overflow = AUDIT_OVERFLOW_DENY; /* a refused append would show any back-pressure */
    ward_err err;
    assert_int_equal(audit_log_open(&ao, &t.log, &err), 0);
    assert_int_equal(audit_log_producer_new(t.log, &t.p), 0);
    collector c = {0};
    atomic_store(&c.stall, true);
    collector_start(&c, 0);
    audit_sink_options o = sink_opts(c.port);
    audit_sink *s = sink_start(&o);
    int refused = 0;
    for (int i = 0; i < 20000; i++) {
        audit_record r;
        audit_record_init(&r);
        r.decision = AUDIT_ALLOW;
        r.reason =
            audit_cstr("a reason long enough to fill the socket buffers of a stalled collector");
        r.path = audit_cstr("/v1/items/0123456789/abcdefghijklmnopqrstuvwxyz");
        int rc = audit_log_append(t.log, t.p, &r);
        if (rc == WARD_ELIMIT) {
            refused++;
            usleep(100); /* the writer's disk pace, not the collector's */
            i--;
            continue;
        }
        assert_int_equal(rc, 0);
    }
    assert_int_equal(audit_log_flush(t.log, 10000), 0);
    t.n = 20000;
    audit_sink_stats st;
    audit_sink_stats_get(s, &st);
    assert_true(st.delivered_seq < 20000); /* the collector holds it back ... */
    atomic_store(&c.stall, false);         /* ... then catches up */
    assert_true(collector_has_all(&c, 20000, 20000));
    assert_true(wait_delivered(s, 20000, 5000));
    sink_stop(s);
    trail_close(&t);
    collector_stop(&c);
    collector_free(&c);
}

static void test_tampered_record_is_not_shipped(void **state)
{
    (void)state;
    trail t = {0};
    trail_open(&t, 0);
    trail_append(&t, 100);
    trail_close(&t);
    /* change one byte of record 60 (its reason) */
    char path[256];
    snprintf(path, sizeof(path), "%s/segment-00000000000000000001.jsonl", dir);
    chmod(path, 0600);
    lines L = trail_lines();
    long off = 0;
    for (int i = 0; i < 59; i++)
        off += (long)strlen(L.l[i]) + 1;
    const char *r = strstr(L.l[59], "payments\",\"path");
    assert_non_null(r);
    off += (long)(r - L.l[59]);
    FILE *f = fopen(path, "r+");
    assert_non_null(f);
    fseek(f, off, SEEK_SET);
    fputc('A', f);
    fclose(f);
    lines_free(&L);
    collector c = {0};
    collector_start(&c, 0);
    audit_sink_options o = sink_opts(c.port);
    audit_sink *s = sink_start(&o);
    assert_true(collector_has_all(&c, 59, 10000));
    assert_true(wait_delivered(s, 59, 5000));
    usleep(100000);
    ward_err err;
    assert_int_equal(audit_sink_status(s, &err), WARD_EIO);
    assert_non_null(strstr(err.msg, "segment-00000000000000000001.jsonl:60: record 60"));
    assert_non_null(strstr(err.msg, "modified"));
    audit_sink_stats st;
    audit_sink_stats_get(s, &st);
    assert_int_equal(st.delivered_seq, 59);
    sink_stop(s);
    collector_stop(&c);
    assert_int_equal(c.n, 59); /* nothing at or after the bad record */
    collector_free(&c);
}

/* ---- TLS ------------------------------------------------------------------------------------ */

static EVP_PKEY *ec_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    return k;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
}

/* A certificate for key, signed by ca (NULL: self-signed CA). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *ca, EVP_PKEY *ca_key, const char *san)
{
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), (long)(now_ms() & 0x7fffffff));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, ca != NULL ? X509_get_subject_name(ca) : n);
    X509 *issuer = ca != NULL ? ca : x;
    if (ca == NULL) {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, issuer, NID_ext_key_usage, "serverAuth,clientAuth");
        if (san != NULL)
            add_ext(x, issuer, NID_subject_alt_name, san);
    }
    assert_true(X509_sign(x, ca_key != NULL ? ca_key : key, EVP_sha256()) > 0);
    return x;
}

static void write_pem(const char *name, X509 *x, EVP_PKEY *k)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (x != NULL)
        PEM_write_X509(f, x);
    if (k != NULL)
        PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    chmod(path, 0600);
}

/* ca.pem, other-ca.pem, server.pem (+key, SAN localhost and 127.0.0.1), client.pem/key. */
static SSL_CTX *make_pki(void)
{
    EVP_PKEY *cak = ec_key(), *ok = ec_key(), *sk = ec_key(), *ck = ec_key();
    X509 *ca = make_cert(cak, "test CA", NULL, NULL, NULL);
    X509 *other = make_cert(ok, "other CA", NULL, NULL, NULL);
    X509 *srv = make_cert(sk, "collector", ca, cak, "DNS:localhost,IP:127.0.0.1");
    X509 *cli = make_cert(ck, "ward-proxy", ca, cak, NULL);
    write_pem("ca.pem", ca, NULL);
    write_pem("other-ca.pem", other, NULL);
    write_pem("client.pem", cli, NULL);
    write_pem("client.key", NULL, ck);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_int_equal(SSL_CTX_use_certificate(ctx, srv), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, sk), 1);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    X509_free(ca);
    X509_free(other);
    X509_free(srv);
    X509_free(cli);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(ok);
    EVP_PKEY_free(sk);
    EVP_PKEY_free(ck);
    return ctx;
}

static char ca_path[256], other_ca_path[256], cert_path[256], key_path[256];

static void tls_paths(void)
{
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", tmpdir);
    snprintf(other_ca_path, sizeof(other_ca_path), "%s/other-ca.pem", tmpdir);
    snprintf(cert_path, sizeof(cert_path), "%s/client.pem", tmpdir);
    snprintf(key_path, sizeof(key_path), "%s/client.key", tmpdir);
}

static void test_tls_ships_with_client_certificate(void **state)
{
    (void)state;
    collector c = {0};
    c.tls = make_pki();
    tls_paths();
    trail t = {0};
    trail_open(&t, 0);
    trail_append(&t, 500);
    collector_start(&c, 0);
    audit_sink_options o = sink_opts(c.port);
    o.tls = true;
    o.ca_file = ca_path;
    o.cert_file = cert_path;
    o.key_file = key_path;
    o.server_name = "localhost";
    audit_sink *s = sink_start(&o);
    trail_append(&t, 500);
    assert_true(collector_has_all(&c, 1000, 10000));
    assert_true(wait_delivered(s, 1000, 5000));
    assert_true(logged_has("(TLS)"));
    sink_stop(s);
    trail_close(&t);
    collector_stop(&c);
    assert_int_equal(c.n, 1000);
    for (size_t i = 0; i < c.n; i++)
        assert_int_equal(c.seqs[i], i + 1);
    collector_free(&c);
}

static void test_tls_refuses_unverified_collector(void **state)
{
    (void)state;
    collector c = {0};
    c.tls = make_pki();
    tls_paths();
    trail t = {0};
    trail_open(&t, 0);
    trail_append(&t, 10);
    collector_start(&c, 0);
    struct {
        const char *ca, *name, *want;
    } cases[] = {
        {other_ca_path, "localhost", "certificate verify failed"},  /* not our CA */
        {ca_path, "logs.example.org", "certificate verify failed"}, /* not its name */
        {ca_path, "127.0.0.2", "certificate verify failed"},        /* not its IP */
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        audit_sink_options o = sink_opts(c.port);
        o.tls = true;
        o.ca_file = cases[k].ca;
        o.cert_file = cert_path;
        o.key_file = key_path;
        o.server_name = cases[k].name;
        audit_sink *s = sink_start(&o);
        usleep(300000);
        ward_err err;
        assert_int_equal(audit_sink_status(s, &err), WARD_EIO);
        if (strstr(err.msg, cases[k].want) == NULL)
            fail_msg("case %zu: %s", k, err.msg);
        audit_sink_stats st;
        audit_sink_stats_get(s, &st);
        assert_int_equal(st.connects, 0);
        assert_int_equal(st.sent, 0);
        sink_stop(s);
    }
    /* a client without a certificate is refused by this collector: nothing is sent */
    audit_sink_options o = sink_opts(c.port);
    o.tls = true;
    o.ca_file = ca_path;
    o.server_name = "127.0.0.1";
    audit_sink *s = sink_start(&o);
    usleep(300000);
    audit_sink_stats st;
    audit_sink_stats_get(s, &st);
    assert_int_equal(st.delivered_seq, 0); /* acknowledged by TCP, but refused: not delivered */
    sink_stop(s);
    char *cur = cursor_text();
    if (cur != NULL)
        assert_true(starts(cur, "{\"v\":1,\"seq\":0,"));
    free(cur);
    trail_close(&t);
    collector_stop(&c);
    assert_int_equal(c.n, 0);
    collector_free(&c);
}

/* ---- catch-up rate
 * ------------------------------------------------------------------------------- */

static void test_catch_up_rate(void **state)
{
    (void)state;
    const int n = 200000;
    trail t = {0};
    trail_open(&t, 0);
    for (int i = 0; i < n; i += 10000)
        trail_append(&t, 10000);
    collector c = {0};
    collector_start(&c, 0);
    audit_sink_options o = sink_opts(c.port);
    int64_t t0 = now_ms();
    audit_sink *s = sink_start(&o);
    assert_true(collector_has_all(&c, (uint64_t)n, 120000));
    int64_t ms = now_ms() - t0;
    /* generous: 5 s failed twice in CI, on a disk still busy with the tests before
     * (the sink thread fsyncs its cursor between batches) */
    assert_true(wait_delivered(s, (uint64_t)n, 30000));
    audit_sink_stats st;
    audit_sink_stats_get(s, &st);
    printf("catch-up: %d records (%.1f MB framed) received in %" PRId64 " ms: %.0f records/s, "
           "%.0f MB/s\n",
           n, (double)st.bytes / 1e6, ms, n * 1000.0 / (double)(ms ? ms : 1),
           (double)st.bytes / 1e3 / (double)(ms ? ms : 1));
    sink_stop(s);
    trail_close(&t);
    collector_stop(&c);
    assert_true(collector_has_all(&c, (uint64_t)n, 1000));
    collector_free(&c);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_sd_escape),
        T(test_message_allow_exact),
        T(test_message_deny_gap_event_exact),
        T(test_message_nil_values),
        T(test_message_refuses_non_records),
        T(test_frame_octet_counting),
        T(test_facility_parse),
        T(test_address_parse),
        T(test_start_refuses_bad_options),
        T(test_ships_every_record),
        T(test_follows_rotation),
        T(test_resumes_from_cursor_after_restart),
        T(test_unconfirmed_stop_resends),
        T(test_cursor_of_another_trail_resends_all),
        T(test_collector_down_then_up),
        T(test_collector_crash_loses_nothing),
        T(test_slow_collector_never_slows_the_log),
        T(test_tampered_record_is_not_shipped),
        T(test_tls_ships_with_client_certificate),
        T(test_tls_refuses_unverified_collector),
        T(test_catch_up_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
