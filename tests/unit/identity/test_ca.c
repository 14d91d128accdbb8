/* test_ca.c - the CA: persistence, CSR rejections, SVID contents, TTLs, rotation, upstream */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <sys/wait.h>

#include "identity/identity_int.h"
#include "tests/unit/identity/pki.h"

#define DAY 86400

typedef struct fx {
    char *dir;
    ident_ca_options opts;
    ident_ca *ca;
    EVP_PKEY *wl; /* the workload's key */
    ward_buf csr, pem;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));
    f->dir = pki_tmpdir();
    f->opts.trust_domain = "example.org";
    f->opts.data_dir = f->dir;
    ward_err err;
    assert_int_equal(ident_ca_open(&f->opts, T0, &f->ca, &err), 0);
    f->wl = pki_ec("P-256");
    ward_buf_init(&f->csr);
    ward_buf_init(&f->pem);
    pki_csr(f->wl, NULL, NULL, false, false, &f->csr);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    ident_ca_free(f->ca);
    EVP_PKEY_free(f->wl);
    ward_buf_dispose(&f->csr);
    ward_buf_dispose(&f->pem);
    pki_rmrf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

static void reopen(fx *f, time_t now)
{
    ward_err err;
    ident_ca_free(f->ca);
    f->ca = NULL;
    int rc = ident_ca_open(&f->opts, now, &f->ca, &err);
    if (rc != 0)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
}

/* Mints f->csr for id at now; on success parses the chain into *chain. */
static int mint(fx *f, const ward_buf *csr, const char *id, uint64_t ttl, time_t now,
                STACK_OF(X509) * *chain, ward_err *err)
{
    ward_buf_reset(&f->pem);
    ward_err_clear(err);
    int rc = ident_ca_sign_csr(f->ca, csr->ptr, csr->len, id, ttl, now, &f->pem, err);
    if (rc == 0 && chain != NULL)
        *chain = pki_parse_chain(f->pem.ptr, f->pem.len);
    else if (chain != NULL)
        *chain = NULL;
    return rc;
}

static X509 *mint_leaf(fx *f, uint64_t ttl, time_t now)
{
    STACK_OF(X509) * chain;
    ward_err err;
    int rc = mint(f, &f->csr, PKI_ID, ttl, now, &chain, &err);
    if (rc != 0)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    X509 *leaf = sk_X509_shift(chain);
    sk_X509_pop_free(chain, X509_free);
    return leaf;
}

static void expect_refused(fx *f, const ward_buf *csr, const char *id, const char *reason)
{
    ward_err err;
    assert_int_not_equal(mint(f, csr, id, 0, T0, NULL, &err), 0);
    assert_true(contains(err.msg, reason));
    assert_int_equal(f->pem.len, 0);
}

static time_t not_after(X509 *c)
{
    time_t t;
    assert_int_equal(ident_asn1_time_get(X509_get0_notAfter(c), &t), 0);
    return t;
}

static time_t not_before(X509 *c)
{
    time_t t;
    assert_int_equal(ident_asn1_time_get(X509_get0_notBefore(c), &t), 0);
    return t;
}

static bool bundle_has(ident_bundle *b, X509 *c)
{
    for (size_t i = 0; i < ident_bundle_x509_count(b); i++)
        if (X509_cmp(ident_bundle_x509(b, i), c) == 0)
            return true;
    return false;
}

/* A new reference to the active CA certificate: the issuer of a fresh SVID. */
static X509 *issuer_of(fx *f, X509 *leaf)
{
    ident_bundle *b = ident_ca_bundle(f->ca);
    X509 *found = NULL;
    for (size_t i = 0; i < ident_bundle_x509_count(b); i++)
        if (X509_check_issued(ident_bundle_x509(b, i), leaf) == X509_V_OK) {
            found = ident_bundle_x509(b, i);
            X509_up_ref(found);
        }
    ident_bundle_unref(b);
    assert_non_null(found);
    return found;
}

static char *path(fx *f, const char *rel)
{
    static char buf[600];
    snprintf(buf, sizeof(buf), "%s/%s", f->dir, rel);
    return buf;
}

/* The file names in DIR/ca ending with suffix (first one into out). */
static int ca_files(fx *f, const char *suffix, char *out, size_t size)
{
    DIR *d = opendir(path(f, "ca"));
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    size_t sl = strlen(suffix);
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > sl && strcmp(e->d_name + l - sl, suffix) == 0) {
            if (n++ == 0 && out != NULL)
                snprintf(out, size, "%s/ca/%s", f->dir, e->d_name);
        }
    }
    closedir(d);
    return n;
}

static void write_file(const char *p, const char *text, mode_t mode)
{
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    chmod(p, mode);
}

static int open_err(fx *f, ward_err *err)
{
    ident_ca_free(f->ca);
    f->ca = NULL;
    ward_err_clear(err);
    return ident_ca_open(&f->opts, T0, &f->ca, err);
}

/* ======================================================================== */
/* first start and persistence                                               */
/* ======================================================================== */

static void test_first_start_creates_p256_ca(void **state)
{
    fx *f = *state;
    ident_bundle *b = ident_ca_bundle(f->ca);
    assert_int_equal(ident_bundle_x509_count(b), 1);
    assert_int_equal(ident_bundle_sequence(b), 1);
    X509 *ca = ident_bundle_x509(b, 0);
    assert_int_equal(X509_check_issued(ca, ca), X509_V_OK); /* self-signed */
    assert_int_equal(X509_verify(ca, X509_get0_pubkey(ca)), 1);
    assert_string_equal(ident_ec_curve(X509_get0_pubkey(ca), NULL), "P-256");
    assert_int_equal(X509_check_ca(ca), 1);
    assert_true(X509_get_extension_flags(ca) & EXFLAG_CA);
    assert_int_equal(X509_get_key_usage(ca), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_int_equal(X509_EXTENSION_get_critical(
                         X509_get_ext(ca, X509_get_ext_by_NID(ca, NID_basic_constraints, -1))),
                     1);
    assert_non_null(X509_get0_subject_key_id(ca));
    GENERAL_NAMES *gens = X509_get_ext_d2i(ca, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, 0);
    assert_int_equal(gn->type, GEN_URI);
    assert_string_equal((const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier),
                        "spiffe://example.org");
    GENERAL_NAMES_free(gens);
    assert_int_equal(not_before(ca), T0 - 10);
    assert_int_equal(not_after(ca), T0 + DAY); /* default CA TTL 24 h */
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(ca), NULL);
    assert_int_equal(BN_num_bits(serial), 128);
    BN_free(serial);
    ident_bundle_unref(b);
}

