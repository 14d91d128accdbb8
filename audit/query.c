/* query.c - pick records of a trail: a line's fields, RFC 3339 times, --where filters, scans and
 * counts */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"

/* ---- names ------------------------------------------------------------------------------ */

static const char *const attr_names[AUDIT_A_COUNT] = {
    [AUDIT_A_V] = "v",
    [AUDIT_A_SEQ] = "seq",
    [AUDIT_A_TS] = "ts",
    [AUDIT_A_ID] = "id",
    [AUDIT_A_NODE] = "node",
    [AUDIT_A_DIRECTION] = "direction",
    [AUDIT_A_DECISION] = "decision",
    [AUDIT_A_POLICY] = "policy",
    [AUDIT_A_RULE] = "rule",
    [AUDIT_A_REASON] = "reason",
    [AUDIT_A_AUDIT] = "audit",
    [AUDIT_A_DRY_RUN] = "dry_run",
    [AUDIT_A_DRY_RUN_DECISION] = "dry_run.decision",
    [AUDIT_A_DRY_RUN_POLICY] = "dry_run.policy",
    [AUDIT_A_DRY_RUN_RULE] = "dry_run.rule",
    [AUDIT_A_SOURCE_PRINCIPAL] = "source.principal",
    [AUDIT_A_SOURCE_IP] = "source.ip",
    [AUDIT_A_SOURCE_PORT] = "source.port",
    [AUDIT_A_DESTINATION_SERVICE] = "destination.service",
    [AUDIT_A_DESTINATION_PRINCIPAL] = "destination.principal",
    [AUDIT_A_DESTINATION_PORT] = "destination.port",
    [AUDIT_A_REQUEST_METHOD] = "request.method",
    [AUDIT_A_REQUEST_HOST] = "request.host",
    [AUDIT_A_REQUEST_PATH] = "request.path",
    [AUDIT_A_REQUEST_PROTOCOL] = "request.protocol",
    [AUDIT_A_RESPONSE] = "response",
    [AUDIT_A_RESPONSE_STATUS] = "response.status",
    [AUDIT_A_BUNDLE] = "bundle",
    [AUDIT_A_TRACE_ID] = "trace_id",
    [AUDIT_A_LATENCY_NS] = "latency_ns",
    [AUDIT_A_PEER_CERT_SHA256] = "peer_cert_sha256",
    [AUDIT_A_TRUNCATED] = "truncated",
    [AUDIT_A_GAP] = "gap",
    [AUDIT_A_EVENT] = "event",
    [AUDIT_A_OUTCOME] = "outcome",
    [AUDIT_A_SUBJECT] = "subject",
    [AUDIT_A_SERIAL] = "serial",
    [AUDIT_A_NOT_AFTER] = "not_after",
    [AUDIT_A_VIA] = "via",
    [AUDIT_A_TOKEN_ID] = "token_id",
    [AUDIT_A_AUDIENCE] = "audience",
    [AUDIT_A_KEY_ID] = "key_id",
    [AUDIT_A_BUNDLE_SEQUENCE] = "bundle_sequence",
    [AUDIT_A_SOURCE_UID] = "source.uid",
    [AUDIT_A_ERROR] = "error",
    [AUDIT_A_PREV] = "prev",
    [AUDIT_A_HASH] = "hash",
    [AUDIT_A_CONNECTION] = "connection",
    [AUDIT_A_CONNECTION_BYTES_IN] = "connection.bytes_in",
    [AUDIT_A_CONNECTION_BYTES_OUT] = "connection.bytes_out",
    [AUDIT_A_CONNECTION_DURATION_MS] = "connection.duration_ms",
    [AUDIT_A_REQUEST_HEADERS] = "request.headers",
};

int audit_attr_lookup(const char *name, size_t len)
{
    for (int a = 0; a < AUDIT_A_COUNT; a++)
        if (strlen(attr_names[a]) == len && memcmp(attr_names[a], name, len) == 0)
            return a;
    return -1;
}

const char *audit_attr_name(audit_attr a)
{
    return (unsigned)a < AUDIT_A_COUNT ? attr_names[a] : "?";
}

/* ---- splitting a line into fields --------------------------------------------------------- */

/* The keys of a record in the order the writer puts them (so the next key is
 * usually the one expected), with the objects whose members are fields. */
typedef struct pkey {
    const char *name;
    size_t len;
    int attr; /* -1: not a field by itself */
    const struct pkey *child;
    size_t n_child;
} pkey;

