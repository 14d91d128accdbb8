/* record.c - render audit records as JSON lines (up to their chain fields): field order, RFC 3339 times, strict string escaping */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "audit/audit_int.h"

void audit_record_init(audit_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->rule = -1;
    rec->dry_run_rule = -1;
    rec->source_port = -1;
    rec->destination_port = -1;
    rec->status = -1;
    rec->latency_ns = -1;
}

void audit_event_init(audit_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->outcome = AUDIT_FAILURE;
    ev->not_after_ns = -1;
    ev->bundle_sequence = -1;
    ev->source_port = -1;
    ev->source_uid = -1;
    ev->status = -1;
}

int64_t audit_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- strings ------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p (n bytes left), or 0 if invalid
 * (Unicode table 3-7: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return len;
}

/* s as a JSON string: '"' and '\\' escaped, controls and DEL as \u00XX,
 * U+2028/2029 escaped, each byte of invalid UTF-8 as \ufffd. Written
 * straight into the buffer (room for the worst case, 6 bytes per byte, taken
 * once): the writer renders every record's strings through here. */
#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Are all 8 bytes of x printable ASCII other than '"' and '\\' (none below
 * 0x20, none 0x7F or above, no quote, no backslash)? Bit tricks on the whole
 * word: most bytes of a record are such runs. */
static inline bool plain8(uint64_t x)
{
    uint64_t below20 = (x - ONES * 0x20) & ~x & HIGHS;
    uint64_t v = x ^ (ONES * '"'), quote = (v - ONES) & ~v & HIGHS;
    v = x ^ (ONES * '\\');
    uint64_t backslash = (v - ONES) & ~v & HIGHS;
    v = x ^ (ONES * 0x7F);
    uint64_t del = (v - ONES) & ~v & HIGHS;
    return ((x & HIGHS) | below20 | quote | backslash | del) == 0;
}

