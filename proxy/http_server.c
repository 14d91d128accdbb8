/* http_server.c - HTTP/1.1 servers: listeners, keep-alive, deadlines, exchanges, responses */
#include "proxy/proxy_int.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINGER_MS      2000                /* after an answer that closes */
#define WRITE_HIGH     ((size_t)256 << 10) /* unread responses before reading stops */
#define READ_AHEAD_MAX ((size_t)64 << 10)  /* pipelined bytes buffered while busy */

typedef struct listener {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    proxy_http_server *server;
} listener;

typedef struct conn conn;

struct proxy_http_server {
    uv_loop_t *loop;
    proxy_http_server_options o;
    listener *lst; /* NULL when none or once closed */
    proxy_tls_ctx *tls;
    conn *conns;
    size_t n_conns;
    int port;
    int lst_handles; /* listener handles not yet closed */
    bool closing, finished;
    proxy_done_cb done_cb;
    void *done_data;
};

enum { C_HEAD, C_BODY, C_DISPATCHED, C_CLOSING };

struct conn {
    proxy_http_server *srv;
    proxy_stream *st;
    conn *prev, *next;
    proxy_http_parser *parser;
    ward_buf in; /* received and not yet answered */
    int state;
    bool started;       /* bytes of the current request have arrived */
    bool processing;    /* inside process(): no re-entry */
    bool write_blocked; /* the peer does not read its responses */
    bool peer_eof;
    proxy_http_request req;
    proxy_http_exchange *ex;
    /* the last successful peer check: its bundle snapshot, the ID, and the
     * time window in which every certificate of the chain is valid */
    ident_bundle *v_bundle;
    char *v_id;
    time_t v_from, v_until;
};

struct proxy_http_exchange {
    conn *c; /* NULL once the connection is gone */
    proxy_http_request req;
    proxy_slice body;
    proxy_peer peer;
    bool close, head;
    size_t consumed;  /* bytes of the connection's input this request used */
    size_t block_len; /* bytes after the struct: headers and request */
    /* then: the headers, then the request's bytes (one block, freed once) */
};

/* ---- exchanges ------------------------------------------------------------------------ */

static proxy_slice rebase(proxy_slice s, const char *from, char *to)
{
    if (s.ptr != NULL)
        s.ptr = to + (s.ptr - from);
    return s;
}

static int peer_copy(proxy_peer *dst, const proxy_peer *src)
{
    *dst = *src;
    dst->chain = NULL;
    dst->spiffe_id = NULL;
    if (src->chain != NULL) {
        dst->chain = sk_X509_dup(src->chain);
        if (dst->chain == NULL)
            return WARD_ENOMEM;
        for (int i = 0; i < sk_X509_num(dst->chain); i++)
            X509_up_ref(sk_X509_value(dst->chain, i));
    }
    if (src->spiffe_id != NULL && (dst->spiffe_id = strdup(src->spiffe_id)) == NULL)
        return WARD_ENOMEM;
    return 0;
}

static void exchange_free(proxy_http_exchange *ex)
{
    sk_X509_pop_free(ex->peer.chain, X509_free);
    free(ex->peer.spiffe_id);
    /* requests carry credentials (tokens, Authorization): wiped, not just freed */
    OPENSSL_cleanse(ex + 1, ex->block_len);
    free(ex);
}

/* Copies the request (head, body, headers, peer) out of the connection. */
static proxy_http_exchange *exchange_new(conn *c, const proxy_http_request *r, size_t body_len)
{
    size_t total = r->head_len + body_len;
    size_t hsize = r->n_headers * sizeof(proxy_header);
    proxy_http_exchange *ex = calloc(1, sizeof(*ex) + hsize + total);
    if (ex == NULL)
        return NULL;
    proxy_header *hdrs = (proxy_header *)(ex + 1);
    char *bytes = (char *)hdrs + hsize;
    const char *from = c->in.ptr;
    memcpy(bytes, from, total);
    ex->req = *r;
    ex->req.method = rebase(r->method, from, bytes);
    ex->req.target = rebase(r->target, from, bytes);
    ex->req.authority = rebase(r->authority, from, bytes);
    ex->req.path = rebase(r->path, from, bytes);
    ex->req.query = rebase(r->query, from, bytes);
    ex->req.host = rebase(r->host, from, bytes);
    for (size_t i = 0; i < r->n_headers; i++) {
        hdrs[i].name = rebase(r->headers[i].name, from, bytes);
        hdrs[i].value = rebase(r->headers[i].value, from, bytes);
    }
    ex->req.headers = r->n_headers ? hdrs : NULL;
    ex->body.ptr = bytes + r->head_len;
    ex->body.len = body_len;
    ex->consumed = total;
    ex->block_len = hsize + total;
    ex->head = r->method.len == 4 && memcmp(r->method.ptr, "HEAD", 4) == 0;
    ex->c = c;
    if (peer_copy(&ex->peer, proxy_stream_peer(c->st)) < 0) {
        exchange_free(ex);
        return NULL;
    }
    return ex;
}

