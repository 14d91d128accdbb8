/* tokens.c - one-time join tokens: random, stored as SHA-256 hashes, rate-limited redeem */
#include "identity/identity_int.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/*
 * Threading: an ident_tokens belongs to one thread (wardd's libuv loop).
 *
 * data_dir/tokens.json (mode 0600) holds, per token, the SHA-256 of the token
 * string (hex), its SPIFFE ID, creation and expiry times and whether (and
 * when) it was used - never the token itself. Every change is written
 * atomically before the call that made it returns success.
 *
 * Redeem failures return distinct codes (and messages) for the API layer:
 * WARD_ENOENT unknown token, WARD_ERANGE expired, WARD_EINVAL already used,
 * WARD_ELIMIT rate limited, WARD_EIO the state could not be saved.
 */

#define TOKEN_RAW_BYTES   32
#define TOKEN_TTL_DEFAULT 600                    /* 10 minutes */
#define TOKEN_TTL_MAX     ((uint64_t)30 * 86400) /* 30 days */
#define TOKENS_MAX        10000                  /* live entries */
#define TOKENS_FILE_MAX   ((size_t)32 << 20)
#define TOKEN_KEEP_S      86400 /* spent/expired entries are remembered a day (distinct errors) */
#define FAIL_WINDOW_S     60    /* this many failures within the window ... */
#define FAIL_LIMIT        10
#define BLOCK_S           30 /* ... refuse every redeem for this long */

typedef struct token_entry {
    unsigned char hash[32];
    char *spiffe_id;
    time_t created_at, expires_at, used_at;
    bool used;
} token_entry;

struct ident_tokens {
    char *dir;
    token_entry *v;
    size_t n, cap;
    time_t fails[FAIL_LIMIT]; /* recent failure times, oldest first */
    size_t n_fails;
    time_t blocked_until;
};

static void entry_dispose(token_entry *e)
{
    free(e->spiffe_id);
    OPENSSL_cleanse(e->hash, sizeof(e->hash));
}

void ident_tokens_free(ident_tokens *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        entry_dispose(&t->v[i]);
    free(t->v);
    free(t->dir);
    free(t);
}

static int token_hash(const char *token, size_t len, unsigned char out[32])
{
    unsigned int n = 0;
    return EVP_Digest(token, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32 ? 0 : WARD_ENOMEM;
}

/* Writes tokens.json with every entry but `skip` (SIZE_MAX = none). */
static int tokens_save(ident_tokens *t, size_t skip, ward_err *err)
{
    int rc = 0;
    ward_buf b;
    ward_buf_init(&b);
    WARD_TRY(ward_buf_puts(&b, "{\"version\":1,\"tokens\":["));
    bool first = true;
    for (size_t i = 0; i < t->n; i++) {
        if (i == skip)
            continue;
        const token_entry *e = &t->v[i];
        WARD_TRY(ward_buf_puts(&b, first ? "\n{\"sha256\":\"" : ",\n{\"sha256\":\""));
        first = false;
        for (size_t k = 0; k < sizeof(e->hash); k++)
            WARD_TRY(ward_buf_printf(&b, "%02x", e->hash[k]));
        WARD_TRY(ward_buf_puts(&b, "\",\"spiffe_id\":"));
        WARD_TRY(ident_json_quote(&b, e->spiffe_id));
        WARD_TRY(ward_buf_printf(&b, ",\"created_at\":%lld,\"expires_at\":%lld,\"used\":%s",
                                 (long long)e->created_at, (long long)e->expires_at,
                                 e->used ? "true" : "false"));
        if (e->used)
            WARD_TRY(ward_buf_printf(&b, ",\"used_at\":%lld", (long long)e->used_at));
        WARD_TRY(ward_buf_putc(&b, '}'));
    }
    WARD_TRY(ward_buf_puts(&b, "\n]}\n"));
    rc = ward_file_write_atomic(t->dir, "tokens.json", b.ptr, b.len, 0600, err);
fail:
    ward_buf_dispose(&b);
    return rc;
}

static bool json_time(const cJSON *o, const char *name, time_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble <= 9007199254740992.0) ||
        v->valuedouble != (double)(long long)v->valuedouble)
        return false;
    *out = (time_t)v->valuedouble;
    return true;
}

static int hex_decode(const char *s, unsigned char *out, size_t n)
{
    if (strlen(s) != 2 * n)
        return WARD_EINVAL;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = s[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return WARD_EINVAL;
        if (i % 2 == 0)
            out[i / 2] = (unsigned char)(v << 4);
        else
            out[i / 2] |= (unsigned char)v;
    }
    return 0;
}