#define K(name, attr)                                                                              \
    {                                                                                              \
        name, sizeof(name) - 1, attr, NULL, 0                                                      \
    }
#define KO(name, attr, tab)                                                                        \
    {                                                                                              \
        name, sizeof(name) - 1, attr, tab, sizeof(tab) / sizeof(tab[0])                            \
    }

static const pkey dry_run_keys[] = {
    K("decision", AUDIT_A_DRY_RUN_DECISION),
    K("policy", AUDIT_A_DRY_RUN_POLICY),
    K("rule", AUDIT_A_DRY_RUN_RULE),
};
static const pkey source_keys[] = {
    K("principal", AUDIT_A_SOURCE_PRINCIPAL),
    K("ip", AUDIT_A_SOURCE_IP),
    K("port", AUDIT_A_SOURCE_PORT),
    K("uid", AUDIT_A_SOURCE_UID),
};
static const pkey destination_keys[] = {
    K("service", AUDIT_A_DESTINATION_SERVICE),
    K("principal", AUDIT_A_DESTINATION_PRINCIPAL),
    K("port", AUDIT_A_DESTINATION_PORT),
};
static const pkey request_keys[] = {
    K("method", AUDIT_A_REQUEST_METHOD),
    K("host", AUDIT_A_REQUEST_HOST),
    K("path", AUDIT_A_REQUEST_PATH),
    K("protocol", AUDIT_A_REQUEST_PROTOCOL),
    K("headers", AUDIT_A_REQUEST_HEADERS),
};
static const pkey response_keys[] = {
    K("status", AUDIT_A_RESPONSE_STATUS),
};
static const pkey connection_keys[] = {
    K("bytes_in", AUDIT_A_CONNECTION_BYTES_IN),
    K("bytes_out", AUDIT_A_CONNECTION_BYTES_OUT),
    K("duration_ms", AUDIT_A_CONNECTION_DURATION_MS),
};
static const pkey record_keys[] = {
    K("v", AUDIT_A_V),
    K("seq", AUDIT_A_SEQ),
    K("ts", AUDIT_A_TS),
    K("id", AUDIT_A_ID),
    K("node", AUDIT_A_NODE),
    K("direction", AUDIT_A_DIRECTION),
    K("decision", AUDIT_A_DECISION),
    K("policy", AUDIT_A_POLICY),
    K("rule", AUDIT_A_RULE),
    K("reason", AUDIT_A_REASON),
    K("audit", AUDIT_A_AUDIT),
    KO("dry_run", AUDIT_A_DRY_RUN, dry_run_keys),
    KO("source", -1, source_keys),
    KO("destination", -1, destination_keys),
    KO("request", -1, request_keys),
    KO("response", AUDIT_A_RESPONSE, response_keys),
    KO("connection", AUDIT_A_CONNECTION, connection_keys),
    K("bundle", AUDIT_A_BUNDLE),
    K("trace_id", AUDIT_A_TRACE_ID),
    K("latency_ns", AUDIT_A_LATENCY_NS),
    K("peer_cert_sha256", AUDIT_A_PEER_CERT_SHA256),
    K("truncated", AUDIT_A_TRUNCATED),
    K("gap", AUDIT_A_GAP),
    /* an identity event's keys, in its order (source, response, reason and
     * truncated again: the hint then follows that order too) */
    K("event", AUDIT_A_EVENT),
    K("outcome", AUDIT_A_OUTCOME),
    K("subject", AUDIT_A_SUBJECT),
    K("serial", AUDIT_A_SERIAL),
    K("not_after", AUDIT_A_NOT_AFTER),
    K("via", AUDIT_A_VIA),
    K("token_id", AUDIT_A_TOKEN_ID),
    K("audience", AUDIT_A_AUDIENCE),
    K("key_id", AUDIT_A_KEY_ID),
    K("bundle_sequence", AUDIT_A_BUNDLE_SEQUENCE),
    KO("source", -1, source_keys),
    KO("response", AUDIT_A_RESPONSE, response_keys),
    K("error", AUDIT_A_ERROR),
    K("reason", AUDIT_A_REASON),
    K("truncated", AUDIT_A_TRUNCATED),
    K("prev", AUDIT_A_PREV),
    K("hash", AUDIT_A_HASH),
};

#define MAX_DEPTH 16

typedef struct scanner {
    const char *p, *end;
} scanner;

