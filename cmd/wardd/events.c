/* events.c - wardd's identity events as records of its audit trail (audit/), fail-closed slots, recent issuance read back from the trail */
#include "cmd/wardd/wardd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAIL_MAX        ((off_t)4 << 20) /* bytes of a segment read back for recent issuance */
#define FLUSH_WAIT_MS   1000             /* recent issuance waits this long for the writer */
#define RING_SLOTS      1024
#define AUDIENCE_BYTES  (AUDIT_MAX_AUDIENCE + 64)

void wardd_time_format(time_t t, char *buf, size_t size)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void now_format(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char s[32];
    strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, size, "%s.%03ldZ", s, ts.tv_nsec / 1000000);
}

void wardd_peer_name(const proxy_peer *peer, char *buf, size_t size)
{
    if (peer->is_unix && peer->has_cred)
        snprintf(buf, size, "unix:uid=%u,pid=%d", (unsigned)peer->uid, (int)peer->pid);
    else
        snprintf(buf, size, "%s", peer->addr);
}

void wardd_token_hash(const char *token, char out[17])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), md);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- the trail ---------------------------------------------------------------------------- */

static void on_sink_log(const char *msg, void *data)
{
    (void)data;
    fprintf(stderr, "wardd: audit sink: %s\n", msg);
}

int wardd_events_open(wardd *d, ward_err *err)
{
    const wardd_config *c = &d->cfg;
    int rc = 0;
    char old[4096];
    struct stat st;
    snprintf(old, sizeof(old), "%s/events.jsonl", c->data_dir);
    if (lstat(old, &st) == 0)
        fprintf(stderr,
                "wardd: note: %s is no longer written; identity events are records of the "
                "audit trail in %s (wardctl audit query %s)\n",
                old, c->audit.dir, c->audit.dir);
    audit_options ao;
    audit_options_init(&ao);
    ao.dir = c->audit.dir;
    ao.node = d->server_id;
    ao.overflow = c->audit.overflow;
    ao.key_file = c->audit.key_file;
    ao.ring_slots = RING_SLOTS;
    ao.max_producers = 1; /* everything happens on the loop's thread */
    if (c->audit.segment_bytes)
        ao.segment_bytes = c->audit.segment_bytes;
    if (c->audit.segment_age_ms)
        ao.segment_age_ms = c->audit.segment_age_ms;
    if (c->audit.checkpoint_records)
        ao.checkpoint_records = (uint32_t)c->audit.checkpoint_records;
    if (c->audit.fsync_ms)
        ao.fsync_ms = (uint32_t)c->audit.fsync_ms;
    WARD_TRY(audit_log_open(&ao, &d->audit, err));
    rc = audit_log_producer_new(d->audit, &d->producer);
    if (rc < 0) {
        ward_err_set(err, "audit: %s", ward_strerror(rc));
        goto fail;
    }
    if (c->audit.sink.address != NULL) {
        audit_sink_options so;
        audit_sink_options_init(&so);
        so.dir = c->audit.dir;
        so.address = c->audit.sink.address;
        so.tls = c->audit.sink.tls;
        so.ca_file = c->audit.sink.ca_file;
        so.cert_file = c->audit.sink.cert_file;
        so.key_file = c->audit.sink.key_file;
        so.server_name = c->audit.sink.server_name;
        if (c->audit.sink.facility >= 0)
            so.facility = c->audit.sink.facility;
        so.app_name = c->audit.sink.app_name != NULL ? c->audit.sink.app_name : "wardd";
        so.log = on_sink_log;
        WARD_TRY(audit_sink_start(&so, &d->sink, err));
    }
fail:
    return rc;
}

void wardd_events_close(wardd *d)
{
    ward_err err;
    if (d->sink != NULL && audit_sink_stop(d->sink, &err) < 0)
        fprintf(stderr, "wardd: audit sink: %s\n", err.msg);
    d->sink = NULL;
    if (d->audit != NULL && audit_log_close(d->audit, &err) < 0)
        fprintf(stderr, "wardd: audit trail: %s\n", err.msg);
    d->audit = NULL;
    d->producer = NULL;
    d->reserved = 0;
}

