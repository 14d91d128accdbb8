/* policy_int.h - internal: the policy set's body and the document validator shared by load.c/validate.c */
#ifndef POLICY_INT_H
#define POLICY_INT_H

#include <stddef.h>

#include "common/ward.h"
#include "policy/policy.h"

/* Bounds of one policy set (errors, never crashes). */
#define POLICY_MAX_RULES 100000     /* rules over the whole set */
#define POLICY_MAX_LIST 10000       /* values in any one list */
#define POLICY_MAX_LUA 4096         /* bytes of one `lua:` condition */
#define POLICY_MAX_DENY_BODY 4096   /* bytes of denyResponse.body */
#define POLICY_MAX_NAME 253         /* metadata.name / metadata.namespace */

/* A validated document together with where its metadata.name was written. */
typedef struct policy_entry {
    policy_authz *authz;
    policy_pos name_pos;
} policy_entry;

/* What a document turned into. */
typedef enum policy_doc_kind {
    POLICY_DOC_EMPTY,   /* empty document (null root): skipped */
    POLICY_DOC_AUTHZ,   /* *out holds a valid AuthorizationPolicy */
    POLICY_DOC_INVALID, /* problems were reported to diag */
} policy_doc_kind;

/* Validates one document root. `file` must outlive the result (the set owns
 * it). At most `rules_left` rules may be added. On POLICY_DOC_AUTHZ, *out is a
 * new policy (free with policy_authz_free) and *name_pos where its name is.
 * Returns 0 or WARD_ENOMEM; *kind says what the document was. */
int policy_doc_validate(const ward_node *root, const char *file, size_t rules_left,
                        ward_diag *diag, policy_doc_kind *kind, policy_authz **out,
                        policy_pos *name_pos);

void policy_authz_free(policy_authz *a);

#endif
