/* host_index.c - hashed indexes for host functions: CIDR sets, CIDR -> value and prefix -> value maps */
#include "lua/wlua_int.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Slots for n entries at a load factor of at most 1/2 (a power of two >= 2). */
static size_t slot_count(lua_State *L, size_t n)
{
    size_t s = 2;
    while (s < 2 * n) {
        if (s > SIZE_MAX / 4 || s >= UINT32_MAX / 2)
            luaL_error(L, "ward: index too large");
        s *= 2;
    }
    return s;
}

/* ---- CIDR blocks: one hash over (family, length, masked address); a lookup
 * probes once per distinct prefix length of the address's family ---------------- */

typedef struct cblock {
    uint8_t addr[16];
    uint8_t family, plen;
    uint32_t first, count; /* values first+1 .. first+count of the value table */
} cblock;

typedef struct cidx {
    uint32_t nblocks, mask;
    uint64_t seed;
    uint8_t n4, n6;
    uint8_t lens4[33], lens6[129]; /* distinct prefix lengths, ascending */
    uint32_t *slots;               /* block index + 1; 0 = empty */
    cblock *blocks;
} cidx;

/* A parsed key while building. */
typedef struct centry {
    ward_cidr c;
    const char *key;
    size_t klen;
} centry;

static void mask_addr(uint8_t out[16], const uint8_t *a, unsigned plen)
{
    unsigned full = plen / 8, rest = plen % 8;
    memcpy(out, a, full);
    memset(out + full, 0, 16 - full);
    if (rest != 0)
        out[full] = (uint8_t)(a[full] & (0xFFu << (8 - rest)));
}

static uint64_t cidr_hash(uint64_t seed, uint8_t family, uint8_t plen, const uint8_t m[16])
{
    uint64_t a, b;
    memcpy(&a, m, 8);
    memcpy(&b, m + 8, 8);
    return mix64(mix64(seed ^ a ^ ((uint64_t)family << 8 | plen)) ^ b);
}

static int centry_cmp(const void *pa, const void *pb)
{
    const centry *a = pa, *b = pb;
    if (a->c.ip.family != b->c.ip.family)
        return a->c.ip.family < b->c.ip.family ? -1 : 1;
    if (a->c.prefix_len != b->c.prefix_len)
        return a->c.prefix_len < b->c.prefix_len ? -1 : 1;
    int r = memcmp(a->c.ip.addr, b->c.ip.addr, 16);
    if (r != 0)
        return r;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    r = memcmp(a->key, b->key, n);
    if (r != 0)
        return r;
    return a->klen < b->klen ? -1 : a->klen > b->klen;
}

static bool same_block(const centry *a, const centry *b)
{
    return a->c.ip.family == b->c.ip.family && a->c.prefix_len == b->c.prefix_len &&
           memcmp(a->c.ip.addr, b->c.ip.addr, 16) == 0;
}

static bool cidx_find(const cidx *x, uint8_t family, uint8_t plen, const uint8_t m[16],
                      uint32_t *bi)
{
    uint64_t h = cidr_hash(x->seed, family, plen, m);
    for (uint32_t i = (uint32_t)h & x->mask;; i = (i + 1) & x->mask) {
        uint32_t s = x->slots[i];
        if (s == 0)
            return false;
        const cblock *b = &x->blocks[s - 1];
        if (b->family == family && b->plen == plen && memcmp(b->addr, m, 16) == 0) {
            *bi = s - 1;
            return true;
        }
    }
}

/* Builds the index userdata from n parsed entries (sorted here) and pushes it.
 * With `values`, each block's values are map[key] of its keys, in key order,
 * stored as the userdata's user value. */
