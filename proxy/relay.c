/* relay.c - the HTTP/1.1 relay: one request at a time from a client connection to an upstream one, streamed */
#include "proxy/proxy_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINGER_MS      2000                /* after an answer that closes */
#define WRITE_HIGH     ((size_t)256 << 10) /* queued bytes before the other side stops reading */
#define READ_AHEAD_MAX ((size_t)64 << 10)  /* pipelined bytes buffered while a request runs */
#define LISTEN_BACKLOG 4096
/* A chunked request's head waits until its first chunk is checked whole, so a
 * malformed body never reaches the upstream (up to this much is held). */
#define HOLD_MAX ((size_t)64 << 10)

typedef struct dconn dconn;
typedef struct uconn uconn;
typedef struct pool_entry pool_entry;

/* ---- structures ---------------------------------------------------------------------- */

struct proxy_relay {
    uv_loop_t *loop;
    proxy_relay_options o;
    uv_tcp_t lst;
    bool listening, lst_closed;
    proxy_tls_ctx *tls;
    dconn *conns;
    size_t n_conns;
    int port;
    bool closing;
    uv_timer_t drain_timer;
    bool finishing;
    proxy_done_cb done_cb;
    void *done_data;
};

enum { D_HEAD, D_REQUEST, D_TUNNEL, D_CLOSING };

struct dconn {
    proxy_relay *rl;
    proxy_stream *st;
    dconn *prev, *next;
    proxy_http_parser *parser;
    proxy_http_response_parser *rparser;
    ward_buf in; /* received from the client, not yet handed on */
    int state;
    bool started;        /* bytes of the next request head have arrived */
    bool peer_eof;       /* the client finished sending */
    bool paused;         /* reading paused by backpressure */
    bool processing;     /* inside process(): no re-entry */
    proxy_relay_request *req;
};

enum { U_CONNECTING, U_BUSY, U_IDLE };

struct uconn {
    proxy_stream *st;
    proxy_relay_pool *pool;
    pool_entry *entry; /* while idle in the pool */
    uconn *prev, *next;
    proxy_relay_request *req; /* while busy */
    int state;
    /* the cluster that counts this connection (circuit breakers), or NULL */
    struct proxy_cluster *cluster;
    size_t endpoint;
    bool pending; /* counted as a request waiting for it to open */
    pool_entry *opening; /* holds one of its key's connect slots until it opens or fails */
};

enum { RS_HEAD, RS_BODY, RS_TUNNEL, RS_DONE };

struct proxy_relay_request {
    dconn *d;
    uconn *u;
    void *data;
    const proxy_http_request *head; /* only during the route callback */
    uint64_t start_ns;
    bool answered;   /* forward or respond was called */
    bool forwarded;
    bool finished;
    /* the request */
    char *path; /* normalized, NUL-terminated */
    size_t path_len;
    char trace_id[33];
    bool trace_kept; /* the client's traceparent is forwarded as it came */
    bool head_method, client_close, upgrade;
    int client_minor;
    proxy_http_body_kind body_kind;
    uint64_t body_left;
    proxy_chunked_decoder chunked;
    bool body_done;
    ward_buf head_out; /* the request head as forwarded (kept for one retry) */
    bool head_sent;    /* else held, with the body's first bytes, until they are checked */
    ward_buf held;
    struct sockaddr_storage addr;
    proxy_tls_ctx *tls;
    char *expected_id;
    bool retried;
    /* waiting for a connection to the key of entry `waiting` (the TLS connect cap) */
    pool_entry *waiting;
    proxy_relay_request *wait_prev, *wait_next;
    uint64_t wait_since, wait_seq;
    uint64_t timeout_ms; /* of each upstream attempt: timeouts.request or the target's */
    struct proxy_cluster *cluster; /* the target's: counts new connections */
    size_t endpoint;
    ward_buf resp_ops;   /* response header operations: "-name\0" or "+name\0value\0" */
    /* the response */
    ward_buf uin; /* response head bytes so far */
    int rstate;
    proxy_http_resp_body rkind;
    uint64_t rleft;
    proxy_chunked_decoder rchunked;
    bool chunk_out;  /* re-encode the response body as chunked for the client */
    bool close_out;  /* the client connection closes after this response */
    bool u_reusable; /* the upstream connection may carry another request */
    proxy_relay_result res;
};

struct pool_entry {
    pool_entry *next;
    proxy_relay_pool *pool;
    uconn *idle;
    size_t n_idle;
    size_t connecting; /* TLS connects in progress */
    proxy_relay_request *wait_first, *wait_last;
    uint64_t wait_seq; /* of the next waiter: waiters are served in this order */
    char key[];        /* "addr|spiffe-id" */
};

struct proxy_relay_pool {
    uv_loop_t *loop;
    uint64_t idle_ms;
    size_t max_idle;
    size_t max_tls_connecting;
    pool_entry *entries;
};

static void process(dconn *d);
static void request_finish(proxy_relay_request *r);
static void response_bytes(proxy_relay_request *r, const char *buf, size_t len);
static void upstream_failed(proxy_relay_request *r, int status, const char *why);
static int upstream_start(proxy_relay_request *r);

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- small helpers --------------------------------------------------------------------- */

static bool slice_eq_nocase(proxy_slice a, proxy_slice b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++) {
        char x = a.ptr[i], y = b.ptr[i];
        if (x >= 'A' && x <= 'Z')
            x = (char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (char)(y + 32);
        if (x != y)
            return false;
    }
    return true;
}

/* Does the comma-separated list `list` hold the token `tok` (case-insensitive)? */
static bool list_has_token(proxy_slice list, proxy_slice tok)
{
    size_t i = 0;
    while (i < list.len) {
        while (i < list.len && (list.ptr[i] == ' ' || list.ptr[i] == '\t' || list.ptr[i] == ','))
            i++;
        size_t b = i;
        while (i < list.len && list.ptr[i] != ',')
            i++;
        size_t e = i;
        while (e > b && (list.ptr[e - 1] == ' ' || list.ptr[e - 1] == '\t'))
            e--;
        if (e > b && slice_eq_nocase((proxy_slice){list.ptr + b, e - b}, tok))
            return true;
    }
    return false;
}

static bool connection_lists(const proxy_header *h, size_t n, proxy_slice name)
{
    for (size_t i = 0; i < n; i++)
        if (proxy_slice_eq_nocase(h[i].name, "connection") && list_has_token(h[i].value, name))
            return true;
    return false;
}

/* Hop-by-hop fields (RFC 9110 7.6.1) and the framing fields the relay writes itself. */
static bool is_hop_field(proxy_slice name)
{
    static const char *const hop[] = {"connection", "keep-alive",        "proxy-connection",
                                      "te",         "trailer",           "transfer-encoding",
                                      "upgrade",    "content-length",    "expect",
                                      "http2-settings"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (proxy_slice_eq_nocase(name, hop[i]))
            return true;
    return false;
}

static void append_field(ward_buf *b, proxy_slice name, proxy_slice value)
{
    ward_buf_append(b, name.ptr, name.len);
    ward_buf_append(b, ": ", 2);
    ward_buf_append(b, value.ptr, value.len);
    ward_buf_append(b, "\r\n", 2);
}

/* A per-thread generator for trace ids: seeded from OpenSSL once, then cheap. */
static void random_hex(char *out, size_t nbytes)
{
    static _Thread_local uint64_t s[2];
    if (s[0] == 0 && s[1] == 0) {
        if (RAND_bytes((unsigned char *)s, sizeof(s)) != 1 || (s[0] == 0 && s[1] == 0)) {
            s[0] = now_ns() | 1;
            s[1] = (uint64_t)(uintptr_t)&s ^ 0x9e3779b97f4a7c15u;
        }
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes; i++) {
        /* xorshift128+ */
        uint64_t x = s[0], y = s[1];
        s[0] = y;
        x ^= x << 23;
        s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
        unsigned v = (unsigned)((s[1] + y) >> 32) & 0xff;
        out[2 * i] = hex[v >> 4];
        out[2 * i + 1] = hex[v & 15];
    }
    out[2 * nbytes] = '\0';
}

static bool is_lower_hex(const char *p, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
        nonzero |= p[i] != '0';
    }
    return nonzero;
}

/* W3C Trace Context: "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>". */
static bool traceparent_valid(proxy_slice v)
{
    return v.len == 55 && v.ptr[0] == '0' && v.ptr[1] == '0' && v.ptr[2] == '-' &&
           is_lower_hex(v.ptr + 3, 32) && v.ptr[35] == '-' && is_lower_hex(v.ptr + 36, 16) &&
           v.ptr[52] == '-' && (is_lower_hex(v.ptr + 53, 2) || (v.ptr[53] == '0' && v.ptr[54] == '0'));
}

