/* wp.h - ward-proxy's parts: the process, its workers, its identity and policy snapshots */
#ifndef WARD_PROXY_WP_H
#define WARD_PROXY_WP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <uv.h>

#include "audit/audit.h"
#include "authz/authz.h"
#include "identity/identity.h"
#include "proxy/proxy.h"

/* The request path's audit calls (worker.c). A bench-only build,
 * `make build/bench-noaudit/bin/ward-proxy` (-DWARD_BENCH_NO_AUDIT), turns
 * them into no-ops to measure what the trail costs a request
 * (bench/audit_store_bench.sh): the log still opens and every record is still
 * built, only the ring is not touched. No build that serves traffic defines it. */
#ifndef WARD_BENCH_NO_AUDIT
#define wp_audit_append audit_log_append
#define wp_audit_reserve audit_log_reserve
#define wp_audit_append_reserved audit_log_append_reserved
#else
static inline int wp_audit_append(audit_log *l, audit_producer *p, const audit_record *r)
{
    return 0;
}
static inline int wp_audit_reserve(audit_log *l, audit_producer *p, audit_verdict d)
{
    return 0;
}
static inline int wp_audit_append_reserved(audit_log *l, audit_producer *p, const audit_record *r)
{
    return 0;
}
#endif

/* What the proxy presents and trusts, swapped whole when the SVID is renewed. */
typedef struct wp_tls {
    ident_svid *svid;
    proxy_tls_ctx *server; /* inbound: TLS 1.3 mTLS, a client SVID of our trust domain required */
    proxy_tls_ctx *client; /* outbound: our SVID, the server's checked against the bundle */
} wp_tls;

typedef struct wp_proxy wp_proxy;
typedef struct wp_limits wp_limits;
typedef struct wp_tcp_listener wp_tcp_listener;

typedef struct wp_worker {
    wp_proxy *px;
    unsigned index;
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake; /* a new policy or identity snapshot, or stop */
    authz_engine *engine;
    authz_bundle *bundle; /* the set the engine runs (a reference) */
    unsigned policy_gen, tls_gen; /* the snapshots this worker runs on */
    ident_svid *svid;             /* ours (its ID is source.principal outbound) */
    proxy_tls_ctx *client_tls;
    proxy_relay *inbound, *outbound;
    proxy_relay_pool *pool;
    audit_producer *audit;
    proxy_metrics *metrics;
    proxy_cluster **clusters; /* per upstream (cfg->upstreams order) */
    proxy_rng rng;     /* traffic splits */
    wp_limits *limits; /* Route rate limits (inbound) */
    proxy_tcp **tcp;   /* TCP listeners (cfg->tcp order) */
    wp_tcp_listener *tcp_listeners;
    int relays_open;
    bool stopping;
} wp_worker;

struct wp_proxy {
    proxy_config *cfg;
    uv_loop_t *loop; /* the main thread's: signals, reload, identity updates */
    audit_log *audit;
    audit_overflow audit_overflow;
    ident_client *idc; /* wardd mode */
    proxy_admin *admin;
    proxy_admin_state *admin_state;
    proxy_metrics **admin_metrics; /* the workers' metrics, as the admin endpoint reads them */
    proxy_cluster **admin_clusters; /* every worker's clusters, for /clusters */
    wp_worker *workers;
    unsigned n_workers;
    int inbound_port, outbound_port;
    int *tcp_ports; /* per cfg->tcp: the port the first worker bound, the others share */

    /* snapshots published to workers: take the lock, compare the generation */
    pthread_mutex_t lock;
    authz_bundle *bundle;
    unsigned policy_gen;
    wp_tls tls;
    unsigned tls_gen;
    ident_svid *pending_svid; /* from the renewal thread, picked up on the main loop */

