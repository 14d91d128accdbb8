/* test_cluster.c - unit tests of upstream clusters: balancing, breakers, ejection, retry budget */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

#define MAX_EPS 16
#define SEC     1000ull /* now_ms units */
#define NOKEY   ((proxy_slice){NULL, 0})

/* An upstream of n endpoints "10.0.0.<i+1>:8443", with every default. */
typedef struct fixture {
    proxy_config_upstream u;
    char *names[MAX_EPS];
    struct sockaddr_storage addrs[MAX_EPS];
    char buf[MAX_EPS][48];
} fixture;

static void fixture_init(fixture *f, size_t n, proxy_balance balance)
{
    assert_true(n <= MAX_EPS);
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        snprintf(f->buf[i], sizeof(f->buf[i]), "10.0.0.%zu:8443", i + 1);
        f->names[i] = f->buf[i];
        ward_err e;
        assert_int_equal(proxy_addr_parse(f->names[i], &f->addrs[i], &e), 0);
    }
    proxy_config_upstream_defaults(&f->u);
    f->u.service = "inventory";
    f->u.spiffe_id = "spiffe://example.org/ns/shop/sa/inventory";
    f->u.endpoints = f->names;
    f->u.addrs = f->addrs;
    f->u.n_endpoints = n;
    f->u.balance = balance;
}

static proxy_cluster *cluster_new(fixture *f, unsigned workers, uint64_t seed)
{
    proxy_cluster *c = NULL;
    assert_int_equal(proxy_cluster_new(&f->u, workers, seed, &c), 0);
    assert_non_null(c);
    return c;
}

static proxy_cluster *simple(size_t n, proxy_balance balance)
{
    fixture f;
    fixture_init(&f, n, balance);
    return cluster_new(&f, 1, 42);
}

static size_t pick(proxy_cluster *c, uint64_t now)
{
    size_t ep = PROXY_CLUSTER_NONE;
    assert_int_equal(proxy_cluster_pick(c, NOKEY, PROXY_CLUSTER_NONE, now, &ep), 0);
    assert_true(ep < proxy_cluster_endpoint_count(c));
    return ep;
}

static size_t pick_key(proxy_cluster *c, const char *key, uint64_t now)
{
    size_t ep = PROXY_CLUSTER_NONE;
    proxy_slice k = {key, strlen(key)};
    assert_int_equal(proxy_cluster_pick(c, k, PROXY_CLUSTER_NONE, now, &ep), 0);
    return ep;
}

/* One finished attempt on ep with this status. */
static void attempt(proxy_cluster *c, size_t ep, int status, uint64_t now)
{
    proxy_cluster_request_start(c, ep, false);
    proxy_cluster_request_end(c, ep, false, status, now);
}

static void attempts(proxy_cluster *c, size_t ep, int status, int n, uint64_t now)
{
    for (int i = 0; i < n; i++)
        attempt(c, ep, status, now);
}

static proxy_cluster_endpoint_stats ep_stats(proxy_cluster *c, size_t ep, uint64_t now)
{
    proxy_cluster_endpoint_stats s;
    proxy_cluster_endpoint_get_stats(c, ep, now, &s);
    return s;
}

static proxy_cluster_stats stats(proxy_cluster *c, uint64_t now)
{
    proxy_cluster_stats s;
    proxy_cluster_get_stats(c, now, &s);
    return s;
}

/* ---- round robin -------------------------------------------------------------------- */

static void test_round_robin_visits_endpoints_in_order(void **state)
{
    proxy_cluster *c = simple(3, PROXY_BALANCE_ROUND_ROBIN);
    for (size_t i = 0; i < 9; i++)
        assert_int_equal(pick(c, 0), i % 3);
    proxy_cluster_free(c);
}

static void test_round_robin_skips_unavailable_endpoints(void **state)
{
    proxy_cluster *c = simple(4, PROXY_BALANCE_ROUND_ROBIN);
    proxy_cluster_set_healthy(c, 1, false);
    attempts(c, 2, 503, 5, 0); /* ejected */
    size_t want[] = {0, 3, 0, 3};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(pick(c, 0), want[i]);
    proxy_cluster_set_healthy(c, 1, true);
    assert_int_equal(pick(c, 0), 0);
    assert_int_equal(pick(c, 0), 1);
    assert_int_equal(pick(c, 0), 3);
    proxy_cluster_free(c);
}

static void test_round_robin_avoids_the_previous_endpoint(void **state)
{
    proxy_cluster *c = simple(3, PROXY_BALANCE_ROUND_ROBIN);
    size_t ep;
    assert_int_equal(proxy_cluster_pick(c, NOKEY, 0, 0, &ep), 0);
    assert_int_equal(ep, 1);
    assert_int_equal(proxy_cluster_pick(c, NOKEY, 2, 0, &ep), 0);
    assert_int_equal(ep, 0);
    proxy_cluster_free(c);
}

static void test_avoided_endpoint_is_used_when_it_is_the_only_one(void **state)
{
    proxy_balance all[] = {PROXY_BALANCE_ROUND_ROBIN, PROXY_BALANCE_LEAST_REQUEST,
                           PROXY_BALANCE_CONSISTENT_HASH};
    for (size_t b = 0; b < 3; b++) {
        proxy_cluster *c = simple(2, all[b]);
        proxy_cluster_set_healthy(c, 0, false);
        size_t ep = 99;
        proxy_slice key = {"user-1", 6};
        assert_int_equal(proxy_cluster_pick(c, key, 1, 0, &ep), 0);
        assert_int_equal(ep, 1);
        proxy_cluster_free(c);
    }
}

/* ---- least request (power of two choices) ------------------------------------------- */

static void test_least_request_is_the_default(void **state)
{
    fixture f;
    fixture_init(&f, 2, PROXY_BALANCE_ROUND_ROBIN);
    proxy_config_upstream_defaults(&f.u);
    assert_int_equal(f.u.balance, PROXY_BALANCE_LEAST_REQUEST);
    proxy_cluster *c = cluster_new(&f, 1, 1);
    assert_int_equal(stats(c, 0).balance, PROXY_BALANCE_LEAST_REQUEST);
    proxy_cluster_free(c);
}

static void test_least_request_never_picks_the_most_loaded_of_five(void **state)
{
    proxy_cluster *c = simple(5, PROXY_BALANCE_LEAST_REQUEST);
    for (int i = 0; i < 10; i++)
        proxy_cluster_request_start(c, 0, false);
    size_t count[5] = {0};
    for (int i = 0; i < 10000; i++)
        count[pick(c, 0)]++;
    assert_int_equal(count[0], 0); /* two distinct choices: the loaded one always loses */
    for (size_t i = 1; i < 5; i++) {
        assert_true(count[i] > 2300);
        assert_true(count[i] < 2700);
    }
    proxy_cluster_free(c);
}

