/* export.c - a trail's records as JSONL, CSV (RFC 4180), OCSF API Activity or CEF, streamed */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"

static const char *const format_names[] = {"jsonl", "csv", "ocsf", "cef"};

int audit_format_parse(const char *s, audit_format *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, format_names[i]) == 0) {
            *out = (audit_format)i;
            return 0;
        }
    }
    return WARD_EINVAL;
}

const char *audit_format_name(audit_format f)
{
    return (unsigned)f < 4 ? format_names[f] : "?";
}

#define PUT(lit) WARD_TRY(ward_buf_append(out, lit, sizeof(lit) - 1))

static bool present(const audit_value *v)
{
    return v->type != AUDIT_V_ABSENT && v->type != AUDIT_V_NULL;
}

/* The value's text equals lit (strings unescaped). */
static bool text_is(const audit_value *v, const char *lit)
{
    size_t n = strlen(lit);
    return v->type == AUDIT_V_STRING && !v->escaped && v->len == n && memcmp(v->ptr, lit, n) == 0;
}

/* ---- CSV (RFC 4180) ---------------------------------------------------------------------------
 */

static const audit_attr csv_columns[] = {
    AUDIT_A_SEQ,
    AUDIT_A_TS,
    AUDIT_A_ID,
    AUDIT_A_NODE,
    AUDIT_A_DIRECTION,
    AUDIT_A_DECISION,
    AUDIT_A_POLICY,
    AUDIT_A_RULE,
    AUDIT_A_REASON,
    AUDIT_A_AUDIT,
    AUDIT_A_DRY_RUN_DECISION,
    AUDIT_A_DRY_RUN_POLICY,
    AUDIT_A_DRY_RUN_RULE,
    AUDIT_A_SOURCE_PRINCIPAL,
    AUDIT_A_SOURCE_IP,
    AUDIT_A_SOURCE_PORT,
    AUDIT_A_DESTINATION_SERVICE,
    AUDIT_A_DESTINATION_PRINCIPAL,
    AUDIT_A_DESTINATION_PORT,
    AUDIT_A_REQUEST_METHOD,
    AUDIT_A_REQUEST_HOST,
    AUDIT_A_REQUEST_PATH,
    AUDIT_A_REQUEST_PROTOCOL,
    AUDIT_A_RESPONSE_STATUS,
    AUDIT_A_BUNDLE,
    AUDIT_A_TRACE_ID,
    AUDIT_A_LATENCY_NS,
    AUDIT_A_PEER_CERT_SHA256,
    AUDIT_A_TRUNCATED,
    AUDIT_A_GAP,
    AUDIT_A_EVENT,
    AUDIT_A_HASH,
    /* added with identity events (new columns only ever go at the end) */
    AUDIT_A_OUTCOME,
    AUDIT_A_SUBJECT,
    AUDIT_A_SERIAL,
    AUDIT_A_NOT_AFTER,
    AUDIT_A_VIA,
    AUDIT_A_TOKEN_ID,
    AUDIT_A_AUDIENCE,
    AUDIT_A_KEY_ID,
    AUDIT_A_BUNDLE_SEQUENCE,
    AUDIT_A_SOURCE_UID,
    AUDIT_A_ERROR,
    /* added with TCP connection records */
    AUDIT_A_CONNECTION_BYTES_IN,
    AUDIT_A_CONNECTION_BYTES_OUT,
    AUDIT_A_CONNECTION_DURATION_MS,
    /* added with recorded request headers (a JSON object) */
    AUDIT_A_REQUEST_HEADERS,
};
#define N_CSV (sizeof(csv_columns) / sizeof(csv_columns[0]))

/* The strings of a JSON array joined by ';' (the "truncated" list). */
static int array_text(const audit_value *v, ward_buf *out)
{
    const char *p = v->ptr, *end = v->ptr + v->len;
    bool first = true;
    int rc = 0;
    while (p < end) {
        const char *q = memchr(p, '"', (size_t)(end - p));
        if (q == NULL)
            break;
        const char *s = ++q;
        bool esc = false;
        while (q < end && *q != '"') {
            if (*q == '\\') {
                esc = true;
                q++;
            }
            q++;
        }
        if (q >= end)
            break;
        audit_value item = {AUDIT_V_STRING, esc, s, (size_t)(q - s)};
        if (!first)
            WARD_TRY(ward_buf_putc(out, ';'));
        WARD_TRY(audit_value_text(&item, out));
        first = false;
        p = q + 1;
    }
fail:
    return rc;
}

/* One field: the text, a leading ' when a spreadsheet would take it for a
 * formula (= + - @ tab CR first), then quotes when it holds , " CR or LF. */
