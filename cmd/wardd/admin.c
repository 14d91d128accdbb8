/* admin.c - wardd's admin API on its Unix socket: join tokens and recent issuance */
#include "cmd/wardd/wardd.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOKENS_PREFIX  "/v1/admin/tokens/"
#define ISSUANCE_LIMIT 1000

static const char *const create_members[] = {"spiffe_id", "ttl", NULL};

static void admin_event(wardd *d, const char *name, const char *peer, const char *spiffe_id,
                        const char *hash, const wardd_refusal *why)
{
    cJSON *ev = wardd_event_new(name);
    if (spiffe_id != NULL)
        cJSON_AddStringToObject(ev, "subject", spiffe_id);
    if (hash != NULL)
        cJSON_AddStringToObject(ev, "token_id", hash);
    cJSON_AddStringToObject(ev, "via", "admin");
    if (why != NULL) {
        cJSON_AddNumberToObject(ev, "status", why->status);
        cJSON_AddStringToObject(ev, "error", why->code);
        cJSON_AddStringToObject(ev, "reason", why->message);
    }
    cJSON_AddStringToObject(ev, "peer", peer);
    wardd_event_emit(d, ev);
}

/* ---- POST /v1/admin/tokens ------------------------------------------------------------------- */

static void token_create(wardd *d, proxy_http_exchange *ex, const char *peer, time_t now)
{
    wardd_refusal why;
    char token[IDENT_TOKEN_MAX], hash[17];
    const char *id = NULL;
    cJSON *root = wardd_read_json(ex, create_members, &why);
    if (root == NULL)
        goto refuse;
    if (wardd_events_reserve(d, 1, &why) < 0) /* token.created (or the refusal) */
        goto refuse;
    const cJSON *idm = cJSON_GetObjectItemCaseSensitive(root, "spiffe_id");
    if (!cJSON_IsString(idm)) {
        wardd_refuse(&why, 400, "bad_request", "\"spiffe_id\" is a required string");
        goto refuse;
    }
    id = idm->valuestring;
    ward_spiffe_id sid;
    ward_err e;
    if (ward_spiffe_id_parse(id, strlen(id), &sid, &e) < 0) {
        wardd_refuse(&why, 400, "bad_request", "invalid SPIFFE ID: %s", e.msg);
        goto refuse;
    }
    if (sid.td_len != strlen(d->cfg.trust_domain) ||
        memcmp(sid.td, d->cfg.trust_domain, sid.td_len) != 0) {
        wardd_refuse(&why, 400, "bad_request", "%.*s is not this server's trust domain (%s)",
                     (int)sid.td_len, sid.td, d->cfg.trust_domain);
        goto refuse;
    }
    if (sid.path_len == 0) {
        wardd_refuse(&why, 400, "bad_request", "a workload SPIFFE ID needs a path");
        goto refuse;
    }
    if (strcmp(id, d->server_id) == 0) {
        wardd_refuse(&why, 400, "bad_request", "%s is wardd's own identity", id);
        goto refuse;
    }
    uint64_t ttl_s = 0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "ttl");
    if (t != NULL) {
        uint64_t ns;
        if (!cJSON_IsString(t) ||
            ward_parse_duration(t->valuestring, strlen(t->valuestring), UINT64_MAX, &ns) < 0 ||
            ns < 1000000000ull) {
            wardd_refuse(&why, 400, "bad_request", "\"ttl\" must be a duration of at least 1s");
            goto refuse;
        }
        ttl_s = ns / 1000000000ull;
    }
    int rc = ident_tokens_create(d->tokens, id, ttl_s, now, token, &e);
    if (rc < 0) {
        if (rc == WARD_ELIMIT)
            wardd_refuse(&why, 503, "unavailable", "%s", e.msg);
        else if (rc == WARD_EINVAL || rc == WARD_ERANGE)
            wardd_refuse(&why, 400, "bad_request", "%s", e.msg);
        else
            wardd_refuse(&why, 500, "internal_error", "%s", e.msg);
        goto refuse;
    }
    char exp[32];
    wardd_time_format(now + (time_t)(ttl_s ? ttl_s : 600), exp, sizeof(exp));
    wardd_token_hash(token, hash);
    /* on the record before the token is handed out; a token that cannot be
     * recorded is revoked at once */
    cJSON *ev = wardd_event_new("token.created");
    cJSON_AddStringToObject(ev, "subject", id);
    cJSON_AddStringToObject(ev, "token_id", hash);
    cJSON_AddStringToObject(ev, "not_after", exp);
    cJSON_AddStringToObject(ev, "via", "admin");
    cJSON_AddNumberToObject(ev, "status", 200);
    cJSON_AddStringToObject(ev, "peer", peer);
    if (wardd_event_emit(d, ev) < 0) {
        ident_tokens_revoke(d->tokens, token, &e);
        OPENSSL_cleanse(token, sizeof(token));
        wardd_refuse(&why, 503, "audit_unavailable",
                     "the join token could not be recorded in the audit trail; none was issued");
        goto refuse;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", token);
    cJSON_AddStringToObject(o, "spiffe_id", id);
    cJSON_AddStringToObject(o, "expires_at", exp);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s == NULL)
        ident_tokens_revoke(d->tokens, token, &e); /* nobody will ever know it */
    OPENSSL_cleanse(token, sizeof(token));
    if (s == NULL) {
        wardd_refuse(&why, 503, "unavailable", "out of memory");
        goto refuse;
    }
    wardd_reply_json(ex, 200, s, strlen(s));
    OPENSSL_cleanse(s, strlen(s));
    free(s);
    cJSON_Delete(root);
    return;
refuse:
    admin_event(d, "token.refused", peer, id, NULL, &why);
    cJSON_Delete(root);
    wardd_reply_refusal(ex, &why);
}

