/* test_admin.c - unit tests of the admin endpoint over real sockets: paths, methods, loopback */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "proxy/proxy.h"

#define PAYMENTS "spiffe://example.org/ns/shop/sa/payments"
#define SECRET   "JOIN-TOKEN-a1b2c3d4e5f6-do-not-leak"

typedef struct world {
    char dir[64];
    proxy_config *cfg;
    proxy_metrics *m[2];
    proxy_admin_state *st;
    proxy_admin *admin;
    int port;
} world;

static void write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

static proxy_config *load_config(const char *dir)
{
    static const char yaml[] = "service: payments\n"
                               "identity:\n"
                               "  server: https://127.0.0.1:8443\n"
                               "  token_file: payments.token\n"
                               "  bundle_file: bundle.pem\n"
                               "inbound: {listen: 0.0.0.0:15006, app: 127.0.0.1:8080}\n"
                               "outbound: {listen: 127.0.0.1:15001}\n"
                               "upstreams:\n"
                               "  - service: inventory\n"
                               "    endpoints: [127.0.0.1:16006]\n"
                               "    spiffe_id: spiffe://example.org/ns/shop/sa/inventory\n"
                               "audit: {dir: audit}\n"
                               "policy: {paths: [policies]}\n"
                               "workers: 2\n";
    write_file(dir, "payments.token", SECRET "\n", 0600);
    write_file(dir, "bundle.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
    char sub[128];
    snprintf(sub, sizeof(sub), "%s/policies", dir);
    mkdir(sub, 0700);
    char name[128];
    snprintf(name, sizeof(name), "%s/proxy.yaml", dir);
    proxy_config *cfg = NULL;
    ward_diag d;
    ward_diag_init(&d);
    int rc = proxy_config_load_buffer(name, yaml, sizeof(yaml) - 1, &cfg, &d);
    for (size_t i = 0; i < d.n; i++)
        fprintf(stderr, "  %s\n", d.msgs[i]);
    ward_diag_dispose(&d);
    assert_int_equal(rc, 0);
    return cfg;
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof(*w));
    snprintf(w->dir, sizeof(w->dir), "/tmp/ward-admin-test-XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    w->cfg = load_config(w->dir);
    assert_int_equal(proxy_metrics_new(&w->m[0]), 0);
    assert_int_equal(proxy_metrics_new(&w->m[1]), 0);
    assert_int_equal(proxy_admin_state_new(&w->st), 0);
    proxy_admin_options o = {.metrics = w->m, .n_metrics = 2, .config = w->cfg, .state = w->st};
    ward_err err;
    if (proxy_admin_start("127.0.0.1:0", &o, &w->admin, &err) < 0)
        fail_msg("proxy_admin_start: %s", err.msg);
    w->port = proxy_admin_port(w->admin);
    assert_true(w->port > 0);
    *state = w;
    return 0;
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int teardown(void **state)
{
    world *w = *state;
    proxy_admin_stop(w->admin);
    proxy_admin_state_free(w->st);
    proxy_metrics_free(w->m[0]);
    proxy_metrics_free(w->m[1]);
    proxy_config_free(w->cfg);
    nftw(w->dir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
    free(w);
    return 0;
}

/* ---- a plain blocking client ----------------------------------------------------------------- */

typedef struct resp {
    int status;
    char *raw;  /* everything received */
    char *body; /* into raw */
    size_t body_len;
} resp;

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void send_all(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        assert_true(n > 0);
        s += n;
        len -= (size_t)n;
    }
}

/* Sends one request with Connection: close and reads the response to EOF. */
static resp fetch(world *w, const char *method, const char *path)
{
    int fd = dial(w->port);
    char req[512];
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
             method, path);
    send_all(fd, req);
    ward_buf b;
    ward_buf_init(&b);
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
        ward_buf_append(&b, buf, (size_t)n);
    close(fd);
    assert_true(b.len > 12);
    resp r;
    memset(&r, 0, sizeof(r));
    r.raw = ward_buf_steal(&b);
    assert_int_equal(strncmp(r.raw, "HTTP/1.1 ", 9), 0);
    r.status = atoi(r.raw + 9);
    char *end = strstr(r.raw, "\r\n\r\n");
    assert_non_null(end);
    r.body = end + 4;
    r.body_len = strlen(r.body);
    return r;
}

/* The value of a response header (case as sent by the server), or NULL. */
static const char *header(const resp *r, const char *name, char *out, size_t size)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "\r\n%s: ", name);
    const char *p = strstr(r->raw, needle);
    if (p == NULL || p > r->body)
        return NULL;
    p += strlen(needle);
    const char *e = strstr(p, "\r\n");
    snprintf(out, size, "%.*s", (int)(e - p), p);
    return out;
}

