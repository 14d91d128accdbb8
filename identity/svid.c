/* svid.c - X509-SVID validation: the leaf rules and the chain to a trust domain's bundle */
#include "identity/identity_int.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define SVID_CHAIN_MAX 10 /* certificates in a presented chain */
#define SVID_DEPTH_MAX 8  /* intermediates between leaf and authority */

int ident_asn1_time_get(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return WARD_EINVAL;
    *out = timegm(&tm);
    return 0;
}

void ident_time_format(time_t t, char *buf, size_t size)
{
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "@%lld", (long long)t);
}

void ident_sanitize(const unsigned char *s, size_t len, char *buf, size_t size)
{
    if (size == 0)
        return;
    size_t max = size - 1, o = 0;
    bool cut = len > max;
    size_t keep = cut ? (max > 3 ? max - 3 : 0) : len;
    for (size_t i = 0; i < keep; i++)
        buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\') ? (char)s[i] : '?';
    while (cut && o < max)
        buf[o++] = '.';
    buf[o] = '\0';
}

static bool ext_critical(X509 *cert, int nid)
{
    int loc = X509_get_ext_by_NID(cert, nid, -1);
    return loc >= 0 && X509_EXTENSION_get_critical(X509_get_ext(cert, loc)) == 1;
}

/* The single URI SAN of a certificate, as a validated SPIFFE ID with a path. */
static int leaf_uri(X509 *leaf, char *id, ward_err *why)
{
    int rc = 0, crit = 0, n_uri = 0;
    const ASN1_IA5STRING *uri = NULL;
    GENERAL_NAMES *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, &crit, NULL);
    if (gens == NULL) {
        ward_err_set(why, crit == -1 ? "certificate has no URI SAN (no subjectAltName)"
                                     : "certificate's subjectAltName is malformed");
        return WARD_EINVAL;
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_URI) {
            if (n_uri++ == 0)
                uri = g->d.uniformResourceIdentifier;
        }
    }
    if (n_uri != 1) {
        if (n_uri == 0)
            ward_err_set(why, "certificate has no URI SAN");
        else
            ward_err_set(why, "certificate has %d URI SANs (an X509-SVID has exactly one)", n_uri);
        rc = WARD_EINVAL;
        goto fail;
    }
    const unsigned char *s = ASN1_STRING_get0_data(uri);
    int len = ASN1_STRING_length(uri);
    ward_spiffe_id sid;
    ward_err e;
    char shown[160];
    ident_sanitize(s, len > 0 ? (size_t)len : 0, shown, sizeof(shown));
    if (len <= 0 || memchr(s, '\0', (size_t)len) != NULL ||
        ward_spiffe_id_parse((const char *)s, (size_t)len, &sid, &e) < 0) {
        ward_err_set(why, "URI SAN \"%s\" is not a SPIFFE ID: %s", shown,
                     len <= 0                       ? "empty"
                     : memchr(s, '\0', (size_t)len) ? "NUL byte"
                                                    : e.msg);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (sid.path_len == 0) {
        ward_err_set(why, "SPIFFE ID %s has no path (a leaf SVID needs a workload ID)", shown);
        rc = WARD_EINVAL;
        goto fail;
    }
    memcpy(id, s, (size_t)len);
    id[len] = '\0';
fail:
    GENERAL_NAMES_free(gens);
    return rc;
}

int ident_svid_check_leaf(X509 *leaf, char *id, ward_err *why)
{
    char tmp[IDENT_ID_MAX];
    if (leaf == NULL) {
        ward_err_set(why, "no certificate");
        return WARD_EINVAL;
    }
    uint32_t flags = X509_get_extension_flags(leaf);
    if (flags & EXFLAG_INVALID) {
        ward_err_set(why, "certificate has malformed or duplicate extensions");
        return WARD_EINVAL;
    }
    if (flags & EXFLAG_CA) {
        ward_err_set(why, "leaf is a CA (basicConstraints CA=true)");
        return WARD_EINVAL;
    }
    if (leaf_uri(leaf, tmp, why) < 0)
        return WARD_EINVAL;
    if (!(flags & EXFLAG_KUSAGE)) {
        ward_err_set(why, "certificate has no key usage extension");
        return WARD_EINVAL;
    }
    if (!ext_critical(leaf, NID_key_usage)) {
        ward_err_set(why, "key usage is not critical");
        return WARD_EINVAL;
    }
    uint32_t ku = X509_get_key_usage(leaf);
    if (!(ku & KU_DIGITAL_SIGNATURE)) {
        ward_err_set(why, "key usage lacks digitalSignature");
        return WARD_EINVAL;
    }
    if (ku & KU_KEY_CERT_SIGN) {
        ward_err_set(why, "key usage has keyCertSign (a leaf must not sign certificates)");
        return WARD_EINVAL;
    }
    if (ku & KU_CRL_SIGN) {
        ward_err_set(why, "key usage has cRLSign (a leaf must not sign CRLs)");
        return WARD_EINVAL;
    }
    if (id != NULL)
        memcpy(id, tmp, strlen(tmp) + 1);
    return 0;
}

