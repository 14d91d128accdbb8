/* http_parse.c - strict, bounded, incremental HTTP/1.1 request head parser (RFC 9112) */
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"

#include <stdlib.h>
#include <string.h>

/* A header field as offsets into the caller's buffer (the buffer may move
 * between feeds only by being appended to, so offsets, not pointers). */
typedef struct hdr_off {
    size_t name, name_len, value, value_len;
} hdr_off;

enum { PH_LINE, PH_HEADERS, PH_DONE, PH_ERROR };

struct proxy_http_parser {
    proxy_http_limits lim;
    int phase;
    size_t pos;     /* start of the current line */
    size_t scan;    /* bytes examined so far */
    size_t skipped; /* empty lines before the request line */
    size_t header_bytes;
    size_t method, method_len, target, target_len;
    int minor;
    hdr_off *hdrs;
    size_t n, cap;
    proxy_header *out; /* the headers handed out, as pointers */
    size_t out_cap;
    long host; /* index of the Host field, -1 = none */
    bool has_cl, has_te, te_chunked, te_final_chunked, conn_close, conn_keep, expect_continue;
    uint64_t cl;
    size_t head_len;
    proxy_http_error err;
    int err_rc;
};

/* ---- character classes ---------------------------------------------------- */

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 3986 characters of a request-target (no fragment: '#' is refused). */
static bool is_uri_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("-._~:/?[]@!$&'()*+,;=%", c) != NULL;
}

/* uri-host [":" port]: reg-name, IP-literal or IPv4 characters. */
static bool is_host_char(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("-._~!$&'()*+,;=%:[]", c) != NULL;
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool mem_eq_nocase(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    if (alen != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(a[i]) != lower(lit[i]))
            return false;
    return true;
}

bool proxy_slice_eq_nocase(proxy_slice s, const char *lit)
{
    return s.ptr != NULL && mem_eq_nocase(s.ptr, s.len, lit);
}

/* ---- lifecycle ----------------------------------------------------------------- */

proxy_http_limits proxy_http_limits_with_defaults(const proxy_http_limits *limits)
{
    proxy_http_limits l = {0};
    if (limits != NULL)
        l = *limits;
    if (l.request_line_max == 0)
        l.request_line_max = PROXY_HTTP_REQUEST_LINE_MAX;
    if (l.header_bytes_max == 0)
        l.header_bytes_max = PROXY_HTTP_HEADER_BYTES_MAX;
    if (l.headers_max == 0)
        l.headers_max = PROXY_HTTP_HEADERS_MAX;
    if (l.body_max == 0)
        l.body_max = PROXY_HTTP_BODY_MAX;
    return l;
}

int proxy_http_parser_new(const proxy_http_limits *limits, proxy_http_parser **out)
{
    proxy_http_parser *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return WARD_ENOMEM;
    p->lim = proxy_http_limits_with_defaults(limits);
    proxy_http_parser_reset(p);
    *out = p;
    return 0;
}

void proxy_http_parser_free(proxy_http_parser *p)
{
    if (p == NULL)
        return;
    free(p->hdrs);
    free(p->out);
    free(p);
}

void proxy_http_parser_reset(proxy_http_parser *p)
{
    p->phase = PH_LINE;
    p->pos = p->scan = p->skipped = p->header_bytes = 0;
    p->method = p->method_len = p->target = p->target_len = 0;
    p->minor = 1;
    p->n = 0;
    p->host = -1;
    p->has_cl = p->has_te = p->te_chunked = p->te_final_chunked = false;
    p->conn_close = p->conn_keep = p->expect_continue = false;
    p->cl = 0;
    p->head_len = 0;
    p->err.status = 0;
    p->err.reason = NULL;
    p->err_rc = 0;
}

static int refuse(proxy_http_parser *p, int status, const char *reason)
{
    p->phase = PH_ERROR;
    p->err.status = status;
    p->err.reason = reason;
    p->err_rc = (status == 413 || status == 414 || status == 431) ? WARD_ELIMIT : WARD_EINVAL;
    return p->err_rc;
}

/* ---- the request line ------------------------------------------------------------ */

static int check_target(proxy_http_parser *p, const char *t, size_t len, bool connect, bool options)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!is_uri_char(c))
            return refuse(p, 400, "invalid character in request target");
        if (c == '%' &&
            (i + 2 >= len || !is_hex((unsigned char)t[i + 1]) || !is_hex((unsigned char)t[i + 2])))
            return refuse(p, 400, "malformed percent-encoding in request target");
    }
    if (connect) {
        /* authority-form: host ":" port, nothing else */
        const char *colon = NULL;
        for (size_t i = 0; i < len; i++) {
            if (t[i] == '/' || t[i] == '?' || t[i] == '@')
                return refuse(p, 400, "CONNECT needs an authority-form target");
            if (t[i] == ':')
                colon = t + i;
        }
        if (colon == NULL || colon == t || colon + 1 == t + len)
            return refuse(p, 400, "CONNECT needs an authority-form target");
        return 0;
    }
    if (len == 1 && t[0] == '*') {
        if (!options)
            return refuse(p, 400, "asterisk-form target is only for OPTIONS");
        return 0;
    }
    if (t[0] == '/')
        return 0;
    size_t scheme = 0;
    if (len > 7 && mem_eq_nocase(t, 7, "http://"))
        scheme = 7;
    else if (len > 8 && mem_eq_nocase(t, 8, "https://"))
        scheme = 8;
    if (scheme == 0)
        return refuse(p, 400, "invalid request target");
    if (t[scheme] == '/' || t[scheme] == '?')
        return refuse(p, 400, "absolute-form target without authority");
    return 0;
}

