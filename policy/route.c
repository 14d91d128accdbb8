/* route.c - check the spec of a Route document (hosts, ordered http entries) and warn of entries that can never match */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/ward.h"
#include "policy/policy.h"
#include "policy/policy_int.h"

#define MS_PER_HOUR 3600000ULL
#define MAX_REWRITE 1024
#define MAX_QUERY_NAME 256
#define MAX_BODY_BYTES (64ULL << 20)
#define MAX_RATE_REQUESTS 1000000000ULL
#define SHADOW_BUDGET 4000000 /* alternative comparisons per Route */

/* Adds "file:line:col: warning: path: message" at node n (path: where c is). */
static void warn_at(ward_docv *c, ward_diag *warn, const ward_node *n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void warn_at(ward_docv *c, ward_diag *warn, const ward_node *n, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ward_diag_add(warn, c->file, n->line, n->col, "warning: %s: %s", c->plen ? c->path : "document",
                  msg);
}

/* ---- scalars ------------------------------------------------------------------ */

/* An unquoted integer in [min, max]. */
static bool parse_uint(ward_docv *c, const ward_node *n, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n->kind != WARD_NODE_SCALAR || n->quoted || !ward_node_is_number(n) ||
        ward_parse_u64(n->str, n->len, UINT64_MAX, &v) < 0) {
        ward_docv_error(c, n, "expected an integer %llu..%llu, got %s", (unsigned long long)min,
                        (unsigned long long)max,
                        n->kind == WARD_NODE_SCALAR && n->quoted ? "a string" : ward_node_describe(n));
        return false;
    }
    if (v < min || v > max) {
        ward_docv_error(c, n, "%llu is out of range (%llu..%llu)", (unsigned long long)v,
                        (unsigned long long)min, (unsigned long long)max);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_bool(ward_docv *c, const ward_node *n, bool *out)
{
    if (ward_node_is_bool(n, out))
        return true;
    ward_docv_error(c, n, "expected true or false, got %s", ward_node_describe(n));
    return false;
}

/* A duration with a unit ("2s", "500ms", "1m30s"), whole milliseconds in [min_ms, max_ms]. */
static bool parse_ms(ward_docv *c, const ward_node *n, uint64_t min_ms, uint64_t max_ms,
                     uint64_t *out)
{
    const char *s;
    size_t len;
    char q[256];
    if (n->kind == WARD_NODE_SCALAR && !n->quoted && ward_node_is_number(n)) {
        ward_docv_error(c, n, "expected a duration with a unit (e.g. 2s, 500ms), got the number %s",
                        ward_quote(q, sizeof(q), n->str, n->len));
        return false;
    }
    if (!ward_docv_get_str(c, n, &s, &len))
        return false;
    uint64_t ns = 0;
    int rc = ward_parse_duration(s, len, UINT64_MAX, &ns);
    if (rc == WARD_EINVAL) {
        ward_docv_error(c, n, "invalid duration %s (a number with a unit: ms, s, m, h; e.g. 2s, 500ms)",
                        ward_quote(q, sizeof(q), s, len));
        return false;
    }
    if (rc < 0 || ns / 1000000 < min_ms || ns / 1000000 > max_ms || (ns / 1000000 == max_ms && ns % 1000000)) {
        ward_docv_error(c, n, "duration %s is out of range (%llums..%llums)",
                        ward_quote(q, sizeof(q), s, len), (unsigned long long)min_ms,
                        (unsigned long long)max_ms);
        return false;
    }
    if (ns % 1000000 != 0) {
        ward_docv_error(c, n, "duration %s must be whole milliseconds", ward_quote(q, sizeof(q), s, len));
        return false;
    }
    *out = ns / 1000000;
    return true;
}

/* "64KiB": a whole number with a unit B, KiB or MiB, at most max. */
static bool parse_size(ward_docv *c, const ward_node *n, uint64_t max, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"B", 1}, {"KiB", 1ull << 10}, {"MiB", 1ull << 20}};
    const char *s;
    size_t len;
    char q[256];
    if (!ward_docv_get_str(c, n, &s, &len))
        return false;
    size_t i = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    uint64_t mult = 0, v = 0;
    for (size_t u = 0; u < sizeof(units) / sizeof(units[0]) && i > 0; u++)
        if (strlen(units[u].unit) == len - i && memcmp(units[u].unit, s + i, len - i) == 0)
            mult = units[u].mult;
    if (mult == 0 || ward_parse_u64(s, i, UINT64_MAX / mult, &v) < 0) {
        ward_docv_error(c, n, "invalid size %s (a whole number with a unit: B, KiB, MiB; e.g. 64KiB)",
                        ward_quote(q, sizeof(q), s, len));
        return false;
    }
    if (v * mult > max) {
        ward_docv_error(c, n, "size %s is out of range (0B..%lluMiB)", ward_quote(q, sizeof(q), s, len),
                        (unsigned long long)(max >> 20));
        return false;
    }
    *out = v * mult;
    return true;
}

/* [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 bytes: a DNS label, as ward-proxy
 * upstream names are (the Host header names them). */
