/* fuzz_jwt.c - libFuzzer target: bytes -> ident_jwt_verify against a fixed bundle; nothing the bundle's key did not sign is accepted, and what it signed only with valid claims */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "common/ward.h"
#include "identity/identity.h"

/*
 * The bundle (trust domain example.org) holds four JWT keys: "k0", a fixed
 * P-256 key written below (so a token signed with it stays valid and can be
 * a seed), "k1", a P-256 key made at start whose private half nobody else
 * ever sees, and two keys ES256 must never use: "p384" (P-384) and "rsa"
 * (RSA-2048). The clock is fixed. Each input is used twice:
 *
 *  1. As a token. Nobody but this target signs with k0, and it signs only
 *     the tokens made in LLVMFuzzerInitialize, so if ident_jwt_verify accepts
 *     the input, its signing input (header.payload) must be one of those
 *     tokens' (the signature bytes may differ: ECDSA signatures are not
 *     unique) and the ID returned their sub. Anything else accepted - alg
 *     "none", HMAC, another curve, a k1 token, a bent signature - is a forgery.
 *
 *  2. As the header and claims of a token that k0 does sign: the bytes
 *     before the first NUL are the header JSON and the rest the claims JSON
 *     (with no NUL, the input is the claims under {"alg":"ES256","kid":"k0",
 *     "typ":"JWT"}). The token is base64url-encoded and signed here. If
 *     ident_jwt_verify accepts it, a plain model of the JWT-SVID rules must
 *     agree: alg ES256, kid k0, typ JWT/JOSE or absent, no crit; exp a number
 *     after now, nbf absent or not after now, aud naming our audience, sub a
 *     SPIFFE ID of example.org with a path, and the ID returned equal to sub.
 *
 * A refusal must carry a message. Any violation abort()s.
 *
 * The seeds in tests/fuzz/corpus/fuzz_jwt/ are written by this target:
 *   WARD_FUZZ_WRITE_SEEDS=tests/fuzz/corpus/fuzz_jwt build/fuzz/fuzz_jwt -runs=0
 * (valid k0 tokens, alg "none", HS256 keyed with k0's public key, a k0
 * signature under kid k1, and claims for the second use).
 */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TRUST_DOMAIN   "example.org"
#define SUBJECT        "spiffe://" TRUST_DOMAIN "/ns/shop/sa/checkout"
#define AUDIENCE       "payments"
#define ISSUED         ((time_t)1767225600) /* 2026-01-01T00:00:00Z */
#define TTL            300
#define NOW            (ISSUED + 60)
#define JWT_LIMIT      8192 /* ident_jwt_verify's size limit */
#define KID            "k0"
#define DEFAULT_HEADER "{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"typ\":\"JWT\"}"

/* k0: a test key, public in this repository; never use it for anything else. */
static const char K0_PEM[] = "-----BEGIN EC PRIVATE KEY-----\n"
                             "MHcCAQEEIMEJ9SkTNW4F7sR7FRbZQvMBE3AHbJ0ek6ounBkTs9yXoAoGCCqGSM49\n"
                             "AwEHoUQDQgAEOTitw/YflGau6nv58c4r/92xxdO4dmt28I1+lHC6M9Z7YvaiCeyf\n"
                             "OlqGI1i7mt1TeJg1MQ72iugM8Y8M40ZI2Q==\n"
                             "-----END EC PRIVATE KEY-----\n";

#define N_SIGNED 2
static EVP_PKEY *g_k0;
static ident_bundle *g_bundle;
static ward_buf g_signed[N_SIGNED]; /* the tokens k0 signed */
static bool g_verbose;              /* WARD_FUZZ_VERBOSE=1: print each verdict */

static void die(const char *what, const char *detail, const char *token, size_t len)
{
    fprintf(stderr, "fuzz_jwt: %s: %s\n", what, detail ? detail : "");
    if (token != NULL)
        fprintf(stderr, "---- token (%zu bytes) ----\n%.*s\n", len, (int)len, token);
    abort();
}

static void cleanup(void)
{
    for (size_t i = 0; i < N_SIGNED; i++)
        ward_buf_dispose(&g_signed[i]);
    ident_bundle_unref(g_bundle);
    EVP_PKEY_free(g_k0);
}

/* ---- JOSE pieces (written here, not borrowed from identity/) ------------------------ */