const proxy_http_request *proxy_http_exchange_request(const proxy_http_exchange *ex)
{
    return &ex->req;
}

proxy_slice proxy_http_exchange_body(const proxy_http_exchange *ex)
{
    return ex->body;
}

const proxy_peer *proxy_http_exchange_peer(const proxy_http_exchange *ex)
{
    return &ex->peer;
}

void proxy_http_exchange_set_close(proxy_http_exchange *ex)
{
    ex->close = true;
}

static int asn1_time_get(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return WARD_EINVAL;
    *out = timegm(&tm);
    return 0;
}

/* When every certificate of the chain is valid: [*from, *until). */
static int chain_window(STACK_OF(X509) * chain, time_t *from, time_t *until)
{
    *from = 0;
    *until = (time_t)INT64_MAX;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        time_t nb, na;
        X509 *x = sk_X509_value(chain, i);
        if (asn1_time_get(X509_get0_notBefore(x), &nb) < 0 ||
            asn1_time_get(X509_get0_notAfter(x), &na) < 0)
            return WARD_EINVAL;
        if (nb > *from)
            *from = nb;
        if (na < *until)
            *until = na;
    }
    return 0;
}

int proxy_http_exchange_verify_peer(proxy_http_exchange *ex, ident_bundle *bundle, time_t now,
                                    char *id, ward_err *why)
{
    conn *c = ex->c;
    if (c != NULL && c->v_bundle == bundle && c->v_id != NULL && ex->peer.chain != NULL &&
        now >= c->v_from && now < c->v_until) {
        snprintf(id, IDENT_ID_MAX, "%s", c->v_id);
        return 0;
    }
    int rc = proxy_peer_verify(&ex->peer, bundle, now, id, why);
    if (rc < 0 || c == NULL)
        return rc;
    time_t from, until;
    char *copy = strdup(id);
    if (copy == NULL || chain_window(ex->peer.chain, &from, &until) < 0) {
        free(copy);
        return rc; /* verified, just not remembered */
    }
    if (c->v_bundle != NULL)
        ident_bundle_unref(c->v_bundle);
    free(c->v_id);
    ident_bundle_ref(bundle);
    c->v_bundle = bundle;
    c->v_id = copy;
    c->v_from = from;
    c->v_until = until;
    return rc;
}

/* ---- connections -------------------------------------------------------------------------- */

static void process(conn *c);

static void conn_close_gracefully(conn *c)
{
    c->state = C_CLOSING;
    proxy_stream_shutdown(c->st, LINGER_MS);
}

/* An error the server answers itself; the connection closes after it. */
static void fail_request(conn *c, int status, const char *reason)
{
    proxy_http_server *srv = c->srv;
    if (!proxy_stream_handshake_done(c->st)) {
        c->state = C_CLOSING;
        proxy_stream_close(c->st);
        return;
    }
    ward_buf body, out;
    ward_buf_init(&body);
    ward_buf_init(&out);
    const char *ct = srv->o.error_content_type ? srv->o.error_content_type : "text/plain";
    if (srv->o.on_error != NULL)
        srv->o.on_error(status, reason, proxy_stream_peer(c->st), &body, srv->o.data);
    if (body.len == 0) {
        ct = "text/plain";
        ward_buf_printf(&body, "%s\n", reason);
    }
    proxy_header h[1] = {{{"Content-Type", 12}, {ct, strlen(ct)}}};
    if (proxy_http_response_head(&out, status, h, 1, body.len, true, false) == 0 &&
        ward_buf_append(&out, body.ptr, body.len) == 0)
        proxy_stream_write(c->st, out.ptr, out.len);
    ward_buf_dispose(&body);
    ward_buf_dispose(&out);
    conn_close_gracefully(c);
}

