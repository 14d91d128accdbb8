/* tcp.c - ward-proxy's TCP listeners: each connection authorized once (principal, port, SNI), audited with its bytes and duration */
#include "cmd/ward-proxy/wp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One listener of one worker. */
typedef struct wp_tcp_listener {
    wp_worker *w;
    const proxy_config_tcp *cfg;
    size_t next_endpoint; /* outbound: endpoints are taken in turn */
} wp_tcp_listener;

/* An allowed connection: its record, completed when it ends. */
typedef struct wp_tcp_conn {
    audit_record rec;
    char *strings;
    bool reserved;
} wp_tcp_conn;

static bool authorize(proxy_tcp_conn *conn, const proxy_tcp_info *info, proxy_tcp_target *target,
                      void *data)
{
    wp_tcp_listener *l = data;
    wp_worker *w = l->w;
    wp_proxy *px = w->px;
    const proxy_config_tcp *t = l->cfg;
    const char *self = ident_svid_id(w->svid);
    size_t ep = t->inbound ? 0 : l->next_endpoint++ % t->n_endpoints;
    const char *server_name = t->server_name ? t->server_name : t->service;

    authz_request a = {0};
    wp_split_addr(info->peer->addr, &a.source_ip, &a.source_port);
    if (t->inbound) {
        a.source_principal = cstr(info->peer->spiffe_id);
        a.destination_service = cstr(px->cfg->service);
        a.destination_principal = cstr(self);
        a.destination_port = info->dest_port;
        a.sni = cstr(info->server_name);
        a.mtls = 1;
    } else {
        a.source_principal = cstr(self);
        a.destination_service = cstr(t->service);
        a.destination_principal = cstr(t->spiffe_id);
        wp_split_addr(t->endpoints[ep], &(authz_str){0}, &a.destination_port);
        a.sni = cstr(server_name);
        a.mtls = 0;
    }
    a.protocol = (authz_str){"TCP", 3};

    authz_decision d;
    authz_decision_init(&d);
    uint64_t t0 = uv_hrtime();
    int rc = a.source_principal.ptr == NULL ? WARD_EINVAL : authz_decide(w->engine, &a, false, &d);
    uint64_t decision_ns = uv_hrtime() - t0;
    if (rc < 0) { /* fail closed */
        d.decision = AUTHZ_DENY;
        d.reason = a.source_principal.ptr == NULL ? "no verified peer identity" : "decision failed";
    }

    audit_record rec;
    wp_record_of(&rec, t->inbound, &a, &d);
    audit_producer_id_next(w->audit, &rec.id);
    rec.host = (audit_str){a.sni.ptr, a.sni.len};
    rec.bundle = audit_cstr(authz_bundle_revision(w->bundle));
    rec.latency_ns = (int64_t)decision_ns;
    if (t->inbound && info->peer->cert_sha256[0])
        rec.peer_cert_sha256 = audit_cstr(info->peer->cert_sha256);
    wp_record_trim(&rec, px->cfg->audit.omit);

    bool allow = false;
    if (d.decision != AUTHZ_ALLOW) {
        if (audit_log_append(px->audit, w->audit, &rec) < 0)
            wp_log("audit: the record of a denied TCP connection could not be written");
    } else {
        /* the connection is recorded when it ends, with its bytes: its place
         * in the trail is taken now, or it is not served (fail closed) */
        wp_tcp_conn *c = calloc(1, sizeof(*c));
        if (c != NULL && wp_record_keep(&rec, &c->strings) == 0) {
            c->rec = rec;
            int arc = audit_log_reserve(px->audit, w->audit, AUDIT_ALLOW);
            c->reserved = arc == 0;
            allow = arc == 0 || (arc == WARD_ELIMIT && px->audit_overflow == AUDIT_OVERFLOW_DROP);
        }
        if (allow) {
            proxy_tcp_conn_set_data(conn, c);
        } else {
            if (c != NULL && c->reserved)
                audit_log_unreserve(w->audit);
            if (c != NULL)
                free(c->strings);
            free(c);
            wp_log("tcp %s: connection from %s refused: the audit trail cannot take its record",
                   t->name, info->peer->addr);
        }
    }
    if (allow) {
        if (t->inbound) {
            target->addr = (const struct sockaddr *)&t->app_addr;
        } else {
            target->addr = (const struct sockaddr *)&t->addrs[ep];
            target->tls = w->client_tls;
            target->expected_id = t->spiffe_id;
            target->server_name = server_name;
        }
    }
    proxy_metrics_request(w->metrics, &(proxy_metrics_request_info){
                                          .inbound = t->inbound,
                                          .allow = allow,
                                          .source_principal = a.source_principal.ptr,
                                          .destination_service = a.destination_service.ptr,
                                          .destination_principal = a.destination_principal.ptr,
                                          .decision_ns = decision_ns,
                                      });
    authz_decision_dispose(&d);
    return allow;
}

