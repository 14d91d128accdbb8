/* http_response.c - strict, bounded, incremental HTTP/1.1 response head parser (RFC 9112) */
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"

#include <stdlib.h>
#include <string.h>

struct proxy_http_response_parser {
    proxy_http_limits lim;
    size_t scan;  /* bytes examined so far */
    size_t pos;   /* start of the current line */
    size_t lines; /* complete lines so far */
    size_t header_bytes;
    size_t head_len; /* set once the empty line is seen */
    bool done;
    proxy_header *hdrs;
    size_t cap;
    proxy_http_error err;
    int err_rc;
};

/* Returns from the calling function on error. */
#define RS_TRY(expr)                                                                               \
    do {                                                                                           \
        int rs_rc_ = (expr);                                                                       \
        if (rs_rc_ < 0)                                                                            \
            return rs_rc_;                                                                         \
    } while (0)

static bool rs_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static char rs_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool rs_eq(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    if (alen != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (rs_lower(a[i]) != lit[i])
            return false;
    return true;
}

/* Whether the comma-separated list v holds token (lowercase). */
static bool rs_list_has(const char *v, size_t len, const char *token)
{
    size_t i = 0;
    while (i <= len) {
        size_t j = i;
        while (j < len && v[j] != ',')
            j++;
        size_t a = i, b = j;
        while (a < b && (v[a] == ' ' || v[a] == '\t'))
            a++;
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t'))
            b--;
        if (rs_eq(v + a, b - a, token))
            return true;
        i = j + 1;
    }
    return false;
}

int proxy_http_response_parser_new(const proxy_http_limits *limits,
                                   proxy_http_response_parser **out)
{
    proxy_http_response_parser *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return WARD_ENOMEM;
    p->lim = proxy_http_limits_with_defaults(limits);
    proxy_http_response_parser_reset(p);
    *out = p;
    return 0;
}

void proxy_http_response_parser_free(proxy_http_response_parser *p)
{
    if (p == NULL)
        return;
    free(p->hdrs);
    free(p);
}

void proxy_http_response_parser_reset(proxy_http_response_parser *p)
{
    p->scan = p->pos = p->lines = p->header_bytes = p->head_len = 0;
    p->done = false;
    p->err.status = 0;
    p->err.reason = NULL;
    p->err_rc = 0;
}

static int rs_refuse(proxy_http_response_parser *p, int rc, const char *reason)
{
    p->err.status = 502;
    p->err.reason = reason;
    p->err_rc = rc;
    return rc;
}

/* "HTTP/1.x SP 3DIGIT [SP reason]" */
static int parse_status_line(proxy_http_response_parser *p, const char *l, size_t len,
                             proxy_http_response *r)
{
    if (len < 12 || memcmp(l, "HTTP/", 5) != 0 || l[5] < '0' || l[5] > '9' || l[6] != '.' ||
        l[7] < '0' || l[7] > '9' || l[8] != ' ')
        return rs_refuse(p, WARD_EINVAL, "malformed status line (version)");
    if (l[5] != '1' || (l[7] != '0' && l[7] != '1'))
        return rs_refuse(p, WARD_EINVAL, "unsupported HTTP version in response");
    r->version_minor = l[7] - '0';
    for (int i = 9; i < 12; i++)
        if (l[i] < '0' || l[i] > '9')
            return rs_refuse(p, WARD_EINVAL, "malformed status code");
    r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    if (r->status < 100 || r->status > 599)
        return rs_refuse(p, WARD_EINVAL, "status code out of range");
    r->reason.ptr = l + len;
    r->reason.len = 0;
    if (len > 12) {
        if (l[12] != ' ')
            return rs_refuse(p, WARD_EINVAL, "malformed status line (code)");
        for (size_t i = 13; i < len; i++) {
            unsigned char c = (unsigned char)l[i];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return rs_refuse(p, WARD_EINVAL, "control character in reason phrase");
        }
        r->reason.ptr = l + 13;
        r->reason.len = len - 13;
    }
    return 0;
}

static int parse_field(proxy_http_response_parser *p, const char *l, size_t len, proxy_header *h)
{
    if (l[0] == ' ' || l[0] == '\t')
        return rs_refuse(p, WARD_EINVAL, "obs-fold (line folding) in response header");
    size_t i = 0;
    while (i < len && rs_tchar((unsigned char)l[i]))
        i++;
    if (i == len)
        return rs_refuse(p, WARD_EINVAL, "response header field without colon");
    if (l[i] == ' ' || l[i] == '\t')
        return rs_refuse(p, WARD_EINVAL, "whitespace before colon in response header");
    if (l[i] != ':')
        return rs_refuse(p, WARD_EINVAL, "invalid character in response header name");
    if (i == 0)
        return rs_refuse(p, WARD_EINVAL, "empty response header name");
    h->name.ptr = l;
    h->name.len = i++;
    while (i < len && (l[i] == ' ' || l[i] == '\t'))
        i++;
    size_t v0 = i;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)l[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return rs_refuse(p, WARD_EINVAL, "control character in response header value");
    }
    size_t v1 = len;
    while (v1 > v0 && (l[v1 - 1] == ' ' || l[v1 - 1] == '\t'))
        v1--;
    h->value.ptr = l + v0;
    h->value.len = v1 - v0;
    return 0;
}

