/* events.c - wardd's event log: JSON lines of issuance and refusals, recent issuance */
#include "cmd/wardd/wardd.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAIL_MAX ((off_t)4 << 20) /* bytes of events.jsonl read back at start */

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

static bool is_issuance(const char *name)
{
    return strcmp(name, "svid.issued") == 0 || strcmp(name, "jwt.issued") == 0;
}

static void recent_push(wardd *d, char *line)
{
    free(d->recent[d->recent_next]);
    d->recent[d->recent_next] = line;
    d->recent_next = (d->recent_next + 1) % WARDD_RECENT_MAX;
    if (d->recent_n < WARDD_RECENT_MAX)
        d->recent_n++;
}

/* Reads back the issuance records at the end of the log, so a restart keeps them. */
static void recent_load(wardd *d, int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size == 0)
        return;
    off_t start = st.st_size > TAIL_MAX ? st.st_size - TAIL_MAX : 0;
    size_t len = (size_t)(st.st_size - start);
    char *buf = malloc(len + 1);
    if (buf == NULL)
        return;
    ssize_t got = pread(fd, buf, len, start);
    if (got <= 0) {
        free(buf);
        return;
    }
    buf[got] = '\0';
    char *line = buf;
    if (start > 0) { /* skip a partial first line */
        char *nl = strchr(buf, '\n');
        line = nl ? nl + 1 : buf + got;
    }
    while (*line != '\0') {
        char *nl = strchr(line, '\n');
        if (nl == NULL)
            break; /* a torn last line */
        *nl = '\0';
        cJSON *ev = cJSON_Parse(line);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(ev, "event");
        if (cJSON_IsString(name) && is_issuance(name->valuestring)) {
            char *copy = strdup(line);
            if (copy != NULL)
                recent_push(d, copy);
        }
        cJSON_Delete(ev);
        line = nl + 1;
    }
    free(buf);
}

int wardd_events_open(wardd *d, ward_err *err)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/events.jsonl", d->cfg.data_dir);
    d->events_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (d->events_fd < 0) {
        ward_err_set(err, "%s: %s", path, strerror(errno));
        return WARD_EIO;
    }
    int rfd = open(path, O_RDONLY | O_CLOEXEC);
    if (rfd >= 0) {
        recent_load(d, rfd);
        close(rfd);
    }
    return 0;
}

void wardd_events_close(wardd *d)
{
    if (d->events_fd >= 0)
        close(d->events_fd);
    d->events_fd = -1;
    for (size_t i = 0; i < WARDD_RECENT_MAX; i++) {
        free(d->recent[i]);
        d->recent[i] = NULL;
    }
    d->recent_n = d->recent_next = 0;
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

void wardd_event_emit(wardd *d, cJSON *ev)
{
    if (ev == NULL)
        return;
    char *line = cJSON_PrintUnformatted(ev);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(ev, "event");
    bool keep = cJSON_IsString(name) && is_issuance(name->valuestring);
    cJSON_Delete(ev);
    if (line == NULL)
        return;
    size_t len = strlen(line);
    line[len] = '\n'; /* written with its newline in one call, then restored */
    if (d->events_fd >= 0) {
        ssize_t w = write(d->events_fd, line, len + 1);
        if (w != (ssize_t)len + 1)
            fprintf(stderr, "wardd: events.jsonl: %s\n", w < 0 ? strerror(errno) : "short write");
    }
    fwrite(line, 1, len + 1, stderr);
    line[len] = '\0';
    if (keep)
        recent_push(d, line);
    else
        free(line);
}

int wardd_recent_json(const wardd *d, size_t limit, ward_buf *out)
{
    int rc = 0;
    WARD_TRY(ward_buf_putc(out, '['));
    size_t n = limit < d->recent_n ? limit : d->recent_n;
    for (size_t i = 0; i < n; i++) {
        size_t at = (d->recent_next + WARDD_RECENT_MAX - 1 - i) % WARDD_RECENT_MAX;
        if (i > 0)
            WARD_TRY(ward_buf_putc(out, ','));
        WARD_TRY(ward_buf_puts(out, d->recent[at]));
    }
    WARD_TRY(ward_buf_putc(out, ']'));
fail:
    return rc;
}
