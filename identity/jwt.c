/* jwt.c - JWT-SVIDs (ES256 compact JWS) and the JOSE encodings they need: base64url, JSON */
#include "identity/identity_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>

#define JWT_MAX          8192 /* bytes of a serialized token */
#define JWT_TTL_DEFAULT  300  /* 5 minutes */
#define JWT_AUD_MAX      16   /* audience values per token */
#define JWT_AUD_LEN_MAX  2048 /* bytes per audience value */
#define JWT_KID_MAX      256
#define JSON_DEPTH_MAX   32
#define JSON_MEMBERS_MAX 1024 /* per object (keeps the duplicate check bounded) */

/* ---- base64 ------------------------------------------------------------------- */

static const char B64_STD[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char B64_URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int ident_b64_encode(const void *in, size_t len, bool url, ward_buf *out)
{
    const unsigned char *p = in;
    const char *abc = url ? B64_URL : B64_STD;
    if (len > (SIZE_MAX / 4) * 3 - 3)
        return WARD_ENOMEM;
    size_t cap = (len + 2) / 3 * 4;
    char *s = malloc(cap + 1);
    if (s == NULL)
        return WARD_ENOMEM;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        s[o++] = abc[v >> 18];
        s[o++] = abc[(v >> 12) & 63];
        s[o++] = abc[(v >> 6) & 63];
        s[o++] = abc[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        s[o++] = abc[v >> 18];
        s[o++] = abc[(v >> 12) & 63];
        if (!url) {
            s[o++] = '=';
            s[o++] = '=';
        }
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        s[o++] = abc[v >> 18];
        s[o++] = abc[(v >> 12) & 63];
        s[o++] = abc[(v >> 6) & 63];
        if (!url)
            s[o++] = '=';
    }
    int rc = ward_buf_append(out, s, o);
    free(s);
    return rc;
}

static int b64_value(char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

int ident_b64_decode(const char *in, size_t len, bool url, unsigned char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    size_t n = len;
    if (!url) {
        if (len % 4 != 0)
            return WARD_EINVAL;
        while (n > 0 && len - n < 2 && in[n - 1] == '=')
            n--;
    }
    if (n % 4 == 1)
        return WARD_EINVAL;
    size_t olen = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
    unsigned char *o = malloc(olen + 1);
    if (o == NULL)
        return WARD_ENOMEM;
    size_t w = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64_value(in[i], url);
        if (v < 0) {
            free(o);
            return WARD_EINVAL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[w++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) { /* non-canonical: leftover bits must be zero */
        free(o);
        return WARD_EINVAL;
    }
    o[w] = 0;
    *out = o;
    *out_len = w;
    return 0;
}

/* ---- JSON ----------------------------------------------------------------------- */

int ident_json_quote(ward_buf *b, const char *s)
{
    int rc = 0;
    WARD_TRY(ward_buf_putc(b, '"'));
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            WARD_TRY(ward_buf_putc(b, '\\'));
            WARD_TRY(ward_buf_putc(b, (char)*p));
        } else if (*p < 0x20) {
            WARD_TRY(ward_buf_printf(b, "\\u%04x", *p));
        } else {
            WARD_TRY(ward_buf_putc(b, (char)*p));
        }
    }
    WARD_TRY(ward_buf_putc(b, '"'));
fail:
    return rc;
}

/* Members of every object are unique; depth and width are bounded. */
static bool json_well_formed(const cJSON *j, int depth)
{
    if (depth > JSON_DEPTH_MAX)
        return false;
    int n = 0;
    for (const cJSON *c = j->child; c != NULL; c = c->next, n++) {
        if (n >= JSON_MEMBERS_MAX && cJSON_IsObject(j))
            return false;
        if (cJSON_IsObject(j))
            for (const cJSON *d = j->child; d != c; d = d->next)
                if (strcmp(d->string, c->string) == 0)
                    return false;
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && !json_well_formed(c, depth + 1))
            return false;
    }
    return true;
}

