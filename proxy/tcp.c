/* tcp.c - TCP mode: connections authorized once when they open, then relayed opaquely both ways */
#include "proxy/proxy_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_BACKLOG 4096
#define SNI_MAX        253 /* a DNS name without its trailing dot */

enum { T_HANDSHAKE, T_CONNECTING, T_RELAY, T_ENDING };

struct proxy_tcp {
    uv_loop_t *loop;
    proxy_tcp_options o;
    uv_tcp_t lst;
    bool listening, lst_closed;
    proxy_tls_ctx *tls;
    proxy_tcp_conn *conns;
    size_t n_conns;
    int port;
    bool closing, finishing;
    uv_timer_t drain_timer;
    proxy_done_cb done_cb;
    void *done_data;
};

struct proxy_tcp_conn {
    proxy_tcp *t;
    proxy_tcp_conn *prev, *next;
    proxy_stream *c; /* the client, until it closed */
    proxy_stream *u; /* the upstream, once connecting and until it closed */
    int state;
    bool tls_in;             /* accepted over TLS */
    bool c_eof, u_eof;       /* that side finished sending, cleanly */
    bool c_paused, u_paused; /* that side's reading stopped: the other one's queue is full */
    bool ended;              /* res.end is set */
    void *data;
    uint64_t start_ns;
    uint64_t last_active; /* uv_now of the last byte either way */
    proxy_peer peer;      /* a copy of the client stream's, kept for the done callback */
    bool has_peer;
    char sni[SNI_MAX + 1];
    bool has_sni;
    char reason[256];
    proxy_tcp_result res;
};

static void listener_maybe_finish(proxy_tcp *t);

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *proxy_tcp_end_name(proxy_tcp_end e)
{
    static const char *const names[] = {"done",         "denied",  "handshake",    "connect",
                                        "upstream_tls", "idle",    "client_error", "upstream_error",
                                        "shutdown",     "internal"};
    if ((unsigned)e >= sizeof(names) / sizeof(names[0]))
        return "internal";
    return names[e];
}

/* ---- the end of a connection ----------------------------------------------------------------- */

/* Records why the connection ends; the first reason given wins. */
static void conn_end(proxy_tcp_conn *c, proxy_tcp_end end, const char *reason)
{
    if (c->ended)
        return;
    c->ended = true;
    c->res.end = end;
    snprintf(c->reason, sizeof(c->reason), "%s", reason != NULL ? reason : "");
    c->state = T_ENDING;
}

/* Ends the connection now: both sides are reset, whatever they still hold, so
 * that neither mistakes the end for a complete stream. */
static void conn_abort(proxy_tcp_conn *c, proxy_tcp_end end, const char *reason)
{
    conn_end(c, end, reason);
    if (c->c != NULL)
        proxy_stream_reset(c->c);
    if (c->u != NULL)
        proxy_stream_reset(c->u);
}

static void peer_copy(proxy_peer *dst, const proxy_peer *src)
{
    *dst = *src;
    dst->chain = src->chain != NULL ? X509_chain_up_ref(src->chain) : NULL;
    dst->spiffe_id = src->spiffe_id != NULL ? strdup(src->spiffe_id) : NULL;
}

static void peer_dispose(proxy_peer *p)
{
    sk_X509_pop_free(p->chain, X509_free);
    free(p->spiffe_id);
}

static proxy_tcp_info conn_info(proxy_tcp_conn *c, const proxy_peer *peer)
{
    proxy_tcp_info info = {peer, c->t->port, c->has_sni ? c->sni : NULL};
    return info;
}