static bool service_ok(const char *s, size_t len)
{
    if (len == 0 || len > 63 || s[0] == '-' || s[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static char *parse_service(ward_docv *c, const ward_node *n)
{
    const char *s;
    size_t len;
    char q[256];
    if (!ward_docv_get_str(c, n, &s, &len))
        return NULL;
    if (!service_ok(s, len)) {
        ward_docv_error(c, n,
                        "invalid service name %s: a DNS label (lowercase letters, digits and '-', "
                        "at most 63), as upstream services are named",
                        ward_quote(q, sizeof(q), s, len));
        return NULL;
    }
    return ward_docv_dup(c, s, len);
}

/* A header name: an HTTP token; *lower is the lowercased copy (NULL on error). */
static bool header_name_ok(ward_docv *c, const ward_node *at, const char *s, size_t len)
{
    char q[256];
    bool ok = len > 0;
    for (size_t i = 0; i < len && ok; i++)
        ok = policy_tchar(s[i]);
    if (!ok)
        ward_docv_error(c, at, "invalid header name %s: must be an HTTP token",
                        ward_quote(q, sizeof(q), s, len));
    return ok;
}

static char *dup_lower(ward_docv *c, const char *s, size_t len)
{
    char *d = ward_docv_dup(c, s, len);
    if (d != NULL)
        for (size_t i = 0; i < len; i++)
            if (d[i] >= 'A' && d[i] <= 'Z')
                d[i] = (char)(d[i] - 'A' + 'a');
    return d;
}

/* A non-empty list of at most max items at n; false (reported) otherwise. */
static bool list_ok(ward_docv *c, const ward_node *n, size_t max, const char *empty_hint)
{
    if (!ward_docv_expect_list(c, n))
        return false;
    if (n->n == 0) {
        ward_docv_error(c, n, "must not be empty%s", empty_hint);
        return false;
    }
    if (n->n > max) {
        ward_docv_error(c, n, "too many items (%zu, limit %zu)", n->n, max);
        return false;
    }
    return true;
}

/* ---- hosts ---------------------------------------------------------------------- */

static void parse_hosts(ward_docv *c, const ward_node *n, policy_route *r)
{
    if (!list_ok(c, n, POLICY_MAX_LIST, " (list the Host names this route serves)"))
        return;
    r->hosts = ward_docv_calloc(c, n->n, sizeof(*r->hosts));
    r->host_pos = ward_docv_calloc(c, n->n, sizeof(*r->host_pos));
    if (r->hosts == NULL || r->host_pos == NULL)
        return;
    r->n_hosts = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t old = ward_docv_push_idx(c, i);
        const ward_node *it = n->items[i];
        const char *s;
        size_t len;
        char q[256];
        r->host_pos[i] = policy_node_pos(c, it);
        if (!ward_docv_get_str(c, it, &s, &len))
            goto next;
        if (len > 0 && memchr(s, '*', len) != NULL) {
            ward_docv_error(c, it,
                            "wildcard hosts are not supported: a Route names each Host it serves "
                            "exactly");
            goto next;
        }
        if (memchr(s, ':', len) != NULL) {
            ward_docv_error(c, it,
                            "host %s: write the host without a port (a request's port is ignored "
                            "when its Host is matched)",
                            ward_quote(q, sizeof(q), s, len));
            goto next;
        }
        bool ok = len > 0 && len <= POLICY_MAX_NAME;
        for (size_t j = 0; j < len && ok; j++) {
            char ch = s[j];
            bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
            ok = alnum || ((ch == '-' || ch == '.') && j > 0 && j < len - 1);
        }
        if (!ok) {
            ward_docv_error(c, it,
                            "invalid host %s: a DNS name (letters, digits, '-' and '.', starting "
                            "and ending with a letter or digit, at most %d characters)",
                            ward_quote(q, sizeof(q), s, len), POLICY_MAX_NAME);
            goto next;
        }
        r->hosts[i] = dup_lower(c, s, len);
        for (size_t j = 0; j < i && r->hosts[i] != NULL; j++) {
            if (r->hosts[j] != NULL && strcmp(r->hosts[j], r->hosts[i]) == 0) {
                ward_docv_error(c, it, "host %s is listed twice (hosts[%zu]; hosts are case-insensitive)",
                                ward_quote(q, sizeof(q), s, len), j);
                break;
            }
        }
    next:
        ward_docv_pop(c, old);
    }
}

/* ---- match ---------------------------------------------------------------------- */

/* A header or query parameter value: "v" (exact) or {exact|prefix|regex: v}. */
static void parse_kv_value(ward_docv *c, const ward_node *n, bool header, policy_match *m)
{
    static const char *const fields[] = {"exact", "prefix", "regex", NULL};
    const char *s;
    size_t len;
    char q[256];
    m->pos = policy_node_pos(c, n);
    const ward_node *v = n;
    policy_match_kind kind = POLICY_MATCH_EXACT;
    size_t old = (size_t)-1;
    if (n->kind == WARD_NODE_MAP) {
        ward_docv_check_fields(c, n, fields, NULL);
        const ward_node *ex = ward_node_get(n, "exact"), *pre = ward_node_get(n, "prefix"),
                        *re = ward_node_get(n, "regex");
        if ((ex != NULL) + (pre != NULL) + (re != NULL) != 1) {
            if (n->n == 0 || ex != NULL || pre != NULL || re != NULL)
                ward_docv_error(c, n, "set exactly one of exact, prefix, regex");
            return;
        }
        if (re != NULL) {
            policy_parse_regex(c, n, m);
            return;
        }
        v = ex != NULL ? ex : pre;
        kind = ex != NULL ? POLICY_MATCH_EXACT : POLICY_MATCH_PREFIX;
        old = ward_docv_push(c, ex != NULL ? "exact" : "prefix");
    } else if (n->kind != WARD_NODE_SCALAR) {
        ward_docv_error(c, n, "expected a value or {exact|prefix|regex: ...}, got %s",
                        ward_node_describe(n));
        return;
    }
    if (!ward_docv_get_str(c, v, &s, &len))
        goto out;
    if (n == v && memchr(s, '*', len) != NULL) {
        ward_docv_error(c, v,
                        "a plain value is matched exactly, so \"*\" would be literal here: write "
                        "{prefix: ...}, {regex: ...} or {exact: %s}",
                        ward_quote(q, sizeof(q), s, len));
        goto out;
    }
    if (kind == POLICY_MATCH_PREFIX && len == 0) {
        ward_docv_error(c, v, "must not be empty");
        goto out;
    }
    bool bad = false;
    for (size_t i = 0; i < len && !bad; i++) {
        unsigned char ch = (unsigned char)s[i];
        bad = (ch < 0x20 && !(header && ch == '\t')) || ch == 0x7f;
    }
    if (bad) {
        ward_docv_error(c, v, "%s %s contains control characters: it could never match",
                        header ? "header value" : "query value", ward_quote(q, sizeof(q), s, len));
        goto out;
    }
    m->kind = kind;
    m->value = ward_docv_dup(c, s, len);
    m->len = len;
out:
    if (old != (size_t)-1)
        ward_docv_pop(c, old);
}

/* headers / queryParams of a match: {name: value, ...}. */
static void parse_kv_map(ward_docv *c, const ward_node *map, const char *key, bool header,
                         policy_kv_match **out, size_t *n_out)
{
    const ward_node *n = ward_node_get(map, key);
    if (n == NULL)
        return;
    size_t old = ward_docv_push(c, key);
    if (!ward_docv_expect_map(c, n))
        goto out;
    if (n->n == 0) {
        ward_docv_error(c, n, "must not be empty (omit %s for no constraint)", key);
        goto out;
    }
    if (n->n > POLICY_MAX_LIST) {
        ward_docv_error(c, n, "too many items (%zu, limit %d)", n->n, POLICY_MAX_LIST);
        goto out;
    }
    if ((*out = ward_docv_calloc(c, n->n, sizeof(**out))) == NULL)
        goto out;
    *n_out = n->n;
    for (size_t i = 0; i < n->n; i++) {
        const ward_node *k = n->pairs[i].key;
        policy_kv_match *kv = &(*out)[i];
        size_t o2 = ward_docv_push_key(c, k->str, k->len);
        char q[256];
        kv->pos = policy_node_pos(c, k);
        if (header) {
            if (header_name_ok(c, k, k->str, k->len)) {
                kv->name = dup_lower(c, k->str, k->len);
                for (size_t j = 0; j < i && kv->name != NULL; j++)
                    if ((*out)[j].name != NULL && strcmp((*out)[j].name, kv->name) == 0)
                        ward_docv_error(c, k, "header %s is listed twice (names are case-insensitive)",
                                        ward_quote(q, sizeof(q), k->str, k->len));
            }
        } else {
            bool ok = k->len > 0 && k->len <= MAX_QUERY_NAME;
            for (size_t j = 0; j < k->len && ok; j++) {
                unsigned char ch = (unsigned char)k->str[j];
                ok = ch > 0x20 && ch < 0x7f && ch != '&' && ch != '=' && ch != '#';
            }
            if (!ok)
                ward_docv_error(c, k,
                                "invalid query parameter name %s: printable, without spaces, "
                                "'&', '=' or '#'",
                                ward_quote(q, sizeof(q), k->str, k->len));
            else
                kv->name = ward_docv_dup(c, k->str, k->len);
        }
        parse_kv_value(c, n->pairs[i].value, header, &kv->value);
        ward_docv_pop(c, o2);
    }
out:
    ward_docv_pop(c, old);
}

static void parse_match(ward_docv *c, const ward_node *n, policy_route_match *m)
{
    static const char *const fields[] = {"paths", "methods", "headers", "queryParams", NULL};
    m->pos = policy_node_pos(c, n);
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, policy_nesting_hint);
    if (n->n == 0) {
        ward_docv_error(c, n,
                        "an empty match alternative matches every request: omit match instead (or "
                        "set paths, methods, headers or queryParams)");
        return;
    }
    policy_parse_paths(c, n, "paths", &m->paths);
    policy_parse_methods(c, n, "methods", &m->methods);
    parse_kv_map(c, n, "headers", true, &m->headers, &m->n_headers);
    parse_kv_map(c, n, "queryParams", false, &m->query, &m->n_query);
}

/* ---- destinations -------------------------------------------------------------- */

static void parse_destinations(ward_docv *c, const ward_node *n, policy_http_route *e)
{
    static const char *const fields[] = {"service", "weight", NULL};
    if (!list_ok(c, n, POLICY_MAX_DESTINATIONS, " (name at least one service)"))
        return;
    if ((e->destinations = ward_docv_calloc(c, n->n, sizeof(*e->destinations))) == NULL)
        return;
    e->n_destinations = n->n;
    unsigned sum = 0;
    bool sum_known = true; /* every weight was read */
    for (size_t i = 0; i < n->n; i++) {
        const ward_node *it = n->items[i];
        policy_destination *d = &e->destinations[i];
        size_t old = ward_docv_push_idx(c, i);
        d->pos = policy_node_pos(c, it);
        if (!ward_docv_expect_map(c, it)) {
            sum_known = false;
            ward_docv_pop(c, old);
            continue;
        }
        ward_docv_check_fields(c, it, fields, NULL);
        const ward_node *sv = ward_node_get(it, "service"), *w = ward_node_get(it, "weight");
        if (sv == NULL) {
            ward_docv_missing(c, it, "service", "");
        } else {
            size_t o2 = ward_docv_push(c, "service");
            d->pos = policy_node_pos(c, sv);
            d->service = parse_service(c, sv);
            for (size_t j = 0; j < i && d->service != NULL; j++) {
                if (e->destinations[j].service != NULL &&
                    strcmp(e->destinations[j].service, d->service) == 0) {
                    ward_docv_error(c, sv, "service \"%s\" is listed twice (destinations[%zu])",
                                    d->service, j);
                    break;
                }
            }
            ward_docv_pop(c, o2);
        }
        if (w == NULL) {
            if (n->n > 1) {
                ward_docv_missing(c, it, "weight",
                                  " (with several destinations each needs a weight 0..100; they "
                                  "add up to 100)");
                sum_known = false;
            } else {
                d->weight = 100;
            }
        } else {
            size_t o2 = ward_docv_push(c, "weight");
            uint64_t v;
            if (parse_uint(c, w, 0, 100, &v)) {
                if (n->n == 1 && v != 100)
                    ward_docv_error(c, w,
                                    "a single destination takes all the traffic: omit weight or "
                                    "write 100");
                d->weight = (unsigned)v;
                sum += (unsigned)v;
            } else {
                sum_known = false;
            }
            ward_docv_pop(c, o2);
        }
        ward_docv_pop(c, old);
    }
    if (n->n > 1 && sum_known && sum != 100)
        ward_docv_error(c, n, "weights add up to %u, not 100", sum);
}

/* ---- retries ------------------------------------------------------------------- */

static void status_set(uint8_t *bits, unsigned code)
{
    bits[(code - 500) / 8] |= (uint8_t)(1u << ((code - 500) % 8));
}

/* One retries.on item: a condition name or a 5xx status (number or string). */
static bool parse_retry_on(ward_docv *c, const ward_node *n, policy_retries *rt, char **name)
{
    static const char *const names[] = {"connect-failure", "reset", "5xx", "gateway-error", NULL};
    const char *s;
    size_t len;
    char q[256];
    if (!ward_docv_get_str(c, n, &s, &len))
        return false;
    for (int i = 0; names[i] != NULL; i++) {
        if (ward_node_is(n, names[i])) {
            switch (i) {
            case 0: rt->on |= POLICY_RETRY_CONNECT_FAILURE; break;
            case 1: rt->on |= POLICY_RETRY_RESET; break;
            case 2:
                for (unsigned code = 500; code <= 599; code++)
                    status_set(rt->on_status, code);
                break;
            default:
                status_set(rt->on_status, 502);
                status_set(rt->on_status, 503);
                status_set(rt->on_status, 504);
            }
            *name = ward_docv_dup(c, names[i], strlen(names[i]));
            return *name != NULL;
        }
    }
    uint64_t code;
    if (ward_parse_u64(s, len, 999, &code) == 0 && len == 3) {
        if (code < 500 || code > 599) {
            ward_docv_error(c, n,
                            "status %s is not retried: only 5xx statuses are (a 4xx is the "
                            "client's own error)",
                            ward_quote(q, sizeof(q), s, len));
            return false;
        }
        status_set(rt->on_status, (unsigned)code);
        *name = ward_docv_dup(c, s, len);
        return *name != NULL;
    }
    ward_docv_error(c, n,
                    "invalid retry condition %s; allowed: connect-failure, reset, 5xx, "
                    "gateway-error (502, 503, 504) or a status 500..599",
                    ward_quote(q, sizeof(q), s, len));
    return false;
}

static void parse_retries(ward_docv *c, const ward_node *n, policy_http_route *e,
                          const ward_node *timeout, ward_diag *warn)
{
    static const char *const fields[] = {"attempts", "perTryTimeout", "on", "nonIdempotent",
                                         "maxBodyBytes", NULL};
    static const char *const defaults[] = {"connect-failure", "reset", "gateway-error"};
    policy_retries *rt = &e->retries;
    rt->present = true;
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, NULL);
    const ward_node *f;
    size_t old;
    uint64_t v;
    if ((f = ward_node_get(n, "attempts")) == NULL) {
        ward_docv_missing(c, n, "attempts", " (retries after the first try, 0..10)");
    } else {
        old = ward_docv_push(c, "attempts");
        if (parse_uint(c, f, 0, 10, &v))
            rt->attempts = (unsigned)v;
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "perTryTimeout")) != NULL) {
        old = ward_docv_push(c, "perTryTimeout");
        if (parse_ms(c, f, 1, MS_PER_HOUR, &rt->per_try_timeout_ms) && e->timeout_ms > 0 &&
            rt->per_try_timeout_ms >= e->timeout_ms && timeout != NULL)
            warn_at(c, warn, f,
                    "perTryTimeout (%llums) is not shorter than the route's timeout (%llums): no "
                    "retry can start in time",
                    (unsigned long long)rt->per_try_timeout_ms, (unsigned long long)e->timeout_ms);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "on")) != NULL) {
        old = ward_docv_push(c, "on");
        if (list_ok(c, f, 110, " (omit on for connect-failure, reset, gateway-error)") &&
            (rt->on_names = ward_docv_calloc(c, f->n, sizeof(*rt->on_names))) != NULL) {
            rt->n_on = f->n;
            for (size_t i = 0; i < f->n; i++) {
                size_t o2 = ward_docv_push_idx(c, i);
                if (parse_retry_on(c, f->items[i], rt, &rt->on_names[i])) {
                    for (size_t j = 0; j < i; j++) {
                        if (rt->on_names[j] != NULL && strcmp(rt->on_names[j], rt->on_names[i]) == 0) {
                            ward_docv_error(c, f->items[i], "\"%s\" is listed twice (on[%zu])",
                                            rt->on_names[i], j);
                            break;
                        }
                    }
                }
                ward_docv_pop(c, o2);
            }
        }
        ward_docv_pop(c, old);
    } else if ((rt->on_names = ward_docv_calloc(c, 3, sizeof(*rt->on_names))) != NULL) {
        rt->on = POLICY_RETRY_CONNECT_FAILURE | POLICY_RETRY_RESET;
        status_set(rt->on_status, 502);
        status_set(rt->on_status, 503);
        status_set(rt->on_status, 504);
        rt->n_on = 3;
        for (size_t i = 0; i < 3; i++)
            rt->on_names[i] = ward_docv_dup(c, defaults[i], strlen(defaults[i]));
    }
    if ((f = ward_node_get(n, "nonIdempotent")) != NULL) {
        old = ward_docv_push(c, "nonIdempotent");
        parse_bool(c, f, &rt->non_idempotent);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "maxBodyBytes")) != NULL) {
        old = ward_docv_push(c, "maxBodyBytes");
        parse_size(c, f, MAX_BODY_BYTES, &rt->max_body_bytes);
        ward_docv_pop(c, old);
    }
}