/* Loads 0, 1, 2, 3: an endpoint wins when it is drawn with a more loaded one,
 * so it gets 3/6, 2/6, 1/6 and 0 of the picks. */
static void test_least_request_prefers_the_less_loaded(void **state)
{
    proxy_cluster *c = simple(4, PROXY_BALANCE_LEAST_REQUEST);
    for (size_t ep = 0; ep < 4; ep++)
        for (size_t k = 0; k < ep; k++)
            proxy_cluster_request_start(c, ep, false);
    size_t count[4] = {0};
    for (int i = 0; i < 10000; i++)
        count[pick(c, 0)]++;
    assert_true(count[0] > 4800 && count[0] < 5200);
    assert_true(count[1] > 3130 && count[1] < 3530);
    assert_true(count[2] > 1470 && count[2] < 1870);
    assert_int_equal(count[3], 0);
    proxy_cluster_free(c);
}

static void test_least_request_spreads_evenly_when_idle(void **state)
{
    proxy_cluster *c = simple(4, PROXY_BALANCE_LEAST_REQUEST);
    size_t count[4] = {0};
    for (int i = 0; i < 10000; i++)
        count[pick(c, 0)]++;
    for (size_t i = 0; i < 4; i++)
        assert_true(count[i] > 2300 && count[i] < 2700);
    proxy_cluster_free(c);
}

static void test_least_request_follows_finished_requests(void **state)
{
    proxy_cluster *c = simple(2, PROXY_BALANCE_LEAST_REQUEST);
    proxy_cluster_request_start(c, 0, false);
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick(c, 0), 1);
    proxy_cluster_request_end(c, 0, false, 200, 0);
    proxy_cluster_request_start(c, 1, false);
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick(c, 0), 0);
    proxy_cluster_free(c);
}

static void test_least_request_avoids_the_previous_endpoint(void **state)
{
    proxy_cluster *c = simple(3, PROXY_BALANCE_LEAST_REQUEST);
    size_t count[3] = {0};
    for (int i = 0; i < 3000; i++) {
        size_t ep;
        assert_int_equal(proxy_cluster_pick(c, NOKEY, 1, 0, &ep), 0);
        count[ep]++;
    }
    assert_int_equal(count[1], 0);
    assert_true(count[0] > 1300 && count[2] > 1300);
    /* and among a partly ejected set (the candidate list path) */
    proxy_cluster *d = simple(4, PROXY_BALANCE_LEAST_REQUEST);
    proxy_cluster_set_healthy(d, 3, false);
    for (int i = 0; i < 1000; i++) {
        size_t ep;
        assert_int_equal(proxy_cluster_pick(d, NOKEY, 0, 0, &ep), 0);
        assert_true(ep == 1 || ep == 2);
    }
    proxy_cluster_free(c);
    proxy_cluster_free(d);
}

static void test_least_request_depends_on_the_seed_only(void **state)
{
    fixture f;
    fixture_init(&f, 8, PROXY_BALANCE_LEAST_REQUEST);
    proxy_cluster *a = cluster_new(&f, 1, 7), *b = cluster_new(&f, 1, 7),
                  *d = cluster_new(&f, 1, 8);
    int same = 1, differ = 0;
    for (int i = 0; i < 200; i++) {
        size_t x = pick(a, 0), y = pick(b, 0), z = pick(d, 0);
        same &= x == y;
        differ |= x != z;
    }
    assert_true(same);
    assert_true(differ);
    proxy_cluster_free(a);
    proxy_cluster_free(b);
    proxy_cluster_free(d);
}

/* ---- consistent hash ------------------------------------------------------------------ */

static void test_consistent_hash_same_key_same_endpoint(void **state)
{
    proxy_cluster *c = simple(10, PROXY_BALANCE_CONSISTENT_HASH);
    for (int i = 0; i < 100; i++) {
        char key[64];
        snprintf(key, sizeof(key), "spiffe://example.org/sa/%d", i);
        size_t ep = pick_key(c, key, 0);
        for (int k = 0; k < 5; k++)
            assert_int_equal(pick_key(c, key, 0), ep);
    }
    proxy_cluster_free(c);
}

static void test_consistent_hash_spreads_keys_evenly(void **state)
{
    proxy_cluster *c = simple(10, PROXY_BALANCE_CONSISTENT_HASH);
    size_t count[10] = {0};
    for (int i = 0; i < 100000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "user-%d", i);
        count[pick_key(c, key, 0)]++;
    }
    for (size_t i = 0; i < 10; i++) {
        if (count[i] < 8500 || count[i] > 11500)
            fprintf(stderr, "endpoint %zu: %zu of 100000 keys\n", i, count[i]);
        assert_true(count[i] >= 8500 && count[i] <= 11500); /* 10 % each, within 1.5 % */
    }
    proxy_cluster_free(c);
}

#define KEYS 10000

static void test_consistent_hash_moves_only_the_ejected_endpoints_keys(void **state)
{
    proxy_cluster *c = simple(10, PROXY_BALANCE_CONSISTENT_HASH);
    static size_t before[KEYS];
    char key[32];
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "user-%d", i);
        before[i] = pick_key(c, key, 0);
    }
    attempts(c, 3, 503, 5, 0);
    assert_true(ep_stats(c, 3, 0).ejected);
    size_t moved = 0, on3 = 0;
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "user-%d", i);
        size_t now = pick_key(c, key, 1);
        assert_int_not_equal(now, 3);
        if (before[i] == 3)
            on3++;
        else
            assert_int_equal(now, before[i]); /* nobody else's key moves */
        moved += now != before[i];
    }
    assert_int_equal(moved, on3);
    assert_true(moved > KEYS * 7 / 100 && moved < KEYS * 13 / 100); /* ~1/10 */
    /* back after its 30 s: every key where it was */
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof(key), "user-%d", i);
        assert_int_equal(pick_key(c, key, 30 * SEC), before[i]);
    }
    proxy_cluster_free(c);
}

static void test_consistent_hash_keys_follow_endpoint_names_not_order(void **state)
{
    fixture f, g;
    fixture_init(&f, 6, PROXY_BALANCE_CONSISTENT_HASH);
    fixture_init(&g, 6, PROXY_BALANCE_CONSISTENT_HASH);
    for (size_t i = 0; i < 6; i++) { /* reversed */
        g.names[i] = f.buf[5 - i];
        g.addrs[i] = f.addrs[5 - i];
    }
    proxy_cluster *a = cluster_new(&f, 1, 1), *b = cluster_new(&g, 2, 99);
    for (int i = 0; i < 1000; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        size_t x = pick_key(a, key, 0), y = pick_key(b, key, 0);
        assert_string_equal(proxy_cluster_endpoint_name(a, x), proxy_cluster_endpoint_name(b, y));
    }
    proxy_cluster_free(a);
    proxy_cluster_free(b);
}