static int csv_field(ward_buf *out, const audit_value *v, ward_buf *tmp)
{
    int rc = 0;
    ward_buf_reset(tmp);
    if (v->type == AUDIT_V_ARRAY)
        WARD_TRY(array_text(v, tmp));
    else
        WARD_TRY(audit_value_text(v, tmp));
    const char *s = tmp->len > 0 ? tmp->ptr : "";
    size_t n = tmp->len;
    bool formula = (v->type == AUDIT_V_STRING || v->type == AUDIT_V_ARRAY) && n > 0 &&
                   strchr("=+-@\t\r", s[0]) != NULL;
    bool quote = false;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (quote)
        WARD_TRY(ward_buf_putc(out, '"'));
    if (formula)
        WARD_TRY(ward_buf_putc(out, '\''));
    if (!quote) {
        WARD_TRY(ward_buf_append(out, s, n));
    } else {
        size_t run = 0;
        for (size_t i = 0; i < n; i++) {
            if (s[i] == '"') {
                WARD_TRY(ward_buf_append(out, s + run, i + 1 - run));
                WARD_TRY(ward_buf_putc(out, '"'));
                run = i + 1;
            }
        }
        WARD_TRY(ward_buf_append(out, s + run, n - run));
        WARD_TRY(ward_buf_putc(out, '"'));
    }
fail:
    return rc;
}

static int csv_record(const audit_view *v, ward_buf *out)
{
    ward_buf tmp;
    int rc = 0;
    ward_buf_init(&tmp);
    for (size_t i = 0; i < N_CSV; i++) {
        if (i > 0)
            WARD_TRY(ward_buf_putc(out, ','));
        WARD_TRY(csv_field(out, &v->f[csv_columns[i]], &tmp));
    }
    PUT("\r\n");
fail:
    ward_buf_dispose(&tmp);
    return rc;
}

/* ---- OCSF API Activity (class 6003) -------------------------------------------------------------
 */

/* A value as JSON: strings keep their escaping (already valid JSON). */
static int put_json(ward_buf *out, const audit_value *v)
{
    int rc = 0;
    if (v->type == AUDIT_V_STRING) {
        WARD_TRY(ward_buf_putc(out, '"'));
        WARD_TRY(ward_buf_append(out, v->ptr, v->len));
        WARD_TRY(ward_buf_putc(out, '"'));
    } else if (present(v)) {
        WARD_TRY(ward_buf_append(out, v->ptr, v->len));
    } else {
        PUT("null");
    }
fail:
    return rc;
}

