/* api.c - wardd's workload API over HTTPS: attest, renew and JWT-SVIDs, the bundle */
#include "cmd/wardd/wardd.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RATE_WINDOW   60 /* seconds */
#define AUDIENCE_MAX  16
#define JWT_TTL_MAX_S (24 * 3600)

static const char *const attest_members[] = {"token", "csr", NULL};
static const char *const renew_members[] = {"csr", NULL};
static const char *const jwt_members[] = {"audience", "ttl", NULL};

/* ---- failed token attempts per peer address ---------------------------------------------- */

static void peer_ip(const proxy_peer *peer, char *out, size_t size)
{
    const char *a = peer->addr;
    const char *end = a[0] == '[' ? strchr(a, ']') : strrchr(a, ':');
    size_t start = a[0] == '[' ? 1 : 0;
    size_t n = end != NULL ? (size_t)(end - a) - start : strlen(a);
    snprintf(out, size, "%.*s", (int)n, a + start);
}

static wardd_rate *rate_find(wardd *d, const char *ip, time_t now, bool create)
{
    for (size_t i = 0; i < d->n_rates; i++)
        if (strcmp(d->rates[i].ip, ip) == 0)
            return &d->rates[i];
    if (!create)
        return NULL;
    wardd_rate *e;
    if (d->n_rates < WARDD_RATE_MAX) {
        e = &d->rates[d->n_rates++];
    } else { /* reuse the stalest entry */
        e = &d->rates[0];
        for (size_t i = 1; i < d->n_rates; i++)
            if (d->rates[i].window < e->window)
                e = &d->rates[i];
    }
    memset(e, 0, sizeof(*e));
    snprintf(e->ip, sizeof(e->ip), "%s", ip);
    e->window = now;
    return e;
}

static bool rate_blocked(wardd *d, const char *ip, time_t now, time_t *retry)
{
    wardd_rate *e = rate_find(d, ip, now, false);
    if (e == NULL || now >= e->window + RATE_WINDOW || e->failures < d->cfg.attest_failures)
        return false;
    *retry = e->window + RATE_WINDOW - now;
    return true;
}

static void rate_fail(wardd *d, const char *ip, time_t now)
{
    wardd_rate *e = rate_find(d, ip, now, true);
    if (now >= e->window + RATE_WINDOW) {
        e->window = now;
        e->failures = 0;
    }
    e->failures++;
}

/* ---- pieces
 * -------------------------------------------------------------------------------------- */

/* Checks a CSR before a join token is spent on it: PEM, its own signature,
 * no CA=true. (ident_ca_sign_csr checks everything again.) */
static int csr_precheck(const char *pem, size_t len, wardd_refusal *why)
{
    int rc = WARD_EINVAL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509_REQ *req = bio ? PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL) : NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    BASIC_CONSTRAINTS *bc = NULL;
    if (req == NULL) {
        wardd_refuse(why, 400, "bad_request", "malformed CSR (expected a PEM CERTIFICATE REQUEST)");
        goto fail;
    }
    EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
    if (pk == NULL || X509_REQ_verify(req, pk) != 1) {
        wardd_refuse(why, 400, "bad_request", "CSR signature invalid");
        goto fail;
    }
    exts = X509_REQ_get_extensions(req);
    int crit = 0;
    bc = exts ? X509V3_get_d2i(exts, NID_basic_constraints, &crit, NULL) : NULL;
    if (bc != NULL && bc->ca) {
        wardd_refuse(why, 400, "bad_request", "CSR asks for CA=true (an SVID is never a CA)");
        goto fail;
    }
    rc = 0;
fail:
    ERR_clear_error();
    BASIC_CONSTRAINTS_free(bc);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    BIO_free(bio);
    return rc;
}

static const char *string_member(const cJSON *root, const char *name)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, name);
    return cJSON_IsString(m) && m->valuestring[0] != '\0' ? m->valuestring : NULL;
}

