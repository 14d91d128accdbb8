/* ca.c - the CA: P-256 authorities (self-signed or upstream), persisted, rotated; minting */
#include "identity/identity_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/asn1t.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

/*
 * Threading: an ident_ca belongs to one thread (wardd's libuv loop); nothing
 * here locks. What it hands out - bundles - is immutable and refcounted, so
 * other threads may hold and read those.
 *
 * On disk (data_dir/ca/): <name>.pem (certificate), <name>.key (PKCS#8 PEM,
 * 0600), <name>.jwt.key (the generation's JWT-SVID key, PKCS#8 PEM, 0600) per
 * CA generation, <name> being the certificate serial in hex; state.json names
 * the active, prepared and retired generations (with their JWT key ids and the
 * retired ones' retire-until times) and the bundle sequence. New files are
 * written first, state.json last, each atomically: state.json is the commit.
 */

#define CA_TTL_DEFAULT       (24 * 3600)
#define CA_TTL_MIN           60
#define SVID_TTL_DEFAULT     3600
#define SVID_TTL_MAX_DEFAULT (24 * 3600)
#define JWT_TTL_DEFAULT      300
#define TTL_LIMIT            ((uint64_t)10 * 365 * 24 * 3600)
#define BACKDATE             10 /* seconds NotBefore is set in the past (clock skew) */
#define CSR_MAX              16384
#define STATE_MAX            ((size_t)1 << 20)
#define UPSTREAM_MAX         ((size_t)1 << 20)
#define RETIRED_MAX          16
#define NAME_MAX_LEN         64
#define KID_LEN_MAX          64
#define REFRESH_HINT_MAX     300
#define SVID_RSA_MAX_BITS    8192

typedef struct ca_gen {
    char name[NAME_MAX_LEN + 1]; /* serial in hex: the file names */
    char kid[KID_LEN_MAX + 1];
    X509 *cert;
    EVP_PKEY *key;
    EVP_PKEY *jwt_key;
    time_t not_before, not_after;
    time_t retire_until; /* when retired */
} ca_gen;

struct ident_ca {
    char td[WARD_SPIFFE_TD_MAX + 1];
    char td_id[WARD_SPIFFE_TD_MAX + 10]; /* spiffe://td */
    char *dir;                           /* data_dir/ca */
    uint64_t ca_ttl, svid_ttl, svid_ttl_max, jwt_ttl;
    /* upstream: the signing certificate and key, the certificates between it
     * and the anchor (presented in chains) and the anchor (in the bundle) */
    X509 *up_cert;
    EVP_PKEY *up_key;
    STACK_OF(X509) * up_presented;
    X509 *up_anchor;
    time_t up_not_after;
    ca_gen *active, *prepared;
    ca_gen *retired[RETIRED_MAX];
    size_t n_retired;
    uint64_t sequence;
    ident_bundle *bundle;
};

/* Never prompt for a pass phrase: encrypted keys are refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

/* ---- files ---------------------------------------------------------------------- */

int ident_dir_make(const char *path, mode_t mode, ward_err *err)
{
    struct stat st;
    if (mkdir(path, mode) != 0 && errno != EEXIST) {
        ward_err_set(err, "%s: %s", path, strerror(errno));
        return WARD_EIO;
    }
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        ward_err_set(err, "%s: not a directory", path);
        return WARD_EIO;
    }
    return 0;
}

static int path_of(char *buf, size_t size, const char *dir, const char *name, const char *ext)
{
    int n = snprintf(buf, size, "%s/%s%s", dir, name, ext);
    return n < 0 || (size_t)n >= size ? WARD_EINVAL : 0;
}

static int write_key(const char *dir, const char *name, EVP_PKEY *key, ward_err *err)
{
    int rc = 0;
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio == NULL)
        return WARD_ENOMEM;
    char *data = NULL;
    long len = 0;
    if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        (len = BIO_get_mem_data(bio, &data)) <= 0) {
        ward_err_set(err, "cannot encode the key %s", name);
        rc = WARD_ENOMEM;
        goto fail;
    }
    rc = ward_file_write_atomic(dir, name, data, (size_t)len, 0600, err);
fail:
    if (data != NULL && len > 0)
        OPENSSL_cleanse(data, (size_t)len);
    BIO_free(bio);
    return rc;
}

static int write_cert(const char *dir, const char *name, X509 *cert, ward_err *err)
{
    int rc = 0;
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL;
    long len = 0;
    if (bio == NULL || PEM_write_bio_X509(bio, cert) != 1 ||
        (len = BIO_get_mem_data(bio, &data)) <= 0) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    rc = ward_file_write_atomic(dir, name, data, (size_t)len, 0644, err);
fail:
    BIO_free(bio);
    return rc;
}

/* A private key file: mode 0600 (or stricter), one PEM key, no pass phrase. */
static int read_key(const char *path, bool check_mode, EVP_PKEY **out, ward_err *err)
{
    struct stat st;
    char *data = NULL;
    size_t len = 0;
    if (check_mode) {
        if (stat(path, &st) != 0) {
            ward_err_set(err, "%s: %s", path, strerror(errno));
            return WARD_EIO;
        }
        if (st.st_mode & 077) {
            ward_err_set(err, "%s: private key readable by group or others (mode %04o)", path,
                         (unsigned)(st.st_mode & 07777));
            return WARD_EINVAL;
        }
    }
    int rc = ward_file_read(path, 1 << 20, &data, &len, err);
    if (rc < 0)
        return rc;
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    *out = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    OPENSSL_cleanse(data, len);
    free(data);
    ERR_clear_error();
    if (*out == NULL) {
        ward_err_set(err, "%s: not a PEM private key (or encrypted)", path);
        return WARD_EINVAL;
    }
    return 0;
}