cJSON *ident_json_parse(const char *s, size_t len)
{
    /* Raw control bytes are never valid JSON, and an escaped NUL would cut
     * a string short in cJSON: refuse both before parsing. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return NULL;
        if (c == '\\' && i + 5 < len && memcmp(s + i + 1, "u0000", 5) == 0)
            return NULL;
        if (c == '\\')
            i++; /* skip the escaped character */
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, false);
    if (j == NULL)
        return NULL;
    size_t off = end != NULL ? (size_t)(end - s) : len;
    while (off < len && (s[off] == ' ' || s[off] == '\t' || s[off] == '\n' || s[off] == '\r'))
        off++;
    if (off != len || !json_well_formed(j, 0)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* ---- JWT-SVIDs ------------------------------------------------------------------- */

static bool kid_ok(const char *kid)
{
    size_t n = strlen(kid);
    if (n == 0 || n > JWT_KID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)kid[i] < 0x21 || (unsigned char)kid[i] > 0x7e)
            return false;
    return true;
}

/* A workload SPIFFE ID: valid, with a path. */
static int check_workload_id(const char *id, size_t len, ward_spiffe_id *sid, const char *what,
                             ward_err *err)
{
    ward_err e;
    char shown[128];
    if (ward_spiffe_id_parse(id, len, sid, &e) < 0) {
        ident_sanitize((const unsigned char *)id, len, shown, sizeof(shown));
        ward_err_set(err, "%s \"%s\" is not a SPIFFE ID: %s", what, shown, e.msg);
        return WARD_EINVAL;
    }
    if (sid->path_len == 0) {
        ward_err_set(err, "%s %.*s has no path (a workload ID needs one)", what, (int)len, id);
        return WARD_EINVAL;
    }
    return 0;
}

/* ECDSA signatures: DER (OpenSSL) <-> r||s of 2 * 32 bytes (JOSE, RFC 7518 3.4). */
static int sig_der_to_raw(const unsigned char *der, size_t len, unsigned char raw[64])
{
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
    if (sig == NULL)
        return WARD_EINVAL;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    int ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok ? 0 : WARD_EINVAL;
}

static int sig_raw_to_der(const unsigned char raw[64], unsigned char **der, size_t *len)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
    if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
        ECDSA_SIG_free(sig);
        BN_free(r);
        BN_free(s);
        return WARD_ENOMEM;
    }
    *der = NULL;
    int n = i2d_ECDSA_SIG(sig, der);
    ECDSA_SIG_free(sig);
    if (n <= 0)
        return WARD_ENOMEM;
    *len = (size_t)n;
    return 0;
}