static void refusal_event(wardd *d, const char *name, const wardd_refusal *why, const char *peer,
                          const char *spiffe_id, const char *via)
{
    cJSON *ev = wardd_event_new(name);
    if (spiffe_id != NULL) {
        cJSON_AddStringToObject(ev, "subject", spiffe_id);
        cJSON_AddStringToObject(ev, "principal", spiffe_id); /* it authenticated with it */
    }
    if (via != NULL)
        cJSON_AddStringToObject(ev, "via", via);
    cJSON_AddNumberToObject(ev, "status", why->status);
    cJSON_AddStringToObject(ev, "error", why->code);
    cJSON_AddStringToObject(ev, "reason", why->message);
    cJSON_AddStringToObject(ev, "peer", peer);
    wardd_event_emit(d, ev);
}

/* Signs the CSR for id and answers the svid_response. */
static int issue(wardd *d, proxy_http_exchange *ex, const char *csr, const char *id,
                 const char *peer, const char *via, const char *token_id, time_t now,
                 wardd_refusal *why)
{
    ward_buf chain;
    ward_buf_init(&chain);
    ward_err err;
    wardd_leaf leaf;
    int rc = ident_ca_sign_csr(d->ca, csr, strlen(csr), id, 0, now, &chain, &err);
    if (rc < 0) {
        if (rc == WARD_EINVAL || rc == WARD_ESYNTAX || rc == WARD_ELIMIT)
            wardd_refuse(why, 400, "bad_request", "%s", err.msg);
        else
            wardd_refuse(why, 500, "internal_error", "signing failed: %s", err.msg);
        ward_buf_dispose(&chain);
        return rc;
    }
    wardd_leaf_info(chain.ptr, chain.len, &leaf);
    char exp[32];
    wardd_time_format(leaf.not_after, exp, sizeof(exp));
    /* on the record first: an SVID whose issuance cannot be recorded is not handed out */
    cJSON *ev = wardd_event_new("svid.issued");
    cJSON_AddStringToObject(ev, "subject", id);
    cJSON_AddStringToObject(ev, "serial", leaf.serial);
    cJSON_AddStringToObject(ev, "not_after", exp);
    cJSON_AddStringToObject(ev, "via", via);
    if (strcmp(via, "renew") == 0)
        cJSON_AddStringToObject(ev, "principal", id);
    if (token_id != NULL)
        cJSON_AddStringToObject(ev, "token_id", token_id);
    cJSON_AddNumberToObject(ev, "status", 200);
    cJSON_AddStringToObject(ev, "peer", peer);
    if (wardd_event_emit(d, ev) < 0) {
        wardd_refuse(why, 503, "audit_unavailable",
                     "the issuance could not be recorded in the audit trail; no SVID was issued");
        ward_buf_dispose(&chain);
        return WARD_EIO;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "spiffe_id", id);
    cJSON_AddStringToObject(o, "svid", chain.ptr);
    cJSON_AddStringToObject(o, "expires_at", exp);
    cJSON_AddRawToObject(o, "bundle", d->bundle_json.ptr);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    ward_buf_dispose(&chain);
    if (s == NULL) {
        wardd_refuse(why, 503, "unavailable", "out of memory");
        return WARD_ENOMEM;
    }
    wardd_reply_json(ex, 200, s, strlen(s));
    free(s);
    return 0;
}

/* The client's X509-SVID, checked now against the current bundle. */
static int authenticate(wardd *d, proxy_http_exchange *ex, time_t now, char *id, wardd_refusal *why)
{
    const proxy_peer *peer = proxy_http_exchange_peer(ex);
    ward_err e;
    if (peer->chain == NULL) {
        wardd_refuse(why, 401, "client_certificate_required",
                     "this endpoint needs mTLS with an X509-SVID of %s", d->cfg.trust_domain);
        return WARD_ENOENT;
    }
    if (proxy_http_exchange_verify_peer(ex, d->bundle, now, id, &e) < 0) {
        wardd_refuse(why, 401, "client_certificate_invalid", "client certificate: %s", e.msg);
        return WARD_EINVAL;
    }
    return 0;
}

/* ---- POST /v1/attest
 * -------------------------------------------------------------------------------- */

