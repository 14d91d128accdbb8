/* test_common.c - unit tests of the shared base: errors, buffers, diagnostics, files, numbers, SPIFFE IDs, IP/CIDR */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ward.h"

#define S(lit) (lit), (sizeof(lit) - 1) /* a literal as (ptr, len), NUL bytes included */

static char tmpdir[64];

/* ======================================================================== */
/* SPIFFE IDs: the table                                                     */
/* ======================================================================== */

typedef struct spiffe_case {
    const char *id;
    size_t len;       /* 0 = strlen(id) */
    bool valid;
    const char *td;   /* expected trust domain when valid */
    const char *path; /* expected path when valid */
    const char *err;  /* substring the error must contain when invalid (NULL = any) */
} spiffe_case;

#define OK(id, td, path) {id, 0, true, td, path, NULL}
#define BAD(id, err) {id, 0, false, NULL, NULL, err}
#define BADN(lit, err) {lit, sizeof(lit) - 1, false, NULL, NULL, err}

static const char E_SCHEME[] = "must start with \"spiffe://\"";
static const char E_EMPTY_TD[] = "empty trust domain";
static const char E_TD_CHAR[] = "outside [a-z0-9._-]";
static const char E_LOWER[] = "must be lowercase";
static const char E_PORT[] = "must not include a port";
static const char E_USERINFO[] = "must not include userinfo";
static const char E_QUERY[] = "must not have a query";
static const char E_FRAGMENT[] = "must not have a fragment";
static const char E_PERCENT[] = "must not be percent-encoded";
static const char E_SLASH[] = "must not end with a slash";
static const char E_EMPTY_SEG[] = "empty segment";
static const char E_DOT[] = "dot segment";
static const char E_PATH_CHAR[] = "outside [A-Za-z0-9._-]";

static const spiffe_case spiffe_cases[] = {
    /* valid */
    OK("spiffe://example.org", "example.org", ""),
    OK("spiffe://example.org/ns/shop/sa/checkout", "example.org", "/ns/shop/sa/checkout"),
    OK("spiffe://example.org/a", "example.org", "/a"),
    OK("spiffe://a", "a", ""),
    OK("spiffe://1.2.3.4/x", "1.2.3.4", "/x"),
    OK("spiffe://my_td-1.example/x", "my_td-1.example", "/x"),
    OK("spiffe://example.org/Path/UPPER", "example.org", "/Path/UPPER"),
    OK("spiffe://example.org/a.b/c-d/e_f", "example.org", "/a.b/c-d/e_f"),
    OK("spiffe://example.org/...", "example.org", "/..."),
    OK("spiffe://example.org/.hidden", "example.org", "/.hidden"),
    OK("spiffe://example.org/a..b", "example.org", "/a..b"),
    OK("spiffe://example.org/b.", "example.org", "/b."),
    OK("spiffe://example.org/ns/default/sa/default", "example.org", "/ns/default/sa/default"),
    OK("spiffe://td/0/1/2", "td", "/0/1/2"),
    OK("spiffe://example.org/_", "example.org", "/_"),
    OK("spiffe://example.org/-", "example.org", "/-"),
    OK("spiffe://xn--bcher-kva.example/x", "xn--bcher-kva.example", "/x"),
    OK("spiffe://example.org/ns/a/sa/b/c/d/e/f", "example.org", "/ns/a/sa/b/c/d/e/f"),
    OK("spiffe://prod.eu-west-1.corp.example.com/ns/x", "prod.eu-west-1.corp.example.com", "/ns/x"),
    OK("spiffe://example.org/ABCxyz019._-", "example.org", "/ABCxyz019._-"),
    /* scheme */
    BAD("", E_SCHEME),
    BAD("spiffe:/", E_SCHEME),
    BAD("SPIFFE://example.org", E_SCHEME),
    BAD("Spiffe://example.org", E_SCHEME),
    BAD("spiffe:/example.org", E_SCHEME),
    BAD("spiffe:example.org", E_SCHEME),
    BAD("spiffe//example.org", E_SCHEME),
    BAD("http://example.org/ns/a", E_SCHEME),
    BAD("https://example.org/ns/a", E_SCHEME),
    BAD(" spiffe://example.org", E_SCHEME),
    BAD("example.org/ns/a", E_SCHEME),
    /* trust domain */
    BAD("spiffe://", E_EMPTY_TD),
    BAD("spiffe:///path", E_EMPTY_TD),
    BAD("spiffe://Example.org", E_LOWER),
    BAD("spiffe://EXAMPLE.ORG/a", E_LOWER),
    BAD("spiffe://example.org:8080/a", E_PORT),
    BAD("spiffe://example.org:8080", E_PORT),
    BAD("spiffe://user@example.org/a", E_USERINFO),
    BAD("spiffe://user:pass@example.org/a", NULL),
    BAD("spiffe://example.org?x=1", E_QUERY),
    BAD("spiffe://example.org#frag", E_FRAGMENT),
    BAD("spiffe://example%2eorg/a", E_PERCENT),
    BAD("spiffe://exa mple.org", E_TD_CHAR),
    BAD("spiffe://example.org ", E_TD_CHAR),
    BAD("spiffe://example.org\\a", E_TD_CHAR),
    BAD("spiffe://[::1]/a", E_TD_CHAR),
    BAD("spiffe://exam*ple.org", E_TD_CHAR),
    BAD("spiffe://b\xc3\xbc" "cher.example/a", E_TD_CHAR),
    BADN("spiffe://exa\0mple.org", E_TD_CHAR),
    /* path */
    BAD("spiffe://example.org/", E_SLASH),
    BAD("spiffe://example.org/a/", E_SLASH),
    BAD("spiffe://example.org/ns/shop/sa/x/", E_SLASH),
    BAD("spiffe://example.org//a", E_EMPTY_SEG),
    BAD("spiffe://example.org/a//b", E_EMPTY_SEG),
    BAD("spiffe://example.org/.", E_DOT),
    BAD("spiffe://example.org/..", E_DOT),
    BAD("spiffe://example.org/a/./b", E_DOT),
    BAD("spiffe://example.org/a/../b", E_DOT),
    BAD("spiffe://example.org/a/..", E_DOT),
    BAD("spiffe://example.org/a?x=1", E_QUERY),
    BAD("spiffe://example.org/a?", E_QUERY),
    BAD("spiffe://example.org/a#frag", E_FRAGMENT),
    BAD("spiffe://example.org/a%20b", E_PERCENT),
    BAD("spiffe://example.org/%2e%2e", E_PERCENT),
    BAD("spiffe://example.org/a b", E_PATH_CHAR),
    BAD("spiffe://example.org/a*", E_PATH_CHAR),
    BAD("spiffe://example.org/a+b", E_PATH_CHAR),
    BAD("spiffe://example.org/a~b", E_PATH_CHAR),
    BAD("spiffe://example.org/a:b", E_PATH_CHAR),
    BAD("spiffe://example.org/a@b", E_PATH_CHAR),
    BAD("spiffe://example.org/a\\b", E_PATH_CHAR),
    BAD("spiffe://example.org/ns/caf\xc3\xa9", E_PATH_CHAR),
    BAD("spiffe://example.org/a\nb", E_PATH_CHAR),
    BAD("spiffe://example.org/a/b\n", E_PATH_CHAR),
    BADN("spiffe://example.org/a\0b", E_PATH_CHAR),
    BADN("spiffe://example.org/a\0", E_PATH_CHAR),
};