static void b64url(ward_buf *out, const void *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const unsigned char *p = in;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        size_t n = len - i >= 3 ? 4 : len - i + 1;
        for (size_t k = 0; k < n; k++)
            if (ward_buf_putc(out, abc[(v >> (18 - 6 * k)) & 63]) != 0)
                die("out of memory", NULL, NULL, 0);
    }
}

/* header.payload, both base64url-encoded. */
static void signing_input(ward_buf *out, const void *hdr, size_t hdr_len, const void *claims,
                          size_t claims_len)
{
    b64url(out, hdr, hdr_len);
    if (ward_buf_putc(out, '.') != 0)
        die("out of memory", NULL, NULL, 0);
    b64url(out, claims, claims_len);
}

/* Appends .signature: ES256 (r||s) with key over what out holds. */
static void sign_es256(ward_buf *out, EVP_PKEY *key)
{
    unsigned char der[80], raw[64];
    size_t der_len = sizeof(der);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, der, &der_len, (const unsigned char *)out->ptr, out->len) != 1)
        die("ES256 signing failed", NULL, NULL, 0);
    EVP_MD_CTX_free(md);
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    const BIGNUM *r, *s;
    if (sig == NULL)
        die("ES256 signature is not DER", NULL, NULL, 0);
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
        die("ES256 signature does not fit", NULL, NULL, 0);
    ECDSA_SIG_free(sig);
    if (ward_buf_putc(out, '.') != 0)
        die("out of memory", NULL, NULL, 0);
    b64url(out, raw, sizeof(raw));
}

/* ---- use 1: the input is a token ------------------------------------------------------ */

static void check_token(const uint8_t *data, size_t size)
{
    char id[IDENT_ID_MAX];
    ward_err why;
    ward_err_clear(&why);
    const char *tok = (const char *)data;
    int rc = ident_jwt_verify(tok, size, g_bundle, AUDIENCE, NOW, id, &why);
    if (g_verbose)
        fprintf(stderr, "fuzz_jwt: token: %s\n", rc == 0 ? "accepted" : why.msg);
    if (rc != 0) {
        if (rc != WARD_ENOMEM && why.msg[0] == '\0')
            die("token refused without a message", ward_strerror(rc), tok, size);
        return;
    }
    const char *dot = size > 0 ? memrchr(tok, '.', size) : NULL;
    size_t n = dot ? (size_t)(dot - tok) : 0;
    bool ours = false;
    for (size_t i = 0; i < N_SIGNED && !ours; i++) {
        const char *sdot = memrchr(g_signed[i].ptr, '.', g_signed[i].len);
        ours = (size_t)(sdot - g_signed[i].ptr) == n && memcmp(g_signed[i].ptr, tok, n) == 0;
    }
    if (!ours)
        die("accepted a token the bundle's key never signed", id, tok, size);
    if (strcmp(id, SUBJECT) != 0)
        die("accepted token gives another ID than its sub", id, tok, size);
}

/* ---- use 2: the input is the content of a token k0 signs -------------------------------- */

static bool model_header(const cJSON *h)
{
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    const cJSON *kid = cJSON_GetObjectItemCaseSensitive(h, "kid");
    const cJSON *typ = cJSON_GetObjectItemCaseSensitive(h, "typ");
    return cJSON_IsObject(h) && cJSON_IsString(alg) && strcmp(alg->valuestring, "ES256") == 0 &&
           cJSON_IsString(kid) && strcmp(kid->valuestring, KID) == 0 &&
           (typ == NULL || (cJSON_IsString(typ) && (strcmp(typ->valuestring, "JWT") == 0 ||
                                                    strcmp(typ->valuestring, "JOSE") == 0))) &&
           cJSON_GetObjectItemCaseSensitive(h, "crit") == NULL;
}

/* NULL when the claims are acceptable, else what is wrong. */
static const char *model_claims(const cJSON *c, const char *id)
{
    if (!cJSON_IsObject(c))
        return "claims are not a JSON object";
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "exp");
    if (!cJSON_IsNumber(exp) || !(exp->valuedouble > (double)NOW))
        return "exp is missing or not after now";
    const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(c, "nbf");
    if (nbf != NULL && !(cJSON_IsNumber(nbf) && nbf->valuedouble <= (double)NOW))
        return "nbf is after now";
    const cJSON *aud = cJSON_GetObjectItemCaseSensitive(c, "aud"), *a;
    bool found = cJSON_IsString(aud) && strcmp(aud->valuestring, AUDIENCE) == 0;
    if (cJSON_IsArray(aud)) {
        cJSON_ArrayForEach(a, aud)
        {
            found = found || (cJSON_IsString(a) && strcmp(a->valuestring, AUDIENCE) == 0);
        }
    }
    if (!found)
        return "aud does not name our audience";
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(c, "sub");
    ward_spiffe_id sid;
    if (!cJSON_IsString(sub) ||
        ward_spiffe_id_parse(sub->valuestring, strlen(sub->valuestring), &sid, NULL) != 0)
        return "sub is not a SPIFFE ID";
    if (sid.td_len != strlen(TRUST_DOMAIN) || memcmp(sid.td, TRUST_DOMAIN, sid.td_len) != 0)
        return "sub is not in our trust domain";
    if (sid.path_len == 0)
        return "sub has no path";
    if (strcmp(id, sub->valuestring) != 0)
        return "the ID returned is not sub";
    return NULL;
}