int wardd_events_reserve(wardd *d, unsigned n, wardd_refusal *why)
{
    ward_err err;
    for (unsigned i = 0; i < n; i++) {
        int rc = d->audit != NULL ? audit_log_reserve(d->audit, d->producer, AUDIT_DENY) : WARD_EIO;
        if (rc < 0) {
            wardd_events_release(d);
            if (d->audit != NULL && audit_log_status(d->audit, &err) < 0)
                wardd_refuse(why, 503, "audit_unavailable",
                             "the audit trail cannot record identity events: %s", err.msg);
            else
                wardd_refuse(why, 503, "audit_unavailable",
                             "the audit trail cannot keep up (overflow: %s); try again",
                             audit_overflow_name(d->cfg.audit.overflow));
            return rc;
        }
        d->reserved++;
    }
    return 0;
}

void wardd_events_release(wardd *d)
{
    for (; d->reserved > 0; d->reserved--)
        audit_log_unreserve(d->producer);
}

cJSON *wardd_event_new(const char *name)
{
    char ts[48];
    now_format(ts, sizeof(ts));
    cJSON *ev = cJSON_CreateObject();
    if (ev == NULL)
        return NULL;
    cJSON_AddStringToObject(ev, "ts", ts);
    cJSON_AddStringToObject(ev, "event", name);
    return ev;
}

static audit_str str_member(const cJSON *ev, const char *name)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, name);
    return audit_cstr(cJSON_IsString(m) ? m->valuestring : NULL);
}

static int64_t num_member(const cJSON *ev, const char *name)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, name);
    return cJSON_IsNumber(m) && m->valuedouble >= 0 && m->valuedouble < 9e15
               ? (int64_t)m->valuedouble
               : -1;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* "127.0.0.1:41234", "[::1]:41234" or "unix:uid=0,pid=42" into the event's source. */
static void peer_split(const char *peer, audit_event *e, char *ip, size_t ip_size)
{
    unsigned uid;
    if (peer == NULL)
        return;
    if (sscanf(peer, "unix:uid=%u,", &uid) == 1) {
        e->source_uid = uid;
        return;
    }
    const char *colon = strrchr(peer, ':');
    if (colon == NULL || strncmp(peer, "unix:", 5) == 0)
        return;
    const char *start = peer, *end = colon;
    if (peer[0] == '[' && colon > peer && colon[-1] == ']')
        start++, end--;
    snprintf(ip, ip_size, "%.*s", (int)(end - start), start);
    uint64_t port;
    if (ward_parse_u64(colon + 1, strlen(colon + 1), 65535, &port) == 0)
        e->source_port = (int)port;
    e->source_ip = audit_cstr(ip);
}

int wardd_event_emit(wardd *d, cJSON *ev)
{
    if (ev == NULL)
        return WARD_ENOMEM;
    const char *name = str_member(ev, "event").ptr;
    char ip[64], audience[AUDIENCE_BYTES];
    audit_event e;
    audit_event_init(&e);
    e.event = audit_cstr(name);
    e.outcome = name != NULL && !ends_with(name, ".refused") ? AUDIT_SUCCESS : AUDIT_FAILURE;
    e.subject = str_member(ev, "subject");
    e.serial = str_member(ev, "serial");
    e.via = str_member(ev, "via");
    e.token_id = str_member(ev, "token_id");
    e.key_id = str_member(ev, "key_id");
    e.source_principal = str_member(ev, "principal");
    e.error = str_member(ev, "error");
    e.reason = str_member(ev, "reason");
    e.bundle_sequence = num_member(ev, "bundle_sequence");
    int64_t status = num_member(ev, "status");
    e.status = status >= 0 && status < 1000 ? (int)status : -1;
    audit_str na = str_member(ev, "not_after");
    int64_t ns;
    if (na.ptr != NULL && audit_time_parse(na.ptr, 0, &ns, NULL) == 0)
        e.not_after_ns = ns;
    peer_split(str_member(ev, "peer").ptr, &e, ip, sizeof(ip));
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(ev, "audience");
    if (cJSON_IsArray(aud)) {
        size_t n = 0;
        for (const cJSON *a = aud->child; a != NULL; a = a->next) {
            if (!cJSON_IsString(a))
                continue;
            size_t k = strlen(a->valuestring);
            if (n + (n > 0) + k > sizeof(audience))
                break;
            if (n > 0)
                audience[n++] = '\0';
            memcpy(audience + n, a->valuestring, k);
            n += k;
        }
        e.audience = (audit_str){audience, n};
    }
    int rc;
    if (d->audit == NULL) {
        rc = WARD_EIO;
    } else if (d->reserved > 0) {
        d->reserved--;
        rc = audit_log_append_event_reserved(d->audit, d->producer, &e);
    } else {
        rc = audit_log_append_event(d->audit, d->producer, &e);
    }
    char *line = cJSON_PrintUnformatted(ev);
    if (line != NULL)
        fprintf(stderr, "%s\n", line);
    if (rc < 0) {
        ward_err err;
        if (d->audit == NULL || audit_log_status(d->audit, &err) == 0)
            snprintf(err.msg, sizeof(err.msg), "%s", ward_strerror(rc));
        fprintf(stderr, "wardd: audit trail: event %s NOT recorded: %s\n",
                name != NULL ? name : "?", err.msg);
    }
    free(line);
    cJSON_Delete(ev);
    return rc;
}

