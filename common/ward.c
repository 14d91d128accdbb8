/* ward.c - error codes, error messages, growable buffers, diagnostics, file reading */
#include "common/ward.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *ward_strerror(int code)
{
    switch (code) {
    case WARD_OK: return "ok";
    case WARD_ENOMEM: return "out of memory";
    case WARD_EINVAL: return "invalid input";
    case WARD_EIO: return "I/O error";
    case WARD_ELIMIT: return "limit exceeded";
    case WARD_ESYNTAX: return "syntax error";
    case WARD_ELUA: return "Lua error";
    case WARD_EBUDGET: return "Lua budget exceeded";
    case WARD_ENOENT: return "not found";
    case WARD_ERANGE: return "out of range";
    case WARD_EPOLICY: return "invalid policy";
    case WARD_ERESULT: return "malformed engine result";
    default: return "unknown error";
    }
}

void ward_err_set(ward_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

void ward_err_clear(ward_err *err)
{
    if (err != NULL)
        err->msg[0] = '\0';
}

/* ---- buffers ---- */

void ward_buf_init(ward_buf *b)
{
    b->ptr = NULL;
    b->len = 0;
    b->cap = 0;
}

void ward_buf_dispose(ward_buf *b)
{
    free(b->ptr);
    ward_buf_init(b);
}

void ward_buf_reset(ward_buf *b)
{
    b->len = 0;
    if (b->ptr != NULL)
        b->ptr[0] = '\0';
}

static int buf_reserve(ward_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return WARD_ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->ptr, cap);
    if (p == NULL)
        return WARD_ENOMEM;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int ward_buf_reserve(ward_buf *b, size_t extra)
{
    return buf_reserve(b, extra);
}

int ward_buf_append(ward_buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len) < 0)
        return WARD_ENOMEM;
    if (len > 0)
        memcpy(b->ptr + b->len, data, len);
    b->len += len;
    b->ptr[b->len] = '\0';
    return 0;
}

int ward_buf_puts(ward_buf *b, const char *s)
{
    return ward_buf_append(b, s, strlen(s));
}

int ward_buf_putc(ward_buf *b, char c)
{
    return ward_buf_append(b, &c, 1);
}

int ward_buf_printf(ward_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf_reserve(b, (size_t)n) < 0)
        return WARD_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *ward_buf_steal(ward_buf *b)
{
    char *p = b->ptr;
    if (p == NULL)
        p = calloc(1, 1);
    ward_buf_init(b);
    return p;
}

/* ---- diagnostics ---- */

void ward_diag_init(ward_diag *d)
{
    memset(d, 0, sizeof(*d));
}

void ward_diag_dispose(ward_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    ward_diag_init(d);
}

int ward_diag_add(ward_diag *d, const char *file, int line, int col, const char *fmt, ...)
{
    size_t max = d->max ? d->max : 100;
    if (d->n >= max)
        return WARD_EPOLICY;
    ward_buf b;
    ward_buf_init(&b);
    if (file != NULL && line > 0 && col > 0)
        ward_buf_printf(&b, "%s:%d:%d: ", file, line, col);
    else if (file != NULL && line > 0)
        ward_buf_printf(&b, "%s:%d: ", file, line);
    else if (file != NULL)
        ward_buf_printf(&b, "%s: ", file);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n >= 0 && buf_reserve(&b, (size_t)n) == 0) {
        va_start(ap, fmt);
        vsnprintf(b.ptr + b.len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b.len += (size_t)n;
    }
    if (b.ptr == NULL)
        return WARD_EPOLICY;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        char **m = realloc(d->msgs, cap * sizeof(*m));
        if (m == NULL) {
            ward_buf_dispose(&b);
            return WARD_EPOLICY;
        }
        d->msgs = m;
        d->cap = cap;
    }
    d->msgs[d->n++] = ward_buf_steal(&b);
    return WARD_EPOLICY;
}

/* ---- files ---- */