static int parse_request_line(proxy_http_parser *p, const char *buf, size_t start, size_t len)
{
    const char *l = buf + start;
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)l[i]))
        i++;
    if (i == 0 || i == len || l[i] != ' ')
        return refuse(p, 400, "malformed request line (method)");
    p->method = start;
    p->method_len = i;
    i++;
    size_t t0 = i;
    while (i < len && l[i] != ' ')
        i++;
    if (i == t0 || i == len)
        return refuse(p, 400, "malformed request line (target)");
    p->target = start + t0;
    p->target_len = i - t0;
    i++;
    size_t vlen = len - i;
    const char *v = l + i;
    if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return refuse(p, 400, "malformed request line (version)");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return refuse(p, 505, "HTTP version not supported");
    p->minor = v[7] - '0';
    bool connect = p->method_len == 7 && memcmp(l, "CONNECT", 7) == 0;
    bool options = p->method_len == 7 && memcmp(l, "OPTIONS", 7) == 0;
    return check_target(p, buf + p->target, p->target_len, connect, options);
}

/* ---- header fields ---------------------------------------------------------------- */

/* Splits a comma-separated list and reports whether `token` is one of its
 * elements (case-insensitive); *last gets the last element. */
static bool list_has(const char *v, size_t len, const char *token, proxy_slice *last)
{
    bool found = false;
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
        if (mem_eq_nocase(v + a, b - a, token))
            found = true;
        if (last != NULL) {
            last->ptr = v + a;
            last->len = b - a;
        }
        i = j + 1;
    }
    return found;
}

static int field_semantics(proxy_http_parser *p, const char *buf, const hdr_off *h)
{
    const char *n = buf + h->name;
    const char *v = buf + h->value;
    if (mem_eq_nocase(n, h->name_len, "content-length")) {
        if (p->has_cl)
            return refuse(p, 400, "duplicate Content-Length");
        p->has_cl = true;
        int rc = ward_parse_u64(v, h->value_len, INT64_MAX, &p->cl);
        if (rc == WARD_ERANGE)
            return refuse(p, 413, "Content-Length too large");
        if (rc < 0)
            return refuse(p, 400, "malformed Content-Length");
    } else if (mem_eq_nocase(n, h->name_len, "transfer-encoding")) {
        if (p->has_te)
            return refuse(p, 400, "duplicate Transfer-Encoding");
        p->has_te = true;
        proxy_slice last = {NULL, 0};
        list_has(v, h->value_len, "chunked", &last);
        p->te_chunked = mem_eq_nocase(v, h->value_len, "chunked");
        p->te_final_chunked = last.ptr != NULL && mem_eq_nocase(last.ptr, last.len, "chunked");
    } else if (mem_eq_nocase(n, h->name_len, "host")) {
        if (p->host >= 0)
            return refuse(p, 400, "duplicate Host");
        for (size_t i = 0; i < h->value_len; i++)
            if (!is_host_char((unsigned char)v[i]))
                return refuse(p, 400, "invalid Host");
        p->host = (long)p->n;
    } else if (mem_eq_nocase(n, h->name_len, "connection")) {
        if (list_has(v, h->value_len, "close", NULL))
            p->conn_close = true;
        if (list_has(v, h->value_len, "keep-alive", NULL))
            p->conn_keep = true;
    } else if (mem_eq_nocase(n, h->name_len, "expect")) {
        if (!mem_eq_nocase(v, h->value_len, "100-continue"))
            return refuse(p, 417, "unsupported expectation");
        p->expect_continue = true;
    }
    return 0;
}