static void test_consistent_hash_retry_goes_to_the_next_endpoint(void **state)
{
    proxy_cluster *c = simple(5, PROXY_BALANCE_CONSISTENT_HASH);
    for (int i = 0; i < 200; i++) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", i);
        size_t first = pick_key(c, key, 0), second, again;
        proxy_slice k = {key, strlen(key)};
        assert_int_equal(proxy_cluster_pick(c, k, first, 0, &second), 0);
        assert_int_not_equal(second, first);
        assert_int_equal(proxy_cluster_pick(c, k, first, 0, &again), 0);
        assert_int_equal(again, second); /* stable too */
    }
    proxy_cluster_free(c);
}

static void test_consistent_hash_without_a_key_balances_by_load(void **state)
{
    proxy_cluster *c = simple(2, PROXY_BALANCE_CONSISTENT_HASH);
    proxy_cluster_request_start(c, 1, false);
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick(c, 0), 0);
    proxy_cluster_free(c);
}

static void test_hash_key_comes_from_the_header_or_the_principal(void **state)
{
    fixture f;
    fixture_init(&f, 3, PROXY_BALANCE_CONSISTENT_HASH);
    f.u.hash_on = PROXY_HASH_HEADER;
    f.u.hash_header = "x-user-id";
    proxy_cluster *c = cluster_new(&f, 1, 1);
    proxy_header h[] = {{{"Host", 4}, {"inventory", 9}}, {{"X-User-Id", 9}, {"alice", 5}}};
    proxy_http_request req = {.headers = h, .n_headers = 2};
    proxy_slice k = proxy_cluster_hash_key(c, &req, "spiffe://example.org/sa/a");
    assert_non_null(k.ptr);
    assert_int_equal(k.len, 5);
    assert_memory_equal(k.ptr, "alice", 5);
    req.n_headers = 1; /* the field is missing: no key */
    assert_null(proxy_cluster_hash_key(c, &req, "spiffe://example.org/sa/a").ptr);
    proxy_cluster_free(c);

    f.u.hash_on = PROXY_HASH_SOURCE_PRINCIPAL;
    c = cluster_new(&f, 1, 1);
    k = proxy_cluster_hash_key(c, &req, "spiffe://example.org/sa/a");
    assert_int_equal(k.len, strlen("spiffe://example.org/sa/a"));
    assert_null(proxy_cluster_hash_key(c, &req, NULL).ptr);
    proxy_cluster_free(c);

    c = simple(3, PROXY_BALANCE_LEAST_REQUEST); /* other policies: no key */
    assert_null(proxy_cluster_hash_key(c, &req, "spiffe://example.org/sa/a").ptr);
    proxy_cluster_free(c);
}

/* ---- circuit breakers ---------------------------------------------------------------- */

static void test_max_requests_overflows(void **state)
{
    fixture f;
    fixture_init(&f, 2, PROXY_BALANCE_LEAST_REQUEST);
    f.u.circuit_breakers.max_requests = 3;
    proxy_cluster *c = cluster_new(&f, 1, 1);
    const char *why = NULL;
    for (int i = 0; i < 3; i++) {
        assert_true(proxy_cluster_admit(c, false, &why));
        proxy_cluster_request_start(c, pick(c, 0), false);
    }
    assert_false(proxy_cluster_admit(c, false, &why));
    assert_string_equal(why, "circuit breaker: max_requests");
    assert_false(proxy_cluster_admit(c, true, &why)); /* retries are requests too */
    assert_int_equal(stats(c, 0).overflows[PROXY_OVERFLOW_REQUESTS], 2);
    proxy_cluster_request_end(c, 0, false, 200, 0);
    assert_true(proxy_cluster_admit(c, false, NULL));
    proxy_cluster_free(c);
}

static void test_max_retries_overflows(void **state)
{
    fixture f;
    fixture_init(&f, 2, PROXY_BALANCE_LEAST_REQUEST);
    f.u.circuit_breakers.max_retries = 2;
    f.u.retry_budget.min_concurrency = 100; /* the breaker, not the budget, decides */
    proxy_cluster *c = cluster_new(&f, 1, 1);
    const char *why = NULL;
    for (int i = 0; i < 2; i++) {
        assert_true(proxy_cluster_admit(c, true, &why));
        proxy_cluster_request_start(c, 0, true);
    }
    assert_false(proxy_cluster_admit(c, true, &why));
    assert_string_equal(why, "circuit breaker: max_retries");
    assert_true(proxy_cluster_admit(c, false, &why)); /* first attempts still go */
    assert_int_equal(stats(c, 0).overflows[PROXY_OVERFLOW_RETRIES], 1);
    assert_int_equal(stats(c, 0).active_retries, 2);
    proxy_cluster_request_end(c, 0, true, 503, 0);
    assert_true(proxy_cluster_admit(c, true, NULL));
    proxy_cluster_free(c);
}

static void test_max_retries_zero_means_no_retries(void **state)
{
    fixture f;
    fixture_init(&f, 2, PROXY_BALANCE_LEAST_REQUEST);
    f.u.circuit_breakers.max_retries = 0;
    proxy_cluster *c = cluster_new(&f, 4, 1);
    assert_false(proxy_cluster_admit(c, true, NULL));
    assert_true(proxy_cluster_admit(c, false, NULL));
    proxy_cluster_free(c);
}

static void test_max_connections_overflows(void **state)
{
    fixture f;
    fixture_init(&f, 2, PROXY_BALANCE_LEAST_REQUEST);
    f.u.circuit_breakers.max_connections = 2;
    proxy_cluster *c = cluster_new(&f, 1, 1);
    const char *why = NULL;
    assert_true(proxy_cluster_connect_admit(c, &why));
    proxy_cluster_connection_start(c, 0);
    assert_true(proxy_cluster_connect_admit(c, &why));
    proxy_cluster_connection_start(c, 1);
    assert_false(proxy_cluster_connect_admit(c, &why));
    assert_string_equal(why, "circuit breaker: max_connections");
    assert_int_equal(stats(c, 0).overflows[PROXY_OVERFLOW_CONNECTIONS], 1);
    assert_int_equal(ep_stats(c, 1, 0).connections, 1);
    proxy_cluster_connection_end(c, 1);
    assert_true(proxy_cluster_connect_admit(c, &why));
    proxy_cluster_free(c);
}