static void skip_ws(scanner *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r' || *s->p == '\n'))
        s->p++;
}

/* At the opening quote; leaves s after the closing one. */
static int scan_string(scanner *s, const char **str, size_t *len, bool *escaped)
{
    const char *start = ++s->p, *q = start;
    while (q < s->end && *q != '"' && *q != '\\') /* short strings: no memchr call */
        q++;
    if (q < s->end && *q == '"') { /* the usual case: no escape */
        *str = start;
        *len = (size_t)(q - start);
        *escaped = false;
        s->p = q + 1;
        return 0;
    }
    const char *p = q;
    while (p < s->end && *p != '"') {
        if (*p == '\\') {
            if (p + 1 >= s->end)
                return WARD_ESYNTAX;
            p += 2;
        } else {
            p++;
        }
    }
    if (p >= s->end)
        return WARD_ESYNTAX;
    *str = start;
    *len = (size_t)(p - start);
    *escaped = true;
    s->p = p + 1;
    return 0;
}

static int skip_value(scanner *s, int depth);

/* An object or array whose members are not fields. */
static int skip_container(scanner *s, int depth)
{
    if (depth > MAX_DEPTH)
        return WARD_ESYNTAX;
    char close = *s->p == '{' ? '}' : ']';
    bool object = close == '}';
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    for (;;) {
        const char *str;
        size_t len;
        bool esc;
        skip_ws(s);
        if (object) {
            if (s->p >= s->end || *s->p != '"' || scan_string(s, &str, &len, &esc) < 0)
                return WARD_ESYNTAX;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return WARD_ESYNTAX;
            s->p++;
            skip_ws(s);
        }
        if (skip_value(s, depth + 1) < 0)
            return WARD_ESYNTAX;
        skip_ws(s);
        if (s->p >= s->end)
            return WARD_ESYNTAX;
        if (*s->p == close) {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return WARD_ESYNTAX;
        s->p++;
    }
}

/* One scalar or container; val (may be NULL) gets its place. */
static int scan_value(scanner *s, int depth, audit_value *val)
{
    audit_value v = {AUDIT_V_ABSENT, false, s->p, 0};
    if (s->p >= s->end)
        return WARD_ESYNTAX;
    char c = *s->p;
    if (c == '"') {
        v.type = AUDIT_V_STRING;
        if (scan_string(s, &v.ptr, &v.len, &v.escaped) < 0)
            return WARD_ESYNTAX;
    } else if (c == '{' || c == '[') {
        v.type = c == '{' ? AUDIT_V_OBJECT : AUDIT_V_ARRAY;
        if (skip_container(s, depth) < 0)
            return WARD_ESYNTAX;
        v.len = (size_t)(s->p - v.ptr);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        v.type = AUDIT_V_NUMBER;
        const char *p = s->p + 1;
        while (p < s->end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' ||
                              *p == '+' || *p == '-'))
            p++;
        v.len = (size_t)(p - s->p);
        s->p = p;
    } else {
        static const struct {
            const char *word;
            size_t len;
            audit_vtype type;
        } lits[] = {
            {"null", 4, AUDIT_V_NULL}, {"true", 4, AUDIT_V_TRUE}, {"false", 5, AUDIT_V_FALSE}};
        size_t i;
        for (i = 0; i < 3; i++)
            if ((size_t)(s->end - s->p) >= lits[i].len &&
                memcmp(s->p, lits[i].word, lits[i].len) == 0)
                break;
        if (i == 3)
            return WARD_ESYNTAX;
        v.type = lits[i].type;
        v.len = lits[i].len;
        s->p += lits[i].len;
    }
    if (val != NULL)
        *val = v;
    return 0;
}

static int skip_value(scanner *s, int depth)
{
    return scan_value(s, depth, NULL);
}

static const pkey *find_key(const pkey *tab, size_t n, size_t *hint, const char *k, size_t len)
{
    if (*hint < n && tab[*hint].len == len && memcmp(tab[*hint].name, k, len) == 0)
        return &tab[(*hint)++];
    for (size_t i = 0; i < n; i++) {
        if (tab[i].len == len && memcmp(tab[i].name, k, len) == 0) {
            *hint = i + 1;
            return &tab[i];
        }
    }
    return NULL;
}