/* ---- DELETE /v1/admin/tokens/<token> -----------------------------------------------------------
 */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void token_revoke(wardd *d, proxy_http_exchange *ex, const char *peer)
{
    const proxy_http_request *r = proxy_http_exchange_request(ex);
    wardd_refusal why;
    char token[IDENT_TOKEN_MAX], hash[17];
    size_t n = 0, plen = strlen(TOKENS_PREFIX);
    for (size_t i = plen; i < r->path.len; i++) {
        char c = r->path.ptr[i];
        if (c == '%') {
            int hi = i + 2 < r->path.len ? hexval(r->path.ptr[i + 1]) : -1;
            int lo = i + 2 < r->path.len ? hexval(r->path.ptr[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                wardd_refuse(&why, 400, "bad_request", "malformed percent-encoding");
                goto refuse;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0' || c == '/' || n + 1 >= sizeof(token)) {
            wardd_refuse(&why, 404, "token_unknown", "unknown join token");
            goto refuse;
        }
        token[n++] = c;
    }
    token[n] = '\0';
    if (n == 0) {
        wardd_refuse(&why, 404, "token_unknown", "no join token given");
        goto refuse;
    }
    wardd_token_hash(token, hash);
    ward_err e;
    int rc = ident_tokens_revoke(d->tokens, token, &e);
    OPENSSL_cleanse(token, sizeof(token));
    if (rc == WARD_ENOENT) {
        wardd_refuse(&why, 404, "token_unknown", "%s", e.msg);
        goto refuse;
    }
    if (rc < 0) {
        wardd_refuse(&why, 500, "internal_error", "%s", e.msg);
        goto refuse;
    }
    admin_event(d, "token.revoked", peer, NULL, hash, NULL);
    proxy_http_respond(ex, 204, NULL, 0, NULL, 0);
    return;
refuse:
    OPENSSL_cleanse(token, sizeof(token));
    admin_event(d, "token.refused", peer, NULL, NULL, &why);
    wardd_reply_refusal(ex, &why);
}

/* ---- GET /v1/admin/issuance?limit=N
 * -------------------------------------------------------------- */

static void issuance(wardd *d, proxy_http_exchange *ex)
{
    const proxy_http_request *r = proxy_http_exchange_request(ex);
    uint64_t limit = 100;
    proxy_slice q = r->query;
    size_t i = 0;
    while (q.ptr != NULL && i < q.len) {
        size_t j = i;
        while (j < q.len && q.ptr[j] != '&')
            j++;
        const char *p = q.ptr + i;
        size_t n = j - i;
        if (n > 6 && memcmp(p, "limit=", 6) == 0) {
            if (ward_parse_u64(p + 6, n - 6, ISSUANCE_LIMIT, &limit) < 0 || limit == 0) {
                wardd_reply_error(ex, 400, "bad_request", "limit must be 1..%d", ISSUANCE_LIMIT);
                return;
            }
        } else if (n > 0) {
            wardd_reply_error(ex, 400, "bad_request", "unknown query parameter \"%.*s\"",
                              (int)(n > 64 ? 64 : n), p);
            return;
        }
        i = j + 1;
    }
    ward_buf out;
    ward_buf_init(&out);
    if (ward_buf_puts(&out, "{\"records\":") < 0 || wardd_recent_json(d, limit, &out) < 0 ||
        ward_buf_putc(&out, '}') < 0) {
        ward_buf_dispose(&out);
        wardd_reply_error(ex, 503, "unavailable", "out of memory");
        return;
    }
    wardd_reply_json(ex, 200, out.ptr, out.len);
    ward_buf_dispose(&out);
}

/* ---- routing
 * -------------------------------------------------------------------------------------------- */

void wardd_admin_handle(proxy_http_exchange *ex, void *data)
{
    wardd *d = data;
    const proxy_http_request *r = proxy_http_exchange_request(ex);
    const proxy_peer *p = proxy_http_exchange_peer(ex);
    char peer[PROXY_ADDR_STRLEN + 32];
    wardd_peer_name(p, peer, sizeof(peer));
    if (d->stopping)
        proxy_http_exchange_set_close(ex);
    /* the socket is 0600 already; the peer's uid is checked as well */
    if (!p->has_cred || (p->uid != getuid() && p->uid != 0)) {
        wardd_refusal why;
        wardd_refuse(&why, 403, "forbidden", "the admin API is for uid %u and root only",
                     (unsigned)getuid());
        admin_event(d, "admin.refused", peer, NULL, NULL, &why);
        proxy_http_exchange_set_close(ex);
        wardd_reply_refusal(ex, &why);
        return;
    }
    time_t now = time(NULL);
    size_t plen = strlen(TOKENS_PREFIX);
    if (wardd_path_is(r, "/v1/admin/tokens")) {
        if (wardd_method_is(r, "POST"))
            token_create(d, ex, peer, now);
        else
            wardd_reply_405(ex, "POST");
    } else if (r->path.len > plen && memcmp(r->path.ptr, TOKENS_PREFIX, plen) == 0) {
        if (wardd_method_is(r, "DELETE"))
            token_revoke(d, ex, peer);
        else
            wardd_reply_405(ex, "DELETE");
    } else if (wardd_path_is(r, "/v1/admin/issuance")) {
        if (wardd_method_is(r, "GET") || wardd_method_is(r, "HEAD"))
            issuance(d, ex);
        else
            wardd_reply_405(ex, "GET, HEAD");
    } else {
        wardd_reply_error(ex, 404, "not_found", "no such endpoint: %.*s",
                          (int)(r->path.len > 200 ? 200 : r->path.len), r->path.ptr);
    }
    wardd_events_release(d);
}
