/* main.c - wardd: start the identity service, tick CA rotation, stop on signals */
#include "cmd/wardd/wardd.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define TICK_MS     1000 /* CA rotation and server SVID checks */
#define SHUTDOWN_MS 5000 /* in-flight requests get this long after a signal */

static wardd the; /* one daemon per process; large (rate table), so not on the stack */

static void on_tick(uv_timer_t *t)
{
    wardd *d = t->data;
    if (!d->stopping)
        wardd_serving_tick(d, time(NULL));
}

static void on_server_closed(wardd *d)
{
    if (--d->servers_open > 0)
        return;
    /* everything is drained: the loop ends once these are closed */
    uv_close((uv_handle_t *)&d->tick, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
}

static void on_api_closed(void *data)
{
    wardd *d = data;
    d->api = NULL;
    on_server_closed(d);
}

static void on_admin_closed(void *data)
{
    wardd *d = data;
    d->admin = NULL;
    on_server_closed(d);
}

static void on_shutdown_deadline(uv_timer_t *t)
{
    wardd *d = t->data;
    fprintf(stderr, "wardd: closing the remaining connections\n");
    if (d->api != NULL)
        proxy_http_server_close(d->api, true, NULL, NULL);
    if (d->admin != NULL)
        proxy_http_server_close(d->admin, true, NULL, NULL);
}

static void stop(wardd *d, int signum)
{
    if (d->stopping) {
        on_shutdown_deadline(&d->tick); /* a second signal: no more waiting */
        return;
    }
    d->stopping = true;
    fprintf(stderr, "wardd: %s: stopping\n", strsignal(signum));
    uv_timer_stop(&d->tick);
    uv_timer_start(&d->tick, on_shutdown_deadline, SHUTDOWN_MS, 0);
    proxy_http_server_close(d->api, false, on_api_closed, d);
    proxy_http_server_close(d->admin, false, on_admin_closed, d);
}

static void on_signal(uv_signal_t *s, int signum)
{
    stop(s->data, signum);
}

/* Refuses to start beside a running wardd on the same admin socket. */
static int check_not_running(const char *path, ward_err *err)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    close(fd);
    if (r == 0) {
        ward_err_set(err, "another wardd is serving %s", path);
        return WARD_EINVAL;
    }
    return 0;
}

static int data_dir_make(const char *dir, ward_err *err)
{
    struct stat st;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        ward_err_set(err, "%s: %s", dir, strerror(errno));
        return WARD_EIO;
    }
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        ward_err_set(err, "%s: not a directory", dir);
        return WARD_EIO;
    }
    if ((st.st_mode & 0077) != 0)
        fprintf(stderr, "wardd: warning: %s is accessible to others (mode %o)\n", dir,
                (unsigned)(st.st_mode & 0777));
    return 0;
}

static void on_tls_error(const proxy_peer *peer, const char *reason, void *data)
{
    fprintf(stderr, "wardd: %s: %s\n", peer->addr, reason);
}