/* ---- rewrite, header operations ------------------------------------------------------ */

static void parse_rewrite(ward_docv *c, const ward_node *n, policy_http_route *e)
{
    static const char *const fields[] = {"prefix", NULL};
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, NULL);
    const ward_node *p = ward_node_get(n, "prefix");
    if (p == NULL) {
        ward_docv_missing(c, n, "prefix", " (the path prefix that replaces the matched one)");
        return;
    }
    size_t old = ward_docv_push(c, "prefix");
    const char *s;
    size_t len;
    char q[256];
    if (!ward_docv_get_str(c, p, &s, &len))
        goto out;
    if (len == 0 || s[0] != '/') {
        ward_docv_error(c, p, "%s must start with \"/\"", ward_quote(q, sizeof(q), s, len));
        goto out;
    }
    if (len > MAX_REWRITE) {
        ward_docv_error(c, p, "too long (%zu bytes, limit %d)", len, MAX_REWRITE);
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || strchr("?#%\"<>\\^`{|}", ch) != NULL) {
            ward_docv_error(c, p,
                            "%s: a rewritten path is a plain normalized path (no spaces, control "
                            "characters, '?', '#', '%%' or any of \"<>\\^`{|})",
                            ward_quote(q, sizeof(q), s, len));
            goto out;
        }
    }
    for (size_t i = 0; i < len; i++) { /* segments: no "//", "." or ".." */
        if (s[i] != '/')
            continue;
        size_t j = i + 1;
        while (j < len && s[j] != '/')
            j++;
        size_t sl = j - i - 1;
        bool last = j >= len;
        if ((sl == 0 && !last) || (sl == 1 && s[i + 1] == '.') ||
            (sl == 2 && s[i + 1] == '.' && s[i + 2] == '.')) {
            ward_docv_error(c, p,
                            "%s: a rewritten path is normalized (no empty, \".\" or \"..\" "
                            "segments)",
                            ward_quote(q, sizeof(q), s, len));
            goto out;
        }
    }
    e->rewrite_prefix = ward_docv_dup(c, s, len);
