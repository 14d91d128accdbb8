/* test_ratelimit.c - unit tests of token buckets: token math, refill, keys, the key bound */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/proxy.h"

static const proxy_slice NOKEY = {NULL, 0};

static proxy_ratelimit *limiter(uint64_t requests, uint64_t per_ms, uint64_t burst,
                                unsigned workers, bool keyed, size_t max_keys)
{
    proxy_ratelimit_options o = {.requests = requests,
                                 .per_ms = per_ms,
                                 .burst = burst,
                                 .workers = workers,
                                 .keyed = keyed,
                                 .max_keys = max_keys};
    proxy_ratelimit *l = NULL;
    ward_err err;
    if (proxy_ratelimit_new(&o, &l, &err) < 0)
        fail_msg("proxy_ratelimit_new: %s", err.msg);
    return l;
}

static proxy_slice key(const char *s)
{
    return (proxy_slice){s, strlen(s)};
}

/* How many takes in a row are allowed at now_ms. */
static int drain(proxy_ratelimit *l, proxy_slice k, uint64_t now_ms)
{
    int n = 0;
    uint64_t ra;
    while (n < 1000000 && proxy_ratelimit_take(l, k, now_ms, &ra))
        n++;
    return n;
}

static void test_burst_is_requests_by_default(void **state)
{
    proxy_ratelimit *l = limiter(10, 1000, 0, 0, false, 0);
    assert_int_equal(drain(l, NOKEY, 5000), 10);
    proxy_ratelimit_free(l);
}

static void test_explicit_burst(void **state)
{
    proxy_ratelimit *l = limiter(10, 1000, 25, 0, false, 0);
    assert_int_equal(drain(l, NOKEY, 0), 25);
    /* the rate is still 10/s: one token per 100 ms */
    assert_int_equal(drain(l, NOKEY, 99), 0);
    assert_int_equal(drain(l, NOKEY, 100), 1);
    proxy_ratelimit_free(l);
}

static void test_exact_refill(void **state)
{
    /* 10 per second: a token every 100 ms exactly, never early, never lost */
    proxy_ratelimit *l = limiter(10, 1000, 0, 0, false, 0);
    assert_int_equal(drain(l, NOKEY, 0), 10);
    assert_false(proxy_ratelimit_take(l, NOKEY, 99, NULL));
    assert_true(proxy_ratelimit_take(l, NOKEY, 100, NULL));
    assert_false(proxy_ratelimit_take(l, NOKEY, 100, NULL));
    /* partial progress is kept across denied takes */
    assert_false(proxy_ratelimit_take(l, NOKEY, 150, NULL));
    assert_true(proxy_ratelimit_take(l, NOKEY, 200, NULL));
    /* 1 s later: 10 tokens, not more (the bucket is full) */
    assert_int_equal(drain(l, NOKEY, 5000), 10);
    proxy_ratelimit_free(l);
}

static void test_fractional_rate_does_not_drift(void **state)
{
    /* 3 per 10 s: a token every 3333.33 ms, taken as soon as it is there; the
     * thirds of a millisecond add up: the 30th comes at 100 s exactly */
    proxy_ratelimit *l = limiter(3, 10000, 0, 0, false, 0);
    assert_int_equal(drain(l, NOKEY, 0), 3);
    int allowed = 0;
    for (uint64_t t = 1; t < 100000; t++)
        allowed += proxy_ratelimit_take(l, NOKEY, t, NULL);
    assert_int_equal(allowed, 29);
    assert_true(proxy_ratelimit_take(l, NOKEY, 100000, NULL));
    proxy_ratelimit_free(l);
}

static void test_a_full_bucket_keeps_no_more(void **state)
{
    /* with room for one token, time while it is full is not saved up */
    proxy_ratelimit *l = limiter(1, 1000, 1, 0, false, 0);
    assert_true(proxy_ratelimit_take(l, NOKEY, 0, NULL));
    assert_true(proxy_ratelimit_take(l, NOKEY, 60000, NULL));
    assert_false(proxy_ratelimit_take(l, NOKEY, 60000, NULL));
    assert_false(proxy_ratelimit_take(l, NOKEY, 60999, NULL));
    assert_true(proxy_ratelimit_take(l, NOKEY, 61000, NULL));
    proxy_ratelimit_free(l);
}

