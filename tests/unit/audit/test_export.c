/* test_export.c - unit tests of reading records: fields, times, filters, counts, and the
 * JSONL/CSV/OCSF/CEF exports */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "audit/audit.h"
#include "common/ward.h"

/* A record as the writer writes it (the hash need not be right: nothing here verifies). */
#define REC_HEAD "{\"v\":1,\"seq\":7,\"ts\":\"2026-11-26T02:03:14.337433Z\","
#define REC_TAIL ",\"prev\":\"" Z64 "\",\"hash\":\"" Z64 "\"}"
#define Z64      "0000000000000000000000000000000000000000000000000000000000000000"

static const char plain_rec[] = REC_HEAD
    "\"id\":\"0123456789abcdef0123456789abcdef\",\"node\":\"spiffe://example.org/ns/shop/sa/"
    "proxy\",\"direction\":\"inbound\",\"decision\":\"deny\",\"policy\":\"shop/payments\","
    "\"rule\":2,\"reason\":\"matched rule 2\",\"audit\":true,\"dry_run\":{\"decision\":"
    "\"allow\",\"policy\":\"shop/dry\",\"rule\":0},\"source\":{\"principal\":\"spiffe://"
    "example.org/ns/shop/sa/checkout\",\"ip\":\"10.0.0.7\",\"port\":41234},"
    "\"destination\":{\"service\":\"payments\",\"principal\":\"spiffe://example.org/ns/"
    "shop/sa/payments\",\"port\":8443},\"request\":{\"method\":\"GET\",\"host\":"
    "\"payments\",\"path\":\"/v1/items\",\"protocol\":\"HTTP/1.1\"},\"response\":"
    "{\"status\":403},\"bundle\":\"rev-7\",\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
    "\"latency_ns\":1830,\"peer_cert_sha256\":null" REC_TAIL;

/* Hostile values: | = \ newline in the principal and path, formulas in CSV cells. */
static const char hostile_rec[] = REC_HEAD
    "\"id\":\"ffffffffffffffffffffffffffffffff\",\"node\":null,\"direction\":\"outbound\","
    "\"decision\":\"allow\",\"policy\":\"@evil/p,\\\"q\\\"\",\"rule\":0,\"reason\":"
    "\"=HYPERLINK(\\\"http://x\\\")\",\"audit\":false,\"dry_run\":null,\"source\":{"
    "\"principal\":\"spiffe://td/a|b=c\\\\d\\ne\",\"ip\":null,\"port\":null},"
    "\"destination\":{\"service\":\"+svc\",\"principal\":null,\"port\":null},\"request\":"
    "{\"method\":\"POST\",\"host\":\"-h\",\"path\":\"/x|y=z\\\\w\\r\\nX: 1\",\"protocol\":"
    "\"HTTP/1.1\"},\"response\":null,\"bundle\":\"b\",\"trace_id\":null,\"latency_ns\":null,"
    "\"peer_cert_sha256\":null,\"truncated\":[\"request.path\",\"reason\"]" REC_TAIL;

static const char gap_rec[] = "{\"v\":1,\"seq\":8,\"ts\":\"2026-11-26T02:03:15.000000Z\",\"node\":"
                              "\"n\",\"gap\":3,\"reason\":\"3 dropped\"" REC_TAIL;

static audit_view view_of(const char *line)
{
    audit_view v;
    assert_int_equal(audit_view_parse(&v, line, strlen(line)), 0);
    return v;
}

/* The value of attr as text, in a static buffer. */
static const char *text(const audit_view *v, audit_attr a)
{
    static char out[1024];
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(audit_value_text(&v->f[a], &b), 0);
    snprintf(out, sizeof(out), "%.*s", (int)b.len, b.len ? b.ptr : "");
    ward_buf_dispose(&b);
    return out;
}

/* ---- fields --------------------------------------------------------------------------------- */

static void test_view_fields(void **state)
{
    audit_view v = view_of(plain_rec);
    assert_string_equal(text(&v, AUDIT_A_SEQ), "7");
    assert_string_equal(text(&v, AUDIT_A_DECISION), "deny");
    assert_string_equal(text(&v, AUDIT_A_SOURCE_PRINCIPAL),
                        "spiffe://example.org/ns/shop/sa/checkout");
    assert_string_equal(text(&v, AUDIT_A_DESTINATION_PORT), "8443");
    assert_string_equal(text(&v, AUDIT_A_REQUEST_PATH), "/v1/items");
    assert_string_equal(text(&v, AUDIT_A_RESPONSE_STATUS), "403");
    assert_string_equal(text(&v, AUDIT_A_DRY_RUN_POLICY), "shop/dry");
    assert_string_equal(text(&v, AUDIT_A_AUDIT), "true");
    assert_int_equal(v.f[AUDIT_A_AUDIT].type, AUDIT_V_TRUE);
    assert_int_equal(v.f[AUDIT_A_PEER_CERT_SHA256].type, AUDIT_V_NULL);
    assert_int_equal(v.f[AUDIT_A_GAP].type, AUDIT_V_ABSENT);
    assert_int_equal(v.f[AUDIT_A_RESPONSE].type, AUDIT_V_OBJECT);
    assert_int_equal(v.f[AUDIT_A_HASH].len, 64);
}

