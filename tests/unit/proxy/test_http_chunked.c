/* test_http_chunked.c - unit tests of the chunked decoder (every desync family) and encoder */
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

/* Decodes buf in steps of `step` bytes (0 = all at once). Returns the last
 * rc (DONE, MORE or an error); the decoded bytes go to body, *used gets the
 * bytes consumed in total. */
static int decode_steps(const char *buf, size_t len, size_t step, const proxy_chunked_limits *lim,
                        ward_buf *body, size_t *used, proxy_http_error *err)
{
    proxy_chunked_decoder d;
    proxy_chunked_init(&d, lim);
    size_t have = 0, off = 0;
    int rc = PROXY_CHUNKED_MORE;
    while (have < len) {
        have = step == 0 || have + step > len ? len : have + step;
        /* the decoder sees only what it has not consumed yet */
        while (off < have) {
            size_t n = 0;
            proxy_slice data;
            rc = proxy_chunked_decode(&d, buf + off, have - off, &n, &data, err);
            if (rc < 0 || rc == PROXY_CHUNKED_DONE) {
                off += n;
                goto out;
            }
            off += n;
            if (rc == PROXY_CHUNKED_DATA) {
                assert_true(data.len > 0);
                assert_ptr_equal(data.ptr, buf + off - data.len); /* a slice, no copy */
                assert_int_equal(ward_buf_append(body, data.ptr, data.len), 0);
            } else {
                assert_int_equal(off, have);
            }
        }
    }
out:
    if (used != NULL)
        *used = off;
    return rc;
}

/* Decodes to DONE whole and byte by byte, same body, same end. */
static void expect_body(const char *buf, size_t len, const char *want, size_t want_len,
                        size_t want_used)
{
    for (size_t step = 0; step <= 3; step++) {
        ward_buf b;
        ward_buf_init(&b);
        size_t used = 0;
        proxy_http_error err = {0, NULL};
        int rc = decode_steps(buf, len, step, NULL, &b, &used, &err);
        if (rc != PROXY_CHUNKED_DONE)
            fail_msg("step %zu: rc %d (%s) for \"%.40s\"", step, rc, err.reason ? err.reason : "-",
                     buf);
        assert_int_equal(b.len, want_len);
        if (want_len)
            assert_memory_equal(b.ptr, want, want_len);
        assert_int_equal(used, want_used);
        ward_buf_dispose(&b);
    }
}

/* Refused with this status, whether fed whole or byte by byte. */
static void expect_refused_lim(const char *buf, size_t len, const proxy_chunked_limits *lim,
                               int status)
{
    for (size_t step = 0; step <= 1; step++) {
        ward_buf b;
        ward_buf_init(&b);
        proxy_http_error err = {0, NULL};
        int rc = decode_steps(buf, len, step, lim, &b, NULL, &err);
        if (rc >= 0 || err.status != status || err.reason == NULL)
            fail_msg("step %zu: want %d, got rc %d status %d for \"%.40s\"", step, status, rc,
                     err.status, buf);
        ward_buf_dispose(&b);
    }
}

static void expect_400(const char *buf, size_t len)
{
    expect_refused_lim(buf, len, NULL, 400);
}

/* ---- accepted ------------------------------------------------------------------------- */

static void test_simple_body(void **state)
{
    static const char c[] = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1";
    expect_body(S(c), S("hello world"), sizeof(c) - 1 - strlen("GET / HTTP/1.1"));
}

static void test_empty_body(void **state)
{
    expect_body(S("0\r\n\r\n"), "", 0, 5);
    expect_body(S("000\r\n\r\n"), "", 0, 7);
}

static void test_hex_sizes(void **state)
{
    char buf[64 + 40];
    char want[26];
    memset(want, 'x', sizeof(want));
    int n = snprintf(buf, sizeof(buf), "1A\r\n%.26s\r\n0\r\n\r\n", want);
    expect_body(buf, (size_t)n, want, 26, (size_t)n);
    n = snprintf(buf, sizeof(buf), "001a\r\n%.26s\r\n0\r\n\r\n", want);
    expect_body(buf, (size_t)n, want, 26, (size_t)n);
    /* 16 digits (leading zeros) is the most */
    n = snprintf(buf, sizeof(buf), "0000000000000001\r\nx\r\n0\r\n\r\n");
    expect_body(buf, (size_t)n, "x", 1, (size_t)n);
}

