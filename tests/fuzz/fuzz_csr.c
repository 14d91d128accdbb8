/* fuzz_csr.c - libFuzzer target: CSR bytes (PEM and DER) -> ident_ca_sign_csr; an SVID is only ever minted for the ID we name, on the CSR's key, and verifies against the bundle */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/ward.h"
#include "identity/identity.h"

/*
 * One CA for the whole run, created in LLVMFuzzerInitialize in a temporary
 * data directory (removed at exit), with a fixed clock so a crash reproduces.
 * Each input is given to ident_ca_sign_csr twice: as it is (the function
 * takes PEM or DER), and in the other encoding (DER bytes wrapped in a
 * "CERTIFICATE REQUEST" PEM block, or the DER inside a PEM input); both must
 * get the same verdict. When one is accepted:
 *   - the chain parses and verifies with ident_svid_verify against the CA's
 *     bundle, and the leaf's SPIFFE ID is the one we passed (never one the
 *     CSR asked for), in the leaf's only subjectAltName entry;
 *   - the leaf holds the CSR's public key, is not a CA, and lives within the
 *     default TTL (1 h) from the fixed `now`;
 *   - OpenSSL's own PKCS#10 parser reads the same CSR, its signature verifies
 *     (X509_REQ_verify), and it does not ask for CA=true.
 * A refusal must carry a message. Any violation abort()s.
 *
 * Seeds (tests/fuzz/corpus/fuzz_csr/) were made with openssl 3.0:
 *   openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
 *       -subj /O=Ward -out p256.pem                       (likewise P-384: p384.pem)
 *   openssl req -new -newkey rsa:2048 -nodes -keyout /dev/null -subj /O=Ward -out rsa2048.pem
 *   ... -addext subjectAltName=URI:spiffe://evil.org/admin,DNS:evil.org -> san.pem
 *   ... -addext basicConstraints=critical,CA:TRUE                        -> ca_true.pem
 *   one byte of p256's signature flipped                                -> bad_sig.der
 *   openssl req -in X.pem -outform DER -out X.der                     (the .der files)
 */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW          ((time_t)1767225600) /* 2026-01-01T00:00:00Z */
#define SVID_TTL     3600                 /* ident_ca's default X509-SVID TTL */
#define CSR_LIMIT    16384                /* ident_ca_sign_csr's size limit */
#define TRUST_DOMAIN "example.org"
#define PEM_CSR_NAME "CERTIFICATE REQUEST"

static char g_dir[] = "/tmp/ward-fuzz-csr-XXXXXX";
static ident_ca *g_ca;
static ident_bundle *g_bundle;
static char g_long_id[WARD_SPIFFE_ID_MAX + 1];
static const char *g_ids[3];
static bool g_verbose; /* WARD_FUZZ_VERBOSE=1: print each verdict (to check seeds) */