static void test_view_escapes_and_nulls(void **state)
{
    audit_view v = view_of(hostile_rec);
    assert_true(v.f[AUDIT_A_SOURCE_PRINCIPAL].escaped);
    assert_string_equal(text(&v, AUDIT_A_SOURCE_PRINCIPAL), "spiffe://td/a|b=c\\d\ne");
    assert_string_equal(text(&v, AUDIT_A_REQUEST_PATH), "/x|y=z\\w\r\nX: 1");
    assert_int_equal(v.f[AUDIT_A_RESPONSE].type, AUDIT_V_NULL);
    assert_int_equal(v.f[AUDIT_A_RESPONSE_STATUS].type, AUDIT_V_ABSENT);
    assert_int_equal(v.f[AUDIT_A_DRY_RUN].type, AUDIT_V_NULL);
    assert_int_equal(v.f[AUDIT_A_TRUNCATED].type, AUDIT_V_ARRAY);
    assert_string_equal(text(&v, AUDIT_A_NODE), "");
}

static void test_view_unicode_escapes(void **state)
{
    audit_view v = view_of("{\"v\":1,\"reason\":\"caf\\u00e9 \\ud83d\\ude00 \\ud800x \\/\\t\"}");
    assert_string_equal(text(&v, AUDIT_A_REASON), "caf\xc3\xa9 \xf0\x9f\x98\x80 \xef\xbf\xbdx /\t");
}

static void test_view_tolerates_spaces_and_unknown_keys(void **state)
{
    audit_view v = view_of(" { \"v\" : 1 , \"future\" : {\"a\":[1,{\"b\":null}]}, \"source\": "
                           "{\"principal\" : \"p\", \"new\": true} }\r");
    assert_string_equal(text(&v, AUDIT_A_SOURCE_PRINCIPAL), "p");
}

static void test_view_rejects_what_is_not_an_object(void **state)
{
    static const char *bad[] = {
        "",
        "[]",
        "{",
        "{\"v\":1",
        "{\"v\":1}x",
        "{\"v\":\"unterminated}",
        "{\"v\" 1}",
        "{\"v\":tru}",
        "{\"v\":1,}",
        "hello",
        "{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
    };
    audit_view v;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (audit_view_parse(&v, bad[i], strlen(bad[i])) == 0)
            fail_msg("accepted: %s", bad[i]);
}

static void test_attr_names(void **state)
{
    for (int a = 0; a < AUDIT_A_COUNT; a++) {
        const char *n = audit_attr_name((audit_attr)a);
        assert_int_equal(audit_attr_lookup(n, strlen(n)), a);
    }
    assert_int_equal(audit_attr_lookup("source.nope", 11), -1);
}

/* ---- times -------------------------------------------------------------------------------------
 */

static void test_time_parse_rfc3339(void **state)
{
    int64_t t;
    ward_err err;
    const int64_t base = 1795658594LL * 1000000000; /* 2026-11-26T02:03:14Z */
    assert_int_equal(audit_time_parse("2026-11-26T02:03:14Z", 0, &t, &err), 0);
    assert_int_equal(t, base);
    assert_int_equal(audit_time_parse("2026-11-26t02:03:14.5z", 0, &t, &err), 0);
    assert_int_equal(t, base + 500000000);
    assert_int_equal(audit_time_parse("2026-11-26T03:03:14.000000001+01:00", 0, &t, &err), 0);
    assert_int_equal(t, base + 1);
    assert_int_equal(audit_time_parse("2026-11-25T21:03:14-05:00", 0, &t, &err), 0);
    assert_int_equal(t, base);
    assert_int_equal(audit_time_parse("2026-11-26", 0, &t, &err), 0);
    assert_int_equal(t, base - (2 * 3600 + 3 * 60 + 14) * 1000000000LL);
    assert_int_equal(audit_time_parse("1970-01-01T00:00:00Z", 0, &t, &err), 0);
    assert_int_equal(t, 0);
    assert_int_equal(audit_time_parse("2024-02-29T00:00:00Z", 0, &t, &err), 0);
}

static void test_time_parse_relative(void **state)
{
    int64_t t, now = 2000000000000000000;
    ward_err err;
    assert_int_equal(audit_time_parse("1h", now, &t, &err), 0);
    assert_int_equal(t, now - 3600000000000);
    assert_int_equal(audit_time_parse("1h30m", now, &t, &err), 0);
    assert_int_equal(t, now - 5400000000000);
    assert_int_equal(audit_time_parse("7d", now, &t, &err), 0);
    assert_int_equal(t, now - 7 * 86400000000000);
    assert_int_equal(audit_time_parse("250ms", now, &t, &err), 0);
    assert_int_equal(t, now - 250000000);
    assert_int_equal(audit_time_parse("now", now, &t, &err), 0);
    assert_int_equal(t, now);
}

