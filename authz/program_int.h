/* program_int.h - internal to authz/: the layout of a rule program (program.c builds, decide.c reads) */
#ifndef PROGRAM_INT_H
#define PROGRAM_INT_H

#include <stddef.h>
#include <string.h>

#include "authz/authz_int.h"

typedef enum attr {
    A_SOURCE_PRINCIPAL, A_SOURCE_IP, A_SOURCE_PORT, A_SOURCE_NAMESPACE, A_SOURCE_TRUST_DOMAIN,
    A_DESTINATION_SERVICE, A_DESTINATION_PRINCIPAL, A_DESTINATION_PORT, A_METHOD, A_HOST,
    A_PATH, A_QUERY, A_HEADER, A_PROTOCOL, A_MTLS, A_SNI, A_TIME,
    A_QPARAM, /* a query parameter (routes): named like A_HEADER, case-sensitively */
    A_COUNT
} attr;

/* Kinds with text come first: their payload is the text. */
typedef enum pat_kind { P_EXACT, P_PREFIX, P_SUFFIX, P_TEMPLATE, P_ANY, P_REGEX, P_CIDR, P_PORT } pat_kind;

/*
 * A rule is one contiguous, 4-byte aligned record in the program's code
 * area, laid out in the order a decision reads it, so that evaluating it
 * touches two or three adjacent cache lines and follows no pointers:
 *
 *   rule                   header
 *   group, alternatives    `from`, when R_FROM: each alt followed by its checks
 *   group, alternatives    `to`, when R_TO
 *   group, checks          `when`, when R_WHEN
 *   lua_cond[n_lua]        `lua:` conditions (registry refs)
 *
 * A check is followed by its patterns (for A_HEADER and A_QPARAM, first by
 * the name: a uint32_t length and the text, lowercased for A_HEADER), each pattern by its
 * payload: the text, a pcre2_code pointer or a ward_cidr. Groups,
 * alternatives and checks carry their size in bytes: their contents are
 * walked up to it, and a failed check or alternative is skipped in one
 * step. Rules are stored in id order: comparing offsets compares ids.
 */

#define PROGRAM_ALIGN 4

static inline size_t program_align(size_t n)
{
    return (n + PROGRAM_ALIGN - 1) & ~(size_t)(PROGRAM_ALIGN - 1);
}

typedef struct pat {
    uint8_t kind;
    uint8_t pad;
    uint16_t lead; /* P_TEMPLATE: bytes of whole literal segments before the first '{' */
    uint32_t len;  /* bytes of text; P_PORT: the port */
} pat;

#define CHECK_NEGATED 0x80 /* in check.flags, beside the name */

typedef struct check {
    uint8_t attr;
    uint8_t flags;  /* CHECK_NEGATED | program_field_names index (for explain) */
    uint16_t item;  /* for explain: from[item], to[item], when[item] */
    uint32_t size;  /* bytes of the check, its header name and its patterns */
} check;

typedef struct alt {
    uint32_t size; /* bytes of the alt and its checks (all must hold) */
} alt;

typedef struct group {
    uint32_t size; /* bytes of the group and its alternatives (from/to: any may hold) or checks (when: all must hold) */
} group;

typedef struct lua_cond {
    int ref;       /* the function, in the registry */
    uint32_t item; /* when[item].lua */
} lua_cond;

enum { K_NONE, K_DENY, K_ALLOW, K_DRY_DENY, K_DRY_ALLOW, K_AUDIT };
enum { R_FROM = 1, R_TO = 2, R_WHEN = 4 };

typedef struct rule {
    uint32_t id;
    uint32_t policy;
    uint32_t reason;    /* in the program's strings: for the decision */
    uint32_t policy_id; /* in the program's strings: pols[policy].id */
    uint32_t size;      /* bytes of the whole record */
    uint16_t index;     /* within its policy */
    uint16_t n_lua;
    uint8_t kind;
    uint8_t flags; /* R_FROM, R_TO, R_WHEN */
    uint8_t pad[2];
} rule;

/* Walking a record. */
static inline const char *pat_text(const pat *x)
{
    return (const char *)(x + 1);
}

static inline size_t pat_size(const pat *x)
{
    size_t payload;
    switch (x->kind) {
    case P_REGEX: payload = sizeof(pcre2_code *); break;
    case P_CIDR: payload = sizeof(ward_cidr); break;
    case P_ANY:
    case P_PORT: payload = 0; break;
    default: payload = x->len;
    }
    return sizeof(pat) + program_align(payload);
}

static inline pcre2_code *pat_regex(const pat *x)
{
    pcre2_code *re;
    memcpy(&re, x + 1, sizeof(re));
    return re;
}

static inline const ward_cidr *pat_cidr(const pat *x)
{
    return (const ward_cidr *)(const void *)(x + 1);
}

static inline const pat *pat_next(const pat *x)
{
    return (const pat *)(const void *)((const char *)x + pat_size(x));
}

