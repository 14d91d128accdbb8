/* strmap.c - the rule index: an open-addressing table from key hashes to lists of ids, built once */
#include <stdlib.h>
#include <string.h>

#include "authz/authz_int.h"

uint64_t strmap_hash(uint64_t seed, const char *s, size_t len)
{
    strmap_hasher h;
    strmap_hasher_init(&h, seed, s);
    return strmap_hasher_at(&h, len);
}

void strmap_builder_init(strmap_builder *b)
{
    memset(b, 0, sizeof(*b));
}

void strmap_builder_dispose(strmap_builder *b)
{
    free(b->e);
    memset(b, 0, sizeof(*b));
}

int strmap_builder_add(strmap_builder *b, uint64_t key, uint32_t id, bool filtered)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        strmap_entry *e = realloc(b->e, cap * sizeof(*e));
        if (e == NULL)
            return WARD_ENOMEM;
        b->e = e;
        b->cap = cap;
    }
    b->e[b->n++] = (strmap_entry){key, id, filtered};
    b->n_filtered += filtered;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    const strmap_entry *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

void strmap_dispose(strmap *m)
{
    if (!m->borrowed) {
        free(m->slots);
        free(m->lists);
        free(m->filter);
    }
    memset(m, 0, sizeof(*m));
}

/* Sorted by key then id, the entries of one key are a run: each run becomes
 * one slot, its ids (without repeats) one list unless there is only one. */
int strmap_build(strmap *m, strmap_builder *b)
{
    int rc = 0;
    memset(m, 0, sizeof(*m));
    /* the filter: 16 bits per filtered key, at least one 512-bit cache line */
    uint32_t bits = 512;
    while (bits < 16 * b->n_filtered && bits < (1u << 30))
        bits *= 2;
    m->filter_mask = bits - 1;
    m->filter = calloc(bits / 64, sizeof(uint64_t));
    if (m->filter == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    if (b->n == 0)
        goto done;
    qsort(b->e, b->n, sizeof(*b->e), entry_cmp);
    size_t keys = 0, list_words = 0;
    for (size_t i = 0, run = 0; i < b->n; i++) {
        if (i == 0 || b->e[i].key != b->e[i - 1].key) {
            keys++;
            run = 0;
        }
        if (i > 0 && b->e[i].key == b->e[i - 1].key && b->e[i].id == b->e[i - 1].id)
            continue;
        if (++run == 2)
            list_words += 3; /* n and the first two ids */
        else if (run > 2)
            list_words++;
    }
    if (keys > (1u << 29) || list_words > UINT32_MAX / 2) {
        rc = WARD_ELIMIT;
        goto fail;
    }
    uint32_t cap = 8;
    while (cap < 2 * keys)
        cap *= 2;
    m->slots = calloc(cap, sizeof(*m->slots));
    m->lists = malloc((list_words ? list_words : 1) * sizeof(uint32_t));
    if (m->slots == NULL || m->lists == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    m->mask = cap - 1;
    m->list_words = (uint32_t)list_words;
    uint32_t used = 0;
    for (size_t i = 0; i < b->n;) {
        size_t j = i + 1;
        bool filtered = b->e[i].filtered;
        while (j < b->n && b->e[j].key == b->e[i].key)
            filtered |= b->e[j++].filtered;
        uint64_t key = b->e[i].key;
        strmap_slot *s;
        for (uint32_t k = (uint32_t)key & m->mask;; k = (k + 1) & m->mask) {
            s = &m->slots[k];
            if (s->tag == 0)
                break;
        }
        s->tag = strmap_tag(key);
        if (j - i == 1 || b->e[j - 1].id == b->e[i].id) { /* one id, maybe repeated */
            s->tag |= 2;
            s->val = b->e[i].id;
        } else {
            s->val = used;
            uint32_t n = 0;
            for (size_t k = i; k < j; k++)
                if (k == i || b->e[k].id != b->e[k - 1].id)
                    m->lists[used + 1 + n++] = b->e[k].id;
            m->lists[used] = n;
            used += 1 + n;
        }
        if (filtered) {
            uint32_t bit = strmap_filter_bit(key, m->filter_mask);
            m->filter[bit / 64] |= 1ULL << (bit % 64);
        }
        i = j;
    }
done:
    strmap_builder_dispose(b);
    return 0;
fail:
    strmap_builder_dispose(b);
    strmap_dispose(m);
    return rc;
}
