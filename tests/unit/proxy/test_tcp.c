/* test_tcp.c - unit tests of TCP mode: authorize once, relay both ways, half-close, limits */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

#define TD        "example.org"
#define CLIENT_ID "spiffe://example.org/ns/app/sa/api"
#define PROXY_ID  "spiffe://example.org/ns/app/sa/ward-proxy"
#define DB_ID     "spiffe://example.org/ns/db/sa/postgres"
#define MB        ((size_t)1 << 20)

/* Bytes that show a loss, a duplicate or a reordering. */
static unsigned char pattern(size_t i, unsigned seed)
{
    uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15ull + seed;
    return (unsigned char)(x >> 40);
}

static char *pattern_buf(size_t n, unsigned seed)
{
    char *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)pattern(i, seed);
    return b;
}

static bool is_pattern(const ward_buf *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < b->len && i < n; i++) {
        if ((unsigned char)b->ptr[i] != pattern(i, seed)) {
            print_message("byte %zu of %zu differs\n", i, b->len);
            return false;
        }
    }
    if (b->len != n)
        print_message("%zu bytes, not %zu\n", b->len, n);
    return b->len == n;
}

/* Writes pattern bytes a piece at a time, the next piece once the last one is
 * out: `sent` stops growing when the peer stops taking them. */
#define PIECE ((size_t)64 << 10)

typedef struct streamer {
    size_t total, sent;
    unsigned seed;
} streamer;

static void streamer_pump(proxy_stream *s, streamer *st)
{
    if (st == NULL || st->sent >= st->total || proxy_stream_pending(s) > 0)
        return;
    size_t n = st->total - st->sent < PIECE ? st->total - st->sent : PIECE;
    char b[PIECE];
    for (size_t i = 0; i < n; i++)
        b[i] = (char)pattern(st->sent + i, st->seed);
    assert_int_equal(proxy_stream_write(s, b, n), 0);
    st->sent += n;
}

/* ---- the upstream: a scripted service -------------------------------------------------------- */

#define APP_CONNS_MAX 8

typedef struct uapp uapp;

typedef struct uconn_t {
    uapp *a;
    proxy_stream *st;
} uconn_t;

struct uapp {
    uv_tcp_t lst;
    int port;
    proxy_tls_ctx *tls;    /* NULL: plaintext */
    bool no_handshake;     /* accept TCP, never answer TLS (a hanging service) */
    size_t send_on_accept; /* pattern bytes (seed 2) written at once */
    streamer *stream;      /* or written piece by piece */
    size_t send_on_eof;    /* pattern bytes (seed 3) written when the client's FIN comes */
    bool shut_on_eof;      /* then shut the write side */
    int conns;
    uconn_t *c[APP_CONNS_MAX];
    ward_buf got;
    bool eof, closed, open_failed;
    int eof_status;
    char peer_id[IDENT_ID_MAX];
};

static void ua_open(proxy_stream *st, int status, void *data)
{
    uconn_t *c = data;
    if (status < 0) {
        c->a->open_failed = true;
        return;
    }
    const proxy_peer *p = proxy_stream_peer(st);
    snprintf(c->a->peer_id, sizeof(c->a->peer_id), "%s", p->spiffe_id ? p->spiffe_id : "");
}

static void ua_read(proxy_stream *st, const char *buf, size_t len, void *data)
{
    ward_buf_append(&((uconn_t *)data)->a->got, buf, len);
}

static void ua_eof(proxy_stream *st, int status, void *data)
{
    uconn_t *c = data;
    uapp *a = c->a;
    a->eof = true;
    a->eof_status = status;
    if (status < 0)
        return;
    if (a->send_on_eof > 0) {
        char *b = pattern_buf(a->send_on_eof, 3);
        proxy_stream_write(st, b, a->send_on_eof);
        free(b);
    }
    if (a->shut_on_eof)
        proxy_stream_shutdown_write(st);
}

static void ua_close(proxy_stream *st, void *data)
{
    uconn_t *c = data;
    for (int i = 0; i < APP_CONNS_MAX; i++)
        if (c->a->c[i] == c)
            c->a->c[i] = NULL;
    c->a->closed = true;
    free(c);
}

static void ua_drain(proxy_stream *st, void *data)
{
    streamer_pump(st, ((uconn_t *)data)->a->stream);
}

static const proxy_stream_cbs ua_cbs = {ua_open, ua_read, ua_eof, NULL, ua_drain, ua_close};

