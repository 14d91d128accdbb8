/* fuzz_http.c - libFuzzer target: the HTTP/1.1 request-head parser, whole and in pieces, must agree */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct verdict {
    int rc;
    int status;
    size_t head_len;
    size_t n_headers;
    uint64_t content_length;
    int body_kind;
} verdict;

/* Feeds data[0..size) in steps of the given lengths (cycled); 0 = all at once. */
static verdict parse(const uint8_t *data, size_t size, const uint8_t *steps, size_t n_steps)
{
    proxy_http_parser *p;
    verdict v = {0};
    if (proxy_http_parser_new(NULL, &p) != 0)
        abort();
    proxy_http_request req;
    proxy_http_error err = {0};
    size_t have = 0, k = 0;
    do {
        size_t step = n_steps ? (size_t)steps[k++ % n_steps] % 17 + 1 : size;
        have = have + step > size ? size : have + step;
        v.rc = proxy_http_parser_feed(p, (const char *)data, have, &req, &err);
    } while (v.rc == 0 && have < size);
    if (v.rc == 1) {
        v.head_len = req.head_len;
        v.n_headers = req.n_headers;
        v.content_length = req.content_length;
        v.body_kind = (int)req.body_kind;
        /* the slices it returned lie inside the head */
        if (req.head_len > size || req.method.len == 0 ||
            (const uint8_t *)req.method.ptr < data ||
            (const uint8_t *)req.method.ptr + req.method.len > data + req.head_len)
            abort();
        for (size_t i = 0; i < req.n_headers; i++) {
            const proxy_header *h = &req.headers[i];
            if ((const uint8_t *)h->name.ptr < data ||
                (const uint8_t *)h->value.ptr + h->value.len > data + req.head_len)
                abort();
            /* no CR, LF or NUL ever reaches a field value */
            if (memchr(h->value.ptr, '\r', h->value.len) || memchr(h->value.ptr, '\n', h->value.len) ||
                memchr(h->value.ptr, '\0', h->value.len))
                abort();
        }
    } else if (v.rc < 0) {
        v.status = err.status;
        if (err.status < 400 || err.status > 599 || err.reason == NULL)
            abort();
    }
    proxy_http_parser_free(p);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the first byte picks a step pattern for the split run; the rest is the request */
    if (size < 2)
        return 0;
    const uint8_t steps[4] = {data[0], (uint8_t)(data[0] >> 2), (uint8_t)(data[0] * 7), 1};
    data++;
    size--;
    verdict whole = parse(data, size, NULL, 0);
    verdict split = parse(data, size, steps, 4);
    /* "need more" after all the bytes is the same verdict however they came */
    if (whole.rc != split.rc || whole.status != split.status || whole.head_len != split.head_len ||
        whole.n_headers != split.n_headers || whole.content_length != split.content_length ||
        whole.body_kind != split.body_kind) {
        fprintf(stderr, "fuzz_http: whole rc %d status %d head %zu, split rc %d status %d head %zu\n",
                whole.rc, whole.status, whole.head_len, split.rc, split.status, split.head_len);
        abort();
    }
    return 0;
}