static void done(proxy_tcp_conn *conn, const proxy_tcp_info *info, const proxy_tcp_result *res,
                 void *data)
{
    wp_tcp_listener *l = data;
    wp_worker *w = l->w;
    wp_tcp_conn *c = proxy_tcp_conn_data(conn);
    (void)info;
    if (c == NULL)
        return; /* denied: recorded when it was decided */
    /* the decision's reason, then how the connection ended */
    char reason[512];
    snprintf(reason, sizeof(reason), "%s; tcp %s: %s%s%s",
             c->rec.reason.ptr ? c->rec.reason.ptr : "", l->cfg->name, proxy_tcp_end_name(res->end),
             res->reason && res->reason[0] ? ": " : "", res->reason ? res->reason : "");
    if (!(w->px->cfg->audit.omit & PROXY_AUDIT_OMIT_REASON))
        c->rec.reason = audit_cstr(reason);
    c->rec.has_connection = true;
    c->rec.bytes_in = res->bytes_in;
    c->rec.bytes_out = res->bytes_out;
    c->rec.duration_ns = (int64_t)res->duration_ns;
    if (c->reserved && audit_log_append_reserved(w->px->audit, w->audit, &c->rec) < 0)
        wp_log("audit: the record of a TCP connection could not be written");
    free(c->strings);
    free(c);
}

int wp_tcp_start(wp_worker *w, proxy_tls_ctx *server, ward_err *err)
{
    wp_proxy *px = w->px;
    const proxy_config *cfg = px->cfg;
    if (cfg->n_tcp == 0)
        return 0;
    w->tcp = calloc(cfg->n_tcp, sizeof(*w->tcp));
    w->tcp_listeners = calloc(cfg->n_tcp, sizeof(*w->tcp_listeners));
    if (w->tcp == NULL || w->tcp_listeners == NULL)
        return WARD_ENOMEM;
    for (size_t i = 0; i < cfg->n_tcp; i++) {
        const proxy_config_tcp *t = &cfg->tcp[i];
        wp_tcp_listener *l = &w->tcp_listeners[i];
        l->w = w;
        l->cfg = t;
        proxy_tcp_options o = {
            .connect_timeout_ms = t->connect_timeout_ms,
            .idle_timeout_ms = t->idle_timeout_ms,
            .max_connections = (size_t)cfg->limits.max_connections,
            .authorize = authorize,
            .done = done,
            .data = l,
        };
        int rc = proxy_tcp_new(&w->loop, &o, &w->tcp[i]);
        if (rc < 0) {
            ward_err_set(err, "tcp %s: %s", t->name, ward_strerror(rc));
            return rc;
        }
        w->relays_open++; /* closed with the relays, counted with them */
        if (t->inbound && (rc = proxy_tcp_set_tls(w->tcp[i], server)) < 0) {
            ward_err_set(err, "tcp %s: %s", t->name, ward_strerror(rc));
            return rc;
        }
        struct sockaddr_storage addr = t->listen_addr;
        if (px->tcp_ports[i] > 0)
            wp_set_port(&addr, px->tcp_ports[i]);
        if ((rc = proxy_tcp_listen(w->tcp[i], (struct sockaddr *)&addr, true, err)) < 0)
            return rc;
        px->tcp_ports[i] = proxy_tcp_port(w->tcp[i]);
    }
    return 0;
}

void wp_tcp_set_tls(wp_worker *w, proxy_tls_ctx *server)
{
    for (size_t i = 0; w->tcp != NULL && i < w->px->cfg->n_tcp; i++)
        if (w->tcp[i] != NULL && w->px->cfg->tcp[i].inbound)
            (void)proxy_tcp_set_tls(w->tcp[i], server);
}

void wp_tcp_close(wp_worker *w, uint64_t drain_ms, proxy_done_cb cb)
{
    for (size_t i = 0; w->tcp != NULL && i < w->px->cfg->n_tcp; i++) {
        if (w->tcp[i] != NULL)
            proxy_tcp_close(w->tcp[i], drain_ms, cb, w);
        w->tcp[i] = NULL;
    }
}

void wp_tcp_free(wp_worker *w)
{
    free(w->tcp);
    free(w->tcp_listeners);
    w->tcp = NULL;
    w->tcp_listeners = NULL;
}
