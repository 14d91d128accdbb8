/* reply.c - wardd's HTTP plumbing: JSON answers and errors, strict JSON bodies */
#include "cmd/wardd/wardd.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MEMBERS_MAX 16

static const proxy_header json_headers[] = {
    {{"Content-Type", 12}, {"application/json", 16}},
    {{"Cache-Control", 13}, {"no-store", 8}},
};

const char *wardd_status_code(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 411: return "length_required";
    case 413: return "body_too_large";
    case 414: return "uri_too_long";
    case 415: return "unsupported_media_type";
    case 417: return "expectation_failed";
    case 429: return "rate_limited";
    case 431: return "headers_too_large";
    case 501: return "not_implemented";
    case 503: return "unavailable";
    case 505: return "http_version_not_supported";
    default: return "internal_error";
    }
}

void wardd_reply_json(proxy_http_exchange *ex, int status, const char *json, size_t len)
{
    proxy_http_respond(ex, status ? status : 200, json_headers, 2, json, len);
}

static char *error_json(const char *code, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "error", code);
    cJSON_AddStringToObject(o, "message", message);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void reply_error_headers(proxy_http_exchange *ex, int status, const char *code,
                                const char *message, const char *allow)
{
    char *s = error_json(code, message);
    static const char fallback[] = "{\"error\":\"internal_error\",\"message\":\"out of memory\"}";
    proxy_header h[3] = {json_headers[0], json_headers[1], {{"Allow", 5}, {NULL, 0}}};
    if (allow != NULL)
        h[2].value = (proxy_slice){allow, strlen(allow)};
    if (s == NULL)
        proxy_http_respond(ex, 500, h, 2, fallback, sizeof(fallback) - 1);
    else
        proxy_http_respond(ex, status, h, allow ? 3 : 2, s, strlen(s));
    free(s);
}

void wardd_reply_error(proxy_http_exchange *ex, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    reply_error_headers(ex, status, code, msg, NULL);
}

void wardd_reply_405(proxy_http_exchange *ex, const char *allow)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "method not allowed (use %s)", allow);
    reply_error_headers(ex, 405, "method_not_allowed", msg, allow);
}

void wardd_refuse(wardd_refusal *why, int status, const char *code, const char *fmt, ...)
{
    why->status = status;
    why->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->message, sizeof(why->message), fmt, ap);
    va_end(ap);
}

void wardd_reply_refusal(proxy_http_exchange *ex, const wardd_refusal *why)
{
    reply_error_headers(ex, why->status, why->code, why->message, NULL);
}

bool wardd_path_is(const proxy_http_request *r, const char *lit)
{
    return r->path.len == strlen(lit) && memcmp(r->path.ptr, lit, r->path.len) == 0;
}

bool wardd_method_is(const proxy_http_request *r, const char *lit)
{
    return r->method.len == strlen(lit) && memcmp(r->method.ptr, lit, r->method.len) == 0;
}

/* "application/json", optionally with parameters. */
static bool is_json_type(proxy_slice ct)
{
    if (ct.ptr == NULL)
        return false;
    size_t n = 0;
    while (n < ct.len && ct.ptr[n] != ';')
        n++;
    while (n > 0 && (ct.ptr[n - 1] == ' ' || ct.ptr[n - 1] == '\t'))
        n--;
    return n == 16 && strncasecmp(ct.ptr, "application/json", 16) == 0;
}

/* A NUL hidden in a JSON string would cut the C string cJSON hands out. */
static bool has_escaped_nul(const char *s, size_t len)
{
    for (size_t i = 0; i + 6 <= len; i++)
        if (s[i] == '\\' && (s[i + 1] == 'u' || s[i + 1] == 'U') &&
            memcmp(s + i + 2, "0000", 4) == 0)
            return true;
    return false;
}

cJSON *wardd_read_json(proxy_http_exchange *ex, const char *const *allowed, wardd_refusal *why)
{
    const proxy_http_request *r = proxy_http_exchange_request(ex);
    proxy_slice body = proxy_http_exchange_body(ex);
    cJSON *root = NULL;
    char *copy = NULL;
    if (r->body_kind == PROXY_BODY_NONE) {
        wardd_refuse(why, 411, "length_required", "a JSON body with Content-Length is required");
        return NULL;
    }
    if (!is_json_type(proxy_http_header_get(r, "content-type"))) {
        wardd_refuse(why, 415, "unsupported_media_type", "Content-Type must be application/json");
        return NULL;
    }
    if (body.len == 0) {
        wardd_refuse(why, 400, "bad_request", "empty body");
        return NULL;
    }
    if (memchr(body.ptr, '\0', body.len) != NULL || has_escaped_nul(body.ptr, body.len)) {
        wardd_refuse(why, 400, "bad_request", "NUL character in body");
        return NULL;
    }
    copy = malloc(body.len + 1);
    if (copy == NULL) {
        wardd_refuse(why, 503, "unavailable", "out of memory");
        return NULL;
    }
    memcpy(copy, body.ptr, body.len);
    copy[body.len] = '\0';
    const char *end = NULL;
    root = cJSON_ParseWithOpts(copy, &end, 1);
    if (root == NULL) {
        size_t at = end != NULL && end >= copy ? (size_t)(end - copy) : 0;
        wardd_refuse(why, 400, "bad_request", "malformed JSON at byte %zu", at);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        wardd_refuse(why, 400, "bad_request", "the body must be a JSON object");
        goto fail;
    }
    int n = 0;
    for (const cJSON *m = root->child; m != NULL; m = m->next) {
        if (++n > MEMBERS_MAX) {
            wardd_refuse(why, 400, "bad_request", "too many members");
            goto fail;
        }
        bool known = false;
        for (size_t i = 0; allowed[i] != NULL; i++)
            if (strcmp(m->string, allowed[i]) == 0)
                known = true;
        if (!known) {
            wardd_refuse(why, 400, "bad_request", "unknown member \"%.64s\"", m->string);
            goto fail;
        }
        for (const cJSON *o = root->child; o != m; o = o->next)
            if (strcmp(o->string, m->string) == 0) {
                wardd_refuse(why, 400, "bad_request", "duplicate member \"%.64s\"", m->string);
                goto fail;
            }
    }
    OPENSSL_cleanse(copy, body.len);
    free(copy);
    return root;
fail:
    OPENSSL_cleanse(copy, body.len);
    free(copy);
    cJSON_Delete(root);
    return NULL;
}

void wardd_http_error(int status, const char *reason, const proxy_peer *peer, ward_buf *body,
                      void *data)
{
    wardd *d = data;
    const char *code = wardd_status_code(status);
    char *s = error_json(code, reason);
    if (s != NULL)
        ward_buf_puts(body, s);
    free(s);
    char who[PROXY_ADDR_STRLEN + 32];
    wardd_peer_name(peer, who, sizeof(who));
    cJSON *ev = wardd_event_new("http.refused");
    cJSON_AddNumberToObject(ev, "status", status);
    cJSON_AddStringToObject(ev, "error", code);
    cJSON_AddStringToObject(ev, "reason", reason);
    cJSON_AddStringToObject(ev, "peer", who);
    wardd_event_emit(d, ev);
}