static void test_spiffe_case(void **state)
{
    const spiffe_case *c = *state;
    size_t len = c->len ? c->len : strlen(c->id);
    /* parse a heap copy without a terminator so over-reads show under ASan */
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, c->id, len);
    ward_spiffe_id out = {0};
    ward_err err;
    ward_err_clear(&err);
    int rc = ward_spiffe_id_parse(copy, len, &out, &err);
    if (c->valid) {
        if (rc != 0)
            fail_msg("%s: rejected: %s", c->id, err.msg);
        assert_int_equal(out.td_len, strlen(c->td));
        assert_memory_equal(out.td, c->td, out.td_len);
        assert_int_equal(out.path_len, strlen(c->path));
        if (out.path_len > 0)
            assert_memory_equal(out.path, c->path, out.path_len);
        assert_ptr_equal(out.td, copy + strlen("spiffe://")); /* never copied or normalized */
    } else {
        if (rc == 0)
            fail_msg("%s: accepted", c->id);
        assert_int_equal(rc, WARD_EINVAL);
        assert_true(err.msg[0] != '\0');
        if (c->err != NULL && strstr(err.msg, c->err) == NULL)
            fail_msg("%s: error \"%s\" does not mention \"%s\"", c->id, err.msg, c->err);
    }
    free(copy);
}

/* ---- SPIFFE IDs: limits and API details --------------------------------- */

/* "spiffe://" + td of td_len 'a's + path of path_len bytes "/aaa...". */
static char *make_id(size_t td_len, size_t path_len, size_t *len)
{
    size_t n = 9 + td_len + path_len;
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, "spiffe://", 9);
    memset(s + 9, 'a', td_len);
    if (path_len > 0) {
        s[9 + td_len] = '/';
        memset(s + 10 + td_len, 'b', path_len - 1);
    }
    s[n] = '\0';
    *len = n;
    return s;
}

static void test_spiffe_td_255_bytes_accepted(void **state)
{
    size_t len;
    char *s = make_id(255, 4, &len);
    ward_spiffe_id id;
    assert_int_equal(ward_spiffe_id_parse(s, len, &id, NULL), 0);
    assert_int_equal(id.td_len, 255);
    free(s);
}

static void test_spiffe_td_256_bytes_rejected(void **state)
{
    size_t len;
    char *s = make_id(256, 4, &len);
    ward_spiffe_id id;
    ward_err err;
    assert_int_equal(ward_spiffe_id_parse(s, len, &id, &err), WARD_EINVAL);
    assert_non_null(strstr(err.msg, "trust domain longer than 255 bytes"));
    free(s);
}

static void test_spiffe_id_2048_bytes_accepted(void **state)
{
    size_t len;
    char *s = make_id(11, 2048 - 9 - 11, &len);
    assert_int_equal(len, 2048);
    ward_spiffe_id id;
    assert_int_equal(ward_spiffe_id_parse(s, len, &id, NULL), 0);
    assert_int_equal(id.path_len, 2048 - 9 - 11);
    free(s);
}

static void test_spiffe_id_2049_bytes_rejected(void **state)
{
    size_t len;
    char *s = make_id(11, 2049 - 9 - 11, &len);
    ward_spiffe_id id;
    ward_err err;
    assert_int_equal(ward_spiffe_id_parse(s, len, &id, &err), WARD_EINVAL);
    assert_non_null(strstr(err.msg, "longer than 2048 bytes"));
    free(s);
}

static void test_spiffe_parse_respects_len(void **state)
{
    /* only the first len bytes count: the rest of the string is not part of the ID */
    const char *s = "spiffe://example.org/ns/a?garbage";
    ward_spiffe_id id;
    assert_int_equal(ward_spiffe_id_parse(s, strlen("spiffe://example.org/ns/a"), &id, NULL), 0);
    assert_int_equal(id.path_len, strlen("/ns/a"));
}

static void test_spiffe_parse_null_out_and_err(void **state)
{
    assert_int_equal(ward_spiffe_id_parse(S("spiffe://example.org/a"), NULL, NULL), 0);
    assert_int_equal(ward_spiffe_id_parse(S("spiffe://example.org/"), NULL, NULL), WARD_EINVAL);
}

static void test_spiffe_invalid_leaves_out_untouched(void **state)
{
    ward_spiffe_id id = {.td = "sentinel", .td_len = 8, .path = "", .path_len = 0};
    assert_int_equal(ward_spiffe_id_parse(S("spiffe://example.org/a/"), &id, NULL), WARD_EINVAL);
    assert_string_equal(id.td, "sentinel");
}

/* ---- namespaces ---------------------------------------------------------- */

/* Parses id, extracts the namespace: returns it (static buffer) or NULL if none. */
static const char *ns_of(const char *s)
{
    static char buf[256];
    ward_spiffe_id id;
    assert_int_equal(ward_spiffe_id_parse(s, strlen(s), &id, NULL), 0);
    const char *ns = NULL;
    size_t ns_len = 0;
    if (!ward_spiffe_id_namespace(&id, &ns, &ns_len))
        return NULL;
    assert_true(ns_len < sizeof(buf));
    memcpy(buf, ns, ns_len);
    buf[ns_len] = '\0';
    return buf;
}

static void test_spiffe_namespace_workload_id(void **state)
{
    assert_string_equal(ns_of("spiffe://example.org/ns/shop/sa/checkout"), "shop");
}

static void test_spiffe_namespace_last_segment(void **state)
{
    assert_string_equal(ns_of("spiffe://example.org/ns/shop"), "shop");
}

static void test_spiffe_namespace_after_other_segments(void **state)
{
    assert_string_equal(ns_of("spiffe://example.org/cluster/c1/ns/ops/sa/x"), "ops");
}

static void test_spiffe_namespace_first_ns_segment_wins(void **state)
{
    assert_string_equal(ns_of("spiffe://example.org/ns/ns/sa/x"), "ns");
    assert_string_equal(ns_of("spiffe://example.org/ns/a/ns/b"), "a");
}

static void test_spiffe_namespace_none_without_path(void **state)
{
    assert_null(ns_of("spiffe://example.org"));
}

static void test_spiffe_namespace_none_when_ns_is_last(void **state)
{
    assert_null(ns_of("spiffe://example.org/ns"));
    assert_null(ns_of("spiffe://example.org/sa/x/ns"));
}