static void test_extensions_ignored(void **state)
{
    static const char c[] =
        "3;a\r\nabc\r\n3;name=val;x=\"q \\\" s\";flag\r\ndef\r\n0;last=1\r\n\r\n";
    expect_body(S(c), S("abcdef"), sizeof(c) - 1);
}

static void test_trailers_checked_and_dropped(void **state)
{
    static const char c[] = "2\r\nhi\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n";
    expect_body(S(c), S("hi"), sizeof(c) - 1);
}

static void test_done_is_sticky(void **state)
{
    proxy_chunked_decoder d;
    proxy_chunked_init(&d, NULL);
    size_t n;
    proxy_slice data;
    assert_int_equal(proxy_chunked_decode(&d, S("0\r\n\r\nXYZ"), &n, &data, NULL),
                     PROXY_CHUNKED_DONE);
    assert_int_equal(n, 5);
    assert_int_equal(proxy_chunked_decode(&d, S("XYZ"), &n, &data, NULL), PROXY_CHUNKED_DONE);
    assert_int_equal(n, 0);
    proxy_chunked_reset(&d);
    assert_int_equal(proxy_chunked_decode(&d, S("1\r\nz"), &n, &data, NULL), PROXY_CHUNKED_DATA);
    assert_int_equal(data.len, 1);
    assert_int_equal(proxy_chunked_total(&d), 1);
}

static void test_data_handed_out_in_pieces(void **state)
{
    proxy_chunked_decoder d;
    proxy_chunked_init(&d, NULL);
    size_t n;
    proxy_slice data;
    static const char c[] = "a\r\n0123456789\r\n";
    assert_int_equal(proxy_chunked_decode(&d, c, 7, &n, &data, NULL), PROXY_CHUNKED_DATA);
    assert_int_equal(n, 7);
    assert_ptr_equal(data.ptr, c + 3);
    assert_int_equal(data.len, 4);
    assert_int_equal(proxy_chunked_decode(&d, c + 7, sizeof(c) - 1 - 7, &n, &data, NULL),
                     PROXY_CHUNKED_DATA);
    assert_int_equal(data.len, 6);
    assert_int_equal(proxy_chunked_decode(&d, c + 7 + n, sizeof(c) - 1 - 7 - n, &n, &data, NULL),
                     PROXY_CHUNKED_MORE);
    assert_int_equal(n, 2);
}

/* ---- desync families -------------------------------------------------------------------- */

static void test_bad_sizes(void **state)
{
    expect_400(S("\r\n\r\n")); /* empty size */
    expect_400(S(" 5\r\nhello\r\n0\r\n\r\n"));
    expect_400(S("5 \r\nhello\r\n0\r\n\r\n"));
    expect_400(S("5\t\r\nhello\r\n0\r\n\r\n"));
    expect_400(S("0x5\r\nhello\r\n0\r\n\r\n"));
    expect_400(S("+5\r\nhello\r\n0\r\n\r\n"));
    expect_400(S("-5\r\nhello\r\n0\r\n\r\n"));
    expect_400(S("5g\r\nhello\r\n0\r\n\r\n"));
    expect_400(S("g\r\n"));
    expect_400(S(";a\r\n")); /* extension without a size */
    expect_400(S("5,5\r\nhello\r\n"));
}

static void test_size_overflow(void **state)
{
    expect_400(S("00000000000000001\r\nx\r\n0\r\n\r\n")); /* 17 digits */
    expect_400(S("10000000000000000\r\n"));               /* 2^64 */
    proxy_chunked_limits big = {UINT64_MAX, 0, 0, 0};
    /* 16 digits at most; with no body bound, a sum that would wrap is refused */
    expect_refused_lim(S("ffffffffffffffff\r\n"), NULL, 413);
    static const char wrap[] = "1\r\nx\r\nffffffffffffffff\r\n";
    expect_refused_lim(S(wrap), &big, 413);
}