static void test_time_parse_rejects(void **state)
{
    static const char *bad[] = {
        "",
        "yesterday",
        "1x",
        "h",
        "-1h",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2025-02-29",
        "2026-11-26T24:00:00Z",
        "2026-11-26T02:03:14",
        "2026-11-26T02:03Z",
        "2026-11-26T02:03:14.Z",
        "2026-11-26T02:03:14+0100",
        "2026-11-26T02:03:14Z junk",
        "99999999999d",
    };
    int64_t t;
    ward_err err;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ward_err_clear(&err);
        if (audit_time_parse(bad[i], 0, &t, &err) != WARD_EINVAL)
            fail_msg("accepted: '%s'", bad[i]);
        assert_non_null(strstr(err.msg, "RFC 3339"));
    }
}

static void test_view_time(void **state)
{
    int64_t t;
    audit_view v = view_of(plain_rec);
    assert_int_equal(audit_view_time(&v, &t), 0);
    assert_int_equal(t, 1795658594LL * 1000000000 + 337433000);
    v = view_of("{\"ts\":\"2026-11-26T03:03:14.337433+01:00\"}");
    assert_int_equal(audit_view_time(&v, &t), 0);
    assert_int_equal(t, 1795658594LL * 1000000000 + 337433000);
    v = view_of("{\"ts\":\"soon\"}");
    assert_int_equal(audit_view_time(&v, &t), WARD_EINVAL);
    v = view_of("{\"v\":1}");
    assert_int_equal(audit_view_time(&v, &t), WARD_EINVAL);
}

/* ---- filters -----------------------------------------------------------------------------------
 */

static bool matches(const char *line, const char *const *where, int64_t since, int64_t until)
{
    audit_filter *f;
    ward_err err;
    assert_int_equal(audit_filter_new(&f), 0);
    for (; where != NULL && *where != NULL; where++)
        assert_int_equal(audit_filter_where(f, *where, &err), 0);
    audit_filter_range(f, since, until);
    audit_view v = view_of(line);
    bool m = audit_filter_match(f, &v);
    audit_filter_free(f);
    return m;
}

#define W(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ANY    INT64_MIN, INT64_MAX

static void test_filter_where(void **state)
{
    assert_true(matches(plain_rec, W("decision=deny"), ANY));
    assert_false(matches(plain_rec, W("decision=allow"), ANY));
    assert_true(matches(
        plain_rec, W("decision=deny", "source.principal=spiffe://example.org/ns/shop/sa/checkout"),
        ANY));
    assert_false(matches(plain_rec, W("decision=deny", "destination.service=orders"), ANY));
    /* several values of one key: any of them */
    assert_true(matches(plain_rec, W("request.method=POST", "request.method=GET"), ANY));
    assert_true(matches(plain_rec, W("decision!=allow"), ANY));
    assert_false(matches(plain_rec, W("decision!=deny"), ANY));
    assert_true(matches(plain_rec, W("source.principal=spiffe://example.org/ns/shop/*"), ANY));
    assert_false(matches(plain_rec, W("source.principal=spiffe://example.org/ns/ops/*"), ANY));
    assert_true(matches(plain_rec, W("rule=2", "response.status=403", "audit=true"), ANY));
    assert_true(matches(plain_rec, W("peer_cert_sha256="), ANY)); /* null */
    assert_false(matches(plain_rec, W("policy="), ANY));
    assert_true(matches(gap_rec, W("policy="), ANY)); /* absent */
    assert_false(matches(gap_rec, W("decision=deny"), ANY));
    /* values compare unescaped */
    assert_true(matches(hostile_rec, W("source.principal=spiffe://td/a|b=c\\d\ne"), ANY));
    assert_true(matches(hostile_rec, W("policy=@evil/p,\"q\""), ANY));
}

static void test_filter_range(void **state)
{
    const int64_t t = 1795658594LL * 1000000000 + 337433000;
    assert_true(matches(plain_rec, NULL, t, t + 1)); /* since inclusive */
    assert_false(matches(plain_rec, NULL, t + 1, INT64_MAX));
    assert_false(matches(plain_rec, NULL, INT64_MIN, t)); /* until exclusive */
    assert_true(matches(plain_rec, NULL, INT64_MIN, t + 1));
    assert_false(matches("{\"v\":1}", NULL, INT64_MIN, t)); /* no ts, no match */
    assert_true(matches("{\"v\":1}", NULL, ANY));
}

static void test_filter_where_errors(void **state)
{
    audit_filter *f;
    ward_err err;
    assert_int_equal(audit_filter_new(&f), 0);
    assert_int_equal(audit_filter_where(f, "decision", &err), WARD_EINVAL);
    assert_non_null(strstr(err.msg, "KEY=VALUE"));
    assert_int_equal(audit_filter_where(f, "=deny", &err), WARD_EINVAL);
    assert_int_equal(audit_filter_where(f, "verdict=deny", &err), WARD_EINVAL);
    assert_non_null(strstr(err.msg, "unknown key 'verdict'"));
    assert_non_null(strstr(err.msg, "source.principal"));
    audit_filter_free(f);
}

/* ---- counts ------------------------------------------------------------------------------------
 */