/* Both sides are closed: report and free. */
static void conn_maybe_free(proxy_tcp_conn *c)
{
    if (c->c != NULL || c->u != NULL)
        return;
    proxy_tcp *t = c->t;
    if (!c->ended)
        conn_end(c, PROXY_TCP_END_INTERNAL, "closed without a reason");
    c->res.reason = c->reason;
    c->res.duration_ns = now_ns() - c->start_ns;
    if (t->o.done != NULL) {
        proxy_peer none;
        memset(&none, 0, sizeof(none));
        proxy_tcp_info info = conn_info(c, c->has_peer ? &c->peer : &none);
        t->o.done(c, &info, &c->res, t->o.data);
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        t->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    t->n_conns--;
    if (c->has_peer)
        peer_dispose(&c->peer);
    free(c);
    listener_maybe_finish(t);
}

/* One side finished cleanly: its FIN is passed on; when both have, the
 * connection ends once the last bytes (and FINs) are out. */
static void conn_maybe_done(proxy_tcp_conn *c)
{
    if (!c->c_eof || !c->u_eof || c->state == T_ENDING)
        return;
    conn_end(c, PROXY_TCP_END_DONE, "");
    /* closes each stream once its FIN is out; a peer that does not take the
     * last bytes within the idle timeout is cut */
    if (c->c != NULL)
        proxy_stream_shutdown(c->c, c->t->o.idle_timeout_ms);
    if (c->u != NULL)
        proxy_stream_shutdown(c->u, c->t->o.idle_timeout_ms);
}

static const char *stream_reason(proxy_stream *s, const char *fallback)
{
    const char *e = proxy_stream_error(s);
    return e[0] != '\0' ? e : fallback;
}

/* ---- the upstream side ----------------------------------------------------------------------- */

static void u_on_open(proxy_stream *st, int status, void *data)
{
    proxy_tcp_conn *c = data;
    if (status < 0) {
        const char *why = stream_reason(st, "connect failed");
        /* a TCP failure is "connect", a TLS or identity failure "upstream_tls" */
        bool tcp = strncmp(why, "connect", 7) == 0;
        conn_abort(c, tcp ? PROXY_TCP_END_CONNECT : PROXY_TCP_END_UPSTREAM_TLS, why);
        return;
    }
    if (c->state == T_CONNECTING)
        c->state = T_RELAY;
    proxy_stream_set_timeout(st, 0);
}

static void u_on_read(proxy_stream *st, const char *buf, size_t len, void *data)
{
    proxy_tcp_conn *c = data;
    if (c->state == T_ENDING || c->c == NULL)
        return;
    c->res.bytes_out += len;
    c->last_active = uv_now(c->t->loop);
    if (proxy_stream_write(c->c, buf, len) < 0) {
        conn_abort(c, PROXY_TCP_END_CLIENT_ERROR,
                   stream_reason(c->c, "write to the client failed"));
        return;
    }
    if (!c->u_paused && proxy_stream_pending(c->c) > PROXY_TCP_QUEUE_HIGH) {
        c->u_paused = true;
        proxy_stream_read_pause(st);
    }
}

static void u_on_eof(proxy_stream *st, int status, void *data)
{
    proxy_tcp_conn *c = data;
    if (status < 0) {
        conn_abort(c, PROXY_TCP_END_UPSTREAM_ERROR, stream_reason(st, "upstream connection cut"));
        return;
    }
    c->u_eof = true;
    if (c->c != NULL)
        proxy_stream_shutdown_write(c->c);
    conn_maybe_done(c);
}

static void u_on_timeout(proxy_stream *st, void *data)
{
    proxy_tcp_conn *c = data;
    if (c->state == T_CONNECTING)
        conn_abort(c, PROXY_TCP_END_CONNECT, "upstream connect timeout");
}

static void u_on_drain(proxy_stream *st, void *data)
{
    proxy_tcp_conn *c = data;
    c->last_active = uv_now(c->t->loop); /* a slow reader that reads is not idle */
    if (c->c_paused && c->c != NULL && c->state != T_ENDING) {
        c->c_paused = false;
        proxy_stream_read_resume(c->c);
    }
}

static void u_on_close(proxy_stream *st, void *data)
{
    proxy_tcp_conn *c = data;
    c->u = NULL;
    if (!c->ended)
        conn_end(c, PROXY_TCP_END_UPSTREAM_ERROR, stream_reason(st, "upstream connection closed"));
    if (c->c != NULL)
        proxy_stream_reset(c->c);
    conn_maybe_free(c);
}

static const proxy_stream_cbs u_cbs = {u_on_open,    u_on_read,  u_on_eof,
                                       u_on_timeout, u_on_drain, u_on_close};

/* ---- authorizing and connecting -------------------------------------------------------------- */

/* The client's SNI as a DNS name, lowercased into out; false if it is not one. */
static bool sni_copy(const char *s, char *out)
{
    size_t n = strnlen(s, SNI_MAX + 1), label = 0;
    if (n == 0 || n > SNI_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_') {
            label++;
        } else if (ch >= 'A' && ch <= 'Z') {
            ch = (char)(ch - 'A' + 'a');
            label++;
        } else {
            return false;
        }
        if (label > 63)
            return false;
        out[i] = ch;
    }
    out[n] = '\0';
    return label > 0;
}

