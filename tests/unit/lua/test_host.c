/* test_host.c - unit tests of the host functions policies call: regex, templates, CIDR, indexes, SPIFFE */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lua/wlua.h"

/* ---- helpers ------------------------------------------------------------------ */

static int setup(void **state)
{
    wlua_state *st = NULL;
    ward_err err = {{0}};
    assert_int_equal(wlua_new(NULL, &st, &err), 0);
    *state = st;
    return 0;
}

static int teardown(void **state)
{
    wlua_free(*state);
    return 0;
}

/* Runs a chunk that must succeed and return a boolean. */
static bool eval_bool(wlua_state *st, const char *src)
{
    ward_err err = {{0}};
    lua_State *L = wlua_L(st);
    int rc = wlua_load(st, "host.lua", src, strlen(src), &err);
    if (rc != 0)
        print_error("%s\n  -> %s\n", src, err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(lua_type(L, -1), LUA_TBOOLEAN);
    bool b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
}

/* Runs a chunk that must fail with WARD_ELUA; err says why. */
static void eval_error(wlua_state *st, const char *src, ward_err *err)
{
    assert_int_equal(wlua_load(st, "host.lua", src, strlen(src), err), WARD_ELUA);
    assert_int_equal(lua_gettop(wlua_L(st)), 0);
}

typedef struct bytes {
    const char *p;
    size_t n;
} bytes;

#define B(lit) ((bytes){(lit), sizeof(lit) - 1})

/* Calls `function(a, b) return <expr> end` with raw byte strings pushed from
 * C (never through Lua source), returning the boolean result. */
static bool call2(wlua_state *st, const char *expr, bytes a, bytes b)
{
    char src[512];
    snprintf(src, sizeof(src), "return function(a, b) return %s end", expr);
    lua_State *L = wlua_L(st);
    ward_err err = {{0}};
    assert_int_equal(wlua_load(st, "host.lua", src, strlen(src), &err), 0);
    lua_pushlstring(L, a.p, a.n);
    lua_pushlstring(L, b.p, b.n);
    int rc = wlua_call(st, 2, 1, &err);
    if (rc != 0)
        print_error("%s: %s\n", expr, err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(lua_type(L, -1), LUA_TBOOLEAN);
    bool r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- regex ------------------------------------------------------------------------ */

static void test_regex_anchored_both_ends(void **state)
{
    assert_true(eval_bool(*state, "local m = ward.regex('/v2/[0-9]+') "
                                  "return ward.regex_match(m, '/v2/42') and "
                                  "not ward.regex_match(m, 'x/v2/42') and "
                                  "not ward.regex_match(m, '/v2/42x')"));
}

static void test_regex_alternation_anchored_as_a_whole(void **state)
{
    assert_true(eval_bool(*state, "local m = ward.regex('a|b') "
                                  "return ward.regex_match(m, 'a') and ward.regex_match(m, 'b') "
                                  "and not ward.regex_match(m, 'ab') and "
                                  "not ward.regex_match(m, 'ba')"));
}

static void test_regex_explicit_anchors_and_trailing_newline(void **state)
{
    assert_true(eval_bool(*state, "local m = ward.regex('^/v2/[0-9]+$') "
                                  "return ward.regex_match(m, '/v2/7') and "
                                  "not ward.regex_match(m, '/v2/7\\n')"));
}

static void test_regex_compile_error_has_offset(void **state)
{
    ward_err err = {{0}};
    eval_error(*state, "return ward.regex('ab(c')", &err);
    assert_non_null(strstr(err.msg, "ward.regex"));
    assert_non_null(strstr(err.msg, "missing closing parenthesis"));
    assert_non_null(strstr(err.msg, "at offset 4"));
}

static void test_regex_catastrophic_backtracking_hits_limit(void **state)
{
    ward_err err = {{0}};
    double t0 = now();
    eval_error(*state, "local m = ward.regex('(a+)+$') "
                       "return ward.regex_match(m, string.rep('a', 40) .. 'b')",
               &err);
    assert_true(now() - t0 < 2.0);
    assert_non_null(strstr(err.msg, "limit"));
}

static void test_regex_nested_quantifier_limit_interpreted(void **state)
{
    ward_err err = {{0}};
    double t0 = now();
    /* (*NO_JIT) forces the interpreter: the same limits hold there */
    eval_error(*state, "local m = ward.regex('(*NO_JIT)(a|aa)+$') "
                       "return ward.regex_match(m, string.rep('a', 60) .. 'b')",
               &err);
    assert_true(now() - t0 < 2.0);
    assert_non_null(strstr(err.msg, "limit"));
}

static void test_regex_nil_subject_is_false(void **state)
{
    assert_true(eval_bool(*state, "return ward.regex_match(ward.regex('.*'), nil) == false"));
}

static void test_regex_rejects_wrong_matcher(void **state)
{
    ward_err err = {{0}};
    eval_error(*state, "return ward.regex_match(ward.template('/a'), 'x')", &err);
    assert_non_null(strstr(err.msg, "ward.regex"));
    eval_error(*state, "return ward.regex_match({}, 'x')", &err);
}

static void test_regex_bytes_with_nul_and_quotes(void **state)
{
    wlua_state *st = *state;
    assert_true(call2(st, "ward.regex_match(ward.regex(a), b)", B("a\0b\"]]'"), B("a\0b\"]]'")));
    assert_false(call2(st, "ward.regex_match(ward.regex(a), b)", B("a\0b"), B("a")));
    assert_false(call2(st, "ward.regex_match(ward.regex(a), b)", B("a"), B("a\0")));
}

static void test_regex_reused_many_times(void **state)
{
    assert_true(eval_bool(*state, "local m = ward.regex('[a-z]+/[0-9]{1,3}') local n = 0 "
                                  "for i = 1, 1000 do if ward.regex_match(m, 'ab/' .. i) then "
                                  "n = n + 1 end end return n == 999"));
}

/* ---- templates ---------------------------------------------------------------------- */

static void test_template_literal_segments_exact(void **state)
{
    assert_true(eval_bool(*state, "local t = ward.template('/v1/items') "
                                  "return ward.template_match(t, '/v1/items') and "
                                  "not ward.template_match(t, '/v1/items/') and "
                                  "not ward.template_match(t, '/v1/item') and "
                                  "not ward.template_match(t, '/v1/itemsx')"));
}

static void test_template_star_is_one_nonempty_segment(void **state)
{
    assert_true(eval_bool(*state, "local t = ward.template('/users/{*}/orders') "
                                  "return ward.template_match(t, '/users/42/orders') and "
                                  "not ward.template_match(t, '/users//orders') and "
                                  "not ward.template_match(t, '/users/4/2/orders') and "
                                  "not ward.template_match(t, '/users/orders')"));
}

static void test_template_star_last(void **state)
{
    assert_true(eval_bool(*state, "local t = ward.template('/a/{*}') "
                                  "return ward.template_match(t, '/a/b') and "
                                  "not ward.template_match(t, '/a/') and "
                                  "not ward.template_match(t, '/a') and "
                                  "not ward.template_match(t, '/a/b/c')"));
}

static void test_template_doublestar_zero_or_more(void **state)
{
    assert_true(eval_bool(*state, "local t = ward.template('/v1/users/{*}/orders/{**}') "
                                  "return ward.template_match(t, '/v1/users/7/orders') and "
                                  "ward.template_match(t, '/v1/users/7/orders/') and "
                                  "ward.template_match(t, '/v1/users/7/orders/1') and "
                                  "ward.template_match(t, '/v1/users/7/orders/1/items/2') and "
                                  "not ward.template_match(t, '/v1/users/7/ordersx') and "
                                  "not ward.template_match(t, '/v1/users//orders/1')"));
}

static void test_template_doublestar_must_be_last(void **state)
{
    ward_err err = {{0}};
    eval_error(*state, "return ward.template('/a/{**}/b')", &err);
    assert_non_null(strstr(err.msg, "last"));
    eval_error(*state, "return ward.template('/{**}/{**}')", &err);
}

static void test_template_wildcard_must_be_whole_segment(void **state)
{
    ward_err err = {{0}};
    eval_error(*state, "return ward.template('/a/x{*}')", &err);
    assert_non_null(strstr(err.msg, "whole"));
    eval_error(*state, "return ward.template('/a/{**}.json')", &err);
}

static void test_template_nil_and_number_subjects(void **state)
{
    assert_true(eval_bool(*state, "local t = ward.template('{*}') "
                                  "return ward.template_match(t, nil) == false and "
                                  "ward.template_match(t, 42) == true"));
}

static void test_template_bytes_with_nul_and_quotes(void **state)
{
    wlua_state *st = *state;
    assert_true(call2(st, "ward.template_match(ward.template(a), b)", B("/x\0y/\"]]/{*}"),
                B("/x\0y/\"]]/z")));
    assert_false(call2(st, "ward.template_match(ward.template(a), b)", B("/x\0y/{*}"),
                       B("/x/z")));
}

/* ---- prefix / suffix / lower ----------------------------------------------------------- */

static void test_prefix_suffix(void **state)
{
    assert_true(eval_bool(*state, "return ward.prefix('/v1/items', '/v1/') and "
                                  "ward.prefix('abc', '') and ward.prefix('abc', 'abc') and "
                                  "not ward.prefix('ab', 'abc') and not ward.prefix('xabc', 'a') "
                                  "and ward.suffix('payments.shop', '.shop') and "
                                  "ward.suffix('abc', '') and not ward.suffix('c', 'bc') and "
                                  "not ward.prefix(nil, 'a') and not ward.suffix(nil, '')"));
}

static void test_prefix_suffix_bytes(void **state)
{
    wlua_state *st = *state;
    assert_true(call2(st, "ward.prefix(a, b)", B("a\0b]]\"x"), B("a\0b]]\"")));
    assert_false(call2(st, "ward.prefix(a, b)", B("a"), B("a\0")));
    assert_true(call2(st, "ward.suffix(a, b)", B("x'\0]]"), B("\0]]")));
}

static void test_prefix_rejects_non_string_pattern(void **state)
{
    ward_err err = {{0}};
    eval_error(*state, "return ward.prefix('abc', nil)", &err);
    eval_error(*state, "return ward.prefix({}, 'a')", &err);
}

static void test_lower(void **state)
{
    wlua_state *st = *state;
    assert_true(eval_bool(st, "return ward.lower('PayMents.SHOP') == 'payments.shop' and "
                              "ward.lower('already') == 'already' and ward.lower('') == '' and "
                              "ward.lower('\\xC3\\x89A') == '\\xC3\\x89a' and ward.lower(nil) == nil"));
    assert_true(call2(st, "ward.lower(a) == b", B("A\0B"), B("a\0b")));
}

/* ---- SPIFFE IDs ----------------------------------------------------------------------------- */

static void test_spiffe_workload_id(void **state)
{
    assert_true(eval_bool(*state, "local td, path, ns = ward.spiffe("
                                  "'spiffe://example.org/ns/shop/sa/checkout') "
                                  "return td == 'example.org' and path == '/ns/shop/sa/checkout' "
                                  "and ns == 'shop'"));
}

static void test_spiffe_without_namespace(void **state)
{
    assert_true(eval_bool(*state, "local td, path, ns = ward.spiffe('spiffe://example.org/web') "
                                  "local td2, path2, ns2 = ward.spiffe('spiffe://example.org') "
                                  "return td == 'example.org' and path == '/web' and ns == nil "
                                  "and td2 == 'example.org' and path2 == '' and ns2 == nil"));
}

static void test_spiffe_invalid_is_nil(void **state)
{
    assert_true(eval_bool(*state, "return ward.spiffe('spiffe://Example.org/a') == nil and "
                                  "ward.spiffe('spiffe://example.org/a/') == nil and "
                                  "ward.spiffe('spiffe://example.org/a/../b') == nil and "
                                  "ward.spiffe('spiffe://example.org:443/a') == nil and "
                                  "ward.spiffe('https://example.org/a') == nil and "
                                  "ward.spiffe('spiffe://example.org/a%2Fb') == nil and "
                                  "ward.spiffe('') == nil and ward.spiffe(nil) == nil and "
                                  "ward.spiffe(42) == nil and select('#', ward.spiffe('x')) == 1"));
}

static void test_spiffe_nul_byte_is_invalid(void **state)
{
    assert_true(call2(*state, "ward.spiffe(a) == nil and ward.spiffe(b) ~= nil",
                      B("spiffe://example.org/a\0b"), B("spiffe://example.org/a")));
}

/* ---- CIDR sets ------------------------------------------------------------------------------ */

static void test_cidr_ipv4(void **state)
{
    assert_true(eval_bool(*state, "local s = ward.cidr({'10.0.0.0/8', '192.168.1.7'}) "
                                  "return ward.cidr_match(s, '10.1.2.3') and "
                                  "ward.cidr_match(s, '192.168.1.7') and "
                                  "not ward.cidr_match(s, '192.168.1.8') and "
                                  "not ward.cidr_match(s, '11.0.0.1')"));
}

static void test_cidr_ipv6(void **state)
{
    assert_true(eval_bool(*state, "local s = ward.cidr({'2001:db8::/32', '::1'}) "
                                  "return ward.cidr_match(s, '2001:db8:1::5') and "
                                  "ward.cidr_match(s, '::1') and "
                                  "not ward.cidr_match(s, '2001:db9::1')"));
}

static void test_cidr_families_do_not_mix(void **state)
{
    assert_true(eval_bool(*state, "local v4 = ward.cidr({'0.0.0.0/0'}) "
                                  "local v6 = ward.cidr({'::/0'}) "
                                  "return ward.cidr_match(v4, '1.2.3.4') and "
                                  "not ward.cidr_match(v4, '2001:db8::1') and "
                                  "ward.cidr_match(v6, '2001:db8::1') and "
                                  "not ward.cidr_match(v6, '1.2.3.4')"));
}

static void test_cidr_v4_mapped_address_matches_v4_block(void **state)
{
    assert_true(eval_bool(*state, "local s = ward.cidr({'10.0.0.0/8'}) "
                                  "return ward.cidr_match(s, '::ffff:10.1.2.3')"));
}

static void test_cidr_unparsable_ip_is_false(void **state)
{
    assert_true(eval_bool(*state, "local s = ward.cidr({'0.0.0.0/0', '::/0'}) "
                                  "return not ward.cidr_match(s, 'not an ip') and "
                                  "not ward.cidr_match(s, '') and not ward.cidr_match(s, nil) "
                                  "and not ward.cidr_match(s, '10.0.0.1/8') and "
                                  "not ward.cidr_match(s, '10.0.0.1\\0')"));
}

static void test_cidr_invalid_block_raises(void **state)
{
    ward_err err = {{0}};
    eval_error(*state, "return ward.cidr({'10.0.0.1/8'})", &err);
    assert_non_null(strstr(err.msg, "10.0.0.1/8"));
    eval_error(*state, "return ward.cidr({'10.0.0.0/33'})", &err);
    eval_error(*state, "return ward.cidr({'banana'})", &err);
    eval_error(*state, "return ward.cidr({42})", &err);
}

static void test_cidr_empty_set_matches_nothing(void **state)
{
    assert_true(eval_bool(*state, "return not ward.cidr_match(ward.cidr({}), '1.2.3.4')"));
}

/* ---- prefix index ----------------------------------------------------------------------------- */

static void test_prefix_index_all_prefixes_in_length_order(void **state)
{
    assert_true(eval_bool(*state, "local x = ward.prefix_index({['/v1/'] = 'b', ['/'] = 'a', "
                                  "['/v1/items'] = 'c', ['/v2/'] = 'z', ['/v1/items/9'] = 'y'}) "
                                  "local out = ward.prefix_lookup(x, '/v1/items/1', {}) "
                                  "return table.concat(out, ',') == 'a,b,c'"));
}

static void test_prefix_index_empty_prefix_matches_all(void **state)
{
    assert_true(eval_bool(*state, "local x = ward.prefix_index({[''] = 'any', ['ab'] = 'ab'}) "
                                  "local o1 = ward.prefix_lookup(x, '', {}) "
                                  "local o2 = ward.prefix_lookup(x, 'abc', {}) "
                                  "return #o1 == 1 and o1[1] == 'any' and #o2 == 2 and "
                                  "o2[1] == 'any' and o2[2] == 'ab'"));
}

static void test_prefix_index_appends_and_returns_out(void **state)
{
    assert_true(eval_bool(*state, "local x = ward.prefix_index({a = {1}, abc = {3}}) "
                                  "local out = {'kept'} "
                                  "local r = ward.prefix_lookup(x, 'abcd', out) "
                                  "return r == out and #out == 3 and out[1] == 'kept' and "
                                  "out[2][1] == 1 and out[3][1] == 3"));
}

static void test_prefix_index_no_match(void **state)
{
    assert_true(eval_bool(*state, "local x = ward.prefix_index({abc = 1, b = 2}) "
                                  "return #ward.prefix_lookup(x, 'ab', {}) == 0 and "
                                  "#ward.prefix_lookup(x, nil, {}) == 0 and "
                                  "#ward.prefix_lookup(ward.prefix_index({}), 'ab', {}) == 0"));
}

static void test_prefix_index_keys_must_be_strings(void **state)
{
    ward_err err = {{0}};
    eval_error(*state, "return ward.prefix_index({'a'})", &err);
    assert_non_null(strstr(err.msg, "strings"));
}

static void test_prefix_index_bytes(void **state)
{
    wlua_state *st = *state;
    assert_true(call2(st, "#ward.prefix_lookup(ward.prefix_index({[a] = 1}), b, {}) == 1",
                      B("x\0\"]]"), B("x\0\"]]--")));
    assert_true(call2(st, "#ward.prefix_lookup(ward.prefix_index({[a] = 1}), b, {}) == 0",
                      B("x\0y"), B("x\0z")));
}

static void test_prefix_index_many_keys(void **state)
{
    assert_true(eval_bool(*state, "local m = {} for i = 1, 5000 do m['/svc/' .. i .. '/'] = i end "
                                  "local x = ward.prefix_index(m) local ok = true "
                                  "for i = 1, 5000, 7 do local o = ward.prefix_lookup(x, "
                                  "'/svc/' .. i .. '/tail', {}) ok = ok and #o == 1 and o[1] == i "
                                  "end return ok"));
}

/* ---- CIDR index -------------------------------------------------------------------------------- */

static void test_cidr_index_all_containing_blocks(void **state)
{
    assert_true(eval_bool(*state, "local x = ward.cidr_index({['10.0.0.0/8'] = 'a', "
                                  "['10.1.0.0/16'] = 'b', ['10.1.2.3'] = 'c', "
                                  "['10.2.0.0/16'] = 'z', ['0.0.0.0/0'] = 'all'}) "
                                  "local out = ward.cidr_lookup(x, '10.1.2.3', {}) "
                                  "return table.concat(out, ',') == 'all,a,b,c'"));
}

static void test_cidr_index_ipv6(void **state)
{
    assert_true(eval_bool(*state, "local x = ward.cidr_index({['2001:db8::/32'] = 1, "
                                  "['2001:db8:0:1::/64'] = 2, ['fd00::/8'] = 3}) "
                                  "local o = ward.cidr_lookup(x, '2001:db8:0:1::99', {}) "
                                  "return #o == 2 and o[1] == 1 and o[2] == 2"));
}

static void test_cidr_index_families_do_not_mix(void **state)
{
    assert_true(eval_bool(*state, "local x = ward.cidr_index({['::/0'] = 6, ['0.0.0.0/0'] = 4}) "
                                  "local a = ward.cidr_lookup(x, '1.2.3.4', {}) "
                                  "local b = ward.cidr_lookup(x, '::2', {}) "
                                  "return #a == 1 and a[1] == 4 and #b == 1 and b[1] == 6"));
}

static void test_cidr_index_same_block_two_spellings(void **state)
{
    assert_true(eval_bool(*state, "local x = ward.cidr_index({['2001:db8::/32'] = 'lower', "
                                  "['2001:DB8::/32'] = 'upper'}) "
                                  "local o = ward.cidr_lookup(x, '2001:db8::1', {}) "
                                  "return #o == 2 and o[1] == 'upper' and o[2] == 'lower'"));
}

static void test_cidr_index_no_match_and_bad_ip(void **state)
{
    assert_true(eval_bool(*state, "local x = ward.cidr_index({['10.0.0.0/8'] = 1}) "
                                  "local out = {'kept'} "
                                  "return ward.cidr_lookup(x, '11.0.0.1', out) == out and "
                                  "#out == 1 and #ward.cidr_lookup(x, 'garbage', {}) == 0 and "
                                  "#ward.cidr_lookup(x, nil, {}) == 0"));
}

static void test_cidr_index_invalid_key_raises(void **state)
{
    ward_err err = {{0}};
    eval_error(*state, "return ward.cidr_index({['10.0.0.0/40'] = 1})", &err);
    assert_non_null(strstr(err.msg, "ward.cidr_index"));
    eval_error(*state, "return ward.cidr_index({'10.0.0.0/8'})", &err);
}

static void test_cidr_index_many_blocks(void **state)
{
    assert_true(eval_bool(*state, "local m = {} for a = 0, 255 do for b = 0, 15 do "
                                  "m['10.' .. a .. '.' .. b .. '.0/24'] = a * 16 + b end end "
                                  "m['10.0.0.0/8'] = -1 local x = ward.cidr_index(m) "
                                  "local o = ward.cidr_lookup(x, '10.200.7.9', {}) "
                                  "return #o == 2 and o[1] == -1 and o[2] == 200 * 16 + 7"));
}

static void test_host_types_are_not_interchangeable(void **state)
{
    ward_err err = {{0}};
    eval_error(*state, "return ward.cidr_match(ward.cidr_index({}), '1.2.3.4')", &err);
    eval_error(*state, "return ward.prefix_lookup(ward.cidr_index({}), 'a', {})", &err);
    eval_error(*state, "return ward.template_match(ward.regex('a'), 'a')", &err);
    eval_error(*state, "return ward.prefix_lookup(ward.prefix_index({}), 'a', nil)", &err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_regex_anchored_both_ends),
        T(test_regex_alternation_anchored_as_a_whole),
        T(test_regex_explicit_anchors_and_trailing_newline),
        T(test_regex_compile_error_has_offset),
        T(test_regex_catastrophic_backtracking_hits_limit),
        T(test_regex_nested_quantifier_limit_interpreted),
        T(test_regex_nil_subject_is_false),
        T(test_regex_rejects_wrong_matcher),
        T(test_regex_bytes_with_nul_and_quotes),
        T(test_regex_reused_many_times),
        T(test_template_literal_segments_exact),
        T(test_template_star_is_one_nonempty_segment),
        T(test_template_star_last),
        T(test_template_doublestar_zero_or_more),
        T(test_template_doublestar_must_be_last),
        T(test_template_wildcard_must_be_whole_segment),
        T(test_template_nil_and_number_subjects),
        T(test_template_bytes_with_nul_and_quotes),
        T(test_prefix_suffix),
        T(test_prefix_suffix_bytes),
        T(test_prefix_rejects_non_string_pattern),
        T(test_lower),
        T(test_spiffe_workload_id),
        T(test_spiffe_without_namespace),
        T(test_spiffe_invalid_is_nil),
        T(test_spiffe_nul_byte_is_invalid),
        T(test_cidr_ipv4),
        T(test_cidr_ipv6),
        T(test_cidr_families_do_not_mix),
        T(test_cidr_v4_mapped_address_matches_v4_block),
        T(test_cidr_unparsable_ip_is_false),
        T(test_cidr_invalid_block_raises),
        T(test_cidr_empty_set_matches_nothing),
        T(test_prefix_index_all_prefixes_in_length_order),
        T(test_prefix_index_empty_prefix_matches_all),
        T(test_prefix_index_appends_and_returns_out),
        T(test_prefix_index_no_match),
        T(test_prefix_index_keys_must_be_strings),
        T(test_prefix_index_bytes),
        T(test_prefix_index_many_keys),
        T(test_cidr_index_all_containing_blocks),
        T(test_cidr_index_ipv6),
        T(test_cidr_index_families_do_not_mix),
        T(test_cidr_index_same_block_two_spellings),
        T(test_cidr_index_no_match_and_bad_ip),
        T(test_cidr_index_invalid_key_raises),
        T(test_cidr_index_many_blocks),
        T(test_host_types_are_not_interchangeable),
#undef T
    };
    if (getenv("WLUA_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("WLUA_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