static void die(const char *what, const char *detail, const char *id)
{
    fprintf(stderr, "fuzz_csr: %s: %s (id %s)\n", what, detail ? detail : "", id ? id : "-");
    abort();
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void cleanup(void)
{
    ident_bundle_unref(g_bundle);
    ident_ca_free(g_ca);
    g_bundle = NULL;
    g_ca = NULL;
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The SPIFFE ID an input is signed for: a plain one, a short one, or one
 * of the maximum length (so no input byte is spent on choosing). */
static const char *pick_id(const uint8_t *data, size_t size)
{
    return g_ids[size % 3];
}

/* ---- what an accepted CSR must give ------------------------------------------ */

static STACK_OF(X509) * chain_parse(const ward_buf *pem)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    BIO *bio = BIO_new_mem_buf(pem->ptr, (int)pem->len);
    X509 *c;
    if (chain == NULL || bio == NULL)
        die("out of memory", NULL, NULL);
    while ((c = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
        if (sk_X509_push(chain, c) <= 0)
            die("out of memory", NULL, NULL);
    ERR_clear_error();
    BIO_free(bio);
    return chain;
}

/* OpenSSL's X509_REQ view of the CSR: parses, self-signature verifies, no CA=true. */
static X509_REQ *reference_csr(const unsigned char *der, size_t len, const char *id)
{
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
    if (req == NULL || p != der + len)
        die("accepted a CSR that OpenSSL's PKCS#10 parser refuses", NULL, id);
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    if (pub == NULL || X509_REQ_verify(req, pub) != 1)
        die("accepted a CSR whose signature OpenSSL does not verify", NULL, id);
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_basic_constraints)
            continue;
        BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(ext);
        if (bc == NULL || bc->ca)
            die("accepted a CSR asking for CA=true (or with malformed basicConstraints)", NULL, id);
        BASIC_CONSTRAINTS_free(bc);
    }
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return req;
}

static void check_minted(const ward_buf *pem, const unsigned char *der, size_t der_len,
                         const char *id)
{
    char got[IDENT_ID_MAX];
    ward_err why;
    ward_err_clear(&why);
    STACK_OF(X509) *chain = chain_parse(pem);
    /* A self-signed CA: the chain is the leaf alone. */
    if (sk_X509_num(chain) != 1)
        die("minted chain does not hold exactly one certificate", pem->ptr, id);
    if (ident_svid_verify(chain, g_bundle, NOW, got, &why) != 0)
        die("minted SVID does not verify against the CA's bundle", why.msg, id);
    if (strcmp(got, id) != 0)
        die("minted SVID names another SPIFFE ID", got, id);

    X509 *leaf = sk_X509_value(chain, 0);
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    if (gens == NULL || sk_GENERAL_NAME_num(gens) != 1)
        die("minted SVID has other subjectAltName entries than the URI", NULL, id);
    GENERAL_NAMES_free(gens);
    if (X509_check_ca(leaf) != 0)
        die("minted SVID is a CA", NULL, id);
    if (X509_cmp_time(X509_get0_notBefore(leaf), &(time_t){NOW + 1}) >= 0 ||
        X509_cmp_time(X509_get0_notAfter(leaf), &(time_t){NOW}) <= 0 ||
        X509_cmp_time(X509_get0_notAfter(leaf), &(time_t){NOW + SVID_TTL + 1}) >= 0)
        die("minted SVID is not valid from before now to at most the default TTL", NULL, id);

    X509_REQ *req = reference_csr(der, der_len, id);
    if (EVP_PKEY_eq(X509_get0_pubkey(leaf), X509_REQ_get0_pubkey(req)) != 1)
        die("minted SVID does not hold the CSR's public key", NULL, id);
    X509_REQ_free(req);
    sk_X509_pop_free(chain, X509_free);
    ERR_clear_error();
}

/* ---- one input ------------------------------------------------------------------- */

/* Signs csr for id; 1 if a chain was minted (and checked), 0 if refused. */
static int sign_one(const char *csr, size_t len, const unsigned char *der, size_t der_len,
                    const char *id)
{
    ward_buf pem;
    ward_err err;
    ward_buf_init(&pem);
    ward_err_clear(&err);
    int rc = ident_ca_sign_csr(g_ca, csr, len, id, 0, NOW, &pem, &err);
    if (g_verbose)
        fprintf(stderr, "fuzz_csr: %zu bytes%s: %s\n", len,
                der == (const unsigned char *)csr ? " (DER)" : "", rc == 0 ? "minted" : err.msg);
    if (rc == 0) {
        if (der == NULL)
            die("accepted a PEM CSR that is not one PEM certificate request", NULL, id);
        check_minted(&pem, der, der_len, id);
    } else if (rc != WARD_ENOMEM && err.msg[0] == '\0') {
        die("CSR refused without a message", ward_strerror(rc), id);
    } else if (pem.len != 0) {
        die("a refused CSR left output behind", pem.ptr, id);
    }
    ward_buf_dispose(&pem);
    return rc == 0;
}

static bool looks_pem(const uint8_t *data, size_t size)
{
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
        i++;
    return size - i >= 10 && memcmp(data + i, "-----BEGIN", 10) == 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ward_err err;
    ward_err_clear(&err);
    g_verbose = getenv("WARD_FUZZ_VERBOSE") != NULL;
    if (mkdtemp(g_dir) == NULL)
        die("mkdtemp failed", g_dir, NULL);
    atexit(cleanup);
    ident_ca_options opts = {.trust_domain = TRUST_DOMAIN, .data_dir = g_dir};
    if (ident_ca_open(&opts, NOW, &g_ca, &err) != 0)
        die("ident_ca_open failed", err.msg, NULL);
    g_bundle = ident_ca_bundle(g_ca);

    /* spiffe://example.org/aaaa.../a: exactly WARD_SPIFFE_ID_MAX bytes */
    size_t n = (size_t)snprintf(g_long_id, sizeof(g_long_id), "spiffe://%s/", TRUST_DOMAIN);
    memset(g_long_id + n, 'a', WARD_SPIFFE_ID_MAX - n);
    g_long_id[WARD_SPIFFE_ID_MAX] = '\0';
    g_ids[0] = "spiffe://" TRUST_DOMAIN "/ns/shop/sa/checkout";
    g_ids[1] = "spiffe://" TRUST_DOMAIN "/w";
    g_ids[2] = g_long_id;

    /* The checks above must be able to pass: a well-formed CSR (asking for
     * another ID, which must be ignored) is minted for each of our IDs. */
    EVP_PKEY *key = NULL;
    ward_buf csr;
    ward_buf_init(&csr);
    if (ident_client_key_new(&key, &err) != 0 ||
        ident_client_csr_new(key, "spiffe://evil.org/admin", &csr, &err) != 0)
        die("cannot build the self-test CSR", err.msg, NULL);
    for (size_t i = 0; i < 3; i++) {
        BIO *bio = BIO_new_mem_buf(csr.ptr, (int)csr.len);
        char *name = NULL, *header = NULL;
        unsigned char *der = NULL;
        long der_len = 0;
        if (bio == NULL || PEM_read_bio(bio, &name, &header, &der, &der_len) != 1)
            die("cannot decode the self-test CSR", NULL, NULL);
        if (!sign_one(csr.ptr, csr.len, der, (size_t)der_len, g_ids[i]))
            die("the self-test CSR was refused", NULL, g_ids[i]);
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        BIO_free(bio);
    }
    ward_buf_dispose(&csr);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *id = pick_id(data, size);
    unsigned char *der = NULL;
    char *name = NULL, *header = NULL, *alt = NULL;
    long der_len = 0, alt_len = 0;
    BIO *bio = NULL;
    int verdict, alt_verdict;

    if (looks_pem(data, size)) {
        /* PEM: the first block, as ident_ca_sign_csr reads it; its DER
         * bytes are the other encoding when it is one plain CSR block. */
        bio = BIO_new_mem_buf(data, (int)size);
        bool plain = bio != NULL && PEM_read_bio(bio, &name, &header, &der, &der_len) == 1 &&
                     header[0] == '\0' &&
                     (strcmp(name, PEM_CSR_NAME) == 0 || strcmp(name, "NEW " PEM_CSR_NAME) == 0);
        ERR_clear_error();
        if (!plain) {
            OPENSSL_free(der);
            der = NULL;
            der_len = 0;
        }
        verdict = sign_one((const char *)data, size, der, (size_t)der_len, id);
        if (der != NULL && size <= CSR_LIMIT) {
            alt_verdict = sign_one((const char *)der, (size_t)der_len, der, (size_t)der_len, id);
            if (alt_verdict != verdict)
                die(verdict ? "a CSR accepted as PEM is refused as DER"
                            : "a CSR refused as PEM is accepted as DER",
                    NULL, id);
        }
    } else {
        verdict = sign_one((const char *)data, size, data, size, id);
        /* DER: the same bytes in a PEM block. */
        bio = BIO_new(BIO_s_mem());
        if (bio == NULL ||
            (size > 0 && PEM_write_bio(bio, PEM_CSR_NAME, "", data, (long)size) <= 0))
            die("cannot PEM-encode the input", NULL, NULL);
        alt_len = BIO_get_mem_data(bio, &alt);
        if (size > 0 && size <= CSR_LIMIT && alt_len <= CSR_LIMIT) {
            alt_verdict = sign_one(alt, (size_t)alt_len, data, size, id);
            if (alt_verdict != verdict)
                die(verdict ? "a CSR accepted as DER is refused as PEM"
                            : "a CSR refused as DER is accepted as PEM",
                    NULL, id);
        }
    }
    BIO_free(bio);
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    ERR_clear_error();
    return 0;
}
