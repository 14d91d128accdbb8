/* test_http_parse.c - unit tests of the HTTP/1.1 request parser, responses, addresses */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static bool slice_is(proxy_slice s, const char *want)
{
    return s.ptr != NULL && s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

/* The parser of the last parse(): req->headers lives in it until the next. */
static proxy_http_parser *last;

static int free_last(void **state)
{
    proxy_http_parser_free(last);
    last = NULL;
    return 0;
}

/* Feeds the whole buffer at once. */
static int parse_lim(const char *buf, size_t len, const proxy_http_limits *lim,
                     proxy_http_request *req, proxy_http_error *err)
{
    free_last(NULL);
    assert_int_equal(proxy_http_parser_new(lim, &last), 0);
    return proxy_http_parser_feed(last, buf, len, req, err);
}

static int parse(const char *buf, size_t len, proxy_http_request *req, proxy_http_error *err)
{
    return parse_lim(buf, len, NULL, req, err);
}

/* Refused with this status, whether fed at once or byte by byte. */
static void expect_status(const char *buf, size_t len, const proxy_http_limits *lim, int status)
{
    proxy_http_request req;
    proxy_http_error err = {0, NULL};
    int rc = parse_lim(buf, len, lim, &req, &err);
    if (rc >= 0 || err.status != status)
        fail_msg("expected %d, got rc %d status %d (%s) for \"%.60s\"", status, rc, err.status,
                 err.reason ? err.reason : "-", buf);
    assert_non_null(err.reason);

    proxy_http_parser *p;
    assert_int_equal(proxy_http_parser_new(lim, &p), 0);
    rc = 0;
    for (size_t i = 1; i <= len && rc == 0; i++)
        rc = proxy_http_parser_feed(p, buf, i, &req, &err);
    proxy_http_parser_free(p);
    assert_true(rc < 0);
    assert_int_equal(err.status, status);
}

/* Refused with status 400 for this reason. */
static void expect_reason(const char *buf, size_t len, const char *reason)
{
    proxy_http_request req;
    proxy_http_error err = {0, NULL};
    assert_true(parse(buf, len, &req, &err) < 0);
    assert_int_equal(err.status, 400);
    if (strstr(err.reason, reason) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", err.reason, reason);
}

static void expect_400(const char *buf, size_t len)
{
    expect_status(buf, len, NULL, 400);
}

/* ---- accepted heads --------------------------------------------------------------- */

static void test_simple_get(void **state)
{
    static const char r[] = "GET /v1/bundle?x=1&y HTTP/1.1\r\nHost: wardd:8443\r\n"
                            "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(parse(S(r), &req, &err), 1);
    assert_true(slice_is(req.method, "GET"));
    assert_true(slice_is(req.target, "/v1/bundle?x=1&y"));
    assert_true(slice_is(req.path, "/v1/bundle"));
    assert_true(slice_is(req.query, "x=1&y"));
    assert_int_equal(req.target_form, PROXY_TARGET_ORIGIN);
    assert_null(req.authority.ptr);
    assert_int_equal(req.version_minor, 1);
    assert_true(slice_is(req.host, "wardd:8443"));
    assert_int_equal(req.n_headers, 3);
    assert_true(slice_is(req.headers[1].name, "User-Agent"));
    assert_true(slice_is(req.headers[1].value, "curl/7.88.1"));
    assert_int_equal(req.body_kind, PROXY_BODY_NONE);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
    assert_int_equal(req.head_len, sizeof(r) - 1);
}

static void test_no_query_is_absent(void **state)
{
    static const char r[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(parse(S(r), &req, &err), 1);
    assert_true(slice_is(req.path, "/a"));
    assert_null(req.query.ptr);
    static const char q[] = "GET /a? HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(parse(S(q), &req, &err), 1);
    assert_non_null(req.query.ptr);
    assert_int_equal(req.query.len, 0);
}

static void test_post_with_length(void **state)
{
    static const char r[] =
        "POST /v1/attest HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
        "Content-Length: 0042\r\nExpect: 100-Continue\r\n\r\n{...";
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(parse(S(r), &req, &err), 1);
    assert_int_equal(req.body_kind, PROXY_BODY_LENGTH);
    assert_int_equal(req.content_length, 42);
    assert_true(req.expect_continue);
    assert_int_equal(req.head_len, sizeof(r) - 1 - 4);
}

static void test_value_whitespace_trimmed_and_empty_allowed(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost: h\r\nX-A: \t v a l \t \r\nX-Empty:\r\n"
                            "X-Obs: caf\xc3\xa9\r\n\r\n";
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(parse(S(r), &req, &err), 1);
    assert_true(slice_is(proxy_http_header_get(&req, "x-a"), "v a l"));
    proxy_slice e = proxy_http_header_get(&req, "X-EMPTY");
    assert_non_null(e.ptr);
    assert_int_equal(e.len, 0);
    assert_true(slice_is(proxy_http_header_get(&req, "x-obs"), "caf\xc3\xa9"));
    assert_null(proxy_http_header_get(&req, "x-missing").ptr);
}

static void test_keep_alive_rules(void **state)
{
    proxy_http_request req;
    proxy_http_error err;
    static const char a[] = "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, Close\r\n\r\n";
    assert_int_equal(parse(S(a), &req, &err), 1);
    assert_false(req.keep_alive);
    static const char b[] = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(parse(S(b), &req, &err), 1);
    assert_false(req.keep_alive);
    assert_int_equal(req.version_minor, 0);
    assert_null(req.host.ptr);
    static const char c[] = "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    assert_int_equal(parse(S(c), &req, &err), 1);
    assert_true(req.keep_alive);
    static const char d[] = "GET / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n";
    assert_int_equal(parse(S(d), &req, &err), 1);
    assert_false(req.expect_continue); /* ignored in HTTP/1.0 */
}

static void test_leading_empty_lines_ignored(void **state)
{
    static const char r[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(parse(S(r), &req, &err), 1);
    assert_true(slice_is(req.method, "GET"));
    assert_int_equal(req.head_len, sizeof(r) - 1);
}

static void test_target_forms(void **state)
{
    proxy_http_request req;
    proxy_http_error err;
    static const char a[] = "GET http://Example.org:80/p/q?z HTTP/1.1\r\nHost: example.org\r\n\r\n";
    assert_int_equal(parse(S(a), &req, &err), 1);
    assert_int_equal(req.target_form, PROXY_TARGET_ABSOLUTE);
    assert_true(slice_is(req.authority, "Example.org:80"));
    assert_true(slice_is(req.path, "/p/q"));
    assert_true(slice_is(req.query, "z"));
    static const char b[] = "CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n";
    assert_int_equal(parse(S(b), &req, &err), 1);
    assert_int_equal(req.target_form, PROXY_TARGET_AUTHORITY);
    assert_true(slice_is(req.authority, "example.org:443"));
    static const char c[] = "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(parse(S(c), &req, &err), 1);
    assert_int_equal(req.target_form, PROXY_TARGET_ASTERISK);
    static const char d[] = "GET /a%2Fb%20c HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(parse(S(d), &req, &err), 1);
    assert_true(slice_is(req.path, "/a%2Fb%20c"));
}

/* ---- incremental parsing --------------------------------------------------------------- */

static void test_byte_by_byte(void **state)
{
    static const char r[] =
        "POST /v1/renew HTTP/1.1\r\nHost: 127.0.0.1:8443\r\nContent-Length: 5\r\n"
        "X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\nhello";
    size_t head = sizeof(r) - 1 - 5;
    proxy_http_parser *p;
    assert_int_equal(proxy_http_parser_new(NULL, &p), 0);
    proxy_http_request req;
    proxy_http_error err;
    /* a copy that grows exactly as a socket buffer would */
    char *buf = malloc(sizeof(r));
    for (size_t i = 1; i < head; i++) {
        memcpy(buf, r, i);
        assert_int_equal(proxy_http_parser_feed(p, buf, i, &req, &err), 0);
    }
    memcpy(buf, r, sizeof(r));
    assert_int_equal(proxy_http_parser_feed(p, buf, head, &req, &err), 1);
    assert_int_equal(req.head_len, head);
    assert_int_equal(req.content_length, 5);
    assert_true(slice_is(req.host, "127.0.0.1:8443"));
    /* complete stays complete, and later bytes (the body) change nothing */
    assert_int_equal(proxy_http_parser_feed(p, buf, sizeof(r) - 1, &req, &err), 1);
    assert_int_equal(req.head_len, head);
    free(buf);
    proxy_http_parser_free(p);
}

static void test_cr_at_the_end_of_a_chunk(void **state)
{
    /* a CR that ends one read and an LF that starts the next are one CRLF */
    static const char r[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    proxy_http_parser *p;
    assert_int_equal(proxy_http_parser_new(NULL, &p), 0);
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(proxy_http_parser_feed(p, r, 15, &req, &err), 0); /* ends with "\r" */
    assert_int_equal(proxy_http_parser_feed(p, r, 25, &req, &err), 0);
    assert_int_equal(proxy_http_parser_feed(p, r, 27, &req, &err), 1);
    proxy_http_parser_free(p);
}

static void test_pipelined(void **state)
{
    static const char r[] = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
                            "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                            "GET /three HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    proxy_http_parser *p;
    assert_int_equal(proxy_http_parser_new(NULL, &p), 0);
    proxy_http_request req;
    proxy_http_error err;
    size_t off = 0, len = sizeof(r) - 1;
    assert_int_equal(proxy_http_parser_feed(p, r + off, len - off, &req, &err), 1);
    assert_true(slice_is(req.path, "/one"));
    off += req.head_len;
    proxy_http_parser_reset(p);
    assert_int_equal(proxy_http_parser_feed(p, r + off, len - off, &req, &err), 1);
    assert_true(slice_is(req.path, "/two"));
    assert_int_equal(req.content_length, 3);
    off += req.head_len + 3;
    proxy_http_parser_reset(p);
    assert_int_equal(proxy_http_parser_feed(p, r + off, len - off, &req, &err), 1);
    assert_true(slice_is(req.path, "/three"));
    assert_false(req.keep_alive);
    assert_int_equal(off + req.head_len, len);
    proxy_http_parser_free(p);
}

static void test_errors_are_sticky(void **state)
{
    static const char r[] = "GET / HTTP/1.1\r\nHost : h\r\n\r\n";
    proxy_http_parser *p;
    assert_int_equal(proxy_http_parser_new(NULL, &p), 0);
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(proxy_http_parser_feed(p, S(r), &req, &err), WARD_EINVAL);
    err.status = 0;
    assert_int_equal(proxy_http_parser_feed(p, S(r), &req, &err), WARD_EINVAL);
    assert_int_equal(err.status, 400);
    proxy_http_parser_reset(p);
    static const char ok[] = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(proxy_http_parser_feed(p, S(ok), &req, &err), 1);
    proxy_http_parser_free(p);
}

/* ---- limits ------------------------------------------------------------------------------ */

static char *make_request_line(size_t target_len)
{
    char *b = malloc(target_len + 64);
    size_t n = (size_t)sprintf(b, "GET /");
    memset(b + n, 'a', target_len - 1);
    n += target_len - 1;
    n += (size_t)sprintf(b + n, " HTTP/1.1\r\nHost: h\r\n\r\n");
    return b;
}

static void test_request_line_limit(void **state)
{
    /* "GET " + target + " HTTP/1.1" = 8192 bytes exactly: accepted */
    size_t ok_target = PROXY_HTTP_REQUEST_LINE_MAX - 4 - 9;
    char *ok = make_request_line(ok_target);
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(parse(ok, strlen(ok), &req, &err), 1);
    assert_int_equal(req.target.len, ok_target);
    free(ok);
    char *big = make_request_line(ok_target + 1);
    expect_status(big, strlen(big), NULL, 414);
    /* refused before its end arrives: no CRLF yet */
    proxy_http_parser *p;
    assert_int_equal(proxy_http_parser_new(NULL, &p), 0);
    assert_int_equal(proxy_http_parser_feed(p, big, PROXY_HTTP_REQUEST_LINE_MAX + 1, &req, &err),
                     WARD_ELIMIT);
    assert_int_equal(err.status, 414);
    proxy_http_parser_free(p);
    free(big);
}

static char *make_headers(size_t count, size_t value_len, size_t *len)
{
    size_t cap = 64 + count * (value_len + 32);
    char *b = malloc(cap);
    size_t n = (size_t)sprintf(b, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (size_t i = 1; i < count; i++) {
        n += (size_t)sprintf(b + n, "X-%05zu: ", i);
        memset(b + n, 'v', value_len);
        n += value_len;
        b[n++] = '\r';
        b[n++] = '\n';
    }
    b[n++] = '\r';
    b[n++] = '\n';
    b[n] = '\0';
    *len = n;
    return b;
}

static void test_header_count_limit(void **state)
{
    size_t len;
    char *ok = make_headers(PROXY_HTTP_HEADERS_MAX, 1, &len);
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(parse(ok, len, &req, &err), 1);
    assert_int_equal(req.n_headers, PROXY_HTTP_HEADERS_MAX);
    free(ok);
    char *big = make_headers(PROXY_HTTP_HEADERS_MAX + 1, 1, &len);
    expect_status(big, len, NULL, 431);
    free(big);
}

static void test_header_bytes_limit(void **state)
{
    size_t len;
    /* 50 fields of 1,250 bytes: more than 60 KiB */
    char *big = make_headers(50, 1250, &len);
    expect_status(big, len, NULL, 431);
    /* refused while still arriving: the head never ends */
    proxy_http_parser *p;
    assert_int_equal(proxy_http_parser_new(NULL, &p), 0);
    proxy_http_request req;
    proxy_http_error err;
    char *endless = malloc(70000);
    size_t n = (size_t)sprintf(endless, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    memset(endless + n, 'x', 70000 - n);
    assert_int_equal(proxy_http_parser_feed(p, endless, 70000, &req, &err), WARD_ELIMIT);
    assert_int_equal(err.status, 431);
    proxy_http_parser_free(p);
    free(endless);
    free(big);
    /* just under the bound is fine */
    char *ok = make_headers(40, 1400, &len);
    assert_int_equal(parse(ok, len, &req, &err), 1);
    free(ok);
}

static void test_custom_limits(void **state)
{
    proxy_http_limits lim = {.request_line_max = 32, .headers_max = 2, .body_max = 10};
    static const char a[] = "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: h\r\n\r\n";
    expect_status(S(a), &lim, 414);
    static const char b[] = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n";
    expect_status(S(b), &lim, 431);
    static const char c[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n";
    expect_status(S(c), &lim, 413);
    static const char d[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n";
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(parse_lim(S(d), &lim, &req, &err), 1);
}

static void test_body_too_large(void **state)
{
    static const char a[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65537\r\n\r\n";
    expect_status(S(a), NULL, 413);
    static const char b[] =
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n";
    expect_status(S(b), NULL, 413);
    static const char ok[] = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 65536\r\n\r\n";
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(parse(S(ok), &req, &err), 1);
}

/* ---- framing ------------------------------------------------------------------------------- */

static void test_content_length_rejections(void **state)
{
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"));
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n"));
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n"));
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n"));
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"));
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5a\r\n\r\n"));
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n"));
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"));
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\n"));
    expect_reason(S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
                  "duplicate Content-Length");
}

static void test_transfer_encoding(void **state)
{
    /* wardd's limits: no chunked bodies at all */
    expect_status(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), NULL, 501);
    /* smuggling shapes are 400 whatever the limits */
    expect_400(
        S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"));
    expect_400(
        S("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"));
    expect_400(S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"));
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"));
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n"));
    expect_400(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n"));
    proxy_http_limits lim = {.allow_chunked = true};
    expect_status(S("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), &lim,
                  501);
    static const char ok[] = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n";
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(parse_lim(S(ok), &lim, &req, &err), 1);
    assert_int_equal(req.body_kind, PROXY_BODY_CHUNKED);
}

/* ---- syntax -------------------------------------------------------------------------------- */

static void test_obs_fold(void **state)
{
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n\ttwo\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\n Host: h\r\n\r\n"));
    expect_reason(S("GET / HTTP/1.1\r\nHost: h\r\nX-A: one\r\n two\r\n\r\n"), "obs-fold");
}

static void test_bare_cr_and_lf(void **state)
{
    expect_400(S("GET / HTTP/1.1\nHost: h\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\n\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\r\nHost: h\r\n\r\n"));
    expect_400(S("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_reason(S("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n"), "bare LF");
    expect_reason(S("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), "bare CR");
}

static void test_nul_and_controls(void **state)
{
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"));
    expect_400(S("GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX\0: a\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01"
                 "b\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX: \x1b[31m\r\n\r\n"));
    expect_reason(S("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"), "NUL");
}

static void test_field_name_rejections(void **state)
{
    expect_400(S("GET / HTTP/1.1\r\nHost : h\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX-A : b\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\n: b\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX(A): b\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX\"A: b\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nno colon here\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: h\r\nX-\xc3\xa9: b\r\n\r\n"));
    expect_reason(S("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), "whitespace before colon");
}

static void test_host_rules(void **state)
{
    expect_400(S("GET / HTTP/1.1\r\nX: y\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"));
    proxy_http_request req;
    proxy_http_error err;
    static const char v6[] = "GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n";
    assert_int_equal(parse(S(v6), &req, &err), 1);
    assert_true(slice_is(req.host, "[::1]:8443"));
}

static void test_request_line_rejections(void **state)
{
    expect_400(S("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET /  HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"));
    expect_400(S(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET / http/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET / HTTP/1.10\r\nHost: h\r\n\r\n"));
    expect_400(S("GET / HTTP/11\r\nHost: h\r\n\r\n"));
    expect_400(S("GET /\r\nHost: h\r\n\r\n"));
    expect_400(S("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_status(S("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), NULL, 505);
    expect_status(S("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), NULL, 505);
    expect_status(S("GET / HTTP/0.9\r\nHost: h\r\n\r\n"), NULL, 505);
}

static void test_target_rejections(void **state)
{
    expect_400(S("GET /a\"b HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET /a<b> HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET /a{b} HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET /a\\b HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET /a%2 HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET * HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET a/b HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n"));
    expect_400(S("CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n"));
}

static void test_expect(void **state)
{
    expect_status(S("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n"),
                  NULL, 417);
}

static void test_too_many_empty_lines(void **state)
{
    size_t n = PROXY_HTTP_REQUEST_LINE_MAX + 10;
    char *b = malloc(n);
    for (size_t i = 0; i + 1 < n; i += 2) {
        b[i] = '\r';
        b[i + 1] = '\n';
    }
    proxy_http_request req;
    proxy_http_error err;
    assert_int_equal(parse(b, n, &req, &err), WARD_EINVAL);
    assert_int_equal(err.status, 400);
    free(b);
}

/* ---- responses --------------------------------------------------------------------------- */

static void test_response_head(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    proxy_header h[2] = {{{S("Content-Type")}, {S("application/json")}},
                         {{S("Cache-Control")}, {S("no-store")}}};
    assert_int_equal(proxy_http_response_head(&b, 200, h, 2, 17, false, false), 0);
    assert_string_equal(b.ptr, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Cache-Control: no-store\r\nContent-Length: 17\r\n\r\n");
    ward_buf_reset(&b);
    assert_int_equal(proxy_http_response_head(&b, 204, NULL, 0, 0, true, false), 0);
    assert_string_equal(b.ptr, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    ward_buf_reset(&b);
    assert_int_equal(proxy_http_response_head(&b, 413, NULL, 0, 3, false, true), 0);
    assert_string_equal(b.ptr, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n"
                               "Connection: keep-alive\r\n\r\n");
    ward_buf_dispose(&b);
}

static void test_response_splitting_refused(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    proxy_header bad_value[1] = {{{S("X-A")}, {S("a\r\nSet-Cookie: x=1")}}};
    assert_int_equal(proxy_http_response_head(&b, 200, bad_value, 1, 0, false, false), WARD_EINVAL);
    proxy_header bad_name[1] = {{{S("X A")}, {S("a")}}};
    assert_int_equal(proxy_http_response_head(&b, 200, bad_name, 1, 0, false, false), WARD_EINVAL);
    proxy_header nul[1] = {{{S("X-A")}, {"a\0b", 3}}};
    assert_int_equal(proxy_http_response_head(&b, 200, nul, 1, 0, false, false), WARD_EINVAL);
    assert_int_equal(proxy_http_response_head(&b, 99, NULL, 0, 0, false, false), WARD_EINVAL);
    assert_int_equal(b.len, 0);
    ward_buf_dispose(&b);
}

/* ---- addresses ------------------------------------------------------------------------------ */

static void test_addr_parse(void **state)
{
    struct sockaddr_storage ss;
    char out[PROXY_ADDR_STRLEN];
    ward_err err;
    assert_int_equal(proxy_addr_parse("127.0.0.1:8443", &ss, &err), 0);
    proxy_addr_format((struct sockaddr *)&ss, out, sizeof(out));
    assert_string_equal(out, "127.0.0.1:8443");
    assert_int_equal(proxy_addr_parse("[::1]:0", &ss, &err), 0);
    proxy_addr_format((struct sockaddr *)&ss, out, sizeof(out));
    assert_string_equal(out, "[::1]:0");
    const char *bad[] = {"127.0.0.1",    "127.0.0.1:",   "127.0.0.1:65536", "::1:80",
                         "[::1]80",      "localhost:80", "1.2.3:80",        "[127.0.0.1]:80",
                         "127.0.0.1:-1", ":80",          "[::1]:+80",       ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (proxy_addr_parse(bad[i], &ss, &err) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_no_query_is_absent),
        cmocka_unit_test(test_post_with_length),
        cmocka_unit_test(test_value_whitespace_trimmed_and_empty_allowed),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_leading_empty_lines_ignored),
        cmocka_unit_test(test_target_forms),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_cr_at_the_end_of_a_chunk),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_errors_are_sticky),
        cmocka_unit_test(test_request_line_limit),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_header_bytes_limit),
        cmocka_unit_test(test_custom_limits),
        cmocka_unit_test(test_body_too_large),
        cmocka_unit_test(test_content_length_rejections),
        cmocka_unit_test(test_transfer_encoding),
        cmocka_unit_test(test_obs_fold),
        cmocka_unit_test(test_bare_cr_and_lf),
        cmocka_unit_test(test_nul_and_controls),
        cmocka_unit_test(test_field_name_rejections),
        cmocka_unit_test(test_host_rules),
        cmocka_unit_test(test_request_line_rejections),
        cmocka_unit_test(test_target_rejections),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_too_many_empty_lines),
        cmocka_unit_test(test_response_head),
        cmocka_unit_test(test_response_splitting_refused),
        cmocka_unit_test(test_addr_parse),
    };
    return cmocka_run_group_tests(tests, NULL, free_last);
}
