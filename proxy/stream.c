/* stream.c - connections over libuv streams, plaintext or TLS pumped through OpenSSL memory BIOs */
#include "proxy/proxy_int.h"

#include <limits.h>
#include <openssl/err.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct proxy_stream {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    int open_handles; /* freed when both handles have closed */
    proxy_stream_cbs cbs;
    void *data;

    proxy_tls_ctx *tls;
    SSL *ssl;
    BIO *rbio; /* ciphertext from the socket, into OpenSSL */
    BIO *wbio; /* ciphertext from OpenSSL, to the socket */
    proxy_tls_check check;

    bool open;          /* connected and (TLS) handshake done: writes go out */
    bool open_reported; /* on_open has run */
    bool reading, paused, eof_seen, closing, shutting, lingering, in_pump;
    bool drain_wanted;
    bool wr_shut;      /* proxy_stream_shutdown_write: no more writes */
    bool wr_shut_sent; /* ... its close_notify and FIN are queued */
    bool fin_sent;     /* the FIN went out (the uv_shutdown completed) */
    ward_buf early; /* plaintext written before the stream was open */
    unsigned corked; /* proxy_stream_cork depth */
    ward_buf cork;   /* small writes gathered while corked */
    size_t pending; /* bytes in write requests not yet completed */
    uint64_t linger_ms;
    proxy_peer peer;
    char error[512];
};

typedef struct write_req {
    uv_write_t req;
    proxy_stream *s;
    size_t len;
    char data[];
} write_req;

static void tls_pump(proxy_stream *s);

/* ---- closing ----------------------------------------------------------------------- */

static void close_cb(uv_handle_t *h)
{
    proxy_stream *s = h->data;
    if (--s->open_handles > 0)
        return;
    if (s->cbs.on_close != NULL)
        s->cbs.on_close(s, s->data);
    SSL_free(s->ssl); /* frees both BIOs */
    proxy_tls_ctx_unref(s->tls);
    free(s->check.peer_id);
    free((char *)s->check.expected_id);
    sk_X509_pop_free(s->peer.chain, X509_free);
    free(s->peer.spiffe_id);
    ward_buf_dispose(&s->early);
    ward_buf_dispose(&s->cork);
    free(s);
}

void proxy_stream_close(proxy_stream *s)
{
    if (s->closing)
        return;
    s->closing = true;
    uv_close(&s->h.handle, close_cb);
    uv_close((uv_handle_t *)&s->timer, close_cb);
}

void proxy_stream_reset(proxy_stream *s)
{
    if (s->closing)
        return;
    if (s->h.handle.type != UV_TCP) {
        proxy_stream_close(s);
        return;
    }
    s->closing = true;
    /* libuv refuses while a FIN waits to be sent (uv_shutdown): then a plain close */
    if (uv_tcp_close_reset(&s->h.tcp, close_cb) < 0)
        uv_close(&s->h.handle, close_cb);
    uv_close((uv_handle_t *)&s->timer, close_cb);
}

bool proxy_stream_is_closing(const proxy_stream *s)
{
    return s->closing;
}

static void set_error(proxy_stream *s, const char *what, const char *detail)
{
    if (s->error[0] == '\0')
        snprintf(s->error, sizeof(s->error), "%.64s: %.440s", what, detail);
}

static void set_tls_error(proxy_stream *s, const char *what)
{
    if (s->check.reason[0] != '\0') {
        set_error(s, what, s->check.reason);
    } else {
        char buf[256] = "connection failed";
        unsigned long e = ERR_peek_last_error();
        if (e != 0)
            ERR_error_string_n(e, buf, sizeof(buf));
        set_error(s, what, buf);
    }
    ERR_clear_error();
}

static void report_open(proxy_stream *s, int status)
{
    if (s->open_reported)
        return;
    s->open_reported = true;
    if (s->cbs.on_open != NULL)
        s->cbs.on_open(s, status, s->data);
}

/* The stream could not be opened (connect or handshake failed). */
static void open_failed(proxy_stream *s)
{
    report_open(s, WARD_EIO);
    if (s->closing)
        return;
    if (s->ssl != NULL && s->reading)
        proxy_stream_shutdown(s, 500); /* lets a TLS alert reach the peer */
    else
        proxy_stream_close(s);
}