static void authorize(proxy_tcp_conn *c)
{
    proxy_tcp *t = c->t;
    const proxy_peer *peer = proxy_stream_peer(c->c);
    if (c->tls_in) {
        if (peer->spiffe_id == NULL) { /* a REQUIRED-mode context makes this impossible */
            conn_abort(c, PROXY_TCP_END_DENIED, "no verified peer identity");
            return;
        }
        const char *sni = proxy_stream_server_name(c->c);
        if (sni != NULL) {
            if (!sni_copy(sni, c->sni)) {
                conn_abort(c, PROXY_TCP_END_DENIED, "malformed server name (SNI)");
                return;
            }
            c->has_sni = true;
        }
    }
    proxy_tcp_info info = conn_info(c, peer);
    proxy_tcp_target tg;
    memset(&tg, 0, sizeof(tg));
    bool allow = t->o.authorize(c, &info, &tg, t->o.data);
    if (c->state == T_ENDING)
        return;
    if (!allow) {
        conn_abort(c, PROXY_TCP_END_DENIED, "denied");
        return;
    }
    if (tg.addr == NULL) {
        conn_abort(c, PROXY_TCP_END_DENIED, "no upstream address");
        return;
    }
    c->res.authorized = true;
    if (tg.tls == NULL && (tg.expected_id != NULL || tg.server_name != NULL)) {
        conn_abort(c, PROXY_TCP_END_INTERNAL, "upstream identity or server name without TLS");
        return;
    }
    int rc = proxy_stream_connect(t->loop, tg.addr, tg.tls, tg.expected_id, &u_cbs, c, &c->u);
    if (rc < 0) {
        c->u = NULL;
        conn_abort(c, rc == WARD_EIO ? PROXY_TCP_END_CONNECT : PROXY_TCP_END_INTERNAL,
                   rc == WARD_EIO ? "connect: cannot start" : "invalid upstream target");
        return;
    }
    c->state = T_CONNECTING;
    if (tg.server_name != NULL && proxy_stream_set_server_name(c->u, tg.server_name) < 0) {
        conn_abort(c, PROXY_TCP_END_INTERNAL, "invalid server name for the upstream");
        return;
    }
    proxy_stream_set_timeout(c->u, t->o.connect_timeout_ms);
    c->last_active = uv_now(t->loop);
    proxy_stream_set_timeout(c->c, t->o.idle_timeout_ms);
}

/* ---- the client side ------------------------------------------------------------------------- */

static void c_on_open(proxy_stream *st, int status, void *data)
{
    proxy_tcp_conn *c = data;
    if (status < 0) {
        conn_abort(c, PROXY_TCP_END_HANDSHAKE, stream_reason(st, "TLS handshake failed"));
        return;
    }
    if (c->state == T_HANDSHAKE)
        authorize(c);
}

static void c_on_read(proxy_stream *st, const char *buf, size_t len, void *data)
{
    proxy_tcp_conn *c = data;
    if (c->state == T_ENDING || c->u == NULL)
        return;
    c->res.bytes_in += len;
    c->last_active = uv_now(c->t->loop);
    if (proxy_stream_write(c->u, buf, len) < 0) {
        conn_abort(c, PROXY_TCP_END_UPSTREAM_ERROR,
                   stream_reason(c->u, "write to the upstream failed"));
        return;
    }
    if (!c->c_paused && proxy_stream_pending(c->u) > PROXY_TCP_QUEUE_HIGH) {
        c->c_paused = true;
        proxy_stream_read_pause(st);
    }
}

static void c_on_eof(proxy_stream *st, int status, void *data)
{
    proxy_tcp_conn *c = data;
    if (status < 0) {
        conn_abort(c, PROXY_TCP_END_CLIENT_ERROR, stream_reason(st, "client connection cut"));
        return;
    }
    c->c_eof = true;
    if (c->u != NULL)
        proxy_stream_shutdown_write(c->u); /* held until it opens, after the held bytes */
    conn_maybe_done(c);
}