/* All PEM certificates of a file (at least one). */
static int read_certs(const char *path, STACK_OF(X509) * *out, ward_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc = ward_file_read(path, UPSTREAM_MAX, &data, &len, err);
    if (rc < 0)
        return rc;
    STACK_OF(X509) *certs = sk_X509_new_null();
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    if (certs == NULL || bio == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    ERR_clear_error();
    for (;;) {
        X509 *c = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
        if (c == NULL) {
            unsigned long e = ERR_peek_last_error();
            if (sk_X509_num(certs) > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM &&
                ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                break;
            ward_err_set(err, "%s: certificate %d is missing or malformed", path,
                         sk_X509_num(certs) + 1);
            rc = WARD_EINVAL;
            goto fail;
        }
        if (sk_X509_push(certs, c) <= 0 || sk_X509_num(certs) > 16) {
            X509_free(c);
            ward_err_set(err, "%s: too many certificates", path);
            rc = WARD_ELIMIT;
            goto fail;
        }
    }
    *out = certs;
    certs = NULL;
fail:
    ERR_clear_error();
    BIO_free(bio);
    sk_X509_pop_free(certs, X509_free);
    free(data);
    return rc;
}

/* ---- certificates ---------------------------------------------------------------- */

/* A random positive 128-bit serial (top bit set: always 16 significant bytes). */
static int random_serial(X509 *cert, char *name)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return WARD_EIO;
    b[0] |= 0x80;
    BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
    ASN1_INTEGER *ai = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    int ok = ai != NULL && X509_set_serialNumber(cert, ai) == 1;
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    if (name != NULL)
        for (size_t i = 0; i < sizeof(b); i++)
            snprintf(name + 2 * i, 3, "%02x", b[i]);
    return ok ? 0 : WARD_ENOMEM;
}

static int add_ext(X509 *cert, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (ext == NULL)
        return WARD_EINVAL;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : WARD_ENOMEM;
}

static int add_uri_san(X509 *cert, const char *uri)
{
    int rc = WARD_ENOMEM;
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    if (gens == NULL || gn == NULL || ia5 == NULL ||
        ASN1_STRING_set(ia5, uri, (int)strlen(uri)) != 1)
        goto fail;
    GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
    ia5 = NULL;
    if (sk_GENERAL_NAME_push(gens, gn) <= 0)
        goto fail;
    gn = NULL;
    if (X509_add1_ext_i2d(cert, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
fail:
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(gens);
    return rc;
}

static const EVP_MD *sign_md(const EVP_PKEY *key)
{
    const char *crv = ident_ec_curve(key, NULL);
    if (crv != NULL && strcmp(crv, "P-384") == 0)
        return EVP_sha384();
    if (crv != NULL && strcmp(crv, "P-521") == 0)
        return EVP_sha512();
    return EVP_sha256();
}

static int set_name(X509_NAME *name, const char *field, const char *value)
{
    return X509_NAME_add_entry_by_txt(name, field, MBSTRING_ASC, (const unsigned char *)value, -1,
                                      -1, 0) == 1
               ? 0
               : WARD_ENOMEM;
}

static int set_validity(X509 *cert, time_t nb, time_t na)
{
    return ASN1_TIME_set(X509_getm_notBefore(cert), nb) != NULL &&
                   ASN1_TIME_set(X509_getm_notAfter(cert), na) != NULL
               ? 0
               : WARD_EINVAL;
}

/* The signing key and certificate for a new generation: the upstream's, or
 * the new certificate itself (self-signed). */
static int gen_cert(ident_ca *ca, ca_gen *g, time_t now, ward_err *err)
{
    int rc = 0;
    X509 *cert = X509_new();
    X509_NAME *subj = X509_NAME_new();
    if (cert == NULL || subj == NULL || X509_set_version(cert, X509_VERSION_3) != 1) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    WARD_TRY(random_serial(cert, g->name));
    WARD_TRY(set_name(subj, "C", "US"));
    WARD_TRY(set_name(subj, "O", "Ward"));
    WARD_TRY(set_name(subj, "CN", "Ward CA"));
    WARD_TRY(set_name(subj, "serialNumber", g->name));
    if (X509_set_subject_name(cert, subj) != 1 ||
        X509_set_issuer_name(cert, ca->up_cert ? X509_get_subject_name(ca->up_cert) : subj) != 1 ||
        X509_set_pubkey(cert, g->key) != 1) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    time_t na = now + (time_t)ca->ca_ttl;
    if (ca->up_cert != NULL && na > ca->up_not_after)
        na = ca->up_not_after;
    if (na <= now) {
        ward_err_set(err, "upstream CA certificate has expired");
        rc = WARD_EINVAL;
        goto fail;
    }
    WARD_TRY(set_validity(cert, now - BACKDATE, na));
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca->up_cert ? ca->up_cert : cert, cert, NULL, NULL, 0);
    WARD_TRY(add_ext(cert, &v3, NID_basic_constraints, "critical,CA:TRUE"));
    WARD_TRY(add_ext(cert, &v3, NID_key_usage, "critical,keyCertSign,cRLSign"));
    WARD_TRY(add_ext(cert, &v3, NID_subject_key_identifier, "hash"));
    if (ca->up_cert != NULL)
        WARD_TRY(add_ext(cert, &v3, NID_authority_key_identifier, "keyid"));
    WARD_TRY(add_uri_san(cert, ca->td_id));
    EVP_PKEY *signer = ca->up_key ? ca->up_key : g->key;
    if (X509_sign(cert, signer, sign_md(signer)) <= 0) {
        ward_err_set(err, "signing the CA certificate failed");
        rc = WARD_EINVAL;
        goto fail;
    }
    g->cert = cert;
    cert = NULL;
    g->not_before = now - BACKDATE;
    g->not_after = na;
fail:
    if (rc < 0 && err != NULL && err->msg[0] == '\0')
        ward_err_set(err, "cannot build the CA certificate");
    ERR_clear_error();
    X509_NAME_free(subj);
    X509_free(cert);
    return rc;
}

static void gen_free(ca_gen *g)
{
    if (g == NULL)
        return;
    X509_free(g->cert);
    EVP_PKEY_free(g->key);
    EVP_PKEY_free(g->jwt_key);
    free(g);
}

static int gen_write(ident_ca *ca, ca_gen *g, ward_err *err)
{
    int rc = 0;
    char name[NAME_MAX_LEN + 16];
    snprintf(name, sizeof(name), "%s.key", g->name);
    WARD_TRY(write_key(ca->dir, name, g->key, err));
    snprintf(name, sizeof(name), "%s.jwt.key", g->name);
    WARD_TRY(write_key(ca->dir, name, g->jwt_key, err));
    snprintf(name, sizeof(name), "%s.pem", g->name);
    WARD_TRY(write_cert(ca->dir, name, g->cert, err));
fail:
    return rc;
}

static void gen_remove(ident_ca *ca, const ca_gen *g)
{
    static const char *const exts[] = {".key", ".jwt.key", ".pem"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
        if (path_of(path, sizeof(path), ca->dir, g->name, exts[i]) == 0)
            unlink(path);
    ward_dir_fsync(ca->dir);
}

/* A new generation: CA key and certificate, JWT key and kid, written to disk
 * (not yet referenced by state.json). */
static int gen_new(ident_ca *ca, time_t now, ca_gen **out, ward_err *err)
{
    int rc = 0;
    ca_gen *g = calloc(1, sizeof(*g));
    unsigned char rnd[24];
    ward_buf kid;
    ward_buf_init(&kid);
    if (g == NULL)
        return WARD_ENOMEM;
    g->key = EVP_EC_gen("P-256");
    g->jwt_key = EVP_EC_gen("P-256");
    if (g->key == NULL || g->jwt_key == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ward_err_set(err, "cannot generate CA keys");
        rc = WARD_ENOMEM;
        goto fail;
    }
    WARD_TRY(ident_b64_encode(rnd, sizeof(rnd), true, &kid));
    snprintf(g->kid, sizeof(g->kid), "%s", kid.ptr);
    WARD_TRY(gen_cert(ca, g, now, err));
    WARD_TRY(gen_write(ca, g, err));
    *out = g;
    g = NULL;
fail:
    ERR_clear_error();
    ward_buf_dispose(&kid);
    gen_free(g);
    return rc;
}

static bool name_ok(const char *s, bool kid)
{
    size_t n = strlen(s);
    if (n == 0 || n > (kid ? KID_LEN_MAX : NAME_MAX_LEN))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok =
            (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
            (kid && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || c == '_'));
        if (!ok)
            return false;
    }
    return true;
}

/* Checks a loaded generation: key pair, CA-ness, trust domain, issuer. */
static int gen_check(ident_ca *ca, ca_gen *g, ward_err *err)
{
    int crit = 0;
    bool san_ok = false;
    if (X509_check_private_key(g->cert, g->key) != 1) {
        ward_err_set(err, "%s/%s.key does not match %s/%s.pem", ca->dir, g->name, ca->dir, g->name);
        return WARD_EINVAL;
    }
    if (X509_check_ca(g->cert) != 1 || !(X509_get_key_usage(g->cert) & KU_KEY_CERT_SIGN)) {
        ward_err_set(err, "%s/%s.pem is not a CA certificate", ca->dir, g->name);
        return WARD_EINVAL;
    }
    GENERAL_NAMES *gens = X509_get_ext_d2i(g->cert, NID_subject_alt_name, &crit, NULL);
    if (gens != NULL && sk_GENERAL_NAME_num(gens) == 1) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, 0);
        if (gn->type == GEN_URI) {
            const ASN1_IA5STRING *u = gn->d.uniformResourceIdentifier;
            san_ok = (size_t)ASN1_STRING_length(u) == strlen(ca->td_id) &&
                     memcmp(ASN1_STRING_get0_data(u), ca->td_id, strlen(ca->td_id)) == 0;
        }
    }
    GENERAL_NAMES_free(gens);
    if (!san_ok) {
        ward_err_set(err, "%s/%s.pem is not a CA of trust domain %s", ca->dir, g->name, ca->td);
        return WARD_EINVAL;
    }
    EVP_PKEY *issuer = ca->up_key ? ca->up_key : g->key;
    if (X509_verify(g->cert, issuer) != 1) {
        ERR_clear_error();
        ward_err_set(err,
                     ca->up_key ? "%s/%s.pem was not signed by the upstream CA (was the upstream "
                                  "changed? move %s away to start a new CA)"
                                : "%s/%s.pem is not self-signed (was an upstream CA used before? "
                                  "configure it, or move %s away to start a new CA)",
                     ca->dir, g->name, ca->dir);
        return WARD_EINVAL;
    }
    const char *crv = ident_ec_curve(g->jwt_key, NULL);
    if (crv == NULL || strcmp(crv, "P-256") != 0) {
        ward_err_set(err, "%s/%s.jwt.key is not an EC P-256 key", ca->dir, g->name);
        return WARD_EINVAL;
    }
    if (ident_asn1_time_get(X509_get0_notBefore(g->cert), &g->not_before) < 0 ||
        ident_asn1_time_get(X509_get0_notAfter(g->cert), &g->not_after) < 0 ||
        g->not_after <= g->not_before) {
        ward_err_set(err, "%s/%s.pem has a bad validity period", ca->dir, g->name);
        return WARD_EINVAL;
    }
    return 0;
}