static void test_counter_sorted(void **state)
{
    audit_counter *c;
    const audit_count *out;
    size_t n;
    static const char *lines[] = {
        "{\"source\":{\"principal\":\"b\"}}", "{\"source\":{\"principal\":\"a\"}}",
        "{\"source\":{\"principal\":\"c\"}}", "{\"source\":{\"principal\":\"\\u0063\"}}",
        "{\"source\":{\"principal\":null}}",  "{\"v\":1}",
        "{\"source\":{\"principal\":\"a\"}}",
    };
    assert_int_equal(audit_counter_new(AUDIT_A_SOURCE_PRINCIPAL, &c), 0);
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        audit_view v = view_of(lines[i]);
        assert_int_equal(audit_counter_add(c, &v), 0);
    }
    assert_int_equal(audit_counter_sorted(c, &out, &n), 0);
    assert_int_equal(n, 4);
    assert_string_equal(out[0].value, "a"); /* 2 each: a, c (escaped "c" counts as c), null last */
    assert_int_equal(out[0].n, 2);
    assert_string_equal(out[1].value, "c");
    assert_int_equal(out[1].n, 2);
    assert_null(out[2].value);
    assert_int_equal(out[2].n, 2);
    assert_string_equal(out[3].value, "b");
    assert_int_equal(out[3].n, 1);
    audit_counter_free(c);
}

static void test_counter_many_values(void **state)
{
    audit_counter *c;
    const audit_count *out;
    size_t n;
    char line[64];
    assert_int_equal(audit_counter_new(AUDIT_A_ID, &c), 0);
    for (int i = 0; i < 5000; i++) {
        snprintf(line, sizeof(line), "{\"id\":\"%d\"}", i % 2500);
        audit_view v = view_of(line);
        assert_int_equal(audit_counter_add(c, &v), 0);
    }
    assert_int_equal(audit_counter_sorted(c, &out, &n), 0);
    assert_int_equal(n, 2500);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(out[i].n, 2);
    audit_counter_free(c);
}

/* ---- formats -----------------------------------------------------------------------------------
 */

static char *render(audit_format f, const char *line, int *rc)
{
    ward_buf b;
    ward_buf_init(&b);
    audit_view v = view_of(line);
    *rc = audit_export_record(f, &v, &b);
    return b.len ? ward_buf_steal(&b) : strdup("");
}

static void test_format_names(void **state)
{
    audit_format f;
    assert_int_equal(audit_format_parse("csv", &f), 0);
    assert_int_equal(f, AUDIT_FORMAT_CSV);
    assert_string_equal(audit_format_name(AUDIT_FORMAT_OCSF), "ocsf");
    assert_int_equal(audit_format_parse("CSV", &f), WARD_EINVAL);
    assert_int_equal(audit_format_parse("xml", &f), WARD_EINVAL);
}

static void test_jsonl_is_the_line(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_JSONL, hostile_rec, &rc);
    assert_int_equal(rc, 1);
    assert_int_equal(strlen(s), strlen(hostile_rec) + 1);
    assert_memory_equal(s, hostile_rec, strlen(hostile_rec));
    assert_int_equal(s[strlen(hostile_rec)], '\n');
    free(s);
}

static void test_csv_header(void **state)
{
    ward_buf b;
    ward_buf_init(&b);
    assert_int_equal(audit_export_header(AUDIT_FORMAT_CSV, &b), 0);
    assert_string_equal(b.ptr,
                        "seq,ts,id,node,direction,decision,policy,rule,reason,audit,"
                        "dry_run.decision,dry_run.policy,dry_run.rule,source.principal,source.ip,"
                        "source.port,destination.service,destination.principal,destination.port,"
                        "request.method,request.host,request.path,request.protocol,"
                        "response.status,bundle,trace_id,latency_ns,peer_cert_sha256,truncated,"
                        "gap,event,hash,outcome,subject,serial,not_after,via,token_id,audience,"
                        "key_id,bundle_sequence,source.uid,error,connection.bytes_in,"
                        "connection.bytes_out,connection.duration_ms,request.headers\r\n");
    ward_buf_reset(&b);
    assert_int_equal(audit_export_header(AUDIT_FORMAT_OCSF, &b), 0);
    assert_int_equal(b.len, 0);
    ward_buf_dispose(&b);
}

static void test_csv_plain_row(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_CSV, plain_rec, &rc);
    assert_int_equal(rc, 1);
    assert_string_equal(s,
                        "7,2026-11-26T02:03:14.337433Z,0123456789abcdef0123456789abcdef,"
                        "spiffe://example.org/ns/shop/sa/proxy,inbound,deny,shop/payments,2,"
                        "matched rule 2,true,allow,shop/dry,0,"
                        "spiffe://example.org/ns/shop/sa/checkout,10.0.0.7,41234,payments,"
                        "spiffe://example.org/ns/shop/sa/payments,8443,GET,payments,/v1/items,"
                        "HTTP/1.1,403,rev-7,4bf92f3577b34da6a3ce929d0e0e4736,1830,,,,," Z64
                        ",,,,,,,,,,,,,,,\r\n");
    free(s);
}

static void test_csv_quoting_and_formulas(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_CSV, hostile_rec, &rc);
    assert_int_equal(rc, 1);
    /* quotes doubled, fields with , " CR LF quoted; = + - @ get a leading ' */
    assert_non_null(strstr(
        s, ",outbound,allow,\"'@evil/p,\"\"q\"\"\",0,\"'=HYPERLINK(\"\"http://x\"\")\",false,"));
    assert_non_null(strstr(s, ",\"spiffe://td/a|b=c\\d\ne\",,,'+svc,,,POST,'-h,\"/x|y=z\\w\r\nX: "
                              "1\",HTTP/1.1,,b,,,,request.path;reason,,,"));
    free(s);
}

