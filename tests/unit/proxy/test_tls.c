/* test_tls.c - unit tests of TLS over libuv: loopback handshakes, SPIFFE peer checks */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

#define TD        "example.org"
#define SERVER_ID "spiffe://example.org/ward/server"
#define CLIENT_ID "spiffe://example.org/ns/test/sa/client"

static const char GET[] = "GET /hello HTTP/1.1\r\nHost: wardd\r\n\r\n";
static const char GET_CLOSE[] = "GET /hello HTTP/1.1\r\nHost: wardd\r\nConnection: close\r\n\r\n";

typedef struct world {
    uv_loop_t loop;
    tpki pki, other; /* example.org, and a foreign trust domain */
    tserver ts;
    proxy_tls_ctx *server_tls;
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof(*w));
    uv_loop_init(&w->loop);
    tpki_open(&w->pki, TD);
    tpki_open(&w->other, "other.org");
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    if (w->ts.srv != NULL)
        tserver_stop(&w->ts, &w->loop);
    proxy_tls_ctx_unref(w->server_tls);
    loop_finish(&w->loop);
    tpki_close(&w->pki);
    tpki_close(&w->other);
    free(w);
    return 0;
}

/* wardd's shape: TLS 1.3, client certificates asked for, checked per request. */
static void start_server(world *w, proxy_tls_peer_mode mode, uint64_t header_timeout_ms)
{
    w->server_tls = tpki_ctx(&w->pki, SERVER_ID, true, mode, w->pki.bundle);
    proxy_http_server_options o;
    memset(&o, 0, sizeof(o));
    o.header_timeout_ms = header_timeout_ms;
    w->ts.bundle = w->pki.bundle;
    tserver_start(&w->ts, &w->loop, &o, w->server_tls);
}

