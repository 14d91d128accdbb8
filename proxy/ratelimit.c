/* ratelimit.c - local rate limits: integer token buckets, per key in a bounded LRU table */
#include "proxy/proxy.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>

#define NIL        UINT32_MAX
#define FIRST_SIZE 64u /* buckets allocated before the table grows (up to max_keys) */

typedef struct rl_bucket {
    uint64_t hash;         /* keyed: SipHash of the key */
    uint64_t units;        /* tokens * cost */
    uint64_t last_ms;      /* when units were last brought up to date */
    uint32_t newer, older; /* the LRU list */
    uint32_t chain;        /* the next bucket in the same hash slot */
} rl_bucket;

struct proxy_ratelimit {
    uint64_t rate; /* units gained per millisecond (= requests) */
    uint64_t cost; /* units per token (= per_ms * workers) */
    uint64_t cap;  /* units a bucket holds when full */
    bool keyed;
    uint32_t max_keys;
    rl_bucket one; /* unkeyed */
    /* keyed */
    rl_bucket *b;
    uint32_t n, size; /* buckets used, allocated */
    uint32_t *slots;  /* hash slot -> first bucket, NIL if none */
    uint32_t mask;    /* slots - 1 */
    uint32_t newest, oldest;
    uint64_t k0, k1; /* the SipHash secret */
};

/* ---- SipHash-2-4 (Aumasson and Bernstein), 64-bit output ------------------------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t load64_le(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t siphash24(uint64_t k0, uint64_t k1, const unsigned char *in, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load64_le(in + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        last |= (uint64_t)in[full + i] << (8 * i);
    v3 ^= last;
    SIPROUND;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- buckets --------------------------------------------------------------------------------- */

/* Brings b's units up to now_ms (time never runs backwards for a bucket). */
static void refill(const proxy_ratelimit *l, rl_bucket *b, uint64_t now_ms)
{
    if (now_ms <= b->last_ms)
        return;
    uint64_t dt = now_ms - b->last_ms;
    uint64_t missing = l->cap - b->units;
    uint64_t need_ms = missing / l->rate + (missing % l->rate != 0);
    /* dt < need_ms implies dt * rate < missing: no overflow, never above cap */
    b->units = dt >= need_ms ? l->cap : b->units + dt * l->rate;
    b->last_ms = now_ms;
}

static bool take(const proxy_ratelimit *l, rl_bucket *b, uint64_t now_ms, uint64_t *retry_after_s)
{
    refill(l, b, now_ms);
    if (b->units >= l->cost) {
        b->units -= l->cost;
        if (retry_after_s != NULL)
            *retry_after_s = 0;
        return true;
    }
    if (retry_after_s != NULL) {
        uint64_t needed = l->cost - b->units;
        uint64_t ms = needed / l->rate + (needed % l->rate != 0);
        *retry_after_s = ms / 1000 + (ms % 1000 != 0); /* = ceil of the exact time in seconds */
    }
    return false;
}

/* ---- the key table --------------------------------------------------------------------------- */

static void lru_unlink(proxy_ratelimit *l, uint32_t i)
{
    rl_bucket *b = &l->b[i];
    if (b->newer != NIL)
        l->b[b->newer].older = b->older;
    else
        l->newest = b->older;
    if (b->older != NIL)
        l->b[b->older].newer = b->newer;
    else
        l->oldest = b->newer;
    b->newer = b->older = NIL;
}

static void lru_push_newest(proxy_ratelimit *l, uint32_t i)
{
    rl_bucket *b = &l->b[i];
    b->newer = NIL;
    b->older = l->newest;
    if (l->newest != NIL)
        l->b[l->newest].newer = i;
    l->newest = i;
    if (l->oldest == NIL)
        l->oldest = i;
}

static void chain_link(proxy_ratelimit *l, uint32_t i)
{
    uint32_t *slot = &l->slots[l->b[i].hash & l->mask];
    l->b[i].chain = *slot;
    *slot = i;
}

static void chain_unlink(proxy_ratelimit *l, uint32_t i)
{
    uint32_t *p = &l->slots[l->b[i].hash & l->mask];
    while (*p != i)
        p = &l->b[*p].chain;
    *p = l->b[i].chain;
}

static uint32_t slots_for(uint32_t buckets)
{
    uint32_t s = 16;
    while (s < buckets)
        s <<= 1;
    return s;
}

/* Room for more buckets (up to max_keys); false if there is none to be had. */
static bool grow(proxy_ratelimit *l)
{
    if (l->size >= l->max_keys)
        return false;
    uint32_t size = l->size > l->max_keys / 2 ? l->max_keys : l->size * 2;
    uint32_t nslots = slots_for(size);
    rl_bucket *b = realloc(l->b, (size_t)size * sizeof(*b));
    if (b == NULL)
        return false;
    l->b = b;
    l->size = size;
    if (nslots - 1 != l->mask) {
        uint32_t *slots = malloc((size_t)nslots * sizeof(*slots));
        if (slots == NULL)
            return true; /* the old slots still index every bucket */
        free(l->slots);
        l->slots = slots;
        l->mask = nslots - 1;
        memset(slots, 0xff, (size_t)nslots * sizeof(*slots));
        for (uint32_t i = 0; i < l->n; i++)
            chain_link(l, i);
    }
    return true;
}

