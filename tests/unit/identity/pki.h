/* pki.h - test-only PKI builders for identity tests: keys, CAs, good and bad leaves, CSRs */
#ifndef TEST_IDENTITY_PKI_H
#define TEST_IDENTITY_PKI_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "identity/identity.h"

#define PKI_FN static __attribute__((unused))

/* A fixed "now" far from the real clock: 2027-01-15T08:00:00Z. */
#define T0 ((time_t)1800000000)

PKI_FN EVP_PKEY *pki_ec(const char *curve)
{
    EVP_PKEY *k = EVP_EC_gen(curve);
    assert_non_null(k);
    return k;
}

PKI_FN EVP_PKEY *pki_rsa(unsigned bits)
{
    EVP_PKEY *k = EVP_RSA_gen(bits);
    assert_non_null(k);
    return k;
}

PKI_FN void pki_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

PKI_FN void pki_uris(X509 *cert, const char *const *uris, int n, const char *dns)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    for (int i = 0; i < n + (dns != NULL); i++) {
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_IA5STRING *s = ASN1_IA5STRING_new();
        const char *v = i < n ? uris[i] : dns;
        assert_int_equal(ASN1_STRING_set(s, v, (int)strlen(v)), 1);
        GENERAL_NAME_set0_value(gn, i < n ? GEN_URI : GEN_DNS, s);
        sk_GENERAL_NAME_push(gens, gn);
    }
    assert_int_equal(X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, 0, X509V3_ADD_APPEND), 1);
    GENERAL_NAMES_free(gens);
}

PKI_FN void pki_serial(X509 *cert)
{
    unsigned char b[16];
    assert_int_equal(RAND_bytes(b, sizeof(b)), 1);
    b[0] = (b[0] & 0x7f) | 0x40;
    BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
    ASN1_INTEGER *ai = BN_to_ASN1_INTEGER(bn, NULL);
    X509_set_serialNumber(cert, ai);
    ASN1_INTEGER_free(ai);
    BN_free(bn);
}