static int gen_load(ident_ca *ca, const char *name, const char *kid, ca_gen **out, ward_err *err)
{
    int rc = 0;
    char path[PATH_MAX];
    STACK_OF(X509) *certs = NULL;
    ca_gen *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return WARD_ENOMEM;
    if (!name_ok(name, false) || !name_ok(kid, true)) {
        ward_err_set(err, "%s/state.json: bad CA name or kid", ca->dir);
        rc = WARD_ESYNTAX;
        goto fail;
    }
    snprintf(g->name, sizeof(g->name), "%s", name);
    snprintf(g->kid, sizeof(g->kid), "%s", kid);
    WARD_TRY(path_of(path, sizeof(path), ca->dir, name, ".pem"));
    WARD_TRY(read_certs(path, &certs, err));
    if (sk_X509_num(certs) != 1) {
        ward_err_set(err, "%s: expected one certificate", path);
        rc = WARD_EINVAL;
        goto fail;
    }
    g->cert = sk_X509_shift(certs);
    WARD_TRY(path_of(path, sizeof(path), ca->dir, name, ".key"));
    WARD_TRY(read_key(path, true, &g->key, err));
    WARD_TRY(path_of(path, sizeof(path), ca->dir, name, ".jwt.key"));
    WARD_TRY(read_key(path, true, &g->jwt_key, err));
    WARD_TRY(gen_check(ca, g, err));
    *out = g;
    g = NULL;
fail:
    sk_X509_pop_free(certs, X509_free);
    gen_free(g);
    return rc;
}

/* ---- state and bundle ------------------------------------------------------------- */

static int put_gen(ward_buf *b, const ca_gen *g, bool retired)
{
    int rc = 0;
    WARD_TRY(ward_buf_printf(b, "{\"name\":\"%s\",\"kid\":\"%s\",\"not_after\":%lld", g->name,
                             g->kid, (long long)g->not_after));
    if (retired)
        WARD_TRY(ward_buf_printf(b, ",\"retire_until\":%lld", (long long)g->retire_until));
    WARD_TRY(ward_buf_putc(b, '}'));
fail:
    return rc;
}

static int state_write(ident_ca *ca, ward_err *err)
{
    int rc = 0;
    ward_buf b;
    ward_buf_init(&b);
    WARD_TRY(ward_buf_puts(&b, "{\"version\":1,\"trust_domain\":"));
    WARD_TRY(ident_json_quote(&b, ca->td));
    WARD_TRY(ward_buf_printf(
        &b, ",\n\"sequence\":%llu,\n\"active\":", (unsigned long long)ca->sequence));
    WARD_TRY(put_gen(&b, ca->active, false));
    WARD_TRY(ward_buf_puts(&b, ",\n\"prepared\":"));
    if (ca->prepared != NULL)
        WARD_TRY(put_gen(&b, ca->prepared, false));
    else
        WARD_TRY(ward_buf_puts(&b, "null"));
    WARD_TRY(ward_buf_puts(&b, ",\n\"retired\":["));
    for (size_t i = 0; i < ca->n_retired; i++) {
        if (i)
            WARD_TRY(ward_buf_putc(&b, ','));
        WARD_TRY(put_gen(&b, ca->retired[i], true));
    }
    WARD_TRY(ward_buf_puts(&b, "]}\n"));
    rc = ward_file_write_atomic(ca->dir, "state.json", b.ptr, b.len, 0600, err);
fail:
    ward_buf_dispose(&b);
    return rc;
}