static void test_body_max(void **state)
{
    proxy_chunked_limits lim = {10, 0, 0, 0};
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(decode_steps(S("a\r\n0123456789\r\n0\r\n\r\n"), 0, &lim, &b, NULL, NULL),
                     PROXY_CHUNKED_DONE);
    ward_buf_dispose(&b);
    expect_refused_lim(S("b\r\n"), &lim, 413);
    expect_refused_lim(S("5\r\n01234\r\n6\r\n"), &lim, 413);
    /* the default bound */
    expect_refused_lim(S("10001\r\n"), NULL, 413);
}

static void test_extension_oddities(void **state)
{
    expect_400(S("1;\r\nx\r\n0\r\n\r\n")); /* "1;" empty name */
    expect_400(S("1;;a\r\nx\r\n0\r\n\r\n"));
    expect_400(S("1 ;a\r\nx\r\n0\r\n\r\n")); /* BWS refused */
    expect_400(S("1; a\r\nx\r\n0\r\n\r\n"));
    expect_400(S("1;a =b\r\nx\r\n0\r\n\r\n"));
    expect_400(S("1;a=\r\nx\r\n0\r\n\r\n")); /* empty value */
    expect_400(S("1;a=b c\r\nx\r\n0\r\n\r\n"));
    expect_400(S("1;a=\"b\r\nx\r\n0\r\n\r\n")); /* unterminated quote */
    expect_400(S("1;a=\"b\"c\r\nx\r\n0\r\n\r\n"));
    expect_400(S("1;a=\"b\nc\"\r\nx\r\n0\r\n\r\n"));
    expect_400(S("1;a\nx\r\n")); /* bare LF ends the line */
    expect_400(S("1;a\x01\r\nx\r\n"));
}

static void test_extension_too_long(void **state)
{
    char buf[1024];
    memcpy(buf, "1;", 2);
    memset(buf + 2, 'e', 300);
    memcpy(buf + 302, "\r\nx\r\n0\r\n\r\n", 10);
    expect_400(buf, 312);
    proxy_chunked_limits lim = {0, 400, 0, 0};
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(decode_steps(buf, 312, 1, &lim, &b, NULL, NULL), PROXY_CHUNKED_DONE);
    assert_int_equal(b.len, 1);
    ward_buf_dispose(&b);
}

static void test_missing_crlf_after_data(void **state)
{
    expect_400(S("5\r\nhelloX\r\n0\r\n\r\n")); /* more data than the size */
    expect_400(S("5\r\nhello0\r\n\r\n"));
    expect_400(S("5\r\nhello\n0\r\n\r\n")); /* LF only */
    expect_400(S("5\r\nhello\r0\r\n\r\n")); /* CR only */
    expect_400(S("5\r\nhello\r\r\n0\r\n\r\n"));
}

static void test_bare_cr_and_lf(void **state)
{
    expect_400(S("5\nhello\r\n0\r\n\r\n"));
    expect_400(S("5\rhello\r\n0\r\n\r\n"));
    expect_400(S("0\n\r\n"));
    expect_400(S("0\r\n\n"));
    expect_400(S("0\r\n\r\r"));
    expect_400(S("0\r\nX: y\n\r\n"));
    expect_400(S("0\r\nX: y\rz\r\n\r\n"));
}

static void test_trailer_rejections(void **state)
{
    expect_400(S("0\r\nX : y\r\n\r\n"));      /* space before colon */
    expect_400(S("0\r\nX: y\r\n z\r\n\r\n")); /* obs-fold */
    expect_400(S("0\r\nNoColon\r\n\r\n"));
    expect_400(S("0\r\n: y\r\n\r\n"));
    expect_400(S("0\r\nX(: y\r\n\r\n"));
    expect_400(S("0\r\nX: a\x01\r\n\r\n"));
    expect_400(S("0\r\nX: a\x7f\r\n\r\n"));
    static const char nul[] = "0\r\nX: a\0b\r\n\r\n";
    expect_400(nul, sizeof(nul) - 1);
}

static void test_trailer_limits(void **state)
{
    proxy_chunked_limits lim = {0, 0, 0, 2};
    expect_refused_lim(S("0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"), &lim, 400);
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(decode_steps(S("0\r\nA: 1\r\nB: 2\r\n\r\n"), 1, &lim, &b, NULL, NULL),
                     PROXY_CHUNKED_DONE);
    ward_buf_dispose(&b);
    proxy_chunked_limits bytes = {0, 0, 16, 0};
    expect_refused_lim(S("0\r\nA: 0123456789\r\n\r\n"), &bytes, 400);
}

