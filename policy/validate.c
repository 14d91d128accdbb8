/* validate.c - check one AuthorizationPolicy document tree and build its policy_authz */
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

#define API_VERSION "ward/v1"
#define SUPPORTED_KINDS "AuthorizationPolicy"
#define MAX_REGEX 4096

/* ---- validation context: the field path and the problems found ------------ */

typedef struct vprob {
    int line, col;
    size_t seq;
    char *msg;
} vprob;

typedef struct vctx {
    const char *file;
    int rc; /* WARD_ENOMEM once an allocation failed */
    vprob *probs;
    size_t n_probs, cap_probs;
    char path[1024];
    size_t plen;
} vctx;

/* Writes s as a double-quoted string with control bytes, quotes and
 * backslashes escaped; long values are cut with "...". */
static const char *quote(char *out, size_t size, const char *s, size_t len)
{
    const size_t max = 80;
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len && i < max && o + 8 < size; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            out[o++] = '\\';
            out[o++] = (char)ch;
        } else if (ch == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", ch);
        } else {
            out[o++] = (char)ch;
        }
    }
    if (len > max && o + 5 < size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static void verr(vctx *c, const ward_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records "path: message" at the position of `at`. */
static void verr(vctx *c, const ward_node *at, const char *fmt, ...)
{
    if (c->n_probs == c->cap_probs) {
        size_t cap = c->cap_probs ? c->cap_probs * 2 : 8;
        vprob *np = realloc(c->probs, cap * sizeof(*np));
        if (np == NULL) {
            c->rc = WARD_ENOMEM;
            return;
        }
        c->probs = np;
        c->cap_probs = cap;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t need = c->plen + strlen(msg) + 16;
    char *full = malloc(need);
    if (full == NULL) {
        c->rc = WARD_ENOMEM;
        return;
    }
    snprintf(full, need, "%s: %s", c->plen ? c->path : "document", msg);
    c->probs[c->n_probs] = (vprob){at ? at->line : 0, at ? at->col : 0, c->n_probs, full};
    c->n_probs++;
}

static int vprob_cmp(const void *a, const void *b)
{
    const vprob *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Hands the problems to diag in document order. */
static void vflush(vctx *c, ward_diag *diag)
{
    if (c->n_probs > 1)
        qsort(c->probs, c->n_probs, sizeof(*c->probs), vprob_cmp);
    for (size_t i = 0; i < c->n_probs; i++) {
        if (diag != NULL)
            ward_diag_add(diag, c->file, c->probs[i].line, c->probs[i].col, "%s",
                          c->probs[i].msg);
        free(c->probs[i].msg);
    }
    free(c->probs);
    c->probs = NULL;
    c->n_probs = c->cap_probs = 0;
}

static void path_append(vctx *c, const char *s)
{
    size_t n = strlen(s);
    if (c->plen + n >= sizeof(c->path))
        n = sizeof(c->path) - 1 - c->plen;
    memcpy(c->path + c->plen, s, n);
    c->plen += n;
    c->path[c->plen] = '\0';
}

static bool ident_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-';
}

/* Path convention: "spec.rules[0].to[1].paths[2]"; a key that is not a plain
 * identifier is written as ["key"]. Returns the length to pop back to. */
static size_t push_key(vctx *c, const char *key, size_t len)
{
    size_t old = c->plen;
    bool plain = len > 0;
    for (size_t i = 0; i < len && plain; i++)
        plain = ident_char(key[i]);
    if (plain) {
        if (c->plen > 0)
            path_append(c, ".");
        char tmp[128];
        snprintf(tmp, sizeof(tmp), "%.*s", (int)(len < 100 ? len : 100), key);
        path_append(c, tmp);
    } else {
        char q[256];
        path_append(c, "[");
        path_append(c, quote(q, sizeof(q), key, len));
        path_append(c, "]");
    }
    return old;
}

static size_t push(vctx *c, const char *key)
{
    return push_key(c, key, strlen(key));
}

static size_t push_idx(vctx *c, size_t i)
{
    size_t old = c->plen;
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "[%zu]", i);
    path_append(c, tmp);
    return old;
}

static void pop(vctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

static char *vdup(vctx *c, const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p == NULL) {
        c->rc = WARD_ENOMEM;
        return NULL;
    }
    if (len > 0)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

static void *vcalloc(vctx *c, size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL)
        c->rc = WARD_ENOMEM;
    return p;
}

static policy_pos node_pos(const vctx *c, const ward_node *n)
{
    return (policy_pos){c->file, n->line, n->col};
}

/* ---- scalars and types ----------------------------------------------------- */

static bool scalar_is(const ward_node *n, const char *word)
{
    size_t len = strlen(word);
    return n->len == len && memcmp(n->str, word, len) == 0;
}

/* A plain scalar YAML reads as null. */
static bool is_null(const ward_node *n)
{
    return n->kind == WARD_NODE_SCALAR && !n->quoted &&
           (n->len == 0 || scalar_is(n, "~") || scalar_is(n, "null") || scalar_is(n, "Null") ||
            scalar_is(n, "NULL"));
}

/* A plain scalar YAML 1.1 reads as a boolean (y/n excepted, as most parsers do). */
static bool is_bool(const ward_node *n, bool *val)
{
    static const char *const t[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const f[] = {"false", "False", "FALSE", "no",  "No",
                                    "NO",    "off",   "Off",   "OFF"};
    if (n->kind != WARD_NODE_SCALAR || n->quoted)
        return false;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (scalar_is(n, t[i])) {
            if (val)
                *val = true;
            return true;
        }
        if (scalar_is(n, f[i])) {
            if (val)
                *val = false;
            return true;
        }
    }
    return false;
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* A plain scalar that reads as a number (decimal, float, 0x/0o, .inf/.nan). */
static bool is_number(const ward_node *n)
{
    if (n->kind != WARD_NODE_SCALAR || n->quoted || n->len == 0)
        return false;
    const char *s = n->str, *e = n->str + n->len;
    if (*s == '+' || *s == '-')
        s++;
    if (s == e)
        return false;
    if (e - s >= 3 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        for (s += 2; s < e; s++)
            if (!is_digit(*s) && !((*s | 0x20) >= 'a' && (*s | 0x20) <= 'f') && *s != '_')
                return false;
        return true;
    }
    if (*s == '.' && (e - s == 4) &&
        (memcmp(s, ".inf", 4) == 0 || memcmp(s, ".Inf", 4) == 0 || memcmp(s, ".INF", 4) == 0 ||
         memcmp(s, ".nan", 4) == 0 || memcmp(s, ".NaN", 4) == 0 || memcmp(s, ".NAN", 4) == 0))
        return true;
    bool digits = false;
    while (s < e && (is_digit(*s) || *s == '_'))
        digits = true, s++;
    if (s < e && *s == '.')
        for (s++; s < e && (is_digit(*s) || *s == '_'); s++)
            digits = true;
    if (digits && s < e && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < e && (*s == '+' || *s == '-'))
            s++;
        if (s == e || !is_digit(*s))
            return false;
        while (s < e && is_digit(*s))
            s++;
    }
    return digits && s == e;
}

static const char *describe(const ward_node *n)
{
    if (n->kind == WARD_NODE_MAP)
        return "a map";
    if (n->kind == WARD_NODE_SEQ)
        return "a list";
    if (is_null(n))
        return "null";
    if (is_bool(n, NULL))
        return "a boolean";
    if (is_number(n))
        return "a number";
    return "a string";
}

static bool expect_map(vctx *c, const ward_node *n)
{
    if (n->kind == WARD_NODE_MAP)
        return true;
    verr(c, n, "expected a map, got %s", describe(n));
    return false;
}

static bool expect_list(vctx *c, const ward_node *n)
{
    if (n->kind == WARD_NODE_SEQ)
        return true;
    if (n->kind == WARD_NODE_SCALAR && !is_null(n))
        verr(c, n, "expected a list, got %s (write [value] for a single value)", describe(n));
    else
        verr(c, n, "expected a list, got %s", describe(n));
    return false;
}

/* Any scalar but an unquoted null or boolean reads as a string. */
static bool get_str(vctx *c, const ward_node *n, const char **s, size_t *len)
{
    if (n->kind != WARD_NODE_SCALAR || is_null(n)) {
        verr(c, n, "expected a string, got %s", describe(n));
        return false;
    }
    if (is_bool(n, NULL)) {
        char q[256];
        verr(c, n, "expected a string, got the boolean %.*s (quote it: %s)", (int)n->len, n->str,
             quote(q, sizeof(q), n->str, n->len));
        return false;
    }
    *s = n->str;
    *len = n->len;
    return true;
}

/* Optimal string alignment distance, for "did you mean". */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t d[40][40];
    if (la >= 40 || lb >= 40)
        return 99;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            char x = a[i - 1], y = b[j - 1];
            size_t cost = (x == y || (x | 0x20) == (y | 0x20)) ? 0 : 1;
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

static const char *closest(const char *s, size_t len, const char *const *names)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; names[i] != NULL; i++) {
        size_t dd = edit_distance(s, len, names[i], strlen(names[i]));
        if (dd < best_d) {
            best_d = dd;
            best = names[i];
        }
    }
    return best;
}