static inline bool check_negated(const check *c)
{
    return (c->flags & CHECK_NEGATED) != 0;
}

static inline const char *check_name(const check *c);

static inline bool check_named(const check *c)
{
    return c->attr == A_HEADER || c->attr == A_QPARAM;
}

/* A_HEADER, A_QPARAM: the name (length and text) follows the check. */
static inline uint32_t check_header_len(const check *c)
{
    uint32_t len;
    memcpy(&len, c + 1, sizeof(len));
    return len;
}

static inline const char *check_header(const check *c)
{
    return (const char *)(c + 1) + sizeof(uint32_t);
}

static inline const pat *check_pats(const check *c)
{
    if (!check_named(c))
        return (const pat *)(const void *)(c + 1);
    size_t skip = program_align(sizeof(uint32_t) + check_header_len(c));
    return (const pat *)(const void *)((const char *)(c + 1) + skip);
}

/* The end of a record part: its first byte past its contents. */
static inline const void *part_end(const void *x, uint32_t size)
{
    return (const char *)x + size;
}

static inline const check *check_next(const check *c)
{
    return (const check *)part_end(c, c->size);
}

static inline const check *alt_checks(const alt *a)
{
    return (const check *)(const void *)(a + 1);
}

static inline const alt *alt_next(const alt *a)
{
    return (const alt *)part_end(a, a->size);
}

static inline const alt *group_alts(const group *g)
{
    return (const alt *)(const void *)(g + 1);
}

static inline const check *group_checks(const group *g)
{
    return (const check *)(const void *)(g + 1);
}

static inline const group *group_next(const group *g)
{
    return (const group *)part_end(g, g->size);
}

/* The groups of a rule: NULL when absent. */
static inline const group *rule_from(const rule *r)
{
    return r->flags & R_FROM ? (const group *)(const void *)(r + 1) : NULL;
}

static inline const group *rule_to(const rule *r)
{
    if (!(r->flags & R_TO))
        return NULL;
    const group *g = (const group *)(const void *)(r + 1);
    return r->flags & R_FROM ? group_next(g) : g;
}

static inline const group *rule_when(const rule *r)
{
    if (!(r->flags & R_WHEN))
        return NULL;
    const group *g = (const group *)(const void *)(r + 1);
    if (r->flags & R_FROM)
        g = group_next(g);
    if (r->flags & R_TO)
        g = group_next(g);
    return g;
}

static inline const lua_cond *rule_lua(const rule *r)
{
    return (const lua_cond *)part_end(r, r->size - r->n_lua * (uint32_t)sizeof(lua_cond));
}

/* The names of fields, for explain ("from[0].principals"). */
extern const char *const program_field_names[];

static inline const char *check_name(const check *c)
{
    return program_field_names[c->flags & ~CHECK_NEGATED];
}

enum { ACT_ALLOW, ACT_DENY, ACT_AUDIT };

typedef struct pol {
    const char *id;
    uint32_t id_off; /* of the id in the program's strings */
    const char *source;
    uint8_t action;
    bool dry;
    int deny_status;
    const char *deny_body;
    const char **services;
    uint32_t n_services;
} pol;

#define PREFIX_LAST 0x100

/* What a bucket indexes, per request attribute. */
enum { IX_PRINCIPAL, IX_PATH, IX_NAMESPACE, IX_COUNT };

typedef struct bucket {
    /* read by every decision to the workload, in this order (two or three
     * cache lines): which bucket, the index, then what is always considered */
    const char *service; /* NULL: workloads no selector names */
    size_t service_len;
    strmap index; /* principals, paths and namespaces: exact and prefix keys */
    /* the distinct lengths of prefix keys, ascending, as n_lens pairs (length,
     * last): last is PREFIX_LAST | the byte every key of the length ends with,
     * or 0 (a value without that byte there has none of these keys) */
    const uint32_t *lens[IX_COUNT];
    uint32_t n_lens[IX_COUNT];
    uint32_t n_exact[IX_COUNT];
    bool exact_filtered[IX_COUNT]; /* few exact keys: they are in the filter too */
    bool allow_exists, dry_allow_exists, has_dry;
    uint32_t n_always;
    const uint32_t *always; /* refs of the rules the indexes do not cover */
    /* the rules of always and the namespace index together, ascending: the
     * order in which the namespace candidates and always are considered */
    const uint32_t *late;
    uint32_t n_late;
    int deny_status; /* of the first enforced ALLOW policy with a deny response, or 0 */
    const char *deny_body;
    const char *default_reason;
    /* explain and building */
    uint32_t *policies, n_policies, cap_policies;
    uint32_t *rules, n_rules, cap_rules;
    uint32_t *own; /* the memory of lens, always and late */
} bucket;

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    uint64_t data[];
} chunk;