static const char *obj_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool obj_int(const cJSON *o, const char *name, double min, long long *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= 9007199254740992.0) ||
        v->valuedouble != (double)(long long)v->valuedouble)
        return false;
    *out = (long long)v->valuedouble;
    return true;
}

static int state_gen(ident_ca *ca, const cJSON *o, bool retired, ca_gen **out, ward_err *err)
{
    const char *name = obj_str(o, "name"), *kid = obj_str(o, "kid");
    long long until = 0;
    if (!cJSON_IsObject(o) || name == NULL || kid == NULL ||
        (retired && !obj_int(o, "retire_until", 0, &until))) {
        ward_err_set(err, "%s/state.json: malformed CA entry", ca->dir);
        return WARD_ESYNTAX;
    }
    int rc = gen_load(ca, name, kid, out, err);
    if (rc == 0)
        (*out)->retire_until = (time_t)until;
    return rc;
}

static int state_load(ident_ca *ca, const char *path, ward_err *err)
{
    int rc = 0;
    char *data = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    long long seq = 0, version = 0;
    WARD_TRY(ward_file_read(path, STATE_MAX, &data, &len, err));
    root = ident_json_parse(data, len);
    if (!cJSON_IsObject(root) || !obj_int(root, "version", 1, &version) ||
        !obj_int(root, "sequence", 1, &seq) || obj_str(root, "trust_domain") == NULL) {
        ward_err_set(err, "%s: corrupted (not a CA state file)", path);
        rc = WARD_ESYNTAX;
        goto fail;
    }
    if (version != 1) {
        ward_err_set(err, "%s: unsupported version %lld", path, version);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (strcmp(obj_str(root, "trust_domain"), ca->td) != 0) {
        ward_err_set(err, "%s: this CA belongs to trust domain %s, not %s", path,
                     obj_str(root, "trust_domain"), ca->td);
        rc = WARD_EINVAL;
        goto fail;
    }
    ca->sequence = (uint64_t)seq;
    WARD_TRY(
        state_gen(ca, cJSON_GetObjectItemCaseSensitive(root, "active"), false, &ca->active, err));
    const cJSON *prep = cJSON_GetObjectItemCaseSensitive(root, "prepared");
    if (prep != NULL && !cJSON_IsNull(prep))
        WARD_TRY(state_gen(ca, prep, false, &ca->prepared, err));
    const cJSON *ret = cJSON_GetObjectItemCaseSensitive(root, "retired");
    if (!cJSON_IsArray(ret) || cJSON_GetArraySize(ret) > RETIRED_MAX) {
        ward_err_set(err, "%s: malformed \"retired\"", path);
        rc = WARD_ESYNTAX;
        goto fail;
    }
    const cJSON *r;
    cJSON_ArrayForEach(r, ret)
    {
        WARD_TRY(state_gen(ca, r, true, &ca->retired[ca->n_retired], err));
        ca->n_retired++;
    }
fail:
    cJSON_Delete(root);
    free(data);
    return rc;
}

/* The bundle of the current generations (a new one; the caller swaps it in). */
static int bundle_build(const ident_ca *ca, ident_bundle **out)
{
    int rc = 0;
    ident_bundle *b = NULL;
    ca_gen *gens[RETIRED_MAX + 2];
    size_t n = 0;
    gens[n++] = ca->active;
    if (ca->prepared != NULL)
        gens[n++] = ca->prepared;
    for (size_t i = 0; i < ca->n_retired; i++)
        gens[n++] = ca->retired[i];
    WARD_TRY(ident_bundle_new(ca->td, &b, NULL));
    if (ca->up_anchor != NULL)
        WARD_TRY(ident_bundle_add_x509(b, ca->up_anchor));
    for (size_t i = 0; i < n; i++) {
        if (ca->up_anchor == NULL)
            WARD_TRY(ident_bundle_add_x509(b, gens[i]->cert));
        WARD_TRY(ident_bundle_add_jwt(b, gens[i]->kid, gens[i]->jwt_key));
    }
    ident_bundle_set_sequence(b, ca->sequence);
    /* Refresh well before the next CA is activated (1/3 of a lifetime later). */
    uint64_t hint = ca->ca_ttl / 10;
    ident_bundle_set_refresh_hint(b, hint > REFRESH_HINT_MAX ? REFRESH_HINT_MAX : hint ? hint : 1);
    *out = b;
    b = NULL;
fail:
    ident_bundle_unref(b);
    return rc;
}

static void bundle_swap(ident_ca *ca, ident_bundle *b)
{
    ident_bundle_unref(ca->bundle);
    ca->bundle = b;
}

/* ---- upstream --------------------------------------------------------------------- */

static int upstream_load(ident_ca *ca, const ident_ca_options *o, time_t now, ward_err *err)
{
    int rc = 0;
    STACK_OF(X509) *certs = NULL;
    WARD_TRY(read_certs(o->upstream_cert_file, &certs, err));
    WARD_TRY(read_key(o->upstream_key_file, false, &ca->up_key, err));
    ca->up_cert = sk_X509_shift(certs);
    if (X509_check_private_key(ca->up_cert, ca->up_key) != 1) {
        ward_err_set(err, "%s does not match %s", o->upstream_key_file, o->upstream_cert_file);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (X509_check_ca(ca->up_cert) != 1 ||
        ((X509_get_extension_flags(ca->up_cert) & EXFLAG_KUSAGE) &&
         !(X509_get_key_usage(ca->up_cert) & KU_KEY_CERT_SIGN))) {
        ward_err_set(err, "%s: not a CA certificate (needs CA:TRUE and keyCertSign)",
                     o->upstream_cert_file);
        rc = WARD_EINVAL;
        goto fail;
    }
    EVP_PKEY *pub = X509_get0_pubkey(ca->up_cert);
    if (ident_ec_curve(pub, NULL) == NULL &&
        !(EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA && EVP_PKEY_get_bits(pub) >= 2048)) {
        ward_err_set(err, "%s: upstream key must be EC (P-256/384/521) or RSA >= 2048",
                     o->upstream_cert_file);
        rc = WARD_EINVAL;
        goto fail;
    }
    time_t nb = 0;
    if (ident_asn1_time_get(X509_get0_notBefore(ca->up_cert), &nb) < 0 ||
        ident_asn1_time_get(X509_get0_notAfter(ca->up_cert), &ca->up_not_after) < 0 ||
        ca->up_not_after <= now || nb > now) {
        ward_err_set(err, "%s: upstream CA certificate is not valid now", o->upstream_cert_file);
        rc = WARD_EINVAL;
        goto fail;
    }
    /* The file's last certificate is the anchor the bundle publishes; the ones
     * between the signing certificate and it travel in every chain. */
    ca->up_presented = sk_X509_new_null();
    if (ca->up_presented == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    if (sk_X509_num(certs) == 0) {
        ca->up_anchor = ca->up_cert;
        X509_up_ref(ca->up_anchor);
    } else {
        ca->up_anchor = sk_X509_pop(certs);
        if (sk_X509_push(ca->up_presented, ca->up_cert) <= 0) {
            rc = WARD_ENOMEM;
            goto fail;
        }
        X509_up_ref(ca->up_cert);
        while (sk_X509_num(certs) > 0) {
            X509 *c = sk_X509_shift(certs);
            if (sk_X509_push(ca->up_presented, c) <= 0) {
                X509_free(c);
                rc = WARD_ENOMEM;
                goto fail;
            }
        }
    }
fail:
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

void ident_ca_free(ident_ca *ca)
{
    if (ca == NULL)
        return;
    gen_free(ca->active);
    gen_free(ca->prepared);
    for (size_t i = 0; i < ca->n_retired; i++)
        gen_free(ca->retired[i]);
    X509_free(ca->up_cert);
    EVP_PKEY_free(ca->up_key);
    X509_free(ca->up_anchor);
    sk_X509_pop_free(ca->up_presented, X509_free);
    ident_bundle_unref(ca->bundle);
    free(ca->dir);
    free(ca);
}

static int ttl_or(uint64_t v, uint64_t def, uint64_t *out)
{
    *out = v ? v : def;
    return *out <= TTL_LIMIT ? 0 : WARD_ERANGE;
}

int ident_ca_open(const ident_ca_options *opts, time_t now, ident_ca **out, ward_err *err)
{
    int rc = 0;
    char path[PATH_MAX];
    *out = NULL;
    ward_err_clear(err);
    if (opts == NULL || opts->data_dir == NULL || opts->trust_domain == NULL ||
        !ward_spiffe_td_valid(opts->trust_domain, strlen(opts->trust_domain))) {
        ward_err_set(err, "a valid trust domain and a data directory are required");
        return WARD_EINVAL;
    }
    if ((opts->upstream_cert_file == NULL) != (opts->upstream_key_file == NULL)) {
        ward_err_set(err, "upstream CA: give both the certificate and the key file, or neither");
        return WARD_EINVAL;
    }
    ident_ca *ca = calloc(1, sizeof(*ca));
    if (ca == NULL)
        return WARD_ENOMEM;
    snprintf(ca->td, sizeof(ca->td), "%s", opts->trust_domain);
    snprintf(ca->td_id, sizeof(ca->td_id), "spiffe://%s", opts->trust_domain);
    if (ttl_or(opts->ca_ttl_s, CA_TTL_DEFAULT, &ca->ca_ttl) < 0 ||
        ttl_or(opts->svid_ttl_s, SVID_TTL_DEFAULT, &ca->svid_ttl) < 0 ||
        ttl_or(opts->svid_ttl_max_s, SVID_TTL_MAX_DEFAULT, &ca->svid_ttl_max) < 0 ||
        ttl_or(opts->jwt_ttl_s, JWT_TTL_DEFAULT, &ca->jwt_ttl) < 0 || ca->ca_ttl < CA_TTL_MIN) {
        ward_err_set(err, "CA TTL must be at least %d s; TTLs at most 10 years", CA_TTL_MIN);
        rc = WARD_ERANGE;
        goto fail;
    }
    if (path_of(path, sizeof(path), opts->data_dir, "ca", "") < 0 ||
        (ca->dir = strdup(path)) == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    WARD_TRY(ident_dir_make(opts->data_dir, 0700, err));
    WARD_TRY(ident_dir_make(ca->dir, 0700, err));
    if (opts->upstream_cert_file != NULL)
        WARD_TRY(upstream_load(ca, opts, now, err));
    WARD_TRY(path_of(path, sizeof(path), ca->dir, "state.json", ""));
    if (access(path, F_OK) == 0) {
        WARD_TRY(state_load(ca, path, err));
    } else if (errno == ENOENT) {
        /* First start: a new CA, committed by writing state.json. */
        WARD_TRY(gen_new(ca, now, &ca->active, err));
        ca->sequence = 1;
        rc = state_write(ca, err);
        if (rc < 0) {
            gen_remove(ca, ca->active);
            goto fail;
        }
    } else {
        ward_err_set(err, "%s: %s", path, strerror(errno));
        rc = WARD_EIO;
        goto fail;
    }
    ident_bundle *b = NULL;
    WARD_TRY(bundle_build(ca, &b));
    bundle_swap(ca, b);
    WARD_TRY(ident_ca_tick(ca, now, err)); /* catch up after downtime */
    *out = ca;
    ca = NULL;
fail:
    ident_ca_free(ca);
    return rc;
}

ident_bundle *ident_ca_bundle(ident_ca *ca)
{
    ident_bundle_ref(ca->bundle);
    return ca->bundle;
}

/* ---- rotation --------------------------------------------------------------------------- */

typedef struct ca_snapshot {
    ca_gen *active, *prepared;
    ca_gen *retired[RETIRED_MAX];
    size_t n_retired;
    uint64_t sequence;
} ca_snapshot;

static void snap_take(const ident_ca *ca, ca_snapshot *s)
{
    s->active = ca->active;
    s->prepared = ca->prepared;
    memcpy(s->retired, ca->retired, sizeof(s->retired));
    s->n_retired = ca->n_retired;
    s->sequence = ca->sequence;
}

static void snap_restore(ident_ca *ca, const ca_snapshot *s)
{
    ca->active = s->active;
    ca->prepared = s->prepared;
    memcpy(ca->retired, s->retired, sizeof(ca->retired));
    ca->n_retired = s->n_retired;
    ca->sequence = s->sequence;
}

static bool snap_holds(const ca_snapshot *s, const ca_gen *g)
{
    if (g == s->active || g == s->prepared)
        return true;
    for (size_t i = 0; i < s->n_retired; i++)
        if (g == s->retired[i])
            return true;
    return false;
}

static bool ca_holds(const ident_ca *ca, const ca_gen *g)
{
    ca_snapshot s;
    snap_take(ca, &s);
    return snap_holds(&s, g);
}

/* Moves the active generation to the retired list; it stays published until
 * its NotAfter, past which no SVID or JWT-SVID it signed can be valid. */
static void retire(ident_ca *ca, ca_gen *g)
{
    g->retire_until = g->not_after;
    if (ca->n_retired == RETIRED_MAX) { /* full: drop the one that ends first */
        size_t k = 0;
        for (size_t i = 1; i < ca->n_retired; i++)
            if (ca->retired[i]->retire_until < ca->retired[k]->retire_until)
                k = i;
        ca->retired[k] = ca->retired[--ca->n_retired];
    }
    ca->retired[ca->n_retired++] = g;
}

int ident_ca_tick(ident_ca *ca, time_t now, ward_err *err)
{
    int rc = 0;
    ca_snapshot before;
    ca_gen *created[4] = {NULL};
    size_t n_created = 0;
    ident_bundle *bundle = NULL;
    ward_err_clear(err);
    snap_take(ca, &before);
    for (int step = 0; step < 4; step++) {
        ca_gen *a = ca->active;
        time_t life = a->not_after - a->not_before;
        time_t prepare_at = a->not_before + life / 2;
        time_t activate_at = a->not_before + life / 6 * 5 + (life % 6) * 5 / 6;
        if (now >= a->not_after || (ca->up_cert != NULL && now >= ca->up_not_after)) {
            /* The active CA has expired (wardd was down): switch now. */
            retire(ca, a);
            if (ca->prepared != NULL && now < ca->prepared->not_after) {
                ca->active = ca->prepared;
            } else {
                ca_gen *g = NULL;
                WARD_TRY(gen_new(ca, now, &g, err));
                created[n_created++] = g;
                if (ca->prepared != NULL)
                    retire(ca, ca->prepared); /* expired as well: pruned below */
                ca->active = g;
            }
            ca->prepared = NULL;
        } else if (ca->prepared == NULL && now >= prepare_at &&
                   !(ca->up_cert != NULL && ca->up_not_after <= a->not_after)) {
            /* (under an upstream that ends first, a successor could not outlive it) */
            WARD_TRY(gen_new(ca, now, &ca->prepared, err));
            created[n_created++] = ca->prepared;
        } else if (ca->prepared != NULL && now >= activate_at) {
            retire(ca, a);
            ca->active = ca->prepared;
            ca->prepared = NULL;
        } else {
            break;
        }
        ca->sequence++;
    }
    /* Prune retired generations whose last SVID has expired. */
    size_t kept = 0;
    bool pruned = false;
    for (size_t i = 0; i < ca->n_retired; i++) {
        if (now >= ca->retired[i]->retire_until)
            pruned = true;
        else
            ca->retired[kept++] = ca->retired[i];
    }
    ca->n_retired = kept;
    if (pruned)
        ca->sequence++;
    if (ca->sequence == before.sequence)
        return 0;
    WARD_TRY(bundle_build(ca, &bundle));
    WARD_TRY(state_write(ca, err));
    bundle_swap(ca, bundle);
    /* Committed: forget what is no longer referenced (keys included). */
    ca_gen *gone[RETIRED_MAX + 2 + 4 + 2];
    size_t n_gone = 0;
    if (before.active != NULL && !ca_holds(ca, before.active))
        gone[n_gone++] = before.active;
    if (before.prepared != NULL && !ca_holds(ca, before.prepared))
        gone[n_gone++] = before.prepared;
    for (size_t i = 0; i < before.n_retired; i++)
        if (!ca_holds(ca, before.retired[i]))
            gone[n_gone++] = before.retired[i];
    for (size_t i = 0; i < n_created; i++)
        if (!ca_holds(ca, created[i]))
            gone[n_gone++] = created[i];
    for (size_t i = 0; i < n_gone; i++) {
        gen_remove(ca, gone[i]);
        gen_free(gone[i]);
    }
    return 1;
fail:
    /* Nothing was committed: back to the state on disk. */
    ident_bundle_unref(bundle);
    snap_restore(ca, &before);
    for (size_t i = 0; i < n_created; i++) {
        gen_remove(ca, created[i]);
        gen_free(created[i]);
    }
    return rc;
}

/* ---- minting -------------------------------------------------------------------------- */

/*
 * CSRs. OpenSSL 3.0 decodes every SubjectPublicKeyInfo it parses through its
 * provider decoders (d2i_X509_REQ, X509_set_pubkey), which costs several
 * times the signatures themselves. So the request is read with OpenSSL's DER
 * parser through templates that leave the key as bytes, and the key is built
 * directly from them; its signature is checked over the original encoding of
 * CertificationRequestInfo (as X509_REQ_verify does).
 */
typedef struct csr_spki {
    X509_ALGOR *alg;
    ASN1_BIT_STRING *key;
} csr_spki;

typedef struct csr_info {
    ASN1_ENCODING enc; /* the bytes the signature covers */
    ASN1_INTEGER *version;
    X509_NAME *subject;
    csr_spki *spki;
    STACK_OF(X509_ATTRIBUTE) * attributes;
} csr_info;

typedef struct csr_req {
    csr_info *info;
    X509_ALGOR *sig_alg;
    ASN1_BIT_STRING *signature;
} csr_req;

ASN1_SEQUENCE(csr_spki) =
    {
        ASN1_SIMPLE(csr_spki, alg, X509_ALGOR),
        ASN1_SIMPLE(csr_spki, key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(csr_spki)

        ASN1_SEQUENCE_enc(csr_info, enc, NULL) =
            {
                ASN1_SIMPLE(csr_info, version, ASN1_INTEGER),
                ASN1_SIMPLE(csr_info, subject, X509_NAME),
                ASN1_SIMPLE(csr_info, spki, csr_spki),
                /* [0] is not optional, but some software omits it (as OpenSSL allows) */
                ASN1_IMP_SET_OF_OPT(csr_info, attributes, X509_ATTRIBUTE, 0),
} static_ASN1_SEQUENCE_END_ref(csr_info, csr_info)

                ASN1_SEQUENCE(csr_req) =
                    {
                        ASN1_SIMPLE(csr_req, info, csr_info),
                        ASN1_SIMPLE(csr_req, sig_alg, X509_ALGOR),
                        ASN1_SIMPLE(csr_req, signature, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(csr_req)

                        static void csr_free(csr_req * req)
{
    ASN1_item_free((ASN1_VALUE *)req, ASN1_ITEM_rptr(csr_req));
}

static int csr_parse(const char *csr, size_t len, csr_req **out, ward_err *err)
{
    size_t i = 0;
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL;
    long dlen = 0;
    const unsigned char *der = (const unsigned char *)csr;
    *out = NULL;
    while (i < len && (csr[i] == ' ' || csr[i] == '\t' || csr[i] == '\r' || csr[i] == '\n'))
        i++;
    if (len - i >= 10 && memcmp(csr + i, "-----BEGIN", 10) == 0) {
        BIO *bio = BIO_new_mem_buf(csr, (int)len);
        if (bio == NULL)
            return WARD_ENOMEM;
        int ok = PEM_read_bio(bio, &name, &header, &data, &dlen) == 1 && header[0] == '\0' &&
                 (strcmp(name, "CERTIFICATE REQUEST") == 0 ||
                  strcmp(name, "NEW CERTIFICATE REQUEST") == 0);
        BIO_free(bio);
        if (!ok)
            dlen = 0;
        der = data;
    } else {
        dlen = (long)len;
    }
    const unsigned char *p = der;
    if (dlen > 0)
        *out = (csr_req *)ASN1_item_d2i(NULL, &p, dlen, ASN1_ITEM_rptr(csr_req));
    if (*out != NULL && p != der + dlen) { /* trailing bytes */
        csr_free(*out);
        *out = NULL;
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    ERR_clear_error();
    if (*out == NULL) {
        ward_err_set(err, "malformed CSR (not a PEM or DER PKCS#10 certificate request)");
        return WARD_ESYNTAX;
    }
    return 0;
}

/* The public key the CSR holds: EC on P-256/P-384, or RSA of 2048 to 8192 bits. */
static int csr_key(const csr_spki *spki, EVP_PKEY **out, ward_err *err)
{
    const ASN1_OBJECT *alg, *curve;
    const void *pval = NULL;
    int ptype = 0;
    unsigned char *params = NULL;
    X509_ALGOR_get0(&alg, &ptype, &pval, spki->alg);
    const ASN1_BIT_STRING *bits = spki->key;
    const unsigned char *p = bits->data;
    long n = bits->length;
    *out = NULL;
    if ((bits->flags & ASN1_STRING_FLAG_BITS_LEFT) && (bits->flags & 0x07)) {
        ward_err_set(err, "CSR public key is malformed");
        return WARD_EINVAL;
    }
    switch (OBJ_obj2nid(alg)) {
    case NID_X9_62_id_ecPublicKey: {
        curve = ptype == V_ASN1_OBJECT ? pval : NULL;
        int cn = curve ? OBJ_obj2nid(curve) : NID_undef;
        size_t fl = cn == NID_X9_62_prime256v1 ? 32 : cn == NID_secp384r1 ? 48 : 0;
        if (fl == 0) {
            ward_err_set(err, "CSR key: EC keys must be on the named curve P-256 or P-384");
            return WARD_EINVAL;
        }
        /* uncompressed or compressed points only (never the point at infinity) */
        if (!(n == (long)(1 + 2 * fl) && p[0] == 0x04) &&
            !(n == (long)(1 + fl) && (p[0] == 0x02 || p[0] == 0x03))) {
            ward_err_set(err, "CSR public key is malformed");
            return WARD_EINVAL;
        }
        int plen = i2d_ASN1_OBJECT(curve, &params);
        const unsigned char *pp = params;
        EVP_PKEY *k = plen > 0 ? d2i_KeyParams(EVP_PKEY_EC, NULL, &pp, plen) : NULL;
        OPENSSL_free(params);
        if (k == NULL || d2i_PublicKey(EVP_PKEY_EC, &k, &p, n) == NULL) {
            EVP_PKEY_free(k);
            ward_err_set(err, "CSR public key is not a point on its curve");
            return WARD_EINVAL;
        }
        *out = k;
        return 0;
    }
    case NID_rsaEncryption: {
        if (ptype != V_ASN1_NULL && ptype != V_ASN1_UNDEF) {
            ward_err_set(err, "CSR public key is malformed");
            return WARD_EINVAL;
        }
        EVP_PKEY *k = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, n);
        if (k == NULL || p != bits->data + n) {
            EVP_PKEY_free(k);
            ward_err_set(err, "CSR public key is malformed");
            return WARD_EINVAL;
        }
        int nbits = EVP_PKEY_get_bits(k);
        if (nbits < 2048 || nbits > SVID_RSA_MAX_BITS) {
            EVP_PKEY_free(k);
            ward_err_set(err, "CSR key: RSA keys must have 2048 to %d bits (has %d)",
                         SVID_RSA_MAX_BITS, nbits);
            return WARD_EINVAL;
        }
        *out = k;
        return 0;
    }
    default:
        ward_err_set(err, "CSR key type is not supported (EC P-256/P-384 or RSA)");
        return WARD_EINVAL;
    }
}

/* Refuses a CSR whose extension request is malformed or asks for CA=true.
 * Everything else it asks for (SANs first of all) is ignored. */
static int csr_extensions(const csr_req *req, ward_err *err)
{
    STACK_OF(X509_ATTRIBUTE) *attrs = req->info->attributes;
    for (int i = 0; i < sk_X509_ATTRIBUTE_num(attrs); i++) {
        X509_ATTRIBUTE *attr = sk_X509_ATTRIBUTE_value(attrs, i);
        int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(attr));
        if (nid != NID_ext_req && nid != NID_ms_ext_req)
            continue;
        ASN1_TYPE *t = X509_ATTRIBUTE_count(attr) == 1 ? X509_ATTRIBUTE_get0_type(attr, 0) : NULL;
        STACK_OF(X509_EXTENSION) *exts = NULL;
        const unsigned char *p = NULL;
        if (t != NULL && t->type == V_ASN1_SEQUENCE) {
            p = t->value.sequence->data;
            exts = d2i_X509_EXTENSIONS(NULL, &p, t->value.sequence->length);
        }
        if (exts == NULL || p != t->value.sequence->data + t->value.sequence->length) {
            sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
            ERR_clear_error();
            ward_err_set(err, "CSR extension request is malformed");
            return WARD_EINVAL;
        }
        bool is_ca = false;
        for (int k = 0; k < sk_X509_EXTENSION_num(exts); k++) {
            X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, k);
            if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_basic_constraints)
                continue;
            BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(ext);
            is_ca = is_ca || bc == NULL || bc->ca;
            BASIC_CONSTRAINTS_free(bc);
        }
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
        ERR_clear_error();
        if (is_ca) {
            ward_err_set(err, "CSR requests basicConstraints CA=true (refused: SVIDs are leaves)");
            return WARD_EINVAL;
        }
    }
    return 0;
}

/* The CSR's version, key, signature and requested extensions; the key out. */
static int csr_check(const csr_req *req, EVP_PKEY **key, ward_err *err)
{
    int rc = 0;
    *key = NULL;
    if (ASN1_INTEGER_get(req->info->version) != 0) {
        ward_err_set(err, "CSR version is not 1");
        return WARD_EINVAL;
    }
    WARD_TRY(csr_key(req->info->spki, key, err));
    if (ASN1_item_verify(ASN1_ITEM_rptr(csr_info), req->sig_alg, req->signature, req->info, *key) !=
        1) {
        ward_err_set(err, "CSR signature is invalid");
        rc = WARD_EINVAL;
        goto fail;
    }
    WARD_TRY(csr_extensions(req, err));
    return 0;
fail:
    ERR_clear_error();
    EVP_PKEY_free(*key);
    *key = NULL;
    return rc;
}

static int check_id(const ident_ca *ca, const char *spiffe_id, ward_err *err)
{
    ward_spiffe_id sid;
    ward_err e;
    size_t len = spiffe_id ? strlen(spiffe_id) : 0;
    if (spiffe_id == NULL || ward_spiffe_id_parse(spiffe_id, len, &sid, &e) < 0) {
        ward_err_set(err, "invalid SPIFFE ID: %s", spiffe_id ? e.msg : "none");
        return WARD_EINVAL;
    }
    if (sid.td_len != strlen(ca->td) || memcmp(sid.td, ca->td, sid.td_len) != 0) {
        ward_err_set(err, "SPIFFE ID %s is not in trust domain %s", spiffe_id, ca->td);
        return WARD_EINVAL;
    }
    if (sid.path_len == 0) {
        ward_err_set(err, "SPIFFE ID %s has no path (a workload ID needs one)", spiffe_id);
        return WARD_EINVAL;
    }
    return 0;
}

static int leaf_build(ident_ca *ca, EVP_PKEY *pub, const char *spiffe_id, time_t nb, time_t na,
                      X509 **out)
{
    int rc = 0;
    ca_gen *g = ca->active;
    X509 *leaf = X509_new();
    X509_NAME *subj = X509_NAME_new();
    if (leaf == NULL || subj == NULL || X509_set_version(leaf, X509_VERSION_3) != 1) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    WARD_TRY(random_serial(leaf, NULL));
    WARD_TRY(set_name(subj, "C", "US"));
    WARD_TRY(set_name(subj, "O", "Ward"));
    if (X509_set_subject_name(leaf, subj) != 1 ||
        X509_set_issuer_name(leaf, X509_get_subject_name(g->cert)) != 1 ||
        X509_set_pubkey(leaf, pub) != 1) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    WARD_TRY(set_validity(leaf, nb, na));
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, g->cert, leaf, NULL, NULL, 0);
    bool rsa = EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA;
    WARD_TRY(add_ext(leaf, &v3, NID_basic_constraints, "critical,CA:FALSE"));
    WARD_TRY(
        add_ext(leaf, &v3, NID_key_usage,
                rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature"));
    WARD_TRY(add_ext(leaf, &v3, NID_ext_key_usage, "serverAuth,clientAuth"));
    WARD_TRY(add_ext(leaf, &v3, NID_subject_key_identifier, "hash"));
    WARD_TRY(add_ext(leaf, &v3, NID_authority_key_identifier, "keyid:always"));
    WARD_TRY(add_uri_san(leaf, spiffe_id));
    if (X509_sign(leaf, g->key, EVP_sha256()) <= 0) {
        rc = WARD_EINVAL;
        goto fail;
    }
    *out = leaf;
    leaf = NULL;
fail:
    ERR_clear_error();
    X509_NAME_free(subj);
    X509_free(leaf);
    return rc;
}

int ident_ca_sign_csr(ident_ca *ca, const char *csr, size_t csr_len, const char *spiffe_id,
                      uint64_t ttl_s, time_t now, ward_buf *chain_pem, ward_err *err)
{
    int rc = 0;
    csr_req *req = NULL;
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    BIO *bio = NULL;
    char got[IDENT_ID_MAX];
    ward_err why;
    if (csr == NULL || csr_len == 0) {
        ward_err_set(err, "empty CSR");
        return WARD_EINVAL;
    }
    if (csr_len > CSR_MAX) {
        ward_err_set(err, "CSR larger than %d bytes", CSR_MAX);
        return WARD_ELIMIT;
    }
    WARD_TRY(check_id(ca, spiffe_id, err));
    WARD_TRY(csr_parse(csr, csr_len, &req, err));
    WARD_TRY(csr_check(req, &key, err));
    ca_gen *g = ca->active;
    if (now >= g->not_after - 1) {
        ward_err_set(err, "the active CA has expired (rotation not run?)");
        rc = WARD_EINVAL;
        goto fail;
    }
    uint64_t ttl = ttl_s ? ttl_s : ca->svid_ttl;
    if (ttl > ca->svid_ttl_max)
        ttl = ca->svid_ttl_max;
    time_t na = now + (time_t)ttl;
    if (na > g->not_after)
        na = g->not_after; /* an SVID never outlives its CA */
    if (leaf_build(ca, key, spiffe_id, now - BACKDATE, na, &leaf) < 0) {
        ward_err_set(err, "cannot build the X509-SVID");
        rc = WARD_EINVAL;
        goto fail;
    }
    chain = sk_X509_new_null();
    if (chain == NULL || sk_X509_push(chain, leaf) <= 0) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    if (ca->up_cert != NULL) {
        if (sk_X509_push(chain, g->cert) <= 0) {
            rc = WARD_ENOMEM;
            goto fail;
        }
        for (int i = 0; i < sk_X509_num(ca->up_presented); i++)
            if (sk_X509_push(chain, sk_X509_value(ca->up_presented, i)) <= 0) {
                rc = WARD_ENOMEM;
                goto fail;
            }
    }
    /* Fail closed: what we return passes the validator peers run. */
    if (ident_svid_verify(chain, ca->bundle, now, got, &why) < 0 || strcmp(got, spiffe_id) != 0) {
        ward_err_set(err, "internal error: the minted SVID does not validate: %s", why.msg);
        rc = WARD_EINVAL;
        goto fail;
    }
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < sk_X509_num(chain); i++)
        if (PEM_write_bio_X509(bio, sk_X509_value(chain, i)) != 1) {
            rc = WARD_ENOMEM;
            goto fail;
        }
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    WARD_TRY(ward_buf_append(chain_pem, data, (size_t)n));
fail:
    ERR_clear_error();
    BIO_free(bio);
    sk_X509_free(chain); /* borrowed entries */
    X509_free(leaf);
    EVP_PKEY_free(key);
    csr_free(req);
    return rc;
}

int ident_ca_sign_jwt(ident_ca *ca, const char *spiffe_id, const char *const *audience,
                      size_t n_audience, uint64_t ttl_s, time_t now, ward_buf *out, ward_err *err)
{
    int rc = 0;
    WARD_TRY(check_id(ca, spiffe_id, err));
    ca_gen *g = ca->active;
    if (now >= g->not_after - 1) {
        ward_err_set(err, "the active CA has expired (rotation not run?)");
        return WARD_EINVAL;
    }
    uint64_t ttl = ttl_s ? ttl_s : ca->jwt_ttl;
    if (ttl > ca->svid_ttl_max)
        ttl = ca->svid_ttl_max;
    if ((time_t)ttl > g->not_after - now)
        ttl = (uint64_t)(g->not_after - now); /* its key leaves the bundle then */
    rc = ident_jwt_sign(g->jwt_key, g->kid, spiffe_id, audience, n_audience, now, ttl, out, err);
fail:
    return rc;
}