static void test_max_pending_overflows(void **state)
{
    fixture f;
    fixture_init(&f, 2, PROXY_BALANCE_LEAST_REQUEST);
    f.u.circuit_breakers.max_pending = 1;
    proxy_cluster *c = cluster_new(&f, 1, 1);
    const char *why = NULL;
    assert_true(proxy_cluster_connect_admit(c, &why));
    proxy_cluster_pending_start(c);
    proxy_cluster_connection_start(c, 0);
    assert_false(proxy_cluster_connect_admit(c, &why));
    assert_string_equal(why, "circuit breaker: max_pending");
    assert_int_equal(stats(c, 0).overflows[PROXY_OVERFLOW_PENDING], 1);
    proxy_cluster_pending_end(c); /* connected */
    assert_true(proxy_cluster_connect_admit(c, &why));
    proxy_cluster_free(c);
}

static void test_limits_are_shared_among_workers(void **state)
{
    fixture f;
    fixture_init(&f, 2, PROXY_BALANCE_LEAST_REQUEST);
    f.u.circuit_breakers.max_requests = 10;
    f.u.circuit_breakers.max_connections = 1;
    proxy_cluster *c = cluster_new(&f, 3, 1);
    proxy_cluster_stats s = stats(c, 0);
    assert_int_equal(s.max_requests, 4);    /* ceil(10 / 3) */
    assert_int_equal(s.max_connections, 1); /* never 0 */
    assert_int_equal(s.max_pending, 342);   /* ceil(1024 / 3) */
    assert_int_equal(s.budget_min_concurrency, 1);
    for (int i = 0; i < 4; i++) {
        assert_true(proxy_cluster_admit(c, false, NULL));
        proxy_cluster_request_start(c, 0, false);
    }
    assert_false(proxy_cluster_admit(c, false, NULL));
    proxy_cluster_free(c);
}

static void test_extra_ends_do_not_wrap_gauges(void **state)
{
    proxy_cluster *c = simple(2, PROXY_BALANCE_LEAST_REQUEST);
    proxy_cluster_request_end(c, 0, true, 200, 0);
    proxy_cluster_connection_end(c, 1);
    proxy_cluster_pending_end(c);
    proxy_cluster_request_end(c, 7, false, 200, 0); /* no such endpoint */
    proxy_cluster_request_start(c, 9, false);
    proxy_cluster_stats s = stats(c, 0);
    assert_int_equal(s.active_requests, 1);
    assert_int_equal(s.active_retries, 0);
    assert_int_equal(s.connections, 0);
    assert_int_equal(s.pending, 0);
    assert_int_equal(ep_stats(c, 0, 0).active, 0);
    assert_true(proxy_cluster_admit(c, false, NULL));
    proxy_cluster_free(c);
}

/* ---- outlier detection --------------------------------------------------------------- */

static void test_ejection_after_consecutive_5xx(void **state)
{
    proxy_cluster *c = simple(3, PROXY_BALANCE_ROUND_ROBIN);
    attempts(c, 1, 503, 4, 0);
    attempt(c, 1, 404, 0); /* an answer below 500 breaks the run */
    attempts(c, 1, 500, 4, 0);
    assert_false(ep_stats(c, 1, 0).ejected);
    attempt(c, 1, 502, 0);
    proxy_cluster_endpoint_stats s = ep_stats(c, 1, 0);
    assert_true(s.ejected);
    assert_int_equal(s.ejected_until_ms, 30 * SEC);
    assert_int_equal(s.ejections, 1);
    assert_int_equal(s.errors_5xx, 9);
    assert_int_equal(s.requests, 10);
    for (int i = 0; i < 20; i++)
        assert_int_not_equal(pick(c, 10 * SEC), 1);
    assert_int_equal(stats(c, 10 * SEC).available, 2);
    proxy_cluster_free(c);
}

static void test_reset_counts_as_5xx_and_cancel_as_nothing(void **state)
{
    proxy_cluster *c = simple(3, PROXY_BALANCE_ROUND_ROBIN);
    attempts(c, 0, PROXY_CLUSTER_RESET, 2, 0);
    attempts(c, 0, PROXY_CLUSTER_CANCELLED, 10, 0);
    attempts(c, 0, 504, 2, 0);
    assert_false(ep_stats(c, 0, 0).ejected);
    attempt(c, 0, PROXY_CLUSTER_RESET, 0);
    assert_true(ep_stats(c, 0, 0).ejected);
    assert_int_equal(ep_stats(c, 0, 0).errors_5xx, 5);
    proxy_cluster_free(c);
}

static void test_ejection_after_consecutive_connect_failures(void **state)
{
    fixture f;
    fixture_init(&f, 4, PROXY_BALANCE_ROUND_ROBIN);
    f.u.outlier.consecutive_connect_failures = 3;
    proxy_cluster *c = cluster_new(&f, 1, 1);
    attempts(c, 2, PROXY_CLUSTER_CONNECT_FAILURE, 2, 0);
    attempt(c, 2, 503, 0); /* it was reached: the connect run ends */
    attempts(c, 2, PROXY_CLUSTER_CONNECT_FAILURE, 2, 0);
    assert_false(ep_stats(c, 2, 0).ejected);
    attempt(c, 2, PROXY_CLUSTER_CONNECT_FAILURE, 5);
    proxy_cluster_endpoint_stats s = ep_stats(c, 2, 5);
    assert_true(s.ejected);
    assert_int_equal(s.ejected_until_ms, 5 + 30 * SEC);
    assert_int_equal(s.connect_failures, 5);
    proxy_cluster_free(c);
}

static void test_zero_thresholds_never_eject(void **state)
{
    fixture f;
    fixture_init(&f, 4, PROXY_BALANCE_ROUND_ROBIN);
    f.u.outlier.consecutive_5xx = 0;
    f.u.outlier.consecutive_connect_failures = 0;
    proxy_cluster *c = cluster_new(&f, 1, 1);
    attempts(c, 0, 503, 100, 0);
    attempts(c, 0, PROXY_CLUSTER_CONNECT_FAILURE, 100, 0);
    assert_false(ep_stats(c, 0, 0).ejected);
    proxy_cluster_free(c);
}

static void test_ejected_endpoint_returns_after_its_time(void **state)
{
    proxy_cluster *c = simple(2, PROXY_BALANCE_ROUND_ROBIN);
    attempts(c, 0, 503, 5, 1000);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pick(c, 1000 + 30 * SEC - 1), 1);
    assert_true(ep_stats(c, 0, 1000 + 30 * SEC - 1).ejected);
    assert_false(ep_stats(c, 0, 1000 + 30 * SEC).ejected);
    size_t seen0 = 0;
    for (int i = 0; i < 4; i++)
        seen0 += pick(c, 1000 + 30 * SEC) == 0;
    assert_int_equal(seen0, 2);
    /* back with a fresh run: four more 5xx do not eject it again */
    attempts(c, 0, 503, 4, 40 * SEC);
    assert_false(ep_stats(c, 0, 40 * SEC).ejected);
    proxy_cluster_free(c);
}

