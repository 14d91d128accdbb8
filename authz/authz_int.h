/* authz_int.h - internal to authz/: the rule program, its indexes, and shared helpers */
#ifndef AUTHZ_INT_H
#define AUTHZ_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <lua.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>

#include "authz/authz.h"
#include "common/ward.h"

/* A JSON string literal of the bytes (invalid UTF-8 becomes U+FFFD). */
int authz_json_str(ward_buf *b, const char *s, size_t len);

/* ---- strmap.c: byte string -> list of rule ids (ascending) ---- */

typedef struct strmap_slot {
    const char *key; /* NULL = empty slot; points into the rule program's arena */
    size_t len;
    uint64_t hash;
    uint32_t *ids; /* NULL while the list holds one id, kept in `one` */
    uint32_t one;
    uint32_t n_ids, cap_ids;
} strmap_slot;

#define STRMAP_FILTER_BITS 4096

typedef struct strmap {
    strmap_slot *slots;
    size_t cap, n;
    uint64_t seed;
    size_t *lens; /* the distinct key lengths, ascending (for prefix lookups) */
    size_t n_lens;
    /* one bit per hash value (mod STRMAP_FILTER_BITS): most absent keys are
     * refused here, in a few cache lines, without touching the slots */
    uint64_t filter[STRMAP_FILTER_BITS / 64];
} strmap;

void strmap_init(strmap *m, uint64_t seed);
void strmap_dispose(strmap *m);
int strmap_add(strmap *m, const char *key, size_t len, uint32_t id);
const strmap_slot *strmap_get(const strmap *m, const char *key, size_t len);
/* The ids of a slot, ascending. */
static inline const uint32_t *strmap_ids(const strmap_slot *s)
{
    return s->ids != NULL ? s->ids : &s->one;
}
/* The slots of every key that is a prefix of s (at most max, shortest first). */
size_t strmap_prefixes(const strmap *m, const char *s, size_t len, const strmap_slot **out,
                       size_t max);

/* ---- program.c: the compiled rules as C data, built from the Lua bundle ---- */

typedef struct program program;

/* Converts the table the bundle returned (at the top of L's stack, left there)
 * into a program. Lua conditions stay in L, referenced from the registry. */
int program_build(lua_State *L, program **out, ward_err *err);
void program_free(program *p, lua_State *L);

/* A Lua condition call: 1 = holds, 0 = does not, <0 = engine failure (err set). */
typedef int (*program_cond_fn)(void *data, int ref, const char *field, ward_err *err);

/* Decides req: fills d (initialized by the caller), whose strings point into
 * the program. Returns 0, or <0 when evaluation failed (a Lua condition, a
 * regex limit; err says why) - the caller turns that into a deny. With
 * explain != NULL, appends the explain trace (a JSON array). */
int program_decide(program *p, const authz_request *req, program_cond_fn cond, void *cond_data,
                   authz_decision *d, ward_buf *explain, ward_err *err);

#endif