static int tokens_grow(ident_tokens *t)
{
    if (t->n < t->cap)
        return 0;
    size_t cap = t->cap ? t->cap * 2 : 16;
    token_entry *v = realloc(t->v, cap * sizeof(*v));
    if (v == NULL)
        return WARD_ENOMEM;
    t->v = v;
    t->cap = cap;
    return 0;
}

static int tokens_load(ident_tokens *t, const char *path, ward_err *err)
{
    int rc = 0;
    char *data = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    WARD_TRY(ward_file_read(path, TOKENS_FILE_MAX, &data, &len, err));
    root = ident_json_parse(data, len);
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "tokens");
    if (!cJSON_IsObject(root) || !cJSON_IsNumber(version) || version->valuedouble != 1 ||
        !cJSON_IsArray(list) || cJSON_GetArraySize(list) > TOKENS_MAX) {
        ward_err_set(err, "%s: corrupted (not a join token file)", path);
        rc = WARD_ESYNTAX;
        goto fail;
    }
    int i = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, list)
    {
        const cJSON *hash = cJSON_GetObjectItemCaseSensitive(o, "sha256");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "spiffe_id");
        const cJSON *used = cJSON_GetObjectItemCaseSensitive(o, "used");
        token_entry e = {0};
        if (!cJSON_IsString(hash) || hex_decode(hash->valuestring, e.hash, 32) < 0 ||
            !cJSON_IsString(id) ||
            ward_spiffe_id_parse(id->valuestring, strlen(id->valuestring), NULL, NULL) < 0 ||
            !json_time(o, "created_at", &e.created_at) ||
            !json_time(o, "expires_at", &e.expires_at) || !cJSON_IsBool(used) ||
            (cJSON_IsTrue(used) && !json_time(o, "used_at", &e.used_at))) {
            ward_err_set(err, "%s: tokens[%d] is malformed", path, i);
            rc = WARD_ESYNTAX;
            goto fail;
        }
        e.used = cJSON_IsTrue(used);
        WARD_TRY(tokens_grow(t));
        if ((e.spiffe_id = strdup(id->valuestring)) == NULL) {
            rc = WARD_ENOMEM;
            goto fail;
        }
        t->v[t->n++] = e;
        i++;
    }
fail:
    cJSON_Delete(root);
    free(data);
    return rc;
}