/* Names the certificate a verification error is about. */
static void chain_error(X509_STORE_CTX *ctx, const ident_bundle *bundle, ward_err *why)
{
    int e = X509_STORE_CTX_get_error(ctx);
    int depth = X509_STORE_CTX_get_error_depth(ctx);
    X509 *cert = X509_STORE_CTX_get_current_cert(ctx);
    char which[48], t[40];
    if (depth <= 0)
        snprintf(which, sizeof(which), "leaf certificate");
    else
        snprintf(which, sizeof(which), "CA certificate at depth %d", depth);
    time_t when = 0;
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        if (cert == NULL || ident_asn1_time_get(X509_get0_notAfter(cert), &when) < 0)
            when = 0;
        ident_time_format(when, t, sizeof(t));
        ward_err_set(why, "%s has expired (at %s)", which, t);
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        if (cert == NULL || ident_asn1_time_get(X509_get0_notBefore(cert), &when) < 0)
            when = 0;
        ident_time_format(when, t, sizeof(t));
        ward_err_set(why, "%s is not yet valid (valid from %s)", which, t);
        break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
        ward_err_set(why, "%s is signed by an unknown authority (not in the bundle of %s)", which,
                     ident_bundle_trust_domain(bundle));
        break;
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        ward_err_set(why, "%s is signed by an unknown authority (signature does not verify)",
                     which);
        break;
    default: ward_err_set(why, "%s: %s", which, X509_verify_cert_error_string(e)); break;
    }
}

int ident_svid_verify(STACK_OF(X509) * chain, const ident_bundle *bundle, time_t now, char *id,
                      ward_err *why)
{
    int rc = 0;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    STACK_OF(X509) *untrusted = NULL;
    char leaf_id[IDENT_ID_MAX];
    int n = chain ? sk_X509_num(chain) : 0;
    if (bundle == NULL || n < 1) {
        ward_err_set(why, bundle ? "empty certificate chain" : "no bundle");
        return WARD_EINVAL;
    }
    if (n > SVID_CHAIN_MAX) {
        ward_err_set(why, "certificate chain longer than %d", SVID_CHAIN_MAX);
        return WARD_ELIMIT;
    }
    X509 *leaf = sk_X509_value(chain, 0);
    WARD_TRY(ident_svid_check_leaf(leaf, leaf_id, why));
    ward_spiffe_id sid;
    if (ward_spiffe_id_parse(leaf_id, strlen(leaf_id), &sid, NULL) < 0) {
        rc = WARD_EINVAL;
        goto fail;
    }
    const char *td = ident_bundle_trust_domain(bundle);
    if (sid.td_len != strlen(td) || memcmp(sid.td, td, sid.td_len) != 0) {
        ward_err_set(why, "trust domain %.*s is not %s", (int)sid.td_len, sid.td, td);
        rc = WARD_EINVAL;
        goto fail;
    }
    size_t na = ident_bundle_x509_count(bundle);
    if (na == 0) {
        ward_err_set(why, "the bundle of %s has no X.509 authorities", td);
        rc = WARD_EINVAL;
        goto fail;
    }
    store = X509_STORE_new();
    untrusted = sk_X509_new_null();
    ctx = X509_STORE_CTX_new();
    if (store == NULL || untrusted == NULL || ctx == NULL) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    /* Only the bundle's authorities, never system roots. */
    for (size_t i = 0; i < na; i++)
        if (X509_STORE_add_cert(store, ident_bundle_x509(bundle, i)) != 1) {
            rc = WARD_ENOMEM;
            goto fail;
        }
    for (int i = 1; i < n; i++)
        if (sk_X509_push(untrusted, sk_X509_value(chain, i)) <= 0) {
            rc = WARD_ENOMEM;
            goto fail;
        }
    if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1) {
        rc = WARD_ENOMEM;
        goto fail;
    }
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(param, now);
    X509_VERIFY_PARAM_set_depth(param, SVID_DEPTH_MAX);
    /* Every bundle authority is a trust anchor, self-signed or not (an
     * upstream intermediate, as go-spiffe treats bundle certificates). */
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_ANY);
    if (X509_verify_cert(ctx) != 1) {
        chain_error(ctx, bundle, why);
        rc = WARD_EINVAL;
        goto fail;
    }
    if (id != NULL)
        memcpy(id, leaf_id, strlen(leaf_id) + 1);
fail:
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    sk_X509_free(untrusted);
    X509_STORE_free(store);
    return rc;
}