static void ua_accept(uv_stream_t *l, int status)
{
    uapp *a = l->data;
    uconn_t *c = calloc(1, sizeof(*c));
    c->a = a;
    if (a->no_handshake) {
        /* a plaintext stream over what the client thinks is TLS: it hears nothing back */
        assert_int_equal(proxy_stream_accept(l, NULL, &ua_cbs, c, &c->st), 0);
    } else {
        assert_int_equal(proxy_stream_accept(l, a->tls, &ua_cbs, c, &c->st), 0);
    }
    if (a->conns < APP_CONNS_MAX)
        a->c[a->conns] = c;
    a->conns++;
    if (a->send_on_accept > 0 && !a->no_handshake) {
        char *b = pattern_buf(a->send_on_accept, 2);
        assert_int_equal(proxy_stream_write(c->st, b, a->send_on_accept), 0);
        free(b);
    }
    streamer_pump(c->st, a->stream);
}

static void uapp_start(uapp *a, uv_loop_t *loop)
{
    ward_buf_init(&a->got);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, &a->lst);
    a->lst.data = a;
    assert_int_equal(uv_tcp_bind(&a->lst, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&a->lst, 64, ua_accept), 0);
    int len = sizeof(sa);
    uv_tcp_getsockname(&a->lst, (struct sockaddr *)&sa, &len);
    a->port = ntohs(sa.sin_port);
}

/* ---- clients that keep their stream after EOF ------------------------------------------------ */

typedef struct hcli {
    proxy_stream *s;
    streamer *stream;
    ward_buf got;
    bool opened, eof, closed;
    int open_status, eof_status;
} hcli;

static void hc_open(proxy_stream *st, int status, void *data)
{
    hcli *c = data;
    c->opened = true;
    c->open_status = status;
}

static void hc_read(proxy_stream *st, const char *buf, size_t len, void *data)
{
    ward_buf_append(&((hcli *)data)->got, buf, len);
}

static void hc_eof(proxy_stream *st, int status, void *data)
{
    hcli *c = data;
    c->eof = true;
    c->eof_status = status;
}

static void hc_close(proxy_stream *st, void *data)
{
    hcli *c = data;
    c->closed = true;
    c->s = NULL;
}

static void hc_drain(proxy_stream *st, void *data)
{
    streamer_pump(st, ((hcli *)data)->stream);
}

static const proxy_stream_cbs hc_cbs = {hc_open, hc_read, hc_eof, NULL, hc_drain, hc_close};

/* A raw libuv client with a fixed receive buffer that reads only when told
 * (proxy_stream would start reading when its connect completes). */
typedef struct rawcli {
    uv_tcp_t h;
    uv_connect_t req;
    ward_buf got;
    bool connected, eof, closed;
} rawcli;

static void raw_connected(uv_connect_t *req, int status)
{
    rawcli *r = req->data;
    r->connected = status == 0;
}

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char b[64 << 10];
    *buf = uv_buf_init(b, sizeof(b));
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    rawcli *r = s->data;
    if (n > 0)
        ward_buf_append(&r->got, buf->base, (size_t)n);
    else if (n < 0)
        r->eof = true;
}

static void raw_closed(uv_handle_t *h)
{
    ((rawcli *)h->data)->closed = true;
}

/* ---- the world ------------------------------------------------------------------------------- */

typedef struct world {
    uv_loop_t loop;
    tpki pki;
    uapp app;
    proxy_tcp *tcp;
    int port;
    bool tcp_closed;
    /* TLS contexts: the listener's (REQUIRED), a client's, the proxy's toward the upstream */
    proxy_tls_ctx *listen_tls, *client_tls, *up_tls;
    /* what the authorize callback answers */
    bool deny;
    struct sockaddr_in target;
    bool target_tls;
    const char *expected_id;
    /* what it saw */
    int authorized;
    char auth_id[IDENT_ID_MAX], auth_addr[PROXY_ADDR_STRLEN], auth_sni[300];
    bool auth_has_sni;
    int auth_port;
    /* what done reported */
    int done;
    proxy_tcp_result last;
    char last_reason[512];
    char done_id[IDENT_ID_MAX];
    void *done_data;
    rawcli raw; /* in the world: teardown closes it even after a failed test */
    bool raw_used;
} world;

static void rawcli_connect(world *w, rawcli *r)
{
    memset(r, 0, sizeof(*r));
    w->raw_used = true;
    ward_buf_init(&r->got);
    assert_int_equal(uv_tcp_init_ex(&w->loop, &r->h, AF_INET), 0);
    r->h.data = r;
    /* small, but not below a few loopback MSS (64 KiB), or the kernel stops
     * sending window updates and relies on its backing-off probes */
    int small = 256 << 10;
    assert_int_equal(uv_recv_buffer_size((uv_handle_t *)&r->h, &small), 0);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", w->port, &a);
    r->req.data = r;
    assert_int_equal(uv_tcp_connect(&r->req, &r->h, (struct sockaddr *)&a, raw_connected), 0);
    assert_true(run_until(&w->loop, &r->connected, 2000));
}

