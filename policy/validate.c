/* validate.c - check one policy document (AuthorizationPolicy here, Route in route.c) and build it */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/ward.h"
#include "policy/policy.h"
#include "lua/wlua.h"
#include "policy/policy_int.h"

#define API_VERSION     "ward/v1"
#define SUPPORTED_KINDS "AuthorizationPolicy, Route"
#define MAX_REGEX       4096

/* ---- validation context: common/doccheck.c, plus the policy's own bits ---- */


static policy_pos node_pos(const ward_docv *c, const ward_node *n)
{
    return (policy_pos){c->file, n->line, n->col};
}

/* Istio users write `operation:` / `source:` levels that Ward does not have. */
static const char *nesting_hint(const ward_node *key)
{
    if (ward_node_is(key, "operation") || ward_node_is(key, "source"))
        return "Ward does not nest: write the fields directly in the list item";
    return NULL;
}

/* ---- patterns ---------------------------------------------------------------- */

typedef enum vfield {
    VF_GENERIC,
    VF_PRINCIPAL,
    VF_NAMESPACE,
    VF_TRUST_DOMAIN,
    VF_CIDR,
    VF_METHOD,
    VF_HOST,
    VF_PATH,
    VF_PORT, /* when values of source.port / destination.port */
    VF_BOOL, /* when values of connection.mtls */
} vfield;

static bool ident_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

static bool tchar(char ch)
{
    return ident_char(ch) || (ch != '\0' && strchr("!#$%&'*+.^_`|~", ch) != NULL);
}

static bool ns_char(char ch)
{
    return ident_char(ch) || ch == '.';
}

static bool host_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' ||
           ch == '_' || ch == ':' || ch == '[' || ch == ']';
}

/* "*" -> ANY, "abc*" -> PREFIX, "*abc" -> SUFFIX, else EXACT; the literal
 * part is s[*off .. *off + *flen). */
static bool split_pattern(ward_docv *c, const ward_node *n, const char *s, size_t len,
                          policy_match_kind *kind, size_t *off, size_t *flen)
{
    if (len == 0) {
        ward_docv_error(c, n, "must not be empty");
        return false;
    }
    if (len == 1 && s[0] == '*') {
        *kind = POLICY_MATCH_ANY;
        *off = *flen = 0;
        return true;
    }
    size_t stars = 0;
    for (size_t i = 0; i < len; i++)
        stars += s[i] == '*';
    if (stars == 0) {
        *kind = POLICY_MATCH_EXACT;
        *off = 0;
        *flen = len;
        return true;
    }
    if (stars == 1 && s[len - 1] == '*') {
        *kind = POLICY_MATCH_PREFIX;
        *off = 0;
        *flen = len - 1;
        return true;
    }
    if (stars == 1 && s[0] == '*') {
        *kind = POLICY_MATCH_SUFFIX;
        *off = 1;
        *flen = len - 1;
        return true;
    }
    char q[256];
    ward_docv_error(
        c, n,
        "invalid pattern %s: \"*\" is allowed only alone (\"*\"), at the end (\"prefix*\") or "
        "at the start (\"*suffix\")",
        ward_quote(q, sizeof(q), s, len));
    return false;
}

/* Path templates: "/a/{*}/b/{**}". */
static bool check_template(ward_docv *c, const ward_node *n, const char *s, size_t len)
{
    char q[256];
    if (len == 0 || s[0] != '/') {
        ward_docv_error(c, n, "path template %s must start with \"/\"",
                        ward_quote(q, sizeof(q), s, len));
        return false;
    }
    size_t i = 1;
    while (i <= len) {
        size_t start = i;
        while (i < len && s[i] != '/')
            i++;
        const char *seg = s + start;
        size_t sl = i - start;
        bool last = i >= len;
        if (sl == 0 && !last) {
            ward_docv_error(c, n, "path template %s has an empty segment (\"//\")",
                            ward_quote(q, sizeof(q), s, len));
            return false;
        }
        bool braces = memchr(seg, '{', sl) != NULL || memchr(seg, '}', sl) != NULL;
        if (braces) {
            bool one = sl == 3 && memcmp(seg, "{*}", 3) == 0;
            bool rest = sl == 4 && memcmp(seg, "{**}", 4) == 0;
            if (!one && !rest) {
                ward_docv_error(
                    c, n,
                    "invalid template segment %s: use \"{*}\" for one segment or \"{**}\" for "
                    "the rest",
                    ward_quote(q, sizeof(q), seg, sl));
                return false;
            }
            if (rest && !last) {
                ward_docv_error(c, n, "template \"{**}\" must be last");
                return false;
            }
        } else if (memchr(seg, '*', sl) != NULL) {
            ward_docv_error(c, n, "\"*\" is not allowed in a template segment (%s); use \"{*}\"",
                            ward_quote(q, sizeof(q), seg, sl));
            return false;
        }
        i++;
    }
    return true;
}

static void parse_regex(ward_docv *c, const ward_node *map, policy_match *m)
{
    static const char *const fields[] = {"regex", NULL};
    ward_docv_check_fields(c, map, fields, nesting_hint);
    const ward_node *r = ward_node_get(map, "regex");
    if (r == NULL) {
        ward_docv_missing(c, map, "regex", " (a path is a string or {regex: \"...\"})");
        return;
    }
    size_t old = ward_docv_push(c, "regex");
    const char *s;
    size_t len;
    if (!ward_docv_get_str(c, r, &s, &len))
        goto out;
    if (len == 0) {
        ward_docv_error(c, r, "must not be empty");
        goto out;
    }
    if (len > MAX_REGEX) {
        ward_docv_error(c, r, "too long (%zu bytes, limit %d)", len, MAX_REGEX);
        goto out;
    }
    int code;
    PCRE2_SIZE eoff;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)s, len, PCRE2_ANCHORED | PCRE2_ENDANCHORED, &code, &eoff, NULL);
    if (re == NULL) {
        PCRE2_UCHAR buf[256];
        if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0)
            snprintf((char *)buf, sizeof(buf), "error %d", code);
        char q[256];
        ward_docv_error(c, r, "invalid regex %s: %s at offset %zu",
                        ward_quote(q, sizeof(q), s, len), (const char *)buf, (size_t)eoff);
        goto out;
    }
    pcre2_code_free(re);
    m->kind = POLICY_MATCH_REGEX;
    m->value = ward_docv_dup(c, s, len);
    m->len = len;