static cidx *cidx_build(lua_State *L, centry *e, size_t n, int map)
{
    qsort(e, n, sizeof(*e), centry_cmp);
    size_t nb = 0;
    for (size_t i = 0; i < n; i++)
        nb += i == 0 || !same_block(&e[i - 1], &e[i]);
    size_t nslots = slot_count(L, nb);
    cidx *x = lua_newuserdatauv(L, sizeof(cidx) + nslots * sizeof(uint32_t) + nb * sizeof(cblock),
                                map != 0 ? 1 : 0);
    memset(x, 0, sizeof(*x));
    x->nblocks = (uint32_t)nb;
    x->mask = (uint32_t)(nslots - 1);
    x->seed = mix64((uint64_t)(uintptr_t)x);
    x->slots = (uint32_t *)(x + 1);
    x->blocks = (cblock *)(x->slots + nslots);
    memset(x->slots, 0, nslots * sizeof(uint32_t));

    bool seen4[33] = {false}, seen6[129] = {false};
    size_t b = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && same_block(&e[i - 1], &e[i])) {
            x->blocks[b - 1].count++;
            continue;
        }
        cblock *k = &x->blocks[b++];
        mask_addr(k->addr, e[i].c.ip.addr, e[i].c.prefix_len);
        k->family = e[i].c.ip.family;
        k->plen = e[i].c.prefix_len;
        k->first = (uint32_t)i;
        k->count = 1;
        if (k->family == 4)
            seen4[k->plen] = true;
        else
            seen6[k->plen] = true;
        uint64_t h = cidr_hash(x->seed, k->family, k->plen, k->addr);
        uint32_t s = (uint32_t)h & x->mask;
        while (x->slots[s] != 0)
            s = (s + 1) & x->mask;
        x->slots[s] = (uint32_t)b;
    }
    for (unsigned l = 0; l <= 32; l++)
        if (seen4[l])
            x->lens4[x->n4++] = (uint8_t)l;
    for (unsigned l = 0; l <= 128; l++)
        if (seen6[l])
            x->lens6[x->n6++] = (uint8_t)l;

    if (map != 0) {
        lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            lua_pushlstring(L, e[i].key, e[i].klen);
            lua_rawget(L, map);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setiuservalue(L, -2, 1);
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
    return x;
}

static void parse_block(lua_State *L, const char *fn, centry *e, int idx)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_error(L, "%s: CIDR blocks must be strings, got %s", fn, luaL_typename(L, idx));
    e->key = lua_tolstring(L, idx, &e->klen);
    ward_err err;
    if (ward_cidr_parse(e->key, e->klen, &e->c, &err) < 0)
        luaL_error(L, "%s: \"%s\": %s", fn, e->key, err.msg);
}

static centry *new_entries(lua_State *L, size_t n)
{
    if (n > UINT32_MAX / 2 || n > SIZE_MAX / sizeof(centry))
        luaL_error(L, "ward: too many entries");
    return lua_newuserdatauv(L, n * sizeof(centry), 0);
}

/* ward.cidr(list) -> set */
static int h_cidr(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    size_t n = (size_t)lua_rawlen(L, 1);
    centry *e = new_entries(L, n); /* 2: keeps the block list alive while building */
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1); /* the list holds the string */
        parse_block(L, "ward.cidr", &e[i], -1);
        lua_pop(L, 1);
    }
    cidx_build(L, e, n, 0);
    return 1;
}

static int h_cidr_match(lua_State *L)
{
    const cidx *x = wlua_check_host(L, 1, "ward.cidr");
    size_t len;
    const char *s = wlua_opt_subject(L, 2, &len);
    ward_ip ip;
    if (s == NULL || ward_ip_parse(s, len, &ip) < 0) {
        lua_pushboolean(L, 0);
        return 1;
    }
    const uint8_t *lens = ip.family == 4 ? x->lens4 : x->lens6;
    unsigned nl = ip.family == 4 ? x->n4 : x->n6;
    uint8_t m[16];
    uint32_t bi;
    for (unsigned i = 0; i < nl; i++) {
        mask_addr(m, ip.addr, lens[i]);
        if (cidx_find(x, ip.family, lens[i], m, &bi)) {
            lua_pushboolean(L, 1);
            return 1;
        }
    }
    lua_pushboolean(L, 0);
    return 1;
}

