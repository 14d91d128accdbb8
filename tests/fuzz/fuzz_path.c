/* fuzz_path.c - libFuzzer target: normalized paths are idempotent and free of forbidden shapes */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what, const char *in, size_t len)
{
    if (!ok) {
        fprintf(stderr, "fuzz_path: %s for \"%.*s\"\n", what, (int)len, in);
        abort();
    }
}

static bool has(const char *s, size_t len, const char *needle)
{
    return memmem(s, len, needle, strlen(needle)) != NULL;
}

static bool has_nocase(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(s + i, needle, n) == 0)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char *out = malloc(size + 1);
    char *again = malloc(size + 1);
    if (out == NULL || again == NULL)
        abort();
    size_t n = 0, m = 0;
    proxy_slice q = {NULL, 0};
    proxy_http_error err = {0, NULL};
    int rc = proxy_http_path_normalize(in, size, out, size + 1, &n, &q, &err);
    if (rc < 0) {
        check(err.reason != NULL && (err.status == 400 || err.status == 414), "bad error", in,
              size);
        check(rc == WARD_EINVAL || rc == WARD_ELIMIT, "bad rc", in, size);
    } else {
        check(rc == 0, "bad rc", in, size);
        check(n >= 1 && n <= size && out[0] == '/' && out[n] == '\0', "bad shape", in, size);
        check(n <= PROXY_HTTP_PATH_MAX, "too long", in, size);
        check(!has(out, n, "//"), "\"//\" in output", in, size);
        check(!has(out, n, "/./"), "\"/./\" in output", in, size);
        check(!has(out, n, "/../"), "\"/../\" in output", in, size);
        check(!(n >= 3 && memcmp(out + n - 3, "/..", 3) == 0), "ends with \"/..\"", in, size);
        check(!(n >= 2 && memcmp(out + n - 2, "/.", 2) == 0), "ends with \"/.\"", in, size);
        check(memchr(out, '\\', n) == NULL && memchr(out, '\0', n) == NULL &&
                  memchr(out, '?', n) == NULL,
              "backslash, NUL or '?' in output", in, size);
        check(!has_nocase(out, n, "%2F") && !has_nocase(out, n, "%5C") &&
                  !has_nocase(out, n, "%00") && !has_nocase(out, n, "%2E"),
              "forbidden encoding in output", in, size);
        for (size_t i = 0; i < n; i++)
            check((unsigned char)out[i] > 0x20 && (unsigned char)out[i] < 0x7f,
                  "control or non-ASCII byte in output", in, size);
        /* idempotent */
        int rc2 = proxy_http_path_normalize(out, n, again, size + 1, &m, NULL, NULL);
        check(rc2 == 0 && m == n && memcmp(again, out, n) == 0, "not idempotent", in, size);
        /* the query is a slice of the input after the first '?' */
        const char *qm = memchr(in, '?', size);
        check(qm == NULL ? q.ptr == NULL
                         : (q.ptr == qm + 1 && q.len == size - (size_t)(qm - in) - 1),
              "bad query slice", in, size);
    }
    free(out);
    free(again);
    return 0;
}