out:
    ward_docv_pop(c, old);
}

/* Header names a route may not touch: message framing and hop-by-hop fields
 * (changing them invites request smuggling), and what the proxy says on its
 * own authority (who the client is, the trace, x-ward-*). */
static const char *reserved_header(const char *s, size_t len)
{
    static const char *const framing[] = {"connection", "keep-alive", "proxy-connection",
                                          "transfer-encoding", "content-length", "te", "trailer",
                                          "upgrade", "host", NULL};
    static const char *const owned[] = {"x-forwarded-client-cert", "x-forwarded-for", "traceparent",
                                        NULL};
    for (int i = 0; framing[i] != NULL; i++)
        if (strlen(framing[i]) == len && strncasecmp(framing[i], s, len) == 0)
            return "it frames or routes the message";
    for (int i = 0; owned[i] != NULL; i++)
        if (strlen(owned[i]) == len && strncasecmp(owned[i], s, len) == 0)
            return "the proxy sets it on its own authority";
    if (len >= 6 && strncasecmp(s, "x-ward", 6) == 0)
        return "x-ward* headers belong to the proxy";
    return NULL;
}

/* A header name for set / add / remove; NULL on error (reported). */
static char *op_name(ward_docv *c, const ward_node *at, const char *s, size_t len)
{
    char q[256];
    if (!header_name_ok(c, at, s, len))
        return NULL;
    const char *why = reserved_header(s, len);
    if (why != NULL) {
        ward_docv_error(c, at, "header %s cannot be changed by a route: %s",
                        ward_quote(q, sizeof(q), s, len), why);
        return NULL;
    }
    return ward_docv_dup(c, s, len);
}

