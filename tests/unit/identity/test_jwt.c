/* test_jwt.c - JWT-SVIDs: ES256 round trip, exact header and claims, every refusal */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <openssl/ec.h>
#include <openssl/hmac.h>

#include "identity/identity_int.h"
#include "tests/unit/identity/pki.h"

#define AUD "spiffe://example.org/ns/shop/sa/inventory"

typedef struct fx {
    EVP_PKEY *key;
    ident_bundle *bundle;
    ward_buf tok;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->key = pki_ec("P-256");
    assert_int_equal(ident_bundle_new("example.org", &f->bundle, NULL), 0);
    assert_int_equal(ident_bundle_add_jwt(f->bundle, "k1", f->key), 0);
    ward_buf_init(&f->tok);
    const char *aud[] = {AUD};
    ward_err err;
    assert_int_equal(ident_jwt_sign(f->key, "k1", PKI_ID, aud, 1, T0, 300, &f->tok, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    ward_buf_dispose(&f->tok);
    ident_bundle_unref(f->bundle);
    EVP_PKEY_free(f->key);
    free(f);
    return 0;
}

static int verify(fx *f, const char *tok, time_t now, const char *aud, char *id, ward_err *why)
{
    ward_err_clear(why);
    return ident_jwt_verify(tok, strlen(tok), f->bundle, aud, now, id, why);
}

static void expect_refused(fx *f, const char *tok, const char *reason)
{
    char id[IDENT_ID_MAX] = "";
    ward_err why;
    assert_int_not_equal(verify(f, tok, T0, AUD, id, &why), 0);
    assert_true(contains(why.msg, reason));
    assert_string_equal(id, "");
}

static char *part(const char *tok, int n)
{
    const char *p = tok;
    for (int i = 0; i < n; i++)
        p = strchr(p, '.') + 1;
    const char *e = strchr(p, '.');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    unsigned char *raw;
    size_t raw_len;
    assert_int_equal(ident_b64_decode(p, len, true, &raw, &raw_len), 0);
    return (char *)raw;
}

/* header.payload.signature with an ES256 signature by key (or `sig` as given). */
static char *craft(const char *header, const char *payload, EVP_PKEY *key, const char *alg_hmac)
{
    ward_buf t;
    ward_buf_init(&t);
    ident_b64_encode(header, strlen(header), true, &t);
    ward_buf_putc(&t, '.');
    ident_b64_encode(payload, strlen(payload), true, &t);
    size_t input_len = t.len;
    ward_buf_putc(&t, '.');
    if (alg_hmac != NULL) {
        unsigned char mac[32];
        unsigned int n = 0;
        HMAC(EVP_sha256(), alg_hmac, (int)strlen(alg_hmac), (unsigned char *)t.ptr, input_len, mac,
             &n);
        ident_b64_encode(mac, n, true, &t);
    } else if (key != NULL) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned char der[128], raw[64];
        size_t der_len = sizeof(der);
        assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
        assert_int_equal(EVP_DigestSign(md, der, &der_len, (unsigned char *)t.ptr, input_len), 1);
        EVP_MD_CTX_free(md);
        const unsigned char *p = der;
        ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
        BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32);
        ECDSA_SIG_free(sig);
        ident_b64_encode(raw, 64, true, &t);
    }
    return ward_buf_steal(&t);
}

#define HDR "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"JWT\"}"
#define CLAIMS(sub, aud, exp)                                                                      \
    "{\"sub\":\"" sub "\",\"aud\":" aud ",\"exp\":" exp ",\"iat\":1800000000}"
#define GOOD_CLAIMS CLAIMS(PKI_ID, "[\"" AUD "\"]", "1800000300")

static void test_round_trip(void **state)
{
    fx *f = *state;
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(verify(f, f->tok.ptr, T0, AUD, id, &why), 0);
    assert_string_equal(id, PKI_ID);
}

static void test_header_is_exact(void **state)
{
    fx *f = *state;
    char *h = part(f->tok.ptr, 0);
    assert_string_equal(h, "{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"JWT\"}");
    free(h);
}

