/* json.c - decisions and explain traces out as JSON, request attributes in from JSON */
#include "authz/authz.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "authz/authz_int.h"

#define REQUEST_MAX_HEADERS 256

/* ---- output ---- */

/* Length of the valid UTF-8 sequence at s (0 if invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0xFFu >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* A JSON string; invalid UTF-8 becomes U+FFFD so the output is always valid JSON. */
int authz_json_str(ward_buf *b, const char *s, size_t len)
{
    int rc = ward_buf_putc(b, '"');
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len && rc == 0) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            rc = ward_buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            rc = ward_buf_printf(b, "\\u%04x", c);
            i++;
        } else {
            size_t n = utf8_seq(p + i, len - i);
            if (n == 0) {
                rc = ward_buf_puts(b, "\\ufffd");
                i++;
            } else {
                rc = ward_buf_append(b, p + i, n);
                i += n;
            }
        }
    }
    if (rc == 0)
        rc = ward_buf_putc(b, '"');
    return rc;
}

static int json_cstr_or_null(ward_buf *b, const char *s)
{
    return s ? authz_json_str(b, s, strlen(s)) : ward_buf_puts(b, "null");
}

static int json_int_or_null(ward_buf *b, int v)
{
    return v >= 0 ? ward_buf_printf(b, "%d", v) : ward_buf_puts(b, "null");
}

static int json_ops(ward_buf *out, const authz_header_ops *o)
{
    int rc = 0;
    const authz_header_op *lists[2] = {o->set, o->add};
    uint32_t n[2] = {o->n_set, o->n_add};
    for (int l = 0; l < 2; l++) {
        WARD_TRY(ward_buf_puts(out, l == 0 ? "{\"set\":{" : ",\"add\":{"));
        for (uint32_t i = 0; i < n[l]; i++) {
            if (i > 0)
                WARD_TRY(ward_buf_putc(out, ','));
            WARD_TRY(authz_json_str(out, lists[l][i].name, strlen(lists[l][i].name)));
            WARD_TRY(ward_buf_putc(out, ':'));
            WARD_TRY(authz_json_str(out, lists[l][i].value, strlen(lists[l][i].value)));
        }
        WARD_TRY(ward_buf_putc(out, '}'));
    }
    WARD_TRY(ward_buf_puts(out, ",\"remove\":["));
    for (uint32_t i = 0; i < o->n_remove; i++) {
        if (i > 0)
            WARD_TRY(ward_buf_putc(out, ','));
        WARD_TRY(authz_json_str(out, o->remove[i].name, strlen(o->remove[i].name)));
    }
    return ward_buf_puts(out, "]}");
fail:
    return rc;
}

/* "on": the conditions, then the retried statuses ("5xx" when all are). */
static int json_retry_on(ward_buf *out, const authz_route_retries *rt)
{
    int rc = 0;
    const char *sep = "";
    WARD_TRY(ward_buf_putc(out, '['));
    if (rt->on & AUTHZ_RETRY_CONNECT_FAILURE) {
        WARD_TRY(ward_buf_puts(out, "\"connect-failure\""));
        sep = ",";
    }
    if (rt->on & AUTHZ_RETRY_RESET) {
        WARD_TRY(ward_buf_printf(out, "%s\"reset\"", sep));
        sep = ",";
    }
    int all = 1;
    for (int code = 500; code <= 599 && all; code++)
        all = authz_route_retries_status(rt, code);
    if (all) {
        WARD_TRY(ward_buf_printf(out, "%s\"5xx\"", sep));
    } else {
        for (int code = 500; code <= 599; code++) {
            if (authz_route_retries_status(rt, code)) {
                WARD_TRY(ward_buf_printf(out, "%s\"%d\"", sep, code));
                sep = ",";
            }
        }
    }
    return ward_buf_putc(out, ']');
fail:
    return rc;
}