static char *op_value(ward_docv *c, const ward_node *n)
{
    const char *s;
    size_t len;
    char q[256];
    if (!ward_docv_get_str(c, n, &s, &len))
        return NULL;
    if (len > POLICY_MAX_HEADER_VALUE) {
        ward_docv_error(c, n, "too long (%zu bytes, limit %d)", len, POLICY_MAX_HEADER_VALUE);
        return NULL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            ward_docv_error(c, n,
                            "header value %s contains a control character (CR, LF, NUL ... would "
                            "split or corrupt the message)",
                            ward_quote(q, sizeof(q), s, len));
            return NULL;
        }
    }
    if (len > 0 && (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t')) {
        ward_docv_error(c, n, "header value %s has leading or trailing whitespace",
                        ward_quote(q, sizeof(q), s, len));
        return NULL;
    }
    return ward_docv_dup(c, s, len);
}

/* The op of *ops naming s (case-insensitively) in the lists before `upto`
 * entries of list `which` (0 set, 1 add, 2 remove), or NULL. */
static const char *op_seen(const policy_header_ops *ops, const char *s, int which, size_t upto)
{
    static const char *const lists[] = {"set", "add", "remove"};
    const policy_header_op *v[3] = {ops->set, ops->add, ops->remove};
    size_t n[3] = {ops->n_set, ops->n_add, ops->n_remove};
    for (int l = 0; l <= which; l++)
        for (size_t i = 0; i < (l == which ? upto : n[l]); i++)
            if (v[l][i].name != NULL && strcasecmp(v[l][i].name, s) == 0)
                return lists[l];
    return NULL;
}

static void parse_ops(ward_docv *c, const ward_node *n, policy_header_ops *ops)
{
    static const char *const fields[] = {"set", "add", "remove", NULL};
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, NULL);
    if (n->n == 0) {
        ward_docv_error(c, n, "must not be empty (set, add and/or remove)");
        return;
    }
    char q[256];
    for (int which = 0; which < 2; which++) {
        const char *key = which == 0 ? "set" : "add";
        const ward_node *m = ward_node_get(n, key);
        if (m == NULL)
            continue;
        size_t old = ward_docv_push(c, key);
        policy_header_op **v = which == 0 ? &ops->set : &ops->add;
        size_t *nv = which == 0 ? &ops->n_set : &ops->n_add;
        if (!ward_docv_expect_map(c, m)) {
        } else if (m->n == 0) {
            ward_docv_error(c, m, "must not be empty (omit %s)", key);
        } else if (m->n > POLICY_MAX_HEADER_OPS) {
            ward_docv_error(c, m, "too many headers (%zu, limit %d)", m->n, POLICY_MAX_HEADER_OPS);
        } else if ((*v = ward_docv_calloc(c, m->n, sizeof(**v))) != NULL) {
            *nv = m->n;
            for (size_t i = 0; i < m->n; i++) {
                const ward_node *k = m->pairs[i].key;
                policy_header_op *op = &(*v)[i];
                size_t o2 = ward_docv_push_key(c, k->str, k->len);
                op->pos = policy_node_pos(c, k);
                op->name = op_name(c, k, k->str, k->len);
                const char *prev = op->name ? op_seen(ops, op->name, which, i) : NULL;
                if (prev != NULL)
                    ward_docv_error(c, k, "header %s is also in %s (names are case-insensitive)",
                                    ward_quote(q, sizeof(q), k->str, k->len), prev);
                op->value = op_value(c, m->pairs[i].value);
                ward_docv_pop(c, o2);
            }
        }
        ward_docv_pop(c, old);
    }
    const ward_node *r = ward_node_get(n, "remove");
    if (r != NULL) {
        size_t old = ward_docv_push(c, "remove");
        if (list_ok(c, r, POLICY_MAX_HEADER_OPS, " (omit remove)") &&
            (ops->remove = ward_docv_calloc(c, r->n, sizeof(*ops->remove))) != NULL) {
            ops->n_remove = r->n;
            for (size_t i = 0; i < r->n; i++) {
                size_t o2 = ward_docv_push_idx(c, i);
                const char *s;
                size_t len;
                policy_header_op *op = &ops->remove[i];
                op->pos = policy_node_pos(c, r->items[i]);
                if (ward_docv_get_str(c, r->items[i], &s, &len) &&
                    (op->name = op_name(c, r->items[i], s, len)) != NULL) {
                    const char *prev = op_seen(ops, op->name, 2, i);
                    if (prev != NULL)
                        ward_docv_error(c, r->items[i],
                                        "header %s is also in %s (names are case-insensitive)",
                                        ward_quote(q, sizeof(q), s, len), prev);
                }
                ward_docv_pop(c, o2);
            }
        }
        ward_docv_pop(c, old);
    }
}

