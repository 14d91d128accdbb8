/* test_bundle.c - trust bundles: SPIFFE bundle JSON both ways, strict parsing, PEM, refs */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>

#include <cjson/cJSON.h>

#include <openssl/core_names.h>

#include "identity/identity_int.h"
#include "tests/unit/identity/pki.h"

typedef struct fx {
    EVP_PKEY *ca_key, *jwt_key;
    X509 *ca;
    ident_bundle *b;
    ward_buf json;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->ca_key = pki_ec("P-256");
    f->jwt_key = pki_ec("P-256");
    f->ca = pki_ca("Test CA", "example.org", f->ca_key, NULL, NULL, T0 - 86400, T0 + 86400);
    assert_int_equal(ident_bundle_new("example.org", &f->b, NULL), 0);
    assert_int_equal(ident_bundle_add_x509(f->b, f->ca), 0);
    assert_int_equal(ident_bundle_add_jwt(f->b, "kid-1", f->jwt_key), 0);
    ident_bundle_set_sequence(f->b, 7);
    ident_bundle_set_refresh_hint(f->b, 120);
    ward_buf_init(&f->json);
    assert_int_equal(ident_bundle_to_json(f->b, &f->json), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    ward_buf_dispose(&f->json);
    ident_bundle_unref(f->b);
    X509_free(f->ca);
    EVP_PKEY_free(f->ca_key);
    EVP_PKEY_free(f->jwt_key);
    free(f);
    return 0;
}

static int parse(const char *json, ident_bundle **out, ward_err *err)
{
    ward_err_clear(err);
    return ident_bundle_from_json("example.org", json, strlen(json), out, err);
}

/* The x5c value of the fixture's CA (base64 DER), for hand-written bundles. */
static char *x5c_of(fx *f)
{
    cJSON *j = cJSON_Parse(f->json.ptr);
    cJSON *k0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "keys"), 0);
    char *s = strdup(cJSON_GetArrayItem(cJSON_GetObjectItem(k0, "x5c"), 0)->valuestring);
    cJSON_Delete(j);
    return s;
}

static char *member_of(fx *f, int key, const char *name)
{
    cJSON *j = cJSON_Parse(f->json.ptr);
    cJSON *k = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "keys"), key);
    char *s = strdup(cJSON_GetObjectItem(k, name)->valuestring);
    cJSON_Delete(j);
    return s;
}

static void test_new_refuses_bad_trust_domain(void **state)
{
    ident_bundle *b = NULL;
    ward_err err;
    assert_int_equal(ident_bundle_new("Example.org", &b, &err), WARD_EINVAL);
    assert_null(b);
    assert_int_equal(ident_bundle_new("", &b, &err), WARD_EINVAL);
    assert_int_equal(ident_bundle_new("example.org:443", &b, &err), WARD_EINVAL);
}

static void test_json_has_spiffe_format(void **state)
{
    fx *f = *state;
    cJSON *j = cJSON_Parse(f->json.ptr);
    assert_non_null(j);
    assert_int_equal((int)cJSON_GetObjectItem(j, "spiffe_sequence")->valuedouble, 7);
    assert_int_equal((int)cJSON_GetObjectItem(j, "spiffe_refresh_hint")->valuedouble, 120);
    cJSON *keys = cJSON_GetObjectItem(j, "keys");
    assert_int_equal(cJSON_GetArraySize(keys), 2);
    cJSON *x = cJSON_GetArrayItem(keys, 0);
    assert_string_equal(cJSON_GetObjectItem(x, "use")->valuestring, "x509-svid");
    assert_string_equal(cJSON_GetObjectItem(x, "kty")->valuestring, "EC");
    assert_string_equal(cJSON_GetObjectItem(x, "crv")->valuestring, "P-256");
    assert_int_equal(strlen(cJSON_GetObjectItem(x, "x")->valuestring), 43); /* 32 bytes, unpadded */
    assert_int_equal(strlen(cJSON_GetObjectItem(x, "y")->valuestring), 43);
    assert_null(cJSON_GetObjectItem(x, "kid")); /* X509-SVID 6.1: no kid */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(x, "x5c")), 1);
    cJSON *w = cJSON_GetArrayItem(keys, 1);
    assert_string_equal(cJSON_GetObjectItem(w, "use")->valuestring, "jwt-svid");
    assert_string_equal(cJSON_GetObjectItem(w, "kid")->valuestring, "kid-1");
    assert_string_equal(cJSON_GetObjectItem(w, "crv")->valuestring, "P-256");
    assert_null(cJSON_GetObjectItem(w, "x5c"));
    cJSON_Delete(j);
}

