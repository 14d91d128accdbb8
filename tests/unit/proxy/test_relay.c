/* test_relay.c - unit tests of the HTTP/1.1 relay: what reaches the upstream, what the client gets */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "harness.h"

/* ---- a scripted upstream: records every byte, answers from a queue ------------------------ */

#define APP_MAX_ANSWERS 8

typedef struct app app;

typedef struct app_conn {
    app *a;
    proxy_stream *st;
    size_t seen; /* bytes of a.got up to the last answer */
} app_conn;

struct app {
    uv_tcp_t lst;
    int port;
    ward_buf got;     /* everything every connection sent, in arrival order */
    const char *until; /* an answer is sent when this appears after the last one */
    const char *answers[APP_MAX_ANSWERS];
    int n_answers, next;
    bool close_after; /* close each connection after answering */
    int conns;
    app_conn *last;
};

static void app_read(proxy_stream *s, const char *buf, size_t len, void *data)
{
    app_conn *c = data;
    app *a = c->a;
    ward_buf_append(&a->got, buf, len);
    while (a->next < a->n_answers && a->until != NULL) {
        ward_buf_putc(&a->got, '\0');
        a->got.len--;
        const char *hit = strstr(a->got.ptr + c->seen, a->until);
        if (hit == NULL)
            break;
        c->seen = (size_t)(hit - a->got.ptr) + strlen(a->until);
        const char *ans = a->answers[a->next++];
        proxy_stream_write(s, ans, strlen(ans));
        if (a->close_after) {
            proxy_stream_shutdown(s, 0);
            break;
        }
    }
}

static void app_eof(proxy_stream *s, int status, void *data)
{
    proxy_stream_close(s);
}

static void app_close(proxy_stream *s, void *data)
{
    app_conn *c = data;
    if (c->a->last == c)
        c->a->last = NULL;
    free(c);
}

static const proxy_stream_cbs app_cbs = {NULL, app_read, app_eof, NULL, NULL, app_close};

static void app_accept(uv_stream_t *l, int status)
{
    app *a = l->data;
    app_conn *c = calloc(1, sizeof(*c));
    c->a = a;
    assert_int_equal(proxy_stream_accept(l, NULL, &app_cbs, c, &c->st), 0);
    a->conns++;
    a->last = c;
}

/* Binds t to 127.0.0.1 on any port and returns it; listens if on_accept is given. */
static int tcp_listen_any(uv_loop_t *loop, uv_tcp_t *t, void *data, uv_connection_cb on_accept)
{
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, t);
    t->data = data;
    assert_int_equal(uv_tcp_bind(t, (struct sockaddr *)&sa, 0), 0);
    if (on_accept != NULL)
        assert_int_equal(uv_listen((uv_stream_t *)t, 64, on_accept), 0);
    int len = sizeof(sa);
    uv_tcp_getsockname(t, (struct sockaddr *)&sa, &len);
    return ntohs(sa.sin_port);
}

static void app_start(app *a, uv_loop_t *loop)
{
    ward_buf_init(&a->got);
    a->port = tcp_listen_any(loop, &a->lst, a, app_accept);
}

static void app_answer(app *a, const char *until, const char *answer)
{
    a->until = until;
    a->answers[a->n_answers++] = answer;
}

/* ---- the relay under test ------------------------------------------------------------------ */

typedef struct world {
    uv_loop_t loop;
    app app;
    proxy_relay *relay;
    proxy_relay_pool *pool;
    int port;
    struct sockaddr_in target;
    int routed, done;
    int retries_allowed, retries_seen, last_retry_status;
    bool last_retry_from_upstream;
    struct sockaddr_in retry_target;
    proxy_relay_result last;
    char last_error[256];
    bool closed;
} world;

static void route(proxy_relay_request *r, void *data)
{
    world *w = data;
    w->routed++;
    size_t len;
    const char *path = proxy_relay_request_path(r, &len);
    if (strncmp(path, "/deny", 5) == 0) {
        proxy_header h[1] = {{{"Content-Type", 12}, {"text/plain", 10}}};
        proxy_relay_respond(r, 403, h, 1, "access denied\n", 14);
        return;
    }
    if (strncmp(path, "/silent", 7) == 0)
        return; /* neither forward nor answer: the relay must fail closed */
    proxy_header add[1] = {{{"X-Added", 7}, {"yes", 3}}};
    proxy_relay_target t = {.addr = (struct sockaddr *)&w->target, .add_headers = add,
                            .n_add_headers = 1};
    proxy_relay_forward(r, &t);
}