static void rawcli_dispose(world *w, rawcli *r)
{
    if (!w->raw_used)
        return;
    w->raw_used = false;
    uv_close((uv_handle_t *)&r->h, raw_closed);
    run_until(&w->loop, &r->closed, 2000);
    ward_buf_dispose(&r->got);
}

static bool authorize(proxy_tcp_conn *c, const proxy_tcp_info *info, proxy_tcp_target *t,
                      void *data)
{
    world *w = data;
    w->authorized++;
    snprintf(w->auth_id, sizeof(w->auth_id), "%s",
             info->peer->spiffe_id ? info->peer->spiffe_id : "");
    snprintf(w->auth_addr, sizeof(w->auth_addr), "%s", info->peer->addr);
    w->auth_has_sni = info->server_name != NULL;
    snprintf(w->auth_sni, sizeof(w->auth_sni), "%s", info->server_name ? info->server_name : "");
    w->auth_port = info->dest_port;
    proxy_tcp_conn_set_data(c, w);
    if (w->deny)
        return false;
    t->addr = (struct sockaddr *)&w->target;
    if (w->target_tls) {
        t->tls = w->up_tls;
        t->expected_id = w->expected_id;
    }
    return true;
}

static void done(proxy_tcp_conn *c, const proxy_tcp_info *info, const proxy_tcp_result *res,
                 void *data)
{
    world *w = data;
    w->done++;
    w->last = *res;
    snprintf(w->last_reason, sizeof(w->last_reason), "%s", res->reason);
    w->last.reason = NULL;
    snprintf(w->done_id, sizeof(w->done_id), "%s",
             info->peer->spiffe_id ? info->peer->spiffe_id : "");
    w->done_data = proxy_tcp_conn_data(c);
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof(*w));
    uv_loop_init(&w->loop);
    tpki_open(&w->pki, TD);
    uapp_start(&w->app, &w->loop);
    uv_ip4_addr("127.0.0.1", w->app.port, &w->target);
    *state = w;
    return 0;
}

static void tcp_closed(void *data)
{
    *(bool *)data = true;
}

static int teardown(void **state)
{
    world *w = *state;
    rawcli_dispose(w, &w->raw);
    if (w->tcp != NULL) {
        proxy_tcp_close(w->tcp, 0, tcp_closed, &w->tcp_closed);
        assert_true(run_until(&w->loop, &w->tcp_closed, 2000));
    }
    for (int i = 0; i < APP_CONNS_MAX; i++)
        if (w->app.c[i] != NULL)
            proxy_stream_close(w->app.c[i]->st);
    uv_close((uv_handle_t *)&w->app.lst, NULL);
    run_for(&w->loop, 20);
    loop_finish(&w->loop);
    proxy_tls_ctx_unref(w->listen_tls);
    proxy_tls_ctx_unref(w->client_tls);
    proxy_tls_ctx_unref(w->up_tls);
    proxy_tls_ctx_unref(w->app.tls);
    ward_buf_dispose(&w->app.got);
    tpki_close(&w->pki);
    free(w);
    return 0;
}

static void start_tcp(world *w, const proxy_tcp_options *extra)
{
    proxy_tcp_options o = {
        .handshake_timeout_ms = 1000, .connect_timeout_ms = 1000, .idle_timeout_ms = 5000};
    if (extra != NULL)
        o = *extra;
    o.authorize = authorize;
    o.done = done;
    o.data = w;
    assert_int_equal(proxy_tcp_new(&w->loop, &o, &w->tcp), 0);
    if (w->listen_tls != NULL)
        assert_int_equal(proxy_tcp_set_tls(w->tcp, w->listen_tls), 0);
    struct sockaddr_in any;
    uv_ip4_addr("127.0.0.1", 0, &any);
    ward_err err;
    assert_int_equal(proxy_tcp_listen(w->tcp, (struct sockaddr *)&any, false, &err), 0);
    w->port = proxy_tcp_port(w->tcp);
    assert_true(w->port > 0);
}