static int put_i64(ward_buf *out, int64_t v)
{
    char tmp[24], *p = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--p = '-';
    return ward_buf_append(out, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* sep "key": */
static int put_key(ward_buf *out, const char *sep, const char *key)
{
    int rc = 0;
    WARD_TRY(ward_buf_puts(out, sep));
    WARD_TRY(ward_buf_putc(out, '"'));
    WARD_TRY(ward_buf_puts(out, key));
    PUT("\":");
fail:
    return rc;
}

/* ,"key":value when v is present. *sep is "" before an object's first member. */
static int member(ward_buf *out, const char **sep, const char *key, const audit_value *v)
{
    int rc = 0;
    if (!present(v))
        return 0;
    WARD_TRY(put_key(out, *sep, key));
    WARD_TRY(put_json(out, v));
    *sep = ",";
fail:
    return rc;
}

typedef struct activity {
    const char *method;
    int id;
    const char *name;
} activity;

static const activity activities[] = {
    {"POST", 1, "Create"}, {"GET", 2, "Read"},     {"HEAD", 2, "Read"},
    {"PUT", 3, "Update"},  {"PATCH", 3, "Update"}, {"DELETE", 4, "Delete"},
};

static int ocsf_authorization(ward_buf *out, const audit_value *decision, const audit_value *policy,
                              const audit_value *rule, const audit_value *bundle,
                              const audit_value *reason, bool applied)
{
    int rc = 0;
    const char *sep = "";
    PUT("{");
    WARD_TRY(member(out, &sep, "decision", decision));
    WARD_TRY(put_key(out, sep, "policy"));
    PUT("{");
    sep = "";
    if (present(policy)) {
        WARD_TRY(member(out, &sep, "name", policy));
        if (present(rule) && policy->type == AUDIT_V_STRING) {
            PUT(",\"uid\":\"");
            WARD_TRY(ward_buf_append(out, policy->ptr, policy->len));
            PUT("#");
            WARD_TRY(ward_buf_append(out, rule->ptr, rule->len));
            PUT("\"");
        }
    } else {
        PUT("\"name\":\"default\"");
        sep = ",";
    }
    WARD_TRY(member(out, &sep, "version", bundle));
    if (reason != NULL)
        WARD_TRY(member(out, &sep, "desc", reason));
    WARD_TRY(put_key(out, sep, "is_applied"));
    WARD_TRY(ward_buf_puts(out, applied ? "true}}" : "false}}"));
fail:
    return rc;
}

/* ---- OCSF for identity events: Authentication (3002), Account Change (3001) ---------------- */

static bool text_prefix(const audit_value *v, const char *lit)
{
    size_t n = strlen(lit);
    return v->type == AUDIT_V_STRING && !v->escaped && v->len >= n && memcmp(v->ptr, lit, n) == 0;
}

/* The class and activity of an identity event (docs/audit.md); false: no OCSF form. */
static bool ocsf_event_class(const audit_value *f, int *class_uid, const char **class_name,
                             int *act, const char **act_name)
{
    const audit_value *ev = &f[AUDIT_A_EVENT];
    *class_uid = 3002, *class_name = "Authentication", *act = 99, *act_name = "Other";
    if (text_is(ev, "token.created")) {
        *class_uid = 3001, *class_name = "Account Change", *act = 1, *act_name = "Create";
    } else if (text_is(ev, "token.revoked")) {
        *class_uid = 3001, *class_name = "Account Change", *act = 6, *act_name = "Delete";
    } else if (text_is(ev, "token.refused") && text_is(&f[AUDIT_A_VIA], "admin")) {
        *class_uid = 3001, *class_name = "Account Change";
    } else if (text_prefix(ev, "jwt.")) {
        *act = 4, *act_name = "Service Ticket Request";
    } else if (text_prefix(ev, "svid.") && text_is(&f[AUDIT_A_VIA], "renew")) {
        *act = 5, *act_name = "Service Ticket Renew";
    } else if (text_prefix(ev, "svid.") || text_prefix(ev, "token.")) {
        *act = 3, *act_name = "Authentication Ticket";
    } else if (text_prefix(ev, "ca.")) {
        return false; /* CA rotation: no IAM class of OCSF 1.1.0 fits */
    }
    return true;
}

static int ocsf_event(const audit_view *v, int64_t ns, ward_buf *out)
{
    const audit_value *f = v->f;
    int rc = 0;
    int class_uid, act;
    const char *class_name, *act_name;
    if (!ocsf_event_class(f, &class_uid, &class_name, &act, &act_name))
        return 0;
    bool ok = text_is(&f[AUDIT_A_OUTCOME], "success");
    int64_t ms = ns >= 0 ? ns / 1000000 : -((-ns + 999999) / 1000000);
    PUT("{\"activity_id\":");
    WARD_TRY(put_i64(out, act));
    PUT(",\"activity_name\":\"");
    WARD_TRY(ward_buf_puts(out, act_name));
    PUT("\",\"category_uid\":3,\"category_name\":\"Identity & Access Management\",\"class_uid\":");
    WARD_TRY(put_i64(out, class_uid));
    PUT(",\"class_name\":\"");
    WARD_TRY(ward_buf_puts(out, class_name));
    PUT("\",\"type_uid\":");
    WARD_TRY(put_i64(out, (int64_t)class_uid * 100 + act));
    PUT(",\"type_name\":\"");
    WARD_TRY(ward_buf_puts(out, class_name));
    PUT(": ");
    WARD_TRY(ward_buf_puts(out, act_name));
    if (ok)
        PUT("\",\"severity_id\":1,\"severity\":\"Informational\",\"status_id\":1,"
            "\"status\":\"Success\"");
    else
        PUT("\",\"severity_id\":3,\"severity\":\"Medium\",\"status_id\":2,\"status\":\"Failure\"");
    const char *sep = ",";
    WARD_TRY(member(out, &sep, "status_code", &f[AUDIT_A_ERROR]));
    WARD_TRY(member(out, &sep, "status_detail", &f[AUDIT_A_REASON]));
    WARD_TRY(member(out, &sep, "message", present(&f[AUDIT_A_REASON]) ? &f[AUDIT_A_REASON]
                                                                      : &f[AUDIT_A_EVENT]));
    PUT(",\"time\":");
    WARD_TRY(put_i64(out, ms));
    PUT(",\"timezone_offset\":0");
    PUT(",\"metadata\":{\"version\":\"" AUDIT_OCSF_VERSION "\",\"product\":{\"name\":\"Ward\","
        "\"vendor_name\":\"Ward\",\"version\":\"" AUDIT_PRODUCT_VERSION "\"},"
        "\"log_name\":\"ward-audit\"");
    WARD_TRY(member(out, &sep, "uid", &f[AUDIT_A_ID]));
    WARD_TRY(member(out, &sep, "sequence", &f[AUDIT_A_SEQ]));
    WARD_TRY(member(out, &sep, "original_time", &f[AUDIT_A_TS]));
    PUT("}");
    /* user: the identity the event is about (the account, the ticket's owner) */
    if (present(&f[AUDIT_A_SUBJECT])) {
        PUT(",\"user\":{");
        sep = "";
        WARD_TRY(member(out, &sep, "uid", &f[AUDIT_A_SUBJECT]));
        WARD_TRY(member(out, &sep, "name", &f[AUDIT_A_SUBJECT]));
        PUT("}");
    } else {
        PUT(",\"user\":{\"type_id\":0,\"type\":\"Unknown\"}");
    }
    if (present(&f[AUDIT_A_SOURCE_PRINCIPAL])) {
        PUT(",\"actor\":{\"user\":{");
        sep = "";
        WARD_TRY(member(out, &sep, "uid", &f[AUDIT_A_SOURCE_PRINCIPAL]));
        WARD_TRY(member(out, &sep, "name", &f[AUDIT_A_SOURCE_PRINCIPAL]));
        PUT("}}");
    }
    if (present(&f[AUDIT_A_SOURCE_IP]) || present(&f[AUDIT_A_SOURCE_PORT])) {
        PUT(",\"src_endpoint\":{");
        sep = "";
        WARD_TRY(member(out, &sep, "ip", &f[AUDIT_A_SOURCE_IP]));
        WARD_TRY(member(out, &sep, "port", &f[AUDIT_A_SOURCE_PORT]));
        PUT("}");
    }
    PUT(",\"service\":{\"name\":\"wardd\"}");
    PUT(",\"unmapped\":{\"ward\":{");
    sep = "";
    static const struct {
        const char *name;
        audit_attr a;
    } extra[] = {
        {"seq", AUDIT_A_SEQ},
        {"node", AUDIT_A_NODE},
        {"event", AUDIT_A_EVENT},
        {"via", AUDIT_A_VIA},
        {"serial", AUDIT_A_SERIAL},
        {"not_after", AUDIT_A_NOT_AFTER},
        {"token_id", AUDIT_A_TOKEN_ID},
        {"audience", AUDIT_A_AUDIENCE},
        {"key_id", AUDIT_A_KEY_ID},
        {"bundle_sequence", AUDIT_A_BUNDLE_SEQUENCE},
        {"source_uid", AUDIT_A_SOURCE_UID},
        {"response_status", AUDIT_A_RESPONSE_STATUS},
        {"truncated", AUDIT_A_TRUNCATED},
        {"hash", AUDIT_A_HASH},
    };
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
        WARD_TRY(member(out, &sep, extra[i].name, &f[extra[i].a]));
    PUT("}}}\n");
    return 1;
fail:
    return rc;
}

static int ocsf_record(const audit_view *v, ward_buf *out)
{
    const audit_value *f = v->f;
    int64_t ns;
    int rc = 0;
    if (present(&f[AUDIT_A_EVENT]) && !present(&f[AUDIT_A_GAP]) && audit_view_time(v, &ns) == 0)
        return ocsf_event(v, ns, out);
    if (present(&f[AUDIT_A_GAP]) || present(&f[AUDIT_A_EVENT]) || !present(&f[AUDIT_A_DECISION]) ||
        audit_view_time(v, &ns) < 0)
        return 0; /* not an API activity */
    bool deny = !text_is(&f[AUDIT_A_DECISION], "allow");
    int act = 99;
    const char *act_name = "Other";
    for (size_t i = 0; i < sizeof(activities) / sizeof(activities[0]); i++) {
        if (text_is(&f[AUDIT_A_REQUEST_METHOD], activities[i].method)) {
            act = activities[i].id;
            act_name = activities[i].name;
        }
    }
    int64_t ms = ns >= 0 ? ns / 1000000 : -((-ns + 999999) / 1000000);
    PUT("{\"activity_id\":");
    WARD_TRY(put_i64(out, act));
    PUT(",\"activity_name\":\"");
    WARD_TRY(ward_buf_puts(out, act_name));
    PUT("\",\"category_uid\":6,\"category_name\":\"Application Activity\",\"class_uid\":6003,"
        "\"class_name\":\"API Activity\",\"type_uid\":");
    WARD_TRY(put_i64(out, 6003 * 100 + act));
    PUT(",\"type_name\":\"API Activity: ");
    WARD_TRY(ward_buf_puts(out, act_name));
    if (deny)
        PUT("\",\"severity_id\":3,\"severity\":\"Medium\",\"status_id\":2,\"status\":\"Failure\"");
    else
        PUT("\",\"severity_id\":1,\"severity\":\"Informational\",\"status_id\":1,"
            "\"status\":\"Success\"");
    const char *sep = ",";
    WARD_TRY(member(out, &sep, "status_detail", &f[AUDIT_A_REASON]));
    WARD_TRY(member(out, &sep, "message", &f[AUDIT_A_REASON]));
    PUT(",\"time\":");
    WARD_TRY(put_i64(out, ms));
    PUT(",\"timezone_offset\":0");

    PUT(",\"metadata\":{\"version\":\"" AUDIT_OCSF_VERSION "\",\"product\":{\"name\":\"Ward\","
        "\"vendor_name\":\"Ward\",\"version\":\"" AUDIT_PRODUCT_VERSION "\"},"
        "\"log_name\":\"ward-audit\"");
    WARD_TRY(member(out, &sep, "uid", &f[AUDIT_A_ID]));
    WARD_TRY(member(out, &sep, "correlation_uid", &f[AUDIT_A_TRACE_ID]));
    WARD_TRY(member(out, &sep, "sequence", &f[AUDIT_A_SEQ]));
    WARD_TRY(member(out, &sep, "original_time", &f[AUDIT_A_TS]));
    PUT("}");

    if (present(&f[AUDIT_A_SOURCE_PRINCIPAL])) {
        PUT(",\"actor\":{\"user\":{");
        sep = "";
        WARD_TRY(member(out, &sep, "uid", &f[AUDIT_A_SOURCE_PRINCIPAL]));
        WARD_TRY(member(out, &sep, "name", &f[AUDIT_A_SOURCE_PRINCIPAL]));
        PUT("}}");
    } else {
        PUT(",\"actor\":{\"user\":{\"type_id\":0,\"type\":\"Unknown\"}}");
    }

    PUT(",\"api\":{\"operation\":");
    if (present(&f[AUDIT_A_REQUEST_METHOD]))
        WARD_TRY(put_json(out, &f[AUDIT_A_REQUEST_METHOD]));
    else
        PUT("\"unknown\"");
    sep = ",";
    if (present(&f[AUDIT_A_ID])) {
        PUT(",\"request\":{\"uid\":");
        WARD_TRY(put_json(out, &f[AUDIT_A_ID]));
        PUT("}");
    }
    if (present(&f[AUDIT_A_RESPONSE_STATUS])) {
        PUT(",\"response\":{\"code\":");
        WARD_TRY(put_json(out, &f[AUDIT_A_RESPONSE_STATUS]));
        PUT("}");
    }
    if (present(&f[AUDIT_A_DESTINATION_SERVICE])) {
        PUT(",\"service\":{\"name\":");
        WARD_TRY(put_json(out, &f[AUDIT_A_DESTINATION_SERVICE]));
        PUT("}");
    }
    PUT("}");

    PUT(",\"src_endpoint\":{");
    sep = "";
    WARD_TRY(member(out, &sep, "ip", &f[AUDIT_A_SOURCE_IP]));
    WARD_TRY(member(out, &sep, "port", &f[AUDIT_A_SOURCE_PORT]));
    PUT("},\"dst_endpoint\":{");
    sep = "";
    WARD_TRY(member(out, &sep, "port", &f[AUDIT_A_DESTINATION_PORT]));
    WARD_TRY(member(out, &sep, "svc_name", &f[AUDIT_A_DESTINATION_SERVICE]));
    PUT("}");

    PUT(",\"http_request\":{");
    sep = "";
    WARD_TRY(member(out, &sep, "http_method", &f[AUDIT_A_REQUEST_METHOD]));
    WARD_TRY(put_key(out, sep, "url"));
    PUT("{");
    sep = "";
    WARD_TRY(member(out, &sep, "hostname", &f[AUDIT_A_REQUEST_HOST]));
    WARD_TRY(member(out, &sep, "path", &f[AUDIT_A_REQUEST_PATH]));
    PUT("}");
    const audit_value *proto = &f[AUDIT_A_REQUEST_PROTOCOL];
    if (proto->type == AUDIT_V_STRING && proto->len > 5 && memcmp(proto->ptr, "HTTP/", 5) == 0) {
        audit_value ver = {AUDIT_V_STRING, proto->escaped, proto->ptr + 5, proto->len - 5};
        sep = ",";
        WARD_TRY(member(out, &sep, "version", &ver));
    }
    PUT("}");
    if (present(&f[AUDIT_A_RESPONSE_STATUS])) {
        PUT(",\"http_response\":{\"code\":");
        WARD_TRY(put_json(out, &f[AUDIT_A_RESPONSE_STATUS]));
        PUT("}");
    }
    if (present(&f[AUDIT_A_CONNECTION_BYTES_IN])) { /* a TCP connection: its traffic */
        PUT(",\"traffic\":{");
        sep = "";
        WARD_TRY(member(out, &sep, "bytes_in", &f[AUDIT_A_CONNECTION_BYTES_IN]));
        WARD_TRY(member(out, &sep, "bytes_out", &f[AUDIT_A_CONNECTION_BYTES_OUT]));
        PUT("}");
        sep = ",";
        WARD_TRY(member(out, &sep, "duration", &f[AUDIT_A_CONNECTION_DURATION_MS]));
    }

    PUT(",\"authorizations\":[");
    WARD_TRY(ocsf_authorization(out, &f[AUDIT_A_DECISION], &f[AUDIT_A_POLICY], &f[AUDIT_A_RULE],
                                &f[AUDIT_A_BUNDLE], &f[AUDIT_A_REASON], true));
    if (present(&f[AUDIT_A_DRY_RUN_DECISION])) {
        PUT(",");
        WARD_TRY(ocsf_authorization(out, &f[AUDIT_A_DRY_RUN_DECISION], &f[AUDIT_A_DRY_RUN_POLICY],
                                    &f[AUDIT_A_DRY_RUN_RULE], &f[AUDIT_A_BUNDLE], NULL, false));
    }
    PUT("]");

    PUT(",\"unmapped\":{\"ward\":{");
    sep = "";
    static const struct {
        const char *name;
        audit_attr a;
    } extra[] = {
        {"seq", AUDIT_A_SEQ},
        {"node", AUDIT_A_NODE},
        {"direction", AUDIT_A_DIRECTION},
        {"rule", AUDIT_A_RULE},
        {"audit", AUDIT_A_AUDIT},
        {"destination_principal", AUDIT_A_DESTINATION_PRINCIPAL},
        {"peer_cert_sha256", AUDIT_A_PEER_CERT_SHA256},
        {"latency_ns", AUDIT_A_LATENCY_NS},
        {"request_headers", AUDIT_A_REQUEST_HEADERS},
        {"truncated", AUDIT_A_TRUNCATED},
        {"hash", AUDIT_A_HASH},
    };
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
        WARD_TRY(member(out, &sep, extra[i].name, &f[extra[i].a]));
    PUT("}}}\n");
    return 1;
fail:
    return rc;
}

/* ---- CEF ----------------------------------------------------------------------------------------
 */

/* A header field: '\' and '|' escaped; CR and LF (which would end the event) as spaces. */
static int cef_header(ward_buf *out, const char *s, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' || c == '|')
            WARD_TRY(ward_buf_putc(out, '\\'));
        WARD_TRY(ward_buf_putc(out, c == '\r' || c == '\n' ? ' ' : c));
    }
fail:
    return rc;
}

/* An extension value: '\' and '=' escaped, CR and LF as \r and \n, other
 * control bytes as U+FFFD. */
static int cef_value(ward_buf *out, const char *s, size_t n)
{
    /* 1: escaped or replaced */
    static const unsigned char special[256] = {
        [0] = 1,  [1] = 1,  [2] = 1,  [3] = 1,    [4] = 1,   [5] = 1,    [6] = 1,
        [7] = 1,  [8] = 1,  [10] = 1, [11] = 1,   [12] = 1,  [13] = 1,   [14] = 1,
        [15] = 1, [16] = 1, [17] = 1, [18] = 1,   [19] = 1,  [20] = 1,   [21] = 1,
        [22] = 1, [23] = 1, [24] = 1, [25] = 1,   [26] = 1,  [27] = 1,   [28] = 1,
        [29] = 1, [30] = 1, [31] = 1, ['\\'] = 1, ['='] = 1, [0x7F] = 1,
    };
    int rc = 0;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = NULL;
        if (!special[c])
            continue;
        if (c == '\\')
            e = "\\\\";
        else if (c == '=')
            e = "\\=";
        else if (c == '\r')
            e = "\\r";
        else if (c == '\n')
            e = "\\n";
        else if ((c < 0x20 && c != '\t') || c == 0x7F)
            e = "\xEF\xBF\xBD";
        if (e == NULL)
            continue;
        WARD_TRY(ward_buf_append(out, s + run, i - run));
        WARD_TRY(ward_buf_puts(out, e));
        run = i + 1;
    }
    WARD_TRY(ward_buf_append(out, s + run, n - run));
fail:
    return rc;
}