static void test_key_files_pkcs8_mode_0600(void **state)
{
    fx *f = *state;
    char p[600];
    assert_int_equal(ca_files(f, ".jwt.key", NULL, 0), 1);
    assert_int_equal(ca_files(f, ".key", p, sizeof(p)), 2); /* CA key and JWT key */
    DIR *d = opendir(path(f, "ca"));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            assert_true(strcmp(e->d_name, ".") == 0 ||
                        strcmp(e->d_name, "..") == 0); /* no temp files */
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".key") == 0) {
            char kp[700];
            struct stat st;
            snprintf(kp, sizeof(kp), "%s/ca/%s", f->dir, e->d_name);
            assert_int_equal(stat(kp, &st), 0);
            assert_int_equal(st.st_mode & 0777, 0600);
            char *text;
            size_t len;
            assert_int_equal(ward_file_read(kp, 0, &text, &len, NULL), 0);
            assert_true(strncmp(text, "-----BEGIN PRIVATE KEY-----", 27) == 0);
            free(text);
        }
    }
    closedir(d);
    struct stat st;
    assert_int_equal(stat(path(f, "ca/state.json"), &st), 0);
    assert_int_equal(stat(path(f, "ca"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
}

static void test_reopen_reuses_ca(void **state)
{
    fx *f = *state;
    ward_buf before, after;
    ward_buf_init(&before);
    ward_buf_init(&after);
    ident_bundle *b = ident_ca_bundle(f->ca);
    ident_bundle_to_json(b, &before);
    X509 *leaf = mint_leaf(f, 0, T0);
    ident_bundle_unref(b);
    reopen(f, T0 + 60);
    b = ident_ca_bundle(f->ca);
    ident_bundle_to_json(b, &after);
    assert_string_equal(before.ptr, after.ptr); /* same CA, JWT key and sequence */
    STACK_OF(X509) *chain = pki_chain(leaf, NULL);
    assert_int_equal(ident_svid_verify(chain, b, T0 + 60, NULL, NULL), 0);
    sk_X509_free(chain);
    X509_free(leaf);
    ident_bundle_unref(b);
    ward_buf_dispose(&before);
    ward_buf_dispose(&after);
}

static void test_corrupted_key_refused(void **state)
{
    fx *f = *state;
    char p[600];
    ca_files(f, ".jwt.key", NULL, 0);
    DIR *d = opendir(path(f, "ca"));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".key") == 0 && !strstr(e->d_name, ".jwt."))
            snprintf(p, sizeof(p), "%s/ca/%s", f->dir, e->d_name);
    }
    closedir(d);
    write_file(p, "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", 0600);
    ward_err err;
    assert_int_not_equal(open_err(f, &err), 0);
    assert_null(f->ca);
    assert_true(contains(err.msg, "not a PEM private key"));
    assert_true(contains(err.msg, p));
}

static void test_mismatched_key_refused(void **state)
{
    fx *f = *state;
    char p[600] = "";
    DIR *d = opendir(path(f, "ca"));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".key") == 0 && !strstr(e->d_name, ".jwt."))
            snprintf(p, sizeof(p), "%s/ca/%s", f->dir, e->d_name);
    }
    closedir(d);
    EVP_PKEY *other = pki_ec("P-256");
    pki_write_pem(p, NULL, other);
    chmod(p, 0600);
    EVP_PKEY_free(other);
    ward_err err;
    assert_int_not_equal(open_err(f, &err), 0);
    assert_true(contains(err.msg, "does not match"));
    /* and it was not silently replaced */
    assert_int_equal(ca_files(f, ".pem", NULL, 0), 1);
}

static void test_key_readable_by_others_refused(void **state)
{
    fx *f = *state;
    char p[600];
    ca_files(f, ".jwt.key", p, sizeof(p));
    chmod(p, 0644);
    ward_err err;
    assert_int_not_equal(open_err(f, &err), 0);
    assert_true(contains(err.msg, "readable by group or others"));
}

static void test_corrupted_state_refused(void **state)
{
    fx *f = *state;
    write_file(path(f, "ca/state.json"), "{\"version\":1,", 0600);
    ward_err err;
    assert_int_not_equal(open_err(f, &err), 0);
    assert_true(contains(err.msg, "corrupted"));
}

static void test_other_trust_domain_data_dir_refused(void **state)
{
    fx *f = *state;
    f->opts.trust_domain = "other.org";
    ward_err err;
    assert_int_not_equal(open_err(f, &err), 0);
    assert_true(contains(err.msg, "belongs to trust domain example.org, not other.org"));
}

static void test_bad_options_refused(void **state)
{
    fx *f = *state;
    ident_ca *ca = NULL;
    ward_err err;
    ident_ca_options o = {.trust_domain = "Example.org", .data_dir = f->dir};
    assert_int_equal(ident_ca_open(&o, T0, &ca, &err), WARD_EINVAL);
    o.trust_domain = "example.org";
    o.upstream_cert_file = "/nonexistent";
    assert_int_equal(ident_ca_open(&o, T0, &ca, &err), WARD_EINVAL);
    assert_true(contains(err.msg, "both"));
    o.upstream_cert_file = NULL;
    o.ca_ttl_s = 30;
    assert_int_equal(ident_ca_open(&o, T0, &ca, &err), WARD_ERANGE);
    assert_null(ca);
}