static void join_names(char *out, size_t size, const char *const *names)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; names[i] != NULL && o < size; i++)
        o += (size_t)snprintf(out + o, size - o, "%s%s", i ? ", " : "", names[i]);
}

/* Reports every key of `map` not in `allowed` (NULL-terminated). */
static void check_fields(vctx *c, const ward_node *map, const char *const *allowed)
{
    for (size_t i = 0; i < map->n; i++) {
        const ward_node *k = map->pairs[i].key;
        bool ok = false;
        for (size_t j = 0; allowed[j] != NULL && !ok; j++)
            ok = scalar_is(k, allowed[j]);
        if (ok)
            continue;
        char list[512], hint[160] = "";
        join_names(list, sizeof(list), allowed);
        const char *near = closest(k->str, k->len, allowed);
        if (near != NULL)
            snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)", near);
        else if (scalar_is(k, "operation") || scalar_is(k, "source"))
            snprintf(hint, sizeof(hint),
                     " (Ward does not nest: write the fields directly in the list item)");
        size_t old = push_key(c, k->str, k->len);
        verr(c, k, "unknown field%s; allowed: %s", hint, list);
        pop(c, old);
    }
}

static void missing(vctx *c, const ward_node *map, const char *key, const char *extra)
{
    size_t old = push(c, key);
    verr(c, map, "required field is missing%s", extra);
    pop(c, old);
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
static bool split_pattern(vctx *c, const ward_node *n, const char *s, size_t len,
                          policy_match_kind *kind, size_t *off, size_t *flen)
{
    if (len == 0) {
        verr(c, n, "must not be empty");
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
    verr(c, n,
         "invalid pattern %s: \"*\" is allowed only alone (\"*\"), at the end (\"prefix*\") or "
         "at the start (\"*suffix\")",
         quote(q, sizeof(q), s, len));
    return false;
}

/* Path templates: "/a/{*}/b/{**}". */
static bool check_template(vctx *c, const ward_node *n, const char *s, size_t len)
{
    char q[256];
    if (len == 0 || s[0] != '/') {
        verr(c, n, "path template %s must start with \"/\"", quote(q, sizeof(q), s, len));
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
            verr(c, n, "path template %s has an empty segment (\"//\")",
                 quote(q, sizeof(q), s, len));
            return false;
        }
        bool braces = memchr(seg, '{', sl) != NULL || memchr(seg, '}', sl) != NULL;
        if (braces) {
            bool one = sl == 3 && memcmp(seg, "{*}", 3) == 0;
            bool rest = sl == 4 && memcmp(seg, "{**}", 4) == 0;
            if (!one && !rest) {
                verr(c, n,
                     "invalid template segment %s: use \"{*}\" for one segment or \"{**}\" for "
                     "the rest",
                     quote(q, sizeof(q), seg, sl));
                return false;
            }
            if (rest && !last) {
                verr(c, n, "template \"{**}\" must be last");
                return false;
            }
        } else if (memchr(seg, '*', sl) != NULL) {
            verr(c, n, "\"*\" is not allowed in a template segment (%s); use \"{*}\"",
                 quote(q, sizeof(q), seg, sl));
            return false;
        }
        i++;
    }
    return true;
}

static void parse_regex(vctx *c, const ward_node *map, policy_match *m)
{
    static const char *const fields[] = {"regex", NULL};
    check_fields(c, map, fields);
    const ward_node *r = ward_node_get(map, "regex");
    if (r == NULL) {
        missing(c, map, "regex", " (a path is a string or {regex: \"...\"})");
        return;
    }
    size_t old = push(c, "regex");
    const char *s;
    size_t len;
    if (!get_str(c, r, &s, &len))
        goto out;
    if (len == 0) {
        verr(c, r, "must not be empty");
        goto out;
    }
    if (len > MAX_REGEX) {
        verr(c, r, "too long (%zu bytes, limit %d)", len, MAX_REGEX);
        goto out;
    }
    int code;
    PCRE2_SIZE eoff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)s, len, PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                                   &code, &eoff, NULL);
    if (re == NULL) {
        PCRE2_UCHAR buf[256];
        if (pcre2_get_error_message(code, buf, sizeof(buf)) < 0)
            snprintf((char *)buf, sizeof(buf), "error %d", code);
        char q[256];
        verr(c, r, "invalid regex %s: %s at offset %zu", quote(q, sizeof(q), s, len),
             (const char *)buf, (size_t)eoff);
        goto out;
    }
    pcre2_code_free(re);
    m->kind = POLICY_MATCH_REGEX;
    m->value = vdup(c, s, len);
    m->len = len;