static void test_ejection_time_grows_with_repeats_and_is_capped(void **state)
{
    fixture f;
    fixture_init(&f, 2, PROXY_BALANCE_ROUND_ROBIN);
    f.u.outlier.max_ejection_ms = 100 * SEC;
    proxy_cluster *c = cluster_new(&f, 1, 1);
    uint64_t now = 0;
    uint64_t want[] = {30 * SEC, 60 * SEC, 90 * SEC, 100 * SEC, 100 * SEC};
    for (size_t i = 0; i < 5; i++) {
        attempts(c, 0, 503, 5, now);
        proxy_cluster_endpoint_stats s = ep_stats(c, 0, now);
        assert_true(s.ejected);
        assert_int_equal(s.ejected_until_ms - now, want[i]);
        assert_int_equal(s.ejections, i + 1);
        now = s.ejected_until_ms; /* fails again as soon as it is back */
        pick(c, now);
    }
    proxy_cluster_free(c);
}

static void test_ejection_time_shrinks_after_calm(void **state)
{
    proxy_cluster *c = simple(2, PROXY_BALANCE_ROUND_ROBIN);
    attempts(c, 0, 503, 5, 0);        /* 30 s */
    attempts(c, 0, 503, 5, 30 * SEC); /* back at 30 s, out again: 60 s */
    assert_int_equal(ep_stats(c, 0, 30 * SEC).ejected_until_ms, 90 * SEC);
    /* back at 90 s; 60 s (two base times) of calm bring the count from 2 to 0 */
    uint64_t now = 150 * SEC;
    pick(c, now);
    attempts(c, 0, 503, 5, now);
    assert_int_equal(ep_stats(c, 0, now).ejected_until_ms, now + 30 * SEC);
    proxy_cluster_free(c);
}

static void test_max_ejection_percent_holds(void **state)
{
    proxy_cluster *c = simple(10, PROXY_BALANCE_ROUND_ROBIN);
    for (size_t ep = 0; ep < 10; ep++)
        attempts(c, ep, 503, 20, 0);
    size_t ejected = 0;
    for (size_t ep = 0; ep < 10; ep++)
        ejected += ep_stats(c, ep, 0).ejected;
    assert_int_equal(ejected, 5); /* 50 % */
    assert_int_equal(stats(c, 0).available, 5);
    /* when they are back, a failing one that could not be ejected is, at its next failure */
    size_t after = 0;
    pick(c, 30 * SEC);
    attempts(c, 9, 503, 1, 30 * SEC);
    for (size_t ep = 0; ep < 10; ep++)
        after += ep_stats(c, ep, 30 * SEC).ejected;
    assert_int_equal(after, 1);
    proxy_cluster_free(c);
}

static void test_single_endpoint_is_not_ejected_by_default(void **state)
{
    proxy_cluster *c = simple(1, PROXY_BALANCE_LEAST_REQUEST);
    attempts(c, 0, 503, 50, 0);
    assert_false(ep_stats(c, 0, 0).ejected);
    assert_int_equal(pick(c, 0), 0);
    proxy_cluster_free(c);
}

static void test_all_ejected_picks_none(void **state)
{
    fixture f;
    fixture_init(&f, 2, PROXY_BALANCE_LEAST_REQUEST);
    f.u.outlier.max_ejection_percent = 100;
    proxy_cluster *c = cluster_new(&f, 1, 1);
    attempts(c, 0, 503, 5, 0);
    attempts(c, 1, 503, 5, 0);
    size_t ep = 0;
    assert_int_equal(proxy_cluster_pick(c, NOKEY, PROXY_CLUSTER_NONE, 1, &ep), WARD_ENOENT);
    assert_int_equal(ep, PROXY_CLUSTER_NONE);
    assert_int_equal(stats(c, 1).available, 0);
    assert_int_equal(proxy_cluster_pick(c, NOKEY, PROXY_CLUSTER_NONE, 30 * SEC, &ep), 0);
    proxy_cluster_free(c);
}

static void test_all_unhealthy_picks_none(void **state)
{
    proxy_balance all[] = {PROXY_BALANCE_ROUND_ROBIN, PROXY_BALANCE_LEAST_REQUEST,
                           PROXY_BALANCE_CONSISTENT_HASH};
    for (size_t b = 0; b < 3; b++) {
        proxy_cluster *c = simple(3, all[b]);
        for (size_t i = 0; i < 3; i++)
            proxy_cluster_set_healthy(c, i, false);
        proxy_cluster_set_healthy(c, 1, false); /* twice: no double count */
        size_t ep;
        proxy_slice key = {"k", 1};
        assert_int_equal(proxy_cluster_pick(c, key, PROXY_CLUSTER_NONE, 0, &ep), WARD_ENOENT);
        proxy_cluster_set_healthy(c, 2, true);
        assert_int_equal(proxy_cluster_pick(c, key, PROXY_CLUSTER_NONE, 0, &ep), 0);
        assert_int_equal(ep, 2);
        proxy_cluster_free(c);
    }
}

static void test_unhealthy_and_ejected_endpoint_stays_out_when_its_ejection_ends(void **state)
{
    proxy_cluster *c = simple(2, PROXY_BALANCE_ROUND_ROBIN);
    attempts(c, 0, 503, 5, 0);
    proxy_cluster_set_healthy(c, 0, false);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pick(c, 60 * SEC), 1);
    assert_int_equal(stats(c, 60 * SEC).available, 1);
    proxy_cluster_set_healthy(c, 0, true);
    assert_int_equal(stats(c, 60 * SEC).available, 2);
    proxy_cluster_free(c);
}

/* ---- retry budget ---------------------------------------------------------------------- */

static void test_retry_budget_floor_is_min_concurrency(void **state)
{
    proxy_cluster *c = simple(2, PROXY_BALANCE_LEAST_REQUEST);
    const char *why = NULL;
    for (int i = 0; i < 3; i++) {
        assert_true(proxy_cluster_admit(c, true, &why));
        proxy_cluster_request_start(c, 0, true);
    }
    assert_false(proxy_cluster_admit(c, true, &why));
    assert_string_equal(why, "retry budget exhausted");
    assert_int_equal(stats(c, 0).overflows[PROXY_OVERFLOW_RETRY_BUDGET], 1);
    proxy_cluster_free(c);
}

static void test_retry_budget_scales_with_first_attempts(void **state)
{
    proxy_cluster *c = simple(2, PROXY_BALANCE_LEAST_REQUEST);
    for (int i = 0; i < 100; i++)
        proxy_cluster_request_start(c, 0, false);
    int admitted = 0;
    while (proxy_cluster_admit(c, true, NULL) && admitted < 1000) {
        proxy_cluster_request_start(c, 1, true);
        admitted++;
    }
    assert_int_equal(admitted, 20); /* 20 % of 100 first attempts */
    proxy_cluster_free(c);
}