static void test_claims_are_sub_aud_exp_iat(void **state)
{
    fx *f = *state;
    char *c = part(f->tok.ptr, 1);
    assert_string_equal(c, "{\"sub\":\"" PKI_ID "\",\"aud\":[\"" AUD
                           "\"],\"exp\":1800000300,\"iat\":1800000000}");
    free(c);
}

static void test_signature_is_raw_r_s(void **state)
{
    fx *f = *state;
    const char *sig = strrchr(f->tok.ptr, '.') + 1;
    assert_int_equal(strlen(sig), 86); /* 64 bytes, base64url, no padding */
    assert_null(strchr(f->tok.ptr, '='));
}

static void test_default_ttl_five_minutes(void **state)
{
    fx *f = *state;
    ward_buf t;
    ward_buf_init(&t);
    const char *aud[] = {AUD};
    assert_int_equal(ident_jwt_sign(f->key, "k1", PKI_ID, aud, 1, T0, 0, &t, NULL), 0);
    char *c = part(t.ptr, 1);
    assert_true(contains(c, "\"exp\":1800000300"));
    free(c);
    ward_buf_dispose(&t);
}

static void test_crafted_token_accepted(void **state)
{
    /* the test's own ES256 signer agrees with the implementation */
    fx *f = *state;
    char *t = craft(HDR, GOOD_CLAIMS, f->key, NULL);
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(verify(f, t, T0, AUD, id, &why), 0);
    free(t);
}

static void test_single_string_aud_accepted(void **state)
{
    fx *f = *state;
    char *t = craft(HDR, CLAIMS(PKI_ID, "\"" AUD "\"", "1800000300"), f->key, NULL);
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(verify(f, t, T0, AUD, id, &why), 0);
    free(t);
}

static void test_typ_jose_accepted(void **state)
{
    fx *f = *state;
    char *t =
        craft("{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"JOSE\"}", GOOD_CLAIMS, f->key, NULL);
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(verify(f, t, T0, AUD, id, &why), 0);
    free(t);
}

static void test_alg_none_refused(void **state)
{
    fx *f = *state;
    char *t = craft("{\"alg\":\"none\",\"typ\":\"JWT\"}", GOOD_CLAIMS, NULL, NULL);
    expect_refused(f, t, "\"none\" refused");
    free(t);
}

static void test_hs256_refused(void **state)
{
    fx *f = *state;
    /* the classic confusion: HMAC keyed with the public key's bytes */
    char *t = craft("{\"alg\":\"HS256\",\"kid\":\"k1\",\"typ\":\"JWT\"}", GOOD_CLAIMS, NULL, "k1");
    expect_refused(f, t, "HMAC");
    free(t);
}

static void test_rs256_refused(void **state)
{
    fx *f = *state;
    char *t =
        craft("{\"alg\":\"RS256\",\"kid\":\"k1\",\"typ\":\"JWT\"}", GOOD_CLAIMS, f->key, NULL);
    expect_refused(f, t, "ES256 only");
    free(t);
}

static void test_missing_kid_refused(void **state)
{
    fx *f = *state;
    char *t = craft("{\"alg\":\"ES256\",\"typ\":\"JWT\"}", GOOD_CLAIMS, f->key, NULL);
    expect_refused(f, t, "no kid");
    free(t);
}

static void test_unknown_kid_refused(void **state)
{
    fx *f = *state;
    char *t =
        craft("{\"alg\":\"ES256\",\"kid\":\"k2\",\"typ\":\"JWT\"}", GOOD_CLAIMS, f->key, NULL);
    expect_refused(f, t, "unknown kid");
    free(t);
}

static void test_other_key_refused(void **state)
{
    fx *f = *state;
    EVP_PKEY *k = pki_ec("P-256");
    char *t = craft(HDR, GOOD_CLAIMS, k, NULL);
    expect_refused(f, t, "signature does not verify");
    free(t);
    EVP_PKEY_free(k);
}

