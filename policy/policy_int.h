/* policy_int.h - internal: the policy set's body and the document validator shared by load.c/validate.c */
#ifndef POLICY_INT_H
#define POLICY_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/ward.h"
#include "policy/policy.h"

/* Bounds of one policy set (errors, never crashes). */
#define POLICY_MAX_RULES 100000     /* rules over the whole set */
#define POLICY_MAX_LIST 10000       /* values in any one list */
#define POLICY_MAX_LUA 4096         /* bytes of one `lua:` condition */
#define POLICY_MAX_DENY_BODY 4096   /* bytes of denyResponse.body */
#define POLICY_MAX_NAME 253         /* metadata.name / metadata.namespace */

#define POLICY_MAX_HTTP 1000       /* http entries of one Route */
#define POLICY_MAX_DESTINATIONS 100
#define POLICY_MAX_HEADER_OPS 64   /* per set / add / remove list */
#define POLICY_MAX_HEADER_VALUE 4096

/* A validated document together with where its metadata.name was written. */
typedef struct policy_entry {
    policy_authz *authz;
    policy_pos name_pos;
} policy_entry;

typedef struct policy_route_entry {
    policy_route *route;
    policy_pos name_pos;
} policy_route_entry;

/* What a document turned into. */
typedef enum policy_doc_kind {
    POLICY_DOC_EMPTY,   /* empty document (null root): skipped */
    POLICY_DOC_AUTHZ,   /* out->authz holds a valid AuthorizationPolicy */
    POLICY_DOC_ROUTE,   /* out->route holds a valid Route */
    POLICY_DOC_INVALID, /* problems were reported to diag */
} policy_doc_kind;

typedef struct policy_doc {
    policy_doc_kind kind;
    policy_authz *authz;
    policy_route *route;
    policy_pos name_pos; /* where metadata.name is */
} policy_doc;

/* Validates one document root. `file` must outlive the result (the set owns
 * it). At most `rules_left` rules (or http entries) may be added. Errors go
 * to diag; warnings of a valid document to warnings. The result is a new
 * policy (free with policy_authz_free / policy_route_free). Returns 0 or
 * WARD_ENOMEM; out->kind says what the document was. */
int policy_doc_validate(const ward_node *root, const char *file, size_t rules_left,
                        ward_diag *diag, ward_diag *warnings, policy_doc *out);

void policy_authz_free(policy_authz *a);
void policy_route_free(policy_route *r);

/* ---- shared by validate.c and route.c ---- */

policy_pos policy_node_pos(const ward_docv *c, const ward_node *n);
/* A hint for keys Istio users nest (operation:, source:); NULL for none. */
const char *policy_nesting_hint(const ward_node *key);
bool policy_tchar(char ch);
/* List fields as in AuthorizationPolicy operations (absent = no constraint). */
void policy_parse_paths(ward_docv *c, const ward_node *map, const char *key, policy_matches *out);
void policy_parse_methods(ward_docv *c, const ward_node *map, const char *key,
                          policy_matches *out);
/* {regex: "..."}: checked with PCRE2 as paths' regexes are. */
void policy_parse_regex(ward_docv *c, const ward_node *map, policy_match *m);
/* A metadata.name / namespace value: a DNS name. */
char *policy_parse_name(ward_docv *c, const ward_node *n);
/* One of names (NULL-terminated); *out its index. */
bool policy_parse_enum(ward_docv *c, const ward_node *n, const char *const *names, int *out);
void policy_matches_free(policy_matches *m);
/* "ns/name" */
char *policy_make_id(const char *ns, const char *name);

/* route.c: spec of a Route document into r; warnings (if the document turns
 * out valid) into warn. */
void policy_route_parse_spec(ward_docv *c, const ward_node *spec, policy_route *r,
                             size_t entries_left, ward_diag *warn);
/* Shadowed entries and the like: run on a valid Route, adds warnings. */
int policy_route_warnings(const policy_route *r, ward_diag *warn);

#endif