/* ---- writing ------------------------------------------------------------------------ */

static void write_cb(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    proxy_stream *s = w->s;
    s->pending -= w->len;
    free(w);
    if (s->closing)
        return;
    if (status < 0) {
        set_error(s, "write", uv_strerror(status));
        proxy_stream_close(s);
        return;
    }
    if (s->pending == 0 && s->drain_wanted) {
        s->drain_wanted = false;
        if (s->cbs.on_drain != NULL)
            s->cbs.on_drain(s, s->data);
    }
}

static int raw_write(proxy_stream *s, write_req *w)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned int)w->len);
    w->s = s;
    int r = uv_write(&w->req, &s->h.stream, &b, 1, write_cb);
    if (r < 0) {
        free(w);
        set_error(s, "write", uv_strerror(r));
        proxy_stream_close(s);
        return WARD_EIO;
    }
    s->pending += w->len;
    s->drain_wanted = true;
    return 0;
}

static write_req *write_req_new(size_t len)
{
    write_req *w = malloc(sizeof(*w) + len);
    if (w != NULL)
        w->len = len;
    return w;
}

/* Sends what OpenSSL produced. */
static int flush_wbio(proxy_stream *s)
{
    size_t n = BIO_ctrl_pending(s->wbio);
    if (n == 0 || s->closing)
        return 0;
    if (n > UINT_MAX)
        n = UINT_MAX;
    write_req *w = write_req_new(n);
    if (w == NULL) {
        proxy_stream_close(s);
        return WARD_ENOMEM;
    }
    int got = BIO_read(s->wbio, w->data, (int)n);
    if (got <= 0) {
        free(w);
        return 0;
    }
    w->len = (size_t)got;
    return raw_write(s, w);
}

static int tls_write(proxy_stream *s, const char *buf, size_t len)
{
    ERR_clear_error();
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        int r = SSL_write(s->ssl, buf, chunk);
        if (r <= 0) {
            set_tls_error(s, "TLS write");
            proxy_stream_close(s);
            return WARD_EIO;
        }
        buf += r;
        len -= (size_t)r;
    }
    return flush_wbio(s);
}

/* Small writes while corked are gathered (one TLS record, one system call). */
#define CORK_MAX ((size_t)16 << 10)

static int cork_flush(proxy_stream *s)
{
    if (s->cork.len == 0)
        return 0;
    ward_buf b = s->cork;
    ward_buf_init(&s->cork);
    unsigned depth = s->corked;
    s->corked = 0;
    int rc = proxy_stream_write(s, b.ptr, b.len);
    s->corked = depth;
    ward_buf_dispose(&b);
    return rc;
}

void proxy_stream_cork(proxy_stream *s)
{
    s->corked++;
}

void proxy_stream_uncork(proxy_stream *s)
{
    if (s->corked > 0 && --s->corked == 0 && !s->closing && !s->shutting)
        cork_flush(s);
}

int proxy_stream_write(proxy_stream *s, const void *buf, size_t len)
{
    if (s->closing || s->shutting || s->wr_shut)
        return WARD_EIO;
    if (len == 0)
        return 0;
    if (!s->open)
        return ward_buf_append(&s->early, buf, len);
    if (s->corked > 0) {
        if (s->cork.len + len <= CORK_MAX)
            return ward_buf_append(&s->cork, buf, len);
        int rc = cork_flush(s);
        if (rc < 0)
            return rc;
    }
    if (s->ssl != NULL)
        return tls_write(s, buf, len);
    write_req *w = write_req_new(len);
    if (w == NULL)
        return WARD_ENOMEM;
    memcpy(w->data, buf, len);
    return raw_write(s, w);
}

size_t proxy_stream_pending(const proxy_stream *s)
{
    return s->pending + s->early.len + s->cork.len;
}

/* ---- opening ---------------------------------------------------------------------------- */

static void write_side_shutdown(proxy_stream *s);