static void dispatch(conn *c)
{
    proxy_http_error err;
    /* refresh the slices: the buffer may have moved while the body arrived */
    if (proxy_http_parser_feed(c->parser, c->in.ptr, c->in.len, &c->req, &err) != 1) {
        fail_request(c, 500, "internal error");
        return;
    }
    size_t body_len = c->req.body_kind == PROXY_BODY_LENGTH ? (size_t)c->req.content_length : 0;
    proxy_http_exchange *ex = exchange_new(c, &c->req, body_len);
    if (ex == NULL) {
        fail_request(c, 503, "out of memory");
        return;
    }
    c->ex = ex;
    c->state = C_DISPATCHED;
    proxy_stream_set_timeout(c->st, 0);
    c->srv->o.handler(ex, c->srv->o.data);
}

static void process(conn *c)
{
    proxy_http_server *srv = c->srv;
    if (c->processing)
        return;
    c->processing = true;
    while (!proxy_stream_is_closing(c->st) && c->state != C_CLOSING && c->state != C_DISPATCHED &&
           !c->write_blocked) {
        if (c->state == C_HEAD) {
            if (c->in.len == 0) {
                if (c->peer_eof || srv->closing)
                    conn_close_gracefully(c);
                break;
            }
            if (!c->started) {
                c->started = true;
                proxy_stream_set_timeout(c->st, srv->o.header_timeout_ms);
            }
            proxy_http_error err;
            int r = proxy_http_parser_feed(c->parser, c->in.ptr, c->in.len, &c->req, &err);
            if (r < 0) {
                fail_request(c, err.status, err.reason);
                break;
            }
            if (r == 0) {
                if (c->peer_eof)
                    conn_close_gracefully(c);
                break;
            }
            if (c->req.body_kind == PROXY_BODY_CHUNKED) {
                fail_request(c, 501, "chunked request bodies are not supported");
                break;
            }
            c->state = C_BODY;
            uint64_t need = c->req.head_len + c->req.content_length;
            if (c->req.body_kind == PROXY_BODY_LENGTH && c->in.len < need) {
                if (c->req.expect_continue)
                    proxy_stream_write(c->st, "HTTP/1.1 100 Continue\r\n\r\n", 25);
                proxy_stream_set_timeout(c->st, srv->o.body_timeout_ms);
            }
        }
        if (c->state == C_BODY) {
            uint64_t need = c->req.head_len +
                            (c->req.body_kind == PROXY_BODY_LENGTH ? c->req.content_length : 0);
            if (c->in.len < need) {
                if (c->peer_eof)
                    conn_close_gracefully(c);
                break;
            }
            dispatch(c);
        }
    }
    c->processing = false;
}

static void on_read(proxy_stream *st, const char *buf, size_t len, void *data)
{
    conn *c = data;
    if (c->state == C_CLOSING)
        return;
    if (ward_buf_append(&c->in, buf, len) < 0) {
        proxy_stream_close(st);
        return;
    }
    if ((c->state == C_DISPATCHED || c->write_blocked) && c->in.len >= READ_AHEAD_MAX)
        proxy_stream_read_pause(st);
    process(c);
}

static void on_open(proxy_stream *st, int status, void *data)
{
    conn *c = data;
    if (status < 0 && c->srv->o.on_tls_error != NULL)
        c->srv->o.on_tls_error(proxy_stream_peer(st), proxy_stream_error(st), c->srv->o.data);
}

static void on_eof(proxy_stream *st, int status, void *data)
{
    conn *c = data;
    c->peer_eof = true;
    if (status < 0) { /* reset or broken: nothing can be answered */
        c->state = C_CLOSING;
        proxy_stream_close(st);
        return;
    }
    process(c);
}

static void on_timeout(proxy_stream *st, void *data)
{
    conn *c = data;
    if (c->write_blocked) {
        proxy_stream_close(st);
        return;
    }
    switch (c->state) {
    case C_HEAD:
        if (!c->started) {
            c->state = C_CLOSING; /* idle, or a handshake that never came */
            proxy_stream_close(st);
        } else {
            fail_request(c, 408, "request header timeout");
        }
        break;
    case C_BODY: fail_request(c, 408, "request body timeout"); break;
    default: break;
    }
}

static void on_drain(proxy_stream *st, void *data)
{
    conn *c = data;
    if (!c->write_blocked)
        return;
    c->write_blocked = false;
    proxy_stream_set_timeout(st,
                             c->in.len ? c->srv->o.header_timeout_ms : c->srv->o.idle_timeout_ms);
    c->started = c->in.len > 0;
    proxy_stream_read_resume(st);
    process(c);
}

static void maybe_finish(proxy_http_server *srv);

