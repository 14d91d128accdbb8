/* main.c - ward-proxy: load the configuration, start identity, policy, audit, workers and admin; stop on signals */
#include "cmd/ward-proxy/wp.h"

#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char USAGE[] =
    "usage: ward-proxy --config FILE [--check]\n"
    "\n"
    "The Ward sidecar: mTLS between proxies with SPIFFE identities, every request\n"
    "authorized by the policy engine and recorded in the audit trail.\n"
    "\n"
    "  --config FILE   the configuration (YAML; every key: ward-proxy.yaml(5),\n"
    "                  docs/proxy-config.md); relative paths in it are resolved\n"
    "                  against the file's folder\n"
    "  --check         validate the configuration and the policies (and the Routes'\n"
    "                  destinations against the upstreams), print \"FILE: ok (N\n"
    "                  policies)\", then exit; nothing is started\n"
    "  -h, --help      this text\n"
    "\n"
    "Admin endpoint (admin.listen, loopback): /ready /healthz /metrics /config\n"
    "/policy /clusters.\n"
    "\n"
    "Signals: SIGHUP reloads the policies (and static identity files); SIGTERM or\n"
    "SIGINT stop accepting, let in-flight requests finish (timeouts.drain), exit.\n"
    "Exit status: 0 stopped cleanly or the check passed, 1 invalid configuration or\n"
    "policies, 2 usage, 3 could not start (identity, listeners, audit).\n"
    "\n"
    "Examples:\n"
    "  ward-proxy --config /etc/ward/proxy/payments.yaml --check\n"
    "  ward-proxy --config /etc/ward/proxy/payments.yaml\n"
    "  curl http://127.0.0.1:15000/metrics\n";

static wp_proxy the;
static audit_sink *sink; /* audit.sink: ships the trail to a syslog collector */

/* The trail's counters for /metrics: requests refused because their record
 * could not be queued (503) show here, not only as deny/503 requests. */
static int trail_metrics(ward_buf *out, const audit_log *log)
{
    audit_stats st;
    audit_log_stats(log, &st);
    return ward_buf_printf(
        out,
        "# HELP ward_audit_records_appended_total Records accepted by the audit trail's queue.\n"
        "# TYPE ward_audit_records_appended_total counter\n"
        "ward_audit_records_appended_total %" PRIu64 "\n"
        "# HELP ward_audit_records_written_total Records (gap records included) written to the "
        "trail's segments.\n"
        "# TYPE ward_audit_records_written_total counter\n"
        "ward_audit_records_written_total %" PRIu64 "\n"
        "# HELP ward_audit_records_dropped_total Allow records dropped under overflow: drop (each "
        "loss is on record as a gap).\n"
        "# TYPE ward_audit_records_dropped_total counter\n"
        "ward_audit_records_dropped_total %" PRIu64 "\n"
        "# HELP ward_audit_records_refused_total Records the trail could not take (queue full "
        "under overflow: deny, or a failed trail): their requests were refused.\n"
        "# TYPE ward_audit_records_refused_total counter\n"
        "ward_audit_records_refused_total %" PRIu64 "\n"
        "# HELP ward_audit_write_errors_total Failed writes and fsyncs of the trail.\n"
        "# TYPE ward_audit_write_errors_total counter\n"
        "ward_audit_write_errors_total %" PRIu64 "\n"
        "# HELP ward_audit_bytes_written_total Bytes of records written to the trail.\n"
        "# TYPE ward_audit_bytes_written_total counter\n"
        "ward_audit_bytes_written_total %" PRIu64 "\n"
        "# HELP ward_audit_checkpoints_total Signed checkpoints written.\n"
        "# TYPE ward_audit_checkpoints_total counter\n"
        "ward_audit_checkpoints_total %" PRIu64 "\n"
        "# HELP ward_audit_segments_sealed_total Trail segments sealed (fsynced, read-only).\n"
        "# TYPE ward_audit_segments_sealed_total counter\n"
        "ward_audit_segments_sealed_total %" PRIu64 "\n",
        st.appended, st.written, st.dropped, st.refused, st.write_errors, st.bytes, st.checkpoints,
        st.sealed);
}