/* Client -> (mTLS) -> proxy -> (mTLS, the upstream must be DB_ID) -> app. */
static void use_mtls(world *w)
{
    w->listen_tls = tpki_ctx(&w->pki, PROXY_ID, true, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    w->client_tls = tpki_ctx(&w->pki, CLIENT_ID, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    w->up_tls = tpki_ctx(&w->pki, PROXY_ID, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    w->app.tls = tpki_ctx(&w->pki, DB_ID, true, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    w->target_tls = true;
    w->expected_id = DB_ID;
}

static void hcli_connect(world *w, hcli *c, const char *sni)
{
    memset(c, 0, sizeof(*c));
    ward_buf_init(&c->got);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", w->port, &a);
    assert_int_equal(proxy_stream_connect(&w->loop, (struct sockaddr *)&a, w->client_tls,
                                          w->client_tls ? PROXY_ID : NULL, &hc_cbs, c, &c->s),
                     0);
    if (sni != NULL)
        assert_int_equal(proxy_stream_set_server_name(c->s, sni), 0);
}

static void hcli_dispose(world *w, hcli *c)
{
    if (c->s != NULL) {
        proxy_stream_close(c->s);
        run_until(&w->loop, &c->closed, 2000);
    }
    ward_buf_dispose(&c->got);
}

static bool run_until_done(world *w, int n, unsigned ms)
{
    bool never = false;
    for (unsigned t = 0; t < ms && w->done < n; t += 10)
        run_until(&w->loop, &never, 10);
    return w->done >= n;
}

/* ---- relaying -------------------------------------------------------------------------------- */

/* 1 MB each way at the same time, both sides half-closing when done. */
static void both_ways(world *w)
{
    w->app.send_on_accept = MB;
    w->app.shut_on_eof = true;
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, NULL);
    char *up = pattern_buf(MB, 1);
    assert_int_equal(proxy_stream_write(c.s, up, MB), 0);
    free(up);
    proxy_stream_shutdown_write(c.s);
    assert_true(run_until(&w->loop, &c.eof, 10000));
    assert_int_equal(c.eof_status, 0);
    assert_true(run_until(&w->loop, &w->app.eof, 10000));
    assert_int_equal(w->app.eof_status, 0);
    assert_true(is_pattern(&c.got, MB, 2));
    assert_true(is_pattern(&w->app.got, MB, 1));
    assert_true(run_until_done(w, 1, 3000));
    assert_int_equal(w->last.end, PROXY_TCP_END_DONE);
    assert_string_equal(proxy_tcp_end_name(w->last.end), "done");
    assert_true(w->last.authorized);
    assert_int_equal(w->last.bytes_in, MB);
    assert_int_equal(w->last.bytes_out, MB);
    assert_true(w->last.duration_ns > 0);
    assert_ptr_equal(w->done_data, w);
    assert_int_equal(proxy_tcp_connections(w->tcp), 0);
    hcli_dispose(w, &c);
}

static void test_bytes_both_ways_intact(void **state)
{
    world *w = *state;
    both_ways(w);
    assert_int_equal(w->authorized, 1);
    assert_string_equal(w->auth_id, ""); /* plaintext: no identity */
}

static void test_bytes_both_ways_intact_over_mtls(void **state)
{
    world *w = *state;
    use_mtls(w);
    both_ways(w);
    assert_string_equal(w->auth_id, CLIENT_ID);
    assert_string_equal(w->done_id, CLIENT_ID);
    assert_string_equal(w->app.peer_id, PROXY_ID); /* the upstream sees the proxy's SVID */
}

static void half_close(world *w)
{
    w->app.send_on_eof = 300 << 10; /* more than one queue's worth, after the client's FIN */
    w->app.shut_on_eof = true;
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, NULL);
    assert_int_equal(proxy_stream_write(c.s, "SELECT 1;", 9), 0);
    proxy_stream_shutdown_write(c.s);
    /* the upstream sees the request and then the FIN, not a close */
    assert_true(run_until(&w->loop, &w->app.eof, 3000));
    assert_int_equal(w->app.eof_status, 0);
    assert_int_equal(w->app.got.len, 9);
    assert_memory_equal(w->app.got.ptr, "SELECT 1;", 9);
    /* the client still gets everything the upstream sent after that */
    assert_true(run_until(&w->loop, &c.eof, 5000));
    assert_int_equal(c.eof_status, 0);
    assert_true(is_pattern(&c.got, 300 << 10, 3));
    assert_true(run_until_done(w, 1, 3000));
    assert_int_equal(w->last.end, PROXY_TCP_END_DONE);
    assert_int_equal(w->last.bytes_in, 9);
    assert_int_equal(w->last.bytes_out, 300 << 10);
    hcli_dispose(w, &c);
}

static void test_half_close_client_still_receives(void **state)
{
    half_close(*state);
}

static void test_half_close_over_mtls(void **state)
{
    world *w = *state;
    use_mtls(w);
    half_close(w);
}

static void test_upstream_half_close_client_keeps_sending(void **state)
{
    world *w = *state;
    w->app.send_on_accept = 5; /* a greeting, then the upstream shuts its write side */
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, NULL);
    for (int i = 0; i < 100 && c.got.len < 5; i++)
        run_for(&w->loop, 10);
    assert_non_null(w->app.c[0]);
    proxy_stream_shutdown_write(w->app.c[0]->st);
    assert_true(run_until(&w->loop, &c.eof, 3000));
    assert_int_equal(c.eof_status, 0);
    assert_true(is_pattern(&c.got, 5, 2));
    /* the other direction is still open */
    assert_int_equal(proxy_stream_write(c.s, "still here", 10), 0);
    for (int i = 0; i < 100 && w->app.got.len < 10; i++)
        run_for(&w->loop, 10);
    assert_int_equal(w->app.got.len, 10);
    assert_int_equal(w->done, 0);
    proxy_stream_shutdown_write(c.s);
    assert_true(run_until_done(w, 1, 3000));
    assert_int_equal(w->last.end, PROXY_TCP_END_DONE);
    assert_int_equal(w->last.bytes_in, 10);
    assert_int_equal(w->last.bytes_out, 5);
    hcli_dispose(w, &c);
}

static void test_bytes_before_upstream_is_open_are_held(void **state)
{
    world *w = *state;
    use_mtls(w); /* the upstream's handshake takes a while: the client is faster */
    w->app.shut_on_eof = true;
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, NULL);
    assert_int_equal(proxy_stream_write(c.s, "hello", 5), 0);
    proxy_stream_shutdown_write(c.s);
    assert_true(run_until(&w->loop, &c.eof, 5000));
    assert_int_equal(w->app.got.len, 5);
    assert_memory_equal(w->app.got.ptr, "hello", 5);
    assert_true(run_until_done(w, 1, 3000));
    assert_int_equal(w->last.end, PROXY_TCP_END_DONE);
    hcli_dispose(w, &c);
}