out:
    ward_docv_pop(c, old);
}

static bool parse_port_scalar(ward_docv *c, const ward_node *n, unsigned *out)
{
    if (n->kind != WARD_NODE_SCALAR || ward_node_is_null(n) || ward_node_is_bool(n, NULL)) {
        ward_docv_error(c, n, "expected a port number, got %s", ward_node_describe(n));
        return false;
    }
    uint64_t v = 0;
    if (ward_parse_u64(n->str, n->len, 65535, &v) < 0 || v == 0) {
        char q[256];
        ward_docv_error(c, n, "invalid port %s: must be an integer 1..65535",
                        ward_quote(q, sizeof(q), n->str, n->len));
        return false;
    }
    *out = (unsigned)v;
    return true;
}

/* Principal patterns: "*", a SPIFFE ID, "spiffe://td/prefix*" or "*suffix". */
static bool check_principal(ward_docv *c, const ward_node *n, const char *s, size_t len,
                            policy_match_kind kind, size_t off, size_t flen)
{
    static const char scheme[] = "spiffe://";
    char q[256];
    ward_err err;
    ward_err_clear(&err);
    const char *frag = s + off;
    switch (kind) {
    case POLICY_MATCH_ANY: return true;
    case POLICY_MATCH_EXACT:
        if (ward_spiffe_id_parse(s, len, NULL, &err) < 0) {
            ward_docv_error(c, n, "invalid SPIFFE ID %s: %s", ward_quote(q, sizeof(q), s, len),
                            err.msg);
            return false;
        }
        return true;
    case POLICY_MATCH_PREFIX: {
        if (flen < sizeof(scheme) - 1 || memcmp(frag, scheme, sizeof(scheme) - 1) != 0) {
            ward_docv_error(c, n, "principal pattern %s must start with \"spiffe://\"",
                            ward_quote(q, sizeof(q), s, len));
            return false;
        }
        /* a prefix is valid when some completion of it is a valid ID: try "x" */
        char *tmp = malloc(flen + 2);
        if (tmp == NULL) {
            c->rc = WARD_ENOMEM;
            return false;
        }
        memcpy(tmp, frag, flen);
        tmp[flen] = 'x';
        tmp[flen + 1] = '\0';
        int rc = ward_spiffe_id_parse(tmp, flen + 1, NULL, &err);
        free(tmp);
        if (rc < 0) {
            ward_docv_error(c, n, "invalid SPIFFE ID pattern %s: %s",
                            ward_quote(q, sizeof(q), s, len), err.msg);
            return false;
        }
        return true;
    }
    case POLICY_MATCH_SUFFIX:
        for (size_t i = 0; i < flen; i++) {
            if (!(ident_char(frag[i]) || frag[i] == '.' || frag[i] == '/') ||
                (frag[i] == '/' && i + 1 < flen && frag[i + 1] == '/')) {
                ward_docv_error(
                    c, n,
                    "invalid principal suffix %s: only [A-Za-z0-9._-] segments separated by "
                    "single \"/\" are allowed",
                    ward_quote(q, sizeof(q), s, len));
                return false;
            }
        }
        return true;
    default: return false;
    }
}

/* Validates the literal part of a pattern for field kind f. */
static bool check_fragment(ward_docv *c, const ward_node *n, vfield f, const char *s, size_t len,
                           policy_match_kind kind, size_t off, size_t flen)
{
    char q[256];
    const char *frag = s + off;
    switch (f) {
    case VF_PRINCIPAL: return check_principal(c, n, s, len, kind, off, flen);
    case VF_NAMESPACE:
        for (size_t i = 0; i < flen; i++) {
            if (!ns_char(frag[i])) {
                ward_docv_error(c, n, "invalid namespace %s: only [A-Za-z0-9._-] is allowed",
                                ward_quote(q, sizeof(q), s, len));
                return false;
            }
        }
        return true;
    case VF_TRUST_DOMAIN:
        if (kind != POLICY_MATCH_ANY && !ward_spiffe_td_valid(frag, flen)) {
            ward_docv_error(c, n,
                            "invalid trust domain %s: must be 1..255 characters of [a-z0-9._-]",
                            ward_quote(q, sizeof(q), s, len));
            return false;
        }
        return true;
    case VF_METHOD:
        for (size_t i = 0; i < flen; i++) {
            if (frag[i] >= 'a' && frag[i] <= 'z') {
                ward_docv_error(c, n,
                                "method %s must be uppercase (methods match case-sensitively)",
                                ward_quote(q, sizeof(q), s, len));
                return false;
            }
            if (!tchar(frag[i])) {
                ward_docv_error(c, n, "invalid method %s: not an HTTP token",
                                ward_quote(q, sizeof(q), s, len));
                return false;
            }
        }
        return true;
    case VF_HOST:
        for (size_t i = 0; i < flen; i++) {
            char ch = frag[i];
            if (ch >= 'A' && ch <= 'Z')
                ch = (char)(ch - 'A' + 'a');
            if (!host_char(ch)) {
                ward_docv_error(
                    c, n,
                    "invalid host %s: only letters, digits, '.', '-', '_', ':' and '[ ]' are "
                    "allowed",
                    ward_quote(q, sizeof(q), s, len));
                return false;
            }
        }
        return true;
    case VF_PATH:
        if (memchr(s, '\0', len) != NULL) {
            ward_docv_error(c, n, "path %s must not contain NUL bytes",
                            ward_quote(q, sizeof(q), s, len));
            return false;
        }
        if (memchr(s, '?', len) != NULL) {
            ward_docv_error(c, n,
                            "path %s must not contain \"?\" (paths are matched without the query; "
                            "use request.query)",
                            ward_quote(q, sizeof(q), s, len));
            return false;
        }
        if ((kind == POLICY_MATCH_EXACT || kind == POLICY_MATCH_PREFIX) && frag[0] != '/') {
            ward_docv_error(c, n, "path %s must start with \"/\" (or be \"*\" or \"*suffix\")",
                            ward_quote(q, sizeof(q), s, len));
            return false;
        }
        return true;
    default: return true;
    }
}