/* A synthetic outage: 1000 requests arrive, 10 per tick; every attempt takes
 * 5 ticks and fails with 503; a request may be tried 3 times. Returns the
 * retries started. */
static int outage(proxy_cluster *c)
{
    enum { N = 1000, PER_TICK = 10, LATENCY = 5, TRIES = 3 };
    static struct {
        size_t ep;
        int tries;
        int due; /* tick the current attempt ends; -1 done */
    } r[N];
    int retries = 0, started = 0, done = 0;
    for (int tick = 0; done < N; tick++) {
        for (int i = 0; i < started; i++) {
            if (r[i].due != tick)
                continue;
            bool was_retry = r[i].tries > 1;
            proxy_cluster_request_end(c, r[i].ep, was_retry, 503, (uint64_t)tick * 10);
            r[i].due = -1;
            if (r[i].tries < TRIES && proxy_cluster_admit(c, true, NULL)) {
                size_t ep;
                proxy_slice none = {NULL, 0};
                if (proxy_cluster_pick(c, none, r[i].ep, (uint64_t)tick * 10, &ep) == 0) {
                    proxy_cluster_request_start(c, ep, true);
                    r[i].ep = ep;
                    r[i].tries++;
                    r[i].due = tick + LATENCY;
                    retries++;
                    continue;
                }
            }
            done++;
        }
        for (int k = 0; k < PER_TICK && started < N; k++, started++) {
            assert_true(proxy_cluster_admit(c, false, NULL));
            r[started].ep = pick(c, (uint64_t)tick * 10);
            r[started].tries = 1;
            r[started].due = tick + LATENCY;
            proxy_cluster_request_start(c, r[started].ep, false);
        }
    }
    proxy_cluster_stats s = stats(c, 0);
    assert_int_equal(s.active_requests, 0);
    assert_int_equal(s.active_retries, 0);
    assert_int_equal(s.retries, (uint64_t)retries);
    return retries;
}

static void test_retry_budget_holds_retries_in_an_outage(void **state)
{
    fixture f;
    fixture_init(&f, 10, PROXY_BALANCE_LEAST_REQUEST);
    proxy_cluster *c = cluster_new(&f, 1, 3);
    int retries = outage(c);
    fprintf(stderr, "outage: %d retries for 1000 requests with the budget\n", retries);
    assert_true(retries <= 1000 * 20 / 100 + 3); /* 20 % plus the floor */
    assert_true(retries >= 150);                 /* the budget is used, not just refused */
    /* every request asked once after its first failure: the rest were refused */
    assert_true(stats(c, 0).overflows[PROXY_OVERFLOW_RETRY_BUDGET] >= (uint64_t)(1000 - retries));
    assert_true(stats(c, 0).requests <= 1000 + 1000 * 20 / 100 + 3); /* the load: x1.2 */
    proxy_cluster_free(c);

    /* the same outage without a budget: every request is tried three times */
    f.u.retry_budget.percent = 100;
    f.u.retry_budget.min_concurrency = 100000;
    c = cluster_new(&f, 1, 3);
    retries = outage(c);
    assert_int_equal(retries, 2000);
    proxy_cluster_free(c);
}

/* ---- traffic split ------------------------------------------------------------------------ */

static void split(const uint32_t *w, size_t n, uint64_t seed)
{
    enum { PICKS = 100000 };
    size_t count[8] = {0};
    uint64_t total = 0;
    proxy_rng rng;
    proxy_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        total += w[i];
    for (int i = 0; i < PICKS; i++) {
        size_t k = proxy_weighted_pick(w, n, proxy_rng_next(&rng));
        assert_true(k < n);
        count[k]++;
    }
    for (size_t i = 0; i < n; i++) {
        double want = (double)w[i] / (double)total, got = (double)count[i] / PICKS;
        fprintf(stderr, "split: weight %u: configured %.4f observed %.4f\n", w[i], want, got);
        assert_true(got > want - 0.01 && got < want + 0.01);
        if (w[i] == 0)
            assert_int_equal(count[i], 0);
    }
}

static void test_weighted_pick_matches_the_weights(void **state)
{
    uint32_t canary[] = {95, 5};
    uint32_t three[] = {70, 20, 10};
    uint32_t uneven[] = {1, 0, 3, 996};
    uint32_t even[] = {25, 25, 25, 25};
    split(canary, 2, 1);
    split(three, 3, 2);
    split(uneven, 4, 3);
    split(even, 4, 4);
}

static void test_weighted_pick_without_weight_picks_none(void **state)
{
    uint32_t zero[] = {0, 0, 0};
    assert_int_equal(proxy_weighted_pick(zero, 3, 12345), 3);
    assert_int_equal(proxy_weighted_pick(NULL, 0, 12345), 0);
    uint32_t one[] = {0, 7, 0};
    for (uint64_t r = 0; r < 100; r++)
        assert_int_equal(proxy_weighted_pick(one, 3, r * 0x9e3779b97f4a7c15ull), 1);
    uint32_t big[] = {UINT32_MAX, UINT32_MAX};
    assert_int_equal(proxy_weighted_pick(big, 2, (uint64_t)UINT32_MAX - 1), 0);
    assert_int_equal(proxy_weighted_pick(big, 2, UINT32_MAX), 1);
}

static void test_rng_accepts_a_zero_seed(void **state)
{
    proxy_rng a, b;
    proxy_rng_seed(&a, 0);
    proxy_rng_seed(&b, 0);
    uint64_t x = proxy_rng_next(&a);
    assert_true(x != 0 || proxy_rng_next(&a) != 0);
    proxy_rng_seed(&a, 0);
    for (int i = 0; i < 10; i++)
        assert_true(proxy_rng_next(&a) == proxy_rng_next(&b));
}

/* ---- stats and rendering ------------------------------------------------------------------ */

static void test_new_rejects_a_bad_upstream(void **state)
{
    fixture f;
    proxy_cluster *c = (proxy_cluster *)&f; /* must be cleared */
    fixture_init(&f, 0, PROXY_BALANCE_LEAST_REQUEST);
    assert_int_equal(proxy_cluster_new(&f.u, 1, 1, &c), WARD_EINVAL);
    assert_null(c);
    fixture_init(&f, 2, PROXY_BALANCE_LEAST_REQUEST);
    f.u.outlier.max_ejection_percent = 101;
    assert_int_equal(proxy_cluster_new(&f.u, 1, 1, &c), WARD_EINVAL);
    fixture_init(&f, 2, PROXY_BALANCE_CONSISTENT_HASH);
    f.u.hash_on = PROXY_HASH_HEADER; /* without a name */
    assert_int_equal(proxy_cluster_new(&f.u, 1, 1, &c), WARD_EINVAL);
    fixture_init(&f, 2, PROXY_BALANCE_LEAST_REQUEST);
    f.u.service = NULL;
    assert_int_equal(proxy_cluster_new(&f.u, 1, 1, &c), WARD_EINVAL);
    assert_int_equal(proxy_cluster_new(NULL, 1, 1, &c), WARD_EINVAL);
    proxy_cluster_free(NULL);
}

