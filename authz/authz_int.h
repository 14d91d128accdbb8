/* authz_int.h - internal to authz/: the rule program, its indexes, and shared helpers */
#ifndef AUTHZ_INT_H
#define AUTHZ_INT_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <lua.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "authz/authz.h"
#include "common/ward.h"

/* A JSON string literal of the bytes (invalid UTF-8 becomes U+FFFD). */
int authz_json_str(ward_buf *b, const char *s, size_t len);

/* ---- strmap.c: the rule index, 64-bit key hashes -> lists of ids ---- */

/* A seeded hash that reads 8 bytes at a time and can be finished at any
 * length from the state over the whole words before it: the hashes of every
 * prefix of a string cost one pass. */
static inline uint64_t strmap_mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

static inline uint64_t strmap_word(const char *s)
{
    uint64_t w;
    memcpy(&w, s, 8);
    return w;
}

/* Finishes the hash of s[0..len) from h, the state over its whole words:
 * the last (up to) 8 bytes, read in one load where the string is long
 * enough (overlapping bytes already in h), and the length. */
static inline uint64_t strmap_finish(uint64_t h, const char *s, size_t len)
{
    uint64_t w;
    if (len >= 8) {
        w = strmap_word(s + len - 8);
    } else {
        w = 0;
        if (len & 4) {
            uint32_t x;
            memcpy(&x, s + (len & 3), 4);
            w = (uint64_t)x << 32;
        }
        if (len & 2) {
            uint16_t x;
            memcpy(&x, s + (len & 1), 2);
            w |= (uint64_t)x << 16;
        }
        if (len & 1)
            w |= (unsigned char)s[0];
    }
    h = strmap_mix(h, w ^ ((uint64_t)len << 56));
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

/* The hashes of a string's prefixes, by ascending length. */
typedef struct strmap_hasher {
    const char *s;
    uint64_t state; /* over the whole words before pos */
    size_t pos;
} strmap_hasher;

static inline void strmap_hasher_init(strmap_hasher *h, uint64_t seed, const char *s)
{
    h->s = s;
    h->state = seed;
    h->pos = 0;
}

/* The hash of the first len bytes; len never less than the previous call's. */
static inline uint64_t strmap_hasher_at(strmap_hasher *h, size_t len)
{
    for (; h->pos + 8 <= len; h->pos += 8)
        h->state = strmap_mix(h->state, strmap_word(h->s + h->pos));
    return strmap_finish(h->state, h->s, len);
}

uint64_t strmap_hash(uint64_t seed, const char *s, size_t len);

/* Open addressing over 8-byte slots that hold part of the key's hash and
 * the key's ids (one inline, or a list). Keys themselves are not stored: a
 * lookup yields every list filed under its hash (rarely one more, on a
 * collision), so callers verify what they get. That is what the index of
 * candidate rules needs: a candidate is always evaluated in full. */
typedef struct strmap_slot {
    uint32_t tag; /* 0: empty; else bit 0 set, bit 1: val is the one id */
    uint32_t val; /* the one id, or the offset of {n, ids...} in lists */
} strmap_slot;

typedef struct strmap {
    strmap_slot *slots;
    uint32_t mask;
    uint32_t *lists;
    /* a bit filter over the keys added with `filtered`: a lookup of such a
     * key that is absent usually stops here, in one or two cache lines */
    uint64_t *filter;
    uint32_t filter_mask; /* bits - 1 */
    uint32_t list_words;  /* in lists */
    bool borrowed;        /* the arrays belong to someone else (strmap_dispose keeps them) */
} strmap;

static inline uint32_t strmap_tag(uint64_t key)
{
    return ((uint32_t)(key >> 32) & ~3u) | 1u;
}

/* The filter bit of a key. */
static inline uint32_t strmap_filter_bit(uint64_t key, uint32_t filter_mask)
{
    return (uint32_t)(key >> 12) & filter_mask;
}

static inline bool strmap_filter_test(const uint64_t *filter, uint32_t filter_mask, uint64_t key)
{
    uint32_t bit = strmap_filter_bit(key, filter_mask);
    return (filter[bit / 64] >> (bit % 64)) & 1;
}

/* May the key have been added with `filtered`? (false: it was not) */
static inline bool strmap_filter_has(const strmap *m, uint64_t key)
{
    return strmap_filter_test(m->filter, m->filter_mask, key);
}

/* Iterates the lists filed under key: start with *pos = (uint32_t)key; each
 * call returns the next list (n ids, ascending) or NULL at the end. */
static inline const uint32_t *strmap_next(const strmap *m, uint64_t key, uint32_t *pos,
                                          uint32_t *n)
{
    if (m->slots == NULL)
        return NULL;
    uint32_t tag = strmap_tag(key);
    for (uint32_t i = *pos & m->mask;; i = (i + 1) & m->mask) {
        const strmap_slot *s = &m->slots[i];
        if (s->tag == 0)
            return NULL;
        if ((s->tag & ~2u) == tag) {
            *pos = i + 1;
            if (s->tag & 2) {
                *n = 1;
                return &s->val;
            }
            *n = m->lists[s->val];
            return &m->lists[s->val + 1];
        }
    }
}

/* Building: entries in any order; the ids of a key end up ascending, without repeats. */
typedef struct strmap_entry {
    uint64_t key;
    uint32_t id;
    uint32_t filtered;
} strmap_entry;

typedef struct strmap_builder {
    strmap_entry *e;
    size_t n, cap;
    size_t n_filtered;
} strmap_builder;

void strmap_builder_init(strmap_builder *b);
void strmap_builder_dispose(strmap_builder *b);
int strmap_builder_add(strmap_builder *b, uint64_t key, uint32_t id, bool filtered);
/* Builds m from b (b is left empty). */
int strmap_build(strmap *m, strmap_builder *b);
void strmap_dispose(strmap *m);

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