static void test_json_round_trip(void **state)
{
    fx *f = *state;
    ident_bundle *b;
    ward_err err;
    assert_int_equal(parse(f->json.ptr, &b, &err), 0);
    assert_string_equal(ident_bundle_trust_domain(b), "example.org");
    assert_int_equal(ident_bundle_sequence(b), 7);
    assert_int_equal(ident_bundle_x509_count(b), 1);
    assert_int_equal(X509_cmp(ident_bundle_x509(b, 0), f->ca), 0);
    assert_null(ident_bundle_x509(b, 1));
    ward_buf again;
    ward_buf_init(&again);
    assert_int_equal(ident_bundle_to_json(b, &again), 0);
    assert_string_equal(again.ptr, f->json.ptr);
    ward_buf_dispose(&again);
    ident_bundle_unref(b);
}

static void test_rsa_keys_round_trip(void **state)
{
    EVP_PKEY *rk = pki_rsa(2048);
    X509 *rca = pki_ca("RSA CA", "example.org", rk, NULL, NULL, T0, T0 + 10);
    ident_bundle *b, *b2;
    ward_err err;
    ward_buf j1, j2;
    ward_buf_init(&j1);
    ward_buf_init(&j2);
    assert_int_equal(ident_bundle_new("example.org", &b, NULL), 0);
    assert_int_equal(ident_bundle_add_x509(b, rca), 0);
    assert_int_equal(ident_bundle_add_jwt(b, "rsa", rk), 0);
    assert_int_equal(ident_bundle_to_json(b, &j1), 0);
    assert_true(contains(j1.ptr, "\"kty\":\"RSA\""));
    assert_true(contains(j1.ptr, "\"e\":\"AQAB\""));
    assert_int_equal(parse(j1.ptr, &b2, &err), 0);
    assert_int_equal(ident_bundle_to_json(b2, &j2), 0);
    assert_string_equal(j1.ptr, j2.ptr);
    ward_buf_dispose(&j1);
    ward_buf_dispose(&j2);
    ident_bundle_unref(b);
    ident_bundle_unref(b2);
    X509_free(rca);
    EVP_PKEY_free(rk);
}

static void test_bundle_never_holds_private_keys(void **state)
{
    fx *f = *state;
    /* the fixture added a private key pair; the bundle kept only its public half */
    EVP_PKEY *k = ident_bundle_jwt_key(f->b, "kid-1");
    assert_non_null(k);
    assert_int_equal(EVP_PKEY_eq(k, f->jwt_key), 1);
    BIGNUM *priv = NULL;
    assert_int_not_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &priv), 1);
    assert_null(priv);
    ERR_clear_error();
}

static void test_unknown_use_ignored(void **state)
{
    fx *f = *state;
    char *x = member_of(f, 1, "x"), *y = member_of(f, 1, "y");
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"keys\":[{\"use\":\"wit-svid\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\","
             "\"y\":\"%s\"},{\"use\":\"jwt-svid\",\"kid\":\"a\",\"kty\":\"EC\",\"crv\":\"P-256\","
             "\"x\":\"%s\",\"y\":\"%s\"}]}",
             x, y, x, y);
    ident_bundle *b;
    ward_err err;
    assert_int_equal(parse(json, &b, &err), 0);
    ward_buf out;
    ward_buf_init(&out);
    ident_bundle_to_json(b, &out);
    assert_null(strstr(out.ptr, "wit-svid"));
    assert_true(contains(out.ptr, "\"kid\":\"a\""));
    ward_buf_dispose(&out);
    ident_bundle_unref(b);
    free(x);
    free(y);
}

static void test_unknown_key_type_ignored(void **state)
{
    ident_bundle *b;
    ward_err err;
    assert_int_equal(parse("{\"keys\":[{\"use\":\"jwt-svid\",\"kid\":\"k\",\"kty\":\"OKP\","
                           "\"crv\":\"Ed25519\",\"x\":\"AAAA\"}]}",
                           &b, &err),
                     0);
    assert_int_equal(ident_bundle_x509_count(b), 0);
    ident_bundle_unref(b);
}