/* At '{': the members of an object; those in tab become fields of v. */
static int scan_object(scanner *s, audit_view *v, const pkey *tab, size_t n, int depth)
{
    size_t hint = 0;
    if (depth > MAX_DEPTH)
        return WARD_ESYNTAX;
    s->p++;
    skip_ws(s);
    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return 0;
    }
    for (;;) {
        const char *key;
        size_t klen;
        bool esc;
        skip_ws(s);
        if (s->p >= s->end || *s->p != '"' || scan_string(s, &key, &klen, &esc) < 0)
            return WARD_ESYNTAX;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
            return WARD_ESYNTAX;
        s->p++;
        skip_ws(s);
        const pkey *k = esc ? NULL : find_key(tab, n, &hint, key, klen);
        if (k != NULL && k->child != NULL && s->p < s->end && *s->p == '{') {
            const char *start = s->p;
            if (scan_object(s, v, k->child, k->n_child, depth + 1) < 0)
                return WARD_ESYNTAX;
            if (k->attr >= 0)
                v->f[k->attr] = (audit_value){AUDIT_V_OBJECT, false, start, (size_t)(s->p - start)};
        } else if (k != NULL && k->attr >= 0) {
            if (scan_value(s, depth + 1, &v->f[k->attr]) < 0)
                return WARD_ESYNTAX;
        } else if (skip_value(s, depth + 1) < 0) {
            return WARD_ESYNTAX;
        }
        skip_ws(s);
        if (s->p >= s->end)
            return WARD_ESYNTAX;
        if (*s->p == '}') {
            s->p++;
            return 0;
        }
        if (*s->p != ',')
            return WARD_ESYNTAX;
        s->p++;
    }
}

int audit_view_parse(audit_view *v, const char *line, size_t len)
{
    memset(v->f, 0, sizeof(v->f));
    v->line = line;
    v->len = len;
    scanner s = {line, line + len};
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return WARD_ESYNTAX;
    if (scan_object(&s, v, record_keys, sizeof(record_keys) / sizeof(record_keys[0]), 1) < 0)
        return WARD_ESYNTAX;
    skip_ws(&s);
    return s.p == s.end ? 0 : WARD_ESYNTAX;
}

/* ---- values as text ------------------------------------------------------------------------ */

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static int put_utf8(ward_buf *out, unsigned cp)
{
    char b[4];
    size_t n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return ward_buf_append(out, b, n);
}

/* The bytes a JSON string's content stands for. A bad escape is kept as written. */
static int json_unescape(const char *s, size_t n, ward_buf *out)
{
    size_t run = 0, i = 0;
    int rc = 0;
    while (i < n) {
        if (s[i] != '\\' || i + 1 >= n) {
            i++;
            continue;
        }
        WARD_TRY(ward_buf_append(out, s + run, i - run));
        char c = s[i + 1], lit = 0;
        size_t step = 2;
        switch (c) {
        case '"': lit = '"'; break;
        case '\\': lit = '\\'; break;
        case '/': lit = '/'; break;
        case 'b': lit = '\b'; break;
        case 'f': lit = '\f'; break;
        case 'n': lit = '\n'; break;
        case 'r': lit = '\r'; break;
        case 't': lit = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (i + 6 > n || hex4(s + i + 2, &cp) < 0) {
                WARD_TRY(ward_buf_append(out, s + i, 2));
                break;
            }
            step = 6;
            if (cp >= 0xD800 && cp <= 0xDBFF && i + 12 <= n && s[i + 6] == '\\' &&
                s[i + 7] == 'u' && hex4(s + i + 8, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                step = 12;
            } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
            WARD_TRY(put_utf8(out, cp));
            break;
        }
        default: WARD_TRY(ward_buf_append(out, s + i, 2)); break;
        }
        if (lit != 0)
            WARD_TRY(ward_buf_putc(out, lit));
        i += step;
        run = i;
    }
    WARD_TRY(ward_buf_append(out, s + run, n - run));
fail:
    return rc;
}

int audit_value_text(const audit_value *val, ward_buf *out)
{
    switch (val->type) {
    case AUDIT_V_ABSENT:
    case AUDIT_V_NULL: return ward_buf_append(out, "", 0);
    case AUDIT_V_STRING:
        if (!val->escaped)
            return ward_buf_append(out, val->ptr, val->len);
        return json_unescape(val->ptr, val->len, out);
    default: return ward_buf_append(out, val->ptr, val->len);
    }
}