/* One value of a pattern list; on error m->value stays NULL. */
static void parse_value(ward_docv *c, const ward_node *n, vfield f, policy_match *m)
{
    m->pos = node_pos(c, n);
    if (f == VF_PATH && n->kind == WARD_NODE_MAP) {
        parse_regex(c, n, m);
        return;
    }
    if (f == VF_BOOL) {
        bool b = false;
        bool ok = ward_node_is_bool(n, &b);
        if (!ok && n->kind == WARD_NODE_SCALAR &&
            (ward_node_is(n, "true") || ward_node_is(n, "false"))) {
            ok = true;
            b = ward_node_is(n, "true");
        }
        if (ok) {
            m->kind = POLICY_MATCH_EXACT;
            m->value = ward_docv_dup(c, b ? "true" : "false", b ? 4 : 5);
            m->len = b ? 4 : 5;
        } else {
            ward_docv_error(c, n, "expected true or false, got %s", ward_node_describe(n));
        }
        return;
    }
    if (f == VF_PORT) {
        unsigned port;
        if (n->kind == WARD_NODE_SCALAR && ward_node_is(n, "*")) {
            m->kind = POLICY_MATCH_ANY;
            m->value = ward_docv_dup(c, "", 0);
            return;
        }
        if (!parse_port_scalar(c, n, &port))
            return;
        char tmp[16];
        int tl = snprintf(tmp, sizeof(tmp), "%u", port);
        m->kind = POLICY_MATCH_EXACT;
        m->value = ward_docv_dup(c, tmp, (size_t)tl);
        m->len = (size_t)tl;
        return;
    }
    const char *s;
    size_t len;
    if (!ward_docv_get_str(c, n, &s, &len))
        return;
    if (f == VF_CIDR) {
        ward_cidr cidr;
        ward_err err;
        ward_err_clear(&err);
        char q[256];
        if (len == 0) {
            ward_docv_error(c, n, "must not be empty");
            return;
        }
        if (ward_cidr_parse(s, len, &cidr, &err) < 0) {
            ward_docv_error(c, n, "invalid CIDR block %s: %s", ward_quote(q, sizeof(q), s, len),
                            err.msg);
            return;
        }
        m->kind = POLICY_MATCH_CIDR;
        m->value = ward_docv_dup(c, s, len);
        m->len = len;
        return;
    }
    if (f == VF_PATH && len > 0 && (memchr(s, '{', len) != NULL || memchr(s, '}', len) != NULL)) {
        if (!check_fragment(c, n, f, s, len, POLICY_MATCH_TEMPLATE, 0, len) ||
            !check_template(c, n, s, len))
            return;
        m->kind = POLICY_MATCH_TEMPLATE;
        m->value = ward_docv_dup(c, s, len);
        m->len = len;
        return;
    }
    policy_match_kind kind;
    size_t off, flen;
    if (!split_pattern(c, n, s, len, &kind, &off, &flen) ||
        !check_fragment(c, n, f, s, len, kind, off, flen))
        return;
    m->kind = kind;
    m->value = ward_docv_dup(c, s + off, flen);
    m->len = flen;
    if (f == VF_HOST && m->value != NULL)
        for (size_t i = 0; i < flen; i++)
            if (m->value[i] >= 'A' && m->value[i] <= 'Z')
                m->value[i] = (char)(m->value[i] - 'A' + 'a');
}

/* A field's value list: a list, not empty (absent is how to say "no
 * constraint"), not over the limit. */
static bool value_list_ok(ward_docv *c, const ward_node *n)
{
    if (!ward_docv_expect_list(c, n))
        return false;
    if (n->n == 0) {
        ward_docv_error(c, n, "must not be empty (omit the field for no constraint)");
        return false;
    }
    if (n->n > POLICY_MAX_LIST) {
        ward_docv_error(c, n, "too many values (%zu, limit %d)", n->n, POLICY_MAX_LIST);
        return false;
    }
    return true;
}

/* A list-valued field `key` of `map` (absent = no constraint). */
static void parse_list(ward_docv *c, const ward_node *map, const char *key, vfield f,
                       policy_matches *out)
{
    const ward_node *n = ward_node_get(map, key);
    if (n == NULL)
        return;
    size_t old = ward_docv_push(c, key);
    out->present = true;
    out->pos = node_pos(c, n);
    if (!value_list_ok(c, n))
        goto out;
    out->v = ward_docv_calloc(c, n->n, sizeof(*out->v));
    if (out->v == NULL)
        goto out;
    out->n = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t o2 = ward_docv_push_idx(c, i);
        parse_value(c, n->items[i], f, &out->v[i]);
        ward_docv_pop(c, o2);
    }
out:
    ward_docv_pop(c, old);
}

static void parse_ports(ward_docv *c, const ward_node *map, const char *key, policy_ports *out)
{
    const ward_node *n = ward_node_get(map, key);
    if (n == NULL)
        return;
    size_t old = ward_docv_push(c, key);
    out->present = true;
    out->pos = node_pos(c, n);
    if (!value_list_ok(c, n))
        goto out;
    out->v = ward_docv_calloc(c, n->n, sizeof(*out->v));
    if (out->v == NULL)
        goto out;
    out->n = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t o2 = ward_docv_push_idx(c, i);
        parse_port_scalar(c, n->items[i], &out->v[i]);
        ward_docv_pop(c, o2);
    }
