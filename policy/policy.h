/* policy.h - declarative rules: loading (YAML/JSON with positions), validation, compilation to Lua */
#ifndef POLICY_H
#define POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/ward.h"

/* Where a value came from. `file` points at a string owned by the policy set. */
typedef struct policy_pos {
    const char *file;
    int line; /* 1-based; 0 = unknown */
    int col;  /* 1-based */
} policy_pos;

typedef enum policy_match_kind {
    POLICY_MATCH_EXACT,    /* "abc" */
    POLICY_MATCH_PREFIX,   /* "abc*"  (value holds "abc"; also matches "abc") */
    POLICY_MATCH_SUFFIX,   /* "*abc"  (value holds "abc") */
    POLICY_MATCH_ANY,      /* "*"     present and non-empty; value is "" */
    POLICY_MATCH_TEMPLATE, /* path "/a/{*}/b/{**}" (value holds the whole template) */
    POLICY_MATCH_REGEX,    /* {regex: "..."} (value holds the pattern) */
    POLICY_MATCH_CIDR,     /* ipBlocks / source.ip values: "10.0.0.0/8" (value as written) */
} policy_match_kind;

/* One pattern. `value` is NUL-terminated but may contain NUL bytes: use len.
 * Hosts are stored lowercased (they match case-insensitively). */
typedef struct policy_match {
    policy_match_kind kind;
    char *value;
    size_t len;
    policy_pos pos;
} policy_match;

/* A list-valued field. present=false when the key was absent (absent means
 * "no constraint"; present with n=0 is rejected by validation). */
typedef struct policy_matches {
    bool present;
    policy_match *v;
    size_t n;
    policy_pos pos;
} policy_matches;

typedef struct policy_ports {
    bool present;
    unsigned *v; /* 1..65535 */
    size_t n;
    policy_pos pos;
} policy_ports;

typedef struct policy_source {
    policy_pos pos;
    policy_matches principals, not_principals;
    policy_matches namespaces, not_namespaces;
    policy_matches trust_domains, not_trust_domains;
    policy_matches ip_blocks, not_ip_blocks; /* kind POLICY_MATCH_CIDR */
} policy_source;

typedef struct policy_operation {
    policy_pos pos;
    policy_matches methods, not_methods;
    policy_matches hosts, not_hosts;
    policy_ports ports, not_ports;
    policy_matches paths, not_paths; /* may hold TEMPLATE and REGEX */
} policy_operation;

/* The request attributes a `when` key may name (DESIGN.md, Request attributes). */
typedef enum policy_attr {
    POLICY_ATTR_SOURCE_PRINCIPAL,
    POLICY_ATTR_SOURCE_IP, /* values are CIDR blocks */
    POLICY_ATTR_SOURCE_PORT,
    POLICY_ATTR_SOURCE_NAMESPACE,
    POLICY_ATTR_SOURCE_TRUST_DOMAIN,
    POLICY_ATTR_DESTINATION_SERVICE,
    POLICY_ATTR_DESTINATION_PRINCIPAL,
    POLICY_ATTR_DESTINATION_PORT,
    POLICY_ATTR_REQUEST_METHOD,
    POLICY_ATTR_REQUEST_HOST, /* case-insensitive; values stored lowercased */
    POLICY_ATTR_REQUEST_PATH,
    POLICY_ATTR_REQUEST_QUERY,
    POLICY_ATTR_REQUEST_HEADER, /* header name in policy_condition.header (lowercased) */
    POLICY_ATTR_REQUEST_PROTOCOL,
    POLICY_ATTR_CONNECTION_MTLS, /* compared as "true" / "false" */
    POLICY_ATTR_CONNECTION_SNI,
    POLICY_ATTR_TIME, /* RFC 3339 UTC string */
} policy_attr;

/* Canonical attribute name ("source.principal", "request.headers" ...). */
const char *policy_attr_name(policy_attr a);