static int parse_field(proxy_http_parser *p, const char *buf, size_t start, size_t len)
{
    const char *l = buf + start;
    if (l[0] == ' ' || l[0] == '\t')
        return refuse(p, 400, "obs-fold (line folding) in header");
    size_t i = 0;
    while (i < len && is_tchar((unsigned char)l[i]))
        i++;
    if (i == len)
        return refuse(p, 400, "header field without colon");
    if (l[i] == ' ' || l[i] == '\t')
        return refuse(p, 400, "whitespace before colon in header");
    if (l[i] != ':')
        return refuse(p, 400, "invalid character in header name");
    if (i == 0)
        return refuse(p, 400, "empty header name");
    size_t name_len = i++;
    while (i < len && (l[i] == ' ' || l[i] == '\t'))
        i++;
    size_t v0 = i;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)l[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return refuse(p, 400, "control character in header value");
    }
    size_t v1 = len;
    while (v1 > v0 && (l[v1 - 1] == ' ' || l[v1 - 1] == '\t'))
        v1--;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        if (cap > p->lim.headers_max)
            cap = p->lim.headers_max;
        hdr_off *h = realloc(p->hdrs, cap * sizeof(*h));
        if (h == NULL)
            return refuse(p, 400, "out of memory");
        p->hdrs = h;
        p->cap = cap;
    }
    hdr_off *h = &p->hdrs[p->n];
    h->name = start;
    h->name_len = name_len;
    h->value = start + v0;
    h->value_len = v1 - v0;
    int rc = field_semantics(p, buf, h);
    if (rc < 0)
        return rc;
    p->n++;
    return 0;
}

/* ---- the end of the head: framing -------------------------------------------------- */

