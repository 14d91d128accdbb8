/* file.c - the audit folder and file: created private, locked, continued after the last complete record */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "audit/audit_int.h"

#define TAIL_WINDOW (64 * 1024) /* how far back open looks for the last record */

/* dir exists as a writable folder afterwards (created 0700 with its parents). */
static int make_dir(const char *dir, ward_err *err)
{
    struct stat st;
    if (stat(dir, &st) < 0) {
        if (errno != ENOENT) {
            ward_err_set(err, "audit dir %s: %s", dir, strerror(errno));
            return WARD_EIO;
        }
        char *tmp = strdup(dir);
        if (tmp == NULL)
            return WARD_ENOMEM;
        for (char *p = tmp + 1;; p++) {
            if (*p != '/' && *p != '\0')
                continue;
            char c = *p;
            *p = '\0';
            if (mkdir(tmp, 0700) < 0 && errno != EEXIST) {
                ward_err_set(err, "audit dir %s: cannot create %s: %s", dir, tmp, strerror(errno));
                free(tmp);
                return WARD_EIO;
            }
            *p = c;
            if (c == '\0')
                break;
        }
        free(tmp);
        if (stat(dir, &st) < 0) {
            ward_err_set(err, "audit dir %s: %s", dir, strerror(errno));
            return WARD_EIO;
        }
    }
    if (!S_ISDIR(st.st_mode)) {
        ward_err_set(err, "audit dir %s: exists and is not a folder", dir);
        return WARD_EINVAL;
    }
    if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) < 0) {
        ward_err_set(err, "audit dir %s: not writable by this process (uid %u): %s", dir,
                     (unsigned)geteuid(), strerror(errno));
        return WARD_EIO;
    }
    return 0;
}

/* seq goes on after the file's last complete record; a torn last line is cut off. */
static int resume_file(int fd, const char *path, off_t size, uint64_t *seq_out, ward_err *err)
{
    int rc = 0;
    char *buf = NULL;
    cJSON *json = NULL;
    *seq_out = 1;
    if (size == 0)
        return 0;
    size_t win = size < TAIL_WINDOW ? (size_t)size : TAIL_WINDOW, got = 0;
    off_t base = size - (off_t)win;
    if ((buf = malloc(win + 1)) == NULL)
        return WARD_ENOMEM;
    while (got < win) {
        ssize_t r = pread(fd, buf + got, win - got, base + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ward_err_set(err, "%s: read: %s", path, r < 0 ? strerror(errno) : "file shrank");
            rc = WARD_EIO;
            goto out;
        }
        got += (size_t)r;
    }
    size_t end = win;
    if (buf[end - 1] != '\n') {
        const char *nl = memrchr(buf, '\n', end);
        if (nl == NULL && base > 0)
            goto too_long;
        end = nl != NULL ? (size_t)(nl - buf) + 1 : 0;
        if (ftruncate(fd, base + (off_t)end) < 0) {
            ward_err_set(err, "%s: cutting off a torn last line: %s", path, strerror(errno));
            rc = WARD_EIO;
            goto out;
        }
        if (end == 0)
            goto out; /* nothing but a torn line: the file starts afresh at seq 1 */
    }
    const char *prev = end >= 2 ? memrchr(buf, '\n', end - 1) : NULL;
    if (prev == NULL && base > 0)
        goto too_long;
    size_t start = prev != NULL ? (size_t)(prev - buf) + 1 : 0;
    json = cJSON_ParseWithLength(buf + start, end - 1 - start);
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(json, "seq");
    if (!cJSON_IsNumber(seq) || seq->valuedouble < 0 || seq->valuedouble > 9007199254740991.0 ||
        seq->valuedouble != (double)(uint64_t)seq->valuedouble) {
        ward_err_set(err, "%s: the last record has no valid \"seq\" (not written by ward?); "
                          "move the file aside to start a new one", path);
        rc = WARD_EINVAL;
        goto out;
    }
    *seq_out = (uint64_t)seq->valuedouble + 1;
    goto out; /* done */
too_long:
    ward_err_set(err, "%s: the last line is longer than %d bytes (not written by ward?); "
                      "move the file aside to start a new one", path, TAIL_WINDOW);
    rc = WARD_EINVAL;
out:
    cJSON_Delete(json);
    free(buf);
    return rc;
}

int audit_file_open(const char *dir, const char *path, int *fd_out, uint64_t *next_seq,
                    ward_err *err)
{
    struct stat st;
    int rc = make_dir(dir, err);
    if (rc < 0)
        return rc;
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        ward_err_set(err, "%s: %s", path,
                     errno == ELOOP ? "is a symbolic link; refusing to follow it" : strerror(errno));
        return WARD_EIO;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        ward_err_set(err, "%s: not a regular file", path);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        ward_err_set(err, "%s: %s", path,
                     errno == EWOULDBLOCK ? "another process is writing this audit log"
                                          : strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    if ((st.st_mode & 077) != 0 && fchmod(fd, 0600) < 0) {
        ward_err_set(err, "%s: narrowing its mode to 0600: %s", path, strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    WARD_TRY(resume_file(fd, path, st.st_size, next_seq, err));
    if (ward_dir_fsync(dir) < 0) {
        ward_err_set(err, "audit dir %s: fsync: %s", dir, strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    *fd_out = fd;
    return 0;
fail:
    close(fd);
    return rc;
}