/* ---- recent issuance, read back from the trail ------------------------------------------------ */

typedef struct span {
    size_t off, len;
} span;

typedef struct tail {
    char *buf;
    size_t len;
    span *lines;
    size_t n, cap;
} tail;

static bool is_issuance(const audit_view *v)
{
    const audit_value *e = &v->f[AUDIT_A_EVENT];
    return e->type == AUDIT_V_STRING && !e->escaped &&
           ((e->len == 11 && memcmp(e->ptr, "svid.issued", 11) == 0) ||
            (e->len == 10 && memcmp(e->ptr, "jwt.issued", 10) == 0));
}

/* Appends to t the issuance records among the complete lines of the last
 * TAIL_MAX bytes of dir/name. */
static int tail_read(tail *t, const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : WARD_EIO;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0 || st.st_size == 0)
        goto fail;
    off_t start = st.st_size > TAIL_MAX ? st.st_size - TAIL_MAX : 0;
    size_t len = (size_t)(st.st_size - start);
    char *buf = realloc(t->buf, t->len + len);
    if (buf == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    t->buf = buf;
    ssize_t got = pread(fd, buf + t->len, len, start);
    if (got <= 0)
        goto fail;
    size_t at = t->len, end = t->len + (size_t)got;
    if (start > 0) { /* a partial first line */
        char *nl = memchr(buf + at, '\n', end - at);
        at = nl != NULL ? (size_t)(nl - buf) + 1 : end;
    }
    while (at < end) {
        char *nl = memchr(buf + at, '\n', end - at);
        if (nl == NULL)
            break; /* a torn last line */
        size_t n = (size_t)(nl - (buf + at));
        audit_view v;
        if (audit_view_parse(&v, buf + at, n) == 0 && is_issuance(&v)) {
            if (t->n == t->cap) {
                size_t cap = t->cap ? t->cap * 2 : 256;
                span *l = realloc(t->lines, cap * sizeof(*l));
                if (l == NULL) {
                    rc = WARD_ENOMEM;
                    goto fail;
                }
                t->lines = l;
                t->cap = cap;
            }
            t->lines[t->n++] = (span){at, n};
        }
        at += n + 1;
    }
    t->len = end;
fail:
    close(fd);
    return rc;
}

int wardd_recent_json(wardd *d, size_t limit, ward_buf *out)
{
    int rc = 0;
    tail t = {0};
    uint64_t newest = 0, before = 0, seq;
    const char *dir = d->cfg.audit.dir;
    if (d->audit != NULL)
        audit_log_flush(d->audit, FLUSH_WAIT_MS); /* best effort: what is queued is written */
    DIR *dh = opendir(dir);
    if (dh == NULL)
        return WARD_EIO;
    struct dirent *de;
    while ((de = readdir(dh)) != NULL) {
        if (audit_segment_name_parse(de->d_name, &seq) < 0)
            continue;
        if (seq > newest) {
            before = newest;
            newest = seq;
        } else if (seq > before) {
            before = seq;
        }
    }
    closedir(dh);
    char name[AUDIT_SEGMENT_NAME_MAX];
    if (before > 0) { /* the newest segment may have just begun */
        audit_segment_name(name, before);
        WARD_TRY(tail_read(&t, dir, name));
    }
    if (newest > 0) {
        audit_segment_name(name, newest);
        WARD_TRY(tail_read(&t, dir, name));
    }
    WARD_TRY(ward_buf_putc(out, '['));
    for (size_t i = 0; i < t.n && i < limit; i++) {
        const span *s = &t.lines[t.n - 1 - i];
        if (i > 0)
            WARD_TRY(ward_buf_putc(out, ','));
        WARD_TRY(ward_buf_append(out, t.buf + s->off, s->len));
    }
    WARD_TRY(ward_buf_putc(out, ']'));
fail:
    free(t.buf);
    free(t.lines);
    return rc;
}