/* ---- backpressure ---------------------------------------------------------------------------- */

/* Runs until the streamer stalls (sent unchanged for 300 ms) and returns the
 * largest queue of the proxy seen meanwhile. */
static size_t run_until_stalled(world *w, const streamer *st)
{
    size_t peak = 0, last = SIZE_MAX;
    int still = 0;
    for (int i = 0; i < 2000 && still < 60 && st->sent < st->total; i++) {
        run_for(&w->loop, 5);
        size_t q = proxy_tcp_queued(w->tcp);
        if (q > peak)
            peak = q;
        still = st->sent == last ? still + 1 : 0;
        last = st->sent;
    }
    return peak;
}

static void test_slow_reader_keeps_the_queue_bounded(void **state)
{
    world *w = *state;
    streamer up = {.total = 24 * MB, .seed = 2}; /* well over what kernel buffers hold (~9 MB) */
    w->app.stream = &up;
    w->app.shut_on_eof = true;
    proxy_tcp_options o = {.idle_timeout_ms = 120000}; /* however slow this machine is */
    start_tcp(w, &o);
    rawcli *c = &w->raw;
    rawcli_connect(w, c); /* and it does not read */
    /* the kernel's buffers fill, then the proxy's queue up to its mark, where
     * the proxy stops reading the upstream: the upstream cannot send more */
    size_t peak = run_until_stalled(w, &up);
    assert_true(up.sent < up.total);
    assert_true(peak <= PROXY_TCP_QUEUE_HIGH + (64 << 10)); /* the mark and one read */
    /* the reader comes back: everything arrives, intact */
    assert_int_equal(uv_read_start((uv_stream_t *)&c->h, raw_alloc, raw_read), 0);
    for (int i = 0; i < 12000 && c->got.len < up.total; i++) {
        run_for(&w->loop, 5);
        size_t q = proxy_tcp_queued(w->tcp);
        if (q > peak)
            peak = q;
    }
    assert_true(is_pattern(&c->got, up.total, 2));
    assert_true(peak <= PROXY_TCP_QUEUE_HIGH + (64 << 10));
    rawcli_dispose(w, c);
    assert_true(run_until_done(w, 1, 3000));
    assert_int_equal(w->last.bytes_out, up.total);
}

