/* admin.c - the admin endpoint: readiness, health, metrics, config and policy on loopback */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the state the proxy reports ------------------------------------------------------------- */

struct proxy_admin_state {
    pthread_mutex_t mu;
    proxy_admin_status s; /* policies owned here */
    uint64_t loads;       /* successful policy loads, the first included */
};

int proxy_admin_state_new(proxy_admin_state **out)
{
    proxy_admin_state *st = calloc(1, sizeof(*st));
    *out = NULL;
    if (st == NULL)
        return WARD_ENOMEM;
    if (pthread_mutex_init(&st->mu, NULL) != 0) {
        free(st);
        return WARD_ENOMEM;
    }
    *out = st;
    return 0;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

void proxy_admin_state_free(proxy_admin_state *st)
{
    if (st == NULL)
        return;
    free_names(st->s.policies, st->s.n_policies);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

void proxy_admin_state_set_svid(proxy_admin_state *st, const char *spiffe_id, time_t not_after)
{
    pthread_mutex_lock(&st->mu);
    st->s.has_svid = spiffe_id != NULL;
    snprintf(st->s.svid_id, sizeof(st->s.svid_id), "%s", spiffe_id ? spiffe_id : "");
    st->s.svid_expiry = spiffe_id ? not_after : 0;
    pthread_mutex_unlock(&st->mu);
}

static int copy_names(const char *const *src, size_t n, char ***out)
{
    *out = NULL;
    if (n == 0)
        return 0;
    char **names = calloc(n, sizeof(*names));
    if (names == NULL)
        return WARD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        names[i] = strdup(src[i] ? src[i] : "");
        if (names[i] == NULL) {
            free_names(names, i);
            return WARD_ENOMEM;
        }
    }
    *out = names;
    return 0;
}

int proxy_admin_state_policy_loaded(proxy_admin_state *st, const char *revision,
                                    const char *const *policies, size_t n)
{
    char **names;
    if (copy_names(policies, n, &names) < 0)
        return WARD_ENOMEM;
    pthread_mutex_lock(&st->mu);
    char **old = st->s.policies;
    size_t n_old = st->s.n_policies;
    st->s.policies = names;
    st->s.n_policies = n;
    st->s.has_policy = true;
    snprintf(st->s.policy_revision, sizeof(st->s.policy_revision), "%s", revision ? revision : "");
    st->s.policy_loaded_at = time(NULL);
    st->loads++;
    st->s.policy_reloads = st->loads - 1;
    st->s.policy_error[0] = '\0';
    pthread_mutex_unlock(&st->mu);
    free_names(old, n_old);
    return 0;
}

void proxy_admin_state_policy_failed(proxy_admin_state *st, const char *error)
{
    pthread_mutex_lock(&st->mu);
    st->s.policy_reload_failures++;
    snprintf(st->s.policy_error, sizeof(st->s.policy_error), "%s",
             error && *error ? error : "unknown error");
    pthread_mutex_unlock(&st->mu);
}

void proxy_admin_state_set_audit_error(proxy_admin_state *st, const char *error)
{
    pthread_mutex_lock(&st->mu);
    snprintf(st->s.audit_error, sizeof(st->s.audit_error), "%s",
             error == NULL ? ""
             : *error      ? error
                           : "unknown error");
    pthread_mutex_unlock(&st->mu);
}

int proxy_admin_state_get(proxy_admin_state *st, proxy_admin_status *out)
{
    int rc = 0;
    pthread_mutex_lock(&st->mu);
    *out = st->s;
    out->policies = NULL;
    out->n_policies = 0;
    rc = copy_names((const char *const *)st->s.policies, st->s.n_policies, &out->policies);
    if (rc == 0)
        out->n_policies = st->s.n_policies;
    pthread_mutex_unlock(&st->mu);
    return rc;
}

void proxy_admin_status_dispose(proxy_admin_status *s)
{
    free_names(s->policies, s->n_policies);
    s->policies = NULL;
    s->n_policies = 0;
}

static void format_time(time_t t, char *buf, size_t size)
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "%lld", (long long)t);
}