static void parse_headers(ward_docv *c, const ward_node *n, policy_http_route *e)
{
    static const char *const fields[] = {"request", "response", NULL};
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, NULL);
    if (n->n == 0) {
        ward_docv_error(c, n, "must not be empty (request and/or response)");
        return;
    }
    const ward_node *f;
    if ((f = ward_node_get(n, "request")) != NULL) {
        size_t old = ward_docv_push(c, "request");
        parse_ops(c, f, &e->request_headers);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "response")) != NULL) {
        size_t old = ward_docv_push(c, "response");
        parse_ops(c, f, &e->response_headers);
        ward_docv_pop(c, old);
    }
}

/* ---- rate limit, mirror ---------------------------------------------------------------- */

static void parse_rate_key(ward_docv *c, const ward_node *n, policy_rate_limit *rl)
{
    static const char hdr[] = "request.headers[";
    const size_t hl = sizeof(hdr) - 1;
    const char *s;
    size_t len;
    char q[256];
    if (!ward_docv_get_str(c, n, &s, &len))
        return;
    if (ward_node_is(n, "none")) {
        rl->key = POLICY_RATE_KEY_NONE;
    } else if (ward_node_is(n, "source.principal")) {
        rl->key = POLICY_RATE_KEY_PRINCIPAL;
    } else if (len > hl + 1 && memcmp(s, hdr, hl) == 0 && s[len - 1] == ']') {
        if (header_name_ok(c, n, s + hl, len - hl - 1)) {
            rl->key = POLICY_RATE_KEY_HEADER;
            rl->header = dup_lower(c, s + hl, len - hl - 1);
        }
    } else {
        ward_docv_error(c, n,
                        "invalid key %s; allowed: none, source.principal, "
                        "request.headers[<name>]",
                        ward_quote(q, sizeof(q), s, len));
    }
}

static void parse_rate_limit(ward_docv *c, const ward_node *n, policy_rate_limit *rl)
{
    static const char *const fields[] = {"requests", "per", "key", NULL};
    rl->present = true;
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, NULL);
    const ward_node *f;
    size_t old;
    if ((f = ward_node_get(n, "requests")) == NULL) {
        ward_docv_missing(c, n, "requests", " (how many requests per period)");
    } else {
        old = ward_docv_push(c, "requests");
        parse_uint(c, f, 1, MAX_RATE_REQUESTS, &rl->requests);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "per")) == NULL) {
        ward_docv_missing(c, n, "per", " (the period, e.g. 1s or 1m)");
    } else {
        old = ward_docv_push(c, "per");
        parse_ms(c, f, 1, 24 * MS_PER_HOUR, &rl->per_ms);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "key")) != NULL) {
        old = ward_docv_push(c, "key");
        parse_rate_key(c, f, rl);
        ward_docv_pop(c, old);
    }
}

static void parse_mirror(ward_docv *c, const ward_node *n, policy_http_route *e)
{
    static const char *const fields[] = {"service", "percent", NULL};
    e->mirror_pos = policy_node_pos(c, n);
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, NULL);
    const ward_node *f;
    size_t old;
    e->mirror_percent = 100;
    if ((f = ward_node_get(n, "service")) == NULL) {
        ward_docv_missing(c, n, "service", " (where copies of the requests go)");
    } else {
        old = ward_docv_push(c, "service");
        e->mirror_service = parse_service(c, f);
        if (e->mirror_service != NULL)
            e->mirror_pos = policy_node_pos(c, f);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "percent")) != NULL) {
        uint64_t v;
        old = ward_docv_push(c, "percent");
        if (parse_uint(c, f, 0, 100, &v))
            e->mirror_percent = (unsigned)v;
        ward_docv_pop(c, old);
    }
}

/* ---- http entries ------------------------------------------------------------------------ */

/* The literal prefix a rewrite replaces for path pattern m (EXACT: the
 * whole path; PREFIX: its text), or NULL when m has none. */
static bool rewritable(const policy_match *m)
{
    return m->kind == POLICY_MATCH_EXACT || m->kind == POLICY_MATCH_PREFIX;
}

/* rewrite.prefix replaces the matched path prefix: every path pattern of the
 * entry must be exact or a prefix (a template or regex has no prefix). */
static void check_rewrite(ward_docv *c, const ward_node *entry, policy_http_route *e,
                          ward_diag *warn)
{
    const ward_node *rw = ward_node_get(entry, "rewrite");
    const ward_node *pn = rw != NULL && rw->kind == WARD_NODE_MAP ? ward_node_get(rw, "prefix") : NULL;
    size_t old = ward_docv_push(c, "rewrite");
    size_t o2 = ward_docv_push(c, "prefix");
    const char *to = e->rewrite_prefix;
    size_t tl = strlen(to);
    for (size_t i = 0; i < e->n_match; i++) {
        const policy_matches *ps = &e->match[i].paths;
        for (size_t j = 0; j < ps->n; j++) {
            const policy_match *m = &ps->v[j];
            if (m->value == NULL)
                continue;
            if (!rewritable(m)) {
                ward_docv_error(c, pn,
                                "a prefix rewrite needs exact paths or prefixes (\"/v2/*\") to "
                                "replace, but match[%zu].paths[%zu] is a %s",
                                i, j,
                                m->kind == POLICY_MATCH_TEMPLATE ? "template"
                                : m->kind == POLICY_MATCH_REGEX  ? "regex"
                                : m->kind == POLICY_MATCH_SUFFIX ? "suffix pattern"
                                                                 : "\"*\"");
                goto out;
            }
            if (m->kind == POLICY_MATCH_PREFIX && m->len > 0 && tl > 0 &&
                (m->value[m->len - 1] == '/') != (to[tl - 1] == '/')) {
                char a[64];
                snprintf(a, sizeof(a), "%.40s", m->value);
                warn_at(c, warn, pn,
                        "\"%s\" %s in \"/\" but the prefix \"%s\" it replaces (match[%zu].paths[%zu]) "
                        "%s: %s",
                        to, to[tl - 1] == '/' ? "ends" : "does not end", a, i, j,
                        to[tl - 1] == '/' ? "does not (paths get a double slash)"
                                          : "does (path segments get glued together)",
                        "write both with or both without the trailing slash");
            }
        }
    }
out:
    ward_docv_pop(c, o2);
    ward_docv_pop(c, old);
}

