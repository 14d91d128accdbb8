/* bundle.c - trust bundles: refcounted snapshots, the SPIFFE bundle format (JWKS), PEM */
#include "identity/identity_int.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#define BUNDLE_DOC_MAX         ((size_t)1 << 20) /* JSON or PEM input */
#define BUNDLE_KEYS_MAX        1024              /* entries of one kind */
#define BUNDLE_KID_MAX         256
#define BUNDLE_REFRESH_DEFAULT 300 /* seconds; SPIRE's bundle endpoint default */
#define BUNDLE_RSA_MIN_BITS    2048
#define BUNDLE_RSA_MAX_BITS    8192
#define JSON_INT_MAX           9007199254740992.0 /* 2^53: integers a double holds exactly */

typedef struct bundle_jwt_key {
    char *kid;
    EVP_PKEY *pkey; /* public part only */
} bundle_jwt_key;

/* Built single-threaded, then shared read-only; only refs changes after that. */
struct ident_bundle {
    atomic_uint refs;
    char td[WARD_SPIFFE_TD_MAX + 1];
    X509 **x509;
    size_t n_x509, cap_x509;
    bundle_jwt_key *jwt;
    size_t n_jwt, cap_jwt;
    uint64_t sequence;
    uint64_t refresh_hint;
};

int ident_bundle_new(const char *trust_domain, ident_bundle **out, ward_err *err)
{
    *out = NULL;
    size_t len = trust_domain ? strlen(trust_domain) : 0;
    if (!ward_spiffe_td_valid(trust_domain ? trust_domain : "", len)) {
        ward_err_set(err, "invalid trust domain \"%s\"", trust_domain ? trust_domain : "");
        return WARD_EINVAL;
    }
    ident_bundle *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return WARD_ENOMEM;
    atomic_init(&b->refs, 1);
    memcpy(b->td, trust_domain, len + 1);
    b->refresh_hint = BUNDLE_REFRESH_DEFAULT;
    *out = b;
    return 0;
}

const char *ident_ec_curve(const EVP_PKEY *pkey, size_t *field_len)
{
    char name[64];
    size_t name_len = 0;
    if (pkey == NULL || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC ||
        EVP_PKEY_get_group_name(pkey, name, sizeof(name), &name_len) != 1)
        return NULL;
    int nid = OBJ_sn2nid(name);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(name);
    size_t fl = 0;
    const char *crv = NULL;
    switch (nid) {
    case NID_X9_62_prime256v1: crv = "P-256", fl = 32; break;
    case NID_secp384r1: crv = "P-384", fl = 48; break;
    case NID_secp521r1: crv = "P-521", fl = 66; break;
    default: return NULL;
    }
    if (field_len != NULL)
        *field_len = fl;
    return crv;
}

/* One deterministic rule for RSA keys, whichever way they arrive (PEM, JSON,
 * the add functions): 2048..8192 bits, odd modulus, odd exponent >= 3.
 * (OpenSSL's public check is not used: its primality test is randomized, so
 * the same bundle would be accepted or refused by chance.) */
static int rsa_key_ok(const EVP_PKEY *pkey)
{
    int bits = EVP_PKEY_get_bits(pkey);
    if (bits < BUNDLE_RSA_MIN_BITS || bits > BUNDLE_RSA_MAX_BITS)
        return 0;
    BIGNUM *n = NULL, *e = NULL;
    int ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
             EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) == 1 && BN_is_odd(n) &&
             BN_is_odd(e) && !BN_is_one(e);
    BN_free(n);
    BN_free(e);
    return ok;
}

/* Keys a bundle can carry (and the JWK format can describe): EC on a NIST
 * curve, or RSA as rsa_key_ok says. */
static int key_supported(const EVP_PKEY *pkey)
{
    if (ident_ec_curve(pkey, NULL) != NULL)
        return 1;
    if (pkey != NULL && EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA && rsa_key_ok(pkey))
        return 1;
    return 0;
}