static int start(wardd *d, ward_err *err)
{
    int rc = 0;
    time_t now = time(NULL);
    snprintf(d->server_id, sizeof(d->server_id), "spiffe://%s/ward/server", d->cfg.trust_domain);
    WARD_TRY(data_dir_make(d->cfg.data_dir, err));
    WARD_TRY(check_not_running(d->cfg.admin_socket, err));
    WARD_TRY(wardd_events_open(d, err));

    ident_ca_options o;
    memset(&o, 0, sizeof(o));
    o.trust_domain = d->cfg.trust_domain;
    o.data_dir = d->cfg.data_dir;
    o.ca_ttl_s = d->cfg.ca_ttl_s;
    o.svid_ttl_s = d->cfg.svid_ttl_s;
    o.svid_ttl_max_s = d->cfg.svid_ttl_max_s;
    o.jwt_ttl_s = d->cfg.jwt_ttl_s;
    o.upstream_cert_file = d->cfg.upstream_cert;
    o.upstream_key_file = d->cfg.upstream_key;
    WARD_TRY(ident_ca_open(&o, now, &d->ca, err));
    d->bundle = ident_ca_bundle(d->ca);
    wardd_serving_tick(d, now); /* catch up with rotation missed while down */
    WARD_TRY(wardd_bundle_refresh(d, err));
    WARD_TRY(ident_tokens_open(d->cfg.data_dir, &d->tokens, err));
    WARD_TRY(wardd_serving_refresh(d, now, d->tls == NULL, err));

    proxy_http_server_options so;
    memset(&so, 0, sizeof(so));
    so.header_timeout_ms = d->cfg.header_timeout_ms;
    so.body_timeout_ms = d->cfg.body_timeout_ms;
    so.idle_timeout_ms = d->cfg.idle_timeout_ms;
    so.max_connections = (size_t)d->cfg.max_connections;
    so.limits.body_max = PROXY_HTTP_BODY_MAX; /* 64 KiB, no chunked bodies */
    so.on_error = wardd_http_error;
    so.error_content_type = "application/json";
    so.on_tls_error = on_tls_error;
    so.data = d;
    so.handler = wardd_api_handle;
    WARD_TRY(proxy_http_server_new(d->loop, &so, &d->api));
    d->servers_open++;
    proxy_http_server_set_tls(d->api, d->tls);
    WARD_TRY(proxy_http_server_listen_tcp(d->api, d->cfg.listen, err));
    so.handler = wardd_admin_handle;
    WARD_TRY(proxy_http_server_new(d->loop, &so, &d->admin));
    d->servers_open++;
    WARD_TRY(proxy_http_server_listen_unix(d->admin, d->cfg.admin_socket, err));

    uv_timer_init(d->loop, &d->tick);
    d->tick.data = d;
    uv_timer_start(&d->tick, on_tick, TICK_MS, TICK_MS);
    uv_signal_init(d->loop, &d->sigint);
    uv_signal_init(d->loop, &d->sigterm);
    d->sigint.data = d->sigterm.data = d;
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);

    char port[16] = "";
    if (proxy_http_server_port(d->api) > 0)
        snprintf(port, sizeof(port), "%d", proxy_http_server_port(d->api));
    fprintf(stderr,
            "wardd: serving %s on https://%s (bound port %s), admin socket %s, "
            "bundle sequence %llu, audit trail %s\n",
            d->server_id, d->cfg.listen, port, d->cfg.admin_socket,
            (unsigned long long)ident_bundle_sequence(d->bundle), d->cfg.audit.dir);
    return 0;
fail:
    return rc;
}

static void finish(wardd *d)
{
    ident_tokens_free(d->tokens);
    if (d->bundle != NULL)
        ident_bundle_unref(d->bundle);
    ident_ca_free(d->ca);
    proxy_tls_ctx_unref(d->tls);
    ward_buf_dispose(&d->bundle_json);
    wardd_events_close(d);
}

int main(int argc, char **argv)
{
    wardd *d = &the;
    ward_err err;
    ward_err_clear(&err);
    int rc = wardd_config_parse(argc, argv, &d->cfg, &err);
    if (rc == 1) {
        wardd_usage(stdout);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "wardd: %s\n", err.msg);
        fprintf(stderr, "usage: wardd --trust-domain TD --data-dir DIR [options] (see --help)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IOLBF, 0);
    uv_loop_t loop;
    uv_loop_init(&loop);
    d->loop = &loop;
    ward_buf_init(&d->bundle_json);
    int status = 0;
    if (start(d, &err) < 0) {
        fprintf(stderr, "wardd: %s\n", err.msg);
        status = 1;
        /* close what was opened */
        d->stopping = true;
        if (d->api != NULL)
            proxy_http_server_close(d->api, true, NULL, NULL);
        if (d->admin != NULL)
            proxy_http_server_close(d->admin, true, NULL, NULL);
        d->api = d->admin = NULL;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    finish(d);
    if (status == 0) {
        unlink(d->cfg.admin_socket);
        fprintf(stderr, "wardd: stopped\n");
    }
    uv_loop_close(&loop);
    wardd_config_dispose(&d->cfg);
    return status;
}