/* ward.cidr_index(map) -> index over {cidr = value} */
static int h_cidr_index(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        n++;
        lua_pop(L, 1);
    }
    centry *e = new_entries(L, n); /* 2 */
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        parse_block(L, "ward.cidr_index", &e[i++], -2); /* keys stay alive in the map */
        lua_pop(L, 1);
    }
    cidx_build(L, e, n, 1);
    return 1;
}

/* ward.cidr_lookup(idx, ip, out) -> out, with the values of every block
 * containing ip appended (shortest prefix first) */
static int h_cidr_lookup(lua_State *L)
{
    const cidx *x = wlua_check_host(L, 1, "ward.cidr_index");
    size_t len;
    const char *s = wlua_opt_subject(L, 2, &len);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    ward_ip ip;
    if (s == NULL || ward_ip_parse(s, len, &ip) < 0)
        return 1;
    lua_getiuservalue(L, 1, 1); /* 4: values */
    lua_Integer k = (lua_Integer)lua_rawlen(L, 3);
    const uint8_t *lens = ip.family == 4 ? x->lens4 : x->lens6;
    unsigned nl = ip.family == 4 ? x->n4 : x->n6;
    uint8_t m[16];
    uint32_t bi;
    for (unsigned i = 0; i < nl; i++) {
        mask_addr(m, ip.addr, lens[i]);
        if (!cidx_find(x, ip.family, lens[i], m, &bi))
            continue;
        const cblock *b = &x->blocks[bi];
        for (uint32_t j = 0; j < b->count; j++) {
            lua_rawgeti(L, 4, (lua_Integer)b->first + j + 1);
            lua_rawseti(L, 3, ++k);
        }
    }
    lua_settop(L, 3);
    return 1;
}

/* ---- prefixes: one hash over the keys; a lookup hashes the subject once,
 * incrementally, and probes at each distinct key length ------------------------- */

#define FNV_BASIS 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

typedef struct pentry {
    uint64_t hash; /* FNV-1a (seeded) of the key */
    size_t off, len;
} pentry;

typedef struct pidx {
    size_t n, mask, nlens;
    uint64_t seed;
    pentry *ents;   /* entry i has value i+1 of the value table */
    size_t *lens;   /* distinct key lengths, ascending */
    uint32_t *slots; /* entry index + 1; 0 = empty */
    char *pool;
} pidx;

static uint64_t fnv_step(uint64_t h, unsigned char c)
{
    return (h ^ c) * FNV_PRIME;
}

static int size_cmp(const void *pa, const void *pb)
{
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    return a < b ? -1 : a > b;
}

static bool pidx_find(const pidx *x, uint64_t h, const char *s, size_t len, size_t *ei)
{
    for (size_t i = (size_t)mix64(h) & x->mask;; i = (i + 1) & x->mask) {
        uint32_t slot = x->slots[i];
        if (slot == 0)
            return false;
        const pentry *e = &x->ents[slot - 1];
        if (e->hash == h && e->len == len && memcmp(x->pool + e->off, s, len) == 0) {
            *ei = slot - 1;
            return true;
        }
    }
}

