/* file.c - the audit folder and its files: created private, never through a symbolic link */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit_int.h"

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

int audit_dir_make(const char *dir, ward_err *err)
{
    return make_dir(dir, err);
}

int audit_file_open(const char *dir, const char *name, int flags, bool narrow, int *fd_out,
                    ward_err *err)
{
    char path[4096];
    struct stat st;
    int rc = 0;
    *fd_out = -1;
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
        ward_err_set(err, "audit dir %s: path too long", dir);
        return WARD_EINVAL;
    }
    int fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        int e = errno;
        ward_err_set(err, "%s: %s", path,
                     e == ELOOP ? "is a symbolic link; refusing to follow it" : strerror(e));
        return e == ENOENT ? WARD_ENOENT : WARD_EIO;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        ward_err_set(err, "%s: not a regular file", path);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (narrow && (st.st_mode & 077) != 0 && fchmod(fd, st.st_mode & 0700) < 0) {
        ward_err_set(err, "%s: narrowing its mode to 0600: %s", path, strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    *fd_out = fd;
    return 0;
fail:
    close(fd);
    return rc;
}