typedef struct policy_condition {
    policy_pos pos;
    bool is_lua;
    /* key/values form */
    policy_attr attr;
    char *header; /* for POLICY_ATTR_REQUEST_HEADER, lowercased */
    policy_matches values, not_values;
    /* lua form: an expression over `req` (the request attributes as nested
     * tables, plus req.time.{unix,year,month,day,hour,minute,second,weekday}) */
    char *lua;
} policy_condition;

typedef struct policy_rule {
    policy_pos pos;
    bool from_present;
    policy_source *from;
    size_t n_from;
    bool to_present;
    policy_operation *to;
    size_t n_to;
    policy_condition *when;
    size_t n_when;
} policy_rule;

typedef enum policy_action { POLICY_ALLOW, POLICY_DENY, POLICY_AUDIT } policy_action;

typedef struct policy_authz {
    policy_pos pos; /* of the document */
    char *name;
    char *ns;       /* "default" when omitted */
    char *id;       /* "ns/name" */
    bool selector_present;
    char **services; /* exact service names */
    size_t n_services;
    policy_action action;
    bool dry_run;
    policy_rule *rules;
    size_t n_rules;
    bool rules_present;
    int deny_status;  /* 0 = not set (engine default 403) */
    char *deny_body;  /* NULL = not set */
} policy_authz;

/* ---- Route (traffic management) ---------------------------------------------------- */

/* A header or query parameter constraint of a route match: the value is
 * EXACT ("v" or {exact: v}), PREFIX ({prefix: v}) or REGEX ({regex: v}). */
typedef struct policy_kv_match {
    policy_pos pos;
    char *name; /* headers: lowercased; query parameters: as written */
    policy_match value;
} policy_kv_match;

/* One alternative of an http entry's `match` (all present fields must hold). */
typedef struct policy_route_match {
    policy_pos pos;
    policy_matches paths;   /* as in AuthorizationPolicy paths */
    policy_matches methods;
    policy_kv_match *headers;
    size_t n_headers;
    policy_kv_match *query; /* queryParams */
    size_t n_query;
} policy_route_match;

typedef struct policy_destination {
    policy_pos pos;
    char *service;   /* a DNS label, as ward-proxy upstream names are */
    unsigned weight; /* 0..100; a single destination without weight gets 100 */
} policy_destination;

/* retries.on: the conditions, also as normalized names for the compiled bundle. */
enum {
    POLICY_RETRY_CONNECT_FAILURE = 1u << 0,
    POLICY_RETRY_RESET = 1u << 1,
};

typedef struct policy_retries {
    bool present;
    unsigned attempts;        /* retries after the first try, 0..10 */
    uint64_t per_try_timeout_ms; /* 0 = not set */
    unsigned on;              /* POLICY_RETRY_* */
    uint8_t on_status[13];    /* bit (code - 500) set: a retried 5xx status */
    char **on_names;          /* normalized: "connect-failure", "reset", "5xx", "gateway-error", "503" */
    size_t n_on;
    bool non_idempotent;      /* retry POST, PATCH ... too (default false) */
    uint64_t max_body_bytes;  /* 0 = not set */
} policy_retries;

typedef struct policy_header_op {
    policy_pos pos;
    char *name;  /* an HTTP token, as written */
    char *value; /* NULL for remove */
} policy_header_op;

typedef struct policy_header_ops {
    policy_header_op *set, *add, *remove;
    size_t n_set, n_add, n_remove;
} policy_header_ops;

typedef enum policy_rate_key {
    POLICY_RATE_KEY_NONE,      /* one bucket for the route entry */
    POLICY_RATE_KEY_PRINCIPAL, /* a bucket per source.principal */
    POLICY_RATE_KEY_HEADER,    /* a bucket per value of request.headers[header] */
} policy_rate_key;