int authz_route_to_json(const authz_route *r, ward_buf *out)
{
    int rc = 0;
    WARD_TRY(ward_buf_puts(out, "{\"policy\":"));
    WARD_TRY(json_cstr_or_null(out, r->policy));
    WARD_TRY(ward_buf_puts(out, ",\"name\":"));
    WARD_TRY(json_cstr_or_null(out, r->name));
    WARD_TRY(ward_buf_printf(out, ",\"index\":%d,\"source\":", r->index));
    WARD_TRY(json_cstr_or_null(out, r->source));
    WARD_TRY(ward_buf_puts(out, ",\"destinations\":["));
    for (uint32_t i = 0; i < r->n_destinations; i++) {
        WARD_TRY(ward_buf_puts(out, i ? ",{\"service\":" : "{\"service\":"));
        WARD_TRY(json_cstr_or_null(out, r->destinations[i].service));
        WARD_TRY(ward_buf_printf(out, ",\"weight\":%u}", (unsigned)r->destinations[i].weight));
    }
    WARD_TRY(ward_buf_puts(out, "],\"timeout_ms\":"));
    WARD_TRY(r->timeout_ms ? ward_buf_printf(out, "%u", (unsigned)r->timeout_ms)
                           : ward_buf_puts(out, "null"));
    WARD_TRY(ward_buf_puts(out, ",\"retries\":"));
    if (r->has_retries) {
        const authz_route_retries *rt = &r->retries;
        WARD_TRY(ward_buf_printf(out, "{\"attempts\":%u,\"per_try_timeout_ms\":", (unsigned)rt->attempts));
        WARD_TRY(rt->per_try_timeout_ms ? ward_buf_printf(out, "%u", (unsigned)rt->per_try_timeout_ms)
                                        : ward_buf_puts(out, "null"));
        WARD_TRY(ward_buf_puts(out, ",\"on\":"));
        WARD_TRY(json_retry_on(out, rt));
        WARD_TRY(ward_buf_printf(out, ",\"non_idempotent\":%s,\"max_body_bytes\":%llu}",
                                 rt->non_idempotent ? "true" : "false",
                                 (unsigned long long)rt->max_body_bytes));
    } else {
        WARD_TRY(ward_buf_puts(out, "null"));
    }
    WARD_TRY(ward_buf_puts(out, ",\"rewrite\":"));
    if (r->rewrite_prefix != NULL) {
        WARD_TRY(ward_buf_puts(out, "{\"prefix\":"));
        WARD_TRY(json_cstr_or_null(out, r->rewrite_prefix));
        WARD_TRY(ward_buf_puts(out, ",\"path\":"));
        WARD_TRY(json_cstr_or_null(out, r->rewrite_path));
        WARD_TRY(ward_buf_putc(out, '}'));
    } else {
        WARD_TRY(ward_buf_puts(out, "null"));
    }
    WARD_TRY(ward_buf_puts(out, ",\"headers\":"));
    const authz_header_ops *rq = &r->request_headers, *rs = &r->response_headers;
    if (rq->n_set + rq->n_add + rq->n_remove + rs->n_set + rs->n_add + rs->n_remove > 0) {
        WARD_TRY(ward_buf_puts(out, "{\"request\":"));
        WARD_TRY(json_ops(out, rq));
        WARD_TRY(ward_buf_puts(out, ",\"response\":"));
        WARD_TRY(json_ops(out, rs));
        WARD_TRY(ward_buf_putc(out, '}'));
    } else {
        WARD_TRY(ward_buf_puts(out, "null"));
    }
    WARD_TRY(ward_buf_puts(out, ",\"rate_limit\":"));
    if (r->has_rate_limit) {
        const authz_rate_limit *rl = &r->rate_limit;
        WARD_TRY(ward_buf_printf(out, "{\"requests\":%u,\"per_ms\":%u,\"key\":",
                                 (unsigned)rl->requests, (unsigned)rl->per_ms));
        if (rl->key == AUTHZ_RATE_KEY_HEADER) {
            ward_buf k;
            ward_buf_init(&k);
            rc = ward_buf_printf(&k, "request.headers[%s]", rl->header ? rl->header : "");
            if (rc == 0)
                rc = authz_json_str(out, k.ptr, k.len);
            ward_buf_dispose(&k);
            WARD_TRY(rc);
        } else {
            WARD_TRY(ward_buf_puts(out, rl->key == AUTHZ_RATE_KEY_PRINCIPAL ? "\"source.principal\""
                                                                          : "\"none\""));
        }
        WARD_TRY(ward_buf_putc(out, '}'));
    } else {
        WARD_TRY(ward_buf_puts(out, "null"));
    }
    WARD_TRY(ward_buf_puts(out, ",\"mirror\":"));
    if (r->mirror_service != NULL) {
        WARD_TRY(ward_buf_puts(out, "{\"service\":"));
        WARD_TRY(json_cstr_or_null(out, r->mirror_service));
        WARD_TRY(ward_buf_printf(out, ",\"percent\":%u}", (unsigned)r->mirror_percent));
    } else {
        WARD_TRY(ward_buf_puts(out, "null"));
    }
    return ward_buf_putc(out, '}');
fail:
    return rc;
}