out:
    ward_docv_pop(c, old);
}

/* ---- rules ---------------------------------------------------------------------- */

static const char *const source_fields[] = {"principals",    "notPrincipals", "namespaces",
                                            "notNamespaces", "trustDomains",  "notTrustDomains",
                                            "ipBlocks",      "notIpBlocks",   NULL};
static const char *const operation_fields[] = {
    "methods", "notMethods", "hosts", "notHosts", "ports", "notPorts", "paths", "notPaths", NULL};

static void parse_source(ward_docv *c, const ward_node *n, policy_source *s)
{
    s->pos = node_pos(c, n);
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, source_fields, nesting_hint);
    if (n->n == 0) {
        char list[512];
        ward_join_names(list, sizeof(list), source_fields);
        ward_docv_error(c, n, "an empty source matches nothing useful; set at least one of: %s",
                        list);
        return;
    }
    parse_list(c, n, "principals", VF_PRINCIPAL, &s->principals);
    parse_list(c, n, "notPrincipals", VF_PRINCIPAL, &s->not_principals);
    parse_list(c, n, "namespaces", VF_NAMESPACE, &s->namespaces);
    parse_list(c, n, "notNamespaces", VF_NAMESPACE, &s->not_namespaces);
    parse_list(c, n, "trustDomains", VF_TRUST_DOMAIN, &s->trust_domains);
    parse_list(c, n, "notTrustDomains", VF_TRUST_DOMAIN, &s->not_trust_domains);
    parse_list(c, n, "ipBlocks", VF_CIDR, &s->ip_blocks);
    parse_list(c, n, "notIpBlocks", VF_CIDR, &s->not_ip_blocks);
}

static void parse_operation(ward_docv *c, const ward_node *n, policy_operation *o)
{
    o->pos = node_pos(c, n);
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, operation_fields, nesting_hint);
    if (n->n == 0) {
        char list[512];
        ward_join_names(list, sizeof(list), operation_fields);
        ward_docv_error(c, n, "an empty operation matches nothing useful; set at least one of: %s",
                        list);
        return;
    }
    parse_list(c, n, "methods", VF_METHOD, &o->methods);
    parse_list(c, n, "notMethods", VF_METHOD, &o->not_methods);
    parse_list(c, n, "hosts", VF_HOST, &o->hosts);
    parse_list(c, n, "notHosts", VF_HOST, &o->not_hosts);
    parse_ports(c, n, "ports", &o->ports);
    parse_ports(c, n, "notPorts", &o->not_ports);
    parse_list(c, n, "paths", VF_PATH, &o->paths);
    parse_list(c, n, "notPaths", VF_PATH, &o->not_paths);
}

static const struct {
    const char *name;
    policy_attr attr;
    vfield field;
} attrs[] = {
    {"source.principal", POLICY_ATTR_SOURCE_PRINCIPAL, VF_PRINCIPAL},
    {"source.ip", POLICY_ATTR_SOURCE_IP, VF_CIDR},
    {"source.port", POLICY_ATTR_SOURCE_PORT, VF_PORT},
    {"source.namespace", POLICY_ATTR_SOURCE_NAMESPACE, VF_NAMESPACE},
    {"source.trustDomain", POLICY_ATTR_SOURCE_TRUST_DOMAIN, VF_TRUST_DOMAIN},
    {"destination.service", POLICY_ATTR_DESTINATION_SERVICE, VF_GENERIC},
    {"destination.principal", POLICY_ATTR_DESTINATION_PRINCIPAL, VF_PRINCIPAL},
    {"destination.port", POLICY_ATTR_DESTINATION_PORT, VF_PORT},
    {"request.method", POLICY_ATTR_REQUEST_METHOD, VF_METHOD},
    {"request.host", POLICY_ATTR_REQUEST_HOST, VF_HOST},
    {"request.path", POLICY_ATTR_REQUEST_PATH, VF_PATH},
    {"request.query", POLICY_ATTR_REQUEST_QUERY, VF_GENERIC},
    {"request.headers", POLICY_ATTR_REQUEST_HEADER, VF_GENERIC},
    {"request.protocol", POLICY_ATTR_REQUEST_PROTOCOL, VF_GENERIC},
    {"connection.mtls", POLICY_ATTR_CONNECTION_MTLS, VF_BOOL},
    {"connection.sni", POLICY_ATTR_CONNECTION_SNI, VF_GENERIC},
    {"time", POLICY_ATTR_TIME, VF_GENERIC},
};
#define N_ATTRS (sizeof(attrs) / sizeof(attrs[0]))

const char *policy_attr_name(policy_attr a)
{
    for (size_t i = 0; i < N_ATTRS; i++)
        if (attrs[i].attr == a)
            return attrs[i].name;
    return "?";
}

