/* test_http_server.c - unit tests of the HTTP/1.1 server: keep-alive, deadlines, errors */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "harness.h"

#define REQ(path)       "GET " path " HTTP/1.1\r\nHost: h\r\n\r\n"
#define REQ_CLOSE(path) "GET " path " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"

typedef struct world {
    uv_loop_t loop;
    tserver ts;
    proxy_http_server_options o;
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof(*w));
    uv_loop_init(&w->loop);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    if (w->ts.srv != NULL && !w->ts.done)
        tserver_stop(&w->ts, &w->loop);
    loop_finish(&w->loop);
    free(w);
    return 0;
}

static void start(world *w)
{
    tserver_start(&w->ts, &w->loop, &w->o, NULL);
}

/* Runs until the client has n complete "HTTP/1.1 " status lines or closed. */
static void wait_responses(world *w, tclient *c, int n)
{
    bool expired = false;
    uv_timer_t t;
    uv_timer_init(&w->loop, &t);
    t.data = &expired;
    uv_timer_start(&t, h_expired, 3000, 0);
    while (count_of(c, "HTTP/1.1 2") + count_of(c, "HTTP/1.1 4") + count_of(c, "HTTP/1.1 5") < n &&
           !c->closed && !expired)
        uv_run(&w->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&w->loop, UV_RUN_NOWAIT);
}

static void connect_send(world *w, tclient *c, const char *s, size_t len)
{
    tclient_connect(c, &w->loop, w->ts.port, NULL, NULL, s, len);
}

#define CONNECT_SEND(w, c, lit) connect_send((w), (c), (lit), sizeof(lit) - 1)

/* ---- keep-alive and pipelining -------------------------------------------------------- */

static void test_keep_alive(void **state)
{
    world *w = *state;
    start(w);
    tclient c;
    CONNECT_SEND(w, &c, REQ("/one"));
    wait_responses(w, &c, 1);
    assert_non_null(strstr(c.got.ptr, "GET /one len=0"));
    assert_null(strstr(c.got.ptr, "Connection: close"));
    assert_false(c.closed);
    proxy_stream_write(c.s, REQ_CLOSE("/two"), sizeof(REQ_CLOSE("/two")) - 1);
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_int_equal(count_of(&c, "HTTP/1.1 200 OK"), 2);
    assert_non_null(strstr(c.got.ptr, "GET /two len=0"));
    assert_non_null(strstr(c.got.ptr, "Connection: close"));
    tclient_dispose(&c, &w->loop);
}

static void test_pipelined_in_order(void **state)
{
    world *w = *state;
    start(w);
    tclient c;
    CONNECT_SEND(
        w, &c,
        REQ("/1") "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" REQ_CLOSE("/3"));
    assert_true(run_until(&w->loop, &c.closed, 3000));
    const char *a = strstr(c.got.ptr, "GET /1 len=0");
    const char *b = strstr(c.got.ptr, "POST /2 len=3");
    const char *d = strstr(c.got.ptr, "GET /3 len=0");
    assert_true(a != NULL && b != NULL && d != NULL);
    assert_true(a < b && b < d);
    tclient_dispose(&c, &w->loop);
}

static void test_byte_by_byte(void **state)
{
    world *w = *state;
    start(w);
    static const char r[] = "POST /slow HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
                            "Connection: close\r\n\r\nbody";
    tclient c;
    connect_send(w, &c, NULL, 0);
    run_until(&w->loop, &c.opened, 3000);
    for (size_t i = 0; i < sizeof(r) - 1; i++) {
        proxy_stream_write(c.s, r + i, 1);
        run_for(&w->loop, 1);
    }
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_non_null(strstr(c.got.ptr, "POST /slow len=4"));
    tclient_dispose(&c, &w->loop);
}