int ident_bundle_add_x509(ident_bundle *b, X509 *authority)
{
    if (b == NULL || authority == NULL || !key_supported(X509_get0_pubkey(authority)))
        return WARD_EINVAL;
    for (size_t i = 0; i < b->n_x509; i++)
        if (X509_cmp(b->x509[i], authority) == 0)
            return 0; /* already there */
    if (b->n_x509 >= BUNDLE_KEYS_MAX)
        return WARD_ELIMIT;
    if (b->n_x509 == b->cap_x509) {
        size_t cap = b->cap_x509 ? b->cap_x509 * 2 : 4;
        X509 **p = realloc(b->x509, cap * sizeof(*p));
        if (p == NULL)
            return WARD_ENOMEM;
        b->x509 = p;
        b->cap_x509 = cap;
    }
    if (X509_up_ref(authority) != 1)
        return WARD_ENOMEM;
    b->x509[b->n_x509++] = authority;
    return 0;
}

static bool kid_valid(const char *kid)
{
    size_t n = kid ? strlen(kid) : 0;
    if (n == 0 || n > BUNDLE_KID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)kid[i] < 0x21 || (unsigned char)kid[i] > 0x7e)
            return false;
    return true;
}

/* A copy holding only the public half (bundles never carry private keys). */
static EVP_PKEY *public_copy(EVP_PKEY *pkey)
{
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(pkey, &der);
    if (len <= 0)
        return NULL;
    const unsigned char *p = der;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, len);
    OPENSSL_free(der);
    return pub;
}

int ident_bundle_add_jwt(ident_bundle *b, const char *kid, EVP_PKEY *public_key)
{
    if (b == NULL || !kid_valid(kid) || !key_supported(public_key))
        return WARD_EINVAL;
    for (size_t i = 0; i < b->n_jwt; i++)
        if (strcmp(b->jwt[i].kid, kid) == 0)
            return WARD_EINVAL; /* one key per kid */
    if (b->n_jwt >= BUNDLE_KEYS_MAX)
        return WARD_ELIMIT;
    if (b->n_jwt == b->cap_jwt) {
        size_t cap = b->cap_jwt ? b->cap_jwt * 2 : 4;
        bundle_jwt_key *p = realloc(b->jwt, cap * sizeof(*p));
        if (p == NULL)
            return WARD_ENOMEM;
        b->jwt = p;
        b->cap_jwt = cap;
    }
    char *k = strdup(kid);
    EVP_PKEY *pub = public_copy(public_key);
    if (k == NULL || pub == NULL) {
        free(k);
        EVP_PKEY_free(pub);
        return WARD_ENOMEM;
    }
    b->jwt[b->n_jwt].kid = k;
    b->jwt[b->n_jwt].pkey = pub;
    b->n_jwt++;
    return 0;
}

void ident_bundle_set_sequence(ident_bundle *b, uint64_t sequence)
{
    b->sequence = sequence;
}

void ident_bundle_set_refresh_hint(ident_bundle *b, uint64_t seconds)
{
    b->refresh_hint = seconds;
}

void ident_bundle_ref(ident_bundle *b)
{
    if (b != NULL)
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void ident_bundle_unref(ident_bundle *b)
{
    if (b == NULL || atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < b->n_x509; i++)
        X509_free(b->x509[i]);
    for (size_t i = 0; i < b->n_jwt; i++) {
        free(b->jwt[i].kid);
        EVP_PKEY_free(b->jwt[i].pkey);
    }
    free(b->x509);
    free(b->jwt);
    free(b);
}

const char *ident_bundle_trust_domain(const ident_bundle *b)
{
    return b->td;
}

uint64_t ident_bundle_sequence(const ident_bundle *b)
{
    return b->sequence;
}

size_t ident_bundle_x509_count(const ident_bundle *b)
{
    return b->n_x509;
}

X509 *ident_bundle_x509(const ident_bundle *b, size_t i)
{
    return i < b->n_x509 ? b->x509[i] : NULL;
}

EVP_PKEY *ident_bundle_jwt_key(const ident_bundle *b, const char *kid)
{
    for (size_t i = 0; i < b->n_jwt; i++)
        if (strcmp(b->jwt[i].kid, kid) == 0)
            return b->jwt[i].pkey;
    return NULL;
}

/* ---- JWK parameters ------------------------------------------------------------ */

static int put_bn_param(ward_buf *out, const char *name, const EVP_PKEY *pkey, const char *param,
                        size_t pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1)
        return WARD_EINVAL;
    int rc = 0;
    int n = BN_num_bytes(bn);
    if (pad == 0)
        pad = n > 0 ? (size_t)n : 1; /* base64urlUInt: minimal octets, zero is one octet */
    if ((size_t)n > pad || pad > sizeof(buf) || BN_bn2binpad(bn, buf, (int)pad) < 0) {
        rc = WARD_EINVAL;
        goto fail;
    }
    WARD_TRY(ward_buf_printf(out, ",\"%s\":\"", name));
    WARD_TRY(ident_b64_encode(buf, pad, true, out));
    WARD_TRY(ward_buf_putc(out, '"'));
fail:
    BN_free(bn);
    return rc;
}