static void attest(wardd *d, proxy_http_exchange *ex, const char *peer, time_t now)
{
    wardd_refusal why;
    const char *event = "svid.refused";
    char id[IDENT_ID_MAX] = "", ip[64], hash[17] = "";
    cJSON *root = wardd_read_json(ex, attest_members, &why);
    proxy_slice body = proxy_http_exchange_body(ex);
    if (body.len > 0)
        OPENSSL_cleanse((char *)body.ptr, body.len); /* it held the token */
    if (root == NULL)
        goto refuse;
    /* token.redeemed and svid.issued (or one refusal): their places first */
    if (wardd_events_reserve(d, 2, &why) < 0)
        goto refuse;
    const char *token = string_member(root, "token");
    const char *csr = string_member(root, "csr");
    if (token == NULL || csr == NULL) {
        wardd_refuse(&why, 400, "bad_request",
                     "\"token\" and \"csr\" are required non-empty strings");
        goto refuse;
    }
    event = "token.refused";
    wardd_token_hash(token, hash);
    peer_ip(proxy_http_exchange_peer(ex), ip, sizeof(ip));
    time_t retry = 0;
    if (rate_blocked(d, ip, now, &retry)) {
        wardd_refuse(&why, 429, "rate_limited",
                     "too many failed join token attempts from %s; retry in %lld s", ip,
                     (long long)retry);
        goto refuse;
    }
    event = "svid.refused";
    if (csr_precheck(csr, strlen(csr), &why) < 0)
        goto refuse; /* the token is not spent on a bad CSR */
    event = "token.refused";
    ward_err e;
    int rc = WARD_ENOENT;
    ward_err_set(&e, "unknown join token");
    if (strlen(token) < IDENT_TOKEN_MAX) /* longer is no token of ours */
        rc = ident_tokens_redeem(d->tokens, token, now, id, &e);
    if (rc < 0) {
        id[0] = '\0';
        switch (rc) {
        case WARD_ELIMIT: wardd_refuse(&why, 429, "rate_limited", "%s", e.msg); break;
        case WARD_ENOENT: wardd_refuse(&why, 401, "token_unknown", "%s", e.msg); break;
        case WARD_ERANGE: wardd_refuse(&why, 401, "token_expired", "%s", e.msg); break;
        case WARD_EINVAL: wardd_refuse(&why, 401, "token_used", "%s", e.msg); break;
        default: wardd_refuse(&why, 500, "internal_error", "join tokens: %s", e.msg); break;
        }
        if (rc != WARD_ELIMIT && rc != WARD_EIO && rc != WARD_ENOMEM)
            rate_fail(d, ip, now);
        goto refuse;
    }
    cJSON *ev = wardd_event_new("token.redeemed");
    cJSON_AddStringToObject(ev, "subject", id);
    cJSON_AddStringToObject(ev, "token_id", hash);
    cJSON_AddStringToObject(ev, "via", "attest");
    cJSON_AddStringToObject(ev, "peer", peer);
    wardd_event_emit(d, ev);
    event = "svid.refused";
    if (issue(d, ex, csr, id, peer, "attest", hash, now, &why) < 0)
        goto refuse;
    OPENSSL_cleanse((char *)token, strlen(token));
    cJSON_Delete(root);
    return;
refuse:
    if (root != NULL) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "token");
        if (cJSON_IsString(t))
            OPENSSL_cleanse(t->valuestring, strlen(t->valuestring));
    }
    cJSON_Delete(root);
    cJSON *rev = wardd_event_new(event);
    if (id[0] != '\0')
        cJSON_AddStringToObject(rev, "subject", id);
    if (hash[0] != '\0')
        cJSON_AddStringToObject(rev, "token_id", hash);
    cJSON_AddStringToObject(rev, "via", "attest");
    cJSON_AddNumberToObject(rev, "status", why.status);
    cJSON_AddStringToObject(rev, "error", why.code);
    cJSON_AddStringToObject(rev, "reason", why.message);
    cJSON_AddStringToObject(rev, "peer", peer);
    wardd_event_emit(d, rev);
    wardd_reply_refusal(ex, &why);
}

/* ---- POST /v1/renew
 * -------------------------------------------------------------------------------- */