static void test_head_has_no_body(void **state)
{
    world *w = *state;
    start(w);
    tclient c;
    CONNECT_SEND(w, &c, "HEAD /h HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_non_null(strstr(c.got.ptr, "Content-Length: 24\r\n"));
    assert_int_equal(strlen(strstr(c.got.ptr, "\r\n\r\n")), 4);
    tclient_dispose(&c, &w->loop);
}

static void test_http10_closes(void **state)
{
    world *w = *state;
    start(w);
    tclient c;
    CONNECT_SEND(w, &c, "GET /old HTTP/1.0\r\n\r\n");
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_non_null(strstr(c.got.ptr, "GET /old len=0"));
    assert_non_null(strstr(c.got.ptr, "Connection: close"));
    tclient_dispose(&c, &w->loop);
    /* and keeps alive when asked to */
    CONNECT_SEND(w, &c, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    wait_responses(w, &c, 1);
    assert_non_null(strstr(c.got.ptr, "Connection: keep-alive"));
    assert_false(c.closed);
    tclient_dispose(&c, &w->loop);
}

/* A plain blocking TCP socket to the server (for what the stream API does not do). */
static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", port, &a);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void test_half_close_after_request_still_answered(void **state)
{
    world *w = *state;
    w->ts.hold = true;
    start(w);
    int fd = raw_connect(w->ts.port);
    static const char r[] = REQ("/half");
    assert_int_equal(write(fd, r, sizeof(r) - 1), (ssize_t)sizeof(r) - 1);
    while (w->ts.requests < 1)
        uv_run(&w->loop, UV_RUN_ONCE);
    /* FIN from the client while its request is being handled */
    shutdown(fd, SHUT_WR);
    run_for(&w->loop, 50);
    proxy_header h[1] = {{{"X-A", 3}, {"1", 1}}};
    assert_int_equal(proxy_http_respond(w->ts.held, 200, h, 1, "late", 4), 0);
    run_for(&w->loop, 50);
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "X-A: 1\r\n"));
    assert_non_null(strstr(buf, "Connection: close\r\n"));
    assert_non_null(strstr(buf, "\r\n\r\nlate"));
    assert_int_equal(recv(fd, buf, sizeof(buf), MSG_DONTWAIT), 0); /* and the server closed */
    close(fd);
}

/* ---- errors the server answers -------------------------------------------------------------- */

static void test_bad_request_closes_and_server_survives(void **state)
{
    world *w = *state;
    start(w);
    tclient c;
    CONNECT_SEND(w, &c, "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n" REQ("/after"));
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 400 Bad Request\r\n"));
    assert_non_null(strstr(c.got.ptr, "Connection: close\r\n"));
    assert_non_null(strstr(c.got.ptr, "obs-fold"));
    assert_null(strstr(c.got.ptr, "/after")); /* nothing after a bad head is served */
    assert_int_equal(w->ts.requests, 0);
    tclient_dispose(&c, &w->loop);
    CONNECT_SEND(w, &c, REQ_CLOSE("/next"));
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_non_null(strstr(c.got.ptr, "GET /next len=0"));
    tclient_dispose(&c, &w->loop);
}

static void expect_answer(world *w, const char *req, const char *status_line)
{
    tclient c;
    connect_send(w, &c, req, strlen(req));
    assert_true(run_until(&w->loop, &c.closed, 3000));
    if (c.got.ptr == NULL || strstr(c.got.ptr, status_line) != c.got.ptr)
        fail_msg("expected \"%s\", got \"%.80s\"", status_line, c.got.ptr ? c.got.ptr : "");
    assert_int_equal(w->ts.requests, 0);
    tclient_dispose(&c, &w->loop);
}

