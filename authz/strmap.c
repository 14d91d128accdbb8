/* strmap.c - an open-addressing hash map from byte strings to lists of rule ids */
#include <stdlib.h>
#include <string.h>

#include "authz/authz_int.h"

/* A seeded hash that reads 8 bytes at a time and can be finished at any
 * length from the state over the whole words before it: the hashes of every
 * prefix of a string cost one pass. (The maps hold policy keys; a lookup key
 * chosen by a peer can at worst walk one cluster of them.) */
static inline uint64_t mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}

static inline uint64_t word_at(const char *s)
{
    uint64_t w;
    memcpy(&w, s, 8);
    return w;
}

/* Finishes a hash whose whole words (the first len & ~7 bytes) are in h. */
static inline uint64_t finish(uint64_t h, const char *tail, size_t len)
{
    uint64_t w = 0;
    memcpy(&w, tail, len & 7);
    h = mix(h, w ^ ((uint64_t)len << 56));
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

static uint64_t hash_bytes(uint64_t seed, const char *s, size_t len)
{
    uint64_t h = seed;
    size_t i = 0;
    for (; i + 8 <= len; i += 8)
        h = mix(h, word_at(s + i));
    return finish(h, s + i, len);
}

void strmap_init(strmap *m, uint64_t seed)
{
    memset(m, 0, sizeof(*m));
    m->seed = seed;
}

void strmap_dispose(strmap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].ids);
    free(m->slots);
    free(m->lens);
    memset(m, 0, sizeof(*m));
}

static strmap_slot *find_slot(const strmap *m, uint64_t h, const char *key, size_t len)
{
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        strmap_slot *s = &m->slots[i];
        if (s->key == NULL)
            return s;
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
            return s;
    }
}

static int grow(strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    strmap_slot *old = m->slots;
    size_t old_cap = m->cap;
    m->slots = calloc(cap, sizeof(*m->slots));
    if (m->slots == NULL) {
        m->slots = old;
        return WARD_ENOMEM;
    }
    m->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key != NULL)
            *find_slot(m, old[i].hash, old[i].key, old[i].len) = old[i];
    free(old);
    return 0;
}

static int note_length(strmap *m, size_t len)
{
    for (size_t i = 0; i < m->n_lens; i++)
        if (m->lens[i] == len)
            return 0;
    size_t *l = realloc(m->lens, (m->n_lens + 1) * sizeof(*l));
    if (l == NULL)
        return WARD_ENOMEM;
    m->lens = l;
    size_t i = m->n_lens++;
    while (i > 0 && m->lens[i - 1] > len) { /* kept sorted ascending */
        m->lens[i] = m->lens[i - 1];
        i--;
    }
    m->lens[i] = len;
    return 0;
}

int strmap_add(strmap *m, const char *key, size_t len, uint32_t id)
{
    if ((m->n + 1) * 4 > m->cap * 3 && grow(m) < 0)
        return WARD_ENOMEM;
    uint64_t h = hash_bytes(m->seed, key, len);
    strmap_slot *s = find_slot(m, h, key, len);
    if (s->key == NULL) {
        if (note_length(m, len) < 0)
            return WARD_ENOMEM;
        s->key = key;
        s->len = len;
        s->hash = h;
        s->one = id;
        s->n_ids = 1;
        m->n++;
        m->filter[(h % STRMAP_FILTER_BITS) / 64] |= 1ULL << (h % 64);
        return 0;
    }
    if (strmap_ids(s)[s->n_ids - 1] == id)
        return 0;
    if (s->ids == NULL) { /* the second id: move the list out of line */
        s->ids = malloc(4 * sizeof(uint32_t));
        if (s->ids == NULL)
            return WARD_ENOMEM;
        s->ids[0] = s->one;
        s->cap_ids = 4;
    }
    if (s->n_ids == s->cap_ids) {
        uint32_t cap = s->cap_ids ? s->cap_ids * 2 : 2;
        uint32_t *ids = realloc(s->ids, cap * sizeof(*ids));
        if (ids == NULL)
            return WARD_ENOMEM;
        s->ids = ids;
        s->cap_ids = cap;
    }
    s->ids[s->n_ids++] = id;
    return 0;
}

static inline bool filter_has(const strmap *m, uint64_t h)
{
    return (m->filter[(h % STRMAP_FILTER_BITS) / 64] >> (h % 64)) & 1;
}

const strmap_slot *strmap_get(const strmap *m, const char *key, size_t len)
{
    if (m->n == 0)
        return NULL;
    uint64_t h = hash_bytes(m->seed, key, len);
    if (!filter_has(m, h))
        return NULL;
    const strmap_slot *s = find_slot(m, h, key, len);
    return s->key != NULL ? s : NULL;
}

size_t strmap_prefixes(const strmap *m, const char *s, size_t len, const strmap_slot **out,
                       size_t max)
{
    size_t n = 0;
    if (m->n == 0)
        return 0;
    uint64_t state = m->seed;
    size_t pos = 0; /* bytes in state: whole words only */
    for (size_t i = 0; i < m->n_lens && m->lens[i] <= len && n < max; i++) {
        size_t plen = m->lens[i];
        for (; pos + 8 <= plen; pos += 8) /* the hash of each prefix, incrementally */
            state = mix(state, word_at(s + pos));
        uint64_t h = finish(state, s + pos, plen);
        if (!filter_has(m, h))
            continue;
        const strmap_slot *slot = find_slot(m, h, s, plen);
        if (slot->key != NULL)
            out[n++] = slot;
    }
    return n;
}