static void now_open(proxy_stream *s)
{
    s->open = true;
    report_open(s, 0);
    if (s->closing)
        return;
    if (s->early.len > 0) {
        ward_buf early = s->early;
        ward_buf_init(&s->early);
        bool wr_shut = s->wr_shut; /* what was written before the half-close goes first */
        s->wr_shut = false;
        proxy_stream_write(s, early.ptr, early.len);
        s->wr_shut = wr_shut;
        ward_buf_dispose(&early);
    }
    if (s->wr_shut && !s->closing)
        write_side_shutdown(s);
}

static void handshake_done(proxy_stream *s)
{
    s->peer.tls = true;
    X509 *leaf = SSL_get0_peer_certificate(s->ssl);
    if (leaf != NULL) {
        STACK_OF(X509) *sk = SSL_get_peer_cert_chain(s->ssl);
        STACK_OF(X509) *chain = sk_X509_new_null();
        if (chain != NULL && sk_X509_push(chain, leaf))
            X509_up_ref(leaf);
        for (int i = 0; chain != NULL && sk != NULL && i < sk_X509_num(sk); i++) {
            X509 *c = sk_X509_value(sk, i);
            if (X509_cmp(c, leaf) != 0 && sk_X509_push(chain, c))
                X509_up_ref(c);
        }
        s->peer.chain = chain;
        /* for audit records: which certificate, not just which ID */
        unsigned char md[32];
        unsigned int n = 0;
        if (X509_digest(leaf, EVP_sha256(), md, &n) == 1 && n == sizeof(md))
            for (unsigned i = 0; i < n; i++)
                snprintf(s->peer.cert_sha256 + 2 * i, 3, "%02x", md[i]);
    }
    s->peer.spiffe_id = s->check.peer_id;
    s->check.peer_id = NULL;
    now_open(s);
}

enum { READ_BUF_SIZE = 64 << 10 };
static pthread_key_t read_buf_key; /* frees a thread's buffer when it exits */
static bool read_buf_keyed;        /* else no buffers: reads fail with UV_ENOBUFS */
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;

static void read_buf_key_init(void)
{
    read_buf_keyed = pthread_key_create(&read_buf_key, free) == 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    /* Consumed entirely before the read callback returns, so one per thread
     * will do. Allocated on a thread's first read rather than as static TLS,
     * which glibc zeroes (and so makes resident) in every thread. */
    static _Thread_local char *rbuf;
    if (rbuf == NULL && pthread_once(&read_buf_once, read_buf_key_init) == 0 && read_buf_keyed) {
        char *b = malloc(READ_BUF_SIZE);
        if (b != NULL && pthread_setspecific(read_buf_key, b) == 0)
            rbuf = b;
        else
            free(b);
    }
    buf->base = rbuf;
    buf->len = rbuf != NULL ? READ_BUF_SIZE : 0; /* 0: the read fails with UV_ENOBUFS */
}

static void deliver(proxy_stream *s, const char *buf, size_t len)
{
    if (s->cbs.on_read != NULL)
        s->cbs.on_read(s, buf, len, s->data);
}

static void peer_done(proxy_stream *s, int status)
{
    s->eof_seen = true;
    if (s->reading) {
        uv_read_stop(&s->h.stream);
        s->reading = false;
    }
    if (s->shutting) {
        if (s->lingering || status < 0)
            proxy_stream_close(s);
        return; /* the shutdown callback closes */
    }
    if (!s->open) {
        set_error(s, s->ssl != NULL ? "TLS handshake" : "read",
                  status < 0 ? "connection reset" : "connection closed by peer");
        open_failed(s);
        return;
    }
    if (s->cbs.on_eof != NULL)
        s->cbs.on_eof(s, status, s->data);
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    proxy_stream *s = st->data;
    if (nread == 0 || s->closing)
        return;
    if (nread < 0) {
        if (nread != UV_EOF)
            set_error(s, "read", uv_strerror((int)nread));
        int status = nread == UV_EOF ? 0 : WARD_EIO;
        if (status == 0 && s->ssl != NULL && s->open &&
            !(SSL_get_shutdown(s->ssl) & SSL_RECEIVED_SHUTDOWN))
            status = WARD_EIO; /* cut without close_notify */
        peer_done(s, status);
        return;
    }
    if (s->shutting)
        return; /* discarded while closing */
    if (s->ssl == NULL) {
        deliver(s, buf->base, (size_t)nread);
        return;
    }
    if (BIO_write(s->rbio, buf->base, (int)nread) != (int)nread) {
        set_error(s, "TLS", "out of memory");
        proxy_stream_close(s);
        return;
    }
    tls_pump(s);
}