static void test_slow_upstream_keeps_the_queue_bounded(void **state)
{
    world *w = *state;
    int small = 256 << 10; /* the upstream's sockets take little (as rawcli's) */
    assert_int_equal(uv_recv_buffer_size((uv_handle_t *)&w->app.lst, &small), 0);
    proxy_tcp_options o = {.idle_timeout_ms = 120000};
    start_tcp(w, &o);
    streamer down = {.total = 24 * MB, .seed = 1};
    hcli c;
    hcli_connect(w, &c, NULL);
    for (int i = 0; i < 100 && w->app.c[0] == NULL; i++)
        run_for(&w->loop, 10);
    assert_non_null(w->app.c[0]);
    proxy_stream_read_pause(w->app.c[0]->st); /* the upstream does not read */
    c.stream = &down;
    streamer_pump(c.s, &down);
    /* the proxy stops reading the client: the client cannot send more */
    size_t peak = run_until_stalled(w, &down);
    assert_true(down.sent < down.total);
    assert_true(peak <= PROXY_TCP_QUEUE_HIGH + (64 << 10));
    proxy_stream_read_resume(w->app.c[0]->st);
    for (int i = 0; i < 12000 && w->app.got.len < down.total; i++)
        run_for(&w->loop, 5);
    assert_true(is_pattern(&w->app.got, down.total, 1));
    hcli_dispose(w, &c);
}

/* ---- authorization --------------------------------------------------------------------------- */

static void test_deny_closes_without_contacting_upstream(void **state)
{
    world *w = *state;
    w->deny = true;
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, NULL);
    proxy_stream_write(c.s, "let me in", 9);
    assert_true(run_until_done(w, 1, 1000));
    run_for(&w->loop, 50);
    /* a reset: the client's write or read fails, it never sees a clean end */
    assert_true(c.closed || (c.eof && c.eof_status == WARD_EIO));
    assert_int_equal(w->app.conns, 0);
    assert_int_equal(w->authorized, 1);
    assert_int_equal(w->last.end, PROXY_TCP_END_DENIED);
    assert_false(w->last.authorized);
    assert_int_equal(w->last.bytes_in, 0);
    assert_int_equal(w->last.bytes_out, 0);
    hcli_dispose(w, &c);
}

static void test_authorize_sees_peer_port_and_sni(void **state)
{
    world *w = *state;
    use_mtls(w);
    w->app.shut_on_eof = true;
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, "Postgres.DB.example.org");
    assert_true(run_until(&w->loop, &c.opened, 3000));
    for (int i = 0; i < 100 && w->authorized == 0; i++)
        run_for(&w->loop, 10);
    assert_int_equal(w->authorized, 1);
    assert_string_equal(w->auth_id, CLIENT_ID);
    assert_true(w->auth_has_sni);
    assert_string_equal(w->auth_sni, "postgres.db.example.org"); /* lowercased */
    assert_int_equal(w->auth_port, w->port);
    assert_true(strncmp(w->auth_addr, "127.0.0.1:", 10) == 0);
    hcli_dispose(w, &c);

    /* no SNI: NULL */
    hcli_connect(w, &c, NULL);
    for (int i = 0; i < 100 && w->authorized < 2; i++)
        run_for(&w->loop, 10);
    assert_int_equal(w->authorized, 2);
    assert_false(w->auth_has_sni);
    hcli_dispose(w, &c);
}

static void test_malformed_sni_denied_before_authorize(void **state)
{
    world *w = *state;
    use_mtls(w);
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, "db example.org"); /* a space: not a DNS name */
    assert_true(run_until_done(w, 1, 3000));
    assert_int_equal(w->authorized, 0);
    assert_int_equal(w->last.end, PROXY_TCP_END_DENIED);
    assert_non_null(strstr(w->last_reason, "server name"));
    assert_int_equal(w->app.conns, 0);
    hcli_dispose(w, &c);
}

static void test_client_without_certificate_never_authorized(void **state)
{
    world *w = *state;
    use_mtls(w);
    proxy_tls_ctx_unref(w->client_tls);
    w->client_tls = tpki_ctx(&w->pki, NULL, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, NULL);
    assert_true(run_until_done(w, 1, 3000));
    assert_int_equal(w->authorized, 0);
    assert_int_equal(w->last.end, PROXY_TCP_END_HANDSHAKE);
    assert_int_equal(w->app.conns, 0);
    hcli_dispose(w, &c);
}

static void test_silent_client_handshake_timeout(void **state)
{
    world *w = *state;
    use_mtls(w);
    proxy_tcp_options o = {.handshake_timeout_ms = 100};
    start_tcp(w, &o);
    proxy_tls_ctx_unref(w->client_tls);
    w->client_tls = NULL; /* plaintext to a TLS listener: no ClientHello ever */
    hcli c;
    memset(&c, 0, sizeof(c));
    ward_buf_init(&c.got);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", w->port, &a);
    assert_int_equal(
        proxy_stream_connect(&w->loop, (struct sockaddr *)&a, NULL, NULL, &hc_cbs, &c, &c.s), 0);
    assert_true(run_until_done(w, 1, 2000));
    assert_int_equal(w->last.end, PROXY_TCP_END_HANDSHAKE);
    assert_non_null(strstr(w->last_reason, "timeout"));
    assert_int_equal(w->authorized, 0);
    hcli_dispose(w, &c);
}