bool proxy_admin_status_ready(const proxy_admin_status *s, time_t now, char *why, size_t size)
{
    size_t len = 0;
    char t[32];
    if (size > 0)
        why[0] = '\0';
#define WHY(...)                                                                                   \
    do {                                                                                           \
        if (len < size) {                                                                          \
            int n_ = snprintf(why + len, size - len, "%s", len > 0 ? "; " : "");                   \
            if (n_ > 0)                                                                            \
                len += (size_t)n_;                                                                 \
        }                                                                                          \
        if (len < size) {                                                                          \
            int n_ = snprintf(why + len, size - len, __VA_ARGS__);                                 \
            if (n_ > 0)                                                                            \
                len += (size_t)n_;                                                                 \
        }                                                                                          \
    } while (0)
    bool ready = true;
    if (!s->has_svid) {
        WHY("no SVID");
        ready = false;
    } else if (s->svid_expiry <= now) {
        format_time(s->svid_expiry, t, sizeof(t));
        WHY("the SVID expired at %s", t);
        ready = false;
    }
    if (!s->has_policy) {
        WHY("no policy loaded");
        ready = false;
    }
    if (s->audit_error[0] != '\0') {
        WHY("audit: %s", s->audit_error);
        ready = false;
    }
#undef WHY
    return ready;
}

/* ---- JSON documents -------------------------------------------------------------------------- */