static void parse_entry(ward_docv *c, const ward_node *n, policy_http_route *e, ward_diag *warn)
{
    static const char *const fields[] = {"name",    "match",   "destinations", "timeout",
                                         "retries", "rewrite", "headers",      "rateLimit",
                                         "mirror",  NULL};
    e->pos = policy_node_pos(c, n);
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, policy_nesting_hint);
    const ward_node *f;
    size_t old;
    if ((f = ward_node_get(n, "name")) == NULL) {
        ward_docv_missing(c, n, "name", " (decisions, tests and metrics name the entry by it)");
    } else {
        old = ward_docv_push(c, "name");
        e->name = policy_parse_name(c, f);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "match")) != NULL) {
        old = ward_docv_push(c, "match");
        e->match_present = true;
        if (list_ok(c, f, POLICY_MAX_LIST, " (omit match to match every request)") &&
            (e->match = ward_docv_calloc(c, f->n, sizeof(*e->match))) != NULL) {
            e->n_match = f->n;
            for (size_t i = 0; i < f->n; i++) {
                size_t o2 = ward_docv_push_idx(c, i);
                parse_match(c, f->items[i], &e->match[i]);
                ward_docv_pop(c, o2);
            }
        }
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "destinations")) == NULL) {
        ward_docv_missing(c, n, "destinations", " (destinations: [{service: ...}])");
    } else {
        old = ward_docv_push(c, "destinations");
        parse_destinations(c, f, e);
        ward_docv_pop(c, old);
    }
    const ward_node *timeout = ward_node_get(n, "timeout");
    if (timeout != NULL) {
        old = ward_docv_push(c, "timeout");
        parse_ms(c, timeout, 1, MS_PER_HOUR, &e->timeout_ms);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "retries")) != NULL) {
        old = ward_docv_push(c, "retries");
        parse_retries(c, f, e, timeout, warn);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "rewrite")) != NULL) {
        old = ward_docv_push(c, "rewrite");
        parse_rewrite(c, f, e);
        ward_docv_pop(c, old);
        if (e->rewrite_prefix != NULL)
            check_rewrite(c, n, e, warn);
    }
    if ((f = ward_node_get(n, "headers")) != NULL) {
        old = ward_docv_push(c, "headers");
        parse_headers(c, f, e);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "rateLimit")) != NULL) {
        old = ward_docv_push(c, "rateLimit");
        parse_rate_limit(c, f, &e->rate_limit);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "mirror")) != NULL) {
        old = ward_docv_push(c, "mirror");
        parse_mirror(c, f, e);
        ward_docv_pop(c, old);
    }
}

void policy_route_parse_spec(ward_docv *c, const ward_node *spec, policy_route *r,
                             size_t entries_left, ward_diag *warn)
{
    static const char *const fields[] = {"hosts", "http", NULL};
    if (!ward_docv_expect_map(c, spec))
        return;
    ward_docv_check_fields(c, spec, fields, policy_nesting_hint);
    const ward_node *f;
    size_t old;
    if ((f = ward_node_get(spec, "hosts")) == NULL) {
        ward_docv_missing(c, spec, "hosts", " (the Host names this route serves)");
    } else {
        old = ward_docv_push(c, "hosts");
        parse_hosts(c, f, r);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(spec, "http")) == NULL) {
        ward_docv_missing(c, spec, "http", " (the ordered list of http routes)");
        return;
    }
    old = ward_docv_push(c, "http");
    size_t limit = entries_left < POLICY_MAX_HTTP ? entries_left : POLICY_MAX_HTTP;
    if (!list_ok(c, f, (size_t)-1, " (a Route needs at least one http entry)")) {
        /* reported */
    } else if (f->n > limit) {
        ward_docv_error(c, f, "too many http entries (%zu, limit %zu%s)", f->n, limit,
                        limit < POLICY_MAX_HTTP ? " left in the policy set" : "");
    } else if ((r->http = ward_docv_calloc(c, f->n, sizeof(*r->http))) != NULL) {
        r->n_http = f->n;
        for (size_t i = 0; i < f->n; i++) {
            size_t o2 = ward_docv_push_idx(c, i);
            parse_entry(c, f->items[i], &r->http[i], warn);
            for (size_t j = 0; j < i && r->http[i].name != NULL; j++) {
                if (r->http[j].name != NULL && strcmp(r->http[j].name, r->http[i].name) == 0) {
                    size_t o3 = ward_docv_push(c, "name");
                    ward_docv_error(c, ward_node_get(f->items[i], "name"),
                                    "name \"%s\" is already used by http[%zu]", r->http[i].name, j);
                    ward_docv_pop(c, o3);
                    break;
                }
            }
            ward_docv_pop(c, o2);
        }
    }
    ward_docv_pop(c, old);
}

/* ---- shadowed entries ---------------------------------------------------------------------- */

/* The bytes every path a template matches starts with. A last "{**}"
 * matches without its '/', so "/a/{**}" only promises "/a". */
static size_t template_literal(const policy_match *t)
{
    const char *brace = memchr(t->value, '{', t->len);
    size_t lit = brace != NULL ? (size_t)(brace - t->value) : t->len;
    if (lit > 0 && t->len - lit == 4 && memcmp(t->value + lit, "{**}", 4) == 0 &&
        t->value[lit - 1] == '/')
        lit--;
    return lit;
}

static bool starts_with(const char *s, size_t len, const char *p, size_t plen)
{
    return len >= plen && memcmp(s, p, plen) == 0;
}

static bool ends_with(const char *s, size_t len, const char *p, size_t plen)
{
    return len >= plen && memcmp(s + len - plen, p, plen) == 0;
}

/* Does pattern a match every value pattern b matches? (false when unsure) */
static bool pattern_covers(const policy_match *a, const policy_match *b)
{
    if (a->value == NULL || b->value == NULL)
        return false;
    bool same = a->kind == b->kind && a->len == b->len && memcmp(a->value, b->value, a->len) == 0;
    switch (a->kind) {
    case POLICY_MATCH_ANY: return b->kind != POLICY_MATCH_REGEX; /* paths and methods are never empty */
    case POLICY_MATCH_PREFIX:
        switch (b->kind) {
        case POLICY_MATCH_EXACT:
        case POLICY_MATCH_PREFIX: return starts_with(b->value, b->len, a->value, a->len);
        case POLICY_MATCH_TEMPLATE: return starts_with(b->value, template_literal(b), a->value, a->len);
        default: return false;
        }
    case POLICY_MATCH_SUFFIX:
        return (b->kind == POLICY_MATCH_EXACT || b->kind == POLICY_MATCH_SUFFIX) &&
               ends_with(b->value, b->len, a->value, a->len);
    default: return same;
    }
}