static void test_rate_split_among_workers(void **state)
{
    /* 10/s for a proxy of 4 workers: each gets 2.5/s and a burst of 2.5 */
    proxy_ratelimit *l = limiter(10, 1000, 0, 4, false, 0);
    assert_int_equal(drain(l, NOKEY, 0), 2);
    uint64_t ra = 0;
    /* half a token left: the next one needs 200 ms */
    assert_false(proxy_ratelimit_take(l, NOKEY, 199, &ra));
    assert_int_equal(ra, 1);
    assert_true(proxy_ratelimit_take(l, NOKEY, 200, NULL));
    /* over 100 s a worker allows 250 more: four of them, the configured 1000 */
    int allowed = 0;
    for (uint64_t t = 201; t <= 100200; t++)
        allowed += proxy_ratelimit_take(l, NOKEY, t, NULL);
    assert_int_equal(allowed, 250);
    proxy_ratelimit_free(l);
}

static void test_each_worker_holds_at_least_one_token(void **state)
{
    /* a burst of 1 over 4 workers would be a quarter token: never enough */
    proxy_ratelimit *l = limiter(1, 1000, 1, 4, false, 0);
    assert_int_equal(drain(l, NOKEY, 0), 1);
    uint64_t ra = 0;
    assert_false(proxy_ratelimit_take(l, NOKEY, 0, &ra));
    assert_int_equal(ra, 4); /* 1/4 per second */
    assert_true(proxy_ratelimit_take(l, NOKEY, 4000, NULL));
    proxy_ratelimit_free(l);
}

static void test_retry_after_rounds_up(void **state)
{
    uint64_t ra = 99;
    proxy_ratelimit *l = limiter(1, 60000, 0, 0, false, 0);
    assert_true(proxy_ratelimit_take(l, NOKEY, 1000, &ra));
    assert_int_equal(ra, 0);
    assert_false(proxy_ratelimit_take(l, NOKEY, 1000, &ra));
    assert_int_equal(ra, 60);
    assert_false(proxy_ratelimit_take(l, NOKEY, 31000, &ra));
    assert_int_equal(ra, 30);
    assert_false(proxy_ratelimit_take(l, NOKEY, 31001, &ra));
    assert_int_equal(ra, 30); /* 29.999 s: rounded up */
    assert_false(proxy_ratelimit_take(l, NOKEY, 60999, &ra));
    assert_int_equal(ra, 1); /* 1 ms left: still 1, never 0 */
    assert_true(proxy_ratelimit_take(l, NOKEY, 61000, &ra));
    proxy_ratelimit_free(l);

    /* 3 per 10 s: the next token in 3333.33 ms is 4 s away, not 3 */
    l = limiter(3, 10000, 0, 0, false, 0);
    assert_int_equal(drain(l, NOKEY, 0), 3);
    assert_false(proxy_ratelimit_take(l, NOKEY, 0, &ra));
    assert_int_equal(ra, 4);
    assert_false(proxy_ratelimit_take(l, NOKEY, 334, &ra));
    assert_int_equal(ra, 3); /* 2999.33 ms */
    proxy_ratelimit_free(l);

    /* an hour */
    l = limiter(1, 3600000, 0, 0, false, 0);
    assert_true(proxy_ratelimit_take(l, NOKEY, 0, NULL));
    assert_false(proxy_ratelimit_take(l, NOKEY, 0, &ra));
    assert_int_equal(ra, 3600);
    proxy_ratelimit_free(l);
}

static void test_time_going_backwards_refills_nothing(void **state)
{
    proxy_ratelimit *l = limiter(1, 1000, 0, 0, false, 0);
    assert_true(proxy_ratelimit_take(l, NOKEY, 10000, NULL));
    assert_false(proxy_ratelimit_take(l, NOKEY, 0, NULL));
    assert_false(proxy_ratelimit_take(l, NOKEY, 10999, NULL));
    assert_true(proxy_ratelimit_take(l, NOKEY, 11000, NULL));
    proxy_ratelimit_free(l);
}