static void resp_free(resp *r)
{
    free(r->raw);
}

/* ---- the endpoints --------------------------------------------------------------------------- */

static void test_healthz(void **state)
{
    world *w = *state;
    resp r = fetch(w, "GET", "/healthz");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    char v[128];
    assert_string_equal(header(&r, "Content-Type", v, sizeof(v)), "text/plain; charset=utf-8");
    resp_free(&r);
    /* a query string does not change the path */
    r = fetch(w, "GET", "/healthz?verbose=1");
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void test_ready_then_not(void **state)
{
    world *w = *state;
    resp r = fetch(w, "GET", "/ready");
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready: no SVID; no policy loaded\n");
    resp_free(&r);

    proxy_admin_state_set_svid(w->st, PAYMENTS, time(NULL) + 3600);
    r = fetch(w, "GET", "/ready");
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready: no policy loaded\n");
    resp_free(&r);

    const char *names[] = {"shop/payments-read", "shop/deny-debug"};
    assert_int_equal(proxy_admin_state_policy_loaded(w->st, "rev-1", names, 2), 0);
    r = fetch(w, "GET", "/ready");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ready\n");
    resp_free(&r);

    /* a fatal audit error takes readiness away, and says why */
    proxy_admin_state_set_audit_error(w->st, "audit/0001.log: No space left on device");
    r = fetch(w, "GET", "/ready");
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready: audit: audit/0001.log: No space left on device\n");
    resp_free(&r);
    proxy_admin_state_set_audit_error(w->st, NULL);
    r = fetch(w, "GET", "/ready");
    assert_int_equal(r.status, 200);
    resp_free(&r);

    /* an expired SVID is no SVID */
    proxy_admin_state_set_svid(w->st, PAYMENTS, time(NULL) - 10);
    r = fetch(w, "GET", "/ready");
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "the SVID expired at "));
    resp_free(&r);
}

static void test_metrics_endpoint(void **state)
{
    world *w = *state;
    /* the workers' counters, written before the scrape (the admin thread reads them) */
    proxy_metrics_request_info i = {.inbound = true,
                                    .allow = false,
                                    .status = 403,
                                    .source_principal = "spiffe://example.org/ns/x/sa/evil",
                                    .destination_service = "payments",
                                    .destination_principal = PAYMENTS,
                                    .decision_ns = 1200,
                                    .request_ns = 40000};
    proxy_metrics_request(w->m[0], &i);
    proxy_metrics_request(w->m[1], &i);
    proxy_admin_state_set_svid(w->st, PAYMENTS, 1900000000);
    resp r = fetch(w, "GET", "/metrics");
    assert_int_equal(r.status, 200);
    char v[128];
    assert_string_equal(header(&r, "Content-Type", v, sizeof(v)),
                        "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body, "# TYPE ward_requests_total counter\n"));
    assert_non_null(strstr(r.body, "ward_requests_total{direction=\"inbound\",decision=\"deny\","
                                   "code=\"403\",source_principal=\"spiffe://example.org/ns/x/sa/"
                                   "evil\",destination_service=\"payments\",destination_principal"
                                   "=\"" PAYMENTS "\"} 2\n"));
    assert_non_null(strstr(r.body, "ward_svid_expiry_timestamp_seconds 1900000000\n"));
    char len[32];
    assert_non_null(header(&r, "Content-Length", len, sizeof(len)));
    assert_int_equal(strtoul(len, NULL, 10), r.body_len);
    resp_free(&r);
}

static void test_config_has_no_secrets(void **state)
{
    world *w = *state;
    resp r = fetch(w, "GET", "/config");
    assert_int_equal(r.status, 200);
    char v[128];
    assert_string_equal(header(&r, "Content-Type", v, sizeof(v)), "application/json");
    assert_null(strstr(r.body, SECRET));
    assert_null(strstr(r.body, "JOIN-TOKEN"));
    assert_null(strstr(r.body, "BEGIN CERTIFICATE"));
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "service")->valuestring, "payments");
    cJSON *aud = cJSON_GetObjectItem(j, "audit"); /* with the defaults filled in */
    assert_string_equal(cJSON_GetObjectItem(aud, "overflow")->valuestring, "deny");
    assert_int_equal(cJSON_GetObjectItem(aud, "queue_records")->valueint, 1024);
    cJSON *id = cJSON_GetObjectItem(j, "identity");
    assert_string_equal(cJSON_GetObjectItem(id, "mode")->valuestring, "wardd");
    char want[160];
    snprintf(want, sizeof(want), "%s/payments.token", w->dir);
    assert_string_equal(cJSON_GetObjectItem(id, "token_file")->valuestring, want);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "inbound"), "listen")->valuestring,
        "0.0.0.0:15006");
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "inbound"), "timeouts"),
                            "header_read")
            ->valuestring,
        "10s");
    cJSON *up = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "upstreams"), 0);
    assert_string_equal(cJSON_GetObjectItem(up, "service")->valuestring, "inventory");
    assert_string_equal(cJSON_GetObjectItem(up, "spiffe_id")->valuestring,
                        "spiffe://example.org/ns/shop/sa/inventory");
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "policy"), "default")->valuestring, "deny");
    assert_int_equal(cJSON_GetObjectItem(j, "workers")->valueint, 2);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "limits"), "max_body")->valuestring,
        "unlimited");
    cJSON_Delete(j);
    resp_free(&r);
}

