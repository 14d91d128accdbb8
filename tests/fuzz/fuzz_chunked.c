/* fuzz_chunked.c - libFuzzer target: the chunked decoder fed whole and in pieces must agree */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct verdict {
    int rc;
    int status;
    size_t used;
    ward_buf body;
    uint64_t total;
} verdict;

/* Feeds data[0..size) in steps of the given lengths (cycled); 0 = all at once. */
static void run(const char *data, size_t size, const uint8_t *steps, size_t n_steps,
                const proxy_chunked_limits *lim, verdict *v)
{
    proxy_chunked_decoder d;
    proxy_chunked_init(&d, lim);
    ward_buf_init(&v->body);
    size_t have = 0, off = 0, k = 0;
    int rc = PROXY_CHUNKED_MORE;
    proxy_http_error err = {0, NULL};
    while (have < size && rc >= 0 && rc != PROXY_CHUNKED_DONE) {
        size_t step = n_steps ? (size_t)steps[k++ % n_steps] % 17 + 1 : size;
        have = have + step > size ? size : have + step;
        while (off < have) {
            size_t n = 0;
            proxy_slice s;
            rc = proxy_chunked_decode(&d, data + off, have - off, &n, &s, &err);
            if (rc < 0)
                break;
            if (n > have - off)
                abort();
            off += n;
            if (rc == PROXY_CHUNKED_DONE)
                break;
            if (rc == PROXY_CHUNKED_DATA) {
                /* a non-empty slice of the input just consumed */
                if (s.len == 0 || s.ptr != data + off - s.len)
                    abort();
                if (ward_buf_append(&v->body, s.ptr, s.len) != 0)
                    abort();
            } else if (off != have) {
                abort(); /* MORE consumes everything */
            }
        }
    }
    v->rc = rc;
    v->status = rc < 0 ? err.status : 0;
    if (rc < 0 && (err.reason == NULL || (err.status != 400 && err.status != 413)))
        abort();
    v->used = off;
    v->total = proxy_chunked_total(&d);
    if (v->total < v->body.len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* byte 0: the step pattern; byte 1: a small body bound or none */
    if (size < 2)
        return 0;
    const uint8_t steps[4] = {data[0], (uint8_t)(data[0] >> 2), (uint8_t)(data[0] * 7), 1};
    proxy_chunked_limits lim = {0, 0, 0, 0};
    if (data[1] & 1)
        lim.body_max = data[1];
    if (data[1] & 2)
        lim.ext_max = (size_t)(data[1] >> 2) + 1;
    const char *in = (const char *)data + 2;
    size -= 2;
    verdict whole, split;
    run(in, size, NULL, 0, &lim, &whole);
    run(in, size, steps, 4, &lim, &split);
    bool same_bytes =
        whole.body.len == split.body.len &&
        (whole.body.len == 0 || memcmp(whole.body.ptr, split.body.ptr, whole.body.len) == 0);
    if (whole.rc != split.rc || whole.status != split.status || !same_bytes ||
        whole.total != split.total ||
        (whole.rc == PROXY_CHUNKED_DONE && whole.used != split.used)) {
        fprintf(stderr,
                "fuzz_chunked: whole rc %d status %d body %zu used %zu, split rc %d status %d body "
                "%zu used %zu\n",
                whole.rc, whole.status, whole.body.len, whole.used, split.rc, split.status,
                split.body.len, split.used);
        abort();
    }
    /* a finished body re-encodes and decodes to the same bytes */
    if (whole.rc == PROXY_CHUNKED_DONE) {
        ward_buf enc;
        ward_buf_init(&enc);
        if (proxy_chunked_encode(&enc, whole.body.ptr, whole.body.len) != 0 ||
            proxy_chunked_encode_last(&enc) != 0)
            abort();
        verdict again;
        proxy_chunked_limits none = {UINT64_MAX, 0, 0, 0};
        run(enc.ptr, enc.len, NULL, 0, &none, &again);
        if (again.rc != PROXY_CHUNKED_DONE || again.used != enc.len ||
            again.body.len != whole.body.len ||
            (whole.body.len && memcmp(again.body.ptr, whole.body.ptr, whole.body.len) != 0))
            abort();
        ward_buf_dispose(&again.body);
        ward_buf_dispose(&enc);
    }
    ward_buf_dispose(&whole.body);
    ward_buf_dispose(&split.body);
    return 0;
}