static void test_cluster_copies_the_upstream(void **state)
{
    fixture f;
    fixture_init(&f, 3, PROXY_BALANCE_ROUND_ROBIN);
    proxy_cluster *c = cluster_new(&f, 1, 1);
    memset(&f, 0, sizeof(f));
    assert_string_equal(proxy_cluster_service(c), "inventory");
    assert_string_equal(proxy_cluster_spiffe_id(c), "spiffe://example.org/ns/shop/sa/inventory");
    assert_int_equal(proxy_cluster_endpoint_count(c), 3);
    assert_string_equal(proxy_cluster_endpoint_name(c, 2), "10.0.0.3:8443");
    assert_int_equal(proxy_cluster_endpoint_addr(c, 2)->sa_family, AF_INET);
    assert_null(proxy_cluster_endpoint_name(c, 3));
    assert_null(proxy_cluster_endpoint_addr(c, 3));
    proxy_cluster_free(c);
}

static void test_stats_count_requests_retries_and_failures(void **state)
{
    proxy_cluster *c = simple(2, PROXY_BALANCE_ROUND_ROBIN);
    proxy_cluster_request_start(c, 0, false);
    proxy_cluster_request_end(c, 0, false, 503, 0);
    proxy_cluster_request_start(c, 1, true);
    proxy_cluster_request_end(c, 1, true, 200, 0);
    proxy_cluster_request_start(c, 1, false);
    attempt(c, 0, PROXY_CLUSTER_CONNECT_FAILURE, 0);
    proxy_cluster_stats s = stats(c, 0);
    assert_int_equal(s.requests, 4);
    assert_int_equal(s.retries, 1);
    assert_int_equal(s.active_requests, 1);
    assert_int_equal(s.endpoints, 2);
    assert_int_equal(s.available, 2);
    proxy_cluster_endpoint_stats e0 = ep_stats(c, 0, 0), e1 = ep_stats(c, 1, 0);
    assert_string_equal(e0.name, "10.0.0.1:8443");
    assert_int_equal(e0.requests, 2);
    assert_int_equal(e0.errors_5xx, 1);
    assert_int_equal(e0.connect_failures, 1);
    assert_int_equal(e0.active, 0);
    assert_true(e0.healthy);
    assert_false(e0.ejected);
    assert_int_equal(e0.ejected_until_ms, 0);
    assert_int_equal(e1.requests, 2);
    assert_int_equal(e1.active, 1);
    proxy_cluster_free(c);
}

static cJSON *find(cJSON *arr, const char *key, const char *value)
{
    cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(it, key);
        if (cJSON_IsString(v) && strcmp(v->valuestring, value) == 0)
            return it;
    }
    return NULL;
}

static double num(cJSON *o, const char *key)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void test_render_json_sums_the_workers(void **state)
{
    fixture f, g;
    fixture_init(&f, 2, PROXY_BALANCE_ROUND_ROBIN);
    fixture_init(&g, 1, PROXY_BALANCE_LEAST_REQUEST);
    g.u.service = "ledger";
    proxy_cluster *w0 = cluster_new(&f, 2, 1), *w1 = cluster_new(&f, 2, 2),
                  *l0 = cluster_new(&g, 2, 3);
    attempts(w0, 0, 200, 3, 0);
    attempts(w1, 0, 200, 2, 0);
    attempts(w1, 1, 503, 5, 1000); /* ejected by worker 1 only, until 31 s */
    proxy_cluster_set_healthy(w0, 0, false);
    proxy_cluster_admit(w0, true, NULL);
    proxy_cluster_request_start(w0, 0, true);
    proxy_cluster_request_start(w0, 0, true); /* two retries in flight */
    proxy_cluster_admit(w0, true, NULL);      /* budget floor ceil(3/2) = 2: overflow */
    proxy_cluster *all[] = {w0, l0, w1};
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(proxy_cluster_render_json(all, 3, 11 * SEC, &b), 0);
    cJSON *doc = cJSON_Parse(b.ptr);
    if (doc == NULL)
        fprintf(stderr, "not JSON: %s\n", b.ptr);
    assert_non_null(doc);
    cJSON *clusters = cJSON_GetObjectItemCaseSensitive(doc, "clusters");
    assert_int_equal(cJSON_GetArraySize(clusters), 2);
    assert_string_equal(cJSON_GetArrayItem(clusters, 0)->child->valuestring, "inventory");
    cJSON *inv = find(clusters, "service", "inventory");
    assert_non_null(inv);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(inv, "balance")->valuestring,
                        "round_robin");
    assert_int_equal(num(inv, "instances"), 2);
    assert_int_equal(num(inv, "requests"), 12);
    assert_int_equal(num(inv, "retries"), 2);
    assert_int_equal(num(inv, "active_retries"), 2);
    assert_int_equal(num(inv, "available"), 1); /* the worse worker's view */
    cJSON *cb = cJSON_GetObjectItemCaseSensitive(inv, "circuit_breakers");
    assert_int_equal(num(cb, "max_requests"), 1024); /* 512 per worker */
    cJSON *ov = cJSON_GetObjectItemCaseSensitive(inv, "overflows");
    assert_int_equal(num(ov, "retry_budget"), 1);
    assert_int_equal(num(ov, "max_connections"), 0);
    cJSON *eps = cJSON_GetObjectItemCaseSensitive(inv, "endpoints");
    cJSON *e0 = find(eps, "address", "10.0.0.1:8443"), *e1 = find(eps, "address", "10.0.0.2:8443");
    assert_non_null(e0);
    assert_non_null(e1);
    assert_int_equal(num(e0, "requests"), 7);
    assert_int_equal(num(e0, "active"), 2);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(e0, "healthy")));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(e0, "ejected")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e1, "healthy")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e1, "ejected")));
    assert_int_equal(num(e1, "ejected_in"), 1);
    assert_int_equal(num(e1, "ejected_until_ms"), 31 * SEC);
    assert_int_equal(num(e1, "ejected_remaining_ms"), 20 * SEC);
    assert_int_equal(num(e1, "errors_5xx"), 5);
    assert_int_equal(num(e1, "ejections"), 1);
    cJSON *led = find(clusters, "service", "ledger");
    assert_int_equal(num(led, "instances"), 1);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(led, "balance")->valuestring,
                        "least_request");
    cJSON_Delete(doc);
    /* later, the ejection is over */
    ward_buf_reset(&b);
    assert_int_equal(proxy_cluster_render_json(all, 3, 31 * SEC, &b), 0);
    assert_non_null(strstr(b.ptr, "\"address\":\"10.0.0.2:8443\",\"healthy\":true,"
                                  "\"ejected\":false,\"ejected_in\":0,\"ejected_until_ms\":0"));
    ward_buf_dispose(&b);
    proxy_cluster_free(w0);
    proxy_cluster_free(w1);
    proxy_cluster_free(l0);
}