static int put_str(ward_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (n > (SIZE_MAX - 2) / 6 || ward_buf_reserve(b, 6 * n + 2) < 0)
        return WARD_ENOMEM;
    const unsigned char *p = (const unsigned char *)s;
    char *o = b->ptr + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n;) {
        uint64_t w;
        if (i + 8 <= n && (memcpy(&w, p + i, 8), plain8(w))) {
            memcpy(o, p + i, 8);
            o += 8;
            i += 8;
            continue;
        }
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            *o++ = (char)c;
            i++;
        } else if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
            i++;
        } else if (c < 0x80) { /* controls and DEL */
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
            i++;
        } else {
            size_t step = utf8_seq(p + i, n - i);
            if (step == 0) {
                memcpy(o, "\\ufffd", 6);
                o += 6;
                step = 1;
            } else if (step == 3 && c == 0xE2 && p[i + 1] == 0x80 &&
                       (p[i + 2] == 0xA8 || p[i + 2] == 0xA9)) {
                memcpy(o, p[i + 2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
                o += 6;
            } else { /* a valid multibyte character */
                memcpy(o, p + i, step);
                o += step;
            }
            i += step;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->ptr);
    b->ptr[b->len] = '\0';
    return 0;
}

int audit_json_str(ward_buf *out, const char *s, size_t n)
{
    return put_str(out, s, n);
}

/* A record is some forty short pieces: appended in place while the buffer
 * has room (it keeps its size from record to record), else grown. */
static inline int app(ward_buf *b, const char *s, size_t n)
{
    if (b->len + n < b->cap) {
        memcpy(b->ptr + b->len, s, n);
        b->len += n;
        b->ptr[b->len] = '\0';
        return 0;
    }
    return ward_buf_append(b, s, n);
}

static int put_field(ward_buf *b, const audit_slot *s, audit_field f)
{
    uint16_t len = s->r.h.len[f];
    if (len == AUDIT_ABSENT)
        return ward_buf_append(b, "null", 4);
    return put_str(b, s->r.data + s->r.h.off[f], len);
}

/* Secrets whose values never reach the trail, whatever a caller passes. */
static bool secret_header(const char *name, size_t len)
{
    static const char *const secret[] = {"authorization", "proxy-authorization", "cookie",
                                         "set-cookie"};
    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
        if (strlen(secret[i]) == len && strncasecmp(secret[i], name, len) == 0)
            return true;
    return false;
}

/* ,"headers":{...} of the "name\0value\0" pairs p[0..n) (a pair cut by the
 * slot's budget keeps what is left of its value; a name cut is left out). */
static int put_headers(ward_buf *out, const char *p, size_t n)
{
    int rc = 0;
    WARD_TRY(ward_buf_puts(out, ",\"headers\":{"));
    const char *end = p + n, *sep = "";
    while (p < end) {
        const char *nz = memchr(p, '\0', (size_t)(end - p));
        if (nz == NULL)
            break;
        const char *v = nz + 1, *vz = v < end ? memchr(v, '\0', (size_t)(end - v)) : NULL;
        size_t vlen = vz != NULL ? (size_t)(vz - v) : (size_t)(end - v);
        WARD_TRY(ward_buf_puts(out, sep));
        WARD_TRY(put_str(out, p, (size_t)(nz - p)));
        WARD_TRY(ward_buf_putc(out, ':'));
        if (secret_header(p, (size_t)(nz - p)))
            WARD_TRY(ward_buf_puts(out, "\"[redacted]\""));
        else
            WARD_TRY(put_str(out, v, vlen));
        sep = ",";
        p = vz != NULL ? vz + 1 : end;
    }
    WARD_TRY(ward_buf_putc(out, '}'));
fail:
    return rc;
}

static int put_int(ward_buf *b, int64_t v, bool null_if_negative)
{
    if (null_if_negative && v < 0)
        return ward_buf_append(b, "null", 4);
    char tmp[24], *p = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--p = '-';
    return app(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

#define PUT(lit) WARD_TRY(app(out, lit, sizeof(lit) - 1))

/* ---- time ----------------------------------------------------------------------- */

/* "YYYY-MM-DDThh:mm:ss" of the Unix time secs (proleptic Gregorian, UTC). */
static void format_secs(char out[19], int64_t secs)
{
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    /* civil_from_days (H. Hinnant) */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    /* digits by hand: no printf per record */
    int v[6] = {(int)y, (int)m, (int)d, (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60)};
    static const char sep[6] = {'-', '-', 'T', ':', ':', 0};
    char *o = out;
    for (int k = 0; k < 4; k++)
        o[3 - k] = (char)('0' + v[0] / (k == 0 ? 1 : k == 1 ? 10 : k == 2 ? 100 : 1000) % 10);
    o += 4;
    for (int f = 1; f < 6; f++) {
        *o++ = sep[f - 1];
        *o++ = (char)('0' + v[f] / 10 % 10);
        *o++ = (char)('0' + v[f] % 10);
    }
}

/* Clamps ns to years 0000..9999 and splits it into seconds and microseconds. */
static int64_t split_time(int64_t ns, uint32_t *us)
{
    const int64_t min_s = -62167219200, max_s = 253402300799; /* 0000-01-01, 9999-12-31T23:59:59 */
    int64_t secs = ns / 1000000000, sub = ns % 1000000000;
    if (sub < 0) {
        sub += 1000000000;
        secs--;
    }
    if (secs < min_s)
        secs = min_s, sub = 0;
    if (secs > max_s)
        secs = max_s, sub = 999999999;
    *us = (uint32_t)(sub / 1000);
    return secs;
}

/* ".uuuuuuZ" after the 19 characters of the seconds */
static void put_micros(char out[8], uint32_t us)
{
    out[0] = '.';
    for (int i = 6; i > 0; i--, us /= 10)
        out[i] = (char)('0' + us % 10);
    out[7] = 'Z';
}

void audit_time_format(char out[AUDIT_TS_LEN], int64_t ns)
{
    uint32_t us;
    format_secs(out, split_time(ns, &us));
    put_micros(out + 19, us);
}

/* "YYYY-MM-DDThh:mm:ss.uuuuuuZ" (UTC, clamped to years 0000..9999). The
 * writer formats many records of the same second: the last one is kept. */
static int put_time(ward_buf *b, int64_t ns)
{
    static _Thread_local int64_t last_secs = INT64_MIN;
    static _Thread_local char last[19];
    uint32_t us;
    int64_t secs = split_time(ns, &us);
    if (secs != last_secs) {
        format_secs(last, secs);
        last_secs = secs;
    }
    char tmp[AUDIT_TS_LEN + 2];
    tmp[0] = '"';
    memcpy(tmp + 1, last, 19);
    put_micros(tmp + 20, us);
    tmp[AUDIT_TS_LEN + 1] = '"';
    return app(b, tmp, sizeof(tmp));
}

/* ---- records --------------------------------------------------------------------- */

static const char *const field_names[AF_COUNT] = {
    [AF_POLICY] = "policy",
    [AF_DRY_RUN_POLICY] = "dry_run.policy",
    [AF_REASON] = "reason",
    [AF_BUNDLE] = "bundle",
    [AF_CERT] = "peer_cert_sha256",
    [AF_SOURCE_PRINCIPAL] = "source.principal",
    [AF_SOURCE_IP] = "source.ip",
    [AF_DESTINATION_SERVICE] = "destination.service",
    [AF_DESTINATION_PRINCIPAL] = "destination.principal",
    [AF_METHOD] = "request.method",
    [AF_PROTOCOL] = "request.protocol",
    [AF_HOST] = "request.host",
    [AF_TRACE_ID] = "trace_id",
    [AF_PATH] = "request.path",
    [AF_HEADERS] = "request.headers",
};

/* {"v":1,"seq":N,"ts":"..." */
static int put_head(ward_buf *out, uint64_t seq, int64_t ts_ns)
{
    int rc = 0;
    PUT("{\"v\":1,\"seq\":");
    WARD_TRY(put_int(out, (int64_t)seq, false));
    PUT(",\"ts\":");
    WARD_TRY(put_time(out, ts_ns));
fail:
    return rc;
}

static int put_node(ward_buf *out, const char *node, size_t node_len)
{
    int rc = 0;
    PUT(",\"node\":");
    if (node != NULL)
        return put_str(out, node, node_len);
    PUT("null");
fail:
    return rc;
}

static const char *verdict_name(uint8_t v)
{
    return v == AUDIT_ALLOW ? "\"allow\"" : "\"deny\""; /* anything else reads as deny */
}

int audit_render_record(ward_buf *out, const audit_slot *s, uint64_t seq, const char *node,
                        size_t node_len)
{
    const audit_slot_hdr *h = &s->r.h;
    size_t start = out->len;
    int rc = 0;
    WARD_TRY(put_head(out, seq, h->ts_ns));
    PUT(",\"id\":");
    WARD_TRY(put_str(out, h->id, strnlen(h->id, AUDIT_ID_HEX)));
    WARD_TRY(put_node(out, node, node_len));
    PUT(",\"direction\":");
    WARD_TRY(ward_buf_puts(out, h->direction == AUDIT_OUTBOUND ? "\"outbound\"" : "\"inbound\""));
    PUT(",\"decision\":");
    WARD_TRY(ward_buf_puts(out, verdict_name(h->decision)));
    PUT(",\"policy\":");
    WARD_TRY(put_field(out, s, AF_POLICY));
    PUT(",\"rule\":");
    WARD_TRY(put_int(out, h->rule, true));
    PUT(",\"reason\":");
    WARD_TRY(put_field(out, s, AF_REASON));
    WARD_TRY(ward_buf_puts(out, h->flags & AUDIT_FLAG_AUDIT ? ",\"audit\":true" : ",\"audit\":false"));
    if (h->flags & AUDIT_FLAG_DRY_RUN) {
        PUT(",\"dry_run\":{\"decision\":");
        WARD_TRY(ward_buf_puts(out, verdict_name(h->dry_run_decision)));
        PUT(",\"policy\":");
        WARD_TRY(put_field(out, s, AF_DRY_RUN_POLICY));
        PUT(",\"rule\":");
        WARD_TRY(put_int(out, h->dry_run_rule, true));
        PUT("}");
    } else {
        PUT(",\"dry_run\":null");
    }
    PUT(",\"source\":{\"principal\":");
    WARD_TRY(put_field(out, s, AF_SOURCE_PRINCIPAL));
    PUT(",\"ip\":");
    WARD_TRY(put_field(out, s, AF_SOURCE_IP));
    PUT(",\"port\":");
    WARD_TRY(put_int(out, h->source_port, true));
    PUT("},\"destination\":{\"service\":");
    WARD_TRY(put_field(out, s, AF_DESTINATION_SERVICE));
    PUT(",\"principal\":");
    WARD_TRY(put_field(out, s, AF_DESTINATION_PRINCIPAL));
    PUT(",\"port\":");
    WARD_TRY(put_int(out, h->destination_port, true));
    PUT("},\"request\":{\"method\":");
    WARD_TRY(put_field(out, s, AF_METHOD));
    PUT(",\"host\":");
    WARD_TRY(put_field(out, s, AF_HOST));
    PUT(",\"path\":");
    WARD_TRY(put_field(out, s, AF_PATH));
    PUT(",\"protocol\":");
    WARD_TRY(put_field(out, s, AF_PROTOCOL));
    if (h->len[AF_HEADERS] != AUDIT_ABSENT)
        WARD_TRY(put_headers(out, s->r.data + h->off[AF_HEADERS], h->len[AF_HEADERS]));
    if (h->status >= 0) {
        PUT("},\"response\":{\"status\":");
        WARD_TRY(put_int(out, h->status, false));
        PUT("}");
    } else {
        PUT("},\"response\":null");
    }
    if (h->flags & AUDIT_FLAG_CONNECTION) {
        int64_t us = h->duration_ns > 0 ? h->duration_ns / 1000 : 0;
        WARD_TRY(ward_buf_printf(out,
                                 ",\"connection\":{\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
                                 ",\"duration_ms\":%" PRId64 ".%03" PRId64 "}",
                                 h->bytes_in, h->bytes_out, us / 1000, us % 1000));
    }
    PUT(",\"bundle\":");
    WARD_TRY(put_field(out, s, AF_BUNDLE));
    PUT(",\"trace_id\":");
    WARD_TRY(put_field(out, s, AF_TRACE_ID));
    PUT(",\"latency_ns\":");
    WARD_TRY(put_int(out, h->latency_ns, true));
    PUT(",\"peer_cert_sha256\":");
    WARD_TRY(put_field(out, s, AF_CERT));
    if (h->truncated != 0) {
        PUT(",\"truncated\":[");
        const char *sep = "\"";
        for (int f = 0; f < AF_COUNT; f++) {
            if (h->truncated & (1u << f)) {
                WARD_TRY(ward_buf_puts(out, sep));
                WARD_TRY(ward_buf_puts(out, field_names[f]));
                sep = "\",\"";
            }
        }
        PUT("\"]");
    }
    return 0; /* audit_chain_line adds prev, hash and the closing brace */
fail:
    out->len = start;
    if (out->ptr != NULL)
        out->ptr[start] = '\0';
    return rc;
}

int audit_render_gap(ward_buf *out, uint64_t seq, int64_t ts_ns, const char *node,
                     size_t node_len, uint64_t k)
{
    size_t start = out->len;
    int rc = 0;
    WARD_TRY(put_head(out, seq, ts_ns));
    WARD_TRY(put_node(out, node, node_len));
    WARD_TRY(ward_buf_printf(out,
                             ",\"gap\":%" PRIu64 ",\"reason\":\"%" PRIu64
                             " allow record(s) dropped: audit ring full (overflow: drop)\"",
                             k, k));
    return 0;
fail:
    out->len = start;
    if (out->ptr != NULL)
        out->ptr[start] = '\0';
    return rc;
}

/* ---- identity events ------------------------------------------------------------ */

static const char *const event_field_names[AEF_COUNT] = {
    [AEF_EVENT] = "event",
    [AEF_ERROR] = "error",
    [AEF_VIA] = "via",
    [AEF_SUBJECT] = "subject",
    [AEF_SERIAL] = "serial",
    [AEF_TOKEN_ID] = "token_id",
    [AEF_KEY_ID] = "key_id",
    [AEF_REASON] = "reason",
    [AEF_SOURCE_PRINCIPAL] = "source.principal",
    [AEF_SOURCE_IP] = "source.ip",
    [AEF_AUDIENCE] = "audience",
};

/* The NUL-separated audiences as a JSON array of strings. */
static int put_list(ward_buf *out, const audit_slot *s, unsigned f)
{
    uint16_t len = s->r.h.len[f];
    int rc = 0;
    if (len == AUDIT_ABSENT)
        return ward_buf_append(out, "null", 4);
    const char *p = s->r.data + s->r.h.off[f], *end = p + len;
    PUT("[");
    for (bool first = true; p <= end; first = false) {
        const char *z = memchr(p, '\0', (size_t)(end - p));
        size_t n = z != NULL ? (size_t)(z - p) : (size_t)(end - p);
        if (!first)
            PUT(",");
        WARD_TRY(put_str(out, p, n));
        p += n + 1;
    }
    PUT("]");
fail:
    return rc;
}

int audit_render_event(ward_buf *out, const audit_slot *s, uint64_t seq, const char *node,
                       size_t node_len)
{
    const audit_slot_hdr *h = &s->r.h;
    size_t start = out->len;
    int rc = 0;
    WARD_TRY(put_head(out, seq, h->ts_ns));
    PUT(",\"id\":");
    WARD_TRY(put_str(out, h->id, strnlen(h->id, AUDIT_ID_HEX)));
    WARD_TRY(put_node(out, node, node_len));
    PUT(",\"event\":");
    WARD_TRY(put_field(out, s, (audit_field)AEF_EVENT));
    WARD_TRY(ward_buf_puts(out, h->decision == AUDIT_SUCCESS ? ",\"outcome\":\"success\""
                                                              : ",\"outcome\":\"failure\""));
    PUT(",\"subject\":");
    WARD_TRY(put_field(out, s, (audit_field)AEF_SUBJECT));
    PUT(",\"serial\":");
    WARD_TRY(put_field(out, s, (audit_field)AEF_SERIAL));
    PUT(",\"not_after\":");
    if (h->not_after_ns >= 0) {
        char ts[AUDIT_TS_LEN];
        audit_time_format(ts, h->not_after_ns);
        /* whole seconds as certificates and tokens have them: "...T01:00:00Z" */
        bool whole = h->not_after_ns % 1000000000 == 0;
        PUT("\"");
        WARD_TRY(ward_buf_append(out, ts, whole ? 19 : AUDIT_TS_LEN - 1));
        PUT("Z\"");
    } else {
        PUT("null");
    }
    PUT(",\"via\":");
    WARD_TRY(put_field(out, s, (audit_field)AEF_VIA));
    PUT(",\"token_id\":");
    WARD_TRY(put_field(out, s, (audit_field)AEF_TOKEN_ID));
    PUT(",\"audience\":");
    WARD_TRY(put_list(out, s, AEF_AUDIENCE));
    PUT(",\"key_id\":");
    WARD_TRY(put_field(out, s, (audit_field)AEF_KEY_ID));
    PUT(",\"bundle_sequence\":");
    WARD_TRY(put_int(out, h->bundle_sequence, true));
    PUT(",\"source\":{\"principal\":");
    WARD_TRY(put_field(out, s, (audit_field)AEF_SOURCE_PRINCIPAL));
    PUT(",\"ip\":");
    WARD_TRY(put_field(out, s, (audit_field)AEF_SOURCE_IP));
    PUT(",\"port\":");
    WARD_TRY(put_int(out, h->source_port, true));
    PUT(",\"uid\":");
    WARD_TRY(put_int(out, h->source_uid, true));
    if (h->status >= 0) {
        PUT("},\"response\":{\"status\":");
        WARD_TRY(put_int(out, h->status, false));
        PUT("}");
    } else {
        PUT("},\"response\":null");
    }
    PUT(",\"error\":");
    WARD_TRY(put_field(out, s, (audit_field)AEF_ERROR));
    PUT(",\"reason\":");
    WARD_TRY(put_field(out, s, (audit_field)AEF_REASON));
    if (h->truncated != 0) {
        PUT(",\"truncated\":[");
        const char *sep = "\"";
        for (int f = 0; f < AEF_COUNT; f++) {
            if (h->truncated & (1u << f)) {
                WARD_TRY(ward_buf_puts(out, sep));
                WARD_TRY(ward_buf_puts(out, event_field_names[f]));
                sep = "\",\"";
            }
        }
        PUT("\"]");
    }
    return 0;
fail:
    out->len = start;
    if (out->ptr != NULL)
        out->ptr[start] = '\0';
    return rc;
}