int authz_decision_to_json(const authz_decision *d, ward_buf *out)
{
    int rc = 0;
    WARD_TRY(ward_buf_puts(out, d->decision == AUTHZ_ALLOW ? "{\"decision\":\"allow\",\"policy\":"
                                                           : "{\"decision\":\"deny\",\"policy\":"));
    WARD_TRY(json_cstr_or_null(out, d->policy));
    WARD_TRY(ward_buf_puts(out, ",\"rule\":"));
    WARD_TRY(json_int_or_null(out, d->rule));
    WARD_TRY(ward_buf_puts(out, ",\"reason\":"));
    WARD_TRY(json_cstr_or_null(out, d->reason ? d->reason : ""));
    WARD_TRY(ward_buf_puts(out, d->audit ? ",\"audit\":true" : ",\"audit\":false"));
    if (d->has_dry_run) {
        WARD_TRY(ward_buf_puts(out, d->dry_run_decision == AUTHZ_ALLOW
                                        ? ",\"dry_run\":{\"decision\":\"allow\",\"policy\":"
                                        : ",\"dry_run\":{\"decision\":\"deny\",\"policy\":"));
        WARD_TRY(json_cstr_or_null(out, d->dry_run_policy));
        WARD_TRY(ward_buf_puts(out, ",\"rule\":"));
        WARD_TRY(json_int_or_null(out, d->dry_run_rule));
        WARD_TRY(ward_buf_puts(out, "}"));
    } else {
        WARD_TRY(ward_buf_puts(out, ",\"dry_run\":null"));
    }
    WARD_TRY(ward_buf_puts(out, ",\"route\":"));
    if (d->route != NULL)
        WARD_TRY(authz_route_to_json(d->route, out));
    else
        WARD_TRY(ward_buf_puts(out, "null"));
    if (d->explain_json != NULL) {
        WARD_TRY(ward_buf_puts(out, ",\"explain\":"));
        WARD_TRY(ward_buf_puts(out, d->explain_json));
    }
    WARD_TRY(ward_buf_puts(out, "}"));
    return 0;
fail:
    return rc;
}

/* ---- input: the request JSON of DESIGN.md ---- */

struct authz_request_storage {
    cJSON *root;
    authz_header *headers;
};

void authz_request_storage_free(authz_request_storage *s)
{
    if (s == NULL)
        return;
    cJSON_Delete(s->root);
    free(s->headers);
    free(s);
}

typedef enum field_type { F_STR, F_NUM, F_BOOL, F_OBJ, F_STR_OR_NUM } field_type;

typedef struct field_spec {
    const char *name;
    field_type type;
} field_spec;

/* Every key of obj must be one of specs, with the right type. */
static int check_keys(const cJSON *obj, const char *where, const field_spec *specs, size_t n,
                      ward_err *err)
{
    for (const cJSON *it = obj->child; it; it = it->next) {
        const field_spec *f = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(specs[i].name, it->string) == 0)
                f = &specs[i];
        if (f == NULL) {
            ward_err_set(err, "%s%s%s: unknown attribute", where, *where ? "." : "", it->string);
            return WARD_EINVAL;
        }
        bool ok = f->type == F_BOOL  ? cJSON_IsBool(it)
                  : f->type == F_NUM ? cJSON_IsNumber(it)
                  : f->type == F_OBJ ? cJSON_IsObject(it)
                  : f->type == F_STR_OR_NUM ? (cJSON_IsString(it) || cJSON_IsNumber(it))
                                            : cJSON_IsString(it);
        if (!ok && !cJSON_IsNull(it)) {
            ward_err_set(err, "%s%s%s: wrong type", where, *where ? "." : "", it->string);
            return WARD_EINVAL;
        }
    }
    return 0;
}

static authz_str jstr(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v))
        return (authz_str){NULL, 0};
    return (authz_str){v->valuestring, strlen(v->valuestring)};
}

static int jport(const cJSON *obj, const char *key, int *out, ward_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = -1;
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    double d = v->valuedouble;
    if (d < 0 || d > 65535 || d != (double)(int)d) {
        ward_err_set(err, "%s: port must be an integer 0..65535", key);
        return WARD_EINVAL;
    }
    *out = (int)d;
    return 0;
}

/* RFC 3339 UTC ("2026-01-02T03:04:05Z", fraction allowed) or a Unix number. */
static int jtime(const cJSON *v, int64_t *out, ward_err *err)
{
    if (v == NULL || cJSON_IsNull(v))
        return 0;
    if (cJSON_IsNumber(v)) {
        if (v->valuedouble < 1 || v->valuedouble > 253402300799.0) {
            ward_err_set(err, "time: out of range");
            return WARD_EINVAL;
        }
        *out = (int64_t)v->valuedouble;
        return 0;
    }
    struct tm tm = {0};
    const char *s = v->valuestring;
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (end != NULL && *end == '.') {
        end++;
        while (*end >= '0' && *end <= '9')
            end++;
    }
    if (end == NULL || strcmp(end, "Z") != 0) {
        ward_err_set(err, "time: expected RFC 3339 UTC like 2026-01-02T15:04:05Z");
        return WARD_EINVAL;
    }
    *out = (int64_t)timegm(&tm);
    return 0;
}