static int finish_head(proxy_http_parser *p)
{
    if (p->minor == 1 && p->host < 0)
        return refuse(p, 400, "missing Host");
    if (p->has_te) {
        if (p->minor == 0)
            return refuse(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
        if (p->has_cl)
            return refuse(p, 400, "both Content-Length and Transfer-Encoding");
        if (!p->te_final_chunked)
            return refuse(p, 400, "chunked is not the final transfer coding");
        if (!p->lim.allow_chunked)
            return refuse(p, 501, "Transfer-Encoding is not supported");
        if (!p->te_chunked)
            return refuse(p, 501, "unsupported transfer coding");
    }
    if (p->has_cl && p->cl > p->lim.body_max)
        return refuse(p, 413, "request body too large");
    p->phase = PH_DONE;
    return 1;
}

static int fill(proxy_http_parser *p, const char *buf, proxy_http_request *req)
{
    if (p->out_cap < p->n) {
        proxy_header *o = realloc(p->out, p->n * sizeof(*o));
        if (o == NULL)
            return refuse(p, 400, "out of memory");
        p->out = o;
        p->out_cap = p->n;
    }
    for (size_t i = 0; i < p->n; i++) {
        p->out[i].name.ptr = buf + p->hdrs[i].name;
        p->out[i].name.len = p->hdrs[i].name_len;
        p->out[i].value.ptr = buf + p->hdrs[i].value;
        p->out[i].value.len = p->hdrs[i].value_len;
    }
    memset(req, 0, sizeof(*req));
    req->method.ptr = buf + p->method;
    req->method.len = p->method_len;
    const char *t = buf + p->target;
    size_t tl = p->target_len;
    req->target.ptr = t;
    req->target.len = tl;
    req->version_minor = p->minor;
    if (p->method_len == 7 && memcmp(req->method.ptr, "CONNECT", 7) == 0) {
        req->target_form = PROXY_TARGET_AUTHORITY;
        req->authority = req->target;
    } else if (tl == 1 && t[0] == '*') {
        req->target_form = PROXY_TARGET_ASTERISK;
    } else {
        size_t i = 0;
        if (t[0] != '/') {
            req->target_form = PROXY_TARGET_ABSOLUTE;
            i = t[4] == ':' ? 7 : 8; /* "http://" or "https://" */
            size_t a = i;
            while (i < tl && t[i] != '/' && t[i] != '?')
                i++;
            req->authority.ptr = t + a;
            req->authority.len = i - a;
        } else {
            req->target_form = PROXY_TARGET_ORIGIN;
        }
        const char *q = memchr(t + i, '?', tl - i);
        size_t pend = q != NULL ? (size_t)(q - t) : tl;
        req->path.ptr = t + i;
        req->path.len = pend - i;
        if (q != NULL) {
            req->query.ptr = q + 1;
            req->query.len = tl - pend - 1;
        }
    }
    if (p->host >= 0)
        req->host = p->out[p->host].value;
    req->headers = p->n ? p->out : NULL;
    req->n_headers = p->n;
    if (p->has_te) {
        req->body_kind = PROXY_BODY_CHUNKED;
    } else if (p->has_cl) {
        req->body_kind = PROXY_BODY_LENGTH;
        req->content_length = p->cl;
    }
    req->keep_alive = p->minor == 1 ? !p->conn_close : (p->conn_keep && !p->conn_close);
    req->expect_continue = p->minor == 1 && p->expect_continue; /* ignored in HTTP/1.0 */
    req->head_len = p->head_len;
    return 1;
}

/* ---- the scanner ---------------------------------------------------------------------- */

int proxy_http_parser_feed(proxy_http_parser *p, const char *buf, size_t len,
                           proxy_http_request *req, proxy_http_error *err)
{
    if (p->phase == PH_DONE)
        return fill(p, buf, req);
    if (p->phase != PH_ERROR && len < p->scan)
        refuse(p, 400, "parser misuse: input shrank");
    while (p->phase != PH_ERROR) {
        size_t i = p->scan;
        for (; i < len; i++) {
            unsigned char c = (unsigned char)buf[i];
            if (c == '\n')
                break;
            if (c == '\0') {
                refuse(p, 400, "NUL in request head");
                break;
            }
            if (c == '\r' && i + 1 < len && buf[i + 1] != '\n') {
                refuse(p, 400, "bare CR in request head");
                break;
            }
            if (c == '\r' && i + 1 == len)
                break; /* look at it again with the next byte */
        }
        if (p->phase == PH_ERROR)
            break;
        if (i >= len || buf[i] != '\n') {
            /* an incomplete line: enforce the bounds now, not at its end */
            p->scan = i;
            size_t so_far = len - p->pos;
            if (so_far > 0 && buf[len - 1] == '\r')
                so_far--;
            if (p->phase == PH_LINE && so_far > p->lim.request_line_max)
                refuse(p, 414, "request line too long");
            else if (p->phase == PH_HEADERS &&
                     p->header_bytes + (len - p->pos) > p->lim.header_bytes_max)
                refuse(p, 431, "request header fields too large");
            else
                return 0;
            break;
        }
        if (i == p->pos || buf[i - 1] != '\r') {
            refuse(p, 400, "bare LF in request head");
            break;
        }
        size_t start = p->pos, line_len = i - 1 - p->pos, next = i + 1;
        if (p->phase == PH_LINE) {
            if (line_len == 0) {
                /* RFC 9112 2.2: empty lines before the request line are ignored (bounded) */
                p->skipped += 2;
                if (p->skipped > p->lim.request_line_max)
                    refuse(p, 400, "too many empty lines before the request");
            } else if (line_len > p->lim.request_line_max) {
                refuse(p, 414, "request line too long");
            } else if (parse_request_line(p, buf, start, line_len) == 0) {
                p->phase = PH_HEADERS;
            }
        } else if (line_len == 0) {
            p->head_len = next;
            if (finish_head(p) == 1)
                return fill(p, buf, req);
        } else {
            p->header_bytes += line_len + 2;
            if (p->header_bytes > p->lim.header_bytes_max)
                refuse(p, 431, "request header fields too large");
            else if (p->n >= p->lim.headers_max)
                refuse(p, 431, "too many request header fields");
            else
                parse_field(p, buf, start, line_len);
        }
        p->pos = p->scan = next;
    }
    *err = p->err;
    return p->err_rc;
}

proxy_slice proxy_http_header_get(const proxy_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++)
        if (mem_eq_nocase(req->headers[i].name.ptr, req->headers[i].name.len, name))
            return req->headers[i].value;
    proxy_slice none = {NULL, 0};
    return none;
}