out:
    pop(c, old);
}

static bool parse_port_scalar(vctx *c, const ward_node *n, unsigned *out)
{
    if (n->kind != WARD_NODE_SCALAR || is_null(n) || is_bool(n, NULL)) {
        verr(c, n, "expected a port number, got %s", describe(n));
        return false;
    }
    uint64_t v = 0;
    if (ward_parse_u64(n->str, n->len, 65535, &v) < 0 || v == 0) {
        char q[256];
        verr(c, n, "invalid port %s: must be an integer 1..65535",
             quote(q, sizeof(q), n->str, n->len));
        return false;
    }
    *out = (unsigned)v;
    return true;
}

/* Principal patterns: "*", a SPIFFE ID, "spiffe://td/prefix*" or "*suffix". */
static bool check_principal(vctx *c, const ward_node *n, const char *s, size_t len,
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
            verr(c, n, "invalid SPIFFE ID %s: %s", quote(q, sizeof(q), s, len), err.msg);
            return false;
        }
        return true;
    case POLICY_MATCH_PREFIX: {
        if (flen < sizeof(scheme) - 1 || memcmp(frag, scheme, sizeof(scheme) - 1) != 0) {
            verr(c, n, "principal pattern %s must start with \"spiffe://\"",
                 quote(q, sizeof(q), s, len));
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
            verr(c, n, "invalid SPIFFE ID pattern %s: %s", quote(q, sizeof(q), s, len), err.msg);
            return false;
        }
        return true;
    }
    case POLICY_MATCH_SUFFIX:
        for (size_t i = 0; i < flen; i++) {
            if (!(ident_char(frag[i]) || frag[i] == '.' || frag[i] == '/') ||
                (frag[i] == '/' && i + 1 < flen && frag[i + 1] == '/')) {
                verr(c, n,
                     "invalid principal suffix %s: only [A-Za-z0-9._-] segments separated by "
                     "single \"/\" are allowed",
                     quote(q, sizeof(q), s, len));
                return false;
            }
        }
        return true;
    default: return false;
    }
}