static void start_reading(proxy_stream *s)
{
    if (s->reading || s->eof_seen || s->closing)
        return;
    if (uv_read_start(&s->h.stream, alloc_cb, read_cb) == 0)
        s->reading = true;
}

/* Runs the TLS engine on what has arrived: the handshake, then plaintext. */
static void tls_pump(proxy_stream *s)
{
    if (s->in_pump)
        return;
    s->in_pump = true;
    ERR_clear_error();
    if (!SSL_is_init_finished(s->ssl)) {
        int r = SSL_do_handshake(s->ssl);
        flush_wbio(s);
        if (r != 1) {
            int e = SSL_get_error(s->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                set_tls_error(s, "TLS handshake");
                open_failed(s);
            }
            goto out;
        }
        handshake_done(s);
    }
    while (!s->paused && !s->closing && !s->shutting && !s->eof_seen) {
        char plain[16 << 10]; /* on the stack: callbacks may pump other streams */
        int n = SSL_read(s->ssl, plain, sizeof(plain));
        if (n > 0) {
            deliver(s, plain, (size_t)n);
            continue;
        }
        int e = SSL_get_error(s->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        flush_wbio(s);
        if (e == SSL_ERROR_ZERO_RETURN) {
            peer_done(s, 0); /* close_notify */
        } else {
            set_tls_error(s, "TLS");
            peer_done(s, WARD_EIO);
        }
        goto out;
    }
    flush_wbio(s);
out:
    s->in_pump = false;
}

/* ---- timers --------------------------------------------------------------------------------- */

static void timer_cb(uv_timer_t *t)
{
    proxy_stream *s = t->data;
    if (s->closing)
        return;
    if (s->shutting) {
        proxy_stream_close(s);
        return;
    }
    if (s->cbs.on_timeout != NULL)
        s->cbs.on_timeout(s, s->data);
}

void proxy_stream_set_timeout(proxy_stream *s, uint64_t ms)
{
    if (s->closing || s->shutting)
        return;
    if (ms == 0)
        uv_timer_stop(&s->timer);
    else
        uv_timer_start(&s->timer, timer_cb, ms, 0);
}

/* ---- creation -------------------------------------------------------------------------------- */

static proxy_stream *stream_alloc(const proxy_stream_cbs *cbs, void *data)
{
    proxy_stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if (cbs != NULL)
        s->cbs = *cbs;
    s->data = data;
    ward_buf_init(&s->early);
    snprintf(s->peer.addr, sizeof(s->peer.addr), "unknown");
    return s;
}

static int tls_setup(proxy_stream *s, proxy_tls_ctx *tls, const char *expected_id)
{
    if (expected_id != NULL && (s->check.expected_id = strdup(expected_id)) == NULL)
        return WARD_ENOMEM;
    s->ssl = proxy_tls_ctx_ssl_new(tls);
    if (s->ssl == NULL)
        return WARD_ENOMEM;
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (s->rbio == NULL || s->wbio == NULL) {
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        s->rbio = s->wbio = NULL;
        return WARD_ENOMEM;
    }
    BIO_set_mem_eof_return(s->rbio, -1); /* empty means "wait", not EOF */
    SSL_set_bio(s->ssl, s->rbio, s->wbio);
    SSL_set_app_data(s->ssl, &s->check);
    proxy_tls_ctx_ref(tls);
    s->tls = tls;
    return 0;
}

static void peer_fill(proxy_stream *s)
{
    if (s->h.handle.type == UV_TCP) {
        struct sockaddr_storage ss;
        int len = sizeof(ss);
        if (uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &len) == 0)
            proxy_addr_format((struct sockaddr *)&ss, s->peer.addr, sizeof(s->peer.addr));
        uv_tcp_nodelay(&s->h.tcp, 1);
        return;
    }
    s->peer.is_unix = true;
    snprintf(s->peer.addr, sizeof(s->peer.addr), "unix");
    uv_os_fd_t fd;
    struct ucred cr;
    socklen_t len = sizeof(cr);
    if (uv_fileno(&s->h.handle, &fd) == 0 &&
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) == 0 && len == sizeof(cr)) {
        s->peer.has_cred = true;
        s->peer.uid = cr.uid;
        s->peer.gid = cr.gid;
        s->peer.pid = cr.pid;
    }
}