int authz_request_from_json(const char *json, size_t len, authz_request *req,
                            authz_request_storage **storage, ward_err *err)
{
    static const field_spec top[] = {
        {"source", F_OBJ}, {"destination", F_OBJ}, {"request", F_OBJ},
        {"connection", F_OBJ}, {"time", F_STR_OR_NUM},
    };
    static const field_spec source[] = {
        {"principal", F_STR}, {"ip", F_STR}, {"port", F_NUM},
    };
    static const field_spec dest[] = {
        {"service", F_STR}, {"principal", F_STR}, {"port", F_NUM},
    };
    static const field_spec request[] = {
        {"method", F_STR}, {"host", F_STR}, {"path", F_STR},
        {"query", F_STR}, {"headers", F_OBJ}, {"protocol", F_STR},
    };
    static const field_spec conn[] = {{"mtls", F_BOOL}, {"sni", F_STR}};
    int rc = 0;
    memset(req, 0, sizeof(*req));
    req->source_port = req->destination_port = req->mtls = -1;
    authz_request_storage *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return WARD_ENOMEM;
    s->root = cJSON_ParseWithLength(json, len);
    if (s->root == NULL) {
        ward_err_set(err, "invalid JSON");
        rc = WARD_ESYNTAX;
        goto fail;
    }
    if (!cJSON_IsObject(s->root)) {
        ward_err_set(err, "input must be a JSON object");
        rc = WARD_EINVAL;
        goto fail;
    }
    WARD_TRY(check_keys(s->root, "", top, 5, err));
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(s->root, "source");
    const cJSON *dst = cJSON_GetObjectItemCaseSensitive(s->root, "destination");
    const cJSON *rq = cJSON_GetObjectItemCaseSensitive(s->root, "request");
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(s->root, "connection");
    if (cJSON_IsObject(src)) {
        WARD_TRY(check_keys(src, "source", source, 3, err));
        req->source_principal = jstr(src, "principal");
        req->source_ip = jstr(src, "ip");
        WARD_TRY(jport(src, "port", &req->source_port, err));
    }
    if (cJSON_IsObject(dst)) {
        WARD_TRY(check_keys(dst, "destination", dest, 3, err));
        req->destination_service = jstr(dst, "service");
        req->destination_principal = jstr(dst, "principal");
        WARD_TRY(jport(dst, "port", &req->destination_port, err));
    }
    if (cJSON_IsObject(rq)) {
        WARD_TRY(check_keys(rq, "request", request, 6, err));
        req->method = jstr(rq, "method");
        req->host = jstr(rq, "host");
        req->path = jstr(rq, "path");
        req->query = jstr(rq, "query");
        req->protocol = jstr(rq, "protocol");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(rq, "headers");
        if (cJSON_IsObject(h)) {
            size_t n = (size_t)cJSON_GetArraySize(h);
            if (n > REQUEST_MAX_HEADERS) {
                ward_err_set(err, "request.headers: more than %d headers", REQUEST_MAX_HEADERS);
                rc = WARD_ELIMIT;
                goto fail;
            }
            s->headers = calloc(n ? n : 1, sizeof(*s->headers));
            if (s->headers == NULL) {
                rc = WARD_ENOMEM;
                goto fail;
            }
            for (const cJSON *it = h->child; it; it = it->next) {
                if (!cJSON_IsString(it)) {
                    ward_err_set(err, "request.headers.%s: must be a string", it->string);
                    rc = WARD_EINVAL;
                    goto fail;
                }
                authz_header *hd = &s->headers[req->n_headers++];
                hd->name = (authz_str){it->string, strlen(it->string)};
                hd->value = (authz_str){it->valuestring, strlen(it->valuestring)};
            }
            req->headers = s->headers;
        }
    }
    if (cJSON_IsObject(cn)) {
        WARD_TRY(check_keys(cn, "connection", conn, 2, err));
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(cn, "mtls");
        if (cJSON_IsBool(m))
            req->mtls = cJSON_IsTrue(m) ? 1 : 0;
        req->sni = jstr(cn, "sni");
    }
    WARD_TRY(jtime(cJSON_GetObjectItemCaseSensitive(s->root, "time"), &req->time_unix, err));
    *storage = s;
    return 0;
fail:
    authz_request_storage_free(s);
    memset(req, 0, sizeof(*req));
    return rc;
}