static void test_cef_escaping(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_CEF, hostile_rec, &rc);
    assert_int_equal(rc, 1);
    assert_string_equal(
        s, "CEF:0|Ward|ward-proxy|" AUDIT_PRODUCT_VERSION "|authz:allow|request allowed|1|"
           "rt=1795658594337 externalId=ffffffffffffffffffffffffffffffff deviceDirection=1 "
           "act=allow suser=spiffe://td/a|b\\=c\\\\d\\ne destinationServiceName=+svc dhost=-h "
           "requestMethod=POST request=/x|y\\=z\\\\w\\r\\nX: 1 app=HTTP/1.1 "
           "reason=\\=HYPERLINK(\"http://x\") cs1Label=policy cs1=@evil/p,\"q\" cn1Label=rule "
           "cn1=0 cs2Label=bundle cs2=b cn3Label=seq cn3=7\n");
    assert_null(strchr(s, '\r')); /* one line: no raw CR or LF before the end */
    assert_ptr_equal(strchr(s, '\n'), s + strlen(s) - 1);
    free(s);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void test_cef_deny_and_gap(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_CEF, plain_rec, &rc);
    assert_true(starts_with(s, "CEF:0|Ward|ward-proxy|" AUDIT_PRODUCT_VERSION
                               "|authz:deny|request denied|5|rt="));
    assert_non_null(
        strstr(s, " src=10.0.0.7 spt=41234 suser=spiffe://example.org/ns/shop/sa/checkout "));
    assert_non_null(strstr(s, " cs4Label=dryRun cs4=allow shop/dry#0 "));
    assert_non_null(strstr(s, " cn2Label=responseStatus cn2=403 "));
    free(s);
    s = render(AUDIT_FORMAT_CEF, gap_rec, &rc);
    assert_int_equal(rc, 1);
    assert_true(starts_with(s, "CEF:0|Ward|ward-proxy|" AUDIT_PRODUCT_VERSION
                               "|audit:gap|audit records dropped|8|"));
    assert_non_null(strstr(s, " cnt=3 "));
    free(s);
}

static const cJSON *at(const cJSON *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *k = strtok(buf, "."); k != NULL && o != NULL; k = strtok(NULL, "."))
        o = cJSON_GetObjectItemCaseSensitive(o, k);
    if (o == NULL)
        fail_msg("no %s", path);
    return o;
}

static void expect_str(const cJSON *o, const char *path, const char *want)
{
    const cJSON *v = at(o, path);
    if (!cJSON_IsString(v) || strcmp(v->valuestring, want) != 0)
        fail_msg("%s: want \"%s\"", path, want);
}

static void expect_num(const cJSON *o, const char *path, double want)
{
    const cJSON *v = at(o, path);
    if (!cJSON_IsNumber(v) || v->valuedouble != want)
        fail_msg("%s: want %f, got %f", path, want, cJSON_IsNumber(v) ? v->valuedouble : -1.0);
}

/* ---- identity events (wardd) ------------------------------------------------------------------ */

static const char event_rec[] = REC_HEAD
    "\"id\":\"00112233445566778899aabbccddeeff\",\"node\":\"spiffe://example.org/ward/server\","
    "\"event\":\"svid.issued\",\"outcome\":\"success\",\"subject\":\"spiffe://example.org/ns/"
    "shop/sa/payments\",\"serial\":\"0a1b\",\"not_after\":\"2026-11-26T03:00:00Z\",\"via\":"
    "\"renew\",\"token_id\":null,\"audience\":null,\"key_id\":null,\"bundle_sequence\":3,"
    "\"source\":{\"principal\":\"spiffe://example.org/ns/shop/sa/payments\",\"ip\":"
    "\"127.0.0.1\",\"port\":41234,\"uid\":null},\"response\":{\"status\":200},\"error\":null,"
    "\"reason\":null" REC_TAIL;

static const char refusal_rec[] = REC_HEAD
    "\"id\":\"00112233445566778899aabbccddeeff\",\"node\":\"spiffe://example.org/ward/server\","
    "\"event\":\"token.refused\",\"outcome\":\"failure\",\"subject\":null,\"serial\":null,"
    "\"not_after\":null,\"via\":\"attest\",\"token_id\":\"5ad2c844ce966000\",\"audience\":"
    "[\"spiffe://a\",\"x=y\"],\"key_id\":null,\"bundle_sequence\":null,\"source\":{\"principal\":"
    "null,\"ip\":\"10.0.0.9\",\"port\":5,\"uid\":null},\"response\":{\"status\":401},\"error\":"
    "\"token_used\",\"reason\":\"join token already used\"" REC_TAIL;

static const char ca_rec[] = REC_HEAD
    "\"id\":\"00112233445566778899aabbccddeeff\",\"node\":\"spiffe://example.org/ward/server\","
    "\"event\":\"ca.activated\",\"outcome\":\"success\",\"subject\":\"spiffe://example.org\","
    "\"serial\":null,\"not_after\":null,\"via\":null,\"token_id\":null,\"audience\":null,"
    "\"key_id\":\"ab12\",\"bundle_sequence\":4,\"source\":{\"principal\":null,\"ip\":null,"
    "\"port\":null,\"uid\":null},\"response\":null,\"error\":null,\"reason\":null" REC_TAIL;