/* Both handles are initialized: from here on the stream is freed by closing. */
static int handles_init(proxy_stream *s, uv_loop_t *loop, bool pipe)
{
    int r = pipe ? uv_pipe_init(loop, &s->h.pipe, 0) : uv_tcp_init(loop, &s->h.tcp);
    if (r < 0)
        return WARD_EIO;
    uv_timer_init(loop, &s->timer);
    s->h.handle.data = s;
    s->timer.data = s;
    s->open_handles = 2;
    return 0;
}

/* Frees a stream whose creation failed, without calling its callbacks. */
static void abandon(proxy_stream *s)
{
    memset(&s->cbs, 0, sizeof(s->cbs));
    if (s->open_handles > 0) {
        proxy_stream_close(s);
        return;
    }
    SSL_free(s->ssl);
    proxy_tls_ctx_unref(s->tls);
    free((char *)s->check.expected_id);
    free(s);
}

int proxy_stream_accept(uv_stream_t *listener, proxy_tls_ctx *tls, const proxy_stream_cbs *cbs,
                        void *data, proxy_stream **out)
{
    int rc = WARD_EIO;
    proxy_stream *s = stream_alloc(cbs, data);
    if (s == NULL)
        return WARD_ENOMEM;
    WARD_TRY(handles_init(s, listener->loop, listener->type == UV_NAMED_PIPE));
    if (uv_accept(listener, &s->h.stream) < 0)
        goto fail;
    peer_fill(s);
    if (tls != NULL)
        WARD_TRY(tls_setup(s, tls, NULL));
    else
        s->open = true;
    start_reading(s);
    if (!s->reading)
        goto fail;
    *out = s;
    return 0;
fail:
    abandon(s);
    return rc;
}

static void connect_cb(uv_connect_t *req, int status)
{
    proxy_stream *s = req->data;
    if (s->closing)
        return;
    if (status < 0) {
        set_error(s, "connect", uv_strerror(status));
        open_failed(s);
        return;
    }
    peer_fill(s);
    start_reading(s);
    if (s->ssl == NULL) {
        now_open(s);
        return;
    }
    tls_pump(s); /* sends the ClientHello */
}