/* ward.prefix_index(map) -> index over {prefix = value} */
static int h_prefix_index(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    size_t n = 0, bytes = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "ward.prefix_index: keys must be strings, got %s",
                              luaL_typename(L, -2));
        size_t kl = lua_rawlen(L, -2);
        if (kl > SIZE_MAX / 4 - bytes)
            return luaL_error(L, "ward.prefix_index: index too large");
        bytes += kl;
        n++;
        lua_pop(L, 1);
    }
    if (n > UINT32_MAX / 4)
        return luaL_error(L, "ward.prefix_index: too many prefixes");
    size_t nslots = slot_count(L, n);
    size_t ents_sz = n * sizeof(pentry), lens_sz = n * sizeof(size_t);
    size_t slots_sz = nslots * sizeof(uint32_t);
    pidx *x = lua_newuserdatauv(L, sizeof(pidx) + ents_sz + lens_sz + slots_sz + bytes + 1, 1);
    memset(x, 0, sizeof(*x));
    x->n = n;
    x->mask = nslots - 1;
    x->seed = mix64((uint64_t)(uintptr_t)x);
    x->ents = (pentry *)(x + 1);
    x->lens = (size_t *)((char *)x->ents + ents_sz);
    x->slots = (uint32_t *)((char *)x->lens + lens_sz);
    x->pool = (char *)x->slots + slots_sz;
    memset(x->slots, 0, slots_sz);

    lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0); /* 3: values */
    size_t i = 0, off = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        pentry *e = &x->ents[i];
        memcpy(x->pool + off, k, kl);
        e->off = off;
        e->len = kl;
        uint64_t h = FNV_BASIS ^ x->seed;
        for (size_t j = 0; j < kl; j++)
            h = fnv_step(h, (unsigned char)k[j]);
        e->hash = h;
        x->lens[i] = kl;
        off += kl;
        lua_rawseti(L, 3, (lua_Integer)++i); /* pops the value */
        size_t s = (size_t)mix64(h) & x->mask;
        while (x->slots[s] != 0)
            s = (s + 1) & x->mask;
        x->slots[s] = (uint32_t)i;
    }
    qsort(x->lens, n, sizeof(size_t), size_cmp);
    size_t nl = 0;
    for (size_t j = 0; j < n; j++)
        if (nl == 0 || x->lens[nl - 1] != x->lens[j])
            x->lens[nl++] = x->lens[j];
    x->nlens = nl;
    lua_setiuservalue(L, 2, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, 2);
    return 1;
}

/* ward.prefix_lookup(idx, s, out) -> out, with the value of every prefix of s
 * in the index appended, shortest first */
static int h_prefix_lookup(lua_State *L)
{
    const pidx *x = wlua_check_host(L, 1, "ward.prefix_index");
    size_t len;
    const char *s = wlua_opt_subject(L, 2, &len);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 3);
    if (s == NULL || x->n == 0)
        return 1;
    lua_getiuservalue(L, 1, 1); /* 4: values */
    lua_Integer k = (lua_Integer)lua_rawlen(L, 3);
    uint64_t h = FNV_BASIS ^ x->seed;
    size_t pos = 0, ei;
    for (size_t i = 0; i < x->nlens && x->lens[i] <= len; i++) {
        for (; pos < x->lens[i]; pos++)
            h = fnv_step(h, (unsigned char)s[pos]);
        if (pidx_find(x, h, s, pos, &ei)) {
            lua_rawgeti(L, 4, (lua_Integer)ei + 1);
            lua_rawseti(L, 3, ++k);
        }
    }
    lua_settop(L, 3);
    return 1;
}

static const luaL_Reg cidr_fns[] = {
    {"cidr", h_cidr},
    {"cidr_match", h_cidr_match},
    {NULL, NULL},
};

static const luaL_Reg cidr_index_fns[] = {
    {"cidr_index", h_cidr_index},
    {"cidr_lookup", h_cidr_lookup},
    {NULL, NULL},
};

static const luaL_Reg prefix_index_fns[] = {
    {"prefix_index", h_prefix_index},
    {"prefix_lookup", h_prefix_lookup},
    {NULL, NULL},
};

void wlua_host_index(lua_State *L)
{
    wlua_new_host_mt(L, "ward.cidr", NULL);
    luaL_setfuncs(L, cidr_fns, 1);
    wlua_new_host_mt(L, "ward.cidr_index", NULL);
    luaL_setfuncs(L, cidr_index_fns, 1);
    wlua_new_host_mt(L, "ward.prefix_index", NULL);
    luaL_setfuncs(L, prefix_index_fns, 1);
}