int ident_jwt_sign(EVP_PKEY *key, const char *kid, const char *spiffe_id,
                   const char *const *audience, size_t n_audience, time_t now, uint64_t ttl_s,
                   ward_buf *out, ward_err *err)
{
    int rc = 0;
    ward_buf json, tok;
    EVP_MD_CTX *md = NULL;
    unsigned char *der = NULL;
    ward_buf_init(&json);
    ward_buf_init(&tok);
    ward_spiffe_id sid;
    if (ident_ec_curve(key, NULL) == NULL || strcmp(ident_ec_curve(key, NULL), "P-256") != 0) {
        ward_err_set(err, "JWT-SVID signing key must be EC P-256 (ES256)");
        return WARD_EINVAL;
    }
    if (kid == NULL || !kid_ok(kid)) {
        ward_err_set(err, "invalid kid");
        return WARD_EINVAL;
    }
    if (spiffe_id == NULL)
        return WARD_EINVAL;
    WARD_TRY(check_workload_id(spiffe_id, strlen(spiffe_id), &sid, "subject", err));
    if (n_audience == 0 || n_audience > JWT_AUD_MAX) {
        ward_err_set(err, "a JWT-SVID needs 1 to %d audience values", JWT_AUD_MAX);
        return WARD_EINVAL;
    }
    for (size_t i = 0; i < n_audience; i++) {
        size_t n = audience[i] ? strlen(audience[i]) : 0;
        if (n == 0 || n > JWT_AUD_LEN_MAX) {
            ward_err_set(err, "audience %zu is empty or longer than %d bytes", i, JWT_AUD_LEN_MAX);
            return WARD_EINVAL;
        }
    }
    if (ttl_s == 0)
        ttl_s = JWT_TTL_DEFAULT;
    if (now < 0 || ttl_s > (uint64_t)INT32_MAX || (int64_t)now > INT64_MAX - (int64_t)ttl_s) {
        ward_err_set(err, "JWT-SVID lifetime out of range");
        return WARD_ERANGE;
    }
    long long exp = (long long)now + (long long)ttl_s;

    /* header, exactly {alg, kid, typ} */
    WARD_TRY(ward_buf_puts(&json, "{\"alg\":\"ES256\",\"kid\":"));
    WARD_TRY(ident_json_quote(&json, kid));
    WARD_TRY(ward_buf_puts(&json, ",\"typ\":\"JWT\"}"));
    WARD_TRY(ident_b64_encode(json.ptr, json.len, true, &tok));
    WARD_TRY(ward_buf_putc(&tok, '.'));
    /* claims: sub, aud (always an array), exp, iat */
    ward_buf_reset(&json);
    WARD_TRY(ward_buf_puts(&json, "{\"sub\":"));
    WARD_TRY(ident_json_quote(&json, spiffe_id));
    WARD_TRY(ward_buf_puts(&json, ",\"aud\":["));
    for (size_t i = 0; i < n_audience; i++) {
        if (i)
            WARD_TRY(ward_buf_putc(&json, ','));
        WARD_TRY(ident_json_quote(&json, audience[i]));
    }
    WARD_TRY(ward_buf_printf(&json, "],\"exp\":%lld,\"iat\":%lld}", exp, (long long)now));
    WARD_TRY(ident_b64_encode(json.ptr, json.len, true, &tok));

    md = EVP_MD_CTX_new();
    size_t der_len = 0;
    if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &der_len, (const unsigned char *)tok.ptr, tok.len) != 1 ||
        (der = OPENSSL_malloc(der_len)) == NULL ||
        EVP_DigestSign(md, der, &der_len, (const unsigned char *)tok.ptr, tok.len) != 1) {
        ward_err_set(err, "ES256 signing failed");
        rc = WARD_EINVAL;
        goto fail;
    }
    unsigned char raw[64];
    if (sig_der_to_raw(der, der_len, raw) < 0) {
        ward_err_set(err, "ES256 signing failed");
        rc = WARD_EINVAL;
        goto fail;
    }
    WARD_TRY(ward_buf_putc(&tok, '.'));
    WARD_TRY(ident_b64_encode(raw, sizeof(raw), true, &tok));
    WARD_TRY(ward_buf_append(out, tok.ptr, tok.len));
fail:
    ERR_clear_error();
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    ward_buf_dispose(&json);
    if (tok.ptr != NULL)
        OPENSSL_cleanse(tok.ptr, tok.len); /* a bearer token */
    ward_buf_dispose(&tok);
    return rc;
}