static void test_event_view_and_where(void **state)
{
    audit_view v = view_of(refusal_rec);
    assert_string_equal(text(&v, AUDIT_A_EVENT), "token.refused");
    assert_string_equal(text(&v, AUDIT_A_OUTCOME), "failure");
    assert_string_equal(text(&v, AUDIT_A_TOKEN_ID), "5ad2c844ce966000");
    assert_string_equal(text(&v, AUDIT_A_ERROR), "token_used");
    assert_string_equal(text(&v, AUDIT_A_SOURCE_IP), "10.0.0.9");
    assert_string_equal(text(&v, AUDIT_A_RESPONSE_STATUS), "401");
    assert_int_equal(v.f[AUDIT_A_SOURCE_UID].type, AUDIT_V_NULL);
    assert_int_equal(v.f[AUDIT_A_DECISION].type, AUDIT_V_ABSENT);
    static const struct {
        const char *where;
        bool match;
    } cases[] = {
        {"event=token.refused", true},  {"event=token.*", true},      {"outcome=success", false},
        {"error=token_used", true},      {"source.uid=", true},        {"audience=x=y", true},
        {"audience=spiffe://*", true},   {"audience=spiffe://b", false}, {"decision=deny", false},
        {"token_id!=5ad2c844ce966000", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        audit_filter *f;
        ward_err err;
        assert_int_equal(audit_filter_new(&f), 0);
        assert_int_equal(audit_filter_where(f, cases[i].where, &err), 0);
        if (audit_filter_match(f, &v) != cases[i].match)
            fail_msg("--where %s: want %s", cases[i].where, cases[i].match ? "match" : "none");
        audit_filter_free(f);
    }
}

static void test_event_csv_columns(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_CSV, refusal_rec, &rc);
    assert_int_equal(rc, 1);
    /* the decision columns are empty; the identity columns come after hash */
    assert_true(starts_with(s, "7,2026-11-26T02:03:14.337433Z,00112233445566778899aabbccddeeff,"
                               "spiffe://example.org/ward/server,,,,,join token already used,,,,,,"
                               "10.0.0.9,5,,,,,,,,401,,,,,,,token.refused," Z64
                               ",failure,,,,attest,5ad2c844ce966000,spiffe://a;x=y,,,,token_used,,,,\r\n"));
    free(s);
}

static void test_event_ocsf_classes(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_OCSF, event_rec, &rc);
    assert_int_equal(rc, 1);
    cJSON *o = cJSON_Parse(s);
    assert_non_null(o);
    expect_num(o, "class_uid", 3002);
    expect_num(o, "category_uid", 3);
    expect_num(o, "activity_id", 5); /* a renewal: Service Ticket Renew */
    expect_num(o, "type_uid", 300205);
    expect_num(o, "status_id", 1);
    expect_str(o, "user.uid", "spiffe://example.org/ns/shop/sa/payments");
    expect_str(o, "actor.user.uid", "spiffe://example.org/ns/shop/sa/payments");
    expect_str(o, "src_endpoint.ip", "127.0.0.1");
    expect_str(o, "metadata.version", AUDIT_OCSF_VERSION);
    expect_str(o, "unmapped.ward.serial", "0a1b");
    expect_str(o, "unmapped.ward.not_after", "2026-11-26T03:00:00Z");
    cJSON_Delete(o);
    free(s);
    s = render(AUDIT_FORMAT_OCSF, refusal_rec, &rc);
    assert_int_equal(rc, 1);
    o = cJSON_Parse(s);
    assert_non_null(o);
    expect_num(o, "class_uid", 3002);
    expect_num(o, "activity_id", 3); /* attestation: Authentication Ticket */
    expect_num(o, "status_id", 2);
    expect_str(o, "status_code", "token_used");
    expect_str(o, "status_detail", "join token already used");
    expect_num(o, "user.type_id", 0);
    cJSON_Delete(o);
    free(s);
    s = render(AUDIT_FORMAT_OCSF, ca_rec, &rc);
    assert_int_equal(rc, 0); /* CA rotation has no OCSF form */
    free(s);
}

static void test_event_cef(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_CEF, refusal_rec, &rc);
    assert_int_equal(rc, 1);
    assert_true(starts_with(s, "CEF:0|Ward|wardd|" AUDIT_PRODUCT_VERSION
                               "|identity:token.refused|identity event refused|5|rt="));
    assert_non_null(strstr(s, " outcome=failure src=10.0.0.9 spt=5 reason=join token already used "));
    assert_non_null(strstr(s, " cs1Label=error cs1=token_used "));
    assert_non_null(strstr(s, " cs3Label=tokenId cs3=5ad2c844ce966000 "));
    assert_non_null(strstr(s, " cs5Label=audience cs5=spiffe://a;x\\=y "));
    assert_non_null(strstr(s, " cn2Label=responseStatus cn2=401 cn3Label=seq cn3=7\n"));
    assert_true(strchr(s, '\n') == s + strlen(s) - 1); /* one line */
    free(s);
    s = render(AUDIT_FORMAT_CEF, ca_rec, &rc);
    assert_true(starts_with(s, "CEF:0|Ward|wardd|" AUDIT_PRODUCT_VERSION
                               "|identity:ca.activated|identity event|1|"));
    assert_non_null(strstr(s, " flexString1Label=keyId flexString1=ab12 cn1Label=bundleSequence cn1=4 "));
    free(s);
}

