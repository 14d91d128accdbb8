/* sink.c - ship a trail to a remote syslog collector: RFC 5424 over TCP or TLS, at least once */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "audit/audit_int.h"

#define BATCH_BYTES    (64 * 1024) /* one write(2) / SSL_write of framed messages */
#define BATCH_RECORDS  1024
#define RING_CAP       8192 /* batches sent and not yet acknowledged (or kept for replay) */
#define READ_CHUNK     (256 * 1024)
#define LINE_MAX_BYTES (1024 * 1024) /* a longer "line" is damage, not a record */
#define LOG_REPEAT_MS  30000         /* the same problem is reported once per 30 s */
#define STALL_RETRY_MS 1000          /* a bad record is looked at again this often */
#define WAIT_SLICE_MS  100           /* longest sleep while waiting on the socket */
#define REPLAY_DEFAULT ((int64_t)4 << 20)
#define CONFIRM_MS                                                                                 \
    1000 /* a new connection's acknowledgments count once it has lasted this long                  \
          */
#define CLOSE_GRACE_MS 500 /* at stop, how long the collector has at least to close its side */
#define CURSOR_PREFIX  "sink-"
#define CURSOR_SUFFIX  ".cursor"

static const char BOM[] = "\xEF\xBB\xBF";

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- messages ------------------------------------------------------------------------ */

static const char *const facility_names[24] = {
    "kern",   "user",   "mail",     "daemon", "auth",   "syslog", "lpr",    "news",
    "uucp",   "cron",   "authpriv", "ftp",    "ntp",    "audit",  "alert",  "clock",
    "local0", "local1", "local2",   "local3", "local4", "local5", "local6", "local7"};

int audit_syslog_facility_parse(const char *s, size_t len, int *out)
{
    if (s == NULL || len == 0)
        return WARD_EINVAL;
    if (s[0] >= '0' && s[0] <= '9') {
        uint64_t v;
        if (ward_parse_u64(s, len, 23, &v) < 0)
            return WARD_EINVAL;
        *out = (int)v;
        return 0;
    }
    for (int i = 0; i < 24; i++) {
        if (strlen(facility_names[i]) == len && memcmp(facility_names[i], s, len) == 0) {
            *out = i;
            return 0;
        }
    }
    return WARD_EINVAL;
}

/* 1..max characters of PRINTUSASCII (%d33-126), RFC 5424 section 6. */
static bool printusascii(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126)
            return false;
    return true;
}

static bool header_field_ok(const char *s, size_t max)
{
    return s == NULL || s[0] == '\0' || printusascii(s, max);
}

int audit_syslog_sd_escape(ward_buf *out, const char *s, size_t len)
{
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c != '"' && c != '\\' && c != ']')
            continue;
        char esc[2] = {'\\', c};
        if (ward_buf_append(out, s + run, i - run) < 0 || ward_buf_append(out, esc, 2) < 0)
            return WARD_ENOMEM;
        run = i + 1;
    }
    return ward_buf_append(out, s + run, len - run);
}

static bool digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < '0' || p[i] > '9')
            return false;
    return true;
}

/* RFC 5424 TIMESTAMP: FULL-DATE "T" PARTIAL-TIME [. 1*6DIGIT] ("Z" / +-hh:mm). */
static bool timestamp_ok(const char *p, size_t n)
{
    if (n < 20 || !digits(p, 4) || p[4] != '-' || !digits(p + 5, 2) || p[7] != '-' ||
        !digits(p + 8, 2) || p[10] != 'T' || !digits(p + 11, 2) || p[13] != ':' ||
        !digits(p + 14, 2) || p[16] != ':' || !digits(p + 17, 2))
        return false;
    size_t i = 19;
    if (p[i] == '.') {
        size_t f = 0;
        for (i++; i < n && p[i] >= '0' && p[i] <= '9'; i++)
            f++;
        if (f < 1 || f > 6)
            return false;
    }
    if (i < n && p[i] == 'Z')
        return i + 1 == n;
    return i + 6 == n && (p[i] == '+' || p[i] == '-') && digits(p + i + 1, 2) && p[i + 3] == ':' &&
           digits(p + i + 4, 2);
}

static bool value_is(const audit_value *v, const char *s)
{
    size_t n = strlen(s);
    return v->type == AUDIT_V_STRING && !v->escaped && v->len == n && memcmp(v->ptr, s, n) == 0;
}

/* ' name="value"' for a string or number field; nothing when absent or null. */
static int sd_param(ward_buf *out, const char *name, const audit_value *v)
{
    if (v->type != AUDIT_V_STRING && v->type != AUDIT_V_NUMBER)
        return 0;
    int rc = 0;
    ward_buf text;
    ward_buf_init(&text);
    const char *p = v->ptr;
    size_t n = v->len;
    if (v->escaped) {
        WARD_TRY(audit_value_text(v, &text));
        p = text.ptr != NULL ? text.ptr : "";
        n = text.len;
    }
    WARD_TRY(ward_buf_putc(out, ' '));
    WARD_TRY(ward_buf_puts(out, name));
    WARD_TRY(ward_buf_append(out, "=\"", 2));
    WARD_TRY(audit_syslog_sd_escape(out, p, n));
    WARD_TRY(ward_buf_putc(out, '"'));
fail:
    ward_buf_dispose(&text);
    return rc;
}

static int put_field(ward_buf *out, const char *s)
{
    int rc = ward_buf_puts(out, s != NULL && s[0] != '\0' ? s : "-");
    return rc < 0 ? rc : ward_buf_putc(out, ' ');
}

int audit_syslog_message(ward_buf *out, const audit_syslog_header *h, const char *line, size_t len)
{
    int rc = 0;
    size_t start = out->len;
    audit_view v;
    if (h->facility < 0 || h->facility > 23 || !header_field_ok(h->hostname, 255) ||
        !header_field_ok(h->app_name, 48) || !header_field_ok(h->procid, 128))
        return WARD_EINVAL;
    if (audit_view_parse(&v, line, len) < 0 || v.f[AUDIT_A_SEQ].type != AUDIT_V_NUMBER ||
        v.f[AUDIT_A_HASH].type != AUDIT_V_STRING)
        return WARD_EINVAL;
    const audit_value *ts = &v.f[AUDIT_A_TS];
    int severity = 5; /* notice */
    const char *msgid = "decision";
    if (v.f[AUDIT_A_GAP].type == AUDIT_V_NUMBER) {
        severity = 3; /* error: records were lost */
        msgid = "gap";
    } else if (v.f[AUDIT_A_EVENT].type == AUDIT_V_STRING) {
        msgid = "event";
    } else if (value_is(&v.f[AUDIT_A_DECISION], "deny")) {
        severity = 4; /* warning */
    }
    WARD_TRY(ward_buf_printf(out, "<%d>1 ", h->facility * 8 + severity));
    if (ts->type == AUDIT_V_STRING && !ts->escaped && timestamp_ok(ts->ptr, ts->len)) {
        WARD_TRY(ward_buf_append(out, ts->ptr, ts->len));
        WARD_TRY(ward_buf_putc(out, ' '));
    } else {
        WARD_TRY(ward_buf_append(out, "- ", 2));
    }
    WARD_TRY(put_field(out, h->hostname));
    WARD_TRY(put_field(out, h->app_name));
    WARD_TRY(put_field(out, h->procid));
    WARD_TRY(put_field(out, msgid));
    WARD_TRY(ward_buf_append(out, "[" AUDIT_SYSLOG_SD_ID, sizeof(AUDIT_SYSLOG_SD_ID)));
    WARD_TRY(sd_param(out, "seq", &v.f[AUDIT_A_SEQ]));
    WARD_TRY(sd_param(out, "id", &v.f[AUDIT_A_ID]));
    WARD_TRY(sd_param(out, "decision", &v.f[AUDIT_A_DECISION]));
    WARD_TRY(sd_param(out, "gap", &v.f[AUDIT_A_GAP]));
    WARD_TRY(sd_param(out, "event", &v.f[AUDIT_A_EVENT]));
    WARD_TRY(sd_param(out, "hash", &v.f[AUDIT_A_HASH]));
    WARD_TRY(ward_buf_append(out, "] ", 2));
    WARD_TRY(ward_buf_append(out, BOM, sizeof(BOM) - 1));
    WARD_TRY(ward_buf_append(out, line, len));
    return 0;
fail:
    out->len = start;
    if (out->ptr != NULL)
        out->ptr[start] = '\0';
    return rc;
}

