/* http_path.c - request path normalization: unreserved decoding, dot-segments, slashes, refusals */
#include "proxy/proxy.h"

#include <string.h>

static int path_refuse(proxy_http_error *err, int status, const char *reason)
{
    if (err != NULL) {
        err->status = status;
        err->reason = reason;
    }
    return status == 414 ? WARD_ELIMIT : WARD_EINVAL;
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* pchar without pct-encoded, plus '/': what may stand literally in a path. */
static bool is_path_char(unsigned char c)
{
    return is_unreserved(c) || (c != '\0' && strchr("!$&'()*+,;=:@/", c) != NULL);
}

/* A query may also hold '?' (RFC 3986 3.4). */
static bool is_query_char(unsigned char c)
{
    return is_path_char(c) || c == '?';
}

/* Checks the query: RFC 3986 characters and valid %XX; no controls. */
static int check_query(const char *q, size_t len, proxy_http_error *err)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)q[i];
        if (c == '%') {
            if (i + 2 >= len || hex_val((unsigned char)q[i + 1]) < 0 ||
                hex_val((unsigned char)q[i + 2]) < 0)
                return path_refuse(err, 400, "invalid percent-encoding in query");
            i += 2;
        } else if (!is_query_char(c)) {
            return path_refuse(err, 400,
                               c < 0x20 || c == 0x7f ? "control character in query"
                                                     : "invalid character in query");
        }
    }
    return 0;
}

/* Pass 1: validates path[0..len) and writes it to out with unreserved %XX
 * decoded and the hex of the others in uppercase. The output is never longer
 * than the input. */
static int decode(const char *path, size_t len, char *out, size_t *out_len, proxy_http_error *err)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c == '%') {
            int hi = i + 2 < len ? hex_val((unsigned char)path[i + 1]) : -1;
            int lo = i + 2 < len ? hex_val((unsigned char)path[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return path_refuse(err, 400, "invalid percent-encoding in path");
            unsigned char v = (unsigned char)(hi << 4 | lo);
            if (v == '/')
                return path_refuse(err, 400, "encoded slash (%2F) in path");
            if (v == '\\')
                return path_refuse(err, 400, "encoded backslash (%5C) in path");
            if (v == 0)
                return path_refuse(err, 400, "encoded NUL (%00) in path");
            if (v < 0x20 || v == 0x7f)
                return path_refuse(err, 400, "encoded control character in path");
            if (is_unreserved(v)) {
                out[w++] = (char)v;
            } else {
                out[w++] = '%';
                out[w++] = hex[v >> 4];
                out[w++] = hex[v & 15];
            }
            i += 2;
        } else if (c == '\\') {
            return path_refuse(err, 400, "backslash in path");
        } else if (c == 0) {
            return path_refuse(err, 400, "NUL in path");
        } else if (c < 0x20 || c == 0x7f) {
            return path_refuse(err, 400, "control character in path");
        } else if (!is_path_char(c)) {
            return path_refuse(err, 400, "invalid character in path");
        } else {
            out[w++] = (char)c;
        }
    }
    *out_len = w;
    return 0;
}

/* Pass 2, in place: merges slashes and removes dot-segments. b[0] is '/'.
 * Each segment is written at or before where it was read. */
static int resolve(char *b, size_t n, size_t *out_len, proxy_http_error *err)
{
    size_t w = 0; /* output: "" or "/seg/seg..." */
    bool trailing = false;
    size_t i = 1;
    for (;;) {
        const char *e = memchr(b + i, '/', n - i);
        size_t j = e != NULL ? (size_t)(e - b) : n;
        size_t sl = j - i;
        bool last = j == n;
        const char *seg = b + i;
        trailing = false;
        if (sl == 0 || (sl == 1 && seg[0] == '.')) {
            trailing = last;
        } else if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
            if (w == 0)
                return path_refuse(err, 400, "path climbs above the root");
            while (w > 0 && b[w - 1] != '/')
                w--;
            w--; /* the '/' before the popped segment */
            trailing = last;
        } else if ((sl >= 2 && seg[0] == '.' && seg[1] == ';') ||
                   (sl >= 3 && seg[0] == '.' && seg[1] == '.' && seg[2] == ';')) {
            return path_refuse(err, 400, "dot-segment with parameters in path");
        } else {
            b[w++] = '/';
            memmove(b + w, seg, sl);
            w += sl;
        }
        if (last)
            break;
        i = j + 1;
    }
    if (trailing || w == 0)
        b[w++] = '/';
    *out_len = w;
    return 0;
}

int proxy_http_path_normalize(const char *target, size_t len, char *out, size_t out_size,
                              size_t *out_len, proxy_slice *query, proxy_http_error *err)
{
    if (target == NULL && len != 0)
        return path_refuse(err, 400, "no path");
    const char *q = len ? memchr(target, '?', len) : NULL;
    size_t plen = q != NULL ? (size_t)(q - target) : len;
    if (query != NULL) {
        query->ptr = q != NULL ? q + 1 : NULL;
        query->len = q != NULL ? len - plen - 1 : 0;
    }
    if (plen == 0 || target[0] != '/')
        return path_refuse(err, 400, "path does not start with '/'");
    if (plen > PROXY_HTTP_PATH_MAX)
        return path_refuse(err, 414, "path too long");
    if (out == NULL || out_size <= plen)
        return path_refuse(err, 500, "path output buffer too small");
    if (q != NULL) {
        int rc = check_query(q + 1, len - plen - 1, err);
        if (rc < 0)
            return rc;
    }
    size_t n;
    int rc = decode(target, plen, out, &n, err);
    if (rc < 0)
        return rc;
    rc = resolve(out, n, &n, err);
    if (rc < 0)
        return rc;
    out[n] = '\0';
    *out_len = n;
    return 0;
}