/* Validates the literal part of a pattern for field kind f. */
static bool check_fragment(vctx *c, const ward_node *n, vfield f, const char *s, size_t len,
                           policy_match_kind kind, size_t off, size_t flen)
{
    char q[256];
    const char *frag = s + off;
    switch (f) {
    case VF_PRINCIPAL: return check_principal(c, n, s, len, kind, off, flen);
    case VF_NAMESPACE:
        for (size_t i = 0; i < flen; i++) {
            if (!ns_char(frag[i])) {
                verr(c, n, "invalid namespace %s: only [A-Za-z0-9._-] is allowed",
                     quote(q, sizeof(q), s, len));
                return false;
            }
        }
        return true;
    case VF_TRUST_DOMAIN:
        if (kind != POLICY_MATCH_ANY && !ward_spiffe_td_valid(frag, flen)) {
            verr(c, n, "invalid trust domain %s: must be 1..255 characters of [a-z0-9._-]",
                 quote(q, sizeof(q), s, len));
            return false;
        }
        return true;
    case VF_METHOD:
        for (size_t i = 0; i < flen; i++) {
            if (frag[i] >= 'a' && frag[i] <= 'z') {
                verr(c, n, "method %s must be uppercase (methods match case-sensitively)",
                     quote(q, sizeof(q), s, len));
                return false;
            }
            if (!tchar(frag[i])) {
                verr(c, n, "invalid method %s: not an HTTP token", quote(q, sizeof(q), s, len));
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
                verr(c, n,
                     "invalid host %s: only letters, digits, '.', '-', '_', ':' and '[ ]' are "
                     "allowed",
                     quote(q, sizeof(q), s, len));
                return false;
            }
        }
        return true;
    case VF_PATH:
        if (memchr(s, '\0', len) != NULL) {
            verr(c, n, "path %s must not contain NUL bytes", quote(q, sizeof(q), s, len));
            return false;
        }
        if (memchr(s, '?', len) != NULL) {
            verr(c, n, "path %s must not contain \"?\" (paths are matched without the query; "
                       "use request.query)",
                 quote(q, sizeof(q), s, len));
            return false;
        }
        if ((kind == POLICY_MATCH_EXACT || kind == POLICY_MATCH_PREFIX) && frag[0] != '/') {
            verr(c, n, "path %s must start with \"/\" (or be \"*\" or \"*suffix\")",
                 quote(q, sizeof(q), s, len));
            return false;
        }
        return true;
    default: return true;
    }
}

/* One value of a pattern list; on error m->value stays NULL. */
static void parse_value(vctx *c, const ward_node *n, vfield f, policy_match *m)
{
    m->pos = node_pos(c, n);
    if (f == VF_PATH && n->kind == WARD_NODE_MAP) {
        parse_regex(c, n, m);
        return;
    }
    if (f == VF_BOOL) {
        bool b = false;
        bool ok = is_bool(n, &b);
        if (!ok && n->kind == WARD_NODE_SCALAR && (scalar_is(n, "true") || scalar_is(n, "false"))) {
            ok = true;
            b = scalar_is(n, "true");
        }
        if (ok) {
            m->kind = POLICY_MATCH_EXACT;
            m->value = vdup(c, b ? "true" : "false", b ? 4 : 5);
            m->len = b ? 4 : 5;
        } else {
            verr(c, n, "expected true or false, got %s", describe(n));
        }
        return;
    }
    if (f == VF_PORT) {
        unsigned port;
        if (n->kind == WARD_NODE_SCALAR && scalar_is(n, "*")) {
            m->kind = POLICY_MATCH_ANY;
            m->value = vdup(c, "", 0);
            return;
        }
        if (!parse_port_scalar(c, n, &port))
            return;
        char tmp[16];
        int tl = snprintf(tmp, sizeof(tmp), "%u", port);
        m->kind = POLICY_MATCH_EXACT;
        m->value = vdup(c, tmp, (size_t)tl);
        m->len = (size_t)tl;
        return;
    }
    const char *s;
    size_t len;
    if (!get_str(c, n, &s, &len))
        return;
    if (f == VF_CIDR) {
        ward_cidr cidr;
        ward_err err;
        ward_err_clear(&err);
        char q[256];
        if (len == 0) {
            verr(c, n, "must not be empty");
            return;
        }
        if (ward_cidr_parse(s, len, &cidr, &err) < 0) {
            verr(c, n, "invalid CIDR block %s: %s", quote(q, sizeof(q), s, len), err.msg);
            return;
        }
        m->kind = POLICY_MATCH_CIDR;
        m->value = vdup(c, s, len);
        m->len = len;
        return;
    }
    if (f == VF_PATH && len > 0 && (memchr(s, '{', len) != NULL || memchr(s, '}', len) != NULL)) {
        if (!check_fragment(c, n, f, s, len, POLICY_MATCH_TEMPLATE, 0, len) ||
            !check_template(c, n, s, len))
            return;
        m->kind = POLICY_MATCH_TEMPLATE;
        m->value = vdup(c, s, len);
        m->len = len;
        return;
    }
    policy_match_kind kind;
    size_t off, flen;
    if (!split_pattern(c, n, s, len, &kind, &off, &flen) ||
        !check_fragment(c, n, f, s, len, kind, off, flen))
        return;
    m->kind = kind;
    m->value = vdup(c, s + off, flen);
    m->len = flen;
    if (f == VF_HOST && m->value != NULL)
        for (size_t i = 0; i < flen; i++)
            if (m->value[i] >= 'A' && m->value[i] <= 'Z')
                m->value[i] = (char)(m->value[i] - 'A' + 'a');
}

