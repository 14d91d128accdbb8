/* wardd.h - internals of wardd: configuration, state, event log, API handlers */
#ifndef WARDD_H
#define WARDD_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "audit/audit.h"
#include "common/ward.h"
#include "identity/identity.h"
#include "proxy/proxy.h"

typedef struct wardd_refusal wardd_refusal; /* reply.c */

/* ---- configuration (config.c) ---------------------------------------------------------- */

typedef struct wardd_config {
    char *trust_domain;
    char *data_dir;
    char *listen;                                             /* "127.0.0.1:8443" */
    char *admin_socket;                                       /* DIR/admin.sock */
    uint64_t ca_ttl_s, svid_ttl_s, svid_ttl_max_s, jwt_ttl_s; /* 0 = the CA's defaults */
    char *upstream_cert, *upstream_key;
    uint64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms;
    uint64_t max_connections;
    uint64_t attest_failures; /* failed token attempts per peer address per minute */
    struct {                  /* the audit trail of identity events (audit.*) */
        char *dir;            /* default DATA_DIR/audit */
        char *key_file;       /* checkpoint key; default DIR/checkpoint.key */
        audit_overflow overflow;
        uint64_t segment_bytes, segment_age_ms, checkpoint_records, fsync_ms; /* 0 = default */
        struct {              /* audit.sink: a syslog collector (address NULL: none) */
            char *address, *ca_file, *cert_file, *key_file, *server_name, *app_name;
            bool tls;
            int facility;
        } sink;
    } audit;
} wardd_config;

/* Parses argv (and the --config file it names). Returns 0, 1 when --help was
 * printed, or WARD_EINVAL with the reason in err (a usage error). */
int wardd_config_parse(int argc, char **argv, wardd_config *cfg, ward_err *err);
void wardd_config_dispose(wardd_config *cfg);
void wardd_usage(FILE *out);

/* ---- the daemon ------------------------------------------------------------------------------ */

#define WARDD_RATE_MAX   4096 /* peer addresses tracked for failed token attempts */

typedef struct wardd_rate {
    char ip[64];
    time_t window; /* start of the current minute */
    uint64_t failures;
} wardd_rate;

typedef struct wardd {
    uv_loop_t *loop;
    wardd_config cfg;
    char server_id[IDENT_ID_MAX]; /* spiffe://TD/ward/server */
    ident_ca *ca;
    ident_tokens *tokens;
    ident_bundle *bundle; /* the current bundle */
    ward_buf bundle_json; /* ... as served */
    proxy_http_server *api, *admin;
    proxy_tls_ctx *tls;   /* what the API serves (its SVID) */
    time_t svid_renew_at; /* re-mint the server SVID from then on */
    char svid_issuer[96]; /* key id of the CA that signed it */
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    bool stopping;
    int servers_open;

    audit_log *audit;          /* the trail of identity events (audit.dir) */
    audit_producer *producer;  /* the loop thread's */
    audit_sink *sink;          /* audit.sink, or NULL */
    unsigned reserved;         /* slots reserved for the request being handled */
    wardd_rate rates[WARDD_RATE_MAX];
    size_t n_rates;
} wardd;

/* ---- events (events.c) -------------------------------------------------------------------------
 * Every issuance, refusal, join token use and CA rotation is one record of
 * the audit trail in cfg.audit.dir (docs/audit.md, "Identity-event records"),
 * and one JSON line on stderr. Tokens are never written (only token_id, a
 * short hash to correlate). Fail closed: a handler reserves the slots of its
 * records before it acts (wardd_events_reserve), and answers an issuance
 * only once its record is queued. */

/* Opens the trail (and starts audit.sink). */
int wardd_events_open(wardd *d, ward_err *err);
/* Writes what is queued, closes the trail and stops the sink. */
void wardd_events_close(wardd *d);
/* Reserves n records for the request being handled; on failure fills why
 * (503 audit_unavailable) and reserves nothing. */
