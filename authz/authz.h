/* authz.h - the decision API: request attributes in, decision (+ route, explain) out */
#ifndef AUTHZ_H
#define AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ward.h"
#include "lua/wlua.h"
#include "policy/policy.h"

/* A byte slice; ptr == NULL means the attribute is absent. */
typedef struct authz_str {
    const char *ptr;
    size_t len;
} authz_str;

typedef struct authz_header {
    authz_str name; /* matched lowercased; callers may pass any case */
    authz_str value;
} authz_header;

/* The request attributes of DESIGN.md. source.namespace and
 * source.trustDomain are derived from source.principal, never supplied. */
typedef struct authz_request {
    authz_str source_principal;
    authz_str source_ip;
    int source_port; /* -1 = absent */
    authz_str destination_service;
    authz_str destination_principal;
    int destination_port; /* -1 = absent */
    authz_str method;
    authz_str host;
    authz_str path; /* already normalized by the proxy */
    authz_str query;
    const authz_header *headers;
    size_t n_headers;
    authz_str protocol; /* "HTTP/1.1" ... */
    int mtls;           /* -1 absent, 0, 1 */
    authz_str sni;
    int64_t time_unix; /* seconds; 0 = now */
} authz_request;

typedef enum authz_verdict { AUTHZ_DENY = 0, AUTHZ_ALLOW = 1 } authz_verdict;

/* ---- routes: what a Route's http entry tells the proxy (docs/engine.md, Routes) ---- */

typedef struct authz_route_destination {
    const char *service;
    uint32_t weight; /* 0..100; the weights of a route add up to 100 */
} authz_route_destination;

typedef struct authz_header_op {
    const char *name;  /* as written in the Route (an HTTP token) */
    const char *value; /* NULL for remove; never holds CR, LF or other control bytes but HTAB */
} authz_header_op;

/* Applied in this order: remove, then set (replacing every field of the
 * name), then add (appending a field). */
typedef struct authz_header_ops {
    const authz_header_op *set, *add, *remove;
    uint32_t n_set, n_add, n_remove;
} authz_header_ops;

enum {
    AUTHZ_RETRY_CONNECT_FAILURE = 1u << 0, /* the connection to the endpoint failed */
    AUTHZ_RETRY_RESET = 1u << 1,           /* reset / closed before a response head */
};

typedef struct authz_route_retries {
    uint32_t attempts;           /* retries after the first try (0..10); 0 = none */
    uint32_t per_try_timeout_ms; /* 0 = not set: the route's timeout bounds every try */
    uint32_t on;                 /* AUTHZ_RETRY_* */
    uint8_t on_status[13];       /* bit (status - 500): a retried 5xx; see authz_route_retries_status */
    bool non_idempotent;         /* false: only GET, HEAD, OPTIONS, TRACE, PUT, DELETE are retried */
    uint64_t max_body_bytes;     /* requests with a larger body are not retried (0: only body-less ones) */
} authz_route_retries;

typedef enum authz_rate_key {
    AUTHZ_RATE_KEY_NONE,      /* one bucket for the entry */
    AUTHZ_RATE_KEY_PRINCIPAL, /* one per source.principal */
    AUTHZ_RATE_KEY_HEADER,    /* one per value of the header rate_limit.header */
} authz_rate_key;

typedef struct authz_rate_limit {
    uint32_t requests; /* per per_ms (a token bucket of `requests` tokens) */
    uint32_t per_ms;
    authz_rate_key key;
    const char *header; /* AUTHZ_RATE_KEY_HEADER: lowercased */
} authz_rate_limit;

/* The http entry of a Route chosen for a request: the first entry, in order,
 * whose match holds, among the entries of the Route that serves the
 * request's host (request.host without its port, case-insensitively).
 * Strings point into the engine's program, as a decision's policy names do. */