static void test_spiffe_namespace_requires_whole_segment(void **state)
{
    assert_null(ns_of("spiffe://example.org/nsx/shop"));
    assert_null(ns_of("spiffe://example.org/xns/shop"));
    assert_null(ns_of("spiffe://example.org/sa/ns-shop"));
}

static void test_spiffe_namespace_case_sensitive(void **state)
{
    assert_null(ns_of("spiffe://example.org/NS/shop"));
    assert_string_equal(ns_of("spiffe://example.org/ns/Shop"), "Shop");
}

static void test_spiffe_namespace_not_from_trust_domain(void **state)
{
    assert_null(ns_of("spiffe://ns/shop")); /* "ns" is the trust domain, "shop" the only segment */
}

/* ---- trust domain names -------------------------------------------------- */

static void test_spiffe_td_valid_names(void **state)
{
    assert_true(ward_spiffe_td_valid(S("example.org")));
    assert_true(ward_spiffe_td_valid(S("a")));
    assert_true(ward_spiffe_td_valid(S("my_td-1.example")));
    assert_true(ward_spiffe_td_valid(S("10.0.0.1")));
}

static void test_spiffe_td_valid_length_limit(void **state)
{
    char s[257];
    memset(s, 'a', sizeof(s));
    assert_true(ward_spiffe_td_valid(s, 255));
    assert_false(ward_spiffe_td_valid(s, 256));
}

static void test_spiffe_td_invalid_names(void **state)
{
    assert_false(ward_spiffe_td_valid(S("")));
    assert_false(ward_spiffe_td_valid(S("Example.org")));
    assert_false(ward_spiffe_td_valid(S("example.org:443")));
    assert_false(ward_spiffe_td_valid(S("example.org/")));
    assert_false(ward_spiffe_td_valid(S("spiffe://example.org")));
    assert_false(ward_spiffe_td_valid(S("user@example.org")));
    assert_false(ward_spiffe_td_valid(S("exa mple.org")));
    assert_false(ward_spiffe_td_valid(S("example.org*")));
    assert_false(ward_spiffe_td_valid(S("exa\0mple.org")));
}

/* ======================================================================== */
/* IP addresses                                                              */
/* ======================================================================== */

static void test_ip_parse_ipv4(void **state)
{
    ward_ip ip;
    assert_int_equal(ward_ip_parse(S("10.1.2.3"), &ip), 0);
    assert_int_equal(ip.family, 4);
    assert_memory_equal(ip.addr, ((uint8_t[]){10, 1, 2, 3}), 4);
    assert_int_equal(ward_ip_parse(S("255.255.255.255"), &ip), 0);
    assert_int_equal(ward_ip_parse(S("0.0.0.0"), &ip), 0);
}

