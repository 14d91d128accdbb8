/* recover.c - reopening a trail: lock it, cut a torn last line, re-check the last segment against
 * the last checkpoint */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit_int.h"

#define MAX_LINE (64 * 1024)   /* no record the writer renders comes near this */
#define CHUNK    (1024 * 1024) /* segments are re-read this much at a time */

static const char verify_hint[] =
    "a crash only ever tears the last line, so the trail was modified or damaged: check it "
    "with `wardctl audit verify`, and move the folder aside to start a new trail";

static int read_at(int fd, const char *path, char *buf, size_t len, off_t off, ward_err *err)
{
    for (size_t got = 0; got < len;) {
        ssize_t r = pread(fd, buf + got, len - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ward_err_set(err, "%s: read: %s", path, r < 0 ? strerror(errno) : "file shrank");
            return WARD_EIO;
        }
        got += (size_t)r;
    }
    return 0;
}

static int cut(int fd, const char *path, off_t at, ward_err *err)
{
    if (ftruncate(fd, at) < 0 || fdatasync(fd) < 0) {
        ward_err_set(err, "%s: cutting off a torn last line: %s", path, strerror(errno));
        return WARD_EIO;
    }
    return 0;
}

/* ---- checkpoints.jsonl ----------------------------------------------------------- */

/* {"v":1,"seq":N,"head":"<64 hex>",... as the writer puts it */
static int parse_checkpoint(const char *line, size_t len, uint64_t *seq,
                            uint8_t head[AUDIT_HASH_LEN])
{
    static const char pre[] = "{\"v\":1,\"seq\":", mid[] = ",\"head\":\"";
    size_t i = sizeof(pre) - 1;
    if (len < i || memcmp(line, pre, i) != 0)
        return WARD_EINVAL;
    char digits[24];
    size_t n = 0;
    while (i < len && line[i] >= '0' && line[i] <= '9' && n < 20)
        digits[n++] = line[i++];
    if (ward_parse_u64(digits, n, UINT64_MAX, seq) < 0 || *seq == 0 ||
        len < i + sizeof(mid) - 1 + AUDIT_HASH_HEX + 1 ||
        memcmp(line + i, mid, sizeof(mid) - 1) != 0)
        return WARD_EINVAL;
    i += sizeof(mid) - 1;
    if (audit_unhex(head, line + i, AUDIT_HASH_LEN) < 0 || line[i + AUDIT_HASH_HEX] != '"')
        return WARD_EINVAL;
    return 0;
}

/* The last checkpoint (seq 0 if none); a torn last line is cut off. */
static int last_checkpoint(int fd, const char *path, uint64_t *seq, uint8_t head[AUDIT_HASH_LEN],
                           ward_err *err)
{
    struct stat st;
    int rc = 0;
    char *buf = NULL;
    *seq = 0;
    if (fstat(fd, &st) < 0) {
        ward_err_set(err, "%s: %s", path, strerror(errno));
        return WARD_EIO;
    }
    if (st.st_size == 0)
        return 0;
    size_t win = st.st_size < MAX_LINE ? (size_t)st.st_size : MAX_LINE;
    off_t base = st.st_size - (off_t)win;
    if ((buf = malloc(win)) == NULL)
        return WARD_ENOMEM;
    WARD_TRY(read_at(fd, path, buf, win, base, err));
    size_t end = win;
    if (buf[end - 1] != '\n') {
        const char *nl = memrchr(buf, '\n', end);
        if (nl == NULL && base > 0)
            goto bad;
        end = nl != NULL ? (size_t)(nl - buf) + 1 : 0;
        WARD_TRY(cut(fd, path, base + (off_t)end, err));
        if (end == 0)
            goto fail; /* nothing but a torn line */
    }
    const char *prev = end >= 2 ? memrchr(buf, '\n', end - 1) : NULL;
    if (prev == NULL && base > 0)
        goto bad;
    size_t start = prev != NULL ? (size_t)(prev - buf) + 1 : 0;
    if (parse_checkpoint(buf + start, end - 1 - start, seq, head) < 0)
        goto bad;
    goto fail; /* done */
bad:
    ward_err_set(err, "%s: the last line is not a checkpoint written by ward; %s", path,
                 verify_hint);
    rc = WARD_EINVAL;
fail:
    free(buf);
    return rc;
}

