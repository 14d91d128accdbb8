/* program_int.h - internal to authz/: the layout of a rule program (program.c builds, decide.c reads) */
#ifndef PROGRAM_INT_H
#define PROGRAM_INT_H

#include <stddef.h>

#include "authz/authz_int.h"

typedef enum attr {
    A_SOURCE_PRINCIPAL, A_SOURCE_IP, A_SOURCE_PORT, A_SOURCE_NAMESPACE, A_SOURCE_TRUST_DOMAIN,
    A_DESTINATION_SERVICE, A_DESTINATION_PRINCIPAL, A_DESTINATION_PORT, A_METHOD, A_HOST,
    A_PATH, A_QUERY, A_HEADER, A_PROTOCOL, A_MTLS, A_SNI, A_TIME, A_COUNT
} attr;

typedef enum pat_kind { P_EXACT, P_PREFIX, P_SUFFIX, P_ANY, P_TEMPLATE, P_REGEX, P_CIDR, P_PORT } pat_kind;

typedef struct tseg {
    uint32_t off, len; /* literal text in the template */
    uint8_t kind;      /* 0 literal, 1 {*}, 2 {**} */
} tseg;

typedef struct pat {
    uint8_t kind;
    uint32_t len;
    const char *s;
    union {
        pcre2_code *re;
        ward_cidr cidr;
        unsigned port;
        struct {
            tseg *segs;
            uint32_t n;
        } tpl;
    } u;
} pat;

typedef struct check {
    uint8_t attr;
    bool negated;
    uint32_t n;
    pat *pats;
    const char *header; /* A_HEADER: lowercased name */
    size_t header_len;
    /* for explain, "from[0].principals": group, item and name (static strings) */
    const char *group;
    const char *name;
    uint32_t item;
} check;

typedef struct alt {
    check *checks;
    uint32_t n;
} alt;

enum { K_NONE, K_DENY, K_ALLOW, K_DRY_DENY, K_DRY_ALLOW, K_AUDIT };

typedef struct rule {
    uint32_t policy;
    uint32_t index;
    uint8_t kind;
    bool from_present, to_present;
    alt *from, *to;
    uint32_t n_from, n_to;
    check *when;
    uint32_t n_when;
    int *lua_refs;
    const char **lua_fields;
    uint32_t n_lua;
    const char *reason;
} rule;

enum { ACT_ALLOW, ACT_DENY, ACT_AUDIT };

typedef struct pol {
    const char *id;
    const char *source;
    uint8_t action;
    bool dry;
    int deny_status;
    const char *deny_body;
    const char **services;
    uint32_t n_services;
} pol;

typedef struct bucket {
    const char *service; /* NULL: workloads no selector names */
    uint32_t *policies, n_policies, cap_policies;
    uint32_t *rules, n_rules, cap_rules;
    uint32_t *always, n_always, cap_always;
    strmap principal_exact, principal_prefix, path_exact, path_prefix;
    bool allow_exists, dry_allow_exists, has_dry;
    const char *default_reason;
} bucket;

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    uint64_t data[];
} chunk;

struct program {
    chunk *arena;
    pol *pols;
    uint32_t n_pols;
    rule **rules;
    uint32_t n_rules;
    bucket wildcard;
    bucket *buckets;
    uint32_t n_buckets;
    strmap by_service; /* service -> bucket index (one id) */
    bool default_allow;
    uint32_t *seen; /* per rule: the decision generation that last looked at it */
    uint32_t gen;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
};

#define PROGRAM_MAX_CANDIDATE_LISTS 64
#define RE_MATCH_LIMIT 100000u
#define RE_DEPTH_LIMIT 10000u

/* Path templates: literal segments, {*} one non-empty segment, {**} the rest. */
bool program_template_match(const pat *x, const char *s, size_t len);

#endif