int ident_tokens_open(const char *data_dir, ident_tokens **out, ward_err *err)
{
    int rc = 0;
    char path[PATH_MAX];
    *out = NULL;
    if (data_dir == NULL) {
        ward_err_set(err, "no data directory");
        return WARD_EINVAL;
    }
    ident_tokens *t = calloc(1, sizeof(*t));
    if (t == NULL || (t->dir = strdup(data_dir)) == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    WARD_TRY(ident_dir_make(data_dir, 0700, err));
    int n = snprintf(path, sizeof(path), "%s/tokens.json", data_dir);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        ward_err_set(err, "%s: path too long", data_dir);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (access(path, F_OK) == 0)
        WARD_TRY(tokens_load(t, path, err));
    else if (errno != ENOENT) {
        ward_err_set(err, "%s: %s", path, strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    *out = t;
    t = NULL;
fail:
    ident_tokens_free(t);
    return rc;
}

/* Forgets entries that expired more than TOKEN_KEEP_S ago. */
static void tokens_gc(ident_tokens *t, time_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (now - t->v[i].expires_at > TOKEN_KEEP_S)
            entry_dispose(&t->v[i]);
        else
            t->v[k++] = t->v[i];
    }
    t->n = k;
}

int ident_tokens_create(ident_tokens *t, const char *spiffe_id, uint64_t ttl_s, time_t now,
                        char *token, ward_err *err)
{
    int rc = 0;
    unsigned char raw[TOKEN_RAW_BYTES];
    ward_buf s;
    ward_buf_init(&s);
    ward_spiffe_id sid;
    ward_err e;
    token[0] = '\0';
    if (spiffe_id == NULL || ward_spiffe_id_parse(spiffe_id, strlen(spiffe_id), &sid, &e) < 0) {
        ward_err_set(err, "invalid SPIFFE ID: %s", spiffe_id ? e.msg : "none");
        return WARD_EINVAL;
    }
    if (sid.path_len == 0) {
        ward_err_set(err, "SPIFFE ID %s has no path (a workload ID needs one)", spiffe_id);
        return WARD_EINVAL;
    }
    if (ttl_s == 0)
        ttl_s = TOKEN_TTL_DEFAULT;
    if (ttl_s > TOKEN_TTL_MAX) {
        ward_err_set(err, "join token TTL longer than %llu s", (unsigned long long)TOKEN_TTL_MAX);
        return WARD_ERANGE;
    }
    tokens_gc(t, now);
    if (t->n >= TOKENS_MAX) {
        ward_err_set(err, "too many join tokens (%d)", TOKENS_MAX);
        return WARD_ELIMIT;
    }
    WARD_TRY(tokens_grow(t));
    token_entry *en = &t->v[t->n];
    memset(en, 0, sizeof(*en));
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        ward_err_set(err, "no randomness for a join token");
        rc = WARD_EIO;
        goto fail;
    }
    WARD_TRY(ident_b64_encode(raw, sizeof(raw), true, &s));
    if (s.len >= IDENT_TOKEN_MAX) {
        rc = WARD_ELIMIT;
        goto fail;
    }
    WARD_TRY(token_hash(s.ptr, s.len, en->hash));
    if ((en->spiffe_id = strdup(spiffe_id)) == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    en->created_at = now;
    en->expires_at = now + (time_t)ttl_s;
    t->n++;
    rc = tokens_save(t, SIZE_MAX, err);
    if (rc < 0) {
        t->n--;
        entry_dispose(en);
        goto fail;
    }
    memcpy(token, s.ptr, s.len + 1);
fail:
    OPENSSL_cleanse(raw, sizeof(raw));
    if (s.ptr != NULL)
        OPENSSL_cleanse(s.ptr, s.cap);
    ward_buf_dispose(&s);
    return rc;
}

/* Index of the entry with this token's hash, or SIZE_MAX. Every entry is
 * compared, in constant time each. */
static size_t tokens_find(const ident_tokens *t, const char *token)
{
    unsigned char h[32];
    size_t len = strnlen(token, IDENT_TOKEN_MAX);
    size_t found = SIZE_MAX;
    if (len == 0 || len >= IDENT_TOKEN_MAX || token_hash(token, len, h) < 0)
        return SIZE_MAX;
    for (size_t i = 0; i < t->n; i++)
        if (CRYPTO_memcmp(h, t->v[i].hash, sizeof(h)) == 0)
            found = i;
    OPENSSL_cleanse(h, sizeof(h));
    return found;
}

static void record_failure(ident_tokens *t, time_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n_fails; i++)
        if (now - t->fails[i] < FAIL_WINDOW_S)
            t->fails[k++] = t->fails[i];
    t->n_fails = k;
    t->fails[t->n_fails++] = now;
    if (t->n_fails >= FAIL_LIMIT) {
        t->blocked_until = now + BLOCK_S;
        t->n_fails = 0;
    }
}

int ident_tokens_redeem(ident_tokens *t, const char *token, time_t now, char *id, ward_err *why)
{
    char when[40];
    if (now < t->blocked_until) {
        ward_err_set(why, "rate limited: too many failed join token attempts; retry in %lld s",
                     (long long)(t->blocked_until - now));
        return WARD_ELIMIT;
    }
    size_t i = token ? tokens_find(t, token) : SIZE_MAX;
    if (i == SIZE_MAX) {
        record_failure(t, now);
        ward_err_set(why, "unknown join token");
        return WARD_ENOENT;
    }
    token_entry *e = &t->v[i];
    if (e->used) {
        record_failure(t, now);
        ident_time_format(e->used_at, when, sizeof(when));
        ward_err_set(why, "join token already used (at %s)", when);
        return WARD_EINVAL;
    }
    if (now >= e->expires_at) {
        record_failure(t, now);
        ident_time_format(e->expires_at, when, sizeof(when));
        ward_err_set(why, "join token expired at %s", when);
        return WARD_ERANGE;
    }
    /* Spent on disk before anyone learns it worked. */
    e->used = true;
    e->used_at = now;
    int rc = tokens_save(t, SIZE_MAX, why);
    if (rc < 0) {
        e->used = false;
        e->used_at = 0;
        return rc;
    }
    memcpy(id, e->spiffe_id, strlen(e->spiffe_id) + 1);
    return 0;
}

int ident_tokens_revoke(ident_tokens *t, const char *token, ward_err *err)
{
    size_t i = token ? tokens_find(t, token) : SIZE_MAX;
    if (i == SIZE_MAX) {
        ward_err_set(err, "unknown join token");
        return WARD_ENOENT;
    }
    int rc = tokens_save(t, i, err);
    if (rc < 0)
        return rc;
    entry_dispose(&t->v[i]);
    memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(t->v[0]));
    t->n--;
    return 0;
}