static void test_ocsf_api_activity(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_OCSF, plain_rec, &rc);
    assert_int_equal(rc, 1);
    assert_ptr_equal(strchr(s, '\n'), s + strlen(s) - 1);
    cJSON *o = cJSON_Parse(s);
    assert_non_null(o);
    expect_num(o, "class_uid", 6003);
    expect_num(o, "category_uid", 6);
    expect_num(o, "activity_id", 2); /* GET: Read */
    expect_str(o, "activity_name", "Read");
    expect_num(o, "type_uid", 600302);
    expect_num(o, "severity_id", 3);
    expect_num(o, "status_id", 2);
    expect_str(o, "status", "Failure");
    expect_str(o, "status_detail", "matched rule 2");
    expect_num(o, "time", 1795658594337.0);
    expect_str(o, "metadata.version", AUDIT_OCSF_VERSION);
    expect_str(o, "metadata.product.name", "Ward");
    expect_str(o, "metadata.product.vendor_name", "Ward");
    expect_str(o, "metadata.uid", "0123456789abcdef0123456789abcdef");
    expect_str(o, "metadata.correlation_uid", "4bf92f3577b34da6a3ce929d0e0e4736");
    expect_num(o, "metadata.sequence", 7);
    expect_str(o, "actor.user.uid", "spiffe://example.org/ns/shop/sa/checkout");
    expect_str(o, "actor.user.name", "spiffe://example.org/ns/shop/sa/checkout");
    expect_str(o, "api.operation", "GET");
    expect_str(o, "api.request.uid", "0123456789abcdef0123456789abcdef");
    expect_str(o, "api.service.name", "payments");
    expect_str(o, "src_endpoint.ip", "10.0.0.7");
    expect_num(o, "src_endpoint.port", 41234);
    expect_num(o, "dst_endpoint.port", 8443);
    expect_str(o, "dst_endpoint.svc_name", "payments");
    expect_str(o, "http_request.http_method", "GET");
    expect_str(o, "http_request.url.path", "/v1/items");
    expect_str(o, "http_request.url.hostname", "payments");
    expect_str(o, "http_request.version", "1.1");
    expect_num(o, "http_response.code", 403);
    const cJSON *auths = at(o, "authorizations");
    assert_int_equal(cJSON_GetArraySize(auths), 2);
    const cJSON *a0 = cJSON_GetArrayItem(auths, 0), *a1 = cJSON_GetArrayItem(auths, 1);
    expect_str(a0, "decision", "deny");
    expect_str(a0, "policy.name", "shop/payments");
    expect_str(a0, "policy.uid", "shop/payments#2");
    expect_str(a0, "policy.version", "rev-7");
    assert_true(cJSON_IsTrue(at(a0, "policy.is_applied")));
    expect_str(a1, "decision", "allow"); /* the dry run, never applied */
    expect_str(a1, "policy.uid", "shop/dry#0");
    assert_true(cJSON_IsFalse(at(a1, "policy.is_applied")));
    expect_str(o, "unmapped.ward.node", "spiffe://example.org/ns/shop/sa/proxy");
    expect_str(o, "unmapped.ward.direction", "inbound");
    cJSON_Delete(o);
    free(s);
}

static void test_ocsf_hostile_values_stay_valid_json(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_OCSF, hostile_rec, &rc);
    assert_int_equal(rc, 1);
    cJSON *o = cJSON_Parse(s);
    assert_non_null(o);
    expect_num(o, "activity_id", 1); /* POST: Create */
    expect_num(o, "type_uid", 600301);
    expect_str(o, "status", "Success");
    expect_str(o, "actor.user.uid", "spiffe://td/a|b=c\\d\ne");
    expect_str(o, "http_request.url.path", "/x|y=z\\w\r\nX: 1");
    expect_str(cJSON_GetArrayItem(at(o, "authorizations"), 0), "policy.name", "@evil/p,\"q\"");
    cJSON_Delete(o);
    free(s);
}

static void test_ocsf_other_method_and_default_policy(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_OCSF,
                     "{\"v\":1,\"seq\":1,\"ts\":\"2026-11-26T02:03:14.337433Z\",\"decision\":"
                     "\"deny\",\"policy\":null,\"rule\":null,\"source\":{\"principal\":null},"
                     "\"request\":{\"method\":\"OPTIONS\"}}",
                     &rc);
    assert_int_equal(rc, 1);
    cJSON *o = cJSON_Parse(s);
    assert_non_null(o);
    expect_num(o, "activity_id", 99);
    expect_num(o, "type_uid", 600399);
    const cJSON *a0 = cJSON_GetArrayItem(at(o, "authorizations"), 0);
    expect_str(a0, "policy.name", "default");
    assert_null(cJSON_GetObjectItemCaseSensitive(at(a0, "policy"), "uid"));
    assert_non_null(at(o, "actor.user"));
    cJSON_Delete(o);
    free(s);
}

