/* authz.h - the decision API: request attributes in, decision (+ explain) out */
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