static void test_policy_endpoint(void **state)
{
    world *w = *state;
    resp r = fetch(w, "GET", "/policy");
    assert_int_equal(r.status, 200);
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "loaded")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "revision")));
    cJSON_Delete(j);
    resp_free(&r);

    const char *v1[] = {"shop/a"};
    const char *v2[] = {"shop/a", "shop/b \"quoted\""};
    assert_int_equal(proxy_admin_state_policy_loaded(w->st, "rev-1", v1, 1), 0);
    assert_int_equal(proxy_admin_state_policy_loaded(w->st, "rev-2", v2, 2), 0);
    proxy_admin_state_policy_failed(w->st, "policy.yaml:4:3: spec.action: must be ALLOW");
    r = fetch(w, "GET", "/policy");
    assert_int_equal(r.status, 200);
    j = cJSON_Parse(r.body);
    assert_non_null(j);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "loaded")));
    assert_string_equal(cJSON_GetObjectItem(j, "revision")->valuestring, "rev-2");
    cJSON *names = cJSON_GetObjectItem(j, "policies");
    assert_int_equal(cJSON_GetArraySize(names), 2);
    assert_string_equal(cJSON_GetArrayItem(names, 1)->valuestring, "shop/b \"quoted\"");
    assert_int_equal(cJSON_GetObjectItem(j, "reloads")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(j, "reload_failures")->valueint, 1);
    assert_string_equal(cJSON_GetObjectItem(j, "last_reload_error")->valuestring,
                        "policy.yaml:4:3: spec.action: must be ALLOW");
    assert_non_null(cJSON_GetObjectItem(j, "loaded_at")->valuestring);
    cJSON_Delete(j);
    resp_free(&r);

    /* the next good reload clears the error */
    assert_int_equal(proxy_admin_state_policy_loaded(w->st, "rev-3", v1, 1), 0);
    r = fetch(w, "GET", "/policy");
    j = cJSON_Parse(r.body);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "last_reload_error")));
    assert_int_equal(cJSON_GetObjectItem(j, "reloads")->valueint, 2);
    cJSON_Delete(j);
    resp_free(&r);
}

static void test_unknown_path_404(void **state)
{
    world *w = *state;
    const char *paths[] = {"/", "/metricsx", "/metrics/", "/admin", "/READY", "/config.json"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        resp r = fetch(w, "GET", paths[i]);
        if (r.status != 404)
            fail_msg("%s: %d", paths[i], r.status);
        resp_free(&r);
    }
}