static void test_set_tls_requires_a_required_mode_server(void **state)
{
    world *w = *state;
    start_tcp(w, NULL);
    proxy_tls_ctx *optional =
        tpki_ctx(&w->pki, PROXY_ID, true, PROXY_TLS_PEER_OPTIONAL, w->pki.bundle);
    proxy_tls_ctx *client =
        tpki_ctx(&w->pki, PROXY_ID, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    assert_int_equal(proxy_tcp_set_tls(w->tcp, optional), WARD_EINVAL);
    assert_int_equal(proxy_tcp_set_tls(w->tcp, client), WARD_EINVAL);
    proxy_tls_ctx_unref(optional);
    proxy_tls_ctx_unref(client);
}

static void test_authorize_is_required(void **state)
{
    world *w = *state;
    proxy_tcp_options o = {0};
    proxy_tcp *t = NULL;
    assert_int_equal(proxy_tcp_new(&w->loop, &o, &t), WARD_EINVAL);
    assert_null(t);
}

/* ---- upstream failures ----------------------------------------------------------------------- */

static void test_upstream_down_closes_the_client(void **state)
{
    world *w = *state;
    uv_close((uv_handle_t *)&w->app.lst, NULL); /* nobody listens there any more */
    run_for(&w->loop, 10);
    uv_tcp_init(&w->loop, &w->app.lst); /* for teardown */
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, NULL);
    proxy_stream_write(c.s, "hello?", 6);
    assert_true(run_until(&w->loop, &c.eof, 3000));
    assert_int_equal(c.eof_status, WARD_EIO);
    assert_true(run_until_done(w, 1, 1000));
    assert_int_equal(w->last.end, PROXY_TCP_END_CONNECT);
    assert_true(w->last.authorized);
    assert_non_null(strstr(w->last_reason, "connect"));
    hcli_dispose(w, &c);
}

static void test_upstream_connect_timeout(void **state)
{
    world *w = *state;
    use_mtls(w);
    w->app.no_handshake = true; /* TCP accepted, TLS never answered */
    proxy_tcp_options o = {.connect_timeout_ms = 150, .idle_timeout_ms = 5000};
    start_tcp(w, &o);
    hcli c;
    hcli_connect(w, &c, NULL);
    assert_true(run_until_done(w, 1, 3000));
    assert_int_equal(w->last.end, PROXY_TCP_END_CONNECT);
    assert_string_equal(w->last_reason, "upstream connect timeout");
    assert_true(w->last.duration_ns >= 150000000u);
    assert_true(c.eof || c.closed);
    hcli_dispose(w, &c);
}

static void test_upstream_with_wrong_id_refused(void **state)
{
    world *w = *state;
    use_mtls(w);
    w->expected_id = "spiffe://example.org/ns/db/sa/mysql"; /* the app is postgres */
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, NULL);
    proxy_stream_write(c.s, "secret query", 12);
    assert_true(run_until_done(w, 1, 3000));
    assert_int_equal(w->last.end, PROXY_TCP_END_UPSTREAM_TLS);
    assert_string_equal(proxy_tcp_end_name(w->last.end), "upstream_tls");
    assert_non_null(strstr(w->last_reason, "expected spiffe://example.org/ns/db/sa/mysql"));
    run_for(&w->loop, 50);
    assert_int_equal(w->app.got.len, 0); /* nothing reached the impostor */
    assert_true(run_until(&w->loop, &c.eof, 1000));
    assert_int_equal(c.eof_status, WARD_EIO);
    hcli_dispose(w, &c);
}

static void test_upstream_reset_resets_the_client(void **state)
{
    world *w = *state;
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, NULL);
    proxy_stream_write(c.s, "x", 1);
    for (int i = 0; i < 100 && w->app.got.len == 0; i++)
        run_for(&w->loop, 10);
    assert_non_null(w->app.c[0]);
    proxy_stream_reset(w->app.c[0]->st);
    assert_true(run_until(&w->loop, &c.eof, 3000));
    assert_int_equal(c.eof_status, WARD_EIO); /* a reset, never a clean end */
    assert_true(run_until_done(w, 1, 1000));
    assert_int_equal(w->last.end, PROXY_TCP_END_UPSTREAM_ERROR);
    hcli_dispose(w, &c);
}