/* ---- times ------------------------------------------------------------------------------ */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char *p, int n, int64_t *out)
{
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

static int days_in_month(int64_t y, int64_t m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dm[m - 1];
}

/* "YYYY-MM-DD" alone, or with [Tt ]hh:mm:ss[.fraction](Z|z|+hh:mm|-hh:mm). */
/* Seconds and nanoseconds since the epoch as ns; false beyond what int64 holds
 * (years before 1678 or after 2261). */
static bool secs_to_ns(int64_t secs, int64_t frac, int64_t *out)
{
    if (secs > INT64_MAX / 1000000000 - 1 || secs < INT64_MIN / 1000000000 + 1)
        return false;
    *out = secs * 1000000000 + frac;
    return true;
}

static bool parse_rfc3339(const char *s, size_t n, int64_t *out_ns)
{
    int64_t y, mo, d, h = 0, mi = 0, sec = 0, frac = 0, off = 0;
    if (n < 10 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return false;
    size_t i = 10;
    if (n > 10) {
        if ((s[10] != 'T' && s[10] != 't' && s[10] != ' ') || n < 19 || !digits(s + 11, 2, &h) ||
            s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
            return false;
        if (h > 23 || mi > 59 || sec > 60)
            return false;
        if (sec == 60) /* a leap second reads as the last instant of its minute */
            sec = 59, frac = 999999999;
        i = 19;
        if (i < n && s[i] == '.') {
            int nd = 0;
            int64_t f = 0;
            i++;
            while (i < n && s[i] >= '0' && s[i] <= '9') {
                if (nd < 9) {
                    f = f * 10 + (s[i] - '0');
                    nd++;
                }
                i++;
            }
            if (nd == 0)
                return false;
            for (; nd < 9; nd++)
                f *= 10;
            if (frac == 0)
                frac = f;
        }
        if (i >= n)
            return false; /* RFC 3339 requires the offset */
        if (s[i] == 'Z' || s[i] == 'z') {
            i++;
        } else if (s[i] == '+' || s[i] == '-') {
            int64_t oh, om;
            if (n - i < 6 || !digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
                !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
                return false;
            off = (oh * 60 + om) * 60 * (s[i] == '-' ? -1 : 1);
            i += 6;
        } else {
            return false;
        }
    }
    if (i != n)
        return false;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return secs_to_ns(secs, frac, out_ns);
}

int audit_view_time(const audit_view *v, int64_t *ns)
{
    const audit_value *t = &v->f[AUDIT_A_TS];
    if (t->type != AUDIT_V_STRING || t->escaped)
        return WARD_EINVAL;
    const char *p = t->ptr;
    int64_t y, mo, d, h, mi, s, us;
    /* the writer's form: YYYY-MM-DDThh:mm:ss.uuuuuuZ */
    if (t->len == 27 && p[4] == '-' && p[7] == '-' && p[10] == 'T' && p[13] == ':' &&
        p[16] == ':' && p[19] == '.' && p[26] == 'Z' && digits(p, 4, &y) && digits(p + 5, 2, &mo) &&
        digits(p + 8, 2, &d) && digits(p + 11, 2, &h) && digits(p + 14, 2, &mi) &&
        digits(p + 17, 2, &s) && digits(p + 20, 6, &us) && mo >= 1 && mo <= 12 && d >= 1 &&
        d <= 31 && h < 24 && mi < 60 && s < 61) {
        int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
        return secs_to_ns(secs, us * 1000, ns) ? 0 : WARD_EINVAL;
    }
    return parse_rfc3339(p, t->len, ns) ? 0 : WARD_EINVAL;
}

/* "90s", "15m", "1h30m", "7d", "250ms": ns, at most 100 years. */
static bool parse_ago(const char *s, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = {
        {"d", 86400000000000LL}, {"h", 3600000000000LL}, {"m", 60000000000LL}, {"s", 1000000000LL},
        {"ms", 1000000LL},       {"us", 1000LL},         {"ns", 1LL},
    };
    const int64_t max = 36525LL * 86400000000000LL;
    int64_t total = 0;
    if (*s == '\0')
        return false;
    while (*s != '\0') {
        int64_t n = 0;
        const char *start = s;
        while (*s >= '0' && *s <= '9') {
            if (n > max)
                return false;
            n = n * 10 + (*s++ - '0');
        }
        if (s == start)
            return false;
        const char *u = s;
        while (*s >= 'a' && *s <= 'z')
            s++;
        size_t ulen = (size_t)(s - u);
        int64_t mult = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (strlen(units[i].unit) == ulen && memcmp(units[i].unit, u, ulen) == 0)
                mult = units[i].ns;
        if (mult == 0 || n > max / mult || total > max - n * mult)
            return false;
        total += n * mult;
    }
    *out = total;
    return true;
}

int audit_time_parse(const char *s, int64_t now_ns, int64_t *out_ns, ward_err *err)
{
    int64_t ago;
    if (strcmp(s, "now") == 0) {
        *out_ns = now_ns;
        return 0;
    }
    if (strchr(s, '-') == NULL && strchr(s, ':') == NULL && parse_ago(s, &ago)) {
        *out_ns = now_ns - ago;
        return 0;
    }
    if (parse_rfc3339(s, strlen(s), out_ns))
        return 0;
    if (err != NULL)
        ward_err_set(err,
                     "'%s' is neither an RFC 3339 time (2026-11-26T02:03:14Z, "
                     "2026-11-26T03:03:14.5+01:00, 2026-11-26) nor a time back from now (90s, "
                     "15m, 1h30m, 7d)",
                     s);
    return WARD_EINVAL;
}

/* ---- filters ----------------------------------------------------------------------------- */

typedef struct cond {
    int attr;
    bool neg, prefix, null;
    char *val;
    size_t len;
} cond;

struct audit_filter {
    cond *c;
    size_t n, cap;
    int64_t since, until;
};

int audit_filter_new(audit_filter **out)
{
    audit_filter *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return WARD_ENOMEM;
    f->since = INT64_MIN;
    f->until = INT64_MAX;
    *out = f;
    return 0;
}

void audit_filter_free(audit_filter *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n; i++)
        free(f->c[i].val);
    free(f->c);
    free(f);
}

int audit_filter_where(audit_filter *f, const char *expr, ward_err *err)
{
    const char *eq = strchr(expr, '=');
    if (eq == NULL || eq == expr) {
        ward_err_set(err, "'%s' is not KEY=VALUE or KEY!=VALUE (e.g. decision=deny)", expr);
        return WARD_EINVAL;
    }
    bool neg = eq[-1] == '!';
    size_t klen = (size_t)(eq - expr) - (neg ? 1 : 0);
    int attr = audit_attr_lookup(expr, klen);
    if (attr < 0) {
        char keys[1024];
        size_t o = 0;
        for (int a = 0; a < AUDIT_A_COUNT && o < sizeof(keys) - 64; a++)
            o += (size_t)snprintf(keys + o, sizeof(keys) - o, "%s%s", a ? ", " : "", attr_names[a]);
        ward_err_set(err, "unknown key '%.*s' in '%s'; keys: %s", (int)klen, expr, expr, keys);
        return WARD_EINVAL;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        cond *c = realloc(f->c, cap * sizeof(*c));
        if (c == NULL)
            return WARD_ENOMEM;
        f->c = c;
        f->cap = cap;
    }
    const char *val = eq + 1;
    size_t len = strlen(val);
    cond c = {attr, neg, false, len == 0, NULL, len};
    if (len > 0 && val[len - 1] == '*') {
        c.prefix = true;
        c.len = len - 1;
    }
    c.val = malloc(c.len + 1);
    if (c.val == NULL)
        return WARD_ENOMEM;
    memcpy(c.val, val, c.len);
    c.val[c.len] = '\0';
    f->c[f->n++] = c;
    return 0;
}

void audit_filter_range(audit_filter *f, int64_t since_ns, int64_t until_ns)
{
    f->since = since_ns;
    f->until = until_ns;
}

static bool value_match(const cond *c, const audit_value *val);

/* An array of strings (audience, truncated) matches when one of them does. */
static bool array_match(const cond *c, const audit_value *val)
{
    const char *p = val->ptr, *end = val->ptr + val->len;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (q == NULL)
            return false;
        const char *str = ++q;
        bool esc = false;
        while (q < end && *q != '"') {
            if (*q == '\\') {
                esc = true;
                q++;
            }
            q++;
        }
        if (q >= end)
            return false;
        audit_value item = {AUDIT_V_STRING, esc, str, (size_t)(q - str)};
        if (value_match(c, &item))
            return true;
        p = q + 1;
    }
    return false;
}

static bool cond_match(const cond *c, const audit_view *v)
{
    const audit_value *val = &v->f[c->attr];
    if (val->type == AUDIT_V_ABSENT || val->type == AUDIT_V_NULL)
        return c->null;
    if (c->null)
        return false;
    if (val->type == AUDIT_V_ARRAY)
        return array_match(c, val);
    return value_match(c, val);
}

static bool value_match(const cond *c, const audit_value *val)
{
    const char *p = val->ptr;
    size_t n = val->len;
    ward_buf tmp;
    ward_buf_init(&tmp);
    if (val->type == AUDIT_V_STRING && val->escaped) {
        if (json_unescape(val->ptr, val->len, &tmp) < 0) {
            ward_buf_dispose(&tmp);
            return false;
        }
        p = tmp.ptr != NULL ? tmp.ptr : "";
        n = tmp.len;
    }
    bool m = c->prefix ? n >= c->len && memcmp(p, c->val, c->len) == 0
                       : n == c->len && memcmp(p, c->val, n) == 0;
    ward_buf_dispose(&tmp);
    return m;
}

bool audit_filter_match(const audit_filter *f, const audit_view *v)
{
    if (f == NULL)
        return true;
    if (f->since != INT64_MIN || f->until != INT64_MAX) {
        int64_t t;
        if (audit_view_time(v, &t) < 0 || t < f->since || t >= f->until)
            return false;
    }
    for (size_t i = 0; i < f->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = f->c[j].attr == f->c[i].attr;
        if (seen)
            continue; /* this key was decided with its first condition */
        bool any_pos = false, pos_match = false;
        for (size_t j = i; j < f->n; j++) {
            if (f->c[j].attr != f->c[i].attr)
                continue;
            bool m = cond_match(&f->c[j], v);
            if (f->c[j].neg && m)
                return false;
            if (!f->c[j].neg) {
                any_pos = true;
                pos_match = pos_match || m;
            }
        }
        if (any_pos && !pos_match)
            return false;
    }
    return true;
}

/* ---- scanning a trail ---------------------------------------------------------------------- */

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A view with only ts, when the line begins {"v":1,"seq":N,"ts":"..." and ends with '}'. */
static int ts_only(audit_view *v, const char *line, size_t len)
{
    static const char pre[] = "{\"v\":1,\"seq\":";
    const size_t plen = sizeof(pre) - 1;
    if (len < plen + 10 || memcmp(line, pre, plen) != 0 || line[len - 1] != '}')
        return WARD_ESYNTAX;
    const char *p = line + plen, *end = line + len;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (end - p < 8 || memcmp(p, ",\"ts\":\"", 7) != 0)
        return WARD_ESYNTAX;
    const char *t = p + 7, *q = t;
    while (q < end && *q != '"' && *q != '\\')
        q++;
    if (q >= end || *q != '"')
        return WARD_ESYNTAX;
    memset(v->f, 0, sizeof(v->f));
    v->line = line;
    v->len = len;
    v->f[AUDIT_A_TS] = (audit_value){AUDIT_V_STRING, false, t, (size_t)(q - t)};
    return 0;
}

int audit_scan(const audit_scan_options *o, audit_record_cb cb, void *cb_data, audit_scan_stats *st,
               ward_err *err)
{
    audit_reader *r = NULL;
    audit_view v;
    const char *line;
    size_t len;
    int rc = 0, more;
    double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    bool fast = o->lines_only && (o->filter == NULL || o->filter->n == 0);
    memset(st, 0, sizeof(*st));
    WARD_TRY(audit_reader_open(o->dir, &r, err));
    st->segments = audit_reader_segments(r);
    while ((more = audit_reader_next(r, &line, &len, err)) > 0) {
        st->lines++;
        st->bytes += len + 1;
        if (o->progress != NULL && (st->lines & 0xFFFF) == 0) {
            uint64_t done, total;
            audit_reader_progress(r, &done, &total);
            o->progress(done, total, st->lines, o->data);
        }
        if (fast && ts_only(&v, line, len) == 0) {
            /* the line and its ts are all the callback and the filter need */
        } else if (audit_view_parse(&v, line, len) < 0) {
            if (st->malformed++ == 0)
                snprintf(st->first_malformed, sizeof(st->first_malformed), "%s:%" PRIu64,
                         audit_reader_file(r), audit_reader_line(r));
            continue;
        }
        if (!audit_filter_match(o->filter, &v))
            continue;
        st->matched++;
        WARD_TRY(cb(&v, cb_data));
    }
    WARD_TRY(more);
    st->torn = audit_reader_torn(r);
    if (o->progress != NULL) {
        uint64_t done, total;
        audit_reader_progress(r, &done, &total);
        o->progress(done, total, st->lines, o->data);
    }
fail:
    audit_reader_free(r);
    st->seconds = clock_s(CLOCK_MONOTONIC) - t0;
    st->cpu_seconds = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    return rc;
}

/* ---- counts per value ---------------------------------------------------------------------- */

typedef struct centry {
    char *val; /* NULL: an empty slot */
    size_t len;
    uint64_t n, hash;
} centry;

struct audit_counter {
    audit_attr attr;
    centry *tab;
    size_t cap, n;
    uint64_t null_n;
    audit_count *sorted;
    ward_buf tmp;
};

#define COUNTER_MAX_VALUES ((size_t)1 << 26)

int audit_counter_new(audit_attr attr, audit_counter **out)
{
    if ((unsigned)attr >= AUDIT_A_COUNT)
        return WARD_EINVAL;
    audit_counter *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return WARD_ENOMEM;
    c->attr = attr;
    c->cap = 1024;
    c->tab = calloc(c->cap, sizeof(*c->tab));
    if (c->tab == NULL) {
        free(c);
        return WARD_ENOMEM;
    }
    ward_buf_init(&c->tmp);
    *out = c;
    return 0;
}

void audit_counter_free(audit_counter *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->cap; i++)
        free(c->tab[i].val);
    free(c->tab);
    free(c->sorted);
    ward_buf_dispose(&c->tmp);
    free(c);
}

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static int counter_grow(audit_counter *c)
{
    size_t cap = c->cap * 2;
    centry *tab = calloc(cap, sizeof(*tab));
    if (tab == NULL)
        return WARD_ENOMEM;
    for (size_t i = 0; i < c->cap; i++) {
        if (c->tab[i].val == NULL)
            continue;
        size_t j = c->tab[i].hash & (cap - 1);
        while (tab[j].val != NULL)
            j = (j + 1) & (cap - 1);
        tab[j] = c->tab[i];
    }
    free(c->tab);
    c->tab = tab;
    c->cap = cap;
    return 0;
}

int audit_counter_add(audit_counter *c, const audit_view *v)
{
    const audit_value *val = &v->f[c->attr];
    int rc = 0;
    free(c->sorted);
    c->sorted = NULL;
    if (val->type == AUDIT_V_ABSENT || val->type == AUDIT_V_NULL) {
        c->null_n++;
        return 0;
    }
    ward_buf_reset(&c->tmp);
    WARD_TRY(audit_value_text(val, &c->tmp));
    const char *p = c->tmp.ptr != NULL ? c->tmp.ptr : "";
    size_t n = c->tmp.len;
    uint64_t h = fnv1a(p, n);
    size_t j = h & (c->cap - 1);
    while (c->tab[j].val != NULL) {
        if (c->tab[j].hash == h && c->tab[j].len == n && memcmp(c->tab[j].val, p, n) == 0) {
            c->tab[j].n++;
            return 0;
        }
        j = (j + 1) & (c->cap - 1);
    }
    if (c->n >= COUNTER_MAX_VALUES)
        return WARD_ELIMIT;
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return WARD_ENOMEM;
    memcpy(copy, p, n);
    copy[n] = '\0';
    c->tab[j] = (centry){copy, n, 1, h};
    c->n++;
    if (c->n * 10 > c->cap * 7)
        WARD_TRY(counter_grow(c));
fail:
    return rc;
}

static int count_cmp(const void *a, const void *b)
{
    const audit_count *x = a, *y = b;
    if (x->n != y->n)
        return x->n > y->n ? -1 : 1;
    if (x->value == NULL || y->value == NULL)
        return (x->value == NULL) - (y->value == NULL);
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->value, y->value, n);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

int audit_counter_sorted(audit_counter *c, const audit_count **out, size_t *n)
{
    size_t total = c->n + (c->null_n > 0);
    if (c->sorted == NULL) {
        c->sorted = calloc(total ? total : 1, sizeof(*c->sorted));
        if (c->sorted == NULL)
            return WARD_ENOMEM;
        size_t k = 0;
        for (size_t i = 0; i < c->cap; i++)
            if (c->tab[i].val != NULL)
                c->sorted[k++] = (audit_count){c->tab[i].val, c->tab[i].len, c->tab[i].n};
        if (c->null_n > 0)
            c->sorted[k++] = (audit_count){NULL, 0, c->null_n};
        qsort(c->sorted, k, sizeof(*c->sorted), count_cmp);
    }
    *out = c->sorted;
    *n = total;
    return 0;
}