static void done(proxy_relay_request *r, const proxy_relay_result *res, void *data)
{
    world *w = data;
    w->done++;
    w->last = *res;
    snprintf(w->last_error, sizeof(w->last_error), "%s", res->error ? res->error : "");
    w->last.error = NULL;
}

static bool retry(proxy_relay_request *r, int status, bool from_upstream, const char *why,
                  void *data)
{
    world *w = data;
    w->retries_seen++;
    w->last_retry_status = status;
    w->last_retry_from_upstream = from_upstream;
    if (w->retries_allowed-- <= 0)
        return false;
    proxy_relay_target t = {.addr = (struct sockaddr *)&w->retry_target};
    return proxy_relay_retarget(r, &t) == 0;
}

/* A relay listening on 127.0.0.1, any port (in *port). */
static proxy_relay *relay_start(uv_loop_t *loop, const proxy_relay_options *o, int *port)
{
    proxy_relay *rl;
    assert_int_equal(proxy_relay_new(loop, o, &rl), 0);
    struct sockaddr_in any;
    uv_ip4_addr("127.0.0.1", 0, &any);
    ward_err err;
    assert_int_equal(proxy_relay_listen(rl, (struct sockaddr *)&any, false, &err), 0);
    *port = proxy_relay_port(rl);
    return rl;
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof(*w));
    uv_loop_init(&w->loop);
    app_start(&w->app, &w->loop);
    uv_ip4_addr("127.0.0.1", w->app.port, &w->target);
    w->retry_target = w->target;
    assert_int_equal(proxy_relay_pool_new(&w->loop, 0, 0, 0, &w->pool), 0);
    proxy_relay_options o = {
        .timeouts = {.header_read_ms = 1000, .request_ms = 1000, .idle_ms = 2000,
                     .upstream_connect_ms = 1000},
        .pool = w->pool,
        .route = route,
        .done = done,
        .retry = retry,
        .data = w,
    };
    w->relay = relay_start(&w->loop, &o, &w->port);
    *state = w;
    return 0;
}

static void relay_closed(void *data)
{
    *(bool *)data = true;
}

static int teardown(void **state)
{
    world *w = *state;
    proxy_relay_close(w->relay, 0, relay_closed, &w->closed);
    run_until(&w->loop, &w->closed, 2000);
    assert_true(w->closed);
    proxy_relay_pool_free(w->pool);
    if (w->app.last != NULL)
        proxy_stream_close(w->app.last->st);
    uv_close((uv_handle_t *)&w->app.lst, NULL);
    run_for(&w->loop, 50);
    loop_finish(&w->loop);
    ward_buf_dispose(&w->app.got);
    free(w);
    return 0;
}

/* Sends bytes on a new connection and runs until the client got `until` (or closed). */
static void exchange(world *w, tclient *c, const char *send, const char *until)
{
    tclient_connect(c, &w->loop, w->port, NULL, NULL, send, strlen(send));
    for (int i = 0; i < 300; i++) {
        run_for(&w->loop, 10);
        ward_buf_putc(&c->got, '\0');
        c->got.len--;
        if (c->closed || (until != NULL && strstr(c->got.ptr, until) != NULL))
            break;
    }
    ward_buf_putc(&c->got, '\0');
    c->got.len--;
    ward_buf_putc(&w->app.got, '\0');
    w->app.got.len--;
}

static const char *app_got(world *w)
{
    return w->app.got.ptr ? w->app.got.ptr : "";
}

/* ---- what is forwarded ---------------------------------------------------------------------- */