typedef struct authz_route {
    const char *policy; /* the Route, "ns/name" */
    const char *name;   /* the entry's name */
    int index;          /* the entry's index in spec.http */
    const char *source; /* "file:line" of the entry */
    const authz_route_destination *destinations; /* pick one with authz_route_pick */
    uint32_t n_destinations;
    uint32_t timeout_ms; /* 0 = not set (the proxy's default) */
    bool has_retries;
    authz_route_retries retries;
    const char *rewrite_prefix; /* NULL = no rewrite */
    /* with a rewrite: the request's path with the matched prefix (an exact
     * path: the whole path; no path constraint: "/") replaced by
     * rewrite_prefix. The query is not part of it: the proxy appends it. */
    const char *rewrite_path;
    authz_header_ops request_headers, response_headers;
    bool has_rate_limit;
    authz_rate_limit rate_limit;
    const char *mirror_service; /* NULL = no mirror (copies are fire-and-forget) */
    uint32_t mirror_percent;    /* 0..100 of the requests are copied */
} authz_route;

/* The destination for a uniform random number r: destination i takes
 * weights[i] of every 100 values of r % 100. Never NULL for a route. */
const authz_route_destination *authz_route_pick(const authz_route *r, uint32_t random);
/* Whether a response status (500..599) is retried. */
bool authz_route_retries_status(const authz_route_retries *rt, int status);
/* The route as JSON (one line): {"policy", "name", "index", "source",
 * "destinations", "timeout_ms", "retries", "rewrite", "headers",
 * "rate_limit", "mirror"}; absent parts are null. */
int authz_route_to_json(const authz_route *r, ward_buf *out);

/* The strings point into the engine that decided: they stay valid until the
 * next authz_decide, authz_engine_swap or authz_engine_free on it (copy what
 * must live longer). explain_json is owned by the decision. */
typedef struct authz_decision {
    authz_verdict decision;
    const char *policy; /* "ns/name" or NULL */
    int rule;           /* -1 = null */
    const char *reason;
    bool audit;
    bool has_dry_run;
    authz_verdict dry_run_decision;
    const char *dry_run_policy;
    int dry_run_rule;
    int deny_status;       /* when denied: the deciding policy's status, else 403 */
    const char *deny_body; /* NULL = default body */
    /* the Route entry for the request's host, whatever the decision (the
     * proxy routes only what is allowed); NULL when no Route serves the host
     * or none of its entries matches: the Host names the upstream itself */
    const authz_route *route;
    char *explain_json;    /* JSON array when requested, else NULL */
} authz_decision;

void authz_decision_init(authz_decision *d);
void authz_decision_dispose(authz_decision *d);
/* The decision JSON of DESIGN.md (one line, no trailing newline). */
int authz_decision_to_json(const authz_decision *d, ward_buf *out);

/* An immutable compiled policy set, shared by all workers; reference counted. */
typedef struct authz_bundle authz_bundle;

typedef struct authz_options {
    bool default_allow;
    /* budgets of `lua:` conditions (per decision: instructions; per engine:
     * memory). Compiled rules run in C and are not metered. */
    wlua_limits limits;
} authz_options;

/* Compiles the set. */
int authz_bundle_new(const policy_set *set, const authz_options *opts, authz_bundle **out,
                     ward_err *err);
void authz_bundle_ref(authz_bundle *b);
void authz_bundle_unref(authz_bundle *b);
const char *authz_bundle_revision(const authz_bundle *b);
const char *authz_bundle_lua(const authz_bundle *b, size_t *len);

/* One engine per thread: its own Lua state, in which the bundle ran once, and
 * the indexed C matchers it built (see docs/engine.md). */
typedef struct authz_engine authz_engine;

int authz_engine_new(authz_bundle *b, authz_engine **out, ward_err *err);
void authz_engine_free(authz_engine *e);
/* Builds a new Lua state for b beside the current one and swaps it in; on
 * failure the engine keeps the old bundle. */
int authz_engine_swap(authz_engine *e, authz_bundle *b, ward_err *err);

/* Decides. Never fails open: any engine failure yields decision = deny with
 * the failure as the reason (and returns 0); a negative return only means the
 * decision struct itself could not be filled (out of memory), which callers
 * must also treat as deny. */
int authz_decide(authz_engine *e, const authz_request *req, bool explain, authz_decision *out);

/* Parses the request JSON of DESIGN.md into req (unknown attributes and wrong
 * types are errors); req's strings point into *storage, freed with
 * authz_request_storage_free after use. */
typedef struct authz_request_storage authz_request_storage;
int authz_request_from_json(const char *json, size_t len, authz_request *req,
                            authz_request_storage **storage, ward_err *err);
void authz_request_storage_free(authz_request_storage *s);

#endif