static void on_close(proxy_stream *st, void *data)
{
    conn *c = data;
    proxy_http_server *srv = c->srv;
    if (c->ex != NULL)
        c->ex->c = NULL; /* answered later into the void */
    if (c->prev != NULL)
        c->prev->next = c->next;
    else if (srv->conns == c)
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    srv->n_conns--;
    proxy_http_parser_free(c->parser);
    ward_buf_dispose(&c->in);
    if (c->v_bundle != NULL)
        ident_bundle_unref(c->v_bundle);
    free(c->v_id);
    free(c);
    maybe_finish(srv);
}

int proxy_http_respond(proxy_http_exchange *ex, int status, const proxy_header *headers, size_t n,
                       const void *body, size_t len)
{
    int rc = 0;
    conn *c = ex->c;
    if (c == NULL || c->state != C_DISPATCHED || c->ex != ex) {
        exchange_free(ex);
        return 0;
    }
    proxy_http_server *srv = c->srv;
    bool close = ex->close || !ex->req.keep_alive || srv->closing || c->peer_eof;
    bool keep10 = !close && ex->req.version_minor == 0;
    ward_buf out;
    ward_buf_init(&out);
    if (proxy_http_response_head(&out, status, headers, n, len, close, keep10) < 0) {
        rc = WARD_EINVAL;
        close = true;
        ward_buf_reset(&out);
        static const char msg[] = "internal error\n";
        proxy_header h[1] = {{{"Content-Type", 12}, {"text/plain", 10}}};
        proxy_http_response_head(&out, 500, h, 1, sizeof(msg) - 1, true, false);
        body = msg;
        len = sizeof(msg) - 1;
    }
    if (!ex->head && len > 0)
        ward_buf_append(&out, body, len);
    c->ex = NULL;
    OPENSSL_cleanse(c->in.ptr, ex->consumed);
    if (ex->consumed < c->in.len)
        memmove(c->in.ptr, c->in.ptr + ex->consumed, c->in.len - ex->consumed);
    c->in.len -= ex->consumed;
    if (c->in.len == 0)
        ward_buf_dispose(&c->in); /* idle connections hold no buffer */
    exchange_free(ex);
    proxy_http_parser_reset(c->parser);
    c->started = false;
    c->state = C_HEAD;
    proxy_stream_write(c->st, out.ptr, out.len);
    ward_buf_dispose(&out);
    if (close) {
        conn_close_gracefully(c);
        return rc;
    }
    if (proxy_stream_pending(c->st) > WRITE_HIGH) {
        c->write_blocked = true;
        proxy_stream_read_pause(c->st);
        proxy_stream_set_timeout(c->st, srv->o.write_timeout_ms);
    } else {
        proxy_stream_set_timeout(c->st, srv->o.idle_timeout_ms);
        proxy_stream_read_resume(c->st);
    }
    process(c);
    return rc;
}

/* ---- listening ------------------------------------------------------------------------------ */

static void on_connection(uv_stream_t *l, int status)
{
    listener *lst = l->data;
    proxy_http_server *srv = lst->server;
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof(*c));
    proxy_stream_cbs cbs = {on_open, on_read, on_eof, on_timeout, on_drain, on_close};
    if (c == NULL || srv->closing || srv->n_conns >= srv->o.max_connections ||
        proxy_http_parser_new(&srv->o.limits, &c->parser) < 0) {
        /* take it off the backlog and close it */
        proxy_stream *st;
        if (proxy_stream_accept(l, NULL, NULL, NULL, &st) == 0)
            proxy_stream_close(st);
        if (c != NULL)
            proxy_http_parser_free(c->parser);
        free(c);
        return;
    }
    c->srv = srv;
    ward_buf_init(&c->in);
    if (proxy_stream_accept(l, srv->tls, &cbs, c, &c->st) < 0) {
        proxy_http_parser_free(c->parser);
        free(c);
        return;
    }
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    proxy_stream_set_timeout(c->st, srv->o.header_timeout_ms);
}

static void listener_close_cb(uv_handle_t *h)
{
    listener *lst = h->data;
    proxy_http_server *srv = lst->server;
    free(lst);
    srv->lst_handles--;
    maybe_finish(srv);
}

int proxy_http_server_new(uv_loop_t *loop, const proxy_http_server_options *opts,
                          proxy_http_server **out)
{
    if (opts->handler == NULL)
        return WARD_EINVAL;
    proxy_http_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return WARD_ENOMEM;
    s->loop = loop;
    s->o = *opts;
    if (s->o.header_timeout_ms == 0)
        s->o.header_timeout_ms = 10000;
    if (s->o.body_timeout_ms == 0)
        s->o.body_timeout_ms = 10000;
    if (s->o.idle_timeout_ms == 0)
        s->o.idle_timeout_ms = 60000;
    if (s->o.write_timeout_ms == 0)
        s->o.write_timeout_ms = 30000;
    if (s->o.max_connections == 0)
        s->o.max_connections = 4096;
    *out = s;
    return 0;
}