static void check_signed(const uint8_t *data, size_t size)
{
    const uint8_t *nul = size > 0 ? memchr(data, '\0', size) : NULL;
    const char *hdr = nul ? (const char *)data : DEFAULT_HEADER;
    size_t hdr_len = nul ? (size_t)(nul - data) : strlen(DEFAULT_HEADER);
    const char *claims = nul ? (const char *)nul + 1 : (const char *)data;
    size_t claims_len = nul ? size - hdr_len - 1 : size;
    if ((hdr_len + claims_len) / 3 * 4 + 100 > JWT_LIMIT)
        return; /* refused for its size alone */

    ward_buf tok;
    ward_buf_init(&tok);
    signing_input(&tok, hdr, hdr_len, claims, claims_len);
    sign_es256(&tok, g_k0);
    char id[IDENT_ID_MAX];
    ward_err why;
    ward_err_clear(&why);
    int rc = ident_jwt_verify(tok.ptr, tok.len, g_bundle, AUDIENCE, NOW, id, &why);
    if (g_verbose)
        fprintf(stderr, "fuzz_jwt: signed by k0: %s\n", rc == 0 ? "accepted" : why.msg);
    if (rc == 0) {
        cJSON *h = cJSON_ParseWithLength(hdr, hdr_len);
        cJSON *c = cJSON_ParseWithLength(claims, claims_len);
        if (!model_header(h))
            die("accepted a token whose header breaks the JWT-SVID rules", hdr, tok.ptr, tok.len);
        const char *wrong = model_claims(c, id);
        if (wrong != NULL)
            die("accepted a token whose claims break the JWT-SVID rules", wrong, tok.ptr, tok.len);
        cJSON_Delete(h);
        cJSON_Delete(c);
    } else if (rc != WARD_ENOMEM && why.msg[0] == '\0') {
        die("token refused without a message", ward_strerror(rc), tok.ptr, tok.len);
    }
    ward_buf_dispose(&tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_token(data, size);
    check_signed(data, size);
    ERR_clear_error();
    return 0;
}

/* ---- start: keys, bundle, the tokens k0 signs, seeds ---------------------------------- */

static void bundle_add(const char *kid, EVP_PKEY *key)
{
    if (key == NULL || ident_bundle_add_jwt(g_bundle, kid, key) != 0)
        die("cannot add a JWT key to the bundle", kid, NULL, 0);
    EVP_PKEY_free(key);
}

static void seed_write(const char *dir, const char *name, const char *data, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        die("cannot write a seed", path, NULL, 0);
    fprintf(stderr, "fuzz_jwt: wrote %s (%zu bytes)\n", path, len);
}

#define CLAIMS_OK                                                                                  \
    "{\"sub\":\"" SUBJECT "\",\"aud\":[\"" AUDIENCE "\"],\"exp\":1767225900,\"iat\":1767225600}"

static void write_seeds(const char *dir)
{
    static const char claims_only[] =
        "{\"sub\":\"" SUBJECT "\",\"aud\":\"" AUDIENCE "\",\"exp\":1767225900,\"iat\":1767225600}";
    static const char hdr_claims[] =
        "{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"typ\":\"JOSE\"}\0"
        "{\"sub\":\"" SUBJECT "/x\",\"aud\":[\"other\",\"" AUDIENCE "\"],"
        "\"exp\":1.7672259e9,\"nbf\":1767225600,\"iat\":1767225600}";
    static const char expired[] =
        "{\"sub\":\"" SUBJECT "\",\"aud\":\"" AUDIENCE "\",\"exp\":1767225660,\"iat\":1767225600}";
    static const char other_td[] = "{\"sub\":\"spiffe://other.org/ns/shop/sa/checkout\","
                                   "\"aud\":\"" AUDIENCE "\",\"exp\":1767225900}";
    static const char none_hdr[] = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    static const char hs_hdr[] = "{\"alg\":\"HS256\",\"kid\":\"" KID "\",\"typ\":\"JWT\"}";
    static const char k1_hdr[] = "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"JWT\"}";
    ward_buf t;
    ward_buf_init(&t);

    seed_write(dir, "valid.jwt", g_signed[0].ptr, g_signed[0].len);
    seed_write(dir, "valid_two_aud.jwt", g_signed[1].ptr, g_signed[1].len);

    /* alg none: no signature at all */
    signing_input(&t, none_hdr, strlen(none_hdr), CLAIMS_OK, strlen(CLAIMS_OK));
    ward_buf_putc(&t, '.');
    seed_write(dir, "alg_none.jwt", t.ptr, t.len);

    /* HS256 keyed with k0's public key (the RS/HS confusion attack) */
    unsigned char *pub = NULL, mac[32];
    unsigned int mac_len = sizeof(mac);
    int pub_len = i2d_PUBKEY(g_k0, &pub);
    ward_buf_reset(&t);
    signing_input(&t, hs_hdr, strlen(hs_hdr), CLAIMS_OK, strlen(CLAIMS_OK));
    if (pub_len <= 0 || HMAC(EVP_sha256(), pub, pub_len, (const unsigned char *)t.ptr, t.len, mac,
                             &mac_len) == NULL)
        die("HMAC failed", NULL, NULL, 0);
    OPENSSL_free(pub);
    ward_buf_putc(&t, '.');
    b64url(&t, mac, mac_len);
    seed_write(dir, "hs256.jwt", t.ptr, t.len);

    /* k0's signature under k1's kid */
    ward_buf_reset(&t);
    signing_input(&t, k1_hdr, strlen(k1_hdr), CLAIMS_OK, strlen(CLAIMS_OK));
    sign_es256(&t, g_k0);
    seed_write(dir, "wrong_kid.jwt", t.ptr, t.len);
    ward_buf_dispose(&t);

    /* for use 2 */
    seed_write(dir, "claims.json", claims_only, strlen(claims_only));
    seed_write(dir, "header_claims.bin", hdr_claims, sizeof(hdr_claims) - 1);
    seed_write(dir, "claims_expired.json", expired, strlen(expired));
    seed_write(dir, "claims_other_td.json", other_td, strlen(other_td));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ward_err err;
    ward_err_clear(&err);
    g_verbose = getenv("WARD_FUZZ_VERBOSE") != NULL;
    atexit(cleanup);
    BIO *bio = BIO_new_mem_buf(K0_PEM, -1);
    g_k0 = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (g_k0 == NULL || ident_bundle_new(TRUST_DOMAIN, &g_bundle, &err) != 0)
        die("cannot load k0 or make the bundle", err.msg, NULL, 0);
    EVP_PKEY_up_ref(g_k0);
    bundle_add(KID, g_k0);
    bundle_add("k1", EVP_EC_gen("P-256"));
    bundle_add("p384", EVP_EC_gen("P-384"));
    bundle_add("rsa", EVP_RSA_gen(2048));

    /* The only tokens k0 ever signs for use 1. They must verify: a target
     * whose invariant cannot be met by a real token tests nothing. */
    static const char *const aud1[] = {AUDIENCE};
    static const char *const aud2[] = {"other", AUDIENCE};
    const char *const *auds[N_SIGNED] = {aud1, aud2};
    const size_t n_auds[N_SIGNED] = {1, 2};
    for (size_t i = 0; i < N_SIGNED; i++) {
        char id[IDENT_ID_MAX];
        ward_buf_init(&g_signed[i]);
        if (ident_jwt_sign(g_k0, KID, SUBJECT, auds[i], n_auds[i], ISSUED, TTL, &g_signed[i],
                           &err) != 0)
            die("ident_jwt_sign failed", err.msg, NULL, 0);
        if (ident_jwt_verify(g_signed[i].ptr, g_signed[i].len, g_bundle, AUDIENCE, NOW, id, &err) !=
            0)
            die("a token k0 signed does not verify", err.msg, g_signed[i].ptr, g_signed[i].len);
    }
    const char *dir = getenv("WARD_FUZZ_WRITE_SEEDS");
    if (dir != NULL && dir[0] != '\0')
        write_seeds(dir);
    ERR_clear_error();
    return 0;
}