static void test_forwarded_head_is_normalized_and_cleaned(void **state)
{
    world *w = *state;
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    tclient c;
    exchange(w, &c,
             "GET /a/./b//c/%7e?x=1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, x-drop\r\n"
             "X-Drop: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-Client-Cert: By=evil\r\n"
             "X-Forwarded-For: 10.0.0.1\r\nProxy-Connection: x\r\nTE: trailers\r\n\r\n",
             "ok");
    const char *got = app_got(w);
    assert_non_null(strstr(got, "GET /a/b/c/~?x=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(got, "Host: h\r\n"));
    assert_non_null(strstr(got, "X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n"));
    assert_non_null(strstr(got, "X-Added: yes\r\n"));
    assert_non_null(strstr(got, "traceparent: 00-"));
    assert_null(strstr(got, "X-Drop"));
    assert_null(strstr(got, "Keep-Alive"));
    assert_null(strstr(got, "evil"));
    assert_null(strstr(got, "Proxy-Connection"));
    assert_null(strstr(got, "TE:"));
    assert_null(strstr(got, "Connection:"));
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 200 OK\r\n"));
    assert_non_null(strstr(c.got.ptr, "\r\n\r\nok"));
    assert_int_equal(w->last.status, 200);
    assert_false(w->last.local);
    tclient_dispose(&c, &w->loop);
}

static void test_valid_traceparent_is_kept_invalid_replaced(void **state)
{
    world *w = *state;
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n");
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n");
    tclient c;
    exchange(w, &c,
             "GET / HTTP/1.1\r\nHost: h\r\ntraceparent: "
             "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n"
             "GET / HTTP/1.1\r\nHost: h\r\ntraceparent: 00-zz\r\n\r\n",
             "204 No Content\r\n\r\nHTTP/1.1 204");
    const char *got = app_got(w);
    assert_non_null(
        strstr(got, "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"));
    assert_null(strstr(got, "00-zz"));
    assert_int_equal(count_of(&(tclient){.got = w->app.got}, "traceparent: 00-"), 2);
    tclient_dispose(&c, &w->loop);
}

static void test_denied_request_never_reaches_upstream(void **state)
{
    world *w = *state;
    tclient c;
    exchange(w, &c, "POST /deny HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", "denied");
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 403 Forbidden\r\n"));
    assert_non_null(strstr(c.got.ptr, "Connection: close")); /* the body was not read */
    assert_int_equal(w->app.conns, 0);
    assert_int_equal(w->app.got.len, 0);
    assert_true(w->last.local);
    tclient_dispose(&c, &w->loop);
}

static void test_local_answer_honours_connection_close(void **state)
{
    world *w = *state;
    tclient c;
    exchange(w, &c, "GET /deny HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", NULL);
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 403 Forbidden\r\n"));
    assert_true(c.closed);
    tclient_dispose(&c, &w->loop);
}

static void test_bad_second_chunk_after_good_first(void **state)
{
    world *w = *state;
    tclient c;
    static const char first[] =
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
    tclient_connect(&c, &w->loop, w->port, NULL, NULL, first, sizeof(first) - 1);
    run_for(&w->loop, 100);
    proxy_stream_write(c.s, "zz\r\n", 4);
    run_until(&w->loop, &c.closed, 2000);
    ward_buf_putc(&c.got, '\0');
    ward_buf_putc(&w->app.got, '\0');
    /* the first chunk was whole and went on; the upstream then sees a cut request */
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 400 "));
    assert_non_null(strstr(app_got(w), "5\r\nhello\r\n"));
    assert_null(strstr(app_got(w), "zz"));
    tclient_dispose(&c, &w->loop);
}

static void test_route_without_answer_fails_closed(void **state)
{
    world *w = *state;
    tclient c;
    exchange(w, &c, "GET /silent HTTP/1.1\r\nHost: h\r\n\r\n", "\r\n\r\n");
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 503 "));
    assert_int_equal(w->app.conns, 0);
    tclient_dispose(&c, &w->loop);
}

static void test_smuggling_is_refused_before_routing(void **state)
{
    static const char *const vectors[] = {
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        "GET http://other/ HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\nHost: h\n\n",
        "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
        "GET /a/../../etc HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /a%2fb HTTP/1.1\r\nHost: h\r\n\r\n",
    };
    world *w = *state;
    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        tclient c;
        exchange(w, &c, vectors[i], NULL);
        assert_true(c.closed);
        assert_true(strncmp(c.got.ptr, "HTTP/1.1 4", 10) == 0);
        tclient_dispose(&c, &w->loop);
    }
    assert_int_equal(w->routed, 0);
    assert_int_equal(w->app.conns, 0);
}

static void test_bad_chunk_in_body_cuts_the_upstream_request(void **state)
{
    world *w = *state;
    tclient c;
    exchange(w, &c,
             "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
             NULL);
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 400 "));
    /* the head waits for the first chunk to be checked: nothing reached the upstream */
    assert_int_equal(w->app.got.len, 0);
    tclient_dispose(&c, &w->loop);
}

/* ---- bodies and framing ------------------------------------------------------------------- */

static void test_chunked_request_is_reencoded(void **state)
{
    world *w = *state;
    app_answer(&w->app, "0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    tclient c;
    exchange(w, &c,
             "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
             "\r\n\r\n");
    const char *got = app_got(w);
    assert_non_null(strstr(got, "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));
    assert_null(strstr(got, "ext=1"));
    assert_null(strstr(got, "X-Trailer"));
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 200 OK"));
    assert_int_equal(w->last.bytes_in, 11);
    tclient_dispose(&c, &w->loop);
}

static void test_close_delimited_response_becomes_chunked(void **state)
{
    world *w = *state;
    w->app.close_after = true;
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc");
    tclient c;
    exchange(w, &c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "0\r\n\r\n");
    assert_non_null(strstr(c.got.ptr, "Transfer-Encoding: chunked\r\n"));
    assert_non_null(strstr(c.got.ptr, "\r\n\r\n3\r\nabc\r\n0\r\n\r\n"));
    assert_false(c.closed); /* keep-alive survives the upstream's close */
    tclient_dispose(&c, &w->loop);
}

static void test_http10_client_gets_close_delimited_body(void **state)
{
    world *w = *state;
    app_answer(&w->app, "\r\n\r\n",
               "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    tclient c;
    exchange(w, &c, "GET / HTTP/1.0\r\nHost: h\r\n\r\n", NULL);
    assert_true(c.closed);
    assert_non_null(strstr(c.got.ptr, "Connection: close\r\n\r\nabc"));
    assert_null(strstr(c.got.ptr, "Transfer-Encoding"));
    /* the upstream was spoken to in HTTP/1.1 */
    assert_non_null(strstr(app_got(w), "GET / HTTP/1.1\r\n"));
    tclient_dispose(&c, &w->loop);
}

static void test_pipelined_requests_answered_in_order(void **state)
{
    world *w = *state;
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none");
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo");
    tclient c;
    exchange(w, &c, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n", "two");
    const char *one = strstr(c.got.ptr, "one"), *two = strstr(c.got.ptr, "two");
    assert_non_null(one);
    assert_non_null(two);
    assert_true(one < two);
    assert_true(strstr(app_got(w), "GET /1 ") < strstr(app_got(w), "GET /2 "));
    assert_int_equal(w->done, 2);
    tclient_dispose(&c, &w->loop);
}

static void test_head_response_keeps_length_without_body(void **state)
{
    world *w = *state;
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n");
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    tclient c;
    exchange(w, &c, "HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
             "\r\n\r\nok");
    assert_non_null(strstr(c.got.ptr, "Content-Length: 42\r\n\r\nHTTP/1.1 200 OK"));
    tclient_dispose(&c, &w->loop);
}

static void test_expect_continue_answered_by_relay(void **state)
{
    world *w = *state;
    app_answer(&w->app, "hello", "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    tclient c;
    exchange(w, &c,
             "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
             "100 Continue");
    assert_true(strncmp(c.got.ptr, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
    assert_null(strstr(app_got(w), "Expect"));
    proxy_stream_write(c.s, "hello", 5);
    for (int i = 0; i < 100 && strstr(c.got.ptr, "201") == NULL; i++) {
        run_for(&w->loop, 10);
        ward_buf_putc(&c.got, '\0');
        c.got.len--;
    }
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 201 Created"));
    tclient_dispose(&c, &w->loop);
}

/* ---- upstream failures and the pool ---------------------------------------------------------- */

static void test_upstream_down_is_503_with_reason(void **state)
{
    world *w = *state;
    uv_ip4_addr("127.0.0.1", 1, &w->target); /* nobody listens on port 1 */
    tclient c;
    exchange(w, &c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "\r\n\r\n");
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 503 "));
    assert_non_null(strstr(c.got.ptr, "X-Ward-Reason: connect"));
    assert_true(w->last.local);
    assert_non_null(strstr(w->last_error, "connect"));
    tclient_dispose(&c, &w->loop);
}

static void test_connect_failure_retried_elsewhere(void **state)
{
    world *w = *state;
    uv_ip4_addr("127.0.0.1", 1, &w->target); /* the first attempt finds nobody */
    w->retries_allowed = 1;
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    tclient c;
    exchange(w, &c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "\r\n\r\nok");
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 200 OK"));
    assert_int_equal(w->retries_seen, 1);
    assert_int_equal(w->last_retry_status, 503);
    assert_false(w->last_retry_from_upstream);
    assert_int_equal(w->last.attempts, 1);
    tclient_dispose(&c, &w->loop);
}

static void test_upstream_5xx_retried_and_dropped(void **state)
{
    world *w = *state;
    w->retries_allowed = 1;
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy");
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    tclient c;
    exchange(w, &c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "\r\n\r\nok");
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 200 OK"));
    assert_null(strstr(c.got.ptr, "busy")); /* the failed attempt's answer never reaches the client */
    assert_true(w->last_retry_from_upstream);
    assert_int_equal(w->last_retry_status, 503);
    tclient_dispose(&c, &w->loop);
}

static void test_no_retry_for_requests_with_a_body(void **state)
{
    world *w = *state;
    uv_ip4_addr("127.0.0.1", 1, &w->target);
    w->retries_allowed = 1;
    tclient c;
    exchange(w, &c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", "\r\n\r\n");
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 503 "));
    assert_int_equal(w->retries_seen, 0);
    tclient_dispose(&c, &w->loop);
}

static void test_malformed_upstream_response_is_502(void **state)
{
    world *w = *state;
    app_answer(&w->app, "\r\n\r\n",
               "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
    tclient c;
    exchange(w, &c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "\r\n\r\n");
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 502 "));
    assert_null(strstr(c.got.ptr, "ab"));
    tclient_dispose(&c, &w->loop);
}

static void test_silent_upstream_is_504(void **state)
{
    world *w = *state;
    tclient c; /* the app never answers */
    exchange(w, &c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "\r\n\r\n");
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 504 "));
    tclient_dispose(&c, &w->loop);
}

static void test_upstream_reset_mid_body_cuts_client(void **state)
{
    world *w = *state;
    w->app.close_after = true;
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
    tclient c;
    exchange(w, &c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", NULL);
    assert_true(c.closed); /* a cut, never a well-formed short answer */
    assert_non_null(strstr(c.got.ptr, "Content-Length: 100"));
    tclient_dispose(&c, &w->loop);
}

static void test_pooled_connection_reused(void **state)
{
    world *w = *state;
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb");
    tclient c1, c2;
    exchange(w, &c1, "GET /1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", NULL);
    exchange(w, &c2, "GET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", NULL);
    assert_non_null(strstr(c2.got.ptr, "\r\n\r\nb"));
    assert_int_equal(w->app.conns, 1);
    assert_true(w->last.upstream_reused);
    tclient_dispose(&c1, &w->loop);
    tclient_dispose(&c2, &w->loop);
}

static void test_stale_pooled_connection_is_retried(void **state)
{
    world *w = *state;
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na");
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb");
    tclient c1, c2;
    exchange(w, &c1, "GET /1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", NULL);
    /* the app drops its idle keep-alive connection without the relay noticing yet */
    assert_non_null(w->app.last);
    proxy_stream_close(w->app.last->st);
    exchange(w, &c2, "GET /2 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", NULL);
    assert_non_null(strstr(c2.got.ptr, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(c2.got.ptr, "\r\n\r\nb"));
    tclient_dispose(&c1, &w->loop);
    tclient_dispose(&c2, &w->loop);
}

static void test_upgrade_becomes_tunnel(void **state)
{
    world *w = *state;
    app_answer(&w->app, "\r\n\r\n",
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: x\r\n\r\nfrom-app");
    tclient c;
    exchange(w, &c,
             "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n",
             "from-app");
    assert_non_null(strstr(app_got(w), "Connection: upgrade\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 101 "));
    assert_non_null(strstr(c.got.ptr, "Upgrade: websocket\r\n"));
    assert_non_null(strstr(c.got.ptr, "\r\n\r\nfrom-app"));
    proxy_stream_write(c.s, "\x81\x02hi", 4);
    for (int i = 0; i < 100; i++) {
        run_for(&w->loop, 10);
        ward_buf_putc(&w->app.got, '\0');
        w->app.got.len--;
        if (strstr(app_got(w), "\x81\x02hi") != NULL)
            break;
    }
    assert_non_null(strstr(app_got(w), "\x81\x02hi"));
    tclient_dispose(&c, &w->loop);
}

static void test_unrequested_101_is_502(void **state)
{
    world *w = *state;
    app_answer(&w->app, "\r\n\r\n", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n");
    tclient c;
    exchange(w, &c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", "\r\n\r\n");
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 502 "));
    tclient_dispose(&c, &w->loop);
}

/* ---- bursts to a TLS upstream: the connect cap ----------------------------------------------- */

#define TD       "relay.test"
#define UP_ID    "spiffe://relay.test/ns/shop/sa/payments"
#define RELAY_ID "spiffe://relay.test/ns/shop/sa/frontend"
#define BURST    8

typedef struct tls_app tls_app;

typedef struct tls_conn {
    tls_app *a;
    proxy_stream *st;
    uv_timer_t handshake_delay;
    ward_buf in;
    int unanswered;
} tls_conn;

/* An mTLS upstream answering 200 to every request head, at once or (hold > 0)
 * only once hold requests have arrived, as a slow app would; with
 * handshake_delay_ms, each connection's handshake waits that long (a busy or
 * distant upstream: connects that succeed slowly). */
struct tls_app {
    uv_tcp_t lst;
    int port;
    proxy_tls_ctx *tls;
    int hold, requests, conns, open;
    uint64_t handshake_delay_ms;
    tls_conn *c[2 * BURST];
};

typedef struct tworld {
    uv_loop_t loop;
    tpki pki;
    tls_app app;
    proxy_tls_ctx *relay_tls;
    proxy_relay *relay;
    proxy_relay_pool *pool;
    struct sockaddr_in target;
    int port, done;
    bool closed;
} tworld;

static void tls_app_answer_all(tls_app *a)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    for (int i = 0; i < a->conns; i++)
        for (; a->c[i] != NULL && a->c[i]->unanswered > 0; a->c[i]->unanswered--)
            proxy_stream_write(a->c[i]->st, ok, sizeof(ok) - 1);
}

static void tls_app_read(proxy_stream *s, const char *buf, size_t len, void *data)
{
    tls_conn *c = data;
    ward_buf_append(&c->in, buf, len);
    char *end;
    while (ward_buf_putc(&c->in, '\0') == 0 && c->in.len-- > 0 &&
           (end = strstr(c->in.ptr, "\r\n\r\n")) != NULL) {
        size_t n = (size_t)(end + 4 - c->in.ptr);
        memmove(c->in.ptr, c->in.ptr + n, c->in.len - n);
        c->in.len -= n;
        c->unanswered++;
        c->a->requests++;
    }
    if (c->a->requests >= c->a->hold)
        tls_app_answer_all(c->a);
}

static void tls_app_eof(proxy_stream *s, int status, void *data)
{
    proxy_stream_close(s);
}

static void tls_conn_free(uv_handle_t *h)
{
    free(h->data);
}

static void tls_app_close(proxy_stream *s, void *data)
{
    tls_conn *c = data;
    for (int i = 0; i < c->a->conns; i++)
        if (c->a->c[i] == c)
            c->a->c[i] = NULL;
    c->a->open--;
    ward_buf_dispose(&c->in);
    uv_close((uv_handle_t *)&c->handshake_delay, tls_conn_free);
}

static void tls_app_handshake_go(uv_timer_t *t)
{
    tls_conn *c = t->data;
    proxy_stream_read_resume(c->st);
}

static const proxy_stream_cbs tls_app_cbs = {NULL, tls_app_read, tls_app_eof, NULL, NULL,
                                             tls_app_close};

static void tls_app_accept(uv_stream_t *l, int status)
{
    tls_app *a = l->data;
    tls_conn *c = calloc(1, sizeof(*c));
    c->a = a;
    ward_buf_init(&c->in);
    uv_timer_init(l->loop, &c->handshake_delay);
    c->handshake_delay.data = c;
    assert_int_equal(proxy_stream_accept(l, a->tls, &tls_app_cbs, c, &c->st), 0);
    if (a->handshake_delay_ms > 0) { /* not reading: the ClientHello waits */
        proxy_stream_read_pause(c->st);
        uv_timer_start(&c->handshake_delay, tls_app_handshake_go, a->handshake_delay_ms, 0);
    }
    assert_true(a->conns < 2 * BURST);
    a->c[a->conns++] = c;
    a->open++;
}

static void tls_route(proxy_relay_request *r, void *data)
{
    tworld *w = data;
    proxy_relay_target t = {.addr = (struct sockaddr *)&w->target, .tls = w->relay_tls,
                            .expected_id = UP_ID};
    proxy_relay_forward(r, &t);
}

static void tls_done(proxy_relay_request *r, const proxy_relay_result *res, void *data)
{
    ((tworld *)data)->done++;
}

/* A relay whose pool caps TLS connects at cap, to an mTLS app (listening unless
 * app_down: then the target is a closed port); connect_ms: the relay's
 * upstream connect timeout (0: 2 s). */
static tworld *tworld_start(size_t cap, int hold, bool app_down, uint64_t handshake_delay_ms,
                            uint64_t connect_ms)
{
    tworld *w = calloc(1, sizeof(*w));
    uv_loop_init(&w->loop);
    tpki_open(&w->pki, TD);
    w->app.tls = tpki_ctx(&w->pki, UP_ID, true, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    w->relay_tls = tpki_ctx(&w->pki, RELAY_ID, false, PROXY_TLS_PEER_REQUIRED, w->pki.bundle);
    w->app.hold = hold;
    w->app.handshake_delay_ms = handshake_delay_ms;
    w->app.port = tcp_listen_any(&w->loop, &w->app.lst, &w->app, app_down ? NULL : tls_app_accept);
    uv_ip4_addr("127.0.0.1", w->app.port, &w->target);
    assert_int_equal(proxy_relay_pool_new(&w->loop, 0, 0, cap, &w->pool), 0);
    proxy_relay_options o = {
        .timeouts = {.header_read_ms = 2000, .request_ms = 2000, .idle_ms = 4000,
                     .upstream_connect_ms = connect_ms ? connect_ms : 2000},
        .pool = w->pool,
        .route = tls_route,
        .done = tls_done,
        .data = w,
    };
    w->relay = relay_start(&w->loop, &o, &w->port);
    return w;
}

static void tworld_stop(tworld *w)
{
    proxy_relay_close(w->relay, 0, relay_closed, &w->closed);
    run_until(&w->loop, &w->closed, 2000);
    assert_true(w->closed);
    proxy_relay_pool_free(w->pool);
    for (int i = 0; i < w->app.conns; i++)
        if (w->app.c[i] != NULL)
            proxy_stream_close(w->app.c[i]->st);
    uv_close((uv_handle_t *)&w->app.lst, NULL);
    run_for(&w->loop, 50);
    proxy_tls_ctx_unref(w->app.tls);
    proxy_tls_ctx_unref(w->relay_tls);
    loop_finish(&w->loop);
    tpki_close(&w->pki);
    free(w);
}

/* BURST clients send a GET each at once; runs until every one has an answer. */
static void burst(tworld *w, tclient *c, const char *want)
{
    static const char get[] = "GET /pay HTTP/1.1\r\nHost: payments\r\n\r\n";
    for (int i = 0; i < BURST; i++)
        tclient_connect(&c[i], &w->loop, w->port, NULL, NULL, get, sizeof(get) - 1);
    int answered = 0;
    for (int t = 0; t < 500 && answered < BURST; t++) {
        run_for(&w->loop, 10);
        answered = 0;
        for (int i = 0; i < BURST; i++) {
            ward_buf_putc(&c[i].got, '\0');
            c[i].got.len--;
            answered += c[i].closed || strstr(c[i].got.ptr, "\r\n\r\n") != NULL;
        }
    }
    for (int i = 0; i < BURST; i++) {
        if (strncmp(c[i].got.ptr ? c[i].got.ptr : "", want, strlen(want)) != 0)
            fail_msg("client %d got \"%.80s\", not %s", i, c[i].got.ptr ? c[i].got.ptr : "",
                     want);
    }
}

static void burst_dispose(tworld *w, tclient *c)
{
    for (int i = 0; i < BURST; i++)
        tclient_dispose(&c[i], &w->loop);
}

static void test_tls_burst_without_cap_opens_one_connection_each(void **state)
{
    (void)state;
    tworld *w = tworld_start(0, 0, false, 0, 0);
    tclient c[BURST];
    burst(w, c, "HTTP/1.1 200 OK");
    assert_int_equal(w->app.conns, BURST); /* the burst the cap is for */
    burst_dispose(w, c);
    tworld_stop(w);
}

static void test_tls_burst_waits_for_connections_past_the_cap(void **state)
{
    (void)state;
    tworld *w = tworld_start(1, 0, false, 0, 0);
    tclient c[BURST];
    burst(w, c, "HTTP/1.1 200 OK");
    if (w->app.conns >= BURST)
        fail_msg("%d connections for %d requests with a cap of 1", w->app.conns, BURST);
    burst_dispose(w, c);
    tworld_stop(w);
}

static void test_tls_burst_to_slow_upstream_is_not_serialized(void **state)
{
    (void)state;
    /* the app answers only once every request of the burst has reached it: serving
     * waiters only from freed connections would never get there */
    tworld *w = tworld_start(1, BURST, false, 0, 0);
    tclient c[BURST];
    burst(w, c, "HTTP/1.1 200 OK");
    assert_int_equal(w->app.conns, BURST);
    burst_dispose(w, c);
    tworld_stop(w);
}

static void test_tls_waiter_opens_its_own_after_a_connect_timeout(void **state)
{
    (void)state;
    /* Handshakes take 150 ms and the app answers only once all 8 requests have
     * arrived. In order, one connect at a time, the last request would reach
     * the app after 8 x 150 ms. A waiter that has waited the connect timeout
     * (250 ms) opens its own connection instead, so the requests still
     * waiting when the second connect ends open theirs at once: about 3 x 150 ms. */
    tworld *w = tworld_start(1, BURST, false, 150, 250);
    tclient c[BURST];
    uint64_t t0 = uv_hrtime();
    burst(w, c, "HTTP/1.1 200 OK");
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(w->app.conns, BURST);
    if (ms >= 900)
        fail_msg("the burst took %" PRIu64 " ms: waiters waited behind one connect at a time", ms);
    burst_dispose(w, c);
    tworld_stop(w);
}

static void test_tls_burst_waiters_fail_with_the_connect(void **state)
{
    (void)state;
    tworld *w = tworld_start(1, 0, true, 0, 0);
    tclient c[BURST];
    burst(w, c, "HTTP/1.1 503 ");
    assert_int_equal(w->done, BURST);
    burst_dispose(w, c);
    tworld_stop(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        T(test_forwarded_head_is_normalized_and_cleaned),
        T(test_valid_traceparent_is_kept_invalid_replaced),
        T(test_denied_request_never_reaches_upstream),
        T(test_route_without_answer_fails_closed),
        T(test_local_answer_honours_connection_close),
        T(test_bad_second_chunk_after_good_first),
        T(test_smuggling_is_refused_before_routing),
        T(test_bad_chunk_in_body_cuts_the_upstream_request),
        T(test_chunked_request_is_reencoded),
        T(test_close_delimited_response_becomes_chunked),
        T(test_http10_client_gets_close_delimited_body),
        T(test_pipelined_requests_answered_in_order),
        T(test_head_response_keeps_length_without_body),
        T(test_expect_continue_answered_by_relay),
        T(test_upstream_down_is_503_with_reason),
        T(test_connect_failure_retried_elsewhere),
        T(test_upstream_5xx_retried_and_dropped),
        T(test_no_retry_for_requests_with_a_body),
        T(test_malformed_upstream_response_is_502),
        T(test_silent_upstream_is_504),
        T(test_upstream_reset_mid_body_cuts_client),
        T(test_pooled_connection_reused),
        T(test_stale_pooled_connection_is_retried),
        T(test_upgrade_becomes_tunnel),
        T(test_unrequested_101_is_502),
#undef T
        cmocka_unit_test(test_tls_burst_without_cap_opens_one_connection_each),
        cmocka_unit_test(test_tls_burst_waits_for_connections_past_the_cap),
        cmocka_unit_test(test_tls_burst_to_slow_upstream_is_not_serialized),
        cmocka_unit_test(test_tls_burst_waiters_fail_with_the_connect),
        cmocka_unit_test(test_tls_waiter_opens_its_own_after_a_connect_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