static void renew(wardd *d, proxy_http_exchange *ex, const char *peer, time_t now)
{
    wardd_refusal why;
    char id[IDENT_ID_MAX] = "";
    cJSON *root = NULL;
    if (authenticate(d, ex, now, id, &why) < 0) {
        id[0] = '\0';
        goto refuse;
    }
    root = wardd_read_json(ex, renew_members, &why);
    if (root == NULL)
        goto refuse;
    if (wardd_events_reserve(d, 1, &why) < 0)
        goto refuse;
    const char *csr = string_member(root, "csr");
    if (csr == NULL) {
        wardd_refuse(&why, 400, "bad_request", "\"csr\" is a required non-empty string");
        goto refuse;
    }
    /* no precheck: nothing is spent on a bad CSR here, and ident_ca_sign_csr checks it */
    if (issue(d, ex, csr, id, peer, "renew", NULL, now, &why) < 0)
        goto refuse;
    cJSON_Delete(root);
    return;
refuse:
    cJSON_Delete(root);
    refusal_event(d, "svid.refused", &why, peer, id[0] ? id : NULL, "renew");
    wardd_reply_refusal(ex, &why);
}

/* ---- POST /v1/jwt
 * ------------------------------------------------------------------------------------ */

static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* The "exp" claim of a compact JWS we just made, or 0. */
static time_t jwt_exp(const char *jwt)
{
    const char *p = strchr(jwt, '.');
    const char *q = p ? strchr(p + 1, '.') : NULL;
    if (q == NULL)
        return 0;
    size_t n = (size_t)(q - p - 1);
    char *json = malloc(n + 1);
    if (json == NULL)
        return 0;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value(p[1 + i]);
        if (v < 0)
            break;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            json[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    json[o] = '\0';
    cJSON *c = cJSON_Parse(json);
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(c, "exp");
    time_t t = cJSON_IsNumber(exp) ? (time_t)exp->valuedouble : 0;
    cJSON_Delete(c);
    free(json);
    return t;
}

static void jwt(wardd *d, proxy_http_exchange *ex, const char *peer, time_t now)
{
    wardd_refusal why;
    char id[IDENT_ID_MAX] = "";
    cJSON *root = NULL;
    const char *aud[AUDIENCE_MAX];
    size_t n_aud = 0;
    ward_buf token;
    ward_buf_init(&token);
    if (authenticate(d, ex, now, id, &why) < 0) {
        id[0] = '\0';
        goto refuse;
    }
    root = wardd_read_json(ex, jwt_members, &why);
    if (root == NULL)
        goto refuse;
    if (wardd_events_reserve(d, 1, &why) < 0)
        goto refuse;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "audience");
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) < 1 || cJSON_GetArraySize(a) > AUDIENCE_MAX) {
        wardd_refuse(&why, 400, "bad_request", "\"audience\" must be an array of 1..%d strings",
                     AUDIENCE_MAX);
        goto refuse;
    }
    for (const cJSON *e = a->child; e != NULL; e = e->next) {
        if (!cJSON_IsString(e) || e->valuestring[0] == '\0' ||
            strlen(e->valuestring) > WARD_SPIFFE_ID_MAX) {
            wardd_refuse(&why, 400, "bad_request",
                         "\"audience\" entries must be non-empty strings of at most %d bytes",
                         WARD_SPIFFE_ID_MAX);
            goto refuse;
        }
        aud[n_aud++] = e->valuestring;
    }
    uint64_t ttl_s = 0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "ttl");
    if (t != NULL) {
        uint64_t ns;
        if (!cJSON_IsString(t) ||
            ward_parse_duration(t->valuestring, strlen(t->valuestring),
                                (uint64_t)JWT_TTL_MAX_S * 1000000000ull, &ns) < 0 ||
            ns < 1000000000ull) {
            wardd_refuse(&why, 400, "bad_request",
                         "\"ttl\" must be a duration from 1s to 24h (\"5m\")");
            goto refuse;
        }
        ttl_s = ns / 1000000000ull;
    }
    ward_err e;
    int rc = ident_ca_sign_jwt(d->ca, id, aud, n_aud, ttl_s, now, &token, &e);
    if (rc < 0) {
        if (rc == WARD_EINVAL || rc == WARD_ERANGE || rc == WARD_ELIMIT)
            wardd_refuse(&why, 400, "bad_request", "%s", e.msg);
        else
            wardd_refuse(&why, 500, "internal_error", "signing failed: %s", e.msg);
        goto refuse;
    }
    time_t exp_t = jwt_exp(token.ptr);
    char exp[32];
    wardd_time_format(exp_t, exp, sizeof(exp));
    cJSON *ev = wardd_event_new("jwt.issued"); /* on the record before it is handed out */
    cJSON_AddStringToObject(ev, "subject", id);
    cJSON_AddStringToObject(ev, "principal", id);
    cJSON_AddItemToObject(ev, "audience", cJSON_Duplicate(a, 1));
    cJSON_AddStringToObject(ev, "not_after", exp);
    cJSON_AddStringToObject(ev, "via", "jwt");
    cJSON_AddNumberToObject(ev, "status", 200);
    cJSON_AddStringToObject(ev, "peer", peer);
    if (wardd_event_emit(d, ev) < 0) {
        OPENSSL_cleanse(token.ptr, token.len);
        wardd_refuse(&why, 503, "audit_unavailable",
                     "the issuance could not be recorded in the audit trail; no JWT-SVID was "
                     "issued");
        goto refuse;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", token.ptr);
    cJSON_AddStringToObject(o, "spiffe_id", id);
    cJSON_AddStringToObject(o, "expires_at", exp);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s == NULL) {
        wardd_refuse(&why, 503, "unavailable", "out of memory");
        goto refuse;
    }
    wardd_reply_json(ex, 200, s, strlen(s));
    OPENSSL_cleanse(s, strlen(s));
    free(s);
    OPENSSL_cleanse(token.ptr, token.len);
    ward_buf_dispose(&token);
    cJSON_Delete(root);
    return;