/* The bucket of hash h: found, or a new full one (the least recently used
 * bucket is reused when the table is full). */
static rl_bucket *bucket_get(proxy_ratelimit *l, uint64_t h, uint64_t now_ms)
{
    for (uint32_t i = l->slots[h & l->mask]; i != NIL; i = l->b[i].chain) {
        if (l->b[i].hash == h) {
            if (l->newest != i) {
                lru_unlink(l, i);
                lru_push_newest(l, i);
            }
            return &l->b[i];
        }
    }
    uint32_t i;
    if (l->n < l->size || grow(l)) {
        i = l->n++;
    } else {
        i = l->oldest; /* evicted: its key starts afresh when seen again */
        lru_unlink(l, i);
        chain_unlink(l, i);
    }
    rl_bucket *b = &l->b[i];
    b->hash = h;
    b->units = l->cap;
    b->last_ms = now_ms;
    chain_link(l, i);
    lru_push_newest(l, i);
    return b;
}

/* ---- the limiter ----------------------------------------------------------------------------- */

int proxy_ratelimit_new(const proxy_ratelimit_options *o, proxy_ratelimit **out, ward_err *err)
{
    uint64_t burst = o->burst ? o->burst : o->requests;
    uint64_t workers = o->workers ? o->workers : 1;
    size_t max_keys = o->max_keys ? o->max_keys : PROXY_RATELIMIT_KEYS_DEFAULT;
    if (o->requests < 1 || o->requests > PROXY_RATELIMIT_REQUESTS_MAX) {
        ward_err_set(err, "requests must be 1..%u", PROXY_RATELIMIT_REQUESTS_MAX);
        return WARD_EINVAL;
    }
    if (o->per_ms < 1 || o->per_ms > PROXY_RATELIMIT_PER_MAX_MS) {
        ward_err_set(err, "per must be 1ms..24h");
        return WARD_EINVAL;
    }
    if (burst > PROXY_RATELIMIT_REQUESTS_MAX) {
        ward_err_set(err, "burst must be 1..%u", PROXY_RATELIMIT_REQUESTS_MAX);
        return WARD_EINVAL;
    }
    if (workers > PROXY_RATELIMIT_WORKERS_MAX) {
        ward_err_set(err, "workers must be 1..%u", PROXY_RATELIMIT_WORKERS_MAX);
        return WARD_EINVAL;
    }
    if (o->keyed && max_keys > PROXY_RATELIMIT_KEYS_MAX) {
        ward_err_set(err, "max_keys must be 1..%u", PROXY_RATELIMIT_KEYS_MAX);
        return WARD_EINVAL;
    }
    proxy_ratelimit *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return WARD_ENOMEM;
    l->rate = o->requests;
    l->cost = o->per_ms * workers;
    l->cap = burst * o->per_ms; /* burst / workers tokens per worker ... */
    if (l->cap < l->cost)
        l->cap = l->cost; /* ... but at least one */
    l->one.units = l->cap;
    l->keyed = o->keyed;
    l->newest = l->oldest = NIL;
    if (l->keyed) {
        l->max_keys = (uint32_t)max_keys;
        uint32_t size = l->max_keys < FIRST_SIZE ? l->max_keys : FIRST_SIZE;
        uint32_t nslots = slots_for(size);
        unsigned char secret[16];
        l->b = malloc((size_t)size * sizeof(*l->b));
        l->slots = malloc((size_t)nslots * sizeof(*l->slots));
        if (l->b == NULL || l->slots == NULL) {
            proxy_ratelimit_free(l);
            return WARD_ENOMEM;
        }
        if (RAND_bytes(secret, sizeof(secret)) != 1) {
            ward_err_set(err, "no randomness for the key table");
            proxy_ratelimit_free(l);
            return WARD_EIO;
        }
        l->k0 = load64_le(secret);
        l->k1 = load64_le(secret + 8);
        OPENSSL_cleanse(secret, sizeof(secret));
        l->size = size;
        l->mask = nslots - 1;
        memset(l->slots, 0xff, (size_t)nslots * sizeof(*l->slots));
    }
    *out = l;
    return 0;
}

void proxy_ratelimit_free(proxy_ratelimit *l)
{
    if (l == NULL)
        return;
    free(l->b);
    free(l->slots);
    OPENSSL_cleanse(&l->k0, sizeof(l->k0));
    OPENSSL_cleanse(&l->k1, sizeof(l->k1));
    free(l);
}

bool proxy_ratelimit_take(proxy_ratelimit *l, proxy_slice key, uint64_t now_ms,
                          uint64_t *retry_after_s)
{
    if (!l->keyed)
        return take(l, &l->one, now_ms, retry_after_s);
    uint64_t h = siphash24(l->k0, l->k1, (const unsigned char *)(key.ptr ? key.ptr : ""),
                           key.ptr ? key.len : 0);
    return take(l, bucket_get(l, h, now_ms), now_ms, retry_after_s);
}

size_t proxy_ratelimit_keys(const proxy_ratelimit *l)
{
    return l->n;
}

size_t proxy_ratelimit_memory(const proxy_ratelimit *l)
{
    size_t slots = l->keyed ? (size_t)l->mask + 1 : 0;
    return sizeof(*l) + (size_t)l->size * sizeof(rl_bucket) + slots * sizeof(uint32_t);
}