/* ---- routes (route.c builds them after the rules; decide.c chooses) ----
 *
 * Each Route's http entries, in order: the authz_route a decision hands out
 * and the match, a group of alternatives in the code area after the rule
 * records (as a rule's `to`: paths, methods, then A_HEADER and A_QPARAM
 * checks of one pattern each). Hosts are looked up in by_host (hash of the
 * lowercased host) and compared in full. */

typedef struct route_entry {
    authz_route route;
    uint32_t match; /* offset of the match group in code, in PROGRAM_ALIGN units */
    bool has_match; /* false: every request */
} route_entry;

typedef struct route_def {
    const char *id;
    const char *source;
    route_entry *entries;
    uint32_t n_entries;
} route_def;

typedef struct route_host {
    const char *host; /* lowercased */
    uint32_t len;
    uint32_t def;     /* in program.routes */
} route_host;

enum { NAME_HEADERS = 18, NAME_QUERY = 19 }; /* program_field_names of route match checks */

struct program {
    char *region; /* when large: code, indexes and lists in one block on huge pages */
    char *code;   /* the rule records, in id order */
    size_t code_len;
    uint32_t *rule_ref; /* id -> offset of the record in code, in PROGRAM_ALIGN units */
    char *strings;      /* the decisions' strings (reasons, policy ids), NUL-terminated */
    size_t strings_len;
    chunk *arena;       /* strings and policies */
    pol *pols;
    uint32_t n_pols;
    uint32_t n_rules;
    bucket wildcard;
    bucket *buckets;
    uint32_t n_buckets;
    strmap by_service; /* service name -> bucket number (names compared on a hit) */
    uint64_t seed;
    bool default_allow;
    uint32_t *seen; /* per rule: the decision generation that last considered it */
    uint32_t gen;
    int *refs; /* every `lua:` condition in the registry, to unref */
    uint32_t n_refs, cap_refs;
    pcre2_code **regexes; /* every compiled regex, to free */
    uint32_t n_regexes, cap_regexes;
    route_def *routes;
    uint32_t n_routes;
    route_host *hosts;
    uint32_t n_hosts;
    strmap by_host;       /* host -> index in hosts; empty without Routes */
    uint64_t host_lens[4]; /* bit n: some routed host is n bytes long (hosts are < 256) */
    authz_route scratch;  /* the route of the last decision, when it has a rewrite */
    ward_buf rewrite;     /* scratch.rewrite_path */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
};

static inline const rule *program_rule(const program *p, uint32_t ref)
{
    return (const rule *)(const void *)(p->code + (size_t)ref * PROGRAM_ALIGN);
}

static inline const char *program_string(const program *p, uint32_t off)
{
    return p->strings + off;
}

#define SERVICE_SALT 0x6A09E667F3BCC909ULL
#define HOST_SALT 0xBB67AE8584CAA73BULL

/* Index keys: the same hash of the bytes, told apart per attribute and kind. */
static inline uint64_t program_key(uint64_t h, int ix, bool prefix)
{
    return h ^ (0x9E3779B97F4A7C15ULL * (uint64_t)(2 * ix + (prefix ? 2 : 1)));
}

#define RE_MATCH_LIMIT 100000u
#define RE_DEPTH_LIMIT 10000u

/* Path templates ("/v1/{*}/items/{**}"): literal segments, {*} one non-empty
 * segment, {**} the rest. The first `lead` bytes of t are whole literal
 * segments, each with its '/' (compared at once). */
bool program_template_match(const char *t, size_t tlen, const char *s, size_t len, size_t lead);

/* ---- building, for route.c (program.c holds the builder) ---- */

typedef struct builder builder;

lua_State *program_builder_L(builder *b);
program *program_builder_program(builder *b);
void program_builder_where(builder *b, const char *where);
/* A malformed bundle: sets the error, returns WARD_ERESULT. */
int program_builder_bad(builder *b, const char *what);
/* n zeroed bytes (aligned) appended to the code area; *off is where. */
int program_builder_reserve(builder *b, size_t n, size_t *off);
void *program_builder_at(builder *b, size_t off);
/* The bytes from off to the end of the code area, as a part's size. */
int program_builder_size(builder *b, size_t off, uint32_t *size);
/* The list at the top of the stack as a check of attr (path: paths' syntax). */
int program_builder_check(builder *b, uint8_t at, uint8_t name, uint32_t item, bool path);
/* A check of a named attribute (A_HEADER, A_QPARAM) with one pattern: kind
 * P_EXACT, P_PREFIX (the value literally) or P_REGEX (the value compiled). */
int program_builder_named(builder *b, uint8_t at, uint8_t name, uint32_t item, const char *key,
                          size_t key_len, uint8_t kind, const char *value, size_t len);
/* Program memory freed with it. */
void *program_builder_alloc(builder *b, size_t size);
const char *program_builder_str(builder *b, const char *s, size_t len);

/* route.c */
int route_build(builder *b, int bundle); /* the bundle's routes (if any) at stack index bundle */
void route_free(program *p);

#endif