static void test_extreme_values_do_not_overflow(void **state)
{
    /* the largest rate and burst, the longest period: a day's bucket refills over a day */
    proxy_ratelimit *l = limiter(PROXY_RATELIMIT_REQUESTS_MAX, PROXY_RATELIMIT_PER_MAX_MS, 0,
                                 PROXY_RATELIMIT_WORKERS_MAX, false, 0);
    uint64_t ra;
    assert_true(proxy_ratelimit_take(l, NOKEY, 0, &ra));
    assert_true(proxy_ratelimit_take(l, NOKEY, UINT64_MAX, &ra));
    proxy_ratelimit_free(l);
    l = limiter(1, PROXY_RATELIMIT_PER_MAX_MS, 0, PROXY_RATELIMIT_WORKERS_MAX, false, 0);
    assert_true(proxy_ratelimit_take(l, NOKEY, 0, &ra));
    assert_false(proxy_ratelimit_take(l, NOKEY, 0, &ra));
    assert_int_equal(ra, (uint64_t)PROXY_RATELIMIT_PER_MAX_MS / 1000 * PROXY_RATELIMIT_WORKERS_MAX);
    assert_true(proxy_ratelimit_take(l, NOKEY, UINT64_MAX, &ra));
    proxy_ratelimit_free(l);
}

static void test_keys_are_isolated(void **state)
{
    proxy_ratelimit *l = limiter(2, 1000, 0, 0, true, 0);
    proxy_slice a = key("spiffe://example.org/ns/a/sa/x");
    proxy_slice b = key("spiffe://example.org/ns/b/sa/x");
    assert_int_equal(drain(l, a, 0), 2);
    /* a is exhausted, b untouched */
    assert_int_equal(drain(l, b, 0), 2);
    assert_false(proxy_ratelimit_take(l, a, 0, NULL));
    /* keys are bytes: no case folding, prefixes are other keys */
    assert_int_equal(drain(l, key("SPIFFE://example.org/ns/a/sa/x"), 0), 2);
    assert_int_equal(drain(l, (proxy_slice){a.ptr, a.len - 1}, 0), 2);
    /* absent and empty are one key */
    assert_int_equal(drain(l, NOKEY, 0), 2);
    assert_int_equal(drain(l, key(""), 0), 0);
    assert_int_equal(proxy_ratelimit_keys(l), 5);
    /* each refills on its own */
    assert_true(proxy_ratelimit_take(l, a, 500, NULL));
    assert_true(proxy_ratelimit_take(l, b, 500, NULL));
    assert_false(proxy_ratelimit_take(l, a, 500, NULL));
    proxy_ratelimit_free(l);
}

static void test_unkeyed_ignores_the_key(void **state)
{
    proxy_ratelimit *l = limiter(2, 1000, 0, 0, false, 0);
    assert_true(proxy_ratelimit_take(l, key("a"), 0, NULL));
    assert_true(proxy_ratelimit_take(l, key("b"), 0, NULL));
    assert_false(proxy_ratelimit_take(l, key("c"), 0, NULL));
    assert_int_equal(proxy_ratelimit_keys(l), 0);
    proxy_ratelimit_free(l);
}

