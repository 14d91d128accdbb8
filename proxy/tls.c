/* tls.c - TLS contexts: our SVID and key, TLS 1.3, peers checked only against a SPIFFE bundle */
#include "proxy/proxy_int.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct proxy_tls_ctx {
    atomic_int refs;
    SSL_CTX *ssl;
    ident_bundle *bundle;
    proxy_tls_peer_mode peer;
    bool server;
};

static void openssl_reason(ward_err *err, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256] = "unknown error";
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    ward_err_set(err, "%s: %s", what, buf);
}

/* Replaces OpenSSL's chain verification: never system roots, never host
 * names. OPTIONAL (server): accept here, the application checks per request;
 * NONE (client): not checked; REQUIRED: ident_svid_verify against the
 * context's bundle, and the expected ID. */
static int verify_cb(X509_STORE_CTX *xs, void *arg)
{
    proxy_tls_ctx *t = arg;
    if (t->peer != PROXY_TLS_PEER_REQUIRED)
        return 1;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    proxy_tls_check *chk = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    STACK_OF(X509) *untrusted = X509_STORE_CTX_get0_untrusted(xs);
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    STACK_OF(X509) *chain = sk_X509_new_null();
    ward_err why;
    char id[IDENT_ID_MAX];
    int ok = 0;
    ward_err_clear(&why);
    if (chain == NULL || leaf == NULL || !sk_X509_push(chain, leaf)) {
        ward_err_set(&why, "out of memory");
        goto done;
    }
    for (int i = 0; untrusted != NULL && i < sk_X509_num(untrusted); i++) {
        X509 *c = sk_X509_value(untrusted, i);
        if (X509_cmp(c, leaf) != 0 && !sk_X509_push(chain, c)) {
            ward_err_set(&why, "out of memory");
            goto done;
        }
    }
    if (ident_svid_verify(chain, t->bundle, time(NULL), id, &why) < 0)
        goto done;
    if (chk != NULL && chk->expected_id != NULL && strcmp(id, chk->expected_id) != 0) {
        ward_err_set(&why, "peer is %s, expected %s", id, chk->expected_id);
        goto done;
    }
    if (chk != NULL) {
        free(chk->peer_id);
        chk->peer_id = strdup(id);
        if (chk->peer_id == NULL) {
            ward_err_set(&why, "out of memory");
            goto done;
        }
    }
    ok = 1;
done:
    sk_X509_free(chain); /* the certificates are borrowed */
    if (!ok) {
        if (chk != NULL)
            snprintf(chk->reason, sizeof(chk->reason), "peer certificate: %.480s", why.msg);
        X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
    }
    return ok;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static int load_chain(SSL_CTX *ctx, const char *pem, size_t len, ward_err *err)
{
    int rc = WARD_EINVAL;
    BIO *bio = NULL;
    X509 *x = NULL;
    int n = 0;
    if (len > INT32_MAX || (bio = BIO_new_mem_buf(pem, (int)len)) == NULL)
        goto fail;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        int ok = n == 0 ? SSL_CTX_use_certificate(ctx, x) : SSL_CTX_add1_chain_cert(ctx, x);
        X509_free(x);
        if (ok != 1) {
            openssl_reason(err, "certificate chain");
            goto fail;
        }
        n++;
    }
    ERR_clear_error(); /* the end of the PEM data */
    if (n == 0) {
        ward_err_set(err, "certificate chain: no PEM certificate");
        goto fail;
    }
    rc = 0;
fail:
    BIO_free(bio);
    return rc;
}

int proxy_tls_ctx_new(const proxy_tls_options *o, proxy_tls_ctx **out, ward_err *err)
{
    int rc = WARD_EINVAL;
    proxy_tls_ctx *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return WARD_ENOMEM;
    atomic_init(&t->refs, 1);
    t->server = o->server;
    t->peer = o->peer;
    if (o->peer == PROXY_TLS_PEER_REQUIRED && o->bundle == NULL) {
        ward_err_set(err, "a required peer check needs a bundle");
        goto fail;
    }
    if (o->server && (o->chain_pem == NULL || o->key == NULL)) {
        ward_err_set(err, "a server needs a certificate and a key");
        goto fail;
    }
    if (!o->server && o->peer == PROXY_TLS_PEER_OPTIONAL) {
        ward_err_set(err, "a client checks its server or does not");
        goto fail;
    }
    t->ssl = SSL_CTX_new(o->server ? TLS_server_method() : TLS_client_method());
    if (t->ssl == NULL) {
        openssl_reason(err, "SSL_CTX_new");
        rc = WARD_ENOMEM;
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ssl, o->allow_tls12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_options(t->ssl, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                    SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_cache_mode(t->ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(t->ssl, 0);
    SSL_CTX_set_mode(t->ssl, SSL_MODE_RELEASE_BUFFERS);
    if (o->chain_pem != NULL) {
        WARD_TRY(load_chain(t->ssl, o->chain_pem, o->chain_len, err));
        if (o->key == NULL || SSL_CTX_use_PrivateKey(t->ssl, o->key) != 1 ||
            SSL_CTX_check_private_key(t->ssl) != 1) {
            openssl_reason(err, "private key");
            goto fail;
        }
    }
    if (o->bundle != NULL) {
        ident_bundle_ref(o->bundle);
        t->bundle = o->bundle;
    }
    SSL_CTX_set_cert_verify_callback(t->ssl, verify_cb, t);
    int mode = SSL_VERIFY_NONE;
    if (o->peer == PROXY_TLS_PEER_OPTIONAL)
        mode = SSL_VERIFY_PEER;
    else if (o->peer == PROXY_TLS_PEER_REQUIRED)
        mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(t->ssl, mode, NULL);
    if (o->server) {
        SSL_CTX_set_alpn_select_cb(t->ssl, alpn_select_cb, NULL);
    } else {
        static const unsigned char alpn[] = "\x08http/1.1";
        SSL_CTX_set_alpn_protos(t->ssl, alpn, sizeof(alpn) - 1);
    }
    *out = t;
    return 0;
fail:
    proxy_tls_ctx_unref(t);
    return rc;
}

void proxy_tls_ctx_ref(proxy_tls_ctx *t)
{
    atomic_fetch_add(&t->refs, 1);
}

void proxy_tls_ctx_unref(proxy_tls_ctx *t)
{
    if (t == NULL || atomic_fetch_sub(&t->refs, 1) != 1)
        return;
    SSL_CTX_free(t->ssl);
    if (t->bundle != NULL)
        ident_bundle_unref(t->bundle);
    free(t);
}

SSL *proxy_tls_ctx_ssl_new(proxy_tls_ctx *t)
{
    SSL *ssl = SSL_new(t->ssl);
    if (ssl == NULL)
        return NULL;
    if (t->server)
        SSL_set_accept_state(ssl);
    else
        SSL_set_connect_state(ssl);
    return ssl;
}

bool proxy_tls_ctx_is_server(const proxy_tls_ctx *t)
{
    return t->server;
}

proxy_tls_peer_mode proxy_tls_ctx_peer_mode(const proxy_tls_ctx *t)
{
    return t->peer;
}

int proxy_peer_verify(const proxy_peer *peer, const ident_bundle *bundle, time_t now, char *id,
                      ward_err *why)
{
    if (peer->chain == NULL || sk_X509_num(peer->chain) == 0) {
        ward_err_set(why, "no client certificate");
        return WARD_ENOENT;
    }
    return ident_svid_verify(peer->chain, bundle, now, id, why);
}