/* Parses a `when` key; returns the value kind to validate values with. */
static vfield parse_attr_key(ward_docv *c, const ward_node *n, policy_condition *k, bool *ok)
{
    static const char hdr[] = "request.headers[";
    const size_t hl = sizeof(hdr) - 1;
    const char *s;
    size_t len;
    char q[256];
    *ok = false;
    if (!ward_docv_get_str(c, n, &s, &len))
        return VF_GENERIC;
    if (len > hl && memcmp(s, hdr, hl) == 0 && s[len - 1] == ']') {
        const char *name = s + hl;
        size_t nl = len - hl - 1;
        bool valid = nl > 0;
        for (size_t i = 0; i < nl && valid; i++)
            valid = tchar(name[i]);
        if (!valid) {
            ward_docv_error(c, n, "invalid header name %s: must be an HTTP token",
                            ward_quote(q, sizeof(q), name, nl));
            return VF_GENERIC;
        }
        k->attr = POLICY_ATTR_REQUEST_HEADER;
        k->header = ward_docv_dup(c, name, nl);
        if (k->header != NULL)
            for (size_t i = 0; i < nl; i++)
                if (k->header[i] >= 'A' && k->header[i] <= 'Z')
                    k->header[i] = (char)(k->header[i] - 'A' + 'a');
        *ok = true;
        return VF_GENERIC;
    }
    if (ward_node_is(n, "request.headers") || (len >= hl && memcmp(s, hdr, hl) == 0)) {
        ward_docv_error(c, n,
                        "write request.headers[<name>] with a header name, as in "
                        "request.headers[x-tenant]");
        return VF_GENERIC;
    }
    for (size_t i = 0; i < N_ATTRS; i++) {
        if (attrs[i].attr != POLICY_ATTR_REQUEST_HEADER && ward_node_is(n, attrs[i].name)) {
            k->attr = attrs[i].attr;
            *ok = true;
            return attrs[i].field;
        }
    }
    const char *names[N_ATTRS + 1];
    for (size_t i = 0; i < N_ATTRS; i++)
        names[i] =
            attrs[i].attr == POLICY_ATTR_REQUEST_HEADER ? "request.headers[<name>]" : attrs[i].name;
    names[N_ATTRS] = NULL;
    char list[512], hint[128] = "";
    ward_join_names(list, sizeof(list), names);
    const char *near = ward_closest_name(s, len, names);
    if (near == NULL && len >= 14 && memcmp(s, "request.header", 14) == 0)
        near = "request.headers[<name>]";
    if (near != NULL)
        snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)", near);
    ward_docv_error(c, n, "unknown attribute %s%s; known: %s", ward_quote(q, sizeof(q), s, len),
                    hint, list);
    return VF_GENERIC;
}

static void parse_condition(ward_docv *c, const ward_node *n, policy_condition *k)
{
    static const char *const fields[] = {"key", "values", "notValues", "lua", NULL};
    k->pos = node_pos(c, n);
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, nesting_hint);
    const ward_node *lua = ward_node_get(n, "lua");
    const ward_node *key = ward_node_get(n, "key");
    const ward_node *vals = ward_node_get(n, "values");
    const ward_node *nvals = ward_node_get(n, "notValues");
    if (lua != NULL) {
        k->is_lua = true;
        if (key || vals || nvals)
            ward_docv_error(c, n, "lua cannot be combined with key, values or notValues");
        size_t old = ward_docv_push(c, "lua");
        const char *s;
        size_t len;
        ward_err why;
        if (ward_docv_get_str(c, lua, &s, &len)) {
            if (len == 0)
                ward_docv_error(c, lua, "must not be empty");
            else if (memchr(s, '\0', len) != NULL)
                ward_docv_error(c, lua, "must not contain NUL bytes");
            else if (len > POLICY_MAX_LUA)
                ward_docv_error(c, lua, "too long (%zu bytes, limit %d)", len, POLICY_MAX_LUA);
            else if (wlua_condition_check(s, len, &why) < 0)
                ward_docv_error(c, lua, "invalid Lua condition: %s", why.msg);
            else
                k->lua = ward_docv_dup(c, s, len);
        }
        ward_docv_pop(c, old);
        return;
    }
    vfield f = VF_GENERIC;
    if (key == NULL) {
        ward_docv_missing(c, n, "key", " (a condition is {key, values/notValues} or {lua})");
    } else {
        bool ok;
        size_t old = ward_docv_push(c, "key");
        f = parse_attr_key(c, key, k, &ok);
        ward_docv_pop(c, old);
    }
    if (vals == NULL && nvals == NULL)
        ward_docv_error(c, n, "needs values or notValues");
    parse_list(c, n, "values", f, &k->values);
    parse_list(c, n, "notValues", f, &k->not_values);
}

/* from / to / when: a non-empty list of at most POLICY_MAX_LIST items. */
static const ward_node *rule_list(ward_docv *c, const ward_node *rule, const char *key,
                                  const char *omit_hint, size_t *count)
{
    *count = 0;
    const ward_node *n = ward_node_get(rule, key);
    if (n == NULL)
        return NULL;
    size_t old = ward_docv_push(c, key);
    const ward_node *res = NULL;
    if (!ward_docv_expect_list(c, n))
        goto out;
    if (n->n == 0) {
        ward_docv_error(c, n, "must not be empty (omit %s %s)", key, omit_hint);
        goto out;
    }
    if (n->n > POLICY_MAX_LIST) {
        ward_docv_error(c, n, "too many items (%zu, limit %d)", n->n, POLICY_MAX_LIST);
        goto out;
    }
    *count = n->n;
    res = n;
out:
    ward_docv_pop(c, old);
    return res;
}

static void parse_rule(ward_docv *c, const ward_node *n, policy_rule *r)
{
    static const char *const fields[] = {"from", "to", "when", NULL};
    r->pos = node_pos(c, n);
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, nesting_hint);
    size_t cnt, old;
    const ward_node *l;

    r->from_present = ward_node_get(n, "from") != NULL;
    if ((l = rule_list(c, n, "from", "to match any source", &cnt)) != NULL &&
        (r->from = ward_docv_calloc(c, cnt, sizeof(*r->from))) != NULL) {
        r->n_from = cnt;
        old = ward_docv_push(c, "from");
        for (size_t i = 0; i < cnt; i++) {
            size_t o2 = ward_docv_push_idx(c, i);
            parse_source(c, l->items[i], &r->from[i]);
            ward_docv_pop(c, o2);
        }
        ward_docv_pop(c, old);
    }
    r->to_present = ward_node_get(n, "to") != NULL;
    if ((l = rule_list(c, n, "to", "to match any operation", &cnt)) != NULL &&
        (r->to = ward_docv_calloc(c, cnt, sizeof(*r->to))) != NULL) {
        r->n_to = cnt;
        old = ward_docv_push(c, "to");
        for (size_t i = 0; i < cnt; i++) {
            size_t o2 = ward_docv_push_idx(c, i);
            parse_operation(c, l->items[i], &r->to[i]);
            ward_docv_pop(c, o2);
        }
        ward_docv_pop(c, old);
    }
    if ((l = rule_list(c, n, "when", "for no conditions", &cnt)) != NULL &&
        (r->when = ward_docv_calloc(c, cnt, sizeof(*r->when))) != NULL) {
        r->n_when = cnt;
        old = ward_docv_push(c, "when");
        for (size_t i = 0; i < cnt; i++) {
            size_t o2 = ward_docv_push_idx(c, i);
            parse_condition(c, l->items[i], &r->when[i]);
            ward_docv_pop(c, o2);
        }
        ward_docv_pop(c, old);
    }
}