/* A list-valued field `key` of `map` (absent = no constraint). */
static void parse_list(vctx *c, const ward_node *map, const char *key, vfield f,
                       policy_matches *out)
{
    const ward_node *n = ward_node_get(map, key);
    if (n == NULL)
        return;
    size_t old = push(c, key);
    out->present = true;
    out->pos = node_pos(c, n);
    if (!expect_list(c, n))
        goto out;
    if (n->n == 0) {
        verr(c, n, "must not be empty (omit the field for no constraint)");
        goto out;
    }
    if (n->n > POLICY_MAX_LIST) {
        verr(c, n, "too many values (%zu, limit %d)", n->n, POLICY_MAX_LIST);
        goto out;
    }
    out->v = vcalloc(c, n->n, sizeof(*out->v));
    if (out->v == NULL)
        goto out;
    out->n = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t o2 = push_idx(c, i);
        parse_value(c, n->items[i], f, &out->v[i]);
        pop(c, o2);
    }
out:
    pop(c, old);
}

static void parse_ports(vctx *c, const ward_node *map, const char *key, policy_ports *out)
{
    const ward_node *n = ward_node_get(map, key);
    if (n == NULL)
        return;
    size_t old = push(c, key);
    out->present = true;
    out->pos = node_pos(c, n);
    if (!expect_list(c, n))
        goto out;
    if (n->n == 0) {
        verr(c, n, "must not be empty (omit the field for no constraint)");
        goto out;
    }
    if (n->n > POLICY_MAX_LIST) {
        verr(c, n, "too many values (%zu, limit %d)", n->n, POLICY_MAX_LIST);
        goto out;
    }
    out->v = vcalloc(c, n->n, sizeof(*out->v));
    if (out->v == NULL)
        goto out;
    out->n = n->n;
    for (size_t i = 0; i < n->n; i++) {
        size_t o2 = push_idx(c, i);
        parse_port_scalar(c, n->items[i], &out->v[i]);
        pop(c, o2);
    }
out:
    pop(c, old);
}

/* ---- rules ---------------------------------------------------------------------- */

static const char *const source_fields[] = {"principals",   "notPrincipals",   "namespaces",
                                            "notNamespaces", "trustDomains",   "notTrustDomains",
                                            "ipBlocks",     "notIpBlocks",     NULL};
static const char *const operation_fields[] = {"methods", "notMethods", "hosts", "notHosts",
                                               "ports",   "notPorts",   "paths", "notPaths",
                                               NULL};

