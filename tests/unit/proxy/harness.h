/* harness.h - test helpers for proxy tests: loop runner, clients, a server, a test CA */
#ifndef TEST_PROXY_HARNESS_H
#define TEST_PROXY_HARNESS_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/proxy.h"

#define H_FN static __attribute__((unused))

/* ---- the loop ------------------------------------------------------------------------ */

static void h_expired(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs the loop until *flag or ms pass; returns *flag. */
H_FN bool run_until(uv_loop_t *loop, const bool *flag, unsigned ms)
{
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, h_expired, ms, 0);
    while (!*flag && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *flag;
}

/* Runs for ms whatever happens. */
H_FN void run_for(uv_loop_t *loop, unsigned ms)
{
    bool never = false;
    run_until(loop, &never, ms);
}

/* Every handle closed: nothing leaked into the loop. */
H_FN void loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* ---- clients ---------------------------------------------------------------------------- */

typedef struct tclient {
    proxy_stream *s;
    ward_buf got;
    bool opened, eof, closed;
    int open_status, eof_status;
    char error[512];
    ward_buf to_send; /* written once open */
} tclient;

static void tc_open(proxy_stream *s, int status, void *data)
{
    tclient *c = data;
    c->opened = true;
    c->open_status = status;
    if (status == 0 && c->to_send.len > 0)
        proxy_stream_write(s, c->to_send.ptr, c->to_send.len);
}

static void tc_read(proxy_stream *s, const char *buf, size_t len, void *data)
{
    tclient *c = data;
    ward_buf_append(&c->got, buf, len);
}

static void tc_eof(proxy_stream *s, int status, void *data)
{
    tclient *c = data;
    c->eof = true;
    c->eof_status = status;
    proxy_stream_close(s);
}

static void tc_close(proxy_stream *s, void *data)
{
    tclient *c = data;
    snprintf(c->error, sizeof(c->error), "%s", proxy_stream_error(s));
    c->closed = true;
    c->s = NULL;
}

static const proxy_stream_cbs tc_cbs = {tc_open, tc_read, tc_eof, NULL, NULL, tc_close};

H_FN void tclient_connect(tclient *c, uv_loop_t *loop, int port, proxy_tls_ctx *tls,
                          const char *expected_id, const char *send, size_t len)
{
    memset(c, 0, sizeof(*c));
    ward_buf_init(&c->got);
    ward_buf_init(&c->to_send);
    if (send != NULL)
        ward_buf_append(&c->to_send, send, len);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    assert_int_equal(
        proxy_stream_connect(loop, (struct sockaddr *)&a, tls, expected_id, &tc_cbs, c, &c->s), 0);
}

H_FN void tclient_dispose(tclient *c, uv_loop_t *loop)
{
    if (c->s != NULL) {
        proxy_stream_close(c->s);
        run_until(loop, &c->closed, 2000);
    }
    ward_buf_dispose(&c->got);
    ward_buf_dispose(&c->to_send);
}

/* Occurrences of needle in the client's bytes. */
H_FN int count_of(const tclient *c, const char *needle)
{
    int n = 0;
    const char *p = c->got.ptr;
    while (p != NULL && (p = strstr(p, needle)) != NULL) {
        n++;
        p += strlen(needle);
    }
    return n;
}

/* ---- a recording server ---------------------------------------------------------------------- */

typedef struct tserver {
    proxy_http_server *srv;
    int port;
    ident_bundle *bundle; /* to check client certificates, or NULL */
    int requests;
    bool hold;                 /* keep exchanges unanswered */
    proxy_http_exchange *held; /* the last one held */
    bool done;
    proxy_peer last_peer; /* of the last request (chain and ID not kept) */
    int tls_errors;
    char tls_error[512];
} tserver;

static void ts_tls_error(const proxy_peer *peer, const char *reason, void *data)
{
    tserver *t = data;
    t->tls_errors++;
    snprintf(t->tls_error, sizeof(t->tls_error), "%s %s", peer->addr, reason);
}

/* Answers "METHOD PATH len=N peer=ID|none|invalid" (or a large body for /big). */
static void ts_handler(proxy_http_exchange *ex, void *data)
{
    tserver *t = data;
    t->requests++;
    t->last_peer = *proxy_http_exchange_peer(ex);
    t->last_peer.chain = NULL;
    t->last_peer.spiffe_id = NULL;
    if (t->hold) {
        t->held = ex;
        return;
    }
    const proxy_http_request *r = proxy_http_exchange_request(ex);
    const proxy_peer *peer = proxy_http_exchange_peer(ex);
    char id[IDENT_ID_MAX] = "none";
    if (peer->chain != NULL) {
        ward_err why;
        if (t->bundle == NULL ||
            proxy_http_exchange_verify_peer(ex, t->bundle, time(NULL), id, &why) < 0)
            snprintf(id, sizeof(id), "invalid");
    }
    if (r->path.len == 4 && memcmp(r->path.ptr, "/big", 4) == 0) {
        size_t n = (size_t)300 << 10;
        char *big = malloc(n);
        memset(big, 'b', n);
        proxy_http_respond(ex, 200, NULL, 0, big, n);
        free(big);
        return;
    }
    char body[4096];
    int n = snprintf(body, sizeof(body), "%.*s %.*s len=%zu peer=%s\n", (int)r->method.len,
                     r->method.ptr, (int)r->path.len, r->path.ptr, proxy_http_exchange_body(ex).len,
                     id);
    proxy_header h[1] = {{{"Content-Type", 12}, {"text/plain", 10}}};
    proxy_http_respond(ex, 200, h, 1, body, (size_t)n);
}

static void ts_done(void *data)
{
    ((tserver *)data)->done = true;
}

H_FN void tserver_start(tserver *t, uv_loop_t *loop, proxy_http_server_options *o,
                        proxy_tls_ctx *tls)
{
    ward_err err;
    o->handler = ts_handler;
    o->on_tls_error = ts_tls_error;
    o->data = t;
    assert_int_equal(proxy_http_server_new(loop, o, &t->srv), 0);
    if (tls != NULL)
        proxy_http_server_set_tls(t->srv, tls);
    if (proxy_http_server_listen_tcp(t->srv, "127.0.0.1:0", &err) < 0)
        fail_msg("listen: %s", err.msg);
    t->port = proxy_http_server_port(t->srv);
    assert_true(t->port > 0);
}

H_FN void tserver_stop(tserver *t, uv_loop_t *loop)
{
    proxy_http_server_close(t->srv, true, ts_done, t);
    assert_true(run_until(loop, &t->done, 3000));
}

/* ---- temporary directories and a test CA --------------------------------------------------- */

static int h_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

H_FN void rm_rf(const char *dir)
{
    nftw(dir, h_rm, 16, FTW_DEPTH | FTW_PHYS);
}

typedef struct tpki {
    char dir[64];
    ident_ca *ca;
    ident_bundle *bundle;
} tpki;

H_FN void tpki_open(tpki *p, const char *td)
{
    snprintf(p->dir, sizeof(p->dir), "/tmp/ward-proxy-test-XXXXXX");
    assert_non_null(mkdtemp(p->dir));
    ident_ca_options o;
    memset(&o, 0, sizeof(o));
    o.trust_domain = td;
    o.data_dir = p->dir;
    ward_err err;
    if (ident_ca_open(&o, time(NULL), &p->ca, &err) < 0)
        fail_msg("ident_ca_open: %s", err.msg);
    p->bundle = ident_ca_bundle(p->ca);
}

H_FN void tpki_close(tpki *p)
{
    ident_bundle_unref(p->bundle);
    ident_ca_free(p->ca);
    rm_rf(p->dir);
}

/* A fresh key and an X509-SVID for id: *key and chain (PEM) to free. */
H_FN void tpki_issue(tpki *p, const char *id, EVP_PKEY **key, ward_buf *chain)
{
    ward_err err;
    ward_buf csr;
    ward_buf_init(&csr);
    ward_buf_init(chain);
    assert_int_equal(ident_client_key_new(key, &err), 0);
    assert_int_equal(ident_client_csr_new(*key, NULL, &csr, &err), 0);
    if (ident_ca_sign_csr(p->ca, csr.ptr, csr.len, id, 0, time(NULL), chain, &err) < 0)
        fail_msg("sign: %s", err.msg);
    ward_buf_dispose(&csr);
}

/* A TLS context holding a fresh SVID for id. */
H_FN proxy_tls_ctx *tpki_ctx(tpki *p, const char *id, bool server, proxy_tls_peer_mode peer,
                             ident_bundle *trust)
{
    EVP_PKEY *key = NULL;
    ward_buf chain;
    ward_buf_init(&chain);
    if (id != NULL)
        tpki_issue(p, id, &key, &chain);
    proxy_tls_options o;
    memset(&o, 0, sizeof(o));
    o.server = server;
    o.chain_pem = id ? chain.ptr : NULL;
    o.chain_len = chain.len;
    o.key = key;
    o.bundle = trust;
    o.peer = peer;
    proxy_tls_ctx *t;
    ward_err err;
    if (proxy_tls_ctx_new(&o, &t, &err) < 0)
        fail_msg("proxy_tls_ctx_new: %s", err.msg);
    EVP_PKEY_free(key);
    ward_buf_dispose(&chain);
    return t;
}

#endif