/* The client's address without its port: "10.0.0.7", "::1". */
static proxy_slice peer_ip(const proxy_peer *p)
{
    const char *a = p->addr;
    size_t n = strlen(a);
    if (p->is_unix || n == 0)
        return (proxy_slice){NULL, 0};
    if (a[0] == '[') {
        const char *e = strchr(a, ']');
        return e ? (proxy_slice){a + 1, (size_t)(e - a - 1)} : (proxy_slice){NULL, 0};
    }
    const char *c = strrchr(a, ':');
    return (proxy_slice){a, c ? (size_t)(c - a) : n};
}

/* ---- the pool of idle upstream connections ----------------------------------------------- */

static void addr_key(const struct sockaddr *sa, const char *id, char *buf, size_t size)
{
    char a[PROXY_ADDR_STRLEN];
    proxy_addr_format(sa, a, sizeof(a));
    snprintf(buf, size, "%s|%s", a, id ? id : "");
}

static void pool_unlink(uconn *u)
{
    pool_entry *e = u->entry;
    if (e == NULL)
        return;
    if (u->prev)
        u->prev->next = u->next;
    else
        e->idle = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->prev = u->next = NULL;
    u->entry = NULL;
    e->n_idle--;
}

int proxy_relay_pool_new(uv_loop_t *loop, uint64_t idle_ms, size_t max_idle,
                         size_t max_tls_connecting, proxy_relay_pool **out)
{
    proxy_relay_pool *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return WARD_ENOMEM;
    p->loop = loop;
    p->idle_ms = idle_ms ? idle_ms : 30000;
    p->max_idle = max_idle ? max_idle : 128;
    p->max_tls_connecting = max_tls_connecting;
    *out = p;
    return 0;
}

void proxy_relay_pool_free(proxy_relay_pool *p)
{
    if (p == NULL)
        return;
    pool_entry *e = p->entries;
    while (e != NULL) {
        while (e->idle != NULL) {
            uconn *u = e->idle;
            pool_unlink(u);
            u->pool = NULL;
            proxy_stream_close(u->st);
        }
        pool_entry *next = e->next;
        free(e);
        e = next;
    }
    free(p);
}