/* Appends ,"kty":...,<key parameters> for an EC or RSA public key. */
static int put_jwk_params(ward_buf *out, const EVP_PKEY *pkey)
{
    int rc = 0;
    size_t fl;
    const char *crv = ident_ec_curve(pkey, &fl);
    if (crv != NULL) {
        WARD_TRY(ward_buf_printf(out, ",\"kty\":\"EC\",\"crv\":\"%s\"", crv));
        WARD_TRY(put_bn_param(out, "x", pkey, OSSL_PKEY_PARAM_EC_PUB_X, fl));
        WARD_TRY(put_bn_param(out, "y", pkey, OSSL_PKEY_PARAM_EC_PUB_Y, fl));
        return 0;
    }
    if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA) {
        WARD_TRY(ward_buf_puts(out, ",\"kty\":\"RSA\""));
        WARD_TRY(put_bn_param(out, "n", pkey, OSSL_PKEY_PARAM_RSA_N, 0));
        WARD_TRY(put_bn_param(out, "e", pkey, OSSL_PKEY_PARAM_RSA_E, 0));
        return 0;
    }
    return WARD_EINVAL;
fail:
    return rc;
}

int ident_bundle_to_json(const ident_bundle *b, ward_buf *out)
{
    int rc = 0;
    unsigned char *der = NULL;
    WARD_TRY(ward_buf_puts(out, "{\"keys\":["));
    for (size_t i = 0; i < b->n_x509; i++) {
        WARD_TRY(ward_buf_puts(out, i ? ",{\"use\":\"x509-svid\"" : "{\"use\":\"x509-svid\""));
        WARD_TRY(put_jwk_params(out, X509_get0_pubkey(b->x509[i])));
        int len = i2d_X509(b->x509[i], &der);
        if (len <= 0) {
            rc = WARD_EINVAL;
            goto fail;
        }
        WARD_TRY(ward_buf_puts(out, ",\"x5c\":[\""));
        WARD_TRY(ident_b64_encode(der, (size_t)len, false, out));
        WARD_TRY(ward_buf_puts(out, "\"]}"));
        OPENSSL_free(der);
        der = NULL;
    }
    for (size_t i = 0; i < b->n_jwt; i++) {
        WARD_TRY(ward_buf_puts(out, (b->n_x509 || i) ? ",{\"use\":\"jwt-svid\""
                                                     : "{\"use\":\"jwt-svid\""));
        WARD_TRY(ward_buf_puts(out, ",\"kid\":"));
        WARD_TRY(ident_json_quote(out, b->jwt[i].kid));
        WARD_TRY(put_jwk_params(out, b->jwt[i].pkey));
        WARD_TRY(ward_buf_putc(out, '}'));
    }
    WARD_TRY(ward_buf_printf(out, "],\"spiffe_sequence\":%llu,\"spiffe_refresh_hint\":%llu}",
                             (unsigned long long)b->sequence, (unsigned long long)b->refresh_hint));
fail:
    OPENSSL_free(der);
    return rc;
}