/* Decodes one base64url part of a token into a JSON object. */
static cJSON *part_json(const char *s, size_t len)
{
    unsigned char *raw = NULL;
    size_t raw_len;
    if (len == 0 || ident_b64_decode(s, len, true, &raw, &raw_len) < 0)
        return NULL;
    cJSON *j = ident_json_parse((const char *)raw, raw_len);
    free(raw);
    if (j != NULL && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static int check_header(const cJSON *h, const char **kid, ward_err *why)
{
    char shown[64];
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    if (!cJSON_IsString(alg)) {
        ward_err_set(why, "JWT header has no alg");
        return WARD_EINVAL;
    }
    const char *a = alg->valuestring;
    ident_sanitize((const unsigned char *)a, strlen(a), shown, sizeof(shown));
    if (strcmp(a, "none") == 0 || a[0] == '\0') {
        ward_err_set(why, "JWT alg \"none\" refused (unsigned token)");
        return WARD_EINVAL;
    }
    if (strncmp(a, "HS", 2) == 0) {
        ward_err_set(why, "JWT alg \"%s\" refused (HMAC is never accepted)", shown);
        return WARD_EINVAL;
    }
    if (strcmp(a, "ES256") != 0) {
        ward_err_set(why, "JWT alg \"%s\" refused (ES256 only)", shown);
        return WARD_EINVAL;
    }
    const cJSON *typ = cJSON_GetObjectItemCaseSensitive(h, "typ");
    if (typ != NULL && (!cJSON_IsString(typ) || (strcmp(typ->valuestring, "JWT") != 0 &&
                                                 strcmp(typ->valuestring, "JOSE") != 0))) {
        ward_err_set(why, "JWT typ must be \"JWT\" or \"JOSE\"");
        return WARD_EINVAL;
    }
    if (cJSON_GetObjectItemCaseSensitive(h, "crit") != NULL) {
        ward_err_set(why, "JWT header has \"crit\" (no extensions are supported)");
        return WARD_EINVAL;
    }
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(h, "kid");
    if (!cJSON_IsString(k) || k->valuestring[0] == '\0') {
        ward_err_set(why, "JWT header has no kid");
        return WARD_EINVAL;
    }
    *kid = k->valuestring;
    return 0;
}

static int check_signature(EVP_PKEY *pkey, const char *input, size_t input_len, const char *sig,
                           size_t sig_len, ward_err *why)
{
    int rc = 0;
    unsigned char *raw = NULL, *der = NULL;
    size_t raw_len = 0, der_len = 0;
    EVP_MD_CTX *md = NULL;
    if (ident_b64_decode(sig, sig_len, true, &raw, &raw_len) < 0 || raw_len != 64) {
        ward_err_set(why, "JWT signature is not 64 base64url-encoded bytes (ES256 r||s)");
        rc = WARD_EINVAL;
        goto fail;
    }
    WARD_TRY(sig_raw_to_der(raw, &der, &der_len));
    md = EVP_MD_CTX_new();
    if (md == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
        EVP_DigestVerify(md, der, der_len, (const unsigned char *)input, input_len) != 1) {
        ward_err_set(why, "JWT signature does not verify");
        rc = WARD_EINVAL;
        goto fail;
    }
fail:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    free(raw);
    return rc;
}

static int check_claims(const cJSON *c, const ident_bundle *bundle, const char *audience,
                        time_t now, char *id, ward_err *why)
{
    char t[40];
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "exp");
    if (!cJSON_IsNumber(exp) || !isfinite(exp->valuedouble)) {
        ward_err_set(why, "JWT has no exp claim");
        return WARD_EINVAL;
    }
    if (exp->valuedouble <= (double)now) {
        ident_time_format(exp->valuedouble < 0 ? 0 : (time_t)exp->valuedouble, t, sizeof(t));
        ward_err_set(why, "JWT expired at %s", t);
        return WARD_EINVAL;
    }
    const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(c, "nbf");
    if (nbf != NULL && (!cJSON_IsNumber(nbf) || !(nbf->valuedouble <= (double)now))) {
        ward_err_set(why, "JWT is not yet valid (nbf)");
        return WARD_EINVAL;
    }
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(c, "aud");
    bool found = false;
    if (cJSON_IsString(aud)) {
        found = strcmp(aud->valuestring, audience) == 0;
    } else if (cJSON_IsArray(aud) && cJSON_GetArraySize(aud) > 0) {
        const cJSON *a;
        cJSON_ArrayForEach(a, aud)
        {
            if (!cJSON_IsString(a)) {
                ward_err_set(why, "JWT aud holds a non-string value");
                return WARD_EINVAL;
            }
            found = found || strcmp(a->valuestring, audience) == 0;
        }
    } else {
        ward_err_set(why, "JWT has no aud claim");
        return WARD_EINVAL;
    }
    if (!found) {
        char shown[128];
        ident_sanitize((const unsigned char *)audience, strlen(audience), shown, sizeof(shown));
        ward_err_set(why, "audience \"%s\" is not in the JWT's aud", shown);
        return WARD_EINVAL;
    }
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(c, "sub");
    if (!cJSON_IsString(sub)) {
        ward_err_set(why, "JWT has no sub claim");
        return WARD_EINVAL;
    }
    ward_spiffe_id sid;
    size_t len = strlen(sub->valuestring);
    if (check_workload_id(sub->valuestring, len, &sid, "JWT sub", why) < 0)
        return WARD_EINVAL;
    const char *td = ident_bundle_trust_domain(bundle);
    if (sid.td_len != strlen(td) || memcmp(sid.td, td, sid.td_len) != 0) {
        ward_err_set(why, "trust domain %.*s is not %s", (int)sid.td_len, sid.td, td);
        return WARD_EINVAL;
    }
    memcpy(id, sub->valuestring, len + 1);
    return 0;
}

int ident_jwt_verify(const char *token, size_t len, const ident_bundle *bundle,
                     const char *audience, time_t now, char *id, ward_err *why)
{
    int rc = 0;
    cJSON *header = NULL, *claims = NULL;
    if (token == NULL || bundle == NULL || audience == NULL || audience[0] == '\0' || id == NULL) {
        ward_err_set(why, "missing token, bundle or audience");
        return WARD_EINVAL;
    }
    if (len > JWT_MAX) {
        ward_err_set(why, "JWT larger than %d bytes", JWT_MAX);
        return WARD_ELIMIT;
    }
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token))) {
        ward_err_set(why, "not a compact JWS (header.payload.signature)");
        return WARD_EINVAL;
    }
    header = part_json(token, (size_t)(d1 - token));
    if (header == NULL) {
        ward_err_set(why, "JWT header is not base64url-encoded JSON");
        rc = WARD_EINVAL;
        goto fail;
    }
    const char *kid = NULL;
    WARD_TRY(check_header(header, &kid, why));
    EVP_PKEY *pkey = ident_bundle_jwt_key(bundle, kid);
    if (pkey == NULL) {
        char shown[80];
        ident_sanitize((const unsigned char *)kid, strlen(kid), shown, sizeof(shown));
        ward_err_set(why, "unknown kid \"%s\" (not in the bundle of %s)", shown,
                     ident_bundle_trust_domain(bundle));
        rc = WARD_EINVAL;
        goto fail;
    }
    const char *crv = ident_ec_curve(pkey, NULL);
    if (crv == NULL || strcmp(crv, "P-256") != 0) {
        ward_err_set(why, "key of kid \"%s\" is not an EC P-256 key (ES256)", kid);
        rc = WARD_EINVAL;
        goto fail;
    }
    /* Only an authentic token gets its claims read. */
    WARD_TRY(check_signature(pkey, token, (size_t)(d2 - token), d2 + 1,
                             len - (size_t)(d2 + 1 - token), why));
    claims = part_json(d1 + 1, (size_t)(d2 - d1 - 1));
    if (claims == NULL) {
        ward_err_set(why, "JWT payload is not base64url-encoded JSON");
        rc = WARD_EINVAL;
        goto fail;
    }
    WARD_TRY(check_claims(claims, bundle, audience, now, id, why));
fail:
    cJSON_Delete(header);
    cJSON_Delete(claims);
    return rc;
}