/* ---- document ------------------------------------------------------------------------ */

/* [a-z0-9]([-a-z0-9.]*[a-z0-9])?, at most 253 bytes. */
static bool dns_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > POLICY_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && ((ch != '-' && ch != '.') || i == 0 || i == len - 1))
            return false;
    }
    return true;
}

static char *parse_name(ward_docv *c, const ward_node *n)
{
    const char *s;
    size_t len;
    char q[256];
    if (!ward_docv_get_str(c, n, &s, &len))
        return NULL;
    if (len == 0) {
        ward_docv_error(c, n, "must not be empty");
        return NULL;
    }
    if (!dns_name_ok(s, len)) {
        ward_docv_error(
            c, n,
            "invalid name %s: use lowercase letters, digits, '-' and '.', starting and ending "
            "with a letter or digit (at most %d characters)",
            ward_quote(q, sizeof(q), s, len), POLICY_MAX_NAME);
        return NULL;
    }
    return ward_docv_dup(c, s, len);
}

static void parse_metadata(ward_docv *c, const ward_node *n, char **name_out, char **ns_out,
                           policy_pos *name_pos)
{
    static const char *const fields[] = {"name", "namespace", NULL};
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, nesting_hint);
    const ward_node *name = ward_node_get(n, "name");
    const ward_node *ns = ward_node_get(n, "namespace");
    if (name == NULL) {
        ward_docv_missing(c, n, "name", "");
    } else {
        size_t old = ward_docv_push(c, "name");
        *name_out = parse_name(c, name);
        *name_pos = node_pos(c, name);
        ward_docv_pop(c, old);
    }
    if (ns != NULL) {
        size_t old = ward_docv_push(c, "namespace");
        *ns_out = parse_name(c, ns);
        ward_docv_pop(c, old);
    } else {
        *ns_out = ward_docv_dup(c, "default", 7);
    }
}

static void parse_selector(ward_docv *c, const ward_node *n, policy_authz *a)
{
    static const char *const fields[] = {"services", NULL};
    a->selector_present = true;
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, nesting_hint);
    const ward_node *sv = ward_node_get(n, "services");
    if (sv == NULL) {
        ward_docv_missing(c, n, "services", " (omit selector to select every service)");
        return;
    }
    size_t old = ward_docv_push(c, "services");
    if (!ward_docv_expect_list(c, sv))
        goto out;
    if (sv->n == 0) {
        ward_docv_error(c, sv, "must not be empty (omit selector to select every service)");
        goto out;
    }
    if (sv->n > POLICY_MAX_LIST) {
        ward_docv_error(c, sv, "too many values (%zu, limit %d)", sv->n, POLICY_MAX_LIST);
        goto out;
    }
    a->services = ward_docv_calloc(c, sv->n, sizeof(*a->services));
    if (a->services == NULL)
        goto out;
    a->n_services = sv->n;
    for (size_t i = 0; i < sv->n; i++) {
        size_t o2 = ward_docv_push_idx(c, i);
        const ward_node *it = sv->items[i];
        const char *s;
        size_t len;
        char q[256];
        if (ward_docv_get_str(c, it, &s, &len)) {
            bool bad = false;
            for (size_t j = 0; j < len && !bad; j++)
                bad = (unsigned char)s[j] <= 0x20 || s[j] == 0x7f;
            if (len == 0)
                ward_docv_error(c, it, "must not be empty");
            else if (memchr(s, '*', len) != NULL)
                ward_docv_error(c, it,
                                "service names are exact, not patterns (omit selector to select "
                                "every service)");
            else if (bad)
                ward_docv_error(c, it, "invalid service name %s: no spaces or control characters",
                                ward_quote(q, sizeof(q), s, len));
            else
                a->services[i] = ward_docv_dup(c, s, len);
        }
        ward_docv_pop(c, o2);
    }
out:
    ward_docv_pop(c, old);
}

static void parse_deny_response(ward_docv *c, const ward_node *n, policy_authz *a)
{
    static const char *const fields[] = {"status", "body", NULL};
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, nesting_hint);
    const ward_node *st = ward_node_get(n, "status");
    const ward_node *body = ward_node_get(n, "body");
    if (st == NULL && body == NULL)
        ward_docv_error(c, n, "set status and/or body");
    if (st != NULL) {
        size_t old = ward_docv_push(c, "status");
        uint64_t v = 0;
        int shown = (int)(st->len > 20 ? 20 : st->len);
        if (st->kind != WARD_NODE_SCALAR || st->quoted || !ward_node_is_number(st))
            ward_docv_error(c, st, "expected an integer 400..599, got %s", ward_node_describe(st));
        else if (ward_parse_u64(st->str, st->len, UINT64_MAX, &v) < 0)
            ward_docv_error(c, st, "status %.*s is not an integer in 400..599", shown, st->str);
        else if (v < 400 || v > 599)
            ward_docv_error(c, st, "status %.*s is out of range (400..599)", shown, st->str);
        else
            a->deny_status = (int)v;
        ward_docv_pop(c, old);
    }
    if (body != NULL) {
        size_t old = ward_docv_push(c, "body");
        const char *s;
        size_t len;
        if (ward_docv_get_str(c, body, &s, &len)) {
            if (len > POLICY_MAX_DENY_BODY)
                ward_docv_error(c, body, "too long (%zu bytes, limit %d)", len,
                                POLICY_MAX_DENY_BODY);
            else
                a->deny_body = ward_docv_dup(c, s, len);
        }
        ward_docv_pop(c, old);
    }
}