static pool_entry *pool_find(proxy_relay_pool *p, const char *key, bool create)
{
    for (pool_entry *e = p->entries; e != NULL; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    if (!create)
        return NULL;
    size_t n = strlen(key);
    pool_entry *e = calloc(1, sizeof(*e) + n + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->key, key, n + 1);
    e->pool = p;
    e->next = p->entries;
    p->entries = e;
    return e;
}

/* ---- requests waiting for a TLS connection --------------------------------------------------
 * A burst that finds no idle connection would otherwise open one mTLS connection
 * per request at once; each handshake costs both proxies about 1.7 ms of CPU, so
 * the burst stalls the whole worker. Past max_tls_connecting connects in progress
 * per key, bodiless requests wait in order: for a connection another request
 * frees, or for a connect slot (every connect that opens starts the next one, so
 * a slow upstream's burst still gets one connection per request). A waiter is
 * never stuck behind slow connects: after a connect timeout of waiting it opens
 * its own, and when the last connect fails the waiters fail the same way. */

static void wait_unlink(proxy_relay_request *r)
{
    pool_entry *e = r->waiting;
    if (e == NULL)
        return;
    if (r->wait_prev)
        r->wait_prev->wait_next = r->wait_next;
    else
        e->wait_first = r->wait_next;
    if (r->wait_next)
        r->wait_next->wait_prev = r->wait_prev;
    else
        e->wait_last = r->wait_prev;
    r->wait_prev = r->wait_next = NULL;
    r->waiting = NULL;
    if (r->cluster != NULL)
        proxy_cluster_pending_end(r->cluster);
}

static void wait_enqueue(pool_entry *e, proxy_relay_request *r)
{
    r->waiting = e;
    r->wait_since = uv_now(e->pool->loop);
    r->wait_seq = e->wait_seq++;
    r->wait_prev = e->wait_last;
    r->wait_next = NULL;
    if (e->wait_last)
        e->wait_last->wait_next = r;
    else
        e->wait_first = r;
    e->wait_last = r;
    if (r->cluster != NULL)
        proxy_cluster_pending_start(r->cluster);
}

static void upstream_attach(proxy_relay_request *r, uconn *u);
static int upstream_connect(proxy_relay_request *r, pool_entry *slot);

/* Opens connections for the waiters while slots are free, or for one that waited too long. */
static void wait_kick(pool_entry *e)
{
    proxy_relay_request *r;
    while ((r = e->wait_first) != NULL &&
           (e->connecting < e->pool->max_tls_connecting ||
            uv_now(e->pool->loop) - r->wait_since >= r->d->rl->o.timeouts.upstream_connect_ms)) {
        wait_unlink(r);
        if (upstream_connect(r, e) < 0)
            upstream_failed(r, 503, r->res.error ? r->res.error : "upstream connect failed");
    }
}

/* A connect that held a slot of its key is over. Opened (status 0): the slot goes
 * to the next waiter. Failed: if it was the last connect in progress, every
 * waiter fails as it did (and may be retried elsewhere). */
static void opening_end(uconn *u, int status, const char *why)
{
    pool_entry *e = u->opening;
    if (e == NULL)
        return;
    u->opening = NULL;
    e->connecting--;
    if (status == 0 || e->connecting > 0) {
        wait_kick(e);
        return;
    }
    /* waiters enqueued while these fail (a retry of the same key) are not failed */
    uint64_t end = e->wait_seq;
    proxy_relay_request *r;
    while ((r = e->wait_first) != NULL && r->wait_seq < end) {
        wait_unlink(r);
        upstream_failed(r, status, why);
    }
}

/* Puts a connection that finished a response cleanly back (or hands it to the
 * first waiter); false if it must close. */
static bool pool_put(proxy_relay_pool *p, uconn *u, const struct sockaddr *sa, const char *id)
{
    char key[PROXY_ADDR_STRLEN + 2048];
    addr_key(sa, id, key, sizeof(key));
    pool_entry *e = pool_find(p, key, true);
    if (e != NULL && e->wait_first != NULL) {
        proxy_relay_request *r = e->wait_first;
        wait_unlink(r);
        proxy_stream_read_resume(u->st); /* a slow client may have paused it */
        upstream_attach(r, u);
        return true;
    }
    if (e == NULL || e->n_idle >= p->max_idle)
        return false;
    u->state = U_IDLE;
    u->req = NULL;
    u->entry = e;
    u->prev = NULL;
    u->next = e->idle;
    if (e->idle)
        e->idle->prev = u;
    e->idle = u;
    e->n_idle++;
    proxy_stream_set_timeout(u->st, p->idle_ms);
    proxy_stream_read_resume(u->st);
    return true;
}

/* ---- upstream connections ------------------------------------------------------------------ */

/* The request no longer waits for the connection to open. */
static void u_pending_end(uconn *u)
{
    if (u->pending)
        proxy_cluster_pending_end(u->cluster);
    u->pending = false;
}

static void u_on_open(proxy_stream *st, int status, void *data)
{
    uconn *u = data;
    u_pending_end(u);
    if (status < 0) {
        proxy_relay_request *r = u->req;
        if (r != NULL) {
            const char *why = proxy_stream_error(st);
            /* a TCP failure is 503 (nobody there), a TLS or identity failure 502 */
            int code = strncmp(why, "connect", 7) == 0 ? 503 : 502;
            u->req = NULL;
            r->u = NULL;
            opening_end(u, code, why); /* first: a retry of r may wait for this key again */
            upstream_failed(r, code, why);
        } else {
            opening_end(u, 0, NULL); /* abandoned: the slot is free */
        }
        return;
    }
    u->state = U_BUSY;
    if (u->req != NULL)
        proxy_stream_set_timeout(st, u->req->timeout_ms);
    opening_end(u, 0, NULL);
}

static void u_on_read(proxy_stream *st, const char *buf, size_t len, void *data)
{
    uconn *u = data;
    if (u->req == NULL) { /* an idle connection has nothing to say */
        pool_unlink(u);
        proxy_stream_close(st);
        return;
    }
    /* a response head and its body go out to the client together */
    proxy_stream *client = u->req->d->st;
    proxy_stream_cork(client);
    response_bytes(u->req, buf, len);
    proxy_stream_uncork(client);
}

static void u_detach_and_close(uconn *u)
{
    if (u == NULL)
        return;
    if (u->req != NULL)
        u->req->u = NULL;
    u->req = NULL;
    pool_unlink(u);
    opening_end(u, 0, NULL); /* given up, not failed: the waiters take its slot */
    proxy_stream_close(u->st);
}

static void u_on_eof(proxy_stream *st, int status, void *data)
{
    uconn *u = data;
    proxy_relay_request *r = u->req;
    if (r == NULL) {
        pool_unlink(u);
        proxy_stream_close(st);
        return;
    }
    if (r->rstate == RS_BODY && r->rkind == PROXY_RESP_BODY_CLOSE && status == 0) {
        r->u_reusable = false;
        r->rstate = RS_DONE;
        if (r->chunk_out)
            proxy_stream_write(r->d->st, "0\r\n\r\n", 5);
        u_detach_and_close(u);
        request_finish(r);
        return;
    }
    if (r->rstate == RS_TUNNEL) {
        u_detach_and_close(u);
        proxy_stream_shutdown(r->d->st, LINGER_MS);
        return;
    }
    u_detach_and_close(u);
    upstream_failed(r, 502, status == 0 ? "upstream closed the connection"
                                        : "upstream connection reset");
}

static void u_on_timeout(proxy_stream *st, void *data)
{
    uconn *u = data;
    proxy_relay_request *r = u->req;
    if (r == NULL) { /* idle too long in the pool */
        pool_unlink(u);
        proxy_stream_close(st);
        return;
    }
    int state = u->state;
    if (state == U_CONNECTING)
        opening_end(u, 503, "upstream connect timeout");
    u_detach_and_close(u);
    if (state == U_CONNECTING)
        upstream_failed(r, 503, "upstream connect timeout");
    else
        upstream_failed(r, 504, "upstream request timeout");
}

static void u_on_drain(proxy_stream *st, void *data)
{
    uconn *u = data;
    proxy_relay_request *r = u->req;
    if (r != NULL && r->d->paused && r->d->state != D_CLOSING) {
        r->d->paused = false;
        proxy_stream_read_resume(r->d->st);
        process(r->d);
    }
}

static void u_on_close(proxy_stream *st, void *data)
{
    uconn *u = data;
    proxy_relay_request *r = u->req;
    pool_unlink(u);
    opening_end(u, 502, "upstream connection closed");
    if (u->cluster != NULL) {
        u_pending_end(u);
        proxy_cluster_connection_end(u->cluster, u->endpoint);
    }
    free(u);
    if (r != NULL) {
        r->u = NULL;
        if (r->rstate != RS_DONE)
            upstream_failed(r, 502, "upstream connection closed");
    }
}

static const proxy_stream_cbs u_cbs = {u_on_open, u_on_read, u_on_eof, u_on_timeout, u_on_drain,
                                       u_on_close};

/* ---- answering ----------------------------------------------------------------------------- */

static void d_close_gracefully(dconn *d)
{
    d->state = D_CLOSING;
    proxy_stream_shutdown(d->st, LINGER_MS);
}

/* Sends a response made by the proxy (a denial or an error). */
static int write_local(dconn *d, proxy_relay_request *r, int status, const proxy_header *h,
                       size_t n, const void *body, size_t len, bool close)
{
    ward_buf out;
    ward_buf_init(&out);
    bool keep10 = !close && r != NULL && r->client_minor == 0;
    int rc = proxy_http_response_head(&out, status, h, n, len, close, keep10);
    if (rc < 0) {
        static const char msg[] = "internal error\n";
        proxy_header ct[1] = {{{"Content-Type", 12}, {"text/plain", 10}}};
        ward_buf_reset(&out);
        proxy_http_response_head(&out, 500, ct, 1, sizeof(msg) - 1, true, false);
        body = msg;
        len = sizeof(msg) - 1;
        status = 500;
    }
    if (!(r != NULL && r->head_method) && len > 0)
        ward_buf_append(&out, body, len);
    proxy_stream_write(d->st, out.ptr, out.len);
    ward_buf_dispose(&out);
    if (r != NULL)
        r->res.status = status;
    return rc;
}

/* A protocol error before any request could be routed: answer and close. */
static void fail_head(dconn *d, int status, const char *reason)
{
    if (!proxy_stream_handshake_done(d->st)) {
        d->state = D_CLOSING;
        proxy_stream_close(d->st);
        return;
    }
    char body[256];
    int n = snprintf(body, sizeof(body), "%s\n", reason);
    proxy_header h[1] = {{{"Content-Type", 12}, {"text/plain", 10}}};
    write_local(d, NULL, status, h, 1, body, (size_t)n, true);
    if (d->rl->o.on_reject != NULL)
        d->rl->o.on_reject(proxy_stream_peer(d->st), status, reason, d->rl->o.data);
    d_close_gracefully(d);
}

/* Another attempt is possible: nothing went to the client, no body must be resent. */
static bool may_retry(const proxy_relay_request *r)
{
    return r->d->rl->o.retry != NULL && r->rstate == RS_HEAD && r->forwarded &&
           r->body_kind == PROXY_BODY_NONE && !r->finished;
}

/* The upstream side failed: answer the client if nothing was sent yet, else cut it. */
static void upstream_failed(proxy_relay_request *r, int status, const char *why)
{
    if (r->finished || r->rstate == RS_DONE)
        return;
    dconn *d = r->d;
    /* a stale pooled connection: try once more on a fresh one if nothing can be lost */
    if (status == 502 && r->rstate == RS_HEAD && r->uin.len == 0 && !r->retried &&
        r->body_kind == PROXY_BODY_NONE && r->res.upstream_reused) {
        r->retried = true;
        r->res.upstream_reused = false;
        if (upstream_start(r) == 0)
            return;
    }
    if (may_retry(r) && d->rl->o.retry(r, status, false, why, d->rl->o.data))
        return; /* retargeted: the next attempt is on its way */
    r->res.error = why;
    r->u_reusable = false;
    if (r->u != NULL)
        u_detach_and_close(r->u);
    if (r->rstate == RS_HEAD) {
        char body[96];
        int n = snprintf(body, sizeof(body), "%s\n", proxy_http_reason(status));
        proxy_header h[2] = {{{"Content-Type", 12}, {"text/plain", 10}},
                             {{"X-Ward-Reason", 13}, {why, strlen(why)}}};
        /* the reason header is dropped if it could split the response */
        size_t nh = 2;
        for (const char *p = why; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                nh = 1;
        r->close_out = true; /* the request body may be half sent */
        write_local(d, r, status, h, nh, body, (size_t)n, true);
        r->res.local = true;
        r->rstate = RS_DONE;
        request_finish(r);
    } else {
        /* mid-response: the client must see a cut, never a well-formed short answer */
        r->rstate = RS_DONE;
        r->close_out = true;
        d->state = D_CLOSING;
        proxy_stream_close(d->st);
    }
}

/* ---- the request ---------------------------------------------------------------------------- */

static void request_free(proxy_relay_request *r)
{
    wait_unlink(r);
    ward_buf_dispose(&r->head_out);
    ward_buf_dispose(&r->held);
    ward_buf_dispose(&r->uin);
    ward_buf_dispose(&r->resp_ops);
    if (r->tls)
        proxy_tls_ctx_unref(r->tls);
    free(r->expected_id);
    free(r->path);
    free(r);
}

/* The response is complete (or the request was answered locally): report, then
 * go on with the connection's next request. */
static void request_finish(proxy_relay_request *r)
{
    if (r->finished)
        return;
    r->finished = true;
    dconn *d = r->d;
    proxy_relay *rl = d->rl;
    uconn *u = r->u;
    if (u != NULL) {
        u->req = NULL;
        r->u = NULL;
        if (!(r->u_reusable && r->body_done && r->forwarded && u->pool != NULL &&
              pool_put(u->pool, u, (struct sockaddr *)&r->addr, r->expected_id)))
            proxy_stream_close(u->st);
    }
    r->res.duration_ns = now_ns() - r->start_ns;
    if (rl->o.done != NULL)
        rl->o.done(r, &r->res, rl->o.data);
    bool close = r->close_out || !r->body_done;
    d->req = NULL;
    request_free(r);
    if (d->state == D_CLOSING)
        return;
    if (close || rl->closing) {
        d_close_gracefully(d);
        return;
    }
    d->state = D_HEAD;
    d->started = false;
    proxy_http_parser_reset(d->parser);
    if (d->in.len == 0)
        ward_buf_dispose(&d->in); /* idle connections hold no buffer */
    proxy_stream_set_timeout(d->st, rl->o.timeouts.idle_ms);
    if (d->paused) {
        d->paused = false;
        proxy_stream_read_resume(d->st);
    }
    process(d);
}

/* Bytes for the upstream: sent, or held while the head is. */
static void up_write(proxy_relay_request *r, const void *p, size_t n)
{
    if (!r->head_sent)
        ward_buf_append(&r->held, p, n);
    else if (r->u != NULL)
        proxy_stream_write(r->u->st, p, n);
}

/* Sends the held head and body bytes. */
static void up_release(proxy_relay_request *r)
{
    r->head_sent = true;
    if (r->u != NULL) {
        proxy_stream_write(r->u->st, r->head_out.ptr, r->head_out.len);
        if (r->held.len > 0)
            proxy_stream_write(r->u->st, r->held.ptr, r->held.len);
    }
    ward_buf_dispose(&r->held);
}

/* Moves request body bytes from the client buffer to the upstream connection. */
static void pump_body(dconn *d)
{
    proxy_relay_request *r = d->req;
    size_t used = 0;
    while (!r->body_done && used < d->in.len) {
        const char *p = d->in.ptr + used;
        size_t avail = d->in.len - used;
        if (r->body_kind == PROXY_BODY_LENGTH) {
            size_t n = avail < r->body_left ? avail : (size_t)r->body_left;
            if (r->u != NULL) {
                proxy_stream_write(r->u->st, p, n);
                proxy_stream_set_timeout(r->u->st, r->timeout_ms);
            }
            r->body_left -= n;
            r->res.bytes_in += n;
            used += n;
            r->body_done = r->body_left == 0;
        } else {
            size_t consumed;
            proxy_slice data;
            proxy_http_error err;
            int rc = proxy_chunked_decode(&r->chunked, p, avail, &consumed, &data, &err);
            used += consumed;
            if (rc < 0) {
                /* a malformed body: the upstream sees a cut request, the client a 400 */
                if (r->u != NULL)
                    u_detach_and_close(r->u);
                if (r->rstate == RS_HEAD) {
                    proxy_header h[1] = {{{"Content-Type", 12}, {"text/plain", 10}}};
                    char body[160];
                    int n = snprintf(body, sizeof(body), "%s\n", err.reason);
                    write_local(d, r, err.status, h, 1, body, (size_t)n, true);
                    r->res.local = true;
                    r->res.error = err.reason;
                    r->rstate = RS_DONE;
                    r->close_out = true;
                    request_finish(r);
                } else {
                    d->state = D_CLOSING;
                    proxy_stream_close(d->st);
                }
                return;
            }
            if (rc == PROXY_CHUNKED_DATA) {
                char line[PROXY_CHUNK_SIZE_LINE_MAX];
                size_t ln = proxy_chunked_size_line(line, data.len);
                up_write(r, line, ln);
                up_write(r, data.ptr, data.len);
                up_write(r, "\r\n", 2);
                r->res.bytes_in += data.len;
            } else if (rc == PROXY_CHUNKED_DONE) {
                up_write(r, "0\r\n\r\n", 5);
                r->body_done = true;
            }
            /* the first chunk checked whole (or enough of it held): let it all go */
            if (!r->head_sent && (r->body_done || proxy_chunked_chunks(&r->chunked) > 0 ||
                                  r->held.len >= HOLD_MAX))
                up_release(r);
        }
    }
    if (used > 0) {
        memmove(d->in.ptr, d->in.ptr + used, d->in.len - used);
        d->in.len -= used;
    }
    /* a client may pause inside its body at most timeouts.request */
    if (used > 0 || r->body_done)
        proxy_stream_set_timeout(d->st, r->body_done ? 0 : d->rl->o.timeouts.request_ms);
    /* backpressure: stop reading the client while the upstream is behind, or
     * while pipelined requests pile up */
    bool behind = r->u != NULL && proxy_stream_pending(r->u->st) > WRITE_HIGH;
    if ((behind || (r->body_done && d->in.len >= READ_AHEAD_MAX)) && !d->paused) {
        d->paused = true;
        proxy_stream_read_pause(d->st);
    }
}

/* Builds the request head as forwarded: origin-form, normalized path, no
 * hop-by-hop fields, our own framing, X-Forwarded-For and traceparent. */
static bool named(const char *const *names, size_t n, proxy_slice name)
{
    for (size_t i = 0; i < n; i++)
        if (proxy_slice_eq_nocase(name, names[i]))
            return true;
    return false;
}

static int build_head(proxy_relay_request *r, const proxy_http_request *h,
                      const proxy_relay_target *t)
{
    ward_buf *b = &r->head_out;
    ward_buf_reset(b);
    ward_buf_append(b, h->method.ptr, h->method.len);
    ward_buf_putc(b, ' ');
    if (t->path != NULL)
        ward_buf_puts(b, t->path);
    else
        ward_buf_append(b, r->path, r->path_len);
    if (h->query.ptr != NULL) {
        ward_buf_putc(b, '?');
        ward_buf_append(b, h->query.ptr, h->query.len);
    }
    ward_buf_puts(b, " HTTP/1.1\r\n");
    proxy_slice xff = {NULL, 0};
    bool have_tp = false;
    for (size_t i = 0; i < h->n_headers; i++) {
        proxy_slice name = h->headers[i].name, value = h->headers[i].value;
        if (is_hop_field(name) || connection_lists(h->headers, h->n_headers, name))
            continue;
        if (proxy_slice_eq_nocase(name, "x-forwarded-client-cert"))
            continue; /* only we may say who the client is */
        if (named(t->remove_headers, t->n_remove_headers, name))
            continue;
        if (proxy_slice_eq_nocase(name, "x-forwarded-for")) {
            if (xff.ptr == NULL)
                xff = value;
            continue;
        }
        if (proxy_slice_eq_nocase(name, "traceparent")) {
            /* the client's if it was valid (start_request took its trace id), else ours */
            if (have_tp || !r->trace_kept || !traceparent_valid(value))
                continue;
            have_tp = true;
        }
        append_field(b, name, value);
    }
    for (size_t i = 0; i < t->n_add_headers; i++)
        append_field(b, t->add_headers[i].name, t->add_headers[i].value);
    proxy_slice ip = peer_ip(proxy_stream_peer(r->d->st));
    if (ip.ptr != NULL) {
        ward_buf_puts(b, "X-Forwarded-For: ");
        if (xff.ptr != NULL && xff.len > 0) {
            ward_buf_append(b, xff.ptr, xff.len);
            ward_buf_puts(b, ", ");
        }
        ward_buf_append(b, ip.ptr, ip.len);
        ward_buf_puts(b, "\r\n");
    }
    if (!have_tp) {
        char span[17];
        random_hex(span, 8);
        ward_buf_printf(b, "traceparent: 00-%s-%s-01\r\n", r->trace_id, span);
    }
    if (r->upgrade) {
        proxy_slice up = proxy_http_header_get(h, "upgrade");
        ward_buf_puts(b, "Connection: upgrade\r\nUpgrade: ");
        ward_buf_append(b, up.ptr, up.len);
        ward_buf_puts(b, "\r\n");
    }
    if (h->body_kind == PROXY_BODY_LENGTH)
        ward_buf_printf(b, "Content-Length: %llu\r\n", (unsigned long long)h->content_length);
    else if (h->body_kind == PROXY_BODY_CHUNKED)
        ward_buf_puts(b, "Transfer-Encoding: chunked\r\n");
    return ward_buf_puts(b, "\r\n");
}

/* Sends the head (and what body is buffered); a chunked body's first chunk is
 * checked before anything goes out. */
static void upstream_send_head(proxy_relay_request *r)
{
    if (r->body_kind != PROXY_BODY_CHUNKED || r->head_sent) {
        r->head_sent = true;
        proxy_stream_write(r->u->st, r->head_out.ptr, r->head_out.len);
    }
}

/* The request goes out on an open connection (idle in the pool, or just freed). */
static void upstream_attach(proxy_relay_request *r, uconn *u)
{
    r->res.upstream_reused = true;
    u->state = U_BUSY;
    u->req = r;
    r->u = u;
    proxy_stream_set_timeout(u->st, r->timeout_ms);
    upstream_send_head(r);
}

/* The cluster's circuit breakers (max_connections, max_pending) admit one more
 * request needing a connection; else WARD_ELIMIT with the reason in res.error. */
static int connect_admit(proxy_relay_request *r)
{
    const char *why;
    if (r->cluster != NULL && !proxy_cluster_connect_admit(r->cluster, &why)) {
        r->res.error = why;
        return WARD_ELIMIT;
    }
    return 0;
}

/* Opens a connection for the request; slot: the key whose connect slot it holds, or NULL. */
static int upstream_connect(proxy_relay_request *r, pool_entry *slot)
{
    proxy_relay *rl = r->d->rl;
    int rc = connect_admit(r);
    if (rc < 0)
        return rc;
    uconn *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return WARD_ENOMEM;
    u->pool = rl->o.pool;
    u->state = U_CONNECTING;
    u->req = r;
    rc = proxy_stream_connect(rl->loop, (struct sockaddr *)&r->addr, r->tls, r->expected_id, &u_cbs,
                              u, &u->st);
    if (rc < 0) {
        free(u);
        return rc;
    }
    if (r->cluster != NULL) {
        u->cluster = r->cluster;
        u->endpoint = r->endpoint;
        u->pending = true;
        proxy_cluster_connection_start(u->cluster, u->endpoint);
        proxy_cluster_pending_start(u->cluster);
    }
    if (slot != NULL) {
        slot->connecting++;
        u->opening = slot;
    }
    r->u = u;
    proxy_stream_set_timeout(u->st, rl->o.timeouts.upstream_connect_ms);
    upstream_send_head(r);
    return 0;
}

/* Takes a pooled connection, waits for one (TLS, past the connect cap) or opens one. */
static int upstream_start(proxy_relay_request *r)
{
    proxy_relay_pool *p = r->d->rl->o.pool;
    if (p == NULL || r->retried) /* a retry after a stale pooled connection: a fresh one */
        return upstream_connect(r, NULL);
    bool capped = p->max_tls_connecting > 0 && r->tls != NULL && r->body_kind == PROXY_BODY_NONE;
    char key[PROXY_ADDR_STRLEN + 2048];
    addr_key((struct sockaddr *)&r->addr, r->expected_id, key, sizeof(key));
    pool_entry *e = pool_find(p, key, capped);
    if (e != NULL && e->idle != NULL) {
        uconn *u = e->idle;
        pool_unlink(u);
        upstream_attach(r, u);
        return 0;
    }
    if (!capped || e == NULL) /* without an entry (no memory) it is not capped */
        return upstream_connect(r, NULL);
    if (e->connecting < p->max_tls_connecting)
        return upstream_connect(r, e);
    int rc = connect_admit(r);
    if (rc < 0)
        return rc;
    wait_enqueue(e, r);
    return 0;
}

/* ---- mirror copies: sent, their answers read and dropped, then closed ---- */

static _Thread_local unsigned mirrors_in_flight;

static void mirror_opened(proxy_stream *s, int status, void *data)
{
    (void)data;
    if (status < 0)
        proxy_stream_close(s);
}

static void mirror_read(proxy_stream *s, const char *buf, size_t len, void *data)
{
    (void)s, (void)buf, (void)len, (void)data;
}

static void mirror_end(proxy_stream *s, int status, void *data)
{
    (void)status, (void)data;
    proxy_stream_close(s);
}

static void mirror_timeout(proxy_stream *s, void *data)
{
    (void)data;
    proxy_stream_close(s);
}

static void mirror_closed(proxy_stream *s, void *data)
{
    (void)s, (void)data;
    mirrors_in_flight--;
}

/* The forwarded head with Host replaced: the copy's. */
static int mirror_send(proxy_relay_request *r, const proxy_relay_target *t)
{
    static const proxy_stream_cbs cbs = {.on_open = mirror_opened,
                                         .on_read = mirror_read,
                                         .on_eof = mirror_end,
                                         .on_timeout = mirror_timeout,
                                         .on_close = mirror_closed};
    if (mirrors_in_flight >= PROXY_RELAY_MIRRORS_MAX)
        return WARD_ELIMIT;
    ward_buf copy;
    ward_buf_init(&copy);
    const char *p = r->head_out.ptr, *end = p + r->head_out.len;
    bool first = true;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol != NULL ? eol + 1 : end;
        if (next - p <= 2) /* the empty line */
            break;
        if (first || !(next - p > 5 && strncasecmp(p, "host:", 5) == 0))
            ward_buf_append(&copy, p, (size_t)(next - p));
        first = false;
        p = next;
    }
    ward_buf_printf(&copy, "Host: %s\r\nX-Ward-Mirror: 1\r\nConnection: close\r\n\r\n",
                    t->mirror_host);
    proxy_stream *st = NULL;
    int rc = copy.ptr == NULL ? WARD_ENOMEM
                              : proxy_stream_connect(r->d->rl->loop, t->mirror_addr, t->tls,
                                                     t->mirror_expected_id, &cbs, NULL, &st);
    if (rc == 0) {
        mirrors_in_flight++;
        proxy_stream_set_timeout(st, PROXY_RELAY_MIRROR_TIMEOUT_MS);
        if (proxy_stream_write(st, copy.ptr, copy.len) < 0)
            proxy_stream_close(st);
    }
    ward_buf_dispose(&copy);
    return rc;
}

int proxy_relay_forward(proxy_relay_request *r, const proxy_relay_target *t)
{
    if (r->answered || r->head == NULL)
        return WARD_EINVAL;
    if (t->addr == NULL || (t->expected_id != NULL && t->tls == NULL))
        return WARD_EINVAL;
    socklen_t alen = t->addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                    : sizeof(struct sockaddr_in);
    memcpy(&r->addr, t->addr, alen);
    if (t->tls != NULL) {
        proxy_tls_ctx_ref(t->tls);
        r->tls = t->tls;
    }
    if (t->expected_id != NULL && (r->expected_id = strdup(t->expected_id)) == NULL)
        return WARD_ENOMEM;
    if (build_head(r, r->head, t) < 0)
        return WARD_ENOMEM;
    r->cluster = t->cluster;
    r->endpoint = t->endpoint;
    bool bodyless = r->head->body_kind == PROXY_BODY_NONE ||
                    (r->head->body_kind == PROXY_BODY_LENGTH && r->head->content_length == 0);
    if (t->mirror_addr != NULL && t->mirror_host != NULL && bodyless && !r->upgrade &&
        (t->mirror_expected_id == NULL || t->tls != NULL))
        r->res.mirrored = mirror_send(r, t) == 0;
    r->timeout_ms = t->timeout_ms ? t->timeout_ms : r->d->rl->o.timeouts.request_ms;
    for (size_t i = 0; i < t->n_response_remove; i++) {
        ward_buf_putc(&r->resp_ops, '-');
        ward_buf_append(&r->resp_ops, t->response_remove[i], strlen(t->response_remove[i]) + 1);
    }
    for (size_t i = 0; i < t->n_response_add; i++) {
        ward_buf_putc(&r->resp_ops, '+');
        ward_buf_append(&r->resp_ops, t->response_add[i].name.ptr, t->response_add[i].name.len);
        ward_buf_putc(&r->resp_ops, '\0');
        ward_buf_append(&r->resp_ops, t->response_add[i].value.ptr, t->response_add[i].value.len);
        ward_buf_putc(&r->resp_ops, '\0');
    }
    r->answered = true;
    r->forwarded = true;
    int rc = upstream_start(r);
    if (rc < 0) { /* answered here: the caller has nothing left to do */
        r->forwarded = false;
        if (rc != WARD_ELIMIT)
            r->res.error = "upstream connect failed";
        r->close_out = !r->body_done || r->client_close;
        proxy_header h[2] = {{{"Content-Type", 12}, {"text/plain", 10}},
                             {{"X-Ward-Reason", 13}, {r->res.error, strlen(r->res.error)}}};
        write_local(r->d, r, 503, h, rc == WARD_ELIMIT ? 2 : 1, "Service Unavailable\n", 20,
                    r->close_out);
        r->res.local = true;
    }
    return rc;
}

int proxy_relay_retarget(proxy_relay_request *r, const proxy_relay_target *t)
{
    if (!may_retry(r) || t->addr == NULL || (t->expected_id != NULL && t->tls == NULL))
        return WARD_EINVAL;
    if (r->u != NULL)
        u_detach_and_close(r->u); /* whatever it was saying is dropped */
    ward_buf_reset(&r->uin);
    proxy_http_response_parser_reset(r->d->rparser);
    socklen_t alen = t->addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                    : sizeof(struct sockaddr_in);
    memcpy(&r->addr, t->addr, alen);
    if (t->tls != NULL)
        proxy_tls_ctx_ref(t->tls);
    if (r->tls != NULL)
        proxy_tls_ctx_unref(r->tls);
    r->tls = t->tls;
    free(r->expected_id);
    r->expected_id = NULL;
    if (t->expected_id != NULL && (r->expected_id = strdup(t->expected_id)) == NULL)
        return WARD_ENOMEM;
    if (t->timeout_ms)
        r->timeout_ms = t->timeout_ms;
    r->cluster = t->cluster;
    r->endpoint = t->endpoint;
    r->res.upstream_reused = false;
    r->res.attempts++;
    return upstream_start(r);
}

int proxy_relay_respond(proxy_relay_request *r, int status, const proxy_header *headers, size_t n,
                        const void *body, size_t len)
{
    if (r->answered)
        return WARD_EINVAL;
    r->answered = true;
    r->res.local = true;
    /* the body was not read: the connection cannot carry another request */
    if (!r->body_done || r->client_close || r->d->rl->closing)
        r->close_out = true;
    return write_local(r->d, r, status, headers, n, body, len, r->close_out);
}

const proxy_http_request *proxy_relay_request_head(const proxy_relay_request *r)
{
    return r->head;
}

const char *proxy_relay_request_path(const proxy_relay_request *r, size_t *len)
{
    if (len)
        *len = r->path_len;
    return r->path;
}

const proxy_peer *proxy_relay_request_peer(const proxy_relay_request *r)
{
    return proxy_stream_peer(r->d->st);
}

const char *proxy_relay_request_trace_id(const proxy_relay_request *r)
{
    return r->trace_id;
}

void proxy_relay_request_set_data(proxy_relay_request *r, void *data)
{
    r->data = data;
}

void *proxy_relay_request_data(const proxy_relay_request *r)
{
    return r->data;
}

/* A complete head: check what the parser leaves to us, route, then stream. */
static void start_request(dconn *d, const proxy_http_request *h)
{
    proxy_relay *rl = d->rl;
    if (h->target_form == PROXY_TARGET_AUTHORITY) {
        fail_head(d, 405, "CONNECT is not supported");
        return;
    }
    if (h->target_form == PROXY_TARGET_ABSOLUTE &&
        !slice_eq_nocase(h->authority, h->host)) {
        fail_head(d, 400, "absolute-form target does not match Host");
        return;
    }
    proxy_relay_request *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        fail_head(d, 503, "out of memory");
        return;
    }
    r->d = d;
    r->start_ns = now_ns();
    ward_buf_init(&r->head_out);
    ward_buf_init(&r->uin);
    ward_buf_init(&r->resp_ops);
    r->timeout_ms = rl->o.timeouts.request_ms;
    /* the path as matched and forwarded */
    proxy_http_error perr;
    size_t cap = h->path.len + 2;
    if (h->target_form == PROXY_TARGET_ASTERISK) {
        r->path = strdup("*");
        r->path_len = 1;
    } else if (h->path.len == 0) { /* "http://host" */
        r->path = strdup("/");
        r->path_len = 1;
    } else if ((r->path = malloc(cap)) != NULL &&
               proxy_http_path_normalize(h->path.ptr, h->path.len, r->path, cap, &r->path_len,
                                         NULL, &perr) < 0) {
        request_free(r);
        fail_head(d, perr.status, perr.reason);
        return;
    }
    if (r->path == NULL) {
        request_free(r);
        fail_head(d, 503, "out of memory");
        return;
    }
    r->head_method = proxy_slice_eq_nocase(h->method, "HEAD");
    r->client_minor = h->version_minor;
    r->client_close = !h->keep_alive;
    r->body_kind = h->body_kind;
    r->body_left = h->body_kind == PROXY_BODY_LENGTH ? h->content_length : 0;
    r->body_done = h->body_kind == PROXY_BODY_NONE ||
                   (h->body_kind == PROXY_BODY_LENGTH && h->content_length == 0);
    proxy_chunked_limits cl = {.body_max = rl->o.limits.body_max};
    proxy_chunked_init(&r->chunked, &cl);
    proxy_chunked_init(&r->rchunked, &(proxy_chunked_limits){.body_max = UINT64_MAX});
    /* WebSocket and friends: a GET without a body asking to switch protocols */
    proxy_slice up = proxy_http_header_get(h, "upgrade");
    r->upgrade = up.ptr != NULL && h->version_minor == 1 && r->body_done &&
                 proxy_slice_eq_nocase(h->method, "GET") &&
                 connection_lists(h->headers, h->n_headers, (proxy_slice){"upgrade", 7});
    /* the trace this request belongs to: the client's, or a new one */
    proxy_slice tp = proxy_http_header_get(h, "traceparent");
    if (tp.ptr != NULL && traceparent_valid(tp)) {
        memcpy(r->trace_id, tp.ptr + 3, 32);
        r->trace_id[32] = '\0';
        r->trace_kept = true;
    } else {
        random_hex(r->trace_id, 16);
    }
    d->req = r;
    d->state = D_REQUEST;
    proxy_stream_set_timeout(d->st, 0);
    r->head = h;
    rl->o.route(r, rl->o.data);
    r->head = NULL;
    if (!r->answered) { /* the coordinator neither forwarded nor answered: fail closed */
        proxy_header ct[1] = {{{"Content-Type", 12}, {"text/plain", 10}}};
        r->res.error = "request could not be routed";
        proxy_relay_respond(r, 503, ct, 1, "service unavailable\n", 20);
    }
    /* the head's bytes are no longer needed */
    size_t hl = h->head_len;
    memmove(d->in.ptr, d->in.ptr + hl, d->in.len - hl);
    d->in.len -= hl;
    proxy_http_parser_reset(d->parser);
    if (!r->forwarded) {
        request_finish(r);
        return;
    }
    if (h->expect_continue && !r->body_done)
        proxy_stream_write(d->st, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (!r->body_done)
        proxy_stream_set_timeout(d->st, rl->o.timeouts.request_ms);
}

/* ---- the response ---------------------------------------------------------------------------- */

/* Does a route remove this response field? */
static bool resp_op_removes(const proxy_relay_request *r, proxy_slice name)
{
    for (size_t off = 0; off < r->resp_ops.len;) {
        const char *e = r->resp_ops.ptr + off;
        size_t nl = strlen(e + 1);
        if (e[0] == '-' && proxy_slice_eq_nocase(name, e + 1))
            return true;
        off += 1 + nl + 1;
        if (e[0] == '+')
            off += strlen(r->resp_ops.ptr + off) + 1;
    }
    return false;
}

/* Writes the response head for the client from the upstream's. */
static void write_response_head(proxy_relay_request *r, const proxy_http_response *resp)
{
    dconn *d = r->d;
    ward_buf b;
    ward_buf_init(&b);
    int status = resp->status;
    const char *reason = resp->reason.len ? NULL : proxy_http_reason(status);
    ward_buf_printf(&b, "HTTP/1.1 %d ", status);
    if (reason)
        ward_buf_puts(&b, reason);
    else
        ward_buf_append(&b, resp->reason.ptr, resp->reason.len);
    ward_buf_puts(&b, "\r\n");
    for (size_t i = 0; i < resp->n_headers; i++) {
        proxy_slice name = resp->headers[i].name;
        if (is_hop_field(name) || connection_lists(resp->headers, resp->n_headers, name) ||
            resp_op_removes(r, name))
            continue;
        append_field(&b, name, resp->headers[i].value);
    }
    /* a route's additions ("-" entries are removals, done above) */
    for (size_t off = 0; off < r->resp_ops.len;) {
        const char *e = r->resp_ops.ptr + off;
        size_t nl = strlen(e + 1);
        if (e[0] == '+') {
            const char *v = e + 1 + nl + 1;
            append_field(&b, (proxy_slice){e + 1, nl}, (proxy_slice){v, strlen(v)});
            off += 1 + nl + 1 + strlen(v) + 1;
        } else {
            off += 1 + nl + 1;
        }
    }
    bool closing = r->close_out || r->client_close || d->rl->closing || !r->body_done;
    switch (resp->body) {
    case PROXY_RESP_BODY_NONE:
        /* HEAD and 304 keep the length of what a GET would send */
        if ((r->head_method || status == 304) && resp->content_length > 0)
            ward_buf_printf(&b, "Content-Length: %llu\r\n",
                            (unsigned long long)resp->content_length);
        else if (status >= 200 && status != 204 && status != 304 && !r->head_method)
            ward_buf_puts(&b, "Content-Length: 0\r\n");
        break;
    case PROXY_RESP_BODY_LENGTH:
        ward_buf_printf(&b, "Content-Length: %llu\r\n", (unsigned long long)resp->content_length);
        break;
    case PROXY_RESP_BODY_CHUNKED:
    case PROXY_RESP_BODY_CLOSE:
        if (r->client_minor == 1) {
            r->chunk_out = true;
            ward_buf_puts(&b, "Transfer-Encoding: chunked\r\n");
        } else {
            closing = true; /* HTTP/1.0: the end of the body is the end of the connection */
        }
        break;
    }
    if (status == 101) {
        for (size_t i = 0; i < resp->n_headers; i++)
            if (proxy_slice_eq_nocase(resp->headers[i].name, "upgrade"))
                append_field(&b, resp->headers[i].name, resp->headers[i].value);
        ward_buf_puts(&b, "Connection: upgrade\r\n");
    } else if (closing) {
        r->close_out = true;
        ward_buf_puts(&b, "Connection: close\r\n");
    } else if (r->client_minor == 0) {
        ward_buf_puts(&b, "Connection: keep-alive\r\n");
    }
    ward_buf_puts(&b, "\r\n");
    proxy_stream_write(d->st, b.ptr, b.len);
    ward_buf_dispose(&b);
}

static void response_body(proxy_relay_request *r, const char *buf, size_t len)
{
    dconn *d = r->d;
    while (len > 0 && r->rstate == RS_BODY) {
        if (r->rkind == PROXY_RESP_BODY_LENGTH || r->rkind == PROXY_RESP_BODY_CLOSE) {
            size_t n = len;
            if (r->rkind == PROXY_RESP_BODY_LENGTH && n > r->rleft)
                n = (size_t)r->rleft;
            if (r->chunk_out) {
                char line[PROXY_CHUNK_SIZE_LINE_MAX];
                size_t ln = proxy_chunked_size_line(line, n);
                proxy_stream_write(d->st, line, ln);
                proxy_stream_write(d->st, buf, n);
                proxy_stream_write(d->st, "\r\n", 2);
            } else {
                proxy_stream_write(d->st, buf, n);
            }
            r->res.bytes_out += n;
            buf += n;
            len -= n;
            if (r->rkind == PROXY_RESP_BODY_LENGTH) {
                r->rleft -= n;
                if (r->rleft == 0)
                    r->rstate = RS_DONE;
            }
        } else {
            size_t consumed;
            proxy_slice data;
            proxy_http_error err;
            int rc = proxy_chunked_decode(&r->rchunked, buf, len, &consumed, &data, &err);
            buf += consumed;
            len -= consumed;
            if (rc < 0) {
                upstream_failed(r, 502, "malformed chunked response body");
                return;
            }
            if (rc == PROXY_CHUNKED_DATA) {
                if (r->chunk_out) {
                    char line[PROXY_CHUNK_SIZE_LINE_MAX];
                    size_t ln = proxy_chunked_size_line(line, data.len);
                    proxy_stream_write(d->st, line, ln);
                    proxy_stream_write(d->st, data.ptr, data.len);
                    proxy_stream_write(d->st, "\r\n", 2);
                } else {
                    proxy_stream_write(d->st, data.ptr, data.len);
                }
                r->res.bytes_out += data.len;
            } else if (rc == PROXY_CHUNKED_DONE) {
                if (r->chunk_out)
                    proxy_stream_write(d->st, "0\r\n\r\n", 5);
                r->rstate = RS_DONE;
            }
        }
    }
    if (r->rstate == RS_DONE) {
        if (len > 0) /* bytes after the response: never reuse this connection */
            r->u_reusable = false;
        request_finish(r);
        return;
    }
    if (r->u != NULL) {
        proxy_stream_set_timeout(r->u->st, r->timeout_ms);
        if (proxy_stream_pending(d->st) > WRITE_HIGH) {
            proxy_stream_read_pause(r->u->st);
            proxy_stream_set_timeout(d->st, d->rl->o.timeouts.request_ms);
        }
    }
}

static void tunnel_start(proxy_relay_request *r, const char *rest, size_t len)
{
    dconn *d = r->d;
    r->rstate = RS_TUNNEL;
    d->state = D_TUNNEL;
    proxy_stream_set_timeout(d->st, d->rl->o.timeouts.idle_ms);
    proxy_stream_set_timeout(r->u->st, 0);
    if (len > 0)
        proxy_stream_write(d->st, rest, len);
    /* bytes the client sent after its request head belong to the new protocol */
    if (d->in.len > 0) {
        proxy_stream_write(r->u->st, d->in.ptr, d->in.len);
        d->in.len = 0;
    }
    if (d->paused) {
        d->paused = false;
        proxy_stream_read_resume(d->st);
    }
}

static void response_bytes(proxy_relay_request *r, const char *buf, size_t len)
{
    if (r->rstate == RS_TUNNEL) {
        proxy_stream_write(r->d->st, buf, len);
        r->res.bytes_out += len;
        proxy_stream_set_timeout(r->d->st, r->d->rl->o.timeouts.idle_ms);
        if (proxy_stream_pending(r->d->st) > WRITE_HIGH && r->u != NULL)
            proxy_stream_read_pause(r->u->st);
        return;
    }
    if (r->rstate == RS_BODY) {
        response_body(r, buf, len);
        return;
    }
    if (r->rstate != RS_HEAD) { /* after the response: a misbehaving upstream */
        r->u_reusable = false;
        return;
    }
    if (ward_buf_append(&r->uin, buf, len) < 0) {
        upstream_failed(r, 502, "out of memory");
        return;
    }
    for (;;) {
        proxy_http_response resp;
        proxy_http_error err;
        int rc = proxy_http_response_parser_feed(r->d->rparser, r->uin.ptr, r->uin.len,
                                                 r->head_method, &resp, &err);
        if (rc == 0)
            return;
        if (rc < 0) {
            upstream_failed(r, 502, "malformed response from upstream");
            return;
        }
        size_t hl = resp.head_len;
        if (resp.status >= 100 && resp.status < 200 && resp.status != 101) {
            /* interim responses: 100 Continue was already given by us */
            memmove(r->uin.ptr, r->uin.ptr + hl, r->uin.len - hl);
            r->uin.len -= hl;
            proxy_http_response_parser_reset(r->d->rparser);
            if (r->uin.len == 0)
                return;
            continue;
        }
        if (resp.status == 101 && !r->upgrade) {
            upstream_failed(r, 502, "upstream switched protocols unasked");
            return;
        }
        if (resp.status >= 500 && may_retry(r)) {
            /* the coordinator may try elsewhere; this answer is then dropped */
            dconn *d = r->d;
            if (d->rl->o.retry(r, resp.status, true, "upstream answered with a 5xx", d->rl->o.data))
                return;
        }
        r->res.status = resp.status;
        write_response_head(r, &resp);
        proxy_http_response_parser_reset(r->d->rparser);
        const char *rest = r->uin.ptr + hl;
        size_t rest_len = r->uin.len - hl;
        if (resp.status == 101) {
            tunnel_start(r, rest, rest_len);
            ward_buf_dispose(&r->uin);
            return;
        }
        r->u_reusable = resp.keep_alive;
        r->rkind = resp.body;
        r->rleft = resp.content_length;
        if (resp.body == PROXY_RESP_BODY_NONE ||
            (resp.body == PROXY_RESP_BODY_LENGTH && resp.content_length == 0)) {
            r->rstate = RS_DONE;
            if (rest_len > 0)
                r->u_reusable = false;
            ward_buf_dispose(&r->uin);
            request_finish(r);
            return;
        }
        r->rstate = RS_BODY;
        /* rest lives in uin: hand it on before releasing the buffer */
        ward_buf hold = r->uin;
        ward_buf_init(&r->uin);
        response_body(r, hold.ptr + hl, rest_len);
        ward_buf_dispose(&hold);
        return;
    }
}

/* ---- client connections ------------------------------------------------------------------------ */

static void process(dconn *d)
{
    proxy_relay *rl = d->rl;
    if (d->processing)
        return;
    d->processing = true;
    while (!proxy_stream_is_closing(d->st) && d->state != D_CLOSING) {
        if (d->state == D_REQUEST) {
            if (!d->req->body_done)
                pump_body(d);
            if (d->state == D_REQUEST && d->req != NULL && !d->req->body_done && d->peer_eof) {
                /* the client stopped in the middle of its body */
                if (d->req->u != NULL)
                    u_detach_and_close(d->req->u);
                d->state = D_CLOSING;
                proxy_stream_close(d->st);
            }
            break;
        }
        if (d->state != D_HEAD)
            break;
        if (d->in.len == 0) {
            if (d->peer_eof || rl->closing)
                d_close_gracefully(d);
            break;
        }
        if (!d->started) {
            d->started = true;
            proxy_stream_set_timeout(d->st, rl->o.timeouts.header_read_ms);
        }
        proxy_http_request req;
        proxy_http_error err;
        int rc = proxy_http_parser_feed(d->parser, d->in.ptr, d->in.len, &req, &err);
        if (rc < 0) {
            fail_head(d, err.status, err.reason);
            break;
        }
        if (rc == 0) {
            if (d->peer_eof)
                d_close_gracefully(d);
            break;
        }
        start_request(d, &req);
    }
    d->processing = false;
}

static void d_on_read(proxy_stream *st, const char *buf, size_t len, void *data);

static void read_from_client(proxy_stream *st, const char *buf, size_t len, void *data)
{
    /* writes to either side while handling these bytes are gathered: a forwarded
     * head and its body, a local answer's head and body */
    dconn *d = data;
    proxy_stream *up = d->req != NULL && d->req->u != NULL ? d->req->u->st : NULL;
    proxy_stream_cork(st);
    if (up != NULL)
        proxy_stream_cork(up);
    d_on_read(st, buf, len, data);
    if (up != NULL)
        proxy_stream_uncork(up);
    proxy_stream_uncork(st);
}

static void d_on_read(proxy_stream *st, const char *buf, size_t len, void *data)
{
    dconn *d = data;
    if (d->state == D_CLOSING)
        return;
    if (d->state == D_TUNNEL) {
        proxy_relay_request *r = d->req;
        if (r != NULL && r->u != NULL) {
            proxy_stream_write(r->u->st, buf, len);
            r->res.bytes_in += len;
            proxy_stream_set_timeout(st, d->rl->o.timeouts.idle_ms);
            if (proxy_stream_pending(r->u->st) > WRITE_HIGH) {
                d->paused = true;
                proxy_stream_read_pause(st);
            }
        }
        return;
    }
    if (ward_buf_append(&d->in, buf, len) < 0) {
        proxy_stream_close(st);
        return;
    }
    if (d->state == D_REQUEST && d->req->body_done && d->in.len >= READ_AHEAD_MAX && !d->paused) {
        d->paused = true;
        proxy_stream_read_pause(st);
    }
    process(d);
}

static void d_on_open(proxy_stream *st, int status, void *data)
{
    dconn *d = data;
    if (status < 0 && d->rl->o.on_tls_error != NULL)
        d->rl->o.on_tls_error(proxy_stream_peer(st), proxy_stream_error(st), d->rl->o.data);
}

static void d_on_eof(proxy_stream *st, int status, void *data)
{
    dconn *d = data;
    d->peer_eof = true;
    if (status < 0 || d->state == D_TUNNEL) {
        if (d->state == D_TUNNEL && status == 0 && d->req != NULL && d->req->u != NULL) {
            proxy_stream_shutdown(d->req->u->st, LINGER_MS);
            return;
        }
        d->state = D_CLOSING;
        proxy_stream_close(st);
        return;
    }
    if (d->req != NULL)
        d->req->close_out = true;
    process(d);
}

static void d_on_timeout(proxy_stream *st, void *data)
{
    dconn *d = data;
    switch (d->state) {
    case D_HEAD:
        if (!d->started || d->in.len == 0) {
            d->state = D_CLOSING; /* idle, or a handshake that never came */
            proxy_stream_close(st);
        } else {
            fail_head(d, 408, "request header timeout");
        }
        break;
    case D_REQUEST:
        if (d->req != NULL && !d->req->body_done && d->req->rstate == RS_HEAD) {
            proxy_relay_request *r = d->req;
            if (r->u != NULL)
                u_detach_and_close(r->u);
            proxy_header h[1] = {{{"Content-Type", 12}, {"text/plain", 10}}};
            write_local(d, r, 408, h, 1, "request body timeout\n", 21, true);
            r->res.local = true;
            r->res.error = "request body timeout";
            r->rstate = RS_DONE;
            r->close_out = true;
            request_finish(r);
        } else {
            proxy_stream_close(st);
        }
        break;
    default:
        proxy_stream_close(st); /* an idle tunnel, or a client that stopped reading */
        break;
    }
}

static void d_on_drain(proxy_stream *st, void *data)
{
    dconn *d = data;
    proxy_relay_request *r = d->req;
    if (r != NULL && r->u != NULL && (r->rstate == RS_BODY || r->rstate == RS_TUNNEL)) {
        if (r->rstate == RS_BODY)
            proxy_stream_set_timeout(st, 0);
        proxy_stream_read_resume(r->u->st);
    }
}

static void maybe_finish(proxy_relay *rl);

static void d_on_close(proxy_stream *st, void *data)
{
    dconn *d = data;
    proxy_relay *rl = d->rl;
    proxy_relay_request *r = d->req;
    if (r != NULL) {
        if (r->u != NULL)
            u_detach_and_close(r->u);
        if (!r->finished) {
            if (r->res.error == NULL && r->rstate != RS_DONE && r->rstate != RS_TUNNEL)
                r->res.error = "client closed the connection";
            r->close_out = true;
            d->state = D_CLOSING;
            request_finish(r);
        }
    }
    if (d->prev != NULL)
        d->prev->next = d->next;
    else if (rl->conns == d)
        rl->conns = d->next;
    if (d->next != NULL)
        d->next->prev = d->prev;
    rl->n_conns--;
    if (rl->o.on_connection != NULL)
        rl->o.on_connection(false, rl->o.data);
    proxy_http_parser_free(d->parser);
    proxy_http_response_parser_free(d->rparser);
    ward_buf_dispose(&d->in);
    free(d);
    maybe_finish(rl);
}

static const proxy_stream_cbs d_cbs = {d_on_open,    read_from_client, d_on_eof,
                                       d_on_timeout, d_on_drain,       d_on_close};

/* ---- listening ------------------------------------------------------------------------------ */

static void on_connection(uv_stream_t *l, int status)
{
    proxy_relay *rl = l->data;
    if (status < 0)
        return;
    dconn *d = calloc(1, sizeof(*d));
    if (d == NULL || rl->closing || rl->n_conns >= rl->o.max_connections ||
        proxy_http_parser_new(&rl->o.limits, &d->parser) < 0 ||
        proxy_http_response_parser_new(&rl->o.limits, &d->rparser) < 0) {
        proxy_stream *st;
        if (proxy_stream_accept(l, NULL, NULL, NULL, &st) == 0)
            proxy_stream_close(st);
        if (d != NULL) {
            proxy_http_parser_free(d->parser);
            proxy_http_response_parser_free(d->rparser);
        }
        free(d);
        return;
    }
    d->rl = rl;
    ward_buf_init(&d->in);
    if (proxy_stream_accept(l, rl->tls, &d_cbs, d, &d->st) < 0) {
        proxy_http_parser_free(d->parser);
        proxy_http_response_parser_free(d->rparser);
        free(d);
        return;
    }
    d->next = rl->conns;
    if (rl->conns != NULL)
        rl->conns->prev = d;
    rl->conns = d;
    rl->n_conns++;
    if (rl->o.on_connection != NULL)
        rl->o.on_connection(true, rl->o.data);
    proxy_stream_set_timeout(d->st, rl->o.timeouts.header_read_ms);
}

int proxy_relay_new(uv_loop_t *loop, const proxy_relay_options *opts, proxy_relay **out)
{
    if (opts->route == NULL)
        return WARD_EINVAL;
    proxy_relay *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return WARD_ENOMEM;
    rl->loop = loop;
    rl->o = *opts;
    rl->o.limits = proxy_http_limits_with_defaults(&opts->limits);
    rl->o.limits.allow_chunked = true;
    proxy_config_timeouts *t = &rl->o.timeouts;
    if (!t->header_read_ms)
        t->header_read_ms = 10000;
    if (!t->idle_ms)
        t->idle_ms = 60000;
    if (!t->upstream_connect_ms)
        t->upstream_connect_ms = 5000;
    if (!t->request_ms)
        t->request_ms = 30000;
    if (!rl->o.max_connections)
        rl->o.max_connections = 16384;
    uv_timer_init(loop, &rl->drain_timer);
    rl->drain_timer.data = rl;
    *out = rl;
    return 0;
}

int proxy_relay_listen(proxy_relay *rl, const struct sockaddr *addr, bool reuseport, ward_err *err)
{
    char where[PROXY_ADDR_STRLEN];
    proxy_addr_format(addr, where, sizeof(where));
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
    socklen_t alen = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                 : sizeof(struct sockaddr_in);
    if (bind(fd, addr, alen) < 0) {
        int e = errno;
        close(fd);
        ward_err_set(err, "cannot listen on %s: %s", where, strerror(e));
        return WARD_EIO;
    }
    uv_tcp_init(rl->loop, &rl->lst);
    rl->lst.data = rl;
    rl->listening = true;
    int rc = uv_tcp_open(&rl->lst, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&rl->lst, LISTEN_BACKLOG, on_connection);
    if (rc < 0) {
        ward_err_set(err, "cannot listen on %s: %s", where, uv_strerror(rc));
        return WARD_EIO;
    }
    uv_tcp_nodelay(&rl->lst, 1);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&rl->lst, (struct sockaddr *)&ss, &len) == 0)
        rl->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                  : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