int audit_syslog_frame(ward_buf *out, const audit_syslog_header *h, const char *line, size_t len)
{
    size_t start = out->len;
    int rc = audit_syslog_message(out, h, line, len);
    if (rc < 0)
        return rc;
    size_t n = out->len - start;
    char prefix[24];
    int plen = snprintf(prefix, sizeof(prefix), "%zu ", n);
    if (ward_buf_append(out, prefix, (size_t)plen) < 0) { /* room for the prefix */
        out->len = start;
        out->ptr[start] = '\0';
        return WARD_ENOMEM;
    }
    memmove(out->ptr + start + plen, out->ptr + start, n);
    memcpy(out->ptr + start, prefix, (size_t)plen);
    return 0;
}

int audit_sink_address_parse(const char *s, char *host, size_t host_size, uint16_t *port,
                             ward_err *err)
{
    size_t len = s != NULL ? strlen(s) : 0;
    const char *h, *p;
    size_t hl;
    char tmp[INET6_ADDRSTRLEN + 1];
    if (len > 0 && s[0] == '[') {
        const char *end = memchr(s, ']', len);
        if (end == NULL || end[1] != ':')
            goto bad;
        h = s + 1;
        hl = (size_t)(end - h);
        p = end + 2;
        struct in6_addr a6;
        if (hl == 0 || hl >= sizeof(tmp))
            goto bad;
        memcpy(tmp, h, hl);
        tmp[hl] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            goto bad;
    } else {
        const char *colon = len > 0 ? strrchr(s, ':') : NULL;
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
            goto bad;
        h = s;
        hl = (size_t)(colon - s);
        p = colon + 1;
        if (hl == 0 || hl > 253 || h[0] == '.' || h[0] == '-')
            goto bad;
        for (size_t i = 0; i < hl; i++) {
            char c = h[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_'))
                goto bad;
        }
    }
    uint64_t pv;
    if (ward_parse_u64(p, strlen(p), 65535, &pv) < 0 || pv == 0) {
        ward_err_set(err, "\"%.200s\": invalid port (1..65535)", s);
        return WARD_EINVAL;
    }
    if (hl >= host_size) {
        ward_err_set(err, "\"%.200s\": host name too long", s);
        return WARD_EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)pv;
    return 0;
bad:
    ward_err_set(err,
                 "\"%.200s\": expected HOST:PORT (a DNS name or an IPv4 address) or [IPv6]:PORT",
                 s != NULL ? s : "");
    return WARD_EINVAL;
}

/* ---- the sink ------------------------------------------------------------------------ */

typedef struct mark {
    uint64_t seq;                 /* the last record of a batch (0: none) */
    uint8_t hash[AUDIT_HASH_LEN]; /* its hash */
    uint64_t end;                 /* bytes written on the connection once it was */
} mark;

struct audit_sink {
    /* fixed at start */
    char *dir, *cursor_file, *address, *server_name;
    char host[256];
    uint16_t port;
    bool server_is_ip;
    SSL_CTX *ctx; /* NULL: plain TCP */
    audit_syslog_header hdr;
    char hostname[256], app_name[49], procid[24];
    uint32_t backoff_min, backoff_max, cursor_ms, cursor_records, poll_ms, connect_ms, drain_ms;
    uint64_t replay;
    audit_sink_log_cb log;
    void *data;
    pthread_t thread;
    int wake_fd;

    /* control */
    _Atomic bool stopping;
    _Atomic int64_t stop_deadline; /* mono ms */
    pthread_mutex_t mu;            /* status */
    int status_rc;
    char status_msg[sizeof(((ward_err *)0)->msg)];
    _Atomic uint64_t sent, resent, bytes, delivered_seq, cursor_seq, read_seq, connects, failures;
    _Atomic bool connected;

    /* the thread's own: the reader */
    int fd; /* the segment being read (-1: none) */
    char seg[AUDIT_SEGMENT_NAME_MAX];
    uint64_t line_no;
    off_t roff; /* bytes read from fd */
    char *rbuf;
    size_t rcap, rstart, rend;
    uint64_t next_seq; /* the next record to read */
    uint8_t prev[AUDIT_HASH_LEN];
    bool prev_known;
    bool seek_due; /* position at seek_seq (after seek_hash) before reading on */
    uint64_t seek_seq;
    uint8_t seek_hash[AUDIT_HASH_LEN];
    bool seek_hash_known;
    int64_t stall_until; /* a bad record or a read error: wait until then */
    bool stalled;
    uint64_t max_sent; /* the highest seq ever sent (resent counts) */

    /* the connection */
    int sock;
    SSL *ssl;
    uint64_t plain_written;
    mark base;  /* where this connection started (or the last mark dropped from ring) */
    mark *ring; /* batches sent on it, oldest first */
    size_t r_head, r_n, r_acked;
    uint64_t acked_bytes;
    uint32_t backoff;
    int64_t next_connect;
    int64_t connected_at;
    ward_buf batch;

    /* the cursor */
    mark cursor; /* in memory: the next connection resumes after it */
    mark saved;  /* on disk */
    int64_t saved_at;
    int cursor_rc;
    char cursor_err[sizeof(((ward_err *)0)->msg)];

    /* reporting */
    char last_log[sizeof(((ward_err *)0)->msg)];
    int64_t last_log_at;
};

static void sink_report(audit_sink *s, bool problem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Tells the log callback (a repeated problem at most once per LOG_REPEAT_MS)
 * and, for a problem, sets the status. */
static void sink_report(audit_sink *s, bool problem, const char *fmt, ...)
{
    char msg[sizeof(s->status_msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (problem) {
        pthread_mutex_lock(&s->mu);
        s->status_rc = WARD_EIO;
        memcpy(s->status_msg, msg, sizeof(msg));
        pthread_mutex_unlock(&s->mu);
    }
    int64_t now = mono_ms();
    if (problem && strcmp(msg, s->last_log) == 0 && now - s->last_log_at < LOG_REPEAT_MS)
        return;
    memcpy(s->last_log, msg, sizeof(msg));
    s->last_log_at = now;
    if (s->log != NULL)
        s->log(msg, s->data);
}

static void status_ok(audit_sink *s)
{
    pthread_mutex_lock(&s->mu);
    s->status_rc = 0;
    s->status_msg[0] = '\0';
    pthread_mutex_unlock(&s->mu);
    s->last_log[0] = '\0';
}

/* Sleeps until fd has one of events, the sink is woken, or deadline (mono
 * ms; capped at WAIT_SLICE_MS, and at the stop deadline once stopping unless
 * final). Returns fd's revents (0: none). */
static short wait_for(audit_sink *s, int fd, short events, int64_t deadline, bool final)
{
    int64_t now = mono_ms();
    if (!final && atomic_load(&s->stopping)) {
        int64_t sd = atomic_load(&s->stop_deadline);
        if (sd < deadline)
            deadline = sd;
    }
    int64_t t = deadline - now;
    if (t > WAIT_SLICE_MS)
        t = WAIT_SLICE_MS;
    if (t < 0)
        t = 0;
    struct pollfd p[2] = {{s->wake_fd, POLLIN, 0}, {fd, events, 0}};
    int n = poll(p, fd >= 0 ? 2 : 1, (int)t);
    if (n > 0 && (p[0].revents & POLLIN)) {
        uint64_t v;
        if (read(s->wake_fd, &v, sizeof(v)) < 0) {
            /* nothing to do: the eventfd is only a wake-up */
        }
    }
    return n > 0 && fd >= 0 ? p[1].revents : 0;
}

static short sink_wait(audit_sink *s, int fd, short events, int64_t deadline)
{
    return wait_for(s, fd, events, deadline, false);
}

static bool stop_now(audit_sink *s)
{
    return atomic_load(&s->stopping) && mono_ms() >= atomic_load(&s->stop_deadline);
}

/* ---- the cursor: DIR/sink-<name>.cursor ---------------------------------------------- */

static void cursor_save(audit_sink *s)
{
    char hex[AUDIT_HASH_HEX + 1], ts[AUDIT_TS_LEN + 1], line[200];
    audit_hex(hex, s->cursor.hash, AUDIT_HASH_LEN);
    hex[AUDIT_HASH_HEX] = '\0';
    audit_time_format(ts, audit_now_ns());
    ts[AUDIT_TS_LEN] = '\0';
    int n = snprintf(line, sizeof(line),
                     "{\"v\":1,\"seq\":%" PRIu64 ",\"hash\":\"%s\",\"ts\":\"%s\"}\n", s->cursor.seq,
                     hex, ts);
    ward_err err;
    s->saved_at = mono_ms();
    if (ward_file_write_atomic(s->dir, s->cursor_file, line, (size_t)n, 0600, &err) < 0) {
        s->cursor_rc = WARD_EIO;
        snprintf(s->cursor_err, sizeof(s->cursor_err), "%s", err.msg);
        sink_report(s, true, "syslog sink: cursor not written: %s", err.msg);
        return;
    }
    s->cursor_rc = 0;
    s->saved = s->cursor;
    atomic_store_explicit(&s->cursor_seq, s->cursor.seq, memory_order_relaxed);
}

static void cursor_maybe_save(audit_sink *s, bool force)
{
    if (s->cursor.seq == s->saved.seq && memcmp(s->cursor.hash, s->saved.hash, AUDIT_HASH_LEN) == 0)
        return;
    if (force || s->cursor.seq < s->saved.seq ||
        s->cursor.seq - s->saved.seq >= s->cursor_records ||
        mono_ms() - s->saved_at >= (int64_t)s->cursor_ms)
        cursor_save(s);
}

/* {"v":1,"seq":N,"hash":"<64 hex>", ...}: 0, or WARD_ENOENT (no file), WARD_EINVAL. */
static int cursor_load(audit_sink *s, mark *out, ward_err *err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", s->dir, s->cursor_file);
    char *text = NULL;
    size_t len = 0;
    struct stat st;
    if (lstat(path, &st) != 0) {
        ward_err_set(err, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? WARD_ENOENT : WARD_EIO;
    }
    int rc = WARD_EINVAL;
    if (!S_ISREG(st.st_mode) || st.st_size > 4096)
        goto done;
    if ((rc = ward_file_read(path, 4096, &text, &len, err)) < 0)
        return rc;
    static const char head[] = "{\"v\":1,\"seq\":";
    const char *p = text, *end = text + len;
    rc = WARD_EINVAL;
    if (len < sizeof(head) || memcmp(p, head, sizeof(head) - 1) != 0)
        goto done;
    p += sizeof(head) - 1;
    const char *d = p;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    uint64_t seq;
    if (ward_parse_u64(d, (size_t)(p - d), UINT64_MAX / 2, &seq) < 0)
        goto done;
    if ((size_t)(end - p) < 9 + AUDIT_HASH_HEX + 1 || memcmp(p, ",\"hash\":\"", 9) != 0 ||
        audit_unhex(out->hash, p + 9, AUDIT_HASH_LEN) < 0 || p[9 + AUDIT_HASH_HEX] != '"')
        goto done;
    out->seq = seq;
    out->end = 0;
    rc = 0;
done:
    if (rc < 0)
        ward_err_set(err, "%s: not a sink cursor", path);
    free(text);
    return rc;
}

/* ---- reading the trail ------------------------------------------------------------------ */

static void reader_close(audit_sink *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->seg[0] = '\0';
    s->rstart = s->rend = 0;
    s->roff = 0;
    s->line_no = 0;
}

static int reader_open(audit_sink *s, uint64_t first)
{
    reader_close(s);
    char path[4096];
    audit_segment_name(s->seg, first);
    snprintf(path, sizeof(path), "%s/%s", s->dir, s->seg);
    s->fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (s->fd < 0) {
        sink_report(s, true, "syslog sink: %s: %s", path, strerror(errno));
        s->seg[0] = '\0';
        return WARD_EIO;
    }
    return 0;
}

/* The first seqs of DIR's segments: the greatest one <= want (0: none) and the smallest. */
static int list_segments(audit_sink *s, uint64_t want, uint64_t *floor, uint64_t *oldest)
{
    *floor = *oldest = 0;
    DIR *d = opendir(s->dir);
    if (d == NULL) {
        sink_report(s, true, "syslog sink: %s: %s", s->dir, strerror(errno));
        return WARD_EIO;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t first;
        if (audit_segment_name_parse(e->d_name, &first) < 0)
            continue;
        if (*oldest == 0 || first < *oldest)
            *oldest = first;
        if (first <= want && first > *floor)
            *floor = first;
    }
    closedir(d);
    return 0;
}

/* 1: the next complete line of the segment (valid until the next call);
 * 0: none yet; WARD_EIO, WARD_ELIMIT (a line beyond LINE_MAX_BYTES). */
static int reader_line(audit_sink *s, const char **line, size_t *len)
{
    for (;;) {
        char *b = s->rbuf + s->rstart;
        char *nl = memchr(b, '\n', s->rend - s->rstart);
        if (nl != NULL) {
            *line = b;
            *len = (size_t)(nl - b);
            s->rstart += *len + 1;
            s->line_no++;
            return 1;
        }
        if (s->rend - s->rstart >= LINE_MAX_BYTES) {
            sink_report(s, true, "syslog sink: %s/%s:%" PRIu64 ": a line longer than %d bytes",
                        s->dir, s->seg, s->line_no + 1, LINE_MAX_BYTES);
            return WARD_ELIMIT;
        }
        if (s->rstart > 0) {
            memmove(s->rbuf, s->rbuf + s->rstart, s->rend - s->rstart);
            s->rend -= s->rstart;
            s->rstart = 0;
        }
        if (s->rcap - s->rend < READ_CHUNK / 2) {
            size_t cap = s->rcap * 2;
            char *nb = realloc(s->rbuf, cap);
            if (nb == NULL)
                return WARD_ENOMEM;
            s->rbuf = nb;
            s->rcap = cap;
        }
        ssize_t n = read(s->fd, s->rbuf + s->rend, s->rcap - s->rend);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sink_report(s, true, "syslog sink: %s/%s: read: %s", s->dir, s->seg, strerror(errno));
            return WARD_EIO;
        }
        if (n == 0)
            return 0;
        s->rend += (size_t)n;
        s->roff += n;
    }
}

/* The seq of a line that begins {"v":1,"seq":N, (without checking the rest). */
static bool line_seq(const char *l, size_t n, uint64_t *seq)
{
    static const char head[] = "{\"v\":1,\"seq\":";
    size_t hl = sizeof(head) - 1, i = hl;
    if (n <= hl || memcmp(l, head, hl) != 0)
        return false;
    while (i < n && l[i] >= '0' && l[i] <= '9' && i - hl < 20)
        i++;
    return i < n && l[i] == ',' && ward_parse_u64(l + hl, i - hl, UINT64_MAX / 2, seq) == 0;
}

enum { SEEK_OK = 0, SEEK_MISMATCH = 1, SEEK_NOT_YET = 2 };

/* Positions the reader on record seq, after record seq - 1 whose hash must
 * be hash; hash NULL: at the trail's first record. SEEK_MISMATCH: the trail
 * does not hold record seq - 1 with that hash. */
static int reader_seek(audit_sink *s, uint64_t seq, const uint8_t *hash)
{
    reader_close(s);
    uint64_t want = hash != NULL ? seq - 1 : 0, floor, oldest;
    int rc = list_segments(s, want, &floor, &oldest);
    if (rc < 0)
        return rc;
    if (want == 0) {
        if (oldest == 0)
            return SEEK_NOT_YET;
        if ((rc = reader_open(s, oldest)) < 0)
            return rc;
        s->next_seq = oldest;
        memset(s->prev, 0, sizeof(s->prev));
        s->prev_known = oldest == 1; /* a trail that starts later: take its first prev */
        return SEEK_OK;
    }
    if (floor == 0)
        return SEEK_MISMATCH;
    if ((rc = reader_open(s, floor)) < 0)
        return rc;
    for (;;) {
        const char *line;
        size_t len;
        uint64_t ls;
        uint8_t p[AUDIT_HASH_LEN], h[AUDIT_HASH_LEN];
        if ((rc = reader_line(s, &line, &len)) < 0)
            return rc;
        if (rc == 0 || !line_seq(line, len, &ls) || ls > want)
            return SEEK_MISMATCH;
        if (ls < want)
            continue;
        if (audit_line_check(line, len, want, NULL, &ls, p, h) != AUDIT_LINE_OK ||
            memcmp(h, hash, AUDIT_HASH_LEN) != 0)
            return SEEK_MISMATCH;
        s->next_seq = seq;
        memcpy(s->prev, hash, AUDIT_HASH_LEN);
        s->prev_known = true;
        return SEEK_OK;
    }
}

static void seek_later(audit_sink *s, uint64_t seq, const uint8_t *hash)
{
    reader_close(s);
    s->seek_due = true;
    s->seek_seq = seq;
    s->seek_hash_known = hash != NULL;
    if (hash != NULL)
        memcpy(s->seek_hash, hash, AUDIT_HASH_LEN);
}

static void stall(audit_sink *s)
{
    s->stalled = true;
    s->stall_until = mono_ms() + STALL_RETRY_MS;
    seek_later(s, s->next_seq, s->prev_known ? s->prev : NULL);
}

/* The trail is not the one the cursor (or what was sent) belongs to: send it
 * again from its first record. */
static void trail_reset(audit_sink *s, const char *why)
{
    sink_report(s, false, "syslog sink: %s: re-sending the trail from its first record", why);
    memset(&s->cursor, 0, sizeof(s->cursor));
    cursor_save(s);
    atomic_store_explicit(&s->delivered_seq, 0, memory_order_relaxed);
    s->r_head = s->r_n = s->r_acked = 0;
    memset(&s->base, 0, sizeof(s->base));
    s->base.end = s->acked_bytes;
    seek_later(s, 1, NULL);
}

/* Performs a due seek. 1: positioned; 0: not now. */
static int do_seek(audit_sink *s)
{
    if (s->stalled && mono_ms() < s->stall_until)
        return 0;
    int rc = reader_seek(s, s->seek_seq, s->seek_hash_known ? s->seek_hash : NULL);
    if (rc == SEEK_MISMATCH) {
        char why[160];
        snprintf(why, sizeof(why), "record %" PRIu64 " is not in %s with the hash last sent",
                 s->seek_seq - 1, s->dir);
        trail_reset(s, why);
        rc = reader_seek(s, 1, NULL);
    }
    if (rc == SEEK_OK) {
        s->seek_due = false;
        return 1;
    }
    reader_close(s);
    if (rc < 0) { /* reported */
        s->stalled = true;
        s->stall_until = mono_ms() + STALL_RETRY_MS;
    }
    return 0;
}

/* 1: the next line of the trail; 0: none yet; <0: stalled (reported). */
static int next_line(audit_sink *s, const char **line, size_t *len)
{
    if (s->fd < 0 && !s->seek_due)
        seek_later(s, s->next_seq, s->prev_known ? s->prev : NULL);
    if (s->seek_due && !do_seek(s))
        return 0;
    int rc = reader_line(s, line, len);
    if (rc != 0)
        return rc;
    /* The end of this segment: has the next one begun? The writer only
     * creates it after the last write to this one. */
    char name[AUDIT_SEGMENT_NAME_MAX], path[4096];
    audit_segment_name(name, s->next_seq);
    snprintf(path, sizeof(path), "%s/%s", s->dir, name);
    struct stat st;
    if (strcmp(name, s->seg) != 0 && lstat(path, &st) == 0) {
        if ((rc = reader_line(s, line, len)) != 0)
            return rc;
        if (s->rend > s->rstart) {
            sink_report(s, true,
                        "syslog sink: %s/%s ends in an incomplete line while %s follows: "
                        "records after %" PRIu64 " are not shipped (run wardctl audit verify)",
                        s->dir, s->seg, name, s->next_seq - 1);
            return WARD_EINVAL;
        }
        if ((rc = reader_open(s, s->next_seq)) < 0)
            return rc;
        return reader_line(s, line, len);
    }
    if (fstat(s->fd, &st) == 0 && st.st_size < s->roff) { /* cut below what was read */
        seek_later(s, s->next_seq, s->prev_known ? s->prev : NULL);
        return 0;
    }
    return 0;
}

/* ---- the connection ---------------------------------------------------------------------- */

static uint64_t conn_written(const audit_sink *s)
{
    return s->ssl != NULL ? (uint64_t)BIO_number_written(SSL_get_wbio(s->ssl)) : s->plain_written;
}

static void ssl_error_text(char *out, size_t size)
{
    unsigned long e = ERR_get_error();
    if (e == 0)
        snprintf(out, size, "%s", errno != 0 ? strerror(errno) : "connection closed");
    else
        ERR_error_string_n(e, out, size);
    ERR_clear_error();
}

static void conn_close(audit_sink *s, bool clean)
{
    if (s->ssl != NULL) {
        if (clean)
            (void)SSL_shutdown(s->ssl); /* close_notify, best effort */
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    if (s->sock >= 0) {
        if (clean)
            (void)shutdown(s->sock, SHUT_WR);
        close(s->sock);
    }
    s->sock = -1;
    atomic_store(&s->connected, false);
    ERR_clear_error();
}

static mark *ring_at(audit_sink *s, size_t i)
{
    return &s->ring[(s->r_head + i) % RING_CAP];
}

static void ring_drop_head(audit_sink *s)
{
    s->base = *ring_at(s, 0);
    s->r_head = (s->r_head + 1) % RING_CAP;
    s->r_n--;
    s->r_acked--;
}

/* What the collector's TCP acknowledged (SIOCOUTQ: bytes not yet acked):
 * marks acked move the cursor. */
static void acks_update(audit_sink *s)
{
    int unacked = 0;
    if (s->sock < 0 || ioctl(s->sock, SIOCOUTQ, &unacked) < 0 || unacked < 0)
        return;
    uint64_t w = conn_written(s);
    uint64_t acked = (uint64_t)unacked <= w ? w - (uint64_t)unacked : 0;
    if (acked > s->acked_bytes)
        s->acked_bytes = acked;
    if (mono_ms() - s->connected_at < CONFIRM_MS)
        return; /* a collector may still refuse us (a TLS 1.3 client certificate) */
    size_t before = s->r_acked;
    while (s->r_acked < s->r_n && ring_at(s, s->r_acked)->end <= s->acked_bytes)
        s->r_acked++;
    /* keep one mark at least replay bytes behind the acknowledged byte */
    while (s->r_acked >= 2 && ring_at(s, 1)->end + s->replay <= s->acked_bytes)
        ring_drop_head(s);
    if (s->r_acked > before) {
        s->cursor = *ring_at(s, s->r_acked - 1);
        atomic_store_explicit(&s->delivered_seq, s->cursor.seq, memory_order_relaxed);
        s->backoff = s->backoff_min; /* the collector takes records: back to a quick retry */
    }
}

/* Where to resume when the connection is gone: the last mark at least
 * replay bytes before the last acknowledged byte, or where the connection
 * started. */
static mark replay_anchor(audit_sink *s)
{
    if (s->r_n > 0 && s->r_acked > 0 && ring_at(s, 0)->end + s->replay <= s->acked_bytes)
        return *ring_at(s, 0);
    return s->base;
}

/* A broken connection: what the collector may not have processed (all
 * unacknowledged bytes and replay bytes before them) is sent again. */
static void conn_broken(audit_sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void conn_broken(audit_sink *s, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    mark anchor = replay_anchor(s);
    conn_close(s, false);
    atomic_fetch_add(&s->failures, 1);
    s->r_head = s->r_n = s->r_acked = 0;
    s->cursor = anchor;
    cursor_maybe_save(s, true);
    reader_close(s);
    s->next_connect = mono_ms() + s->backoff;
    sink_report(s, true, "syslog sink: collector %s: %s; resending after seq %" PRIu64 " in %u ms",
                s->address, why, anchor.seq, s->backoff);
    s->backoff = s->backoff * 2 > s->backoff_max ? s->backoff_max : s->backoff * 2;
}

static void connect_failed(audit_sink *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void connect_failed(audit_sink *s, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    conn_close(s, false);
    atomic_fetch_add(&s->failures, 1);
    s->next_connect = mono_ms() + s->backoff;
    sink_report(s, true, "syslog sink: collector %s: %s (next try in %u ms)", s->address, why,
                s->backoff);
    s->backoff = s->backoff * 2 > s->backoff_max ? s->backoff_max : s->backoff * 2;
}

static void sock_options(int fd)
{
    int one = 1, idle = 30, intvl = 10, cnt = 3;
    unsigned user_timeout = 30000; /* unacknowledged data for 30 s: the collector is gone */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

/* TCP to the first address of host that answers, then the TLS handshake. 0
 * or -1 (reported). */
static int conn_open(audit_sink *s)
{
    int64_t deadline = mono_ms() + s->connect_ms;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", s->port);
    int g = getaddrinfo(s->host, port, &hints, &res);
    if (g != 0) {
        connect_failed(s, "%s: %s", s->host, gai_strerror(g));
        return -1;
    }
    int last_err = ETIMEDOUT;
    for (struct addrinfo *ai = res; ai != NULL && s->sock < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            last_err = errno;
            continue;
        }
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            last_err = ETIMEDOUT;
            while (mono_ms() < deadline && !stop_now(s)) {
                short ev = sink_wait(s, fd, POLLOUT, deadline);
                if (ev != 0) {
                    int e = 0;
                    socklen_t el = sizeof(e);
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
                    r = e == 0 ? 0 : -1;
                    last_err = e;
                    break;
                }
            }
        } else if (r < 0) {
            last_err = errno;
        }
        if (r == 0) {
            s->sock = fd;
        } else {
            close(fd);
        }
    }
    freeaddrinfo(res);
    if (s->sock < 0) {
        connect_failed(s, "connect: %s", strerror(last_err));
        return -1;
    }
    sock_options(s->sock);
    s->plain_written = 0;
    if (s->ctx == NULL)
        return 0;
    ERR_clear_error();
    s->ssl = SSL_new(s->ctx);
    if (s->ssl == NULL || SSL_set_fd(s->ssl, s->sock) != 1) {
        connect_failed(s, "TLS: out of memory");
        return -1;
    }
    const char *name = s->server_name != NULL ? s->server_name : s->host;
    if (s->server_is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl), name) != 1) {
            connect_failed(s, "TLS: bad server name %s", name);
            return -1;
        }
    } else if (SSL_set_tlsext_host_name(s->ssl, name) != 1 || SSL_set1_host(s->ssl, name) != 1) {
        connect_failed(s, "TLS: bad server name %s", name);
        return -1;
    }
    for (;;) {
        errno = 0;
        int r = SSL_connect(s->ssl);
        if (r == 1)
            return 0;
        int e = SSL_get_error(s->ssl, r);
        short want = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (want == 0) {
            char detail[256];
            long vr = SSL_get_verify_result(s->ssl);
            if (vr != X509_V_OK)
                snprintf(detail, sizeof(detail), "certificate verify failed: %s",
                         X509_verify_cert_error_string(vr));
            else
                ssl_error_text(detail, sizeof(detail));
            connect_failed(s, "TLS handshake: %s", detail);
            return -1;
        }
        while (sink_wait(s, s->sock, want, deadline) == 0) {
            if (mono_ms() >= deadline || stop_now(s)) {
                connect_failed(s, "TLS handshake: timed out");
                return -1;
            }
        }
    }
}

/* Reads (and drops) whatever the collector sends; -1 when it closed or failed. */
static int conn_input(audit_sink *s)
{
    char buf[4096];
    for (;;) {
        if (s->ssl != NULL) {
            errno = 0;
            int r = SSL_read(s->ssl, buf, sizeof(buf));
            if (r > 0)
                continue;
            int e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            char detail[256];
            if (e == SSL_ERROR_ZERO_RETURN)
                snprintf(detail, sizeof(detail), "closed the connection");
            else
                ssl_error_text(detail, sizeof(detail));
            conn_broken(s, "%s", detail);
            return -1;
        }
        ssize_t r = recv(s->sock, buf, sizeof(buf), MSG_DONTWAIT);
        if (r > 0)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return 0;
        conn_broken(s, "%s", r == 0 ? "closed the connection" : strerror(errno));
        return -1;
    }
}

/* Writes all of p. 0, -1 (broken, reported) or -2 (the stop deadline passed). */
static int conn_write(audit_sink *s, const char *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        short want = POLLOUT;
        if (s->ssl != NULL) {
            errno = 0;
            int r = SSL_write(s->ssl, p + off, (int)(n - off));
            if (r > 0) {
                off += (size_t)r;
                continue;
            }
            int e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                want = POLLIN;
            else if (e != SSL_ERROR_WANT_WRITE) {
                char detail[256];
                ssl_error_text(detail, sizeof(detail));
                conn_broken(s, "write: %s", detail);
                return -1;
            }
        } else {
            ssize_t r = send(s->sock, p + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (r > 0) {
                off += (size_t)r;
                s->plain_written += (uint64_t)r;
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
                conn_broken(s, "write: %s", r == 0 ? "closed" : strerror(errno));
                return -1;
            }
        }
        /* the collector is slow: wait, and keep the cursor moving meanwhile */
        short ev = sink_wait(s, s->sock, (short)(want | POLLIN), mono_ms() + WAIT_SLICE_MS);
        acks_update(s);
        cursor_maybe_save(s, false);
        if (stop_now(s))
            return -2;
        if ((ev & (POLLIN | POLLHUP | POLLERR)) && want != POLLIN && conn_input(s) < 0)
            return -1;
    }
    return 0;
}

/* ---- the thread ------------------------------------------------------------------------------ */

static void on_connected(audit_sink *s)
{
    atomic_fetch_add(&s->connects, 1);
    atomic_store(&s->connected, true);
    s->connected_at = mono_ms();
    s->r_head = s->r_n = s->r_acked = 0;
    s->acked_bytes = conn_written(s);
    seek_later(s, s->cursor.seq + 1, s->cursor.seq > 0 ? s->cursor.hash : NULL);
    s->stalled = false;
    (void)do_seek(s); /* may reset the cursor when it is not of this trail */
    s->base = s->cursor;
    s->base.end = s->acked_bytes;
    status_ok(s);
    sink_report(s, false, "syslog sink: connected to %s%s; sending from seq %" PRIu64, s->address,
                s->ssl != NULL ? " (TLS)" : "", s->cursor.seq + 1);
}

/* Reads records into one batch of framed messages. The number of records;
 * last: the mark of the last one. */
static size_t fill_batch(audit_sink *s, mark *last)
{
    ward_buf_reset(&s->batch);
    size_t n = 0;
    while (s->batch.len < BATCH_BYTES && n < BATCH_RECORDS) {
        const char *line;
        size_t len;
        int rc = next_line(s, &line, &len);
        if (rc < 0) {
            stall(s);
            break;
        }
        if (rc == 0)
            break;
        uint64_t seq = 0;
        uint8_t prev[AUDIT_HASH_LEN], hash[AUDIT_HASH_LEN];
        audit_line_fault f = audit_line_check(line, len, s->next_seq,
                                              s->prev_known ? s->prev : NULL, &seq, prev, hash);
        if (f == AUDIT_LINE_OK && (rc = audit_syslog_frame(&s->batch, &s->hdr, line, len)) < 0)
            f = AUDIT_LINE_SHAPE;
        if (f != AUDIT_LINE_OK) {
            sink_report(s, true,
                        "syslog sink: %s/%s:%" PRIu64 ": record %" PRIu64 ": %s: it and the "
                        "records after it are not shipped (run wardctl audit verify)",
                        s->dir, s->seg, s->line_no, s->next_seq, audit_line_fault_name(f));
            stall(s);
            break;
        }
        if (s->stalled) {
            s->stalled = false;
            if (atomic_load(&s->connected))
                status_ok(s);
        }
        s->next_seq = seq + 1;
        memcpy(s->prev, hash, AUDIT_HASH_LEN);
        s->prev_known = true;
        last->seq = seq;
        memcpy(last->hash, hash, AUDIT_HASH_LEN);
        if (seq <= s->max_sent)
            atomic_fetch_add_explicit(&s->resent, 1, memory_order_relaxed);
        else
            s->max_sent = seq;
        n++;
    }
    if (n > 0)
        atomic_store_explicit(&s->read_seq, s->next_seq - 1, memory_order_relaxed);
    return n;
}

/* At stop: half-close and wait for the collector to close its side. Its
 * EOF (or close_notify) says it has read everything sent: the cursor moves
 * to the last record written; otherwise to the replay anchor. */
static void conn_finish(audit_sink *s, bool partial)
{
    int64_t deadline = atomic_load(&s->stop_deadline);
    if (deadline < mono_ms() + CLOSE_GRACE_MS)
        deadline = mono_ms() + CLOSE_GRACE_MS;
    bool eof = false, failed = partial;
    if (!failed && s->ssl != NULL) {
        ERR_clear_error();
        while (!failed) {
            int r = SSL_shutdown(s->ssl); /* our close_notify */
            if (r >= 0)
                break;
            int e = SSL_get_error(s->ssl, r);
            if ((e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) || mono_ms() >= deadline)
                failed = true;
            else
                (void)wait_for(s, s->sock, e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN, deadline,
                               true);
        }
    }
    if (!failed && shutdown(s->sock, SHUT_WR) < 0)
        failed = true;
    while (!failed && !eof && mono_ms() < deadline) {
        if (wait_for(s, s->sock, POLLIN, deadline, true) == 0)
            continue;
        char buf[4096];
        if (s->ssl != NULL) {
            int r = SSL_read(s->ssl, buf, sizeof(buf));
            if (r > 0)
                continue;
            int e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN)
                eof = true;
            else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                failed = true;
        } else {
            ssize_t r = recv(s->sock, buf, sizeof(buf), MSG_DONTWAIT);
            if (r == 0)
                eof = true;
            else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                failed = true;
        }
    }
    if (eof && s->r_n > 0) {
        s->cursor = *ring_at(s, s->r_n - 1);
    } else if (!eof) {
        s->cursor = replay_anchor(s);
        sink_report(s, false,
                    "syslog sink: collector %s did not confirm the end of the stream; the next "
                    "start re-sends after seq %" PRIu64,
                    s->address, s->cursor.seq);
    }
    atomic_store_explicit(&s->delivered_seq, s->cursor.seq, memory_order_relaxed);
    conn_close(s, false);
}

static void *sink_main(void *arg)
{
    audit_sink *s = arg;
    bool partial = false; /* stopped in the middle of a batch */
    for (;;) {
        bool stopping = atomic_load(&s->stopping);
        if (stopping && (s->sock < 0 || stop_now(s)))
            break;
        if (s->sock < 0) {
            if (mono_ms() < s->next_connect) {
                (void)sink_wait(s, -1, 0, s->next_connect);
                continue;
            }
            if (conn_open(s) < 0)
                continue;
            on_connected(s);
        }
        if (s->r_n == RING_CAP) { /* too much unacknowledged: wait for the collector */
            acks_update(s);
            if (s->r_n == RING_CAP && s->r_acked > 0)
                ring_drop_head(s);
            if (s->r_n == RING_CAP) {
                short ev = sink_wait(s, s->sock, POLLIN, mono_ms() + s->poll_ms);
                if (ev != 0)
                    (void)conn_input(s);
                continue;
            }
        }
        mark last = {0};
        size_t n = fill_batch(s, &last);
        if (n > 0) {
            uint64_t w0 = conn_written(s);
            int rc = conn_write(s, s->batch.ptr, s->batch.len);
            if (rc == -2) {
                partial = true;
                break;
            }
            if (rc < 0)
                continue;
            last.end = conn_written(s);
            *ring_at(s, s->r_n) = last;
            s->r_n++;
            atomic_fetch_add_explicit(&s->sent, n, memory_order_relaxed);
            atomic_fetch_add_explicit(&s->bytes, last.end - w0, memory_order_relaxed);
            acks_update(s);
            cursor_maybe_save(s, false);
            continue;
        }
        acks_update(s);
        cursor_maybe_save(s, false);
        if (stopping)
            break; /* everything there is was sent: conn_finish has the collector confirm it */
        int64_t until = mono_ms() + s->poll_ms;
        if (s->stalled && s->stall_until < until)
            until = s->stall_until;
        short ev = sink_wait(s, s->sock, POLLIN, until);
        if (ev != 0)
            (void)conn_input(s);
    }
    if (s->sock >= 0)
        conn_finish(s, partial);
    cursor_maybe_save(s, true);
    reader_close(s);
    return NULL;
}

/* ---- start, stop ------------------------------------------------------------------------------
 */

void audit_sink_options_init(audit_sink_options *o)
{
    memset(o, 0, sizeof(*o));
    o->facility = AUDIT_SYSLOG_FACILITY;
    o->replay_bytes = -1;
}

static bool name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > AUDIT_SINK_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= '0' && n[i] <= '9') || n[i] == '_' ||
              n[i] == '-'))
            return false;
    return true;
}