static void test_x509_entry_without_x5c_ignored(void **state)
{
    fx *f = *state;
    char *x = member_of(f, 0, "x"), *y = member_of(f, 0, "y");
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"keys\":[{\"use\":\"x509-svid\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\","
             "\"y\":\"%s\",\"x5c\":[]}],\"spiffe_sequence\":1}",
             x, y);
    ident_bundle *b;
    ward_err err;
    assert_int_equal(parse(json, &b, &err), 0);
    assert_int_equal(ident_bundle_x509_count(b), 0);
    ident_bundle_unref(b);
    free(x);
    free(y);
}

static void test_empty_keys_accepted(void **state)
{
    ident_bundle *b;
    ward_err err;
    assert_int_equal(parse("{\"keys\":[]}", &b, &err), 0);
    assert_int_equal(ident_bundle_sequence(b), 0);
    ident_bundle_unref(b);
}

static void expect_bad(const char *json, const char *reason)
{
    ident_bundle *b = NULL;
    ward_err err;
    assert_int_not_equal(parse(json, &b, &err), 0);
    assert_null(b);
    if (reason != NULL)
        assert_true(contains(err.msg, reason));
}

static void test_malformed_documents_refused(void **state)
{
    expect_bad("", "not a JSON object");
    expect_bad("[]", "not a JSON object");
    expect_bad("{\"keys\":[]} x", "not a JSON object");
    expect_bad("{\"keys\":[],\"keys\":[]}", "not a JSON object"); /* duplicate member */
    expect_bad("{}", "no \"keys\"");
    expect_bad("{\"keys\":{}}", "no \"keys\"");
    expect_bad("{\"keys\":[1]}", "keys[0]: not an object");
    expect_bad("{\"keys\":[{\"kty\":\"EC\"}]}", "keys[0]: \"use\" missing");
    expect_bad("{\"keys\":[{\"use\":\"x509-svid\"}]}", "keys[0]: \"kty\" missing");
    expect_bad("{\"keys\":[],\"spiffe_sequence\":-1}", "spiffe_sequence");
    expect_bad("{\"keys\":[],\"spiffe_sequence\":1.5}", "spiffe_sequence");
    expect_bad("{\"keys\":[],\"spiffe_refresh_hint\":\"300\"}", "spiffe_refresh_hint");
}

static void test_malformed_x5c_refused(void **state)
{
    fx *f = *state;
    char *x = member_of(f, 0, "x"), *y = member_of(f, 0, "y");
    char json[2048];
    const char *bad[] = {"\"!!!!\"", "\"AAAA\"", "7"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(json, sizeof(json),
                 "{\"keys\":[{\"use\":\"x509-svid\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\","
                 "\"y\":\"%s\",\"x5c\":[%s]}]}",
                 x, y, bad[i]);
        expect_bad(json, "x5c");
    }
    free(x);
    free(y);
}

static void test_key_not_matching_x5c_refused(void **state)
{
    fx *f = *state;
    char *x5c = x5c_of(f);
    char *x = member_of(f, 1, "x"), *y = member_of(f, 1, "y"); /* the JWT key's point */
    char json[4096];
    snprintf(json, sizeof(json),
             "{\"keys\":[{\"use\":\"x509-svid\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\","
             "\"y\":\"%s\",\"x5c\":[\"%s\"]}]}",
             x, y, x5c);
    expect_bad(json, "do not match");
    free(x5c);
    free(x);
    free(y);
}

static void test_jwt_key_without_kid_refused(void **state)
{
    fx *f = *state;
    char *x = member_of(f, 1, "x"), *y = member_of(f, 1, "y");
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"keys\":[{\"use\":\"jwt-svid\",\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\","
             "\"y\":\"%s\"}]}",
             x, y);
    expect_bad(json, "kid");
    free(x);
    free(y);
}

static void test_point_off_curve_refused(void **state)
{
    fx *f = *state;
    char *x = member_of(f, 1, "x");
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"keys\":[{\"use\":\"jwt-svid\",\"kid\":\"k\",\"kty\":\"EC\",\"crv\":\"P-256\","
             "\"x\":\"%s\",\"y\":\"%s\"}]}",
             x, x);
    expect_bad(json, "not on curve");
    free(x);
}

static void test_short_coordinates_refused(void **state)
{
    expect_bad("{\"keys\":[{\"use\":\"jwt-svid\",\"kid\":\"k\",\"kty\":\"EC\",\"crv\":\"P-256\","
               "\"x\":\"AAAA\",\"y\":\"AAAA\"}]}",
               "32 bytes");
}