static void test_client_cut_is_not_passed_on_as_an_end(void **state)
{
    world *w = *state;
    use_mtls(w);
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, NULL);
    proxy_stream_write(c.s, "BEGIN;", 6);
    for (int i = 0; i < 200 && w->app.got.len < 6; i++)
        run_for(&w->loop, 10);
    assert_int_equal(w->app.got.len, 6);
    /* a FIN without close_notify: a truncation, not the end of the stream */
    proxy_stream_close(c.s);
    assert_true(run_until(&w->loop, &w->app.eof, 3000));
    assert_int_equal(w->app.eof_status, WARD_EIO);
    assert_true(run_until_done(w, 1, 1000));
    assert_int_equal(w->last.end, PROXY_TCP_END_CLIENT_ERROR);
    hcli_dispose(w, &c);
}

/* ---- timeouts and limits --------------------------------------------------------------------- */

static void test_idle_timeout(void **state)
{
    world *w = *state;
    proxy_tcp_options o = {.idle_timeout_ms = 200};
    start_tcp(w, &o);
    hcli c;
    hcli_connect(w, &c, NULL);
    /* traffic keeps it alive past the deadline ... */
    uint64_t t0 = 0;
    for (int i = 0; i < 8; i++) {
        proxy_stream_write(c.s, "ping", 4);
        t0 = uv_now(&w->loop);
        run_for(&w->loop, 60);
    }
    assert_int_equal(w->done, 0);
    assert_int_equal(w->app.got.len, 32);
    /* ... silence ends it */
    assert_true(run_until_done(w, 1, 2000));
    assert_int_equal(w->last.end, PROXY_TCP_END_IDLE);
    assert_true(uv_now(&w->loop) - t0 >= 190);
    assert_true(run_until(&w->loop, &c.eof, 1000));
    hcli_dispose(w, &c);
}

static void test_max_connections(void **state)
{
    world *w = *state;
    proxy_tcp_options o = {.max_connections = 1};
    start_tcp(w, &o);
    hcli a, b;
    hcli_connect(w, &a, NULL);
    for (int i = 0; i < 100 && w->authorized < 1; i++)
        run_for(&w->loop, 10);
    hcli_connect(w, &b, NULL);
    assert_true(run_until(&w->loop, &b.eof, 2000));
    assert_int_equal(w->authorized, 1);
    assert_int_equal(proxy_tcp_connections(w->tcp), 1);
    assert_false(a.eof);
    hcli_dispose(w, &b);
    hcli_dispose(w, &a);
}

static void test_close_cuts_open_connections(void **state)
{
    world *w = *state;
    start_tcp(w, NULL);
    hcli c;
    hcli_connect(w, &c, NULL);
    for (int i = 0; i < 100 && w->app.conns < 1; i++)
        run_for(&w->loop, 10);
    proxy_tcp_close(w->tcp, 50, tcp_closed, &w->tcp_closed);
    run_for(&w->loop, 20);
    assert_int_equal(w->done, 0); /* still draining */
    assert_true(run_until(&w->loop, &w->tcp_closed, 2000));
    w->tcp = NULL;
    assert_int_equal(w->done, 1);
    assert_int_equal(w->last.end, PROXY_TCP_END_SHUTDOWN);
    hcli_dispose(w, &c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as ward-proxy does: a peer gone is a write error, not a signal */
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_bytes_both_ways_intact),
        T(test_bytes_both_ways_intact_over_mtls),
        T(test_half_close_client_still_receives),
        T(test_half_close_over_mtls),
        T(test_upstream_half_close_client_keeps_sending),
        T(test_bytes_before_upstream_is_open_are_held),
        T(test_slow_reader_keeps_the_queue_bounded),
        T(test_slow_upstream_keeps_the_queue_bounded),
        T(test_deny_closes_without_contacting_upstream),
        T(test_authorize_sees_peer_port_and_sni),
        T(test_malformed_sni_denied_before_authorize),
        T(test_client_without_certificate_never_authorized),
        T(test_silent_client_handshake_timeout),
        T(test_set_tls_requires_a_required_mode_server),
        T(test_authorize_is_required),
        T(test_upstream_down_closes_the_client),
        T(test_upstream_connect_timeout),
        T(test_upstream_with_wrong_id_refused),
        T(test_upstream_reset_resets_the_client),
        T(test_client_cut_is_not_passed_on_as_an_end),
        T(test_idle_timeout),
        T(test_max_connections),
        T(test_close_cuts_open_connections),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
