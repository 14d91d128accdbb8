/* test_http_path.c - unit tests of request path normalization, path-confusion cases included */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

typedef struct path_case {
    const char *in;
    const char *want; /* NULL: refused */
    int status;       /* when refused */
} path_case;

/* Accepted: what comes out. */
static const path_case accepted[] = {
    {"/", "/", 0},
    {"/a", "/a", 0},
    {"/a/b/c", "/a/b/c", 0},
    {"/a/", "/a/", 0},
    {"/a/../admin", "/admin", 0},
    {"/a/%2e%2e/admin", "/admin", 0},
    {"/a/%2E%2E/admin", "/admin", 0},
    {"/a/.%2e/admin", "/admin", 0},
    {"/a/%2e./admin", "/admin", 0},
    {"//admin", "/admin", 0},
    {"///admin//x///", "/admin/x/", 0},
    {"/a/./b", "/a/b", 0},
    {"/a/%2e/b", "/a/b", 0},
    {"/./a", "/a", 0},
    {"/a/.", "/a/", 0},
    {"/a/..", "/", 0},
    {"/a/b/..", "/a/", 0},
    {"/a/b/../", "/a/", 0},
    {"/a/b/../../c", "/c", 0},
    {"/a//../b", "/b", 0},
    {"/a/%252e", "/a/%252e", 0}, /* double encoding stays encoded */
    {"/a/%252e%252e/admin", "/a/%252e%252e/admin", 0},
    {"/a/%252F", "/a/%252F", 0},
    {"/%61dmin", "/admin", 0}, /* unreserved decoded */
    {"/%41%5a%7e%2d%5f", "/AZ~-_", 0},
    {"/a%20b", "/a%20b", 0}, /* reserved/other kept encoded */
    {"/a%3fb", "/a%3Fb", 0}, /* hex uppercased */
    {"/a%3Bb", "/a%3Bb", 0},
    {"/caf%c3%a9", "/caf%C3%A9", 0},
    {"/a?x=1", "/a", 0},
    {"/a/../b?../../c", "/b", 0},
    {"/v1/items;v=1", "/v1/items;v=1", 0},
    {"/a/...", "/a/...", 0}, /* not a dot-segment */
    {"/a/..b/.c", "/a/..b/.c", 0},
    {"/a:b@c!$&'()*+,=", "/a:b@c!$&'()*+,=", 0},
    {"/admin/./../admin", "/admin", 0},
    {"/.well-known/x", "/.well-known/x", 0},
};

/* Refused, with the status. */
static const path_case refused[] = {
    {"/admin%2Fx", NULL, 400},
    {"/admin%2fx", NULL, 400},
    {"/a/..%2f..%2fetc", NULL, 400},
    {"/admin%5Cx", NULL, 400},
    {"/admin%5cx", NULL, 400},
    {"/admin\\x", NULL, 400},
    {"/a/..\\admin", NULL, 400},
    {"/a%00", NULL, 400},
    {"/a%0d%0aX-Injected:%201", NULL, 400},
    {"/a%7f", NULL, 400},
    {"/a%1", NULL, 400},
    {"/a%", NULL, 400},
    {"/a%zz", NULL, 400},
    {"/a%g0", NULL, 400},
    {"/..", NULL, 400}, /* climbs above the root */
    {"/../admin", NULL, 400},
    {"/%2e%2e/admin", NULL, 400},
    {"/a/../../admin", NULL, 400},
    {"//../admin", NULL, 400},
    {"/a/..;/admin", NULL, 400}, /* Tomcat path parameter on a dot-segment */
    {"/a/.;x/admin", NULL, 400},
    {"/a/%2e%2e;/admin", NULL, 400},
    {"admin", NULL, 400}, /* not origin-form */
    {"", NULL, 400},
    {"?x", NULL, 400},
    {"*", NULL, 400},
    {"http://h/a", NULL, 400},
    {"/a b", NULL, 400},
    {"/a#frag", NULL, 400},
    {"/a\"b", NULL, 400},
    {"/a<b>", NULL, 400},
    {"/caf\xc3\xa9", NULL, 400},
    {"/a\tb", NULL, 400},
    {"/a\rb", NULL, 400},
    {"/a?x\ny", NULL, 400}, /* the query is checked too */
    {"/a?x%zz", NULL, 400},
    {"/a?x%2", NULL, 400},
};

static void test_accepted_table(void **state)
{
    char out[PROXY_HTTP_PATH_MAX + 1];
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        const path_case *c = &accepted[i];
        size_t n = 0;
        proxy_http_error err = {0, NULL};
        int rc = proxy_http_path_normalize(c->in, strlen(c->in), out, sizeof(out), &n, NULL, &err);
        if (rc != 0)
            fail_msg("\"%s\": refused (%s)", c->in, err.reason ? err.reason : "-");
        if (n != strlen(c->want) || strcmp(out, c->want) != 0)
            fail_msg("\"%s\": got \"%s\", want \"%s\"", c->in, out, c->want);
        /* idempotent */
        char again[PROXY_HTTP_PATH_MAX + 1];
        size_t m = 0;
        assert_int_equal(proxy_http_path_normalize(out, n, again, sizeof(again), &m, NULL, NULL),
                         0);
        if (m != n || memcmp(again, out, n) != 0)
            fail_msg("\"%s\": not idempotent: \"%s\" then \"%s\"", c->in, out, again);
    }
}