static void test_padded_base64url_refused(void **state)
{
    fx *f = *state;
    char *x = member_of(f, 1, "x"), *y = member_of(f, 1, "y");
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"keys\":[{\"use\":\"jwt-svid\",\"kid\":\"k\",\"kty\":\"EC\",\"crv\":\"P-256\","
             "\"x\":\"%s=\",\"y\":\"%s\"}]}",
             x, y);
    expect_bad(json, "base64url");
    free(x);
    free(y);
}

static void test_duplicate_kid_refused(void **state)
{
    fx *f = *state;
    assert_int_equal(ident_bundle_add_jwt(f->b, "kid-1", f->ca_key), WARD_EINVAL);
    char *x = member_of(f, 1, "x"), *y = member_of(f, 1, "y");
    char json[1024];
    snprintf(json, sizeof(json),
             "{\"keys\":[{\"use\":\"jwt-svid\",\"kid\":\"k\",\"kty\":\"EC\",\"crv\":\"P-256\","
             "\"x\":\"%s\",\"y\":\"%s\"},{\"use\":\"jwt-svid\",\"kid\":\"k\",\"kty\":\"EC\","
             "\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}",
             x, y, x, y);
    expect_bad(json, "duplicate kid");
    free(x);
    free(y);
}

static void test_oversized_refused(void **state)
{
    size_t n = (1u << 20) + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    ident_bundle *b;
    ward_err err;
    assert_int_equal(ident_bundle_from_json("example.org", big, n, &b, &err), WARD_ELIMIT);
    assert_int_equal(ident_bundle_from_pem("example.org", big, n, &b, &err), WARD_ELIMIT);
    free(big);
}

static void test_embedded_nul_refused(void **state)
{
    ident_bundle *b;
    ward_err err;
    static const char doc[] = "{\"keys\":[]}\0garbage";
    assert_int_not_equal(ident_bundle_from_json("example.org", doc, sizeof(doc) - 1, &b, &err), 0);
}

static void test_duplicate_authority_added_once(void **state)
{
    fx *f = *state;
    assert_int_equal(ident_bundle_add_x509(f->b, f->ca), 0);
    assert_int_equal(ident_bundle_x509_count(f->b), 1);
}

static void test_weak_rsa_refused(void **state)
{
    fx *f = *state;
    EVP_PKEY *rk = pki_rsa(1024);
    X509 *rca = pki_ca("weak", "example.org", rk, NULL, NULL, T0, T0 + 10);
    assert_int_equal(ident_bundle_add_x509(f->b, rca), WARD_EINVAL);
    assert_int_equal(ident_bundle_add_jwt(f->b, "weak", rk), WARD_EINVAL);
    X509_free(rca);
    EVP_PKEY_free(rk);
}

static void test_pem_round_trip(void **state)
{
    fx *f = *state;
    EVP_PKEY *k2 = pki_ec("P-384");
    X509 *ca2 = pki_ca("Second", "example.org", k2, NULL, NULL, T0, T0 + 10);
    assert_int_equal(ident_bundle_add_x509(f->b, ca2), 0);
    ward_buf pem;
    ward_buf_init(&pem);
    assert_int_equal(ident_bundle_to_pem(f->b, &pem), 0);
    ident_bundle *b;
    ward_err err;
    assert_int_equal(ident_bundle_from_pem("example.org", pem.ptr, pem.len, &b, &err), 0);
    assert_int_equal(ident_bundle_x509_count(b), 2);
    assert_int_equal(X509_cmp(ident_bundle_x509(b, 0), f->ca), 0);
    assert_int_equal(X509_cmp(ident_bundle_x509(b, 1), ca2), 0);
    ident_bundle_unref(b);
    ward_buf_dispose(&pem);
    X509_free(ca2);
    EVP_PKEY_free(k2);
}

static void test_pem_garbage_refused(void **state)
{
    ident_bundle *b = NULL;
    ward_err err;
    const char *none = "hello";
    assert_int_not_equal(ident_bundle_from_pem("example.org", none, strlen(none), &b, &err), 0);
    assert_true(contains(err.msg, "no PEM certificate"));
    const char *bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_int_not_equal(ident_bundle_from_pem("example.org", bad, strlen(bad), &b, &err), 0);
    assert_null(b);
}