static void c_on_timeout(proxy_stream *st, void *data)
{
    proxy_tcp_conn *c = data;
    proxy_tcp *t = c->t;
    if (c->state == T_HANDSHAKE) {
        conn_abort(c, PROXY_TCP_END_HANDSHAKE, "TLS handshake timeout");
        return;
    }
    if (c->state == T_ENDING)
        return;
    /* the deadline is moved lazily: only when it fires is the last activity looked at */
    uint64_t idle = uv_now(t->loop) - c->last_active;
    if (idle >= t->o.idle_timeout_ms) {
        conn_abort(c, PROXY_TCP_END_IDLE, "idle timeout");
        return;
    }
    proxy_stream_set_timeout(st, t->o.idle_timeout_ms - idle);
}

static void c_on_drain(proxy_stream *st, void *data)
{
    proxy_tcp_conn *c = data;
    c->last_active = uv_now(c->t->loop);
    if (c->u_paused && c->u != NULL && c->state != T_ENDING) {
        c->u_paused = false;
        proxy_stream_read_resume(c->u);
    }
}

static void c_on_close(proxy_stream *st, void *data)
{
    proxy_tcp_conn *c = data;
    peer_copy(&c->peer, proxy_stream_peer(st));
    c->has_peer = true;
    c->c = NULL;
    if (!c->ended)
        conn_end(c, PROXY_TCP_END_CLIENT_ERROR, stream_reason(st, "client connection closed"));
    if (c->u != NULL)
        proxy_stream_reset(c->u);
    conn_maybe_free(c);
}

static const proxy_stream_cbs c_cbs = {c_on_open,    c_on_read,  c_on_eof,
                                       c_on_timeout, c_on_drain, c_on_close};

/* ---- listening ------------------------------------------------------------------------------- */

static void on_connection(uv_stream_t *l, int status)
{
    proxy_tcp *t = l->data;
    if (status < 0)
        return;
    proxy_tcp_conn *c = NULL;
    if (t->closing || t->n_conns >= t->o.max_connections || (c = calloc(1, sizeof(*c))) == NULL) {
        proxy_stream *st;
        if (proxy_stream_accept(l, NULL, NULL, NULL, &st) == 0)
            proxy_stream_close(st);
        return;
    }
    c->t = t;
    c->start_ns = now_ns();
    c->tls_in = t->tls != NULL;
    c->state = c->tls_in ? T_HANDSHAKE : T_CONNECTING;
    if (proxy_stream_accept(l, t->tls, &c_cbs, c, &c->c) < 0) {
        free(c);
        return;
    }
    c->next = t->conns;
    if (t->conns != NULL)
        t->conns->prev = c;
    t->conns = c;
    t->n_conns++;
    if (c->tls_in)
        proxy_stream_set_timeout(c->c, t->o.handshake_timeout_ms);
    else
        authorize(c);
}

int proxy_tcp_new(uv_loop_t *loop, const proxy_tcp_options *opts, proxy_tcp **out)
{
    if (opts->authorize == NULL)
        return WARD_EINVAL;
    proxy_tcp *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return WARD_ENOMEM;
    t->loop = loop;
    t->o = *opts;
    if (!t->o.handshake_timeout_ms)
        t->o.handshake_timeout_ms = 10000;
    if (!t->o.connect_timeout_ms)
        t->o.connect_timeout_ms = 5000;
    if (!t->o.idle_timeout_ms)
        t->o.idle_timeout_ms = 3600000;
    if (!t->o.max_connections)
        t->o.max_connections = 16384;
    uv_timer_init(loop, &t->drain_timer);
    t->drain_timer.data = t;
    *out = t;
    return 0;
}