static void test_protocol_errors(void **state)
{
    world *w = *state;
    start(w);
    expect_answer(w, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                  "HTTP/1.1 501 ");
    expect_answer(w, "GET / HTTP/2.0\r\nHost: h\r\n\r\n", "HTTP/1.1 505 ");
    expect_answer(w, "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
                  "HTTP/1.1 400 ");
    expect_answer(w, "GET / HTTP/1.1\r\nHost: h\r\nExpect: nothing\r\n\r\n", "HTTP/1.1 417 ");
    char *big = malloc(70000);
    int n = sprintf(big, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    memset(big + n, 'x', 70000 - (size_t)n - 5);
    memcpy(big + 70000 - 5, "\r\n\r\n", 5);
    expect_answer(w, big, "HTTP/1.1 431 ");
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', 9000);
    strcpy(big + 9005, " HTTP/1.1\r\nHost: h\r\n\r\n");
    expect_answer(w, big, "HTTP/1.1 414 ");
    free(big);
}

static void test_body_too_large_answered_before_the_body(void **state)
{
    world *w = *state;
    start(w);
    tclient c;
    CONNECT_SEND(w, &c,
                 "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                 "Content-Length: 65537\r\n\r\n");
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 413 "));
    assert_null(strstr(c.got.ptr, "100 Continue"));
    tclient_dispose(&c, &w->loop);
}

static void test_100_continue(void **state)
{
    world *w = *state;
    start(w);
    tclient c;
    CONNECT_SEND(w, &c,
                 "POST /c HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
                 "Content-Length: 5\r\nConnection: close\r\n\r\n");
    while (c.got.len == 0 && !c.closed)
        uv_run(&w->loop, UV_RUN_ONCE);
    assert_string_equal(c.got.ptr, "HTTP/1.1 100 Continue\r\n\r\n");
    proxy_stream_write(c.s, "12345", 5);
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_non_null(strstr(c.got.ptr, "POST /c len=5"));
    tclient_dispose(&c, &w->loop);
}

static void render_json(int status, const char *reason, const proxy_peer *peer, ward_buf *body,
                        void *data)
{
    ward_buf_printf(body, "{\"status\":%d,\"reason\":\"%s\"}", status, reason);
}

static void test_error_bodies_rendered_by_the_application(void **state)
{
    world *w = *state;
    w->o.on_error = render_json;
    w->o.error_content_type = "application/json";
    start(w);
    tclient c;
    CONNECT_SEND(w, &c, "GET / HTTP/1.1\r\nHost : h\r\n\r\n");
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_non_null(strstr(c.got.ptr, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(c.got.ptr, "{\"status\":400,\"reason\":\"whitespace before colon"));
    tclient_dispose(&c, &w->loop);
}

static void test_invalid_response_headers_become_500(void **state)
{
    world *w = *state;
    w->ts.hold = true;
    start(w);
    tclient c;
    CONNECT_SEND(w, &c, REQ("/x"));
    while (w->ts.requests < 1)
        uv_run(&w->loop, UV_RUN_ONCE);
    proxy_header h[1] = {{{"X-A", 3}, {"a\r\nSet-Cookie: evil=1", 22}}};
    assert_int_equal(proxy_http_respond(w->ts.held, 200, h, 1, "x", 1), WARD_EINVAL);
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 500 "));
    assert_null(strstr(c.got.ptr, "evil"));
    tclient_dispose(&c, &w->loop);
}

/* ---- deadlines
 * ------------------------------------------------------------------------------------ */

static void test_header_deadline_408(void **state)
{
    world *w = *state;
    w->o.header_timeout_ms = 200;
    start(w);
    tclient c;
    CONNECT_SEND(w, &c, "GET /slow HTTP/1.1\r\nHost: h\r\n");
    /* dribbling bytes does not extend the deadline */
    for (int i = 0; i < 5 && !c.closed; i++) {
        run_for(&w->loop, 40);
        if (c.s != NULL)
            proxy_stream_write(c.s, "X: y\r\n", 6);
    }
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 408 "));
    tclient_dispose(&c, &w->loop);
}

static void test_body_deadline_408(void **state)
{
    world *w = *state;
    w->o.body_timeout_ms = 200;
    start(w);
    tclient c;
    CONNECT_SEND(w, &c, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_non_null(strstr(c.got.ptr, "HTTP/1.1 408 "));
    assert_int_equal(w->ts.requests, 0);
    tclient_dispose(&c, &w->loop);
}

static void test_silent_and_idle_connections_close_quietly(void **state)
{
    world *w = *state;
    w->o.header_timeout_ms = 150;
    w->o.idle_timeout_ms = 150;
    start(w);
    tclient silent, idle;
    connect_send(w, &silent, NULL, 0);
    CONNECT_SEND(w, &idle, REQ("/once"));
    wait_responses(w, &idle, 1);
    size_t got = idle.got.len;
    assert_true(run_until(&w->loop, &silent.closed, 3000));
    assert_true(run_until(&w->loop, &idle.closed, 3000));
    assert_int_equal(silent.got.len, 0);
    assert_int_equal(idle.got.len, got); /* no 408 for a connection between requests */
    tclient_dispose(&silent, &w->loop);
    tclient_dispose(&idle, &w->loop);
}

static void test_others_served_while_a_client_stalls(void **state)
{
    world *w = *state;
    start(w);
    tclient stall, c;
    CONNECT_SEND(w, &stall, "GET / HTTP/1.1\r\nHo");
    run_for(&w->loop, 20);
    for (int i = 0; i < 3; i++) {
        CONNECT_SEND(w, &c, REQ_CLOSE("/ok"));
        assert_true(run_until(&w->loop, &c.closed, 3000));
        assert_non_null(strstr(c.got.ptr, "GET /ok len=0"));
        tclient_dispose(&c, &w->loop);
    }
    assert_false(stall.closed);
    tclient_dispose(&stall, &w->loop);
}

/* ---- asynchronous answers
 * ---------------------------------------------------------------------------- */

static void test_async_answers_keep_order(void **state)
{
    world *w = *state;
    w->ts.hold = true;
    start(w);
    tclient c;
    CONNECT_SEND(w, &c, REQ("/a") REQ_CLOSE("/b"));
    run_for(&w->loop, 50);
    assert_int_equal(w->ts.requests, 1); /* /b waits for /a's answer */
    assert_int_equal(c.got.len, 0);
    proxy_http_respond(w->ts.held, 200, NULL, 0, "A", 1);
    run_for(&w->loop, 50);
    assert_int_equal(w->ts.requests, 2);
    proxy_slice path = proxy_http_exchange_request(w->ts.held)->path;
    assert_true(path.len == 2 && memcmp(path.ptr, "/b", 2) == 0);
    proxy_http_respond(w->ts.held, 200, NULL, 0, "B", 1);
    assert_true(run_until(&w->loop, &c.closed, 3000));
    assert_true(strstr(c.got.ptr, "\r\n\r\nA") < strstr(c.got.ptr, "\r\n\r\nB"));
    tclient_dispose(&c, &w->loop);
}

static void test_answer_after_the_client_left(void **state)
{
    world *w = *state;
    w->ts.hold = true;
    start(w);
    int fd = raw_connect(w->ts.port);
    static const char r[] = REQ("/gone");
    assert_int_equal(write(fd, r, sizeof(r) - 1), (ssize_t)sizeof(r) - 1);
    while (w->ts.requests < 1)
        uv_run(&w->loop, UV_RUN_ONCE);
    struct linger lg = {1, 0}; /* close with a reset */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
    run_for(&w->loop, 50);
    assert_int_equal(proxy_http_server_connections(w->ts.srv), 0);
    /* the exchange outlived its connection: answering it sends nothing and frees it */
    assert_non_null(strstr(proxy_http_exchange_peer(w->ts.held)->addr, "127.0.0.1:"));
    assert_int_equal(proxy_http_respond(w->ts.held, 200, NULL, 0, "x", 1), 0);
}

static void test_client_gone_after_fin_is_answered_then_closed(void **state)
{
    world *w = *state;
    w->ts.hold = true;
    start(w);
    tclient c;
    CONNECT_SEND(w, &c, REQ("/fin"));
    while (w->ts.requests < 1)
        uv_run(&w->loop, UV_RUN_ONCE);
    tclient_dispose(&c, &w->loop); /* FIN: maybe only a half-close, so the answer is still due */
    run_for(&w->loop, 50);
    assert_int_equal(proxy_http_respond(w->ts.held, 200, NULL, 0, "x", 1), 0);
    run_for(&w->loop, 100);
    assert_int_equal(proxy_http_server_connections(w->ts.srv), 0);
}

/* ---- connection limits, Unix sockets, closing
 * --------------------------------------------------------- */

static void test_max_connections(void **state)
{
    world *w = *state;
    w->o.max_connections = 1;
    start(w);
    tclient a, b;
    CONNECT_SEND(w, &a, REQ("/a"));
    wait_responses(w, &a, 1);
    CONNECT_SEND(w, &b, REQ("/b"));
    assert_true(run_until(&w->loop, &b.closed, 3000));
    assert_int_equal(b.got.len, 0);
    assert_false(a.closed);
    tclient_dispose(&a, &w->loop);
    tclient_dispose(&b, &w->loop);
}

static void test_unix_socket_mode_and_peer_credentials(void **state)
{
    world *w = *state;
    char dir[] = "/tmp/ward-proxy-sock-XXXXXX", path[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/admin.sock", dir);
    /* a stale socket file is replaced; a regular file is not */
    FILE *f = fopen(path, "w");
    fclose(f);
    w->o.handler = ts_handler;
    w->o.data = &w->ts;
    assert_int_equal(proxy_http_server_new(&w->loop, &w->o, &w->ts.srv), 0);
    ward_err err;
    assert_int_equal(proxy_http_server_listen_unix(w->ts.srv, path, &err), WARD_EINVAL);
    unlink(path);
    assert_int_equal(proxy_http_server_listen_unix(w->ts.srv, path, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%.100s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    static const char r[] = REQ_CLOSE("/admin");
    assert_int_equal(write(fd, r, sizeof(r) - 1), (ssize_t)sizeof(r) - 1);
    while (w->ts.requests < 1)
        uv_run(&w->loop, UV_RUN_ONCE);
    run_for(&w->loop, 50);
    char buf[1024];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "GET /admin len=0"));
    assert_true(w->ts.last_peer.is_unix);
    assert_true(w->ts.last_peer.has_cred);
    assert_int_equal(w->ts.last_peer.uid, getuid());
    assert_int_equal(w->ts.last_peer.pid, getpid());
    close(fd);
    tserver_stop(&w->ts, &w->loop);
    unlink(path);
    rmdir(dir);
}

static void test_graceful_close_waits_for_busy_connections(void **state)
{
    world *w = *state;
    w->ts.hold = true;
    start(w);
    tclient idle, busy;
    connect_send(w, &idle, NULL, 0);
    CONNECT_SEND(w, &busy, REQ("/busy"));
    while (w->ts.requests < 1)
        uv_run(&w->loop, UV_RUN_ONCE);
    proxy_http_server_close(w->ts.srv, false, ts_done, &w->ts);
    assert_true(run_until(&w->loop, &idle.closed, 3000));
    assert_false(w->ts.done);
    proxy_http_respond(w->ts.held, 200, NULL, 0, "bye", 3);
    assert_true(run_until(&w->loop, &w->ts.done, 3000));
    assert_true(run_until(&w->loop, &busy.closed, 3000));
    assert_non_null(strstr(busy.got.ptr, "Connection: close\r\n"));
    assert_non_null(strstr(busy.got.ptr, "\r\n\r\nbye"));
    tclient_dispose(&idle, &w->loop);
    tclient_dispose(&busy, &w->loop);
}

static void test_forced_close(void **state)
{
    world *w = *state;
    w->ts.hold = true;
    start(w);
    tclient busy;
    CONNECT_SEND(w, &busy, REQ("/busy"));
    while (w->ts.requests < 1)
        uv_run(&w->loop, UV_RUN_ONCE);
    proxy_http_exchange *held = w->ts.held;
    proxy_http_server_close(w->ts.srv, true, ts_done, &w->ts);
    assert_true(run_until(&w->loop, &w->ts.done, 3000));
    assert_true(run_until(&w->loop, &busy.closed, 3000));
    proxy_http_respond(held, 200, NULL, 0, NULL, 0); /* frees it */
    tclient_dispose(&busy, &w->loop);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_keep_alive),
        T(test_pipelined_in_order),
        T(test_byte_by_byte),
        T(test_head_has_no_body),
        T(test_http10_closes),
        T(test_half_close_after_request_still_answered),
        T(test_bad_request_closes_and_server_survives),
        T(test_protocol_errors),
        T(test_body_too_large_answered_before_the_body),
        T(test_100_continue),
        T(test_error_bodies_rendered_by_the_application),
        T(test_invalid_response_headers_become_500),
        T(test_header_deadline_408),
        T(test_body_deadline_408),
        T(test_silent_and_idle_connections_close_quietly),
        T(test_others_served_while_a_client_stalls),
        T(test_async_answers_keep_order),
        T(test_answer_after_the_client_left),
        T(test_client_gone_after_fin_is_answered_then_closed),
        T(test_max_connections),
        T(test_unix_socket_mode_and_peer_credentials),
        T(test_graceful_close_waits_for_busy_connections),
        T(test_forced_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