static void test_key_table_bounded_under_a_key_flood(void **state)
{
    /* one request per hour per key, 10,000 keys kept: a million distinct keys */
    proxy_ratelimit *l = limiter(1, 3600000, 0, 0, true, 0);
    size_t before = proxy_ratelimit_memory(l);
    size_t peak = 0;
    char k[32];
    for (int i = 0; i < 1000000; i++) {
        int n = snprintf(k, sizeof(k), "key-%d", i);
        /* every key is new: each first take is allowed */
        if (!proxy_ratelimit_take(l, (proxy_slice){k, (size_t)n}, 1000, NULL))
            fail_msg("key %d denied on its first take", i);
        size_t m = proxy_ratelimit_memory(l);
        if (m > peak)
            peak = m;
    }
    assert_int_equal(proxy_ratelimit_keys(l), PROXY_RATELIMIT_KEYS_DEFAULT);
    /* bounded: about 48 bytes per key kept, whatever the flood */
    assert_true(peak <= before + (size_t)PROXY_RATELIMIT_KEYS_DEFAULT * 48 + 4096);
    assert_int_equal(proxy_ratelimit_memory(l), peak);
    /* the newest 10,000 keys are remembered (still exhausted) ... */
    assert_false(proxy_ratelimit_take(l, key("key-999999"), 1000, NULL));
    assert_false(proxy_ratelimit_take(l, key("key-990000"), 1000, NULL));
    /* ... the oldest were evicted (they start afresh) */
    assert_true(proxy_ratelimit_take(l, key("key-0"), 1000, NULL));
    assert_true(proxy_ratelimit_take(l, key("key-989999"), 1000, NULL));
    assert_int_equal(proxy_ratelimit_keys(l), PROXY_RATELIMIT_KEYS_DEFAULT);
    proxy_ratelimit_free(l);
}

static void test_recently_used_key_survives_eviction(void **state)
{
    proxy_ratelimit *l = limiter(1, 3600000, 0, 0, true, 100);
    assert_true(proxy_ratelimit_take(l, key("busy"), 0, NULL));
    char k[32];
    for (int i = 0; i < 1000; i++) {
        int n = snprintf(k, sizeof(k), "flood-%d", i);
        proxy_ratelimit_take(l, (proxy_slice){k, (size_t)n}, 0, NULL);
        /* "busy" keeps coming: least recently used is never it */
        assert_false(proxy_ratelimit_take(l, key("busy"), 0, NULL));
    }
    assert_int_equal(proxy_ratelimit_keys(l), 100);
    assert_true(proxy_ratelimit_memory(l) <= sizeof(void *) * 64 + 100 * 48 + 1024);
    proxy_ratelimit_free(l);
}

static void test_options_out_of_range_refused(void **state)
{
    static const proxy_ratelimit_options bad[] = {
        {.requests = 0, .per_ms = 1000},
        {.requests = PROXY_RATELIMIT_REQUESTS_MAX + 1ull, .per_ms = 1000},
        {.requests = 1, .per_ms = 0},
        {.requests = 1, .per_ms = PROXY_RATELIMIT_PER_MAX_MS + 1ull},
        {.requests = 1, .per_ms = 1000, .burst = PROXY_RATELIMIT_REQUESTS_MAX + 1ull},
        {.requests = 1, .per_ms = 1000, .workers = PROXY_RATELIMIT_WORKERS_MAX + 1u},
        {.requests = 1, .per_ms = 1000, .keyed = true, .max_keys = PROXY_RATELIMIT_KEYS_MAX + 1u},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        proxy_ratelimit *l = NULL;
        ward_err err;
        ward_err_clear(&err);
        assert_int_equal(proxy_ratelimit_new(&bad[i], &l, &err), WARD_EINVAL);
        assert_null(l);
        assert_true(err.msg[0] != '\0');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_is_requests_by_default),
        cmocka_unit_test(test_explicit_burst),
        cmocka_unit_test(test_exact_refill),
        cmocka_unit_test(test_fractional_rate_does_not_drift),
        cmocka_unit_test(test_a_full_bucket_keeps_no_more),
        cmocka_unit_test(test_rate_split_among_workers),
        cmocka_unit_test(test_each_worker_holds_at_least_one_token),
        cmocka_unit_test(test_retry_after_rounds_up),
        cmocka_unit_test(test_time_going_backwards_refills_nothing),
        cmocka_unit_test(test_extreme_values_do_not_overflow),
        cmocka_unit_test(test_keys_are_isolated),
        cmocka_unit_test(test_unkeyed_ignores_the_key),
        cmocka_unit_test(test_key_table_bounded_under_a_key_flood),
        cmocka_unit_test(test_recently_used_key_survives_eviction),
        cmocka_unit_test(test_options_out_of_range_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
