/* record.c - render audit records as JSON lines (up to their chain fields): field order, RFC 3339 times, strict string escaping */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
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
 * U+2028/2029 escaped, each byte of invalid UTF-8 as \ufffd. */
static int put_str(ward_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0; /* start of the bytes copied as they are */
    int rc = 0;
    WARD_TRY(ward_buf_putc(b, '"'));
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        char esc[8];
        const char *e = NULL;
        size_t elen = 0, step = 1;
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            e = esc;
            elen = 2;
        } else if (c < 0x80) { /* controls and DEL */
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            e = esc;
            elen = 6;
        } else {
            step = utf8_seq(p + i, n - i);
            if (step == 0) {
                e = "\\ufffd";
                elen = 6;
                step = 1;
            } else if (step == 3 && c == 0xE2 && p[i + 1] == 0x80 &&
                       (p[i + 2] == 0xA8 || p[i + 2] == 0xA9)) {
                e = p[i + 2] == 0xA8 ? "\\u2028" : "\\u2029";
                elen = 6;
            }
        }
        if (e == NULL) { /* valid multibyte character: part of the run */
            i += step;
            continue;
        }
        WARD_TRY(ward_buf_append(b, s + run, i - run));
        WARD_TRY(ward_buf_append(b, e, elen));
        i += step;
        run = i;
    }
    WARD_TRY(ward_buf_append(b, s + run, n - run));
    WARD_TRY(ward_buf_putc(b, '"'));
fail:
    return rc;
}

int audit_json_str(ward_buf *out, const char *s, size_t n)
{
    return put_str(out, s, n);
}

static int put_field(ward_buf *b, const audit_slot *s, audit_field f)
{
    uint16_t len = s->r.h.len[f];
    if (len == AUDIT_ABSENT)
        return ward_buf_append(b, "null", 4);
    return put_str(b, s->r.data + s->r.h.off[f], len);
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
    return ward_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

#define PUT(lit) WARD_TRY(ward_buf_append(out, lit, sizeof(lit) - 1))

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
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d", (int)y, (int)m, (int)d,
             (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60));
    memcpy(out, tmp, 19);
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
    return ward_buf_append(b, tmp, sizeof(tmp));
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