/* ---- segments ------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The first seqs of the segments in dir, sorted. */
static int list_segments(const char *dir, uint64_t **out, size_t *n, ward_err *err)
{
    DIR *d = opendir(dir);
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    if (d == NULL) {
        ward_err_set(err, "audit dir %s: %s", dir, strerror(errno));
        return WARD_EIO;
    }
    struct dirent *e;
    while ((errno = 0, e = readdir(d)) != NULL) {
        uint64_t seq;
        if (audit_segment_name_parse(e->d_name, &seq) < 0)
            continue; /* not a segment: left alone */
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            uint64_t *v = realloc(*out, cap * sizeof(*v));
            if (v == NULL) {
                closedir(d);
                free(*out);
                *out = NULL;
                return WARD_ENOMEM;
            }
            *out = v;
        }
        (*out)[(*n)++] = seq;
    }
    int e_read = errno;
    closedir(d);
    if (e_read != 0) {
        ward_err_set(err, "audit dir %s: %s", dir, strerror(e_read));
        free(*out);
        *out = NULL;
        return WARD_EIO;
    }
    if (*n > 1)
        qsort(*out, *n, sizeof(**out), cmp_u64);
    return 0;
}

/* The last record of a sealed segment (its seq and hash). */
static int segment_tail(const char *dir, const char *name, uint64_t *seq,
                        uint8_t hash[AUDIT_HASH_LEN], ward_err *err)
{
    struct stat st;
    char *buf = NULL;
    int fd, rc = 0;
    uint8_t prev[AUDIT_HASH_LEN];
    WARD_TRY(audit_file_open(dir, name, O_RDONLY, false, &fd, err));
    if (fstat(fd, &st) < 0 || st.st_size == 0) {
        ward_err_set(err, "%s/%s: empty, yet a later segment exists; %s", dir, name, verify_hint);
        rc = WARD_EINVAL;
        goto fail;
    }
    size_t win = st.st_size < MAX_LINE ? (size_t)st.st_size : MAX_LINE;
    if ((buf = malloc(win)) == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    WARD_TRY(read_at(fd, path, buf, win, st.st_size - (off_t)win, err));
    const char *nl = win >= 2 ? memrchr(buf, '\n', win - 1) : NULL;
    size_t start = nl != NULL ? (size_t)(nl - buf) + 1 : 0;
    if (buf[win - 1] != '\n' || (nl == NULL && (off_t)win < st.st_size) ||
        audit_line_check(buf + start, win - 1 - start, 0, NULL, seq, prev, hash) != AUDIT_LINE_OK) {
        ward_err_set(err,
                     "%s: its last line is not an intact record, yet a later segment "
                     "exists; %s",
                     path, verify_hint);
        rc = WARD_EINVAL;
    }
fail:
    free(buf);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* What re-reading the active segment found. */
typedef struct scan {
    /* in */
    uint64_t want_seq;        /* of the first line */
    const uint8_t *want_prev; /* of the first line; NULL: unknown (older segments gone) */
    uint64_t cp_seq;          /* remember the hash of this record */
    /* out */
    uint64_t records, last_seq;
    uint8_t last_hash[AUDIT_HASH_LEN];
    bool cp_seen;
    uint8_t cp_hash[AUDIT_HASH_LEN];
    off_t good_end; /* bytes of intact records */
} scan;

/* Checks every line of the segment; a bad line that is not the last one is
 * refused, a bad or incomplete last line is left after good_end. */
static int scan_segment(int fd, const char *path, off_t size, scan *s, ward_err *err)
{
    char *buf = malloc(CHUNK + MAX_LINE);
    size_t have = 0;
    off_t base = 0; /* file offset of buf[0] */
    uint64_t line_no = 0;
    uint8_t prev_hash[AUDIT_HASH_LEN];
    int rc = 0;
    if (buf == NULL)
        return WARD_ENOMEM;
    s->records = 0;
    s->good_end = 0;
    s->cp_seen = false;
    while (base + (off_t)have < size) {
        size_t want = CHUNK + MAX_LINE - have;
        if ((off_t)want > size - base - (off_t)have)
            want = (size_t)(size - base - (off_t)have);
        WARD_TRY(read_at(fd, path, buf + have, want, base + (off_t)have, err));
        have += want;
        size_t pos = 0;
        for (;;) {
            const char *nl = memchr(buf + pos, '\n', have - pos);
            if (nl == NULL)
                break;
            size_t len = (size_t)(nl - buf) - pos;
            line_no++;
            uint64_t seq;
            uint8_t prev[AUDIT_HASH_LEN], hash[AUDIT_HASH_LEN];
            audit_line_fault f =
                audit_line_check(buf + pos, len, s->want_seq + s->records,
                                 s->records > 0 ? prev_hash : s->want_prev, &seq, prev, hash);
            if (f != AUDIT_LINE_OK) {
                if (base + (off_t)(pos + len + 1) == size)
                    goto done; /* the last line: torn */
                ward_err_set(err, "%s:%" PRIu64 ": %s; %s", path, line_no, audit_line_fault_name(f),
                             verify_hint);
                rc = WARD_EINVAL;
                goto fail;
            }
            if (seq == s->cp_seq) {
                s->cp_seen = true;
                memcpy(s->cp_hash, hash, AUDIT_HASH_LEN);
            }
            memcpy(prev_hash, hash, AUDIT_HASH_LEN);
            s->records++;
            s->last_seq = seq;
            pos += len + 1;
            s->good_end = base + (off_t)pos;
        }
        if (have - pos > MAX_LINE) {
            if (base + (off_t)have == size)
                goto done; /* a torn last line, long as it is */
            ward_err_set(err,
                         "%s:%" PRIu64 ": a line longer than %d bytes: not a record "
                         "written by ward; %s",
                         path, line_no + 1, MAX_LINE, verify_hint);
            rc = WARD_EINVAL;
            goto fail;
        }
        memmove(buf, buf + pos, have - pos);
        have -= pos;
        base += (off_t)pos;
    }
done:
    if (s->records > 0)
        memcpy(s->last_hash, prev_hash, AUDIT_HASH_LEN);
fail:
    free(buf);
    return rc;
}

/* When the file system records it, the file's birth time; otherwise now. */
static int64_t born_ns(int fd)
{
    struct statx sx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_BTIME, &sx) == 0 && (sx.stx_mask & STATX_BTIME))
        return (int64_t)sx.stx_btime.tv_sec * 1000000000 + sx.stx_btime.tv_nsec;
    return audit_now_ns();
}

