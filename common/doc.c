/* doc.c - YAML/JSON streams parsed into bounded node trees with 1-based positions (libyaml events) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "common/ward.h"

#define DOC_MAX_DEPTH 64
#define DOC_MAX_NODES 1000000u
#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

/* A problem found while parsing; flushed to the diag sorted by position. */
typedef struct doc_problem {
    int line, col;
    size_t seq;
    char *msg;
} doc_problem;

typedef struct doc_frame {
    ward_node *node;
    size_t cap;
    ward_node *key; /* MAP: the key waiting for its value */
} doc_frame;

typedef struct doc_parser {
    const char *name;
    const char *data;
    size_t len;
    ward_docs docs;
    size_t docs_cap;
    ward_node *root;
    doc_frame stack[DOC_MAX_DEPTH];
    int depth;
    size_t nodes;
    doc_problem *probs;
    size_t n_probs, cap_probs;
    int rc; /* worst error so far (0 = none) */
    bool fatal;
} doc_parser;

/* ---- tree ------------------------------------------------------------------ */

static void node_free(ward_node *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n; i++) {
        if (n->kind == WARD_NODE_SEQ) {
            node_free(n->items[i]);
        } else if (n->kind == WARD_NODE_MAP) {
            node_free(n->pairs[i].key);
            node_free(n->pairs[i].value);
        }
    }
    free(n->items);
    free(n->pairs);
    free(n->str);
    free(n);
}

void ward_docs_dispose(ward_docs *docs)
{
    if (docs == NULL)
        return;
    for (size_t i = 0; i < docs->n; i++)
        node_free(docs->docs[i]);
    free(docs->docs);
    docs->docs = NULL;
    docs->n = 0;
}

const ward_node *ward_node_get(const ward_node *map, const char *key)
{
    if (map == NULL || key == NULL || map->kind != WARD_NODE_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; i < map->n; i++) {
        const ward_node *k = map->pairs[i].key;
        if (k != NULL && k->kind == WARD_NODE_SCALAR && k->len == klen &&
            memcmp(k->str, key, klen) == 0)
            return map->pairs[i].value;
    }
    return NULL;
}

/* ---- problems ---------------------------------------------------------------- */