/* A list constraint of an earlier alternative holds for everything the later one matches. */
static bool list_covers(const policy_matches *a, const policy_matches *b)
{
    if (!a->present)
        return true;
    if (!b->present)
        return false;
    for (size_t i = 0; i < b->n; i++) {
        bool covered = false;
        for (size_t j = 0; j < a->n && !covered; j++)
            covered = pattern_covers(&a->v[j], &b->v[i]);
        if (!covered)
            return false;
    }
    return true;
}

static bool kv_covers(const policy_kv_match *a, size_t na, const policy_kv_match *b, size_t nb)
{
    for (size_t i = 0; i < na; i++) {
        bool covered = false;
        for (size_t j = 0; j < nb && !covered; j++)
            covered = a[i].name != NULL && b[j].name != NULL && strcmp(a[i].name, b[j].name) == 0 &&
                      pattern_covers(&a[i].value, &b[j].value);
        if (!covered)
            return false;
    }
    return true;
}

/* Does alternative a match every request b matches? */
static bool match_covers(const policy_route_match *a, const policy_route_match *b)
{
    return list_covers(&a->paths, &b->paths) && list_covers(&a->methods, &b->methods) &&
           kv_covers(a->headers, a->n_headers, b->headers, b->n_headers) &&
           kv_covers(a->query, a->n_query, b->query, b->n_query);
}

static int warn_pos(ward_diag *warn, const policy_pos *pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int warn_pos(ward_diag *warn, const policy_pos *pos, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ward_diag_add(warn, pos->file, pos->line, pos->col, "warning: %s", msg);
    return 0;
}

/* An entry is shadowed when an earlier one has no match (it takes every
 * request), or when each of its alternatives is covered by an alternative
 * of an earlier entry: same or fewer constraints, each as wide or wider
 * (a prefix covers longer prefixes and exact paths under it ...). The check
 * is conservative: it warns only about what is certain. */
int policy_route_warnings(const policy_route *r, ward_diag *warn)
{
    long budget = SHADOW_BUDGET;
    size_t catch_all = (size_t)-1; /* the first entry without match */
    for (size_t j = 0; j < r->n_http; j++) {
        const policy_http_route *e = &r->http[j];
        if (catch_all != (size_t)-1) {
            warn_pos(warn, &e->pos,
                     "spec.http[%zu]: \"%s\" never matches: spec.http[%zu] (\"%s\") has no match "
                     "and takes every request",
                     j, e->name, catch_all, r->http[catch_all].name);
            continue;
        }
        if (!e->match_present) {
            catch_all = j;
            continue;
        }
        /* per alternative: the earlier entry (or this entry's earlier alternative) covering it */
        size_t covered = 0, first_by = (size_t)-1;
        bool several = false;
        for (size_t k = 0; k < e->n_match && budget > 0; k++) {
            size_t by = (size_t)-1, by_alt = 0;
            for (size_t i = 0; i < j && by == (size_t)-1 && budget > 0; i++) {
                for (size_t l = 0; l < r->http[i].n_match; l++, budget--) {
                    if (match_covers(&r->http[i].match[l], &e->match[k])) {
                        by = i, by_alt = l;
                        break;
                    }
                }
            }
            if (by != (size_t)-1) {
                covered++;
                if (first_by == (size_t)-1)
                    first_by = by;
                else if (first_by != by)
                    several = true;
                if (e->n_match > 1)
                    warn_pos(warn, &e->match[k].pos,
                             "spec.http[%zu].match[%zu]: never matches: spec.http[%zu].match[%zu] "
                             "(in \"%s\") matches every request it does",
                             j, k, by, by_alt, r->http[by].name);
                continue;
            }
            for (size_t l = 0; l < k; l++, budget--) {
                if (match_covers(&e->match[l], &e->match[k])) {
                    warn_pos(warn, &e->match[k].pos,
                             "spec.http[%zu].match[%zu]: redundant: match[%zu] already matches "
                             "every request it does",
                             j, k, l);
                    break;
                }
            }
        }
        if (covered == e->n_match && covered > 0) {
            if (several)
                warn_pos(warn, &e->pos,
                         "spec.http[%zu]: \"%s\" never matches: earlier entries match every "
                         "request it does",
                         j, e->name);
            else
                warn_pos(warn, &e->pos,
                         "spec.http[%zu]: \"%s\" never matches: spec.http[%zu] (\"%s\") matches "
                         "every request it does",
                         j, e->name, first_by, r->http[first_by].name);
        }
    }
    return 0;
}

/* ---- freeing ------------------------------------------------------------------------------ */

static void free_kv(policy_kv_match *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].value.value);
    }
    free(v);
}

static void free_ops(policy_header_ops *o)
{
    policy_header_op *lists[3] = {o->set, o->add, o->remove};
    size_t n[3] = {o->n_set, o->n_add, o->n_remove};
    for (int l = 0; l < 3; l++) {
        for (size_t i = 0; i < n[l]; i++) {
            free(lists[l][i].name);
            free(lists[l][i].value);
        }
        free(lists[l]);
    }
}

void policy_route_free(policy_route *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_http; i++) {
        policy_http_route *e = &r->http[i];
        free(e->name);
        for (size_t k = 0; k < e->n_match; k++) {
            policy_route_match *m = &e->match[k];
            policy_matches_free(&m->paths);
            policy_matches_free(&m->methods);
            free_kv(m->headers, m->n_headers);
            free_kv(m->query, m->n_query);
        }
        free(e->match);
        for (size_t k = 0; k < e->n_destinations; k++)
            free(e->destinations[k].service);
        free(e->destinations);
        for (size_t k = 0; k < e->retries.n_on; k++)
            free(e->retries.on_names[k]);
        free(e->retries.on_names);
        free(e->rewrite_prefix);
        free_ops(&e->request_headers);
        free_ops(&e->response_headers);
        free(e->rate_limit.header);
        free(e->mirror_service);
    }
    free(r->http);
    for (size_t i = 0; i < r->n_hosts; i++)
        free(r->hosts[i]);
    free(r->hosts);
    free(r->host_pos);
    free(r->name);
    free(r->ns);
    free(r->id);
    free(r);
}