/* A JWK member that must be a string; NULL if absent or not a string. */
static const char *jwk_str(const cJSON *key, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(key, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jwk_b64(const cJSON *key, const char *name, unsigned char **out, size_t *len,
                   const char *where, ward_err *err)
{
    const char *s = jwk_str(key, name);
    if (s == NULL) {
        ward_err_set(err, "%s: \"%s\" missing or not a string", where, name);
        return WARD_ESYNTAX;
    }
    if (ident_b64_decode(s, strlen(s), true, out, len) < 0 || *len == 0) {
        ward_err_set(err, "%s: \"%s\" is not base64url", where, name);
        return WARD_ESYNTAX;
    }
    return 0;
}

/* check: run OpenSSL's public-key check (used for EC: point on the curve). */
static int pkey_from_params(const char *type, OSSL_PARAM_BLD *bld, bool check_key, EVP_PKEY **out)
{
    int rc = WARD_EINVAL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY_CTX *check = NULL;
    EVP_PKEY *pkey = NULL;
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto fail;
    if (check_key) {
        check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (check == NULL || EVP_PKEY_public_check(check) != 1)
            goto fail;
    }
    *out = pkey;
    pkey = NULL;
    rc = 0;
fail:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    ERR_clear_error();
    return rc;
}

/* The public key a JWK describes: 1 with *out set, 0 for a key type or curve
 * we do not know (the element is to be ignored), or an error. */
static int jwk_to_pkey(const cJSON *key, const char *kty, EVP_PKEY **out, const char *where,
                       ward_err *err)
{
    int rc = 0;
    unsigned char *a = NULL, *c = NULL, *pt = NULL;
    size_t alen = 0, clen = 0;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *n = NULL, *e = NULL;
    if (bld == NULL)
        return WARD_ENOMEM;
    if (strcmp(kty, "EC") == 0) {
        const char *crv = jwk_str(key, "crv");
        const char *group;
        size_t fl;
        if (crv == NULL) {
            ward_err_set(err, "%s: EC key without \"crv\"", where);
            rc = WARD_ESYNTAX;
            goto fail;
        }
        if (strcmp(crv, "P-256") == 0)
            group = "prime256v1", fl = 32;
        else if (strcmp(crv, "P-384") == 0)
            group = "secp384r1", fl = 48;
        else if (strcmp(crv, "P-521") == 0)
            group = "secp521r1", fl = 66;
        else
            goto fail; /* unknown curve: ignored, rc = 0 */
        WARD_TRY(jwk_b64(key, "x", &a, &alen, where, err));
        WARD_TRY(jwk_b64(key, "y", &c, &clen, where, err));
        if (alen != fl || clen != fl) {
            ward_err_set(err, "%s: %s coordinates must be %zu bytes", where, crv, fl);
            rc = WARD_ESYNTAX;
            goto fail;
        }
        pt = malloc(1 + 2 * fl);
        if (pt == NULL) {
            rc = WARD_ENOMEM;
            goto fail;
        }
        pt[0] = 0x04;
        memcpy(pt + 1, a, fl);
        memcpy(pt + 1 + fl, c, fl);
        if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
            OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * fl) != 1) {
            rc = WARD_ENOMEM;
            goto fail;
        }
        if (pkey_from_params("EC", bld, true, out) < 0) {
            ward_err_set(err, "%s: EC point is not on curve %s", where, crv);
            rc = WARD_EINVAL;
            goto fail;
        }
        rc = 1;
    } else if (strcmp(kty, "RSA") == 0) {
        WARD_TRY(jwk_b64(key, "n", &a, &alen, where, err));
        WARD_TRY(jwk_b64(key, "e", &c, &clen, where, err));
        n = BN_bin2bn(a, (int)alen, NULL);
        e = BN_bin2bn(c, (int)clen, NULL);
        if (n == NULL || e == NULL || alen > BUNDLE_RSA_MAX_BITS / 8 ||
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
            OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1) {
            ward_err_set(err, "%s: bad RSA parameters", where);
            rc = WARD_EINVAL;
            goto fail;
        }
        if (pkey_from_params("RSA", bld, false, out) < 0) {
            ward_err_set(err, "%s: bad RSA key", where);
            rc = WARD_EINVAL;
            goto fail;
        }
        if (!rsa_key_ok(*out)) {
            ward_err_set(err, "%s: RSA key must be %d..%d bits with an odd modulus and exponent",
                         where, BUNDLE_RSA_MIN_BITS, BUNDLE_RSA_MAX_BITS);
            EVP_PKEY_free(*out);
            *out = NULL;
            rc = WARD_EINVAL;
            goto fail;
        }
        rc = 1;
    }
fail:
    free(a);
    free(c);
    free(pt);
    BN_free(n);
    BN_free(e);
    OSSL_PARAM_BLD_free(bld);
    return rc;
}