/* A CA certificate: self-signed when issuer is NULL. */
PKI_FN X509 *pki_ca(const char *cn, const char *td, EVP_PKEY *key, X509 *issuer,
                    EVP_PKEY *issuer_key, time_t nb, time_t na)
{
    X509 *c = X509_new();
    X509_set_version(c, X509_VERSION_3);
    pki_serial(c);
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(c, n);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
    X509_NAME_free(n);
    ASN1_TIME_set(X509_getm_notBefore(c), nb);
    ASN1_TIME_set(X509_getm_notAfter(c), na);
    X509_set_pubkey(c, key);
    pki_ext(c, issuer, NID_basic_constraints, "critical,CA:TRUE");
    pki_ext(c, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    pki_ext(c, issuer, NID_subject_key_identifier, "hash");
    if (issuer != NULL)
        pki_ext(c, issuer, NID_authority_key_identifier, "keyid:always");
    if (td != NULL) {
        char id[300];
        snprintf(id, sizeof(id), "spiffe://%s", td);
        const char *u[] = {id};
        pki_uris(c, u, 1, NULL);
    }
    assert_true(X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return c;
}

/* What a test leaf looks like; zeroed fields take the defaults of a good SVID. */
typedef struct pki_leaf {
    const char *uris[3];
    int n_uris;      /* -1 = no URI at all */
    const char *dns; /* an extra DNS SAN */
    bool no_san;
    const char *bc;  /* NULL = "critical,CA:FALSE"; "" = none */
    const char *ku;  /* NULL = "critical,digitalSignature"; "" = none */
    const char *eku; /* NULL = "serverAuth,clientAuth"; "" = none */
    bool dup_san;    /* a second subjectAltName extension */
    time_t nb, na;   /* 0 = T0 - 10, T0 + 3600 */
} pki_leaf;

#define PKI_ID "spiffe://example.org/ns/shop/sa/payments"

PKI_FN X509 *pki_leaf_make(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const pki_leaf *o)
{
    X509 *c = X509_new();
    X509_set_version(c, X509_VERSION_3);
    pki_serial(c);
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
    X509_set_subject_name(c, n);
    X509_NAME_free(n);
    X509_set_issuer_name(c, X509_get_subject_name(issuer));
    ASN1_TIME_set(X509_getm_notBefore(c), o->nb ? o->nb : T0 - 10);
    ASN1_TIME_set(X509_getm_notAfter(c), o->na ? o->na : T0 + 3600);
    X509_set_pubkey(c, key);
    const char *bc = o->bc ? o->bc : "critical,CA:FALSE";
    const char *ku = o->ku ? o->ku : "critical,digitalSignature";
    const char *eku = o->eku ? o->eku : "serverAuth,clientAuth";
    if (*bc)
        pki_ext(c, issuer, NID_basic_constraints, bc);
    if (*ku)
        pki_ext(c, issuer, NID_key_usage, ku);
    if (*eku)
        pki_ext(c, issuer, NID_ext_key_usage, eku);
    pki_ext(c, issuer, NID_subject_key_identifier, "hash");
    pki_ext(c, issuer, NID_authority_key_identifier, "keyid:always");
    if (!o->no_san) {
        const char *def[] = {PKI_ID};
        if (o->n_uris > 0)
            pki_uris(c, o->uris, o->n_uris, o->dns);
        else if (o->n_uris == 0)
            pki_uris(c, def, 1, o->dns);
        else
            pki_uris(c, NULL, 0, o->dns ? o->dns : "example.org");
        if (o->dup_san)
            pki_uris(c, def, 1, NULL);
    }
    assert_true(X509_sign(c, issuer_key, EVP_sha256()) > 0);
    return c;
}

PKI_FN STACK_OF(X509) * pki_chain(X509 *a, X509 *b)
{
    STACK_OF(X509) *s = sk_X509_new_null();
    if (a != NULL)
        sk_X509_push(s, a);
    if (b != NULL)
        sk_X509_push(s, b);
    return s; /* borrowed entries: free with sk_X509_free */
}

/* Parses every PEM certificate of text (owned entries: sk_X509_pop_free). */
PKI_FN STACK_OF(X509) * pki_parse_chain(const char *pem, size_t len)
{
    STACK_OF(X509) *s = sk_X509_new_null();
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *c;
    while ((c = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        sk_X509_push(s, c);
    ERR_clear_error();
    BIO_free(bio);
    return s;
}

/* A CSR for key asking for san_uri (if any) and CA=true (if ca); PEM or DER,
 * signed by sign_key (NULL = key). */
PKI_FN void pki_csr(EVP_PKEY *key, EVP_PKEY *sign_key, const char *san, bool ca, bool der,
                    ward_buf *out)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *n = X509_NAME_new();
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"workload", -1, -1, 0);
    X509_REQ_set_subject_name(req, n);
    X509_NAME_free(n);
    X509_REQ_set_pubkey(req, key);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    if (san != NULL)
        sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san));
    if (ca)
        sk_X509_EXTENSION_push(
            exts, X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE"));
    if (sk_X509_EXTENSION_num(exts) > 0)
        X509_REQ_add_extensions(req, exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    assert_true(X509_REQ_sign(req, sign_key ? sign_key : key, EVP_sha256()) > 0);
    BIO *bio = BIO_new(BIO_s_mem());
    if (der)
        i2d_X509_REQ_bio(bio, req);
    else
        PEM_write_bio_X509_REQ(bio, req);
    char *data;
    long len = BIO_get_mem_data(bio, &data);
    ward_buf_append(out, data, (size_t)len);
    BIO_free(bio);
    X509_REQ_free(req);
}

PKI_FN void pki_write_pem(const char *path, X509 *cert, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    if (cert != NULL)
        PEM_write_X509(f, cert);
    if (key != NULL)
        PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

/* ---- temp dirs ---- */

PKI_FN int pki_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

PKI_FN void pki_rmrf(const char *dir)
{
    nftw(dir, pki_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

PKI_FN char *pki_tmpdir(void)
{
    char *d = strdup("/tmp/ward-identity-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

PKI_FN bool contains(const char *hay, const char *needle)
{
    bool ok = hay != NULL && strstr(hay, needle) != NULL;
    if (!ok)
        print_error("expected \"%s\" in \"%s\"\n", needle, hay ? hay : "(null)");
    return ok;
}

#endif