/* The trail's and the sink's families for /metrics. A sink's collector that
 * is down does not make the proxy unready (the local trail is the source of
 * truth and the sink catches up), so it shows here and in the log. */
static int audit_metrics(ward_buf *out, void *data)
{
    const wp_proxy *px = data;
    if (trail_metrics(out, px->audit) < 0)
        return WARD_ENOMEM;
    if (sink == NULL)
        return 0;
    audit_sink_stats st;
    audit_sink_stats_get(sink, &st);
    return ward_buf_printf(
        out,
        "# HELP ward_audit_sink_connected Whether the syslog sink is connected to its collector.\n"
        "# TYPE ward_audit_sink_connected gauge\nward_audit_sink_connected %d\n"
        "# HELP ward_audit_sink_messages_total Records sent to the collector (re-sent ones "
        "included).\n"
        "# TYPE ward_audit_sink_messages_total counter\nward_audit_sink_messages_total %" PRIu64 "\n"
        "# HELP ward_audit_sink_resent_total Records sent again after a reconnect or restart.\n"
        "# TYPE ward_audit_sink_resent_total counter\nward_audit_sink_resent_total %" PRIu64 "\n"
        "# HELP ward_audit_sink_failures_total Connections to the collector refused, failed or "
        "broken.\n"
        "# TYPE ward_audit_sink_failures_total counter\nward_audit_sink_failures_total %" PRIu64 "\n"
        "# HELP ward_audit_sink_delivered_seq The last record the collector acknowledged.\n"
        "# TYPE ward_audit_sink_delivered_seq gauge\nward_audit_sink_delivered_seq %" PRIu64 "\n"
        "# HELP ward_audit_sink_read_seq The last record the sink read from the trail.\n"
        "# TYPE ward_audit_sink_read_seq gauge\nward_audit_sink_read_seq %" PRIu64 "\n",
        st.connected ? 1 : 0, st.sent, st.resent, st.failures, st.delivered_seq, st.read_seq);
}

static void on_sink_log(const char *msg, void *data)
{
    (void)data;
    wp_log("%s", msg);
}

void wp_log(const char *fmt, ...)
{
    char ts[32];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ ward-proxy: %s\n", ts, now.tv_nsec / 1000000, msg);
}

static void on_sighup(uv_signal_t *s, int signum)
{
    wp_proxy *px = s->data;
    (void)signum;
    wp_identity_reload(px);
    wp_policy_reload(px, "SIGHUP");
}

/* Once a second: a failed trail takes /ready away (it stays failed until a
 * restart), and requests it refused (503) are told in the log, so that an
 * operator sees why without reading /metrics. */
static void on_audit_watch(uv_timer_t *t)
{
    wp_proxy *px = t->data;
    ward_err err;
    ward_err_clear(&err);
    if (!px->audit_failed && audit_log_status(px->audit, &err) < 0) {
        px->audit_failed = true;
        wp_log("audit: the trail failed, requests are refused until a restart: %s", err.msg);
        proxy_admin_state_set_audit_error(px->admin_state, err.msg);
    }
    audit_stats st;
    audit_log_stats(px->audit, &st);
    if (st.refused == px->audit_refused)
        return;
    wp_log("audit: %" PRIu64 " request(s) refused (503) in the last second: %s",
           st.refused - px->audit_refused,
           px->audit_failed ? "the trail failed"
                            : "the writer fell behind and the queue was full (overflow: deny)");
    px->audit_refused = st.refused;
}

static void on_stop(uv_signal_t *s, int signum)
{
    wp_proxy *px = s->data;
    if (px->stopping)
        return;
    wp_log("%s: draining (up to %llu ms), then stopping", strsignal(signum),
           (unsigned long long)px->cfg->drain_ms);
    wp_workers_stop(px); /* sets px->stopping; returns once the workers have drained */
    wp_policy_unwatch(px);
    wp_identity_stop(px);
    uv_close((uv_handle_t *)&px->sighup, NULL);
    uv_close((uv_handle_t *)&px->sigterm, NULL);
    uv_close((uv_handle_t *)&px->sigint, NULL);
    uv_close((uv_handle_t *)&px->audit_watch, NULL);
}

static void print_problem(const char *msg)
{
    fprintf(stderr, "%s%s\n", strstr(msg, "warning:") ? "" : "warning: ", msg);
}