/* ---- open ------------------------------------------------------------------------------- */

int audit_trail_open(const char *dir, audit_resume *r, ward_err *err)
{
    static const uint8_t zeros[AUDIT_HASH_LEN];
    char path[4096], name[AUDIT_SEGMENT_NAME_MAX], prev_name[AUDIT_SEGMENT_NAME_MAX];
    uint64_t *segs = NULL, cp_seq = 0, prev_last = 0;
    uint8_t cp_head[AUDIT_HASH_LEN], prev_hash[AUDIT_HASH_LEN];
    size_t n = 0;
    int fd = -1, rc = 0;
    struct stat st;

    memset(r, 0, sizeof(*r));
    r->cp_fd = r->seg_fd = -1;
    r->next_seq = 1;
    WARD_TRY(audit_dir_make(dir, err));
    WARD_TRY(audit_file_open(dir, AUDIT_CHECKPOINTS_FILE, O_RDWR | O_APPEND | O_CREAT, true,
                             &r->cp_fd, err));
    snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_CHECKPOINTS_FILE);
    if (flock(r->cp_fd, LOCK_EX | LOCK_NB) < 0) {
        ward_err_set(err, "%s: %s", path,
                     errno == EWOULDBLOCK ? "another process is writing this audit log"
                                          : strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    WARD_TRY(last_checkpoint(r->cp_fd, path, &cp_seq, cp_head, err));
    r->cp_seq = cp_seq;
    WARD_TRY(list_segments(dir, &segs, &n, err));
    if (n == 0) {
        if (cp_seq > 0) {
            ward_err_set(err,
                         "audit dir %s: no segment, yet %s vouches for %" PRIu64
                         " record(s): the trail was truncated below its last checkpoint; %s",
                         dir, AUDIT_CHECKPOINTS_FILE, cp_seq, verify_hint);
            rc = WARD_EINVAL;
            goto fail;
        }
        goto done; /* a new trail */
    }

    /* the segment before the last: where the chain comes from */
    uint64_t first = segs[n - 1];
    const uint8_t *want_prev = first == 1 ? zeros : NULL;
    audit_segment_name(name, first);
    if (n > 1) {
        audit_segment_name(prev_name, segs[n - 2]);
        WARD_TRY(segment_tail(dir, prev_name, &prev_last, prev_hash, err));
        if (prev_last + 1 != first) {
            ward_err_set(
                err, "audit dir %s: %s ends at seq %" PRIu64 " but %s starts at %" PRIu64 "; %s",
                dir, prev_name, prev_last, name, first, verify_hint);
            rc = WARD_EINVAL;
            goto fail;
        }
        want_prev = prev_hash;
    } else if (cp_seq == first - 1 && first > 1) {
        want_prev = cp_head; /* older segments archived: the checkpoint gives the link */
    }

    /* the last segment: read-only when sealed, else the active one, continued */
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    WARD_TRY(audit_file_open(dir, name, O_RDONLY, false, &fd, err));
    if (fstat(fd, &st) < 0) {
        ward_err_set(err, "%s: %s", path, strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    bool sealed = (st.st_mode & 0200) == 0;
    if (!sealed) {
        close(fd);
        fd = -1;
        WARD_TRY(audit_file_open(dir, name, O_RDWR | O_APPEND, true, &fd, err));
        if (fstat(fd, &st) < 0) {
            ward_err_set(err, "%s: %s", path, strerror(errno));
            rc = WARD_EIO;
            goto fail;
        }
    }
    scan s = {.want_seq = first, .want_prev = want_prev, .cp_seq = cp_seq};
    WARD_TRY(scan_segment(fd, path, st.st_size, &s, err));
    uint64_t last = s.records > 0 ? s.last_seq : first - 1;
    if (cp_seq > last) {
        ward_err_set(err,
                     "%s: the last checkpoint vouches for seq %" PRIu64 " but the trail "
                     "ends at seq %" PRIu64 " (%s): truncated below its last checkpoint; %s",
                     AUDIT_CHECKPOINTS_FILE, cp_seq, last, name, verify_hint);
        rc = WARD_EINVAL;
        goto fail;
    }
    if ((s.cp_seen && memcmp(s.cp_hash, cp_head, AUDIT_HASH_LEN) != 0) ||
        (n > 1 && cp_seq == prev_last && memcmp(prev_hash, cp_head, AUDIT_HASH_LEN) != 0)) {
        ward_err_set(err,
                     "%s: the last checkpoint's head is not the hash of record %" PRIu64 "; %s",
                     AUDIT_CHECKPOINTS_FILE, cp_seq, verify_hint);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (s.records == 0 && want_prev == NULL) {
        ward_err_set(err,
                     "%s: empty, and neither an older segment nor a checkpoint gives the "
                     "hash of record %" PRIu64 ": the chain cannot be continued",
                     path, first - 1);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (s.good_end < st.st_size) {
        if (sealed) {
            ward_err_set(err, "%s: sealed, yet its last line is not an intact record; %s", path,
                         verify_hint);
            rc = WARD_EINVAL;
            goto fail;
        }
        WARD_TRY(cut(fd, path, s.good_end, err));
        r->torn_bytes = (uint64_t)(st.st_size - s.good_end);
    }

    r->next_seq = last + 1;
    memcpy(r->head, s.records > 0 ? s.last_hash : want_prev, AUDIT_HASH_LEN);
    if (s.records > 0)
        memcpy(r->head_segment, name, sizeof(name));
    else if (n > 1)
        memcpy(r->head_segment, prev_name, sizeof(prev_name));
    if (!sealed) {
        r->seg_fd = fd;
        fd = -1;
        r->seg_first = first;
        r->seg_bytes = (uint64_t)s.good_end;
        r->seg_records = s.records;
        r->seg_born_ns = born_ns(r->seg_fd);
    }
done:
    if (ward_dir_fsync(dir) < 0) {
        ward_err_set(err, "audit dir %s: fsync: %s", dir, strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    free(segs);
    return 0;
fail:
    free(segs);
    if (fd >= 0)
        close(fd);
    if (r->seg_fd >= 0)
        close(r->seg_fd);
    if (r->cp_fd >= 0)
        close(r->cp_fd);
    r->seg_fd = r->cp_fd = -1;
    return rc;
}