int proxy_relay_port(const proxy_relay *rl)
{
    return rl->port;
}

void proxy_relay_set_tls(proxy_relay *rl, proxy_tls_ctx *tls)
{
    if (tls != NULL)
        proxy_tls_ctx_ref(tls);
    if (rl->tls != NULL)
        proxy_tls_ctx_unref(rl->tls);
    rl->tls = tls;
}

size_t proxy_relay_connections(const proxy_relay *rl)
{
    return rl->n_conns;
}

static void relay_freed(uv_handle_t *h)
{
    proxy_relay *rl = h->data;
    proxy_done_cb cb = rl->done_cb;
    void *data = rl->done_data;
    if (rl->tls != NULL)
        proxy_tls_ctx_unref(rl->tls);
    free(rl);
    if (cb != NULL)
        cb(data);
}

static void listener_closed(uv_handle_t *h)
{
    proxy_relay *rl = h->data;
    rl->lst_closed = true;
    maybe_finish(rl);
}

static void maybe_finish(proxy_relay *rl)
{
    if (!rl->closing || rl->finishing || rl->n_conns > 0 || (rl->listening && !rl->lst_closed))
        return;
    rl->finishing = true;
    uv_close((uv_handle_t *)&rl->drain_timer, relay_freed);
}

static void drain_expired(uv_timer_t *t)
{
    proxy_relay *rl = t->data;
    for (dconn *d = rl->conns; d != NULL; d = d->next)
        proxy_stream_close(d->st);
}

void proxy_relay_close(proxy_relay *rl, uint64_t drain_ms, proxy_done_cb cb, void *data)
{
    rl->closing = true;
    rl->done_cb = cb;
    rl->done_data = data;
    if (rl->listening && !uv_is_closing((uv_handle_t *)&rl->lst))
        uv_close((uv_handle_t *)&rl->lst, listener_closed);
    /* idle connections close now; busy ones after their response ("Connection: close") */
    dconn *next;
    for (dconn *d = rl->conns; d != NULL; d = next) {
        next = d->next;
        if (d->state == D_HEAD && d->in.len == 0 && proxy_stream_handshake_done(d->st))
            d_close_gracefully(d);
        else if (drain_ms == 0)
            proxy_stream_close(d->st);
    }
    if (drain_ms > 0)
        uv_timer_start(&rl->drain_timer, drain_expired, drain_ms, 0);
    maybe_finish(rl);
}