static void test_refused_table(void **state)
{
    char out[PROXY_HTTP_PATH_MAX + 1];
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const path_case *c = &refused[i];
        size_t n = 0;
        proxy_http_error err = {0, NULL};
        int rc = proxy_http_path_normalize(c->in, strlen(c->in), out, sizeof(out), &n, NULL, &err);
        if (rc >= 0)
            fail_msg("\"%s\": accepted as \"%s\"", c->in, out);
        assert_int_equal(rc, WARD_EINVAL);
        if (err.status != c->status || err.reason == NULL)
            fail_msg("\"%s\": status %d, want %d", c->in, err.status, c->status);
    }
}

static void test_literal_nul_refused(void **state)
{
    static const char p[] = "/a\0b";
    char out[16];
    size_t n;
    proxy_http_error err = {0, NULL};
    assert_int_equal(proxy_http_path_normalize(p, 4, out, sizeof(out), &n, NULL, &err),
                     WARD_EINVAL);
    assert_int_equal(err.status, 400);
    assert_non_null(strstr(err.reason, "NUL"));
}

static void test_reasons_name_the_problem(void **state)
{
    char out[64];
    size_t n;
    proxy_http_error err = {0, NULL};
    assert_true(proxy_http_path_normalize("/a%2Fb", 6, out, sizeof(out), &n, NULL, &err) < 0);
    assert_non_null(strstr(err.reason, "encoded slash"));
    assert_true(proxy_http_path_normalize("/../a", 5, out, sizeof(out), &n, NULL, &err) < 0);
    assert_non_null(strstr(err.reason, "above the root"));
    assert_true(proxy_http_path_normalize("/a\\b", 4, out, sizeof(out), &n, NULL, &err) < 0);
    assert_non_null(strstr(err.reason, "backslash"));
}

static void test_query_returned(void **state)
{
    char out[64];
    size_t n;
    proxy_slice q = {NULL, 0};
    static const char t[] = "/a/./b?x=1&y=%2F?z";
    assert_int_equal(proxy_http_path_normalize(t, strlen(t), out, sizeof(out), &n, &q, NULL), 0);
    assert_string_equal(out, "/a/b");
    assert_int_equal(q.len, strlen("x=1&y=%2F?z"));
    assert_memory_equal(q.ptr, "x=1&y=%2F?z", q.len);
    assert_ptr_equal(q.ptr, t + 7);
    /* "?" alone: present and empty; none: absent */
    assert_int_equal(proxy_http_path_normalize("/a?", 3, out, sizeof(out), &n, &q, NULL), 0);
    assert_non_null(q.ptr);
    assert_int_equal(q.len, 0);
    assert_int_equal(proxy_http_path_normalize("/a", 2, out, sizeof(out), &n, &q, NULL), 0);
    assert_null(q.ptr);
}

static void test_length_bound(void **state)
{
    size_t len = PROXY_HTTP_PATH_MAX;
    char *in = malloc(len + 2);
    char *out = malloc(len + 2);
    assert_non_null(in);
    assert_non_null(out);
    in[0] = '/';
    memset(in + 1, 'a', len);
    size_t n;
    proxy_http_error err = {0, NULL};
    assert_int_equal(proxy_http_path_normalize(in, len, out, len + 1, &n, NULL, &err), 0);
    assert_int_equal(n, len);
    assert_int_equal(proxy_http_path_normalize(in, len + 1, out, len + 2, &n, NULL, &err),
                     WARD_ELIMIT);
    assert_int_equal(err.status, 414);
    /* the query does not count */
    in[len] = '?';
    assert_int_equal(proxy_http_path_normalize(in, len + 1, out, len + 2, &n, NULL, &err), 0);
    free(in);
    free(out);
}

static void test_small_output_buffer_refused(void **state)
{
    char out[5];
    size_t n;
    proxy_http_error err = {0, NULL};
    assert_true(proxy_http_path_normalize("/abcd", 5, out, sizeof(out), &n, NULL, &err) < 0);
    assert_int_equal(proxy_http_path_normalize("/abc", 4, out, sizeof(out), &n, NULL, &err), 0);
    assert_string_equal(out, "/abc");
    /* the output never grows, so len + 1 always suffices */
    assert_int_equal(proxy_http_path_normalize("/%7e", 4, out, sizeof(out), &n, NULL, &err), 0);
    assert_string_equal(out, "/~");
    assert_int_equal(n, 2);
}

static void test_output_shape(void **state)
{
    /* a mix of everything: never "//", "/./", "/../" in the output */
    static const char *in[] = {"/a//b/./c/../d//", "/%2e/%2e%2e/x/..//./y", "/x/y/z/../../..//w"};
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char out[64];
        size_t n;
        proxy_http_error err = {0, NULL};
        int rc = proxy_http_path_normalize(in[i], strlen(in[i]), out, sizeof(out), &n, NULL, &err);
        if (rc < 0)
            continue;
        assert_null(strstr(out, "//"));
        assert_null(strstr(out, "/./"));
        assert_null(strstr(out, "/../"));
    }
    char out[64];
    size_t n;
    assert_int_equal(
        proxy_http_path_normalize("/a//b/./c/../d//", 16, out, sizeof(out), &n, NULL, NULL), 0);
    assert_string_equal(out, "/a/b/d/");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted_table),
        cmocka_unit_test(test_refused_table),
        cmocka_unit_test(test_literal_nul_refused),
        cmocka_unit_test(test_reasons_name_the_problem),
        cmocka_unit_test(test_query_returned),
        cmocka_unit_test(test_length_bound),
        cmocka_unit_test(test_small_output_buffer_refused),
        cmocka_unit_test(test_output_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