static void test_methods(void **state)
{
    world *w = *state;
    const char *methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        resp r = fetch(w, methods[i], "/metrics");
        if (r.status != 405)
            fail_msg("%s: %d", methods[i], r.status);
        char v[64];
        assert_string_equal(header(&r, "Allow", v, sizeof(v)), "GET, HEAD");
        resp_free(&r);
    }
    /* HEAD: the headers of GET, no body */
    resp r = fetch(w, "HEAD", "/healthz");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    char v[32];
    assert_string_equal(header(&r, "Content-Length", v, sizeof(v)), "3");
    resp_free(&r);
}

/* Keep-alive: several requests on one connection; then stopping with the
 * connection still open does not hang. */
static void test_keep_alive_and_stop(void **state)
{
    world *w = *state;
    int fd = dial(w->port);
    send_all(fd, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /ready HTTP/1.1\r\nHost: a\r\n\r\n");
    ward_buf b;
    ward_buf_init(&b);
    char buf[4096];
    while (b.len == 0 || strstr(b.ptr, "not ready") == NULL) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        assert_true(n > 0);
        ward_buf_append(&b, buf, (size_t)n);
    }
    assert_non_null(strstr(b.ptr, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(b.ptr, "HTTP/1.1 503 "));
    ward_buf_dispose(&b);
    proxy_admin_stop(w->admin); /* the connection is still open */
    w->admin = NULL;
    /* the server closed it */
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    assert_true(n <= 0);
    close(fd);
}

/* ---- the listen address ---------------------------------------------------------------------- */

static void test_non_loopback_refused(void **state)
{
    world *w = *state;
    proxy_admin_options o = {.metrics = w->m, .n_metrics = 2, .config = w->cfg, .state = w->st};
    const char *bad[] = {"0.0.0.0:0",   "10.1.2.3:0",      "192.168.0.1:15000",
                         "[::]:0",      "[2001:db8::1]:0", "[::ffff:127.0.0.1]:0",
                         "localhost:0", "127.0.0.1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        proxy_admin *a = NULL;
        ward_err err;
        ward_err_clear(&err);
        int rc = proxy_admin_start(bad[i], &o, &a, &err);
        if (rc != WARD_EINVAL)
            fail_msg("%s: rc %d", bad[i], rc);
        assert_null(a);
        assert_true(err.msg[0] != '\0');
    }
    ward_err err;
    proxy_admin *a = NULL;
    assert_int_equal(proxy_admin_start("0.0.0.0:0", &o, &a, &err), WARD_EINVAL);
    assert_non_null(strstr(err.msg, "not a loopback address"));
    /* no state: refused */
    proxy_admin_options none = {.metrics = w->m, .n_metrics = 2, .config = w->cfg, .state = NULL};
    assert_int_equal(proxy_admin_start("127.0.0.1:0", &none, &a, &err), WARD_EINVAL);
}

/* Other loopback addresses are fine; a port in use is an error, not a crash. */
static void test_other_loopback_and_busy_port(void **state)
{
    world *w = *state;
    proxy_admin_options o = {.metrics = w->m, .n_metrics = 2, .config = NULL, .state = w->st};
    proxy_admin *a = NULL;
    ward_err err;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", w->port);
    assert_int_equal(proxy_admin_start(addr, &o, &a, &err), WARD_EIO);
    assert_null(a);
    assert_non_null(strstr(err.msg, addr));

    if (proxy_admin_start("127.0.0.2:0", &o, &a, &err) < 0)
        fail_msg("127.0.0.2: %s", err.msg);
    int port = proxy_admin_port(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, "127.0.0.2", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    send_all(fd, "GET /config HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "HTTP/1.1 404 ")); /* no config given */
    close(fd);
    proxy_admin_stop(a);

    if (proxy_admin_start("[::1]:0", &o, &a, &err) == 0)
        proxy_admin_stop(a);
    else /* a host without IPv6: refused by bind, not by the loopback check */
        assert_null(strstr(err.msg, "loopback"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_healthz),
        T(test_ready_then_not),
        T(test_metrics_endpoint),
        T(test_config_has_no_secrets),
        T(test_policy_endpoint),
        T(test_unknown_path_404),
        T(test_methods),
        T(test_keep_alive_and_stop),
        T(test_non_loopback_refused),
        T(test_other_loopback_and_busy_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