static void parse_source(vctx *c, const ward_node *n, policy_source *s)
{
    s->pos = node_pos(c, n);
    if (!expect_map(c, n))
        return;
    check_fields(c, n, source_fields);
    if (n->n == 0) {
        char list[512];
        join_names(list, sizeof(list), source_fields);
        verr(c, n, "an empty source matches nothing useful; set at least one of: %s", list);
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

static void parse_operation(vctx *c, const ward_node *n, policy_operation *o)
{
    o->pos = node_pos(c, n);
    if (!expect_map(c, n))
        return;
    check_fields(c, n, operation_fields);
    if (n->n == 0) {
        char list[512];
        join_names(list, sizeof(list), operation_fields);
        verr(c, n, "an empty operation matches nothing useful; set at least one of: %s", list);
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
static vfield parse_attr_key(vctx *c, const ward_node *n, policy_condition *k, bool *ok)
{
    static const char hdr[] = "request.headers[";
    const size_t hl = sizeof(hdr) - 1;
    const char *s;
    size_t len;
    char q[256];
    *ok = false;
    if (!get_str(c, n, &s, &len))
        return VF_GENERIC;
    if (len > hl && memcmp(s, hdr, hl) == 0 && s[len - 1] == ']') {
        const char *name = s + hl;
        size_t nl = len - hl - 1;
        bool valid = nl > 0;
        for (size_t i = 0; i < nl && valid; i++)
            valid = tchar(name[i]);
        if (!valid) {
            verr(c, n, "invalid header name %s: must be an HTTP token",
                 quote(q, sizeof(q), name, nl));
            return VF_GENERIC;
        }
        k->attr = POLICY_ATTR_REQUEST_HEADER;
        k->header = vdup(c, name, nl);
        if (k->header != NULL)
            for (size_t i = 0; i < nl; i++)
                if (k->header[i] >= 'A' && k->header[i] <= 'Z')
                    k->header[i] = (char)(k->header[i] - 'A' + 'a');
        *ok = true;
        return VF_GENERIC;
    }
    if (scalar_is(n, "request.headers") || (len >= hl && memcmp(s, hdr, hl) == 0)) {
        verr(c, n, "write request.headers[<name>] with a header name, as in "
                   "request.headers[x-tenant]");
        return VF_GENERIC;
    }
    for (size_t i = 0; i < N_ATTRS; i++) {
        if (attrs[i].attr != POLICY_ATTR_REQUEST_HEADER && scalar_is(n, attrs[i].name)) {
            k->attr = attrs[i].attr;
            *ok = true;
            return attrs[i].field;
        }
    }
    const char *names[N_ATTRS + 1];
    for (size_t i = 0; i < N_ATTRS; i++)
        names[i] = attrs[i].attr == POLICY_ATTR_REQUEST_HEADER ? "request.headers[<name>]"
                                                               : attrs[i].name;
    names[N_ATTRS] = NULL;
    char list[512], hint[128] = "";
    join_names(list, sizeof(list), names);
    const char *near = closest(s, len, names);
    if (near == NULL && len >= 14 && memcmp(s, "request.header", 14) == 0)
        near = "request.headers[<name>]";
    if (near != NULL)
        snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)", near);
    verr(c, n, "unknown attribute %s%s; known: %s", quote(q, sizeof(q), s, len), hint, list);
    return VF_GENERIC;
}

static void parse_condition(vctx *c, const ward_node *n, policy_condition *k)
{
    static const char *const fields[] = {"key", "values", "notValues", "lua", NULL};
    k->pos = node_pos(c, n);
    if (!expect_map(c, n))
        return;
    check_fields(c, n, fields);
    const ward_node *lua = ward_node_get(n, "lua");
    const ward_node *key = ward_node_get(n, "key");
    const ward_node *vals = ward_node_get(n, "values");
    const ward_node *nvals = ward_node_get(n, "notValues");
    if (lua != NULL) {
        k->is_lua = true;
        if (key || vals || nvals)
            verr(c, n, "lua cannot be combined with key, values or notValues");
        size_t old = push(c, "lua");
        const char *s;
        size_t len;
        ward_err why;
        if (get_str(c, lua, &s, &len)) {
            if (len == 0)
                verr(c, lua, "must not be empty");
            else if (memchr(s, '\0', len) != NULL)
                verr(c, lua, "must not contain NUL bytes");
            else if (len > POLICY_MAX_LUA)
                verr(c, lua, "too long (%zu bytes, limit %d)", len, POLICY_MAX_LUA);
            else if (wlua_condition_check(s, len, &why) < 0)
                verr(c, lua, "invalid Lua condition: %s", why.msg);
            else
                k->lua = vdup(c, s, len);
        }
        pop(c, old);
        return;
    }
    vfield f = VF_GENERIC;
    if (key == NULL) {
        missing(c, n, "key", " (a condition is {key, values/notValues} or {lua})");
    } else {
        bool ok;
        size_t old = push(c, "key");
        f = parse_attr_key(c, key, k, &ok);
        pop(c, old);
    }
    if (vals == NULL && nvals == NULL)
        verr(c, n, "needs values or notValues");
    parse_list(c, n, "values", f, &k->values);
    parse_list(c, n, "notValues", f, &k->not_values);
}

/* from / to / when: a non-empty list of at most POLICY_MAX_LIST items. */
static const ward_node *rule_list(vctx *c, const ward_node *rule, const char *key,
                                  const char *omit_hint, size_t *count)
{
    *count = 0;
    const ward_node *n = ward_node_get(rule, key);
    if (n == NULL)
        return NULL;
    size_t old = push(c, key);
    const ward_node *res = NULL;
    if (!expect_list(c, n))
        goto out;
    if (n->n == 0) {
        verr(c, n, "must not be empty (omit %s %s)", key, omit_hint);
        goto out;
    }
    if (n->n > POLICY_MAX_LIST) {
        verr(c, n, "too many items (%zu, limit %d)", n->n, POLICY_MAX_LIST);
        goto out;
    }
    *count = n->n;
    res = n;
out:
    pop(c, old);
    return res;
}

static void parse_rule(vctx *c, const ward_node *n, policy_rule *r)
{
    static const char *const fields[] = {"from", "to", "when", NULL};
    r->pos = node_pos(c, n);
    if (!expect_map(c, n))
        return;
    check_fields(c, n, fields);
    size_t cnt, old;
    const ward_node *l;

    r->from_present = ward_node_get(n, "from") != NULL;
    if ((l = rule_list(c, n, "from", "to match any source", &cnt)) != NULL &&
        (r->from = vcalloc(c, cnt, sizeof(*r->from))) != NULL) {
        r->n_from = cnt;
        old = push(c, "from");
        for (size_t i = 0; i < cnt; i++) {
            size_t o2 = push_idx(c, i);
            parse_source(c, l->items[i], &r->from[i]);
            pop(c, o2);
        }
        pop(c, old);
    }
    r->to_present = ward_node_get(n, "to") != NULL;
    if ((l = rule_list(c, n, "to", "to match any operation", &cnt)) != NULL &&
        (r->to = vcalloc(c, cnt, sizeof(*r->to))) != NULL) {
        r->n_to = cnt;
        old = push(c, "to");
        for (size_t i = 0; i < cnt; i++) {
            size_t o2 = push_idx(c, i);
            parse_operation(c, l->items[i], &r->to[i]);
            pop(c, o2);
        }
        pop(c, old);
    }
    if ((l = rule_list(c, n, "when", "for no conditions", &cnt)) != NULL &&
        (r->when = vcalloc(c, cnt, sizeof(*r->when))) != NULL) {
        r->n_when = cnt;
        old = push(c, "when");
        for (size_t i = 0; i < cnt; i++) {
            size_t o2 = push_idx(c, i);
            parse_condition(c, l->items[i], &r->when[i]);
            pop(c, o2);
        }
        pop(c, old);
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

static char *parse_name(vctx *c, const ward_node *n)
{
    const char *s;
    size_t len;
    char q[256];
    if (!get_str(c, n, &s, &len))
        return NULL;
    if (len == 0) {
        verr(c, n, "must not be empty");
        return NULL;
    }
    if (!dns_name_ok(s, len)) {
        verr(c, n,
             "invalid name %s: use lowercase letters, digits, '-' and '.', starting and ending "
             "with a letter or digit (at most %d characters)",
             quote(q, sizeof(q), s, len), POLICY_MAX_NAME);
        return NULL;
    }
    return vdup(c, s, len);
}

static void parse_metadata(vctx *c, const ward_node *n, policy_authz *a, policy_pos *name_pos)
{
    static const char *const fields[] = {"name", "namespace", NULL};
    if (!expect_map(c, n))
        return;
    check_fields(c, n, fields);
    const ward_node *name = ward_node_get(n, "name");
    const ward_node *ns = ward_node_get(n, "namespace");
    if (name == NULL) {
        missing(c, n, "name", "");
    } else {
        size_t old = push(c, "name");
        a->name = parse_name(c, name);
        *name_pos = node_pos(c, name);
        pop(c, old);
    }
    if (ns != NULL) {
        size_t old = push(c, "namespace");
        a->ns = parse_name(c, ns);
        pop(c, old);
    } else {
        a->ns = vdup(c, "default", 7);
    }
}

static void parse_selector(vctx *c, const ward_node *n, policy_authz *a)
{
    static const char *const fields[] = {"services", NULL};
    a->selector_present = true;
    if (!expect_map(c, n))
        return;
    check_fields(c, n, fields);
    const ward_node *sv = ward_node_get(n, "services");
    if (sv == NULL) {
        missing(c, n, "services", " (omit selector to select every service)");
        return;
    }
    size_t old = push(c, "services");
    if (!expect_list(c, sv))
        goto out;
    if (sv->n == 0) {
        verr(c, sv, "must not be empty (omit selector to select every service)");
        goto out;
    }
    if (sv->n > POLICY_MAX_LIST) {
        verr(c, sv, "too many values (%zu, limit %d)", sv->n, POLICY_MAX_LIST);
        goto out;
    }
    a->services = vcalloc(c, sv->n, sizeof(*a->services));
    if (a->services == NULL)
        goto out;
    a->n_services = sv->n;
    for (size_t i = 0; i < sv->n; i++) {
        size_t o2 = push_idx(c, i);
        const ward_node *it = sv->items[i];
        const char *s;
        size_t len;
        char q[256];
        if (get_str(c, it, &s, &len)) {
            bool bad = false;
            for (size_t j = 0; j < len && !bad; j++)
                bad = (unsigned char)s[j] <= 0x20 || s[j] == 0x7f;
            if (len == 0)
                verr(c, it, "must not be empty");
            else if (memchr(s, '*', len) != NULL)
                verr(c, it, "service names are exact, not patterns (omit selector to select "
                            "every service)");
            else if (bad)
                verr(c, it, "invalid service name %s: no spaces or control characters",
                     quote(q, sizeof(q), s, len));
            else
                a->services[i] = vdup(c, s, len);
        }
        pop(c, o2);
    }
out:
    pop(c, old);
}

static void parse_deny_response(vctx *c, const ward_node *n, policy_authz *a)
{
    static const char *const fields[] = {"status", "body", NULL};
    if (!expect_map(c, n))
        return;
    check_fields(c, n, fields);
    const ward_node *st = ward_node_get(n, "status");
    const ward_node *body = ward_node_get(n, "body");
    if (st == NULL && body == NULL)
        verr(c, n, "set status and/or body");
    if (st != NULL) {
        size_t old = push(c, "status");
        uint64_t v = 0;
        int shown = (int)(st->len > 20 ? 20 : st->len);
        if (st->kind != WARD_NODE_SCALAR || st->quoted || !is_number(st))
            verr(c, st, "expected an integer 400..599, got %s", describe(st));
        else if (ward_parse_u64(st->str, st->len, UINT64_MAX, &v) < 0)
            verr(c, st, "status %.*s is not an integer in 400..599", shown, st->str);
        else if (v < 400 || v > 599)
            verr(c, st, "status %.*s is out of range (400..599)", shown, st->str);
        else
            a->deny_status = (int)v;
        pop(c, old);
    }
    if (body != NULL) {
        size_t old = push(c, "body");
        const char *s;
        size_t len;
        if (get_str(c, body, &s, &len)) {
            if (len > POLICY_MAX_DENY_BODY)
                verr(c, body, "too long (%zu bytes, limit %d)", len, POLICY_MAX_DENY_BODY);
            else
                a->deny_body = vdup(c, s, len);
        }
        pop(c, old);
    }
}

static bool parse_enum(vctx *c, const ward_node *n, const char *const *names, int *out)
{
    const char *s;
    size_t len;
    if (!get_str(c, n, &s, &len))
        return false;
    for (int i = 0; names[i] != NULL; i++) {
        if (scalar_is(n, names[i])) {
            *out = i;
            return true;
        }
    }
    char q[256], list[128], hint[64] = "";
    join_names(list, sizeof(list), names);
    for (int i = 0; names[i] != NULL; i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], s, len) == 0)
            snprintf(hint, sizeof(hint), " (values are case-sensitive: %s)", names[i]);
    verr(c, n, "invalid value %s%s; allowed: %s", quote(q, sizeof(q), s, len), hint, list);
    return false;
}

static void parse_spec(vctx *c, const ward_node *n, policy_authz *a, size_t rules_left)
{
    static const char *const fields[] = {"selector", "action", "mode", "rules", "denyResponse",
                                         NULL};
    static const char *const actions[] = {"ALLOW", "DENY", "AUDIT", NULL};
    static const char *const modes[] = {"enforce", "dry-run", NULL};
    if (!expect_map(c, n))
        return;
    check_fields(c, n, fields);
    const ward_node *f;
    size_t old;
    a->action = POLICY_ALLOW;
    if ((f = ward_node_get(n, "selector")) != NULL) {
        old = push(c, "selector");
        parse_selector(c, f, a);
        pop(c, old);
    }
    if ((f = ward_node_get(n, "action")) != NULL) {
        int v;
        old = push(c, "action");
        if (parse_enum(c, f, actions, &v))
            a->action = v == 0 ? POLICY_ALLOW : v == 1 ? POLICY_DENY : POLICY_AUDIT;
        pop(c, old);
    }
    if ((f = ward_node_get(n, "mode")) != NULL) {
        int v;
        old = push(c, "mode");
        if (parse_enum(c, f, modes, &v))
            a->dry_run = v == 1;
        pop(c, old);
    }
    if ((f = ward_node_get(n, "denyResponse")) != NULL) {
        old = push(c, "denyResponse");
        if (a->action == POLICY_AUDIT)
            verr(c, f, "not allowed with action AUDIT (AUDIT policies never deny)");
        else
            parse_deny_response(c, f, a);
        pop(c, old);
    }
    if ((f = ward_node_get(n, "rules")) != NULL) {
        old = push(c, "rules");
        a->rules_present = true;
        if (!expect_list(c, f)) {
            /* reported */
        } else if (f->n > rules_left) {
            verr(c, f, "too many rules: the policy set would exceed %d rules", POLICY_MAX_RULES);
        } else if (f->n > 0 && (a->rules = vcalloc(c, f->n, sizeof(*a->rules))) != NULL) {
            a->n_rules = f->n;
            for (size_t i = 0; i < f->n; i++) {
                size_t o2 = push_idx(c, i);
                parse_rule(c, f->items[i], &a->rules[i]);
                pop(c, o2);
            }
        }
        pop(c, old);
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

int policy_doc_validate(const ward_node *root, const char *file, size_t rules_left,
                        ward_diag *diag, policy_doc_kind *kind, policy_authz **out,
                        policy_pos *name_pos)
{
    static const char *const fields[] = {"apiVersion", "kind", "metadata", "spec", NULL};
    *out = NULL;
    *kind = POLICY_DOC_INVALID;
    if (root->kind == WARD_NODE_SCALAR && is_null(root)) {
        *kind = POLICY_DOC_EMPTY;
        return 0;
    }
    vctx c;
    memset(&c, 0, sizeof(c));
    c.file = file;
    policy_authz *a = NULL;
    const ward_node *f;
    size_t old;
    if (root->kind != WARD_NODE_MAP) {
        verr(&c, root, "expected a map with apiVersion, kind, metadata and spec, got %s",
             describe(root));
        goto done;
    }

    old = push(&c, "apiVersion");
    if ((f = ward_node_get(root, "apiVersion")) == NULL) {
        verr(&c, root, "required field is missing (write apiVersion: " API_VERSION ")");
    } else {
        const char *s;
        size_t len;
        char q[256];
        if (get_str(&c, f, &s, &len) && !scalar_is(f, API_VERSION))
            verr(&c, f, "unsupported apiVersion %s (expected " API_VERSION ")",
                 quote(q, sizeof(q), s, len));
    }
    pop(&c, old);

    old = push(&c, "kind");
    bool kind_ok = false;
    if ((f = ward_node_get(root, "kind")) == NULL) {
        verr(&c, root, "required field is missing (supported kinds: " SUPPORTED_KINDS ")");
    } else {
        const char *s;
        size_t len;
        char q[256];
        if (!get_str(&c, f, &s, &len))
            kind_ok = false;
        else if (scalar_is(f, "AuthorizationPolicy"))
            kind_ok = true;
        else if (scalar_is(f, "Route"))
            verr(&c, f, "kind Route is not supported yet (supported kinds: " SUPPORTED_KINDS ")");
        else
            verr(&c, f, "unknown kind %s (supported kinds: " SUPPORTED_KINDS ")",
                 quote(q, sizeof(q), s, len));
    }
    pop(&c, old);
    if (!kind_ok)
        goto done;

    check_fields(&c, root, fields);
    a = vcalloc(&c, 1, sizeof(*a));
    if (a == NULL)
        goto done;
    a->pos = node_pos(&c, root);
    a->action = POLICY_ALLOW;
    *name_pos = node_pos(&c, root);

    old = push(&c, "metadata");
    if ((f = ward_node_get(root, "metadata")) == NULL)
        verr(&c, root, "required field is missing (metadata: {name: ..., namespace: ...})");
    else
        parse_metadata(&c, f, a, name_pos);
    pop(&c, old);

    old = push(&c, "spec");
    if ((f = ward_node_get(root, "spec")) == NULL)
        verr(&c, root, "required field is missing");
    else
        parse_spec(&c, f, a, rules_left);
    pop(&c, old);

    if (c.n_probs == 0 && c.rc == 0 && a->name != NULL && a->ns != NULL) {
        size_t nl = strlen(a->ns), ml = strlen(a->name);
        a->id = malloc(nl + ml + 2);
        if (a->id == NULL) {
            c.rc = WARD_ENOMEM;
        } else {
            memcpy(a->id, a->ns, nl);
            a->id[nl] = '/';
            memcpy(a->id + nl + 1, a->name, ml + 1);
        }
    }

done:;
    int rc = c.rc;
    bool bad = c.n_probs > 0 || rc < 0;
    vflush(&c, rc < 0 ? NULL : diag);
    if (bad) {
        policy_authz_free(a);
        return rc;
    }
    *kind = POLICY_DOC_AUTHZ;
    *out = a;
    return 0;
}