static bool parse_enum(ward_docv *c, const ward_node *n, const char *const *names, int *out)
{
    const char *s;
    size_t len;
    if (!ward_docv_get_str(c, n, &s, &len))
        return false;
    for (int i = 0; names[i] != NULL; i++) {
        if (ward_node_is(n, names[i])) {
            *out = i;
            return true;
        }
    }
    char q[256], list[128], hint[64] = "";
    ward_join_names(list, sizeof(list), names);
    for (int i = 0; names[i] != NULL; i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], s, len) == 0)
            snprintf(hint, sizeof(hint), " (values are case-sensitive: %s)", names[i]);
    ward_docv_error(c, n, "invalid value %s%s; allowed: %s", ward_quote(q, sizeof(q), s, len), hint,
                    list);
    return false;
}

static void parse_spec(ward_docv *c, const ward_node *n, policy_authz *a, size_t rules_left)
{
    static const char *const fields[] = {"selector", "action",       "mode",
                                         "rules",    "denyResponse", NULL};
    static const char *const actions[] = {"ALLOW", "DENY", "AUDIT", NULL};
    static const char *const modes[] = {"enforce", "dry-run", NULL};
    if (!ward_docv_expect_map(c, n))
        return;
    ward_docv_check_fields(c, n, fields, nesting_hint);
    const ward_node *f;
    size_t old;
    a->action = POLICY_ALLOW;
    if ((f = ward_node_get(n, "selector")) != NULL) {
        old = ward_docv_push(c, "selector");
        parse_selector(c, f, a);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "action")) != NULL) {
        int v;
        old = ward_docv_push(c, "action");
        if (parse_enum(c, f, actions, &v))
            a->action = v == 0 ? POLICY_ALLOW : v == 1 ? POLICY_DENY : POLICY_AUDIT;
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "mode")) != NULL) {
        int v;
        old = ward_docv_push(c, "mode");
        if (parse_enum(c, f, modes, &v))
            a->dry_run = v == 1;
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "denyResponse")) != NULL) {
        old = ward_docv_push(c, "denyResponse");
        if (a->action == POLICY_AUDIT)
            ward_docv_error(c, f, "not allowed with action AUDIT (AUDIT policies never deny)");
        else
            parse_deny_response(c, f, a);
        ward_docv_pop(c, old);
    }
    if ((f = ward_node_get(n, "rules")) != NULL) {
        old = ward_docv_push(c, "rules");
        a->rules_present = true;
        if (!ward_docv_expect_list(c, f)) {
            /* reported */
        } else if (f->n > rules_left) {
            ward_docv_error(c, f, "too many rules: the policy set would exceed %d rules",
                            POLICY_MAX_RULES);
        } else if (f->n > 0 && (a->rules = ward_docv_calloc(c, f->n, sizeof(*a->rules))) != NULL) {
            a->n_rules = f->n;
            for (size_t i = 0; i < f->n; i++) {
                size_t o2 = ward_docv_push_idx(c, i);
                parse_rule(c, f->items[i], &a->rules[i]);
                ward_docv_pop(c, o2);
            }
        }
        ward_docv_pop(c, old);
    }
}

static void free_matches(policy_matches *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].value);
    free(m->v);
}

void policy_authz_free(policy_authz *a)
{
    if (a == NULL)
        return;
    for (size_t r = 0; r < a->n_rules; r++) {
        policy_rule *rule = &a->rules[r];
        for (size_t i = 0; i < rule->n_from; i++) {
            policy_source *s = &rule->from[i];
            free_matches(&s->principals);
            free_matches(&s->not_principals);
            free_matches(&s->namespaces);
            free_matches(&s->not_namespaces);
            free_matches(&s->trust_domains);
            free_matches(&s->not_trust_domains);
            free_matches(&s->ip_blocks);
            free_matches(&s->not_ip_blocks);
        }
        free(rule->from);
        for (size_t i = 0; i < rule->n_to; i++) {
            policy_operation *o = &rule->to[i];
            free_matches(&o->methods);
            free_matches(&o->not_methods);
            free_matches(&o->hosts);
            free_matches(&o->not_hosts);
            free(o->ports.v);
            free(o->not_ports.v);
            free_matches(&o->paths);
            free_matches(&o->not_paths);
        }
        free(rule->to);
        for (size_t i = 0; i < rule->n_when; i++) {
            policy_condition *k = &rule->when[i];
            free(k->header);
            free_matches(&k->values);
            free_matches(&k->not_values);
            free(k->lua);
        }
        free(rule->when);
    }
    free(a->rules);
    for (size_t i = 0; i < a->n_services; i++)
        free(a->services[i]);
    free(a->services);
    free(a->name);
    free(a->ns);
    free(a->id);
    free(a->deny_body);
    free(a);
}

/* ---- shared with route.c ---- */

policy_pos policy_node_pos(const ward_docv *c, const ward_node *n)
{
    return node_pos(c, n);
}

const char *policy_nesting_hint(const ward_node *key)
{
    return nesting_hint(key);
}

bool policy_tchar(char ch)
{
    return tchar(ch);
}

void policy_parse_paths(ward_docv *c, const ward_node *map, const char *key, policy_matches *out)
{
    parse_list(c, map, key, VF_PATH, out);
}

void policy_parse_methods(ward_docv *c, const ward_node *map, const char *key,
                          policy_matches *out)
{
    parse_list(c, map, key, VF_METHOD, out);
}

