/* test_http_response.c - unit tests of the strict HTTP/1.1 response head parser and its framing */
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

/* The parser of the last parse(): resp->headers lives in it until the next. */
static proxy_http_response_parser *last;

static int free_last(void **state)
{
    proxy_http_response_parser_free(last);
    last = NULL;
    return 0;
}

static int parse_lim(const char *buf, size_t len, const proxy_http_limits *lim, bool head,
                     proxy_http_response *r, proxy_http_error *err)
{
    free_last(NULL);
    assert_int_equal(proxy_http_response_parser_new(lim, &last), 0);
    return proxy_http_response_parser_feed(last, buf, len, head, r, err);
}

static int parse(const char *buf, size_t len, proxy_http_response *r)
{
    proxy_http_error err = {0, NULL};
    return parse_lim(buf, len, NULL, false, r, &err);
}

/* Refused (502), whether fed at once or byte by byte; the reason holds `why`. */
static void expect_refused_lim(const char *buf, size_t len, const proxy_http_limits *lim,
                               int want_rc, const char *why)
{
    proxy_http_response r;
    proxy_http_error err = {0, NULL};
    int rc = parse_lim(buf, len, lim, false, &r, &err);
    if (rc != want_rc || err.status != 502 || err.reason == NULL)
        fail_msg("want rc %d, got %d status %d (%s) for \"%.60s\"", want_rc, rc, err.status,
                 err.reason ? err.reason : "-", buf);
    if (why != NULL && strstr(err.reason, why) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", err.reason, why);
    proxy_http_response_parser *p;
    assert_int_equal(proxy_http_response_parser_new(lim, &p), 0);
    rc = 0;
    for (size_t i = 1; i <= len && rc == 0; i++)
        rc = proxy_http_response_parser_feed(p, buf, i, false, &r, &err);
    proxy_http_response_parser_free(p);
    assert_int_equal(rc, want_rc);
}

static void expect_refused(const char *buf, size_t len, const char *why)
{
    expect_refused_lim(buf, len, NULL, WARD_EINVAL, why);
}

/* ---- accepted ------------------------------------------------------------------------- */

static void test_simple_200(void **state)
{
    static const char h[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                            "X-A:  v a \t\r\n\r\nhello";
    proxy_http_response r;
    assert_int_equal(parse(S(h), &r), 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.version_minor, 1);
    assert_true(slice_is(r.reason, "OK"));
    assert_int_equal(r.n_headers, 3);
    assert_true(slice_is(r.headers[0].name, "Content-Type"));
    assert_true(slice_is(r.headers[2].value, "v a"));
    assert_int_equal(r.body, PROXY_RESP_BODY_LENGTH);
    assert_int_equal(r.content_length, 5);
    assert_true(r.keep_alive);
    assert_int_equal(r.head_len, sizeof(h) - 1 - 5);
}

static void test_byte_by_byte_agrees(void **state)
{
    static const char h[] = "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    proxy_http_response_parser *p;
    assert_int_equal(proxy_http_response_parser_new(NULL, &p), 0);
    proxy_http_response r;
    proxy_http_error err;
    int rc = 0;
    size_t i;
    for (i = 1; i <= sizeof(h) - 1 && rc == 0; i++)
        rc = proxy_http_response_parser_feed(p, h, i, false, &r, &err);
    assert_int_equal(rc, 1);
    assert_int_equal(i - 1, sizeof(h) - 1 - 5); /* complete exactly at the empty line */
    assert_int_equal(r.status, 404);
    assert_true(slice_is(r.reason, "Not Found"));
    assert_int_equal(r.body, PROXY_RESP_BODY_CHUNKED);
    assert_int_equal(r.head_len, sizeof(h) - 1 - 5);
    proxy_http_response_parser_free(p);
}

static void test_empty_and_missing_reason(void **state)
{
    proxy_http_response r;
    assert_int_equal(parse(S("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"), &r), 1);
    assert_int_equal(r.reason.len, 0);
    assert_int_equal(parse(S("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), &r), 1);
    assert_int_equal(r.reason.len, 0);
    assert_int_equal(parse(S("HTTP/1.1 599 Whatever \xc3\xa9\tx\r\n\r\n"), &r), 1);
    assert_int_equal(r.status, 599);
}

static void test_until_close(void **state)
{
    proxy_http_response r;
    assert_int_equal(parse(S("HTTP/1.1 200 OK\r\n\r\n"), &r), 1);
    assert_int_equal(r.body, PROXY_RESP_BODY_CLOSE);
    assert_false(r.keep_alive);
    assert_int_equal(parse(S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"), &r), 1);
    assert_int_equal(r.body, PROXY_RESP_BODY_CLOSE);
    assert_false(r.keep_alive);
}

static void test_keep_alive_rules(void **state)
{
    proxy_http_response r;
    assert_int_equal(
        parse(S("HTTP/1.1 200 OK\r\nConnection: x, close\r\nContent-Length: 0\r\n\r\n"), &r), 1);
    assert_false(r.keep_alive);
    assert_int_equal(parse(S("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), &r), 1);
    assert_false(r.keep_alive);
    assert_int_equal(r.version_minor, 0);
    assert_int_equal(
        parse(S("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"), &r), 1);
    assert_true(r.keep_alive);
}

static void test_no_body_statuses(void **state)
{
    proxy_http_response r;
    assert_int_equal(parse(S("HTTP/1.1 204 No Content\r\n\r\n"), &r), 1);
    assert_int_equal(r.body, PROXY_RESP_BODY_NONE);
    assert_true(r.keep_alive);
    assert_int_equal(parse(S("HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n"), &r), 1);
    assert_int_equal(r.body, PROXY_RESP_BODY_NONE);
    assert_int_equal(r.content_length, 100);
    assert_int_equal(parse(S("HTTP/1.1 100 Continue\r\n\r\n"), &r), 1);
    assert_int_equal(r.body, PROXY_RESP_BODY_NONE);
    assert_int_equal(parse(S("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"), &r), 1);
    assert_int_equal(r.body, PROXY_RESP_BODY_NONE);
}

static void test_head_request_has_no_body(void **state)
{
    proxy_http_response r;
    proxy_http_error err;
    assert_int_equal(
        parse_lim(S("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"), NULL, true, &r, &err), 1);
    assert_int_equal(r.body, PROXY_RESP_BODY_NONE);
    assert_int_equal(r.content_length, 1234);
    assert_true(r.keep_alive);
    assert_int_equal(
        parse_lim(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), NULL, true, &r, &err),
        1);
    assert_int_equal(r.body, PROXY_RESP_BODY_NONE);
}

static void test_switching_protocols(void **state)
{
    proxy_http_response r;
    assert_int_equal(parse(S("HTTP/1.1 101 Switching Protocols\r\nUpgrade: "
                             "websocket\r\nConnection: Upgrade\r\n\r\n"),
                           &r),
                     1);
    assert_int_equal(r.status, 101);
    assert_true(r.upgrade);
    assert_false(r.keep_alive);
    assert_int_equal(r.body, PROXY_RESP_BODY_NONE);
}

static void test_interim_then_final(void **state)
{
    static const char h[] =
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    proxy_http_response_parser *p;
    assert_int_equal(proxy_http_response_parser_new(NULL, &p), 0);
    proxy_http_response r;
    proxy_http_error err;
    assert_int_equal(proxy_http_response_parser_feed(p, S(h), false, &r, &err), 1);
    assert_int_equal(r.status, 100);
    size_t off = r.head_len;
    proxy_http_response_parser_reset(p);
    assert_int_equal(
        proxy_http_response_parser_feed(p, h + off, sizeof(h) - 1 - off, false, &r, &err), 1);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.content_length, 2);
    proxy_http_response_parser_free(p);
}

static void test_incomplete_is_more(void **state)
{
    static const char h[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    proxy_http_response r;
    for (size_t len = 0; len < sizeof(h) - 1; len++)
        assert_int_equal(parse(h, len, &r), 0);
}

/* ---- refused ---------------------------------------------------------------------------- */

static void test_content_length_rejections(void **state)
{
    expect_refused(S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"),
                   "duplicate");
    expect_refused(S("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"), "malformed");
    expect_refused(S("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), "malformed");
    expect_refused(S("HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n"), "malformed");
    expect_refused(S("HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n"), "malformed");
    expect_refused(S("HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\n"), "malformed");
    expect_refused(S("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n"), "malformed");
    expect_refused(S("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
                   "malformed");
}

static void test_transfer_encoding_rejections(void **state)
{
    expect_refused(S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
                   "both");
    expect_refused(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
                   "both");
    expect_refused(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), "unsupported");
    expect_refused(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
                   "unsupported");
    expect_refused(S("HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n"), "unsupported");
    expect_refused(
        S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "duplicate");
    expect_refused(S("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), "HTTP/1.0");
    expect_refused(S("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"), "without content");
    expect_refused(S("HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n"),
                   "without content");
}

static void test_status_line_rejections(void **state)
{
    expect_refused(S("HTTP/1.1  200 OK\r\n\r\n"), "status code");
    expect_refused(S("HTTP/1.1 20 OK\r\n\r\n"), "status");
    expect_refused(S("HTTP/1.1 2000 OK\r\n\r\n"), "status line");
    expect_refused(S("HTTP/1.1 099 X\r\n\r\n"), "range");
    expect_refused(S("HTTP/1.1 600 X\r\n\r\n"), "range");
    expect_refused(S("HTTP/1.1 abc X\r\n\r\n"), "status code");
    expect_refused(S("HTTP/2.0 200 OK\r\n\r\n"), "version");
    expect_refused(S("HTTP/1.2 200 OK\r\n\r\n"), "version");
    expect_refused(S("http/1.1 200 OK\r\n\r\n"), "version");
    expect_refused(S("HTTP/1.1\t200 OK\r\n\r\n"), "version");
    expect_refused(S("ICY 200 OK\r\n\r\n"), "version");
    expect_refused(S("HTTP/1.1 200 O\x01K\r\n\r\n"), "control");
    expect_refused(S("\r\nHTTP/1.1 200 OK\r\n\r\n"), "empty line");
}

static void test_field_rejections(void **state)
{
    expect_refused(S("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), "obs-fold");
    expect_refused(S("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"), "before colon");
    expect_refused(S("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"), "without colon");
    expect_refused(S("HTTP/1.1 200 OK\r\n: v\r\n\r\n"), "empty");
    expect_refused(S("HTTP/1.1 200 OK\r\nX(y: v\r\n\r\n"), "header name");
    expect_refused(S("HTTP/1.1 200 OK\r\nX: a\x01z\r\n\r\n"), "control");
    expect_refused(S("HTTP/1.1 200 OK\r\nX: a\x7fz\r\n\r\n"), "control");
}

static void test_bare_cr_lf_nul(void **state)
{
    expect_refused(S("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"), "bare LF");
    expect_refused(S("HTTP/1.1 200 OK\r\nX: y\n\r\n"), "bare LF");
    expect_refused(S("HTTP/1.1 200 OK\r\nX: y\r\n\n"), "bare LF");
    expect_refused(S("HTTP/1.1 200 OK\rX: y\r\n\r\n"), "bare CR");
    expect_refused(S("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"), "bare CR");
    static const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n";
    expect_refused(nul, sizeof(nul) - 1, "NUL");
}

static void test_limits(void **state)
{
    proxy_http_limits lim = {0};
    lim.headers_max = 2;
    expect_refused_lim(S("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), &lim, WARD_ELIMIT,
                       "too many");
    proxy_http_response r;
    proxy_http_error err;
    assert_int_equal(parse_lim(S("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n"), &lim, false, &r, &err),
                     1);
    proxy_http_limits bytes = {0};
    bytes.header_bytes_max = 20;
    expect_refused_lim(S("HTTP/1.1 200 OK\r\nA: 0123456789abcdefghij\r\n\r\n"), &bytes, WARD_ELIMIT,
                       "too large");
    /* without an end in sight the bound holds too */
    expect_refused_lim(S("HTTP/1.1 200 OK\r\nA: 0123456789abcdefghij"), &bytes, WARD_ELIMIT,
                       "too large");
    proxy_http_limits line = {0};
    line.request_line_max = 16;
    expect_refused_lim(S("HTTP/1.1 200 OK OK OK OK\r\n\r\n"), &line, WARD_ELIMIT, "status line");
    expect_refused_lim(S("HTTP/1.1 200 OK OK OK OK"), &line, WARD_ELIMIT, "status line");
}

static void test_errors_are_sticky(void **state)
{
    proxy_http_response_parser *p;
    assert_int_equal(proxy_http_response_parser_new(NULL, &p), 0);
    proxy_http_response r;
    proxy_http_error err = {0, NULL};
    assert_int_equal(proxy_http_response_parser_feed(p, S("HTTP/9"), false, &r, &err), 0);
    assert_int_equal(proxy_http_response_parser_feed(p, S("HTTP/1.1 200 OK\n"), false, &r, &err),
                     WARD_EINVAL);
    err.status = 0;
    assert_int_equal(
        proxy_http_response_parser_feed(p, S("HTTP/1.1 200 OK\n\r\n"), false, &r, &err),
        WARD_EINVAL);
    assert_int_equal(err.status, 502);
    proxy_http_response_parser_reset(p);
    assert_int_equal(
        proxy_http_response_parser_feed(p, S("HTTP/1.1 204 x\r\n\r\n"), false, &r, &err), 1);
    proxy_http_response_parser_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_200),
        cmocka_unit_test(test_byte_by_byte_agrees),
        cmocka_unit_test(test_empty_and_missing_reason),
        cmocka_unit_test(test_until_close),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_no_body_statuses),
        cmocka_unit_test(test_head_request_has_no_body),
        cmocka_unit_test(test_switching_protocols),
        cmocka_unit_test(test_interim_then_final),
        cmocka_unit_test(test_incomplete_is_more),
        cmocka_unit_test(test_content_length_rejections),
        cmocka_unit_test(test_transfer_encoding_rejections),
        cmocka_unit_test(test_status_line_rejections),
        cmocka_unit_test(test_field_rejections),
        cmocka_unit_test(test_bare_cr_lf_nul),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_errors_are_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, free_last);
}
