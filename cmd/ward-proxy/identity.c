/* identity.c - ward-proxy's SVID: static files or wardd, and the TLS contexts published to workers */
#include "cmd/ward-proxy/wp.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define ATTEST_WAIT_MS 30000 /* the first SVID must come within this at start */

static void tls_dispose(wp_tls *t)
{
    if (t->server)
        proxy_tls_ctx_unref(t->server);
    if (t->client)
        proxy_tls_ctx_unref(t->client);
    if (t->svid)
        ident_svid_unref(t->svid);
    memset(t, 0, sizeof(*t));
}

static int make_ctx(const proxy_config *cfg, ident_svid *svid, const ward_buf *pem, bool server,
                    proxy_tls_ctx **out, ward_err *err)
{
    proxy_tls_options o = {
        .server = server,
        .chain_pem = pem->ptr,
        .chain_len = pem->len,
        .key = ident_svid_key(svid),
        .bundle = ident_svid_bundle(svid),
        .peer = PROXY_TLS_PEER_REQUIRED,
        .allow_tls12 = cfg->tls.allow_tls12,
    };
    return proxy_tls_ctx_new(&o, out, err);
}

int wp_identity_publish(wp_proxy *px, ident_svid *svid, ward_err *err)
{
    wp_tls t = {0};
    ward_buf pem;
    ward_buf_init(&pem);
    int rc = ident_svid_chain_pem(svid, &pem);
    if (rc == 0)
        rc = make_ctx(px->cfg, svid, &pem, true, &t.server, err);
    if (rc == 0)
        rc = make_ctx(px->cfg, svid, &pem, false, &t.client, err);
    ward_buf_dispose(&pem);
    if (rc < 0) {
        tls_dispose(&t);
        return rc;
    }
    ident_svid_ref(svid);
    t.svid = svid;
    pthread_mutex_lock(&px->lock);
    wp_tls old = px->tls;
    px->tls = t;
    px->tls_gen++;
    pthread_mutex_unlock(&px->lock);
    tls_dispose(&old);
    proxy_admin_state_set_svid(px->admin_state, ident_svid_id(svid), ident_svid_not_after(svid));
    return 0;
}

/* ---- wardd mode: the renewal thread hands each new SVID to the main loop ---- */

static void on_update(ident_svid *svid, const ward_err *why, void *data)
{
    wp_proxy *px = data;
    if (svid == NULL) {
        wp_log("identity: renewal failed, serving with the current SVID: %s",
               why ? why->msg : "unknown error");
        return;
    }
    ident_svid_ref(svid);
    pthread_mutex_lock(&px->lock);
    ident_svid *old = px->pending_svid;
    px->pending_svid = svid;
    pthread_mutex_unlock(&px->lock);
    if (old)
        ident_svid_unref(old);
    uv_async_send(&px->svid_ready);
}

static void on_svid_ready(uv_async_t *a)
{
    wp_proxy *px = a->data;
    pthread_mutex_lock(&px->lock);
    ident_svid *svid = px->pending_svid;
    px->pending_svid = NULL;
    pthread_mutex_unlock(&px->lock);
    pthread_mutex_lock(&px->lock);
    bool current = svid != NULL && svid == px->tls.svid; /* the first one, published at start */
    pthread_mutex_unlock(&px->lock);
    if (svid == NULL || px->stopping || current) {
        if (svid)
            ident_svid_unref(svid);
        return;
    }
    ward_err err;
    ward_err_clear(&err);
    if (wp_identity_publish(px, svid, &err) == 0) {
        wp_log("identity: new SVID %s, valid until %ld", ident_svid_id(svid),
               (long)ident_svid_not_after(svid));
        wp_workers_notify(px);
    } else {
        wp_log("identity: cannot use the new SVID: %s", err.msg);
    }
    ident_svid_unref(svid);
}

static int start_wardd(wp_proxy *px, ward_err *err)
{
    const proxy_config *cfg = px->cfg;
    char *token = NULL, *pin = NULL;
    size_t token_len = 0, pin_len = 0;
    int rc;
    if (cfg->identity.state_dir != NULL && mkdir(cfg->identity.state_dir, 0700) < 0 &&
        errno != EEXIST) {
        ward_err_set(err, "identity.state_dir %s: %s", cfg->identity.state_dir, strerror(errno));
        return WARD_EIO;
    }
    rc = ward_file_read(cfg->identity.token_file, 4096, &token, &token_len, err);
    if (rc < 0)
        return rc;
    while (token_len > 0 && (token[token_len - 1] == '\n' || token[token_len - 1] == '\r' ||
                             token[token_len - 1] == ' '))
        token[--token_len] = '\0';
    rc = ward_file_read(cfg->identity.bundle_file, (size_t)1 << 20, &pin, &pin_len, err);
    if (rc < 0)
        goto done;
    ident_client_options o = {
        .conf = {.server = cfg->identity.server, .bundle_data = pin, .bundle_len = pin_len},
        .token = token,
        .state_dir = cfg->identity.state_dir,
        .cb = on_update,
        .data = px,
    };
    rc = ident_client_start(&o, &px->idc, err);
    if (rc < 0)
        goto done;
    ident_svid *svid = ident_client_wait(px->idc, ATTEST_WAIT_MS);
    if (svid == NULL) {
        ward_err_set(err, "no SVID from %s within %d s (see the renewal errors above)",
                     cfg->identity.server, ATTEST_WAIT_MS / 1000);
        rc = WARD_EIO;
        goto done;
    }
    /* the update callback may also have queued it: publishing twice is harmless */
    rc = wp_identity_publish(px, svid, err);
    ident_svid_unref(svid);
done:
    if (token != NULL) {
        OPENSSL_cleanse(token, token_len);
        free(token);
    }
    free(pin);
    return rc;
}

static int load_static(wp_proxy *px, ward_err *err)
{
    const proxy_config *cfg = px->cfg;
    ident_svid *svid = NULL;
    int rc = ident_svid_load_files(cfg->identity.cert_file, cfg->identity.key_file,
                                   cfg->identity.bundle_file, time(NULL), &svid, err);
    if (rc < 0)
        return rc;
    rc = wp_identity_publish(px, svid, err);
    ident_svid_unref(svid);
    return rc;
}

int wp_identity_start(wp_proxy *px, ward_err *err)
{
    uv_async_init(px->loop, &px->svid_ready, on_svid_ready);
    px->svid_ready.data = px;
    if (px->cfg->identity.mode == PROXY_IDENTITY_STATIC)
        return load_static(px, err);
    return start_wardd(px, err);
}

void wp_identity_reload(wp_proxy *px)
{
    if (px->cfg->identity.mode != PROXY_IDENTITY_STATIC)
        return;
    ward_err err;
    ward_err_clear(&err);
    if (load_static(px, &err) < 0) {
        wp_log("identity: reload failed, keeping the current SVID: %s", err.msg);
        return;
    }
    wp_workers_notify(px);
}

void wp_identity_stop(wp_proxy *px)
{
    if (px->idc != NULL)
        ident_client_stop(px->idc);
    px->idc = NULL;
    if (!uv_is_closing((uv_handle_t *)&px->svid_ready))
        uv_close((uv_handle_t *)&px->svid_ready, NULL);
    pthread_mutex_lock(&px->lock);
    if (px->pending_svid)
        ident_svid_unref(px->pending_svid);
    px->pending_svid = NULL;
    pthread_mutex_unlock(&px->lock);
    tls_dispose(&px->tls);
}