typedef struct policy_rate_limit {
    bool present;
    uint64_t requests; /* 1..1,000,000,000 */
    uint64_t per_ms;   /* 1 ms .. 24 h */
    policy_rate_key key;
    char *header; /* POLICY_RATE_KEY_HEADER: lowercased */
} policy_rate_limit;

typedef struct policy_http_route {
    policy_pos pos;
    char *name;
    bool match_present; /* false: matches every request */
    policy_route_match *match;
    size_t n_match;
    policy_destination *destinations;
    size_t n_destinations;
    uint64_t timeout_ms; /* 0 = not set */
    policy_retries retries;
    char *rewrite_prefix; /* NULL = no rewrite */
    policy_header_ops request_headers, response_headers;
    policy_rate_limit rate_limit;
    char *mirror_service; /* NULL = no mirror */
    unsigned mirror_percent;
    policy_pos mirror_pos;
} policy_http_route;

typedef struct policy_route {
    policy_pos pos; /* of the document */
    char *name;
    char *ns;
    char *id;      /* "ns/name" */
    char **hosts;  /* lowercased host names (no port, no wildcard) */
    policy_pos *host_pos;
    size_t n_hosts;
    policy_http_route *http; /* in order: the first matching entry wins */
    size_t n_http;
} policy_route;

typedef struct policy_set policy_set;

int policy_set_new(policy_set **out);
void policy_set_free(policy_set *set);

/* Loads one document stream (YAML, possibly multi-document, or JSON; JSON is
 * YAML so one parser serves both) of AuthorizationPolicy and Route documents.
 * `name` is what error positions call the file. Every problem is added to diag
 * as "name:line:col: field.path: message"; returns WARD_EPOLICY if any was
 * found (valid documents are still added). Warnings never go to diag: see
 * policy_set_warnings. */
int policy_set_load_buffer(policy_set *set, const char *name, const char *data, size_t len,
                           ward_diag *diag);
/* Files, or folders (every *.yaml, *.yml, *.json below, sorted by name; a
 * folder named "tests" is skipped). Unreadable paths are diagnostics too. */
int policy_set_load_paths(policy_set *set, const char *const *paths, size_t n, ward_diag *diag);

/* The AuthorizationPolicies, in load order. */
size_t policy_set_count(const policy_set *set);
const policy_authz *policy_set_get(const policy_set *set, size_t i);
/* The Routes, in load order. */
size_t policy_set_route_count(const policy_set *set);
const policy_route *policy_set_route(const policy_set *set, size_t i);
/* Problems that do not make the set invalid (an http entry an earlier entry
 * shadows, a rewrite that doubles a slash ...), in load order, each as
 * "file:line:col: warning: field.path: message". Never NULL. */
const ward_diag *policy_set_warnings(const policy_set *set);

/* Whether a service a Route sends traffic to exists: the policy layer cannot
 * know the proxy's upstreams, so a caller that does (ward-proxy --check)
 * passes this. */
typedef bool (*policy_service_known_cb)(void *data, const char *service);
/* Adds "file:line:col: spec.http[N].destinations[M].service: unknown service
 * \"x\" ..." to diag for every destination and mirror service known() denies,
 * in the Routes that name at least one service known() accepts (as a host, a
 * destination or a mirror): a Route naming none is for other proxies of the
 * mesh. Returns WARD_EPOLICY if there was one, else 0. */
int policy_set_check_services(const policy_set *set, policy_service_known_cb known, void *data,
                              ward_diag *diag);

/* SHA-256 (hex) over the loaded inputs in load order: the policy revision. */
const char *policy_set_revision(const policy_set *set);

typedef struct policy_compile_opts {
    bool default_allow; /* false: default deny */
    const char *only_service; /* non-NULL: compile only what selects this service */
} policy_compile_opts;

/* Emits deterministic Lua source (see compile.c for its shape) to out. */
int policy_set_compile(const policy_set *set, const policy_compile_opts *opts, ward_buf *out,
                       ward_err *err);

#endif
