/* limits.c - one worker's Route rate limits: a token bucket (or one per key) per Route entry */
#include "cmd/ward-proxy/wp.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limiters are found by what defines them (the Route, the entry's index and
 * its rate), not by pointers into the engine: a policy reload that leaves an
 * entry's limit alone keeps its buckets, so a reload never hands out a fresh
 * burst. Changed or removed entries leave their limiter behind; when the
 * table is full it starts over (every bucket full again), which bounds the
 * memory whatever reloads do. */
#define LIMITS_MAX 4096

typedef struct limit_slot {
    char *key; /* NULL: empty */
    uint64_t hash;
    proxy_ratelimit *limiter;
} limit_slot;

struct wp_limits {
    limit_slot slots[2 * LIMITS_MAX];
    size_t n;
    unsigned workers;
};

int wp_limits_new(unsigned workers, wp_limits **out)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return WARD_ENOMEM;
    (*out)->workers = workers ? workers : 1;
    return 0;
}

static void limits_clear(wp_limits *l)
{
    for (size_t i = 0; i < 2 * LIMITS_MAX; i++) {
        free(l->slots[i].key);
        proxy_ratelimit_free(l->slots[i].limiter);
    }
    memset(l->slots, 0, sizeof(l->slots));
    l->n = 0;
}

void wp_limits_free(wp_limits *l)
{
    if (l == NULL)
        return;
    limits_clear(l);
    free(l);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* The slot of the entry's limiter, made on first use; NULL: out of memory. */
static limit_slot *limiter_of(wp_limits *l, const authz_route *rt)
{
    const authz_rate_limit *rl = &rt->rate_limit;
    char key[1024];
    snprintf(key, sizeof(key), "%s\n%d\n%" PRIu32 "\n%" PRIu32 "\n%d\n%s", rt->policy, rt->index,
             rl->requests, rl->per_ms, (int)rl->key, rl->header ? rl->header : "");
    uint64_t h = fnv1a(key);
    size_t mask = 2 * LIMITS_MAX - 1, i = (size_t)h & mask;
    for (; l->slots[i].key != NULL; i = (i + 1) & mask)
        if (l->slots[i].hash == h && strcmp(l->slots[i].key, key) == 0)
            return &l->slots[i];
    if (l->n == LIMITS_MAX) {
        limits_clear(l);
        i = (size_t)h & mask;
    }
    proxy_ratelimit_options o = {
        .requests = rl->requests,
        .per_ms = rl->per_ms,
        .workers = l->workers,
        .keyed = rl->key != AUTHZ_RATE_KEY_NONE,
    };
    ward_err err;
    ward_err_clear(&err);
    proxy_ratelimit *lim = NULL;
    char *copy = strdup(key);
    if (copy == NULL || proxy_ratelimit_new(&o, &lim, &err) < 0) {
        free(copy);
        return NULL;
    }
    l->slots[i] = (limit_slot){copy, h, lim};
    l->n++;
    return &l->slots[i];
}

int wp_limits_take(wp_limits *l, const authz_route *rt, proxy_slice key, uint64_t now_ms,
                   uint64_t *retry_after_s)
{
    limit_slot *s = limiter_of(l, rt);
    if (s == NULL)
        return WARD_ENOMEM;
    return proxy_ratelimit_take(s->limiter, key, now_ms, retry_after_s) ? 1 : 0;
}
