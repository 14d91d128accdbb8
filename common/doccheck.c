/* doccheck.c - checking YAML/JSON documents: field paths, every problem at its position, types,
 * unknown keys */
#include "common/ward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes s as a double-quoted string with control bytes, quotes and
 * backslashes escaped; long values are cut with "...". */
const char *ward_quote(char *out, size_t size, const char *s, size_t len)
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

/* Records "path: message" at the position of `at`. */
void ward_docv_error(ward_docv *c, const ward_node *at, const char *fmt, ...)
{
    if (c->n_probs == c->cap_probs) {
        size_t cap = c->cap_probs ? c->cap_probs * 2 : 8;
        ward_docv_problem *np = realloc(c->probs, cap * sizeof(*np));
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
    c->probs[c->n_probs] =
        (ward_docv_problem){at ? at->line : 0, at ? at->col : 0, c->n_probs, full};
    c->n_probs++;
}

static int vprob_cmp(const void *a, const void *b)
{
    const ward_docv_problem *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Hands the problems to diag in document order. */
void ward_docv_flush(ward_docv *c, ward_diag *diag)
{
    if (c->n_probs > 1)
        qsort(c->probs, c->n_probs, sizeof(*c->probs), vprob_cmp);
    for (size_t i = 0; i < c->n_probs; i++) {
        if (diag != NULL)
            ward_diag_add(diag, c->file, c->probs[i].line, c->probs[i].col, "%s", c->probs[i].msg);
        free(c->probs[i].msg);
    }
    free(c->probs);
    c->probs = NULL;
    c->n_probs = c->cap_probs = 0;
}

static void path_append(ward_docv *c, const char *s)
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
size_t ward_docv_push_key(ward_docv *c, const char *key, size_t len)
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
        path_append(c, ward_quote(q, sizeof(q), key, len));
        path_append(c, "]");
    }
    return old;
}

size_t ward_docv_push(ward_docv *c, const char *key)
{
    return ward_docv_push_key(c, key, strlen(key));
}

size_t ward_docv_push_idx(ward_docv *c, size_t i)
{
    size_t old = c->plen;
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "[%zu]", i);
    path_append(c, tmp);
    return old;
}

void ward_docv_pop(ward_docv *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

char *ward_docv_dup(ward_docv *c, const char *s, size_t len)
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

void *ward_docv_calloc(ward_docv *c, size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL)
        c->rc = WARD_ENOMEM;
    return p;
}

/* ---- scalars and types ----------------------------------------------------- */

bool ward_node_is(const ward_node *n, const char *word)
{
    size_t len = strlen(word);
    return n->kind == WARD_NODE_SCALAR && n->len == len && memcmp(n->str, word, len) == 0;
}

/* A plain scalar YAML reads as null. */
bool ward_node_is_null(const ward_node *n)
{
    return n->kind == WARD_NODE_SCALAR && !n->quoted &&
           (n->len == 0 || ward_node_is(n, "~") || ward_node_is(n, "null") ||
            ward_node_is(n, "Null") || ward_node_is(n, "NULL"));
}

/* A plain scalar YAML 1.1 reads as a boolean (y/n excepted, as most parsers do). */
bool ward_node_is_bool(const ward_node *n, bool *val)
{
    static const char *const t[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const f[] = {"false", "False", "FALSE", "no", "No",
                                    "NO",    "off",   "Off",   "OFF"};
    if (n->kind != WARD_NODE_SCALAR || n->quoted)
        return false;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (ward_node_is(n, t[i])) {
            if (val)
                *val = true;
            return true;
        }
        if (ward_node_is(n, f[i])) {
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
bool ward_node_is_number(const ward_node *n)
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

const char *ward_node_describe(const ward_node *n)
{
    if (n->kind == WARD_NODE_MAP)
        return "a map";
    if (n->kind == WARD_NODE_SEQ)
        return "a list";
    if (ward_node_is_null(n))
        return "null";
    if (ward_node_is_bool(n, NULL))
        return "a boolean";
    if (ward_node_is_number(n))
        return "a number";
    return "a string";
}

bool ward_docv_expect_map(ward_docv *c, const ward_node *n)
{
    if (n->kind == WARD_NODE_MAP)
        return true;
    ward_docv_error(c, n, "expected a map, got %s", ward_node_describe(n));
    return false;
}

bool ward_docv_expect_list(ward_docv *c, const ward_node *n)
{
    if (n->kind == WARD_NODE_SEQ)
        return true;
    if (n->kind == WARD_NODE_SCALAR && !ward_node_is_null(n))
        ward_docv_error(c, n, "expected a list, got %s (write [value] for a single value)",
                        ward_node_describe(n));
    else
        ward_docv_error(c, n, "expected a list, got %s", ward_node_describe(n));
    return false;
}

/* Any scalar but an unquoted null or boolean reads as a string. */
bool ward_docv_get_str(ward_docv *c, const ward_node *n, const char **s, size_t *len)
{
    if (n->kind != WARD_NODE_SCALAR || ward_node_is_null(n)) {
        ward_docv_error(c, n, "expected a string, got %s", ward_node_describe(n));
        return false;
    }
    if (ward_node_is_bool(n, NULL)) {
        char q[256];
        ward_docv_error(c, n, "expected a string, got the boolean %.*s (quote it: %s)",
                        (int)n->len, n->str, ward_quote(q, sizeof(q), n->str, n->len));
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

const char *ward_closest_name(const char *s, size_t len, const char *const *names)
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

void ward_join_names(char *out, size_t size, const char *const *names)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; names[i] != NULL && o < size; i++)
        o += (size_t)snprintf(out + o, size - o, "%s%s", i ? ", " : "", names[i]);
}

/* Reports every key of `map` not in `allowed` (NULL-terminated). */
void ward_docv_check_fields(ward_docv *c, const ward_node *map, const char *const *allowed,
                            const char *(*hint_of)(const ward_node *key))
{
    for (size_t i = 0; i < map->n; i++) {
        const ward_node *k = map->pairs[i].key;
        bool ok = false;
        for (size_t j = 0; allowed[j] != NULL && !ok; j++)
            ok = ward_node_is(k, allowed[j]);
        if (ok)
            continue;
        char list[512], hint[160] = "";
        ward_join_names(list, sizeof(list), allowed);
        const char *near = ward_closest_name(k->str, k->len, allowed);
        if (near != NULL)
            snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)", near);
        else if (hint_of != NULL && hint_of(k) != NULL)
            snprintf(hint, sizeof(hint), " (%s)", hint_of(k));
        size_t old = ward_docv_push_key(c, k->str, k->len);
        ward_docv_error(c, k, "unknown %s%s; allowed: %s", c->noun ? c->noun : "field", hint, list);
        ward_docv_pop(c, old);
    }
}

void ward_docv_missing(ward_docv *c, const ward_node *map, const char *key, const char *extra)
{
    size_t old = ward_docv_push(c, key);
    ward_docv_error(c, map, "required %s is missing%s", c->noun ? c->noun : "field", extra);
    ward_docv_pop(c, old);
}