static void test_tampered_payload_refused(void **state)
{
    fx *f = *state;
    /* the real signature, over claims that named another workload */
    char *t =
        craft(HDR, CLAIMS("spiffe://example.org/ns/shop/sa/admin", "[\"" AUD "\"]", "1800000300"),
              NULL, NULL);
    const char *sig = strrchr(f->tok.ptr, '.') + 1;
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_puts(&b, t);
    ward_buf_puts(&b, sig);
    expect_refused(f, b.ptr, "signature does not verify");
    ward_buf_dispose(&b);
    free(t);
}

static void test_der_signature_refused(void **state)
{
    fx *f = *state;
    char *t = craft(HDR, GOOD_CLAIMS, NULL, NULL);
    unsigned char der[72] = {0x30, 0x44, 0x02, 0x20};
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_puts(&b, t);
    ident_b64_encode(der, 70, true, &b);
    expect_refused(f, b.ptr, "not 64");
    ward_buf_dispose(&b);
    free(t);
}

static void test_wrong_audience_refused(void **state)
{
    fx *f = *state;
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_not_equal(verify(f, f->tok.ptr, T0, "spiffe://example.org/other", id, &why), 0);
    assert_true(contains(why.msg, "is not in the JWT's aud"));
}

static void test_expired_refused(void **state)
{
    fx *f = *state;
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(verify(f, f->tok.ptr, T0 + 299, AUD, id, &why), 0);
    assert_int_not_equal(verify(f, f->tok.ptr, T0 + 300, AUD, id, &why), 0); /* exp <= now */
    assert_true(contains(why.msg, "expired"));
}

static void test_missing_exp_refused(void **state)
{
    fx *f = *state;
    char *t = craft(HDR, "{\"sub\":\"" PKI_ID "\",\"aud\":[\"" AUD "\"]}", f->key, NULL);
    expect_refused(f, t, "no exp");
    free(t);
}

static void test_missing_aud_refused(void **state)
{
    fx *f = *state;
    char *t = craft(HDR, "{\"sub\":\"" PKI_ID "\",\"exp\":1800000300}", f->key, NULL);
    expect_refused(f, t, "no aud");
    free(t);
}

static void test_nbf_in_future_refused(void **state)
{
    fx *f = *state;
    char *t = craft(
        HDR, "{\"sub\":\"" PKI_ID "\",\"aud\":\"" AUD "\",\"exp\":1800000300,\"nbf\":1800000100}",
        f->key, NULL);
    expect_refused(f, t, "not yet valid");
    free(t);
}

static void test_sub_other_trust_domain_refused(void **state)
{
    fx *f = *state;
    char *t = craft(HDR, CLAIMS("spiffe://other.org/ns/shop/sa/x", "[\"" AUD "\"]", "1800000300"),
                    f->key, NULL);
    expect_refused(f, t, "trust domain other.org is not example.org");
    free(t);
}

static void test_sub_not_spiffe_refused(void **state)
{
    fx *f = *state;
    char *t = craft(HDR, CLAIMS("payments", "[\"" AUD "\"]", "1800000300"), f->key, NULL);
    expect_refused(f, t, "is not a SPIFFE ID");
    free(t);
}

static void test_crit_header_refused(void **state)
{
    fx *f = *state;
    char *t =
        craft("{\"alg\":\"ES256\",\"kid\":\"k1\",\"crit\":[\"exp\"]}", GOOD_CLAIMS, f->key, NULL);
    expect_refused(f, t, "crit");
    free(t);
}

static void test_bad_typ_refused(void **state)
{
    fx *f = *state;
    char *t =
        craft("{\"alg\":\"ES256\",\"kid\":\"k1\",\"typ\":\"at+jwt\"}", GOOD_CLAIMS, f->key, NULL);
    expect_refused(f, t, "typ");
    free(t);
}

static void test_duplicate_header_member_refused(void **state)
{
    fx *f = *state;
    char *t =
        craft("{\"alg\":\"ES256\",\"kid\":\"k1\",\"alg\":\"none\"}", GOOD_CLAIMS, f->key, NULL);
    expect_refused(f, t, "header is not");
    free(t);
}