int ward_file_read(const char *path, size_t max_len, char **out, size_t *out_len, ward_err *err)
{
    int rc = 0;
    char *data = NULL;
    size_t len = 0;
    if (max_len == 0)
        max_len = (size_t)64 << 20;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ward_err_set(err, "%s: %s", path, strerror(errno));
        return WARD_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ward_err_set(err, "%s: not a regular file", path);
        rc = WARD_EIO;
        goto fail;
    }
    if ((uint64_t)st.st_size > max_len) {
        ward_err_set(err, "%s: larger than %zu bytes", path, max_len);
        rc = WARD_ELIMIT;
        goto fail;
    }
    size_t cap = (size_t)st.st_size + 1;
    data = malloc(cap);
    if (data == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    for (;;) {
        if (len + 1 == cap) {
            /* Buffer full: normally EOF. Probe one byte so a file of exactly
             * max_len bytes is accepted; more data means it grew (or st_size
             * was 0, as in /proc) and the buffer must grow, up to max_len. */
            char probe;
            ssize_t n = read(fd, &probe, 1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                ward_err_set(err, "%s: %s", path, strerror(errno));
                rc = WARD_EIO;
                goto fail;
            }
            if (n == 0)
                break;
            if (len >= max_len) {
                ward_err_set(err, "%s: larger than %zu bytes", path, max_len);
                rc = WARD_ELIMIT;
                goto fail;
            }
            size_t ncap = cap > max_len / 2 ? max_len + 1 : cap * 2;
            char *p = realloc(data, ncap);
            if (p == NULL) {
                rc = WARD_ENOMEM;
                goto fail;
            }
            data = p;
            cap = ncap;
            data[len++] = probe;
            continue;
        }
        ssize_t n = read(fd, data + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ward_err_set(err, "%s: %s", path, strerror(errno));
            rc = WARD_EIO;
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    data[len] = '\0';
    close(fd);
    *out = data;
    *out_len = len;
    return 0;
fail:
    free(data);
    close(fd);
    return rc;
}

int ward_dir_fsync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int ward_file_write_atomic(const char *dir, const char *name, const void *data, size_t len,
                           unsigned mode, ward_err *err)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    int n1 = snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name);
    int n2 = snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof(tmp) || (size_t)n2 >= sizeof(path)) {
        ward_err_set(err, "%s/%s: path too long", dir, name);
        return WARD_EINVAL;
    }
    int fd = mkostemp(tmp, O_CLOEXEC); /* created 0600 */
    if (fd < 0) {
        ward_err_set(err, "%s: %s", tmp, strerror(errno));
        return WARD_EIO;
    }
    const char *p = data;
    size_t left = len;
    if (fchmod(fd, (mode_t)mode) != 0)
        goto fail;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            goto fail;
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail;
    if (ward_dir_fsync(dir) != 0) {
        ward_err_set(err, "%s: fsync: %s", dir, strerror(errno));
        return WARD_EIO;
    }
    return 0;
fail:
    ward_err_set(err, "%s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return WARD_EIO;
}

/* ---- numbers ---- */

int ward_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0)
        return WARD_EINVAL;
    for (size_t i = 0; i < len; i++) /* not a number at all beats too big */
        if (s[i] < '0' || s[i] > '9')
            return WARD_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return WARD_ERANGE;
        v = v * 10 + d;
    }
    if (v > max)
        return WARD_ERANGE;
    *out = v;
    return 0;
}

int ward_parse_duration(const char *s, size_t len, uint64_t max_ns, uint64_t *out_ns)
{
    static const struct {
        const char *unit;
        uint64_t ns;
    } units[] = {
        {"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", 1000000000ULL},
        {"m", 60000000000ULL}, {"h", 3600000000000ULL},
    };
    if (len == 0)
        return WARD_EINVAL;
    uint64_t total = 0;
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        uint64_t n;
        int rc = ward_parse_u64(s + start, i - start, UINT64_MAX, &n);
        if (rc < 0)
            return rc;
        size_t ustart = i;
        while (i < len && s[i] >= 'a' && s[i] <= 'z')
            i++;
        size_t ulen = i - ustart;
        uint64_t mult = 0;
        for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++)
            if (strlen(units[u].unit) == ulen && memcmp(units[u].unit, s + ustart, ulen) == 0)
                mult = units[u].ns;
        if (mult == 0)
            return WARD_EINVAL; /* a missing or unknown unit */
        if (n > (UINT64_MAX - total) / mult)
            return WARD_ERANGE;
        total += n * mult;
    }
    if (total > max_ns)
        return WARD_ERANGE;
    *out_ns = total;
    return 0;
}