static int check_only(const proxy_config *cfg)
{
    policy_set *set = NULL;
    ward_diag diag;
    ward_diag_init(&diag);
    diag.max = 1000;
    int rc = policy_set_new(&set);
    if (rc == 0)
        rc = policy_set_load_paths(set, (const char *const *)cfg->policy.paths, cfg->policy.n_paths,
                                   &diag);
    for (size_t i = 0; i < diag.n; i++)
        fprintf(stderr, "%s\n", diag.msgs[i]);
    bool ok = rc == 0 && diag.n == 0;
    if (ok)
        wp_policy_route_problems(cfg, set, print_problem);
    if (ok)
        printf("%s: ok (%zu policies)\n", cfg->file, policy_set_count(set));
    ward_diag_dispose(&diag);
    policy_set_free(set);
    return ok ? 0 : 1;
}

static int start(wp_proxy *px, ward_err *err)
{
    const proxy_config *cfg = px->cfg;
    int rc;
    if ((rc = proxy_admin_state_new(&px->admin_state)) < 0)
        return rc;
    audit_options ao;
    audit_options_init(&ao);
    ao.dir = cfg->audit.dir;
    ao.overflow = cfg->audit.overflow;
    ao.key_file = cfg->audit.key_file;
    if (cfg->audit.segment_bytes)
        ao.segment_bytes = cfg->audit.segment_bytes;
    if (cfg->audit.segment_age_ms)
        ao.segment_age_ms = cfg->audit.segment_age_ms;
    if (cfg->audit.checkpoint_records)
        ao.checkpoint_records = (uint32_t)cfg->audit.checkpoint_records;
    if (cfg->audit.queue_records)
        ao.ring_slots = (uint32_t)cfg->audit.queue_records;
    if (cfg->audit.fsync_ms)
        ao.fsync_ms = (uint32_t)cfg->audit.fsync_ms;
    px->audit_overflow = ao.overflow;
    if ((rc = wp_identity_start(px, err)) < 0)
        return rc;
    ao.node = ident_svid_id(px->tls.svid);
    if ((rc = audit_log_open(&ao, &px->audit, err)) < 0)
        return rc;
    if (cfg->audit.sink.address != NULL) {
        audit_sink_options so;
        audit_sink_options_init(&so);
        so.dir = cfg->audit.dir;
        so.address = cfg->audit.sink.address;
        so.tls = cfg->audit.sink.tls;
        so.ca_file = cfg->audit.sink.ca_file;
        so.cert_file = cfg->audit.sink.cert_file;
        so.key_file = cfg->audit.sink.key_file;
        so.server_name = cfg->audit.sink.server_name;
        so.facility = cfg->audit.sink.facility;
        so.app_name = cfg->audit.sink.app_name;
        so.log = on_sink_log;
        if ((rc = audit_sink_start(&so, &sink, err)) < 0)
            return rc;
    }
    if ((rc = wp_policy_load(px, err)) < 0)
        return rc;
    if ((rc = wp_policy_watch(px, err)) < 0)
        return rc;
    if ((rc = wp_workers_start(px, err)) < 0)
        return rc;
    proxy_metrics **ms = calloc(px->n_workers, sizeof(*ms));
    if (ms == NULL)
        return WARD_ENOMEM;
    size_t nc = (size_t)px->n_workers * cfg->n_upstreams;
    proxy_cluster **cs = calloc(nc ? nc : 1, sizeof(*cs));
    if (cs == NULL) {
        free(ms);
        return WARD_ENOMEM;
    }
    for (unsigned i = 0; i < px->n_workers; i++) {
        ms[i] = px->workers[i].metrics;
        for (size_t k = 0; k < cfg->n_upstreams; k++)
            cs[i * cfg->n_upstreams + k] = px->workers[i].clusters[k];
    }
    proxy_admin_options adm = {.more_metrics = audit_metrics,
                               .more_metrics_data = px,
                               .metrics = ms,
                               .n_metrics = px->n_workers,
                               .config = cfg,
                               .state = px->admin_state,
                               .clusters = (struct proxy_cluster *const *)cs,
                               .n_clusters = nc};
    rc = proxy_admin_start(cfg->admin.listen, &adm, &px->admin, err);
    px->admin_metrics = ms;
    px->admin_clusters = cs;
    return rc;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    bool check = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--check") == 0) {
            check = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else {
            fprintf(stderr, "ward-proxy: unknown argument \"%s\"\n%s", argv[i], USAGE);
            return 2;
        }
    }
    if (config == NULL) {
        fprintf(stderr, "ward-proxy: --config FILE is required\n%s", USAGE);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    wp_proxy *px = &the;
    ward_diag diag;
    ward_diag_init(&diag);
    diag.max = 1000;
    int rc = proxy_config_load(config, &px->cfg, &diag);
    for (size_t i = 0; i < diag.n; i++)
        fprintf(stderr, "%s\n", diag.msgs[i]);
    ward_diag_dispose(&diag);
    if (rc < 0) {
        if (rc != WARD_EPOLICY)
            fprintf(stderr, "ward-proxy: %s: %s\n", config, ward_strerror(rc));
        return 1;
    }
    if (check) {
        rc = check_only(px->cfg);
        proxy_config_free(px->cfg);
        return rc;
    }

    px->loop = uv_default_loop();
    px->n_workers = px->cfg->workers;
    pthread_mutex_init(&px->lock, NULL);
    ward_err err;
    ward_err_clear(&err);
    rc = start(px, &err);
    if (rc < 0) {
        wp_log("cannot start: %s", err.msg[0] ? err.msg : ward_strerror(rc));
        return rc == WARD_EPOLICY ? 1 : 3;
    }
    uv_signal_init(px->loop, &px->sighup);
    uv_signal_init(px->loop, &px->sigterm);
    uv_signal_init(px->loop, &px->sigint);
    px->sighup.data = px->sigterm.data = px->sigint.data = px;
    uv_signal_start(&px->sighup, on_sighup, SIGHUP);
    uv_signal_start(&px->sigterm, on_stop, SIGTERM);
    uv_signal_start(&px->sigint, on_stop, SIGINT);
    uv_timer_init(px->loop, &px->audit_watch);
    px->audit_watch.data = px;
    uv_timer_start(&px->audit_watch, on_audit_watch, 1000, 1000);
    const proxy_config *cfg = px->cfg;
    char outbound[32] = "none";
    if (cfg->outbound.listen != NULL)
        snprintf(outbound, sizeof(outbound), "%d", px->outbound_port);
    wp_log("%s as %s: inbound %d (app %s), outbound %s, admin %d, %u worker(s), audit %s",
           cfg->service, ident_svid_id(px->tls.svid), px->inbound_port, cfg->inbound.app,
           outbound, proxy_admin_port(px->admin), px->n_workers, cfg->audit.dir);
    for (size_t i = 0; i < cfg->n_tcp; i++)
        wp_log("tcp %s: %s %d -> %s", cfg->tcp[i].name, cfg->tcp[i].inbound ? "inbound" : "outbound",
               px->tcp_ports[i], cfg->tcp[i].inbound ? cfg->tcp[i].app : cfg->tcp[i].service);

#ifdef __GLIBC__
    /* Start-up (config, policy compilation, TLS set-up) freed much of what it
     * allocated: give the free pages back, so that an idle proxy stays small. */
    malloc_trim(0);
#endif
    uv_run(px->loop, UV_RUN_DEFAULT);

    proxy_admin_stop(px->admin);
    ward_err_clear(&err);
    int exit_code = 0;
    if (audit_log_close(px->audit, &err) < 0) {
        wp_log("audit: %s", err.msg);
        exit_code = 3;
    }
    ward_err_clear(&err);
    if (audit_sink_stop(sink, &err) < 0) /* after the close: it ships the last records too */
        wp_log("audit sink: %s", err.msg);
    wp_workers_free(px);
    free(px->admin_metrics);
    free(px->tcp_ports);
    free(px->admin_clusters);
    free(px->watches);
    if (px->bundle)
        authz_bundle_unref(px->bundle);
    proxy_admin_state_free(px->admin_state);
    uv_loop_close(px->loop);
    pthread_mutex_destroy(&px->lock);
    proxy_config_free(px->cfg);
    wp_log("stopped");
    return exit_code;
}