/* The complete head buf[0..p->head_len): status line, fields, framing. */
static int parse_head(proxy_http_response_parser *p, const char *buf, bool head_request,
                      proxy_http_response *r)
{
    memset(r, 0, sizeof(*r));
    size_t n_fields = p->lines - 2; /* minus the status line and the empty line */
    if (n_fields > p->cap) {
        proxy_header *h = realloc(p->hdrs, n_fields * sizeof(*h));
        if (h == NULL)
            return rs_refuse(p, WARD_ENOMEM, "out of memory");
        p->hdrs = h;
        p->cap = n_fields;
    }
    bool has_cl = false, has_te = false, te_chunked = false, conn_close = false, conn_keep = false,
         upgrade_hdr = false;
    uint64_t cl = 0;
    size_t pos = 0, k = 0;
    for (size_t line = 0; line + 1 < p->lines; line++) {
        const char *e = memchr(buf + pos, '\n', p->head_len - pos);
        size_t end = (size_t)(e - buf); /* the LF; a CR precedes it */
        const char *l = buf + pos;
        size_t len = end - 1 - pos;
        pos = end + 1;
        if (line == 0) {
            RS_TRY(parse_status_line(p, l, len, r));
            continue;
        }
        proxy_header *h = &p->hdrs[k++];
        RS_TRY(parse_field(p, l, len, h));
        const char *v = h->value.ptr;
        size_t vl = h->value.len;
        if (rs_eq(h->name.ptr, h->name.len, "content-length")) {
            if (has_cl)
                return rs_refuse(p, WARD_EINVAL, "duplicate Content-Length in response");
            has_cl = true;
            int rc = ward_parse_u64(v, vl, INT64_MAX, &cl);
            if (rc < 0)
                return rs_refuse(p, WARD_EINVAL, "malformed Content-Length in response");
        } else if (rs_eq(h->name.ptr, h->name.len, "transfer-encoding")) {
            if (has_te)
                return rs_refuse(p, WARD_EINVAL, "duplicate Transfer-Encoding in response");
            has_te = true;
            te_chunked = rs_eq(v, vl, "chunked");
        } else if (rs_eq(h->name.ptr, h->name.len, "connection")) {
            conn_close = conn_close || rs_list_has(v, vl, "close");
            conn_keep = conn_keep || rs_list_has(v, vl, "keep-alive");
            upgrade_hdr = upgrade_hdr || rs_list_has(v, vl, "upgrade");
        }
    }
    r->headers = k ? p->hdrs : NULL;
    r->n_headers = k;
    r->head_len = p->head_len;
    int st = r->status;
    bool info = st < 200;
    if ((info || st == 204) && (has_cl || has_te))
        return rs_refuse(p, WARD_EINVAL, "framing fields in a response without content");
    if (has_te && r->version_minor == 0)
        return rs_refuse(p, WARD_EINVAL, "Transfer-Encoding in an HTTP/1.0 response");
    if (has_te && has_cl)
        return rs_refuse(p, WARD_EINVAL, "both Content-Length and Transfer-Encoding in response");
    if (has_te && !te_chunked)
        return rs_refuse(p, WARD_EINVAL, "unsupported transfer coding in response");
    r->content_length = cl;
    r->keep_alive = r->version_minor == 1 ? !conn_close : (conn_keep && !conn_close);
    if (st == 101) {
        r->body = PROXY_RESP_BODY_NONE;
        r->upgrade = upgrade_hdr;
        r->keep_alive = false;
    } else if (head_request || info || st == 204 || st == 304) {
        r->body = PROXY_RESP_BODY_NONE;
    } else if (has_te) {
        r->body = PROXY_RESP_BODY_CHUNKED;
    } else if (has_cl) {
        r->body = PROXY_RESP_BODY_LENGTH;
    } else {
        r->body = PROXY_RESP_BODY_CLOSE;
        r->keep_alive = false;
    }
    return 1;
}

