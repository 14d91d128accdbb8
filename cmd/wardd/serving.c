/* serving.c - wardd's own SVID and TLS context, the CA rotation tick, the bundle */
#include "cmd/wardd/wardd.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(const unsigned char *p, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 3 <= size; i++, o += 2)
        snprintf(out + o, 3, "%02x", p[i]);
    if (size > 0)
        out[o < size ? o : size - 1] = '\0';
}

static int asn1_time(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return WARD_EINVAL;
    *out = timegm(&tm);
    return 0;
}

/* The key id naming a CA in events: its subject key identifier. */
static void ca_key_id(X509 *ca, char *out, size_t size)
{
    const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(ca);
    if (skid != NULL) {
        hex(ASN1_STRING_get0_data(skid), (size_t)ASN1_STRING_length(skid), out, size);
        return;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    X509_digest(ca, EVP_sha256(), md, &n);
    hex(md, n > 20 ? 20 : n, out, size);
}

/* The first PEM certificate as DER (malloc'ed). */
static unsigned char *pem_first_der(const char *pem, size_t len, int *der_len)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    static const char end[] = "-----END CERTIFICATE-----";
    const char *b = memmem(pem, len, begin, sizeof(begin) - 1);
    if (b == NULL)
        return NULL;
    b += sizeof(begin) - 1;
    const char *e = memmem(b, len - (size_t)(b - pem), end, sizeof(end) - 1);
    if (e == NULL || e - b > INT32_MAX / 2)
        return NULL;
    unsigned char *der = malloc((size_t)(e - b));
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    int n = 0, fin = 0;
    if (der == NULL || ctx == NULL)
        goto fail;
    EVP_DecodeInit(ctx);
    if (EVP_DecodeUpdate(ctx, der, &n, (const unsigned char *)b, (int)(e - b)) < 0 ||
        EVP_DecodeFinal(ctx, der + n, &fin) < 0)
        goto fail;
    EVP_ENCODE_CTX_free(ctx);
    *der_len = n + fin;
    return der;
fail:
    EVP_ENCODE_CTX_free(ctx);
    free(der);
    return NULL;
}

/* Enters (or with skip, steps over) one DER element; WARD_EINVAL when malformed. */
static int der_next(const unsigned char **p, const unsigned char *end, bool skip, int want_tag)
{
    long len;
    int tag, cls;
    const unsigned char *q = *p;
    int r = ASN1_get_object(&q, &len, &tag, &cls, end - *p);
    if ((r & 0x80) || (want_tag >= 0 && tag != want_tag) || len > end - q)
        return WARD_EINVAL;
    *p = skip ? q + len : q;
    return 0;
}

int wardd_leaf_info(const char *pem, size_t len, wardd_leaf *out)
{
    /* A walk over the TBSCertificate: X509 parsing would also decode the public
     * key, which OpenSSL 3.0 makes the most expensive step of an issuance. */
    int rc = WARD_EINVAL, der_len = 0;
    memset(out, 0, sizeof(*out));
    unsigned char *der = pem_first_der(pem, len, &der_len);
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *nb = NULL, *na = NULL;
    BIGNUM *bn = NULL;
    char *h = NULL;
    if (der == NULL)
        goto fail;
    const unsigned char *p = der, *end = der + der_len;
    if (der_next(&p, end, false, V_ASN1_SEQUENCE) < 0 || /* Certificate */
        der_next(&p, end, false, V_ASN1_SEQUENCE) < 0)   /* TBSCertificate */
        goto fail;
    if (p < end && *p == 0xa0 && der_next(&p, end, true, -1) < 0) /* [0] version */
        goto fail;
    if ((serial = d2i_ASN1_INTEGER(NULL, &p, end - p)) == NULL ||
        der_next(&p, end, true, V_ASN1_SEQUENCE) < 0 ||  /* signature */
        der_next(&p, end, true, V_ASN1_SEQUENCE) < 0 ||  /* issuer */
        der_next(&p, end, false, V_ASN1_SEQUENCE) < 0 || /* validity */
        (nb = d2i_ASN1_TIME(NULL, &p, end - p)) == NULL ||
        (na = d2i_ASN1_TIME(NULL, &p, end - p)) == NULL)
        goto fail;
    if (asn1_time(nb, &out->not_before) < 0 || asn1_time(na, &out->not_after) < 0)
        goto fail;
    bn = ASN1_INTEGER_to_BN(serial, NULL);
    h = bn ? BN_bn2hex(bn) : NULL;
    if (h == NULL)
        goto fail;
    for (char *c = h; *c; c++)
        if (*c >= 'A' && *c <= 'F')
            *c = (char)(*c - 'A' + 'a');
    snprintf(out->serial, sizeof(out->serial), "%s", h);
    rc = 0;
fail:
    OPENSSL_free(h);
    BN_free(bn);
    ASN1_INTEGER_free(serial);
    ASN1_TIME_free(nb);
    ASN1_TIME_free(na);
    free(der);
    return rc;
}

/* The authority key identifier of the first certificate (full parse; rare). */
static void issuer_key_id(const char *pem, size_t len, char *out, size_t size)
{
    out[0] = '\0';
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    const ASN1_OCTET_STRING *akid = x ? X509_get0_authority_key_id(x) : NULL;
    if (akid != NULL)
        hex(ASN1_STRING_get0_data(akid), (size_t)ASN1_STRING_length(akid), out, size);
    X509_free(x);
    BIO_free(bio);
}

int wardd_bundle_refresh(wardd *d, ward_err *err)
{
    ward_buf_reset(&d->bundle_json);
    if (ident_bundle_to_json(d->bundle, &d->bundle_json) < 0) {
        ward_err_set(err, "the trust bundle could not be encoded");
        return WARD_EINVAL;
    }
    return 0;
}