/* An optional non-negative integer member (spiffe_sequence, spiffe_refresh_hint). */
static int json_u64(const cJSON *root, const char *name, uint64_t *out, ward_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (v == NULL)
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!(d >= 0 && d <= JSON_INT_MAX) || d != (double)(uint64_t)d) {
        ward_err_set(err, "\"%s\" must be a non-negative integer", name);
        return WARD_ESYNTAX;
    }
    *out = (uint64_t)d;
    return 0;
}

static int parse_x509_entry(ident_bundle *b, const cJSON *key, const char *kty, const char *where,
                            ward_err *err)
{
    int rc = 0;
    unsigned char *der = NULL;
    size_t der_len = 0;
    X509 *cert = NULL;
    EVP_PKEY *pkey = NULL;
    const cJSON *x5c = cJSON_GetObjectItemCaseSensitive(key, "x5c");
    /* X509-SVID 6.2: no or empty x5c -> the entry is ignored; only the first
     * certificate counts. */
    if (x5c == NULL || (cJSON_IsArray(x5c) && cJSON_GetArraySize(x5c) == 0))
        return 0;
    if (!cJSON_IsArray(x5c) || !cJSON_IsString(x5c->child)) {
        ward_err_set(err, "%s: \"x5c\" must be an array of strings", where);
        return WARD_ESYNTAX;
    }
    const char *s = x5c->child->valuestring;
    if (ident_b64_decode(s, strlen(s), false, &der, &der_len) < 0 || der_len == 0 ||
        der_len > INT32_MAX) {
        ward_err_set(err, "%s: \"x5c\"[0] is not base64", where);
        rc = WARD_ESYNTAX;
        goto fail;
    }
    const unsigned char *p = der;
    cert = d2i_X509(NULL, &p, (long)der_len);
    if (cert == NULL || p != der + der_len) {
        ward_err_set(err, "%s: \"x5c\"[0] is not a DER certificate", where);
        rc = WARD_ESYNTAX;
        goto fail;
    }
    rc = jwk_to_pkey(key, kty, &pkey, where, err);
    if (rc <= 0)
        goto fail; /* error, or a curve we ignore */
    rc = 0;
    if (EVP_PKEY_eq(pkey, X509_get0_pubkey(cert)) != 1) {
        ward_err_set(err, "%s: key parameters do not match the \"x5c\" certificate", where);
        rc = WARD_EINVAL;
        goto fail;
    }
    rc = ident_bundle_add_x509(b, cert);
    if (rc < 0)
        ward_err_set(err, "%s: cannot add certificate (%s)", where, ward_strerror(rc));
fail:
    X509_free(cert);
    EVP_PKEY_free(pkey);
    free(der);
    ERR_clear_error();
    return rc;
}

static int parse_jwt_entry(ident_bundle *b, const cJSON *key, const char *kty, const char *where,
                           ward_err *err)
{
    EVP_PKEY *pkey = NULL;
    const char *kid = jwk_str(key, "kid");
    if (!kid_valid(kid)) {
        ward_err_set(err, "%s: jwt-svid key without a valid \"kid\"", where);
        return WARD_ESYNTAX;
    }
    int rc = jwk_to_pkey(key, kty, &pkey, where, err);
    if (rc <= 0)
        return rc;
    rc = ident_bundle_add_jwt(b, kid, pkey);
    if (rc < 0)
        ward_err_set(err, "%s: cannot add key \"%s\" (duplicate kid?)", where, kid);
    EVP_PKEY_free(pkey);
    return rc;
}