static void put_str(cJSON *o, const char *key, const char *v)
{
    if (v != NULL)
        cJSON_AddStringToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static void put_strs(cJSON *o, const char *key, char *const *v, size_t n)
{
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (size_t i = 0; a != NULL && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
}

/* 90000 -> "1m30s", 250 -> "250ms", 0 -> "0s": the config file's units. */
static void format_ms(uint64_t ms, char *buf, size_t size)
{
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
    size_t len = 0;
    buf[0] = '\0';
    if (ms == 0) {
        snprintf(buf, size, "0s");
        return;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && len < size; i++) {
        if (ms < units[i].ms)
            continue;
        int n = snprintf(buf + len, size - len, "%llu%s", (unsigned long long)(ms / units[i].ms),
                         units[i].unit);
        if (n > 0)
            len += (size_t)n;
        ms %= units[i].ms;
    }
}

static void put_ms(cJSON *o, const char *key, uint64_t ms)
{
    char buf[64];
    format_ms(ms, buf, sizeof(buf));
    cJSON_AddStringToObject(o, key, buf);
}

static void put_timeouts(cJSON *o, const proxy_config_timeouts *t)
{
    cJSON *j = cJSON_AddObjectToObject(o, "timeouts");
    if (j == NULL)
        return;
    put_ms(j, "header_read", t->header_read_ms);
    put_ms(j, "idle", t->idle_ms);
    put_ms(j, "upstream_connect", t->upstream_connect_ms);
    put_ms(j, "request", t->request_ms);
}

/* The effective configuration, in the config file's shape. Only file NAMES:
 * proxy_config never holds a key or a token, and nothing here reads a file. */
static cJSON *config_json(const proxy_config *c)
{
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        return NULL;
    put_str(root, "file", c->file);
    put_str(root, "service", c->service);
    cJSON *id = cJSON_AddObjectToObject(root, "identity");
    if (id != NULL) {
        if (c->identity.mode == PROXY_IDENTITY_WARDD) {
            cJSON_AddStringToObject(id, "mode", "wardd");
            put_str(id, "server", c->identity.server);
            put_str(id, "token_file", c->identity.token_file);
        } else {
            cJSON_AddStringToObject(id, "mode", "static");
            put_str(id, "cert_file", c->identity.cert_file);
            put_str(id, "key_file", c->identity.key_file);
        }
        put_str(id, "bundle_file", c->identity.bundle_file);
    }
    cJSON *in = cJSON_AddObjectToObject(root, "inbound");
    if (in != NULL) {
        put_str(in, "listen", c->inbound.listen);
        put_str(in, "app", c->inbound.app);
        put_timeouts(in, &c->inbound.timeouts);
    }
    if (c->outbound.listen != NULL) {
        cJSON *out = cJSON_AddObjectToObject(root, "outbound");
        if (out != NULL) {
            put_str(out, "listen", c->outbound.listen);
            put_timeouts(out, &c->outbound.timeouts);
        }
    } else {
        cJSON_AddNullToObject(root, "outbound");
    }
    cJSON *ups = cJSON_AddArrayToObject(root, "upstreams");
    for (size_t i = 0; ups != NULL && i < c->n_upstreams; i++) {
        const proxy_config_upstream *u = &c->upstreams[i];
        cJSON *j = cJSON_CreateObject();
        if (j == NULL)
            break;
        cJSON_AddItemToArray(ups, j);
        put_str(j, "service", u->service);
        put_strs(j, "endpoints", u->endpoints, u->n_endpoints);
        put_str(j, "spiffe_id", u->spiffe_id);
    }
    cJSON *pol = cJSON_AddObjectToObject(root, "policy");
    if (pol != NULL) {
        put_strs(pol, "paths", c->policy.paths, c->policy.n_paths);
        cJSON_AddStringToObject(pol, "default", c->policy.default_allow ? "allow" : "deny");
    }
    cJSON *aud = cJSON_AddObjectToObject(root, "audit");
    if (aud != NULL) {
        audit_options ao;
        audit_options_init(&ao);
        put_str(aud, "dir", c->audit.dir);
        cJSON_AddStringToObject(aud, "overflow", audit_overflow_name(c->audit.overflow));
        cJSON_AddNumberToObject(
            aud, "queue_records",
            (double)(c->audit.queue_records ? c->audit.queue_records : ao.ring_slots));
    }
    cJSON *adm = cJSON_AddObjectToObject(root, "admin");
    if (adm != NULL)
        put_str(adm, "listen", c->admin.listen);
    cJSON_AddNumberToObject(root, "workers", c->workers);
    cJSON_AddBoolToObject(root, "workers_auto", c->workers_auto);
    cJSON *to = cJSON_AddObjectToObject(root, "timeouts");
    if (to != NULL)
        put_ms(to, "drain", c->drain_ms);
    cJSON *lim = cJSON_AddObjectToObject(root, "limits");
    if (lim != NULL) {
        cJSON_AddNumberToObject(lim, "max_header_bytes", (double)c->limits.max_header_bytes);
        cJSON_AddNumberToObject(lim, "max_headers", (double)c->limits.max_headers);
        if (c->limits.max_body == PROXY_CONFIG_UNLIMITED)
            cJSON_AddStringToObject(lim, "max_body", "unlimited");
        else
            cJSON_AddNumberToObject(lim, "max_body", (double)c->limits.max_body);
        cJSON_AddNumberToObject(lim, "max_connections", (double)c->limits.max_connections);
    }
    cJSON *tls = cJSON_AddObjectToObject(root, "tls");
    if (tls != NULL)
        cJSON_AddStringToObject(tls, "min_version", c->tls.allow_tls12 ? "1.2" : "1.3");
    return root;
}

static cJSON *policy_json(const proxy_admin_status *s)
{
    char t[32];
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        return NULL;
    cJSON_AddBoolToObject(root, "loaded", s->has_policy);
    if (s->has_policy) {
        cJSON_AddStringToObject(root, "revision", s->policy_revision);
        format_time(s->policy_loaded_at, t, sizeof(t));
        cJSON_AddStringToObject(root, "loaded_at", t);
    } else {
        cJSON_AddNullToObject(root, "revision");
        cJSON_AddNullToObject(root, "loaded_at");
    }
    put_strs(root, "policies", s->policies, s->n_policies);
    cJSON_AddNumberToObject(root, "reloads", (double)s->policy_reloads);
    cJSON_AddNumberToObject(root, "reload_failures", (double)s->policy_reload_failures);
    put_str(root, "last_reload_error", s->policy_error[0] ? s->policy_error : NULL);
    return root;
}

/* ---- the server ------------------------------------------------------------------------------ */

struct proxy_admin {
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    proxy_http_server *srv;
    proxy_admin_options o;
    int port;
};

#define TEXT "text/plain; charset=utf-8"
#define JSON "application/json"

static void reply(proxy_http_exchange *ex, int status, const char *type, const char *body,
                  size_t len, bool allow)
{
    proxy_header h[3] = {
        {{"Content-Type", 12}, {type, strlen(type)}},
        {{"Cache-Control", 13}, {"no-store", 8}},
        {{"Allow", 5}, {"GET, HEAD", 9}},
    };
    proxy_http_respond(ex, status, h, allow ? 3 : 2, body, len);
}

static void reply_text(proxy_http_exchange *ex, int status, const char *text)
{
    reply(ex, status, TEXT, text, strlen(text), false);
}

static void reply_json(proxy_http_exchange *ex, cJSON *doc)
{
    char *s = doc != NULL ? cJSON_Print(doc) : NULL;
    cJSON_Delete(doc);
    if (s == NULL) {
        reply_text(ex, 500, "out of memory\n");
        return;
    }
    size_t len = strlen(s);
    ward_buf b;
    ward_buf_init(&b);
    if (ward_buf_append(&b, s, len) < 0 || ward_buf_putc(&b, '\n') < 0)
        reply_text(ex, 500, "out of memory\n");
    else
        reply(ex, 200, JSON, b.ptr, b.len, false);
    ward_buf_dispose(&b);
    cJSON_free(s);
}

static void serve_ready(proxy_admin *a, proxy_http_exchange *ex)
{
    proxy_admin_status s;
    char why[2048];
    if (proxy_admin_state_get(a->o.state, &s) < 0) {
        reply_text(ex, 503, "not ready: out of memory\n");
        return;
    }
    bool ready = proxy_admin_status_ready(&s, time(NULL), why, sizeof(why));
    proxy_admin_status_dispose(&s);
    if (ready) {
        reply_text(ex, 200, "ready\n");
        return;
    }
    ward_buf b;
    ward_buf_init(&b);
    if (ward_buf_printf(&b, "not ready: %s\n", why) < 0)
        reply_text(ex, 503, "not ready\n");
    else
        reply(ex, 503, TEXT, b.ptr, b.len, false);
    ward_buf_dispose(&b);
}

static void serve_metrics(proxy_admin *a, proxy_http_exchange *ex)
{
    ward_buf b;
    ward_buf_init(&b);
    if (proxy_metrics_render(a->o.metrics, a->o.n_metrics, a->o.state, &b) < 0 ||
        (a->o.n_clusters > 0 &&
         proxy_cluster_render_metrics(a->o.clusters, a->o.n_clusters, uv_now(&a->loop), &b) < 0) ||
        (a->o.more_metrics != NULL && a->o.more_metrics(&b, a->o.more_metrics_data) < 0))
        reply_text(ex, 500, "out of memory\n");
    else
        reply(ex, 200, PROXY_METRICS_CONTENT_TYPE, b.ptr, b.len, false);
    ward_buf_dispose(&b);
}

/* Endpoint health and counters of every upstream service, summed over the workers. */
static void serve_clusters(proxy_admin *a, proxy_http_exchange *ex)
{
    ward_buf b;
    ward_buf_init(&b);
    if (proxy_cluster_render_json(a->o.clusters, a->o.n_clusters, uv_now(&a->loop), &b) < 0)
        reply_text(ex, 500, "out of memory\n");
    else
        reply(ex, 200, "application/json", b.ptr, b.len, false);
    ward_buf_dispose(&b);
}

static void serve_policy(proxy_admin *a, proxy_http_exchange *ex)
{
    proxy_admin_status s;
    if (proxy_admin_state_get(a->o.state, &s) < 0) {
        reply_text(ex, 500, "out of memory\n");
        return;
    }
    reply_json(ex, policy_json(&s));
    proxy_admin_status_dispose(&s);
}

static bool slice_is(proxy_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.ptr, lit, n) == 0;
}

static void handle(proxy_http_exchange *ex, void *data)
{
    proxy_admin *a = data;
    const proxy_http_request *r = proxy_http_exchange_request(ex);
    enum { P_NONE, P_READY, P_HEALTHZ, P_METRICS, P_CONFIG, P_POLICY, P_CLUSTERS } p = P_NONE;
    if (r->target_form == PROXY_TARGET_ORIGIN || r->target_form == PROXY_TARGET_ABSOLUTE) {
        if (slice_is(r->path, "/ready"))
            p = P_READY;
        else if (slice_is(r->path, "/healthz"))
            p = P_HEALTHZ;
        else if (slice_is(r->path, "/metrics"))
            p = P_METRICS;
        else if (slice_is(r->path, "/config"))
            p = P_CONFIG;
        else if (slice_is(r->path, "/policy"))
            p = P_POLICY;
        else if (slice_is(r->path, "/clusters"))
            p = P_CLUSTERS;
    }
    if (p == P_NONE || (p == P_CONFIG && a->o.config == NULL)) {
        reply_text(ex, 404, "not found\n");
        return;
    }
    if (!slice_is(r->method, "GET") && !slice_is(r->method, "HEAD")) {
        static const char msg[] = "method not allowed\n";
        reply(ex, 405, TEXT, msg, sizeof(msg) - 1, true);
        return;
    }
    switch (p) {
    case P_READY: serve_ready(a, ex); break;
    case P_HEALTHZ: reply_text(ex, 200, "ok\n"); break;
    case P_METRICS: serve_metrics(a, ex); break;
    case P_CONFIG: reply_json(ex, config_json(a->o.config)); break;
    case P_POLICY: serve_policy(a, ex); break;
    case P_CLUSTERS: serve_clusters(a, ex); break;
    case P_NONE: break;
    }
}

static void on_stop(uv_async_t *h)
{
    proxy_admin *a = h->data;
    if (a->srv != NULL)
        proxy_http_server_close(a->srv, true, NULL, NULL);
    a->srv = NULL;
    uv_close((uv_handle_t *)&a->stop, NULL);
}

static void run(void *arg)
{
    proxy_admin *a = arg;
    pthread_setname_np(pthread_self(), "ward-admin");
    uv_run(&a->loop, UV_RUN_DEFAULT);
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    return false;
}

int proxy_admin_start(const char *listen_addr, const proxy_admin_options *opts, proxy_admin **out,
                      ward_err *err)
{
    int rc = 0;
    struct sockaddr_storage ss;
    proxy_admin *a = NULL;
    bool loop_ready = false;
    *out = NULL;
    if (listen_addr == NULL || opts == NULL || opts->state == NULL ||
        (opts->n_metrics > 0 && opts->metrics == NULL)) {
        ward_err_set(err, "admin: a listen address and a state are required");
        return WARD_EINVAL;
    }
    rc = proxy_addr_parse(listen_addr, &ss, err);
    if (rc < 0)
        return rc;
    if (!is_loopback(&ss)) {
        ward_err_set(err, "admin: %s is not a loopback address (127.0.0.0/8 or [::1])",
                     listen_addr);
        return WARD_EINVAL;
    }
    a = calloc(1, sizeof(*a));
    if (a == NULL)
        return WARD_ENOMEM;
    a->o = *opts;
    if (uv_loop_init(&a->loop) < 0) {
        ward_err_set(err, "admin: cannot create a loop");
        rc = WARD_EIO;
        goto fail;
    }
    loop_ready = true;
    proxy_http_server_options so;
    memset(&so, 0, sizeof(so));
    so.limits.body_max = 4096; /* nothing here takes a body */
    so.header_timeout_ms = 5000;
    so.body_timeout_ms = 5000;
    so.idle_timeout_ms = 30000;
    so.write_timeout_ms = 10000;
    so.max_connections = 64;
    so.handler = handle;
    so.data = a;
    WARD_TRY(proxy_http_server_new(&a->loop, &so, &a->srv));
    WARD_TRY(proxy_http_server_listen_tcp(a->srv, listen_addr, err));
    a->port = proxy_http_server_port(a->srv);
    if (uv_async_init(&a->loop, &a->stop, on_stop) < 0) {
        ward_err_set(err, "admin: cannot create a wakeup handle");
        rc = WARD_EIO;
        goto fail;
    }
    a->stop.data = a;
    if (uv_thread_create(&a->thread, run, a) < 0) {
        ward_err_set(err, "admin: cannot start a thread");
        uv_close((uv_handle_t *)&a->stop, NULL);
        rc = WARD_EIO;
        goto fail;
    }
    *out = a;
    return 0;
fail:
    if (a->srv != NULL)
        proxy_http_server_close(a->srv, true, NULL, NULL);
    if (loop_ready) {
        uv_run(&a->loop, UV_RUN_DEFAULT);
        uv_loop_close(&a->loop);
    }
    free(a);
    return rc;
}

int proxy_admin_port(const proxy_admin *a)
{
    return a->port;
}

void proxy_admin_stop(proxy_admin *a)
{
    if (a == NULL)
        return;
    uv_async_send(&a->stop);
    uv_thread_join(&a->thread);
    uv_loop_close(&a->loop);
    free(a);
}