    uv_async_t svid_ready;
    uv_signal_t sighup, sigterm, sigint;
    uv_timer_t reload_timer;
    uv_timer_t audit_watch;  /* a failed trail to /ready, refused requests to the log */
    uint64_t audit_refused; /* as of the last log */
    bool audit_failed;      /* told to /ready and the log */
    uv_fs_event_t *watches;
    char **watch_names; /* per watch: the policy file's name in its folder, or NULL (a folder) */
    size_t n_watches;
    uint64_t reload_first_ms; /* the first change the pending reload waits for */
    unsigned reloads, reload_failures;
    bool stopping;
    int workers_running;
};

/* A C string (NULL: absent) as the engine's string. */
static inline authz_str cstr(const char *s)
{
    return (authz_str){s, s ? strlen(s) : 0};
}

/* main.c */
void wp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* identity.c: the SVID from static files or wardd, and the TLS contexts made from it */
int wp_identity_start(wp_proxy *px, ward_err *err);
/* Builds and publishes contexts for svid (a reference is taken). */
int wp_identity_publish(wp_proxy *px, ident_svid *svid, ward_err *err);
/* SIGHUP in static mode: read the files again. */
void wp_identity_reload(wp_proxy *px);
void wp_identity_stop(wp_proxy *px);

/* policy.c: loading, watching and reloading the policy set */
int wp_policy_load(wp_proxy *px, ward_err *err);
int wp_policy_watch(wp_proxy *px, ward_err *err);
void wp_policy_reload(wp_proxy *px, const char *why);
void wp_policy_unwatch(wp_proxy *px);
/* Route warnings and route destinations that are no upstream, each to report. */
void wp_policy_route_problems(const proxy_config *cfg, const policy_set *set,
                              void (*report)(const char *msg));

/* limits.c: a worker's Route rate limits. The rate of each entry is split
 * among the workers (see proxy_ratelimit_options). */
int wp_limits_new(unsigned workers, wp_limits **out);
void wp_limits_free(wp_limits *l);
/* Takes a token from the limiter of the entry rt (made on first use) for
 * key: 1 allowed; 0 refused, *retry_after_s set; WARD_ENOMEM (refuse). */
int wp_limits_take(wp_limits *l, const authz_route *rt, proxy_slice key, uint64_t now_ms,
                   uint64_t *retry_after_s);

/* tcp.c: a worker's TCP listeners */
int wp_tcp_start(wp_worker *w, proxy_tls_ctx *server, ward_err *err);
/* A renewed SVID: the server context for connections accepted from now on. */
void wp_tcp_set_tls(wp_worker *w, proxy_tls_ctx *server);
/* Stops accepting; cb(w) once per listener when it is closed. */
void wp_tcp_close(wp_worker *w, uint64_t drain_ms, proxy_done_cb cb);
void wp_tcp_free(wp_worker *w);

/* worker.c: the workers, each with its loop, engine and relays */
int wp_workers_start(wp_proxy *px, ward_err *err);
/* A decision's record: its time now, the request's attributes (strings
 * borrowed from a and d), no id, status or latency yet. */
void wp_record_of(audit_record *rec, bool inbound, const authz_request *a, const authz_decision *d);
/* Leaves out (null) the optional fields that audit.fields does not list. */
void wp_record_trim(audit_record *rec, uint32_t omit);
/* The record's borrowed strings, copied into *strings (one allocation) so
 * that it can be completed later. */
int wp_record_keep(audit_record *rec, char **strings);
/* "10.0.0.7:41234" / "[::1]:41234" -> ip slice and port (-1: none). */
void wp_split_addr(const char *a, authz_str *ip, int *port);
void wp_set_port(struct sockaddr_storage *ss, int port);
/* Wakes every worker to pick up new snapshots. */
void wp_workers_notify(wp_proxy *px);
/* Stops accepting, drains up to cfg->drain_ms, joins the threads. */
void wp_workers_stop(wp_proxy *px);
/* Frees what the workers leave (after the admin endpoint stopped). */
void wp_workers_free(wp_proxy *px);

#endif