int ident_bundle_from_json(const char *trust_domain, const char *json, size_t len,
                           ident_bundle **out, ward_err *err)
{
    int rc = 0;
    ident_bundle *b = NULL;
    cJSON *root = NULL;
    *out = NULL;
    if (len > BUNDLE_DOC_MAX) {
        ward_err_set(err, "bundle larger than %zu bytes", BUNDLE_DOC_MAX);
        return WARD_ELIMIT;
    }
    WARD_TRY(ident_bundle_new(trust_domain, &b, err));
    root = ident_json_parse(json, len);
    if (!cJSON_IsObject(root)) {
        ward_err_set(err, "bundle is not a JSON object");
        rc = WARD_ESYNTAX;
        goto fail;
    }
    const cJSON *keys = cJSON_GetObjectItemCaseSensitive(root, "keys");
    if (!cJSON_IsArray(keys)) {
        ward_err_set(err, "bundle has no \"keys\" array");
        rc = WARD_ESYNTAX;
        goto fail;
    }
    if (cJSON_GetArraySize(keys) > 2 * BUNDLE_KEYS_MAX) {
        ward_err_set(err, "bundle has more than %d keys", 2 * BUNDLE_KEYS_MAX);
        rc = WARD_ELIMIT;
        goto fail;
    }
    WARD_TRY(json_u64(root, "spiffe_sequence", &b->sequence, err));
    WARD_TRY(json_u64(root, "spiffe_refresh_hint", &b->refresh_hint, err));
    int i = 0;
    const cJSON *key;
    cJSON_ArrayForEach(key, keys)
    {
        char where[32];
        snprintf(where, sizeof(where), "keys[%d]", i++);
        if (!cJSON_IsObject(key)) {
            ward_err_set(err, "%s: not an object", where);
            rc = WARD_ESYNTAX;
            goto fail;
        }
        const char *use = jwk_str(key, "use");
        const char *kty = jwk_str(key, "kty");
        if (use == NULL || kty == NULL) {
            ward_err_set(err, "%s: \"%s\" missing or not a string", where, use ? "kty" : "use");
            rc = WARD_ESYNTAX;
            goto fail;
        }
        /* Unknown uses and key types are ignored (SPIFFE bundle 4.1.3). */
        if (strcmp(kty, "EC") != 0 && strcmp(kty, "RSA") != 0)
            continue;
        if (strcmp(use, "x509-svid") == 0)
            WARD_TRY(parse_x509_entry(b, key, kty, where, err));
        else if (strcmp(use, "jwt-svid") == 0)
            WARD_TRY(parse_jwt_entry(b, key, kty, where, err));
    }
    *out = b;
    b = NULL;
fail:
    cJSON_Delete(root);
    ident_bundle_unref(b);
    return rc;
}

int ident_bundle_to_pem(const ident_bundle *b, ward_buf *out)
{
    int rc = 0;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return WARD_ENOMEM;
    for (size_t i = 0; i < b->n_x509; i++) {
        if (PEM_write_bio_X509(bio, b->x509[i]) != 1) {
            rc = WARD_ENOMEM;
            goto fail;
        }
    }
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    if (n > 0)
        WARD_TRY(ward_buf_append(out, data, (size_t)n));
fail:
    BIO_free(bio);
    return rc;
}

int ident_bundle_from_pem(const char *trust_domain, const char *pem, size_t len, ident_bundle **out,
                          ward_err *err)
{
    int rc = 0;
    ident_bundle *b = NULL;
    BIO *bio = NULL;
    X509 *cert = NULL;
    *out = NULL;
    if (len > BUNDLE_DOC_MAX) {
        ward_err_set(err, "bundle larger than %zu bytes", BUNDLE_DOC_MAX);
        return WARD_ELIMIT;
    }
    WARD_TRY(ident_bundle_new(trust_domain, &b, err));
    bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    ERR_clear_error();
    for (size_t n = 1;; n++) {
        cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (cert == NULL) {
            unsigned long e = ERR_peek_last_error();
            bool none = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
            if (none && n > 1)
                break;
            if (none)
                ward_err_set(err, "no PEM certificate in bundle");
            else
                ward_err_set(err, "certificate %zu of the bundle is malformed", n);
            rc = WARD_ESYNTAX;
            goto fail;
        }
        rc = ident_bundle_add_x509(b, cert);
        if (rc < 0) {
            ward_err_set(err, "certificate %zu of the bundle: unsupported key or too many", n);
            goto fail;
        }
        X509_free(cert);
        cert = NULL;
    }
    *out = b;
    b = NULL;
fail:
    ERR_clear_error();
    X509_free(cert);
    BIO_free(bio);
    ident_bundle_unref(b);
    return rc;
}