static void test_pem_second_certificate_malformed_refused(void **state)
{
    fx *f = *state;
    ward_buf pem;
    ward_buf_init(&pem);
    assert_int_equal(ident_bundle_to_pem(f->b, &pem), 0);
    ward_buf_puts(&pem, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    ident_bundle *b = NULL;
    ward_err err;
    assert_int_not_equal(ident_bundle_from_pem("example.org", pem.ptr, pem.len, &b, &err), 0);
    assert_true(contains(err.msg, "certificate 2"));
    ward_buf_dispose(&pem);
}

static void *ref_storm(void *arg)
{
    ident_bundle *b = arg;
    for (int i = 0; i < 100000; i++) {
        ident_bundle_ref(b);
        ident_bundle_unref(b);
    }
    ident_bundle_unref(b); /* the reference the thread was given */
    return NULL;
}

static void test_refcount_is_thread_safe(void **state)
{
    fx *f = *state;
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ident_bundle_ref(f->b);
        assert_int_equal(pthread_create(&th[i], NULL, ref_storm, f->b), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    /* still alive: the fixture's reference remains */
    assert_int_equal(ident_bundle_x509_count(f->b), 1);
}

/* ---- RSA keys: one deterministic rule whichever way they arrive (found by fuzz_bundle) ---- */

static char *fixture(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof(path), "tests/unit/identity/data/%s", name);
    char *data;
    ward_err err;
    if (ward_file_read(path, 0, &data, len, &err) != 0)
        fail_msg("%s", err.msg);
    return data;
}

static void test_rsa_over_8192_bits_refused_from_pem(void **state)
{
    (void)state;
    size_t len;
    char *pem = fixture("rsa8200.pem", &len);
    ident_bundle *b = NULL;
    ward_err err;
    assert_true(ident_bundle_from_pem("example.org", pem, len, &b, &err) < 0);
    assert_null(b);
    free(pem);
}

static void test_rsa_pem_and_json_agree(void **state)
{
    (void)state;
    size_t len;
    char *pem = fixture("rsa_div3.pem", &len);
    ident_bundle *b = NULL;
    ward_err err;
    /* a modulus divisible by 3: whatever PEM accepts, our own JSON of it must load */
    int rc = ident_bundle_from_pem("example.org", pem, len, &b, &err);
    if (rc == 0) {
        ward_buf json;
        ward_buf_init(&json);
        assert_int_equal(ident_bundle_to_json(b, &json), 0);
        ident_bundle *again = NULL;
        assert_int_equal(ident_bundle_from_json("example.org", json.ptr, json.len, &again, &err), 0);
        ident_bundle_unref(again);
        ward_buf_dispose(&json);
        ident_bundle_unref(b);
    }
    free(pem);
}

static void test_rsa_verdict_is_deterministic(void **state)
{
    (void)state;
    size_t len;
    char *json = fixture("flaky_rsa_jwk.json", &len);
    ward_err err;
    ident_bundle *b = NULL;
    int first = ident_bundle_from_json("example.org", json, len, &b, &err);
    ident_bundle_unref(b);
    for (int i = 0; i < 200; i++) {
        b = NULL;
        assert_int_equal(ident_bundle_from_json("example.org", json, len, &b, &err), first);
        ident_bundle_unref(b);
    }
    free(json);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_new_refuses_bad_trust_domain),
        T(test_json_has_spiffe_format),
        T(test_json_round_trip),
        T(test_rsa_keys_round_trip),
        T(test_bundle_never_holds_private_keys),
        T(test_unknown_use_ignored),
        T(test_unknown_key_type_ignored),
        T(test_x509_entry_without_x5c_ignored),
        T(test_empty_keys_accepted),
        T(test_malformed_documents_refused),
        T(test_malformed_x5c_refused),
        T(test_key_not_matching_x5c_refused),
        T(test_jwt_key_without_kid_refused),
        T(test_point_off_curve_refused),
        T(test_short_coordinates_refused),
        T(test_padded_base64url_refused),
        T(test_duplicate_kid_refused),
        T(test_oversized_refused),
        T(test_embedded_nul_refused),
        T(test_duplicate_authority_added_once),
        T(test_weak_rsa_refused),
        T(test_pem_round_trip),
        T(test_pem_garbage_refused),
        T(test_pem_second_certificate_malformed_refused),
        T(test_refcount_is_thread_safe),
        cmocka_unit_test(test_rsa_over_8192_bits_refused_from_pem),
        cmocka_unit_test(test_rsa_pem_and_json_agree),
        cmocka_unit_test(test_rsa_verdict_is_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