static void test_render_json_of_nothing(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(proxy_cluster_render_json(NULL, 0, 0, &b), 0);
    assert_string_equal(b.ptr, "{\"clusters\":[]}\n");
    ward_buf_dispose(&b);
}

static void test_render_metrics_labels_service_and_endpoint(void **state)
{
    proxy_cluster *c = simple(2, PROXY_BALANCE_ROUND_ROBIN);
    attempts(c, 1, 503, 5, 0);
    proxy_cluster_admit(c, true, NULL);
    for (int i = 0; i < 3; i++)
        proxy_cluster_request_start(c, 0, true);
    proxy_cluster_admit(c, true, NULL);
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(proxy_cluster_render_metrics(&c, 1, 0, &b), 0);
    const char *want[] = {
        "# TYPE ward_cluster_requests_total counter\n",
        "ward_cluster_requests_total{service=\"inventory\"} 8\n",
        "ward_cluster_retries_total{service=\"inventory\"} 3\n",
        "ward_cluster_active_retries{service=\"inventory\"} 3\n",
        "ward_cluster_overflows_total{service=\"inventory\",breaker=\"retry_budget\"} 1\n",
        "ward_cluster_overflows_total{service=\"inventory\",breaker=\"max_requests\"} 0\n",
        "ward_cluster_endpoint_5xx_total{service=\"inventory\",endpoint=\"10.0.0.2:8443\"} 5\n",
        "ward_cluster_endpoint_ejections_total{service=\"inventory\",endpoint=\"10.0.0.2:8443\"} "
        "1\n",
        "ward_cluster_endpoint_ejected{service=\"inventory\",endpoint=\"10.0.0.2:8443\"} 1\n",
        "ward_cluster_endpoint_ejected{service=\"inventory\",endpoint=\"10.0.0.1:8443\"} 0\n",
        "ward_cluster_endpoint_healthy{service=\"inventory\",endpoint=\"10.0.0.1:8443\"} 1\n",
        "ward_cluster_endpoint_active_requests{service=\"inventory\",endpoint=\"10.0.0.1:8443\"} "
        "3\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (strstr(b.ptr, want[i]) == NULL)
            fprintf(stderr, "missing: %s\nin:\n%s", want[i], b.ptr);
        assert_non_null(strstr(b.ptr, want[i]));
    }
    ward_buf_dispose(&b);
    proxy_cluster_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_visits_endpoints_in_order),
        cmocka_unit_test(test_round_robin_skips_unavailable_endpoints),
        cmocka_unit_test(test_round_robin_avoids_the_previous_endpoint),
        cmocka_unit_test(test_avoided_endpoint_is_used_when_it_is_the_only_one),
        cmocka_unit_test(test_least_request_is_the_default),
        cmocka_unit_test(test_least_request_never_picks_the_most_loaded_of_five),
        cmocka_unit_test(test_least_request_prefers_the_less_loaded),
        cmocka_unit_test(test_least_request_spreads_evenly_when_idle),
        cmocka_unit_test(test_least_request_follows_finished_requests),
        cmocka_unit_test(test_least_request_avoids_the_previous_endpoint),
        cmocka_unit_test(test_least_request_depends_on_the_seed_only),
        cmocka_unit_test(test_consistent_hash_same_key_same_endpoint),
        cmocka_unit_test(test_consistent_hash_spreads_keys_evenly),
        cmocka_unit_test(test_consistent_hash_moves_only_the_ejected_endpoints_keys),
        cmocka_unit_test(test_consistent_hash_keys_follow_endpoint_names_not_order),
        cmocka_unit_test(test_consistent_hash_retry_goes_to_the_next_endpoint),
        cmocka_unit_test(test_consistent_hash_without_a_key_balances_by_load),
        cmocka_unit_test(test_hash_key_comes_from_the_header_or_the_principal),
        cmocka_unit_test(test_max_requests_overflows),
        cmocka_unit_test(test_max_retries_overflows),
        cmocka_unit_test(test_max_retries_zero_means_no_retries),
        cmocka_unit_test(test_max_connections_overflows),
        cmocka_unit_test(test_max_pending_overflows),
        cmocka_unit_test(test_limits_are_shared_among_workers),
        cmocka_unit_test(test_extra_ends_do_not_wrap_gauges),
        cmocka_unit_test(test_ejection_after_consecutive_5xx),
        cmocka_unit_test(test_reset_counts_as_5xx_and_cancel_as_nothing),
        cmocka_unit_test(test_ejection_after_consecutive_connect_failures),
        cmocka_unit_test(test_zero_thresholds_never_eject),
        cmocka_unit_test(test_ejected_endpoint_returns_after_its_time),
        cmocka_unit_test(test_ejection_time_grows_with_repeats_and_is_capped),
        cmocka_unit_test(test_ejection_time_shrinks_after_calm),
        cmocka_unit_test(test_max_ejection_percent_holds),
        cmocka_unit_test(test_single_endpoint_is_not_ejected_by_default),
        cmocka_unit_test(test_all_ejected_picks_none),
        cmocka_unit_test(test_all_unhealthy_picks_none),
        cmocka_unit_test(test_unhealthy_and_ejected_endpoint_stays_out_when_its_ejection_ends),
        cmocka_unit_test(test_retry_budget_floor_is_min_concurrency),
        cmocka_unit_test(test_retry_budget_scales_with_first_attempts),
        cmocka_unit_test(test_retry_budget_holds_retries_in_an_outage),
        cmocka_unit_test(test_weighted_pick_matches_the_weights),
        cmocka_unit_test(test_weighted_pick_without_weight_picks_none),
        cmocka_unit_test(test_rng_accepts_a_zero_seed),
        cmocka_unit_test(test_new_rejects_a_bad_upstream),
        cmocka_unit_test(test_cluster_copies_the_upstream),
        cmocka_unit_test(test_stats_count_requests_retries_and_failures),
        cmocka_unit_test(test_render_json_sums_the_workers),
        cmocka_unit_test(test_render_json_of_nothing),
        cmocka_unit_test(test_render_metrics_labels_service_and_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