static void test_handshake_with_client_certificate(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 0);
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, CLIENT_ID, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, GET_CLOSE, sizeof(GET_CLOSE) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_int_equal(c.open_status, 0);
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(c.got.ptr, "GET /hello len=0 peer=" CLIENT_ID "\n"));
    /* the server ended with close_notify: a clean end */
    assert_true(c.eof);
    assert_int_equal(c.eof_status, 0);
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_keep_alive_over_tls(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 0);
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, NULL, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    tclient c;
    /* three pipelined requests, the last one closing */
    char req[512];
    snprintf(req, sizeof(req), "%s%s%s", GET, GET, GET_CLOSE);
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, req, strlen(req));
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_int_equal(count_of(&c, "HTTP/1.1 200 OK"), 3);
    assert_int_equal(count_of(&c, "peer=none"), 3);
    assert_int_equal(w->ts.requests, 3);
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_no_client_certificate_is_allowed_when_optional(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 0);
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, NULL, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, GET_CLOSE, sizeof(GET_CLOSE) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_non_null(strstr(c.got.ptr, "peer=none\n"));
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_foreign_client_certificate_is_invalid(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 0);
    /* an SVID of other.org: the handshake completes (optional), the check per request fails */
    proxy_tls_ctx *ct = tpki_ctx(&w->other, "spiffe://other.org/ns/x/sa/y", false,
                                 PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, GET_CLOSE, sizeof(GET_CLOSE) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_non_null(strstr(c.got.ptr, "peer=invalid\n"));
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_peer_check_remembered_per_bundle(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 0);
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, CLIENT_ID, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, GET, sizeof(GET) - 1);
    while (count_of(&c, "peer=") < 1 && !c.closed)
        uv_run(&w->loop, UV_RUN_ONCE);
    assert_int_equal(count_of(&c, "peer=" CLIENT_ID), 1);
    /* the same connection checked against another snapshot: checked again, and refused */
    w->ts.bundle = w->other.bundle;
    proxy_stream_write(c.s, GET, sizeof(GET) - 1);
    while (count_of(&c, "peer=") < 2 && !c.closed)
        uv_run(&w->loop, UV_RUN_ONCE);
    assert_int_equal(count_of(&c, "peer=invalid"), 1);
    /* a failure is not remembered: the right bundle passes again */
    w->ts.bundle = w->pki.bundle;
    proxy_stream_write(c.s, GET_CLOSE, sizeof(GET_CLOSE) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_int_equal(count_of(&c, "peer=" CLIENT_ID), 2);
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_required_client_certificate_missing(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_REQUIRED, 0);
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, NULL, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, GET_CLOSE, sizeof(GET_CLOSE) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    /* TLS 1.3: the client finishes first, then learns of the refusal */
    assert_int_equal(c.got.len, 0);
    assert_true(c.eof_status < 0 || c.open_status < 0);
    assert_int_equal(w->ts.requests, 0);
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_required_client_certificate_foreign(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_REQUIRED, 0);
    proxy_tls_ctx *ct = tpki_ctx(&w->other, "spiffe://other.org/ns/x/sa/y", false,
                                 PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, GET_CLOSE, sizeof(GET_CLOSE) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_int_equal(c.got.len, 0);
    assert_int_equal(w->ts.requests, 0);
    assert_int_equal(w->ts.tls_errors, 1);
    assert_non_null(strstr(w->ts.tls_error, "trust domain"));
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_required_client_certificate_valid(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_REQUIRED, 0);
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, CLIENT_ID, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, GET_CLOSE, sizeof(GET_CLOSE) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_non_null(strstr(c.got.ptr, "peer=" CLIENT_ID "\n"));
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_client_refuses_wrong_server_id(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 0);
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, NULL, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, "spiffe://example.org/ns/else/sa/where", GET,
                    sizeof(GET) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_true(c.opened);
    assert_true(c.open_status < 0);
    assert_non_null(strstr(c.error, "expected spiffe://example.org/ns/else/sa/where"));
    assert_int_equal(c.got.len, 0);
    assert_int_equal(w->ts.requests, 0);
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_client_refuses_untrusted_server(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 0);
    /* pinned to other.org's bundle: example.org's server is not trusted */
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, NULL, false, PROXY_TLS_PEER_REQUIRED, w->other.bundle);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, GET, sizeof(GET) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_true(c.open_status < 0);
    assert_non_null(strstr(c.error, "peer certificate"));
    assert_int_equal(w->ts.requests, 0);
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_plaintext_to_tls_server_then_good_client(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 0);
    tclient bad;
    tclient_connect(&bad, &w->loop, w->ts.port, NULL, NULL, GET, sizeof(GET) - 1);
    assert_true(run_until(&w->loop, &bad.closed, 5000));
    assert_null(strstr(bad.got.ptr ? bad.got.ptr : "", "HTTP/1.1"));
    assert_int_equal(w->ts.requests, 0);
    /* the server reports the failed handshake, with the peer and a reason */
    assert_int_equal(w->ts.tls_errors, 1);
    assert_non_null(strstr(w->ts.tls_error, "127.0.0.1:"));
    assert_non_null(strstr(w->ts.tls_error, "TLS handshake"));
    tclient_dispose(&bad, &w->loop);
    /* the server still serves */
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, NULL, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, GET_CLOSE, sizeof(GET_CLOSE) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_non_null(strstr(c.got.ptr, "200 OK"));
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_silent_client_is_dropped_at_the_deadline(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 200);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, NULL, NULL, NULL, 0);
    run_for(&w->loop, 50);
    assert_false(c.closed);
    assert_int_equal(proxy_http_server_connections(w->ts.srv), 1);
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_int_equal(c.got.len, 0);
    run_for(&w->loop, 20);
    assert_int_equal(proxy_http_server_connections(w->ts.srv), 0);
    tclient_dispose(&c, &w->loop);
}

static void test_large_response_spans_records(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 0);
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, NULL, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    static const char big[] = "GET /big HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, big, sizeof(big) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_non_null(strstr(c.got.ptr, "Content-Length: 307200\r\n"));
    const char *body = strstr(c.got.ptr, "\r\n\r\n");
    assert_non_null(body);
    assert_int_equal(c.got.len - (size_t)(body + 4 - c.got.ptr), 307200);
    tclient_dispose(&c, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_large_request_body(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 0);
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, NULL, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    size_t n = 60000;
    char *req = malloc(n + 200);
    int h = sprintf(
        req, "POST /up HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n", n);
    memset(req + h, 'x', n);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, SERVER_ID, req, (size_t)h + n);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_non_null(strstr(c.got.ptr, "POST /up len=60000 peer=none"));
    tclient_dispose(&c, &w->loop);
    free(req);
    proxy_tls_ctx_unref(ct);
}