/* " key=value" when v is present. */
static int cef_ext(ward_buf *out, ward_buf *tmp, const char *key, const audit_value *v)
{
    int rc = 0;
    if (!present(v))
        return 0;
    ward_buf_reset(tmp);
    WARD_TRY(audit_value_text(v, tmp));
    WARD_TRY(ward_buf_putc(out, ' '));
    WARD_TRY(ward_buf_puts(out, key));
    WARD_TRY(ward_buf_putc(out, '='));
    WARD_TRY(cef_value(out, tmp->len ? tmp->ptr : "", tmp->len));
fail:
    return rc;
}

static int cef_ext_labelled(ward_buf *out, ward_buf *tmp, const char *key, const char *label,
                            const audit_value *v)
{
    int rc = 0;
    if (!present(v))
        return 0;
    WARD_TRY(ward_buf_putc(out, ' '));
    WARD_TRY(ward_buf_puts(out, key));
    PUT("Label=");
    WARD_TRY(ward_buf_puts(out, label));
    WARD_TRY(cef_ext(out, tmp, key, v));
fail:
    return rc;
}

/* An identity event: signature "identity:<event>", its own extension set. */
static int cef_event(const audit_view *v, ward_buf *out)
{
    const audit_value *f = v->f;
    ward_buf tmp;
    int64_t ns;
    int rc = 0;
    ward_buf_init(&tmp);
    bool ok = text_is(&f[AUDIT_A_OUTCOME], "success");
    PUT("CEF:0|Ward|wardd|");
    WARD_TRY(cef_header(out, AUDIT_PRODUCT_VERSION, strlen(AUDIT_PRODUCT_VERSION)));
    PUT("|identity:");
    WARD_TRY(audit_value_text(&f[AUDIT_A_EVENT], &tmp));
    WARD_TRY(cef_header(out, tmp.len ? tmp.ptr : "", tmp.len));
    WARD_TRY(ward_buf_puts(out, ok ? "|identity event|1|" : "|identity event refused|5|"));
    size_t ext_start = out->len;
    if (audit_view_time(v, &ns) == 0) {
        PUT(" rt=");
        WARD_TRY(put_i64(out, ns >= 0 ? ns / 1000000 : -((-ns + 999999) / 1000000)));
    }
    WARD_TRY(cef_ext(out, &tmp, "externalId", &f[AUDIT_A_ID]));
    WARD_TRY(cef_ext(out, &tmp, "dvchost", &f[AUDIT_A_NODE]));
    WARD_TRY(cef_ext(out, &tmp, "outcome", &f[AUDIT_A_OUTCOME]));
    WARD_TRY(cef_ext(out, &tmp, "src", &f[AUDIT_A_SOURCE_IP]));
    WARD_TRY(cef_ext(out, &tmp, "spt", &f[AUDIT_A_SOURCE_PORT]));
    WARD_TRY(cef_ext(out, &tmp, "suser", &f[AUDIT_A_SOURCE_PRINCIPAL]));
    WARD_TRY(cef_ext(out, &tmp, "suid", &f[AUDIT_A_SOURCE_UID]));
    WARD_TRY(cef_ext(out, &tmp, "duser", &f[AUDIT_A_SUBJECT]));
    WARD_TRY(cef_ext(out, &tmp, "reason", &f[AUDIT_A_REASON]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cs1", "error", &f[AUDIT_A_ERROR]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cs2", "via", &f[AUDIT_A_VIA]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cs3", "tokenId", &f[AUDIT_A_TOKEN_ID]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cs4", "serial", &f[AUDIT_A_SERIAL]));
    if (present(&f[AUDIT_A_AUDIENCE])) {
        ward_buf aud;
        ward_buf_init(&aud);
        int arc = array_text(&f[AUDIT_A_AUDIENCE], &aud);
        if (arc == 0)
            arc = ward_buf_puts(out, " cs5Label=audience cs5=");
        if (arc == 0)
            arc = cef_value(out, aud.len ? aud.ptr : "", aud.len);
        ward_buf_dispose(&aud);
        WARD_TRY(arc);
    }
    WARD_TRY(cef_ext_labelled(out, &tmp, "cs6", "identityEvent", &f[AUDIT_A_EVENT]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "flexString1", "keyId", &f[AUDIT_A_KEY_ID]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "flexString2", "notAfter", &f[AUDIT_A_NOT_AFTER]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cn1", "bundleSequence", &f[AUDIT_A_BUNDLE_SEQUENCE]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cn2", "responseStatus", &f[AUDIT_A_RESPONSE_STATUS]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cn3", "seq", &f[AUDIT_A_SEQ]));
    if (out->len > ext_start && out->ptr[ext_start] == ' ') {
        memmove(out->ptr + ext_start, out->ptr + ext_start + 1, out->len - ext_start - 1);
        out->len--;
    }
    PUT("\n");
fail:
    ward_buf_dispose(&tmp);
    return rc < 0 ? rc : 1;
}

static int cef_record(const audit_view *v, ward_buf *out)
{
    const audit_value *f = v->f;
    ward_buf tmp;
    int64_t ns;
    int rc = 0;
    ward_buf_init(&tmp);
    const char *sig = "audit:record", *name = "audit record";
    int sev = 3;
    if (present(&f[AUDIT_A_GAP])) {
        sig = "audit:gap", name = "audit records dropped", sev = 8;
    } else if (present(&f[AUDIT_A_EVENT])) {
        ward_buf_dispose(&tmp);
        return cef_event(v, out);
    } else if (text_is(&f[AUDIT_A_DECISION], "allow")) {
        sig = "authz:allow", name = "request allowed", sev = 1;
    } else if (present(&f[AUDIT_A_DECISION])) {
        sig = "authz:deny", name = "request denied", sev = 5;
    }
    PUT("CEF:0|Ward|ward-proxy|");
    WARD_TRY(cef_header(out, AUDIT_PRODUCT_VERSION, strlen(AUDIT_PRODUCT_VERSION)));
    PUT("|");
    WARD_TRY(cef_header(out, sig, strlen(sig)));
    PUT("|");
    WARD_TRY(cef_header(out, name, strlen(name)));
    WARD_TRY(ward_buf_putc(out, '|'));
    WARD_TRY(put_i64(out, sev));
    WARD_TRY(ward_buf_putc(out, '|'));
    size_t ext_start = out->len;
    if (audit_view_time(v, &ns) == 0) {
        PUT(" rt=");
        WARD_TRY(put_i64(out, ns >= 0 ? ns / 1000000 : -((-ns + 999999) / 1000000)));
    }
    WARD_TRY(cef_ext(out, &tmp, "externalId", &f[AUDIT_A_ID]));
    WARD_TRY(cef_ext(out, &tmp, "dvchost", &f[AUDIT_A_NODE]));
    if (present(&f[AUDIT_A_DIRECTION]))
        WARD_TRY(ward_buf_puts(out, text_is(&f[AUDIT_A_DIRECTION], "outbound")
                                        ? " deviceDirection=1"
                                        : " deviceDirection=0"));
    WARD_TRY(cef_ext(out, &tmp, "act", &f[AUDIT_A_DECISION]));
    WARD_TRY(cef_ext(out, &tmp, "src", &f[AUDIT_A_SOURCE_IP]));
    WARD_TRY(cef_ext(out, &tmp, "spt", &f[AUDIT_A_SOURCE_PORT]));
    WARD_TRY(cef_ext(out, &tmp, "suser", &f[AUDIT_A_SOURCE_PRINCIPAL]));
    WARD_TRY(cef_ext(out, &tmp, "duser", &f[AUDIT_A_DESTINATION_PRINCIPAL]));
    WARD_TRY(cef_ext(out, &tmp, "dpt", &f[AUDIT_A_DESTINATION_PORT]));
    WARD_TRY(cef_ext(out, &tmp, "destinationServiceName", &f[AUDIT_A_DESTINATION_SERVICE]));
    WARD_TRY(cef_ext(out, &tmp, "dhost", &f[AUDIT_A_REQUEST_HOST]));
    WARD_TRY(cef_ext(out, &tmp, "requestMethod", &f[AUDIT_A_REQUEST_METHOD]));
    WARD_TRY(cef_ext(out, &tmp, "request", &f[AUDIT_A_REQUEST_PATH]));
    WARD_TRY(cef_ext(out, &tmp, "app", &f[AUDIT_A_REQUEST_PROTOCOL]));
    WARD_TRY(cef_ext(out, &tmp, "reason", &f[AUDIT_A_REASON]));
    WARD_TRY(cef_ext(out, &tmp, "cnt", &f[AUDIT_A_GAP]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cs1", "policy", &f[AUDIT_A_POLICY]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cn1", "rule", &f[AUDIT_A_RULE]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cs2", "bundle", &f[AUDIT_A_BUNDLE]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cs3", "traceId", &f[AUDIT_A_TRACE_ID]));
    if (present(&f[AUDIT_A_DRY_RUN_DECISION])) {
        /* "deny shop/x#0": the dry-run decision, policy and rule */
        ward_buf dry;
        ward_buf_init(&dry);
        int drc = audit_value_text(&f[AUDIT_A_DRY_RUN_DECISION], &dry);
        if (drc == 0 && present(&f[AUDIT_A_DRY_RUN_POLICY])) {
            drc = ward_buf_putc(&dry, ' ');
            if (drc == 0)
                drc = audit_value_text(&f[AUDIT_A_DRY_RUN_POLICY], &dry);
            if (drc == 0 && present(&f[AUDIT_A_DRY_RUN_RULE]) &&
                (drc = ward_buf_putc(&dry, '#')) == 0)
                drc = audit_value_text(&f[AUDIT_A_DRY_RUN_RULE], &dry);
        }
        if (drc == 0)
            drc = ward_buf_puts(out, " cs4Label=dryRun cs4=");
        if (drc == 0)
            drc = cef_value(out, dry.len ? dry.ptr : "", dry.len);
        ward_buf_dispose(&dry);
        WARD_TRY(drc);
    }
    WARD_TRY(cef_ext_labelled(out, &tmp, "cs5", "peerCertSha256", &f[AUDIT_A_PEER_CERT_SHA256]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cs6", "identityEvent", &f[AUDIT_A_EVENT]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cn2", "responseStatus", &f[AUDIT_A_RESPONSE_STATUS]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cn3", "seq", &f[AUDIT_A_SEQ]));
    WARD_TRY(cef_ext(out, &tmp, "in", &f[AUDIT_A_CONNECTION_BYTES_IN]));
    WARD_TRY(cef_ext(out, &tmp, "out", &f[AUDIT_A_CONNECTION_BYTES_OUT]));
    WARD_TRY(cef_ext_labelled(out, &tmp, "cfp1", "durationMs",
                              &f[AUDIT_A_CONNECTION_DURATION_MS]));
    /* extensions are separated by spaces: drop the one before the first */
    if (out->len > ext_start && out->ptr[ext_start] == ' ') {
        memmove(out->ptr + ext_start, out->ptr + ext_start + 1, out->len - ext_start - 1);
        out->len--;
    }
    PUT("\n");
    ward_buf_dispose(&tmp);
    return 1;
fail:
    ward_buf_dispose(&tmp);
    return rc;
}

/* ---- records and streams -----------------------------------------------------------------------
 */

int audit_export_header(audit_format f, ward_buf *out)
{
    int rc = 0;
    if (f != AUDIT_FORMAT_CSV)
        return 0;
    for (size_t i = 0; i < N_CSV; i++) {
        if (i > 0)
            WARD_TRY(ward_buf_putc(out, ','));
        WARD_TRY(ward_buf_puts(out, audit_attr_name(csv_columns[i])));
    }
    PUT("\r\n");
fail:
    return rc;
}

int audit_export_record(audit_format f, const audit_view *v, ward_buf *out)
{
    size_t start = out->len;
    int rc;
    switch (f) {
    case AUDIT_FORMAT_JSONL:
        rc = ward_buf_append(out, v->line, v->len);
        if (rc == 0)
            rc = ward_buf_putc(out, '\n');
        break;
    case AUDIT_FORMAT_CSV: rc = csv_record(v, out); break;
    case AUDIT_FORMAT_OCSF: rc = ocsf_record(v, out); break;
    case AUDIT_FORMAT_CEF: rc = cef_record(v, out); break;
    default: return WARD_EINVAL;
    }
    if (rc < 0) { /* nothing half-written */
        out->len = start;
        if (out->ptr != NULL)
            out->ptr[start] = '\0';
        return rc;
    }
    return f == AUDIT_FORMAT_OCSF ? rc : 1;
}

typedef struct exporter {
    audit_format format;
    FILE *out;
    ward_buf buf;
    audit_export_stats *st;
    int write_errno;
} exporter;

#define FLUSH_AT ((size_t)1 << 20)

static int exporter_flush(exporter *e)
{
    if (e->buf.len == 0)
        return 0;
    if (fwrite(e->buf.ptr, 1, e->buf.len, e->out) != e->buf.len) {
        e->write_errno = errno ? errno : EIO;
        return WARD_EIO;
    }
    e->st->out_bytes += e->buf.len;
    ward_buf_reset(&e->buf);
    return 0;
}

static int export_one(const audit_view *v, void *data)
{
    exporter *e = data;
    int rc = audit_export_record(e->format, v, &e->buf);
    if (rc < 0)
        return rc;
    if (rc == 0)
        e->st->left_out++;
    else
        e->st->exported++;
    return e->buf.len >= FLUSH_AT ? exporter_flush(e) : 0;
}

int audit_export(const audit_scan_options *o, audit_format f, FILE *out, audit_export_stats *st,
                 ward_err *err)
{
    exporter e = {f, out, {0}, st, 0};
    int rc = 0;
    memset(st, 0, sizeof(*st));
    ward_buf_init(&e.buf);
    WARD_TRY(audit_export_header(f, &e.buf));
    audit_scan_options so = *o;
    so.lines_only = f == AUDIT_FORMAT_JSONL;
    rc = audit_scan(&so, export_one, &e, &st->scan, err);
    if (rc == 0)
        rc = exporter_flush(&e);
    if (rc == 0 && fflush(out) != 0) {
        e.write_errno = errno;
        rc = WARD_EIO;
    }
    if (rc == WARD_EIO && e.write_errno != 0)
        ward_err_set(err, "writing the export: %s", strerror(e.write_errno));
fail:
    ward_buf_dispose(&e.buf);
    return rc;
}