int wardd_events_reserve(wardd *d, unsigned n, wardd_refusal *why);
/* Gives back the slots the request did not use. */
void wardd_events_release(wardd *d);
/* A new event object {"ts": now, "event": name}; add the record's fields
 * (subject, serial, not_after, via, token_id, audience, key_id,
 * bundle_sequence, principal, peer, status, error, reason), then emit. */
cJSON *wardd_event_new(const char *name);
/* Appends it to the trail (in a reserved slot when there is one), logs it
 * on stderr and frees it. 0 once queued; WARD_ELIMIT / WARD_EIO when it
 * could not be recorded (said on stderr). */
int wardd_event_emit(wardd *d, cJSON *ev);
/* "peer" as logged: "127.0.0.1:41234" or "unix:uid=0,pid=42". */
void wardd_peer_name(const proxy_peer *peer, char *buf, size_t size);
/* The first 16 hex digits of SHA-256(token), safe to log. */
void wardd_token_hash(const char *token, char out[17]);
/* RFC 3339 UTC, seconds ("2026-11-26T01:00:00Z"). */
void wardd_time_format(time_t t, char *buf, size_t size);
/* Appends the most recent `limit` issuance records (svid.issued, jwt.issued)
 * of the trail as a JSON array, newest first (read back from the last two
 * segments, at most 4 MiB of each). */
int wardd_recent_json(wardd *d, size_t limit, ward_buf *out);

/* ---- serving (serving.c): wardd's own SVID, the CA's rotation -------------------------------- */

/* Mints spiffe://TD/ward/server when forced or past half of its life, and
 * swaps the API's TLS context. */
int wardd_serving_refresh(wardd *d, time_t now, bool force, ward_err *err);
/* Runs ident_ca_tick; on a bundle change swaps the bundle, re-mints the
 * server SVID and records ca.* events. */
void wardd_serving_tick(wardd *d, time_t now);
/* Rebuilds the served bundle JSON from d->bundle. */
int wardd_bundle_refresh(wardd *d, ward_err *err);

/* What the event log says about an issued certificate (the first PEM
 * certificate of chain). */
typedef struct wardd_leaf {
    time_t not_before, not_after;
    char serial[80]; /* lowercase hex */
} wardd_leaf;
int wardd_leaf_info(const char *pem, size_t len, wardd_leaf *out);

/* ---- HTTP helpers (reply.c)
 * ------------------------------------------------------------------------ */

/* Answers {"error": code, "message": ...} with Content-Type application/json. */
void wardd_reply_error(proxy_http_exchange *ex, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 405 with an Allow header ("POST", "GET, HEAD", ...). */
void wardd_reply_405(proxy_http_exchange *ex, const char *allow);
/* Answers a JSON body (status 200 unless given). */
void wardd_reply_json(proxy_http_exchange *ex, int status, const char *json, size_t len);
/* The error code wardd uses for a status ("bad_request", "body_too_large", ...). */
const char *wardd_status_code(int status);
/* Why a request is refused: status, error code and message. */
typedef struct wardd_refusal {
    int status;
    const char *code;
    char message[512];
} wardd_refusal;
/* The body of a POST as a JSON object with only the allowed members (each at
 * most once), or NULL with why filled (411, 415 or 400) for the caller to
 * log and answer. */
cJSON *wardd_read_json(proxy_http_exchange *ex, const char *const *allowed, wardd_refusal *why);
/* Answers a refusal. */
void wardd_reply_refusal(proxy_http_exchange *ex, const wardd_refusal *why);
void wardd_refuse(wardd_refusal *why, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The layer's own errors (400, 408, 413, ...) as JSON, and logged. */
void wardd_http_error(int status, const char *reason, const proxy_peer *peer, ward_buf *body,
                      void *data);
/* A path equal to lit. */
bool wardd_path_is(const proxy_http_request *r, const char *lit);
bool wardd_method_is(const proxy_http_request *r, const char *lit);

/* ---- the workload API (api.c) and the admin API (admin.c) ---------------------------------------
 */

void wardd_api_handle(proxy_http_exchange *ex, void *data);
void wardd_admin_handle(proxy_http_exchange *ex, void *data);

#endif