static void test_context_swap_serves_the_new_certificate(void **state)
{
    world *w = *state;
    start_server(w, PROXY_TLS_PEER_OPTIONAL, 0);
    proxy_tls_ctx *ct = tpki_ctx(&w->pki, NULL, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    /* an idle connection made before the swap keeps working */
    tclient before;
    tclient_connect(&before, &w->loop, w->ts.port, ct, SERVER_ID, GET, sizeof(GET) - 1);
    run_until(&w->loop, &before.opened, 5000);
    while (count_of(&before, "200 OK") < 1 && !before.closed)
        uv_run(&w->loop, UV_RUN_ONCE);
    proxy_tls_ctx *next =
        tpki_ctx(&w->pki, "spiffe://example.org/ward/next", true, PROXY_TLS_PEER_OPTIONAL, NULL);
    proxy_http_server_set_tls(w->ts.srv, next);
    proxy_tls_ctx_unref(next);
    tclient c;
    tclient_connect(&c, &w->loop, w->ts.port, ct, "spiffe://example.org/ward/next", GET_CLOSE,
                    sizeof(GET_CLOSE) - 1);
    assert_true(run_until(&w->loop, &c.closed, 5000));
    assert_int_equal(c.open_status, 0);
    assert_non_null(strstr(c.got.ptr, "200 OK"));
    proxy_stream_write(before.s, GET_CLOSE, sizeof(GET_CLOSE) - 1);
    assert_true(run_until(&w->loop, &before.closed, 5000));
    assert_int_equal(count_of(&before, "200 OK"), 2);
    tclient_dispose(&c, &w->loop);
    tclient_dispose(&before, &w->loop);
    proxy_tls_ctx_unref(ct);
}

static void test_ctx_options_refused(void **state)
{
    world *w = *state;
    proxy_tls_options o;
    memset(&o, 0, sizeof(o));
    proxy_tls_ctx *t;
    ward_err err;
    o.server = true; /* no certificate */
    assert_int_equal(proxy_tls_ctx_new(&o, &t, &err), WARD_EINVAL);
    o.server = false;
    o.peer = PROXY_TLS_PEER_REQUIRED; /* no bundle */
    assert_int_equal(proxy_tls_ctx_new(&o, &t, &err), WARD_EINVAL);
    o.peer = PROXY_TLS_PEER_OPTIONAL; /* meaningless for a client */
    o.bundle = w->pki.bundle;
    assert_int_equal(proxy_tls_ctx_new(&o, &t, &err), WARD_EINVAL);
    /* a key that is not the certificate's */
    EVP_PKEY *key, *other;
    ward_buf chain;
    tpki_issue(&w->pki, SERVER_ID, &key, &chain);
    assert_int_equal(ident_client_key_new(&other, &err), 0);
    o.server = true;
    o.peer = PROXY_TLS_PEER_NONE;
    o.chain_pem = chain.ptr;
    o.chain_len = chain.len;
    o.key = other;
    assert_int_equal(proxy_tls_ctx_new(&o, &t, &err), WARD_EINVAL);
    o.chain_pem = "not PEM";
    o.chain_len = 7;
    o.key = key;
    assert_int_equal(proxy_tls_ctx_new(&o, &t, &err), WARD_EINVAL);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    ward_buf_dispose(&chain);
    /* a required server ID with a context that does not check servers */
    proxy_tls_ctx *unchecked = tpki_ctx(&w->pki, NULL, false, PROXY_TLS_PEER_NONE, NULL);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 1, &a);
    proxy_stream *st;
    assert_int_equal(proxy_stream_connect(&w->loop, (struct sockaddr *)&a, unchecked, SERVER_ID,
                                          NULL, NULL, &st),
                     WARD_EINVAL);
    proxy_tls_ctx_unref(unchecked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handshake_with_client_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_alive_over_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_client_certificate_is_allowed_when_optional, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_foreign_client_certificate_is_invalid, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_peer_check_remembered_per_bundle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_required_client_certificate_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_required_client_certificate_foreign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_required_client_certificate_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_refuses_wrong_server_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_refuses_untrusted_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plaintext_to_tls_server_then_good_client, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_silent_client_is_dropped_at_the_deadline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_large_response_spans_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_request_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_context_swap_serves_the_new_certificate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_ctx_options_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