static void test_nul_in_size_line(void **state)
{
    static const char c[] = "5\0\r\nhello\r\n0\r\n\r\n";
    expect_400(c, sizeof(c) - 1);
}

static void test_errors_are_sticky(void **state)
{
    proxy_chunked_decoder d;
    proxy_chunked_init(&d, NULL);
    size_t n = 99;
    proxy_slice data;
    proxy_http_error err = {0, NULL};
    assert_int_equal(proxy_chunked_decode(&d, S("zz"), &n, &data, &err), WARD_EINVAL);
    assert_int_equal(err.status, 400);
    err.status = 0;
    assert_int_equal(proxy_chunked_decode(&d, S("0\r\n\r\n"), &n, &data, &err), WARD_EINVAL);
    assert_int_equal(err.status, 400);
    assert_int_equal(n, 0);
}

static void test_needs_more_never_guesses(void **state)
{
    /* a prefix of a valid body is MORE, never DONE */
    static const char c[] = "3\r\nabc\r\n0\r\nT: v\r\n\r\n";
    for (size_t len = 0; len < sizeof(c) - 1; len++) {
        ward_buf b;
        ward_buf_init(&b);
        int rc = decode_steps(c, len, 0, NULL, &b, NULL, NULL);
        assert_true(rc == PROXY_CHUNKED_MORE || rc == PROXY_CHUNKED_DATA);
        ward_buf_dispose(&b);
    }
}

/* ---- the encoder ---------------------------------------------------------------------------- */

static void test_encode_roundtrip(void **state)
{
    ward_buf out, dec;
    ward_buf_init(&out);
    ward_buf_init(&dec);
    char big[300];
    memset(big, 'q', sizeof(big));
    assert_int_equal(proxy_chunked_encode(&out, "hello", 5), 0);
    assert_int_equal(proxy_chunked_encode(&out, "", 0), 0); /* nothing */
    assert_int_equal(proxy_chunked_encode(&out, big, sizeof(big)), 0);
    assert_int_equal(proxy_chunked_encode_last(&out), 0);
    assert_memory_equal(out.ptr, "5\r\nhello\r\n12c\r\n", 15);
    assert_memory_equal(out.ptr + out.len - 5, "0\r\n\r\n", 5);
    size_t used;
    assert_int_equal(decode_steps(out.ptr, out.len, 7, NULL, &dec, &used, NULL),
                     PROXY_CHUNKED_DONE);
    assert_int_equal(used, out.len);
    assert_int_equal(dec.len, 305);
    assert_memory_equal(dec.ptr, "hello", 5);
    assert_memory_equal(dec.ptr + 5, big, sizeof(big));
    ward_buf_dispose(&out);
    ward_buf_dispose(&dec);
}

static void test_size_line(void **state)
{
    char line[PROXY_CHUNK_SIZE_LINE_MAX];
    assert_int_equal(proxy_chunked_size_line(line, 1), 3);
    assert_string_equal(line, "1\r\n");
    assert_int_equal(proxy_chunked_size_line(line, UINT64_MAX), 18);
    assert_string_equal(line, "ffffffffffffffff\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_body),
        cmocka_unit_test(test_empty_body),
        cmocka_unit_test(test_hex_sizes),
        cmocka_unit_test(test_extensions_ignored),
        cmocka_unit_test(test_trailers_checked_and_dropped),
        cmocka_unit_test(test_done_is_sticky),
        cmocka_unit_test(test_data_handed_out_in_pieces),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_size_overflow),
        cmocka_unit_test(test_body_max),
        cmocka_unit_test(test_extension_oddities),
        cmocka_unit_test(test_extension_too_long),
        cmocka_unit_test(test_missing_crlf_after_data),
        cmocka_unit_test(test_bare_cr_and_lf),
        cmocka_unit_test(test_trailer_rejections),
        cmocka_unit_test(test_trailer_limits),
        cmocka_unit_test(test_nul_in_size_line),
        cmocka_unit_test(test_errors_are_sticky),
        cmocka_unit_test(test_needs_more_never_guesses),
        cmocka_unit_test(test_encode_roundtrip),
        cmocka_unit_test(test_size_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