refuse:
    ward_buf_dispose(&token);
    cJSON_Delete(root);
    refusal_event(d, "jwt.refused", &why, peer, id[0] ? id : NULL, "jwt");
    wardd_reply_refusal(ex, &why);
}

/* ---- routing
 * -------------------------------------------------------------------------------------------- */

void wardd_api_handle(proxy_http_exchange *ex, void *data)
{
    wardd *d = data;
    const proxy_http_request *r = proxy_http_exchange_request(ex);
    char peer[PROXY_ADDR_STRLEN + 32];
    wardd_peer_name(proxy_http_exchange_peer(ex), peer, sizeof(peer));
    time_t now = time(NULL);
    if (d->stopping)
        proxy_http_exchange_set_close(ex);
    bool post = wardd_method_is(r, "POST");
    if (wardd_path_is(r, "/v1/bundle")) {
        if (wardd_method_is(r, "GET") || wardd_method_is(r, "HEAD"))
            wardd_reply_json(ex, 200, d->bundle_json.ptr, d->bundle_json.len);
        else
            wardd_reply_405(ex, "GET, HEAD");
        return;
    }
    const char *refused = wardd_path_is(r, "/v1/attest")  ? "svid.refused"
                          : wardd_path_is(r, "/v1/renew") ? "svid.refused"
                          : wardd_path_is(r, "/v1/jwt")   ? "jwt.refused"
                                                          : NULL;
    if (refused == NULL) {
        wardd_reply_error(ex, 404, "not_found", "no such endpoint: %.*s",
                          (int)(r->path.len > 200 ? 200 : r->path.len), r->path.ptr);
        return;
    }
    if (!post) {
        wardd_refusal why;
        wardd_refuse(&why, 405, "method_not_allowed", "method not allowed (use POST)");
        refusal_event(d, refused, &why, peer, NULL, NULL);
        wardd_reply_405(ex, "POST");
        return;
    }
    if (wardd_path_is(r, "/v1/attest"))
        attest(d, ex, peer, now);
    else if (wardd_path_is(r, "/v1/renew"))
        renew(d, ex, peer, now);
    else
        jwt(d, ex, peer, now);
    wardd_events_release(d);
}