static int listen_common(proxy_http_server *s, listener *lst, const char *where, ward_err *err)
{
    int r = uv_listen(&lst->h.stream, 511, on_connection);
    if (r < 0) {
        ward_err_set(err, "listen on %s: %s", where, uv_strerror(r));
        uv_close(&lst->h.handle, listener_close_cb);
        return WARD_EIO;
    }
    s->lst = lst;
    return 0;
}

int proxy_http_server_listen_tcp(proxy_http_server *s, const char *addr_port, ward_err *err)
{
    struct sockaddr_storage ss;
    int rc = proxy_addr_parse(addr_port, &ss, err);
    if (rc < 0)
        return rc;
    if (s->lst != NULL || s->closing) {
        ward_err_set(err, "the server already listens");
        return WARD_EINVAL;
    }
    listener *lst = calloc(1, sizeof(*lst));
    if (lst == NULL)
        return WARD_ENOMEM;
    lst->server = s;
    uv_tcp_init(s->loop, &lst->h.tcp);
    lst->h.handle.data = lst;
    s->lst_handles++;
    int r = uv_tcp_bind(&lst->h.tcp, (struct sockaddr *)&ss, 0);
    if (r < 0) {
        ward_err_set(err, "bind %s: %s", addr_port, uv_strerror(r));
        uv_close(&lst->h.handle, listener_close_cb);
        return WARD_EIO;
    }
    rc = listen_common(s, lst, addr_port, err);
    if (rc < 0)
        return rc;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    if (uv_tcp_getsockname(&lst->h.tcp, (struct sockaddr *)&bound, &len) == 0)
        s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

int proxy_http_server_listen_unix(proxy_http_server *s, const char *path, ward_err *err)
{
    struct stat st;
    if (s->lst != NULL || s->closing) {
        ward_err_set(err, "the server already listens");
        return WARD_EINVAL;
    }
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            ward_err_set(err, "%s exists and is not a socket", path);
            return WARD_EINVAL;
        }
        unlink(path);
    }
    listener *lst = calloc(1, sizeof(*lst));
    if (lst == NULL)
        return WARD_ENOMEM;
    lst->server = s;
    uv_pipe_init(s->loop, &lst->h.pipe, 0);
    lst->h.handle.data = lst;
    s->lst_handles++;
    mode_t old = umask(0177); /* the socket is never reachable by others, even briefly */
    int r = uv_pipe_bind(&lst->h.pipe, path);
    umask(old);
    if (r < 0 || chmod(path, 0600) < 0) {
        ward_err_set(err, "bind %s: %s", path, r < 0 ? uv_strerror(r) : strerror(errno));
        uv_close(&lst->h.handle, listener_close_cb);
        return WARD_EIO;
    }
    return listen_common(s, lst, path, err);
}

int proxy_http_server_port(const proxy_http_server *s)
{
    return s->port;
}

void proxy_http_server_set_tls(proxy_http_server *s, proxy_tls_ctx *tls)
{
    if (tls != NULL)
        proxy_tls_ctx_ref(tls);
    proxy_tls_ctx_unref(s->tls);
    s->tls = tls;
}

size_t proxy_http_server_connections(const proxy_http_server *s)
{
    return s->n_conns;
}

static void maybe_finish(proxy_http_server *srv)
{
    if (!srv->closing || srv->finished || srv->n_conns > 0)
        return;
    if (srv->lst_handles > 0)
        return; /* the listener's close callback comes back here */
    srv->finished = true;
    proxy_done_cb cb = srv->done_cb;
    void *data = srv->done_data;
    proxy_tls_ctx_unref(srv->tls);
    free(srv);
    if (cb != NULL)
        cb(data);
}

void proxy_http_server_close(proxy_http_server *s, bool force, proxy_done_cb cb, void *data)
{
    if (!s->closing) {
        s->closing = true;
        s->done_cb = cb;
        s->done_data = data;
        if (s->lst != NULL) {
            listener *lst = s->lst;
            s->lst = NULL;
            uv_close(&lst->h.handle, listener_close_cb);
        }
    }
    for (conn *c = s->conns; c != NULL; c = c->next) {
        if (force)
            proxy_stream_close(c->st);
        else if (c->state == C_HEAD && !c->started && !c->write_blocked)
            conn_close_gracefully(c);
    }
    maybe_finish(s);
}