/* ======================================================================== */
/* minting                                                                   */
/* ======================================================================== */

static void test_mint_svid_contents(void **state)
{
    fx *f = *state;
    X509 *leaf = mint_leaf(f, 0, T0);
    X509 *ca = issuer_of(f, leaf);
    /* exactly one URI SAN: the attested ID */
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
    assert_int_equal(sk_GENERAL_NAME_value(gens, 0)->type, GEN_URI);
    assert_string_equal((const char *)ASN1_STRING_get0_data(
                            sk_GENERAL_NAME_value(gens, 0)->d.uniformResourceIdentifier),
                        PKI_ID);
    GENERAL_NAMES_free(gens);
    /* CA:FALSE, critical */
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(leaf, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_false(bc->ca);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    /* key usage critical, digitalSignature only (EC key) */
    assert_int_equal(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_EXTENSION_get_critical(
                         X509_get_ext(leaf, X509_get_ext_by_NID(leaf, NID_key_usage, -1))),
                     1);
    assert_int_equal(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    /* key identifiers */
    assert_non_null(X509_get0_subject_key_id(leaf));
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(leaf);
    assert_non_null(akid);
    assert_int_equal(ASN1_OCTET_STRING_cmp(akid, X509_get0_subject_key_id(ca)), 0);
    /* random positive serial, 128 bits */
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
    assert_int_equal(BN_num_bits(serial), 128);
    assert_false(BN_is_negative(serial));
    BN_free(serial);
    /* validity: backdated 10 s, 1 h */
    assert_int_equal(not_before(leaf), T0 - 10);
    assert_int_equal(not_after(leaf), T0 + 3600);
    /* the CSR's key, signed by the CA */
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), f->wl), 1);
    assert_int_equal(X509_verify(leaf, X509_get0_pubkey(ca)), 1);
    assert_int_equal(X509_get_version(leaf), X509_VERSION_3);
    X509_free(ca);
    X509_free(leaf);
}

static void test_two_svids_have_different_serials(void **state)
{
    fx *f = *state;
    X509 *a = mint_leaf(f, 0, T0), *b = mint_leaf(f, 0, T0);
    assert_int_not_equal(ASN1_INTEGER_cmp(X509_get0_serialNumber(a), X509_get0_serialNumber(b)), 0);
    X509_free(a);
    X509_free(b);
}

static void test_mint_der_csr(void **state)
{
    fx *f = *state;
    ward_buf der;
    ward_buf_init(&der);
    pki_csr(f->wl, NULL, NULL, false, true, &der);
    STACK_OF(X509) * chain;
    ward_err err;
    assert_int_equal(mint(f, &der, PKI_ID, 0, T0, &chain, &err), 0);
    assert_int_equal(sk_X509_num(chain), 1);
    sk_X509_pop_free(chain, X509_free);
    ward_buf_dispose(&der);
}

static void test_csr_san_ignored(void **state)
{
    fx *f = *state;
    ward_buf csr;
    ward_buf_init(&csr);
    pki_csr(f->wl, NULL, "URI:spiffe://example.org/ns/kube-system/sa/admin,DNS:evil.example", false,
            false, &csr);
    STACK_OF(X509) * chain;
    ward_err err;
    assert_int_equal(mint(f, &csr, PKI_ID, 0, T0, &chain, &err), 0);
    X509 *leaf = sk_X509_value(chain, 0);
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
    assert_string_equal((const char *)ASN1_STRING_get0_data(
                            sk_GENERAL_NAME_value(gens, 0)->d.uniformResourceIdentifier),
                        PKI_ID);
    assert_null(strstr(f->pem.ptr, "evil"));
    GENERAL_NAMES_free(gens);
    sk_X509_pop_free(chain, X509_free);
    ward_buf_dispose(&csr);
}

static void test_csr_ca_true_refused(void **state)
{
    fx *f = *state;
    ward_buf csr;
    ward_buf_init(&csr);
    pki_csr(f->wl, NULL, NULL, true, false, &csr);
    expect_refused(f, &csr, PKI_ID, "basicConstraints CA=true");
    ward_buf_dispose(&csr);
}

static void test_csr_signed_by_other_key_refused(void **state)
{
    fx *f = *state;
    EVP_PKEY *other = pki_ec("P-256");
    ward_buf csr;
    ward_buf_init(&csr);
    pki_csr(f->wl, other, NULL, false, false, &csr);
    expect_refused(f, &csr, PKI_ID, "CSR signature is invalid");
    ward_buf_dispose(&csr);
    EVP_PKEY_free(other);
}

static void test_csr_tampered_refused(void **state)
{
    fx *f = *state;
    ward_buf der;
    ward_buf_init(&der);
    pki_csr(f->wl, NULL, NULL, false, true, &der);
    der.ptr[der.len - 1] ^= 0x01; /* last byte of the signature's s */
    expect_refused(f, &der, PKI_ID, "CSR signature is invalid");
    ward_buf_dispose(&der);
}