int wardd_serving_refresh(wardd *d, time_t now, bool force, ward_err *err)
{
    int rc = 0;
    if (!force && d->tls != NULL && now < d->svid_renew_at)
        return 0;
    EVP_PKEY *key = NULL;
    proxy_tls_ctx *tls = NULL;
    ward_buf csr, chain;
    ward_buf_init(&csr);
    ward_buf_init(&chain);
    wardd_leaf leaf;
    WARD_TRY(ident_client_key_new(&key, err));
    WARD_TRY(ident_client_csr_new(key, NULL, &csr, err));
    WARD_TRY(ident_ca_sign_csr(d->ca, csr.ptr, csr.len, d->server_id, 0, now, &chain, err));
    if (wardd_leaf_info(chain.ptr, chain.len, &leaf) < 0) {
        ward_err_set(err, "the server SVID could not be read back");
        rc = WARD_EINVAL;
        goto fail;
    }
    proxy_tls_options o;
    memset(&o, 0, sizeof(o));
    o.server = true;
    o.chain_pem = chain.ptr;
    o.chain_len = chain.len;
    o.key = key;
    o.peer = PROXY_TLS_PEER_OPTIONAL; /* client certificates are checked per request */
    WARD_TRY(proxy_tls_ctx_new(&o, &tls, err));
    proxy_tls_ctx_unref(d->tls);
    d->tls = tls;
    if (d->api != NULL)
        proxy_http_server_set_tls(d->api, tls);
    time_t life = leaf.not_after - leaf.not_before;
    d->svid_renew_at = leaf.not_before + life / 2;
    issuer_key_id(chain.ptr, chain.len, d->svid_issuer, sizeof(d->svid_issuer));
    char exp[32];
    wardd_time_format(leaf.not_after, exp, sizeof(exp));
    cJSON *ev = wardd_event_new("svid.issued");
    cJSON_AddStringToObject(ev, "subject", d->server_id);
    cJSON_AddStringToObject(ev, "serial", leaf.serial);
    cJSON_AddStringToObject(ev, "not_after", exp);
    cJSON_AddStringToObject(ev, "via", "server");
    wardd_event_emit(d, ev);
fail:
    EVP_PKEY_free(key);
    ward_buf_dispose(&csr);
    ward_buf_dispose(&chain);
    return rc;
}

static bool bundle_has(const ident_bundle *b, X509 *x)
{
    for (size_t i = 0; i < ident_bundle_x509_count(b); i++)
        if (X509_cmp(ident_bundle_x509(b, i), x) == 0)
            return true;
    return false;
}

static void ca_event(wardd *d, const char *name, X509 *ca, uint64_t sequence)
{
    char kid[96], exp[32];
    time_t na = 0;
    ca_key_id(ca, kid, sizeof(kid));
    asn1_time(X509_get0_notAfter(ca), &na);
    wardd_time_format(na, exp, sizeof(exp));
    char td[WARD_SPIFFE_ID_MAX + 1];
    snprintf(td, sizeof(td), "spiffe://%s", d->cfg.trust_domain);
    cJSON *ev = wardd_event_new(name);
    cJSON_AddStringToObject(ev, "subject", td);
    cJSON_AddStringToObject(ev, "key_id", kid);
    cJSON_AddStringToObject(ev, "not_after", exp);
    cJSON_AddNumberToObject(ev, "bundle_sequence", (double)sequence);
    wardd_event_emit(d, ev);
}

void wardd_serving_tick(wardd *d, time_t now)
{
    ward_err err;
    int r = ident_ca_tick(d->ca, now, &err);
    if (r < 0) {
        fprintf(stderr, "wardd: CA rotation failed (retrying): %s\n", err.msg);
        return;
    }
    if (r == 0) {
        if (wardd_serving_refresh(d, now, false, &err) < 0)
            fprintf(stderr, "wardd: renewing the server SVID failed (retrying): %s\n", err.msg);
        return;
    }
    ident_bundle *old = d->bundle;
    ident_bundle *nb = ident_ca_bundle(d->ca);
    uint64_t seq = ident_bundle_sequence(nb);
    for (size_t i = 0; i < ident_bundle_x509_count(nb); i++)
        if (!bundle_has(old, ident_bundle_x509(nb, i)))
            ca_event(d, "ca.prepared", ident_bundle_x509(nb, i), seq);
    for (size_t i = 0; i < ident_bundle_x509_count(old); i++)
        if (!bundle_has(nb, ident_bundle_x509(old, i)))
            ca_event(d, "ca.pruned", ident_bundle_x509(old, i), seq);
    d->bundle = nb;
    if (wardd_bundle_refresh(d, &err) < 0)
        fprintf(stderr, "wardd: %s\n", err.msg);
    char before[sizeof(d->svid_issuer)];
    memcpy(before, d->svid_issuer, sizeof(before));
    if (wardd_serving_refresh(d, now, true, &err) < 0) {
        fprintf(stderr, "wardd: re-minting the server SVID failed (retrying): %s\n", err.msg);
        d->svid_renew_at = 0;
    } else if (strcmp(before, d->svid_issuer) != 0) {
        for (size_t i = 0; i < ident_bundle_x509_count(nb); i++) {
            char kid[96];
            ca_key_id(ident_bundle_x509(nb, i), kid, sizeof(kid));
            if (strcmp(kid, d->svid_issuer) == 0)
                ca_event(d, "ca.activated", ident_bundle_x509(nb, i), seq);
        }
    }
    ident_bundle_unref(old);
}