static void test_ocsf_leaves_out_gap_records(void **state)
{
    int rc;
    char *s = render(AUDIT_FORMAT_OCSF, gap_rec, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s, "");
    free(s);
}

/* ---- streaming a folder ------------------------------------------------------------------------
 */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void test_export_streams_a_folder(void **state)
{
    char dir[] = "/tmp/ward-export-XXXXXX", p[128];
    assert_non_null(mkdtemp(dir));
    snprintf(p, sizeof(p), "%s/segment-00000000000000000001.jsonl", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "%s\n%s\nnot json\n", plain_rec, hostile_rec);
    fclose(f);
    snprintf(p, sizeof(p), "%s/segment-00000000000000000009.jsonl", dir);
    f = fopen(p, "w");
    fprintf(f, "%s\n{\"v\":1,\"seq\":9,\"ts\":\"2026-11-2", gap_rec); /* a torn last line */
    fclose(f);

    audit_filter *flt;
    ward_err err;
    assert_int_equal(audit_filter_new(&flt), 0);
    assert_int_equal(audit_filter_where(flt, "decision=deny", &err), 0);
    audit_scan_options o = {dir, flt, NULL, NULL, false};
    audit_export_stats st;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_int_equal(audit_export(&o, AUDIT_FORMAT_CSV, out, &st, &err), 0);
    fclose(out);
    assert_int_equal(st.scan.lines, 4);
    assert_int_equal(st.scan.malformed, 1);
    assert_string_equal(st.scan.first_malformed, "segment-00000000000000000001.jsonl:3");
    assert_true(st.scan.torn);
    assert_int_equal(st.exported, 1);
    assert_int_equal(strncmp(buf, "seq,ts,", 7), 0);
    assert_non_null(strstr(buf, "\r\n7,2026-11-26T02:03:14.337433Z,"));
    free(buf);

    /* JSONL without --where: the lines as stored */
    audit_filter_free(flt);
    o.filter = NULL;
    out = open_memstream(&buf, &len);
    assert_int_equal(audit_export(&o, AUDIT_FORMAT_JSONL, out, &st, &err), 0);
    fclose(out);
    assert_int_equal(st.exported, 3);
    assert_int_equal(st.scan.malformed, 1);
    assert_int_equal(strncmp(buf, plain_rec, strlen(plain_rec)), 0);
    assert_non_null(strstr(buf, gap_rec));
    free(buf);

    /* OCSF leaves the gap record out, and says so */
    out = open_memstream(&buf, &len);
    assert_int_equal(audit_export(&o, AUDIT_FORMAT_OCSF, out, &st, &err), 0);
    fclose(out);
    assert_int_equal(st.exported, 2);
    assert_int_equal(st.left_out, 1);
    free(buf);
    nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void test_export_missing_folder(void **state)
{
    audit_scan_options o = {"/nonexistent/ward", NULL, NULL, NULL, false};
    audit_export_stats st;
    ward_err err;
    ward_err_clear(&err);
    assert_int_equal(audit_export(&o, AUDIT_FORMAT_JSONL, stdout, &st, &err), WARD_ENOENT);
    assert_non_null(strstr(err.msg, "/nonexistent/ward"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_view_fields),
        cmocka_unit_test(test_view_escapes_and_nulls),
        cmocka_unit_test(test_view_unicode_escapes),
        cmocka_unit_test(test_view_tolerates_spaces_and_unknown_keys),
        cmocka_unit_test(test_view_rejects_what_is_not_an_object),
        cmocka_unit_test(test_attr_names),
        cmocka_unit_test(test_time_parse_rfc3339),
        cmocka_unit_test(test_time_parse_relative),
        cmocka_unit_test(test_time_parse_rejects),
        cmocka_unit_test(test_view_time),
        cmocka_unit_test(test_filter_where),
        cmocka_unit_test(test_filter_range),
        cmocka_unit_test(test_filter_where_errors),
        cmocka_unit_test(test_counter_sorted),
        cmocka_unit_test(test_counter_many_values),
        cmocka_unit_test(test_format_names),
        cmocka_unit_test(test_jsonl_is_the_line),
        cmocka_unit_test(test_csv_header),
        cmocka_unit_test(test_csv_plain_row),
        cmocka_unit_test(test_csv_quoting_and_formulas),
        cmocka_unit_test(test_cef_escaping),
        cmocka_unit_test(test_cef_deny_and_gap),
        cmocka_unit_test(test_event_view_and_where),
        cmocka_unit_test(test_event_csv_columns),
        cmocka_unit_test(test_event_ocsf_classes),
        cmocka_unit_test(test_event_cef),
        cmocka_unit_test(test_ocsf_api_activity),
        cmocka_unit_test(test_ocsf_hostile_values_stay_valid_json),
        cmocka_unit_test(test_ocsf_other_method_and_default_policy),
        cmocka_unit_test(test_ocsf_leaves_out_gap_records),
        cmocka_unit_test(test_export_streams_a_folder),
        cmocka_unit_test(test_export_missing_folder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
