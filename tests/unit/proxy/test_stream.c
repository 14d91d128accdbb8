/* test_stream.c - unit tests of proxy streams: half-close (shutdown_write), server names (SNI) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

#define TD        "example.org"
#define SERVER_ID "spiffe://example.org/ns/db/sa/postgres"
#define CLIENT_ID "spiffe://example.org/ns/app/sa/api"

/* ---- a server side that records what it gets ------------------------------------------------- */

typedef struct sside {
    proxy_stream *st;
    ward_buf got;
    bool opened, eof, closed;
    int eof_status;
    char sni[300];
    bool has_sni;
    const char *reply_on_eof; /* written, then the write side shut, when the client's FIN comes */
} sside;

typedef struct world {
    uv_loop_t loop;
    tpki pki;
    uv_tcp_t lst;
    int port;
    proxy_tls_ctx *server_tls, *client_tls;
    sside srv;
} world;

static void ss_record_sni(sside *s)
{
    const char *n = proxy_stream_server_name(s->st);
    s->has_sni = n != NULL;
    snprintf(s->sni, sizeof(s->sni), "%s", n ? n : "");
}

static void ss_open(proxy_stream *st, int status, void *data)
{
    sside *s = data;
    s->opened = status == 0;
    if (status == 0)
        ss_record_sni(s);
}

static void ss_read(proxy_stream *st, const char *buf, size_t len, void *data)
{
    ward_buf_append(&((sside *)data)->got, buf, len);
}

static void ss_eof(proxy_stream *st, int status, void *data)
{
    sside *s = data;
    s->eof = true;
    s->eof_status = status;
    if (s->reply_on_eof != NULL) {
        /* the client shut its write side: this side may still talk */
        assert_int_equal(proxy_stream_write(st, s->reply_on_eof, strlen(s->reply_on_eof)), 0);
        proxy_stream_shutdown(st, 1000);
    }
}

static void ss_close(proxy_stream *st, void *data)
{
    sside *s = data;
    s->closed = true;
    s->st = NULL;
}

static const proxy_stream_cbs ss_cbs = {ss_open, ss_read, ss_eof, NULL, NULL, ss_close};

static void on_accept(uv_stream_t *l, int status)
{
    world *w = l->data;
    assert_int_equal(proxy_stream_accept(l, w->server_tls, &ss_cbs, &w->srv, &w->srv.st), 0);
    if (w->server_tls == NULL)
        w->srv.opened = true;
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof(*w));
    uv_loop_init(&w->loop);
    tpki_open(&w->pki, TD);
    ward_buf_init(&w->srv.got);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&w->loop, &w->lst);
    w->lst.data = w;
    assert_int_equal(uv_tcp_bind(&w->lst, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&w->lst, 16, on_accept), 0);
    int len = sizeof(sa);
    uv_tcp_getsockname(&w->lst, (struct sockaddr *)&sa, &len);
    w->port = ntohs(sa.sin_port);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    if (w->srv.st != NULL) {
        proxy_stream_close(w->srv.st);
        run_until(&w->loop, &w->srv.closed, 2000);
    }
    uv_close((uv_handle_t *)&w->lst, NULL);
    proxy_tls_ctx_unref(w->server_tls);
    proxy_tls_ctx_unref(w->client_tls);
    loop_finish(&w->loop);
    tpki_close(&w->pki);
    ward_buf_dispose(&w->srv.got);
    free(w);
    return 0;
}