void policy_parse_regex(ward_docv *c, const ward_node *map, policy_match *m)
{
    m->pos = node_pos(c, map);
    parse_regex(c, map, m);
}

char *policy_parse_name(ward_docv *c, const ward_node *n)
{
    return parse_name(c, n);
}

bool policy_parse_enum(ward_docv *c, const ward_node *n, const char *const *names, int *out)
{
    return parse_enum(c, n, names, out);
}

void policy_matches_free(policy_matches *m)
{
    free_matches(m);
}

char *policy_make_id(const char *ns, const char *name)
{
    size_t nl = strlen(ns), ml = strlen(name);
    char *id = malloc(nl + ml + 2);
    if (id != NULL) {
        memcpy(id, ns, nl);
        id[nl] = '/';
        memcpy(id + nl + 1, name, ml + 1);
    }
    return id;
}

/* ---- documents ---- */

int policy_doc_validate(const ward_node *root, const char *file, size_t rules_left, ward_diag *diag,
                        ward_diag *warnings, policy_doc *out)
{
    static const char *const fields[] = {"apiVersion", "kind", "metadata", "spec", NULL};
    memset(out, 0, sizeof(*out));
    out->kind = POLICY_DOC_INVALID;
    out->name_pos = (policy_pos){file, 0, 0};
    if (root->kind == WARD_NODE_SCALAR && ward_node_is_null(root)) {
        out->kind = POLICY_DOC_EMPTY;
        return 0;
    }
    ward_docv c;
    memset(&c, 0, sizeof(c));
    c.file = file;
    policy_authz *a = NULL;
    policy_route *r = NULL;
    ward_diag warn; /* of this document: kept only if it is valid */
    ward_diag_init(&warn);
    const ward_node *f;
    size_t old;
    char **name = NULL, **ns = NULL, **id = NULL;
    if (root->kind != WARD_NODE_MAP) {
        ward_docv_error(&c, root, "expected a map with apiVersion, kind, metadata and spec, got %s",
                        ward_node_describe(root));
        goto done;
    }

    old = ward_docv_push(&c, "apiVersion");
    if ((f = ward_node_get(root, "apiVersion")) == NULL) {
        ward_docv_error(&c, root,
                        "required field is missing (write apiVersion: " API_VERSION ")");
    } else {
        const char *s;
        size_t len;
        char q[256];
        if (ward_docv_get_str(&c, f, &s, &len) && !ward_node_is(f, API_VERSION))
            ward_docv_error(&c, f, "unsupported apiVersion %s (expected " API_VERSION ")",
                            ward_quote(q, sizeof(q), s, len));
    }
    ward_docv_pop(&c, old);

    old = ward_docv_push(&c, "kind");
    bool is_route = false, kind_ok = false;
    if ((f = ward_node_get(root, "kind")) == NULL) {
        ward_docv_error(
            &c, root, "required field is missing (supported kinds: " SUPPORTED_KINDS ")");
    } else {
        const char *s;
        size_t len;
        char q[256];
        if (!ward_docv_get_str(&c, f, &s, &len))
            kind_ok = false;
        else if (ward_node_is(f, "AuthorizationPolicy"))
            kind_ok = true;
        else if (ward_node_is(f, "Route"))
            kind_ok = is_route = true;
        else
            ward_docv_error(&c, f, "unknown kind %s (supported kinds: " SUPPORTED_KINDS ")",
                            ward_quote(q, sizeof(q), s, len));
    }
    ward_docv_pop(&c, old);
    if (!kind_ok)
        goto done;

    ward_docv_check_fields(&c, root, fields, nesting_hint);
    if (is_route) {
        if ((r = ward_docv_calloc(&c, 1, sizeof(*r))) == NULL)
            goto done;
        r->pos = node_pos(&c, root);
        name = &r->name, ns = &r->ns, id = &r->id;
    } else {
        if ((a = ward_docv_calloc(&c, 1, sizeof(*a))) == NULL)
            goto done;
        a->pos = node_pos(&c, root);
        a->action = POLICY_ALLOW;
        name = &a->name, ns = &a->ns, id = &a->id;
    }
    out->name_pos = node_pos(&c, root);

    old = ward_docv_push(&c, "metadata");
    if ((f = ward_node_get(root, "metadata")) == NULL)
        ward_docv_error(
            &c, root,
            "required field is missing (metadata: {name: ..., namespace: ...})");
    else
        parse_metadata(&c, f, name, ns, &out->name_pos);
    ward_docv_pop(&c, old);

    old = ward_docv_push(&c, "spec");
    if ((f = ward_node_get(root, "spec")) == NULL)
        ward_docv_error(&c, root, "required field is missing");
    else if (is_route)
        policy_route_parse_spec(&c, f, r, rules_left, &warn);
    else
        parse_spec(&c, f, a, rules_left);
    ward_docv_pop(&c, old);

    if (c.n_probs == 0 && c.rc == 0 && *name != NULL && *ns != NULL) {
        if ((*id = policy_make_id(*ns, *name)) == NULL)
            c.rc = WARD_ENOMEM;
    }
    if (c.n_probs == 0 && c.rc == 0 && r != NULL && policy_route_warnings(r, &warn) < 0)
        c.rc = WARD_ENOMEM;

done:;
    int rc = c.rc;
    bool bad = c.n_probs > 0 || rc < 0;
    ward_docv_flush(&c, rc < 0 ? NULL : diag);
    if (bad) {
        policy_authz_free(a);
        policy_route_free(r);
        ward_diag_dispose(&warn);
        return rc;
    }
    for (size_t i = 0; i < warn.n && warnings != NULL; i++)
        ward_diag_add(warnings, NULL, 0, 0, "%s", warn.msgs[i]);
    ward_diag_dispose(&warn);
    out->kind = r != NULL ? POLICY_DOC_ROUTE : POLICY_DOC_AUTHZ;
    out->authz = a;
    out->route = r;
    return 0;
}