static bool is_ip(const char *s)
{
    struct in6_addr a;
    return inet_pton(AF_INET, s, &a) == 1 || inet_pton(AF_INET6, s, &a) == 1;
}

static int tls_setup(audit_sink *s, const audit_sink_options *o, ward_err *err)
{
    char detail[256];
    if (o->ca_file == NULL) {
        ward_err_set(err, "syslog sink: tls needs a ca_file (the collector's CA)");
        return WARD_EINVAL;
    }
    if ((o->cert_file == NULL) != (o->key_file == NULL)) {
        ward_err_set(err, "syslog sink: a client certificate needs both cert_file and key_file");
        return WARD_EINVAL;
    }
    ERR_clear_error();
    s->ctx = SSL_CTX_new(TLS_client_method());
    if (s->ctx == NULL)
        return WARD_ENOMEM;
    SSL_CTX_set_min_proto_version(s->ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(s->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(s->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF); /* a bare EOF ends the stream too */
    if (SSL_CTX_load_verify_locations(s->ctx, o->ca_file, NULL) != 1) {
        ssl_error_text(detail, sizeof(detail));
        ward_err_set(err, "syslog sink: ca_file %s: %s", o->ca_file, detail);
        return WARD_EINVAL;
    }
    if (o->cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(s->ctx, o->cert_file) != 1) {
            ssl_error_text(detail, sizeof(detail));
            ward_err_set(err, "syslog sink: cert_file %s: %s", o->cert_file, detail);
            return WARD_EINVAL;
        }
        if (SSL_CTX_use_PrivateKey_file(s->ctx, o->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(s->ctx) != 1) {
            ssl_error_text(detail, sizeof(detail));
            ward_err_set(err, "syslog sink: key_file %s: %s", o->key_file, detail);
            return WARD_EINVAL;
        }
    }
    const char *name = o->server_name != NULL ? o->server_name : s->host;
    s->server_is_ip = is_ip(name);
    if (o->server_name != NULL && (s->server_name = strdup(o->server_name)) == NULL)
        return WARD_ENOMEM;
    return 0;
}

static void sink_free(audit_sink *s)
{
    if (s == NULL)
        return;
    conn_close(s, false);
    reader_close(s);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    SSL_CTX_free(s->ctx);
    pthread_mutex_destroy(&s->mu);
    ward_buf_dispose(&s->batch);
    free(s->rbuf);
    free(s->ring);
    free(s->dir);
    free(s->cursor_file);
    free(s->address);
    free(s->server_name);
    free(s);
}

int audit_sink_start(const audit_sink_options *o, audit_sink **out, ward_err *err)
{
    int rc = 0;
    *out = NULL;
    if (o->dir == NULL || o->dir[0] == '\0' || o->address == NULL) {
        ward_err_set(err, "syslog sink: %s is required", o->address == NULL ? "an address" : "dir");
        return WARD_EINVAL;
    }
    const char *name = o->name != NULL ? o->name : "syslog";
    if (!name_ok(name)) {
        ward_err_set(err, "syslog sink: invalid name \"%.64s\" (1..%d of [a-z0-9_-])", name,
                     AUDIT_SINK_NAME_MAX);
        return WARD_EINVAL;
    }
    if (o->facility < 0 || o->facility > 23) {
        ward_err_set(err, "syslog sink: facility %d is not 0..23", o->facility);
        return WARD_EINVAL;
    }
    const char *app = o->app_name != NULL ? o->app_name : AUDIT_SYSLOG_APP_NAME;
    if (!printusascii(app, 48)) {
        ward_err_set(err,
                     "syslog sink: app_name \"%.64s\" must be 1..48 printable ASCII characters "
                     "without spaces",
                     app);
        return WARD_EINVAL;
    }
    if (o->hostname != NULL && !printusascii(o->hostname, 255)) {
        ward_err_set(err,
                     "syslog sink: hostname \"%.64s\" must be 1..255 printable ASCII "
                     "characters without spaces",
                     o->hostname);
        return WARD_EINVAL;
    }
    audit_sink *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return WARD_ENOMEM;
    s->wake_fd = s->fd = s->sock = -1;
    pthread_mutex_init(&s->mu, NULL);
    ward_buf_init(&s->batch);
    WARD_TRY(audit_sink_address_parse(o->address, s->host, sizeof(s->host), &s->port, err));
    size_t cf_len = strlen(CURSOR_PREFIX) + strlen(name) + strlen(CURSOR_SUFFIX) + 1;
    s->dir = strdup(o->dir);
    s->address = strdup(o->address);
    s->cursor_file = malloc(cf_len);
    s->rcap = READ_CHUNK;
    s->rbuf = malloc(s->rcap);
    s->ring = calloc(RING_CAP, sizeof(*s->ring));
    if (s->dir == NULL || s->address == NULL || s->cursor_file == NULL || s->rbuf == NULL ||
        s->ring == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    snprintf(s->cursor_file, cf_len, CURSOR_PREFIX "%s" CURSOR_SUFFIX, name);
    if (o->tls)
        WARD_TRY(tls_setup(s, o, err));
    snprintf(s->app_name, sizeof(s->app_name), "%s", app);
    if (o->hostname != NULL) {
        snprintf(s->hostname, sizeof(s->hostname), "%s", o->hostname);
    } else if (gethostname(s->hostname, sizeof(s->hostname) - 1) != 0 ||
               !printusascii(s->hostname, 255)) {
        s->hostname[0] = '\0'; /* written "-" */
    }
    snprintf(s->procid, sizeof(s->procid), "%ld", (long)getpid());
    s->hdr = (audit_syslog_header){o->facility, s->hostname, s->app_name, s->procid};
    s->backoff_min = o->backoff_min_ms ? o->backoff_min_ms : 500;
    s->backoff_max = o->backoff_max_ms ? o->backoff_max_ms : 30000;
    if (s->backoff_max < s->backoff_min)
        s->backoff_max = s->backoff_min;
    s->backoff = s->backoff_min;
    s->cursor_ms = o->cursor_ms ? o->cursor_ms : 100;
    s->cursor_records = o->cursor_records ? o->cursor_records : 10000;
    s->poll_ms = o->poll_ms ? o->poll_ms : 20;
    s->connect_ms = o->connect_timeout_ms ? o->connect_timeout_ms : 5000;
    s->drain_ms = o->drain_ms ? o->drain_ms : 2000;
    s->replay = o->replay_bytes < 0 ? (uint64_t)REPLAY_DEFAULT : (uint64_t)o->replay_bytes;
    s->log = o->log;
    s->data = o->data;

    struct stat st;
    if (stat(s->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        ward_err_set(err, "syslog sink: %s is not a folder", s->dir);
        rc = WARD_EINVAL;
        goto fail;
    }
    ward_err cerr;
    rc = cursor_load(s, &s->cursor, &cerr);
    if (rc == WARD_EINVAL) {
        sink_report(s, false, "syslog sink: %s: re-sending the trail from its first record",
                    cerr.msg);
        memset(&s->cursor, 0, sizeof(s->cursor));
    } else if (rc < 0 && rc != WARD_ENOENT) {
        ward_err_set(err, "syslog sink: %s", cerr.msg);
        goto fail;
    }
    rc = 0;
    s->saved = s->cursor;
    s->saved_at = mono_ms();
    s->max_sent = s->cursor.seq;
    atomic_store(&s->cursor_seq, s->cursor.seq);
    atomic_store(&s->delivered_seq, s->cursor.seq);
    atomic_store(&s->read_seq, s->cursor.seq);
    s->status_rc = WARD_EIO;
    snprintf(s->status_msg, sizeof(s->status_msg), "syslog sink: connecting to %s", s->address);
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->wake_fd < 0) {
        ward_err_set(err, "syslog sink: eventfd: %s", strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    if (pthread_create(&s->thread, NULL, sink_main, s) != 0) {
        ward_err_set(err, "syslog sink: cannot start its thread");
        rc = WARD_EIO;
        goto fail;
    }
    *out = s;
    return 0;
fail:
    sink_free(s);
    return rc;
}

int audit_sink_stop(audit_sink *s, ward_err *err)
{
    if (s == NULL)
        return 0;
    atomic_store(&s->stop_deadline, mono_ms() + (int64_t)s->drain_ms);
    atomic_store(&s->stopping, true);
    uint64_t one = 1;
    if (write(s->wake_fd, &one, sizeof(one)) < 0) {
        /* the eventfd cannot be full: the thread polls anyway */
    }
    pthread_join(s->thread, NULL);
    int rc = 0;
    if (s->cursor_rc < 0) {
        ward_err_set(err, "%s", s->cursor_err);
        rc = s->cursor_rc;
    }
    sink_free(s);
    return rc;
}

void audit_sink_stats_get(const audit_sink *s, audit_sink_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->sent = atomic_load_explicit(&s->sent, memory_order_relaxed);
    out->resent = atomic_load_explicit(&s->resent, memory_order_relaxed);
    out->bytes = atomic_load_explicit(&s->bytes, memory_order_relaxed);
    out->delivered_seq = atomic_load_explicit(&s->delivered_seq, memory_order_relaxed);
    out->cursor_seq = atomic_load_explicit(&s->cursor_seq, memory_order_relaxed);
    out->read_seq = atomic_load_explicit(&s->read_seq, memory_order_relaxed);
    out->connects = atomic_load_explicit(&s->connects, memory_order_relaxed);
    out->failures = atomic_load_explicit(&s->failures, memory_order_relaxed);
    out->connected = atomic_load_explicit(&s->connected, memory_order_relaxed);
}

int audit_sink_status(const audit_sink *s, ward_err *err)
{
    audit_sink *m = (audit_sink *)s; /* the lock only */
    pthread_mutex_lock(&m->mu);
    int rc = s->status_rc;
    if (rc < 0 && err != NULL)
        ward_err_set(err, "%s", s->status_msg);
    pthread_mutex_unlock(&m->mu);
    return rc;
}