static void problem(doc_parser *p, int rc, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void problem(doc_parser *p, int rc, int line, int col, const char *fmt, ...)
{
    if (p->rc == 0 || p->rc == WARD_ESYNTAX)
        p->rc = rc;
    if (p->n_probs == p->cap_probs) {
        size_t cap = p->cap_probs ? p->cap_probs * 2 : 8;
        doc_problem *np = realloc(p->probs, cap * sizeof(*np));
        if (np == NULL) {
            p->rc = WARD_ENOMEM;
            return;
        }
        p->probs = np;
        p->cap_probs = cap;
    }
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char *msg = strdup(buf);
    if (msg == NULL) {
        p->rc = WARD_ENOMEM;
        return;
    }
    p->probs[p->n_probs] = (doc_problem){line, col, p->n_probs, msg};
    p->n_probs++;
}

static int problem_cmp(const void *a, const void *b)
{
    const doc_problem *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void problems_flush(doc_parser *p, ward_diag *diag)
{
    if (p->n_probs > 1)
        qsort(p->probs, p->n_probs, sizeof(*p->probs), problem_cmp);
    for (size_t i = 0; i < p->n_probs; i++) {
        if (diag != NULL)
            ward_diag_add(diag, p->name, p->probs[i].line, p->probs[i].col, "%s",
                          p->probs[i].msg);
        free(p->probs[i].msg);
    }
    free(p->probs);
    p->probs = NULL;
    p->n_probs = p->cap_probs = 0;
}

/* Appends s (at most max bytes of it) to out as a double-quoted, escaped string. */
static void quote_bytes(char *out, size_t size, const char *s, size_t len, size_t max)
{
    size_t o = 0;
    if (size < 8)
        return;
    out[o++] = '"';
    for (size_t i = 0; i < len && i < max && o + 6 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (len > max && o + 5 < size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* ---- building ------------------------------------------------------------------ */

static int pos_line(const yaml_mark_t *m)
{
    return m->line >= (size_t)0x7fffffff ? 0x7fffffff : (int)m->line + 1;
}

static int pos_col(const yaml_mark_t *m)
{
    return m->column >= (size_t)0x7fffffff ? 0x7fffffff : (int)m->column + 1;
}

/* Shows a resolved tag the way it was probably written. */
static void tag_display(char *out, size_t size, const char *tag)
{
    size_t plen = strlen(YAML_TAG_PREFIX);
    if (strncmp(tag, YAML_TAG_PREFIX, plen) == 0)
        snprintf(out, size, "!!%s", tag + plen);
    else
        quote_bytes(out, size, tag, strlen(tag), 100);
}

enum { TAG_NONE, TAG_STR, TAG_OTHER_SCALAR, TAG_SEQ, TAG_MAP, TAG_BAD };

static int tag_class(const char *tag)
{
    if (tag == NULL || strcmp(tag, "!") == 0)
        return TAG_NONE;
    size_t plen = strlen(YAML_TAG_PREFIX);
    if (strncmp(tag, YAML_TAG_PREFIX, plen) != 0)
        return TAG_BAD;
    const char *t = tag + plen;
    if (strcmp(t, "str") == 0)
        return TAG_STR;
    if (strcmp(t, "int") == 0 || strcmp(t, "float") == 0 || strcmp(t, "bool") == 0 ||
        strcmp(t, "null") == 0)
        return TAG_OTHER_SCALAR;
    if (strcmp(t, "seq") == 0)
        return TAG_SEQ;
    if (strcmp(t, "map") == 0)
        return TAG_MAP;
    return TAG_BAD;
}

/* Checks the anchor and tag of a node event; returns the tag class. */
static int check_props(doc_parser *p, const yaml_mark_t *m, const yaml_char_t *anchor,
                       const yaml_char_t *tag, ward_node_kind kind)
{
    int line = pos_line(m), col = pos_col(m);
    if (anchor != NULL) {
        problem(p, WARD_ESYNTAX, line, col,
                "anchor &%.64s is not supported (anchors and aliases are refused)",
                (const char *)anchor);
    }
    int cls = tag_class((const char *)tag);
    bool ok;
    switch (cls) {
    case TAG_NONE: ok = true; break;
    case TAG_STR:
    case TAG_OTHER_SCALAR: ok = kind == WARD_NODE_SCALAR; break;
    case TAG_SEQ: ok = kind == WARD_NODE_SEQ; break;
    case TAG_MAP: ok = kind == WARD_NODE_MAP; break;
    default: ok = false; break;
    }
    if (!ok) {
        char t[160];
        tag_display(t, sizeof(t), (const char *)tag);
        if (cls == TAG_BAD)
            problem(p, WARD_ESYNTAX, line, col,
                    "tag %s is not supported (only !!str, !!int, !!float, !!bool, !!null, !!seq, !!map)",
                    t);
        else
            problem(p, WARD_ESYNTAX, line, col, "tag %s does not fit a %s", t,
                    kind == WARD_NODE_SCALAR ? "scalar"
                    : kind == WARD_NODE_SEQ  ? "sequence"
                                             : "mapping");
    }
    return cls;
}

static ward_node *node_new(doc_parser *p, ward_node_kind kind, const yaml_mark_t *m)
{
    if (p->nodes >= DOC_MAX_NODES) {
        problem(p, WARD_ELIMIT, pos_line(m), pos_col(m), "too many nodes (limit %u)",
                DOC_MAX_NODES);
        p->fatal = true;
        return NULL;
    }
    ward_node *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        p->rc = WARD_ENOMEM;
        p->fatal = true;
        return NULL;
    }
    p->nodes++;
    n->kind = kind;
    n->line = pos_line(m);
    n->col = pos_col(m);
    return n;
}

/* Links a new node into the current container (or makes it the document root).
 * On failure the node is freed. */
static int node_link(doc_parser *p, ward_node *n)
{
    if (p->depth == 0) {
        node_free(p->root);
        p->root = n;
        return 0;
    }
    doc_frame *f = &p->stack[p->depth - 1];
    ward_node *c = f->node;
    if (c->kind == WARD_NODE_SEQ) {
        if (c->n == f->cap) {
            size_t cap = f->cap ? f->cap * 2 : 4;
            ward_node **ni = realloc(c->items, cap * sizeof(*ni));
            if (ni == NULL)
                goto nomem;
            c->items = ni;
            f->cap = cap;
        }
        c->items[c->n++] = n;
        return 0;
    }
    if (f->key == NULL) {
        if (n->kind != WARD_NODE_SCALAR)
            problem(p, WARD_ESYNTAX, n->line, n->col, "map keys must be scalars, not %s",
                    n->kind == WARD_NODE_SEQ ? "sequences" : "mappings");
        f->key = n;
        return 0;
    }
    if (c->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 4;
        ward_node_pair *np = realloc(c->pairs, cap * sizeof(*np));
        if (np == NULL)
            goto nomem;
        c->pairs = np;
        f->cap = cap;
    }
    c->pairs[c->n].key = f->key;
    c->pairs[c->n].value = n;
    c->n++;
    f->key = NULL;
    return 0;
nomem:
    node_free(n);
    p->rc = WARD_ENOMEM;
    p->fatal = true;
    return WARD_ENOMEM;
}

typedef struct key_ref {
    const ward_node *key;
    size_t idx;
} key_ref;

static int key_ref_cmp(const void *a, const void *b)
{
    const key_ref *x = a, *y = b;
    size_t n = x->key->len < y->key->len ? x->key->len : y->key->len;
    int c = memcmp(x->key->str, y->key->str, n);
    if (c != 0)
        return c;
    if (x->key->len != y->key->len)
        return x->key->len < y->key->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Reports every key that repeats an earlier key of the same map. */
static void check_dup_keys(doc_parser *p, const ward_node *map)
{
    if (map->n < 2)
        return;
    key_ref *refs = malloc(map->n * sizeof(*refs));
    if (refs == NULL) {
        p->rc = WARD_ENOMEM;
        p->fatal = true;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < map->n; i++)
        if (map->pairs[i].key->kind == WARD_NODE_SCALAR)
            refs[n++] = (key_ref){map->pairs[i].key, i};
    qsort(refs, n, sizeof(*refs), key_ref_cmp);
    size_t first = 0;
    for (size_t i = 1; i < n; i++) {
        const ward_node *a = refs[first].key, *b = refs[i].key;
        if (a->len == b->len && memcmp(a->str, b->str, a->len) == 0) {
            char k[160];
            quote_bytes(k, sizeof(k), b->str, b->len, 64);
            problem(p, WARD_ESYNTAX, b->line, b->col,
                    "duplicate key %s (first defined at line %d, column %d)", k, a->line,
                    a->col);
        } else {
            first = i;
        }
    }
    free(refs);
}

static int push_doc(doc_parser *p)
{
    if (p->docs.n == p->docs_cap) {
        size_t cap = p->docs_cap ? p->docs_cap * 2 : 4;
        ward_node **nd = realloc(p->docs.docs, cap * sizeof(*nd));
        if (nd == NULL)
            return WARD_ENOMEM;
        p->docs.docs = nd;
        p->docs_cap = cap;
    }
    p->docs.docs[p->docs.n++] = p->root;
    p->root = NULL;
    return 0;
}

static void on_start(doc_parser *p, const yaml_event_t *ev, ward_node_kind kind)
{
    const yaml_char_t *anchor, *tag;
    if (kind == WARD_NODE_SEQ) {
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
    } else {
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
    }
    check_props(p, &ev->start_mark, anchor, tag, kind);
    if (p->depth >= DOC_MAX_DEPTH) {
        problem(p, WARD_ELIMIT, pos_line(&ev->start_mark), pos_col(&ev->start_mark),
                "nesting too deep (limit %d)", DOC_MAX_DEPTH);
        p->fatal = true;
        return;
    }
    ward_node *n = node_new(p, kind, &ev->start_mark);
    if (n == NULL || node_link(p, n) < 0)
        return;
    p->stack[p->depth++] = (doc_frame){n, 0, NULL};
}

static void on_end(doc_parser *p)
{
    if (p->depth == 0)
        return;
    doc_frame *f = &p->stack[p->depth - 1];
    if (f->key != NULL) { /* cannot happen with libyaml, but never leak */
        node_free(f->key);
        f->key = NULL;
    }
    if (f->node->kind == WARD_NODE_MAP)
        check_dup_keys(p, f->node);
    p->depth--;
}

static void on_scalar(doc_parser *p, const yaml_event_t *ev)
{
    int cls = check_props(p, &ev->start_mark, ev->data.scalar.anchor, ev->data.scalar.tag,
                          WARD_NODE_SCALAR);
    ward_node *n = node_new(p, WARD_NODE_SCALAR, &ev->start_mark);
    if (n == NULL)
        return;
    size_t len = ev->data.scalar.length;
    n->str = malloc(len + 1);
    if (n->str == NULL) {
        node_free(n);
        p->rc = WARD_ENOMEM;
        p->fatal = true;
        return;
    }
    if (len > 0)
        memcpy(n->str, ev->data.scalar.value, len);
    n->str[len] = '\0';
    n->len = len;
    if (cls == TAG_STR)
        n->quoted = true;
    else if (cls == TAG_NONE)
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
                    ev->data.scalar.style != YAML_ANY_SCALAR_STYLE;
    node_link(p, n);
}

static void on_alias(doc_parser *p, const yaml_event_t *ev)
{
    problem(p, WARD_ESYNTAX, pos_line(&ev->start_mark), pos_col(&ev->start_mark),
            "alias *%.64s is not supported (anchors and aliases are refused)",
            (const char *)ev->data.alias.anchor);
    /* keep the tree shape so later problems are still found */
    ward_node *n = node_new(p, WARD_NODE_SCALAR, &ev->start_mark);
    if (n == NULL)
        return;
    n->str = calloc(1, 1);
    if (n->str == NULL) {
        node_free(n);
        p->rc = WARD_ENOMEM;
        p->fatal = true;
        return;
    }
    node_link(p, n);
}

/* Turns a libyaml error into a positioned problem. */
static void parser_problem(doc_parser *p, const yaml_parser_t *yp)
{
    if (yp->error == YAML_MEMORY_ERROR) {
        p->rc = WARD_ENOMEM;
        return;
    }
    const char *what = yp->problem ? yp->problem : "malformed document";
    if (yp->error == YAML_READER_ERROR) {
        /* only a byte offset: count lines up to it */
        size_t off = yp->problem_offset < p->len ? yp->problem_offset : p->len;
        int line = 1, col = 1;
        for (size_t i = 0; i < off; i++) {
            if (p->data[i] == '\n') {
                line++;
                col = 1;
            } else if (((unsigned char)p->data[i] & 0xc0) != 0x80) {
                col++;
            }
        }
        if (yp->problem_value != -1)
            problem(p, WARD_ESYNTAX, line, col, "%s (byte 0x%02x at offset %zu)", what,
                    (unsigned)yp->problem_value & 0xffu, yp->problem_offset);
        else
            problem(p, WARD_ESYNTAX, line, col, "%s (at offset %zu)", what, yp->problem_offset);
        return;
    }
    int line = pos_line(&yp->problem_mark), col = pos_col(&yp->problem_mark);
    if (yp->context != NULL &&
        (yp->context_mark.line != yp->problem_mark.line ||
         yp->context_mark.column != yp->problem_mark.column))
        problem(p, WARD_ESYNTAX, line, col, "%s (%s at line %d, column %d)", what, yp->context,
                pos_line(&yp->context_mark), pos_col(&yp->context_mark));
    else if (yp->context != NULL)
        problem(p, WARD_ESYNTAX, line, col, "%s (%s)", what, yp->context);
    else
        problem(p, WARD_ESYNTAX, line, col, "%s", what);
}

int ward_docs_parse(const char *name, const char *data, size_t len, ward_docs *out,
                    ward_diag *diag)
{
    if (out == NULL)
        return WARD_EINVAL;
    out->docs = NULL;
    out->n = 0;
    if (data == NULL && len > 0)
        return WARD_EINVAL;

    doc_parser p;
    memset(&p, 0, sizeof(p));
    p.name = name ? name : "<input>";
    p.data = data;
    p.len = len;

    yaml_parser_t yp;
    if (!yaml_parser_initialize(&yp))
        return WARD_ENOMEM;
    yaml_parser_set_input_string(&yp, (const unsigned char *)(data ? data : ""), len);

    bool done = false;
    while (!done && !p.fatal && p.rc != WARD_ENOMEM) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&yp, &ev)) {
            parser_problem(&p, &yp);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: done = true; break;
        case YAML_DOCUMENT_END_EVENT:
            if (p.root != NULL && push_doc(&p) < 0) {
                p.rc = WARD_ENOMEM;
                p.fatal = true;
            }
            break;
        case YAML_ALIAS_EVENT: on_alias(&p, &ev); break;
        case YAML_SCALAR_EVENT: on_scalar(&p, &ev); break;
        case YAML_SEQUENCE_START_EVENT: on_start(&p, &ev, WARD_NODE_SEQ); break;
        case YAML_MAPPING_START_EVENT: on_start(&p, &ev, WARD_NODE_MAP); break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: on_end(&p); break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&yp);

    /* unwind whatever is still open (errors stop the parse midway) */
    while (p.depth > 0) {
        doc_frame *f = &p.stack[--p.depth];
        node_free(f->key);
        f->key = NULL;
    }
    node_free(p.root);
    p.root = NULL;

    int rc = p.rc;
    problems_flush(&p, rc == WARD_ENOMEM ? NULL : diag);
    if (rc < 0) {
        ward_docs_dispose(&p.docs);
        return rc;
    }
    *out = p.docs;
    return 0;
}