int proxy_stream_connect(uv_loop_t *loop, const struct sockaddr *addr, proxy_tls_ctx *tls,
                         const char *expected_id, const proxy_stream_cbs *cbs, void *data,
                         proxy_stream **out)
{
    int rc = WARD_EIO;
    proxy_stream *s = stream_alloc(cbs, data);
    if (s == NULL)
        return WARD_ENOMEM;
    WARD_TRY(handles_init(s, loop, false));
    if (tls != NULL) {
        if (proxy_tls_ctx_is_server(tls) ||
            (expected_id != NULL && proxy_tls_ctx_peer_mode(tls) != PROXY_TLS_PEER_REQUIRED)) {
            rc = WARD_EINVAL;
            goto fail;
        }
        WARD_TRY(tls_setup(s, tls, expected_id));
    }
    s->connect_req.data = s;
    if (uv_tcp_connect(&s->connect_req, &s->h.tcp, addr, connect_cb) < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    abandon(s);
    return rc;
}

/* ---- flow control and shutdown ------------------------------------------------------------------
 */

void proxy_stream_read_pause(proxy_stream *s)
{
    s->paused = true;
    if (s->reading && !s->shutting) {
        uv_read_stop(&s->h.stream);
        s->reading = false;
    }
}

void proxy_stream_read_resume(proxy_stream *s)
{
    if (!s->paused || s->closing)
        return;
    s->paused = false;
    start_reading(s);
    if (s->ssl != NULL && SSL_is_init_finished(s->ssl))
        tls_pump(s); /* plaintext OpenSSL already holds */
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    proxy_stream *s = req->data;
    if (s->closing)
        return;
    if (status < 0) {
        set_error(s, "shutdown", uv_strerror(status));
        proxy_stream_close(s);
        return;
    }
    s->fin_sent = true;
    if (!s->shutting)
        return; /* a half-close: reading goes on */
    if (s->eof_seen) {
        proxy_stream_close(s);
        return;
    }
    s->lingering = true; /* read and discard until EOF or the deadline */
}

/* Queues close_notify (TLS) and the FIN after what is queued; reading goes on. */
static void write_side_shutdown(proxy_stream *s)
{
    if (s->ssl != NULL) {
        ERR_clear_error();
        SSL_shutdown(s->ssl);
        flush_wbio(s);
        ERR_clear_error();
    }
    if (s->closing)
        return;
    s->wr_shut_sent = true;
    s->shutdown_req.data = s;
    if (uv_shutdown(&s->shutdown_req, &s->h.stream, shutdown_cb) < 0)
        proxy_stream_close(s);
}

void proxy_stream_shutdown_write(proxy_stream *s)
{
    if (s->closing || s->shutting || s->wr_shut)
        return;
    cork_flush(s); /* what was gathered goes out before the FIN (and before writes are refused) */
    s->wr_shut = true;
    if (s->open && !s->closing)
        write_side_shutdown(s); /* else when the stream opens, after its early bytes */
}

void proxy_stream_shutdown(proxy_stream *s, uint64_t linger_ms)
{
    if (s->closing || s->shutting)
        return;
    if (s->wr_shut_sent) { /* the FIN is queued or sent: only the lingering is left */
        s->shutting = true;
        if (s->fin_sent && s->eof_seen) {
            proxy_stream_close(s);
            return;
        }
        s->lingering = s->fin_sent;
        s->paused = false;
        start_reading(s);
        uv_timer_start(&s->timer, timer_cb, linger_ms ? linger_ms : 1, 0);
        return;
    }
    s->wr_shut = false; /* a half-close still waiting for the stream to open: done below */
    cork_flush(s); /* what was gathered goes out before the FIN */
    if (!s->open && !(s->ssl != NULL && s->reading)) {
        proxy_stream_close(s);
        return;
    }
    if (s->ssl != NULL && s->open) {
        ERR_clear_error();
        SSL_shutdown(s->ssl); /* queues close_notify */
        flush_wbio(s);
        ERR_clear_error();
    }
    if (s->closing)
        return;
    s->shutting = true;
    s->shutdown_req.data = s;
    if (uv_shutdown(&s->shutdown_req, &s->h.stream, shutdown_cb) < 0) {
        proxy_stream_close(s);
        return;
    }
    s->paused = false;
    start_reading(s);
    uv_timer_start(&s->timer, timer_cb, linger_ms ? linger_ms : 1, 0);
}

/* ---- accessors
 * ------------------------------------------------------------------------------------ */

int proxy_stream_set_server_name(proxy_stream *s, const char *name)
{
    if (s->ssl == NULL || SSL_is_server(s->ssl) || !SSL_in_before(s->ssl) || name == NULL ||
        SSL_set_tlsext_host_name(s->ssl, name) != 1) {
        ERR_clear_error();
        return WARD_EINVAL;
    }
    return 0;
}

const char *proxy_stream_server_name(const proxy_stream *s)
{
    if (s->ssl == NULL || !SSL_is_server(s->ssl) || !SSL_is_init_finished(s->ssl))
        return NULL;
    return SSL_get_servername(s->ssl, TLSEXT_NAMETYPE_host_name);
}

bool proxy_stream_handshake_done(const proxy_stream *s)
{
    return s->ssl == NULL || SSL_is_init_finished(s->ssl);
}

const proxy_peer *proxy_stream_peer(const proxy_stream *s)
{
    return &s->peer;
}

const char *proxy_stream_error(const proxy_stream *s)
{
    return s->error;
}

void *proxy_stream_data(const proxy_stream *s)
{
    return s->data;
}