static void test_ip_parse_ipv6(void **state)
{
    ward_ip ip;
    static const uint8_t want[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
    assert_int_equal(ward_ip_parse(S("2001:db8::1"), &ip), 0);
    assert_int_equal(ip.family, 6);
    assert_memory_equal(ip.addr, want, 16);
    assert_int_equal(ward_ip_parse(S("::1"), &ip), 0);
    assert_int_equal(ip.family, 6);
    assert_int_equal(ward_ip_parse(S("::"), &ip), 0);
    assert_int_equal(ward_ip_parse(S("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), &ip), 0);
}

static void test_ip_parse_mapped_is_ipv4(void **state)
{
    ward_ip ip;
    assert_int_equal(ward_ip_parse(S("::ffff:10.1.2.3"), &ip), 0);
    assert_int_equal(ip.family, 4);
    assert_memory_equal(ip.addr, ((uint8_t[]){10, 1, 2, 3}), 4);
    /* the same address written in hex */
    assert_int_equal(ward_ip_parse(S("::ffff:a01:203"), &ip), 0);
    assert_int_equal(ip.family, 4);
    assert_memory_equal(ip.addr, ((uint8_t[]){10, 1, 2, 3}), 4);
}

static void test_ip_parse_compat_stays_ipv6(void **state)
{
    ward_ip ip;
    assert_int_equal(ward_ip_parse(S("::10.1.2.3"), &ip), 0); /* deprecated IPv4-compatible */
    assert_int_equal(ip.family, 6);
    assert_int_equal(ward_ip_parse(S("64:ff9b::10.1.2.3"), &ip), 0); /* NAT64 */
    assert_int_equal(ip.family, 6);
}

static void test_ip_parse_rejects_junk(void **state)
{
    static const char *bad[] = {
        "", "1.2.3", "1.2.3.4.5", "256.0.0.1", "01.2.3.4", "1.2.3.-1", "127.1", "0x7f.0.0.1",
        " 1.2.3.4", "1.2.3.4 ", "1.2.3.4/32", "fe80::1%eth0", "::g", "1:2:3:4:5:6:7:8:9", ":::",
        "1::2::3", "localhost", "[::1]", "1.2.3.4:80",
        "0000:0000:0000:0000:0000:0000:0000:0000:0000", /* too long for any address */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ward_ip ip;
        if (ward_ip_parse(bad[i], strlen(bad[i]), &ip) != WARD_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

static void test_ip_parse_rejects_embedded_nul(void **state)
{
    ward_ip ip;
    assert_int_equal(ward_ip_parse(S("1.2.3.4\0"), &ip), WARD_EINVAL);
    assert_int_equal(ward_ip_parse(S("::1\0garbage"), &ip), WARD_EINVAL);
}

static void test_ip_parse_respects_len(void **state)
{
    ward_ip ip;
    assert_int_equal(ward_ip_parse("10.0.0.1garbage", 8, &ip), 0);
    assert_memory_equal(ip.addr, ((uint8_t[]){10, 0, 0, 1}), 4);
}

/* ======================================================================== */
/* CIDR blocks                                                               */
/* ======================================================================== */

static ward_cidr cidr_of(const char *s)
{
    ward_cidr c;
    ward_err err;
    ward_err_clear(&err);
    if (ward_cidr_parse(s, strlen(s), &c, &err) != 0)
        fail_msg("%s: %s", s, err.msg);
    return c;
}

static bool in(const char *cidr, const char *ip)
{
    ward_cidr c = cidr_of(cidr);
    ward_ip a;
    if (ward_ip_parse(ip, strlen(ip), &a) != 0)
        fail_msg("bad test address %s", ip);
    return ward_cidr_contains(&c, &a);
}

/* Expects ward_cidr_parse to fail with a message containing `msg`. */
static void cidr_bad(const char *s, const char *msg)
{
    ward_cidr c;
    ward_err err;
    ward_err_clear(&err);
    int rc = ward_cidr_parse(s, strlen(s), &c, &err);
    if (rc != WARD_EINVAL)
        fail_msg("\"%s\": rc %d, want WARD_EINVAL", s, rc);
    if (msg != NULL && strstr(err.msg, msg) == NULL)
        fail_msg("\"%s\": error \"%s\" does not mention \"%s\"", s, err.msg, msg);
}

static void test_cidr_ipv4_contains(void **state)
{
    assert_true(in("10.0.0.0/8", "10.0.0.0"));
    assert_true(in("10.0.0.0/8", "10.255.1.2"));
    assert_false(in("10.0.0.0/8", "11.0.0.0"));
    assert_false(in("10.0.0.0/8", "9.255.255.255"));
}

static void test_cidr_ipv4_unaligned_prefix(void **state)
{
    assert_true(in("10.0.0.0/9", "10.127.255.255"));
    assert_false(in("10.0.0.0/9", "10.128.0.0"));
    assert_true(in("192.168.1.64/26", "192.168.1.127"));
    assert_false(in("192.168.1.64/26", "192.168.1.128"));
    assert_false(in("192.168.1.64/26", "192.168.1.63"));
}

static void test_cidr_ipv4_zero_prefix_matches_all_ipv4(void **state)
{
    ward_cidr c = cidr_of("0.0.0.0/0");
    assert_int_equal(c.prefix_len, 0);
    assert_true(in("0.0.0.0/0", "1.2.3.4"));
    assert_true(in("0.0.0.0/0", "255.255.255.255"));
    assert_false(in("0.0.0.0/0", "::1"));
}

static void test_cidr_ipv6_zero_prefix_matches_only_ipv6(void **state)
{
    assert_true(in("::/0", "2001:db8::1"));
    assert_true(in("::/0", "::"));
    assert_false(in("::/0", "10.0.0.1"));
    assert_false(in("::/0", "::ffff:10.0.0.1")); /* a mapped address is IPv4 */
}

static void test_cidr_bare_ipv4_is_host_route(void **state)
{
    ward_cidr c = cidr_of("10.0.0.1");
    assert_int_equal(c.prefix_len, 32);
    assert_true(in("10.0.0.1", "10.0.0.1"));
    assert_false(in("10.0.0.1", "10.0.0.2"));
    assert_true(in("10.0.0.1/32", "10.0.0.1"));
}

static void test_cidr_bare_ipv6_is_host_route(void **state)
{
    ward_cidr c = cidr_of("2001:db8::1");
    assert_int_equal(c.prefix_len, 128);
    assert_true(in("2001:db8::1", "2001:db8::1"));
    assert_false(in("2001:db8::1", "2001:db8::2"));
    assert_true(in("2001:db8::1/128", "2001:db8::1"));
}

static void test_cidr_ipv6_contains(void **state)
{
    assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
    assert_false(in("2001:db8::/32", "2001:db9::"));
    assert_true(in("2001:db8::/33", "2001:db8:7fff::1"));
    assert_false(in("2001:db8::/33", "2001:db8:8000::"));
    assert_true(in("fe80::/10", "febf::1"));
    assert_false(in("fe80::/10", "fec0::1"));
}

static void test_cidr_families_never_mix(void **state)
{
    assert_false(in("10.0.0.0/8", "::a00:1"));
    assert_false(in("::a00:0/104", "10.0.0.1"));
}

static void test_cidr_ipv4_block_contains_mapped_address(void **state)
{
    /* a client connecting over an IPv6 socket must not sidestep IPv4 rules */
    assert_true(in("192.168.1.0/24", "::ffff:192.168.1.7"));
    assert_false(in("192.168.1.0/24", "::ffff:192.168.2.7"));
}

static void test_cidr_mapped_block_is_ipv4_block(void **state)
{
    ward_cidr c = cidr_of("::ffff:10.0.0.0/104");
    assert_int_equal(c.ip.family, 4);
    assert_int_equal(c.prefix_len, 8);
    assert_true(in("::ffff:10.0.0.0/104", "10.9.8.7"));
    assert_false(in("::ffff:10.0.0.0/104", "11.0.0.0"));
    assert_true(in("::ffff:0.0.0.0/96", "1.2.3.4"));
    assert_int_equal(cidr_of("::ffff:10.0.0.1").prefix_len, 32);
}

static void test_cidr_mapped_block_prefix_below_96_rejected(void **state)
{
    cidr_bad("::ffff:0.0.0.0/95", "invalid prefix length (96..128)");
    cidr_bad("::ffff:10.0.0.0/8", "invalid prefix length");
}

static void test_cidr_host_bits_rejected(void **state)
{
    cidr_bad("10.0.0.1/8", "host bits set after the /8 prefix");
    cidr_bad("10.128.0.0/8", "host bits set");
    cidr_bad("192.168.1.65/26", "host bits set");
    cidr_bad("1.0.0.0/0", "host bits set");
    cidr_bad("2001:db8::1/32", "host bits set after the /32 prefix");
    cidr_bad("::1/0", "host bits set");
    cidr_bad("::ffff:10.0.0.1/104", "host bits set after the /104 prefix");
}

static void test_cidr_bad_prefix_length_rejected(void **state)
{
    cidr_bad("10.0.0.0/33", "invalid prefix length (0..32)");
    cidr_bad("::/129", "invalid prefix length (0..128)");
    cidr_bad("10.0.0.0/", "invalid prefix length");
    cidr_bad("10.0.0.0/-1", "invalid prefix length");
    cidr_bad("10.0.0.0/+8", "invalid prefix length");
    cidr_bad("10.0.0.0/ 8", "invalid prefix length");
    cidr_bad("10.0.0.0/8 ", "invalid prefix length");
    cidr_bad("10.0.0.0/08", "invalid prefix length");
    cidr_bad("10.0.0.0/0008", "invalid prefix length");
    cidr_bad("10.0.0.0/8/8", "invalid prefix length");
    cidr_bad("10.0.0.0//8", "invalid prefix length");
    cidr_bad("10.0.0.0/abc", "invalid prefix length");
    cidr_bad("10.0.0.0/0x8", "invalid prefix length");
    cidr_bad("10.0.0.0/4294967304", "invalid prefix length"); /* 2^32 + 8 */
}

static void test_cidr_bad_address_rejected(void **state)
{
    cidr_bad("", "invalid IP address");
    cidr_bad("/8", "invalid IP address");
    cidr_bad("junk", "invalid IP address \"junk\"");
    cidr_bad("10.0.0/8", "invalid IP address");
    cidr_bad("300.0.0.0/8", "invalid IP address");
    cidr_bad(" 10.0.0.0/8", "invalid IP address");
    cidr_bad("fe80::%eth0/64", "invalid IP address");
    cidr_bad("*", "invalid IP address");
}

static void test_cidr_bad_address_error_is_bounded(void **state)
{
    char s[600];
    memset(s, 'x', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    ward_cidr c;
    ward_err err;
    assert_int_equal(ward_cidr_parse(s, strlen(s), &c, &err), WARD_EINVAL);
    assert_true(strlen(err.msg) < 100); /* the input is quoted at most 64 bytes */
}

static void test_cidr_parse_null_err(void **state)
{
    ward_cidr c;
    assert_int_equal(ward_cidr_parse(S("10.0.0.1/8"), &c, NULL), WARD_EINVAL);
    assert_int_equal(ward_cidr_parse(S("junk"), &c, NULL), WARD_EINVAL);
}

static void test_cidr_parse_respects_len(void **state)
{
    ward_cidr c;
    assert_int_equal(ward_cidr_parse("10.0.0.0/8junk", 10, &c, NULL), 0);
    assert_int_equal(c.prefix_len, 8);
}

/* ======================================================================== */
/* ward_parse_u64                                                            */
/* ======================================================================== */

static void test_u64_parses_decimal(void **state)
{
    uint64_t v = 1;
    assert_int_equal(ward_parse_u64(S("0"), UINT64_MAX, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(ward_parse_u64(S("65535"), 65535, &v), 0);
    assert_int_equal(v, 65535);
    assert_int_equal(ward_parse_u64(S("007"), 10, &v), 0);
    assert_int_equal(v, 7);
}

static void test_u64_max_value(void **state)
{
    uint64_t v = 0;
    assert_int_equal(ward_parse_u64(S("18446744073709551615"), UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
}

static void test_u64_overflow(void **state)
{
    uint64_t v = 42;
    assert_int_equal(ward_parse_u64(S("18446744073709551616"), UINT64_MAX, &v), WARD_ERANGE);
    assert_int_equal(ward_parse_u64(S("18446744073709551620"), UINT64_MAX, &v), WARD_ERANGE);
    assert_int_equal(ward_parse_u64(S("99999999999999999999999999"), UINT64_MAX, &v), WARD_ERANGE);
    assert_int_equal(v, 42); /* untouched on error */
}

static void test_u64_above_max(void **state)
{
    uint64_t v = 42;
    assert_int_equal(ward_parse_u64(S("65536"), 65535, &v), WARD_ERANGE);
    assert_int_equal(ward_parse_u64(S("1"), 0, &v), WARD_ERANGE);
    assert_int_equal(v, 42);
}

static void test_u64_empty(void **state)
{
    uint64_t v = 42;
    assert_int_equal(ward_parse_u64("", 0, UINT64_MAX, &v), WARD_EINVAL);
    assert_int_equal(ward_parse_u64("123", 0, UINT64_MAX, &v), WARD_EINVAL);
    assert_int_equal(v, 42);
}

static void test_u64_non_digits(void **state)
{
    static const char *bad[] = {"-1", "+1", " 1", "1 ", "0x10", "1.0", "12a", "1e3", "１", "1_000"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 42;
        if (ward_parse_u64(bad[i], strlen(bad[i]), UINT64_MAX, &v) != WARD_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(v, 42);
    }
}

static void test_u64_non_digit_after_overflow_is_invalid(void **state)
{
    uint64_t v = 42;
    assert_int_equal(ward_parse_u64(S("99999999999999999999x"), UINT64_MAX, &v), WARD_EINVAL);
    assert_int_equal(ward_parse_u64(S("99999999999999999999"), 10, &v), WARD_ERANGE);
    assert_int_equal(v, 42);
}

static void test_u64_embedded_nul(void **state)
{
    uint64_t v;
    assert_int_equal(ward_parse_u64(S("1\0002"), UINT64_MAX, &v), WARD_EINVAL);
}

static void test_u64_respects_len(void **state)
{
    uint64_t v = 0;
    assert_int_equal(ward_parse_u64("123abc", 3, UINT64_MAX, &v), 0);
    assert_int_equal(v, 123);
}

/* ======================================================================== */
/* ward_parse_duration                                                       */
/* ======================================================================== */

static uint64_t dur(const char *s)
{
    uint64_t ns = 0;
    int rc = ward_parse_duration(s, strlen(s), UINT64_MAX, &ns);
    if (rc != 0)
        fail_msg("\"%s\": %s", s, ward_strerror(rc));
    return ns;
}

static int dur_rc(const char *s, uint64_t max)
{
    uint64_t ns = 42;
    int rc = ward_parse_duration(s, strlen(s), max, &ns);
    if (rc != 0)
        assert_int_equal(ns, 42); /* untouched on error */
    return rc;
}

static void test_duration_units(void **state)
{
    assert_true(dur("7ns") == 7);
    assert_true(dur("10us") == 10000);
    assert_true(dur("150ms") == 150000000);
    assert_true(dur("2s") == 2000000000ULL);
    assert_true(dur("5m") == 300000000000ULL);
    assert_true(dur("1h") == 3600000000000ULL);
}

static void test_duration_zero(void **state)
{
    assert_true(dur("0s") == 0);
    assert_true(dur("0ms") == 0);
}

static void test_duration_combinations(void **state)
{
    assert_true(dur("1h30m") == 5400000000000ULL);
    assert_true(dur("1m30s") == 90000000000ULL);
    assert_true(dur("1s500ms") == 1500000000ULL);
    assert_true(dur("1h1m1s1ms1us1ns") == 3661001001001ULL);
}

static void test_duration_missing_unit(void **state)
{
    assert_int_equal(dur_rc("10", UINT64_MAX), WARD_EINVAL);
    assert_int_equal(dur_rc("0", UINT64_MAX), WARD_EINVAL);
    assert_int_equal(dur_rc("1h30", UINT64_MAX), WARD_EINVAL);
}

static void test_duration_missing_number(void **state)
{
    assert_int_equal(dur_rc("s", UINT64_MAX), WARD_EINVAL);
    assert_int_equal(dur_rc("1hm", UINT64_MAX), WARD_EINVAL);
    assert_int_equal(dur_rc("", UINT64_MAX), WARD_EINVAL);
}

static void test_duration_unknown_unit(void **state)
{
    static const char *bad[] = {"1x", "1S", "1Ms", "1sec", "1hh", "1d", "1w", "1µs", "1 s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (dur_rc(bad[i], UINT64_MAX) != WARD_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
}

static void test_duration_no_signs_fractions_or_spaces(void **state)
{
    static const char *bad[] = {"1.5s", "-1s", "+1s", " 1s", "1s ", "1s 1m", "1,5s", "1e3ms"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (dur_rc(bad[i], UINT64_MAX) != WARD_EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
}

static void test_duration_overflow(void **state)
{
    assert_true(dur("18446744073709551615ns") == UINT64_MAX);
    assert_int_equal(dur_rc("18446744073709551616ns", UINT64_MAX), WARD_ERANGE);
    assert_true(dur("5124095h") == 5124095ULL * 3600000000000ULL);
    assert_int_equal(dur_rc("5124096h", UINT64_MAX), WARD_ERANGE);
    assert_int_equal(dur_rc("5124095h1h", UINT64_MAX), WARD_ERANGE);
    assert_int_equal(dur_rc("18446744073709551615ns1ns", UINT64_MAX), WARD_ERANGE);
}

static void test_duration_max(void **state)
{
    uint64_t ns = 0;
    assert_int_equal(ward_parse_duration(S("1s"), 1000000000ULL, &ns), 0);
    assert_true(ns == 1000000000ULL);
    assert_int_equal(dur_rc("1s", 999999999ULL), WARD_ERANGE);
    assert_int_equal(dur_rc("1h", 59 * 60000000000ULL), WARD_ERANGE);
    assert_int_equal(dur_rc("1ns", 0), WARD_ERANGE);
    assert_int_equal(dur_rc("0s", 0), 0);
}

/* ======================================================================== */
/* errors                                                                    */
/* ======================================================================== */

static void test_strerror_every_code_distinct(void **state)
{
    const char *seen[12];
    for (int code = 0; code >= WARD_ERESULT; code--) {
        const char *m = ward_strerror(code);
        assert_non_null(m);
        assert_string_not_equal(m, "unknown error");
        for (int j = 0; j < -code; j++)
            assert_string_not_equal(m, seen[j]);
        seen[-code] = m;
    }
}

static void test_strerror_unknown_code(void **state)
{
    assert_string_equal(ward_strerror(-1000), "unknown error");
    assert_string_equal(ward_strerror(1), "unknown error");
}

static void test_err_set_formats(void **state)
{
    ward_err err;
    ward_err_set(&err, "%s:%d: %s", "f.yaml", 3, "bad");
    assert_string_equal(err.msg, "f.yaml:3: bad");
    ward_err_clear(&err);
    assert_string_equal(err.msg, "");
}

static void test_err_set_truncates(void **state)
{
    ward_err err;
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ward_err_set(&err, "%s", big);
    assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
}

static void test_err_null_is_ignored(void **state)
{
    ward_err_set(NULL, "%s", "nothing happens");
    ward_err_clear(NULL);
}

static int try_twice(int first, int second, int *steps)
{
    int rc = 0;
    WARD_TRY(first);
    (*steps)++;
    WARD_TRY(second);
    (*steps)++;
    return 0;
fail:
    (*steps) += 100;
    return rc;
}

static void test_try_returns_first_error(void **state)
{
    int steps = 0;
    assert_int_equal(try_twice(WARD_EIO, 0, &steps), WARD_EIO);
    assert_int_equal(steps, 100);
    steps = 0;
    assert_int_equal(try_twice(0, WARD_ELIMIT, &steps), WARD_ELIMIT);
    assert_int_equal(steps, 101);
}

static void test_try_passes_success(void **state)
{
    int steps = 0;
    assert_int_equal(try_twice(0, 5, &steps), 0); /* positive values are not errors */
    assert_int_equal(steps, 2);
}

/* ======================================================================== */
/* ward_buf                                                                  */
/* ======================================================================== */

static void test_buf_init_is_empty(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_null(b.ptr);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    ward_buf_dispose(&b);
}

static void test_buf_empty_append_terminates(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(ward_buf_append(&b, "", 0), 0);
    assert_non_null(b.ptr);
    assert_string_equal(b.ptr, "");
    ward_buf_dispose(&b);
}

static void test_buf_append_grows(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(ward_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 100000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.ptr[b.len], '\0');
    for (size_t i = 0; i < b.len; i++)
        if (b.ptr[i] != (char)('0' + i % 10))
            fail_msg("byte %zu corrupted", i);
    ward_buf_dispose(&b);
}

static void test_buf_append_binary(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(ward_buf_append(&b, S("a\0b")), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.ptr, "a\0b", 4);
    ward_buf_dispose(&b);
}

static void test_buf_append_huge_fails_cleanly(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(ward_buf_puts(&b, "keep"), 0);
    assert_int_equal(ward_buf_append(&b, "x", SIZE_MAX), WARD_ENOMEM);
    assert_int_equal(ward_buf_append(&b, "x", SIZE_MAX - 4), WARD_ENOMEM);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.ptr, "keep");
    ward_buf_dispose(&b);
}

static void test_buf_puts_putc(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(ward_buf_puts(&b, "ab"), 0);
    assert_int_equal(ward_buf_putc(&b, 'c'), 0);
    assert_int_equal(ward_buf_putc(&b, '\0'), 0);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.ptr, "abc\0", 5);
    ward_buf_dispose(&b);
}

static void test_buf_printf_appends(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(ward_buf_puts(&b, "x="), 0);
    assert_int_equal(ward_buf_printf(&b, "%d,%s", 42, "y"), 0);
    assert_string_equal(b.ptr, "x=42,y");
    assert_int_equal(b.len, 6);
    ward_buf_dispose(&b);
}

static void test_buf_printf_long_output(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(ward_buf_printf(&b, "%5000d|", 7), 0);
    assert_int_equal(b.len, 5001);
    assert_int_equal(b.ptr[4999], '7');
    assert_int_equal(b.ptr[5000], '|');
    assert_int_equal(b.ptr[5001], '\0');
    ward_buf_dispose(&b);
}

static void test_buf_printf_empty_terminates(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(ward_buf_printf(&b, "%s", ""), 0);
    assert_non_null(b.ptr);
    assert_string_equal(b.ptr, "");
    ward_buf_dispose(&b);
}

static void test_buf_reset_keeps_memory(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(ward_buf_puts(&b, "hello"), 0);
    char *p = b.ptr;
    size_t cap = b.cap;
    ward_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_ptr_equal(b.ptr, p);
    assert_int_equal(b.cap, cap);
    assert_string_equal(b.ptr, "");
    ward_buf_reset(&b);
    ward_buf_dispose(&b);
    ward_buf_reset(&b); /* on a never-allocated buffer: a no-op */
    assert_null(b.ptr);
}

static void test_buf_steal_takes_ownership(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(ward_buf_puts(&b, "owned"), 0);
    char *s = ward_buf_steal(&b);
    assert_string_equal(s, "owned");
    assert_null(b.ptr);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(s);
    assert_int_equal(ward_buf_puts(&b, "again"), 0); /* reusable */
    assert_string_equal(b.ptr, "again");
    ward_buf_dispose(&b);
}

static void test_buf_steal_empty_gives_string(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    char *s = ward_buf_steal(&b);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
}

static void test_buf_dispose_twice(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(ward_buf_puts(&b, "x"), 0);
    ward_buf_dispose(&b);
    ward_buf_dispose(&b);
    assert_null(b.ptr);
}

/* ======================================================================== */
/* ward_diag                                                                 */
/* ======================================================================== */

static void test_diag_full_position(void **state)
{
    ward_diag d;
    ward_diag_init(&d);
    assert_int_equal(ward_diag_add(&d, "p.yaml", 12, 7, "rules[%d]: %s", 0, "bad"), WARD_EPOLICY);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.msgs[0], "p.yaml:12:7: rules[0]: bad");
    ward_diag_dispose(&d);
}

static void test_diag_file_only(void **state)
{
    ward_diag d;
    ward_diag_init(&d);
    ward_diag_add(&d, "p.yaml", 0, 0, "cannot read");
    assert_string_equal(d.msgs[0], "p.yaml: cannot read");
    ward_diag_dispose(&d);
}

static void test_diag_line_without_column(void **state)
{
    ward_diag d;
    ward_diag_init(&d);
    ward_diag_add(&d, "p.yaml", 3, 0, "msg");
    assert_string_equal(d.msgs[0], "p.yaml:3: msg");
    ward_diag_dispose(&d);
}

static void test_diag_no_file(void **state)
{
    ward_diag d;
    ward_diag_init(&d);
    ward_diag_add(&d, NULL, 0, 0, "plain");
    ward_diag_add(&d, NULL, 0, 0, "%s", "");
    assert_int_equal(d.n, 2);
    assert_string_equal(d.msgs[0], "plain");
    assert_string_equal(d.msgs[1], "");
    ward_diag_dispose(&d);
}

static void test_diag_keeps_order(void **state)
{
    ward_diag d;
    ward_diag_init(&d);
    for (int i = 0; i < 20; i++)
        ward_diag_add(&d, "f", i + 1, 1, "m%d", i);
    assert_int_equal(d.n, 20);
    assert_string_equal(d.msgs[0], "f:1:1: m0");
    assert_string_equal(d.msgs[19], "f:20:1: m19");
    ward_diag_dispose(&d);
}

static void test_diag_respects_max(void **state)
{
    ward_diag d;
    ward_diag_init(&d);
    d.max = 3;
    for (int i = 0; i < 5; i++)
        assert_int_equal(ward_diag_add(&d, "f", 1, 1, "m%d", i), WARD_EPOLICY);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.msgs[2], "f:1:1: m2");
    ward_diag_dispose(&d);
}

static void test_diag_default_max_100(void **state)
{
    ward_diag d;
    ward_diag_init(&d);
    for (int i = 0; i < 150; i++)
        ward_diag_add(&d, "f", 1, 1, "m");
    assert_int_equal(d.n, 100);
    ward_diag_dispose(&d);
}

static void test_diag_long_message_not_truncated(void **state)
{
    char big[5000];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ward_diag d;
    ward_diag_init(&d);
    ward_diag_add(&d, "f", 1, 2, "%s", big);
    assert_int_equal(strlen(d.msgs[0]), strlen("f:1:2: ") + sizeof(big) - 1);
    ward_diag_dispose(&d);
}

static void test_diag_dispose_resets(void **state)
{
    ward_diag d;
    ward_diag_init(&d);
    ward_diag_add(&d, "f", 1, 1, "m");
    ward_diag_dispose(&d);
    assert_int_equal(d.n, 0);
    assert_null(d.msgs);
    ward_diag_add(&d, "f", 1, 1, "again");
    assert_int_equal(d.n, 1);
    ward_diag_dispose(&d);
}

/* ======================================================================== */
/* ward_file_read                                                            */
/* ======================================================================== */

static int files_setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ward-test-common-XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int files_teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes len bytes to tmpdir/name; returns the path (static buffer). */
static const char *write_tmp(const char *name, const void *data, size_t len)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void test_file_read_regular(void **state)
{
    const char *p = write_tmp("a.txt", "hello\nworld\n", 12);
    char *data = NULL;
    size_t len = 0;
    ward_err err;
    assert_int_equal(ward_file_read(p, 0, &data, &len, &err), 0);
    assert_int_equal(len, 12);
    assert_string_equal(data, "hello\nworld\n");
    free(data);
}

static void test_file_read_binary(void **state)
{
    const char *p = write_tmp("bin", "a\0b\0", 4);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(ward_file_read(p, 0, &data, &len, NULL), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(data, "a\0b\0\0", 5);
    free(data);
}

static void test_file_read_empty(void **state)
{
    const char *p = write_tmp("empty", "", 0);
    char *data = NULL;
    size_t len = 99;
    assert_int_equal(ward_file_read(p, 0, &data, &len, NULL), 0);
    assert_int_equal(len, 0);
    assert_non_null(data);
    assert_string_equal(data, "");
    free(data);
}

static void test_file_read_missing(void **state)
{
    char p[300];
    snprintf(p, sizeof(p), "%s/does-not-exist.yaml", tmpdir);
    char *data = (char *)"sentinel";
    size_t len = 0;
    ward_err err;
    assert_int_equal(ward_file_read(p, 0, &data, &len, &err), WARD_EIO);
    assert_non_null(strstr(err.msg, p));
    assert_non_null(strstr(err.msg, strerror(ENOENT)));
    assert_string_equal(data, "sentinel"); /* untouched on error */
}

static void test_file_read_directory(void **state)
{
    char *data = NULL;
    size_t len = 0;
    ward_err err;
    assert_int_equal(ward_file_read(tmpdir, 0, &data, &len, &err), WARD_EIO);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_null(data);
}

static void test_file_read_device(void **state)
{
    char *data = NULL;
    size_t len = 0;
    ward_err err;
    assert_int_equal(ward_file_read("/dev/zero", 0, &data, &len, &err), WARD_EIO);
    assert_non_null(strstr(err.msg, "not a regular file"));
}

static void test_file_read_over_limit(void **state)
{
    char buf[101];
    memset(buf, 'z', sizeof(buf));
    const char *p = write_tmp("big", buf, sizeof(buf));
    char *data = NULL;
    size_t len = 0;
    ward_err err;
    assert_int_equal(ward_file_read(p, 100, &data, &len, &err), WARD_ELIMIT);
    assert_non_null(strstr(err.msg, "larger than 100 bytes"));
    assert_null(data);
}

static void test_file_read_exactly_at_limit(void **state)
{
    char buf[100];
    memset(buf, 'z', sizeof(buf));
    const char *p = write_tmp("exact", buf, sizeof(buf));
    char *data = NULL;
    size_t len = 0;
    ward_err err;
    ward_err_clear(&err);
    if (ward_file_read(p, 100, &data, &len, &err) != 0)
        fail_msg("rejected: %s", err.msg);
    assert_int_equal(len, 100);
    assert_int_equal(data[100], '\0');
    free(data);
}

static void test_file_read_unknown_size(void **state)
{
    /* /proc files report st_size 0 but have content: the reader must grow */
    char *data = NULL;
    size_t len = 0;
    ward_err err;
    assert_int_equal(ward_file_read("/proc/self/status", 0, &data, &len, &err), 0);
    assert_true(len > 0);
    assert_int_equal(strlen(data), len);
    assert_non_null(strstr(data, "Name:"));
    free(data);
}

static void test_file_read_unknown_size_over_limit(void **state)
{
    char *data = NULL;
    size_t len = 0;
    ward_err err;
    assert_int_equal(ward_file_read("/proc/self/status", 10, &data, &len, &err), WARD_ELIMIT);
    assert_non_null(strstr(err.msg, "larger than 10 bytes"));
}

/* ======================================================================== */

#define T(f) cmocka_unit_test(f)

static const struct CMUnitTest fixed_tests[] = {
    T(test_spiffe_td_255_bytes_accepted),
    T(test_spiffe_td_256_bytes_rejected),
    T(test_spiffe_id_2048_bytes_accepted),
    T(test_spiffe_id_2049_bytes_rejected),
    T(test_spiffe_parse_respects_len),
    T(test_spiffe_parse_null_out_and_err),
    T(test_spiffe_invalid_leaves_out_untouched),
    T(test_spiffe_namespace_workload_id),
    T(test_spiffe_namespace_last_segment),
    T(test_spiffe_namespace_after_other_segments),
    T(test_spiffe_namespace_first_ns_segment_wins),
    T(test_spiffe_namespace_none_without_path),
    T(test_spiffe_namespace_none_when_ns_is_last),
    T(test_spiffe_namespace_requires_whole_segment),
    T(test_spiffe_namespace_case_sensitive),
    T(test_spiffe_namespace_not_from_trust_domain),
    T(test_spiffe_td_valid_names),
    T(test_spiffe_td_valid_length_limit),
    T(test_spiffe_td_invalid_names),
    T(test_ip_parse_ipv4),
    T(test_ip_parse_ipv6),
    T(test_ip_parse_mapped_is_ipv4),
    T(test_ip_parse_compat_stays_ipv6),
    T(test_ip_parse_rejects_junk),
    T(test_ip_parse_rejects_embedded_nul),
    T(test_ip_parse_respects_len),
    T(test_cidr_ipv4_contains),
    T(test_cidr_ipv4_unaligned_prefix),
    T(test_cidr_ipv4_zero_prefix_matches_all_ipv4),
    T(test_cidr_ipv6_zero_prefix_matches_only_ipv6),
    T(test_cidr_bare_ipv4_is_host_route),
    T(test_cidr_bare_ipv6_is_host_route),
    T(test_cidr_ipv6_contains),
    T(test_cidr_families_never_mix),
    T(test_cidr_ipv4_block_contains_mapped_address),
    T(test_cidr_mapped_block_is_ipv4_block),
    T(test_cidr_mapped_block_prefix_below_96_rejected),
    T(test_cidr_host_bits_rejected),
    T(test_cidr_bad_prefix_length_rejected),
    T(test_cidr_bad_address_rejected),
    T(test_cidr_bad_address_error_is_bounded),
    T(test_cidr_parse_null_err),
    T(test_cidr_parse_respects_len),
    T(test_u64_parses_decimal),
    T(test_u64_max_value),
    T(test_u64_overflow),
    T(test_u64_above_max),
    T(test_u64_empty),
    T(test_u64_non_digits),
    T(test_u64_non_digit_after_overflow_is_invalid),
    T(test_u64_embedded_nul),
    T(test_u64_respects_len),
    T(test_duration_units),
    T(test_duration_zero),
    T(test_duration_combinations),
    T(test_duration_missing_unit),
    T(test_duration_missing_number),
    T(test_duration_unknown_unit),
    T(test_duration_no_signs_fractions_or_spaces),
    T(test_duration_overflow),
    T(test_duration_max),
    T(test_strerror_every_code_distinct),
    T(test_strerror_unknown_code),
    T(test_err_set_formats),
    T(test_err_set_truncates),
    T(test_err_null_is_ignored),
    T(test_try_returns_first_error),
    T(test_try_passes_success),
    T(test_buf_init_is_empty),
    T(test_buf_empty_append_terminates),
    T(test_buf_append_grows),
    T(test_buf_append_binary),
    T(test_buf_append_huge_fails_cleanly),
    T(test_buf_puts_putc),
    T(test_buf_printf_appends),
    T(test_buf_printf_long_output),
    T(test_buf_printf_empty_terminates),
    T(test_buf_reset_keeps_memory),
    T(test_buf_steal_takes_ownership),
    T(test_buf_steal_empty_gives_string),
    T(test_buf_dispose_twice),
    T(test_diag_full_position),
    T(test_diag_file_only),
    T(test_diag_line_without_column),
    T(test_diag_no_file),
    T(test_diag_keeps_order),
    T(test_diag_respects_max),
    T(test_diag_default_max_100),
    T(test_diag_long_message_not_truncated),
    T(test_diag_dispose_resets),
    T(test_file_read_regular),
    T(test_file_read_binary),
    T(test_file_read_empty),
    T(test_file_read_missing),
    T(test_file_read_directory),
    T(test_file_read_device),
    T(test_file_read_over_limit),
    T(test_file_read_exactly_at_limit),
    T(test_file_read_unknown_size),
    T(test_file_read_unknown_size_over_limit),
};

int main(void)
{
    /* One group (tests/run.sh reads one summary line per binary): the fixed
     * tests, then one test per row of the SPIFFE table, named after the ID. */
    enum { N_FIXED = sizeof(fixed_tests) / sizeof(fixed_tests[0]) };
    enum { N_SPIFFE = sizeof(spiffe_cases) / sizeof(spiffe_cases[0]) };
    struct CMUnitTest *tests = calloc(N_FIXED + N_SPIFFE, sizeof(*tests));
    char **names = calloc(N_SPIFFE, sizeof(*names));
    if (tests == NULL || names == NULL)
        return 1;
    memcpy(tests, fixed_tests, sizeof(fixed_tests));
    for (size_t i = 0; i < N_SPIFFE; i++) {
        const spiffe_case *c = &spiffe_cases[i];
        ward_buf b;
        ward_buf_init(&b);
        ward_buf_printf(&b, "spiffe_%s[%zu] \"", c->valid ? "valid" : "invalid", i);
        size_t len = c->len ? c->len : strlen(c->id);
        for (size_t j = 0; j < len; j++) {
            unsigned char ch = (unsigned char)c->id[j];
            if (ch < 0x20 || ch >= 0x7f)
                ward_buf_printf(&b, "\\x%02x", ch);
            else
                ward_buf_putc(&b, (char)ch);
        }
        ward_buf_putc(&b, '"');
        names[i] = ward_buf_steal(&b);
        tests[N_FIXED + i] = (struct CMUnitTest){
            .name = names[i],
            .test_func = test_spiffe_case,
            .initial_state = (void *)c,
        };
    }
    int failed = _cmocka_run_group_tests("common", tests, N_FIXED + N_SPIFFE, files_setup,
                                         files_teardown);
    for (size_t i = 0; i < N_SPIFFE; i++)
        free(names[i]);
    free(names);
    free(tests);
    return failed == 0 ? 0 : 1;
}