int proxy_http_response_parser_feed(proxy_http_response_parser *p, const char *buf, size_t len,
                                    bool head_request, proxy_http_response *resp,
                                    proxy_http_error *err)
{
    if (p->err_rc < 0)
        goto fail;
    if (!p->done) {
        if (len < p->scan) {
            rs_refuse(p, WARD_EINVAL, "parser misuse: input shrank");
            goto fail;
        }
        size_t i = p->scan;
        for (; i < len; i++) {
            unsigned char c = (unsigned char)buf[i];
            if (c == '\0') {
                rs_refuse(p, WARD_EINVAL, "NUL in response head");
                goto fail;
            }
            if (c == '\r') {
                if (i + 1 == len)
                    break; /* look again with the next byte */
                if (buf[i + 1] != '\n') {
                    rs_refuse(p, WARD_EINVAL, "bare CR in response head");
                    goto fail;
                }
                continue;
            }
            if (c != '\n')
                continue;
            if (i == 0 || buf[i - 1] != '\r') {
                rs_refuse(p, WARD_EINVAL, "bare LF in response head");
                goto fail;
            }
            size_t line_len = i - 1 - p->pos;
            if (p->lines == 0) {
                if (line_len == 0) {
                    rs_refuse(p, WARD_EINVAL, "empty line before the status line");
                    goto fail;
                }
                if (line_len > p->lim.request_line_max) {
                    rs_refuse(p, WARD_ELIMIT, "status line too long");
                    goto fail;
                }
            } else if (line_len > 0) {
                p->header_bytes += line_len + 2;
                if (p->header_bytes > p->lim.header_bytes_max) {
                    rs_refuse(p, WARD_ELIMIT, "response header fields too large");
                    goto fail;
                }
                if (p->lines > p->lim.headers_max) {
                    rs_refuse(p, WARD_ELIMIT, "too many response header fields");
                    goto fail;
                }
            }
            p->lines++;
            p->pos = i + 1;
            if (line_len == 0) {
                p->head_len = i + 1;
                p->done = true;
                break;
            }
        }
        if (!p->done) {
            p->scan = i;
            size_t so_far = len - p->pos;
            if (p->lines == 0 && so_far > p->lim.request_line_max + 1) {
                rs_refuse(p, WARD_ELIMIT, "status line too long");
                goto fail;
            }
            if (p->lines > 0 && p->header_bytes + so_far > p->lim.header_bytes_max + 1) {
                rs_refuse(p, WARD_ELIMIT, "response header fields too large");
                goto fail;
            }
            return 0;
        }
    }
    if (parse_head(p, buf, head_request, resp) == 1)
        return 1;
fail:
    if (err != NULL)
        *err = p->err;
    return p->err_rc;
}