static void test_csr_garbage_refused(void **state)
{
    fx *f = *state;
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_puts(&b, "hello, I am a CSR");
    expect_refused(f, &b, PKI_ID, "malformed CSR");
    ward_buf_reset(&b);
    ward_buf_puts(&b,
                  "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
    expect_refused(f, &b, PKI_ID, "malformed CSR");
    ward_buf_reset(&b);
    ward_buf_append(&b, f->csr.ptr, f->csr.len / 2); /* truncated PEM */
    expect_refused(f, &b, PKI_ID, "malformed CSR");
    ward_buf_reset(&b);
    ward_buf_append(&b, "\x30\x82\x01\x00\x00", 5);
    expect_refused(f, &b, PKI_ID, "malformed CSR");
    ward_buf_reset(&b);
    expect_refused(f, &b, PKI_ID, "empty CSR");
    ward_buf_dispose(&b);
}

static void test_pem_with_other_label_refused(void **state)
{
    fx *f = *state;
    ident_bundle *b = ident_ca_bundle(f->ca);
    ward_buf pem;
    ward_buf_init(&pem);
    ident_bundle_to_pem(b, &pem); /* a CERTIFICATE, not a CERTIFICATE REQUEST */
    expect_refused(f, &pem, PKI_ID, "malformed CSR");
    ward_buf_dispose(&pem);
    ident_bundle_unref(b);
}

static void test_new_certificate_request_label_accepted(void **state)
{
    fx *f = *state;
    ward_buf b;
    ward_buf_init(&b);
    const char *p = strstr(f->csr.ptr, "\n") + 1;
    const char *e = strstr(p, "-----END");
    ward_buf_puts(&b, "-----BEGIN NEW CERTIFICATE REQUEST-----\n");
    ward_buf_append(&b, p, (size_t)(e - p));
    ward_buf_puts(&b, "-----END NEW CERTIFICATE REQUEST-----\n");
    ward_err err;
    assert_int_equal(mint(f, &b, PKI_ID, 0, T0, NULL, &err), 0);
    ward_buf_dispose(&b);
}

static void test_csr_version_2_refused(void **state)
{
    fx *f = *state;
    X509_REQ *req = X509_REQ_new();
    X509_REQ_set_pubkey(req, f->wl);
    if (X509_REQ_set_version(req, 1) != 1) { /* OpenSSL may refuse to make one */
        X509_REQ_free(req);
        skip();
    }
    X509_REQ_sign(req, f->wl, EVP_sha256());
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_append(&b, der, (size_t)len);
    expect_refused(f, &b, PKI_ID, "CSR version");
    ward_buf_dispose(&b);
    OPENSSL_free(der);
    X509_REQ_free(req);
}

static void test_der_csr_with_trailing_bytes_refused(void **state)
{
    fx *f = *state;
    ward_buf der;
    ward_buf_init(&der);
    pki_csr(f->wl, NULL, NULL, false, true, &der);
    ward_buf_putc(&der, 0);
    expect_refused(f, &der, PKI_ID, "malformed CSR");
    ward_buf_dispose(&der);
}

static void test_csr_oversized_refused(void **state)
{
    fx *f = *state;
    ward_buf b;
    ward_buf_init(&b);
    ward_buf_append(&b, f->csr.ptr, f->csr.len);
    while (b.len <= 16384)
        ward_buf_putc(&b, '\n');
    ward_err err;
    assert_int_equal(mint(f, &b, PKI_ID, 0, T0, NULL, &err), WARD_ELIMIT);
    assert_true(contains(err.msg, "larger than 16384"));
    ward_buf_dispose(&b);
}

static void test_csr_weak_or_odd_keys_refused(void **state)
{
    fx *f = *state;
    EVP_PKEY *rsa1024 = pki_rsa(1024), *p521 = pki_ec("P-521");
    ward_buf csr;
    ward_buf_init(&csr);
    pki_csr(rsa1024, NULL, NULL, false, false, &csr);
    expect_refused(f, &csr, PKI_ID, "RSA keys must have 2048");
    ward_buf_reset(&csr);
    pki_csr(p521, NULL, NULL, false, false, &csr);
    expect_refused(f, &csr, PKI_ID, "P-256 or P-384");
    ward_buf_dispose(&csr);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(p521);
}

static void test_rsa_csr_gets_key_encipherment(void **state)
{
    fx *f = *state;
    EVP_PKEY *rsa = pki_rsa(2048);
    ward_buf csr;
    ward_buf_init(&csr);
    pki_csr(rsa, NULL, NULL, false, false, &csr);
    STACK_OF(X509) * chain;
    ward_err err;
    assert_int_equal(mint(f, &csr, PKI_ID, 0, T0, &chain, &err), 0);
    assert_int_equal(X509_get_key_usage(sk_X509_value(chain, 0)),
                     KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    sk_X509_pop_free(chain, X509_free);
    ward_buf_dispose(&csr);
    EVP_PKEY_free(rsa);
}

static void test_p384_csr_accepted(void **state)
{
    fx *f = *state;
    EVP_PKEY *k = pki_ec("P-384");
    ward_buf csr;
    ward_buf_init(&csr);
    pki_csr(k, NULL, NULL, false, false, &csr);
    ward_err err;
    assert_int_equal(mint(f, &csr, PKI_ID, 0, T0, NULL, &err), 0);
    ward_buf_dispose(&csr);
    EVP_PKEY_free(k);
}

static void test_bad_ids_refused(void **state)
{
    fx *f = *state;
    expect_refused(f, &f->csr, "spiffe://other.org/ns/shop/sa/payments",
                   "not in trust domain example.org");
    expect_refused(f, &f->csr, "spiffe://example.org", "has no path");
    expect_refused(f, &f->csr, "spiffe://example.org/ns//sa", "invalid SPIFFE ID");
    expect_refused(f, &f->csr, "https://example.org/x", "invalid SPIFFE ID");
}

static void test_ttl_requested(void **state)
{
    fx *f = *state;
    X509 *leaf = mint_leaf(f, 7200, T0);
    assert_int_equal(not_after(leaf), T0 + 7200);
    X509_free(leaf);
}

static void test_ttl_capped(void **state)
{
    fx *f = *state;
    f->opts.svid_ttl_s = 600;
    f->opts.svid_ttl_max_s = 7200;
    reopen(f, T0);
    X509 *a = mint_leaf(f, 0, T0), *b = mint_leaf(f, 5 * 3600, T0);
    assert_int_equal(not_after(a), T0 + 600);  /* configured default */
    assert_int_equal(not_after(b), T0 + 7200); /* capped */
    X509_free(a);
    X509_free(b);
}

static void test_ttl_never_past_ca(void **state)
{
    fx *f = *state;
    /* 4 h before the CA's end (past 5/6 of its life, rotation not run) */
    X509 *leaf = mint_leaf(f, 6 * 3600, T0 + 20 * 3600);
    assert_int_equal(not_after(leaf), T0 + DAY);
    X509_free(leaf);
}

static void test_expired_ca_refuses_to_sign(void **state)
{
    fx *f = *state;
    ward_err err;
    assert_int_not_equal(mint(f, &f->csr, PKI_ID, 0, T0 + DAY, NULL, &err), 0);
    assert_true(contains(err.msg, "has expired"));
}

/* ======================================================================== */
/* rotation                                                                  */
/* ======================================================================== */

static void test_rotation_schedule(void **state)
{
    fx *f = *state;
    ward_err err;
    ident_bundle *b = ident_ca_bundle(f->ca);
    X509 *first = ident_bundle_x509(b, 0);
    X509_up_ref(first);
    ident_bundle_unref(b);
    time_t nb = not_before(first), na = not_after(first), life = na - nb;
    time_t prepare_at = nb + life / 2, activate_at = nb + life * 5 / 6;

    /* nothing before 1/2 */
    assert_int_equal(ident_ca_tick(f->ca, prepare_at - 1, &err), 0);
    /* at 1/2: the next CA is published (not used yet) */
    assert_int_equal(ident_ca_tick(f->ca, prepare_at, &err), 1);
    b = ident_ca_bundle(f->ca);
    assert_int_equal(ident_bundle_sequence(b), 2);
    assert_int_equal(ident_bundle_x509_count(b), 2);
    ident_bundle_unref(b);
    assert_int_equal(ident_ca_tick(f->ca, prepare_at, &err), 0);
    X509 *leaf = mint_leaf(f, 0, prepare_at + 1);
    assert_int_equal(X509_check_issued(first, leaf), X509_V_OK);
    X509_free(leaf);

    /* at 5/6: the next CA signs; the old one stays published */
    assert_int_equal(ident_ca_tick(f->ca, activate_at - 1, &err), 0);
    leaf = mint_leaf(f, DAY, activate_at - 1); /* the last, longest SVID of the old CA */
    assert_true(not_after(leaf) <= na);
    X509_free(leaf);
    assert_int_equal(ident_ca_tick(f->ca, activate_at, &err), 1);
    b = ident_ca_bundle(f->ca);
    assert_int_equal(ident_bundle_sequence(b), 3);
    assert_int_equal(ident_bundle_x509_count(b), 2);
    assert_true(bundle_has(b, first));
    ident_bundle_unref(b);
    leaf = mint_leaf(f, 0, activate_at);
    assert_int_not_equal(X509_check_issued(first, leaf), X509_V_OK);
    X509_free(leaf);

    /* the retired CA is kept until its NotAfter (the next one gets prepared meanwhile) */
    assert_int_equal(ident_ca_tick(f->ca, na - 1, &err), 1);
    b = ident_ca_bundle(f->ca);
    assert_int_equal(ident_bundle_sequence(b), 4);
    assert_true(bundle_has(b, first));
    assert_int_equal(ident_bundle_x509_count(b), 3);
    ident_bundle_unref(b);
    /* then pruned, its files removed */
    assert_int_equal(ca_files(f, ".pem", NULL, 0), 3);
    assert_int_equal(ident_ca_tick(f->ca, na, &err), 1);
    b = ident_ca_bundle(f->ca);
    assert_int_equal(ident_bundle_sequence(b), 5);
    assert_false(bundle_has(b, first));
    assert_int_equal(ident_bundle_x509_count(b), 2);
    ident_bundle_unref(b);
    assert_int_equal(ca_files(f, ".pem", NULL, 0), 2);
    assert_int_equal(ca_files(f, ".key", NULL, 0), 4);
    X509_free(first);
}

static void test_rotation_persisted(void **state)
{
    fx *f = *state;
    ward_err err;
    assert_int_equal(ident_ca_tick(f->ca, T0 + DAY / 2, &err), 1);
    ward_buf before, after;
    ward_buf_init(&before);
    ward_buf_init(&after);
    ident_bundle *b = ident_ca_bundle(f->ca);
    ident_bundle_to_json(b, &before);
    ident_bundle_unref(b);
    reopen(f, T0 + DAY / 2 + 1);
    b = ident_ca_bundle(f->ca);
    ident_bundle_to_json(b, &after);
    ident_bundle_unref(b);
    assert_string_equal(before.ptr, after.ptr);
    /* and the schedule continues from disk */
    assert_int_equal(ident_ca_tick(f->ca, T0 + DAY * 5 / 6, &err), 1);
    reopen(f, T0 + DAY * 5 / 6 + 1);
    b = ident_ca_bundle(f->ca);
    assert_int_equal(ident_bundle_sequence(b), 3);
    ident_bundle_unref(b);
    ward_buf_dispose(&before);
    ward_buf_dispose(&after);
}

static void test_svids_stay_valid_through_rotation(void **state)
{
    fx *f = *state;
    ward_err err;
    time_t t = T0 + DAY * 5 / 6 - 60;
    assert_int_equal(ident_ca_tick(f->ca, t, &err), 1); /* prepared */
    X509 *old = mint_leaf(f, 0, t);
    assert_int_equal(ident_ca_tick(f->ca, t + 120, &err), 1); /* activated */
    ident_bundle *b = ident_ca_bundle(f->ca);
    STACK_OF(X509) *chain = pki_chain(old, NULL);
    char id[IDENT_ID_MAX];
    ward_err why;
    assert_int_equal(ident_svid_verify(chain, b, t + 3000, id, &why), 0);
    sk_X509_free(chain);
    ident_bundle_unref(b);
    X509_free(old);
}

static void test_downtime_catch_up(void **state)
{
    fx *f = *state;
    ident_bundle *b = ident_ca_bundle(f->ca);
    X509 *first = ident_bundle_x509(b, 0);
    X509_up_ref(first);
    ident_bundle_unref(b);
    reopen(f, T0 + 3 * DAY); /* the CA expired while wardd was down */
    b = ident_ca_bundle(f->ca);
    assert_false(bundle_has(b, first));
    assert_int_equal(ident_bundle_x509_count(b), 1);
    assert_true(ident_bundle_sequence(b) > 1);
    ident_bundle_unref(b);
    X509 *leaf = mint_leaf(f, 0, T0 + 3 * DAY);
    assert_int_equal(not_after(leaf), T0 + 3 * DAY + 3600);
    X509_free(leaf);
    X509_free(first);
}

static void test_sequence_only_grows(void **state)
{
    fx *f = *state;
    ward_err err;
    uint64_t last = 1;
    for (time_t t = T0; t < T0 + 5 * DAY; t += 3600) {
        int rc = ident_ca_tick(f->ca, t, &err);
        assert_true(rc == 0 || rc == 1);
        ident_bundle *b = ident_ca_bundle(f->ca);
        uint64_t seq = ident_bundle_sequence(b);
        assert_true(rc == 1 ? seq > last : seq == last);
        assert_true(ident_bundle_x509_count(b) >= 1 && ident_bundle_x509_count(b) <= 3);
        last = seq;
        ident_bundle_unref(b);
        X509 *leaf = mint_leaf(f, 0, t);
        X509_free(leaf);
    }
    assert_true(last >= 5 * 3 - 1);
}

/* ======================================================================== */
/* JWT-SVIDs                                                                 */
/* ======================================================================== */

static void test_jwt_verifies_with_bundle(void **state)
{
    fx *f = *state;
    const char *aud[] = {"spiffe://example.org/ns/shop/sa/inventory"};
    ward_buf t;
    ward_buf_init(&t);
    ward_err err;
    assert_int_equal(ident_ca_sign_jwt(f->ca, PKI_ID, aud, 1, 0, T0, &t, &err), 0);
    ident_bundle *b = ident_ca_bundle(f->ca);
    char id[IDENT_ID_MAX];
    assert_int_equal(ident_jwt_verify(t.ptr, t.len, b, aud[0], T0 + 299, id, &err), 0);
    assert_string_equal(id, PKI_ID);
    assert_int_not_equal(ident_jwt_verify(t.ptr, t.len, b, aud[0], T0 + 300, id, &err), 0);
    ident_bundle_unref(b);
    assert_int_not_equal(ident_ca_sign_jwt(f->ca, "spiffe://other.org/x", aud, 1, 0, T0, &t, &err),
                         0);
    ward_buf_dispose(&t);
}

static void test_jwt_survives_rotation(void **state)
{
    fx *f = *state;
    const char *aud[] = {"inventory"};
    ward_buf t;
    ward_buf_init(&t);
    ward_err err;
    time_t at = T0 + DAY * 5 / 6 - 10;
    assert_int_equal(ident_ca_tick(f->ca, at, &err), 1);
    assert_int_equal(ident_ca_sign_jwt(f->ca, PKI_ID, aud, 1, 0, at, &t, &err), 0);
    assert_int_equal(ident_ca_tick(f->ca, at + 20, &err), 1); /* activated: new JWT key */
    ident_bundle *b = ident_ca_bundle(f->ca);
    char id[IDENT_ID_MAX];
    assert_int_equal(ident_jwt_verify(t.ptr, t.len, b, "inventory", at + 60, id, &err), 0);
    ident_bundle_unref(b);
    ward_buf_dispose(&t);
}

/* ======================================================================== */
/* upstream CA                                                               */
/* ======================================================================== */

typedef struct upstream {
    EVP_PKEY *root_key, *int_key;
    X509 *root, *inter;
    char cert_file[600], key_file[600];
} upstream;

/* An upstream root (P-384); with_inter: the operator's CA is an intermediate
 * under it, and the cert file holds [intermediate, root]. */
static void upstream_make(fx *f, upstream *u, bool with_inter)
{
    u->root_key = pki_ec("P-384");
    u->root = pki_ca("Upstream Root", NULL, u->root_key, NULL, NULL, T0 - DAY, T0 + 365 * DAY);
    snprintf(u->cert_file, sizeof(u->cert_file), "%s/up.pem", f->dir);
    snprintf(u->key_file, sizeof(u->key_file), "%s/up.key", f->dir);
    if (with_inter) {
        u->int_key = pki_ec("P-256");
        u->inter = pki_ca("Upstream Intermediate", NULL, u->int_key, u->root, u->root_key, T0 - DAY,
                          T0 + 100 * DAY);
        FILE *fp = fopen(u->cert_file, "w");
        PEM_write_X509(fp, u->inter);
        PEM_write_X509(fp, u->root);
        fclose(fp);
        pki_write_pem(u->key_file, NULL, u->int_key);
    } else {
        pki_write_pem(u->cert_file, u->root, NULL);
        pki_write_pem(u->key_file, NULL, u->root_key);
    }
    f->opts.upstream_cert_file = u->cert_file;
    f->opts.upstream_key_file = u->key_file;
}

static void upstream_free(upstream *u)
{
    X509_free(u->root);
    X509_free(u->inter);
    EVP_PKEY_free(u->root_key);
    EVP_PKEY_free(u->int_key);
}

static void fresh_dir(fx *f)
{
    ident_ca_free(f->ca);
    f->ca = NULL;
    pki_rmrf(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);
}

static void test_upstream_intermediate(void **state)
{
    fx *f = *state;
    upstream u = {0};
    fresh_dir(f);
    upstream_make(f, &u, false);
    reopen(f, T0);
    ident_bundle *b = ident_ca_bundle(f->ca);
    assert_int_equal(ident_bundle_x509_count(b), 1);
    assert_int_equal(X509_cmp(ident_bundle_x509(b, 0), u.root), 0); /* the upstream is the anchor */
    ident_bundle_unref(b);
    STACK_OF(X509) * chain;
    ward_err err;
    assert_int_equal(mint(f, &f->csr, PKI_ID, 0, T0, &chain, &err), 0);
    assert_int_equal(sk_X509_num(chain), 2); /* leaf, our intermediate */
    X509 *inter = sk_X509_value(chain, 1);
    assert_int_equal(X509_check_issued(u.root, inter), X509_V_OK);
    assert_int_equal(X509_verify(inter, u.root_key), 1);
    assert_int_equal(X509_check_issued(inter, sk_X509_value(chain, 0)), X509_V_OK);
    assert_true(not_after(inter) <= T0 + DAY);
    sk_X509_pop_free(chain, X509_free);
    upstream_free(&u);
}

static void test_upstream_chain_file(void **state)
{
    fx *f = *state;
    upstream u = {0};
    fresh_dir(f);
    upstream_make(f, &u, true);
    reopen(f, T0);
    ident_bundle *b = ident_ca_bundle(f->ca);
    assert_int_equal(ident_bundle_x509_count(b), 1);
    assert_int_equal(X509_cmp(ident_bundle_x509(b, 0), u.root), 0);
    ident_bundle_unref(b);
    STACK_OF(X509) * chain;
    ward_err err;
    assert_int_equal(mint(f, &f->csr, PKI_ID, 0, T0, &chain, &err), 0);
    assert_int_equal(sk_X509_num(chain), 3); /* leaf, ours, the upstream intermediate */
    assert_int_equal(X509_cmp(sk_X509_value(chain, 2), u.inter), 0);
    sk_X509_pop_free(chain, X509_free);
    /* rotation under an upstream: the anchor stays, the JWT keys change */
    assert_int_equal(ident_ca_tick(f->ca, T0 + DAY / 2, &err), 1);
    b = ident_ca_bundle(f->ca);
    assert_int_equal(ident_bundle_x509_count(b), 1);
    ident_bundle_unref(b);
    upstream_free(&u);
}

static void test_upstream_changes_refused(void **state)
{
    fx *f = *state;
    upstream u = {0};
    /* the fixture's self-signed CA, reopened under an upstream */
    upstream_make(f, &u, false);
    ward_err err;
    assert_int_not_equal(open_err(f, &err), 0);
    assert_true(contains(err.msg, "was not signed by the upstream"));
    /* a CA made under an upstream, reopened without it */
    fresh_dir(f);
    upstream_free(&u);
    memset(&u, 0, sizeof(u));
    upstream_make(f, &u, false);
    reopen(f, T0);
    f->opts.upstream_cert_file = f->opts.upstream_key_file = NULL;
    assert_int_not_equal(open_err(f, &err), 0);
    assert_true(contains(err.msg, "not self-signed"));
    upstream_free(&u);
}

static void test_upstream_key_mismatch_refused(void **state)
{
    fx *f = *state;
    upstream u = {0};
    fresh_dir(f);
    upstream_make(f, &u, false);
    EVP_PKEY *other = pki_ec("P-384");
    pki_write_pem(u.key_file, NULL, other);
    ward_err err;
    assert_int_not_equal(open_err(f, &err), 0);
    assert_true(contains(err.msg, "does not match"));
    EVP_PKEY_free(other);
    upstream_free(&u);
}

static void test_upstream_not_a_ca_refused(void **state)
{
    fx *f = *state;
    upstream u = {0};
    fresh_dir(f);
    upstream_make(f, &u, false);
    EVP_PKEY *k = pki_ec("P-256");
    pki_leaf o = {0};
    X509 *leaf = pki_leaf_make(k, u.root, u.root_key, &o);
    pki_write_pem(u.cert_file, leaf, NULL);
    pki_write_pem(u.key_file, NULL, k);
    ward_err err;
    assert_int_not_equal(open_err(f, &err), 0);
    assert_true(contains(err.msg, "not a CA"));
    X509_free(leaf);
    EVP_PKEY_free(k);
    upstream_free(&u);
}

/* ======================================================================== */
/* an independent validator: pyca/cryptography                               */
/* ======================================================================== */

static const char *checker(void)
{
    static char buf[PATH_MAX + 64];
    const char *rel = "tests/unit/identity/check_svid.py";
    if (access(rel, R_OK) == 0)
        return rel;
    /* run from elsewhere: build/tests/identity/test_ca -> ../../../tests/... */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return rel;
    exe[n] = '\0';
    for (int i = 0; i < 4; i++)
        *strrchr(exe, '/') = '\0';
    snprintf(buf, sizeof(buf), "%s/%s", exe, rel);
    return buf;
}

/* Runs check_svid.py on the chain and bundle PEMs: its exit status. */
static int pyca_check(fx *f, const char *chain_pem, size_t chain_len, ident_bundle *b,
                      const char *id)
{
    if (access("/usr/bin/python3", X_OK) != 0)
        return 77;
    char cp[600], bp[600];
    snprintf(cp, sizeof(cp), "%s/svid.pem", f->dir);
    snprintf(bp, sizeof(bp), "%s/bundle.pem", f->dir);
    FILE *fp = fopen(cp, "w");
    fwrite(chain_pem, 1, chain_len, fp);
    fclose(fp);
    ward_buf pem;
    ward_buf_init(&pem);
    assert_int_equal(ident_bundle_to_pem(b, &pem), 0);
    fp = fopen(bp, "w");
    fwrite(pem.ptr, 1, pem.len, fp);
    fclose(fp);
    ward_buf_dispose(&pem);
    ward_buf cmd;
    ward_buf_init(&cmd);
    ward_buf_printf(&cmd, "/usr/bin/python3 '%s' '%s' '%s' '%s'", checker(), cp, bp, id);
    int st = system(cmd.ptr);
    ward_buf_dispose(&cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_pyca_accepts_minted_svid(void **state)
{
    fx *f = *state;
    time_t now = time(NULL);
    fresh_dir(f);
    reopen(f, now);
    ward_err err;
    assert_int_equal(mint(f, &f->csr, PKI_ID, 0, now, NULL, &err), 0);
    ident_bundle *b = ident_ca_bundle(f->ca);
    int rc = pyca_check(f, f->pem.ptr, f->pem.len, b, PKI_ID);
    ident_bundle_unref(b);
    if (rc == 77)
        skip();
    assert_int_equal(rc, 0);
}

static void test_pyca_accepts_upstream_chain(void **state)
{
    fx *f = *state;
    time_t now = time(NULL);
    upstream u = {0};
    fresh_dir(f);
    /* an upstream valid around the real clock */
    u.root_key = pki_ec("P-384");
    u.root = pki_ca("Upstream Root", NULL, u.root_key, NULL, NULL, now - DAY, now + 365 * DAY);
    u.int_key = pki_ec("P-256");
    u.inter = pki_ca("Upstream Intermediate", NULL, u.int_key, u.root, u.root_key, now - DAY,
                     now + 100 * DAY);
    snprintf(u.cert_file, sizeof(u.cert_file), "%s/up.pem", f->dir);
    snprintf(u.key_file, sizeof(u.key_file), "%s/up.key", f->dir);
    FILE *fp = fopen(u.cert_file, "w");
    PEM_write_X509(fp, u.inter);
    PEM_write_X509(fp, u.root);
    fclose(fp);
    pki_write_pem(u.key_file, NULL, u.int_key);
    f->opts.upstream_cert_file = u.cert_file;
    f->opts.upstream_key_file = u.key_file;
    reopen(f, now);
    ward_err err;
    assert_int_equal(mint(f, &f->csr, PKI_ID, 0, now, NULL, &err), 0);
    ident_bundle *b = ident_ca_bundle(f->ca);
    int rc = pyca_check(f, f->pem.ptr, f->pem.len, b, PKI_ID);
    ident_bundle_unref(b);
    upstream_free(&u);
    if (rc == 77)
        skip();
    assert_int_equal(rc, 0);
}

static void test_pyca_catches_bad_svid(void **state)
{
    /* the checker can fail: a leaf with two URI SANs and keyCertSign */
    fx *f = *state;
    time_t now = time(NULL);
    EVP_PKEY *ck = pki_ec("P-256");
    X509 *ca = pki_ca("CA", "example.org", ck, NULL, NULL, now - 60, now + 3600);
    pki_leaf o = {.uris = {PKI_ID, "spiffe://example.org/x"},
                  .n_uris = 2,
                  .ku = "critical,digitalSignature,keyCertSign",
                  .nb = now - 10,
                  .na = now + 60};
    X509 *leaf = pki_leaf_make(f->wl, ca, ck, &o);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, leaf);
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    ident_bundle *b;
    assert_int_equal(ident_bundle_new("example.org", &b, NULL), 0);
    ident_bundle_add_x509(b, ca);
    int rc = pyca_check(f, data, (size_t)len, b, PKI_ID);
    ident_bundle_unref(b);
    BIO_free(bio);
    X509_free(leaf);
    X509_free(ca);
    EVP_PKEY_free(ck);
    if (rc == 77)
        skip();
    assert_int_equal(rc, 1);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_first_start_creates_p256_ca),
        T(test_key_files_pkcs8_mode_0600),
        T(test_reopen_reuses_ca),
        T(test_corrupted_key_refused),
        T(test_mismatched_key_refused),
        T(test_key_readable_by_others_refused),
        T(test_corrupted_state_refused),
        T(test_other_trust_domain_data_dir_refused),
        T(test_bad_options_refused),
        T(test_mint_svid_contents),
        T(test_two_svids_have_different_serials),
        T(test_mint_der_csr),
        T(test_csr_san_ignored),
        T(test_csr_ca_true_refused),
        T(test_csr_signed_by_other_key_refused),
        T(test_csr_tampered_refused),
        T(test_csr_garbage_refused),
        T(test_pem_with_other_label_refused),
        T(test_new_certificate_request_label_accepted),
        T(test_csr_version_2_refused),
        T(test_der_csr_with_trailing_bytes_refused),
        T(test_csr_oversized_refused),
        T(test_csr_weak_or_odd_keys_refused),
        T(test_rsa_csr_gets_key_encipherment),
        T(test_p384_csr_accepted),
        T(test_bad_ids_refused),
        T(test_ttl_requested),
        T(test_ttl_capped),
        T(test_ttl_never_past_ca),
        T(test_expired_ca_refuses_to_sign),
        T(test_rotation_schedule),
        T(test_rotation_persisted),
        T(test_svids_stay_valid_through_rotation),
        T(test_downtime_catch_up),
        T(test_sequence_only_grows),
        T(test_jwt_verifies_with_bundle),
        T(test_jwt_survives_rotation),
        T(test_upstream_intermediate),
        T(test_upstream_chain_file),
        T(test_upstream_changes_refused),
        T(test_upstream_key_mismatch_refused),
        T(test_upstream_not_a_ca_refused),
        T(test_pyca_accepts_minted_svid),
        T(test_pyca_accepts_upstream_chain),
        T(test_pyca_catches_bad_svid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
