/* test_svid.c - X509-SVID validation: every leaf rule, chain to the bundle, trust domains */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/identity/pki.h"

typedef struct fx {
    EVP_PKEY *ca_key, *leaf_key;
    X509 *ca;
    ident_bundle *bundle;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->ca_key = pki_ec("P-256");
    f->leaf_key = pki_ec("P-256");
    f->ca = pki_ca("Test CA", "example.org", f->ca_key, NULL, NULL, T0 - 86400, T0 + 86400);
    assert_int_equal(ident_bundle_new("example.org", &f->bundle, NULL), 0);
    assert_int_equal(ident_bundle_add_x509(f->bundle, f->ca), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    ident_bundle_unref(f->bundle);
    X509_free(f->ca);
    EVP_PKEY_free(f->ca_key);
    EVP_PKEY_free(f->leaf_key);
    free(f);
    return 0;
}

/* Verifies a leaf made with o (signed by the fixture CA) at T0; returns rc, why in why. */
static int verify_leaf(fx *f, const pki_leaf *o, time_t now, char *id, ward_err *why)
{
    X509 *leaf = pki_leaf_make(f->leaf_key, f->ca, f->ca_key, o);
    STACK_OF(X509) *chain = pki_chain(leaf, NULL);
    ward_err_clear(why);
    int rc = ident_svid_verify(chain, f->bundle, now, id, why);
    sk_X509_free(chain);
    X509_free(leaf);
    return rc;
}

static void expect_refused(fx *f, const pki_leaf *o, const char *reason)
{
    char id[IDENT_ID_MAX] = "";
    ward_err why;
    assert_int_not_equal(verify_leaf(f, o, T0, id, &why), 0);
    assert_true(contains(why.msg, reason));
    assert_string_equal(id, "");
}

static void test_valid_svid_returns_id(void **state)
{
    fx *f = *state;
    pki_leaf o = {0};
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(verify_leaf(f, &o, T0, id, &why), 0);
    assert_string_equal(id, PKI_ID);
}

static void test_check_leaf_alone(void **state)
{
    fx *f = *state;
    pki_leaf o = {0};
    X509 *leaf = pki_leaf_make(f->leaf_key, f->ca, f->ca_key, &o);
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(ident_svid_check_leaf(leaf, id, &why), 0);
    assert_string_equal(id, PKI_ID);
    X509_free(leaf);
}

static void test_extra_dns_san_allowed(void **state)
{
    pki_leaf o = {.dns = "payments.shop.svc"};
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(verify_leaf(*state, &o, T0, id, &why), 0);
}

static void test_two_uri_sans_refused(void **state)
{
    pki_leaf o = {.uris = {PKI_ID, "spiffe://example.org/ns/shop/sa/admin"}, .n_uris = 2};
    expect_refused(*state, &o, "has 2 URI SANs");
}

static void test_no_uri_san_refused(void **state)
{
    pki_leaf o = {.n_uris = -1, .dns = "payments.example.org"};
    expect_refused(*state, &o, "no URI SAN");
}

static void test_no_san_extension_refused(void **state)
{
    pki_leaf o = {.no_san = true};
    expect_refused(*state, &o, "no URI SAN");
}

static void test_duplicate_san_extension_refused(void **state)
{
    pki_leaf o = {.dup_san = true};
    expect_refused(*state, &o, "duplicate extensions");
}

static void test_non_spiffe_uri_refused(void **state)
{
    pki_leaf o = {.uris = {"https://example.org/ns/shop/sa/payments"}, .n_uris = 1};
    expect_refused(*state, &o, "is not a SPIFFE ID");
}

static void test_uppercase_trust_domain_refused(void **state)
{
    pki_leaf o = {.uris = {"spiffe://Example.org/ns/shop"}, .n_uris = 1};
    expect_refused(*state, &o, "must be lowercase");
}

static void test_root_id_refused(void **state)
{
    pki_leaf o = {.uris = {"spiffe://example.org"}, .n_uris = 1};
    expect_refused(*state, &o, "has no path");
}

static void test_ca_leaf_refused(void **state)
{
    pki_leaf o = {.bc = "critical,CA:TRUE", .ku = "critical,digitalSignature,keyCertSign"};
    expect_refused(*state, &o, "leaf is a CA");
}

static void test_missing_key_usage_refused(void **state)
{
    pki_leaf o = {.ku = ""};
    expect_refused(*state, &o, "no key usage");
}

static void test_non_critical_key_usage_refused(void **state)
{
    pki_leaf o = {.ku = "digitalSignature"};
    expect_refused(*state, &o, "key usage is not critical");
}

static void test_key_usage_without_digital_signature_refused(void **state)
{
    pki_leaf o = {.ku = "critical,keyEncipherment"};
    expect_refused(*state, &o, "lacks digitalSignature");
}

static void test_key_cert_sign_on_leaf_refused(void **state)
{
    pki_leaf o = {.ku = "critical,digitalSignature,keyCertSign"};
    expect_refused(*state, &o, "keyCertSign");
}

static void test_crl_sign_on_leaf_refused(void **state)
{
    pki_leaf o = {.ku = "critical,digitalSignature,cRLSign"};
    expect_refused(*state, &o, "cRLSign");
}

static void test_key_agreement_allowed(void **state)
{
    pki_leaf o = {.ku = "critical,digitalSignature,keyAgreement"};
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(verify_leaf(*state, &o, T0, id, &why), 0);
}

static void test_other_trust_domain_refused(void **state)
{
    pki_leaf o = {.uris = {"spiffe://other.org/ns/shop/sa/payments"}, .n_uris = 1};
    expect_refused(*state, &o, "trust domain other.org is not example.org");
}

static void test_expired_refused(void **state)
{
    fx *f = *state;
    pki_leaf o = {0};
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_not_equal(verify_leaf(f, &o, T0 + 3600, id, &why), 0);
    assert_true(contains(why.msg, "has expired"));
    assert_int_equal(verify_leaf(f, &o, T0 + 3599, id, &why), 0);
}

static void test_not_yet_valid_refused(void **state)
{
    fx *f = *state;
    pki_leaf o = {0};
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_not_equal(verify_leaf(f, &o, T0 - 11, id, &why), 0);
    assert_true(contains(why.msg, "not yet valid"));
}

static void test_expired_ca_refused(void **state)
{
    fx *f = *state;
    pki_leaf o = {.na = T0 + 2 * 86400};
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_not_equal(verify_leaf(f, &o, T0 + 86401, id, &why), 0);
    assert_true(contains(why.msg, "CA certificate at depth 1 has expired"));
}

static void test_unknown_ca_refused(void **state)
{
    fx *f = *state;
    EVP_PKEY *k = pki_ec("P-256");
    X509 *other = pki_ca("Other CA", "example.org", k, NULL, NULL, T0 - 86400, T0 + 86400);
    pki_leaf o = {0};
    X509 *leaf = pki_leaf_make(f->leaf_key, other, k, &o);
    STACK_OF(X509) *chain = pki_chain(leaf, NULL);
    ward_err why;
    char id[IDENT_ID_MAX];
    assert_int_not_equal(ident_svid_verify(chain, f->bundle, T0, id, &why), 0);
    assert_true(contains(why.msg, "signed by an unknown authority"));
    sk_X509_free(chain);
    X509_free(leaf);
    X509_free(other);
    EVP_PKEY_free(k);
}

static void test_forged_issuer_name_refused(void **state)
{
    fx *f = *state;
    /* Same issuer name as the bundle's CA, signed by another key. */
    EVP_PKEY *k = pki_ec("P-256");
    X509 *fake = pki_ca("Test CA", "example.org", k, NULL, NULL, T0 - 86400, T0 + 86400);
    pki_leaf o = {0};
    X509 *leaf = pki_leaf_make(f->leaf_key, fake, k, &o);
    STACK_OF(X509) *chain = pki_chain(leaf, NULL);
    ward_err why;
    assert_int_not_equal(ident_svid_verify(chain, f->bundle, T0, NULL, &why), 0);
    assert_true(contains(why.msg, "signed by an unknown authority"));
    sk_X509_free(chain);
    X509_free(leaf);
    X509_free(fake);
    EVP_PKEY_free(k);
}

static void test_self_made_issuer_refused(void **state)
{
    fx *f = *state;
    pki_leaf o = {0};
    /* a leaf issued under a self-made "CA" that is not in the bundle */
    X509 *self = pki_ca("self", NULL, f->leaf_key, NULL, NULL, T0 - 10, T0 + 10);
    X509 *leaf = pki_leaf_make(f->leaf_key, self, f->leaf_key, &o);
    STACK_OF(X509) *chain = pki_chain(leaf, NULL);
    ward_err why;
    assert_int_not_equal(ident_svid_verify(chain, f->bundle, T0, NULL, &why), 0);
    assert_true(contains(why.msg, "unknown authority"));
    sk_X509_free(chain);
    X509_free(leaf);
    X509_free(self);
}

static void test_intermediate_chain_verifies(void **state)
{
    fx *f = *state;
    EVP_PKEY *ik = pki_ec("P-256");
    X509 *inter = pki_ca("Intermediate", "example.org", ik, f->ca, f->ca_key, T0 - 3600, T0 + 7200);
    pki_leaf o = {0};
    X509 *leaf = pki_leaf_make(f->leaf_key, inter, ik, &o);
    STACK_OF(X509) *chain = pki_chain(leaf, inter);
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(ident_svid_verify(chain, f->bundle, T0, id, &why), 0);
    assert_string_equal(id, PKI_ID);
    /* without the intermediate there is no path */
    STACK_OF(X509) *alone = pki_chain(leaf, NULL);
    assert_int_not_equal(ident_svid_verify(alone, f->bundle, T0, id, &why), 0);
    assert_true(contains(why.msg, "unknown authority"));
    sk_X509_free(alone);
    sk_X509_free(chain);
    X509_free(leaf);
    X509_free(inter);
    EVP_PKEY_free(ik);
}

static void test_intermediate_as_bundle_anchor(void **state)
{
    fx *f = *state;
    EVP_PKEY *ik = pki_ec("P-256");
    X509 *inter = pki_ca("Intermediate", "example.org", ik, f->ca, f->ca_key, T0 - 3600, T0 + 7200);
    ident_bundle *b;
    assert_int_equal(ident_bundle_new("example.org", &b, NULL), 0);
    assert_int_equal(ident_bundle_add_x509(b, inter), 0);
    pki_leaf o = {0};
    X509 *leaf = pki_leaf_make(f->leaf_key, inter, ik, &o);
    STACK_OF(X509) *chain = pki_chain(leaf, NULL);
    ward_err why;
    assert_int_equal(ident_svid_verify(chain, b, T0, NULL, &why), 0);
    /* but a leaf of the root is not trusted by a bundle holding only the intermediate */
    X509 *leaf2 = pki_leaf_make(f->leaf_key, f->ca, f->ca_key, &o);
    STACK_OF(X509) *chain2 = pki_chain(leaf2, NULL);
    assert_int_not_equal(ident_svid_verify(chain2, b, T0, NULL, &why), 0);
    sk_X509_free(chain2);
    X509_free(leaf2);
    sk_X509_free(chain);
    X509_free(leaf);
    ident_bundle_unref(b);
    X509_free(inter);
    EVP_PKEY_free(ik);
}

static void test_intermediate_that_is_not_a_ca_refused(void **state)
{
    fx *f = *state;
    /* a leaf SVID used to sign another "leaf" */
    pki_leaf o = {0};
    X509 *mid = pki_leaf_make(f->leaf_key, f->ca, f->ca_key, &o);
    EVP_PKEY *k = pki_ec("P-256");
    X509 *leaf = pki_leaf_make(k, mid, f->leaf_key, &o);
    STACK_OF(X509) *chain = pki_chain(leaf, mid);
    ward_err why;
    assert_int_not_equal(ident_svid_verify(chain, f->bundle, T0, NULL, &why), 0);
    sk_X509_free(chain);
    X509_free(leaf);
    X509_free(mid);
    EVP_PKEY_free(k);
}

static void test_empty_chain_refused(void **state)
{
    fx *f = *state;
    STACK_OF(X509) *chain = sk_X509_new_null();
    ward_err why;
    assert_int_not_equal(ident_svid_verify(chain, f->bundle, T0, NULL, &why), 0);
    assert_int_not_equal(ident_svid_verify(NULL, f->bundle, T0, NULL, &why), 0);
    sk_X509_free(chain);
}

static void test_bundle_without_authorities_refused(void **state)
{
    fx *f = *state;
    ident_bundle *b;
    assert_int_equal(ident_bundle_new("example.org", &b, NULL), 0);
    pki_leaf o = {0};
    X509 *leaf = pki_leaf_make(f->leaf_key, f->ca, f->ca_key, &o);
    STACK_OF(X509) *chain = pki_chain(leaf, NULL);
    ward_err why;
    assert_int_not_equal(ident_svid_verify(chain, b, T0, NULL, &why), 0);
    assert_true(contains(why.msg, "no X.509 authorities"));
    sk_X509_free(chain);
    X509_free(leaf);
    ident_bundle_unref(b);
}

static void test_other_domain_bundle_refused(void **state)
{
    fx *f = *state;
    /* the right CA, but published as another trust domain's bundle */
    ident_bundle *b;
    assert_int_equal(ident_bundle_new("other.org", &b, NULL), 0);
    assert_int_equal(ident_bundle_add_x509(b, f->ca), 0);
    pki_leaf o = {0};
    X509 *leaf = pki_leaf_make(f->leaf_key, f->ca, f->ca_key, &o);
    STACK_OF(X509) *chain = pki_chain(leaf, NULL);
    ward_err why;
    assert_int_not_equal(ident_svid_verify(chain, b, T0, NULL, &why), 0);
    assert_true(contains(why.msg, "trust domain example.org is not other.org"));
    sk_X509_free(chain);
    X509_free(leaf);
    ident_bundle_unref(b);
}

static void test_long_chain_refused(void **state)
{
    fx *f = *state;
    pki_leaf o = {0};
    X509 *leaf = pki_leaf_make(f->leaf_key, f->ca, f->ca_key, &o);
    STACK_OF(X509) *chain = sk_X509_new_null();
    for (int i = 0; i < 11; i++)
        sk_X509_push(chain, leaf);
    ward_err why;
    assert_int_equal(ident_svid_verify(chain, f->bundle, T0, NULL, &why), WARD_ELIMIT);
    sk_X509_free(chain);
    X509_free(leaf);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_valid_svid_returns_id),
        T(test_check_leaf_alone),
        T(test_extra_dns_san_allowed),
        T(test_two_uri_sans_refused),
        T(test_no_uri_san_refused),
        T(test_no_san_extension_refused),
        T(test_duplicate_san_extension_refused),
        T(test_non_spiffe_uri_refused),
        T(test_uppercase_trust_domain_refused),
        T(test_root_id_refused),
        T(test_ca_leaf_refused),
        T(test_missing_key_usage_refused),
        T(test_non_critical_key_usage_refused),
        T(test_key_usage_without_digital_signature_refused),
        T(test_key_cert_sign_on_leaf_refused),
        T(test_crl_sign_on_leaf_refused),
        T(test_key_agreement_allowed),
        T(test_other_trust_domain_refused),
        T(test_expired_refused),
        T(test_not_yet_valid_refused),
        T(test_expired_ca_refused),
        T(test_unknown_ca_refused),
        T(test_forged_issuer_name_refused),
        T(test_self_made_issuer_refused),
        T(test_intermediate_chain_verifies),
        T(test_intermediate_as_bundle_anchor),
        T(test_intermediate_that_is_not_a_ca_refused),
        T(test_empty_chain_refused),
        T(test_bundle_without_authorities_refused),
        T(test_other_domain_bundle_refused),
        T(test_long_chain_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