static void use_tls(world *w)
{
    w->server_tls = tpki_ctx(&w->pki, SERVER_ID, true, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    w->client_tls = tpki_ctx(&w->pki, CLIENT_ID, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
}

/* A client that does not close on EOF (the harness's tclient does). */
typedef struct hclient {
    proxy_stream *s;
    ward_buf got;
    bool opened, eof, closed;
    int eof_status;
} hclient;

static void hc_open(proxy_stream *st, int status, void *data)
{
    ((hclient *)data)->opened = status == 0;
}

static void hc_read(proxy_stream *st, const char *buf, size_t len, void *data)
{
    ward_buf_append(&((hclient *)data)->got, buf, len);
}

static void hc_eof(proxy_stream *st, int status, void *data)
{
    hclient *c = data;
    c->eof = true;
    c->eof_status = status;
}

static void hc_close(proxy_stream *st, void *data)
{
    hclient *c = data;
    c->closed = true;
    c->s = NULL;
}

static const proxy_stream_cbs hc_cbs = {hc_open, hc_read, hc_eof, NULL, NULL, hc_close};

static void hclient_connect(world *w, hclient *c, const char *expected_id)
{
    memset(c, 0, sizeof(*c));
    ward_buf_init(&c->got);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", w->port, &a);
    assert_int_equal(proxy_stream_connect(&w->loop, (struct sockaddr *)&a, w->client_tls,
                                          expected_id, &hc_cbs, c, &c->s),
                     0);
}

static void hclient_dispose(world *w, hclient *c)
{
    if (c->s != NULL) {
        proxy_stream_close(c->s);
        run_until(&w->loop, &c->closed, 2000);
    }
    ward_buf_dispose(&c->got);
}

static bool got_equals(const ward_buf *b, const char *s)
{
    return b->len == strlen(s) && memcmp(b->ptr, s, b->len) == 0;
}

/* ---- half-close ------------------------------------------------------------------------------ */

/* The client sends, shuts its write side, and still reads the server's answer. */
static void half_close(world *w)
{
    w->srv.reply_on_eof = "the answer, after your FIN";
    hclient c;
    hclient_connect(w, &c, w->client_tls ? SERVER_ID : NULL);
    assert_int_equal(proxy_stream_write(c.s, "question", 8), 0);
    proxy_stream_shutdown_write(c.s);
    /* writes after the half-close are refused */
    assert_int_equal(proxy_stream_write(c.s, "more", 4), WARD_EIO);
    assert_true(run_until(&w->loop, &w->srv.eof, 3000));
    assert_int_equal(w->srv.eof_status, 0); /* a clean end (TLS: close_notify came) */
    assert_true(got_equals(&w->srv.got, "question"));
    assert_true(run_until(&w->loop, &c.eof, 3000));
    assert_int_equal(c.eof_status, 0);
    assert_true(got_equals(&c.got, "the answer, after your FIN"));
    assert_false(c.closed); /* the stream stays until closed */
    /* now a graceful shutdown: the FIN is out and the peer done: it closes */
    proxy_stream_shutdown(c.s, 5000);
    assert_true(run_until(&w->loop, &c.closed, 1000));
    hclient_dispose(w, &c);
}

static void test_shutdown_write_plaintext(void **state)
{
    half_close(*state);
}

static void test_shutdown_write_tls(void **state)
{
    world *w = *state;
    use_tls(w);
    half_close(w);
}

static void test_shutdown_write_before_open_sends_held_bytes_first(void **state)
{
    world *w = *state;
    use_tls(w);
    hclient c;
    hclient_connect(w, &c, SERVER_ID);
    /* not connected yet: both the bytes and the FIN wait for the handshake */
    assert_int_equal(proxy_stream_write(c.s, "early bytes", 11), 0);
    proxy_stream_shutdown_write(c.s);
    assert_int_equal(proxy_stream_write(c.s, "x", 1), WARD_EIO);
    assert_true(run_until(&w->loop, &w->srv.eof, 3000));
    assert_int_equal(w->srv.eof_status, 0);
    assert_true(got_equals(&w->srv.got, "early bytes"));
    assert_true(c.opened);
    assert_false(c.closed);
    hclient_dispose(w, &c);
}

static void test_shutdown_write_then_shutdown_lingers_for_the_peer(void **state)
{
    world *w = *state;
    hclient c;
    hclient_connect(w, &c, NULL);
    proxy_stream_shutdown_write(c.s);
    assert_true(run_until(&w->loop, &w->srv.eof, 3000));
    /* the peer has not finished: shutdown waits for it (or the linger deadline) */
    proxy_stream_shutdown(c.s, 5000);
    run_for(&w->loop, 50);
    assert_false(c.closed);
    proxy_stream_shutdown(w->srv.st, 1000);
    assert_true(run_until(&w->loop, &c.closed, 1000));
    hclient_dispose(w, &c);
}

static void test_shutdown_write_then_shutdown_linger_deadline(void **state)
{
    world *w = *state;
    hclient c;
    hclient_connect(w, &c, NULL);
    proxy_stream_shutdown_write(c.s);
    assert_true(run_until(&w->loop, &w->srv.eof, 3000));
    proxy_stream_shutdown(c.s, 100); /* the server never finishes */
    assert_true(run_until(&w->loop, &c.closed, 1000));
    hclient_dispose(w, &c);
}

/* ---- server names ---------------------------------------------------------------------------- */

static void test_server_name_reaches_the_server(void **state)
{
    world *w = *state;
    use_tls(w);
    hclient c;
    hclient_connect(w, &c, SERVER_ID);
    assert_int_equal(proxy_stream_set_server_name(c.s, "postgres.db.svc"), 0);
    assert_true(run_until(&w->loop, &w->srv.opened, 3000));
    assert_true(w->srv.has_sni);
    assert_string_equal(w->srv.sni, "postgres.db.svc");
    assert_true(run_until(&w->loop, &c.opened, 3000));
    /* too late now */
    assert_int_equal(proxy_stream_set_server_name(c.s, "other"), WARD_EINVAL);
    /* a client stream has no server name to report */
    assert_null(proxy_stream_server_name(c.s));
    hclient_dispose(w, &c);
}

static void test_no_server_name_is_null(void **state)
{
    world *w = *state;
    use_tls(w);
    hclient c;
    hclient_connect(w, &c, SERVER_ID);
    assert_true(run_until(&w->loop, &w->srv.opened, 3000));
    assert_false(w->srv.has_sni);
    hclient_dispose(w, &c);
}

static void test_server_name_needs_a_tls_client(void **state)
{
    world *w = *state;
    hclient c;
    hclient_connect(w, &c, NULL); /* plaintext */
    assert_int_equal(proxy_stream_set_server_name(c.s, "db"), WARD_EINVAL);
    assert_true(run_until(&w->loop, &w->srv.opened, 3000));
    assert_null(proxy_stream_server_name(w->srv.st));
    hclient_dispose(w, &c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_shutdown_write_plaintext),
        T(test_shutdown_write_tls),
        T(test_shutdown_write_before_open_sends_held_bytes_first),
        T(test_shutdown_write_then_shutdown_lingers_for_the_peer),
        T(test_shutdown_write_then_shutdown_linger_deadline),
        T(test_server_name_reaches_the_server),
        T(test_no_server_name_is_null),
        T(test_server_name_needs_a_tls_client),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