static void test_malformed_compact_form_refused(void **state)
{
    fx *f = *state;
    expect_refused(f, "abc", "compact JWS");
    expect_refused(f, "a.b", "compact JWS");
    expect_refused(f, "a.b.c.d", "compact JWS");
    expect_refused(f, "..", "header is not");
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_puts(&b, f->tok.ptr);
    ward_buf_puts(&b, ".x");
    expect_refused(f, b.ptr, "compact JWS");
    ward_buf_dispose(&b);
}

static void test_padded_signature_refused(void **state)
{
    fx *f = *state;
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_puts(&b, f->tok.ptr);
    ward_buf_puts(&b, "==");
    expect_refused(f, b.ptr, "signature");
    ward_buf_dispose(&b);
}

static void test_oversized_refused(void **state)
{
    fx *f = *state;
    char *big = malloc(9000);
    memset(big, 'A', 8999);
    big[8999] = '\0';
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(verify(f, big, T0, AUD, id, &why), WARD_ELIMIT);
    assert_true(contains(why.msg, "larger than 8192"));
    free(big);
}

static void test_sign_refuses_bad_input(void **state)
{
    fx *f = *state;
    ward_buf t;
    ward_buf_init(&t);
    ward_err err;
    const char *aud[] = {AUD};
    const char *empty[] = {""};
    EVP_PKEY *p384 = pki_ec("P-384");
    assert_int_equal(ident_jwt_sign(p384, "k1", PKI_ID, aud, 1, T0, 0, &t, &err), WARD_EINVAL);
    assert_true(contains(err.msg, "P-256"));
    assert_int_equal(ident_jwt_sign(f->key, "", PKI_ID, aud, 1, T0, 0, &t, &err), WARD_EINVAL);
    assert_int_equal(ident_jwt_sign(f->key, "k1", PKI_ID, aud, 0, T0, 0, &t, &err), WARD_EINVAL);
    assert_int_equal(ident_jwt_sign(f->key, "k1", PKI_ID, empty, 1, T0, 0, &t, &err), WARD_EINVAL);
    assert_int_equal(ident_jwt_sign(f->key, "k1", "spiffe://example.org", aud, 1, T0, 0, &t, &err),
                     WARD_EINVAL);
    assert_true(contains(err.msg, "no path"));
    assert_int_equal(ident_jwt_sign(f->key, "k1", "spiffe://x/a/../b", aud, 1, T0, 0, &t, &err),
                     WARD_EINVAL);
    assert_int_equal(t.len, 0);
    ward_buf_dispose(&t);
    EVP_PKEY_free(p384);
}

static void test_audience_is_escaped(void **state)
{
    fx *f = *state;
    ward_buf t;
    ward_buf_init(&t);
    const char *aud[] = {"a\"b\\c", AUD};
    assert_int_equal(ident_jwt_sign(f->key, "k1", PKI_ID, aud, 2, T0, 60, &t, NULL), 0);
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(verify(f, t.ptr, T0, "a\"b\\c", id, &why), 0);
    assert_int_equal(verify(f, t.ptr, T0, AUD, id, &why), 0);
    ward_buf_dispose(&t);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_round_trip),
        T(test_header_is_exact),
        T(test_claims_are_sub_aud_exp_iat),
        T(test_signature_is_raw_r_s),
        T(test_default_ttl_five_minutes),
        T(test_crafted_token_accepted),
        T(test_single_string_aud_accepted),
        T(test_typ_jose_accepted),
        T(test_alg_none_refused),
        T(test_hs256_refused),
        T(test_rs256_refused),
        T(test_missing_kid_refused),
        T(test_unknown_kid_refused),
        T(test_other_key_refused),
        T(test_tampered_payload_refused),
        T(test_der_signature_refused),
        T(test_wrong_audience_refused),
        T(test_expired_refused),
        T(test_missing_exp_refused),
        T(test_missing_aud_refused),
        T(test_nbf_in_future_refused),
        T(test_sub_other_trust_domain_refused),
        T(test_sub_not_spiffe_refused),
        T(test_crit_header_refused),
        T(test_bad_typ_refused),
        T(test_duplicate_header_member_refused),
        T(test_malformed_compact_form_refused),
        T(test_padded_signature_refused),
        T(test_oversized_refused),
        T(test_sign_refuses_bad_input),
        T(test_audience_is_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