int proxy_tcp_listen(proxy_tcp *t, const struct sockaddr *addr, bool reuseport, ward_err *err)
{
    char where[PROXY_ADDR_STRLEN];
    proxy_addr_format(addr, where, sizeof(where));
    if (t->listening) {
        ward_err_set(err, "%s: already listening", where);
        return WARD_EINVAL;
    }
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        ward_err_set(err, "%s: socket: %s", where, strerror(errno));
        return WARD_EIO;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        int e = errno;
        close(fd);
        ward_err_set(err, "%s: SO_REUSEPORT: %s", where, strerror(e));
        return WARD_EIO;
    }
    socklen_t alen =
        addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (bind(fd, addr, alen) < 0) {
        int e = errno;
        close(fd);
        ward_err_set(err, "cannot listen on %s: %s", where, strerror(e));
        return WARD_EIO;
    }
    uv_tcp_init(t->loop, &t->lst);
    t->lst.data = t;
    t->listening = true;
    int rc = uv_tcp_open(&t->lst, fd);
    if (rc < 0)
        close(fd); /* not the handle's yet */
    else
        rc = uv_listen((uv_stream_t *)&t->lst, LISTEN_BACKLOG, on_connection);
    if (rc < 0) {
        ward_err_set(err, "cannot listen on %s: %s", where, uv_strerror(rc));
        return WARD_EIO;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&t->lst, (struct sockaddr *)&ss, &len) == 0)
        t->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

int proxy_tcp_port(const proxy_tcp *t)
{
    return t->port;
}

int proxy_tcp_set_tls(proxy_tcp *t, proxy_tls_ctx *tls)
{
    if (tls != NULL) {
        if (!proxy_tls_ctx_is_server(tls) ||
            proxy_tls_ctx_peer_mode(tls) != PROXY_TLS_PEER_REQUIRED)
            return WARD_EINVAL;
        proxy_tls_ctx_ref(tls);
    }
    if (t->tls != NULL)
        proxy_tls_ctx_unref(t->tls);
    t->tls = tls;
    return 0;
}

size_t proxy_tcp_connections(const proxy_tcp *t)
{
    return t->n_conns;
}

size_t proxy_tcp_queued(const proxy_tcp *t)
{
    size_t n = 0;
    for (const proxy_tcp_conn *c = t->conns; c != NULL; c = c->next) {
        if (c->c != NULL)
            n += proxy_stream_pending(c->c);
        if (c->u != NULL)
            n += proxy_stream_pending(c->u);
    }
    return n;
}

void proxy_tcp_conn_set_data(proxy_tcp_conn *c, void *data)
{
    c->data = data;
}

void *proxy_tcp_conn_data(const proxy_tcp_conn *c)
{
    return c->data;
}

/* ---- closing --------------------------------------------------------------------------------- */

static void tcp_freed(uv_handle_t *h)
{
    proxy_tcp *t = h->data;
    proxy_done_cb cb = t->done_cb;
    void *data = t->done_data;
    if (t->tls != NULL)
        proxy_tls_ctx_unref(t->tls);
    free(t);
    if (cb != NULL)
        cb(data);
}

static void listener_closed(uv_handle_t *h)
{
    proxy_tcp *t = h->data;
    t->lst_closed = true;
    listener_maybe_finish(t);
}

static void listener_maybe_finish(proxy_tcp *t)
{
    if (!t->closing || t->finishing || t->n_conns > 0 || (t->listening && !t->lst_closed))
        return;
    t->finishing = true;
    uv_close((uv_handle_t *)&t->drain_timer, tcp_freed);
}

static void cut_all(proxy_tcp *t)
{
    proxy_tcp_conn *next;
    for (proxy_tcp_conn *c = t->conns; c != NULL; c = next) {
        next = c->next; /* closing only schedules: c stays until its streams' callbacks */
        conn_abort(c, PROXY_TCP_END_SHUTDOWN, "listener closed");
    }
}

static void drain_expired(uv_timer_t *timer)
{
    cut_all(timer->data);
}

void proxy_tcp_close(proxy_tcp *t, uint64_t drain_ms, proxy_done_cb cb, void *data)
{
    if (t->closing)
        return;
    t->closing = true;
    t->done_cb = cb;
    t->done_data = data;
    if (t->listening && !uv_is_closing((uv_handle_t *)&t->lst))
        uv_close((uv_handle_t *)&t->lst, listener_closed);
    if (drain_ms == 0)
        cut_all(t);
    else
        uv_timer_start(&t->drain_timer, drain_expired, drain_ms, 0);
    listener_maybe_finish(t);
}
